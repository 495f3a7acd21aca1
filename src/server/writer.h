// How one wire protocol writes a running generation. The server drives the Generation (waiting,
// disconnects, cancellation, the status line); a protocol adapter only says what bytes each
// item becomes. One writer serves one request and may keep state between calls (OpenAI's
// first chunk carries the role, Anthropic numbers its content blocks).
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "base/status.h"
#include "server/service.h"

namespace hearth::server {

// A whole reply, for requests that are not streamed.
struct Collected {
    std::string content, thinking;
    std::vector<chat::ToolCall> tool_calls;
    std::vector<runtime::TokenLogprob> logprobs;

    void add(Delta&& d) {
        content += d.content;
        thinking += d.thinking;
        for (auto& c : d.tool_calls) tool_calls.push_back(std::move(c));
        for (auto& l : d.logprobs) logprobs.push_back(std::move(l));
    }
};

class TextWriter {
public:
    virtual ~TextWriter() = default;

    // ---- streamed ----
    virtual const char* stream_content_type() const = 0;  // "application/x-ndjson", "text/event-stream"
    // The bytes for one item ("" writes nothing). stream_final/stream_error end the stream.
    virtual std::string stream_delta(const Delta& d) = 0;
    virtual std::string stream_final(const Final& f) = 0;
    // An error after the status line went out: it can only go inside the stream.
    virtual std::string stream_error(const Status& s) = 0;
    // Written after a second without output (the parser holding back a tool call, a thinking
    // block being dropped): the write is how a client that went away is noticed, so its
    // request is cancelled instead of running on. Must be harmless to the protocol's clients
    // (an SSE comment, a ping event, an empty chunk).
    virtual std::string stream_keepalive() { return ": keep-alive\n\n"; }

    // ---- not streamed ----
    virtual nlohmann::ordered_json whole(const Final& f, const Collected& c) = 0;
};

}  // namespace hearth::server
