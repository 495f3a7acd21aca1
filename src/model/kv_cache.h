// Paged KV cache storage: a pool of fixed-size blocks per layer. Block b of layer l holds
// `block_size` consecutive positions of whichever sequence owns it. The block allocator here
// is a simple free list; the runtime's scheduler (prefix sharing, eviction) sits on top.
// Rows are stored as f32, f16 (the default, as Ollama and llama.cpp), q8_0 or q4_0; the
// attention op reads each type directly (backend/ref/attention.h gives the numerics).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"
#include "ops/ops.h"
#include "quant/types.h"

namespace hearth::model {

struct KvLayout {
    int n_layer = 0;
    std::vector<int> k_width;     // [n_layer] values per position (n_head_kv * k_head_dim)
    std::vector<int> v_width;     // [n_layer]
    std::vector<int> k_head_dim;  // [n_layer] values per head; empty: a row is one head
    std::vector<int> v_head_dim;  // [n_layer]
};

class KvCache {
public:
    // Allocates n_blocks * block_size positions for every layer, stored as `type`: f32, f16,
    // q8_0 or q4_0 (q8_0/q4_0 need every head dim divisible by 32). Other types, a head dim
    // that does not divide its width, or an empty pool are invalid_argument.
    // first_host_layer > 0: layers [0, first_host_layer) get no rows here (a model keeps them
    // in device memory: Model::kv_host_first_layer); the cache then only allocates their block
    // ids, and view/write_k/write_v must not be called for them. n_layer: no rows at all.
    static Result<KvCache> create(const KvLayout& layout, int n_blocks, int block_size,
                                  quant::QuantType type = quant::QuantType::f16, int first_host_layer = 0);
    // OK when `type` can cache `layout`; otherwise the error create() would return.
    static Status check_type(const KvLayout& layout, quant::QuantType type);
    // Bytes one block takes (every layer, K and V), for a type check_type accepts: what a
    // pool of n blocks costs is n * bytes_per_block.
    static size_t bytes_per_block(const KvLayout& layout, quant::QuantType type, int block_size);

    quant::QuantType type() const { return type_; }
    int block_size() const { return block_size_; }
    int n_blocks() const { return n_blocks_; }
    int n_free() const { return (int)free_.size(); }
    size_t bytes() const { return (size_t)n_blocks_ * block_bytes(); }  // the rows held here
    int first_host_layer() const { return first_host_layer_; }
    int k_width(int layer) const { return layout_.k_width[layer]; }  // values per K row
    int v_width(int layer) const { return layout_.v_width[layer]; }

    // Stores the k_width(layer) (v_width) f32 values of `row` at (block, slot), converted to
    // the cache's type with quant/'s reference quantizer.
    void write_k(int layer, int32_t block, int slot, const float* row);
    void write_v(int layer, int32_t block, int slot, const float* row);
    // Where (block, slot)'s row of a host layer is stored (type(), k_width/v_width values), for
    // writers that convert rows themselves (blocks::write_kv, in parallel).
    std::byte* k_row(int layer, int32_t block, int slot) {
        return k_[layer].data() + ((size_t)block * block_size_ + slot) * k_row_bytes_[layer];
    }
    std::byte* v_row(int layer, int32_t block, int slot) {
        return v_[layer].data() + ((size_t)block * block_size_ + slot) * v_row_bytes_[layer];
    }
    ops::PagedKvView view(int layer) const;

    // Block bytes, for moving a block to another tier (disk) and back: block_bytes() per block,
    // every layer's K rows then its V rows (the layers that have rows here). Bytes are only meaningful to a cache with the same
    // layout_key(). read_block/write_block do not touch the free list.
    size_t block_bytes() const;
    void read_block(int32_t block, std::byte* dst) const;
    void write_block(int32_t block, const std::byte* src);
    // Type, block size and per-layer widths and head dims: equal keys mean interchangeable
    // block bytes (given the same model weights).
    std::string layout_key() const;

    // Takes a free block; resource_exhausted when none is left.
    Result<int32_t> alloc_block();
    void free_block(int32_t block);
    // Grows `table` so that it covers positions [0, n_positions). On failure the table keeps
    // the blocks it had.
    Status ensure_capacity(std::vector<int32_t>& table, int64_t n_positions);
    void release(std::vector<int32_t>& table);

private:

    KvLayout layout_;
    quant::QuantType type_ = quant::QuantType::f16;
    int n_blocks_ = 0, block_size_ = 0;
    int first_host_layer_ = 0;
    std::vector<size_t> k_row_bytes_, v_row_bytes_;  // [n_layer] quant::row_size(type_, width)
    std::vector<std::vector<std::byte>> k_, v_;      // [n_layer][n_blocks * block_size * row bytes]
    std::vector<int32_t> free_;                      // free block ids (stack)
};

}  // namespace hearth::model
