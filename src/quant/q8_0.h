// Q8_0: blocks of 32 values, x = d * q with q an int8 and d an fp16 scale (34 bytes).
// Used as weights and as the activation type of Q4_0, Q5_0, Q8_0, IQ4_NL and MXFP4 dot products.
// Byte layout is GGUF's block_q8_0. Multi-byte fields are little-endian (host order; x86/ARM).
#pragma once

#include <cstdint>

namespace hearth::quant {

struct BlockQ8_0 {
    static constexpr int kBlockSize = 32;
    uint16_t d;      // scale, fp16 bits
    int8_t qs[32];   // [32] quants, element j = d * qs[j]
};
static_assert(sizeof(BlockQ8_0) == 34);

// Rows: n elements, a multiple of 32; blocks: [n / 32]. Sources and destinations do not alias.
void dequantize_row_q8_0(const BlockQ8_0* x, float* y, int64_t n);
// ggml's quantize_row_q8_0_ref (what llama-quantize writes): d = amax / 127,
// q = roundf(x * (1/d)) (ties away from zero).
void quantize_row_q8_0(const float* x, BlockQ8_0* y, int64_t n);
float vec_dot_q8_0(const BlockQ8_0* x, const BlockQ8_0* y, int64_t n);

// The activation quantizer of ggml's x86 CPU backend (AVX/AVX2/AVX-512 builds, which is what
// produced the shipped goldens): the same d, but q = round_half_even(x * (127 / amax)). It can
// differ from quantize_row_q8_0 by one step on ties and near-ties; use it to reproduce
// llama.cpp's x86 matmul numerics exactly.
void quantize_row_q8_0_x86(const float* x, BlockQ8_0* y, int64_t n);

}  // namespace hearth::quant
