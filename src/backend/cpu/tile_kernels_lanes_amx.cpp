// AMX tile kernels (tile_kernels.h) of the lane types, whose reference keeps 8 float
// accumulators per output and adds one exact int32 per lane and super-block (Q6_K, Q5_K, Q3_K).
// Same target flags and rules as tile_kernels_amx.cpp.
#include "backend/cpu/tile_kernels.h"

#if defined(__AMX_TILE__) && defined(__AMX_INT8__) && defined(__AVX512F__) && defined(__AVX512BW__) && \
    defined(__AVX512VL__) && defined(__AVX512VNNI__) && defined(__F16C__) && defined(__FMA__)

#include <climits>
#include <cstring>

#include "backend/cpu/tile_kernels_amx.h"
#include "quant/q3_k.h"
#include "quant/q5_k.h"
#include "quant/q6_k.h"

namespace hearth::backend {

using namespace amx_detail;

// Per row: the 8 chunks of 32 elements decoded to code + 32 (0..63) as the AVX2 kernel does, times
// the sub-block scales in int16, split into digits, then moved to lane order (an 8 x 8 transpose
// of 4-byte groups: group l of chunk c goes to lane l, position c).
void amx_pack_q6_k(const std::byte* const* w, int64_t n, AmxQ6_Kx16* dst) {
    const int64_t nb = n / 256;
    const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(3);
    for (int64_t i = 0; i < nb; ++i) {
        AmxQ6_Kx16& p = dst[i];
        for (int r = 0; r < kAmxRows; ++r) {
            const quant::BlockQ6_K& b = reinterpret_cast<const quant::BlockQ6_K*>(w[r])[i];
            p.d[r] = f16_to_f32(b.d);
            for (int l = 0; l < 8; ++l) {
                const uint32_t s0 = (uint16_t)(int16_t)(-32 * b.scales[2 * l]);
                const uint32_t s1 = (uint16_t)(int16_t)(-32 * b.scales[2 * l + 1]);
                p.nsc_pair[r][l] = (int32_t)(s0 | (s1 << 16));
            }
            __m256i hi[8], lo[8];  // [chunk] 32 digits
            for (int c = 0; c < 8; ++c) {
                const int h = c / 4, k = c % 4;
                const __m256i ql = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.ql + 64 * h + 32 * (k % 2)));
                const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qh + 32 * h));
                const __m256i low = k < 2 ? _mm256_and_si256(ql, m4) : _mm256_and_si256(_mm256_srli_epi16(ql, 4), m4);
                const __m256i high = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * k), m2), 4);
                const __m512i u = _mm512_cvtepu8_epi16(_mm256_or_si256(low, high));
                const __m512i sc = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi16(b.scales[2 * c])),
                                                      _mm256_set1_epi16(b.scales[2 * c + 1]), 1);
                const __m512i v = _mm512_mullo_epi16(u, sc);  // |v| <= 128 * 63, exact in int16
                hi[c] = _mm512_cvtepi16_epi8(_mm512_srai_epi16(v, 7));
                lo[c] = _mm512_cvtepi16_epi8(_mm512_and_si512(v, _mm512_set1_epi16(127)));
            }
            __m256i out[8];
            transpose8x8_epi32(hi, out);
            for (int l = 0; l < 8; ++l) _mm256_store_si256(reinterpret_cast<__m256i*>(p.hi[l][r]), out[l]);
            transpose8x8_epi32(lo, out);
            for (int l = 0; l < 8; ++l) _mm256_store_si256(reinterpret_cast<__m256i*>(p.lo[l][r]), out[l]);
        }
    }
}

