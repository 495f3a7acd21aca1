// AMX tile kernels (tile_kernels.h) of the types whose reference sums a whole group of elements
// in integers before its float step (Q4_K, Q2_K), the activation packing and the tile
// configuration; the lane types are in tile_kernels_lanes_amx.cpp. Compiled with -mamx-tile
// -mamx-int8 and AVX-512 F/BW/VL/VNNI (cmake/simd_flags.cmake); called only where
// amx_int8_available() (amx.h). Like dot_kernels_x86.h, these files use only intrinsics and their
// own helpers (tile_kernels_amx.h), so the linker can never pick an AVX-512 copy of a shared
// inline function for code that runs on other CPUs; -ffp-contract=off keeps every float
// operation as written.
#include "backend/cpu/tile_kernels.h"

#if defined(__AMX_TILE__) && defined(__AMX_INT8__) && defined(__AVX512F__) && defined(__AVX512BW__) && \
    defined(__AVX512VL__) && defined(__AVX512VNNI__) && defined(__F16C__) && defined(__FMA__)

#include <cstring>

#include "backend/cpu/tile_kernels_amx.h"
#include "quant/q2_k.h"
#include "quant/q4_k.h"
#include "quant/q8_k.h"

namespace hearth::backend {

using namespace amx_detail;

namespace {

constexpr TileConfig kConfig = {
    1, 0, {}, {64, 64, 64, 64, 32, 32, 64, 64, 0, 0, 0, 0, 0, 0, 0, 0}, {16, 16, 16, 16, 16, 16, 8, 8}};

}  // namespace

bool amx_kernels_built() { return true; }

AmxTileScope::AmxTileScope() {
    memory_barrier();
    _tile_loadconfig(&kConfig);
}

AmxTileScope::~AmxTileScope() { _tile_release(); }

void amx_pack_q8_k(const std::byte* const* x, int64_t n, AmxQ8_Kx16* dst) {
    const int64_t nb = n / 256;
    for (int64_t i = 0; i < nb; ++i) {
        AmxQ8_Kx16& p = dst[i];
        for (int t = 0; t < kAmxTokens; ++t) {
            const quant::BlockQ8_K& b = reinterpret_cast<const quant::BlockQ8_K*>(x[t])[i];
            p.d[t] = b.d;
            for (int j = 0; j < 8; ++j) {
                p.bsum32[j][t] = (float)(b.bsums[2 * j] + b.bsums[2 * j + 1]);
                p.bsum16_pair[j][t] = (int32_t)((uint32_t)(uint16_t)b.bsums[2 * j] | ((uint32_t)(uint16_t)b.bsums[2 * j + 1] << 16));
            }
            for (int q = 0; q < 4; ++q) {
                const int32_t s0 = b.bsums[4 * q] + b.bsums[4 * q + 1], s1 = b.bsums[4 * q + 2] + b.bsums[4 * q + 3];
                p.bsum32_pair[q][t] = (int32_t)((uint32_t)(uint16_t)s0 | ((uint32_t)(uint16_t)s1 << 16));
            }
            // Lane sums: byte sums of each 4-byte group (vpdpbusd with ones), then the 8 chunks added.
            __m512i g = _mm512_setzero_si512();  // [16] int32: groups 16k .. 16k+15, summed over k
            for (int k = 0; k < 4; ++k) {
                g = _mm512_dpbusd_epi32(g, _mm512_set1_epi8(1), _mm512_loadu_si512(b.qs + 64 * k));
            }
            // Group 8c + l sits in int32 element (8c + l) % 16: lanes l and l + 8 of g hold lane l.
            const __m256i lanes = _mm256_add_epi32(_mm512_castsi512_si256(g), _mm512_extracti64x4_epi64(g, 1));
            alignas(32) int32_t ls[8];
            _mm256_store_si256(reinterpret_cast<__m256i*>(ls), lanes);
            for (int l = 0; l < 8; ++l) p.lane_sum[l][t] = ls[l];
        }
        // qs: a 64 x 16 transpose of 4-byte groups, 16 groups of one token at a time.
        for (int k0 = 0; k0 < 64; k0 += 16) {
            for (int t = 0; t < kAmxTokens; ++t) {
                const __m512i v = _mm512_loadu_si512(reinterpret_cast<const quant::BlockQ8_K*>(x[t])[i].qs + 4 * k0);
                _mm512_i32scatter_epi32(p.qs[k0][t], _mm512_mullo_epi32(_mm512_set1_epi32(kAmxTokens),
                                                                        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9,
                                                                                          10, 11, 12, 13, 14, 15)),
                                        v, 4);
            }
        }
    }
}

