#include "server/adapters/openai.h"

#include <charconv>
#include <chrono>
#include <cstring>
#include <cstdlib>
#include <map>
#include <random>

#include "runtime/model_manager.h"
#include "server/adapters/fields.h"
#include "store/name.h"

namespace hearth::server::openai {
namespace {

using fields::get_bool;
using fields::get_string;
using fields::present;
using fields::type_error;

constexpr const char* kFingerprint = "fp_hearth";

Status bad(const std::string& message) { return error(StatusCode::invalid_argument, message); }

// An integer field (a float with no fraction is accepted, as OpenAI's validator does).
Status get_int(const json& obj, const char* field, std::optional<int64_t>& out) {
    if (!present(obj, field)) return {};
    const json& v = obj[field];
    if (v.is_number_integer()) {
        out = v.get<int64_t>();
        return {};
    }
    if (v.is_number_float()) {
        const double d = v.get<double>();
        if (d == (double)(int64_t)d && d > -9e18 && d < 9e18) {
            out = (int64_t)d;
            return {};
        }
    }
    return type_error(field, "an integer");
}

Result<std::string> required_string(const json& body, const char* field) {
    if (!present(body, field)) return bad(std::string(field) + " is required");
    if (!body[field].is_string()) return type_error(field, "a string");
    std::string s = body[field].get<std::string>();
    if (s.empty()) return bad(std::string(field) + " is required");
    return s;
}

// `options` (Ollama's, as an extension) and keep_alive.
Status extensions(const json& body, nlohmann::json& options, std::optional<runtime::Duration>& keep_alive) {
    if (present(body, "options")) {
        if (!body["options"].is_object()) return type_error("options", "an object");
        options = nlohmann::json::parse(body["options"].dump());
    }
    if (present(body, "keep_alive")) {
        const json& v = body["keep_alive"];
        if (!v.is_string() && !v.is_number())
            return type_error("keep_alive", "a duration string (\"5m\") or a number of seconds");
        auto d = v.is_string() ? runtime::parse_keep_alive(v.get<std::string>())
                               : runtime::keep_alive_from_seconds(v.get<double>());
        if (!d.ok()) return bad("field \"keep_alive\": " + d.status().message());
        keep_alive = *d;
    }
    return {};
}

// The sampling fields both text endpoints share, written over the `options` extension.
Status sampling_fields(const json& body, nlohmann::json& opts) {
    if (!opts.is_object()) opts = nlohmann::json::object();
    for (const char* f : {"temperature", "top_p", "frequency_penalty", "presence_penalty"}) {
        if (!present(body, f)) continue;
        if (!body[f].is_number()) return type_error(f, "a number");
        opts[f] = body[f].get<double>();
    }
    std::optional<int64_t> seed;
    HEARTH_TRY(get_int(body, "seed", seed));
    if (seed) opts["seed"] = *seed;
    if (present(body, "stop")) {
        const json& v = body["stop"];
        nlohmann::json stop = nlohmann::json::array();
        if (v.is_string()) {
            stop.push_back(v.get<std::string>());
        } else if (v.is_array()) {
            for (const auto& s : v) {
                if (!s.is_string()) return type_error("stop", "a string or an array of strings");
                stop.push_back(s.get<std::string>());
            }
        } else {
            return type_error("stop", "a string or an array of strings");
        }
        opts["stop"] = std::move(stop);
    }
    return {};
}

Status stream_fields(const json& body, TextRequest& r) {
    HEARTH_TRY(get_bool(body, "stream", r.stream));
    if (present(body, "stream_options")) {
        const json& so = body["stream_options"];
        if (!so.is_object()) return type_error("stream_options", "an object");
        if (present(so, "include_usage")) {
            if (!so["include_usage"].is_boolean()) return type_error("stream_options.include_usage", "a boolean");
            r.include_usage = so["include_usage"].get<bool>();
        }
    }
    return {};
}

Status only_one(const json& body, const char* field) {
    std::optional<int64_t> n;
    HEARTH_TRY(get_int(body, field, n));
    if (n && *n != 1)
        return bad(std::string(field) + " must be 1: hearth generates one choice per request (send several requests instead)");
    return {};
}

// ---- chat messages ----

// A message's content as one string: a string, null (when `null_ok`), or an array of text
// parts (joined by newlines, as vLLM does). Image, audio and file parts are refused.
Status content_text(const json& m, const std::string& where, bool null_ok, std::string& out) {
    out.clear();
    if (!m.contains("content") || m["content"].is_null()) {
        if (null_ok) return {};
        return bad(where + ".content is required");
    }
    const json& c = m["content"];
    if (c.is_string()) {
        out = c.get<std::string>();
        return {};
    }
    if (!c.is_array()) return type_error(where + ".content", "a string or an array of content parts");
    bool first = true;
    for (size_t k = 0; k < c.size(); ++k) {
        const json& p = c[k];
        const std::string pw = strformat("%s.content[%zu]", where.c_str(), k);
        if (!p.is_object() || !p.contains("type") || !p["type"].is_string())
            return bad(pw + ".type is required");
        const std::string type = p["type"].get<std::string>();
        if (type == "image_url" || type == "input_image")
            return bad("images are not supported: hearth runs no vision (multimodal) model yet (" + pw + ")");
        if (type == "input_audio") return bad("audio input is not supported: hearth runs no audio model yet (" + pw + ")");
        if (type == "file") return bad("file inputs are not supported (" + pw + "): send the text");
        const char* key = type == "text" ? "text" : type == "refusal" ? "refusal" : nullptr;
        if (!key) return bad(pw + ".type \"" + type + "\" is not supported (text parts only)");
        if (!p.contains(key) || !p[key].is_string()) return type_error(pw + "." + key, "a string");
        if (!first) out += "\n";
        out += p[key].get<std::string>();
        first = false;
    }
    return {};
}

Status convert_tool_calls(const json& calls, const std::string& where, json& out,
                          std::map<std::string, std::string>& names) {
    if (!calls.is_array()) return type_error(where + ".tool_calls", "an array");
    out = json::array();
    for (size_t k = 0; k < calls.size(); ++k) {
        const json& c = calls[k];
        const std::string cw = strformat("%s.tool_calls[%zu]", where.c_str(), k);
        if (!c.is_object() || !present(c, "function") || !c["function"].is_object())
            return bad(cw + ".function is required");
        const json& f = c["function"];
        if (!present(f, "name") || !f["name"].is_string()) return bad(cw + ".function.name is required");
        json args = json::object();
        if (present(f, "arguments")) {
            const json& a = f["arguments"];
            if (a.is_string()) {
                // OpenAI sends the arguments as a JSON string; the templates want the object.
                const std::string& s = a.get_ref<const std::string&>();
                if (!s.empty()) {
                    args = json::parse(s, nullptr, false);
                    if (args.is_discarded() || !args.is_object())
                        return bad(cw + ".function.arguments must be a JSON object encoded as a string");
                }
            } else if (a.is_object()) {
                args = a;
            } else {
                return type_error(cw + ".function.arguments", "a string of JSON");
            }
        }
        json call = json::object();
        if (present(c, "id")) {
            if (!c["id"].is_string()) return type_error(cw + ".id", "a string");
            call["id"] = c["id"];
            names[c["id"].get<std::string>()] = f["name"].get<std::string>();
        }
        call["type"] = "function";
        call["function"] = {{"name", f["name"]}, {"arguments", std::move(args)}};
        out.push_back(std::move(call));
    }
    return {};
}

Status convert_messages(const json& body, json& out) {
    if (!present(body, "messages")) return bad("messages is required");
    const json& msgs = body["messages"];
    if (!msgs.is_array()) return type_error("messages", "an array");
    if (msgs.empty()) return bad("messages must hold at least one message");
    std::map<std::string, std::string> call_names;  // tool call id -> function name, for tool results
    for (size_t i = 0; i < msgs.size(); ++i) {
        const json& m = msgs[i];
        const std::string where = strformat("messages[%zu]", i);
        if (!m.is_object()) return type_error(where, "an object");
        if (!present(m, "role") || !m["role"].is_string())
            return bad(where + ".role is required (system, developer, user, assistant or tool)");
        std::string role = m["role"].get<std::string>();
        if (role == "developer") role = "system";
        if (role != "system" && role != "user" && role != "assistant" && role != "tool")
            return bad(where + ".role \"" + role + "\" is not one of system, developer, user, assistant, tool");
        json msg = {{"role", role}};
        std::string content;
        HEARTH_TRY(content_text(m, where, role == "assistant", content));
        msg["content"] = content;
        if (role == "assistant") {
            for (const char* f : {"reasoning_content", "reasoning"}) {
                if (!present(m, f)) continue;
                if (!m[f].is_string()) return type_error(where + "." + f, "a string");
                msg["thinking"] = m[f];
                msg["reasoning_content"] = m[f];  // the name Hugging Face templates read
                break;
            }
            if (present(m, "tool_calls")) {
                json calls;
                HEARTH_TRY(convert_tool_calls(m["tool_calls"], where, calls, call_names));
                if (!calls.empty()) msg["tool_calls"] = std::move(calls);
            }
        }
        if (role == "tool") {
            std::string id, name;
            for (const char* f : {"tool_call_id", "name"})
                if (present(m, f) && !m[f].is_string()) return type_error(where + "." + f, "a string");
            HEARTH_TRY(get_string(m, "tool_call_id", id));
            HEARTH_TRY(get_string(m, "name", name));
            if (name.empty())
                if (auto it = call_names.find(id); it != call_names.end()) name = it->second;
            if (!id.empty()) msg["tool_call_id"] = id;
            if (!name.empty()) {
                msg["name"] = name;       // what most templates read
                msg["tool_name"] = name;  // Ollama's field
            }
        }
        out.push_back(std::move(msg));
    }
    return {};
}

Status read_tools(const json& body, TextInput& in) {
    if (present(body, "tools")) {
        const json& tools = body["tools"];
        if (!tools.is_array()) return type_error("tools", "an array");
        for (size_t i = 0; i < tools.size(); ++i) {
            const json& t = tools[i];
            const std::string where = strformat("tools[%zu]", i);
            if (!t.is_object()) return type_error(where, "an object");
            if (present(t, "type") && t["type"] != "function")
                return bad(where + ".type must be \"function\" (the only tool type hearth supports)");
            if (!present(t, "function") || !t["function"].is_object()) return bad(where + ".function is required");
            if (!present(t["function"], "name") || !t["function"]["name"].is_string())
                return bad(where + ".function.name is required");
        }
        if (!tools.empty()) in.tools = tools;
    }
    if (!present(body, "tool_choice")) return {};
    const json& v = body["tool_choice"];
    std::string choice;
    if (v.is_string()) {
        choice = v.get<std::string>();
        if (choice != "auto" && choice != "none" && choice != "required")
            return bad("tool_choice must be \"auto\", \"none\", \"required\" or {\"type\": \"function\", \"function\": {\"name\": ...}}");
    } else if (v.is_object()) {
        const json* name = nullptr;
        if (present(v, "function") && v["function"].is_object() && present(v["function"], "name")) name = &v["function"]["name"];
        else if (present(v, "name")) name = &v["name"];
        if ((present(v, "type") && v["type"] != "function") || !name || !name->is_string())
            return bad("tool_choice must be \"auto\", \"none\", \"required\" or {\"type\": \"function\", \"function\": {\"name\": ...}}");
        choice = name->get<std::string>();
        bool known = false;
        if (in.tools.is_array())
            for (const auto& t : in.tools) known = known || t["function"]["name"] == choice;
        if (!known) return bad("tool_choice names function \"" + choice + "\", which is not in tools");
    } else {
        return type_error("tool_choice", "a string or an object");
    }
    if (choice != "auto" && choice != "none" && !in.tools.is_array())
        return bad("tool_choice \"" + (v.is_string() ? choice : std::string("function")) + "\" needs tools");
    in.tool_choice = choice;
    return {};
}

Status read_response_format(const json& body, TextInput& in) {
    if (!present(body, "response_format")) return {};
    const json& rf = body["response_format"];
    if (!rf.is_object() || !present(rf, "type") || !rf["type"].is_string())
        return type_error("response_format", "an object with a \"type\" (text, json_object or json_schema)");
    const std::string type = rf["type"].get<std::string>();
    if (type == "text") return {};
    if (type == "json_object") {
        in.format = "json";
        return {};
    }
    if (type != "json_schema") return bad("response_format.type \"" + type + "\" is not text, json_object or json_schema");
    if (!present(rf, "json_schema") || !rf["json_schema"].is_object())
        return bad("response_format.json_schema is required when type is \"json_schema\"");
    const json& js = rf["json_schema"];
    if (!present(js, "schema")) {
        in.format = "json";  // a schema-less json_schema: any JSON object
        return {};
    }
    if (!js["schema"].is_object()) return type_error("response_format.json_schema.schema", "an object");
    in.format = js["schema"];
    return {};
}

Status read_reasoning(const json& body, TextInput& in) {
    std::string effort;
    const char* field = "reasoning_effort";
    if (present(body, "reasoning_effort")) {
        HEARTH_TRY(get_string(body, "reasoning_effort", effort));
    } else if (present(body, "reasoning")) {
        const json& r = body["reasoning"];
        if (!r.is_object()) return type_error("reasoning", "an object");
        field = "reasoning.effort";
        if (present(r, "effort")) {
            if (!r["effort"].is_string()) return type_error("reasoning.effort", "a string");
            effort = r["effort"].get<std::string>();
        }
    }
    if (effort.empty()) return {};
    if (effort == "none") {
        in.think.mode = chat::Think::Mode::off;
        return {};
    }
    std::string level = effort;
    if (effort == "minimal") level = "low";
    else if (effort == "xhigh" || effort == "max") level = "high";
    if (level != "low" && level != "medium" && level != "high")
        return bad(std::string(field) + " \"" + effort + "\" is not one of none, minimal, low, medium, high");
    in.think.mode = chat::Think::Mode::on;
    in.think.level = level;
    in.think_if_supported = true;  // clients send an effort whatever the model; one that cannot think answers
    return {};
}

// Shortest decimal that reads back as the same float: -0.1, not -0.10000000149011612.
double clean(float f) {
    char buf[32];
    auto r = std::to_chars(buf, buf + sizeof buf - 1, f);
    *r.ptr = 0;
    return std::strtod(buf, nullptr);
}

json bytes_json(const std::string& s) {
    json b = json::array();
    for (unsigned char c : s) b.push_back((int)c);
    return b;
}

std::string sse(const json& j) {
    return "data: " + j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n\n";
}

constexpr const char* kDone = "data: [DONE]\n\n";

// Calls the parser returned are whole, so they are to be run even when the text after them was
// cut off (as vLLM answers; llama.cpp says "length").
const char* finish_reason(const Final& f, bool called_tools) {
    if (called_tools) return "tool_calls";
    return f.done_reason == "length" ? "length" : "stop";
}

class ChatWriter : public TextWriter {
public:
    explicit ChatWriter(const ReplyInfo& info) : info_(info), rng_(info.id_seed) {}
    const char* stream_content_type() const override { return "text/event-stream"; }

