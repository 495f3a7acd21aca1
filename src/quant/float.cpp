#include "quant/float.h"

#include "base/fp16.h"
#include "quant/quant_helpers.h"

HEARTH_QUANT_STRICT_FP

namespace hearth::quant {

void dequantize_row_f32(const float* x, float* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] = x[i];
}

void quantize_row_f32(const float* x, float* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] = x[i];
}

float vec_dot_f32(const float* x, const float* y, int64_t n) {
    double sum = 0.0;
    for (int64_t i = 0; i < n; ++i) sum += (double)(x[i] * y[i]);
    return (float)sum;
}

void dequantize_row_f16(const uint16_t* x, float* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] = fp16_to_f32(x[i]);
}

void quantize_row_f16(const float* x, uint16_t* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] = f32_to_fp16(x[i]);
}

float vec_dot_f16(const uint16_t* x, const uint16_t* y, int64_t n) {
    double sum = 0.0;  // each product of two halves is exact in f32
    for (int64_t i = 0; i < n; ++i) sum += (double)(fp16_to_f32(x[i]) * fp16_to_f32(y[i]));
    return (float)sum;
}

void dequantize_row_bf16(const uint16_t* x, float* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] = bf16_to_f32(x[i]);
}

void quantize_row_bf16(const float* x, uint16_t* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] = f32_to_bf16(x[i]);
}

float vec_dot_bf16(const uint16_t* x, const uint16_t* y, int64_t n) {
    double sum = 0.0;  // each product of two bfloat16 values is exact in f32
    for (int64_t i = 0; i < n; ++i) sum += (double)(bf16_to_f32(x[i]) * bf16_to_f32(y[i]));
    return (float)sum;
}

}  // namespace hearth::quant
