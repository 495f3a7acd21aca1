// Q4_1: blocks of 32 weights, x = d * q + m with q a 4-bit code, d and m fp16 (20 bytes,
// GGUF's block_q4_1). Dot products take Q8_1 activations (their s term carries the min).
#pragma once

#include <cstdint>

#include "quant/q8_1.h"

namespace hearth::quant {

struct BlockQ4_1 {
    static constexpr int kBlockSize = 32;
    uint16_t d;      // scale, fp16 bits
    uint16_t m;      // min (the value of code 0), fp16 bits
    uint8_t qs[16];  // [32] codes: byte j holds element j (low nibble) and j + 16 (high nibble)
};
static_assert(sizeof(BlockQ4_1) == 20);

// Rows: n elements, a multiple of 32; blocks: [n / 32].
void dequantize_row_q4_1(const BlockQ4_1* x, float* y, int64_t n);
// ggml's quantize_row_q4_1_ref: d = (max - min) / 15, m = min.
void quantize_row_q4_1(const float* x, BlockQ4_1* y, int64_t n);
float vec_dot_q4_1(const BlockQ4_1* x, const BlockQ8_1* y, int64_t n);

}  // namespace hearth::quant
