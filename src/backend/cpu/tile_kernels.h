// AMX tile kernels of the CPU matmul (tile_kernels_amx.cpp, tile_kernels_lanes_amx.cpp,
// tile_kernels_q4_0_amx.cpp, compiled with AMX target flags; call only after
// amx_int8_available(), amx.h). Internal to backend/cpu; amx.cpp drives them.
//
// Shape of the work: a 16 x 16 block of outputs (16 weight rows x 16 tokens) at a time. TDPBUSD
// multiplies unsigned bytes (A tile, 16 rows x K bytes) with signed bytes (B tile, K/4 rows of
// 16 tokens x 4 bytes) into int32 (C tile, 16 x 16), exactly. The weights are the unsigned side
// (their 4-bit codes), the Q8_K activation quants the signed side, so C[row][token] is the exact
// integer dot product code . q8 over the K elements.
//
// Q4_K (quant::vec_dot_q4_k) needs, per row, token and 32-element sub-block, exactly that integer
// sum: the reference combines the sums of each pair of sub-blocks with the 6-bit scales in
// integers and only then does float arithmetic, once per pair. So one TDPBUSD with K = 32 per
// sub-block gives the reference's integers, and the float steps run in AVX-512 over the 16
// tokens of a C tile row, one for one as the reference does them.
//
// Q6_K (quant::vec_dot_q6_k) keeps 8 float accumulators ("lanes") per output; per super-block,
// lane l takes one exact int32: the sum over the 32 elements e with (e % 32) / 4 == l of
// scale(e) * code(e) * q8(e), minus a bsum correction. The scale changes every 16 elements, so it
// is folded into the weights: v = scale * code (|v| <= 8064) is split into signed digits
// v = 128 * hi + lo (hi in [-63, 62], lo in [0, 127]), one A tile each, and TDPBSSD with K = 32
// (the lane's elements: 4 from each 32-element chunk, which in B-tile order is every 8th row)
// gives 128 * C_hi + C_lo = the lane's sum, exactly, in int32 as the reference forms it.
//
// Q5_K has Q6_K's lane structure with unsigned codes and a separate float sum of the mins per
// super-block (from exact int32 sums). Q3_K's lanes take (scale - 32) * code, which fits one
// unsigned byte after adding 124, so one TDPBUSD per lane. Q2_K is like Q4_K with groups of 8
// sub-blocks of 16 (half a super-block): scale * code fits a byte, so one C tile accumulates the
// whole half's integer sum. Q4_0 (quant::vec_dot_q4_0, Q8_0 activations) adds one exact int32 per
// 32-element block into one float accumulator: its codes are stored as code - 8 (a signed byte),
// so one TDPBSSD with K = 32 gives a block's sums, and the float step follows per block
// (tile_kernels_q4_0_amx.cpp). Q8_0 and the other 32-element block types add floats per 4
// elements (quant/lanes.h lane_dot32), which leaves nothing for a tile to sum.
#pragma once

#include <cstddef>
#include <cstdint>

