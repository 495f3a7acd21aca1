#include "backend/cpu/matmul.h"

#include <algorithm>
#include <cstdlib>
#include <numeric>

#include "backend/cpu/amx.h"
#include "backend/cpu/dot_kernels.h"
#include "backend/ref/matmul.h"

namespace hearth::backend {

namespace {

// Activations of one token block should stay in L2 (2 MB per core on the machines we measure)
// while a band of weight rows streams through L1.
constexpr size_t kTokenBlockBytes = 512 * 1024;

// Outputs of rows [r_begin, r_end) for tokens [t_begin, t_end) (a last partial tile of tokens
// is computed whole, its extra columns not stored): dot(wp, t0, out) computes the rows x cols tile at rows wp and tokens t0.. into out
// [rows][cols]. A partial tile of rows repeats the last row.
template <class TileDot>
void run_tiles(int rows, int cols, const std::byte* w, size_t row_bytes, float* y, int64_t n_out, int64_t r_begin,
               int64_t r_end, int64_t t_begin, int64_t t_end, TileDot dot) {
    const std::byte* wp[kMaxTileRows];
    float out[kMaxTileRows * kMaxTileCols];
    for (int64_t r0 = r_begin; r0 < r_end; r0 += rows) {
        const int nr = (int)std::min<int64_t>(rows, r_end - r0);
        for (int r = 0; r < rows; ++r) wp[r] = w + (r0 + std::min(r, nr - 1)) * row_bytes;
        for (int64_t t0 = t_begin; t0 < t_end; t0 += cols) {
            dot(wp, t0, out);
            for (int c = 0; c < cols && t0 + c < t_end; ++c) {
                for (int r = 0; r < nr; ++r) y[(t0 + c) * n_out + r0 + r] = out[r * cols + c];
            }
        }
    }
}

}  // namespace

void matmul_cpu(ThreadPool& pool, quant::QuantType type, const std::byte* w, size_t row_bytes,
                const float* x, float* y, int64_t n_in, int64_t n_out, int64_t n_tokens,
                std::vector<std::byte>& scratch) {
    matmul_cpu(pool, type, w, row_bytes, x, y, n_in, n_out, n_tokens, scratch, default_simd_level());
}

void matmul_cpu(ThreadPool& pool, quant::QuantType type, const std::byte* w, size_t row_bytes,
                const float* x, float* y, int64_t n_in, int64_t n_out, int64_t n_tokens,
                std::vector<std::byte>& scratch, SimdLevel level) {
    matmul_cpu(pool, type, w, row_bytes, x, y, n_in, n_out, n_tokens, scratch, level, AmxMode::automatic);
}

void matmul_cpu(ThreadPool& pool, quant::QuantType type, const std::byte* w, size_t row_bytes,
                const float* x, float* y, int64_t n_in, int64_t n_out, int64_t n_tokens,
                std::vector<std::byte>& scratch, SimdLevel level, AmxMode amx) {
    const auto& tr = quant::traits(type);
    const size_t act_bytes = activation_row_bytes(type, n_in);
    const DotKernels* k = find_dot_kernels(level, type, n_in);
    const bool use_amx = level == SimdLevel::avx512 && has_amx_kernel(type) &&
                         (amx == AmxMode::force ? amx_int8_available()
                                                : amx == AmxMode::automatic && amx_int8_enabled() &&
                                                      n_tokens >= amx_min_tokens(type));
    // Prompt tokens go through the AMX tile kernels, the packed kernel (groups of kPackTokens)
    // or the tile kernel (tiles of k->cols); the rest, and single tokens, one at a time through
    // the column kernel.
    // Measured (bench/backend/matmul_bench step/avx512/q4_k/8192x2048xN): 4 tokens 0.85 ms by
    // the 4-token column tile, 1.16 ms padded to a packed group; 6 tokens 1.34 ms by 4 + 2
    // columns, 1.14 ms padded.
    static const int64_t pack_min = [] {
        const char* e = std::getenv("HEARTH_PACK_MIN");
        return e ? std::atoll(e) : (int64_t)5;
    }();
    // A decode step of pack_min..kPackTokens-1 tokens fills one packed group with copies of its
    // last token (computed, not stored): the packed form beats the narrow column tiles there.
    const bool pad = !use_amx && k && k->packed && n_tokens >= pack_min && n_tokens < kPackTokens;
    const bool packed = !use_amx && k && k->packed && (n_tokens >= kPackTokens || pad);
    const size_t group_bytes = packed ? (size_t)(n_in / tr.block_size) * k->packed_block_bytes : 0;
    const int64_t n_groups = pad ? 1 : packed ? n_tokens / kPackTokens : 0;
    // Prompt batches of types with a prepared-weights form decode each band of weight rows once
    // per call instead of once per token group (Q8_0: 1.15-1.35x on the kernel); capped so the
    // copy (~1.06x the weights) stays small: the 128k-row output matrices keep the plain form.
    const bool prepared = packed && k->packed_prepared && n_tokens >= 4 * kPackTokens &&
                          n_in * n_out <= ((int64_t)64 << 20);
    const int64_t n_bands = prepared ? (n_out + k->packed_rows - 1) / k->packed_rows : 0;
    const size_t band_bytes = prepared ? (size_t)(n_in / tr.block_size) * k->prepared_block_bytes : 0;
    const size_t extra = use_amx ? amx_scratch_bytes(type, n_in, n_tokens, pool.n_threads())
                                 : group_bytes * n_groups + band_bytes * n_bands;
    const size_t need = act_bytes * n_tokens + extra + 64;
    if (scratch.size() < need) scratch.resize(need);
    std::byte* xq = scratch.data();  // [n_tokens][act_bytes] activations in vec_dot_type
    // [n_groups][group_bytes] the same, packed (or AMX scratch), 64-byte aligned for the 512-bit
    // loads (std::vector gives 16); then [n_bands][band_bytes] prepared weights.
    std::byte* xp = xq + ((reinterpret_cast<uintptr_t>(xq) + act_bytes * n_tokens + 63) / 64 * 64 -
                          reinterpret_cast<uintptr_t>(xq));
    std::byte* wprep = xp + group_bytes * n_groups;
    pool.parallel_for(n_tokens, 1, [&](int64_t b, int64_t e) {
        for (int64_t t = b; t < e; ++t) {
            if (k && k->quantize) k->quantize(x + t * n_in, xq + t * act_bytes, n_in);
            else quantize_activation_row(type, x + t * n_in, xq + t * act_bytes, n_in);
        }
    });
    if (use_amx) {
        matmul_amx(pool, type, w, row_bytes, xq, act_bytes, y, n_in, n_out, n_tokens, xp);
        return;
    }

    if (!k) {
        // Reference dot products. Each worker takes a band of weight rows and dots it with every
        // token, so a weight row is read from memory once per call.
        pool.parallel_for(n_out, 16, [&](int64_t b, int64_t e) {
            for (int64_t o = b; o < e; ++o) {
                const std::byte* wr = w + o * row_bytes;
                for (int64_t t = 0; t < n_tokens; ++t) y[t * n_out + o] = tr.vec_dot(wr, xq + t * act_bytes, n_in);
            }
        });
        return;
    }

    const int rows = packed ? k->packed_rows : k->rows;
    const int cols = packed ? kPackTokens : k->cols;
    const int64_t n_tiled = pad ? n_tokens : n_tokens >= cols ? n_tokens / cols * cols : 0;
    if (packed) {
        pool.parallel_for(n_groups, 1, [&](int64_t b, int64_t e) {
            for (int64_t g = b; g < e; ++g) {
                const std::byte* rows_x[kPackTokens];
                for (int t = 0; t < kPackTokens; ++t)
                    rows_x[t] = xq + std::min(g * kPackTokens + t, n_tokens - 1) * act_bytes;
                k->pack(rows_x, n_in, xp + g * group_bytes);
            }
        });
    }
    if (prepared) {
        pool.parallel_for(n_bands, 1, [&](int64_t b, int64_t e) {
            for (int64_t band = b; band < e; ++band) {
                const std::byte* wp[kMaxTileRows];  // a partial band repeats its last row, as run_tiles does
                for (int r = 0; r < k->packed_rows; ++r)
                    wp[r] = w + std::min(band * k->packed_rows + r, n_out - 1) * row_bytes;
                k->prepare_weights(wp, n_in, wprep + band * band_bytes);
            }
        });
    }
    const size_t token_bytes = packed ? group_bytes / kPackTokens : act_bytes;
    const int64_t t_block = std::max<int64_t>(cols, (int64_t)(kTokenBlockBytes / token_bytes) / cols * cols);
    // Workers take bands of whole tiles of rows (in units of both kernels' row counts).
    const int64_t unit = std::lcm(rows, k->column_rows);
    const int64_t n_units = (n_out + unit - 1) / unit;
    auto tile_dot = [&](const std::byte* const* wp, int64_t t0, float* out) {
        if (prepared) {
            // Bands start at multiples of unit and step by rows, so r0 is a multiple of rows.
            const int64_t r0 = (wp[0] - w) / (int64_t)row_bytes;
            k->packed_prepared(wprep + (r0 / rows) * band_bytes, xp + (t0 / kPackTokens) * group_bytes, n_in, out);
        } else if (packed) {
            k->packed(wp, xp + (t0 / kPackTokens) * group_bytes, n_in, out);
        } else {
            const std::byte* xr[kMaxTileCols];
            for (int c = 0; c < cols; ++c) xr[c] = xq + (t0 + c) * act_bytes;
            k->tile(wp, xr, n_in, out);
        }
    };
    // Leftover tokens (all of them in a decode step of < cols tokens): groups of 4 and 2 through
    // the narrow column tiles where the type has them, so a weight block is decoded once per
    // group, then single tokens. Three left over take one 4-token tile (the last token computed
    // twice, stored once): cheaper than a 2-token tile plus a column.
    const int64_t n_left = n_tokens - n_tiled;
    const int64_t n_by4 = !k->column4 ? 0 : n_left % 4 == 3 ? n_left + 1 : n_left / 4 * 4;
    const int64_t n_by2 = k->column2 ? std::max<int64_t>(0, n_left - n_by4) / 2 * 2 : 0;
    auto narrow_dot = [&](DotTileFn fn, int c) {
        return [&, fn, c](const std::byte* const* wp, int64_t t0, float* out) {
            const std::byte* xr[4];
            for (int i = 0; i < c; ++i) xr[i] = xq + std::min(t0 + i, n_tokens - 1) * act_bytes;
            fn(wp, xr, n_in, out);
        };
    };
    auto run_leftovers = [&](int64_t r0, int64_t r1) {
        int64_t t = n_tiled;
        if (n_by4) {
            run_tiles(k->column_rows, 4, w, row_bytes, y, n_out, r0, r1, t, std::min(n_tokens, t + n_by4),
                      narrow_dot(k->column4, 4));
        }
        t = std::min(n_tokens, t + n_by4);
        if (n_by2) run_tiles(k->column_rows, 2, w, row_bytes, y, n_out, r0, r1, t, t + n_by2, narrow_dot(k->column2, 2));
        t += n_by2;
        if (t < n_tokens) run_tiles(k->column_rows, 1, w, row_bytes, y, n_out, r0, r1, t, n_tokens, narrow_dot(k->column, 1));
    };
    auto band = [&](int64_t ub, int64_t ue) {
        const int64_t r_begin = ub * unit, r_end = std::min(n_out, ue * unit);
        // Token blocks; the last one also takes the leftover tokens, so that each unit of rows
        // is read from memory once for both kernels.
        for (int64_t tb = 0; tb == 0 || tb < n_tiled; tb += t_block) {
            const int64_t te = std::min(n_tiled, tb + t_block);
            const bool last = te == n_tiled;
            for (int64_t r0 = r_begin; r0 < r_end; r0 += unit) {
                const int64_t r1 = std::min(r_end, r0 + unit);
                if (tb < te) run_tiles(rows, cols, w, row_bytes, y, n_out, r0, r1, tb, te, tile_dot);
                if (last && n_tiled < n_tokens) run_leftovers(r0, r1);
            }
        }
    };
    // Bands handed out dynamically, about 8 per thread: a decode step's threads otherwise wait for
    // the slowest half (9 % of a 1B decode was spin-waiting with a static split; interleaved A/B
    // on a loaded machine, Q4_K 8192x2048: 1 token 1.47 -> 1.43 ms, 4 tokens 2.84 -> 2.64 ms).
    pool.parallel_dynamic(n_units, std::max<int64_t>(1, n_units / (8 * pool.n_threads())), band);
}

}  // namespace hearth::backend
