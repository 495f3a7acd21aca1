// Every family's decoder lives here, beside the one streaming block parser they share, so the
// conventions can be read side by side; that is why this file runs past 800 lines.
#include "chat/tool_calls.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <functional>

#include "chat/thinking.h"

namespace hearth::chat {

using nlohmann::ordered_json;

namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

std::string_view trim(std::string_view s) {
    while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
    while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
    return s;
}

std::string_view ltrim(std::string_view s) {
    while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
    return s;
}

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

// One newline on each side of an XML-ish value is layout, not value (Qwen3-Coder writes
// "<parameter=x>\nvalue\n</parameter>").
std::string_view strip_one_newline(std::string_view s) {
    if (starts_with(s, "\r\n")) s.remove_prefix(2);
    else if (starts_with(s, "\n")) s.remove_prefix(1);
    if (s.size() >= 2 && s.substr(s.size() - 2) == "\r\n") s.remove_suffix(2);
    else if (!s.empty() && s.back() == '\n') s.remove_suffix(1);
    return s;
}

bool parse_json(std::string_view text, ordered_json& out) {
    out = ordered_json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
    return !out.is_discarded();
}

// The call as the format decoded it; id may be empty (the parser assigns one).
struct Decoded {
    std::string id, name;
    ordered_json arguments;
};

using Decoder = std::function<bool(std::string_view body, std::vector<Decoded>& out)>;

// What opens, closes and decodes one format's call blocks.
struct BlockSpec {
    std::vector<std::string> starts;  // markers that open a block
    std::string end;                  // marker that closes it; empty: see json_end
    // No end marker: the block ends where the JSON value that starts after `json_after` (empty:
    // at the start of the body) is complete, else at the next start marker or the end of output.
    bool json_end = false;
    std::string json_after;
    std::vector<std::string> drops;   // markers removed from the content (response wrappers)
    bool bare_json_at_start = false;  // llama3: an answer that is a call object with no marker
    Decoder decode;
};

// ---- value typing for the XML-ish formats ----

class ArgTyper {
public:
    explicit ArgTyper(const ordered_json& tools) : tools_(tools) {}
    // The parameter's value: a string when the schema says so, else JSON when it parses.
    ordered_json value(std::string_view fn, const std::string& key, std::string_view text) const {
        if (!is_string_param(fn, key)) {
            ordered_json j;
            const std::string_view t = trim(text);
            if (!t.empty() && parse_json(t, j)) return j;
        }
        return std::string(text);
    }

private:
    bool is_string_param(std::string_view fn, const std::string& key) const {
        if (!tools_.is_array()) return false;
        for (const auto& t : tools_) {
            const ordered_json* f = &t;
            if (t.is_object() && t.contains("function") && t["function"].is_object()) f = &t["function"];
            if (!f->is_object() || !f->contains("name") || !(*f)["name"].is_string() || (*f)["name"] != fn) continue;
            if (!f->contains("parameters")) return false;
            const auto& p = (*f)["parameters"];
            if (!p.is_object() || !p.contains("properties") || !p["properties"].is_object()) return false;
            const auto& props = p["properties"];
            if (!props.contains(key) || !props[key].is_object() || !props[key].contains("type")) return false;
            const auto& type = props[key]["type"];
            if (type.is_string()) return type == "string";
            if (type.is_array()) return type.size() == 1 && type[0] == "string";
            return false;
        }
        return false;
    }
    const ordered_json& tools_;
};

// ---- decoders ----

// {"name": N, "arguments"|"parameters": {...}, "id"?} (and the key names of Command R7B).
bool decode_call_object(const ordered_json& j, Decoded& d) {
    if (!j.is_object()) return false;
    const ordered_json* name = nullptr;
    for (const char* k : {"name", "tool_name"})
        if (j.contains(k) && j[k].is_string()) { name = &j[k]; break; }
    const ordered_json* fn = &j;
    if (!name && j.contains("function") && j["function"].is_object()) {  // OpenAI's own shape
        fn = &j["function"];
        if (fn->contains("name") && (*fn)["name"].is_string()) name = &(*fn)["name"];
    }
    if (!name || name->get<std::string>().empty()) return false;
    d.name = name->get<std::string>();
    d.arguments = ordered_json::object();
    for (const char* k : {"arguments", "parameters"}) {
        if (!fn->contains(k)) continue;
        const auto& a = (*fn)[k];
        if (a.is_object()) d.arguments = a;
        else if (a.is_string()) { if (!parse_arguments(a.get<std::string>(), d.arguments)) return false; }
        else if (!a.is_null()) return false;
        break;
    }
    for (const char* k : {"id", "tool_call_id"}) {
        if (!j.contains(k)) continue;
        if (j[k].is_string()) d.id = j[k].get<std::string>();
        else if (j[k].is_number_integer()) d.id = std::to_string(j[k].get<int64_t>());
        break;
    }
    return true;
}

// A JSON object or an array of call objects.
bool decode_json_calls(std::string_view body, std::vector<Decoded>& out) {
    ordered_json j;
    if (!parse_json(trim(body), j)) return false;
    if (j.is_object()) j = ordered_json::array({j});
    if (!j.is_array() || j.empty()) return false;
    for (const auto& e : j) {
        Decoded d;
        if (!decode_call_object(e, d)) return false;
        out.push_back(std::move(d));
    }
    return true;
}

// <function=N><parameter=K>V</parameter>...</function>, one or more.
bool decode_function_xml(std::string_view body, const ArgTyper& typer, std::vector<Decoded>& out) {
    body = trim(body);
    if (!starts_with(body, "<function=")) return false;
    while (!body.empty()) {
        body = ltrim(body);
        if (body.empty()) break;
        if (!starts_with(body, "<function=")) return false;
        body.remove_prefix(10);
        const size_t gt = body.find('>');
        if (gt == std::string_view::npos) return false;
        Decoded d;
        d.name = std::string(trim(body.substr(0, gt)));
        if (d.name.empty()) return false;
        d.arguments = ordered_json::object();
        body.remove_prefix(gt + 1);
        size_t fend = body.find("</function>");
        std::string_view inner = body.substr(0, fend);
        body = fend == std::string_view::npos ? std::string_view{} : body.substr(fend + 11);
        while (true) {
            const size_t p = inner.find("<parameter=");
            if (p == std::string_view::npos) break;
            if (!trim(inner.substr(0, p)).empty()) return false;
            inner.remove_prefix(p + 11);
            const size_t pgt = inner.find('>');
            if (pgt == std::string_view::npos) return false;
            const std::string key(trim(inner.substr(0, pgt)));
            inner.remove_prefix(pgt + 1);
            // The value ends at its closing tag, or (models forget it) at the next parameter.
            size_t vend = inner.find("</parameter>");
            size_t next = inner.find("<parameter=");
            size_t skip = 12;
            if (vend == std::string_view::npos || (next != std::string_view::npos && next < vend)) {
                vend = next == std::string_view::npos ? inner.size() : next;
                skip = 0;
            }
            d.arguments[key] = typer.value(d.name, key, strip_one_newline(inner.substr(0, vend)));
            inner.remove_prefix(std::min(inner.size(), vend + skip));
        }
        if (!trim(inner).empty()) return false;
        out.push_back(std::move(d));
    }
    return !out.empty();
}

// Hermes: JSON in the block, or the Qwen3-Coder form.
bool decode_hermes(std::string_view body, const ArgTyper& typer, std::vector<Decoded>& out) {
    const std::string_view t = trim(body);
    if (starts_with(t, "<function=")) return decode_function_xml(t, typer, out);
    ordered_json j;
    if (!parse_json(t, j) || !j.is_object()) return false;
    Decoded d;
    if (!decode_call_object(j, d)) return false;
    out.push_back(std::move(d));
    return true;
}

// GLM 4.5: N<arg_key>K</arg_key><arg_value>V</arg_value>...
bool decode_glm(std::string_view body, const ArgTyper& typer, std::vector<Decoded>& out) {
    size_t k = body.find("<arg_key>");
    Decoded d;
    d.name = std::string(trim(body.substr(0, k)));
    if (d.name.empty() || d.name.find('<') != std::string::npos) return false;
    d.arguments = ordered_json::object();
    std::string_view rest = k == std::string_view::npos ? std::string_view{} : body.substr(k);
    while (!trim(rest).empty()) {
        rest = ltrim(rest);
        if (!starts_with(rest, "<arg_key>")) return false;
        rest.remove_prefix(9);
        const size_t ke = rest.find("</arg_key>");
        if (ke == std::string_view::npos) return false;
        const std::string key(trim(rest.substr(0, ke)));
        rest = ltrim(rest.substr(ke + 10));
        if (!starts_with(rest, "<arg_value>")) return false;
        rest.remove_prefix(11);
        const size_t ve = rest.find("</arg_value>");
        if (ve == std::string_view::npos) return false;
        d.arguments[key] = typer.value(d.name, key, rest.substr(0, ve));
        rest.remove_prefix(ve + 12);
    }
    out.push_back(std::move(d));
    return true;
}

// The value of attribute `attr` in a tag's text (name="x" string="true"); false if absent.
bool tag_attribute(std::string_view tag, std::string_view attr, std::string& out) {
    const std::string key = std::string(attr) + "=\"";
    size_t p = 0;
    while ((p = tag.find(key, p)) != std::string_view::npos) {
        if (p == 0 || is_space(tag[p - 1])) {
            const size_t b = p + key.size(), e = tag.find('"', b);
            if (e == std::string_view::npos) return false;
            out = std::string(tag.substr(b, e - b));
            return true;
        }
        p += key.size();
    }
    return false;
}

// MiniMax-M2 / DeepSeek-V4 (with `p` = "｜DSML｜"): <{p}invoke name="N"><{p}parameter name="K"
// [string="true|false"]>V</{p}parameter></{p}invoke>, one or more.
bool decode_invoke(std::string_view body, const std::string& p, const ArgTyper& typer, std::vector<Decoded>& out) {
    const std::string inv_open = "<" + p + "invoke", inv_close = "</" + p + "invoke>";
    const std::string par_open = "<" + p + "parameter", par_close = "</" + p + "parameter>";
    body = trim(body);
    while (!trim(body).empty()) {
        body = ltrim(body);
        if (!starts_with(body, inv_open)) return false;
        const size_t gt = body.find('>');
        if (gt == std::string_view::npos) return false;
        Decoded d;
        if (!tag_attribute(body.substr(0, gt), "name", d.name) || d.name.empty()) return false;
        d.arguments = ordered_json::object();
        body.remove_prefix(gt + 1);
        const size_t iend = body.find(inv_close);
        std::string_view inner = body.substr(0, iend);
        body = iend == std::string_view::npos ? std::string_view{} : body.substr(iend + inv_close.size());
        while (!trim(inner).empty()) {
            inner = ltrim(inner);
            if (!starts_with(inner, par_open)) return false;
            const size_t pgt = inner.find('>');
            if (pgt == std::string_view::npos) return false;
            const std::string_view tag = inner.substr(0, pgt);
            std::string key, is_string;
            if (!tag_attribute(tag, "name", key)) return false;
            const bool has_string = tag_attribute(tag, "string", is_string);
            inner.remove_prefix(pgt + 1);
            const size_t vend = inner.find(par_close);
            if (vend == std::string_view::npos) return false;
            const std::string_view v = strip_one_newline(inner.substr(0, vend));
            if (has_string && is_string == "true") {
                d.arguments[key] = std::string(v);
            } else if (has_string) {
                ordered_json j;
                if (!parse_json(trim(v), j)) return false;
                d.arguments[key] = std::move(j);
            } else {
                d.arguments[key] = typer.value(d.name, key, v);
            }
            inner.remove_prefix(vend + par_close.size());
        }
        out.push_back(std::move(d));
    }
    return !out.empty();
}

// key="value", key=1.5, ... of a Llama built-in call's parentheses.
bool decode_python_kwargs(std::string_view s, ordered_json& args) {
    args = ordered_json::object();
    s = trim(s);
    while (!s.empty()) {
        const size_t eq = s.find('=');
        if (eq == std::string_view::npos) return false;
        const std::string key(trim(s.substr(0, eq)));
        if (key.empty()) return false;
        s = ltrim(s.substr(eq + 1));
        if (s.empty()) return false;
        if (s[0] == '"' || s[0] == '\'') {
            const char q = s[0];
            std::string v;
            size_t i = 1;
            for (; i < s.size() && s[i] != q; ++i) {
                if (s[i] == '\\' && i + 1 < s.size()) {
                    ++i;
                    v += s[i] == 'n' ? '\n' : s[i] == 't' ? '\t' : s[i];
                } else {
                    v += s[i];
                }
            }
            if (i >= s.size()) return false;
            args[key] = v;
            s = ltrim(s.substr(i + 1));
        } else {
            const size_t comma = s.find(',');
            const std::string_view lit = trim(s.substr(0, comma));
            ordered_json j;
            if (lit == "True") j = true;
            else if (lit == "False") j = false;
            else if (lit == "None") j = nullptr;
            else if (!parse_json(lit, j)) return false;
            args[key] = std::move(j);
            s = comma == std::string_view::npos ? std::string_view{} : s.substr(comma);
        }
        if (!s.empty()) {
            if (s[0] != ',') return false;
            s = ltrim(s.substr(1));
        }
    }
    return true;
}

// After <|python_tag|> (or as the whole answer): JSON call(s) separated by ';', each with its
// "parameters" or "arguments", a built-in call name.call(k="v"), or code
// for the code interpreter (returned as a call of "python" with {"code": ...}, as llama.cpp does).
bool decode_llama3(std::string_view body, std::vector<Decoded>& out) {
    const std::string_view t = trim(body);
    if (starts_with(t, "{")) {
        std::string_view rest = t;
        while (!rest.empty()) {
            const size_t n = json_value_length(rest);
            if (n == std::string_view::npos) return false;
            ordered_json j;
            Decoded d;
            if (!parse_json(rest.substr(0, n), j) || !j.is_object() ||
                (!j.contains("parameters") && !j.contains("arguments")) || !decode_call_object(j, d))
                return false;
            out.push_back(std::move(d));
            rest = ltrim(rest.substr(n));
            if (starts_with(rest, ";")) rest = ltrim(rest.substr(1));
        }
        return true;
    }
    const size_t dot = t.find(".call(");
    if (dot != std::string_view::npos && !t.empty() && t.back() == ')') {
        const std::string_view name = t.substr(0, dot);
        if (!name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
                return std::isalnum((unsigned char)c) || c == '_';
            })) {
            Decoded d;
            d.name = std::string(name);
            if (decode_python_kwargs(t.substr(dot + 6, t.size() - dot - 7), d.arguments)) {
                out.push_back(std::move(d));
                return true;
            }
        }
    }
    if (t.empty()) return false;
    Decoded d;
    d.name = "python";
    d.arguments = ordered_json{{"code", std::string(t)}};
    out.push_back(std::move(d));
    return true;
}

