// Tool calls out of generated text, for each family's convention, whole or while streaming.
//
// The parser receives the answer (after the thinking parser took the reasoning out) piece by
// piece and returns content deltas and finished tool calls. Tool-call markup never reaches the
// content: text that could be the start of a marker split across pieces is held back until the
// next piece decides it (like the stop-string matcher), and a call's text is buffered until its
// block is complete, then parsed and returned as one ToolCall (Ollama streams tool calls the same
// way: whole calls, never partial arguments).
//
// Formats (ToolCallFormat), with the text each family's documentation shows:
//   hermes            <tool_call>{"name": N, "arguments": {...}}</tool_call>   (Hermes 2/3, Qwen2.5,
//                     Qwen3, QwQ, Granite 4, MiMo, Bielik, Reka); a body in the Qwen3-Coder form is
//                     accepted too
//   qwen3_coder       <tool_call><function=N><parameter=K>V</parameter></function></tool_call>
//                     (Qwen3-Coder, Nemotron 3, Step 3.5)
//   seed_oss          <seed:tool_call><function=N><parameter=K>V</parameter></function></seed:tool_call>
//   glm45             <tool_call>N<arg_key>K</arg_key><arg_value>V</arg_value></tool_call> (GLM 4.5/4.6, Laguna)
//   minimax_m2        <minimax:tool_call><invoke name="N"><parameter name="K">V</parameter></invoke></minimax:tool_call>
//   deepseek_v4       the same invoke form inside <｜DSML｜tool_calls>, with string="true|false"
//   llama3_json       an answer that is one JSON object {"name": N, "parameters": {...}} (also
//                     {"type": "function", "name": ..., "parameters"|"arguments": ...}), or
//                     <|python_tag|> followed by such JSON or a built-in call name.call(k="v")
//   mistral_nemo      [TOOL_CALLS][{"name": N, "arguments": {...}, "id": "abcdef123"}, ...]
//   mistral           [TOOL_CALLS]N[ARGS]{...} (Mistral Small 3.2 adds [CALL_ID]id before [ARGS]),
//                     repeated for parallel calls (Devstral, Magistral, Small 3.x)
//   deepseek_r1       <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>N\n```json\n{...}\n```
//                     <｜tool▁call▁end｜>...<｜tool▁calls▁end｜>; V3.1's N<｜tool▁sep｜>{...} form too
//   kimi_k2           <|tool_calls_section_begin|><|tool_call_begin|>functions.N:0<|tool_call_argument_begin|>
//                     {...}<|tool_call_end|><|tool_calls_section_end|>
//   command_r7b       <|START_ACTION|>[{"tool_call_id": "0", "tool_name": N, "parameters": {...}}]<|END_ACTION|>;
//                     <|START_RESPONSE|>/<|END_RESPONSE|> around the answer are dropped
//   granite           <|tool_call|>[{"name": N, "arguments": {...}}] (Granite 3.x); <response> tags dropped
//   functionary_v3_1  <function=N>{...}</function>
//   firefunction_v2   functools[{"name": N, "arguments": {...}}]
//   apriel            <tool_calls>[{"name": N, "arguments": {...}, "id": ...}]</tool_calls>
//   harmony           gpt-oss; handled by HarmonyParser (chat.h), which also separates thinking
//
// Arguments are returned as a JSON object. Where a format writes argument values as text (the
// XML-ish ones), a value is parsed as JSON when the tool's schema (ParserOptions::tools) does not
// say the parameter is a string and it parses; else it stays a string.
//
// Malformed calls: a block whose text does not parse as the format's call (bad JSON, a missing
// name, cut off before its end marker) is returned unchanged as content, markers included, and
// the parser's malformed() flag is set. This is llama.cpp's behaviour for a final parse (the text
// stays visible, nothing is lost) and what Ollama does with a tool-call prefix that never
// completes; callers that need a strict answer check the flag.
//
// Whitespace: whitespace right before a call and after the last call is dropped, so "Let me
// look.\n\n<tool_call>..." gives the content "Let me look."; whitespace inside the content stays.
// Streaming therefore holds back a run of trailing whitespace until the next non-space text.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace hearth::chat {

