// The x86 attention kernels of attention_kernels.h, written once and compiled once per SIMD
// level: only attention_avx2.cpp and attention_avx512.cpp include this file, each with its own
// target flags (cmake/simd_flags.cmake) and HEARTH_ATTN_AVX512 set to 0 or 1. Everything here
// has internal linkage and calls no inline function of another header (no STL): a copy built
// with AVX-512 must never be what the linker picks for another path (dot_kernels_x86.h has the
// same rule). libm's tanhf / expf are plain external functions and safe to call.
//
// Numerics (the reference is backend/ref/attention.cpp; every line below names what it mirrors):
// - K·q (f32 / f16 cache): ggml_vec_dot_f32's order: 4 accumulators of 16 lanes over 64-element
//   steps, (a0 + a2) + (a1 + a3), hsum16, then the tail added element by element. An f16 row is
//   first widened to f32 (exact). 16 dots (16 KV cells of one chunk) are reduced together by a
//   transposing shuffle tree that performs exactly the adds of hsum16 for each of them.
// - K·q (q8_0 / q4_0 cache): quant::vec_dot_q8_0 / vec_dot_q4_0 of the K row and the query
//   quantized to q8_0 (the caller quantizes it with the reference quantizer); exact integer
//   partial sums, the same float fmas, hsum8 by the same shuffle tree.
// - softmax: ggml_vexp (backend/ref/unary.h) vectorized with the same fmas; 2^n scaling by
//   scalef (AVX-512) or by two exact-then-once-rounded multiplies (AVX2): both give ldexp's
//   correctly rounded result. Chunks of 16 cells aligned on the cell index, hsum16 per chunk,
//   summed in double, sink added with expf, times the f32 inverse.
// - V·P: cell j goes to lane j % 16 (head dims here are multiples of 16, so tinyBLAS's order);
//   each lane receives its cells in increasing j with one fma each; the 16 lanes are reduced
//   with hsum16's tree, vertically (one vector of 16 output dims at a time).
// Files are compiled with -ffp-contract=off: no multiply and add the source keeps apart is fused.

#include <immintrin.h>
#include <math.h>

#include <cstddef>
#include <cstdint>

#include "backend/cpu/attention_kernels.h"
#include "quant/q4_0.h"
#include "quant/q8_0.h"

#ifndef HEARTH_ATTN_AVX512
#error "define HEARTH_ATTN_AVX512 (0 or 1) before including attention_kernels_x86.h"
#endif

#if HEARTH_ATTN_AVX512 && defined(__GNUC__) && !defined(__clang__)
// GCC 12 implements several 512-bit intrinsics with an undefined pass-through operand and then
// warns that it is uninitialized (a false positive; dot_kernels_x86.h does the same).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

// V16 (16 float lanes), hsum8 / v_hsum16 and v_exp (ggml_vexp).
#define HEARTH_VEC16_AVX512 HEARTH_ATTN_AVX512
#include "backend/cpu/vec16_x86.h"

