// CUDA element-wise and row ops (contract and numerics: ops.h). Simple, memory-bound kernels:
// one pass over their inputs, coalesced, no shared state between blocks. Every kernel keeps the
// programmatic-launch contract of launch.cuh (it waits for the previous kernel before touching
// memory), so each is queued as a programmatic dependent when the stream asks for it.
#include "backend/cuda/ops.h"

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cmath>

#include "backend/cuda/launch.cuh"
#include "backend/cuda/matmul_kernels.cuh"
#include "backend/cuda/op_check.h"
#include "backend/cuda/rope.cuh"
#include "quant/q8_0.h"

namespace hearth::backend {
namespace {

using cuda_kernels::begin_op;
using cuda_kernels::launch_kernel;
using cuda_kernels::pdl_launch_dependents;
using cuda_kernels::pdl_wait;
using cuda_kernels::RopeConsts;
using quant::QuantType;

static_assert(sizeof(quant::BlockQ8_0) == 34 && offsetof(quant::BlockQ8_0, qs) == 2);

cudaStream_t raw(cuda::Stream& s) { return static_cast<cudaStream_t>(s.handle()); }


unsigned blocks_for(int64_t n, int threads) { return (unsigned)((n + threads - 1) / threads); }

// ---- Row sums of squares for rms_norm, f64 like the reference. Rows of n < kWideMin take one
// warp each (rms_norm_kernel; 8 rows per block); wider rows one block each of wide_threads(n)
// threads, thread i summing the 4-value chunks i, i + nth, ... in order, then the warps' sums
// in order (block_sum): a 4096-value row is one 16-byte load per thread and a few barriers
// (the previous layout, 256 threads looping with 4-byte loads, took 7.8 us per row on the H100).
// The fused kernels use the same layouts and orders, so their scale is bit-identical to
// rms_norm_cuda's.
constexpr int64_t kWideMin = 1024;
constexpr int kWideMaxThreads = 1024;
int wide_threads(int64_t n) { return (int)std::min<int64_t>(kWideMaxThreads, ((n + 3) / 4 + 31) / 32 * 32); }

// Adds v*v of the first `count` of 4 values to s, in order.
__device__ __forceinline__ void add_squares(const float (&v)[4], int count, double& s) {
#pragma unroll
    for (int j = 0; j < 4; ++j)
        if (j < count) s += (double)__fmul_rn(v[j], v[j]);
}

// Chunk c of a row (values 4c .. 4c + 3, those below n; the rest 0): one 16-byte load when the
// row is 16-byte aligned. Returns how many are below n.
__device__ __forceinline__ int load_chunk(const float* xr, int64_t n, int64_t c, bool vec4, float (&v)[4]) {
    const int64_t e = 4 * c;
    const int count = n - e < 4 ? (int)(n - e) : 4;
    if (vec4 && count == 4) {
        const float4 f = *reinterpret_cast<const float4*>(xr + e);
        v[0] = f.x, v[1] = f.y, v[2] = f.z, v[3] = f.w;
    } else {
#pragma unroll
        for (int j = 0; j < 4; ++j) v[j] = j < count ? xr[e + j] : 0.0f;
    }
    return count;
}

// The block's total of its threads' partial sums `s`: each warp's (xor tree), then the warps in
// order. Every thread of the block must call it; every thread gets the total.
__device__ __forceinline__ double block_sum(double s) {
    __shared__ double part[kWideMaxThreads / 32];
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    if (threadIdx.x % 32 == 0) part[threadIdx.x / 32] = s;
    __syncthreads();
    double sum = 0.0;
    for (int i = 0; i < (int)blockDim.x / 32; ++i) sum += part[i];
    return sum;
}

__device__ __forceinline__ float rms_scale(double sum, int64_t n, float eps) {
    return 1.0f / sqrtf((float)(sum / (double)n) + eps);
}

// One warp's RMS norm of a row of n values (lane = this thread's lane): the lane-strided f64
// sum of the squares, an xor tree, then x * scale (* w when w is set). y may be x. Shared by
// rms_norm_kernel and the q/k norms of the rope + KV write kernel, which must give its bits.
__device__ __forceinline__ void warp_rms_norm_row(const float* x, const float* __restrict__ w, float* y, int64_t n,
                                                  int lane, float eps) {
    double sum = 0.0;
    for (int64_t i = lane; i < n; i += 32) {
        const float v = x[i];
        sum += (double)__fmul_rn(v, v);
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
    const float scale = rms_scale(sum, n, eps);
    for (int64_t i = lane; i < n; i += 32) {
        const float v = __fmul_rn(x[i], scale);
        y[i] = w ? __fmul_rn(v, w[i]) : v;
    }
}

// One row per block (n >= kWideMin), blockDim.x = wide_threads(n). y may be x (each thread
// rewrites only the chunks it read).
__global__ void __launch_bounds__(kWideMaxThreads) rms_norm_wide_kernel(const float* x, const float* __restrict__ w,
                                                                         float* y, int64_t n, float eps) {
    pdl_launch_dependents();
    pdl_wait();
    const float* xr = x + (int64_t)blockIdx.x * n;
    float* yr = y + (int64_t)blockIdx.x * n;
    const bool vec4 = reinterpret_cast<uintptr_t>(xr) % 16 == 0 && reinterpret_cast<uintptr_t>(yr) % 16 == 0;
    const int64_t n_chunks = (n + 3) / 4;
    double s = 0.0;
    for (int64_t c = threadIdx.x; c < n_chunks; c += blockDim.x) {
        float v[4];
        const int count = load_chunk(xr, n, c, vec4, v);
        add_squares(v, count, s);
    }
    const float scale = rms_scale(block_sum(s), n, eps);
    for (int64_t c = threadIdx.x; c < n_chunks; c += blockDim.x) {
        float v[4];
        const int count = load_chunk(xr, n, c, vec4, v);
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const float u = __fmul_rn(v[j], scale);
            v[j] = w && j < count ? __fmul_rn(u, w[4 * c + j]) : u;
        }
        if (vec4 && count == 4) {
            *reinterpret_cast<float4*>(yr + 4 * c) = make_float4(v[0], v[1], v[2], v[3]);
        } else {
#pragma unroll
            for (int j = 0; j < 4; ++j)
                if (j < count) yr[4 * c + j] = v[j];
        }
    }
}

// One warp per row (n < kWideMin), 8 rows per block.
__global__ void __launch_bounds__(256) rms_norm_kernel(const float* x, const float* __restrict__ w, float* y,
                                                       int64_t n, int64_t rows, float eps) {
    pdl_launch_dependents();
    pdl_wait();
    const int64_t row = (int64_t)blockIdx.x * 8 + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (row >= rows) return;  // whole warps
    warp_rms_norm_row(x + row * n, w, y + row * n, n, lane, eps);
}

__global__ void add_kernel(float* __restrict__ x, const float* __restrict__ y, int64_t n) {
    pdl_launch_dependents();
    pdl_wait();
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] += y[i];
}

__global__ void add_bias_kernel(float* __restrict__ y, const float* __restrict__ b, int64_t rows, int64_t n) {
    pdl_launch_dependents();
    pdl_wait();
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < rows * n) y[i] += b[i % n];
}