enum class ToolCallFormat {
    none,
    hermes,
    qwen3_coder,
    seed_oss,
    glm45,
    minimax_m2,
    deepseek_v4,
    llama3_json,
    mistral_nemo,
    mistral,
    deepseek_r1,
    kimi_k2,
    command_r7b,
    granite,
    functionary_v3_1,
    firefunction_v2,
    apriel,
    harmony,
};
const char* tool_call_format_name(ToolCallFormat f);  // the enumerator's name

struct ToolCall {
    std::string id;    // the model's own id where the format has one, else call_<n> (mistral: 9 characters)
    std::string name;
    nlohmann::ordered_json arguments = nlohmann::ordered_json::object();
    int index = 0;     // 0, 1, ... in the order of the output
};

// One step of parsed output: what may be shown now.
struct ChatDelta {
    std::string content;
    std::string thinking;
    std::vector<ToolCall> tool_calls;
    bool empty() const { return content.empty() && thinking.empty() && tool_calls.empty(); }
    void append(ChatDelta&& d);
};

struct ParserOptions {
    // The request's tools (OpenAI function schema: [{"type": "function", "function": {"name",
    // "parameters": {...}}}]), for typing XML-ish argument values. May be null/empty.
    nlohmann::ordered_json tools;
};

class ToolCallParser {
public:
    explicit ToolCallParser(ToolCallFormat format, ParserOptions options = {});
    ~ToolCallParser();
    ToolCallParser(ToolCallParser&&) noexcept;
    ToolCallParser& operator=(ToolCallParser&&) noexcept;

    // Feeds the next piece of the answer. Only content and tool_calls are filled.
    ChatDelta push(std::string_view piece);
    // End of output: held-back text, and a call whose block the end closes (formats without an
    // end marker) or leaves malformed.
    ChatDelta finish();

    bool malformed() const;
    int n_calls() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// gpt-oss's harmony format. The generation prompt ends with "<|start|>assistant"; the output is
// messages of a header and a body:
//   <|channel|>analysis<|message|>...<|end|>                         thinking
//   <|start|>assistant<|channel|>commentary to=functions.N <|constrain|>json<|message|>{...}<|call|>
//                                                                    a call (the recipient may also
//                                                                    come before <|channel|>)
//   <|start|>assistant<|channel|>final<|message|>...<|return|>       the answer
// Commentary without a recipient (a preamble to calls) is content, as in llama.cpp. <|call|> and
// <|return|> are end-of-generation tokens, so the end of output closes the last message too.
// Output with no header at all (a model that ignores the format) is content.
class HarmonyParser {
public:
    explicit HarmonyParser(ParserOptions options = {});
    ChatDelta push(std::string_view piece);
    ChatDelta finish();
    bool malformed() const { return malformed_; }
    int n_calls() const { return calls_; }

private:
    void run(ChatDelta& out, bool at_end);
    void close_message(ChatDelta& out);

    ParserOptions options_;
    enum class State { header, body } state_ = State::header;
    std::string buf_;
    std::string channel_, recipient_;
    std::string args_;  // a call's body, buffered until the message ends
    bool malformed_ = false;
    int calls_ = 0;
};

// Helpers shared with the harmony parser and the tests.
// The length of the JSON value (object or array) at the start of `text` once it is complete,
// else npos (incomplete, or not starting with { or [). Leading whitespace counts in the length.
size_t json_value_length(std::string_view text);
// Argument text of a call → a JSON object: parses JSON; a string holding a JSON object (some
// models double-encode) is parsed again. nullopt-like: returns false when it is not an object.
bool parse_arguments(std::string_view text, nlohmann::ordered_json& out);

}  // namespace hearth::chat
