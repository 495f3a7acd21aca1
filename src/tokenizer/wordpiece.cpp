#include "tokenizer/wordpiece.h"

#include <utf8proc.h>

#include <algorithm>

#include "tokenizer/utf8.h"

namespace hearth::tok {
namespace {

// llama.cpp's whitespace set (Unicode White_Space), not utf8proc's categories: it includes the
// ASCII controls 9..13 and excludes U+001C..U+001F.
bool is_whitespace(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x2000 && c <= 0x200A) || c == 0x20 || c == 0x85 ||
           c == 0xA0 || c == 0x1680 || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
           c == 0x3000;
}

utf8proc_category_t category(uint32_t c) {
    if (c > 0x10FFFF) return UTF8PROC_CATEGORY_CN;
    if (c >= 0xD800 && c <= 0xDFFF) return UTF8PROC_CATEGORY_CS;
    return utf8proc_category(static_cast<utf8proc_int32_t>(c));
}

bool is_control(utf8proc_category_t k) {
    return k == UTF8PROC_CATEGORY_CC || k == UTF8PROC_CATEGORY_CF || k == UTF8PROC_CATEGORY_CO ||
           k == UTF8PROC_CATEGORY_CS;
}
bool is_mark(utf8proc_category_t k) { return k >= UTF8PROC_CATEGORY_MN && k <= UTF8PROC_CATEGORY_ME; }
bool is_punct(utf8proc_category_t k) { return k >= UTF8PROC_CATEGORY_PC && k <= UTF8PROC_CATEGORY_PO; }
bool is_symbol(utf8proc_category_t k) { return k >= UTF8PROC_CATEGORY_SM && k <= UTF8PROC_CATEGORY_SO; }

// Ranges as llama.cpp (copied from HF's BertPreTokenizer, including its 0x2B920 start).
bool is_chinese_char(uint32_t c) {
    return (c >= 0x04E00 && c <= 0x09FFF) || (c >= 0x03400 && c <= 0x04DBF) ||
           (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
           (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
           (c >= 0x0F900 && c <= 0x0FAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

// First code point of the canonical decomposition (what llama.cpp's unicode_cpts_normalize_nfd
// returns: a one-to-one map, so "é" becomes "e" and the accent is simply gone).
uint32_t nfd_first(uint32_t c) {
    if (c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return c;
    utf8proc_int32_t buf[8];
    int boundclass = 0;
    const utf8proc_ssize_t n = utf8proc_decompose_char(static_cast<utf8proc_int32_t>(c), buf, 8,
                                                       UTF8PROC_DECOMPOSE, &boundclass);
    return n >= 1 ? static_cast<uint32_t>(buf[0]) : c;
}

uint32_t to_lower(uint32_t c) {
    if (c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return c;
    return static_cast<uint32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(c)));
}

}  // namespace

std::vector<std::string> wpm_preprocess(std::string_view text, const WpmOptions& opts) {
    std::vector<uint32_t> cpts = decode_utf8_lenient(text);
    if (opts.strip_accents) {
        for (uint32_t& c : cpts) c = nfd_first(c);
    }
    std::vector<std::string> words(1);
    for (const uint32_t c : cpts) {
        if (is_whitespace(c)) {
            if (!words.back().empty()) words.emplace_back();
            continue;
        }
        const utf8proc_category_t k = category(c);
        if (c == 0 || c == kReplacementChar || is_control(k)) continue;
        if (opts.strip_accents && is_mark(k)) continue;
        std::string s;
        if (!append_utf8(s, opts.lowercase ? to_lower(c) : c)) continue;
        if (is_punct(k) || (c < 0x7F && is_symbol(k)) || is_chinese_char(c)) {
            if (!words.back().empty()) words.emplace_back();
            words.back() = std::move(s);
            words.emplace_back();
        } else {
            words.back() += s;
        }
    }
    if (words.back().empty()) words.pop_back();
    return words;
}

void wpm_encode(const Vocab& vocab, int32_t unk_id, std::string_view text, const WpmOptions& opts,
                std::vector<int32_t>& out) {
    for (const std::string& word : wpm_preprocess(text, opts)) {
        if (word.empty()) continue;
        const std::string word1 = "\xE2\x96\x81" + word;  // phantom space marks the word start
        const int n = static_cast<int>(word1.size());
        const size_t n_before = out.size();
        for (int i = 0; i < n; ++i) {
            bool match = false;
            for (int j = std::min(n, i + vocab.max_token_len + 1); j > i; --j) {
                const int32_t id = vocab.find(word1.substr(i, j - i));
                if (id != kNoToken) {
                    out.push_back(id);
                    match = true;
                    i = j - 1;
                    break;
                }
            }
            if (!match) {  // one uncovered position discards the whole word
                out.resize(n_before);
                break;
            }
        }
        if (out.size() == n_before && unk_id != kNoToken) out.push_back(unk_id);
    }
}

}  // namespace hearth::tok
