// Batch-invariant matmul for Q4_0, Q8_0, Q4_K and Q6_K weights with int8 activations (ActQ8:
// q8_1-style blocks of 32), on the integer tensor cores (mma.sync m16n8k32 / m16n8k16,
// s8 x s8 -> s32): every weight tile is read from memory once for all the call's tokens (up to
// 64), where the dp4a kernels (matmul_vec.cu) read the weights once per 8 tokens.
//
// Numerics (the contract that makes a token's result independent of the batch): per output
// (row r, token t) and unit g of 32 weights (one activation block), the integer dot product S
// (S0, S1 for the two 16-value halves of a Q6_K unit) is exact, and the unit's contribution is
//   Q8_0, Q4_0:  u = a0 * S                      (Q4_0 codes taken as q - 8)
//   Q4_K:        u = fma(-m, sy, a0 * S)
//   Q6_K:        u = a0 * S0 + a1 * S1
// each operation rounded once in f32, with a0 = d * sc, a1 = d * sc1, m = dmin * mn as in
// matmul_vec.cu (exact products of an fp16 and a small integer), dx the activation block's
// scale and sy the sum of its quants (exact). The units of a row are cut into L "chains",
// contiguous ranges of super-units (8 units: a K-quant super-block, or 8 blocks of Q4_0/Q8_0),
// chain c = super-units [c * n_super / L, (c + 1) * n_super / L); each chain is summed in unit
// order, p = fma(dx, u, p) from p = 0, and y = ((p_0 + p_1) + p_2) + ... + p_{L-1}. L depends only
// on the matrix shape (mma_chains, which counts tiles of 64 rows whatever the blocks' size),
// never on the token count, so a token's bits are the same in any batch and at any position in
// it; matmul_cuda_q8 uses these kernels for every token count.
//
// Work: a thread block owns a tile of rows (64, or 128 for large grids) and one chain, one warp
// per 16 rows; the L blocks of a tile form a thread-block cluster and add their partial sums
// through distributed shared memory in chain order at the end. One launch may cover up to 3
// matrices of one type that read the same activations (matmul_q8_mma_grouped: Q, K and V; gate
// and up): each keeps its own tiles and chain count, the cluster size is the largest count and a
// cluster of a matrix with fewer chains holds several of its tiles, so a matrix's bits are those
// of its own launch with that count. (Alone, an 8B model's 1024-row K and V matrices are 128
// blocks, 8 chains of 2 stages each, and ran at ~150 GB/s.) Each warp computes every token
// tile of 8 tokens (NT tiles, accumulators in registers). Per stage (one super-unit) the block
// copies the rows' weight bytes and the 8 units' activations of every token into shared memory
// with cp.async. Activations are staged token-major, 256 bytes a token, 16-byte chunk c of
// token t at chunk c ^ (t & 7), so that both the copies and the reads of 8 tokens hit all 32
// banks; one ldmatrix.x4 gives the B fragments of two token tiles. Each warp decodes the
// per-unit scales of its 16 rows (a0, -a0 * 1.5 * 2^23, ...) into its own small table and its
// weight fragments straight from the staged bytes: Q4_K with ldmatrix (one x4 load gives the
// fragments of two sub-blocks, low and high nibbles), the others with 32-bit loads (Q6_K two
// units per load of the shared ql/qh bytes; Q6_K's 6-bit codes made signed with a byte
// subtract). The accumulator of each mma starts at the integer 0x4B400000, so the int32 result
// read as a float is 1.5 * 2^23 + S exactly (|S| < 2^22 for every type here) and a0 * S is one
// fma: fma(a0, that, -a0 * 1.5 * 2^23), where a0 * 1.5 * 2^23 is exact (a0 has at most 19
// significant bits).
// Two pipelines over that same per-stage work (launch_nt picks one; they give the same bits):
//  - matmul_mma_kernel: weights two stages ahead of the one computed (one from 5 token tiles
//    on), activations one; rows whose super-units start 16-byte aligned staged at the
//    super-unit's size. 64-row blocks; 128-row blocks from 5 token tiles on where the 64-row
//    grid would not fit on the device at once.
//  - matmul_mma_lean_kernel: weights and activations in one buffer per stage, one stage ahead
//    (two for one token tile), 4 blocks of 64 rows per SM: the grids that would not fit at once
//    otherwise, up to 4 token tiles (128-row blocks of the other kernel were slower there:
//    14336 x 4096 at 32 tokens 41.0 against 38.1 us, at one token 25.3 against 20.2 us).
//
// Measured (H100, cuda_matmul_bench --decode, Llama-3.1-8B Q4_K_M's matrices, kernel alone,
// against the earlier single kernel in the same run): a decode step's matmuls 6.93 ms at 32
// tokens (was 8.37), 11.31 at 64 (15.51), 4.74 at 16 (5.36), 3.91 at 8 (4.06), 3.46 at one
// (3.51). Warps owning two 16-row tiles each (one B fragment load feeding two mmas, half the
// warps) were no faster at 32 tokens (7.38 ms): the kernel is bound by latency, not by
// shared-memory bandwidth.
#include <cooperative_groups.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstddef>

#include "backend/cuda/matmul_kernels.cuh"
#include "backend/cuda/mma.cuh"
#include "quant/q4_0.h"
#include "quant/q4_k.h"
#include "quant/q6_k.h"
#include "quant/q8_0.h"

