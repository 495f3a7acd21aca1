#include "quant/q8_0.h"

#include <algorithm>
#include <cmath>

#include "base/fp16.h"
#include "quant/lanes.h"
#include "quant/quant_helpers.h"

HEARTH_QUANT_STRICT_FP

namespace hearth::quant {

void dequantize_row_q8_0(const BlockQ8_0* x, float* y, int64_t n) {
    const int64_t nb = n / BlockQ8_0::kBlockSize;
    for (int64_t i = 0; i < nb; ++i) {
        const float d = fp16_to_f32(x[i].d);
        for (int j = 0; j < 32; ++j) y[i * 32 + j] = x[i].qs[j] * d;
    }
}

void quantize_row_q8_0(const float* x, BlockQ8_0* y, int64_t n) {
    const int64_t nb = n / BlockQ8_0::kBlockSize;
    for (int64_t i = 0; i < nb; ++i) {
        const float* xb = x + i * 32;
        float amax = 0.0f;
        for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(xb[j]));
        const float d = amax / 127;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = f32_to_fp16(d);
        for (int j = 0; j < 32; ++j) y[i].qs[j] = (int8_t)std::round(xb[j] * id);
    }
}

void quantize_row_q8_0_x86(const float* x, BlockQ8_0* y, int64_t n) {
    const int64_t nb = n / BlockQ8_0::kBlockSize;
    for (int64_t i = 0; i < nb; ++i) {
        const float* xb = x + i * 32;
        float amax = 0.0f;
        for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(xb[j]));
        y[i].d = f32_to_fp16(amax / 127.f);
        const float id = amax != 0.0f ? 127.f / amax : 0.0f;
        for (int j = 0; j < 32; ++j) y[i].qs[j] = (int8_t)std::nearbyint(xb[j] * id);
    }
}

// ggml's x86 order (tinyBLAS_Q0_AVX for prompts, ggml_vec_dot_q8_0_q8_0 for single tokens; both
// the same): 8 float lanes, lane l takes the exact int sum of elements 4l..4l+3 of each block,
// acc[l] = fma(d_x * d_y, lane, acc[l]); then hsum8.
float vec_dot_q8_0(const BlockQ8_0* x, const BlockQ8_0* y, int64_t n) {
    const int64_t nb = n / BlockQ8_0::kBlockSize;
    float acc[8] = {};
    for (int64_t i = 0; i < nb; ++i) {
        int32_t lanes[8];
        detail::lane_dot32(x[i].qs, y[i].qs, lanes);
        detail::fma_lanes8(fp16_to_f32(x[i].d) * fp16_to_f32(y[i].d), lanes, acc);
    }
    return detail::hsum8(acc);
}

}  // namespace hearth::quant
