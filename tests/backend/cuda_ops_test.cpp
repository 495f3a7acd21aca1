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
//  - add, add_bias, get_rows (F32, F16, Q8_0), gather_rows, scale, scale_rows, copy_rows: exact
//    (copy_rows also leaves y between its rows untouched).
//  - layer_norm: mean and scale bit-identical but for a rare 1-ulp rounding of an f64 sum taken
//    in another order, plus the host's possible fma in v * w + b: <= ~6e-7 of
//    |w| * scale * (|x - mean| + |mean|) + |y_ref| (ops.h); checked at 2e-6 of it (+1e-30). The
//    data have a mean of 2.5 so that a mistake in the mean shows.
//  - gelu, geglu: tanhf vs glibc (<= 4 ulp together) plus the host's possible fma of the tanh
//    argument: |y - y_ref| <= ~4e-7 |x| (geglu ~5e-7 |gate| |up|); checked at 1.5e-6 |x|
//    (|gate| |up|) + 1e-30. Inputs up to |x| ~ 16, so tanh saturates on both sides.
//  - swiglu_oai: expf vs glibc's expf (<= 2.5 ulp) through 1 + e, a division and a product:
//    <= ~7e-7 |y_ref|; checked at 2e-6 |y_ref| + 1e-30 (the 1e-30 covers exp overflowing on one
//    side only: x / inf = 0 vs ~1e-37). Gates and ups beyond +-limit test the clamps.
//  - softcap: the same division, tanhf vs glibc, one product: <= ~6e-7 |y_ref|; checked at
//    2e-6 |y_ref| + 1e-30.
//  - the fused decode ops (add_rms_norm_q8, swiglu_q8, rope_kv_write): bit-identical to the
//    unfused device ops they replace (every output: x, y, the int8 codes and block scales, q and
//    the f16 cache rows); the normalized activations they quantize are also checked against
//    rms_norm_ref within the bound above plus half a quantization step (amax_32 / 254).
//  - every op gives the same bits on a stream with programmatic launches (launch.cuh): the
//    fused-op tests run each case with and without them.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <vector>

#include "backend/ref/norm.h"
#include "backend/ref/rope.h"
#include "backend/ref/unary.h"
#include "quant/types.h"

#ifdef HEARTH_HAVE_CUDA
#include "backend/cuda/attention.h"
#include "backend/cuda/device.h"
#include "backend/cuda/matmul.h"
#include "backend/cuda/ops.h"
#include "backend/cuda_test_util.h"
#endif

