// Stop conditions on generated text.
//
// StopMatcher sits after the streaming detokenizer. It receives the generated text piece by piece
// and returns what may be shown now, holding back any tail that could still grow into a stop
// string. When a stop string appears, generation is over: the text before it is returned and the
// stop string itself is not (Ollama's and OpenAI's behaviour). Matching is on bytes, so multi-byte
// UTF-8 stop strings work like any other; the text it emits is cut only where a stop string starts,
// or before an incomplete trailing UTF-8 sequence, so valid UTF-8 in gives whole characters out.
//
// Stop tokens (end-of-generation ids) never reach the text; the caller checks them with
// is_stop_token before detokenizing.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace hearth::runtime {

// True when `id` is one of the end-of-generation ids (from the model's metadata).
bool is_stop_token(int32_t id, std::span<const int32_t> stop_ids);

struct StopResult {
    std::string text;         // safe to emit now (possibly empty)
    bool stopped = false;     // a stop string matched: `text` ends where it began, and nothing follows
    int32_t stop_index = -1;  // which one: index into the list given to the constructor; -1 if none
};

class StopMatcher {
public:
    // Empty strings in `stops` are ignored (they would match before any text). Indices in
    // StopResult refer to this list as given.
    explicit StopMatcher(std::vector<std::string> stops);

    // Feeds the next piece of generated text. When several stop strings occur, the one that starts
    // first wins (ties: the earlier in the list). After a stop every call returns
    // {"", true, same index}.
    StopResult push(std::string_view piece);

    // End of generation without a stop string: returns the held-back text and empties the matcher.
    // Empty after a stop (what followed a stop string is discarded).
    std::string flush();

    bool is_stopped() const { return stop_index_ >= 0; }
    // Bytes received but not yet emitted.
    size_t n_held_bytes() const { return held_.size(); }

private:
    // Length of the longest suffix of held_ that is a proper prefix of some stop string.
    size_t stop_prefix_tail_bytes() const;

    std::vector<std::string> stops_;  // as given (empty entries kept so indices line up; never matched)
    size_t max_stop_bytes_ = 0;       // longest stop string
    // Received, not yet emitted. Between calls it is the longest tail that could start a stop
    // string, or an incomplete UTF-8 sequence (<= 3 bytes), whichever is longer, so it never
    // exceeds max(max_stop_bytes_ - 1, 3) bytes.
    std::string held_;
    int32_t stop_index_ = -1;         // >= 0 once a stop string matched; the matcher is then done
};

}  // namespace hearth::runtime
