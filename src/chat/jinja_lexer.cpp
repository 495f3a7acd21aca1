#include "chat/jinja_lexer.h"

#include <cctype>
#include <cerrno>
#include <cstring>

#include "chat/jinja_pystr.h"

namespace hearth::chat::jinja {
namespace {

bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool is_name_char(char c) { return is_name_start(c) || is_digit(c); }

// Python's str.rstrip() on the data before a `{%-`.
size_t rstrip_end(const std::string& s, size_t b, size_t e) {
    while (e > b) {
        if (is_ws(s[e - 1])) {
            --e;
            continue;
        }
        // Multi-byte whitespace (U+00A0, U+2000.., U+3000): decode the last code point.
        size_t k = e - 1;
        while (k > b && (static_cast<unsigned char>(s[k]) & 0xC0) == 0x80) --k;
        const std::u32string u = py::decode(std::string_view(s).substr(k, e - k));
        if (u.size() == 1 && py::is_space(u[0])) {
            e = k;
            continue;
        }
        break;
    }
    return e;
}

class Lexer {
public:
    explicit Lexer(std::string src) : s_(std::move(src)) {}

    Result<std::vector<Token>> run() {
        bool line_starting = true;
        while (pos_ < s_.size()) {
            const size_t tag = find_tag(pos_);
            if (tag == std::string::npos) {
                emit_data(pos_, s_.size());
                advance_to(s_.size());
                break;
            }
            const char kind = s_[tag + 1];  // '{', '%' or '#'
            const char sign = tag + 2 < s_.size() ? s_[tag + 2] : '\0';
            size_t data_end = tag;
            if (sign == '-') {
                data_end = rstrip_end(s_, pos_, tag);
            } else if (sign != '+' && kind != '{') {
                // lstrip_blocks: drop spaces/tabs between the last newline and the tag.
                size_t l = tag;
                while (l > pos_ && (s_[l - 1] == ' ' || s_[l - 1] == '\t')) --l;
                const bool at_newline = l > pos_ && s_[l - 1] == '\n';
                if (at_newline || (l == pos_ && line_starting)) data_end = l;
            }
            emit_data(pos_, data_end);
            advance_to(tag);
            const size_t after_open = tag + 2 + ((sign == '-' || sign == '+') ? 1 : 0);
            const int tag_line = line_, tag_col = col_;
            size_t raw_end = 0;
            if (kind == '%' && match_raw_tag(after_open, "raw", raw_end)) {
                advance_to(raw_end);
                HEARTH_TRY(lex_raw(tag_line, tag_col, line_starting));
                continue;
            }
            advance_to(after_open);
            size_t end = 0;
            if (kind == '#') {
                HEARTH_ASSIGN(end, lex_comment(tag_line, tag_col));
            } else {
                push(kind == '{' ? Tok::var_begin : Tok::block_begin, kind == '{' ? "{{" : "{%", tag_line, tag_col);
                HEARTH_ASSIGN(end, lex_tag(kind == '{'));
            }
            line_starting = end > 0 && s_[end - 1] == '\n';
            advance_to(end);
        }
        push(Tok::eof, "", line_, col_);
        return std::move(tokens_);
    }

private:
    size_t find_tag(size_t from) const {
        size_t p = from;
        while ((p = s_.find('{', p)) != std::string::npos) {
            if (p + 1 < s_.size() && (s_[p + 1] == '{' || s_[p + 1] == '%' || s_[p + 1] == '#')) return p;
            ++p;
        }
        return std::string::npos;
    }

    // At `p` (just after "{%", "{%-" or "{%+"): `\s*word\s*` and the tag end. On a match, `end`
    // is the position after it: "-%}" eats the whitespace after it; for "endraw", "%}" eats one
    // newline (trim_blocks) and "+%}" nothing.
    bool match_raw_tag(size_t p, const char* word, size_t& end) const {
        while (p < s_.size() && is_ws(s_[p])) ++p;
        const size_t n = std::strlen(word);
        if (s_.compare(p, n, word) != 0) return false;
        p += n;
        if (p < s_.size() && is_name_char(s_[p])) return false;
        while (p < s_.size() && is_ws(s_[p])) ++p;
        const bool is_end = std::strcmp(word, "endraw") == 0;
        if (is_end && s_.compare(p, 3, "+%}") == 0) {
            end = p + 3;
            return true;
        }
        if (s_.compare(p, 3, "-%}") == 0) {
            end = p + 3;
            while (end < s_.size() && is_ws(s_[end])) ++end;
            return true;
        }
        if (s_.compare(p, 2, "%}") == 0) {
            end = p + 2;
            if (is_end && end < s_.size() && s_[end] == '\n') ++end;
            return true;
        }
        return false;
    }

