// Tile and column kernels of the K-quant types Q5_K, Q3_K, IQ4_XS and Q2_K, and Q2_K's packed
// kernel (dot_kernels.h). Part of dot_kernels_x86.h: included only by it, after its helpers
// (load256, dot_u8_s8, dot_s16, sum_lanes4, hsum8, prefetch_ahead), once per SIMD level, under
// its rules (internal linkage, intrinsics only; see the top of dot_kernels_x86.h).
//
// Each kernel keeps the float operations of its quant/ reference vec_dot one for one; only the
// integer partial sums (exact) are formed differently. Tile loop order: rows outer, so that only
// the C integer accumulators of one row are live while the row's codes, decoded once, serve C
// tokens; the activations are read from L1 as memory operands.
//
// No packed form for Q5_K, Q3_K and IQ4_XS: their reference keeps 8 float lanes per output over
// a whole super-block with a scale per 32 (16) elements, so with tokens in the SIMD lanes each
// 4-element group would still need its own scale multiply: no fewer instructions than the tile.
#pragma once

#ifndef HEARTH_KERNEL_VNNI
#error "include dot_kernels_x86.h, not this file"
#endif

#include "quant/iq4_xs.h"
#include "quant/q2_k.h"
#include "quant/q3_k.h"
#include "quant/q5_k.h"