__global__ void swiglu_kernel(const float* gate, const float* up, float* y, int64_t n) {
    pdl_launch_dependents();
    pdl_wait();
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const float g = gate[i];
    y[i] = __fmul_rn(__fdiv_rn(g, 1.0f + expf(-g)), up[i]);
}

// gelu(x) of backend/ref/unary.cpp, each operation rounded to f32 in the reference's order
// (the _rn intrinsics keep nvcc from fusing them into multiply-adds).
__device__ __forceinline__ float gelu_f32(float x) {
    constexpr float kSqrt2OverPi = 0.79788456080286535587989211986876f;
    constexpr float kCoef = 0.044715f;
    const float inner = __fadd_rn(1.0f, __fmul_rn(__fmul_rn(kCoef, x), x));
    const float t = tanhf(__fmul_rn(__fmul_rn(kSqrt2OverPi, x), inner));
    return __fmul_rn(__fmul_rn(0.5f, x), __fadd_rn(1.0f, t));
}

__global__ void gelu_kernel(const float* x, float* y, int64_t n) {
    pdl_launch_dependents();
    pdl_wait();
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = gelu_f32(x[i]);
}

__global__ void geglu_kernel(const float* gate, const float* up, float* y, int64_t n) {
    pdl_launch_dependents();
    pdl_wait();
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const float u = up[i];
    y[i] = __fmul_rn(gelu_f32(gate[i]), u);
}

// swiglu_oai_ref: std::min(g, limit) is (limit < g ? limit : g) and std::clamp(u, -limit, limit)
// is (u < -limit ? -limit : limit < u ? limit : u), written out so NaNs pass through alike.
__global__ void swiglu_oai_kernel(const float* gate, const float* up, float* y, int64_t n, float alpha, float limit) {
    pdl_launch_dependents();
    pdl_wait();
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const float g = gate[i], u0 = up[i];
    const float x = limit < g ? limit : g;
    const float u = u0 < -limit ? -limit : (limit < u0 ? limit : u0);
    const float e = expf(__fmul_rn(alpha, -x));
    y[i] = __fmul_rn(__fdiv_rn(x, __fadd_rn(1.0f, e)), __fadd_rn(u, 1.0f));
}

// ---- layer_norm: the rms_norm layouts (one warp per row below kWideMin, else one block of
// wide_threads(n) threads), three passes over the row: the f64 sum of x, the f64 sum of
// (x - mean)^2 with the f32 difference squared exactly in f64 (as the reference: a product of two
// f32 values is exact in f64, so a fused multiply-add there changes nothing), then the output.
// Every thread reads and writes only its own elements, so y may be x.
__device__ __forceinline__ float layer_norm_out(float x, float mean, float scale, const float* w, const float* b,
                                                int64_t i) {
    float v = __fmul_rn(__fsub_rn(x, mean), scale);
    if (w) v = __fmul_rn(v, w[i]);
    if (b) v = __fadd_rn(v, b[i]);
    return v;
}

__device__ __forceinline__ float layer_norm_mean(double sum, int64_t n) { return (float)(sum / (double)n); }

