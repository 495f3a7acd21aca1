// CUDA matmul (backend/cuda/matmul.h) against the reference (backend/ref/matmul.h) and against
// an f64 product of the dequantized weights, over odd and edge shapes, for F16, Q8_0 and Q4_K.
// Compiles without CUDA (then skips); with CUDA but no GPU it skips with the reason, so CPU-only
// CI passes. scripts/gpu-check.sh runs it on a GPU machine, where it must not skip.
//
// Tolerances, relative to mag = sum_i |w_i * x_i| of each output:
//  - against dequantize + f64 dot: 1e-5 * mag. The kernel accumulates in f32 over at most a few
//    thousand terms in a tree (lanes, then a warp sum): error ~ n_in * 2^-24 * mag worst case
//    for n_in <= 4352 is 2.6e-4, typical far less; the bound 1e-5 holds with margin for the
//    shapes here (random signs make the error grow like sqrt(n)) and catches any wrong index.
//  - against matmul_ref: 1e-2 * mag, the reference's own bound (tests/backend/matmul_test.cpp):
//    the reference rounds activations to Q8_0/Q8_K (up to half a step of amax/127 per element)
//    or to F16 (2^-11 relative), the kernel does not.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "backend/ref/matmul.h"
#include "quant/types.h"

#ifdef HEARTH_HAVE_CUDA
#include "backend/cuda/device.h"
#include "backend/cuda/matmul.h"
#endif

