#include "server/adapters/openai_responses.h"

#include <chrono>
#include <map>
#include <random>

#include "server/adapters/openai.h"
#include "server/adapters/fields.h"

namespace hearth::server::openai_responses {
namespace {

using fields::get_bool;
using fields::get_string;
using fields::invalid;
using fields::present;
using fields::type_error;

constexpr const char* kNoState = " is not supported: hearth keeps no response state";

// A number in [lo, hi], echoed as given.
Status get_number(const json& body, const char* field, double lo, double hi, json& echo) {
    if (!present(body, field)) return {};
    const json& v = body[field];
    if (!v.is_number()) return type_error(field, "a number");
    const double x = v.get<double>();
    if (x < lo || x > hi) return invalid(strformat("%s must be between %g and %g", field, lo, hi));
    echo = v;
    return {};
}

// The text of a content array (input_text / output_text parts, concatenated). Images, files
// and audio are refused: hearth runs no multimodal model.
Status content_text(const json& content, const std::string& where, std::string& out) {
    if (content.is_null()) return {};
    if (content.is_string()) {
        out += content.get<std::string>();
        return {};
    }
    if (!content.is_array()) return type_error(where, "a string or an array of content parts");
    for (size_t i = 0; i < content.size(); ++i) {
        const json& p = content[i];
        const std::string pw = strformat("%s[%zu]", where.c_str(), i);
        if (!p.is_object() || !present(p, "type") || !p["type"].is_string())
            return invalid(pw + ".type is required");
        const std::string type = p["type"].get<std::string>();
        if (type == "input_text" || type == "output_text") {
            std::string text;
            HEARTH_TRY(get_string(p, "text", pw + ".text", text));
            out += text;
        } else if (type == "refusal") {
            std::string text;
            HEARTH_TRY(get_string(p, "refusal", pw + ".refusal", text));
            out += text;
        } else if (type == "input_image") {
            return invalid(pw + ": images are not supported: hearth runs no vision (multimodal) model yet");
        } else if (type == "input_file") {
            return invalid(pw + ": file inputs are not supported");
        } else if (type == "input_audio") {
            return invalid(pw + ": audio inputs are not supported");
        } else {
            return invalid(pw + ": unknown content type \"" + type + "\"");
        }
    }
    return {};
}

// input items -> messages in the chat template's shape (as ollama::parse_chat builds them).
class InputBuilder {
public:
    explicit InputBuilder(json& messages) : messages_(messages) {}

    Status item(const json& it, const std::string& where) {
        if (!it.is_object()) return type_error(where, "an object");
        std::string type;
        HEARTH_TRY(get_string(it, "type", where + ".type", type));
        if (type.empty() && present(it, "role")) type = "message";  // the {role, content} shorthand
        if (type == "message") return message(it, where);
        if (type == "function_call") return function_call(it, where);
        if (type == "function_call_output") return function_call_output(it, where);
        if (type == "reasoning") return reasoning(it, where);
        if (type.empty()) return invalid(where + ".type is required");
        if (type == "item_reference") return invalid(where + ": item_reference" + kNoState);
        return invalid(where + ": input item type \"" + type + "\" is not supported");
    }

    // A reasoning item with nothing after it to attach to is dropped.
    void finish() { pending_thinking_.clear(); }

private:
    Status message(const json& it, const std::string& where) {
        if (!present(it, "role") || !it["role"].is_string())
            return invalid(where + ".role is required (user, assistant, system or developer)");
        std::string role = it["role"].get<std::string>();
        if (role == "developer") role = "system";
        if (role != "user" && role != "assistant" && role != "system")
            return invalid(where + ".role \"" + role + "\" is not one of user, assistant, system, developer");
        std::string text;
        HEARTH_TRY(content_text(present(it, "content") ? it["content"] : json(), where + ".content", text));
        json m = {{"role", role}, {"content", text}};
        if (role == "assistant") take_thinking(m);
        messages_.push_back(std::move(m));
        return {};
    }

