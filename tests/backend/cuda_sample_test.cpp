// topk_rows_cuda (backend/cuda/sample.h) against a scalar std::partial_sort selection in the
// sampler's order (logit desc, ties by lower id, NaN as -inf, -0 == +0): ids and logit bits
// exactly, on random rows with ties, -inf runs, NaN, signed zeros, rows with nothing above
// -inf, k from 1 to kTopKMax (and k == n_cols), widths around the 8192-value chunk and up to a
// 262,144 vocabulary (three reduction launches). Compiles without CUDA (then skips); with CUDA
// but no GPU it skips with the reason. Outputs are poisoned (NaN) before each run.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#ifdef HEARTH_HAVE_CUDA
#include "backend/cuda/device.h"
#include "backend/cuda/sample.h"
#include "backend/cuda_test_util.h"
#endif

namespace hearth::backend {
namespace {

#ifdef HEARTH_HAVE_CUDA

// The reference selection of each row's k best.
void reference(const std::vector<float>& logits, int64_t n_rows, int64_t n_cols, int k, std::vector<int32_t>& ids,
               std::vector<float>& vals) {
    ids.clear(), vals.clear();
    std::vector<int32_t> order((size_t)n_cols);
    for (int64_t r = 0; r < n_rows; ++r) {
        const float* row = logits.data() + r * n_cols;
        auto val = [row](int32_t i) { return std::isnan(row[i]) ? -INFINITY : row[i]; };
        std::iota(order.begin(), order.end(), 0);
        std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int32_t a, int32_t b) {
            return val(a) > val(b) || (val(a) == val(b) && a < b);
        });
        for (int j = 0; j < k; ++j) ids.push_back(order[(size_t)j]), vals.push_back(val(order[(size_t)j]));
    }
}

// Row r of a test matrix: kind r % 6 picks the pattern.
void fill_row(float* row, int64_t n, int kind, std::mt19937& rng) {
    std::normal_distribution<float> g(0.0f, 4.0f);
    switch (kind) {
    case 0:  // plain
        for (int64_t i = 0; i < n; ++i) row[i] = g(rng);
        break;
    case 1:  // a coarse grid: many ties, also at the k-th place
        for (int64_t i = 0; i < n; ++i) row[i] = std::round(g(rng));
        break;
    case 2:  // masked runs of -inf, NaN here and there, a few +inf
        for (int64_t i = 0; i < n; ++i) row[i] = (i / 97) % 3 == 0 ? -INFINITY : g(rng);
        for (int i = 0; i < 5; ++i) row[rng() % n] = NAN;
        row[rng() % n] = INFINITY;
        break;
    case 3:  // nothing above -inf: the first ids win
        for (int64_t i = 0; i < n; ++i) row[i] = rng() % 2 ? -INFINITY : NAN;
        break;
    case 4:  // signed zeros and a few positives: -0 and +0 tie
        for (int64_t i = 0; i < n; ++i) row[i] = rng() % 2 ? 0.0f : -0.0f;
        for (int i = 0; i < 3; ++i) row[rng() % n] = 1.0f + (float)i;
        break;
    default:  // all equal but the last few (the best sit at the end, past many chunks)
        for (int64_t i = 0; i < n; ++i) row[i] = 1.5f;
        for (int64_t i = std::max<int64_t>(0, n - 3); i < n; ++i) row[i] = 2.0f;
        break;
    }
}

TEST(CudaSample, TopKRowsMatchesTheScalarSelection) {
    CUDA_OPEN_DEVICE_OR_SKIP(dev);
    cuda::Stream s(dev);
    struct Case { int64_t rows, cols; };
    std::mt19937 rng(5);
    int n_compared = 0;
    for (const Case c : {Case{6, 1}, Case{6, 7}, Case{6, 128}, Case{7, 129}, Case{6, 8191}, Case{6, 8192},
                         Case{6, 8193}, Case{12, 50000}, Case{6, 128256}, Case{6, 262144}, Case{32, 151936}}) {
        std::vector<float> logits((size_t)(c.rows * c.cols));
        for (int64_t r = 0; r < c.rows; ++r) fill_row(logits.data() + r * c.cols, c.cols, (int)(r % 6), rng);
        auto dl = to_device(dev, s, logits.data(), logits.size());
        for (int k : {1, 2, 40, 127, kTopKMax, (int)c.cols}) {
            if (k > kTopKMax || k > c.cols) continue;
            const size_t n_out = (size_t)(c.rows * k);
            auto dids = to_device<int32_t>(dev, s, nullptr, n_out);
            auto dvals = to_device<float>(dev, s, nullptr, n_out);
            const size_t ws_bytes = topk_rows_workspace_bytes(c.rows, c.cols, k);
            auto dws = to_device<std::byte>(dev, s, nullptr, ws_bytes);
            topk_rows_cuda(s, dl.as<float>(), c.rows, c.cols, k, dids.as<int32_t>(), dvals.as<float>(),
                           ws_bytes ? dws.data() : nullptr);
            ASSERT_TRUE(s.synchronize().ok()) << s.synchronize().message();
            const auto ids = from_device<int32_t>(s, dids, n_out);
            const auto vals = from_device<float>(s, dvals, n_out);
            std::vector<int32_t> want_ids;
            std::vector<float> want_vals;
            reference(logits, c.rows, c.cols, k, want_ids, want_vals);
            for (size_t i = 0; i < n_out; ++i) {
                ASSERT_EQ(ids[i], want_ids[i]) << "rows " << c.rows << " cols " << c.cols << " k " << k << " row "
                                               << i / k << " rank " << i % k;
                ASSERT_EQ(0, std::memcmp(&vals[i], &want_vals[i], sizeof(float)))
                    << "cols " << c.cols << " k " << k << " i " << i << " got " << vals[i] << " want " << want_vals[i];
            }
            ++n_compared;
        }
    }
    EXPECT_EQ(n_compared, 51);
}

TEST(CudaSample, BadArgumentsAreRecordedOnTheDevice) {
    for (int k : {0, kTopKMax + 1, 11}) {
        CUDA_OPEN_DEVICE_OR_SKIP(dev);
        cuda::Stream s(dev);
        auto dl = to_device<float>(dev, s, nullptr, 40);
        auto dids = to_device<int32_t>(dev, s, nullptr, 4 * 200);
        auto dvals = to_device<float>(dev, s, nullptr, 4 * 200);
        topk_rows_cuda(s, dl.as<float>(), 4, 10, k, dids.as<int32_t>(), dvals.as<float>(), nullptr);  // k > n_cols: 11
        const Status st = s.synchronize();
        EXPECT_EQ(st.code(), StatusCode::invalid_argument) << k;
        EXPECT_NE(st.message().find("topk_rows_cuda"), std::string::npos) << st.message();
    }
    CUDA_OPEN_DEVICE_OR_SKIP(dev);
    cuda::Stream s(dev);
    auto dl = to_device<float>(dev, s, nullptr, 2 * 10000);
    auto dids = to_device<int32_t>(dev, s, nullptr, 2);
    auto dvals = to_device<float>(dev, s, nullptr, 2);
    topk_rows_cuda(s, dl.as<float>(), 2, 10000, 1, dids.as<int32_t>(), dvals.as<float>(), nullptr);  // needs a workspace
    EXPECT_EQ(s.synchronize().code(), StatusCode::invalid_argument);
}

#else

TEST(CudaSample, SkippedWithoutCuda) { GTEST_SKIP() << "built without CUDA"; }

#endif

}  // namespace
}  // namespace hearth::backend
