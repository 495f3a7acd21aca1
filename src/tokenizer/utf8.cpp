#include "tokenizer/utf8.h"

namespace hearth::tok {

std::vector<uint32_t> decode_utf8_lenient(std::string_view s) {
    std::vector<uint32_t> out;
    out.reserve(s.size());
    const size_t n = s.size();
    auto b = [&](size_t i) { return static_cast<uint8_t>(s[i]); };
    auto cont = [&](size_t i) { return i < n && (b(i) & 0xC0) == 0x80; };
    size_t i = 0;
    while (i < n) {
        const uint8_t c = b(i);
        if (!(c & 0x80)) {
            out.push_back(c);
            i += 1;
        } else if (!(c & 0x40)) {
            out.push_back(kReplacementChar);
            i += 1;
        } else if (!(c & 0x20)) {
            if (!cont(i + 1)) { out.push_back(kReplacementChar); i += 1; continue; }
            out.push_back(((c & 0x1Fu) << 6) | (b(i + 1) & 0x3Fu));
            i += 2;
        } else if (!(c & 0x10)) {
            if (!cont(i + 1) || !cont(i + 2)) { out.push_back(kReplacementChar); i += 1; continue; }
            out.push_back(((c & 0x0Fu) << 12) | ((b(i + 1) & 0x3Fu) << 6) | (b(i + 2) & 0x3Fu));
            i += 3;
        } else if (!(c & 0x08)) {
            if (!cont(i + 1) || !cont(i + 2) || !cont(i + 3)) {
                out.push_back(kReplacementChar);
                i += 1;
                continue;
            }
            out.push_back(((c & 0x07u) << 18) | ((b(i + 1) & 0x3Fu) << 12) | ((b(i + 2) & 0x3Fu) << 6) |
                          (b(i + 3) & 0x3Fu));
            i += 4;
        } else {
            out.push_back(kReplacementChar);
            i += 1;
        }
    }
    return out;
}

bool append_utf8(std::string& out, uint32_t cpt) {
    if (cpt <= 0x7F) {
        out.push_back(static_cast<char>(cpt));
    } else if (cpt <= 0x7FF) {
        out.push_back(static_cast<char>(0xC0 | (cpt >> 6)));
        out.push_back(static_cast<char>(0x80 | (cpt & 0x3F)));
    } else if (cpt <= 0xFFFF) {
        out.push_back(static_cast<char>(0xE0 | (cpt >> 12)));
        out.push_back(static_cast<char>(0x80 | ((cpt >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cpt & 0x3F)));
    } else if (cpt <= 0x10FFFF) {
        out.push_back(static_cast<char>(0xF0 | (cpt >> 18)));
        out.push_back(static_cast<char>(0x80 | ((cpt >> 12) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | ((cpt >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cpt & 0x3F)));
    } else {
        return false;
    }
    return true;
}

int utf8_check_prefix(std::string_view s) {
    if (s.empty()) return 0;
    const uint8_t c = static_cast<uint8_t>(s[0]);
    if (c < 0x80) return 1;
    int len = 0;
    // Allowed range of the second byte (Unicode Table 3-7); later bytes are always 80..BF.
    uint8_t lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else {
        return -1;  // continuation byte, C0/C1 or F5..FF: never valid
    }
    for (int k = 1; k < len; ++k) {
        if (static_cast<size_t>(k) >= s.size()) return 0;
        const uint8_t b = static_cast<uint8_t>(s[k]);
        const uint8_t klo = k == 1 ? lo : 0x80, khi = k == 1 ? hi : 0xBF;
        if (b < klo || b > khi) return -k;
    }
    return len;
}

std::string utf8_sanitize(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    size_t i = 0;
    while (i < s.size()) {
        const int r = utf8_check_prefix(s.substr(i));
        if (r > 0) {
            out.append(s.substr(i, r));
            i += r;
        } else if (r < 0) {
            append_utf8(out, kReplacementChar);
            i += static_cast<size_t>(-r);
        } else {
            append_utf8(out, kReplacementChar);  // incomplete at the end
            break;
        }
    }
    return out;
}

}  // namespace hearth::tok
