// Multi-threaded matmul; same contract and numerics as backend/ref/matmul.h (bit-identical:
// every output equals the reference vec_dot over the same converted activation row, at every
// SIMD level, with or without AMX).
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
//
// Kernel forms by token count (dot_kernels.h): a decode step of 2-4 tokens (batched streams)
// takes the 4- and 2-token column tiles, 5-7 tokens one packed group of 8 with the last token
// repeated (types with a packed form; HEARTH_PACK_MIN sets the smallest such step, default 5),
// larger batches the packed or tile form plus leftovers. Weights are read once per step either way.
void matmul_cpu(ThreadPool& pool, quant::QuantType type, const std::byte* w, size_t row_bytes,
                const float* x, float* y, int64_t n_in, int64_t n_out, int64_t n_tokens,
                std::vector<std::byte>& scratch);
// Same with the kernels of `level`, which the CPU must support (tests, benchmarks).
void matmul_cpu(ThreadPool& pool, quant::QuantType type, const std::byte* w, size_t row_bytes,
                const float* x, float* y, int64_t n_in, int64_t n_out, int64_t n_tokens,
                std::vector<std::byte>& scratch, SimdLevel level);

// Whether a matmul may run on the AMX tile kernels (amx.h), which give the same bits.
//   automatic: at the avx512 level, when amx_int8_enabled() (HEARTH_AMX=0 turns it off), the
//              type has an AMX kernel and n_tokens >= amx_min_tokens(type) (prompt batches; a
//              decode step never takes it). The two overloads above use this.
//   off:       never (the AVX-512 kernels).
//   force:     whenever the type has an AMX kernel, for any n_tokens (tests), if
//              amx_int8_available() (even with HEARTH_AMX=0) and level == avx512; else as off.
enum class AmxMode { automatic, off, force };
void matmul_cpu(ThreadPool& pool, quant::QuantType type, const std::byte* w, size_t row_bytes,
                const float* x, float* y, int64_t n_in, int64_t n_out, int64_t n_tokens,
                std::vector<std::byte>& scratch, SimdLevel level, AmxMode amx);

}  // namespace hearth::backend
