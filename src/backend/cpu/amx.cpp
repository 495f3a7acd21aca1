#include "backend/cpu/amx.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "backend/cpu/cpu_features.h"
#include "backend/cpu/tile_kernels.h"

#if defined(__x86_64__)
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace hearth::backend {

namespace {

#if defined(__x86_64__) && defined(__linux__)
// XCR0 through XGETBV, written as bytes so that no target flag is needed (as in cpu_features.cpp).
uint64_t read_xcr0() {
    uint32_t lo, hi;
    __asm__ volatile(".byte 0x0f, 0x01, 0xd0" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

bool detect_amx_int8() {
    unsigned a, b, c, d;
    if (!amx_kernels_built()) return false;
    if (max_simd_level(cpu_features()) != SimdLevel::avx512) return false;  // also checks OSXSAVE
    if (__get_cpuid_max(0, nullptr) < 7) return false;
    __cpuid_count(7, 0, a, b, c, d);
    const bool amx_tile = d & (1u << 24), amx_int8 = d & (1u << 25);
    if (!amx_tile || !amx_int8) return false;
    if ((read_xcr0() & (3u << 17)) != (3u << 17)) return false;  // XTILECFG, XTILEDATA
    // Linux 5.16+: ask for the tile data state once per process. 0x1023 = ARCH_REQ_XCOMP_PERM,
    // 18 = XFEATURE_XTILEDATA. Older kernels (no such request) fail here, and we stay off AMX.
    return syscall(SYS_arch_prctl, 0x1023, 18) == 0;
}
#else
bool detect_amx_int8() { return false; }
#endif

constexpr int64_t kSuperBlock = 256;

// The tile kernels of one weight type, on bands of kAmxRows rows packed per super-block.
struct TileKernels {
    size_t band_block_bytes;  // packed bytes of one super-block of a band
    void (*pack)(const std::byte* const* w, int64_t n, std::byte* dst);
    void (*dot)(const std::byte* band, const AmxQ8_Kx16* x, int64_t x_group, int n_groups, int64_t n, float* y,
                int64_t y_stride, int n_rows, int n_tokens);
};

const TileKernels kQ4_K = {
    sizeof(AmxQ4_Kx16),
    [](const std::byte* const* w, int64_t n, std::byte* dst) { amx_pack_q4_k(w, n, reinterpret_cast<AmxQ4_Kx16*>(dst)); },
    [](const std::byte* band, const AmxQ8_Kx16* x, int64_t x_group, int n_groups, int64_t n, float* y,
       int64_t y_stride, int n_rows, int n_tokens) {
        amx_dot_q4_k(reinterpret_cast<const AmxQ4_Kx16*>(band), x, x_group, n_groups, n, y, y_stride, n_rows, n_tokens);
    }};
const TileKernels kQ6_K = {
    sizeof(AmxQ6_Kx16),
    [](const std::byte* const* w, int64_t n, std::byte* dst) { amx_pack_q6_k(w, n, reinterpret_cast<AmxQ6_Kx16*>(dst)); },
    [](const std::byte* band, const AmxQ8_Kx16* x, int64_t x_group, int n_groups, int64_t n, float* y,
       int64_t y_stride, int n_rows, int n_tokens) {
        amx_dot_q6_k(reinterpret_cast<const AmxQ6_Kx16*>(band), x, x_group, n_groups, n, y, y_stride, n_rows, n_tokens);
    }};

const TileKernels kQ5_K = {
    sizeof(AmxQ5_Kx16),
    [](const std::byte* const* w, int64_t n, std::byte* dst) { amx_pack_q5_k(w, n, reinterpret_cast<AmxQ5_Kx16*>(dst)); },
    [](const std::byte* band, const AmxQ8_Kx16* x, int64_t x_group, int n_groups, int64_t n, float* y,
       int64_t y_stride, int n_rows, int n_tokens) {
        amx_dot_q5_k(reinterpret_cast<const AmxQ5_Kx16*>(band), x, x_group, n_groups, n, y, y_stride, n_rows, n_tokens);
    }};

const TileKernels kQ2_K = {
    sizeof(AmxQ2_Kx16),
    [](const std::byte* const* w, int64_t n, std::byte* dst) { amx_pack_q2_k(w, n, reinterpret_cast<AmxQ2_Kx16*>(dst)); },
    [](const std::byte* band, const AmxQ8_Kx16* x, int64_t x_group, int n_groups, int64_t n, float* y,
       int64_t y_stride, int n_rows, int n_tokens) {
        amx_dot_q2_k(reinterpret_cast<const AmxQ2_Kx16*>(band), x, x_group, n_groups, n, y, y_stride, n_rows, n_tokens);
    }};
const TileKernels kQ3_K = {
    sizeof(AmxQ3_Kx16),
    [](const std::byte* const* w, int64_t n, std::byte* dst) { amx_pack_q3_k(w, n, reinterpret_cast<AmxQ3_Kx16*>(dst)); },
    [](const std::byte* band, const AmxQ8_Kx16* x, int64_t x_group, int n_groups, int64_t n, float* y,
       int64_t y_stride, int n_rows, int n_tokens) {
        amx_dot_q3_k(reinterpret_cast<const AmxQ3_Kx16*>(band), x, x_group, n_groups, n, y, y_stride, n_rows, n_tokens);
    }};

const TileKernels* find_tile_kernels(quant::QuantType type) {
    switch (type) {
        case quant::QuantType::q2_k: return &kQ2_K;
        case quant::QuantType::q3_k: return &kQ3_K;
        case quant::QuantType::q4_k: return &kQ4_K;
        case quant::QuantType::q5_k: return &kQ5_K;
        case quant::QuantType::q6_k: return &kQ6_K;
        default: return nullptr;
    }
}

struct Layout {
    int64_t n_sb = 0;          // super-blocks per row
    int64_t n_groups = 0;      // token groups of kAmxTokens (the last one padded)
    size_t act_bytes = 0;      // packed activations, [n_groups][n_sb] AmxQ8_Kx16
    size_t band_bytes = 0;     // one worker's packed weight band, [n_sb] band blocks
};

Layout layout(const TileKernels& k, int64_t n_in, int64_t n_tokens) {
    Layout l;
    l.n_sb = n_in / kSuperBlock;
    l.n_groups = (n_tokens + kAmxTokens - 1) / kAmxTokens;
    l.act_bytes = (size_t)(l.n_groups * l.n_sb) * sizeof(AmxQ8_Kx16);
    l.band_bytes = (size_t)l.n_sb * k.band_block_bytes;
    return l;
}

}  // namespace

bool amx_int8_available() {
    static const bool available = detect_amx_int8();
    return available;
}

bool amx_int8_enabled() {
    static const bool enabled = [] {
        const char* env = std::getenv("HEARTH_AMX");
        if (env && std::strcmp(env, "0") == 0) return false;
        return amx_int8_available();
    }();
    return enabled;
}

bool has_amx_kernel(quant::QuantType type) { return find_tile_kernels(type) != nullptr; }

// Crossover: matmul_cpu with AmxMode::force against AmxMode::off, one thread, best CPU time of 7
// calls, Llama-3.2-1B shapes 2048x2048 and 8192x2048, this project's 2-core Xeon with AMX. The tile
// kernels cost about the same for 1..16 tokens (one padded group of 16, plus repacking every
// weight band once per call):
//   Q4_K: 0.43 / 1.8 ms. AVX-512: 0.13 / 0.52 ms per single token, best at exactly 8 tokens
//         (packed form, 0.38 / 1.65 ms = 0.9x the tiles); the tiles win from 10 tokens on (1.3-1.4x
//         at 10, 1.6x at 16, 2.0x at 32).
//   Q5_K: 1.0 / 4.4 ms (repacking scale times code in two digits costs more). AVX-512 0.16 /
//         0.70 ms per token; the tiles win from 12 tokens on (1.15x at 12, 1.2x at 16, 1.6x at 32).
//   Q6_K: 1.1 / 7.0 ms. AVX-512 0.17 / 1.2 ms per token; the tiles win from 24 tokens on
//         (1.06-1.26x at 24, 1.3-1.65x at 32, 1.7-1.8x at 64); at 16, 0.9-1.16x.
//   Q2_K: 0.49 / 2.0 ms. AVX-512 0.12 / 0.44 ms per token, 0.37 / 1.46 ms at 8 (packed); the
//         tiles win from 10 tokens on (1.1x at 10, 1.5x at 12 and 16, 2.3x at 32).
//   Q3_K: 0.68 / 2.9 ms. AVX-512 0.15 / 0.63 ms per token; the tiles win from 8 tokens on (1.1-1.2x
//         at 8, 2.2-2.3x at 16, 3.0x at 32).
int64_t amx_min_tokens(quant::QuantType type) {
    switch (type) {
        case quant::QuantType::q2_k: return 10;
        case quant::QuantType::q3_k: return 8;
        case quant::QuantType::q4_k: return 10;
        case quant::QuantType::q5_k: return 16;
        default: return 24;
    }
}

size_t amx_scratch_bytes(quant::QuantType type, int64_t n_in, int64_t n_tokens, int n_threads) {
    const Layout l = layout(*find_tile_kernels(type), n_in, n_tokens);
    return 64 + l.act_bytes + (size_t)std::max(n_threads, 1) * l.band_bytes;
}

void matmul_amx(ThreadPool& pool, quant::QuantType type, const std::byte* w, size_t row_bytes, const std::byte* xq,
                size_t act_bytes, float* y, int64_t n_in, int64_t n_out, int64_t n_tokens, std::byte* scratch) {
    const TileKernels& k = *find_tile_kernels(type);
    const Layout l = layout(k, n_in, n_tokens);
    auto* base = reinterpret_cast<std::byte*>(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    auto* xp = reinterpret_cast<AmxQ8_Kx16*>(base);  // [n_groups][n_sb]
    std::byte* bands = base + l.act_bytes;            // [n_threads] bands of band_bytes

    pool.parallel_for(l.n_groups, 1, [&](int64_t gb, int64_t ge) {
        for (int64_t g = gb; g < ge; ++g) {
            const std::byte* rows[kAmxTokens];
            for (int t = 0; t < kAmxTokens; ++t) {
                rows[t] = xq + std::min(g * kAmxTokens + t, n_tokens - 1) * act_bytes;
            }
            amx_pack_q8_k(rows, n_in, xp + g * l.n_sb);
        }
    });

    const int64_t n_bands = (n_out + kAmxRows - 1) / kAmxRows;
    pool.parallel_chunks(n_bands, 1, [&](int chunk, int64_t bb, int64_t be) {
        std::byte* band = bands + (size_t)chunk * l.band_bytes;
        AmxTileScope tiles;
        for (int64_t bi = bb; bi < be; ++bi) {
            const int64_t r0 = bi * kAmxRows;
            const int nr = (int)std::min<int64_t>(kAmxRows, n_out - r0);
            const std::byte* rows[kAmxRows];
            for (int r = 0; r < kAmxRows; ++r) rows[r] = w + (r0 + std::min(r, nr - 1)) * row_bytes;
            k.pack(rows, n_in, band);
            // Token groups two at a time (the kernels share each weight tile between them).
            for (int64_t g = 0; g < l.n_groups; g += 2) {
                const int ng = (int)std::min<int64_t>(2, l.n_groups - g);
                const int64_t t_last = (g + ng - 1) * kAmxTokens;
                const int nt = (int)std::min<int64_t>(kAmxTokens, n_tokens - t_last);
                k.dot(band, xp + g * l.n_sb, l.n_sb, ng, n_in, y + g * kAmxTokens * n_out + r0, n_out, nr, nt);
            }
        }
    });
}

}  // namespace hearth::backend
