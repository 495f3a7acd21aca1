#include "quant/q5_0.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "base/fp16.h"
#include "quant/lanes.h"
#include "quant/quant_helpers.h"

HEARTH_QUANT_STRICT_FP

namespace hearth::quant {

namespace {

// The 5-bit code of element j (0..31) of a block.
int code(const BlockQ5_0& b, uint32_t qh, int j) {
    const int low = j < 16 ? (b.qs[j] & 0x0F) : (b.qs[j - 16] >> 4);
    return low | (int)(((qh >> j) & 1u) << 4);
}

}  // namespace

void dequantize_row_q5_0(const BlockQ5_0* x, float* y, int64_t n) {
    const int64_t nb = n / BlockQ5_0::kBlockSize;
    for (int64_t i = 0; i < nb; ++i) {
        const float d = fp16_to_f32(x[i].d);
        uint32_t qh;
        std::memcpy(&qh, x[i].qh, sizeof qh);
        for (int j = 0; j < 32; ++j) y[i * 32 + j] = (code(x[i], qh, j) - 16) * d;
    }
}

void quantize_row_q5_0(const float* x, BlockQ5_0* y, int64_t n) {
    const int64_t nb = n / BlockQ5_0::kBlockSize;
    for (int64_t i = 0; i < nb; ++i) {
        const float* xb = x + i * 32;
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < 32; ++j) {
            if (amax < std::fabs(xb[j])) {
                amax = std::fabs(xb[j]);
                max = xb[j];
            }
        }
        const float d = max / -16;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = f32_to_fp16(d);
        uint32_t qh = 0;
        for (int j = 0; j < 16; ++j) {
            const int q0 = std::min(31, (int)(xb[j] * id + 16.5f));
            const int q1 = std::min(31, (int)(xb[j + 16] * id + 16.5f));
            y[i].qs[j] = (uint8_t)((q0 & 0x0F) | ((q1 & 0x0F) << 4));
            qh |= (uint32_t)((q0 >> 4) & 1) << j;
            qh |= (uint32_t)((q1 >> 4) & 1) << (j + 16);
        }
        std::memcpy(y[i].qh, &qh, sizeof qh);
    }
}

// ggml's x86 order (tinyBLAS_Q0_AVX for prompts, ggml_vec_dot_q5_0_q8_0 for single tokens; both
// the same): as vec_dot_q8_0 on the decoded codes - 16.
float vec_dot_q5_0(const BlockQ5_0* x, const BlockQ8_0* y, int64_t n) {
    const int64_t nb = n / BlockQ5_0::kBlockSize;
    float acc[8] = {};
    for (int64_t i = 0; i < nb; ++i) {
        uint32_t qh;
        std::memcpy(&qh, x[i].qh, sizeof qh);
        int8_t q[32];  // [32] codes - 16, in -16..15
        for (int j = 0; j < 32; ++j) q[j] = (int8_t)(code(x[i], qh, j) - 16);
        int32_t lanes[8];
        detail::lane_dot32(q, y[i].qs, lanes);
        detail::fma_lanes8(fp16_to_f32(x[i].d) * fp16_to_f32(y[i].d), lanes, acc);
    }
    return detail::hsum8(acc);
}

}  // namespace hearth::quant
