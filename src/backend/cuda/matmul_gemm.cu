// Tensor-core GEMM for prefill: Y[t][o] = sum_k W[o][k] * X[t][k] with mma.sync m16n8k16
// (f16 x f16 -> f32). W (F32, F16, BF16 and every has_matvec_q8 type) is dequantized (F32 and
// BF16 weights: rounded) to f16 on the way into shared memory; X arrives as f16 (converted once
// by matmul.cu). F32 and BF16 weights lose precision here (f16 has 11 significant bits; BF16's
// range beyond 65504 does not fit): the error bound of matmul.h counts the weights' f16 rounding.
//
// Tiles: a block of 256 threads (8 warps) computes 128 weight rows x 128 tokens, stepping K by
// 64 (two 32-value units: blocks of 32, K-quant sub-blocks of 32 or pairs of 16). Each
// warp owns 64 rows x 32 tokens: 4 x 4 mma tiles, 64 f32 accumulators per thread. Per K step,
// thread `tid` turns the 32 weights of unit 2*step + tid%2 of row tid/2 into f16 and stores
// them; the raw bytes of the next step are loaded into registers before the current step's
// mma, and the X tile of the next step is copied by cp.async, both into the other of two
// shared buffers (one barrier a step; a first version stepped by 32 and reached ~200 TFLOP/s
// on F16).
// The dequantized value of every weight is bit-identical to quant/'s reference dequantize (same
// f32 operations, no contraction) before its rounding to f16.
// Block order: the token tiles of one weight tile are adjacent in the grid, so W is read from
// HBM about once and from L2 by the other token tiles. Shared rows are padded to 40 halves
// (80 bytes) so the 8 row addresses of each ldmatrix land in distinct bank groups.
// dequant_f16 (the cuBLAS path's weights, matmul_blas.cu) writes whole matrices with the same
// Tile code, so both prefill paths multiply bit-identical f16 weights.
#include <cstddef>

#include "backend/cuda/matmul_kernels.cuh"
#include "backend/cuda/mma.cuh"
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

static_assert(sizeof(quant::BlockQ8_0) == 34 && sizeof(quant::BlockQ4_0) == 18 && sizeof(quant::BlockQ4_K) == 144 &&
              sizeof(quant::BlockQ6_K) == 210 && sizeof(quant::BlockQ4_1) == 20 && sizeof(quant::BlockQ5_0) == 22 &&
              sizeof(quant::BlockQ5_1) == 24 && sizeof(quant::BlockIQ4_NL) == 18 && sizeof(quant::BlockMXFP4) == 17 &&
              sizeof(quant::BlockQ5_K) == 176 && sizeof(quant::BlockIQ4_XS) == 136 && sizeof(quant::BlockQ2_K) == 84 &&
              sizeof(quant::BlockQ3_K) == 110);

constexpr int kBM = 128;  // weight rows per block
constexpr int kBN = 128;  // tokens per block
constexpr int kBK = 64;   // K per step: two units of 32
constexpr int kThreads = 256;
constexpr int kLd = kBK + 8;  // shared row stride in halves (144 bytes = 9 bank groups: ldmatrix rows spread)
constexpr size_t kSmemBytes = 2 * (size_t)(kBM + kBN) * kLd * sizeof(__half);  // 73,728: dynamic

using cuda_mma::cp_async16;
using cuda_mma::cp_async_commit;
using cuda_mma::ldmatrix_x4;
using cuda_mma::mma_16816;
using cuda_mma::pack_half2;

__device__ __forceinline__ uint4 ldg16(const std::byte* p) { return __ldg(reinterpret_cast<const uint4*>(p)); }
__device__ __forceinline__ uint32_t ldg_u32(const std::byte* p) { return __ldg(reinterpret_cast<const unsigned int*>(p)); }
__device__ __forceinline__ uint32_t ldg_u16(const std::byte* p) { return __ldg(reinterpret_cast<const unsigned short*>(p)); }

// 16 bytes at a 2-byte-aligned address as 5 aligned words plus a shift (the fifth word is read
// only when needed, so nothing past the 16 bytes' last aligned word is touched).
struct Raw16 {
    uint32_t w[5];
    int sh;
};
__device__ __forceinline__ void load16_a2(const std::byte* p, Raw16& r) {
    const auto* base = reinterpret_cast<const std::byte*>((uintptr_t)p & ~(uintptr_t)3);
    r.sh = (int)((uintptr_t)p & 2) * 8;
#pragma unroll
    for (int i = 0; i < 4; ++i) r.w[i] = ldg_u32(base + 4 * i);
    r.w[4] = r.sh ? ldg_u32(base + 16) : 0u;
}
// The same from any byte address (MXFP4's 17-byte blocks).
__device__ __forceinline__ void load16_a1(const std::byte* p, Raw16& r) {
    const auto* base = reinterpret_cast<const std::byte*>((uintptr_t)p & ~(uintptr_t)3);
    r.sh = (int)((uintptr_t)p & 3) * 8;
#pragma unroll
    for (int i = 0; i < 4; ++i) r.w[i] = ldg_u32(base + 4 * i);
    r.w[4] = r.sh ? ldg_u32(base + 16) : 0u;
}
__device__ __forceinline__ uint32_t word16(const Raw16& r, int i) { return __funnelshift_r(r.w[i], r.w[i + 1], r.sh); }

