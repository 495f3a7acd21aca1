// Row conversions on the CPU for the KV cache's writes: f32 -> f16 with F16C where the CPU has
// it, bit-identical to quant::quantize_row_f16 (round to nearest even; every NaN becomes the
// reference's quiet NaN, sign | 0x7e00, whatever its payload).
#pragma once

#include <cstdint>

#include "backend/cpu/cpu_features.h"

namespace hearth::backend {

using F16RowFn = void (*)(const float* x, uint16_t* y, int64_t n);
// The avx2 level's kernel (convert_avx2.cpp; nullptr where it is not built).
F16RowFn f16_row_kernel_avx2();

// y[i] = f16(x[i]), i < n, at an explicit level (tests) or the process default; scalar runs
// the reference.
void f32_to_f16_row_at(SimdLevel level, const float* x, uint16_t* y, int64_t n);
void f32_to_f16_row(const float* x, uint16_t* y, int64_t n);

}  // namespace hearth::backend
