#include "backend/ref/norm.h"

#include <cmath>

namespace hearth::backend {

void rms_norm_ref(const float* x, const float* w, float* y, int64_t n, int64_t rows, float eps) {
    for (int64_t r = 0; r < rows; ++r) {
        const float* xr = x + r * n;
        float* yr = y + r * n;
        // As ggml: each square is rounded to float, then summed in double. Matching this
        // keeps 8-bit activation roundings downstream identical to llama.cpp's.
        double sum = 0.0;
        for (int64_t i = 0; i < n; ++i) sum += (double)(xr[i] * xr[i]);
        const float scale = 1.0f / std::sqrt((float)(sum / n) + eps);
        for (int64_t i = 0; i < n; ++i) yr[i] = xr[i] * scale * (w ? w[i] : 1.0f);
    }
}

void layer_norm_ref(const float* x, const float* w, const float* b, float* y, int64_t n, int64_t rows, float eps) {
    for (int64_t r = 0; r < rows; ++r) {
        const float* xr = x + r * n;
        float* yr = y + r * n;
        double sum = 0.0;
        for (int64_t i = 0; i < n; ++i) sum += xr[i];
        const float mean = (float)(sum / n);
        double var = 0.0;
        for (int64_t i = 0; i < n; ++i) var += (double)(xr[i] - mean) * (xr[i] - mean);
        const float scale = 1.0f / std::sqrt((float)(var / n) + eps);
        for (int64_t i = 0; i < n; ++i) {
            float v = (xr[i] - mean) * scale;
            if (w) v *= w[i];
            if (b) v += b[i];
            yr[i] = v;
        }
    }
}

}  // namespace hearth::backend