// 16 values of one row at k = 32*kt + 16*h (kt: 32-value unit): load() fetches the raw bytes,
// dequant() makes the 16 f16 values (2 x uint4, k ascending).
template <QuantType kType> struct Tile;

template <> struct Tile<QuantType::f16> {
    struct Raw {
        uint4 a, b;
    };
    static __device__ __forceinline__ void load(const std::byte* row, int kt, int h, Raw& r) {
        const std::byte* p = row + 2 * (size_t)(32 * kt + 16 * h);
        r.a = ldg16(p);
        r.b = ldg16(p + 16);
    }
    static __device__ __forceinline__ void dequant(const Raw& r, int, int, uint4 (&out)[2]) {
        out[0] = r.a;
        out[1] = r.b;
    }
};

// 16 codes, the bytes of four words u, each as the exact float byte - kOffset (byte_to_float),
// mapped by f (the type's dequantization, its roundings as the reference makes them) and packed
// into f16 pairs: the one decoding loop of every byte-coded tile.
template <int kOffset, class F>
__device__ __forceinline__ void map_bytes16(const uint32_t (&u)[4], F f, uint4 (&out)[2]) {
    constexpr float kBias = 8388608.0f + kOffset;
    uint32_t o[8];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        o[2 * i] = pack_half2(f(byte_to_float<0>(u[i], kBias)), f(byte_to_float<1>(u[i], kBias)));
        o[2 * i + 1] = pack_half2(f(byte_to_float<2>(u[i], kBias)), f(byte_to_float<3>(u[i], kBias)));
    }
    out[0] = make_uint4(o[0], o[1], o[2], o[3]);
    out[1] = make_uint4(o[4], o[5], o[6], o[7]);
}

// 16 int8 values (the bytes of v), each times `d` (one rounding: d * value as the reference).
__device__ __forceinline__ void scale_i8x16(const uint32_t (&v)[4], float d, uint4 (&out)[2]) {
    const uint32_t u[4] = {v[0] ^ 0x80808080u, v[1] ^ 0x80808080u, v[2] ^ 0x80808080u, v[3] ^ 0x80808080u};
    map_bytes16<128>(u, [d](float c) { return __fmul_rn(c, d); }, out);
}

// 16 codes (bytes of v, 0..255) as code * d + m, rounded twice like Q4_1/Q5_1's reference.
__device__ __forceinline__ void affine_u8x16(const uint32_t (&v)[4], float d, float m, uint4 (&out)[2]) {
    map_bytes16<0>(v, [d, m](float c) { return __fadd_rn(__fmul_rn(c, d), m); }, out);
}

// 16 codes (bytes of v, 0..255) as dl * code - ml, rounded twice like the K-quant references.
__device__ __forceinline__ void scale_min_u8x16(const uint32_t (&v)[4], float dl, float ml, uint4 (&out)[2]) {
    map_bytes16<0>(v, [dl, ml](float c) { return __fsub_rn(__fmul_rn(dl, c), ml); }, out);
}

template <> struct Tile<QuantType::q8_0> {  // block kt, quants 16h..16h+15
    struct Raw {
        Raw16 q;
        uint32_t d;
    };
    static __device__ __forceinline__ void load(const std::byte* row, int kt, int h, Raw& r) {
        const std::byte* blk = row + 34 * (size_t)kt;
        r.d = ldg_u16(blk);
        load16_a2(blk + 2 + 16 * h, r.q);
    }
    static __device__ __forceinline__ void dequant(const Raw& r, int, int, uint4 (&out)[2]) {
        const uint32_t v[4] = {word16(r.q, 0), word16(r.q, 1), word16(r.q, 2), word16(r.q, 3)};
        scale_i8x16(v, fp16_bits_to_f32(r.d), out);
    }
};

template <> struct Tile<QuantType::q4_0> {  // block kt; values 16h.. are nibble h of qs[0..15]
    struct Raw {
        Raw16 q;
        uint32_t d;
    };
    static __device__ __forceinline__ void load(const std::byte* row, int kt, int, Raw& r) {
        const std::byte* blk = row + 18 * (size_t)kt;
        r.d = ldg_u16(blk);
        load16_a2(blk + 2, r.q);
    }
    static __device__ __forceinline__ void dequant(const Raw& r, int, int h, uint4 (&out)[2]) {
        const float d = fp16_bits_to_f32(r.d);
        uint32_t u[4];
#pragma unroll
        for (int i = 0; i < 4; ++i) u[i] = (word16(r.q, i) >> (4 * h)) & 0x0f0f0f0fu;
        map_bytes16<8>(u, [d](float c) { return __fmul_rn(c, d); }, out);  // (code - 8) * d
    }
};