// N[ARGS]{...} or N[CALL_ID]id[ARGS]{...}; a JSON list (the Nemo form) too.
bool decode_mistral(std::string_view body, std::vector<Decoded>& out) {
    const std::string_view t = trim(body);
    if (starts_with(t, "[") || starts_with(t, "{")) return decode_json_calls(t, out);
    const size_t a = t.find("[ARGS]");
    if (a == std::string_view::npos) return false;
    Decoded d;
    std::string_view head = t.substr(0, a);
    const size_t c = head.find("[CALL_ID]");
    if (c != std::string_view::npos) {
        d.id = std::string(trim(head.substr(c + 9)));
        head = head.substr(0, c);
    }
    d.name = std::string(trim(head));
    if (d.name.empty() || !parse_arguments(t.substr(a + 6), d.arguments)) return false;
    out.push_back(std::move(d));
    return true;
}

// DeepSeek R1 (function<｜tool▁sep｜>N\n```json\n{...}\n```) and V3.1 (N<｜tool▁sep｜>{...}).
bool decode_deepseek(std::string_view body, std::vector<Decoded>& out) {
    static const std::string kBegin = "<｜tool▁call▁begin｜>", kEnd = "<｜tool▁call▁end｜>", kSep = "<｜tool▁sep｜>";
    std::string_view rest = trim(body);
    while (!rest.empty()) {
        if (!starts_with(rest, kBegin)) return false;
        rest.remove_prefix(kBegin.size());
        const size_t e = rest.find(kEnd);
        std::string_view call = rest.substr(0, e);
        rest = e == std::string_view::npos ? std::string_view{} : ltrim(rest.substr(e + kEnd.size()));
        const size_t s = call.find(kSep);
        if (s == std::string_view::npos) return false;
        std::string_view left = trim(call.substr(0, s)), right = call.substr(s + kSep.size());
        Decoded d;
        if (left == "function") {
            const size_t nl = right.find('\n');
            d.name = std::string(trim(right.substr(0, nl)));
            std::string_view args = nl == std::string_view::npos ? std::string_view{} : trim(right.substr(nl + 1));
            if (starts_with(args, "```")) {
                const size_t line = args.find('\n');
                args = line == std::string_view::npos ? std::string_view{} : args.substr(line + 1);
                const size_t fence = args.rfind("```");
                if (fence != std::string_view::npos) args = args.substr(0, fence);
            }
            if (!parse_arguments(args, d.arguments)) return false;
        } else {
            d.name = std::string(left);
            if (!parse_arguments(right, d.arguments)) return false;
        }
        if (d.name.empty()) return false;
        out.push_back(std::move(d));
    }
    return !out.empty();
}

