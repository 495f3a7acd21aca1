// Quantize -> dequantize on seeded random rows: the error must stay within a per-type bound
// tight enough that a wrong bit layout (swapped nibbles, misplaced high bits, wrong scale
// packing) fails. Plus exact checks of the rounding rules the file formats depend on.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>

#include "quant/quant_helpers.h"
#include "quant/q8_0.h"
#include "quant/q8_1.h"
#include "quant/q8_k.h"
#include "quant_test_util.h"

namespace hearth::quant {
namespace {

using test::dequantize;
using test::gaussian;
using test::quantize;
using test::relative_rms_error;

struct Bound {
    QuantType type;
    double max_rel_rms;  // on N(0, 1) rows: about 1.25x the worst measured value
};

const Bound kBounds[] = {
    {QuantType::f32, 0.0},     {QuantType::f16, 4e-4},     {QuantType::bf16, 3e-3},
    {QuantType::q8_0, 0.0085}, {QuantType::q8_1, 0.0085},  {QuantType::q8_k, 0.0095},
    {QuantType::q6_k, 0.023},  {QuantType::q5_0, 0.06},    {QuantType::q5_1, 0.057},
    {QuantType::q5_k, 0.047},  {QuantType::q4_0, 0.12},    {QuantType::q4_1, 0.113},
    {QuantType::q4_k, 0.093},  {QuantType::iq4_nl, 0.105}, {QuantType::iq4_xs, 0.1},
    {QuantType::mxfp4, 0.165}, {QuantType::q3_k, 0.2},     {QuantType::q2_k, 0.4},
};

TEST(QuantRoundTrip, ErrorWithinBound) {
    const int64_t kLengths[] = {32, 96, 256, 768, 4096};
    for (const Bound& b : kBounds) {
        const int64_t bs = block_size(b.type);
        double worst = 0;
        for (int64_t n : kLengths) {
            if (n % bs != 0) continue;
            for (uint32_t seed = 1; seed <= 3; ++seed) {
                SCOPED_TRACE(testing::Message() << type_name(b.type) << " n=" << n << " seed=" << seed);
                const std::vector<float> x = gaussian(n, seed * 7919u + (uint32_t)n);
                const std::vector<std::byte> q = quantize(b.type, x);
                ASSERT_EQ(q.size(), row_size(b.type, n));
                const std::vector<float> y = dequantize(b.type, q.data(), n);
                const double e = relative_rms_error(x, y);
                worst = std::max(worst, e);
                EXPECT_LE(e, b.max_rel_rms);
                // Scale invariance: the same data at 1/1000 the size quantizes as well.
                std::vector<float> xs = x;
                for (float& v : xs) v *= 1e-3f;
                const std::vector<float> ys = dequantize(b.type, quantize(b.type, xs).data(), n);
                EXPECT_LE(relative_rms_error(xs, ys), b.max_rel_rms * 1.05 + 1e-3);
            }
        }
        std::printf("  %-7s worst rel. RMS error %.5f (bound %.5f)\n", type_name(b.type), worst,
                    b.max_rel_rms);
    }
}

TEST(QuantRoundTrip, AsymmetricTypesKeepAnOffset) {
    // All-positive data: the min-carrying formats must represent the offset, not just the spread.
    const std::pair<QuantType, double> kCases[] = {
        {QuantType::q4_1, 0.01}, {QuantType::q5_1, 0.005}, {QuantType::q2_k, 0.12},
        {QuantType::q4_k, 0.03}, {QuantType::q5_k, 0.015},
    };
    for (auto [t, bound] : kCases) {
        std::vector<float> x = gaussian(512, 99, 0.1f);
        for (float& v : x) v += 1.f;
        const std::vector<float> y = dequantize(t, quantize(t, x).data(), 512);
        const double e = relative_rms_error(x, y);
        std::printf("  %-7s offset rel. RMS error %.5f\n", type_name(t), e);
        EXPECT_LE(e, bound) << type_name(t);
    }
}

TEST(QuantRoundTrip, ZeroRowsStayZero) {
    for (QuantType t : test::computable_types()) {
        const int64_t n = 512;
        const std::vector<float> x((size_t)n, 0.f);
        const std::vector<float> y = dequantize(t, quantize(t, x).data(), n);
        for (int64_t i = 0; i < n; ++i) ASSERT_EQ(y[(size_t)i], 0.f) << type_name(t) << " " << i;
    }
}

TEST(QuantRoundTrip, ZeroBlockBytes) {
    // Exact bytes ggml writes for an all-zero super-block (llama-quantize output depends on
    // these corner cases; IQ4_XS stores d = -0.0).
    const std::vector<float> zeros(256, 0.f);
    const auto q6 = quantize(QuantType::q6_k, zeros);
    for (std::byte b : q6) EXPECT_EQ(b, std::byte{0});
    const auto xs = quantize(QuantType::iq4_xs, zeros);
    BlockIQ4_XS blk;
    std::memcpy(&blk, xs.data(), sizeof blk);
    EXPECT_EQ(blk.d, 0x8000);
    EXPECT_EQ(blk.scales_h, 0xAAAA);  // every sub-scale 0 + 32
    for (uint8_t s : blk.scales_l) EXPECT_EQ(s, 0);
    for (uint8_t q : blk.qs) EXPECT_EQ(q, 0x88);  // index 8 (value 1) is nearest to 0
}

TEST(QuantRounding, NearestIntTiesToEven) {
    using detail::nearest_int;
    EXPECT_EQ(nearest_int(0.5f), 0);
    EXPECT_EQ(nearest_int(1.5f), 2);
    EXPECT_EQ(nearest_int(2.5f), 2);
    EXPECT_EQ(nearest_int(-0.5f), 0);
    EXPECT_EQ(nearest_int(-1.5f), -2);
    EXPECT_EQ(nearest_int(-2.7f), -3);
    EXPECT_EQ(nearest_int(126.49f), 126);
    EXPECT_EQ(nearest_int(4194303.f), 4194303);
}

TEST(QuantRounding, Q8_0ReferenceRoundsHalfAwayFromZero) {
    // amax = 127 gives d = 1 and id = 1 exactly, so x = k + 0.5 is a true tie.
    std::vector<float> x(32, 0.f);
    x[0] = 127.f;
    x[1] = 2.5f;
    x[2] = -2.5f;
    x[3] = 3.5f;
    BlockQ8_0 ref, simd;
    quantize_row_q8_0(x.data(), &ref, 32);
    quantize_row_q8_0_x86(x.data(), &simd, 32);
    EXPECT_EQ(ref.d, f32_to_fp16(1.f));
    EXPECT_EQ(ref.qs[0], 127);
    EXPECT_EQ(ref.qs[1], 3);
    EXPECT_EQ(ref.qs[2], -3);
    EXPECT_EQ(ref.qs[3], 4);
    EXPECT_EQ(simd.d, ref.d);
    EXPECT_EQ(simd.qs[1], 2);  // ggml's AVX path rounds ties to even
    EXPECT_EQ(simd.qs[2], -2);
    EXPECT_EQ(simd.qs[3], 4);

    BlockQ8_1 r1, s1;
    quantize_row_q8_1(x.data(), &r1, 32);
    quantize_row_q8_1_x86(x.data(), &s1, 32);
    EXPECT_EQ(r1.s, f32_to_fp16(127.f + 3 - 3 + 4));
    EXPECT_EQ(s1.s, f32_to_fp16(127.f + 2 - 2 + 4));
}

TEST(QuantRounding, Q8_KUsesMinus127OverSignedMax) {
    std::vector<float> x(256, 0.f);
    x[5] = -2.f;  // largest magnitude is negative
    x[6] = 1.f;
    x[20] = 0.5f;
    BlockQ8_K b;
    quantize_row_q8_k(x.data(), &b, 256);
    EXPECT_FLOAT_EQ(b.d, 1.f / (-127.f / -2.f));
    EXPECT_EQ(b.qs[5], -127);
    EXPECT_EQ(b.qs[6], 64);   // 63.5 ties to even
    EXPECT_EQ(b.qs[20], 32);  // 31.75
    EXPECT_EQ(b.bsums[0], -127 + 64);
    EXPECT_EQ(b.bsums[1], 32);
}

TEST(QuantRounding, Mxfp4Scale) {
    EXPECT_EQ(e8m0_to_f32_half(0), std::ldexp(1.f, -128));
    EXPECT_EQ(e8m0_to_f32_half(1), std::ldexp(1.f, -127));
    EXPECT_EQ(e8m0_to_f32_half(2), std::ldexp(1.f, -126));
    EXPECT_EQ(e8m0_to_f32_half(127), 0.5f);
    EXPECT_EQ(e8m0_to_f32_half(130), 4.f);
    // amax 6 -> e = floor(log2 6) - 2 + 127 = 127: the block scale is 1 and 6 is code 7.
    std::vector<float> x(32, 0.f);
    x[0] = 6.f;
    x[1] = -0.5f;
    x[17] = 1.5f;
    BlockMXFP4 b;
    quantize_row_mxfp4(x.data(), &b, 32);
    EXPECT_EQ(b.e, 127);
    EXPECT_EQ(b.qs[0] & 0xF, 7);
    EXPECT_EQ(b.qs[1] & 0xF, 9);
    EXPECT_EQ(b.qs[1] >> 4, 3);
    EXPECT_EQ(b.qs[2], 0);  // zeros take code 0, not the negative zero 8
}

TEST(QuantLayout, HandBuiltBlocks) {
    // Q4_0: element j is the low nibble of byte j, element j + 16 the high nibble.
    BlockQ4_0 q4{};
    q4.d = f32_to_fp16(0.5f);
    q4.qs[0] = 0x1F;  // element 0 -> 15, element 16 -> 1
    q4.qs[15] = 0x80; // element 15 -> 0, element 31 -> 8
    float y[32];
    dequantize_row_q4_0(&q4, y, 32);
    EXPECT_EQ(y[0], 3.5f);
    EXPECT_EQ(y[16], -3.5f);
    EXPECT_EQ(y[15], -4.f);
    EXPECT_EQ(y[31], 0.f);

    // Q5_0: bit j of qh is bit 4 of element j.
    BlockQ5_0 q5{};
    q5.d = f32_to_fp16(1.f);
    for (uint8_t& b : q5.qs) b = 0x00;
    q5.qh[0] = 0x01;  // element 0 -> 16
    q5.qh[2] = 0x02;  // bit 17 -> element 17 -> 16
    dequantize_row_q5_0(&q5, y, 32);
    EXPECT_EQ(y[0], 0.f);
    EXPECT_EQ(y[1], -16.f);
    EXPECT_EQ(y[17], 0.f);
    EXPECT_EQ(y[16], -16.f);

    // Q4_K scale packing: sub-block 5 takes its scale's low nibble from byte 9 and its high
    // bits from byte 1, its min's low nibble from byte 9 (high) and high bits from byte 5.
    BlockQ4_K k4{};
    k4.d = f32_to_fp16(1.f);
    k4.dmin = f32_to_fp16(1.f);
    k4.scales[9] = 0x3A;         // scale low 0xA, min low 0x3
    k4.scales[1] = 0x40;         // scale high bits 01
    k4.scales[5] = 0x80;         // min high bits 10
    k4.qs[32 + 32 + 0] = 0x20;   // element 5*32 + 0: chunk 2, high nibble of byte 64 -> 2
    std::vector<float> out(256);
    dequantize_row_q4_k(&k4, out.data(), 256);
    EXPECT_EQ(out[160], (float)(0x1A * 2 - 0x23));
    EXPECT_EQ(out[161], -(float)0x23);
}

}  // namespace
}  // namespace hearth::quant
