// Helpers shared by the AMX kernel files (tile_kernels_amx.cpp, tile_kernels_lanes_amx.cpp). Include
// only from *_amx.cpp files: the inline functions here are compiled with AMX and AVX-512 target
// flags (cmake/simd_flags.cmake), and a copy of them must never be linked into code that runs on
// other CPUs. Also only intrinsics: no inline function of another header.
#pragma once

#if !defined(__AMX_TILE__) || !defined(__AVX512F__)
#error "tile_kernels_amx.h is for the *_amx.cpp files, compiled with AMX and AVX-512 flags"
#endif

#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "backend/cpu/tile_kernels.h"

// GCC 12 warns about the deliberately undefined pass-through operands of the AVX-512 intrinsics
// (_mm512_undefined_ps in _mm512_cvtepi32_ps, _mm512_unpacklo_ps, _mm512_shuffle_f32x4, ...).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace hearth::backend::amx_detail {

// Palette 1. Tiles 0-3: C, 16 rows x 16 int32. Tiles 4, 5: A, 16 rows x 32 bytes (32 elements of
// 16 weight rows). Tiles 6, 7: B, 8 rows x 64 bytes (32 elements of 16 tokens, 4 per row and
// token). Every kernel uses this one configuration (AmxTileScope loads it).
struct alignas(64) TileConfig {
    uint8_t palette_id;
    uint8_t start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];  // [tile] bytes per row
    uint8_t rows[16];    // [tile] rows
};
static_assert(sizeof(TileConfig) == 64);

// The tile intrinsics are asm statements; tile loads do not tell the compiler they read memory,
// so every buffer a kernel is about to load must be written before this barrier.
inline void memory_barrier() { __asm__ volatile("" ::: "memory"); }

inline float f16_to_f32(uint16_t h) { return _cvtsh_ss(h); }

// Part `part` of `parts` of an object of `bytes` bytes into L1. The kernels spread the next
// super-block's weight and activation blocks over the steps of the current one: the tile loads
// otherwise wait on L2 (measured: the first TDP* after its loads took most of the samples).
inline void prefetch_part(const void* p, size_t bytes, int part, int parts) {
    const char* c = static_cast<const char*>(p);
    const size_t begin = bytes * part / parts / 64 * 64, end = bytes * (part + 1) / parts;
    for (size_t o = begin; o < end; o += 64) _mm_prefetch(c + o, _MM_HINT_T0);
}

// The 8 x 8 transpose of int32 elements r[c][l] -> o[l][c], in 256-bit registers.
inline void transpose8x8_epi32(const __m256i r[8], __m256i o[8]) {
    __m256i t[8], u[8];
    for (int i = 0; i < 4; ++i) {
        t[2 * i] = _mm256_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 2; ++i) {
        u[4 * i] = _mm256_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
        u[4 * i + 1] = _mm256_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
        u[4 * i + 2] = _mm256_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
        u[4 * i + 3] = _mm256_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
    }
    for (int k = 0; k < 4; ++k) {
        o[k] = _mm256_permute2x128_si256(u[k], u[4 + k], 0x20);
        o[4 + k] = _mm256_permute2x128_si256(u[k], u[4 + k], 0x31);
    }
}

// o[t][r] = v[r][t]: a 16 x 16 transpose in registers (unpack pairs of rows, then 4 x 4 blocks
// within 128-bit lanes, then the lanes).
inline void transpose16x16(const __m512 v[16], __m512 o[16]) {
    __m512 t[16], u[16];
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i) {
        t[2 * i] = _mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]);
    }
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i) {
        u[4 * i] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(1, 0, 1, 0));
        u[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(3, 2, 3, 2));
        u[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(1, 0, 1, 0));
        u[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
#pragma GCC unroll 4
    for (int k = 0; k < 4; ++k) {
        const __m512 v0 = _mm512_shuffle_f32x4(u[k], u[4 + k], 0x88), v1 = _mm512_shuffle_f32x4(u[k], u[4 + k], 0xDD);
        const __m512 v2 = _mm512_shuffle_f32x4(u[8 + k], u[12 + k], 0x88);
        const __m512 v3 = _mm512_shuffle_f32x4(u[8 + k], u[12 + k], 0xDD);
        o[k] = _mm512_shuffle_f32x4(v0, v2, 0x88);
        o[8 + k] = _mm512_shuffle_f32x4(v0, v2, 0xDD);
        o[4 + k] = _mm512_shuffle_f32x4(v1, v3, 0x88);
        o[12 + k] = _mm512_shuffle_f32x4(v1, v3, 0xDD);
    }
}

// y[t * y_stride + r] = v[r][t] for r < n_rows, t < n_tokens (transpose16x16, masked stores).
inline void store_transposed(const __m512 v[16], float* y, int64_t y_stride, int n_rows, int n_tokens) {
    __m512 col[16];  // [token] 16 rows
    transpose16x16(v, col);
    const __mmask16 mask = (__mmask16)((1u << n_rows) - 1);
    for (int t = 0; t < n_tokens; ++t) _mm512_mask_storeu_ps(y + t * y_stride, mask, col[t]);
}


// hsum8 (quant::detail::hsum8) of the 8 lane accumulators acc[0..7] of 16 outputs, elementwise.
inline __m512 hsum8_lanes(const float (*acc)[kAmxTokens]) {
    __m512 h[4];
    for (int l = 0; l < 4; ++l) h[l] = _mm512_add_ps(_mm512_load_ps(acc[l + 4]), _mm512_load_ps(acc[l]));
    return _mm512_add_ps(_mm512_add_ps(h[0], h[2]), _mm512_add_ps(h[1], h[3]));
}

}  // namespace hearth::backend::amx_detail
