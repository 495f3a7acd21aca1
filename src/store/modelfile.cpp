#include "store/modelfile.h"

#include <cctype>
#include <cmath>
#include <cstdlib>

namespace hearth::store {
namespace {

using json = nlohmann::json;

bool is_blank(char c) { return c == ' ' || c == '\t'; }
bool is_newline(char c) { return c == '\n' || c == '\r'; }

std::string lower(std::string_view s) {
    std::string out(s);
    for (char& c : out) c = (char)std::tolower((unsigned char)c);
    return out;
}

std::string trim(std::string_view s) {
    size_t b = 0, e = s.size();
    while (b < e && (is_blank(s[b]) || is_newline(s[b]))) ++b;
    while (e > b && (is_blank(s[e - 1]) || is_newline(s[e - 1]))) --e;
    return std::string(s.substr(b, e - b));
}

// Go's strconv.ParseBool.
std::optional<bool> parse_bool(std::string_view s) {
    for (std::string_view t : {"1", "t", "T", "TRUE", "true", "True"})
        if (s == t) return true;
    for (std::string_view f : {"0", "f", "F", "FALSE", "false", "False"})
        if (s == f) return false;
    return std::nullopt;
}

std::optional<int64_t> parse_int(std::string_view s) {
    if (s.empty()) return std::nullopt;
    const std::string str(s);
    char* end = nullptr;
    errno = 0;
    const long long v = std::strtoll(str.c_str(), &end, 10);
    if (errno != 0 || end != str.c_str() + str.size()) return std::nullopt;
    return (int64_t)v;
}

std::optional<double> parse_number(std::string_view s) {
    if (s.empty() || is_blank(s.front())) return std::nullopt;
    const std::string str(s);
    char* end = nullptr;
    errno = 0;
    const double v = std::strtod(str.c_str(), &end);
    if (errno != 0 || end != str.c_str() + str.size() || !std::isfinite(v)) return std::nullopt;
    return v;
}

const char* type_name(ParamType t) {
    switch (t) {
    case ParamType::integer: return "an integer";
    case ParamType::number: return "a number";
    case ParamType::boolean: return "true or false";
    case ParamType::string_list: return "a string";
    }
    return "?";
}

bool is_semver(std::string_view v) {
    if (!v.empty() && v.front() == 'v') v.remove_prefix(1);
    int parts = 0;
    size_t i = 0;
    while (true) {
        const size_t start = i;
        while (i < v.size() && std::isdigit((unsigned char)v[i])) ++i;
        if (i == start) return false;
        ++parts;
        if (i == v.size() || v[i] == '-' || v[i] == '+') break;
        if (v[i] != '.' || parts == 3) return false;
        ++i;
    }
    return parts >= 1;
}

class Parser {
public:
    Parser(std::string_view text, std::string_view file) : s_(text), file_(file) {
        if (s_.substr(0, 3) == "\xEF\xBB\xBF") s_.remove_prefix(3);  // a UTF-8 byte order mark
    }

