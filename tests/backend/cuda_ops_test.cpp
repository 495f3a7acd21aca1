// CUDA element-wise and row ops (backend/cuda/ops.h) against the references (backend/ref/norm.h,
// rope.h, unary.h, quant/'s dequantizers) on random data of awkward sizes. Compiles without CUDA
// (then skips); with CUDA but no GPU it skips with the reason. scripts/gpu-check.sh runs it on a
// GPU machine, where it must not skip. Outputs are poisoned (NaN) before each run, so an
// unwritten element fails.
//
// Tolerances (derived in backend/cuda/ops.h, with margin):
//  - rms_norm: same squares, f64 sum in another order -> the f32 scale differs by <= 1 ulp,
//    each output by <= 3 ulp: |y - y_ref| <= 1e-6 |y_ref| (+1e-30).
//  - rope: bit-identical angles; cos/sin <= 2 ulp apart (CUDA vs glibc, any angle) plus <= 1 ulp
//    from the host's possible fused multiply-add: |y - y_ref| <= 2e-6 * (|x_a| + |x_b|) of the
//    input pair (mscale <= ~1.4 here).
//  - swiglu: expf vs ggml_vexp (<= 3.5 ulp apart), then a division and a product:
//    <= 2e-6 |y_ref| + 1e-30.
//  - add, add_bias, get_rows (F32, F16, Q8_0), gather_rows: exact.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "backend/ref/norm.h"
#include "backend/ref/rope.h"
#include "backend/ref/unary.h"
#include "quant/types.h"

#ifdef HEARTH_HAVE_CUDA
#include "backend/cuda/device.h"
#include "backend/cuda/ops.h"
#endif

