// CUDA paged attention (contract and numerics: attention.h): the per-token kernels (decode, and
// prefill calls the flash kernel does not take) and the KV writes; the flash kernel for prefill
// is in attention_flash.cu.
//
// One thread block per (token, kv head[, part of its query-head group]): its warps are the
// query heads that share that kv head (GQA), at most 8 per block. The block walks the token's
// visible positions in chunks of 32: it looks up the 32 slots through the block table, copies
// the chunk's K and V head rows (f16) into shared memory once for all its warps, and each warp
// then scores the chunk with one position per lane (the whole dot product in the lane, q read
// from shared memory as a broadcast), updates its running max and sum (online softmax) and
// accumulates V with the lanes over head-dim pairs. K rows in shared memory are padded to an odd
// number of 4-byte words so the 32 lanes reading 32 different rows hit 32 different banks.
//
// Cost: K/V bytes are read once per (token, kv head); for a prefill of n tokens that is ~n^2/2
// head rows per kv head, mostly from L2. Decode splits the sequence over several blocks per
// (token, kv head) (AttnSplitCuda, attention.h). Head dims 64/64 and 128/128 run instances with
// compile-time sizes (attention_kernel<kHdk, kHdv, kMaxHdv>), other shapes up to 256 the generic
// one. Head dims past 256 (K up to 576, V up to 512: MLA) run wide instances of their own, 576/512
// with compile-time sizes, the rest generic: 8 V pairs per lane instead of 4, and up to 88320
// bytes of shared memory (over the default 48 KiB, so raised per launch). The kernel
// waits for the previous kernel only through griddepcontrol (programmatic launch, launch.cuh),
// and can write the int8 input of the output projection itself (attention_cuda's out_q8).
// Decode-sized calls whose head dims are 64, 96 or 128 take decode_mma_kernel instead (tensor
// cores, f16 hi/lo operand pairs for f32-like numerics; see its comment below), which reads the
// cache 1.5-2.7x faster; attention_kernel keeps the other shapes (and HEARTH_CUDA_DECODE_MMA=0).
// Tried and dropped (H100, 2026-11-26): copying the K/V rows of earlier steps before the wait and
// loading the merge's partial sums in parallel, via a restructured copy loop: its code was 2.6x
// longer (run-time index divisions in three copies of the unrolled loop) and every decode step
// got 8 us per layer slower; fewer splits (4..16) did not help short contexts and hurt long ones.
#include "backend/cuda/attention.h"

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <climits>
#include <cmath>
#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <cstring>

#include "backend/cuda/attention_flash.cuh"
#include "backend/cuda/launch.cuh"
#include "backend/cuda/matmul_kernels.cuh"
#include "backend/cuda/mma.cuh"

