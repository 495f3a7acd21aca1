// The avx2 level of unary.h: AVX2 + FMA on 256-bit vectors (target flags: cmake/simd_flags.cmake);
// called only where the CPU has them.
#include "backend/cpu/unary.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)

#define HEARTH_VEC16_AVX512 0
#define HEARTH_UNARY_SWIGLU 1
#include "backend/cpu/unary_kernels_x86.h"

namespace hearth::backend {
SwigluChunksFn swiglu_kernel_avx2() { return &swiglu_chunks; }
}  // namespace hearth::backend

#else

namespace hearth::backend {
SwigluChunksFn swiglu_kernel_avx2() { return nullptr; }
}  // namespace hearth::backend

#endif
