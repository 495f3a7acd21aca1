// Per-token log-probabilities: Decoding and the Engine report, for each sampled token, the
// log-softmax of the model's raw logits at its id and the top_logprobs most likely tokens, checked
// against a reference computed here from a Session's logits; the entries come with the text that
// releases their bytes (held-back UTF-8 and stop-string prefixes wait, a stop string's own tokens
// are dropped), and nothing is reported when the request does not ask.
#include "runtime/decoding.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <mutex>
#include <numeric>

#include "model/session.h"
#include "runtime/engine.h"
#include "runtime/model_loader.h"

namespace hearth::runtime {
namespace {

constexpr double kTol = 1e-4;
// The reference Session and the engines keep K/V in f32: with f16 K/V the batched and alone
// runs' logprobs differ by up to ~3e-4 (measured), which is the engine's business, not this file's.
constexpr quant::QuantType kKvType = quant::QuantType::f32;

// log_softmax in double, two plain passes: the reference the one-pass f32 code must match.
std::vector<double> ref_log_softmax(std::span<const float> x) {
    double m = -INFINITY;
    for (float v : x) m = std::max(m, (double)v);
    double s = 0.0;
    for (float v : x) s += std::exp((double)v - m);
    std::vector<double> out(x.size());
    for (size_t i = 0; i < x.size(); ++i) out[i] = (double)x[i] - m - std::log(s);
    return out;
}

// Every id by log-probability, most likely first, ties by lower id (a full sort).
std::vector<int32_t> ref_order(const std::vector<double>& lp) {
    std::vector<int32_t> ids(lp.size());
    std::iota(ids.begin(), ids.end(), 0);
    std::sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) { return lp[a] > lp[b] || (lp[a] == lp[b] && a < b); });
    return ids;
}

// One greedy step of the reference run.
struct RefStep {
    int32_t id;
    std::vector<double> lp;      // [n_vocab]
    std::vector<int32_t> order;  // [n_vocab]
};

// What one engine request produced.
struct Outcome {
    std::string text;
    std::vector<TokenLogprob> logprobs;
    std::vector<size_t> n_per_event;  // logprob entries of each text event, in order
    RequestStats stats;
    Status error;
    bool ended = false;
};

class LogprobsTest : public ::testing::Test {
protected:
    void SetUp() override {
        test::Loaded l = test::load("stories260K.gguf");
        ASSERT_TRUE(l.model && l.tok);
        model_ = std::move(l.model);
        tok_ = std::move(l.tok);
    }

    std::vector<int32_t> prompt(const std::string& text) const { return tok_->encode(text, true, false); }

    Request greedy(const std::string& text, int64_t num_predict, int top) const {
        Request r;
        r.prompt = prompt(text);
        r.sampling.temperature = 0.0f;
        r.num_predict = num_predict;
        r.logprobs = true;
        r.top_logprobs = top;
        return r;
    }

    // Greedy decoding on a plain Session.
    std::vector<RefStep> reference(const std::vector<int32_t>& prompt, int n) const {
        std::vector<RefStep> steps;
        auto s = model::Session::create(*model_, 256, 32, kKvType);
        EXPECT_TRUE(s.ok());
        if (!s.ok()) return steps;
        std::vector<float> logits;
        EXPECT_TRUE(s->eval(prompt, false, logits).ok());
        for (int i = 0; i < n; ++i) {
            RefStep st;
            st.lp = ref_log_softmax(logits);
            st.order = ref_order(st.lp);
            st.id = st.order[0];
            if (tok_->is_eog(st.id)) break;
            steps.push_back(std::move(st));
            EXPECT_TRUE(s->eval(std::span<const int32_t>(&steps.back().id, 1), false, logits).ok());
        }
        return steps;
    }