namespace hearth::backend {
namespace {

using quant::BlockIQ4_XS;
using quant::BlockQ2_K;
using quant::BlockQ3_K;
using quant::BlockQ5_K;

// Bit j (0..7) of every byte of v moved to bit `to` of that byte; all other bits cleared.
// (16-bit shifts: the bits that cross into the neighbouring byte land outside the mask.)
template <int to>
inline __m256i byte_bit(__m256i v, int j) {
    const __m256i s = j < to ? _mm256_slli_epi16(v, to - j) : _mm256_srli_epi16(v, j - to);
    return _mm256_and_si256(s, _mm256_set1_epi8((char)(1 << to)));
}

// {sum a, sum b, sum c, sum d} of four vectors of 4 int32.
inline __m128i sum4_epi32(__m128i a, __m128i b, __m128i c, __m128i d) {
    return _mm_hadd_epi32(_mm_hadd_epi32(a, b), _mm_hadd_epi32(c, d));
}

// int16 shuffle control that puts int16 element `lo` of a 128-bit lane in every int16 of the low
// lane and element `hi` in every int16 of the high lane (for vectors whose lanes are equal).
inline __m256i pick16(int lo, int hi) {
    return _mm256_set_m128i(_mm_set1_epi16((short)((2 * hi) | ((2 * hi + 1) << 8))),
                            _mm_set1_epi16((short)((2 * lo) | ((2 * lo + 1) << 8))));
}

// ---------------------------------------------------------------------------------------------
// Q5_K x Q8_K (quant::vec_dot_q5_k, ggml's AVX2 order): per super-block 8 int32 lanes of
// scale * code * q8 (element e in lane (e % 32) / 4), acc[l] = fma(d_y * d_x, float(lane), acc[l]);
// the mins go to one scalar per output, summs = fma(-d_y * dmin_x, float(sum of min * bsum32),
// summs), vectorized across groups of 4 outputs; result hsum8(acc) + summs.
template <int R, int C>
void dot_q5_k(const std::byte* const* w, const std::byte* const* x, int64_t n, float* out) {
    static_assert((R * C) % 4 == 0);
    constexpr int P = R * C, G = P / 4;
    const BlockQ5_K* wr[R];
    const BlockQ8_K* xc[C];
    for (int r = 0; r < R; ++r) wr[r] = reinterpret_cast<const BlockQ5_K*>(w[r]);
    for (int c = 0; c < C; ++c) xc[c] = reinterpret_cast<const BlockQ8_K*>(x[c]);
    __m256 acc[P];
    __m128 summs[G];
    for (int p = 0; p < P; ++p) acc[p] = _mm256_setzero_ps();
    for (int g = 0; g < G; ++g) summs[g] = _mm_setzero_ps();
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const int64_t nb = n / 256;
    for (int64_t i = 0; i < nb; ++i) {
        for (int r = 0; r < R; ++r) prefetch_ahead(wr[r] + i);
        float dy[C];
        __m128i bsum32[C];  // [8] int16: sums of the 32 activations of each sub-block
        for (int c = 0; c < C; ++c) {
            dy[c] = xc[c][i].d;
            bsum32[c] = _mm_hadd_epi16(load128(xc[c][i].bsums), load128(xc[c][i].bsums + 8));
        }
        float dminx[R];
        __m128i summin[P];  // [4] int32 per output: partial sums of min * bsum32
        for (int r = 0; r < R; ++r) {
            const BlockQ5_K& b = wr[r][i];
            // ggml's utmp shuffle: bytes 0-7 of sm the 8 sub-block scales, bytes 8-15 the mins.
            uint32_t u[3], sm[4];
            std::memcpy(u, b.scales, 12);
            sm[3] = ((u[2] >> 4) & 0x0f0f0f0f) | (((u[1] >> 6) & 0x03030303) << 4);
            sm[2] = u[1] & 0x3f3f3f3f;
            sm[1] = (u[2] & 0x0f0f0f0f) | (((u[0] >> 6) & 0x03030303) << 4);
            sm[0] = u[0] & 0x3f3f3f3f;
            const __m128i mins = _mm_cvtepu8_epi16(_mm_set_epi32(0, 0, (int)sm[3], (int)sm[2]));
            const __m256i scales =
                _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_set_epi32(0, 0, (int)sm[1], (int)sm[0])));
            const __m256i qh = load256(b.qh);
            __m256i lanes[C];
            for (int c = 0; c < C; ++c) lanes[c] = _mm256_setzero_si256();
            for (int g = 0; g < 4; ++g) {
                // Sub-blocks 2g (low nibbles) and 2g + 1 (high nibbles): 5-bit codes 0..31.
                const __m256i q = load256(b.qs + 32 * g);
                const __m256i lo = _mm256_or_si256(_mm256_and_si256(q, m4), byte_bit<4>(qh, 2 * g));
                const __m256i hi =
                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), m4), byte_bit<4>(qh, 2 * g + 1));
                const __m256i sc_lo = _mm256_shuffle_epi8(scales, pick16(2 * g, 2 * g));
                const __m256i sc_hi = _mm256_shuffle_epi8(scales, pick16(2 * g + 1, 2 * g + 1));
                for (int c = 0; c < C; ++c) {
                    const int8_t* y = xc[c][i].qs + 64 * g;
                    lanes[c] = dot_s16(lanes[c], _mm256_maddubs_epi16(lo, load256(y)), sc_lo);
                    lanes[c] = dot_s16(lanes[c], _mm256_maddubs_epi16(hi, load256(y + 32)), sc_hi);
                }
            }
            const float dx = f16_to_f32(b.d);
            dminx[r] = f16_to_f32(b.dmin);
            for (int c = 0; c < C; ++c) {
                acc[r * C + c] =
                    _mm256_fmadd_ps(_mm256_set1_ps(dy[c] * dx), _mm256_cvtepi32_ps(lanes[c]), acc[r * C + c]);
                summin[r * C + c] = _mm_madd_epi16(mins, bsum32[c]);
            }
        }
        for (int g = 0; g < G; ++g) {
            const int p = 4 * g;
            float dmin[4];
            for (int k = 0; k < 4; ++k) dmin[k] = -dy[(p + k) % C] * dminx[(p + k) / C];
            const __m128i s = sum4_epi32(summin[p], summin[p + 1], summin[p + 2], summin[p + 3]);
            summs[g] = _mm_fmadd_ps(_mm_loadu_ps(dmin), _mm_cvtepi32_ps(s), summs[g]);
        }
    }
    alignas(16) float sm_out[P];
    for (int g = 0; g < G; ++g) _mm_store_ps(sm_out + 4 * g, summs[g]);
    for (int p = 0; p < P; ++p) out[p] = hsum8(acc[p]) + sm_out[p];
}

