// dp4a matrix-vector kernels for Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K,
// IQ4_NL, IQ4_XS and MXFP4 weights with int8 activations
// (ActQ8: q8_1-style blocks of 32). Decode is bandwidth-bound: every weight byte is read once
// per group of up to 8 tokens, so the design goal is to keep HBM busy with few instructions
// per byte.
//
// Work is cut in "units" of 32 weights, one activation block each. A thread block (32 to 128
// threads) is persistent: it walks row groups of R rows (blockIdx.x, + gridDim.x, ...) and each
// row in stages; a stage covers whole groups of 64 units (2048 weights), which for every type
// here is a multiple of 16 bytes (Q8_0 2176, Q4_0 1152, Q4_K 1152, Q6_K 1680, Q4_1 1280, Q5_0 1408,
// Q5_1 1536, IQ4_NL 1152, MXFP4 1088, Q5_K 1408, IQ4_XS 1088, Q2_K 672, Q3_K 880). Each (row group,
// stage) item is copied with 16-byte cp.async into one of three shared buffers, two items ahead
// of the one being computed, so every block keeps two items of weights in flight without
// holding them in registers (staging through shared memory because the blocks of Q8_0, Q4_0 and
// Q6_K are 34, 18 and 210 bytes, only 2-byte aligned). Threads read their units from there with
// 32-bit loads and funnel shifts (16-byte loads for 16-byte-aligned Q4_K rows). A thread owns
// one "slot" of every row of the group: one unit (R = 4 rows), or for one token and the K-quants
// two units that share their bytes (R = 2 rows): Q4_K low and high nibbles of the same 32 bytes
// with one header (Q5_K the same plus the shared qh bytes), Q6_K k and k + 2 of a 128-value half
// (the same ql and qh bytes), IQ4_XS two adjacent sub-blocks (32 consecutive qs bytes, one
// header). One load of a unit's activations serves all R rows.
// MXFP4 blocks are 17 bytes: its units are read at any byte offset (lds_words<N, true>), so its rows
// need no alignment at all. The non-linear codes (IQ4_NL, IQ4_XS, MXFP4) become int8 values with
// byte permutes (lut16x8: 12 instructions per 8 codes), so the dot products stay dp4a.
// Measured (H200, copy 4205 GB/s, 14336 x 4096, 1 token, kernel alone; cuda_matmul_bench
// --decode): Q4_K 2530 GB/s (60 %), Q5_K 2709 (64 %; 4096 x 14336: 2482, 59 %), IQ4_XS 1601
// (38 %), MXFP4 1623 (39 %). The table lookups still bound IQ4_XS and MXFP4 at one token (a
// first version with two lut16 calls per word, twice the instructions: 1395 / 1414 GB/s); from
// 8 tokens on all three are within 20 % of Q4_K.
// The grid is as many blocks as fit at once, trimmed so every block gets the same number of row
// groups.
// History (H100, 14336 x 4096 Q4_K, 1 token, kernel alone, % of copy bandwidth): one row per
// block staged through registers 49 %; 4 rows per block with cp.async double buffering 63 %
// (both short of bytes in flight); persistent 3-buffer pipeline with Q4_K/Q6_K unit pairs 69-71 %
// (large matrices 90 %); one token's activations kept in registers (kPre, below) 90 % (12.9 us;
// 4096 x 4096: 5.6 us, 59 %; Q6_K 4096 x 14336: 92 %). Fewer blocks per SM than fit (to leave
// room for the next kernel's blocks) lost 10-40 % of a decode step: each block's item rate is
// latency-bound, so the grid keeps every block that fits.
// Row groups twice as tall for one token (4 rows of pair slots: half the items, each twice the
// bytes) lost everywhere (H100, tg t/s in one run): Qwen3-30B-A3B 4-layer cut, where only the
// 768-input expert down rows took them (12 of 32 threads busy), 2,500-2,537 -> 2,387-2,395;
// taken by every single-token launch, Llama-3.2-1B 1,359-1,372 -> 1,242 and 8B 381.7 -> 337.
// Rows whose start is not 16-byte aligned are copied from the 16-byte boundary below and read
// at an offset.
// One launch may cover several matrices (MvArgs: Q, K and V; gate and up) as one row space, so
// the small ones do not each pay a ramp and a tail, and the q/k rows may leave through the rope
// epilogue (rope.cuh: rotated q in f32, rotated k and v straight into the f16 KV cache), which
// replaces the rope + KV-write kernel of the decode step.
//
// Per unit and token: two 16-byte activation loads, eight dp4a, and one scale step:
//   y += dx * (a0 * dot(q[0..15], xq[0..15]) + a1 * dot(q[16..31], xq[16..31]) - m * sum(xq))
// with (a0, a1, m) = (d, d, 0) for Q8_0, (d, d, 8d) for Q4_0 (codes 0..15 stand for q - 8),
// (d*sc, d*sc, dmin*min) for Q4_K and Q5_K, (d, d, -m) for Q4_1 and Q5_1 (x = d q + m), (d, d, 16d)
// for Q5_0, (d, d, 0) for IQ4_NL (table values), (d*(ls-32), .., 0) for IQ4_XS, (2^(e-128), .., 0)
// for MXFP4 (E2M1 values times 2), and per 16-value half (d*sc0, d*sc1, 0) for Q6_K (codes made
// signed, q - 32) and Q3_K (q in -4..3, sc offset by 32 removed). Q2_K has a min per half too:
//   y += dx * (a0 * dot0 + a1 * dot1 - (m0 * sum(xq[0..15]) + m1 * sum(xq[16..31])))
// with the two partial sums from dp4a against 0x01010101 (once per token, shared by the rows).
// The int dot products are exact; the float steps round ~1e-7 relative per unit.
//
// (Over the ~800-line guide: the thirteen per-type unit decoders are the bulk, and they belong
// next to the one kernel template that inlines them and whose file comment defines their units.)
#include <algorithm>
#include <cstddef>

#include "backend/cuda/launch.cuh"
#include "backend/cuda/matmul_kernels.cuh"
#include "quant/iq4_nl.h"
#include "quant/iq4_xs.h"
#include "quant/mxfp4.h"
#include "quant/q2_k.h"
#include "quant/q3_k.h"
#include "quant/q4_0.h"
#include "quant/q4_1.h"
#include "quant/q4_k.h"
#include "quant/q5_0.h"
#include "quant/q5_1.h"
#include "quant/q5_k.h"
#include "quant/q6_k.h"
#include "quant/q8_0.h"