// Per row: the 8 sub-blocks of 32 decoded to 5-bit codes, times their 6-bit scales in int16
// (<= 63 * 31), split into unsigned digits, moved to lane order as for Q6_K; the mins as int16
// pairs.
void amx_pack_q5_k(const std::byte* const* w, int64_t n, AmxQ5_Kx16* dst) {
    const int64_t nb = n / 256;
    const __m256i m4 = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
    for (int64_t i = 0; i < nb; ++i) {
        AmxQ5_Kx16& p = dst[i];
        for (int r = 0; r < kAmxRows; ++r) {
            const quant::BlockQ5_K& b = reinterpret_cast<const quant::BlockQ5_K*>(w[r])[i];
            uint8_t sc[8], mn[8];  // get_scale_min_k4 (ggml's utmp shuffle)
            uint32_t u[3], sm[4];
            std::memcpy(u, b.scales, 12);
            sm[3] = ((u[2] >> 4) & 0x0f0f0f0f) | (((u[1] >> 6) & 0x03030303) << 4);
            sm[2] = u[1] & 0x3f3f3f3f;
            sm[1] = (u[2] & 0x0f0f0f0f) | (((u[0] >> 6) & 0x03030303) << 4);
            sm[0] = u[0] & 0x3f3f3f3f;
            std::memcpy(sc, sm, 8);
            std::memcpy(mn, sm + 2, 8);
            for (int q = 0; q < 4; ++q) p.min_pair[r][q] = (int32_t)((uint32_t)mn[2 * q] | ((uint32_t)mn[2 * q + 1] << 16));
            p.d[r] = f16_to_f32(b.d);
            p.dmin[r] = f16_to_f32(b.dmin);
            const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qh));
            __m256i hi[8], lo[8];  // [sub-block] 32 digits
            for (int c = 0; c < 8; ++c) {
                const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs + 32 * (c / 2)));
                const __m256i low = c % 2 ? _mm256_and_si256(_mm256_srli_epi16(q, 4), m4) : _mm256_and_si256(q, m4);
                // Bit c of every qh byte to bit 4 (16-bit shifts: crossing bits land outside the mask).
                const __m256i bit = _mm256_and_si256(_mm256_srli_epi16(qh, c), one);
                const __m256i code = _mm256_or_si256(low, _mm256_slli_epi16(bit, 4));
                const __m512i v = _mm512_mullo_epi16(_mm512_cvtepu8_epi16(code), _mm512_set1_epi16(sc[c]));
                hi[c] = _mm512_cvtepi16_epi8(_mm512_srli_epi16(v, 7));
                lo[c] = _mm512_cvtepi16_epi8(_mm512_and_si512(v, _mm512_set1_epi16(127)));
            }
            __m256i out[8];
            transpose8x8_epi32(hi, out);
            for (int l = 0; l < 8; ++l) _mm256_store_si256(reinterpret_cast<__m256i*>(p.hi[l][r]), out[l]);
            transpose8x8_epi32(lo, out);
            for (int l = 0; l < 8; ++l) _mm256_store_si256(reinterpret_cast<__m256i*>(p.lo[l][r]), out[l]);
        }
    }
}

// Per row: the 8 chunks of 32 decoded to signed codes (-4..3), times their sub-block scales - 32
// in int16, + 124, to bytes, moved to lane order as for Q6_K.
void amx_pack_q3_k(const std::byte* const* w, int64_t n, AmxQ3_Kx16* dst) {
    const int64_t nb = n / 256;
    const __m256i m3 = _mm256_set1_epi8(3), one = _mm256_set1_epi8(1);
    for (int64_t i = 0; i < nb; ++i) {
        AmxQ3_Kx16& p = dst[i];
        for (int r = 0; r < kAmxRows; ++r) {
            const quant::BlockQ3_K& b = reinterpret_cast<const quant::BlockQ3_K*>(w[r])[i];
            p.d[r] = f16_to_f32(b.d);
            int16_t sc[16];  // scale - 32 of sub-block j (quant::sub_scale)
            for (int j = 0; j < 16; ++j) {
                const int low = j < 8 ? (b.scales[j] & 0xF) : (b.scales[j - 8] >> 4);
                const int high = (b.scales[8 + j % 4] >> (2 * (j / 4))) & 3;
                sc[j] = (int16_t)((low | (high << 4)) - 32);
            }
            const __m256i hm = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.hmask));
            __m256i a[8];  // [chunk] 32 bytes
            for (int c = 0; c < 8; ++c) {
                const int h = c / 4, k = c % 4;
                const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs + 32 * h));
                const __m256i low = _mm256_and_si256(_mm256_srli_epi16(q, 2 * k), m3);
                const __m256i high = _mm256_and_si256(_mm256_srli_epi16(hm, c), one);
                // code + 4 = low + 4 * high (0..7), widened; code = that - 4.
                const __m512i code = _mm512_sub_epi16(
                    _mm512_cvtepu8_epi16(_mm256_or_si256(low, _mm256_slli_epi16(high, 2))), _mm512_set1_epi16(4));
                const __m512i s16 = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi16(sc[2 * c])),
                                                       _mm256_set1_epi16(sc[2 * c + 1]), 1);
                const __m512i v = _mm512_add_epi16(_mm512_mullo_epi16(code, s16), _mm512_set1_epi16(124));
                a[c] = _mm512_cvtepi16_epi8(v);  // 0..252
            }
            __m256i out[8];
            transpose8x8_epi32(a, out);
            for (int l = 0; l < 8; ++l) _mm256_store_si256(reinterpret_cast<__m256i*>(p.a[l][r]), out[l]);
        }
    }
}