    Status function_call(const json& it, const std::string& where) {
        std::string call_id, name, args_text;
        HEARTH_TRY(get_string(it, "call_id", where + ".call_id", call_id));
        HEARTH_TRY(get_string(it, "name", where + ".name", name));
        HEARTH_TRY(get_string(it, "arguments", where + ".arguments", args_text));
        if (name.empty()) return invalid(where + ".name is required");
        json args = json::object();
        if (!args_text.empty()) {
            args = json::parse(args_text, nullptr, false);
            if (args.is_discarded() || !args.is_object())
                return invalid(where + ".arguments must be a JSON object encoded as a string");
        }
        json call = {{"type", "function"}, {"function", {{"name", name}, {"arguments", args}}}};
        if (!call_id.empty()) {
            call["id"] = call_id;
            call_names_[call_id] = name;
        }
        // Calls right after an assistant message (or other calls) belong to that same turn.
        if (messages_.empty() || messages_.back()["role"] != "assistant") {
            messages_.push_back({{"role", "assistant"}, {"content", ""}});
        }
        json& m = messages_.back();
        take_thinking(m);
        if (!m.contains("tool_calls")) m["tool_calls"] = json::array();
        m["tool_calls"].push_back(std::move(call));
        return {};
    }

    Status function_call_output(const json& it, const std::string& where) {
        std::string call_id, text;
        HEARTH_TRY(get_string(it, "call_id", where + ".call_id", call_id));
        if (!present(it, "output")) return invalid(where + ".output is required");
        HEARTH_TRY(content_text(it["output"], where + ".output", text));
        json m = {{"role", "tool"}, {"content", text}};
        if (!call_id.empty()) {
            m["tool_call_id"] = call_id;
            auto name = call_names_.find(call_id);
            if (name != call_names_.end()) {
                m["tool_name"] = name->second;
                m["name"] = name->second;  // the name Hugging Face templates read
            }
        }
        messages_.push_back(std::move(m));
        return {};
    }

    // Reasoning text (content, else the summary) becomes the next assistant turn's thinking.
    Status reasoning(const json& it, const std::string& where) {
        std::string text;
        for (const char* field : {"content", "summary"}) {
            if (!present(it, field)) continue;
            const json& parts = it[field];
            if (!parts.is_array()) return type_error(where + "." + field, "an array");
            for (size_t i = 0; i < parts.size(); ++i) {
                std::string t;
                if (parts[i].is_object())
                    HEARTH_TRY(get_string(parts[i], "text", strformat("%s.%s[%zu].text", where.c_str(), field, i), t));
                if (!t.empty() && !text.empty()) text += "\n";
                text += t;
            }
            if (!text.empty()) break;
        }
        pending_thinking_ += text;
        return {};
    }

    void take_thinking(json& m) {
        if (pending_thinking_.empty()) return;
        m["thinking"] = pending_thinking_;
        m["reasoning_content"] = pending_thinking_;  // the name Hugging Face templates read
        pending_thinking_.clear();
    }