    // Runs the requests together on one engine with `n_parallel` slots.
    std::vector<Outcome> run(const std::vector<Request>& reqs, int n_parallel) {
        EngineOptions o;
        o.n_ctx = 256;
        o.n_parallel = n_parallel;
        o.kv_type = kKvType;
        auto e = Engine::create(model_, tok_, o);
        EXPECT_TRUE(e.ok()) << e.status().message();
        std::vector<Outcome> runs(reqs.size());
        if (!e.ok()) return runs;
        std::mutex mu;
        std::condition_variable cv;
        for (size_t i = 0; i < reqs.size(); ++i) {
            e.value()->submit(reqs[i], [&, i](const Event& ev) {
                std::lock_guard<std::mutex> lk(mu);
                Outcome& r = runs[i];
                if (ev.kind == Event::Kind::text) {
                    r.text += ev.text;
                    r.n_per_event.push_back(ev.logprobs.size());
                    r.logprobs.insert(r.logprobs.end(), ev.logprobs.begin(), ev.logprobs.end());
                    return;
                }
                if (ev.kind == Event::Kind::done) r.stats = ev.stats;
                else r.error = ev.status;
                r.ended = true;
                cv.notify_all();
            });
        }
        std::unique_lock<std::mutex> lk(mu);
        cv.wait_for(lk, std::chrono::minutes(5), [&] {
            return std::all_of(runs.begin(), runs.end(), [](const Outcome& r) { return r.ended; });
        });
        lk.unlock();
        e.value().reset();  // joins the scheduler: no callback runs after this
        return runs;
    }
    Outcome run_one(const Request& r) { return run({r}, 1)[0]; }

    std::string bytes_of(const std::vector<TokenLogprob>& lps) const {
        std::string s;
        for (const auto& l : lps) s += l.text;
        return s;
    }

    void expect_matches_reference(const std::vector<TokenLogprob>& got, const std::vector<RefStep>& ref, size_t n,
                                  int top) {
        ASSERT_EQ(got.size(), n);
        ASSERT_LE(n, ref.size());
        for (size_t i = 0; i < n; ++i) {
            const TokenLogprob& g = got[i];
            const RefStep& r = ref[i];
            SCOPED_TRACE("token " + std::to_string(i));
            EXPECT_EQ(g.token, r.id);
            EXPECT_EQ(g.text, std::string(tok_->token_to_piece(r.id, false)));
            // Greedy: the chosen token is the most likely one.
            EXPECT_NEAR(g.logprob, *std::max_element(r.lp.begin(), r.lp.end()), kTol);
            EXPECT_NEAR(g.logprob, r.lp[r.id], kTol);
            ASSERT_EQ(g.top.size(), (size_t)top);
            for (int k = 0; k < top; ++k) {
                EXPECT_EQ(g.top[k].token, r.order[k]) << "rank " << k;
                EXPECT_NEAR(g.top[k].logprob, r.lp[r.order[k]], kTol) << "rank " << k;
                EXPECT_EQ(g.top[k].text, std::string(tok_->token_to_piece(r.order[k], false))) << "rank " << k;
            }
        }
    }

    std::shared_ptr<model::Model> model_;
    std::shared_ptr<const tok::Tokenizer> tok_;
};

TEST_F(LogprobsTest, GreedyMatchesReferenceLogSoftmax) {
    const Request req = greedy("Once upon a time", 40, 5);
    const std::vector<RefStep> ref = reference(req.prompt, 40);
    ASSERT_EQ(ref.size(), 40u);
    const Outcome got = run_one(req);
    ASSERT_TRUE(got.error.ok()) << got.error.message();
    EXPECT_EQ(got.stats.tokens.size(), 40u);
    expect_matches_reference(got.logprobs, ref, 40, 5);
    // No stop string: every token is reported, and their bytes are the text.
    EXPECT_EQ(bytes_of(got.logprobs), got.text);
    for (size_t i = 0; i < got.logprobs.size(); ++i) EXPECT_EQ(got.logprobs[i].token, got.stats.tokens[i]);
}

TEST_F(LogprobsTest, MaxTopLogprobsAndTopZero) {
    Request req = greedy("The little dog", 12, kMaxTopLogprobs);
    const std::vector<RefStep> ref = reference(req.prompt, 12);
    ASSERT_EQ(ref.size(), 12u);
    Outcome got = run_one(req);
    ASSERT_TRUE(got.error.ok()) << got.error.message();
    expect_matches_reference(got.logprobs, ref, 12, kMaxTopLogprobs);
    // top_logprobs 0: the chosen token only.
    req.top_logprobs = 0;
    got = run_one(req);
    ASSERT_TRUE(got.error.ok()) << got.error.message();
    expect_matches_reference(got.logprobs, ref, 12, 0);
}

