#include "backend/cpu/norm.h"

#include <algorithm>

#include "backend/ref/norm.h"

namespace hearth::backend {

namespace {

RmsNormFn find_rms_norm_kernel(SimdLevel level) {
    switch (level) {
        case SimdLevel::avx512: return rms_norm_kernel_avx512();
        case SimdLevel::avx2: return rms_norm_kernel_avx2();
        case SimdLevel::scalar: return nullptr;
    }
    return nullptr;
}

}  // namespace

void rms_norm_cpu_at(SimdLevel level, ThreadPool& pool, const float* x, const float* w, float* y, int64_t n,
                     int64_t rows, float eps) {
    if (n <= 0 || rows <= 0) return;
    const RmsNormFn fn = find_rms_norm_kernel(level);
    // At least ~8K elements per piece: a split of fewer costs more in wake-ups than it saves.
    const int64_t grain = std::max<int64_t>(1, 8192 / n);
    pool.parallel_for(rows, grain, [&](int64_t b, int64_t e) {
        if (fn) fn(x + b * n, w, y + b * n, n, e - b, eps);
        else rms_norm_ref(x + b * n, w, y + b * n, n, e - b, eps);
    });
}

void rms_norm_cpu(ThreadPool& pool, const float* x, const float* w, float* y, int64_t n, int64_t rows, float eps) {
    rms_norm_cpu_at(default_simd_level(), pool, x, w, y, n, rows, eps);
}

}  // namespace hearth::backend