namespace hearth::backend {
namespace {

using quant::BlockQ4_0;
using quant::BlockQ8_0;

inline int32_t min_i32(int32_t a, int32_t b) { return a < b ? a : b; }
inline int32_t max_i32(int32_t a, int32_t b) { return a < b ? b : a; }

// Bits first..last-1 set (0 <= first < last <= 16): the valid lanes of a chunk.
inline unsigned lane_mask(int first, int last) { return ((1u << last) - 1u) & ~((1u << first) - 1u); }

inline float v_hmax(V16 a) {
    __m256 m = _mm256_max_ps(v_hi(a), v_lo(a));
    __m128 r = _mm_max_ps(_mm256_extractf128_ps(m, 1), _mm256_castps256_ps128(m));
    r = _mm_max_ps(r, _mm_movehl_ps(r, r));
    r = _mm_max_ss(r, _mm_movehdup_ps(r));
    return _mm_cvtss_f32(r);
}

// Lane L of the result = hsum8(h[L]) for 8 vectors, with exactly hsum8's adds: a shuffle tree
// whose every add pairs the same two values hsum8 pairs. The tree leaves its results in lane
// order [s0 s2 s4 s6 | s1 s3 s5 s7] of its input slots s, so slot s is fed vector kSlot8[s].
inline __m256 reduce8(const __m256 (&h)[8]) {
    constexpr int kSlot8[8] = {0, 4, 1, 5, 2, 6, 3, 7};
    __m256 t[4];
    for (int m = 0; m < 4; ++m) {
        const __m256 x = h[kSlot8[2 * m]], y = h[kSlot8[2 * m + 1]];
        // [x.lo4 | y.lo4] + [x.hi4 | y.hi4]: r = a[i+4] + a[i] of both.
        t[m] = _mm256_add_ps(_mm256_permute2f128_ps(x, y, 0x31), _mm256_permute2f128_ps(x, y, 0x20));
    }
    // Per 128-bit half: [r0 + r2, r1 + r3] of two vectors.
    const __m256 u0 = _mm256_add_ps(_mm256_shuffle_ps(t[0], t[1], 0x44), _mm256_shuffle_ps(t[0], t[1], 0xEE));
    const __m256 u1 = _mm256_add_ps(_mm256_shuffle_ps(t[2], t[3], 0x44), _mm256_shuffle_ps(t[2], t[3], 0xEE));
    // (r0 + r2) + (r1 + r3).
    return _mm256_add_ps(_mm256_shuffle_ps(u0, u1, 0x88), _mm256_shuffle_ps(u0, u1, 0xDD));
}


// ---------------------------------------------------------------------------------------------
// K·q, 16 cells at once. rows[l]: the K head of lane l (every lane points at a valid row; lanes
// outside the visible range repeat one and are ignored by the caller). Result lane l = the
// reference's score of rows[l] before the scale.

// The vector part of ggml_vec_dot_f32 over np (a multiple of 64, > 0) elements:
// (a0 + a2) + (a1 + a3) of the 4 x 16-lane accumulators, still to be reduced with hsum16.
// NS = np / 64 when known at compile time (the query then stays in registers), else 0.
template <int NS>
inline V16 dot_f32_steps(const float* x, const float* y, int np) {
    if constexpr (NS > 0) np = 64 * NS;
    const V16 z = v_zero();
    V16 a0 = v_fma(v_load(x), v_load(y), z), a1 = v_fma(v_load(x + 16), v_load(y + 16), z);
    V16 a2 = v_fma(v_load(x + 32), v_load(y + 32), z), a3 = v_fma(v_load(x + 48), v_load(y + 48), z);
#pragma GCC unroll 4
    for (int i = 64; i < np; i += 64) {
        a0 = v_fma(v_load(x + i), v_load(y + i), a0);
        a1 = v_fma(v_load(x + i + 16), v_load(y + i + 16), a1);
        a2 = v_fma(v_load(x + i + 32), v_load(y + i + 32), a2);
        a3 = v_fma(v_load(x + i + 48), v_load(y + i + 48), a3);
    }
    return v_add(v_add(a0, a2), v_add(a1, a3));
}

#if HEARTH_ATTN_AVX512
// Lane L of the result = hsum16(a[L]) for 16 vectors, with exactly hsum16's adds (a shuffle
// tree; every add pairs the two values hsum16 pairs). The tree leaves the result of input slot
// k + 4 i in lane 4 k + i, so slot s is fed vector (s % 4) * 4 + s / 4.
inline V16 reduce16(const V16 (&a)[16]) {
    auto in = [&](int s) { return a[(s & 3) * 4 + (s >> 2)].v; };
    __m512 h[8];  // [h of slot 2m | h of slot 2m+1], h[i] = x[i+8] + x[i]
    for (int m = 0; m < 8; ++m) {
        const __m512 x = in(2 * m), y = in(2 * m + 1);
        h[m] = _mm512_add_ps(_mm512_shuffle_f32x4(x, y, 0xEE), _mm512_shuffle_f32x4(x, y, 0x44));
    }
    __m512 r[4];  // 128-bit block k: r of slot 4 t + k, r[i] = h[i+4] + h[i]
    for (int t = 0; t < 4; ++t)
        r[t] = _mm512_add_ps(_mm512_shuffle_f32x4(h[2 * t], h[2 * t + 1], 0xDD),
                             _mm512_shuffle_f32x4(h[2 * t], h[2 * t + 1], 0x88));
    // Per block: [r0 + r2, r1 + r3] of two slots, then their sum.
    const __m512 u0 = _mm512_add_ps(_mm512_shuffle_ps(r[0], r[1], 0x44), _mm512_shuffle_ps(r[0], r[1], 0xEE));
    const __m512 u1 = _mm512_add_ps(_mm512_shuffle_ps(r[2], r[3], 0x44), _mm512_shuffle_ps(r[2], r[3], 0xEE));
    return {_mm512_add_ps(_mm512_shuffle_ps(u0, u1, 0x88), _mm512_shuffle_ps(u0, u1, 0xDD))};
}
#else
// The same on two halves of 8: hsum8 of (hi + lo).
inline __m256 reduce8_of16(const V16 (&a)[8]) {
    __m256 h[8];
    for (int i = 0; i < 8; ++i) h[i] = _mm256_add_ps(v_hi(a[i]), v_lo(a[i]));
    return reduce8(h);
}
#endif

// ggml_vec_dot_f32(rows[l], q, n) for the 16 lanes (n a multiple of 16; NS as above).
template <int NS>
V16 dots_f32(const float* const* rows, const float* q, int n) {
    const int np = n & ~63;
    V16 s = v_zero();
    if (np > 0) {
#if HEARTH_ATTN_AVX512
        V16 a[16];
#pragma GCC unroll 16
        for (int i = 0; i < 16; ++i) a[i] = dot_f32_steps<NS>(rows[i], q, np);
        s = reduce16(a);
#else
        __m256 half[2];
        for (int k = 0; k < 2; ++k) {
            V16 a[8];
#pragma GCC unroll 8
            for (int i = 0; i < 8; ++i) a[i] = dot_f32_steps<NS>(rows[8 * k + i], q, np);
            half[k] = reduce8_of16(a);
        }
        s = v_from_halves(half[0], half[1]);
#endif
    }
    if (np < n) {
        // The scalar tail: sumf += x[i] * y[i], each product rounded, added in order.
        alignas(64) float prod[16][64];
        alignas(64) float sum[16];
        const int tail = n - np;
        for (int l = 0; l < 16; ++l)
            for (int i = 0; i < tail; i += 16) v_store(prod[l] + i, v_mul(v_load(rows[l] + np + i), v_load(q + np + i)));
        v_store(sum, s);
        for (int l = 0; l < 16; ++l) {
            float acc = sum[l];
            for (int i = 0; i < tail; ++i) acc += prod[l][i];
            sum[l] = acc;
        }
        s = v_load(sum);
    }
    return s;
}

// quant::vec_dot_q8_0(rows[l], y, n): per block 8 int32 lanes of exact sums, acc = fma(dx * dy,
// float(lanes), acc), then hsum8. n / 32 <= kMaxQBlocks.
constexpr int kMaxQBlocks = 16;

V16 dots_q8_0(const BlockQ8_0* const* rows, const BlockQ8_0* y, int n) {
    const int nb = n / 32;
    __m256i yq[kMaxQBlocks];
#if HEARTH_ATTN_AVX512
    __m256i ybase[kMaxQBlocks];  // -128 * (sum of each lane's 4 quants): (x + 128) . y - 128 sum(y) = x . y
#endif
    float dy[kMaxQBlocks];
    for (int b = 0; b < nb; ++b) {
        yq[b] = load256(y[b].qs);
        dy[b] = f16_to_f32(y[b].d);
#if HEARTH_ATTN_AVX512
        ybase[b] = _mm256_sub_epi32(_mm256_setzero_si256(),
                                    _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8((char)0x80), yq[b]));
#endif
    }
    __m256 half[2];
    for (int k = 0; k < 2; ++k) {
        __m256 acc[8];
        for (int i = 0; i < 8; ++i) acc[i] = _mm256_setzero_ps();
        for (int b = 0; b < nb; ++b) {
#pragma GCC unroll 8
            for (int i = 0; i < 8; ++i) {
                const BlockQ8_0& x = rows[8 * k + i][b];
                const __m256i xq = load256(x.qs);
#if HEARTH_ATTN_AVX512
                const __m256i lanes = _mm256_dpbusd_epi32(ybase[b], _mm256_xor_si256(xq, _mm256_set1_epi8((char)0x80)), yq[b]);
#else
                // |x| . (y with x's sign): exact while y != -128 (the quantizer keeps y in [-127, 127]).
                const __m256i lanes = _mm256_madd_epi16(
                    _mm256_maddubs_epi16(_mm256_abs_epi8(xq), _mm256_sign_epi8(yq[b], xq)), _mm256_set1_epi16(1));
#endif
                acc[i] = _mm256_fmadd_ps(_mm256_set1_ps(f16_to_f32(x.d) * dy[b]), _mm256_cvtepi32_ps(lanes), acc[i]);
            }
        }
        half[k] = reduce8(acc);
    }
    return v_from_halves(half[0], half[1]);
}

// Totals of the 8 int32 lanes of a, b, c, d: {sum a, sum b, sum c, sum d} (exact).
inline __m128i sum_lanes4(__m256i a, __m256i b, __m256i c, __m256i d) {
    const __m256i abcd = _mm256_hadd_epi32(_mm256_hadd_epi32(a, b), _mm256_hadd_epi32(c, d));
    return _mm_add_epi32(_mm256_castsi256_si128(abcd), _mm256_extracti128_si256(abcd, 1));
}

// quant::vec_dot_q4_0(rows[l], y, n): per block the exact int dot of (code - 8) and y, then
// acc = fma(float(sumi), dx * dy, acc); one float accumulator per cell, here one lane each.
V16 dots_q4_0(const BlockQ4_0* const* rows, const BlockQ8_0* y, int n) {
    const int nb = n / 32;
    V16 acc = v_zero();
    for (int b = 0; b < nb; ++b) {
        const __m256i yq = load256(y[b].qs);
#if HEARTH_ATTN_AVX512
        const __m256i ybase = _mm256_sub_epi32(_mm256_setzero_si256(),
                                               _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8(8), yq));
#else
        const __m256i ybase = _mm256_maddubs_epi16(_mm256_set1_epi8(8), yq);  // 8 (y[2m] + y[2m+1]) as int16
#endif
        __m256i lanes[16];
        alignas(32) uint16_t dx[16];
#pragma GCC unroll 16
        for (int l = 0; l < 16; ++l) {
            const BlockQ4_0& x = rows[l][b];
            const __m128i packed = load128(x.qs);
            const __m256i codes = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(packed, 4), packed),
                                                   _mm256_set1_epi8(0x0F));  // elements 0..15, 16..31
#if HEARTH_ATTN_AVX512
            lanes[l] = _mm256_dpbusd_epi32(ybase, codes, yq);
#else
            lanes[l] = _mm256_madd_epi16(_mm256_sub_epi16(_mm256_maddubs_epi16(codes, yq), ybase), _mm256_set1_epi16(1));
#endif
            dx[l] = x.d;
        }
        const V16 sumi = v_from_i32x4(sum_lanes4(lanes[0], lanes[1], lanes[2], lanes[3]),
                                      sum_lanes4(lanes[4], lanes[5], lanes[6], lanes[7]),
                                      sum_lanes4(lanes[8], lanes[9], lanes[10], lanes[11]),
                                      sum_lanes4(lanes[12], lanes[13], lanes[14], lanes[15]));
        const V16 d = v_mul(v_load_f16(dx), v_set1(f16_to_f32(y[b].d)));
        acc = v_fma(sumi, d, acc);
    }
    return acc;
}

