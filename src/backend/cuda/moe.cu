// Mixture-of-experts routing and combining on the GPU (contract and numerics: moe.h).
//
// Routing is two kernels: the router logits, one warp per (token, expert) row so that a
// single decode token spreads the router's n_expert x n_embd floats over n_expert / 8 blocks
// (one block per token would read them through one SM), then one warp per token for the
// softmax, the top k and the renormalization. All three kernels keep launch.cuh's programmatic
// launch contract, so inside a decode step's chain the next kernel is scheduled while they run;
// the router rows (weights nothing on the stream writes) are prefetched into L2 before the wait.
#include "backend/cuda/moe.h"

#include <cuda_runtime.h>

#include <cfloat>
#include <climits>

#include "backend/cuda/launch.cuh"
#include "backend/cuda/op_check.h"
#include "base/status.h"

namespace hearth::backend {
namespace {

using cuda_kernels::pdl_launch_dependents;
using cuda_kernels::pdl_wait;

constexpr int kWarps = 8;  // router rows per block

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ double warp_sum(double v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// logits[t][e] = router[e] · x[t] (+ bias[e]); grid (ceil(n_expert / kWarps), n).
__global__ void router_logits_kernel(const float* __restrict__ x, const float* __restrict__ router,
                                     const float* __restrict__ bias, int n_embd, int n_expert,
                                     float* __restrict__ logits) {
    pdl_launch_dependents();
    const int lane = threadIdx.x & 31;
    const int e = blockIdx.x * kWarps + (threadIdx.x >> 5);
    const int t = blockIdx.y;
    const float* r = router + (size_t)(e < n_expert ? e : 0) * n_embd;
    if (e < n_expert)  // the row's 128-byte lines into L2 while the kernel before finishes
        for (int i = lane * 32; i < n_embd; i += 32 * 32) asm volatile("prefetch.global.L2 [%0];" ::"l"(r + i));
    pdl_wait();
    if (e >= n_expert) return;
    const float* xt = x + (size_t)t * n_embd;
    float s = 0.0f;
    if (n_embd % 4 == 0 && ((reinterpret_cast<uintptr_t>(r) | reinterpret_cast<uintptr_t>(xt)) & 15) == 0) {
        const float4* r4 = reinterpret_cast<const float4*>(r);
        const float4* x4 = reinterpret_cast<const float4*>(xt);
        for (int i = lane; i < n_embd / 4; i += 32) {
            const float4 a = r4[i], b = x4[i];
            s = fmaf(a.x, b.x, s), s = fmaf(a.y, b.y, s), s = fmaf(a.z, b.z, s), s = fmaf(a.w, b.w, s);
        }
    } else {
        for (int i = lane; i < n_embd; i += 32) s = fmaf(r[i], xt[i], s);
    }
    s = warp_sum(s);
    if (lane == 0) logits[(size_t)t * n_expert + e] = bias != nullptr ? s + bias[e] : s;
}

// One warp per token: softmax over logits[t] (in place: probabilities), top k, weights.
__global__ void route_select_kernel(float* __restrict__ logits, int n_expert, int k, bool norm_w,
                                    int32_t* __restrict__ ids, float* __restrict__ weights,
                                    int32_t* __restrict__ comb_rows, float* __restrict__ comb_w) {
    __shared__ float p[kMoeMaxExperts];
    pdl_launch_dependents();
    pdl_wait();
    const int lane = threadIdx.x;
    const int t = blockIdx.x;
    float* lt = logits + (size_t)t * n_expert;
    float mx = -FLT_MAX;
    for (int e = lane; e < n_expert; e += 32) mx = fmaxf(mx, lt[e]);
    mx = warp_max(mx);
    double sum = 0.0;
    for (int e = lane; e < n_expert; e += 32) {
        const float v = expf(lt[e] - mx);
        p[e] = v;
        sum += v;
    }
    sum = warp_sum(sum);
    __syncwarp();
    for (int e = lane; e < n_expert; e += 32) lt[e] = p[e] = (float)((double)p[e] / sum);
    __syncwarp();
    float w_sel = 0.0f;  // lane j keeps the weight of selection j
    int id_sel = INT_MAX;  // and its expert
    for (int j = 0; j < k; ++j) {
        // The largest remaining probability, the lowest id among equals.
        float best = -1.0f;
        int best_e = INT_MAX;
        for (int e = lane; e < n_expert; e += 32)
            if (p[e] > best) best = p[e], best_e = e;
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) {
            const float ob = __shfl_xor_sync(0xffffffffu, best, o);
            const int oe = __shfl_xor_sync(0xffffffffu, best_e, o);
            if (ob > best || (ob == best && oe < best_e)) best = ob, best_e = oe;
        }
        if (lane == j) w_sel = best, id_sel = best_e;
        if (lane == 0) {
            ids[(size_t)t * k + j] = best_e;
            p[best_e] = -2.0f;  // taken
        }
        __syncwarp();
    }
    if (norm_w) {
        float wsum = 0.0f;  // in selection order, as the CPU adds them
        for (int j = 0; j < k; ++j) wsum += __shfl_sync(0xffffffffu, w_sel, j);
        wsum = fmaxf(wsum, 6.103515625e-5f);
        w_sel = w_sel / wsum;
    }
    if (lane < k) weights[(size_t)t * k + lane] = w_sel;
    if (comb_rows != nullptr) {  // the selections in expert-id order (the k ids are distinct)
        int rank = 0;
        for (int i = 0; i < k; ++i) rank += __shfl_sync(0xffffffffu, id_sel, i) < id_sel ? 1 : 0;
        if (lane < k) {
            comb_rows[(size_t)t * k + rank] = t * k + lane;
            comb_w[(size_t)t * k + rank] = w_sel;
        }
    }
}

__global__ void combine_kernel(const float* __restrict__ ys, const int32_t* __restrict__ rows,
                               const float* __restrict__ w, int64_t n, int k, int64_t d, float* __restrict__ out) {
    pdl_launch_dependents();
    pdl_wait();
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n * d) return;
    const int64_t t = i / d, c = i % d;
    const int32_t* r = rows + t * k;
    const float* wt = w + t * k;
    float acc = __fmul_rn(wt[0], ys[(int64_t)r[0] * d + c]);
    for (int j = 1; j < k; ++j) acc = __fadd_rn(acc, __fmul_rn(wt[j], ys[(int64_t)r[j] * d + c]));
    out[i] = acc;
}

}  // namespace

