// The op contracts the models call. An Ops object owns the worker threads and scratch
// buffers of one engine and dispatches each op to a backend kernel (CPU today; CUDA later
// behind the same calls). Models never call backend/ directly.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "backend/ref/attention.h"
#include "backend/ref/rope.h"
#include "base/thread_pool.h"
#include "quant/types.h"

namespace hearth::ops {

using backend::AttentionParams;
using backend::PagedKvView;
using backend::RopeConfig;

// One 2-D matrix: n_out rows of n_in values of `type`, row_bytes apart (rows padded to the
// type's block size, as in a GGUF file). A view: the bytes belong to someone else.
struct MatrixView {
    quant::QuantType type = quant::QuantType::f32;
    const std::byte* data = nullptr;
    int64_t n_in = 0, n_out = 0;
    size_t row_bytes = 0;
};

// A low-rank term added to a weight: W' = W + scale * B·A, with A [n_in -> rank] (rank rows of
// n_in) and B [rank -> n_out] (n_out rows of rank). LoRA adapters arrive as these; ops/ only
// knows "a weight may carry low-rank deltas", never where they came from.
struct LowRankDelta {
    MatrixView a;  // n_in = the weight's n_in, n_out = rank
    MatrixView b;  // n_in = rank, n_out = the weight's n_out
    float scale = 1.0f;
};

// A weight matrix (or a stack of them) as stored in the model file: ne in ggml order,
// ne[0] = n_in (contiguous), ne[1] = n_out, ne[2] = experts. Points into the mapped file.
struct Weight {
    quant::QuantType type = quant::QuantType::f32;
    const std::byte* data = nullptr;
    int64_t ne[4] = {1, 1, 1, 1};
    size_t row_bytes = 0;
    // Low-rank deltas applied at run time by matmul and get_rows, in order (several adapters
    // stack); the bytes above stay untouched. Only 2-D weights carry them (slice() keeps none:
    // a delta describes the whole matrix, not one expert of a stack).
    std::vector<LowRankDelta> deltas;

    bool present() const { return data != nullptr; }
    int64_t n_in() const { return ne[0]; }
    int64_t n_out() const { return ne[1]; }
    // The e-th matrix of a 3-D stack (experts).
    Weight slice(int64_t e) const {
        Weight w;
        w.type = type;
        w.data = data + e * ne[1] * row_bytes;
        for (int d = 0; d < 4; ++d) w.ne[d] = ne[d];
        w.ne[2] = 1;
        w.row_bytes = row_bytes;
        return w;
    }
};

class Ops {
public:
    explicit Ops(int n_threads);
    int n_threads() const { return pool_.n_threads(); }
    ThreadPool& pool() { return pool_; }

    // y[t][n_out] = W x[t]  (x: [n_tokens][n_in]), plus scale * B (A x[t]) for each of
    // w.deltas (computed low-rank: two thin matmuls, never the dense product).
    void matmul(const Weight& w, const float* x, float* y, int64_t n_tokens);
    // out[i][n_in] = row ids[i] of w, dequantized to f32, plus row ids[i] of each delta's
    // scale * B·A. ids must be in [0, n_out).
    void get_rows(const Weight& w, const int32_t* ids, int64_t n, float* out);
    void rms_norm(const float* x, const float* w, float* y, int64_t n, int64_t rows, float eps);
    void layer_norm(const float* x, const float* w, const float* b, float* y, int64_t n, int64_t rows, float eps);
    // x: [n_tokens][n_heads][head_dim], in place.
    void rope(float* x, const int32_t* positions, int64_t n_tokens, int n_heads, int head_dim, const RopeConfig& cfg);
    // Paged attention over an f32, f16, q8_0 or q4_0 cache (numerics: backend/ref/attention.h).
    void attention(const float* q, const PagedKvView& kv, const int32_t* const* block_tables, const int32_t* positions,
                   const int32_t* kv_end, int64_t n_tokens, const AttentionParams& p, float* out);
    void swiglu(const float* gate, const float* up, float* y, int64_t n);
    // gpt-oss's clamped SwiGLU: x = min(gate, limit), u = clamp(up, -limit, limit),
    // y = x * sigmoid(alpha x) * (u + 1). In place allowed (y may equal gate).
    void swiglu_oai(const float* gate, const float* up, float* y, int64_t n, float alpha, float limit);
    // y[r][i] += b[i] for r < rows, i < n.
    void add_bias(float* y, const float* b, int64_t rows, int64_t n);
    // GELU as ggml's CPU backend computes it (tanh form through an fp16 table).
    void gelu(const float* x, float* y, int64_t n);
    void add(float* x, const float* y, int64_t n);  // x += y
    // y = x [n] f32 stored as `type` (a KV cache row: f32, f16, q8_0, q4_0), the bits of quant/'s
    // quantize_row (f16 through the CPU's converter). Stateless: callable from pool workers.
    void quantize_row(quant::QuantType type, const float* x, std::byte* y, int64_t n) const;

private:
    ThreadPool pool_;
    std::vector<std::byte> act_scratch_;  // converted activations of the current matmul
    // Low-rank deltas: [n_tokens][rank] = A x, then [n_tokens][n_out] = B (A x) (matmul), or
    // [rank] + [n_in] dequantized rows (get_rows). Grown to the largest call, then reused.
    std::vector<float> delta_mid_, delta_out_;
    std::vector<backend::AttentionScratch> attn_scratch_;  // [n_threads] scores and V sums of one (token, head)
};

}  // namespace hearth::ops
