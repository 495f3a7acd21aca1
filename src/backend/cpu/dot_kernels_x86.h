// The x86 tile kernels of dot_kernels.h, written once and compiled once per SIMD level: only
// dot_kernels_avx2.cpp and dot_kernels_avx512.cpp include this file (which includes the rest:
// dot_kernels_x86_quantize.h, _block32.h, _kquants.h), each with its own target flags
// (cmake/simd_flags.cmake) and with HEARTH_KERNEL_VNNI set to 0 or 1. Everything here has
// internal linkage (anonymous namespace), so the two compilations never merge: a function built
// with AVX-512 must not be picked by the linker for the AVX2 path. For the same reason this file
// calls no inline function of another header (no STL, no base/fp16.h): only intrinsics.
//
// Numerics: every kernel reproduces the float operations of the quant/ reference vec_dot of its
// type one for one (same operands, same order, fma where the reference has fma); the files are
// compiled with -ffp-contract=off so that the compiler cannot fuse a separate multiply and add.
// Only integer partial sums are computed differently, and those are exact.
//
// Registers: the integer kernels work on 256-bit vectors. At the avx512 level the same code
// gets 32 vector registers (AVX-512VL) and the VNNI forms of the integer dot products
// (vpdpbusd, vpdpwssd), which is where most of its gain over avx2 comes from, and larger tiles;
// its float kernels (F32/F16/BF16) use 512-bit vectors, one per output.
//
// Weight rows are read with software prefetch in the single-token kernels (prefetch_ahead):
// decode streams every weight byte from DRAM once, and without it the kernels wait on memory
// about half the time.

#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "backend/cpu/dot_kernels.h"
#include "quant/q4_0.h"
#include "quant/q4_k.h"
#include "quant/q6_k.h"
#include "quant/q8_0.h"
#include "quant/q8_k.h"

#ifndef HEARTH_KERNEL_VNNI
#error "define HEARTH_KERNEL_VNNI (0 or 1) before including dot_kernels_x86.h"
#endif

