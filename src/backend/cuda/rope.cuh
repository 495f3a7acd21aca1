// Internal to backend/cuda: the rotary-embedding arithmetic shared by the rope kernels (ops.cu)
// and the matrix-vector kernel's q/k epilogue (matmul_vec.cu), so both give the same bits.
// Contract and numerics: ops.h (rope_cuda).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "backend/ref/rope.h"

namespace hearth::backend::cuda_kernels {

// Host-side constants of one rope call, derived exactly as backend/ref/rope.cpp derives them.
struct RopeConsts {
    int n_rot, head_dim, n_heads;
    bool neox;
    float theta_scale, freq_scale, ext_factor, mscale, corr_lo, corr_hi;
    const float* freq_factors;  // device, [n_rot / 2], or null
};

// As backend/ref/rope.cpp's rope_cache computes them (same expressions, host f32); ops.cu.
RopeConsts make_rope_consts(const RopeConfig& cfg, int n_heads, int head_dim);

// Rotates pair i (of n_rot / 2) of a head row, values (x0, x1) at its two places (a, b: 2i and
// 2i + 1, or i and i + n_rot / 2 in neox mode), into (y0, y1). The reference's angle, operation
// for operation: pos, times theta_scale i times; every step rounded once (no contraction).
__device__ __forceinline__ void rope_rotate(float x0, float x1, int32_t pos, int i, const RopeConsts& c, float& y0,
                                            float& y1) {
    float theta_extrap = (float)pos;
    for (int k = 0; k < i; ++k) theta_extrap = __fmul_rn(theta_extrap, c.theta_scale);
    const float ff = c.freq_factors ? c.freq_factors[i] : 1.0f;
    const float te = __fdiv_rn(theta_extrap, ff);
    const float theta_interp = __fmul_rn(c.freq_scale, te);
    float theta = theta_interp;
    if (c.ext_factor != 0.0f) {
        const float y = __fdiv_rn((float)i - c.corr_lo, fmaxf(0.001f, c.corr_hi - c.corr_lo));  // i0 / 2 == i
        const float mix = (1.0f - fminf(1.0f, fmaxf(0.0f, y))) * c.ext_factor;
        theta = __fadd_rn(__fmul_rn(theta_interp, 1.0f - mix), __fmul_rn(te, mix));
    }
    float s, co;
    sincosf(theta, &s, &co);
    co = __fmul_rn(co, c.mscale);
    s = __fmul_rn(s, c.mscale);
    y0 = __fsub_rn(__fmul_rn(x0, co), __fmul_rn(x1, s));
    y1 = __fadd_rn(__fmul_rn(x0, s), __fmul_rn(x1, co));
}

}  // namespace hearth::backend::cuda_kernels