namespace hearth::backend {
namespace {

using cuda_kernels::pdl_launch_dependents;
using cuda_kernels::pdl_wait;

constexpr int kChunk = 32;        // positions per shared-memory chunk (one per lane)
constexpr int kMaxWarps = 8;      // query heads per block
constexpr int kVecLoads = 8;      // 16-byte K/V loads in flight per thread
constexpr int kMaxHeadDim = 256;  // both head dims of the common instances (kMaxHdv = kMaxHeadDim)
// The wide instances (kMaxHdv = kMaxHeadDimV), chosen only when a head dim exceeds kMaxHeadDim:
// multi-head latent attention in its absorbed form (DeepSeek-V2/V3: K = 512 latent + 64 rope
// dims, V = the 512 latent dims, one kv head). Separate instances so that the common ones keep
// their accumulators (kMaxHdv / 64 pairs per lane) and registers.
constexpr int kMaxHeadDimK = kAttnMaxHeadDimK;  // attention.h
constexpr int kMaxHeadDimV = kAttnMaxHeadDimV;

// Dynamic shared memory of a block (attention_kernel's layout): slots, q of each warp, K rows of
// kw (hdk / 2 rounded up to odd) words, V rows; each term grows with the dims and the warps.
constexpr size_t attention_smem_bytes(int n_warps, int hdk, int hdv) {
    const int kw = hdk / 2 + ((hdk / 2) % 2 == 0 ? 1 : 0);
    return sizeof(uint32_t) * (kChunk + (size_t)n_warps * hdk + (size_t)kChunk * kw + (size_t)kChunk * (hdv / 2));
}
// The common instances fit the default 48 KiB. The wide ones need up to 88320 bytes (576/512, 8
// warps): every wide launch first raises its instance's limit to that largest need, always the
// same value, so a launch captured in a graph earlier never meets a lower limit.
static_assert(attention_smem_bytes(kMaxWarps, kMaxHeadDim, kMaxHeadDim) <= 48 * 1024);
constexpr size_t kWideSmemBytes = attention_smem_bytes(kMaxWarps, kMaxHeadDimK, kMaxHeadDimV);
static_assert(kWideSmemBytes == 88320);

struct AttnConsts {
    int n_head, group, n_splits, hdk, hdv, kw;  // kw: K row words in shared memory (odd)
    int sliding_window;
    float scale, softcap;
    const float* sinks;
    bool vec16;  // K/V head rows 16-byte aligned: chunks copied with 16-byte loads
    // Sequence split (gridDim.z > 1): partial [n_tokens][n_head][gridDim.z][hdv + 2] f32
    // (max, sum, V sums), counters [n_tokens][gridDim.y] int32, zero between calls.
    float* partial;
    int* counters;
    // Optional int8 copy of the output (attention_cuda's out_q8): [n_tokens][n_head * hdv] codes
    // and [n_tokens][n_head * hdv / 32] {d, sum}; null when not asked for.
    int8_t* q8_qs;
    float2* q8_ds;
};

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// The end of a (token, head) row, shared by attention_kernel and decode_mma_kernel. A warp holds
// the row's running max m, sum l and unnormalized V sums acc: lane `lane` has the V pairs
// lane + 32 r (r < kPairs, pairs past hdv / 2 unused).

// Part `part` of n_parts of the row into the split workspace: max, sum, then the V sums.
template <int kPairs>
__device__ __forceinline__ void publish_part(const AttnConsts& c, int t, int head, int part, int n_parts, int hdv,
                                             float m, float l, const float (&acc)[kPairs][2]) {
    const int lane = threadIdx.x % 32, hv2 = hdv / 2;
    float* mine = c.partial + (((int64_t)t * c.n_head + head) * n_parts + part) * (hdv + 2);
    if (lane == 0) mine[0] = m, mine[1] = l;
#pragma unroll
    for (int r = 0; r < kPairs; ++r) {
        const int w = lane + 32 * r;
        if (w < hv2) mine[2 + 2 * w] = acc[r][0], mine[3 + 2 * w] = acc[r][1];
    }
}

// Every thread of the block, after its parts are published: true in the last block of the
// (token, blockIdx.y) to arrive, which then merges; that block resets the counter for the next call.
__device__ __forceinline__ bool is_last_part(const AttnConsts& c, int t, int n_parts) {
    __threadfence();
    __syncthreads();
    __shared__ int s_last;
    if (threadIdx.x == 0) {
        int* counter = c.counters + (int64_t)t * gridDim.y + blockIdx.y;
        s_last = atomicAdd(counter, 1) == n_parts - 1;
        if (s_last) *counter = 0;  // every part has counted: ready for the next call
    }
    __syncthreads();
    const bool last = s_last;
    if (last) __threadfence();
    return last;
}

// The row's n_parts published parts merged into m, l, acc. len: the visible positions (the parts'
// sizes follow from it as the kernels cut them).
template <int kPairs>
__device__ __forceinline__ void merge_parts(const AttnConsts& c, int t, int head, int n_parts, int32_t len, int hdv,
                                            float& m, float& l, float (&acc)[kPairs][2]) {
    const int lane = threadIdx.x % 32, hv2 = hdv / 2;
    const float* all = c.partial + ((int64_t)t * c.n_head + head) * n_parts * (hdv + 2);
    // Parts past the last position are empty: merge only the first ones.
    const int32_t span = ((len + n_parts - 1) / n_parts + kChunk - 1) / kChunk * kChunk;
    const int n_used = span > 0 ? min(n_parts, (len + span - 1) / span) : 0;
    float m_all = -INFINITY;
    l = 0.0f;
#pragma unroll
    for (int r = 0; r < kPairs; ++r) acc[r][0] = acc[r][1] = 0.0f;
    if constexpr (kPairs <= 2) {
        // decode_mma_kernel's rows: the parts' maxima in one round of loads (lane z: parts z,
        // z + 32), then their sums and V sums kBatch parts at a time, every load of a batch issued
        // before its arithmetic, so the merge waits for memory n_used / kBatch + 1 times, not once
        // per part (32 parts one after the other cost several microseconds per call). The
        // arithmetic and its order are the sequential merge's (below); the padding past n_used
        // adds exact zeros. (attention_kernel's instances, 4+ pairs per lane, spill registers
        // with this loop, so they keep the sequential one.)
        for (int z = lane; z < n_used; z += 32) m_all = fmaxf(m_all, __ldcg(all + z * (hdv + 2)));
        m_all = warp_max(m_all);
        constexpr int kBatch = kPairs == 1 ? 8 : 4;
        for (int z0 = 0; z0 < n_used; z0 += kBatch) {
            float mz[kBatch], lz[kBatch], vz[kBatch][kPairs][2];
#pragma unroll
            for (int b = 0; b < kBatch; ++b) {
                const float* pz = all + (z0 + b) * (hdv + 2);
                const bool in = z0 + b < n_used;
                mz[b] = in ? __ldcg(pz) : -INFINITY;
                lz[b] = in ? __ldcg(pz + 1) : 0.0f;
#pragma unroll
                for (int r = 0; r < kPairs; ++r) {
                    const int w = lane + 32 * r;
                    vz[b][r][0] = in && w < hv2 ? __ldcg(pz + 2 + 2 * w) : 0.0f;
                    vz[b][r][1] = in && w < hv2 ? __ldcg(pz + 3 + 2 * w) : 0.0f;
                }
            }
#pragma unroll
            for (int b = 0; b < kBatch; ++b) {
                const float wz = mz[b] == -INFINITY ? 0.0f : expf(mz[b] - m_all);  // empty parts weigh nothing
                l += lz[b] * wz;
#pragma unroll
                for (int r = 0; r < kPairs; ++r) {
                    acc[r][0] = fmaf(wz, vz[b][r][0], acc[r][0]);
                    acc[r][1] = fmaf(wz, vz[b][r][1], acc[r][1]);
                }
            }
        }
    } else {
        for (int z = 0; z < n_used; ++z) m_all = fmaxf(m_all, __ldcg(all + z * (hdv + 2)));
        for (int z = 0; z < n_used; ++z) {
            const float* pz = all + z * (hdv + 2);
            const float mz = __ldcg(pz);
            const float wz = mz == -INFINITY ? 0.0f : expf(mz - m_all);  // empty parts weigh nothing
            l += __ldcg(pz + 1) * wz;
#pragma unroll
            for (int r = 0; r < kPairs; ++r) {
                const int w = lane + 32 * r;
                if (w < hv2) {
                    acc[r][0] = fmaf(wz, __ldcg(pz + 2 + 2 * w), acc[r][0]);
                    acc[r][1] = fmaf(wz, __ldcg(pz + 3 + 2 * w), acc[r][1]);
                }
            }
        }
    }
    m = m_all;
}

// The sink, the normalized row into out and, when asked for, its int8 copy.
template <int kPairs>
__device__ __forceinline__ void store_head(const AttnConsts& c, int t, int head, int hdv, float m, float l,
                                           float (&acc)[kPairs][2], float* __restrict__ out) {
    const int lane = threadIdx.x % 32, hv2 = hdv / 2;
    if (c.sinks) {
        const float sink = c.sinks[head];
        const float m_f = fmaxf(m, sink);
        const float corr = expf(m - m_f);
        l = l * corr + expf(sink - m_f);
#pragma unroll
        for (int r = 0; r < kPairs; ++r) acc[r][0] *= corr, acc[r][1] *= corr;
    }
    const float inv = l > 0.0f ? 1.0f / l : 0.0f;
    float2* o2 = reinterpret_cast<float2*>(out + ((int64_t)t * c.n_head + head) * hdv);
#pragma unroll
    for (int r = 0; r < kPairs; ++r) {
        const int w = lane + 32 * r;
        if (w < hv2) o2[w] = make_float2(acc[r][0] * inv, acc[r][1] * inv);
    }
    if (c.q8_qs == nullptr) return;
    // The same values as int8 blocks of 32, as quantize_q8 (matmul_kernels.cuh: quantize_4) makes
    // them: a block is values 32b .. 32b + 31 = pairs 16b .. 16b + 15, i.e. 16 lanes of one r
    // (hdv % 32 == 0, so a half-warp is wholly inside or outside the row). The max and the
    // integer sum are exact in any order, so the codes and {d, sum} are bit-identical.
    const int64_t e0 = ((int64_t)t * c.n_head + head) * hdv;
#pragma unroll
    for (int r = 0; r < kPairs; ++r) {
        if (32 * r >= hv2) break;  // uniform over the warp
        const int w = lane + 32 * r;
        const bool in = w < hv2;
        const float v0 = in ? acc[r][0] * inv : 0.0f, v1 = in ? acc[r][1] * inv : 0.0f;
        float amax = fmaxf(fabsf(v0), fabsf(v1));
#pragma unroll
        for (int o = 8; o > 0; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
        const float d = amax / 127.0f;
        const float id = amax > 0.0f ? 127.0f / amax : 0.0f;
        const int q0 = __float2int_rn(v0 * id), q1 = __float2int_rn(v1 * id);
        int sum = q0 + q1;
#pragma unroll
        for (int o = 8; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
        if (in) {
            *reinterpret_cast<uint16_t*>(c.q8_qs + e0 + 2 * w) = (uint16_t)((q0 & 0xff) | ((q1 & 0xff) << 8));
            if ((w & 15) == 0) c.q8_ds[e0 / 32 + w / 16] = make_float2(d, (float)sum);
        }
    }
}

// kHdk, kHdv: the head dims as compile-time constants (0: c.hdk, c.hdv at run time). The common
// shapes (64/64, 128/128) get their own instances: the chunk copy's index arithmetic then has
// constant divisors (shifts) and the loops fixed trip counts. The kernel runs for a few
// microseconds per decode step, and its generic form, with run-time divisions in every unrolled
// copy step, is long enough that instruction fetch and index math showed in the step time (a
// longer variant of it cost 8 us per layer on the H100). kMaxHdv: the largest V head dim the
// instance accepts; each lane accumulates kMaxHdv / 64 V pairs (pairs lane + 32 r) in registers.
template <int kHdk, int kHdv, int kMaxHdv>
__global__ void __launch_bounds__(32 * kMaxWarps) attention_kernel(const float* __restrict__ q, PagedKvCuda kv,
                                                                     AttnIndexCuda idx, AttnConsts c,
                                                                     float* __restrict__ out) {
    pdl_launch_dependents();
    pdl_wait();
    const int hdk = kHdk > 0 ? kHdk : c.hdk, hdv = kHdv > 0 ? kHdv : c.hdv;
    const int kw = kHdk > 0 ? kHdk / 2 + ((kHdk / 2) % 2 == 0 ? 1 : 0) : c.kw;
    extern __shared__ uint32_t smem[];
    const int t = blockIdx.x;
    const int kvh = blockIdx.y / c.n_splits, split = blockIdx.y % c.n_splits;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, n_warps = blockDim.x / 32;
    const int hi = split * n_warps + warp;  // index within the group
    const bool valid = hi < c.group;
    const int head = kvh * c.group + (valid ? hi : 0);

    int* s_slot = reinterpret_cast<int*>(smem);                      // [kChunk]
    float* s_q = reinterpret_cast<float*>(smem + kChunk);            // [n_warps][hdk]
    uint32_t* s_k = smem + kChunk + n_warps * hdk;                 // [kChunk][kw] half2
    uint32_t* s_v = s_k + kChunk * kw;                             // [kChunk][hdv / 2] half2
    const int hk2 = hdk / 2, hv2 = hdv / 2;

    // The tables were uploaded before the step: readable before waiting for the kernels before.
    // Visible positions [lo, end): lo is the later of the sliding window's start and kv_begin.
    const int32_t pos = idx.positions[t], end = idx.kv_end[t];
    const int32_t window_lo = c.sliding_window > 0 ? max(0, pos - c.sliding_window + 1) : 0;
    const int32_t lo = idx.kv_begin != nullptr ? max(window_lo, idx.kv_begin[t]) : window_lo;
    const int32_t* table = idx.block_tables + (int64_t)idx.seq_ids[t] * idx.table_stride;
    const float* qh = q + ((int64_t)t * c.n_head + head) * hdk;
    const float2* q2 = reinterpret_cast<const float2*>(s_q + warp * hdk);
    const uint32_t* kwords = static_cast<const uint32_t*>(kv.k);
    const uint32_t* vwords = static_cast<const uint32_t*>(kv.v);
    const int64_t k_head_word = (int64_t)kvh * hdk / 2, v_head_word = (int64_t)kvh * hdv / 2;

    // This block's part of [lo, end): all of it, or one of gridDim.z runs of whole chunks.
    const int n_parts = gridDim.z, part = blockIdx.z;
    int32_t start = lo, stop = end;
    if (n_parts > 1) {
        const int32_t len = max(0, end - lo);
        const int32_t span = ((len + n_parts - 1) / n_parts + kChunk - 1) / kChunk * kChunk;
        start = min(end, lo + part * span);
        stop = min(end, start + span);
    }
    float m = -INFINITY, l = 0.0f;
    float acc[kMaxHdv / 64][2] = {};
    for (int i = lane; i < hdk; i += 32) s_q[warp * hdk + i] = qh[i];
    for (int32_t c0 = start; c0 < stop; c0 += kChunk) {
        __syncthreads();  // the previous chunk is consumed
        if (threadIdx.x < kChunk) {
            const int32_t j = c0 + threadIdx.x;
            s_slot[threadIdx.x] = j < stop ? table[j / kv.block_size] * kv.block_size + j % kv.block_size : -1;
        }
        __syncthreads();
        if (c.vec16) {
            const int hk8 = hdk / 8, hv8 = hdv / 8, n_k = kChunk * hk8, n_all = n_k + kChunk * hv8;
            for (int e0 = threadIdx.x; e0 < n_all; e0 += kVecLoads * blockDim.x) {
                uint4 r[kVecLoads];
#pragma unroll
                for (int u = 0; u < kVecLoads; ++u) {
                    const int e = e0 + u * blockDim.x;
                    r[u] = make_uint4(0u, 0u, 0u, 0u);
                    if (e < n_k) {
                        const int slot = s_slot[e / hk8];
                        if (slot >= 0)
                            r[u] = __ldg(reinterpret_cast<const uint4*>(kwords + (int64_t)slot * kv.k_row_stride / 2 +
                                                                        k_head_word) + e % hk8);
                    } else if (e < n_all) {
                        const int slot = s_slot[(e - n_k) / hv8];
                        if (slot >= 0)
                            r[u] = __ldg(reinterpret_cast<const uint4*>(vwords + (int64_t)slot * kv.v_row_stride / 2 +
                                                                        v_head_word) + (e - n_k) % hv8);
                    }
                }
#pragma unroll
                for (int u = 0; u < kVecLoads; ++u) {
                    const int e = e0 + u * blockDim.x;
                    uint32_t* d = nullptr;
                    if (e < n_k) d = s_k + (e / hk8) * kw + 4 * (e % hk8);
                    else if (e < n_all) d = s_v + ((e - n_k) / hv8) * hv2 + 4 * ((e - n_k) % hv8);
                    if (d) d[0] = r[u].x, d[1] = r[u].y, d[2] = r[u].z, d[3] = r[u].w;
                }
            }
        } else {
        for (int e = threadIdx.x; e < kChunk * hk2; e += blockDim.x) {
            const int jj = e / hk2, w = e % hk2;
            const int slot = s_slot[jj];
            s_k[jj * kw + w] = slot >= 0 ? kwords[(int64_t)slot * kv.k_row_stride / 2 + k_head_word + w] : 0u;
        }
        for (int e = threadIdx.x; e < kChunk * hv2; e += blockDim.x) {
            const int jj = e / hv2, w = e % hv2;
            const int slot = s_slot[jj];
            s_v[jj * hv2 + w] = slot >= 0 ? vwords[(int64_t)slot * kv.v_row_stride / 2 + v_head_word + w] : 0u;
        }
        }
        __syncthreads();

        const int32_t j = c0 + lane;
        float s = -INFINITY;
        if (j < stop) {
            const uint32_t* kr = s_k + lane * kw;
            float dot = 0.0f;
            for (int w = 0; w < hk2; ++w) {
                const float2 kf = __half22float2(*reinterpret_cast<const __half2*>(kr + w));
                const float2 qf = q2[w];
                dot = fmaf(qf.x, kf.x, dot);
                dot = fmaf(qf.y, kf.y, dot);
            }
            s = dot * c.scale;
            if (c.softcap > 0.0f) s = c.softcap * tanhf(s / c.softcap);
        }
        const float m_new = fmaxf(m, warp_max(s));  // finite: lane 0's position is visible
        const float corr = expf(m - m_new);          // 0 on the first chunk (m = -inf)
        const float p = j < stop ? expf(s - m_new) : 0.0f;
        l = l * corr + warp_sum(p);
#pragma unroll
        for (int r = 0; r < kMaxHdv / 64; ++r) acc[r][0] *= corr, acc[r][1] *= corr;
        const int n_pos = min(kChunk, stop - c0);
        for (int jj = 0; jj < n_pos; ++jj) {
            const float pj = __shfl_sync(0xffffffffu, p, jj);
            const uint32_t* vr = s_v + jj * hv2;
#pragma unroll
            for (int r = 0; r < kMaxHdv / 64; ++r) {
                const int w = lane + 32 * r;
                if (w < hv2) {
                    const float2 vf = __half22float2(*reinterpret_cast<const __half2*>(vr + w));
                    acc[r][0] = fmaf(pj, vf.x, acc[r][0]);
                    acc[r][1] = fmaf(pj, vf.y, acc[r][1]);
                }
            }
        }
        m = m_new;
    }
    if (n_parts > 1) {
        // Publish this part, then the last block of the (token, kv head) merges all of them.
        if (valid) publish_part<kMaxHdv / 64>(c, t, head, part, n_parts, hdv, m, l, acc);
        if (!is_last_part(c, t, n_parts) || !valid) return;
        merge_parts<kMaxHdv / 64>(c, t, head, n_parts, max(0, end - lo), hdv, m, l, acc);
    }
    if (!valid) return;
    store_head<kMaxHdv / 64>(c, t, head, hdv, m, l, acc, out);
}

// ---- Decode attention on tensor cores ----
//
// One block of kDmWarps warps per (token, kv head[, chunk of 8 of its query heads], part of the
// sequence), as attention_kernel's grid. The warps take turns over the part's positions in steps
// of kDmPos (warp w: steps w, w + kDmWarps, ...), each with its own online softmax and its own
// cp.async pipeline of kDmStages steps (K and V head rows of kDmPos positions per stage, no block
// barrier in the loop), and the block merges its warps' states at the end. S = Q K^T and O += P V
// are mma.sync m16n8k16 with f32 accumulation: the A rows are the (up to 8) query heads, each
// twice, so that the f16 operands carry f32-like values without more mma: rows 0..7 hold
// hi = f16(x) and rows 8..15 lo = f16((x - hi) * 2^11) (x = q * scale for S, the probabilities for
// P), and a row's result is row g + 2^-11 row g + 8 (the same lane's c[0..1] and c[2..3]). x is
// then represented to ~2^-22 relative (2^-36 absolute near 0), the products are exact in f32, and
// the numerics are those of attention.h's per-token kernel up to the accumulation order (the
// probabilities' sum l is the f32 sum of the unrounded values).
// Why: attention_kernel scores with one position per lane and every warp (query head) reading
// the chunk's K and V rows from shared memory itself; at Llama-3.1-8B's 4 heads per kv head its
// instruction issue, not the DRAM, bounded decode (1.3 TB/s on an H100 at 32 sequences x 516).
// Measured (H100, cuda_attention_bench --decode, us per layer at the decoder's split counts,
// attention_kernel then this; K+V GB/s of this): 32 sequences x 516 positions 50.1 / 33.1 (2045);
// 32 x 1024 81.0 / 56.9 (2359); 64 x 512 77.7 / 53.7 (2498); 8 x 2048, 4 tokens each 138 / 74.5;
// 1 x 4096 31.9 / 12.2 (1375); 1 x 16384 95.1 / 34.8 (1930); 1 x 600 13.9 / 6.4; 1 x 64 8.8 / 5.0
// (one call's floor, launch to merge, is ~5 us). Llama-3.1-8B Q4_K_M (cuda_forward_bench): tg128
// 375.9 -> 386.2 t/s, tg32@4096 296.9 -> 339.3 t/s, 32 streams at 512 9.66 -> 9.12 ms per step.
// Tried (H100, cuda_attention_bench --decode): 3 stages per warp (104 KB, 2 blocks per SM) gained
// for one long sequence (1 x 16384 at 32 parts 35.5 against 39.1 us) but lost for batches (32 x
// 516 at 5 parts 40.4 against 36.8, 64 x 512 66.2 against 62.9): dropped.
constexpr int kDmWarps = 4;
constexpr int kDmPos = 16;  // positions per warp step (one k-step of P V)
constexpr int kDmRows = 8;  // query heads per block (the hi rows of the m16 tile)
constexpr int kDmStages = 2;  // steps per warp in shared memory: one computed, one in flight
constexpr float kDmLoScale = 2048.0f, kDmLoInv = 1.0f / 2048.0f;

// Dynamic shared memory: per warp, kDmStages x {K, V} x kDmPos rows of D + 8 halves (69,632
// bytes at D = 128: 3 blocks per SM, as the 168 registers per thread allow); the warps' end
// states reuse it.
template <int D>
constexpr size_t decode_mma_smem_bytes() {
    return (size_t)kDmWarps * kDmStages * 2 * kDmPos * (D + 8) * sizeof(__half);
}

// Two floats as the hi and lo f16 pairs described above.
__device__ __forceinline__ void split_half2(float x0, float x1, uint32_t& hi, uint32_t& lo) {
    const __half2 h = __floats2half2_rn(x0, x1);
    const float2 hf = __half22float2(h);
    hi = *reinterpret_cast<const uint32_t*>(&h);
    lo = cuda_mma::pack_half2((x0 - hf.x) * kDmLoScale, (x1 - hf.y) * kDmLoScale);
}

// D: both head dims (64, 96 or 128).
template <int D>
__global__ void __launch_bounds__(32 * kDmWarps) decode_mma_kernel(const float* __restrict__ q, PagedKvCuda kv,
                                                                    AttnIndexCuda idx, AttnConsts c,
                                                                    float* __restrict__ out) {
    using namespace cuda_mma;
    pdl_launch_dependents();
    pdl_wait();
    constexpr int kLd = D + 8;          // halves per shared row (ldmatrix without bank conflicts)
    constexpr int kPieces = D / 8;      // 16-byte pieces per head row
    constexpr int kPairs = (D + 63) / 64;
    extern __shared__ __align__(16) unsigned char dm_smem[];
    const int t = blockIdx.x;
    const int kvh = blockIdx.y / c.n_splits, h0 = (blockIdx.y % c.n_splits) * kDmRows;
    const int hg = min(kDmRows, c.group - h0);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, tq = lane % 4;
    constexpr int kStages = kDmStages;
    // This warp's copies: [kStages][K, V][kDmPos][kLd] halves.
    __half* s_kv = reinterpret_cast<__half*>(dm_smem) + warp * kStages * 2 * kDmPos * kLd;

    const int32_t pos = idx.positions[t], end = idx.kv_end[t];
    const int32_t window_lo = c.sliding_window > 0 ? max(0, pos - c.sliding_window + 1) : 0;
    const int32_t lo = idx.kv_begin != nullptr ? max(window_lo, idx.kv_begin[t]) : window_lo;
    const int32_t* table = idx.block_tables + (int64_t)idx.seq_ids[t] * idx.table_stride;
    const int n_parts = gridDim.z, part = blockIdx.z;
    int32_t start = lo, stop = end;
    if (n_parts > 1) {  // as attention_kernel (merge_parts sizes the parts the same way)
        const int32_t len = max(0, end - lo);
        const int32_t span = ((len + n_parts - 1) / n_parts + kChunk - 1) / kChunk * kChunk;
        start = min(end, lo + part * span);
        stop = min(end, start + span);
    }

    // Step i of this part: positions start + i * kDmPos .. into stage st; slots past stop read
    // nothing (zeros). Lane l copies the 16-byte pieces l, l + 32, ... of the step's K rows and
    // of its V rows (16 lanes cover a 256-byte row), each row's slot from lane row % kDmPos.
    // The block-table entry of a step is read one step before its copy is issued (fetch_block,
    // then issue_step a loop iteration later), off the step's path; measured, this and loading Q
    // behind the first copies changed no shape by more than the noise (+-3 %).
    const int n_steps = stop > start ? (stop - start + kDmPos - 1) / kDmPos : 0;
    const __half* kbase = static_cast<const __half*>(kv.k) + (int64_t)kvh * D;
    const __half* vbase = static_cast<const __half*>(kv.v) + (int64_t)kvh * D;
    auto fetch_block = [&](int i) {  // this lane's position's cache block in step i, -1: none
        const int32_t j = start + i * kDmPos + lane % kDmPos;
        return i < n_steps && j < stop ? table[j / kv.block_size] : -1;
    };
    auto issue_step = [&](int i, int block, int st) {
        if (i < n_steps) {
            const int32_t j = start + i * kDmPos + lane % kDmPos;
            const int my_slot = block >= 0 ? block * kv.block_size + j % kv.block_size : -1;
            __half* kd = s_kv + st * 2 * kDmPos * kLd;
            __half* vd = kd + kDmPos * kLd;
#pragma unroll
            for (int e0 = 0; e0 < kDmPos * kPieces; e0 += 32) {
                const int e = e0 + lane, r = e / kPieces, u = e % kPieces;
                const int slot = __shfl_sync(0xffffffffu, my_slot, r);
                const int64_t sl = slot >= 0 ? slot : 0;
                cp_async16(kd + r * kLd + 8 * u, kbase + sl * kv.k_row_stride + 8 * u, slot >= 0 ? 16 : 0);
                cp_async16(vd + r * kLd + 8 * u, vbase + sl * kv.v_row_stride + 8 * u, slot >= 0 ? 16 : 0);
            }
        }
        cp_async_commit();  // empty past the last step: the group count stays uniform
    };
#pragma unroll
    for (int s = 0; s < kStages - 1; ++s) issue_step(warp + s * kDmWarps, fetch_block(warp + s * kDmWarps), s);
    int block_ahead = fetch_block(warp + (kStages - 1) * kDmWarps);

    // Q as the A fragments of every k-step, loaded while the first copies are in flight (the
    // copies' asm is a compiler barrier, so the order here is the order of issue): row g = head
    // h0 + g (hi), row g + 8 the same head (lo).
    uint32_t qa[D / 16][4];
    {
        const bool row_ok = g < hg;
        const float* qh = q + ((int64_t)t * c.n_head + kvh * c.group + h0 + (row_ok ? g : 0)) * D + 2 * tq;
#pragma unroll
        for (int ks = 0; ks < D / 16; ++ks)
#pragma unroll
            for (int hf = 0; hf < 2; ++hf) {
                float2 v = row_ok ? *reinterpret_cast<const float2*>(qh + ks * 16 + 8 * hf) : make_float2(0.0f, 0.0f);
                split_half2(v.x * c.scale, v.y * c.scale, qa[ks][2 * hf], qa[ks][2 * hf + 1]);
            }
    }

    float m = -INFINITY, l = 0.0f;  // row g's running max and this lane's part of its sum
    float o[D / 8][4];               // O (16 x D): rows g (hi) and g + 8 (lo), columns 8 nd + 2 tq ..
#pragma unroll
    for (int nd = 0; nd < D / 8; ++nd) o[nd][0] = o[nd][1] = o[nd][2] = o[nd][3] = 0.0f;
    for (int k = 0, i = warp; i < n_steps; ++k, i += kDmWarps) {
        issue_step(i + (kStages - 1) * kDmWarps, block_ahead, (k + kStages - 1) % kStages);
        block_ahead = fetch_block(i + kStages * kDmWarps);
        cp_async_wait<kStages - 1>();
        __syncwarp();
        const __half* kt = s_kv + (k % kStages) * 2 * kDmPos * kLd;
        const __half* vt = kt + kDmPos * kLd;
        // S = Q K^T: two n-tiles of 8 positions.
        float sc[2][4] = {};
#pragma unroll
        for (int ks = 0; ks < D / 16; ++ks) {
            uint32_t b[4];
            ldmatrix_x4(b, &kt[((lane & 7) + ((lane >> 4) << 3)) * kLd + ks * 16 + ((lane >> 3) & 1) * 8]);
            mma_16816(sc[0], qa[ks], b[0], b[1]);
            mma_16816(sc[1], qa[ks], b[2], b[3]);
        }
        // This lane's scores: head g, positions c0 + 8 ni + 2 tq + e.
        const int32_t c0 = start + i * kDmPos;
        float s[2][2];
        float mx = m;
#pragma unroll
        for (int ni = 0; ni < 2; ++ni)
#pragma unroll
            for (int e = 0; e < 2; ++e) {
                float x = sc[ni][e] + sc[ni][2 + e] * kDmLoInv;
                if (c.softcap > 0.0f) x = c.softcap * tanhf(x / c.softcap);
                s[ni][e] = c0 + 8 * ni + 2 * tq + e < stop ? x : -INFINITY;
                mx = fmaxf(mx, s[ni][e]);
            }
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));  // finite: position c0 is visible
        const float corr = expf(m - mx);                       // 0 on the first step (m = -inf)
        float p[2][2], ls = 0.0f;
#pragma unroll
        for (int ni = 0; ni < 2; ++ni)
#pragma unroll
            for (int e = 0; e < 2; ++e) p[ni][e] = expf(s[ni][e] - mx), ls += p[ni][e];
        l = l * corr + ls;
        m = mx;
        // O = O corr + P V: P as the A fragment (row g hi, row g + 8 lo; positions 2 tq.. and
        // 2 tq + 8..). The step's P V starts from zero and joins O in an f32 fmaf: the tensor
        // cores truncate their f32 sums, so O accumulated inside them over thousands of positions
        // would drift by up to ~2^-23 per step; this way O sees one rounding per step, as the
        // per-token kernel's V sums do.
        uint32_t pa[4];
        split_half2(p[0][0], p[0][1], pa[0], pa[1]);
        split_half2(p[1][0], p[1][1], pa[2], pa[3]);
#pragma unroll
        for (int dn = 0; dn < D / 16; ++dn) {
            uint32_t b[4];
            ldmatrix_x4_trans(b, &vt[(((lane >> 3) & 1) * 8 + (lane & 7)) * kLd + dn * 16 + (lane >> 4) * 8]);
            float pv[2][4] = {};
            mma_16816(pv[0], pa, b[0], b[1]);
            mma_16816(pv[1], pa, b[2], b[3]);
#pragma unroll
            for (int h = 0; h < 2; ++h)
#pragma unroll
                for (int e = 0; e < 4; ++e) o[2 * dn + h][e] = fmaf(o[2 * dn + h][e], corr, pv[h][e]);
        }
        __syncwarp();  // every lane is done with this stage before a later step refills it
    }
    cp_async_wait<0>();
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);

