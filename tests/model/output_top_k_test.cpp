// Batch::output_top_k on the CPU models: every family's top-k output is exactly the k best of
// the full logits rows it gives without it (ids and logit bits, by_logit_desc order), the host
// selection (select_top_k) handles ties, -inf, NaN and -0, and bad k are errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "model/model.h"
#include "support/testdata.h"

namespace hearth::model {
namespace {

// The reference: each row's ids sorted by (logit desc, id asc) with NaN as -inf, first k.
void reference_top_k(const float* logits, int64_t n_rows, int64_t n_cols, int k, std::vector<int32_t>& ids,
                     std::vector<float>& vals) {
    ids.clear(), vals.clear();
    std::vector<int32_t> order((size_t)n_cols);
    for (int64_t r = 0; r < n_rows; ++r) {
        const float* row = logits + r * n_cols;
        auto val = [row](int32_t i) { return std::isnan(row[i]) ? -INFINITY : row[i]; };
        std::iota(order.begin(), order.end(), 0);
        std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int32_t a, int32_t b) {
            return val(a) > val(b) || (val(a) == val(b) && a < b);
        });
        for (int j = 0; j < k; ++j) ids.push_back(order[(size_t)j]), vals.push_back(val(order[(size_t)j]));
    }
}

void expect_same_bits(const std::vector<float>& got, const std::vector<float>& want, const std::string& what) {
    ASSERT_EQ(got.size(), want.size()) << what;
    EXPECT_EQ(0, std::memcmp(got.data(), want.data(), got.size() * sizeof(float))) << what;
}

TEST(SelectTopK, TiesInfNanAndSignedZeroFollowTheSamplerOrder) {
    const float inf = INFINITY, nan = NAN;
    // Rows of 8: ties (lower id first), -inf and NaN (equal, lower id first), -0 == +0, +inf.
    const std::vector<float> logits = {
        1.0f, 3.0f, 3.0f, -2.0f, 3.0f, 0.5f, 1.0f, -inf,   // ties at the top
        -inf, nan, -inf, nan, -inf, -inf, nan, -inf,       // nothing above -inf
        -0.0f, 0.0f, -0.0f, 0.0f, -1.0f, -1.0f, 0.0f, -0.0f,  // signed zeros tie
        nan, inf, 2.0f, inf, -inf, 7.0f, nan, 7.0f,        // +inf and NaN
    };
    std::vector<std::pair<float, int32_t>> scratch;
    for (int k : {1, 3, 5, 8}) {
        std::vector<int32_t> ids(4 * (size_t)k), want_ids;
        std::vector<float> vals(4 * (size_t)k), want_vals;
        select_top_k(logits.data(), 4, 8, k, ids.data(), vals.data(), scratch);
        reference_top_k(logits.data(), 4, 8, k, want_ids, want_vals);
        EXPECT_EQ(ids, want_ids) << "k " << k;
        expect_same_bits(vals, want_vals, "k " + std::to_string(k));
    }
    std::vector<int32_t> ids(12);
    std::vector<float> vals(12);
    select_top_k(logits.data(), 4, 8, 3, ids.data(), vals.data(), scratch);
    EXPECT_EQ(ids, (std::vector<int32_t>{1, 2, 4, 0, 1, 2, 0, 1, 2, 1, 3, 5}));
    EXPECT_TRUE(std::signbit(vals[6]));  // -0 reported as itself
}

struct Loaded {
    std::shared_ptr<gguf::GgufFile> file;
    std::unique_ptr<Model> model;
};

Loaded load(const std::string& name) {
    Loaded l;
    auto f = gguf::open_gguf(test::testdata_path("models/" + name));
    EXPECT_TRUE(f.ok()) << f.status().message();
    if (!f.ok()) return l;
    l.file = f.value();
    LoadOptions o;
    o.n_threads = 2;
    o.num_gpu = 0;
    auto m = load_model(l.file, o);
    EXPECT_TRUE(m.ok()) << m.status().message();
    if (m.ok()) l.model = std::move(m).value();
    return l;
}

