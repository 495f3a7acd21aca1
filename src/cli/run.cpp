// hearth run [MODEL] [PROMPT]: chat with a model through its own chat template, or complete a
// raw prompt (--raw, and models without a template).
//
// Where it runs: a model name goes to the daemon when one is running (run_remote.cpp: the
// model is loaded once and shared, and stays for its keep_alive); with no daemon, and always
// for a GGUF path (a file on this machine, which a daemon elsewhere could not open), the model
// runs here, in this process, as below. A name is then resolved in the store, and its params
// and system layers apply as the daemon would apply them.
//
// Chat mode (the model's GGUF has tokenizer.chat_template): the REPL keeps the conversation as
// messages, renders it with add_generation_prompt every turn and resubmits the whole rendering;
// the earlier turns' tokens are (for most templates) a prefix of the new rendering, so the
// engine's prefix cache reuses them. The reply goes through chat::OutputParser: thinking is shown
// in a dimmed "Thinking..." block like Ollama's (--hidethinking drops it), tool calls print as
// JSON lines, and the answer alone goes back into the conversation.
//
// Raw mode (--raw, or no template: stories260K and other base models): the prompt is the text;
// a conversation is the concatenated turns as tokens, as before templates existed. llama.cpp
// would fall back to ChatML here (chat::kDefaultTemplate); a base model makes more sense of a
// plain continuation, which is what Ollama does for a template-less model ({{ .Prompt }}).
//
// The REPL and its commands are repl.cpp's.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <optional>
#include <tuple>

#include "base/timer.h"
#include "chat/chat.h"
#include "chat/json_schema.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "quant/types.h"
#include "cli/client.h"
#include "cli/models.h"
#include "cli/run.h"
#include "runtime/engine.h"
#include "runtime/grammar_mask.h"
#include "runtime/model_manager.h"
#include "server/config.h"
#include "server/options.h"
#include "store/gguf_info.h"
#include "store/store.h"

namespace hearth::cli {
namespace {

using nlohmann::ordered_json;

// --verbose: Ollama's summary, then hearth's extras (cache reuse, truncation, why it stopped,
// the seed). total_ns covers this turn, with the model's load on the first one.
void print_stats(int64_t total_ns, int64_t load_ns, const runtime::RequestStats& st) {
    const int64_t evaluated = st.prompt_tokens - st.cached_tokens;
    std::fputc('\n', stderr);
    print_timings({.total_ns = total_ns,
                   .load_ns = load_ns,
                   .prompt_eval_count = evaluated,
                   .prompt_eval_ns = st.prompt_ns,
                   .eval_count = st.generated_tokens,
                   .eval_ns = st.generate_ns});
    std::fprintf(stderr, "prompt cached:        %lld token(s)\n", (long long)st.cached_tokens);
    if (st.truncated_tokens > 0)
        std::fprintf(stderr, "prompt truncated:     %lld token(s) dropped\n", (long long)st.truncated_tokens);
    std::fprintf(stderr, "done reason:          %s\n", runtime::done_reason_name(st.done));
    std::fprintf(stderr, "seed:                 %llu\n", (unsigned long long)st.seed);
}

// The sampling parameters /set parameter knows, Ollama's names.
const char* const kParameterNames =
    "temperature, top_k, top_p, min_p, typical_p, repeat_penalty, repeat_last_n, presence_penalty, "
    "frequency_penalty, seed, num_predict, num_ctx, stop";

class Runner : public ChatSession {
public:
    Runner(RunArgs& a, std::shared_ptr<model::Model> model, std::shared_ptr<const tok::Tokenizer> tok,
           std::shared_ptr<const gguf::GgufFile> file, std::unique_ptr<runtime::Engine> engine, int64_t load_ns)
        : a_(a), model_(std::move(model)), tok_(std::move(tok)), file_(std::move(file)), engine_(std::move(engine)),
          load_ns_(load_ns) {
        auto src = a_.chat_template.empty() ? file_->meta.get_string_or("tokenizer.chat_template", "")
                                            : Result<std::string>(a_.chat_template);
        if (!a_.raw && src.ok() && !src->empty()) {
            auto t = chat::ChatTemplate::parse(*src);
            if (t.ok()) {
                tmpl_ = std::move(t).value();
                format_ = chat::detect_format(*src, {file_->architecture()});
            } else {
                note_ = "the model's chat template does not parse (" + t.status().message() + "): raw prompts";
            }
        } else if (!a_.raw) {
            note_ = "this model has no chat template: raw completion (each line continues the text)";
        }
        prompt_opts_.bos_token = tok_->bos() >= 0 ? tok_->token_text(tok_->bos()) : "";
        prompt_opts_.eos_token = tok_->eos() >= 0 ? tok_->token_text(tok_->eos()) : "";
        prompt_opts_.vocab_adds_bos = tok_->add_bos();
    }