void amx_pack_q4_k(const std::byte* const* w, int64_t n, AmxQ4_Kx16* dst) {
    const int64_t nb = n / 256;
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    for (int64_t i = 0; i < nb; ++i) {
        AmxQ4_Kx16& p = dst[i];
        for (int r = 0; r < kAmxRows; ++r) {
            const quant::BlockQ4_K& b = reinterpret_cast<const quant::BlockQ4_K*>(w[r])[i];
            // ggml's utmp shuffle: bytes 0-7 of sm the 8 sub-block scales, bytes 8-15 the mins
            // (quant::detail::get_scale_min_k4).
            uint32_t u[3], sm[4];
            std::memcpy(u, b.scales, 12);
            sm[3] = ((u[2] >> 4) & 0x0f0f0f0f) | (((u[1] >> 6) & 0x03030303) << 4);
            sm[2] = u[1] & 0x3f3f3f3f;
            sm[1] = (u[2] & 0x0f0f0f0f) | (((u[0] >> 6) & 0x03030303) << 4);
            sm[0] = u[0] & 0x3f3f3f3f;
            _mm256_store_ps(p.scale[r], _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_set_epi32(0, 0, (int)sm[1], (int)sm[0]))));
            _mm256_store_ps(p.min[r], _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_set_epi32(0, 0, (int)sm[3], (int)sm[2]))));
            p.d[r] = f16_to_f32(b.d);
            p.dmin[r] = f16_to_f32(b.dmin);
            // Chunk c of 64 elements: low nibbles of qs[32c ..] are sub-block 2c, high 2c + 1.
            for (int c = 0; c < 4; ++c) {
                const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs + 32 * c));
                _mm256_store_si256(reinterpret_cast<__m256i*>(p.codes[r] + 64 * c), _mm256_and_si256(q, m4));
                _mm256_store_si256(reinterpret_cast<__m256i*>(p.codes[r] + 64 * c + 32),
                                   _mm256_and_si256(_mm256_srli_epi16(q, 4), m4));
            }
        }
    }
}

// Per row: 2-bit codes times their 4-bit sub-block scales (<= 45), in element order; the 4-bit
// mins as int16 pairs.
void amx_pack_q2_k(const std::byte* const* w, int64_t n, AmxQ2_Kx16* dst) {
    const int64_t nb = n / 256;
    const __m256i m3 = _mm256_set1_epi8(3);
    for (int64_t i = 0; i < nb; ++i) {
        AmxQ2_Kx16& p = dst[i];
        for (int r = 0; r < kAmxRows; ++r) {
            const quant::BlockQ2_K& b = reinterpret_cast<const quant::BlockQ2_K*>(w[r])[i];
            p.d[r] = f16_to_f32(b.d);
            p.dmin[r] = f16_to_f32(b.dmin);
            for (int q = 0; q < 8; ++q) {
                p.min_pair[r][q] = (int32_t)((uint32_t)(b.scales[2 * q] >> 4) | ((uint32_t)(b.scales[2 * q + 1] >> 4) << 16));
            }
            for (int c = 0; c < 8; ++c) {
                // Elements 32c .. 32c+31: half c / 4, bits 2 (c % 4); sub-blocks 2c (first 16), 2c + 1.
                const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs + 32 * (c / 4)));
                const __m256i code = _mm256_and_si256(_mm256_srli_epi16(q, 2 * (c % 4)), m3);
                const __m512i s16 = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi16(b.scales[2 * c] & 0xF)),
                                                       _mm256_set1_epi16(b.scales[2 * c + 1] & 0xF), 1);
                const __m512i v = _mm512_mullo_epi16(_mm512_cvtepu8_epi16(code), s16);
                _mm256_store_si256(reinterpret_cast<__m256i*>(p.a[r] + 32 * c), _mm512_cvtepi16_epi8(v));
            }
        }
    }
}

