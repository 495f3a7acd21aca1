#include "quant/q4_k.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "base/fp16.h"
#include "quant/quant_helpers.h"

HEARTH_QUANT_STRICT_FP

namespace hearth::quant {

using detail::get_scale_min_k4;
using detail::nearest_int;

namespace {

// 4-bit code of element e (0..255) of a super-block.
int code(const BlockQ4_K& b, int e) {
    const uint8_t byte = b.qs[32 * (e / 64) + e % 32];
    return (e % 64) < 32 ? (byte & 0xF) : (byte >> 4);
}

}  // namespace

void dequantize_row_q4_k(const BlockQ4_K* x, float* y, int64_t n) {
    const int64_t nb = n / BlockQ4_K::kBlockSize;
    for (int64_t i = 0; i < nb; ++i) {
        const float d = fp16_to_f32(x[i].d);
        const float dmin = fp16_to_f32(x[i].dmin);
        for (int j = 0; j < 8; ++j) {
            uint8_t sc, m;
            get_scale_min_k4(j, x[i].scales, &sc, &m);
            const float dl = d * sc;
            const float ml = dmin * m;
            for (int l = 0; l < 32; ++l) y[i * 256 + 32 * j + l] = dl * code(x[i], 32 * j + l) - ml;
        }
    }
}

void quantize_row_q4_k(const float* x, BlockQ4_K* y, int64_t n) {
    const int64_t nb = n / BlockQ4_K::kBlockSize;
    uint8_t L[256];     // [256] codes 0..15
    uint8_t Laux[32];   // scratch of make_qkx2_quants
    float weights[32];  // [32] error weights of the current sub-block
    float mins[8];      // [8] float min of each sub-block (>= 0, subtracted)
    float scales[8];    // [8] float scale of each sub-block
    for (int64_t i = 0; i < nb; ++i) {
        const float* xb = x + i * 256;
        float max_scale = 0, max_min = 0;
        for (int j = 0; j < 8; ++j) {
            const float* xs = xb + 32 * j;
            float sum_x2 = 0;
            for (int l = 0; l < 32; ++l) sum_x2 += xs[l] * xs[l];
            const float av_x = std::sqrt(sum_x2 / 32);
            for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(xs[l]);
            scales[j] = detail::make_qkx2_quants(32, 15, xs, weights, L + 32 * j, &mins[j], Laux,
                                                 -1.f, 0.1f, 20, false);
            max_scale = std::max(max_scale, scales[j]);
            max_min = std::max(max_min, mins[j]);
        }
        const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
        const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
        std::memset(y[i].scales, 0, sizeof y[i].scales);
        for (int j = 0; j < 8; ++j) {
            const uint8_t ls = std::min<uint8_t>(63, (uint8_t)nearest_int(inv_scale * scales[j]));
            const uint8_t lm = std::min<uint8_t>(63, (uint8_t)nearest_int(inv_min * mins[j]));
            detail::set_scale_min_k4(j, ls, lm, y[i].scales);
        }
        y[i].d = f32_to_fp16(max_scale / 63.f);
        y[i].dmin = f32_to_fp16(max_min / 63.f);
        // Requantize against the rounded scales; a sub-block with scale 0 keeps the codes of
        // its scale search, as in ggml.
        for (int j = 0; j < 8; ++j) {
            uint8_t sc, m;
            get_scale_min_k4(j, y[i].scales, &sc, &m);
            const float d = fp16_to_f32(y[i].d) * sc;
            if (!d) continue;
            const float dm = fp16_to_f32(y[i].dmin) * m;
            for (int l = 0; l < 32; ++l) {
                const int q = nearest_int((xb[32 * j + l] + dm) / d);
                L[32 * j + l] = (uint8_t)std::max(0, std::min(15, q));
            }
        }
        for (int c = 0; c < 4; ++c) {
            for (int l = 0; l < 32; ++l) {
                y[i].qs[32 * c + l] = (uint8_t)(L[64 * c + l] | (L[64 * c + l + 32] << 4));
            }
        }
    }
}

namespace {

// Exact integer sums of super-block x / y over sub-blocks [j0, j1) (32 elements each):
// *sumi = sum of scale * (code . q8) and *sum_mins = sum of min * (sum of the 32 activations).
void sub_block_sums(const BlockQ4_K& x, const BlockQ8_K& y, int j0, int j1, int32_t* sumi,
                    int32_t* sum_mins) {
    *sumi = 0;
    *sum_mins = 0;
    for (int j = j0; j < j1; ++j) {
        uint8_t sc, m;
        get_scale_min_k4(j, x.scales, &sc, &m);
        *sum_mins += m * (y.bsums[2 * j] + y.bsums[2 * j + 1]);
        int32_t sub = 0;
        for (int l = 0; l < 32; ++l) sub += y.qs[32 * j + l] * code(x, 32 * j + l);
        *sumi += sc * sub;
    }
}

// Two float accumulators per output, acc = fma(sumi, d_x * d_y, acc) and
// acc_min = fma(sum_mins, dmin_x * d_y, acc_min), updated once per group of `group` sub-blocks;
// result acc - acc_min.
float repacked_dot(const BlockQ4_K* x, const BlockQ8_K* y, int64_t n, int group) {
    const int64_t nb = n / BlockQ4_K::kBlockSize;
    float acc = 0, acc_min = 0;
    for (int64_t i = 0; i < nb; ++i) {
        const float d = fp16_to_f32(x[i].d) * y[i].d;
        const float dmin = fp16_to_f32(x[i].dmin) * y[i].d;
        for (int j = 0; j < 8; j += group) {
            int32_t sumi, sum_mins;
            sub_block_sums(x[i], y[i], j, j + group, &sumi, &sum_mins);
            acc = std::fmaf((float)sumi, d, acc);
            acc_min = std::fmaf((float)sum_mins, dmin, acc_min);
        }
    }
    return acc - acc_min;
}

}  // namespace

// ggml's x86 order for Q4_K weights with a row count that is a multiple of 8 (every real weight
// matrix): llama.cpp repacks them (q4_K_8x8). Its gemm, which computes the outputs of each
// group of 4 prompt tokens, updates the two accumulators of repacked_dot once per pair of
// sub-blocks (64 elements, 4 times per super-block); see vec_dot_q4_k_gemv for the rest.
float vec_dot_q4_k(const BlockQ4_K* x, const BlockQ8_K* y, int64_t n) {
    return repacked_dot(x, y, n, 2);
}

float vec_dot_q4_k_gemv(const BlockQ4_K* x, const BlockQ8_K* y, int64_t n) {
    return repacked_dot(x, y, n, 8);
}

}  // namespace hearth::quant
