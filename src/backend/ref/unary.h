// Element-wise activations over n f32 values (in place allowed).
#pragma once

#include <cstdint>

namespace hearth::backend {

float silu(float x);
float gelu(float x);  // tanh approximation, as ggml's GELU
void swiglu_ref(const float* gate, const float* up, float* y, int64_t n);  // silu(gate) * up
// x = min(gate, limit), u = clamp(up, -limit, limit): y = x / (1 + exp(-alpha x)) * (u + 1)
// (gpt-oss; ggml's swiglu_oai, same expression so the rounding matches).
void swiglu_oai_ref(const float* gate, const float* up, float* y, int64_t n, float alpha, float limit);
// y[r][i] += b[i] over [rows][n].
void add_bias_ref(float* y, const float* b, int64_t rows, int64_t n);
void geglu_ref(const float* gate, const float* up, float* y, int64_t n);   // gelu(gate) * up
void gelu_ref(const float* x, float* y, int64_t n);
void softmax_ref(const float* x, float* y, int64_t n);

}  // namespace hearth::backend
