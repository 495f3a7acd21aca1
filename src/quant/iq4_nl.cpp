#include "quant/iq4_nl.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstring>

#include "base/fp16.h"
#include "quant/quant_helpers.h"

HEARTH_QUANT_STRICT_FP

namespace hearth::quant {

using detail::best_index_int8;
using detail::nearest_int;

void dequantize_row_iq4_nl(const BlockIQ4_NL* x, float* y, int64_t n) {
    const int64_t nb = n / BlockIQ4_NL::kBlockSize;
    for (int64_t i = 0; i < nb; ++i) {
        const float d = fp16_to_f32(x[i].d);
        for (int j = 0; j < 16; ++j) {
            y[i * 32 + j] = d * kIq4NlValues[x[i].qs[j] & 0x0F];
            y[i * 32 + j + 16] = d * kIq4NlValues[x[i].qs[j] >> 4];
        }
    }
}

void detail::quantize_iq4_superblock(int n_super, const float* x, uint16_t* dh, uint8_t* q4,
                                     uint16_t* scales_h, uint8_t* scales_l, int ntry) {
    constexpr int kSub = 32;
    assert(n_super % kSub == 0 && n_super <= 256);
    const int8_t* values = kIq4NlValues;
    const int n_sub = n_super / kSub;
    uint8_t L[256];      // [n_super] chosen table indices
    float scales[8];     // [n_sub] float scale of each sub-block
    float weight[kSub];  // [32] error weights of the current sub-block

    std::memset(q4, 0, (size_t)n_super / 2);
    *dh = f32_to_fp16(0.f);

    float max_scale = 0, amax_scale = 0;
    for (int ib = 0; ib < n_sub; ++ib) {
        const float* xb = x + ib * kSub;
        uint8_t* Lb = L + ib * kSub;
        for (int j = 0; j < kSub; ++j) weight[j] = xb[j] * xb[j];
        float amax = 0, max = 0;
        for (int j = 0; j < kSub; ++j) {
            const float ax = std::fabs(xb[j]);
            if (ax > amax) { amax = ax; max = xb[j]; }
        }
        if (amax < detail::kGroupMaxEps) {
            scales[ib] = 0;
            // ggml leaves Lb unset here; every path below rewrites it before use.
            std::memset(Lb, 0, kSub);
            continue;
        }
        float d = ntry > 0 ? -max / values[0] : max / values[0];
        float id = 1 / d;
        float sumqx = 0, sumq2 = 0;
        for (int j = 0; j < kSub; ++j) {
            const int l = best_index_int8(16, values, id * xb[j]);
            Lb[j] = (uint8_t)l;
            const float q = values[l];
            const float w = weight[j];
            sumqx += w * q * xb[j];
            sumq2 += w * q * q;
        }
        d = sumq2 > 0 ? sumqx / sumq2 : 0.f;
        float best = d * sumqx;
        for (int itry = -ntry; itry <= ntry; ++itry) {
            id = (itry + values[0]) / max;
            sumqx = sumq2 = 0;
            for (int j = 0; j < kSub; ++j) {
                const int l = best_index_int8(16, values, id * xb[j]);
                const float q = values[l];
                const float w = weight[j];
                sumqx += w * q * xb[j];
                sumq2 += w * q * q;
            }
            if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
                d = sumqx / sumq2;
                best = d * sumqx;
            }
        }
        scales[ib] = d;
        const float abs_d = std::fabs(d);
        if (abs_d > amax_scale) {
            amax_scale = abs_d;
            max_scale = d;
        }
    }

    if (n_sub > 1) {
        std::memset(scales_h, 0, ((n_sub + 7) / 8) * sizeof(uint16_t));
        const float d = -max_scale / 32;  // -0.0 for an all-zero super-block, as in ggml
        *dh = f32_to_fp16(d);
        const float id = d ? 1 / d : 0.f;
        for (int ib = 0; ib < n_sub; ++ib) {
            int l = nearest_int(id * scales[ib]);
            l = std::max(-32, std::min(31, l));
            const float dl = d * l;
            const float idl = dl ? 1 / dl : 0.f;
            uint8_t* Lb = L + ib * kSub;
            const float* xb = x + ib * kSub;
            for (int j = 0; j < kSub; ++j) Lb[j] = (uint8_t)best_index_int8(16, values, idl * xb[j]);
            l += 32;
            const uint8_t l_low = (uint8_t)(l & 0xF);
            const uint8_t l_high = (uint8_t)(l >> 4);
            if (ib % 2 == 0) scales_l[ib / 2] = l_low;
            else scales_l[ib / 2] |= (uint8_t)(l_low << 4);
            scales_h[ib / 8] |= (uint16_t)(l_high << 2 * (ib % 8));
        }
    } else {
        *dh = f32_to_fp16(scales[0]);
        if (ntry > 0) {
            const float id = scales[0] ? 1 / scales[0] : 0;
            for (int j = 0; j < n_super; ++j) L[j] = (uint8_t)best_index_int8(16, values, id * x[j]);
        }
    }

    for (int i = 0; i < n_super / 32; ++i) {
        for (int j = 0; j < 16; ++j) q4[16 * i + j] = (uint8_t)(L[32 * i + j] | (L[32 * i + 16 + j] << 4));
    }
}

void quantize_row_iq4_nl(const float* x, BlockIQ4_NL* y, int64_t n) {
    const int64_t nb = n / BlockIQ4_NL::kBlockSize;
    for (int64_t i = 0; i < nb; ++i) {
        detail::quantize_iq4_superblock(32, x + i * 32, &y[i].d, y[i].qs, nullptr, nullptr, 7);
    }
}

// ggml's x86 order for IQ4_NL weights with a row count that is a multiple of 8 (every real
// weight matrix): llama.cpp repacks them (iq4_nl_8x8) and sums like vec_dot_q4_0:
// acc = fma(float(exact int dot of the block), d_x * d_y, acc), block after block.
// (Other row counts would go through tinyBLAS_Q0_AVX, which sums like vec_dot_q8_0.)
float vec_dot_iq4_nl(const BlockIQ4_NL* x, const BlockQ8_0* y, int64_t n) {
    const int64_t nb = n / BlockIQ4_NL::kBlockSize;
    float acc = 0;
    for (int64_t i = 0; i < nb; ++i) {
        int32_t sumi = 0;
        for (int j = 0; j < 16; ++j) {
            sumi += y[i].qs[j] * kIq4NlValues[x[i].qs[j] & 0x0F];
            sumi += y[i].qs[j + 16] * kIq4NlValues[x[i].qs[j] >> 4];
        }
        acc = std::fmaf((float)sumi, fp16_to_f32(x[i].d) * fp16_to_f32(y[i].d), acc);
    }
    return acc;
}

}  // namespace hearth::quant
