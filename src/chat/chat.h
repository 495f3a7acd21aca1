// Between messages and tokens: what a model's chat template implies (its ChatFormat), rendering
// a conversation into the prompt text, and parsing the generated text back into content,
// thinking and tool calls.
//
// ChatFormat is detected once per model from its template text (GGUF tokenizer.chat_template),
// the way llama.cpp's common/chat.cpp does: by the markers the template writes. It names the
// tool-call convention (tool_calls.h), the thinking markers (thinking.h), how the template's
// thinking switch is spelled, and the strings that end a turn.
//
// The default template: a model whose GGUF has no chat template gets ChatML (kDefaultTemplate),
// as in llama.cpp (which falls back to chatml); Ollama instead renders such a model's prompt raw
// ({{ .Prompt }}). `hearth run` treats a template-less model as a completion model (raw prompts,
// see cli/run.cpp) and the chat API renders ChatML, which instruction-tuned models without
// metadata most often expect.
//
// BOS: a template that writes bos_token itself (Llama 3, Mistral, Gemma, ...) must not get a
// second one from the tokenizer. render_prompt() returns the text with any leading BOS text
// removed when the vocabulary adds BOS itself (what llama.cpp does, so the tokenizer's BOS is the
// only one); tokenize the prompt with add_special = vocabulary's add_bos and parse_special = true.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "chat/template.h"
#include "chat/thinking.h"
#include "chat/tool_calls.h"

namespace hearth::chat {

// ChatML, with tools in the Hermes convention and <think> blocks recognised in the output.
extern const char* const kDefaultTemplate;

// How a template turns thinking on and off (the variable it reads).
enum class ThinkSwitch {
    none,             // no switch: the model always thinks (DeepSeek-R1, QwQ) or never does
    enable_thinking,  // enable_thinking: bool (Qwen3, SmolLM3, GLM, Granite, Laguna, ...)
    thinking,         // thinking: bool (DeepSeek V3.1/V4, Kimi; they also read enable_thinking)
    reasoning_effort, // reasoning_effort: "low" | "medium" | "high" (gpt-oss: thinking cannot be turned off)
};
const char* think_switch_name(ThinkSwitch s);

struct ChatFormat {
    std::string family;            // "qwen3", "llama3", "gpt-oss", ... ("chatml" for the default)
    ToolCallFormat tool_calls = ToolCallFormat::none;
    std::string think_start, think_end;  // empty: the family has no thinking block
    ThinkSwitch think_switch = ThinkSwitch::none;
    // Texts that end a turn and are not always end-of-generation tokens of the vocabulary (add
    // them to the request's stop strings), e.g. "<|im_end|>".
    std::vector<std::string> stop;
    // Marker texts the detokenizer must render although they are control tokens, or the parsers
    // never see them (llama.cpp's preserved_tokens): "<|python_tag|>", "[TOOL_CALLS]", harmony's
    // "<|channel|>", ... Token texts, as in the vocabulary.
    std::vector<std::string> preserved_tokens;

    bool has_thinking() const { return !think_start.empty() || tool_calls == ToolCallFormat::harmony; }
};

// Hints beyond the template text (from the GGUF): general.architecture.
struct FormatHints {
    std::string architecture;
};

// Detection by markers, most specific first. A template with no known markers is "generic":
// no tool calls, <think> recognised when the template mentions it.
ChatFormat detect_format(std::string_view template_source, const FormatHints& hints = {});

// The per-request thinking switch: Ollama's `think` (true/false or "low"/"medium"/"high").
struct Think {
    enum class Mode { unset, off, on } mode = Mode::unset;
    std::string level;  // "low", "medium", "high" when given as a level (mode on)
    // "true"/"false"/"1"/"0"/"on"/"off"/"low"/"medium"/"high"; invalid_argument otherwise.
    static Result<Think> parse(std::string_view text);
    static Think from_json(const nlohmann::json& v);  // bool or level string; unset for anything else
};

struct PromptOptions {
    bool add_generation_prompt = true;
    Think think;
    nlohmann::ordered_json extra = nlohmann::ordered_json::object();  // more template variables; win over ours
    std::string bos_token, eos_token;  // token texts ("" when the vocabulary has none)
    bool vocab_adds_bos = false;       // the tokenizer adds BOS (tokenizer.ggml.add_bos_token)
    RenderOptions render;
};

struct RenderedPrompt {
    std::string text;           // leading BOS text removed when vocab_adds_bos (see above)
    bool template_bos = false;  // the template wrote the BOS text at the start
    // The prompt ends inside an open thinking block (the template opened it): the output starts
    // as thinking (ThinkingParser starts_inside).
    bool thinking_open = false;
};

// Renders `messages` (and `tools`, an array or null) with the template. The thinking switch
// becomes the template's variable (format.think_switch) only when options.think is set, so
// the template's own default applies otherwise. Errors: the template's (named by line).
Result<RenderedPrompt> render_prompt(const ChatTemplate& tmpl, const ChatFormat& format,
                                     const nlohmann::ordered_json& messages, const nlohmann::ordered_json& tools,
                                     const PromptOptions& options);

// The whole output parser for one reply: thinking, then tool calls on the answer (or harmony for
// gpt-oss), streamed or whole. Deltas from push() and finish() together give the same result
// whatever the split of the text.
class OutputParser {
public:
    OutputParser(const ChatFormat& format, bool thinking_open, ParserOptions options = {});
    ChatDelta push(std::string_view piece);
    ChatDelta finish();
    bool malformed() const;

    // Parses a whole text at once.
    static ChatDelta parse(const ChatFormat& format, bool thinking_open, std::string_view text,
                           ParserOptions options = {});

private:
    bool harmony_;
    ThinkingParser thinking_;
    std::optional<ToolCallParser> tools_;
    std::optional<HarmonyParser> harmony_parser_;
};

}  // namespace hearth::chat