namespace hearth::backend::cuda_kernels {
namespace {

namespace cg = cooperative_groups;
using quant::QuantType;

static_assert(sizeof(quant::BlockQ8_0) == 34 && offsetof(quant::BlockQ8_0, qs) == 2);
static_assert(sizeof(quant::BlockQ4_0) == 18 && offsetof(quant::BlockQ4_0, qs) == 2);
static_assert(sizeof(quant::BlockQ4_K) == 144 && offsetof(quant::BlockQ4_K, dmin) == 2 &&
              offsetof(quant::BlockQ4_K, scales) == 4 && offsetof(quant::BlockQ4_K, qs) == 16);
static_assert(sizeof(quant::BlockQ6_K) == 210 && offsetof(quant::BlockQ6_K, ql) == 0 &&
              offsetof(quant::BlockQ6_K, qh) == 128 && offsetof(quant::BlockQ6_K, scales) == 192 &&
              offsetof(quant::BlockQ6_K, d) == 208);

constexpr int kRows = 64;                 // rows per tile: mma_chains' unit, and the lean kernel's block
constexpr int kWarps = kRows / 16;        // 16 rows per warp
constexpr int kThreads = 32 * kWarps;
// Lean kernel stage buffers: kBufs - 1 stages in flight while one is computed. Three for one
// token tile; two from 2 tiles on, so that the blocks of the large matrices (448 for 14336 x
// 4096) fit on the device at once (4 per SM at 32 tokens) instead of running a second, mostly
// idle wave.
__host__ __device__ constexpr int bufs_of(int nt) { return nt >= 2 ? 2 : 3; }
constexpr int kMaxChains = 8;             // cluster size limit (portable)
// mma_chains doubles L while a matrix has fewer than kMinBlocks tiles * L blocks (about two per
// SM of a 132-SM H100/H200). A constant, not the device's SM count, so that the order of the
// sums (and so the bits) is the same on every device. (Splitting further, up to 4 blocks per
// SM, was slower on the H100: 8 chains for the 4096-row matrices cost 35 % more at 32 tokens.)
constexpr int kMinBlocks = 256;
constexpr int kSclStride = 9;             // scale table row: 8 units + 1 float4 of padding (banks)
constexpr uint32_t kMagicBits = 0x4B400000u;  // 1.5 * 2^23 as a float
constexpr float kMagic = 12582912.0f;

template <QuantType> struct Mq;  // bytes of one super-unit (8 units of 32 weights)
template <> struct Mq<QuantType::q8_0> { static constexpr int kSuperBytes = 8 * 34; };
template <> struct Mq<QuantType::q4_0> { static constexpr int kSuperBytes = 8 * 18; };
template <> struct Mq<QuantType::q4_k> { static constexpr int kSuperBytes = 144; };
template <> struct Mq<QuantType::q6_k> { static constexpr int kSuperBytes = 210; };

// Shared-memory row stride of the staged weights: the super-unit's bytes, up to 15 bytes of
// misalignment (rows are copied from the 16-byte boundary below their start) and the word
// ld_u32 reads past the end, rounded to an odd number of 16-byte chunks so that the 8 rows a
// warp's lanes read at once fall in different banks.
__host__ __device__ constexpr int row_stride_of(int super_bytes) {
    const int s = (super_bytes + 15 + 4 + 15) / 16;
    return 16 * (s % 2 == 0 ? s + 1 : s);
}

// Activation {d, sum} of a pair of tokens (2p, 2p + 1): 8 float4 {d0, sum0, d1, sum1}, one per
// unit, padded to 9 so that the 4 pairs a warp's lanes read at once (tig) fall in different banks.
constexpr int kDsPairStride = 9 * 16;

// The matrices of one launch (matmul_q8_mma_grouped; one matrix for matmul_q8_mma): matrix s
// owns blocks [block_begin[s], block_begin[s + 1]), whole clusters (a multiple of the cluster
// size), so a cluster never spans two matrices; its block lb (counted from block_begin[s]) is
// chain lb % n_chains[s] of tile lb / n_chains[s]. Blocks past its last tile (the tail of its
// last cluster, when a cluster holds several tiles) copy nothing and store nothing.
struct MmaLaunch {
    const std::byte* w[kMmaMaxSegs];
    size_t row_bytes[kMmaMaxSegs];
    float* y[kMmaMaxSegs];
    int n_out[kMmaMaxSegs];
    int n_chains[kMmaMaxSegs];
    int block_begin[kMmaMaxSegs];  // block_begin[0] = 0; unused matrices: INT_MAX
    // Expert groups (matmul_q8_mma_experts), or null: each matrix is a stack of experts of n_out
    // rows, and its blocks are items x tiles: item i (device int4 {expert, first activation
    // row, rows 1..64, -}) times the expert's row tiles, one chain.
    const int4* items = nullptr;
};
// This block's matrix, first row (tiles of kRB rows) and chain.
struct MmaBlock {
    const std::byte* w;
    size_t row_bytes;
    float* y;
    int n_out, n_chains, chain, row0;
};
// With items, also moves xq and xds to the item's first activation row and sets n_tokens to its
// row count.
// (Q, D: the kernels' __restrict__ pointers to int8 quants and float2 {d, sum}.)
template <int kRB, class Q, class D>
__device__ __forceinline__ MmaBlock mma_block(const MmaLaunch& a, Q& xq, D& xds, int n_in, int& n_tokens) {
    const int b = (int)blockIdx.x;
    const bool s1 = b >= a.block_begin[1], s2 = b >= a.block_begin[2];
    // Constant indices only: a dynamically indexed kernel parameter would be copied to local memory.
    auto pick = [&](auto v0, auto v1, auto v2) { return s2 ? v2 : s1 ? v1 : v0; };
    MmaBlock m;
    m.w = pick(a.w[0], a.w[1], a.w[2]);
    m.row_bytes = pick(a.row_bytes[0], a.row_bytes[1], a.row_bytes[2]);
    m.y = pick(a.y[0], a.y[1], a.y[2]);
    m.n_out = pick(a.n_out[0], a.n_out[1], a.n_out[2]);
    m.n_chains = pick(a.n_chains[0], a.n_chains[1], a.n_chains[2]);
    const int lb = b - pick(0, a.block_begin[1], a.block_begin[2]);
    if (a.items != nullptr) {
        const int tiles = (m.n_out + kRB - 1) / kRB;
        const int4 it = a.items[lb / tiles];
        m.w += (size_t)it.x * m.n_out * m.row_bytes;
        m.y += (size_t)it.y * m.n_out;
        xq += (size_t)it.y * n_in, xds += (size_t)it.y * (n_in / 32), n_tokens = it.z;
        m.chain = 0, m.n_chains = 1;
        m.row0 = lb % tiles * kRB;
        return m;
    }
    m.chain = lb % m.n_chains;
    m.row0 = lb / m.n_chains * kRB;
    return m;
}

using cuda_mma::cp_async_commit;
using cuda_mma::cp_async_wait;
using cuda_mma::smem_u32;
__device__ __forceinline__ void cp_async16(void* dst, const void* src) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(smem_u32(dst)), "l"(src) : "memory");
}
__device__ __forceinline__ void cp_async8(void* dst, const void* src) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 8;\n" ::"r"(smem_u32(dst)), "l"(src) : "memory");
}
// 16 bytes through L1: activations are read by every block, so blocks on one SM share them.
__device__ __forceinline__ void cp_async16_ca(void* dst, const void* src) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 16;\n" ::"r"(smem_u32(dst)), "l"(src) : "memory");
}

// 4 bytes at a 2-byte-aligned byte offset of a 16-byte-aligned shared buffer.
__device__ __forceinline__ uint32_t ld_u32(const uint32_t* sw, int off) {
    const int i = off >> 2;
    return __funnelshift_r(sw[i], sw[i + 1], (off & 2) * 8);
}
__device__ __forceinline__ uint32_t ld_u16(const uint32_t* sw, int off) {
    return (sw[off >> 2] >> ((off & 2) * 8)) & 0xffffu;
}

// D = A * B + 0x4B400000 (each of the four accumulators), s8 x s8 -> s32.
__device__ __forceinline__ void mma_k32(const uint32_t (&a)[4], uint32_t b0, uint32_t b1, uint32_t (&d)[4]) {
    asm("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%11,%12,%13};\n"
        : "=r"(d[0]), "=r"(d[1]), "=r"(d[2]), "=r"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1), "r"(kMagicBits), "r"(kMagicBits),
          "r"(kMagicBits), "r"(kMagicBits));
}
__device__ __forceinline__ void mma_k16(uint32_t a0, uint32_t a1, uint32_t b0, uint32_t (&d)[4]) {
    asm("mma.sync.aligned.m16n8k16.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5}, {%6}, {%7,%8,%9,%10};\n"
        : "=r"(d[0]), "=r"(d[1]), "=r"(d[2]), "=r"(d[3])
        : "r"(a0), "r"(a1), "r"(b0), "r"(kMagicBits), "r"(kMagicBits), "r"(kMagicBits), "r"(kMagicBits));
}

// The scales of units 4 * h .. 4 * h + 3 of the super-unit whose bytes (of one row) start at
// byte o of sw, into e[0..3]: x = a0, y = -a0 * 1.5 * 2^23 (exact), and z = -m (Q4_K) or
// z = a1, w = -a1 * 1.5 * 2^23 (Q6_K).
template <QuantType kType>
__device__ __forceinline__ void unit_scales4(const uint32_t* sw, int o, int h, float4* e);