namespace hearth::backend::cuda_kernels {
namespace {

using quant::QuantType;

// Byte offsets used below, checked against the block structs of quant/ (the one definition).
static_assert(sizeof(quant::BlockQ8_0) == 34 && offsetof(quant::BlockQ8_0, qs) == 2);
static_assert(sizeof(quant::BlockQ4_0) == 18 && offsetof(quant::BlockQ4_0, qs) == 2);
static_assert(sizeof(quant::BlockQ4_K) == 144 && offsetof(quant::BlockQ4_K, dmin) == 2 &&
              offsetof(quant::BlockQ4_K, scales) == 4 && offsetof(quant::BlockQ4_K, qs) == 16);
static_assert(sizeof(quant::BlockQ6_K) == 210 && offsetof(quant::BlockQ6_K, ql) == 0 &&
              offsetof(quant::BlockQ6_K, qh) == 128 && offsetof(quant::BlockQ6_K, scales) == 192 &&
              offsetof(quant::BlockQ6_K, d) == 208);
static_assert(sizeof(quant::BlockQ4_1) == 20 && offsetof(quant::BlockQ4_1, m) == 2 && offsetof(quant::BlockQ4_1, qs) == 4);
static_assert(sizeof(quant::BlockQ5_0) == 22 && offsetof(quant::BlockQ5_0, qh) == 2 && offsetof(quant::BlockQ5_0, qs) == 6);
static_assert(sizeof(quant::BlockQ5_1) == 24 && offsetof(quant::BlockQ5_1, m) == 2 && offsetof(quant::BlockQ5_1, qh) == 4 &&
              offsetof(quant::BlockQ5_1, qs) == 8);
static_assert(sizeof(quant::BlockIQ4_NL) == 18 && offsetof(quant::BlockIQ4_NL, qs) == 2);
static_assert(sizeof(quant::BlockMXFP4) == 17 && offsetof(quant::BlockMXFP4, qs) == 1);
static_assert(sizeof(quant::BlockQ5_K) == 176 && offsetof(quant::BlockQ5_K, scales) == 4 &&
              offsetof(quant::BlockQ5_K, qh) == 16 && offsetof(quant::BlockQ5_K, qs) == 48);
static_assert(sizeof(quant::BlockIQ4_XS) == 136 && offsetof(quant::BlockIQ4_XS, scales_h) == 2 &&
              offsetof(quant::BlockIQ4_XS, scales_l) == 4 && offsetof(quant::BlockIQ4_XS, qs) == 8);
static_assert(sizeof(quant::BlockQ2_K) == 84 && offsetof(quant::BlockQ2_K, qs) == 16 && offsetof(quant::BlockQ2_K, d) == 80 &&
              offsetof(quant::BlockQ2_K, dmin) == 82);
static_assert(sizeof(quant::BlockQ3_K) == 110 && offsetof(quant::BlockQ3_K, qs) == 32 &&
              offsetof(quant::BlockQ3_K, scales) == 96 && offsetof(quant::BlockQ3_K, d) == 108);

template <QuantType> struct Fmt;  // kGroupBytes: bytes of 64 units (2048 weights)
template <> struct Fmt<QuantType::q8_0> { static constexpr int kGroupBytes = 64 * 34; };
template <> struct Fmt<QuantType::q4_0> { static constexpr int kGroupBytes = 64 * 18; };
template <> struct Fmt<QuantType::q4_k> { static constexpr int kGroupBytes = 8 * 144; };
template <> struct Fmt<QuantType::q6_k> { static constexpr int kGroupBytes = 8 * 210; };
template <> struct Fmt<QuantType::q4_1> { static constexpr int kGroupBytes = 64 * 20; };
template <> struct Fmt<QuantType::q5_0> { static constexpr int kGroupBytes = 64 * 22; };
template <> struct Fmt<QuantType::q5_1> { static constexpr int kGroupBytes = 64 * 24; };
template <> struct Fmt<QuantType::iq4_nl> { static constexpr int kGroupBytes = 64 * 18; };
template <> struct Fmt<QuantType::mxfp4> { static constexpr int kGroupBytes = 64 * 17; };
template <> struct Fmt<QuantType::q5_k> { static constexpr int kGroupBytes = 8 * 176; };
template <> struct Fmt<QuantType::iq4_xs> { static constexpr int kGroupBytes = 8 * 136; };
template <> struct Fmt<QuantType::q2_k> { static constexpr int kGroupBytes = 8 * 84; };
template <> struct Fmt<QuantType::q3_k> { static constexpr int kGroupBytes = 8 * 110; };
static_assert(Fmt<QuantType::q8_0>::kGroupBytes % 16 == 0 && Fmt<QuantType::q4_0>::kGroupBytes % 16 == 0 &&
              Fmt<QuantType::q4_k>::kGroupBytes % 16 == 0 && Fmt<QuantType::q6_k>::kGroupBytes % 16 == 0 &&
              Fmt<QuantType::q4_1>::kGroupBytes % 16 == 0 && Fmt<QuantType::q5_0>::kGroupBytes % 16 == 0 &&
              Fmt<QuantType::q5_1>::kGroupBytes % 16 == 0 && Fmt<QuantType::iq4_nl>::kGroupBytes % 16 == 0 &&
              Fmt<QuantType::mxfp4>::kGroupBytes % 16 == 0 && Fmt<QuantType::q5_k>::kGroupBytes % 16 == 0 &&
              Fmt<QuantType::iq4_xs>::kGroupBytes % 16 == 0 && Fmt<QuantType::q2_k>::kGroupBytes % 16 == 0 &&
              Fmt<QuantType::q3_k>::kGroupBytes % 16 == 0);

// How a unit's two 16-value halves are scaled (see the file comment): kAccOne, one scale and a
// min times the block's activation sum; kAccTwo, a scale per half (the 16-value sub-blocks of
// Q6_K and Q3_K); kAccTwoMin, a scale and a min per half (Q2_K: the min needs each half's
// activation sum, two more dp4a per half and token, shared by the rows).
enum AccMode { kAccOne, kAccTwo, kAccTwoMin };
template <QuantType kType>
constexpr AccMode kAcc = kType == QuantType::q6_k || kType == QuantType::q3_k ? kAccTwo
                       : kType == QuantType::q2_k                             ? kAccTwoMin
                                                                              : kAccOne;

constexpr int kMaxThreads = 128;

// One unit's weights as int8 lanes (q[0..3]: values 0..15, q[4..7]: values 16..31) and its scales.
struct Unit {
    int q[8];
    float a0, a1, m, m1;  // m1: the second half's min (kAccTwoMin only)
};

// N words from a byte offset of a 16-byte-aligned shared buffer (reads N + 1 words): 2-byte
// aligned offsets (kAnyByte false: every type but MXFP4), or any byte offset (MXFP4's 17-byte
// blocks).
template <int N, bool kAnyByte = false>
__device__ __forceinline__ void lds_words(const uint32_t* sw, int byte_off, uint32_t (&out)[N]) {
    const uint32_t* p = sw + (byte_off >> 2);
    const int sh = (byte_off & (kAnyByte ? 3 : 2)) * 8;
    uint32_t prev = p[0];
#pragma unroll
    for (int i = 0; i < N; ++i) {
        const uint32_t next = p[i + 1];
        out[i] = __funnelshift_r(prev, next, sh);
        prev = next;
    }
}

__device__ __forceinline__ uint32_t lds_u16(const uint32_t* sw, int byte_off) {
    return (sw[byte_off >> 2] >> ((byte_off & 2) * 8)) & 0xffffu;
}

__device__ __forceinline__ uint32_t lds_u8(const uint32_t* sw, int byte_off) {
    return (sw[byte_off >> 2] >> ((byte_off & 3) * 8)) & 0xffu;
}

// Byte k (0..11, run time) of three words, with selects (no local array).
__device__ __forceinline__ uint32_t byte_of3(const uint32_t (&w)[3], int k) {
    const uint32_t word = k < 4 ? w[0] : k < 8 ? w[1] : w[2];
    return (word >> (8 * (k & 3))) & 0xffu;
}

// A unit's 32 4-bit codes (low nibbles of w: values 0..15, high nibbles: 16..31) through a
// 16-entry int8 table (t0..t3: IQ4_NL's and IQ4_XS's values, MXFP4's E2M1) into un.q.
__device__ __forceinline__ void lut_unit(const uint32_t (&w)[4], uint32_t t0, uint32_t t1, uint32_t t2, uint32_t t3,
                                         Unit& un) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        uint32_t lo, hi;
        lut16x8(w[i], t0, t1, t2, t3, lo, hi);
        un.q[i] = (int)lo, un.q[4 + i] = (int)hi;
    }
}