// ---------------------------------------------------------------------------------------------
// Q3_K x Q8_K (quant::vec_dot_q3_k, ggml's AVX2 order): per super-block 8 int32 lanes of
// (scale - 32) * code * q8 (element e in lane (e % 32) / 4), acc[l] = fma(d_y * d_x, float(lane),
// acc[l]); result hsum8(acc). The signed codes (-4..3) enter as code + 4 (0..7):
// (code + 4) . q8 - 4 * q8 in int16 pair sums, exact for every int8.
template <int R, int C>
void dot_q3_k(const std::byte* const* w, const std::byte* const* x, int64_t n, float* out) {
    constexpr int P = R * C;
    const BlockQ3_K* wr[R];
    const BlockQ8_K* xc[C];
    for (int r = 0; r < R; ++r) wr[r] = reinterpret_cast<const BlockQ3_K*>(w[r]);
    for (int c = 0; c < C; ++c) xc[c] = reinterpret_cast<const BlockQ8_K*>(x[c]);
    __m256 acc[P];
    for (int p = 0; p < P; ++p) acc[p] = _mm256_setzero_ps();
    const __m256i m3 = _mm256_set1_epi8(3);
    const int64_t nb = n / 256;
    for (int64_t i = 0; i < nb; ++i) {
        for (int r = 0; r < R; ++r) prefetch_ahead(wr[r] + i);
        __m256i y4[C][8];  // [token][chunk of 32] 4 * (q8[2m] + q8[2m+1]) as int16
        for (int c = 0; c < C; ++c) {
            for (int k = 0; k < 8; ++k) {
                y4[c][k] = _mm256_maddubs_epi16(_mm256_set1_epi8(4), load256(xc[c][i].qs + 32 * k));
            }
        }
        for (int r = 0; r < R; ++r) {
            const BlockQ3_K& b = wr[r][i];
            // The 16 6-bit scales - 32 as int8 (ggml's unpacking): bytes j = sub-block j.
            uint32_t a[3];
            std::memcpy(a, b.scales, 12);
            const uint32_t k1 = 0x03030303, k2 = 0x0f0f0f0f;
            const __m128i sc8 = _mm_sub_epi8(
                _mm_set_epi32((int)(((a[1] >> 4) & k2) | (((a[2] >> 6) & k1) << 4)),
                              (int)(((a[0] >> 4) & k2) | (((a[2] >> 4) & k1) << 4)),
                              (int)((a[1] & k2) | (((a[2] >> 2) & k1) << 4)), (int)((a[0] & k2) | ((a[2] & k1) << 4))),
                _mm_set1_epi8(32));
            const __m256i sc_a = _mm256_broadcastsi128_si256(_mm_cvtepi8_epi16(sc8));                     // 0-7
            const __m256i sc_b = _mm256_broadcastsi128_si256(_mm_cvtepi8_epi16(_mm_srli_si128(sc8, 8)));  // 8-15
            const __m256i hm = load256(b.hmask);
            const __m256i q0 = load256(b.qs), q1 = load256(b.qs + 32);
            __m256i lanes[C];
            for (int c = 0; c < C; ++c) lanes[c] = _mm256_setzero_si256();
            for (int k = 0; k < 8; ++k) {
                // Elements 32k .. 32k + 31: sub-blocks 2k (low 128 bits) and 2k + 1 (high).
                const int m = k % 4;
                const __m256i low = _mm256_and_si256(_mm256_srli_epi16(k < 4 ? q0 : q1, 2 * m), m3);
                const __m256i u = _mm256_or_si256(low, byte_bit<2>(hm, k));  // code + 4
                const __m256i sc = _mm256_shuffle_epi8(k < 4 ? sc_a : sc_b, pick16(2 * m, 2 * m + 1));
                for (int c = 0; c < C; ++c) {
                    const __m256i prod = _mm256_maddubs_epi16(u, load256(xc[c][i].qs + 32 * k));
                    lanes[c] = dot_s16(lanes[c], _mm256_sub_epi16(prod, y4[c][k]), sc);
                }
            }
            const float dx = f16_to_f32(b.d);
            for (int c = 0; c < C; ++c) {
                acc[r * C + c] =
                    _mm256_fmadd_ps(_mm256_set1_ps(xc[c][i].d * dx), _mm256_cvtepi32_ps(lanes[c]), acc[r * C + c]);
            }
        }
    }
    for (int p = 0; p < P; ++p) out[p] = hsum8(acc[p]);
}

