// 16 float lanes on x86 for the SIMD kernels of backend/cpu: one zmm (HEARTH_VEC16_AVX512 = 1)
// or two ymm (0; lo = lanes 0-7, hi = lanes 8-15), with the reductions and the vector exp the
// kernels share. Included only by the per-level kernel headers (attention_kernels_x86.h,
// unary_kernels_x86.h), each compiled with its own target flags; everything here has internal
// linkage (see attention_kernels_x86.h for why) and rounds exactly as the reference it names.
#pragma once

#include <immintrin.h>
#include <math.h>

#include <cstdint>

#ifndef HEARTH_VEC16_AVX512
#error "define HEARTH_VEC16_AVX512 (0 or 1) before including vec16_x86.h"
#endif

namespace hearth::backend {
namespace {

inline float f16_to_f32(uint16_t h) { return _cvtsh_ss(h); }
inline __m256i load256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
inline __m128i load128(const void* p) { return _mm_loadu_si128(static_cast<const __m128i*>(p)); }

// ---------------------------------------------------------------------------------------------
// 16 float lanes: one zmm (avx512) or two ymm (avx2; lo = lanes 0-7, hi = lanes 8-15).
#if HEARTH_VEC16_AVX512
struct V16 {
    __m512 v;
};
inline V16 v_zero() { return {_mm512_setzero_ps()}; }
inline V16 v_set1(float x) { return {_mm512_set1_ps(x)}; }
inline V16 v_load(const float* p) { return {_mm512_loadu_ps(p)}; }
inline V16 v_load_f16(const uint16_t* p) { return {_mm512_cvtph_ps(load256(p))}; }
inline void v_store(float* p, V16 a) { _mm512_storeu_ps(p, a.v); }
inline V16 v_add(V16 a, V16 b) { return {_mm512_add_ps(a.v, b.v)}; }
inline V16 v_sub(V16 a, V16 b) { return {_mm512_sub_ps(a.v, b.v)}; }
inline V16 v_mul(V16 a, V16 b) { return {_mm512_mul_ps(a.v, b.v)}; }
inline V16 v_div(V16 a, V16 b) { return {_mm512_div_ps(a.v, b.v)}; }
inline V16 v_max(V16 a, V16 b) { return {_mm512_max_ps(a.v, b.v)}; }
inline V16 v_fma(V16 a, V16 b, V16 c) { return {_mm512_fmadd_ps(a.v, b.v, c.v)}; }
inline V16 v_fnma(V16 a, V16 b, V16 c) { return {_mm512_fnmadd_ps(a.v, b.v, c.v)}; }  // c - a * b, one rounding
// Lanes whose bit is set in `mask` from a, the others from b.
inline V16 v_select(unsigned mask, V16 a, V16 b) { return {_mm512_mask_blend_ps((__mmask16)mask, b.v, a.v)}; }
// 16 int8 -> float (exact).
inline V16 v_from_i8(const int8_t* p) { return {_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(load128(p)))}; }
// 16 4-bit codes (one per byte) minus 8 -> float (exact).
inline V16 v_from_codes(__m128i codes) {
    return {_mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_cvtepu8_epi32(codes), _mm512_set1_epi32(8)))};
}
// int32 sums of 4 groups of 4 (lanes 0-3, 4-7, 8-11, 12-15) -> float (exact below 2^24).
inline V16 v_from_i32x4(__m128i a, __m128i b, __m128i c, __m128i d) {
    __m512i x = _mm512_castsi128_si512(a);
    x = _mm512_inserti32x4(x, b, 1);
    x = _mm512_inserti32x4(x, c, 2);
    x = _mm512_inserti32x4(x, d, 3);
    return {_mm512_cvtepi32_ps(x)};
}
inline V16 v_from_halves(__m256 lo, __m256 hi) {
    return {_mm512_castpd_ps(_mm512_insertf64x4(_mm512_castpd256_pd512(_mm256_castps_pd(lo)), _mm256_castps_pd(hi), 1))};
}
inline __m256 v_lo(V16 a) { return _mm512_castps512_ps256(a.v); }
inline __m256 v_hi(V16 a) { return _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a.v), 1)); }
#else
struct V16 {
    __m256 lo, hi;
};
inline V16 v_zero() { return {_mm256_setzero_ps(), _mm256_setzero_ps()}; }
inline V16 v_set1(float x) { return {_mm256_set1_ps(x), _mm256_set1_ps(x)}; }
inline V16 v_load(const float* p) { return {_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8)}; }
inline V16 v_load_f16(const uint16_t* p) { return {_mm256_cvtph_ps(load128(p)), _mm256_cvtph_ps(load128(p + 8))}; }
inline void v_store(float* p, V16 a) {
    _mm256_storeu_ps(p, a.lo);
    _mm256_storeu_ps(p + 8, a.hi);
}
inline V16 v_add(V16 a, V16 b) { return {_mm256_add_ps(a.lo, b.lo), _mm256_add_ps(a.hi, b.hi)}; }
inline V16 v_sub(V16 a, V16 b) { return {_mm256_sub_ps(a.lo, b.lo), _mm256_sub_ps(a.hi, b.hi)}; }
inline V16 v_mul(V16 a, V16 b) { return {_mm256_mul_ps(a.lo, b.lo), _mm256_mul_ps(a.hi, b.hi)}; }
inline V16 v_div(V16 a, V16 b) { return {_mm256_div_ps(a.lo, b.lo), _mm256_div_ps(a.hi, b.hi)}; }
inline V16 v_max(V16 a, V16 b) { return {_mm256_max_ps(a.lo, b.lo), _mm256_max_ps(a.hi, b.hi)}; }
inline V16 v_fma(V16 a, V16 b, V16 c) { return {_mm256_fmadd_ps(a.lo, b.lo, c.lo), _mm256_fmadd_ps(a.hi, b.hi, c.hi)}; }
inline V16 v_fnma(V16 a, V16 b, V16 c) {
    return {_mm256_fnmadd_ps(a.lo, b.lo, c.lo), _mm256_fnmadd_ps(a.hi, b.hi, c.hi)};
}
inline __m256 mask8(unsigned m) {
    const __m256i bits = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    return _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32((int)m), bits), bits));
}
inline V16 v_select(unsigned mask, V16 a, V16 b) {
    return {_mm256_blendv_ps(b.lo, a.lo, mask8(mask & 0xff)), _mm256_blendv_ps(b.hi, a.hi, mask8(mask >> 8))};
}
inline V16 v_from_i8(const int8_t* p) {
    const __m128i x = load128(p);
    return {_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(x)), _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(x, 8)))};
}
inline V16 v_from_codes(__m128i codes) {
    const __m256i eight = _mm256_set1_epi32(8);
    return {_mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_cvtepu8_epi32(codes), eight)),
            _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_cvtepu8_epi32(_mm_srli_si128(codes, 8)), eight))};
}
inline V16 v_from_i32x4(__m128i a, __m128i b, __m128i c, __m128i d) {
    return {_mm256_cvtepi32_ps(_mm256_set_m128i(b, a)), _mm256_cvtepi32_ps(_mm256_set_m128i(d, c))};
}
inline V16 v_from_halves(__m256 lo, __m256 hi) { return {lo, hi}; }
inline __m256 v_lo(V16 a) { return a.lo; }
inline __m256 v_hi(V16 a) { return a.hi; }
#endif