    // {% raw %}...{% endraw %}: the text in between is data, whitespace-controlled like any text
    // before a block tag.
    Status lex_raw(int line, int col, bool& line_starting) {
        line_starting = pos_ > 0 && s_[pos_ - 1] == '\n';
        size_t p = pos_;
        while (true) {
            const size_t tag = s_.find("{%", p);
            if (tag == std::string::npos)
                return error(StatusCode::invalid_argument, strformat("line %d, column %d: missing end of raw directive", line, col));
            const char sign = tag + 2 < s_.size() ? s_[tag + 2] : '\0';
            const size_t after_open = tag + 2 + ((sign == '-' || sign == '+') ? 1 : 0);
            size_t end = 0;
            if (!match_raw_tag(after_open, "endraw", end)) {
                p = tag + 2;
                continue;
            }
            size_t data_end = tag;
            if (sign == '-') {
                data_end = rstrip_end(s_, pos_, tag);
            } else if (sign != '+') {
                size_t l = tag;
                while (l > pos_ && (s_[l - 1] == ' ' || s_[l - 1] == '\t')) --l;
                if ((l > pos_ && s_[l - 1] == '\n') || (l == pos_ && line_starting)) data_end = l;
            }
            emit_data(pos_, data_end);
            advance_to(end);
            line_starting = end > 0 && s_[end - 1] == '\n';
            return Status::ok_status();
        }
    }

    void advance_to(size_t p) {
        for (; pos_ < p; ++pos_) {
            if (s_[pos_] == '\n') {
                ++line_;
                col_ = 1;
            } else if ((static_cast<unsigned char>(s_[pos_]) & 0xC0) != 0x80) {
                ++col_;
            }
        }
    }

    void emit_data(size_t b, size_t e) {
        if (e > b) push(Tok::data, s_.substr(b, e - b), line_, col_);
    }

    void push(Tok t, std::string text, int line, int col) {
        Token tok;
        tok.type = t;
        tok.text = std::move(text);
        tok.line = line;
        tok.column = col;
        tokens_.push_back(std::move(tok));
    }

    Status fail(const std::string& msg) const { return error(StatusCode::invalid_argument, strformat("line %d, column %d: %s", line_, col_, msg.c_str())); }

    // Returns the position just after the comment's end (and its trimmed whitespace).
    Result<size_t> lex_comment(int line, int col) {
        while (true) {
            const size_t f = s_.find("#}", pos_);
            if (f == std::string::npos)
                return error(StatusCode::invalid_argument, strformat("line %d, column %d: missing end of comment tag", line, col));
            // The lazy match stops at the first of "+#}", "-#}\s*", "#}\n?" that starts earliest.
            if (f > pos_ && s_[f - 1] == '-') {
                size_t e = f + 2;
                while (e < s_.size() && is_ws(s_[e])) ++e;
                return e;
            }
            if (f > pos_ && s_[f - 1] == '+') return f + 2;
            size_t e = f + 2;
            if (e < s_.size() && s_[e] == '\n') ++e;
            return e;
        }
    }

