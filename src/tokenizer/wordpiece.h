// WordPiece (GGUF tokenizer.ggml.model "bert"), as llama.cpp's llm_tokenizer_wpm: BERT-style
// normalisation and splitting, then greedy longest-match of each word against a vocabulary
// whose word-initial pieces carry a U+2581 prefix (the converter turned "##x" into "x" and
// "x" into "▁x").
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/vocab.h"

namespace hearth::tok {

struct WpmOptions {
    bool lowercase = true;
    bool strip_accents = true;  // maps each code point to the first code point of its NFD form and drops marks
};

// Splits on whitespace, drops control characters, NUL and U+FFFD, and makes every punctuation
// character, ASCII symbol and CJK ideograph a word of its own. Character properties come from
// utf8proc (llama.cpp uses its own tables from the Unicode data; they agree except where the
// Unicode versions differ).
std::vector<std::string> wpm_preprocess(std::string_view text, const WpmOptions& opts);

// Appends the ids of `text`; a word that cannot be covered by vocabulary pieces becomes `unk_id`.
void wpm_encode(const Vocab& vocab, int32_t unk_id, std::string_view text, const WpmOptions& opts,
                std::vector<int32_t>& out);

}  // namespace hearth::tok
