// CUDA matmul kernels for F16, Q8_0 and Q4_K weights with f32 activations (contract and
// numerics: matmul.h). One warp computes one output row for up to 8 tokens: each weight byte
// is loaded once (16-byte streaming loads, coalesced across the warp) and multiplied with the
// activations of every token of the group, which stay in L1/L2 (X is small: n_in * 4 bytes a
// token). Block layouts come from quant/*.h; nothing here redefines them.
#include "backend/cuda/matmul.h"

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <climits>

#include "quant/float.h"
#include "quant/q4_k.h"
#include "quant/q8_0.h"

namespace hearth::backend {
namespace {

using quant::BlockQ4_K;
using quant::BlockQ8_0;
using quant::QuantType;

constexpr int kWarpsPerBlock = 4;  // rows per thread block; 128 threads
constexpr int kThreads = 32 * kWarpsPerBlock;
constexpr int kMaxTokens = 8;      // tokens per weight pass (accumulators per lane)

// Byte offsets inside the GGUF blocks, checked against the structs from quant/.
static_assert(offsetof(BlockQ8_0, qs) == 2 && sizeof(BlockQ8_0) == 34);
static_assert(offsetof(BlockQ4_K, dmin) == 2 && offsetof(BlockQ4_K, scales) == 4 &&
              offsetof(BlockQ4_K, qs) == 16 && sizeof(BlockQ4_K) == 144);
static_assert(sizeof(BlockQ4_K) % 16 == 0, "Q4_K rows stay 16-byte aligned");

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float fp16_bits_to_f32(uint32_t h) {
    return __half2float(__ushort_as_half((unsigned short)(h & 0xffffu)));
}

// Weights are read exactly once: stream them past L1 and mark them evict-first in L2 so the
// activations stay cached.
__device__ __forceinline__ uint4 load_weights(const uint4* p) { return __ldcs(p); }

__device__ __forceinline__ float dot4(float4 a, float b0, float b1, float b2, float b3) {
    return a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3;
}

template <int NT>
__device__ __forceinline__ void write_rows(const float (&acc)[NT], float* y, int n_out, int row, int lane) {
#pragma unroll
    for (int t = 0; t < NT; ++t) {
        const float s = warp_sum(acc[t]);
        if (lane == 0) y[(size_t)t * n_out + row] = s;
    }
}

// ---- F16: lane reads 8 weights (one 16-byte vector) per step; the warp covers 256 columns.
template <int NT>
__global__ void __launch_bounds__(kThreads) matmul_f16_vec(const std::byte* __restrict__ w, size_t row_bytes,
                                                             const float* __restrict__ x, float* __restrict__ y,
                                                             int n_in, int n_out) {
    const int row = blockIdx.x * kWarpsPerBlock + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (row >= n_out) return;  // whole warp leaves together
    const uint4* wr = reinterpret_cast<const uint4*>(w + (size_t)row * row_bytes);
    const int n_vec = n_in / 8;
    constexpr int kUnroll = 4;  // 4 loads in flight per lane
    float acc[NT] = {};
    for (int v0 = lane; v0 < n_vec; v0 += 32 * kUnroll) {
        uint4 wv[kUnroll];
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
            if (v0 + 32 * u < n_vec) wv[u] = load_weights(wr + v0 + 32 * u);
        }
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
            const int v = v0 + 32 * u;
            if (v >= n_vec) break;
            const float w0 = fp16_bits_to_f32(wv[u].x), w1 = fp16_bits_to_f32(wv[u].x >> 16);
            const float w2 = fp16_bits_to_f32(wv[u].y), w3 = fp16_bits_to_f32(wv[u].y >> 16);
            const float w4 = fp16_bits_to_f32(wv[u].z), w5 = fp16_bits_to_f32(wv[u].z >> 16);
            const float w6 = fp16_bits_to_f32(wv[u].w), w7 = fp16_bits_to_f32(wv[u].w >> 16);
#pragma unroll
            for (int t = 0; t < NT; ++t) {
                const float4* xp = reinterpret_cast<const float4*>(x + (size_t)t * n_in + (size_t)v * 8);
                const float4 a = xp[0], b = xp[1];
                acc[t] += dot4(a, w0, w1, w2, w3) + dot4(b, w4, w5, w6, w7);
            }
        }
    }
    write_rows<NT>(acc, y, n_out, row, lane);
}