// ---------------------------------------------------------------------------------------------
// Cache types. Each gives a head's byte offset in a row and 16 values of a V head row as f32,
// widened or dequantized exactly as the reference's head_f32 / dequantize_row.
enum class Kind { f32, f16, q8_0, q4_0 };

struct CacheF32 {
    static constexpr Kind kKind = Kind::f32;
    static size_t head_bytes(int64_t n) { return (size_t)n * 4; }
    static V16 load_v(const std::byte* row, int e) { return v_load(reinterpret_cast<const float*>(row) + e); }
};
struct CacheF16 {
    static constexpr Kind kKind = Kind::f16;
    static size_t head_bytes(int64_t n) { return (size_t)n * 2; }
    static V16 load_v(const std::byte* row, int e) { return v_load_f16(reinterpret_cast<const uint16_t*>(row) + e); }
};
struct CacheQ8_0 {
    static constexpr Kind kKind = Kind::q8_0;
    static size_t head_bytes(int64_t n) { return (size_t)(n / 32) * sizeof(BlockQ8_0); }
    // qs[j] * d (dequantize_row_q8_0).
    static V16 load_v(const std::byte* row, int e) {
        const BlockQ8_0& b = reinterpret_cast<const BlockQ8_0*>(row)[e / 32];
        return v_mul(v_from_i8(b.qs + e % 32), v_set1(f16_to_f32(b.d)));
    }
};
struct CacheQ4_0 {
    static constexpr Kind kKind = Kind::q4_0;
    static size_t head_bytes(int64_t n) { return (size_t)(n / 32) * sizeof(BlockQ4_0); }
    // (code - 8) * d (dequantize_row_q4_0): elements 0-15 are the low nibbles, 16-31 the high.
    static V16 load_v(const std::byte* row, int e) {
        const BlockQ4_0& b = reinterpret_cast<const BlockQ4_0*>(row)[e / 32];
        const __m128i packed = load128(b.qs);
        const __m128i codes = _mm_and_si128(e % 32 ? _mm_srli_epi16(packed, 4) : packed, _mm_set1_epi8(0x0F));
        return v_mul(v_from_codes(codes), v_set1(f16_to_f32(b.d)));
    }
};

