// Separating a model's reasoning from its answer while the text streams in.
//
// Reasoning models open a block with a marker (`<think>`, `<seed:think>`,
// `<|START_THINKING|>`, Gemma 4's `<|channel>thought`, ...) and close it with another; the text
// between is thinking, the rest the answer. Like Ollama's thinking parser (thinking/parser.go) the
// block counts only at the start of the output (after optional whitespace): an answer that talks
// about "<think>" later is content. Templates that open the block in the generation prompt
// (Qwen3, DeepSeek-R1, Laguna: the prompt ends with `<think>\n`) make the output start inside
// thinking: construct with starts_inside = true (RenderedPrompt::thinking_open says when).
//
// Whitespace: leading and trailing whitespace of the thinking and the whitespace between the
// closing marker and the answer are dropped (Ollama and llama.cpp do the same). Whitespace at the
// end of a thinking piece is held back until more thinking arrives, so streamed and whole parses
// give identical strings.
//
// Streaming: text that may be the start of a marker split across pieces is held back until the
// next piece decides it, so a marker never leaks into either stream.
#pragma once

#include <string>
#include <string_view>

namespace hearth::chat {

// Length of the longest suffix of `text` that is a proper, non-empty prefix of `marker`: the
// bytes to hold back because the next piece may complete the marker. 0 for an empty marker.
size_t marker_prefix_suffix(std::string_view text, std::string_view marker);

// Text split into the two streams, as deltas.
struct ThinkingDelta {
    std::string thinking;
    std::string content;
};

class ThinkingParser {
public:
    // Empty markers: everything is content (a model without thinking).
    ThinkingParser(std::string start, std::string end, bool starts_inside = false);

    // Feeds the next piece; returns what may be shown now.
    ThinkingDelta push(std::string_view piece);
    // End of output: what was held back. A block never closed is all thinking (the model was cut
    // off mid-thought).
    ThinkingDelta finish();

    bool has_thinking() const { return saw_thinking_; }

private:
    enum class State { looking, thinking, after_end, content };
    void run(ThinkingDelta& out, bool at_end);

    std::string start_, end_;
    State state_;
    std::string buf_;           // received, not yet classified
    std::string think_ws_;      // trailing whitespace of the thinking, held until more thinking comes
    bool think_started_ = false;  // a non-space thinking byte was emitted (leading whitespace is dropped before)
    bool saw_thinking_ = false;
};

}  // namespace hearth::chat