namespace {

// Lane l of a lane-type (Q6_K, Q5_K) super-block for G token groups: C tiles ch0, cl0 (ch1, cl1)
// = high and low digits (A tiles 4, 5) . the lane's quants of group 0 (1) (B tile 6 (7): rows l,
// l + 8, .., l + 56 of the packed quants, 512 bytes apart), stored to sums[0] (sums[1]); then the
// next super-block's share of prefetches and lane_update(l). DP: _tile_dpbssd (signed digits) or
// _tile_dpbusd (unsigned).
#define HEARTH_AMX_LANE(DP, Block, l, ch0, cl0, ch1, cl1)      \
    _tile_zero(ch0);                                           \
    _tile_zero(cl0);                                           \
    _tile_loadd(4, wb.hi[l][0], 32);                           \
    _tile_loadd(5, wb.lo[l][0], 32);                           \
    _tile_loadd(6, x[i].qs[l], 512);                           \
    DP(ch0, 4, 6);                                             \
    DP(cl0, 5, 6);                                             \
    if constexpr (G == 2) {                                    \
        _tile_zero(ch1);                                       \
        _tile_zero(cl1);                                       \
        _tile_loadd(7, x[x_group + i].qs[l], 512);             \
        DP(ch1, 4, 7);                                         \
        DP(cl1, 5, 7);                                         \
    }                                                          \
    _tile_stored(ch0, sums[0][0], 64);                         \
    _tile_stored(cl0, sums[0][1], 64);                         \
    if constexpr (G == 2) {                                    \
        _tile_stored(ch1, sums[1][0], 64);                     \
        _tile_stored(cl1, sums[1][1], 64);                     \
    }                                                          \
    if (i + 1 < nb) {                                          \
        prefetch_part(&w[i + 1], sizeof(Block), l, 8);         \
        for (int u = 0; u < G; ++u) {                          \
            prefetch_part(&x[u * x_group + i + 1], sizeof(AmxQ8_Kx16), l, 8); \
        }                                                      \
    }                                                          \
    lane_update(l)

#define HEARTH_AMX_LANES(DP, Block)                            \
    HEARTH_AMX_LANE(DP, Block, 0, 0, 1, 2, 3);                 \
    HEARTH_AMX_LANE(DP, Block, 1, 0, 1, 2, 3);                 \
    HEARTH_AMX_LANE(DP, Block, 2, 0, 1, 2, 3);                 \
    HEARTH_AMX_LANE(DP, Block, 3, 0, 1, 2, 3);                 \
    HEARTH_AMX_LANE(DP, Block, 4, 0, 1, 2, 3);                 \
    HEARTH_AMX_LANE(DP, Block, 5, 0, 1, 2, 3);                 \
    HEARTH_AMX_LANE(DP, Block, 6, 0, 1, 2, 3);                 \
    HEARTH_AMX_LANE(DP, Block, 7, 0, 1, 2, 3)

// Per row, lane and super-block (quant::vec_dot_q6_k): the int32 lane value
// 128 * C_hi + C_lo - 32 * (bsums[2l] * sc[2l] + bsums[2l+1] * sc[2l+1]) (the correction as one
// vpdpwssd on int16 pairs, exact), then acc[l] = fma(d_y * d_x, float(lane), acc[l]); at the end
// hsum8 of the 8 lane accumulators, in the reference's tree. G token groups as for Q4_K.
template <int G>
void dot_q6_k_groups(const AmxQ6_Kx16* w, const AmxQ8_Kx16* x, int64_t x_group, int64_t n, float* y,
                     int64_t y_stride, int n_rows, int n_tokens) {
    alignas(64) int32_t sums[G][2][kAmxRows][kAmxTokens];  // [group][hi, lo][row][token]
    alignas(64) float acc[G][kAmxRows][8][kAmxTokens];     // [group][row][lane][token]
    for (int u = 0; u < G; ++u) {
        for (int r = 0; r < kAmxRows; ++r) {
            for (int l = 0; l < 8; ++l) _mm512_store_ps(acc[u][r][l], _mm512_setzero_ps());
        }
    }
    const int64_t nb = n / 256;
    memory_barrier();
    for (int64_t i = 0; i < nb; ++i) {
        const AmxQ6_Kx16& wb = w[i];
        __m512 d[G][kAmxRows];
        for (int u = 0; u < G; ++u) {
            const __m512 dy = _mm512_load_ps(x[u * x_group + i].d);
            for (int r = 0; r < kAmxRows; ++r) d[u][r] = _mm512_mul_ps(dy, _mm512_set1_ps(wb.d[r]));
        }
        auto lane_update = [&](int l) __attribute__((always_inline)) {
            for (int u = 0; u < G; ++u) {
                const __m512i pair = _mm512_load_si512(x[u * x_group + i].bsum16_pair[l]);
                for (int r = 0; r < kAmxRows; ++r) {
                    __m512i v = _mm512_add_epi32(_mm512_slli_epi32(_mm512_load_si512(sums[u][0][r]), 7),
                                                 _mm512_load_si512(sums[u][1][r]));
                    v = _mm512_dpwssd_epi32(v, pair, _mm512_set1_epi32(wb.nsc_pair[r][l]));
                    _mm512_store_ps(acc[u][r][l],
                                    _mm512_fmadd_ps(d[u][r], _mm512_cvtepi32_ps(v), _mm512_load_ps(acc[u][r][l])));
                }
            }
        };
        HEARTH_AMX_LANES(_tile_dpbssd, AmxQ6_Kx16);
    }
    for (int u = 0; u < G; ++u) {
        __m512 res[kAmxRows];
        for (int r = 0; r < kAmxRows; ++r) res[r] = hsum8_lanes(acc[u][r]);
        store_transposed(res, y + u * kAmxTokens * y_stride, y_stride, n_rows, u + 1 == G ? n_tokens : kAmxTokens);
    }
}

}  // namespace

