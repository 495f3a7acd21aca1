// Q5_1: blocks of 32 weights, x = d * q + m with q a 5-bit code, d and m fp16 (24 bytes,
// GGUF's block_q5_1). Dot products take Q8_1 activations.
#pragma once

#include <cstdint>

#include "quant/q8_1.h"

namespace hearth::quant {

struct BlockQ5_1 {
    static constexpr int kBlockSize = 32;
    uint16_t d;      // scale, fp16 bits
    uint16_t m;      // min (the value of code 0), fp16 bits
    uint8_t qh[4];   // bit j of this little-endian u32 is bit 4 of element j's code
    uint8_t qs[16];  // [32] low 4 bits: byte j holds element j (low nibble), j + 16 (high)
};
static_assert(sizeof(BlockQ5_1) == 24);

// Rows: n elements, a multiple of 32; blocks: [n / 32].
void dequantize_row_q5_1(const BlockQ5_1* x, float* y, int64_t n);
// ggml's quantize_row_q5_1_ref: d = (max - min) / 31, m = min.
void quantize_row_q5_1(const float* x, BlockQ5_1* y, int64_t n);
float vec_dot_q5_1(const BlockQ5_1* x, const BlockQ8_1* y, int64_t n);

}  // namespace hearth::quant
