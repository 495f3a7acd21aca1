#include "server/adapters/ollama.h"

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <ctime>

#include "runtime/decoding.h"
#include "tokenizer/stream.h"

namespace hearth::server::ollama {
namespace {

Status type_error(const std::string& field, const char* type) {
    return error(StatusCode::invalid_argument, "field \"" + field + "\" must be " + type);
}

bool present(const json& body, const char* field) {
    auto it = body.find(field);
    return it != body.end() && !it->is_null();
}

Status get_string(const json& body, const char* field, std::string& out) {
    if (!present(body, field)) return {};
    const auto& v = body[field];
    if (!v.is_string()) return type_error(field, "a string");
    out = v.get<std::string>();
    return {};
}

Status get_bool(const json& body, const char* field, bool& out) {
    if (!present(body, field)) return {};
    const auto& v = body[field];
    if (!v.is_boolean()) return type_error(field, "a boolean");
    out = v.get<bool>();
    return {};
}

// images: rejected while hearth runs no vision model (an empty list is fine).
Status reject_images(const json& obj, const std::string& field) {
    if (!present(obj, "images")) return {};
    const auto& v = obj["images"];
    if (!v.is_array()) return type_error(field, "an array of base64 strings");
    if (!v.empty())
        return error(StatusCode::invalid_argument,
                     "images are not supported: hearth runs no vision (multimodal) model yet");
    return {};
}

Status read_format(const json& body, TextInput& in) {
    if (!present(body, "format")) return {};
    const auto& v = body["format"];
    if (v.is_string() && v.get<std::string>().empty()) return {};
    if (!v.is_string() && !v.is_object()) return type_error("format", "\"json\" or a JSON schema object");
    if (v.is_string() && v.get<std::string>() != "json")
        return error(StatusCode::invalid_argument, "format must be \"json\" or a JSON schema object");
    in.format = v;
    return {};
}

// `options` (an object) and `keep_alive`, which every model request carries.
template <class Input>
Status options_and_keep_alive(const json& body, Input& in) {
    if (present(body, "options")) {
        if (!body["options"].is_object()) return type_error("options", "an object");
        in.options = body["options"];
    }
    if (present(body, "keep_alive")) {
        auto k = parse_keep_alive_field(body["keep_alive"]);
        if (!k.ok()) return k.status();
        in.keep_alive = *k;
    }
    return {};
}

Status common_fields(const json& body, TextInput& in, bool& stream) {
    HEARTH_ASSIGN(in.model, required_string(body, "model"));
    stream = true;
    HEARTH_TRY(get_bool(body, "stream", stream));
    HEARTH_TRY(options_and_keep_alive(body, in));
    if (present(body, "think")) {
        const auto& v = body["think"];
        if (v.is_boolean()) {
            in.think.mode = v.get<bool>() ? chat::Think::Mode::on : chat::Think::Mode::off;
        } else if (v.is_string()) {
            auto t = chat::Think::parse(v.get<std::string>());
            if (!t.ok()) return error(StatusCode::invalid_argument, "field \"think\": " + t.status().message());
            in.think = *t;
        } else {
            return type_error("think", "a boolean or one of \"low\", \"medium\", \"high\"");
        }
    }
    HEARTH_TRY(get_bool(body, "truncate", in.truncate));
    HEARTH_TRY(get_bool(body, "logprobs", in.logprobs));
    if (present(body, "top_logprobs")) {
        const auto& v = body["top_logprobs"];
        if (!v.is_number_integer()) return type_error("top_logprobs", "an integer");
        // Checked whether or not logprobs is set, with Ollama's message.
        const bool negative = !v.is_number_unsigned() && v.get<int64_t>() < 0;
        if (negative || v.get<uint64_t>() > (uint64_t)runtime::kMaxTopLogprobs)
            return error(StatusCode::invalid_argument,
                         strformat("top_logprobs must be between 0 and %d", runtime::kMaxTopLogprobs));
        in.top_logprobs = v.get<int>();
    }
    HEARTH_TRY(read_format(body, in));
    return {};
}

std::string json_number_list_error(const char* field) {
    return std::string("field \"") + field + "\" must be an array of token ids (integers)";
}

}  // namespace

namespace {

std::string rfc3339_at(std::time_t secs, long long ns) {
    std::tm tm{};
    gmtime_r(&secs, &tm);
    char buf[64];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    return strformat("%s.%09lldZ", buf, ns);
}

}  // namespace

std::string rfc3339(WallTime t) {
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
    return rfc3339_at((std::time_t)(ns / 1000000000), ns % 1000000000);
}

Result<json> parse_body(const std::string& body) {
    if (body.empty()) return error(StatusCode::invalid_argument, "missing request body");
    json j;
    try {
        j = json::parse(body);
    } catch (const nlohmann::json::parse_error& e) {
        return error(StatusCode::invalid_argument, std::string("invalid JSON: ") + e.what());
    }
    if (!j.is_object()) return error(StatusCode::invalid_argument, "the request body must be a JSON object");
    return j;
}

Result<std::string> required_string(const json& body, const char* field) {
    if (!present(body, field)) return error(StatusCode::invalid_argument, std::string(field) + " is required");
    if (!body[field].is_string()) return type_error(field, "a string");
    std::string s = body[field].get<std::string>();
    if (s.empty()) return error(StatusCode::invalid_argument, std::string(field) + " is required");
    return s;
}

Result<runtime::Duration> parse_keep_alive_field(const json& v) {
    if (v.is_string()) {
        auto d = runtime::parse_keep_alive(v.get<std::string>());
        if (!d.ok()) return error(StatusCode::invalid_argument, "field \"keep_alive\": " + d.status().message());
        return d;
    }
    if (v.is_number()) {
        auto d = runtime::keep_alive_from_seconds(v.get<double>());
        if (!d.ok()) return error(StatusCode::invalid_argument, "field \"keep_alive\": " + d.status().message());
        return d;
    }
    return type_error("keep_alive", "a duration string (\"5m\") or a number of seconds");
}

Result<TextInput> parse_generate(const json& body, bool& stream) {
    TextInput in;
    HEARTH_TRY(common_fields(body, in, stream));
    HEARTH_TRY(get_string(body, "prompt", in.prompt));
    HEARTH_TRY(get_string(body, "system", in.system));
    HEARTH_TRY(get_string(body, "suffix", in.suffix));
    if (present(body, "template")) {
        std::string t;
        HEARTH_TRY(get_string(body, "template", t));
        if (!t.empty()) in.template_override = t;
    }
    HEARTH_TRY(get_bool(body, "raw", in.raw));
    HEARTH_TRY(reject_images(body, "images"));
    if (present(body, "context")) {
        const auto& c = body["context"];
        if (!c.is_array()) return error(StatusCode::invalid_argument, json_number_list_error("context"));
        for (const auto& t : c) {
            if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() > INT32_MAX)
                return error(StatusCode::invalid_argument, json_number_list_error("context"));
            in.context.push_back((int32_t)t.get<int64_t>());
        }
    }
    return in;
}