// ---- Q8_0: 34-byte blocks are not 16-byte aligned, so the warp streams 32 blocks (1088
// bytes, 68 vectors) at a time into shared memory with 16-byte loads, then each lane takes
// half a block (16 quants) from there.
constexpr int kQ8Blocks = 32;                          // blocks per warp step
constexpr int kQ8Vecs = kQ8Blocks * 34 / 16;           // 68 16-byte vectors
static_assert(kQ8Blocks * 34 % 16 == 0);

template <int NT>
__global__ void __launch_bounds__(kThreads) matmul_q8_0_vec(const std::byte* __restrict__ w, size_t row_bytes,
                                                              const float* __restrict__ x, float* __restrict__ y,
                                                              int n_in, int n_out) {
    __shared__ uint4 stage[kWarpsPerBlock][kQ8Vecs];  // per warp: the current 32 blocks, raw bytes
    const int warp = threadIdx.x / 32;
    const int row = blockIdx.x * kWarpsPerBlock + warp;
    const int lane = threadIdx.x % 32;
    if (row >= n_out) return;
    const uint4* wr = reinterpret_cast<const uint4*>(w + (size_t)row * row_bytes);
    const int n_vec = (int)(row_bytes / 16);
    const int nb = n_in / 32;
    uint4* st = stage[warp];
    const unsigned char* sb = reinterpret_cast<const unsigned char*>(st);
    const int h = lane & 1;  // which 16 quants of the block
    float acc[NT] = {};
    for (int c0 = 0, blk0 = 0; c0 < n_vec; c0 += kQ8Vecs, blk0 += kQ8Blocks) {
        uint4 a0{}, a1{}, a2{};
        if (c0 + lane < n_vec) a0 = load_weights(wr + c0 + lane);
        if (c0 + 32 + lane < n_vec) a1 = load_weights(wr + c0 + 32 + lane);
        if (lane < kQ8Vecs - 64 && c0 + 64 + lane < n_vec) a2 = load_weights(wr + c0 + 64 + lane);
        st[lane] = a0;
        st[32 + lane] = a1;
        if (lane < kQ8Vecs - 64) st[64 + lane] = a2;
        __syncwarp();
#pragma unroll
        for (int k = 0; k < 2; ++k) {
            const int b = k * 16 + lane / 2;
            const int ib = blk0 + b;
            if (ib < nb) {
                const unsigned char* bp = sb + b * 34;
                const float d = fp16_bits_to_f32(*reinterpret_cast<const uint16_t*>(bp));
                const uint16_t* q16 = reinterpret_cast<const uint16_t*>(bp + 2 + 16 * h);  // 2-byte aligned
                float q[16];
#pragma unroll
                for (int j = 0; j < 8; ++j) {
                    const uint16_t u = q16[j];
                    q[2 * j] = (float)(int8_t)(u & 0xff);
                    q[2 * j + 1] = (float)(int8_t)(u >> 8);
                }
#pragma unroll
                for (int t = 0; t < NT; ++t) {
                    const float4* xp = reinterpret_cast<const float4*>(x + (size_t)t * n_in + (size_t)ib * 32 + 16 * h);
                    float s = 0.0f;
#pragma unroll
                    for (int j = 0; j < 4; ++j) s += dot4(xp[j], q[4 * j], q[4 * j + 1], q[4 * j + 2], q[4 * j + 3]);
                    acc[t] += d * s;
                }
            }
        }
        __syncwarp();  // the stage is overwritten next step
    }
    write_rows<NT>(acc, y, n_out, row, lane);
}

// ---- Q4_K: 8 lanes per 144-byte super-block (4 super-blocks per warp step). Lane l loads the
// 16-byte header (d, dmin, scales) and qs bytes [16l, 16l + 16): chunk c = l/2 of 64 values,
// elements 64c + 16(l%2) + i (low nibbles, sub-block 2c) and +32 (high nibbles, sub-block 2c+1).