    std::string stream_delta(const Delta& d) override {
        std::string out = start();
        json delta = json::object();
        if (!d.thinking.empty()) delta["reasoning_content"] = d.thinking;
        if (!d.content.empty() || (d.thinking.empty() && d.tool_calls.empty())) delta["content"] = d.content;
        if (!d.tool_calls.empty()) {
            json calls = json::array();
            for (const auto& c : d.tool_calls) calls.push_back(call_json(c, /*with_index=*/true));
            delta["tool_calls"] = std::move(calls);
            called_tools_ = true;
        }
        json lp = info_.logprobs && !d.logprobs.empty() ? chat_logprobs_json(d.logprobs) : json(nullptr);
        return out + sse(chunk(std::move(delta), std::move(lp), nullptr));
    }

    std::string stream_final(const Final& f) override {
        std::string out = start();
        out += sse(chunk(json::object(), nullptr, finish_reason(f, called_tools_)));
        if (info_.include_usage) {
            json j = head("chat.completion.chunk");
            j["choices"] = json::array();
            j["usage"] = usage_json(f);
            out += sse(j);
        }
        return out + kDone;
    }

    std::string stream_error(const Status& s) override { return sse(error_reply(s, info_.model).body); }

    json whole(const Final& f, const Collected& c) override {
        json msg = {{"role", "assistant"}};
        msg["content"] = c.content.empty() && !c.tool_calls.empty() ? json(nullptr) : json(c.content);
        if (!c.thinking.empty()) msg["reasoning_content"] = c.thinking;
        if (!c.tool_calls.empty()) {
            json calls = json::array();
            for (const auto& call : c.tool_calls) calls.push_back(call_json(call, /*with_index=*/false));
            msg["tool_calls"] = std::move(calls);
        }
        msg["refusal"] = nullptr;
        json choice = {{"index", 0},
                       {"message", std::move(msg)},
                       {"logprobs", info_.logprobs ? chat_logprobs_json(c.logprobs) : json(nullptr)},
                       {"finish_reason", finish_reason(f, !c.tool_calls.empty())}};
        json j = head("chat.completion");
        j["choices"] = json::array({std::move(choice)});
        j["usage"] = usage_json(f);
        return j;
    }

private:
    json head(const char* object) const {
        return {{"id", info_.id}, {"object", object}, {"created", info_.created}, {"model", info_.model},
                {"system_fingerprint", kFingerprint}};
    }
    json chunk(json delta, json logprobs, json finish) const {
        json j = head("chat.completion.chunk");
        j["choices"] = json::array(
            {{{"index", 0}, {"delta", std::move(delta)}, {"logprobs", std::move(logprobs)}, {"finish_reason", std::move(finish)}}});
        if (info_.include_usage) j["usage"] = nullptr;
        return j;
    }
    // The first chunk carries the role, as OpenAI's does.
    std::string start() {
        if (started_) return "";
        started_ = true;
        return sse(chunk({{"role", "assistant"}, {"content", ""}, {"refusal", nullptr}}, nullptr, nullptr));
    }
    // The parser's own ids where the model wrote one; "call_<n>" placeholders get ids unique
    // enough for a client to send back as tool_call_id.
    std::string call_id(const chat::ToolCall& c) {
        bool placeholder = c.id.empty();
        if (c.id.rfind("call_", 0) == 0 && c.id.size() > 5 &&
            c.id.find_first_not_of("0123456789", 5) == std::string::npos)
            placeholder = true;
        if (!placeholder) return c.id;
        static const char kAlnum[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        std::string id = "call_";
        for (int i = 0; i < 24; ++i) id += kAlnum[rng_() % 62];
        return id;
    }
    // Streamed calls carry their index, as OpenAI's deltas do.
    json call_json(const chat::ToolCall& c, bool with_index) {
        json j = json::object();
        if (with_index) j["index"] = c.index;
        j["id"] = call_id(c);
        j["type"] = "function";
        j["function"] = {{"name", c.name},
                         {"arguments", c.arguments.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)}};
        return j;
    }