    bool chat_mode() const { return tmpl_.has_value(); }
    std::string note() const override { return note_; }

    // Sets --format / /set format; false (reported) when it is not JSON or "json".
    bool set_format(const std::string& text) override {
        if (text.empty()) {
            format_json_ = nullptr;
            return true;
        }
        ordered_json f;
        if (text == "json") {
            f = "json";
        } else {
            f = ordered_json::parse(text, nullptr, false);
            if (f.is_discarded()) {
                std::fprintf(stderr, "hearth run: --format: \"%s\" is neither json nor a JSON Schema\n", text.c_str());
                return false;
            }
        }
        if (auto g = chat::format_to_gbnf(f); !g.ok()) {
            std::fprintf(stderr, "hearth run: --format: %s\n", g.status().message().c_str());
            return false;
        }
        format_json_ = std::move(f);
        return true;
    }

    bool turn(const std::string& text, bool keep_history) override {
        return chat_mode() ? turn_chat(text, keep_history) : turn_raw(text, keep_history);
    }

    void clear() override {
        history_.clear();
        messages_ = ordered_json::array();
    }

    void set_system(std::string s) override { a_.system = std::move(s); }

    void set_parameter(const std::string& name, const std::vector<std::string>& values) override {
        if (values.empty()) {
            std::printf("Usage: /set parameter NAME VALUE (%s)\n", kParameterNames);
            return;
        }
        if (name == "stop") {
            a_.stop = values;
            std::string shown;
            for (const auto& v : values) shown += (shown.empty() ? "" : ", ") + ("'" + v + "'");
            std::printf("Set parameter 'stop' to %s\n", shown.c_str());
            return;
        }
        const std::string& v = values[0];
        runtime::SamplingOptions s = a_.sampling;
        int64_t num_predict = a_.num_predict;
        try {
            size_t used = 0;
            auto f = [&] { float x = std::stof(v, &used); return x; };
            auto i = [&] { long long x = std::stoll(v, &used); return x; };
            if (name == "temperature") s.temperature = f();
            else if (name == "top_k") s.top_k = (int32_t)i();
            else if (name == "top_p") s.top_p = f();
            else if (name == "min_p") s.min_p = f();
            else if (name == "typical_p") s.typical_p = f();
            else if (name == "repeat_penalty") s.repeat_penalty = f();
            else if (name == "repeat_last_n") s.repeat_last_n = (int32_t)i();
            else if (name == "presence_penalty") s.presence_penalty = f();
            else if (name == "frequency_penalty") s.frequency_penalty = f();
            else if (name == "seed") s.seed = i();
            else if (name == "num_predict") num_predict = i();
            else if (name == "num_ctx") {
                const int64_t n = i();
                if (used != v.size() || n < 1) throw std::invalid_argument("");
                if (!restart_engine(n)) return;
                std::printf("Set parameter 'num_ctx' to '%s'\n", v.c_str());
                return;
            } else {
                std::printf("Unknown parameter '%s' (known: %s)\n", name.c_str(), kParameterNames);
                return;
            }
            if (used != v.size()) throw std::invalid_argument("");
        } catch (const std::exception&) {
            std::printf("Couldn't set parameter: '%s' is not a valid value for %s\n", v.c_str(), name.c_str());
            return;
        }
        if (Status st = s.validate(); !st.ok()) {
            std::printf("Couldn't set parameter: %s\n", st.message().c_str());
            return;
        }
        a_.sampling = s;
        a_.num_predict = num_predict;
        std::printf("Set parameter '%s' to '%s'\n", name.c_str(), v.c_str());
    }