template <>
__device__ __forceinline__ void unit_scales4<QuantType::q8_0>(const uint32_t* sw, int o, int h, float4* e) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const float d = fp16_bits_to_f32(ld_u16(sw, o + 34 * (4 * h + i)));
        e[i] = make_float4(d, __fmul_rn(d, -kMagic), 0.0f, 0.0f);
    }
}
template <>
__device__ __forceinline__ void unit_scales4<QuantType::q4_0>(const uint32_t* sw, int o, int h, float4* e) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const float d = fp16_bits_to_f32(ld_u16(sw, o + 18 * (4 * h + i)));
        e[i] = make_float4(d, __fmul_rn(d, -kMagic), 0.0f, 0.0f);
    }
}
template <>
__device__ __forceinline__ void unit_scales4<QuantType::q4_k>(const uint32_t* sw, int o, int h, float4* e) {
    uint32_t h0, h1, h2, h3;
    if ((o & 15) == 0) {
        const uint4 v = reinterpret_cast<const uint4*>(sw)[o >> 4];
        h0 = v.x, h1 = v.y, h2 = v.z, h3 = v.w;
    } else {
        h0 = ld_u32(sw, o), h1 = ld_u32(sw, o + 4), h2 = ld_u32(sw, o + 8), h3 = ld_u32(sw, o + 12);
    }
    const float d = fp16_bits_to_f32(h0), dmin = fp16_bits_to_f32(h0 >> 16);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        uint32_t sc, mn;
        q4_k_scale_min(4 * h + i, h1, h2, h3, sc, mn);
        const float a0 = __fmul_rn(d, (float)sc);
        e[i] = make_float4(a0, __fmul_rn(a0, -kMagic), -__fmul_rn(dmin, (float)mn), 0.0f);
    }
}
template <>
__device__ __forceinline__ void unit_scales4<QuantType::q6_k>(const uint32_t* sw, int o, int h, float4* e) {
    const float d = fp16_bits_to_f32(ld_u16(sw, o + 208));
    const uint32_t w0 = ld_u32(sw, o + 192 + 8 * h), w1 = ld_u32(sw, o + 196 + 8 * h);  // scales[8h .. 8h + 7]
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const uint32_t scw = (i < 2 ? w0 : w1) >> (16 * (i & 1));  // scales of values 0..15 and 16..31 of the unit
        const float a0 = __fmul_rn(d, (float)(int8_t)(scw & 0xffu));
        const float a1 = __fmul_rn(d, (float)(int8_t)((scw >> 8) & 0xffu));
        e[i] = make_float4(a0, __fmul_rn(a0, -kMagic), a1, __fmul_rn(a1, -kMagic));
    }
}

// The A fragment (m16n8k32 layout) of unit j: rows g (super-unit bytes at o0) and g + 8 (o1),
// values 4 * tig .. + 3 (a[0], a[1]) and 16 + 4 * tig .. + 3 (a[2], a[3]), as signed int8.
// (Q6_K decodes two units at a time in the kernel; Q4_K with aligned rows uses ldmatrix.)
template <QuantType kType>
__device__ __forceinline__ void load_a(const uint32_t* sw, int o0, int o1, int j, int tig, uint32_t (&a)[4]);

template <>
__device__ __forceinline__ void load_a<QuantType::q8_0>(const uint32_t* sw, int o0, int o1, int j, int tig,
                                                        uint32_t (&a)[4]) {
    const int q = 34 * j + 2 + 4 * tig;
    a[0] = ld_u32(sw, o0 + q), a[1] = ld_u32(sw, o1 + q);
    a[2] = ld_u32(sw, o0 + q + 16), a[3] = ld_u32(sw, o1 + q + 16);
}
template <>
__device__ __forceinline__ void load_a<QuantType::q4_0>(const uint32_t* sw, int o0, int o1, int j, int tig,
                                                        uint32_t (&a)[4]) {
    const int q = 18 * j + 2 + 4 * tig;  // byte i: value i (low nibble), value i + 16 (high)
    const uint32_t w0 = ld_u32(sw, o0 + q), w1 = ld_u32(sw, o1 + q);
    a[0] = __vsub4(w0 & 0x0f0f0f0fu, 0x08080808u), a[1] = __vsub4(w1 & 0x0f0f0f0fu, 0x08080808u);
    a[2] = __vsub4((w0 >> 4) & 0x0f0f0f0fu, 0x08080808u), a[3] = __vsub4((w1 >> 4) & 0x0f0f0f0fu, 0x08080808u);
}
template <>
__device__ __forceinline__ void load_a<QuantType::q4_k>(const uint32_t* sw, int o0, int o1, int j, int tig,
                                                        uint32_t (&a)[4]) {
    const int q = 16 + 32 * (j >> 1) + 4 * tig, sh = 4 * (j & 1);  // sub-block j: nibble j%2 of qs[32(j/2) + l]
    a[0] = (ld_u32(sw, o0 + q) >> sh) & 0x0f0f0f0fu, a[1] = (ld_u32(sw, o1 + q) >> sh) & 0x0f0f0f0fu;
    a[2] = (ld_u32(sw, o0 + q + 16) >> sh) & 0x0f0f0f0fu, a[3] = (ld_u32(sw, o1 + q + 16) >> sh) & 0x0f0f0f0fu;
}

__device__ __forceinline__ void ldmatrix_x4(const void* p, uint32_t (&x)[4]) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(x[0]), "=r"(x[1]), "=r"(x[2]), "=r"(x[3])
                 : "r"(smem_u32(p)));
}
__device__ __forceinline__ void ldmatrix_x2(const void* p, uint32_t& x0, uint32_t& x1) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];\n" : "=r"(x0), "=r"(x1) : "r"(smem_u32(p)));
}

