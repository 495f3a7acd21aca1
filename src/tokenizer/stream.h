// Incremental detokenization for streamed generation: feed token ids one at a time, get back
// only complete UTF-8. Byte tokens (<0xF0><0x9F>...) and byte-level BPE pieces can end in the
// middle of a character; those bytes are held until the character completes. A sequence is
// replaced by U+FFFD only once it can no longer become valid (or at flush()), one U+FFFD per
// maximal invalid subpart (Unicode's recommended practice). Unlike Tokenizer::decode() no
// clean_spaces pass runs: llama.cpp applies it only when detokenizing a whole sequence.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace hearth::tok {

// Byte-level half: accepts arbitrary byte chunks, returns the longest valid UTF-8 text that is
// final. Invariant: pending_ holds at most 3 bytes, and they are a valid but incomplete prefix.
class Utf8StreamAssembler {
public:
    std::string push(std::string_view bytes);
    std::string flush();  // pending incomplete bytes (if any) become one U+FFFD
    size_t pending_bytes() const { return pending_.size(); }
    void reset() { pending_.clear(); }

private:
    std::string pending_;
};

class TokenStreamDecoder {
public:
    // render_special: CONTROL/UNKNOWN tokens produce their text (else nothing).
    // strip_leading_space: drop one leading space of the first piece when the vocabulary adds a
    // space prefix (what decode() does to a whole sequence), e.g. for SPM output that starts a text.
    explicit TokenStreamDecoder(const Tokenizer& tok, bool render_special = false,
                                bool strip_leading_space = false)
        : tok_(tok), render_special_(render_special), strip_leading_space_(strip_leading_space) {}

    // Control tokens whose text is produced even without render_special: the markers a chat
    // format's parser must see (e.g. <|python_tag|>, [TOOL_CALLS]).
    void preserve(std::vector<int32_t> ids);

    // Out-of-range ids contribute nothing.
    std::string push(int32_t id);
    std::string flush() { return utf8_.flush(); }
    void reset();
    size_t pending_bytes() const { return utf8_.pending_bytes(); }

private:
    const Tokenizer& tok_;  // must outlive the decoder
    bool render_special_;
    bool strip_leading_space_;
    bool first_ = true;
    std::vector<int32_t> preserved_;  // sorted
    Utf8StreamAssembler utf8_;
};

}  // namespace hearth::tok