template <> struct Tile<QuantType::q4_k> {  // super-block kt/8, sub-block j = kt%8, values 16h..
    struct Raw {
        uint4 hdr, qs;
    };
    static __device__ __forceinline__ void load(const std::byte* row, int kt, int h, Raw& r) {
        const std::byte* sb = row + 144 * (size_t)(kt >> 3);
        const int j = kt & 7;
        r.hdr = ldg16(sb);
        r.qs = ldg16(sb + 16 + 32 * (j >> 1) + 16 * h);
    }
    static __device__ __forceinline__ void dequant(const Raw& r, int kt, int, uint4 (&out)[2]) {
        const int j = kt & 7;
        auto scale_byte = [&](int k) {  // scales[k] (header bytes 4..15), k run time: selects, not a local array
            const uint32_t word = k < 4 ? r.hdr.y : k < 8 ? r.hdr.z : r.hdr.w;
            return (word >> (8 * (k & 3))) & 0xffu;
        };
        uint32_t sc, mn;  // quant::detail::get_scale_min_k4
        if (j < 4) {
            sc = scale_byte(j) & 63;
            mn = scale_byte(j + 4) & 63;
        } else {
            sc = (scale_byte(j + 4) & 0xF) | ((scale_byte(j - 4) >> 6) << 4);
            mn = (scale_byte(j + 4) >> 4) | ((scale_byte(j) >> 6) << 4);
        }
        const float dl = fp16_bits_to_f32(r.hdr.x) * (float)sc;
        const float ml = fp16_bits_to_f32(r.hdr.x >> 16) * (float)mn;
        const int sh = 4 * (j & 1);
        const uint32_t u[4] = {(r.qs.x >> sh) & 0x0f0f0f0fu, (r.qs.y >> sh) & 0x0f0f0f0fu, (r.qs.z >> sh) & 0x0f0f0f0fu,
                               (r.qs.w >> sh) & 0x0f0f0f0fu};
        scale_min_u8x16(u, dl, ml, out);  // dl * q - ml, rounded twice like the reference
    }
};

template <> struct Tile<QuantType::q6_k> {  // super-block kt/8; values e = 32*(kt%8) + 16h + l, l < 16
    struct Raw {
        Raw16 lo, hi;
        uint32_t d;
        int sc;
    };
    static __device__ __forceinline__ void load(const std::byte* row, int kt, int h, Raw& r) {
        const std::byte* sb = row + 210 * (size_t)(kt >> 3);
        const int j = kt & 7, hh = j >> 2, k = j & 3;
        load16_a2(sb + 64 * hh + 32 * (k & 1) + 16 * h, r.lo);
        load16_a2(sb + 128 + 32 * hh + 16 * h, r.hi);
        r.sc = (int)(signed char)__ldg(reinterpret_cast<const signed char*>(sb + 192 + 2 * j + h));
        r.d = ldg_u16(sb + 208);
    }
    static __device__ __forceinline__ void dequant(const Raw& r, int kt, int, uint4 (&out)[2]) {
        const int k = kt & 3;
        const float dsc = fp16_bits_to_f32(r.d) * (float)r.sc;  // exact
        uint32_t u[4];
#pragma unroll
        for (int i = 0; i < 4; ++i)
            u[i] = ((word16(r.lo, i) >> (4 * (k >> 1))) & 0x0f0f0f0fu) |
                   (((word16(r.hi, i) >> (2 * k)) & 0x03030303u) << 4);  // codes 0..63
        map_bytes16<32>(u, [dsc](float c) { return __fmul_rn(dsc, c); }, out);  // dsc * (code - 32)
    }
};

template <> struct Tile<QuantType::bf16> {  // bf16 -> f32 is exact; then f16 rounding
    struct Raw {
        uint4 a, b;
    };
    static __device__ __forceinline__ void load(const std::byte* row, int kt, int h, Raw& r) {
        const std::byte* p = row + 2 * (size_t)(32 * kt + 16 * h);
        r.a = ldg16(p);
        r.b = ldg16(p + 16);
    }
    static __device__ __forceinline__ void dequant(const Raw& r, int, int, uint4 (&out)[2]) {
        const uint32_t w[8] = {r.a.x, r.a.y, r.a.z, r.a.w, r.b.x, r.b.y, r.b.z, r.b.w};
        uint32_t o[8];
#pragma unroll
        for (int i = 0; i < 8; ++i) o[i] = pack_half2(__uint_as_float(w[i] << 16), __uint_as_float(w[i] & 0xffff0000u));
        out[0] = make_uint4(o[0], o[1], o[2], o[3]);
        out[1] = make_uint4(o[4], o[5], o[6], o[7]);
    }
};

template <> struct Tile<QuantType::f32> {
    struct Raw {
        uint4 v[4];
    };
    static __device__ __forceinline__ void load(const std::byte* row, int kt, int h, Raw& r) {
        const std::byte* p = row + 4 * (size_t)(32 * kt + 16 * h);
#pragma unroll
        for (int i = 0; i < 4; ++i) r.v[i] = ldg16(p + 16 * i);
    }
    static __device__ __forceinline__ void dequant(const Raw& r, int, int, uint4 (&out)[2]) {
        uint32_t o[8];
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            o[2 * i] = pack_half2(__uint_as_float(r.v[i].x), __uint_as_float(r.v[i].y));
            o[2 * i + 1] = pack_half2(__uint_as_float(r.v[i].z), __uint_as_float(r.v[i].w));
        }
        out[0] = make_uint4(o[0], o[1], o[2], o[3]);
        out[1] = make_uint4(o[4], o[5], o[6], o[7]);
    }
};