namespace hearth::backend {
namespace {

using quant::BlockQ4_0;
using quant::BlockQ4_K;
using quant::BlockQ6_K;
using quant::BlockQ8_0;
using quant::BlockQ8_K;
using quant::QuantType;

inline float f16_to_f32(uint16_t h) { return _cvtsh_ss(h); }

inline __m256i load256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
inline __m128i load128(const void* p) { return _mm_loadu_si128(static_cast<const __m128i*>(p)); }

// acc + (for each int32 lane l) sum_{j=4l..4l+3} u[j] * s[j], u unsigned bytes, s signed bytes.
// Exact with VNNI; without it, through 16-bit pair sums, exact while every |u[2m]s[2m] +
// u[2m+1]s[2m+1]| < 2^15 (callers keep u <= 127 or u * |s| small enough).
inline __m256i dot_u8_s8(__m256i acc, __m256i u, __m256i s) {
#if HEARTH_KERNEL_VNNI
    return _mm256_dpbusd_epi32(acc, u, s);
#else
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
#endif
}

// acc + (per int32 lane) a[2l] * b[2l] + a[2l+1] * b[2l+1] for int16 a, b (exact).
inline __m256i dot_s16(__m256i acc, __m256i a, __m256i b) {
#if HEARTH_KERNEL_VNNI
    return _mm256_dpwssd_epi32(acc, a, b);
#else
    return _mm256_add_epi32(acc, _mm256_madd_epi16(a, b));
#endif
}

// Totals of the 8 int32 lanes of a, b, c, d: {sum a, sum b, sum c, sum d}.
inline __m128i sum_lanes4(__m256i a, __m256i b, __m256i c, __m256i d) {
    const __m256i ab = _mm256_hadd_epi32(a, b);
    const __m256i cd = _mm256_hadd_epi32(c, d);
    const __m256i abcd = _mm256_hadd_epi32(ab, cd);
    return _mm_add_epi32(_mm256_castsi256_si128(abcd), _mm256_extracti128_si256(abcd, 1));
}

// quant::detail::hsum8 (ggml's hsum_float_8): r[i] = a[i+4] + a[i], then (r0 + r2) + (r1 + r3).
inline float hsum8(__m256 a) {
    __m128 r = _mm_add_ps(_mm256_extractf128_ps(a, 1), _mm256_castps256_ps128(a));
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    r = _mm_add_ss(r, _mm_movehdup_ps(r));
    return _mm_cvtss_f32(r);
}

// Single-token matmuls read every weight byte once from DRAM, and the kernels compute at about
// the single-core streaming rate, so compute and memory must overlap. Every kernel prefetches
// each row kPrefetchBytes ahead of the block it works on, into L2: decode steps of several
// tokens stream the weights too (without it, a 2-token step took 2.2x a 1-token step and an
// 8-token packed step 1.6x, stalled on the first load of every block); in prompt batches the
// lines are mostly cached already and the prefetch costs one load-port slot per 64 bytes. Rows are contiguous,
// so R rows prefetching 16 KB ahead cover the rows of a later tile: together one sequential
// stream over the matrix. (Llama-3.2-1B Q4_K_M decode, one core: 7.7 s of CPU for 66 tokens
// without, 5.25 s with; 4 KB or T0 (into L1, which runs out of fill buffers) or NTA did worse.)
// A prefetch past the end of the matrix is harmless: it never faults.
#ifndef HEARTH_PREFETCH_BYTES
#define HEARTH_PREFETCH_BYTES 16384
#endif
constexpr int kPrefetchBytes = HEARTH_PREFETCH_BYTES;
template <class Block>
inline void prefetch_ahead(const Block* b) {
    const char* p = reinterpret_cast<const char*>(b) + kPrefetchBytes;
    for (size_t o = 0; o < sizeof(Block); o += 64) _mm_prefetch(p + o, _MM_HINT_T1);
}

// ---------------------------------------------------------------------------------------------
// Q8_0 x Q8_0 (quant::vec_dot_q8_0): 8 float lanes per output; per block, lane l takes the exact
// int sum of elements 4l..4l+3 and acc[l] = fma(d_x * d_y, lane, acc[l]); then hsum8.
template <int R, int C>
void dot_q8_0(const std::byte* const* w, const std::byte* const* x, int64_t n, float* out) {
    const BlockQ8_0* wr[R];
    const BlockQ8_0* xc[C];
    for (int r = 0; r < R; ++r) wr[r] = reinterpret_cast<const BlockQ8_0*>(w[r]);
    for (int c = 0; c < C; ++c) xc[c] = reinterpret_cast<const BlockQ8_0*>(x[c]);
    __m256 acc[R][C];
    for (int r = 0; r < R; ++r)
        for (int c = 0; c < C; ++c) acc[r][c] = _mm256_setzero_ps();
    const int64_t nb = n / 32;
    for (int64_t i = 0; i < nb; ++i) {
        for (int r = 0; r < R; ++r) prefetch_ahead(wr[r] + i);
        __m256i yq[C], ybase[C];
        __m256 dy[C];
        for (int c = 0; c < C; ++c) {
            yq[c] = load256(xc[c][i].qs);
            dy[c] = _mm256_set1_ps(f16_to_f32(xc[c][i].d));
#if HEARTH_KERNEL_VNNI
            // (x + 128) . y - 128 * sum(y): exact for every byte value.
            ybase[c] = _mm256_sub_epi32(_mm256_setzero_si256(),
                                        _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8((char)0x80), yq[c]));
#else
            ybase[c] = _mm256_setzero_si256();
#endif
        }
        for (int r = 0; r < R; ++r) {
            const __m256i xq = load256(wr[r][i].qs);
            const __m256 dx = _mm256_set1_ps(f16_to_f32(wr[r][i].d));
#if HEARTH_KERNEL_VNNI
            const __m256i xu = _mm256_xor_si256(xq, _mm256_set1_epi8((char)0x80));
#else
            // |x| . (y with x's sign): exact while y != -128 (activation quants are in [-127, 127]).
            const __m256i xu = _mm256_abs_epi8(xq);
#endif
            for (int c = 0; c < C; ++c) {
#if HEARTH_KERNEL_VNNI
                const __m256i lanes = _mm256_dpbusd_epi32(ybase[c], xu, yq[c]);
#else
                const __m256i lanes = dot_u8_s8(ybase[c], xu, _mm256_sign_epi8(yq[c], xq));
#endif
                acc[r][c] = _mm256_fmadd_ps(_mm256_mul_ps(dx, dy[c]), _mm256_cvtepi32_ps(lanes), acc[r][c]);
            }
        }
    }
    for (int r = 0; r < R; ++r)
        for (int c = 0; c < C; ++c) out[r * C + c] = hsum8(acc[r][c]);
}

// ---------------------------------------------------------------------------------------------
// Q4_0 x Q8_0 (quant::vec_dot_q4_0): one float accumulator per output, acc = fma(float(exact
// int dot of the block), d_x * d_y, acc). Vectorized across outputs: each group of 4 (row,
// token) pairs shares one 128-bit accumulator.
template <int R, int C>
void dot_q4_0(const std::byte* const* w, const std::byte* const* x, int64_t n, float* out) {
    static_assert((R * C) % 4 == 0);
    constexpr int P = R * C, G = P / 4;
    const BlockQ4_0* wr[R];
    const BlockQ8_0* xc[C];
    for (int r = 0; r < R; ++r) wr[r] = reinterpret_cast<const BlockQ4_0*>(w[r]);
    for (int c = 0; c < C; ++c) xc[c] = reinterpret_cast<const BlockQ8_0*>(x[c]);
    __m128 acc[G];
    for (int g = 0; g < G; ++g) acc[g] = _mm_setzero_ps();
    const int64_t nb = n / 32;
    for (int64_t i = 0; i < nb; ++i) {
        for (int r = 0; r < R; ++r) prefetch_ahead(wr[r] + i);
        __m256i yq[C], ybase[C];
        float dy[C], dx[R];
        for (int c = 0; c < C; ++c) {
            yq[c] = load256(xc[c][i].qs);
            dy[c] = f16_to_f32(xc[c][i].d);
#if HEARTH_KERNEL_VNNI
            // (code - 8) . y = code . y - 8 * sum(y), as int32 lanes.
            ybase[c] = _mm256_sub_epi32(_mm256_setzero_si256(),
                                        _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8(8), yq[c]));
#else
            // 8 * (y[2m] + y[2m+1]) as int16, subtracted from the code . y pair sums.
            ybase[c] = _mm256_maddubs_epi16(_mm256_set1_epi8(8), yq[c]);
#endif
        }
        __m256i lanes[P];
        for (int r = 0; r < R; ++r) {
            const __m128i packed = load128(wr[r][i].qs);
            const __m256i codes = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(packed, 4), packed),
                                                   _mm256_set1_epi8(0x0F));  // elements 0..31, 0..15
            dx[r] = f16_to_f32(wr[r][i].d);
            for (int c = 0; c < C; ++c) {
#if HEARTH_KERNEL_VNNI
                lanes[r * C + c] = _mm256_dpbusd_epi32(ybase[c], codes, yq[c]);
#else
                lanes[r * C + c] = _mm256_madd_epi16(_mm256_sub_epi16(_mm256_maddubs_epi16(codes, yq[c]), ybase[c]),
                                                     _mm256_set1_epi16(1));
#endif
            }
        }
        for (int g = 0; g < G; ++g) {
            const int p = 4 * g;
            const __m128i sumi = sum_lanes4(lanes[p], lanes[p + 1], lanes[p + 2], lanes[p + 3]);
            const __m128 d = _mm_set_ps(dx[(p + 3) / C] * dy[(p + 3) % C], dx[(p + 2) / C] * dy[(p + 2) % C],
                                        dx[(p + 1) / C] * dy[(p + 1) % C], dx[p / C] * dy[p % C]);
            acc[g] = _mm_fmadd_ps(_mm_cvtepi32_ps(sumi), d, acc[g]);
        }
    }
    for (int g = 0; g < G; ++g) _mm_storeu_ps(out + 4 * g, acc[g]);
}

