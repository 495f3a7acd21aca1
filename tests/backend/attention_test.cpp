// Paged attention: reference against a dense, contiguous computation; CPU kernel against the
// reference (bit-identical), over GQA, sliding windows, sinks, soft-capping and scattered blocks.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "backend/cpu/attention.h"
#include "backend/ref/attention.h"

namespace hearth::backend {
namespace {

struct Shape {
    int n_head, n_head_kv, hd_k, hd_v, block_size, n_pos, window;
    bool sinks;
    float softcap;
};

class AttentionTest : public ::testing::TestWithParam<Shape> {};

TEST_P(AttentionTest, MatchesDenseAndCpuMatchesRef) {
    const Shape s = GetParam();
    std::mt19937 rng(7);
    std::normal_distribution<float> dist(0.0f, 1.0f);
    const int n_blocks = (s.n_pos + s.block_size - 1) / s.block_size + 3;
    // Scatter the sequence over the pool in a shuffled block order.
    std::vector<int32_t> pool_ids(n_blocks);
    std::iota(pool_ids.begin(), pool_ids.end(), 0);
    std::shuffle(pool_ids.begin(), pool_ids.end(), rng);
    std::vector<int32_t> table(pool_ids.begin(), pool_ids.begin() + (s.n_pos + s.block_size - 1) / s.block_size);
    const int kw = s.n_head_kv * s.hd_k, vw = s.n_head_kv * s.hd_v;
    std::vector<float> kc((size_t)n_blocks * s.block_size * kw), vc((size_t)n_blocks * s.block_size * vw);
    std::vector<float> kd((size_t)s.n_pos * kw), vd((size_t)s.n_pos * vw);  // dense copies [pos][width]
    for (int p = 0; p < s.n_pos; ++p) {
        const size_t slot = (size_t)table[p / s.block_size] * s.block_size + p % s.block_size;
        for (int i = 0; i < kw; ++i) kd[(size_t)p * kw + i] = kc[slot * kw + i] = dist(rng);
        for (int i = 0; i < vw; ++i) vd[(size_t)p * vw + i] = vc[slot * vw + i] = dist(rng);
    }
    std::vector<float> sinks(s.n_head);
    for (auto& x : sinks) x = dist(rng);
    AttentionParams ap{s.n_head, s.n_head_kv, s.hd_k, s.hd_v, 1.0f / std::sqrt((float)s.hd_k), s.window,
                       s.sinks ? sinks.data() : nullptr, s.softcap};
    // Every position of the sequence queries, causally.
    const int n_tok = s.n_pos;
    std::vector<float> q((size_t)n_tok * s.n_head * s.hd_k);
    for (auto& x : q) x = dist(rng);
    std::vector<int32_t> pos(n_tok), end(n_tok);
    std::vector<const int32_t*> tables(n_tok, table.data());
    for (int t = 0; t < n_tok; ++t) { pos[t] = t; end[t] = t + 1; }
    PagedKvView kv{kc.data(), vc.data(), s.block_size};
    std::vector<float> out_ref((size_t)n_tok * s.n_head * s.hd_v), out_cpu(out_ref.size());
    attention_ref(q.data(), kv, tables.data(), pos.data(), end.data(), n_tok, ap, out_ref.data());
    ThreadPool pool(3);
    std::vector<float> scratch;
    attention_cpu(pool, q.data(), kv, tables.data(), pos.data(), end.data(), n_tok, ap, out_cpu.data(), scratch);
    ASSERT_EQ(out_ref, out_cpu);

    const int group = s.n_head / s.n_head_kv;
    for (int t = 0; t < n_tok; ++t) {
        for (int h = 0; h < s.n_head; ++h) {
            const int kh = h / group;
            const int lo = s.window > 0 ? std::max(0, t - s.window + 1) : 0;
            std::vector<double> w;
            double mx = s.sinks ? sinks[h] : -INFINITY;
            for (int j = lo; j <= t; ++j) {
                double d = 0;
                for (int i = 0; i < s.hd_k; ++i) d += (double)q[((size_t)t * s.n_head + h) * s.hd_k + i] * kd[(size_t)j * kw + kh * s.hd_k + i];
                d *= ap.scale;
                if (s.softcap > 0) d = s.softcap * std::tanh(d / s.softcap);
                w.push_back(d);
                mx = std::max(mx, d);
            }
            double sum = s.sinks ? std::exp(sinks[h] - mx) : 0.0;
            for (auto& x : w) { x = std::exp(x - mx); sum += x; }
            for (int i = 0; i < s.hd_v; ++i) {
                double o = 0;
                for (int j = lo; j <= t; ++j) o += w[j - lo] / sum * vd[(size_t)j * vw + kh * s.hd_v + i];
                ASSERT_NEAR(out_ref[((size_t)t * s.n_head + h) * s.hd_v + i], o, 1e-4) << t << " " << h << " " << i;
            }
        }
    }
}

INSTANTIATE_TEST_SUITE_P(Shapes, AttentionTest,
                         ::testing::Values(Shape{4, 4, 16, 16, 16, 1, 0, false, 0.0f},
                                           Shape{8, 2, 32, 32, 16, 50, 0, false, 0.0f},
                                           Shape{4, 1, 48, 32, 8, 37, 0, false, 0.0f},
                                           Shape{4, 2, 64, 64, 32, 70, 16, true, 0.0f},
                                           Shape{2, 2, 16, 16, 4, 19, 5, false, 30.0f}));

}  // namespace
}  // namespace hearth::backend
