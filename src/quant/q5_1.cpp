#include "quant/q5_1.h"

#include <cfloat>
#include <cmath>
#include <cstring>

#include "base/fp16.h"
#include "quant/lanes.h"
#include "quant/quant_helpers.h"

HEARTH_QUANT_STRICT_FP

namespace hearth::quant {

namespace {

// The 5-bit code of element j (0..31) of a block.
int code(const BlockQ5_1& b, uint32_t qh, int j) {
    const int low = j < 16 ? (b.qs[j] & 0x0F) : (b.qs[j - 16] >> 4);
    return low | (int)(((qh >> j) & 1u) << 4);
}

}  // namespace

void dequantize_row_q5_1(const BlockQ5_1* x, float* y, int64_t n) {
    const int64_t nb = n / BlockQ5_1::kBlockSize;
    for (int64_t i = 0; i < nb; ++i) {
        const float d = fp16_to_f32(x[i].d);
        const float m = fp16_to_f32(x[i].m);
        uint32_t qh;
        std::memcpy(&qh, x[i].qh, sizeof qh);
        for (int j = 0; j < 32; ++j) y[i * 32 + j] = code(x[i], qh, j) * d + m;
    }
}

void quantize_row_q5_1(const float* x, BlockQ5_1* y, int64_t n) {
    const int64_t nb = n / BlockQ5_1::kBlockSize;
    for (int64_t i = 0; i < nb; ++i) {
        const float* xb = x + i * 32;
        float min = FLT_MAX, max = -FLT_MAX;
        for (int j = 0; j < 32; ++j) {
            if (xb[j] < min) min = xb[j];
            if (xb[j] > max) max = xb[j];
        }
        const float d = (max - min) / 31;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = f32_to_fp16(d);
        y[i].m = f32_to_fp16(min);
        uint32_t qh = 0;
        for (int j = 0; j < 16; ++j) {
            // No clamp, as in ggml: a code of 32 (x * id rounding just past 31.5) wraps to 0.
            const uint8_t q0 = (uint8_t)(int)((xb[j] - min) * id + 0.5f);
            const uint8_t q1 = (uint8_t)(int)((xb[j + 16] - min) * id + 0.5f);
            y[i].qs[j] = (uint8_t)((q0 & 0x0F) | ((q1 & 0x0F) << 4));
            qh |= (uint32_t)((q0 >> 4) & 1) << j;
            qh |= (uint32_t)((q1 >> 4) & 1) << (j + 16);
        }
        std::memcpy(y[i].qh, &qh, sizeof qh);
    }
}

// ggml's x86 order (ggml_vec_dot_q5_1_q8_1, used for prompts too): as vec_dot_q4_1 on the
// 5-bit codes (0..31): acc[l] = fma(lane, d_x * d_y, acc[l]), summs = fma(m, s, summs),
// result hsum8(acc) + summs.
float vec_dot_q5_1(const BlockQ5_1* x, const BlockQ8_1* y, int64_t n) {
    const int64_t nb = n / BlockQ5_1::kBlockSize;
    float acc[8] = {};
    float summs = 0;
    for (int64_t i = 0; i < nb; ++i) {
        summs = std::fmaf(fp16_to_f32(x[i].m), fp16_to_f32(y[i].s), summs);
        uint32_t qh;
        std::memcpy(&qh, x[i].qh, sizeof qh);
        int8_t q[32];  // [32] codes 0..31
        for (int j = 0; j < 32; ++j) q[j] = (int8_t)code(x[i], qh, j);
        int32_t lanes[8];
        detail::lane_dot32(q, y[i].qs, lanes);
        detail::fma_lanes8(fp16_to_f32(x[i].d) * fp16_to_f32(y[i].d), lanes, acc);
    }
    return detail::hsum8(acc) + summs;
}

}  // namespace hearth::quant
