// Row normalizations over [rows][n] f32 (in place allowed: y may equal x).
#pragma once

#include <cstdint>

namespace hearth::backend {

// y = x / sqrt(mean(x^2) + eps) * w   (w may be null: no weight)
void rms_norm_ref(const float* x, const float* w, float* y, int64_t n, int64_t rows, float eps);
// y = (x - mean) / sqrt(var + eps) * w + b   (w, b may be null)
void layer_norm_ref(const float* x, const float* w, const float* b, float* y, int64_t n, int64_t rows, float eps);

}  // namespace hearth::backend
