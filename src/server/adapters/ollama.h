// Ollama's native API (peers.md §1.2-1.4): request JSON -> the service's inputs, and the
// service's outputs -> response JSON, field for field as Ollama writes them. Translation only:
// no engine logic (STYLE.md §8). Durations are nanoseconds; times are RFC 3339 in UTC.
//
// Request errors are invalid_argument with a message naming the field ("field \"prompt\" must
// be a string"), which the server answers with 400 {"error": "..."}.
#pragma once

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "base/status.h"
#include "runtime/model_manager.h"
#include "server/service.h"
#include "server/writer.h"
#include "store/create.h"
#include "store/store.h"

namespace hearth::server::ollama {

using json = nlohmann::ordered_json;
using WallTime = std::chrono::system_clock::time_point;

// "2024-05-01T12:34:56.123456789Z"
std::string rfc3339(WallTime t);

// The body as a JSON object: invalid_argument "invalid JSON: ..." / "missing request body" /
// "the request body must be a JSON object".
Result<json> parse_body(const std::string& body);

// POST /api/generate and /api/chat. `stream` gets the request's stream flag (default true).
// Rejected clearly, never ignored: images (no vision support yet). The body is ordered JSON so a
// `format` schema keeps its properties in declaration order.
Result<TextInput> parse_generate(const json& body, bool& stream);
Result<TextInput> parse_chat(const json& body, bool& stream);
// POST /api/embed (input: string or array of strings) and the legacy /api/embeddings (prompt).
Result<EmbedInput> parse_embed(const json& body);
Result<EmbedInput> parse_embeddings(const json& body);

// A keep_alive value: a duration string ("5m", "1h", "-1") or a number of seconds.
Result<runtime::Duration> parse_keep_alive_field(const json& v);

// A required string field: invalid_argument "<field> is required" / "field ... must be a string".
Result<std::string> required_string(const json& body, const char* field);

// ---- responses ----
// One streamed generate chunk ("response", "thinking" when non-empty, done false; "logprobs"
// when the delta carries some).
json generate_chunk(const std::string& model, WallTime at, const Delta& d);
// The final object; `text`/`thinking` carry the whole reply for non-streamed requests ("" when
// streamed), and `logprobs` every token's entry (empty when streamed: the chunks had them).
// context only when the request had a template (not raw), as Ollama.
json generate_final(const std::string& model, WallTime at, const Final& f, const std::string& text,
                    const std::string& thinking, const std::vector<runtime::TokenLogprob>& logprobs = {});
json chat_chunk(const std::string& model, WallTime at, const Delta& d);
json chat_final(const std::string& model, WallTime at, const Final& f, const std::string& text,
                const std::string& thinking, const std::vector<chat::ToolCall>& tool_calls,
                const std::vector<runtime::TokenLogprob>& logprobs = {});
// Ollama's top-level "logprobs" array: [{"token", "logprob", "bytes", "top_logprobs": [{"token",
// "logprob", "bytes"}]}], "bytes" and "top_logprobs" left out when empty (Go's omitempty);
// "token" is the bytes as UTF-8, an incomplete or invalid sequence written as U+FFFD.
json logprobs_json(const std::vector<runtime::TokenLogprob>& logprobs);
json tool_calls_json(const std::vector<chat::ToolCall>& calls);
// Writes /api/generate (chat false) or /api/chat answers: NDJSON chunks and the final object
// when streamed, the final object with the whole reply when not.
std::unique_ptr<TextWriter> make_writer(bool chat, const std::string& model);
json embed_response(const EmbedOutput& out);
json embeddings_response(const EmbedOutput& out);
json error_json(const std::string& message);

// GET /api/tags: one entry per model (details from its GGUF, when readable).
json tags_entry(const store::ModelRef& ref, const store::GgufInfo* info);
json details_json(const store::GgufInfo& info);
// POST /api/show.
json show_response(const store::ModelRef& ref, const store::GgufInfo& info, bool verbose);
// GET /api/ps entry. expires_at: wall time of expiry; nullopt = never.
json ps_entry(const store::ModelRef& ref, const store::GgufInfo* info, const runtime::ModelStatus& st,
              std::optional<WallTime> expires_at);

// POST /api/create: Ollama's request {model, from, files {name: digest}, adapters, template,
// system, license (string or list), parameters, messages, quantize, requires, stream} or the older
// {name, modelfile} form (its FROM a store model or @sha256:<digest>; local paths are not read
// over the API). renderer, parser and draft_files are refused (unsupported), not ignored; an
// empty template or system means none, as in Ollama. `stream` defaults to true.
Result<store::CreateRequest> parse_create(const json& body, bool& stream);
// One streamed status object: {"status"}, plus "digest", "total" and "completed" while bytes move.
json create_status_json(const store::CreateStatus& s);

}  // namespace hearth::server::ollama
