// CUDA element-wise and row ops: the contracts of backend/ref/norm.h, rope.h and unary.h (and
// ops::Ops::get_rows) with every pointer in device memory, queued on a Stream. The header
// includes no CUDA header (plain C++ callers: model/cuda_decoder.cpp, tests).
//
// Numerics against the references (tests/backend/cuda_ops_test.cpp checks each):
//  - rms_norm_cuda: squares rounded to f32 and summed in f64 as the reference does, in another
//    order: the scale differs by ~1 ulp, outputs by <= ~4 ulp (relative 5e-7).
//  - rope_cuda: the angle of pair i is built exactly as the reference builds it (pos times
//    base^(-2/n_rot) i times, by repeated f32 multiplication, with base^(-2/n_rot) and the YaRN
//    corrections computed on the host by the same code), so angles are bit-identical; cos/sin
//    come from CUDA's cosf/sinf (<= 2 ulp, also for large angles) instead of glibc: outputs
//    differ by <= ~4e-7 * |x| per rotated pair.
//  - swiglu_cuda: silu with expf (<= 2 ulp) instead of ggml_vexp (~1.5 ulp): <= ~1e-6 relative.
//  - add_cuda, add_bias_cuda, gather_rows_cuda, get_rows_cuda: exact (get_rows dequantizes
//    F16/Q8_0 as quant/ does: d * q in f32, one rounding).
//  - layer_norm_cuda: the reference's arithmetic step for step (x summed in f64, mean rounded to
//    f32, squares of the f32 differences x - mean summed in f64, scale 1 / sqrtf(f32 var + eps),
//    then (x - mean) * scale * w + b, each step rounded to f32); only the order of the two f64
//    sums differs, and the host compiler may fuse the reference's v * w + b into one fma (GCC
//    does at -O3 -march=native; the kernels never fuse). Mean and scale are bit-identical unless
//    an f64 sum rounds across an f32 rounding boundary (rare; then 1 ulp), so
//    |y - y_ref| <= ~6e-7 * (|w| * scale * (|x - mean| + |mean|) + |y_ref|).
//  - gelu_cuda, geglu_cuda: the reference's expression, each operation rounded to f32; CUDA's
//    tanhf (<= 2 ulp) instead of glibc's (<= 2 ulp), and the host may fuse 1 + c x * x (1 ulp
//    of the tanh argument): tanh moves by <= ~3.5e-7, 1 + tanh by one more ulp (2^-23), so
//    |y - y_ref| <= ~4e-7 * |x| (geglu: <= ~5e-7 * |gate| * |up|).
//  - swiglu_oai_cuda: the same clamps and expression, expf (<= 2 ulp) instead of glibc's
//    (< 1 ulp): <= ~7e-7 relative (plus ~1e-37 absolute where exp overflows).
//  - softcap_cuda: the same exact IEEE division; tanhf (<= 2 ulp) vs glibc: <= ~6e-7 relative.
//  - scale_cuda, scale_rows_cuda, copy_rows_cuda: exact.
//
// Failure semantics: bad arguments (negative sizes, the stated preconditions; for gelu_cuda ..
// copy_rows_cuda also a null x / y / gate / up / scales where there is work) record
// invalid_argument / unsupported on the Device (sticky) and launch nothing; launch errors are
// recorded likewise; outputs are then unspecified. Check Stream::synchronize().
#pragma once

#include <cstddef>
#include <cstdint>

#include "backend/cuda/device.h"
#include "backend/ref/rope.h"
#include "quant/types.h"