// Kimi K2: <|tool_call_begin|>functions.N:0<|tool_call_argument_begin|>{...}<|tool_call_end|> ...
bool decode_kimi(std::string_view body, std::vector<Decoded>& out) {
    static const std::string kBegin = "<|tool_call_begin|>", kArgs = "<|tool_call_argument_begin|>",
                             kEnd = "<|tool_call_end|>";
    std::string_view rest = trim(body);
    while (!rest.empty()) {
        if (!starts_with(rest, kBegin)) return false;
        rest.remove_prefix(kBegin.size());
        const size_t a = rest.find(kArgs);
        if (a == std::string_view::npos) return false;
        Decoded d;
        d.id = std::string(trim(rest.substr(0, a)));
        std::string_view name = d.id;
        if (starts_with(name, "functions.")) name.remove_prefix(10);
        if (const size_t colon = name.rfind(':'); colon != std::string_view::npos) name = name.substr(0, colon);
        d.name = std::string(name);
        rest.remove_prefix(a + kArgs.size());
        const size_t e = rest.find(kEnd);
        if (d.name.empty() || !parse_arguments(rest.substr(0, e), d.arguments)) return false;
        rest = e == std::string_view::npos ? std::string_view{} : ltrim(rest.substr(e + kEnd.size()));
        out.push_back(std::move(d));
    }
    return !out.empty();
}