namespace hearth::backend {
namespace {

#ifdef HEARTH_HAVE_CUDA

TEST(CudaOps, RmsNormMatchesReference) {
    CUDA_OPEN_DEVICE_OR_SKIP(dev);
    cuda::Stream s(dev);
    struct Case { int64_t n, rows; bool weight; };
    // Below 1024 one warp per row; from 1024 one block per row (1024: exactly one 4-value chunk
    // per thread of 256; 1025: rows not 16-byte aligned, scalar loads and a partial chunk; 4100:
    // 1025 chunks; 20000: several chunks per thread of 1024).
    for (const Case c : {Case{1, 1, true}, Case{37, 5, true}, Case{64, 259, false}, Case{1023, 3, true},
                         Case{1024, 2, true}, Case{1025, 3, true}, Case{4096, 7, true}, Case{4100, 1, false},
                         Case{5120, 2, false}, Case{20000, 2, true}}) {
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
    CUDA_OPEN_DEVICE_OR_SKIP(dev);
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
    CUDA_OPEN_DEVICE_OR_SKIP(dev);
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
    CUDA_OPEN_DEVICE_OR_SKIP(dev);
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
    CUDA_OPEN_DEVICE_OR_SKIP(dev);
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

// x, y and the quantized activations of add_rms_norm_q8_cuda equal add_cuda + rms_norm_cuda +
// quantize_activations_cuda bit for bit, and dequantize to rms_norm_ref within half a step.
TEST(CudaOps, FusedAddRmsNormQuantizeEqualsUnfused) {
    CUDA_OPEN_DEVICE_OR_SKIP(dev);
    cuda::Stream s(dev);
    struct Case { int64_t n, rows; bool delta, weight, y; };
    // From 1024 one block per row; 17408: more chunks per thread than stay in registers.
    for (const bool pdl : {false, true})
    for (const Case c : {Case{32, 1, true, true, true}, Case{96, 9, true, true, false}, Case{992, 3, false, true, true},
                         Case{1024, 3, true, true, true}, Case{2048, 1, true, true, false},
                         Case{4096, 8, true, false, true}, Case{5120 + 32, 2, false, true, false},
                         Case{17408, 2, true, true, true}}) {
        SCOPED_TRACE(testing::Message() << "n " << c.n << " rows " << c.rows << " delta " << c.delta << " pdl " << pdl);
        s.set_programmatic(pdl);
        const size_t count = c.n * c.rows;
        const auto x = randn(count, 11 + (uint32_t)c.n, 3.0f), delta = randn(count, 12 + (uint32_t)c.n);
        const auto w = randn(c.n, 13 + (uint32_t)c.n);
        const size_t q_bytes = activation_q8_bytes(c.n, c.rows);
        // Unfused.
        auto ux = to_device(dev, s, x.data(), count);
        auto dd = to_device(dev, s, delta.data(), count);
        auto dw = to_device(dev, s, w.data(), w.size());
        auto uy = to_device<float>(dev, s, nullptr, count);
        auto uq = to_device<std::byte>(dev, s, nullptr, q_bytes);
        if (c.delta) add_cuda(s, ux.as<float>(), dd.as<float>(), (int64_t)count);
        rms_norm_cuda(s, ux.as<float>(), c.weight ? dw.as<float>() : nullptr, uy.as<float>(), c.n, c.rows, 1e-5f);
        quantize_activations_cuda(s, uy.as<float>(), uq.data(), c.n, c.rows);
        // Fused.
        auto fx = to_device(dev, s, x.data(), count);
        auto fy = to_device<float>(dev, s, nullptr, count);
        auto fq = to_device<std::byte>(dev, s, nullptr, q_bytes);
        add_rms_norm_q8_cuda(s, fx.as<float>(), c.delta ? dd.as<float>() : nullptr, c.weight ? dw.as<float>() : nullptr,
                             c.y ? fy.as<float>() : nullptr, fq.data(), c.n, c.rows, 1e-5f);
        const auto ux_h = from_device<float>(s, ux, count), fx_h = from_device<float>(s, fx, count);
        const auto uy_h = from_device<float>(s, uy, count), fy_h = from_device<float>(s, fy, count);
        const auto uq_h = from_device<std::byte>(s, uq, q_bytes), fq_h = from_device<std::byte>(s, fq, q_bytes);
        ASSERT_TRUE(s.synchronize().ok());
        EXPECT_EQ(0, std::memcmp(ux_h.data(), fx_h.data(), count * sizeof(float)));
        if (c.y) {
            EXPECT_EQ(0, std::memcmp(uy_h.data(), fy_h.data(), count * sizeof(float)));
        }
        ASSERT_EQ(0, std::memcmp(uq_h.data(), fq_h.data(), q_bytes));
        // Against the reference: dequantized codes vs rms_norm_ref of x + delta.
        std::vector<float> xin(x), want(count);
        if (c.delta) {
            for (size_t i = 0; i < count; ++i) xin[i] += delta[i];
        }
        rms_norm_ref(xin.data(), c.weight ? w.data() : nullptr, want.data(), c.n, c.rows, 1e-5f);
        const auto* qs = reinterpret_cast<const int8_t*>(fq_h.data());
        std::vector<float> ds(count / 32 * 2);
        std::memcpy(ds.data(), fq_h.data() + ((count + 15) & ~size_t{15}), ds.size() * sizeof(float));
        for (size_t b = 0; b < count / 32; ++b) {
            float amax = 0.0f;
            for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(want[b * 32 + i]));
            int sum = 0;
            for (int i = 0; i < 32; ++i) {
                const size_t e = b * 32 + i;
                sum += qs[e];
                ASSERT_LE(std::fabs(ds[2 * b] * qs[e] - want[e]), amax / 254.0f * 1.001f + 2e-6f * std::fabs(want[e]))
                    << "e " << e;
            }
            ASSERT_EQ((float)sum, ds[2 * b + 1]) << "block " << b;
        }
    }
}

TEST(CudaOps, FusedSwigluQuantizeEqualsUnfused) {
    CUDA_OPEN_DEVICE_OR_SKIP(dev);
    cuda::Stream s(dev);
    for (const bool pdl : {false, true})
    for (const auto& [n, rows] : {std::pair<int64_t, int64_t>{32, 1}, {8192, 1}, {14336, 3}, {96, 8}}) {
        s.set_programmatic(pdl);
        const size_t count = n * rows;
        const auto g = randn(count, 21 + (uint32_t)n, 4.0f), u = randn(count, 22 + (uint32_t)n);
        const size_t q_bytes = activation_q8_bytes(n, rows);
        auto dg = to_device(dev, s, g.data(), count);
        auto du = to_device(dev, s, u.data(), count);
        auto tmp = to_device<float>(dev, s, nullptr, count);
        auto uq = to_device<std::byte>(dev, s, nullptr, q_bytes);
        auto fq = to_device<std::byte>(dev, s, nullptr, q_bytes);
        swiglu_cuda(s, dg.as<float>(), du.as<float>(), tmp.as<float>(), (int64_t)count);
        quantize_activations_cuda(s, tmp.as<float>(), uq.data(), n, rows);
        swiglu_q8_cuda(s, dg.as<float>(), du.as<float>(), fq.data(), n, rows);
        const auto uq_h = from_device<std::byte>(s, uq, q_bytes), fq_h = from_device<std::byte>(s, fq, q_bytes);
        ASSERT_TRUE(s.synchronize().ok());
        EXPECT_EQ(0, std::memcmp(uq_h.data(), fq_h.data(), q_bytes)) << "n " << n << " rows " << rows;
    }
}

// rope_kv_write_cuda equals rope_cuda on q and k followed by kv_write_cuda, bit for bit (q and
// every cache row; untouched cache rows keep their poison); with QkNorm, rms_norm_cuda of q and
// k per head first (k left normalized, as the separate ops leave it).
TEST(CudaOps, FusedRopeKvWriteEqualsUnfused) {
    CUDA_OPEN_DEVICE_OR_SKIP(dev);
    cuda::Stream s(dev);
    struct Case { int hdk, hdv, n_rot, n_head, n_head_kv; bool neox, freq_factors, yarn; };
    const Case cases[] = {
        {64, 64, 64, 32, 8, false, false, false}, {128, 128, 128, 32, 8, false, true, false},
        {128, 128, 128, 16, 8, true, false, false}, {80, 64, 64, 6, 2, true, false, true},
        {96, 96, 32, 4, 4, false, false, true},
    };
    const std::vector<int32_t> pos = {0, 1, 17, 511, 4095, 40000, 131071};
    const std::vector<int32_t> slots = {3, 0, 11, 12, 7, 1, 2};
    const int64_t n_slots = 16;
    for (const Case& c : cases) {
        for (const int64_t n_tokens : {int64_t{1}, int64_t{7}})
        for (const bool with_norm : {false, true}) {
            SCOPED_TRACE(testing::Message() << "hd " << c.hdk << "/" << c.hdv << " n_rot " << c.n_rot << " neox "
                                            << c.neox << " yarn " << c.yarn << " tokens " << n_tokens << " norm "
                                            << with_norm);
            s.set_programmatic(n_tokens == 7);
            RopeConfig cfg;
            cfg.n_rot = c.n_rot, cfg.neox = c.neox, cfg.freq_base = 500000.0f;
            if (c.yarn) cfg.freq_scale = 0.25f, cfg.ext_factor = 1.0f, cfg.attn_factor = 0.9f, cfg.n_ctx_orig = 4096;
            std::vector<float> ff(c.n_rot / 2);
            for (size_t i = 0; i < ff.size(); ++i) ff[i] = 1.0f + (float)(i % 5);
            const int64_t qw = (int64_t)c.n_head * c.hdk, kw = (int64_t)c.n_head_kv * c.hdk, vw = (int64_t)c.n_head_kv * c.hdv;
            const int64_t k_row = kw + 6, v_row = vw + 2;  // padded cache rows, in halves
            const auto q = randn(n_tokens * qw, 31), k = randn(n_tokens * kw, 32), v = randn(n_tokens * vw, 33);
            auto dff = to_device(dev, s, ff.data(), ff.size());
            auto dpos = to_device(dev, s, pos.data(), n_tokens);
            auto dslot = to_device(dev, s, slots.data(), n_tokens);
            cfg.freq_factors = c.freq_factors ? dff.as<float>() : nullptr;
            auto dk = to_device(dev, s, k.data(), k.size()), dv = to_device(dev, s, v.data(), v.size());
            const auto qn_w = randn(c.hdk, 34), kn_w = randn(c.hdk, 35);
            auto dqn = to_device(dev, s, qn_w.data(), qn_w.size()), dkn = to_device(dev, s, kn_w.data(), kn_w.size());
            const float eps = 1e-6f;
            QkNorm norm;
            if (with_norm) norm = QkNorm{dqn.as<float>(), dkn.as<float>(), eps};
            // Unfused.
            auto uq = to_device(dev, s, q.data(), q.size()), uk = to_device(dev, s, k.data(), k.size());
            auto nk = to_device(dev, s, k.data(), k.size());  // k as the fused op leaves it
            auto ukc = to_device<uint16_t>(dev, s, nullptr, n_slots * k_row);
            auto uvc = to_device<uint16_t>(dev, s, nullptr, n_slots * v_row);
            if (with_norm) {
                rms_norm_cuda(s, uq.as<float>(), dqn.as<float>(), uq.as<float>(), c.hdk, n_tokens * c.n_head, eps);
                rms_norm_cuda(s, uk.as<float>(), dkn.as<float>(), uk.as<float>(), c.hdk, n_tokens * c.n_head_kv, eps);
                rms_norm_cuda(s, nk.as<float>(), dkn.as<float>(), nk.as<float>(), c.hdk, n_tokens * c.n_head_kv, eps);
            }
            rope_cuda(s, uq.as<float>(), dpos.as<int32_t>(), n_tokens, c.n_head, c.hdk, cfg);
            rope_cuda(s, uk.as<float>(), dpos.as<int32_t>(), n_tokens, c.n_head_kv, c.hdk, cfg);
            kv_write_cuda(s, uk.as<float>(), kw, dv.as<float>(), vw, dslot.as<int32_t>(), n_tokens, (int)kw, (int)vw,
                          ukc.data(), k_row, uvc.data(), v_row);
            // Fused.
            auto fq = to_device(dev, s, q.data(), q.size());
            auto fkc = to_device<uint16_t>(dev, s, nullptr, n_slots * k_row);
            auto fvc = to_device<uint16_t>(dev, s, nullptr, n_slots * v_row);
            rope_kv_write_cuda(s, fq.as<float>(), dk.as<float>(), dv.as<float>(), dpos.as<int32_t>(),
                               dslot.as<int32_t>(), n_tokens, c.n_head, c.n_head_kv, c.hdk, c.hdv, cfg, fkc.data(),
                               k_row, fvc.data(), v_row, norm);
            const auto a = from_device<float>(s, uq, q.size()), b = from_device<float>(s, fq, q.size());
            const auto ak = from_device<uint16_t>(s, ukc, n_slots * k_row), bk = from_device<uint16_t>(s, fkc, n_slots * k_row);
            const auto av = from_device<uint16_t>(s, uvc, n_slots * v_row), bv = from_device<uint16_t>(s, fvc, n_slots * v_row);
            const auto k_after = from_device<float>(s, dk, k.size()), k_want = from_device<float>(s, nk, k.size());
            ASSERT_TRUE(s.synchronize().ok());
            EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float)));
            EXPECT_EQ(ak, bk);
            EXPECT_EQ(av, bv);
            // Without norm k is only read; with it, left normalized.
            EXPECT_EQ(0, std::memcmp(k_after.data(), k_want.data(), k.size() * sizeof(float)));
        }
    }
}

