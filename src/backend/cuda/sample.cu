// Top-k candidates of logits rows (contract: sample.h). The launches are plain, not programmatic
// dependents (launch.cuh), even on a stream that asks for those, so the selection starts only
// once everything before it on the stream has completed. Why: in one H100 run with programmatic
// launches, the Engine's tokens from on-device candidates fell one step behind its full-row
// tokens in CUDA graph replays of the decode step, as if the selection had read the previous
// step's logits (tests/runtime/engine_gpu_test.cpp, TopKSamplingGivesTheSameTokensAsFullRows;
// the selection itself matched the host's exactly). The cause is not pinned down; a plain launch
// leaves no ordering to question, for a launch gap of microseconds in a step of milliseconds.
// The kernels still call pdl_wait (a no-op without the attribute).
#include "backend/cuda/sample.h"

#include <cuda_runtime.h>

#include <climits>

#include "backend/cuda/launch.cuh"
#include "backend/cuda/op_check.h"

namespace hearth::backend {
namespace {

using cuda_kernels::begin_op;
using cuda_kernels::pdl_launch_dependents;
using cuda_kernels::pdl_wait;

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kLogitsPerThread = 32;  // the first launch: 8192 logits per block
constexpr int kPairsPerThread = 8;    // the later ones: 2048 (key, id) candidates per block
constexpr int kCandCap = 2048;        // the fast path's shortlist (shared memory)
constexpr uint32_t kPadKey = 0;       // below every real key (-inf's is 0x007fffff)
constexpr int32_t kPadId = INT_MAX;

static_assert(kTopKMax <= kThreads, "the final sort gives each candidate a thread");

int64_t chunk_of(bool from_logits) { return (int64_t)kThreads * (from_logits ? kLogitsPerThread : kPairsPerThread); }

// A key whose unsigned order is the logit order: NaN as -inf (the sampler's rule), -0 as +0
// (they compare equal, so the tie goes to the lower id as on the host).
__device__ __forceinline__ uint32_t order_key(float x) {
    if (x != x) x = -INFINITY;
    if (x == 0.0f) x = 0.0f;
    const uint32_t b = __float_as_uint(x);
    return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

// Block-wide reductions. buf: [2][kWarps] shared; parity alternates the halves, so one barrier
// per call is enough (a thread can only rewrite a half after every thread passed the barrier of
// the call in between, i.e. finished reading it). Every thread of the block must call them.
struct BlockReduce {
    int* buf;
    int parity = 0;

    __device__ __forceinline__ int sum(int v) {
        for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
        int* b = next();
        if ((threadIdx.x & 31) == 0) b[threadIdx.x >> 5] = v;
        __syncthreads();
        int s = 0;
#pragma unroll
        for (int w = 0; w < kWarps; ++w) s += b[w];
        return s;
    }
    // The sum of v over the threads before this one; *total gets the sum over all.
    __device__ __forceinline__ int exclusive_scan(int v, int* total) {
        const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
        int incl = v;
        for (int o = 1; o < 32; o <<= 1) {
            const int u = __shfl_up_sync(0xffffffffu, incl, o);
            if (lane >= o) incl += u;
        }
        int* b = next();
        if (lane == 31) b[warp] = incl;
        __syncthreads();
        int before = 0, all = 0;
#pragma unroll
        for (int w = 0; w < kWarps; ++w) before += w < warp ? b[w] : 0, all += b[w];
        *total = all;
        return before + incl - v;
    }
    __device__ __forceinline__ int* next() {
        int* b = buf + parity * kWarps;
        parity ^= 1;
        return b;
    }
};

// The k-th largest of the keys the block holds (N per thread), 1 <= k <= their count: the
// largest t with at least k keys >= t, decided bit by bit.
template <int N>
__device__ uint32_t kth_largest(const uint32_t (&key)[N], int k, BlockReduce& red) {
    uint32_t t = 0;
    for (int bit = 31; bit >= 0; --bit) {
        const uint32_t cand = t | (1u << bit);
        int c = 0;
#pragma unroll
        for (int j = 0; j < N; ++j) c += key[j] >= cand;
        if (red.sum(c) >= k) t = cand;
    }
    return t;
}

// Selects the k best of the candidates the block holds (N per thread, candidate j's id:
// id_of(j); pads: kPadKey), k <= the real ones, and hands each to emit(slot, key, id) with slots
// 0..k-1 in no particular order: every key above the k-th largest t, and of those equal to t
// the lowest ids.
template <int N, class IdOf, class Emit>
__device__ void select_best(const uint32_t (&key)[N], IdOf id_of, int k, int id_bits, BlockReduce& red, Emit emit) {
    const uint32_t t = kth_largest(key, k, red);
    int n_gt = 0, n_eq = 0;
#pragma unroll
    for (int j = 0; j < N; ++j) n_gt += key[j] > t, n_eq += key[j] == t;
    const int packed = red.sum(n_gt | (n_eq << 16));  // both < 2^15
    const int need = k - (packed & 0xffff), eq_total = packed >> 16;
    // More keys equal t than places left: the need-th smallest id v among them, bit by bit
    // (the largest v with fewer than `need` of their ids below it); then ids <= v.
    int32_t v = INT_MAX;
    if (eq_total > need) {
        v = 0;
        for (int bit = id_bits - 1; bit >= 0; --bit) {
            const int32_t cand = v | (1 << bit);
            int c = 0;
#pragma unroll
            for (int j = 0; j < N; ++j) c += key[j] == t && id_of(j) < cand;
            if (red.sum(c) < need) v = cand;
        }
    }
    int n_take = 0;
#pragma unroll
    for (int j = 0; j < N; ++j) n_take += key[j] > t || (key[j] == t && id_of(j) <= v);
    int total = 0;
    int slot = red.exclusive_scan(n_take, &total);
#pragma unroll
    for (int j = 0; j < N; ++j)
        if (key[j] > t || (key[j] == t && id_of(j) <= v)) emit(slot++, key[j], id_of(j));
}

// Better: the higher key, ties the lower id (pads: key 0, id INT_MAX, last).
__device__ __forceinline__ bool is_better(uint32_t ka, int32_t ia, uint32_t kb, int32_t ib) {
    return ka > kb || (ka == kb && ia < ib);
}

__device__ __forceinline__ int warp_sum(int v) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    return __reduce_add_sync(0xffffffffu, v);
#else
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
#endif
}

// One warp's k-th largest of keys[0, m) (shared memory), 1 <= k <= m: as kth_largest, with
// warp reductions instead of block barriers (a search over a few hundred keys is bound by the
// latency of its 32 reductions).
__device__ uint32_t warp_kth_largest(const uint32_t* keys, int m, int k) {
    uint32_t t = 0;
    for (int bit = 31; bit >= 0; --bit) {
        const uint32_t cand = t | (1u << bit);
        int c = 0;
        for (int i = (int)(threadIdx.x & 31); i < m; i += 32) c += keys[i] >= cand;
        if (warp_sum(c) >= k) t = cand;
    }
    return t;
}

// One warp's select_best over the shortlist keys/ids [0, m) in shared memory.
template <class Emit>
__device__ void warp_select_best(const uint32_t* keys, const int32_t* ids, int m, int k, int id_bits, Emit emit) {
    const int lane = (int)(threadIdx.x & 31);
    const uint32_t t = warp_kth_largest(keys, m, k);
    int n_gt = 0, n_eq = 0;
    for (int i = lane; i < m; i += 32) n_gt += keys[i] > t, n_eq += keys[i] == t;
    const int need = k - warp_sum(n_gt), eq_total = warp_sum(n_eq);
    int32_t v = INT_MAX;  // as in select_best
    if (eq_total > need) {
        v = 0;
        for (int bit = id_bits - 1; bit >= 0; --bit) {
            const int32_t cand = v | (1 << bit);
            int c = 0;
            for (int i = lane; i < m; i += 32) c += keys[i] == t && ids[i] < cand;
            if (warp_sum(c) < need) v = cand;
        }
    }
    int base = 0;
    for (int i0 = 0; i0 < m; i0 += 32) {
        const int i = i0 + lane;
        const bool take = i < m && (keys[i] > t || (keys[i] == t && ids[i] <= v));
        const unsigned taken = __ballot_sync(0xffffffffu, take);
        if (take) emit(base + __popc(taken & ((1u << lane) - 1)), keys[i], ids[i]);
        base += __popc(taken);
    }
}

// Block (chunk c, row r) selects the k best of its chunk of a row's in_len candidates: the
// logits themselves (kFromLogits: candidate p is token p) or (key, id) pairs written by the
// previous launch. Thread i holds candidates i, i + kThreads, ... (coalesced loads). The fast
// path: the k-th largest of the threads' own maxima bounds the answer from below (at least k
// candidates reach it), so only the few candidates at or above it (a shortlist in shared
// memory) are searched, by one warp; when more than kCandCap reach it (many equal logits), the
// whole block searches all of them. n_chunks > 1: writes k pairs per chunk (pads after the
// real ones); n_chunks == 1 (the last launch): sorts them and writes the ids and their logits.
template <bool kFromLogits, int kPer>
__global__ void __launch_bounds__(kThreads) topk_kernel(const float* __restrict__ logits, int64_t n_cols,
                                                        const uint2* __restrict__ in, int64_t in_len, int k,
                                                        int id_bits, uint2* __restrict__ out_pairs,
                                                        int32_t* __restrict__ ids, float* __restrict__ vals) {
    pdl_launch_dependents();
    pdl_wait();
    __shared__ int red_buf[2 * kWarps];
    __shared__ uint32_t thread_max[kThreads];
    __shared__ int thread_valid[kThreads];
    __shared__ uint32_t cand_key[kCandCap];
    __shared__ int32_t cand_id[kCandCap];
    __shared__ uint32_t sort_key[kTopKMax];
    __shared__ int32_t sort_id[kTopKMax];
    __shared__ int shared_k;            // k_eff: min(k, real candidates of the chunk)
    __shared__ uint32_t shared_floor;   // the shortlist's lower bound
    BlockReduce red{red_buf};
    const int64_t row = blockIdx.y, chunk = blockIdx.x, n_chunks = gridDim.x;
    const int64_t first = chunk * kThreads * kPer + threadIdx.x;  // this thread's first position
    const bool warp0 = threadIdx.x < 32;

    // The ids of the logits are their positions: only the pairs keep them in registers.
    uint32_t key[kPer];
    int32_t id[kFromLogits ? 1 : kPer] = {};
    auto id_of = [&](int j) -> int32_t {
        if constexpr (kFromLogits) return (int32_t)(first + (int64_t)j * kThreads);
        else return id[j];
    };
    uint32_t own_max = kPadKey;
    int n_valid = 0;
#pragma unroll
    for (int j = 0; j < kPer; ++j) {
        const int64_t p = first + (int64_t)j * kThreads;
        key[j] = kPadKey;
        if constexpr (kFromLogits) {
            if (p < in_len) key[j] = order_key(logits[row * n_cols + p]);
        } else {
            id[j] = kPadId;
            if (p < in_len) {
                const uint2 e = in[row * in_len + p];
                key[j] = e.x, id[j] = (int32_t)e.y;
            }
        }
        n_valid += key[j] != kPadKey;
        own_max = max(own_max, key[j]);
    }
    thread_max[threadIdx.x] = own_max, thread_valid[threadIdx.x] = n_valid;
    const bool last = n_chunks == 1;
    if (last)
        for (int i = threadIdx.x; i < kTopKMax; i += kThreads) sort_key[i] = kPadKey, sort_id[i] = kPadId;
    __syncthreads();
    if (warp0) {
        int c = 0;
        for (int i = (int)threadIdx.x; i < kThreads; i += 32) c += thread_valid[i];
        const int k_eff = min(k, warp_sum(c));
        // At least k_eff threads hold a key >= the k_eff-th largest of their maxima (or, with
        // fewer threads holding any, every real key is >= 1).
        const uint32_t bound = k_eff > 0 ? warp_kth_largest(thread_max, kThreads, k_eff) : 0;
        if (threadIdx.x == 0) shared_k = k_eff, shared_floor = max(1u, bound);
    }
    __syncthreads();
    const int k_eff = shared_k;
    const uint32_t floor_key = shared_floor;

    auto emit = [&](int slot, uint32_t kk, int32_t ii) {
        if (last) sort_key[slot] = kk, sort_id[slot] = ii;
        else out_pairs[(row * n_chunks + chunk) * k + slot] = make_uint2(kk, (uint32_t)ii);
    };
    if (k_eff > 0) {
        int n_short = 0;
#pragma unroll
        for (int j = 0; j < kPer; ++j) n_short += key[j] >= floor_key;
        int total = 0;
        int at = red.exclusive_scan(n_short, &total);
        if (total <= kCandCap) {
#pragma unroll
            for (int j = 0; j < kPer; ++j)
                if (key[j] >= floor_key) cand_key[at] = key[j], cand_id[at] = id_of(j), ++at;
            __syncthreads();
            if (warp0) warp_select_best(cand_key, cand_id, total, k_eff, id_bits, emit);
        } else {
            select_best(key, id_of, k_eff, id_bits, red, emit);
        }
    }
    if (!last) {
        for (int i = k_eff + (int)threadIdx.x; i < k; i += kThreads)
            out_pairs[(row * n_chunks + chunk) * k + i] = make_uint2(kPadKey, (uint32_t)kPadId);
        return;
    }
    // Bitonic sort of the kTopKMax slots, best first.
    for (int size = 2; size <= kTopKMax; size <<= 1) {
        for (int stride = size / 2; stride > 0; stride >>= 1) {
            __syncthreads();
            const int i = threadIdx.x, p = i ^ stride;
            if (i < kTopKMax && p > i) {
                const bool best_first = (i & size) == 0;
                const bool swap = is_better(sort_key[p], sort_id[p], sort_key[i], sort_id[i]) == best_first;
                if (swap) {
                    const uint32_t tk = sort_key[i];
                    const int32_t ti = sort_id[i];
                    sort_key[i] = sort_key[p], sort_id[i] = sort_id[p];
                    sort_key[p] = tk, sort_id[p] = ti;
                }
            }
        }
    }
    __syncthreads();
    if ((int)threadIdx.x < k) {
        const int32_t tok = sort_id[threadIdx.x];
        const float x = logits[row * n_cols + tok];
        ids[row * k + threadIdx.x] = tok;
        vals[row * k + threadIdx.x] = x != x ? -INFINITY : x;
    }
}

int64_t chunks_of(int64_t len, bool from_logits) { return (len + chunk_of(from_logits) - 1) / chunk_of(from_logits); }

}  // namespace

size_t topk_rows_workspace_bytes(int64_t n_rows, int64_t n_cols, int k) {
    const int64_t c0 = chunks_of(n_cols, true);
    if (c0 <= 1 || n_rows <= 0 || k <= 0) return 0;
    // Two ping-pong pair buffers; the first launch's output is the largest.
    const size_t half = ((size_t)n_rows * c0 * k * sizeof(uint2) + 255) & ~(size_t)255;
    return 2 * half;
}

void topk_rows_cuda(cuda::Stream& stream, const float* logits, int64_t n_rows, int64_t n_cols, int k, int32_t* ids,
                    float* vals, void* workspace) {
    int64_t chunks = chunks_of(n_cols, true);
    const bool args_ok = n_rows >= 0 && n_rows <= 65535 && k >= 1 && k <= kTopKMax && n_cols >= k &&
                         n_cols < INT_MAX && (n_rows == 0 || (logits && ids && vals && (chunks <= 1 || workspace)));
    if (!begin_op(stream, args_ok, "topk_rows_cuda", n_rows)) return;
    cudaStream_t s = static_cast<cudaStream_t>(stream.handle());
    int id_bits = 1;  // enough bits for every id of the row
    while (id_bits < 31 && (int64_t{1} << id_bits) < n_cols) ++id_bits;
    const size_t half = topk_rows_workspace_bytes(n_rows, n_cols, k) / 2;
    uint2* buf[2] = {static_cast<uint2*>(workspace),
                     chunks > 1 ? reinterpret_cast<uint2*>(static_cast<std::byte*>(workspace) + half) : nullptr};
    bool ok = stream.device().check(
        cuda_kernels::launch_kernel(/*pdl=*/false, topk_kernel<true, kLogitsPerThread>,
                                    dim3((unsigned)chunks, (unsigned)n_rows), dim3(kThreads), 0, s, logits, n_cols,
                                    nullptr, n_cols, k, id_bits, chunks > 1 ? buf[0] : nullptr, ids, vals),
        "topk_rows_cuda launch");
    for (int b = 0; ok && chunks > 1; b ^= 1) {
        const int64_t len = chunks * k;  // candidates per row in buf[b]
        chunks = chunks_of(len, false);
        ok = stream.device().check(
            cuda_kernels::launch_kernel(/*pdl=*/false, topk_kernel<false, kPairsPerThread>,
                                        dim3((unsigned)chunks, (unsigned)n_rows), dim3(kThreads), 0, s, logits,
                                        n_cols, (const uint2*)buf[b], len, k, id_bits,
                                        chunks > 1 ? buf[b ^ 1] : nullptr, ids, vals),
            "topk_rows_cuda launch");
    }
}

}  // namespace hearth::backend
