// Element-wise ops added for the MoE block (SwiGLU-OAI, bias add) against their textbook
// formulas, through the reference and through ops::Ops.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "backend/ref/unary.h"
#include "ops/ops.h"

namespace hearth::backend {
namespace {

std::vector<float> random_values(int64_t n, float scale, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> d(0.0f, scale);
    std::vector<float> v(n);
    for (auto& x : v) x = d(rng);
    return v;
}

TEST(SwigluOai, MatchesTheTextbookFormula) {
    const float alpha = 1.702f, limit = 7.0f;
    ops::Ops ops(2);
    for (int64_t n : {1, 3, 17, 64, 1001}) {
        const auto gate = random_values(n, 6.0f, 1 + (uint32_t)n), up = random_values(n, 6.0f, 2 + (uint32_t)n);
        std::vector<float> y_ref(n), y_ops(n), y_inplace = gate;
        swiglu_oai_ref(gate.data(), up.data(), y_ref.data(), n, alpha, limit);
        ops.swiglu_oai(gate.data(), up.data(), y_ops.data(), n, alpha, limit);
        ops.swiglu_oai(y_inplace.data(), up.data(), y_inplace.data(), n, alpha, limit);
        for (int64_t i = 0; i < n; ++i) {
            // out = min(g, limit) * sigmoid(alpha * min(g, limit)) * (clamp(u, -limit, limit) + 1)
            const double x = std::min<double>(gate[i], limit), u = std::clamp<double>(up[i], -limit, limit);
            const double want = x / (1.0 + std::exp(-alpha * x)) * (u + 1.0);
            EXPECT_NEAR(y_ref[i], want, 1e-5 * (1.0 + std::fabs(want))) << "n " << n << " i " << i;
            EXPECT_EQ(y_ops[i], y_ref[i]);
            EXPECT_EQ(y_inplace[i], y_ref[i]);
        }
    }
}

TEST(SwigluOai, ClampsLargeInputs) {
    const float gate[3] = {100.0f, -100.0f, 7.0f}, up[3] = {100.0f, -100.0f, 0.0f};
    float y[3];
    swiglu_oai_ref(gate, up, y, 3, 1.702f, 7.0f);
    const double s7 = 7.0 / (1.0 + std::exp(-1.702 * 7.0));
    EXPECT_NEAR(y[0], s7 * 8.0, 1e-4);  // gate clamped to 7, up to 7
    EXPECT_NEAR(y[1], 0.0, 1e-6);       // gate -100 only from above: x sigmoid(alpha x) ~ 0
    EXPECT_NEAR(y[2], s7, 1e-5);
}

TEST(AddBias, AddsTheBiasToEveryRow) {
    ops::Ops ops(2);
    for (auto [rows, n] : {std::pair<int64_t, int64_t>{1, 1}, {3, 5}, {7, 64}, {2, 129}}) {
        const auto y0 = random_values(rows * n, 1.0f, 11), b = random_values(n, 1.0f, 12);
        std::vector<float> y_ref = y0, y_ops = y0;
        add_bias_ref(y_ref.data(), b.data(), rows, n);
        ops.add_bias(y_ops.data(), b.data(), rows, n);
        for (int64_t r = 0; r < rows; ++r)
            for (int64_t i = 0; i < n; ++i) {
                EXPECT_EQ(y_ref[r * n + i], y0[r * n + i] + b[i]);
                EXPECT_EQ(y_ops[r * n + i], y_ref[r * n + i]);
            }
    }
}

}  // namespace
}  // namespace hearth::backend
