// The avx512 level of attention_kernels.h: AVX-512 F/BW/VL/VNNI; float work on 512-bit vectors
// (16 lanes, ggml's lane count), integer dot products on 256-bit ones with vpdpbusd. Compiled
// with -mavx512f -mavx512bw -mavx512vl -mavx512vnni (cmake/simd_flags.cmake); called only where
// the CPU has them.
#include "backend/cpu/attention_kernels.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512VNNI__) && \
    defined(__FMA__) && defined(__F16C__)

#define HEARTH_ATTN_AVX512 1
#include "backend/cpu/attention_kernels_x86.h"

namespace hearth::backend {
AttentionGroupFn attention_kernel_avx512(const PagedKvView& kv, const AttentionParams& p) {
    return lookup_attention_kernel(kv, p);
}
VexpFn vexp_kernel_avx512() { return &vexp_rows; }
}  // namespace hearth::backend

#else

namespace hearth::backend {
AttentionGroupFn attention_kernel_avx512(const PagedKvView&, const AttentionParams&) { return nullptr; }
VexpFn vexp_kernel_avx512() { return nullptr; }
}  // namespace hearth::backend

#endif
