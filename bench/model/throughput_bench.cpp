// Prompt-processing and generation throughput of one model, in the spirit of llama-bench:
//   throughput_bench MODEL.gguf [-p 128] [-n 32] [-t threads] [-r repetitions]
// pp: one batch of p prompt tokens; tg: n tokens decoded one at a time after it.
// Prints median tokens/s over the repetitions.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "base/timer.h"
#include "model/session.h"

using namespace hearth;

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s MODEL.gguf [-p 128] [-n 32] [-t threads] [-r 3]\n", argv[0]);
        return 2;
    }
    std::string path = argv[1];
    int n_prompt = 128, n_gen = 32, threads = 0, reps = 3;
    for (int i = 2; i + 1 < argc; i += 2) {
        const int v = std::atoi(argv[i + 1]);
        if (!std::strcmp(argv[i], "-p")) n_prompt = v;
        else if (!std::strcmp(argv[i], "-n")) n_gen = v;
        else if (!std::strcmp(argv[i], "-t")) threads = v;
        else if (!std::strcmp(argv[i], "-r")) reps = v;
    }
    auto file = gguf::open_gguf(path);
    if (!file.ok()) { std::fprintf(stderr, "%s\n", file.status().message().c_str()); return 1; }
    const int64_t t_load = now_ns();
    auto model = model::load_model(file.value(), model::LoadOptions{threads});
    if (!model.ok()) { std::fprintf(stderr, "%s\n", model.status().message().c_str()); return 1; }
    const auto& hp = model.value()->hparams();
    std::printf("model %s: %s, %d layers, n_embd %lld, vocab %lld, loaded in %.1f ms\n", path.c_str(), hp.arch.c_str(),
                hp.n_layer, (long long)hp.n_embd, (long long)hp.n_vocab, (now_ns() - t_load) / 1e6);
    std::vector<int32_t> prompt(n_prompt);
    for (int i = 0; i < n_prompt; ++i) prompt[i] = (int32_t)((i * 7919 + 13) % hp.n_vocab);
    std::vector<double> pp, tg;
    std::vector<float> logits;
    for (int r = 0; r < reps; ++r) {
        auto s = model::Session::create(*model.value(), n_prompt + n_gen + 1);
        if (!s.ok()) { std::fprintf(stderr, "%s\n", s.status().message().c_str()); return 1; }
        int64_t t0 = now_ns();
        if (n_prompt > 0 && !s->eval(prompt, false, logits).ok()) return 1;
        pp.push_back(n_prompt / ((now_ns() - t0) / 1e9));
        t0 = now_ns();
        for (int i = 0; i < n_gen; ++i) {
            const int32_t tok = (int32_t)((i * 31 + 7) % hp.n_vocab);
            if (!s->eval(std::span<const int32_t>(&tok, 1), false, logits).ok()) return 1;
        }
        tg.push_back(n_gen / ((now_ns() - t0) / 1e9));
    }
    auto median = [](std::vector<double> v) { std::sort(v.begin(), v.end()); return v[v.size() / 2]; };
    std::printf("pp%d: %.2f t/s   tg%d: %.2f t/s   (median of %d, %d threads)\n", n_prompt, median(pp), n_gen, median(tg),
                reps, threads);
    return 0;
}
