// Multi-threaded matmul; same contract and numerics as backend/ref/matmul.h (bit-identical:
// every output equals the reference vec_dot over the same converted activation row, at every
// SIMD level).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "backend/cpu/cpu_features.h"
#include "base/thread_pool.h"
#include "quant/types.h"

namespace hearth::backend {

// `scratch` holds the converted activations; it grows once and is reused across calls.
// Runs the kernels of default_simd_level().
void matmul_cpu(ThreadPool& pool, quant::QuantType type, const std::byte* w, size_t row_bytes,
                const float* x, float* y, int64_t n_in, int64_t n_out, int64_t n_tokens,
                std::vector<std::byte>& scratch);
// Same with the kernels of `level`, which the CPU must support (tests, benchmarks).
void matmul_cpu(ThreadPool& pool, quant::QuantType type, const std::byte* w, size_t row_bytes,
                const float* x, float* y, int64_t n_in, int64_t n_out, int64_t n_tokens,
                std::vector<std::byte>& scratch, SimdLevel level);

}  // namespace hearth::backend