// One stage (super-unit) of a warp's 16 rows of a tile against every token tile, shared by both
// kernels: the warp's scale table (scl), the A fragments of each unit from the staged weights
// (buf, rows rs bytes apart, row r's super-unit at byte mis(r) of its row), the B fragments by
// ldmatrix from the stage's swizzled token-major quants (act; {d, sum} after kTp * 256 bytes),
// and the unit sums into acc. units_left: the units of the row from this stage on (Q4_0 / Q8_0
// tails). kUnrollHalves: unroll the Q6_K halves and Q4_K pairs (the lean kernel keeps them
// rolled, for its 4 blocks per SM of registers).
template <QuantType kType, int NT, bool kSingle, bool kUnrollHalves, class Mis>
__device__ __forceinline__ void mma_stage(const std::byte* buf, int rs, Mis mis, const std::byte* act, float4* scl,
                                          bool al16, int units_left, float (&acc)[NT][4]) {
    constexpr int kTp = 8 * NT;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, gq = lane >> 2, tig = lane & 3;
    const int r0 = 16 * warp + gq, r1 = r0 + 8;  // this lane's rows in the tile
    // ldmatrix B addresses: lane l gives row l % 8 (token) of matrix l / 8: (tile + l / 16, half (l / 8) % 2).
    const int b_tok = 8 * (lane >> 4) + (lane & 7);
    const int b_xor = 16 * (((lane >> 3) & 1) ^ (lane & 7));  // chunk 2j + half, swizzled: (32 j) ^ b_xor
    const uint32_t* sw = reinterpret_cast<const uint32_t*>(buf);
    {  // this warp's scale table: lane -> row lane % 16, units 4 (lane / 16) .. + 3
        const int r = 16 * warp + (lane & 15);
        float4 e[4];
        unit_scales4<kType>(sw, r * rs + mis(r), lane >> 4, e);
#pragma unroll
        for (int i = 0; i < 4; ++i) scl[(lane & 15) * kSclStride + 4 * (lane >> 4) + i] = e[i];
    }
    __syncwarp();
    const std::byte* aq = act + 256 * b_tok;
    const std::byte* ad = act + kTp * 256 + tig * kDsPairStride;
    auto unit = [&](int j, const uint32_t (&a)[4]) {
        const float4 e0 = scl[gq * kSclStride + j], e1 = scl[(gq + 8) * kSclStride + j];
        const std::byte* bj = aq + ((32 * j) ^ b_xor);
#pragma unroll
        for (int nt = 0; nt < NT; nt += 2) {
            uint32_t b[4];
            if (nt + 1 < NT) {
                ldmatrix_x4(bj + 2048 * nt, b);
            } else {
                ldmatrix_x2(bj + 2048 * nt, b[0], b[1]);
                b[2] = b[3] = 0;
            }
#pragma unroll
            for (int q = 0; q < 2 && nt + q < NT; ++q) {
                const float4 dd = *reinterpret_cast<const float4*>(ad + 4 * (nt + q) * kDsPairStride + 16 * j);
                const float2 d0 = make_float2(dd.x, dd.y), d1 = make_float2(dd.z, dd.w);
                const uint32_t b0 = b[2 * q], b1 = b[2 * q + 1];
                float (&c)[4] = acc[nt + q];
                uint32_t d[4];
                if constexpr (kType == QuantType::q6_k) {
                    uint32_t h[4];
                    mma_k16(a[0], a[1], b0, d);
                    mma_k16(a[2], a[3], b1, h);
                    auto u = [&](uint32_t s0, uint32_t s1, const float4& e) {
                        return __fadd_rn(__fmaf_rn(e.x, __uint_as_float(s0), e.y), __fmaf_rn(e.z, __uint_as_float(s1), e.w));
                    };
                    c[0] = __fmaf_rn(d0.x, u(d[0], h[0], e0), c[0]);
                    c[2] = __fmaf_rn(d0.x, u(d[2], h[2], e1), c[2]);
                    if constexpr (!kSingle) {
                        c[1] = __fmaf_rn(d1.x, u(d[1], h[1], e0), c[1]);
                        c[3] = __fmaf_rn(d1.x, u(d[3], h[3], e1), c[3]);
                    }
                } else if constexpr (kType == QuantType::q4_k) {
                    mma_k32(a, b0, b1, d);
                    auto u = [&](uint32_t s, const float4& e, float sy) {
                        return __fmaf_rn(e.z, sy, __fmaf_rn(e.x, __uint_as_float(s), e.y));
                    };
                    c[0] = __fmaf_rn(d0.x, u(d[0], e0, d0.y), c[0]);
                    c[2] = __fmaf_rn(d0.x, u(d[2], e1, d0.y), c[2]);
                    if constexpr (!kSingle) {
                        c[1] = __fmaf_rn(d1.x, u(d[1], e0, d1.y), c[1]);
                        c[3] = __fmaf_rn(d1.x, u(d[3], e1, d1.y), c[3]);
                    }
                } else {
                    mma_k32(a, b0, b1, d);
                    auto u = [&](uint32_t s, const float4& e) { return __fmaf_rn(e.x, __uint_as_float(s), e.y); };
                    c[0] = __fmaf_rn(d0.x, u(d[0], e0), c[0]);
                    c[2] = __fmaf_rn(d0.x, u(d[2], e1), c[2]);
                    if constexpr (!kSingle) {
                        c[1] = __fmaf_rn(d1.x, u(d[1], e0), c[1]);
                        c[3] = __fmaf_rn(d1.x, u(d[3], e1), c[3]);
                    }
                }
            }
        }
    };
    if constexpr (kType == QuantType::q6_k) {
        const int o0 = r0 * rs + mis(r0), o1 = r1 * rs + mis(r1);
#pragma unroll(kUnrollHalves ? 2 : 1)
        for (int hh = 0; hh < 2; ++hh) {
            const int qh = 128 + 32 * hh + 4 * tig;
            const uint32_t h[4] = {ld_u32(sw, o0 + qh), ld_u32(sw, o1 + qh), ld_u32(sw, o0 + qh + 16), ld_u32(sw, o1 + qh + 16)};
            uint32_t held[4];
#pragma unroll
            for (int kp = 0; kp < 2; ++kp) {
                const int ql = 64 * hh + 32 * kp + 4 * tig;
                const uint32_t l[4] = {ld_u32(sw, o0 + ql), ld_u32(sw, o1 + ql), ld_u32(sw, o0 + ql + 16), ld_u32(sw, o1 + ql + 16)};
                uint32_t lo[4], hi[4];
#pragma unroll
                for (int i = 0; i < 4; ++i) {
                    lo[i] = __vsub4((l[i] & 0x0f0f0f0fu) | (((h[i] >> (2 * kp)) & 0x03030303u) << 4), 0x20202020u);
                    hi[i] = __vsub4(((l[i] >> 4) & 0x0f0f0f0fu) | (((h[i] >> (2 * kp + 4)) & 0x03030303u) << 4), 0x20202020u);
                }
                unit(4 * hh + kp, lo);
                if (kp == 0) {
#pragma unroll
                    for (int i = 0; i < 4; ++i) held[i] = hi[i];
                } else {
                    unit(4 * hh + 2, held);
                    unit(4 * hh + 3, hi);
                }
            }
        }
    } else if (kType == QuantType::q4_k && al16) {
        const std::byte* rowp = buf + (16 * warp + (lane & 15)) * rs + 16 + 16 * (lane >> 4);
#pragma unroll(kUnrollHalves ? 4 : 1)
        for (int p = 0; p < 4; ++p) {
            uint32_t x[4], a[4];
            ldmatrix_x4(rowp + 32 * p, x);
#pragma unroll
            for (int i = 0; i < 4; ++i) a[i] = x[i] & 0x0f0f0f0fu;
            unit(2 * p, a);
#pragma unroll
            for (int i = 0; i < 4; ++i) a[i] = (x[i] >> 4) & 0x0f0f0f0fu;
            unit(2 * p + 1, a);
        }
    } else {
        const int o0 = r0 * rs + mis(r0), o1 = r1 * rs + mis(r1);
        const int n_j = min(8, units_left);
#pragma unroll 2
        for (int j = 0; j < n_j; ++j) {
            uint32_t a[4];
            load_a<kType>(sw, o0, o1, j, tig, a);
            unit(j, a);
        }
    }
}

// The end of a tile: this lane's accumulators (rows r0 / r0 + 8 of warp warp, tokens 8 nt + 2 tig
// (+ 1)) stored, or, with several chains, written to shared memory (smem, whose stage buffers are
// idle now) and added across the cluster's blocks in chain order (kRowsB rows, kThreadsB threads).
template <int NT, bool kSingle, int kRowsB, int kThreadsB>
__device__ __forceinline__ void store_tile(const float (&acc)[NT][4], uint4* smem, float* __restrict__ y, int row0,
                                           int chain, int n_chains, int n_out, int n_tokens) {
    constexpr int kTp = 8 * NT;
    const int tid = threadIdx.x, lane = tid & 31, tig = lane & 3;
    const int r0 = 16 * (tid >> 5) + (lane >> 2), r1 = r0 + 8;
    if (n_chains == 1) {
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                if (kSingle && (i & 1)) continue;
                const int r = row0 + (i < 2 ? r0 : r1), t = 8 * nt + 2 * tig + (i & 1);
                if (r < n_out && t < n_tokens) y[(size_t)t * n_out + r] = acc[nt][i];
            }
        }
        return;
    }
    __syncthreads();
    float* part = reinterpret_cast<float*>(smem);
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
        for (int i = 0; i < 4; ++i) part[(i < 2 ? r0 : r1) * kTp + 8 * nt + 2 * tig + (i & 1)] = acc[nt][i];
    }
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 900
    __trap();
