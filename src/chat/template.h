// A model's chat template (GGUF `tokenizer.chat_template`, Jinja2 text) parsed once and rendered
// per request, byte-identical to what Python's jinja2 produces with the settings of the Hugging
// Face renderer (transformers' _compile_jinja_template): ImmutableSandboxedEnvironment with
// trim_blocks, lstrip_blocks and the loopcontrols extension, `tojson` as json.dumps with
// ensure_ascii=False, and the globals raise_exception and strftime_now; `{% generation %}` blocks
// render their body.
#pragma once

#include <ctime>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "base/status.h"
#include "chat/jinja_ast.h"
#include "chat/jinja_interpreter.h"

namespace hearth::chat {

struct RenderOptions {
    std::optional<std::time_t> now;  // what strftime_now formats (local time); default: the current time
    jinja::RenderLimits limits;      // stop hostile templates with an error
};

class ChatTemplate {
public:
    // Syntax errors: invalid_argument, "line L, column C: <reason>".
    static Result<ChatTemplate> parse(std::string source);

    // `context` is a JSON object whose keys become the template's variables: messages, tools,
    // add_generation_prompt, bos_token, eos_token and any extras (enable_thinking, ...). Errors
    // name the template line: "line L: <reason>", where the reason of raise_exception is the
    // template's own message and other reasons start with jinja2's exception name
    // ("line 7: UndefinedError: 'foo' is undefined"). Code invalid_argument when the template
    // rejects the conversation, resource_exhausted when a limit stopped it.
    Result<std::string> render(const nlohmann::ordered_json& context, const RenderOptions& options = {}) const;

    const std::string& source() const { return source_; }

private:
    std::string source_;
    std::shared_ptr<const jinja::Body> body_;  // shared: copies of a template share one tree
};

}  // namespace hearth::chat
