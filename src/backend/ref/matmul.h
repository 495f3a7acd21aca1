// Y[t][o] = sum_i W[o][i] * X[t][i] for a weight matrix of any tensor type.
// W: n_out rows of n_in elements, row-major, quantized as `type`, rows `row_bytes` apart.
// X: [n_tokens][n_in] f32; Y: [n_tokens][n_out] f32; X and Y do not alias.
// Like ggml's CPU path, each X row is first converted to the type's vec_dot_type (F16 for F16
// weights, Q8_0/Q8_1/Q8_K for the block types) and the dot product runs on that pair.
// Preconditions: n_in % block_size(type) == 0; the type has a vec_dot (quant::can_compute).
// Tolerance class: quantized activations; compare with dequantize + f32 dot by ~1e-2 relative.
#pragma once

#include <cstddef>
#include <cstdint>

#include "quant/types.h"

namespace hearth::backend {

void matmul_ref(quant::QuantType type, const std::byte* w, size_t row_bytes, const float* x,
                float* y, int64_t n_in, int64_t n_out, int64_t n_tokens);

// Bytes needed to hold one activation row of n elements converted to the vec_dot_type of `type`.
size_t activation_row_bytes(quant::QuantType type, int64_t n);
// Converts one f32 row to the vec_dot_type of weight type `type` (dst: activation_row_bytes).
void quantize_activation_row(quant::QuantType type, const float* x, std::byte* dst, int64_t n);

}  // namespace hearth::backend