// The same dot products with 8 tokens in the lanes (activations packed by pack_q8_0_x8): per row
// and block, one int32 lane per token holds the exact (code - 8) . q8, from 4-byte broadcasts of
// the row's codes; then acc = fma(float(sumi), d_x * d_y, acc) lane by lane, as the reference.
template <int R>
void dot_q4_0_x8(const std::byte* const* w, const std::byte* packed, int64_t n, float* out) {
    const BlockQ4_0* wr[R];
    for (int r = 0; r < R; ++r) wr[r] = reinterpret_cast<const BlockQ4_0*>(w[r]);
    const auto* xb = reinterpret_cast<const PackedQ8_0x8*>(packed);
    __m256 acc[R];
    for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
    alignas(32) uint8_t codes[R][32];  // [row][element] 4-bit codes of the current block
    const int64_t nb = n / 32;
    for (int64_t i = 0; i < nb; ++i) {
        for (int r = 0; r < R; ++r) prefetch_ahead(wr[r] + i);
        const PackedQ8_0x8& y = xb[i];
        const __m256 dy = _mm256_loadu_ps(y.d);
        for (int r = 0; r < R; ++r) {
            const __m128i q = load128(wr[r][i].qs);
            _mm_store_si128(reinterpret_cast<__m128i*>(codes[r]), _mm_and_si128(q, _mm_set1_epi8(0x0F)));
            _mm_store_si128(reinterpret_cast<__m128i*>(codes[r] + 16), _mm_and_si128(_mm_srli_epi16(q, 4), _mm_set1_epi8(0x0F)));
        }
        __m256i sum[R];
#if HEARTH_KERNEL_VNNI
        const __m256i base = load256(y.neg8sum);
        for (int r = 0; r < R; ++r) sum[r] = base;
        for (int k = 0; k < 8; ++k) {
            const __m256i yv = load256(y.qs[k]);
            for (int r = 0; r < R; ++r) {
                int32_t c4;
                std::memcpy(&c4, codes[r] + 4 * k, 4);
                sum[r] = _mm256_dpbusd_epi32(sum[r], _mm256_set1_epi32(c4), yv);
            }
        }
#else
        // int16 pair sums: 8 steps of <= 2 * 15 * 128 stay below 2^15.
        __m256i sum16[R];
        for (int r = 0; r < R; ++r) sum16[r] = _mm256_setzero_si256();
        for (int k = 0; k < 8; ++k) {
            const __m256i yv = load256(y.qs[k]);
            for (int r = 0; r < R; ++r) {
                int32_t c4;
                std::memcpy(&c4, codes[r] + 4 * k, 4);
                sum16[r] = _mm256_add_epi16(sum16[r], _mm256_maddubs_epi16(_mm256_set1_epi32(c4), yv));
            }
        }
        const __m256i base = load256(y.neg8sum);
        for (int r = 0; r < R; ++r) sum[r] = _mm256_add_epi32(base, _mm256_madd_epi16(sum16[r], _mm256_set1_epi16(1)));
#endif
        for (int r = 0; r < R; ++r) {
            const __m256 d = _mm256_mul_ps(_mm256_set1_ps(f16_to_f32(wr[r][i].d)), dy);
            acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum[r]), d, acc[r]);
        }
    }
    for (int r = 0; r < R; ++r) _mm256_storeu_ps(out + kPackTokens * r, acc[r]);
}