Result<TextInput> parse_chat(const json& body, bool& stream) {
    TextInput in;
    in.chat = true;
    HEARTH_TRY(common_fields(body, in, stream));
    if (present(body, "tools")) {
        if (!body["tools"].is_array()) return type_error("tools", "an array");
        in.tools = body["tools"];
        if (in.tools.empty()) in.tools = nullptr;
    }
    if (present(body, "messages")) {
        const auto& msgs = body["messages"];
        if (!msgs.is_array()) return type_error("messages", "an array");
        for (size_t i = 0; i < msgs.size(); ++i) {
            const auto& m = msgs[i];
            const std::string where = strformat("messages[%zu]", i);
            if (!m.is_object()) return type_error(where, "an object");
            if (!present(m, "role") || !m["role"].is_string())
                return error(StatusCode::invalid_argument, where + ".role is required (system, user, assistant or tool)");
            const std::string role = m["role"].get<std::string>();
            if (role != "system" && role != "user" && role != "assistant" && role != "tool")
                return error(StatusCode::invalid_argument,
                             where + ".role \"" + role + "\" is not one of system, user, assistant, tool");
            json out = {{"role", role}};
            std::string content;
            if (present(m, "content")) {
                if (!m["content"].is_string()) return type_error(where + ".content", "a string");
                content = m["content"].get<std::string>();
            }
            out["content"] = content;
            HEARTH_TRY(reject_images(m, where + ".images"));
            if (present(m, "thinking")) {
                if (!m["thinking"].is_string()) return type_error(where + ".thinking", "a string");
                out["thinking"] = m["thinking"];
                out["reasoning_content"] = m["thinking"];  // the name Hugging Face templates read
            }
            if (present(m, "tool_calls")) {
                const auto& calls = m["tool_calls"];
                if (!calls.is_array()) return type_error(where + ".tool_calls", "an array");
                json tc = json::array();
                for (size_t k = 0; k < calls.size(); ++k) {
                    const auto& c = calls[k];
                    const std::string cw = strformat("%s.tool_calls[%zu]", where.c_str(), k);
                    if (!c.is_object() || !present(c, "function") || !c["function"].is_object())
                        return error(StatusCode::invalid_argument, cw + ".function is required");
                    const auto& f = c["function"];
                    if (!present(f, "name") || !f["name"].is_string())
                        return error(StatusCode::invalid_argument, cw + ".function.name is required");
                    json args = json::object();
                    if (present(f, "arguments")) {
                        if (!f["arguments"].is_object()) return type_error(cw + ".function.arguments", "an object");
                        args = f["arguments"];
                    }
                    json call = {{"type", "function"}, {"function", {{"name", f["name"]}, {"arguments", args}}}};
                    if (present(c, "id") && c["id"].is_string()) call["id"] = c["id"];
                    tc.push_back(std::move(call));
                }
                out["tool_calls"] = std::move(tc);
            }
            if (present(m, "tool_name")) {
                if (!m["tool_name"].is_string()) return type_error(where + ".tool_name", "a string");
                out["tool_name"] = m["tool_name"];
                out["name"] = m["tool_name"];
            }
            if (present(m, "tool_call_id")) {
                if (!m["tool_call_id"].is_string()) return type_error(where + ".tool_call_id", "a string");
                out["tool_call_id"] = m["tool_call_id"];
            }
            in.messages.push_back(std::move(out));
        }
    }
    return in;
}