// Unit u of a stage whose first byte (of this row) is at byte `base` of sw.
template <QuantType kType>
__device__ __forceinline__ void load_unit(const uint32_t* sw, int base, int u, Unit& un);

template <>
__device__ __forceinline__ void load_unit<QuantType::q8_0>(const uint32_t* sw, int base, int u, Unit& un) {
    const int b = base + 34 * u;
    const float d = fp16_bits_to_f32(lds_u16(sw, b));
    uint32_t w[8];
    lds_words<8>(sw, b + 2, w);
#pragma unroll
    for (int i = 0; i < 8; ++i) un.q[i] = (int)w[i];
    un.a0 = un.a1 = d;
    un.m = 0.0f;
}

template <>
__device__ __forceinline__ void load_unit<QuantType::q4_0>(const uint32_t* sw, int base, int u, Unit& un) {
    const int b = base + 18 * u;
    const float d = fp16_bits_to_f32(lds_u16(sw, b));
    uint32_t w[4];  // byte j: value j (low nibble), value j + 16 (high nibble)
    lds_words<4>(sw, b + 2, w);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        un.q[i] = (int)(w[i] & 0x0f0f0f0fu);
        un.q[4 + i] = (int)((w[i] >> 4) & 0x0f0f0f0fu);
    }
    un.a0 = un.a1 = d;
    un.m = 8.0f * d;
}

template <>
__device__ __forceinline__ void load_unit<QuantType::q4_k>(const uint32_t* sw, int base, int u, Unit& un) {
    const int sb = base + 144 * (u >> 3);
    const int j = u & 7;  // sub-block: values 32j..32j+31 = nibble j%2 of qs[32*(j/2) + l]
    uint32_t h[4];        // d, dmin, scales[0..11]
    uint32_t w[8];
    if ((base & 15) == 0) {  // the row is 16-byte aligned (uniform over the block): vector loads
        const auto* sv = reinterpret_cast<const uint4*>(sw);
        const uint4 hv = sv[sb >> 4], q0 = sv[(sb + 16 + 32 * (j >> 1)) >> 4], q1 = sv[(sb + 32 + 32 * (j >> 1)) >> 4];
        h[0] = hv.x, h[1] = hv.y, h[2] = hv.z, h[3] = hv.w;
        w[0] = q0.x, w[1] = q0.y, w[2] = q0.z, w[3] = q0.w, w[4] = q1.x, w[5] = q1.y, w[6] = q1.z, w[7] = q1.w;
    } else {
        lds_words<4>(sw, sb, h);
        lds_words<8>(sw, sb + 16 + 32 * (j >> 1), w);
    }
    // quant::detail::get_scale_min_k4 without branches: bytes j%4 of scales[0..3], [4..7], [8..11].
    const int bsh = 8 * (j & 3);
    const uint32_t a = h[1] >> bsh, b = h[2] >> bsh, c = h[3] >> bsh;
    const uint32_t sc = j < 4 ? (a & 63) : ((c & 0xF) | ((a >> 2) & 0x30));
    const uint32_t mn = j < 4 ? (b & 63) : (((c >> 4) & 0xF) | ((b >> 2) & 0x30));
    const int sh = 4 * (j & 1);
#pragma unroll
    for (int i = 0; i < 8; ++i) un.q[i] = (int)((w[i] >> sh) & 0x0f0f0f0fu);
    un.a0 = un.a1 = fp16_bits_to_f32(h[0]) * (float)sc;
    un.m = fp16_bits_to_f32(h[0] >> 16) * (float)mn;
}

template <>
__device__ __forceinline__ void load_unit<QuantType::q6_k>(const uint32_t* sw, int base, int u, Unit& un) {
    const int sb = base + 210 * (u >> 3);
    const int j = u & 7, hh = j >> 2, k = j & 3;  // values 128*hh + 32*k + l, l < 32
    uint32_t lo[8], hi[8];
    lds_words<8>(sw, sb + 64 * hh + 32 * (k & 1), lo);  // ql: nibble k/2
    lds_words<8>(sw, sb + 128 + 32 * hh, hi);           // qh: bits 2k, 2k+1
    const int sl = 4 * (k >> 1), shh = 2 * k;
#pragma unroll
    for (int i = 0; i < 8; ++i) {
        const uint32_t code = ((lo[i] >> sl) & 0x0f0f0f0fu) | (((hi[i] >> shh) & 0x03030303u) << 4);  // 0..63
        un.q[i] = (int)__vsub4(code, 0x20202020u);                                                    // -32..31
    }
    const uint32_t scw = lds_u16(sw, sb + 192 + 2 * j);  // scales of values 0..15 and 16..31 of the unit
    const float d = fp16_bits_to_f32(lds_u16(sw, sb + 208));
    un.a0 = d * (float)(int8_t)(scw & 0xffu);
    un.a1 = d * (float)(int8_t)(scw >> 8);
    un.m = 0.0f;
}

template <>
__device__ __forceinline__ void load_unit<QuantType::q4_1>(const uint32_t* sw, int base, int u, Unit& un) {
    const int b = base + 20 * u;
    uint32_t w[4];
    lds_words<4>(sw, b + 4, w);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        un.q[i] = (int)(w[i] & 0x0f0f0f0fu);
        un.q[4 + i] = (int)((w[i] >> 4) & 0x0f0f0f0fu);
    }
    un.a0 = un.a1 = fp16_bits_to_f32(lds_u16(sw, b));
    un.m = -fp16_bits_to_f32(lds_u16(sw, b + 2));  // x = d q + m: the min adds
}

// Q5_0 / Q5_1 codes: low nibbles from qs (byte j: values j and j + 16), bit 4 from qh bit j.
__device__ __forceinline__ void q5_codes(const uint32_t (&w)[4], uint32_t qh, Unit& un) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        un.q[i] = (int)((w[i] & 0x0f0f0f0fu) | spread_bit4(qh >> (4 * i)));
        un.q[4 + i] = (int)(((w[i] >> 4) & 0x0f0f0f0fu) | spread_bit4(qh >> (16 + 4 * i)));
    }
}

template <>
__device__ __forceinline__ void load_unit<QuantType::q5_0>(const uint32_t* sw, int base, int u, Unit& un) {
    const int b = base + 22 * u;
    uint32_t qh[1], w[4];
    lds_words<1>(sw, b + 2, qh);
    lds_words<4>(sw, b + 6, w);
    q5_codes(w, qh[0], un);
    const float d = fp16_bits_to_f32(lds_u16(sw, b));
    un.a0 = un.a1 = d;
    un.m = 16.0f * d;  // codes 0..31 stand for q - 16
}

