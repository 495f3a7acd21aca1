#include "ops/ops.h"

#include <cmath>

#include "backend/cpu/attention.h"
#include "backend/cpu/convert.h"
#include "backend/cpu/matmul.h"
#include "backend/cpu/norm.h"
#include "backend/cpu/unary.h"
#include "backend/ref/norm.h"
#include "backend/ref/unary.h"
#include "base/fp16.h"

namespace hearth::ops {

Ops::Ops(int n_threads) : pool_(n_threads) {}

void Ops::matmul(const Weight& w, const float* x, float* y, int64_t n_tokens) {
    backend::matmul_cpu(pool_, w.type, w.data, w.row_bytes, x, y, w.n_in(), w.n_out(), n_tokens, act_scratch_);
    for (const LowRankDelta& d : w.deltas) {
        // y += scale * B (A x): rank is small, so this costs (n_in + n_out) * rank per token
        // instead of the n_in * n_out a merged weight would.
        const int64_t rank = d.a.n_out, n_out = d.b.n_out;
        if ((int64_t)delta_mid_.size() < n_tokens * rank) delta_mid_.resize(n_tokens * rank);
        if ((int64_t)delta_out_.size() < n_tokens * n_out) delta_out_.resize(n_tokens * n_out);
        backend::matmul_cpu(pool_, d.a.type, d.a.data, d.a.row_bytes, x, delta_mid_.data(), d.a.n_in, rank, n_tokens,
                            act_scratch_);
        backend::matmul_cpu(pool_, d.b.type, d.b.data, d.b.row_bytes, delta_mid_.data(), delta_out_.data(), rank, n_out,
                            n_tokens, act_scratch_);
        const float* dy = delta_out_.data();
        for (int64_t i = 0; i < n_tokens * n_out; ++i) y[i] += d.scale * dy[i];
    }
}

void Ops::get_rows(const Weight& w, const int32_t* ids, int64_t n, float* out) {
    const auto& tr = quant::traits(w.type);
    const int64_t n_in = w.n_in();
    for (int64_t i = 0; i < n; ++i) tr.dequantize_row(w.data + (int64_t)ids[i] * w.row_bytes, out + i * n_in, n_in);
    for (const LowRankDelta& d : w.deltas) {
        // Row id of B·A = sum over r of B[id][r] * A[r]: rank dequantized rows of A per token.
        const int64_t rank = d.a.n_out;
        if ((int64_t)delta_mid_.size() < rank) delta_mid_.resize(rank);
        if ((int64_t)delta_out_.size() < n_in) delta_out_.resize(n_in);
        const auto& ta = quant::traits(d.a.type);
        const auto& tb = quant::traits(d.b.type);
        for (int64_t i = 0; i < n; ++i) {
            tb.dequantize_row(d.b.data + (int64_t)ids[i] * d.b.row_bytes, delta_mid_.data(), rank);
            float* dst = out + i * n_in;
            for (int64_t r = 0; r < rank; ++r) {
                ta.dequantize_row(d.a.data + r * d.a.row_bytes, delta_out_.data(), n_in);
                const float c = d.scale * delta_mid_[r];
                for (int64_t k = 0; k < n_in; ++k) dst[k] += c * delta_out_[k];
            }
        }
    }
}

void Ops::rms_norm(const float* x, const float* w, float* y, int64_t n, int64_t rows, float eps) {
    backend::rms_norm_cpu(pool_, x, w, y, n, rows, eps);
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

void Ops::swiglu(const float* gate, const float* up, float* y, int64_t n) {
    backend::swiglu_cpu(pool_, gate, up, y, n);
}

void Ops::swiglu_oai(const float* gate, const float* up, float* y, int64_t n, float alpha, float limit) {
    // Element by element (libm's expf), so any split gives the reference's bytes.
    pool_.parallel_for(n, 8192, [&](int64_t b, int64_t e) {
        backend::swiglu_oai_ref(gate + b, up + b, y + b, e - b, alpha, limit);
    });
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

void Ops::quantize_row(quant::QuantType type, const float* x, std::byte* y, int64_t n) const {
    if (type == quant::QuantType::f16) backend::f32_to_f16_row(x, reinterpret_cast<uint16_t*>(y), n);
    else quant::traits(type).quantize_row(x, y, n);
}

void Ops::add(float* x, const float* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

}  // namespace hearth::ops
