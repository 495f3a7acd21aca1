#include "backend/cpu/convert.h"

#include "quant/float.h"

namespace hearth::backend {

void f32_to_f16_row_at(SimdLevel level, const float* x, uint16_t* y, int64_t n) {
    const F16RowFn fn = level >= SimdLevel::avx2 ? f16_row_kernel_avx2() : nullptr;
    if (fn) fn(x, y, n);
    else quant::quantize_row_f16(x, y, n);
}

void f32_to_f16_row(const float* x, uint16_t* y, int64_t n) {
    static const F16RowFn fn = default_simd_level() >= SimdLevel::avx2 ? f16_row_kernel_avx2() : nullptr;
    if (fn) fn(x, y, n);
    else quant::quantize_row_f16(x, y, n);
}

}  // namespace hearth::backend
