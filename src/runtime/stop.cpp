#include "runtime/stop.h"

#include <algorithm>
#include <utility>

namespace hearth::runtime {

namespace {

// Bytes at the end of `s` that form the start of a UTF-8 sequence whose continuation bytes have
// not arrived yet; 0 when `s` ends on a character boundary (or in bytes that are not UTF-8, which
// waiting would not fix).
size_t incomplete_utf8_tail_bytes(std::string_view s) {
    size_t n_cont = 0;  // continuation bytes (10xxxxxx) at the very end
    while (n_cont < 3 && n_cont < s.size() &&
           (static_cast<unsigned char>(s[s.size() - 1 - n_cont]) & 0xC0) == 0x80)
        ++n_cont;
    if (n_cont == s.size()) return 0;
    const auto lead = static_cast<unsigned char>(s[s.size() - 1 - n_cont]);
    size_t n_seq = 0;  // bytes the sequence this lead byte starts should have
    if ((lead & 0xE0) == 0xC0) n_seq = 2;
    else if ((lead & 0xF0) == 0xE0) n_seq = 3;
    else if ((lead & 0xF8) == 0xF0) n_seq = 4;
    const size_t n_have = n_cont + 1;
    return n_have < n_seq ? n_have : 0;
}

}  // namespace

bool is_stop_token(int32_t id, std::span<const int32_t> stop_ids) {
    return std::find(stop_ids.begin(), stop_ids.end(), id) != stop_ids.end();
}

StopMatcher::StopMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {
    for (const std::string& s : stops_) max_stop_bytes_ = std::max(max_stop_bytes_, s.size());
}

size_t StopMatcher::stop_prefix_tail_bytes() const {
    if (max_stop_bytes_ == 0) return 0;
    const std::string_view held(held_);
    // Longest candidate first, so the first hit is the answer.
    const size_t first = held.size() > max_stop_bytes_ - 1 ? held.size() - (max_stop_bytes_ - 1) : 0;
    for (size_t start = first; start < held.size(); ++start) {
        const std::string_view tail = held.substr(start);
        for (const std::string& stop : stops_)
            if (stop.size() > tail.size() && std::string_view(stop).starts_with(tail)) return tail.size();
    }
    return 0;
}

StopResult StopMatcher::push(std::string_view piece) {
    if (is_stopped()) return {{}, true, stop_index_};
    held_.append(piece);

    // held_ held no complete stop string before this piece, so any match ends inside the piece;
    // searching all of held_ (short: the previous tail plus the piece) is simplest.
    size_t match_pos = std::string::npos;
    for (size_t i = 0; i < stops_.size(); ++i) {
        if (stops_[i].empty()) continue;
        const size_t pos = held_.find(stops_[i]);
        if (pos < match_pos) {
            match_pos = pos;
            stop_index_ = static_cast<int32_t>(i);
        }
    }
    if (match_pos != std::string::npos) {
        StopResult result{held_.substr(0, match_pos), true, stop_index_};
        held_.clear();
        return result;
    }

    const size_t n_hold = std::max(stop_prefix_tail_bytes(), incomplete_utf8_tail_bytes(held_));
    StopResult result{held_.substr(0, held_.size() - n_hold), false, -1};
    held_.erase(0, held_.size() - n_hold);
    return result;
}

std::string StopMatcher::flush() {
    std::string out;
    out.swap(held_);
    return out;
}

}  // namespace hearth::runtime
