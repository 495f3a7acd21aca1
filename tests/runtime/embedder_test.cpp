// runtime::Embedder: the bert golden embedding through the runtime path, many inputs packed
// into few passes with each vector bit-identical to its input embedded alone, truncation that
// keeps [CLS]/[SEP], dimensions, L2 normalization, concurrent callers, empty inputs, bad
// options; and decoders loaded with last/mean pooling.
#include "runtime/embedder.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <thread>

#include "model/session.h"
#include "support/testdata.h"

namespace hearth::runtime {
namespace {

using nlohmann::json;

struct Loaded {
    std::shared_ptr<model::Model> model;
    std::shared_ptr<const tok::Tokenizer> tok;
};

// Decoders run on one thread: their tests do more work, and an overloaded test machine makes a
// thread pool wait for its slowest worker at every op.
Loaded load(const std::string& name, std::optional<model::Pooling> pooling = {}, int n_threads = 2) {
    Loaded l;
    auto f = gguf::open_gguf(test::testdata_path("models/" + name + ".gguf"));
    EXPECT_TRUE(f.ok()) << f.status().message();
    if (!f.ok()) return l;
    auto t = tok::Tokenizer::from_gguf(*f.value());
    EXPECT_TRUE(t.ok()) << t.status().message();
    auto m = model::load_model(f.value(), model::LoadOptions{n_threads, pooling});
    EXPECT_TRUE(m.ok()) << m.status().message();
    if (t.ok()) l.tok = std::move(t).value();
    if (m.ok()) l.model = std::move(m).value();
    return l;
}

std::unique_ptr<Embedder> make(const Loaded& l, const EmbedderOptions& o = {}) {
    auto e = Embedder::create(l.model, l.tok, o);
    EXPECT_TRUE(e.ok()) << e.status().message();
    return e.ok() ? std::move(e).value() : nullptr;
}

double norm2(const std::vector<float>& v) {
    double s = 0.0;
    for (float x : v) s += (double)x * x;
    return std::sqrt(s);
}

EmbedRequestOptions raw() {
    EmbedRequestOptions o;
    o.normalize = false;
    return o;
}

// Texts of 1 to max_words words, different enough to give different vectors.
std::vector<std::string> texts(size_t n, size_t max_words = 40) {
    static const char* kWords[] = {"the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "river", "stone",
                                   "paper", "light", "winter", "garden", "music", "number", "seven", "blue"};
    std::vector<std::string> out;
    for (size_t i = 0; i < n; ++i) {
        std::string s;
        for (size_t w = 0; w < 1 + (i * 7) % max_words; ++w) s += std::string(w ? " " : "") + kWords[(i * 5 + w * 3) % 18];
        out.push_back(s);
    }
    return out;
}

class BertEmbedder : public ::testing::Test {
protected:
    void SetUp() override {
        l_ = load("bert-bge-tiny.F16");
        ASSERT_TRUE(l_.model && l_.tok);
    }
    Loaded l_;
};

TEST_F(BertEmbedder, MatchesTheGoldenEmbedding) {
    const json g = json::parse(test::read_text_file(test::testdata_path("golden/bert-bge-tiny.F16.json")));
    auto e = make(l_);
    ASSERT_TRUE(e);
    EXPECT_EQ(e->n_ctx(), 512);  // the model's 512 positions (under the 2048 cap)
    EXPECT_EQ(e->n_embd(), 16);
    const std::vector<std::string> in = {g["prompt_text"].get<std::string>()};
    for (bool normalize : {false, true}) {
        EmbedRequestOptions o;
        o.normalize = normalize;
        auto r = e->embed(in, o);
        ASSERT_TRUE(r.ok()) << r.status().message();
        ASSERT_EQ(r->vectors.size(), 1u);
        EXPECT_EQ(r->prompt_tokens, std::vector<int64_t>{12});
        EXPECT_EQ(r->prompt_tokens_total, 12);
        EXPECT_EQ(r->truncated, std::vector<uint8_t>{0});
        EXPECT_GT(r->total_ns, 0);
        const auto want = g[normalize ? "embedding_l2_normalized" : "embedding"].get<std::vector<float>>();
        ASSERT_EQ(r->vectors[0].size(), want.size());
        double max_abs = 0.0;
        for (size_t i = 0; i < want.size(); ++i) max_abs = std::max(max_abs, (double)std::fabs(r->vectors[0][i] - want[i]));
        std::printf("[ bert-bge-tiny.F16 ] embedder %s max-abs %.3g\n", normalize ? "normalized" : "raw", max_abs);
        EXPECT_LE(max_abs, 5e-3);  // testdata README §4: FA on/off alone moves it 1.5e-3
    }
}

TEST_F(BertEmbedder, ManyInputsInFewPassesEachAsAlone) {
    const std::vector<std::string> in = texts(100);
    auto e = make(l_);
    ASSERT_TRUE(e);
    auto all = e->embed(in, raw());
    ASSERT_TRUE(all.ok()) << all.status().message();
    ASSERT_EQ(all->vectors.size(), in.size());
    const int64_t passes = e->forward_passes();
    EXPECT_LE(passes, 3) << "100 short inputs should share passes (max_seqs 64)";
    int64_t total = 0;
    for (size_t i = 0; i < in.size(); ++i) {
        auto one = e->embed(std::span(&in[i], 1), raw());
        ASSERT_TRUE(one.ok());
        EXPECT_EQ(one->vectors[0], all->vectors[i]) << "input " << i;
        EXPECT_EQ(one->prompt_tokens[0], all->prompt_tokens[i]);
        total += all->prompt_tokens[i];
    }
    EXPECT_EQ(all->prompt_tokens_total, total);
    // Small passes (2 sequences, 40 tokens) change nothing either.
    EmbedderOptions small;
    small.n_ctx = 40;
    small.batch_tokens = 40;
    small.max_seqs = 2;
    auto e2 = make(l_, small);
    ASSERT_TRUE(e2);
    auto again = e2->embed(in, raw());
    ASSERT_TRUE(again.ok()) << again.status().message();
    EXPECT_GE(e2->forward_passes(), 50);
    for (size_t i = 0; i < in.size(); ++i)
        if (!again->truncated[i]) {
            EXPECT_EQ(again->vectors[i], all->vectors[i]) << "input " << i;
        }
}

TEST_F(BertEmbedder, TruncationKeepsClsAndSep) {
    EmbedderOptions o;
    o.n_ctx = 8;
    auto e = make(l_, o);
    ASSERT_TRUE(e);
    const std::vector<std::string> in = {"short one", "this input has far more than eight tokens in it, by a lot"};
    auto r = e->embed(in, raw());
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_EQ(r->truncated, (std::vector<uint8_t>{0, 1}));
    EXPECT_EQ(r->prompt_tokens, (std::vector<int64_t>{4, 8}));
    // The same as embedding [CLS] + the first 6 content tokens + [SEP] by hand.
    std::vector<int32_t> ids = l_.tok->encode(in[1], false, true);
    ids.resize(6);
    ids.insert(ids.begin(), l_.tok->bos());
    ids.push_back(l_.tok->sep());
    EXPECT_EQ(ids.front(), 101);
    EXPECT_EQ(ids.back(), 102);
    const std::vector<std::vector<int32_t>> by_hand = {ids};
    auto h = e->embed(by_hand, raw());
    ASSERT_TRUE(h.ok()) << h.status().message();
    EXPECT_EQ(h->truncated[0], 0);
    EXPECT_EQ(h->vectors[0], r->vectors[1]);
    // Token input is truncated the same way, specials recognised by value.
    const std::vector<std::vector<int32_t>> long_ids = {l_.tok->encode(in[1], true, true)};
    auto t = e->embed(long_ids, raw());
    ASSERT_TRUE(t.ok());
    EXPECT_EQ(t->truncated[0], 1);
    EXPECT_EQ(t->vectors[0], r->vectors[1]);

    EmbedRequestOptions off = raw();
    off.truncate = false;
    auto err = e->embed(in, off);
    ASSERT_FALSE(err.ok());
    EXPECT_EQ(err.status().code(), StatusCode::invalid_argument);
    EXPECT_NE(err.status().message().find("input 1 has"), std::string::npos) << err.status().message();
    EXPECT_NE(err.status().message().find("context of 8"), std::string::npos) << err.status().message();
    // The short input alone is fine with truncate off.
    EXPECT_TRUE(e->embed(std::span(in.data(), 1), off).ok());
}

TEST_F(BertEmbedder, NormalizationAndDimensions) {
    auto e = make(l_);
    ASSERT_TRUE(e);
    const std::vector<std::string> in = texts(5);
    auto r = e->embed(in, raw());
    auto n = e->embed(in);
    ASSERT_TRUE(r.ok() && n.ok());
    for (size_t i = 0; i < in.size(); ++i) {
        EXPECT_NEAR(norm2(n->vectors[i]), 1.0, 1e-6);
        const double len = norm2(r->vectors[i]);
        EXPECT_GT(std::fabs(len - 1.0), 0.1);  // raw vectors are not unit length on this model
        for (size_t k = 0; k < 16; ++k) EXPECT_NEAR(n->vectors[i][k], r->vectors[i][k] / len, 1e-6);
    }
    EmbedRequestOptions d;
    d.dimensions = 6;
    auto cut = e->embed(in, d);
    ASSERT_TRUE(cut.ok());
    for (size_t i = 0; i < in.size(); ++i) {
        ASSERT_EQ(cut->vectors[i].size(), 6u);
        EXPECT_NEAR(norm2(cut->vectors[i]), 1.0, 1e-6);
        std::vector<float> head(r->vectors[i].begin(), r->vectors[i].begin() + 6);
        const double len = norm2(head);
        for (size_t k = 0; k < 6; ++k) EXPECT_NEAR(cut->vectors[i][k], head[k] / len, 1e-6);
    }
    d.normalize = false;
    auto cut_raw = e->embed(in, d);
    ASSERT_TRUE(cut_raw.ok());
    EXPECT_EQ(cut_raw->vectors[0], std::vector<float>(r->vectors[0].begin(), r->vectors[0].begin() + 6));
    d.dimensions = 16;
    EXPECT_TRUE(e->embed(in, d).ok());
    for (int64_t bad : {0, -1, 17}) {
        d.dimensions = bad;
        auto err = e->embed(in, d);
        ASSERT_FALSE(err.ok()) << bad;
        EXPECT_EQ(err.status().code(), StatusCode::invalid_argument);
        EXPECT_NE(err.status().message().find("dimensions"), std::string::npos);
    }
}

TEST_F(BertEmbedder, ConcurrentCallersGetTheirOwnVectors) {
    const std::vector<std::string> in = texts(48);
    auto e = make(l_);
    ASSERT_TRUE(e);
    std::vector<std::vector<float>> want;
    for (const std::string& s : in) {
        auto r = e->embed(std::span(&s, 1));
        ASSERT_TRUE(r.ok());
        want.push_back(r->vectors[0]);
    }
    constexpr int kThreads = 6, kRounds = 5;
    std::vector<std::thread> threads;
    std::vector<int> failures(kThreads, 0);
    for (int t = 0; t < kThreads; ++t)
        threads.emplace_back([&, t] {
            for (int round = 0; round < kRounds; ++round) {
                // Each call a different slice, some of one input, some of many.
                const size_t lo = (size_t)(t * 7 + round * 3) % in.size();
                const size_t n = std::min(in.size() - lo, (size_t)1 + (t + round) % 9);
                auto r = e->embed(std::span(in.data() + lo, n));
                if (!r.ok() || r->vectors.size() != n) {
                    ++failures[t];
                    continue;
                }
                for (size_t i = 0; i < n; ++i)
                    if (r->vectors[i] != want[lo + i]) ++failures[t];
            }
        });
    for (auto& th : threads) th.join();
    for (int t = 0; t < kThreads; ++t) EXPECT_EQ(failures[t], 0) << "thread " << t;
}

TEST_F(BertEmbedder, EmptyInputs) {
    auto e = make(l_);
    ASSERT_TRUE(e);
    auto none = e->embed(std::span<const std::string>{});
    ASSERT_TRUE(none.ok());
    EXPECT_TRUE(none->vectors.empty());
    EXPECT_EQ(none->prompt_tokens_total, 0);
    EXPECT_EQ(e->forward_passes(), 0);
    // An empty string is [CLS] [SEP], embedded like any text.
    const std::vector<std::string> blank = {""};
    auto r = e->embed(blank);
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_EQ(r->prompt_tokens[0], 2);
    EXPECT_NEAR(norm2(r->vectors[0]), 1.0, 1e-6);
    // No tokens at all, or an id outside the vocabulary: errors naming the input.
    const std::vector<std::vector<int32_t>> ids = {{101, 102}, {}};
    auto err = e->embed(ids);
    ASSERT_FALSE(err.ok());
    EXPECT_NE(err.status().message().find("input 1 has no tokens"), std::string::npos) << err.status().message();
    const std::vector<std::vector<int32_t>> bad = {{101, 30522, 102}};
    err = e->embed(bad);
    ASSERT_FALSE(err.ok());
    EXPECT_NE(err.status().message().find("input 0: token id 30522"), std::string::npos) << err.status().message();
}

TEST_F(BertEmbedder, BadOptionsAreErrors) {
    EmbedderOptions o;
    o.n_ctx = 513;
    auto e = Embedder::create(l_.model, l_.tok, o);
    ASSERT_FALSE(e.ok());
    EXPECT_NE(e.status().message().find("training context"), std::string::npos) << e.status().message();
    o.n_ctx = 256;
    o.batch_tokens = 100;
    e = Embedder::create(l_.model, l_.tok, o);
    ASSERT_FALSE(e.ok());
    EXPECT_NE(e.status().message().find("one forward pass"), std::string::npos) << e.status().message();
    o = {};
    o.max_seqs = 0;
    EXPECT_FALSE(Embedder::create(l_.model, l_.tok, o).ok());
    EXPECT_FALSE(Embedder::create(nullptr, l_.tok, {}).ok());
    // A decoder loaded without a pooling does not embed.
    Loaded plain = load("llama3-tiny.F16");
    e = Embedder::create(plain.model, plain.tok, {});
    ASSERT_FALSE(e.ok());
    EXPECT_NE(e.status().message().find("pooling"), std::string::npos) << e.status().message();
}

TEST(DecoderEmbedder, LastAndMeanPoolingBatchedAsAlone) {
    for (const char* name : {"llama3-tiny.F16", "qwen3-tiny.Q8_0"})
        for (model::Pooling p : {model::Pooling::last, model::Pooling::mean}) {
            Loaded l = load(name, p, 1);
            ASSERT_TRUE(l.model && l.tok);
            auto e = make(l);
            ASSERT_TRUE(e);
            EXPECT_EQ(e->pooling(), p);
            EXPECT_EQ(e->n_ctx(), 2048);  // training context 131072 / 40960, capped
            const std::vector<std::string> in = texts(12, 9);
            auto all = e->embed(in, raw());
            ASSERT_TRUE(all.ok()) << all.status().message();
            EXPECT_EQ(e->forward_passes(), 1);
            for (size_t i = 0; i < in.size(); ++i) {
                // The model's own single-sequence path gives the same raw vector.
                const std::vector<int32_t> ids = l.tok->encode(in[i], true, true);
                EXPECT_EQ(all->prompt_tokens[i], (int64_t)ids.size());
                auto s = model::Session::create(*l.model, 512);
                std::vector<float> want;
                ASSERT_TRUE(s->embed(ids, want).ok());
                EXPECT_EQ(all->vectors[i], want) << name << " input " << i;
            }
            auto n = e->embed(in);
            ASSERT_TRUE(n.ok());
            for (size_t i = 0; i < in.size(); ++i) {
                EXPECT_NEAR(norm2(n->vectors[i]), 1.0, 1e-6);
                const double len = norm2(all->vectors[i]);
                EXPECT_NEAR(n->vectors[i][3], all->vectors[i][3] / len, 1e-6);
            }
        }
}

TEST(DecoderEmbedder, LastDiffersFromMeanAndDependsOnTheWholeInput) {
    Loaded last = load("llama3-tiny.F16", model::Pooling::last, 1);
    Loaded mean = load("llama3-tiny.F16", model::Pooling::mean, 1);
    auto el = make(last), em = make(mean);
    ASSERT_TRUE(el && em);
    const std::vector<std::string> in = {"the quick brown fox", "the quick brown dog"};
    auto a = el->embed(in), b = em->embed(in);
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_NE(a->vectors[0], b->vectors[0]);
    EXPECT_NE(a->vectors[0], a->vectors[1]);
    EXPECT_NE(b->vectors[0], b->vectors[1]);
}

TEST(DecoderEmbedder, AnInputWithoutTokensIsAnError) {
    // Qwen vocabularies add no BOS: "" has no token to pool.
    Loaded l = load("qwen3-tiny.Q8_0", model::Pooling::last, 1);
    auto e = make(l);
    ASSERT_TRUE(e);
    const std::vector<std::string> in = {"hello", ""};
    auto r = e->embed(in);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("input 1 has no tokens"), std::string::npos) << r.status().message();
    // llama3 adds BOS: "" embeds as BOS alone.
    Loaded l3 = load("llama3-tiny.F16", model::Pooling::last, 1);
    auto e3 = make(l3);
    ASSERT_TRUE(e3);
    auto r3 = e3->embed(in);
    ASSERT_TRUE(r3.ok()) << r3.status().message();
    EXPECT_EQ(r3->prompt_tokens[1], 1);
}

}  // namespace
}  // namespace hearth::runtime
