// Batch-first forward: several sequences in one batch give the same logits as each alone, with
// every KV cache type; bad batches are errors, not crashes.
#include <gtest/gtest.h>

#include "model/session.h"
#include "support/testdata.h"

namespace hearth::model {
namespace {

std::unique_ptr<Model> load(const std::string& name, std::shared_ptr<gguf::GgufFile>& keep) {
    auto f = gguf::open_gguf(test::testdata_path("models/" + name));
    EXPECT_TRUE(f.ok()) << f.status().message();
    keep = f.value();
    auto m = load_model(keep, LoadOptions{2});
    EXPECT_TRUE(m.ok()) << m.status().message();
    return std::move(m).value();
}

using quant::QuantType;
const QuantType kKvTypes[] = {QuantType::f32, QuantType::f16, QuantType::q8_0, QuantType::q4_0};

class BatchKv : public ::testing::TestWithParam<QuantType> {};

TEST_P(BatchKv, InterleavedSequencesMatchSeparateRuns) {
    const QuantType type = GetParam();
    std::shared_ptr<gguf::GgufFile> f;
    auto m = load("qwen3moe-tiny.Q8_0.gguf", f);  // head dim 32: every type fits
    const int64_t nv = m->hparams().n_vocab;
    const std::vector<int32_t> a = {10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110};
    const std::vector<int32_t> b = {5, 6, 7, 8, 9, 200, 300};
    std::vector<float> la, lb;
    {
        auto s = Session::create(*m, 64, 4, type);
        ASSERT_TRUE(s->eval(a, true, la).ok());
        auto s2 = Session::create(*m, 64, 4, type);
        ASSERT_TRUE(s2->eval(b, true, lb).ok());
    }
    auto kv = KvCache::create(m->kv_layout(), 16, 4, type);
    ASSERT_TRUE(kv.ok());
    Batch batch;
    batch.block_tables.resize(2);
    ASSERT_TRUE(kv->ensure_capacity(batch.block_tables[0], (int64_t)a.size()).ok());
    ASSERT_TRUE(kv->ensure_capacity(batch.block_tables[1], (int64_t)b.size()).ok());
    // Sequence 1 first, then both interleaved, in two forward passes, like a scheduler would.
    std::vector<std::pair<int, int>> order;  // (seq, index)
    for (size_t i = 0; i < std::max(a.size(), b.size()); ++i) {
        if (i < b.size()) order.push_back({1, (int)i});
        if (i < a.size()) order.push_back({0, (int)i});
    }
    ForwardOutput out;
    const size_t split = 6;
    for (size_t part = 0; part < 2; ++part) {
        batch.clear();
        const size_t lo = part == 0 ? 0 : split, hi = part == 0 ? split : order.size();
        for (size_t k = lo; k < hi; ++k) {
            auto [seq, i] = order[k];
            batch.add(seq == 0 ? a[i] : b[i], i, seq, true);
        }
        ASSERT_TRUE(m->forward(batch, kv.value(), out).ok());
        for (size_t k = lo; k < hi; ++k) {
            auto [seq, i] = order[k];
            const float* got = out.logits.data() + (k - lo) * nv;
            const float* want = (seq == 0 ? la.data() : lb.data()) + (size_t)i * nv;
            for (int64_t v = 0; v < nv; ++v) ASSERT_EQ(got[v], want[v]) << "seq " << seq << " pos " << i;
        }
    }
}

TEST_P(BatchKv, TokenByTokenEqualsOneBatch) {
    // A token's logits never depend on what else is in its batch: the serving engine decodes
    // sequences alone or together and must produce the same tokens either way.
    const QuantType type = GetParam();
    for (const char* name : {"llama3-tiny.Q4_K_M.gguf", "qwen2-tiny.F16.gguf", "gemma3-tiny.Q8_0.gguf"}) {
        std::shared_ptr<gguf::GgufFile> f;
        auto m = load(name, f);
        if (!KvCache::check_type(m->kv_layout(), type).ok()) continue;  // gemma3: head dim 48
        const std::vector<int32_t> toks = {1, 17, 42, 99, 5, 7, 300, 12, 8, 64, 2, 33, 71, 90, 11, 3, 250};
        std::vector<float> whole, single;
        auto a = Session::create(*m, 64, 32, type);
        ASSERT_TRUE(a->eval(toks, true, whole).ok());
        auto b = Session::create(*m, 64, 32, type);
        ASSERT_TRUE(b->eval(toks, true, single, /*n_batch=*/1).ok());
        ASSERT_EQ(whole, single) << name;
    }
}

INSTANTIATE_TEST_SUITE_P(KvTypes, BatchKv, ::testing::ValuesIn(kKvTypes),
                         [](const auto& info) { return std::string(quant::type_name(info.param)); });

TEST(Batch, InvalidBatchesAreErrors) {
    std::shared_ptr<gguf::GgufFile> f;
    auto m = load("llama2-spm-tiny.F32.gguf", f);
    auto kv = KvCache::create(m->kv_layout(), 4, 8);
    ForwardOutput out;
    Batch b;
    EXPECT_EQ(m->forward(b, kv.value(), out).code(), StatusCode::invalid_argument);  // empty
    b.block_tables = {{0}};
    b.add(99999, 0, 0, true);
    EXPECT_NE(m->forward(b, kv.value(), out).message().find("outside the vocabulary"), std::string::npos);
    b.clear();
    b.add(1, 0, 3, true);  // no block table for sequence 3
    EXPECT_EQ(m->forward(b, kv.value(), out).code(), StatusCode::invalid_argument);
    b.clear();
    b.add(1, 9, 0, true);  // position 9 needs a second block
    EXPECT_NE(m->forward(b, kv.value(), out).message().find("beyond its KV blocks"), std::string::npos);
    b.clear();
    b.block_tables = {{7}};  // block outside the pool
    b.add(1, 0, 0, true);
    EXPECT_EQ(m->forward(b, kv.value(), out).code(), StatusCode::invalid_argument);
}

TEST(Session, ContextOverflowIsAnErrorAndEvaluatesNothing) {
    std::shared_ptr<gguf::GgufFile> f;
    auto m = load("stories260K.gguf", f);
    auto s = Session::create(*m, 4);
    std::vector<float> logits;
    const std::vector<int32_t> toks = {1, 2, 3, 4, 5};
    Status st = s->eval(toks, false, logits);
    EXPECT_EQ(st.code(), StatusCode::out_of_range);
    EXPECT_EQ(s->n_past(), 0);
}

TEST(KvCache, PoolExhaustionIsReportedAndTablesKept) {
    KvLayout l;
    l.n_layer = 1;
    l.k_width = {4};
    l.v_width = {4};
    auto kv = KvCache::create(l, 3, 2);
    ASSERT_TRUE(kv.ok());
    std::vector<int32_t> t1, t2;
    ASSERT_TRUE(kv->ensure_capacity(t1, 4).ok());
    EXPECT_EQ(t1.size(), 2u);
    EXPECT_EQ(kv->ensure_capacity(t2, 5).code(), StatusCode::resource_exhausted);
    EXPECT_TRUE(t2.empty());
    kv->release(t1);
    EXPECT_EQ(kv->n_free(), 3);
    EXPECT_EQ(KvCache::create(l, 0, 2).status().code(), StatusCode::invalid_argument);
}

}  // namespace
}  // namespace hearth::model
