// Byte-level BPE (GPT-2 style): bytes are mapped to printable code points, then merged by
// rank from `tokenizer.ggml.merges`. Matches llama.cpp's llm_tokenizer_bpe_session for one
// pre-token:
//  * the piece's invalid UTF-8 bytes become U+FFFD first (as unicode_regex_split does);
//  * each (mapped) character is a symbol; the adjacent pair with the lowest merge rank is
//    merged first, the leftmost on ties, until no pair has a rank;
//  * each final symbol is looked up in the vocab; one that is not there is emitted as the
//    tokens of the single bytes of its mapped text, skipping bytes with no token.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "base/status.h"

namespace hearth::tok {

// The GPT-2 byte <-> unicode mapping (each byte to one code point, as UTF-8 text).
const std::string& byte_to_unicode(uint8_t b);
// Inverse mapping of a token's text back to raw bytes, appended to `out`. Returns false if a
// code point is not in the map; for each such code point `out` gets llama.cpp's
// llama_decode_text() replacement "[UNK_BYTE_0x<hex utf-8>" + token_text + "]".
bool unicode_to_bytes(std::string_view token_text, std::string& out);

struct BpeOptions {
    // llama.cpp's ignore_merges (PreTokenizer::ignore_merges()): a pre-token whose mapped
    // text is a vocab entry is emitted as that one token, without merging.
    bool ignore_merges = false;
    // false for SPM-style BPE (PreTokenizer::byte_encode(), "gemma4"): symbols are the raw
    // UTF-8 characters and the fallback for a symbol missing from the vocab is <0xXX> tokens.
    bool byte_encode = true;
    // llama.cpp's Gemma-4 rule: a piece made only of '\n' that is a vocab entry is emitted
    // whole ("gemma4", "granite-embed-multi-311m").
    bool whole_newline_runs = false;
};

class BpeModel {
public:
    // An empty model (no tokens): encode_piece emits nothing. Use build() for a real one.
    BpeModel();
    // tokens: the vocabulary texts (byte-level encoded); merges: "a b" strings in rank order.
    // As in llama.cpp: an empty token text is stored as "[EMPTY_<id>]", a repeated text maps
    // to its last id, a merge is split at the first space after its first byte and a repeated
    // merge keeps its first rank; a merge without such a space never applies.
    static Result<BpeModel> build(const std::vector<std::string>& tokens,
                                  const std::vector<std::string>& merges,
                                  const BpeOptions& options = {});
    // Encodes one pre-token (raw bytes) and appends token ids. Bytes with no token are
    // skipped, as llama.cpp does (and reported via the return value: number skipped; with
    // byte_encode, one byte of mapped text, so a raw byte >= 0x80 can count twice).
    int encode_piece(std::string_view raw_bytes, std::vector<int32_t>& out) const;

    // Id of a vocab text (byte-level encoded), or -1.
    int32_t find_token(std::string_view text) const;
    size_t n_tokens() const { return n_tokens_; }
    size_t n_merges() const { return merges_.size(); }
    const BpeOptions& options() const { return options_; }

private:
    struct StringHash {
        using is_transparent = void;
        size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
    };
    using TextMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;
    struct Merge {
        int32_t rank;
        int32_t result;  // symbol id of left + right
    };
    struct Fallback {  // tokens for one raw byte whose symbol has no token
        int32_t ids[2];
        uint8_t n_ids;
        uint8_t n_skipped;
    };

    int32_t symbol_of(std::string_view text) const;
    void emit_symbol(std::string_view raw, int32_t sym, std::vector<int32_t>& out,
                     int& skipped) const;

    BpeOptions options_;
    size_t n_tokens_ = 0;
    TextMap token_to_id_;
    // Every text that occurs in a merge (either side or the result) gets a symbol id, so the
    // merge loop compares integers. A text without one can never be merged.
    TextMap symbol_id_;
    std::vector<int32_t> symbol_token_;                // [n_symbols] token id or -1
    std::unordered_map<uint64_t, Merge> merges_;       // key: left symbol << 32 | right symbol
    int32_t byte_symbol_[256];                         // symbol of byte_to_unicode(b), or -1
    int32_t byte_token_[256];                          // token of byte_to_unicode(b), or -1
    Fallback byte_fallback_[256];
};

}  // namespace hearth::tok
