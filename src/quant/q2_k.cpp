#include "quant/q2_k.h"

#include <algorithm>
#include <cmath>

#include "base/fp16.h"
#include "quant/lanes.h"
#include "quant/quant_helpers.h"

HEARTH_QUANT_STRICT_FP

namespace hearth::quant {

using detail::nearest_int;

namespace {

// 2-bit code of element e (0..255) of a super-block.
int code(const BlockQ2_K& b, int e) {
    const int half = e / 128, r = e % 128;
    return (b.qs[32 * half + r % 32] >> (2 * (r / 32))) & 3;
}

}  // namespace

void dequantize_row_q2_k(const BlockQ2_K* x, float* y, int64_t n) {
    const int64_t nb = n / BlockQ2_K::kBlockSize;
    for (int64_t i = 0; i < nb; ++i) {
        const float d = fp16_to_f32(x[i].d);
        const float dmin = fp16_to_f32(x[i].dmin);
        for (int j = 0; j < 16; ++j) {
            const float dl = d * (x[i].scales[j] & 0xF);
            const float ml = dmin * (x[i].scales[j] >> 4);
            for (int l = 0; l < 16; ++l) y[i * 256 + 16 * j + l] = dl * code(x[i], 16 * j + l) - ml;
        }
    }
}

void quantize_row_q2_k(const float* x, BlockQ2_K* y, int64_t n) {
    const int64_t nb = n / BlockQ2_K::kBlockSize;
    const float q4scale = 15.f;
    uint8_t L[256];      // [256] codes 0..3
    uint8_t Laux[16];    // scratch of make_qkx2_quants
    float weights[16];   // [16] error weights of the current sub-block
    float mins[16];      // [16] float min of each sub-block (>= 0, subtracted)
    float scales[16];    // [16] float scale of each sub-block
    for (int64_t i = 0; i < nb; ++i) {
        const float* xb = x + i * 256;
        float max_scale = 0, max_min = 0;
        for (int j = 0; j < 16; ++j) {
            for (int l = 0; l < 16; ++l) weights[l] = std::fabs(xb[16 * j + l]);
            scales[j] = detail::make_qkx2_quants(16, 3, xb + 16 * j, weights, L + 16 * j, &mins[j],
                                                 Laux, -0.5f, 0.1f, 15, true);
            max_scale = std::max(max_scale, scales[j]);
            max_min = std::max(max_min, mins[j]);
        }
        if (max_scale > 0) {
            const float iscale = q4scale / max_scale;
            for (int j = 0; j < 16; ++j) y[i].scales[j] = (uint8_t)nearest_int(iscale * scales[j]);
            y[i].d = f32_to_fp16(max_scale / q4scale);
        } else {
            for (int j = 0; j < 16; ++j) y[i].scales[j] = 0;
            y[i].d = f32_to_fp16(0.f);
        }
        if (max_min > 0) {
            const float iscale = q4scale / max_min;
            for (int j = 0; j < 16; ++j) {
                y[i].scales[j] |= (uint8_t)(nearest_int(iscale * mins[j]) << 4);
            }
            y[i].dmin = f32_to_fp16(max_min / q4scale);
        } else {
            y[i].dmin = f32_to_fp16(0.f);
        }
        // Requantize against the rounded scales; a sub-block with scale 0 keeps the codes of
        // its scale search, as in ggml.
        for (int j = 0; j < 16; ++j) {
            const float d = fp16_to_f32(y[i].d) * (y[i].scales[j] & 0xF);
            if (!d) continue;
            const float dm = fp16_to_f32(y[i].dmin) * (y[i].scales[j] >> 4);
            for (int l = 0; l < 16; ++l) {
                const int q = nearest_int((xb[16 * j + l] + dm) / d);
                L[16 * j + l] = (uint8_t)std::max(0, std::min(3, q));
            }
        }
        for (int h = 0; h < 2; ++h) {
            const uint8_t* Lh = L + 128 * h;
            for (int l = 0; l < 32; ++l) {
                y[i].qs[32 * h + l] =
                    (uint8_t)(Lh[l] | (Lh[l + 32] << 2) | (Lh[l + 64] << 4) | (Lh[l + 96] << 6));
            }
        }
    }
}

namespace {

// Exact integer sums of super-block x / y over sub-blocks [j0, j1) (16 elements each):
// *sumi = sum of scale * (code . q8) and *sum_mins = sum of min * (sum of the 16 activations).
void sub_block_sums(const BlockQ2_K& x, const BlockQ8_K& y, int j0, int j1, int32_t* sumi,
                    int32_t* sum_mins) {
    *sumi = 0;
    *sum_mins = 0;
    for (int j = j0; j < j1; ++j) {
        *sum_mins += y.bsums[j] * (x.scales[j] >> 4);
        int32_t sub = 0;
        for (int l = 0; l < 16; ++l) sub += y.qs[16 * j + l] * code(x, 16 * j + l);
        *sumi += (x.scales[j] & 0xF) * sub;
    }
}

// Sums in the order of llama.cpp's repacked kernel (see dot_with_min_accumulators).
float repacked_dot(const BlockQ2_K* x, const BlockQ8_K* y, int64_t n, int group) {
    return detail::dot_with_min_accumulators(x, y, n / BlockQ2_K::kBlockSize, 16, group, sub_block_sums);
}

}  // namespace

// ggml's x86 order for Q2_K weights with a row count that is a multiple of 8 (every real weight
// matrix) on AVX-512 machines: llama.cpp repacks them (q2_K_8x8). Its gemm, which computes the
// outputs of each group of 4 prompt tokens, updates the two accumulators of repacked_dot once
// per half super-block (8 sub-blocks, 128 elements); see vec_dot_q2_k_gemv for the rest.
float vec_dot_q2_k(const BlockQ2_K* x, const BlockQ8_K* y, int64_t n) {
    return repacked_dot(x, y, n, 8);
}

float vec_dot_q2_k_gemv(const BlockQ2_K* x, const BlockQ8_K* y, int64_t n) {
    return repacked_dot(x, y, n, 16);
}

}  // namespace hearth::quant
