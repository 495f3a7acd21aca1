#include "model/kv_cache.h"

namespace hearth::model {

Result<KvCache> KvCache::create(const KvLayout& layout, int n_blocks, int block_size) {
    if (n_blocks <= 0 || block_size <= 0)
        return error(StatusCode::invalid_argument, "KV cache needs at least one block of one position");
    KvCache c;
    c.layout_ = layout;
    c.n_blocks_ = n_blocks;
    c.block_size_ = block_size;
    c.k_.resize(layout.n_layer);
    c.v_.resize(layout.n_layer);
    for (int l = 0; l < layout.n_layer; ++l) {
        c.k_[l].assign((size_t)n_blocks * block_size * layout.k_width[l], 0.0f);
        c.v_[l].assign((size_t)n_blocks * block_size * layout.v_width[l], 0.0f);
    }
    c.free_.reserve(n_blocks);
    for (int b = n_blocks - 1; b >= 0; --b) c.free_.push_back(b);
    return c;
}

size_t KvCache::bytes() const {
    size_t total = 0;
    for (int l = 0; l < layout_.n_layer; ++l) total += (k_[l].size() + v_[l].size()) * sizeof(float);
    return total;
}

Result<int32_t> KvCache::alloc_block() {
    if (free_.empty()) return error(StatusCode::resource_exhausted, "KV cache is full");
    int32_t b = free_.back();
    free_.pop_back();
    return b;
}

void KvCache::free_block(int32_t block) { free_.push_back(block); }

Status KvCache::ensure_capacity(std::vector<int32_t>& table, int64_t n_positions) {
    const int64_t need = (n_positions + block_size_ - 1) / block_size_;
    if (need - (int64_t)table.size() > (int64_t)free_.size())
        return error(StatusCode::resource_exhausted,
                     strformat("KV cache is full: %lld positions need %lld blocks, %zu free", (long long)n_positions,
                               (long long)need, free_.size()));
    while ((int64_t)table.size() < need) table.push_back(alloc_block().value());
    return {};
}

void KvCache::release(std::vector<int32_t>& table) {
    for (int32_t b : table) free_block(b);
    table.clear();
}

}  // namespace hearth::model
