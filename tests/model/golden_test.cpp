// Every supported model in the shared test data against llama.cpp's reference logits,
// greedy continuations and (BERT) pooled embedding. Tolerances follow testdata/README.md §4.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "model/session.h"
#include "support/testdata.h"

namespace hearth::model {
namespace {

using nlohmann::json;

struct Case {
    const char* file;   // model file name (without .gguf)
    bool exact_types;   // F16/F32/BF16 weights: max-abs <= 0.05 and identical top-1 everywhere
    bool moe_quant;     // quantized MoE: judge by mean-abs and top-1 agreement (router near-ties)
};

const Case kCases[] = {
    {"llama3-tiny.F16", true, false},     {"llama3-tiny.BF16", true, false},
    {"llama3-tiny.Q8_0", false, false},   {"llama3-tiny.Q6_K", false, false},
    {"llama3-tiny.Q5_1", false, false},   {"llama3-tiny.Q5_K_M", false, false},
    {"llama3-tiny.Q5_0", false, false},   {"llama3-tiny.Q4_1", false, false},
    {"llama3-tiny.Q4_K_M", false, false}, {"llama3-tiny.Q4_0", false, false},
    {"llama3-tiny.IQ4_NL", false, false}, {"llama3-tiny.IQ4_XS", false, false},
    {"llama3-tiny.Q3_K_M", false, false}, {"llama3-tiny.Q2_K", false, false},
    {"qwen3-tiny.Q8_0", false, false},    {"qwen3-tiny.Q4_K_M", false, false},
    {"qwen2-tiny.F16", true, false},      {"qwen3moe-tiny.F16", true, false},
    {"qwen3moe-tiny.Q8_0", false, true},  {"qwen3moe-tiny.MXFP4_MOE", false, true},
    {"mixtral-tiny.F16", true, false},    {"mixtral-tiny.Q4_0", false, true},
    {"llama2-spm-tiny.F32", true, false}, {"stories260K", true, false},
};

class GoldenTest : public ::testing::TestWithParam<Case> {};

std::vector<int32_t> ids(const json& a) { return a.get<std::vector<int32_t>>(); }

int32_t argmax(const float* v, int64_t n) { return (int32_t)(std::max_element(v, v + n) - v); }

TEST_P(GoldenTest, LogitsAndGreedyMatchReference) {
    const Case c = GetParam();
    const std::string model_path = test::testdata_path(std::string("models/") + c.file + ".gguf");
    const json g = json::parse(test::read_text_file(test::testdata_path(std::string("golden/") + c.file + ".json")));
    const std::vector<float> ref = test::read_f32_file(test::testdata_path("golden/" + g["logits_file"].get<std::string>()));

    auto file = gguf::open_gguf(model_path);
    ASSERT_TRUE(file.ok()) << file.status().message();
    auto model = load_model(file.value(), LoadOptions{2});
    ASSERT_TRUE(model.ok()) << model.status().message();
    const int64_t n_vocab = model.value()->hparams().n_vocab;
    ASSERT_EQ(n_vocab, g["n_vocab"].get<int64_t>());

    const std::vector<int32_t> prompt = ids(g["prompt_tokens"]);
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
            const double d = std::fabs((double)a[i] - b[i]);
            max_abs = std::max(max_abs, d);
            sum_abs += d;
        }
        top1_same += argmax(a, n_vocab) == argmax(b, n_vocab);
    }
    const double mean_abs = sum_abs / ref.size();
    const double top1 = (double)top1_same / prompt.size();
    RecordProperty("max_abs", std::to_string(max_abs));
    RecordProperty("mean_abs", std::to_string(mean_abs));
    std::printf("[ %s ] max-abs %.4g mean-abs %.4g top-1 %.1f%%\n", c.file, max_abs, mean_abs, 100 * top1);
    if (c.moe_quant) {
        EXPECT_LE(mean_abs, 0.075);
        EXPECT_GE(top1, 0.92);
    } else {
        // Activations are quantized like ggml's CPU path, so quantized files match as tightly.
        EXPECT_LE(max_abs, 0.05);
        EXPECT_EQ(top1_same, (int)prompt.size());
    }