namespace {

// Sub-block j of one super-block for G token groups: A tile a = codes of sub-block j, B tiles
// 6 (and 7) = quants of sub-block j of group 0 (and 1), C tiles c0 (and c1) stored to
// sums[0][j] (and sums[1][j]). Tile numbers must be literals (the intrinsics paste them into the
// instruction).
#define HEARTH_AMX_SUB_BLOCK(j, c0, c1, a)                                                         \
    _tile_zero(c0);                                                                                \
    _tile_loadd(a, wb.codes[0] + 32 * (j), 256);                                                   \
    _tile_loadd(6, x[i].qs[8 * (j)], 64);                                                          \
    _tile_dpbusd(c0, a, 6);                                                                        \
    if constexpr (G == 2) {                                                                        \
        _tile_zero(c1);                                                                            \
        _tile_loadd(7, x[x_group + i].qs[8 * (j)], 64);                                            \
        _tile_dpbusd(c1, a, 7);                                                                    \
    }                                                                                              \
    _tile_stored(c0, sums[0][j], 64);                                                              \
    if constexpr (G == 2) _tile_stored(c1, sums[1][j], 64);                                        \
    if (i + 1 < nb) {                                                                              \
        prefetch_part(&w[i + 1], sizeof(AmxQ4_Kx16), j, 8);                                        \
        for (int u = 0; u < G; ++u) prefetch_part(&x[u * x_group + i + 1], sizeof(AmxQ8_Kx16), j, 8); \
    }

// The float part follows quant::vec_dot_q4_k (detail::dot_with_min_accumulators, group 2) for 16
// tokens at once: per row, super-block and pair g of sub-blocks,
//   sumi = sc[2g] * S[2g] + sc[2g+1] * S[2g+1],  summin = m[2g] * bsum[2g] + m[2g+1] * bsum[2g+1],
//   acc = fma(sumi, d_x * d_y, acc),  acc_min = fma(summin, dmin_x * d_y, acc_min),
// result acc - acc_min. sumi and summin are formed in float, which is exact (every term is an
// integer below 2^24: |S| <= 32 * 15 * 128, scales and mins <= 63, |bsum| <= 32 * 128), so the
// accumulators see the reference's values in its order.
//
// G token groups (1 or 2) share each A tile (the tile loads come from L2, and the band's blocks
// then stay in L1 for the second group). The tile unit does not overlap with the vector units
// here (measured), so the integer sums of a super-block are formed first, then the float part.
template <int G>
void dot_q4_k_groups(const AmxQ4_Kx16* w, const AmxQ8_Kx16* x, int64_t x_group, int64_t n, float* y,
                     int64_t y_stride, int n_rows, int n_tokens) {
    alignas(64) int32_t sums[G][8][kAmxRows][kAmxTokens];  // [group][sub-block][row][token]
    alignas(64) float acc[G][kAmxRows][kAmxTokens], acc_min[G][kAmxRows][kAmxTokens];
    for (int u = 0; u < G; ++u) {
        for (int r = 0; r < kAmxRows; ++r) {
            _mm512_store_ps(acc[u][r], _mm512_setzero_ps());
            _mm512_store_ps(acc_min[u][r], _mm512_setzero_ps());
        }
    }
    const int64_t nb = n / 256;
    memory_barrier();
    for (int64_t i = 0; i < nb; ++i) {
        const AmxQ4_Kx16& wb = w[i];
        HEARTH_AMX_SUB_BLOCK(0, 0, 1, 4);
        HEARTH_AMX_SUB_BLOCK(1, 2, 3, 5);
        HEARTH_AMX_SUB_BLOCK(2, 0, 1, 4);
        HEARTH_AMX_SUB_BLOCK(3, 2, 3, 5);
        HEARTH_AMX_SUB_BLOCK(4, 0, 1, 4);
        HEARTH_AMX_SUB_BLOCK(5, 2, 3, 5);
        HEARTH_AMX_SUB_BLOCK(6, 0, 1, 4);
        HEARTH_AMX_SUB_BLOCK(7, 2, 3, 5);
        for (int u = 0; u < G; ++u) {
            const AmxQ8_Kx16& xb = x[u * x_group + i];
            const int32_t(*s)[kAmxRows][kAmxTokens] = sums[u];
            const __m512 dy = _mm512_load_ps(xb.d);
            __m512 bsum[8];
            for (int j = 0; j < 8; ++j) bsum[j] = _mm512_load_ps(xb.bsum32[j]);
            for (int r = 0; r < kAmxRows; ++r) {
                const __m512 d = _mm512_mul_ps(_mm512_set1_ps(wb.d[r]), dy);
                const __m512 dmin = _mm512_mul_ps(_mm512_set1_ps(wb.dmin[r]), dy);
                __m512 a = _mm512_load_ps(acc[u][r]), am = _mm512_load_ps(acc_min[u][r]);
                for (int g = 0; g < 4; ++g) {
                    const __m512 s0 = _mm512_cvtepi32_ps(_mm512_load_si512(s[2 * g][r]));
                    const __m512 s1 = _mm512_cvtepi32_ps(_mm512_load_si512(s[2 * g + 1][r]));
                    const __m512 sumi = _mm512_fmadd_ps(s1, _mm512_set1_ps(wb.scale[r][2 * g + 1]),
                                                        _mm512_mul_ps(s0, _mm512_set1_ps(wb.scale[r][2 * g])));
                    const __m512 summin = _mm512_fmadd_ps(bsum[2 * g + 1], _mm512_set1_ps(wb.min[r][2 * g + 1]),
                                                          _mm512_mul_ps(bsum[2 * g], _mm512_set1_ps(wb.min[r][2 * g])));
                    a = _mm512_fmadd_ps(sumi, d, a);
                    am = _mm512_fmadd_ps(summin, dmin, am);
                }
                _mm512_store_ps(acc[u][r], a);
                _mm512_store_ps(acc_min[u][r], am);
            }
        }
    }
    for (int u = 0; u < G; ++u) {
        __m512 res[kAmxRows];  // [row] 16 tokens
        for (int r = 0; r < kAmxRows; ++r) res[r] = _mm512_sub_ps(_mm512_load_ps(acc[u][r]), _mm512_load_ps(acc_min[u][r]));
        store_transposed(res, y + u * kAmxTokens * y_stride, y_stride, n_rows, u + 1 == G ? n_tokens : kAmxTokens);
    }
}

// Elements 32k .. 32k+31 (k = 4h .. 4h+3) into C tile c0 (c1) for half h of a Q2_K super-block.
#define HEARTH_AMX_Q2_CHUNK(k, c0, c1, ta)                      \
    _tile_loadd(ta, wb.a[0] + 32 * (k), 256);                   \
    _tile_loadd(6, x[i].qs[8 * (k)], 64);                      \
    _tile_dpbusd(c0, ta, 6);                                    \
    if constexpr (G == 2) {                                    \
        _tile_loadd(7, x[x_group + i].qs[8 * (k)], 64);        \
        _tile_dpbusd(c1, ta, 7);                                \
    }                                                          \
    if (i + 1 < nb) {                                          \
        prefetch_part(&w[i + 1], sizeof(AmxQ2_Kx16), k, 8);    \
        for (int u = 0; u < G; ++u) {                          \
            prefetch_part(&x[u * x_group + i + 1], sizeof(AmxQ8_Kx16), k, 8); \
        }                                                      \
    }

#define HEARTH_AMX_Q2_HALF(h, c0, c1)                          \
    _tile_zero(c0);                                            \
    if constexpr (G == 2) _tile_zero(c1);                      \
    HEARTH_AMX_Q2_CHUNK(4 * (h), c0, c1, 4)                    \
    HEARTH_AMX_Q2_CHUNK(4 * (h) + 1, c0, c1, 5)                \
    HEARTH_AMX_Q2_CHUNK(4 * (h) + 2, c0, c1, 4)                \
    HEARTH_AMX_Q2_CHUNK(4 * (h) + 3, c0, c1, 5)                \
    _tile_stored(c0, sums[0][h], 64);                          \
    if constexpr (G == 2) _tile_stored(c1, sums[1][h], 64)

// quant::vec_dot_q2_k (detail::dot_with_min_accumulators, group 8): per row, super-block and half
// h, sumi = the C tile (the half's sum of scale * code . q8, exact), sum_mins = sum of min * bsum
// over its 8 sub-blocks (4 vpdpwssd on int16 pairs), acc = fma(sumi, d_x * d_y, acc),
// acc_min = fma(sum_mins, dmin_x * d_y, acc_min); result acc - acc_min.
template <int G>
void dot_q2_k_groups(const AmxQ2_Kx16* w, const AmxQ8_Kx16* x, int64_t x_group, int64_t n, float* y,
                     int64_t y_stride, int n_rows, int n_tokens) {
    alignas(64) int32_t sums[G][2][kAmxRows][kAmxTokens];  // [group][half][row][token]
    alignas(64) float acc[G][kAmxRows][kAmxTokens], acc_min[G][kAmxRows][kAmxTokens];
    for (int u = 0; u < G; ++u) {
        for (int r = 0; r < kAmxRows; ++r) {
            _mm512_store_ps(acc[u][r], _mm512_setzero_ps());
            _mm512_store_ps(acc_min[u][r], _mm512_setzero_ps());
        }
    }
    const int64_t nb = n / 256;
    memory_barrier();
    for (int64_t i = 0; i < nb; ++i) {
        const AmxQ2_Kx16& wb = w[i];
        HEARTH_AMX_Q2_HALF(0, 0, 1);
        HEARTH_AMX_Q2_HALF(1, 2, 3);
        for (int u = 0; u < G; ++u) {
            const AmxQ8_Kx16& xb = x[u * x_group + i];
            const __m512 dy = _mm512_load_ps(xb.d);
            __m512i bp[8];
            for (int q = 0; q < 8; ++q) bp[q] = _mm512_load_si512(xb.bsum16_pair[q]);
            for (int r = 0; r < kAmxRows; ++r) {
                const __m512 d = _mm512_mul_ps(_mm512_set1_ps(wb.d[r]), dy);
                const __m512 dmin = _mm512_mul_ps(_mm512_set1_ps(wb.dmin[r]), dy);
                __m512 a = _mm512_load_ps(acc[u][r]), am = _mm512_load_ps(acc_min[u][r]);
                for (int h = 0; h < 2; ++h) {
                    __m512i m = _mm512_setzero_si512();
                    for (int q = 4 * h; q < 4 * h + 4; ++q) {
                        m = _mm512_dpwssd_epi32(m, bp[q], _mm512_set1_epi32(wb.min_pair[r][q]));
                    }
                    a = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_load_si512(sums[u][h][r])), d, a);
                    am = _mm512_fmadd_ps(_mm512_cvtepi32_ps(m), dmin, am);
                }
                _mm512_store_ps(acc[u][r], a);
                _mm512_store_ps(acc_min[u][r], am);
            }
        }
    }
    for (int u = 0; u < G; ++u) {
        __m512 res[kAmxRows];
        for (int r = 0; r < kAmxRows; ++r) res[r] = _mm512_sub_ps(_mm512_load_ps(acc[u][r]), _mm512_load_ps(acc_min[u][r]));
        store_transposed(res, y + u * kAmxTokens * y_stride, y_stride, n_rows, u + 1 == G ? n_tokens : kAmxTokens);
    }
}

