// Multi-threaded attention; same contract and numerics as backend/ref/attention.h.
#pragma once

#include <vector>

#include "backend/ref/attention.h"
#include "base/thread_pool.h"

namespace hearth::backend {

// `scratch` holds one AttentionScratch per thread; grows to the largest call and is reused.
void attention_cpu(ThreadPool& pool, const float* q, const PagedKvView& kv, const int32_t* const* block_tables,
                   const int32_t* positions, const int32_t* kv_end, int64_t n_tokens,
                   const AttentionParams& p, float* out, std::vector<AttentionScratch>& scratch);

}  // namespace hearth::backend
