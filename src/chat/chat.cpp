#include "chat/chat.h"

#include <algorithm>
#include <cctype>

namespace hearth::chat {

using nlohmann::ordered_json;

const char* const kDefaultTemplate =
    "{%- if tools %}\n"
    "{{- '<|im_start|>system\\n' }}\n"
    "{%- if messages and messages[0].role == 'system' %}{{- messages[0].content + '\\n\\n' }}{%- endif %}\n"
    "{{- '# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\n"
    "You are provided with function signatures within <tools></tools> XML tags:\\n<tools>' }}\n"
    "{%- for tool in tools %}{{- '\\n' }}{{- tool | tojson }}{%- endfor %}\n"
    "{{- '\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:\\n<tool_call>\\n{\"name\": <function-name>, \"arguments\": "
    "<args-json-object>}\\n</tool_call><|im_end|>\\n' }}\n"
    "{%- elif messages and messages[0].role == 'system' %}\n"
    "{{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}\n"
    "{%- endif %}\n"
    "{%- for message in messages %}\n"
    "{%- if message.role == 'system' and loop.first %}\n"
    "{%- elif message.role == 'tool' %}\n"
    "{%- if loop.first or messages[loop.index0 - 1].role != 'tool' %}{{- '<|im_start|>user' }}{%- endif %}\n"
    "{{- '\\n<tool_response>\\n' + message.content + '\\n</tool_response>' }}\n"
    "{%- if loop.last or messages[loop.index0 + 1].role != 'tool' %}{{- '<|im_end|>\\n' }}{%- endif %}\n"
    "{%- else %}\n"
    "{{- '<|im_start|>' + message.role + '\\n' }}{%- if message.content %}{{- message.content }}{%- endif %}\n"
    "{%- if message.tool_calls %}{%- for tc in message.tool_calls %}\n"
    "{%- if (loop.first and message.content) or not loop.first %}{{- '\\n' }}{%- endif %}\n"
    "{%- if tc.function %}{%- set tc = tc.function %}{%- endif %}\n"
    "{{- '<tool_call>\\n{\"name\": \"' + tc.name + '\", \"arguments\": ' }}"
    "{%- if tc.arguments is string %}{{- tc.arguments }}{%- else %}{{- tc.arguments | tojson }}{%- endif %}"
    "{{- '}\\n</tool_call>' }}\n"
    "{%- endfor %}{%- endif %}\n"
    "{{- '<|im_end|>\\n' }}\n"
    "{%- endif %}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}\n";

const char* think_switch_name(ThinkSwitch s) {
    switch (s) {
    case ThinkSwitch::none: return "none";
    case ThinkSwitch::enable_thinking: return "enable_thinking";
    case ThinkSwitch::thinking: return "thinking";
    case ThinkSwitch::reasoning_effort: return "reasoning_effort";
    }
    return "?";
}

namespace {

bool has(std::string_view s, std::string_view what) { return s.find(what) != std::string_view::npos; }

bool is_ident(char c) { return std::isalnum((unsigned char)c) || c == '_'; }

// `what` ending a word (not "and thinking_budget" for "and thinking").
bool has_word(std::string_view s, std::string_view what) {
    for (size_t p = s.find(what); p != std::string_view::npos; p = s.find(what, p + 1)) {
        const size_t e = p + what.size();
        if ((p == 0 || (!is_ident(s[p - 1]) && s[p - 1] != '.')) && (e >= s.size() || !is_ident(s[e]))) return true;
    }
    return false;
}

// The text of the template's statements ({% ... %}), where variables are read; prose in
// strings and output is left out.
std::string statements(std::string_view src) {
    std::string out;
    for (size_t p = src.find("{%"); p != std::string_view::npos; p = src.find("{%", p)) {
        const size_t e = src.find("%}", p + 2);
        if (e == std::string_view::npos) break;
        out.append(src.substr(p + 2, e - p - 2));
        out += '\n';
        p = e + 2;
    }
    return out;
}

// How the template reads a thinking switch, if it does.
ThinkSwitch detect_switch(std::string_view src) {
    if (has(src, "enable_thinking")) return ThinkSwitch::enable_thinking;
    const std::string stmts = statements(src);
    for (std::string_view p : {"if thinking", "elif thinking", "not thinking", "and thinking", "thinking is defined",
                               "thinking is undefined", "thinking is not defined"})
        if (has_word(stmts, p)) return ThinkSwitch::thinking;
    if (has(src, "reasoning_effort")) return ThinkSwitch::reasoning_effort;
    return ThinkSwitch::none;
}

void set_think(ChatFormat& f, std::string start, std::string end) {
    f.think_start = std::move(start);
    f.think_end = std::move(end);
}

void add_preserved(ChatFormat& f, std::initializer_list<const char*> markers) {
    for (const char* m : markers) f.preserved_tokens.emplace_back(m);
}

}  // namespace

ChatFormat detect_format(std::string_view src, const FormatHints& hints) {
    ChatFormat f;
    f.think_switch = detect_switch(src);
    const bool mentions_think = has(src, "<think>");
    auto think_tags = [&] {
        if (mentions_think) set_think(f, "<think>", "</think>");
    };
    auto tool = [&](const char* family, ToolCallFormat t) {
        f.family = family;
        f.tool_calls = t;
    };

    if (has(src, "<|channel|>") && has(src, "<|message|>")) {
        tool("gpt-oss", ToolCallFormat::harmony);
        f.think_switch = ThinkSwitch::reasoning_effort;
        add_preserved(f, {"<|channel|>", "<|message|>", "<|start|>", "<|end|>", "<|constrain|>"});
    } else if (has(src, "｜DSML｜")) {
        tool("deepseek-v4", ToolCallFormat::deepseek_v4);
        set_think(f, "<think>", "</think>");
    } else if (has(src, "<｜tool▁calls▁begin｜>")) {
        const bool v31 = f.think_switch == ThinkSwitch::thinking ||
                         (has(src, "thinking is defined") && !has(src, "function<｜tool▁sep｜>"));
        tool(v31 ? "deepseek-v3.1" : "deepseek-r1", ToolCallFormat::deepseek_r1);
        set_think(f, "<think>", "</think>");
        add_preserved(f, {"<｜tool▁calls▁begin｜>", "<｜tool▁call▁begin｜>", "<｜tool▁sep｜>", "<｜tool▁call▁end｜>",
                          "<｜tool▁calls▁end｜>"});
    } else if (has(src, "<|tool_calls_section_begin|>")) {
        tool("kimi-k2", ToolCallFormat::kimi_k2);
        think_tags();
        add_preserved(f, {"<|tool_calls_section_begin|>", "<|tool_call_begin|>", "<|tool_call_argument_begin|>",
                          "<|tool_call_end|>", "<|tool_calls_section_end|>"});
    } else if (has(src, "<minimax:tool_call>")) {
        tool("minimax-m2", ToolCallFormat::minimax_m2);
        set_think(f, "<think>", "</think>");
    } else if (has(src, "<seed:tool_call>")) {
        tool("seed-oss", ToolCallFormat::seed_oss);
        set_think(f, "<seed:think>", "</seed:think>");
    } else if (has(src, "<arg_key>")) {
        tool("glm", ToolCallFormat::glm45);
        set_think(f, "<think>", "</think>");
    } else if (has(src, "<tool_call>") && has(src, "<function=") && has(src, "<parameter=")) {
        tool("qwen3-coder", ToolCallFormat::qwen3_coder);
        think_tags();
    } else if (has(src, "<|START_ACTION|>")) {
        tool("command-r7b", ToolCallFormat::command_r7b);
        set_think(f, "<|START_THINKING|>", "<|END_THINKING|>");
        add_preserved(f, {"<|START_ACTION|>", "<|END_ACTION|>", "<|START_THINKING|>", "<|END_THINKING|>",
                          "<|START_RESPONSE|>", "<|END_RESPONSE|>"});
    } else if (has(src, "<|tool_call|>")) {
        tool("granite", ToolCallFormat::granite);
        set_think(f, "<think>", "</think>");
        add_preserved(f, {"<|tool_call|>"});
    } else if (has(src, "[TOOL_CALLS]")) {
        if (has(src, "[ARGS]")) tool("mistral", ToolCallFormat::mistral);
        else tool("mistral-nemo", ToolCallFormat::mistral_nemo);
        if (has(src, "[THINK]")) set_think(f, "[THINK]", "[/THINK]");
        add_preserved(f, {"[TOOL_CALLS]", "[ARGS]", "[CALL_ID]", "[THINK]", "[/THINK]"});
    } else if (has(src, ">>>all")) {
        tool("functionary-v3.2", ToolCallFormat::none);  // ">>>name\n{...}" is not parsed yet
    } else if (has(src, "<|start_header_id|>") && has(src, "<function=")) {
        tool("functionary-v3.1", ToolCallFormat::functionary_v3_1);
    } else if (has(src, " functools[")) {
        tool("firefunction-v2", ToolCallFormat::firefunction_v2);
    } else if (has(src, "<|start_header_id|>") &&
               (has(src, "<|python_tag|>") || has(src, "ipython") || has(src, "\"parameters\""))) {
        tool("llama3", ToolCallFormat::llama3_json);
        add_preserved(f, {"<|python_tag|>"});
    } else if (has(src, "<tool_calls>[")) {
        tool("apriel", ToolCallFormat::apriel);
    } else if (has(src, "<tool_call>")) {
        tool("hermes", ToolCallFormat::hermes);
        think_tags();
    } else if (has(src, "<|channel>thought")) {
        f.family = "gemma4";  // tool calls "<|tool_call>call:N{...}<tool_call|>" are not parsed yet
        set_think(f, "<|channel>thought", "<channel|>");
    } else {
        f.family = has(src, "<|im_start|>") ? "chatml" : "generic";
        think_tags();
    }
    if (f.tool_calls == ToolCallFormat::hermes || f.tool_calls == ToolCallFormat::qwen3_coder ||
        f.tool_calls == ToolCallFormat::glm45)
        add_preserved(f, {"<tool_call>", "</tool_call>"});
    if (!f.think_start.empty() && f.tool_calls != ToolCallFormat::harmony) {
        f.preserved_tokens.push_back(f.think_start);
        f.preserved_tokens.push_back(f.think_end);
    }
    if (f.think_start.empty() && f.tool_calls != ToolCallFormat::harmony &&
        f.think_switch == ThinkSwitch::reasoning_effort)
        f.think_switch = ThinkSwitch::none;  // a switch with no block to parse
    // Turn ends that may come as text rather than as an end-of-generation token.
    for (const char* s : {"<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|END_OF_TURN_TOKEN|>"})
        if (has(src, s)) f.stop.emplace_back(s);
    if (f.tool_calls != ToolCallFormat::harmony && has(src, "<|assistant|>") && has(src, "<|end|>"))
        f.stop.emplace_back("<|end|>");
    (void)hints;
    return f;
}

Result<Think> Think::parse(std::string_view text) {
    std::string t(text);
    std::transform(t.begin(), t.end(), t.begin(), [](unsigned char c) { return (char)std::tolower(c); });
    Think k;
    if (t == "true" || t == "1" || t == "on" || t == "yes") k.mode = Mode::on;
    else if (t == "false" || t == "0" || t == "off" || t == "no") k.mode = Mode::off;
    else if (t == "low" || t == "medium" || t == "high") {
        k.mode = Mode::on;
        k.level = t;
    } else {
        return error(StatusCode::invalid_argument, "think: \"" + std::string(text) +
                                        "\" is not true, false, low, medium or high");
    }
    return k;
}

Think Think::from_json(const nlohmann::json& v) {
    Think k;
    if (v.is_boolean()) k.mode = v.get<bool>() ? Mode::on : Mode::off;
    else if (v.is_string()) {
        auto r = parse(v.get<std::string>());
        if (r.ok()) k = *r;
    }
    return k;
}

Result<RenderedPrompt> render_prompt(const ChatTemplate& tmpl, const ChatFormat& format, const ordered_json& messages,
                                     const ordered_json& tools, const PromptOptions& options) {
    ordered_json ctx = ordered_json::object();
    ctx["messages"] = messages.is_array() ? messages : ordered_json::array();
    if (tools.is_array() && !tools.empty()) ctx["tools"] = tools;
    ctx["add_generation_prompt"] = options.add_generation_prompt;
    ctx["bos_token"] = options.bos_token;
    ctx["eos_token"] = options.eos_token;
    const Think& think = options.think;
    if (think.mode != Think::Mode::unset) {
        const bool on = think.mode == Think::Mode::on;
        switch (format.think_switch) {
        case ThinkSwitch::none: break;
        case ThinkSwitch::enable_thinking: ctx["enable_thinking"] = on; break;
        case ThinkSwitch::thinking:
            ctx["thinking"] = on;
            ctx["enable_thinking"] = on;
            break;
        case ThinkSwitch::reasoning_effort:
            // gpt-oss cannot stop thinking: "off" asks for the least (the caller hides it).
            if (!think.level.empty()) ctx["reasoning_effort"] = think.level;
            else if (!on) ctx["reasoning_effort"] = format.tool_calls == ToolCallFormat::harmony ? "low" : "none";
            break;
        }
    }
    for (const auto& [k, v] : options.extra.items()) ctx[k] = v;
    auto text = tmpl.render(ctx, options.render);
    if (!text.ok()) return text.status();
    RenderedPrompt r;
    r.text = std::move(text).value();
    if (!options.bos_token.empty() && r.text.rfind(options.bos_token, 0) == 0) {
        r.template_bos = true;
        if (options.vocab_adds_bos) r.text.erase(0, options.bos_token.size());
    }
    if (options.add_generation_prompt && !format.think_start.empty()) {
        std::string_view t = r.text;
        while (!t.empty() && (t.back() == ' ' || t.back() == '\n' || t.back() == '\r' || t.back() == '\t'))
            t.remove_suffix(1);
        r.thinking_open = t.size() >= format.think_start.size() &&
                          t.substr(t.size() - format.think_start.size()) == format.think_start;
    }
    return r;
}

OutputParser::OutputParser(const ChatFormat& format, bool thinking_open, ParserOptions options)
    : harmony_(format.tool_calls == ToolCallFormat::harmony),
      thinking_(harmony_ ? std::string() : format.think_start, harmony_ ? std::string() : format.think_end,
                thinking_open) {
    if (harmony_) harmony_parser_.emplace(std::move(options));
    else tools_.emplace(format.tool_calls, std::move(options));
}

ChatDelta OutputParser::push(std::string_view piece) {
    if (harmony_) return harmony_parser_->push(piece);
    ThinkingDelta t = thinking_.push(piece);
    ChatDelta out = tools_->push(t.content);
    out.thinking = std::move(t.thinking);
    return out;
}

ChatDelta OutputParser::finish() {
    if (harmony_) return harmony_parser_->finish();
    ThinkingDelta t = thinking_.finish();
    ChatDelta out = tools_->push(t.content);
    out.append(tools_->finish());
    out.thinking = std::move(t.thinking) + out.thinking;
    return out;
}

bool OutputParser::malformed() const { return harmony_ ? harmony_parser_->malformed() : tools_->malformed(); }

ChatDelta OutputParser::parse(const ChatFormat& format, bool thinking_open, std::string_view text,
                              ParserOptions options) {
    OutputParser p(format, thinking_open, std::move(options));
    ChatDelta out = p.push(text);
    out.append(p.finish());
    return out;
}

}  // namespace hearth::chat