    // Greedy continuation, token by token, up to the first step where the reference's top-2
    // gap is within our logit tolerance (a near-tie may flip).
    const std::vector<int32_t> want = ids(g["greedy_tokens"]);
    const json& top5 = g["greedy_top5_logits"];
    int32_t next = argmax(logits.data() + (prompt.size() - 1) * n_vocab, n_vocab);
    const double tie = c.moe_quant ? 0.5 : 0.05;
    for (size_t step = 0; step < want.size(); ++step) {
        if (top5[step][0].get<double>() - top5[step][1].get<double>() < tie) break;
        ASSERT_EQ(next, want[step]) << "greedy step " << step;
        const int32_t tok = next;
        st = session->eval(std::span<const int32_t>(&tok, 1), false, logits);
        ASSERT_TRUE(st.ok()) << st.message();
        next = argmax(logits.data(), n_vocab);
    }
}

INSTANTIATE_TEST_SUITE_P(Models, GoldenTest, ::testing::ValuesIn(kCases), [](const auto& info) {
    std::string n = info.param.file;
    std::replace_if(n.begin(), n.end(), [](char ch) { return !std::isalnum((unsigned char)ch); }, '_');
    return n;
});

TEST(BertGolden, PooledEmbeddingMatchesReference) {
    const json g = json::parse(test::read_text_file(test::testdata_path("golden/bert-bge-tiny.F16.json")));
    auto file = gguf::open_gguf(test::testdata_path("models/bert-bge-tiny.F16.gguf"));
    ASSERT_TRUE(file.ok()) << file.status().message();
    auto model = load_model(file.value(), LoadOptions{2});
    ASSERT_TRUE(model.ok()) << model.status().message();
    ASSERT_TRUE(model.value()->is_embedding());
    auto session = Session::create(*model.value(), 512);
    ASSERT_TRUE(session.ok());
    std::vector<float> emb;
    const std::vector<int32_t> prompt = ids(g["prompt_tokens"]);
    Status st = session->embed(prompt, emb);
    ASSERT_TRUE(st.ok()) << st.message();
    const std::vector<float> want = g["embedding"].get<std::vector<float>>();
    ASSERT_EQ(emb.size(), want.size());
    double max_abs = 0.0;
    for (size_t i = 0; i < want.size(); ++i) max_abs = std::max(max_abs, (double)std::fabs(emb[i] - want[i]));
    std::printf("[ bert-bge-tiny.F16 ] embedding max-abs %.4g\n", max_abs);
    EXPECT_LE(max_abs, 5e-3);
}

TEST(StoriesGolden, ContinuesOnceUponATimeExactly) {
    const json g = json::parse(test::read_text_file(test::testdata_path("golden/stories260K.json")));
    auto file = gguf::open_gguf(test::testdata_path("models/stories260K.gguf"));
    ASSERT_TRUE(file.ok());
    auto model = load_model(file.value(), LoadOptions{2});
    ASSERT_TRUE(model.ok()) << model.status().message();
    auto session = Session::create(*model.value(), 512);
    ASSERT_TRUE(session.ok());
    std::vector<float> logits;
    const std::vector<int32_t> prompt = ids(g["prompt_tokens"]);
    ASSERT_TRUE(session->eval(prompt, false, logits).ok());
    const std::vector<int32_t> want = ids(g["greedy_tokens"]);
    ASSERT_EQ(want.size(), 64u);
    for (size_t step = 0; step < want.size(); ++step) {
        const int32_t tok = argmax(logits.data(), (int64_t)logits.size());
        ASSERT_EQ(tok, want[step]) << "step " << step;
        ASSERT_TRUE(session->eval(std::span<const int32_t>(&tok, 1), false, logits).ok());
    }
}

}  // namespace
}  // namespace hearth::model
