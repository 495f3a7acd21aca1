// The activation quantizers of the x86 kernels (DotKernels::quantize), bit-identical to the
// reference ones matmul_ref uses (backend/ref/matmul.cpp: quantize_activation_row). Part of
// dot_kernels_x86.h: included only by it, once per SIMD level, under its rules (internal
// linkage, intrinsics only; see the top of dot_kernels_x86.h).
#pragma once

#ifndef HEARTH_KERNEL_VNNI
#error "include dot_kernels_x86.h, not this file"
#endif

#include "quant/q8_0.h"
#include "quant/q8_1.h"
#include "quant/q8_k.h"

namespace hearth::backend {
namespace {

// Largest of the 8 lanes.
inline float hmax8(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_extractf128_ps(v, 1), _mm256_castps256_ps128(v));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

// Rounds 32 floats scaled by s to nearest (ties to even, as cvtps under the default MXCSR) and
// stores them as int8 with saturation (callers keep |x * s| <= 127.5).
inline void store_rounded_i8(const float* x, __m256 s, int8_t* dst) {
    const __m256i a = _mm256_cvtps_epi32(_mm256_mul_ps(s, _mm256_loadu_ps(x)));
    const __m256i b = _mm256_cvtps_epi32(_mm256_mul_ps(s, _mm256_loadu_ps(x + 8)));
    const __m256i c = _mm256_cvtps_epi32(_mm256_mul_ps(s, _mm256_loadu_ps(x + 16)));
    const __m256i d = _mm256_cvtps_epi32(_mm256_mul_ps(s, _mm256_loadu_ps(x + 24)));
    const __m256i packed = _mm256_packs_epi16(_mm256_packs_epi32(a, b), _mm256_packs_epi32(c, d));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst),
                        _mm256_permutevar8x32_epi32(packed, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
}

// quant::quantize_row_q8_k: d = max / -127 with max the first value of largest magnitude,
// q = nearest_int(x * (-127 / max)) capped at 127 (the products stay within [-127.00002, 127.00002],
// so saturating to int8 is the same cap), bsums of 16.
void quantize_q8_k(const float* x, std::byte* dst, int64_t n) {
    auto* y = reinterpret_cast<BlockQ8_K*>(dst);
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    for (int64_t i = 0; i < n / 256; ++i) {
        const float* xb = x + i * 256;
        __m256 vmax = _mm256_setzero_ps();
        for (int j = 0; j < 256; j += 8) vmax = _mm256_max_ps(vmax, _mm256_and_ps(abs_mask, _mm256_loadu_ps(xb + j)));
        const float amax = hmax8(vmax);
        BlockQ8_K& b = y[i];
        if (!amax) {
            b.d = 0;
            std::memset(b.qs, 0, sizeof b.qs);
            std::memset(b.bsums, 0, sizeof b.bsums);
            continue;
        }
        int first = 0;
        for (int j = 0; j < 256; j += 8) {
            const __m256 eq = _mm256_cmp_ps(_mm256_and_ps(abs_mask, _mm256_loadu_ps(xb + j)), _mm256_set1_ps(amax), _CMP_EQ_OQ);
            const int mask = _mm256_movemask_ps(eq);
            if (mask) {
                first = j + __builtin_ctz((unsigned)mask);
                break;
            }
        }
        const float iscale = -127.f / xb[first];
        const __m256 s = _mm256_set1_ps(iscale);
        for (int j = 0; j < 256; j += 32) store_rounded_i8(xb + j, s, b.qs + j);
        for (int g = 0; g < 16; ++g) {
            // Sums of 16 quants: maddubs(1, q) pairs, then madd pairs of pairs, in int32.
            const __m128i q = load128(b.qs + 16 * g);
            const __m128i s4 = _mm_madd_epi16(_mm_maddubs_epi16(_mm_set1_epi8(1), q), _mm_set1_epi16(1));
            const __m128i s2 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4E));
            b.bsums[g] = (int16_t)_mm_cvtsi128_si32(_mm_add_epi32(s2, _mm_shuffle_epi32(s2, 0xB1)));
        }
        b.d = 1 / iscale;
    }
}