// ---------------------------------------------------------------------------------------------
// IQ4_XS x Q8_K (quant::vec_dot_iq4_xs, ggml's AVX2 order): per super-block 8 int32 lanes of
// (ls - 32) * value * q8 (element e in lane (e % 32) / 4), acc[l] = fma(d_x * d_y, float(lane),
// acc[l]); result hsum8(acc). value . q8 as |value| . (q8 with value's sign), ggml's trick: exact
// while q8 != -128 (Q8_K quants lie in [-127, 127]).
template <int R, int C>
void dot_iq4_xs(const std::byte* const* w, const std::byte* const* x, int64_t n, float* out) {
    constexpr int P = R * C;
    const BlockIQ4_XS* wr[R];
    const BlockQ8_K* xc[C];
    for (int r = 0; r < R; ++r) wr[r] = reinterpret_cast<const BlockIQ4_XS*>(w[r]);
    for (int c = 0; c < C; ++c) xc[c] = reinterpret_cast<const BlockQ8_K*>(x[c]);
    __m256 acc[P];
    for (int p = 0; p < P; ++p) acc[p] = _mm256_setzero_ps();
    const __m256i table = _mm256_broadcastsi128_si256(load128(quant::kIq4NlValues));
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const int64_t nb = n / 256;
    for (int64_t i = 0; i < nb; ++i) {
        for (int r = 0; r < R; ++r) prefetch_ahead(wr[r] + i);
        for (int r = 0; r < R; ++r) {
            const BlockIQ4_XS& b = wr[r][i];
            // Sub-block scales ls - 32 (-32..31) as int16, sub-block ib in element ib: low nibbles
            // from scales_l (even ib in the low nibbles, odd in the high), 2-bit highs from scales_h.
            uint32_t sl;
            std::memcpy(&sl, b.scales_l, 4);
            const __m128i lo4 = _mm_and_si128(_mm_set_epi32(0, 0, (int)(sl >> 4), (int)sl), _mm_set1_epi8(0x0F));
            const __m128i low = _mm_unpacklo_epi8(lo4, _mm_srli_si128(lo4, 4));
            const __m256i hb = _mm256_and_si256(
                _mm256_srlv_epi32(_mm256_set1_epi32(b.scales_h), _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14)),
                _mm256_set1_epi32(3));
            const __m128i high = _mm_packs_epi32(_mm256_castsi256_si128(hb), _mm256_extracti128_si256(hb, 1));
            const __m128i ls16 =
                _mm_sub_epi16(_mm_or_si128(_mm_cvtepu8_epi16(low), _mm_slli_epi16(high, 4)), _mm_set1_epi16(32));
            const __m256i scales = _mm256_broadcastsi128_si256(ls16);
            __m256i lanes[C];
            for (int c = 0; c < C; ++c) lanes[c] = _mm256_setzero_si256();
            for (int ib = 0; ib < 8; ++ib) {
                const __m128i q = load128(b.qs + 16 * ib);
                const __m256i idx = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), m4);
                const __m256i v = _mm256_shuffle_epi8(table, idx);  // values of elements 32 ib .. + 31
                const __m256i av = _mm256_abs_epi8(v);
                const __m256i sc = _mm256_shuffle_epi8(scales, pick16(ib, ib));
                for (int c = 0; c < C; ++c) {
                    const __m256i y = load256(xc[c][i].qs + 32 * ib);
                    lanes[c] = dot_s16(lanes[c], _mm256_maddubs_epi16(av, _mm256_sign_epi8(y, v)), sc);
                }
            }
            const float dx = f16_to_f32(b.d);
            for (int c = 0; c < C; ++c) {
                acc[r * C + c] =
                    _mm256_fmadd_ps(_mm256_set1_ps(dx * xc[c][i].d), _mm256_cvtepi32_ps(lanes[c]), acc[r * C + c]);
            }
        }
    }
    for (int p = 0; p < P; ++p) out[p] = hsum8(acc[p]);
}