template <>
__device__ __forceinline__ void load_unit<QuantType::q5_1>(const uint32_t* sw, int base, int u, Unit& un) {
    const int b = base + 24 * u;
    uint32_t qh[1], w[4];
    lds_words<1>(sw, b + 4, qh);
    lds_words<4>(sw, b + 8, w);
    q5_codes(w, qh[0], un);
    un.a0 = un.a1 = fp16_bits_to_f32(lds_u16(sw, b));
    un.m = -fp16_bits_to_f32(lds_u16(sw, b + 2));
}

template <>
__device__ __forceinline__ void load_unit<QuantType::iq4_nl>(const uint32_t* sw, int base, int u, Unit& un) {
    const int b = base + 18 * u;
    uint32_t w[4];
    lds_words<4>(sw, b + 2, w);
    lut_unit(w, kIq4Lut0, kIq4Lut1, kIq4Lut2, kIq4Lut3, un);
    un.a0 = un.a1 = fp16_bits_to_f32(lds_u16(sw, b));
    un.m = 0.0f;
}

template <>
__device__ __forceinline__ void load_unit<QuantType::mxfp4>(const uint32_t* sw, int base, int u, Unit& un) {
    const int b = base + 17 * u;  // any byte offset
    uint32_t w[4];
    lds_words<4, true>(sw, b + 1, w);
    lut_unit(w, kMxLut0, kMxLut1, kMxLut2, kMxLut3, un);  // E2M1 values times 2
    un.a0 = un.a1 = e8m0_half(lds_u8(sw, b));
    un.m = 0.0f;
}

template <>
__device__ __forceinline__ void load_unit<QuantType::q5_k>(const uint32_t* sw, int base, int u, Unit& un) {
    const int sb = base + 176 * (u >> 3);
    const int j = u & 7;  // sub-block: low 4 bits nibble j%2 of qs[32*(j/2) + l], bit 4 bit j of qh[l]
    uint32_t h[4], w[8], qh[8];
    lds_words<4>(sw, sb, h);
    lds_words<8>(sw, sb + 16, qh);
    lds_words<8>(sw, sb + 48 + 32 * (j >> 1), w);
    uint32_t sc, mn;
    q4_k_scale_min(j, h[1], h[2], h[3], sc, mn);
    const int sh = 4 * (j & 1);
#pragma unroll
    for (int i = 0; i < 8; ++i) un.q[i] = (int)(((w[i] >> sh) & 0x0f0f0f0fu) | (((qh[i] >> j) & 0x01010101u) << 4));
    un.a0 = un.a1 = fp16_bits_to_f32(h[0]) * (float)sc;
    un.m = fp16_bits_to_f32(h[0] >> 16) * (float)mn;
}

template <>
__device__ __forceinline__ void load_unit<QuantType::iq4_xs>(const uint32_t* sw, int base, int u, Unit& un) {
    const int sb = base + 136 * (u >> 3);
    const int j = u & 7;  // sub-block: qs[16j + l], low nibble value l, high nibble l + 16
    uint32_t h[2], w[4];  // h: d | scales_h << 16, scales_l
    lds_words<2>(sw, sb, h);
    lds_words<4>(sw, sb + 8 + 16 * j, w);
    lut_unit(w, kIq4Lut0, kIq4Lut1, kIq4Lut2, kIq4Lut3, un);
    const int ls = (int)(((h[1] >> (4 * j)) & 0xfu) | (((h[0] >> (16 + 2 * j)) & 3u) << 4));
    un.a0 = un.a1 = fp16_bits_to_f32(h[0]) * (float)(ls - 32);
    un.m = 0.0f;
}

template <>
__device__ __forceinline__ void load_unit<QuantType::q2_k>(const uint32_t* sw, int base, int u, Unit& un) {
    const int sb = base + 84 * (u >> 3);
    const int j = u & 7, hh = j >> 2, k = j & 3;  // values 128hh + 32k + l: bits 2k of qs[32hh + l]
    uint32_t w[8], dd[1];
    lds_words<8>(sw, sb + 16 + 32 * hh, w);
    lds_words<1>(sw, sb + 80, dd);
#pragma unroll
    for (int i = 0; i < 8; ++i) un.q[i] = (int)((w[i] >> (2 * k)) & 0x03030303u);
    const uint32_t sc = lds_u16(sw, sb + 2 * j);  // sub-blocks 2j (values 0..15) and 2j + 1
    const float d = fp16_bits_to_f32(dd[0]), dmin = fp16_bits_to_f32(dd[0] >> 16);
    un.a0 = d * (float)(sc & 0xfu);
    un.a1 = d * (float)((sc >> 8) & 0xfu);
    un.m = dmin * (float)((sc >> 4) & 0xfu);
    un.m1 = dmin * (float)((sc >> 12) & 0xfu);
}

// Q3_K 6-bit scale of 16-value sub-block s (0..15), still offset by 32 (quant/q3_k.cpp sub_scale).
__device__ __forceinline__ int q3_k_scale(const uint32_t (&sc)[3], int s) {
    const uint32_t low = s < 8 ? (byte_of3(sc, s) & 0xfu) : (byte_of3(sc, s - 8) >> 4);
    const uint32_t high = (byte_of3(sc, 8 + (s & 3)) >> (2 * (s >> 2))) & 3u;
    return (int)(low | (high << 4));
}

template <>
__device__ __forceinline__ void load_unit<QuantType::q3_k>(const uint32_t* sw, int base, int u, Unit& un) {
    const int sb = base + 110 * (u >> 3);
    const int j = u & 7, hh = j >> 2, k = j & 3;  // low bits: bits 2k of qs[32hh + l]; high: bit j of hmask[l]
    uint32_t lo[8], hm[8], sc[3];
    lds_words<8>(sw, sb + 32 + 32 * hh, lo);
    lds_words<8>(sw, sb, hm);
    lds_words<3>(sw, sb + 96, sc);
#pragma unroll
    for (int i = 0; i < 8; ++i) {
        const uint32_t code = ((lo[i] >> (2 * k)) & 0x03030303u) | (((hm[i] >> j) & 0x01010101u) << 2);  // 0..7
        un.q[i] = (int)__vsub4(code, 0x04040404u);                                                    // -4..3
    }
    const float d = fp16_bits_to_f32(lds_u16(sw, sb + 108));
    un.a0 = d * (float)(q3_k_scale(sc, 2 * j) - 32);
    un.a1 = d * (float)(q3_k_scale(sc, 2 * j + 1) - 32);
    un.m = 0.0f;
}

// Per type: kUnits units per slot, rows per block, bytes per 64 units, the stage-local index of
// unit i of slot p, and the decoder of a slot (row data starting at byte `base` of sw). kPair:
// two units per slot where the type allows it (K-quants), one unit and four rows otherwise.
// Pairs halve the decode work per byte (the single-token case, where that work bounds the
// speed); single units with four rows share each activation load over more rows (several
// tokens, where activation loads dominate).
template <QuantType kType, bool kPair> struct Slot {  // one unit per slot
    static constexpr int kUnits = 1, kRows = 4;
    static constexpr int kGroupBytes = Fmt<kType>::kGroupBytes;
    static __device__ __forceinline__ int unit(int p, int) { return p; }
    static __device__ __forceinline__ void load(const uint32_t* sw, int base, int p, Unit (&un)[1]) {
        load_unit<kType>(sw, base, p, un[0]);
    }
};

