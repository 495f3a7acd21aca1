// Matrix-vector throughput of the CPU matmul per weight type: achieved GB/s of weight bytes
// read (decode is bandwidth-bound: every weight byte is read once per token).
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "backend/cpu/matmul.h"

using namespace hearth;

static void BM_Matvec(benchmark::State& state) {
    const auto type = (quant::QuantType)state.range(0);
    const int64_t n_in = 4096, n_out = 4096;
    const auto& tr = quant::traits(type);
    const size_t row_bytes = quant::row_size(type, n_in);
    std::vector<std::byte> w(row_bytes * n_out);
    std::mt19937 rng(1);
    std::normal_distribution<float> d(0.0f, 0.02f);
    std::vector<float> row(n_in), x(n_in), y(n_out);
    for (int64_t o = 0; o < n_out; ++o) {
        for (auto& v : row) v = d(rng);
        tr.quantize_row(row.data(), w.data() + o * row_bytes, n_in);
    }
    for (auto& v : x) v = d(rng);
    ThreadPool pool((int)state.range(1));
    std::vector<std::byte> scratch;
    for (auto _ : state) {
        backend::matmul_cpu(pool, type, w.data(), row_bytes, x.data(), y.data(), n_in, n_out, 1, scratch);
        benchmark::DoNotOptimize(y.data());
    }
    state.SetBytesProcessed((int64_t)state.iterations() * (int64_t)w.size());
    state.SetLabel(tr.name);
}

BENCHMARK(BM_Matvec)
    ->ArgsProduct({{(int)quant::QuantType::f16, (int)quant::QuantType::q8_0, (int)quant::QuantType::q4_0,
                    (int)quant::QuantType::q4_k, (int)quant::QuantType::q6_k},
                   {1, 2}})
    ->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();
