// Tile, column and (avx512) packed kernels of the 32-element block types Q5_0, Q4_1, Q5_1,
// IQ4_NL and MXFP4, and Q8_0's packed kernel (dot_kernels.h). Part of dot_kernels_x86.h: included only by it, after its
// helpers, once per SIMD level, under its rules (internal linkage, intrinsics only; see the top
// of dot_kernels_x86.h).
//
// Two float orders occur (each kernel keeps its reference's one for one):
//  - Q8_0's (Q5_0, Q4_1, Q5_1): 8 float lanes per output, lane l takes the exact int sum of
//    elements 4l..4l+3 of each block, acc[l] = fma(d_x * d_y, lane, acc[l]), then hsum8; Q4_1 and
//    Q5_1 add a scalar summs = fma(m_x, s_y, summs) per block (vectorized across groups of 4
//    outputs) and return hsum8(acc) + summs.
//  - Q4_0's (IQ4_NL, MXFP4: llama.cpp repacks them): one float per output,
//    acc = fma(float(exact int dot of the block), d_x * d_y, acc), vectorized across groups of 4
//    outputs.
#pragma once

#ifndef HEARTH_KERNEL_VNNI
#error "include dot_kernels_x86.h, not this file"
#endif

#include "quant/iq4_nl.h"
#include "quant/mxfp4.h"
#include "quant/q4_1.h"
#include "quant/q5_0.h"
#include "quant/q5_1.h"
#include "quant/q8_1.h"

namespace hearth::backend {
namespace {

using quant::BlockIQ4_NL;
using quant::BlockMXFP4;
using quant::BlockQ4_1;
using quant::BlockQ5_0;
using quant::BlockQ5_1;
using quant::BlockQ8_1;

// The 32 4-bit fields of a block's qs[16] in element order: byte j holds element j (low nibble)
// and j + 16 (high nibble).
inline __m256i nibbles32(const uint8_t* qs) {
    const __m128i q = load128(qs);
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), _mm256_set1_epi8(0x0F));
}

// 0x10 in byte j where bit j of the little-endian u32 at qh is set, else 0 (bit 4 of a 5-bit
// code; ggml's bytes_from_bits_32).
inline __m256i high_bits32(const uint8_t* qh) {
    uint32_t x32;
    std::memcpy(&x32, qh, 4);
    const __m256i shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0);
    __m256i bytes = _mm256_shuffle_epi8(_mm256_set1_epi32((int)x32), shuf);
    bytes = _mm256_or_si256(bytes, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));
    return _mm256_and_si256(_mm256_cmpeq_epi8(bytes, _mm256_set1_epi64x(-1)), _mm256_set1_epi8(0x10));
}

// Stores 32 bytes as two 128-bit halves. The packed kernels read these bytes back at once as
// 4-byte broadcasts; store forwarding serves such loads from a 128-bit store, but loads from the
// upper half of a 256-bit store stall until it commits (IQ4_NL's packed kernel ran at 3/4 speed).
inline void store_halves(uint8_t* dst, __m256i v) {
    _mm_store_si128(reinterpret_cast<__m128i*>(dst), _mm256_castsi256_si128(v));
    _mm_store_si128(reinterpret_cast<__m128i*>(dst + 16), _mm256_extracti128_si256(v, 1));
}