    void show_parameters() const {
        const auto& s = a_.sampling;
        std::printf("Model defined parameters:\n  (none)\n\nUser defined parameters:\n");
        std::printf("  %-18s %g\n  %-18s %d\n  %-18s %g\n  %-18s %g\n  %-18s %g\n", "temperature", s.temperature, "top_k",
                    s.top_k, "top_p", s.top_p, "min_p", s.min_p, "repeat_penalty", s.repeat_penalty);
        std::printf("  %-18s %lld\n  %-18s %lld\n  %-18s %lld\n", "seed", (long long)s.seed, "num_predict",
                    (long long)a_.num_predict, "num_ctx", (long long)engine_->n_ctx());
        for (const auto& st : a_.stop) std::printf("  %-18s \"%s\"\n", "stop", st.c_str());
    }

    void show_info() const {
        std::printf("  Model\n");
        auto row = [](const char* k, const std::string& v) { std::printf("    %-20s %s\n", k, v.c_str()); };
        auto info = store::read_gguf_info(a_.model_path);
        if (info.ok()) {
            row("architecture", info->architecture);
            row("parameters", info->parameter_size);
            row("context length", std::to_string(info->n_ctx_train));
            row("embedding length", std::to_string(info->n_embd));
            row("quantization", info->quantization);
        } else {
            row("architecture", file_->architecture());
        }
        row("context (this run)", std::to_string(engine_->n_ctx()));
        row("kv cache type", quant::type_name(engine_->kv_type()));
        row("chat template", chat_mode() ? "yes (" + format_.family + ")" : "none: raw completion");
        if (chat_mode()) {
            row("tool calls", chat::tool_call_format_name(format_.tool_calls));
            row("thinking", format_.has_thinking()
                                ? std::string("yes (switch: ") + chat::think_switch_name(format_.think_switch) + ")"
                                : "no");
        }
        std::printf("\n  Capabilities\n    completion\n");
        if (chat_mode() && format_.tool_calls != chat::ToolCallFormat::none) std::printf("    tools\n");
        if (chat_mode() && format_.has_thinking()) std::printf("    thinking\n");
        std::printf("\n");
    }

    void show_template() const {
        if (chat_mode()) std::printf("%s\n", tmpl_->source().c_str());
        else std::printf("No chat template: raw completion.\n");
    }

    void set_think(const std::string& v) override { a_.think = v; }

    bool show(const std::string& what) override {
        if (what == "info") show_info();
        else if (what == "parameters") show_parameters();
        else if (what == "system") std::printf("%s\n", a_.system.empty() ? "No system message was specified for this model." : a_.system.c_str());
        else if (what == "template") show_template();
        else if (what == "license" || what == "modelfile") show_from_store(what);
        else return false;
        return true;
    }

private:
    // /show license | modelfile: what `hearth show` prints, built from the store (or the file).
    void show_from_store(const std::string& what) const {
        auto r = show_model(nullptr, a_.model, false);
        if (!r.ok()) {
            std::printf("Couldn't show the %s: %s\n", what.c_str(), r.status().message().c_str());
            return;
        }
        const auto it = r->find(what);
        const std::string text = it != r->end() && it->is_string() ? it->get<std::string>() : "";
        if (text.empty()) std::printf("No %s was specified for this model.\n", what.c_str());
        else std::printf("%s%s", text.c_str(), text.back() == '\n' ? "" : "\n");
    }

    bool restart_engine(int64_t n_ctx) {
        runtime::EngineOptions eo;
        eo.n_ctx = n_ctx;
        eo.n_parallel = 1;
        eo.kv_type = engine_->kv_type();
        engine_.reset();  // its KV pool goes before the new one is sized
        auto e = runtime::Engine::create(model_, tok_, eo);
        if (!e.ok()) {
            std::printf("Couldn't set num_ctx: %s\n", e.status().message().c_str());
            eo.n_ctx = a_.num_ctx;
            e = runtime::Engine::create(model_, tok_, eo);
            if (!e.ok()) fail("run", e.status());
        }
        engine_ = std::move(e).value();
        a_.num_ctx = engine_->n_ctx();
        return true;
    }

    chat::Think think() const {
        if (a_.think.empty()) return {};
        auto t = chat::Think::parse(a_.think);
        return t.ok() ? t.value() : chat::Think{};
    }

