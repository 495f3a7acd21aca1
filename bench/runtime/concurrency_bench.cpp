// Aggregate generation throughput of runtime::Engine at several concurrency levels:
//   concurrency_bench MODEL.gguf [-p 64] [-n 32] [-c 2048] [-t threads] [-b 512] [-L 4000] [-s 1,4,16,64] [-g -1] [-r 1.0]
// For each count of concurrent streams (-s, default 1, 4, 16, 64): submits that many requests at once (random
// prompts of p tokens, greedy, n generated tokens each, end-of-generation ignored) to one engine
// sized for them, and prints the generated tokens/s over the wall time from first submit to last
// done, plus the mean time to first token, and the decode-phase rate (tokens after each stream's
// first, over the time from the last stream's first token to the last done: llama-batched-bench's
// "generated t/s" when every stream starts together). -g is LoadOptions::num_gpu (-1 automatic:
// the GPU when there is one and the model runs there, 0 the CPU). -r sets every request's repeat_penalty (default 1:
// none; the window is Ollama's 64 tokens). Then the chunked-prefill check: the time to first
// token of a short request (16 tokens) alone, and submitted right after a long one (-L, default
// 4000 tokens) starts prefilling. Not a test: record results in bench/RESULTS.md with the
// machine and commit.
#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "base/timer.h"
#include "runtime/engine.h"

using namespace hearth;

namespace {

// Submits requests of the given prompt lengths (one token generated each) back to back and
// returns each one's time to first token (queue + prefill) in ms.
std::vector<double> ttft_ms(runtime::Engine& engine, const std::vector<int>& lengths, int64_t n_vocab, std::mt19937& rng) {
    std::mutex mu;
    std::condition_variable cv;
    std::vector<double> out(lengths.size(), 0.0);
    size_t n_done = 0;
    for (size_t k = 0; k < lengths.size(); ++k) {
        runtime::Request r;
        for (int i = 0; i < lengths[k]; ++i) r.prompt.push_back((int32_t)(rng() % n_vocab));
        r.sampling.temperature = 0.0f;
        r.num_predict = 1;
        r.ignore_eos = true;
        engine.submit(std::move(r), [&, k](const runtime::Event& e) {
            if (e.kind == runtime::Event::Kind::text) return;
            std::lock_guard<std::mutex> lk(mu);
            if (e.kind == runtime::Event::Kind::error) std::fprintf(stderr, "error: %s\n", e.status.message().c_str());
            out[k] = (e.stats.queue_ns + e.stats.prompt_ns) / 1e6;
            ++n_done;
            cv.notify_all();
        });
    }
    std::unique_lock<std::mutex> lk(mu);
    cv.wait(lk, [&] { return n_done == lengths.size(); });
    return out;
}

}  // namespace

