// backend/cpu/convert.h: the f32 -> f16 row conversion of the KV cache's writes against
// quant::quantize_row_f16 (the reference), bit for bit, at every SIMD level this CPU has: a sweep
// through the f32 bit patterns (every exponent, both signs), the rounding boundaries (ties to
// even, the subnormal and overflow edges), NaNs with payloads, and row lengths around the
// 8-value vector width.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "backend/cpu/convert.h"
#include "quant/float.h"

namespace hearth::backend {
namespace {

float from_bits(uint32_t u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

void expect_reference_bits(const std::vector<float>& x, const char* what) {
    std::vector<uint16_t> want(x.size());
    quant::quantize_row_f16(x.data(), want.data(), (int64_t)x.size());
    for (SimdLevel level : supported_simd_levels()) {
        std::vector<uint16_t> got(x.size(), 0xdead);
        f32_to_f16_row_at(level, x.data(), got.data(), (int64_t)x.size());
        for (size_t i = 0; i < x.size(); ++i) {
            uint32_t u;
            std::memcpy(&u, &x[i], 4);
            ASSERT_EQ(got[i], want[i]) << what << ": level " << (int)level << " element " << i << " bits 0x" << std::hex
                                       << u;
        }
    }
}

TEST(ConvertF16, SweepOfBitPatterns) {
    std::vector<float> x;
    for (uint64_t u = 0; u <= 0xffffffffull; u += 65521) x.push_back(from_bits((uint32_t)u));
    expect_reference_bits(x, "sweep");
}

TEST(ConvertF16, RoundingEdgesAndSpecialValues) {
    std::vector<float> x;
    // Around every half-precision step boundary of a few binades: the value, its neighbours,
    // and the midpoints (ties go to even).
    for (float base : {1.0f, 1024.0f, 0.000061035156f /* 2^-14 */, 32768.0f}) {
        for (int k = 0; k < 64; ++k) {
            const float step = base / 1024.0f;
            const float v = base + step * (float)k + step / 2;  // exact midpoints
            x.push_back(v);
            x.push_back(std::nextafter(v, 0.0f));
            x.push_back(std::nextafter(v, 1e9f));
            x.push_back(-v);
        }
    }
    // Subnormal halves and the flush-to-zero edge (2^-25), overflow edges (65504, 65520).
    for (float v : {5.9604645e-8f, 2.9802322e-8f, 2.9802326e-8f, 2.9802319e-8f, 8.940697e-8f, 6.0975552e-5f,
                    6.1035156e-5f, 65504.0f, 65519.996f, 65520.0f, 65536.0f, 1e30f,
                    std::numeric_limits<float>::max(), std::numeric_limits<float>::denorm_min(),
                    std::numeric_limits<float>::min(), 0.0f, -0.0f, std::numeric_limits<float>::infinity(),
                    -std::numeric_limits<float>::infinity()}) {
        x.push_back(v);
        x.push_back(-v);
    }
    // NaNs: quiet and signalling, with payloads, both signs (the reference keeps only sign | 0x7e00).
    for (uint32_t u : {0x7fc00000u, 0x7f800001u, 0x7fbfffffu, 0x7fc01234u, 0xffc00000u, 0xff800001u, 0x7fe00000u})
        x.push_back(from_bits(u));
    expect_reference_bits(x, "edges");
}

TEST(ConvertF16, EveryRowLengthAroundTheVectorWidth) {
    std::mt19937 rng(7);
    std::normal_distribution<float> dist(0.0f, 3.0f);
    for (int n = 0; n <= 40; ++n) {
        std::vector<float> x(n);
        for (auto& v : x) v = dist(rng);
        if (n > 5) x[n - 3] = std::numeric_limits<float>::quiet_NaN();  // a NaN in the last block or the tail
        expect_reference_bits(x, "lengths");
    }
}

}  // namespace
}  // namespace hearth::backend
