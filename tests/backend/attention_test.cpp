// Paged attention over f32, f16, q8_0 and q4_0 caches: the reference against a textbook
// attention in double over the dequantized K/V (and the query as the kernel rounds it); the
// CPU kernel against the reference (bit-identical); each token alone against the whole batch
// (bit-identical). Over GQA, sliding windows, sinks, soft-capping, awkward block sizes and
// head dims, and blocks scattered over the pool.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <string>

#include "backend/cpu/attention.h"
#include "backend/ref/attention.h"
#include "quant/types.h"

namespace hearth::backend {
namespace {

using quant::QuantType;

struct Shape {
    int n_head, n_head_kv, hd_k, hd_v, block_size, n_pos, window;
    bool sinks;
    float softcap;
};

struct Case {
    QuantType type;
    Shape s;
};

std::string case_name(const ::testing::TestParamInfo<Case>& info) {
    const Shape& s = info.param.s;
    return std::string(quant::type_name(info.param.type)) + "_" + std::to_string(info.index) + "_h" +
           std::to_string(s.n_head) + "x" + std::to_string(s.n_head_kv) + "_d" + std::to_string(s.hd_k) + "x" +
           std::to_string(s.hd_v);
}

// f32 values of `n` numbers after a round trip through `type` (f32: unchanged).
std::vector<float> round_trip(QuantType type, const float* x, int64_t n) {
    const auto& tr = quant::traits(type);
    std::vector<std::byte> buf(quant::row_size(type, n));
    std::vector<float> y(n);
    tr.quantize_row(x, buf.data(), n);
    tr.dequantize_row(buf.data(), y.data(), n);
    return y;
}

// A random sequence of n_pos positions stored in a pool of `type` rows, its blocks shuffled
// over the pool, with dense [pos][width] f32 copies of what the pool holds (dequantized).
struct PagedSequence {
    std::vector<int32_t> table;
    std::vector<std::byte> kc, vc;   // [n_blocks][block_size][row bytes]
    std::vector<float> kd, vd;       // [n_pos][kw], [n_pos][vw] dequantized
    PagedKvView view;