template <> struct Tile<QuantType::q4_1> {  // block kt; values 16h.. are nibble h of qs[0..15]
    struct Raw {
        Raw16 q;
        uint32_t dm;
    };
    static __device__ __forceinline__ void load(const std::byte* row, int kt, int, Raw& r) {
        const std::byte* blk = row + 20 * (size_t)kt;
        r.dm = ldg_u32(blk);  // 20-byte blocks of a 16-byte-aligned row: 4-byte aligned
        load16_a2(blk + 4, r.q);
    }
    static __device__ __forceinline__ void dequant(const Raw& r, int, int h, uint4 (&out)[2]) {
        uint32_t v[4];
#pragma unroll
        for (int i = 0; i < 4; ++i) v[i] = (word16(r.q, i) >> (4 * h)) & 0x0f0f0f0fu;
        affine_u8x16(v, fp16_bits_to_f32(r.dm), fp16_bits_to_f32(r.dm >> 16), out);
    }
};

template <QuantType kType> struct TileQ5 {  // Q5_0 (22 bytes) / Q5_1 (24): block kt, values 16h + l
    static constexpr int kBytes = kType == QuantType::q5_0 ? 22 : 24, kQh = kBytes - 20;
    struct Raw {
        Raw16 q;
        uint32_t d, m, qh;
    };
    static __device__ __forceinline__ void load(const std::byte* row, int kt, int, Raw& r) {
        const std::byte* blk = row + kBytes * (size_t)kt;
        r.d = ldg_u16(blk);
        r.m = kType == QuantType::q5_1 ? ldg_u16(blk + 2) : 0u;
        r.qh = ldg_u16(blk + kQh) | (ldg_u16(blk + kQh + 2) << 16);
        load16_a2(blk + kQh + 4, r.q);
    }
    static __device__ __forceinline__ void dequant(const Raw& r, int, int h, uint4 (&out)[2]) {
        uint32_t v[4];
#pragma unroll
        for (int i = 0; i < 4; ++i) v[i] = ((word16(r.q, i) >> (4 * h)) & 0x0f0f0f0fu) | spread_bit4(r.qh >> (16 * h + 4 * i));
        const float d = fp16_bits_to_f32(r.d);
        if constexpr (kType == QuantType::q5_0) {  // (code - 16) * d: as int8 values
#pragma unroll
            for (int i = 0; i < 4; ++i) v[i] = __vsub4(v[i], 0x10101010u);
            scale_i8x16(v, d, out);
        } else {
            affine_u8x16(v, d, fp16_bits_to_f32(r.m), out);
        }
    }
};
template <> struct Tile<QuantType::q5_0> : TileQ5<QuantType::q5_0> {};
template <> struct Tile<QuantType::q5_1> : TileQ5<QuantType::q5_1> {};

template <> struct Tile<QuantType::iq4_nl> {  // block kt; values 16h.. are nibble h of qs[0..15]
    struct Raw {
        Raw16 q;
        uint32_t d;
    };
    static __device__ __forceinline__ void load(const std::byte* row, int kt, int, Raw& r) {
        const std::byte* blk = row + 18 * (size_t)kt;
        r.d = ldg_u16(blk);
        load16_a2(blk + 2, r.q);
    }
    static __device__ __forceinline__ void dequant(const Raw& r, int, int h, uint4 (&out)[2]) {
        uint32_t v[4];
#pragma unroll
        for (int i = 0; i < 4; ++i) v[i] = iq4_lut((word16(r.q, i) >> (4 * h)) & 0x0f0f0f0fu);
        scale_i8x16(v, fp16_bits_to_f32(r.d), out);
    }
};

template <> struct Tile<QuantType::mxfp4> {  // block kt (17 bytes: any alignment)
    struct Raw {
        Raw16 q;
        uint32_t e;
    };
    static __device__ __forceinline__ void load(const std::byte* row, int kt, int, Raw& r) {
        const std::byte* blk = row + 17 * (size_t)kt;
        r.e = __ldg(reinterpret_cast<const unsigned char*>(blk));
        load16_a1(blk + 1, r.q);
    }
    static __device__ __forceinline__ void dequant(const Raw& r, int, int h, uint4 (&out)[2]) {
        uint32_t v[4];
#pragma unroll
        for (int i = 0; i < 4; ++i) v[i] = mxfp4_lut((word16(r.q, i) >> (4 * h)) & 0x0f0f0f0fu);
        scale_i8x16(v, e8m0_half(r.e), out);
    }
};

template <> struct Tile<QuantType::q5_k> {  // super-block kt/8, sub-block j = kt%8, values 16h..
    struct Raw {
        uint4 hdr, qs, qh;
    };
    static __device__ __forceinline__ void load(const std::byte* row, int kt, int h, Raw& r) {
        const std::byte* sb = row + 176 * (size_t)(kt >> 3);  // 176 = 11 * 16: every load aligned
        const int j = kt & 7;
        r.hdr = ldg16(sb);
        r.qh = ldg16(sb + 16 + 16 * h);
        r.qs = ldg16(sb + 48 + 32 * (j >> 1) + 16 * h);
    }
    static __device__ __forceinline__ void dequant(const Raw& r, int kt, int, uint4 (&out)[2]) {
        const int j = kt & 7;
        uint32_t sc, mn;
        q4_k_scale_min(j, r.hdr.y, r.hdr.z, r.hdr.w, sc, mn);
        const float dl = fp16_bits_to_f32(r.hdr.x) * (float)sc;
        const float ml = fp16_bits_to_f32(r.hdr.x >> 16) * (float)mn;
        const uint32_t qs[4] = {r.qs.x, r.qs.y, r.qs.z, r.qs.w}, qh[4] = {r.qh.x, r.qh.y, r.qh.z, r.qh.w};
        uint32_t v[4];
#pragma unroll
        for (int i = 0; i < 4; ++i) v[i] = ((qs[i] >> (4 * (j & 1))) & 0x0f0f0f0fu) | (((qh[i] >> j) & 0x01010101u) << 4);
        scale_min_u8x16(v, dl, ml, out);
    }
};