TEST(CudaOps, LayerNormMatchesReference) {
    CUDA_OPEN_DEVICE_OR_SKIP(dev);
    cuda::Stream s(dev);
    struct Case { int64_t n, rows; bool weight, bias; };
    // The rms_norm layouts: one warp per row below 1024, one block per row from 1024 (1025: rows
    // not 16-byte aligned; 20000: several chunks per thread of 1024). n 1: var 0.
    for (const Case c : {Case{1, 3, true, true}, Case{37, 5, true, false}, Case{64, 259, false, true},
                         Case{1023, 3, false, false}, Case{1024, 2, true, true}, Case{1025, 3, true, true},
                         Case{4100, 1, false, true}, Case{20000, 2, true, false}}) {
        SCOPED_TRACE(testing::Message() << "n " << c.n << " rows " << c.rows << " weight " << c.weight << " bias "
                                        << c.bias);
        const float eps = 1e-5f;
        auto x = randn(c.n * c.rows, 41 + (uint32_t)c.n, 3.0f);
        for (float& v : x) v += 2.5f;
        const auto w = randn(c.n, 42 + (uint32_t)c.n), b = randn(c.n, 43 + (uint32_t)c.n);
        const float* hw = c.weight ? w.data() : nullptr;
        const float* hb = c.bias ? b.data() : nullptr;
        std::vector<float> want(x.size());
        layer_norm_ref(x.data(), hw, hb, want.data(), c.n, c.rows, eps);
        auto dx = to_device(dev, s, x.data(), x.size());
        auto dw = to_device(dev, s, w.data(), w.size());
        auto db = to_device(dev, s, b.data(), b.size());
        auto dy = to_device<float>(dev, s, nullptr, x.size());
        const float* dwp = c.weight ? dw.as<float>() : nullptr;
        const float* dbp = c.bias ? db.as<float>() : nullptr;
        layer_norm_cuda(s, dx.as<float>(), dwp, dbp, dy.as<float>(), c.n, c.rows, eps);
        const auto got = from_device<float>(s, dy, x.size());
        for (int64_t r = 0; r < c.rows; ++r) {
            // The reference's mean and scale (backend/ref/norm.cpp), for the bound.
            const float* xr = x.data() + r * c.n;
            double sum = 0.0, var = 0.0;
            for (int64_t i = 0; i < c.n; ++i) sum += xr[i];
            const float mean = (float)(sum / c.n);
            for (int64_t i = 0; i < c.n; ++i) var += (double)(xr[i] - mean) * (xr[i] - mean);
            const float scale = 1.0f / std::sqrt((float)(var / c.n) + eps);
            for (int64_t i = 0; i < c.n; ++i) {
                const size_t e = r * c.n + i;
                const float wi = c.weight ? std::fabs(w[i]) : 1.0f;
                const float mag = wi * scale * (std::fabs(xr[i] - mean) + std::fabs(mean)) + std::fabs(want[e]);
                ASSERT_LE(std::fabs(got[e] - want[e]), 2e-6f * mag + 1e-30f)
                    << "row " << r << " i " << i << " got " << got[e] << " want " << want[e];
            }
        }
        // In place.
        layer_norm_cuda(s, dx.as<float>(), dwp, dbp, dx.as<float>(), c.n, c.rows, eps);
        const auto in_place = from_device<float>(s, dx, x.size());
        EXPECT_EQ(0, std::memcmp(in_place.data(), got.data(), got.size() * sizeof(float)));
    }
}

