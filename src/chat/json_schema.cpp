#include "chat/json_schema.h"

#include <algorithm>
#include <cmath>
#include <regex>

#include "chat/grammar.h"

namespace hearth::chat {

namespace {

constexpr int64_t kMaxInt = 9999999999999999;  // 16 digits, the grammar's integer limit

const std::set<std::string>& annotations() {
    static const std::set<std::string> k = {"title",    "description", "default",  "examples", "$schema",
                                            "$id",      "$comment",    "deprecated", "readOnly", "writeOnly",
                                            "$defs",    "definitions", "nullable"};
    return k;
}

const std::set<std::string>& keywords_of(const std::string& type) {
    static const std::set<std::string> object = {"properties", "required", "additionalProperties"};
    static const std::set<std::string> array = {"items", "prefixItems", "minItems", "maxItems"};
    static const std::set<std::string> string = {"minLength", "maxLength", "pattern", "format"};
    static const std::set<std::string> number = {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"};
    static const std::set<std::string> none;
    if (type == "object") return object;
    if (type == "array") return array;
    if (type == "string") return string;
    if (type == "number" || type == "integer") return number;
    return none;
}

std::string hex2(uint32_t v) { return strformat("%02X", v); }

// A GBNF string literal for the UTF-8 bytes of `s`.
std::string literal(const std::string& s) {
    std::string out = "\"";
    for (unsigned char c : s) {
        if (c == '"') out += "\\\"";
        else if (c == '\\') out += "\\\\";
        else if (c < 0x20 || c == 0x7F) out += "\\x" + hex2(c);
        else out += static_cast<char>(c);
    }
    return out + "\"";
}

// One code point inside a GBNF character class.
std::string class_char(uint32_t cp) {
    if (cp < 0x20 || cp == 0x7F) return "\\x" + hex2(cp);
    if (cp == ']' || cp == '[' || cp == '\\' || cp == '^' || cp == '-' || cp == '"') return std::string("\\") + static_cast<char>(cp);
    if (cp < 0x80) return std::string(1, static_cast<char>(cp));
    return strformat("\\U%08X", cp);
}

std::string sanitize(const std::string& s) {
    std::string out;
    for (char c : s) out += (std::isalnum(static_cast<unsigned char>(c)) || c == '-') ? c : '-';
    if (out.empty()) out = "x";
    return out.substr(0, 40);
}

Status unsupported(const std::string& path, const std::string& what) {
    return error(StatusCode::unsupported, what + " at " + (path.empty() ? "/" : path));
}

bool is_integral(double v) { return std::isfinite(v) && std::floor(v) == v; }

// ---- integer ranges as digit patterns ----

std::string all_digits(char d, size_t n) { return std::string(n, d); }

// Exactly x.size()-digit strings in [x, y] (equal lengths, x <= y; leading zeros are digits).
std::string same_length_range(const std::string& x, const std::string& y) {
    const size_t d = x.size();
    if (d == 0) return "";
    if (x == y) return literal(x);
    if (d == 1) return strformat("[%c-%c]", x[0], y[0]);
    const std::string xt = x.substr(1), yt = y.substr(1);
    if (x[0] == y[0]) return literal(std::string(1, x[0])) + " (" + same_length_range(xt, yt) + ")";
    if (xt == all_digits('0', d - 1) && yt == all_digits('9', d - 1))
        return strformat("[%c-%c] [0-9]{%zu}", x[0], y[0], d - 1);
    std::vector<std::string> alts;
    alts.push_back(literal(std::string(1, x[0])) + " (" + same_length_range(xt, all_digits('9', d - 1)) + ")");
    if (x[0] + 1 <= y[0] - 1) alts.push_back(strformat("[%c-%c] [0-9]{%zu}", x[0] + 1, y[0] - 1, d - 1));
    alts.push_back(literal(std::string(1, y[0])) + " (" + same_length_range(all_digits('0', d - 1), yt) + ")");
    std::string out;
    for (size_t k = 0; k < alts.size(); ++k) out += (k ? " | " : "") + alts[k];
    return out;
}

// Decimal numerals (no leading zeros) of the integers in [lo, hi], 0 <= lo <= hi.
std::string uint_range(int64_t lo, int64_t hi) {
    std::vector<std::string> alts;
    int64_t p = 1;  // 10^(d-1)
    for (size_t d = 1; d <= 16; ++d, p *= 10) {
        const int64_t first = d == 1 ? 0 : p, last = p * 10 - 1;
        const int64_t a = std::max(lo, first), b = std::min(hi, last);
        if (a > b) continue;
        std::string alt = "(";
        alt += same_length_range(std::to_string(a), std::to_string(b));
        alt += ")";
        alts.push_back(std::move(alt));
    }
    std::string out;
    for (size_t k = 0; k < alts.size(); ++k) out += (k ? " | " : "") + alts[k];
    return out;
}

std::string int_range(int64_t lo, int64_t hi) {
    std::vector<std::string> alts;
    if (hi >= 0) alts.push_back(uint_range(std::max<int64_t>(lo, 0), hi));
    if (lo < 0) alts.push_back("\"-\" (" + uint_range(std::max<int64_t>(1, hi < 0 ? -hi : 1), -lo) + ")");
    std::string out;
    for (size_t k = 0; k < alts.size(); ++k) out += std::string(k ? " | " : "") + "(" + alts[k] + ")";
    return out;
}

// ---- regex (ECMAScript subset) to GBNF over JSON-encoded characters ----

using Ranges = std::vector<std::pair<uint32_t, uint32_t>>;

Ranges merge_ranges(Ranges r) {
    std::sort(r.begin(), r.end());
    Ranges m;
    for (auto [a, b] : r) {
        if (!m.empty() && a <= m.back().second + 1) m.back().second = std::max(m.back().second, b);
        else m.push_back({a, b});
    }
    return m;
}

Ranges complement(const Ranges& r0) {
    Ranges r = merge_ranges(r0), out;
    uint32_t next = 0;
    for (auto [a, b] : r) {
        if (a > next) out.push_back({next, a - 1});
        next = b + 1;
    }
    if (next <= 0x10FFFF) out.push_back({next, 0x10FFFF});
    return out;
}

bool in_ranges(const Ranges& r, uint32_t cp) {
    for (auto [a, b] : r)
        if (cp >= a && cp <= b) return true;
    return false;
}

// The JSON encodings of the code points in `set`, as one GBNF expression.
std::string json_chars(const Ranges& set0) {
    const Ranges set = merge_ranges(set0);
    std::vector<std::string> alts;
    // Plain characters: the set minus '"', '\\' and controls.
    Ranges plain;
    for (auto [a, b] : set) {
        uint32_t lo = std::max<uint32_t>(a, 0x20);
        if (lo > b) continue;
        plain.push_back({lo, b});
    }
    Ranges cut;
    for (auto [a, b] : plain) {
        for (uint32_t ex : {uint32_t{'"'}, uint32_t{'\\'}}) {
            if (ex >= a && ex <= b) {
                if (ex > a) cut.push_back({a, ex - 1});
                a = ex + 1;
            }
        }
        if (a <= b) cut.push_back({a, b});
    }
    cut = merge_ranges(cut);
    if (!cut.empty()) {
        std::string cls = "[";
        for (auto [a, b] : cut) cls += a == b ? class_char(a) : class_char(a) + "-" + class_char(b);
        alts.push_back(cls + "]");
    }
    if (in_ranges(set, '"')) alts.push_back("\"\\\\\\\"\"");
    if (in_ranges(set, '\\')) alts.push_back("\"\\\\\\\\\"");
    for (uint32_t c = 0; c < 0x20; ++c) {
        if (!in_ranges(set, c)) continue;
        const char* short_esc = c == '\n' ? "n" : c == '\r' ? "r" : c == '\t' ? "t" : c == 8 ? "b" : c == 12 ? "f" : nullptr;
        alts.push_back(short_esc ? std::string("\"\\\\") + short_esc + "\"" : strformat("\"\\\\u00%02x\"", c));
    }
    if (alts.empty()) return "";
    if (alts.size() == 1) return alts[0];
    std::string out = "(";
    for (size_t k = 0; k < alts.size(); ++k) out += (k ? " | " : "") + alts[k];
    return out + ")";
}

class RegexConverter {
public:
    explicit RegexConverter(const std::string& p) : p_(p) {}

    Result<std::string> convert() {
        bool anchored_start = false, anchored_end = false;
        if (!p_.empty() && p_[0] == '^') anchored_start = true, i_ = 1;
        size_t end = p_.size();
        if (end > i_ && p_[end - 1] == '$' && (end < 2 || p_[end - 2] != '\\')) anchored_end = true, --end;
        end_ = end;
        HEARTH_ASSIGN(std::string expr, alternation());
        if (i_ != end_) return err("unbalanced ')'");
        const std::string any = "(" + json_chars({{0, 0x10FFFF}}) + ")*";
        return (anchored_start ? "" : any + " ") + "(" + expr + ")" + (anchored_end ? "" : " " + any);
    }

private:
    Status err(const std::string& what) const {
        return error(StatusCode::unsupported, "pattern \"" + p_ + "\": " + what);
    }
    bool eof() const { return i_ >= end_; }

    Result<std::string> alternation() {
        std::string out;
        HEARTH_ASSIGN(std::string first, sequence());
        out = "(" + first + ")";
        while (!eof() && p_[i_] == '|') {
            ++i_;
            HEARTH_ASSIGN(std::string next, sequence());
            out += " | (" + next + ")";
        }
        return out;
    }

    Result<std::string> sequence() {
        std::string out;
        while (!eof() && p_[i_] != '|' && p_[i_] != ')') {
            HEARTH_ASSIGN(std::string a, atom());
            // quantifier
            if (!eof()) {
                const char q = p_[i_];
                std::string suffix;
                if (q == '*' || q == '+' || q == '?') {
                    suffix = std::string(1, q);
                    ++i_;
                } else if (q == '{') {
                    size_t close = p_.find('}', i_);
                    if (close == std::string::npos || close >= end_) return err("unterminated {m,n}");
                    const std::string inner = p_.substr(i_ + 1, close - i_ - 1);
                    if (inner.empty() || inner.find_first_not_of("0123456789,") != std::string::npos)
                        return err("bad repetition {" + inner + "}");
                    suffix = "{" + inner + "}";
                    i_ = close + 1;
                }
                if (!suffix.empty()) {
                    if (!eof() && p_[i_] == '?') ++i_;  // lazy: same language
                    a = "(" + a + ")" + suffix;
                }
            }
            out += (out.empty() ? "" : " ") + a;
        }
        return out.empty() ? std::string("\"\"") : out;
    }

    // A class escape (\d \w \s and negations) or a single escaped code point.
    Result<Ranges> escape() {
        ++i_;  // the backslash
        if (eof()) return err("trailing backslash");
        const char c = p_[i_++];
        const Ranges digit = {{'0', '9'}}, word = {{'0', '9'}, {'A', 'Z'}, {'_', '_'}, {'a', 'z'}},
                     space = {{'\t', '\r'}, {' ', ' '}, {0xA0, 0xA0}, {0x2028, 0x2029}, {0xFEFF, 0xFEFF}};
        switch (c) {
            case 'd': return digit;
            case 'D': return complement(digit);
            case 'w': return word;
            case 'W': return complement(word);
            case 's': return space;
            case 'S': return complement(space);
            case 'n': return Ranges{{'\n', '\n'}};
            case 'r': return Ranges{{'\r', '\r'}};
            case 't': return Ranges{{'\t', '\t'}};
            case 'f': return Ranges{{12, 12}};
            case 'v': return Ranges{{11, 11}};
            case '0': return Ranges{{0, 0}};
            case 'x': case 'u': {
                const int n = c == 'x' ? 2 : 4;
                uint32_t v = 0;
                for (int k = 0; k < n; ++k, ++i_) {
                    const char h = i_ < end_ ? p_[i_] : 'g';
                    const int d = h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10 : h >= 'A' && h <= 'F' ? h - 'A' + 10 : -1;
                    if (d < 0) return err("bad \\" + std::string(1, c) + " escape");
                    v = v * 16 + static_cast<uint32_t>(d);
                }
                return Ranges{{v, v}};
            }
            case 'b': case 'B': return err("word boundaries (\\b) are not supported");
            default:
                if (c >= '1' && c <= '9') return err("back-references are not supported");
                if (std::isalnum(static_cast<unsigned char>(c))) return err(std::string("unknown escape \\") + c);
                return Ranges{{static_cast<unsigned char>(c), static_cast<unsigned char>(c)}};
        }
    }

    Result<uint32_t> utf8_char() {
        const unsigned char c = static_cast<unsigned char>(p_[i_]);
        int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (len == 0 || i_ + len > end_) return err("invalid UTF-8");
        uint32_t v = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
        for (int k = 1; k < len; ++k) v = (v << 6) | (static_cast<unsigned char>(p_[i_ + k]) & 0x3F);
        i_ += len;
        return v;
    }

    Result<std::string> atom() {
        const char c = p_[i_];
        if (c == '(') {
            ++i_;
            if (p_.compare(i_, 2, "?:") == 0) i_ += 2;
            else if (!eof() && p_[i_] == '?') return err("look-around and named groups are not supported");
            HEARTH_ASSIGN(std::string inner, alternation());
            if (eof() || p_[i_] != ')') return err("missing ')'");
            ++i_;
            return "(" + inner + ")";
        }
        if (c == '[') {
            ++i_;
            bool negated = false;
            if (!eof() && p_[i_] == '^') negated = true, ++i_;
            Ranges set;
            bool first = true;
            while (!eof() && (p_[i_] != ']' || first)) {
                first = false;
                Ranges item;
                if (p_[i_] == '\\') {
                    HEARTH_ASSIGN(item, escape());
                } else {
                    HEARTH_ASSIGN(uint32_t cp, utf8_char());
                    item = {{cp, cp}};
                }
                if (item.size() == 1 && item[0].first == item[0].second && i_ + 1 < end_ && p_[i_] == '-' &&
                    p_[i_ + 1] != ']') {
                    ++i_;
                    Ranges hi;
                    if (p_[i_] == '\\') {
                        HEARTH_ASSIGN(hi, escape());
                    } else {
                        HEARTH_ASSIGN(uint32_t cp, utf8_char());
                        hi = {{cp, cp}};
                    }
                    if (hi.size() != 1 || hi[0].first != hi[0].second || hi[0].first < item[0].first)
                        return err("bad character range");
                    item = {{item[0].first, hi[0].first}};
                }
                set.insert(set.end(), item.begin(), item.end());
            }
            if (eof()) return err("unterminated character class");
            ++i_;
            if (negated) set = complement(set);
            std::string e = json_chars(set);
            if (e.empty()) return err("empty character class");
            return e;
        }
        if (c == '.') {
            ++i_;
            return json_chars(complement({{'\n', '\n'}, {'\r', '\r'}, {0x2028, 0x2029}}));
        }
        if (c == '\\') {
            HEARTH_ASSIGN(Ranges r, escape());
            return json_chars(r);
        }
        if (c == '^' || c == '$') return err("anchors are supported only at the start and the end");
        if (c == '*' || c == '+' || c == '?' || c == '{') return err("quantifier without an operand");
        HEARTH_ASSIGN(uint32_t cp, utf8_char());
        return json_chars({{cp, cp}});
    }

    std::string p_;
    size_t i_ = 0, end_ = 0;
};

// Formats, as GBNF over the string content and as regexes for validation.
struct FormatDef {
    const char* name;
    const char* gbnf;
    const char* regex;
};
const FormatDef kFormats[] = {
    {"date", "[0-9]{4} \"-\" (\"0\" [1-9] | \"1\" [0-2]) \"-\" (\"0\" [1-9] | [12] [0-9] | \"3\" [01])",
     R"(^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$)"},
    {"time",
     "([01] [0-9] | \"2\" [0-3]) \":\" [0-5] [0-9] \":\" [0-5] [0-9] (\".\" [0-9]{1,6})? (\"Z\" | [+-] ([01] [0-9] | \"2\" "
     "[0-3]) \":\" [0-5] [0-9])",
     R"(^([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{1,9})?(Z|z|[+-]([01]\d|2[0-3]):[0-5]\d)$)"},
    {"date-time",
     "[0-9]{4} \"-\" (\"0\" [1-9] | \"1\" [0-2]) \"-\" (\"0\" [1-9] | [12] [0-9] | \"3\" [01]) \"T\" ([01] [0-9] | \"2\" "
     "[0-3]) \":\" [0-5] [0-9] \":\" [0-5] [0-9] (\".\" [0-9]{1,6})? (\"Z\" | [+-] ([01] [0-9] | \"2\" [0-3]) \":\" [0-5] "
     "[0-9])",
     R"(^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])[Tt ]([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{1,9})?(Z|z|[+-]([01]\d|2[0-3]):[0-5]\d)$)"},
    {"uuid", "[0-9a-f]{8} \"-\" [0-9a-f]{4} \"-\" [0-9a-f]{4} \"-\" [0-9a-f]{4} \"-\" [0-9a-f]{12}",
     R"(^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$)"},
    {"email", "[A-Za-z0-9._%+-]{1,64} \"@\" [A-Za-z0-9-]{1,63} (\".\" [A-Za-z0-9-]{1,63}){1,4}",
     R"(^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$)"},
    {"ipv4",
     "(\"25\" [0-5] | \"2\" [0-4] [0-9] | \"1\" [0-9] [0-9] | [1-9]? [0-9]) (\".\" (\"25\" [0-5] | \"2\" [0-4] [0-9] | \"1\" "
     "[0-9] [0-9] | [1-9]? [0-9])){3}",
     R"(^((25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$)"},
    {"uri", "[a-zA-Z] [a-zA-Z0-9+.-]{0,15} \":\" [A-Za-z0-9._~:/?#@!$&'()*+,;=%-]{1,200}",
     R"(^[a-zA-Z][a-zA-Z0-9+.-]*:[^\s]+$)"},
};

const FormatDef* find_format(const std::string& f) {
    for (const FormatDef& d : kFormats)
        if (f == d.name) return &d;
    return nullptr;
}

// Resolves a local $ref ("#" or "#/a/b") against the root schema.
Result<const Json*> resolve_ref(const Json& root, const std::string& ref, const std::string& path) {
    if (ref.empty() || ref[0] != '#') return unsupported(path, "$ref \"" + ref + "\" (only local references \"#...\")");
    if (ref == "#") return &root;
    if (ref.size() < 2 || ref[1] != '/') return unsupported(path, "$ref \"" + ref + "\" (anchors are not supported)");
    const Json* cur = &root;
    size_t i = 2;
    while (true) {
        size_t j = ref.find('/', i);
        std::string tok = ref.substr(i, j == std::string::npos ? std::string::npos : j - i);
        std::string t;
        for (size_t k = 0; k < tok.size(); ++k) {
            if (tok[k] == '~' && k + 1 < tok.size()) t += tok[++k] == '1' ? '/' : '~';
            else if (tok[k] == '%' && k + 2 < tok.size() && std::isxdigit(static_cast<unsigned char>(tok[k + 1])) &&
                     std::isxdigit(static_cast<unsigned char>(tok[k + 2])))
                t += static_cast<char>(std::stoi(tok.substr(k + 1, 2), nullptr, 16)), k += 2;
            else t += tok[k];
        }
        if (cur->is_object() && cur->contains(t)) cur = &(*cur)[t];
        else if (cur->is_array() && !t.empty() && t.size() < 9 && t.find_first_not_of("0123456789") == std::string::npos &&
                 std::stoul(t) < cur->size())
            cur = &(*cur)[std::stoul(t)];
        else return error(StatusCode::invalid_argument, "$ref \"" + ref + "\" at " + path + " points at nothing");
        if (j == std::string::npos) break;
        i = j + 1;
    }
    return cur;
}

// Inward-rounded integer bounds of a number/integer schema. Returns false when the range is empty.
struct Bounds {
    bool has_lo = false, has_hi = false;
    int64_t lo = -kMaxInt, hi = kMaxInt;
    bool lo_excl = false, hi_excl = false;  // numbers only: integer bound itself excluded
};

Result<Bounds> read_bounds(const Json& s, const std::string& path, bool integer) {
    Bounds b;
    auto num = [&](const char* key, double& v) -> Status {
        if (!s.contains(key)) return {};
        if (!s[key].is_number()) return error(StatusCode::invalid_argument, std::string(key) + " at " + path + " must be a number");
        v = s[key].get<double>();
        if (std::fabs(v) > static_cast<double>(kMaxInt))
            return unsupported(path, std::string(key) + " beyond 16 digits");
        return {};
    };
    double v;
    // Lower bounds: minimum (inclusive), exclusiveMinimum (a number: exclusive; a bool: draft 4).
    bool ex_min_bool = s.contains("exclusiveMinimum") && s["exclusiveMinimum"].is_boolean() && s["exclusiveMinimum"].get<bool>();
    bool ex_max_bool = s.contains("exclusiveMaximum") && s["exclusiveMaximum"].is_boolean() && s["exclusiveMaximum"].get<bool>();
    auto add_lo = [&](double x, bool excl) {
        int64_t l;
        bool e = false;
        if (is_integral(x)) {
            l = static_cast<int64_t>(x);
            if (excl) {
                if (integer) l += 1;
                else e = true;
            }
        } else {
            l = static_cast<int64_t>(std::ceil(x));  // inward: x < l, so l itself is allowed
        }
        if (!b.has_lo || l > b.lo || (l == b.lo && e)) b.lo = l, b.lo_excl = e;
        b.has_lo = true;
    };
    auto add_hi = [&](double x, bool excl) {
        int64_t h;
        bool e = false;
        if (is_integral(x)) {
            h = static_cast<int64_t>(x);
            if (excl) {
                if (integer) h -= 1;
                else e = true;
            }
        } else {
            h = static_cast<int64_t>(std::floor(x));
        }
        if (!b.has_hi || h < b.hi || (h == b.hi && e)) b.hi = h, b.hi_excl = e;
        b.has_hi = true;
    };
    v = NAN;
    HEARTH_TRY(num("minimum", v));
    if (!std::isnan(v)) add_lo(v, ex_min_bool);
    v = NAN;
    HEARTH_TRY(num("maximum", v));
    if (!std::isnan(v)) add_hi(v, ex_max_bool);
    if (s.contains("exclusiveMinimum") && s["exclusiveMinimum"].is_number()) {
        v = NAN;
        HEARTH_TRY(num("exclusiveMinimum", v));
        add_lo(v, true);
    }
    if (s.contains("exclusiveMaximum") && s["exclusiveMaximum"].is_number()) {
        v = NAN;
        HEARTH_TRY(num("exclusiveMaximum", v));
        add_hi(v, true);
    }
    if (b.lo > b.hi || (b.lo == b.hi && (b.lo_excl || b.hi_excl)))
        return unsupported(path, "a numeric range with no " + std::string(integer ? "integer" : "integer-bounded") + " value in it");
    return b;
}

}  // namespace

// ---- the compiler ------------------------------------------------------------------------------

struct JsonSchemaCompiler::Ctx {
    const Json* root;
    std::map<std::string, std::string> refs;  // $ref -> rule name
    int depth = 0;
};

std::string JsonSchemaCompiler::unique_name(const std::string& base) {
    std::string n = base;
    for (int k = 2; names_.count(n); ++k) n = base + "-" + std::to_string(k);
    names_.insert(n);
    return n;
}

std::string JsonSchemaCompiler::rule(const std::string& name, const std::string& rhs) {
    auto it = by_rhs_.find(rhs);
    if (it != by_rhs_.end()) return it->second;
    const std::string n = unique_name(name);
    rules_.push_back({n, rhs});
    by_rhs_[rhs] = n;
    return n;
}

void JsonSchemaCompiler::add_primitives() {
    if (primitives_) return;
    primitives_ = true;
    const std::pair<const char*, const char*> prims[] = {
        {"ws", "(\" \" | \"\\n\" [ \\t]{0,20})?"},
        // \u escapes never leave a lone surrogate (parsers reject those): a high one must pair.
        {"json-esc",
         "\"\\\\\" ([\"\\\\/bfnrt] | \"u\" ([0-9a-cA-Ce-fE-F] [0-9a-fA-F]{3} | [dD] [0-7] [0-9a-fA-F]{2} | "
         "[dD] [89abAB] [0-9a-fA-F]{2} \"\\\\u\" [dD] [c-fC-F] [0-9a-fA-F]{2}))"},
        {"json-char", "[^\"\\\\\\x00-\\x1F] | json-esc"},
        {"json-string", "\"\\\"\" [^\"\\\\\\x00-\\x1F]* (json-esc [^\"\\\\\\x00-\\x1F]*)* \"\\\"\""},
        {"json-int", "\"-\"? (\"0\" | [1-9] [0-9]{0,15})"},
        {"json-number", "json-int (\".\" [0-9]{1,16})? ([eE] [-+]? [0-9]{1,2})?"},
        {"json-bool", "\"true\" | \"false\""},
        {"json-null", "\"null\""},
        {"json-value", "json-object | json-array | json-string | json-number | json-bool | json-null"},
        {"json-object",
         "\"{\" ws (json-string ws \":\" ws json-value (ws \",\" ws json-string ws \":\" ws json-value)* ws)? \"}\""},
        {"json-array", "\"[\" ws (json-value (ws \",\" ws json-value)* ws)? \"]\""},
    };
    for (auto [n, r] : prims) {
        names_.insert(n);
        rules_.push_back({n, r});
        by_rhs_[r] = n;
    }
}

std::string JsonSchemaCompiler::any_value() {
    add_primitives();
    return "json-value";
}

std::string JsonSchemaCompiler::any_object() {
    add_primitives();
    return "json-object";
}

std::string JsonSchemaCompiler::gbnf(const std::string& root_rhs) const {
    std::string out = "root ::= " + root_rhs + "\n";
    for (const auto& [n, r] : rules_) out += n + " ::= " + r + "\n";
    return out;
}

// A JSON string (with quotes) whose content is none of `keys` (compared as written, unescaped).
std::string JsonSchemaCompiler::key_except(const std::vector<std::string>& keys, const std::string& name) {
    add_primitives();
    if (keys.empty()) return "json-string";
    // Trie over the keys' code points; each node becomes a rule for "the content so far is this
    // prefix of a key". Keys written with escapes are not recognised (the model writes them plain).
    struct TrieNode {
        std::map<uint32_t, int> kids;
        bool terminal = false;
    };
    std::vector<TrieNode> t(1);
    for (const std::string& k : keys) {
        int n = 0;
        for (size_t i = 0; i < k.size();) {
            const unsigned char c = static_cast<unsigned char>(k[i]);
            const int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : 4;
            uint32_t cp = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
            for (int j = 1; j < len && i + j < k.size(); ++j) cp = (cp << 6) | (static_cast<unsigned char>(k[i + j]) & 0x3F);
            i += len;
            auto it = t[n].kids.find(cp);
            if (it == t[n].kids.end()) {
                t.push_back({});
                it = t[n].kids.emplace(cp, static_cast<int>(t.size() - 1)).first;
            }
            n = it->second;
        }
        t[n].terminal = true;
    }
    const std::string rest = rule(name + "-rest", "[^\"\\\\\\x00-\\x1F]* (json-esc [^\"\\\\\\x00-\\x1F]*)* \"\\\"\"");
    std::vector<std::string> node_names(t.size());
    for (size_t n = 0; n < t.size(); ++n) node_names[n] = unique_name(name + "-k" + std::to_string(n));
    for (size_t n = 0; n < t.size(); ++n) {
        std::vector<std::string> alts;
        if (!t[n].terminal) alts.push_back("\"\\\"\"");  // the key ends here and is not a declared one
        std::string cls = "[^\"\\\\\\x00-\\x1F";
        for (const auto& kid : t[n].kids) cls += class_char(kid.first);
        alts.push_back(cls + "] " + rest);  // leaves the trie: any other key
        alts.push_back("json-esc " + rest);
        for (const auto& [cp, k] : t[n].kids) {
            std::string ch = "[";
            ch += class_char(cp);
            ch += "]";
            if (cp == '"' || cp == '\\' || cp < 0x20) ch = json_chars({{cp, cp}});
            alts.push_back(ch + " " + node_names[k]);
        }
        std::string rhs;
        for (size_t a = 0; a < alts.size(); ++a) rhs += (a ? " | " : "") + alts[a];
        rules_.push_back({node_names[n], rhs});
    }
    return rule(name, "\"\\\"\" " + node_names[0]);
}

Result<std::string> JsonSchemaCompiler::add(const Json& schema, const std::string& prefix) {
    add_primitives();
    Ctx ctx{&schema, {}, 0};
    try {
        return visit(schema, prefix, "", ctx);
    } catch (const nlohmann::json::exception& e) {
        return error(StatusCode::invalid_argument, std::string("malformed schema: ") + e.what());
    }
}

Result<std::string> JsonSchemaCompiler::visit(const Json& s, const std::string& name, const std::string& path, Ctx& ctx) {
    if (++ctx.depth > 64) return unsupported(path, "schema nesting deeper than 64");
    struct DepthGuard {
        int& d;
        ~DepthGuard() { --d; }
    } guard{ctx.depth};
    if (s.is_boolean()) {
        if (s.get<bool>()) return any_value();
        return unsupported(path, "the schema false (it allows no value)");
    }
    if (!s.is_object()) return error(StatusCode::invalid_argument, "schema at " + (path.empty() ? "/" : path) + " must be an object or a boolean");

    auto only = [&](const std::set<std::string>& allowed) -> Status {
        for (auto it = s.begin(); it != s.end(); ++it) {
            if (allowed.count(it.key()) || annotations().count(it.key())) continue;
            return unsupported(path, "unsupported JSON Schema keyword '" + it.key() + "'" +
                                         (allowed.empty() ? "" : " here"));
        }
        return {};
    };

    if (s.contains("nullable") && s["nullable"].is_boolean() && s["nullable"].get<bool>()) {
        Json rest = s;
        rest.erase("nullable");
        HEARTH_ASSIGN(std::string inner, visit(rest, name, path, ctx));
        return rule(name, inner + " | json-null");
    }
    if (s.contains("$ref")) {
        HEARTH_TRY(only({"$ref"}));
        if (!s["$ref"].is_string()) return error(StatusCode::invalid_argument, "$ref at " + path + " must be a string");
        const std::string ref = s["$ref"].get<std::string>();
        auto it = ctx.refs.find(ref);
        if (it != ctx.refs.end()) return it->second;
        HEARTH_ASSIGN(const Json* target, resolve_ref(*ctx.root, ref, path));
        const size_t slash = ref.rfind('/');
        const std::string rname = unique_name(name + "-ref-" + sanitize(slash == std::string::npos ? "root" : ref.substr(slash + 1)));
        ctx.refs[ref] = rname;
        const size_t slot = rules_.size();
        rules_.push_back({rname, ""});  // filled below; recursion refers to the name meanwhile
        HEARTH_ASSIGN(std::string body, visit(*target, rname, ref.substr(1), ctx));
        rules_[slot].second = body;
        return rname;
    }
    if (s.contains("const") || s.contains("enum")) {
        std::vector<Json> values;
        if (s.contains("const")) values.push_back(s["const"]);
        if (s.contains("enum")) {
            if (!s["enum"].is_array() || s["enum"].empty())
                return error(StatusCode::invalid_argument, "enum at " + path + " must be a non-empty array");
            if (s.contains("const")) return unsupported(path, "const together with enum");
            for (const Json& v : s["enum"]) values.push_back(v);
        }
        // The other keywords still apply: keep the values that satisfy them.
        Json rest = s;
        rest.erase("const");
        rest.erase("enum");
        std::string rhs;
        for (const Json& v : values) {
            Status st = validate_json(rest, v);
            if (st.code() == StatusCode::unsupported) return st.with_context(path.empty() ? "/" : path);
            if (!st.ok()) continue;
            rhs += (rhs.empty() ? "" : " | ") + literal(v.dump());
        }
        if (rhs.empty()) return unsupported(path, "enum/const with no value allowed by the rest of the schema");
        return rule(name, rhs);
    }
    for (const char* comb : {"anyOf", "oneOf"}) {
        if (!s.contains(comb)) continue;
        HEARTH_TRY(only({comb}));
        const Json& list = s[comb];
        if (!list.is_array() || list.empty())
            return error(StatusCode::invalid_argument, std::string(comb) + " at " + path + " must be a non-empty array");
        std::string rhs;
        for (size_t k = 0; k < list.size(); ++k) {
            HEARTH_ASSIGN(std::string alt, visit(list[k], name + "-" + std::to_string(k), path + "/" + comb + "/" + std::to_string(k), ctx));
            rhs += (k ? " | " : "") + alt;
        }
        return rule(name, rhs);
    }
    if (s.contains("allOf")) {
        // Merge object schemas: properties (later ones add), required (union), additionalProperties
        // (false wins). Anything else inside allOf is unsupported.
        if (!s["allOf"].is_array()) return error(StatusCode::invalid_argument, "allOf at " + path + " must be an array");
        Json merged = s;
        merged.erase("allOf");
        std::vector<const Json*> parts;
        for (size_t k = 0; k < s["allOf"].size(); ++k) {
            const Json* p = &s["allOf"][k];
            const std::string ppath = path + "/allOf/" + std::to_string(k);
            for (int hop = 0; p->is_object() && p->contains("$ref") && hop < 16; ++hop) {
                HEARTH_ASSIGN(p, resolve_ref(*ctx.root, (*p)["$ref"].get<std::string>(), ppath));
            }
            if (!p->is_object()) return unsupported(ppath, "allOf of a non-object schema");
            for (auto it = p->begin(); it != p->end(); ++it) {
                const std::string& k2 = it.key();
                if (annotations().count(k2)) continue;
                if (k2 == "type") {
                    if (it.value() != "object") return unsupported(ppath, "allOf of non-object schemas");
                    merged["type"] = "object";
                } else if (k2 == "properties") {
                    for (auto pi = it.value().begin(); pi != it.value().end(); ++pi) merged["properties"][pi.key()] = pi.value();
                } else if (k2 == "required") {
                    for (const Json& r : it.value())
                        if (!merged.contains("required") || std::find(merged["required"].begin(), merged["required"].end(), r) == merged["required"].end())
                            merged["required"].push_back(r);
                } else if (k2 == "additionalProperties") {
                    if (!merged.contains("additionalProperties") || it.value() == false) merged["additionalProperties"] = it.value();
                } else {
                    return unsupported(ppath, "keyword '" + k2 + "' inside allOf (only object schemas merge)");
                }
            }
        }
        if (!merged.contains("type")) merged["type"] = "object";
        return visit(merged, name, path, ctx);
    }

    // Types.
    std::vector<std::string> types;
    if (s.contains("type")) {
        const Json& t = s["type"];
        if (t.is_string()) types.push_back(t.get<std::string>());
        else if (t.is_array())
            for (const Json& x : t) {
                if (!x.is_string()) return error(StatusCode::invalid_argument, "type at " + path + " must name types");
                types.push_back(x.get<std::string>());
            }
        else return error(StatusCode::invalid_argument, "type at " + path + " must be a string or an array");
        if (types.empty()) return error(StatusCode::invalid_argument, "type at " + path + " is an empty list");
    } else {
        // Inferred from the keywords present (a narrower grammar than the schema: still valid).
        for (const char* t : {"object", "array", "string", "number"})
            for (const std::string& k : keywords_of(t))
                if (s.contains(k) && (types.empty() || types.back() != t)) types.push_back(t);
        if (types.size() > 1) types.resize(1);
        if (types.empty()) {
            HEARTH_TRY(only({}));
            return any_value();
        }
    }
    std::set<std::string> allowed = {"type"};
    for (const std::string& t : types) {
        static const std::set<std::string> known = {"object", "array", "string", "number", "integer", "boolean", "null"};
        if (!known.count(t)) return error(StatusCode::invalid_argument, "unknown type '" + t + "' at " + (path.empty() ? "/" : path));
        allowed.insert(keywords_of(t).begin(), keywords_of(t).end());
    }
    HEARTH_TRY(only(allowed));
    std::string rhs;
    for (const std::string& t : types) {
        std::string alt;
        const std::string tname = types.size() > 1 ? name + "-" + t : name;
        if (t == "object") {
            HEARTH_ASSIGN(alt, visit_object(s, tname, path, ctx));
        } else if (t == "array") {
            HEARTH_ASSIGN(alt, visit_array(s, tname, path, ctx));
        } else if (t == "string") {
            HEARTH_ASSIGN(alt, visit_string(s, tname, path));
        } else if (t == "number" || t == "integer") {
            HEARTH_ASSIGN(alt, visit_number(s, tname, path, t == "integer"));
        } else if (t == "boolean") {
            alt = "json-bool";
        } else {
            alt = "json-null";
        }
        rhs += (rhs.empty() ? "" : " | ") + alt;
    }
    return types.size() == 1 ? rhs : rule(name, rhs);
}

Result<std::string> JsonSchemaCompiler::visit_object(const Json& s, const std::string& name, const std::string& path, Ctx& ctx) {
    const bool has_props = s.contains("properties");
    if (has_props && !s["properties"].is_object())
        return error(StatusCode::invalid_argument, "properties at " + path + " must be an object");
    std::vector<std::string> required;
    if (s.contains("required")) {
        if (!s["required"].is_array()) return error(StatusCode::invalid_argument, "required at " + path + " must be an array");
        for (const Json& r : s["required"]) {
            if (!r.is_string()) return error(StatusCode::invalid_argument, "required at " + path + " must list strings");
            required.push_back(r.get<std::string>());
        }
    }
    // Extra keys: absent means none when properties are declared, any object otherwise.
    std::string extra_value;  // rule for the values of extra keys; empty: no extra keys
    if (s.contains("additionalProperties")) {
        const Json& a = s["additionalProperties"];
        if (!(a.is_boolean() && !a.get<bool>())) {
            HEARTH_ASSIGN(extra_value, visit(a, name + "-additional", path + "/additionalProperties", ctx));
        }
    } else if (!has_props) {
        if (required.empty()) return any_object();
        extra_value = any_value();
    }
    struct Prop {
        std::string key, kv;
        bool required;
    };
    std::vector<Prop> props;
    if (has_props) {
        for (auto it = s["properties"].begin(); it != s["properties"].end(); ++it) {
            const std::string& key = it.key();
            HEARTH_ASSIGN(std::string v, visit(it.value(), name + "-" + sanitize(key), path + "/properties/" + key, ctx));
            const bool req = std::find(required.begin(), required.end(), key) != required.end();
            props.push_back({key, rule(name + "-" + sanitize(key) + "-kv", literal(Json(key).dump()) + " ws \":\" ws " + v), req});
        }
    }
    for (const std::string& r : required) {
        bool found = false;
        for (const Prop& p : props) found = found || p.key == r;
        if (!found) return unsupported(path, "required property '" + r + "' that is not in properties");
    }
    std::string extra_kv;
    if (!extra_value.empty()) {
        std::vector<std::string> keys;
        for (const Prop& p : props) keys.push_back(p.key);
        const std::string key = key_except(keys, name + "-extra-key");
        extra_kv = rule(name + "-extra-kv", key + " ws \":\" ws " + extra_value);
    }
    // rest(i, first): properties i.. in order, all required ones present; `first`: nothing yet
    // written, so no comma before the next pair.
    const size_t n = props.size();
    std::vector<std::string> rest_first(n + 1), rest_comma(n + 1);
    rest_first[n] = extra_kv.empty() ? "" : rule(name + "-tail-f", "(" + extra_kv + " (ws \",\" ws " + extra_kv + ")*)?");
    rest_comma[n] = extra_kv.empty() ? "" : rule(name + "-tail-c", "(ws \",\" ws " + extra_kv + ")*");
    auto or_empty = [](const std::string& r) { return r.empty() ? std::string("\"\"") : r; };
    for (size_t i = n; i-- > 0;) {
        const std::string f = props[i].kv + (rest_comma[i + 1].empty() ? "" : " " + rest_comma[i + 1]);
        const std::string c = "ws \",\" ws " + f;
        if (props[i].required) {
            rest_first[i] = rule(name + "-r" + std::to_string(i) + "f", f);
            rest_comma[i] = rule(name + "-r" + std::to_string(i) + "c", c);
        } else {
            rest_first[i] = rule(name + "-r" + std::to_string(i) + "f", f + " | " + or_empty(rest_first[i + 1]));
            rest_comma[i] = rule(name + "-r" + std::to_string(i) + "c", c + " | " + or_empty(rest_comma[i + 1]));
        }
    }
    if (rest_first[0].empty()) return rule(name, "\"{\" ws \"}\"");
    return rule(name, "\"{\" ws " + rest_first[0] + " ws \"}\"");
}

Result<std::string> JsonSchemaCompiler::visit_array(const Json& s, const std::string& name, const std::string& path, Ctx& ctx) {
    auto count = [&](const char* key, int64_t dflt) -> Result<int64_t> {
        if (!s.contains(key)) return dflt;
        if (!s[key].is_number_integer() || s[key].get<int64_t>() < 0)
            return error(StatusCode::invalid_argument, std::string(key) + " at " + path + " must be a non-negative integer");
        return s[key].get<int64_t>();
    };
    HEARTH_ASSIGN(int64_t min_items, count("minItems", 0));
    HEARTH_ASSIGN(int64_t max_items, count("maxItems", -1));
    if (max_items >= 0 && min_items > max_items) return unsupported(path, "minItems above maxItems");
    if (min_items > kMaxRepeat || max_items > kMaxRepeat)
        return unsupported(path, strformat("minItems/maxItems above %d", kMaxRepeat));
    std::vector<std::string> prefix;
    if (s.contains("prefixItems")) {
        if (!s["prefixItems"].is_array()) return error(StatusCode::invalid_argument, "prefixItems at " + path + " must be an array");
        for (size_t k = 0; k < s["prefixItems"].size(); ++k) {
            HEARTH_ASSIGN(std::string e, visit(s["prefixItems"][k], name + "-p" + std::to_string(k), path + "/prefixItems/" + std::to_string(k), ctx));
            prefix.push_back(e);
        }
    }
    std::string item;  // empty: no items beyond the prefix
    if (s.contains("items")) {
        if (s["items"].is_array()) return unsupported(path, "items as an array (use prefixItems)");
        if (!(s["items"].is_boolean() && !s["items"].get<bool>())) {
            HEARTH_ASSIGN(item, visit(s["items"], name + "-item", path + "/items", ctx));
        }
    } else {
        item = any_value();
    }
    const int64_t p = static_cast<int64_t>(prefix.size());
    if (item.empty()) {
        if (min_items > p) return unsupported(path, "minItems above the number of prefixItems with items false");
        max_items = max_items < 0 ? p : std::min(max_items, p);
    }
    if (max_items == 0) return rule(name, "\"[\" ws \"]\"");
    // rest(i): elements i.. given i already written (i >= 1).
    auto element = [&](int64_t i) { return i < p ? prefix[i] : item; };
    std::string tail;  // rest(max(p, 1)) for the uniform part
    const int64_t u = std::max<int64_t>(p, 1);
    if (!item.empty() && (max_items < 0 || max_items > u - 0)) {
        const int64_t lo = std::max<int64_t>(0, min_items - u);
        const std::string hi = max_items < 0 ? "" : std::to_string(max_items - u);
        if (max_items < 0 || max_items - u > 0)
            tail = rule(name + "-tail", "(ws \",\" ws " + item + "){" + std::to_string(lo) + "," + hi + "}");
    }
    std::string rest = tail;
    for (int64_t i = std::min<int64_t>(p, max_items < 0 ? p : max_items) - 1; i >= 1; --i) {
        const std::string one = "ws \",\" ws " + element(i) + (rest.empty() ? "" : " " + rest);
        rest = rule(name + "-rest" + std::to_string(i), i >= min_items ? one + " | \"\"" : one);
    }
    const std::string body = element(0) + (rest.empty() ? "" : " " + rest);
    if (min_items == 0) return rule(name, "\"[\" ws (" + body + " ws)? \"]\"");
    return rule(name, "\"[\" ws " + body + " ws \"]\"");
}

Result<std::string> JsonSchemaCompiler::visit_string(const Json& s, const std::string& name, const std::string& path) {
    const bool has_len = s.contains("minLength") || s.contains("maxLength");
    const int kinds = (has_len ? 1 : 0) + (s.contains("pattern") ? 1 : 0) + (s.contains("format") ? 1 : 0);
    if (kinds > 1) return unsupported(path, "more than one of minLength/maxLength, pattern and format on one string");
    if (s.contains("pattern")) {
        if (!s["pattern"].is_string()) return error(StatusCode::invalid_argument, "pattern at " + path + " must be a string");
        auto body = regex_to_gbnf(s["pattern"].get<std::string>());
        if (!body.ok()) return body.status().with_context(path.empty() ? "/" : path);
        return rule(name, "\"\\\"\" " + body.value() + " \"\\\"\"");
    }
    if (s.contains("format")) {
        if (!s["format"].is_string()) return error(StatusCode::invalid_argument, "format at " + path + " must be a string");
        const FormatDef* f = find_format(s["format"].get<std::string>());
        if (!f) return unsupported(path, "string format '" + s["format"].get<std::string>() + "'");
        return rule(name, "\"\\\"\" " + std::string(f->gbnf) + " \"\\\"\"");
    }
    if (!has_len) return std::string("json-string");
    int64_t lo = 0, hi = -1;
    for (const char* key : {"minLength", "maxLength"}) {
        if (!s.contains(key)) continue;
        if (!s[key].is_number_integer() || s[key].get<int64_t>() < 0)
            return error(StatusCode::invalid_argument, std::string(key) + " at " + path + " must be a non-negative integer");
        (std::string(key) == "minLength" ? lo : hi) = s[key].get<int64_t>();
    }
    if (hi >= 0 && lo > hi) return unsupported(path, "minLength above maxLength");
    if (lo > kMaxRepeat || hi > kMaxRepeat) return unsupported(path, strformat("string lengths above %d", kMaxRepeat));
    return rule(name, "\"\\\"\" json-char{" + std::to_string(lo) + "," + (hi < 0 ? "" : std::to_string(hi)) + "} \"\\\"\"");
}

Result<std::string> JsonSchemaCompiler::visit_number(const Json& s, const std::string& name, const std::string& path, bool integer) {
    const bool bounded = s.contains("minimum") || s.contains("maximum") || s.contains("exclusiveMinimum") || s.contains("exclusiveMaximum");
    if (!bounded) return std::string(integer ? "json-int" : "json-number");
    HEARTH_ASSIGN(Bounds b, read_bounds(s, path, integer));
    if (integer) return rule(name, int_range(b.lo, b.hi));
    // Numbers: integer part I and fraction kinds, Z = none or all zeros, N = non-zero.
    const std::string frac_any = "(\".\" [0-9]{1,16})?", frac_zero = "(\".\" \"0\"{1,16})?",
                      frac_nonzero = "\".\" [0-9]{0,15} [1-9]";
    auto frac = [&](int kind) -> std::string {
        return kind == 3 ? frac_any : kind == 1 ? frac_zero : frac_nonzero;
    };
    std::vector<std::string> alts;
    // Emits the integers in [a, c] with per-point kinds from `kind_of`, others `any`.
    auto part = [&](const std::string& sign, int64_t a, int64_t c, const std::vector<std::pair<int64_t, int>>& specials) {
        if (a > c) return;
        std::vector<int64_t> pts;
        for (auto [v, k] : specials)
            if (v >= a && v <= c) pts.push_back(v);
        std::sort(pts.begin(), pts.end());
        pts.erase(std::unique(pts.begin(), pts.end()), pts.end());
        int64_t from = a;
        auto range = [&](int64_t x, int64_t y) {
            if (x <= y) alts.push_back(sign + "(" + uint_range(x, y) + ") " + frac_any);
        };
        for (int64_t v : pts) {
            range(from, v - 1);
            int kind = 3;
            for (auto [w, k] : specials)
                if (w == v) kind &= k;
            if (kind) alts.push_back(sign + literal(std::to_string(v)) + " " + frac(kind));
            from = v + 1;
        }
        range(from, c);
    };
    // Non-negative values I.F: lo <= I.F <= hi.
    if (b.hi >= 0) {
        std::vector<std::pair<int64_t, int>> sp;
        sp.push_back({b.hi, b.hi_excl ? 0 : 1});
        if (b.lo >= 0) sp.push_back({b.lo, b.lo_excl ? 2 : 3});
        part("", std::max<int64_t>(b.lo, 0), b.hi, sp);
    }
    // Negative values -(I.F): I.F <= -lo, I.F >= -hi (when hi < 0), I.F > 0.
    if (b.lo < 0) {
        std::vector<std::pair<int64_t, int>> sp;
        sp.push_back({-b.lo, b.lo_excl ? 0 : 1});
        sp.push_back({0, 2});
        const int64_t h = b.hi < 0 ? -b.hi : 0;
        if (b.hi < 0) sp.push_back({h, b.hi_excl ? 2 : 3});
        part("\"-\" ", h, -b.lo, sp);
    }
    if (alts.empty()) return unsupported(path, "a numeric range with no representable value");
    std::string rhs;
    for (size_t k = 0; k < alts.size(); ++k) rhs += (k ? " | " : "") + alts[k];
    return rule(name, rhs);
}

Result<std::string> regex_to_gbnf(const std::string& pattern) { return RegexConverter(pattern).convert(); }

Result<std::string> json_schema_to_gbnf(const Json& schema) {
    JsonSchemaCompiler c;
    HEARTH_ASSIGN(std::string root, c.add(schema, "s"));
    return c.gbnf(root);
}

Result<std::string> format_to_gbnf(const Json& format) {
    if (format.is_string()) {
        if (format.get<std::string>() == "json") {
            JsonSchemaCompiler c;
            return c.gbnf(c.any_object());
        }
        return error(StatusCode::invalid_argument,
                     "format must be \"json\" or a JSON Schema object, got \"" + format.get<std::string>() + "\"");
    }
    if (format.is_object()) return json_schema_to_gbnf(format);
    return error(StatusCode::invalid_argument, "format must be \"json\" or a JSON Schema object, got " + format.dump());
}

// ---- validation --------------------------------------------------------------------------------

namespace {

size_t utf8_length(const std::string& s) {
    size_t n = 0;
    for (unsigned char c : s) n += (c & 0xC0) != 0x80;
    return n;
}

// Code points (wchar_t is 32 bits here), so that patterns count characters as the grammar does
// rather than UTF-8 bytes: std::regex on a std::string sees "é" as two characters.
std::wstring to_wide(const std::string& s) {
    static_assert(sizeof(wchar_t) == 4, "patterns are matched over UTF-32");
    std::wstring out;
    for (size_t i = 0; i < s.size();) {
        const unsigned char c = static_cast<unsigned char>(s[i]);
        const int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
        uint32_t cp = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
        for (int k = 1; k < len && i + k < s.size(); ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
        out += static_cast<wchar_t>(cp);
        i += static_cast<size_t>(len);
    }
    return out;
}

std::string show(const Json& v) {
    std::string d = v.dump();
    return d.size() > 40 ? d.substr(0, 37) + "..." : d;
}

Status fail(const std::string& path, const std::string& what) {
    return error(StatusCode::invalid_argument, (path.empty() ? "/" : path) + ": " + what);
}

bool type_is(const Json& v, const std::string& t) {
    if (t == "object") return v.is_object();
    if (t == "array") return v.is_array();
    if (t == "string") return v.is_string();
    if (t == "boolean") return v.is_boolean();
    if (t == "null") return v.is_null();
    if (t == "number") return v.is_number();
    if (t == "integer") return v.is_number_integer() || (v.is_number_float() && is_integral(v.get<double>()));
    return false;
}

Status validate_at(const Json& root, const Json& s, const Json& v, const std::string& path, int depth) {
    if (depth > 200) return error(StatusCode::unsupported, "schema recursion deeper than 200 while validating");
    if (s.is_boolean()) return s.get<bool>() ? Status{} : fail(path, "the schema false allows nothing");
    if (!s.is_object()) return error(StatusCode::invalid_argument, "schema must be an object or a boolean");
    static const std::set<std::string> known = {
        "type", "properties", "required", "additionalProperties", "items", "prefixItems", "minItems", "maxItems",
        "minLength", "maxLength", "pattern", "format", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
        "enum", "const", "anyOf", "oneOf", "allOf", "$ref"};
    for (auto it = s.begin(); it != s.end(); ++it)
        if (!known.count(it.key()) && !annotations().count(it.key()))
            return error(StatusCode::unsupported, "unsupported JSON Schema keyword '" + it.key() + "'");
    if (s.contains("nullable") && s["nullable"] == true && v.is_null()) return {};
    if (s.contains("$ref")) {
        HEARTH_ASSIGN(const Json* target, resolve_ref(root, s["$ref"].get<std::string>(), path));
        HEARTH_TRY(validate_at(root, *target, v, path, depth + 1));
    }
    if (s.contains("type")) {
        std::vector<std::string> types;
        if (s["type"].is_string()) types.push_back(s["type"].get<std::string>());
        else for (const Json& t : s["type"]) types.push_back(t.get<std::string>());
        bool ok = false;
        for (const std::string& t : types) ok = ok || type_is(v, t);
        if (!ok) return fail(path, show(v) + " is not of type " + s["type"].dump());
    }
    if (s.contains("const") && s["const"] != v) return fail(path, show(v) + " is not the const " + show(s["const"]));
    if (s.contains("enum")) {
        bool ok = false;
        for (const Json& e : s["enum"]) ok = ok || e == v;
        if (!ok) return fail(path, show(v) + " is not in the enum");
    }
    for (const char* comb : {"anyOf", "oneOf"}) {
        if (!s.contains(comb)) continue;
        int n_ok = 0;
        for (const Json& sub : s[comb]) {
            Status st = validate_at(root, sub, v, path, depth + 1);
            if (st.code() == StatusCode::unsupported) return st;
            n_ok += st.ok();
        }
        if (n_ok == 0) return fail(path, show(v) + " matches none of " + comb);
        if (std::string(comb) == "oneOf" && n_ok > 1) return fail(path, show(v) + " matches more than one of oneOf");
    }
    if (s.contains("allOf"))
        for (const Json& sub : s["allOf"]) HEARTH_TRY(validate_at(root, sub, v, path, depth + 1));
    if (v.is_object()) {
        if (s.contains("required"))
            for (const Json& r : s["required"])
                if (!v.contains(r.get<std::string>())) return fail(path, "missing required property " + r.dump());
        for (auto it = v.begin(); it != v.end(); ++it) {
            const std::string sub = path + "/" + it.key();
            if (s.contains("properties") && s["properties"].contains(it.key())) {
                HEARTH_TRY(validate_at(root, s["properties"][it.key()], it.value(), sub, depth + 1));
            } else if (s.contains("additionalProperties")) {
                HEARTH_TRY(validate_at(root, s["additionalProperties"], it.value(), sub, depth + 1));
            }
        }
    }
    if (v.is_array()) {
        const int64_t n = static_cast<int64_t>(v.size());
        if (s.contains("minItems") && n < s["minItems"].get<int64_t>()) return fail(path, strformat("%lld items, fewer than minItems", (long long)n));
        if (s.contains("maxItems") && n > s["maxItems"].get<int64_t>()) return fail(path, strformat("%lld items, more than maxItems", (long long)n));
        size_t p = 0;
        if (s.contains("prefixItems")) {
            for (; p < s["prefixItems"].size() && p < v.size(); ++p)
                HEARTH_TRY(validate_at(root, s["prefixItems"][p], v[p], path + "/" + std::to_string(p), depth + 1));
        }
        if (s.contains("items"))
            for (size_t k = p; k < v.size(); ++k) HEARTH_TRY(validate_at(root, s["items"], v[k], path + "/" + std::to_string(k), depth + 1));
    }
    if (v.is_string()) {
        const std::string& str = v.get_ref<const std::string&>();
        const int64_t len = static_cast<int64_t>(utf8_length(str));
        if (s.contains("minLength") && len < s["minLength"].get<int64_t>()) return fail(path, "shorter than minLength");
        if (s.contains("maxLength") && len > s["maxLength"].get<int64_t>()) return fail(path, "longer than maxLength");
        if (s.contains("pattern")) {
            try {
                if (!std::regex_search(to_wide(str), std::wregex(to_wide(s["pattern"].get<std::string>()), std::regex::ECMAScript)))
                    return fail(path, show(v) + " does not match the pattern " + s["pattern"].dump());
            } catch (const std::regex_error&) {
                return error(StatusCode::unsupported, "pattern " + s["pattern"].dump() + " is not a valid regex");
            }
        }
        if (s.contains("format")) {
            const FormatDef* f = find_format(s["format"].get<std::string>());
            if (!f) return error(StatusCode::unsupported, "string format " + s["format"].dump());
            if (!std::regex_search(to_wide(str), std::wregex(to_wide(f->regex), std::regex::ECMAScript)))
                return fail(path, show(v) + " is not a " + f->name);
        }
    }
    if (v.is_number()) {
        const double x = v.get<double>();
        auto bool_flag = [&](const char* k) { return s.contains(k) && s[k].is_boolean() && s[k].get<bool>(); };
        if (s.contains("minimum") && (bool_flag("exclusiveMinimum") ? !(x > s["minimum"].get<double>()) : x < s["minimum"].get<double>()))
            return fail(path, show(v) + " is below minimum " + show(s["minimum"]));
        if (s.contains("maximum") && (bool_flag("exclusiveMaximum") ? !(x < s["maximum"].get<double>()) : x > s["maximum"].get<double>()))
            return fail(path, show(v) + " is above maximum " + show(s["maximum"]));
        if (s.contains("exclusiveMinimum") && s["exclusiveMinimum"].is_number() && !(x > s["exclusiveMinimum"].get<double>()))
            return fail(path, show(v) + " is not above exclusiveMinimum " + show(s["exclusiveMinimum"]));
        if (s.contains("exclusiveMaximum") && s["exclusiveMaximum"].is_number() && !(x < s["exclusiveMaximum"].get<double>()))
            return fail(path, show(v) + " is not below exclusiveMaximum " + show(s["exclusiveMaximum"]));
    }
    return {};
}

}  // namespace

Status validate_json(const Json& schema, const Json& value) {
    try {
        return validate_at(schema, schema, value, "", 0);
    } catch (const nlohmann::json::exception& e) {
        return error(StatusCode::invalid_argument, std::string("malformed schema: ") + e.what());
    }
}

}  // namespace hearth::chat
