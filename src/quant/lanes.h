// Float summation orders of ggml's x86 CPU kernels, written as plain scalar code. Internal to
// src/quant/ (not part of the public API).
//
// Why: llama.cpp quantizes activations to 8 bits before every quantized matmul, so a 1-ulp
// difference in one layer's output can flip a rounding step in the next layer's activation
// quantization and move the logits by ~0.1. To match the reference logits to float noise
// (~1e-6), the reference dot products here add their float terms in exactly the order of the
// kernels that produced the goldens (llama.cpp 34af94cd, x86 with AVX2 + AVX-512F/VL/VNNI,
// F16C, FMA; see tests/quant/x86_order_test.cpp). Integer partial sums are exact, so only
// which elements go into which integer lane matters, not the order inside a lane.
//
// The kernels keep one float accumulator per SIMD lane ("lanes") and reduce them at the end
// with a fixed tree. A fused multiply-add (one rounding) is written as std::fmaf; everything
// else is a separately rounded operation. The quant .cpp files are compiled without
// contraction (HEARTH_QUANT_STRICT_FP), so the compiler cannot fuse or reorder these.
#pragma once

#include <cmath>
#include <cstdint>

#include "base/fp16.h"

namespace hearth::quant::detail {

// ggml's hsum_float_8 (also tinyBLAS's hsum(__m256)) of 8 float lanes a[8]:
// r[i] = a[i+4] + a[i] for i < 4, then (r[0] + r[2]) + (r[1] + r[3]).
inline float hsum8(const float a[8]) {
    float r[4];
    for (int i = 0; i < 4; ++i) r[i] = a[i + 4] + a[i];
    const float s0 = r[0] + r[2];
    const float s1 = r[1] + r[3];
    return s0 + s1;
}

// _mm512_reduce_add_ps of 16 float lanes a[16] (GCC and clang both halve the vector):
// h[i] = a[i+8] + a[i] for i < 8, q[i] = h[i+4] + h[i] for i < 4, then (q[0] + q[2]) + (q[1] + q[3]).
inline float hsum16(const float a[16]) {
    float h[8];
    for (int i = 0; i < 8; ++i) h[i] = a[i + 8] + a[i];
    return hsum8(h);
}

// The 8 int32 lanes of a 256-bit integer dot product over 32 int8 pairs (mul_sum_i8_pairs,
// VNNI dpbusd, maddubs + madd): lane l is the exact sum of x[j] * y[j] for j = 4l .. 4l+3.
// x: [32] weight values already decoded to integers; y: [32] activation quants.
inline void lane_dot32(const int8_t x[32], const int8_t y[32], int32_t lanes[8]) {
    for (int l = 0; l < 8; ++l) {
        int32_t s = 0;
        for (int j = 4 * l; j < 4 * l + 4; ++j) s += (int32_t)x[j] * y[j];
        lanes[l] = s;
    }
}

// acc[l] = fma(d, float(lanes[l]), acc[l]) for the 8 lanes: _mm256_fmadd_ps(d, cvtepi32_ps(q), acc).
// The int -> float conversion rounds to nearest even like cvtepi32_ps (exact below 2^24).
inline void fma_lanes8(float d, const int32_t lanes[8], float acc[8]) {
    for (int l = 0; l < 8; ++l) acc[l] = std::fmaf(d, (float)lanes[l], acc[l]);
}

// Integer lane of element e (0..255) of a K-quant super-block in ggml's AVX2 K-quant kernels:
// 32 consecutive elements are loaded into one 256-bit register, so element e lands in int32
// lane ((e % 32) / 4) of that register and all registers of a super-block add lane-wise.
constexpr int k_lane(int e) { return (e % 32) / 4; }


// The order of llama.cpp's repacked K-quant kernels with a separate min term (q2_K_8x8,
// q4_K_8x8): two float accumulators per output, acc = fma(sumi, d_x * d_y, acc) and
// acc_min = fma(sum_mins, dmin_x * d_y, acc_min), updated once per group of `group`
// sub-blocks; result acc - acc_min. Block has fp16 d and dmin; y is Q8_K (float d).
// sums(x_block, y_block, j0, j1, &sumi, &sum_mins) gives the exact integer sums of
// sub-blocks [j0, j1).
template <typename Block, typename BlockY, typename SubBlockSums>
float dot_with_min_accumulators(const Block* x, const BlockY* y, int64_t n_blocks, int n_sub, int group,
                                SubBlockSums sums) {
    float acc = 0, acc_min = 0;
    for (int64_t i = 0; i < n_blocks; ++i) {
        const float d = fp16_to_f32(x[i].d) * y[i].d;
        const float dmin = fp16_to_f32(x[i].dmin) * y[i].d;
        for (int j = 0; j < n_sub; j += group) {
            int32_t sumi, sum_mins;
            sums(x[i], y[i], j, j + group, &sumi, &sum_mins);
            acc = std::fmaf((float)sumi, d, acc);
            acc_min = std::fmaf((float)sum_mins, dmin, acc_min);
        }
    }
    return acc - acc_min;
}

}  // namespace hearth::quant::detail
