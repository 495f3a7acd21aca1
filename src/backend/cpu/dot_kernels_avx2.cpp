// The avx2 level of dot_kernels.h: AVX2 + FMA + F16C, 16 vector registers. Compiled with
// -mavx2 -mfma -mf16c -mno-avx512f (cmake/simd_flags.cmake); called only where
// default_simd_level() or the caller's level says the CPU has them.
#include "backend/cpu/dot_kernels.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)

#define HEARTH_KERNEL_VNNI 0
#define HEARTH_TILE_ROWS 2
#define HEARTH_TILE_COLS 4
#define HEARTH_FLOAT_TILE_COLS 2
#define HEARTH_PACKED_ROWS 4
#include "backend/cpu/dot_kernels_x86.h"

namespace hearth::backend {
const DotKernels* dot_kernels_avx2(quant::QuantType type, int64_t n) { return lookup_kernels(type, n); }
}  // namespace hearth::backend

#else

namespace hearth::backend {
const DotKernels* dot_kernels_avx2(quant::QuantType, int64_t) { return nullptr; }
}  // namespace hearth::backend

#endif