// quant::detail::hsum8 / ggml's hsum_float_8: r[i] = a[i+4] + a[i], then (r0 + r2) + (r1 + r3).
inline float hsum8(__m256 a) {
    __m128 r = _mm_add_ps(_mm256_extractf128_ps(a, 1), _mm256_castps256_ps128(a));
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    r = _mm_add_ss(r, _mm_movehdup_ps(r));
    return _mm_cvtss_f32(r);
}
// hsum16 (backend/ref/unary.h): h[i] = a[i+8] + a[i], then hsum8(h).
inline float v_hsum16(V16 a) { return hsum8(_mm256_add_ps(v_hi(a), v_lo(a))); }

// ---------------------------------------------------------------------------------------------
// ggml_vexp (backend/ref/unary.cpp) on 16 lanes: the same fmas; ldexp(j, n) for |n| <= 192,
// 0 or inf beyond (by the sign of n). The polynomial once over V16; ldexp per instruction set.
inline void exp_poly(V16 x, V16& n, V16& j) {
    const V16 r = v_set1(0x1.8p23f);
    n = v_sub(v_fma(x, v_set1(0x1.715476p+0f), r), r);
    const V16 b = v_fnma(n, v_set1(0x1.7f7d1cp-20f), v_fnma(n, v_set1(0x1.62e4p-1f), x));
    const V16 u = v_mul(b, b);
    j = v_fma(v_fma(v_fma(v_set1(0x1.0e4020p-7f), b, v_set1(0x1.573e2ep-5f)), u,
                    v_fma(v_set1(0x1.555e66p-3f), b, v_set1(0x1.fffdb6p-2f))),
              u, v_fma(v_set1(0x1.ffffecp-1f), b, v_set1(1.0f)));
}

