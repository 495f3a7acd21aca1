// What the CPU we run on can execute, and the SIMD level the CPU kernels use. The library is
// compiled for any x86-64 (or any other target: then only the scalar level exists); kernels for
// wider instruction sets live in files compiled with their own target flags (see
// cmake/simd_flags.cmake) and are only called after the check here.
#pragma once

#include <optional>
#include <string_view>
#include <vector>

namespace hearth::backend {

// Kernel levels, lowest first. Each level's kernels may use the instructions of every level below.
//   scalar: the quant/ reference dot products (portable C++).
//   avx2:   AVX2 + FMA + F16C (Haswell, Zen 1 and later).
//   avx512: avx2 + AVX-512 F/BW/VL/VNNI (Ice Lake, Sapphire Rapids, Zen 4 and later); the
//           kernels run on 256-bit registers (ymm0-31) with VNNI dot products.
enum class SimdLevel : int { scalar = 0, avx2 = 1, avx512 = 2 };
constexpr int kSimdLevelCount = 3;

struct CpuFeatures {
    bool avx2 = false, fma = false, f16c = false;
    bool avx512f = false, avx512bw = false, avx512vl = false, avx512vnni = false, avx512bf16 = false;
};

// Detected once (cpuid and XGETBV: the OS must also save the wider registers); immutable after.
const CpuFeatures& cpu_features();
// Highest level `f` supports.
SimdLevel max_simd_level(const CpuFeatures& f);
// Every level from scalar up to max_simd_level(cpu_features()): what tests and benches run
// each kernel at on this CPU.
std::vector<SimdLevel> supported_simd_levels();
// The level kernels use unless told otherwise: max_simd_level(cpu_features()), capped by the
// environment variable HEARTH_CPU=scalar|avx2|avx512 (for tests and benchmarks; a level above
// what the CPU supports is capped to it, an unknown value is ignored). Read once per process.
SimdLevel default_simd_level();

const char* simd_level_name(SimdLevel level);
std::optional<SimdLevel> parse_simd_level(std::string_view name);

}  // namespace hearth::backend