TEST(CudaOps, GeluAndGegluMatchReference) {
    CUDA_OPEN_DEVICE_OR_SKIP(dev);
    cuda::Stream s(dev);
    for (const int64_t n : {int64_t{1}, int64_t{17}, int64_t{4096 + 3}}) {
        SCOPED_TRACE(testing::Message() << "n " << n);
        const auto g = randn(n, 51 + (uint32_t)n, 4.0f), u = randn(n, 52 + (uint32_t)n);
        std::vector<float> want_gelu(n), want_geglu(n);
        gelu_ref(g.data(), want_gelu.data(), n);
        geglu_ref(g.data(), u.data(), want_geglu.data(), n);
        auto dg = to_device(dev, s, g.data(), g.size());
        auto du = to_device(dev, s, u.data(), u.size());
        auto dy = to_device<float>(dev, s, nullptr, n);
        gelu_cuda(s, dg.as<float>(), dy.as<float>(), n);
        const auto got_gelu = from_device<float>(s, dy, n);
        for (int64_t i = 0; i < n; ++i)
            ASSERT_LE(std::fabs(got_gelu[i] - want_gelu[i]), 1.5e-6f * std::fabs(g[i]) + 1e-30f)
                << "gelu i " << i << " x " << g[i] << " got " << got_gelu[i] << " want " << want_gelu[i];
        geglu_cuda(s, dg.as<float>(), du.as<float>(), dy.as<float>(), n);
        const auto got_geglu = from_device<float>(s, dy, n);
        for (int64_t i = 0; i < n; ++i)
            ASSERT_LE(std::fabs(got_geglu[i] - want_geglu[i]), 1.5e-6f * std::fabs(g[i] * u[i]) + 1e-30f)
                << "geglu i " << i << " gate " << g[i] << " got " << got_geglu[i] << " want " << want_geglu[i];
        // In place: geglu into up, then into gate (the gate is still intact), then gelu of x into x.
        auto du2 = to_device(dev, s, u.data(), u.size());
        geglu_cuda(s, dg.as<float>(), du2.as<float>(), du2.as<float>(), n);
        EXPECT_EQ(0, std::memcmp(from_device<float>(s, du2, n).data(), got_geglu.data(), n * sizeof(float)));
        auto dg2 = to_device(dev, s, g.data(), g.size());
        geglu_cuda(s, dg2.as<float>(), du.as<float>(), dg2.as<float>(), n);
        EXPECT_EQ(0, std::memcmp(from_device<float>(s, dg2, n).data(), got_geglu.data(), n * sizeof(float)));
        gelu_cuda(s, dg.as<float>(), dg.as<float>(), n);
        EXPECT_EQ(0, std::memcmp(from_device<float>(s, dg, n).data(), got_gelu.data(), n * sizeof(float)));
    }
}

