// gpt-oss-tiny (sinks, SWA, YaRN, biased experts, SwiGLU-OAI) and llama4-tiny (NoPE layer,
// q/k L2 norm, sigmoid-weighted expert input + shared expert) against llama.cpp's logits
// (testdata/README.md §5). F16: max-abs <= 0.05, identical top-1, greedy path up to the first
// near-tie. Quantized MoE files: router near-ties flip experts, so mean-abs and top-1 agreement.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "model/session.h"
#include "support/testdata.h"

namespace hearth::model {
namespace {

struct GptOssLlama4Case {
    const char* file;
    bool moe_quant;
};

class GptOssLlama4Golden : public ::testing::TestWithParam<GptOssLlama4Case> {};

int32_t argmax_row(const float* v, int64_t n) { return (int32_t)(std::max_element(v, v + n) - v); }

TEST_P(GptOssLlama4Golden, LogitsAndGreedyMatchReference) {
    const GptOssLlama4Case c = GetParam();
    const auto g = nlohmann::json::parse(test::read_text_file(test::testdata_path(std::string("golden/") + c.file + ".json")));
    const std::vector<float> ref = test::read_f32_file(test::testdata_path("golden/" + g["logits_file"].get<std::string>()));
    auto file = gguf::open_gguf(test::testdata_path(std::string("models/") + c.file + ".gguf"));
    ASSERT_TRUE(file.ok()) << file.status().message();
    auto model = load_model(file.value(), LoadOptions{2});
    ASSERT_TRUE(model.ok()) << model.status().message();
    const int64_t n_vocab = model.value()->hparams().n_vocab;
    ASSERT_EQ(n_vocab, g["n_vocab"].get<int64_t>());
    const auto prompt = g["prompt_tokens"].get<std::vector<int32_t>>();
    ASSERT_EQ(ref.size(), prompt.size() * n_vocab);
    auto session = Session::create(*model.value(), 512);
    ASSERT_TRUE(session.ok());
    std::vector<float> logits;
    Status st = session->eval(prompt, true, logits);
    ASSERT_TRUE(st.ok()) << st.message();

    double max_abs = 0.0, sum_abs = 0.0;
    int top1_same = 0;
    for (size_t t = 0; t < prompt.size(); ++t) {
        const float* a = logits.data() + t * n_vocab;
        const float* b = ref.data() + t * n_vocab;
        for (int64_t i = 0; i < n_vocab; ++i) {
            max_abs = std::max(max_abs, (double)std::fabs(a[i] - b[i]));
            sum_abs += std::fabs(a[i] - b[i]);
        }
        top1_same += argmax_row(a, n_vocab) == argmax_row(b, n_vocab);
    }
    const double mean_abs = sum_abs / ref.size(), top1 = (double)top1_same / prompt.size();
    std::printf("[ %s ] max-abs %.4g mean-abs %.4g top-1 %.1f%%\n", c.file, max_abs, mean_abs, 100 * top1);
    if (c.moe_quant) {
        EXPECT_LE(mean_abs, 0.075);
        EXPECT_GE(top1, 0.90);
    } else {
        EXPECT_LE(max_abs, 0.05);
        EXPECT_EQ(top1_same, (int)prompt.size());
    }

    // Small ubatches (KV reuse across calls, windows straddling batch edges) give the same logits.
    auto chunked = Session::create(*model.value(), 512);
    ASSERT_TRUE(chunked.ok());
    std::vector<float> logits7;
    ASSERT_TRUE(chunked->eval(prompt, true, logits7, /*n_batch=*/7).ok());
    for (size_t i = 0; i < logits.size(); ++i) ASSERT_NEAR(logits7[i], logits[i], 1e-4) << "logit " << i;

    // Greedy continuation token by token, up to the first reference near-tie.
    const auto want = g["greedy_tokens"].get<std::vector<int32_t>>();
    const auto& top5 = g["greedy_top5_logits"];
    const double tie = c.moe_quant ? 0.5 : 0.05;
    int32_t next = argmax_row(logits.data() + (prompt.size() - 1) * n_vocab, n_vocab);
    for (size_t step = 0; step < want.size(); ++step) {
        if (top5[step][0].get<double>() - top5[step][1].get<double>() < tie) break;
        ASSERT_EQ(next, want[step]) << "greedy step " << step;
        st = session->eval(std::span<const int32_t>(&next, 1), false, logits);
        ASSERT_TRUE(st.ok()) << st.message();
        next = argmax_row(logits.data(), n_vocab);
    }
}

INSTANTIATE_TEST_SUITE_P(Models, GptOssLlama4Golden,
                         ::testing::Values(GptOssLlama4Case{"gpt-oss-tiny.F16", false},
                                           GptOssLlama4Case{"gpt-oss-tiny.MXFP4_MOE", true},
                                           GptOssLlama4Case{"llama4-tiny.F16", false},
                                           GptOssLlama4Case{"llama4-tiny.Q8_0", true}),
                         [](const auto& info) {
                             std::string n = info.param.file;
                             std::replace_if(n.begin(), n.end(), [](char ch) { return !std::isalnum((unsigned char)ch); }, '_');
                             return n;
                         });

// Loads a copy of `model` with metadata key `key` dropped (value null) or replaced, and tensor
// `tensor` dropped (ne empty) or reshaped to `ne`; returns the load status.
Status load_mutated(const char* model, const std::string& key, const gguf::Value* value, const std::string& tensor,
                    std::vector<int64_t> ne = {}) {
    auto src = gguf::open_gguf(test::testdata_path(std::string("models/") + model + ".gguf"));
    if (!src.ok()) return src.status();
    gguf::GgufWriter w;
    for (const auto& [k, v] : src.value()->meta.entries())
        if (k != key) w.set(k, v);
    if (value) w.set(key, *value);
    for (const gguf::TensorInfo& t : src.value()->tensors) {
        std::vector<int64_t> shape(t.ne, t.ne + t.n_dims);
        if (t.name == tensor && ne.empty()) continue;
        if (t.name == tensor) shape = ne;
        HEARTH_TRY(w.add_tensor(t.name, t.type, shape, std::span(t.data, t.n_bytes)));
    }
    HEARTH_ASSIGN(std::vector<std::byte> bytes, w.serialize());
    HEARTH_ASSIGN(gguf::GgufFile parsed, gguf::parse_gguf(bytes));
    return load_model(std::make_shared<gguf::GgufFile>(std::move(parsed)), LoadOptions{1}).status();
}

TEST(GptOssLlama4Errors, BrokenFilesAreClearErrors) {
    const gguf::Value zero = gguf::Value::make_u32(0), longrope = gguf::Value::make_string("longrope");
    struct Bad {
        const char* model;
        std::string key;
        const gguf::Value* value;
        std::string tensor;
        std::vector<int64_t> ne;
        const char* expect;  // substring of the message
    };
    const Bad kBad[] = {
        {"gpt-oss-tiny.F16", "gpt-oss.attention.sliding_window", nullptr, "", {}, "sliding_window"},
        {"gpt-oss-tiny.F16", "gpt-oss.attention.sliding_window", &zero, "", {}, "sliding_window"},
        {"gpt-oss-tiny.F16", "gpt-oss.rope.scaling.type", &longrope, "", {}, "longrope"},
        {"gpt-oss-tiny.F16", "gpt-oss.expert_feed_forward_length", nullptr, "", {}, "expert_feed_forward_length"},
        {"gpt-oss-tiny.F16", "", nullptr, "blk.1.attn_sinks.weight", {}, "blk.1.attn_sinks.weight"},
        {"gpt-oss-tiny.F16", "", nullptr, "blk.0.ffn_up_exps.bias", {}, "blk.0.ffn_up_exps.bias"},
        {"gpt-oss-tiny.F16", "", nullptr, "blk.0.ffn_gate_exps.weight", {128, 128, 4}, "blk.0.ffn_gate_exps.weight"},
        {"llama4-tiny.F16", "llama4.interleave_moe_layer_step", nullptr, "", {}, "interleave_moe_layer_step"},
        {"llama4-tiny.F16", "llama4.expert_count", &zero, "", {}, "zero experts"},
        {"llama4-tiny.F16", "", nullptr, "blk.3.ffn_up_shexp.weight", {}, "blk.3.ffn_up_shexp.weight"},
        {"llama4-tiny.F16", "", nullptr, "blk.2.ffn_gate.weight", {256, 128}, "blk.2.ffn_gate.weight"},
    };
    for (const Bad& b : kBad) {
        Status st = load_mutated(b.model, b.key, b.value, b.tensor, b.ne);
        EXPECT_FALSE(st.ok()) << b.model << " " << b.key << b.tensor;
        EXPECT_NE(st.message().find(b.expect), std::string::npos) << st.message();
    }
}

}  // namespace
}  // namespace hearth::model