template <> struct Tile<QuantType::iq4_xs> {  // super-block kt/8, sub-block j = kt%8: qs[16j..], nibble h
    struct Raw {
        Raw16 q;
        uint32_t hdr;  // d | scales_h << 16
        uint32_t sl;   // scales_l[j / 2]
    };
    static __device__ __forceinline__ void load(const std::byte* row, int kt, int, Raw& r) {
        const std::byte* sb = row + 136 * (size_t)(kt >> 3);  // 8-byte aligned
        const int j = kt & 7;
        r.hdr = ldg_u32(sb);
        r.sl = __ldg(reinterpret_cast<const unsigned char*>(sb + 4 + (j >> 1)));
        load16_a2(sb + 8 + 16 * j, r.q);
    }
    static __device__ __forceinline__ void dequant(const Raw& r, int kt, int h, uint4 (&out)[2]) {
        const int j = kt & 7;
        const int ls = (int)(((r.sl >> (4 * (j & 1))) & 0xfu) | (((r.hdr >> (16 + 2 * j)) & 3u) << 4));
        const float dl = fp16_bits_to_f32(r.hdr) * (float)(ls - 32);
        uint32_t v[4];
#pragma unroll
        for (int i = 0; i < 4; ++i) v[i] = iq4_lut((word16(r.q, i) >> (4 * h)) & 0x0f0f0f0fu);
        scale_i8x16(v, dl, out);
    }
};

template <> struct Tile<QuantType::q2_k> {  // super-block kt/8; values 32j + 16h + l: bits 2k of qs[32hh + 16h + l]
    struct Raw {
        Raw16 q;
        uint32_t dd;  // d | dmin << 16
        uint32_t sc;  // scales[2j + h]
    };
    static __device__ __forceinline__ void load(const std::byte* row, int kt, int h, Raw& r) {
        const std::byte* sb = row + 84 * (size_t)(kt >> 3);  // 4-byte aligned
        const int j = kt & 7;
        load16_a2(sb + 16 + 32 * (j >> 2) + 16 * h, r.q);
        r.dd = ldg_u32(sb + 80);
        r.sc = __ldg(reinterpret_cast<const unsigned char*>(sb + 2 * j + h));
    }
    static __device__ __forceinline__ void dequant(const Raw& r, int kt, int, uint4 (&out)[2]) {
        const int k = kt & 3;
        const float dl = fp16_bits_to_f32(r.dd) * (float)(r.sc & 0xfu);
        const float ml = fp16_bits_to_f32(r.dd >> 16) * (float)(r.sc >> 4);
        uint32_t v[4];
#pragma unroll
        for (int i = 0; i < 4; ++i) v[i] = (word16(r.q, i) >> (2 * k)) & 0x03030303u;
        scale_min_u8x16(v, dl, ml, out);
    }
};

template <> struct Tile<QuantType::q3_k> {  // super-block kt/8; values e = 32j + 16h + l
    struct Raw {
        Raw16 lo, hm;
        uint32_t d;
        int sc;  // the sub-block's 6-bit scale, offset by 32
    };
    static __device__ __forceinline__ void load(const std::byte* row, int kt, int h, Raw& r) {
        const std::byte* sb = row + 110 * (size_t)(kt >> 3);  // 2-byte aligned
        const int j = kt & 7, s = 2 * j + h;                  // s: 16-value sub-block
        load16_a2(sb + 32 + 32 * (j >> 2) + 16 * h, r.lo);     // bits 2k of qs[32hh + l]
        load16_a2(sb + 16 * h, r.hm);                          // bit j of hmask[l]
        r.d = ldg_u16(sb + 108);
        const auto* scb = reinterpret_cast<const unsigned char*>(sb + 96);
        const uint32_t low = s < 8 ? (__ldg(scb + s) & 0xfu) : (__ldg(scb + s - 8) >> 4);
        const uint32_t high = (__ldg(scb + 8 + (s & 3)) >> (2 * (s >> 2))) & 3u;
        r.sc = (int)(low | (high << 4));
    }
    static __device__ __forceinline__ void dequant(const Raw& r, int kt, int, uint4 (&out)[2]) {
        const int j = kt & 7, k = j & 3;
        const float dl = fp16_bits_to_f32(r.d) * (float)(r.sc - 32);
        uint32_t v[4];
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const uint32_t code = ((word16(r.lo, i) >> (2 * k)) & 0x03030303u) | (((word16(r.hm, i) >> j) & 0x01010101u) << 2);
            v[i] = __vsub4(code, 0x04040404u);  // -4..3 as int8
        }
        scale_i8x16(v, dl, out);
    }
};

