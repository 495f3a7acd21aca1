// The token table shared by the SPM, WordPiece and BPE paths of the tokenizer.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace hearth::tok {

constexpr int32_t kNoToken = -1;

// Token attributes, bit values as llama.cpp's llama_token_attr. GGUF stores one token *type*
// per token (1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte); loading turns it
// into one of these bits and later rules may add more (e.g. CONTROL on "<|eot_id|>").
enum TokenAttr : uint32_t {
    kAttrUndefined = 0,
    kAttrUnknown = 1u << 0,
    kAttrUnused = 1u << 1,
    kAttrNormal = 1u << 2,
    kAttrControl = 1u << 3,
    kAttrUserDefined = 1u << 4,
    kAttrByte = 1u << 5,
    kAttrNormalized = 1u << 6,
    kAttrLstrip = 1u << 7,   // whitespace left of the token is dropped when it is split out of text
    kAttrRstrip = 1u << 8,   // same, right of the token
    kAttrSingleWord = 1u << 9,
};

struct Vocab {
    std::vector<std::string> texts;  // [n_vocab] token text as stored (SPM: U+2581 for space; BPE: byte-level symbols)
    std::vector<float> scores;       // [n_vocab] SPM merge priority; 0 when the file has none
    std::vector<uint32_t> attrs;     // [n_vocab] TokenAttr bits
    // text -> id. Filled in id order with later duplicates overwriting, exactly like llama.cpp's
    // token_to_id (an std::unordered_map too): llama.cpp derives EOT/EOM/FIM ids by iterating that
    // map, and the same container filled the same way iterates in the same order.
    std::unordered_map<std::string, int32_t> ids;
    std::array<int32_t, 256> byte_ids{};  // SPM byte fallback: "<0xXX>" (or the raw byte) -> id, kNoToken if absent
    int32_t max_token_len = 0;            // longest token text in bytes

    int32_t n() const { return static_cast<int32_t>(texts.size()); }
    bool valid(int32_t id) const { return id >= 0 && id < n(); }
    int32_t find(const std::string& text) const {
        auto it = ids.find(text);
        return it == ids.end() ? kNoToken : it->second;
    }
};

}  // namespace hearth::tok
