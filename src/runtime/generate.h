// Generation for one sequence: prompt in, streamed UTF-8 text out, with sampling, stop
// strings, end-of-generation tokens and context limits. The scheduler of the serving runtime
// (continuous batching) will drive many of these at once; `hearth run` uses this directly.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "model/session.h"
#include "runtime/logits_mask.h"
#include "runtime/sampler.h"
#include "tokenizer/tokenizer.h"

namespace hearth::runtime {

enum class DoneReason { stop, length, cancelled };
const char* done_reason_name(DoneReason r);  // "stop", "length", "cancelled" (Ollama's words)

// One generated token's log-probability under the model (log-softmax of its raw logits, before
// temperature, penalties or a logits mask), with the most likely alternatives when asked for.
struct TopLogprob {
    int32_t token = -1;
    std::string text;    // the token's bytes (may be part of a UTF-8 character)
    float logprob = 0.0f;
};
struct TokenLogprob : TopLogprob {
    std::vector<TopLogprob> top;  // the `top_logprobs` most likely tokens, most likely first
};

struct GenerateRequest {
    std::vector<int32_t> prompt;      // token ids, BOS included when the model wants it
    SamplingOptions sampling;
    int64_t num_predict = -1;         // most tokens to generate; -1: until the context is full
    std::vector<std::string> stop;    // stop strings (not emitted)
    bool ignore_eos = false;          // keep going past end-of-generation tokens
    // A prompt that does not fit the context is an error unless truncate is set: then tokens
    // are dropped from the front, after the first `keep` (the system prompt's tokens, or a BOS),
    // until it fits with room to generate (see fit_prompt). Never silent: the stats say how many.
    bool truncate = false;
    int64_t keep = 0;
    std::shared_ptr<LogitsMask> mask;  // constrained decoding; null: every token allowed
    // Control tokens whose text is streamed anyway (others produce none): the tool-call and
    // channel markers of the model's chat format (chat::ChatFormat::preserved_tokens).
    std::vector<int32_t> preserve_tokens;
    // Report each generated token's log-probability (Event::logprobs), with the top_logprobs
    // (0..20) most likely alternatives.
    bool logprobs = false;
    int top_logprobs = 0;
};

struct GenerateStats {
    int64_t prompt_tokens = 0;
    int64_t prompt_ns = 0;            // prefill wall time
    int64_t generated_tokens = 0;
    int64_t generate_ns = 0;          // decode wall time (first sampled token to the last)
    int64_t truncated_tokens = 0;     // prompt tokens dropped to fit the context (truncate)
    uint64_t seed = 0;                // the sampler's seed (reproduces a random run)
    DoneReason done = DoneReason::stop;
    std::vector<int32_t> tokens;      // generated ids
};

// Makes `prompt` fit a context of `room` positions that must also hold at least one generated
// token. Fits already: unchanged, returns 0. Too long and !req.truncate: out_of_range naming the
// sizes. Otherwise keeps the first min(req.keep, ...) tokens and the last ones, dropping the
// middle, so that the prompt leaves room for num_predict tokens when that is set (at most half
// of the room), else for a quarter of the room; returns the number of tokens dropped. When even
// `keep` tokens leave no room, keep is reduced (the tail of the prompt matters most).
Result<int64_t> fit_prompt(std::vector<int32_t>& prompt, int64_t room, const GenerateRequest& req);

// Streams text pieces to on_text as they become complete UTF-8; returning false cancels.
// The prompt must fit the session's free context with room for one token (out_of_range
// otherwise), or is cut by fit_prompt when req.truncate is set.
// The session continues from its current position (a REPL keeps its history).
Result<GenerateStats> generate(model::Session& session, const tok::Tokenizer& tok, const GenerateRequest& req,
                               const std::function<bool(std::string_view)>& on_text);

}  // namespace hearth::runtime
