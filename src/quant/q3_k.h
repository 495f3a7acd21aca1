// Q3_K: super-blocks of 256 weights in 16 sub-blocks of 16, x = d * (sc - 32) * q with q a
// signed 3-bit code in [-4, 3], sc a 6-bit sub-block scale and d an fp16 super-block scale
// (110 bytes, GGUF's block_q3_K). Dot products take Q8_K activations.
#pragma once

#include <cstdint>

#include "quant/q8_k.h"

namespace hearth::quant {

struct BlockQ3_K {
    static constexpr int kBlockSize = 256;
    uint8_t hmask[32];   // high bit of the code + 4: element e at byte e % 32, bit e / 32;
                         // a set bit means q = low - 0, a clear bit q = low - 4
    uint8_t qs[64];      // low 2 bits, packed as BlockQ2_K::qs
    uint8_t scales[12];  // 16 6-bit scales: low nibbles of j < 8 in bytes 0-7 (low), of j >= 8 in
                         // bytes 0-7 (high); 2-bit highs of j in byte 8 + j % 4, bits 2*(j / 4)
    uint16_t d;          // super-block scale, fp16 bits
};
static_assert(sizeof(BlockQ3_K) == 110);

// Rows: n elements, a multiple of 256; blocks: [n / 256].
void dequantize_row_q3_k(const BlockQ3_K* x, float* y, int64_t n);
// ggml's quantize_row_q3_K_ref (llama-quantize without an importance matrix).
void quantize_row_q3_k(const float* x, BlockQ3_K* y, int64_t n);
float vec_dot_q3_k(const BlockQ3_K* x, const BlockQ8_K* y, int64_t n);

}  // namespace hearth::quant
