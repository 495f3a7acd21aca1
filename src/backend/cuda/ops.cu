// CUDA element-wise and row ops (contract and numerics: ops.h). Simple, memory-bound kernels:
// one pass over their inputs, coalesced, no shared state between blocks.
#include "backend/cuda/ops.h"

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cmath>

#include "backend/cuda/matmul_kernels.cuh"
#include "quant/q8_0.h"

namespace hearth::backend {
namespace {

using quant::QuantType;

static_assert(sizeof(quant::BlockQ8_0) == 34 && offsetof(quant::BlockQ8_0, qs) == 2);

cudaStream_t raw(cuda::Stream& s) { return static_cast<cudaStream_t>(s.handle()); }

// Common entry checks: false (nothing to launch) when the device already failed, the
// arguments are bad (recorded as invalid_argument) or there is no work.
bool begin_op(cuda::Stream& stream, bool args_ok, const char* what, int64_t work) {
    cuda::Device& dev = stream.device();
    if (dev.is_failed()) return false;
    if (!args_ok) {
        dev.fail(error(StatusCode::invalid_argument, strformat("%s: bad arguments", what)));
        return false;
    }
    return work > 0 && dev.make_current();
}

unsigned blocks_for(int64_t n, int threads) { return (unsigned)((n + threads - 1) / threads); }

// ---- rms_norm: TPR threads per row (32: one warp; 256: the whole block), f64 sums.
template <int TPR>
__global__ void __launch_bounds__(256) rms_norm_kernel(const float* __restrict__ x, const float* __restrict__ w,
                                                         float* __restrict__ y, int64_t n, int64_t rows, float eps) {
    constexpr int kRowsPerBlock = 256 / TPR;
    const int64_t row = (int64_t)blockIdx.x * kRowsPerBlock + threadIdx.x / TPR;
    const int lane = threadIdx.x % TPR;
    const bool active = row < rows;
    const float* xr = x + (active ? row : 0) * n;
    double sum = 0.0;
    if (active)
        for (int64_t i = lane; i < n; i += TPR) {
            const float v = xr[i];
            sum += (double)__fmul_rn(v, v);
        }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
    if constexpr (TPR > 32) {
        __shared__ double part[TPR / 32];
        if (threadIdx.x % 32 == 0) part[threadIdx.x / 32] = sum;
        __syncthreads();
        sum = 0.0;
#pragma unroll
        for (int i = 0; i < TPR / 32; ++i) sum += part[i];
    }
    if (!active) return;
    const float scale = 1.0f / sqrtf((float)(sum / (double)n) + eps);
    float* yr = y + row * n;
    for (int64_t i = lane; i < n; i += TPR) {
        const float v = __fmul_rn(xr[i], scale);
        yr[i] = w ? __fmul_rn(v, w[i]) : v;
    }
}

__global__ void add_kernel(float* __restrict__ x, const float* __restrict__ y, int64_t n) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] += y[i];
}

__global__ void add_bias_kernel(float* __restrict__ y, const float* __restrict__ b, int64_t rows, int64_t n) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < rows * n) y[i] += b[i % n];
}

__global__ void swiglu_kernel(const float* gate, const float* up, float* y, int64_t n) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const float g = gate[i];
    y[i] = __fmul_rn(__fdiv_rn(g, 1.0f + expf(-g)), up[i]);
}

// Host-side constants of one rope call, derived exactly as backend/ref/rope.cpp derives them.
struct RopeConsts {
    int n_rot, head_dim, n_heads;
    bool neox;
    float theta_scale, freq_scale, ext_factor, mscale, corr_lo, corr_hi;
    const float* freq_factors;  // device, [n_rot / 2], or null
};

float yarn_corr_dim(int n_rot, int n_ctx_orig, float n_rotations, float base) {
    return n_rot * std::log(n_ctx_orig / (n_rotations * 2.0f * (float)M_PI)) / (2.0f * std::log(base));
}