template <> struct Slot<QuantType::q4_k, true> {  // slot p: super-block p/4, chunk c = p%4 = sub-blocks 2c, 2c+1
    static constexpr int kUnits = 2, kRows = 2, kGroupBytes = 8 * 144;
    static __device__ __forceinline__ int unit(int p, int i) { return 8 * (p >> 2) + 2 * (p & 3) + i; }
    static __device__ __forceinline__ void load(const uint32_t* sw, int base, int p, Unit (&un)[2]) {
        const int sb = base + 144 * (p >> 2), c = p & 3;
        uint32_t h[4];  // d, dmin, scales[0..11]
        uint32_t w[8];  // qs[32c .. 32c + 31]: low nibbles sub-block 2c, high nibbles 2c + 1
        if ((base & 15) == 0) {  // the row is 16-byte aligned (uniform over the block): vector loads
            const auto* sv = reinterpret_cast<const uint4*>(sw);
            const uint4 hv = sv[sb >> 4], q0 = sv[(sb + 16 + 32 * c) >> 4], q1 = sv[(sb + 32 + 32 * c) >> 4];
            h[0] = hv.x, h[1] = hv.y, h[2] = hv.z, h[3] = hv.w;
            w[0] = q0.x, w[1] = q0.y, w[2] = q0.z, w[3] = q0.w, w[4] = q1.x, w[5] = q1.y, w[6] = q1.z, w[7] = q1.w;
        } else {
            lds_words<4>(sw, sb, h);
            lds_words<8>(sw, sb + 16 + 32 * c, w);
        }
#pragma unroll
        for (int i = 0; i < 8; ++i) {
            un[0].q[i] = (int)(w[i] & 0x0f0f0f0fu);
            un[1].q[i] = (int)((w[i] >> 4) & 0x0f0f0f0fu);
        }
        const float d = fp16_bits_to_f32(h[0]), dmin = fp16_bits_to_f32(h[0] >> 16);
#pragma unroll
        for (int i = 0; i < 2; ++i) {
            uint32_t sc, mn;
            q4_k_scale_min(2 * c + i, h[1], h[2], h[3], sc, mn);
            un[i].a0 = un[i].a1 = d * (float)sc;
            un[i].m = dmin * (float)mn;
        }
    }
};

template <> struct Slot<QuantType::q6_k, true> {  // slot p: super-block p/4, q = p%4: half hh = q/2, k = q%2 and k + 2
    static constexpr int kUnits = 2, kRows = 2, kGroupBytes = 8 * 210;
    static __device__ __forceinline__ int unit(int p, int i) { return 8 * (p >> 2) + 4 * ((p & 3) >> 1) + (p & 1) + 2 * i; }
    static __device__ __forceinline__ void load(const uint32_t* sw, int base, int p, Unit (&un)[2]) {
        const int sb = base + 210 * (p >> 2), hh = (p & 3) >> 1, k = p & 1;
        // Unit k (values 128hh + 32k + l) is the low nibble of ql[64hh + 32k + l] and bits 2k of
        // qh[32hh + l]; unit k + 2 the high nibble of the same ql byte and bits 2k + 4.
        uint32_t lo[8], hi[8], sc[2];
        lds_words<8>(sw, sb + 64 * hh + 32 * k, lo);
        lds_words<8>(sw, sb + 128 + 32 * hh, hi);
        lds_words<2>(sw, sb + 192 + 2 * (4 * hh + k), sc);  // scales[2j], [2j+1] of j and (j + 2: word 1)
        const int sh = 2 * k;
#pragma unroll
        for (int i = 0; i < 8; ++i) {
            const uint32_t hb = hi[i] >> sh;
            un[0].q[i] = (int)__vsub4((lo[i] & 0x0f0f0f0fu) | ((hb & 0x03030303u) << 4), 0x20202020u);
            un[1].q[i] = (int)__vsub4(((lo[i] >> 4) & 0x0f0f0f0fu) | ((hb & 0x30303030u)), 0x20202020u);
        }
        const float d = fp16_bits_to_f32(lds_u16(sw, sb + 208));
#pragma unroll
        for (int i = 0; i < 2; ++i) {
            un[i].a0 = d * (float)(int8_t)(sc[i] & 0xffu);
            un[i].a1 = d * (float)(int8_t)((sc[i] >> 8) & 0xffu);
            un[i].m = 0.0f;
        }
    }
};

template <> struct Slot<QuantType::q5_k, true> {  // slot p: super-block p/4, chunk c = p%4 = sub-blocks 2c, 2c+1
    static constexpr int kUnits = 2, kRows = 2, kGroupBytes = 8 * 176;
    static __device__ __forceinline__ int unit(int p, int i) { return 8 * (p >> 2) + 2 * (p & 3) + i; }
    static __device__ __forceinline__ void load(const uint32_t* sw, int base, int p, Unit (&un)[2]) {
        const int sb = base + 176 * (p >> 2), c = p & 3;
        uint32_t h[4];   // d, dmin, scales[0..11]
        uint32_t qh[8];  // qh[0..31]: bit 2c sub-block 2c, bit 2c + 1 sub-block 2c + 1
        uint32_t w[8];   // qs[32c .. 32c + 31]: low nibbles sub-block 2c, high nibbles 2c + 1
        if ((base & 15) == 0) {  // the row is 16-byte aligned (uniform over the block; 176 = 11 * 16)
            const auto* sv = reinterpret_cast<const uint4*>(sw);
            const uint4 hv = sv[sb >> 4], h0 = sv[(sb + 16) >> 4], h1 = sv[(sb + 32) >> 4];
            const uint4 q0 = sv[(sb + 48 + 32 * c) >> 4], q1 = sv[(sb + 64 + 32 * c) >> 4];
            h[0] = hv.x, h[1] = hv.y, h[2] = hv.z, h[3] = hv.w;
            qh[0] = h0.x, qh[1] = h0.y, qh[2] = h0.z, qh[3] = h0.w, qh[4] = h1.x, qh[5] = h1.y, qh[6] = h1.z, qh[7] = h1.w;
            w[0] = q0.x, w[1] = q0.y, w[2] = q0.z, w[3] = q0.w, w[4] = q1.x, w[5] = q1.y, w[6] = q1.z, w[7] = q1.w;
        } else {
            lds_words<4>(sw, sb, h);
            lds_words<8>(sw, sb + 16, qh);
            lds_words<8>(sw, sb + 48 + 32 * c, w);
        }
#pragma unroll
        for (int i = 0; i < 8; ++i) {
            const uint32_t hb = qh[i] >> (2 * c);
            un[0].q[i] = (int)((w[i] & 0x0f0f0f0fu) | ((hb & 0x01010101u) << 4));
            un[1].q[i] = (int)(((w[i] >> 4) & 0x0f0f0f0fu) | ((hb & 0x02020202u) << 3));
        }
        const float d = fp16_bits_to_f32(h[0]), dmin = fp16_bits_to_f32(h[0] >> 16);
#pragma unroll
        for (int i = 0; i < 2; ++i) {
            uint32_t sc, mn;
            q4_k_scale_min(2 * c + i, h[1], h[2], h[3], sc, mn);
            un[i].a0 = un[i].a1 = d * (float)sc;
            un[i].m = dmin * (float)mn;
        }
    }
};

