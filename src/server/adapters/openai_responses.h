// OpenAI's Responses API (POST /v1/responses; peers.md §1.5): request JSON -> the service's
// TextInput, and the service's outputs -> the response object and its streamed events, as
// OpenAI writes them. Translation only: no engine logic (STYLE.md §8).
//
// Stateless, as Ollama's: hearth stores no responses, so previous_response_id, conversation,
// background and item references are refused (400 "... not supported: hearth keeps no response
// state"); store is accepted and answered as false.
//
// Output items, in the order the model produces them: a reasoning item {type "reasoning",
// content [{type "reasoning_text"}]} for thinking, a message item {type "message", content
// [{type "output_text"}]} for text, one function_call item per tool call. The streamed
// sequence is response.created, response.in_progress, then per item output_item.added, its
// parts and deltas (content_part.added, output_text.delta / reasoning_text.delta, ...done,
// content_part.done; function_call_arguments.delta/.done for a call), output_item.done, and
// last response.completed (response.incomplete when max_output_tokens cut the answer,
// response.failed when it was cancelled). Every event carries "type" and "sequence_number"
// (0, 1, ...). An error after the status line is an `error` event followed by response.failed.
//
// Request errors are invalid_argument naming the field ("field \"input[2].content\" must be a
// string or an array of content parts"); the server answers them with OpenAI's error object.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "base/status.h"
#include "server/service.h"
#include "server/writer.h"

namespace hearth::server::openai_responses {

using json = nlohmann::ordered_json;

// What the response object echoes of the request (OpenAI's field names and defaults; null
// where the request left a setting to the model).
struct Echo {
    json instructions = nullptr;
    json max_output_tokens = nullptr;
    bool parallel_tool_calls = true;
    json reasoning = {{"effort", nullptr}, {"summary", nullptr}};
    json temperature = nullptr;  // null: the model's own default applies
    json text = {{"format", {{"type", "text"}}}};
    json tool_choice = "auto";
    json tools = json::array();
    json top_p = nullptr;
    std::string truncation = "disabled";
    json user = nullptr;
    json metadata = json::object();
};

struct Request {
    TextInput input;
    bool stream = false;
    Echo echo;
};

// The body (a JSON object) -> the service's chat input. input: a string (one user message) or
// an array of items (messages with role user/assistant/system/developer and text content;
// function_call; function_call_output; reasoning, kept as the next assistant turn's thinking);
// instructions: a leading system message. tools: function tools only; tool_choice:
// "auto"/"none"/"required"/{"type": "function", "name"}; text.format: text / json_object ->
// "json" / json_schema -> its schema; max_output_tokens -> num_predict; temperature, top_p;
// reasoning.effort: "none" -> think off, minimal/low -> "low", medium, high/xhigh -> "high";
// truncation "auto" -> truncate an over-long prompt; Ollama's `options` as an extension (the
// standard fields win). Ignored: metadata, user, store, include, parallel_tool_calls,
// service_tier, prompt_cache_key, safety_identifier, max_tool_calls.
// Errors (invalid_argument): a field of the wrong type, no input, images or files, a tool type
// other than function, state the server would have to keep.
Result<Request> parse_request(const json& body);

// Ids and clock for a writer; tests pass fixed ones.
struct WriterOptions {
    std::string model;            // as the request named it
    int64_t created_at = 0;       // Unix seconds
    // A new id with this prefix ("resp", "msg", "rs", "fc", "call"): "<prefix>_<random>".
    std::function<std::string(const std::string& prefix)> new_id;
    std::function<int64_t()> now;  // Unix seconds, for completed_at
};
WriterOptions default_writer_options(const std::string& model);

// The response object. `status` "in_progress" / "completed" / "incomplete" / "failed";
// `usage` null until the end.
json response_object(const std::string& id, const WriterOptions& o, const Echo& echo, const std::string& status,
                     const json& output, const json& usage, const json& incomplete_details, const json& error,
                     const json& completed_at);
json usage_json(const Final& f);

// Writes one /v1/responses answer: SSE events when streamed, the response object when not.
std::unique_ptr<TextWriter> make_writer(const Echo& echo, WriterOptions o);

}  // namespace hearth::server::openai_responses
