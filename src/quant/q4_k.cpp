#include "quant/q4_k.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "base/fp16.h"
#include "quant/lanes.h"
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
    uint8_t L[256];  // [256] codes 0..15
    for (int64_t i = 0; i < nb; ++i) {
        detail::quantize_k_scales_mins(x + i * 256, 15, -1.f, 20, L, y[i].scales, &y[i].d, &y[i].dmin);
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

// Sums in the order of llama.cpp's repacked kernel (see dot_with_min_accumulators).
float repacked_dot(const BlockQ4_K* x, const BlockQ8_K* y, int64_t n, int group) {
    return detail::dot_with_min_accumulators(x, y, n / BlockQ4_K::kBlockSize, 8, group, sub_block_sums);
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
