// IQ4_NL: blocks of 32 weights, x = d * kIq4NlValues[q] with q a 4-bit index into a fixed
// non-linear table and d an fp16 scale (18 bytes, GGUF's block_iq4_nl). Dot products take Q8_0
// activations.
#pragma once

#include <cstdint>

#include "quant/q8_0.h"

namespace hearth::quant {

// The non-uniform 4-bit grid shared by IQ4_NL and IQ4_XS (ggml's kvalues_iq4nl), ascending.
inline constexpr int8_t kIq4NlValues[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                            1,    13,   25,  38,  53,  69,  89,  113};

struct BlockIQ4_NL {
    static constexpr int kBlockSize = 32;
    uint16_t d;      // scale, fp16 bits
    uint8_t qs[16];  // [32] indices: byte j holds element j (low nibble) and j + 16 (high nibble)
};
static_assert(sizeof(BlockIQ4_NL) == 18);

// Rows: n elements, a multiple of 32; blocks: [n / 32].
void dequantize_row_iq4_nl(const BlockIQ4_NL* x, float* y, int64_t n);
// What llama-quantize writes without an importance matrix (ggml's quantize_iq4_nl with no
// weights: weights x^2 and a search over 15 scales). Note that ggml's quantize_row_iq4_nl_ref
// is a different, search-less variant that llama-quantize does not use.
void quantize_row_iq4_nl(const float* x, BlockIQ4_NL* y, int64_t n);
float vec_dot_iq4_nl(const BlockIQ4_NL* x, const BlockQ8_0* y, int64_t n);

namespace detail {

// ggml's quantize_row_iq4_nl_impl without importance weights, for one super-block of
// n_super (32 for IQ4_NL, 256 for IQ4_XS; at most 256) values x[n_super] in sub-blocks of 32, searching
// 2 * ntry + 1 scales per sub-block. Writes *d (fp16 bits) and q4[n_super / 2] (packed like
// BlockIQ4_NL::qs, per 32 values); with more than one sub-block also the 6-bit sub-block scales
// (value + 32): low nibbles into scales_l[n_super / 64], high 2 bits into *scales_h.
void quantize_iq4_superblock(int n_super, const float* x, uint16_t* d, uint8_t* q4,
                             uint16_t* scales_h, uint8_t* scales_l, int ntry);

}  // namespace detail

}  // namespace hearth::quant