Result<EmbedInput> parse_embed(const json& body) {
    EmbedInput in;
    HEARTH_ASSIGN(in.model, required_string(body, "model"));
    if (present(body, "input")) {
        const auto& v = body["input"];
        if (v.is_string()) {
            // A single "" is Ollama's load request (no input), not an input.
            if (!v.get<std::string>().empty()) in.inputs.push_back(v.get<std::string>());
        } else if (v.is_array()) {
            for (size_t i = 0; i < v.size(); ++i) {
                if (!v[i].is_string()) return type_error(strformat("input[%zu]", i), "a string");
                in.inputs.push_back(v[i].get<std::string>());
            }
        } else {
            return type_error("input", "a string or an array of strings");
        }
    }
    HEARTH_TRY(get_bool(body, "truncate", in.truncate));
    if (present(body, "dimensions")) {
        const auto& d = body["dimensions"];
        if (!d.is_number_integer()) return type_error("dimensions", "an integer");
        if (d.get<int64_t>() < 1) return error(StatusCode::invalid_argument, "dimensions must be at least 1");
        in.dimensions = d.get<int64_t>();
    }
    HEARTH_TRY(options_and_keep_alive(body, in));
    return in;
}

Result<EmbedInput> parse_embeddings(const json& body) {
    EmbedInput in;
    HEARTH_ASSIGN(in.model, required_string(body, "model"));
    std::string prompt;
    HEARTH_TRY(get_string(body, "prompt", prompt));
    if (!prompt.empty()) in.inputs.push_back(prompt);
    in.normalize = false;  // the legacy endpoint returns the raw pooled vector, as Ollama's does
    HEARTH_TRY(options_and_keep_alive(body, in));
    return in;
}

// ---- responses ----

