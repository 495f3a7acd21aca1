// What a sequence does with each row of logits once its prompt is in: sample the next token,
// end on end-of-generation tokens, stop strings and num_predict, and turn tokens into complete
// UTF-8 text. Shared by generate() (one sequence) and the Engine (many), so both decide alike.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "runtime/generate.h"
#include "runtime/sampler.h"
#include "runtime/stop.h"
#include "tokenizer/stream.h"

namespace hearth::runtime {

class Decoding {
public:
    // `tok` must outlive this object. Reads req.stop, req.num_predict and req.ignore_eos.
    Decoding(const tok::Tokenizer& tok, Sampler sampler, const GenerateRequest& req);

    struct Step {
        int32_t token = -1;   // the sampled token (append it to the history); -1: nothing was
                              // generated (num_predict 0, or an end-of-generation token)
        std::string text;     // complete UTF-8, safe to show now
        bool done = false;    // generation ends here, for `reason`; the token needs no evaluation
        DoneReason reason = DoneReason::stop;
        Status status;        // not ok: the request fails (its logits mask allowed no token)
    };
    // logits: [n_vocab] of the last position; history: prompt + generated so far (the penalty
    // window reads its tail).
    Step next(std::span<const float> logits, std::span<const int32_t> history);
    // At the end: text still held back (an incomplete character, a possible stop-string
    // prefix). Empty after a stop string matched.
    std::string finish();

    uint64_t seed() const { return sampler_.seed(); }

private:
    const tok::Tokenizer& tok_;
    Sampler sampler_;
    tok::TokenStreamDecoder decoder_;
    StopMatcher stops_;
    int64_t num_predict_;
    bool ignore_eos_;
    int64_t n_generated_ = 0;
    std::shared_ptr<LogitsMask> mask_;
    std::vector<float> masked_;  // [n_vocab] logits after the mask; sized on first use
};

}  // namespace hearth::runtime
