// The hook for constrained decoding (grammars, JSON schemas, tool-call formats): a request may
// carry a LogitsMask that says, before every sampled token, which tokens may come next.
//
// One object per request, used by one thread at a time (the engine's scheduler thread, or the
// caller of generate()). The order per generated token is: apply() on the logits of the last
// position, the sampler draws from what is left, then accept() with the drawn token. An
// end-of-generation token ends the request without accept(); a mask that wants generation to
// be able to end must leave the model's end-of-generation tokens allowed when it is complete.
#pragma once

#include <cstdint>
#include <span>

namespace hearth::runtime {

class LogitsMask {
public:
    virtual ~LogitsMask() = default;
    // Sets the logits of tokens that may not come next to -infinity. Leaving every token at
    // -infinity fails the request (invalid_argument: "the logits mask allows no token").
    virtual void apply(std::span<float> logits) = 0;
    // The token just generated; the mask advances its state.
    virtual void accept(int32_t token) = 0;
    // True once the constrained output is complete and nothing may follow: generation then
    // stops (DoneReason::stop) without sampling again.
    virtual bool complete() const { return false; }
};

}  // namespace hearth::runtime