    json& messages_;
    std::string pending_thinking_;
    std::map<std::string, std::string> call_names_;  // call_id -> function name
};

Status read_tools(const json& body, Request& r) {
    if (!present(body, "tools")) return {};
    const json& tools = body["tools"];
    if (!tools.is_array()) return type_error("tools", "an array");
    json out = json::array();
    for (size_t i = 0; i < tools.size(); ++i) {
        const json& t = tools[i];
        const std::string where = strformat("tools[%zu]", i);
        if (!t.is_object() || !present(t, "type") || !t["type"].is_string()) return invalid(where + ".type is required");
        const std::string type = t["type"].get<std::string>();
        if (type != "function")
            return invalid(where + ": tool type \"" + type + "\" is not supported (only \"function\" tools are)");
        std::string name, description;
        HEARTH_TRY(get_string(t, "name", where + ".name", name));
        if (name.empty()) return invalid(where + ".name is required");
        HEARTH_TRY(get_string(t, "description", where + ".description", description));
        json fn = {{"name", name}};
        if (!description.empty()) fn["description"] = description;
        if (present(t, "parameters")) {
            if (!t["parameters"].is_object()) return type_error(where + ".parameters", "a JSON Schema object");
            fn["parameters"] = t["parameters"];
        } else {
            fn["parameters"] = {{"type", "object"}, {"properties", json::object()}};
        }
        if (present(t, "strict") && !t["strict"].is_boolean()) return type_error(where + ".strict", "a boolean");
        out.push_back({{"type", "function"}, {"function", std::move(fn)}});
    }
    r.echo.tools = tools;
    if (!out.empty()) r.input.tools = std::move(out);
    return {};
}

Status read_tool_choice(const json& body, Request& r) {
    if (!present(body, "tool_choice")) return {};
    const json& v = body["tool_choice"];
    if (v.is_string()) {
        const std::string s = v.get<std::string>();
        if (s != "auto" && s != "none" && s != "required")
            return invalid("tool_choice must be \"auto\", \"none\", \"required\" or {\"type\": \"function\", \"name\": ...}");
        r.input.tool_choice = s;
    } else if (v.is_object()) {
        std::string type, name;
        HEARTH_TRY(get_string(v, "type", "tool_choice.type", type));
        if (type != "function")
            return invalid("tool_choice type \"" + type + "\" is not supported (\"auto\", \"none\", \"required\" or a function)");
        HEARTH_TRY(get_string(v, "name", "tool_choice.name", name));
        if (name.empty()) return invalid("tool_choice.name is required");
        r.input.tool_choice = name;
    } else {
        return type_error("tool_choice", "a string or an object");
    }
    r.echo.tool_choice = v;
    return {};
}

Status read_text(const json& body, Request& r) {
    if (!present(body, "text")) return {};
    const json& text = body["text"];
    if (!text.is_object()) return type_error("text", "an object");
    json echo = text;
    if (present(text, "format")) {
        const json& f = text["format"];
        std::string type;
        if (!f.is_object()) return type_error("text.format", "an object");
        HEARTH_TRY(get_string(f, "type", "text.format.type", type));
        if (type == "text") {
        } else if (type == "json_object") {
            r.input.format = "json";
        } else if (type == "json_schema") {
            if (!present(f, "schema") || !f["schema"].is_object())
                return invalid("text.format.schema is required (a JSON Schema object) for type \"json_schema\"");
            if (present(f, "name") && !f["name"].is_string()) return type_error("text.format.name", "a string");
            if (present(f, "strict") && !f["strict"].is_boolean()) return type_error("text.format.strict", "a boolean");
            r.input.format = f["schema"];
        } else {
            return invalid("text.format.type must be \"text\", \"json_object\" or \"json_schema\"");
        }
    } else {
        echo["format"] = {{"type", "text"}};
    }
    r.echo.text = std::move(echo);
    return {};
}

Status read_reasoning(const json& body, Request& r) {
    if (!present(body, "reasoning")) return {};
    const json& v = body["reasoning"];
    if (!v.is_object()) return type_error("reasoning", "an object");
    if (present(v, "effort")) {
        if (!v["effort"].is_string()) return type_error("reasoning.effort", "a string");
        const std::string e = v["effort"].get<std::string>();
        chat::Think& t = r.input.think;
        if (e == "none") {
            t.mode = chat::Think::Mode::off;
        } else if (e == "minimal" || e == "low" || e == "medium" || e == "high" || e == "xhigh") {
            t.mode = chat::Think::Mode::on;
            t.level = e == "minimal" ? "low" : e == "xhigh" ? "high" : e;
            r.input.think_if_supported = true;  // clients send an effort whatever the model
        } else {
            return invalid("reasoning.effort \"" + e + "\" is not one of none, minimal, low, medium, high, xhigh");
        }
        r.echo.reasoning["effort"] = v["effort"];
    }
    for (const char* f : {"summary", "generate_summary"}) {
        if (!present(v, f)) continue;
        if (!v[f].is_string()) return type_error(std::string("reasoning.") + f, "a string");
        r.echo.reasoning["summary"] = v[f];
    }
    return {};
}

// Sampling and length: Ollama's `options` first, the standard fields over it.
Status read_options(const json& body, Request& r) {
    json options = json::object();
    if (present(body, "options")) {
        if (!body["options"].is_object()) return type_error("options", "an object");
        options = body["options"];
    }
    HEARTH_TRY(get_number(body, "temperature", 0, 2, r.echo.temperature));
    HEARTH_TRY(get_number(body, "top_p", 0, 1, r.echo.top_p));
    if (!r.echo.temperature.is_null()) options["temperature"] = r.echo.temperature;
    if (!r.echo.top_p.is_null()) options["top_p"] = r.echo.top_p;
    if (present(body, "max_output_tokens")) {
        const json& v = body["max_output_tokens"];
        if (!v.is_number_integer()) return type_error("max_output_tokens", "an integer");
        if (v.get<int64_t>() < 1) return invalid("max_output_tokens must be at least 1");
        options["num_predict"] = v;
        r.echo.max_output_tokens = v;
    }
    if (!options.empty()) r.input.options = options;
    return {};
}

}  // namespace

Result<Request> parse_request(const json& body) {
    Request r;
    TextInput& in = r.input;
    in.chat = true;
    for (const char* f : {"previous_response_id", "conversation"})
        if (present(body, f)) return invalid(std::string(f) + kNoState);
    if (present(body, "prompt")) return invalid("prompt (a stored prompt template) is not supported: hearth stores no prompts");
    bool background = false;
    HEARTH_TRY(get_bool(body, "background", background));
    if (background) return invalid(std::string("background") + kNoState);
    bool store = false;
    HEARTH_TRY(get_bool(body, "store", store));  // accepted; nothing is stored

    if (!present(body, "model")) return invalid("model is required");
    if (!body["model"].is_string()) return type_error("model", "a string");
    in.model = body["model"].get<std::string>();
    if (in.model.empty()) return invalid("model is required");
    HEARTH_TRY(get_bool(body, "stream", r.stream));

    std::string instructions;
    HEARTH_TRY(get_string(body, "instructions", "instructions", instructions));
    if (!instructions.empty()) {
        in.messages.push_back({{"role", "system"}, {"content", instructions}});
        r.echo.instructions = instructions;
    }
    if (!present(body, "input")) return invalid("input is required");
    const json& input = body["input"];
    if (input.is_string()) {
        in.messages.push_back({{"role", "user"}, {"content", input.get<std::string>()}});
    } else if (input.is_array()) {
        InputBuilder b(in.messages);
        for (size_t i = 0; i < input.size(); ++i) HEARTH_TRY(b.item(input[i], strformat("input[%zu]", i)));
        b.finish();
    } else {
        return type_error("input", "a string or an array of input items");
    }
    if (in.messages.empty()) return invalid("input is required: it holds no message");

    HEARTH_TRY(read_tools(body, r));
    HEARTH_TRY(read_tool_choice(body, r));
    HEARTH_TRY(read_text(body, r));
    HEARTH_TRY(read_reasoning(body, r));
    HEARTH_TRY(read_options(body, r));

    HEARTH_TRY(get_bool(body, "parallel_tool_calls", r.echo.parallel_tool_calls));
    if (present(body, "truncation")) {
        if (!body["truncation"].is_string()) return type_error("truncation", "a string");
        r.echo.truncation = body["truncation"].get<std::string>();
        if (r.echo.truncation != "auto" && r.echo.truncation != "disabled")
            return invalid("truncation must be \"auto\" or \"disabled\"");
        in.truncate = r.echo.truncation == "auto";
    }
    if (present(body, "user")) {
        if (!body["user"].is_string()) return type_error("user", "a string");
        r.echo.user = body["user"];
    }
    if (present(body, "metadata")) {
        if (!body["metadata"].is_object()) return type_error("metadata", "an object");
        r.echo.metadata = body["metadata"];
    }
    if (present(body, "top_logprobs")) {
        if (!body["top_logprobs"].is_number_integer()) return type_error("top_logprobs", "an integer");
        if (body["top_logprobs"].get<int64_t>() > 0) return invalid("top_logprobs is not supported on /v1/responses yet");
    }
    return r;
}

WriterOptions default_writer_options(const std::string& model) {
    WriterOptions o;
    o.model = model;
    auto unix_now = [] {
        return (int64_t)std::chrono::duration_cast<std::chrono::seconds>(
                   std::chrono::system_clock::now().time_since_epoch())
            .count();
    };
    o.created_at = unix_now();
    o.now = unix_now;
    // One generator per writer (per request): no shared state between requests.
    auto rng = std::make_shared<std::mt19937_64>(std::random_device{}());
    o.new_id = [rng](const std::string& prefix) {
        static const char kDigits[] = "0123456789abcdef";
        std::string id = prefix + "_";
        for (int i = 0; i < 32; ++i) id += kDigits[(*rng)() & 15];
        return id;
    };
    return o;
}

json usage_json(const Final& f) {
    const int64_t in = f.stats.prompt_tokens, out = f.stats.generated_tokens;
    return {{"input_tokens", in},
            {"input_tokens_details", {{"cached_tokens", f.stats.cached_tokens}}},
            {"output_tokens", out},
            // The engine does not count thinking tokens apart from the answer's.
            {"output_tokens_details", {{"reasoning_tokens", 0}}},
            {"total_tokens", in + out}};
}

json response_object(const std::string& id, const WriterOptions& o, const Echo& echo, const std::string& status,
                     const json& output, const json& usage, const json& incomplete_details, const json& error,
                     const json& completed_at) {
    return {{"id", id},
            {"object", "response"},
            {"created_at", o.created_at},
            {"status", status},
            {"completed_at", completed_at},
            {"error", error},
            {"incomplete_details", incomplete_details},
            {"instructions", echo.instructions},
            {"max_output_tokens", echo.max_output_tokens},
            {"model", o.model},
            {"output", output},
            {"parallel_tool_calls", echo.parallel_tool_calls},
            {"previous_response_id", nullptr},
            {"reasoning", echo.reasoning},
            {"store", false},
            {"temperature", echo.temperature},
            {"text", echo.text},
            {"tool_choice", echo.tool_choice},
            {"tools", echo.tools},
            {"top_p", echo.top_p},
            {"truncation", echo.truncation},
            {"usage", usage},
            {"user", echo.user},
            {"metadata", echo.metadata}};
}

namespace {

std::string dump(const json& j) { return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace); }

json text_part(const std::string& text) {
    return {{"type", "output_text"}, {"text", text}, {"annotations", json::array()}, {"logprobs", json::array()}};
}
json reasoning_part(const std::string& text) { return {{"type", "reasoning_text"}, {"text", text}}; }

json message_item(const std::string& id, const std::string& status, const json& content) {
    return {{"type", "message"}, {"id", id}, {"status", status}, {"role", "assistant"}, {"content", content}};
}
json reasoning_item(const std::string& id, const std::string& status, const json& content) {
    return {{"type", "reasoning"}, {"id", id}, {"summary", json::array()}, {"content", content}, {"status", status}};
}
json call_item(const std::string& id, const std::string& call_id, const chat::ToolCall& c, const std::string& args,
               const std::string& status) {
    return {{"type", "function_call"}, {"id", id},     {"call_id", call_id},
            {"name", c.name},          {"arguments", args}, {"status", status}};
}

class Writer : public TextWriter {
public:
    Writer(const Echo& echo, WriterOptions o) : echo_(echo), o_(std::move(o)), id_(o_.new_id("resp")) {}