// Software prefetch of the cache lines of [p, p + n).
constexpr int kPrefetchChunks = 2;
template <int kHint>
inline void prefetch_bytes(const std::byte* p, size_t n) {
    const char* b = reinterpret_cast<const char*>(p);
    for (size_t o = 0; o < n; o += 64) _mm_prefetch(b + o, (enum _mm_hint)kHint);
    _mm_prefetch(b + n - 1, (enum _mm_hint)kHint);  // the last line when p is not line-aligned
}

// Position j of a sequence -> its row in the pool, walked forwards.
struct SlotWalker {
    const int32_t* table;
    int32_t block_size, block, offset;
    SlotWalker(const int32_t* t, int32_t bs, int32_t j) : table(t), block_size(bs), block(j / bs), offset(j % bs) {}
    int64_t slot() const { return (int64_t)table[block] * block_size + offset; }
    void advance(int32_t n) {
        offset += n;
        while (offset >= block_size) {
            offset -= block_size;
            ++block;
        }
    }
};

// ---------------------------------------------------------------------------------------------
// V·P for rows r0 .. r0+GT-1 of the item (row r: token r / n_heads, head r % n_heads) and output
// dims d0 .. d0 + 16 DT - 1: lane l holds cells j = l (mod 16) in increasing j, in registers;
// then hsum16 of the 16 lanes, vertically. A row only takes the cells its token sees (j < its
// hi): a run's rows share every cell below the smallest hi and split the last few.
template <class C, int GT, int DT>
void v_pass(const PagedKvView& kv, const AttentionGroupArgs& a, size_t v_off, int hd_v, int stride, int r0, int d0) {
    const int32_t lo = a.lo, base = lo & ~15;
    int32_t hi_row[GT];
    int32_t hi_min = a.hi[r0 / a.n_heads], hi_max = hi_min;
    for (int g = 0; g < GT; ++g) {
        hi_row[g] = a.hi[(r0 + g) / a.n_heads];
        hi_min = min_i32(hi_min, hi_row[g]);
        hi_max = max_i32(hi_max, hi_row[g]);
    }
    float* lanes = a.lane_sums;  // [16][GT][DT][16]
    for (int l = 0; l < 16; ++l) {
        V16 acc[GT][DT];
        for (int g = 0; g < GT; ++g)
            for (int t = 0; t < DT; ++t) acc[g][t] = v_zero();
        int32_t j = base + l;
        if (j < lo) j += 16;
        if (j < hi_max) {
            SlotWalker w(a.block_table, kv.block_size, j);
            const float* probs = a.scores + (size_t)r0 * stride;  // probs[g * stride + j - base]
            for (;;) {
                const std::byte* row = kv.v + w.slot() * (int64_t)kv.v_row_bytes + v_off;
                V16 v[DT];
                for (int t = 0; t < DT; ++t) v[t] = C::load_v(row, d0 + 16 * t);
                if (j < hi_min) {
                    for (int g = 0; g < GT; ++g) {
                        const V16 p = v_set1(probs[(size_t)g * stride + (j - base)]);
                        for (int t = 0; t < DT; ++t) acc[g][t] = v_fma(v[t], p, acc[g][t]);
                    }
                } else {
                    for (int g = 0; g < GT; ++g) {
                        if (j >= hi_row[g]) continue;
                        const V16 p = v_set1(probs[(size_t)g * stride + (j - base)]);
                        for (int t = 0; t < DT; ++t) acc[g][t] = v_fma(v[t], p, acc[g][t]);
                    }
                }
                j += 16;
                if (j >= hi_max) break;
                w.advance(16);
            }
        }
        for (int g = 0; g < GT; ++g)
            for (int t = 0; t < DT; ++t) v_store(lanes + ((l * GT + g) * DT + t) * 16, acc[g][t]);
    }
    for (int g = 0; g < GT; ++g) {
        const int r = r0 + g;
        float* out = a.out + (r / a.n_heads) * a.out_token_stride + (size_t)(r % a.n_heads) * hd_v + d0;
        for (int t = 0; t < DT; ++t) {
            auto lane = [&](int l) { return v_load(lanes + ((l * GT + g) * DT + t) * 16); };
            V16 h[8];
            for (int i = 0; i < 8; ++i) h[i] = v_add(lane(i + 8), lane(i));
            V16 q[4];
            for (int i = 0; i < 4; ++i) q[i] = v_add(h[i + 4], h[i]);
            v_store(out + 16 * t, v_add(v_add(q[0], q[2]), v_add(q[1], q[3])));
        }
    }
}

