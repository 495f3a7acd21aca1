#include "base/thread_pool.h"

#include <algorithm>

namespace hearth {

int ThreadPool::default_threads() {
    unsigned n = std::thread::hardware_concurrency();
    return n == 0 ? 1 : (int)n;
}

ThreadPool::ThreadPool(int n_threads) {
    if (n_threads <= 0) n_threads = default_threads();
    for (int i = 0; i < n_threads - 1; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
    {
        std::lock_guard<std::mutex> lk(mu_);
        stop_ = true;
    }
    cv_start_.notify_all();
    for (auto& t : workers_) t.join();
}

static void chunk_range(int64_t n, int chunks, int index, int64_t& b, int64_t& e) {
    b = n * index / chunks;
    e = n * (index + 1) / chunks;
}

void ThreadPool::worker_loop(int index) {
    uint64_t seen = 0;
    for (;;) {
        const std::function<void(int, int64_t, int64_t)>* job;
        int64_t n;
        int chunks;
        {
            std::unique_lock<std::mutex> lk(mu_);
            cv_start_.wait(lk, [&] { return stop_ || generation_ != seen; });
            if (stop_) return;
            seen = generation_;
            job = job_;
            n = job_n_;
            chunks = job_chunks_;
        }
        if (index + 1 < chunks) {
            int64_t b, e;
            chunk_range(n, chunks, index + 1, b, e);
            if (b < e) (*job)(index + 1, b, e);
        }
        {
            std::lock_guard<std::mutex> lk(mu_);
            if (--pending_ == 0) cv_done_.notify_one();
        }
    }
}

void ThreadPool::parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
    parallel_chunks(n, grain, [&fn](int, int64_t b, int64_t e) { fn(b, e); });
}

void ThreadPool::parallel_chunks(int64_t n, int64_t grain, const std::function<void(int, int64_t, int64_t)>& fn) {
    if (n <= 0) return;
    grain = std::max<int64_t>(grain, 1);
    int chunks = (int)std::min<int64_t>(n_threads(), (n + grain - 1) / grain);
    if (chunks <= 1 || workers_.empty()) {
        fn(0, 0, n);
        return;
    }
    {
        std::lock_guard<std::mutex> lk(mu_);
        job_ = &fn;
        job_n_ = n;
        job_chunks_ = chunks;
        pending_ = (int)workers_.size();
        ++generation_;
    }
    cv_start_.notify_all();
    int64_t b, e;
    chunk_range(n, chunks, 0, b, e);
    fn(0, b, e);
    std::unique_lock<std::mutex> lk(mu_);
    cv_done_.wait(lk, [&] { return pending_ == 0; });
}

}  // namespace hearth