TEST_F(LogprobsTest, StopStringTokensAreNotReported) {
    const Request base = greedy("Once upon a time", 40, 2);
    const std::vector<RefStep> ref = reference(base.prompt, 40);
    ASSERT_EQ(ref.size(), 40u);
    std::vector<std::string> pieces;
    for (const RefStep& r : ref) pieces.emplace_back(tok_->token_to_piece(r.id, false));
    // A stop string on token boundaries: the pieces of tokens k and k+1 (k chosen so that the
    // text before them holds no earlier occurrence).
    size_t k = 0;
    std::string before, stop;
    for (k = 6; k + 1 < pieces.size(); ++k) {
        before = std::accumulate(pieces.begin(), pieces.begin() + (std::ptrdiff_t)k, std::string());
        stop = pieces[k] + pieces[k + 1];
        if ((before + stop).find(stop) == before.size() && pieces[k].size() >= 2) break;
    }
    ASSERT_LT(k + 1, pieces.size());
    Request req = base;
    req.stop = {stop};
    Outcome got = run_one(req);
    ASSERT_TRUE(got.error.ok()) << got.error.message();
    EXPECT_EQ(got.stats.done, DoneReason::stop);
    EXPECT_EQ(got.text, before);
    expect_matches_reference(got.logprobs, ref, k, 2);  // no entry for the stop's two tokens
    EXPECT_EQ(bytes_of(got.logprobs), got.text);        // and the text before it complete

    // A stop string that starts inside token k: the text keeps the start of its piece, so token
    // k is reported (its bytes reach past the text) and only token k+1 is dropped.
    req.stop = {pieces[k].substr(1) + pieces[k + 1]};
    ASSERT_EQ((before + pieces[k] + pieces[k + 1]).find(req.stop[0]), before.size() + 1);
    got = run_one(req);
    ASSERT_TRUE(got.error.ok()) << got.error.message();
    EXPECT_EQ(got.text, before + pieces[k].substr(0, 1));
    expect_matches_reference(got.logprobs, ref, k + 1, 2);
}

TEST_F(LogprobsTest, HeldStopPrefixIsReleasedWithItsText) {
    // A stop string that the output begins but does not finish: the tokens behind the held
    // prefix come with the event that finally releases it, never before their text.
    const Request base = greedy("Once upon a time", 24, 1);
    const std::vector<RefStep> ref = reference(base.prompt, 24);
    ASSERT_EQ(ref.size(), 24u);
    Request req = base;
    const std::string p3 = std::string(tok_->token_to_piece(ref[3].id, false));
    const std::string p4 = std::string(tok_->token_to_piece(ref[4].id, false));
    req.stop = {p3 + p4 + "\x01"};  // never matches, but holds tokens 3 and 4 until token 5
    const Outcome got = run_one(req);
    ASSERT_TRUE(got.error.ok()) << got.error.message();
    expect_matches_reference(got.logprobs, ref, 24, 1);
    EXPECT_EQ(bytes_of(got.logprobs), got.text);
    // Events: tokens 0, 1, 2 one each; nothing for 3 and 4 (held); token 5's event releases 3..5.
    ASSERT_GE(got.n_per_event.size(), 4u);
    EXPECT_EQ(got.n_per_event[0], 1u);
    EXPECT_EQ(got.n_per_event[1], 1u);
    EXPECT_EQ(got.n_per_event[2], 1u);
    EXPECT_EQ(got.n_per_event[3], 3u);
}

TEST_F(LogprobsTest, ConcurrentRequestsMatchAlone) {
    const std::vector<std::string> prompts = {"Once upon a time", "The cat", "Lily wanted to", "One day, a big"};
    std::vector<Request> reqs;
    for (size_t i = 0; i < prompts.size(); ++i) reqs.push_back(greedy(prompts[i], 16 + 4 * (int)i, 3));
    reqs[2].stop = {"."};
    std::vector<Outcome> alone;
    for (const Request& r : reqs) alone.push_back(run_one(r));
    const std::vector<Outcome> together = run(reqs, 4);
    for (size_t i = 0; i < reqs.size(); ++i) {
        SCOPED_TRACE("request " + std::to_string(i));
        ASSERT_TRUE(together[i].error.ok()) << together[i].error.message();
        EXPECT_FALSE(alone[i].logprobs.empty());
        EXPECT_EQ(together[i].text, alone[i].text);
        ASSERT_EQ(together[i].logprobs.size(), alone[i].logprobs.size());
        for (size_t t = 0; t < alone[i].logprobs.size(); ++t) {
            const TokenLogprob& a = alone[i].logprobs[t];
            const TokenLogprob& b = together[i].logprobs[t];
            EXPECT_EQ(b.token, a.token);
            // Batched logits agree with the alone run's to f32 rounding (kernels sum in another
            // order for another batch shape), not bit for bit; see kKvType.
            EXPECT_NEAR(b.logprob, a.logprob, kTol);
            ASSERT_EQ(b.top.size(), a.top.size());
            for (size_t k = 0; k < a.top.size(); ++k) {
                EXPECT_EQ(b.top[k].token, a.top[k].token);
                EXPECT_NEAR(b.top[k].logprob, a.top[k].logprob, kTol);
            }
        }
    }
}

