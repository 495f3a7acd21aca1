// Q6_K: super-blocks of 256 weights in 16 sub-blocks of 16, x = d * sc * (q - 32) with q a
// 6-bit code, sc an int8 sub-block scale and d an fp16 super-block scale (210 bytes, GGUF's
// block_q6_K). Dot products take Q8_K activations.
#pragma once

#include <cstdint>

#include "quant/q8_k.h"

namespace hearth::quant {

struct BlockQ6_K {
    static constexpr int kBlockSize = 256;
    uint8_t ql[128];    // low 4 bits; for half h (128 values) and l < 32: byte 64*h + l holds
                        // elements 128*h + l (low nibble) and 128*h + l + 64 (high nibble),
                        // byte 64*h + 32 + l holds 128*h + l + 32 and 128*h + l + 96
    uint8_t qh[64];     // high 2 bits: byte 32*h + l holds elements 128*h + l + 32*k at
                        // bits 2k..2k+1 (k = 0..3)
    int8_t scales[16];  // [16] sub-block scales
    uint16_t d;         // super-block scale, fp16 bits
};
static_assert(sizeof(BlockQ6_K) == 210);

// Rows: n elements, a multiple of 256; blocks: [n / 256].
void dequantize_row_q6_k(const BlockQ6_K* x, float* y, int64_t n);
// ggml's quantize_row_q6_K_ref (llama-quantize without an importance matrix).
void quantize_row_q6_k(const float* x, BlockQ6_K* y, int64_t n);
float vec_dot_q6_k(const BlockQ6_K* x, const BlockQ8_K* y, int64_t n);

}  // namespace hearth::quant
