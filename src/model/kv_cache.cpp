#include "model/kv_cache.h"

#include <algorithm>

namespace hearth::model {

namespace {

// A row's head dim: the layout's, or the whole row when the layout gives none.
int head_dim(const std::vector<int>& head_dims, const std::vector<int>& widths, int layer) {
    return head_dims.empty() ? widths[layer] : head_dims[layer];
}

}  // namespace

Status KvCache::check_type(const KvLayout& layout, quant::QuantType type) {
    using quant::QuantType;
    if (type != QuantType::f32 && type != QuantType::f16 && type != QuantType::q8_0 && type != QuantType::q4_0)
        return error(StatusCode::invalid_argument,
                     strformat("KV cache type %s is not supported; use f32, f16, q8_0 or q4_0", quant::type_name(type)));
    const size_t n = (size_t)layout.n_layer;
    if (layout.k_width.size() != n || layout.v_width.size() != n ||
        (!layout.k_head_dim.empty() && layout.k_head_dim.size() != n) ||
        (!layout.v_head_dim.empty() && layout.v_head_dim.size() != n))
        return error(StatusCode::invalid_argument,
                     strformat("KV layout of %d layers has widths or head dims of another length", layout.n_layer));
    const int64_t qk = quant::block_size(type);
    for (int l = 0; l < layout.n_layer; ++l) {
        for (const bool is_k : {true, false}) {
            const int width = is_k ? layout.k_width[l] : layout.v_width[l];
            const int hd = is_k ? head_dim(layout.k_head_dim, layout.k_width, l) : head_dim(layout.v_head_dim, layout.v_width, l);
            const char* kv = is_k ? "K" : "V";
            if (width <= 0 || hd <= 0 || width % hd != 0)
                return error(StatusCode::invalid_argument,
                             strformat("KV layout: layer %d %s width %d is not a positive multiple of its head dim %d", l,
                                       kv, width, hd));
            if (hd % qk != 0)
                return error(StatusCode::invalid_argument,
                             strformat("%s KV cache needs head dims divisible by %lld; this model's %s head dim is %d",
                                       quant::type_name(type), (long long)qk, kv, hd));
        }
    }
    return {};
}

size_t KvCache::bytes_per_block(const KvLayout& layout, quant::QuantType type, int block_size) {
    size_t row_bytes = 0;  // one position, every layer, K and V
    for (int l = 0; l < layout.n_layer; ++l)
        row_bytes += quant::row_size(type, layout.k_width[l]) + quant::row_size(type, layout.v_width[l]);
    return row_bytes * (size_t)block_size;
}

Result<KvCache> KvCache::create(const KvLayout& layout, int n_blocks, int block_size, quant::QuantType type,
                                int first_host_layer) {
    if (n_blocks <= 0 || block_size <= 0)
        return error(StatusCode::invalid_argument, "KV cache needs at least one block of one position");
    if (first_host_layer < 0 || first_host_layer > layout.n_layer)
        return error(StatusCode::invalid_argument,
                     strformat("KV cache: first host layer %d of %d", first_host_layer, layout.n_layer));
    HEARTH_TRY(check_type(layout, type));
    KvCache c;
    c.layout_ = layout;
    c.type_ = type;
    c.n_blocks_ = n_blocks;
    c.block_size_ = block_size;
    c.first_host_layer_ = first_host_layer;
    c.k_.resize(layout.n_layer);
    c.v_.resize(layout.n_layer);
    for (int l = 0; l < layout.n_layer; ++l) {
        c.k_row_bytes_.push_back(quant::row_size(type, layout.k_width[l]));
        c.v_row_bytes_.push_back(quant::row_size(type, layout.v_width[l]));
        if (l < first_host_layer) continue;  // rows on a device
        c.k_[l].assign((size_t)n_blocks * block_size * c.k_row_bytes_[l], std::byte{0});
        c.v_[l].assign((size_t)n_blocks * block_size * c.v_row_bytes_[l], std::byte{0});
    }
    c.free_.reserve(n_blocks);
    for (int b = n_blocks - 1; b >= 0; --b) c.free_.push_back(b);
    return c;
}

void KvCache::write_k(int layer, int32_t block, int slot, const float* row) {
    quant::traits(type_).quantize_row(row, k_row(layer, block, slot), layout_.k_width[layer]);
}

void KvCache::write_v(int layer, int32_t block, int slot, const float* row) {
    quant::traits(type_).quantize_row(row, v_row(layer, block, slot), layout_.v_width[layer]);
}

ops::PagedKvView KvCache::view(int layer) const {
    return {k_[layer].data(), v_[layer].data(), block_size_, type_, k_row_bytes_[layer], v_row_bytes_[layer]};
}

size_t KvCache::block_bytes() const {
    size_t b = 0;
    for (int l = first_host_layer_; l < layout_.n_layer; ++l) b += (k_row_bytes_[l] + v_row_bytes_[l]) * block_size_;
    return b;
}

void KvCache::read_block(int32_t block, std::byte* dst) const {
    for (int l = 0; l < layout_.n_layer; ++l) {
        for (const auto* pool : {&k_[l], &v_[l]}) {
            const size_t n = pool->size() / n_blocks_;  // one block of this layer's K or V
            dst = std::copy_n(pool->data() + (size_t)block * n, n, dst);
        }
    }
}

void KvCache::write_block(int32_t block, const std::byte* src) {
    for (int l = 0; l < layout_.n_layer; ++l) {
        for (auto* pool : {&k_[l], &v_[l]}) {
            const size_t n = pool->size() / n_blocks_;
            std::copy_n(src, n, pool->data() + (size_t)block * n);
            src += n;
        }
    }
}

std::string KvCache::layout_key() const {
    std::string key = strformat("kv %s block %d layers %d", quant::type_name(type_), block_size_, layout_.n_layer);
    if (first_host_layer_ > 0) key += strformat(" from %d", first_host_layer_);
    for (int l = 0; l < layout_.n_layer; ++l)
        key += strformat(" k%d/%d v%d/%d", layout_.k_width[l], head_dim(layout_.k_head_dim, layout_.k_width, l),
                         layout_.v_width[l], head_dim(layout_.v_head_dim, layout_.v_width, l));
    return key;
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
