// hearth run [MODEL] [PROMPT]: stream a completion of a raw prompt (no chat template yet).
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <iterator>

#include "cli/commands.h"
#include "cli/common.h"
#include "model/session.h"
#include "runtime/generate.h"

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
};

void print_stats(const LoadedModel& lm, const runtime::GenerateStats& st) {
    auto ms = [](int64_t ns) { return ns / 1e6; };
    auto rate = [](int64_t n, int64_t ns) { return ns > 0 ? n / (ns / 1e9) : 0.0; };
    std::fprintf(stderr, "\nload duration:        %.2fms\n", ms(lm.load_ns));
    std::fprintf(stderr, "prompt eval count:    %lld token(s)\n", (long long)st.prompt_tokens);
    std::fprintf(stderr, "prompt eval duration: %.2fms\n", ms(st.prompt_ns));
    std::fprintf(stderr, "prompt eval rate:     %.2f tokens/s\n", rate(st.prompt_tokens, st.prompt_ns));
    std::fprintf(stderr, "eval count:           %lld token(s)\n", (long long)st.generated_tokens);
    std::fprintf(stderr, "eval duration:        %.2fms\n", ms(st.generate_ns));
    std::fprintf(stderr, "eval rate:            %.2f tokens/s\n", rate(st.generated_tokens, st.generate_ns));
    std::fprintf(stderr, "done reason:          %s\n", runtime::done_reason_name(st.done));
    std::fprintf(stderr, "seed:                 %llu\n", (unsigned long long)st.seed);
}

// One prompt through the session; returns false on error (already reported).
bool complete(const RunArgs& a, LoadedModel& lm, model::Session& session, const std::string& text, bool first) {
    runtime::GenerateRequest req;
    // BOS (and the like) only at the start of the conversation.
    req.prompt = lm.tokenizer->encode(text, /*add_special=*/first, /*parse_special=*/false);
    if (req.prompt.empty()) return true;
    req.sampling = a.sampling;
    req.num_predict = a.num_predict;
    req.stop = a.stop;
    req.ignore_eos = a.ignore_eos;
    auto st = runtime::generate(session, *lm.tokenizer, req, [](std::string_view piece) {
        std::fwrite(piece.data(), 1, piece.size(), stdout);
        std::fflush(stdout);
        return true;
    });
    std::fputc('\n', stdout);
    std::fflush(stdout);
    if (!st.ok()) {
        std::fprintf(stderr, "hearth run: %s\n", st.status().message().c_str());
        return false;
    }
    if (a.verbose) print_stats(lm, st.value());
    return true;
}

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
    int64_t n_ctx = a.num_ctx > 0 ? a.num_ctx : std::min<int64_t>(4096, n_train > 0 ? n_train : 4096);
    auto session = model::Session::create(*lm->model, n_ctx);
    if (!session.ok()) fail("run", session.status());

    if (!a.prompt.empty()) {
        if (!complete(a, lm.value(), session.value(), a.prompt, true)) std::exit(1);
        return;
    }
    if (!isatty(STDIN_FILENO)) {  // piped input is one prompt
        std::string text((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
        while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
        if (text.empty()) fail("run", "the prompt on standard input is empty");
        if (!complete(a, lm.value(), session.value(), text, true)) std::exit(1);
        return;
    }
    std::fprintf(stderr, "Type a prompt and press Enter; /bye or Ctrl-D to quit, /clear to forget the context.\n");
    bool first = true;
    std::string line;
    for (;;) {
        std::fputs(">>> ", stdout);
        std::fflush(stdout);
        if (!std::getline(std::cin, line)) break;
        if (line == "/bye" || line == "/exit") break;
        if (line == "/clear") {
            session->reset();
            first = true;
            continue;
        }
        if (line.empty()) continue;
        if (!complete(a, lm.value(), session.value(), line, first)) {
            session->reset();  // a failed turn (e.g. context full) starts over
            first = true;
            continue;
        }
        first = false;
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
    c->callback([a] { run(*a); });
}

}  // namespace hearth::cli