// Register budget of one V pass: GT x DT accumulators of 16 lanes. avx512: up to 16 zmm, as
// 4 rows x 4 vectors (few rows: a decode step's group) or 8 rows x 2 vectors (a prompt run:
// half the V bytes read per row); avx2: 8 ymm, 4 rows x 1 vector.
#if HEARTH_ATTN_AVX512
constexpr int kMaxGT = 8;
constexpr int max_dt(int gt) { return gt <= 4 ? 4 : 2; }
#else
constexpr int kMaxGT = 4;
constexpr int max_dt(int) { return 1; }
#endif
static_assert(16 * 16 * 16 <= kLaneSumFloats);

template <class C, int GT>
void v_pass_dt(int dt, const PagedKvView& kv, const AttentionGroupArgs& a, size_t v_off, int hd_v, int stride, int r0,
               int d0) {
    switch (dt) {
        case 1: return v_pass<C, GT, 1>(kv, a, v_off, hd_v, stride, r0, d0);
#if HEARTH_ATTN_AVX512
        case 2: return v_pass<C, GT, 2>(kv, a, v_off, hd_v, stride, r0, d0);
        // 3 and 4 vectors only with up to 4 rows (max_dt never asks for more: 16 accumulators).
        case 3:
            if constexpr (GT <= 4) return v_pass<C, GT, 3>(kv, a, v_off, hd_v, stride, r0, d0);
            return;
        case 4:
            if constexpr (GT <= 4) return v_pass<C, GT, 4>(kv, a, v_off, hd_v, stride, r0, d0);
            return;
#endif
    }
}