// Functionary v3.1: the body after "<function=" is N>{...}.
bool decode_functionary(std::string_view body, std::vector<Decoded>& out) {
    const size_t gt = body.find('>');
    if (gt == std::string_view::npos) return false;
    Decoded d;
    d.name = std::string(trim(body.substr(0, gt)));
    if (d.name.empty() || !parse_arguments(body.substr(gt + 1), d.arguments)) return false;
    out.push_back(std::move(d));
    return true;
}

BlockSpec spec_for(ToolCallFormat f, const ArgTyper& typer) {
    using V = std::vector<Decoded>;
    BlockSpec s;
    switch (f) {
    case ToolCallFormat::none:
    case ToolCallFormat::harmony:
        break;
    case ToolCallFormat::hermes:
    case ToolCallFormat::qwen3_coder:
        s.starts = {"<tool_call>"};
        s.end = "</tool_call>";
        s.decode = [&typer](std::string_view b, V& o) { return decode_hermes(b, typer, o); };
        break;
    case ToolCallFormat::seed_oss:
        s.starts = {"<seed:tool_call>"};
        s.end = "</seed:tool_call>";
        s.decode = [&typer](std::string_view b, V& o) { return decode_hermes(b, typer, o); };
        break;
    case ToolCallFormat::glm45:
        s.starts = {"<tool_call>"};
        s.end = "</tool_call>";
        s.decode = [&typer](std::string_view b, V& o) { return decode_glm(b, typer, o); };
        break;
    case ToolCallFormat::minimax_m2:
        s.starts = {"<minimax:tool_call>"};
        s.end = "</minimax:tool_call>";
        s.decode = [&typer](std::string_view b, V& o) { return decode_invoke(b, "", typer, o); };
        break;
    case ToolCallFormat::deepseek_v4:
        s.starts = {"<｜DSML｜tool_calls>"};
        s.end = "</｜DSML｜tool_calls>";
        s.decode = [&typer](std::string_view b, V& o) { return decode_invoke(b, "｜DSML｜", typer, o); };
        break;
    case ToolCallFormat::llama3_json:
        s.starts = {"<|python_tag|>"};
        s.json_end = true;
        s.bare_json_at_start = true;
        s.decode = decode_llama3;
        break;
    case ToolCallFormat::mistral_nemo:
        s.starts = {"[TOOL_CALLS]"};
        s.json_end = true;
        s.decode = decode_json_calls;
        break;
    case ToolCallFormat::mistral:
        s.starts = {"[TOOL_CALLS]"};
        s.json_end = true;
        s.json_after = "[ARGS]";
        s.decode = decode_mistral;
        break;
    case ToolCallFormat::deepseek_r1:
        s.starts = {"<｜tool▁calls▁begin｜>"};
        s.end = "<｜tool▁calls▁end｜>";
        s.decode = decode_deepseek;
        break;
    case ToolCallFormat::kimi_k2:
        s.starts = {"<|tool_calls_section_begin|>"};
        s.end = "<|tool_calls_section_end|>";
        s.decode = decode_kimi;
        break;
    case ToolCallFormat::command_r7b:
        s.starts = {"<|START_ACTION|>"};
        s.end = "<|END_ACTION|>";
        s.drops = {"<|START_RESPONSE|>", "<|END_RESPONSE|>"};
        s.decode = decode_json_calls;
        break;
    case ToolCallFormat::granite:
        s.starts = {"<|tool_call|>"};
        s.json_end = true;
        s.drops = {"<response>", "</response>"};
        s.decode = decode_json_calls;
        break;
    case ToolCallFormat::functionary_v3_1:
        s.starts = {"<function="};
        s.end = "</function>";
        s.decode = decode_functionary;
        break;
    case ToolCallFormat::firefunction_v2:
        s.starts = {"functools"};
        s.json_end = true;
        s.decode = decode_json_calls;
        break;
    case ToolCallFormat::apriel:
        s.starts = {"<tool_calls>"};
        s.end = "</tool_calls>";
        s.decode = decode_json_calls;
        break;
    }
    return s;
}

}  // namespace

