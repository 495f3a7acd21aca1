// Q5_K: super-blocks of 256 weights in 8 sub-blocks of 32, x = d * sc * q - dmin * m with q a
// 5-bit code, sc and m 6-bit sub-block scale and min, d and dmin fp16 (176 bytes, GGUF's
// block_q5_K). Dot products take Q8_K activations.
#pragma once

#include <cstdint>

#include "quant/q8_k.h"

namespace hearth::quant {

struct BlockQ5_K {
    static constexpr int kBlockSize = 256;
    uint16_t d;          // scale of the sub-block scales, fp16 bits
    uint16_t dmin;       // scale of the sub-block mins, fp16 bits
    uint8_t scales[12];  // 8 6-bit scales and 8 6-bit mins (packing: detail::get_scale_min_k4)
    uint8_t qh[32];      // bit 4 of the codes: element e at byte e % 32, bit e / 32
    uint8_t qs[128];     // low 4 bits, packed as BlockQ4_K::qs
};
static_assert(sizeof(BlockQ5_K) == 176);

// Rows: n elements, a multiple of 256; blocks: [n / 256].
void dequantize_row_q5_k(const BlockQ5_K* x, float* y, int64_t n);
// ggml's quantize_row_q5_K_ref (llama-quantize without an importance matrix).
void quantize_row_q5_k(const float* x, BlockQ5_K* y, int64_t n);
float vec_dot_q5_k(const BlockQ5_K* x, const BlockQ8_K* y, int64_t n);

}  // namespace hearth::quant
