// Q4_K: super-blocks of 256 weights in 8 sub-blocks of 32, x = d * sc * q - dmin * m with q a
// 4-bit code, sc and m 6-bit sub-block scale and min, d and dmin fp16 (144 bytes, GGUF's
// block_q4_K). Dot products take Q8_K activations.
#pragma once

#include <cstdint>

#include "quant/q8_k.h"

namespace hearth::quant {

struct BlockQ4_K {
    static constexpr int kBlockSize = 256;
    uint16_t d;          // scale of the sub-block scales, fp16 bits
    uint16_t dmin;       // scale of the sub-block mins, fp16 bits
    uint8_t scales[12];  // 8 6-bit scales and 8 6-bit mins (packing: detail::get_scale_min_k4)
    uint8_t qs[128];     // [256] codes; for chunk c (64 values) and l < 32, byte 32*c + l holds
                         // element 64*c + l (low nibble) and 64*c + l + 32 (high nibble)
};
static_assert(sizeof(BlockQ4_K) == 144);

// Rows: n elements, a multiple of 256; blocks: [n / 256].
void dequantize_row_q4_k(const BlockQ4_K* x, float* y, int64_t n);
// ggml's quantize_row_q4_K_ref (llama-quantize without an importance matrix).
void quantize_row_q4_k(const float* x, BlockQ4_K* y, int64_t n);
// Summed in the order of ggml's x86 repacked gemm, which llama.cpp runs for prompt tokens in
// groups of 4 (the golden logits). vec_dot_q4_k_gemv sums in the order of its gemv, which runs for
// single tokens and for the last n_tokens % 4 rows of a prompt batch; both give the same value up
// to float rounding.
float vec_dot_q4_k(const BlockQ4_K* x, const BlockQ8_K* y, int64_t n);
float vec_dot_q4_k_gemv(const BlockQ4_K* x, const BlockQ8_K* y, int64_t n);

}  // namespace hearth::quant
