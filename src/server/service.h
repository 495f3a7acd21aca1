// What the daemon does, whatever the wire protocol: resolve a model in the store, load it
// through the model manager, render the conversation with the model's chat template, run the
// request on the model's Engine and parse the output into content, thinking and tool calls.
// The protocol adapters (adapters/ollama.cpp, later adapters/openai.cpp) translate JSON to a
// TextInput and the Deltas and Final back to JSON; they hold no engine logic (STYLE.md §8).
//
// Threads: every member may be called from any thread. A Generation belongs to the one thread
// that reads it (an HTTP worker).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "base/status.h"
#include "chat/chat.h"
#include "runtime/embedder.h"
#include "runtime/engine.h"
#include "runtime/model_manager.h"
#include "server/config.h"
#include "server/metrics.h"
#include "server/options.h"
#include "store/store.h"

namespace hearth::server {

// A generate or chat request, protocol-neutral.
struct TextInput {
    std::string model;
    bool chat = false;                  // messages (chat) or prompt (generate)
    nlohmann::ordered_json messages = nlohmann::ordered_json::array();  // chat: in the template's shape
    nlohmann::ordered_json tools;       // null or an array of OpenAI function schemas
    // OpenAI's tool_choice: "auto" (calls are free to come or not; once one starts it is held
    // to the tools' schemas where the model's call format allows), "none" (tools ignored),
    // "required" (the answer starts with a call), or a tool's name (that tool, required).
    std::string tool_choice = "auto";
    std::string prompt, system, suffix;  // generate
    std::optional<std::string> template_override;  // a Jinja chat template replacing the model's
    bool raw = false;                   // generate: no template
    std::vector<int32_t> context;       // generate: tokens of an earlier exchange to continue
    chat::Think think;
    // think on for a model that cannot think: false answers 400 (Ollama's API does), true runs
    // without thinking (Anthropic's clients ask for thinking by default, whatever the model).
    bool think_if_supported = false;
    nlohmann::json options;             // Ollama options object (or null), applied over the model's params
    std::optional<runtime::Duration> keep_alive;
    bool truncate = false;              // cut an over-long prompt (keeping num_keep tokens) instead of failing
    // Output constraint: "json" or a JSON Schema object; null = free text. Enforced by a grammar
    // mask; for a model that thinks first, only after its thinking block closes.
    nlohmann::ordered_json format;
    // Per-token log-probabilities in the deltas (Delta::logprobs), with top_logprobs (0..20)
    // alternatives each.
    bool logprobs = false;
    int top_logprobs = 0;
};

// One step of output.
struct Delta {
    std::string content, thinking;
    std::vector<chat::ToolCall> tool_calls;
    // The tokens behind this delta (content, thinking or tool call alike), when asked for.
    std::vector<runtime::TokenLogprob> logprobs;
    bool empty() const { return content.empty() && thinking.empty() && tool_calls.empty() && logprobs.empty(); }
};

struct Final {
    std::string done_reason;     // "stop", "length", "load", "unload", "cancelled"
    runtime::RequestStats stats;
    int64_t load_ns = 0;         // acquiring the model (0-ish when it was loaded)
    int64_t total_ns = 0;        // from the service's start of the request to the final event
    std::vector<int32_t> context;  // prompt as run + generated tokens (generate, not raw)
};

class Service;

// One running request. next() hands out its items in order: deltas, then one final or error.
class Generation {
public:
    enum class Kind { none, delta, final, error };
    struct Item {
        Kind kind = Kind::none;
        Delta delta;
        Final final;
        Status status;
    };
    ~Generation();  // cancels a request still running and waits for the engine to let it go
    Generation(const Generation&) = delete;
    Generation& operator=(const Generation&) = delete;

    // The next item, waiting up to `wait`; Kind::none on timeout. After the final or error
    // item, every call returns Kind::none at once.
    Item next(std::chrono::milliseconds wait);
    // Ends the request (client gone, server stopping): a final item with "cancelled" follows.
    void cancel();
    bool finished() const { return finished_; }
    const std::string& model_name() const { return model_name_; }
    int64_t prompt_tokens() const { return (int64_t)prompt_.size(); }

private:
    friend class Service;
    struct Shared;  // the queue the engine's callback fills (outlives this object if it must)
    Generation() = default;