__device__ __forceinline__ void store_out(float* y, int n_out, int n_tokens, int m, int n, float v, bool atomic) {
    if (m < n_out && n < n_tokens) {
        float* p = y + (size_t)n * n_out + m;
        if (atomic) {
            atomicAdd(p, v);
        } else {
            *p = v;
        }
    }
}

template <QuantType kType>
__global__ void __launch_bounds__(kThreads, 2) gemm_kernel(const std::byte* __restrict__ w, size_t row_bytes,
                                                           const __half* __restrict__ xh, float* __restrict__ y,
                                                           int n_in, int n_out, int n_tokens, int kt_per_split,
                                                           bool atomic) {
    extern __shared__ uint4 smem_v[];
    __half* sA = reinterpret_cast<__half*>(smem_v);  // [2][kBM][kLd] f16 weights
    __half* sB = sA + 2 * kBM * kLd;                   // [2][kBN][kLd] f16 activations
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int n0 = blockIdx.x * kBN, m0 = blockIdx.y * kBM;
    const int n_kt = n_in / kBK;
    const int kt0 = blockIdx.z * kt_per_split, kt1 = min(n_kt, kt0 + kt_per_split);
    const int wm = (warp & 1) * 64, wn = (warp >> 1) * 32;

    // Weight loader: row a_r of the tile, unit 2*kt + a_u (values 32*a_u..+31 of the step). Rows
    // past n_out read row n_out - 1 and are never stored.
    const int a_r = tid >> 1, a_u = tid & 1;
    const std::byte* a_row = w + (size_t)min(m0 + a_r, n_out - 1) * row_bytes;
    // Activation loader: 16-byte chunks c = tid + 256 i (i < 4): token c / 8, k 8 * (c % 8).
    const int b_tok = tid >> 3, b_k = (tid & 7) * 8;
    auto load_b = [&](int kt, int buf) {
#pragma unroll
        for (int c = 0; c < 4; ++c) {
            const int tok = b_tok + 32 * c, t = n0 + tok;
            const bool ok = t < n_tokens;  // tokens past the end are zero-filled
            const __half* src = xh + (size_t)(ok ? t : 0) * n_in + (size_t)kt * kBK + b_k;
            cp_async16(&sB[(buf * kBN + tok) * kLd + b_k], src, ok ? 16 : 0);
        }
        cp_async_commit();
    };

    float acc[4][4][4];
#pragma unroll
    for (int mi = 0; mi < 4; ++mi) {
#pragma unroll
        for (int ni = 0; ni < 4; ++ni) {
#pragma unroll
            for (int e = 0; e < 4; ++e) acc[mi][ni][e] = 0.0f;
        }
    }

    typename Tile<kType>::Raw raw[2];
    auto load_a = [&](int kt) {
        Tile<kType>::load(a_row, 2 * kt + a_u, 0, raw[0]);
        Tile<kType>::load(a_row, 2 * kt + a_u, 1, raw[1]);
    };
    if (kt0 < kt1) {
        load_a(kt0);
        load_b(kt0, 0);
    }
    for (int kt = kt0; kt < kt1; ++kt) {
        const int buf = (kt - kt0) & 1;
        uint4* dst = reinterpret_cast<uint4*>(&sA[(buf * kBM + a_r) * kLd + a_u * 32]);
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            uint4 deq[2];
            Tile<kType>::dequant(raw[h], 2 * kt + a_u, h, deq);
            dst[2 * h] = deq[0];
            dst[2 * h + 1] = deq[1];
        }
        cuda_mma::cp_async_wait<0>();
        __syncthreads();  // sA[buf] and sB[buf] complete; every warp is done with step kt - 1
        if (kt + 1 < kt1) {
            load_a(kt + 1);
            load_b(kt + 1, buf ^ 1);
        }
        const __half* a_tile = sA + buf * kBM * kLd;
        const __half* b_tile = sB + buf * kBN * kLd;
#pragma unroll
        for (int ks = 0; ks < kBK / 16; ++ks) {
            uint32_t af[4][4], bf[2][4];
#pragma unroll
            for (int mi = 0; mi < 4; ++mi) {
                ldmatrix_x4(af[mi], &a_tile[(wm + mi * 16 + (lane & 15)) * kLd + ks * 16 + (lane >> 4) * 8]);
            }
#pragma unroll
            for (int nj = 0; nj < 2; ++nj) {
                ldmatrix_x4(bf[nj],
                            &b_tile[(wn + nj * 16 + (lane & 7) + ((lane >> 4) << 3)) * kLd + ks * 16 + ((lane >> 3) & 1) * 8]);
            }
#pragma unroll
            for (int mi = 0; mi < 4; ++mi) {
#pragma unroll
                for (int ni = 0; ni < 4; ++ni) {
                    mma_16816(acc[mi][ni], af[mi], bf[ni >> 1][(ni & 1) * 2], bf[ni >> 1][(ni & 1) * 2 + 1]);
                }
            }
        }
    }

    // C fragment: c0, c1 at (row lane/4, tokens 2*(lane%4) + 0, 1); c2, c3 at row + 8.
