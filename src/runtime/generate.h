// Generation for one sequence: prompt in, streamed UTF-8 text out, with sampling, stop
// strings, end-of-generation tokens and context limits. The scheduler of the serving runtime
// (continuous batching) will drive many of these at once; `hearth run` uses this directly.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "model/session.h"
#include "runtime/sampler.h"
#include "tokenizer/tokenizer.h"

namespace hearth::runtime {

enum class DoneReason { stop, length, cancelled };
const char* done_reason_name(DoneReason r);  // "stop", "length", "cancelled" (Ollama's words)

struct GenerateRequest {
    std::vector<int32_t> prompt;      // token ids, BOS included when the model wants it
    SamplingOptions sampling;
    int64_t num_predict = -1;         // most tokens to generate; -1: until the context is full
    std::vector<std::string> stop;    // stop strings (not emitted)
    bool ignore_eos = false;          // keep going past end-of-generation tokens
};

struct GenerateStats {
    int64_t prompt_tokens = 0;
    int64_t prompt_ns = 0;            // prefill wall time
    int64_t generated_tokens = 0;
    int64_t generate_ns = 0;          // decode wall time (first sampled token to the last)
    uint64_t seed = 0;                // the sampler's seed (reproduces a random run)
    DoneReason done = DoneReason::stop;
    std::vector<int32_t> tokens;      // generated ids
};

// Streams text pieces to on_text as they become complete UTF-8; returning false cancels.
// The prompt must fit the session's context with room for one token (out_of_range otherwise).
// The session continues from its current position (a REPL keeps its history).
Result<GenerateStats> generate(model::Session& session, const tok::Tokenizer& tok, const GenerateRequest& req,
                               const std::function<bool(std::string_view)>& on_text);

}  // namespace hearth::runtime