namespace hearth::backend {
namespace {

using quant::QuantType;

#ifdef HEARTH_HAVE_CUDA

std::vector<float> random_floats(size_t n, uint32_t seed, float scale) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> dist(0.0f, scale);
    std::vector<float> v(n);
    for (auto& x : v) x = dist(rng);
    return v;
}

// Opens device 0 or skips the test with the reason.
#define OPEN_DEVICE_OR_SKIP(dev)                                                             \
    auto dev##_result = cuda::Device::open(0);                                               \
    if (!dev##_result.ok()) GTEST_SKIP() << "no CUDA device, CUDA tests skipped: " << dev##_result.status().message(); \
    cuda::Device& dev = **dev##_result

struct Shape {
    int64_t n_in, n_out, n_tokens;
    size_t row_pad;   // extra bytes per row (row_bytes > row_size)
    size_t w_offset;  // byte offset of W in its buffer (unaligned W takes the generic path)
};

class CudaMatmulTest : public ::testing::TestWithParam<QuantType> {};

TEST_P(CudaMatmulTest, MatchesReferenceOnOddShapes) {
    OPEN_DEVICE_OR_SKIP(dev);
    cuda::Stream stream(dev);
    const QuantType type = GetParam();
    const auto& tr = quant::traits(type);
    const int64_t bs = tr.block_size;
    std::vector<Shape> shapes = {
        {bs, 1, 1, 0, 0},          {bs, 7, 1, 0, 0},         {4 * bs, 33, 3, 0, 0},
        {8 * bs, 5, 8, 0, 0},      {9 * bs, 129, 13, 0, 0},  {17 * bs, 64, 2, 0, 0},
        {4096, 67, 1, 0, 0},       {4096, 17, 9, 0, 0},      {bs * 3, 11, 5, 16, 0},
        {bs * 5, 3, 4, 2, 0},      {bs * 2, 9, 3, 0, 2},     {4352, 41, 7, 0, 0},
    };
    if (type == QuantType::f16) {  // F16 has block size 1: odd widths too (generic path)
        shapes.push_back({1, 3, 2, 0, 0});
        shapes.push_back({37, 19, 3, 0, 0});
        shapes.push_back({40, 19, 9, 0, 0});
        shapes.push_back({1000, 8, 1, 0, 0});
    }
    uint32_t seed = 1;
    for (const Shape& sh : shapes) {
        SCOPED_TRACE(testing::Message() << quant::type_name(type) << " n_in " << sh.n_in << " n_out " << sh.n_out
                                        << " n_tokens " << sh.n_tokens << " pad " << sh.row_pad << " offset " << sh.w_offset);
        const size_t row_bytes = quant::row_size(type, sh.n_in) + sh.row_pad;
        const auto wf = random_floats((size_t)sh.n_in * sh.n_out, seed++, 0.05f);
        std::vector<std::byte> w(sh.w_offset + row_bytes * sh.n_out, std::byte{0x5a});
        for (int64_t o = 0; o < sh.n_out; ++o) tr.quantize_row(wf.data() + o * sh.n_in, w.data() + sh.w_offset + o * row_bytes, sh.n_in);
        const auto x = random_floats((size_t)sh.n_in * sh.n_tokens, seed++, 1.0f);
        const size_t n_y = (size_t)sh.n_out * sh.n_tokens;

        std::vector<float> y_ref(n_y);
        matmul_ref(type, w.data() + sh.w_offset, row_bytes, x.data(), y_ref.data(), sh.n_in, sh.n_out, sh.n_tokens);

        auto wd = cuda::DeviceBuffer::allocate(dev, w.size());
        auto xd = cuda::DeviceBuffer::allocate(dev, x.size() * sizeof(float));
        auto yd = cuda::DeviceBuffer::allocate(dev, n_y * sizeof(float));
        ASSERT_TRUE(wd.ok() && xd.ok() && yd.ok());
        wd->upload(stream, w.data(), w.size());
        xd->upload(stream, x.data(), x.size() * sizeof(float));
        const std::vector<float> poison(n_y, std::nanf(""));  // every output must be written
        yd->upload(stream, poison.data(), n_y * sizeof(float));
        matmul_cuda(stream, type, wd->as<std::byte>() + sh.w_offset, row_bytes, xd->as<float>(), yd->as<float>(),
                    sh.n_in, sh.n_out, sh.n_tokens);
        std::vector<float> y(n_y);
        yd->download(stream, y.data(), n_y * sizeof(float));
        const Status st = stream.synchronize();
        ASSERT_TRUE(st.ok()) << st.message();

        std::vector<float> wrow((size_t)sh.n_in);
        double worst_f64 = 0.0, worst_ref = 0.0;
        for (int64_t o = 0; o < sh.n_out; ++o) {
            tr.dequantize_row(w.data() + sh.w_offset + o * row_bytes, wrow.data(), sh.n_in);
            for (int64_t t = 0; t < sh.n_tokens; ++t) {
                double dot = 0.0, mag = 0.0;
                for (int64_t i = 0; i < sh.n_in; ++i) {
                    const double p = (double)wrow[i] * x[t * sh.n_in + i];
                    dot += p;
                    mag += std::fabs(p);
                }
                const float got = y[t * sh.n_out + o];
                ASSERT_TRUE(std::isfinite(got)) << "output " << o << " token " << t << " not written";
                ASSERT_NEAR(got, dot, 1e-5 * mag + 1e-30) << "vs f64, output " << o << " token " << t;
                ASSERT_NEAR(got, y_ref[t * sh.n_out + o], 1e-2 * mag + 1e-30) << "vs matmul_ref, output " << o << " token " << t;
                if (mag > 0) {
                    worst_f64 = std::max(worst_f64, std::fabs(got - dot) / mag);
                    worst_ref = std::max(worst_ref, std::fabs(got - y_ref[t * sh.n_out + o]) / mag);
                }
            }
        }
        RecordProperty("worst_rel_err_f64", std::to_string(worst_f64));
        if (sh.n_in == 4096 && sh.n_tokens == 9) {
            std::printf("[ info ] %s 4096x17x9: worst |err|/sum|w*x| vs f64 %.2e, vs matmul_ref %.2e\n",
                        quant::type_name(type), worst_f64, worst_ref);
        }
    }
}

INSTANTIATE_TEST_SUITE_P(Types, CudaMatmulTest, ::testing::Values(QuantType::f16, QuantType::q8_0, QuantType::q4_k),
                         [](const auto& info) { return std::string(quant::type_name(info.param)); });

TEST(CudaDevice, ErrorsAreStickyAndSurfaceAtSync) {
    OPEN_DEVICE_OR_SKIP(dev);
    cuda::Stream stream(dev);
    ASSERT_TRUE(stream.synchronize().ok());
    EXPECT_FALSE(dev.info().name.empty());
    EXPECT_GT(dev.info().n_sm, 0);
    // An unsupported type records a sticky error and launches nothing.
    float* none = nullptr;
    matmul_cuda(stream, QuantType::q6_k, nullptr, 210, none, none, 256, 1, 1);
    const Status st = stream.synchronize();
    EXPECT_EQ(st.code(), StatusCode::unsupported) << st.message();
    // Later work is skipped and the first error stays.
    matmul_cuda(stream, QuantType::f16, nullptr, 3, none, none, 3, 1, 1);
    EXPECT_EQ(stream.synchronize().code(), StatusCode::unsupported);
    EXPECT_NE(dev.status().message().find("q6_k"), std::string::npos) << dev.status().message();
}

TEST(CudaDevice, QueryReportsCountConsistently) {
    const int n = cuda::device_count();
    if (n == 0) {
        EXPECT_FALSE(cuda::no_device_reason().empty());
        const auto r = cuda::Device::open(0);
        ASSERT_FALSE(r.ok());
        EXPECT_EQ(r.status().code(), StatusCode::not_found);
        GTEST_SKIP() << "no CUDA device, CUDA tests skipped: " << cuda::no_device_reason();
    }
    EXPECT_EQ(cuda::Device::open(n).status().code(), StatusCode::out_of_range);
    const auto info = cuda::query_device(0);
    ASSERT_TRUE(info.ok()) << info.status().message();
    std::printf("[ info ] CUDA device 0: %s, sm_%d%d, %d SMs, %.1f GiB\n", info->name.c_str(), info->cc_major,
                info->cc_minor, info->n_sm, (double)info->total_mem_bytes / (1 << 30));
}

#else  // !HEARTH_HAVE_CUDA

TEST(CudaMatmul, SkippedWithoutCuda) { GTEST_SKIP() << "built without CUDA (HEARTH_CUDA=OFF or no nvcc)"; }

#endif

}  // namespace
}  // namespace hearth::backend