TEST(CudaOps, SwigluOaiMatchesReference) {
    CUDA_OPEN_DEVICE_OR_SKIP(dev);
    cuda::Stream s(dev);
    const float alpha = 1.702f, limit = 7.0f;  // gpt-oss
    for (const int64_t n : {int64_t{8}, int64_t{17}, int64_t{2880 + 5}}) {
        SCOPED_TRACE(testing::Message() << "n " << n);
        auto g = randn(n, 61 + (uint32_t)n, 6.0f), u = randn(n, 62 + (uint32_t)n, 6.0f);
        // Edges: exp overflowing (x -60), the limit itself, gates and ups far beyond it.
        g[0] = -60.0f, g[1] = limit, g[2] = 100.0f, g[3] = -limit;
        u[4] = -100.0f, u[5] = 100.0f, u[6] = -limit, u[7] = -1.0f;
        std::vector<float> want(n);
        swiglu_oai_ref(g.data(), u.data(), want.data(), n, alpha, limit);
        auto dg = to_device(dev, s, g.data(), g.size());
        auto du = to_device(dev, s, u.data(), u.size());
        auto dy = to_device<float>(dev, s, nullptr, n);
        swiglu_oai_cuda(s, dg.as<float>(), du.as<float>(), dy.as<float>(), n, alpha, limit);
        const auto got = from_device<float>(s, dy, n);
        for (int64_t i = 0; i < n; ++i)
            ASSERT_LE(std::fabs(got[i] - want[i]), 2e-6f * std::fabs(want[i]) + 1e-30f)
                << "i " << i << " gate " << g[i] << " up " << u[i] << " got " << got[i] << " want " << want[i];
        // In place, into up and into gate.
        swiglu_oai_cuda(s, dg.as<float>(), du.as<float>(), du.as<float>(), n, alpha, limit);
        EXPECT_EQ(0, std::memcmp(from_device<float>(s, du, n).data(), got.data(), n * sizeof(float)));
        auto du2 = to_device(dev, s, u.data(), u.size());
        swiglu_oai_cuda(s, dg.as<float>(), du2.as<float>(), dg.as<float>(), n, alpha, limit);
        EXPECT_EQ(0, std::memcmp(from_device<float>(s, dg, n).data(), got.data(), n * sizeof(float)));
    }
}

