// The SIMD attention kernels (backend/cpu/attention_kernels.h) against the reference: at every
// SimdLevel this CPU supports, attention_cpu_at must give attention_ref's bytes (memcmp) for
// every cache type (f32, f16, q8_0, q4_0), head dims with and without a fast path, GQA groups
// of 1 to 8, sliding windows, sinks, soft-capping, block sizes 16 / 32 / 7, cells 1, 31, 33,
// 257, queries scaled up so that softmax exponents reach the subnormal and zero ranges; each
// token alone must give the same bytes as inside the batch, and so must prompt batches (tiles
// of several tokens per K/V read). The vector exp of each level must
// equal ggml_vexp bit for bit. Levels the CPU lacks are skipped (and said so).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/attention.h"
#include "backend/cpu/attention_kernels.h"
#include "backend/cpu/cpu_features.h"
#include "backend/ref/attention.h"
#include "backend/ref/unary.h"
#include "quant/types.h"

namespace hearth::backend {
namespace {

using quant::QuantType;

bool same_bytes(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// First index where a and b differ in bits, or -1.
int64_t first_diff(const float* a, const float* b, int64_t n) {
    for (int64_t i = 0; i < n; ++i)
        if (std::memcmp(a + i, b + i, sizeof(float))) return i;
    return -1;
}

TEST(AttentionSimd, VectorExpIsGgmlVexpBitForBit) {
    // Every float of [-200, 200] in a stride that hits every exponent and many mantissas, plus
    // the edges: around the subnormal result range (x < -87.3), |n| = 192, 0, +-inf.
    std::vector<float> x;
    for (uint32_t u = 0; u < 0x80000000u; u += 4099) {
        float f;
        std::memcpy(&f, &u, 4);
        if (f <= 200.0f) x.push_back(f), x.push_back(-f);
    }
    for (float f = -140.0f; f < -80.0f; f += 0.001953125f) x.push_back(f);
    for (float f : {-133.0f, -133.1f, -133.5f, -134.0f, -103.28f, -87.33f, -87.34f, 88.7f, 88.8f, 133.0f, 134.0f,
                    0.0f, -0.0f, INFINITY, -INFINITY, 1e-30f, -1e-30f, 89.0f})
        x.push_back(f);
    while (x.size() % 16) x.push_back(0.0f);
    std::vector<float> want(x.size()), got(x.size());
    for (size_t i = 0; i < x.size(); ++i) want[i] = ggml_vexp(x[i]);
    for (SimdLevel level : supported_simd_levels()) {
        const VexpFn fn = find_vexp_kernel(level);
        if (!fn) continue;
        fn(x.data(), got.data(), (int64_t)x.size());
        const int64_t d = first_diff(want.data(), got.data(), (int64_t)x.size());
        EXPECT_EQ(d, -1) << simd_level_name(level) << ": x = " << (d >= 0 ? x[d] : 0.0f) << " ref "
                         << (d >= 0 ? want[d] : 0.0f) << " got " << (d >= 0 ? got[d] : 0.0f);
    }
}

struct Shape {
    int n_head, n_head_kv, hd_k, hd_v, block_size, window;
    bool sinks;
    float softcap;
    float q_gain;  // query scale: large values spread the scores so softmax exps underflow
};

struct Case {
    QuantType type;
    Shape s;
};

void PrintTo(const Case& c, std::ostream* os) {
    const Shape& s = c.s;
    *os << quant::type_name(c.type) << " heads " << s.n_head << "/" << s.n_head_kv << " dims " << s.hd_k << "/"
        << s.hd_v << " block " << s.block_size << " window " << s.window << (s.sinks ? " sinks" : "")
        << " softcap " << s.softcap << " q_gain " << s.q_gain;
}

std::string case_name(const ::testing::TestParamInfo<Case>& info) {
    const Shape& s = info.param.s;
    return std::string(quant::type_name(info.param.type)) + "_" + std::to_string(info.index) + "_h" +
           std::to_string(s.n_head) + "x" + std::to_string(s.n_head_kv) + "_d" + std::to_string(s.hd_k) + "x" +
           std::to_string(s.hd_v) + "_b" + std::to_string(s.block_size);
}

// A sequence of n_pos positions in a pool of `type` rows, its blocks shuffled over the pool.
struct PagedSequence {
    std::vector<int32_t> table;
    std::vector<std::byte> kc, vc;  // [n_blocks][block_size][row bytes]
    PagedKvView view;

    PagedSequence(QuantType type, const Shape& s, int n_pos, std::mt19937& rng) {
        std::normal_distribution<float> dist(0.0f, 1.0f);
        const int used = (n_pos + s.block_size - 1) / s.block_size;
        const int n_blocks = used + 3;
        std::vector<int32_t> ids(n_blocks);
        std::iota(ids.begin(), ids.end(), 0);
        std::shuffle(ids.begin(), ids.end(), rng);
        table.assign(ids.begin(), ids.begin() + used);
        const int kw = s.n_head_kv * s.hd_k, vw = s.n_head_kv * s.hd_v;
        const size_t kb = quant::row_size(type, kw), vb = quant::row_size(type, vw);
        // Rows padded by 64 bytes: the row stride is larger than a row, as the contract allows.
        kc.assign((size_t)n_blocks * s.block_size * (kb + 64), std::byte{0x7f});
        vc.assign((size_t)n_blocks * s.block_size * (vb + 64), std::byte{0x7f});
        const auto& tr = quant::traits(type);
        std::vector<float> row(std::max(kw, vw));
        // Every cell of the used blocks is written: a second table over the same blocks in another
        // order (PromptRunsMatchRefBitForBit) makes the cells past n_pos visible, and the 0x7f
        // filler there is inf/NaN, whose sign in the output depends on how the compiler ordered
        // commutative operations (not a property of the kernels).
        for (int j = 0; j < used * s.block_size; ++j) {
            const size_t slot = (size_t)table[j / s.block_size] * s.block_size + j % s.block_size;
            for (int i = 0; i < kw; ++i) row[i] = dist(rng);
            tr.quantize_row(row.data(), kc.data() + slot * (kb + 64), kw);
            for (int i = 0; i < vw; ++i) row[i] = dist(rng);
            tr.quantize_row(row.data(), vc.data() + slot * (vb + 64), vw);
        }
        view = {kc.data(), vc.data(), s.block_size, type, kb + 64, vb + 64};
    }
};

// The attention parameters of shape s (random sinks when it has them) and random queries for
// n_tok tokens, scaled by s.q_gain.
struct Queries {
    std::vector<float> sinks, q;
    AttentionParams ap;
    Queries(const Shape& s, int64_t n_tok, std::mt19937& rng, std::normal_distribution<float>& dist)
        : sinks(s.n_head), q((size_t)n_tok * s.n_head * s.hd_k) {
        for (auto& x : sinks) x = dist(rng) * 2.0f;
        ap = AttentionParams{s.n_head, s.n_head_kv, s.hd_k, s.hd_v, 1.0f / std::sqrt((float)s.hd_k), s.window,
                             s.sinks ? sinks.data() : nullptr, s.softcap};
        for (auto& x : q) x = dist(rng) * s.q_gain;
    }
};

class AttentionSimdTest : public ::testing::TestWithParam<Case> {};

TEST_P(AttentionSimdTest, EveryLevelMatchesRefBitForBit) {
    const QuantType type = GetParam().type;
    const Shape s = GetParam().s;
    std::mt19937 rng(11);
    std::normal_distribution<float> dist(0.0f, 1.0f);
    const int n_pos = 257;
    // Two sequences in one batch, each with its own block table.
    PagedSequence seq_a(type, s, n_pos, rng), seq_b(type, s, n_pos, rng);
    ASSERT_EQ(seq_a.view.k_row_bytes, seq_b.view.k_row_bytes);
    // Queries at awkward positions: cells 1, 2, 16, 17, 31, 32, 33, 34, 100, 256, 257 visible.
    const std::vector<int32_t> positions_a = {0, 1, 15, 16, 30, 31, 32, 33, 99, 255, 256};
    const std::vector<int32_t> positions_b = {256, 32, 0, 200};
    std::vector<int32_t> pos, end;
    std::vector<const int32_t*> tables;
    for (int32_t p : positions_a) pos.push_back(p), end.push_back(p + 1), tables.push_back(seq_a.table.data());
    for (int32_t p : positions_b) pos.push_back(p), end.push_back(p + 1), tables.push_back(seq_b.table.data());
    // A call reads one pool, so seq_b's tokens run as a second call over its own pool.
    const int64_t n_tok = (int64_t)pos.size();
    const Queries qs(s, n_tok, rng, dist);
    const AttentionParams& ap = qs.ap;
    const std::vector<float>& q = qs.q;
    const size_t out_per_tok = (size_t)s.n_head * s.hd_v;

    const int64_t na = (int64_t)positions_a.size(), nb = n_tok - na;
    auto run_ref = [&](std::vector<float>& out) {
        out.assign((size_t)n_tok * out_per_tok, 0.0f);
        attention_ref(q.data(), seq_a.view, tables.data(), pos.data(), end.data(), na, ap, out.data());
        attention_ref(q.data() + na * s.n_head * s.hd_k, seq_b.view, tables.data() + na, pos.data() + na,
                      end.data() + na, nb, ap, out.data() + na * out_per_tok);
    };
    std::vector<float> ref;
    run_ref(ref);

    for (SimdLevel level : supported_simd_levels()) {
        SCOPED_TRACE(simd_level_name(level));
        for (int threads : {1, 3}) {
            ThreadPool pool(threads);
            std::vector<AttentionScratch> scratch;
            std::vector<float> got((size_t)n_tok * out_per_tok, NAN);
            attention_cpu_at(level, pool, q.data(), seq_a.view, tables.data(), pos.data(), end.data(), na, ap,
                             got.data(), scratch);
            attention_cpu_at(level, pool, q.data() + na * s.n_head * s.hd_k, seq_b.view, tables.data() + na,
                             pos.data() + na, end.data() + na, nb, ap, got.data() + na * out_per_tok, scratch);
            const int64_t d = first_diff(ref.data(), got.data(), (int64_t)ref.size());
            ASSERT_EQ(d, -1) << "threads " << threads << ": token " << d / (int64_t)out_per_tok << " head "
                             << d % (int64_t)out_per_tok / s.hd_v << " dim " << d % s.hd_v << ": ref "
                             << ref[std::max<int64_t>(d, 0)] << " got " << got[std::max<int64_t>(d, 0)];
            ASSERT_TRUE(same_bytes(ref, got));

            // Each token alone (a decode step, heads split across threads): the same bytes.
            std::vector<float> one(out_per_tok);
            for (int64_t t = 0; t < na; ++t) {
                attention_cpu_at(level, pool, q.data() + t * s.n_head * s.hd_k, seq_a.view, tables.data() + t,
                                 pos.data() + t, end.data() + t, 1, ap, one.data(), scratch);
                ASSERT_EQ(std::memcmp(one.data(), ref.data() + t * out_per_tok, out_per_tok * sizeof(float)), 0)
                    << "token " << t << " alone, threads " << threads;
            }
        }
    }
}

// Prompt batches (16 tokens and more: tiles of several tokens share each K and V read): a whole
// causal prompt of one sequence (a partial last tile), then a batch that mixes two block tables
// over one pool, out-of-order positions, a chunked prompt's second half (kv_end past a token's
// position, as a non-causal batch has) and single tokens among runs. Every level must give the
// reference's bytes, with 1 and 3 threads.
TEST_P(AttentionSimdTest, PromptRunsMatchRefBitForBit) {
    const QuantType type = GetParam().type;
    const Shape s = GetParam().s;
    std::mt19937 rng(23);
    std::normal_distribution<float> dist(0.0f, 1.0f);
    const int n_pos = 203;
    PagedSequence seq(type, s, n_pos, rng);
    // A second sequence over the same pool: the same blocks in reverse order.
    const std::vector<int32_t> table_b(seq.table.rbegin(), seq.table.rend());
    std::vector<int32_t> pos, end;
    std::vector<const int32_t*> tables;
    auto add = [&](const int32_t* table, int32_t p, int32_t e) {
        pos.push_back(p);
        end.push_back(e);
        tables.push_back(table);
    };
    for (int32_t p = 0; p < n_pos; ++p) add(seq.table.data(), p, p + 1);                   // causal prompt
    for (int32_t p = 100; p < 140; ++p) add(p % 9 == 4 ? table_b.data() : seq.table.data(), p, p + 1);
    for (int32_t p = 180; p > 150; p -= 3) add(seq.table.data(), p, p + 1);              // descending
    for (int32_t p = 64; p < 96; ++p) add(table_b.data(), p, 96 + (p % 5 == 0 ? 107 : 0));  // ends past pos
    add(seq.table.data(), 0, 1);
    for (int32_t p = 40; p < 60; ++p) add(seq.table.data(), p, p + 1 + 80 * (p == 50));     // one far end

    const int64_t n_tok = (int64_t)pos.size();
    const Queries qs(s, n_tok, rng, dist);
    const AttentionParams& ap = qs.ap;
    const std::vector<float>& q = qs.q;
    const size_t out_per_tok = (size_t)s.n_head * s.hd_v;
    std::vector<float> ref((size_t)n_tok * out_per_tok);
    attention_ref(q.data(), seq.view, tables.data(), pos.data(), end.data(), n_tok, ap, ref.data());
    for (SimdLevel level : supported_simd_levels()) {
        SCOPED_TRACE(simd_level_name(level));
        for (int threads : {1, 3}) {
            ThreadPool pool(threads);
            std::vector<AttentionScratch> scratch;
            for (int64_t n : {n_tok, (int64_t)n_pos, (int64_t)16, (int64_t)17}) {
                std::vector<float> got((size_t)n * out_per_tok, NAN);
                attention_cpu_at(level, pool, q.data(), seq.view, tables.data(), pos.data(), end.data(), n, ap,
                                 got.data(), scratch);
                const int64_t d = first_diff(ref.data(), got.data(), (int64_t)got.size());
                ASSERT_EQ(d, -1) << "threads " << threads << " batch " << n << ": token " << d / (int64_t)out_per_tok
                                 << " (pos " << pos[std::max<int64_t>(d, 0) / (int64_t)out_per_tok] << ") head "
                                 << d % (int64_t)out_per_tok / s.hd_v << " dim " << d % s.hd_v << ": ref "
                                 << ref[std::max<int64_t>(d, 0)] << " got " << got[std::max<int64_t>(d, 0)];
            }
        }
    }
}

std::vector<Case> make_cases() {
    std::vector<Case> cases;
    const std::vector<Shape> shapes = {
        // n_head, n_head_kv, hd_k, hd_v, block, window, sinks, softcap, q_gain
        {8, 2, 64, 64, 16, 0, false, 0.0f, 1.0f},     // Llama 3.2 1B's group of 4
        {8, 1, 64, 64, 32, 0, false, 0.0f, 1.0f},     // group of 8
        {4, 4, 128, 128, 16, 0, false, 0.0f, 1.0f},   // MHA
        {6, 1, 128, 128, 7, 0, true, 0.0f, 1.0f},     // group of 6 (passes of 4 + 2), odd blocks, sinks
        {4, 2, 256, 256, 32, 33, false, 50.0f, 1.0f}, // Gemma: softcap, sliding window
        {4, 2, 80, 80, 16, 0, false, 0.0f, 1.0f},     // vector + scalar tail of the K dot
        {6, 2, 96, 96, 16, 20, true, 0.0f, 1.0f},     // tail of 32, window, sinks
        {4, 1, 192, 128, 16, 0, false, 0.0f, 1.0f},   // K and V head dims differ
        {4, 2, 64, 64, 16, 0, true, 0.0f, 40.0f},     // scores far apart: exps underflow
        {2, 1, 32, 32, 16, 5, false, 0.0f, 8.0f},     // below one 64-element step
    };
    for (QuantType t : {QuantType::f32, QuantType::f16, QuantType::q8_0, QuantType::q4_0})
        for (const Shape& s : shapes) cases.push_back({t, s});
    // Head dims that are not multiples of 16 (the reference runs) and 16 (no 64-element step).
    for (QuantType t : {QuantType::f32, QuantType::f16}) {
        cases.push_back({t, {4, 2, 20, 12, 16, 0, false, 0.0f, 1.0f}});
        cases.push_back({t, {3, 1, 72, 72, 16, 9, true, 0.0f, 1.0f}});
        cases.push_back({t, {2, 2, 16, 16, 16, 0, false, 30.0f, 1.0f}});
    }
    return cases;
}

INSTANTIATE_TEST_SUITE_P(Shapes, AttentionSimdTest, ::testing::ValuesIn(make_cases()), case_name);

TEST(AttentionSimd, LevelsTheCpuLacksAreSkipped) {
    const SimdLevel top = max_simd_level(cpu_features());
    if (top != SimdLevel::avx512)
        GTEST_SKIP() << "this CPU runs up to " << simd_level_name(top) << "; higher levels untested here";
    SUCCEED();
}

}  // namespace
}  // namespace hearth::backend