// ---------------------------------------------------------------------------------------------
// The {0, sc, 2 sc, 3 sc} pshufb tables of the two halves of a Q2_K super-block (dot_q2_k,
// dot_q2_k_x8) and its 4-bit mins.
struct Q2KTables {
    __m256i tab[2];  // [half] pshufb tables: lane 0 slot m = sub-block 8 h + 2 m, lane 1 slot m = + 1
    __m128i mins;    // [16] bytes: sub-block mins
};
inline Q2KTables q2_k_tables(const BlockQ2_K& b) {
    const __m256i idx_a = _mm256_setr_epi8(0, 0, 0, 0, 2, 2, 2, 2, 4, 4, 4, 4, 6, 6, 6, 6, 1, 1, 1, 1, 3, 3, 3, 3, 5, 5,
                                           5, 5, 7, 7, 7, 7);
    const __m256i odd = _mm256_set1_epi32((int)0xFF00FF00u), high = _mm256_set1_epi32((int)0xFFFF0000u);
    const __m128i sc8 = load128(b.scales);
    const __m256i rep = _mm256_broadcastsi128_si256(_mm_and_si128(sc8, _mm_set1_epi8(0x0F)));
    Q2KTables t;
    for (int h = 0; h < 2; ++h) {
        const __m256i s = _mm256_shuffle_epi8(rep, _mm256_add_epi8(idx_a, _mm256_set1_epi8((char)(8 * h))));
        t.tab[h] = _mm256_add_epi8(_mm256_and_si256(s, odd), _mm256_and_si256(_mm256_add_epi8(s, s), high));
    }
    t.mins = _mm_and_si128(_mm_srli_epi16(sc8, 4), _mm_set1_epi8(0x0F));
    return t;
}

