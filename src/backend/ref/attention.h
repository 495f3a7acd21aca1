// Scaled dot-product attention of a batch of query tokens over a paged KV cache.
// Query token t sees key/value positions j of its own sequence with
//   window_lo(t) <= j < kv_end[t],   window_lo = pos - sliding_window + 1 (or 0 without SWA),
// found through that sequence's block table: position j lives in block
// block_tables[t][j / block_size], slot j % block_size. GQA: query head h reads kv head
// h / (n_head / n_head_kv).
#pragma once

#include <cstdint>

namespace hearth::backend {

struct PagedKvView {
    const float* k = nullptr;  // [n_blocks][block_size][n_head_kv * head_dim_k] f32
    const float* v = nullptr;  // [n_blocks][block_size][n_head_kv * head_dim_v] f32
    int block_size = 0;
};

struct AttentionParams {
    int n_head = 0, n_head_kv = 0, head_dim_k = 0, head_dim_v = 0;
    float scale = 1.0f;           // applied to q.k before softmax
    int sliding_window = 0;       // 0: attend to everything before kv_end
    const float* sinks = nullptr; // [n_head] extra softmax logit per head (gpt-oss), or null
    float softcap = 0.0f;         // tanh soft-capping of scores; 0 = off
};

// q: [n_tokens][n_head * head_dim_k]; out: [n_tokens][n_head * head_dim_v].
void attention_ref(const float* q, const PagedKvView& kv, const int32_t* const* block_tables,
                   const int32_t* positions, const int32_t* kv_end, int64_t n_tokens,
                   const AttentionParams& p, float* out);

// One (token, head) pair; `scores` is scratch of at least kv_end floats. Shared by backends.
// The result depends only on this token and its KV, never on the rest of the batch (the
// serving engine relies on that: N sequences together decode exactly as each alone).
void attention_head_ref(const float* q_head, const PagedKvView& kv, const int32_t* block_table,
                        int32_t pos, int32_t kv_end, int head, const AttentionParams& p,
                        float* scores, float* out_head);

}  // namespace hearth::backend
