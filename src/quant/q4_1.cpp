#include "quant/q4_1.h"

#include <algorithm>
#include <cfloat>
#include <cmath>

#include "base/fp16.h"
#include "quant/lanes.h"
#include "quant/quant_helpers.h"

HEARTH_QUANT_STRICT_FP

namespace hearth::quant {

void dequantize_row_q4_1(const BlockQ4_1* x, float* y, int64_t n) {
    const int64_t nb = n / BlockQ4_1::kBlockSize;
    for (int64_t i = 0; i < nb; ++i) {
        const float d = fp16_to_f32(x[i].d);
        const float m = fp16_to_f32(x[i].m);
        for (int j = 0; j < 16; ++j) {
            y[i * 32 + j] = (x[i].qs[j] & 0x0F) * d + m;
            y[i * 32 + j + 16] = (x[i].qs[j] >> 4) * d + m;
        }
    }
}

void quantize_row_q4_1(const float* x, BlockQ4_1* y, int64_t n) {
    const int64_t nb = n / BlockQ4_1::kBlockSize;
    for (int64_t i = 0; i < nb; ++i) {
        const float* xb = x + i * 32;
        float min = FLT_MAX, max = -FLT_MAX;
        for (int j = 0; j < 32; ++j) {
            if (xb[j] < min) min = xb[j];
            if (xb[j] > max) max = xb[j];
        }
        const float d = (max - min) / 15;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = f32_to_fp16(d);
        y[i].m = f32_to_fp16(min);
        for (int j = 0; j < 16; ++j) {
            const int q0 = std::min(15, (int)((xb[j] - min) * id + 0.5f));
            const int q1 = std::min(15, (int)((xb[j + 16] - min) * id + 0.5f));
            y[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

// ggml's x86 order (ggml_vec_dot_q4_1_q8_1; there is no tinyBLAS or repacked kernel for Q4_1, so
// prompts use it too): 8 float lanes over the codes (0..15) as in vec_dot_q8_0, with
// acc[l] = fma(d_x * d_y, lane, acc[l]); the min terms go to one scalar, summs = fma(m, s, summs)
// (ggml writes summs += m * s, which the compiler fuses: -march=native, default contraction);
// result hsum8(acc) + summs.
float vec_dot_q4_1(const BlockQ4_1* x, const BlockQ8_1* y, int64_t n) {
    const int64_t nb = n / BlockQ4_1::kBlockSize;
    float acc[8] = {};
    float summs = 0;
    for (int64_t i = 0; i < nb; ++i) {
        summs = std::fmaf(fp16_to_f32(x[i].m), fp16_to_f32(y[i].s), summs);
        int8_t q[32];  // [32] codes 0..15
        for (int j = 0; j < 16; ++j) {
            q[j] = (int8_t)(x[i].qs[j] & 0x0F);
            q[j + 16] = (int8_t)(x[i].qs[j] >> 4);
        }
        int32_t lanes[8];
        detail::lane_dot32(q, y[i].qs, lanes);
        detail::fma_lanes8(fp16_to_f32(x[i].d) * fp16_to_f32(y[i].d), lanes, acc);
    }
    return detail::hsum8(acc) + summs;
}

}  // namespace hearth::quant