// Q2_K x Q8_K (quant::vec_dot_q2_k, the order of llama.cpp's repacked q2_K_8x8 gemm): per output
// two float accumulators; per half super-block h (8 sub-blocks of 16, 128 elements),
// acc = fma(sumi_h, d_x * d_y, acc) and acc_min = fma(summins_h, dmin_x * d_y, acc_min); the
// result is acc - acc_min. The 4-bit scale is folded into the codes before the integer dot
// product (code * scale <= 45 fits an unsigned byte): a per-row pshufb table holds
// {0, sc, 2 sc, 3 sc} of 4 sub-blocks in each 128-bit lane. Vectorized across outputs in groups
// of 4 for the float part.
template <int R, int C>
void dot_q2_k(const std::byte* const* w, const std::byte* const* x, int64_t n, float* out) {
    static_assert((R * C) % 4 == 0);
    constexpr int P = R * C, G = P / 4;
    const BlockQ2_K* wr[R];
    const BlockQ8_K* xc[C];
    for (int r = 0; r < R; ++r) wr[r] = reinterpret_cast<const BlockQ2_K*>(w[r]);
    for (int c = 0; c < C; ++c) xc[c] = reinterpret_cast<const BlockQ8_K*>(x[c]);
    __m128 acc[G], acc_min[G];
    for (int g = 0; g < G; ++g) acc[g] = acc_min[g] = _mm_setzero_ps();
    const __m256i m3 = _mm256_set1_epi8(3);
    const int64_t nb = n / 256;
    for (int64_t i = 0; i < nb; ++i) {
        for (int r = 0; r < R; ++r) prefetch_ahead(wr[r] + i);
        __m256i part[2][P];   // [half][output] 8 int32 lanes of scale * code . q8
        __m128i mpart[2][P];  // [half][output] 4 int32 lanes of min * bsum
        float dx[R], dminx[R];
        for (int r = 0; r < R; ++r) {
            const BlockQ2_K& b = wr[r][i];
            const Q2KTables t = q2_k_tables(b);
            const __m128i mins[2] = {_mm_cvtepu8_epi16(t.mins), _mm_cvtepu8_epi16(_mm_srli_si128(t.mins, 8))};
            for (int h = 0; h < 2; ++h) {
                const __m256i q = load256(b.qs + 32 * h);
                __m256i s[C];
                for (int c = 0; c < C; ++c) s[c] = _mm256_setzero_si256();
                for (int m = 0; m < 4; ++m) {
                    // Elements 128 h + 32 m .. + 31: sub-blocks 8 h + 2 m (low 128 bits), + 1 (high).
                    const __m256i codes = _mm256_and_si256(_mm256_srli_epi16(q, 2 * m), m3);
                    const __m256i scaled =
                        _mm256_shuffle_epi8(t.tab[h], _mm256_or_si256(codes, _mm256_set1_epi8((char)(4 * m))));
                    for (int c = 0; c < C; ++c) {
                        s[c] = dot_u8_s8(s[c], scaled, load256(xc[c][i].qs + 128 * h + 32 * m));
                    }
                }
                for (int c = 0; c < C; ++c) {
                    part[h][r * C + c] = s[c];
                    mpart[h][r * C + c] = _mm_madd_epi16(mins[h], load128(xc[c][i].bsums + 8 * h));
                }
            }
            dx[r] = f16_to_f32(b.d);
            dminx[r] = f16_to_f32(b.dmin);
        }
        for (int g = 0; g < G; ++g) {
            const int p = 4 * g;
            float dv[4], dminv[4];
            for (int k = 0; k < 4; ++k) {
                const float dy = xc[(p + k) % C][i].d;
                dv[k] = dx[(p + k) / C] * dy;
                dminv[k] = dminx[(p + k) / C] * dy;
            }
            const __m128 d = _mm_loadu_ps(dv), dmin = _mm_loadu_ps(dminv);
            for (int h = 0; h < 2; ++h) {
                const __m128i sumi = sum_lanes4(part[h][p], part[h][p + 1], part[h][p + 2], part[h][p + 3]);
                const __m128i summin = sum4_epi32(mpart[h][p], mpart[h][p + 1], mpart[h][p + 2], mpart[h][p + 3]);
                acc[g] = _mm_fmadd_ps(_mm_cvtepi32_ps(sumi), d, acc[g]);
                acc_min[g] = _mm_fmadd_ps(_mm_cvtepi32_ps(summin), dmin, acc_min[g]);
            }
        }
    }
    for (int g = 0; g < G; ++g) _mm_storeu_ps(out + 4 * g, _mm_sub_ps(acc[g], acc_min[g]));
}

