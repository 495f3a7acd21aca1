// The avx2 level of attention_kernels.h: AVX2 + FMA + F16C on 256-bit vectors. Compiled with
// -mavx2 -mfma -mf16c -mno-avx512f (cmake/simd_flags.cmake); called only where the CPU has them.
#include "backend/cpu/attention_kernels.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)

#define HEARTH_ATTN_AVX512 0
#include "backend/cpu/attention_kernels_x86.h"

namespace hearth::backend {
AttentionGroupFn attention_kernel_avx2(const PagedKvView& kv, const AttentionParams& p) {
    return lookup_attention_kernel(kv, p);
}
VexpFn vexp_kernel_avx2() { return &vexp_rows; }
}  // namespace hearth::backend

#else

namespace hearth::backend {
AttentionGroupFn attention_kernel_avx2(const PagedKvView&, const AttentionParams&) { return nullptr; }
VexpFn vexp_kernel_avx2() { return nullptr; }
}  // namespace hearth::backend

#endif