namespace {

void add_stats(json& j, const Final& f) {
    j["total_duration"] = f.total_ns;
    j["load_duration"] = f.load_ns;
    if (f.done_reason == "load" || f.done_reason == "unload") return;
    j["prompt_eval_count"] = f.stats.prompt_tokens;
    j["prompt_eval_duration"] = f.stats.prompt_ns;
    j["eval_count"] = f.stats.generated_tokens;
    j["eval_duration"] = f.stats.generate_ns;
    // hearth's extras: prompt tokens reused from the prefix cache, and tokens a truncation cut.
    j["prompt_cache_count"] = f.stats.cached_tokens;
    if (f.stats.truncated_tokens > 0) j["prompt_truncated_count"] = f.stats.truncated_tokens;
}

// The float's shortest round-trip decimal as a double, so -0.123f is written -0.123 rather than
// -0.12300000339746475 (what the float widened to a double would print).
double shortest(float x) {
    if (!std::isfinite(x)) return x;  // nlohmann writes null for these
    char buf[32];
    const auto r = std::to_chars(buf, buf + sizeof buf, x);
    return std::strtod(std::string(buf, r.ptr).c_str(), nullptr);
}

json token_logprob_json(const runtime::TopLogprob& t) {
    // "token" must be valid UTF-8 (a byte token may be part of a character): invalid sequences
    // become U+FFFD, as Go's encoder writes them; "bytes" keeps the raw bytes, and is left out
    // when empty (Ollama's omitempty).
    tok::Utf8StreamAssembler utf8;
    std::string text = utf8.push(t.text);
    text += utf8.flush();
    json j = {{"token", std::move(text)}, {"logprob", shortest(t.logprob)}};
    if (!t.text.empty()) {
        json bytes = json::array();
        for (char c : t.text) bytes.push_back((int)(unsigned char)c);
        j["bytes"] = std::move(bytes);
    }
    return j;
}

}  // namespace

json logprobs_json(const std::vector<runtime::TokenLogprob>& logprobs) {
    json out = json::array();
    for (const auto& l : logprobs) {
        json j = token_logprob_json(l);
        if (!l.top.empty()) {
            json top = json::array();
            for (const auto& t : l.top) top.push_back(token_logprob_json(t));
            j["top_logprobs"] = std::move(top);
        }
        out.push_back(std::move(j));
    }
    return out;
}

json tool_calls_json(const std::vector<chat::ToolCall>& calls) {
    json out = json::array();
    for (const auto& c : calls)
        out.push_back({{"id", c.id}, {"function", {{"index", c.index}, {"name", c.name}, {"arguments", c.arguments}}}});
    return out;
}

json generate_chunk(const std::string& model, WallTime at, const Delta& d) {
    json j = {{"model", model}, {"created_at", rfc3339(at)}, {"response", d.content}};
    if (!d.thinking.empty()) j["thinking"] = d.thinking;
    if (!d.tool_calls.empty()) j["tool_calls"] = tool_calls_json(d.tool_calls);
    j["done"] = false;
    if (!d.logprobs.empty()) j["logprobs"] = logprobs_json(d.logprobs);
    return j;
}

json generate_final(const std::string& model, WallTime at, const Final& f, const std::string& text,
                    const std::string& thinking, const std::vector<runtime::TokenLogprob>& logprobs) {
    json j = {{"model", model}, {"created_at", rfc3339(at)}, {"response", text}};
    if (!thinking.empty()) j["thinking"] = thinking;
    j["done"] = true;
    j["done_reason"] = f.done_reason;
    if (!f.context.empty()) j["context"] = f.context;
    add_stats(j, f);
    if (!logprobs.empty()) j["logprobs"] = logprobs_json(logprobs);
    return j;
}

json chat_chunk(const std::string& model, WallTime at, const Delta& d) {
    json msg = {{"role", "assistant"}, {"content", d.content}};
    if (!d.thinking.empty()) msg["thinking"] = d.thinking;
    if (!d.tool_calls.empty()) msg["tool_calls"] = tool_calls_json(d.tool_calls);
    json j = {{"model", model}, {"created_at", rfc3339(at)}, {"message", msg}, {"done", false}};
    if (!d.logprobs.empty()) j["logprobs"] = logprobs_json(d.logprobs);
    return j;
}

json chat_final(const std::string& model, WallTime at, const Final& f, const std::string& text,
                const std::string& thinking, const std::vector<chat::ToolCall>& tool_calls,
                const std::vector<runtime::TokenLogprob>& logprobs) {
    json msg = {{"role", "assistant"}, {"content", text}};
    if (!thinking.empty()) msg["thinking"] = thinking;
    if (!tool_calls.empty()) msg["tool_calls"] = tool_calls_json(tool_calls);
    json j = {{"model", model}, {"created_at", rfc3339(at)}, {"message", msg}, {"done", true},
              {"done_reason", f.done_reason}};
    if (!logprobs.empty()) j["logprobs"] = logprobs_json(logprobs);  // before the metrics, as Ollama orders them
    add_stats(j, f);
    return j;
}

