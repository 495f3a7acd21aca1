// Byte-level BPE, following llama.cpp's llm_tokenizer_bpe_session::tokenize for one word.
#include "tokenizer/bpe.h"

#include <array>
#include <limits>
#include <queue>

#include "tokenizer/pretokenize.h"

namespace hearth::tok {
namespace {

// GPT-2's bytes_to_unicode(): printable Latin-1 bytes map to themselves, the other 68 bytes
// to U+0100.. in byte order.
bool is_self_mapped(uint32_t b) {
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

struct ByteMap {
    std::array<std::string, 256> text;  // UTF-8 of the code point each byte maps to
    std::array<int16_t, 0x144> byte_of; // code point (< 0x144) -> byte, or -1

    ByteMap() {
        byte_of.fill(-1);
        uint32_t next = 0x100;
        for (uint32_t b = 0; b < 256; ++b) {
            uint32_t cp = is_self_mapped(b) ? b : next++;
            byte_of[cp] = static_cast<int16_t>(b);
            if (cp < 0x80) {
                text[b] = std::string(1, static_cast<char>(cp));
            } else {
                text[b] = {static_cast<char>(0xC0 | (cp >> 6)), static_cast<char>(0x80 | (cp & 0x3F))};
            }
        }
    }
};

const ByteMap& byte_map() {
    static const ByteMap kMap;  // immutable after first use
    return kMap;
}

// A symbol of the word being merged: a run of its (sanitized) raw bytes.
struct Symbol {
    uint32_t start, len;  // bytes; len 0 once merged into the symbol on its left
    int32_t prev, next;   // neighbours in the word, -1 at the ends
    int32_t id;           // symbol id (BpeModel::symbol_id_), -1 if the text has none
};

// A candidate merge of two neighbours. Stale once either side changed length.
struct Candidate {
    int32_t rank;
    int32_t left, right;
    uint32_t len;    // left.len + right.len when queued
    int32_t result;  // symbol id after merging
};

struct CandidateAfter {  // lowest rank first, then leftmost (llama.cpp's llm_bigram_bpe order)
    bool operator()(const Candidate& a, const Candidate& b) const {
        return a.rank > b.rank || (a.rank == b.rank && a.left > b.left);
    }
};

uint32_t utf8_len(uint8_t lead) {  // llama.cpp's unicode_len_utf8
    static constexpr uint8_t kLen[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return kLen[lead >> 4];
}

}  // namespace

const std::string& byte_to_unicode(uint8_t b) { return byte_map().text[b]; }

bool unicode_to_bytes(std::string_view token_text, std::string& out) {
    const ByteMap& map = byte_map();
    bool ok = true;
    for (size_t i = 0; i < token_text.size();) {
        size_t len;
        const uint32_t cp = decode_utf8(token_text, i, len);
        i += len;
        if (cp < map.byte_of.size() && map.byte_of[cp] >= 0) {
            out.push_back(static_cast<char>(map.byte_of[cp]));
            continue;
        }
        ok = false;
        std::string utf8;
        sanitize_utf8(std::string_view(token_text).substr(i - len, len), utf8);
        if (utf8.empty()) utf8 = std::string(token_text.substr(i - len, len));
        out += "[UNK_BYTE_0x";
        for (char c : utf8) out += strformat("%02x", static_cast<unsigned>(static_cast<uint8_t>(c)));
        out += token_text;
        out += "]";
    }
    return ok;
}

BpeModel::BpeModel() {
    for (int b = 0; b < 256; ++b) {
        byte_symbol_[b] = -1;
        byte_token_[b] = -1;
        byte_fallback_[b] = Fallback{{-1, -1}, 0, 1};
    }
}

Result<BpeModel> BpeModel::build(const std::vector<std::string>& tokens,
                                 const std::vector<std::string>& merges,
                                 const BpeOptions& options) {
    constexpr size_t kMaxCount = static_cast<size_t>(std::numeric_limits<int32_t>::max());
    if (tokens.size() >= kMaxCount || merges.size() >= kMaxCount) {
        return error(StatusCode::invalid_argument,
                     strformat("BPE vocab too large: %zu tokens, %zu merges", tokens.size(),
                               merges.size()));
    }
    BpeModel m;
    m.options_ = options;
    m.n_tokens_ = tokens.size();
    m.token_to_id_.reserve(tokens.size());
    for (size_t i = 0; i < tokens.size(); ++i) {
        std::string text = tokens[i].empty() ? strformat("[EMPTY_%zu]", i) : tokens[i];
        m.token_to_id_.insert_or_assign(std::move(text), static_cast<int32_t>(i));
    }

    auto intern = [&m](std::string text) {
        auto [it, inserted] = m.symbol_id_.try_emplace(std::move(text),
                                                       static_cast<int32_t>(m.symbol_token_.size()));
        if (inserted) m.symbol_token_.push_back(m.find_token(it->first));
        return it->second;
    };
    m.symbol_id_.reserve(tokens.size() + 256);
    m.merges_.reserve(merges.size());
    for (size_t rank = 0; rank < merges.size(); ++rank) {
        const std::string& line = merges[rank];
        const size_t sp = line.find(' ', 1);
        if (sp == std::string::npos) continue;  // llama.cpp stores ("", ""): never matches
        std::string left = line.substr(0, sp), right = line.substr(sp + 1);
        const int32_t l = intern(left);
        const int32_t r = intern(right);
        const int32_t result = intern(left + right);
        const uint64_t key = (static_cast<uint64_t>(static_cast<uint32_t>(l)) << 32) |
                             static_cast<uint32_t>(r);
        m.merges_.try_emplace(key, Merge{static_cast<int32_t>(rank), result});
    }

    const ByteMap& map = byte_map();
    for (uint32_t b = 0; b < 256; ++b) {
        Fallback& fb = m.byte_fallback_[b];
        fb = Fallback{{-1, -1}, 0, 0};
        if (options.byte_encode) {
            m.byte_symbol_[b] = m.symbol_of(map.text[b]);
            m.byte_token_[b] = m.find_token(map.text[b]);
            for (char c : map.text[b]) {  // the single bytes of the mapped text
                const int32_t id = m.find_token(std::string_view(&c, 1));
                if (id >= 0) fb.ids[fb.n_ids++] = id;
                else ++fb.n_skipped;
            }
        } else {
            const char c = static_cast<char>(b);
            m.byte_symbol_[b] = b < 0x80 ? m.symbol_of(std::string_view(&c, 1)) : -1;
            m.byte_token_[b] = b < 0x80 ? m.find_token(std::string_view(&c, 1)) : -1;
            const int32_t id = m.find_token(strformat("<0x%02X>", b));
            if (id >= 0) fb.ids[fb.n_ids++] = id;
            else ++fb.n_skipped;
        }
    }
    return m;
}

int32_t BpeModel::find_token(std::string_view text) const {
    auto it = token_to_id_.find(text);
    return it == token_to_id_.end() ? -1 : it->second;
}

int32_t BpeModel::symbol_of(std::string_view text) const {
    auto it = symbol_id_.find(text);
    return it == symbol_id_.end() ? -1 : it->second;
}

// Emits the token of one final symbol (raw bytes `raw`), or its byte fallback.
void BpeModel::emit_symbol(std::string_view raw, int32_t sym, std::vector<int32_t>& out,
                           int& skipped) const {
    int32_t token = -1;
    if (sym >= 0) {
        token = symbol_token_[sym];
    } else if (options_.byte_encode) {
        token = raw.size() == 1 ? byte_token_[static_cast<uint8_t>(raw[0])] : -1;
    } else {
        token = find_token(raw);
    }
    if (token >= 0) {
        out.push_back(token);
        return;
    }
    for (char c : raw) {
        const Fallback& fb = byte_fallback_[static_cast<uint8_t>(c)];
        out.insert(out.end(), fb.ids, fb.ids + fb.n_ids);
        skipped += fb.n_skipped;
    }
}

int BpeModel::encode_piece(std::string_view raw_bytes, std::vector<int32_t>& out) const {
    std::string clean;
    if (sanitize_utf8(raw_bytes, clean)) raw_bytes = clean;
    if (raw_bytes.empty()) return 0;
    const auto* bytes = reinterpret_cast<const uint8_t*>(raw_bytes.data());

    if (options_.ignore_merges) {
        int32_t whole = -1;
        if (options_.byte_encode) {
            std::string mapped;
            mapped.reserve(raw_bytes.size() * 2);
            for (uint8_t b : std::string_view(raw_bytes)) mapped += byte_map().text[b];
            whole = find_token(mapped);
        } else {
            whole = find_token(raw_bytes);
        }
        if (whole >= 0) {
            out.push_back(whole);
            return 0;
        }
    } else if (options_.whole_newline_runs &&
               raw_bytes.find_first_not_of('\n') == std::string_view::npos) {
        if (int32_t whole = find_token(raw_bytes); whole >= 0) {
            out.push_back(whole);
            return 0;
        }
    }

    // One symbol per mapped character: per byte with byte_encode, else per UTF-8 character.
    std::vector<Symbol> syms;
    syms.reserve(raw_bytes.size());
    for (uint32_t i = 0; i < raw_bytes.size();) {
        uint32_t len = 1;
        int32_t id = byte_symbol_[bytes[i]];
        if (!options_.byte_encode) {
            len = std::min<uint32_t>(utf8_len(bytes[i]), static_cast<uint32_t>(raw_bytes.size()) - i);
            if (len > 1) id = symbol_of(raw_bytes.substr(i, len));
        }
        const int32_t index = static_cast<int32_t>(syms.size());
        syms.push_back(Symbol{i, len, index - 1, -1, id});
        if (index > 0) syms[index - 1].next = index;
        i += len;
    }

    std::priority_queue<Candidate, std::vector<Candidate>, CandidateAfter> queue;
    auto consider = [&](int32_t left, int32_t right) {
        if (left < 0 || right < 0) return;
        const Symbol& l = syms[left];
        const Symbol& r = syms[right];
        if (l.id < 0 || r.id < 0) return;
        const uint64_t key = (static_cast<uint64_t>(static_cast<uint32_t>(l.id)) << 32) |
                             static_cast<uint32_t>(r.id);
        auto it = merges_.find(key);
        if (it == merges_.end()) return;
        queue.push(Candidate{it->second.rank, left, right, l.len + r.len, it->second.result});
    };
    for (int32_t i = 1; i < static_cast<int32_t>(syms.size()); ++i) consider(i - 1, i);

    while (!queue.empty()) {
        const Candidate c = queue.top();
        queue.pop();
        Symbol& l = syms[c.left];
        Symbol& r = syms[c.right];
        // Symbols only grow by absorbing their right neighbour, so equal lengths mean the
        // pair is still adjacent and unchanged (llama.cpp compares the texts).
        if (l.len == 0 || r.len == 0 || l.len + r.len != c.len) continue;
        l.len += r.len;
        r.len = 0;
        l.next = r.next;
        if (r.next >= 0) syms[r.next].prev = c.left;
        l.id = c.result;
        consider(l.prev, c.left);
        consider(c.left, l.next);
    }

    int skipped = 0;
    for (const Symbol& s : syms) {
        if (s.len > 0) emit_symbol(raw_bytes.substr(s.start, s.len), s.id, out, skipped);
    }
    return skipped;
}

}  // namespace hearth::tok