    PagedSequence(QuantType type, const Shape& s, std::mt19937& rng) {
        std::normal_distribution<float> dist(0.0f, 1.0f);
        const int n_blocks = (s.n_pos + s.block_size - 1) / s.block_size + 3;
        std::vector<int32_t> pool_ids(n_blocks);
        std::iota(pool_ids.begin(), pool_ids.end(), 0);
        std::shuffle(pool_ids.begin(), pool_ids.end(), rng);
        table.assign(pool_ids.begin(), pool_ids.begin() + (s.n_pos + s.block_size - 1) / s.block_size);
        const int kw = s.n_head_kv * s.hd_k, vw = s.n_head_kv * s.hd_v;
        const size_t kb = quant::row_size(type, kw), vb = quant::row_size(type, vw);
        kc.resize((size_t)n_blocks * s.block_size * kb);
        vc.resize((size_t)n_blocks * s.block_size * vb);
        const auto& tr = quant::traits(type);
        std::vector<float> row(std::max(kw, vw));
        for (int p = 0; p < s.n_pos; ++p) {
            const size_t slot = (size_t)table[p / s.block_size] * s.block_size + p % s.block_size;
            for (int i = 0; i < kw; ++i) row[i] = dist(rng);
            tr.quantize_row(row.data(), kc.data() + slot * kb, kw);
            for (float x : round_trip(type, row.data(), kw)) kd.push_back(x);
            for (int i = 0; i < vw; ++i) row[i] = dist(rng);
            tr.quantize_row(row.data(), vc.data() + slot * vb, vw);
            for (float x : round_trip(type, row.data(), vw)) vd.push_back(x);
        }
        view = {kc.data(), vc.data(), s.block_size, type, kb, vb};
    }
};

class AttentionTest : public ::testing::TestWithParam<Case> {};

TEST_P(AttentionTest, MatchesTextbookCpuMatchesRefAndTokensAreBatchInvariant) {
    const QuantType type = GetParam().type;
    const Shape s = GetParam().s;
    std::mt19937 rng(7);
    std::normal_distribution<float> dist(0.0f, 1.0f);
    PagedSequence seq(type, s, rng);
    std::vector<float> sinks(s.n_head);
    for (auto& x : sinks) x = dist(rng);
    AttentionParams ap{s.n_head, s.n_head_kv, s.hd_k, s.hd_v, 1.0f / std::sqrt((float)s.hd_k), s.window,
                       s.sinks ? sinks.data() : nullptr, s.softcap};
    // Every position of the sequence queries, causally.
    const int n_tok = s.n_pos;
    std::vector<float> q((size_t)n_tok * s.n_head * s.hd_k);
    for (auto& x : q) x = dist(rng);
    std::vector<int32_t> pos(n_tok), end(n_tok);
    std::vector<const int32_t*> tables(n_tok, seq.table.data());
    for (int t = 0; t < n_tok; ++t) { pos[t] = t; end[t] = t + 1; }
    std::vector<float> out_ref((size_t)n_tok * s.n_head * s.hd_v), out_cpu(out_ref.size());
    attention_ref(q.data(), seq.view, tables.data(), pos.data(), end.data(), n_tok, ap, out_ref.data());
    ThreadPool pool(3);
    std::vector<AttentionScratch> scratch;
    attention_cpu(pool, q.data(), seq.view, tables.data(), pos.data(), end.data(), n_tok, ap, out_cpu.data(), scratch);
    ASSERT_EQ(out_ref, out_cpu);

    // Each token alone (a decode step), on a pool of another size: the same bits.
    ThreadPool pool1(1);
    std::vector<float> one(s.n_head * s.hd_v);
    for (int t = 0; t < n_tok; ++t) {
        attention_cpu(pool1, q.data() + (size_t)t * s.n_head * s.hd_k, seq.view, tables.data() + t, pos.data() + t,
                      end.data() + t, 1, ap, one.data(), scratch);
        ASSERT_TRUE(std::equal(one.begin(), one.end(), out_ref.begin() + (size_t)t * s.n_head * s.hd_v)) << "token " << t;
    }

    const int group = s.n_head / s.n_head_kv;
    const int kw = s.n_head_kv * s.hd_k, vw = s.n_head_kv * s.hd_v;
    for (int t = 0; t < n_tok; ++t) {
        for (int h = 0; h < s.n_head; ++h) {
            const int kh = h / group;
            const int lo = s.window > 0 ? std::max(0, t - s.window + 1) : 0;
            // The query head as the kernel scores it: f32, or quantized to q8_0 for q8_0/q4_0 K.
            const float* qh = q.data() + ((size_t)t * s.n_head + h) * s.hd_k;
            const bool q_quantized = type == QuantType::q8_0 || type == QuantType::q4_0;
            const std::vector<float> qr = q_quantized ? round_trip(quant::traits(type).vec_dot_type, qh, s.hd_k)
                                                      : std::vector<float>(qh, qh + s.hd_k);
            std::vector<double> w;
            double mx = s.sinks ? sinks[h] : -INFINITY;
            for (int j = lo; j <= t; ++j) {
                double d = 0;
                for (int i = 0; i < s.hd_k; ++i) d += (double)qr[i] * seq.kd[(size_t)j * kw + kh * s.hd_k + i];
                d *= ap.scale;
                if (s.softcap > 0) d = s.softcap * std::tanh(d / s.softcap);
                w.push_back(d);
                mx = std::max(mx, d);
            }
            double sum = s.sinks ? std::exp(sinks[h] - mx) : 0.0;
            for (auto& x : w) { x = std::exp(x - mx); sum += x; }
            for (int i = 0; i < s.hd_v; ++i) {
                double o = 0;
                for (int j = lo; j <= t; ++j) o += w[j - lo] / sum * seq.vd[(size_t)j * vw + kh * s.hd_v + i];
                ASSERT_NEAR(out_ref[((size_t)t * s.n_head + h) * s.hd_v + i], o, 1e-4) << t << " " << h << " " << i;
            }
        }
    }
}

// {n_head, n_head_kv, hd_k, hd_v, block_size, n_pos, window, sinks, softcap}
const Shape kAnyDims[] = {
    {4, 4, 16, 16, 16, 1, 0, false, 0.0f},  {8, 2, 32, 32, 16, 50, 0, false, 0.0f},
    {4, 1, 48, 32, 8, 37, 0, false, 0.0f},  {4, 2, 64, 64, 32, 70, 16, true, 0.0f},
    {2, 2, 16, 16, 4, 19, 5, false, 30.0f}, {3, 1, 20, 10, 3, 29, 7, true, 0.0f},  // hd_v % 4 != 0: 64 lanes
};
// Head dims in whole 32-blocks (q8_0 / q4_0).
const Shape kBlockDims[] = {
    {8, 2, 32, 32, 16, 50, 0, false, 0.0f}, {4, 1, 96, 64, 8, 37, 0, false, 0.0f},
    {4, 2, 64, 64, 32, 70, 16, true, 0.0f}, {2, 2, 32, 32, 4, 19, 5, false, 30.0f},
    {6, 3, 64, 32, 5, 41, 0, true, 0.0f},   {4, 4, 32, 96, 7, 1, 0, false, 0.0f},
};

std::vector<Case> cases() {
    std::vector<Case> c;
    for (QuantType t : {QuantType::f32, QuantType::f16})
        for (const Shape& s : kAnyDims) c.push_back({t, s});
    for (QuantType t : {QuantType::q8_0, QuantType::q4_0})
        for (const Shape& s : kBlockDims) c.push_back({t, s});
    return c;
}

INSTANTIATE_TEST_SUITE_P(Types, AttentionTest, ::testing::ValuesIn(cases()), case_name);

}  // namespace
}  // namespace hearth::backend
