// AMX tile kernel (tile_kernels.h) of Q4_0 weights on Q8_0 activations, and their packing. Same
// target flags and rules as tile_kernels_amx.cpp (whose AmxTileScope configuration it uses:
// tiles 0-3 C, 4-5 A of 16 x 32 bytes, 6-7 B of 8 x 64 bytes).
//
// quant::vec_dot_q4_0 keeps one float accumulator per output and adds, block after block,
// fma(float(sumi), d_w * d_x, acc), where sumi is the exact int32 dot of the block's 32 signed
// codes (code - 8) with its 32 activation quants. The packed weights hold code - 8 (-8..7), so
// one TDPBSSD with K = 32 (one block) gives the 16 x 16 sumi of a block directly, and the float
// step runs in AVX-512 over the 16 tokens of each C tile row.
//
// Unlike the K-quant kernels, this one has a float step for every 32 elements (48 vector
// instructions per C tile): it is written so that the tile work and the float steps overlap (the
// tile sums run two blocks ahead) and so that the 16 accumulators stay in registers. Two small
// pieces are inline asm for that: GCC's tile store intrinsic clobbers all memory, and around it
// GCC reloaded and spilled the accumulators and the scales of the float step. Measured on the
// 2-core Xeon, the kernel alone on one core (a 2048-element band against 32 token groups):
// 45-52 TSC cycles per 16 x 16 x 32 step against 51-61 with intrinsics only.
#include "backend/cpu/tile_kernels.h"

#if defined(__AMX_TILE__) && defined(__AMX_INT8__) && defined(__AVX512F__) && defined(__AVX512BW__) && \
    defined(__AVX512VL__) && defined(__AVX512VNNI__) && defined(__F16C__) && defined(__FMA__)

#include "backend/cpu/tile_kernels_amx.h"
#include "quant/q4_0.h"
#include "quant/q8_0.h"

namespace hearth::backend {

using namespace amx_detail;

// Per block: the 16 tokens' quants as two 8 x 8 transposes of 4-byte groups (tokens 0-7, 8-15).
void amx_pack_q8_0(const std::byte* const* x, int64_t n, AmxQ8_0x16* dst) {
    const int64_t nb = n / 32;
    for (int64_t i = 0; i < nb; ++i) {
        AmxQ8_0x16& p = dst[i];
        for (int h = 0; h < 2; ++h) {
            __m256i r[8], o[8];  // [token 8h + j] 8 groups; o: [group] 8 tokens
            for (int j = 0; j < 8; ++j) {
                const quant::BlockQ8_0& b = reinterpret_cast<const quant::BlockQ8_0*>(x[8 * h + j])[i];
                r[j] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs));
                p.d[8 * h + j] = f16_to_f32(b.d);
            }
            transpose8x8_epi32(r, o);
            for (int k = 0; k < 8; ++k) _mm256_store_si256(reinterpret_cast<__m256i*>(p.qs[k][8 * h]), o[k]);
        }
    }
}

// Per block, 4 rows at a time: their 16 code bytes in the 4 lanes of a vector, the low nibbles
// (elements 0-15) and high nibbles (16-31) minus 8, each row's two halves put together by a
// 64-bit permute (two rows per 64-byte store); the 16 scales by one gather (the 32-bit word at
// each block's start: d, then two code bytes) and one conversion. Rows are less than 2 GB apart
// (the gather's 32-bit offsets). About 2.5x fewer instructions than one row at a time; what
// remains (3-6 % of a prompt batch's matmul) is mostly the wait for the weights from memory.
void amx_pack_q4_0(const std::byte* const* w, int64_t n, AmxQ4_0x16* dst) {
    const int64_t nb = n / 32;
    const __m512i m4 = _mm512_set1_epi8(0x0F), eight = _mm512_set1_epi8(8);
    // [row r lo, r hi, r + 1 lo, r + 1 hi] (in 64-bit words; 8.. select from the high nibbles)
    const __m512i first = _mm512_setr_epi64(0, 1, 8, 9, 2, 3, 10, 11);
    const __m512i second = _mm512_setr_epi64(4, 5, 12, 13, 6, 7, 14, 15);
    alignas(64) int32_t off[kAmxRows];  // [row] byte offset from row 0
    for (int r = 0; r < kAmxRows; ++r) off[r] = (int32_t)(w[r] - w[0]);
    const __m512i offsets = _mm512_load_si512(off);
    for (int64_t i = 0; i < nb; ++i) {
        AmxQ4_0x16& p = dst[i];
        for (int r = 0; r < kAmxRows; r += 4) {
            auto qs = [&](int k) {
                const quant::BlockQ4_0& b = reinterpret_cast<const quant::BlockQ4_0*>(w[r + k])[i];
                return _mm_loadu_si128(reinterpret_cast<const __m128i*>(b.qs));
            };
            __m512i q = _mm512_castsi128_si512(qs(0));
            q = _mm512_inserti32x4(q, qs(1), 1);
            q = _mm512_inserti32x4(q, qs(2), 2);
            q = _mm512_inserti32x4(q, qs(3), 3);
            const __m512i lo = _mm512_sub_epi8(_mm512_and_si512(q, m4), eight);
            const __m512i hi = _mm512_sub_epi8(_mm512_and_si512(_mm512_srli_epi16(q, 4), m4), eight);
            _mm512_store_si512(p.q[r], _mm512_permutex2var_epi64(lo, first, hi));
            _mm512_store_si512(p.q[r + 2], _mm512_permutex2var_epi64(lo, second, hi));
        }
        const __m512i words = _mm512_i32gather_epi32(offsets, reinterpret_cast<const quant::BlockQ4_0*>(w[0]) + i, 1);
        _mm512_store_ps(p.d, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(words)));
    }
}

