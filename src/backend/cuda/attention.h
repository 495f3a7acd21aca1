// CUDA attention over a paged f16 KV cache in device memory: the contract of
// backend/ref/attention.h (causal window [lo, kv_end) per token, GQA, scale, optional sliding
// window, softcap and sinks) for one query token or many (prefill), and the KV write that
// fills the cache. The header includes no CUDA header.
//
// Visible positions of token t: [lo, kv_end[t]) with lo = max(window start, kv_begin[t]); the
// window start is the reference's (positions[t] - sliding_window + 1, at least 0, when
// sliding_window > 0; else 0) and kv_begin (AttnIndexCuda, optional) adds chunked attention's
// lower bound. Without kv_begin this is exactly attention_ref's window; with it, it is
// attention_ref's window for sliding_window = positions[t] + 1 - lo (kv_end = position + 1).
//
// Cache layout (as model/kv_cache.h lays out one layer): position `slot` (= block * block_size
// + offset) has its K row at k + slot * k_row_stride halves: n_head_kv heads of head_dim_k f16
// values; V likewise. Block tables are one flat device array [n_seqs][table_stride] of block
// ids; token t uses row seq_ids[t].
//
// Numerics: K and V are read as f16 and converted to f32 exactly (as the reference's f16
// path); q stays f32; scores, the softmax (online, in chunks of 32 positions: a running max and
// sum, rescaled with expf) and the V sums are f32. Against attention_ref the differences are
// the summation order and expf versus ggml_vexp (~2 ulp each): each output element is a convex
// combination of V values, and its error stays below ~1e-5 * max|V| plus ~1e-6 * max|V| per
// unit of |score| (derived in tests/backend/cuda_attention_test.cpp, which checks it).
//
// Requirements: head dims even, head_dim_k <= 576 and head_dim_v <= 512 (past 256 for MLA's
// absorbed form, e.g. DeepSeek-V2/V3's 576/512 with one kv head); n_head a multiple of
// n_head_kv; K/V row strides even; q and out rows as [n_tokens][n_head * head_dim] f32. sinks,
// when set, is a device pointer to [n_head] f32. A token whose window is empty gets zeros (as
// the reference).
//
// Failure semantics: bad arguments record invalid_argument on the Device (sticky) and launch
// nothing; out is then unspecified.
#pragma once

#include <cstddef>
#include <cstdint>

#include "backend/cuda/device.h"
#include "backend/ref/attention.h"