// ---------------------------------------------------------------------------------------------
// Q4_K x Q8_K (quant::vec_dot_q4_k, the order of llama.cpp's repacked gemm): per output two
// float accumulators; per super-block and per pair of sub-blocks g (64 elements),
// acc = fma(sumi_g, d_x * d_y, acc) and acc_min = fma(summins_g, dmin_x * d_y, acc_min); the
// result is acc - acc_min. Vectorized across outputs in groups of 4 pairs.
template <int R, int C>
void dot_q4_k(const std::byte* const* w, const std::byte* const* x, int64_t n, float* out) {
    static_assert((R * C) % 4 == 0);
    constexpr int P = R * C, G = P / 4;
    const BlockQ4_K* wr[R];
    const BlockQ8_K* xc[C];
    for (int r = 0; r < R; ++r) wr[r] = reinterpret_cast<const BlockQ4_K*>(w[r]);
    for (int c = 0; c < C; ++c) xc[c] = reinterpret_cast<const BlockQ8_K*>(x[c]);
    __m128 acc[G], acc_min[G];
    for (int g = 0; g < G; ++g) acc[g] = acc_min[g] = _mm_setzero_ps();
    const int64_t nb = n / 256;
    for (int64_t i = 0; i < nb; ++i) {
        for (int r = 0; r < R; ++r) prefetch_ahead(wr[r] + i);
        // Rows: scales and mins unpacked to bytes (ggml's utmp shuffle): bytes 0-7 of sm[r] are
        // the 8 sub-block scales, bytes 8-15 the 8 mins.
        uint32_t sm[R][4];
        float dx[R], dminx[R];
        __m128i mins[R];     // [8] int16
        __m256i scales[R];   // [8] int16 scales, in both 128-bit halves (for vpshufb broadcasts)
        for (int r = 0; r < R; ++r) {
            const BlockQ4_K& b = wr[r][i];
            uint32_t u[3];
            std::memcpy(u, b.scales, 12);
            sm[r][3] = ((u[2] >> 4) & 0x0f0f0f0f) | (((u[1] >> 6) & 0x03030303) << 4);
            sm[r][2] = u[1] & 0x3f3f3f3f;
            sm[r][1] = (u[2] & 0x0f0f0f0f) | (((u[0] >> 6) & 0x03030303) << 4);
            sm[r][0] = u[0] & 0x3f3f3f3f;
            dx[r] = f16_to_f32(b.d);
            dminx[r] = f16_to_f32(b.dmin);
            mins[r] = _mm_cvtepu8_epi16(_mm_set_epi32(0, 0, (int)sm[r][3], (int)sm[r][2]));
            scales[r] = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_set_epi32(0, 0, (int)sm[r][1], (int)sm[r][0])));
        }
        float dy[C];
        __m128i bsum32[C];  // [8] int16: sums of the 32 activations of each sub-block
        for (int c = 0; c < C; ++c) {
            dy[c] = xc[c][i].d;
            bsum32[c] = _mm_hadd_epi16(load128(xc[c][i].bsums), load128(xc[c][i].bsums + 8));
        }
        // Per group of 4 pairs: d and dmin of each pair, and the min sums of each sub-block
        // pair g (transposed so that summin[q][g] holds the 4 pairs' values).
        __m128 d[G], dmin[G], summin[G][4];
        for (int q = 0; q < G; ++q) {
            __m128 m[4];
            float dv[4], dminv[4];
            for (int k = 0; k < 4; ++k) {
                const int r = (4 * q + k) / C, c = (4 * q + k) % C;
                dv[k] = dx[r] * dy[c];
                dminv[k] = dminx[r] * dy[c];
                m[k] = _mm_cvtepi32_ps(_mm_madd_epi16(mins[r], bsum32[c]));
            }
            _MM_TRANSPOSE4_PS(m[0], m[1], m[2], m[3]);
            for (int g = 0; g < 4; ++g) summin[q][g] = m[g];
            d[q] = _mm_loadu_ps(dv);
            dmin[q] = _mm_loadu_ps(dminv);
        }
        for (int g = 0; g < 4; ++g) {
            __m256i lanes[P];
            __m256i ylo[C], yhi[C];
            for (int c = 0; c < C; ++c) {
                ylo[c] = load256(xc[c][i].qs + 64 * g);
                yhi[c] = load256(xc[c][i].qs + 64 * g + 32);
            }
            for (int r = 0; r < R; ++r) {
                const __m256i q = load256(wr[r][i].qs + 32 * g);
                const __m256i lo = _mm256_and_si256(q, _mm256_set1_epi8(0x0F));
                const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), _mm256_set1_epi8(0x0F));
                // Scale 2g (2g + 1) in every int16 lane: bytes 4g, 4g + 1 (4g + 2, 4g + 3) of scales[r].
                const __m256i sc_lo = _mm256_shuffle_epi8(scales[r], _mm256_set1_epi16((short)((4 * g) | ((4 * g + 1) << 8))));
                const __m256i sc_hi = _mm256_shuffle_epi8(scales[r], _mm256_set1_epi16((short)((4 * g + 2) | ((4 * g + 3) << 8))));
                for (int c = 0; c < C; ++c) {
                    const __m256i s = dot_s16(_mm256_setzero_si256(), _mm256_maddubs_epi16(lo, ylo[c]), sc_lo);
                    lanes[r * C + c] = dot_s16(s, _mm256_maddubs_epi16(hi, yhi[c]), sc_hi);
                }
            }
            for (int q = 0; q < G; ++q) {
                const int p = 4 * q;
                const __m128i sumi = sum_lanes4(lanes[p], lanes[p + 1], lanes[p + 2], lanes[p + 3]);
                acc[q] = _mm_fmadd_ps(_mm_cvtepi32_ps(sumi), d[q], acc[q]);
                acc_min[q] = _mm_fmadd_ps(summin[q][g], dmin[q], acc_min[q]);
            }
        }
    }
    for (int q = 0; q < G; ++q) _mm_storeu_ps(out + 4 * q, _mm_sub_ps(acc[q], acc_min[q]));
}