TEST(CudaOps, ScaleSoftcapAndCopyRows) {
    CUDA_OPEN_DEVICE_OR_SKIP(dev);
    cuda::Stream s(dev);
    const int64_t rows = 13, n = 333;
    const auto x = randn(rows * n, 71, 40.0f), scales = randn(rows, 72);
    // scale: exact.
    auto dx = to_device(dev, s, x.data(), x.size());
    scale_cuda(s, dx.as<float>(), 0.37f, rows * n);
    std::vector<float> want(x);
    for (float& v : want) v *= 0.37f;
    EXPECT_EQ(0, std::memcmp(from_device<float>(s, dx, x.size()).data(), want.data(), want.size() * sizeof(float)));
    // scale_rows: exact.
    auto dx2 = to_device(dev, s, x.data(), x.size());
    auto dscales = to_device(dev, s, scales.data(), scales.size());
    scale_rows_cuda(s, dx2.as<float>(), dscales.as<float>(), rows, n);
    want = x;
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t i = 0; i < n; ++i) want[r * n + i] *= scales[r];
    EXPECT_EQ(0, std::memcmp(from_device<float>(s, dx2, x.size()).data(), want.data(), want.size() * sizeof(float)));
    // softcap (values from ~0 to ~5 caps: linear and saturated).
    const float cap = 30.0f;
    auto dx3 = to_device(dev, s, x.data(), x.size());
    softcap_cuda(s, dx3.as<float>(), cap, rows * n);
    const auto capped = from_device<float>(s, dx3, x.size());
    for (size_t i = 0; i < x.size(); ++i) {
        const float w = std::tanh(x[i] / cap) * cap;
        ASSERT_LE(std::fabs(capped[i] - w), 2e-6f * std::fabs(w) + 1e-30f)
            << "i " << i << " x " << x[i] << " got " << capped[i] << " want " << w;
    }
    // copy_rows: exact, strided on both sides (and dense); y between rows keeps its poison.
    for (const auto& [x_stride, y_stride] : {std::pair<int64_t, int64_t>{n + 5, n + 31}, {n, n}, {n + 1, n}}) {
        SCOPED_TRACE(testing::Message() << "strides " << x_stride << " " << y_stride);
        const int64_t cr = 7;  // rows copied
        const auto src = randn(cr * x_stride, 73);
        auto dsrc = to_device(dev, s, src.data(), src.size());
        auto dy = to_device<float>(dev, s, nullptr, cr * y_stride);
        copy_rows_cuda(s, dsrc.as<float>(), x_stride, dy.as<float>(), y_stride, cr, n);
        std::vector<float> want_y(cr * y_stride, std::numeric_limits<float>::quiet_NaN());
        for (int64_t r = 0; r < cr; ++r)
            std::memcpy(want_y.data() + r * y_stride, src.data() + r * x_stride, n * sizeof(float));
        EXPECT_EQ(0, std::memcmp(from_device<float>(s, dy, want_y.size()).data(), want_y.data(),
                                 want_y.size() * sizeof(float)));
    }
}

