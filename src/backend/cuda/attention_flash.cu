// CUDA flash attention for prefill calls (attention_cuda_uses_flash; contract and numerics:
// attention.h), split from attention.cu, which dispatches to it.
#include "backend/cuda/attention_flash.cuh"

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cstddef>
#include <cstdlib>
#include <cstring>

#include "backend/cuda/launch.cuh"
#include "backend/cuda/mma.cuh"

namespace hearth::backend {
namespace {

using cuda_kernels::pdl_launch_dependents;
using cuda_kernels::pdl_wait;

// ---- Flash attention (prefill): tensor cores over tiles of queries and positions ----
//
// One block of kFaWarps warps per (tile of kFaRows query rows, kv head[, chunk of its query
// heads]). A tile's rows are `tt` consecutive tokens x `hg` query heads of the kv head (row r:
// token r / hg, head r % hg of the chunk; GQA rows share every K/V tile). The block walks the
// visible positions in tiles of kFaChunk: their K and V head rows (f16) are copied into shared
// memory with cp.async, double-buffered (the next tile's copy overlaps this one's math); S = Q K^T
// and O += P V are mma.sync m16n8k16 with f32 accumulation, the softmax is online per row in the
// registers of the C fragments (the four lanes of a quad hold one row). The tokens of a tile may
// belong to several sequences: each run of consecutive tokens of one sequence is walked over its
// own range of positions through its block table, and the rows of other runs see those
// positions masked.
// Position tiles start at multiples of kFaChunk, whatever the tile's tokens, so a row's
// arithmetic (the order of its chunks and of the terms within them) is the same whichever tokens
// share its tile: a chunk with none of a row's positions leaves that row's state bitwise unchanged
// (its scale factor is exp2(0) = 1 and its probabilities 0), and so does a masked position.
constexpr int kFaWarps = 4;
constexpr int kFaThreads = 32 * kFaWarps;
constexpr float kLog2e = 1.4426950408889634f;  // scores and maxima are in log2 units

struct FlashConsts {
    int n_tokens, n_head, group;
    int hg, tt, n_hchunks;  // query heads per tile (hg <= the kernel's rows), tokens per tile, head chunks per kv head
    int sliding_window;
    float scale, softcap;
    const float* sinks;
};

// The tile's token threadIdx.x (< the tile's rows; token t0 + threadIdx.x of the call): its
// sequence (-1: none) and visible positions [lo, end), as attention_kernel, into shared memory.
__device__ __forceinline__ void load_flash_token(int t0, const FlashConsts& c, const AttnIndexCuda& idx, int* s_seq,
                                                 int* s_lo, int* s_end) {
    const int t = t0 + threadIdx.x;
    int seq = -1, lo = 0, end = 0;
    if ((int)threadIdx.x < c.tt && t < c.n_tokens) {
        const int32_t pos = idx.positions[t];
        end = idx.kv_end[t];
        const int32_t window_lo = c.sliding_window > 0 ? max(0, pos - c.sliding_window + 1) : 0;
        lo = idx.kv_begin != nullptr ? max(window_lo, idx.kv_begin[t]) : window_lo;
        seq = idx.seq_ids[t];
    }
    s_seq[threadIdx.x] = seq, s_lo[threadIdx.x] = lo, s_end[threadIdx.x] = end;
}

// One position of a K/V tile into shared memory (kd, vd: its K and V rows there): position j of
// the run's sequence (block table `table`), kv head kvh, this thread's pieces cp_part,
// cp_part + kCpThreads, ... of the D / 8 16-byte pieces of each row; zeros when j is outside
// [lo, end). Commits the copies as one cp.async group.
template <int D, int kChunk, int kCpThreads>
__device__ __forceinline__ void load_kv_tile(const PagedKvCuda& kv, const int32_t* table, int kvh, int lo, int end, int j,
                                             int cp_part, __half* kd, __half* vd) {
    using cuda_mma::cp_async16;
    const bool vis = j >= lo && j < end;
    const int64_t slot = vis ? (int64_t)table[j / kv.block_size] * kv.block_size + j % kv.block_size : 0;
    const uint32_t* krow = static_cast<const uint32_t*>(kv.k) + slot * kv.k_row_stride / 2 + (int64_t)kvh * D / 2;
    const uint32_t* vrow = static_cast<const uint32_t*>(kv.v) + slot * kv.v_row_stride / 2 + (int64_t)kvh * D / 2;
#pragma unroll
    for (int u = cp_part; u < D / 8; u += kCpThreads) {
        cp_async16(kd + 8 * u, krow + 4 * u, vis ? 16 : 0);
        cp_async16(vd + 8 * u, vrow + 4 * u, vis ? 16 : 0);
    }
    cuda_mma::cp_async_commit();
}

// The tile's query rows (kRows: tokens x the heads h0.. of kv head kvh, row r = token r / hg, head
// h0 + r % hg) times `scale`, as f16 into s_q (rows of D + 8 halves); zeros for rows past the
// tokens or the group. Every thread of the block (kFaThreads) takes part.
template <int D, int kRows>
__device__ __forceinline__ void stage_flash_q(const float* __restrict__ q, const FlashConsts& c, int t0, int kvh, int h0,
                                              float scale, __half* s_q) {
    for (int e = threadIdx.x; e < kRows * D / 2; e += kFaThreads) {
        const int r = e / (D / 2), w = e % (D / 2);
        const int tk = r / c.hg, hi = h0 + r % c.hg;
        float2 v = make_float2(0.0f, 0.0f);
        if (tk < c.tt && t0 + tk < c.n_tokens && hi < c.group)
            v = reinterpret_cast<const float2*>(q + ((int64_t)(t0 + tk) * c.n_head + kvh * c.group + hi) * D)[w];
        reinterpret_cast<uint32_t*>(s_q + r * (D + 8))[w] = cuda_mma::pack_half2(v.x * scale, v.y * scale);
    }
}

// The end of one of this lane's rows (tile row r, token tk of the tile; i: the row's half of the
// m16n8 fragments in o): the quad's partial sums of l, the sink (in log2 units, as m), and the
// normalized row written to out. Nothing for a row past the tokens or the group (ok false).
template <int D>
__device__ __forceinline__ void store_flash_row(const float (&o)[D / 8][4], int i, float l, float m, bool ok, int r,
                                                int tk, int t0, int kvh, int h0, const FlashConsts& c,
                                                float* __restrict__ out) {
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    if (!ok || t0 + tk >= c.n_tokens) return;
    const int head = kvh * c.group + h0 + r % c.hg;
    float scale = 1.0f;
    if (c.sinks) {
        const float sink = c.sinks[head] * kLog2e;
        const float m_f = fmaxf(m, sink);
        scale = exp2f(m - m_f);  // 0 when nothing was visible
        l = l * scale + exp2f(sink - m_f);
    }
    const float inv = l > 0.0f ? scale / l : 0.0f;
    float2* o2 = reinterpret_cast<float2*>(out + ((int64_t)(t0 + tk) * c.n_head + head) * D);
    const int lane = threadIdx.x % 32;
#pragma unroll
    for (int nd = 0; nd < D / 8; ++nd) o2[nd * 4 + (lane & 3)] = make_float2(o[nd][2 * i] * inv, o[nd][2 * i + 1] * inv);
}

// The runs of a flash tile's tt tokens: consecutive tokens of sequence seq, [ta, tb), with the
// positions [lo, end) some of them see and [full_lo, full_end) all of them see. Runs of no
// sequence are skipped, and so are runs with no visible position (every window empty): no K/V
// tile at all, not even a partial one (its buffers would hold stale values, and 0 x NaN is NaN).
// whole_tile: the run holds every token of the tile, so the rows of other tokens (none) need no
// mask, and those past the tokens or the group have zero queries and are never written.
struct FlashRun {
    int seq = -1, ta = 0, tb = 0, lo = 0, end = 0, full_lo = 0, full_end = 0;
    bool whole_tile = false;
};
// The first run at or after token `from` into r; false when none is left.
__device__ __forceinline__ bool next_flash_run(int from, int tt, const int* s_seq, const int* s_lo, const int* s_end,
                                               FlashRun& r) {
    for (int ta = from; ta < tt;) {
        const int seq = s_seq[ta];
        int tb = ta + 1;
        while (tb < tt && s_seq[tb] == seq) ++tb;
        if (seq >= 0) {
            int lo = INT_MAX, end = 0, full_lo = 0, full_end = INT_MAX;
            for (int t = ta; t < tb; ++t) {
                lo = min(lo, s_lo[t]), end = max(end, s_end[t]);
                full_lo = max(full_lo, s_lo[t]), full_end = min(full_end, s_end[t]);
            }
            if (end > lo) {
                bool whole = ta == 0;
                for (int t = tb; t < tt; ++t) whole = whole && s_seq[t] < 0;
                r.seq = seq, r.ta = ta, r.tb = tb, r.lo = lo, r.end = end, r.full_lo = full_lo, r.full_end = full_end;
                r.whole_tile = whole;
                return true;
            }
        }
        ta = tb;
    }
    return false;
}

// ---- The flash kernel ----
//
// 128-row tiles (`tt` tokens x `hg` heads, 32 tokens for Llama's GQA groups of 4): each warp owns
// 32 rows as two m-tiles of 16, so every K or V fragment it reads from shared memory (ldmatrix)
// feeds two mma: shared-memory reads per mma are what bound a 16-row warp. Q, scaled and rounded
// to f16, stays in shared memory and is re-read per K tile, leaving the registers to the two O
// accumulators (128 per thread; 243 registers in all at D = 128, 2 blocks per SM). K/V tiles of
// 32 positions are double-buffered with one barrier per tile (tile i + 1 is copied from just
// after the barrier that ends every warp's use of tile i - 1, its buffer, while tile i is
// computed). log2(e) is folded into the query's scale, and 2^x is one MUFU op (exp2_ftz). The
// mask is applied only on tiles that some row does not wholly see, and O is rescaled only when
// some row of the warp has a new maximum (a factor of exactly 1 otherwise): both skips change no
// bit, so a row's result does not depend on the other rows of its tile.
//
// Measured on the H100 (2026-11-26, cuda_attention_bench: one layer, Llama-3.1-8B's heads, one
// causal prompt; ms at 512 / 10,000 tokens): this kernel 0.046 / 3.333; the same with 64-position
// tiles 0.044 / 3.378 (253 registers, 8 bytes spilled); 8 such warps, 1 block per SM 0.060 /
// 3.600; 16-row warps with Q re-read from shared memory, 4 warps x 4 blocks per SM (128
// registers) 0.042 / 3.860, 8 warps x 2 blocks 0.041 / 3.428; 16-row warps with Q in registers
// and Q staged through a K buffer, 4 warps x 3 blocks (the kernel before this one, which short
// calls kept until 2026-11-26) 0.048-0.050 / 4.592. In the last run of the two side by side, this
// kernel was faster at every call size, most of all for the later steps of a prompt cut into
// steps (calls after cached positions; ms, the old kernel first): 512 tokens 0.050 / 0.043, 2048
// 0.328 / 0.251, 3584 0.797 / 0.558, 3584 after 3584 positions 2.113 / 1.380, 2832-ish after 7168
// (3584 measured) 3.508 / 2.261, 10,000 3.287 / 3.269; the 8B forward pp512 16,353 / 16,978 and
// pp10000 19,661 / 21,011 t/s (single runs, +-10 % between runs on this machine).
constexpr int kFaMTiles = 2;                           // m-tiles of 16 rows per warp
constexpr int kFaRows = 16 * kFaMTiles * kFaWarps;  // query rows per block
constexpr int kFaChunk = 32;                       // positions per K/V tile
constexpr int kFaBlocksPerSm = 2;                  // what the registers must allow (__launch_bounds__)

// Dynamic shared memory: Q [kFaRows][D + 8] halves, then the K and V tiles, two buffers each,
// of kFaChunk rows of D + 8 halves. 69,632 bytes at D = 128.
constexpr size_t flash_smem_bytes(int d) {
    return (size_t)(kFaRows + 4 * kFaChunk) * (d + 8) * sizeof(__half);
}

// 2^x as one MUFU op (ex2.approx.ftz; exp2f adds a subnormal path). Results below 2^-126 flush
// to 0, which the probabilities' f16 rounding (smallest f16 subnormal 2^-24) does anyway.
__device__ __forceinline__ float exp2_ftz(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

// D: head dim (64, 96 or 128).
template <int D>
__global__ void __launch_bounds__(kFaThreads, kFaBlocksPerSm)
    flash_attention_kernel(const float* __restrict__ q, PagedKvCuda kv, AttnIndexCuda idx, FlashConsts c,
                                float* __restrict__ out) {
    using namespace cuda_mma;
    pdl_launch_dependents();
    pdl_wait();
    constexpr int kLd = D + 8;
    static_assert(kFaRows <= kFaThreads, "one thread per row writes the row's token info");
    static_assert(kFaThreads % kFaChunk == 0, "whole threads per copied position");
    extern __shared__ __align__(16) unsigned char fa_smem[];
    __half* s_q = reinterpret_cast<__half*>(fa_smem);  // [kFaRows][kLd]
    __half* s_k = s_q + kFaRows * kLd;                 // [2][kFaChunk][kLd]
    __half* s_v = s_k + 2 * kFaChunk * kLd;            // [2][kFaChunk][kLd]
    __shared__ int s_seq[kFaRows], s_lo[kFaRows], s_end[kFaRows];

    // Per kv head, the tiles with the most positions first (the causal tail is the lightest).
    const int tile = gridDim.x - 1 - blockIdx.x;
    const int kvh = blockIdx.y / c.n_hchunks, h0 = (blockIdx.y % c.n_hchunks) * c.hg;
    const int t0 = tile * c.tt;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;

    if (threadIdx.x < kFaRows) load_flash_token(t0, c, idx, s_seq, s_lo, s_end);
    // Q rows scaled by scale * log2(e) (scores come out in log2 units), as f16 (zeros for rows past
    // the tokens or the group).
    const float q_scale = c.scale * kLog2e;
    stage_flash_q<D, kFaRows>(q, c, t0, kvh, h0, q_scale, s_q);
    __syncthreads();

    // This thread's rows: g and g + 8 of each of its warp's m-tiles.
    int row_tk[kFaMTiles][2];
    bool row_ok[kFaMTiles][2];
#pragma unroll
    for (int mt = 0; mt < kFaMTiles; ++mt)
#pragma unroll
        for (int i = 0; i < 2; ++i) {
            const int r = (warp * kFaMTiles + mt) * 16 + lane / 4 + 8 * i;
            row_tk[mt][i] = r / c.hg;
            row_ok[mt][i] = row_tk[mt][i] < c.tt && h0 + r % c.hg < c.group;
        }
    float m[kFaMTiles][2], l[kFaMTiles][2];
    float o[kFaMTiles][D / 8][4];
#pragma unroll
    for (int mt = 0; mt < kFaMTiles; ++mt) {
        m[mt][0] = m[mt][1] = -INFINITY, l[mt][0] = l[mt][1] = 0.0f;
#pragma unroll
        for (int nd = 0; nd < D / 8; ++nd) o[mt][nd][0] = o[mt][nd][1] = o[mt][nd][2] = o[mt][nd][3] = 0.0f;
    }
    const float cap = c.softcap * kLog2e;  // the soft-cap in log2 units

    // The copy: kCpThreads threads per position of the tile, each every kCpThreads-th 16-byte piece
    // of its K and V head rows (D / 8 pieces each).
    constexpr int kCpThreads = kFaThreads / kFaChunk;
    const int cp_pos = threadIdx.x / kCpThreads, cp_part = threadIdx.x % kCpThreads;

    for (FlashRun run; next_flash_run(run.tb, c.tt, s_seq, s_lo, s_end, run);) {
        const int seq = run.seq, ta = run.ta, tb = run.tb, run_lo = run.lo, run_end = run.end;
        const int full_lo = run.full_lo, full_end = run.full_end;
        const bool whole_tile = run.whole_tile;
        int rlo[kFaMTiles][2], rend[kFaMTiles][2];
#pragma unroll
        for (int mt = 0; mt < kFaMTiles; ++mt)
#pragma unroll
            for (int i = 0; i < 2; ++i) {
                const bool in = row_ok[mt][i] && row_tk[mt][i] >= ta && row_tk[mt][i] < tb;
                rlo[mt][i] = in ? s_lo[row_tk[mt][i]] : INT_MAX;
                rend[mt][i] = in ? s_end[row_tk[mt][i]] : 0;
            }
        const int32_t* table = idx.block_tables + (int64_t)seq * idx.table_stride;
        auto load_tile = [&](int c0, int buf) {
            load_kv_tile<D, kFaChunk, kCpThreads>(kv, table, kvh, run_lo, run_end, c0 + cp_pos, cp_part,
                                               s_k + (buf * kFaChunk + cp_pos) * kLd, s_v + (buf * kFaChunk + cp_pos) * kLd);
        };
        const int c_first = run_lo / kFaChunk * kFaChunk;
        load_tile(c_first, 0);
        int buf = 0;
        for (int c0 = c_first; c0 < run_end; c0 += kFaChunk, buf ^= 1) {
            cp_async_wait<0>();
            __syncthreads();  // tile c0 is in buffer buf for every warp; every warp is done with buf ^ 1
            if (c0 + kFaChunk < run_end) load_tile(c0 + kFaChunk, buf ^ 1);

            // S = Q K^T for this warp's rows and the kFaChunk positions.
            float sc[kFaMTiles][kFaChunk / 8][4];
#pragma unroll
            for (int mt = 0; mt < kFaMTiles; ++mt)
#pragma unroll
                for (int ni = 0; ni < kFaChunk / 8; ++ni) sc[mt][ni][0] = sc[mt][ni][1] = sc[mt][ni][2] = sc[mt][ni][3] = 0.0f;
            const __half* kt = s_k + buf * kFaChunk * kLd;
#pragma unroll
            for (int ks = 0; ks < D / 16; ++ks) {
                uint32_t qa[kFaMTiles][4];
#pragma unroll
                for (int mt = 0; mt < kFaMTiles; ++mt)
                    ldmatrix_x4(qa[mt], &s_q[((warp * kFaMTiles + mt) * 16 + (lane & 15)) * kLd + ks * 16 + (lane >> 4) * 8]);
#pragma unroll
                for (int nj = 0; nj < kFaChunk / 16; ++nj) {
                    uint32_t b[4];
                    ldmatrix_x4(b, &kt[(nj * 16 + (lane & 7) + ((lane >> 4) << 3)) * kLd + ks * 16 + ((lane >> 3) & 1) * 8]);
#pragma unroll
                    for (int mt = 0; mt < kFaMTiles; ++mt) {
                        mma_16816(sc[mt][2 * nj], qa[mt], b[0], b[1]);
                        mma_16816(sc[mt][2 * nj + 1], qa[mt], b[2], b[3]);
                    }
                }
            }
            if (c.softcap > 0.0f) {
#pragma unroll
                for (int mt = 0; mt < kFaMTiles; ++mt)
#pragma unroll
                    for (int ni = 0; ni < kFaChunk / 8; ++ni)
#pragma unroll
                        for (int e = 0; e < 4; ++e) sc[mt][ni][e] = cap * tanhf(sc[mt][ni][e] / cap);
            }
            // The mask, only where some row of the tile does not see every position of the tile
            // (most tiles of a long prompt need none).
            if (!(whole_tile && c0 >= full_lo && c0 + kFaChunk <= full_end)) {
#pragma unroll
                for (int mt = 0; mt < kFaMTiles; ++mt)
#pragma unroll
                    for (int ni = 0; ni < kFaChunk / 8; ++ni)
#pragma unroll
                        for (int e = 0; e < 4; ++e) {
                            const int i = e / 2, j = c0 + ni * 8 + 2 * (lane & 3) + (e & 1);
                            if (!(j >= rlo[mt][i] && j < rend[mt][i])) sc[mt][ni][e] = -INFINITY;
                        }
            }
            // The rows' new maxima and the factors that rescale their old state.
            float corr[kFaMTiles][2];
            bool rescale = false;
#pragma unroll
            for (int mt = 0; mt < kFaMTiles; ++mt)
#pragma unroll
                for (int i = 0; i < 2; ++i) {
                    float mx = m[mt][i];
#pragma unroll
                    for (int ni = 0; ni < kFaChunk / 8; ++ni) mx = fmaxf(mx, fmaxf(sc[mt][ni][2 * i], sc[mt][ni][2 * i + 1]));
                    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
                    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
                    // Nothing visible yet (mx = -inf): the state stays as it is.
                    corr[mt][i] = mx == -INFINITY ? 1.0f : exp2_ftz(m[mt][i] - mx);
                    rescale = rescale || corr[mt][i] != 1.0f;
                    m[mt][i] = mx;
                }
            // P = 2^(S - m), rounded to f16 as the PV product takes it; l sums the rounded values so
            // that the output is a convex combination of V rows.
            uint32_t pf[kFaMTiles][kFaChunk / 8][2];
#pragma unroll
            for (int mt = 0; mt < kFaMTiles; ++mt)
#pragma unroll
                for (int i = 0; i < 2; ++i) {
                    const float mu = m[mt][i] == -INFINITY ? 0.0f : m[mt][i];  // 2^(-inf - 0) = 0
                    float ls = 0.0f;
#pragma unroll
                    for (int ni = 0; ni < kFaChunk / 8; ++ni) {
                        pf[mt][ni][i] = pack_half2(exp2_ftz(sc[mt][ni][2 * i] - mu), exp2_ftz(sc[mt][ni][2 * i + 1] - mu));
                        const float2 r = __half22float2(*reinterpret_cast<const __half2*>(&pf[mt][ni][i]));
                        ls += r.x + r.y;
                    }
                    l[mt][i] = l[mt][i] * corr[mt][i] + ls;
                }
            // Rescale O only where some row's maximum moved (x 1 is exact: skipping it changes no bit).
            if (__any_sync(0xffffffffu, rescale)) {
#pragma unroll
                for (int mt = 0; mt < kFaMTiles; ++mt)
#pragma unroll
                    for (int nd = 0; nd < D / 8; ++nd) {
                        o[mt][nd][0] *= corr[mt][0], o[mt][nd][1] *= corr[mt][0];
                        o[mt][nd][2] *= corr[mt][1], o[mt][nd][3] *= corr[mt][1];
                    }
            }
            // O += P V.
            const __half* vt = s_v + buf * kFaChunk * kLd;
#pragma unroll
            for (int kk = 0; kk < kFaChunk / 16; ++kk) {
                uint32_t a[kFaMTiles][4];
#pragma unroll
                for (int mt = 0; mt < kFaMTiles; ++mt)
                    a[mt][0] = pf[mt][2 * kk][0], a[mt][1] = pf[mt][2 * kk][1], a[mt][2] = pf[mt][2 * kk + 1][0],
                    a[mt][3] = pf[mt][2 * kk + 1][1];
#pragma unroll
                for (int dn = 0; dn < D / 16; ++dn) {
                    uint32_t b[4];
                    ldmatrix_x4_trans(b, &vt[(kk * 16 + ((lane >> 3) & 1) * 8 + (lane & 7)) * kLd + dn * 16 + (lane >> 4) * 8]);
#pragma unroll
                    for (int mt = 0; mt < kFaMTiles; ++mt) {
                        mma_16816(o[mt][2 * dn], a[mt], b[0], b[1]);
                        mma_16816(o[mt][2 * dn + 1], a[mt], b[2], b[3]);
                    }
                }
            }
        }
        __syncthreads();  // every warp is done with both buffers before the next run fills them
    }

    // The quad's partial sums, the sinks, the normalized rows.
#pragma unroll
    for (int mt = 0; mt < kFaMTiles; ++mt)
#pragma unroll
        for (int i = 0; i < 2; ++i)
            store_flash_row<D>(o[mt], i, l[mt][i], m[mt][i], row_ok[mt][i],
                               (warp * kFaMTiles + mt) * 16 + (int)threadIdx.x % 32 / 4 + 8 * i, row_tk[mt][i], t0, kvh,
                               h0, c, out);
}

}  // namespace

bool attention_cuda_uses_flash(const AttentionParams& p, const PagedKvCuda& kv, int64_t n_tokens,
                               const AttnSplitCuda& split, const void* out_q8) {
    const int d = p.head_dim_k;
    const char* env = std::getenv("HEARTH_CUDA_FLASH");
    return !(env != nullptr && std::strcmp(env, "0") == 0) && n_tokens >= kAttnFlashMinTokens && out_q8 == nullptr &&
           split.workspace == nullptr && !split.rows_only && p.n_head_kv > 0 && p.n_head % p.n_head_kv == 0 &&
           p.head_dim_v == d && (d == 64 || d == 96 || d == 128) && kv.k_row_stride % 8 == 0 &&
           kv.v_row_stride % 8 == 0 && reinterpret_cast<uintptr_t>(kv.k) % 16 == 0 &&
           reinterpret_cast<uintptr_t>(kv.v) % 16 == 0;
}

void flash_attention_cuda(cuda::Stream& stream, const float* q, const PagedKvCuda& kv, const AttnIndexCuda& idx,
                          int64_t n_tokens, const AttentionParams& p, float* out) {
    cuda::Device& dev = stream.device();
    const int d = p.head_dim_k, rows = kFaRows;
    FlashConsts fc{};
    fc.n_tokens = (int)n_tokens, fc.n_head = p.n_head, fc.group = p.n_head / p.n_head_kv;
    fc.hg = std::min(fc.group, rows);
    fc.n_hchunks = (fc.group + fc.hg - 1) / fc.hg;
    fc.tt = rows / fc.hg;
    fc.sliding_window = p.sliding_window;
    fc.scale = p.scale, fc.softcap = p.softcap, fc.sinks = p.sinks;
    auto pick = [&](auto k64, auto k96, auto k128) { return d == 64 ? k64 : d == 96 ? k96 : k128; };
    auto* kernel = pick(flash_attention_kernel<64>, flash_attention_kernel<96>, flash_attention_kernel<128>);
    const size_t smem = flash_smem_bytes(d);
    if (!dev.check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem),
                   "attention_cuda shared memory") ||
        !dev.check(cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout,
                                        (int)cudaSharedmemCarveoutMaxShared),
                   "attention_cuda shared memory carveout"))
        return;
    // y <= 65535: n_head_kv * head chunks (at most n_head / kFaRows + n_head_kv) fits any model.
    const dim3 grid((unsigned)((n_tokens + fc.tt - 1) / fc.tt), (unsigned)(p.n_head_kv * fc.n_hchunks));
    dev.check(cuda_kernels::launch_kernel(stream.programmatic(), kernel, grid, dim3(kFaThreads), smem,
                                          static_cast<cudaStream_t>(stream.handle()), q, kv, idx, fc, out),
              "attention_cuda launch");
}

}  // namespace hearth::backend