    // The request's logits mask for --format, fresh per turn (masks keep state). Thinking
    // models keep the reasoning block free: the constraint starts after its closing marker.
    Result<std::shared_ptr<runtime::LogitsMask>> make_mask(bool thinking_expected) const {
        if (format_json_.is_null()) return std::shared_ptr<runtime::LogitsMask>();
        if (!thinking_expected) return runtime::make_format_mask(*tok_, format_json_);
        auto gbnf = chat::format_to_gbnf(format_json_);
        if (!gbnf.ok()) return gbnf.status();
        auto inner = runtime::make_grammar_mask_for(runtime::TokenTable::get(*tok_), *gbnf);
        if (!inner.ok()) return inner.status();
        return runtime::make_deferred_mask(*tok_, std::move(inner).value(), format_.think_end);
    }

    void base_request(runtime::Request& req) const {
        req.sampling = a_.sampling;
        req.num_predict = a_.num_predict;
        req.stop = a_.stop;
        req.ignore_eos = a_.ignore_eos;
        req.keep = tok_->bos() >= 0 ? 1 : 0;
    }

    // Runs the request, streaming text to on_text; Ctrl-C cancels. nullopt on error (reported).
    std::optional<runtime::Event> generate(const runtime::Request& req, const std::function<void(const std::string&)>& on_text) {
        std::promise<runtime::Event> done;
        clear_interrupted();
        turn_start_ns_ = now_ns();
        const runtime::RequestId id = engine_->submit(req, [&](const runtime::Event& e) {
            if (e.kind == runtime::Event::Kind::text) on_text(e.text);
            else done.set_value(e);
        });
        std::future<runtime::Event> f = done.get_future();
        bool cancelled = false;
        while (f.wait_for(std::chrono::milliseconds(50)) != std::future_status::ready)
            if (!cancelled && interrupted()) {
                engine_->cancel(id);
                cancelled = true;
            }
        runtime::Event e = f.get();
        if (e.kind == runtime::Event::Kind::error) {
            std::fputc('\n', stdout);
            std::fflush(stdout);
            std::fprintf(stderr, "hearth run: %s\n", e.status.message().c_str());
            return std::nullopt;
        }
        return e;
    }

    void report(const runtime::Event& e) {
        std::fputc('\n', stdout);
        std::fflush(stdout);
        if (e.stats.truncated_tokens > 0 && !a_.verbose)
            std::fprintf(stderr, "(the context is full: %lld earlier token(s) dropped)\n",
                         (long long)e.stats.truncated_tokens);
        // The load counts once, in the first turn's timings.
        if (a_.verbose) print_stats(now_ns() - turn_start_ns_ + load_ns_, load_ns_, e.stats);
        load_ns_ = 0;
    }

    bool turn_raw(const std::string& text, bool keep_history) {
        runtime::Request req;
        base_request(req);
        // BOS (and the like) only at the start of the conversation.
        std::vector<int32_t> ids = tok_->encode(text, /*add_special=*/history_.empty(), /*parse_special=*/false);
        if (ids.empty()) return true;
        req.prompt = history_;
        req.prompt.insert(req.prompt.end(), ids.begin(), ids.end());
        // A conversation that outgrows the context drops its oldest turns (the BOS stays).
        req.truncate = a_.truncate || !history_.empty();
        auto mask = make_mask(false);
        if (!mask.ok()) {
            std::fprintf(stderr, "hearth run: %s\n", mask.status().message().c_str());
            return false;
        }
        req.mask = *mask;
        auto e = generate(req, [](const std::string& piece) { out(piece); });
        if (!e) return false;
        report(*e);
        if (keep_history) {
            // What the engine actually ran (after any truncation) plus what it generated.
            history_ = req.prompt;
            if (e->stats.truncated_tokens > 0)
                history_.erase(history_.begin() + req.keep, history_.begin() + req.keep + e->stats.truncated_tokens);
            history_.insert(history_.end(), e->stats.tokens.begin(), e->stats.tokens.end());
        }
        return true;
    }

