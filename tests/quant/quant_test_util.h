// Helpers shared by the quant tests: seeded data, type-erased row conversion through the
// traits table, and random-but-valid blocks for every computable type.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "base/fp16.h"
#include "quant/iq4_xs.h"
#include "quant/mxfp4.h"
#include "quant/q2_k.h"
#include "quant/q3_k.h"
#include "quant/q4_0.h"
#include "quant/q4_1.h"
#include "quant/q4_k.h"
#include "quant/q5_0.h"
#include "quant/q5_1.h"
#include "quant/q5_k.h"
#include "quant/q6_k.h"
#include "quant/types.h"

namespace hearth::quant::test {

// Every type with a dequantizer, quantizer and dot product.
inline const std::vector<QuantType>& computable_types() {
    static const std::vector<QuantType> kTypes = {
        QuantType::f32,  QuantType::f16,  QuantType::bf16, QuantType::q4_0,   QuantType::q4_1,
        QuantType::q5_0, QuantType::q5_1, QuantType::q8_0, QuantType::q2_k,   QuantType::q3_k,
        QuantType::q4_k, QuantType::q5_k, QuantType::q6_k, QuantType::q8_k,   QuantType::iq4_nl,
        QuantType::iq4_xs, QuantType::mxfp4,
    };
    return kTypes;
}

// n values drawn from N(0, sigma), seeded.
inline std::vector<float> gaussian(int64_t n, uint32_t seed, float sigma = 1.f) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> dist(0.f, sigma);
    std::vector<float> v((size_t)n);
    for (float& x : v) x = dist(rng);
    return v;
}

// Quantizes a row of n floats to `t` through the traits table; returns the row's bytes.
inline std::vector<std::byte> quantize(QuantType t, const std::vector<float>& x) {
    const int64_t n = (int64_t)x.size();
    std::vector<std::byte> q(row_size(t, n));
    traits(t).quantize_row(x.data(), q.data(), n);
    return q;
}

inline std::vector<float> dequantize(QuantType t, const void* q, int64_t n) {
    std::vector<float> y((size_t)n);
    traits(t).dequantize_row(q, y.data(), n);
    return y;
}

// Root-mean-square of (a - b) divided by the RMS of a.
inline double relative_rms_error(const std::vector<float>& a, const std::vector<float>& b) {
    double err = 0, ref = 0;
    for (size_t i = 0; i < a.size(); ++i) {
        err += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        ref += (double)a[i] * a[i];
    }
    return ref > 0 ? std::sqrt(err / ref) : std::sqrt(err);
}

// A random fp16 scale with magnitude in [2^-10, 2^-2] and random sign.
inline uint16_t random_fp16_scale(std::mt19937& rng, bool allow_negative = true) {
    std::uniform_real_distribution<float> mag(-10.f, -2.f);
    float v = std::exp2(mag(rng));
    if (allow_negative && (rng() & 1u)) v = -v;
    return f32_to_fp16(v);
}

// n_blocks blocks of type t made of random bytes, with the scale fields replaced by sane
// values (finite, moderate fp16 / E8M0), so every code, sub-scale and packing bit is random.
inline std::vector<std::byte> random_blocks(QuantType t, int64_t n_blocks, uint32_t seed) {
    std::mt19937 rng(seed);
    const size_t bytes = (size_t)n_blocks * type_size(t);
    std::vector<std::byte> data(bytes);
    for (auto& b : data) b = (std::byte)(rng() & 0xFFu);
    auto each = [&](auto* blocks, auto&& fix) {
        for (int64_t i = 0; i < n_blocks; ++i) fix(blocks[i]);
    };
    std::byte* p = data.data();
    switch (t) {
        case QuantType::f32: {
            std::normal_distribution<float> dist(0.f, 1.f);
            for (int64_t i = 0; i < n_blocks; ++i) {
                const float v = dist(rng);
                std::memcpy(p + 4 * i, &v, 4);
            }
            break;
        }
        case QuantType::f16:
        case QuantType::bf16: {
            std::normal_distribution<float> dist(0.f, 1.f);
            for (int64_t i = 0; i < n_blocks; ++i) {
                const float v = dist(rng);
                const uint16_t h = t == QuantType::f16 ? f32_to_fp16(v) : f32_to_bf16(v);
                std::memcpy(p + 2 * i, &h, 2);
            }
            break;
        }
        case QuantType::q4_0: each((BlockQ4_0*)p, [&](BlockQ4_0& b) { b.d = random_fp16_scale(rng); }); break;
        case QuantType::q5_0: each((BlockQ5_0*)p, [&](BlockQ5_0& b) { b.d = random_fp16_scale(rng); }); break;
        case QuantType::q8_0: each((BlockQ8_0*)p, [&](BlockQ8_0& b) { b.d = random_fp16_scale(rng); }); break;
        case QuantType::iq4_nl: each((BlockIQ4_NL*)p, [&](BlockIQ4_NL& b) { b.d = random_fp16_scale(rng); }); break;
        case QuantType::q4_1:
            each((BlockQ4_1*)p, [&](BlockQ4_1& b) { b.d = random_fp16_scale(rng); b.m = random_fp16_scale(rng); });
            break;
        case QuantType::q5_1:
            each((BlockQ5_1*)p, [&](BlockQ5_1& b) { b.d = random_fp16_scale(rng); b.m = random_fp16_scale(rng); });
            break;
        case QuantType::q8_1:
            each((BlockQ8_1*)p, [&](BlockQ8_1& b) {
                b.d = random_fp16_scale(rng);
                int sum = 0;
                for (int8_t q : b.qs) sum += q;
                b.s = f32_to_fp16(fp16_to_f32(b.d) * sum);
            });
            break;
        case QuantType::q2_k:
            each((BlockQ2_K*)p, [&](BlockQ2_K& b) { b.d = random_fp16_scale(rng); b.dmin = random_fp16_scale(rng); });
            break;
        case QuantType::q3_k: each((BlockQ3_K*)p, [&](BlockQ3_K& b) { b.d = random_fp16_scale(rng); }); break;
        case QuantType::q4_k:
            each((BlockQ4_K*)p, [&](BlockQ4_K& b) { b.d = random_fp16_scale(rng); b.dmin = random_fp16_scale(rng); });
            break;
        case QuantType::q5_k:
            each((BlockQ5_K*)p, [&](BlockQ5_K& b) { b.d = random_fp16_scale(rng); b.dmin = random_fp16_scale(rng); });
            break;
        case QuantType::q6_k: each((BlockQ6_K*)p, [&](BlockQ6_K& b) { b.d = random_fp16_scale(rng); }); break;
        case QuantType::iq4_xs: each((BlockIQ4_XS*)p, [&](BlockIQ4_XS& b) { b.d = random_fp16_scale(rng); }); break;
        case QuantType::q8_k:
            each((BlockQ8_K*)p, [&](BlockQ8_K& b) {
                b.d = fp16_to_f32(random_fp16_scale(rng));
                for (int g = 0; g < 16; ++g) {
                    int sum = 0;
                    for (int j = 0; j < 16; ++j) sum += b.qs[16 * g + j];
                    b.bsums[g] = (int16_t)sum;
                }
            });
            break;
        case QuantType::mxfp4:
            each((BlockMXFP4*)p, [&](BlockMXFP4& b) { b.e = (uint8_t)(118 + rng() % 16); });
            break;
        default: break;
    }
    return data;
}

}  // namespace hearth::quant::test