// Two sequences, some rows without output, through a fresh cache.
Status run(Model& m, int32_t top_k, ForwardOutput& out) {
    auto kv = KvCache::create(m.kv_layout(), 8, 8);
    if (!kv.ok()) return kv.status();
    Batch b;
    b.block_tables = {{0, 1}, {2, 3}};
    const int32_t nv = (int32_t)m.hparams().n_vocab;
    for (int32_t i = 0; i < 9; ++i) b.add((7 * i + 3) % nv, i, 0, i % 3 != 1);
    for (int32_t i = 0; i < 5; ++i) b.add((11 * i + 5) % nv, i, 1, true);
    b.output_top_k = top_k;
    return m.forward(b, kv.value(), out);
}

TEST(OutputTopK, EveryFamilyGivesTheBestOfItsFullRows) {
    for (const char* name : {"llama3-tiny.Q4_K_M.gguf", "qwen2-tiny.F16.gguf", "qwen3moe-tiny.Q8_0.gguf",
                             "gemma3-tiny.Q8_0.gguf", "phi3-tiny.F16.gguf", "deepseek2-tiny.Q8_0.gguf",
                             "gpt-oss-tiny.F16.gguf", "llama4-tiny.Q8_0.gguf", "mixtral-tiny.Q4_0.gguf"}) {
        Loaded l = load(name);
        ASSERT_TRUE(l.model) << name;
        Model& m = *l.model;
        const int64_t nv = m.hparams().n_vocab;
        ForwardOutput full;
        ASSERT_TRUE(run(m, 0, full).ok()) << name;
        EXPECT_TRUE(full.top_ids.empty() && full.top_logits.empty());
        const int64_t n_rows = (int64_t)full.logits.size() / nv;
        ASSERT_EQ(n_rows, 11) << name;
        ForwardOutput out;  // reused: a top-k step after a full one and the reverse
        for (int k : {1, 40, (int)std::min<int64_t>(kMaxOutputTopK, nv), 0}) {
            ASSERT_TRUE(run(m, k, out).ok()) << name << " k " << k;
            if (k == 0) {
                expect_same_bits(std::vector<float>(out.logits.begin(), out.logits.end()),
                                 std::vector<float>(full.logits.begin(), full.logits.end()), name);
                EXPECT_TRUE(out.top_ids.empty());
                continue;
            }
            EXPECT_TRUE(out.logits.empty()) << name;
            std::vector<int32_t> want_ids;
            std::vector<float> want_vals;
            reference_top_k(full.logits.data(), n_rows, nv, k, want_ids, want_vals);
            EXPECT_EQ(out.top_ids, want_ids) << name << " k " << k;
            expect_same_bits(out.top_logits, want_vals, std::string(name) + " k " + std::to_string(k));
        }
    }
}

TEST(OutputTopK, BadValuesAreInvalidArguments) {
    Loaded l = load("llama3-tiny.Q4_K_M.gguf");
    ASSERT_TRUE(l.model);
    ForwardOutput out;
    const int64_t nv = l.model->hparams().n_vocab;
    for (int64_t k : {(int64_t)-1, (int64_t)kMaxOutputTopK + 1, nv + 1}) {
        if (k == nv + 1 && nv + 1 <= kMaxOutputTopK) continue;
        const Status st = run(*l.model, (int32_t)k, out);
        EXPECT_EQ(st.code(), StatusCode::invalid_argument) << k;
        EXPECT_NE(st.message().find("output_top_k"), std::string::npos) << st.message();
    }
    // A pooling model has no logits to select from.
    Loaded bert = load("bert-bge-tiny.F16.gguf");
    ASSERT_TRUE(bert.model);
    const Status st = run(*bert.model, 4, out);
    EXPECT_EQ(st.code(), StatusCode::invalid_argument);
    EXPECT_NE(st.message().find("pools"), std::string::npos) << st.message();
}

}  // namespace
}  // namespace hearth::model