template <> struct Slot<QuantType::iq4_xs, true> {  // slot p: super-block p/4, chunk c = p%4 = sub-blocks 2c, 2c+1
    static constexpr int kUnits = 2, kRows = 2, kGroupBytes = 8 * 136;
    static __device__ __forceinline__ int unit(int p, int i) { return 8 * (p >> 2) + 2 * (p & 3) + i; }
    static __device__ __forceinline__ void load(const uint32_t* sw, int base, int p, Unit (&un)[2]) {
        const int sb = base + 136 * (p >> 2), c = p & 3;
        uint32_t h[2];  // d | scales_h << 16, scales_l
        uint32_t w[8];  // qs[32c .. 32c + 31]: sub-block 2c in words 0..3, 2c + 1 in words 4..7
        lds_words<2>(sw, sb, h);
        if ((base & 7) == 0) {  // blocks are 8-byte aligned (136 = 17 * 8): the qs chunk is (sb + 8 + 32c)
            const auto* sv = reinterpret_cast<const uint2*>(sw);
            const int o = (sb + 8 + 32 * c) >> 3;
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                const uint2 v = sv[o + i];
                w[2 * i] = v.x, w[2 * i + 1] = v.y;
            }
        } else {
            lds_words<8>(sw, sb + 8 + 32 * c, w);
        }
#pragma unroll
        for (int k = 0; k < 2; ++k) {
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                uint32_t lo, hi;
                lut16x8(w[4 * k + i], kIq4Lut0, kIq4Lut1, kIq4Lut2, kIq4Lut3, lo, hi);
                un[k].q[i] = (int)lo, un[k].q[4 + i] = (int)hi;
            }
            const int j = 2 * c + k;
            const int ls = (int)(((h[1] >> (4 * j)) & 0xfu) | (((h[0] >> (16 + 2 * j)) & 3u) << 4));
            un[k].a0 = un[k].a1 = fp16_bits_to_f32(h[0]) * (float)(ls - 32);
            un[k].m = 0.0f;
        }
    }
};

__device__ __forceinline__ uint32_t smem_u32(const void* p) { return (uint32_t)__cvta_generic_to_shared(p); }
// 16 bytes global -> shared, bypassing L1 (weights are read once).
__device__ __forceinline__ void cp_async16(void* dst, const void* src) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(smem_u32(dst)), "l"(src) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory"); }

constexpr int kBufs = 3;  // stage buffers: two items in flight while one is computed

// The matrix of row `row` of the launch's row space (no dynamic indexing of the parameter).
__device__ __forceinline__ int seg_of(const MvArgs& a, int row) {
    return (a.n_segs > 2 && row >= a.seg[2].row_begin) ? 2 : (a.n_segs > 1 && row >= a.seg[1].row_begin) ? 1 : 0;
}
__device__ __forceinline__ const MvSeg& seg_at(const MvArgs& a, int s) {
    return s == 0 ? a.seg[0] : s == 1 ? a.seg[1] : a.seg[2];
}

// Stores a rotated pair (rope kinds): values y0, y1 of rows `local`, `local` + 1 of its matrix.
__device__ __noinline__ void store_rope_pair(float x0, float x1, int local, int t, int kind, void* out, int64_t ld,
                                             RopeConsts c, const int32_t* positions, const int32_t* slots) {
    const int e = local % c.head_dim;
    float y0 = x0, y1 = x1;
    if (e < c.n_rot) rope_rotate(x0, x1, positions[t], e / 2, c, y0, y1);
    if (kind == kMvRopeF32) {
        float* o = static_cast<float*>(out) + (int64_t)t * ld + local;
        o[0] = y0, o[1] = y1;
    } else {
        __half* o = static_cast<__half*>(out) + (int64_t)slots[t] * ld + local;
        o[0] = __float2half_rn(y0), o[1] = __float2half_rn(y1);
    }
}