const char* tool_call_format_name(ToolCallFormat f) {
    switch (f) {
    case ToolCallFormat::none: return "none";
    case ToolCallFormat::hermes: return "hermes";
    case ToolCallFormat::qwen3_coder: return "qwen3_coder";
    case ToolCallFormat::seed_oss: return "seed_oss";
    case ToolCallFormat::glm45: return "glm45";
    case ToolCallFormat::minimax_m2: return "minimax_m2";
    case ToolCallFormat::deepseek_v4: return "deepseek_v4";
    case ToolCallFormat::llama3_json: return "llama3_json";
    case ToolCallFormat::mistral_nemo: return "mistral_nemo";
    case ToolCallFormat::mistral: return "mistral";
    case ToolCallFormat::deepseek_r1: return "deepseek_r1";
    case ToolCallFormat::kimi_k2: return "kimi_k2";
    case ToolCallFormat::command_r7b: return "command_r7b";
    case ToolCallFormat::granite: return "granite";
    case ToolCallFormat::functionary_v3_1: return "functionary_v3_1";
    case ToolCallFormat::firefunction_v2: return "firefunction_v2";
    case ToolCallFormat::apriel: return "apriel";
    case ToolCallFormat::harmony: return "harmony";
    }
    return "?";
}

void ChatDelta::append(ChatDelta&& d) {
    content += d.content;
    thinking += d.thinking;
    for (auto& c : d.tool_calls) tool_calls.push_back(std::move(c));
}

