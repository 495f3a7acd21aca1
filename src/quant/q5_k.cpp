#include "quant/q5_k.h"

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

// 5-bit code of element e (0..255) of a super-block.
int code(const BlockQ5_K& b, int e) {
    const uint8_t byte = b.qs[32 * (e / 64) + e % 32];
    const int low = (e % 64) < 32 ? (byte & 0xF) : (byte >> 4);
    return low | (((b.qh[e % 32] >> (e / 32)) & 1) << 4);
}

}  // namespace

void dequantize_row_q5_k(const BlockQ5_K* x, float* y, int64_t n) {
    const int64_t nb = n / BlockQ5_K::kBlockSize;
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

void quantize_row_q5_k(const float* x, BlockQ5_K* y, int64_t n) {
    const int64_t nb = n / BlockQ5_K::kBlockSize;
    uint8_t L[256];  // [256] codes 0..31
    for (int64_t i = 0; i < nb; ++i) {
        detail::quantize_k_scales_mins(x + i * 256, 31, -0.5f, 15, L, y[i].scales, &y[i].d, &y[i].dmin);
        std::memset(y[i].qh, 0, sizeof y[i].qh);
        for (int c = 0; c < 4; ++c) {
            for (int l = 0; l < 32; ++l) {
                const int q0 = L[64 * c + l], q1 = L[64 * c + l + 32];
                y[i].qs[32 * c + l] = (uint8_t)((q0 & 0xF) | ((q1 & 0xF) << 4));
                y[i].qh[l] |= (uint8_t)(((q0 >> 4) << (2 * c)) | ((q1 >> 4) << (2 * c + 1)));
            }
        }
    }
}

// ggml's x86 order (ggml_vec_dot_q5_K_q8_K, AVX2; used for prompts too): per super-block, 8 int32
// lanes of scale * code * q8 (codes 0..31, element e in lane k_lane(e)) and
// acc[l] = fma(d_y * d_x, float(lane), acc[l]); the mins go to one scalar,
// summs = fma(-d_y * dmin_x, float(sum of min * bsums), summs) (ggml's summs += dmin * sum,
// fused by the compiler); result hsum8(acc) + summs.
float vec_dot_q5_k(const BlockQ5_K* x, const BlockQ8_K* y, int64_t n) {
    const int64_t nb = n / BlockQ5_K::kBlockSize;
    float acc[8] = {};
    float summs = 0;
    for (int64_t i = 0; i < nb; ++i) {
        int32_t lanes[8] = {};
        int32_t sum_mins = 0;
        for (int j = 0; j < 8; ++j) {
            uint8_t sc, m;
            get_scale_min_k4(j, x[i].scales, &sc, &m);
            sum_mins += m * (y[i].bsums[2 * j] + y[i].bsums[2 * j + 1]);
            for (int e = 32 * j; e < 32 * j + 32; ++e) {
                lanes[detail::k_lane(e)] += sc * code(x[i], e) * y[i].qs[e];
            }
        }
        const float dmin = -y[i].d * fp16_to_f32(x[i].dmin);
        summs = std::fmaf(dmin, (float)sum_mins, summs);
        detail::fma_lanes8(y[i].d * fp16_to_f32(x[i].d), lanes, acc);
    }
    return detail::hsum8(acc) + summs;
}

}  // namespace hearth::quant
