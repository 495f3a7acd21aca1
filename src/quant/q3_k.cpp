#include "quant/q3_k.h"

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

// Signed code (-4..3) of element e (0..255) of a super-block.
int code(const BlockQ3_K& b, int e) {
    const int half = e / 128, r = e % 128;
    const int low = (b.qs[32 * half + r % 32] >> (2 * (r / 32))) & 3;
    const bool high = (b.hmask[e % 32] >> (e / 32)) & 1;
    return low - (high ? 0 : 4);
}

// 6-bit scale of sub-block j (0..15), still offset by 32.
int sub_scale(const BlockQ3_K& b, int j) {
    const int low = j < 8 ? (b.scales[j] & 0xF) : (b.scales[j - 8] >> 4);
    const int high = (b.scales[8 + j % 4] >> (2 * (j / 4))) & 3;
    return low | (high << 4);
}

}  // namespace

void dequantize_row_q3_k(const BlockQ3_K* x, float* y, int64_t n) {
    const int64_t nb = n / BlockQ3_K::kBlockSize;
    for (int64_t i = 0; i < nb; ++i) {
        const float d_all = fp16_to_f32(x[i].d);
        for (int j = 0; j < 16; ++j) {
            const float dl = d_all * (sub_scale(x[i], j) - 32);
            for (int l = 0; l < 16; ++l) y[i * 256 + 16 * j + l] = dl * code(x[i], 16 * j + l);
        }
    }
}

void quantize_row_q3_k(const float* x, BlockQ3_K* y, int64_t n) {
    const int64_t nb = n / BlockQ3_K::kBlockSize;
    int8_t L[256];     // [256] codes + 4 (0..7)
    float scales[16];  // [16] float scale of each sub-block (signed)
    for (int64_t i = 0; i < nb; ++i) {
        const float* xb = x + i * 256;
        float max_scale = 0, amax = 0;
        for (int j = 0; j < 16; ++j) {
            scales[j] = detail::make_q3_quants(16, 4, xb + 16 * j, L + 16 * j, true);
            const float scale = std::fabs(scales[j]);
            if (scale > amax) {
                amax = scale;
                max_scale = scales[j];
            }
        }
        std::memset(y[i].scales, 0, sizeof y[i].scales);
        if (max_scale) {
            const float iscale = -32.f / max_scale;
            for (int j = 0; j < 16; ++j) {
                int l = std::max(-32, std::min(31, nearest_int(iscale * scales[j]))) + 32;
                if (j < 8) y[i].scales[j] = (uint8_t)(l & 0xF);
                else y[i].scales[j - 8] |= (uint8_t)((l & 0xF) << 4);
                l >>= 4;
                y[i].scales[j % 4 + 8] |= (uint8_t)(l << (2 * (j / 4)));
            }
            y[i].d = f32_to_fp16(1 / iscale);
        } else {
            y[i].d = f32_to_fp16(0.f);
        }
        // Requantize against the rounded scales; a sub-block with scale 0 keeps the codes of
        // its scale search, as in ggml.
        for (int j = 0; j < 16; ++j) {
            const float d = fp16_to_f32(y[i].d) * (sub_scale(y[i], j) - 32);
            if (!d) continue;
            for (int l = 0; l < 16; ++l) {
                const int q = nearest_int(xb[16 * j + l] / d);
                L[16 * j + l] = (int8_t)(std::max(-4, std::min(3, q)) + 4);
            }
        }
        std::memset(y[i].hmask, 0, sizeof y[i].hmask);
        for (int e = 0; e < 256; ++e) {
            if (L[e] > 3) {
                y[i].hmask[e % 32] |= (uint8_t)(1 << (e / 32));
                L[e] -= 4;
            }
        }
        for (int h = 0; h < 2; ++h) {
            const int8_t* Lh = L + 128 * h;
            for (int l = 0; l < 32; ++l) {
                y[i].qs[32 * h + l] =
                    (uint8_t)(Lh[l] | (Lh[l + 32] << 2) | (Lh[l + 64] << 4) | (Lh[l + 96] << 6));
            }
        }
    }
}

// ggml's x86 order (ggml_vec_dot_q3_K_q8_K, AVX2; used for prompts too): 8 int32 lanes per
// super-block, element e going to lane k_lane(e) with its signed sub-block scale, then
// acc[l] = fma(d_y * d_x, float(lane), acc[l]) per super-block; result hsum8(acc).
float vec_dot_q3_k(const BlockQ3_K* x, const BlockQ8_K* y, int64_t n) {
    const int64_t nb = n / BlockQ3_K::kBlockSize;
    float acc[8] = {};
    for (int64_t i = 0; i < nb; ++i) {
        int32_t lanes[8] = {};
        for (int e = 0; e < 256; ++e) {
            lanes[detail::k_lane(e)] += (sub_scale(x[i], e / 16) - 32) * code(x[i], e) * y[i].qs[e];
        }
        detail::fma_lanes8(y[i].d * fp16_to_f32(x[i].d), lanes, acc);
    }
    return detail::hsum8(acc);
}

}  // namespace hearth::quant
