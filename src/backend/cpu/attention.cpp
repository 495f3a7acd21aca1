#include "backend/cpu/attention.h"

#include <algorithm>

namespace hearth::backend {

void attention_cpu(ThreadPool& pool, const float* q, const PagedKvView& kv, const int32_t* const* block_tables,
                   const int32_t* positions, const int32_t* kv_end, int64_t n_tokens,
                   const AttentionParams& p, float* out, std::vector<AttentionScratch>& scratch) {
    int32_t max_end = 1;
    for (int64_t t = 0; t < n_tokens; ++t) max_end = std::max(max_end, kv_end[t]);
    const int n_chunks = pool.n_threads();
    if (scratch.size() < (size_t)n_chunks) scratch.resize(n_chunks);
    for (AttentionScratch& s : scratch) s.reserve(kv, p, max_end);
    const int64_t n_items = n_tokens * p.n_head;  // one item per (token, head)
    // Chunk k of the split owns scratch[k].
    pool.parallel_chunks(n_items, 1, [&](int chunk, int64_t b, int64_t e) {
        for (int64_t it = b; it < e; ++it) {
            const int64_t t = it / p.n_head;
            const int h = (int)(it % p.n_head);
            attention_head_ref(q + it * p.head_dim_k, kv, block_tables[t], positions[t], kv_end[t], h, p,
                               scratch[chunk], out + it * p.head_dim_v);
        }
    });
}

}  // namespace hearth::backend