namespace hearth::backend {

struct PagedKvCuda {
    const void* k = nullptr;         // f16 K rows (device)
    const void* v = nullptr;         // f16 V rows (device)
    int block_size = 0;
    int64_t k_row_stride = 0;        // halves from one cached position's K row to the next
    int64_t v_row_stride = 0;
};

// Per-token indexing of a batch, all [n_tokens] int32 in device memory (block_tables:
// [n_seqs][table_stride]). The kernel reads them before it waits for the kernel before it
// (launch.cuh), so they are uploaded before the step, not written by its kernels.
struct AttnIndexCuda {
    const int32_t* block_tables = nullptr;
    int table_stride = 0;
    const int32_t* seq_ids = nullptr;
    const int32_t* positions = nullptr;
    const int32_t* kv_end = nullptr;  // visible positions end (causal: position + 1)
    // [n_tokens] first visible position per token (chunked attention), or null: 0
    const int32_t* kv_begin = nullptr;
};

// Split over the sequence (flash-decoding), for decode: every (token, kv head) is computed by
// n_splits thread blocks, each over one contiguous part of the visible positions (whole chunks of
// 32; the parts are sized on the device from the visible range [lo, kv_end), so one graph serves
// every context length and chunk start); each writes its running max, sum and unnormalized V sums
// to `workspace`, and the last block of the (token, kv head) to finish combines them (a counter per
// (token, kv head), no second launch). Numerics: as above; the parts are merged with one more
// rescale by expf, so the bound of the unsplit path holds. workspace:
// attention_split_bytes(n_tokens, p, n_splits) bytes of device memory, 16-byte aligned, zeroed once
// before its first use (every call leaves its counters at zero again); one workspace serves one
// attention call at a time (calls on one stream run in order). n_splits 1 (or workspace null) is
// the unsplit path.
struct AttnSplitCuda {
    void* workspace = nullptr;
    int n_splits = 1;
    // The per-token kernel even where the flash kernel could run (below): for tokens that are
    // each (nearly) alone in their sequence, e.g. a step's decodes batched with a prefill.
    bool rows_only = false;
};
constexpr int kAttnMaxSplits = 64;
// The widest heads attention_cuda takes (see Requirements above).
constexpr int kAttnMaxHeadDimK = 576, kAttnMaxHeadDimV = 512;
size_t attention_split_bytes(int64_t n_tokens, const AttentionParams& p, int n_splits);

// Whether the per-token calls (decode-sized: a split workspace, rows_only, or too few tokens for
// the flash kernel) of these heads run on tensor cores (attention.cu: decode_mma_kernel): head
// dims 64, 96 or 128, K and V equal, and the environment variable HEARTH_CUDA_DECODE_MMA not "0"
// (read at every call); the call also needs K/V rows and bases 16-byte aligned, else it takes the
// other kernel. Numerics: as above (its f16 operands carry hi and lo halves of q and of the
// probabilities, ~2^-22 relative), the same bound. Each of its blocks walks its part of the
// sequence with 4 warps, so it wants fewer parts than the other kernel (model/cuda_decoder.cpp
// sizes n_splits from this).
bool attention_cuda_decode_mma(const AttentionParams& p);

// How many parts (AttnSplitCuda::n_splits) the decode calls of one model take, as
// model/cuda_decoder.cpp sizes them: max_splits for one token (about two blocks per SM for
// attention_kernel, one for decode_mma_kernel: tensor_cores; each part takes at least one
// 32-position chunk, so short contexts leave parts empty), fewer as the tokens fill the device
// themselves, so that a call has about target_blocks blocks (each part then walks more positions
// instead of many near-empty parts each paying the merge). for_tokens(n) * n never exceeds
// max_splits * n.
struct AttnDecodeSplits {
    int max_splits = 1;
    int64_t target_blocks = 1;
    int for_tokens(const AttentionParams& p, int64_t n_tokens) const;
};
AttnDecodeSplits attention_decode_splits(const AttentionParams& p, int n_sm, bool tensor_cores);

// Prefill takes a tensor-core flash-attention kernel (attention_flash.cu) when
// attention_cuda_uses_flash says so: at least kAttnFlashMinTokens tokens, no split workspace
// and not rows_only (decode-sized calls pass a workspace, even for n_splits 1; tokens of many
// sequences, one each, would leave most rows of a flash tile empty and walk each sequence's
// positions once per token), no out_q8, K and V head dims equal and 64, 96 or
// 128, K/V rows and bases 16-byte aligned (row strides multiples of 8 halves), and the
// environment variable HEARTH_CUDA_FLASH not "0" (read at every call). Its numerics differ from
// the contract above in two roundings: the query is scaled and rounded to f16, and the softmax
// probabilities are rounded to f16 for the P.V product (the normalizer sums the same rounded
// values, so each output is still a convex combination of V rows); scores and V sums accumulate
// in f32 (mma.sync). With S = scale * max over visible j of sum_i |q_i k_ji| and n the visible
// positions, the output moves by at most ~max|V| * (2.2 * 2^-11 * S + 2^-10 + n * 2^-24) more
// than the bound above (derived in tests/backend/cuda_attention_test.cpp, which checks it).
// Everything else (windows, kv_begin, GQA, softcap, sinks, empty windows, several sequences in
// one call) is as above. A token's result does not depend on which other tokens share the call
// or how long the call is.
constexpr int64_t kAttnFlashMinTokens = 16;
bool attention_cuda_uses_flash(const AttentionParams& p, const PagedKvCuda& kv, int64_t n_tokens,
                               const AttnSplitCuda& split, const void* out_q8);

// out_q8, when set, also receives out as int8 activations for the next matmul: the layout and
// the bits of quantize_activations_cuda(out, out_q8, n_head * head_dim_v, n_tokens)
// (backend/cuda/matmul.h; activation_q8_bytes of that shape, 16-byte aligned), without the
// separate pass. Needs head_dim_v % 32 == 0.
void attention_cuda(cuda::Stream& stream, const float* q, const PagedKvCuda& kv, const AttnIndexCuda& idx,
                    int64_t n_tokens, const AttentionParams& p, float* out, const AttnSplitCuda& split = {},
                    void* out_q8 = nullptr);

// Writes the K rows (k_width f32 values, k_stride apart) and V rows of n_tokens tokens into
// the f16 cache (k_cache / v_cache device pointers, row strides in halves) at slots[t]
// (device [n_tokens] int32), rounding to nearest even as quant/'s f16 conversion does.
// Distinct tokens must have distinct slots.
void kv_write_cuda(cuda::Stream& stream, const float* k, int64_t k_stride, const float* v, int64_t v_stride,
                   const int32_t* slots, int64_t n_tokens, int k_width, int v_width, void* k_cache,
                   int64_t k_row_stride, void* v_cache, int64_t v_row_stride);

}  // namespace hearth::backend
