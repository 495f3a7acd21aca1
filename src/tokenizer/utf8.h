// UTF-8 helpers with llama.cpp's exact (lenient) semantics, used where tokenization must match
// it byte for byte, plus a strict validator for the streaming decoder.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace hearth::tok {

constexpr uint32_t kReplacementChar = 0xFFFD;

// Sequence length implied by a lead byte, looking only at its high nibble (llama.cpp's
// unicode_len_utf8): 0x0-0xB -> 1 (continuation bytes count as 1), 0xC-0xD -> 2, 0xE -> 3, 0xF -> 4.
inline size_t utf8_seq_len(char lead) {
    static constexpr uint8_t kLen[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return kLen[static_cast<uint8_t>(lead) >> 4];
}

// Decodes like llama.cpp's unicode_cpts_from_utf8: no overlong/surrogate checks; a byte that does
// not start a complete sequence becomes U+FFFD and decoding resumes at the next byte.
std::vector<uint32_t> decode_utf8_lenient(std::string_view text);

// Appends the UTF-8 encoding of `cpt`; false (nothing appended) above U+10FFFF.
bool append_utf8(std::string& out, uint32_t cpt);

// Strict check of the sequence starting at s[0] (RFC 3629: no overlongs, surrogates or values
// above U+10FFFF). Returns the sequence length when complete and valid; 0 when `s` is a valid
// but incomplete prefix (more bytes could complete it); -n when the first n bytes can never
// start a valid sequence (n is the maximal subpart to replace with one U+FFFD).
int utf8_check_prefix(std::string_view s);

// Replaces every invalid sequence (and a trailing incomplete one) with U+FFFD.
std::string utf8_sanitize(std::string_view s);

}  // namespace hearth::tok
