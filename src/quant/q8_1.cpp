#include "quant/q8_1.h"

#include <algorithm>
#include <cmath>

#include "base/fp16.h"
#include "quant/quant_helpers.h"

HEARTH_QUANT_STRICT_FP

namespace hearth::quant {

void dequantize_row_q8_1(const BlockQ8_1* x, float* y, int64_t n) {
    const int64_t nb = n / BlockQ8_1::kBlockSize;
    for (int64_t i = 0; i < nb; ++i) {
        const float d = fp16_to_f32(x[i].d);
        for (int j = 0; j < 32; ++j) y[i * 32 + j] = x[i].qs[j] * d;
    }
}

void quantize_row_q8_1(const float* x, BlockQ8_1* y, int64_t n) {
    const int64_t nb = n / BlockQ8_1::kBlockSize;
    for (int64_t i = 0; i < nb; ++i) {
        const float* xb = x + i * 32;
        float amax = 0.0f;
        for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(xb[j]));
        const float d = amax / 127;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = f32_to_fp16(d);
        int sum = 0;
        for (int j = 0; j < 32; ++j) {
            y[i].qs[j] = (int8_t)std::round(xb[j] * id);
            sum += y[i].qs[j];
        }
        y[i].s = f32_to_fp16(sum * d);
    }
}

void quantize_row_q8_1_x86(const float* x, BlockQ8_1* y, int64_t n) {
    const int64_t nb = n / BlockQ8_1::kBlockSize;
    for (int64_t i = 0; i < nb; ++i) {
        const float* xb = x + i * 32;
        float amax = 0.0f;
        for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(xb[j]));
        const float d = amax / 127.f;
        y[i].d = f32_to_fp16(d);
        const float id = amax != 0.0f ? 127.f / amax : 0.0f;
        int sum = 0;
        for (int j = 0; j < 32; ++j) {
            y[i].qs[j] = (int8_t)std::nearbyint(xb[j] * id);
            sum += y[i].qs[j];
        }
        y[i].s = f32_to_fp16(d * sum);
    }
}

}  // namespace hearth::quant
