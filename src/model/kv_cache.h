// Paged KV cache storage: a pool of fixed-size blocks per layer. Block b of layer l holds
// `block_size` consecutive positions of whichever sequence owns it. The block allocator here
// is a simple free list; the runtime's scheduler (prefix sharing, eviction) sits on top.
#pragma once

#include <cstdint>
#include <vector>

#include "base/status.h"
#include "ops/ops.h"

namespace hearth::model {

struct KvLayout {
    int n_layer = 0;
    std::vector<int> k_width;  // [n_layer] floats per position (n_head_kv * head_dim_k)
    std::vector<int> v_width;  // [n_layer]
};

class KvCache {
public:
    // Allocates n_blocks * block_size positions for every layer (f32).
    static Result<KvCache> create(const KvLayout& layout, int n_blocks, int block_size);

    int block_size() const { return block_size_; }
    int n_blocks() const { return n_blocks_; }
    int n_free() const { return (int)free_.size(); }
    size_t bytes() const;
    int k_width(int layer) const { return layout_.k_width[layer]; }  // floats per K row
    int v_width(int layer) const { return layout_.v_width[layer]; }

    float* k_row(int layer, int32_t block, int slot) {
        return k_[layer].data() + ((int64_t)block * block_size_ + slot) * layout_.k_width[layer];
    }
    float* v_row(int layer, int32_t block, int slot) {
        return v_[layer].data() + ((int64_t)block * block_size_ + slot) * layout_.v_width[layer];
    }
    ops::PagedKvView view(int layer) const { return {k_[layer].data(), v_[layer].data(), block_size_}; }

    // Takes a free block; resource_exhausted when none is left.
    Result<int32_t> alloc_block();
    void free_block(int32_t block);
    // Grows `table` so that it covers positions [0, n_positions). On failure the table keeps
    // the blocks it had.
    Status ensure_capacity(std::vector<int32_t>& table, int64_t n_positions);
    void release(std::vector<int32_t>& table);

private:
    KvLayout layout_;
    int n_blocks_ = 0, block_size_ = 0;
    std::vector<std::vector<float>> k_, v_;  // [n_layer][n_blocks * block_size * width]
    std::vector<int32_t> free_;              // free block ids (stack)
};

}  // namespace hearth::model