// ---------------------------------------------------------------------------------------------
// Q5_0 x Q8_0 (quant::vec_dot_q5_0): Q8_0's order on the codes - 16 (-16..15). Each int lane is
// code . q8 - 16 * (sum of its 4 q8), exact for every int8.
template <int R, int C>
void dot_q5_0(const std::byte* const* w, const std::byte* const* x, int64_t n, float* out) {
    const BlockQ5_0* wr[R];
    const BlockQ8_0* xc[C];
    for (int r = 0; r < R; ++r) wr[r] = reinterpret_cast<const BlockQ5_0*>(w[r]);
    for (int c = 0; c < C; ++c) xc[c] = reinterpret_cast<const BlockQ8_0*>(x[c]);
    __m256 acc[R][C];
    for (int r = 0; r < R; ++r)
        for (int c = 0; c < C; ++c) acc[r][c] = _mm256_setzero_ps();
    const int64_t nb = n / 32;
    for (int64_t i = 0; i < nb; ++i) {
        for (int r = 0; r < R; ++r) prefetch_ahead(wr[r] + i);
        __m256i ybase[C];
        __m256 dy[C];
        for (int c = 0; c < C; ++c) {
            const __m256i yq = load256(xc[c][i].qs);
            dy[c] = _mm256_set1_ps(f16_to_f32(xc[c][i].d));
#if HEARTH_KERNEL_VNNI
            ybase[c] = _mm256_sub_epi32(_mm256_setzero_si256(),
                                        _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8(16), yq));
#else
            ybase[c] = _mm256_maddubs_epi16(_mm256_set1_epi8(16), yq);  // 16 * (y[2m] + y[2m+1]), int16
#endif
        }
        for (int r = 0; r < R; ++r) {
            const BlockQ5_0& b = wr[r][i];
            const __m256i codes = _mm256_or_si256(nibbles32(b.qs), high_bits32(b.qh));  // 0..31
            const __m256 dx = _mm256_set1_ps(f16_to_f32(b.d));
            for (int c = 0; c < C; ++c) {
                const __m256i yq = load256(xc[c][i].qs);
#if HEARTH_KERNEL_VNNI
                const __m256i lanes = _mm256_dpbusd_epi32(ybase[c], codes, yq);
#else
                const __m256i lanes =
                    _mm256_madd_epi16(_mm256_sub_epi16(_mm256_maddubs_epi16(codes, yq), ybase[c]), _mm256_set1_epi16(1));
#endif
                acc[r][c] = _mm256_fmadd_ps(_mm256_mul_ps(dx, dy[c]), _mm256_cvtepi32_ps(lanes), acc[r][c]);
            }
        }
    }
    for (int r = 0; r < R; ++r)
        for (int c = 0; c < C; ++c) out[r * C + c] = hsum8(acc[r][c]);
}

// ---------------------------------------------------------------------------------------------
// Q4_1 / Q5_1 x Q8_1 (quant::vec_dot_q4_1, vec_dot_q5_1): Q8_0's order on the codes (0..15 or
// 0..31), plus summs = fma(m_x, s_y, summs) per block; result hsum8(acc) + summs.
template <class Block, bool kFiveBit, int R, int C>
void dot_q_1(const std::byte* const* w, const std::byte* const* x, int64_t n, float* out) {
    static_assert((R * C) % 4 == 0);
    constexpr int P = R * C, G = P / 4;
    const Block* wr[R];
    const BlockQ8_1* xc[C];
    for (int r = 0; r < R; ++r) wr[r] = reinterpret_cast<const Block*>(w[r]);
    for (int c = 0; c < C; ++c) xc[c] = reinterpret_cast<const BlockQ8_1*>(x[c]);
    __m256 acc[P];
    __m128 summs[G];
    for (int p = 0; p < P; ++p) acc[p] = _mm256_setzero_ps();
    for (int g = 0; g < G; ++g) summs[g] = _mm_setzero_ps();
    const int64_t nb = n / 32;
    for (int64_t i = 0; i < nb; ++i) {
        for (int r = 0; r < R; ++r) prefetch_ahead(wr[r] + i);
        float dy[C], sy[C], mx[R];
        for (int c = 0; c < C; ++c) {
            dy[c] = f16_to_f32(xc[c][i].d);
            sy[c] = f16_to_f32(xc[c][i].s);
        }
        for (int r = 0; r < R; ++r) {
            const Block& b = wr[r][i];
            __m256i codes = nibbles32(b.qs);
            if constexpr (kFiveBit) codes = _mm256_or_si256(codes, high_bits32(b.qh));
            const float dx = f16_to_f32(b.d);
            mx[r] = f16_to_f32(b.m);
            for (int c = 0; c < C; ++c) {
                const __m256i lanes = dot_u8_s8(_mm256_setzero_si256(), codes, load256(xc[c][i].qs));
                acc[r * C + c] =
                    _mm256_fmadd_ps(_mm256_set1_ps(dx * dy[c]), _mm256_cvtepi32_ps(lanes), acc[r * C + c]);
            }
        }
        for (int g = 0; g < G; ++g) {
            const int p = 4 * g;
            const __m128 m = _mm_set_ps(mx[(p + 3) / C], mx[(p + 2) / C], mx[(p + 1) / C], mx[p / C]);
            const __m128 s = _mm_set_ps(sy[(p + 3) % C], sy[(p + 2) % C], sy[(p + 1) % C], sy[p % C]);
            summs[g] = _mm_fmadd_ps(m, s, summs[g]);
        }
    }
    alignas(16) float sm_out[P];
    for (int g = 0; g < G; ++g) _mm_store_ps(sm_out + 4 * g, summs[g]);
    for (int p = 0; p < P; ++p) out[p] = hsum8(acc[p]) + sm_out[p];
}