    ReplyInfo info_;
    std::mt19937_64 rng_;
    bool started_ = false;
    bool called_tools_ = false;
};

class CompletionWriter : public TextWriter {
public:
    explicit CompletionWriter(const ReplyInfo& info) : info_(info) {}
    const char* stream_content_type() const override { return "text/event-stream"; }

    std::string stream_delta(const Delta& d) override {
        json lp = info_.logprobs && !d.logprobs.empty() ? completion_logprobs_json(d.logprobs, offset_) : json(nullptr);
        offset_ += (int64_t)d.content.size();
        return sse(chunk(d.content, std::move(lp), nullptr));
    }
    std::string stream_final(const Final& f) override {
        std::string out = sse(chunk("", nullptr, finish_reason(f, false)));
        if (info_.include_usage) {
            json j = head();
            j["choices"] = json::array();
            j["usage"] = usage_json(f);
            out += sse(j);
        }
        return out + kDone;
    }
    std::string stream_error(const Status& s) override { return sse(error_reply(s, info_.model).body); }
    json whole(const Final& f, const Collected& c) override {
        json j = head();
        j["choices"] = json::array({{{"text", c.content},
                                     {"index", 0},
                                     {"logprobs", info_.logprobs ? completion_logprobs_json(c.logprobs, 0) : json(nullptr)},
                                     {"finish_reason", finish_reason(f, false)}}});
        j["usage"] = usage_json(f);
        return j;
    }

private:
    json head() const {
        return {{"id", info_.id}, {"object", "text_completion"}, {"created", info_.created}, {"model", info_.model},
                {"system_fingerprint", kFingerprint}};
    }
    json chunk(const std::string& text, json logprobs, json finish) const {
        json j = head();
        j["choices"] = json::array(
            {{{"text", text}, {"index", 0}, {"logprobs", std::move(logprobs)}, {"finish_reason", std::move(finish)}}});
        if (info_.include_usage) j["usage"] = nullptr;
        return j;
    }