#if HEARTH_VEC16_AVX512
inline V16 v_exp(V16 x) {
    V16 nv, jv;
    exp_poly(x, nv, jv);
    const __m512 n = nv.v;
    const __m512 res = _mm512_scalef_ps(jv.v, n);  // j * 2^n, rounded once (= ldexp)
    const __mmask16 big = _mm512_cmp_ps_mask(_mm512_abs_ps(n), _mm512_set1_ps(192.0f), _CMP_GT_OQ);
    if (!big) return {res};
    const __mmask16 neg = _mm512_cmp_ps_mask(n, _mm512_setzero_ps(), _CMP_LE_OQ);
    const __m512 alt = _mm512_mask_blend_ps(neg, _mm512_set1_ps(INFINITY), _mm512_setzero_ps());
    return {_mm512_mask_blend_ps(big, res, alt)};
}
#else
// ldexp(j, n) without scalef: j (in about [0.7, 1.5]) times 2^n1 is exact and normal for n1 in
// {-100, 0, 100}; times 2^n2 (n2 = n - n1 in [-126, 127], a normal power of two) rounds once, to
// ldexp's correctly rounded result, subnormal or not.
inline __m256 ldexp8(__m256 j, __m256 n) {
    const __m256i ni = _mm256_cvtps_epi32(n);
    const __m256i lo_n = _mm256_cmpgt_epi32(_mm256_set1_epi32(-126), ni);
    const __m256i hi_n = _mm256_cmpgt_epi32(ni, _mm256_set1_epi32(127));
    const __m256i n1 = _mm256_or_si256(_mm256_and_si256(lo_n, _mm256_set1_epi32(-100)),
                                       _mm256_and_si256(hi_n, _mm256_set1_epi32(100)));
    const __m256i n2 = _mm256_sub_epi32(ni, n1);
    const __m256 p1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, _mm256_set1_epi32(127)), 23));
    const __m256 p2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, _mm256_set1_epi32(127)), 23));
    const __m256 res = _mm256_mul_ps(_mm256_mul_ps(j, p1), p2);
    const __m256 abs_n = _mm256_and_ps(n, _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff)));
    const __m256 big = _mm256_cmp_ps(abs_n, _mm256_set1_ps(192.0f), _CMP_GT_OQ);
    if (_mm256_testz_ps(big, big)) return res;
    const __m256 neg = _mm256_cmp_ps(n, _mm256_setzero_ps(), _CMP_LE_OQ);
    const __m256 alt = _mm256_blendv_ps(_mm256_set1_ps(INFINITY), _mm256_setzero_ps(), neg);
    return _mm256_blendv_ps(res, alt, big);
}
inline V16 v_exp(V16 x) {
    V16 n, j;
    exp_poly(x, n, j);
    return {ldexp8(j.lo, n.lo), ldexp8(j.hi, n.hi)};
}
#endif

}  // namespace
}  // namespace hearth::backend
