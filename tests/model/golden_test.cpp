// Every model file in the shared test data against llama.cpp's reference logits, greedy
// continuations and (BERT) pooled embedding. Tolerances follow testdata/README.md §4-5.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "model/model_test_util.h"
#include "model/session.h"

namespace hearth::model {
namespace {

using nlohmann::json;

// Every file, quantized and MoE ones included, must give max-abs <= 0.05 and the same top-1
// at every position: activations are rounded and summed the way ggml's x86 CPU backend does,
// so most files match bit for bit (README §4 allows looser bounds for engines that do not).
struct Case {
    const char* file;         // model file name (without .gguf)
    double chunk_tol = 0.0;   // > 0: prefill in ubatches of 7 gives the same logits within this
};

const Case kCases[] = {
    {"llama3-tiny.F16"},     {"llama3-tiny.BF16"},    {"llama3-tiny.Q8_0"},
    {"llama3-tiny.Q6_K"},    {"llama3-tiny.Q5_1"},    {"llama3-tiny.Q5_K_M"},
    {"llama3-tiny.Q5_0"},    {"llama3-tiny.Q4_1"},    {"llama3-tiny.Q4_K_M"},
    {"llama3-tiny.Q4_0"},    {"llama3-tiny.IQ4_NL"},  {"llama3-tiny.IQ4_XS"},
    {"llama3-tiny.Q3_K_M"},  {"llama3-tiny.Q2_K"},    {"llama2-spm-tiny.F32"},
    {"stories260K"},         {"qwen3-tiny.Q8_0"},     {"qwen3-tiny.Q4_K_M"},
    {"qwen2-tiny.F16"},      {"qwen3moe-tiny.F16"},   {"qwen3moe-tiny.Q8_0"},
    {"qwen3moe-tiny.MXFP4_MOE"},
    {"mixtral-tiny.F16"},    {"mixtral-tiny.Q4_0"},
    {"phi3-tiny.F16"},
    {"phi3-tiny.Q4_K_M"},
    {"gemma3-tiny.F16"},     {"gemma3-tiny.Q8_0"},
    {"gpt-oss-tiny.F16", 1e-4},
    {"gpt-oss-tiny.MXFP4_MOE", 1e-4},
    {"llama4-tiny.F16", 1e-4},
    {"llama4-tiny.Q8_0", 1e-4},
    {"deepseek2-tiny.F16", 1e-3},
    {"deepseek2-tiny.Q8_0", 1e-3},
};

class GoldenTest : public ::testing::TestWithParam<Case> {};

std::vector<int32_t> ids(const json& a) { return a.get<std::vector<int32_t>>(); }

TEST_P(GoldenTest, LogitsAndGreedyMatchReference) {
    const Case c = GetParam();
    const json g = json::parse(hearth::test::read_text_file(hearth::test::testdata_path(std::string("golden/") + c.file + ".json")));
    const std::vector<float> ref =
        hearth::test::read_f32_file(hearth::test::testdata_path("golden/" + g["logits_file"].get<std::string>()));
    auto model = test::load_test_model(c.file);
    ASSERT_TRUE(model.ok()) << model.status().message();
    const int64_t n_vocab = model.value()->hparams().n_vocab;
    ASSERT_EQ(n_vocab, g["n_vocab"].get<int64_t>());

    const std::vector<int32_t> prompt = ids(g["prompt_tokens"]);
    ASSERT_EQ(ref.size(), prompt.size() * n_vocab);
    // The goldens' n_ctx and KV cache type.
    auto session = Session::create(*model.value(), 512, 32, quant::QuantType::f32);
    ASSERT_TRUE(session.ok());
    std::vector<float> logits;
    Status st = session->eval(prompt, true, logits);
    ASSERT_TRUE(st.ok()) << st.message();

    const test::LogitsDiff diff = test::diff_logits(logits.data(), ref.data(), (int64_t)prompt.size(), n_vocab);
    RecordProperty("max_abs", std::to_string(diff.max_abs));
    RecordProperty("mean_abs", std::to_string(diff.mean_abs));
    std::printf("[ %s ] max-abs %.4g mean-abs %.4g top-1 %.1f%%\n", c.file, diff.max_abs, diff.mean_abs, 100 * diff.top1);
    EXPECT_LE(diff.max_abs, 0.05);
    EXPECT_EQ(diff.top1_same, (int)prompt.size());

    // Small ubatches (KV reuse across calls, windows straddling batch edges, the latent cache
    // read back) give the same logits.
    if (c.chunk_tol > 0.0) {
        auto chunked = Session::create(*model.value(), 512, 32, quant::QuantType::f32);
        ASSERT_TRUE(chunked.ok());
        std::vector<float> logits7;
        ASSERT_TRUE(chunked->eval(prompt, true, logits7, /*n_batch=*/7).ok());
        ASSERT_EQ(logits7.size(), logits.size());
        for (size_t i = 0; i < logits.size(); ++i) ASSERT_NEAR(logits7[i], logits[i], c.chunk_tol) << "logit " << i;
    }

    // Greedy continuation, token by token, up to the first step where the reference's top-2
    // gap is within our logit tolerance (a near-tie may flip).
    const std::vector<int32_t> want = ids(g["greedy_tokens"]);
    const json& top5 = g["greedy_top5_logits"];
    int32_t next = test::argmax(logits.data() + (prompt.size() - 1) * n_vocab, n_vocab);
    const double tie = 0.05;
    size_t step = 0;
    for (; step < want.size(); ++step) {
        if (top5[step][0].get<double>() - top5[step][1].get<double>() < tie) break;
        ASSERT_EQ(next, want[step]) << "greedy step " << step;
        st = session->eval(std::span<const int32_t>(&next, 1), false, logits);
        ASSERT_TRUE(st.ok()) << st.message();
        next = test::argmax(logits.data(), n_vocab);
    }
    std::printf("[ %s ] greedy: %zu of %zu tokens compared and equal\n", c.file, step, want.size());
}

INSTANTIATE_TEST_SUITE_P(Models, GoldenTest, ::testing::ValuesIn(kCases), [](const auto& info) {
    std::string n = info.param.file;
    std::replace_if(n.begin(), n.end(), [](char ch) { return !std::isalnum((unsigned char)ch); }, '_');
    return n;
});

TEST(GoldenFiles, EveryModelFileHasACase) {
    const std::string dir = hearth::test::testdata_dir();
    ASSERT_FALSE(dir.empty());
    std::vector<std::string> covered = {"bert-bge-tiny.F16"};  // BertGolden below
    for (const Case& c : kCases) covered.push_back(c.file);
    for (const auto& entry : std::filesystem::directory_iterator(dir + "/models")) {
        if (entry.path().extension() != ".gguf") continue;
        const std::string stem = entry.path().stem().string();
        EXPECT_NE(std::find(covered.begin(), covered.end(), stem), covered.end()) << stem << " has no golden case";
    }
}

TEST(BertGolden, PooledEmbeddingMatchesReference) {
    const json g = json::parse(hearth::test::read_text_file(hearth::test::testdata_path("golden/bert-bge-tiny.F16.json")));
    auto model = test::load_test_model("bert-bge-tiny.F16");
    ASSERT_TRUE(model.ok()) << model.status().message();
    ASSERT_TRUE(model.value()->is_embedding());
    auto session = Session::create(*model.value(), 512, 32, quant::QuantType::f32);
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
    const json g = json::parse(hearth::test::read_text_file(hearth::test::testdata_path("golden/stories260K.json")));
    auto model = test::load_test_model("stories260K");
    ASSERT_TRUE(model.ok()) << model.status().message();
    auto session = Session::create(*model.value(), 512, 32, quant::QuantType::f32);
    ASSERT_TRUE(session.ok());
    std::vector<float> logits;
    const std::vector<int32_t> prompt = ids(g["prompt_tokens"]);
    ASSERT_TRUE(session->eval(prompt, false, logits).ok());
    const std::vector<int32_t> want = ids(g["greedy_tokens"]);
    ASSERT_EQ(want.size(), 64u);
    for (size_t step = 0; step < want.size(); ++step) {
        const int32_t tok = test::argmax(logits.data(), (int64_t)logits.size());
        ASSERT_EQ(tok, want[step]) << "step " << step;
        ASSERT_TRUE(session->eval(std::span<const int32_t>(&tok, 1), false, logits).ok());
    }
}

}  // namespace
}  // namespace hearth::model