    ReplyInfo info_;
    int64_t offset_ = 0;  // bytes of text streamed so far (text_offset of the next token)
};

}  // namespace

json error_json(int http_status, const std::string& message) {
    const char* type = "invalid_request_error";
    json code = nullptr;
    switch (http_status) {
    case 401: type = "authentication_error"; code = "invalid_api_key"; break;
    case 403: type = "permission_error"; break;
    case 404: type = "not_found_error"; break;
    case 413: type = "invalid_request_error"; code = "request_too_large"; break;
    case 429:
    case 503: type = "rate_limit_error"; break;
    default:
        if (http_status >= 500) type = "server_error";
    }
    return {{"error", {{"message", message}, {"type", type}, {"param", nullptr}, {"code", code}}}};
}

ErrorReply model_not_found(const std::string& model) {
    ErrorReply r{404, error_json(404, "model \"" + model + "\" not found, try pulling it first")};
    r.body["error"]["code"] = "model_not_found";
    return r;
}

ErrorReply error_reply(const Status& s, const std::string& model) {
    if (s.code() == StatusCode::not_found && !model.empty()) return model_not_found(model);
    ErrorReply r{http_status(s), error_json(http_status(s), s.message())};
    if (s.code() == StatusCode::out_of_range) r.body["error"]["code"] = "context_length_exceeded";
    return r;
}

Result<json> parse_body(const std::string& body) {
    if (body.empty()) return bad("missing request body");
    json j;
    try {
        j = json::parse(body);
    } catch (const nlohmann::json::parse_error& e) {
        return bad(std::string("invalid JSON: ") + e.what());
    }
    if (!j.is_object()) return bad("the request body must be a JSON object");
    return j;
}

Result<TextRequest> parse_chat(const json& body) {
    TextRequest r;
    TextInput& in = r.in;
    in.chat = true;
    HEARTH_ASSIGN(in.model, required_string(body, "model"));
    HEARTH_TRY(convert_messages(body, in.messages));
    HEARTH_TRY(stream_fields(body, r));
    HEARTH_TRY(only_one(body, "n"));
    HEARTH_TRY(extensions(body, in.options, in.keep_alive));
    HEARTH_TRY(sampling_fields(body, in.options));
    // max_completion_tokens replaced max_tokens; either is accepted.
    std::optional<int64_t> max_tokens;
    HEARTH_TRY(get_int(body, "max_tokens", max_tokens));
    HEARTH_TRY(get_int(body, "max_completion_tokens", max_tokens));
    if (max_tokens) {
        if (*max_tokens < 0) return bad("max_tokens must not be negative");
        in.options["num_predict"] = *max_tokens;
    }
    HEARTH_TRY(get_bool(body, "logprobs", in.logprobs));
    std::optional<int64_t> top;
    HEARTH_TRY(get_int(body, "top_logprobs", top));
    if (top) {
        if (*top < 0 || *top > 20) return bad("top_logprobs must be between 0 and 20");
        if (!in.logprobs) return bad("top_logprobs needs logprobs: true");
        in.top_logprobs = (int)*top;
    }
    HEARTH_TRY(read_tools(body, in));
    HEARTH_TRY(read_response_format(body, in));
    HEARTH_TRY(read_reasoning(body, in));
    return r;
}

Result<TextRequest> parse_completion(const json& body) {
    TextRequest r;
    TextInput& in = r.in;
    in.raw = true;
    HEARTH_ASSIGN(in.model, required_string(body, "model"));
    if (!present(body, "prompt")) return bad("prompt is required");
    const json& p = body["prompt"];
    const char* token_msg = "token prompts are not supported: send the prompt as text";
    if (p.is_string()) {
        in.prompt = p.get<std::string>();
    } else if (p.is_array()) {
        if (p.empty()) return bad("prompt must not be empty");
        if (p[0].is_number_integer() || p[0].is_array()) return bad(token_msg);
        if (!p[0].is_string()) return type_error("prompt", "a string or an array of one string");
        if (p.size() > 1) return bad("prompt: one prompt per request (an array of one string), got " + std::to_string(p.size()));
        in.prompt = p[0].get<std::string>();
    } else {
        return type_error("prompt", "a string or an array of one string");
    }
    HEARTH_TRY(get_string(body, "suffix", in.suffix));
    HEARTH_TRY(stream_fields(body, r));
    HEARTH_TRY(only_one(body, "n"));
    HEARTH_TRY(only_one(body, "best_of"));
    bool echo = false;
    HEARTH_TRY(get_bool(body, "echo", echo));
    if (echo) return bad("echo is not supported: the prompt is not returned with the completion");
    HEARTH_TRY(extensions(body, in.options, in.keep_alive));
    HEARTH_TRY(sampling_fields(body, in.options));
    std::optional<int64_t> max_tokens;
    HEARTH_TRY(get_int(body, "max_tokens", max_tokens));
    if (max_tokens && *max_tokens < 0) return bad("max_tokens must not be negative");
    if (max_tokens) in.options["num_predict"] = *max_tokens;
    else if (!in.options.contains("num_predict")) in.options["num_predict"] = 16;  // OpenAI's default
    std::optional<int64_t> logprobs;
    HEARTH_TRY(get_int(body, "logprobs", logprobs));
    if (logprobs) {
        if (*logprobs < 0 || *logprobs > 5) return bad("logprobs must be between 0 and 5");
        in.logprobs = true;
        in.top_logprobs = (int)*logprobs;
    }
    return r;
}

Result<EmbedRequest> parse_embeddings(const json& body) {
    EmbedRequest r;
    EmbedInput& in = r.in;
    HEARTH_ASSIGN(in.model, required_string(body, "model"));
    if (!present(body, "input")) return bad("input is required");
    const json& v = body["input"];
    const char* token_msg = "token inputs are not supported: send the input as text";
    if (v.is_string()) {
        in.inputs.push_back(v.get<std::string>());
    } else if (v.is_array()) {
        if (v.empty()) return bad("input must not be an empty array");
        for (size_t i = 0; i < v.size(); ++i) {
            if (v[i].is_number_integer() || v[i].is_array()) return bad(token_msg);
            if (!v[i].is_string()) return type_error(strformat("input[%zu]", i), "a string");
            in.inputs.push_back(v[i].get<std::string>());
        }
    } else {
        return type_error("input", "a string or an array of strings");
    }
    for (const auto& s : in.inputs)
        if (s.empty()) return bad("input must not contain empty strings");
    std::string encoding = "float";
    HEARTH_TRY(get_string(body, "encoding_format", encoding));
    if (encoding != "float" && encoding != "base64")
        return bad("encoding_format must be \"float\" or \"base64\", got \"" + encoding + "\"");
    r.base64 = encoding == "base64";
    std::optional<int64_t> dims;
    HEARTH_TRY(get_int(body, "dimensions", dims));
    if (dims && *dims < 1) return bad("dimensions must be at least 1");
    in.dimensions = dims;
    HEARTH_TRY(get_bool(body, "truncate", in.truncate));
    HEARTH_TRY(extensions(body, in.options, in.keep_alive));
    return r;
}

// ---- responses ----

std::string random_id(const std::string& prefix) {
    static const char kAlnum[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    std::random_device rd;
    std::mt19937_64 g(((uint64_t)rd() << 32) ^ rd());
    std::string id = prefix;
    for (int i = 0; i < 24; ++i) id += kAlnum[g() % 62];
    return id;
}

std::unique_ptr<TextWriter> make_chat_writer(const ReplyInfo& info) { return std::make_unique<ChatWriter>(info); }
std::unique_ptr<TextWriter> make_completion_writer(const ReplyInfo& info) {
    return std::make_unique<CompletionWriter>(info);
}

json usage_json(const Final& f) {
    const int64_t prompt = f.stats.prompt_tokens, completion = f.stats.generated_tokens;
    return {{"prompt_tokens", prompt},
            {"completion_tokens", completion},
            {"total_tokens", prompt + completion},
            {"prompt_tokens_details", {{"cached_tokens", f.stats.cached_tokens}}}};
}

json chat_logprobs_json(const std::vector<runtime::TokenLogprob>& lps) {
    json content = json::array();
    for (const auto& t : lps) {
        json top = json::array();
        for (const auto& a : t.top)
            top.push_back({{"token", a.text}, {"logprob", clean(a.logprob)}, {"bytes", bytes_json(a.text)}});
        content.push_back(
            {{"token", t.text}, {"logprob", clean(t.logprob)}, {"bytes", bytes_json(t.text)}, {"top_logprobs", std::move(top)}});
    }
    return {{"content", std::move(content)}, {"refusal", nullptr}};
}

json completion_logprobs_json(const std::vector<runtime::TokenLogprob>& lps, int64_t offset) {
    json tokens = json::array(), token_logprobs = json::array(), top = json::array(), offsets = json::array();
    for (const auto& t : lps) {
        tokens.push_back(t.text);
        token_logprobs.push_back(clean(t.logprob));
        // The alternatives and the sampled token: up to logprobs + 1 entries, as OpenAI.
        json alts = json::object();
        for (const auto& a : t.top)
            if (!alts.contains(a.text)) alts[a.text] = clean(a.logprob);
        if (!alts.contains(t.text)) alts[t.text] = clean(t.logprob);
        top.push_back(std::move(alts));
        offsets.push_back(offset);
        offset += (int64_t)t.text.size();
    }
    return {{"tokens", std::move(tokens)},
            {"token_logprobs", std::move(token_logprobs)},
            {"top_logprobs", std::move(top)},
            {"text_offset", std::move(offsets)}};
}

std::string base64_floats(const std::vector<float>& v) {
    static const char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string bytes;
    bytes.reserve(v.size() * 4);
    for (float f : v) {
        uint32_t u;
        std::memcpy(&u, &f, 4);
        for (int k = 0; k < 4; ++k) bytes += (char)((u >> (8 * k)) & 0xff);  // little-endian on any host
    }
    std::string out;
    out.reserve((bytes.size() + 2) / 3 * 4);
    for (size_t i = 0; i < bytes.size(); i += 3) {
        const size_t n = std::min<size_t>(3, bytes.size() - i);
        uint32_t w = (uint32_t)(unsigned char)bytes[i] << 16;
        if (n > 1) w |= (uint32_t)(unsigned char)bytes[i + 1] << 8;
        if (n > 2) w |= (uint32_t)(unsigned char)bytes[i + 2];
        out += kB64[(w >> 18) & 63];
        out += kB64[(w >> 12) & 63];
        out += n > 1 ? kB64[(w >> 6) & 63] : '=';
        out += n > 2 ? kB64[w & 63] : '=';
    }
    return out;
}

json embeddings_response(const EmbedOutput& out, const std::string& model, bool base64) {
    json data = json::array();
    for (size_t i = 0; i < out.result.vectors.size(); ++i) {
        json e = {{"object", "embedding"}, {"index", (int64_t)i}};
        if (base64) {
            e["embedding"] = base64_floats(out.result.vectors[i]);
        } else {
            json v = json::array();
            for (float x : out.result.vectors[i]) v.push_back(clean(x));
            e["embedding"] = std::move(v);
        }
        data.push_back(std::move(e));
    }
    const int64_t tokens = out.result.prompt_tokens_total;
    return {{"object", "list"},
            {"data", std::move(data)},
            {"model", model},
            {"usage", {{"prompt_tokens", tokens}, {"total_tokens", tokens}}}};
}

json model_json(const store::ModelRef& ref, const std::string& id) {
    std::string owner = store::kDefaultNamespace;
    if (auto n = store::ModelName::parse(ref.full_name); n.ok()) owner = n->ns;
    const int64_t created =
        std::chrono::duration_cast<std::chrono::seconds>(ref.modified.time_since_epoch()).count();
    return {{"id", id}, {"object", "model"}, {"created", created}, {"owned_by", owner}};
}

}  // namespace hearth::server::openai