#else
    cg::cluster_group cluster = cg::this_cluster();
    const unsigned rank0 = cluster.block_rank() - (unsigned)chain;  // chain 0 of this tile (a cluster may hold several)
    cluster.sync();
    const int n_valid = min(kRowsB, n_out - row0);
    for (int idx = chain * kThreadsB + tid; idx < kRowsB * n_tokens; idx += n_chains * kThreadsB) {
        const int r = idx % kRowsB, t = idx / kRowsB;
        if (r >= n_valid) continue;
        float v = cluster.map_shared_rank(part, rank0)[r * kTp + t];
        for (int c = 1; c < n_chains; ++c) v = __fadd_rn(v, cluster.map_shared_rank(part, rank0 + c)[r * kTp + t]);
        y[(size_t)t * n_out + row0 + r] = v;
    }
    cluster.sync();
#endif
}

// ---- matmul_mma_lean_kernel: one buffer per stage (weights, quants, {d, sum}), kBufs of them.
__host__ __device__ constexpr int lean_stage_bytes(int super_bytes, int tp) {
    return kRows * row_stride_of(super_bytes) + tp * 256 + tp / 2 * kDsPairStride;  // weights, quants, {d, sum}
}

// kSingle: the one-token form of NT = 1 (only the accumulators of token 0 are computed).
template <QuantType kType, int NT, bool kSingle>
__global__ void __launch_bounds__(kThreads, 4) matmul_mma_lean_kernel(
    const MmaLaunch mats, int data_bytes, const int8_t* __restrict__ xq, const float2* __restrict__ xds, int n_in,
    int n_tokens) {
    constexpr int kTp = 8 * NT;  // token slots per stage buffer
    constexpr int kSuper = Mq<kType>::kSuperBytes;
    constexpr int kRs = row_stride_of(kSuper);
    constexpr int kChunks = (kSuper + 15 + 15) / 16;  // 16-byte chunks a row's super-unit can touch
    constexpr int kStage = lean_stage_bytes(kSuper, kTp);
    constexpr int kBufs = bufs_of(NT);
    extern __shared__ uint4 smem[];  // [kBufs][stage], then the scale tables [kWarps][16 rows][kSclStride] float4
    auto* sbytes = reinterpret_cast<std::byte*>(smem);

    const int tid = threadIdx.x, warp = tid >> 5;
    const MmaBlock mb = mma_block<kRows>(mats, xq, xds, n_in, n_tokens);
    const std::byte* const w = mb.w;
    const size_t row_bytes = mb.row_bytes;
    float* const y = mb.y;
    const int n_out = mb.n_out, n_chains = mb.n_chains, chain = mb.chain, row0 = mb.row0;
    const int n_units = n_in / 32, n_super = (n_units + 7) / 8;
    const int su0 = (int)((int64_t)chain * n_super / n_chains), su1 = (int)((int64_t)(chain + 1) * n_super / n_chains);
    const int n_stages = row0 < n_out ? su1 - su0 : 0;  // 0: a tile past the matrix's last (an idle block)
    float4* scl = reinterpret_cast<float4*>(sbytes + kBufs * kStage) + warp * 16 * kSclStride;  // this warp's rows
    // Rows and super-units 16-byte aligned (uniform): Q4_K fragments then load with ldmatrix.
    const bool al16 = ((reinterpret_cast<uintptr_t>(w) | row_bytes | (size_t)kSuper) & 15) == 0;

    // Rows past n_out read row n_out - 1 (valid memory) and are never stored.
    auto row_ptr = [&](int r) { return w + (size_t)min(row0 + r, n_out - 1) * row_bytes; };
    auto issue_weights = [&](int k) {  // stage k's weights: consecutive lanes copy consecutive chunks of a row
        if (k >= n_stages) return;
        const int sb = (su0 + k) * kSuper;
        const int bytes = min(kSuper, data_bytes - sb);
        std::byte* dst = sbytes + (k % kBufs) * kStage;
        constexpr int kSlots = (kRows * kChunks + kThreads - 1) / kThreads;
#pragma unroll 1
        for (int i = 0; i < kSlots; ++i) {
            const int idx = tid + kThreads * i;
            if (kRows * kChunks % kThreads != 0 && idx >= kRows * kChunks) break;
            const int r = idx / kChunks, v = idx - r * kChunks;
            const uintptr_t start = (uintptr_t)(row_ptr(r) + sb);
            const int nv = (int)(((start & 15) + bytes + 15) >> 4);
            if (v < nv) cp_async16(dst + r * kRs + 16 * v, reinterpret_cast<const void*>((start & ~(uintptr_t)15) + 16 * (uintptr_t)v));
        }
    };
    // Stage k's activations of the n_tokens tokens (the slots of tokens n_tokens .. kTp - 1 are
    // left as they are: their products land in outputs never stored).
    auto issue_acts = [&](int k) {
        if (k >= n_stages) return;
        const int u0 = (su0 + k) * 8;
        std::byte* dq = sbytes + (k % kBufs) * kStage + kRows * kRs;
        std::byte* dd = dq + kTp * 256;
        {  // quants: chunk c = tid % 16 (unit c / 2, half c % 2) of tokens tid / 16 + (kThreads / 16) i
            const int c = tid & 15;
            if (u0 + (c >> 1) < n_units) {
                const int8_t* src = xq + 32 * (size_t)u0 + 16 * c;
#pragma unroll
                for (int i = 0; i < kTp * 16 / kThreads; ++i) {
                    const int t = (tid >> 4) + (kThreads / 16) * i;
                    if (t < n_tokens) cp_async16_ca(dq + t * 256 + 16 * (c ^ (t & 7)), src + (size_t)t * n_in);
                }
            }
        }
        {  // {d, sum}: unit j = tid % 8 of tokens tid / 8 + (kThreads / 8) i
            const int j = tid & 7;
            if (u0 + j < n_units) {
#pragma unroll
                for (int i = 0; i < (kTp * 8 + kThreads - 1) / kThreads; ++i) {
                    const int t = (tid >> 3) + (kThreads / 8) * i;
                    if (t < n_tokens) cp_async8(dd + (t >> 1) * kDsPairStride + 16 * j + 8 * (t & 1), xds + (size_t)t * n_units + u0 + j);
                }
            }
        }
    };

#pragma unroll
    for (int k = 0; k < kBufs - 1; ++k) issue_weights(k);
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    // Launched as a programmatic dependent of the kernel that writes the activations: the first
    // weight stages are in flight; wait for it before copying activations (no-op otherwise).
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
    // Groups: 0 = the weights of stages 0 .. kBufs - 2 and the activations of stage 0; k = the
    // activations of stage k, for k < kBufs - 1; from then on one group per stage.
#pragma unroll
    for (int k = 0; k < kBufs - 1; ++k) {
        issue_acts(k);
        cp_async_commit();
    }

    float acc[NT][4];
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
        for (int i = 0; i < 4; ++i) acc[nt][i] = 0.0f;
    }
    for (int k = 0; k < n_stages; ++k) {
        cp_async_wait<kBufs - 2>();  // this thread's copies of stage k landed
        __syncthreads();             // everyone's did, and every warp is done with stage k - 1
        issue_weights(k + kBufs - 1);  // into the buffer of stage k - 1
        issue_acts(k + kBufs - 1);
        cp_async_commit();
        const std::byte* buf = sbytes + (k % kBufs) * kStage;
        const int sb = (su0 + k) * kSuper;
        auto mis = [&](int r) { return (int)((uintptr_t)(row_ptr(r) + sb) & 15); };
        mma_stage<kType, NT, kSingle, false>(buf, kRs, mis, buf + kRows * kRs, scl, al16,
                                            n_units - (su0 + k) * 8, acc);
    }
    cp_async_wait<0>();

    store_tile<NT, kSingle, kRows, kThreads>(acc, smem, y, row0, chain, n_chains, n_out, n_tokens);
}