// The same dot products with 8 tokens in the lanes (activations packed by pack_q8_k_x8): one
// vpdpbusd multiplies 4 code bytes of a row, broadcast, with the same 4 positions of 8 tokens.
// Per row and sub-block j the 8 lanes hold the exact int sums S_j of code . q8 for the 8 tokens;
// sumi_g = sc[2g] * S_2g + sc[2g+1] * S_2g+1 and the min sums are formed in float, which is exact
// (every value is an integer below 2^24: |S_j| <= 32 * 15 * 128, scales and mins <= 63,
// |bsum32| <= 32 * 128), so the accumulators see the reference's values in its order.
template <int R>
void dot_q4_k_x8(const std::byte* const* w, const std::byte* packed, int64_t n, float* out) {
    const BlockQ4_K* wr[R];
    for (int r = 0; r < R; ++r) wr[r] = reinterpret_cast<const BlockQ4_K*>(w[r]);
    const auto* xb = reinterpret_cast<const PackedQ8_Kx8*>(packed);
    __m256 acc[R], acc_min[R];
    for (int r = 0; r < R; ++r) acc[r] = acc_min[r] = _mm256_setzero_ps();
    alignas(32) uint8_t codes[R][256];  // [row][element] 4-bit codes of the current super-block
    alignas(32) float scale[R][8], min[R][8];  // [row][sub-block] 6-bit scales and mins
    const int64_t nb = n / 256;
    for (int64_t i = 0; i < nb; ++i) {
        for (int r = 0; r < R; ++r) prefetch_ahead(wr[r] + i);
        const PackedQ8_Kx8& y = xb[i];
        const __m256 dy = _mm256_loadu_ps(y.d);
        __m256 d[R], dmin[R];
        for (int r = 0; r < R; ++r) {
            const BlockQ4_K& b = wr[r][i];
            uint32_t u[3], sm[4];
            std::memcpy(u, b.scales, 12);
            sm[3] = ((u[2] >> 4) & 0x0f0f0f0f) | (((u[1] >> 6) & 0x03030303) << 4);
            sm[2] = u[1] & 0x3f3f3f3f;
            sm[1] = (u[2] & 0x0f0f0f0f) | (((u[0] >> 6) & 0x03030303) << 4);
            sm[0] = u[0] & 0x3f3f3f3f;
            _mm256_store_ps(scale[r], _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_set_epi32(0, 0, (int)sm[1], (int)sm[0]))));
            _mm256_store_ps(min[r], _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_set_epi32(0, 0, (int)sm[3], (int)sm[2]))));
            d[r] = _mm256_mul_ps(_mm256_set1_ps(f16_to_f32(b.d)), dy);
            dmin[r] = _mm256_mul_ps(_mm256_set1_ps(f16_to_f32(b.dmin)), dy);
            for (int g = 0; g < 4; ++g) {
                const __m256i q = load256(b.qs + 32 * g);
                _mm256_store_si256(reinterpret_cast<__m256i*>(codes[r] + 64 * g), _mm256_and_si256(q, _mm256_set1_epi8(0x0F)));
                _mm256_store_si256(reinterpret_cast<__m256i*>(codes[r] + 64 * g + 32),
                                   _mm256_and_si256(_mm256_srli_epi16(q, 4), _mm256_set1_epi8(0x0F)));
            }
        }
        for (int g = 0; g < 4; ++g) {
            __m256 s[2][R];  // [sub-block 2g + h][row] exact int sums, as float
            for (int h = 0; h < 2; ++h) {
                const int j = 2 * g + h;
#if HEARTH_KERNEL_VNNI
                __m256i sum[R];
                for (int r = 0; r < R; ++r) sum[r] = _mm256_setzero_si256();
                for (int k = 0; k < 8; ++k) {
                    const __m256i yv = load256(y.qs[8 * j + k]);
                    for (int r = 0; r < R; ++r) {
                        int32_t c4;
                        std::memcpy(&c4, codes[r] + 32 * j + 4 * k, 4);
                        sum[r] = _mm256_dpbusd_epi32(sum[r], _mm256_set1_epi32(c4), yv);
                    }
                }
                for (int r = 0; r < R; ++r) s[h][r] = _mm256_cvtepi32_ps(sum[r]);
#else
                // int16 pair sums: 8 steps of <= 2 * 15 * 128 stay below 2^15.
                __m256i sum16[R];
                for (int r = 0; r < R; ++r) sum16[r] = _mm256_setzero_si256();
                for (int k = 0; k < 8; ++k) {
                    const __m256i yv = load256(y.qs[8 * j + k]);
                    for (int r = 0; r < R; ++r) {
                        int32_t c4;
                        std::memcpy(&c4, codes[r] + 32 * j + 4 * k, 4);
                        sum16[r] = _mm256_add_epi16(sum16[r], _mm256_maddubs_epi16(_mm256_set1_epi32(c4), yv));
                    }
                }
                for (int r = 0; r < R; ++r) s[h][r] = _mm256_cvtepi32_ps(_mm256_madd_epi16(sum16[r], _mm256_set1_epi16(1)));
#endif
            }
            const __m256 b_lo = _mm256_loadu_ps(y.bsum32[2 * g]), b_hi = _mm256_loadu_ps(y.bsum32[2 * g + 1]);
            for (int r = 0; r < R; ++r) {
                const __m256 sumi = _mm256_fmadd_ps(s[1][r], _mm256_set1_ps(scale[r][2 * g + 1]),
                                                    _mm256_mul_ps(s[0][r], _mm256_set1_ps(scale[r][2 * g])));
                const __m256 summin = _mm256_fmadd_ps(b_hi, _mm256_set1_ps(min[r][2 * g + 1]),
                                                      _mm256_mul_ps(b_lo, _mm256_set1_ps(min[r][2 * g])));
                acc[r] = _mm256_fmadd_ps(sumi, d[r], acc[r]);
                acc_min[r] = _mm256_fmadd_ps(summin, dmin[r], acc_min[r]);
            }
        }
    }
    for (int r = 0; r < R; ++r) _mm256_storeu_ps(out + kPackTokens * r, _mm256_sub_ps(acc[r], acc_min[r]));
}

// ---------------------------------------------------------------------------------------------
// Q6_K x Q8_K (quant::vec_dot_q6_k, ggml's AVX2 order): per super-block 8 int32 lanes of
// scale * (code + 32) * q8 (element e in lane (e % 32) / 4) minus 32 * (bsums . scales) by
// pairs, then acc[l] = fma(d_y * d_x, float(lane), acc[l]); result hsum8(acc).
template <int R, int C>
void dot_q6_k(const std::byte* const* w, const std::byte* const* x, int64_t n, float* out) {
    const BlockQ6_K* wr[R];
    const BlockQ8_K* xc[C];
    for (int r = 0; r < R; ++r) wr[r] = reinterpret_cast<const BlockQ6_K*>(w[r]);
    for (int c = 0; c < C; ++c) xc[c] = reinterpret_cast<const BlockQ8_K*>(x[c]);
    __m256 acc[R][C];
    for (int r = 0; r < R; ++r)
        for (int c = 0; c < C; ++c) acc[r][c] = _mm256_setzero_ps();
    const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(0x03);
    const int64_t nb = n / 256;
    for (int64_t i = 0; i < nb; ++i) {
        for (int r = 0; r < R; ++r) prefetch_ahead(wr[r] + i);
        __m256i lanes[R][C];
        for (int r = 0; r < R; ++r) {
            const __m256i sc16 = _mm256_cvtepi8_epi16(load128(wr[r][i].scales));
            for (int c = 0; c < C; ++c) {
                const __m256i corr = _mm256_madd_epi16(load256(xc[c][i].bsums), sc16);
                lanes[r][c] = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(corr, 5));
            }
        }
        for (int h = 0; h < 2; ++h) {
            for (int k = 0; k < 4; ++k) {
                const int chunk = 4 * h + k;  // elements 32 * chunk .. + 31
                __m256i yq[C];
                for (int c = 0; c < C; ++c) yq[c] = load256(xc[c][i].qs + 32 * chunk);
                for (int r = 0; r < R; ++r) {
                    const BlockQ6_K& b = wr[r][i];
                    const __m256i ql = load256(b.ql + 64 * h + 32 * (k % 2));
                    const __m256i qh = load256(b.qh + 32 * h);
                    const __m256i low = k < 2 ? _mm256_and_si256(ql, m4) : _mm256_and_si256(_mm256_srli_epi16(ql, 4), m4);
                    const __m256i high = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * k), m2), 4);
                    const __m256i codes = _mm256_or_si256(low, high);  // code + 32, 0..63
                    const __m256i sc = _mm256_set_m128i(_mm_set1_epi16(b.scales[2 * chunk + 1]),
                                                        _mm_set1_epi16(b.scales[2 * chunk]));
                    for (int c = 0; c < C; ++c) lanes[r][c] = dot_s16(lanes[r][c], _mm256_maddubs_epi16(codes, yq[c]), sc);
                }
            }
        }
        for (int r = 0; r < R; ++r) {
            const float dx = f16_to_f32(wr[r][i].d);
            for (int c = 0; c < C; ++c) {
                const __m256 d = _mm256_set1_ps(xc[c][i].d * dx);
                acc[r][c] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(lanes[r][c]), acc[r][c]);
            }
        }
    }
    for (int r = 0; r < R; ++r)
        for (int c = 0; c < C; ++c) out[r * C + c] = hsum8(acc[r][c]);
}

