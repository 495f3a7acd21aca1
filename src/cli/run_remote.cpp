// hearth run through a running daemon, as `ollama run` works: the model is the daemon's (loaded
// once, shared with every other client, kept for its keep_alive), the conversation is kept here.
//
// A model with a chat template talks over POST /api/chat: every turn sends the system message,
// the conversation so far and the new message; the daemon renders them with the template, and
// its prefix cache finds the earlier turns. A model without one (a base model such as
// stories260K) continues text over POST /api/generate, carrying the returned `context` tokens
// from turn to turn like Ollama's older clients; --raw does the same on any model, resending the
// text so far with raw: true. Either way the output streams as NDJSON; Ctrl-C drops the
// connection, which makes the daemon cancel the request.
//
// The flags map onto the request: the sampling and context flags given become `options` (over
// the model's own parameters, which the daemon applies first), --keepalive is keep_alive,
// --format, --think and --truncate their fields. --kv-type and --ignore-eos have no request
// field (the daemon's cache type is its HEARTH_KV_CACHE_TYPE): they are refused with a line that
// says so rather than silently dropped.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <iostream>

#include "chat/chat.h"
#include "cli/client.h"
#include "cli/common.h"
#include "cli/models.h"
#include "cli/run.h"
#include "server/options.h"

namespace hearth::cli {
namespace {

using json = nlohmann::ordered_json;

std::string str(const json& j, const char* key) {
    auto it = j.find(key);
    return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

int64_t num(const json& j, const char* key, int64_t missing = -1) {
    auto it = j.find(key);
    return it != j.end() && it->is_number() ? it->get<int64_t>() : missing;
}

// A /set parameter value as JSON: an integer, a number, true/false, or the text.
json parameter_value(const std::string& v) {
    try {
        size_t used = 0;
        const long long i = std::stoll(v, &used);
        if (used == v.size()) return i;
        const double d = std::stod(v, &used);
        if (used == v.size()) return d;
    } catch (const std::exception&) {
    }
    if (v == "true" || v == "false") return v == "true";
    return v;
}

std::vector<chat::ToolCall> tool_calls_from(const json& calls) {
    std::vector<chat::ToolCall> out;
    if (!calls.is_array()) return out;
    for (const auto& c : calls) {
        if (!c.is_object() || !c.contains("function") || !c["function"].is_object()) continue;
        chat::ToolCall t;
        t.id = str(c, "id");
        t.name = str(c["function"], "name");
        if (c["function"].contains("arguments")) t.arguments = c["function"]["arguments"];
        t.index = (int)num(c["function"], "index", (int64_t)out.size());
        out.push_back(std::move(t));
    }
    return out;
}

class RemoteSession : public ChatSession {
public:
    RemoteSession(RunArgs& a, Client& daemon, json show) : a_(a), daemon_(daemon), show_(std::move(show)) {
        options_ = json(a_.options);
        chat_ = !a_.raw && !str(show_, "template").empty();
        if (!chat_ && !a_.raw) note_ = "this model has no chat template: raw completion (each line continues the text)";
    }

    std::string note() const override { return note_; }
    void clear() override {
        messages_ = json::array();
        context_ = json();
        raw_text_.clear();
    }
    void set_system(std::string s) override { a_.system = std::move(s); }
    void set_think(const std::string& v) override { a_.think = v; }

    bool set_format(const std::string& text) override {
        if (text.empty()) {
            format_ = nullptr;
            return true;
        }
        json f = text == "json" ? json("json") : json::parse(text, nullptr, false);
        if (f.is_discarded() || !(f.is_object() || f == "json")) {
            std::fprintf(stderr, "hearth run: --format: \"%s\" is neither json nor a JSON Schema\n", text.c_str());
            return false;
        }
        format_ = std::move(f);
        return true;
    }

    void set_parameter(const std::string& name, const std::vector<std::string>& values) override {
        if (values.empty()) {
            std::printf("Usage: /set parameter NAME VALUE\n");
            return;
        }
        json v = name == "stop" ? json(values) : parameter_value(values[0]);
        // The daemon's own option rules (types, ranges), checked here so a bad value is refused
        // now rather than failing the next turn.
        server::RequestOptions check;
        if (Status s = server::apply_options(nlohmann::json::object({{name, nlohmann::json(v)}}), check); !s.ok()) {
            std::printf("Couldn't set parameter: %s\n", s.message().c_str());
            return;
        }
        if (!check.ignored.empty()) {
            std::printf("Unknown parameter '%s'\n", name.c_str());
            return;
        }
        if (Status s = server::validate_options(check); !s.ok()) {
            std::printf("Couldn't set parameter: %s\n", s.message().c_str());
            return;
        }
        options_[name] = v;
        if (name == "stop") {
            std::string shown;
            for (const auto& x : values) shown += (shown.empty() ? "" : ", ") + ("'" + x + "'");
            std::printf("Set parameter 'stop' to %s\n", shown.c_str());
        } else {
            std::printf("Set parameter '%s' to '%s'\n", name.c_str(), values[0].c_str());
        }
    }

    bool show(const std::string& what) override {
        auto text_or = [&](const char* field, const char* none) {
            const std::string t = str(show_, field);
            std::printf("%s\n", t.empty() ? none : t.c_str());
        };
        if (what == "info") {
            std::fputs(format_show_info(show_, false).c_str(), stdout);
        } else if (what == "parameters") {
            const std::string p = str(show_, "parameters");
            std::printf("Model defined parameters:\n%s", p.empty() ? "No parameters were specified for this model.\n" : p.c_str());
            if (!options_.empty()) {
                std::printf("\nUser defined parameters:\n");
                for (const auto& [k, v] : options_.items()) {
                    if (v.is_array()) {
                        for (const auto& x : v) std::printf("%-30s %s\n", k.c_str(), x.dump().c_str());
                    } else {
                        std::printf("%-30s %s\n", k.c_str(), v.dump().c_str());
                    }
                }
            }
        } else if (what == "system") {
            if (!a_.system.empty()) std::printf("%s\n", a_.system.c_str());
            else text_or("system", "No system message was specified for this model.");
        } else if (what == "template") {
            text_or("template", "No prompt template was specified for this model.");
        } else if (what == "license") {
            text_or("license", "No license was specified for this model.");
        } else if (what == "modelfile") {
            text_or("modelfile", "");
        } else {
            return false;
        }
        return true;
    }

    bool turn(const std::string& text, bool keep_history) override {
        json body = {{"model", a_.model}, {"stream", true}};
        if (!options_.empty()) body["options"] = options_;
        if (!a_.keepalive.empty()) body["keep_alive"] = a_.keepalive;
        if (!format_.is_null()) body["format"] = format_;
        const bool continuing = !messages_.empty() || !context_.is_null() || !raw_text_.empty();
        // A conversation that outgrows the context drops its oldest turns, as in process.
        if (a_.truncate || continuing) body["truncate"] = true;
        json user;
        if (chat_) {
            json msgs = json::array();
            if (!a_.system.empty()) msgs.push_back({{"role", "system"}, {"content", a_.system}});
            for (const auto& m : messages_) msgs.push_back(m);
            user = {{"role", "user"}, {"content", text}};
            msgs.push_back(user);
            body["messages"] = std::move(msgs);
            if (!a_.think.empty()) {
                auto t = chat::Think::parse(a_.think);
                if (t.ok() && !t->level.empty()) body["think"] = t->level;
                else if (t.ok()) body["think"] = t->mode == chat::Think::Mode::on;
            }
        } else if (a_.raw) {
            body["prompt"] = raw_text_ + text;
            body["raw"] = true;
        } else {
            body["prompt"] = text;
            if (!context_.is_null()) body["context"] = context_;
        }

        ReplyPrinter printer(!a_.hide_thinking, isatty(STDOUT_FILENO));
        chat::ChatDelta reply;
        json final_obj;
        std::string stream_error;
        bool printed = false, cancelled = false;
        auto on_line = [&](const json& j) {
            if (j.contains("error")) {
                const auto& e = j["error"];
                stream_error = e.is_string() ? e.get<std::string>() : e.dump();
                return;
            }
            chat::ChatDelta d;
            if (chat_) {
                const json m = j.contains("message") && j["message"].is_object() ? j["message"] : json::object();
                d.content = str(m, "content");
                d.thinking = str(m, "thinking");
                if (m.contains("tool_calls")) d.tool_calls = tool_calls_from(m["tool_calls"]);
            } else {
                d.content = str(j, "response");
                d.thinking = str(j, "thinking");
            }
            if (!d.empty()) {
                printer.print(d);
                printed = true;
                reply.append(std::move(d));
            }
            if (j.value("done", false)) final_obj = j;
        };
        clear_interrupted();
        const Status st = daemon_.stream(chat_ ? "/api/chat" : "/api/generate", body, on_line, interrupted, &cancelled);
        printer.end_thinking();
        if (printed || cancelled) out("\n");
        if (!st.ok() || !stream_error.empty()) {
            std::fprintf(stderr, "hearth run: %s\n", st.ok() ? stream_error.c_str() : st.message().c_str());
            return false;
        }
        if (!cancelled && final_obj.is_null()) {
            std::fprintf(stderr, "hearth run: the daemon ended the reply without its final message\n");
            return false;
        }
        if (!printed && !cancelled) out("\n");
        if (!final_obj.is_null()) report(final_obj);
        if (keep_history) remember(user, text, reply, final_obj);
        return true;
    }

private:
    void report(const json& f) const {
        const int64_t truncated = num(f, "prompt_truncated_count", 0);
        if (truncated > 0 && !a_.verbose)
            std::fprintf(stderr, "(the context is full: %lld earlier token(s) dropped)\n", (long long)truncated);
        if (!a_.verbose) return;
        // prompt eval count: the tokens the daemon computed, not those its prefix cache gave
        // back (hearth's prompt_cache_count), as the in-process summary counts them.
        const int64_t cached = num(f, "prompt_cache_count", 0);
        const int64_t prompt = num(f, "prompt_eval_count");
        std::fputc('\n', stderr);
        print_timings({.total_ns = num(f, "total_duration", 0),
                       .load_ns = num(f, "load_duration", 0),
                       .prompt_eval_count = prompt >= 0 ? prompt - cached : -1,
                       .prompt_eval_ns = num(f, "prompt_eval_duration", 0),
                       .eval_count = num(f, "eval_count"),
                       .eval_ns = num(f, "eval_duration", 0)});
        if (f.contains("prompt_cache_count")) std::fprintf(stderr, "prompt cached:        %lld token(s)\n", (long long)cached);
        if (truncated > 0) std::fprintf(stderr, "prompt truncated:     %lld token(s) dropped\n", (long long)truncated);
        if (const std::string r = str(f, "done_reason"); !r.empty()) std::fprintf(stderr, "done reason:          %s\n", r.c_str());
    }

    void remember(const json& user, const std::string& text, const chat::ChatDelta& reply, const json& final_obj) {
        if (chat_) {
            messages_.push_back(user);
            json assistant = {{"role", "assistant"}, {"content", reply.content}};
            if (!reply.thinking.empty()) assistant["thinking"] = reply.thinking;
            if (!reply.tool_calls.empty()) {
                json calls = json::array();
                for (const auto& c : reply.tool_calls)
                    calls.push_back({{"id", c.id}, {"type", "function"}, {"function", {{"name", c.name}, {"arguments", c.arguments}}}});
                assistant["tool_calls"] = std::move(calls);
            }
            messages_.push_back(std::move(assistant));
        } else if (a_.raw) {
            raw_text_ += text + reply.content;
        } else if (final_obj.contains("context") && final_obj["context"].is_array()) {
            context_ = final_obj["context"];
        }
    }

    RunArgs& a_;
    Client& daemon_;
    json show_;                          // the model's /api/show answer
    json options_;                       // the options every request carries: the flags, then /set parameter
    bool chat_ = false;                  // /api/chat (a template); else /api/generate
    std::string note_;
    json format_;                        // null, "json" or a schema
    json messages_ = json::array();      // chat: user and assistant turns (the system message apart)
    json context_;                       // generate: the tokens so far (null before the first turn)
    std::string raw_text_;               // --raw: the text so far
};

}  // namespace

void run_remote(RunArgs& a, Client& daemon) {
    const std::string where = "the daemon at " + daemon.address().display();
    if (a.ignore_eos)
        fail("run", "--ignore-eos works only when the model runs in this process; " + where +
                        " is running (stop it, or run the model's .gguf file)");
    if (!a.kv_type.empty())
        fail("run", "--kv-type works only when the model runs in this process; " + where +
                        " uses its HEARTH_KV_CACHE_TYPE (stop it, or run the model's .gguf file)");
    auto show = daemon.post("/api/show", json{{"model", a.model}});
    if (!show.ok()) fail("run", show.status());
    const json caps = show->contains("capabilities") ? (*show)["capabilities"] : json::array();
    if (std::find(caps.begin(), caps.end(), json("embedding")) != caps.end()) {
        // Ollama prints an embedding model's vector for the prompt.
        std::string text = a.prompt;
        if (text.empty() && !isatty(STDIN_FILENO))
            text.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
        if (text.empty()) fail("run", a.model + " is an embedding model: give the text to embed as the prompt");
        json body = {{"model", a.model}, {"input", text}};
        if (!a.keepalive.empty()) body["keep_alive"] = a.keepalive;
        auto r = daemon.post("/api/embed", body);
        if (!r.ok()) fail("run", r.status());
        const json& e = (*r)["embeddings"];
        if (!e.is_array() || e.empty()) fail("run", "the daemon returned no embedding");
        std::printf("%s\n", e[0].dump().c_str());
        return;
    }
    RemoteSession session(a, daemon, std::move(show).value());
    if (!a.format.empty() && !session.set_format(a.format)) std::exit(1);
    if (a.prompt.empty() && (a.interactive || isatty(STDIN_FILENO))) {
        // Load the model before the first prompt, as Ollama does: a model that cannot load says
        // so now, and the first reply does not wait for it.
        json body = {{"model", a.model}, {"messages", json::array()}, {"stream", false}};
        if (!a.keepalive.empty()) body["keep_alive"] = a.keepalive;
        if (!a.options.empty()) body["options"] = a.options;
        if (auto r = daemon.post("/api/chat", body); !r.ok()) fail("run", r.status());
    }
    drive(session, a);
}

}  // namespace hearth::cli