// ---- matmul_mma_kernel: kRB rows, one warp per 16; kWB weight buffers (kWB - 1 stages in
// flight while one is computed: two up to 4 token tiles, then one, for shared memory) and two
// activation buffers (quants and {d, sum}, one stage in flight).
__host__ __device__ constexpr int wbufs_of(int nt) { return nt <= 4 ? 3 : 2; }
__host__ __device__ constexpr int act_bytes(int tp) { return tp * 256 + tp / 2 * kDsPairStride; }
// Row stride for rows whose super-units all start 16-byte aligned: an odd number of chunks.
__host__ __device__ constexpr int row_stride_al(int super_bytes) {
    return super_bytes % 16 != 0 ? row_stride_of(super_bytes)
                                 : (super_bytes / 16 % 2 == 1 ? super_bytes : super_bytes + 16);
}
// Weight buffers, activation buffers, scale tables.
__host__ __device__ constexpr size_t smem_bytes(int rb, int nt, int rs) {
    return (size_t)wbufs_of(nt) * rb * rs + 2 * (size_t)act_bytes(8 * nt) + (size_t)rb * kSclStride * 16;
}

// Registers for 3 blocks of 64 rows or 2 of 128 per SM (shared memory allows about as many).
template <QuantType kType, int NT, bool kSingle, int kRB>
__global__ void __launch_bounds__(2 * kRB, kRB == 64 ? 3 : 2) matmul_mma_kernel(
    const MmaLaunch mats, int data_bytes, const int8_t* __restrict__ xq, const float2* __restrict__ xds, int n_in,
    int n_tokens) {
    constexpr int kThr = 2 * kRB;                     // one warp per 16 rows
    constexpr int kTp = 8 * NT;
    constexpr int kSuper = Mq<kType>::kSuperBytes;
    constexpr int kChunks = (kSuper + 15 + 15) / 16;
    constexpr int kWB = wbufs_of(NT);
    constexpr int kAct = act_bytes(kTp);
    extern __shared__ uint4 smem[];
    auto* sbytes = reinterpret_cast<std::byte*>(smem);

    const int tid = threadIdx.x, warp = tid >> 5;
    const MmaBlock mb = mma_block<kRB>(mats, xq, xds, n_in, n_tokens);
    const std::byte* const w = mb.w;
    const size_t row_bytes = mb.row_bytes;
    float* const y = mb.y;
    const int n_out = mb.n_out, n_chains = mb.n_chains, chain = mb.chain, row0 = mb.row0;
    const int n_units = n_in / 32, n_super = (n_units + 7) / 8;
    const int su0 = (int)((int64_t)chain * n_super / n_chains), su1 = (int)((int64_t)(chain + 1) * n_super / n_chains);
    const int n_stages = row0 < n_out ? su1 - su0 : 0;  // 0: a tile past the matrix's last (an idle block)
    const bool al16 = ((reinterpret_cast<uintptr_t>(w) | row_bytes | (size_t)kSuper) & 15) == 0;
    const int rs = al16 ? row_stride_al(kSuper) : row_stride_of(kSuper);  // staged row stride
    std::byte* const wbase = sbytes;
    std::byte* const abase = sbytes + kWB * kRB * rs;
    float4* scl = reinterpret_cast<float4*>(abase + 2 * kAct) + warp * 16 * kSclStride;  // this warp's rows

    // Rows past n_out read row n_out - 1 (valid memory) and are never stored.
    auto row_ptr = [&](int r) { return w + (size_t)min(row0 + r, n_out - 1) * row_bytes; };
    auto issue_weights = [&](int k) {  // stage k's weights: consecutive lanes copy consecutive chunks of a row
        if (k >= n_stages) return;
        const int sb = (su0 + k) * kSuper;
        const int bytes = min(kSuper, data_bytes - sb);
        std::byte* dst = wbase + (k % kWB) * kRB * rs;
        for (int i = tid; i < kRB * kChunks; i += kThr) {
            const int r = i / kChunks, v = i - r * kChunks;
            const uintptr_t start = (uintptr_t)(row_ptr(r) + sb);
            const int nv = (int)(((start & 15) + bytes + 15) >> 4);
            if (v < nv) cp_async16(dst + r * rs + 16 * v, reinterpret_cast<const void*>((start & ~(uintptr_t)15) + 16 * (uintptr_t)v));
        }
    };
    auto issue_acts = [&](int k) {
        if (k >= n_stages) return;
        const int u0 = (su0 + k) * 8;
        std::byte* dq = abase + (k & 1) * kAct;
        std::byte* dd = dq + kTp * 256;
        {  // quants: chunk c = tid % 16 (unit c / 2, half c % 2) of tokens tid / 16 + (kThr / 16) i
            const int c = tid & 15;
            if (u0 + (c >> 1) < n_units) {
                const int8_t* src = xq + 32 * (size_t)u0 + 16 * c;
                for (int t = tid >> 4; t < n_tokens; t += kThr / 16)
                    cp_async16_ca(dq + t * 256 + 16 * (c ^ (t & 7)), src + (size_t)t * n_in);
            }
        }
        {  // {d, sum}: unit j = tid % 8 of tokens tid / 8 + (kThr / 8) i
            const int j = tid & 7;
            if (u0 + j < n_units) {
                for (int t = tid >> 3; t < n_tokens; t += kThr / 8)
                    cp_async8(dd + (t >> 1) * kDsPairStride + 16 * j + 8 * (t & 1), xds + (size_t)t * n_units + u0 + j);
            }
        }
    };

    // Groups: the prologue's (weights of stages 0 .. kWB - 2, activations of stage 0), kWB - 2
    // empty ones; then per stage k: activations of k + 1, then weights of k + kWB - 1. At the top
    // of stage k all but the newest kWB - 2 groups have landed: activations k and weights k.
#pragma unroll
    for (int k = 0; k < kWB - 1; ++k) issue_weights(k);
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
    issue_acts(0);
    cp_async_commit();
#pragma unroll
    for (int k = 0; k < kWB - 2; ++k) cp_async_commit();

    float acc[NT][4];
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
        for (int i = 0; i < 4; ++i) acc[nt][i] = 0.0f;
    }
    for (int k = 0; k < n_stages; ++k) {
        cp_async_wait<kWB - 2>();
        __syncthreads();
        issue_acts(k + 1);
        cp_async_commit();
        issue_weights(k + kWB - 1);
        cp_async_commit();
        const std::byte* buf = wbase + (k % kWB) * kRB * rs;
        const std::byte* act = abase + (k & 1) * kAct;
        const int sb = (su0 + k) * kSuper;
        auto mis = [&](int r) { return (int)((uintptr_t)(row_ptr(r) + sb) & 15); };
        mma_stage<kType, NT, kSingle, true>(buf, rs, mis, act, scl, al16, n_units - (su0 + k) * 8, acc);
    }
    cp_async_wait<0>();

    store_tile<NT, kSingle, kRB, kThr>(acc, smem, y, row0, chain, n_chains, n_out, n_tokens);
}