// ---------------------------------------------------------------------------------------------
// F32 / F16 / BF16 (quant::vec_dot_f32/f16/bf16 for n a multiple of 16: tinyBLAS<16>'s order):
// 16 float lanes per output, acc[l] = fma(x[k+l], y[k+l], acc[l]) for k = 0, 16, ...; then
// h[i] = acc[i+8] + acc[i] and hsum8(h). Lanes 0-7 and 8-15 are two 256-bit accumulators.
struct LoadF32 {
    using T = float;
    static __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
};
struct LoadF16 {
    using T = uint16_t;
    static __m256 load8(const uint16_t* p) { return _mm256_cvtph_ps(load128(p)); }
};
struct LoadBF16 {
    using T = uint16_t;
    static __m256 load8(const uint16_t* p) {
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(load128(p)), 16));
    }
};

template <class L, int R, int C>
void dot_float(const std::byte* const* w, const std::byte* const* x, int64_t n, float* out) {
    using T = typename L::T;
    const T* wr[R];
    const T* xc[C];
    for (int r = 0; r < R; ++r) wr[r] = reinterpret_cast<const T*>(w[r]);
    for (int c = 0; c < C; ++c) xc[c] = reinterpret_cast<const T*>(x[c]);
    __m256 lo[R][C], hi[R][C];
    for (int r = 0; r < R; ++r)
        for (int c = 0; c < C; ++c) lo[r][c] = hi[r][c] = _mm256_setzero_ps();
    for (int64_t k = 0; k < n; k += 16) {
        __m256 ylo[C], yhi[C];
        for (int c = 0; c < C; ++c) {
            ylo[c] = L::load8(xc[c] + k);
            yhi[c] = L::load8(xc[c] + k + 8);
        }
        for (int r = 0; r < R; ++r) {
            const __m256 xlo = L::load8(wr[r] + k), xhi = L::load8(wr[r] + k + 8);
            for (int c = 0; c < C; ++c) {
                lo[r][c] = _mm256_fmadd_ps(xlo, ylo[c], lo[r][c]);
                hi[r][c] = _mm256_fmadd_ps(xhi, yhi[c], hi[r][c]);
            }
        }
    }
    for (int r = 0; r < R; ++r)
        for (int c = 0; c < C; ++c) out[r * C + c] = hsum8(_mm256_add_ps(hi[r][c], lo[r][c]));
}

#if HEARTH_KERNEL_VNNI
// GCC 12 implements several 512-bit intrinsics (extracts, casts, widening loads) with an
// undefined pass-through operand and then warns that it is uninitialized (a false positive).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
// The avx512 level keeps tinyBLAS's 16 lanes in one 512-bit register per output (twice the FMA
// width of two 256-bit halves); same operations, same order.
struct LoadF32x16 {
    using T = float;
    static __m512 load16(const float* p) { return _mm512_loadu_ps(p); }
};
struct LoadF16x16 {
    using T = uint16_t;
    static __m512 load16(const uint16_t* p) { return _mm512_cvtph_ps(load256(p)); }
};
struct LoadBF16x16 {
    using T = uint16_t;
    static __m512 load16(const uint16_t* p) {
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(load256(p)), 16));
    }
};

template <class L, int R, int C>
void dot_float16(const std::byte* const* w, const std::byte* const* x, int64_t n, float* out) {
    using T = typename L::T;
    const T* wr[R];
    const T* xc[C];
    for (int r = 0; r < R; ++r) wr[r] = reinterpret_cast<const T*>(w[r]);
    for (int c = 0; c < C; ++c) xc[c] = reinterpret_cast<const T*>(x[c]);
    __m512 acc[R][C];
    for (int r = 0; r < R; ++r)
        for (int c = 0; c < C; ++c) acc[r][c] = _mm512_setzero_ps();
    for (int64_t k = 0; k < n; k += 16) {
        __m512 yv[C];
        for (int c = 0; c < C; ++c) yv[c] = L::load16(xc[c] + k);
        for (int r = 0; r < R; ++r) {
            const __m512 xv = L::load16(wr[r] + k);
            for (int c = 0; c < C; ++c) acc[r][c] = _mm512_fmadd_ps(xv, yv[c], acc[r][c]);
        }
    }
    for (int r = 0; r < R; ++r) {
        for (int c = 0; c < C; ++c) {
            const __m512 a = acc[r][c];
            const __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1));
            out[r * C + c] = hsum8(_mm256_add_ps(hi, _mm512_castps512_ps256(a)));  // h[i] = a[i+8] + a[i]
        }
    }
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#endif

}  // namespace
}  // namespace hearth::backend

