// The x86 kernels of unary.h and norm.h, written once and compiled once per SIMD level: only
// unary_avx2.cpp / unary_avx512.cpp (HEARTH_UNARY_SWIGLU) and norm_avx2.cpp / norm_avx512.cpp
// (HEARTH_UNARY_RMS_NORM) include it, each with its own target flags and HEARTH_VEC16_AVX512 set
// to 0 or 1. Internal linkage only, no STL (see attention_kernels_x86.h for why). Compiled with
// -ffp-contract=off: every float operation is the reference's, one for one.
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include <cstdint>

#ifndef HEARTH_VEC16_AVX512
#error "define HEARTH_VEC16_AVX512 (0 or 1) before including unary_kernels_x86.h"
#endif

#if HEARTH_VEC16_AVX512 && defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include "backend/cpu/vec16_x86.h"

namespace hearth::backend {
namespace {

#ifdef HEARTH_UNARY_SWIGLU
// swiglu_ref's chunk loop: y = x / (1 + ggml_vexp(0 - x)) * up per lane (n % 16 == 0).
void swiglu_chunks(const float* gate, const float* up, float* y, int64_t n) {
    const V16 one = v_set1(1.0f), zero = v_zero();
    for (int64_t i = 0; i < n; i += 16) {
        const V16 x = v_load(gate + i);
        const V16 e = v_exp(v_sub(zero, x));
        v_store(y + i, v_mul(v_div(x, v_add(one, e)), v_load(up + i)));
    }
}
#endif

#ifdef HEARTH_UNARY_RMS_NORM
// rms_norm_ref sums (double)(x * x) one element after the other. Its partial sums are all
// exact (so any order gives the same double) while they stay below 2^(L + 53), L the lowest
// bit any term or the running sum can have. Blocks of 64 squares are therefore summed in
// double by a vector tree and added at once when that estimate of the running sum plus the
// block stays below 2^(L + 53) (1 - 2^-45) (the estimate's relative error is below 2^-49);
// otherwise (a tiny term, a carry past the sum's last bit, inf or NaN) the block runs the
// reference's sequential adds.
constexpr int kNormBlock = 64;

inline double pow2(int k) {  // 2^k for -1022 <= k <= 1023
    const uint64_t bits = (uint64_t)(k + 1023) << 52;
    double d;
    memcpy(&d, &bits, 8);
    return d;
}

// Exponent of the lowest bit a double p > 0 has set.
inline int lowest_bit_f64(double p) {
    uint64_t bits;
    memcpy(&bits, &p, 8);
    const int e = (int)(bits >> 52) & 0x7ff;
    const uint64_t m = (bits & ((1ull << 52) - 1)) | (e ? 1ull << 52 : 0);
    return (e ? e : 1) - 1075 + __builtin_ctzll(m);
}

#if HEARTH_VEC16_AVX512
// 64 squares (rounded to float, as the reference rounds them): their sum in double and the
// smallest bit pattern among the nonzero ones (0x7fffffff when all are zero).
inline double block_squares(const float* x, float* sq, uint32_t* min_bits) {
    __m512d s0 = _mm512_setzero_pd(), s1 = _mm512_setzero_pd();
    __m512i mn = _mm512_set1_epi32(0x7fffffff);
    for (int k = 0; k < kNormBlock; k += 16) {
        const __m512 v = _mm512_loadu_ps(x + k);
        const __m512 q = _mm512_mul_ps(v, v);
        _mm512_storeu_ps(sq + k, q);
        s0 = _mm512_add_pd(s0, _mm512_cvtps_pd(_mm512_castps512_ps256(q)));
        s1 = _mm512_add_pd(s1, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(q), 1))));
        const __m512i qi = _mm512_castps_si512(q);
        mn = _mm512_mask_min_epu32(mn, _mm512_test_epi32_mask(qi, qi), mn, qi);
    }
    *min_bits = _mm512_reduce_min_epu32(mn);
    return _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
}
#else
inline double block_squares(const float* x, float* sq, uint32_t* min_bits) {
    __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
    __m256i mn = _mm256_set1_epi32(0x7fffffff);
    const __m256i zero = _mm256_setzero_si256(), big = _mm256_set1_epi32(0x7fffffff);
    for (int k = 0; k < kNormBlock; k += 8) {
        const __m256 v = _mm256_loadu_ps(x + k);
        const __m256 q = _mm256_mul_ps(v, v);
        _mm256_storeu_ps(sq + k, q);
        s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(q)));
        s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(q, 1)));
        const __m256i qi = _mm256_castps_si256(q);
        mn = _mm256_min_epu32(mn, _mm256_blendv_epi8(qi, big, _mm256_cmpeq_epi32(qi, zero)));
    }
    alignas(32) uint32_t m[8];
    _mm256_store_si256(reinterpret_cast<__m256i*>(m), mn);
    uint32_t r = m[0];
    for (int i = 1; i < 8; ++i) r = m[i] < r ? m[i] : r;
    *min_bits = r;
    alignas(32) double d[4];
    _mm256_store_pd(d, _mm256_add_pd(s0, s1));
    return (d[0] + d[1]) + (d[2] + d[3]);
}
#endif

// rms_norm_ref's sum of squares, bit for bit.
inline double sum_squares(const float* x, int64_t n) {
    double p = 0.0;
    int64_t i = 0;
    alignas(64) float sq[kNormBlock];
    for (; i + kNormBlock <= n; i += kNormBlock) {
        uint32_t min_bits;
        const double bs = block_squares(x + i, sq, &min_bits);
        // A nonzero float square f = m 2^(E - 150), m < 2^24 an integer (E = 0: subnormal, 2^-149).
        const int e = (int)(min_bits >> 23);
        int lo = min_bits == 0x7fffffffu ? 1000 : (e ? e : 1) - 150;
        if (p > 0.0) {
            const int lp = lowest_bit_f64(p);
            lo = lp < lo ? lp : lo;
        }
        const int k = lo + 53;
        const double t = p + bs;
        if (k > 1023 || t < pow2(k) * (1.0 - 0x1p-45)) {  // NaN and inf fail this test
            p = t;
            continue;
        }
        for (int l = 0; l < kNormBlock; ++l) p += (double)sq[l];
    }
    for (; i < n; ++i) p += (double)(x[i] * x[i]);
    return p;
}

// rms_norm_ref, bit for bit.
void rms_norm_rows(const float* x, const float* w, float* y, int64_t n, int64_t rows, float eps) {
    for (int64_t r = 0; r < rows; ++r) {
        const float* xr = x + r * n;
        float* yr = y + r * n;
        const double sum = sum_squares(xr, n);
        const float scale = 1.0f / sqrtf((float)(sum / n) + eps);
        const V16 sv = v_set1(scale);
        int64_t i = 0;
        if (w) {
            for (; i + 16 <= n; i += 16) v_store(yr + i, v_mul(v_mul(v_load(xr + i), sv), v_load(w + i)));
            for (; i < n; ++i) yr[i] = xr[i] * scale * w[i];
        } else {
            // The reference multiplies by 1.0f, which changes no float.
            for (; i + 16 <= n; i += 16) v_store(yr + i, v_mul(v_load(xr + i), sv));
            for (; i < n; ++i) yr[i] = xr[i] * scale;
        }
    }
}
#endif

}  // namespace
}  // namespace hearth::backend

#if HEARTH_VEC16_AVX512 && defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
