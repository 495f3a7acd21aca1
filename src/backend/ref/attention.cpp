#include "backend/ref/attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "backend/ref/unary.h"

// ggml's scalar tail `sumf += x[i]*y[i]` (built at -O3) rounds the product, then adds; keep g++
// from fusing it (C++ defaults to -ffp-contract=fast). Fused steps are written as std::fma.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("fp-contract=off")
#else
#pragma STDC FP_CONTRACT OFF
#endif

namespace hearth::backend {

// The float summation orders follow ggml's CPU graph for attention without flash attention
// (kq = K·q, soft_max_ext(kq, mask, scale), kqv = V^T·kq) with an F32 cache, on an AVX-512 build,
// so that the results match llama.cpp's bit for bit. Every sum runs over KV cells from 0 (cell
// j = position j); cells outside [lo, kv_end) are masked and contribute exact zeros, so only the
// visible ones are visited, but the SIMD lane and chunk of each is that of its cell index.

// ggml_vec_dot_f32: 4 x 16 lane accumulators over whole 64-element steps, reduced
// (0+2, 1+3, then 0+1, then hsum16), the tail added one by one.
static float vec_dot_f32(const float* x, const float* y, int n) {
    const int np = n & ~63;
    float acc[4][16] = {};
    for (int i = 0; i < np; i += 64)
        for (int a = 0; a < 4; ++a)
            for (int l = 0; l < 16; ++l) acc[a][l] = std::fma(x[i + a * 16 + l], y[i + a * 16 + l], acc[a][l]);
    float sumf = 0.0f;
    if (np > 0) {
        float r[16];
        for (int l = 0; l < 16; ++l) r[l] = (acc[0][l] + acc[2][l]) + (acc[1][l] + acc[3][l]);
        sumf = hsum16(r);
    }
    for (int i = np; i < n; ++i) sumf += x[i] * y[i];
    return sumf;
}

void attention_head_ref(const float* q_head, const PagedKvView& kv, const int32_t* block_table,
                        int32_t pos, int32_t kv_end, int head, const AttentionParams& p,
                        float* scores, float* out_head) {
    const int kv_head = head / (p.n_head / p.n_head_kv);
    const int64_t k_stride = (int64_t)p.n_head_kv * p.head_dim_k;  // floats per cached position
    const int64_t v_stride = (int64_t)p.n_head_kv * p.head_dim_v;
    const int32_t lo = p.sliding_window > 0 ? std::max(0, pos - p.sliding_window + 1) : 0;
    auto slot = [&](int32_t j) {
        return (int64_t)block_table[j / kv.block_size] * kv.block_size + j % kv.block_size;
    };
    float max_s = -std::numeric_limits<float>::infinity();
    for (int32_t j = lo; j < kv_end; ++j) {
        const float* k = kv.k + slot(j) * k_stride + (int64_t)kv_head * p.head_dim_k;
        float s = vec_dot_f32(k, q_head, p.head_dim_k);
        s *= p.scale;
        if (p.softcap > 0.0f) s = p.softcap * std::tanh(s / p.softcap);
        scores[j - lo] = s;
        max_s = std::max(max_s, s);
    }
    const float sink = p.sinks ? p.sinks[head] : -std::numeric_limits<float>::infinity();
    max_s = std::max(max_s, sink);
    // ggml_vec_soft_max_f32 over the padded row: ggml_vexp per 16-cell chunk, each chunk's
    // hsum16 added in double (the padded row length is a multiple of 16, so there is no tail).
    double sum = 0.0;
    for (int32_t c0 = lo & ~15; c0 < kv_end; c0 += 16) {
        float e[16] = {};
        for (int32_t j = std::max(c0, lo); j < std::min(c0 + 16, kv_end); ++j)
            e[j - c0] = scores[j - lo] = ggml_vexp(scores[j - lo] - max_s);
        sum += hsum16(e);
    }
    if (p.sinks) sum += std::exp(sink - max_s);
    const float inv = sum > 0.0 ? (float)(1.0 / sum) : 0.0f;
    for (int32_t j = lo; j < kv_end; ++j) scores[j - lo] *= inv;
    // kqv[d] = V^T[d] · probs, summed as ggml sums a prompt batch: through tinyBLAS (one 16-lane
    // fma accumulator over the row, then hsum16; it needs head_dim_v % 4 == 0), otherwise as
    // ggml_vec_dot_f32 (the padded row is a multiple of 64 cells: no scalar tail). ggml takes
    // the vec_dot order for a lone decode token too; we keep one order for every batch size, so
    // a token's result never depends on what else is batched with it (decode logits then differ
    // from llama.cpp's by float rounding only).
    const bool tinyblas = p.head_dim_v % 4 == 0;
    for (int d = 0; d < p.head_dim_v; ++d) {
        const float* v = kv.v + (int64_t)kv_head * p.head_dim_v + d;
        float acc[64] = {};
        for (int32_t j = lo; j < kv_end; ++j) {
            const int l = tinyblas ? (j & 15) : (j & 63);
            acc[l] = std::fma(v[slot(j) * v_stride], scores[j - lo], acc[l]);
        }
        if (tinyblas) {
            out_head[d] = hsum16(acc);
        } else {
            float r[16];
            for (int l = 0; l < 16; ++l) r[l] = (acc[l] + acc[32 + l]) + (acc[16 + l] + acc[48 + l]);
            out_head[d] = hsum16(r);
        }
    }
}

void attention_ref(const float* q, const PagedKvView& kv, const int32_t* const* block_tables,
                   const int32_t* positions, const int32_t* kv_end, int64_t n_tokens,
                   const AttentionParams& p, float* out) {
    int32_t max_end = 0;
    for (int64_t t = 0; t < n_tokens; ++t) max_end = std::max(max_end, kv_end[t]);
    std::vector<float> scores(std::max<int32_t>(max_end, 1));  // [visible positions] scratch
    for (int64_t t = 0; t < n_tokens; ++t) {
        for (int h = 0; h < p.n_head; ++h) {
            attention_head_ref(q + (t * p.n_head + h) * p.head_dim_k, kv, block_tables[t], positions[t],
                               kv_end[t], h, p, scores.data(), out + (t * p.n_head + h) * p.head_dim_v);
        }
    }
}

}  // namespace hearth::backend
