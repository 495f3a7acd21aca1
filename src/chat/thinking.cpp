#include "chat/thinking.h"

#include <algorithm>

namespace hearth::chat {
namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

std::string_view ltrim(std::string_view s) {
    size_t i = 0;
    while (i < s.size() && is_space(s[i])) ++i;
    return s.substr(i);
}

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

}  // namespace

size_t marker_prefix_suffix(std::string_view text, std::string_view marker) {
    if (marker.empty()) return 0;
    const size_t most = std::min(text.size(), marker.size() - 1);
    for (size_t n = most; n > 0; --n)
        if (text.substr(text.size() - n) == marker.substr(0, n)) return n;
    return 0;
}

ThinkingParser::ThinkingParser(std::string start, std::string end, bool starts_inside)
    : start_(std::move(start)), end_(std::move(end)) {
    if (start_.empty() || end_.empty()) {
        state_ = State::content;
    } else if (starts_inside) {
        state_ = State::thinking;
        saw_thinking_ = true;
    } else {
        state_ = State::looking;
    }
}

ThinkingDelta ThinkingParser::push(std::string_view piece) {
    buf_.append(piece);
    ThinkingDelta out;
    run(out, false);
    return out;
}

ThinkingDelta ThinkingParser::finish() {
    ThinkingDelta out;
    run(out, true);
    think_ws_.clear();  // trailing whitespace of an unclosed block
    return out;
}

void ThinkingParser::run(ThinkingDelta& out, bool at_end) {
    // Appends thinking text, dropping its leading whitespace and holding its trailing whitespace.
    auto emit_thinking = [&](std::string_view s) {
        if (!think_started_) {
            s = ltrim(s);
            if (s.empty()) return;
            think_started_ = true;
        }
        size_t last = s.size();
        while (last > 0 && is_space(s[last - 1])) --last;
        if (last == 0) {
            think_ws_.append(s);
            return;
        }
        out.thinking += think_ws_;
        out.thinking.append(s.substr(0, last));
        think_ws_.assign(s.substr(last));
    };
    for (;;) {
        switch (state_) {
        case State::looking: {
            const std::string_view trimmed = ltrim(buf_);
            if (starts_with(trimmed, start_)) {
                buf_ = std::string(trimmed.substr(start_.size()));
                state_ = State::thinking;
                saw_thinking_ = true;
                continue;
            }
            if (!at_end && starts_with(start_, trimmed)) return;  // empty, or a prefix of the marker
            state_ = State::content;  // no thinking: the text is the answer, as it came
            continue;
        }
        case State::thinking: {
            if (!think_started_) {
                // A model may repeat the opening marker the prompt already opened.
                const std::string_view trimmed = ltrim(buf_);
                if (!at_end && starts_with(start_, trimmed) && trimmed.size() < start_.size()) return;
                if (starts_with(trimmed, start_)) buf_ = std::string(trimmed.substr(start_.size()));
            }
            const size_t at = buf_.find(end_);
            if (at != std::string::npos) {
                emit_thinking(std::string_view(buf_).substr(0, at));
                think_ws_.clear();
                buf_.erase(0, at + end_.size());
                state_ = State::after_end;
                continue;
            }
            const size_t hold = at_end ? 0 : marker_prefix_suffix(buf_, end_);
            emit_thinking(std::string_view(buf_).substr(0, buf_.size() - hold));
            buf_.erase(0, buf_.size() - hold);
            return;
        }
        case State::after_end: {
            const std::string_view trimmed = ltrim(buf_);
            if (trimmed.empty()) {
                buf_.clear();
                return;
            }
            buf_ = std::string(trimmed);
            state_ = State::content;
            continue;
        }
        case State::content:
            out.content += buf_;
            buf_.clear();
            return;
        }
    }
}

}  // namespace hearth::chat
