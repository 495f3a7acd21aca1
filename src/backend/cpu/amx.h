// Intel AMX (Advanced Matrix Extensions) for the CPU matmul's prompt batches: detection, the
// per-process permission, and the matmul driver. The tile kernels (tile_kernels.h: Q4_0, Q2_K,
// Q3_K, Q4_K, Q5_K, Q6_K, each bit-identical to its quant/ vec_dot) live in *_amx.cpp files
// compiled with AMX target flags (cmake/simd_flags.cmake) and are only called after the checks here.
//
// How a matmul runs: activations (already converted to Q8_K, or Q8_0 for Q4_0) are packed once
// per call into groups of 16 tokens in B-tile order; each worker takes bands of 16 weight rows,
// repacks a band into A-tile order in its own scratch (the mmapped weights stay as they are;
// repacking at load would cost 2-2.6x the weight memory for ~4 % of prefill time), and runs the
// band against every token group, two groups per kernel call. Q4_0 rows whose packed activations
// outgrow L2 go in chunks of blocks, each a pass over every band and group (amx.cpp).
//
// AMX state is large (8 KB of tile data), so Linux enables it per process on request
// (arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)); without that, the first tile
// instruction kills the process with SIGILL. The permission covers every thread of the process;
// the tile configuration (LDTILECFG) is per thread, and each worker loads it itself before its
// share of a matmul and releases the tiles after it (tile_kernels.h: AmxTileScope).
#pragma once

#include <cstddef>
#include <cstdint>

#include "base/thread_pool.h"
#include "quant/types.h"

namespace hearth::backend {

// True when this process can run AMX-INT8 tile instructions: the CPU reports AMX-TILE and
// AMX-INT8 (cpuid 7.0 EDX bits 24, 25) and the avx512 level (the kernels' vector part), the OS
// saves tile state (XCR0 bits 17, 18), and the kernel granted the permission. Checked, and the
// permission requested, once per process; immutable after.
bool amx_int8_available();
// amx_int8_available(), unless the environment variable HEARTH_AMX is "0" (for tests and
// benchmarks that compare against the AVX-512 kernels). Read once per process.
bool amx_int8_enabled();

// Weight types with an AMX kernel (bit-identical to quant::traits(type).vec_dot): Q4_0, Q2_K .. Q6_K.
bool has_amx_kernel(quant::QuantType type);
// Fewest prompt tokens for which matmul_cpu prefers the AMX kernel of `type` over the AVX-512
// kernels (measured, see amx.cpp).
int64_t amx_min_tokens(quant::QuantType type);

// Scratch bytes matmul_amx needs (at most, for any pool of up to n_threads threads).
size_t amx_scratch_bytes(quant::QuantType type, int64_t n_in, int64_t n_tokens, int n_threads);

// y[t][o] = vec_dot(w[o], xq[t]) for a weight type with has_amx_kernel; xq: [n_tokens] activation
// rows of the type's vec_dot_type, act_bytes apart (matmul_cpu converts them first); y:
// [n_tokens][n_out]. scratch: amx_scratch_bytes(type, n_in, n_tokens, pool.n_threads()) bytes,
// any alignment. Preconditions: amx_int8_available(); n_in a multiple of the type's block size.
void matmul_amx(ThreadPool& pool, quant::QuantType type, const std::byte* w, size_t row_bytes, const std::byte* xq,
                size_t act_bytes, float* y, int64_t n_in, int64_t n_out, int64_t n_tokens, std::byte* scratch);

}  // namespace hearth::backend
