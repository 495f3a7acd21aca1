// runtime::Engine on the CUDA decoder (load_model with LoadOptions::num_gpu): concurrent greedy
// requests against each one alone, prefix-cache hits, cancellation, the pool's f16 / no-disk
// fallbacks, and top-k candidates selected on the device (Batch::output_top_k: the best of the
// full rows, and the same tokens as sampling from full rows). Skips where load_model does not place the model on a GPU (no CUDA build, no device);
// scripts/gpu-check.sh runs it on a GPU machine.
//
// Batch invariance does not hold bitwise on the GPU, so "the same as alone" is checked with a
// tolerance: the kernels are chosen by the step's token count (<= 64 tokens: per-token dp4a
// matvecs, fused norms and split attention; > 64: the f16 tensor-core GEMM, backend/cuda/
// matmul.h), so a request's logits move by rounding with what shares its prefill steps (alone,
// a short prompt is one per-token batch; beside 15 others, part of one GEMM batch). The rule:
// a concurrent continuation equals the one alone up to its first differing token, and there
// the alone run's top-2 log-probability margin was below kMarginTol (a near-tie: either pick is
// right; comparing stops there). kMarginTol is tests/model/cuda_decoder_test.cpp's max-abs
// logit tolerance for quantized weights (two GPU paths differ by less than GPU vs CPU).
// Determinism (the same batches twice) and prefix-cache reuse of the same suffix are exact.
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <random>
#include <thread>

#include "runtime/engine.h"
#include "support/testdata.h"

namespace hearth::runtime {
namespace {

constexpr float kMarginTol = 0.6f;

struct Outcome {
    std::vector<TokenLogprob> tokens;  // every generated token with its top-2
    RequestStats stats;
    Status error;
    bool ended = false;
};

// Runs the requests at once on `engine` and waits for all of them.
std::vector<Outcome> run_all(Engine& engine, const std::vector<Request>& reqs) {
    struct State {
        std::mutex mu;
        std::condition_variable cv;
        std::vector<Outcome> runs;
        size_t n_ended = 0;
    };
    auto st = std::make_shared<State>();
    st->runs.resize(reqs.size());
    for (size_t i = 0; i < reqs.size(); ++i)
        engine.submit(reqs[i], [st, i](const Event& e) {
            std::lock_guard<std::mutex> lk(st->mu);
            Outcome& r = st->runs[i];
            if (e.kind == Event::Kind::text) {
                r.tokens.insert(r.tokens.end(), e.logprobs.begin(), e.logprobs.end());
                return;
            }
            if (e.kind == Event::Kind::done) r.stats = e.stats;
            else r.error = e.status;
            r.ended = true;
            ++st->n_ended;
            st->cv.notify_all();
        });
    std::unique_lock<std::mutex> lk(st->mu);
    st->cv.wait_for(lk, std::chrono::minutes(3), [&] { return st->n_ended == reqs.size(); });
    return st->runs;
}

// Tokens equal up to the first difference, where `ref` had a near-tie. Returns the length of
// the common prefix; exact = whole sequences equal.
size_t expect_same_within_tolerance(const Outcome& ref, const Outcome& got, const std::string& what, bool& exact) {
    EXPECT_TRUE(got.ended && got.error.ok()) << what << ": " << got.error.message();
    size_t i = 0;
    while (i < ref.tokens.size() && i < got.tokens.size() && ref.tokens[i].token == got.tokens[i].token) ++i;
    exact = i == ref.tokens.size() && i == got.tokens.size();
    if (!exact && i < ref.tokens.size() && i < got.tokens.size()) {
        const auto& top = ref.tokens[i].top;
        EXPECT_GE(top.size(), 2u);
        const float margin = top.size() >= 2 ? top[0].logprob - top[1].logprob : 0.0f;
        EXPECT_LT(margin, kMarginTol) << what << ": diverges at generated token " << i << " (" << ref.tokens[i].token
                                      << " alone, " << got.tokens[i].token << " here) where the top-2 margin was "
                                      << margin;
    } else if (!exact) {
        ADD_FAILURE() << what << ": lengths differ (" << ref.tokens.size() << " alone, " << got.tokens.size() << ")";
    }
    return i;
}

class EngineGpuTest : public ::testing::Test {
protected:
    void SetUp() override {
        auto f = gguf::open_gguf(test::testdata_path("models/llama3-tiny.Q4_K_M.gguf"));
        ASSERT_TRUE(f.ok()) << f.status().message();
        auto t = tok::Tokenizer::from_gguf(*f.value());
        ASSERT_TRUE(t.ok()) << t.status().message();
        tok_ = std::move(t).value();
        model::LoadOptions lo{2};
        lo.num_gpu = -1;
        auto m = model::load_model(f.value(), lo);
        ASSERT_TRUE(m.ok()) << m.status().message();
        model_ = std::move(m).value();
        if (!model_->kv_on_device()) GTEST_SKIP() << "the model runs on the CPU: " << model_->placement_note();
    }
    std::unique_ptr<Engine> make_engine(const EngineOptions& o) {
        auto e = Engine::create(model_, tok_, o);
        EXPECT_TRUE(e.ok()) << e.status().message();
        return e.ok() ? std::move(e).value() : nullptr;
    }
    std::vector<int32_t> random_prompt(std::mt19937& rng, int n) const {
        std::vector<int32_t> p = {tok_->bos() >= 0 ? tok_->bos() : 1};
        std::uniform_int_distribution<int32_t> id(3, tok_->n_vocab() - 1);
        while ((int)p.size() < n) p.push_back(id(rng));
        return p;
    }
    static Request greedy(std::vector<int32_t> prompt, int64_t num_predict) {
        Request r;
        r.prompt = std::move(prompt);
        r.sampling.temperature = 0.0f;
        r.num_predict = num_predict;
        r.ignore_eos = true;
        r.logprobs = true;
        r.top_logprobs = 2;
        return r;
    }

