// Q8_1: blocks of 32 values, x = d * q with q an int8, plus s = d * sum(q) so that dot products
// with asymmetric weights (Q4_1, Q5_1) can add the weights' min in one step (36 bytes).
// Activation type only: there is no Q8_1 weight kernel. Byte layout is GGUF's block_q8_1.
#pragma once

#include <cstdint>

namespace hearth::quant {

struct BlockQ8_1 {
    static constexpr int kBlockSize = 32;
    uint16_t d;      // scale, fp16 bits
    uint16_t s;      // d * sum(qs), fp16 bits
    int8_t qs[32];   // [32] quants, element j = d * qs[j]
};
static_assert(sizeof(BlockQ8_1) == 36);

// Rows: n elements, a multiple of 32; blocks: [n / 32].
void dequantize_row_q8_1(const BlockQ8_1* x, float* y, int64_t n);
// ggml's quantize_row_q8_1_ref: as Q8_0 (d = amax / 127, q = roundf(x / d)), s = fp16(sum(q) * d).
void quantize_row_q8_1(const float* x, BlockQ8_1* y, int64_t n);
// ggml's x86 CPU activation quantizer (see quantize_row_q8_0_x86).
void quantize_row_q8_1_x86(const float* x, BlockQ8_1* y, int64_t n);

}  // namespace hearth::quant
