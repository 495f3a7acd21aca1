#include "chat/jinja_pystr.h"

#include <utf8proc.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>

namespace hearth::chat::jinja::py {

std::u32string decode(std::string_view s) {
    std::u32string out;
    out.reserve(s.size());
    size_t i = 0;
    while (i < s.size()) {
        utf8proc_int32_t c = 0;
        const utf8proc_ssize_t n = utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(s.data() + i),
                                                    utf8proc_ssize_t(s.size() - i), &c);
        if (n <= 0) {
            out.push_back(0xFFFD);
            i += 1;
        } else {
            out.push_back(char32_t(c));
            i += size_t(n);
        }
    }
    return out;
}

void append_utf8(std::string& out, char32_t c) {
    if (c < 0x80) {
        out.push_back(char(c));
    } else if (c < 0x800) {
        out.push_back(char(0xC0 | (c >> 6)));
        out.push_back(char(0x80 | (c & 0x3F)));
    } else if (c < 0x10000) {
        out.push_back(char(0xE0 | (c >> 12)));
        out.push_back(char(0x80 | ((c >> 6) & 0x3F)));
        out.push_back(char(0x80 | (c & 0x3F)));
    } else {
        out.push_back(char(0xF0 | (c >> 18)));
        out.push_back(char(0x80 | ((c >> 12) & 0x3F)));
        out.push_back(char(0x80 | ((c >> 6) & 0x3F)));
        out.push_back(char(0x80 | (c & 0x3F)));
    }
}

std::string encode(std::u32string_view s) {
    std::string out;
    out.reserve(s.size());
    for (char32_t c : s) append_utf8(out, c);
    return out;
}

bool is_ascii(std::string_view s) {
    for (unsigned char c : s)
        if (c >= 0x80) return false;
    return true;
}

size_t length(std::string_view s) {
    size_t n = 0;
    for (unsigned char c : s) n += (c & 0xC0) != 0x80;
    return n;
}

bool is_space(char32_t c) {
    switch (c) {
    case 0x09: case 0x0A: case 0x0B: case 0x0C: case 0x0D: case 0x1C: case 0x1D: case 0x1E: case 0x1F:
    case 0x20: case 0x85: case 0xA0: case 0x1680: case 0x2028: case 0x2029: case 0x202F: case 0x205F:
    case 0x3000:
        return true;
    default:
        return c >= 0x2000 && c <= 0x200A;
    }
}

static utf8proc_category_t category(char32_t c) { return utf8proc_category(utf8proc_int32_t(c)); }

bool is_printable(char32_t c) {
    if (c == ' ') return true;
    switch (category(c)) {
    case UTF8PROC_CATEGORY_CC: case UTF8PROC_CATEGORY_CF: case UTF8PROC_CATEGORY_CS: case UTF8PROC_CATEGORY_CO:
    case UTF8PROC_CATEGORY_CN: case UTF8PROC_CATEGORY_ZL: case UTF8PROC_CATEGORY_ZP: case UTF8PROC_CATEGORY_ZS:
        return false;
    default:
        return true;
    }
}

char32_t to_upper(char32_t c) {
    if (c < 0x80) return (c >= 'a' && c <= 'z') ? c - 32 : c;
    return char32_t(utf8proc_toupper(utf8proc_int32_t(c)));
}
char32_t to_lower(char32_t c) {
    if (c < 0x80) return (c >= 'A' && c <= 'Z') ? c + 32 : c;
    return char32_t(utf8proc_tolower(utf8proc_int32_t(c)));
}
bool is_alpha(char32_t c) {
    const auto k = category(c);
    return k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LL || k == UTF8PROC_CATEGORY_LT ||
           k == UTF8PROC_CATEGORY_LM || k == UTF8PROC_CATEGORY_LO;
}
bool is_digit(char32_t c) { return category(c) == UTF8PROC_CATEGORY_ND; }
bool is_alnum(char32_t c) { return is_alpha(c) || is_digit(c) || category(c) == UTF8PROC_CATEGORY_NL || category(c) == UTF8PROC_CATEGORY_NO; }
bool is_upper(char32_t c) { return category(c) == UTF8PROC_CATEGORY_LU || category(c) == UTF8PROC_CATEGORY_LT; }
bool is_lower(char32_t c) { return category(c) == UTF8PROC_CATEGORY_LL; }

std::string repr_str(std::string_view s) {
    const bool has_single = s.find('\'') != std::string_view::npos;
    const bool has_double = s.find('"') != std::string_view::npos;
    const char quote = (has_single && !has_double) ? '"' : '\'';
    std::string out(1, quote);
    for (char32_t c : decode(s)) {
        if (c == char32_t(quote) || c == '\\') {
            out.push_back('\\');
            out.push_back(char(c));
        } else if (c == '\n') {
            out += "\\n";
        } else if (c == '\r') {
            out += "\\r";
        } else if (c == '\t') {
            out += "\\t";
        } else if (c < 0x20 || c == 0x7F) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\x%02x", unsigned(c));
            out += buf;
        } else if (c < 0x80 || is_printable(c)) {
            append_utf8(out, c);
        } else {
            char buf[16];
            if (c < 0x100) std::snprintf(buf, sizeof buf, "\\x%02x", unsigned(c));
            else if (c < 0x10000) std::snprintf(buf, sizeof buf, "\\u%04x", unsigned(c));
            else std::snprintf(buf, sizeof buf, "\\U%08x", unsigned(c));
            out += buf;
        }
    }
    out.push_back(quote);
    return out;
}