#pragma unroll
    for (int mi = 0; mi < 4; ++mi) {
#pragma unroll
        for (int ni = 0; ni < 4; ++ni) {
            const int m = m0 + wm + mi * 16 + (lane >> 2);
            const int n = n0 + wn + ni * 8 + 2 * (lane & 3);
            store_out(y, n_out, n_tokens, m, n, acc[mi][ni][0], atomic);
            store_out(y, n_out, n_tokens, m, n + 1, acc[mi][ni][1], atomic);
            store_out(y, n_out, n_tokens, m + 8, n, acc[mi][ni][2], atomic);
            store_out(y, n_out, n_tokens, m + 8, n + 1, acc[mi][ni][3], atomic);
        }
    }
}

template <QuantType kType>
cudaError_t launch(const std::byte* w, size_t row_bytes, const __half* xh, float* y, int n_in, int n_out,
                   int n_tokens, int n_sm, cudaStream_t s) {
    const dim3 grid((unsigned)((n_tokens + kBN - 1) / kBN), (unsigned)((n_out + kBM - 1) / kBM), 1);
    const int n_kt = n_in / kBK;
    // At most one tile per SM (two blocks fit on each): split K in two halves, added into a
    // zeroed Y. With exactly two addends the result is 0 + a + b = a + b in either order, so it
    // stays deterministic.
    const bool split = (long long)grid.x * grid.y <= n_sm && n_kt >= 8;
    const int splits = split ? 2 : 1;
    const int kt_per_split = (n_kt + splits - 1) / splits;
    cudaError_t err = cudaFuncSetAttribute(gemm_kernel<kType>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)kSmemBytes);
    if (err != cudaSuccess) return err;
    if (split) {
        err = cudaMemsetAsync(y, 0, (size_t)n_out * n_tokens * sizeof(float), s);
        if (err != cudaSuccess) return err;
    }
    gemm_kernel<kType><<<dim3(grid.x, grid.y, splits), kThreads, kSmemBytes, s>>>(w, row_bytes, xh, y, n_in, n_out,
                                                                                  n_tokens, kt_per_split, split);
    return cudaGetLastError();
}

// W rows [0, n_rows) as f16, row r at out + r * n_in: thread (r, kt) makes the 32 values of
// unit kt of row r with Tile<kType>, so every value is the one the GEMM's shared-memory tile gets
// (the cuBLAS path's weights, matmul_blas.cu). Unit u = r * n_in/32 + kt goes to out + 32 * u, so
// a warp's 32 consecutive units are 2 KiB of contiguous output; it is staged in shared memory and
// written as 4 fully coalesced 512-byte rows. (Each thread storing its own 64 bytes, so that every
// store instruction writes half sectors, took ~100 us for Q4_K 14336 x 4096, ~1.5 TB/s of
// traffic; staged, ~58 us, ~2.6 TB/s against the 3.0 TB/s copy rate, H100.) Staging index i is stored at i ^ ((i >> 3) & 7): both the 64-byte-strided
// writes and the linear reads then hit 8 distinct 16-byte bank groups per phase.
template <QuantType kType>
__global__ void __launch_bounds__(256) dequant_f16_kernel(const std::byte* __restrict__ w, size_t row_bytes,
                                                          __half* __restrict__ out, int n_in, int64_t n_units) {
    __shared__ uint4 stage[8][128];  // per warp: 32 units x 4 chunks of 16 bytes
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int64_t gid = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    auto slot = [](int i) { return i ^ ((i >> 3) & 7); };
    if (gid < n_units) {
        const int units_per_row = n_in / 32;
        const int64_t r = gid / units_per_row;
        const int kt = (int)(gid - r * units_per_row);
        const std::byte* row = w + (size_t)r * row_bytes;
        typename Tile<kType>::Raw raw[2];
        Tile<kType>::load(row, kt, 0, raw[0]);
        Tile<kType>::load(row, kt, 1, raw[1]);
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            uint4 deq[2];
            Tile<kType>::dequant(raw[h], kt, h, deq);
            stage[warp][slot(4 * lane + 2 * h)] = deq[0];
            stage[warp][slot(4 * lane + 2 * h + 1)] = deq[1];
        }
    }
    __syncwarp();
    const int64_t chunk0 = 4 * (gid - lane);  // the warp's first 16-byte chunk of out
    const int64_t n_chunks = 4 * n_units;
    uint4* dst = reinterpret_cast<uint4*>(out) + chunk0;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
        const int c = 32 * j + lane;
        if (chunk0 + c < n_chunks) dst[c] = stage[warp][slot(c)];
    }
}

template <QuantType kType>
cudaError_t launch_dequant(const std::byte* w, size_t row_bytes, __half* out, int n_in, int n_rows, cudaStream_t s) {
    const int64_t n_units = (int64_t)n_rows * (n_in / 32);
    const int threads = 256;
    const unsigned grid = (unsigned)((n_units + threads - 1) / threads);
    if (grid == 0) return cudaSuccess;
    dequant_f16_kernel<kType><<<grid, threads, 0, s>>>(w, row_bytes, out, n_in, n_units);
    return cudaGetLastError();
}

}  // namespace

