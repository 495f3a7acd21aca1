#include "backend/ref/unary.h"

#include <algorithm>
#include <cmath>

namespace hearth::backend {

float silu(float x) { return x / (1.0f + std::exp(-x)); }

float gelu(float x) {
    constexpr float kSqrt2OverPi = 0.79788456080286535587989211986876f;
    constexpr float kCoef = 0.044715f;
    return 0.5f * x * (1.0f + std::tanh(kSqrt2OverPi * x * (1.0f + kCoef * x * x)));
}

void swiglu_ref(const float* gate, const float* up, float* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] = silu(gate[i]) * up[i];
}

void swiglu_oai_ref(const float* gate, const float* up, float* y, int64_t n, float alpha, float limit) {
    for (int64_t i = 0; i < n; ++i) {
        const float x = std::min(gate[i], limit);
        const float u = std::clamp(up[i], -limit, limit);
        y[i] = x / (1.0f + std::exp(alpha * -x)) * (u + 1.0f);
    }
}

void add_bias_ref(float* y, const float* b, int64_t rows, int64_t n) {
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t i = 0; i < n; ++i) y[r * n + i] += b[i];
}

void geglu_ref(const float* gate, const float* up, float* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] = gelu(gate[i]) * up[i];
}

void gelu_ref(const float* x, float* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] = gelu(x[i]);
}

void softmax_ref(const float* x, float* y, int64_t n) {
    float mx = x[0];
    for (int64_t i = 1; i < n; ++i) mx = std::max(mx, x[i]);
    double sum = 0.0;
    for (int64_t i = 0; i < n; ++i) {
        y[i] = std::exp(x[i] - mx);
        sum += y[i];
    }
    const float inv = (float)(1.0 / sum);
    for (int64_t i = 0; i < n; ++i) y[i] *= inv;
}

}  // namespace hearth::backend