__device__ __forceinline__ uint32_t byte_of(uint4 v, int k) {  // k: 0..15, run time
    const uint32_t word = k < 4 ? v.x : k < 8 ? v.y : k < 12 ? v.z : v.w;
    return (word >> (8 * (k & 3))) & 0xffu;
}

// quant::detail::get_scale_min_k4 on the header vector (scales[] start at byte 4).
__device__ __forceinline__ void scale_min_k4(int j, uint4 hdr, float& sc, float& m) {
    if (j < 4) {
        sc = (float)(byte_of(hdr, 4 + j) & 63);
        m = (float)(byte_of(hdr, 4 + j + 4) & 63);
    } else {
        sc = (float)((byte_of(hdr, 4 + j + 4) & 0xF) | ((byte_of(hdr, 4 + j - 4) >> 6) << 4));
        m = (float)((byte_of(hdr, 4 + j + 4) >> 4) | ((byte_of(hdr, 4 + j) >> 6) << 4));
    }
}

template <int NT>
__global__ void __launch_bounds__(kThreads) matmul_q4_k_vec(const std::byte* __restrict__ w, size_t row_bytes,
                                                              const float* __restrict__ x, float* __restrict__ y,
                                                              int n_in, int n_out) {
    const int row = blockIdx.x * kWarpsPerBlock + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (row >= n_out) return;
    const std::byte* wr = w + (size_t)row * row_bytes;
    const int nb = n_in / 256;
    const int g = lane / 8, l = lane % 8, c = l / 2, hh = l % 2;
    constexpr int kUnroll = 2;  // super-blocks in flight per lane
    float acc[NT] = {};
    for (int ib0 = g; ib0 < nb; ib0 += 4 * kUnroll) {
        uint4 hdr[kUnroll], qv[kUnroll];
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
            const int ib = ib0 + 4 * u;
            if (ib < nb) {
                const uint4* bp = reinterpret_cast<const uint4*>(wr + (size_t)ib * sizeof(BlockQ4_K));
                hdr[u] = load_weights(bp);
                qv[u] = load_weights(bp + 1 + l);
            }
        }
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
            const int ib = ib0 + 4 * u;
            if (ib >= nb) break;
            const float d = fp16_bits_to_f32(hdr[u].x), dmin = fp16_bits_to_f32(hdr[u].x >> 16);
            float sc0, m0, sc1, m1;
            scale_min_k4(2 * c, hdr[u], sc0, m0);
            scale_min_k4(2 * c + 1, hdr[u], sc1, m1);
            const float dl = d * sc0, ml = dmin * m0, dh = d * sc1, mh = dmin * m1;
            float qlo[16], qhi[16];
            const uint32_t words[4] = {qv[u].x, qv[u].y, qv[u].z, qv[u].w};
#pragma unroll
            for (int i = 0; i < 16; ++i) {
                const uint32_t b = (words[i / 4] >> (8 * (i % 4))) & 0xffu;
                qlo[i] = (float)(b & 0xF);
                qhi[i] = (float)(b >> 4);
            }
            const size_t e_lo = (size_t)ib * 256 + 64 * c + 16 * hh;
#pragma unroll
            for (int t = 0; t < NT; ++t) {
                const float4* xl = reinterpret_cast<const float4*>(x + (size_t)t * n_in + e_lo);
                const float4* xh = xl + 8;  // +32 floats
                float sl = 0.0f, sh = 0.0f, xsl = 0.0f, xsh = 0.0f;
#pragma unroll
                for (int j = 0; j < 4; ++j) {
                    const float4 a = xl[j], b = xh[j];
                    sl += dot4(a, qlo[4 * j], qlo[4 * j + 1], qlo[4 * j + 2], qlo[4 * j + 3]);
                    sh += dot4(b, qhi[4 * j], qhi[4 * j + 1], qhi[4 * j + 2], qhi[4 * j + 3]);
                    xsl += a.x + a.y + a.z + a.w;
                    xsh += b.x + b.y + b.z + b.w;
                }
                acc[t] += dl * sl - ml * xsl + dh * sh - mh * xsh;
            }
        }
    }
    write_rows<NT>(acc, y, n_out, row, lane);
}

