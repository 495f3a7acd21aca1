#include "backend/cpu/cpu_features.h"

#include <cstdint>
#include <cstdlib>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

namespace hearth::backend {

namespace {

#if defined(__x86_64__) || defined(__i386__)
// XCR0 through XGETBV (needs OSXSAVE); written as bytes so that no target flag is needed.
uint64_t read_xcr0() {
    uint32_t lo, hi;
    __asm__ volatile(".byte 0x0f, 0x01, 0xd0" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

CpuFeatures detect() {
    CpuFeatures f;
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
    const bool osxsave = c & (1u << 27);
    const bool has_fma = c & (1u << 12), has_f16c = c & (1u << 29), has_avx = c & (1u << 28);
    if (!osxsave || !has_avx) return f;
    const uint64_t xcr0 = read_xcr0();
    const bool os_ymm = (xcr0 & 0x6) == 0x6;      // SSE and AVX state
    const bool os_zmm = (xcr0 & 0xe6) == 0xe6;    // plus opmask, ZMM_Hi256, Hi16_ZMM
    if (!os_ymm) return f;
    f.fma = has_fma;
    f.f16c = has_f16c;
    if (__get_cpuid_max(0, nullptr) < 7) return f;
    __cpuid_count(7, 0, a, b, c, d);
    f.avx2 = b & (1u << 5);
    if (os_zmm) {
        f.avx512f = b & (1u << 16);
        f.avx512bw = b & (1u << 30);
        f.avx512vl = b & (1u << 31);
        f.avx512vnni = c & (1u << 11);
        unsigned a1, b1, c1, d1;
        __cpuid_count(7, 1, a1, b1, c1, d1);
        f.avx512bf16 = a1 & (1u << 5);
    }
    return f;
}
#else
CpuFeatures detect() { return {}; }
#endif

}  // namespace

const CpuFeatures& cpu_features() {
    static const CpuFeatures features = detect();
    return features;
}

SimdLevel max_simd_level(const CpuFeatures& f) {
    const bool avx2 = f.avx2 && f.fma && f.f16c;
    if (avx2 && f.avx512f && f.avx512bw && f.avx512vl && f.avx512vnni) return SimdLevel::avx512;
    if (avx2) return SimdLevel::avx2;
    return SimdLevel::scalar;
}

SimdLevel default_simd_level() {
    static const SimdLevel level = [] {
        SimdLevel l = max_simd_level(cpu_features());
        if (const char* env = std::getenv("HEARTH_CPU")) {
            if (auto cap = parse_simd_level(env); cap && (int)*cap < (int)l) l = *cap;
        }
        return l;
    }();
    return level;
}

const char* simd_level_name(SimdLevel level) {
    switch (level) {
        case SimdLevel::scalar: return "scalar";
        case SimdLevel::avx2: return "avx2";
        case SimdLevel::avx512: return "avx512";
    }
    return "?";
}

std::optional<SimdLevel> parse_simd_level(std::string_view name) {
    for (int i = 0; i < kSimdLevelCount; ++i) {
        if (name == simd_level_name((SimdLevel)i)) return (SimdLevel)i;
    }
    return std::nullopt;
}

std::vector<SimdLevel> supported_simd_levels() {
    std::vector<SimdLevel> out;
    for (int l = 0; l <= (int)max_simd_level(cpu_features()); ++l) out.push_back((SimdLevel)l);
    return out;
}

}  // namespace hearth::backend