size_t json_value_length(std::string_view text) {
    size_t i = 0;
    while (i < text.size() && is_space(text[i])) ++i;
    if (i >= text.size() || (text[i] != '{' && text[i] != '[')) return std::string_view::npos;
    int depth = 0;
    bool in_string = false, escaped = false;
    for (; i < text.size(); ++i) {
        const char c = text[i];
        if (in_string) {
            if (escaped) escaped = false;
            else if (c == '\\') escaped = true;
            else if (c == '"') in_string = false;
            continue;
        }
        if (c == '"') in_string = true;
        else if (c == '{' || c == '[') ++depth;
        else if (c == '}' || c == ']') {
            if (--depth == 0) return i + 1;
        }
    }
    return std::string_view::npos;
}

bool parse_arguments(std::string_view text, ordered_json& out) {
    const std::string_view t = trim(text);
    if (t.empty()) {
        out = ordered_json::object();
        return true;
    }
    if (!parse_json(t, out)) return false;
    if (out.is_string()) {  // double-encoded
        const std::string inner = out.get<std::string>();
        if (!parse_json(inner, out)) return false;
    }
    return out.is_object();
}

// ---- the streaming block parser ----

struct ToolCallParser::Impl {
    ToolCallFormat format;
    ParserOptions options;
    ArgTyper typer;
    BlockSpec spec;

    enum class State { content, block } state = State::content;
    std::string pending;       // received, not yet classified (content mode)
    std::string body;          // the open block's text after its start marker
    std::string block_start;   // the marker that opened it ("" for a bare JSON answer)
    bool at_start = true;      // nothing but whitespace seen yet (llama3's bare JSON call)
    std::string ws;            // trailing whitespace of the content, held back
    bool after_call = false;   // the last thing out was a call (whitespace after it is dropped)
    bool is_malformed = false;
    int calls = 0;

    Impl(ToolCallFormat f, ParserOptions o) : format(f), options(std::move(o)), typer(options.tools), spec(spec_for(f, typer)) {}

    void emit_content(std::string_view s, ChatDelta& out) {
        if (s.empty()) return;
        size_t last = s.size();
        while (last > 0 && is_space(s[last - 1])) --last;
        if (last == 0) {
            ws.append(s);
            return;
        }
        out.content += ws;
        out.content.append(s.substr(0, last));
        ws.assign(s.substr(last));
        after_call = false;
    }

    std::string make_id(const Decoded& d) const {
        if (!d.id.empty()) return d.id;
        if (format == ToolCallFormat::mistral || format == ToolCallFormat::mistral_nemo) {
            char buf[16];
            std::snprintf(buf, sizeof buf, "call%05d", calls % 100000);  // Mistral's templates want 9 alphanumerics
            return buf;
        }
        return "call_" + std::to_string(calls);
    }

