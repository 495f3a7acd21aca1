// Byte-level BPE pre-tokenizers: the regex splits each model family applies before BPE,
// selected by GGUF `tokenizer.ggml.pre`. Compiled once (PCRE2, UTF + JIT).
//
// The result must match llama.cpp's unicode_regex_split() piece for piece, so this follows
// its engine rather than the regexes' textbook meaning:
//  * the GPT-2, Llama-3, Qwen2, Qwen3.5, Kimi-K2, digit-group and newline patterns are
//    hand-written splitters in llama.cpp, reproduced here with their quirks;
//  * every other pattern that names a Unicode category is matched on a "collapsed" text in
//    which each non-ASCII code point stands for its category (\p{Lu} etc. collapse to \p{L};
//    ASCII '~' is not \p{S});
//  * patterns without categories see code points; \s, \d, \w are ASCII only, with every
//    non-ASCII White_Space code point treated as a vertical tab (so \s matches it).
// Categories come from a Unicode 15.1 table identical to llama.cpp's.
//
// Invalid UTF-8: llama.cpp replaces each undecodable byte with U+FFFD before splitting.
// split() classifies such a byte as U+FFFD and returns it as a one-byte part of a piece;
// BpeModel::encode_piece applies the same replacement, so split + encode_piece gives the
// llama.cpp tokens. (llama.cpp does not check overlong forms or surrogates; neither do we.
// A 4-byte form above U+10FFFF makes llama.cpp throw; here each of its bytes is U+FFFD.)
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "tokenizer/bpe.h"

namespace hearth::tok {

// llama.cpp's UTF-8 decoding (unicode_cpt_from_utf8 + its U+FFFD fallback): the code point
// at byte `pos` of `text` and its length in bytes (1 for an undecodable byte, read as U+FFFD).
uint32_t decode_utf8(std::string_view text, size_t pos, size_t& len);
// Writes `text` with every undecodable byte replaced by U+FFFD and overlong forms re-encoded,
// which is the text llama.cpp tokenizes. Returns false (out untouched) if nothing changes.
bool sanitize_utf8(std::string_view text, std::string& out);

class PreTokenizer {
public:
    // `pre` is the GGUF tokenizer.ggml.pre value ("llama-bpe", "qwen2", "gpt-2", "default", ...).
    // "" (key missing) means "default", as in llama.cpp. Unknown names are an unsupported
    // error naming the value.
    static Result<std::unique_ptr<PreTokenizer>> create(std::string_view pre);
    ~PreTokenizer();
    // Appends the pre-token pieces of `text` (sub-views of text, in order, covering it;
    // never empty). Safe to call from several threads at once.
    void split(std::string_view text, std::vector<std::string_view>& out) const;
    const std::string& name() const;

    // Settings llama.cpp ties to the same pre-tokenizer name (llama_vocab::load):
    // A pre-token that is itself a vocab entry is emitted whole, without merging
    // (llama3/llama-bpe family, tekken, youtu, minicpm5, granite-embed-multi-97m).
    bool ignore_merges() const;
    // GPT-2 byte-to-unicode mapping before BPE. False for the SPM-style BPE families
    // ("gemma4", "sarvam-moe"), which also replace ' ' with U+2581 before splitting
    // (escape_whitespaces()) and fall back to <0xXX> byte tokens.
    bool byte_encode() const;
    bool escape_whitespaces() const;
    // Decoding: llama.cpp's clean_spaces default for this family (the GGUF key
    // tokenizer.ggml.clean_spaces, if present, overrides it).
    bool clean_spaces() const;
    // llama.cpp sets add_bos = true for these families before reading the GGUF key
    // tokenizer.ggml.add_bos_token (llama3 family, tekken, chameleon).
    bool default_add_bos() const;
    // The BpeModel options this family needs (ignore_merges, byte_encode, Gemma-4 newlines).
    BpeOptions bpe_options() const;
    // The regex sequence llama.cpp applies for this family, in order (for logs and tests).
    const std::vector<std::string>& regexes() const;

    // Every name create() accepts.
    static std::vector<std::string> supported_names();

private:
    PreTokenizer();
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace hearth::tok
