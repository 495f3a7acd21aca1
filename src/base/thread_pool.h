// A fixed pool of worker threads for data-parallel loops. Owned by whoever runs kernels
// (an engine, a test); never global. parallel_for blocks until every chunk is done.
//
// Waiting: a decode step of a small model is a few hundred short parallel loops (~50-500 us
// each), so waking workers through a condition variable (a futex round trip, ~10-50 us, more
// on a loaded machine) would cost a measurable share of every token. Workers therefore spin
// on the job counter for a short while after each job (HEARTH_SPIN_US, default 200 us; 0
// turns spinning off), then sleep on the condition variable; the caller does the same while it
// waits for the workers to finish. Spinning is bounded, so an idle pool costs nothing, and
// with more threads than cores (oversubscription) a spinner yields its core to the thread it
// waits for after a few microseconds.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace hearth {

class ThreadPool {
public:
    // n_threads <= 0: one per hardware thread. The calling thread also works, so a pool of
    // n threads starts n - 1 workers. spin_us < 0: HEARTH_SPIN_US, else 200; 0: never spin.
    explicit ThreadPool(int n_threads = 0, int64_t spin_us = -1);
    ~ThreadPool();
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    int n_threads() const { return (int)workers_.size() + 1; }

    // Calls fn(begin, end) over [0, n) split into at most n_threads() contiguous chunks of at
    // least `grain` items. Runs inline when the range is small. One caller at a time; fn must
    // not call back into the same pool.
    void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);
    // Same, also passing the chunk index (0 <= chunk < n_threads()), e.g. to pick a
    // per-thread scratch buffer.
    void parallel_chunks(int64_t n, int64_t grain, const std::function<void(int, int64_t, int64_t)>& fn);
    // Calls fn(begin, end) over [0, n) in pieces of `piece` items handed out in order to whichever
    // thread is free (an atomic counter), so a thread that was descheduled or runs slower does not
    // hold the others at the end (a static split waits for the slowest half).
    void parallel_dynamic(int64_t n, int64_t piece, const std::function<void(int64_t, int64_t)>& fn);

    static int default_threads();

private:
    void worker_loop(int index);
    // Spins up to spin_ns_ until pred() holds; true if it does.
    template <class Pred>
    bool spin_until(Pred pred) const;

    std::vector<std::thread> workers_;
    int64_t spin_ns_ = 0;
    std::mutex mu_;
    std::condition_variable cv_start_, cv_done_;
    // Job state: written by the caller before generation_ is bumped (release), read by the
    // workers after they see the new generation (acquire). Worker i runs chunk i + 1.
    const std::function<void(int, int64_t, int64_t)>* job_ = nullptr;
    int64_t job_n_ = 0;
    int job_chunks_ = 0;
    std::atomic<uint64_t> generation_{0};
    std::atomic<int> pending_{0};          // workers still busy with the current job
    std::atomic<int> sleeping_workers_{0}; // workers (about to be) waiting on cv_start_
    std::atomic<bool> caller_sleeping_{false};
    std::atomic<bool> stop_{false};
};

}  // namespace hearth
