#include "backend/ref/unary.h"

#include <algorithm>
#include <cmath>

namespace hearth::backend {

float silu(float x) { return x / (1.0f + std::exp(-x)); }

float ggml_vexp(float x) {
    // Round-to-integer by adding 1.5 * 2^23; fnmadd(a, b, c) = c - a * b is fma(-a, b, c).
    const float r = 0x1.8p23f;
    const float z = std::fma(x, 0x1.715476p+0f, r);
    const float n = z - r;
    const float b = std::fma(-n, 0x1.7f7d1cp-20f, std::fma(-n, 0x1.62e4p-1f, x));
    const float u = b * b;
    const float j = std::fma(std::fma(std::fma(0x1.0e4020p-7f, b, 0x1.573e2ep-5f), u,
                                      std::fma(0x1.555e66p-3f, b, 0x1.fffdb6p-2f)),
                             u, std::fma(0x1.ffffecp-1f, b, 1.0f));
    if (std::fabs(n) > 192.0f) return n <= 0.0f ? 0.0f : INFINITY;  // NaN compares false: falls through
    if (std::isnan(n)) return j;
    return std::ldexp(j, (int)n);  // _mm512_scalef_ps(j, n), n integral
}

float hsum16(const float a[16]) {
    float h[8], q[4];
    for (int i = 0; i < 8; ++i) h[i] = a[i + 8] + a[i];
    for (int i = 0; i < 4; ++i) q[i] = h[i + 4] + h[i];
    return (q[0] + q[2]) + (q[1] + q[3]);
}

float gelu(float x) {
    constexpr float kSqrt2OverPi = 0.79788456080286535587989211986876f;
    constexpr float kCoef = 0.044715f;
    return 0.5f * x * (1.0f + std::tanh(kSqrt2OverPi * x * (1.0f + kCoef * x * x)));
}

void swiglu_ref(const float* gate, const float* up, float* y, int64_t n) {
    int64_t i = 0;
    for (; i + 15 < n; i += 16) {
        for (int l = 0; l < 16; ++l) {
            const float x = gate[i + l];
            y[i + l] = x / (1.0f + ggml_vexp(0.0f - x)) * up[i + l];
        }
    }
    for (; i < n; ++i) y[i] = silu(gate[i]) * up[i];
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
    int64_t i = 0;
    for (; i + 15 < n; i += 16) {
        for (int l = 0; l < 16; ++l) y[i + l] = ggml_vexp(x[i + l] - mx);
        sum += hsum16(y + i);
    }
    for (; i < n; ++i) {
        y[i] = std::exp(x[i] - mx);
        sum += y[i];
    }
    const float inv = (float)(1.0 / sum);
    for (int64_t i = 0; i < n; ++i) y[i] *= inv;
}

}  // namespace hearth::backend