#undef HEARTH_AMX_Q2_HALF

}  // namespace

void amx_dot_q4_k(const AmxQ4_Kx16* w, const AmxQ8_Kx16* x, int64_t x_group, int n_groups, int64_t n, float* y,
                  int64_t y_stride, int n_rows, int n_tokens) {
    if (n_groups == 2) dot_q4_k_groups<2>(w, x, x_group, n, y, y_stride, n_rows, n_tokens);
    else dot_q4_k_groups<1>(w, x, x_group, n, y, y_stride, n_rows, n_tokens);
}

void amx_dot_q2_k(const AmxQ2_Kx16* w, const AmxQ8_Kx16* x, int64_t x_group, int n_groups, int64_t n, float* y,
                  int64_t y_stride, int n_rows, int n_tokens) {
    if (n_groups == 2) dot_q2_k_groups<2>(w, x, x_group, n, y, y_stride, n_rows, n_tokens);
    else dot_q2_k_groups<1>(w, x, x_group, n, y, y_stride, n_rows, n_tokens);
}

#undef HEARTH_AMX_SUB_BLOCK

}  // namespace hearth::backend

#else  // no AMX at compile time: amx_int8_available() keeps these from being called

namespace hearth::backend {
bool amx_kernels_built() { return false; }
AmxTileScope::AmxTileScope() {}
AmxTileScope::~AmxTileScope() {}
void amx_pack_q8_k(const std::byte* const*, int64_t, AmxQ8_Kx16*) {}
void amx_pack_q4_k(const std::byte* const*, int64_t, AmxQ4_Kx16*) {}
void amx_pack_q2_k(const std::byte* const*, int64_t, AmxQ2_Kx16*) {}
void amx_dot_q4_k(const AmxQ4_Kx16*, const AmxQ8_Kx16*, int64_t, int, int64_t, float*, int64_t, int, int) {}
void amx_dot_q2_k(const AmxQ2_Kx16*, const AmxQ8_Kx16*, int64_t, int, int64_t, float*, int64_t, int, int) {}
}  // namespace hearth::backend

#endif
