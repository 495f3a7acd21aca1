#include "quant/iq4_xs.h"

#include "base/fp16.h"
#include "quant/lanes.h"
#include "quant/quant_helpers.h"

HEARTH_QUANT_STRICT_FP

namespace hearth::quant {

namespace {

// 6-bit scale (0..63, stored with an offset of 32) of sub-block ib (0..7).
int sub_scale(const BlockIQ4_XS& b, int ib) {
    return ((b.scales_l[ib / 2] >> 4 * (ib % 2)) & 0xF) | (((b.scales_h >> 2 * ib) & 3) << 4);
}

}  // namespace

void dequantize_row_iq4_xs(const BlockIQ4_XS* x, float* y, int64_t n) {
    const int64_t nb = n / BlockIQ4_XS::kBlockSize;
    for (int64_t i = 0; i < nb; ++i) {
        const float d = fp16_to_f32(x[i].d);
        for (int ib = 0; ib < 8; ++ib) {
            const float dl = d * (sub_scale(x[i], ib) - 32);
            const uint8_t* qs = x[i].qs + 16 * ib;
            float* yb = y + i * 256 + 32 * ib;
            for (int j = 0; j < 16; ++j) {
                yb[j] = dl * kIq4NlValues[qs[j] & 0x0F];
                yb[j + 16] = dl * kIq4NlValues[qs[j] >> 4];
            }
        }
    }
}

void quantize_row_iq4_xs(const float* x, BlockIQ4_XS* y, int64_t n) {
    const int64_t nb = n / BlockIQ4_XS::kBlockSize;
    for (int64_t i = 0; i < nb; ++i) {
        detail::quantize_iq4_superblock(256, x + i * 256, &y[i].d, y[i].qs, &y[i].scales_h,
                                        y[i].scales_l, 7);
    }
}

// ggml's x86 order (ggml_vec_dot_iq4_xs_q8_K, AVX2; used for prompts too): per super-block, 8
// int32 lanes of (ls - 32) * value * q8 (element e in lane k_lane(e)), then
// acc[l] = fma(d_x * d_y, float(lane), acc[l]); result hsum8(acc).
float vec_dot_iq4_xs(const BlockIQ4_XS* x, const BlockQ8_K* y, int64_t n) {
    const int64_t nb = n / BlockIQ4_XS::kBlockSize;
    float acc[8] = {};
    for (int64_t i = 0; i < nb; ++i) {
        int32_t lanes[8] = {};
        for (int ib = 0; ib < 8; ++ib) {
            const int ls = sub_scale(x[i], ib) - 32;
            const uint8_t* qs = x[i].qs + 16 * ib;
            const int8_t* q8 = y[i].qs + 32 * ib;
            for (int j = 0; j < 16; ++j) {
                lanes[detail::k_lane(j)] += ls * kIq4NlValues[qs[j] & 0x0F] * q8[j];
                lanes[detail::k_lane(j + 16)] += ls * kIq4NlValues[qs[j] >> 4] * q8[j + 16];
            }
        }
        detail::fma_lanes8(fp16_to_f32(x[i].d) * y[i].d, lanes, acc);
    }
    return detail::hsum8(acc);
}

}  // namespace hearth::quant
