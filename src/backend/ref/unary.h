// Element-wise activations over n f32 values (in place allowed).
#pragma once

#include <cstdint>

namespace hearth::backend {

float silu(float x);
// exp as ggml's vectorised CPU kernels compute it (ggml_v_expf, AVX-512 build): a degree-5
// polynomial on x - n ln2 scaled by 2^n, max error ~1.5 ulp. ggml uses it for SiLU and softmax on
// whole 16-element chunks and libm expf on the tail, so matching it keeps activations identical.
float ggml_vexp(float x);
// _mm512_reduce_add_ps of 16 float lanes: h[i] = a[i+8] + a[i], then 4, 2, 1 the same way.
float hsum16(const float a[16]);
float gelu(float x);  // tanh approximation, as ggml's GELU
// silu(gate) * up, as ggml_vec_swiglu_f32: chunks of 16 use ggml_vexp, the tail std::exp.
void swiglu_ref(const float* gate, const float* up, float* y, int64_t n);
// x = min(gate, limit), u = clamp(up, -limit, limit): y = x / (1 + exp(-alpha x)) * (u + 1)
// (gpt-oss; ggml's swiglu_oai, same expression so the rounding matches).
void swiglu_oai_ref(const float* gate, const float* up, float* y, int64_t n, float alpha, float limit);
// y[r][i] += b[i] over [rows][n].
void add_bias_ref(float* y, const float* b, int64_t rows, int64_t n);
void geglu_ref(const float* gate, const float* up, float* y, int64_t n);   // gelu(gate) * up
void gelu_ref(const float* x, float* y, int64_t n);
// ggml_vec_soft_max_f32 then the scale: exps of x - max (ggml_vexp on chunks of 16, each chunk
// summed with hsum16, std::exp on the tail), summed in double, times the f32 inverse.
void softmax_ref(const float* x, float* y, int64_t n);

}  // namespace hearth::backend