void amx_dot_q6_k(const AmxQ6_Kx16* w, const AmxQ8_Kx16* x, int64_t x_group, int n_groups, int64_t n, float* y,
                  int64_t y_stride, int n_rows, int n_tokens) {
    if (n_groups == 2) dot_q6_k_groups<2>(w, x, x_group, n, y, y_stride, n_rows, n_tokens);
    else dot_q6_k_groups<1>(w, x, x_group, n, y, y_stride, n_rows, n_tokens);
}

namespace {

// quant::vec_dot_q5_k: per row, lane and super-block the int32 lane value 128 * C_hi + C_lo of
// scale * code . q8 (unsigned digits, TDPBUSD), acc[l] = fma(d_y * d_x, float(lane), acc[l]); per
// row and super-block the int32 sum of min * bsum32 over the 8 sub-blocks (4 vpdpwssd on int16
// pairs) and summs = fma(-d_y * dmin_x, float(sum), summs); result hsum8(acc) + summs.
template <int G>
void dot_q5_k_groups(const AmxQ5_Kx16* w, const AmxQ8_Kx16* x, int64_t x_group, int64_t n, float* y,
                     int64_t y_stride, int n_rows, int n_tokens) {
    alignas(64) int32_t sums[G][2][kAmxRows][kAmxTokens];  // [group][hi, lo][row][token]
    alignas(64) float acc[G][kAmxRows][8][kAmxTokens];     // [group][row][lane][token]
    alignas(64) float summs[G][kAmxRows][kAmxTokens];      // [group][row][token]
    for (int u = 0; u < G; ++u) {
        for (int r = 0; r < kAmxRows; ++r) {
            for (int l = 0; l < 8; ++l) _mm512_store_ps(acc[u][r][l], _mm512_setzero_ps());
            _mm512_store_ps(summs[u][r], _mm512_setzero_ps());
        }
    }
    const int64_t nb = n / 256;
    memory_barrier();
    for (int64_t i = 0; i < nb; ++i) {
        const AmxQ5_Kx16& wb = w[i];
        __m512 d[G][kAmxRows];
        for (int u = 0; u < G; ++u) {
            const AmxQ8_Kx16& xb = x[u * x_group + i];
            const __m512 dy = _mm512_load_ps(xb.d);
            const __m512 ndy =  // -d_y: the sign bit flipped, as the reference's unary minus (also for zero)
                _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(dy), _mm512_set1_epi32(INT32_MIN)));
            __m512i bp[4];
            for (int p = 0; p < 4; ++p) bp[p] = _mm512_load_si512(xb.bsum32_pair[p]);
            for (int r = 0; r < kAmxRows; ++r) {
                d[u][r] = _mm512_mul_ps(dy, _mm512_set1_ps(wb.d[r]));
                __m512i m = _mm512_setzero_si512();
                for (int p = 0; p < 4; ++p) m = _mm512_dpwssd_epi32(m, bp[p], _mm512_set1_epi32(wb.min_pair[r][p]));
                const __m512 dmin = _mm512_mul_ps(ndy, _mm512_set1_ps(wb.dmin[r]));
                _mm512_store_ps(summs[u][r], _mm512_fmadd_ps(dmin, _mm512_cvtepi32_ps(m), _mm512_load_ps(summs[u][r])));
            }
        }
        auto lane_update = [&](int l) __attribute__((always_inline)) {
            for (int u = 0; u < G; ++u) {
                for (int r = 0; r < kAmxRows; ++r) {
                    const __m512i v = _mm512_add_epi32(_mm512_slli_epi32(_mm512_load_si512(sums[u][0][r]), 7),
                                                       _mm512_load_si512(sums[u][1][r]));
                    _mm512_store_ps(acc[u][r][l],
                                    _mm512_fmadd_ps(d[u][r], _mm512_cvtepi32_ps(v), _mm512_load_ps(acc[u][r][l])));
                }
            }
        };
        HEARTH_AMX_LANES(_tile_dpbusd, AmxQ5_Kx16);
    }
    for (int u = 0; u < G; ++u) {
        __m512 res[kAmxRows];
        for (int r = 0; r < kAmxRows; ++r) res[r] = _mm512_add_ps(hsum8_lanes(acc[u][r]), _mm512_load_ps(summs[u][r]));
        store_transposed(res, y + u * kAmxTokens * y_stride, y_stride, n_rows, u + 1 == G ? n_tokens : kAmxTokens);
    }
}

}  // namespace

