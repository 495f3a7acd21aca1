// SIMD kernels of the CPU attention (attention.h), one per SimdLevel (cpu_features.h), and the
// entry point that runs a batch at a chosen level.
//
// A kernel computes one work item: the query heads that share a kv head (or a contiguous part
// of them) of one token, or of a run of prompt tokens of one sequence, so each K and V row of
// that kv head is read once while it is in cache and serves every head of the group for every
// token of the run. The result of every head is
// bit-identical to attention_head_ref (backend/ref/attention.h): the kernels keep the
// reference's float operations one for one (ggml's lane order for K·q, ggml_vexp in the
// softmax, the V·P lane accumulators and their reduction tree) and only reorganise which
// registers hold them. A head's result therefore still depends only on its own query and KV.
//
// Coverage (kernels return nullptr otherwise and the caller runs the reference): every cache
// type (f32, f16, q8_0, q4_0) with head dims that are multiples of 16 for K and V (the quantized
// caches need whole blocks of 32 anyway; a q8_0 K at most 512); GQA, sliding windows, sinks and
// soft-capping. Other head dims run attention_head_ref, so every shape keeps the reference's bits.
//
// Work split (attention.cpp): one item per (tile of up to kTileTokens consecutive tokens, kv
// head), taken by the pool's threads one at a time, kv head by kv head and the longest tiles
// first; an item runs its tile as runs of tokens of one sequence and one window start (a prompt:
// the whole tile). Batches below 16 tokens (decode) use tiles of one token, and a step with fewer
// items than twice the threads splits each GQA group into runs of heads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "backend/cpu/cpu_features.h"
#include "backend/ref/attention.h"
#include "base/thread_pool.h"

namespace hearth::backend {

// One work item: heads head0 .. head0 + n_heads - 1 (which all read kv head `kv_head`) of
// n_tokens query tokens that share one block table and one window start `lo`. Rows r =
// i * n_heads + g (token i, head head0 + g) are scored chunk by chunk against each K chunk while
// it is in cache, and the V pass accumulates up to 4 (avx2) or 8 (avx512) rows per V read.
struct AttentionGroupArgs {
    const float* q = nullptr;          // head g of token i at q + i * q_token_stride + g * head_dim_k
    int64_t q_token_stride = 0;        // floats
    const std::byte* q_conv = nullptr; // [n_tokens * n_heads][q_conv_bytes] rows as q8_0 (q8_0 / q4_0 caches)
    size_t q_conv_bytes = 0;
    const int32_t* block_table = nullptr;
    int32_t lo = 0;                    // visible positions of token i: [lo, hi[i]), hi[i] > lo
    const int32_t* hi = nullptr;       // [n_tokens]
    int n_tokens = 1;
    int kv_head = 0, head0 = 0, n_heads = 0;
    float* out = nullptr;              // head g of token i at out + i * out_token_stride + g * head_dim_v
    int64_t out_token_stride = 0;      // floats
    // Scratch of the calling thread (sizes: attention_cpu_at).
    float* scores = nullptr;           // [n_tokens * n_heads][roundup16(max hi)] scores, then probabilities
    float* k_rows = nullptr;           // [16][head_dim_k] one chunk of K rows widened from f16
    float* lane_sums = nullptr;        // [kLaneSumFloats] V·P lane accumulators of one pass
};
constexpr int kLaneSumFloats = 16 * 16 * 16;  // [16 lanes][<= 16 vectors of 16 floats]

using AttentionGroupFn = void (*)(const PagedKvView& kv, const AttentionParams& p, const AttentionGroupArgs& a);

// The kernel of `level` for this cache type and these head dims, or nullptr (use the reference).
// Levels the CPU lacks must not be asked for.
AttentionGroupFn find_attention_kernel(SimdLevel level, const PagedKvView& kv, const AttentionParams& p);
// Per-level lookups (attention_avx2.cpp, attention_avx512.cpp); nullptr on other targets.
AttentionGroupFn attention_kernel_avx2(const PagedKvView& kv, const AttentionParams& p);
AttentionGroupFn attention_kernel_avx512(const PagedKvView& kv, const AttentionParams& p);

// ggml_vexp (backend/ref/unary.h) of n floats (n a multiple of 16) with the vector exp the
// kernels of `level` use, for tests (it must match ggml_vexp bit for bit); nullptr for scalar.
using VexpFn = void (*)(const float* x, float* y, int64_t n);
VexpFn find_vexp_kernel(SimdLevel level);
VexpFn vexp_kernel_avx2();
VexpFn vexp_kernel_avx512();

// attention_cpu (attention.h) at an explicit level (tests, benchmarks); attention_cpu itself
// uses default_simd_level(). Same contract and bits as attention_ref at every level.
void attention_cpu_at(SimdLevel level, ThreadPool& pool, const float* q, const PagedKvView& kv,
                      const int32_t* const* block_tables, const int32_t* positions, const int32_t* kv_end,
                      int64_t n_tokens, const AttentionParams& p, float* out,
                      std::vector<AttentionScratch>& scratch);

}  // namespace hearth::backend