    Service* service_ = nullptr;
    std::string model_name_;
    runtime::Lease lease_;
    std::shared_ptr<Shared> shared_;
    runtime::RequestId id_ = 0;
    std::vector<int32_t> prompt_;       // as submitted
    int64_t keep_ = 0;                  // leading prompt tokens a truncation keeps
    bool want_context_ = false;
    bool drop_thinking_ = false;        // think: false
    std::optional<chat::OutputParser> parser_;
    std::optional<Final> ready_;        // load/unload answers: the final item, no engine involved
    int64_t start_ns_ = 0;
    bool finished_ = false;
    bool counted_ = false;              // registered in the service's live set
};

struct EmbedInput {
    std::string model;
    std::vector<std::string> inputs;
    bool truncate = true;
    std::optional<int64_t> dimensions;
    bool normalize = true;
    nlohmann::json options;
    std::optional<runtime::Duration> keep_alive;
};

struct EmbedOutput {
    std::string model;  // the resolved name
    runtime::EmbedResult result;
    int64_t load_ns = 0;
    int64_t total_ns = 0;
};

class Service {
public:
    // Opens the store at config.models_dir (or the default) and starts the model manager.
    static Result<std::unique_ptr<Service>> create(const ServerConfig& config);
    ~Service();

    // Errors before anything runs: invalid_argument (400), not_found (404), resource_exhausted
    // (503: queue full, shutting down), others (500). An empty prompt / message list loads the
    // model (or, with keep_alive 0, unloads it) and the Generation yields only its final item.
    Result<std::unique_ptr<Generation>> generate(TextInput in);
    Result<EmbedOutput> embed(EmbedInput in);
    // The number of tokens the prompt of `in` renders to (template, tools, system prompt), without
    // loading the model (Anthropic's count_tokens).
    Result<int64_t> count_prompt_tokens(TextInput in);
    // Text <-> tokens with the model's tokenizer (no model load; the tokenizer is cached).
    Result<std::vector<int32_t>> tokenize(const std::string& model, const std::string& text, bool add_special);
    Result<std::string> detokenize(const std::string& model, const std::vector<int32_t>& tokens);

    store::Store& store() { return *store_; }
    runtime::ModelManager& models() { return *manager_; }
    Metrics& metrics() { return metrics_; }
    const ServerConfig& config() const { return config_; }
    // The num_ctx a request without one gets for this model.
    int64_t default_num_ctx(const store::GgufInfo& info) const;
    std::vector<ModelGauges> model_gauges();
    int n_live();  // generations running

    // Cancels every running generation and refuses new requests (503); then unloads every model
    // once the leases are gone. Idempotent.
    void begin_shutdown();
    void finish_shutdown();

private:
    friend class Generation;
    // Per model file: its parsed chat template and detected format (parsed once).
    struct ChatData {
        std::shared_ptr<const chat::ChatTemplate> tmpl;  // null: the model has no template
        chat::ChatFormat format;
    };
    // A request's prompt as tokens, and what the output side needs to know about its format.
    struct Prompt {
        std::vector<int32_t> ids;
        std::vector<std::string> format_stops;
        std::string think_end;          // the thinking block's closing marker when the output may start with one
        std::vector<int32_t> preserve;  // control tokens the output parser must see as text
        std::optional<chat::ChatFormat> chat_format;  // when the prompt went through a chat template
        bool thinking_open = false;     // the template left a thinking block open
        bool want_context = false;      // generate (not raw): the final object carries the context
    };
    explicit Service(const ServerConfig& config);
    Result<Prompt> build_prompt(const TextInput& in, const store::ModelRef& ref, const store::GgufInfo& info,
                                const tok::Tokenizer& tok);
    Result<std::shared_ptr<runtime::LoadedModel>> load(const std::string& name, const runtime::ModelConfig& cfg);
    Result<int64_t> estimate(const std::string& name, const runtime::ModelConfig& cfg);
    Result<runtime::ModelConfig> model_config(const store::GgufInfo& info, const RequestOptions& opts, bool embedding) const;
    Result<ChatData> chat_data(const store::ModelRef& ref, const store::GgufInfo& info);
    Result<std::shared_ptr<const tok::Tokenizer>> tokenizer_for(const std::string& model);
    void unregister(Generation* g);

    ServerConfig config_;
    std::unique_ptr<store::Store> store_;
    Metrics metrics_;
    std::unique_ptr<runtime::ModelManager> manager_;

    std::mutex mu_;
    // ---- under mu_ ----
    std::map<std::string, ChatData> chat_cache_;     // model path + template digest -> parsed template
    std::map<std::string, std::shared_ptr<const tok::Tokenizer>> tok_cache_;  // model path -> tokenizer (few)
    std::map<std::string, std::weak_ptr<runtime::Engine>> engines_;  // loaded name -> its engine (gauges)
    std::set<Generation*> live_;                     // running generations (cancelled on shutdown)
    bool stopping_ = false;
};

// Status code -> HTTP status, in one place (STYLE.md §6).
int http_status(const Status& s);

}  // namespace hearth::server