    // The warps' states into shared memory (over the copy buffers, once every warp is done):
    // s_o [kDmWarps][kDmRows][D + 8] f32 rows (hi + 2^-11 lo), s_ml [kDmWarps][kDmRows] {m, l}.
    __syncthreads();
    float* s_o = reinterpret_cast<float*>(dm_smem);
    float2* s_ml = reinterpret_cast<float2*>(s_o + kDmWarps * kDmRows * (D + 8));
#pragma unroll
    for (int nd = 0; nd < D / 8; ++nd)
        *reinterpret_cast<float2*>(s_o + (warp * kDmRows + g) * (D + 8) + nd * 8 + 2 * tq) =
            make_float2(o[nd][0] + o[nd][2] * kDmLoInv, o[nd][1] + o[nd][3] * kDmLoInv);
    if (tq == 0) s_ml[warp * kDmRows + g] = make_float2(m, l);
    __syncthreads();

    // Warp w finishes heads w, w + kDmWarps, ... of the block: the warps merged in order 0, 1, ...
    constexpr int kHeadsPerWarp = kDmRows / kDmWarps;
    float hm[kHeadsPerWarp], hl[kHeadsPerWarp], acc[kHeadsPerWarp][kPairs][2];
#pragma unroll
    for (int hh = 0; hh < kHeadsPerWarp; ++hh) {
        const int row = warp + hh * kDmWarps;
        float m_all = -INFINITY;
#pragma unroll
        for (int w = 0; w < kDmWarps; ++w) m_all = fmaxf(m_all, s_ml[w * kDmRows + row].x);
        hl[hh] = 0.0f;
#pragma unroll
        for (int r = 0; r < kPairs; ++r) acc[hh][r][0] = acc[hh][r][1] = 0.0f;
#pragma unroll
        for (int w = 0; w < kDmWarps; ++w) {
            const float2 ml = s_ml[w * kDmRows + row];
            const float wt = ml.x == -INFINITY ? 0.0f : expf(ml.x - m_all);  // a warp with no step weighs nothing
            hl[hh] += ml.y * wt;
#pragma unroll
            for (int r = 0; r < kPairs; ++r) {
                const int pr = lane + 32 * r;
                if (pr < D / 2) {
                    const float2 v = *reinterpret_cast<const float2*>(s_o + (w * kDmRows + row) * (D + 8) + 2 * pr);
                    acc[hh][r][0] = fmaf(wt, v.x, acc[hh][r][0]);
                    acc[hh][r][1] = fmaf(wt, v.y, acc[hh][r][1]);
                }
            }
        }
        hm[hh] = m_all;
    }
    if (n_parts > 1) {
#pragma unroll
        for (int hh = 0; hh < kHeadsPerWarp; ++hh) {
            const int row = warp + hh * kDmWarps;
            if (row < hg)
                publish_part<kPairs>(c, t, kvh * c.group + h0 + row, part, n_parts, D, hm[hh], hl[hh], acc[hh]);
        }
        if (!is_last_part(c, t, n_parts)) return;
#pragma unroll
        for (int hh = 0; hh < kHeadsPerWarp; ++hh) {
            const int row = warp + hh * kDmWarps;
            if (row < hg)
                merge_parts<kPairs>(c, t, kvh * c.group + h0 + row, n_parts, max(0, end - lo), D, hm[hh], hl[hh],
                                    acc[hh]);
        }
    }
#pragma unroll
    for (int hh = 0; hh < kHeadsPerWarp; ++hh) {
        const int row = warp + hh * kDmWarps;
        if (row < hg) store_head<kPairs>(c, t, kvh * c.group + h0 + row, D, hm[hh], hl[hh], acc[hh], out);
    }
}

__global__ void kv_write_kernel(const float* __restrict__ k, int64_t k_stride, const float* __restrict__ v,
                                int64_t v_stride, const int32_t* __restrict__ slots, int64_t n_tokens, int k_width,
                                int v_width, __half* __restrict__ k_cache, int64_t k_row_stride,
                                __half* __restrict__ v_cache, int64_t v_row_stride) {
    pdl_launch_dependents();
    pdl_wait();
    const int width = k_width + v_width;
    const int64_t gid = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (gid >= n_tokens * width) return;
    const int64_t t = gid / width;
    const int i = (int)(gid % width);
    const int64_t slot = slots[t];
    if (i < k_width) k_cache[slot * k_row_stride + i] = __float2half_rn(k[t * k_stride + i]);
    else v_cache[slot * v_row_stride + (i - k_width)] = __float2half_rn(v[t * v_stride + (i - k_width)]);
}

}  // namespace