    std::shared_ptr<model::Model> model_;
    std::shared_ptr<const tok::Tokenizer> tok_;
};

TEST_F(EngineGpuTest, PoolIsF16OnTheDeviceWithoutDiskTier) {
    EngineOptions o;
    o.n_ctx = 256;
    o.n_parallel = 2;
    o.kv_type = quant::QuantType::q8_0;
    o.spill_root = testing::TempDir() + "/hearth-gpu-spill";
    o.model_key = "test";
    auto e = make_engine(o);
    ASSERT_TRUE(e);
    EXPECT_EQ(e->kv_type(), quant::QuantType::f16);
    EXPECT_NE(e->kv_note().find("cuda:"), std::string::npos) << e->kv_note();
    EXPECT_NE(e->kv_note().find("GPU keeps f16"), std::string::npos) << e->kv_note();
    EXPECT_NE(e->kv_note().find("disk prefix cache off"), std::string::npos) << e->kv_note();
    std::printf("  kv_note: %s\n", e->kv_note().c_str());
    // Automatic sizing from device memory still serves.
    EngineOptions a;
    a.n_ctx = 512;
    auto ea = make_engine(a);
    ASSERT_TRUE(ea);
    EXPECT_GE(ea->n_parallel(), 1);
    std::printf("  automatic: %s\n", ea->kv_note().c_str());
    std::mt19937 rng(3);
    const auto runs = run_all(*ea, {greedy(random_prompt(rng, 20), 8)});
    EXPECT_TRUE(runs[0].ended && runs[0].error.ok()) << runs[0].error.message();
    EXPECT_EQ(runs[0].tokens.size(), 8u);
}

TEST_F(EngineGpuTest, ConcurrentRequestsMatchEachAloneWithinTolerance) {
    EngineOptions o;
    o.n_ctx = 256;
    o.n_parallel = 16;
    o.block_size = 16;
    std::mt19937 rng(11);
    std::vector<Request> reqs;
    for (int i = 0; i < 16; ++i) reqs.push_back(greedy(random_prompt(rng, 5 + (int)(rng() % 60)), 16 + (int)(rng() % 24)));
    // Alone: each in its own engine, twice (the second must be bit-identical: determinism).
    std::vector<Outcome> alone;
    for (size_t i = 0; i < reqs.size(); ++i) {
        auto e = make_engine(o);
        ASSERT_TRUE(e);
        const Outcome a = run_all(*e, {reqs[i]})[0];
        ASSERT_TRUE(a.ended && a.error.ok()) << a.error.message();
        ASSERT_EQ(a.tokens.size(), (size_t)reqs[i].num_predict);
        if (i < 4) {
            auto e2 = make_engine(o);
            const Outcome b = run_all(*e2, {reqs[i]})[0];
            bool exact = false;
            expect_same_within_tolerance(a, b, "alone twice", exact);
            EXPECT_TRUE(exact) << "request " << i << " alone is not deterministic";
            for (size_t t = 0; t < a.tokens.size() && t < b.tokens.size(); ++t)
                EXPECT_EQ(a.tokens[t].logprob, b.tokens[t].logprob) << "request " << i << " token " << t;
        }
        alone.push_back(a);
    }
    for (size_t n : {size_t{1}, size_t{4}, size_t{16}}) {
        auto e = make_engine(o);
        ASSERT_TRUE(e);
        const std::vector<Request> batch(reqs.begin(), reqs.begin() + (long)n);
        const auto runs = run_all(*e, batch);
        size_t n_exact = 0, common = 0, total = 0;
        for (size_t i = 0; i < n; ++i) {
            bool exact = false;
            common += expect_same_within_tolerance(alone[i], runs[i], "N=" + std::to_string(n) + " request " +
                                                                          std::to_string(i), exact);
            total += alone[i].tokens.size();
            n_exact += exact ? 1 : 0;
        }
        if (n == 1) {
            EXPECT_EQ(n_exact, 1u) << "one request in a fresh engine is the alone run";
        }
        std::printf("  N=%2zu concurrent: %zu/%zu continuations bit-identical to alone, %zu/%zu tokens before the "
                    "first difference\n", n, n_exact, n, common, total);
        const PoolStats p = e->pool_stats();
        EXPECT_EQ(p.n_used, 0);
        EXPECT_EQ(p.n_running, 0);
    }
}

TEST_F(EngineGpuTest, TopKOutputOnTheDeviceIsTheBestOfTheFullRows) {
    // Batch::output_top_k through the CUDA decoder: each step run with full rows, then twice
    // with k (an eager run that captures the step's graph with the selection in it, then a
    // replay), rewriting the same K/V each time. The candidates must be the k best of the full
    // rows, ids and logit bits (the same kernels computed both).
    const int64_t nv = model_->hparams().n_vocab;
    auto kv = model::KvCache::create(model_->kv_layout(), 16, 16, quant::QuantType::f16, model_->kv_host_first_layer());
    ASSERT_TRUE(kv.ok()) << kv.status().message();
    model::Batch b;
    b.block_tables.resize(4);
    for (auto& t : b.block_tables) ASSERT_TRUE(kv->ensure_capacity(t, 48).ok());
    model::ForwardOutput full, top;
    std::vector<std::pair<float, int32_t>> scratch;
    int n_checked = 0;
    for (int step = 0; step < 6; ++step) {
        b.clear();
        if (step == 0) {  // a prefill of 4 x 9 tokens, the last of each (and one more) with output
            for (int32_t s = 0; s < 4; ++s)
                for (int32_t p = 0; p < 9; ++p) b.add((s * 31 + p * 7 + 3) % (int32_t)nv, p, s, p == 8 || (s == 1 && p == 4));
        } else {  // decode steps of the 4 sequences
            for (int32_t s = 0; s < 4; ++s) b.add((s * 13 + step * 5 + 1) % (int32_t)nv, 8 + step, s, true);
        }
        const int k = step < 3 ? 40 : (step == 3 ? 1 : (int)std::min<int64_t>(model::kMaxOutputTopK, nv));
        b.output_top_k = 0;
        ASSERT_TRUE(model_->forward(b, kv.value(), full).ok());
        const int64_t n_rows = (int64_t)full.logits.size() / nv;
        std::vector<int32_t> want_ids((size_t)(n_rows * k));
        std::vector<float> want_vals((size_t)(n_rows * k));
        model::select_top_k(full.logits.data(), n_rows, nv, k, want_ids.data(), want_vals.data(), scratch);
        b.output_top_k = k;
        for (int rep = 0; rep < 2; ++rep) {
            ASSERT_TRUE(model_->forward(b, kv.value(), top).ok());
            EXPECT_TRUE(top.logits.empty());
            ASSERT_EQ(top.top_ids, want_ids) << "step " << step << " k " << k << " run " << rep;
            ASSERT_EQ(0, std::memcmp(top.top_logits.data(), want_vals.data(), want_vals.size() * sizeof(float)))
                << "step " << step << " run " << rep;
            ++n_checked;
        }
    }
    EXPECT_EQ(n_checked, 12);
}

TEST_F(EngineGpuTest, TopKSamplingGivesTheSameTokensAsFullRows) {
    // Each request alone (one sequence: the same batches, and so the same bits, every run) with
    // the top-k candidate path on and off: the same tokens. Greedy and seeded top_k sampling,
    // the last four with penalties that only lower logits (the candidates then include the
    // penalty window); no logprobs (those need full rows).
    std::mt19937 rng(21);
    for (int i = 0; i < 10; ++i) {
        Request r;
        r.prompt = random_prompt(rng, 5 + (int)(rng() % 60));
        r.num_predict = 24;
        r.ignore_eos = true;
        r.sampling.seed = 500 + i;
        if (i % 2 == 0) r.sampling.temperature = 0.0f;
        if (i >= 6) r.sampling.repeat_penalty = 1.3f, r.sampling.presence_penalty = 0.5f * (float)(i % 3);
        std::vector<int32_t> tokens[2];
        for (int on = 0; on < 2; ++on) {
            EngineOptions o;
            o.n_ctx = 256;
            o.n_parallel = 1;
            o.sample_top_k = on == 1;
            auto e = make_engine(o);
            ASSERT_TRUE(e);
            const Outcome run = run_all(*e, {r})[0];
            ASSERT_TRUE(run.ended && run.error.ok()) << run.error.message();
            tokens[on] = run.stats.tokens;
        }
        EXPECT_EQ(tokens[0].size(), 24u);
        EXPECT_EQ(tokens[0], tokens[1]) << "request " << i;
    }
}

TEST_F(EngineGpuTest, PrefixCacheHitsReuseTheDeviceKv) {
    EngineOptions o;
    o.n_ctx = 256;
    o.n_parallel = 2;
    o.block_size = 16;
    auto e = make_engine(o);
    ASSERT_TRUE(e);
    std::mt19937 rng(7);
    const Request r = greedy(random_prompt(rng, 70), 24);
    const Outcome first = run_all(*e, {r})[0];
    const Outcome second = run_all(*e, {r})[0];
    const Outcome third = run_all(*e, {r})[0];
    ASSERT_TRUE(first.ended && second.ended && third.ended);
    EXPECT_EQ(first.stats.cached_tokens, 0);
    EXPECT_EQ(second.stats.cached_tokens, 64);  // 4 full blocks of the 70-token prompt
    EXPECT_EQ(third.stats.cached_tokens, 64);
    // Second and third: the same cached blocks and the same 6-token suffix: bit-identical.
    bool exact = false;
    expect_same_within_tolerance(second, third, "cache hit twice", exact);
    EXPECT_TRUE(exact);
    for (size_t t = 0; t < second.tokens.size() && t < third.tokens.size(); ++t)
        EXPECT_EQ(second.tokens[t].logprob, third.tokens[t].logprob) << t;
    // First (a 70-token prefill, the GEMM path) against a hit (6 tokens, the matvec path).
    const size_t common = expect_same_within_tolerance(first, second, "cache hit vs cold", exact);
    std::printf("  cold vs cache hit: %s (%zu/%zu tokens before the first difference)\n",
                exact ? "bit-identical" : "differ by rounding", common, first.tokens.size());
}

TEST_F(EngineGpuTest, CancelFreesBlocks) {
    EngineOptions o;
    o.n_ctx = 512;
    o.n_parallel = 2;
    auto e = make_engine(o);
    ASSERT_TRUE(e);
    std::mt19937 rng(5);
    std::mutex mu;
    std::condition_variable cv;
    int n_done = 0, n_cancelled = 0;
    std::vector<RequestId> ids;
    for (int i = 0; i < 4; ++i)
        ids.push_back(e->submit(greedy(random_prompt(rng, 40), -1), [&](const Event& ev) {
            if (ev.kind == Event::Kind::text) return;
            std::lock_guard<std::mutex> lk(mu);
            ++n_done;
            if (ev.kind == Event::Kind::done && ev.stats.done == DoneReason::cancelled) ++n_cancelled;
            cv.notify_all();
        }));
    for (int spin = 0; spin < 5000 && e->pool_stats().n_used == 0; ++spin)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    EXPECT_GT(e->pool_stats().n_used, 0);
    for (RequestId id : ids) e->cancel(id);
    {
        std::unique_lock<std::mutex> lk(mu);
        cv.wait_for(lk, std::chrono::minutes(1), [&] { return n_done == 4; });
    }
    EXPECT_EQ(n_done, 4);
    EXPECT_EQ(n_cancelled, 4);
    for (int spin = 0; spin < 1000 && e->pool_stats().n_running > 0; ++spin)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    const PoolStats p = e->pool_stats();
    EXPECT_EQ(p.n_used, 0);
    EXPECT_EQ(p.n_running, 0);
    EXPECT_EQ(p.n_free + p.n_cached, p.n_blocks);
}

}  // namespace
}  // namespace hearth::runtime