// The launch table of `segs` over tiles of `rows` rows: each matrix gets whole clusters of
// `cluster` blocks (the largest n_chains), cluster / n_chains tiles per cluster, `copies` times
// over (expert groups: once per item). Returns the number of blocks.
int64_t plan_launch(const MmaSeg* segs, int n_segs, int rows, int cluster, MmaLaunch& a, int64_t copies = 1) {
    int64_t blocks = 0;
    for (int i = 0; i < kMmaMaxSegs; ++i) {
        const MmaSeg& g = segs[i < n_segs ? i : n_segs - 1];
        a.w[i] = g.w, a.row_bytes[i] = g.row_bytes, a.y[i] = g.y, a.n_out[i] = g.n_out, a.n_chains[i] = g.n_chains;
        a.block_begin[i] = i < n_segs ? (int)blocks : INT_MAX;
        if (i >= n_segs) continue;
        const int64_t tiles = (g.n_out + rows - 1) / rows, per_cluster = cluster / g.n_chains;
        blocks += copies * ((tiles + per_cluster - 1) / per_cluster * cluster);
    }
    return blocks;
}

// Whether every matrix's rows and super-units start 16-byte aligned (the kernels then stage rows
// at row_stride_al; shared memory is sized for the widest stride of the launch).
bool segs_aligned16(const MmaSeg* segs, int n_segs, int super_bytes) {
    bool al16 = (super_bytes & 15) == 0;
    for (int i = 0; i < n_segs; ++i) al16 = al16 && ((reinterpret_cast<uintptr_t>(segs[i].w) | segs[i].row_bytes) & 15) == 0;
    return al16;
}

// Launches `kernel` over `blocks` blocks of the launch table `mats`.
template <typename Kernel>
cudaError_t launch_planned(Kernel kernel, int threads, size_t smem, const MmaLaunch& mats, int64_t blocks, int cluster,
                           int data_bytes, ActQ8 act, int n_in, int n_tokens, bool pdl, cudaStream_t s) {
    if (smem > 48 * 1024) {
        const cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
        if (err != cudaSuccess) return err;
    }
    if (blocks < 1 || blocks >= INT_MAX) return cudaErrorInvalidValue;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3((unsigned)blocks);
    cfg.blockDim = dim3((unsigned)threads);
    cfg.dynamicSmemBytes = smem;
    cfg.stream = s;
    cudaLaunchAttribute attr[2];
    int n_attr = 0;
    if (cluster > 1) {
        attr[n_attr].id = cudaLaunchAttributeClusterDimension;
        attr[n_attr].val.clusterDim.x = (unsigned)cluster;
        attr[n_attr].val.clusterDim.y = 1;
        attr[n_attr].val.clusterDim.z = 1;
        ++n_attr;
    }
    if (pdl) {
        attr[n_attr].id = cudaLaunchAttributeProgrammaticStreamSerialization;
        attr[n_attr].val.programmaticStreamSerializationAllowed = 1;
        ++n_attr;
    }
    cfg.attrs = attr;
    cfg.numAttrs = n_attr;
    return cudaLaunchKernelEx(&cfg, kernel, mats, data_bytes, act.qs, act.ds, n_in, n_tokens);
}

// Launches `kernel` over the tiles of `segs` of `rows` rows each.
template <typename Kernel>
cudaError_t launch_kernel(Kernel kernel, int rows, int threads, size_t smem, const MmaSeg* segs, int n_segs,
                          int cluster, int data_bytes, ActQ8 act, int n_in, int n_tokens, bool pdl, cudaStream_t s) {
    MmaLaunch mats;
    const int64_t blocks = plan_launch(segs, n_segs, rows, cluster, mats);
    return launch_planned(kernel, threads, smem, mats, blocks, cluster, data_bytes, act, n_in, n_tokens, pdl, s);
}

// The device's SM count and shared memory per SM (bytes).
int device_attribute(cudaDeviceAttr attr, int fallback) {
    int dev = 0, n = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&n, attr, dev) != cudaSuccess) return fallback;
    return n;
}

// Blocks of `kernel` that fit on an SM at once (registers and shared memory), asked once and
// kept in `cached` (-1: not asked yet).
template <typename Kernel>
int blocks_per_sm(Kernel kernel, int threads, size_t smem, std::atomic<int>& cached) {
    int n = cached.load(std::memory_order_relaxed);
    if (n >= 0) return n;
    if (smem > 48 * 1024 &&
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem) != cudaSuccess)
        return 0;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kernel, threads, smem) != cudaSuccess) return 0;
    cached.store(n, std::memory_order_relaxed);
    return n;
}

// The kernel for one launch and token count; which one runs changes the speed only (each output
// is summed the same way). matmul_mma_kernel with 64-row blocks where its grid fits on the device
// at once. Past that, where two of its 128-row blocks fit in an SM's shared memory (rows staged
// at 144 bytes: Q4_K, Q4_0): those from 5 token tiles on, and the lean kernel up to 4 (H100,
// 14336 x 4096: 128-row blocks 61.3 against 81.5 us at 64 tokens, 41.0 against 38.1 at 32).
// Otherwise (Q6_K, Q8_0 rows) 64-row blocks in several waves (Q6_K 128256 x 4096 at 32 tokens:
// 314.9 us against 334.9 for the lean kernel).
template <QuantType kType, int NT, bool kSingle>
cudaError_t launch_nt(const MmaSeg* segs, int n_segs, ActQ8 act, int n_in, int n_tokens, bool pdl, cudaStream_t s) {
    constexpr int kSuper = Mq<kType>::kSuperBytes;
    const int data_bytes = (int)quant::row_size(kType, n_in);
    int cluster = 1;
    for (int i = 0; i < n_segs; ++i) cluster = std::max(cluster, segs[i].n_chains);
    const bool al16 = segs_aligned16(segs, n_segs, kSuper);
    const int rs = al16 ? row_stride_al(kSuper) : row_stride_of(kSuper);
    const size_t smem64 = smem_bytes(64, NT, rs), smem128 = smem_bytes(128, NT, rs);
    auto kernel64 = matmul_mma_kernel<kType, NT, kSingle, 64>;
    static std::atomic<int> fit64[2] = {-1, -1};  // per row stride (al16)
    MmaLaunch plan;
    const int64_t blocks64 = plan_launch(segs, n_segs, 64, cluster, plan);
    const int64_t at_once64 = (int64_t)device_attribute(cudaDevAttrMultiProcessorCount, 132) *
                              blocks_per_sm(kernel64, 128, smem64, fit64[al16]);
    constexpr size_t kReserved = 1024;  // shared memory the runtime keeps per block
    const size_t smem_sm = (size_t)device_attribute(cudaDevAttrMaxSharedMemoryPerMultiprocessor, 228 * 1024);
    if (blocks64 > at_once64 && 2 * (smem128 + kReserved) <= smem_sm) {
        if constexpr (NT >= 5) {
            return launch_kernel(matmul_mma_kernel<kType, NT, kSingle, 128>, 128, 256, smem128, segs, n_segs, cluster,
                                 data_bytes, act, n_in, n_tokens, pdl, s);
        } else {
            const size_t smem = (size_t)bufs_of(NT) * lean_stage_bytes(kSuper, 8 * NT) + kRows * kSclStride * sizeof(float4);
            return launch_kernel(matmul_mma_lean_kernel<kType, NT, kSingle>, kRows, kThreads, smem, segs, n_segs,
                                 cluster, data_bytes, act, n_in, n_tokens, pdl, s);
        }
    }
    return launch_kernel(kernel64, 64, 128, smem64, segs, n_segs, cluster, data_bytes, act, n_in, n_tokens, pdl, s);
}