namespace {

class Writer : public TextWriter {
public:
    Writer(bool chat, std::string model) : chat_(chat), model_(std::move(model)) {}
    const char* stream_content_type() const override { return "application/x-ndjson"; }
    std::string stream_delta(const Delta& d) override {
        const WallTime now = std::chrono::system_clock::now();
        return line(chat_ ? chat_chunk(model_, now, d) : generate_chunk(model_, now, d));
    }
    std::string stream_final(const Final& f) override { return line(whole(f, Collected{})); }
    std::string stream_error(const Status& s) override { return line(error_json(s.message())); }
    // An empty chunk, as Ollama itself sends while output is held back.
    std::string stream_keepalive() override { return stream_delta(Delta{}); }
    json whole(const Final& f, const Collected& c) override {
        const WallTime now = std::chrono::system_clock::now();
        return chat_ ? chat_final(model_, now, f, c.content, c.thinking, c.tool_calls, c.logprobs)
                     : generate_final(model_, now, f, c.content, c.thinking, c.logprobs);
    }

private:
    static std::string line(const json& j) {
        return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    }
    bool chat_;
    std::string model_;
};

}  // namespace

std::unique_ptr<TextWriter> make_writer(bool chat, const std::string& model) {
    return std::make_unique<Writer>(chat, model);
}

json embed_response(const EmbedOutput& out) {
    json j = {{"model", out.model}, {"embeddings", out.result.vectors}, {"total_duration", out.total_ns},
              {"load_duration", out.load_ns}, {"prompt_eval_count", out.result.prompt_tokens_total}};
    return j;
}

json embeddings_response(const EmbedOutput& out) {
    json j = {{"embedding", out.result.vectors.empty() ? std::vector<float>() : out.result.vectors[0]}};
    return j;
}

json error_json(const std::string& message) { return {{"error", message}}; }

json details_json(const store::GgufInfo& info) {
    return {{"parent_model", ""},
            {"format", "gguf"},
            {"family", info.architecture},
            {"families", json::array({info.architecture})},
            {"parameter_size", info.parameter_size},
            {"quantization_level", info.quantization}};
}

json tags_entry(const store::ModelRef& ref, const store::GgufInfo* info) {
    json j = {{"name", ref.name},
              {"model", ref.name},
              {"modified_at", rfc3339(ref.modified)},
              {"size", ref.size},
              {"digest", ref.manifest_digest}};
    j["details"] = info ? details_json(*info) : json::object({{"format", "gguf"}});
    return j;
}

namespace {

json value_json(const gguf::Value& v) {
    using gguf::ValueType;
    switch (v.type) {
    case ValueType::string: return v.str;
    case ValueType::boolean: return v.u != 0;
    case ValueType::f32:
    case ValueType::f64: return v.f;
    case ValueType::array: {
        json a = json::array();
        for (const auto& item : v.items) a.push_back(value_json(item));
        return a;
    }
    case ValueType::i8:
    case ValueType::i16:
    case ValueType::i32:
    case ValueType::i64: return v.i;
    default: return v.u;
    }
}

// "stop    "<|eot_id|>"" lines, as `ollama show --parameters` prints the params layer.
std::string parameters_text(const json& params) {
    std::string out;
    if (!params.is_object()) return out;
    for (const auto& [k, v] : params.items()) {
        auto line = [&](const json& x) {
            std::string val = x.is_string() ? x.dump() : x.dump();
            std::string key = k;
            key.resize(std::max<size_t>(key.size(), 30), ' ');
            out += key + " " + val + "\n";
        };
        if (v.is_array()) {
            for (const auto& x : v) line(x);
        } else {
            line(v);
        }
    }
    return out;
}

// `show --modelfile`: a Modelfile that recreates the model (store/modelfile.h writes it, so it
// parses back to the same values): FROM the weights' blob, the template the model renders with,
// SYSTEM, PARAMETERs, MESSAGEs, ADAPTERs (their blobs), LICENSEs.
std::string modelfile_text(const store::ModelRef& ref, const store::GgufInfo& info) {
    store::Modelfile mf;
    mf.from = ref.model_path;
    if (!info.chat_template.empty()) mf.template_text = info.chat_template;
    if (!ref.system.empty()) mf.system = ref.system;
    if (ref.params.is_object()) mf.parameters = ref.params;
    if (ref.messages.is_array())
        for (const auto& m : ref.messages)
            if (m.is_object() && m.contains("role") && m["role"].is_string() && m.contains("content") && m["content"].is_string())
                mf.messages.push_back({m["role"].get<std::string>(), m["content"].get<std::string>()});
    mf.adapters = ref.adapter_paths;
    mf.licenses = ref.licenses;
    if (mf.licenses.empty() && !ref.license.empty()) mf.licenses.push_back(ref.license);
    return "# Modelfile generated by \"hearth show\"\n# To build a new Modelfile based on this, replace FROM with:\n# FROM " +
           ref.name + "\n\n" + store::format_modelfile(mf);
}

}  // namespace

