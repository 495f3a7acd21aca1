// CUDA matmul: Y[t][o] = sum_i W[o][i] * X[t][i], the contract of backend/ref/matmul.h with
// every pointer in device memory (W, X, Y from DeviceBuffers on the stream's device).
// W: n_out rows of n_in elements quantized as `type`, rows `row_bytes` apart;
// X: [n_tokens][n_in] f32; Y: [n_tokens][n_out] f32; X and Y do not alias.
//
// Numerics: unlike the reference, X stays f32 (no Q8_0/Q8_K/F16 conversion of activations):
// each output is the f32-accumulated dot of the dequantized weights with X. It matches an
// f64 dot of dequantized weights to ~1e-6 relative to sum|w*x|, and matmul_ref to the
// reference's own activation rounding (Q8_0/Q8_K: one step of 1/127 of a block's max; F16:
// 2^-11 relative), about 1e-3 of sum|w*x|; the test uses 1e-2 like the reference's own bound.
//
// Weights are read once per group of up to 8 tokens (matrix-vector kernels: decode speed);
// larger batches are correct but re-read the weights every 8 tokens (tensor-core GEMM: next).
// Fast paths use 16-byte loads and need 16-byte aligned rows (row_bytes % 16 == 0 and W
// 16-byte aligned; for Q8_0 that is n_in % 256 == 0, for F16 n_in % 8 == 0); other shapes take
// a slower generic kernel with the same numerics.
//
// Failure semantics: an unsupported type or bad shape records invalid_argument / unsupported
// on the Device (sticky) and launches nothing; launch errors are recorded likewise. Y is then
// unspecified. Check Stream::synchronize().
#pragma once

#include <cstddef>
#include <cstdint>

#include "backend/cuda/device.h"
#include "quant/types.h"

namespace hearth::backend {

// Types with a CUDA matmul kernel: F16, Q8_0, Q4_K.
bool can_matmul_cuda(quant::QuantType type);

void matmul_cuda(cuda::Stream& stream, quant::QuantType type, const std::byte* w, size_t row_bytes,
                 const float* x, float* y, int64_t n_in, int64_t n_out, int64_t n_tokens);

}  // namespace hearth::backend
