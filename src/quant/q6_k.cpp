#include "quant/q6_k.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "base/fp16.h"
#include "quant/lanes.h"
#include "quant/quant_helpers.h"

HEARTH_QUANT_STRICT_FP

namespace hearth::quant {

using detail::nearest_int;

namespace {

// Signed code (-32..31) of element e (0..255) of a super-block.
int code(const BlockQ6_K& b, int e) {
    const int half = e / 128, r = e % 128, k = r / 32, l = r % 32;
    const uint8_t low_byte = b.ql[64 * half + 32 * (k % 2) + l];
    const int low = k < 2 ? (low_byte & 0xF) : (low_byte >> 4);
    const int high = (b.qh[32 * half + l] >> (2 * k)) & 3;
    return (low | (high << 4)) - 32;
}

}  // namespace

void dequantize_row_q6_k(const BlockQ6_K* x, float* y, int64_t n) {
    const int64_t nb = n / BlockQ6_K::kBlockSize;
    for (int64_t i = 0; i < nb; ++i) {
        const float d = fp16_to_f32(x[i].d);
        for (int e = 0; e < 256; ++e) y[i * 256 + e] = d * x[i].scales[e / 16] * code(x[i], e);
    }
}

void quantize_row_q6_k(const float* x, BlockQ6_K* y, int64_t n) {
    const int64_t nb = n / BlockQ6_K::kBlockSize;
    int8_t L[256];     // [256] codes + 32 (0..63)
    float scales[16];  // [16] float scale of each sub-block (signed)
    for (int64_t i = 0; i < nb; ++i) {
        const float* xb = x + i * 256;
        float max_scale = 0, max_abs_scale = 0;
        for (int j = 0; j < 16; ++j) {
            scales[j] = detail::make_qx_quants(16, 32, xb + 16 * j, L + 16 * j, 1);
            const float abs_scale = std::fabs(scales[j]);
            if (abs_scale > max_abs_scale) {
                max_abs_scale = abs_scale;
                max_scale = scales[j];
            }
        }
        if (max_abs_scale < detail::kGroupMaxEps) {
            std::memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        const float iscale = -128.f / max_scale;
        y[i].d = f32_to_fp16(1 / iscale);
        for (int j = 0; j < 16; ++j) {
            y[i].scales[j] = (int8_t)std::min(127, nearest_int(iscale * scales[j]));
        }
        // Requantize against the rounded scales; a sub-block with scale 0 keeps the codes of
        // its scale search, as in ggml.
        for (int j = 0; j < 16; ++j) {
            const float d = fp16_to_f32(y[i].d) * y[i].scales[j];
            if (!d) continue;
            for (int l = 0; l < 16; ++l) {
                const int q = nearest_int(xb[16 * j + l] / d);
                L[16 * j + l] = (int8_t)(std::max(-32, std::min(31, q)) + 32);
            }
        }
        for (int h = 0; h < 2; ++h) {
            const int8_t* Lh = L + 128 * h;
            uint8_t* ql = y[i].ql + 64 * h;
            uint8_t* qh = y[i].qh + 32 * h;
            for (int l = 0; l < 32; ++l) {
                ql[l] = (uint8_t)((Lh[l] & 0xF) | ((Lh[l + 64] & 0xF) << 4));
                ql[l + 32] = (uint8_t)((Lh[l + 32] & 0xF) | ((Lh[l + 96] & 0xF) << 4));
                qh[l] = (uint8_t)((Lh[l] >> 4) | ((Lh[l + 32] >> 4) << 2) | ((Lh[l + 64] >> 4) << 4) |
                                  ((Lh[l + 96] >> 4) << 6));
            }
        }
    }
}

// ggml's x86 order (ggml_vec_dot_q6_K_q8_K, AVX2; used for prompts too): per super-block, 8 int32
// lanes of scale * (code + 32) * q8 (element e in lane k_lane(e)), minus 32 * scale * bsum of
// sub-blocks 2l and 2l+1 in lane l (ggml applies the code offset through the bsums, so its lanes
// differ from summing scale * code * q8 per element), then acc[l] = fma(d_y * d_x, float(lane),
// acc[l]); result hsum8(acc).
float vec_dot_q6_k(const BlockQ6_K* x, const BlockQ8_K* y, int64_t n) {
    const int64_t nb = n / BlockQ6_K::kBlockSize;
    float acc[8] = {};
    for (int64_t i = 0; i < nb; ++i) {
        int32_t lanes[8] = {};
        for (int e = 0; e < 256; ++e) {
            lanes[detail::k_lane(e)] += x[i].scales[e / 16] * (code(x[i], e) + 32) * y[i].qs[e];
        }
        for (int l = 0; l < 8; ++l) {
            lanes[l] -= 32 * (y[i].bsums[2 * l] * x[i].scales[2 * l] +
                              y[i].bsums[2 * l + 1] * x[i].scales[2 * l + 1]);
        }
        detail::fma_lanes8(y[i].d * fp16_to_f32(x[i].d), lanes, acc);
    }
    return detail::hsum8(acc);
}

}  // namespace hearth::quant