// Expert groups: the 64-row kernel (its grids are large: items x tiles), one chain per tile,
// after the work before it (the item table is uploaded by the stream, not written by a kernel).
template <QuantType kType, int NT>
cudaError_t launch_experts_nt(const MmaSeg* segs, int n_segs, const int4* items, int n_items, ActQ8 act, int n_in,
                              cudaStream_t s) {
    constexpr int kSuper = Mq<kType>::kSuperBytes;
    const int rs = segs_aligned16(segs, n_segs, kSuper) ? row_stride_al(kSuper) : row_stride_of(kSuper);
    MmaLaunch mats;
    const int64_t blocks = plan_launch(segs, n_segs, 64, 1, mats, n_items);  // n_chains 1 (matmul_q8_mma_experts)
    mats.items = items;
    return launch_planned(matmul_mma_kernel<kType, NT, false, 64>, 128, smem_bytes(64, NT, rs), mats, blocks, 1,
                          (int)quant::row_size(kType, n_in), act, n_in, 8 * NT, /*pdl=*/false, s);
}

template <QuantType kType>
cudaError_t launch_experts(const MmaSeg* segs, int n_segs, const int4* items, int n_items, int max_rows, ActQ8 act,
                           int n_in, cudaStream_t s) {
    switch ((max_rows + 7) / 8) {
        case 1: return launch_experts_nt<kType, 1>(segs, n_segs, items, n_items, act, n_in, s);
        case 2: return launch_experts_nt<kType, 2>(segs, n_segs, items, n_items, act, n_in, s);
        case 3: return launch_experts_nt<kType, 3>(segs, n_segs, items, n_items, act, n_in, s);
        case 4: return launch_experts_nt<kType, 4>(segs, n_segs, items, n_items, act, n_in, s);
        case 5: return launch_experts_nt<kType, 5>(segs, n_segs, items, n_items, act, n_in, s);
        case 6: return launch_experts_nt<kType, 6>(segs, n_segs, items, n_items, act, n_in, s);
        case 7: return launch_experts_nt<kType, 7>(segs, n_segs, items, n_items, act, n_in, s);
        case 8: return launch_experts_nt<kType, 8>(segs, n_segs, items, n_items, act, n_in, s);
        default: return cudaErrorInvalidValue;
    }
}

template <QuantType kType>
cudaError_t launch_type(const MmaSeg* segs, int n_segs, ActQ8 act, int n_in, int n_tokens, bool pdl, cudaStream_t s) {
    if (n_tokens == 1) return launch_nt<kType, 1, true>(segs, n_segs, act, n_in, n_tokens, pdl, s);
    switch ((n_tokens + 7) / 8) {
        case 1: return launch_nt<kType, 1, false>(segs, n_segs, act, n_in, n_tokens, pdl, s);
        case 2: return launch_nt<kType, 2, false>(segs, n_segs, act, n_in, n_tokens, pdl, s);
        case 3: return launch_nt<kType, 3, false>(segs, n_segs, act, n_in, n_tokens, pdl, s);
        case 4: return launch_nt<kType, 4, false>(segs, n_segs, act, n_in, n_tokens, pdl, s);
        case 5: return launch_nt<kType, 5, false>(segs, n_segs, act, n_in, n_tokens, pdl, s);
        case 6: return launch_nt<kType, 6, false>(segs, n_segs, act, n_in, n_tokens, pdl, s);
        case 7: return launch_nt<kType, 7, false>(segs, n_segs, act, n_in, n_tokens, pdl, s);
        case 8: return launch_nt<kType, 8, false>(segs, n_segs, act, n_in, n_tokens, pdl, s);
        default: return cudaErrorInvalidValue;
    }
}

}  // namespace

bool has_mma(QuantType type) {
    return type == QuantType::q8_0 || type == QuantType::q4_0 || type == QuantType::q4_k || type == QuantType::q6_k;
}

int mma_chains(int64_t n_in, int64_t n_out) {
    const int64_t n_super = (n_in / 32 + 7) / 8, tiles = (n_out + kRows - 1) / kRows;
    int n_chains = 1;
    while (n_chains < kMaxChains && 2 * n_chains <= n_super && tiles * n_chains < kMinBlocks) n_chains *= 2;
    return n_chains;
}

cudaError_t matmul_q8_mma(QuantType type, const std::byte* w, size_t row_bytes, ActQ8 act, float* y, int n_in,
                          int n_out, int n_tokens, bool clusters, bool pdl, cudaStream_t s) {
    const MmaSeg seg{w, row_bytes, y, n_out, clusters ? mma_chains(n_in, n_out) : 1};
    return matmul_q8_mma_grouped(type, &seg, 1, act, n_in, n_tokens, pdl, s);
}

cudaError_t matmul_q8_mma_grouped(QuantType type, const MmaSeg* segs, int n_segs, ActQ8 act, int n_in, int n_tokens,
                                  bool pdl, cudaStream_t s) {
    if (n_tokens < 1 || n_tokens > kMmaMaxTokens || n_segs < 1 || n_segs > kMmaMaxSegs) return cudaErrorInvalidValue;
    const int n_super = (n_in / 32 + 7) / 8;
    for (int i = 0; i < n_segs; ++i) {
        const int c = segs[i].n_chains;
        if (segs[i].n_out < 1 || c < 1 || c > kMaxChains || (c & (c - 1)) != 0 || (c > 1 && c > n_super))
            return cudaErrorInvalidValue;
    }
    switch (type) {
        case QuantType::q8_0: return launch_type<QuantType::q8_0>(segs, n_segs, act, n_in, n_tokens, pdl, s);
        case QuantType::q4_0: return launch_type<QuantType::q4_0>(segs, n_segs, act, n_in, n_tokens, pdl, s);
        case QuantType::q4_k: return launch_type<QuantType::q4_k>(segs, n_segs, act, n_in, n_tokens, pdl, s);
        case QuantType::q6_k: return launch_type<QuantType::q6_k>(segs, n_segs, act, n_in, n_tokens, pdl, s);
        default: return cudaErrorInvalidValue;
    }
}

cudaError_t matmul_q8_mma_experts(QuantType type, const MmaSeg* segs, int n_segs, const int4* items, int n_items,
                                  int max_rows, ActQ8 act, int n_in, cudaStream_t s) {
    if (n_segs < 1 || n_segs > kMmaMaxSegs || items == nullptr || n_items < 1 || max_rows < 1 ||
        max_rows > kMmaMaxTokens || (reinterpret_cast<uintptr_t>(items) & 15) != 0)
        return cudaErrorInvalidValue;
    for (int i = 0; i < n_segs; ++i)
        if (segs[i].n_out < 1 || segs[i].n_chains != 1) return cudaErrorInvalidValue;
    switch (type) {
        case QuantType::q8_0: return launch_experts<QuantType::q8_0>(segs, n_segs, items, n_items, max_rows, act, n_in, s);
        case QuantType::q4_0: return launch_experts<QuantType::q4_0>(segs, n_segs, items, n_items, max_rows, act, n_in, s);
        case QuantType::q4_k: return launch_experts<QuantType::q4_k>(segs, n_segs, items, n_items, max_rows, act, n_in, s);
        case QuantType::q6_k: return launch_experts<QuantType::q6_k>(segs, n_segs, items, n_items, max_rows, act, n_in, s);
        default: return cudaErrorInvalidValue;
    }
}

}  // namespace hearth::backend::cuda_kernels
