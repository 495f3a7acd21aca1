#include "backend/cpu/attention.h"

#include <algorithm>
#include <atomic>

#include "backend/cpu/attention_kernels.h"
#include "quant/types.h"

namespace hearth::backend {

AttentionGroupFn find_attention_kernel(SimdLevel level, const PagedKvView& kv, const AttentionParams& p) {
    switch (level) {
        case SimdLevel::avx512: return attention_kernel_avx512(kv, p);
        case SimdLevel::avx2: return attention_kernel_avx2(kv, p);
        case SimdLevel::scalar: return nullptr;
    }
    return nullptr;
}

VexpFn find_vexp_kernel(SimdLevel level) {
    switch (level) {
        case SimdLevel::avx512: return vexp_kernel_avx512();
        case SimdLevel::avx2: return vexp_kernel_avx2();
        case SimdLevel::scalar: return nullptr;
    }
    return nullptr;
}

namespace {

// Tokens per tile of a prompt batch: a tile's rows share every K and V read (8 tokens x a group
// of 2 to 4 heads: 16 to 32 rows, whose scores, 2 KiB per row at 512 cells, stay in L2).
constexpr int kTileTokens = 8;
// Batches below this many tokens (decode steps) keep one token per item: their tokens are
// mostly of different sequences, and more items spread them better over the threads.
constexpr int64_t kMinTiledBatch = 16;
// The cells the tokens of one run may differ in: past it a run's shorter tokens would score too
// many cells they do not see.
constexpr int32_t kMaxRunSpread = 64;

// One call's work list, shared by the pool's threads (read-only but for `next`).
struct Work {
    const float* q;
    const PagedKvView* kv;
    const int32_t* const* block_tables;
    const int32_t* positions;
    const int32_t* kv_end;
    int64_t n_tokens;
    const AttentionParams* p;
    float* out;
    std::vector<AttentionScratch>* scratch;
    AttentionGroupFn kernel;    // nullptr: the reference, head by head
    size_t q_conv_bytes;        // one query head as q8_0 (quantized caches), else 0
    int group;                  // query heads per kv head
    int tile_tokens;            // tokens per tile: kTileTokens, or 1 for small batches
    int64_t n_tiles;            // ceil(n_tokens / tile_tokens)
    int parts;                  // items per (tile, kv head): the group split into `parts` runs of heads
    int heads_per_part;
    int64_t n_items;            // n_tiles * n_head_kv * parts
    std::atomic<int64_t> next{0};  // first item no thread has taken yet
};

int32_t window_lo(const AttentionParams& p, int32_t pos) {
    return p.sliding_window > 0 ? std::max(0, pos - p.sliding_window + 1) : 0;
}

void run_item(const Work& w, int64_t item, AttentionScratch& s) {
    const AttentionParams& p = *w.p;
    // Items run kv head by kv head (its K and V rows stay in cache from one tile to the next),
    // and within one from the last tile down: later tokens of a prompt see more cells, and
    // taking the largest first keeps the threads' shares even at the end.
    const int64_t per_kv_head = w.n_tiles * w.parts;
    const int kv_head = (int)(item / per_kv_head);
    const int64_t tile = w.n_tiles - 1 - item % per_kv_head / w.parts;
    const int part = (int)(item % per_kv_head % w.parts);
    const int h0 = kv_head * w.group + part * w.heads_per_part;
    const int h1 = std::min(h0 + w.heads_per_part, (kv_head + 1) * w.group);
    if (h0 >= h1) return;
    const int n_heads = h1 - h0;
    const int64_t t_end = std::min(w.n_tokens, (tile + 1) * w.tile_tokens);
    for (int64_t t = tile * w.tile_tokens; t < t_end;) {
        const int32_t pos = w.positions[t], end = w.kv_end[t];
        const int32_t lo = window_lo(p, pos);
        const float* q = w.q + (t * p.n_head + h0) * p.head_dim_k;
        float* out = w.out + (t * p.n_head + h0) * p.head_dim_v;
        if (!w.kernel || end <= lo) {
            for (int h = h0; h < h1; ++h) {
                attention_head_ref(q + (h - h0) * p.head_dim_k, *w.kv, w.block_tables[t], pos, end, h, p, s,
                                   out + (h - h0) * p.head_dim_v);
            }
            ++t;
            continue;
        }
        // The run [t, u): tokens of one sequence and one window start whose ends differ by at
        // most kMaxRunSpread (a prompt's tokens: the whole tile).
        int64_t u = t + 1;
        int32_t hi_min = end, hi_max = end;
        while (u < t_end && w.block_tables[u] == w.block_tables[t] && w.kv_end[u] > lo &&
               window_lo(p, w.positions[u]) == lo &&
               std::max(hi_max, w.kv_end[u]) - std::min(hi_min, w.kv_end[u]) <= kMaxRunSpread) {
            hi_min = std::min(hi_min, w.kv_end[u]);
            hi_max = std::max(hi_max, w.kv_end[u]);
            ++u;
        }
        const int n_run = (int)(u - t);
        if (w.q_conv_bytes) {
            // The query as the reference scores a quantized K: its own quantizer, head by head.
            const quant::TypeTraits& qt = quant::traits(quant::traits(w.kv->type).vec_dot_type);
            for (int i = 0; i < n_run; ++i)
                for (int g = 0; g < n_heads; ++g)
                    qt.quantize_row(q + (int64_t)i * p.n_head * p.head_dim_k + g * p.head_dim_k,
                                    s.q_conv.data() + (size_t)(i * n_heads + g) * w.q_conv_bytes, p.head_dim_k);
        }
        AttentionGroupArgs a;
        a.q = q;
        a.q_token_stride = (int64_t)p.n_head * p.head_dim_k;
        a.q_conv = s.q_conv.data();
        a.q_conv_bytes = w.q_conv_bytes;
        a.block_table = w.block_tables[t];
        a.lo = lo;
        a.hi = w.kv_end + t;
        a.n_tokens = n_run;
        a.kv_head = kv_head;
        a.head0 = h0;
        a.n_heads = n_heads;
        a.out = out;
        a.out_token_stride = (int64_t)p.n_head * p.head_dim_v;
        a.scores = s.scores.data();
        a.k_rows = s.row.data();
        a.lane_sums = s.acc.data();
        w.kernel(*w.kv, p, a);
        t = u;
    }
}

}  // namespace

void attention_cpu_at(SimdLevel level, ThreadPool& pool, const float* q, const PagedKvView& kv,
                      const int32_t* const* block_tables, const int32_t* positions, const int32_t* kv_end,
                      int64_t n_tokens, const AttentionParams& p, float* out,
                      std::vector<AttentionScratch>& scratch) {
    if (n_tokens <= 0) return;
    int32_t max_end = 1;
    for (int64_t t = 0; t < n_tokens; ++t) max_end = std::max(max_end, kv_end[t]);
    const int n_threads = pool.n_threads();
    Work w;
    w.q = q;
    w.kv = &kv;
    w.block_tables = block_tables;
    w.positions = positions;
    w.kv_end = kv_end;
    w.n_tokens = n_tokens;
    w.p = &p;
    w.out = out;
    w.scratch = &scratch;
    w.kernel = find_attention_kernel(level, kv, p);
    w.group = p.n_head / p.n_head_kv;
    const bool quantized = kv.type != quant::QuantType::f32 && kv.type != quant::QuantType::f16;
    w.q_conv_bytes = quantized ? quant::row_size(quant::traits(kv.type).vec_dot_type, p.head_dim_k) : 0;
    w.tile_tokens = n_tokens >= kMinTiledBatch && w.kernel ? kTileTokens : 1;
    w.n_tiles = (n_tokens + w.tile_tokens - 1) / w.tile_tokens;
    // Decode steps with few (tile, kv head) pairs: split each group into runs of heads so that
    // every thread gets about two items (a run still reads its K/V rows once for all its heads).
    const int64_t pairs = w.n_tiles * p.n_head_kv;
    w.parts = 1;
    while (w.parts < w.group && pairs * w.parts < 2 * n_threads) w.parts *= 2;
    w.parts = std::min(w.parts, w.group);
    w.heads_per_part = (w.group + w.parts - 1) / w.parts;
    w.n_items = pairs * w.parts;

    const int n_chunks = (int)std::min<int64_t>(n_threads, w.n_items);
    if (scratch.size() < (size_t)n_chunks) scratch.resize(n_chunks);
    auto grow = [](auto& v, size_t n) {
        if (v.size() < n) v.resize(n);
    };
    const size_t max_rows = (size_t)w.tile_tokens * w.heads_per_part;
    for (int c = 0; c < n_chunks; ++c) {
        AttentionScratch& s = scratch[c];
        s.reserve(kv, p, max_end);
        if (!w.kernel) continue;
        grow(s.scores, max_rows * ((max_end + 15) & ~15));
        grow(s.row, (size_t)16 * p.head_dim_k);
        grow(s.acc, (size_t)kLaneSumFloats);
        grow(s.q_conv, max_rows * w.q_conv_bytes);
    }
    // Threads take items one at a time (the item -> thread assignment never changes a result).
    Work* wp = &w;
    pool.parallel_chunks(n_chunks, 1, [wp](int chunk, int64_t, int64_t) {
        AttentionScratch& s = (*wp->scratch)[chunk];
        for (int64_t it = wp->next.fetch_add(1, std::memory_order_relaxed); it < wp->n_items;
             it = wp->next.fetch_add(1, std::memory_order_relaxed)) {
            run_item(*wp, it, s);
        }
    });
}

void attention_cpu(ThreadPool& pool, const float* q, const PagedKvView& kv, const int32_t* const* block_tables,
                   const int32_t* positions, const int32_t* kv_end, int64_t n_tokens,
                   const AttentionParams& p, float* out, std::vector<AttentionScratch>& scratch) {
    attention_cpu_at(default_simd_level(), pool, q, kv, block_tables, positions, kv_end, n_tokens, p, out, scratch);
}

}  // namespace hearth::backend