namespace hearth::backend {
namespace {

#ifdef HEARTH_HAVE_CUDA

#define OPS_OPEN_DEVICE_OR_SKIP(dev)                                                                       \
    auto dev##_result = cuda::Device::open(0);                                                             \
    if (!dev##_result.ok()) GTEST_SKIP() << "no CUDA device, CUDA tests skipped: " << dev##_result.status().message(); \
    cuda::Device& dev = **dev##_result

std::vector<float> randn(size_t n, uint32_t seed, float scale = 1.0f) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> dist(0.0f, scale);
    std::vector<float> v(n);
    for (auto& x : v) x = dist(rng);
    return v;
}

// A device copy of a host vector (poisoned with NaN bytes when `src` is null).
template <class T>
cuda::DeviceBuffer to_device(cuda::Device& dev, cuda::Stream& s, const T* src, size_t n) {
    auto buf = cuda::DeviceBuffer::allocate(dev, std::max<size_t>(n, 1) * sizeof(T));
    EXPECT_TRUE(buf.ok());
    if (src) {
        buf->upload(s, src, n * sizeof(T));
    } else {
        const std::vector<float> nan((n * sizeof(T) + 3) / 4, std::numeric_limits<float>::quiet_NaN());
        buf->upload(s, nan.data(), n * sizeof(T));
    }
    EXPECT_TRUE(s.synchronize().ok());
    return std::move(buf).value();
}

template <class T>
std::vector<T> from_device(cuda::Stream& s, const cuda::DeviceBuffer& b, size_t n) {
    std::vector<T> v(n);
    b.download(s, v.data(), n * sizeof(T));
    EXPECT_TRUE(s.synchronize().ok()) << s.synchronize().message();
    return v;
}

TEST(CudaOps, RmsNormMatchesReference) {
    OPS_OPEN_DEVICE_OR_SKIP(dev);
    cuda::Stream s(dev);
    struct Case { int64_t n, rows; bool weight; };
    for (const Case c : {Case{1, 1, true}, Case{37, 5, true}, Case{64, 259, false}, Case{1023, 3, true},
                         Case{4096, 7, true}, Case{5120, 2, false}}) {
        const auto x = randn(c.n * c.rows, 1 + (uint32_t)c.n, 3.0f);
        const auto w = randn(c.n, 2 + (uint32_t)c.n);
        std::vector<float> want(x.size());
        rms_norm_ref(x.data(), c.weight ? w.data() : nullptr, want.data(), c.n, c.rows, 1e-5f);
        auto dx = to_device(dev, s, x.data(), x.size());
        auto dw = to_device(dev, s, w.data(), w.size());
        auto dy = to_device<float>(dev, s, nullptr, x.size());
        rms_norm_cuda(s, dx.as<float>(), c.weight ? dw.as<float>() : nullptr, dy.as<float>(), c.n, c.rows, 1e-5f);
        const auto got = from_device<float>(s, dy, x.size());
        for (size_t i = 0; i < x.size(); ++i)
            ASSERT_LE(std::fabs(got[i] - want[i]), 1e-6f * std::fabs(want[i]) + 1e-30f)
                << "n " << c.n << " rows " << c.rows << " i " << i << " got " << got[i] << " want " << want[i];
        // In place.
        rms_norm_cuda(s, dx.as<float>(), c.weight ? dw.as<float>() : nullptr, dx.as<float>(), c.n, c.rows, 1e-5f);
        const auto in_place = from_device<float>(s, dx, x.size());
        EXPECT_EQ(0, std::memcmp(in_place.data(), got.data(), got.size() * sizeof(float)));
    }
}

TEST(CudaOps, AddAndBiasAreExact) {
    OPS_OPEN_DEVICE_OR_SKIP(dev);
    cuda::Stream s(dev);
    const int64_t rows = 13, n = 333;
    const auto x = randn(rows * n, 3), y = randn(rows * n, 4), b = randn(n, 5);
    auto dx = to_device(dev, s, x.data(), x.size());
    auto dy = to_device(dev, s, y.data(), y.size());
    auto db = to_device(dev, s, b.data(), b.size());
    add_cuda(s, dx.as<float>(), dy.as<float>(), rows * n);
    add_bias_cuda(s, dx.as<float>(), db.as<float>(), rows, n);
    const auto got = from_device<float>(s, dx, x.size());
    std::vector<float> want(x);
    for (size_t i = 0; i < want.size(); ++i) want[i] += y[i];
    add_bias_ref(want.data(), b.data(), rows, n);
    EXPECT_EQ(0, std::memcmp(got.data(), want.data(), want.size() * sizeof(float)));
}

TEST(CudaOps, SwigluMatchesReference) {
    OPS_OPEN_DEVICE_OR_SKIP(dev);
    cuda::Stream s(dev);
    for (const int64_t n : {int64_t{1}, int64_t{15}, int64_t{17}, int64_t{14336 + 5}}) {
        const auto g = randn(n, 6 + (uint32_t)n, 4.0f), u = randn(n, 7 + (uint32_t)n);
        std::vector<float> want(n);
        swiglu_ref(g.data(), u.data(), want.data(), n);
        auto dg = to_device(dev, s, g.data(), g.size());
        auto du = to_device(dev, s, u.data(), u.size());
        swiglu_cuda(s, dg.as<float>(), du.as<float>(), dg.as<float>(), n);  // in place, as the model runs it
        const auto got = from_device<float>(s, dg, n);
        for (int64_t i = 0; i < n; ++i)
            ASSERT_LE(std::fabs(got[i] - want[i]), 2e-6f * std::fabs(want[i]) + 1e-30f) << "n " << n << " i " << i;
    }
}

TEST(CudaOps, RopeMatchesReference) {
    OPS_OPEN_DEVICE_OR_SKIP(dev);
    cuda::Stream s(dev);
    struct Case { int head_dim, n_rot, n_heads; bool neox, freq_factors, yarn; };
    const Case cases[] = {
        {64, 64, 4, false, false, false}, {64, 64, 3, true, false, false},  {128, 128, 8, false, true, false},
        {80, 64, 5, true, false, false},  {96, 32, 2, false, false, true},  {128, 128, 4, true, false, true},
    };
    const int64_t n_tokens = 9;
    const std::vector<int32_t> pos = {0, 1, 2, 17, 511, 4095, 8191, 40000, 131071};
    for (const Case& c : cases) {
        RopeConfig cfg;
        cfg.n_rot = c.n_rot;
        cfg.neox = c.neox;
        cfg.freq_base = 500000.0f;
        std::vector<float> ff(c.n_rot / 2);
        for (size_t i = 0; i < ff.size(); ++i) ff[i] = 1.0f + (float)(i % 7);
        if (c.yarn) {
            cfg.freq_scale = 0.25f, cfg.ext_factor = 1.0f, cfg.attn_factor = 0.9f, cfg.n_ctx_orig = 4096;
            cfg.freq_base = 10000.0f;
        }
        const auto x = randn(n_tokens * c.n_heads * c.head_dim, 8 + (uint32_t)c.head_dim);
        std::vector<float> want(x);
        RopeConfig host_cfg = cfg;
        host_cfg.freq_factors = c.freq_factors ? ff.data() : nullptr;
        rope_ref(want.data(), pos.data(), n_tokens, c.n_heads, c.head_dim, host_cfg);
        auto dx = to_device(dev, s, x.data(), x.size());
        auto dpos = to_device(dev, s, pos.data(), pos.size());
        auto dff = to_device(dev, s, ff.data(), ff.size());
        RopeConfig dev_cfg = cfg;
        dev_cfg.freq_factors = c.freq_factors ? dff.as<float>() : nullptr;
        rope_cuda(s, dx.as<float>(), dpos.as<int32_t>(), n_tokens, c.n_heads, c.head_dim, dev_cfg);
        const auto got = from_device<float>(s, dx, x.size());
        const int half = c.n_rot / 2;
        for (int64_t th = 0; th < n_tokens * c.n_heads; ++th) {
            const float* xin = x.data() + th * c.head_dim;
            for (int d = 0; d < c.head_dim; ++d) {
                // Partner of d in its rotated pair (pass-through dims compare exactly).
                float mag = 0.0f;
                if (d < c.n_rot) {
                    const int partner = c.neox ? (d < half ? d + half : d - half) : (d ^ 1);
                    mag = std::fabs(xin[d]) + std::fabs(xin[partner]);
                }
                const size_t i = th * c.head_dim + d;
                ASSERT_LE(std::fabs(got[i] - want[i]), 2e-6f * mag)
                    << "head_dim " << c.head_dim << " n_rot " << c.n_rot << " neox " << c.neox << " yarn " << c.yarn
                    << " token/head " << th << " d " << d << " got " << got[i] << " want " << want[i];
            }
        }
    }
}

TEST(CudaOps, GetRowsAndGatherAreExact) {
    OPS_OPEN_DEVICE_OR_SKIP(dev);
    cuda::Stream s(dev);
    const int64_t n_rows = 37, n_cols = 96;
    const std::vector<int32_t> ids = {0, 36, 5, 5, 17, 1, 36};
    const int64_t n = (int64_t)ids.size();
    const auto src = randn(n_rows * n_cols, 9, 0.5f);
    for (const quant::QuantType type : {quant::QuantType::f32, quant::QuantType::f16, quant::QuantType::q8_0}) {
        ASSERT_TRUE(can_get_rows_cuda(type));
        const auto& tr = quant::traits(type);
        // Padded rows: F32 rows 4-byte aligned, F16/Q8_0 rows only 2-byte aligned (as the contract allows).
        const size_t row_bytes = quant::row_size(type, n_cols) + (type == quant::QuantType::f32 ? 8 : 6);
        std::vector<std::byte> table(row_bytes * n_rows, std::byte{0});
        for (int64_t r = 0; r < n_rows; ++r) tr.quantize_row(src.data() + r * n_cols, table.data() + r * row_bytes, n_cols);
        std::vector<float> want(n * n_cols);
        for (int64_t i = 0; i < n; ++i)
            tr.dequantize_row(table.data() + ids[i] * row_bytes, want.data() + i * n_cols, n_cols);
        auto dt = to_device(dev, s, table.data(), table.size());
        auto dids = to_device(dev, s, ids.data(), ids.size());
        auto dout = to_device<float>(dev, s, nullptr, want.size());
        get_rows_cuda(s, type, dt.as<std::byte>(), row_bytes, dids.as<int32_t>(), n, n_cols, dout.as<float>());
        const auto got = from_device<float>(s, dout, want.size());
        EXPECT_EQ(0, std::memcmp(got.data(), want.data(), want.size() * sizeof(float))) << quant::type_name(type);
        // gather_rows over the f32 source rows.
        auto dsrc = to_device(dev, s, src.data(), src.size());
        gather_rows_cuda(s, dsrc.as<float>(), dids.as<int32_t>(), n, n_cols, dout.as<float>());
        const auto gathered = from_device<float>(s, dout, want.size());
        for (int64_t i = 0; i < n; ++i)
            EXPECT_EQ(0, std::memcmp(gathered.data() + i * n_cols, src.data() + ids[i] * n_cols, n_cols * sizeof(float)));
    }
    EXPECT_FALSE(can_get_rows_cuda(quant::QuantType::q4_k));
}

TEST(CudaOps, BadArgumentsAreStickyErrors) {
    OPS_OPEN_DEVICE_OR_SKIP(dev);
    cuda::Stream s(dev);
    RopeConfig cfg;
    cfg.n_rot = 3;  // odd
    rope_cuda(s, nullptr, nullptr, 1, 1, 4, cfg);
    const Status st = s.synchronize();
    EXPECT_FALSE(st.ok());
    EXPECT_NE(st.message().find("rope_cuda"), std::string::npos) << st.message();
}

#else

TEST(CudaOps, SkippedWithoutCuda) { GTEST_SKIP() << "built without CUDA"; }

#endif

}  // namespace
}  // namespace hearth::backend