// ---------------------------------------------------------------------------------------------
// IQ4_NL and MXFP4 x Q8_0 (quant::vec_dot_iq4_nl, vec_dot_mxfp4): Q4_0's order. The 4-bit
// indices select signed values from a 16-entry table (pshufb); the table holds value + kOffset
// as unsigned bytes, and the int sums are (value + kOffset) . q8 - kOffset * (sum of q8), exact
// for every int8. IQ4_NL at the avx2 level (values up to 127 do not fit the int16 pair sums with
// an offset) uses ggml's |value| . (q8 with value's sign) instead, exact while q8 != -128 (Q8_0
// activation quants lie in [-127, 127]).
struct Iq4NlFormat {
    using Block = BlockIQ4_NL;
    static constexpr const int8_t* kValues = quant::kIq4NlValues;
    static constexpr int kOffset = HEARTH_KERNEL_VNNI ? 128 : 0;  // 0: the sign trick
    static float scale(const Block& b) { return f16_to_f32(b.d); }
};
struct Mxfp4Format {
    using Block = BlockMXFP4;
    static constexpr const int8_t* kValues = quant::kMxfp4Values;
    static constexpr int kOffset = 12;  // values -12..12: value + 12 <= 24 keeps maddubs exact
    // quant::e8m0_to_f32_half: 2^(e - 128), subnormal for e < 2.
    static float scale(const Block& b) {
        const uint32_t bits = b.e < 2 ? 0x00200000u << b.e : (uint32_t)(b.e - 1) << 23;
        float f;
        std::memcpy(&f, &bits, 4);
        return f;
    }
};

