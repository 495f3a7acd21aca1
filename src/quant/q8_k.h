// Q8_K: super-blocks of 256 values, x = d * q with q an int8 and d an f32 scale, plus the sums
// of each 16 quants (292 bytes, GGUF's block_q8_K). The activation type of every K-quant and
// IQ4_XS dot product; the bsums let asymmetric formats apply their mins per 16 values.
#pragma once

#include <cstdint>

namespace hearth::quant {

struct BlockQ8_K {
    static constexpr int kBlockSize = 256;
    float d;            // scale (f32, not fp16)
    int8_t qs[256];     // [256] quants in [-127, 127] when written by quantize_row_q8_k
    int16_t bsums[16];  // bsums[g] = sum of qs[16*g .. 16*g+15]
};
static_assert(sizeof(BlockQ8_K) == 292);

// Rows: n elements, a multiple of 256; blocks: [n / 256].
void dequantize_row_q8_k(const BlockQ8_K* x, float* y, int64_t n);
// ggml's quantize_row_q8_K_ref: d = max / -127 where max is the signed value of largest
// magnitude, q = nearest_int(x / d) (ties to even), capped at 127. An all-zero block gets
// d = 0, qs = 0 and bsums = 0 (ggml leaves its bsums unwritten).
void quantize_row_q8_k(const float* x, BlockQ8_K* y, int64_t n);
float vec_dot_q8_k(const BlockQ8_K* x, const BlockQ8_K* y, int64_t n);

}  // namespace hearth::quant
