#include "runtime/generate.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include <nlohmann/json.hpp>

#include "support/testdata.h"

namespace hearth::runtime {
namespace {

class GenerateTest : public ::testing::Test {
protected:
    void SetUp() override {
        auto f = gguf::open_gguf(test::testdata_path("models/stories260K.gguf"));
        ASSERT_TRUE(f.ok()) << f.status().message();
        file_ = f.value();
        auto t = tok::Tokenizer::from_gguf(*file_);
        ASSERT_TRUE(t.ok()) << t.status().message();
        tok_ = std::move(t).value();
        auto m = model::load_model(file_, model::LoadOptions{2});
        ASSERT_TRUE(m.ok()) << m.status().message();
        model_ = std::move(m).value();
    }
    GenerateRequest greedy(int64_t n) const {
        GenerateRequest r;
        r.prompt = tok_->encode("Once upon a time", true, false);
        r.sampling.temperature = 0.0f;
        r.num_predict = n;
        return r;
    }
    std::shared_ptr<gguf::GgufFile> file_;
    std::unique_ptr<tok::Tokenizer> tok_;
    std::unique_ptr<model::Model> model_;
};

TEST_F(GenerateTest, GreedyMatchesReferenceText) {
    const auto g = nlohmann::json::parse(test::read_text_file(test::testdata_path("golden/stories260K.json")));
    auto s = model::Session::create(*model_, 256);
    ASSERT_TRUE(s.ok());
    std::string text;
    auto st = generate(s.value(), *tok_, greedy(64), [&](std::string_view p) { text += p; return true; });
    ASSERT_TRUE(st.ok()) << st.status().message();
    EXPECT_EQ(text, g["greedy_text"].get<std::string>());
    EXPECT_EQ(st->tokens, g["greedy_tokens"].get<std::vector<int32_t>>());
    EXPECT_EQ(st->done, DoneReason::length);
    EXPECT_EQ(st->prompt_tokens, 5);
    EXPECT_EQ(st->generated_tokens, 64);
}

TEST_F(GenerateTest, StopStringCutsTheText) {
    auto s = model::Session::create(*model_, 256);
    auto req = greedy(64);
    req.stop = {"girl"};
    std::string text;
    auto st = generate(s.value(), *tok_, req, [&](std::string_view p) { text += p; return true; });
    ASSERT_TRUE(st.ok());
    EXPECT_EQ(text, ", there was a little ");
    EXPECT_EQ(st->done, DoneReason::stop);
}

TEST_F(GenerateTest, CallbackCancels) {
    auto s = model::Session::create(*model_, 256);
    int pieces = 0;
    auto st = generate(s.value(), *tok_, greedy(64), [&](std::string_view) { return ++pieces < 3; });
    ASSERT_TRUE(st.ok());
    EXPECT_EQ(st->done, DoneReason::cancelled);
    EXPECT_EQ(pieces, 3);
}

TEST_F(GenerateTest, ContextEndStopsWithLength) {
    auto s = model::Session::create(*model_, 16);
    auto st = generate(s.value(), *tok_, greedy(-1), [](std::string_view) { return true; });
    ASSERT_TRUE(st.ok());
    EXPECT_EQ(st->done, DoneReason::length);
    EXPECT_EQ(st->generated_tokens, 16 - 5 + 1);  // the last sampled token needs no position
    EXPECT_EQ(s->n_past(), 16);
}

TEST_F(GenerateTest, BadPromptsAreErrors) {
    auto s = model::Session::create(*model_, 4);
    GenerateRequest empty;
    auto st = generate(s.value(), *tok_, empty, [](std::string_view) { return true; });
    EXPECT_EQ(st.status().code(), StatusCode::invalid_argument);
    st = generate(s.value(), *tok_, greedy(4), [](std::string_view) { return true; });
    EXPECT_EQ(st.status().code(), StatusCode::out_of_range);
    EXPECT_NE(st.status().message().find("context"), std::string::npos);
    auto bad = greedy(4);
    bad.sampling.top_p = 2.0f;
    auto s2 = model::Session::create(*model_, 64);
    st = generate(s2.value(), *tok_, bad, [](std::string_view) { return true; });
    EXPECT_EQ(st.status().code(), StatusCode::invalid_argument);
}

TEST_F(GenerateTest, SameSeedSameText) {
    auto run = [&](int64_t seed) {
        auto s = model::Session::create(*model_, 256);
        auto req = greedy(40);
        req.sampling.temperature = 1.0f;
        req.sampling.seed = seed;
        std::string text;
        EXPECT_TRUE(generate(s.value(), *tok_, req, [&](std::string_view p) { text += p; return true; }).ok());
        return text;
    };
    EXPECT_EQ(run(11), run(11));
    EXPECT_NE(run(11), run(12));
}


TEST(FitPrompt, FitsUnchangedOrErrorsWithoutTruncate) {
    GenerateRequest r;
    std::vector<int32_t> p = {1, 2, 3, 4};
    EXPECT_EQ(fit_prompt(p, 5, r).value(), 0);
    EXPECT_EQ(p.size(), 4u);
    auto st = fit_prompt(p, 4, r);  // no position left to generate
    EXPECT_EQ(st.status().code(), StatusCode::out_of_range);
    EXPECT_NE(st.status().message().find("truncation"), std::string::npos) << st.status().message();
}

TEST(FitPrompt, DropsTheMiddleKeepingTheHeadAndTheTail) {
    GenerateRequest r;
    r.truncate = true;
    r.keep = 3;
    r.num_predict = 10;
    std::vector<int32_t> p(100);
    for (int i = 0; i < 100; ++i) p[i] = i;
    // room 64, 10 kept free for generation: 54 prompt tokens = 3 head + 51 tail.
    EXPECT_EQ(fit_prompt(p, 64, r).value(), 46);
    ASSERT_EQ(p.size(), 54u);
    EXPECT_EQ(p[0], 0);
    EXPECT_EQ(p[2], 2);
    EXPECT_EQ(p[3], 49);
    EXPECT_EQ(p.back(), 99);
    // num_predict unlimited: a quarter of the room stays free.
    std::vector<int32_t> q(100, 7);
    r.num_predict = -1;
    EXPECT_EQ(fit_prompt(q, 64, r).value(), 52);
    EXPECT_EQ(q.size(), 48u);
    // keep larger than the target: cut to half of it, the tail stays.
    std::vector<int32_t> k(100);
    for (int i = 0; i < 100; ++i) k[i] = i;
    r.keep = 90;
    r.num_predict = 32;
    EXPECT_EQ(fit_prompt(k, 40, r).value(), 80);  // 20 left free, 20 kept = 10 head + 10 tail
    EXPECT_EQ(k[9], 9);
    EXPECT_EQ(k[10], 90);
    std::vector<int32_t> tiny = {1, 2, 3};
    EXPECT_EQ(fit_prompt(tiny, 1, r).status().code(), StatusCode::out_of_range);
}

TEST_F(GenerateTest, TruncatedPromptGeneratesAndReportsTheCut) {
    auto s = model::Session::create(*model_, 16);
    GenerateRequest r = greedy(4);
    r.prompt = tok_->encode("Once upon a time there was a little girl named Lily who loved to play outside", true, false);
    ASSERT_GT(r.prompt.size(), 16u);
    r.truncate = true;
    r.keep = 1;  // the BOS
    auto st = generate(s.value(), *tok_, r, [](std::string_view) { return true; });
    ASSERT_TRUE(st.ok()) << st.status().message();
    EXPECT_EQ(st->prompt_tokens + st->truncated_tokens, (int64_t)r.prompt.size());
    EXPECT_EQ(st->prompt_tokens, 16 - 4);
    EXPECT_EQ(st->generated_tokens, 4);
}

// Allows only the tokens of `allowed`, in that order, then is complete.
class ForcedSequence : public LogitsMask {
public:
    explicit ForcedSequence(std::vector<int32_t> allowed) : allowed_(std::move(allowed)) {}
    void apply(std::span<float> logits) override {
        for (int32_t i = 0; i < (int32_t)logits.size(); ++i)
            if (i != allowed_[pos_]) logits[i] = -INFINITY;
    }
    void accept(int32_t token) override {
        EXPECT_EQ(token, allowed_[pos_]);
        ++pos_;
    }
    bool complete() const override { return pos_ == allowed_.size(); }

private:
    std::vector<int32_t> allowed_;
    size_t pos_ = 0;
};

class AllowNothing : public LogitsMask {
public:
    void apply(std::span<float> logits) override { std::fill(logits.begin(), logits.end(), -INFINITY); }
    void accept(int32_t) override { ADD_FAILURE() << "nothing was allowed"; }
};

TEST_F(GenerateTest, LogitsMaskConstrainsSampling) {
    const std::vector<int32_t> forced = {100, 200, 300};
    for (float temperature : {0.0f, 1.0f}) {
        auto s = model::Session::create(*model_, 64);
        GenerateRequest r = greedy(10);
        r.sampling.temperature = temperature;
        r.sampling.seed = 3;
        r.mask = std::make_shared<ForcedSequence>(forced);
        auto st = generate(s.value(), *tok_, r, [](std::string_view) { return true; });
        ASSERT_TRUE(st.ok()) << st.status().message();
        EXPECT_EQ(st->tokens, forced);
        EXPECT_EQ(st->done, DoneReason::stop);  // the mask completed before num_predict
    }
    auto s = model::Session::create(*model_, 64);
    GenerateRequest r = greedy(10);
    r.mask = std::make_shared<AllowNothing>();
    auto st = generate(s.value(), *tok_, r, [](std::string_view) { return true; });
    EXPECT_EQ(st.status().code(), StatusCode::invalid_argument);
}

}  // namespace
}  // namespace hearth::runtime
