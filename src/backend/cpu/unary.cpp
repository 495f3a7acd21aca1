#include "backend/cpu/unary.h"

#include "backend/ref/unary.h"

namespace hearth::backend {

namespace {

SwigluChunksFn find_swiglu_kernel(SimdLevel level) {
    switch (level) {
        case SimdLevel::avx512: return swiglu_kernel_avx512();
        case SimdLevel::avx2: return swiglu_kernel_avx2();
        case SimdLevel::scalar: return nullptr;
    }
    return nullptr;
}

// Pieces of at least this many chunks of 16 per thread: below ~64 KiB of gate + up a split
// costs more in wake-ups than it saves.
constexpr int64_t kSwigluGrainChunks = 512;

}  // namespace

void swiglu_cpu_at(SimdLevel level, ThreadPool& pool, const float* gate, const float* up, float* y, int64_t n) {
    if (n <= 0) return;
    const SwigluChunksFn fn = find_swiglu_kernel(level);
    const int64_t n_chunks = n / 16;
    // A piece [16 b, 16 e) of whole chunks gives the reference's bytes: its chunks are the
    // reference's chunks, and each element depends only on its own inputs.
    pool.parallel_for(n_chunks, kSwigluGrainChunks, [&](int64_t b, int64_t e) {
        if (fn) fn(gate + 16 * b, up + 16 * b, y + 16 * b, 16 * (e - b));
        else swiglu_ref(gate + 16 * b, up + 16 * b, y + 16 * b, 16 * (e - b));
    });
    const int64_t done = 16 * n_chunks;
    if (done < n) swiglu_ref(gate + done, up + done, y + done, n - done);  // < 16 elements: the scalar tail
}

void swiglu_cpu(ThreadPool& pool, const float* gate, const float* up, float* y, int64_t n) {
    swiglu_cpu_at(default_simd_level(), pool, gate, up, y, n);
}

}  // namespace hearth::backend
