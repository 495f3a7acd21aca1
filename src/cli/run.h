// hearth run, shared by its two ways of running: in this process on a runtime::Engine
// (run.cpp) and through a running daemon's /api/chat and /api/generate (run_remote.cpp). Both
// implement ChatSession; the one-shot prompt, the piped prompt and the REPL with its /commands
// (repl.cpp) drive either the same way.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "chat/tool_calls.h"
#include "runtime/sampler.h"

namespace hearth::cli {

class Client;

struct RunArgs {
    std::string model;       // as given: a store name or a GGUF path (empty: the test data's story model)
    std::string model_path;  // in-process: the GGUF file it resolved to
    std::vector<std::string> adapter_paths;  // in-process: the store model's LoRA adapter blobs
    std::string prompt;
    std::string prompt_flag;
    bool verbose = false;
    runtime::SamplingOptions sampling;
    int64_t num_predict = -1;
    int64_t num_ctx = 0;
    int threads = 0;
    std::vector<std::string> stop;
    bool ignore_eos = false;
    bool truncate = false;
    bool interactive = false;
    std::string kv_type;  // empty: $HEARTH_KV_CACHE_TYPE, else f16
    bool raw = false;
    std::string think;    // "" = the template's default; else true/false/low/medium/high
    bool hide_thinking = false;
    std::string format;   // "" none; "json" or a JSON Schema
    std::string system;
    std::string chat_template;  // in-process: the store model's TEMPLATE layer; empty = the GGUF's
    std::string keepalive;  // --keepalive: "" = the daemon's default
    // The sampling and load flags given on the command line, as Ollama options (temperature,
    // num_ctx, stop, ...): they go over a model's own parameters (its params layer), so only
    // those actually given are here.
    nlohmann::json options = nlohmann::json::object();
};

// A conversation the REPL drives. Every method reports its own problems (one line) and leaves
// the session usable.
class ChatSession {
public:
    virtual ~ChatSession() = default;
    // One turn. keep_history: the REPL (the turn joins the conversation); false: a one-shot
    // prompt. Ctrl-C stops the reply (what came so far stays). False on error (reported).
    virtual bool turn(const std::string& text, bool keep_history) = 0;
    virtual void clear() = 0;
    virtual void set_system(std::string s) = 0;
    virtual void set_think(const std::string& v) = 0;
    // --format / /set format ("" turns it off); false (reported) when it is not "json" or a schema.
    virtual bool set_format(const std::string& text) = 0;
    // /set parameter NAME VALUE...
    virtual void set_parameter(const std::string& name, const std::vector<std::string>& values) = 0;
    // /show info | parameters | system | template, and what else the session knows (license,
    // modelfile); false for a name it does not know.
    virtual bool show(const std::string& what) = 0;
    // A line to print before the REPL starts ("" for none), e.g. why there is no chat.
    virtual std::string note() const { return ""; }
};

// Runs `a.prompt`, or the prompt piped on standard input, or the REPL (a terminal, or -i).
// Exits 1 when a one-shot turn fails.
void drive(ChatSession& session, RunArgs& a);

// Ctrl-C while a reply streams stops that reply; at the prompt it starts a fresh line.
void install_sigint();
bool interrupted();
void clear_interrupted();

// Writes and flushes.
void out(std::string_view s);

// Prints a chat reply as it streams: a "Thinking..." block (dimmed on a terminal), the answer,
// tool calls as JSON lines.
class ReplyPrinter {
public:
    ReplyPrinter(bool show_thinking, bool tty) : show_thinking_(show_thinking), tty_(tty) {}
    void print(const chat::ChatDelta& d);
    void end_thinking();

private:
    bool show_thinking_, tty_;
    bool in_thinking_ = false;
    bool at_line_start_ = true;
};

// Ollama's --verbose summary (api.Metrics.Summary) on stderr. Counts < 0 are left out.
struct Timings {
    int64_t total_ns = 0, load_ns = 0;
    int64_t prompt_eval_count = -1, prompt_eval_ns = 0;
    int64_t eval_count = -1, eval_ns = 0;
};
void print_timings(const Timings& t);

// Runs `a` through the daemon; exits 1 on failure. a.model is a name the daemon resolves.
void run_remote(RunArgs& a, Client& daemon);

}  // namespace hearth::cli