    Result<Modelfile> run() {
        Modelfile m;
        bool have_from = false;
        for (;;) {
            while (pos_ < s_.size() && (is_blank(s_[pos_]) || is_newline(s_[pos_]))) advance();
            if (pos_ >= s_.size()) break;
            if (s_[pos_] == '#') {
                while (pos_ < s_.size() && s_[pos_] != '\n') advance();
                continue;
            }
            const int line = line_;
            const size_t start = pos_;
            while (pos_ < s_.size() && !is_blank(s_[pos_]) && !is_newline(s_[pos_])) advance();
            const std::string word(s_.substr(start, pos_ - start));
            const std::string instr = lower(word);
            static const char* kKnown[] = {"from", "parameter", "template", "system", "message",
                                           "adapter", "license", "requires"};
            bool known = false;
            for (const char* k : kKnown) known |= instr == k;
            if (!known) {
                if (instr == "renderer" || instr == "parser" || instr == "draft")
                    return fail(line, word + " is not supported by hearth: " +
                                          (instr == "draft" ? std::string("draft models (speculative decoding) are not built yet")
                                                            : "it selects one of Ollama's built-in Go renderers; hearth renders "
                                                              "the model's Jinja chat template (set one with TEMPLATE)"));
                return fail(line, "unknown instruction \"" + word +
                                      "\" (expected FROM, PARAMETER, TEMPLATE, SYSTEM, MESSAGE, ADAPTER, LICENSE or REQUIRES)");
            }
            const std::string upper = [&] {
                std::string u = instr;
                for (char& c : u) c = (char)std::toupper((unsigned char)c);
                return u;
            }();
            if (pos_ >= s_.size() || is_newline(s_[pos_])) return fail(line, upper + " needs a value");
            skip_blanks();

            if (instr == "parameter") {
                const size_t ns = pos_;
                while (pos_ < s_.size() && (std::isalnum((unsigned char)s_[pos_]) || s_[pos_] == '_')) advance();
                const std::string name(s_.substr(ns, pos_ - ns));
                if (name.empty() || pos_ >= s_.size() || !is_blank(s_[pos_]))
                    return fail(line, "PARAMETER needs a name and a value (PARAMETER temperature 0.7)");
                skip_blanks();
                HEARTH_ASSIGN(std::string text, read_value(line, upper));
                auto v = parse_parameter_value(name, text);
                if (!v.ok()) return fail(line, v.status().message());
                const ParamSpec* spec = find_parameter(name);
                if (spec->type == ParamType::string_list) {
                    if (!m.parameters.contains(spec->name)) m.parameters[spec->name] = json::array();
                    for (const auto& x : *v) m.parameters[spec->name].push_back(x);
                } else {
                    m.parameters[spec->name] = *v;
                }
                continue;
            }
            if (instr == "message") {
                const size_t rs = pos_;
                while (pos_ < s_.size() && std::isalpha((unsigned char)s_[pos_])) advance();
                const std::string role(s_.substr(rs, pos_ - rs));
                if (role != "system" && role != "user" && role != "assistant")
                    return fail(line, "MESSAGE role must be one of \"system\", \"user\", or \"assistant\"" +
                                          (role.empty() ? std::string() : " (got \"" + role + "\")"));
                if (pos_ >= s_.size() || !is_blank(s_[pos_])) return fail(line, "MESSAGE needs a role and a text (MESSAGE user Hello)");
                skip_blanks();
                HEARTH_ASSIGN(std::string text, read_value(line, upper));
                m.messages.push_back({role, std::move(text)});
                continue;
            }
            HEARTH_ASSIGN(std::string text, read_value(line, upper));
            if (instr == "from") {
                if (text.empty()) return fail(line, "FROM needs a model name or a path");
                m.from = std::move(text);
                have_from = true;
            } else if (instr == "template") {
                m.template_text = std::move(text);
            } else if (instr == "system") {
                m.system = std::move(text);
            } else if (instr == "adapter") {
                if (text.empty()) return fail(line, "ADAPTER needs a path");
                m.adapters.push_back(std::move(text));
            } else if (instr == "license") {
                m.licenses.push_back(std::move(text));
            } else if (instr == "requires") {
                if (!is_semver(text)) return fail(line, "REQUIRES must be a version such as 0.14.0, got \"" + text + "\"");
                m.requires_version = text.front() == 'v' ? text.substr(1) : text;
            }
        }
        if (!have_from) return error(StatusCode::invalid_argument, std::string(file_) + ": no FROM line (FROM names the base model)");
        return m;
    }

private:
    void advance() {
        if (s_[pos_] == '\n') ++line_;
        ++pos_;
    }
    void skip_blanks() {
        while (pos_ < s_.size() && is_blank(s_[pos_])) ++pos_;
    }
    Status fail(int line, const std::string& msg) const {
        return error(StatusCode::invalid_argument, std::string(file_) + ":" + std::to_string(line) + ": " + msg);
    }
    // Blanks, then the end of a line or of the text, from `p`.
    bool closes_line(size_t p) const {
        while (p < s_.size() && is_blank(s_[p])) ++p;
        return p >= s_.size() || is_newline(s_[p]);
    }
    bool triple_at(size_t p) const { return s_.compare(p, 3, "\"\"\"") == 0; }