std::string repr_float(double f) {
    if (std::isnan(f)) return "nan";
    if (std::isinf(f)) return f < 0 ? "-inf" : "inf";
    char buf[64];
    auto res = std::to_chars(buf, buf + sizeof buf, f, std::chars_format::scientific);
    std::string sci(buf, res.ptr);
    std::string out;
    size_t pos = 0;
    if (sci[0] == '-') {
        out.push_back('-');
        pos = 1;
    }
    const size_t e = sci.find('e');
    std::string digits;
    for (size_t i = pos; i < e; ++i)
        if (sci[i] != '.') digits.push_back(sci[i]);
    const int exp10 = std::atoi(sci.c_str() + e + 1);
    const int decpt = exp10 + 1;  // value = 0.DIGITS * 10^decpt
    const int n = int(digits.size());
    if (decpt <= -4 || decpt > 16) {
        out += digits[0];
        if (n > 1) out.append(".").append(digits, 1);
        char eb[16];
        std::snprintf(eb, sizeof eb, "e%c%02d", exp10 < 0 ? '-' : '+', std::abs(exp10));
        out += eb;
    } else if (decpt <= 0) {
        out.append("0.").append(size_t(-decpt), '0').append(digits);
    } else if (decpt >= n) {
        out.append(digits).append(size_t(decpt - n), '0').append(".0");
    } else {
        out.append(digits, 0, size_t(decpt)).append(".").append(digits, size_t(decpt));
    }
    return out;
}

std::string format_int(int64_t i) { return std::to_string(i); }

std::string strip(std::string_view s, const std::optional<std::string>& chars, bool left, bool right) {
    std::u32string u = decode(s);
    std::u32string set = chars ? decode(*chars) : std::u32string();
    auto strip_it = [&](char32_t c) { return chars ? set.find(c) != std::u32string::npos : is_space(c); };
    size_t b = 0, e = u.size();
    if (left)
        while (b < e && strip_it(u[b])) ++b;
    if (right)
        while (e > b && strip_it(u[e - 1])) --e;
    return encode(std::u32string_view(u).substr(b, e - b));
}

std::vector<std::string> split(std::string_view s, const std::optional<std::string>& sep, int64_t maxsplit,
                               bool from_right) {
    std::vector<std::string> out;
    if (sep) {
        if (sep->empty()) return out;  // the caller raises ValueError first
        if (!from_right) {
            size_t pos = 0;
            while (maxsplit < 0 || int64_t(out.size()) < maxsplit) {
                const size_t f = s.find(*sep, pos);
                if (f == std::string_view::npos) break;
                out.emplace_back(s.substr(pos, f - pos));
                pos = f + sep->size();
            }
            out.emplace_back(s.substr(pos));
        } else {
            size_t end = s.size();
            std::vector<std::string> rev;
            while (maxsplit < 0 || int64_t(rev.size()) < maxsplit) {
                if (end < sep->size()) break;
                const size_t f = s.rfind(*sep, end - sep->size());
                if (f == std::string_view::npos) break;
                rev.emplace_back(s.substr(f + sep->size(), end - f - sep->size()));
                end = f;
            }
            rev.emplace_back(s.substr(0, end));
            out.assign(rev.rbegin(), rev.rend());
        }
        return out;
    }
    const std::u32string u = decode(s);
    if (!from_right) {
        size_t i = 0;
        while (true) {
            while (i < u.size() && is_space(u[i])) ++i;
            if (i >= u.size()) break;
            if (maxsplit >= 0 && int64_t(out.size()) >= maxsplit) {
                size_t e = u.size();
                while (e > i && is_space(u[e - 1])) --e;
                out.push_back(encode(std::u32string_view(u).substr(i, e - i)));
                break;
            }
            size_t j = i;
            while (j < u.size() && !is_space(u[j])) ++j;
            out.push_back(encode(std::u32string_view(u).substr(i, j - i)));
            i = j;
        }
    } else {
        size_t i = u.size();
        std::vector<std::string> rev;
        while (true) {
            while (i > 0 && is_space(u[i - 1])) --i;
            if (i == 0) break;
            if (maxsplit >= 0 && int64_t(rev.size()) >= maxsplit) {
                size_t b = 0;
                while (b < i && is_space(u[b])) ++b;
                rev.push_back(encode(std::u32string_view(u).substr(b, i - b)));
                break;
            }
            size_t j = i;
            while (j > 0 && !is_space(u[j - 1])) --j;
            rev.push_back(encode(std::u32string_view(u).substr(j, i - j)));
            i = j;
        }
        out.assign(rev.rbegin(), rev.rend());
    }
    return out;
}

