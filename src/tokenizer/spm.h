// SentencePiece-style BPE over a scored vocabulary (GGUF tokenizer.ggml.model "llama"), as
// llama.cpp's llm_tokenizer_spm: start from UTF-8 characters, repeatedly merge the adjacent pair
// whose concatenation is the highest-scored token, then emit each symbol as its token or, when a
// symbol is not a token, re-split it along the merges that built it, falling back to <0xXX> byte
// tokens.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "tokenizer/vocab.h"

namespace hearth::tok {

// `text` is already whitespace-escaped (spaces replaced by U+2581). Appends token ids. Bytes that
// have neither a <0xXX> token nor a one-byte token are dropped (llama.cpp would throw there).
void spm_encode(const Vocab& vocab, std::string_view text, std::vector<int32_t>& out);

}  // namespace hearth::tok
