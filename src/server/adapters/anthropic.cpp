#include "server/adapters/anthropic.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <random>
#include "server/adapters/fields.h"

namespace hearth::server::anthropic {
namespace {

using fields::invalid;
using fields::present;
using fields::type_error;

constexpr const char* kBlockSeparator = "\n\n";  // between text blocks that become one message

// A string, or an array of text blocks (system, tool_result content), as one text.
Status text_or_text_blocks(const json& v, const std::string& where, std::string& out) {
    if (v.is_string()) {
        out = v.get<std::string>();
        return {};
    }
    if (!v.is_array()) return type_error(where, "a string or an array of text blocks");
    for (size_t i = 0; i < v.size(); ++i) {
        const auto& b = v[i];
        const std::string bw = strformat("%s[%zu]", where.c_str(), i);
        if (!b.is_object() || !present(b, "type") || !b["type"].is_string())
            return invalid(bw + ".type is required");
        const std::string type = b["type"].get<std::string>();
        if (type == "image")
            return invalid(bw + ": images are not supported: hearth runs no vision (multimodal) model yet");
        if (type != "text") return invalid(bw + ": content block type \"" + type + "\" is not supported here (text only)");
        if (!present(b, "text") || !b["text"].is_string()) return type_error(bw + ".text", "a string");
        if (!out.empty()) out += kBlockSeparator;
        out += b["text"].get<std::string>();
    }
    return {};
}

// tool_use id -> tool name, from the assistant turns seen so far (a tool_result names only the
// id; templates print the tool's name).
using ToolNames = std::map<std::string, std::string>;

// One Anthropic message -> the template's messages (a user turn with tool results gives one
// "tool" message per result, then the user's text if any).
Status convert_message(const json& m, const std::string& where, ToolNames& names, json& out) {
    if (!m.is_object()) return type_error(where, "an object");
    if (!present(m, "role") || !m["role"].is_string()) return invalid(where + ".role is required (user or assistant)");
    const std::string role = m["role"].get<std::string>();
    if (role == "system")
        return invalid(where + ".role \"system\" is not allowed: put the system prompt in the top-level \"system\" field");
    if (role != "user" && role != "assistant")
        return invalid(where + ".role \"" + role + "\" is not one of user, assistant");
    if (!present(m, "content")) return invalid(where + ".content is required");
    const json& content = m["content"];
    if (content.is_string()) {
        out.push_back({{"role", role}, {"content", content.get<std::string>()}});
        return {};
    }
    if (!content.is_array()) return type_error(where + ".content", "a string or an array of content blocks");

    std::string text, thinking;
    json tool_calls = json::array();
    json tool_results = json::array();
    for (size_t i = 0; i < content.size(); ++i) {
        const auto& b = content[i];
        const std::string bw = strformat("%s.content[%zu]", where.c_str(), i);
        if (!b.is_object()) return type_error(bw, "an object");
        if (!present(b, "type") || !b["type"].is_string()) return invalid(bw + ".type is required");
        const std::string type = b["type"].get<std::string>();
        if (type == "text") {
            if (!present(b, "text") || !b["text"].is_string()) return type_error(bw + ".text", "a string");
            if (!text.empty()) text += kBlockSeparator;
            text += b["text"].get<std::string>();
        } else if (type == "image") {
            return invalid(bw + ": images are not supported: hearth runs no vision (multimodal) model yet");
        } else if (type == "tool_use") {
            if (role != "assistant") return invalid(bw + ": tool_use blocks belong to assistant messages");
            if (!present(b, "id") || !b["id"].is_string()) return type_error(bw + ".id", "a string");
            if (!present(b, "name") || !b["name"].is_string()) return type_error(bw + ".name", "a string");
            json input = json::object();
            if (present(b, "input")) {
                if (!b["input"].is_object()) return type_error(bw + ".input", "an object");
                input = b["input"];
            }
            names[b["id"].get<std::string>()] = b["name"].get<std::string>();
            tool_calls.push_back({{"type", "function"},
                                  {"id", b["id"]},
                                  {"function", {{"name", b["name"]}, {"arguments", std::move(input)}}}});
        } else if (type == "tool_result") {
            if (role != "user") return invalid(bw + ": tool_result blocks belong to user messages");
            if (!present(b, "tool_use_id") || !b["tool_use_id"].is_string())
                return type_error(bw + ".tool_use_id", "a string");
            std::string result;
            if (present(b, "content")) HEARTH_TRY(text_or_text_blocks(b["content"], bw + ".content", result));
            bool is_error = false;
            if (present(b, "is_error")) {
                if (!b["is_error"].is_boolean()) return type_error(bw + ".is_error", "a boolean");
                is_error = b["is_error"].get<bool>();
            }
            // Templates have no field for a failed call: the model reads it in the text.
            if (is_error) result = "Error: " + result;
            const std::string id = b["tool_use_id"].get<std::string>();
            json msg = {{"role", "tool"}, {"content", result}, {"tool_call_id", id}};
            if (auto it = names.find(id); it != names.end()) {
                msg["tool_name"] = it->second;
                msg["name"] = it->second;
            }
            tool_results.push_back(std::move(msg));
        } else if (type == "thinking") {
            if (!present(b, "thinking") || !b["thinking"].is_string()) return type_error(bw + ".thinking", "a string");
            if (!thinking.empty()) thinking += kBlockSeparator;
            thinking += b["thinking"].get<std::string>();
        } else if (type == "redacted_thinking") {
            // Encrypted by Anthropic's models; nothing a local model can read.
        } else {
            return invalid(bw + ": content block type \"" + type + "\" is not supported");
        }
    }
    for (auto& r : tool_results) out.push_back(std::move(r));
    if (!tool_results.empty() && text.empty()) return {};
    json msg = {{"role", role}, {"content", text}};
    if (!thinking.empty()) {
        msg["thinking"] = thinking;
        msg["reasoning_content"] = thinking;  // the name Hugging Face templates read
    }
    if (!tool_calls.empty()) msg["tool_calls"] = std::move(tool_calls);
    out.push_back(std::move(msg));
    return {};
}

Status convert_tools(const json& tools, TextInput& in) {
    if (!tools.is_array()) return type_error("tools", "an array");
    json out = json::array();
    for (size_t i = 0; i < tools.size(); ++i) {
        const auto& t = tools[i];
        const std::string where = strformat("tools[%zu]", i);
        if (!t.is_object()) return type_error(where, "an object");
        if (present(t, "type")) {
            if (!t["type"].is_string()) return type_error(where + ".type", "a string");
            const std::string type = t["type"].get<std::string>();
            if (type != "custom")
                return invalid(where + ": tool type \"" + type +
                               "\" (a tool Anthropic runs or defines) is not supported; define it with name, "
                               "description and input_schema");
        }
        if (!present(t, "name") || !t["name"].is_string() || t["name"].get<std::string>().empty())
            return invalid(where + ".name is required");
        json fn = {{"name", t["name"]}};
        if (present(t, "description")) {
            if (!t["description"].is_string()) return type_error(where + ".description", "a string");
            fn["description"] = t["description"];
        }
        if (!present(t, "input_schema")) return invalid(where + ".input_schema is required");
        if (!t["input_schema"].is_object()) return type_error(where + ".input_schema", "a JSON schema object");
        fn["parameters"] = t["input_schema"];
        out.push_back({{"type", "function"}, {"function", std::move(fn)}});
    }
    if (!out.empty()) in.tools = std::move(out);
    return {};
}

Status convert_tool_choice(const json& v, TextInput& in) {
    if (!v.is_object() || !present(v, "type") || !v["type"].is_string())
        return type_error("tool_choice", "an object with a \"type\" (auto, any, tool or none)");
    const std::string type = v["type"].get<std::string>();
    if (type == "auto") {
        in.tool_choice = "auto";
    } else if (type == "any") {
        in.tool_choice = "required";
    } else if (type == "none") {
        in.tool_choice = "none";
    } else if (type == "tool") {
        if (!present(v, "name") || !v["name"].is_string() || v["name"].get<std::string>().empty())
            return invalid("tool_choice.name is required when tool_choice.type is \"tool\"");
        const std::string name = v["name"].get<std::string>();
        bool known = false;
        if (in.tools.is_array())
            for (const auto& t : in.tools) known = known || t["function"]["name"] == name;
        if (!known) return invalid("tool_choice.name \"" + name + "\" is not one of the request's tools");
        in.tool_choice = name;
    } else {
        return invalid("tool_choice.type \"" + type + "\" is not one of auto, any, tool, none");
    }
    // disable_parallel_tool_use: accepted; the parsers return every call the model writes.
    return {};
}

Status convert_thinking(const json& v, TextInput& in) {
    if (!v.is_object() || !present(v, "type") || !v["type"].is_string())
        return type_error("thinking", "an object with a \"type\" (enabled or disabled)");
    const std::string type = v["type"].get<std::string>();
    if (type == "enabled") {
        if (present(v, "budget_tokens") && !v["budget_tokens"].is_number_integer())
            return type_error("thinking.budget_tokens", "an integer");
        in.think.mode = chat::Think::Mode::on;
        in.think_if_supported = true;  // Claude Code asks for thinking whatever the model
    } else if (type == "disabled") {
        in.think.mode = chat::Think::Mode::off;
    } else if (type == "adaptive") {
        in.think.mode = chat::Think::Mode::unset;  // the model decides: its template's default
    } else {
        return invalid("thinking.type \"" + type + "\" is not one of enabled, disabled, adaptive");
    }
    return {};
}

Status sampling_fields(const json& body, bool count_tokens, MessagesRequest& r) {
    nlohmann::json& opt = r.input.options;
    if (present(body, "options")) {
        if (!body["options"].is_object()) return type_error("options", "an object");
        opt = nlohmann::json::parse(body["options"].dump());
    } else {
        opt = nlohmann::json::object();
    }
    if (!count_tokens) {
        if (!present(body, "max_tokens")) return invalid("max_tokens is required");
        const auto& mt = body["max_tokens"];
        if (!mt.is_number_integer() || mt.get<int64_t>() < 1)
            return type_error("max_tokens", "an integer of at least 1");
        opt["num_predict"] = mt.get<int64_t>();
    }
    for (const char* f : {"temperature", "top_p"}) {
        if (!present(body, f)) continue;
        if (!body[f].is_number()) return type_error(f, "a number");
        opt[f] = body[f].get<double>();
    }
    if (present(body, "top_k")) {
        if (!body["top_k"].is_number_integer()) return type_error("top_k", "an integer");
        opt["top_k"] = body["top_k"].get<int64_t>();
    }
    if (present(body, "stop_sequences")) {
        const auto& s = body["stop_sequences"];
        if (!s.is_array()) return type_error("stop_sequences", "an array of strings");
        for (size_t i = 0; i < s.size(); ++i) {
            if (!s[i].is_string()) return type_error(strformat("stop_sequences[%zu]", i), "a string");
            r.stop_sequences.push_back(s[i].get<std::string>());
        }
        if (!r.stop_sequences.empty()) opt["stop"] = r.stop_sequences;
    }
    return {};
}

}  // namespace

json error_json(int http_status, const std::string& message) {
    const char* type = "invalid_request_error";
    switch (http_status) {
    case 401: type = "authentication_error"; break;
    case 403: type = "permission_error"; break;
    case 404: type = "not_found_error"; break;
    case 413: type = "request_too_large"; break;
    case 429: type = "rate_limit_error"; break;
    case 503: type = "overloaded_error"; break;
    default:
        if (http_status >= 500) type = "api_error";
    }
    return {{"type", "error"}, {"error", {{"type", type}, {"message", message}}}};
}

Result<json> parse_body(const std::string& body) {
    if (body.empty()) return invalid("missing request body");
    json j;
    try {
        j = json::parse(body);
    } catch (const nlohmann::json::parse_error& e) {
        return invalid(std::string("invalid JSON: ") + e.what());
    }
    if (!j.is_object()) return invalid("the request body must be a JSON object");
    return j;
}

Result<MessagesRequest> parse_messages(const json& body, bool count_tokens) {
    MessagesRequest r;
    TextInput& in = r.input;
    in.chat = true;
    if (!present(body, "model")) return invalid("model is required");
    if (!body["model"].is_string()) return type_error("model", "a string");
    in.model = body["model"].get<std::string>();
    if (in.model.empty()) return invalid("model is required");
    if (!count_tokens && present(body, "stream")) {
        if (!body["stream"].is_boolean()) return type_error("stream", "a boolean");
        r.stream = body["stream"].get<bool>();
    }
    HEARTH_TRY(sampling_fields(body, count_tokens, r));
    // Tools first: tool_choice names one of them.
    if (present(body, "tools")) HEARTH_TRY(convert_tools(body["tools"], in));
    if (present(body, "tool_choice")) HEARTH_TRY(convert_tool_choice(body["tool_choice"], in));
    if (present(body, "thinking")) HEARTH_TRY(convert_thinking(body["thinking"], in));

    if (present(body, "system")) {
        std::string system;
        HEARTH_TRY(text_or_text_blocks(body["system"], "system", system));
        if (!system.empty()) in.messages.push_back({{"role", "system"}, {"content", system}});
    }
    if (!present(body, "messages")) return invalid("messages is required");
    const auto& msgs = body["messages"];
    if (!msgs.is_array()) return type_error("messages", "an array");
    if (msgs.empty()) return invalid("messages: at least one message is required");
    ToolNames names;
    for (size_t i = 0; i < msgs.size(); ++i)
        HEARTH_TRY(convert_message(msgs[i], strformat("messages[%zu]", i), names, in.messages));
    return r;
}

Status anthropic_status(const Status& s) {
    if (s.code() != StatusCode::out_of_range) return s;
    // Service::generate: "the prompt is N tokens, more than the context holds (num_ctx M, ...".
    unsigned long long n = 0, ctx = 0;
    if (std::sscanf(s.message().c_str(), "the prompt is %llu tokens, more than the context holds (num_ctx %llu", &n,
                    &ctx) == 2)
        return error(StatusCode::out_of_range, strformat("prompt is too long: %llu tokens > %llu maximum (", n,
                                                         ctx > 0 ? ctx - 1 : 0) + s.message() + ")");
    return error(StatusCode::out_of_range, "prompt is too long: " + s.message());
}

std::string random_id(const char* prefix) {
    static constexpr char kChars[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    std::random_device rd;
    std::mt19937_64 gen((uint64_t)rd() << 32 ^ rd());
    std::string id = prefix;
    for (int i = 0; i < 24; ++i) id += kChars[gen() % 62];
    return id;
}

int which_stop_sequence(const std::string& generated, const std::vector<std::string>& stop_sequences) {
    int best = -1;
    size_t best_at = std::string::npos;
    for (size_t i = 0; i < stop_sequences.size(); ++i) {
        if (stop_sequences[i].empty()) continue;
        const size_t at = generated.find(stop_sequences[i]);
        if (at != std::string::npos && (best < 0 || at < best_at)) {
            best = (int)i;
            best_at = at;
        }
    }
    return best;
}

// ---- responses ----

namespace {

std::string sse(const char* event, const json& data) {
    return std::string("event: ") + event + "\ndata: " +
           data.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n\n";
}

class Writer : public TextWriter {
public:
    explicit Writer(WriterParams p) : p_(std::move(p)) {
        if (!p_.tool_id) p_.tool_id = [] { return random_id("toolu_"); };
    }

    const char* stream_content_type() const override { return "text/event-stream"; }
    // Anthropic's own keepalive event.
    std::string stream_keepalive() override { return "event: ping\ndata: {\"type\":\"ping\"}\n\n"; }

    std::string stream_delta(const Delta& d) override {
        std::string out = start();
        if (!d.thinking.empty()) {
            out += open(Block::thinking);
            out += sse("content_block_delta", {{"type", "content_block_delta"},
                                               {"index", index_},
                                               {"delta", {{"type", "thinking_delta"}, {"thinking", d.thinking}}}});
        }
        if (!d.content.empty()) {
            out += open(Block::text);
            out += sse("content_block_delta", {{"type", "content_block_delta"},
                                               {"index", index_},
                                               {"delta", {{"type", "text_delta"}, {"text", d.content}}}});
        }
        for (const auto& call : d.tool_calls) {
            out += close();
            had_tool_calls_ = true;
            out += sse("content_block_start", {{"type", "content_block_start"},
                                               {"index", index_},
                                               {"content_block", {{"type", "tool_use"},
                                                                  {"id", p_.tool_id()},
                                                                  {"name", call.name},
                                                                  {"input", json::object()}}}});
            out += sse("content_block_delta",
                       {{"type", "content_block_delta"},
                        {"index", index_},
                        {"delta", {{"type", "input_json_delta"},
                                   {"partial_json", call.arguments.dump(-1, ' ', false,
                                                                        nlohmann::json::error_handler_t::replace)}}}});
            out += sse("content_block_stop", {{"type", "content_block_stop"}, {"index", index_}});
            ++index_;
        }
        return out;
    }

    std::string stream_final(const Final& f) override {
        std::string out = start();
        out += close();
        const auto [reason, sequence] = stop_reason(f, had_tool_calls_);
        out += sse("message_delta", {{"type", "message_delta"},
                                     {"delta", {{"stop_reason", reason}, {"stop_sequence", sequence}}},
                                     {"usage", usage(f)}});
        out += sse("message_stop", {{"type", "message_stop"}});
        return out;
    }

    std::string stream_error(const Status& s) override {
        const Status a = anthropic_status(s);
        return sse("error", error_json(http_status(a), a.message()));
    }

    json whole(const Final& f, const Collected& c) override {
        json content = json::array();
        if (!c.thinking.empty()) content.push_back({{"type", "thinking"}, {"thinking", c.thinking}, {"signature", ""}});
        if (!c.content.empty()) content.push_back({{"type", "text"}, {"text", c.content}});
        for (const auto& call : c.tool_calls)
            content.push_back({{"type", "tool_use"}, {"id", p_.tool_id()}, {"name", call.name}, {"input", call.arguments}});
        const auto [reason, sequence] = stop_reason(f, !c.tool_calls.empty());
        return {{"id", p_.id},     {"type", "message"},       {"role", "assistant"},         {"model", p_.model},
                {"content", content}, {"stop_reason", reason}, {"stop_sequence", sequence}, {"usage", usage(f)}};
    }

private:
    enum class Block { none, thinking, text };

    // message_start and a ping, once, before anything else.
    std::string start() {
        if (started_) return {};
        started_ = true;
        json message = {{"id", p_.id},
                        {"type", "message"},
                        {"role", "assistant"},
                        {"model", p_.model},
                        {"content", json::array()},
                        {"stop_reason", nullptr},
                        {"stop_sequence", nullptr},
                        {"usage", {{"input_tokens", p_.input_tokens},
                                   {"cache_creation_input_tokens", 0},
                                   {"cache_read_input_tokens", 0},
                                   {"output_tokens", 0}}}};
        return sse("message_start", {{"type", "message_start"}, {"message", std::move(message)}}) +
               sse("ping", {{"type", "ping"}});
    }

    // Makes `b` the open block: closes another, starts this one.
    std::string open(Block b) {
        if (open_ == b) return {};
        std::string out = close();
        open_ = b;
        json block = b == Block::thinking ? json{{"type", "thinking"}, {"thinking", ""}, {"signature", ""}}
                                          : json{{"type", "text"}, {"text", ""}};
        out += sse("content_block_start", {{"type", "content_block_start"}, {"index", index_}, {"content_block", block}});
        return out;
    }

    std::string close() {
        if (open_ == Block::none) return {};
        open_ = Block::none;
        return sse("content_block_stop", {{"type", "content_block_stop"}, {"index", index_++}});
    }

    // {stop_reason, stop_sequence}
    // A parsed tool call is whole whatever ended the generation after it, and "tool_use" is
    // what makes a client run it and continue (as Ollama maps it).
    std::pair<json, json> stop_reason(const Final& f, bool tool_calls) const {
        if (tool_calls) return {"tool_use", nullptr};
        if (f.done_reason == "length") return {"max_tokens", nullptr};
        if (f.done_reason == "stop" && !p_.stop_sequences.empty() && p_.detokenize) {
            const int i = which_stop_sequence(p_.detokenize(f.stats.tokens), p_.stop_sequences);
            if (i >= 0) return {"stop_sequence", p_.stop_sequences[(size_t)i]};
        }
        return {"end_turn", nullptr};
    }

    static json usage(const Final& f) {
        const int64_t cached = std::min(f.stats.cached_tokens, f.stats.prompt_tokens);
        return {{"input_tokens", f.stats.prompt_tokens - cached},
                {"cache_creation_input_tokens", 0},
                {"cache_read_input_tokens", cached},
                {"output_tokens", f.stats.generated_tokens}};
    }

    WriterParams p_;
    bool started_ = false;       // message_start went out
    Block open_ = Block::none;   // the block whose deltas are flowing (index_), if any
    int index_ = 0;              // the open block's index, else the next block's
    bool had_tool_calls_ = false;
};

}  // namespace

std::unique_ptr<TextWriter> make_writer(WriterParams params) { return std::make_unique<Writer>(std::move(params)); }

json count_tokens_json(int64_t input_tokens) { return {{"input_tokens", input_tokens}}; }

}  // namespace hearth::server::anthropic
