// CPU matmul throughput per SIMD level (backend/cpu/cpu_features.h) and weight type:
//   decode/<level>/<type>/<n_out>x<n_in>/t<threads>: one token; GB/s of weight bytes read (decode is
//     bandwidth-bound: every weight byte is read once per token). Shapes 2048x2048 and 8192x2048 are
//     Llama-3.2-1B's attention output and FFN gate/up projections.
//   prefill/<level>/<type>/2048x<n_in>x512/t<threads>: a 512-token prompt batch; GFLOP/s (2 * n_in *
//     n_out * n_tokens flops). n_in 2048: Llama-3.2-1B's attention projections; 8192: its FFN down
//     projection, whose packed activations (4.7 MB as Q8_0) outgrow L2.
//   step/<level>/<type>/8192x2048xB/t2: a batched decode step of B tokens (B streams), cycling over
//     24 distinct matrices (~240-400 MB) so that the weights come from memory as in a real step;
//     GB/s of weight bytes and tok/s (B tokens per matrix).
// Levels the CPU lacks are not registered. Filter with --benchmark_filter (e.g. 'avx512/q4_k').
#include <benchmark/benchmark.h>

#include <map>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/cpu_features.h"
#include "backend/cpu/matmul.h"

using namespace hearth;
using backend::SimdLevel;

namespace {

struct Problem {
    quant::QuantType type;
    int64_t n_in, n_out, n_tokens;
    size_t row_bytes;
    std::vector<std::byte> w;  // [n_out][row_bytes]
    std::vector<float> x;      // [n_tokens][n_in]
    std::vector<float> y;      // [n_tokens][n_out]

    Problem(quant::QuantType t, int64_t in, int64_t out, int64_t tokens)
        : type(t), n_in(in), n_out(out), n_tokens(tokens), row_bytes(quant::row_size(t, in)) {
        const auto& tr = quant::traits(type);
        w.resize(row_bytes * n_out);
        std::mt19937 rng(1);
        std::normal_distribution<float> d(0.0f, 0.02f);
        std::vector<float> row(n_in);
        for (int64_t o = 0; o < n_out; ++o) {
            for (auto& v : row) v = d(rng);
            tr.quantize_row(row.data(), w.data() + o * row_bytes, n_in);
        }
        x.resize(n_in * n_tokens);
        for (auto& v : x) v = d(rng);
        y.resize(n_out * n_tokens);
    }
};

void run(benchmark::State& state, SimdLevel level, quant::QuantType type, int64_t n_in, int64_t n_out,
         int64_t n_tokens, int threads) {
    Problem p(type, n_in, n_out, n_tokens);
    ThreadPool pool(threads);
    std::vector<std::byte> scratch;
    for (auto _ : state) {
        backend::matmul_cpu(pool, type, p.w.data(), p.row_bytes, p.x.data(), p.y.data(), n_in, n_out, n_tokens,
                            scratch, level);
        benchmark::DoNotOptimize(p.y.data());
    }
    if (n_tokens == 1) {
        state.SetBytesProcessed((int64_t)state.iterations() * (int64_t)p.w.size());
    } else {
        state.counters["GFLOP/s"] = benchmark::Counter(2.0 * n_in * n_out * n_tokens * state.iterations() / 1e9,
                                                       benchmark::Counter::kIsRate);
    }
}

// A decode step of n_tokens tokens against a model-sized set of matrices (larger than the caches).
void run_step(benchmark::State& state, SimdLevel level, quant::QuantType type, int64_t n_tokens) {
    constexpr int kMatrices = 24;
    const int64_t n_in = 2048, n_out = 8192;
    // One quantized matrix (the reference quantizers are slow), copied kMatrices times.
    static std::map<quant::QuantType, std::vector<std::byte>> weights;
    Problem p(type, n_in, n_out, n_tokens);
    std::vector<std::byte>& w = weights[type];
    if (w.empty()) {
        Problem one(type, n_in, n_out, 1);
        for (int i = 0; i < kMatrices; ++i) w.insert(w.end(), one.w.begin(), one.w.end());
    }
    const size_t matrix_bytes = w.size() / kMatrices;
    ThreadPool pool(2);
    std::vector<std::byte> scratch;
    int64_t i = 0;
    for (auto _ : state) {
        const std::byte* wm = w.data() + (size_t)(i++ % kMatrices) * matrix_bytes;
        backend::matmul_cpu(pool, type, wm, p.row_bytes, p.x.data(), p.y.data(), n_in, n_out, n_tokens, scratch,
                            level);
        benchmark::DoNotOptimize(p.y.data());
    }
    state.SetBytesProcessed((int64_t)state.iterations() * (int64_t)matrix_bytes);
    state.counters["tok/s"] = benchmark::Counter((double)n_tokens * (double)state.iterations(),
                                                 benchmark::Counter::kIsRate);
}

}  // namespace

int main(int argc, char** argv) {
    using Q = quant::QuantType;
    const Q types[] = {Q::q4_k, Q::q6_k, Q::q8_0, Q::q4_0,   Q::f16,  Q::q5_k, Q::q3_k,  Q::q2_k,
                       Q::iq4_xs, Q::q5_0, Q::q4_1, Q::q5_1, Q::iq4_nl, Q::mxfp4};
    const int top = (int)backend::max_simd_level(backend::cpu_features());
    for (int l = 0; l <= top; ++l) {
        const auto level = (SimdLevel)l;
        const std::string ln = backend::simd_level_name(level);
        for (auto type : types) {
            const std::string tn = quant::type_name(type);
            for (int threads : {1, 2}) {
                for (auto [n_out, n_in] : {std::pair<int64_t, int64_t>{2048, 2048}, {8192, 2048}}) {
                    const std::string name = "decode/" + ln + "/" + tn + "/" + std::to_string(n_out) + "x" +
                                             std::to_string(n_in) + "/t" + std::to_string(threads);
                    benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& s) {
                        run(s, level, type, n_in, n_out, 1, threads);
                    })->Unit(benchmark::kMillisecond)->UseRealTime();
                }
                for (int64_t n_in : {2048, 8192}) {
                    const std::string name = "prefill/" + ln + "/" + tn + "/2048x" + std::to_string(n_in) + "x512/t" +
                                             std::to_string(threads);
                    benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& s) {
                        run(s, level, type, n_in, 2048, 512, threads);
                    })->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(level == SimdLevel::scalar ? 0.01 : 0.5);
                }
            }
        }
    }
    for (int l = (int)SimdLevel::avx2; l <= top; ++l) {
        const auto level = (SimdLevel)l;
        for (auto type : types) {
            for (int64_t b : {1, 2, 3, 4, 6, 8}) {
                const std::string name = "step/" + std::string(backend::simd_level_name(level)) + "/" +
                                         quant::type_name(type) + "/8192x2048x" + std::to_string(b) + "/t2";
                benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& s) {
                    run_step(s, level, type, b);
                })->Unit(benchmark::kMillisecond)->UseRealTime();
            }
        }
    }
    benchmark::Initialize(&argc, argv);
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
