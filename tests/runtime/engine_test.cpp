// runtime::Engine: continuous batching gives each sequence exactly the tokens it gets alone in
// an engine (greedy), prefix caching reuses blocks without changing outputs, a full pool makes requests
// wait in FIFO order, cancellation and shutdown release every block, and bad prompts are errors.
#include "runtime/engine.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <thread>

#include "support/testdata.h"

namespace hearth::runtime {
namespace {

// What one request ended with, filled from the scheduler thread.
struct Outcome {
    std::string text;
    RequestStats stats;
    Status error;
    int n_final = 0;  // done + error events: must end at exactly 1
};

// Collects the events of many requests and waits for all of them to end. The callbacks share
// the state, so a late event after a timed-out wait never touches freed memory.
class Collector {
    struct State {
        explicit State(size_t n) : out(n) {}
        std::mutex mu;
        std::condition_variable cv;
        std::vector<Outcome> out;
        std::vector<size_t> order;
    };

public:
    explicit Collector(size_t n) : s_(std::make_shared<State>(n)), out_(s_->out), order_(s_->order) {}
    EventCallback callback(size_t i) {
        return [s = s_, i](const Event& e) {
            std::lock_guard<std::mutex> lk(s->mu);
            Outcome& o = s->out[i];
            if (e.kind == Event::Kind::text) o.text += e.text;
            else {
                if (e.kind == Event::Kind::done) o.stats = e.stats;
                else o.error = e.status;
                ++o.n_final;
                s->order.push_back(i);
                s->cv.notify_all();
            }
        };
    }
    // Waits until every request has ended (or 5 minutes passed, for the sanitizer builds on a
    // busy machine: then the test fails on the counts).
    void wait() {
        std::unique_lock<std::mutex> lk(s_->mu);
        s_->cv.wait_for(lk, std::chrono::minutes(5), [&] { return s_->order.size() >= s_->out.size(); });
    }
    bool has_ended(size_t i) {
        std::lock_guard<std::mutex> lk(s_->mu);
        return s_->out[i].n_final > 0;
    }

private:
    std::shared_ptr<State> s_;

public:
    std::vector<Outcome>& out_;
    std::vector<size_t>& order_;  // request indices in the order they ended
};

class EngineTest : public ::testing::Test {
protected:
    void load(const std::string& name) {
        auto f = gguf::open_gguf(test::testdata_path("models/" + name));
        ASSERT_TRUE(f.ok()) << f.status().message();
        auto t = tok::Tokenizer::from_gguf(*f.value());
        ASSERT_TRUE(t.ok()) << t.status().message();
        tok_ = std::move(t).value();
        auto m = model::load_model(f.value(), model::LoadOptions{2});
        ASSERT_TRUE(m.ok()) << m.status().message();
        model_ = std::move(m).value();
    }
    std::unique_ptr<Engine> make_engine(const EngineOptions& o) {
        auto e = Engine::create(model_, tok_, o);
        EXPECT_TRUE(e.ok()) << e.status().message();
        return e.ok() ? std::move(e).value() : nullptr;
    }
    // The same request run alone, uncached: a fresh engine with one sequence slot.
    Outcome alone(const Request& r, int64_t n_ctx, quant::QuantType kv_type = quant::QuantType::f16) {
        EngineOptions o;
        o.n_ctx = n_ctx;
        o.kv_type = kv_type;
        o.n_parallel = 1;
        auto e = make_engine(o);
        Collector c(1);
        if (e) e->submit(r, c.callback(0));
        c.wait();
        return c.out_[0];
    }
    // Random prompt: BOS, then n - 1 ids drawn from the vocabulary (skipping the control ids).
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
        return r;
    }
    static void expect_same(const Outcome& got, const Outcome& want, const std::string& what) {
        EXPECT_EQ(got.n_final, 1) << what;
        EXPECT_TRUE(got.error.ok()) << what << ": " << got.error.message();
        EXPECT_EQ(got.stats.tokens, want.stats.tokens) << what;
        EXPECT_EQ(got.text, want.text) << what;
        EXPECT_EQ(got.stats.done, want.stats.done) << what;
    }
    static void expect_pool_idle(const Engine& e) {
        const PoolStats p = e.pool_stats();
        EXPECT_EQ(p.n_used, 0);
        EXPECT_EQ(p.n_free + p.n_cached, p.n_blocks);
        EXPECT_EQ(p.n_running, 0);
        EXPECT_EQ(p.n_waiting, 0);
    }
    // Runs every request concurrently on a fresh engine and checks each against its alone run.
    void check_concurrent(int n, const EngineOptions& o, uint32_t seed) {
        std::mt19937 rng(seed);
        std::vector<Request> reqs;
        std::vector<Outcome> want;
        for (int i = 0; i < n; ++i) {
            const int len = 1 + (int)(rng() % 150);  // mixed: 1 to 150 prompt tokens, chunked by the step budget
            reqs.push_back(greedy(random_prompt(rng, len), 8 + (int)(rng() % 24)));
            if (i % 5 == 4) reqs.back().num_predict = -1;  // runs to the end of the context
            want.push_back(alone(reqs.back(), o.n_ctx, o.kv_type));
        }
        auto engine = make_engine(o);
        ASSERT_TRUE(engine);
        Collector c(reqs.size());
        for (size_t i = 0; i < reqs.size(); ++i) engine->submit(reqs[i], c.callback(i));
        c.wait();
        for (size_t i = 0; i < reqs.size(); ++i) {
            expect_same(c.out_[i], want[i], "N=" + std::to_string(n) + " request " + std::to_string(i));
            EXPECT_EQ(c.out_[i].stats.prompt_tokens, (int64_t)reqs[i].prompt.size());
        }
        expect_pool_idle(*engine);
    }

