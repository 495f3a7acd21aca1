// Internal to backend/cuda: the warp-level tensor-core and async-copy primitives the f16 kernels
// share (the prefill GEMM, matmul_gemm.cu; flash attention, attention.cu; the integer kernels of
// matmul_mma.cu use the copy helpers). Each is one PTX instruction; the fragment layouts are
// PTX's (ISA "Warp-level matrix fragments" for mma.m16n8k16 and ldmatrix):
//  - A (16 x 16, row-major) a[0..3]: (row g, k 2c..2c+1), (row g + 8, same k), (row g, k 2c+8..),
//    (row g + 8, k 2c+8..), with g = lane / 4 and c = lane % 4, two f16 per register;
//  - B (16 x 8, k x n, "col") b0: (k 2c..2c+1, column g), b1: (k 2c+8.., column g);
//  - C/D (16 x 8 f32) c[0], c[1]: (row g, columns 2c, 2c+1); c[2], c[3]: (row g + 8, same).
// ldmatrix_x4 loads four 8 x 8 f16 tiles; lane l gives the shared address of row l % 8 of tile
// l / 8. Without .trans each lane receives, from each tile, the pair of its row g at columns 2c,
// 2c+1 (an A or B fragment from rows stored k-contiguous); with .trans the pair of rows 2c, 2c+1
// at column g (a B fragment from rows stored n-contiguous, e.g. V as [position][dim]).
#pragma once

#include <cuda_fp16.h>

#include <cstdint>

namespace hearth::backend::cuda_mma {

__device__ __forceinline__ uint32_t smem_u32(const void* p) { return (uint32_t)__cvta_generic_to_shared(p); }

// 16 bytes global -> shared, through L2 only; src_bytes 0 fills the 16 bytes with zeros (src is
// then not read, but must still be a valid address).
__device__ __forceinline__ void cp_async16(void* dst, const void* src, int src_bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(dst)), "l"(src), "r"(src_bytes)
                 : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
// Waits until at most N of this thread's committed groups are still in flight.
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory"); }

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_u32(p))
                 : "memory");
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_u32(p))
                 : "memory");
}

// c += a * b, f16 operands, f32 accumulation.
__device__ __forceinline__ void mma_16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Two floats rounded to f16 (nearest even), lo in the low half.
__device__ __forceinline__ uint32_t pack_half2(float lo, float hi) {
    const __half2 h = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<const uint32_t*>(&h);
}

}  // namespace hearth::backend::cuda_mma
