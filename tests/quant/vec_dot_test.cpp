// Dot products against the float dot product of the dequantized operands: the activation row
// is quantized to the weight type's vec_dot_type first (as ggml's CPU backend does), and the
// integer-in-block / float-per-block kernel must then agree with sum(deq(x) * deq(y)) up to f32
// summation error. Checked both on rows our quantizer wrote and on random bytes, so every
// code, sub-scale and packing bit is exercised, not just what our quantizer emits.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>

#include "quant/float.h"
#include "quant/q2_k.h"
#include "quant/q4_k.h"
#include "quant/q8_1.h"
#include "quant_test_util.h"

namespace hearth::quant {
namespace {

using test::computable_types;
using test::dequantize;
using test::gaussian;
using test::quantize;
using test::random_blocks;

// Of sum |x_i * y_i|. The f32 per-block accumulation measures below 1e-7 here; a wrong sign,
// scale or code anywhere in a block shows up far above 1e-6.
constexpr double kRelTol = 1e-6;

// Expected value of vec_dot(x, y) from the dequantized rows. With Q8_1 activations the kernel
// uses the stored s = fp16(d * sum(q)) for the weight min term, so the exact expectation adds
// m * (s - d * sum(q)) per block.
struct Expectation {
    double dot = 0;      // sum of deq(x) * deq(y) (+ the Q8_1 s correction)
    double abs_sum = 0;  // sum of |deq(x) * deq(y)|: the scale of the rounding error
};

Expectation expected_dot(QuantType xt, const void* x, const void* y, int64_t n) {
    const QuantType yt = traits(xt).vec_dot_type;
    const std::vector<float> xf = dequantize(xt, x, n);
    const std::vector<float> yf = dequantize(yt, y, n);
    Expectation e;
    for (int64_t i = 0; i < n; ++i) {
        const double p = (double)xf[(size_t)i] * yf[(size_t)i];
        e.dot += p;
        e.abs_sum += std::fabs(p);
    }
    if (yt == QuantType::q8_1) {
        // Q4_1 / Q5_1: the min m is the first fp16 after d in both block layouts.
        const auto* yb = static_cast<const BlockQ8_1*>(y);
        const auto* xb = static_cast<const std::byte*>(x);
        for (int64_t b = 0; b < n / 32; ++b) {
            uint16_t m_bits;
            std::memcpy(&m_bits, xb + b * type_size(xt) + 2, 2);
            int sum = 0;
            for (int8_t q : yb[b].qs) sum += q;
            const double exact_s = (double)fp16_to_f32(yb[b].d) * sum;
            const double correction = (double)fp16_to_f32(m_bits) * (fp16_to_f32(yb[b].s) - exact_s);
            e.dot += correction;
            e.abs_sum += std::fabs(correction);
        }
    }
    return e;
}

void check(QuantType xt, const void* x, const void* y, int64_t n, double& worst, VecDotFn dot = nullptr) {
    const double got = (dot ? dot : traits(xt).vec_dot)(x, y, n);
    const Expectation e = expected_dot(xt, x, y, n);
    const double tol = kRelTol * e.abs_sum + 1e-30;
    EXPECT_NEAR(got, e.dot, tol) << type_name(xt) << " n=" << n;
    worst = std::max(worst, std::fabs(got - e.dot) / (e.abs_sum + 1e-30));
}

std::vector<int64_t> lengths_for(QuantType t) {
    std::vector<int64_t> out;
    // 205: F32/F16/BF16 rows that are not a multiple of 16 take ggml's vec kernel order.
    for (int64_t n : {32, 96, 205, 256, 768, 4096}) {
        if (n % block_size(t) == 0 && n % block_size(traits(t).vec_dot_type) == 0) out.push_back(n);
    }
    return out;
}

TEST(VecDot, QuantizedRowsMatchFloatDot) {
    for (QuantType t : computable_types()) {
        const QuantType yt = traits(t).vec_dot_type;
        double worst = 0;
        for (int64_t n : lengths_for(t)) {
            for (uint32_t seed = 1; seed <= 3; ++seed) {
                const auto xq = quantize(t, gaussian(n, 1000 * seed + (uint32_t)n));
                const auto yq = quantize(yt, gaussian(n, 5000 * seed + (uint32_t)n, 3.f));
                check(t, xq.data(), yq.data(), n, worst);
            }
        }
        std::printf("  %-7s x %-5s worst |error| / sum|x*y| = %.2e\n", type_name(t), type_name(yt), worst);
    }
}

TEST(VecDot, RandomBlocksMatchFloatDot) {
    for (QuantType t : computable_types()) {
        const QuantType yt = traits(t).vec_dot_type;
        double worst = 0;
        for (int64_t n : lengths_for(t)) {
            for (uint32_t seed = 1; seed <= 5; ++seed) {
                const auto x = random_blocks(t, n / block_size(t), 77 * seed + (uint32_t)n);
                // Activations both as random blocks and as quantized floats.
                const auto y_random = random_blocks(yt, n / block_size(yt), 91 * seed + (uint32_t)n);
                const auto y_quant = quantize(yt, gaussian(n, 13 * seed + (uint32_t)n));
                check(t, x.data(), y_random.data(), n, worst);
                check(t, x.data(), y_quant.data(), n, worst);
            }
        }
        std::printf("  %-7s x %-5s worst |error| / sum|x*y| = %.2e (random bytes)\n", type_name(t),
                    type_name(yt), worst);
    }
}

// The single-token summation orders (see float.h, q2_k.h, q4_k.h) compute the same dot product.
template <class X, class Y, float (*F)(const X*, const Y*, int64_t)>
float gemv_as(const void* x, const void* y, int64_t n) {
    return F(static_cast<const X*>(x), static_cast<const Y*>(y), n);
}

TEST(VecDot, GemvOrdersMatchFloatDot) {
    const struct {
        QuantType type;
        VecDotFn dot;
    } kGemv[] = {
        {QuantType::f32, &gemv_as<float, float, vec_dot_f32_gemv>},
        {QuantType::f16, &gemv_as<uint16_t, uint16_t, vec_dot_f16_gemv>},
        {QuantType::bf16, &gemv_as<uint16_t, uint16_t, vec_dot_bf16_gemv>},
        {QuantType::q2_k, &gemv_as<BlockQ2_K, BlockQ8_K, vec_dot_q2_k_gemv>},
        {QuantType::q4_k, &gemv_as<BlockQ4_K, BlockQ8_K, vec_dot_q4_k_gemv>},
    };
    for (const auto& g : kGemv) {
        const QuantType yt = traits(g.type).vec_dot_type;
        double worst = 0;
        for (int64_t n : lengths_for(g.type)) {
            for (uint32_t seed = 1; seed <= 3; ++seed) {
                const auto x = random_blocks(g.type, n / block_size(g.type), 31 * seed + (uint32_t)n);
                const auto y = quantize(yt, gaussian(n, 17 * seed + (uint32_t)n));
                check(g.type, x.data(), y.data(), n, worst, g.dot);
            }
        }
        std::printf("  %-7s x %-5s worst |error| / sum|x*y| = %.2e (gemv order)\n", type_name(g.type),
                    type_name(yt), worst);
    }
}

TEST(VecDot, ZeroActivationsGiveZero) {
    for (QuantType t : computable_types()) {
        const QuantType yt = traits(t).vec_dot_type;
        const int64_t n = 256;
        const auto x = random_blocks(t, n / block_size(t), 3);
        const auto y = quantize(yt, std::vector<float>((size_t)n, 0.f));
        EXPECT_EQ(traits(t).vec_dot(x.data(), y.data(), n), 0.f) << type_name(t);
    }
}

}  // namespace
}  // namespace hearth::quant
