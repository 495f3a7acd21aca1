#include "quant/q4_0.h"

#include <algorithm>
#include <cmath>

#include "base/fp16.h"
#include "quant/quant_helpers.h"

HEARTH_QUANT_STRICT_FP

namespace hearth::quant {

void dequantize_row_q4_0(const BlockQ4_0* x, float* y, int64_t n) {
    const int64_t nb = n / BlockQ4_0::kBlockSize;
    for (int64_t i = 0; i < nb; ++i) {
        const float d = fp16_to_f32(x[i].d);
        for (int j = 0; j < 16; ++j) {
            y[i * 32 + j] = ((x[i].qs[j] & 0x0F) - 8) * d;
            y[i * 32 + j + 16] = ((x[i].qs[j] >> 4) - 8) * d;
        }
    }
}

void quantize_row_q4_0(const float* x, BlockQ4_0* y, int64_t n) {
    const int64_t nb = n / BlockQ4_0::kBlockSize;
    for (int64_t i = 0; i < nb; ++i) {
        const float* xb = x + i * 32;
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < 32; ++j) {
            if (amax < std::fabs(xb[j])) {
                amax = std::fabs(xb[j]);
                max = xb[j];
            }
        }
        const float d = max / -8;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = f32_to_fp16(d);
        for (int j = 0; j < 16; ++j) {
            // Truncation after +8.5 rounds half up; x * id >= -8, so the code is >= 0.
            const int q0 = std::min(15, (int)(xb[j] * id + 8.5f));
            const int q1 = std::min(15, (int)(xb[j + 16] * id + 8.5f));
            y[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

// ggml's x86 order for Q4_0 weights with a row count that is a multiple of 8, i.e. every real
// weight matrix: llama.cpp repacks them (CPU_REPACK, q4_0_8x8) and its gemm and gemv both keep
// one float accumulator per output: acc = fma(float(exact int dot of the block), d_x * d_y, acc),
// block after block. (A matrix with another row count would go through tinyBLAS_Q0_AVX /
// ggml_vec_dot_q4_0_q8_0 instead, which sum like vec_dot_q8_0.)
float vec_dot_q4_0(const BlockQ4_0* x, const BlockQ8_0* y, int64_t n) {
    const int64_t nb = n / BlockQ4_0::kBlockSize;
    float acc = 0;
    for (int64_t i = 0; i < nb; ++i) {
        int32_t sumi = 0;
        for (int j = 0; j < 16; ++j) {
            sumi += ((x[i].qs[j] & 0x0F) - 8) * y[i].qs[j];
            sumi += ((x[i].qs[j] >> 4) - 8) * y[i].qs[j + 16];
        }
        acc = std::fmaf((float)sumi, fp16_to_f32(x[i].d) * fp16_to_f32(y[i].d), acc);
    }
    return acc;
}

}  // namespace hearth::quant
