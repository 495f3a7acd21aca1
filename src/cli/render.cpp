// hearth render-template: renders a chat template file for a conversation, the way a model's
// GGUF template is rendered before tokenization. For checking templates and conversations by
// hand; the output is the exact bytes, without an added newline.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "chat/template.h"
#include "cli/commands.h"
#include "cli/common.h"

namespace hearth::cli {
namespace {

constexpr const char* kCmd = "render-template";

struct RenderArgs {
    std::string template_path, conversation_path;
};

std::string read_or_fail(const std::string& path) {
    std::stringstream ss;
    if (path == "-") {
        ss << std::cin.rdbuf();
        return ss.str();
    }
    std::ifstream f(path, std::ios::binary);
    if (!f) fail(kCmd, path + ": cannot open file");
    ss << f.rdbuf();
    if (f.bad()) fail(kCmd, path + ": read error");
    return ss.str();
}

void render_template(const RenderArgs& a) {
    auto tmpl = chat::ChatTemplate::parse(read_or_fail(a.template_path));
    if (!tmpl.ok()) fail(kCmd, a.template_path + ": " + tmpl.status().message());
    nlohmann::ordered_json context;
    try {
        context = nlohmann::ordered_json::parse(read_or_fail(a.conversation_path));
    } catch (const nlohmann::json::parse_error& e) {
        fail(kCmd, a.conversation_path + ": invalid JSON: " + e.what());
    }
    if (!context.is_object())
        fail(kCmd, a.conversation_path + ": expected a JSON object with messages, tools, add_generation_prompt, ...");
    const auto text = tmpl->render(context);
    if (!text.ok()) fail(kCmd, a.template_path + ": " + text.status().message());
    std::fwrite(text->data(), 1, text->size(), stdout);
    std::fflush(stdout);
}

}  // namespace

void add_render_template_command(CLI::App& app) {
    auto a = std::make_shared<RenderArgs>();
    CLI::App* c = app.add_subcommand(kCmd, "Render a chat template (Jinja2) for a conversation");
    c->add_option("template", a->template_path, "Template file, e.g. a GGUF's tokenizer.chat_template saved as .jinja")->required();
    c->add_option("conversation", a->conversation_path,
                  "JSON object: messages, optional tools, add_generation_prompt, bos_token, eos_token and any "
                  "extra variables (e.g. enable_thinking); - reads stdin")
        ->required();
    c->callback([a] { render_template(*a); });
}

}  // namespace hearth::cli