template <class C>
void v_pass_any(int gt, int dt, const PagedKvView& kv, const AttentionGroupArgs& a, size_t v_off, int hd_v, int stride,
                int r0, int d0) {
    switch (gt) {
        case 1: return v_pass_dt<C, 1>(dt, kv, a, v_off, hd_v, stride, r0, d0);
        case 2: return v_pass_dt<C, 2>(dt, kv, a, v_off, hd_v, stride, r0, d0);
        case 3: return v_pass_dt<C, 3>(dt, kv, a, v_off, hd_v, stride, r0, d0);
        case 4: return v_pass_dt<C, 4>(dt, kv, a, v_off, hd_v, stride, r0, d0);
#if HEARTH_ATTN_AVX512
        case 5: return v_pass_dt<C, 5>(dt, kv, a, v_off, hd_v, stride, r0, d0);
        case 6: return v_pass_dt<C, 6>(dt, kv, a, v_off, hd_v, stride, r0, d0);
        case 7: return v_pass_dt<C, 7>(dt, kv, a, v_off, hd_v, stride, r0, d0);
        case 8: return v_pass_dt<C, 8>(dt, kv, a, v_off, hd_v, stride, r0, d0);
#endif
    }
}

// ---------------------------------------------------------------------------------------------
// One work item (attention_kernels.h), cache type C.
template <class C>
void attend_group(const PagedKvView& kv, const AttentionParams& p, const AttentionGroupArgs& a) {
    const int hd_k = p.head_dim_k, hd_v = p.head_dim_v;
    const size_t k_off = C::head_bytes((int64_t)a.kv_head * hd_k);
    const size_t v_off = C::head_bytes((int64_t)a.kv_head * hd_v);
    const int n_heads = a.n_heads, n_tokens = a.n_tokens, n_rows = n_tokens * n_heads;
    const int32_t lo = a.lo, base = lo & ~15;
    int32_t hi = a.hi[0];  // the largest hi of the run: K and V rows are read up to it
    for (int i = 1; i < n_tokens; ++i) hi = max_i32(hi, a.hi[i]);
    const int n_chunks = (hi - base + 15) / 16;
    const int stride = n_chunks * 16;  // scores of row r: a.scores[r * stride + (j - base)]
    const V16 scale = v_set1(p.scale);
    const size_t k_bytes = C::head_bytes(hd_k), v_bytes = C::head_bytes(hd_v);
    // The first chunks' rows: fetched before their turn like the others.
    {
        SlotWalker pw(a.block_table, kv.block_size, lo);
        for (int32_t j = lo, e = min_i32(base + 16 * kPrefetchChunks, hi); j < e; ++j, pw.advance(1)) {
            prefetch_bytes<_MM_HINT_T0>(kv.k + pw.slot() * (int64_t)kv.k_row_bytes + k_off, k_bytes);
            prefetch_bytes<_MM_HINT_T1>(kv.v + pw.slot() * (int64_t)kv.v_row_bytes + v_off, v_bytes);
        }
    }

    // Scores, chunk by chunk (cells base + 16 c ..), every row that sees the chunk per K chunk.
    for (int c = 0; c < n_chunks; ++c) {
        const int32_t c0 = base + 16 * c;
        const int32_t j0 = max_i32(c0, lo), j1 = min_i32(c0 + 16, hi);
        const std::byte* row[16];
        SlotWalker w(a.block_table, kv.block_size, j0);
        for (int32_t j = j0; j < j1; ++j, w.advance(1)) row[j - c0] = kv.k + w.slot() * (int64_t)kv.k_row_bytes + k_off;
        // Decode reads each layer's K and V from far caches (the weights streamed in between
        // evict them): fetch the K rows kPrefetchChunks chunks ahead into L1 and their V rows
        // into L2, where the V pass (lane-strided, across pages) then finds them.
        if (c + kPrefetchChunks < n_chunks) {
            const int32_t pj0 = c0 + 16 * kPrefetchChunks, pj1 = min_i32(pj0 + 16, hi);
            SlotWalker pw(a.block_table, kv.block_size, pj0);
            for (int32_t j = pj0; j < pj1; ++j, pw.advance(1)) {
                prefetch_bytes<_MM_HINT_T0>(kv.k + pw.slot() * (int64_t)kv.k_row_bytes + k_off, k_bytes);
                prefetch_bytes<_MM_HINT_T1>(kv.v + pw.slot() * (int64_t)kv.v_row_bytes + v_off, v_bytes);
            }
        }
        for (int l = 0; l < 16; ++l)
            if (l < j0 - c0 || l >= j1 - c0) row[l] = row[j0 - c0];
        const float* f_rows[16];
        if constexpr (C::kKind == Kind::f32) {
            for (int l = 0; l < 16; ++l) f_rows[l] = reinterpret_cast<const float*>(row[l]);
        } else if constexpr (C::kKind == Kind::f16) {
            // The reference widens each f16 head row to f32 (exact) before the dot.
            for (int l = 0; l < 16; ++l) {
                float* dst = a.k_rows + (size_t)l * hd_k;
                f_rows[l] = dst;
                if (l < j0 - c0 || l >= j1 - c0) {
                    f_rows[l] = a.k_rows + (size_t)(j0 - c0) * hd_k;
                    continue;
                }
                const uint16_t* src = reinterpret_cast<const uint16_t*>(row[l]);
                for (int e = 0; e < hd_k; e += 16) v_store(dst + e, v_load_f16(src + e));
            }
        }
        for (int i = 0; i < n_tokens; ++i) {
            const int32_t hi_i = a.hi[i];
            if (hi_i <= c0) continue;  // past this token's cells
            for (int g = 0; g < n_heads; ++g) {
                const int r = i * n_heads + g;
                V16 s;
                const BlockQ8_0* y = reinterpret_cast<const BlockQ8_0*>(a.q_conv + (size_t)r * a.q_conv_bytes);
                if constexpr (C::kKind == Kind::f32 || C::kKind == Kind::f16) {
                    const float* qg = a.q + i * a.q_token_stride + (size_t)g * hd_k;
                    switch (hd_k / 64) {
                        case 1: s = dots_f32<1>(f_rows, qg, hd_k); break;
                        case 2: s = dots_f32<2>(f_rows, qg, hd_k); break;
                        case 4: s = dots_f32<4>(f_rows, qg, hd_k); break;
                        default: s = dots_f32<0>(f_rows, qg, hd_k); break;
                    }
                } else if constexpr (C::kKind == Kind::q8_0) {
                    const BlockQ8_0* k_rows[16];
                    for (int l = 0; l < 16; ++l) k_rows[l] = reinterpret_cast<const BlockQ8_0*>(row[l]);
                    s = dots_q8_0(k_rows, y, hd_k);
                } else {
                    const BlockQ4_0* k_rows[16];
                    for (int l = 0; l < 16; ++l) k_rows[l] = reinterpret_cast<const BlockQ4_0*>(row[l]);
                    s = dots_q4_0(k_rows, y, hd_k);
                }
                // Lanes past this token's hi hold other cells' scores; the softmax masks them out.
                float* out = a.scores + (size_t)r * stride + 16 * c;
                v_store(out, v_mul(s, scale));
                if (p.softcap > 0.0f) {
                    for (int32_t j = j0, e = min_i32(j1, hi_i); j < e; ++j)
                        out[j - c0] = p.softcap * tanhf(out[j - c0] / p.softcap);
                }
            }
        }
    }

    // Softmax of each row over its token's visible cells (ggml_vec_soft_max_f32 on the padded row).
    const V16 neg_inf = v_set1(-INFINITY);
    for (int i = 0; i < n_tokens; ++i) {
        const int32_t hi_r = a.hi[i];
        const int n_chunks_r = (hi_r - base + 15) / 16;
        const unsigned first_mask = lane_mask(lo - base, min_i32(16, hi_r - base));
        const unsigned last_mask = lane_mask(n_chunks_r == 1 ? lo - base : 0, hi_r - (base + 16 * (n_chunks_r - 1)));
        auto chunk_mask = [&](int c) { return c == 0 ? first_mask : c == n_chunks_r - 1 ? last_mask : 0xffffu; };
        for (int g = 0; g < n_heads; ++g) {
            const int r = i * n_heads + g;
            float* s = a.scores + (size_t)r * stride;
            V16 m = neg_inf;
            for (int c = 0; c < n_chunks_r; ++c) m = v_max(m, v_select(chunk_mask(c), v_load(s + 16 * c), neg_inf));
            float max_s = v_hmax(m);
            const float sink = p.sinks ? p.sinks[a.head0 + g] : -INFINITY;
            if (max_s < sink) max_s = sink;  // std::max(max_s, sink)
            const V16 mv = v_set1(max_s);
            double sum = 0.0;
            for (int c = 0; c < n_chunks_r; ++c) {
                const V16 e = v_select(chunk_mask(c), v_exp(v_sub(v_load(s + 16 * c), mv)), v_zero());
                v_store(s + 16 * c, e);
                sum += v_hsum16(e);
            }
            if (p.sinks) sum += expf(sink - max_s);
            const V16 inv = v_set1(sum > 0.0 ? (float)(1.0 / sum) : 0.0f);
            for (int c = 0; c < n_chunks_r; ++c) v_store(s + 16 * c, v_mul(v_load(s + 16 * c), inv));
        }
    }

    // V·P, kMaxGT rows at a time (fewer rows: more output vectors per V read). The row groups
    // of one slice of output dims run back to back: they read the same V lines, the later ones
    // from L1. (Every group of rows but the last is full, so its slices are those of the first.)
    const int gt_full = min_i32(kMaxGT, n_rows), dt_full = max_dt(gt_full);
    for (int d0 = 0; d0 < hd_v; d0 += 16 * dt_full) {
        const int d1 = min_i32(hd_v, d0 + 16 * dt_full);
        for (int r0 = 0; r0 < n_rows; r0 += kMaxGT) {
            const int gt = min_i32(kMaxGT, n_rows - r0);
            const int dt_max = max_dt(gt);
            for (int d = d0; d < d1; d += 16 * dt_max)
                v_pass_any<C>(gt, min_i32(dt_max, (d1 - d) / 16), kv, a, v_off, hd_v, stride, r0, d);
        }
    }
}

void vexp_rows(const float* x, float* y, int64_t n) {
    for (int64_t i = 0; i < n; i += 16) v_store(y + i, v_exp(v_load(x + i)));
}

AttentionGroupFn lookup_attention_kernel(const PagedKvView& kv, const AttentionParams& p) {
    if (p.head_dim_k <= 0 || p.head_dim_v <= 0 || p.head_dim_k % 16 || p.head_dim_v % 16) return nullptr;
    switch (kv.type) {
        case quant::QuantType::f32: return &attend_group<CacheF32>;
        case quant::QuantType::f16: return &attend_group<CacheF16>;
        case quant::QuantType::q8_0:
            return p.head_dim_k % 32 == 0 && p.head_dim_v % 32 == 0 && p.head_dim_k / 32 <= kMaxQBlocks
                       ? &attend_group<CacheQ8_0> : nullptr;
        case quant::QuantType::q4_0:
            return p.head_dim_k % 32 == 0 && p.head_dim_v % 32 == 0 ? &attend_group<CacheQ4_0> : nullptr;
        default: return nullptr;
    }
}

}  // namespace
}  // namespace hearth::backend

#if HEARTH_ATTN_AVX512 && defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