// One row per block (n >= kWideMin), blockDim.x = wide_threads(n).
__global__ void __launch_bounds__(kWideMaxThreads) layer_norm_wide_kernel(const float* x, const float* __restrict__ w,
                                                                           const float* __restrict__ b, float* y,
                                                                           int64_t n, float eps) {
    pdl_launch_dependents();
    pdl_wait();
    const float* xr = x + (int64_t)blockIdx.x * n;
    float* yr = y + (int64_t)blockIdx.x * n;
    const bool vec4 = reinterpret_cast<uintptr_t>(xr) % 16 == 0 && reinterpret_cast<uintptr_t>(yr) % 16 == 0;
    const int64_t n_chunks = (n + 3) / 4;
    double s = 0.0;
    for (int64_t c = threadIdx.x; c < n_chunks; c += blockDim.x) {
        float v[4];
        const int count = load_chunk(xr, n, c, vec4, v);
#pragma unroll
        for (int j = 0; j < 4; ++j)
            if (j < count) s += (double)v[j];
    }
    const float mean = layer_norm_mean(block_sum(s), n);
    __syncthreads();  // block_sum's shared partials are read by every thread before the next call rewrites them
    double var = 0.0;
    for (int64_t c = threadIdx.x; c < n_chunks; c += blockDim.x) {
        float v[4];
        const int count = load_chunk(xr, n, c, vec4, v);
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            if (j < count) {
                const double d = (double)__fsub_rn(v[j], mean);
                var += d * d;
            }
        }
    }
    const float scale = rms_scale(block_sum(var), n, eps);
    for (int64_t c = threadIdx.x; c < n_chunks; c += blockDim.x) {
        float v[4];
        const int count = load_chunk(xr, n, c, vec4, v);
#pragma unroll
        for (int j = 0; j < 4; ++j) v[j] = j < count ? layer_norm_out(v[j], mean, scale, w, b, 4 * c + j) : 0.0f;
        if (vec4 && count == 4) {
            *reinterpret_cast<float4*>(yr + 4 * c) = make_float4(v[0], v[1], v[2], v[3]);
        } else {
#pragma unroll
            for (int j = 0; j < 4; ++j)
                if (j < count) yr[4 * c + j] = v[j];
        }
    }
}

// One warp per row (n < kWideMin), 8 rows per block.
__global__ void __launch_bounds__(256) layer_norm_kernel(const float* x, const float* __restrict__ w,
                                                         const float* __restrict__ b, float* y, int64_t n,
                                                         int64_t rows, float eps) {
    pdl_launch_dependents();
    pdl_wait();
    const int64_t row = (int64_t)blockIdx.x * 8 + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (row >= rows) return;  // whole warps
    const float* xr = x + row * n;
    double sum = 0.0;
    for (int64_t i = lane; i < n; i += 32) sum += (double)xr[i];
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
    const float mean = layer_norm_mean(sum, n);
    double var = 0.0;
    for (int64_t i = lane; i < n; i += 32) {
        const double d = (double)__fsub_rn(xr[i], mean);
        var += d * d;
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) var += __shfl_xor_sync(0xffffffffu, var, o);
    const float scale = rms_scale(var, n, eps);
    float* yr = y + row * n;
    for (int64_t i = lane; i < n; i += 32) yr[i] = layer_norm_out(xr[i], mean, scale, w, b, i);
}

__global__ void scale_kernel(float* __restrict__ x, float s, int64_t n) {
    pdl_launch_dependents();
    pdl_wait();
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] = __fmul_rn(x[i], s);
}

__global__ void scale_rows_kernel(float* __restrict__ x, const float* __restrict__ scales, int64_t rows, int64_t n) {
    pdl_launch_dependents();
    pdl_wait();
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < rows * n) x[i] = __fmul_rn(x[i], scales[i / n]);
}

__global__ void softcap_kernel(float* __restrict__ x, float cap, int64_t n) {
    pdl_launch_dependents();
    pdl_wait();
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] = __fmul_rn(tanhf(__fdiv_rn(x[i], cap)), cap);
}

__global__ void copy_rows_kernel(const float* __restrict__ x, int64_t x_stride, float* __restrict__ y,
                                 int64_t y_stride, int64_t rows, int64_t n) {
    pdl_launch_dependents();
    pdl_wait();
    const int64_t gid = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (gid >= rows * n) return;
    const int64_t r = gid / n, i = gid % n;
    y[r * y_stride + i] = x[r * x_stride + i];
}

float yarn_corr_dim(int n_rot, int n_ctx_orig, float n_rotations, float base) {
    return n_rot * std::log(n_ctx_orig / (n_rotations * 2.0f * (float)M_PI)) / (2.0f * std::log(base));
}

// Rotates pair i (of n_rot / 2) of one head row: reads src[a], src[b], writes the rotated pair
// through `put` (a, b, value a, value b); the arithmetic is rope.cuh's rope_rotate.
template <class Put>
__device__ __forceinline__ void rope_pair(const float* src, int32_t pos, int i, const RopeConsts& c,
                                          Put put) {
    const int n_pairs = c.n_rot / 2;
    const int a = c.neox ? i : 2 * i;
    const int b = c.neox ? i + n_pairs : 2 * i + 1;
    float ya, yb;
    cuda_kernels::rope_rotate(src[a], src[b], pos, i, c, ya, yb);
    put(a, b, ya, yb);
}

// One thread per rotated pair (token, head, i).
__global__ void rope_kernel(float* __restrict__ x, const int32_t* __restrict__ positions, int64_t n_tokens,
                            RopeConsts c) {
    pdl_launch_dependents();
    pdl_wait();
    const int n_pairs = c.n_rot / 2;
    const int64_t gid = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (gid >= n_tokens * c.n_heads * n_pairs) return;
    const int i = (int)(gid % n_pairs);
    const int64_t th = gid / n_pairs;  // token * n_heads + head
    float* v = x + th * c.head_dim;
    rope_pair(v, positions[th / c.n_heads], i, c, [v](int a, int b, float ya, float yb) { v[a] = ya, v[b] = yb; });
}

// Fused rope of q and k plus the KV write (ops.h). Per token, one thread for each: rotated q pair
// (n_heads * n_pairs), k pair or unrotated k value (n_head_kv * (n_pairs + head_dim - n_rot)),
// v value (v_width). K values go to the cache only.
struct KvDst {
    __half *k_cache, *v_cache;
    int64_t k_row_stride, v_row_stride;
    int n_head_kv, head_dim_v;
};

