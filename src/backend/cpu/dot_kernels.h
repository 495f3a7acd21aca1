// SIMD dot-product kernels of the CPU matmul, one table per SimdLevel (cpu_features.h).
//
// A tile kernel computes R x C dot products at once: R weight rows against C activation rows
// (already converted to the weight type's vec_dot_type), so each weight block is decoded once
// and reused for C tokens while it sits in registers. Every output is bit-identical to the
// quant/ reference vec_dot of that pair (quant::traits(type).vec_dot): the kernels keep the
// reference's per-output float summation order (ggml's x86 order, quant/lanes.h) and only
// compute the exact integer partial sums faster.
//
// Inputs: weight blocks may hold any bytes (finite scales). Activation quants must lie in
// [-127, 127], as every activation quantizer writes them: the avx2 Q8_0 and IQ4_NL kernels and
// the IQ4_XS kernels of both levels multiply |x| by y with x's sign (ggml's trick), which
// overflows for y = -128; the others are exact for every int8.
//
// Three kernel forms per type, chosen by matmul_cpu: `column` (and its 2- and 4-token forms) for
// single tokens, small decode batches and leftover tokens, `tile` for prompt batches, and where a type has it the `packed` form (activations of
// 8 tokens interleaved once per matmul so that token t sits in SIMD lane t), which replaces the
// tile for batches of 8 or more tokens. Types with kernels: F32, F16, BF16, Q8_0, Q4_0, Q4_1,
// Q5_0, Q5_1, IQ4_NL, MXFP4, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_XS. Packed forms at both levels:
// Q4_0, Q4_K, Q2_K; at avx512 only (they need vpdpbusd to beat the tile): Q8_0, IQ4_NL, MXFP4,
// Q5_0, Q4_1, Q5_1. A prepared-weights companion of the packed form: Q8_0 at avx512.
#pragma once

#include <cstddef>
#include <cstdint>

#include "backend/cpu/cpu_features.h"
#include "quant/types.h"

