// The read-bandwidth roofline of this machine: how fast `threads` threads can stream memory
// that is not in any cache, as STREAM's read-only kernels measure it. Decode of a dense model
// reads every weight byte once per token, so bytes-per-token / this figure bounds generation
// speed; `hearth bench` and bench/ report tokens/s as a fraction of it.
#pragma once

#include <cstddef>

#include "base/status.h"
#include "base/thread_pool.h"

namespace hearth::backend {

struct ReadBandwidth {
    double bytes_per_second = 0;  // best of the repetitions
    size_t buffer_bytes = 0;      // bytes streamed per repetition
    int repetitions = 0;
};

// Streams a buffer of `bytes` (default 1 GiB: far beyond any L3) `reps` times with the pool's
// threads, each reading its own contiguous part, and keeps the fastest pass. Fails only when
// the buffer cannot be allocated.
Result<ReadBandwidth> measure_read_bandwidth(ThreadPool& pool, size_t bytes = size_t{1} << 30, int reps = 5);

}  // namespace hearth::backend
