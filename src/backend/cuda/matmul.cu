// CUDA matmul (contract and numerics: matmul.h): the dispatch between the paths, the F16, BF16
// and F32 matrix-vector kernels (f32 activations) and the activation conversion kernels. The dp4a
// kernels are in matmul_vec.cu, the tensor-core GEMM in matmul_gemm.cu, the cuBLAS path in
// matmul_blas.cu. Block layouts come from quant/*.h; nothing here redefines them.
#include "backend/cuda/matmul.h"

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>

#include "backend/cuda/launch.cuh"
#include "backend/cuda/matmul_kernels.cuh"

namespace hearth::backend {
namespace cuda_kernels {
namespace {

// ---- activation conversion

// 8 threads per block of 32 values, 4 values each. Launches its dependents (the dp4a kernel,
// which waits for this grid before reading qs/ds) at once so they can start streaming weights.
__global__ void __launch_bounds__(256) quantize_q8_kernel(const float* __restrict__ x, int8_t* __restrict__ qs,
                                                          float2* __restrict__ ds, int n_in, int n_blocks, bool vec4) {
    pdl_launch_dependents();
    pdl_wait();
    const int gid = blockIdx.x * blockDim.x + threadIdx.x;
    const int blk = gid >> 3, sub = gid & 7;
    const bool active = blk < n_blocks;  // inactive lanes still join the shuffles
    const size_t e0 = (size_t)(active ? blk : 0) * 32 + 4 * sub;  // == t * n_in + 32 * b + 4 * sub
    float v[4];
    if (vec4) {
        const float4 f = *reinterpret_cast<const float4*>(x + e0);
        v[0] = f.x, v[1] = f.y, v[2] = f.z, v[3] = f.w;
    } else {
#pragma unroll
        for (int i = 0; i < 4; ++i) v[i] = x[e0 + i];
    }
    quantize_4(v, active, sub, qs + e0, ds + (active ? blk : 0));
    (void)n_in;
}

__global__ void __launch_bounds__(256) convert_f16_kernel(const float* __restrict__ x, __half* __restrict__ xh,
                                                          int64_t n, bool vec4) {
    const int64_t i = 4 * ((int64_t)blockIdx.x * blockDim.x + threadIdx.x);
    if (vec4 && i + 3 < n) {
        const float4 f = *reinterpret_cast<const float4*>(x + i);
        __half2* o = reinterpret_cast<__half2*>(xh + i);
        o[0] = __floats2half2_rn(f.x, f.y);
        o[1] = __floats2half2_rn(f.z, f.w);
    } else {
        for (int64_t k = i; k < n; ++k) xh[k] = __float2half_rn(x[k]);
    }
}

}  // namespace

cudaError_t quantize_q8(const float* x, int8_t* qs, float2* ds, int n_in, int n_tokens, cudaStream_t s, bool pdl) {
    const int n_blocks = n_in / 32 * n_tokens;
    const int threads = 256;
    const unsigned grid = (unsigned)(((int64_t)n_blocks * 8 + threads - 1) / threads);
    const bool vec4 = reinterpret_cast<uintptr_t>(x) % 16 == 0;
    return launch_kernel(pdl, quantize_q8_kernel, dim3(grid), dim3(threads), 0, s, x, qs, ds, n_in, n_blocks, vec4);
}

cudaError_t convert_f16(const float* x, __half* xh, int64_t n, cudaStream_t s) {
    // float4 loads need x 16-byte aligned (else, and for the tail, scalar loads).
    const int threads = 256;
    const int64_t n_threads = (n + 3) / 4;
    const unsigned grid = (unsigned)((n_threads + threads - 1) / threads);
    convert_f16_kernel<<<grid, threads, 0, s>>>(x, xh, n, reinterpret_cast<uintptr_t>(x) % 16 == 0);
    return cudaGetLastError();
}

}  // namespace cuda_kernels

namespace {

using cuda_kernels::fp16_bits_to_f32;
using cuda_kernels::warp_sum;
using quant::QuantType;

constexpr int kWarpsPerBlock = 4;  // F16 kernels: rows per thread block; 128 threads
constexpr int kThreads = 32 * kWarpsPerBlock;
constexpr int kMaxTokens = 8;      // tokens per weight pass of the matrix-vector kernels

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

// Float weights: element i of a row as f32 (exact for all three types). Rows need only be 2-byte
// aligned (as F16's always were): F32 rows that are not 4-byte aligned (uniform per row) are
// read as two halves.
template <QuantType kType>
__device__ __forceinline__ float float_weight(const std::byte* row, int i) {
    if constexpr (kType == QuantType::f32) {
        if (((uintptr_t)row & 3) == 0) return __ldg(reinterpret_cast<const float*>(row) + i);
        const auto* h = reinterpret_cast<const unsigned short*>(row) + 2 * i;
        return __uint_as_float((uint32_t)__ldg(h) | ((uint32_t)__ldg(h + 1) << 16));
    } else {
        const uint32_t h = __ldg(reinterpret_cast<const unsigned short*>(row) + i);
        return kType == QuantType::f16 ? fp16_bits_to_f32(h) : __uint_as_float(h << 16);
    }
}

// The 8 weights of 16-byte vector v (F16, BF16) as f32.
template <QuantType kType>
__device__ __forceinline__ void widen8(const uint4& v, float (&f)[8]) {
    const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        if constexpr (kType == QuantType::f16) {
            f[2 * i] = fp16_bits_to_f32(w[i]), f[2 * i + 1] = fp16_bits_to_f32(w[i] >> 16);
        } else {
            f[2 * i] = __uint_as_float(w[i] << 16), f[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
        }
    }
}

// One warp computes one output row for up to 8 tokens: each weight byte is loaded once
// (16-byte streaming loads, coalesced across the warp) and multiplied with the f32
// activations of every token of the group, which stay in L1/L2.
// ---- F16 / BF16: lane reads 8 weights (one 16-byte vector) per step; the warp covers 256
// columns. F32: 8 weights are two vectors.
template <QuantType kType, int NT>
__global__ void __launch_bounds__(kThreads) matmul_f16_vec(const std::byte* __restrict__ w, size_t row_bytes,
                                                             const float* __restrict__ x, float* __restrict__ y,
                                                             int n_in, int n_out) {
    const int row = blockIdx.x * kWarpsPerBlock + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (row >= n_out) return;  // whole warp leaves together
    constexpr int kVecPer8 = kType == QuantType::f32 ? 2 : 1;  // 16-byte vectors per 8 weights
    const uint4* wr = reinterpret_cast<const uint4*>(w + (size_t)row * row_bytes);
    const int n_vec = n_in / 8;
    constexpr int kUnroll = 4;  // 4 loads in flight per lane
    float acc[NT] = {};
    for (int v0 = lane; v0 < n_vec; v0 += 32 * kUnroll) {
        uint4 wv[kUnroll][kVecPer8];
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
            if (v0 + 32 * u < n_vec) {
#pragma unroll
                for (int k = 0; k < kVecPer8; ++k) wv[u][k] = load_weights(wr + (size_t)(v0 + 32 * u) * kVecPer8 + k);
            }
        }
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
            const int v = v0 + 32 * u;
            if (v >= n_vec) break;
            float f[8];
            if constexpr (kType == QuantType::f32) {
                const uint4 a = wv[u][0], b = wv[u][kVecPer8 - 1];
                f[0] = __uint_as_float(a.x), f[1] = __uint_as_float(a.y), f[2] = __uint_as_float(a.z);
                f[3] = __uint_as_float(a.w), f[4] = __uint_as_float(b.x), f[5] = __uint_as_float(b.y);
                f[6] = __uint_as_float(b.z), f[7] = __uint_as_float(b.w);
            } else {
                widen8<kType>(wv[u][0], f);
            }
            const float w0 = f[0], w1 = f[1], w2 = f[2], w3 = f[3], w4 = f[4], w5 = f[5], w6 = f[6], w7 = f[7];
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


// Float weights with rows or X not 16-byte aligned: scalar loads, one warp per row, tokens in a
// loop.
template <QuantType kType>
__global__ void __launch_bounds__(kThreads) matmul_f16_generic(const std::byte* __restrict__ w, size_t row_bytes,
                                                                 const float* __restrict__ x, float* __restrict__ y,
                                                                 int n_in, int n_out, int n_tokens) {
    const int row = blockIdx.x * kWarpsPerBlock + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (row >= n_out) return;
    const std::byte* wr = w + (size_t)row * row_bytes;
    for (int t = 0; t < n_tokens; ++t) {
        const float* xt = x + (size_t)t * n_in;
        float acc = 0.0f;
        for (int i = lane; i < n_in; i += 32) acc += float_weight<kType>(wr, i) * xt[i];
        const float s = warp_sum(acc);
        if (lane == 0) y[(size_t)t * n_out + row] = s;
    }
}

using VecKernel = void (*)(const std::byte*, size_t, const float*, float*, int, int);

template <QuantType kType>
VecKernel float_vec_kernel(int nt) {
    switch (nt) {
        case 8: return matmul_f16_vec<kType, 8>;
        case 4: return matmul_f16_vec<kType, 4>;
        case 2: return matmul_f16_vec<kType, 2>;
        default: return matmul_f16_vec<kType, 1>;
    }
}

VecKernel float_vec_kernel(QuantType type, int nt) {
    return type == QuantType::f32 ? float_vec_kernel<QuantType::f32>(nt)
         : type == QuantType::bf16 ? float_vec_kernel<QuantType::bf16>(nt) : float_vec_kernel<QuantType::f16>(nt);
}

using GenericKernel = void (*)(const std::byte*, size_t, const float*, float*, int, int, int);
GenericKernel float_generic_kernel(QuantType type) {
    return type == QuantType::f32 ? matmul_f16_generic<QuantType::f32>
         : type == QuantType::bf16 ? matmul_f16_generic<QuantType::bf16> : matmul_f16_generic<QuantType::f16>;
}

bool is_float_type(QuantType type) { return type == QuantType::f32 || type == QuantType::f16 || type == QuantType::bf16; }

// Byte alignment the int8 kernels need of W and row_bytes: 2 (their lds_words reads), 1 for
// MXFP4 (17-byte blocks, read at any byte offset).
size_t q8_align(QuantType type) { return type == QuantType::mxfp4 ? 1 : 2; }
bool is_q8_aligned(QuantType type, const void* w, size_t row_bytes) {
    const size_t a = q8_align(type);
    return reinterpret_cast<uintptr_t>(w) % a == 0 && row_bytes % a == 0;
}

bool is_aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// Shape checks shared by the entry points; records invalid_argument and returns false.
bool check_shape(cuda::Device& dev, const char* what, QuantType type, size_t row_bytes, int64_t n_in, int64_t n_out,
                 int64_t n_tokens) {
    const int64_t bs = quant::block_size(type);
    if (n_in < 0 || n_out < 0 || n_tokens < 0 || n_in % bs != 0 || n_in > INT_MAX / 4 || n_out > INT_MAX / 2 ||
        n_tokens > INT_MAX / 2 || row_bytes < quant::row_size(type, n_in)) {
        dev.fail(error(StatusCode::invalid_argument,
                       strformat("%s %s: bad shape n_in %lld (block %lld), n_out %lld, n_tokens %lld, row_bytes %zu",
                                 what, quant::type_name(type), (long long)n_in, (long long)bs, (long long)n_out,
                                 (long long)n_tokens, row_bytes)));
        return false;
    }
    return true;
}

void matvec_q8_groups(cuda::Device& dev, cudaStream_t s, QuantType type, cuda_kernels::MvArgs args,
                      cuda_kernels::ActQ8 act, int64_t n_in, int64_t n_tokens);
cuda_kernels::MvSeg plain_seg(const std::byte* w, size_t row_bytes, int64_t n_out, float* y);

// Quantized weights, int8 activations: the batch-invariant tensor-core kernel over token
// groups of up to 64 (weights read once per group).
void matmul_q8_groups(cuda::Device& dev, cudaStream_t s, QuantType type, const std::byte* w, size_t row_bytes,
                      cuda_kernels::ActQ8 act, float* y, int64_t n_in, int64_t n_out, int64_t n_tokens) {
    if (!cuda_kernels::has_mma(type)) {
        // Only Q4_0, Q8_0, Q4_K and Q6_K have a tensor-core kernel; the other int8 types take the
        // dp4a kernel (groups of up to 8 tokens, W read once per group). Their results are not
        // batch-invariant (matmul.h).
        cuda_kernels::MvArgs args{};
        args.seg[0] = plain_seg(w, row_bytes, n_out, y);
        args.n_segs = 1;
        matvec_q8_groups(dev, s, type, args, act, n_in, n_tokens);
        return;
    }
    const bool clusters = dev.info().cc_major >= 9;
    for (int64_t t0 = 0; t0 < n_tokens; t0 += cuda_kernels::kMmaMaxTokens) {
        const int nt = (int)std::min<int64_t>(cuda_kernels::kMmaMaxTokens, n_tokens - t0);
        const cuda_kernels::ActQ8 a{act.qs + t0 * n_in, act.ds + t0 * (n_in / 32)};
        // Programmatic launch: the previous kernel on the stream is the activation quantizer or
        // the previous group, and the kernel reads activations only after waiting for it.
        if (!dev.check(cuda_kernels::matmul_q8_mma(type, w, row_bytes, a, y + t0 * n_out, (int)n_in, (int)n_out, nt,
                                                   clusters, /*pdl=*/true, s),
                       "matmul_cuda mma launch")) {
            return;
        }
    }
}

// The dp4a matrix-vector kernel over token groups of up to 8 (weights read once per group), for
// the matrices of `args` (outputs and the token tables offset per group).
void matvec_q8_groups(cuda::Device& dev, cudaStream_t s, QuantType type, cuda_kernels::MvArgs args,
                      cuda_kernels::ActQ8 act, int64_t n_in, int64_t n_tokens) {
    for (int64_t t0 = 0; t0 < n_tokens; t0 += kMaxTokens) {
        const int nt = (int)std::min<int64_t>(kMaxTokens, n_tokens - t0);
        const cuda_kernels::ActQ8 a{act.qs + t0 * n_in, act.ds + t0 * (n_in / 32)};
        cuda_kernels::MvArgs g = args;
        for (int i = 0; i < g.n_segs; ++i) {
            if (g.seg[i].kind == cuda_kernels::kMvF32 || g.seg[i].kind == cuda_kernels::kMvRopeF32)
                g.seg[i].out = static_cast<float*>(g.seg[i].out) + t0 * g.seg[i].ld;
        }
        if (g.positions) g.positions += t0;
        if (g.slots) g.slots += t0;
        // Programmatic launch: the previous kernel on the stream wrote the activations (or is the
        // previous group), and the kernel reads them only after waiting for it.
        if (!dev.check(cuda_kernels::matvec_q8(type, g, a, (int)n_in, nt, dev.info().n_sm, /*pdl=*/true, s),
                       "matmul_cuda dp4a launch")) {
            return;
        }
    }
}

cuda_kernels::MvSeg plain_seg(const std::byte* w, size_t row_bytes, int64_t n_out, float* y) {
    return cuda_kernels::MvSeg{w, row_bytes, 0, (int)n_out, cuda_kernels::kMvF32, y, n_out};
}


}  // namespace

bool can_matmul_cuda(QuantType type) { return is_float_type(type) || cuda_kernels::has_matvec_q8(type); }

bool can_matmul_cuda_q8(QuantType type) { return cuda_kernels::has_matvec_q8(type); }

int matmul_cuda_q8_chains(const cuda::Device& dev, int64_t n_in, int64_t n_out) {
    return dev.info().cc_major >= 9 ? cuda_kernels::mma_chains(n_in, n_out) : 1;
}

size_t activation_q8_bytes(int64_t n_in, int64_t n_tokens) { return cuda_kernels::act_q8_bytes(n_in, n_tokens); }

bool matmul_cuda_uses_blas(const cuda::Device& dev, QuantType type, int64_t n_out, int64_t n_tokens) {
    if (n_tokens < kMatmulGemmMinTokens || !cuda_kernels::has_gemm(type)) return false;
    switch (cuda_kernels::blas_mode()) {
        case cuda_kernels::BlasMode::off: return false;
        case cuda_kernels::BlasMode::always: return true;
        case cuda_kernels::BlasMode::shape_rule: break;
    }
    // The hand-written GEMM fills the device with one 128-token tile of X per weight tile (more
    // than half the SMs' worth of tiles, split over K in two) and needs no f16 copy of W.
    const bool gemm_full_wave = type != QuantType::f16 && n_tokens <= kMatmulGemmOnlyMaxTokens &&
                                (n_out + 127) / 128 > dev.info().n_sm / 2;
    return !gemm_full_wave;
}

size_t matmul_cuda_scratch_bytes(QuantType type, int64_t n_in, int64_t n_tokens) {
    size_t bytes = 0;
    if (cuda_kernels::has_matvec_q8(type)) bytes = activation_q8_bytes(n_in, n_tokens);
    if (n_tokens >= kMatmulGemmMinTokens && cuda_kernels::has_gemm(type)) {
        bytes = std::max(bytes, (size_t)n_in * n_tokens * sizeof(__half));
    }
    // n_out is not known here: whenever some shape may take the cuBLAS path.
    if (n_tokens >= kMatmulGemmMinTokens && cuda_kernels::has_gemm(type) &&
        cuda_kernels::blas_mode() != cuda_kernels::BlasMode::off) {
        bytes = std::max(bytes, cuda_kernels::blas_scratch_bytes(type, n_in, n_tokens));
    }
    return bytes;
}

void quantize_activations_cuda(cuda::Stream& stream, const float* x, void* xq, int64_t n_in, int64_t n_tokens) {
    cuda::Device& dev = stream.device();
    if (dev.is_failed()) return;
    if (n_in < 0 || n_in % 32 != 0 || n_tokens < 0 || n_in * n_tokens > INT_MAX || !is_aligned16(xq) ||
        reinterpret_cast<uintptr_t>(x) % 4 != 0) {
        dev.fail(error(StatusCode::invalid_argument,
                       strformat("quantize_activations_cuda: n_in %lld (must be a multiple of 32), n_tokens %lld, "
                                 "xq 16-byte aligned",
                                 (long long)n_in, (long long)n_tokens)));
        return;
    }
    if (n_in == 0 || n_tokens == 0 || !dev.make_current()) return;
    auto* q = static_cast<int8_t*>(xq);
    auto* ds = reinterpret_cast<float2*>(q + cuda_kernels::act_q8_ds_offset(n_in, n_tokens));
    dev.check(cuda_kernels::quantize_q8(x, q, ds, (int)n_in, (int)n_tokens, static_cast<cudaStream_t>(stream.handle()),
                                        stream.programmatic()),
              "quantize_activations_cuda launch");
}

void matmul_cuda_q8(cuda::Stream& stream, QuantType type, const std::byte* w, size_t row_bytes, const void* xq,
                    float* y, int64_t n_in, int64_t n_out, int64_t n_tokens, MatmulQ8Kernel kernel) {
    cuda::Device& dev = stream.device();
    if (dev.is_failed()) return;
    if (!cuda_kernels::has_matvec_q8(type)) {
        dev.fail(error(StatusCode::unsupported, strformat("matmul_cuda_q8: no dp4a kernel for type %s", quant::type_name(type))));
        return;
    }
    if (!check_shape(dev, "matmul_cuda_q8", type, row_bytes, n_in, n_out, n_tokens)) return;
    if (!is_q8_aligned(type, w, row_bytes) || !is_aligned16(xq)) {
        dev.fail(error(StatusCode::invalid_argument, "matmul_cuda_q8: W and row_bytes must be 2-byte aligned, xq 16-byte aligned"));
        return;
    }
    if (n_out == 0 || n_tokens == 0 || !dev.make_current()) return;
    auto* s = static_cast<cudaStream_t>(stream.handle());
    if (n_in == 0) {
        dev.check(cudaMemsetAsync(y, 0, (size_t)n_out * n_tokens * sizeof(float), s), "matmul_cuda_q8 memset");
        return;
    }
    const auto* q = static_cast<const int8_t*>(xq);
    const cuda_kernels::ActQ8 act{q, reinterpret_cast<const float2*>(q + cuda_kernels::act_q8_ds_offset(n_in, n_tokens))};
    if (kernel == MatmulQ8Kernel::dp4a) {
        cuda_kernels::MvArgs args{};
        args.seg[0] = plain_seg(w, row_bytes, n_out, y);
        args.n_segs = 1;
        matvec_q8_groups(dev, s, type, args, act, n_in, n_tokens);
    } else {
        matmul_q8_groups(dev, s, type, w, row_bytes, act, y, n_in, n_out, n_tokens);
    }
}

namespace {

// Checks shared by the grouped entry points; records the failure and returns false.
bool check_q8_matrix(cuda::Device& dev, const char* what, const MatmulQ8Matrix& m, int64_t n_in, int64_t n_tokens) {
    if (!cuda_kernels::has_matvec_q8(m.type)) {
        dev.fail(error(StatusCode::unsupported, strformat("%s: no dp4a kernel for type %s", what, quant::type_name(m.type))));
        return false;
    }
    if (!check_shape(dev, what, m.type, m.row_bytes, n_in, m.n_out, n_tokens)) return false;
    if (!is_q8_aligned(m.type, m.w, m.row_bytes)) {
        dev.fail(error(StatusCode::invalid_argument, strformat("%s: W and row_bytes must be 2-byte aligned", what)));
        return false;
    }
    return true;
}

cuda_kernels::ActQ8 act_of(const void* xq, int64_t n_in, int64_t n_tokens) {
    const auto* q = static_cast<const int8_t*>(xq);
    return {q, reinterpret_cast<const float2*>(q + cuda_kernels::act_q8_ds_offset(n_in, n_tokens))};
}

// The tensor-core kernel over the matrices of `args` (one type, plain f32 outputs) in one launch
// per group of up to 64 tokens, chains as matmul.h's MatmulQ8Chains says. False when a launch
// failed (recorded on dev).
bool matmul_q8_groups_mma(cuda::Device& dev, cudaStream_t s, QuantType type, const cuda_kernels::MvArgs& args,
                          cuda_kernels::ActQ8 act, int64_t n_in, int64_t n_tokens, MatmulQ8Chains chains) {
    int64_t rows = 0;
    for (int i = 0; i < args.n_segs; ++i) rows += args.seg[i].n_rows;
    cuda_kernels::MmaSeg segs[cuda_kernels::kMmaMaxSegs];
    for (int i = 0; i < args.n_segs; ++i) {
        const cuda_kernels::MvSeg& g = args.seg[i];
        const int64_t chain_rows = chains == MatmulQ8Chains::joint ? rows : g.n_rows;
        segs[i] = {g.w, g.row_bytes, static_cast<float*>(g.out), g.n_rows, matmul_cuda_q8_chains(dev, n_in, chain_rows)};
    }
    for (int64_t t0 = 0; t0 < n_tokens; t0 += cuda_kernels::kMmaMaxTokens) {
        const int nt = (int)std::min<int64_t>(cuda_kernels::kMmaMaxTokens, n_tokens - t0);
        const cuda_kernels::ActQ8 a{act.qs + t0 * n_in, act.ds + t0 * (n_in / 32)};
        cuda_kernels::MmaSeg g[cuda_kernels::kMmaMaxSegs];
        for (int i = 0; i < args.n_segs; ++i) g[i] = segs[i], g[i].y = segs[i].y + t0 * segs[i].n_out;
        // Programmatic, as matmul_q8_groups.
        if (!dev.check(cuda_kernels::matmul_q8_mma_grouped(type, g, args.n_segs, a, (int)n_in, nt, /*pdl=*/true, s),
                       "matmul_cuda_q8_grouped mma launch")) {
            return false;
        }
    }
    return true;
}

// One launch(type, args) per distinct weight type of `outs`, in their order, args holding that
// type's matrices as the segments make_seg(out) gives; stops when launch returns false.
template <class MakeSeg, class Launch>
void launch_per_type(std::initializer_list<MatmulQ8Out> outs, MakeSeg make_seg, Launch launch) {
    bool done[cuda_kernels::kMvMaxSegs] = {};
    const MatmulQ8Out* o = outs.begin();
    for (size_t i = 0; i < outs.size(); ++i) {
        if (done[i]) continue;
        cuda_kernels::MvArgs args{};
        for (size_t j = i; j < outs.size(); ++j) {
            if (done[j] || o[j].m.type != o[i].m.type) continue;
            args.seg[args.n_segs++] = make_seg(o[j]);
            done[j] = true;
        }
        if (!launch(o[i].m.type, args)) return;
    }
}

}  // namespace

void matmul_cuda_q8_grouped(cuda::Stream& stream, const void* xq, int64_t n_in, int64_t n_tokens,
                            std::initializer_list<MatmulQ8Out> outs, MatmulQ8Kernel kernel, MatmulQ8Chains chains) {
    cuda::Device& dev = stream.device();
    if (dev.is_failed()) return;
    if (outs.size() == 0 || outs.size() > (size_t)cuda_kernels::kMvMaxSegs || !is_aligned16(xq) || n_in % 32 != 0) {
        dev.fail(error(StatusCode::invalid_argument, "matmul_cuda_q8_grouped: 1..3 matrices, xq 16-byte aligned"));
        return;
    }
    for (const MatmulQ8Out& o : outs)
        if (!check_q8_matrix(dev, "matmul_cuda_q8_grouped", o.m, n_in, n_tokens)) return;
    if (n_tokens == 0 || n_in == 0 || !dev.make_current()) return;
    auto* s = static_cast<cudaStream_t>(stream.handle());
    const cuda_kernels::ActQ8 act = act_of(xq, n_in, n_tokens);
    launch_per_type(
        outs, [](const MatmulQ8Out& o) { return plain_seg(o.m.w, o.m.row_bytes, o.m.n_out, o.y); },
        [&](QuantType type, const cuda_kernels::MvArgs& args) {
            if (kernel == MatmulQ8Kernel::mma && cuda_kernels::has_mma(type)) {
                return matmul_q8_groups_mma(dev, s, type, args, act, n_in, n_tokens, chains);
            }
            matvec_q8_groups(dev, s, type, args, act, n_in, n_tokens);
            return true;
        });
}

void matmul_cuda_q8_experts(cuda::Stream& stream, const void* xq, int64_t n_in, const int32_t* ids, int k,
                            bool per_expert_input, std::initializer_list<MatmulQ8Out> outs) {
    cuda::Device& dev = stream.device();
    if (dev.is_failed()) return;
    bool ok = outs.size() >= 1 && outs.size() <= (size_t)cuda_kernels::kMvMaxSegs && is_aligned16(xq) &&
              n_in % 32 == 0 && ids != nullptr && k >= 1;
    for (const MatmulQ8Out& o : outs) ok = ok && o.m.n_out > 0 && o.m.n_out % 4 == 0 && o.m.n_out * k < INT_MAX;
    if (!ok) {
        dev.fail(error(StatusCode::invalid_argument,
                       "matmul_cuda_q8_experts: 1..3 stacks of n_out % 4 == 0 rows, k >= 1, ids, xq 16-byte aligned"));
        return;
    }
    const int64_t n_act = per_expert_input ? k : 1;
    for (const MatmulQ8Out& o : outs)
        if (!check_q8_matrix(dev, "matmul_cuda_q8_experts", o.m, n_in, n_act)) return;
    if (n_in == 0 || !dev.make_current()) return;
    auto* s = static_cast<cudaStream_t>(stream.handle());
    const cuda_kernels::ActQ8 act = act_of(xq, n_in, n_act);
    launch_per_type(
        outs,
        [&](const MatmulQ8Out& o) {
            cuda_kernels::MvSeg sg = plain_seg(o.m.w, o.m.row_bytes, o.m.n_out * k, o.y);
            sg.ids = ids, sg.id_rows = (int)o.m.n_out, sg.act_per_id = per_expert_input;
            return sg;
        },
        // One token (its activations per expert with per_expert_input); not programmatic: the
        // kernel reads ids before it would wait.
        [&](QuantType type, const cuda_kernels::MvArgs& args) {
            return dev.check(cuda_kernels::matvec_q8(type, args, act, (int)n_in, 1, dev.info().n_sm, /*pdl=*/false, s),
                             "matmul_cuda_q8_experts launch");
        });
}

static_assert(kMatmulQ8ExpertGroupRows == cuda_kernels::kMmaMaxTokens);

bool can_matmul_cuda_q8_expert_groups(QuantType type) { return cuda_kernels::has_mma(type); }

void matmul_cuda_q8_expert_groups(cuda::Stream& stream, const void* xq, int64_t n_in, int64_t n_rows,
                                  const int32_t* items, int n_items, int max_rows,
                                  std::initializer_list<MatmulQ8Out> outs) {
    cuda::Device& dev = stream.device();
    if (dev.is_failed()) return;
    bool ok = outs.size() >= 1 && outs.size() <= (size_t)cuda_kernels::kMmaMaxSegs && is_aligned16(xq) &&
              is_aligned16(items) && n_in % 32 == 0 && n_rows >= 1 && n_items >= 1 && max_rows >= 1 &&
              max_rows <= kMatmulQ8ExpertGroupRows;
    for (const MatmulQ8Out& o : outs) ok = ok && o.m.n_out > 0 && o.y != nullptr;
    if (!ok) {
        dev.fail(error(StatusCode::invalid_argument,
                       "matmul_cuda_q8_expert_groups: 1..3 stacks, n_rows >= 1, items (16-byte aligned), "
                       "1 <= max_rows <= 64, xq 16-byte aligned"));
        return;
    }
    for (const MatmulQ8Out& o : outs) {
        if (!cuda_kernels::has_mma(o.m.type)) {
            dev.fail(error(StatusCode::unsupported, strformat("matmul_cuda_q8_expert_groups: no tensor-core kernel for %s",
                                                              quant::type_name(o.m.type))));
            return;
        }
        if (!check_q8_matrix(dev, "matmul_cuda_q8_expert_groups", o.m, n_in, n_rows)) return;
    }
    if (n_in == 0 || !dev.make_current()) return;
    auto* s = static_cast<cudaStream_t>(stream.handle());
    const cuda_kernels::ActQ8 act = act_of(xq, n_in, n_rows);
    launch_per_type(
        outs, [](const MatmulQ8Out& o) { return plain_seg(o.m.w, o.m.row_bytes, o.m.n_out, o.y); },
        [&](QuantType type, const cuda_kernels::MvArgs& args) {
            cuda_kernels::MmaSeg segs[cuda_kernels::kMmaMaxSegs];
            for (int i = 0; i < args.n_segs; ++i) {
                const cuda_kernels::MvSeg& g = args.seg[i];
                segs[i] = {g.w, g.row_bytes, static_cast<float*>(g.out), g.n_rows, 1};
            }
            return dev.check(cuda_kernels::matmul_q8_mma_experts(type, segs, args.n_segs,
                                                                 reinterpret_cast<const int4*>(items), n_items,
                                                                 max_rows, act, (int)n_in, s),
                             "matmul_cuda_q8_expert_groups launch");
        });
}

void matmul_qkv_rope_cuda(cuda::Stream& stream, const void* xq, int64_t n_in, int64_t n_tokens,
                          const MatmulQ8Matrix& wq, const MatmulQ8Matrix& wk, const MatmulQ8Matrix& wv, float* q,
                          const QkvRopeCuda& r) {
    cuda::Device& dev = stream.device();
    if (dev.is_failed()) return;
    const int hdk = r.head_dim_k, hdv = r.head_dim_v;
    const bool args_ok = is_aligned16(xq) && n_in % 32 == 0 && r.rope.n_rot > 0 && r.rope.n_rot % 2 == 0 &&
                         r.rope.n_rot <= hdk && hdk % 2 == 0 && !r.rope.neox && r.n_head > 0 && r.n_head_kv > 0 &&
                         hdv > 0 && wq.n_out == (int64_t)r.n_head * hdk && wk.n_out == (int64_t)r.n_head_kv * hdk &&
                         wv.n_out == (int64_t)r.n_head_kv * hdv;
    if (!args_ok) {
        dev.fail(error(StatusCode::invalid_argument,
                       "matmul_qkv_rope_cuda: bad arguments (normal-mode rope, even n_rot <= head_dim_k, Q/K/V rows = "
                       "heads x head dims, xq 16-byte aligned)"));
        return;
    }
    for (const MatmulQ8Matrix* m : {&wq, &wk, &wv})
        if (!check_q8_matrix(dev, "matmul_qkv_rope_cuda", *m, n_in, n_tokens)) return;
    if (n_tokens == 0 || n_in == 0 || !dev.make_current()) return;
    auto* s = static_cast<cudaStream_t>(stream.handle());
    const cuda_kernels::ActQ8 act = act_of(xq, n_in, n_tokens);
    const cuda_kernels::MvSeg segs[3] = {
        {wq.w, wq.row_bytes, 0, (int)wq.n_out, cuda_kernels::kMvRopeF32, q, wq.n_out},
        {wk.w, wk.row_bytes, 0, (int)wk.n_out, cuda_kernels::kMvRopeF16, r.k_cache, r.k_row_stride},
        {wv.w, wv.row_bytes, 0, (int)wv.n_out, cuda_kernels::kMvF16, r.v_cache, r.v_row_stride},
    };
    const QuantType types[3] = {wq.type, wk.type, wv.type};
    bool done[3] = {};
    for (int i = 0; i < 3; ++i) {
        if (done[i]) continue;
        cuda_kernels::MvArgs args{};
        args.rope = cuda_kernels::make_rope_consts(r.rope, r.n_head, hdk);
        args.positions = r.positions;
        args.slots = r.slots;
        for (int j = i; j < 3; ++j) {
            if (done[j] || types[j] != types[i]) continue;
            args.seg[args.n_segs++] = segs[j];
            done[j] = true;
        }
        matvec_q8_groups(dev, s, types[i], args, act, n_in, n_tokens);
    }
}

void matmul_cuda(cuda::Stream& stream, QuantType type, const std::byte* w, size_t row_bytes, const float* x,
                 float* y, int64_t n_in, int64_t n_out, int64_t n_tokens) {
    cuda::Device& dev = stream.device();
    if (dev.is_failed()) return;
    if (!can_matmul_cuda(type)) {
        dev.fail(error(StatusCode::unsupported, strformat("matmul_cuda: no kernel for type %s", quant::type_name(type))));
        return;
    }
    if (!check_shape(dev, "matmul_cuda", type, row_bytes, n_in, n_out, n_tokens)) return;
    if (n_out == 0 || n_tokens == 0) return;
    if (!dev.make_current()) return;
    auto* s = static_cast<cudaStream_t>(stream.handle());
    if (n_in == 0) {  // empty dot products
        dev.check(cudaMemsetAsync(y, 0, (size_t)n_out * n_tokens * sizeof(float), s), "matmul_cuda memset");
        return;
    }
    const bool w_aligned16 = row_bytes % 16 == 0 && is_aligned16(w);

    // Prefill: cuBLAS on f16 copies of W and X (which declines only in graph capture on a stream
    // without a handle yet), or the tensor-core GEMM on f16 copies of X (matmul.h says where).
    if (n_tokens >= kMatmulGemmMinTokens && cuda_kernels::has_gemm(type) && w_aligned16 && n_in % 64 == 0) {
        if (matmul_cuda_uses_blas(dev, type, n_out, n_tokens)) {
            void* scratch = stream.scratch(cuda_kernels::blas_scratch_bytes(type, n_in, n_tokens));
            if (scratch == nullptr) return;
            if (cuda_kernels::matmul_blas(dev, s, scratch, type, w, row_bytes, x, y, n_in, n_out, n_tokens)) return;
        }
        auto* xh = static_cast<__half*>(stream.scratch((size_t)n_in * n_tokens * sizeof(__half)));
        if (xh == nullptr) return;
        if (!dev.check(cuda_kernels::convert_f16(x, xh, n_in * n_tokens, s), "matmul_cuda convert launch")) return;
        dev.check(cuda_kernels::gemm_f16(type, w, row_bytes, xh, y, (int)n_in, (int)n_out, (int)n_tokens,
                                         dev.info().n_sm, s),
                  "matmul_cuda gemm launch");
        return;
    }

    if (is_float_type(type)) {
        const dim3 grid((unsigned)((n_out + kWarpsPerBlock - 1) / kWarpsPerBlock));
        if (!w_aligned16 || !is_aligned16(x) || n_in % 8 != 0) {
            float_generic_kernel(type)<<<grid, kThreads, 0, s>>>(w, row_bytes, x, y, (int)n_in, (int)n_out, (int)n_tokens);
            dev.check(cudaGetLastError(), "matmul_cuda launch");
            return;
        }
        // Token groups of 8, then 4, 2, 1 for the rest: at most 3 extra launches.
        for (int64_t t0 = 0; t0 < n_tokens;) {
            const int64_t left = n_tokens - t0;
            const int nt = left >= kMaxTokens ? kMaxTokens : left >= 4 ? 4 : left >= 2 ? 2 : 1;
            float_vec_kernel(type, nt)<<<grid, kThreads, 0, s>>>(w, row_bytes, x + t0 * n_in, y + t0 * n_out, (int)n_in,
                                                         (int)n_out);
            if (!dev.check(cudaGetLastError(), "matmul_cuda launch")) return;
            t0 += nt;
        }
        return;
    }

    // Decode (and prefill of unaligned rows): int8 activations, the tensor-core kernel.
    if (!is_q8_aligned(type, w, row_bytes)) {
        dev.fail(error(StatusCode::invalid_argument,
                       strformat("matmul_cuda %s: W and row_bytes must be 2-byte aligned (row_bytes %zu)",
                                 quant::type_name(type), row_bytes)));
        return;
    }
    auto* xq = static_cast<int8_t*>(stream.scratch(cuda_kernels::act_q8_bytes(n_in, n_tokens)));
    if (xq == nullptr) return;
    auto* ds = reinterpret_cast<float2*>(xq + cuda_kernels::act_q8_ds_offset(n_in, n_tokens));
    if (!dev.check(cuda_kernels::quantize_q8(x, xq, ds, (int)n_in, (int)n_tokens, s), "matmul_cuda quantize launch")) {
        return;
    }
    matmul_q8_groups(dev, s, type, w, row_bytes, cuda_kernels::ActQ8{xq, ds}, y, n_in, n_out, n_tokens);
}

}  // namespace hearth::backend