    const char* stream_content_type() const override { return "text/event-stream"; }

    std::string stream_delta(const Delta& d) override {
        std::string out = start();
        if (!d.thinking.empty()) {
            if (open_ != Open::reasoning) out += open(Open::reasoning);
            open_text_ += d.thinking;
            out += event("response.reasoning_text.delta", {{"item_id", open_id_},
                                                            {"output_index", output_.size()},
                                                            {"content_index", 0},
                                                            {"delta", d.thinking}});
        }
        if (!d.content.empty()) {
            if (open_ != Open::message) out += open(Open::message);
            open_text_ += d.content;
            out += event("response.output_text.delta", {{"item_id", open_id_},
                                                         {"output_index", output_.size()},
                                                         {"content_index", 0},
                                                         {"delta", d.content},
                                                         {"logprobs", json::array()}});
        }
        for (const auto& c : d.tool_calls) out += call(c);
        return out;
    }

    std::string stream_final(const Final& f) override {
        std::string out = start();
        out += close();
        if (!has_answer_) {  // every answer has a message or a call, if only an empty one
            out += open(Open::message);
            out += close();
        }
        const Ending e = ending(f);
        json obj = response_object(id_, o_, echo_, e.status, output_, usage_json(f), e.incomplete, e.error,
                                   e.status == "completed" ? json(o_.now()) : json());
        return out + event(e.event, {{"response", std::move(obj)}});
    }