void amx_dot_q5_k(const AmxQ5_Kx16* w, const AmxQ8_Kx16* x, int64_t x_group, int n_groups, int64_t n, float* y,
                  int64_t y_stride, int n_rows, int n_tokens) {
    if (n_groups == 2) dot_q5_k_groups<2>(w, x, x_group, n, y, y_stride, n_rows, n_tokens);
    else dot_q5_k_groups<1>(w, x, x_group, n, y, y_stride, n_rows, n_tokens);
}

namespace {

// Lane l of a Q3_K super-block for G token groups: C tile c0 (c1) = the lane's weights (A tile ta)
// . its quants of group 0 (1) (B tile 6 (7)), stored to sums[0] (sums[1]).
#define HEARTH_AMX_Q3_LANE(l, c0, c1, ta)                       \
    _tile_zero(c0);                                            \
    _tile_loadd(ta, wb.a[l][0], 32);                            \
    _tile_loadd(6, x[i].qs[l], 512);                           \
    _tile_dpbusd(c0, ta, 6);                                    \
    if constexpr (G == 2) {                                    \
        _tile_zero(c1);                                        \
        _tile_loadd(7, x[x_group + i].qs[l], 512);             \
        _tile_dpbusd(c1, ta, 7);                                \
    }                                                          \
    _tile_stored(c0, sums[0], 64);                             \
    if constexpr (G == 2) _tile_stored(c1, sums[1], 64);       \
    if (i + 1 < nb) {                                          \
        prefetch_part(&w[i + 1], sizeof(AmxQ3_Kx16), l, 8);    \
        for (int u = 0; u < G; ++u) {                          \
            prefetch_part(&x[u * x_group + i + 1], sizeof(AmxQ8_Kx16), l, 8); \
        }                                                      \
    }                                                          \
    lane_update(l)

// quant::vec_dot_q3_k: per row, lane and super-block the int32 lane value C - 124 * (sum of the
// lane's quants), acc[l] = fma(d_y * d_x, float(lane), acc[l]); result hsum8(acc).
template <int G>
void dot_q3_k_groups(const AmxQ3_Kx16* w, const AmxQ8_Kx16* x, int64_t x_group, int64_t n, float* y,
                     int64_t y_stride, int n_rows, int n_tokens) {
    alignas(64) int32_t sums[G][kAmxRows][kAmxTokens];  // [group][row][token]
    alignas(64) float acc[G][kAmxRows][8][kAmxTokens];  // [group][row][lane][token]
    for (int u = 0; u < G; ++u) {
        for (int r = 0; r < kAmxRows; ++r) {
            for (int l = 0; l < 8; ++l) _mm512_store_ps(acc[u][r][l], _mm512_setzero_ps());
        }
    }
    const int64_t nb = n / 256;
    memory_barrier();
    for (int64_t i = 0; i < nb; ++i) {
        const AmxQ3_Kx16& wb = w[i];
        __m512 d[G][kAmxRows];
        for (int u = 0; u < G; ++u) {
            const __m512 dy = _mm512_load_ps(x[u * x_group + i].d);
            for (int r = 0; r < kAmxRows; ++r) d[u][r] = _mm512_mul_ps(dy, _mm512_set1_ps(wb.d[r]));
        }
        auto lane_update = [&](int l) __attribute__((always_inline)) {
            for (int u = 0; u < G; ++u) {
                const __m512i corr =
                    _mm512_mullo_epi32(_mm512_load_si512(x[u * x_group + i].lane_sum[l]), _mm512_set1_epi32(124));
                for (int r = 0; r < kAmxRows; ++r) {
                    const __m512i v = _mm512_sub_epi32(_mm512_load_si512(sums[u][r]), corr);
                    _mm512_store_ps(acc[u][r][l],
                                    _mm512_fmadd_ps(d[u][r], _mm512_cvtepi32_ps(v), _mm512_load_ps(acc[u][r][l])));
                }
            }
        };
        HEARTH_AMX_Q3_LANE(0, 0, 1, 4);
        HEARTH_AMX_Q3_LANE(1, 2, 3, 5);
        HEARTH_AMX_Q3_LANE(2, 0, 1, 4);
        HEARTH_AMX_Q3_LANE(3, 2, 3, 5);
        HEARTH_AMX_Q3_LANE(4, 0, 1, 4);
        HEARTH_AMX_Q3_LANE(5, 2, 3, 5);
        HEARTH_AMX_Q3_LANE(6, 0, 1, 4);
        HEARTH_AMX_Q3_LANE(7, 2, 3, 5);
    }
    for (int u = 0; u < G; ++u) {
        __m512 res[kAmxRows];
        for (int r = 0; r < kAmxRows; ++r) res[r] = hsum8_lanes(acc[u][r]);
        store_transposed(res, y + u * kAmxTokens * y_stride, y_stride, n_rows, u + 1 == G ? n_tokens : kAmxTokens);
    }
}

#undef HEARTH_AMX_Q3_LANE

}  // namespace