// quant::quantize_row_q8_0_x86: d = fp16(amax / 127), q = round_half_even(x * (127 / amax)).
void quantize_q8_0(const float* x, std::byte* dst, int64_t n) {
    auto* y = reinterpret_cast<BlockQ8_0*>(dst);
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    for (int64_t i = 0; i < n / 32; ++i) {
        const float* xb = x + i * 32;
        __m256 vmax = _mm256_and_ps(abs_mask, _mm256_loadu_ps(xb));
        for (int j = 8; j < 32; j += 8) vmax = _mm256_max_ps(vmax, _mm256_and_ps(abs_mask, _mm256_loadu_ps(xb + j)));
        const float amax = hmax8(vmax);
        y[i].d = _cvtss_sh(amax / 127.f, _MM_FROUND_TO_NEAREST_INT);
        const float id = amax != 0.0f ? 127.f / amax : 0.0f;
        store_rounded_i8(xb, _mm256_set1_ps(id), y[i].qs);
    }
}

// quant::quantize_row_q8_1_x86: as quantize_q8_0 (d = fp16(amax / 127), q = round_half_even(x *
// (127 / amax))), plus s = fp16(d * sum(q)) with d the unrounded float amax / 127.
void quantize_q8_1(const float* x, std::byte* dst, int64_t n) {
    auto* y = reinterpret_cast<quant::BlockQ8_1*>(dst);
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    for (int64_t i = 0; i < n / 32; ++i) {
        const float* xb = x + i * 32;
        __m256 vmax = _mm256_and_ps(abs_mask, _mm256_loadu_ps(xb));
        for (int j = 8; j < 32; j += 8) vmax = _mm256_max_ps(vmax, _mm256_and_ps(abs_mask, _mm256_loadu_ps(xb + j)));
        const float amax = hmax8(vmax);
        const float d = amax / 127.f;
        y[i].d = _cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT);
        const float id = amax != 0.0f ? 127.f / amax : 0.0f;
        store_rounded_i8(xb, _mm256_set1_ps(id), y[i].qs);
        const __m256i s8 = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), load256(y[i].qs)),
                                             _mm256_set1_epi16(1));
        const __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s8), _mm256_extracti128_si256(s8, 1));
        const __m128i s2 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4E));
        const int sum = _mm_cvtsi128_si32(_mm_add_epi32(s2, _mm_shuffle_epi32(s2, 0xB1)));
        y[i].s = _cvtss_sh(d * (float)sum, _MM_FROUND_TO_NEAREST_INT);
    }
}

#if HEARTH_KERNEL_VNNI
// DotKernels::pack of Q8_0's packed kernel (VNNI level only): kPackTokens Q8_0 rows of n elements ->
// [n / 32] PackedQ8_0Pairsx8 (dot_kernels.h). Quants are copied as they are; the group sums are
// exact (|sum| <= 4 * 128).
void pack_q8_0_pairs_x8(const std::byte* const* x, int64_t n, std::byte* dst) {
    const int64_t nb = n / 32;
    auto* out = reinterpret_cast<PackedQ8_0Pairsx8*>(dst);
    for (int64_t i = 0; i < nb; ++i) {
        PackedQ8_0Pairsx8& p = out[i];
        for (int t = 0; t < kPackTokens; ++t) {
            const BlockQ8_0& b = reinterpret_cast<const BlockQ8_0*>(x[t])[i];
            p.d[t][0] = p.d[t][1] = f16_to_f32(b.d);
            const __m256i q = load256(b.qs);
            // 8 group sums (int32 lane g: elements 4g..4g+3), times -128.
            const __m256i gsum = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), q), _mm256_set1_epi16(1));
            alignas(32) int32_t neg[8];
            _mm256_store_si256(reinterpret_cast<__m256i*>(neg),
                               _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(gsum, 7)));
            for (int k = 0; k < 4; ++k) {
                std::memcpy(p.qs[k][t], b.qs + 8 * k, 8);
                std::memcpy(p.neg128gsum[k][t], neg + 2 * k, 8);
            }
        }
    }
}
#endif

}  // namespace
}  // namespace hearth::backend
