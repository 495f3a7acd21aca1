// hearth run [MODEL] [PROMPT]: stream a completion of a raw prompt (no chat template yet).
// Runs on the serving engine, as the daemon will: an interactive session resubmits the whole
// conversation every turn and the prefix cache reuses the blocks of the turns before.
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <iostream>
#include <iterator>

#include "cli/commands.h"
#include "cli/common.h"
#include "quant/types.h"
#include "runtime/engine.h"

namespace hearth::cli {
namespace {

struct RunArgs {
    std::string model;
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
};

std::atomic<bool> g_interrupted{false};
extern "C" void on_sigint(int) { g_interrupted.store(true); }

void print_stats(int64_t load_ns, const runtime::RequestStats& st) {
    auto ms = [](int64_t ns) { return ns / 1e6; };
    auto rate = [](int64_t n, int64_t ns) { return ns > 0 ? n / (ns / 1e9) : 0.0; };
    const int64_t evaluated = st.prompt_tokens - st.cached_tokens;
    std::fprintf(stderr, "\nload duration:        %.2fms\n", ms(load_ns));
    std::fprintf(stderr, "prompt eval count:    %lld token(s)\n", (long long)evaluated);
    std::fprintf(stderr, "prompt cached:        %lld token(s)\n", (long long)st.cached_tokens);
    if (st.truncated_tokens > 0)
        std::fprintf(stderr, "prompt truncated:     %lld token(s) dropped\n", (long long)st.truncated_tokens);
    std::fprintf(stderr, "prompt eval duration: %.2fms\n", ms(st.prompt_ns));
    std::fprintf(stderr, "prompt eval rate:     %.2f tokens/s\n", rate(evaluated, st.prompt_ns));
    std::fprintf(stderr, "eval count:           %lld token(s)\n", (long long)st.generated_tokens);
    std::fprintf(stderr, "eval duration:        %.2fms\n", ms(st.generate_ns));
    std::fprintf(stderr, "eval rate:            %.2f tokens/s\n", rate(st.generated_tokens, st.generate_ns));
    std::fprintf(stderr, "done reason:          %s\n", runtime::done_reason_name(st.done));
    std::fprintf(stderr, "seed:                 %llu\n", (unsigned long long)st.seed);
}

class Runner {
public:
    Runner(const RunArgs& a, std::unique_ptr<runtime::Engine> engine, const tok::Tokenizer& tok, int64_t load_ns)
        : a_(a), engine_(std::move(engine)), tok_(tok), load_ns_(load_ns) {}

