// The avx512 level of norm.h: AVX-512 F/BW/VL on 512-bit vectors (target flags: cmake/simd_flags.cmake);
// called only where the CPU has them.
#include "backend/cpu/norm.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__FMA__) && defined(__F16C__)

#define HEARTH_VEC16_AVX512 1
#define HEARTH_UNARY_RMS_NORM 1
#include "backend/cpu/unary_kernels_x86.h"

namespace hearth::backend {
RmsNormFn rms_norm_kernel_avx512() { return &rms_norm_rows; }
}  // namespace hearth::backend

#else

namespace hearth::backend {
RmsNormFn rms_norm_kernel_avx512() { return nullptr; }
}  // namespace hearth::backend

#endif
