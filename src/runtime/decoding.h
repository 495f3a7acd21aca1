// What a sequence does with each row of logits once its prompt is in: sample the next token,
// end on end-of-generation tokens, stop strings and num_predict, and turn tokens into complete
// UTF-8 text. Shared by generate() (one sequence) and the Engine (many), so both decide alike.
//
// Log-probabilities (GenerateRequest::logprobs): each sampled token gets the log-softmax of the
// raw logits row (before the logits mask, penalties and temperature: what OpenAI and vLLM
// report) at its id, plus the top_logprobs most likely tokens. An entry is handed out with the
// text that releases the token's bytes: a token whose text the UTF-8 assembler or the stop
// matcher holds back waits for the step (or finish()) that emits it. When a stop string
// matches, the tokens with a byte in the emitted text are reported and the rest (the stop
// string's own tokens) are dropped. End-of-generation tokens are never reported.
#pragma once

#include <array>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "runtime/generate.h"
#include "runtime/sampler.h"
#include "runtime/stop.h"
#include "tokenizer/stream.h"

namespace hearth::runtime {

constexpr int kMaxTopLogprobs = 20;  // Ollama's and OpenAI's cap on top_logprobs

// invalid_argument when req.top_logprobs is outside 0..kMaxTopLogprobs (checked whether or not
// logprobs is set, as Ollama does).
Status check_logprobs(const GenerateRequest& req);

// The log-softmax of `logits` at `id`, and the `top` most likely ids (most likely first, ties by
// lower id) with theirs, in one pass over the row; NaN counts as -inf. top_ids must hold `top`
// entries (top <= kMaxTopLogprobs); returns how many it filled (min(top, row size)).
// Preconditions: 0 <= id < logits.size().
struct LogSoftmaxPick {
    float logprob = 0.0f;  // at `id`
    int n_top = 0;
    std::array<std::pair<int32_t, float>, kMaxTopLogprobs> top{};  // [n_top] (id, logprob)
};
LogSoftmaxPick log_softmax_pick(std::span<const float> logits, int32_t id, int top);

class Decoding {
public:
    // `tok` must outlive this object. Reads req.stop, req.num_predict, req.ignore_eos, the mask,
    // preserve_tokens, logprobs and top_logprobs (which the caller validated: check_logprobs).
    Decoding(const tok::Tokenizer& tok, Sampler sampler, const GenerateRequest& req);

    struct Step {
        int32_t token = -1;   // the sampled token (append it to the history); -1: nothing was
                              // generated (num_predict 0, or an end-of-generation token)
        std::string text;     // complete UTF-8, safe to show now
        // With req.logprobs: the tokens whose text `text` releases (see the file comment); may be
        // non-empty with an empty text (tokens that produce no text).
        std::vector<TokenLogprob> logprobs;
        bool done = false;    // generation ends here, for `reason`; the token needs no evaluation
        DoneReason reason = DoneReason::stop;
        Status status;        // not ok: the request fails (its logits mask allowed no token)
    };
    // logits: [n_vocab] of the last position; history: prompt + generated so far (the penalty
    // window reads its tail).
    Step next(std::span<const float> logits, std::span<const int32_t> history);

    // How many best candidates of a row of row_size logits next_top() needs to decide exactly
    // as next() would on the whole row (Sampler::top_candidates_needed), or 0 when this
    // sequence needs the whole row: a logits mask (grammar, JSON schema, tool calls) or
    // log-probabilities (their normalizer is over the whole row).
    // history: as next()'s (the penalty window widens the candidates).
    int32_t top_candidates_needed(int64_t row_size, std::span<const int32_t> history) const;
    // next() from the best candidates of a row of row_size logits: ids and logits [n] best
    // first (model::ForwardOutput::top_ids). Needs n >= top_candidates_needed(row_size,
    // history) > 0; otherwise the step fails (Step::status, internal: the caller's bug) instead
    // of sampling from too little.
    Step next_top(std::span<const int32_t> ids, std::span<const float> logits, int64_t row_size,
                  std::span<const int32_t> history);

    struct Tail {
        std::string text;
        std::vector<TokenLogprob> logprobs;  // every token still waiting (empty after a stop)
    };
    // At the end: text still held back (an incomplete character, a possible stop-string
    // prefix), with the logprob entries of the tokens behind it. Empty after a stop string matched.
    Tail finish();

    uint64_t seed() const { return sampler_.seed(); }

private:
    // A reported token waiting for its text to be emitted. Offsets count bytes of the decoder's
    // output (what the stop matcher receives), from the first generated token.
    struct Waiting {
        TokenLogprob entry;
        int64_t start = 0;    // decoder output length before this token
        int64_t raw_end = 0;  // decoder input (piece bytes) up to and including this token
        int64_t end = -1;     // decoder output length once all its bytes came out; -1: not yet
    };
    TokenLogprob make_entry(std::span<const float> logits, int32_t id);
    // The part of next() before sampling: true (with s filled) when the sequence ends without
    // sampling (num_predict 0, a completed mask).
    bool ends_before_sampling(Step& s) const;
    // The part after: the sampled id through end-of-generation, the mask, the decoder, the
    // logprobs (of `raw`, the unmasked row; unread without logprobs) and the stop strings.
    void take(int32_t id, std::span<const float> raw, Step& s);
    std::string_view piece_of(int32_t id) const;
    // After the decoder took a token or was flushed: gives `end` to the waiting tokens whose
    // bytes all came out.
    void mark_decoded(int64_t n_out_bytes);
    // After the stop matcher emitted n_bytes more: moves the released entries to `out`.
    void release(size_t n_bytes, bool stopped, std::vector<TokenLogprob>& out);

    const tok::Tokenizer& tok_;
    Sampler sampler_;
    tok::TokenStreamDecoder decoder_;
    StopMatcher stops_;
    int64_t num_predict_;
    bool ignore_eos_;
    int64_t n_generated_ = 0;
    std::shared_ptr<LogitsMask> mask_;
    std::vector<float> masked_;  // [n_vocab] logits after the mask; sized on first use

    // ---- logprobs; untouched when the request does not ask ----
    bool logprobs_ = false;
    int top_logprobs_ = 0;
    std::vector<int32_t> preserved_;  // sorted: control ids whose text the decoder renders
    // Tokens reported in order whose text is not all emitted yet. Invariant: the `end`s that are
    // set form a prefix and ascend; the rest are the tokens whose bytes the decoder still holds.
    std::vector<Waiting> waiting_;
    int64_t n_raw_bytes_ = 0;      // piece bytes pushed into the decoder
    int64_t n_decoded_bytes_ = 0;  // bytes the decoder gave out (stop matcher input)
    int64_t n_emitted_bytes_ = 0;  // of those, bytes the stop matcher released as text
};

}  // namespace hearth::runtime
