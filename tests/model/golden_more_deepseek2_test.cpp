// deepseek2-tiny (MLA + sigmoid-routed grouped experts) against llama.cpp's logits
// (testdata/README.md §5). F16: max-abs <= 0.05, identical top-1, full greedy path. Q8_0:
// router near-ties flip experts at a few positions, so mean-abs and top-1 agreement.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "model/session.h"
#include "support/testdata.h"

namespace hearth::model {
namespace {

struct Deepseek2Case {
    const char* file;
    bool moe_quant;
};

class Deepseek2Golden : public ::testing::TestWithParam<Deepseek2Case> {};

int32_t argmax_of(const float* v, int64_t n) { return (int32_t)(std::max_element(v, v + n) - v); }

TEST_P(Deepseek2Golden, LogitsAndGreedyMatchReference) {
    const Deepseek2Case c = GetParam();
    const std::string golden = test::testdata_path(std::string("golden/") + c.file);
    const auto g = nlohmann::json::parse(test::read_text_file(golden + ".json"));
    const std::vector<float> ref = test::read_f32_file(golden + ".logits.f32");
    auto file = gguf::open_gguf(test::testdata_path(std::string("models/") + c.file + ".gguf"));
    ASSERT_TRUE(file.ok()) << file.status().message();
    auto model = load_model(file.value(), LoadOptions{2});
    ASSERT_TRUE(model.ok()) << model.status().message();
    const int64_t n_vocab = model.value()->hparams().n_vocab;
    const auto prompt = g["prompt_tokens"].get<std::vector<int32_t>>();
    ASSERT_EQ(ref.size(), prompt.size() * n_vocab);
    auto session = Session::create(*model.value(), 512);
    ASSERT_TRUE(session.ok());
    std::vector<float> logits;
    ASSERT_TRUE(session->eval(prompt, true, logits).ok());

    double max_abs = 0.0, sum_abs = 0.0;
    int top1_same = 0;
    for (size_t t = 0; t < prompt.size(); ++t) {
        const float* a = logits.data() + t * n_vocab;
        const float* b = ref.data() + t * n_vocab;
        for (int64_t i = 0; i < n_vocab; ++i) {
            max_abs = std::max(max_abs, (double)std::fabs(a[i] - b[i]));
            sum_abs += std::fabs(a[i] - b[i]);
        }
        top1_same += argmax_of(a, n_vocab) == argmax_of(b, n_vocab);
    }
    const double mean_abs = sum_abs / ref.size(), top1 = (double)top1_same / prompt.size();
    std::printf("[ %s ] max-abs %.4g mean-abs %.4g top-1 %.1f%%\n", c.file, max_abs, mean_abs, 100 * top1);
    if (c.moe_quant) {
        EXPECT_LE(mean_abs, 0.11);
        EXPECT_GE(top1, 0.90);
    } else {
        EXPECT_LE(max_abs, 0.05);
        EXPECT_EQ(top1_same, (int)prompt.size());
    }

    // Chunked prefill reads earlier chunks back from the latent cache: same logits.
    auto chunked = Session::create(*model.value(), 512);
    ASSERT_TRUE(chunked.ok());
    std::vector<float> logits7;
    ASSERT_TRUE(chunked->eval(prompt, true, logits7, /*n_batch=*/7).ok());
    double chunk_diff = 0.0;
    for (size_t i = 0; i < logits.size(); ++i) chunk_diff = std::max(chunk_diff, (double)std::fabs(logits[i] - logits7[i]));
    EXPECT_LE(chunk_diff, 1e-3);

    // Greedy continuation up to the first reference near-tie.
    const auto want = g["greedy_tokens"].get<std::vector<int32_t>>();
    const auto& top5 = g["greedy_top5_logits"];
    int32_t next = argmax_of(logits.data() + (prompt.size() - 1) * n_vocab, n_vocab);
    for (size_t step = 0; step < want.size(); ++step) {
        if (top5[step][0].get<double>() - top5[step][1].get<double>() < (c.moe_quant ? 0.5 : 0.05)) break;
        ASSERT_EQ(next, want[step]) << "greedy step " << step;
        ASSERT_TRUE(session->eval(std::span<const int32_t>(&next, 1), false, logits).ok());
        next = argmax_of(logits.data(), n_vocab);
    }
}

INSTANTIATE_TEST_SUITE_P(Models, Deepseek2Golden,
                         ::testing::Values(Deepseek2Case{"deepseek2-tiny.F16", false},
                                           Deepseek2Case{"deepseek2-tiny.Q8_0", true}),
                         [](const auto& info) { return std::string(info.param.moe_quant ? "Q8_0" : "F16"); });

// Bad metadata is a Status naming the key or tensor, never a crash.
TEST(Deepseek2Load, BadMetadataIsAClearError) {
    auto file = gguf::open_gguf(test::testdata_path("models/deepseek2-tiny.F16.gguf"));
    ASSERT_TRUE(file.ok()) << file.status().message();
    using gguf::Value;
    const struct {
        const char* key;
        Value value;
        StatusCode code;
        const char* mentions;
    } kBad[] = {
        {"deepseek2.expert_group_count", Value::make_u32(3), StatusCode::corrupt, "expert_group_count"},
        {"deepseek2.expert_used_count", Value::make_u32(5), StatusCode::corrupt, "expert_group_used_count"},
        {"deepseek2.expert_gating_func", Value::make_u32(4), StatusCode::unsupported, "expert_gating_func"},
        {"deepseek2.rope.dimension_count", Value::make_u32(48), StatusCode::corrupt, "rope.dimension_count"},
        {"deepseek2.rope.scaling.type", Value::make_string("longrope"), StatusCode::unsupported, "longrope"},
        {"deepseek2.attention.kv_lora_rank", Value::make_u32(32), StatusCode::corrupt, "key_length"},
        {"deepseek2.attention.q_lora_rank", Value::make_u32(0), StatusCode::not_found, "q_lora_rank"},
        {"deepseek2.attention.value_length_mla", Value::make_u32(16), StatusCode::corrupt, "blk.0.attn_v_b.weight"},
        {"deepseek2.leading_dense_block_count", Value::make_u32(0), StatusCode::not_found, "blk.0.ffn_gate_inp"},
        {"deepseek2.attention.head_count", Value::make_string("4"), StatusCode::invalid_argument, "head_count"},
    };
    for (const auto& b : kBad) {
        auto broken = std::make_shared<gguf::GgufFile>(*file.value());
        broken->meta.set(b.key, b.value);
        auto model = load_model(broken, LoadOptions{1});
        ASSERT_FALSE(model.ok()) << b.key;
        EXPECT_EQ(model.status().code(), b.code) << b.key << ": " << model.status().message();
        EXPECT_NE(model.status().message().find(b.mentions), std::string::npos) << model.status().message();
    }
}

}  // namespace
}  // namespace hearth::model
