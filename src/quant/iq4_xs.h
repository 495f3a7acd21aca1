// IQ4_XS: super-blocks of 256 weights in 8 sub-blocks of 32, x = d * (ls - 32) *
// kIq4NlValues[q] with q a 4-bit index, ls a 6-bit sub-block scale and d an fp16 super-block
// scale (136 bytes, GGUF's block_iq4_xs). Dot products take Q8_K activations.
#pragma once

#include <cstdint>

#include "quant/iq4_nl.h"
#include "quant/q8_k.h"

namespace hearth::quant {

struct BlockIQ4_XS {
    static constexpr int kBlockSize = 256;
    uint16_t d;           // super-block scale, fp16 bits
    uint16_t scales_h;    // bits 2*ib and 2*ib+1: high 2 bits of sub-block ib's scale
    uint8_t scales_l[4];  // low nibble of byte ib/2 (ib even) or high nibble (ib odd): low 4 bits
    uint8_t qs[128];      // [256] indices; sub-block ib uses qs[16*ib .. 16*ib+15]: byte j
                          // holds element 32*ib + j (low nibble) and 32*ib + j + 16 (high)
};
static_assert(sizeof(BlockIQ4_XS) == 136);

// Rows: n elements, a multiple of 256; blocks: [n / 256].
void dequantize_row_iq4_xs(const BlockIQ4_XS* x, float* y, int64_t n);
// ggml's quantize_iq4_xs without an importance matrix (= quantize_row_iq4_xs_ref).
void quantize_row_iq4_xs(const float* x, BlockIQ4_XS* y, int64_t n);
float vec_dot_iq4_xs(const BlockIQ4_XS* x, const BlockQ8_K* y, int64_t n);

}  // namespace hearth::quant
