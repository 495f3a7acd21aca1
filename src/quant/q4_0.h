// Q4_0: blocks of 32 weights, x = d * (q - 8) with q a 4-bit code and d an fp16 scale
// (18 bytes, GGUF's block_q4_0). Dot products take Q8_0 activations.
#pragma once

#include <cstdint>

#include "quant/q8_0.h"

namespace hearth::quant {

struct BlockQ4_0 {
    static constexpr int kBlockSize = 32;
    uint16_t d;      // scale, fp16 bits
    uint8_t qs[16];  // [32] codes: byte j holds element j (low nibble) and j + 16 (high nibble)
};
static_assert(sizeof(BlockQ4_0) == 18);

// Rows: n elements, a multiple of 32; blocks: [n / 32].
void dequantize_row_q4_0(const BlockQ4_0* x, float* y, int64_t n);
// ggml's quantize_row_q4_0_ref: d = max / -8 where max is the signed value of largest magnitude.
void quantize_row_q4_0(const float* x, BlockQ4_0* y, int64_t n);
float vec_dot_q4_0(const BlockQ4_0* x, const BlockQ8_0* y, int64_t n);

}  // namespace hearth::quant
