// Scaled dot-product attention of a batch of query tokens over a paged KV cache.
// Query token t sees key/value positions j of its own sequence with
//   window_lo(t) <= j < kv_end[t],   window_lo = pos - sliding_window + 1 (or 0 without SWA),
// found through that sequence's block table: position j lives in block
// block_tables[t][j / block_size], slot j % block_size. GQA: query head h reads kv head
// h / (n_head / n_head_kv).
//
// The cache holds K and V as f32, f16, q8_0 or q4_0 (PagedKvView::type):
// - f32: summed exactly as ggml's CPU graph does with an F32 cache (bit-exact with llama.cpp).
// - f16: each K and V head row is converted to f32 (exact) and then summed exactly as the f32
//   path sums it; the query stays f32. (ggml instead rounds the query to f16 for its F16 KQ
//   matmul; keeping it f32 means an f16 cache differs from f32 only by the storage rounding.)
// - q8_0 / q4_0: the query head is quantized once per (token, head) to q8_0 and scored with
//   quant::vec_dot_q8_0 / vec_dot_q4_0; head dims are multiples of 32, so a head is whole blocks.
//   V head rows are dequantized and accumulated in f32 in the f32 path's order.
// Every conversion depends only on the token's own query and KV rows.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "quant/types.h"

namespace hearth::backend {

struct PagedKvView {
    // Cached position `slot` (= block * block_size + offset in the block) has its K row at
    // k + slot * k_row_bytes: n_head_kv heads of head_dim_k values stored as `type`
    // (quant::row_size(type, n_head_kv * head_dim_k) bytes; the row stride may be larger).
    const std::byte* k = nullptr;
    const std::byte* v = nullptr;  // same for V rows: n_head_kv heads of head_dim_v values
    int block_size = 0;
    quant::QuantType type = quant::QuantType::f32;  // f32, f16, q8_0 or q4_0
    size_t k_row_bytes = 0, v_row_bytes = 0;        // bytes from one cached position to the next
};

struct AttentionParams {
    int n_head = 0, n_head_kv = 0, head_dim_k = 0, head_dim_v = 0;
    float scale = 1.0f;           // applied to q.k before softmax
    int sliding_window = 0;       // 0: attend to everything before kv_end
    const float* sinks = nullptr; // [n_head] extra softmax logit per head (gpt-oss), or null
    float softcap = 0.0f;         // tanh soft-capping of scores; 0 = off
};

// Scratch of one thread running attention_head_ref. reserve() grows it (never shrinks) so that
// it fits every token of a call; after the largest batch it is never reallocated.
struct AttentionScratch {
    std::vector<float> scores;      // [kv_end] scores of the visible positions, then probabilities
    std::vector<float> acc;         // [lanes <= 64][head_dim_v] f32 partial sums of V · probs
    std::vector<float> row;         // [max(head_dim_k, head_dim_v)] one K or V head as f32 (typed caches)
    std::vector<std::byte> q_conv;  // the query head as q8_0 (q8_0 / q4_0 caches)
    void reserve(const PagedKvView& kv, const AttentionParams& p, int32_t max_kv_end);
};

// q: [n_tokens][n_head * head_dim_k]; out: [n_tokens][n_head * head_dim_v].
void attention_ref(const float* q, const PagedKvView& kv, const int32_t* const* block_tables,
                   const int32_t* positions, const int32_t* kv_end, int64_t n_tokens,
                   const AttentionParams& p, float* out);

// One (token, head) pair; `scratch` must have been reserved for at least kv_end positions.
// Shared by backends. The result depends only on this token and its KV, never on the rest of
// the batch (the serving engine relies on that: N sequences together decode exactly as each alone).
void attention_head_ref(const float* q_head, const PagedKvView& kv, const int32_t* block_table,
                        int32_t pos, int32_t kv_end, int head, const AttentionParams& p,
                        AttentionScratch& scratch, float* out_head);

}  // namespace hearth::backend
