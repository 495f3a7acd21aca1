// The avx512 level of dot_kernels.h: AVX-512 F/BW/VL/VNNI on 256-bit vectors (32 registers,
// vpdpbusd/vpdpwssd). Compiled with -mavx512f -mavx512bw -mavx512vl -mavx512vnni
// (cmake/simd_flags.cmake); called only where the CPU has them.
#include "backend/cpu/dot_kernels.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512VNNI__) && \
    defined(__FMA__) && defined(__F16C__)

#define HEARTH_KERNEL_VNNI 1
#define HEARTH_TILE_ROWS 4
#define HEARTH_TILE_COLS 8
#define HEARTH_FLOAT_TILE_COLS 4
#define HEARTH_PACKED_ROWS 8
#include "backend/cpu/dot_kernels_x86.h"

namespace hearth::backend {
const DotKernels* dot_kernels_avx512(quant::QuantType type, int64_t n) { return lookup_kernels(type, n); }
}  // namespace hearth::backend

#else

namespace hearth::backend {
const DotKernels* dot_kernels_avx512(quant::QuantType, int64_t) { return nullptr; }
}  // namespace hearth::backend

#endif