// ---- Generic path: any alignment, scalar loads, one warp per row, tokens in a loop (the
// weights of a row are re-read per token from L1/L2). Same f32 numerics as the fast paths.
__device__ __forceinline__ uint32_t load_u16(const std::byte* p) { return *reinterpret_cast<const unsigned char*>(p) | ((uint32_t)*reinterpret_cast<const unsigned char*>(p + 1) << 8); }
__device__ __forceinline__ uint32_t load_u8(const std::byte* p) { return *reinterpret_cast<const unsigned char*>(p); }

template <QuantType kType>
__global__ void __launch_bounds__(kThreads) matmul_generic(const std::byte* __restrict__ w, size_t row_bytes,
                                                             const float* __restrict__ x, float* __restrict__ y,
                                                             int n_in, int n_out, int n_tokens) {
    const int row = blockIdx.x * kWarpsPerBlock + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (row >= n_out) return;
    const std::byte* wr = w + (size_t)row * row_bytes;
    for (int t = 0; t < n_tokens; ++t) {
        const float* xt = x + (size_t)t * n_in;
        float acc = 0.0f;
        if constexpr (kType == QuantType::f16) {
            for (int i = lane; i < n_in; i += 32) acc += fp16_bits_to_f32(load_u16(wr + 2 * (size_t)i)) * xt[i];
        } else if constexpr (kType == QuantType::q8_0) {
            for (int ib = lane; ib < n_in / 32; ib += 32) {
                const std::byte* bp = wr + (size_t)ib * sizeof(BlockQ8_0);
                float s = 0.0f;
                for (int j = 0; j < 32; ++j) s += (float)(int8_t)load_u8(bp + 2 + j) * xt[ib * 32 + j];
                acc += fp16_bits_to_f32(load_u16(bp)) * s;
            }
        } else {  // q4_k: lane per (super-block, sub-block pair)
            for (int k = lane; k < n_in / 64; k += 32) {
                const int ib = k / 4, c = k % 4;
                const std::byte* bp = wr + (size_t)ib * sizeof(BlockQ4_K);
                uint4 hdr;
                hdr.x = load_u16(bp) | (load_u16(bp + 2) << 16);
                hdr.y = load_u16(bp + 4) | (load_u16(bp + 6) << 16);
                hdr.z = load_u16(bp + 8) | (load_u16(bp + 10) << 16);
                hdr.w = load_u16(bp + 12) | (load_u16(bp + 14) << 16);
                float sc0, m0, sc1, m1;
                scale_min_k4(2 * c, hdr, sc0, m0);
                scale_min_k4(2 * c + 1, hdr, sc1, m1);
                const float d = fp16_bits_to_f32(hdr.x), dmin = fp16_bits_to_f32(hdr.x >> 16);
                const float* xl = xt + ib * 256 + 64 * c;
                float sl = 0.0f, sh = 0.0f, xsl = 0.0f, xsh = 0.0f;
                for (int l = 0; l < 32; ++l) {
                    const uint32_t b = load_u8(bp + 16 + 32 * c + l);
                    sl += (float)(b & 0xF) * xl[l];
                    sh += (float)(b >> 4) * xl[l + 32];
                    xsl += xl[l];
                    xsh += xl[l + 32];
                }
                acc += d * sc0 * sl - dmin * m0 * xsl + d * sc1 * sh - dmin * m1 * xsh;
            }
        }
        const float s = warp_sum(acc);
        if (lane == 0) y[(size_t)t * n_out + row] = s;
    }
}

using VecKernel = void (*)(const std::byte*, size_t, const float*, float*, int, int);


template <int NT>
VecKernel vec_kernel(QuantType type) {
    switch (type) {
        case QuantType::f16: return matmul_f16_vec<NT>;
        case QuantType::q8_0: return matmul_q8_0_vec<NT>;
        case QuantType::q4_k: return matmul_q4_k_vec<NT>;
        default: return nullptr;
    }
}