// Each bad call of the ops above records invalid_argument "<op>: bad arguments" and launches
// nothing; calls with no work accept null pointers. The error is sticky, so each bad call gets
// its own Device.
TEST(CudaOps, NewOpsBadArgumentsAreStickyErrors) {
    CUDA_OPEN_DEVICE_OR_SKIP(dev);
    {
        cuda::Stream s(dev);
        gelu_cuda(s, nullptr, nullptr, 0);
        geglu_cuda(s, nullptr, nullptr, nullptr, 0);
        swiglu_oai_cuda(s, nullptr, nullptr, nullptr, 0, 1.702f, 7.0f);
        layer_norm_cuda(s, nullptr, nullptr, nullptr, nullptr, 16, 0, 1e-5f);
        scale_cuda(s, nullptr, 2.0f, 0);
        scale_rows_cuda(s, nullptr, nullptr, 0, 5);
        scale_rows_cuda(s, nullptr, nullptr, 5, 0);
        softcap_cuda(s, nullptr, 30.0f, 0);
        copy_rows_cuda(s, nullptr, 4, nullptr, 4, 0, 4);
        const Status st = s.synchronize();
        EXPECT_TRUE(st.ok()) << st.message();
    }
    auto buf = cuda::DeviceBuffer::allocate(dev, 64 * sizeof(float));  // a valid pointer, never written
    ASSERT_TRUE(buf.ok());
    float* p = buf->as<float>();
    struct Bad {
        const char* op;
        std::function<void(cuda::Stream&)> call;
    };
    const Bad bad[] = {
        {"gelu_cuda", [&](cuda::Stream& s) { gelu_cuda(s, p, p, -1); }},
        {"gelu_cuda", [&](cuda::Stream& s) { gelu_cuda(s, nullptr, p, 4); }},
        {"geglu_cuda", [&](cuda::Stream& s) { geglu_cuda(s, p, nullptr, p, 4); }},
        {"swiglu_oai_cuda", [&](cuda::Stream& s) { swiglu_oai_cuda(s, p, p, p, -3, 1.702f, 7.0f); }},
        {"swiglu_oai_cuda", [&](cuda::Stream& s) { swiglu_oai_cuda(s, p, p, nullptr, 4, 1.702f, 7.0f); }},
        {"layer_norm_cuda", [&](cuda::Stream& s) { layer_norm_cuda(s, p, nullptr, nullptr, p, 0, 1, 1e-5f); }},
        {"layer_norm_cuda", [&](cuda::Stream& s) { layer_norm_cuda(s, p, nullptr, nullptr, p, 8, -1, 1e-5f); }},
        {"layer_norm_cuda", [&](cuda::Stream& s) { layer_norm_cuda(s, nullptr, p, p, p, 8, 2, 1e-5f); }},
        {"scale_cuda", [&](cuda::Stream& s) { scale_cuda(s, nullptr, 2.0f, 4); }},
        {"scale_rows_cuda", [&](cuda::Stream& s) { scale_rows_cuda(s, p, nullptr, 2, 4); }},
        {"scale_rows_cuda", [&](cuda::Stream& s) { scale_rows_cuda(s, p, p, -2, 4); }},
        {"softcap_cuda", [&](cuda::Stream& s) { softcap_cuda(s, p, 0.0f, 4); }},
        {"softcap_cuda", [&](cuda::Stream& s) { softcap_cuda(s, p, -30.0f, 4); }},
        {"softcap_cuda", [&](cuda::Stream& s) { softcap_cuda(s, nullptr, 30.0f, 4); }},
        {"copy_rows_cuda", [&](cuda::Stream& s) { copy_rows_cuda(s, p, 3, p + 32, 8, 2, 4); }},  // x_stride < n
        {"copy_rows_cuda", [&](cuda::Stream& s) { copy_rows_cuda(s, p, 4, p + 32, 3, 2, 4); }},  // y_stride < n
        {"copy_rows_cuda", [&](cuda::Stream& s) { copy_rows_cuda(s, p, 4, nullptr, 4, 2, 4); }},
        {"copy_rows_cuda", [&](cuda::Stream& s) { copy_rows_cuda(s, p, 4, p + 32, 4, 2, -1); }},
    };
    for (const Bad& b : bad) {
        auto d = cuda::Device::open(0);
        ASSERT_TRUE(d.ok());
        cuda::Stream s(**d);
        b.call(s);
        const Status st = s.synchronize();
        EXPECT_EQ(st.code(), StatusCode::invalid_argument) << b.op << ": " << st.message();
        EXPECT_NE(st.message().find(std::string(b.op) + ": bad arguments"), std::string::npos) << st.message();
        // Sticky: a good call afterwards does not clear it.
        scale_cuda(s, p, 1.0f, 0);
        EXPECT_FALSE(s.synchronize().ok()) << b.op;
    }
}