namespace hearth::backend {

constexpr int kAmxRows = 16, kAmxTokens = 16;

// Q8_K activations of 16 tokens, one super-block (256 elements of each), in B-tile order.
struct alignas(64) AmxQ8_Kx16 {
    int8_t qs[64][kAmxTokens][4];  // [group of 4 elements][token][4] quants; the B tile of
                                   // sub-block j is rows 8j .. 8j+7 (64 bytes each)
    float d[kAmxTokens];           // [token] scale
    float bsum32[8][kAmxTokens];   // [sub-block][token] sum of its 32 quants (exact in f32)
    int32_t bsum16_pair[8][kAmxTokens];  // [l][token] Q8_K bsums 2l (low int16) and 2l + 1 (high)
    int32_t bsum32_pair[4][kAmxTokens];  // [q][token] sums of sub-blocks 2q (low int16), 2q + 1 (high)
    int32_t lane_sum[8][kAmxTokens];     // [l][token] sum of the 32 quants of lane l (quant/lanes.h k_lane)
};
static_assert(sizeof(AmxQ8_Kx16) == 5952);

// Q4_K weights of 16 rows, one super-block, in A-tile order.
struct alignas(64) AmxQ4_Kx16 {
    uint8_t codes[kAmxRows][256];  // [row][element] 4-bit codes; the A tile of sub-block j is
                                   // columns 32j .. 32j+31 of the 16 rows (row stride 256)
    float scale[kAmxRows][8];      // [row][sub-block] 6-bit scale, as float
    float min[kAmxRows][8];        // [row][sub-block] 6-bit min, as float
    float d[kAmxRows], dmin[kAmxRows];  // [row] fp16 d and dmin, widened
};
static_assert(sizeof(AmxQ4_Kx16) == 5248);

// Q6_K weights of 16 rows, one super-block, in A-tile order by lane.
struct alignas(64) AmxQ6_Kx16 {
    int8_t hi[8][kAmxRows][32];  // [lane][row][4c + i] high digit of scale * code of element
    int8_t lo[8][kAmxRows][32];  // 32c + 4 lane + i (c: 32-element chunk), low digit (0..127)
    int32_t nsc_pair[kAmxRows][8];  // [row][l] -32 * scales 2l (low int16) and 2l + 1 (high)
    float d[kAmxRows];           // [row] fp16 d, widened
};
static_assert(sizeof(AmxQ6_Kx16) == 8768);

// Q5_K weights of 16 rows, one super-block, in A-tile order by lane (as Q6_K, unsigned digits).
struct alignas(64) AmxQ5_Kx16 {
    uint8_t hi[8][kAmxRows][32];    // [lane][row][4c + i] scale * code of element 32c + 4 lane + i,
    uint8_t lo[8][kAmxRows][32];    // as 128 * hi + lo (hi 0..15, lo 0..127)
    int32_t min_pair[kAmxRows][4];  // [row][q] 6-bit mins of sub-blocks 2q (low int16), 2q + 1 (high)
    float d[kAmxRows], dmin[kAmxRows];  // [row] fp16 d and dmin, widened
};
static_assert(sizeof(AmxQ5_Kx16) == 8576);

// Q3_K weights of 16 rows, one super-block, in A-tile order by lane: (scale - 32) * code lies in
// [-124, 128], stored as that + 124 (0..252, one unsigned byte); the kernel subtracts 124 times
// the lane's quant sum.
struct alignas(64) AmxQ3_Kx16 {
    uint8_t a[8][kAmxRows][32];  // [lane][row][4c + i] (scale - 32) * code + 124 of element 32c + 4 lane + i
    float d[kAmxRows];           // [row] fp16 d, widened
};
static_assert(sizeof(AmxQ3_Kx16) == 4160);

// Q2_K weights of 16 rows, one super-block, in A-tile order (elements in their own order).
struct alignas(64) AmxQ2_Kx16 {
    uint8_t a[kAmxRows][256];       // [row][element] 4-bit scale * 2-bit code (<= 45); the A tile of
                                    // elements 32k .. 32k+31 is columns 32k .. of the 16 rows
    int32_t min_pair[kAmxRows][8];  // [row][q] 4-bit mins of sub-blocks 2q (low int16), 2q + 1 (high)
    float d[kAmxRows], dmin[kAmxRows];  // [row] fp16 d and dmin, widened
};
static_assert(sizeof(AmxQ2_Kx16) == 4736);

// Q8_0 activations of 16 tokens, one block (32 elements of each), in B-tile order.
struct alignas(64) AmxQ8_0x16 {
    int8_t qs[8][kAmxTokens][4];  // [group of 4 elements][token][4] quants: the B tile (8 rows of 64 bytes)
    float d[kAmxTokens];          // [token] fp16 d, widened
};
static_assert(sizeof(AmxQ8_0x16) == 576);

// Q4_0 weights of 16 rows, one block, in A-tile order.
struct alignas(64) AmxQ4_0x16 {
    int8_t q[kAmxRows][32];  // [row][element] code - 8 (-8..7): the A tile (16 rows of 32 bytes)
    float d[kAmxRows];       // [row] fp16 d, widened
};
static_assert(sizeof(AmxQ4_0x16) == 576);

// Whether this build has the kernels below (false: the compiler lacked AMX and they are stubs).
bool amx_kernels_built();

// Loads this thread's tile configuration (the one all kernels here use) and releases the tiles
// at the end of the scope. Construct one per thread around its tile kernel calls.
class AmxTileScope {
public:
    AmxTileScope();
    ~AmxTileScope();
    AmxTileScope(const AmxTileScope&) = delete;
    AmxTileScope& operator=(const AmxTileScope&) = delete;
};

// x: 16 Q8_K rows of n elements (pointers may repeat: the caller pads a partial group);
// dst: [n / 256].
void amx_pack_q8_k(const std::byte* const* x, int64_t n, AmxQ8_Kx16* dst);
// w: 16 rows of n elements of the type (pointers may repeat); dst: [n / 256].
void amx_pack_q4_k(const std::byte* const* w, int64_t n, AmxQ4_Kx16* dst);
void amx_pack_q2_k(const std::byte* const* w, int64_t n, AmxQ2_Kx16* dst);
void amx_pack_q3_k(const std::byte* const* w, int64_t n, AmxQ3_Kx16* dst);
void amx_pack_q5_k(const std::byte* const* w, int64_t n, AmxQ5_Kx16* dst);
void amx_pack_q6_k(const std::byte* const* w, int64_t n, AmxQ6_Kx16* dst);
// y[t * y_stride + r] = quant::vec_dot_q4_k(w row r, x token t, n), bit for bit, for the 16 rows
// of w and the tokens of n_groups (1 or 2) token groups: group u is x + u * x_group ([n / 256]
// blocks from amx_pack_q8_k) and writes y + 16 u * y_stride. Only rows r < n_rows and, in the last
// group, tokens t < n_tokens are stored (the rest is computed and dropped). w: [n / 256] from
// amx_pack_q4_k. Needs an AmxTileScope.
void amx_dot_q4_k(const AmxQ4_Kx16* w, const AmxQ8_Kx16* x, int64_t x_group, int n_groups, int64_t n, float* y,
                  int64_t y_stride, int n_rows, int n_tokens);
// x: 16 Q8_0 rows of n elements (pointers may repeat); dst: [n / 32].
void amx_pack_q8_0(const std::byte* const* x, int64_t n, AmxQ8_0x16* dst);
// w: 16 Q4_0 rows of n elements (pointers may repeat); dst: [n / 32].
void amx_pack_q4_0(const std::byte* const* w, int64_t n, AmxQ4_0x16* dst);
// quant::vec_dot_q4_0 bit for bit, as amx_dot_q4_k with blocks of 32: x_group in AmxQ8_0x16
// blocks, w: [n / 32] from amx_pack_q4_0, x groups of [n / 32] from amx_pack_q8_0. accumulate:
// the dot products continue from the values in y (those this call would store; the others are
// not read) instead of from 0, so that a row can be done in chunks of blocks, in order, with the
// reference's bits (its accumulator is one float, carried from block to block).
void amx_dot_q4_0(const AmxQ4_0x16* w, const AmxQ8_0x16* x, int64_t x_group, int n_groups, int64_t n, float* y,
                  int64_t y_stride, int n_rows, int n_tokens, bool accumulate);
// The same for Q2_K, Q3_K, Q5_K and Q6_K: their quant:: vec_dot bit for bit.
void amx_dot_q2_k(const AmxQ2_Kx16* w, const AmxQ8_Kx16* x, int64_t x_group, int n_groups, int64_t n, float* y,
                  int64_t y_stride, int n_rows, int n_tokens);
void amx_dot_q3_k(const AmxQ3_Kx16* w, const AmxQ8_Kx16* x, int64_t x_group, int n_groups, int64_t n, float* y,
                  int64_t y_stride, int n_rows, int n_tokens);
void amx_dot_q5_k(const AmxQ5_Kx16* w, const AmxQ8_Kx16* x, int64_t x_group, int n_groups, int64_t n, float* y,
                  int64_t y_stride, int n_rows, int n_tokens);
void amx_dot_q6_k(const AmxQ6_Kx16* w, const AmxQ8_Kx16* x, int64_t x_group, int n_groups, int64_t n, float* y,
                  int64_t y_stride, int n_rows, int n_tokens);

}  // namespace hearth::backend