    Result<std::string> read_value(int line, const std::string& instr) {
        if (triple_at(pos_)) {
            pos_ += 3;
            std::string out;
            while (pos_ < s_.size()) {
                if (s_[pos_] == '\\') {
                    size_t j = pos_;
                    while (j < s_.size() && s_[j] == '\\') ++j;
                    const size_t run = j - pos_;
                    if (!triple_at(j)) {
                        out.append(s_.substr(pos_, run));
                        pos_ = j;
                        continue;
                    }
                    out.append(run / 2, '\\');
                    pos_ = j;
                    if (run % 2 == 1) {  // an escaped """: text
                        out += "\"\"\"";
                        pos_ += 3;
                        continue;
                    }
                }
                if (triple_at(pos_) && closes_line(pos_ + 3)) {
                    pos_ += 3;
                    return out;
                }
                out += s_[pos_];
                advance();
            }
            return fail(line, instr + ": the \"\"\" string that starts here is not closed (a closing \"\"\" must end its line)");
        }
        if (pos_ < s_.size() && s_[pos_] == '"') {
            const size_t start = ++pos_;
            while (pos_ < s_.size()) {
                if (s_[pos_] == '"' && closes_line(pos_ + 1)) {
                    std::string out(s_.substr(start, pos_ - start));
                    ++pos_;
                    return out;
                }
                advance();
            }
            return fail(line, instr + ": the \" string that starts here is not closed (a closing \" must end its line)");
        }
        const size_t start = pos_;
        while (pos_ < s_.size() && !is_newline(s_[pos_])) ++pos_;
        return trim(s_.substr(start, pos_ - start));
    }