// kPre (one token, rows of at most kPre stages; 0 otherwise): a thread's slot covers the same
// activation units in every row group, so it loads them once into registers instead of once per
// item: those loads (L1 hits at best, L2 round trips under the weight stream) were on every
// item's critical path, and each block's item rate, not DRAM, bounded the smaller matrices.
template <QuantType kType, int T, int kPre>
__global__ void __launch_bounds__(kMaxThreads, T > 4 ? 3 : 4)
    matvec_q8_kernel(const __grid_constant__ MvArgs a, int data_bytes, const int8_t* __restrict__ xq,
                     const float2* __restrict__ xds, int n_in) {
    static_assert(kPre == 0 || T == 1, "activations are preloaded for one token only");
    // The next kernel may be scheduled now: it waits for this one before using its results.
    pdl_launch_dependents();
    using S = Slot<kType, T == 1>;
    constexpr int R = S::kRows, U = S::kUnits;
    extern __shared__ uint4 smem[];                // [kBufs][R rows][row_stride / 16]: one item each
    __shared__ float red[kMaxThreads / 32][R][T];  // per-warp partial sums
    const int nth = blockDim.x, tid = threadIdx.x;
    const int stage_units = nth * U;                         // a multiple of 64
    const int stage_bytes = stage_units / 64 * S::kGroupBytes;  // a multiple of 16
    const int row_stride = stage_bytes + 32;  // data + misalignment (< 16) + the word lds_words reads past it
    const int buf_stride = R * row_stride;
    const int n_units = n_in / 32;
    const int n_stages = (n_units + stage_units - 1) / stage_units;
    const int n_out = a.n_rows;
    const int n_groups = (n_out + R - 1) / R;
    const int n_items = (n_groups - (int)blockIdx.x + (int)gridDim.x - 1) / (int)gridDim.x * n_stages;

    // Rows past n_out read row n_out - 1 (valid memory) and are never stored.
    auto row_ptr = [&](int row) {
        row = min(row, n_out - 1);
        const MvSeg& sg = seg_at(a, seg_of(a, row));
        int local = row - sg.row_begin;
        if (sg.ids != nullptr) local = sg.ids[local / sg.id_rows] * sg.id_rows + local % sg.id_rows;
        return sg.w + (size_t)local * sg.row_bytes;
    };
    auto issue = [&](int item) {  // copies item `item` (if any) and commits a group either way
        if (item < n_items) {
            const int row0 = ((int)blockIdx.x + item / n_stages * (int)gridDim.x) * R;
            const int sb0 = item % n_stages * stage_bytes;  // stage start inside the row
            const int bytes = min(stage_bytes, data_bytes - sb0);
            auto* dst = reinterpret_cast<std::byte*>(smem) + item % kBufs * buf_stride;
#pragma unroll
            for (int r = 0; r < R; ++r) {
                const uintptr_t start = (uintptr_t)(row_ptr(row0 + r) + sb0);
                const uintptr_t base = start & ~(uintptr_t)15;
                const int nv = (int)(((start & 15) + bytes + 15) >> 4);
                for (int v = tid; v < nv; v += nth) {
                    cp_async16(dst + r * row_stride + 16 * v, reinterpret_cast<const void*>(base + 16 * (uintptr_t)v));
                }
            }
        }
        cp_async_commit();
    };

#pragma unroll
    for (int p = 0; p < kBufs - 1; ++p) issue(p);
    // Launched as a programmatic dependent of the kernel that writes the activations: the first
    // weight items are in flight; wait for it (no-op when launched normally).
    pdl_wait();

    constexpr int kP = kPre > 0 ? kPre : 1;
    int4 xa[kP][U][2];  // kPre: this thread's activation codes per stage and unit
    float2 xd[kP][U];   // and their {d, sum}
    if constexpr (kPre > 0) {
#pragma unroll
        for (int st = 0; st < kPre; ++st) {
#pragma unroll
            for (int i = 0; i < U; ++i) {
                const int g = st * stage_units + S::unit(tid, i);
                if (st < n_stages && g < n_units) {
                    const int4* xp = reinterpret_cast<const int4*>(xq + 32 * (size_t)g);
                    xa[st][i][0] = xp[0], xa[st][i][1] = xp[1];
                    xd[st][i] = xds[g];
                } else {
                    xa[st][i][0] = xa[st][i][1] = make_int4(0, 0, 0, 0);
                    xd[st][i] = make_float2(0.0f, 0.0f);
                }
            }
        }
    }

    float acc[R][T];
#pragma unroll
    for (int r = 0; r < R; ++r) {
#pragma unroll
        for (int t = 0; t < T; ++t) acc[r][t] = 0.0f;
    }
    const int warp = tid >> 5, lane = tid & 31;
    for (int item = 0; item < n_items; ++item) {
        issue(item + kBufs - 1);  // into the buffer computed last iteration (released by its barrier)
        cp_async_wait<kBufs - 1>();
        __syncthreads();  // item `item` landed for every thread's copies
        const int row0 = ((int)blockIdx.x + item / n_stages * (int)gridDim.x) * R;
        const int stage = item % n_stages;
        const int gbase = stage * stage_units;
        int tok = 0;  // act_per_id: the token whose activations this row group reads
        if constexpr (kPre == 0 && T == 1) {
            const MvSeg& sg = seg_at(a, seg_of(a, min(row0, n_out - 1)));
            if (sg.act_per_id) tok = (min(row0, n_out - 1) - sg.row_begin) / sg.id_rows;
        }
        const uint32_t* sw = reinterpret_cast<const uint32_t*>(smem) + item % kBufs * (buf_stride / 4);
        if (gbase + S::unit(tid, 0) < n_units) {  // slots hold whole super-blocks: all units in or out
            Unit un[R][U];
#pragma unroll
            for (int r = 0; r < R; ++r) {
                const int mis = (int)((uintptr_t)row_ptr(row0 + r) & 15);  // row start inside its 16-byte chunk
                S::load(sw, r * row_stride + mis, tid, un[r]);
            }
#pragma unroll
            for (int t = 0; t < T; ++t) {
#pragma unroll
                for (int i = 0; i < U; ++i) {
                    int4 x0, x1;
                    float2 ds;
                    if constexpr (kPre > 0) {  // select, not index: the arrays stay in registers
                        const bool s1 = kPre > 1 && stage == 1;
                        x0 = s1 ? xa[kP - 1][i][0] : xa[0][i][0];
                        x1 = s1 ? xa[kP - 1][i][1] : xa[0][i][1];
                        ds = s1 ? xd[kP - 1][i] : xd[0][i];
                    } else {
                        const int g = gbase + S::unit(tid, i);
                        const int4* xp = reinterpret_cast<const int4*>(xq + (size_t)(t + tok) * n_in + 32 * (size_t)g);
                        x0 = xp[0], x1 = xp[1];
                        ds = xds[(size_t)(t + tok) * n_units + g];
                    }
                    [[maybe_unused]] float sx0 = 0.0f, sx1 = 0.0f;  // the halves' activation sums (kAccTwoMin)
                    if constexpr (kAcc<kType> == kAccTwoMin) {
                        constexpr int kOnes = 0x01010101;
                        sx0 = small_int_to_float(__dp4a(x0.w, kOnes, __dp4a(x0.z, kOnes, __dp4a(x0.y, kOnes, __dp4a(x0.x, kOnes, 0)))));
                        sx1 = small_int_to_float(__dp4a(x1.w, kOnes, __dp4a(x1.z, kOnes, __dp4a(x1.y, kOnes, __dp4a(x1.x, kOnes, 0)))));
                    }
#pragma unroll
                    for (int r = 0; r < R; ++r) {
                        const Unit& u = un[r][i];
                        const int s0 = __dp4a(u.q[3], x0.w, __dp4a(u.q[2], x0.z, __dp4a(u.q[1], x0.y, __dp4a(u.q[0], x0.x, 0))));
                        const int s1 = __dp4a(u.q[7], x1.w, __dp4a(u.q[6], x1.z, __dp4a(u.q[5], x1.y, __dp4a(u.q[4], x1.x, 0))));
                        if constexpr (kAcc<kType> == kAccTwo) {
                            acc[r][t] += ds.x * (u.a0 * small_int_to_float(s0) + u.a1 * small_int_to_float(s1));
                        } else if constexpr (kAcc<kType> == kAccTwoMin) {
                            acc[r][t] += ds.x * (u.a0 * small_int_to_float(s0) + u.a1 * small_int_to_float(s1) -
                                                 (u.m * sx0 + u.m1 * sx1));
                        } else {
                            acc[r][t] += ds.x * (u.a0 * small_int_to_float(s0 + s1) - u.m * ds.y);
                        }
                    }
                }
            }
        }
        if (stage == n_stages - 1) {  // the row group is complete: reduce over the block, store
#pragma unroll
            for (int r = 0; r < R; ++r) {
#pragma unroll
                for (int t = 0; t < T; ++t) {
                    const float v = warp_sum(acc[r][t]);
                    if (lane == 0) red[warp][r][t] = v;
                    acc[r][t] = 0.0f;
                }
            }
            __syncthreads();
            if (tid < R * T) {  // red is rewritten only after the barriers of a later item
                const int r = tid / T, t = tid % T;
                auto total = [&](int rr) {
                    float sum = 0.0f;
                    for (int k = 0; k < nth / 32; ++k) sum += red[k][rr][t];
                    return sum;
                };
                const int row = row0 + r;
                if (row < n_out) {
                    const MvSeg& sg = seg_at(a, seg_of(a, row));
                    const int local = row - sg.row_begin;
                    if (sg.kind == kMvF32) {
                        static_cast<float*>(sg.out)[(size_t)t * sg.ld + local] = total(r);
                    } else if (sg.kind == kMvF16) {
                        static_cast<__half*>(sg.out)[(int64_t)a.slots[t] * sg.ld + local] = __float2half_rn(total(r));
                    } else if ((local & 1) == 0) {
                        // A pair's rows are r and r + 1 of this group (even row_begin, R even):
                        // its even thread stores both.
                        store_rope_pair(total(r), total(r + 1), local, t, sg.kind, sg.out, sg.ld, a.rope, a.positions,
                                        a.slots);
                    }
                }
            }
        }
        __syncthreads();  // this item's buffer is refilled by the next iteration's copy
    }
}