TEST_F(LogprobsTest, OffReportsNothing) {
    Request req = greedy("Once upon a time", 20, 5);
    req.logprobs = false;
    const Outcome got = run_one(req);
    ASSERT_TRUE(got.error.ok());
    EXPECT_FALSE(got.text.empty());
    EXPECT_TRUE(got.logprobs.empty());
}

TEST_F(LogprobsTest, TopLogprobsOutOfRangeIsAnError) {
    for (int bad : {-1, kMaxTopLogprobs + 1}) {
        Request req = greedy("Once upon a time", 4, bad);
        const Outcome got = run_one(req);
        EXPECT_EQ(got.error.code(), StatusCode::invalid_argument) << bad;
        EXPECT_NE(got.error.message().find("top_logprobs"), std::string::npos) << got.error.message();
        EXPECT_TRUE(got.text.empty());
    }
}

// ---- Decoding on hand-made logit rows ----------------------------------------------------------

class DecodingLogprobsTest : public LogprobsTest {
protected:
    // A row where `id` is by far the most likely, so greedy picks it.
    std::vector<float> row_for(int32_t id) const {
        std::vector<float> r((size_t)tok_->n_vocab(), 0.0f);
        r[(size_t)id] = 12.0f;
        r[(size_t)(id + 1) % r.size()] = 3.0f;
        return r;
    }
    Decoding make(GenerateRequest req) const {
        req.sampling.temperature = 0.0f;
        return Decoding(*tok_, Sampler(req.sampling, tok_->n_vocab()), req);
    }
    int32_t byte_token(unsigned char b) const {
        char name[8];
        std::snprintf(name, sizeof name, "<0x%02X>", b);
        return tok_->find_token(name);
    }
};

TEST_F(DecodingLogprobsTest, IncompleteCharacterWaitsForItsLastByte) {
    GenerateRequest req;
    req.logprobs = true;
    req.top_logprobs = 2;
    Decoding d = make(req);
    const int32_t b[3] = {byte_token(0xE2), byte_token(0x82), byte_token(0xAC)};  // U+20AC
    for (int32_t id : b) ASSERT_GE(id, 0);
    std::vector<int32_t> history;
    for (int i = 0; i < 2; ++i) {
        const Decoding::Step s = d.next(row_for(b[i]), history);
        EXPECT_EQ(s.token, b[i]);
        EXPECT_TRUE(s.text.empty());
        EXPECT_TRUE(s.logprobs.empty()) << "byte " << i << " was reported before its character";
    }
    const std::vector<float> last = row_for(b[2]);
    const Decoding::Step s = d.next(last, history);
    EXPECT_EQ(s.text, "\xE2\x82\xAC");
    ASSERT_EQ(s.logprobs.size(), 3u);
    const std::vector<double> lp = ref_log_softmax(last);
    for (int i = 0; i < 3; ++i) {
        EXPECT_EQ(s.logprobs[i].token, b[i]);
        EXPECT_EQ(s.logprobs[i].text.size(), 1u);  // the raw byte, not a character
    }
    EXPECT_EQ(s.logprobs[0].text + s.logprobs[1].text + s.logprobs[2].text, "\xE2\x82\xAC");
    EXPECT_NEAR(s.logprobs[2].logprob, lp[b[2]], kTol);
    ASSERT_EQ(s.logprobs[2].top.size(), 2u);
    EXPECT_EQ(s.logprobs[2].top[0].token, b[2]);
    EXPECT_EQ(s.logprobs[2].top[1].token, b[2] + 1);
    EXPECT_NEAR(s.logprobs[2].top[1].logprob, lp[b[2] + 1], kTol);
    EXPECT_TRUE(d.finish().logprobs.empty());
}

