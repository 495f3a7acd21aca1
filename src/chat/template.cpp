#include "chat/template.h"

#include "chat/jinja_parser.h"

namespace hearth::chat {

Result<ChatTemplate> ChatTemplate::parse(std::string source) {
    HEARTH_ASSIGN(jinja::Body body, jinja::parse(source));
    ChatTemplate t;
    t.source_ = std::move(source);
    t.body_ = std::make_shared<const jinja::Body>(std::move(body));
    return t;
}

Result<std::string> ChatTemplate::render(const nlohmann::ordered_json& context, const RenderOptions& options) const {
    if (!context.is_object()) return error(StatusCode::invalid_argument, "the render context must be a JSON object");
    std::vector<std::pair<std::string, jinja::Value>> vars;
    vars.reserve(context.size());
    for (auto it = context.begin(); it != context.end(); ++it) vars.emplace_back(it.key(), jinja::Value::from_json(it.value()));
    jinja::Interpreter in(options.limits, options.now.value_or(std::time(nullptr)));
    try {
        return in.render(*body_, std::move(vars));
    } catch (const jinja::JinjaError& e) {
        const std::string reason = e.type == "TemplateError" ? e.message : e.type + ": " + e.message;
        const StatusCode code = e.type == "ResourceExhausted" || e.type == "RecursionError" ? StatusCode::resource_exhausted
                                                                                             : StatusCode::invalid_argument;
        return error(code, strformat("line %d: %s", e.line, reason.c_str()));
    }
}

}  // namespace hearth::chat
