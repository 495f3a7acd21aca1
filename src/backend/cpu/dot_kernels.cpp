#include "backend/cpu/dot_kernels.h"

#include <cstring>
#include <type_traits>

#include "base/fp16.h"
#include "quant/q8_0.h"
#include "quant/q8_1.h"
#include "quant/q8_k.h"

namespace hearth::backend {

const DotKernels* find_dot_kernels(SimdLevel level, quant::QuantType type, int64_t n) {
    switch (level) {
        case SimdLevel::avx512: return dot_kernels_avx512(type, n);
        case SimdLevel::avx2: return dot_kernels_avx2(type, n);
        case SimdLevel::scalar: return nullptr;
    }
    return nullptr;
}

void pack_q8_k_x8(const std::byte* const* x, int64_t n, std::byte* dst) {
    const int64_t nb = n / 256;
    auto* out = reinterpret_cast<PackedQ8_Kx8*>(dst);
    for (int64_t i = 0; i < nb; ++i) {
        PackedQ8_Kx8& p = out[i];
        for (int t = 0; t < kPackTokens; ++t) {
            const quant::BlockQ8_K& b = reinterpret_cast<const quant::BlockQ8_K*>(x[t])[i];
            p.d[t] = b.d;
            for (int j = 0; j < 8; ++j) p.bsum32[j][t] = (float)(b.bsums[2 * j] + b.bsums[2 * j + 1]);
            for (int k = 0; k < 64; ++k) std::memcpy(p.qs[k][t], b.qs + 4 * k, 4);
        }
    }
}

void pack_q8_k16_x8(const std::byte* const* x, int64_t n, std::byte* dst) {
    const int64_t nb = n / 256;
    auto* out = reinterpret_cast<PackedQ8_K16x8*>(dst);
    for (int64_t i = 0; i < nb; ++i) {
        PackedQ8_K16x8& p = out[i];
        for (int t = 0; t < kPackTokens; ++t) {
            const quant::BlockQ8_K& b = reinterpret_cast<const quant::BlockQ8_K*>(x[t])[i];
            p.d[t] = b.d;
            for (int j = 0; j < 8; ++j) {
                p.bsum16[j][t][0] = b.bsums[2 * j];
                p.bsum16[j][t][1] = b.bsums[2 * j + 1];
            }
            for (int k = 0; k < 64; ++k) std::memcpy(p.qs[k][t], b.qs + 4 * k, 4);
        }
    }
}

void pack_q8_0_x8(const std::byte* const* x, int64_t n, std::byte* dst) {
    const int64_t nb = n / 32;
    auto* out = reinterpret_cast<PackedQ8_0x8*>(dst);
    for (int64_t i = 0; i < nb; ++i) {
        PackedQ8_0x8& p = out[i];
        for (int t = 0; t < kPackTokens; ++t) {
            const quant::BlockQ8_0& b = reinterpret_cast<const quant::BlockQ8_0*>(x[t])[i];
            p.d[t] = fp16_to_f32(b.d);
            int32_t sum = 0;
            for (int j = 0; j < 32; ++j) sum += b.qs[j];
            p.neg8sum[t] = -8 * sum;
            for (int k = 0; k < 8; ++k) std::memcpy(p.qs[k][t], b.qs + 4 * k, 4);
        }
    }
}

namespace {

template <class Block>
void pack_lanes_x8(const std::byte* const* x, int64_t n, std::byte* dst) {
    const int64_t nb = n / 32;
    auto* out = reinterpret_cast<PackedQ8Lanesx8*>(dst);
    for (int64_t i = 0; i < nb; ++i) {
        PackedQ8Lanesx8& p = out[i];
        for (int t = 0; t < kPackTokens; ++t) {
            const Block& b = reinterpret_cast<const Block*>(x[t])[i];
            p.d[t] = fp16_to_f32(b.d);
            if constexpr (std::is_same_v<Block, quant::BlockQ8_1>) p.s[t] = fp16_to_f32(b.s);
            else p.s[t] = 0.0f;
            for (int k = 0; k < 8; ++k) {
                p.gsum[k][t] = b.qs[4 * k] + b.qs[4 * k + 1] + b.qs[4 * k + 2] + b.qs[4 * k + 3];
                std::memcpy(p.qs[k][t], b.qs + 4 * k, 4);
            }
        }
    }
}

}  // namespace

void pack_q8_0_lanes_x8(const std::byte* const* x, int64_t n, std::byte* dst) {
    pack_lanes_x8<quant::BlockQ8_0>(x, n, dst);
}

void pack_q8_1_lanes_x8(const std::byte* const* x, int64_t n, std::byte* dst) {
    pack_lanes_x8<quant::BlockQ8_1>(x, n, dst);
}

}  // namespace hearth::backend
