// Helpers shared by several quant formats: ggml's rounding primitive and the scale searches of
// its reference K-quant quantizers. Internal to src/quant/ (not part of the public API).
//
// Everything here reproduces ggml's C reference (ggml-quants.c) operation by operation, in the
// same evaluation order, because llama-quantize's output depends on every float rounding.
// The .cpp files that use these are compiled without floating-point contraction (see
// HEARTH_QUANT_STRICT_FP below).
#pragma once

#include <cstdint>
#include <cstring>

// -march=native lets g++ fuse a*b+c into one FMA (C++ defaults to -ffp-contract=fast), which
// changes the rounding of the scale searches. ggml's reference quantizers are C compiled in
// a mode without contraction, so every quant .cpp puts this after its includes.
#if defined(__GNUC__) && !defined(__clang__)
#define HEARTH_QUANT_STRICT_FP _Pragma("GCC optimize(\"fp-contract=off\")")
#else
#define HEARTH_QUANT_STRICT_FP _Pragma("STDC FP_CONTRACT OFF")
#endif

namespace hearth::quant::detail {

// Rounds to the nearest integer, ties to even, for |f| <= 4194303 (ggml's nearest_int: adding
// 1.5 * 2^23 leaves the rounded integer in the low mantissa bits).
inline int nearest_int(float f) {
    const float biased = f + 12582912.f;
    int32_t bits;
    std::memcpy(&bits, &biased, sizeof bits);
    return (bits & 0x007fffff) - 0x00400000;
}

// Index of the entry of the sorted table `values` [n] closest to x; ties go to the upper entry
// (ggml's best_index_int8).
inline int best_index_int8(int n, const int8_t* values, float x) {
    if (x <= values[0]) return 0;
    if (x >= values[n - 1]) return n - 1;
    int lo = 0, hi = n - 1;
    while (hi - lo > 1) {
        const int mid = (lo + hi) / 2;
        if (x < values[mid]) hi = mid; else lo = mid;
    }
    return x - values[hi - 1] < values[hi] - x ? hi - 1 : hi;
}

// Blocks whose largest magnitude is below this are stored as all zero.
constexpr float kGroupMaxEps = 1e-15f;

// Symmetric quantization of x[n] to integers in [-nmax, nmax-1] with a searched scale
// (ggml's make_qx_quants, without importance weights). Writes L[n] = q + nmax and returns the
// scale. rmse_type selects the error weights: 1 -> x^2, 2 -> 1, 3 -> |x|, other -> sqrt|x|;
// 0 skips the search.
float make_qx_quants(int n, int nmax, const float* x, int8_t* L, int rmse_type);

// Symmetric 3-bit style quantization to [-nmax, nmax-1] with an iterative refinement
// (ggml's make_q3_quants). Writes L[n] = q + nmax and returns the scale.
float make_q3_quants(int n, int nmax, const float* x, int8_t* L, bool do_rmse);

// Asymmetric quantization x ~ scale * L - the_min with L in [0, nmax], searching nstep+1 scales
// around nmax / (max - min) (ggml's make_qkx2_quants). weights[n] weigh the error; Laux[n] is
// scratch. Returns the scale and writes *the_min (>= 0).
float make_qkx2_quants(int n, int nmax, const float* x, const float* weights, uint8_t* L,
                       float* the_min, uint8_t* Laux, float rmin, float rdelta, int nstep,
                       bool use_mad);

// The scale/min half of ggml's Q4_K and Q5_K reference quantizers (identical but for nmax,
// rmin and nstep): a weighted scale/min search per 32-element sub-block, 6-bit scales and mins
// relative to the super-block's d/dmin, then every code requantized against the rounded
// scales. xb[256] in; L[256] codes 0..nmax, scales[12] (packed as get_scale_min_k4 reads
// them), *d and *dmin (fp16 bits) out.
void quantize_k_scales_mins(const float* xb, int nmax, float rmin, int nstep, uint8_t* L, uint8_t* scales,
                            uint16_t* d, uint16_t* dmin);

// 6-bit scale and min j (0..7) of a Q4_K/Q5_K super-block from its 12 packed bytes:
// bytes 0-3 hold scales 0-3 (low 6 bits), bytes 4-7 mins 0-3 (low 6 bits), bytes 8-11 the low
// nibbles of scales/mins 4-7, and the top 2 bits of bytes 0-7 their high bits.
inline void get_scale_min_k4(int j, const uint8_t* q, uint8_t* scale, uint8_t* min) {
    if (j < 4) {
        *scale = q[j] & 63;
        *min = q[j + 4] & 63;
    } else {
        *scale = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *min = (uint8_t)((q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4));
    }
}

// Inverse of get_scale_min_k4 for sub-block j; `q` [12] must start zeroed and be filled for
// j = 0..7 in order.
inline void set_scale_min_k4(int j, uint8_t scale, uint8_t min, uint8_t* q) {
    if (j < 4) {
        q[j] = scale;
        q[j + 4] = min;
    } else {
        q[j + 4] = (uint8_t)((scale & 0xF) | ((min & 0xF) << 4));
        q[j - 4] |= (uint8_t)((scale >> 4) << 6);
        q[j - 0] |= (uint8_t)((min >> 4) << 6);
    }
}

}  // namespace hearth::quant::detail