namespace {

int attention_group_splits(const AttentionParams& p) {
    const int group = p.n_head / p.n_head_kv;
    const int n_warps = group < kMaxWarps ? group : kMaxWarps;
    return (group + n_warps - 1) / n_warps;
}

size_t attention_partial_bytes(int64_t n_tokens, const AttentionParams& p, int n_splits) {
    return (((size_t)n_tokens * p.n_head * n_splits * (p.head_dim_v + 2) * sizeof(float)) + 15) & ~(size_t)15;
}

}  // namespace


bool attention_cuda_decode_mma(const AttentionParams& p) {
    static_assert(kDmRows == kMaxWarps, "both kernels cut a kv head's query heads into the same chunks");
    const int d = p.head_dim_k;
    const char* env = std::getenv("HEARTH_CUDA_DECODE_MMA");
    return !(env != nullptr && std::strcmp(env, "0") == 0) && p.head_dim_v == d && (d == 64 || d == 96 || d == 128);
}

// attention_kernel, 8 blocks per SM: 8B Q4_K_M decode steps of 16 / 32 tokens 7.81 / 12.30 ms
// with max_splits at every size, 7.66 / 11.79 ms with this; 4 or 2 per SM lost at 4 tokens (H100,
// 2026-11-26). decode_mma_kernel, 2 blocks per SM and 16 parts for one token (H100,
// cuda_attention_bench --decode, us per layer at 1, 2, 4, 8, 16, 32 parts): 32 x 516 positions
// 32.9 33.1 33.0 40.6 54.5 84.4; 64 x 512 53.7 56.9 63.7 76.1 108 161; 1 x 4096 62.9 34.3 20.2
// 13.4 12.2 16.5; 1 x 16384 234 120 63.0 37.1 34.8 37.3; 1 x 600 13.1 8.7 6.9 6.8 6.4 9.3.
AttnDecodeSplits attention_decode_splits(const AttentionParams& p, int n_sm, bool tensor_cores) {
    AttnDecodeSplits s;
    if (p.n_head_kv <= 0 || p.n_head % p.n_head_kv != 0) return s;
    const int blocks_per_token = std::max(1, p.n_head_kv * attention_group_splits(p));
    s.max_splits = std::clamp((tensor_cores ? 1 : 2) * n_sm / blocks_per_token, 1, 32);
    s.target_blocks = (tensor_cores ? 2 : 8) * (int64_t)n_sm;
    return s;
}

