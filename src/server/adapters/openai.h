// OpenAI's API (peers.md §2): /v1/chat/completions, /v1/completions, /v1/embeddings,
// /v1/models and /v1/responses. Translation only: request JSON -> the service's inputs, and the
// service's outputs -> response JSON and SSE events, field for field as OpenAI writes them
// (STYLE.md §8). Ollama's `options` object is accepted as an extension field.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace hearth::server::openai {

using json = nlohmann::ordered_json;

// {"error": {"message", "type", "param": null, "code"}} with the type OpenAI uses for this
// HTTP status (invalid_request_error, authentication_error, permission_error, not_found_error,
// rate_limit_error, server_error).
json error_json(int http_status, const std::string& message);

}  // namespace hearth::server::openai
