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

// The tile kernels of one weight type, on bands of kAmxRows rows packed per block (a super-block
// of 256 elements for the K-quants, on Q8_K activations; 32 for Q4_0, on Q8_0).
struct TileKernels {
    int64_t block;            // elements per packed block
    size_t act_block_bytes;   // packed activation bytes of one block of a token group
    size_t band_block_bytes;  // packed weight bytes of one block of a band
    // Whether dot can continue from the values in y (accumulate), so that a long row can be done
    // in chunks of blocks (see matmul_amx).
    bool chunked;
    void (*pack_act)(const std::byte* const* x, int64_t n, std::byte* dst);
    void (*pack)(const std::byte* const* w, int64_t n, std::byte* dst);
    // x: n_groups token groups x_group activation blocks apart.
    void (*dot)(const std::byte* band, const std::byte* x, int64_t x_group, int n_groups, int64_t n, float* y,
                int64_t y_stride, int n_rows, int n_tokens, bool accumulate);
};

void pack_act_q8_k(const std::byte* const* x, int64_t n, std::byte* dst) {
    amx_pack_q8_k(x, n, reinterpret_cast<AmxQ8_Kx16*>(dst));
}

// The table entry of a K-quant: its band block type, packer and kernel.
#define HEARTH_AMX_K_QUANT(Block, pack_fn, dot_fn)                                                              \
    {256, sizeof(AmxQ8_Kx16), sizeof(Block), false, pack_act_q8_k,                                             \
     [](const std::byte* const* w, int64_t n, std::byte* dst) { pack_fn(w, n, reinterpret_cast<Block*>(dst)); }, \
     [](const std::byte* band, const std::byte* x, int64_t x_group, int n_groups, int64_t n, float* y,          \
        int64_t y_stride, int n_rows, int n_tokens, bool) {                                                     \
         dot_fn(reinterpret_cast<const Block*>(band), reinterpret_cast<const AmxQ8_Kx16*>(x), x_group, n_groups, n, y, \
                y_stride, n_rows, n_tokens);                                                                    \
     }}

const TileKernels kQ2_K = HEARTH_AMX_K_QUANT(AmxQ2_Kx16, amx_pack_q2_k, amx_dot_q2_k);
const TileKernels kQ3_K = HEARTH_AMX_K_QUANT(AmxQ3_Kx16, amx_pack_q3_k, amx_dot_q3_k);
const TileKernels kQ4_K = HEARTH_AMX_K_QUANT(AmxQ4_Kx16, amx_pack_q4_k, amx_dot_q4_k);
const TileKernels kQ5_K = HEARTH_AMX_K_QUANT(AmxQ5_Kx16, amx_pack_q5_k, amx_dot_q5_k);
const TileKernels kQ6_K = HEARTH_AMX_K_QUANT(AmxQ6_Kx16, amx_pack_q6_k, amx_dot_q6_k);

#undef HEARTH_AMX_K_QUANT

const TileKernels kQ4_0 = {
    32, sizeof(AmxQ8_0x16), sizeof(AmxQ4_0x16), true,
    [](const std::byte* const* x, int64_t n, std::byte* dst) {
        amx_pack_q8_0(x, n, reinterpret_cast<AmxQ8_0x16*>(dst));
    },
    [](const std::byte* const* w, int64_t n, std::byte* dst) {
        amx_pack_q4_0(w, n, reinterpret_cast<AmxQ4_0x16*>(dst));
    },
    [](const std::byte* band, const std::byte* x, int64_t x_group, int n_groups, int64_t n, float* y,
       int64_t y_stride, int n_rows, int n_tokens, bool accumulate) {
        amx_dot_q4_0(reinterpret_cast<const AmxQ4_0x16*>(band), reinterpret_cast<const AmxQ8_0x16*>(x), x_group,
                     n_groups, n, y, y_stride, n_rows, n_tokens, accumulate);
    }};

const TileKernels* find_tile_kernels(quant::QuantType type) {
    switch (type) {
        case quant::QuantType::q4_0: return &kQ4_0;
        case quant::QuantType::q2_k: return &kQ2_K;
        case quant::QuantType::q3_k: return &kQ3_K;
        case quant::QuantType::q4_k: return &kQ4_K;
        case quant::QuantType::q5_k: return &kQ5_K;
        case quant::QuantType::q6_k: return &kQ6_K;
        default: return nullptr;
    }
}

// Packed activations of one pass over the token groups should stay in L2 (2 MB per core on the
// machines we measure) while the weight bands stream through. A chunked type whose activations
// are larger goes over the rows in chunks of blocks, each a pass over all bands and groups that
// continues the accumulators in y: Q4_0 2048x8192x512 (Llama-3.2-1B's FFN down projection, 4.7 MB
// of packed activations) took 30.0 ms in 4 chunks of 2048 inputs against 34.0 ms in one pass
// (bench/backend/matmul_bench, one thread, best of 4).
constexpr size_t kChunkActBytes = 1280 * 1024;

