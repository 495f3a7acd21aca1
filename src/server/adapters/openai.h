// OpenAI's API (peers.md §1.5): /v1/chat/completions, /v1/completions, /v1/embeddings and
// /v1/models. Translation only: request JSON -> the service's inputs, and the service's outputs
// -> response JSON and SSE events, field for field as OpenAI writes them (STYLE.md §8). Ollama's
// `options` object and `keep_alive` are accepted as extension fields; the OpenAI fields win over
// `options`. Unknown fields are ignored (user, metadata, store, parallel_tool_calls, ...).
//
// Request errors are invalid_argument with a message naming the field ("field \"temperature\"
// must be a number"), answered 400 in OpenAI's error shape.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "base/status.h"
#include "server/service.h"
#include "server/writer.h"
#include "store/store.h"

namespace hearth::server::openai {

using json = nlohmann::ordered_json;

// {"error": {"message", "type", "param": null, "code"}} with the type OpenAI uses for this
// HTTP status (invalid_request_error, authentication_error, permission_error, not_found_error,
// rate_limit_error, server_error).
json error_json(int http_status, const std::string& message);

// A service error as OpenAI answers it: an unknown model is 404 "model \"x\" not found, try
// pulling it first" with code model_not_found; a prompt longer than the context is 400 with code
// context_length_exceeded; the rest keep the service's status and message.
struct ErrorReply {
    int http_status = 500;
    json body;
};
ErrorReply error_reply(const Status& s, const std::string& model);
// GET /v1/models/{id} for a model the store does not have.
ErrorReply model_not_found(const std::string& model);

// The body as a JSON object: invalid_argument "invalid JSON: ..." / "missing request body" /
// "the request body must be a JSON object".
Result<json> parse_body(const std::string& body);

// A text request with the stream flags that decide how it is answered.
struct TextRequest {
    TextInput in;
    bool stream = false;
    bool include_usage = false;  // stream_options.include_usage
};

// POST /v1/chat/completions. Messages become the chat templates' shape (content a string,
// tool-call arguments an object, tool results named after their call); image or audio parts
// are refused (no multimodal model yet); n other than 1 is refused.
Result<TextRequest> parse_chat(const json& body);
// POST /v1/completions: a raw prompt (no template), max_tokens 16 unless given, logprobs an
// integer 0..5 (the alternatives per token). echo, token prompts and n/best_of > 1 are refused.
Result<TextRequest> parse_completion(const json& body);

struct EmbedRequest {
    EmbedInput in;
    bool base64 = false;  // encoding_format "base64": little-endian float32 bytes
};
// POST /v1/embeddings: input a string or an array of strings (token arrays refused).
Result<EmbedRequest> parse_embeddings(const json& body);

// ---- responses ----

// What every response of one request repeats.
struct ReplyInfo {
    std::string id;       // "chatcmpl-..." / "cmpl-..."
    int64_t created = 0;  // unix seconds
    std::string model;    // as the request named it
    bool include_usage = false;
    bool logprobs = false;       // the request asked for logprobs
    uint64_t id_seed = 0;        // seeds the "call_..." ids given to tool calls
};

// "<prefix><24 random letters and digits>".
std::string random_id(const std::string& prefix);

// Writes chat completions: SSE chat.completion.chunk events ending in "data: [DONE]" when
// streamed, one chat.completion object when not.
std::unique_ptr<TextWriter> make_chat_writer(const ReplyInfo& info);
// Writes legacy completions (object text_completion), streamed or whole.
std::unique_ptr<TextWriter> make_completion_writer(const ReplyInfo& info);

// {"prompt_tokens", "completion_tokens", "total_tokens", "prompt_tokens_details": {"cached_tokens"}}
json usage_json(const Final& f);
// Chat logprobs: {"content": [{token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]}],
// "refusal": null}.
json chat_logprobs_json(const std::vector<runtime::TokenLogprob>& lps);
// Legacy logprobs: {tokens, token_logprobs, top_logprobs: [{token: logprob}], text_offset};
// offsets count bytes from `offset`, the length of the text before these tokens.
json completion_logprobs_json(const std::vector<runtime::TokenLogprob>& lps, int64_t offset);

// POST /v1/embeddings answer; `model` as the request named it.
json embeddings_response(const EmbedOutput& out, const std::string& model, bool base64);
// Little-endian float32 bytes, base64 (RFC 4648, padded).
std::string base64_floats(const std::vector<float>& v);

// GET /v1/models entry: {id, object: "model", created (unix s), owned_by (the namespace)}.
json model_json(const store::ModelRef& ref, const std::string& id);

}  // namespace hearth::server::openai