VecKernel vec_kernel_for(QuantType type, int nt) {
    switch (nt) {
        case 8: return vec_kernel<8>(type);
        case 4: return vec_kernel<4>(type);
        case 2: return vec_kernel<2>(type);
        default: return vec_kernel<1>(type);
    }
}

}  // namespace

bool can_matmul_cuda(QuantType type) {
    return type == QuantType::f16 || type == QuantType::q8_0 || type == QuantType::q4_k;
}

void matmul_cuda(cuda::Stream& stream, QuantType type, const std::byte* w, size_t row_bytes, const float* x,
                 float* y, int64_t n_in, int64_t n_out, int64_t n_tokens) {
    cuda::Device& dev = stream.device();
    if (dev.is_failed()) return;
    if (!can_matmul_cuda(type)) {
        dev.fail(error(StatusCode::unsupported, strformat("matmul_cuda: no kernel for type %s", quant::type_name(type))));
        return;
    }
    const int64_t bs = quant::block_size(type);
    if (n_in < 0 || n_out < 0 || n_tokens < 0 || n_in % bs != 0 || n_in > INT_MAX / 2 || n_out > INT_MAX / 2 ||
        n_tokens > INT_MAX || row_bytes < quant::row_size(type, n_in)) {
        dev.fail(error(StatusCode::invalid_argument,
                       strformat("matmul_cuda %s: bad shape n_in %lld (block %lld), n_out %lld, n_tokens %lld, row_bytes %zu",
                                 quant::type_name(type), (long long)n_in, (long long)bs, (long long)n_out,
                                 (long long)n_tokens, row_bytes)));
        return;
    }
    if (n_out == 0 || n_tokens == 0) return;
    if (!dev.make_current()) return;
    auto* s = static_cast<cudaStream_t>(stream.handle());
    if (n_in == 0) {  // empty dot products
        dev.check(cudaMemsetAsync(y, 0, (size_t)n_out * n_tokens * sizeof(float), s), "matmul_cuda memset");
        return;
    }
    const dim3 grid((unsigned)((n_out + kWarpsPerBlock - 1) / kWarpsPerBlock));
    // The 16-byte paths need every row (and every activation row) 16-byte aligned.
    const bool aligned = row_bytes % 16 == 0 && reinterpret_cast<uintptr_t>(w) % 16 == 0 &&
                         reinterpret_cast<uintptr_t>(x) % 16 == 0 && n_in % 8 == 0;
    if (!aligned) {
        switch (type) {
            case QuantType::f16:
                matmul_generic<QuantType::f16><<<grid, kThreads, 0, s>>>(w, row_bytes, x, y, (int)n_in, (int)n_out, (int)n_tokens);
                break;
            case QuantType::q8_0:
                matmul_generic<QuantType::q8_0><<<grid, kThreads, 0, s>>>(w, row_bytes, x, y, (int)n_in, (int)n_out, (int)n_tokens);
                break;
            default:
                matmul_generic<QuantType::q4_k><<<grid, kThreads, 0, s>>>(w, row_bytes, x, y, (int)n_in, (int)n_out, (int)n_tokens);
                break;
        }
        dev.check(cudaGetLastError(), "matmul_cuda launch");
        return;
    }
    // Token groups of 8, then 4, 2, 1 for the rest: at most 3 extra launches.
    for (int64_t t0 = 0; t0 < n_tokens;) {
        const int64_t left = n_tokens - t0;
        const int nt = left >= kMaxTokens ? kMaxTokens : left >= 4 ? 4 : left >= 2 ? 2 : 1;
        vec_kernel_for(type, nt)<<<grid, kThreads, 0, s>>>(w, row_bytes, x + t0 * n_in, y + t0 * n_out, (int)n_in,
                                                          (int)n_out);
        if (!dev.check(cudaGetLastError(), "matmul_cuda launch")) return;
        t0 += nt;
    }
}

}  // namespace hearth::backend
