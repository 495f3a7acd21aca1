#include "backend/ref/attention.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "backend/ref/unary.h"
#include "base/fp16.h"

#if defined(__F16C__)
#include <immintrin.h>
#endif

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

// f16 bits to f32, exactly (F16C when the build has it; the result is the same either way).
static void f16_to_f32_row(const uint16_t* x, float* y, int n) {
    int i = 0;
#if defined(__F16C__)
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i))));
#endif
    for (; i < n; ++i) y[i] = fp16_to_f32(x[i]);
}

// One K or V head of a cached row as f32: the row itself (f32) or converted into `buf`.
static const float* head_f32(quant::QuantType type, const std::byte* head, float* buf, int n) {
    switch (type) {
    case quant::QuantType::f32: return reinterpret_cast<const float*>(head);
    case quant::QuantType::f16: f16_to_f32_row(reinterpret_cast<const uint16_t*>(head), buf, n); return buf;
    default: quant::traits(type).dequantize_row(head, buf, n); return buf;
    }
}

// Whether the query is quantized to score K (q8_0 / q4_0); otherwise K heads are read as f32.
static bool scores_quantized(quant::QuantType type) {
    return type != quant::QuantType::f32 && type != quant::QuantType::f16;
}

void AttentionScratch::reserve(const PagedKvView& kv, const AttentionParams& p, int32_t max_kv_end) {
    auto grow = [](auto& v, size_t n) {
        if (v.size() < n) v.resize(n);
    };
    grow(scores, (size_t)std::max<int32_t>(max_kv_end, 1));
    grow(acc, (size_t)64 * p.head_dim_v);
    if (kv.type == quant::QuantType::f32) return;
    grow(row, (size_t)std::max(p.head_dim_k, p.head_dim_v));
    if (scores_quantized(kv.type)) grow(q_conv, quant::row_size(quant::traits(kv.type).vec_dot_type, p.head_dim_k));
}

void attention_head_ref(const float* q_head, const PagedKvView& kv, const int32_t* block_table,
                        int32_t pos, int32_t kv_end, int head, const AttentionParams& p,
                        AttentionScratch& scratch, float* out_head) {
    const int kv_head = head / (p.n_head / p.n_head_kv);
    const bool quantized = scores_quantized(kv.type);
    const quant::TypeTraits& tr = quant::traits(kv.type);
    // Byte offsets of this kv head inside a K and a V row (whole blocks for q8_0/q4_0).
    const size_t k_off = quant::row_size(kv.type, (int64_t)kv_head * p.head_dim_k);
    const size_t v_off = quant::row_size(kv.type, (int64_t)kv_head * p.head_dim_v);
    const int32_t lo = p.sliding_window > 0 ? std::max(0, pos - p.sliding_window + 1) : 0;
    auto slot = [&](int32_t j) {
        return (int64_t)block_table[j / kv.block_size] * kv.block_size + j % kv.block_size;
    };
    if (quantized) quant::traits(tr.vec_dot_type).quantize_row(q_head, scratch.q_conv.data(), p.head_dim_k);
    float* scores = scratch.scores.data();
    float* row = scratch.row.data();
    float max_s = -std::numeric_limits<float>::infinity();
    for (int32_t j = lo; j < kv_end; ++j) {
        const std::byte* k = kv.k + slot(j) * (int64_t)kv.k_row_bytes + k_off;
        float s = quantized ? tr.vec_dot(k, scratch.q_conv.data(), p.head_dim_k)
                            : vec_dot_f32(head_f32(kv.type, k, row, p.head_dim_k), q_head, p.head_dim_k);
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
    // from llama.cpp's by float rounding only). Cell j goes to lane j % lanes; each lane of each
    // d receives its cells in increasing j, so walking V row by row (contiguous, one head
    // dequantized at a time) gives the same sums as walking it column by column.
    const int hd = p.head_dim_v;
    const bool tinyblas = hd % 4 == 0;
    const int lane_mask = tinyblas ? 15 : 63;
    float* acc = scratch.acc.data();  // [lanes][hd]
    std::fill_n(acc, (size_t)(lane_mask + 1) * hd, 0.0f);
    for (int32_t j = lo; j < kv_end; ++j) {
        const float* v = head_f32(kv.type, kv.v + slot(j) * (int64_t)kv.v_row_bytes + v_off, row, hd);
        float* a = acc + (size_t)(j & lane_mask) * hd;
        const float w = scores[j - lo];
        for (int d = 0; d < hd; ++d) a[d] = std::fma(v[d], w, a[d]);
    }
    for (int d = 0; d < hd; ++d) {
        float r[16];
        for (int l = 0; l < 16; ++l) {
            const float* c = acc + (size_t)l * hd + d;
            r[l] = tinyblas ? c[0] : (c[0] + c[32 * hd]) + (c[16 * hd] + c[48 * hd]);
        }
        out_head[d] = hsum16(r);
    }
}

void attention_ref(const float* q, const PagedKvView& kv, const int32_t* const* block_tables,
                   const int32_t* positions, const int32_t* kv_end, int64_t n_tokens,
                   const AttentionParams& p, float* out) {
    int32_t max_end = 0;
    for (int64_t t = 0; t < n_tokens; ++t) max_end = std::max(max_end, kv_end[t]);
    AttentionScratch scratch;
    scratch.reserve(kv, p, max_end);
    for (int64_t t = 0; t < n_tokens; ++t) {
        for (int h = 0; h < p.n_head; ++h) {
            attention_head_ref(q + (t * p.n_head + h) * p.head_dim_k, kv, block_tables[t], positions[t],
                               kv_end[t], h, p, scratch, out + (t * p.n_head + h) * p.head_dim_v);
        }
    }
}

}  // namespace hearth::backend
