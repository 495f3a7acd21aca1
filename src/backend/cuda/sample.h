// Top-k candidates of logits rows on the device: the k best token ids of each row and their
// logits, so that a sampler that only needs its top candidates gets k ids and logits per row
// back instead of the whole vocabulary (model/cuda_decoder.cpp: Batch::output_top_k). The
// header includes no CUDA header (plain C++ callers: model/, tests).
//
// Order and exactness: the same candidates as a scalar std::partial_sort of each row
// (tests/backend/cuda_sample_test.cpp compares bit for bit), and so as the host selection of
// CPU models (model.h: select_top_k): best first by logit, ties by lower
// id (runtime/sampler.h's by_logit_desc), NaN counted and reported as -inf (as the sampler maps
// it), -0.0 equal to +0.0; the logits come back with their own bits. A row of only -inf/NaN
// gives its first k ids.
//
// How: each block selects the k best of a chunk of a row (8192 logits): the k-th largest of its
// threads' own maxima is a lower bound of the answer, so only the candidates at or above it (a
// shortlist, typically a few hundred) are searched, by one warp: a bitwise search for the k-th
// largest order key, then those above it and, of those equal to it, the lowest ids (a second
// bitwise search, over the ids, when there are more than places). A chunk where more than 2048
// candidates reach the bound (many equal logits) is searched whole by the block. Each chunk
// writes its k (key, id) pairs; the same kernel reduces a row's chunk candidates (2048 per
// block) until one chunk is left, whose k are sorted (bitonic) and written. A 128k vocabulary
// takes two launches, 262,144 three; no atomics, no host sync, so the call can be captured into
// a CUDA graph. Measured on the H100 (bench/backend/cuda_sample_bench.cpp, wall clock per call
// with the launches): 32 rows x 128,256, k 40: 39 us; k 128: 53 us.
//
// Failure semantics: bad arguments (k outside 1..kTopKMax or above n_cols, a null pointer where
// there is work, a workspace missing when one is needed) record invalid_argument on the Device
// (sticky) and launch nothing; outputs are then unspecified. Check Stream::synchronize().
#pragma once

#include <cstddef>
#include <cstdint>

#include "backend/cuda/device.h"

namespace hearth::backend {

constexpr int kTopKMax = 128;

// Device workspace topk_rows_cuda needs for these sizes (0 when a row fits one chunk).
size_t topk_rows_workspace_bytes(int64_t n_rows, int64_t n_cols, int k);

// ids [n_rows][k] and vals [n_rows][k] = the k best of each row of logits [n_rows][n_cols]
// (f32, device memory), best first. workspace: topk_rows_workspace_bytes(...) bytes of device
// memory (256-byte aligned), contents dead between calls. Preconditions: 1 <= k <= kTopKMax,
// k <= n_cols, n_rows <= 65535.
void topk_rows_cuda(cuda::Stream& stream, const float* logits, int64_t n_rows, int64_t n_cols, int k, int32_t* ids,
                    float* vals, void* workspace);

}  // namespace hearth::backend
