// read_rope_hparams: rope scaling types and YaRN derived as llama.cpp derives them.
#include <gtest/gtest.h>

#include <cmath>

#include "model/hparams.h"

namespace hearth::model {
namespace {

// Hparams of arch "t" with 64 rotated dims, trained context 8192 and the given metadata.
Result<Hparams> rope_of(std::vector<std::pair<std::string, gguf::Value>> kv) {
    gguf::Metadata meta;
    for (auto& [k, v] : kv) meta.set("t." + k, std::move(v));
    Hparams hp;
    hp.n_rot = 64;
    hp.n_ctx_train = 8192;
    HEARTH_TRY(read_rope_hparams(ArchKeys(meta, "t"), hp));
    return hp;
}

using gguf::Value;

TEST(RopeHparams, NoScalingKeys) {
    auto hp = rope_of({{"rope.freq_base", Value::make_f32(500000.0f)}});
    ASSERT_TRUE(hp.ok()) << hp.status().message();
    const ops::RopeConfig& r = hp->rope;
    EXPECT_EQ(r.n_rot, 64);
    EXPECT_EQ(r.freq_base, 500000.0f);
    EXPECT_EQ(r.freq_scale, 1.0f);
    EXPECT_EQ(r.ext_factor, 0.0f);
    EXPECT_EQ(r.attn_factor, 1.0f);
    EXPECT_EQ(r.n_ctx_orig, 8192);
}

TEST(RopeHparams, LinearLongropeAndAbsentTypeScaleByTheFactor) {
    for (const char* type : {"linear", "longrope", ""}) {
        std::vector<std::pair<std::string, Value>> kv = {{"rope.scaling.factor", Value::make_f32(8.0f)},
                                                         {"rope.scaling.attn_factor", Value::make_f32(1.25f)}};
        if (*type) kv.push_back({"rope.scaling.type", Value::make_string(type)});
        auto hp = rope_of(kv);
        ASSERT_TRUE(hp.ok()) << type << ": " << hp.status().message();
        EXPECT_EQ(hp->rope.freq_scale, 0.125f) << type;
        EXPECT_EQ(hp->rope.ext_factor, 0.0f) << type;
        EXPECT_EQ(hp->rope.attn_factor, 1.25f) << type;
    }
}

TEST(RopeHparams, NoneAndLlama3DoNotScale) {
    for (const char* type : {"none", "llama3"}) {
        auto hp = rope_of({{"rope.scaling.type", Value::make_string(type)}, {"rope.scaling.factor", Value::make_f32(8.0f)}});
        ASSERT_TRUE(hp.ok()) << type;
        EXPECT_EQ(hp->rope.freq_scale, 1.0f) << type;
        EXPECT_EQ(hp->rope_freq_scale_train, 0.125f) << type;
    }
}

TEST(RopeHparams, YarnFollowsLlamaCpp) {
    // Without a log multiplier: attn_factor = get_mscale(f, 1) / (1 + 0.1 ln f) = 1.
    auto hp = rope_of({{"rope.scaling.type", Value::make_string("yarn")},
                       {"rope.scaling.factor", Value::make_f32(32.0f)},
                       {"rope.scaling.original_context_length", Value::make_u32(4096)}});
    ASSERT_TRUE(hp.ok()) << hp.status().message();
    EXPECT_EQ(hp->rope.freq_scale, 1.0f / 32.0f);
    EXPECT_EQ(hp->rope.ext_factor, 1.0f);
    EXPECT_NEAR(hp->rope.attn_factor, 1.0f, 1e-6f);
    EXPECT_EQ(hp->rope.n_ctx_orig, 4096);
    // With one (DeepSeek: mscale == mscale_all_dim): only the kernel's factor is cancelled.
    hp = rope_of({{"rope.scaling.type", Value::make_string("yarn")},
                  {"rope.scaling.factor", Value::make_f32(40.0f)},
                  {"rope.scaling.yarn_log_multiplier", Value::make_f32(0.1f)}});
    ASSERT_TRUE(hp.ok());
    EXPECT_NEAR(hp->rope.attn_factor, 1.0 / (1.0 + 0.1 * std::log(40.0)), 1e-6);
    EXPECT_EQ(hp->rope_yarn_log_mul, 0.1f);
}

TEST(RopeHparams, BadValuesAreErrorsNamingTheKey) {
    auto hp = rope_of({{"rope.scaling.type", Value::make_string("dynamic")}});
    ASSERT_FALSE(hp.ok());
    EXPECT_EQ(hp.status().code(), StatusCode::unsupported);
    EXPECT_NE(hp.status().message().find("dynamic"), std::string::npos);
    hp = rope_of({{"rope.scaling.factor", Value::make_f32(-2.0f)}});
    ASSERT_FALSE(hp.ok());
    EXPECT_NE(hp.status().message().find("t.rope.scaling.factor"), std::string::npos);
    hp = rope_of({{"rope.freq_base", Value::make_f32(0.0f)}});
    ASSERT_FALSE(hp.ok());
    EXPECT_NE(hp.status().message().find("t.rope.freq_base"), std::string::npos);
}

}  // namespace
}  // namespace hearth::model
