#include "tokenizer/stream.h"

#include <algorithm>

#include "tokenizer/utf8.h"

namespace hearth::tok {

std::string Utf8StreamAssembler::push(std::string_view bytes) {
    std::string buf;
    buf.reserve(pending_.size() + bytes.size());
    buf.append(pending_);
    buf.append(bytes);
    pending_.clear();

    std::string out;
    out.reserve(buf.size());
    size_t i = 0;
    while (i < buf.size()) {
        const int r = utf8_check_prefix(std::string_view(buf).substr(i));
        if (r > 0) {
            out.append(buf, i, static_cast<size_t>(r));
            i += static_cast<size_t>(r);
        } else if (r < 0) {
            append_utf8(out, kReplacementChar);
            i += static_cast<size_t>(-r);
        } else {
            pending_.assign(buf, i, std::string::npos);  // incomplete: wait for more bytes
            break;
        }
    }
    return out;
}

std::string Utf8StreamAssembler::flush() {
    std::string out;
    if (!pending_.empty()) append_utf8(out, kReplacementChar);
    pending_.clear();
    return out;
}

void TokenStreamDecoder::preserve(std::vector<int32_t> ids) {
    std::sort(ids.begin(), ids.end());
    preserved_ = std::move(ids);
}

std::string TokenStreamDecoder::push(int32_t id) {
    const bool special = render_special_ || std::binary_search(preserved_.begin(), preserved_.end(), id);
    std::string_view piece = tok_.token_to_piece(id, special);
    if (first_ && strip_leading_space_ && tok_.add_space_prefix() && !piece.empty() && piece[0] == ' ') {
        piece.remove_prefix(1);
    }
    first_ = false;
    return utf8_.push(piece);
}

void TokenStreamDecoder::reset() {
    first_ = true;
    utf8_.reset();
}

}  // namespace hearth::tok