__global__ void rope_kv_write_kernel(float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,
                                     const int32_t* __restrict__ positions, const int32_t* __restrict__ slots,
                                     int64_t n_tokens, RopeConsts c, KvDst dst) {
    pdl_launch_dependents();
    pdl_wait();
    const int n_pairs = c.n_rot / 2;
    const int k_per_head = n_pairs + c.head_dim - c.n_rot;
    const int n_q = c.n_heads * n_pairs, n_k = dst.n_head_kv * k_per_head, v_width = dst.n_head_kv * dst.head_dim_v;
    const int per_token = n_q + n_k + v_width;
    const int64_t gid = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (gid >= n_tokens * per_token) return;
    const int64_t t = gid / per_token;
    int j = (int)(gid % per_token);
    const int32_t pos = positions[t];
    if (j < n_q) {
        float* row = q + (t * c.n_heads + j / n_pairs) * c.head_dim;
        rope_pair(row, pos, j % n_pairs, c, [row](int a, int b, float ya, float yb) { row[a] = ya, row[b] = yb; });
        return;
    }
    const int64_t slot = slots[t];
    j -= n_q;
    if (j < n_k) {
        const int h = j / k_per_head, r = j % k_per_head;
        const float* row = k + (t * dst.n_head_kv + h) * c.head_dim;
        __half* out = dst.k_cache + slot * dst.k_row_stride + (int64_t)h * c.head_dim;
        if (r < n_pairs) {
            rope_pair(row, pos, r, c, [out](int a, int b, float ya, float yb) {
                out[a] = __float2half_rn(ya), out[b] = __float2half_rn(yb);
            });
        } else {
            const int e = c.n_rot + (r - n_pairs);
            out[e] = __float2half_rn(row[e]);
        }
        return;
    }
    j -= n_k;
    dst.v_cache[slot * dst.v_row_stride + j] = __float2half_rn(v[t * v_width + j]);
}

// The same with the per-head RMS norms of q and k first (ops.h): one warp per head (q heads, then
// k heads; blockIdx.x the token, 8 heads per block, so a single-token step spreads over
// (n_head + n_head_kv) / 8 blocks): rms_norm_kernel's warp_rms_norm_row, the normed head stored back (q and k in place, as rms_norm_cuda
// leaves them), then the warp's lanes rotate its pairs; the token's blocks write V between them.
__global__ void __launch_bounds__(256) qk_norm_rope_kv_write_kernel(
    float* __restrict__ q, float* __restrict__ k, const float* __restrict__ v, const float* __restrict__ q_norm,
    const float* __restrict__ k_norm, float eps, const int32_t* __restrict__ positions,
    const int32_t* __restrict__ slots, RopeConsts c, KvDst dst) {
    pdl_launch_dependents();
    pdl_wait();
    const int64_t t = blockIdx.x;
    const int lane = threadIdx.x % 32;
    const int32_t pos = positions[t];
    const int64_t slot = slots[t];
    const int hd = c.head_dim, n_pairs = c.n_rot / 2;
    const int v_width = dst.n_head_kv * dst.head_dim_v;
    for (int j = blockIdx.y * blockDim.x + threadIdx.x; j < v_width; j += gridDim.y * blockDim.x)
        dst.v_cache[slot * dst.v_row_stride + j] = __float2half_rn(v[t * v_width + j]);
    const int h = blockIdx.y * (blockDim.x / 32) + threadIdx.x / 32;
    if (h < c.n_heads + dst.n_head_kv) {
        const bool is_q = h < c.n_heads;
        const int kh = h - c.n_heads;
        float* row = is_q ? q + (t * c.n_heads + h) * hd : k + (t * dst.n_head_kv + kh) * hd;
        warp_rms_norm_row(row, is_q ? q_norm : k_norm, row, hd, lane, eps);
        __syncwarp();
        if (is_q) {
            for (int i = lane; i < n_pairs; i += 32)
                rope_pair(row, pos, i, c, [row](int a, int b, float ya, float yb) { row[a] = ya, row[b] = yb; });
        } else {
            __half* out = dst.k_cache + slot * dst.k_row_stride + (int64_t)kh * hd;
            for (int i = lane; i < n_pairs; i += 32)
                rope_pair(row, pos, i, c, [out](int a, int b, float ya, float yb) {
                    out[a] = __float2half_rn(ya), out[b] = __float2half_rn(yb);
                });
            for (int e = c.n_rot + lane; e < hd; e += 32) out[e] = __float2half_rn(row[e]);
        }
    }
}

// ---- Fused add + rms_norm + activation quantization (ops.h). Phase 1 adds delta and sums the
// squares in exactly rms_norm_cuda's order for the same n (so the scale is bit-identical);
// phase 2 normalizes and quantizes with 8 lanes per block of 32 values, as quantize_q8_kernel.

// n < kWideMin: one warp per row, 8 rows per block (rms_norm_kernel's layout).
__global__ void __launch_bounds__(256) add_rms_norm_q8_kernel(float* x, const float* __restrict__ delta,
                                                                const float* __restrict__ w, float* __restrict__ y,
                                                                int8_t* __restrict__ qs, float2* __restrict__ ds,
                                                                int n, int rows, float eps) {
    pdl_launch_dependents();  // lets the next matvec start streaming its weights
    pdl_wait();
    const int row = blockIdx.x * 8 + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (row >= rows) return;  // whole warps
    float* xr = x + (int64_t)row * n;
    double sum = 0.0;
    const float* dr = delta ? delta + (int64_t)row * n : nullptr;
    for (int i = lane; i < n; i += 32) {
        float v = xr[i];
        if (dr) {
            v += dr[i];
            xr[i] = v;
        }
        sum += (double)__fmul_rn(v, v);
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
    __syncwarp();  // phase 1's stores to x before phase 2's loads of other lanes' values
    const float scale = rms_scale(sum, n, eps);
    const int n_blocks = n / 32;
    const int sub = lane & 7;
    for (int b0 = 0; b0 < n_blocks; b0 += 4) {  // uniform trip count within the warp
        const int b = b0 + lane / 8;
        const bool in = b < n_blocks;
        const int e = (in ? b : 0) * 32 + 4 * sub;
        float v[4];
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const float u = __fmul_rn(xr[e + i], scale);
            v[i] = w ? __fmul_rn(u, w[e + i]) : u;
        }
        if (y && in) {
#pragma unroll
            for (int i = 0; i < 4; ++i) y[(int64_t)row * n + e + i] = v[i];
        }
        cuda_kernels::quantize_4(v, in, sub, qs + (int64_t)row * n + e, ds + (int64_t)row * n_blocks + (in ? b : 0));
    }
}

