// Anthropic's Messages API (peers.md): POST /v1/messages and /v1/messages/count_tokens.
// Translation only: request JSON -> the service's inputs, and the service's outputs -> the
// message object and the streamed event sequence (message_start, content_block_start/delta/
// stop, message_delta, message_stop), as Anthropic writes them (STYLE.md §8).
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace hearth::server::anthropic {

using json = nlohmann::ordered_json;

// {"type": "error", "error": {"type", "message"}} with the type Anthropic uses for this HTTP
// status (invalid_request_error, authentication_error, permission_error, not_found_error,
// request_too_large, rate_limit_error, api_error, overloaded_error).
json error_json(int http_status, const std::string& message);

}  // namespace hearth::server::anthropic