// The activation quantizers and the kernels of the other K-quant and 32-element block types
// (same rules, same namespace).
#include "backend/cpu/dot_kernels_x86_quantize.h"
#include "backend/cpu/dot_kernels_x86_block32.h"
#include "backend/cpu/dot_kernels_x86_kquants.h"

namespace hearth::backend {
namespace {

// ---------------------------------------------------------------------------------------------
// The table of this level. Tile shapes (set by the including file): HEARTH_TILE_ROWS x
// HEARTH_TILE_COLS for the integer types, HEARTH_TILE_ROWS x HEARTH_FLOAT_TILE_COLS for the
// float types (two accumulators per output), HEARTH_PACKED_ROWS x kPackTokens for the packed
// kernels; 4 x 1 for single tokens.
constexpr int kRows = HEARTH_TILE_ROWS, kCols = HEARTH_TILE_COLS, kFloatCols = HEARTH_FLOAT_TILE_COLS;
static_assert(kRows <= kMaxTileRows && kCols <= kMaxTileCols);

template <template <int, int> class K>
constexpr DotKernels make_kernels() {
    return {K<kRows, kCols>::fn, kRows, kCols, K<4, 1>::fn, 4, K<4, 4>::fn, K<4, 2>::fn};
}
template <int R, int C> struct KQ8_0 { static constexpr DotTileFn fn = &dot_q8_0<R, C>; };
template <int R, int C> struct KQ4_0 { static constexpr DotTileFn fn = &dot_q4_0<R, C>; };
template <int R, int C> struct KQ4_K { static constexpr DotTileFn fn = &dot_q4_k<R, C>; };
template <int R, int C> struct KQ6_K { static constexpr DotTileFn fn = &dot_q6_k<R, C>; };
template <int R, int C> struct KQ5_K { static constexpr DotTileFn fn = &dot_q5_k<R, C>; };
template <int R, int C> struct KQ3_K { static constexpr DotTileFn fn = &dot_q3_k<R, C>; };
template <int R, int C> struct KQ2_K { static constexpr DotTileFn fn = &dot_q2_k<R, C>; };
template <int R, int C> struct KIQ4_XS { static constexpr DotTileFn fn = &dot_iq4_xs<R, C>; };
template <int R, int C> struct KQ5_0 { static constexpr DotTileFn fn = &dot_q5_0<R, C>; };
template <int R, int C> struct KQ4_1 { static constexpr DotTileFn fn = &dot_q_1<BlockQ4_1, false, R, C>; };
template <int R, int C> struct KQ5_1 { static constexpr DotTileFn fn = &dot_q_1<BlockQ5_1, true, R, C>; };
template <int R, int C> struct KIQ4_NL { static constexpr DotTileFn fn = &dot_lut4<Iq4NlFormat, R, C>; };
template <int R, int C> struct KMXFP4 { static constexpr DotTileFn fn = &dot_lut4<Mxfp4Format, R, C>; };

#if HEARTH_KERNEL_VNNI
template <class L>
constexpr DotKernels make_float_kernels() {
    return {&dot_float16<L, kRows, kFloatCols>, kRows, kFloatCols, &dot_float16<L, 4, 1>, 4,
            &dot_float16<L, 4, 4>, &dot_float16<L, 4, 2>};
}
using LoadF32Level = LoadF32x16;
using LoadF16Level = LoadF16x16;
using LoadBF16Level = LoadBF16x16;
#else
template <class L>
constexpr DotKernels make_float_kernels() {
    return {&dot_float<L, kRows, kFloatCols>, kRows, kFloatCols, &dot_float<L, 4, 1>, 4, &dot_float<L, 4, 4>,
            &dot_float<L, 4, 2>};
}
using LoadF32Level = LoadF32;
using LoadF16Level = LoadF16;
using LoadBF16Level = LoadBF16;
#endif

// Q8_0 has a packed form at the VNNI level only (dot_q8_0_pairs_x8, 512-bit), of 4 rows: their
// accumulators take 16 of the 32 registers (3 to 6 rows measured the same). Measured
// (bench/backend/matmul_bench prefill/avx512/q8_0/2048x2048x512/t1, one core): tile 75-82 GFLOP/s,
// packed 140-155. At avx2 the same layout needs sign + maddubs + madd per 4 tokens and pair of
// lanes where vpdpbusd serves 8 tokens: estimated a few percent over the tile, so none there.
constexpr DotKernels kQ8_0 = [] {
    DotKernels k = make_kernels<KQ8_0>();
    k.quantize = &quantize_q8_0;
#if HEARTH_KERNEL_VNNI
    k.pack = &pack_q8_0_pairs_x8;
    k.packed_block_bytes = sizeof(PackedQ8_0Pairsx8);
    k.packed = &dot_q8_0_pairs_x8<4>;
    k.packed_rows = 4;
    k.prepare_weights = &prepare_q8_0_x4;
    k.prepared_block_bytes = sizeof(PreparedQ8_0x4);
    k.packed_prepared = &dot_q8_0_pairs_x8_prepared;
#endif
    return k;
}();
constexpr DotKernels kQ4_0 = [] {
    DotKernels k = make_kernels<KQ4_0>();
    k.quantize = &quantize_q8_0;
    k.pack = &pack_q8_0_x8;
    k.packed_block_bytes = sizeof(PackedQ8_0x8);
    k.packed = &dot_q4_0_x8<HEARTH_PACKED_ROWS>;
    k.packed_rows = HEARTH_PACKED_ROWS;
    return k;
}();
constexpr DotKernels kQ4_K = [] {
    DotKernels k = make_kernels<KQ4_K>();
    k.quantize = &quantize_q8_k;
    k.pack = &pack_q8_k_x8;
    k.packed_block_bytes = sizeof(PackedQ8_Kx8);
    k.packed = &dot_q4_k_x8<HEARTH_PACKED_ROWS>;
    k.packed_rows = HEARTH_PACKED_ROWS;
    return k;
}();
constexpr DotKernels kQ6_K = [] {
    DotKernels k = make_kernels<KQ6_K>();
    k.quantize = &quantize_q8_k;
    return k;
}();
template <template <int, int> class K>
constexpr DotKernels make_kernels_with(void (*quantize)(const float*, std::byte*, int64_t)) {
    DotKernels k = make_kernels<K>();
    k.quantize = quantize;
    return k;
}
constexpr DotKernels kQ5_K = make_kernels_with<KQ5_K>(&quantize_q8_k);
constexpr DotKernels kQ3_K = make_kernels_with<KQ3_K>(&quantize_q8_k);
constexpr DotKernels kQ2_K = [] {
    DotKernels k = make_kernels_with<KQ2_K>(&quantize_q8_k);
    k.pack = &pack_q8_k16_x8;
    k.packed_block_bytes = sizeof(PackedQ8_K16x8);
    k.packed = &dot_q2_k_x8<HEARTH_PACKED_ROWS>;
    k.packed_rows = HEARTH_PACKED_ROWS;
    return k;
}();
constexpr DotKernels kIQ4_XS = make_kernels_with<KIQ4_XS>(&quantize_q8_k);
// Q5_0, Q4_1 and Q5_1 have a packed form at the VNNI level only (dot_lanes_x8), of 2 rows: its
// 8 accumulators per row fill the registers.
template <template <int, int> class K>
constexpr DotKernels make_lanes_kernels(void (*quantize)(const float*, std::byte*, int64_t), PackActivationsFn pack,
                                        DotPackedFn packed) {
    DotKernels k = make_kernels_with<K>(quantize);
    // Chosen by the level, not by testing `packed`: comparing a function's address with null is
    // not a constant expression under the sanitizers' instrumentation (scripts/sanitize.sh).
#if HEARTH_KERNEL_VNNI
    k.pack = pack;
    k.packed_block_bytes = sizeof(PackedQ8Lanesx8);
    k.packed = packed;
    k.packed_rows = 2;
#else
    (void)pack;
    (void)packed;
#endif
    return k;
}
#if HEARTH_KERNEL_VNNI
constexpr DotPackedFn kQ5_0Packed = &dot_lanes_x8<BlockQ5_0, 16, false, 2>;
constexpr DotPackedFn kQ4_1Packed = &dot_lanes_x8<BlockQ4_1, 0, true, 2>;
constexpr DotPackedFn kQ5_1Packed = &dot_lanes_x8<BlockQ5_1, 0, true, 2>;
#else
constexpr DotPackedFn kQ5_0Packed = nullptr, kQ4_1Packed = nullptr, kQ5_1Packed = nullptr;
#endif
constexpr DotKernels kQ5_0 = make_lanes_kernels<KQ5_0>(&quantize_q8_0, &pack_q8_0_lanes_x8, kQ5_0Packed);
constexpr DotKernels kQ4_1 = make_lanes_kernels<KQ4_1>(&quantize_q8_1, &pack_q8_1_lanes_x8, kQ4_1Packed);
constexpr DotKernels kQ5_1 = make_lanes_kernels<KQ5_1>(&quantize_q8_1, &pack_q8_1_lanes_x8, kQ5_1Packed);
// IQ4_NL and MXFP4 have a packed form at the VNNI level only (dot_lut4_x8).
template <template <int, int> class K, class F>
constexpr DotKernels make_lut4_kernels() {
    DotKernels k = make_kernels_with<K>(&quantize_q8_0);
#if HEARTH_KERNEL_VNNI
    k.pack = &pack_q8_0_x8;
    k.packed_block_bytes = sizeof(PackedQ8_0x8);
    k.packed = &dot_lut4_x8<F, HEARTH_PACKED_ROWS>;
    k.packed_rows = HEARTH_PACKED_ROWS;
#endif
    return k;
}
constexpr DotKernels kIQ4_NL = make_lut4_kernels<KIQ4_NL, Iq4NlFormat>();
constexpr DotKernels kMXFP4 = make_lut4_kernels<KMXFP4, Mxfp4Format>();
constexpr DotKernels kF32 = make_float_kernels<LoadF32Level>();
constexpr DotKernels kF16 = make_float_kernels<LoadF16Level>();
constexpr DotKernels kBF16 = make_float_kernels<LoadBF16Level>();

const DotKernels* lookup_kernels(QuantType type, int64_t n) {
    switch (type) {
        case QuantType::q8_0: return &kQ8_0;
        case QuantType::q4_0: return &kQ4_0;
        case QuantType::q4_k: return &kQ4_K;
        case QuantType::q6_k: return &kQ6_K;
        case QuantType::q5_k: return &kQ5_K;
        case QuantType::q3_k: return &kQ3_K;
        case QuantType::q2_k: return &kQ2_K;
        case QuantType::iq4_xs: return &kIQ4_XS;
        case QuantType::q5_0: return &kQ5_0;
        case QuantType::q4_1: return &kQ4_1;
        case QuantType::q5_1: return &kQ5_1;
        case QuantType::iq4_nl: return &kIQ4_NL;
        case QuantType::mxfp4: return &kMXFP4;
        // The reference sums rows of other lengths in ggml_vec_dot's order (no kernel yet).
        case QuantType::f32: return n % 16 == 0 ? &kF32 : nullptr;
        case QuantType::f16: return n % 16 == 0 ? &kF16 : nullptr;
        case QuantType::bf16: return n % 16 == 0 ? &kBF16 : nullptr;
        default: return nullptr;
    }
}

}  // namespace
}  // namespace hearth::backend