    bool turn_chat(const std::string& text, bool keep_history) {
        ordered_json msgs = ordered_json::array();
        if (!a_.system.empty()) msgs.push_back({{"role", "system"}, {"content", a_.system}});
        for (const auto& m : messages_) msgs.push_back(m);
        const ordered_json user{{"role", "user"}, {"content", text}};
        msgs.push_back(user);
        chat::PromptOptions po = prompt_opts_;
        po.think = think();
        auto rendered = chat::render_prompt(*tmpl_, format_, msgs, nullptr, po);
        if (!rendered.ok()) {
            std::fprintf(stderr, "hearth run: chat template: %s\n", rendered.status().message().c_str());
            return false;
        }
        runtime::Request req;
        base_request(req);
        req.prompt = tok_->encode(rendered->text, tok_->add_bos(), /*parse_special=*/true);
        for (const auto& s : format_.stop) req.stop.push_back(s);
        // Tool-call markers that are control tokens (<|python_tag|>, [TOOL_CALLS]) must reach
        // the parser as text.
        for (const auto& text : format_.preserved_tokens)
            if (const int32_t id = tok_->find_token(text); id >= 0) req.preserve_tokens.push_back(id);
        req.truncate = a_.truncate || !messages_.empty();
        const bool thinking_expected =
            !format_.think_start.empty() &&
            (rendered->thinking_open || (po.think.mode == chat::Think::Mode::on && format_.has_thinking()));
        auto mask = make_mask(thinking_expected);
        if (!mask.ok()) {
            std::fprintf(stderr, "hearth run: %s\n", mask.status().message().c_str());
            return false;
        }
        req.mask = *mask;

        const bool show_thinking = !a_.hide_thinking && po.think.mode != chat::Think::Mode::off;
        chat::OutputParser parser(format_, rendered->thinking_open);
        ReplyPrinter printer(show_thinking, isatty(STDOUT_FILENO));
        chat::ChatDelta reply;
        auto on_text = [&](const std::string& piece) {
            chat::ChatDelta d = parser.push(piece);
            printer.print(d);
            reply.append(std::move(d));
        };
        auto e = generate(req, on_text);
        if (!e) return false;
        chat::ChatDelta last = parser.finish();
        printer.print(last);
        printer.end_thinking();
        reply.append(std::move(last));
        report(*e);
        if (keep_history) {
            messages_.push_back(user);
            ordered_json assistant{{"role", "assistant"}, {"content", reply.content}};
            if (!reply.thinking.empty())
                assistant[format_.tool_calls == chat::ToolCallFormat::harmony ? "thinking" : "reasoning_content"] =
                    reply.thinking;
            if (!reply.tool_calls.empty()) {
                ordered_json calls = ordered_json::array();
                for (const auto& c : reply.tool_calls)
                    calls.push_back({{"id", c.id}, {"type", "function"},
                                     {"function", {{"name", c.name}, {"arguments", c.arguments}}}});
                assistant["tool_calls"] = std::move(calls);
            }
            messages_.push_back(std::move(assistant));
        }
        return true;
    }

