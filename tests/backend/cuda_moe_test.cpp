// CUDA mixture-of-experts routing and combining (backend/cuda/moe.h) against a host reference
// written from the CPU block's definition (model/blocks.cpp MoeBlock::route, softmax gating):
// f32 logits summed in f64 here (the exact-ish value), f32 exps of logit - max, a double sum,
// each probability divided in double, the top k with ties to the lower id, the selected
// weights renormalized by their f32 sum clamped to 2^-14. Outputs are poisoned (NaN bytes)
// first, so an unwritten element fails. Compiles without CUDA (then skips).
//
// Tolerances: the device's f32 logits differ from the f64 ones by ~n_embd * 2^-24 * sum|r x|
// (<= 1e-5 here); expf is <= 2 ulp from exp: probabilities within 2e-6 relative + that. A
// selection may differ from the reference only where the two candidates' reference
// probabilities are within 1e-5 (then either pick is right and the rest of that token is not
// compared). combine: exact (the same f32 products and adds in the same order, no fma).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#ifdef HEARTH_HAVE_CUDA
#include "backend/cuda/device.h"
#include "backend/cuda/moe.h"
#include "backend/cuda_test_util.h"
#endif

namespace hearth::backend {
namespace {

#ifdef HEARTH_HAVE_CUDA

struct RouteRef {
    std::vector<float> p;       // [n_expert] probabilities
    std::vector<int32_t> ids;   // [k]
    std::vector<float> w;       // [k]
};

RouteRef route_ref(const float* x, const float* router, const float* bias, int d, int n_exp, int k, bool norm_w) {
    RouteRef r;
    r.p.resize(n_exp);
    for (int e = 0; e < n_exp; ++e) {
        double s = 0.0;
        for (int i = 0; i < d; ++i) s += (double)router[(size_t)e * d + i] * x[i];
        r.p[e] = (float)s + (bias ? bias[e] : 0.0f);
    }
    const float mx = *std::max_element(r.p.begin(), r.p.end());
    double sum = 0.0;
    for (float& v : r.p) sum += (v = std::exp(v - mx));
    for (float& v : r.p) v = (float)(v / sum);
    std::vector<float> left = r.p;
    for (int j = 0; j < k; ++j) {
        int best = 0;
        for (int e = 1; e < n_exp; ++e)
            if (left[e] > left[best]) best = e;
        r.ids.push_back(best);
        r.w.push_back(r.p[best]);
        left[best] = -1.0f;
    }
    if (norm_w) {
        float ws = 0.0f;
        for (float v : r.w) ws += v;
        ws = std::max(ws, 6.103515625e-5f);
        for (float& v : r.w) v /= ws;
    }
    return r;
}

TEST(CudaMoe, RouteMatchesTheReference) {
    auto dev_r = cuda::Device::open(0);
    if (!dev_r.ok()) GTEST_SKIP() << "no CUDA device, CUDA tests skipped: " << dev_r.status().message();
    cuda::Device& dev = **dev_r;
    cuda::Stream s(dev);
    struct Shape {
        int d, n_exp, k, n;
        bool norm_w, bias, aligned;
    };
    // Awkward sizes: n_embd not a multiple of 4 (the scalar loads), one expert more than a warp
    // multiple, k = n_expert, a long batch, the largest expert count.
    const Shape shapes[] = {{64, 8, 2, 53, true, false, true},    {2048, 128, 8, 3, true, false, true},
                            {37, 33, 5, 17, false, true, false},  {256, 4, 4, 1, true, true, true},
                            {128, 1024, 32, 2, true, false, true}, {96, 60, 4, 300, false, false, true}};
    uint32_t seed = 1;
    for (const Shape& sh : shapes) {
        SCOPED_TRACE(testing::Message() << "d " << sh.d << " experts " << sh.n_exp << " k " << sh.k << " n " << sh.n);
        const std::vector<float> x = randn((size_t)sh.n * sh.d, seed++, 1.0f);
        const std::vector<float> router = randn((size_t)sh.n_exp * sh.d, seed++, 2.0f / std::sqrt((float)sh.d));
        const std::vector<float> bias = randn(sh.n_exp, seed++, 0.5f);
        auto dx = to_device(dev, s, x.data(), x.size()), dr = to_device(dev, s, router.data(), router.size());
        auto db = to_device(dev, s, bias.data(), bias.size());
        // Outputs poisoned (NaN bytes: an unwritten id reads as an expert far out of range).
        auto dl = to_device(dev, s, (const float*)nullptr, (size_t)sh.n * sh.n_exp);
        auto di = to_device(dev, s, (const int32_t*)nullptr, (size_t)sh.n * sh.k);
        auto dw = to_device(dev, s, (const float*)nullptr, (size_t)sh.n * sh.k);
        auto dcr = to_device(dev, s, (const int32_t*)nullptr, (size_t)sh.n * sh.k);
        auto dcw = to_device(dev, s, (const float*)nullptr, (size_t)sh.n * sh.k);
        // The unaligned case starts x one float in (rows then miss the 16-byte loads).
        const float* xp = dx.as<float>();
        std::vector<float> x_used = x;
        if (!sh.aligned) {
            std::vector<float> shifted(x.size() + 1, 0.0f);
            std::copy(x.begin(), x.end(), shifted.begin() + 1);
            dx = to_device(dev, s, shifted.data(), shifted.size());
            xp = dx.as<float>() + 1;
        }
        moe_route_softmax_cuda(s, xp, dr.as<float>(), sh.bias ? db.as<float>() : nullptr, sh.d, sh.n, sh.n_exp, sh.k,
                               sh.norm_w, dl.as<float>(), di.as<int32_t>(), dw.as<float>(), dcr.as<int32_t>(),
                               dcw.as<float>());
        const auto ids = from_device<int32_t>(s, di, (size_t)sh.n * sh.k);
        const auto w = from_device<float>(s, dw, (size_t)sh.n * sh.k);
        const auto p = from_device<float>(s, dl, (size_t)sh.n * sh.n_exp);
        const auto comb_rows = from_device<int32_t>(s, dcr, (size_t)sh.n * sh.k);
        const auto comb_w = from_device<float>(s, dcw, (size_t)sh.n * sh.k);
        // The combine tables: each token's own k selections, by ascending expert id, with their
        // weights (exactly: the same values moved).
        for (int t = 0; t < sh.n; ++t) {
            for (int j = 0; j < sh.k; ++j) {
                const int32_t row = comb_rows[(size_t)t * sh.k + j];
                ASSERT_GE(row, t * sh.k);
                ASSERT_LT(row, (t + 1) * sh.k);
                EXPECT_EQ(comb_w[(size_t)t * sh.k + j], w[row]);
                if (j > 0) {
                    EXPECT_LT(ids[comb_rows[(size_t)t * sh.k + j - 1]], ids[row]) << "token " << t;
                }
            }
        }
        int compared = 0;
        for (int t = 0; t < sh.n; ++t) {
            const RouteRef r = route_ref(x_used.data() + (size_t)t * sh.d, router.data(), sh.bias ? bias.data() : nullptr,
                                         sh.d, sh.n_exp, sh.k, sh.norm_w);
            for (int e = 0; e < sh.n_exp; ++e)
                ASSERT_NEAR(p[(size_t)t * sh.n_exp + e], r.p[e], 2e-6f * r.p[e] + 1e-6f) << "token " << t << " expert " << e;
            for (int j = 0; j < sh.k; ++j) {
                const int32_t got = ids[(size_t)t * sh.k + j];
                if (got != r.ids[j]) {
                    // Only a reference near-tie may pick the other expert.
                    ASSERT_GE(got, 0);
                    ASSERT_LT(got, sh.n_exp);
                    EXPECT_LE(std::fabs(r.p[got] - r.p[r.ids[j]]), 1e-5f) << "token " << t << " pick " << j;
                    break;
                }
                EXPECT_NEAR(w[(size_t)t * sh.k + j], r.w[j], 1e-5f * std::fabs(r.w[j]) + 1e-6f)
                    << "token " << t << " pick " << j;
                ++compared;
            }
        }
        EXPECT_GE(compared, sh.n * sh.k * 9 / 10);  // near-ties are rare on random data
    }
}

TEST(CudaMoe, CombineIsTheOrderedWeightedSum) {
    auto dev_r = cuda::Device::open(0);
    if (!dev_r.ok()) GTEST_SKIP() << "no CUDA device, CUDA tests skipped: " << dev_r.status().message();
    cuda::Device& dev = **dev_r;
    cuda::Stream s(dev);
    const int n = 7, k = 3, d = 45, rows = n * k + 4;
    const std::vector<float> ys = randn((size_t)rows * d, 11, 1.0f);
    const std::vector<float> w = randn((size_t)n * k, 12, 0.5f);
    std::vector<int32_t> idx((size_t)n * k);
    std::mt19937 rng(13);
    for (auto& r : idx) r = (int32_t)(rng() % rows);
    auto dy = to_device(dev, s, ys.data(), ys.size()), dw = to_device(dev, s, w.data(), w.size());
    auto di = to_device(dev, s, idx.data(), idx.size());
    auto dout = to_device(dev, s, (const float*)nullptr, (size_t)n * d);
    moe_combine_cuda(s, dy.as<float>(), di.as<int32_t>(), dw.as<float>(), n, k, d, dout.as<float>());
    const auto out = from_device<float>(s, dout, (size_t)n * d);
    for (int t = 0; t < n; ++t)
        for (int c = 0; c < d; ++c) {
            volatile float acc = w[t * k] * ys[(size_t)idx[t * k] * d + c];  // volatile: no fma contraction
            for (int j = 1; j < k; ++j) {
                volatile float prod = w[t * k + j] * ys[(size_t)idx[t * k + j] * d + c];
                acc = acc + prod;
            }
            ASSERT_EQ(out[(size_t)t * d + c], acc) << "token " << t << " column " << c;
        }
}

TEST(CudaMoe, BadArgumentsAreRecorded) {
    auto dev_r = cuda::Device::open(0);
    if (!dev_r.ok()) GTEST_SKIP() << "no CUDA device, CUDA tests skipped: " << dev_r.status().message();
    cuda::Device& dev = **dev_r;
    cuda::Stream s(dev);
    moe_route_softmax_cuda(s, nullptr, nullptr, nullptr, 64, 1, kMoeMaxExperts + 1, 2, true, nullptr, nullptr,
                           nullptr);
    const Status st = s.synchronize();
    EXPECT_EQ(st.code(), StatusCode::invalid_argument) << st.message();
}

#else

TEST(CudaMoe, SkippedWithoutCuda) { GTEST_SKIP() << "built without CUDA"; }

#endif

}  // namespace
}  // namespace hearth::backend