    // Decodes the block text; malformed → the raw text as content.
    void close_block(std::string_view text, std::string_view end_marker, ChatDelta& out) {
        std::vector<Decoded> decoded;
        if (spec.decode && spec.decode(text, decoded)) {
            ws.clear();
            for (auto& d : decoded) {
                ToolCall c;
                c.id = make_id(d);
                c.name = std::move(d.name);
                c.arguments = d.arguments.is_object() ? std::move(d.arguments) : ordered_json::object();
                c.index = calls++;
                out.tool_calls.push_back(std::move(c));
            }
            after_call = true;
        } else {
            // A bare JSON answer that is not a call is just the answer.
            if (!block_start.empty()) is_malformed = true;
            emit_content(block_start + std::string(text) + std::string(end_marker), out);
        }
    }

    // Where the open block ends (its length in `body`) and how much of `body` the end marker
    // takes; npos when not yet.
    std::pair<size_t, size_t> block_end(bool at_end) const {
        if (!spec.end.empty()) {
            const size_t e = body.find(spec.end);
            if (e != std::string::npos) return {e, spec.end.size()};
            return {std::string::npos, 0};
        }
        if (spec.json_end) {
            size_t from = 0;
            if (!spec.json_after.empty()) {
                from = body.find(spec.json_after);
                if (from != std::string::npos) from += spec.json_after.size();
            }
            if (from != std::string::npos) {
                const size_t n = json_value_length(std::string_view(body).substr(from));
                if (n != std::string_view::npos) return {from + n, 0};
            }
        }
        // The next call's start marker ends this one.
        for (const auto& m : spec.starts) {
            const size_t p = body.find(m);
            if (p != std::string::npos) return {p, 0};
        }
        (void)at_end;
        return {std::string::npos, 0};
    }

    // Does `s` (after its '{') still look like the start of a call object?
    static int bare_json_verdict(std::string_view s) {  // 1 yes, 0 undecided, -1 no
        s = ltrim(s.substr(1));
        for (std::string_view key : {"\"name\"", "\"type\""}) {
            if (starts_with(s, key)) return 1;
            if (starts_with(key, s)) return 0;
        }
        return -1;
    }

    void run(ChatDelta& out, bool at_end) {
        for (;;) {
            if (state == State::block) {
                auto [len, skip] = block_end(at_end);
                if (len == std::string::npos) {
                    if (!at_end) return;
                    len = body.size();
                }
                const std::string end_marker = body.substr(len, skip);
                const std::string text = body.substr(0, len);
                pending = body.substr(len + skip) + pending;
                body.clear();
                state = State::content;
                close_block(text, end_marker, out);
                continue;
            }
            if (spec.starts.empty()) {  // no tool calls in this format: content as it comes
                out.content += pending;
                pending.clear();
                return;
            }
            if (spec.bare_json_at_start && at_start) {
                const std::string_view t = ltrim(pending);
                if (t.empty() && !at_end) return;
                if (!t.empty() && t[0] == '{') {
                    const int v = bare_json_verdict(t);
                    if (v == 0 && !at_end) return;
                    if (v == 1) {
                        at_start = false;
                        state = State::block;
                        block_start.clear();
                        body = std::string(t);
                        pending.clear();
                        continue;
                    }
                }
                at_start = false;
            }
            // Content: up to the first marker.
            size_t best = std::string::npos, best_len = 0;
            bool best_is_start = false;
            auto consider = [&](const std::string& m, bool is_start) {
                const size_t p = pending.find(m);
                if (p != std::string::npos && (p < best || (p == best && m.size() > best_len))) {
                    best = p;
                    best_len = m.size();
                    best_is_start = is_start;
                }
            };
            for (const auto& m : spec.starts) consider(m, true);
            for (const auto& m : spec.drops) consider(m, false);
            if (best != std::string::npos) {
                emit_content(std::string_view(pending).substr(0, best), out);
                if (best_is_start) {
                    block_start = pending.substr(best, best_len);
                    body = pending.substr(best + best_len);
                    pending.clear();
                    state = State::block;
                } else {
                    pending.erase(0, best + best_len);
                }
                continue;
            }
            size_t hold = 0;
            if (!at_end) {
                for (const auto& m : spec.starts) hold = std::max(hold, marker_prefix_suffix(pending, m));
                for (const auto& m : spec.drops) hold = std::max(hold, marker_prefix_suffix(pending, m));
            }
            emit_content(std::string_view(pending).substr(0, pending.size() - hold), out);
            pending.erase(0, pending.size() - hold);
            return;
        }
    }
};

ToolCallParser::ToolCallParser(ToolCallFormat format, ParserOptions options)
    : impl_(std::make_unique<Impl>(format, std::move(options))) {}
ToolCallParser::~ToolCallParser() = default;
ToolCallParser::ToolCallParser(ToolCallParser&&) noexcept = default;
ToolCallParser& ToolCallParser::operator=(ToolCallParser&&) noexcept = default;

