// End-to-end tests of the `hearth` binary: outputs on the shared models, and one clear error
// line with a non-zero exit for every kind of bad input.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "gguf/gguf.h"
#include "cli/cli_util.h"
#include "support/testdata.h"

namespace {

namespace fs = std::filesystem;

using hearth::test::expect_one_error_line;
using hearth::test::HearthRun;
using hearth::test::model;
using hearth::test::run_hearth;

fs::path temp_file(const std::string& name) { return hearth::test::cli_temp_file(name); }


TEST(Cli, RunContinuesTheStoryGreedily) {
    const auto g = nlohmann::json::parse(hearth::test::read_text_file(hearth::test::testdata_path("golden/stories260K.json")));
    HearthRun r = run_hearth("run " + model("stories260K.gguf") + " \"Once upon a time\" --temperature 0 --repeat-penalty 1 -n 64");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, g["greedy_text"].get<std::string>() + "\n");
}

TEST(Cli, RunWithoutModelUsesTheStoryModelAndSaysSo) {
    HearthRun r = run_hearth("run -p \"Once upon a time\" -n 8 --seed 42");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.err.find("stories260K"), std::string::npos);
    EXPECT_NE(r.err.find("hearth run /path/to/model.gguf"), std::string::npos);
    EXPECT_FALSE(r.out.empty());
}

TEST(Cli, SameSeedSameOutput) {
    const std::string args = "run " + model("stories260K.gguf") + " \"Once upon a time\" -n 32 --seed 7 --temperature 1";
    HearthRun a = run_hearth(args), b = run_hearth(args);
    ASSERT_EQ(a.exit_code, 0) << a.err;
    EXPECT_EQ(a.out, b.out);
}

TEST(Cli, RunReadsThePromptFromAPipe) {
    HearthRun r = run_hearth("run " + model("stories260K.gguf") + " --temperature 0 -n 4", "Once upon a time\n");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out.rfind(", there was", 0), 0u) << r.out;
}

TEST(Cli, VerbosePrintsCountsAndRates) {
    HearthRun r = run_hearth("run " + model("stories260K.gguf") + " \"Once upon a time\" -n 10 --verbose --temperature 0");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.err.find("prompt eval count:    5 token(s)"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("eval count:           10 token(s)"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("eval rate:"), std::string::npos);
    EXPECT_NE(r.err.find("load duration:"), std::string::npos);
}

TEST(Cli, StopStringEndsGenerationAndIsNotPrinted) {
    HearthRun r = run_hearth("run " + model("stories260K.gguf") + " \"Once upon a time\" --temperature 0 --repeat-penalty 1 --stop Lily");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, ", there was a little girl named \n");
}

TEST(Cli, TokenizeMatchesReference) {
    HearthRun r = run_hearth("tokenize " + model("stories260K.gguf") + " \"Once upon a time\"");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, "1 403 407 261 378\n");
    r = run_hearth("tokenize " + model("stories260K.gguf") + " \"Once upon\" --json --no-special");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    auto j = nlohmann::json::parse(r.out);
    ASSERT_EQ(j.size(), 2u);
    EXPECT_EQ(j[0]["id"], 403);
}

TEST(Cli, LogitsFileMatchesReferenceLayout) {
    const fs::path out = temp_file("stories.logits.f32");
    HearthRun r = run_hearth("logits " + model("stories260K.gguf") + " --tokens 1,403,407,261,378 --out " + out.string());
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto got = hearth::test::read_f32_file(out.string());
    const auto want = hearth::test::read_f32_file(hearth::test::testdata_path("golden/stories260K.logits.f32"));
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], want[i], 1e-4) << i;
}

TEST(Cli, EmbedWritesThePooledVector) {
    const fs::path out = temp_file("bert.embd.f32");
    HearthRun r = run_hearth("logits " + model("bert-bge-tiny.F16.gguf") +
                       " --tokens 101,1996,4248,2829,4419,14523,2058,1996,13971,3899,1012,102 --embed --out " + out.string());
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto got = hearth::test::read_f32_file(out.string());
    const auto want = hearth::test::read_f32_file(hearth::test::testdata_path("golden/bert-bge-tiny.F16.embd.f32"));
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], 5e-3);
}

TEST(CliRun, ConversationReusesThePrefixCache) {
    // Two turns: the second resubmits the first turn and its reply, which come from the cache.
    HearthRun r = run_hearth("run " + model("stories260K.gguf") + " -i --temperature 0 -n 40 --verbose",
                             "Once upon a time\nThe next day\n");
    EXPECT_EQ(r.exit_code, 0) << r.err;
    const size_t first = r.err.find("prompt cached:        0 token(s)");
    ASSERT_NE(first, std::string::npos) << r.err;
    const size_t second = r.err.find("prompt cached:", first + 1);
    ASSERT_NE(second, std::string::npos) << r.err;
    EXPECT_EQ(r.err.compare(second, 24, "prompt cached:        32"), 0) << r.err.substr(second, 40);
}

TEST(CliErrors, MissingFile) {
    expect_one_error_line(run_hearth("run /nonexistent/model.gguf hi"), "run", "does not exist");
}

TEST(CliErrors, NotAGgufFile) {
    const fs::path p = temp_file("not_a_model.gguf");
    std::ofstream(p) << "hello, this is text";
    expect_one_error_line(run_hearth("run " + p.string() + " hi"), "run", "not a GGUF file");
    expect_one_error_line(run_hearth("tokenize " + p.string() + " hi"), "tokenize", "not a GGUF file");
}