    std::string stream_error(const Status& s) override {
        std::string out = start();
        out += close();
        const int http = http_status(s);
        const std::string code = openai::error_json(http, s.message())["error"]["type"].get<std::string>();
        out += event("error", {{"code", code}, {"message", s.message()}, {"param", nullptr}});
        json obj = response_object(id_, o_, echo_, "failed", output_, nullptr, nullptr,
                                   {{"code", "server_error"}, {"message", s.message()}}, nullptr);
        return out + event("response.failed", {{"response", std::move(obj)}});
    }

    json whole(const Final& f, const Collected& c) override {
        json output = json::array();
        if (!c.thinking.empty())
            output.push_back(reasoning_item(o_.new_id("rs"), "completed", json::array({reasoning_part(c.thinking)})));
        if (!c.content.empty() || c.tool_calls.empty())
            output.push_back(message_item(o_.new_id("msg"), "completed", json::array({text_part(c.content)})));
        for (const auto& tc : c.tool_calls) {
            const std::string id = o_.new_id("fc"), cid = call_id(tc);
            output.push_back(call_item(id, cid, tc, dump(tc.arguments), "completed"));
        }
        const Ending e = ending(f);
        return response_object(id_, o_, echo_, e.status, output, usage_json(f), e.incomplete, e.error,
                               e.status == "completed" ? json(o_.now()) : json());
    }

private:
    enum class Open { none, reasoning, message };
    struct Ending {
        const char* event;
        std::string status;
        json incomplete, error;
    };