    // One turn: the conversation so far plus `text`. Ctrl-C stops the generation (the turn's
    // output so far stays in the conversation). Returns false on error (already reported).
    bool turn(const std::string& text, bool keep_history) {
        runtime::Request req;
        // BOS (and the like) only at the start of the conversation.
        std::vector<int32_t> ids = tok_.encode(text, /*add_special=*/history_.empty(), /*parse_special=*/false);
        if (ids.empty()) return true;
        req.prompt = history_;
        req.prompt.insert(req.prompt.end(), ids.begin(), ids.end());
        req.sampling = a_.sampling;
        req.num_predict = a_.num_predict;
        req.stop = a_.stop;
        req.ignore_eos = a_.ignore_eos;
        // A conversation that outgrows the context drops its oldest turns (the BOS stays).
        req.truncate = a_.truncate || !history_.empty();
        req.keep = tok_.bos() >= 0 ? 1 : 0;
        std::promise<runtime::Event> done;
        g_interrupted.store(false);
        const runtime::RequestId id = engine_->submit(req, [&](const runtime::Event& e) {
            if (e.kind == runtime::Event::Kind::text) {
                std::fwrite(e.text.data(), 1, e.text.size(), stdout);
                std::fflush(stdout);
            } else {
                done.set_value(e);
            }
        });
        std::future<runtime::Event> f = done.get_future();
        bool cancelled = false;
        while (f.wait_for(std::chrono::milliseconds(50)) != std::future_status::ready)
            if (!cancelled && g_interrupted.load()) {
                engine_->cancel(id);
                cancelled = true;
            }
        const runtime::Event e = f.get();
        std::fputc('\n', stdout);
        std::fflush(stdout);
        if (e.kind == runtime::Event::Kind::error) {
            std::fprintf(stderr, "hearth run: %s\n", e.status.message().c_str());
            return false;
        }
        if (e.stats.truncated_tokens > 0 && !a_.verbose)
            std::fprintf(stderr, "(the context is full: %lld earlier token(s) dropped)\n",
                         (long long)e.stats.truncated_tokens);
        if (a_.verbose) print_stats(load_ns_, e.stats);
        if (keep_history) {
            // What the engine actually ran (after any truncation) plus what it generated.
            history_ = req.prompt;
            if (e.stats.truncated_tokens > 0)
                history_.erase(history_.begin() + req.keep, history_.begin() + req.keep + e.stats.truncated_tokens);
            history_.insert(history_.end(), e.stats.tokens.begin(), e.stats.tokens.end());
        }
        return true;
    }
    void clear() { history_.clear(); }

private:
    const RunArgs& a_;
    std::unique_ptr<runtime::Engine> engine_;
    const tok::Tokenizer& tok_;
    int64_t load_ns_;
    std::vector<int32_t> history_;  // the conversation's tokens
};

void run(RunArgs a) {
    if (!a.prompt_flag.empty()) {
        if (!a.prompt.empty()) fail("run", "give the prompt either as an argument or with --prompt, not both");
        a.prompt = a.prompt_flag;
    }
    if (Status s = a.sampling.validate(); !s.ok()) fail("run", s);
    if (a.model.empty()) {
        a.model = default_model_path();
        if (a.model.empty())
            fail("run", "no model named and no default model at hand; give a GGUF file: hearth run /path/to/model.gguf");
        std::fprintf(stderr,
                     "No model named: using stories260K, a tiny model trained on children's stories (260K parameters) "
                     "from hearth's test data. For real use, give a GGUF model file: hearth run /path/to/model.gguf\n");
    }
    auto lm = load_model_file(a.model, true, a.threads);
    if (!lm.ok()) fail("run", lm.status());
    if (lm->model->is_embedding())
        fail("run", a.model + " is an embedding model; it cannot generate text (use `hearth logits --embed`)");
    const int64_t n_train = lm->model->hparams().n_ctx_train;
    runtime::EngineOptions eo;
    eo.n_ctx = a.num_ctx > 0 ? a.num_ctx : std::min<int64_t>(4096, n_train > 0 ? n_train : 4096);
    eo.n_parallel = 1;
    if (a.kv_type.empty()) {
        const char* env = std::getenv("HEARTH_KV_CACHE_TYPE");
        a.kv_type = env && *env ? env : "f16";
    }
    const auto kv_type = quant::parse_type_name(a.kv_type);
    if (!kv_type) fail("run", "KV cache type \"" + a.kv_type + "\" is not a type name; use f16, q8_0 or q4_0");
    eo.kv_type = *kv_type;
    std::shared_ptr<const tok::Tokenizer> tok(std::move(lm->tokenizer));
    auto engine = runtime::Engine::create(std::shared_ptr<model::Model>(std::move(lm->model)), tok, eo);
    if (!engine.ok()) fail("run", engine.status());
    if (a.verbose) std::fprintf(stderr, "%s\n", engine.value()->kv_note().c_str());
    Runner runner(a, std::move(engine).value(), *tok, lm->load_ns);
    std::signal(SIGINT, on_sigint);

    if (!a.prompt.empty()) {
        if (!runner.turn(a.prompt, false)) std::exit(1);
        return;
    }
    if (!isatty(STDIN_FILENO) && !a.interactive) {  // piped input is one prompt
        std::string text((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
        while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
        if (text.empty()) fail("run", "the prompt on standard input is empty");
        if (!runner.turn(text, false)) std::exit(1);
        return;
    }
    std::fprintf(stderr, "Type a prompt and press Enter; /bye or Ctrl-D to quit, /clear to forget the context, "
                         "Ctrl-C to stop a reply.\n");
    std::string line;
    for (;;) {
        std::fputs(">>> ", stdout);
        std::fflush(stdout);
        g_interrupted.store(false);
        if (!std::getline(std::cin, line)) {
            if (g_interrupted.load() && !std::cin.eof()) {  // Ctrl-C at the prompt: a fresh line
                std::cin.clear();
                std::fputc('\n', stdout);
                continue;
            }
            break;
        }
        if (line == "/bye" || line == "/exit") break;
        if (line == "/clear") {
            runner.clear();
            continue;
        }
        if (line.empty()) continue;
        if (!runner.turn(line, true)) runner.clear();  // a failed turn starts over
    }
}

}  // namespace

void add_run_command(CLI::App& app) {
    auto a = std::make_shared<RunArgs>();
    CLI::App* c = app.add_subcommand("run", "Generate text from a prompt (raw completion)");
    c->add_option("model", a->model, "GGUF model file (default: the small story model from the test data)");
    c->add_option("prompt", a->prompt, "Prompt text; without one, reads standard input (interactive on a terminal)");
    c->add_option("-p,--prompt", a->prompt_flag, "Prompt text (lets the model be omitted)");
    c->add_flag("--verbose", a->verbose, "Print load time, prompt and generation token counts and rates");
    c->add_option("--temperature", a->sampling.temperature, "Sampling temperature; 0 = greedy")->capture_default_str();
    c->add_option("--top-k", a->sampling.top_k, "Keep the k most likely tokens; 0 = off")->capture_default_str();
    c->add_option("--top-p", a->sampling.top_p, "Nucleus sampling mass; 1 = off")->capture_default_str();
    c->add_option("--min-p", a->sampling.min_p, "Drop tokens below min_p x the top probability")->capture_default_str();
    c->add_option("--typical-p", a->sampling.typical_p, "Locally typical sampling; 1 = off")->capture_default_str();
    c->add_option("--repeat-penalty", a->sampling.repeat_penalty, "Penalty for repeated tokens; 1 = off")->capture_default_str();
    c->add_option("--repeat-last-n", a->sampling.repeat_last_n, "Penalty window in tokens; 0 = off, -1 = all")->capture_default_str();
    c->add_option("--presence-penalty", a->sampling.presence_penalty, "Subtracted once per seen token")->capture_default_str();
    c->add_option("--frequency-penalty", a->sampling.frequency_penalty, "Subtracted per occurrence")->capture_default_str();
    c->add_option("--seed", a->sampling.seed, "Random seed; -1 = random")->capture_default_str();
    c->add_option("-n,--num-predict", a->num_predict, "Most tokens to generate; -1 = until the context is full")->capture_default_str();
    c->add_option("--stop", a->stop, "Stop string (repeatable); not printed");
    c->add_option("-c,--num-ctx", a->num_ctx, "Context length in tokens (default: min(4096, the model's))");
    c->add_option("-t,--threads", a->threads, "Worker threads (default: all cores)");
    c->add_flag("--ignore-eos", a->ignore_eos, "Keep generating past end-of-generation tokens");
    c->add_option("--kv-type", a->kv_type, "KV cache type: f16, q8_0 or q4_0 (default: $HEARTH_KV_CACHE_TYPE, else f16)");
    c->add_flag("-i,--interactive", a->interactive,
                "A conversation: every line of standard input is one turn, even when it is not a terminal");
    c->add_flag("--truncate", a->truncate,
                "Cut a prompt longer than the context from the front (the BOS stays) instead of failing");
    c->callback([a] { run(*a); });
}

}  // namespace hearth::cli
