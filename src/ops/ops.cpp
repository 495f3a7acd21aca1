#include "ops/ops.h"

#include <cmath>

#include "backend/cpu/attention.h"
#include "backend/cpu/matmul.h"
#include "backend/ref/norm.h"
#include "backend/ref/unary.h"
#include "base/fp16.h"

namespace hearth::ops {

Ops::Ops(int n_threads) : pool_(n_threads) {}

void Ops::matmul(const Weight& w, const float* x, float* y, int64_t n_tokens) {
    backend::matmul_cpu(pool_, w.type, w.data, w.row_bytes, x, y, w.n_in(), w.n_out(), n_tokens, act_scratch_);
}

void Ops::get_rows(const Weight& w, const int32_t* ids, int64_t n, float* out) {
    const auto& tr = quant::traits(w.type);
    for (int64_t i = 0; i < n; ++i) tr.dequantize_row(w.data + (int64_t)ids[i] * w.row_bytes, out + i * w.n_in(), w.n_in());
}

void Ops::rms_norm(const float* x, const float* w, float* y, int64_t n, int64_t rows, float eps) {
    pool_.parallel_for(rows, 8, [&](int64_t b, int64_t e) {
        backend::rms_norm_ref(x + b * n, w, y + b * n, n, e - b, eps);
    });
}

void Ops::layer_norm(const float* x, const float* w, const float* b, float* y, int64_t n, int64_t rows, float eps) {
    backend::layer_norm_ref(x, w, b, y, n, rows, eps);
}

void Ops::rope(float* x, const int32_t* positions, int64_t n_tokens, int n_heads, int head_dim, const RopeConfig& cfg) {
    pool_.parallel_for(n_tokens, 4, [&](int64_t b, int64_t e) {
        backend::rope_ref(x + b * n_heads * head_dim, positions + b, e - b, n_heads, head_dim, cfg);
    });
}

void Ops::attention(const float* q, const PagedKvView& kv, const int32_t* const* block_tables, const int32_t* positions,
                    const int32_t* kv_end, int64_t n_tokens, const AttentionParams& p, float* out) {
    backend::attention_cpu(pool_, q, kv, block_tables, positions, kv_end, n_tokens, p, out, attn_scratch_);
}

void Ops::swiglu(const float* gate, const float* up, float* y, int64_t n) { backend::swiglu_ref(gate, up, y, n); }

void Ops::swiglu_oai(const float* gate, const float* up, float* y, int64_t n, float alpha, float limit) {
    backend::swiglu_oai_ref(gate, up, y, n, alpha, limit);
}

void Ops::add_bias(float* y, const float* b, int64_t rows, int64_t n) { backend::add_bias_ref(y, b, rows, n); }

void Ops::gelu(const float* x, float* y, int64_t n) {
    // ggml's CPU GELU looks the value up in an fp16 table: input rounded to fp16, output
    // stored as fp16; |x| >= 10 is exact. Matching it keeps BERT/Gemma activations identical.
    for (int64_t i = 0; i < n; ++i) {
        const float v = x[i];
        if (v <= -10.0f) y[i] = 0.0f;
        else if (v >= 10.0f) y[i] = v;
        else y[i] = round_fp16(backend::gelu(round_fp16(v)));
    }
}

void Ops::add(float* x, const float* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

}  // namespace hearth::ops