namespace hearth::backend {

// y = x / sqrt(mean(x^2) + eps) * w over [rows][n] f32; w [n] or null (no weight); y may be x.
void rms_norm_cuda(cuda::Stream& stream, const float* x, const float* w, float* y, int64_t n, int64_t rows, float eps);

// x[i] += y[i], i < n.
void add_cuda(cuda::Stream& stream, float* x, const float* y, int64_t n);

// y[r][i] += b[i] over [rows][n].
void add_bias_cuda(cuda::Stream& stream, float* y, const float* b, int64_t rows, int64_t n);

// y = silu(gate) * up, n values; y may equal gate or up.
void swiglu_cuda(cuda::Stream& stream, const float* gate, const float* up, float* y, int64_t n);

// gelu_ref (backend/ref/unary.h, tanh approximation) over n values; y may equal x.
void gelu_cuda(cuda::Stream& stream, const float* x, float* y, int64_t n);

// y = gelu(gate) * up (geglu_ref), n values; y may equal gate or up.
void geglu_cuda(cuda::Stream& stream, const float* gate, const float* up, float* y, int64_t n);

// swiglu_oai_ref (gpt-oss): x = min(gate, limit), u = clamp(up, -limit, limit),
// y = x / (1 + exp(-alpha x)) * (u + 1), n values; y may equal gate or up.
void swiglu_oai_cuda(cuda::Stream& stream, const float* gate, const float* up, float* y, int64_t n, float alpha,
                     float limit);

// y = (x - mean) / sqrt(var + eps) * w + b over [rows][n] f32 (layer_norm_ref); w [n] and b [n]
// may each be null (no weight, no bias); y may be x. n > 0.
void layer_norm_cuda(cuda::Stream& stream, const float* x, const float* w, const float* b, float* y, int64_t n,
                     int64_t rows, float eps);

// x[i] *= s, i < n.
void scale_cuda(cuda::Stream& stream, float* x, float s, int64_t n);

// x[r][i] *= scales[r] over [rows][n]; scales [rows] f32 in device memory.
void scale_rows_cuda(cuda::Stream& stream, float* x, const float* scales, int64_t rows, int64_t n);

// x[i] = tanh(x[i] / cap) * cap, i < n (logit / score soft-capping). cap > 0.
void softcap_cuda(cuda::Stream& stream, float* x, float cap, int64_t n);

// y[r * y_stride + i] = x[r * x_stride + i], i < n, r < rows; strides in floats, each >= n; x and
// y do not overlap. Values between rows of y are left as they were.
void copy_rows_cuda(cuda::Stream& stream, const float* x, int64_t x_stride, float* y, int64_t y_stride, int64_t rows,
                    int64_t n);

// Rotary embedding in place over x [n_tokens][n_heads][head_dim] f32, the contract of
// backend/ref/rope.h (norm and neox modes, freq factors, linear scaling, YaRN). positions:
// [n_tokens] int32 in device memory; cfg.freq_factors, when set, points to [n_rot / 2] f32 in
// device memory. n_rot must be even and <= head_dim.
void rope_cuda(cuda::Stream& stream, float* x, const int32_t* positions, int64_t n_tokens, int n_heads,
               int head_dim, const RopeConfig& cfg);

// ---- Fused decode ops. Each equals, bit for bit, the unfused sequence named with it (the tests
// compare them on random data), with fewer launches and one pass over the activations. `xq`
// is an activation buffer in the layout of quantize_activations_cuda (backend/cuda/matmul.h:
// activation_q8_bytes(n, rows) bytes, 16-byte aligned), which matmul_cuda_q8 reads.

// add_cuda(x, delta, rows * n) (skipped when delta is null), then rms_norm_cuda(x, w, y, n, rows,
// eps), then quantize_activations_cuda(y, xq, n, rows); y (f32, [rows][n]) is written only when
// non-null. n % 32 == 0; x, delta and y do not alias.
void add_rms_norm_q8_cuda(cuda::Stream& stream, float* x, const float* delta, const float* w, float* y, void* xq,
                          int64_t n, int64_t rows, float eps);

// swiglu_cuda(gate, up, tmp, rows * n) then quantize_activations_cuda(tmp, xq, n, rows), without
// tmp. n % 32 == 0.
void swiglu_q8_cuda(cuda::Stream& stream, const float* gate, const float* up, void* xq, int64_t n, int64_t rows);

// rope_cuda(q, positions, n_tokens, n_head, head_dim_k, cfg), rope_cuda(k, ..., n_head_kv, ...),
// then kv_write_cuda(k, n_head_kv * head_dim_k, v, n_head_kv * head_dim_v, slots, n_tokens, ...)
// (backend/cuda/attention.h) in one kernel: q is rotated in place; k is read, rotated and
// written to the f16 cache only (k itself is left unrotated). q [n_tokens][n_head][head_dim_k],
// k [n_tokens][n_head_kv][head_dim_k], v [n_tokens][n_head_kv][head_dim_v] f32; caches and their
// row strides in halves as kv_write_cuda's; distinct tokens have distinct slots.
// With `norm` (q_norm and k_norm both set, device [head_dim_k] f32 each): first
// rms_norm_cuda(q, q_norm, q, head_dim_k, n_tokens * n_head, eps) and rms_norm_cuda(k, k_norm, k,
// head_dim_k, n_tokens * n_head_kv, eps) (qwen3-style q/k norms), in the same kernel and with
// their bits; q and k are then left normalized (q also rotated), as the separate ops leave them.
// k is not written without `norm`. head_dim_k < 1024.
struct QkNorm {
    const float* q_norm = nullptr;
    const float* k_norm = nullptr;
    float eps = 0.0f;
};
void rope_kv_write_cuda(cuda::Stream& stream, float* q, float* k, const float* v, const int32_t* positions,
                        const int32_t* slots, int64_t n_tokens, int n_head, int n_head_kv, int head_dim_k,
                        int head_dim_v, const RopeConfig& cfg, void* k_cache, int64_t k_row_stride, void* v_cache,
                        int64_t v_row_stride, const QkNorm& norm = {});

// Types get_rows_cuda reads directly: F32, F16, Q8_0.
bool can_get_rows_cuda(quant::QuantType type);
// out[i][:] = dequantized row ids[i] of `table` (n_cols values per row, rows `row_bytes` apart),
// i < n; ids [n] int32 in device memory, each in [0, rows of the table) (not checked on the
// device: the caller validates token ids). Table and row_bytes 4-byte aligned for F32, 2-byte
// aligned for F16 and Q8_0 (else invalid_argument).
void get_rows_cuda(cuda::Stream& stream, quant::QuantType type, const std::byte* table, size_t row_bytes,
                   const int32_t* ids, int64_t n, int64_t n_cols, float* out);

// out[i][:] = x[idx[i]][:] over rows of n_cols f32; idx [n] int32 in device memory. out must not
// alias x.
void gather_rows_cuda(cuda::Stream& stream, const float* x, const int32_t* idx, int64_t n, int64_t n_cols, float* out);

}  // namespace hearth::backend
