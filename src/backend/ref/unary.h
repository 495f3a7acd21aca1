// Element-wise activations over n f32 values (in place allowed).
#pragma once

#include <cstdint>

namespace hearth::backend {

float silu(float x);
float gelu(float x);  // tanh approximation, as ggml's GELU
void swiglu_ref(const float* gate, const float* up, float* y, int64_t n);  // silu(gate) * up
void geglu_ref(const float* gate, const float* up, float* y, int64_t n);   // gelu(gate) * up
void gelu_ref(const float* x, float* y, int64_t n);
void softmax_ref(const float* x, float* y, int64_t n);

}  // namespace hearth::backend
