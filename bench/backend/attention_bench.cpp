// CPU paged attention per SIMD level (backend/cpu/attention_kernels.h) and cache type, at
// Llama-3.2-1B's attention shape (32 query heads, 8 kv heads, head dim 64, blocks of 16):
//   prefill/<level>/<type>/n512/t<threads>: one layer of a causal 512-token prompt; items/s are
//     (query head, visible cell) pairs, 512 * 513 / 2 * 32 per iteration.
//   decode/<level>/<type>/ctx<n>/t<threads>: one token over n cells of one layer whose K/V stay in
//     cache between iterations; bytes/s are the K and V bytes it reads (n * 8 heads * 64 dims * 2).
//   decode_cold/<level>/<type>/ctx576/t<threads>: one token over 16 layers' caches in turn (22 MB of
//     f16 K/V, past L2 as in a real decode step); time per token.
// Every level gives the same bits (tests/backend/attention_simd_test.cpp); scalar is the reference.
// Levels the CPU lacks are not registered. Filter with --benchmark_filter (e.g. 'avx512/f16').
#include <benchmark/benchmark.h>

#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/attention_kernels.h"
#include "backend/cpu/cpu_features.h"
#include "quant/types.h"

using namespace hearth;
using backend::SimdLevel;

namespace {

constexpr int kHeads = 32, kKvHeads = 8, kHeadDim = 64, kBlock = 16;

// One layer's paged cache of n_pos positions, blocks in order.
struct Cache {
    std::vector<std::byte> k, v;  // [n_pos][row_bytes]
    std::vector<int32_t> table;
    backend::PagedKvView view;

    Cache(quant::QuantType type, int n_pos, std::mt19937& rng) {
        const int width = kKvHeads * kHeadDim;
        const size_t row_bytes = quant::row_size(type, width);
        const int n_blocks = (n_pos + kBlock - 1) / kBlock;
        k.resize((size_t)n_blocks * kBlock * row_bytes);
        v.resize(k.size());
        std::normal_distribution<float> d(0.0f, 1.0f);
        std::vector<float> row(width);
        const auto& tr = quant::traits(type);
        for (int j = 0; j < n_pos; ++j) {
            for (auto& x : row) x = d(rng);
            tr.quantize_row(row.data(), k.data() + j * row_bytes, width);
            for (auto& x : row) x = d(rng);
            tr.quantize_row(row.data(), v.data() + j * row_bytes, width);
        }
        table.resize(n_blocks);
        std::iota(table.begin(), table.end(), 0);
        view = {k.data(), v.data(), kBlock, type, row_bytes, row_bytes};
    }
};

backend::AttentionParams params() { return {kHeads, kKvHeads, kHeadDim, kHeadDim, 0.125f, 0, nullptr, 0.0f}; }

void bm_prefill(benchmark::State& state, SimdLevel level, quant::QuantType type, int threads) {
    const int n = 512;
    std::mt19937 rng(1);
    Cache cache(type, n, rng);
    std::normal_distribution<float> d(0.0f, 1.0f);
    std::vector<float> q((size_t)n * kHeads * kHeadDim), out(q.size());
    for (auto& x : q) x = d(rng);
    std::vector<int32_t> pos(n), end(n);
    std::vector<const int32_t*> tables(n, cache.table.data());
    for (int t = 0; t < n; ++t) pos[t] = t, end[t] = t + 1;
    ThreadPool pool(threads);
    std::vector<backend::AttentionScratch> scratch;
    const backend::AttentionParams p = params();
    for (auto _ : state) {
        backend::attention_cpu_at(level, pool, q.data(), cache.view, tables.data(), pos.data(), end.data(), n, p,
                                  out.data(), scratch);
        benchmark::DoNotOptimize(out.data());
    }
    state.SetItemsProcessed(state.iterations() * (int64_t)n * (n + 1) / 2 * kHeads);
}

void bm_decode(benchmark::State& state, SimdLevel level, quant::QuantType type, int threads, int ctx, int layers) {
    std::mt19937 rng(1);
    std::vector<Cache> caches;
    for (int l = 0; l < layers; ++l) caches.emplace_back(type, ctx, rng);
    std::normal_distribution<float> d(0.0f, 1.0f);
    std::vector<float> q((size_t)kHeads * kHeadDim), out(q.size());
    for (auto& x : q) x = d(rng);
    const int32_t pos = ctx - 1, end = ctx;
    const int32_t* table = caches[0].table.data();
    ThreadPool pool(threads);
    std::vector<backend::AttentionScratch> scratch;
    const backend::AttentionParams p = params();
    for (auto _ : state) {
        for (const Cache& c : caches) {
            backend::attention_cpu_at(level, pool, q.data(), c.view, &table, &pos, &end, 1, p, out.data(), scratch);
        }
        benchmark::DoNotOptimize(out.data());
    }
    state.SetBytesProcessed(state.iterations() * layers * 2 * (int64_t)ctx *
                            (int64_t)quant::row_size(type, kKvHeads * kHeadDim));
}

void register_all() {
    const int top = (int)backend::max_simd_level(backend::cpu_features());
    const int hw = ThreadPool::default_threads();
    for (int l = 0; l <= top; ++l) {
        const SimdLevel level = (SimdLevel)l;
        const std::string lv = backend::simd_level_name(level);
        for (quant::QuantType type : {quant::QuantType::f16, quant::QuantType::f32, quant::QuantType::q8_0,
                                      quant::QuantType::q4_0}) {
            const std::string ty = quant::type_name(type);
            for (int threads : {1, hw}) {
                const std::string t = "/t" + std::to_string(threads);
                benchmark::RegisterBenchmark(("prefill/" + lv + "/" + ty + "/n512" + t).c_str(), bm_prefill, level,
                                             type, threads)
                    ->Unit(benchmark::kMillisecond)
                    ->UseRealTime();
                for (int ctx : {576, 4096}) {
                    benchmark::RegisterBenchmark(("decode/" + lv + "/" + ty + "/ctx" + std::to_string(ctx) + t).c_str(),
                                                 bm_decode, level, type, threads, ctx, 1)
                        ->Unit(benchmark::kMicrosecond)
                        ->UseRealTime();
                }
                benchmark::RegisterBenchmark(("decode_cold/" + lv + "/" + ty + "/ctx576" + t).c_str(), bm_decode, level,
                                             type, threads, 576, 16)
                    ->Unit(benchmark::kMicrosecond)
                    ->UseRealTime();
                if (threads == hw) break;
            }
        }
    }
}

}  // namespace

int main(int argc, char** argv) {
    register_all();
    benchmark::Initialize(&argc, argv);
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