// n >= kWideMin (n % 32 == 0): one row per block of wide_threads(n) threads, chunk c of 4 values
// in thread c % nth (rms_norm_wide_kernel's order); the first kKeep chunks of each thread stay
// in registers between the phases. Chunk c is sub-block c % 8 of activation block c / 8, and
// nth is a multiple of 32, so each block of 32 values is the 8 lanes of one quantize_4 call.
constexpr int kKeep = 4;  // chunks per thread kept: rows up to 16384 values are read once

__device__ __forceinline__ void load4(const float* p, bool vec4, float (&v)[4]) {
    if (vec4) {
        const float4 f = *reinterpret_cast<const float4*>(p);
        v[0] = f.x, v[1] = f.y, v[2] = f.z, v[3] = f.w;
    } else {
#pragma unroll
        for (int j = 0; j < 4; ++j) v[j] = p[j];
    }
}
__device__ __forceinline__ void store4(float* p, bool vec4, const float (&v)[4]) {
    if (vec4) {
        *reinterpret_cast<float4*>(p) = make_float4(v[0], v[1], v[2], v[3]);
    } else {
#pragma unroll
        for (int j = 0; j < 4; ++j) p[j] = v[j];
    }
}

__global__ void __launch_bounds__(kWideMaxThreads) add_rms_norm_q8_wide_kernel(
    float* x, const float* __restrict__ delta, const float* __restrict__ w, float* __restrict__ y,
    int8_t* __restrict__ qs, float2* __restrict__ ds, int n, float eps, bool vec4) {
    pdl_launch_dependents();  // lets the next matvec start streaming its weights
    pdl_wait();
    const int row = blockIdx.x, nth = blockDim.x, n_chunks = n / 4;
    float* xr = x + (int64_t)row * n;
    const float* dr = delta ? delta + (int64_t)row * n : nullptr;
    // Phase 1: x += delta (written back), sum of squares.
    auto phase1 = [&](int c, float (&v)[4], double& s) {
        load4(xr + 4 * c, vec4, v);
        if (dr) {
            float d[4];
            load4(dr + 4 * c, vec4, d);
#pragma unroll
            for (int j = 0; j < 4; ++j) v[j] += d[j];
            store4(xr + 4 * c, vec4, v);
        }
        add_squares(v, 4, s);
    };
    float keep[kKeep][4] = {}, keep_w[kKeep][4] = {};  // values and norm weights of the first chunks
    double s = 0.0;
#pragma unroll
    for (int k = 0; k < kKeep; ++k) {
        const int c = threadIdx.x + k * nth;
        if (c < n_chunks) {
            if (w) load4(w + 4 * c, vec4, keep_w[k]);  // issued before the barrier, used after it
            phase1(c, keep[k], s);
        }
    }
    for (int c = threadIdx.x + kKeep * nth; c < n_chunks; c += nth) {
        float v[4];
        phase1(c, v, s);
    }
    const float scale = rms_scale(block_sum(s), n, eps);  // its barrier orders phase 1's stores
    // Phase 2: the same trip count in every thread (quantize_4 shuffles within 8 lanes).
    const int iters = (n_chunks + nth - 1) / nth;
    auto phase2 = [&](int c, float (&v)[4], const float (&wv)[4]) {
        const bool in = c < n_chunks;
        const int cc = in ? c : 0;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const float u = __fmul_rn(v[j], scale);
            v[j] = w ? __fmul_rn(u, wv[j]) : u;
        }
        if (y && in) store4(y + (int64_t)row * n + 4 * cc, vec4, v);
        cuda_kernels::quantize_4(v, in, cc & 7, qs + (int64_t)row * n + 4 * cc, ds + (int64_t)row * (n / 32) + cc / 8);
    };
#pragma unroll
    for (int k = 0; k < kKeep; ++k) {
        if (k < iters) phase2(threadIdx.x + k * nth, keep[k], keep_w[k]);
    }
    for (int k = kKeep; k < iters; ++k) {
        const int c = threadIdx.x + k * nth;
        float v[4] = {0.0f, 0.0f, 0.0f, 0.0f}, wv[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        if (c < n_chunks) {
            load4(xr + 4 * c, vec4, v);
            if (w) load4(w + 4 * c, vec4, wv);
        }
        phase2(c, v, wv);
    }
}