// The same Q2_K dot products with 8 tokens in the lanes (activations packed by pack_q8_k16_x8):
// each row's scaled codes (code * scale) are laid out in element order once per super-block, and
// one vpdpbusd multiplies 4 of them, broadcast, with the same 4 positions of 8 tokens, so the 8
// int32 lanes hold the exact sumi_h of the 8 tokens; the min sums come from pmaddwd of
// (m_2k, m_2k+1) with the token's bsum pairs. Then acc and acc_min lane by lane, as the reference.
template <int R>
void dot_q2_k_x8(const std::byte* const* w, const std::byte* packed, int64_t n, float* out) {
    const BlockQ2_K* wr[R];
    for (int r = 0; r < R; ++r) wr[r] = reinterpret_cast<const BlockQ2_K*>(w[r]);
    const auto* xb = reinterpret_cast<const PackedQ8_K16x8*>(packed);
    __m256 acc[R], acc_min[R];
    for (int r = 0; r < R; ++r) acc[r] = acc_min[r] = _mm256_setzero_ps();
    alignas(32) uint8_t codes[R][256];     // [row][element] code * scale of the current super-block
    alignas(16) uint32_t min_pairs[R][8];  // [row][pair k] int16 pair (m_2k, m_2k+1)
    const __m256i m3 = _mm256_set1_epi8(3);
    const int64_t nb = n / 256;
    for (int64_t i = 0; i < nb; ++i) {
        for (int r = 0; r < R; ++r) prefetch_ahead(wr[r] + i);
        const PackedQ8_K16x8& y = xb[i];
        const __m256 dy = _mm256_loadu_ps(y.d);
        __m256 d[R], dmin[R];
        for (int r = 0; r < R; ++r) {
            const BlockQ2_K& b = wr[r][i];
            const Q2KTables t = q2_k_tables(b);
            for (int h = 0; h < 2; ++h) {
                const __m256i q = load256(b.qs + 32 * h);
                for (int m = 0; m < 4; ++m) {
                    const __m256i c = _mm256_and_si256(_mm256_srli_epi16(q, 2 * m), m3);
                    _mm256_store_si256(reinterpret_cast<__m256i*>(codes[r] + 128 * h + 32 * m),
                                       _mm256_shuffle_epi8(t.tab[h], _mm256_or_si256(c, _mm256_set1_epi8((char)(4 * m)))));
                }
            }
            _mm_store_si128(reinterpret_cast<__m128i*>(min_pairs[r]), _mm_cvtepu8_epi16(t.mins));
            _mm_store_si128(reinterpret_cast<__m128i*>(min_pairs[r] + 4), _mm_cvtepu8_epi16(_mm_srli_si128(t.mins, 8)));
            d[r] = _mm256_mul_ps(_mm256_set1_ps(f16_to_f32(b.d)), dy);
            dmin[r] = _mm256_mul_ps(_mm256_set1_ps(f16_to_f32(b.dmin)), dy);
        }
        for (int h = 0; h < 2; ++h) {
            __m256i sum[R];
            for (int r = 0; r < R; ++r) sum[r] = _mm256_setzero_si256();
#if HEARTH_KERNEL_VNNI
            for (int k = 0; k < 32; ++k) {
                const __m256i yv = load256(y.qs[32 * h + k]);
                for (int r = 0; r < R; ++r) {
                    int32_t c4;
                    std::memcpy(&c4, codes[r] + 128 * h + 4 * k, 4);
                    sum[r] = _mm256_dpbusd_epi32(sum[r], _mm256_set1_epi32(c4), yv);
                }
            }
#else
            // int16 pair sums: 2 steps of <= 2 * 45 * 128 stay below 2^15.
            for (int k = 0; k < 32; k += 2) {
                const __m256i y0 = load256(y.qs[32 * h + k]), y1 = load256(y.qs[32 * h + k + 1]);
                for (int r = 0; r < R; ++r) {
                    int32_t c0, c1;
                    std::memcpy(&c0, codes[r] + 128 * h + 4 * k, 4);
                    std::memcpy(&c1, codes[r] + 128 * h + 4 * k + 4, 4);
                    const __m256i s16 = _mm256_add_epi16(_mm256_maddubs_epi16(_mm256_set1_epi32(c0), y0),
                                                         _mm256_maddubs_epi16(_mm256_set1_epi32(c1), y1));
                    sum[r] = _mm256_add_epi32(sum[r], _mm256_madd_epi16(s16, _mm256_set1_epi16(1)));
                }
            }
#endif
            for (int r = 0; r < R; ++r) {
                __m256i summin = _mm256_setzero_si256();
                for (int k = 0; k < 4; ++k) {
                    summin = dot_s16(summin, _mm256_set1_epi32((int)min_pairs[r][4 * h + k]), load256(y.bsum16[4 * h + k]));
                }
                acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum[r]), d[r], acc[r]);
                acc_min[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(summin), dmin[r], acc_min[r]);
            }
        }
    }
    for (int r = 0; r < R; ++r) _mm256_storeu_ps(out + kPackTokens * r, _mm256_sub_ps(acc[r], acc_min[r]));
}

}  // namespace
}  // namespace hearth::backend