template <class F, int R, int C>
void dot_lut4(const std::byte* const* w, const std::byte* const* x, int64_t n, float* out) {
    static_assert((R * C) % 4 == 0);
    constexpr int P = R * C, G = P / 4;
    using Block = typename F::Block;
    const Block* wr[R];
    const BlockQ8_0* xc[C];
    for (int r = 0; r < R; ++r) wr[r] = reinterpret_cast<const Block*>(w[r]);
    for (int c = 0; c < C; ++c) xc[c] = reinterpret_cast<const BlockQ8_0*>(x[c]);
    __m128 acc[G];
    for (int g = 0; g < G; ++g) acc[g] = _mm_setzero_ps();
    // value + kOffset per index, in both 128-bit lanes.
    const __m256i table = _mm256_add_epi8(_mm256_broadcastsi128_si256(load128(F::kValues)),
                                          _mm256_set1_epi8((char)F::kOffset));
    const int64_t nb = n / 32;
    for (int64_t i = 0; i < nb; ++i) {
        for (int r = 0; r < R; ++r) prefetch_ahead(wr[r] + i);
        __m256i yq[C], ybase[C];
        float dy[C], dx[R];
        for (int c = 0; c < C; ++c) {
            yq[c] = load256(xc[c][i].qs);
            dy[c] = f16_to_f32(xc[c][i].d);
            if constexpr (F::kOffset != 0) {
#if HEARTH_KERNEL_VNNI
                ybase[c] = _mm256_sub_epi32(_mm256_setzero_si256(),
                                            _mm256_dpbusd_epi32(_mm256_setzero_si256(),
                                                                _mm256_set1_epi8((char)F::kOffset), yq[c]));
#else
                ybase[c] = _mm256_maddubs_epi16(_mm256_set1_epi8((char)F::kOffset), yq[c]);
#endif
            }
        }
        __m256i lanes[P];
        for (int r = 0; r < R; ++r) {
            const Block& b = wr[r][i];
            const __m256i u = _mm256_shuffle_epi8(table, nibbles32(b.qs));
            dx[r] = F::scale(b);
            for (int c = 0; c < C; ++c) {
                if constexpr (F::kOffset == 0) {
                    lanes[r * C + c] = _mm256_madd_epi16(
                        _mm256_maddubs_epi16(_mm256_abs_epi8(u), _mm256_sign_epi8(yq[c], u)), _mm256_set1_epi16(1));
                } else {
#if HEARTH_KERNEL_VNNI
                    lanes[r * C + c] = _mm256_dpbusd_epi32(ybase[c], u, yq[c]);
#else
                    lanes[r * C + c] = _mm256_madd_epi16(_mm256_sub_epi16(_mm256_maddubs_epi16(u, yq[c]), ybase[c]),
                                                         _mm256_set1_epi16(1));
#endif
                }
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

#if HEARTH_KERNEL_VNNI
// Q5_0, Q4_1 and Q5_1 with 8 tokens in the lanes (activations packed by pack_q8_*_lanes_x8):
// per row, 8 float accumulators acc[k], one per lane of the reference (elements 4k..4k+3 of
// every block), each holding that lane for 8 tokens. Per block, one vpdpbusd of 4 code bytes
// (broadcast) with the same 4 positions of 8 tokens gives the exact int lane of 8 outputs, then
// acc[k] = fma(d_x * d_y, float(lane), acc[k]); summs = fma(m_x, s_y, summs) for Q4_1 / Q5_1. The
// end result is the reference's hsum8 tree, taken across the 8 accumulators (+ summs).
// VNNI only: without vpdpbusd each lane costs three instructions and the tile form is as fast.
template <class Block, int kCodeOffset, bool kHasMin, int R>
void dot_lanes_x8(const std::byte* const* w, const std::byte* packed, int64_t n, float* out) {
    const Block* wr[R];
    for (int r = 0; r < R; ++r) wr[r] = reinterpret_cast<const Block*>(w[r]);
    const auto* xb = reinterpret_cast<const PackedQ8Lanesx8*>(packed);
    __m256 acc[R][8], summs[R];
    for (int r = 0; r < R; ++r) {
        summs[r] = _mm256_setzero_ps();
        for (int k = 0; k < 8; ++k) acc[r][k] = _mm256_setzero_ps();
    }
    alignas(32) uint8_t codes[R][32];  // [row][element] unsigned codes of the current block
    const int64_t nb = n / 32;
    for (int64_t i = 0; i < nb; ++i) {
        for (int r = 0; r < R; ++r) prefetch_ahead(wr[r] + i);
        const PackedQ8Lanesx8& y = xb[i];
        const __m256 dy = _mm256_loadu_ps(y.d);
        __m256 d[R];
        for (int r = 0; r < R; ++r) {
            const Block& b = wr[r][i];
            __m256i c = nibbles32(b.qs);
            if constexpr (requires { b.qh; }) c = _mm256_or_si256(c, high_bits32(b.qh));
            store_halves(codes[r], c);
            d[r] = _mm256_mul_ps(_mm256_set1_ps(f16_to_f32(b.d)), dy);
            if constexpr (kHasMin) {
                summs[r] = _mm256_fmadd_ps(_mm256_set1_ps(f16_to_f32(b.m)), _mm256_loadu_ps(y.s), summs[r]);
            }
        }
        for (int k = 0; k < 8; ++k) {
            const __m256i yv = load256(y.qs[k]);
            // (code - offset) . q8 = code . q8 - offset * (sum of the 4 quants).
            static_assert(kCodeOffset == 0 || kCodeOffset == 16);
            const __m256i base = kCodeOffset ? _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(load256(y.gsum[k]), 4))
                                             : _mm256_setzero_si256();
            for (int r = 0; r < R; ++r) {
                int32_t c4;
                std::memcpy(&c4, codes[r] + 4 * k, 4);
                const __m256i lane = _mm256_dpbusd_epi32(base, _mm256_set1_epi32(c4), yv);
                acc[r][k] = _mm256_fmadd_ps(d[r], _mm256_cvtepi32_ps(lane), acc[r][k]);
            }
        }
    }
    for (int r = 0; r < R; ++r) {
        // hsum8 lane by lane: r_i = a[i+4] + a[i], then (r_0 + r_2) + (r_1 + r_3).
        __m256 h[4];
        for (int k = 0; k < 4; ++k) h[k] = _mm256_add_ps(acc[r][k + 4], acc[r][k]);
        __m256 total = _mm256_add_ps(_mm256_add_ps(h[0], h[2]), _mm256_add_ps(h[1], h[3]));
        if constexpr (kHasMin) total = _mm256_add_ps(total, summs[r]);
        _mm256_storeu_ps(out + kPackTokens * r, total);
    }
}

// The 8 bytes at p in all 8 64-bit lanes, by a broadcast load (a load-port uop only). Written as
// asm so that it stays a load: given intrinsics, GCC sees through the store of the bytes and
// builds each broadcast from registers with one or two shuffles on the vector ports the packed
// kernels are bound by (dot_q8_0_pairs_x8 ran 1.3x slower).
inline __m512i broadcast64(const uint8_t* p) {
    __m512i v;
    __asm__("vpbroadcastq %1, %0" : "=v"(v) : "m"(*reinterpret_cast<const uint64_t (*)[1]>(p)));
    return v;
}
// The float at p in all 16 lanes, by a broadcast load (same reason).
inline __m512 broadcast_f32(const float* p) {
    __m512 v;
    __asm__("vbroadcastss %1, %0" : "=v"(v) : "m"(*reinterpret_cast<const float (*)[1]>(p)));
    return v;
}

// Q8_0 x Q8_0 with 8 tokens in the lanes (activations packed by pack_q8_0_pairs_x8): Q8_0's
// order, two reference lanes of 8 tokens per 512-bit register. Per row, acc[p] holds lanes 2p and
// 2p + 1 (elements 8p..8p+7 of every block) of 8 tokens, one 64-bit pair per token. Per block, one
// vpdpbusd of the row's 8 code bytes (w ^ 0x80, unsigned; 64-bit broadcast) with the same 8
// positions of 8 tokens gives the exact int lanes of 16 (token, lane) pairs, code . q8 - 128 *
// (sum of the 4 quants) = w . q8 for every int8 w and q8; then acc[p] = fma(d_x * d_y, float(lane),
// acc[p]) as the reference. One vector FMA serves 16 of the reference's scalar FMAs, against 8 in
// the tile form (the kernel is float-bound: 8 FMAs per output and block for 32 multiply-adds).
// The end result is hsum8 lane by lane: r = acc[2] + acc[0] and acc[3] + acc[1] (r_0, r_1 and
// r_2, r_3 of each token), then (r_0 + r_2) + (r_1 + r_3).
// Cost per row and block: 12 vector ops on the 4 pairs, plus 6 for the row (code xor and its
// stores, scale conversion, d_x * d_y), on the 2 ports that run 512-bit vector ops. The prepared
// form (DotKernels::packed_prepared) takes codes and scales decoded once per matmul by
// prepare_q8_0_x4, leaving 1 for the row (d_x * d_y): measured 1.15-1.35x faster including the
// preparation (2048- and 8192-wide rows, 512 tokens, one core).
// The loops carry `#pragma GCC unroll`: unrolled before scalar replacement, acc[][] lives in 16
// registers; left rolled, GCC kept it in a stack array and stored all of it every block.
// (GCC 12 warns about the undefined pass-through operand of some 512-bit intrinsics, a false
// positive; see dot_float16.)
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
// The loop of both forms. Raw rows (kPrepared false): w is R row pointers, and each block's codes
// and scales are decoded here, for every group of tokens. Prepared (true): w points to [n / 32]
// PreparedQ8_0x4 blocks (R == 4).
template <int R, bool kPrepared>
void q8_0_pairs_x8(const void* w, const std::byte* packed, int64_t n, float* out) {
    const BlockQ8_0* wr[R];
    const PreparedQ8_0x4* wp = nullptr;
    if constexpr (kPrepared) {
        static_assert(R == 4);
        wp = static_cast<const PreparedQ8_0x4*>(w);
    } else {
        for (int r = 0; r < R; ++r) wr[r] = reinterpret_cast<const BlockQ8_0*>(static_cast<const std::byte* const*>(w)[r]);
    }
    const auto* xb = reinterpret_cast<const PackedQ8_0Pairsx8*>(packed);
    __m512 acc[R][4];
#pragma GCC unroll 32
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
        for (int p = 0; p < 4; ++p) acc[r][p] = _mm512_setzero_ps();
    alignas(32) uint8_t codes[R][32];  // [row][element] w ^ 0x80 of the current block (raw rows)
    const int64_t nb = n / 32;
    for (int64_t i = 0; i < nb; ++i) {
        const PackedQ8_0Pairsx8& y = xb[i];
        const __m512 dy = _mm512_loadu_ps(&y.d[0][0]);
        __m512 d[R];
        const uint8_t* cp[R];
        for (int r = 0; r < R; ++r) {
            if constexpr (kPrepared) {
                d[r] = _mm512_mul_ps(broadcast_f32(&wp[i].d[r]), dy);
                cp[r] = wp[i].codes[r];
            } else {
                prefetch_ahead(wr[r] + i);
                store_halves(codes[r], _mm256_xor_si256(load256(wr[r][i].qs), _mm256_set1_epi8((char)0x80)));
                d[r] = _mm512_mul_ps(_mm512_set1_ps(f16_to_f32(wr[r][i].d)), dy);
                cp[r] = codes[r];
            }
        }
#pragma GCC unroll 4
        for (int p = 0; p < 4; ++p) {
            const __m512i yv = _mm512_loadu_si512(y.qs[p]);
            const __m512i base = _mm512_loadu_si512(y.neg128gsum[p]);
#pragma GCC unroll 32
            for (int r = 0; r < R; ++r) {
                const __m512i lane = _mm512_dpbusd_epi32(base, broadcast64(cp[r] + 8 * p), yv);
                acc[r][p] = _mm512_fmadd_ps(d[r], _mm512_cvtepi32_ps(lane), acc[r][p]);
            }
        }
    }
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 0, 2, 4, 6, 8, 10, 12, 14);
#pragma GCC unroll 32
    for (int r = 0; r < R; ++r) {
        const __m512 s = _mm512_add_ps(_mm512_add_ps(acc[r][2], acc[r][0]), _mm512_add_ps(acc[r][3], acc[r][1]));
        const __m512 total = _mm512_add_ps(s, _mm512_permute_ps(s, 0xB1));  // s_0 + s_1 in both lanes of a pair
        _mm256_storeu_ps(out + kPackTokens * r, _mm512_castps512_ps256(_mm512_permutexvar_ps(even, total)));
    }
}

template <int R>
void dot_q8_0_pairs_x8(const std::byte* const* w, const std::byte* packed, int64_t n, float* out) {
    q8_0_pairs_x8<R, false>(w, packed, n, out);
}

// The prepared form (DotKernels::packed_prepared) of dot_q8_0_pairs_x8<4>.
void dot_q8_0_pairs_x8_prepared(const std::byte* prepared, const std::byte* packed, int64_t n, float* out) {
    q8_0_pairs_x8<4, true>(prepared, packed, n, out);
}

// DotKernels::prepare_weights of dot_q8_0_pairs_x8_prepared: 4 Q8_0 rows of n elements ->
// [n / 32] PreparedQ8_0x4.
void prepare_q8_0_x4(const std::byte* const* w, int64_t n, std::byte* dst) {
    const BlockQ8_0* wr[4];
    for (int r = 0; r < 4; ++r) wr[r] = reinterpret_cast<const BlockQ8_0*>(w[r]);
    auto* out = reinterpret_cast<PreparedQ8_0x4*>(dst);
    for (int64_t i = 0; i < n / 32; ++i) {
        for (int r = 0; r < 4; ++r) {
            out[i].d[r] = f16_to_f32(wr[r][i].d);
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(out[i].codes[r]),
                                _mm256_xor_si256(load256(wr[r][i].qs), _mm256_set1_epi8((char)0x80)));
        }
    }
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

// The same IQ4_NL / MXFP4 dot products with 8 tokens in the lanes (activations packed by
// pack_q8_0_x8), as dot_q4_0_x8: per row and block, one int32 lane per token holds the exact
// (value + 128) . q8 - 128 * sum(q8) from 4-byte broadcasts of the row's table bytes; then
// acc = fma(float(sumi), d_x * d_y, acc) lane by lane. (VNNI only: without vpdpbusd the int16
// pair sums of values up to 127 would need a widening step per 4 elements.)
template <class F, int R>
void dot_lut4_x8(const std::byte* const* w, const std::byte* packed, int64_t n, float* out) {
    using Block = typename F::Block;
    const Block* wr[R];
    for (int r = 0; r < R; ++r) wr[r] = reinterpret_cast<const Block*>(w[r]);
    const auto* xb = reinterpret_cast<const PackedQ8_0x8*>(packed);
    __m256 acc[R];
    for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
    const __m256i table = _mm256_xor_si256(_mm256_broadcastsi128_si256(load128(F::kValues)), _mm256_set1_epi8((char)0x80));
    alignas(32) uint8_t codes[R][32];  // [row][element] value + 128 of the current block
    const int64_t nb = n / 32;
    for (int64_t i = 0; i < nb; ++i) {
        for (int r = 0; r < R; ++r) prefetch_ahead(wr[r] + i);
        const PackedQ8_0x8& y = xb[i];
        const __m256 dy = _mm256_loadu_ps(y.d);
        for (int r = 0; r < R; ++r) {
            store_halves(codes[r], _mm256_shuffle_epi8(table, nibbles32(wr[r][i].qs)));
        }
        const __m256i base = _mm256_slli_epi32(load256(y.neg8sum), 4);  // -128 * sum of the quants
        __m256i sum[R];
        for (int r = 0; r < R; ++r) sum[r] = base;
        for (int k = 0; k < 8; ++k) {
            const __m256i yv = load256(y.qs[k]);
            for (int r = 0; r < R; ++r) {
                int32_t c4;
                std::memcpy(&c4, codes[r] + 4 * k, 4);
                sum[r] = _mm256_dpbusd_epi32(sum[r], _mm256_set1_epi32(c4), yv);
            }
        }
        for (int r = 0; r < R; ++r) {
            const __m256 d = _mm256_mul_ps(_mm256_set1_ps(F::scale(wr[r][i])), dy);
            acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum[r]), d, acc[r]);
        }
    }
    for (int r = 0; r < R; ++r) _mm256_storeu_ps(out + kPackTokens * r, acc[r]);
}
#endif

}  // namespace
}  // namespace hearth::backend