template <QuantType kType, int T, int kPre = 0>
cudaError_t launch(const MvArgs& args, ActQ8 act, int n_in, int n_sm, bool pdl, cudaStream_t s) {
    using S = Slot<kType, T == 1>;
    const int n_units = n_in / 32;
    // Threads: one slot each, a stage (nth * kUnits units) a multiple of 64 units and, where the
    // row allows, no larger than the row (idle threads cost occupancy).
    const int nth_min = 64 / S::kUnits;
    const int nth = n_units >= 128 * S::kUnits ? 128 : n_units >= 64 * S::kUnits ? 64 : nth_min;
    const int stage_bytes = nth * S::kUnits / 64 * S::kGroupBytes;
    const size_t smem = (size_t)kBufs * S::kRows * (stage_bytes + 32);
    auto kernel = matvec_q8_kernel<kType, T, kPre>;
    cudaError_t err = cudaSuccess;
    if (smem > 48 * 1024) {
        err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
        if (err != cudaSuccess) return err;
    }
    // Persistent grid: at most as many blocks as fit at once (every block then streams
    // continuously), sized so that every block gets the same number of row groups (block b takes
    // b, b + grid, ...): with ceil(groups / cap) groups each, the last wave is not a tail (a grid
    // of exactly `cap` blocks lost up to 15 % to blocks with one group more than the rest).
    int per_sm = 0;
    err = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, nth, smem);
    if (err != cudaSuccess) return err;
    const int n_groups = (args.n_rows + S::kRows - 1) / S::kRows;
    const int cap = std::max(per_sm, 1) * n_sm;
    const int per_block = (n_groups + cap - 1) / cap;
    const int blocks = std::max(1, (n_groups + per_block - 1) / per_block);
    return launch_kernel(pdl, kernel, dim3((unsigned)blocks), dim3((unsigned)nth), smem, s, args,
                         (int)quant::row_size(kType, n_in), act.qs, act.ds, n_in);
}

template <QuantType kType>
cudaError_t launch_type(const MvArgs& args, ActQ8 act, int n_in, int n_tokens, int n_sm, bool pdl, cudaStream_t s) {
    bool per_id = false;  // rows read per-expert activations: not preloaded (kPre)
    for (int i = 0; i < args.n_segs; ++i) per_id = per_id || args.seg[i].act_per_id;
    if (n_tokens == 1 && !per_id) {  // the stage count of launch<kType, 1>'s thread choice
        using S = Slot<kType, true>;
        const int n_units = n_in / 32;
        const int nth = n_units >= 128 * S::kUnits ? 128 : n_units >= 64 * S::kUnits ? 64 : 64 / S::kUnits;
        const int n_stages = (n_units + nth * S::kUnits - 1) / (nth * S::kUnits);
        if (n_stages == 1) return launch<kType, 1, 1>(args, act, n_in, n_sm, pdl, s);
        if (n_stages == 2) return launch<kType, 1, 2>(args, act, n_in, n_sm, pdl, s);
    }
    switch (n_tokens) {
        case 1: return launch<kType, 1>(args, act, n_in, n_sm, pdl, s);
        case 2: return launch<kType, 2>(args, act, n_in, n_sm, pdl, s);
        case 3: return launch<kType, 3>(args, act, n_in, n_sm, pdl, s);
        case 4: return launch<kType, 4>(args, act, n_in, n_sm, pdl, s);
        case 5: return launch<kType, 5>(args, act, n_in, n_sm, pdl, s);
        case 6: return launch<kType, 6>(args, act, n_in, n_sm, pdl, s);
        case 7: return launch<kType, 7>(args, act, n_in, n_sm, pdl, s);
        case 8: return launch<kType, 8>(args, act, n_in, n_sm, pdl, s);
        default: return cudaErrorInvalidValue;
    }
}

}  // namespace

bool has_matvec_q8(QuantType type) {
    switch (type) {
        case QuantType::q8_0: case QuantType::q4_0: case QuantType::q4_1: case QuantType::q5_0: case QuantType::q5_1:
        case QuantType::q2_k: case QuantType::q3_k: case QuantType::q4_k: case QuantType::q5_k: case QuantType::q6_k:
        case QuantType::iq4_nl: case QuantType::iq4_xs: case QuantType::mxfp4:
            return true;
        default:
            return false;
    }
}

cudaError_t matvec_q8(QuantType type, MvArgs args, ActQ8 act, int n_in, int n_tokens, int n_sm, bool pdl,
                      cudaStream_t s) {
    if (args.n_segs < 1 || args.n_segs > kMvMaxSegs) return cudaErrorInvalidValue;
    args.n_rows = 0;
    for (int i = 0; i < args.n_segs; ++i) {
        args.seg[i].row_begin = args.n_rows;
        args.n_rows += args.seg[i].n_rows;
    }
    for (int i = args.n_segs; i < kMvMaxSegs; ++i) args.seg[i] = args.seg[args.n_segs - 1];  // never selected
    if (args.n_rows <= 0) return cudaSuccess;
    switch (type) {
        case QuantType::q8_0: return launch_type<QuantType::q8_0>(args, act, n_in, n_tokens, n_sm, pdl, s);
        case QuantType::q4_0: return launch_type<QuantType::q4_0>(args, act, n_in, n_tokens, n_sm, pdl, s);
        case QuantType::q4_k: return launch_type<QuantType::q4_k>(args, act, n_in, n_tokens, n_sm, pdl, s);
        case QuantType::q6_k: return launch_type<QuantType::q6_k>(args, act, n_in, n_tokens, n_sm, pdl, s);
        case QuantType::q4_1: return launch_type<QuantType::q4_1>(args, act, n_in, n_tokens, n_sm, pdl, s);
        case QuantType::q5_0: return launch_type<QuantType::q5_0>(args, act, n_in, n_tokens, n_sm, pdl, s);
        case QuantType::q5_1: return launch_type<QuantType::q5_1>(args, act, n_in, n_tokens, n_sm, pdl, s);
        case QuantType::iq4_nl: return launch_type<QuantType::iq4_nl>(args, act, n_in, n_tokens, n_sm, pdl, s);
        case QuantType::mxfp4: return launch_type<QuantType::mxfp4>(args, act, n_in, n_tokens, n_sm, pdl, s);
        case QuantType::q5_k: return launch_type<QuantType::q5_k>(args, act, n_in, n_tokens, n_sm, pdl, s);
        case QuantType::iq4_xs: return launch_type<QuantType::iq4_xs>(args, act, n_in, n_tokens, n_sm, pdl, s);
        case QuantType::q2_k: return launch_type<QuantType::q2_k>(args, act, n_in, n_tokens, n_sm, pdl, s);
        case QuantType::q3_k: return launch_type<QuantType::q3_k>(args, act, n_in, n_tokens, n_sm, pdl, s);
        default: return cudaErrorInvalidValue;
    }
}

}  // namespace hearth::backend::cuda_kernels