    static Ending ending(const Final& f) {
        if (f.done_reason == "length")
            return {"response.incomplete", "incomplete", {{"reason", "max_output_tokens"}}, nullptr};
        if (f.done_reason == "cancelled")
            return {"response.failed", "failed", nullptr,
                    {{"code", "server_error"}, {"message", "the response was cancelled before it finished"}}};
        return {"response.completed", "completed", nullptr, nullptr};
    }

    // The model's own call id, or a fresh one where the parser numbered the calls (call_0, ...):
    // ids must not repeat across the turns of a conversation.
    std::string call_id(const chat::ToolCall& c) {
        const std::string& id = c.id;
        bool numbered = id.rfind("call_", 0) == 0 && id.size() > 5;
        for (size_t i = 5; numbered && i < id.size(); ++i) numbered = id[i] >= '0' && id[i] <= '9';
        return id.empty() || numbered ? o_.new_id("call") : id;
    }

    std::string event(const char* type, json body) {
        json j = {{"type", type}, {"sequence_number", seq_++}};
        for (auto& [k, v] : body.items()) j[k] = std::move(v);
        return std::string("event: ") + type + "\ndata: " + dump(j) + "\n\n";
    }

    std::string start() {
        if (started_) return {};
        started_ = true;
        json obj = response_object(id_, o_, echo_, "in_progress", json::array(), nullptr, nullptr, nullptr, nullptr);
        std::string out = event("response.created", {{"response", obj}});
        return out + event("response.in_progress", {{"response", std::move(obj)}});
    }