static bool is_line_break(char32_t c) {
    return c == '\n' || c == '\r' || c == 0x0B || c == 0x0C || c == 0x1C || c == 0x1D || c == 0x1E || c == 0x85 ||
           c == 0x2028 || c == 0x2029;
}

std::vector<std::string> splitlines(std::string_view s, bool keepends) {
    const std::u32string u = decode(s);
    std::vector<std::string> out;
    size_t i = 0, start = 0;
    while (i < u.size()) {
        if (!is_line_break(u[i])) {
            ++i;
            continue;
        }
        size_t eol = i + 1;
        if (u[i] == '\r' && i + 1 < u.size() && u[i + 1] == '\n') eol = i + 2;
        out.push_back(encode(std::u32string_view(u).substr(start, (keepends ? eol : i) - start)));
        start = i = eol;
    }
    if (start < u.size()) out.push_back(encode(std::u32string_view(u).substr(start)));
    return out;
}

std::string replace(std::string_view s, std::string_view old, std::string_view repl, int64_t count) {
    std::string out;
    if (old.empty()) {  // Python inserts repl between every code point and at both ends
        const std::u32string u = decode(s);
        int64_t done = 0;
        for (size_t i = 0; i <= u.size(); ++i) {
            if (count < 0 || done < count) {
                out += repl;
                ++done;
            }
            if (i < u.size()) append_utf8(out, u[i]);
        }
        return out;
    }
    size_t pos = 0;
    int64_t done = 0;
    while (count < 0 || done < count) {
        const size_t f = s.find(old, pos);
        if (f == std::string_view::npos) break;
        out.append(s.substr(pos, f - pos));
        out.append(repl);
        pos = f + old.size();
        ++done;
    }
    out.append(s.substr(pos));
    return out;
}

// The one-to-many mappings of Unicode's SpecialCasing.txt that Python applies and utf8proc's
// simple case mapping does not.
static const char* special_upper(char32_t c) {
    switch (c) {
    case 0xDF: return "SS";
    case 0xFB00: return "FF";
    case 0xFB01: return "FI";
    case 0xFB02: return "FL";
    case 0xFB03: return "FFI";
    case 0xFB04: return "FFL";
    case 0xFB05: case 0xFB06: return "ST";
    case 0x149: return "\u02BCN";
    default: return nullptr;
    }
}

std::string upper(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (char32_t c : decode(s)) {
        if (const char* sp = special_upper(c)) out += sp;
        else append_utf8(out, to_upper(c));
    }
    return out;
}

std::string lower(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (char32_t c : decode(s)) {
        if (c == 0x130) out += "i\u0307";  // İ -> i + combining dot above
        else append_utf8(out, to_lower(c));
    }
    return out;
}

std::string title(std::string_view s) {
    std::string out;
    bool prev_cased = false;
    for (char32_t c : decode(s)) {
        const bool cased = is_upper(c) || is_lower(c);
        append_utf8(out, prev_cased ? to_lower(c) : to_upper(c));
        prev_cased = cased;
    }
    return out;
}

std::string capitalize(std::string_view s) {
    std::string out;
    bool first = true;
    for (char32_t c : decode(s)) {
        append_utf8(out, first ? to_upper(c) : to_lower(c));
        first = false;
    }
    return out;
}

int64_t count(std::string_view s, std::string_view sub) {
    if (sub.empty()) return int64_t(length(s)) + 1;
    int64_t n = 0;
    size_t pos = 0;
    while ((pos = s.find(sub, pos)) != std::string_view::npos) {
        ++n;
        pos += sub.size();
    }
    return n;
}

int64_t find(std::string_view s, std::string_view sub, bool from_right) {
    const size_t f = from_right ? s.rfind(sub) : s.find(sub);
    if (f == std::string_view::npos) return -1;
    return int64_t(length(s.substr(0, f)));
}

std::vector<int64_t> slice_indices(int64_t n, std::optional<int64_t> start_in, std::optional<int64_t> stop_in,
                                   std::optional<int64_t> step_in) {
    const int64_t step = step_in.value_or(1);
    auto adjust = [&](std::optional<int64_t> v, int64_t def) {
        if (!v) return def;
        int64_t x = *v;
        if (x < 0) {
            x += n;
            if (x < 0) x = step < 0 ? -1 : 0;
        } else if (x >= n) {
            x = step < 0 ? n - 1 : n;
        }
        return x;
    };
    const int64_t start = adjust(start_in, step < 0 ? n - 1 : 0);
    const int64_t stop = adjust(stop_in, step < 0 ? -1 : n);
    std::vector<int64_t> out;
    if (step > 0)
        for (int64_t i = start; i < stop; i += step) out.push_back(i);
    else
        for (int64_t i = start; i > stop; i += step) out.push_back(i);
    return out;
}

std::string html_escape(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (char c : s) {
        switch (c) {
        case '&': out += "&amp;"; break;
        case '<': out += "&lt;"; break;
        case '>': out += "&gt;"; break;
        case '\'': out += "&#39;"; break;
        case '"': out += "&#34;"; break;
        default: out.push_back(c);
        }
    }
    return out;
}

}  // namespace hearth::chat::jinja::py
