// Anthropic's Messages API (peers.md §1.5): POST /v1/messages and /v1/messages/count_tokens, so
// tools built for it (Claude Code with ANTHROPIC_BASE_URL, the Anthropic SDKs) run on a local
// model. Translation only: request JSON -> the service's inputs, and the service's outputs ->
// the message object and the streamed event sequence (message_start, content_block_start/delta/
// stop, message_delta, message_stop), as Anthropic writes them (STYLE.md §8).
//
// Request mapping (fields as Anthropic documents them):
//   system (a string or text blocks, joined by a blank line) -> a leading system message;
//   messages: text blocks (joined by a blank line) -> content; an assistant's tool_use blocks ->
//   tool_calls; thinking blocks -> the assistant's thinking (the signature is not checked;
//   redacted_thinking is dropped); a user's tool_result blocks -> one "tool" message each
//   (content a string or text blocks; is_error prefixes "Error: "), placed before the user's own
//   text; image and other block types -> 400 naming them.
//   max_tokens (required, >= 1) -> num_predict; temperature, top_p, top_k, stop_sequences ->
//   Ollama's options of those names (stop); Ollama's `options` object is accepted as an
//   extension and the Anthropic fields win over it.
//   tools [{name, description, input_schema}] -> OpenAI function schemas; tool_choice auto/any/
//   tool/none -> "auto"/"required"/<name>/"none".
//   thinking {type: enabled} -> think on (budget_tokens is not enforced: the engine has no
//   thinking budget yet), {type: disabled} -> off, {type: adaptive} or absent -> the model's
//   own default (Ollama's behaviour; Anthropic's default would be off).
//   metadata and unknown fields are ignored, as Anthropic's SDKs send fields of newer versions.
//
// Usage: as Anthropic defines it, input_tokens + cache_read_input_tokens (prompt tokens reused
// from hearth's prefix cache) + cache_creation_input_tokens (always 0) is the whole prompt.
// message_start cannot know the cache split yet and reports the whole prompt as input_tokens;
// message_delta then reports all four counts (cumulative, as Anthropic's does), which is what
// the SDKs keep.
//
// stop_reason, first that applies: "tool_use" (the reply holds tool calls: the parsers return
// only whole calls, so whatever ended the generation afterwards, the client should run them),
// "max_tokens" (num_predict reached), "stop_sequence" (one of the request's stop_sequences ended
// it: see which_stop_sequence), else "end_turn" (the model ended its turn; also a cancelled
// request).
//
// Block order: streamed, blocks come in the order the model wrote them; the whole message puts
// them as thinking, text, tool_use (the collected reply keeps no interleaving; models write
// their calls last).
#pragma once

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "base/status.h"
#include "server/service.h"
#include "server/writer.h"

namespace hearth::server::anthropic {

using json = nlohmann::ordered_json;

// {"type": "error", "error": {"type", "message"}} with the type Anthropic uses for this HTTP
// status (invalid_request_error, authentication_error, permission_error, not_found_error,
// request_too_large, rate_limit_error, api_error, overloaded_error).
json error_json(int http_status, const std::string& message);

// A parsed POST /v1/messages (or count_tokens) body.
struct MessagesRequest {
    TextInput input;                          // chat, messages in the template's shape
    bool stream = false;
    std::vector<std::string> stop_sequences;  // as given (also in input.options["stop"])
};

// The body as a JSON object, then its fields. Errors are invalid_argument naming the field
// ("field \"messages[1].content[0].type\" ...", "max_tokens is required"). count_tokens takes the
// same body without max_tokens (and ignores stream and sampling).
Result<json> parse_body(const std::string& body);
Result<MessagesRequest> parse_messages(const json& body, bool count_tokens = false);

// An error of the service in Anthropic's words where a client depends on them: an over-long
// prompt becomes "prompt is too long: N tokens > M maximum ..." (Claude Code compacts its
// conversation on that text). Others pass through.
Status anthropic_status(const Status& s);

// "msg_" / "toolu_" + 24 random base-62 characters, like Anthropic's ids.
std::string random_id(const char* prefix);

// Which of `stop_sequences` ended a generation whose whole output (every generated token,
// detokenized: it includes the stop string the engine cut from the reply) is `generated`: the
// one that starts first, ties to the earlier in the list (the engine's StopMatcher rule); -1
// when none occurs (the model ended with an end-of-generation token, or a template stop string
// came first). Empty sequences never match.
int which_stop_sequence(const std::string& generated, const std::vector<std::string>& stop_sequences);

struct WriterParams {
    std::string model;         // as the request named it
    std::string id;            // the message id ("msg_...")
    int64_t input_tokens = 0;  // the prompt, for message_start
    std::vector<std::string> stop_sequences;
    // The text of the generated tokens (Final::stats.tokens), to tell which stop sequence ended
    // the reply; null: a "stop" ending reports end_turn.
    std::function<std::string(const std::vector<int32_t>&)> detokenize;
    // Tool-use block ids; null: random_id("toolu_").
    std::function<std::string()> tool_id;
};

// Writes /v1/messages: SSE events ("event: <name>\ndata: <json>\n\n") when streamed, the message
// object when not. Streamed, a content block is opened when the kind of output changes
// (thinking, text) and each tool call is a block of its own whose input arrives whole in one
// input_json_delta; indices count up from 0; a ping follows message_start. An error after the
// stream began is an `error` event, and the stream ends there.
std::unique_ptr<TextWriter> make_writer(WriterParams params);

// {"input_tokens": n}
json count_tokens_json(int64_t input_tokens);

}  // namespace hearth::server::anthropic