    // Lexes the inside of {{ ... }} or {% ... %}; returns the position after the end tag.
    Result<size_t> lex_tag(bool variable) {
        std::vector<char> balance;  // open brackets: the end tag only counts outside them
        const char close = variable ? '}' : '%';
        while (true) {
            if (pos_ >= s_.size()) return fail(variable ? "unexpected end of template, expected '}}'" : "unexpected end of template, expected '%}'");
            const char c = s_[pos_];
            if (balance.empty()) {
                // "+%}" (block only), "-%}\s*" / "-}}\s*", "%}\n?" / "}}".
                if (!variable && c == '+' && s_.compare(pos_ + 1, 2, "%}") == 0) {
                    push(Tok::block_end, "%}", line_, col_);
                    return pos_ + 3;
                }
                if (c == '-' && pos_ + 2 < s_.size() && s_[pos_ + 1] == close && s_[pos_ + 2] == '}') {
                    push(variable ? Tok::var_end : Tok::block_end, variable ? "}}" : "%}", line_, col_);
                    size_t e = pos_ + 3;
                    while (e < s_.size() && is_ws(s_[e])) ++e;
                    return e;
                }
                if (c == close && pos_ + 1 < s_.size() && s_[pos_ + 1] == '}') {
                    push(variable ? Tok::var_end : Tok::block_end, variable ? "}}" : "%}", line_, col_);
                    size_t e = pos_ + 2;
                    if (!variable && e < s_.size() && s_[e] == '\n') ++e;
                    return e;
                }
            }
            if (is_ws(c)) {
                advance_to(pos_ + 1);
                continue;
            }
            const int line = line_, col = col_;
            if (is_digit(c)) {
                HEARTH_TRY(lex_number(line, col));
                continue;
            }
            if (is_name_start(c)) {
                size_t e = pos_;
                while (e < s_.size() && is_name_char(s_[e])) ++e;
                push(Tok::name, s_.substr(pos_, e - pos_), line, col);
                advance_to(e);
                continue;
            }
            if (c == '\'' || c == '"') {
                HEARTH_TRY(lex_string(line, col));
                continue;
            }
            static const char* const kOps2[] = {"//", "**", "==", "!=", ">=", "<="};
            std::string op;
            for (const char* o : kOps2)
                if (s_.compare(pos_, 2, o) == 0) op = o;
            if (op.empty()) {
                if (!std::strchr("+-/*%~[](){}><=.:|,;", c)) return fail(std::string("unexpected char '") + c + "'");
                op = std::string(1, c);
            }
            if (op == "(" || op == "[" || op == "{") {
                balance.push_back(op[0]);
            } else if (op == ")" || op == "]" || op == "}") {
                const char want = op == ")" ? '(' : op == "]" ? '[' : '{';
                if (balance.empty()) return fail("unexpected '" + op + "'");
                if (balance.back() != want) return fail("unexpected '" + op + "', expected '" + std::string(1, balance.back() == '(' ? ')' : balance.back() == '[' ? ']' : '}') + "'");
                balance.pop_back();
            }
            push(Tok::op, op, line, col);
            advance_to(pos_ + op.size());
        }
    }

    Status lex_number(int line, int col) {
        size_t e = pos_;
        auto digits = [&](size_t p) {  // (\d+_)*\d+
            size_t q = p;
            while (q < s_.size() && (is_digit(s_[q]) || (s_[q] == '_' && q + 1 < s_.size() && is_digit(s_[q + 1]) && q > p))) ++q;
            return q;
        };
        if (s_[pos_] == '0' && pos_ + 1 < s_.size() && s_[pos_ + 1] != '\0' && std::strchr("xXoObB", s_[pos_ + 1])) {
            const char b = char(s_[pos_ + 1] | 0x20);
            const int base = b == 'x' ? 16 : b == 'o' ? 8 : 2;
            e = pos_ + 2;
            std::string digs;
            while (e < s_.size() && (std::isxdigit(static_cast<unsigned char>(s_[e])) || s_[e] == '_')) {
                if (s_[e] != '_') digs.push_back(s_[e]);
                ++e;
            }
            Token t;
            t.type = Tok::integer;
            t.int_value = int64_t(std::strtoull(digs.c_str(), nullptr, base));
            t.line = line;
            t.column = col;
            tokens_.push_back(t);
            advance_to(e);
            return Status::ok_status();
        }
        e = digits(pos_);
        bool is_float = false;
        const bool after_dot = pos_ > 0 && s_[pos_ - 1] == '.';  // jinja2: (?<!\.) before a float
        if (!after_dot && e + 1 < s_.size() && s_[e] == '.' && is_digit(s_[e + 1])) {
            e = digits(e + 1);
            is_float = true;
        }
        if (!after_dot && e < s_.size() && (s_[e] == 'e' || s_[e] == 'E')) {
            size_t q = e + 1;
            if (q < s_.size() && (s_[q] == '+' || s_[q] == '-')) ++q;
            if (q < s_.size() && is_digit(s_[q])) {
                e = digits(q);
                is_float = true;
            }
        }
        std::string text;
        for (size_t i = pos_; i < e; ++i)
            if (s_[i] != '_') text.push_back(s_[i]);
        Token t;
        t.type = is_float ? Tok::floating : Tok::integer;
        t.text = text;
        t.line = line;
        t.column = col;
        if (is_float) {
            t.float_value = std::strtod(text.c_str(), nullptr);
        } else {
            errno = 0;
            t.int_value = int64_t(std::strtoll(text.c_str(), nullptr, 10));
            if (errno == ERANGE) return fail("integer literal too large");
        }
        tokens_.push_back(t);
        advance_to(e);
        return Status::ok_status();
    }

