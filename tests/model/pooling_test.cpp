// Pooled embeddings at the model layer: decoders loaded with a pooling give the final norm's
// output (checked through the output projection: W·v must reproduce the logits the plain model
// computes), bert and decoders pool several sequences of one batch separately and bit-identical
// to each sequence alone, and the pooling metadata/options are read or refused clearly.
#include <gtest/gtest.h>

#include <cmath>

#include "model/model_test_util.h"
#include "model/session.h"

namespace hearth::model {
namespace {

struct Loaded {
    std::shared_ptr<gguf::GgufFile> file;
    std::unique_ptr<Model> plain, pooled;  // the same file without / with the pooling
};

Loaded load_both(const std::string& name, Pooling pooling) {
    Loaded l;
    auto f = gguf::open_gguf(hearth::test::testdata_path("models/" + name + ".gguf"));
    EXPECT_TRUE(f.ok()) << f.status().message();
    if (!f.ok()) return l;
    l.file = f.value();
    auto a = load_model(l.file, LoadOptions{2});
    EXPECT_TRUE(a.ok()) << a.status().message();
    auto b = load_model(l.file, LoadOptions{2, pooling});
    EXPECT_TRUE(b.ok()) << b.status().message();
    if (a.ok()) l.plain = std::move(a).value();
    if (b.ok()) l.pooled = std::move(b).value();
    return l;
}

// y [n_vocab] = output projection · v, computed by the same kernel the model uses.
std::vector<float> project(const Loaded& l, const std::vector<float>& v) {
    const Hparams& hp = l.plain->hparams();
    WeightLoader w(*l.file);
    ops::Weight out;
    const char* name = w.has("output.weight") ? "output.weight" : "token_embd.weight";
    EXPECT_TRUE(w.matrix(name, {hp.n_embd, hp.n_vocab}, out).ok());
    std::vector<float> y(hp.n_vocab);
    ops::Ops ops(1);
    ops.matmul(out, v.data(), y.data(), 1);
    return y;
}

const std::vector<int32_t> kToks = {1, 17, 42, 99, 5, 7, 300, 12, 8, 64, 2, 33, 71};

TEST(DecoderPooling, LastAndClsAreTheFinalNormHiddenState) {
    // The plain model's logits of a token are output · final_norm(h); the pooled vector of the
    // last (cls: first) token must give exactly those logits through the same projection.
    for (const char* name : {"llama3-tiny.F16", "qwen3-tiny.Q8_0", "mixtral-tiny.F16", "phi3-tiny.F16", "deepseek2-tiny.F16"}) {
        for (Pooling p : {Pooling::last, Pooling::cls}) {
            Loaded l = load_both(name, p);
            ASSERT_TRUE(l.plain && l.pooled);
            EXPECT_FALSE(l.plain->is_embedding());
            EXPECT_TRUE(l.pooled->is_embedding());
            const int64_t nv = l.plain->hparams().n_vocab;
            std::vector<float> logits, emb;
            auto s = Session::create(*l.plain, 64);
            ASSERT_TRUE(s->eval(kToks, true, logits).ok());
            auto e = Session::create(*l.pooled, 64);
            Status st = e->embed(kToks, emb);
            ASSERT_TRUE(st.ok()) << st.message();
            ASSERT_EQ((int64_t)emb.size(), l.plain->hparams().n_embd);
            const size_t row = p == Pooling::last ? kToks.size() - 1 : 0;
            const std::vector<float> y = project(l, emb);
            const std::vector<float> want(logits.begin() + row * nv, logits.begin() + (row + 1) * nv);
            EXPECT_EQ(y, want) << name << " pooling " << (int)p;
        }
    }
}

TEST(DecoderPooling, MeanIsTheAverageOfTheTokensHiddenStates) {
    // The projection is linear: output · mean(h_t) = mean(output · h_t), up to rounding.
    for (const char* name : {"llama3-tiny.F16", "qwen2-tiny.F16"}) {
        Loaded l = load_both(name, Pooling::mean);
        ASSERT_TRUE(l.plain && l.pooled);
        const int64_t nv = l.plain->hparams().n_vocab;
        std::vector<float> logits, emb, last;
        auto s = Session::create(*l.plain, 64);
        ASSERT_TRUE(s->eval(kToks, true, logits).ok());
        auto e = Session::create(*l.pooled, 64);
        ASSERT_TRUE(e->embed(kToks, emb).ok());
        const std::vector<float> y = project(l, emb);
        double max_diff = 0.0, max_diff_last = 0.0;
        for (int64_t v = 0; v < nv; ++v) {
            double mean = 0.0;
            for (size_t t = 0; t < kToks.size(); ++t) mean += logits[t * nv + v];
            mean /= (double)kToks.size();
            max_diff = std::max(max_diff, std::fabs(y[v] - mean));
            max_diff_last = std::max(max_diff_last, std::fabs(logits[(kToks.size() - 1) * nv + v] - mean));
        }
        std::printf("[ %s ] mean pooling: max |W·mean(h) - mean(logits)| %.3g (last token's logits: %.3g)\n", name,
                    max_diff, max_diff_last);
        EXPECT_LE(max_diff, 1e-2) << name;  // measured 1.2e-3 (F16 activations)
        EXPECT_GT(max_diff_last, 0.1) << name << ": the check cannot tell mean from last";
    }
}

// Pools `seqs` in one batch, their tokens interleaved, and compares each row with the
// sequence embedded alone: bit for bit.
void expect_batched_equals_alone(Model& m, const std::vector<std::vector<int32_t>>& seqs) {
    const int64_t d = m.hparams().n_embd;
    auto kv = KvCache::create(m.kv_layout(), 64, 4);
    ASSERT_TRUE(kv.ok());
    Batch batch;
    batch.block_tables.resize(seqs.size());
    size_t longest = 0;
    for (size_t s = 0; s < seqs.size(); ++s) {
        ASSERT_TRUE(kv->ensure_capacity(batch.block_tables[s], (int64_t)seqs[s].size()).ok());
        longest = std::max(longest, seqs[s].size());
    }
    for (size_t i = 0; i < longest; ++i)
        for (size_t s = seqs.size(); s-- > 0;)
            if (i < seqs[s].size()) batch.add(seqs[s][i], (int32_t)i, (int32_t)s, i % 3 == 0);
    ForwardOutput out;
    Status st = m.forward(batch, kv.value(), out);
    ASSERT_TRUE(st.ok()) << st.message();
    EXPECT_TRUE(out.logits.empty());
    ASSERT_EQ(out.embeddings.size(), seqs.size() * d);
    for (size_t s = 0; s < seqs.size(); ++s) {
        auto alone = Session::create(m, 64);
        std::vector<float> want;
        ASSERT_TRUE(alone->embed(seqs[s], want).ok());
        const std::vector<float> got(out.embeddings.begin() + s * d, out.embeddings.begin() + (s + 1) * d);
        EXPECT_EQ(got, want) << m.hparams().arch << " pooling " << (int)m.hparams().pooling << " sequence " << s;
    }
}

TEST(DecoderPooling, SequencesOfOneBatchArePooledSeparately) {
    const std::vector<std::vector<int32_t>> seqs = {
        {5, 9, 13, 200, 7}, {42}, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, {77, 66, 55}};
    for (const char* name : {"llama3-tiny.Q4_K_M", "qwen3moe-tiny.Q8_0"})
        for (Pooling p : {Pooling::last, Pooling::mean, Pooling::cls}) {
            Loaded l = load_both(name, p);
            ASSERT_TRUE(l.pooled);
            expect_batched_equals_alone(*l.pooled, seqs);
        }
}

TEST(BertPooling, SequencesOfOneBatchArePooledSeparately) {
    // Bidirectional attention stays within each sequence; every pooling gives each sequence
    // exactly what it gets alone.
    const std::vector<std::vector<int32_t>> seqs = {
        {101, 1996, 4248, 2829, 4419, 14523, 2058, 1996, 13971, 3899, 1012, 102}, {101, 102}, {101, 7592, 2088, 102},
        {101, 2023, 2003, 1037, 2936, 6251, 2008, 2003, 2936, 2084, 1996, 2060, 2028, 2011, 1037, 2843, 102}};
    for (std::optional<Pooling> p : {std::optional<Pooling>{}, std::optional<Pooling>{Pooling::mean},
                                     std::optional<Pooling>{Pooling::last}}) {
        auto f = gguf::open_gguf(hearth::test::testdata_path("models/bert-bge-tiny.F16.gguf"));
        ASSERT_TRUE(f.ok());
        auto m = load_model(f.value(), LoadOptions{2, p});
        ASSERT_TRUE(m.ok()) << m.status().message();
        EXPECT_EQ(m.value()->hparams().pooling, p.value_or(Pooling::cls));
        expect_batched_equals_alone(*m.value(), seqs);
    }
}

TEST(BertPooling, MeanIsNotClsIsNotLast) {
    // Guards the test above: the three poolings really differ on this model.
    auto f = gguf::open_gguf(hearth::test::testdata_path("models/bert-bge-tiny.F16.gguf"));
    ASSERT_TRUE(f.ok());
    const std::vector<int32_t> toks = {101, 7592, 2088, 2003, 102};
    std::vector<std::vector<float>> got;
    for (Pooling p : {Pooling::cls, Pooling::mean, Pooling::last}) {
        auto m = load_model(f.value(), LoadOptions{1, p});
        ASSERT_TRUE(m.ok());
        auto s = Session::create(*m.value(), 16);
        got.emplace_back();
        ASSERT_TRUE(s->embed(toks, got.back()).ok());
    }
    EXPECT_NE(got[0], got[1]);
    EXPECT_NE(got[0], got[2]);
    EXPECT_NE(got[1], got[2]);
}

// load_broken's sibling that keeps the model: the test model with `key` set to `value`.
Result<std::unique_ptr<Model>> load_with(const char* model, const std::string& key, const gguf::Value& value,
                                         const LoadOptions& opts) {
    auto src = gguf::open_gguf(hearth::test::testdata_path(std::string("models/") + model + ".gguf"));
    if (!src.ok()) return src.status();
    gguf::GgufWriter w;
    for (const auto& [k, v] : src.value()->meta.entries()) w.set(k, v);
    w.set(key, value);
    for (const gguf::TensorInfo& t : src.value()->tensors)
        HEARTH_TRY(w.add_tensor(t.name, t.type, std::vector<int64_t>(t.ne, t.ne + t.n_dims), std::span(t.data, t.n_bytes)));
    HEARTH_ASSIGN(std::vector<std::byte> bytes, w.serialize());
    HEARTH_ASSIGN(gguf::GgufFile parsed, gguf::parse_gguf(bytes));
    return load_model(std::make_shared<gguf::GgufFile>(std::move(parsed)), opts);
}

TEST(DecoderPooling, PoolingTypeFromMetadataAndOverride) {
    // Qwen3-Embedding-style files say qwen3.pooling_type = 3 (last); the option overrides it.
    auto m = load_with("qwen3-tiny.Q8_0", "qwen3.pooling_type", gguf::Value::make_u32(3), LoadOptions{1});
    ASSERT_TRUE(m.ok()) << m.status().message();
    EXPECT_EQ(m.value()->hparams().pooling, Pooling::last);
    EXPECT_TRUE(m.value()->is_embedding());
    m = load_with("qwen3-tiny.Q8_0", "qwen3.pooling_type", gguf::Value::make_u32(3), LoadOptions{1, Pooling::none});
    ASSERT_TRUE(m.ok()) << m.status().message();
    EXPECT_FALSE(m.value()->is_embedding());
    m = load_with("gemma3-tiny.Q8_0", "gemma3.pooling_type", gguf::Value::make_u32(1), LoadOptions{1});
    ASSERT_TRUE(m.ok()) << m.status().message();
    EXPECT_EQ(m.value()->hparams().pooling, Pooling::mean);
}

TEST(DecoderPooling, UnsupportedPoolingIsAClearError) {
    const test::Broken cases[] = {
        {"llama3-tiny.F16", "llama.pooling_type", gguf::Value::make_u32(4), "", {}, "llama.pooling_type 4 is not supported",
         StatusCode::unsupported},
        {"qwen2-tiny.F16", "qwen2.attention.causal", gguf::Value::make_bool(false), "", {}, "qwen2.attention.causal",
         StatusCode::unsupported},
    };
    test::expect_clear_errors(cases);
    auto f = gguf::open_gguf(hearth::test::testdata_path("models/bert-bge-tiny.F16.gguf"));
    ASSERT_TRUE(f.ok());
    auto m = load_model(f.value(), LoadOptions{1, Pooling::none});
    ASSERT_FALSE(m.ok());
    EXPECT_EQ(m.status().code(), StatusCode::unsupported);
}

}  // namespace
}  // namespace hearth::model