int AttnDecodeSplits::for_tokens(const AttentionParams& p, int64_t n_tokens) const {
    if (p.n_head_kv <= 0 || p.n_head % p.n_head_kv != 0) return 1;
    const int64_t blocks = std::max<int64_t>(1, n_tokens * p.n_head_kv * attention_group_splits(p));
    return (int)std::clamp<int64_t>((target_blocks + blocks - 1) / blocks, 1, max_splits);
}

size_t attention_split_bytes(int64_t n_tokens, const AttentionParams& p, int n_splits) {
    if (p.n_head <= 0 || p.n_head_kv <= 0 || p.n_head % p.n_head_kv != 0 || n_splits < 1) return 0;
    return attention_partial_bytes(n_tokens, p, n_splits) +
           (size_t)n_tokens * p.n_head_kv * attention_group_splits(p) * sizeof(int);
}

void attention_cuda(cuda::Stream& stream, const float* q, const PagedKvCuda& kv, const AttnIndexCuda& idx,
                    int64_t n_tokens, const AttentionParams& p, float* out, const AttnSplitCuda& split, void* out_q8) {
    cuda::Device& dev = stream.device();
    if (dev.is_failed()) return;
    const bool args_ok = p.n_head > 0 && p.n_head_kv > 0 && p.n_head % p.n_head_kv == 0 && p.head_dim_k > 0 &&
                         p.head_dim_v > 0 && p.head_dim_k % 2 == 0 && p.head_dim_v % 2 == 0 &&
                         p.head_dim_k <= kMaxHeadDimK && p.head_dim_v <= kMaxHeadDimV && kv.block_size > 0 &&
                         kv.k_row_stride % 2 == 0 && kv.v_row_stride % 2 == 0 && n_tokens >= 0 &&
                         n_tokens <= INT_MAX && split.n_splits >= 1 && split.n_splits <= kAttnMaxSplits &&
                         reinterpret_cast<uintptr_t>(split.workspace) % 16 == 0 &&
                         (out_q8 == nullptr || (p.head_dim_v % 32 == 0 && reinterpret_cast<uintptr_t>(out_q8) % 16 == 0 &&
                                                n_tokens * p.n_head * p.head_dim_v <= INT_MAX));
    if (!args_ok) {
        dev.fail(error(StatusCode::invalid_argument,
                       strformat("attention_cuda: n_head %d, n_head_kv %d, head dims %d/%d (even, <= %d/%d; V %% 32 "
                                 "with an int8 output), block size %d, row strides %lld/%lld (even)",
                                 p.n_head, p.n_head_kv, p.head_dim_k, p.head_dim_v, kMaxHeadDimK, kMaxHeadDimV,
                                 kv.block_size, (long long)kv.k_row_stride, (long long)kv.v_row_stride)));
        return;
    }
    if (n_tokens == 0 || !dev.make_current()) return;
    if (attention_cuda_uses_flash(p, kv, n_tokens, split, out_q8)) {
        flash_attention_cuda(stream, q, kv, idx, n_tokens, p, out);
        return;
    }
    AttnConsts c{};
    c.n_head = p.n_head;
    c.group = p.n_head / p.n_head_kv;
    const int n_warps = c.group < kMaxWarps ? c.group : kMaxWarps;
    c.n_splits = (c.group + n_warps - 1) / n_warps;
    c.hdk = p.head_dim_k, c.hdv = p.head_dim_v;
    c.kw = c.hdk / 2 + ((c.hdk / 2) % 2 == 0 ? 1 : 0);
    c.sliding_window = p.sliding_window;
    c.scale = p.scale, c.softcap = p.softcap, c.sinks = p.sinks;
    c.vec16 = c.hdk % 8 == 0 && c.hdv % 8 == 0 && kv.k_row_stride % 8 == 0 && kv.v_row_stride % 8 == 0 &&
              reinterpret_cast<uintptr_t>(kv.k) % 16 == 0 && reinterpret_cast<uintptr_t>(kv.v) % 16 == 0;
    const int n_parts = split.workspace != nullptr ? split.n_splits : 1;
    if (n_parts > 1) {
        c.partial = static_cast<float*>(split.workspace);
        c.counters = reinterpret_cast<int*>(static_cast<std::byte*>(split.workspace) +
                                            attention_partial_bytes(n_tokens, p, n_parts));
    }
    if (out_q8 != nullptr) {
        const int64_t n_in = (int64_t)p.n_head * p.head_dim_v;
        c.q8_qs = static_cast<int8_t*>(out_q8);
        c.q8_ds = reinterpret_cast<float2*>(c.q8_qs + cuda_kernels::act_q8_ds_offset(n_in, n_tokens));
    }
    const dim3 grid((unsigned)n_tokens, (unsigned)(p.n_head_kv * c.n_splits), (unsigned)n_parts);
    if (c.vec16 && attention_cuda_decode_mma(p)) {
        // c.n_splits (head chunks of kMaxWarps = kDmRows heads) is the same for both kernels.
        const int d = p.head_dim_k;
        auto pick = [&](auto k64, auto k96, auto k128) { return d == 64 ? k64 : d == 96 ? k96 : k128; };
        auto* kernel = pick(decode_mma_kernel<64>, decode_mma_kernel<96>, decode_mma_kernel<128>);
        const size_t smem = pick(decode_mma_smem_bytes<64>(), decode_mma_smem_bytes<96>(), decode_mma_smem_bytes<128>());
        if (!dev.check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem),
                       "attention_cuda shared memory"))
            return;
        dev.check(cuda_kernels::launch_kernel(stream.programmatic(), kernel, grid, dim3(32 * kDmWarps), smem,
                                              static_cast<cudaStream_t>(stream.handle()), q, kv, idx, c, out),
                  "attention_cuda launch");
        return;
    }
    const size_t smem_bytes = attention_smem_bytes(n_warps, c.hdk, c.hdv);
    const bool wide = p.head_dim_k > kMaxHeadDim || p.head_dim_v > kMaxHeadDim;
    auto* kernel = wide ? (p.head_dim_k == 576 && p.head_dim_v == 512 ? attention_kernel<576, 512, kMaxHeadDimV>
                                                                      : attention_kernel<0, 0, kMaxHeadDimV>)
                   : p.head_dim_k == 128 && p.head_dim_v == 128 ? attention_kernel<128, 128, kMaxHeadDim>
                   : p.head_dim_k == 64 && p.head_dim_v == 64   ? attention_kernel<64, 64, kMaxHeadDim>
                                                                : attention_kernel<0, 0, kMaxHeadDim>;
    if (wide && !dev.check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                (int)kWideSmemBytes),
                           "attention_cuda shared memory"))
        return;
    dev.check(cuda_kernels::launch_kernel(stream.programmatic(), kernel, grid, dim3(32 * n_warps), smem_bytes,
                                          static_cast<cudaStream_t>(stream.handle()), q, kv, idx, c, out),
              "attention_cuda launch");
}

void kv_write_cuda(cuda::Stream& stream, const float* k, int64_t k_stride, const float* v, int64_t v_stride,
                   const int32_t* slots, int64_t n_tokens, int k_width, int v_width, void* k_cache,
                   int64_t k_row_stride, void* v_cache, int64_t v_row_stride) {
    cuda::Device& dev = stream.device();
    if (dev.is_failed()) return;
    if (n_tokens < 0 || k_width < 0 || v_width < 0) {
        dev.fail(error(StatusCode::invalid_argument, "kv_write_cuda: negative size"));
        return;
    }
    const int64_t n = n_tokens * (k_width + v_width);
    if (n == 0 || !dev.make_current()) return;
    constexpr int kThreads = 256;
    dev.check(cuda_kernels::launch_kernel(stream.programmatic(), kv_write_kernel,
                                          dim3((unsigned)((n + kThreads - 1) / kThreads)), dim3(kThreads), 0,
                                          static_cast<cudaStream_t>(stream.handle()), k, k_stride, v, v_stride, slots,
                                          n_tokens, k_width, v_width, static_cast<__half*>(k_cache), k_row_stride,
                                          static_cast<__half*>(v_cache), v_row_stride),
              "kv_write_cuda launch");
}

}  // namespace hearth::backend