    Status lex_string(int line, int col) {
        const char q = s_[pos_];
        size_t e = pos_ + 1;
        std::string out;
        while (true) {
            if (e >= s_.size()) return fail("unexpected end of string");
            const char c = s_[e];
            if (c == q) break;
            if (c != '\\') {
                out.push_back(c);
                ++e;
                continue;
            }
            if (e + 1 >= s_.size()) return fail("unexpected end of string");
            const char n = s_[e + 1];
            e += 2;
            auto hex = [&](int count) -> Status {
                if (e + size_t(count) > s_.size()) return fail("truncated \\x/\\u escape in string");
                uint32_t v = 0;
                for (int i = 0; i < count; ++i) {
                    const char h = s_[e + size_t(i)];
                    if (!std::isxdigit(static_cast<unsigned char>(h))) return fail("truncated \\x/\\u escape in string");
                    v = v * 16 + uint32_t(std::isdigit(static_cast<unsigned char>(h)) ? h - '0' : (h | 0x20) - 'a' + 10);
                }
                e += size_t(count);
                py::append_utf8(out, char32_t(v));
                return Status::ok_status();
            };
            switch (n) {
            case '\n': break;
            case '\\': out.push_back('\\'); break;
            case '\'': out.push_back('\''); break;
            case '"': out.push_back('"'); break;
            case 'a': out.push_back('\a'); break;
            case 'b': out.push_back('\b'); break;
            case 'f': out.push_back('\f'); break;
            case 'n': out.push_back('\n'); break;
            case 'r': out.push_back('\r'); break;
            case 't': out.push_back('\t'); break;
            case 'v': out.push_back('\v'); break;
            case 'x': HEARTH_TRY(hex(2)); break;
            case 'u': HEARTH_TRY(hex(4)); break;
            case 'U': HEARTH_TRY(hex(8)); break;
            default:
                if (n >= '0' && n <= '7') {
                    uint32_t v = uint32_t(n - '0');
                    for (int i = 0; i < 2 && e < s_.size() && s_[e] >= '0' && s_[e] <= '7'; ++i, ++e) v = v * 8 + uint32_t(s_[e] - '0');
                    py::append_utf8(out, char32_t(v));
                } else {  // unknown escapes stay as written
                    out.push_back('\\');
                    out.push_back(n);
                }
            }
        }
        Token t;
        t.type = Tok::string;
        t.text = std::move(out);
        t.line = line;
        t.column = col;
        tokens_.push_back(std::move(t));
        advance_to(e + 1);
        return Status::ok_status();
    }

    std::string s_;
    size_t pos_ = 0;
    int line_ = 1, col_ = 1;
    std::vector<Token> tokens_;
};

}  // namespace

Result<std::vector<Token>> tokenize(const std::string& source) {
    std::string s;
    s.reserve(source.size());
    for (size_t i = 0; i < source.size(); ++i) {
        if (source[i] == '\r') {
            s.push_back('\n');
            if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
        } else {
            s.push_back(source[i]);
        }
    }
    if (!s.empty() && s.back() == '\n') s.pop_back();
    return Lexer(std::move(s)).run();
}

}  // namespace hearth::chat::jinja