void amx_dot_q3_k(const AmxQ3_Kx16* w, const AmxQ8_Kx16* x, int64_t x_group, int n_groups, int64_t n, float* y,
                  int64_t y_stride, int n_rows, int n_tokens) {
    if (n_groups == 2) dot_q3_k_groups<2>(w, x, x_group, n, y, y_stride, n_rows, n_tokens);
    else dot_q3_k_groups<1>(w, x, x_group, n, y, y_stride, n_rows, n_tokens);
}

#undef HEARTH_AMX_LANES
#undef HEARTH_AMX_LANE

}  // namespace hearth::backend

#else  // no AMX at compile time: amx_int8_available() keeps these from being called

namespace hearth::backend {
void amx_pack_q3_k(const std::byte* const*, int64_t, AmxQ3_Kx16*) {}
void amx_pack_q5_k(const std::byte* const*, int64_t, AmxQ5_Kx16*) {}
void amx_pack_q6_k(const std::byte* const*, int64_t, AmxQ6_Kx16*) {}
void amx_dot_q3_k(const AmxQ3_Kx16*, const AmxQ8_Kx16*, int64_t, int, int64_t, float*, int64_t, int, int) {}
void amx_dot_q5_k(const AmxQ5_Kx16*, const AmxQ8_Kx16*, int64_t, int, int64_t, float*, int64_t, int, int) {}
void amx_dot_q6_k(const AmxQ6_Kx16*, const AmxQ8_Kx16*, int64_t, int, int64_t, float*, int64_t, int, int) {}
}  // namespace hearth::backend

#endif