    std::string open(Open what) {
        std::string out = close();
        open_ = what;
        open_text_.clear();
        const bool msg = what == Open::message;
        open_id_ = o_.new_id(msg ? "msg" : "rs");
        if (msg) has_answer_ = true;
        json item = msg ? message_item(open_id_, "in_progress", json::array())
                        : reasoning_item(open_id_, "in_progress", json::array());
        out += event("response.output_item.added", {{"output_index", output_.size()}, {"item", std::move(item)}});
        out += event("response.content_part.added", {{"item_id", open_id_},
                                                      {"output_index", output_.size()},
                                                      {"content_index", 0},
                                                      {"part", msg ? text_part("") : reasoning_part("")}});
        return out;
    }

    std::string close() {
        if (open_ == Open::none) return {};
        const bool msg = open_ == Open::message;
        const json part = msg ? text_part(open_text_) : reasoning_part(open_text_);
        json done = {{"item_id", open_id_}, {"output_index", output_.size()}, {"content_index", 0}, {"text", open_text_}};
        if (msg) done["logprobs"] = json::array();
        std::string out = event(msg ? "response.output_text.done" : "response.reasoning_text.done", std::move(done));
        out += event("response.content_part.done",
                     {{"item_id", open_id_}, {"output_index", output_.size()}, {"content_index", 0}, {"part", part}});
        json item = msg ? message_item(open_id_, "completed", json::array({part}))
                        : reasoning_item(open_id_, "completed", json::array({part}));
        out += event("response.output_item.done", {{"output_index", output_.size()}, {"item", item}});
        output_.push_back(std::move(item));
        open_ = Open::none;
        open_text_.clear();
        return out;
    }

    // A call arrives whole: its item opens and closes at once.
    std::string call(const chat::ToolCall& c) {
        std::string out = close();
        has_answer_ = true;
        const std::string id = o_.new_id("fc"), cid = call_id(c), args = dump(c.arguments);
        const size_t index = output_.size();
        out += event("response.output_item.added", {{"output_index", index}, {"item", call_item(id, cid, c, "", "in_progress")}});
        out += event("response.function_call_arguments.delta", {{"item_id", id}, {"output_index", index}, {"delta", args}});
        out += event("response.function_call_arguments.done",
                     {{"item_id", id}, {"output_index", index}, {"name", c.name}, {"arguments", args}});
        json item = call_item(id, cid, c, args, "completed");
        out += event("response.output_item.done", {{"output_index", index}, {"item", item}});
        output_.push_back(std::move(item));
        return out;
    }

    Echo echo_;
    WriterOptions o_;
    std::string id_;        // resp_...
    int64_t seq_ = 0;       // the next event's sequence_number
    bool started_ = false;  // response.created / in_progress written
    // Items finished so far, in output order; the open item (if any) is output_[output_.size()]
    // once closed, so its output_index is output_.size() while open.
    json output_ = json::array();
    Open open_ = Open::none;
    std::string open_id_, open_text_;  // the open item's id and its text so far
    bool has_answer_ = false;          // a message or function_call item was opened
};

}  // namespace

std::unique_ptr<TextWriter> make_writer(const Echo& echo, WriterOptions o) {
    return std::make_unique<Writer>(echo, std::move(o));
}

}  // namespace hearth::server::openai_responses
