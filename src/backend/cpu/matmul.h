// Multi-threaded matmul; same contract and numerics as backend/ref/matmul.h (bit-identical:
// every output is one vec_dot over the same converted activation row).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "base/thread_pool.h"
#include "quant/types.h"

namespace hearth::backend {

// `scratch` holds the converted activations; it grows once and is reused across calls.
void matmul_cpu(ThreadPool& pool, quant::QuantType type, const std::byte* w, size_t row_bytes,
                const float* x, float* y, int64_t n_in, int64_t n_out, int64_t n_tokens,
                std::vector<std::byte>& scratch);

}  // namespace hearth::backend
