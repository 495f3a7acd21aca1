#include "base/thread_pool.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define HEARTH_CPU_RELAX() _mm_pause()
#elif defined(__aarch64__)
#define HEARTH_CPU_RELAX() asm volatile("yield")
#else
#define HEARTH_CPU_RELAX() ((void)0)
#endif

namespace hearth {

namespace {

int64_t spin_ns(int64_t spin_us) {
    if (spin_us < 0) {
        spin_us = 200;
        if (const char* v = std::getenv("HEARTH_SPIN_US"); v && *v) {
            char* end = nullptr;
            const long long us = std::strtoll(v, &end, 10);
            if (end != v && !*end && us >= 0) spin_us = us;  // malformed: the default
        }
    }
    return std::min<int64_t>(spin_us, 100'000) * 1000;  // at most 0.1 s
}

int64_t steady_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

void chunk_range(int64_t n, int chunks, int index, int64_t& b, int64_t& e) {
    b = n * index / chunks;
    e = n * (index + 1) / chunks;
}

}  // namespace

int ThreadPool::default_threads() {
    unsigned n = std::thread::hardware_concurrency();
    return n == 0 ? 1 : (int)n;
}

ThreadPool::ThreadPool(int n_threads, int64_t spin_us) : spin_ns_(spin_ns(spin_us)) {
    if (n_threads <= 0) n_threads = default_threads();
    // More threads than cores: a spinner would hold the core the thread it waits for needs.
    if (n_threads > default_threads()) spin_ns_ = 0;
    for (int i = 0; i < n_threads - 1; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
    {
        std::lock_guard<std::mutex> lk(mu_);
        stop_.store(true);
    }
    cv_start_.notify_all();
    for (auto& t : workers_) t.join();
}

template <class Pred>
bool ThreadPool::spin_until(Pred pred) const {
    if (pred()) return true;
    if (spin_ns_ <= 0) return false;
    const int64_t deadline = steady_ns() + spin_ns_;
    for (int i = 1;; ++i) {
        for (int k = 0; k < 16; ++k) HEARTH_CPU_RELAX();
        if (pred()) return true;
        if (i % 16 == 0 && steady_ns() > deadline) return false;
    }
}

void ThreadPool::worker_loop(int index) {
    uint64_t seen = 0;
    for (;;) {
        auto fresh = [&] { return stop_.load() || generation_.load() != seen; };
        if (!spin_until(fresh)) {
            // Announce the sleep before the last check (both sequentially consistent): the caller
            // bumps generation_ and then reads sleeping_workers_, so either this check sees the
            // new job or the caller sees a sleeper and notifies under the mutex.
            sleeping_workers_.fetch_add(1);
            {
                std::unique_lock<std::mutex> lk(mu_);
                cv_start_.wait(lk, fresh);
            }
            sleeping_workers_.fetch_sub(1);
        }
        if (stop_.load()) return;
        seen = generation_.load(std::memory_order_acquire);
        const auto* job = job_;
        const int64_t n = job_n_;
        const int chunks = job_chunks_;
        if (index + 1 < chunks) {
            int64_t b, e;
            chunk_range(n, chunks, index + 1, b, e);
            if (b < e) (*job)(index + 1, b, e);
        }
        if (pending_.fetch_sub(1) == 1 && caller_sleeping_.load()) {
            std::lock_guard<std::mutex> lk(mu_);
            cv_done_.notify_one();
        }
    }
}

void ThreadPool::parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
    parallel_chunks(n, grain, [&fn](int, int64_t b, int64_t e) { fn(b, e); });
}

void ThreadPool::parallel_dynamic(int64_t n, int64_t piece, const std::function<void(int64_t, int64_t)>& fn) {
    if (n <= 0) return;
    piece = std::max<int64_t>(piece, 1);
    if (n <= piece || workers_.empty()) {
        for (int64_t b = 0; b < n; b += piece) fn(b, std::min(n, b + piece));
        return;
    }
    std::atomic<int64_t> next{0};
    const int threads = (int)std::min<int64_t>(n_threads(), (n + piece - 1) / piece);
    parallel_chunks(threads, 1, [&](int, int64_t, int64_t) {
        for (int64_t b; (b = next.fetch_add(piece, std::memory_order_relaxed)) < n;) fn(b, std::min(n, b + piece));
    });
}

void ThreadPool::parallel_chunks(int64_t n, int64_t grain, const std::function<void(int, int64_t, int64_t)>& fn) {
    if (n <= 0) return;
    grain = std::max<int64_t>(grain, 1);
    int chunks = (int)std::min<int64_t>(n_threads(), (n + grain - 1) / grain);
    if (chunks <= 1 || workers_.empty()) {
        fn(0, 0, n);
        return;
    }
    job_ = &fn;
    job_n_ = n;
    job_chunks_ = chunks;
    pending_.store((int)workers_.size());
    generation_.fetch_add(1);  // publishes the job (sequentially consistent, so also a release)
    if (sleeping_workers_.load() > 0) {
        std::lock_guard<std::mutex> lk(mu_);  // a sleeper is inside wait() or will re-check after us
        cv_start_.notify_all();
    }
    int64_t b, e;
    chunk_range(n, chunks, 0, b, e);
    fn(0, b, e);
    auto done = [&] { return pending_.load() == 0; };
    if (spin_until(done)) return;
    caller_sleeping_.store(true);
    {
        std::unique_lock<std::mutex> lk(mu_);
        cv_done_.wait(lk, done);
    }
    caller_sleeping_.store(false);
}

}  // namespace hearth
