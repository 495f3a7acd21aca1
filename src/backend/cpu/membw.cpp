#include "backend/cpu/membw.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <memory>

namespace hearth::backend {

namespace {

// Sum of 64-bit words with 8 independent accumulators: the loads are the bottleneck, not the
// adds, on any x86-64 or aarch64 core; the compiler vectorizes it under -march=native.
uint64_t sum_words(const uint64_t* p, size_t n) {
    uint64_t a[8] = {};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; ++k) a[k] += p[i + k];
    for (; i < n; ++i) a[0] += p[i];
    uint64_t s = 0;
    for (uint64_t v : a) s += v;
    return s;
}

volatile uint64_t g_sink;

}  // namespace

Result<ReadBandwidth> measure_read_bandwidth(ThreadPool& pool, size_t bytes, int reps) {
    bytes = std::max<size_t>(bytes / 4096 * 4096, 4096);
    reps = std::max(reps, 1);
    struct Free {
        void operator()(void* p) const { std::free(p); }
    };
    std::unique_ptr<void, Free> buf(std::aligned_alloc(4096, bytes));
    if (!buf) return error(StatusCode::resource_exhausted, "cannot allocate the bandwidth test buffer");
    auto* words = static_cast<uint64_t*>(buf.get());
    const size_t n = bytes / sizeof(uint64_t);
    // Touch every page from the threads that will read it (first-touch NUMA placement).
    pool.parallel_for((int64_t)n, 4096, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) words[i] = (uint64_t)i * 0x9E3779B97F4A7C15ull;
    });
    std::atomic<uint64_t> sink{0};
    double best = 0;
    for (int r = 0; r < reps; ++r) {
        const auto t0 = std::chrono::steady_clock::now();
        pool.parallel_for((int64_t)n, 4096, [&](int64_t b, int64_t e) {
            sink.fetch_add(sum_words(words + b, (size_t)(e - b)), std::memory_order_relaxed);
        });
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (s > 0) best = std::max(best, (double)bytes / s);
    }
    g_sink = sink.load();  // the sums are used, so the reads stay
    return ReadBandwidth{best, bytes, reps};
}

}  // namespace hearth::backend