json show_response(const store::ModelRef& ref, const store::GgufInfo& info, bool verbose) {
    json j;
    j["license"] = ref.license;
    j["modelfile"] = modelfile_text(ref, info);
    j["parameters"] = parameters_text(ref.params);
    // The template hearth renders: the GGUF's Jinja chat template.
    j["template"] = info.chat_template;
    if (!ref.system.empty()) j["system"] = ref.system;
    j["details"] = details_json(info);
    json mi = json::object();
    if (info.file) {
        for (const auto& [key, v] : info.file->meta.entries()) {
            const bool big = key == "tokenizer.ggml.tokens" || key == "tokenizer.ggml.scores" ||
                             key == "tokenizer.ggml.token_type" || key == "tokenizer.ggml.merges";
            if (key == "tokenizer.chat_template") continue;  // shown as "template"
            mi[key] = big && !verbose ? json(nullptr) : value_json(v);
        }
    }
    mi["general.parameter_count"] = info.n_params;
    j["model_info"] = mi;
    json caps = json::array();
    if (info.embedding) {
        caps.push_back("embedding");
    } else {
        caps.push_back("completion");
        if (info.chat_template.find("tools") != std::string::npos) caps.push_back("tools");
        if (info.chat_template.find("<think>") != std::string::npos ||
            info.chat_template.find("enable_thinking") != std::string::npos)
            caps.push_back("thinking");
        if (info.has_fim) caps.push_back("insert");
    }
    j["capabilities"] = caps;
    j["modified_at"] = rfc3339(ref.modified);
    return j;
}

json ps_entry(const store::ModelRef& ref, const store::GgufInfo* info, const runtime::ModelStatus& st,
              std::optional<WallTime> expires_at) {
    json j = {{"name", st.name}, {"model", st.name}, {"size", st.bytes}, {"digest", ref.manifest_digest}};
    j["details"] = info ? details_json(*info) : json::object({{"format", "gguf"}});
    // Ollama shows "never" as a time ~292 years ahead (the largest Go duration). That is past
    // what a nanosecond time_point holds (year 2262): add it in seconds.
    if (expires_at) {
        j["expires_at"] = rfc3339(*expires_at);
    } else {
        const auto now_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                                std::chrono::system_clock::now().time_since_epoch()).count();
        j["expires_at"] = rfc3339_at((std::time_t)(now_ns / 1000000000) + (std::time_t)292 * 365 * 24 * 3600,
                                     now_ns % 1000000000);
    }
    // Ollama's PROCESSOR column is size_vram / size: the GPU's share of the model's memory. The
    // whole-GPU model's size is its mapped file, which its device copy matches.
    j["size_vram"] = std::min(st.bytes, st.bytes_vram);
    j["context_length"] = st.config.n_ctx;
    return j;
}

// ---- POST /api/create ----