TEST(CudaOps, BadArgumentsAreStickyErrors) {
    CUDA_OPEN_DEVICE_OR_SKIP(dev);
    cuda::Stream s(dev);
    RopeConfig cfg;
    cfg.n_rot = 3;  // odd
    rope_cuda(s, nullptr, nullptr, 1, 1, 4, cfg);
    const Status st = s.synchronize();
    EXPECT_FALSE(st.ok());
    EXPECT_NE(st.message().find("rope_cuda"), std::string::npos) << st.message();
}

// rope_kv_write_cuda's q/k norms come in pairs: a q norm without a k norm is a recorded error
// that launches nothing.
TEST(CudaOps, QkNormWithoutKNormIsAnError) {
    CUDA_OPEN_DEVICE_OR_SKIP(dev);
    cuda::Stream s(dev);
    RopeConfig cfg;
    cfg.n_rot = 64;
    auto w = to_device<float>(dev, s, nullptr, 64);
    rope_kv_write_cuda(s, nullptr, nullptr, nullptr, nullptr, nullptr, 1, 1, 1, 64, 64, cfg, nullptr, 64, nullptr, 64,
                       QkNorm{w.as<float>(), nullptr, 1e-6f});
    const Status st = s.synchronize();
    EXPECT_FALSE(st.ok());
    EXPECT_NE(st.message().find("rope_kv_write_cuda"), std::string::npos) << st.message();
}

#else

TEST(CudaOps, SkippedWithoutCuda) { GTEST_SKIP() << "built without CUDA"; }

#endif

}  // namespace
}  // namespace hearth::backend
