// Q2_K: super-blocks of 256 weights in 16 sub-blocks of 16, x = d * sc * q - dmin * m with q a
// 2-bit code, sc and m 4-bit sub-block scale and min, d and dmin fp16 (84 bytes, GGUF's
// block_q2_K). Dot products take Q8_K activations.
#pragma once

#include <cstdint>

#include "quant/q8_k.h"

namespace hearth::quant {

struct BlockQ2_K {
    static constexpr int kBlockSize = 256;
    uint8_t scales[16];  // sub-block j: scale in the low nibble, min in the high nibble
    uint8_t qs[64];      // [256] 2-bit codes; for half h (128 values) and l < 32, byte
                         // 32*h + l holds elements 128*h + l + 32*k at bits 2k..2k+1 (k = 0..3)
    uint16_t d;          // scale of the sub-block scales, fp16 bits
    uint16_t dmin;       // scale of the sub-block mins, fp16 bits
};
static_assert(sizeof(BlockQ2_K) == 84);

// Rows: n elements, a multiple of 256; blocks: [n / 256].
void dequantize_row_q2_k(const BlockQ2_K* x, float* y, int64_t n);
// ggml's quantize_row_q2_K_ref (llama-quantize without an importance matrix).
void quantize_row_q2_k(const float* x, BlockQ2_K* y, int64_t n);
// Summed in the order of ggml's x86 repacked gemm, which llama.cpp runs for prompt tokens in
// groups of 4 (the golden logits). vec_dot_q2_k_gemv sums in the order of its gemv, which runs for
// single tokens and for the last n_tokens % 4 rows of a prompt batch; both give the same value up
// to float rounding.
float vec_dot_q2_k(const BlockQ2_K* x, const BlockQ8_K* y, int64_t n);
float vec_dot_q2_k_gemv(const BlockQ2_K* x, const BlockQ8_K* y, int64_t n);

}  // namespace hearth::quant
