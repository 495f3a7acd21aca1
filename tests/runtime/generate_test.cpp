#include "runtime/generate.h"

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace hearth::runtime