int main(int argc, char** argv) {
    // Line-buffered even into a pipe: a run that dies (a GPU fault, an abort) keeps what it printed.
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s MODEL.gguf [-p 64] [-n 32] [-c 2048] [-t threads] [-b 512] [-L 4000] [-s 1,4,16,64] [-g -1] [-r 1.0]\n",
                     argv[0]);
        return 2;
    }
    const std::string path = argv[1];
    int n_prompt = 64, n_gen = 32, threads = 0;
    int64_t n_ctx = 2048, step_tokens = 512;
    int n_long = 4000, num_gpu = -1;
    float repeat_penalty = 1.0f;
    std::vector<int> stream_counts = {1, 4, 16, 64};
    for (int i = 2; i + 1 < argc; i += 2) {
        const int v = std::atoi(argv[i + 1]);
        if (!std::strcmp(argv[i], "-s")) {
            stream_counts.clear();
            for (const char* c = argv[i + 1]; *c;) {
                stream_counts.push_back(std::max(1, std::atoi(c)));
                while (*c && *c != ',') ++c;
                if (*c == ',') ++c;
            }
        }
        if (!std::strcmp(argv[i], "-p")) n_prompt = v;
        else if (!std::strcmp(argv[i], "-n")) n_gen = v;
        else if (!std::strcmp(argv[i], "-c")) n_ctx = v;
        else if (!std::strcmp(argv[i], "-t")) threads = v;
        else if (!std::strcmp(argv[i], "-b")) step_tokens = v;
        else if (!std::strcmp(argv[i], "-L")) n_long = v;
        else if (!std::strcmp(argv[i], "-g")) num_gpu = v;
        else if (!std::strcmp(argv[i], "-r")) repeat_penalty = std::strtof(argv[i + 1], nullptr);
    }
    if (n_prompt + n_gen > n_ctx) n_ctx = n_prompt + n_gen;
    auto file = gguf::open_gguf(path);
    if (!file.ok()) { std::fprintf(stderr, "%s\n", file.status().message().c_str()); return 1; }
    auto tok = tok::Tokenizer::from_gguf(*file.value());
    if (!tok.ok()) { std::fprintf(stderr, "%s\n", tok.status().message().c_str()); return 1; }
    model::LoadOptions lo{threads};
    lo.num_gpu = num_gpu;
    auto loaded = model::load_model(file.value(), lo);
    if (!loaded.ok()) { std::fprintf(stderr, "%s\n", loaded.status().message().c_str()); return 1; }
    std::shared_ptr<model::Model> model = std::move(loaded).value();
    std::shared_ptr<const tok::Tokenizer> tk = std::move(tok).value();
    const int64_t n_vocab = model->hparams().n_vocab;
    std::printf("model %s: %s, prompt %d, generate %d, n_ctx %lld, step budget %lld tokens\n", path.c_str(),
                model->hparams().arch.c_str(), n_prompt, n_gen, (long long)n_ctx, (long long)step_tokens);
    std::printf("runs on %s%s%s\n", model->device_name().c_str(), model->placement_note().empty() ? "" : ": ",
                model->placement_note().c_str());
    std::mt19937 rng(42);
    for (int streams : stream_counts) {
        runtime::EngineOptions o;
        o.n_ctx = n_ctx;
        o.n_parallel = streams;
        o.step_tokens = step_tokens;
        auto engine = runtime::Engine::create(model, tk, o);
        if (!engine.ok()) { std::fprintf(stderr, "%s\n", engine.status().message().c_str()); return 1; }
        if (streams == stream_counts.front()) std::printf("%s\n", engine.value()->kv_note().c_str());
        std::mutex mu;
        std::condition_variable cv;
        int n_done = 0;
        int64_t generated = 0, ttft_ns = 0, all_started_ns = 0;
        const int64_t t0 = now_ns();
        for (int s = 0; s < streams; ++s) {
            runtime::Request r;
            for (int i = 0; i < n_prompt; ++i) r.prompt.push_back((int32_t)(rng() % n_vocab));  // distinct: no cache hits
            r.sampling.temperature = 0.0f;
            r.sampling.repeat_penalty = repeat_penalty;
            r.num_predict = n_gen;
            r.ignore_eos = true;
            engine.value()->submit(std::move(r), [&](const runtime::Event& e) {
                if (e.kind == runtime::Event::Kind::text) return;
                std::lock_guard<std::mutex> lk(mu);
                // Its first token came queue + prefill after its submit (~t0).
                all_started_ns = std::max(all_started_ns, e.stats.queue_ns + e.stats.prompt_ns);
                if (e.kind == runtime::Event::Kind::error) std::fprintf(stderr, "error: %s\n", e.status.message().c_str());
                generated += e.stats.generated_tokens;
                ttft_ns += e.stats.queue_ns + e.stats.prompt_ns;
                ++n_done;
                cv.notify_all();
            });
        }
        std::unique_lock<std::mutex> lk(mu);
        cv.wait(lk, [&] { return n_done == streams; });
        const int64_t t1 = now_ns();
        const double secs = (t1 - t0) / 1e9, decode_secs = (t1 - t0 - all_started_ns) / 1e9;
        std::printf("streams %2d: %8.2f generated t/s aggregate (%lld tokens in %.3f s), mean TTFT %.1f ms, "
                    "decode phase %8.2f t/s\n", streams, generated / secs, (long long)generated, secs,
                    ttft_ns / 1e6 / streams, decode_secs > 0 ? (double)(generated - streams) / decode_secs : 0.0);
    }

    // Chunked prefill: a short request must not wait for a long prefill to finish.
    if (n_long > 0 && n_long + 16 <= model->hparams().n_ctx_train) {
        runtime::EngineOptions o;
        o.n_ctx = n_long + 32;
        o.n_parallel = 2;
        o.step_tokens = step_tokens;
        auto engine = runtime::Engine::create(model, tk, o);
        if (!engine.ok()) { std::fprintf(stderr, "%s\n", engine.status().message().c_str()); return 1; }
        const double alone = ttft_ms(*engine.value(), {16}, n_vocab, rng)[0];
        const auto both = ttft_ms(*engine.value(), {n_long, 16}, n_vocab, rng);
        std::printf("TTFT of a 16-token request: alone %.1f ms; submitted right after a %d-token prompt %.1f ms "
                    "(the long prompt's own TTFT %.1f ms)\n", alone, n_long, both[1], both[0]);
    } else {
        std::printf("TTFT under a long prefill: skipped (-L %d does not fit the model's context)\n", n_long);
    }
    return 0;
}