// Rotates pair i (of n_rot / 2) of one head row: reads src[a], src[b], writes the rotated pair
// through `put` (a, b, value a, value b). The reference's angle, operation for operation: pos,
// times theta_scale i times.
template <class Put>
__device__ __forceinline__ void rope_pair(const float* src, int32_t pos, int i, const RopeConsts& c,
                                          Put put) {
    const int n_pairs = c.n_rot / 2;
    float theta_extrap = (float)pos;
    for (int k = 0; k < i; ++k) theta_extrap = __fmul_rn(theta_extrap, c.theta_scale);
    const float ff = c.freq_factors ? c.freq_factors[i] : 1.0f;
    const float te = __fdiv_rn(theta_extrap, ff);
    const float theta_interp = __fmul_rn(c.freq_scale, te);
    float theta = theta_interp;
    if (c.ext_factor != 0.0f) {
        const float y = __fdiv_rn((float)i - c.corr_lo, fmaxf(0.001f, c.corr_hi - c.corr_lo));  // i0 / 2 == i
        const float mix = (1.0f - fminf(1.0f, fmaxf(0.0f, y))) * c.ext_factor;
        theta = __fadd_rn(__fmul_rn(theta_interp, 1.0f - mix), __fmul_rn(te, mix));
    }
    float s, co;
    sincosf(theta, &s, &co);
    co = __fmul_rn(co, c.mscale);
    s = __fmul_rn(s, c.mscale);
    const int a = c.neox ? i : 2 * i;
    const int b = c.neox ? i + n_pairs : 2 * i + 1;
    const float x0 = src[a], x1 = src[b];
    put(a, b, __fsub_rn(__fmul_rn(x0, co), __fmul_rn(x1, s)), __fadd_rn(__fmul_rn(x0, s), __fmul_rn(x1, co)));
}

