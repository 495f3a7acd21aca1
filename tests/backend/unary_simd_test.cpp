// The CPU swiglu and rms_norm (backend/cpu/unary.h, norm.h) against their references: at every
// SimdLevel this CPU supports, with 1 and 3 threads, the bytes of swiglu_ref and rms_norm_ref
// (NaN compared as NaN) on random data of several scales, awkward lengths (tails of 1 to 15,
// lengths below one chunk, odd row widths) and special values (+-0, +-inf, NaN, subnormals,
// values whose exp overflows or underflows), in place and out of place.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "backend/cpu/cpu_features.h"
#include "backend/cpu/norm.h"
#include "backend/cpu/unary.h"
#include "backend/ref/norm.h"
#include "backend/ref/unary.h"
#include "base/thread_pool.h"

namespace hearth::backend {
namespace {

// First index where a and b differ (bits, or NaN against a number), or -1.
int64_t first_diff(const float* a, const float* b, int64_t n) {
    for (int64_t i = 0; i < n; ++i) {
        if (std::isnan(a[i]) && std::isnan(b[i])) continue;
        if (std::memcmp(a + i, b + i, sizeof(float))) return i;
    }
    return -1;
}

// Normal values of `scale` with, when `special`, every 7th one replaced by an edge value.
std::vector<float> values(int64_t n, float scale, bool special, uint32_t seed) {
    static const float kEdges[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 1e-40f, -1e-40f, 88.0f, 89.0f, -88.0f,
                                   -104.0f, 104.0f, 200.0f, -200.0f, 3e38f, -3e38f, 1e-20f, 16.6f, -16.6f};
    std::mt19937 rng(seed);
    std::normal_distribution<float> d(0.0f, scale);
    std::vector<float> v(n);
    for (int64_t i = 0; i < n; ++i) v[i] = d(rng);
    if (special)
        for (int64_t i = 3; i < n; i += 7) v[i] = kEdges[(i / 7) % (sizeof(kEdges) / sizeof(kEdges[0]))];
    return v;
}

TEST(SwigluCpu, EveryLevelMatchesRefBitForBit) {
    const int64_t lengths[] = {1, 5, 15, 16, 17, 31, 33, 64, 100, 1000, 3072, 8192 + 13, 3 * 16 * 512 + 16 * 7 + 9};
    for (SimdLevel level : supported_simd_levels()) {
        SCOPED_TRACE(simd_level_name(level));
        for (int threads : {1, 3}) {
            ThreadPool pool(threads);
            for (int64_t n : lengths) {
                for (float scale : {1.0f, 8.0f, 60.0f}) {
                    for (bool special : {false, true}) {
                        const auto gate = values(n, scale, special, 1 + (uint32_t)n);
                        const auto up = values(n, scale, special, 2 + (uint32_t)n);
                        std::vector<float> want(n), got(n, 123.0f), inplace = gate;
                        swiglu_ref(gate.data(), up.data(), want.data(), n);
                        swiglu_cpu_at(level, pool, gate.data(), up.data(), got.data(), n);
                        int64_t d = first_diff(want.data(), got.data(), n);
                        ASSERT_EQ(d, -1) << "threads " << threads << " n " << n << " scale " << scale << " gate "
                                         << gate[d] << " up " << up[d] << ": ref " << want[d] << " got " << got[d];
                        swiglu_cpu_at(level, pool, inplace.data(), up.data(), inplace.data(), n);
                        d = first_diff(want.data(), inplace.data(), n);
                        ASSERT_EQ(d, -1) << "in place, threads " << threads << " n " << n << " scale " << scale;
                    }
                }
            }
        }
    }
}

TEST(SwigluCpu, MatchesAtEveryFloatExponent) {
    // gate over a stride of all floats (both signs), up = 1.5: every exponent path of ggml_vexp.
    std::vector<float> gate;
    for (uint32_t u = 0; u < 0x80000000u; u += 7919) {
        float f;
        std::memcpy(&f, &u, 4);
        gate.push_back(f);
        gate.push_back(-f);
    }
    const int64_t n = (int64_t)gate.size();
    std::vector<float> up(n, 1.5f), want(n), got(n);
    swiglu_ref(gate.data(), up.data(), want.data(), n);
    ThreadPool pool(2);
    for (SimdLevel level : supported_simd_levels()) {
        swiglu_cpu_at(level, pool, gate.data(), up.data(), got.data(), n);
        const int64_t d = first_diff(want.data(), got.data(), n);
        EXPECT_EQ(d, -1) << simd_level_name(level) << ": gate " << (d >= 0 ? gate[d] : 0.0f);
    }
}

TEST(RmsNormCpu, EveryLevelMatchesRefBitForBit) {
    struct Shape {
        int64_t n, rows;
    };
    const Shape shapes[] = {{1, 3}, {7, 5}, {16, 4}, {63, 3}, {64, 9}, {65, 2}, {128, 97}, {200, 7},
                            {1024, 33}, {1536, 5}, {2048 + 5, 3}, {4096, 17}};
    for (SimdLevel level : supported_simd_levels()) {
        SCOPED_TRACE(simd_level_name(level));
        for (int threads : {1, 3}) {
            ThreadPool pool(threads);
            for (const Shape& s : shapes) {
                // Scales: typical activations, spreads wide enough that the double sum rounds
                // (1e-3 next to 1e4), and tiny or huge rows near the float limits.
                for (float scale : {1.0f, 1e4f, 1e-3f, 1e-20f, 1e18f}) {
                    for (int variant = 0; variant < 4; ++variant) {
                        const int64_t total = s.n * s.rows;
                        auto x = values(total, scale, variant == 3, 7 + (uint32_t)total + (uint32_t)variant);
                        if (variant == 1) {  // mixed magnitudes: the sum's rounding depends on its order
                            std::mt19937 rng(5);
                            for (auto& v : x) v *= std::ldexp(1.0f, (int)(rng() % 40) - 20);
                        }
                        if (variant == 2)
                            for (int64_t i = 0; i < total; i += 3) x[i] = 0.0f;
                        const auto w = values(s.n, 1.0f, false, 99);
                        for (const float* wp : {w.data(), (const float*)nullptr}) {
                            std::vector<float> want(total), got(total, 123.0f), inplace = x;
                            rms_norm_ref(x.data(), wp, want.data(), s.n, s.rows, 1e-6f);
                            rms_norm_cpu_at(level, pool, x.data(), wp, got.data(), s.n, s.rows, 1e-6f);
                            int64_t d = first_diff(want.data(), got.data(), total);
                            ASSERT_EQ(d, -1) << "threads " << threads << " n " << s.n << " rows " << s.rows
                                             << " scale " << scale << " variant " << variant
                                             << (wp ? "" : " no weight") << ": row " << d / s.n << " ref "
                                             << want[d] << " got " << got[d];
                            rms_norm_cpu_at(level, pool, inplace.data(), wp, inplace.data(), s.n, s.rows, 1e-6f);
                            d = first_diff(want.data(), inplace.data(), total);
                            ASSERT_EQ(d, -1) << "in place, n " << s.n << " scale " << scale << " variant " << variant;
                        }
                    }
                }
            }
        }
    }
}

// The exactness test of the vector sum: a row whose sequential double sum rounds at a known
// place (2^60 then many ones) must still give the reference's sum.
TEST(RmsNormCpu, RoundingOfTheSequentialSumIsKept) {
    const int64_t n = 256;
    std::vector<float> x(n, 1.0f);
    x[0] = std::ldexp(1.0f, 30);      // square 2^60: the ones that follow are below its last bit
    x[100] = std::ldexp(1.0f, 14);    // square 2^28
    x[200] = std::ldexp(1.0f, -70);   // square 2^-140 (subnormal float)
    std::vector<float> want(n), got(n);
    rms_norm_ref(x.data(), nullptr, want.data(), n, 1, 0.0f);
    ThreadPool pool(1);
    for (SimdLevel level : supported_simd_levels()) {
        rms_norm_cpu_at(level, pool, x.data(), nullptr, got.data(), n, 1, 0.0f);
        EXPECT_EQ(first_diff(want.data(), got.data(), n), -1) << simd_level_name(level);
    }
}

}  // namespace
}  // namespace hearth::backend
