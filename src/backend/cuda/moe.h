// CUDA pieces of a mixture-of-experts block (the contract of model/blocks.h MoeBlock for the
// softmax-routed families: qwen3moe, mixtral), every pointer in device memory, queued on a
// Stream. The expert matmuls themselves are matmul_cuda calls over the rows routed to each
// expert (backend/cuda/matmul.h); these kernels route and combine.
//
// Numerics against the CPU block (MoeBlock::route/forward over Ops):
//  - moe_route_softmax_cuda: router logits in f32 (lane-strided fma sums, then a warp tree:
//    another order than the CPU's f32 matmul, ~1e-7 relative), probabilities as the CPU
//    computes them (f32 exps of logit - max, a double sum, each divided in double; expf here is
//    <= 2 ulp from glibc's exp), the top k with ties to the lower expert id, and (norm_w) the
//    selected weights divided by their f32 sum clamped to 2^-14. A router near-tie can pick
//    another expert than the CPU does (testdata/README.md §4: judge quantized MoE files by
//    mean-abs and top-1).
//  - moe_combine_cuda: out = sum of w * y in the order given (f32 products and adds, no fma).
//
// Failure semantics: bad arguments record invalid_argument on the Device (sticky) and launch
// nothing; launch errors are recorded likewise. Check Stream::synchronize().
#pragma once

#include <cstdint>

#include "backend/cuda/device.h"

namespace hearth::backend {

// The most experts and selected experts per token moe_route_softmax_cuda takes.
constexpr int kMoeMaxExperts = 1024;
constexpr int kMoeMaxUsed = 32;

// For each token t < n: logits = router · x[t] (router [n_expert][n_embd] f32 rows, plus
// bias[n_expert] when non-null), p = softmax(logits), ids[t][j] = the j-th largest p (j < k,
// selection order) and weights[t][j] = p of it, renormalized to sum 1 when norm_w.
// x [n][n_embd] f32 (n <= 65535); logits [n][n_expert] f32 scratch (left holding p);
// ids [n][k] int32; weights [n][k] f32. When comb_rows is not null, also the combine tables of
// moe_combine_cuda for outputs stored per selection (row t * k + j): comb_rows [n][k] int32 =
// those rows of each token in expert-id order, comb_w [n][k] f32 their weights.
void moe_route_softmax_cuda(cuda::Stream& stream, const float* x, const float* router, const float* bias,
                            int64_t n_embd, int64_t n, int n_expert, int k, bool norm_w, float* logits, int32_t* ids,
                            float* weights, int32_t* comb_rows = nullptr, float* comb_w = nullptr);

// out[t][c] = sum over j < k, in order, of w[t][j] * ys[rows[t][j]][c] (the first term
// assigned, the others added), c < d. rows [n][k] int32 (row indices of ys), w [n][k] f32,
// ys [*][d], out [n][d] f32; out must not alias ys.
void moe_combine_cuda(cuda::Stream& stream, const float* ys, const int32_t* rows, const float* w, int64_t n, int k,
                      int64_t d, float* out);

}  // namespace hearth::backend