namespace {

using Sums = int32_t[kAmxRows][kAmxTokens];  // [row][token] sumi of one block, a stored C tile

// Tile load and store that name the bytes they read or write as asm operands, so the compiler
// orders exactly those accesses around them (the intrinsics' loads name none, their stores
// clobber all memory). Tile numbers must be literals.
#define HEARTH_TILE_LOAD(t, obj, stride) \
    __asm__ volatile("tileloadd (%1,%2,1), %%tmm" #t ::"m"(obj), "r"(&(obj)), "r"((int64_t)(stride)))
#define HEARTH_TILE_STORE(t, obj) \
    __asm__ volatile("tilestored %%tmm" #t ", (%1,%2,1)" : "=m"(obj) : "r"(&(obj)), "r"((int64_t)64))

// C tile c = the sums of block i (A tile a: its codes, B tile b: its quants).
#define HEARTH_AMX_Q4_0_DOTS(i, c, a, b) \
    HEARTH_TILE_LOAD(a, w[i].q, 32);     \
    _tile_zero(c);                       \
    HEARTH_TILE_LOAD(b, x[i].qs, 64);    \
    _tile_dpbssd(c, a, b)

// acc[r] = fma(float(s[r]), wd[r] * dx, acc[r]) for 8 rows r (fmaf(sumi, d_w * d_x, acc), the
// reference's step for 16 tokens: vfmadd231ps t1, t0, acc is acc + t0 * t1 with one rounding).
// Asm so that the accumulators stay in registers and wd[r] is a broadcast memory operand; 8 rows
// per statement because GCC allows 30 operands (an in-out one counts twice).
#define HEARTH_Q4_0_ROW(r)                                  \
    "vcvtdq2ps " #r "*64(%[s]), %[t0]\n\t"                  \
    "vmulps " #r "*4(%[wd])%{1to16%}, %[dx], %[t1]\n\t"     \
    "vfmadd231ps %[t1], %[t0], %[a" #r "]\n\t"
inline void update8(__m512* acc, const int32_t (*s)[kAmxTokens], const float* wd, __m512 dx) {
    __m512 t0, t1;
    __asm__(HEARTH_Q4_0_ROW(0) HEARTH_Q4_0_ROW(1) HEARTH_Q4_0_ROW(2) HEARTH_Q4_0_ROW(3)
            HEARTH_Q4_0_ROW(4) HEARTH_Q4_0_ROW(5) HEARTH_Q4_0_ROW(6) HEARTH_Q4_0_ROW(7)
            : [a0] "+v"(acc[0]), [a1] "+v"(acc[1]), [a2] "+v"(acc[2]), [a3] "+v"(acc[3]), [a4] "+v"(acc[4]),
              [a5] "+v"(acc[5]), [a6] "+v"(acc[6]), [a7] "+v"(acc[7]), [t0] "=&v"(t0), [t1] "=&v"(t1)
            : [s] "r"(s), [wd] "r"(wd), [dx] "v"(dx), "m"(*(const int32_t(*)[8][kAmxTokens])s),
              "m"(*(const float(*)[8])wd));
}
#undef HEARTH_Q4_0_ROW

// One token group: 16 rows x 16 tokens over nb blocks, accumulators starting at 0 or at y's
// values (a later chunk of the row). The tile sums run two blocks ahead of the float step.
void dot_q4_0_group(const AmxQ4_0x16* w, const AmxQ8_0x16* x, int64_t nb, float* y, int64_t y_stride, int n_rows,
                    int n_tokens, bool accumulate) {
    alignas(64) Sums sums[2];  // [block parity] sumi of the block whose float step is next
    // [row] 16 tokens. Every loop over acc is unrolled, so that GCC keeps it in registers.
    __m512 acc[kAmxRows];
    if (accumulate) {
        __m512 v[kAmxTokens], o[kAmxRows];  // v: [token] 16 rows of y (or 0); o: v transposed
        const __mmask16 mask = (__mmask16)((1u << n_rows) - 1);
#pragma GCC unroll 16
        for (int t = 0; t < kAmxTokens; ++t) {
            v[t] = t < n_tokens ? _mm512_maskz_loadu_ps(mask, y + t * y_stride) : _mm512_setzero_ps();
        }
        transpose16x16(v, o);
#pragma GCC unroll 16
        for (int r = 0; r < kAmxRows; ++r) acc[r] = o[r];
    } else {
#pragma GCC unroll 16
        for (int r = 0; r < kAmxRows; ++r) acc[r] = _mm512_setzero_ps();
    }
    auto update = [&](int64_t i, const Sums& s) __attribute__((always_inline)) {
        const __m512 dx = _mm512_load_ps(x[i].d);
        update8(acc, s, w[i].d, dx);
        update8(acc + 8, s + 8, w[i].d + 8, dx);
    };
    // Step j: the tile sums of block j + 2, the float step of block j, the store of the sums of
    // block j + 1 (C tile (j + 1) % 4, A and B tiles by parity). The tile loads of block j + 2
    // come before the store in program order; with the sums one block ahead they came after it
    // and waited for it, i.e. for the dot products of block j + 1 (Q4_0 prefill 2048x2048x512,
    // one thread: 6.1 ms against 6.9 ms).
    HEARTH_AMX_Q4_0_DOTS(0, 0, 4, 6);
    HEARTH_TILE_STORE(0, sums[0]);
    if (nb > 1) {
        HEARTH_AMX_Q4_0_DOTS(1, 1, 5, 7);
    }
#define HEARTH_AMX_Q4_0_STEP(j, c_next, a_next, b_next, c_store, s_store) \
    if ((j) + 2 < nb) {                                                  \
        HEARTH_AMX_Q4_0_DOTS((j) + 2, c_next, a_next, b_next);           \
    }                                                                    \
    update((j), sums[(s_store) ^ 1]);                                    \
    if ((j) + 1 >= nb) break;                                            \
    HEARTH_TILE_STORE(c_store, sums[s_store])
    for (int64_t i = 0;; i += 4) {
        HEARTH_AMX_Q4_0_STEP(i, 2, 4, 6, 1, 1);
        HEARTH_AMX_Q4_0_STEP(i + 1, 3, 5, 7, 2, 0);
        HEARTH_AMX_Q4_0_STEP(i + 2, 0, 4, 6, 3, 1);
        HEARTH_AMX_Q4_0_STEP(i + 3, 1, 5, 7, 0, 0);
    }
#undef HEARTH_AMX_Q4_0_STEP
    __m512 res[kAmxRows];  // a copy, so that acc never has its address taken
#pragma GCC unroll 16
    for (int r = 0; r < kAmxRows; ++r) res[r] = acc[r];
    store_transposed(res, y, y_stride, n_rows, n_tokens);
}

#undef HEARTH_AMX_Q4_0_DOTS
#undef HEARTH_TILE_STORE
#undef HEARTH_TILE_LOAD

}  // namespace

void amx_dot_q4_0(const AmxQ4_0x16* w, const AmxQ8_0x16* x, int64_t x_group, int n_groups, int64_t n, float* y,
                  int64_t y_stride, int n_rows, int n_tokens, bool accumulate) {
    for (int u = 0; u < n_groups; ++u) {
        dot_q4_0_group(w, x + u * x_group, n / 32, y + u * kAmxTokens * y_stride, y_stride, n_rows,
                       u + 1 == n_groups ? n_tokens : kAmxTokens, accumulate);
    }
}

}  // namespace hearth::backend

#else  // no AMX at compile time: amx_int8_available() keeps these from being called

namespace hearth::backend {
void amx_pack_q8_0(const std::byte* const*, int64_t, AmxQ8_0x16*) {}
void amx_pack_q4_0(const std::byte* const*, int64_t, AmxQ4_0x16*) {}
void amx_dot_q4_0(const AmxQ4_0x16*, const AmxQ8_0x16*, int64_t, int, int64_t, float*, int64_t, int, int, bool) {}
}  // namespace hearth::backend

#endif
