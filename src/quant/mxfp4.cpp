#include "quant/mxfp4.h"

#include <cmath>

#include "base/fp16.h"
#include "quant/quant_helpers.h"

HEARTH_QUANT_STRICT_FP

namespace hearth::quant {

namespace {

int best_code(float x, float half_scale) {
    int best = 0;
    float best_err = std::fabs(kMxfp4Values[0] * half_scale - x);
    for (int i = 1; i < 16; ++i) {
        const float err = std::fabs(kMxfp4Values[i] * half_scale - x);
        if (err < best_err) {
            best = i;
            best_err = err;
        }
    }
    return best;
}

}  // namespace

float e8m0_to_f32_half(uint8_t e) {
    // 2^(e-128): the subnormals 2^-128 and 2^-127 for e = 0, 1; else exponent field e - 1.
    const uint32_t bits = e < 2 ? 0x00200000u << e : (uint32_t)(e - 1) << 23;
    return bits_to_f32(bits);
}

void dequantize_row_mxfp4(const BlockMXFP4* x, float* y, int64_t n) {
    const int64_t nb = n / BlockMXFP4::kBlockSize;
    for (int64_t i = 0; i < nb; ++i) {
        const float d = e8m0_to_f32_half(x[i].e);
        for (int j = 0; j < 16; ++j) {
            y[i * 32 + j] = kMxfp4Values[x[i].qs[j] & 0x0F] * d;
            y[i * 32 + j + 16] = kMxfp4Values[x[i].qs[j] >> 4] * d;
        }
    }
}

void quantize_row_mxfp4(const float* x, BlockMXFP4* y, int64_t n) {
    const int64_t nb = n / BlockMXFP4::kBlockSize;
    for (int64_t i = 0; i < nb; ++i) {
        const float* xb = x + i * 32;
        float amax = 0.0f;
        for (int j = 0; j < 32; ++j) {
            if (amax < std::fabs(xb[j])) amax = std::fabs(xb[j]);
        }
        // log2f, not an exact exponent extraction: ggml's rounding of log2f just below a power
        // of two decides the exponent, and the output must match byte for byte.
        const uint8_t e =
            amax > 0.0f ? (uint8_t)(int)(std::floor(std::log2(amax)) - 2 + 127) : (uint8_t)0;
        const float d = e8m0_to_f32_half(e);
        y[i].e = e;
        for (int j = 0; j < 16; ++j) {
            const int q0 = best_code(xb[j], d);
            const int q1 = best_code(xb[j + 16], d);
            y[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

// ggml's x86 order for MXFP4 weights with a row count that is a multiple of 8 (every real
// weight matrix, 2-D or 3-D experts): llama.cpp repacks them (mxfp4_8x8) and its gemm and gemv
// keep one float accumulator per output: acc = fma(float(exact int dot of the block),
// e8m0_half(e) * d_y, acc), block after block.
float vec_dot_mxfp4(const BlockMXFP4* x, const BlockQ8_0* y, int64_t n) {
    const int64_t nb = n / BlockMXFP4::kBlockSize;
    float acc = 0;
    for (int64_t i = 0; i < nb; ++i) {
        int32_t sumi = 0;
        for (int j = 0; j < 16; ++j) {
            sumi += y[i].qs[j] * kMxfp4Values[x[i].qs[j] & 0x0F];
            sumi += y[i].qs[j + 16] * kMxfp4Values[x[i].qs[j] >> 4];
        }
        acc = std::fmaf((float)sumi, e8m0_to_f32_half(x[i].e) * fp16_to_f32(y[i].d), acc);
    }
    return acc;
}

}  // namespace hearth::quant