struct Layout {
    int64_t n_blocks = 0;      // packed blocks per row
    int64_t n_groups = 0;      // token groups of kAmxTokens (the last one padded)
    int64_t n_chunks = 1;      // passes over the rows' blocks (see kChunkActBytes)
    size_t act_bytes = 0;      // packed activations, [n_groups][n_blocks] activation blocks
    size_t band_bytes = 0;     // one worker's packed weight band (one chunk of it), band blocks
};

Layout layout(const TileKernels& k, int64_t n_in, int64_t n_tokens) {
    Layout l;
    l.n_blocks = n_in / k.block;
    l.n_groups = (n_tokens + kAmxTokens - 1) / kAmxTokens;
    l.act_bytes = (size_t)(l.n_groups * l.n_blocks) * k.act_block_bytes;
    if (k.chunked) {
        l.n_chunks = std::min<int64_t>(l.n_blocks, (int64_t)((l.act_bytes + kChunkActBytes - 1) / kChunkActBytes));
    }
    l.band_bytes = (size_t)((l.n_blocks + l.n_chunks - 1) / l.n_chunks) * k.band_block_bytes;
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
//   Q4_0: 0.34 / 1.35 ms. AVX-512 0.16 / 0.59 ms per single token, 0.36-0.38 / 1.44 ms at 3-4
//         (4-token column tiles), 0.40-0.42 / 1.56-1.63 ms at 5-8 (one packed group); the tiles win
//         by 4-10 % at 3-4 tokens, 1.11-1.20x at 5-8, 1.6x at 9, 2.3x at 16, 3.1x at 32.
int64_t amx_min_tokens(quant::QuantType type) {
    switch (type) {
        case quant::QuantType::q2_k: return 10;
        case quant::QuantType::q3_k: return 8;
        case quant::QuantType::q4_k: return 10;
        case quant::QuantType::q5_k: return 16;
        case quant::QuantType::q4_0: return 5;
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
    std::byte* xp = base;                   // [n_groups][n_blocks] packed activation blocks
    std::byte* bands = base + l.act_bytes;  // [n_threads] bands of band_bytes

    pool.parallel_for(l.n_groups, 1, [&](int64_t gb, int64_t ge) {
        for (int64_t g = gb; g < ge; ++g) {
            const std::byte* rows[kAmxTokens];
            for (int t = 0; t < kAmxTokens; ++t) {
                rows[t] = xq + std::min(g * kAmxTokens + t, n_tokens - 1) * act_bytes;
            }
            k.pack_act(rows, n_in, xp + (size_t)(g * l.n_blocks) * k.act_block_bytes);
        }
    });

    const int64_t n_bands = (n_out + kAmxRows - 1) / kAmxRows;
    for (int64_t c = 0; c < l.n_chunks; ++c) {
        // Blocks [kb, ke) of every row; a worker packs the chunk of each of its bands.
        const int64_t kb = l.n_blocks * c / l.n_chunks, ke = l.n_blocks * (c + 1) / l.n_chunks;
        const int64_t n_chunk = (ke - kb) * k.block;
        const size_t w_offset = quant::row_size(type, kb * k.block);
        const std::byte* x_chunk = xp + (size_t)kb * k.act_block_bytes;
        pool.parallel_chunks(n_bands, 1, [&](int chunk, int64_t bb, int64_t be) {
            std::byte* band = bands + (size_t)chunk * l.band_bytes;
            AmxTileScope tiles;
            for (int64_t bi = bb; bi < be; ++bi) {
                const int64_t r0 = bi * kAmxRows;
                const int nr = (int)std::min<int64_t>(kAmxRows, n_out - r0);
                const std::byte* rows[kAmxRows];
                for (int r = 0; r < kAmxRows; ++r) rows[r] = w + (r0 + std::min(r, nr - 1)) * row_bytes + w_offset;
                k.pack(rows, n_chunk, band);
                // Token groups two at a time (the K-quant kernels share each weight tile between them).
                for (int64_t g = 0; g < l.n_groups; g += 2) {
                    const int ng = (int)std::min<int64_t>(2, l.n_groups - g);
                    const int64_t t_last = (g + ng - 1) * kAmxTokens;
                    const int nt = (int)std::min<int64_t>(kAmxTokens, n_tokens - t_last);
                    k.dot(band, x_chunk + (size_t)(g * l.n_blocks) * k.act_block_bytes, l.n_blocks, ng, n_chunk,
                          y + g * kAmxTokens * n_out + r0, n_out, nr, nt, c > 0);
                }
            }
        });
    }
}

}  // namespace hearth::backend