// Fused swiglu + quantization: 8 threads per block of 32 values, 4 values each.
__global__ void __launch_bounds__(256) swiglu_q8_kernel(const float* __restrict__ gate, const float* __restrict__ up,
                                                          int8_t* __restrict__ qs, float2* __restrict__ ds,
                                                          int n_blocks) {
    pdl_launch_dependents();  // lets the down matvec start streaming its weights
    pdl_wait();
    const int gid = blockIdx.x * blockDim.x + threadIdx.x;
    const int blk = gid >> 3, sub = gid & 7;
    const bool active = blk < n_blocks;
    const int64_t e0 = (int64_t)(active ? blk : 0) * 32 + 4 * sub;  // == t * n + 32 * b + 4 * sub
    float v[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const float g = gate[e0 + i];
        v[i] = __fmul_rn(__fdiv_rn(g, 1.0f + expf(-g)), up[e0 + i]);
    }
    cuda_kernels::quantize_4(v, active, sub, qs + e0, ds + (active ? blk : 0));
}

// One thread per output value.
template <QuantType kType>
__global__ void get_rows_kernel(const std::byte* __restrict__ table, size_t row_bytes, const int32_t* __restrict__ ids,
                                int64_t n, int64_t n_cols, float* __restrict__ out) {
    pdl_launch_dependents();
    pdl_wait();
    const int64_t gid = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (gid >= n * n_cols) return;
    const int64_t r = gid / n_cols, c = gid % n_cols;
    const std::byte* row = table + (size_t)ids[r] * row_bytes;
    float v;
    if constexpr (kType == QuantType::f32) {
        v = reinterpret_cast<const float*>(row)[c];
    } else if constexpr (kType == QuantType::f16) {
        v = __half2float(reinterpret_cast<const __half*>(row)[c]);
    } else {  // q8_0: blocks of 34 bytes, fp16 scale then 32 int8
        const std::byte* blk = row + (c / 32) * 34;
        const float d = __half2float(*reinterpret_cast<const __half*>(blk));
        v = d * (float)reinterpret_cast<const int8_t*>(blk + 2)[c % 32];
    }
    out[gid] = v;
}

__global__ void gather_rows_kernel(const float* __restrict__ x, const int32_t* __restrict__ idx, int64_t n,
                                   int64_t n_cols, float* __restrict__ out) {
    pdl_launch_dependents();
    pdl_wait();
    const int64_t gid = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (gid >= n * n_cols) return;
    const int64_t r = gid / n_cols, c = gid % n_cols;
    out[gid] = x[(int64_t)idx[r] * n_cols + c];
}

constexpr int kThreads = 256;

// Queues kernel<<<grid, block>>>(args...) on the stream, as a programmatic dependent when the
// stream asks for it (every kernel of this file keeps launch.cuh's contract); records errors.
template <class... KArgs, class... Args>
void launch(cuda::Stream& stream, const char* what, void (*kernel)(KArgs...), dim3 grid, unsigned block,
            Args&&... args) {
    stream.device().check(cuda_kernels::launch_kernel(stream.programmatic(), kernel, grid, dim3(block), 0,
                                                      raw(stream), std::forward<Args>(args)...),
                          what);
}

}  // namespace

void rms_norm_cuda(cuda::Stream& stream, const float* x, const float* w, float* y, int64_t n, int64_t rows, float eps) {
    if (!begin_op(stream, n > 0 && rows >= 0 && rows < INT_MAX, "rms_norm_cuda", rows)) return;
    if (n >= kWideMin) {
        launch(stream, "rms_norm_cuda launch", rms_norm_wide_kernel, (unsigned)rows, (unsigned)wide_threads(n), x, w, y,
               n, eps);
    } else {
        launch(stream, "rms_norm_cuda launch", rms_norm_kernel, blocks_for(rows, 8), 256u, x, w, y, n, rows, eps);
    }
}

void add_cuda(cuda::Stream& stream, float* x, const float* y, int64_t n) {
    if (!begin_op(stream, n >= 0, "add_cuda", n)) return;
    launch(stream, "add_cuda launch", add_kernel, blocks_for(n, kThreads), (unsigned)kThreads, x, y, n);
}

void add_bias_cuda(cuda::Stream& stream, float* y, const float* b, int64_t rows, int64_t n) {
    if (!begin_op(stream, rows >= 0 && n >= 0, "add_bias_cuda", rows * n)) return;
    launch(stream, "add_bias_cuda launch", add_bias_kernel, blocks_for(rows * n, kThreads), (unsigned)kThreads, y, b,
           rows, n);
}

void swiglu_cuda(cuda::Stream& stream, const float* gate, const float* up, float* y, int64_t n) {
    if (!begin_op(stream, n >= 0, "swiglu_cuda", n)) return;
    launch(stream, "swiglu_cuda launch", swiglu_kernel, blocks_for(n, kThreads), (unsigned)kThreads, gate, up, y, n);
}

void gelu_cuda(cuda::Stream& stream, const float* x, float* y, int64_t n) {
    if (!begin_op(stream, n >= 0 && (n == 0 || (x && y)), "gelu_cuda", n)) return;
    launch(stream, "gelu_cuda launch", gelu_kernel, blocks_for(n, kThreads), (unsigned)kThreads, x, y, n);
}

void geglu_cuda(cuda::Stream& stream, const float* gate, const float* up, float* y, int64_t n) {
    if (!begin_op(stream, n >= 0 && (n == 0 || (gate && up && y)), "geglu_cuda", n)) return;
    launch(stream, "geglu_cuda launch", geglu_kernel, blocks_for(n, kThreads), (unsigned)kThreads, gate, up, y, n);
}

void swiglu_oai_cuda(cuda::Stream& stream, const float* gate, const float* up, float* y, int64_t n, float alpha,
                     float limit) {
    if (!begin_op(stream, n >= 0 && (n == 0 || (gate && up && y)), "swiglu_oai_cuda", n)) return;
    launch(stream, "swiglu_oai_cuda launch", swiglu_oai_kernel, blocks_for(n, kThreads), (unsigned)kThreads, gate, up,
           y, n, alpha, limit);
}