void moe_route_softmax_cuda(cuda::Stream& stream, const float* x, const float* router, const float* bias,
                            int64_t n_embd, int64_t n, int n_expert, int k, bool norm_w, float* logits, int32_t* ids,
                            float* weights, int32_t* comb_rows, float* comb_w) {
    const bool ok = n_embd > 0 && n_embd <= INT_MAX && n >= 0 && n <= 65535 && n_expert > 0 &&
                    n_expert <= kMoeMaxExperts && k >= 1 && k <= kMoeMaxUsed && k <= n_expert;
    if (!cuda_kernels::begin_op(stream, ok, "moe_route_softmax_cuda", n)) return;
    auto* s = static_cast<cudaStream_t>(stream.handle());
    cuda::Device& dev = stream.device();
    if (n == 0) return;
    const bool pdl = stream.programmatic();
    if (!dev.check(cuda_kernels::launch_kernel(pdl, router_logits_kernel,
                                               dim3((unsigned)((n_expert + kWarps - 1) / kWarps), (unsigned)n),
                                               dim3(kWarps * 32), 0, s, x, router, bias, (int)n_embd, n_expert, logits),
                   "moe_route_softmax_cuda logits launch"))
        return;
    dev.check(cuda_kernels::launch_kernel(pdl, route_select_kernel, dim3((unsigned)n), dim3(32), 0, s, logits, n_expert,
                                          k, norm_w, ids, weights, comb_rows, comb_w),
              "moe_route_softmax_cuda select launch");
}

void moe_combine_cuda(cuda::Stream& stream, const float* ys, const int32_t* rows, const float* w, int64_t n, int k,
                      int64_t d, float* out) {
    if (!cuda_kernels::begin_op(stream, n >= 0 && d >= 0 && k >= 1, "moe_combine_cuda", n * d)) return;
    constexpr int kThreads = 256;
    if (n * d == 0) return;
    stream.device().check(cuda_kernels::launch_kernel(stream.programmatic(), combine_kernel,
                                                      dim3((unsigned)((n * d + kThreads - 1) / kThreads)),
                                                      dim3(kThreads), 0, static_cast<cudaStream_t>(stream.handle()),
                                                      ys, rows, w, n, k, d, out),
                          "moe_combine_cuda launch");
}

}  // namespace hearth::backend