// One thread per rotated pair (token, head, i).
__global__ void rope_kernel(float* __restrict__ x, const int32_t* __restrict__ positions, int64_t n_tokens,
                            RopeConsts c) {
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

// ---- Fused add + rms_norm + activation quantization (ops.h). Phase 1 sums the squares in exactly
// rms_norm_kernel<TPR>'s order (so the scale is bit-identical); phase 2 normalizes and quantizes
// with 8 lanes per block of 32 values, as quantize_q8_kernel does.

template <int TPR>
__global__ void __launch_bounds__(256) add_rms_norm_q8_kernel(float* x, const float* __restrict__ delta,
                                                                const float* __restrict__ w, float* __restrict__ y,
                                                                int8_t* __restrict__ qs, float2* __restrict__ ds,
                                                                int n, int rows, float eps) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;");  // let the dp4a matvec start streaming W
#endif
    constexpr int kRowsPerBlock = 256 / TPR;
    const int row = blockIdx.x * kRowsPerBlock + threadIdx.x / TPR;
    const int lane = threadIdx.x % TPR;
    const bool active = row < rows;
    float* xr = x + (int64_t)(active ? row : 0) * n;
    double sum = 0.0;
    if (active) {
        const float* dr = delta ? delta + (int64_t)row * n : nullptr;
        for (int i = lane; i < n; i += TPR) {
            float v = xr[i];
            if (dr) {
                v += dr[i];
                xr[i] = v;
            }
            sum += (double)__fmul_rn(v, v);
        }
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
    if constexpr (TPR > 32) {
        __shared__ double part[TPR / 32];
        if (threadIdx.x % 32 == 0) part[threadIdx.x / 32] = sum;
        __syncthreads();  // also orders phase 1's stores to x before phase 2's loads
        sum = 0.0;
#pragma unroll
        for (int i = 0; i < TPR / 32; ++i) sum += part[i];
    } else {
        __syncwarp();
    }
    if (!active) return;  // whole warps (TPR >= 32)
    const float scale = 1.0f / sqrtf((float)(sum / (double)n) + eps);
    const int n_blocks = n / 32;
    const int sub = lane & 7;
    for (int b0 = 0; b0 < n_blocks; b0 += TPR / 8) {  // uniform trip count within a warp
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

// Fused swiglu + quantization: 8 threads per block of 32 values, 4 values each.
__global__ void __launch_bounds__(256) swiglu_q8_kernel(const float* __restrict__ gate, const float* __restrict__ up,
                                                          int8_t* __restrict__ qs, float2* __restrict__ ds,
                                                          int n_blocks) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;");
#endif
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
    const int64_t gid = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (gid >= n * n_cols) return;
    const int64_t r = gid / n_cols, c = gid % n_cols;
    out[gid] = x[(int64_t)idx[r] * n_cols + c];
}

constexpr int kThreads = 256;

}  // namespace

void rms_norm_cuda(cuda::Stream& stream, const float* x, const float* w, float* y, int64_t n, int64_t rows, float eps) {
    if (!begin_op(stream, n > 0 && rows >= 0 && rows < INT_MAX, "rms_norm_cuda", rows)) return;
    if (n >= 1024) {
        rms_norm_kernel<256><<<(unsigned)rows, kThreads, 0, raw(stream)>>>(x, w, y, n, rows, eps);
    } else {
        rms_norm_kernel<32><<<blocks_for(rows, kThreads / 32), kThreads, 0, raw(stream)>>>(x, w, y, n, rows, eps);
    }
    stream.device().check(cudaGetLastError(), "rms_norm_cuda launch");
}

void add_cuda(cuda::Stream& stream, float* x, const float* y, int64_t n) {
    if (!begin_op(stream, n >= 0, "add_cuda", n)) return;
    add_kernel<<<blocks_for(n, kThreads), kThreads, 0, raw(stream)>>>(x, y, n);
    stream.device().check(cudaGetLastError(), "add_cuda launch");
}

void add_bias_cuda(cuda::Stream& stream, float* y, const float* b, int64_t rows, int64_t n) {
    if (!begin_op(stream, rows >= 0 && n >= 0, "add_bias_cuda", rows * n)) return;
    add_bias_kernel<<<blocks_for(rows * n, kThreads), kThreads, 0, raw(stream)>>>(y, b, rows, n);
    stream.device().check(cudaGetLastError(), "add_bias_cuda launch");
}

void swiglu_cuda(cuda::Stream& stream, const float* gate, const float* up, float* y, int64_t n) {
    if (!begin_op(stream, n >= 0, "swiglu_cuda", n)) return;
    swiglu_kernel<<<blocks_for(n, kThreads), kThreads, 0, raw(stream)>>>(gate, up, y, n);
    stream.device().check(cudaGetLastError(), "swiglu_cuda launch");
}

namespace {

// As backend/ref/rope.cpp's rope_cache computes them (same expressions, host f32).
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
    rope_kernel<<<blocks_for(n_threads, kThreads), kThreads, 0, raw(stream)>>>(x, positions, n_tokens, c);
    stream.device().check(cudaGetLastError(), "rope_cuda launch");
}

void rope_kv_write_cuda(cuda::Stream& stream, float* q, const float* k, const float* v, const int32_t* positions,
                        const int32_t* slots, int64_t n_tokens, int n_head, int n_head_kv, int head_dim_k,
                        int head_dim_v, const RopeConfig& cfg, void* k_cache, int64_t k_row_stride, void* v_cache,
                        int64_t v_row_stride) {
    const bool args_ok = cfg.n_rot > 0 && cfg.n_rot % 2 == 0 && cfg.n_rot <= head_dim_k && n_head > 0 &&
                         n_head_kv > 0 && head_dim_v >= 0 && n_tokens >= 0 && n_tokens < INT_MAX;
    if (!begin_op(stream, args_ok, "rope_kv_write_cuda", n_tokens)) return;
    const RopeConsts c = make_rope_consts(cfg, n_head, head_dim_k);
    const KvDst dst{static_cast<__half*>(k_cache), static_cast<__half*>(v_cache), k_row_stride, v_row_stride, n_head_kv,
                    head_dim_v};
    const int n_pairs = cfg.n_rot / 2;
    const int64_t per_token = (int64_t)n_head * n_pairs + (int64_t)n_head_kv * (n_pairs + head_dim_k - cfg.n_rot) +
                              (int64_t)n_head_kv * head_dim_v;
    rope_kv_write_kernel<<<blocks_for(n_tokens * per_token, kThreads), kThreads, 0, raw(stream)>>>(
        q, k, v, positions, slots, n_tokens, c, dst);
    stream.device().check(cudaGetLastError(), "rope_kv_write_cuda launch");
}

void add_rms_norm_q8_cuda(cuda::Stream& stream, float* x, const float* delta, const float* w, float* y, void* xq,
                          int64_t n, int64_t rows, float eps) {
    const bool args_ok = n > 0 && n % 32 == 0 && rows >= 0 && n * rows < INT_MAX &&
                         reinterpret_cast<uintptr_t>(xq) % 16 == 0;
    if (!begin_op(stream, args_ok, "add_rms_norm_q8_cuda", rows)) return;
    const Q8Out o = q8_out(xq, n, rows);
    if (n >= 1024) {
        add_rms_norm_q8_kernel<256><<<(unsigned)rows, kThreads, 0, raw(stream)>>>(x, delta, w, y, o.qs, o.ds, (int)n,
                                                                                 (int)rows, eps);
    } else {
        add_rms_norm_q8_kernel<32><<<blocks_for(rows, kThreads / 32), kThreads, 0, raw(stream)>>>(
            x, delta, w, y, o.qs, o.ds, (int)n, (int)rows, eps);
    }
    stream.device().check(cudaGetLastError(), "add_rms_norm_q8_cuda launch");
}

void swiglu_q8_cuda(cuda::Stream& stream, const float* gate, const float* up, void* xq, int64_t n, int64_t rows) {
    const bool args_ok = n > 0 && n % 32 == 0 && rows >= 0 && n * rows < INT_MAX / 8 &&
                         reinterpret_cast<uintptr_t>(xq) % 16 == 0;
    if (!begin_op(stream, args_ok, "swiglu_q8_cuda", rows)) return;
    const Q8Out o = q8_out(xq, n, rows);
    const int n_blocks = (int)(n / 32 * rows);
    swiglu_q8_kernel<<<blocks_for((int64_t)n_blocks * 8, kThreads), kThreads, 0, raw(stream)>>>(gate, up, o.qs, o.ds,
                                                                                                 n_blocks);
    stream.device().check(cudaGetLastError(), "swiglu_q8_cuda launch");
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
    switch (type) {
        case QuantType::f32:
            get_rows_kernel<QuantType::f32><<<grid, kThreads, 0, raw(stream)>>>(table, row_bytes, ids, n, n_cols, out);
            break;
        case QuantType::f16:
            get_rows_kernel<QuantType::f16><<<grid, kThreads, 0, raw(stream)>>>(table, row_bytes, ids, n, n_cols, out);
            break;
        default:
            get_rows_kernel<QuantType::q8_0><<<grid, kThreads, 0, raw(stream)>>>(table, row_bytes, ids, n, n_cols, out);
            break;
    }
    dev.check(cudaGetLastError(), "get_rows_cuda launch");
}

void gather_rows_cuda(cuda::Stream& stream, const float* x, const int32_t* idx, int64_t n, int64_t n_cols, float* out) {
    if (!begin_op(stream, n >= 0 && n_cols >= 0, "gather_rows_cuda", n * n_cols)) return;
    gather_rows_kernel<<<blocks_for(n * n_cols, kThreads), kThreads, 0, raw(stream)>>>(x, idx, n, n_cols, out);
    stream.device().check(cudaGetLastError(), "gather_rows_cuda launch");
}

}  // namespace hearth::backend