void layer_norm_cuda(cuda::Stream& stream, const float* x, const float* w, const float* b, float* y, int64_t n,
                     int64_t rows, float eps) {
    const bool args_ok = n > 0 && rows >= 0 && rows < INT_MAX && (rows == 0 || (x && y));
    if (!begin_op(stream, args_ok, "layer_norm_cuda", rows)) return;
    if (n >= kWideMin) {
        launch(stream, "layer_norm_cuda launch", layer_norm_wide_kernel, (unsigned)rows, (unsigned)wide_threads(n), x,
               w, b, y, n, eps);
    } else {
        launch(stream, "layer_norm_cuda launch", layer_norm_kernel, blocks_for(rows, 8), 256u, x, w, b, y, n, rows,
               eps);
    }
}

void scale_cuda(cuda::Stream& stream, float* x, float s, int64_t n) {
    if (!begin_op(stream, n >= 0 && (n == 0 || x), "scale_cuda", n)) return;
    launch(stream, "scale_cuda launch", scale_kernel, blocks_for(n, kThreads), (unsigned)kThreads, x, s, n);
}

void scale_rows_cuda(cuda::Stream& stream, float* x, const float* scales, int64_t rows, int64_t n) {
    const bool args_ok = rows >= 0 && n >= 0 && (rows * n == 0 || (x && scales));
    if (!begin_op(stream, args_ok, "scale_rows_cuda", rows * n)) return;
    launch(stream, "scale_rows_cuda launch", scale_rows_kernel, blocks_for(rows * n, kThreads), (unsigned)kThreads, x,
           scales, rows, n);
}

void softcap_cuda(cuda::Stream& stream, float* x, float cap, int64_t n) {
    if (!begin_op(stream, cap > 0.0f && n >= 0 && (n == 0 || x), "softcap_cuda", n)) return;
    launch(stream, "softcap_cuda launch", softcap_kernel, blocks_for(n, kThreads), (unsigned)kThreads, x, cap, n);
}

void copy_rows_cuda(cuda::Stream& stream, const float* x, int64_t x_stride, float* y, int64_t y_stride, int64_t rows,
                    int64_t n) {
    const bool args_ok = rows >= 0 && n >= 0 && x_stride >= n && y_stride >= n && (rows * n == 0 || (x && y));
    if (!begin_op(stream, args_ok, "copy_rows_cuda", rows * n)) return;
    launch(stream, "copy_rows_cuda launch", copy_rows_kernel, blocks_for(rows * n, kThreads), (unsigned)kThreads, x,
           x_stride, y, y_stride, rows, n);
}

namespace cuda_kernels {

RopeConsts make_rope_consts(const RopeConfig& cfg, int n_heads, int head_dim) {
    RopeConsts c{};
    c.n_rot = cfg.n_rot, c.head_dim = head_dim, c.n_heads = n_heads, c.neox = cfg.neox;
    c.theta_scale = std::pow(cfg.freq_base, -2.0f / cfg.n_rot);
    c.freq_scale = cfg.freq_scale, c.ext_factor = cfg.ext_factor, c.mscale = cfg.attn_factor;
    if (cfg.ext_factor != 0.0f) {
        c.corr_lo = std::max(0.0f, std::floor(yarn_corr_dim(cfg.n_rot, cfg.n_ctx_orig, cfg.beta_fast, cfg.freq_base)));
        c.corr_hi = std::min((float)(cfg.n_rot - 1),
                             std::ceil(yarn_corr_dim(cfg.n_rot, cfg.n_ctx_orig, cfg.beta_slow, cfg.freq_base)));
        c.mscale *= 1.0f + 0.1f * std::log(1.0f / cfg.freq_scale);
    }
    c.freq_factors = cfg.freq_factors;
    return c;
}

}  // namespace cuda_kernels

namespace {

using cuda_kernels::make_rope_consts;

// qs and ds of an activation buffer (the layout of quantize_activations_cuda).
struct Q8Out {
    int8_t* qs;
    float2* ds;
};
Q8Out q8_out(void* xq, int64_t n, int64_t rows) {
    auto* qs = static_cast<int8_t*>(xq);
    return {qs, reinterpret_cast<float2*>(qs + cuda_kernels::act_q8_ds_offset(n, rows))};
}

}  // namespace

void rope_cuda(cuda::Stream& stream, float* x, const int32_t* positions, int64_t n_tokens, int n_heads, int head_dim,
               const RopeConfig& cfg) {
    const bool args_ok = cfg.n_rot > 0 && cfg.n_rot % 2 == 0 && cfg.n_rot <= head_dim && n_heads > 0 && n_tokens >= 0;
    if (!begin_op(stream, args_ok, "rope_cuda", n_tokens)) return;
    const RopeConsts c = make_rope_consts(cfg, n_heads, head_dim);
    const int64_t n_threads = n_tokens * n_heads * (cfg.n_rot / 2);
    launch(stream, "rope_cuda launch", rope_kernel, blocks_for(n_threads, kThreads), (unsigned)kThreads, x, positions,
           n_tokens, c);
}

