// Q5_0: blocks of 32 weights, x = d * (q - 16) with q a 5-bit code and d an fp16 scale
// (22 bytes, GGUF's block_q5_0). Dot products take Q8_0 activations.
#pragma once

#include <cstdint>

#include "quant/q8_0.h"

namespace hearth::quant {

struct BlockQ5_0 {
    static constexpr int kBlockSize = 32;
    uint16_t d;      // scale, fp16 bits
    uint8_t qh[4];   // bit j of this little-endian u32 is bit 4 of element j's code
    uint8_t qs[16];  // [32] low 4 bits: byte j holds element j (low nibble), j + 16 (high)
};
static_assert(sizeof(BlockQ5_0) == 22);

// Rows: n elements, a multiple of 32; blocks: [n / 32].
void dequantize_row_q5_0(const BlockQ5_0* x, float* y, int64_t n);
// ggml's quantize_row_q5_0_ref: d = max / -16 where max is the signed value of largest magnitude.
void quantize_row_q5_0(const float* x, BlockQ5_0* y, int64_t n);
float vec_dot_q5_0(const BlockQ5_0* x, const BlockQ8_0* y, int64_t n);

}  // namespace hearth::quant
