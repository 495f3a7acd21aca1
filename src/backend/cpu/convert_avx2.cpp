// The avx2 level of convert.h: F16C's vcvtps2ph, 8 values per instruction (target flags:
// cmake/simd_flags.cmake); called only where the CPU has AVX2 + F16C.
#include "backend/cpu/convert.h"

#if defined(__AVX2__) && defined(__F16C__)

#include <immintrin.h>

#include "base/fp16.h"

namespace hearth::backend {
namespace {

// vcvtps2ph rounds to nearest even like the reference, for normal and subnormal halves, zeros,
// infinities and overflow (f32 values of 65520 and up become inf). It keeps a NaN's payload
// where the reference writes sign | 0x7e00, so blocks holding a NaN take the reference there.
void f16_row(const float* x, uint16_t* y, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        const __m128i h = _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(y + i), h);
        if (_mm256_movemask_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q)) != 0)
            for (int64_t j = i; j < i + 8; ++j) y[j] = f32_to_fp16(x[j]);
    }
    for (; i < n; ++i) y[i] = f32_to_fp16(x[i]);
}

}  // namespace

F16RowFn f16_row_kernel_avx2() { return &f16_row; }

}  // namespace hearth::backend

#else

namespace hearth::backend {
F16RowFn f16_row_kernel_avx2() { return nullptr; }
}  // namespace hearth::backend

#endif
