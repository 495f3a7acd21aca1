// The daemon's counters, rendered for GET /metrics in Prometheus' text exposition format
// (version 0.0.4). Every member may be called from any thread.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace hearth::server {

// One loaded model's gauges at the time of a scrape.
struct ModelGauges {
    std::string name;
    int kv_blocks_total = 0, kv_blocks_used = 0, kv_blocks_cached = 0;
    int running = 0, waiting = 0;
};

class Metrics {
public:
    // Seconds; the time-to-first-token histogram's upper bounds (+Inf is implied).
    static constexpr std::array<double, 12> kTtftBuckets = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                            0.5,   1,    2.5,   5,    10,  30};

    void count_request(const std::string& endpoint, int status);
    void add_tokens(int64_t prompt, int64_t cached, int64_t generated, int64_t generate_ns);
    void observe_ttft(double seconds);
    void set_streams(int n) { streams_.store(n); }

    // The exposition text: the counters above plus the gauges passed in (queue_length: requests
    // waiting for a model; models: per loaded model).
    std::string render(int queue_length, const std::vector<ModelGauges>& models) const;

private:
    mutable std::mutex mu_;
    std::map<std::pair<std::string, int>, int64_t> requests_;  // under mu_: (endpoint, status) -> count
    std::array<int64_t, kTtftBuckets.size() + 1> ttft_counts_{};  // under mu_: per bucket, last = +Inf
    double ttft_sum_ = 0;                                         // under mu_
    int64_t ttft_count_ = 0;                                      // under mu_
    std::atomic<int64_t> prompt_tokens_{0}, cached_tokens_{0}, generated_tokens_{0}, generate_ns_{0};
    std::atomic<int> streams_{0};
};

}  // namespace hearth::server
