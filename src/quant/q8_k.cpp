#include "quant/q8_k.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "quant/quant_helpers.h"

HEARTH_QUANT_STRICT_FP

namespace hearth::quant {

void dequantize_row_q8_k(const BlockQ8_K* x, float* y, int64_t n) {
    const int64_t nb = n / BlockQ8_K::kBlockSize;
    for (int64_t i = 0; i < nb; ++i) {
        for (int j = 0; j < 256; ++j) y[i * 256 + j] = x[i].d * x[i].qs[j];
    }
}

void quantize_row_q8_k(const float* x, BlockQ8_K* y, int64_t n) {
    const int64_t nb = n / BlockQ8_K::kBlockSize;
    for (int64_t i = 0; i < nb; ++i) {
        const float* xb = x + i * 256;
        float max = 0, amax = 0;
        for (int j = 0; j < 256; ++j) {
            const float ax = std::fabs(xb[j]);
            if (ax > amax) { amax = ax; max = xb[j]; }
        }
        if (!amax) {
            y[i].d = 0;
            std::memset(y[i].qs, 0, sizeof y[i].qs);
            std::memset(y[i].bsums, 0, sizeof y[i].bsums);
            continue;
        }
        // -127 rather than -128 keeps every quant in [-127, 127] (ggml chose it for IQ2_XXS).
        const float iscale = -127.f / max;
        for (int j = 0; j < 256; ++j) {
            y[i].qs[j] = (int8_t)std::min(127, detail::nearest_int(iscale * xb[j]));
        }
        for (int g = 0; g < 16; ++g) {
            int sum = 0;
            for (int j = 0; j < 16; ++j) sum += y[i].qs[16 * g + j];
            y[i].bsums[g] = (int16_t)sum;
        }
        y[i].d = 1 / iscale;
    }
}

float vec_dot_q8_k(const BlockQ8_K* x, const BlockQ8_K* y, int64_t n) {
    const int64_t nb = n / BlockQ8_K::kBlockSize;
    float sum = 0;
    for (int64_t i = 0; i < nb; ++i) {
        int32_t sumi = 0;  // |sum| <= 256 * 128 * 128
        for (int j = 0; j < 256; ++j) sumi += x[i].qs[j] * y[i].qs[j];
        sum += (x[i].d * y[i].d) * sumi;
    }
    return sum;
}

}  // namespace hearth::quant