TEST(CliErrors, TruncatedModel) {
    std::vector<uint8_t> bytes;
    ASSERT_TRUE(hearth::test::read_file(model("stories260K.gguf"), bytes));
    const fs::path p = temp_file("truncated.gguf");
    std::ofstream(p, std::ios::binary).write((const char*)bytes.data(), (std::streamsize)bytes.size() / 2);
    expect_one_error_line(run_hearth("run " + p.string() + " hi"), "run", "truncated");
}

TEST(CliErrors, UnsupportedArchitecture) {
    std::vector<uint8_t> bytes;
    ASSERT_TRUE(hearth::test::read_gzip_file(hearth::test::testdata_path("tokenizers/ggml-vocab-gpt-neox.gguf.gz"), bytes));
    const fs::path p = temp_file("gptneox.gguf");
    std::ofstream(p, std::ios::binary).write((const char*)bytes.data(), (std::streamsize)bytes.size());
    expect_one_error_line(run_hearth("run " + p.string() + " hi"), "run", "architecture gptneox is not supported");
}

TEST(CliErrors, UnsupportedTensorType) {
    // Rewrite the story model with one weight stored as I8, a GGUF type with no kernel.
    auto f = hearth::gguf::open_gguf(model("stories260K.gguf"));
    ASSERT_TRUE(f.ok());
    hearth::gguf::GgufWriter w;
    for (const auto& [k, v] : f.value()->meta.entries()) w.set(k, v);
    for (const auto& t : f.value()->tensors) {
        std::vector<int64_t> ne(t.ne, t.ne + t.n_dims);
        if (t.name == "blk.0.attn_q.weight") {
            std::vector<std::byte> data((size_t)t.n_elements(), std::byte{1});
            ASSERT_TRUE(w.add_tensor(t.name, hearth::quant::QuantType::i8, ne, data).ok());
        } else {
            ASSERT_TRUE(w.add_tensor(t.name, t.type, ne, {t.data, (size_t)t.n_bytes}).ok());
        }
    }
    const fs::path p = temp_file("i8.gguf");
    ASSERT_TRUE(w.write_file(p.string()).ok());
    expect_one_error_line(run_hearth("run " + p.string() + " hi"), "run", "blk.0.attn_q.weight: type i8 is not supported");
}

TEST(CliErrors, PromptLongerThanContext) {
    HearthRun r = run_hearth("run " + model("stories260K.gguf") + " --num-ctx 8 \"Once upon a time there was a little girl named Lily\"");
    expect_one_error_line(r, "run", "context");
}

TEST(CliErrors, BadThreadCountInTheEnvironment) {
    expect_one_error_line(run_hearth("run " + model("stories260K.gguf") + " hi -n 1", "", "HEARTH_NUM_THREAD=lots"),
                          "run", "HEARTH_NUM_THREAD");
    HearthRun ok = run_hearth("run " + model("stories260K.gguf") + " hi -n 1", "", "HEARTH_NUM_THREAD=1");
    EXPECT_EQ(ok.exit_code, 0) << ok.err;
}

TEST(CliErrors, BadFlagsAndTokenIds) {
    expect_one_error_line(run_hearth("run " + model("stories260K.gguf") + " hi --top-p 1.5"), "run", "top_p");
    expect_one_error_line(run_hearth("logits " + model("stories260K.gguf") + " --tokens 1,x --out /tmp/x.f32"), "logits",
                          "not a token id");
    expect_one_error_line(run_hearth("logits " + model("stories260K.gguf") + " --tokens 1,99999 --out /tmp/x.f32"), "logits",
                          "outside the vocabulary");
    expect_one_error_line(run_hearth("run " + model("bert-bge-tiny.F16.gguf") + " hi"), "run", "embedding model");
}

}  // namespace

namespace {

// `hearth fit`: the memory report, the expected decode speed from a measured bandwidth (one
// row per alternative too), --no-speed without it, --json with the same fields, exit 2 when
// the model cannot fit (an absurd context).
TEST(CliFit, ReportsMemoryAndExpectedSpeed) {
    const std::string m = hearth::test::testdata_path("models/llama3-tiny.Q8_0.gguf");
    HearthRun r = run_hearth("fit " + m);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    for (const char* s : {"Memory", "weights", "KV cache", "Expected speed", "t/s", "GB/s", "DECODE", "Q4_K_M", "fits"})
        EXPECT_NE(r.out.find(s), std::string::npos) << s << "\n" << r.out;
    HearthRun quick = run_hearth("fit --no-speed " + m);
    ASSERT_EQ(quick.exit_code, 0) << quick.err;
    EXPECT_EQ(quick.out.find("Expected speed"), std::string::npos) << quick.out;
    HearthRun js = run_hearth("fit --json " + m);
    ASSERT_EQ(js.exit_code, 0) << js.err;
    const auto j = nlohmann::json::parse(js.out, nullptr, false);
    ASSERT_TRUE(j.is_object()) << js.out;
    EXPECT_GT(j["expected_decode_tokens_per_second"].get<double>(), 0.0);
    EXPECT_GT(j["read_bandwidth_bytes_per_second"].get<double>(), 0.0);
    EXPECT_TRUE(j["fits"].get<bool>());
    HearthRun huge = run_hearth("fit --no-speed --ctx 1000000000 " + m);
    EXPECT_EQ(huge.exit_code, 2) << huge.out << huge.err;
    EXPECT_NE(huge.out.find("does not fit"), std::string::npos) << huge.out;
}

}  // namespace
