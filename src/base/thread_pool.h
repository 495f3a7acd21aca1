// A fixed pool of worker threads for data-parallel loops. Owned by whoever runs kernels
// (an engine, a test); never global. parallel_for blocks until every chunk is done.
#pragma once

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
    // n threads starts n - 1 workers.
    explicit ThreadPool(int n_threads = 0);
    ~ThreadPool();
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    int n_threads() const { return (int)workers_.size() + 1; }

    // Calls fn(begin, end) over [0, n) split into at most n_threads() contiguous chunks of at
    // least `grain` items. Runs inline when the range is small.
    void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);
    // Same, also passing the chunk index (0 <= chunk < n_threads()), e.g. to pick a
    // per-thread scratch buffer.
    void parallel_chunks(int64_t n, int64_t grain, const std::function<void(int, int64_t, int64_t)>& fn);

    static int default_threads();

private:
    void worker_loop(int index);

    std::vector<std::thread> workers_;
    std::mutex mu_;
    std::condition_variable cv_start_, cv_done_;
    // Job state, guarded by mu_: generation_ bumps once per job; workers run chunk `index + 1`.
    const std::function<void(int, int64_t, int64_t)>* job_ = nullptr;
    int64_t job_n_ = 0;
    int job_chunks_ = 0;
    uint64_t generation_ = 0;
    int pending_ = 0;
    bool stop_ = false;
};

}  // namespace hearth
