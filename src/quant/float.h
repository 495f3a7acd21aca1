// Unquantized rows: F32, F16 (IEEE half) and BF16 (bfloat16), stored as raw bits.
// Each is its own vec_dot_type: a dot product first converts the activation row to the
// weight's type (round to nearest even), as ggml's CPU backend does.
#pragma once

#include <cstdint>

namespace hearth::quant {

// All functions: n elements, any n >= 0. x and y do not alias.
void dequantize_row_f32(const float* x, float* y, int64_t n);
void quantize_row_f32(const float* x, float* y, int64_t n);
// The dot products sum in the order of ggml's x86 AVX-512 kernels (see float.cpp and
// quant/lanes.h). vec_dot_* is the order of llama.cpp's prompt matmuls (tinyBLAS when n is a
// multiple of 16, else the vec kernel); vec_dot_*_gemv is the order of ggml_vec_dot_*, which
// llama.cpp runs for single-token matmuls, for n not a multiple of 16 or a row count not a
// multiple of 4, and for F32 products whose activation operand is not contiguous (attention KQ).
float vec_dot_f32(const float* x, const float* y, int64_t n);
float vec_dot_f32_gemv(const float* x, const float* y, int64_t n);

void dequantize_row_f16(const uint16_t* x, float* y, int64_t n);  // x: [n] fp16 bits
void quantize_row_f16(const float* x, uint16_t* y, int64_t n);    // y: [n] fp16 bits
float vec_dot_f16(const uint16_t* x, const uint16_t* y, int64_t n);
float vec_dot_f16_gemv(const uint16_t* x, const uint16_t* y, int64_t n);

void dequantize_row_bf16(const uint16_t* x, float* y, int64_t n);  // x: [n] bf16 bits
void quantize_row_bf16(const float* x, uint16_t* y, int64_t n);    // y: [n] bf16 bits
float vec_dot_bf16(const uint16_t* x, const uint16_t* y, int64_t n);
float vec_dot_bf16_gemv(const uint16_t* x, const uint16_t* y, int64_t n);

}  // namespace hearth::quant
