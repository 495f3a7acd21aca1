// Element-wise activations on the CPU: SIMD per SimdLevel (cpu_features.h), split over the
// thread pool; every result is bit-identical to its backend/ref/unary.h reference.
#pragma once

#include <cstdint>

#include "backend/cpu/cpu_features.h"
#include "base/thread_pool.h"

namespace hearth::backend {

// swiglu_ref (y = silu(gate) * up; in place allowed): whole chunks of 16 (counted from element
// 0, as the reference counts them) run the vector ggml_vexp, split over the pool at multiples
// of 16; the tail of n % 16 elements runs the reference's scalar silu.
void swiglu_cpu(ThreadPool& pool, const float* gate, const float* up, float* y, int64_t n);
// The same at an explicit level (tests, benchmarks); scalar runs swiglu_ref on each piece.
void swiglu_cpu_at(SimdLevel level, ThreadPool& pool, const float* gate, const float* up, float* y, int64_t n);

// Per-level kernel (unary_avx2.cpp, unary_avx512.cpp; nullptr on other targets): swiglu_ref's
// chunk loop over n elements, n a multiple of 16.
using SwigluChunksFn = void (*)(const float* gate, const float* up, float* y, int64_t n);
SwigluChunksFn swiglu_kernel_avx2();
SwigluChunksFn swiglu_kernel_avx512();

}  // namespace hearth::backend
