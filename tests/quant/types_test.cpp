// The type table: GGUF ids, block geometry, names and which kernels exist.
#include "quant/types.h"

#include <gtest/gtest.h>

#include <string>

namespace hearth::quant {
namespace {

struct Geometry {
    QuantType type;
    uint32_t id;
    const char* name;
    int64_t block_size;
    size_t type_size;
    bool computable;
};

// Ids and sizes as in ggml.h / ggml-common.h.
const Geometry kGeometry[] = {
    {QuantType::f32, 0, "f32", 1, 4, true},
    {QuantType::f16, 1, "f16", 1, 2, true},
    {QuantType::q4_0, 2, "q4_0", 32, 18, true},
    {QuantType::q4_1, 3, "q4_1", 32, 20, true},
    {QuantType::q5_0, 6, "q5_0", 32, 22, true},
    {QuantType::q5_1, 7, "q5_1", 32, 24, true},
    {QuantType::q8_0, 8, "q8_0", 32, 34, true},
    {QuantType::q8_1, 9, "q8_1", 32, 36, false},
    {QuantType::q2_k, 10, "q2_k", 256, 84, true},
    {QuantType::q3_k, 11, "q3_k", 256, 110, true},
    {QuantType::q4_k, 12, "q4_k", 256, 144, true},
    {QuantType::q5_k, 13, "q5_k", 256, 176, true},
    {QuantType::q6_k, 14, "q6_k", 256, 210, true},
    {QuantType::q8_k, 15, "q8_k", 256, 292, true},
    {QuantType::iq2_xxs, 16, "iq2_xxs", 256, 66, false},
    {QuantType::iq2_xs, 17, "iq2_xs", 256, 74, false},
    {QuantType::iq3_xxs, 18, "iq3_xxs", 256, 98, false},
    {QuantType::iq1_s, 19, "iq1_s", 256, 50, false},
    {QuantType::iq4_nl, 20, "iq4_nl", 32, 18, true},
    {QuantType::iq3_s, 21, "iq3_s", 256, 110, false},
    {QuantType::iq2_s, 22, "iq2_s", 256, 82, false},
    {QuantType::iq4_xs, 23, "iq4_xs", 256, 136, true},
    {QuantType::i8, 24, "i8", 1, 1, false},
    {QuantType::i16, 25, "i16", 1, 2, false},
    {QuantType::i32, 26, "i32", 1, 4, false},
    {QuantType::i64, 27, "i64", 1, 8, false},
    {QuantType::f64, 28, "f64", 1, 8, false},
    {QuantType::iq1_m, 29, "iq1_m", 256, 56, false},
    {QuantType::bf16, 30, "bf16", 1, 2, true},
    {QuantType::tq1_0, 34, "tq1_0", 256, 54, false},
    {QuantType::tq2_0, 35, "tq2_0", 256, 66, false},
    {QuantType::mxfp4, 39, "mxfp4", 32, 17, true},
};

TEST(QuantTypes, GeometryMatchesGguf) {
    for (const Geometry& g : kGeometry) {
        SCOPED_TRACE(g.name);
        EXPECT_EQ((uint32_t)g.type, g.id);
        const TypeTraits* t = find_traits(g.id);
        ASSERT_NE(t, nullptr);
        EXPECT_EQ(t, &traits(g.type));
        EXPECT_TRUE(t->is_known);
        EXPECT_STREQ(t->name, g.name);
        EXPECT_STREQ(type_name(g.type), g.name);
        EXPECT_EQ(t->block_size, g.block_size);
        EXPECT_EQ(t->type_size, g.type_size);
        EXPECT_EQ(can_compute(g.type), g.computable);
    }
}

TEST(QuantTypes, UnknownIdsHaveNoTraits) {
    for (uint32_t id : {4u, 5u, 31u, 32u, 33u, 36u, 37u, 38u, 40u, 41u, 42u, 1000u, 0xFFFFFFFFu}) {
        EXPECT_EQ(find_traits(id), nullptr) << id;
    }
}

TEST(QuantTypes, VecDotTypesFollowGgmlCpu) {
    const std::pair<QuantType, QuantType> kExpected[] = {
        {QuantType::f32, QuantType::f32},     {QuantType::f16, QuantType::f16},
        {QuantType::bf16, QuantType::bf16},   {QuantType::q4_0, QuantType::q8_0},
        {QuantType::q5_0, QuantType::q8_0},   {QuantType::q8_0, QuantType::q8_0},
        {QuantType::iq4_nl, QuantType::q8_0}, {QuantType::mxfp4, QuantType::q8_0},
        {QuantType::q4_1, QuantType::q8_1},   {QuantType::q5_1, QuantType::q8_1},
        {QuantType::q2_k, QuantType::q8_k},   {QuantType::q3_k, QuantType::q8_k},
        {QuantType::q4_k, QuantType::q8_k},   {QuantType::q5_k, QuantType::q8_k},
        {QuantType::q6_k, QuantType::q8_k},   {QuantType::iq4_xs, QuantType::q8_k},
        {QuantType::q8_k, QuantType::q8_k},
    };
    for (auto [weight, act] : kExpected) {
        SCOPED_TRACE(type_name(weight));
        const TypeTraits& t = traits(weight);
        EXPECT_EQ(t.vec_dot_type, act);
        EXPECT_NE(t.vec_dot, nullptr);
        EXPECT_NE(t.dequantize_row, nullptr);
        EXPECT_NE(t.quantize_row, nullptr);
        // The activation side's block must tile the weight's block.
        EXPECT_EQ(t.block_size % block_size(act), 0);
    }
    EXPECT_NE(traits(QuantType::q8_1).quantize_row, nullptr);
    EXPECT_EQ(traits(QuantType::iq2_xxs).dequantize_row, nullptr);
}

TEST(QuantTypes, ParseTypeName) {
    EXPECT_EQ(parse_type_name("Q4_K"), QuantType::q4_k);
    EXPECT_EQ(parse_type_name("q4_k"), QuantType::q4_k);
    EXPECT_EQ(parse_type_name("F16"), QuantType::f16);
    EXPECT_EQ(parse_type_name("bf16"), QuantType::bf16);
    EXPECT_EQ(parse_type_name("IQ4_XS"), QuantType::iq4_xs);
    EXPECT_EQ(parse_type_name("MXFP4"), QuantType::mxfp4);
    EXPECT_EQ(parse_type_name("TQ2_0"), QuantType::tq2_0);
    EXPECT_FALSE(parse_type_name("q4_k_m").has_value());
    EXPECT_FALSE(parse_type_name("").has_value());
    EXPECT_FALSE(parse_type_name("unknown").has_value());
    for (const Geometry& g : kGeometry) {
        std::string upper = g.name;
        for (char& c : upper) c = (char)std::toupper((unsigned char)c);
        EXPECT_EQ(parse_type_name(upper), g.type) << upper;
    }
}

TEST(QuantTypes, RowSize) {
    EXPECT_EQ(row_size(QuantType::q4_0, 4096), 4096u / 32 * 18);
    EXPECT_EQ(row_size(QuantType::q6_k, 512), 2u * 210);
    EXPECT_EQ(row_size(QuantType::f16, 7), 14u);
}

}  // namespace
}  // namespace hearth::quant
