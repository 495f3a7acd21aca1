// MXFP4 (OCP microscaling): blocks of 32 weights, x = 2^(e - 127) * v with v an E2M1 (fp4)
// value and e an E8M0 shared exponent (17 bytes, GGUF's block_mxfp4). Dot products take Q8_0
// activations.
#pragma once

#include <cstdint>

#include "quant/q8_0.h"

namespace hearth::quant {

// E2M1 values times 2, indexed by the 4-bit code (bit 3 is the sign): 0 .5 1 1.5 2 3 4 6.
// Integers so that dot products stay in integer arithmetic; the 1/2 moves into the scale.
inline constexpr int8_t kMxfp4Values[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

struct BlockMXFP4 {
    static constexpr int kBlockSize = 32;
    uint8_t e;       // E8M0 exponent: the block scale is 2^(e - 127)
    uint8_t qs[16];  // [32] codes: byte j holds element j (low nibble) and j + 16 (high nibble)
};
static_assert(sizeof(BlockMXFP4) == 17);

// 2^(e - 128), i.e. half the block scale, to pair with kMxfp4Values (exact, subnormal for
// e < 2).
float e8m0_to_f32_half(uint8_t e);

// Rows: n elements, a multiple of 32; blocks: [n / 32].
void dequantize_row_mxfp4(const BlockMXFP4* x, float* y, int64_t n);
// ggml's quantize_row_mxfp4_ref: e = floor(log2(amax)) - 2 + 127, then each value takes the
// nearest code (first code wins ties).
void quantize_row_mxfp4(const float* x, BlockMXFP4* y, int64_t n);
float vec_dot_mxfp4(const BlockMXFP4* x, const BlockQ8_0* y, int64_t n);

}  // namespace hearth::quant