TEST_F(DecodingLogprobsTest, FinishFlushesWaitingTokens) {
    GenerateRequest req;
    req.logprobs = true;
    req.stop = {"\xE2\x82\xAC!"};  // the character alone is a stop prefix: held
    Decoding d = make(req);
    std::vector<int32_t> history;
    const int32_t lead = byte_token(0xE2);
    EXPECT_TRUE(d.next(row_for(lead), history).logprobs.empty());
    // An incomplete character at the end: flushed as U+FFFD, with its token.
    Decoding::Tail t = d.finish();
    EXPECT_EQ(t.text, "\xEF\xBF\xBD");
    ASSERT_EQ(t.logprobs.size(), 1u);
    EXPECT_EQ(t.logprobs[0].token, lead);
    EXPECT_EQ(t.logprobs[0].text, "\xE2");

    Decoding d2 = make(req);
    for (unsigned char c : {0xE2, 0x82, 0xAC}) EXPECT_TRUE(d2.next(row_for(byte_token(c)), history).logprobs.empty());
    t = d2.finish();  // held as a stop prefix until the end
    EXPECT_EQ(t.text, "\xE2\x82\xAC");
    EXPECT_EQ(t.logprobs.size(), 3u);
}

TEST_F(DecodingLogprobsTest, RawLogitsNotTheMaskedOnes) {
    // A mask that allows one token only: the sampler must take it, but its logprob is the
    // model's own (the mask is not part of the reported distribution).
    struct OnlyOne : LogitsMask {
        int32_t id;
        explicit OnlyOne(int32_t i) : id(i) {}
        void apply(std::span<float> logits) override {
            for (size_t i = 0; i < logits.size(); ++i)
                if ((int32_t)i != id) logits[i] = -INFINITY;
        }
        void accept(int32_t) override {}
        bool complete() const override { return false; }
    };
    GenerateRequest req;
    req.logprobs = true;
    req.top_logprobs = 1;
    const int32_t forced = byte_token('a');
    req.mask = std::make_shared<OnlyOne>(forced);
    Decoding d = make(req);
    const std::vector<float> row = row_for(forced + 7);
    std::vector<int32_t> history;
    const Decoding::Step s = d.next(row, history);
    EXPECT_EQ(s.token, forced);
    ASSERT_EQ(s.logprobs.size(), 1u);
    const std::vector<double> lp = ref_log_softmax(row);
    EXPECT_NEAR(s.logprobs[0].logprob, lp[forced], kTol);
    ASSERT_EQ(s.logprobs[0].top.size(), 1u);
    EXPECT_EQ(s.logprobs[0].top[0].token, forced + 7);
}

TEST_F(DecodingLogprobsTest, OffComputesNothing) {
    GenerateRequest req;
    req.top_logprobs = 5;  // without logprobs: ignored
    Decoding d = make(req);
    std::vector<int32_t> history;
    const Decoding::Step s = d.next(row_for(byte_token('a')), history);
    EXPECT_EQ(s.text, "a");
    EXPECT_TRUE(s.logprobs.empty());
    EXPECT_TRUE(d.finish().logprobs.empty());
}

TEST(LogSoftmaxPick, TiesByLowerIdAndNaN) {
    const std::vector<float> x = {1.0f, 3.0f, NAN, 3.0f, -INFINITY, 2.0f};
    const LogSoftmaxPick p = log_softmax_pick(x, 5, 4);
    const double lse = std::log(std::exp(1.0) + 2 * std::exp(3.0) + std::exp(2.0));
    EXPECT_NEAR(p.logprob, 2.0 - lse, 1e-6);
    ASSERT_EQ(p.n_top, 4);
    const int32_t want[4] = {1, 3, 5, 0};
    for (int k = 0; k < 4; ++k) EXPECT_EQ(p.top[k].first, want[k]) << k;
    EXPECT_NEAR(p.top[0].second, 3.0 - lse, 1e-6);
    EXPECT_NEAR(p.top[3].second, 1.0 - lse, 1e-6);
    EXPECT_EQ(log_softmax_pick(x, 2, 0).logprob, -INFINITY);  // NaN counts as -inf
    EXPECT_EQ(log_softmax_pick(x, 0, 20).n_top, 6);           // no more than the row holds
}

}  // namespace
}  // namespace hearth::runtime
