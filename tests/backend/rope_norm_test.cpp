// RoPE and the norms against their textbook formulas.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "backend/ref/norm.h"
#include "backend/ref/rope.h"

namespace hearth::backend {
namespace {

TEST(Rope, NormAndNeoxRotateTheRightPairs) {
    const int n_heads = 2, hd = 8, n_rot = 6;
    for (bool neox : {false, true}) {
        std::vector<float> x(n_heads * hd), orig;
        std::mt19937 rng(3);
        std::normal_distribution<float> d;
        for (auto& v : x) v = d(rng);
        orig = x;
        const float freqs[3] = {1.0f, 2.0f, 4.0f};
        RopeConfig c;
        c.n_rot = n_rot;
        c.neox = neox;
        c.freq_base = 10000.0f;
        c.freq_factors = freqs;
        const int32_t pos = 13;
        rope_ref(x.data(), &pos, 1, n_heads, hd, c);
        for (int h = 0; h < n_heads; ++h) {
            for (int i = 0; i < n_rot / 2; ++i) {
                const double theta = pos * std::pow(10000.0, -2.0 * i / n_rot) / freqs[i];
                const int a = neox ? i : 2 * i, b = neox ? i + n_rot / 2 : 2 * i + 1;
                const double x0 = orig[h * hd + a], x1 = orig[h * hd + b];
                EXPECT_NEAR(x[h * hd + a], x0 * std::cos(theta) - x1 * std::sin(theta), 1e-4);
                EXPECT_NEAR(x[h * hd + b], x0 * std::sin(theta) + x1 * std::cos(theta), 1e-4);
            }
            for (int i = n_rot; i < hd; ++i) EXPECT_EQ(x[h * hd + i], orig[h * hd + i]);  // pass-through dims
        }
    }
}

TEST(Rope, LinearScalingDividesThePosition) {
    RopeConfig a, b;
    a.n_rot = b.n_rot = 4;
    b.freq_scale = 0.25f;
    float ca[4], cb[4];
    rope_cache(40, a, ca);
    rope_cache(160, b, cb);
    for (int i = 0; i < 4; ++i) EXPECT_NEAR(ca[i], cb[i], 1e-5);
}

TEST(Norm, RmsAndLayerNorm) {
    const float x[4] = {1.0f, -2.0f, 3.0f, 0.5f}, w[4] = {1.0f, 2.0f, 0.5f, 1.0f}, b[4] = {0.1f, 0.2f, 0.3f, 0.4f};
    float y[4];
    rms_norm_ref(x, w, y, 4, 1, 1e-6f);
    const double rms = std::sqrt((1 + 4 + 9 + 0.25) / 4.0 + 1e-6);
    for (int i = 0; i < 4; ++i) EXPECT_NEAR(y[i], x[i] / rms * w[i], 1e-6);
    layer_norm_ref(x, w, b, y, 4, 1, 1e-5f);
    const double mean = 2.5 / 4, var = ((1 - mean) * (1 - mean) + (-2 - mean) * (-2 - mean) + (3 - mean) * (3 - mean) +
                                        (0.5 - mean) * (0.5 - mean)) / 4;
    for (int i = 0; i < 4; ++i) EXPECT_NEAR(y[i], (x[i] - mean) / std::sqrt(var + 1e-5) * w[i] + b[i], 1e-5);
}

}  // namespace
}  // namespace hearth::backend