    std::string_view s_;
    std::string_view file_;
    size_t pos_ = 0;
    int line_ = 1;
};

// The body of a """ string that reads back as `text` (see modelfile.h): backslash runs that
// will stand before a """ are doubled, and each whole """ of a quote run is written \""".
std::string escape_triple(std::string_view text) {
    std::string out;
    size_t i = 0;
    auto quote_run_at = [&](size_t p) {
        size_t k = 0;
        while (p + k < text.size() && text[p + k] == '"') ++k;
        return k;
    };
    while (i < text.size()) {
        if (text[i] == '\\') {
            size_t j = i;
            while (j < text.size() && text[j] == '\\') ++j;
            const size_t k = quote_run_at(j);
            // Followed by an escaped """ (k >= 3) or by the closing """ (the run reaches the end).
            const bool before_triple = k >= 3 || j + k == text.size();
            out.append(before_triple ? 2 * (j - i) : j - i, '\\');
            i = j;
            continue;
        }
        if (text[i] == '"') {
            const size_t k = quote_run_at(i);
            for (size_t t = 0; t < k / 3; ++t) out += "\\\"\"\"";
            out.append(k % 3, '"');
            i += k;
            continue;
        }
        out += text[i++];
    }
    return out;
}

}  // namespace

const ParamSpec kParameters[] = {
    // sampling
    {"temperature", ParamType::number},
    {"top_k", ParamType::integer},
    {"top_p", ParamType::number},
    {"min_p", ParamType::number},
    {"typical_p", ParamType::number},
    {"repeat_penalty", ParamType::number},
    {"repeat_last_n", ParamType::integer},
    {"presence_penalty", ParamType::number},
    {"frequency_penalty", ParamType::number},
    {"seed", ParamType::integer},
    {"num_predict", ParamType::integer},
    {"num_keep", ParamType::integer},
    {"stop", ParamType::string_list},
    // load time
    {"num_ctx", ParamType::integer},
    {"num_batch", ParamType::integer},
    {"num_thread", ParamType::integer},
    {"num_gpu", ParamType::integer},
    {"main_gpu", ParamType::integer},
    {"use_mmap", ParamType::boolean},
    // accepted and type-checked, unused (Ollama's older options)
    {"num_gqa", ParamType::integer},
    {"rope_frequency_base", ParamType::number},
    {"rope_frequency_scale", ParamType::number},
    {"mirostat", ParamType::integer},
    {"mirostat_tau", ParamType::number},
    {"mirostat_eta", ParamType::number},
    {"tfs_z", ParamType::number},
    {"use_mlock", ParamType::boolean},
    {"numa", ParamType::boolean},
    {"low_vram", ParamType::boolean},
    {"f16_kv", ParamType::boolean},
    {"vocab_only", ParamType::boolean},
    {"logits_all", ParamType::boolean},
    {"penalize_newline", ParamType::boolean},
    {"embedding_only", ParamType::boolean},
};
const size_t kParameterCount = sizeof(kParameters) / sizeof(kParameters[0]);

const ParamSpec* find_parameter(std::string_view name) {
    for (const auto& p : kParameters)
        if (name == p.name) return &p;
    return nullptr;
}

Result<json> parse_parameter_value(std::string_view name, std::string_view text) {
    const ParamSpec* spec = find_parameter(name);
    if (!spec) return error(StatusCode::invalid_argument, "unknown parameter \"" + std::string(name) + "\"");
    auto bad = [&] {
        return error(StatusCode::invalid_argument, "PARAMETER " + std::string(name) + ": \"" + std::string(text) +
                                                       "\" is not " + type_name(spec->type));
    };
    switch (spec->type) {
    case ParamType::integer: {
        auto v = parse_int(text);
        if (!v) return bad();
        return json(*v);
    }
    case ParamType::number: {
        auto v = parse_number(text);
        if (!v) return bad();
        return json(*v);
    }
    case ParamType::boolean: {
        auto v = parse_bool(text);
        if (!v) return bad();
        return json(*v);
    }
    case ParamType::string_list: return json::array({std::string(text)});
    }
    return bad();
}

Result<json> normalize_parameter(std::string_view name, const json& v) {
    const ParamSpec* spec = find_parameter(name);
    if (!spec) return error(StatusCode::invalid_argument, "unknown parameter \"" + std::string(name) + "\"");
    if (v.is_string() && spec->type != ParamType::string_list) return parse_parameter_value(name, v.get<std::string>());
    auto bad = [&] {
        return error(StatusCode::invalid_argument,
                     "parameter \"" + std::string(name) + "\" must be " +
                         (spec->type == ParamType::string_list ? std::string("a string or a list of strings") : type_name(spec->type)));
    };
    switch (spec->type) {
    case ParamType::integer:
        if (v.is_number_integer()) return v;
        if (v.is_number_float() && std::isfinite(v.get<double>()) && v.get<double>() == std::trunc(v.get<double>()) &&
            std::fabs(v.get<double>()) < 9.2e18)
            return json((int64_t)v.get<double>());
        return bad();
    case ParamType::number:  // always a float, so 0 and 0.0 write the same params layer
        if (v.is_number() && std::isfinite(v.get<double>())) return json(v.get<double>());
        return bad();
    case ParamType::boolean:
        if (v.is_boolean()) return v;
        return bad();
    case ParamType::string_list:
        if (v.is_string()) return json::array({v});
        if (!v.is_array()) return bad();
        for (const auto& x : v)
            if (!x.is_string()) return bad();
        return v;
    }
    return bad();
}

Result<Modelfile> parse_modelfile(std::string_view text, std::string_view file_name) {
    return Parser(text, file_name).run();
}

std::string quote_modelfile_value(std::string_view text, bool force_triple) {
    const bool needs = text.empty() || text.find_first_of("\r\n") != std::string_view::npos || is_blank(text.front()) ||
                       is_blank(text.back()) || text.front() == '"';
    if (!force_triple && !needs) return std::string(text);
    if (!force_triple && text.find('"') == std::string_view::npos) return "\"" + std::string(text) + "\"";
    return "\"\"\"" + escape_triple(text) + "\"\"\"";
}

std::string format_modelfile(const Modelfile& m) {
    std::string out = "FROM " + quote_modelfile_value(m.from) + "\n";
    if (m.template_text) out += "TEMPLATE " + quote_modelfile_value(*m.template_text, true) + "\n";
    if (m.system) out += "SYSTEM " + quote_modelfile_value(*m.system, true) + "\n";
    for (const auto& [k, v] : m.parameters.items()) {
        const json items = v.is_array() ? v : json::array({v});
        for (const auto& x : items)
            out += "PARAMETER " + k + " " + (x.is_string() ? quote_modelfile_value(x.get<std::string>()) : x.dump()) + "\n";
    }
    for (const auto& msg : m.messages) out += "MESSAGE " + msg.role + " " + quote_modelfile_value(msg.content) + "\n";
    for (const auto& a : m.adapters) out += "ADAPTER " + quote_modelfile_value(a) + "\n";
    for (const auto& l : m.licenses) out += "LICENSE " + quote_modelfile_value(l, true) + "\n";
    if (!m.requires_version.empty()) out += "REQUIRES " + m.requires_version + "\n";
    return out;
}

}  // namespace hearth::store