void rope_kv_write_cuda(cuda::Stream& stream, float* q, float* k, const float* v, const int32_t* positions,
                        const int32_t* slots, int64_t n_tokens, int n_head, int n_head_kv, int head_dim_k,
                        int head_dim_v, const RopeConfig& cfg, void* k_cache, int64_t k_row_stride, void* v_cache,
                        int64_t v_row_stride, const QkNorm& norm) {
    const bool args_ok = cfg.n_rot > 0 && cfg.n_rot % 2 == 0 && cfg.n_rot <= head_dim_k && n_head > 0 &&
                         n_head_kv > 0 && head_dim_v >= 0 && n_tokens >= 0 && n_tokens < INT_MAX &&
                         (norm.q_norm == nullptr) == (norm.k_norm == nullptr) && head_dim_k < kWideMin &&
                         (int64_t)n_head + n_head_kv < 65535 * 8;
    if (!begin_op(stream, args_ok, "rope_kv_write_cuda", n_tokens)) return;
    const RopeConsts c = make_rope_consts(cfg, n_head, head_dim_k);
    const KvDst dst{static_cast<__half*>(k_cache), static_cast<__half*>(v_cache), k_row_stride, v_row_stride, n_head_kv,
                    head_dim_v};
    if (norm.q_norm != nullptr) {
        const dim3 grid((unsigned)n_tokens, (unsigned)((n_head + n_head_kv + 7) / 8));
        launch(stream, "rope_kv_write_cuda launch", qk_norm_rope_kv_write_kernel, grid, 256u, q, k, v, norm.q_norm,
               norm.k_norm, norm.eps, positions, slots, c, dst);
        return;
    }
    const int n_pairs = cfg.n_rot / 2;
    const int64_t per_token = (int64_t)n_head * n_pairs + (int64_t)n_head_kv * (n_pairs + head_dim_k - cfg.n_rot) +
                              (int64_t)n_head_kv * head_dim_v;
    launch(stream, "rope_kv_write_cuda launch", rope_kv_write_kernel, blocks_for(n_tokens * per_token, kThreads),
           (unsigned)kThreads, q, k, v, positions, slots, n_tokens, c, dst);
}

void add_rms_norm_q8_cuda(cuda::Stream& stream, float* x, const float* delta, const float* w, float* y, void* xq,
                          int64_t n, int64_t rows, float eps) {
    const bool args_ok = n > 0 && n % 32 == 0 && rows >= 0 && n * rows < INT_MAX &&
                         reinterpret_cast<uintptr_t>(xq) % 16 == 0;
    if (!begin_op(stream, args_ok, "add_rms_norm_q8_cuda", rows)) return;
    const Q8Out o = q8_out(xq, n, rows);
    if (n >= kWideMin) {
        auto a16 = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
        const bool vec4 = a16(x) && a16(delta) && a16(w) && a16(y);  // null is aligned
        launch(stream, "add_rms_norm_q8_cuda launch", add_rms_norm_q8_wide_kernel, (unsigned)rows,
               (unsigned)wide_threads(n), x, delta, w, y, o.qs, o.ds, (int)n, eps, vec4);
    } else {
        launch(stream, "add_rms_norm_q8_cuda launch", add_rms_norm_q8_kernel, blocks_for(rows, 8), 256u, x, delta, w,
               y, o.qs, o.ds, (int)n, (int)rows, eps);
    }
}

void swiglu_q8_cuda(cuda::Stream& stream, const float* gate, const float* up, void* xq, int64_t n, int64_t rows) {
    const bool args_ok = n > 0 && n % 32 == 0 && rows >= 0 && n * rows < INT_MAX / 8 &&
                         reinterpret_cast<uintptr_t>(xq) % 16 == 0;
    if (!begin_op(stream, args_ok, "swiglu_q8_cuda", rows)) return;
    const Q8Out o = q8_out(xq, n, rows);
    const int n_blocks = (int)(n / 32 * rows);
    launch(stream, "swiglu_q8_cuda launch", swiglu_q8_kernel, blocks_for((int64_t)n_blocks * 8, kThreads),
           (unsigned)kThreads, gate, up, o.qs, o.ds, n_blocks);
}

bool can_get_rows_cuda(QuantType type) {
    return type == QuantType::f32 || type == QuantType::f16 || type == QuantType::q8_0;
}

void get_rows_cuda(cuda::Stream& stream, QuantType type, const std::byte* table, size_t row_bytes, const int32_t* ids,
                   int64_t n, int64_t n_cols, float* out) {
    cuda::Device& dev = stream.device();
    if (dev.is_failed()) return;
    if (!can_get_rows_cuda(type)) {
        dev.fail(error(StatusCode::unsupported, strformat("get_rows_cuda: no kernel for type %s", quant::type_name(type))));
        return;
    }
    const size_t align = type == QuantType::f32 ? 4 : 2;
    const bool args_ok = n >= 0 && n_cols >= 0 && n_cols % quant::block_size(type) == 0 &&
                         row_bytes >= quant::row_size(type, n_cols) && row_bytes % align == 0 &&
                         reinterpret_cast<uintptr_t>(table) % align == 0;
    if (!begin_op(stream, args_ok, "get_rows_cuda", n * n_cols)) return;
    const unsigned grid = blocks_for(n * n_cols, kThreads);
    auto* kernel = type == QuantType::f32   ? get_rows_kernel<QuantType::f32>
                   : type == QuantType::f16 ? get_rows_kernel<QuantType::f16>
                                            : get_rows_kernel<QuantType::q8_0>;
    launch(stream, "get_rows_cuda launch", kernel, grid, (unsigned)kThreads, table, row_bytes, ids, n, n_cols, out);
}

void gather_rows_cuda(cuda::Stream& stream, const float* x, const int32_t* idx, int64_t n, int64_t n_cols, float* out) {
    if (!begin_op(stream, n >= 0 && n_cols >= 0, "gather_rows_cuda", n * n_cols)) return;
    launch(stream, "gather_rows_cuda launch", gather_rows_kernel, blocks_for(n * n_cols, kThreads), (unsigned)kThreads,
           x, idx, n, n_cols, out);
}

}  // namespace hearth::backend
