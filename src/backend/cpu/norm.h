// Row normalizations on the CPU: SIMD per SimdLevel (cpu_features.h), rows split over the
// thread pool; bit-identical to backend/ref/norm.h.
#pragma once

#include <cstdint>

#include "backend/cpu/cpu_features.h"
#include "base/thread_pool.h"

namespace hearth::backend {

// rms_norm_ref over [rows][n] (in place allowed), bit for bit: the double sum of the float
// squares keeps the reference's sequential rounding (unary_kernels_x86.h says how).
void rms_norm_cpu(ThreadPool& pool, const float* x, const float* w, float* y, int64_t n, int64_t rows, float eps);
// The same at an explicit level (tests, benchmarks); scalar runs rms_norm_ref.
void rms_norm_cpu_at(SimdLevel level, ThreadPool& pool, const float* x, const float* w, float* y, int64_t n,
                     int64_t rows, float eps);

// Per-level kernel (norm_avx2.cpp, norm_avx512.cpp; nullptr on other targets), rms_norm_ref's contract.
using RmsNormFn = void (*)(const float* x, const float* w, float* y, int64_t n, int64_t rows, float eps);
RmsNormFn rms_norm_kernel_avx2();
RmsNormFn rms_norm_kernel_avx512();

}  // namespace hearth::backend
