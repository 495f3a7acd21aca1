// CUDA paged attention (contract and numerics: attention.h).
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
// head rows per kv head, mostly from L2. Decode of long contexts has only n_head_kv blocks per
// token (no split over the sequence yet: flash-decoding is the next step for long contexts).
#include "backend/cuda/attention.h"

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <climits>
#include <cmath>
#include <cstddef>

namespace hearth::backend {
namespace {

constexpr int kChunk = 32;        // positions per shared-memory chunk (one per lane)
constexpr int kMaxWarps = 8;      // query heads per block
constexpr int kMaxHeadDim = 256;  // V pairs per lane: kMaxHeadDim / 64
constexpr int kVecLoads = 8;      // 16-byte K/V loads in flight per thread

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

__global__ void __launch_bounds__(32 * kMaxWarps) attention_kernel(const float* __restrict__ q, PagedKvCuda kv,
                                                                     AttnIndexCuda idx, AttnConsts c,
                                                                     float* __restrict__ out) {
    extern __shared__ uint32_t smem[];
    const int t = blockIdx.x;
    const int kvh = blockIdx.y / c.n_splits, split = blockIdx.y % c.n_splits;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, n_warps = blockDim.x / 32;
    const int hi = split * n_warps + warp;  // index within the group
    const bool valid = hi < c.group;
    const int head = kvh * c.group + (valid ? hi : 0);

    int* s_slot = reinterpret_cast<int*>(smem);                      // [kChunk]
    float* s_q = reinterpret_cast<float*>(smem + kChunk);            // [n_warps][hdk]
    uint32_t* s_k = smem + kChunk + n_warps * c.hdk;                 // [kChunk][kw] half2
    uint32_t* s_v = s_k + kChunk * c.kw;                             // [kChunk][hdv / 2] half2
    const int hk2 = c.hdk / 2, hv2 = c.hdv / 2;

    const int32_t pos = idx.positions[t], end = idx.kv_end[t];
    const int32_t lo = c.sliding_window > 0 ? max(0, pos - c.sliding_window + 1) : 0;
    const int32_t* table = idx.block_tables + (int64_t)idx.seq_ids[t] * idx.table_stride;
    const float* qh = q + ((int64_t)t * c.n_head + head) * c.hdk;
    for (int i = lane; i < c.hdk; i += 32) s_q[warp * c.hdk + i] = qh[i];
    const float2* q2 = reinterpret_cast<const float2*>(s_q + warp * c.hdk);
    const uint32_t* kwords = static_cast<const uint32_t*>(kv.k);
    const uint32_t* vwords = static_cast<const uint32_t*>(kv.v);
    const int64_t k_head_word = (int64_t)kvh * c.hdk / 2, v_head_word = (int64_t)kvh * c.hdv / 2;

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
    float acc[kMaxHeadDim / 64][2] = {};
    for (int32_t c0 = start; c0 < stop; c0 += kChunk) {
        __syncthreads();  // the previous chunk is consumed
        if (threadIdx.x < kChunk) {
            const int32_t j = c0 + threadIdx.x;
            s_slot[threadIdx.x] = j < stop ? table[j / kv.block_size] * kv.block_size + j % kv.block_size : -1;
        }
        __syncthreads();
        if (c.vec16) {
            // 16-byte loads, K and V of up to kVecLoads rows-pieces per thread issued together (the
            // scalar loop below waits for one load per iteration: ~30 DRAM latencies per chunk).
            const int hk8 = c.hdk / 8, hv8 = c.hdv / 8, n_k = kChunk * hk8, n_all = n_k + kChunk * hv8;
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
                    if (e < n_k) d = s_k + (e / hk8) * c.kw + 4 * (e % hk8);
                    else if (e < n_all) d = s_v + ((e - n_k) / hv8) * hv2 + 4 * ((e - n_k) % hv8);
                    if (d) d[0] = r[u].x, d[1] = r[u].y, d[2] = r[u].z, d[3] = r[u].w;
                }
            }
        } else {
        for (int e = threadIdx.x; e < kChunk * hk2; e += blockDim.x) {
            const int jj = e / hk2, w = e % hk2;
            const int slot = s_slot[jj];
            s_k[jj * c.kw + w] = slot >= 0 ? kwords[(int64_t)slot * kv.k_row_stride / 2 + k_head_word + w] : 0u;
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
            const uint32_t* kr = s_k + lane * c.kw;
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
        for (int r = 0; r < kMaxHeadDim / 64; ++r) acc[r][0] *= corr, acc[r][1] *= corr;
        const int n_pos = min(kChunk, stop - c0);
        for (int jj = 0; jj < n_pos; ++jj) {
            const float pj = __shfl_sync(0xffffffffu, p, jj);
            const uint32_t* vr = s_v + jj * hv2;
#pragma unroll
            for (int r = 0; r < kMaxHeadDim / 64; ++r) {
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
        float* mine = c.partial + (((int64_t)t * c.n_head + head) * n_parts + part) * (c.hdv + 2);
        if (valid) {
            if (lane == 0) mine[0] = m, mine[1] = l;
#pragma unroll
            for (int r = 0; r < kMaxHeadDim / 64; ++r) {
                const int w = lane + 32 * r;
                if (w < hv2) mine[2 + 2 * w] = acc[r][0], mine[3 + 2 * w] = acc[r][1];
            }
        }
        __threadfence();
        __syncthreads();
        __shared__ int s_last;
        if (threadIdx.x == 0) {
            int* counter = c.counters + (int64_t)t * gridDim.y + blockIdx.y;
            s_last = atomicAdd(counter, 1) == n_parts - 1;
            if (s_last) *counter = 0;  // every part has counted: ready for the next call
        }
        __syncthreads();
        if (!s_last || !valid) return;
        __threadfence();
        const float* all = c.partial + ((int64_t)t * c.n_head + head) * n_parts * (c.hdv + 2);
        // Parts past the last position are empty: merge only the first ones.
        const int32_t len = max(0, end - lo);
        const int32_t span = ((len + n_parts - 1) / n_parts + kChunk - 1) / kChunk * kChunk;
        const int n_used = span > 0 ? min(n_parts, (len + span - 1) / span) : 0;
        float m_all = -INFINITY;
        for (int z = 0; z < n_used; ++z) m_all = fmaxf(m_all, __ldcg(all + z * (c.hdv + 2)));
        l = 0.0f;
#pragma unroll
        for (int r = 0; r < kMaxHeadDim / 64; ++r) acc[r][0] = acc[r][1] = 0.0f;
        for (int z = 0; z < n_used; ++z) {
            const float* pz = all + z * (c.hdv + 2);
            const float mz = __ldcg(pz);
            const float wz = mz == -INFINITY ? 0.0f : expf(mz - m_all);  // empty parts weigh nothing
            l += __ldcg(pz + 1) * wz;
#pragma unroll
            for (int r = 0; r < kMaxHeadDim / 64; ++r) {
                const int w = lane + 32 * r;
                if (w < hv2) {
                    acc[r][0] = fmaf(wz, __ldcg(pz + 2 + 2 * w), acc[r][0]);
                    acc[r][1] = fmaf(wz, __ldcg(pz + 3 + 2 * w), acc[r][1]);
                }
            }
        }
        m = m_all;
    }
    if (!valid) return;
    if (c.sinks) {
        const float sink = c.sinks[head];
        const float m_f = fmaxf(m, sink);
        const float corr = expf(m - m_f);
        l = l * corr + expf(sink - m_f);
#pragma unroll
        for (int r = 0; r < kMaxHeadDim / 64; ++r) acc[r][0] *= corr, acc[r][1] *= corr;
    }
    const float inv = l > 0.0f ? 1.0f / l : 0.0f;
    float2* o2 = reinterpret_cast<float2*>(out + ((int64_t)t * c.n_head + head) * c.hdv);
#pragma unroll
    for (int r = 0; r < kMaxHeadDim / 64; ++r) {
        const int w = lane + 32 * r;
        if (w < hv2) o2[w] = make_float2(acc[r][0] * inv, acc[r][1] * inv);
    }
}

__global__ void kv_write_kernel(const float* __restrict__ k, int64_t k_stride, const float* __restrict__ v,
                                int64_t v_stride, const int32_t* __restrict__ slots, int64_t n_tokens, int k_width,
                                int v_width, __half* __restrict__ k_cache, int64_t k_row_stride,
                                __half* __restrict__ v_cache, int64_t v_row_stride) {
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

size_t attention_split_bytes(int64_t n_tokens, const AttentionParams& p, int n_splits) {
    if (p.n_head <= 0 || p.n_head_kv <= 0 || p.n_head % p.n_head_kv != 0 || n_splits < 1) return 0;
    return attention_partial_bytes(n_tokens, p, n_splits) +
           (size_t)n_tokens * p.n_head_kv * attention_group_splits(p) * sizeof(int);
}

void attention_cuda(cuda::Stream& stream, const float* q, const PagedKvCuda& kv, const AttnIndexCuda& idx,
                    int64_t n_tokens, const AttentionParams& p, float* out, const AttnSplitCuda& split) {
    cuda::Device& dev = stream.device();
    if (dev.is_failed()) return;
    const bool args_ok = p.n_head > 0 && p.n_head_kv > 0 && p.n_head % p.n_head_kv == 0 && p.head_dim_k > 0 &&
                         p.head_dim_v > 0 && p.head_dim_k % 2 == 0 && p.head_dim_v % 2 == 0 &&
                         p.head_dim_k <= kMaxHeadDim && p.head_dim_v <= kMaxHeadDim && kv.block_size > 0 &&
                         kv.k_row_stride % 2 == 0 && kv.v_row_stride % 2 == 0 && n_tokens >= 0 &&
                         n_tokens <= INT_MAX && split.n_splits >= 1 && split.n_splits <= kAttnMaxSplits &&
                         reinterpret_cast<uintptr_t>(split.workspace) % 16 == 0;
    if (!args_ok) {
        dev.fail(error(StatusCode::invalid_argument,
                       strformat("attention_cuda: n_head %d, n_head_kv %d, head dims %d/%d (even, <= %d), block size "
                                 "%d, row strides %lld/%lld (even)",
                                 p.n_head, p.n_head_kv, p.head_dim_k, p.head_dim_v, kMaxHeadDim, kv.block_size,
                                 (long long)kv.k_row_stride, (long long)kv.v_row_stride)));
        return;
    }
    if (n_tokens == 0 || !dev.make_current()) return;
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
    const size_t smem_bytes = sizeof(uint32_t) * (kChunk + (size_t)n_warps * c.hdk + (size_t)kChunk * c.kw +
                                                  (size_t)kChunk * (c.hdv / 2));
    const dim3 grid((unsigned)n_tokens, (unsigned)(p.n_head_kv * c.n_splits), (unsigned)n_parts);
    attention_kernel<<<grid, 32 * n_warps, smem_bytes, static_cast<cudaStream_t>(stream.handle())>>>(q, kv, idx, c,
                                                                                                   out);
    dev.check(cudaGetLastError(), "attention_cuda launch");
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
    kv_write_kernel<<<(unsigned)((n + kThreads - 1) / kThreads), kThreads, 0,
                      static_cast<cudaStream_t>(stream.handle())>>>(
        k, k_stride, v, v_stride, slots, n_tokens, k_width, v_width, static_cast<__half*>(k_cache), k_row_stride,
        static_cast<__half*>(v_cache), v_row_stride);
    dev.check(cudaGetLastError(), "kv_write_cuda launch");
}

}  // namespace hearth::backend