ChatDelta ToolCallParser::push(std::string_view piece) {
    ChatDelta out;
    if (impl_->state == Impl::State::block) impl_->body.append(piece);
    else impl_->pending.append(piece);
    impl_->run(out, false);
    return out;
}

ChatDelta ToolCallParser::finish() {
    ChatDelta out;
    impl_->run(out, true);
    if (!impl_->after_call) out.content += impl_->ws;
    impl_->ws.clear();
    return out;
}

bool ToolCallParser::malformed() const { return impl_->is_malformed; }
int ToolCallParser::n_calls() const { return impl_->calls; }

// ---- harmony ----

namespace {
const std::string kHStart = "<|start|>", kHChannel = "<|channel|>", kHMessage = "<|message|>", kHEnd = "<|end|>",
                  kHCall = "<|call|>", kHReturn = "<|return|>";

// The word after `key` in a header: up to whitespace or the next "<|".
std::string header_word(std::string_view header, std::string_view key) {
    const size_t p = header.find(key);
    if (p == std::string_view::npos) return "";
    std::string_view rest = header.substr(p + key.size());
    size_t e = 0;
    while (e < rest.size() && !is_space(rest[e]) && rest[e] != '<') ++e;
    return std::string(rest.substr(0, e));
}
}  // namespace

HarmonyParser::HarmonyParser(ParserOptions options) : options_(std::move(options)) {}

ChatDelta HarmonyParser::push(std::string_view piece) {
    buf_.append(piece);
    ChatDelta out;
    run(out, false);
    return out;
}

ChatDelta HarmonyParser::finish() {
    ChatDelta out;
    run(out, true);
    return out;
}

void HarmonyParser::close_message(ChatDelta& out) {
    if (!recipient_.empty()) {
        std::string name = recipient_;
        if (starts_with(name, "functions.")) name.erase(0, 10);
        ToolCall c;
        if (!name.empty() && parse_arguments(args_, c.arguments)) {
            c.id = "call_" + std::to_string(calls_);
            c.name = std::move(name);
            c.index = calls_++;
            out.tool_calls.push_back(std::move(c));
        } else {
            malformed_ = true;
            out.content += args_;
        }
    }
    channel_.clear();
    recipient_.clear();
    args_.clear();
}

void HarmonyParser::run(ChatDelta& out, bool at_end) {
    auto emit_body = [&](std::string_view s) {
        if (!recipient_.empty()) args_.append(s);
        else if (channel_ == "analysis") out.thinking.append(s);
        else out.content.append(s);
    };
    static const std::string* const kBodyEnds[] = {&kHEnd, &kHCall, &kHReturn, &kHStart, &kHChannel};
    for (;;) {
        if (state_ == State::header) {
            const size_t m = buf_.find(kHMessage);
            if (m == std::string::npos) {
                const std::string_view t = ltrim(buf_);
                bool could_be_header = t.empty();
                for (std::string_view p : {std::string_view(kHChannel), std::string_view(kHStart),
                                           std::string_view("assistant"), std::string_view("to=")})
                    could_be_header = could_be_header || starts_with(t, p) || starts_with(p, t);
                if (!could_be_header) {  // not harmony at all: the answer as it comes
                    channel_ = "final";
                    state_ = State::body;
                    continue;
                }
                if (at_end) buf_.clear();  // a header cut off: nothing to show
                return;
            }
            const std::string_view header = std::string_view(buf_).substr(0, m);
            channel_ = header_word(header, kHChannel);
            recipient_ = header_word(header, "to=");
            args_.clear();
            buf_.erase(0, m + kHMessage.size());
            state_ = State::body;
            continue;
        }
        size_t best = std::string::npos;
        const std::string* marker = nullptr;
        for (const std::string* m : kBodyEnds) {
            const size_t p = buf_.find(*m);
            if (p < best) {
                best = p;
                marker = m;
            }
        }
        if (marker) {
            emit_body(std::string_view(buf_).substr(0, best));
            // A channel marker right after a body (no <|end|>) starts the next header.
            buf_.erase(0, marker == &kHChannel ? best : best + marker->size());
            close_message(out);
            state_ = State::header;
            continue;
        }
        size_t hold = 0;
        if (!at_end)
            for (const std::string* m : kBodyEnds) hold = std::max(hold, marker_prefix_suffix(buf_, *m));
        emit_body(std::string_view(buf_).substr(0, buf_.size() - hold));
        buf_.erase(0, buf_.size() - hold);
        if (at_end) {
            close_message(out);
            state_ = State::header;
        }
        return;
    }
}

}  // namespace hearth::chat