namespace hearth::backend {

// out[r * C + c] = vec_dot(w[r], x[c], n) for r < R, c < C. w: R weight-row pointers, x: C
// activation-row pointers (rows may repeat: callers pad a partial tile with copies).
using DotTileFn = void (*)(const std::byte* const* w, const std::byte* const* x, int64_t n, float* out);

// Prompt form with tokens in SIMD lanes: kPackTokens activation rows interleaved by
// DotKernels::pack (once per matmul), so one vector instruction serves the same weight bytes
// for 8 tokens and no horizontal sums are needed. out[r * kPackTokens + t] = vec_dot(w[r], x[t]).
constexpr int kPackTokens = 8;
using PackActivationsFn = void (*)(const std::byte* const* x, int64_t n, std::byte* dst);
using DotPackedFn = void (*)(const std::byte* const* w, const std::byte* packed, int64_t n, float* out);

// Optional companion of the packed form with the weights prepared once per matmul: prepare_weights
// writes, for packed_rows weight rows (row pointers as `packed` takes them; a partial band repeats
// its last row), [n / block_size] blocks of prepared_block_bytes; packed_prepared(prepared, packed,
// n, out) then gives exactly the outputs of packed(w, packed, n, out). It moves out of the token
// loop the per-row work that `packed` repeats for every group of kPackTokens tokens (decoding the
// codes and scales). matmul_cpu uses it for prompt batches of >= 32 tokens.
using PrepareWeightsFn = void (*)(const std::byte* const* w, int64_t n, std::byte* dst);
using DotPreparedFn = void (*)(const std::byte* prepared, const std::byte* packed, int64_t n, float* out);

struct DotKernels {
    DotTileFn tile = nullptr;  // rows x cols: prompt batches
    int rows = 0, cols = 0;
    DotTileFn column = nullptr;  // column_rows x 1: single tokens and the leftover tokens
    int column_rows = 0;
    // column_rows x 4 and x 2: batched decode steps of 2..7 tokens (and a tile's leftovers), so
    // that a weight block is decoded once for several tokens. Optional; the same bits as `column`.
    DotTileFn column4 = nullptr, column2 = nullptr;
    // Optional activation converter (f32 row -> vec_dot_type row), bit-identical to the one
    // matmul_ref uses (backend/ref/matmul.h: quantize_activation_row); null: use that one.
    void (*quantize)(const float* x, std::byte* dst, int64_t n) = nullptr;
    // Optional packed prompt form (kPackTokens tokens at a time); preferred over `tile` when set.
    PackActivationsFn pack = nullptr;
    size_t packed_block_bytes = 0;  // bytes of packed activations per weight block (kPackTokens tokens)
    DotPackedFn packed = nullptr;
    int packed_rows = 0;
    // Optional prepared-weights form of `packed` (same rows, same packed activations).
    PrepareWeightsFn prepare_weights = nullptr;
    size_t prepared_block_bytes = 0;  // bytes of prepared weights per block (packed_rows rows)
    DotPreparedFn packed_prepared = nullptr;
};

constexpr int kMaxTileRows = 8, kMaxTileCols = 8;

// Q8_K activations of kPackTokens tokens, one super-block (256 elements of each token).
struct PackedQ8_Kx8 {
    float d[kPackTokens];               // [token] scale
    float bsum32[8][kPackTokens];       // [sub-block of 32][token] sum of its quants (exact in f32)
    int8_t qs[64][kPackTokens][4];      // [group of 4 elements][token][4] quants
};
static_assert(sizeof(PackedQ8_Kx8) == 2336);
// x: kPackTokens Q8_K rows of n elements; dst: [n / 256] PackedQ8_Kx8.
void pack_q8_k_x8(const std::byte* const* x, int64_t n, std::byte* dst);

// Q8_K activations of kPackTokens tokens with sums of 16 (Q2_K's sub-blocks), one super-block.
struct PackedQ8_K16x8 {
    float d[kPackTokens];                 // [token] scale
    int16_t bsum16[8][kPackTokens][2];    // [pair of sub-blocks of 16][token][2] Q8_K bsums (pmaddwd pairs)
    int8_t qs[64][kPackTokens][4];        // [group of 4 elements][token][4] quants
};
static_assert(sizeof(PackedQ8_K16x8) == 2336);
// x: kPackTokens Q8_K rows of n elements; dst: [n / 256] PackedQ8_K16x8.
void pack_q8_k16_x8(const std::byte* const* x, int64_t n, std::byte* dst);

// Q8_0 activations of kPackTokens tokens, one block (32 elements of each token).
struct PackedQ8_0x8 {
    float d[kPackTokens];            // [token] scale (the fp16 scale widened, exact)
    int32_t neg8sum[kPackTokens];    // [token] -8 * sum of the 32 quants (Q4_0's code offset)
    int8_t qs[8][kPackTokens][4];    // [group of 4 elements][token][4] quants
};
static_assert(sizeof(PackedQ8_0x8) == 320);
// x: kPackTokens Q8_0 rows of n elements; dst: [n / 32] PackedQ8_0x8.
void pack_q8_0_x8(const std::byte* const* x, int64_t n, std::byte* dst);

// Q8_0 or Q8_1 activations of kPackTokens tokens, one block, for the packed kernels that keep
// Q8_0's 8 float lanes per output (Q5_0, Q4_1, Q5_1): group k of 4 elements feeds lane k.
struct PackedQ8Lanesx8 {
    float d[kPackTokens];              // [token] scale (fp16 widened, exact)
    float s[kPackTokens];              // [token] Q8_1's s (fp16 widened); 0 for Q8_0 rows
    int32_t gsum[8][kPackTokens];      // [group of 4 elements][token] sum of its 4 quants
    int8_t qs[8][kPackTokens][4];      // [group of 4 elements][token][4] quants
};
static_assert(sizeof(PackedQ8Lanesx8) == 576);
// x: kPackTokens Q8_0 (pack_q8_0_lanes_x8) or Q8_1 (pack_q8_1_lanes_x8) rows of n elements;
// dst: [n / 32] PackedQ8Lanesx8.
void pack_q8_0_lanes_x8(const std::byte* const* x, int64_t n, std::byte* dst);
void pack_q8_1_lanes_x8(const std::byte* const* x, int64_t n, std::byte* dst);

// Q8_0 activations of kPackTokens tokens, one block, for Q8_0's packed kernel (avx512,
// dot_q8_0_pairs_x8): the 8 quants of a pair p of groups (elements 8p..8p+7, reference lanes 2p
// and 2p+1) of token t form one 64-bit lane, so a 64-bit broadcast of the weight row's same 8
// bytes feeds both lanes of 8 tokens in one 512-bit vpdpbusd. Packed per SIMD level by the
// table's own pack function (dot_kernels_x86_quantize.h: pack_q8_0_pairs_x8).
struct PackedQ8_0Pairsx8 {
    float d[kPackTokens][2];                  // [token][2] scale (fp16 widened, exact), twice
    int32_t neg128gsum[4][kPackTokens][2];    // [pair][token][group of the pair] -128 * sum of its 4 quants
    int8_t qs[4][kPackTokens][8];             // [pair][token][8] quants 8p..8p+7
};
static_assert(sizeof(PackedQ8_0Pairsx8) == 576);

// Q8_0 weights of 4 rows prepared for the prepared form of dot_q8_0_pairs_x8, one block.
struct PreparedQ8_0x4 {
    float d[4];            // [row] scale (fp16 widened, exact)
    uint8_t codes[4][32];  // [row][element] q ^ 0x80 (= q + 128 as an unsigned byte)
};
static_assert(sizeof(PreparedQ8_0x4) == 144);

// Kernels of weight type `type` at `level` for rows of n elements; nullptr where that level has
// none (the caller then uses the reference vec_dot). Levels the CPU lacks must not be asked for.
const DotKernels* find_dot_kernels(SimdLevel level, quant::QuantType type, int64_t n);

// Per-level tables (dot_kernels_avx2.cpp, dot_kernels_avx512.cpp); nullptr on other targets.
const DotKernels* dot_kernels_avx2(quant::QuantType type, int64_t n);
const DotKernels* dot_kernels_avx512(quant::QuantType type, int64_t n);

}  // namespace hearth::backend