cudaError_t dequant_f16(QuantType type, const std::byte* w, size_t row_bytes, __half* out, int n_in, int n_rows,
                        cudaStream_t s) {
    switch (type) {
        case QuantType::f16: return launch_dequant<QuantType::f16>(w, row_bytes, out, n_in, n_rows, s);
        case QuantType::q8_0: return launch_dequant<QuantType::q8_0>(w, row_bytes, out, n_in, n_rows, s);
        case QuantType::q4_0: return launch_dequant<QuantType::q4_0>(w, row_bytes, out, n_in, n_rows, s);
        case QuantType::q4_k: return launch_dequant<QuantType::q4_k>(w, row_bytes, out, n_in, n_rows, s);
        case QuantType::q6_k: return launch_dequant<QuantType::q6_k>(w, row_bytes, out, n_in, n_rows, s);
        case QuantType::f32: return launch_dequant<QuantType::f32>(w, row_bytes, out, n_in, n_rows, s);
        case QuantType::bf16: return launch_dequant<QuantType::bf16>(w, row_bytes, out, n_in, n_rows, s);
        case QuantType::q4_1: return launch_dequant<QuantType::q4_1>(w, row_bytes, out, n_in, n_rows, s);
        case QuantType::q5_0: return launch_dequant<QuantType::q5_0>(w, row_bytes, out, n_in, n_rows, s);
        case QuantType::q5_1: return launch_dequant<QuantType::q5_1>(w, row_bytes, out, n_in, n_rows, s);
        case QuantType::iq4_nl: return launch_dequant<QuantType::iq4_nl>(w, row_bytes, out, n_in, n_rows, s);
        case QuantType::mxfp4: return launch_dequant<QuantType::mxfp4>(w, row_bytes, out, n_in, n_rows, s);
        case QuantType::q5_k: return launch_dequant<QuantType::q5_k>(w, row_bytes, out, n_in, n_rows, s);
        case QuantType::iq4_xs: return launch_dequant<QuantType::iq4_xs>(w, row_bytes, out, n_in, n_rows, s);
        case QuantType::q2_k: return launch_dequant<QuantType::q2_k>(w, row_bytes, out, n_in, n_rows, s);
        case QuantType::q3_k: return launch_dequant<QuantType::q3_k>(w, row_bytes, out, n_in, n_rows, s);
        default: return cudaErrorInvalidValue;
    }
}

bool has_gemm(QuantType type) { return type == QuantType::f32 || type == QuantType::f16 || type == QuantType::bf16 || has_matvec_q8(type); }

cudaError_t gemm_f16(QuantType type, const std::byte* w, size_t row_bytes, const __half* xh, float* y, int n_in,
                     int n_out, int n_tokens, int n_sm, cudaStream_t s) {
    switch (type) {
        case QuantType::f16: return launch<QuantType::f16>(w, row_bytes, xh, y, n_in, n_out, n_tokens, n_sm, s);
        case QuantType::q8_0: return launch<QuantType::q8_0>(w, row_bytes, xh, y, n_in, n_out, n_tokens, n_sm, s);
        case QuantType::q4_0: return launch<QuantType::q4_0>(w, row_bytes, xh, y, n_in, n_out, n_tokens, n_sm, s);
        case QuantType::q4_k: return launch<QuantType::q4_k>(w, row_bytes, xh, y, n_in, n_out, n_tokens, n_sm, s);
        case QuantType::q6_k: return launch<QuantType::q6_k>(w, row_bytes, xh, y, n_in, n_out, n_tokens, n_sm, s);
        case QuantType::f32: return launch<QuantType::f32>(w, row_bytes, xh, y, n_in, n_out, n_tokens, n_sm, s);
        case QuantType::bf16: return launch<QuantType::bf16>(w, row_bytes, xh, y, n_in, n_out, n_tokens, n_sm, s);
        case QuantType::q4_1: return launch<QuantType::q4_1>(w, row_bytes, xh, y, n_in, n_out, n_tokens, n_sm, s);
        case QuantType::q5_0: return launch<QuantType::q5_0>(w, row_bytes, xh, y, n_in, n_out, n_tokens, n_sm, s);
        case QuantType::q5_1: return launch<QuantType::q5_1>(w, row_bytes, xh, y, n_in, n_out, n_tokens, n_sm, s);
        case QuantType::iq4_nl: return launch<QuantType::iq4_nl>(w, row_bytes, xh, y, n_in, n_out, n_tokens, n_sm, s);
        case QuantType::mxfp4: return launch<QuantType::mxfp4>(w, row_bytes, xh, y, n_in, n_out, n_tokens, n_sm, s);
        case QuantType::q5_k: return launch<QuantType::q5_k>(w, row_bytes, xh, y, n_in, n_out, n_tokens, n_sm, s);
        case QuantType::iq4_xs: return launch<QuantType::iq4_xs>(w, row_bytes, xh, y, n_in, n_out, n_tokens, n_sm, s);
        case QuantType::q2_k: return launch<QuantType::q2_k>(w, row_bytes, xh, y, n_in, n_out, n_tokens, n_sm, s);
        case QuantType::q3_k: return launch<QuantType::q3_k>(w, row_bytes, xh, y, n_in, n_out, n_tokens, n_sm, s);
        default: return cudaErrorInvalidValue;
    }
}

}  // namespace hearth::backend::cuda_kernels