    std::shared_ptr<model::Model> model_;
    std::shared_ptr<const tok::Tokenizer> tok_;
};

TEST_F(EngineTest, ConcurrentSequencesMatchAloneStories) {
    load("stories260K.gguf");
    EngineOptions o;
    o.n_ctx = 192;
    o.step_tokens = 96;  // prompts up to 150 tokens are prefilled in chunks next to decodes
    for (int n : {1, 4, 16, 64}) {
        o.n_parallel = n;
        check_concurrent(n, o, 1000u + (uint32_t)n);
    }
}

TEST_F(EngineTest, ConcurrentSequencesMatchAloneQwen3Moe) {
    load("qwen3moe-tiny.Q8_0.gguf");
    EngineOptions o;
    o.n_ctx = 192;
    o.step_tokens = 128;
    for (int n : {1, 4, 16, 64}) {
        o.n_parallel = n;
        check_concurrent(n, o, 2000u + (uint32_t)n);
    }
}

TEST_F(EngineTest, ConcurrentSequencesMatchAloneQuantizedKv) {
    load("qwen3moe-tiny.Q8_0.gguf");  // head dim 32: q8_0 and q4_0 fit
    EngineOptions o;
    o.n_ctx = 192;
    o.step_tokens = 128;
    o.n_parallel = 16;
    for (quant::QuantType t : {quant::QuantType::q8_0, quant::QuantType::q4_0}) {
        o.kv_type = t;
        check_concurrent(16, o, 3000u + (uint32_t)t);
    }
}

TEST_F(EngineTest, PrefixCacheReusesBlocksAndKeepsOutputs) {
    load("stories260K.gguf");
    std::mt19937 rng(7);
    const std::vector<int32_t> base = random_prompt(rng, 150);
    const int K = 100;
    std::vector<int32_t> shared(base.begin(), base.begin() + K);
    for (int i = 0; i < 30; ++i) shared.push_back(3 + (int32_t)(rng() % 200));
    const Request first = greedy(base, 16), second = greedy(shared, 16);
    const Outcome want_first = alone(first, 256), want_second = alone(second, 256);

    EngineOptions o;
    o.n_ctx = 256;
    o.n_parallel = 2;
    auto engine = make_engine(o);
    ASSERT_TRUE(engine);
    for (int round = 0; round < 2; ++round) {
        Collector c(1);
        engine->submit(first, c.callback(0));
        c.wait();
        expect_same(c.out_[0], want_first, "first");
        // Round 0 starts cold; in round 1 the whole prompt but its last partial block is cached.
        EXPECT_EQ(c.out_[0].stats.cached_tokens, round == 0 ? 0 : (150 - 1) / 32 * 32);
    }
    Collector c(1);
    engine->submit(second, c.callback(0));
    c.wait();
    expect_same(c.out_[0], want_second, "second");
    EXPECT_GE(c.out_[0].stats.cached_tokens, K - engine->block_size());
    EXPECT_EQ(c.out_[0].stats.prompt_tokens, (int64_t)shared.size());
    const PoolStats p = engine->pool_stats();
    EXPECT_GT(p.n_cached, 0);
    expect_pool_idle(*engine);
}

TEST_F(EngineTest, FullPoolQueuesFifoAndEvictionKeepsOutputs) {
    load("stories260K.gguf");
    std::mt19937 rng(11);
    // Equal work per request (same prompt length, no end-of-generation stop), so strict FIFO
    // admission means they end in submission order.
    std::vector<Request> reqs;
    std::vector<Outcome> want;
    for (int i = 0; i < 12; ++i) {
        reqs.push_back(greedy(random_prompt(rng, 70), 40));
        reqs.back().ignore_eos = true;
        if (i >= 6) reqs.back().prompt = reqs[i - 6].prompt;  // repeats: hit or miss the evicting cache
        want.push_back(alone(reqs.back(), 128));
    }
    EngineOptions o;
    o.n_ctx = 128;
    o.n_kv_blocks = 9;  // two sequences of 4 reserved blocks each, plus one: the pool is always nearly full
    auto engine = make_engine(o);
    ASSERT_TRUE(engine);
    EXPECT_EQ(engine->n_parallel(), 2);
    Collector c(reqs.size());
    for (size_t i = 0; i < reqs.size(); ++i) engine->submit(reqs[i], c.callback(i));
    c.wait();
    for (size_t i = 0; i < reqs.size(); ++i) expect_same(c.out_[i], want[i], "request " + std::to_string(i));
    std::vector<size_t> fifo(reqs.size());
    for (size_t i = 0; i < fifo.size(); ++i) fifo[i] = i;
    EXPECT_EQ(c.order_, fifo);
    expect_pool_idle(*engine);
}

TEST_F(EngineTest, ShortPromptDoesNotWaitForALongPrefill) {
    // Chunked prefill, shortest remaining prompt first: a short request submitted right after
    // a long one gets its first token while the long prompt is still being prefilled, and both
    // produce what they produce alone.
    load("stories260K.gguf");
    std::mt19937 rng(5);
    const Request long_req = greedy(random_prompt(rng, 1500), 4);
    const Request short_req = greedy(random_prompt(rng, 10), 1);
    const Outcome long_alone = alone(long_req, 2048), short_alone = alone(short_req, 2048);
    EngineOptions o;
    o.n_ctx = 2048;
    o.n_parallel = 2;
    o.step_tokens = 64;  // the long prompt needs 24 steps
    auto engine = make_engine(o);
    ASSERT_TRUE(engine);
    Collector c(2);
    engine->submit(long_req, c.callback(0));
    engine->submit(short_req, c.callback(1));
    c.wait();
    expect_same(c.out_[0], long_alone, "long");
    expect_same(c.out_[1], short_alone, "short");
    EXPECT_EQ(c.order_, (std::vector<size_t>{1, 0}));  // the short one ended first
    EXPECT_LT(c.out_[1].stats.queue_ns + c.out_[1].stats.prompt_ns,
              c.out_[0].stats.queue_ns + c.out_[0].stats.prompt_ns);
    expect_pool_idle(*engine);
}

TEST_F(EngineTest, LongPrefillIsNotStarvedByShortPrompts) {
    // Short prompts keep arriving and each would go first (shortest remaining prompt first); a
    // prefill passed over several steps in a row jumps the queue, so the long request ends
    // while most short ones are still queued.
    load("stories260K.gguf");
    std::mt19937 rng(11);
    EngineOptions o;
    o.n_ctx = 512;
    o.n_parallel = 4;
    o.step_tokens = 16;
    auto engine = make_engine(o);
    ASSERT_TRUE(engine);
    const size_t n_short = 200;
    Collector c(n_short + 1);
    engine->submit(greedy(random_prompt(rng, 300), 1), c.callback(0));
    for (size_t i = 1; i <= n_short; ++i) engine->submit(greedy(random_prompt(rng, 15), 1), c.callback(i));
    c.wait();
    const size_t long_at = (size_t)(std::find(c.order_.begin(), c.order_.end(), 0) - c.order_.begin());
    EXPECT_LT(long_at, n_short / 2) << "the long prompt ended as number " << long_at;
    EXPECT_TRUE(c.out_[0].error.ok());
    EXPECT_EQ(c.out_[0].stats.generated_tokens, 1);
    expect_pool_idle(*engine);
}

TEST_F(EngineTest, TruncationAndLogitsMask) {
    load("stories260K.gguf");
    EngineOptions o;
    o.n_ctx = 64;
    auto engine = make_engine(o);
    ASSERT_TRUE(engine);
    std::mt19937 rng(4);
    Request too_long = greedy(random_prompt(rng, 100), 8);
    too_long.truncate = true;
    too_long.keep = 1;
    // What the truncated prompt gives when sent as it is: the same tokens.
    Request cut = too_long;
    cut.truncate = false;
    ASSERT_EQ(fit_prompt(cut.prompt, 64, too_long).value(), 100 - 56);
    // Any distribution with this mask leaves exactly one token at every step.
    struct OnlyEven : LogitsMask {
        void apply(std::span<float> logits) override {
            for (size_t i = 1; i < logits.size(); i += 2) logits[i] = -INFINITY;
        }
        void accept(int32_t token) override { EXPECT_EQ(token % 2, 0); }
    };
    Request masked = greedy(random_prompt(rng, 20), 12);
    masked.sampling.temperature = 1.5f;
    masked.sampling.top_k = 0;
    masked.sampling.seed = 8;
    masked.mask = std::make_shared<OnlyEven>();
    Collector c(3);
    engine->submit(too_long, c.callback(0));
    engine->submit(cut, c.callback(1));
    engine->submit(masked, c.callback(2));
    c.wait();
    ASSERT_TRUE(c.out_[0].error.ok()) << c.out_[0].error.message();
    EXPECT_EQ(c.out_[0].stats.truncated_tokens, 44);
    EXPECT_EQ(c.out_[0].stats.prompt_tokens, 56);
    expect_same(c.out_[0], c.out_[1], "truncated vs pre-cut prompt");
    ASSERT_TRUE(c.out_[2].error.ok()) << c.out_[2].error.message();
    for (int32_t t : c.out_[2].stats.tokens) EXPECT_EQ(t % 2, 0);
    EXPECT_GT(c.out_[2].stats.generated_tokens, 0);
    expect_pool_idle(*engine);
}

// Forwards to a real model and records every batch's shape: tokens, sequences and output_top_k
// (the scheduler thread writes, the test reads after the requests ended). `prefill`: the tokens
// per prompt step it prefers (Model::prefill_step_tokens).
class BatchSpy : public model::Model {
public:
    struct Shape {
        int64_t tokens;
        size_t seqs;
        int32_t top_k;
    };
    BatchSpy(std::shared_ptr<const gguf::GgufFile> file, std::shared_ptr<model::Model> inner, int64_t prefill = 0)
        : Model(std::move(file), inner->hparams(), 1), inner_(std::move(inner)), prefill_(prefill) {}
    model::KvLayout kv_layout() const override { return inner_->kv_layout(); }
    int64_t prefill_step_tokens() const override { return prefill_; }
    std::vector<Shape> shapes() {
        std::lock_guard<std::mutex> lk(mu_);
        return shapes_;
    }
    std::vector<int32_t> top_ks() {
        std::vector<int32_t> ks;
        for (const Shape& b : shapes()) ks.push_back(b.top_k);
        return ks;
    }

protected:
    Status run_forward(const model::Batch& batch, model::KvCache& kv, model::ForwardOutput& out) override {
        {
            std::lock_guard<std::mutex> lk(mu_);
            shapes_.push_back(Shape{batch.n_tokens(), batch.block_tables.size(), batch.output_top_k});
        }
        return inner_->forward(batch, kv, out);
    }

private:
    std::shared_ptr<model::Model> inner_;
    int64_t prefill_;
    std::mutex mu_;
    std::vector<Shape> shapes_;
};

TEST_F(EngineTest, TopKCandidatesGiveTheSameTokensAsFullRows) {
    for (const char* name : {"stories260K.gguf", "qwen3moe-tiny.Q8_0.gguf"}) {
        load(name);
        auto file = gguf::open_gguf(test::testdata_path(std::string("models/") + name));
        ASSERT_TRUE(file.ok());
        std::mt19937 rng(77);
        // Greedy, Ollama's defaults, and top_k with every later stage, each with its own seed.
        std::vector<Request> plain, full_only, penalized;
        for (int i = 0; i < 12; ++i) {
            Request r = greedy(random_prompt(rng, 5 + (int)(rng() % 60)), 24);
            r.sampling = SamplingOptions{};
            r.sampling.seed = 100 + i;
            if (i % 4 == 0) r.sampling.temperature = 0.0f;
            if (i % 4 == 2) r.sampling.top_k = 5, r.sampling.typical_p = 0.9f, r.sampling.min_p = 0.05f, r.sampling.temperature = 1.2f;
            if (i % 4 == 3) r.sampling.top_k = 128, r.sampling.top_p = 0.95f, r.sampling.temperature = 1.0f;
            plain.push_back(r);
            // The same with penalties that only lower logits (the candidates then include the
            // penalty window; top_k 128 + a window would pass kMaxOutputTopK: no penalty there).
            Request p = r;
            if (i % 4 != 3) p.sampling.repeat_penalty = 1.1f + 0.1f * (float)(i % 3);
            if (i % 4 == 1) p.sampling.presence_penalty = 0.5f, p.sampling.frequency_penalty = 0.25f;
            if (i % 4 == 2) p.sampling.repeat_last_n = 16;
            penalized.push_back(p);
            // The same, each needing the whole row: penalties that can raise a logit, a logits
            // mask, logprobs, top_k off.
            if (i % 4 == 0) r.sampling.repeat_penalty = 0.9f;
            if (i % 4 == 1) r.logprobs = true;
            if (i % 4 == 2) r.sampling.top_k = 0;
            if (i % 4 == 3) {
                struct AllowAll : LogitsMask {
                    void apply(std::span<float>) override {}
                    void accept(int32_t) override {}
                };
                r.mask = std::make_shared<AllowAll>();
            }
            full_only.push_back(r);
        }
        auto run = [&](const std::vector<Request>& reqs, bool top_k, std::vector<int32_t>& ks) {
            auto spy = std::make_shared<BatchSpy>(file.value(), model_);
            EngineOptions o;
            o.n_ctx = 128;
            o.n_parallel = 12;
            o.step_tokens = 64;
            o.sample_top_k = top_k;
            auto e = Engine::create(spy, tok_, o);
            EXPECT_TRUE(e.ok()) << e.status().message();
            Collector c(reqs.size());
            if (e.ok())
                for (size_t i = 0; i < reqs.size(); ++i) e.value()->submit(reqs[i], c.callback(i));
            c.wait();
            ks = spy->top_ks();
            return c.out_;
        };
        std::vector<int32_t> ks_on, ks_off, ks_full;
        const std::vector<Outcome> on = run(plain, true, ks_on), off = run(plain, false, ks_off);
        for (size_t i = 0; i < plain.size(); ++i) {
            expect_same(on[i], off[i], std::string(name) + " request " + std::to_string(i));
            EXPECT_GT(on[i].stats.generated_tokens, 0);
        }
        // The candidate path ran (128: the most any request needs), and only when asked for.
        EXPECT_EQ(*std::max_element(ks_on.begin(), ks_on.end()), 128) << name;
        EXPECT_GT(std::count(ks_on.begin(), ks_on.end(), 128), 10) << name;
        EXPECT_EQ(std::count(ks_off.begin(), ks_off.end(), 0), (std::ptrdiff_t)ks_off.size()) << name;
        // Penalties that only lower logits: the same tokens from candidates as from full rows.
        std::vector<int32_t> ks_pen_on, ks_pen_off;
        const std::vector<Outcome> pen_on = run(penalized, true, ks_pen_on), pen_off = run(penalized, false, ks_pen_off);
        for (size_t i = 0; i < penalized.size(); ++i) {
            expect_same(pen_on[i], pen_off[i], std::string(name) + " penalized request " + std::to_string(i));
            EXPECT_GT(pen_on[i].stats.generated_tokens, 0);
        }
        EXPECT_GT(std::count_if(ks_pen_on.begin(), ks_pen_on.end(), [](int32_t k) { return k > 40; }), 10) << name;
        // Requests that need the whole row get full rows.
        const std::vector<Outcome> full = run(full_only, true, ks_full);
        for (size_t i = 0; i < full.size(); ++i) EXPECT_TRUE(full[i].error.ok()) << full[i].error.message();
        EXPECT_EQ(std::count(ks_full.begin(), ks_full.end(), 0), (std::ptrdiff_t)ks_full.size()) << name;
        // The environment switch turns it off.
        ::setenv("HEARTH_SAMPLE_TOPK", "0", 1);
        std::vector<int32_t> ks_env;
        const std::vector<Outcome> env_off = run(plain, true, ks_env);
        ::unsetenv("HEARTH_SAMPLE_TOPK");
        EXPECT_EQ(std::count(ks_env.begin(), ks_env.end(), 0), (std::ptrdiff_t)ks_env.size()) << name;
        for (size_t i = 0; i < plain.size(); ++i) expect_same(env_off[i], off[i], std::string(name) + " env off");
    }
}

TEST_F(EngineTest, PromptOnlyStepsTakeTheModelsPrefillBudget) {
    // A model that prefers 256-token prompt steps (a GPU model's activations budget): a lone
    // prompt goes in steps of 256, not step_tokens (64), with the same output; while another
    // sequence decodes, every step stays within step_tokens; an explicit solo_step_tokens wins.
    load("stories260K.gguf");
    auto file = gguf::open_gguf(test::testdata_path("models/stories260K.gguf"));
    ASSERT_TRUE(file.ok());
    std::mt19937 rng(31);
    const Request lone = greedy(random_prompt(rng, 600), 3);
    const Outcome want = alone(lone, 1024);
    auto run = [&](int64_t solo, std::vector<BatchSpy::Shape>& steps) {
        auto spy = std::make_shared<BatchSpy>(file.value(), model_, 256);
        EngineOptions o;
        o.n_ctx = 1024;
        o.n_parallel = 2;
        o.step_tokens = 64;
        o.solo_step_tokens = solo;
        auto e = Engine::create(spy, tok_, o);
        EXPECT_TRUE(e.ok()) << e.status().message();
        Collector c(1);
        if (e.ok()) e.value()->submit(lone, c.callback(0));
        c.wait();
        steps = spy->shapes();
        return c.out_[0];
    };
    std::vector<BatchSpy::Shape> steps;
    expect_same(run(0, steps), want, "model's prompt steps");
    ASSERT_GE(steps.size(), 3u);
    EXPECT_EQ(steps[0].tokens, 256);
    EXPECT_EQ(steps[1].tokens, 256);
    EXPECT_EQ(steps[2].tokens, 600 - 512);
    expect_same(run(100, steps), want, "explicit prompt steps");
    EXPECT_EQ(steps[0].tokens, 100);

    // A long prompt arriving while another sequence decodes: chunks of step_tokens beside it.
    auto spy = std::make_shared<BatchSpy>(file.value(), model_, 256);
    EngineOptions o;
    o.n_ctx = 1024;
    o.n_parallel = 2;
    o.step_tokens = 64;
    auto engine = Engine::create(spy, tok_, o);
    ASSERT_TRUE(engine.ok()) << engine.status().message();
    Request decoding = greedy(random_prompt(rng, 8), 300);
    decoding.ignore_eos = true;
    std::atomic<int> pieces{0};
    Collector c(2);
    auto cb = c.callback(0);
    engine.value()->submit(decoding, [&pieces, cb](const Event& e) {
        if (e.kind == Event::Kind::text) ++pieces;
        cb(e);
    });
    while (pieces.load() < 2 && !c.has_ended(0)) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    engine.value()->submit(lone, c.callback(1));
    c.wait();
    EXPECT_TRUE(c.out_[0].error.ok()) << c.out_[0].error.message();
    expect_same(c.out_[1], want, "beside a decode");
    ASSERT_EQ(c.order_.front(), 1u) << "the decoding request ended before the long prompt's";
    int64_t beside = 0;
    for (const BatchSpy::Shape& b : spy->shapes()) {
        if (b.seqs == 1) continue;
        EXPECT_LE(b.tokens, 64);
        beside += b.tokens;
    }
    EXPECT_GE(beside, 600 - 1);  // the whole prompt went in steps beside the decode
}

TEST_F(EngineTest, TraceStepsWritesOneLinePerStep) {
    // trace_steps: one stderr line per scheduler step, with the step's tokens and timings; the
    // output is the same as without it. A 100-token prompt in 64-token steps, then 3 decodes.
    load("stories260K.gguf");
    std::mt19937 rng(37);
    Request r = greedy(random_prompt(rng, 100), 4);
    r.ignore_eos = true;
    const Outcome want = alone(r, 256);
    EngineOptions o;
    o.n_ctx = 256;
    o.n_parallel = 1;
    o.step_tokens = 64;
    o.solo_step_tokens = 64;
    o.trace_steps = true;
    auto e = make_engine(o);
    ASSERT_NE(e, nullptr);
    testing::internal::CaptureStderr();
    Collector c(1);
    e->submit(r, c.callback(0));
    c.wait();
    e.reset();  // the scheduler thread has stopped writing
    const std::string log = testing::internal::GetCapturedStderr();
    expect_same(c.out_[0], want, "traced");
    std::vector<std::string> lines;
    for (size_t p = 0; (p = log.find("hearth engine step: ", p)) != std::string::npos; ++p)
        lines.push_back(log.substr(p, log.find('\n', p) - p));
    ASSERT_EQ(lines.size(), 5u) << log;  // 64 + 36 prompt tokens, then 3 decode steps
    EXPECT_NE(lines[0].find("64 tokens, 1 sequences (0 decoding), 0 outputs"), std::string::npos) << lines[0];
    EXPECT_NE(lines[1].find("36 tokens, 1 sequences (0 decoding), 1 outputs"), std::string::npos) << lines[1];
    EXPECT_NE(lines[4].find("1 tokens, 1 sequences (1 decoding), 1 outputs"), std::string::npos) << lines[4];
    EXPECT_NE(lines[4].find("forward "), std::string::npos) << lines[4];
}

TEST_F(EngineTest, DiskPrefixCacheSurvivesARestartAndDistrustsDamagedFiles) {
    // A 2,000-token prompt with the disk tier on; a new engine (a restart) over the same folder
    // reads it back instead of prefilling it, with identical output; a truncated and a
    // bit-flipped block file make the next run compute from the damaged block on, same output.
    load("stories260K.gguf");
    namespace fs = std::filesystem;
    char tmpl[] = "/tmp/hearth-spill-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    const fs::path root = tmpl;
    std::mt19937 rng(21);
    const Request req = greedy(random_prompt(rng, 2000), 16);
    const Outcome want = alone(req, 2048);
    EngineOptions o;
    o.n_ctx = 2048;
    o.n_parallel = 1;
    o.spill_root = root.string();
    o.model_key = "sha256:stories260K-test";
    auto run = [&](const char* what) {
        auto engine = make_engine(o);
        Collector c(1);
        if (engine) engine->submit(req, c.callback(0));
        c.wait();
        expect_same(c.out_[0], want, what);
        return c.out_[0].stats;
    };
    const RequestStats first = run("first run");
    EXPECT_EQ(first.cached_tokens, 0);
    const RequestStats second = run("after a restart");
    EXPECT_GE(second.cached_tokens, 1900);
    EXPECT_EQ(second.disk_cached_tokens, second.cached_tokens);
    // Damage block 10 (truncated) and block 20 (one flipped payload byte).
    fs::path dir;
    for (const auto& e : fs::directory_iterator(root / "kvcache")) dir = e.path();
    ASSERT_FALSE(dir.empty());
    uint64_t h = kChainSeed;
    std::vector<uint64_t> chain;
    for (size_t i = 0; i + 32 <= req.prompt.size(); i += 32)
        chain.push_back(h = chain_hash(h, std::span<const int32_t>(req.prompt.data() + i, 32)));
    const fs::path f10 = dir / PrefixStore::file_name(chain[10]), f20 = dir / PrefixStore::file_name(chain[20]);
    ASSERT_TRUE(fs::exists(f10));
    ASSERT_TRUE(fs::exists(f20));
    fs::resize_file(f10, fs::file_size(f10) / 2);
    {
        std::fstream f(f20, std::ios::in | std::ios::out | std::ios::binary);
        f.seekp(-7, std::ios::end);
        char byte = 0;
        f.read(&byte, 1);
        f.seekp(-7, std::ios::end);
        byte ^= 0x10;
        f.write(&byte, 1);
    }
    const RequestStats third = run("after damage");
    EXPECT_EQ(third.cached_tokens, 10 * 32);  // the blocks before the truncated one
    // Block 10 was rewritten; block 20's damage is found now (it was never read before).
    const RequestStats fourth = run("after block 10 was rewritten");
    EXPECT_EQ(fourth.cached_tokens, 20 * 32);
    const RequestStats fifth = run("after both were rewritten");
    EXPECT_GE(fifth.cached_tokens, 1900);
    fs::remove_all(root);
}

TEST_F(EngineTest, CancelFreesBlocksOfRunningAndWaitingRequests) {
    load("stories260K.gguf");
    EngineOptions o;
    o.n_ctx = 256;
    o.n_parallel = 2;
    auto engine = make_engine(o);
    ASSERT_TRUE(engine);
    std::mt19937 rng(5);
    Collector c(4);
    std::vector<RequestId> ids;
    for (size_t i = 0; i < 4; ++i) {
        Request r = greedy(random_prompt(rng, 40), -1);
        r.ignore_eos = true;
        ids.push_back(engine->submit(r, c.callback(i)));
    }
    // Two run, two wait for a slot. Cancel all four once the first two are generating.
    for (int spin = 0; spin < 2000 && engine->pool_stats().n_used == 0; ++spin)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    EXPECT_GT(engine->pool_stats().n_used, 0);
    for (RequestId id : ids) engine->cancel(id);
    c.wait();
    for (const Outcome& out : c.out_) {
        EXPECT_EQ(out.n_final, 1);
        EXPECT_EQ(out.stats.done, DoneReason::cancelled);
        EXPECT_LT(out.stats.generated_tokens, 256);
    }
    expect_pool_idle(*engine);
    engine->cancel(ids[0]);  // already finished: ignored
    engine->cancel(12345);   // unknown: ignored
}

TEST_F(EngineTest, ShutdownCancelsPendingRequests) {
    load("stories260K.gguf");
    EngineOptions o;
    o.n_ctx = 256;
    o.n_parallel = 1;
    auto engine = make_engine(o);
    ASSERT_TRUE(engine);
    std::mt19937 rng(3);
    Collector c(3);
    for (size_t i = 0; i < 3; ++i) {
        Request r = greedy(random_prompt(rng, 20), -1);
        r.ignore_eos = true;
        engine->submit(r, c.callback(i));
    }
    engine->shutdown();
    for (const Outcome& out : c.out_) {  // callbacks all ran before shutdown() returned
        EXPECT_EQ(out.n_final, 1);
        EXPECT_EQ(out.stats.done, DoneReason::cancelled);
    }
    Collector late(1);
    EXPECT_EQ(engine->submit(greedy({1, 2}, 4), late.callback(0)), 0u);
    EXPECT_EQ(late.out_[0].stats.done, DoneReason::cancelled);
}

TEST_F(EngineTest, BadRequestsGetErrorEvents) {
    load("stories260K.gguf");
    EngineOptions o;
    o.n_ctx = 64;
    auto engine = make_engine(o);
    ASSERT_TRUE(engine);
    Collector c(4);
    engine->submit(greedy(std::vector<int32_t>(64, 5), 4), c.callback(0));  // no room to generate
    engine->submit(greedy({}, 4), c.callback(1));
    engine->submit(greedy({1, 99999}, 4), c.callback(2));
    Request bad_sampling = greedy({1, 2, 3}, 4);
    bad_sampling.sampling.top_p = 1.5f;
    engine->submit(bad_sampling, c.callback(3));
    c.wait();
    EXPECT_EQ(c.out_[0].error.code(), StatusCode::out_of_range);
    EXPECT_NE(c.out_[0].error.message().find("context"), std::string::npos) << c.out_[0].error.message();
    EXPECT_EQ(c.out_[1].error.code(), StatusCode::invalid_argument);
    EXPECT_EQ(c.out_[2].error.code(), StatusCode::invalid_argument);
    EXPECT_EQ(c.out_[3].error.code(), StatusCode::invalid_argument);
    for (const Outcome& out : c.out_) EXPECT_EQ(out.n_final, 1);
    expect_pool_idle(*engine);
}

TEST_F(EngineTest, OptionsSizeThePool) {
    load("stories260K.gguf");
    EngineOptions o;
    o.n_ctx = 100;  // 4 blocks of 32
    o.n_kv_blocks = 13;
    auto e = make_engine(o);
    ASSERT_TRUE(e);
    EXPECT_EQ(e->n_parallel(), 3);
    EXPECT_EQ(e->pool_stats().n_blocks, 13);
    o.n_kv_blocks = 3;
    EXPECT_EQ(Engine::create(model_, tok_, o).status().code(), StatusCode::resource_exhausted);
    o.n_kv_blocks = 0;
    o.n_parallel = 5;
    e = make_engine(o);
    ASSERT_TRUE(e);
    EXPECT_EQ(e->pool_stats().n_blocks, 20);
    // A byte budget buys twice the blocks in f16 as in f32.
    o.n_parallel = 0;
    o.kv_bytes = 4 << 20;
    e = make_engine(o);
    ASSERT_TRUE(e);
    EXPECT_EQ(e->kv_type(), quant::QuantType::f16);
    const int f16_blocks = e->pool_stats().n_blocks;
    EXPECT_LE(e->kv_bytes(), (size_t)o.kv_bytes);
    o.kv_type = quant::QuantType::f32;
    e = make_engine(o);
    ASSERT_TRUE(e);
    EXPECT_EQ(e->pool_stats().n_blocks * 2, f16_blocks);
    // stories260K's head dim (8) cannot take q8_0: f16, and the load note says why.
    o.kv_type = quant::QuantType::q8_0;
    e = make_engine(o);
    ASSERT_TRUE(e);
    EXPECT_EQ(e->kv_type(), quant::QuantType::f16);
    EXPECT_NE(e->kv_note().find("divisible by 32"), std::string::npos) << e->kv_note();
    o.kv_type = quant::QuantType::q4_k;
    EXPECT_EQ(Engine::create(model_, tok_, o).status().code(), StatusCode::invalid_argument);
    // The disk tier needs a model key, and a folder it can create.
    o.kv_type = quant::QuantType::f16;
    o.spill_root = "/tmp";
    auto no_key = Engine::create(model_, tok_, o);
    EXPECT_EQ(no_key.status().code(), StatusCode::invalid_argument);
    EXPECT_NE(no_key.status().message().find("model key"), std::string::npos) << no_key.status().message();
    o.spill_root = "/proc/hearth-cannot-create-this";
    o.model_key = "sha256:x";
    auto bad_dir = Engine::create(model_, tok_, o);
    EXPECT_FALSE(bad_dir.ok());
    EXPECT_NE(bad_dir.status().message().find("disk prefix cache"), std::string::npos) << bad_dir.status().message();
}

TEST_F(EngineTest, AutomaticPoolFollowsFreeMemory) {
    load("stories260K.gguf");
    const model::KvLayout layout = model_->kv_layout();
    EngineOptions o;
    o.n_ctx = 100;  // 4 blocks of 32
    const int64_t block = (int64_t)model::KvCache::bytes_per_block(layout, quant::QuantType::f16, 32);
    // Plenty of memory: the most sequences automatic mode runs, and twice their contexts.
    auto plan = plan_kv(layout, o, 1ll << 34);
    ASSERT_TRUE(plan.ok()) << plan.status().message();
    EXPECT_EQ(plan->n_parallel, kMaxAutoParallel);
    EXPECT_EQ(plan->n_blocks, 2 * kMaxAutoParallel * 4);
    // A quarter of what is free buys 10 blocks: two full contexts.
    plan = plan_kv(layout, o, 4 * 10 * block);
    ASSERT_TRUE(plan.ok()) << plan.status().message();
    EXPECT_EQ(plan->n_blocks, 10);
    EXPECT_EQ(plan->n_parallel, 2);
    EXPECT_EQ(plan->bytes, 10 * block);
    // Not even one context: a clear error.
    plan = plan_kv(layout, o, 4 * 3 * block);
    EXPECT_EQ(plan.status().code(), StatusCode::resource_exhausted);
    EXPECT_NE(plan.status().message().find("num_ctx"), std::string::npos) << plan.status().message();
    // The engine itself reads the machine's free memory.
    auto e = make_engine(o);
    ASSERT_TRUE(e);
    EXPECT_GE(e->n_parallel(), 1);
    EXPECT_LE(e->n_parallel(), kMaxAutoParallel);
}

// Hundreds of requests from 4 threads over a nearly full pool, a third cancelled at random
// moments: every request ends exactly once, finished greedy outputs match their alone runs
// (eviction and sharing never change tokens), and no block leaks.
TEST_F(EngineTest, StressSubmitCancelFromThreads) {
    load("stories260K.gguf");
    std::mt19937 rng(99);
    const int64_t n_ctx = 128;
    // A few prompt families sharing prefixes, so requests hit, share and evict cached blocks.
    std::vector<Request> kinds;
    std::vector<Outcome> want;
    const std::vector<int32_t> root = random_prompt(rng, 80);
    for (int k = 0; k < 8; ++k) {
        std::vector<int32_t> p(root.begin(), root.begin() + 20 + 8 * k);
        for (int j = 0; j < k; ++j) p.push_back(3 + (int32_t)(rng() % 300));
        kinds.push_back(greedy(p, 24));
        want.push_back(alone(kinds.back(), n_ctx));
    }
    EngineOptions o;
    o.n_ctx = n_ctx;
    o.n_kv_blocks = 14;  // 3 full contexts of 4 blocks plus 2
    o.step_tokens = 48;
    auto engine = make_engine(o);
    ASSERT_TRUE(engine);
    const int kThreads = 4, kPerThread = 75;
    Collector c((size_t)kThreads * kPerThread);
    std::vector<int> kind_of(c.out_.size()), num_predict(c.out_.size());
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
            std::mt19937 r(1234u + (uint32_t)t);
            std::vector<std::pair<RequestId, size_t>> mine;
            for (int i = 0; i < kPerThread; ++i) {
                const size_t idx = (size_t)t * kPerThread + i;
                kind_of[idx] = (int)(r() % kinds.size());
                Request req = kinds[kind_of[idx]];
                req.num_predict = num_predict[idx] = 1 + (int)(r() % 24);
                mine.push_back({engine->submit(req, c.callback(idx)), idx});
                if (r() % 3 == 0) {  // cancel a random earlier request of this thread, maybe after a pause
                    if (r() % 2) std::this_thread::sleep_for(std::chrono::microseconds(r() % 2000));
                    engine->cancel(mine[r() % mine.size()].first);
                }
            }
        });
    }
    for (auto& th : threads) th.join();
    c.wait();
    int n_finished = 0;
    for (size_t i = 0; i < c.out_.size(); ++i) {
        const Outcome& out = c.out_[i];
        ASSERT_EQ(out.n_final, 1) << "request " << i;
        ASSERT_TRUE(out.error.ok()) << out.error.message();
        const auto& ref = want[kind_of[i]].stats.tokens;
        ASSERT_LE(out.stats.tokens.size(), ref.size() + 0) << "request " << i;
        EXPECT_TRUE(std::equal(out.stats.tokens.begin(), out.stats.tokens.end(), ref.begin())) << "request " << i;
        if (out.stats.done != DoneReason::cancelled) {
            ++n_finished;
            EXPECT_EQ(out.stats.tokens.size(), std::min<size_t>(ref.size(), (size_t)num_predict[i])) << "request " << i;
        }
    }
    EXPECT_GT(n_finished, 0);
    expect_pool_idle(*engine);
}

}  // namespace
}  // namespace hearth::runtime