    RunArgs& a_;
    std::shared_ptr<model::Model> model_;
    std::shared_ptr<const tok::Tokenizer> tok_;
    std::shared_ptr<const gguf::GgufFile> file_;
    std::unique_ptr<runtime::Engine> engine_;
    int64_t load_ns_;             // loading the model; 0 after the first turn reported it
    int64_t turn_start_ns_ = 0;   // when the running turn was submitted
    std::optional<chat::ChatTemplate> tmpl_;  // chat mode when set
    chat::ChatFormat format_;
    chat::PromptOptions prompt_opts_;
    std::string note_;
    ordered_json format_json_;                       // --format; null: none
    ordered_json messages_ = ordered_json::array();  // chat mode: user/assistant turns (the system prompt apart)
    std::vector<int32_t> history_;                   // raw mode: the conversation's tokens
};

void run(RunArgs a) {
    if (!a.prompt_flag.empty()) {
        if (!a.prompt.empty()) fail("run", "give the prompt either as an argument or with --prompt, not both");
        a.prompt = a.prompt_flag;
    }
    if (Status s = a.sampling.validate(); !s.ok()) fail("run", s);
    if (!a.think.empty())
        if (auto t = chat::Think::parse(a.think); !t.ok()) fail("run", "--think: " + t.status().message());
    if (!a.keepalive.empty())
        if (auto k = runtime::parse_keep_alive(a.keepalive); !k.ok()) fail("run", "--keepalive: " + k.status().message());
    if (a.model.empty()) {
        a.model = default_model_path();
        if (a.model.empty())
            fail("run", "no model named and no default model at hand; give a GGUF file: hearth run /path/to/model.gguf");
        std::fprintf(stderr,
                     "No model named: using stories260K, a tiny model trained on children's stories (260K parameters) "
                     "from hearth's test data. For real use, give a GGUF model file: hearth run /path/to/model.gguf\n");
    }
    std::error_code ec;
    const bool is_path = store::looks_like_path(a.model) || std::filesystem::is_regular_file(a.model, ec);
    if (!is_path)
        if (auto daemon = find_daemon("run")) {
            run_remote(a, *daemon);
            return;
        }
    // The same HEARTH_* settings as `hearth serve`, read and checked in one place.
    auto env = server::config_from_env();
    if (!env.ok()) fail("run", env.status());
    if (is_path) {
        a.model_path = a.model;
    } else {
        store::Store st(env->models_dir.empty() ? store::Store::default_root() : env->models_dir);
        auto ref = st.resolve(a.model);
        if (!ref.ok()) fail("run", ref.status());
        a.model_path = ref->model_path;
        a.adapter_paths = ref->adapter_paths;
        // The model's own parameters, then the flags given over them: the daemon's order.
        server::RequestOptions o;
        if (Status s = server::apply_options(ref->params, o); !s.ok()) fail("run", s.with_context("the model's parameters"));
        if (Status s = server::apply_options(a.options, o); !s.ok()) fail("run", s);
        if (Status s = server::validate_options(o); !s.ok()) fail("run", s);
        a.sampling = o.sampling;
        a.num_predict = o.num_predict;
        a.stop = o.stop;
        if (o.num_ctx) a.num_ctx = *o.num_ctx;
        if (o.num_thread) a.threads = (int)*o.num_thread;
        if (a.system.empty()) a.system = ref->system;
        // A TEMPLATE layer replaces the GGUF's template, as in the daemon (Store::info checks it
        // is Jinja; Go templates from an Ollama store are left out).
        if (!ref->template_text.empty()) {
            auto info = st.info(*ref);
            if (info.ok() && !info->chat_template.empty()) a.chat_template = info->chat_template;
        }
    }
    if (a.threads == 0) a.threads = env->num_thread;
    if (a.kv_type.empty()) a.kv_type = env->kv_cache_type;
    auto lm = load_model_file(a.model_path, true, a.threads, a.adapter_paths);
    if (!lm.ok()) fail("run", lm.status());
    if (lm->model->is_embedding())
        fail("run", a.model + " is an embedding model; it cannot generate text (use `hearth logits --embed`)");
    const int64_t n_train = lm->model->hparams().n_ctx_train;
    runtime::EngineOptions eo;
    const int64_t default_ctx = env->context_length > 0 ? env->context_length : 4096;
    eo.n_ctx = a.num_ctx > 0 ? a.num_ctx : std::min<int64_t>(default_ctx, n_train > 0 ? n_train : default_ctx);
    eo.n_parallel = 1;
    a.num_ctx = eo.n_ctx;
    const auto kv_type = quant::parse_type_name(a.kv_type);
    if (!kv_type) fail("run", "KV cache type \"" + a.kv_type + "\" is not a type name; use f16, q8_0 or q4_0");
    eo.kv_type = *kv_type;
    std::shared_ptr<const tok::Tokenizer> tok(std::move(lm->tokenizer));
    std::shared_ptr<model::Model> model(std::move(lm->model));
    auto engine = runtime::Engine::create(model, tok, eo);
    if (!engine.ok()) fail("run", engine.status());
    if (a.verbose) std::fprintf(stderr, "%s\n", engine.value()->kv_note().c_str());
    Runner runner(a, model, tok, lm->file, std::move(engine).value(), lm->load_ns);
    if (!a.format.empty() && !runner.set_format(a.format)) std::exit(1);
    drive(runner, a);
}

}  // namespace

void add_run_command(CLI::App& app) {
    auto a = std::make_shared<RunArgs>();
    CLI::App* c = app.add_subcommand("run", "Chat with a model (through its chat template), or complete a raw prompt");
    c->add_option("model", a->model,
                  "Model name (through the daemon when one runs, else from the store in this process) or GGUF file "
                  "(always in this process); default: the small story model from the test data");
    c->add_option("prompt", a->prompt, "Prompt text; without one, reads standard input (interactive on a terminal)");
    c->add_option("-p,--prompt", a->prompt_flag, "Prompt text (lets the model be omitted)");
    c->add_flag("--verbose", a->verbose, "Print timings: load, prompt and generation token counts, durations and rates");
    c->add_option("--keepalive", a->keepalive,
                  "Daemon: how long the model stays loaded after this run (5m, 1h, -1 = forever, 0 = unload at once); "
                  "an in-process model lives as long as the run");
    // The sampling and load flags, each also as the Ollama option it sets (RunArgs::options).
    using OptionValue = std::function<nlohmann::json()>;
    auto given = std::make_shared<std::vector<std::tuple<CLI::Option*, const char*, OptionValue>>>();
    auto opt = [&](const char* flags, auto& field, const char* ollama_name, const char* help) {
        CLI::Option* o = c->add_option(flags, field, help)->capture_default_str();
        auto* f = &field;
        given->emplace_back(o, ollama_name, [f] { return nlohmann::json(*f); });
        return o;
    };
    opt("--temperature", a->sampling.temperature, "temperature", "Sampling temperature; 0 = greedy");
    opt("--top-k", a->sampling.top_k, "top_k", "Keep the k most likely tokens; 0 = off");
    opt("--top-p", a->sampling.top_p, "top_p", "Nucleus sampling mass; 1 = off");
    opt("--min-p", a->sampling.min_p, "min_p", "Drop tokens below min_p x the top probability");
    opt("--typical-p", a->sampling.typical_p, "typical_p", "Locally typical sampling; 1 = off");
    opt("--repeat-penalty", a->sampling.repeat_penalty, "repeat_penalty", "Penalty for repeated tokens; 1 = off");
    opt("--repeat-last-n", a->sampling.repeat_last_n, "repeat_last_n", "Penalty window in tokens; 0 = off, -1 = all");
    opt("--presence-penalty", a->sampling.presence_penalty, "presence_penalty", "Subtracted once per seen token");
    opt("--frequency-penalty", a->sampling.frequency_penalty, "frequency_penalty", "Subtracted per occurrence");
    opt("--seed", a->sampling.seed, "seed", "Random seed; -1 = random");
    opt("-n,--num-predict", a->num_predict, "num_predict", "Most tokens to generate; -1 = until the context is full");
    opt("--stop", a->stop, "stop", "Stop string (repeatable); not printed");
    opt("-c,--num-ctx", a->num_ctx, "num_ctx",
        "Context length in tokens (default: $HEARTH_CONTEXT_LENGTH or 4096, at most the model's)");
    opt("-t,--threads", a->threads, "num_thread", "Worker threads (default: $HEARTH_NUM_THREAD, else one per core)");
    c->add_flag("--ignore-eos", a->ignore_eos, "Keep generating past end-of-generation tokens (in-process runs)");
    c->add_option("--kv-type", a->kv_type,
                  "KV cache type: f16, q8_0 or q4_0 (in-process runs; default: $HEARTH_KV_CACHE_TYPE, else f16)");
    c->add_flag("-i,--interactive", a->interactive,
                "A conversation: every line of standard input is one turn, even when it is not a terminal");
    c->add_flag("--truncate", a->truncate,
                "Cut a prompt longer than the context from the front (the BOS stays) instead of failing");
    c->add_flag("--raw", a->raw, "No chat template: the prompt is the raw text to continue");
    CLI::Option* think = c->add_option("--think", a->think,
                                       "Thinking: --think, --think=false, or a level --think=low|medium|high (gpt-oss); "
                                       "default: the template's own")
                             ->expected(0, 1);
    c->add_flag("--hidethinking", a->hide_thinking, "Think, but print only the answer");
    c->add_option("--format", a->format, "Constrain the reply: json, or a JSON Schema (as JSON text)");
    c->add_option("--system", a->system, "System message (chat mode)");
    c->callback([a, think, given] {
        if (think->count() > 0 && a->think.empty()) a->think = "true";  // a bare --think
        for (const auto& [o, name, value] : *given)
            if (o->count() > 0) a->options[name] = value();
        run(*a);
    });
}

}  // namespace hearth::cli
