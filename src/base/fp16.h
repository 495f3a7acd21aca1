// IEEE half and bfloat16 conversions, bit-exact with GGUF/ggml (round to nearest even).
#pragma once

#include <cstdint>
#include <cstring>

namespace hearth {

inline float bits_to_f32(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }
inline uint32_t f32_to_bits(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }

inline float fp16_to_f32(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    if (exp == 0) {
        if (mant == 0) return bits_to_f32(sign);
        // subnormal: normalize
        int e = -1;
        do { mant <<= 1; ++e; } while ((mant & 0x400u) == 0);
        mant &= 0x3ffu;
        return bits_to_f32(sign | ((uint32_t)(127 - 15 - e) << 23) | (mant << 13));
    }
    if (exp == 0x1f) return bits_to_f32(sign | 0x7f800000u | (mant << 13));
    return bits_to_f32(sign | ((exp + 127 - 15) << 23) | (mant << 13));
}

inline uint16_t f32_to_fp16(float f) {
    uint32_t x = f32_to_bits(f);
    const uint32_t sign = (x >> 16) & 0x8000u;
    x &= 0x7fffffffu;
    if (x >= 0x7f800000u) {  // inf or nan
        return (uint16_t)(sign | 0x7c00u | (x > 0x7f800000u ? 0x200u : 0u));
    }
    if (x >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);  // rounds to inf
    if (x < 0x38800000u) {                                    // subnormal half or zero
        if (x < 0x33000000u) return (uint16_t)sign;             // < 2^-25 rounds to 0
        const uint32_t e = x >> 23;
        const uint32_t m = (x & 0x7fffffu) | 0x800000u;
        const uint32_t shift = 126 - e;  // 14..24
        uint32_t r = m >> shift;
        const uint32_t rem = m & ((1u << shift) - 1u);
        const uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1u))) ++r;
        return (uint16_t)(sign | r);
    }
    uint32_t r = ((x >> 13) - ((127 - 15) << 10));
    const uint32_t rem = x & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) ++r;
    return (uint16_t)(sign | r);
}

inline float bf16_to_f32(uint16_t h) { return bits_to_f32((uint32_t)h << 16); }

inline uint16_t f32_to_bf16(float f) {
    uint32_t u = f32_to_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 64u);  // quiet nan
    return (uint16_t)((u + (0x7fffu + ((u >> 16) & 1u))) >> 16);
}

// Round-trips a float through f16 precision.
inline float round_fp16(float f) { return fp16_to_f32(f32_to_fp16(f)); }

}  // namespace hearth