Result<store::CreateRequest> parse_create(const json& body, bool& stream) {
    store::CreateRequest r;
    const char* name_field = present(body, "model") || !present(body, "name") ? "model" : "name";
    HEARTH_ASSIGN(r.model, required_string(body, name_field));
    stream = true;
    HEARTH_TRY(get_bool(body, "stream", stream));
    for (const char* unsupported : {"renderer", "parser"}) {
        std::string v;
        HEARTH_TRY(get_string(body, unsupported, v));
        if (!v.empty())
            return error(StatusCode::unsupported, std::string("field \"") + unsupported +
                                                      "\" is not supported by hearth: it selects one of Ollama's built-in Go "
                                                      "renderers; hearth renders the model's Jinja chat template (set one with \"template\")");
    }
    if (present(body, "draft_files") && !(body["draft_files"].is_object() && body["draft_files"].empty()))
        return error(StatusCode::unsupported, "field \"draft_files\": draft models (speculative decoding) are not supported yet");
    if (present(body, "path"))
        return error(StatusCode::invalid_argument,
                     "field \"path\" (a Modelfile on the server's disk) is not supported; send its text in \"modelfile\"");

    // The older form: the Modelfile's text. FROM may name a store model or a blob (@sha256:...).
    std::string modelfile;
    HEARTH_TRY(get_string(body, "modelfile", modelfile));
    if (!modelfile.empty()) {
        auto mf = store::parse_modelfile(modelfile, "modelfile");
        if (!mf.ok()) return mf.status();
        HEARTH_ASSIGN(r, store::create_request(*mf, r.model, ""));
        r.allow_paths = false;
    }

    HEARTH_TRY(get_string(body, "from", r.from));
    auto string_map = [&](const char* field, std::map<std::string, std::string>& out) -> Status {
        if (!present(body, field)) return {};
        const auto& v = body[field];
        if (!v.is_object()) return type_error(field, "an object of file name -> digest");
        for (const auto& [k, d] : v.items()) {
            if (!d.is_string()) return type_error(std::string(field) + "." + k, "a digest string (sha256:<hex>)");
            out[k] = d.get<std::string>();
        }
        return {};
    };
    HEARTH_TRY(string_map("files", r.files));
    HEARTH_TRY(string_map("adapters", r.adapters));
    // As Ollama: an empty template or system is the same as none.
    std::string text;
    HEARTH_TRY(get_string(body, "template", text));
    if (!text.empty()) r.template_text = text;
    text.clear();
    HEARTH_TRY(get_string(body, "system", text));
    if (!text.empty()) r.system = text;
    if (present(body, "license")) {
        const auto& v = body["license"];
        if (v.is_string()) {
            r.licenses.push_back(v.get<std::string>());
        } else if (v.is_array()) {
            for (const auto& x : v) {
                if (!x.is_string()) return type_error("license", "a string or an array of strings");
                r.licenses.push_back(x.get<std::string>());
            }
        } else {
            return type_error("license", "a string or an array of strings");
        }
    }
    if (present(body, "parameters")) {
        if (!body["parameters"].is_object()) return type_error("parameters", "an object");
        r.parameters = nlohmann::json::parse(body["parameters"].dump());
    }
    if (present(body, "messages")) {
        const auto& v = body["messages"];
        if (!v.is_array()) return type_error("messages", "an array");
        std::vector<store::ModelfileMessage> msgs;
        for (size_t i = 0; i < v.size(); ++i) {
            const auto& m = v[i];
            if (!m.is_object() || !m.contains("role") || !m["role"].is_string())
                return type_error(strformat("messages[%zu].role", i), "a string");
            std::string content;
            if (m.contains("content") && !m["content"].is_null()) {
                if (!m["content"].is_string()) return type_error(strformat("messages[%zu].content", i), "a string");
                content = m["content"].get<std::string>();
            }
            msgs.push_back({m["role"].get<std::string>(), std::move(content)});
        }
        r.messages = std::move(msgs);
    }
    HEARTH_TRY(get_string(body, "quantize", r.quantize));
    if (r.quantize.empty()) HEARTH_TRY(get_string(body, "quantization", r.quantize));  // Ollama's older name
    HEARTH_TRY(get_string(body, "requires", r.requires_version));
    return r;
}

json create_status_json(const store::CreateStatus& s) {
    json j = {{"status", s.status}};
    if (s.total > 0) {  // as Ollama: a digest only with bytes to count (its client draws a bar then)
        if (!s.digest.empty()) j["digest"] = s.digest;
        j["total"] = s.total;
        j["completed"] = s.completed;
    }
    return j;
}

}  // namespace hearth::server::ollama
