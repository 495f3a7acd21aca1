// CUDA matmul (backend/cuda/matmul.h) against the reference (backend/ref/matmul.h) and against
// an exact (f64) model of each CUDA path, over odd and edge shapes, for every type with a CUDA
// kernel (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL,
// IQ4_XS, MXFP4). Compiles without CUDA (then skips); with CUDA but no GPU it skips with the reason, so
// CPU-only CI passes. scripts/gpu-check.sh runs it on a GPU machine, where it must not skip.
//
// Every output o, t is checked twice, with w = the reference dequantization of the weights,
// x = the f32 activations and mag = sum_i |w_i * x_i|:
//
// 1. Against an exact model of the path, which reproduces the path's rounding of its inputs on
//    the host and sums in f64; what is left is the kernel's own f32 arithmetic:
//    - dp4a (quantized types, fewer than 16 tokens or unaligned rows): xg_i = d * q_i with the
//      device's q8 rounding (d = amax/127 per 32, q = round_half_even(x * 127/amax)), which the
//      host reproduces bit for bit. The kernel's int dot products are exact; its float steps are
//      a few roundings per unit of 32 and a sum of <= n_in/32 unit results:
//      |y - sum w_i xg_i| <= 1e-4 * sum |w_i xg_i| (f32 unit roundoff 6e-8 times a few dozen
//      operations on the path of each term, with margin; a wrong index costs O(1/sqrt(n_in)) of
//      the magnitude, >= 1e-2 here).
//    - GEMM (>= 16 tokens, 16-byte-aligned rows, n_in % 64 == 0): w and x rounded to f16 exactly as the device
//      does (the kernel's dequantization is the reference's, operation for operation), f32
//      accumulation in the tensor cores and one split-K add: 1e-4 * sum |w16_i x16_i|.
//    - F16/BF16/F32 matrix-vector (f32 activations): 1e-5 * mag.
// 2. Against matmul_ref, with a bound derived from the inputs rather than a constant: both sides
//    compute sum_i w_i a_i for their own rounded activations a (and the GEMM its f16 weights), so
//      |y - y_ref| <= sum_i |w_i| (|x_i - xg_i| + |x_i - xr_i|) + sum_i |w16_i - w_i| |xg_i| + 1e-4 * mag
//    where xg is the path's activation (above) and xr the reference's (its vec_dot_type: Q8_0 per
//    32 with an fp16 scale for Q4_0/Q5_0/Q8_0/IQ4_NL/MXFP4, Q8_1 for Q4_1/Q5_1, Q8_K per 256 for
//    the K-quants and IQ4_XS, f16 for F16, bf16 for BF16, none for F32), both computed here; 1e-4 * mag
//    covers the f32 sums of both sides. Per element the int8 roundings are at most half a step,
//    |x_i - xg_i| <= amax_32(i)/254 and |x_i - xr_i| <= amax_block(i)/254 (+ 127 * 2^-11 of a step
//    for the fp16 scale of Q8_0), so the bound is at most sum_i |w_i| (amax_32(i) + amax_ref(i))
//    / 254 * 1.07 + ...: for random data about 1e-2 of mag, which is where the old fixed 1e-2
//    tolerance came from. The test prints the worst observed error as a fraction of the bound.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "backend/ref/matmul.h"
#include "base/fp16.h"
#include "quant/quant_helpers.h"
#include "quant/types.h"

#ifdef HEARTH_HAVE_CUDA
#include "backend/cuda/device.h"
#include "backend/cuda/graph.h"
#include "backend/cuda/matmul.h"
#include "backend/cuda_test_util.h"
#include "backend/cuda/ops.h"
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
// The device's activation quantizer (matmul_kernels.cuh: quantize_q8), value by value: x -> d * q.
std::vector<float> device_q8_activations(const std::vector<float>& x, int64_t n_in) {
    std::vector<float> out(x.size());
    for (size_t b = 0; b < x.size() / 32; ++b) {
        float amax = 0.0f;
        for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(x[b * 32 + i]));
        const float d = amax / 127.0f;
        const float id = amax > 0.0f ? 127.0f / amax : 0.0f;
        for (int i = 0; i < 32; ++i) out[b * 32 + i] = d * (float)(int)std::nearbyint(x[b * 32 + i] * id);
    }
    (void)n_in;
    return out;
}

// The reference's activation values: x converted to the vec_dot_type and back.
std::vector<float> reference_activations(QuantType type, const std::vector<float>& x, int64_t n_in) {
    const auto& vt = quant::traits(quant::traits(type).vec_dot_type);
    std::vector<float> out(x.size());
    std::vector<std::byte> buf(activation_row_bytes(type, n_in));
    for (size_t t = 0; t < x.size() / n_in; ++t) {
        quantize_activation_row(type, x.data() + t * n_in, buf.data(), n_in);
        vt.dequantize_row(buf.data(), out.data() + t * n_in, n_in);
    }
    return out;
}

struct Shape {
    int64_t n_in, n_out, n_tokens;
    size_t row_pad;   // extra bytes per row (row_bytes > row_size)
    size_t w_offset;  // byte offset of W in its buffer (2: rows not 16-byte aligned)
};

enum class Path { dp4a, gemm, f16_vec };

Path path_of(QuantType type, const Shape& sh, size_t row_bytes) {
    const bool aligned = row_bytes % 16 == 0 && sh.w_offset % 16 == 0;
    if (sh.n_tokens >= kMatmulGemmMinTokens && aligned && sh.n_in % 64 == 0) return Path::gemm;
    const bool is_float = type == QuantType::f16 || type == QuantType::bf16 || type == QuantType::f32;
    return is_float ? Path::f16_vec : Path::dp4a;
}

struct Worst {
    double model = 0, ref = 0, ref_abs = 0;  // worst |err| / tolerance (model), / bound (ref), |err| / mag (ref)
};

// Runs one shape on the device and checks every output; returns the worst ratios.
Worst check_shape(cuda::Device& dev, cuda::Stream& stream, QuantType type, const Shape& sh, uint32_t seed) {
    Worst worst;
    const auto& tr = quant::traits(type);
    const size_t row_bytes = quant::row_size(type, sh.n_in) + sh.row_pad;
    const auto wf = random_floats((size_t)sh.n_in * sh.n_out, seed, 0.05f);
    std::vector<std::byte> w(sh.w_offset + row_bytes * sh.n_out, std::byte{0x5a});
    for (int64_t o = 0; o < sh.n_out; ++o) tr.quantize_row(wf.data() + o * sh.n_in, w.data() + sh.w_offset + o * row_bytes, sh.n_in);
    // Activations with a few outliers per row, as after a norm: amax per block varies.
    auto x = random_floats((size_t)sh.n_in * sh.n_tokens, seed + 1, 1.0f);
    for (size_t i = 0; i < x.size(); i += 97) x[i] *= 6.0f;
    const size_t n_y = (size_t)sh.n_out * sh.n_tokens;

    std::vector<float> y_ref(n_y);
    matmul_ref(type, w.data() + sh.w_offset, row_bytes, x.data(), y_ref.data(), sh.n_in, sh.n_out, sh.n_tokens);

    // Padded to 16 bytes: the dp4a kernels read W in whole aligned 16-byte chunks (matmul.h).
    auto wd = cuda::DeviceBuffer::allocate(dev, (w.size() + 15) & ~(size_t)15);
    auto xd = cuda::DeviceBuffer::allocate(dev, x.size() * sizeof(float));
    auto yd = cuda::DeviceBuffer::allocate(dev, n_y * sizeof(float));
    EXPECT_TRUE(wd.ok() && xd.ok() && yd.ok());
    if (!wd.ok() || !xd.ok() || !yd.ok()) return worst;
    wd->upload(stream, w.data(), w.size());
    xd->upload(stream, x.data(), x.size() * sizeof(float));
    const std::vector<float> poison(n_y, std::nanf(""));  // every output must be written
    yd->upload(stream, poison.data(), n_y * sizeof(float));
    matmul_cuda(stream, type, wd->as<std::byte>() + sh.w_offset, row_bytes, xd->as<float>(), yd->as<float>(), sh.n_in,
                sh.n_out, sh.n_tokens);
    std::vector<float> y(n_y);
    yd->download(stream, y.data(), n_y * sizeof(float));
    const Status st = stream.synchronize();
    EXPECT_TRUE(st.ok()) << st.message();
    if (!st.ok()) return worst;

    // A second run must give the same bits (no races, deterministic split-K).
    yd->upload(stream, poison.data(), n_y * sizeof(float));
    matmul_cuda(stream, type, wd->as<std::byte>() + sh.w_offset, row_bytes, xd->as<float>(), yd->as<float>(), sh.n_in,
                sh.n_out, sh.n_tokens);
    std::vector<float> y2(n_y);
    yd->download(stream, y2.data(), n_y * sizeof(float));
    EXPECT_TRUE(stream.synchronize().ok());
    EXPECT_EQ(0, std::memcmp(y.data(), y2.data(), n_y * sizeof(float))) << "two runs differ";

    const Path path = path_of(type, sh, row_bytes);
    const auto xr = reference_activations(type, x, sh.n_in);
    std::vector<float> xg;  // the activations as the path sees them
    if (path == Path::dp4a) {
        xg = device_q8_activations(x, sh.n_in);
    } else if (path == Path::gemm) {
        xg.resize(x.size());
        for (size_t i = 0; i < x.size(); ++i) xg[i] = round_fp16(x[i]);
    } else {
        xg = x;
    }
    std::vector<float> wrow((size_t)sh.n_in);
    for (int64_t o = 0; o < sh.n_out; ++o) {
        tr.dequantize_row(w.data() + sh.w_offset + o * row_bytes, wrow.data(), sh.n_in);
        for (int64_t t = 0; t < sh.n_tokens; ++t) {
            const float* xt = x.data() + t * sh.n_in;
            const float* xgt = xg.data() + t * sh.n_in;
            const float* xrt = xr.data() + t * sh.n_in;
            double model = 0, model_mag = 0, mag = 0, bound = 0;
            for (int64_t i = 0; i < sh.n_in; ++i) {
                const double wi = wrow[i];
                const double wm = path == Path::gemm ? (double)round_fp16(wrow[i]) : wi;  // the path's weight
                model += wm * xgt[i];
                model_mag += std::fabs(wm * xgt[i]);
                mag += std::fabs(wi * xt[i]);
                bound += std::fabs(wi) * (std::fabs((double)xt[i] - xgt[i]) + std::fabs((double)xt[i] - xrt[i])) +
                         std::fabs(wm - wi) * std::fabs((double)xgt[i]);
            }
            bound += 1e-4 * mag + 1e-30;
            const double tol_model = (path == Path::f16_vec ? 1e-5 : 1e-4) * model_mag + 1e-30;
            const float got = y[t * sh.n_out + o];
            const float want_ref = y_ref[t * sh.n_out + o];
            EXPECT_TRUE(std::isfinite(got)) << "output " << o << " token " << t << " not written";
            if (!std::isfinite(got)) return worst;
            const double err_model = std::fabs(got - model), err_ref = std::fabs((double)got - want_ref);
            EXPECT_LE(err_model, tol_model) << "vs exact model: output " << o << " token " << t << " got " << got
                                            << " want " << model;
            EXPECT_LE(err_ref, bound) << "vs matmul_ref: output " << o << " token " << t << " got " << got
                                      << " ref " << want_ref;
            if (err_model > tol_model || err_ref > bound) return worst;  // one report per shape is enough
            worst.model = std::max(worst.model, err_model / tol_model);
            worst.ref = std::max(worst.ref, err_ref / bound);
            if (mag > 0) worst.ref_abs = std::max(worst.ref_abs, err_ref / mag);
        }
    }
    return worst;
}

class CudaMatmulTest : public ::testing::TestWithParam<QuantType> {};

TEST_P(CudaMatmulTest, MatchesReferenceOnOddShapes) {
    CUDA_OPEN_DEVICE_OR_SKIP(dev);
    cuda::Stream stream(dev);
    const QuantType type = GetParam();
    const int64_t bs = quant::block_size(type);
    const int64_t k = std::max<int64_t>(bs, 256);  // a multiple of every block size
    std::vector<Shape> shapes;
    // Decode: every token count the matrix-vector kernels specialize (1..8), then groups of 8.
    for (int64_t nt = 1; nt <= 8; ++nt) shapes.push_back({2048, 37 + nt, nt, 0, 0});
    shapes.push_back({k, 1, 1, 0, 0});
    shapes.push_back({4352, 67, 1, 0, 0});       // 17 super-blocks: a partial second stage
    shapes.push_back({14336 / 2, 9, 3, 0, 0});   // several stages, 28 super-blocks
    shapes.push_back({k * 3, 130, 5, 0, 0});     // 768: Q6_K/Q8_0 rows not 16-byte aligned
    shapes.push_back({k * 3, 131, 1, 0, 0});     // one token, rows shorter than a stage (idle threads)
    shapes.push_back({k * 3, 10, 1, 16, 2});     // ... padded rows at a 2-byte offset
    shapes.push_back({k, 11, 9, 0, 0});          // 8 + 1 tokens
    shapes.push_back({k * 2, 5, 13, 16, 0});     // padded rows, 8 + 5 tokens
    shapes.push_back({k * 2, 9, 3, 0, 2});       // W at a 2-byte offset
    shapes.push_back({k * 2, 9, 20, 0, 2});      // ... with many tokens (no GEMM: dp4a groups)
    shapes.push_back({96, 33, 16, 0, 0});        // n_in % 64 != 0: no GEMM (block-32 types only)
    // Prefill: the tensor-core GEMM (partial tiles in both dimensions, split-K and not).
    shapes.push_back({k, 130, 16, 0, 0});
    shapes.push_back({512, 7, 17, 0, 0});
    shapes.push_back({2048, 200, 40, 0, 0});
    shapes.push_back({1024, 129, 130, 0, 0});
    shapes.push_back({256, 16900, 16, 0, 0});    // 133 tiles: no split
    if (type == QuantType::mxfp4) shapes.push_back({k * 2, 9, 3, 0, 1});  // 17-byte blocks: W at an odd address
    if (bs == 1) {  // F16, BF16, F32: odd widths (float matrix-vector, generic kernel)
        shapes.push_back({1, 3, 2, 0, 0});
        shapes.push_back({37, 19, 3, 0, 0});
        shapes.push_back({40, 19, 9, 0, 0});
        shapes.push_back({1000, 8, 20, 0, 0});   // n_in % 32 != 0: no GEMM
    }
    uint32_t seed = 1;
    auto run = [&](const std::vector<Shape>& list, const char* mode) {
    for (const Shape& sh : list) {
        if (sh.n_in % bs != 0) continue;
        SCOPED_TRACE(testing::Message() << quant::type_name(type) << " n_in " << sh.n_in << " n_out " << sh.n_out
                                        << " n_tokens " << sh.n_tokens << " pad " << sh.row_pad << " offset "
                                        << sh.w_offset << " HEARTH_CUDA_BLAS " << mode);
        const Worst wst = check_shape(dev, stream, type, sh, seed);
        seed += 2;
        if (HasFailure()) return;
        const size_t row_bytes = quant::row_size(type, sh.n_in) + sh.row_pad;
        const char* path = path_of(type, sh, row_bytes) == Path::gemm ? "gemm" :
                           path_of(type, sh, row_bytes) == Path::dp4a ? "dp4a" : "f16";
        std::printf("[ info ] %-4s %-4s %5lld x %5lld x %3lld (BLAS %s): worst err/tol vs model %.3f, vs ref bound "
                    "%.3f (|err|/sum|w*x| %.1e)\n",
                    quant::type_name(type), path, (long long)sh.n_in, (long long)sh.n_out, (long long)sh.n_tokens,
                    mode, wst.model, wst.ref, wst.ref_abs);
    }
    };
    run(shapes, "default");
    // The prefill shapes on each path matmul_cuda can take, whatever its shape rule picks
    // (HEARTH_CUDA_BLAS=0: the hand-written GEMM; all: cuBLAS on f16 weights dequantized by the
    // GEMM's tile code), with longer prompts, padded rows, and cuBLAS with W cut into chunks of
    // 128 rows (HEARTH_CUDA_BLAS_CHUNK_ROWS). Both paths multiply f16 weights and f16 activations
    // with f32 sums: the same model and tolerance.
    const std::vector<Shape> prefill = {{k, 130, 16, 0, 0},    {2048, 200, 40, 0, 0},   {1024, 129, 130, 0, 0},
                                        {1024, 129, 165, 0, 0}, {k * 2, 40, 129, 16, 0}, {512, 300, 256, 0, 0}};
    for (const char* mode : {"0", "all"}) {
        setenv("HEARTH_CUDA_BLAS", mode, 1);
        run(prefill, mode);
        unsetenv("HEARTH_CUDA_BLAS");
        if (HasFailure()) return;
    }
    setenv("HEARTH_CUDA_BLAS", "all", 1);
    setenv("HEARTH_CUDA_BLAS_CHUNK_ROWS", "128", 1);
    run({{1024, 300, 130, 0, 0}}, "all, chunks of 128 rows");
    unsetenv("HEARTH_CUDA_BLAS_CHUNK_ROWS");
    unsetenv("HEARTH_CUDA_BLAS");
}

// A prefill matmul on the cuBLAS path captured into a CUDA graph (after one eager call, which
// creates the stream's handle) replays with the eager call's bits.
TEST(CudaMatmul, BlasPathReplaysFromAGraph) {
    CUDA_OPEN_DEVICE_OR_SKIP(dev);
    cuda::Stream stream(dev);
    const QuantType type = QuantType::q4_k;
    const int64_t n_in = 1024, n_out = 384, n_tokens = 200;
    setenv("HEARTH_CUDA_BLAS", "all", 1);
    const size_t row_bytes = quant::row_size(type, n_in);
    const auto wf = random_floats((size_t)n_in * n_out, 91, 0.05f);
    std::vector<std::byte> w(row_bytes * n_out);
    for (int64_t o = 0; o < n_out; ++o) quant::traits(type).quantize_row(wf.data() + o * n_in, w.data() + o * row_bytes, n_in);
    const auto x = random_floats((size_t)n_in * n_tokens, 92, 1.0f);
    auto wd = cuda::DeviceBuffer::allocate(dev, w.size() + 16);
    auto xd = cuda::DeviceBuffer::allocate(dev, x.size() * 4);
    auto yd = cuda::DeviceBuffer::allocate(dev, n_out * n_tokens * 4);
    ASSERT_TRUE(wd.ok() && xd.ok() && yd.ok());
    wd->upload(stream, w.data(), w.size());
    xd->upload(stream, x.data(), x.size() * 4);
    stream.scratch(matmul_cuda_scratch_bytes(type, n_in, n_tokens));  // reserved before capture
    auto call = [&] {
        matmul_cuda(stream, type, wd->as<std::byte>(), row_bytes, xd->as<float>(), yd->as<float>(), n_in, n_out, n_tokens);
    };
    call();
    std::vector<float> eager(n_out * n_tokens), replay(n_out * n_tokens);
    yd->download(stream, eager.data(), eager.size() * 4);
    ASSERT_TRUE(stream.synchronize().ok());
    const std::vector<float> poison(n_out * n_tokens, std::nanf(""));
    yd->upload(stream, poison.data(), poison.size() * 4);
    ASSERT_TRUE(stream.synchronize().ok());
    cuda::Graph g;
    ASSERT_TRUE(g.begin_capture(stream));
    call();
    ASSERT_TRUE(g.end_capture(stream));
    ASSERT_TRUE(g.launch(stream));
    yd->download(stream, replay.data(), replay.size() * 4);
    const Status st = stream.synchronize();
    unsetenv("HEARTH_CUDA_BLAS");
    ASSERT_TRUE(st.ok()) << st.message();
    EXPECT_EQ(0, std::memcmp(eager.data(), replay.data(), eager.size() * 4));
}

INSTANTIATE_TEST_SUITE_P(Types, CudaMatmulTest,
                         ::testing::Values(QuantType::f16, QuantType::q8_0, QuantType::q4_0, QuantType::q4_k,
                                           QuantType::q6_k, QuantType::q5_k, QuantType::iq4_xs, QuantType::mxfp4,
                                           QuantType::bf16, QuantType::q5_0, QuantType::q5_1, QuantType::q4_1,
                                           QuantType::iq4_nl, QuantType::q2_k, QuantType::q3_k, QuantType::f32),
                         [](const auto& info) { return std::string(quant::type_name(info.param)); });

// The two-step form (quantize once, multiply several matrices) gives the same bits as matmul_cuda.
TEST(CudaMatmulQ8, TwoStepEqualsOneStep) {
    CUDA_OPEN_DEVICE_OR_SKIP(dev);
    cuda::Stream stream(dev);
    const int64_t n_in = 4096, n_out = 300, n_tokens = 11;
    for (QuantType type : {QuantType::q4_k, QuantType::q6_k}) {
        const auto& tr = quant::traits(type);
        const size_t row_bytes = quant::row_size(type, n_in);
        const auto wf = random_floats((size_t)n_in * n_out, 5, 0.05f);
        std::vector<std::byte> w(row_bytes * n_out);
        for (int64_t o = 0; o < n_out; ++o) tr.quantize_row(wf.data() + o * n_in, w.data() + o * row_bytes, n_in);
        const auto x = random_floats((size_t)n_in * n_tokens, 6, 1.0f);
        auto wd = cuda::DeviceBuffer::allocate(dev, w.size());
        auto xd = cuda::DeviceBuffer::allocate(dev, x.size() * 4);
        auto qd = cuda::DeviceBuffer::allocate(dev, activation_q8_bytes(n_in, n_tokens));
        auto y1 = cuda::DeviceBuffer::allocate(dev, n_out * n_tokens * 4);
        auto y2 = cuda::DeviceBuffer::allocate(dev, n_out * n_tokens * 4);
        ASSERT_TRUE(wd.ok() && xd.ok() && qd.ok() && y1.ok() && y2.ok());
        wd->upload(stream, w.data(), w.size());
        xd->upload(stream, x.data(), x.size() * 4);
        matmul_cuda(stream, type, wd->as<std::byte>(), row_bytes, xd->as<float>(), y1->as<float>(), n_in, n_out, n_tokens);
        quantize_activations_cuda(stream, xd->as<float>(), qd->data(), n_in, n_tokens);
        matmul_cuda_q8(stream, type, wd->as<std::byte>(), row_bytes, qd->data(), y2->as<float>(), n_in, n_out, n_tokens);
        std::vector<float> a(n_out * n_tokens), b(n_out * n_tokens);
        y1->download(stream, a.data(), a.size() * 4);
        y2->download(stream, b.data(), b.size() * 4);
        ASSERT_TRUE(stream.synchronize().ok()) << dev.status().message();
        EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * 4)) << quant::type_name(type);
    }
}

// Batch invariance of the int8 path (matmul_cuda_q8, every token count): a token's outputs are
// bitwise the same as when it is multiplied alone, for every batch size 1..64 and at any
// position in the batch. Shapes cover one chain per row (odd tails) and sums split over 2
// (misaligned rows), 4 and 8 chains (thread-block clusters); 30000 x 256 has more 64-row
// blocks than fit on the device at once, where the kernel changes with the token count (Q4_0,
// Q4_K: the lean kernel up to 32 tokens, 128-row blocks from 33 on).
class CudaMatmulBatchTest : public ::testing::TestWithParam<QuantType> {};

TEST_P(CudaMatmulBatchTest, TokenResultDoesNotDependOnTheBatch) {
    CUDA_OPEN_DEVICE_OR_SKIP(dev);
    cuda::Stream stream(dev);
    const QuantType type = GetParam();
    const auto& tr = quant::traits(type);
    struct BShape { int64_t n_in, n_out; size_t w_offset; };
    const BShape shapes[] = {{4096, 1024, 0}, {2048, 300, 0}, {768, 77, 2}, {4096, 200, 0}, {96, 33, 0},
                             {2048, 4500, 0}, {256, 30000, 0}};
    constexpr int64_t kTok = 64;
    uint32_t seed = 100;
    for (const BShape& sh : shapes) {
        if (sh.n_in % tr.block_size != 0) continue;
        SCOPED_TRACE(testing::Message() << quant::type_name(type) << " n_in " << sh.n_in << " n_out " << sh.n_out
                                        << " offset " << sh.w_offset);
        const size_t row_bytes = quant::row_size(type, sh.n_in);
        const auto wf = random_floats((size_t)sh.n_in * sh.n_out, seed++, 0.05f);
        std::vector<std::byte> w(sh.w_offset + row_bytes * sh.n_out);
        for (int64_t o = 0; o < sh.n_out; ++o)
            tr.quantize_row(wf.data() + o * sh.n_in, w.data() + sh.w_offset + o * row_bytes, sh.n_in);
        auto x = random_floats((size_t)sh.n_in * kTok, seed++, 1.0f);
        for (size_t i = 0; i < x.size(); i += 97) x[i] *= 6.0f;
        auto wd = cuda::DeviceBuffer::allocate(dev, (w.size() + 15) & ~(size_t)15);
        auto xd = cuda::DeviceBuffer::allocate(dev, x.size() * sizeof(float));
        auto qd = cuda::DeviceBuffer::allocate(dev, activation_q8_bytes(sh.n_in, kTok));
        auto yd = cuda::DeviceBuffer::allocate(dev, (size_t)sh.n_out * kTok * sizeof(float));
        ASSERT_TRUE(wd.ok() && xd.ok() && qd.ok() && yd.ok());
        wd->upload(stream, w.data(), w.size());
        xd->upload(stream, x.data(), x.size() * sizeof(float));
        const std::byte* wp = wd->as<std::byte>() + sh.w_offset;
        auto run = [&](int64_t first, int64_t n, std::vector<float>& out) {
            std::vector<float> poison((size_t)sh.n_out * n, std::nanf(""));
            yd->upload(stream, poison.data(), poison.size() * sizeof(float));
            quantize_activations_cuda(stream, xd->as<float>() + first * sh.n_in, qd->data(), sh.n_in, n);
            matmul_cuda_q8(stream, type, wp, row_bytes, qd->data(), yd->as<float>(), sh.n_in, sh.n_out, n);
            out.resize((size_t)sh.n_out * n);
            yd->download(stream, out.data(), out.size() * sizeof(float));
            const Status st = stream.synchronize();
            ASSERT_TRUE(st.ok()) << st.message();
        };
        std::vector<float> alone((size_t)sh.n_out * kTok), y;
        for (int64_t t = 0; t < kTok; ++t) {
            ASSERT_NO_FATAL_FAILURE(run(t, 1, y));
            for (int64_t o = 0; o < sh.n_out; ++o) ASSERT_TRUE(std::isfinite(y[o])) << "token " << t << " row " << o;
            std::copy(y.begin(), y.end(), alone.begin() + t * sh.n_out);
        }
        int64_t mismatches = 0;
        for (int64_t n = 1; n <= kTok; ++n) {
            const int64_t first = (n * 37) % (kTok - n + 1);  // the batch's tokens: first .. first + n - 1
            ASSERT_NO_FATAL_FAILURE(run(first, n, y));
            for (int64_t k = 0; k < n; ++k) {
                if (std::memcmp(y.data() + k * sh.n_out, alone.data() + (first + k) * sh.n_out, sh.n_out * sizeof(float)) != 0) {
                    ADD_FAILURE() << "token " << first + k << " at position " << k << " of a batch of " << n
                                  << " differs from the token alone";
                    if (++mismatches > 3) return;
                }
            }
        }
        std::printf("[ info ] %-4s %5lld x %5lld (%d chain(s)): batches of 1..64 bitwise equal to single tokens\n",
                    quant::type_name(type), (long long)sh.n_out, (long long)sh.n_in,
                    matmul_cuda_q8_chains(dev, sh.n_in, sh.n_out));
    }
}

INSTANTIATE_TEST_SUITE_P(Types, CudaMatmulBatchTest,
                         ::testing::Values(QuantType::q8_0, QuantType::q4_0, QuantType::q4_k, QuantType::q6_k),
                         [](const auto& info) { return std::string(quant::type_name(info.param)); });

// The dp4a kernels (MatmulQ8Kernel::dp4a: the single-stream decode path) compute the same exact
// model as the tensor-core kernel up to f32 rounding: |a - b| <= 2e-4 * sum |w_i xg_i|. 14336
// inputs: one token's rows in two stages (activations kept in registers for both).
TEST(CudaMatmulQ8, Dp4aKernelsAgreeWithTensorCoreKernel) {
    CUDA_OPEN_DEVICE_OR_SKIP(dev);
    cuda::Stream stream(dev);
    const int64_t n_out = 70;
    for (const int64_t n_in : {int64_t{2048}, int64_t{14336}})
    for (QuantType type : {QuantType::q8_0, QuantType::q4_0, QuantType::q4_k, QuantType::q6_k}) {
        for (int64_t n_tokens : {1, 3, 8, 11}) {
            if (n_in > 2048 && n_tokens > 3) continue;
            SCOPED_TRACE(testing::Message() << quant::type_name(type) << " n_in " << n_in << " tokens " << n_tokens);
            const auto& tr = quant::traits(type);
            const size_t row_bytes = quant::row_size(type, n_in);
            const auto wf = random_floats((size_t)n_in * n_out, 9, 0.05f);
            std::vector<std::byte> w(row_bytes * n_out);
            for (int64_t o = 0; o < n_out; ++o) tr.quantize_row(wf.data() + o * n_in, w.data() + o * row_bytes, n_in);
            const auto x = random_floats((size_t)n_in * n_tokens, 10, 1.0f);
            auto wd = cuda::DeviceBuffer::allocate(dev, w.size());
            auto xd = cuda::DeviceBuffer::allocate(dev, x.size() * 4);
            auto qd = cuda::DeviceBuffer::allocate(dev, activation_q8_bytes(n_in, n_tokens));
            auto y1 = cuda::DeviceBuffer::allocate(dev, n_out * n_tokens * 4);
            auto y2 = cuda::DeviceBuffer::allocate(dev, n_out * n_tokens * 4);
            ASSERT_TRUE(wd.ok() && xd.ok() && qd.ok() && y1.ok() && y2.ok());
            wd->upload(stream, w.data(), w.size());
            xd->upload(stream, x.data(), x.size() * 4);
            quantize_activations_cuda(stream, xd->as<float>(), qd->data(), n_in, n_tokens);
            matmul_cuda_q8(stream, type, wd->as<std::byte>(), row_bytes, qd->data(), y1->as<float>(), n_in, n_out,
                           n_tokens, MatmulQ8Kernel::mma);
            matmul_cuda_q8(stream, type, wd->as<std::byte>(), row_bytes, qd->data(), y2->as<float>(), n_in, n_out,
                           n_tokens, MatmulQ8Kernel::dp4a);
            std::vector<float> a(n_out * n_tokens), b(n_out * n_tokens);
            y1->download(stream, a.data(), a.size() * 4);
            y2->download(stream, b.data(), b.size() * 4);
            ASSERT_TRUE(stream.synchronize().ok()) << dev.status().message();
            const auto xg = device_q8_activations(x, n_in);
            std::vector<float> wrow(n_in);
            for (int64_t o = 0; o < n_out; ++o) {
                tr.dequantize_row(w.data() + o * row_bytes, wrow.data(), n_in);
                for (int64_t t = 0; t < n_tokens; ++t) {
                    double mag = 0;
                    for (int64_t i = 0; i < n_in; ++i) mag += std::fabs((double)wrow[i] * xg[t * n_in + i]);
                    ASSERT_LE(std::fabs((double)a[t * n_out + o] - b[t * n_out + o]), 2e-4 * mag + 1e-30)
                        << "row " << o << " token " << t << ": mma " << a[t * n_out + o] << " dp4a " << b[t * n_out + o];
                }
            }
        }
    }
}

// A random quantized matrix on the device, `offset` bytes into its (16-byte padded) buffer.
struct DevMatrix {
    cuda::DeviceBuffer buf;
    MatmulQ8Matrix m;
};
DevMatrix make_matrix(cuda::Device& dev, cuda::Stream& stream, QuantType type, int64_t n_in, int64_t n_out,
                      uint32_t seed, size_t offset = 0) {
    const auto& tr = quant::traits(type);
    const size_t row_bytes = quant::row_size(type, n_in);
    const auto wf = random_floats((size_t)n_in * n_out, seed, 0.05f);
    std::vector<std::byte> w(offset + row_bytes * n_out, std::byte{0x5a});
    for (int64_t o = 0; o < n_out; ++o) tr.quantize_row(wf.data() + o * n_in, w.data() + offset + o * row_bytes, n_in);
    auto buf = cuda::DeviceBuffer::allocate(dev, ((w.size() + 15) & ~(size_t)15) + 16);
    EXPECT_TRUE(buf.ok());
    buf->upload(stream, w.data(), w.size());
    DevMatrix d{std::move(buf).value(), {}};
    d.m = MatmulQ8Matrix{type, d.buf.as<std::byte>() + offset, row_bytes, n_out};
    return d;
}

template <class T>
std::vector<T> download(cuda::Stream& stream, const cuda::DeviceBuffer& b, size_t n) {
    std::vector<T> v(n);
    b.download(stream, v.data(), n * sizeof(T));
    EXPECT_TRUE(stream.synchronize().ok());
    return v;
}

// One grouped launch (matmul_cuda_q8_grouped) gives every matrix the bits of its own dp4a call:
// odd row counts (groups of rows straddle the matrices), a matrix at a 2-byte offset, mixed types
// in one call (one launch per type), every token count of the kernel and a second group of 8;
// on a stream with programmatic launches.
TEST(CudaMatmulQ8, GroupedLaunchEqualsSeparateLaunches) {
    CUDA_OPEN_DEVICE_OR_SKIP(dev);
    cuda::Stream stream(dev);
    stream.set_programmatic(true);
    struct Group { QuantType types[3]; int64_t rows[3]; int n; int64_t n_in; size_t offset1; };
    const Group groups[] = {
        {{QuantType::q4_k, QuantType::q4_k, QuantType::q4_k}, {37, 5, 130}, 3, 4096, 0},
        {{QuantType::q4_k, QuantType::q4_k, QuantType::q6_k}, {64, 16, 16}, 3, 2048, 0},  // Q4_K_M's Q, K, V(Q6_K)
        {{QuantType::q6_k, QuantType::q6_k, QuantType::q6_k}, {9, 1, 33}, 3, 768, 2},     // rows not 16-byte aligned
        {{QuantType::q8_0, QuantType::q8_0, QuantType::q8_0}, {3, 70, 2}, 3, 1088, 2},
        {{QuantType::q4_0, QuantType::q4_0, QuantType::q4_0}, {130, 7, 1}, 2, 512, 0},
        {{QuantType::q4_k, QuantType::q8_0, QuantType::q4_k}, {40, 24, 21}, 3, 2304, 0},  // 0 and 2 share a launch
        {{QuantType::q4_k, QuantType::q4_k, QuantType::q4_k}, {9, 3, 1}, 2, 14336, 0},    // two stages per row
        {{QuantType::q6_k, QuantType::q6_k, QuantType::q6_k}, {5, 12, 1}, 2, 12288, 0},
        {{QuantType::q5_k, QuantType::q5_k, QuantType::q6_k}, {64, 16, 16}, 3, 2048, 0},  // Q5_K_M's Q, K, V(Q6_K)
        {{QuantType::q5_k, QuantType::q5_k, QuantType::q5_k}, {9, 3, 1}, 2, 14336, 0},    // two stages per row
        {{QuantType::iq4_xs, QuantType::iq4_xs, QuantType::iq4_xs}, {37, 5, 130}, 3, 4096, 2},  // rows not 8-byte aligned
        {{QuantType::mxfp4, QuantType::mxfp4, QuantType::mxfp4}, {9, 3, 33}, 3, 1088, 1},       // W at an odd address
        {{QuantType::q2_k, QuantType::q3_k, QuantType::q2_k}, {40, 24, 21}, 3, 2304, 0},
        {{QuantType::q5_0, QuantType::q5_1, QuantType::q4_1}, {33, 7, 20}, 3, 1088, 2},
        {{QuantType::iq4_nl, QuantType::iq4_nl, QuantType::iq4_nl}, {130, 7, 1}, 2, 512, 0},
    };
    uint32_t seed = 500;
    for (const Group& g : groups) {
        for (const int64_t n_tokens : {int64_t{1}, int64_t{2}, int64_t{3}, int64_t{4}, int64_t{5}, int64_t{8}, int64_t{11}}) {
            SCOPED_TRACE(testing::Message() << "group " << quant::type_name(g.types[0]) << " n_in " << g.n_in << " rows "
                                            << g.rows[0] << "/" << g.rows[1] << "/" << g.rows[2] << " tokens "
                                            << n_tokens);
            std::vector<DevMatrix> mats;
            for (int i = 0; i < g.n; ++i)
                mats.push_back(make_matrix(dev, stream, g.types[i], g.n_in, g.rows[i], seed++, i == 1 ? g.offset1 : 0));
            const auto x = random_floats((size_t)g.n_in * n_tokens, seed++, 1.0f);
            auto xd = cuda::DeviceBuffer::allocate(dev, x.size() * 4);
            auto qd = cuda::DeviceBuffer::allocate(dev, activation_q8_bytes(g.n_in, n_tokens));
            ASSERT_TRUE(xd.ok() && qd.ok());
            xd->upload(stream, x.data(), x.size() * 4);
            std::vector<cuda::DeviceBuffer> ya, yb;
            for (int i = 0; i < g.n; ++i) {
                const std::vector<float> poison((size_t)g.rows[i] * n_tokens, std::nanf(""));
                for (auto* v : {&ya, &yb}) {
                    v->push_back(cuda::DeviceBuffer::allocate(dev, poison.size() * 4).value());
                    v->back().upload(stream, poison.data(), poison.size() * 4);
                }
            }
            quantize_activations_cuda(stream, xd->as<float>(), qd->data(), g.n_in, n_tokens);
            for (int i = 0; i < g.n; ++i)
                matmul_cuda_q8(stream, g.types[i], mats[i].m.w, mats[i].m.row_bytes, qd->data(), ya[i].as<float>(),
                               g.n_in, g.rows[i], n_tokens, MatmulQ8Kernel::dp4a);
            if (g.n == 3) {
                matmul_cuda_q8_grouped(stream, qd->data(), g.n_in, n_tokens,
                                       {{mats[0].m, yb[0].as<float>()}, {mats[1].m, yb[1].as<float>()},
                                        {mats[2].m, yb[2].as<float>()}});
            } else {
                matmul_cuda_q8_grouped(stream, qd->data(), g.n_in, n_tokens,
                                       {{mats[0].m, yb[0].as<float>()}, {mats[1].m, yb[1].as<float>()}});
            }
            ASSERT_TRUE(stream.synchronize().ok()) << dev.status().message();
            for (int i = 0; i < g.n; ++i) {
                const size_t count = (size_t)g.rows[i] * n_tokens;
                const auto a = download<float>(stream, ya[i], count), b = download<float>(stream, yb[i], count);
                for (size_t k = 0; k < count; ++k) ASSERT_TRUE(std::isfinite(a[k])) << "matrix " << i << " output " << k;
                ASSERT_EQ(0, std::memcmp(a.data(), b.data(), count * 4)) << "matrix " << i;
            }
        }
    }
}

// matmul_mma.cu's numerics on the host, bit for bit: output (row, token) of a matrix whose rows
// are summed in n_chains chains of super-units. `row`: the row's bytes; q: the token's int8
// activations [n_in], ds: its {d, sum of quants} per unit of 32 (as quantize_activations_cuda
// writes them). The unit sums u are the kernel's (matmul_mma.cu's top comment), each product
// rounded once: a0 * S as fmaf(a0, S, 0) (the kernel's fma(a0, 1.5 * 2^23 + S, -a0 * 1.5 * 2^23)
// is that product rounded, +0 for S = 0 as here).
float mma_model(QuantType type, const std::byte* row, const int8_t* q, const float* ds, int64_t n_in, int n_chains) {
    const int64_t n_units = n_in / 32, n_super = (n_units + 7) / 8;
    const auto* b = reinterpret_cast<const uint8_t*>(row);
    auto f16 = [](const uint8_t* p) { return fp16_to_f32((uint16_t)(p[0] | (p[1] << 8))); };
    auto unit = [&](int64_t j, float dx_sum) {
        int code[32];
        float a0 = 0, a1 = 0, m = 0;
        if (type == QuantType::q8_0 || type == QuantType::q4_0) {
            const uint8_t* blk = b + j * (type == QuantType::q8_0 ? 34 : 18);
            a0 = f16(blk);
            for (int i = 0; i < 32; ++i)
                code[i] = type == QuantType::q8_0 ? (int)(int8_t)blk[2 + i] : (int)((blk[2 + i % 16] >> (i < 16 ? 0 : 4)) & 15) - 8;
        } else if (type == QuantType::q4_k) {
            const uint8_t* blk = b + j / 8 * 144;
            const int jj = (int)(j % 8);
            uint8_t sc, mn;
            quant::detail::get_scale_min_k4(jj, blk + 4, &sc, &mn);
            a0 = f16(blk) * (float)sc, m = f16(blk + 2) * (float)mn;
            for (int i = 0; i < 32; ++i) code[i] = (blk[16 + 32 * (jj / 2) + i] >> (4 * (jj % 2))) & 15;
        } else {  // q6_k
            const uint8_t* blk = b + j / 8 * 210;
            const int jj = (int)(j % 8);
            const float d = f16(blk + 208);
            a0 = d * (float)(int8_t)blk[192 + 2 * jj], a1 = d * (float)(int8_t)blk[192 + 2 * jj + 1];
            for (int i = 0; i < 32; ++i) {
                const int e = 32 * jj + i, h = e / 128, k = e % 128 / 32, l = e % 32;
                const int lo = (blk[64 * h + 32 * (k & 1) + l] >> (k >= 2 ? 4 : 0)) & 15;
                code[i] = (lo | (((blk[128 + 32 * h + l] >> (2 * k)) & 3) << 4)) - 32;
            }
        }
        int s0 = 0, s1 = 0;
        for (int i = 0; i < 32; ++i) (i < 16 ? s0 : s1) += code[i] * q[32 * j + i];
        if (type == QuantType::q6_k) return std::fmaf(a0, (float)s0, 0.0f) + std::fmaf(a1, (float)s1, 0.0f);
        const float p = std::fmaf(a0, (float)(s0 + s1), 0.0f);
        return type == QuantType::q4_k ? std::fmaf(-m, dx_sum, p) : p;
    };
    float y = 0.0f;
    for (int c = 0; c < n_chains; ++c) {
        float p = 0.0f;
        for (int64_t su = c * n_super / n_chains; su < (c + 1) * n_super / n_chains; ++su)
            for (int64_t j = 8 * su; j < std::min(8 * su + 8, n_units); ++j) p = std::fmaf(ds[2 * j], unit(j, ds[2 * j + 1]), p);
        y = c == 0 ? p : y + p;
    }
    return y;
}

// The tensor-core kernel's grouped launch (matmul_cuda_q8_grouped, MatmulQ8Kernel::mma), with
// segments of different sizes (odd tile counts, a cluster holding two tiles of the 4160-row
// matrix next to one tile of the 1000-row one), a matrix at a 2-byte offset (Q4_K rows of
// another row stride in the same launch), mixed types (Q4_K_M's Q, K, V(Q6_K): two launches),
// 2, 9, 32, 64 and 70 tokens (two groups) whose first tokens are the same:
//  - MatmulQ8Chains::own: every output bitwise that of the matrix's own matmul_cuda_q8 call;
//  - MatmulQ8Chains::joint: every output bitwise mma_model with the stacked matrix's chain count
//    (matmul_cuda_q8_chains of the launch's summed rows), which the test checks differs from
//    some matrix's own count.
// Both compare every token count against one fixed result per token, so a token's bits are the
// same at every count.
TEST(CudaMatmulQ8, MmaGroupedLaunchEqualsPerMatrixComputation) {
    CUDA_OPEN_DEVICE_OR_SKIP(dev);
    cuda::Stream stream(dev);
    stream.set_programmatic(true);
    struct Group { QuantType types[3]; int64_t rows[3]; size_t offset1; MatmulQ8Chains chains; };
    const int64_t n_in = 2048;  // 8 super-units: chain counts up to 8
    const Group groups[] = {
        {{QuantType::q4_k, QuantType::q4_k, QuantType::q4_k}, {4160, 1000, 1024}, 2, MatmulQ8Chains::own},
        {{QuantType::q6_k, QuantType::q6_k, QuantType::q6_k}, {4160, 1000, 1024}, 0, MatmulQ8Chains::own},
        {{QuantType::q8_0, QuantType::q8_0, QuantType::q8_0}, {4160, 1000, 1024}, 2, MatmulQ8Chains::own},
        {{QuantType::q4_0, QuantType::q4_0, QuantType::q4_0}, {4160, 1000, 1024}, 0, MatmulQ8Chains::own},
        {{QuantType::q4_k, QuantType::q4_k, QuantType::q6_k}, {4096, 1024, 1024}, 0, MatmulQ8Chains::own},
        // Stacked 4096 rows: 4 chains; alone 3072 rows 8 chains, 520 and 504 rows 8.
        {{QuantType::q4_k, QuantType::q4_k, QuantType::q4_k}, {3072, 520, 504}, 2, MatmulQ8Chains::joint},
        {{QuantType::q6_k, QuantType::q6_k, QuantType::q6_k}, {3072, 520, 504}, 0, MatmulQ8Chains::joint},
        {{QuantType::q8_0, QuantType::q8_0, QuantType::q8_0}, {3072, 520, 504}, 2, MatmulQ8Chains::joint},
    };
    const int64_t kMaxTok = 70, counts[] = {2, 9, 32, 64, 70};
    uint32_t seed = 700;
    for (const Group& g : groups) {
        const bool joint = g.chains == MatmulQ8Chains::joint;
        SCOPED_TRACE(testing::Message() << quant::type_name(g.types[0]) << "/" << quant::type_name(g.types[2]) << " rows "
                                        << g.rows[0] << "/" << g.rows[1] << "/" << g.rows[2]
                                        << (joint ? " joint" : " own") << " chains");
        std::vector<DevMatrix> mats;
        for (int i = 0; i < 3; ++i)
            mats.push_back(make_matrix(dev, stream, g.types[i], n_in, g.rows[i], seed++, i == 1 ? g.offset1 : 0));
        auto x = random_floats((size_t)n_in * kMaxTok, seed++, 1.0f);
        for (size_t i = 0; i < x.size(); i += 97) x[i] *= 6.0f;
        auto xd = cuda::DeviceBuffer::allocate(dev, x.size() * 4);
        auto qd = cuda::DeviceBuffer::allocate(dev, activation_q8_bytes(n_in, kMaxTok));
        ASSERT_TRUE(xd.ok() && qd.ok());
        xd->upload(stream, x.data(), x.size() * 4);
        std::vector<cuda::DeviceBuffer> ya, yb;
        for (int i = 0; i < 3; ++i) {
            ya.push_back(cuda::DeviceBuffer::allocate(dev, (size_t)g.rows[i] * kMaxTok * 4).value());
            yb.push_back(cuda::DeviceBuffer::allocate(dev, (size_t)g.rows[i] * kMaxTok * 4).value());
        }
        // The fixed result per (matrix, token): the separate calls at kMaxTok tokens (own; batch-
        // invariant, TokenResultDoesNotDependOnTheBatch), or the host model (joint).
        std::vector<std::vector<float>> want(3);
        quantize_activations_cuda(stream, xd->as<float>(), qd->data(), n_in, kMaxTok);
        if (joint) {
            // The activations as quantize_activations_cuda lays them out (matmul_kernels.cuh's
            // ActQ8): int8 [tokens][n_in], then {d, sum} float pairs from the next 16-byte boundary.
            const auto act = download<std::byte>(stream, *qd, activation_q8_bytes(n_in, kMaxTok));
            const auto* aq = reinterpret_cast<const int8_t*>(act.data());
            std::vector<float> ads((size_t)n_in / 32 * kMaxTok * 2);
            std::memcpy(ads.data(), act.data() + ((n_in * kMaxTok + 15) & ~(int64_t)15), ads.size() * 4);
            const int chains = matmul_cuda_q8_chains(dev, n_in, g.rows[0] + g.rows[1] + g.rows[2]);
            bool differs = false;
            for (int i = 0; i < 3; ++i) differs = differs || chains != matmul_cuda_q8_chains(dev, n_in, g.rows[i]);
            if (dev.info().cc_major >= 9) {
                EXPECT_TRUE(differs) << "the case does not separate joint from own chains";
            }
            for (int i = 0; i < 3; ++i) {
                const size_t row_bytes = mats[i].m.row_bytes, off = i == 1 ? g.offset1 : 0;
                const auto w = download<std::byte>(stream, mats[i].buf, off + row_bytes * g.rows[i]);
                want[i].resize((size_t)g.rows[i] * kMaxTok);
                for (int64_t o = 0; o < g.rows[i]; ++o)
                    for (int64_t t = 0; t < kMaxTok; ++t)
                        want[i][t * g.rows[i] + o] = mma_model(g.types[i], w.data() + off + o * row_bytes, aq + t * n_in,
                                                               ads.data() + t * (n_in / 32) * 2, n_in, chains);
            }
        } else {
            for (int i = 0; i < 3; ++i) {
                matmul_cuda_q8(stream, g.types[i], mats[i].m.w, mats[i].m.row_bytes, qd->data(), ya[i].as<float>(), n_in,
                               g.rows[i], kMaxTok, MatmulQ8Kernel::mma);
                want[i] = download<float>(stream, ya[i], (size_t)g.rows[i] * kMaxTok);
            }
        }
        ASSERT_TRUE(stream.synchronize().ok()) << dev.status().message();
        for (const int64_t n : counts) {
            SCOPED_TRACE(testing::Message() << n << " tokens");
            for (int i = 0; i < 3; ++i) {
                const std::vector<float> poison((size_t)g.rows[i] * n, std::nanf(""));
                yb[i].upload(stream, poison.data(), poison.size() * 4);
            }
            quantize_activations_cuda(stream, xd->as<float>(), qd->data(), n_in, n);
            matmul_cuda_q8_grouped(stream, qd->data(), n_in, n,
                                   {{mats[0].m, yb[0].as<float>()}, {mats[1].m, yb[1].as<float>()},
                                    {mats[2].m, yb[2].as<float>()}},
                                   MatmulQ8Kernel::mma, g.chains);
            ASSERT_TRUE(stream.synchronize().ok()) << dev.status().message();
            for (int i = 0; i < 3; ++i) {
                const size_t count = (size_t)g.rows[i] * n;
                const auto b = download<float>(stream, yb[i], count);
                for (size_t k = 0; k < count; ++k) {
                    ASSERT_TRUE(std::isfinite(want[i][k])) << "matrix " << i << " output " << k;
                    ASSERT_EQ(0, std::memcmp(&want[i][k], &b[k], 4))
                        << "matrix " << i << " row " << k % g.rows[i] << " token " << k / g.rows[i] << ": grouped "
                        << b[k] << ", " << (joint ? "model " : "alone ") << want[i][k];
                }
            }
        }
        std::printf("[ info ] %s/%s %lld/%lld/%lld rows, %s chains: grouped launches bitwise equal at 2..70 tokens\n",
                    quant::type_name(g.types[0]), quant::type_name(g.types[2]), (long long)g.rows[0], (long long)g.rows[1],
                    (long long)g.rows[2], joint ? "joint" : "own");
    }
}

// matmul_cuda_q8_experts gives each chosen expert the bits of its own single-token dp4a call:
// gate and up (two stacks of one type, shared input) and down (each expert's own input token),
// ids read from device memory, repeated and out-of-order ids, one and two stages per row.
TEST(CudaMatmulQ8, ExpertLaunchEqualsPerExpertLaunches) {
    CUDA_OPEN_DEVICE_OR_SKIP(dev);
    cuda::Stream stream(dev);
    stream.set_programmatic(true);
    struct Case { QuantType type; int64_t n_in, rows; int n_expert; std::vector<int32_t> ids; };
    const Case cases[] = {
        {QuantType::q4_k, 2048, 96, 8, {5, 0, 7}},
        {QuantType::q8_0, 1088, 64, 4, {3, 1}},
        {QuantType::q6_k, 768, 40, 6, {2, 5, 0, 4}},
        {QuantType::q4_k, 768, 44, 8, {6, 1, 3, 7, 0, 2, 5, 4}},  // 768 inputs: Qwen3-30B-A3B's expert down
        {QuantType::q5_k, 14336, 8, 3, {1, 2, 0}},
        {QuantType::mxfp4, 1088, 36, 5, {4, 0}},
        {QuantType::q4_0, 512, 132, 2, {1}},
    };
    uint32_t seed = 900;
    for (const Case& c : cases) {
        SCOPED_TRACE(testing::Message() << quant::type_name(c.type) << " n_in " << c.n_in << " rows " << c.rows);
        const int k = (int)c.ids.size();
        // Two stacks (gate and up) of n_expert matrices each.
        DevMatrix stacks[2] = {make_matrix(dev, stream, c.type, c.n_in, c.rows * c.n_expert, seed++),
                               make_matrix(dev, stream, c.type, c.n_in, c.rows * c.n_expert, seed++)};
        auto ids = cuda::DeviceBuffer::allocate(dev, c.ids.size() * 4).value();
        ids.upload(stream, c.ids.data(), c.ids.size() * 4);
        for (const bool per_expert : {false, true}) {
            const int64_t n_act = per_expert ? k : 1;
            const auto x = random_floats((size_t)c.n_in * n_act, seed++, 1.0f);
            auto xd = cuda::DeviceBuffer::allocate(dev, x.size() * 4).value();
            auto qd = cuda::DeviceBuffer::allocate(dev, activation_q8_bytes(c.n_in, n_act)).value();
            auto q1 = cuda::DeviceBuffer::allocate(dev, activation_q8_bytes(c.n_in, 1)).value();
            xd.upload(stream, x.data(), x.size() * 4);
            quantize_activations_cuda(stream, xd.as<float>(), qd.data(), c.n_in, n_act);
            const std::vector<float> poison((size_t)c.rows * k, std::nanf(""));
            std::vector<cuda::DeviceBuffer> got, want;
            for (int i = 0; i < 4; ++i) {
                auto& v = i < 2 ? got : want;
                v.push_back(cuda::DeviceBuffer::allocate(dev, poison.size() * 4).value());
                v.back().upload(stream, poison.data(), poison.size() * 4);
            }
            MatmulQ8Matrix m0 = stacks[0].m, m1 = stacks[1].m;
            m0.n_out = m1.n_out = c.rows;  // rows per expert
            matmul_cuda_q8_experts(stream, qd.data(), c.n_in, ids.as<int32_t>(), k, per_expert,
                                   {{m0, got[0].as<float>()}, {m1, got[1].as<float>()}});
            // Expert j alone: its matrix over its input token (quantized alone: the same codes).
            for (int j = 0; j < k; ++j) {
                quantize_activations_cuda(stream, xd.as<float>() + (per_expert ? j * c.n_in : 0), q1.data(), c.n_in, 1);
                for (int st = 0; st < 2; ++st)
                    matmul_cuda_q8(stream, c.type, stacks[st].m.w + (size_t)c.ids[j] * c.rows * stacks[st].m.row_bytes,
                                   stacks[st].m.row_bytes, q1.data(), want[st].as<float>() + j * c.rows, c.n_in, c.rows, 1,
                                   MatmulQ8Kernel::dp4a);
            }
            ASSERT_TRUE(stream.synchronize().ok()) << dev.status().message();
            for (int st = 0; st < 2; ++st) {
                const auto a = download<float>(stream, got[st], poison.size());
                const auto b = download<float>(stream, want[st], poison.size());
                for (size_t i = 0; i < a.size(); ++i) ASSERT_TRUE(std::isfinite(a[i])) << "stack " << st << " output " << i;
                ASSERT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * 4)) << "stack " << st << " per_expert " << per_expert;
            }
        }
    }
    // Bad arguments are a recorded error, not a launch: experts of 6 rows (a row group would
    // span two experts), no ids.
    auto bad_dev = cuda::Device::open(0);
    ASSERT_TRUE(bad_dev.ok());
    cuda::Stream bad(**bad_dev);
    DevMatrix m6 = make_matrix(**bad_dev, bad, QuantType::q8_0, 64, 12, 1);
    m6.m.n_out = 6;
    auto ids = cuda::DeviceBuffer::allocate(**bad_dev, 8).value();
    auto xq = cuda::DeviceBuffer::allocate(**bad_dev, activation_q8_bytes(64, 1)).value();
    auto y = cuda::DeviceBuffer::allocate(**bad_dev, 64).value();
    matmul_cuda_q8_experts(bad, xq.data(), 64, ids.as<int32_t>(), 2, false, {{m6.m, y.as<float>()}});
    EXPECT_EQ(bad.synchronize().code(), StatusCode::invalid_argument);
    auto other_dev = cuda::Device::open(0);
    ASSERT_TRUE(other_dev.ok());
    cuda::Stream other(**other_dev);
    DevMatrix m4 = make_matrix(**other_dev, other, QuantType::q8_0, 64, 8, 2);
    m4.m.n_out = 4;
    matmul_cuda_q8_experts(other, xq.data(), 64, nullptr, 2, false, {{m4.m, y.as<float>()}});
    EXPECT_EQ(other.synchronize().code(), StatusCode::invalid_argument);
}

// matmul_cuda_q8_expert_groups: every group's rows get its expert's product. With one
// super-unit per row (n_in 256: matmul_cuda_q8 sums in one chain too) each output is bitwise
// that of matmul_cuda_q8 over the group's rows quantized alone (the same codes); with 2048
// inputs (several chains there) within 1e-4 of the exact product of the same int8 inputs.
// Two stacks of one type and a third of another, experts with no rows, a 70-row expert (two
// groups of 64 + 6), one-row groups, partial row tiles.
TEST(CudaMatmulQ8, ExpertGroupsEqualPerExpertMatmuls) {
    CUDA_OPEN_DEVICE_OR_SKIP(dev);
    cuda::Stream stream(dev);
    stream.set_programmatic(true);
    struct Group { int32_t expert, rows; };
    const std::vector<Group> groups = {{0, 1}, {3, 70}, {4, 17}, {6, 1}};  // experts 1, 2, 5 have none
    const int n_expert = 7;
    struct Case { QuantType a, b; int64_t n_in, rows; };
    const Case cases[] = {
        {QuantType::q4_k, QuantType::q6_k, 256, 72},
        {QuantType::q8_0, QuantType::q4_0, 256, 40},
        {QuantType::q6_k, QuantType::q4_k, 2048, 136},
        {QuantType::q4_0, QuantType::q8_0, 2048, 64},
    };
    // The items: expert, first row, rows (at most 64), 0.
    std::vector<int32_t> items;
    int64_t n_rows = 0;
    int max_rows = 0;
    for (const Group& g : groups) {
        for (int32_t r = 0; r < g.rows; r += kMatmulQ8ExpertGroupRows) {
            const int32_t c = std::min<int32_t>(kMatmulQ8ExpertGroupRows, g.rows - r);
            items.insert(items.end(), {g.expert, (int32_t)n_rows + r, c, 0});
            max_rows = std::max(max_rows, c);
        }
        n_rows += g.rows;
    }
    const int n_items = (int)items.size() / 4;
    auto d_items = cuda::DeviceBuffer::allocate(dev, items.size() * 4).value();
    d_items.upload(stream, items.data(), items.size() * 4);
    uint32_t seed = 1200;
    for (const Case& c : cases) {
        SCOPED_TRACE(testing::Message() << quant::type_name(c.a) << "/" << quant::type_name(c.b) << " n_in " << c.n_in);
        const QuantType types[3] = {c.a, c.a, c.b};
        std::vector<DevMatrix> stacks;
        for (QuantType t : types) stacks.push_back(make_matrix(dev, stream, t, c.n_in, c.rows * n_expert, seed++));
        const auto x = random_floats((size_t)c.n_in * n_rows, seed++, 1.0f);
        auto xd = cuda::DeviceBuffer::allocate(dev, x.size() * 4).value();
        auto qd = cuda::DeviceBuffer::allocate(dev, activation_q8_bytes(c.n_in, n_rows)).value();
        auto q1 = cuda::DeviceBuffer::allocate(dev, activation_q8_bytes(c.n_in, kMatmulQ8ExpertGroupRows)).value();
        xd.upload(stream, x.data(), x.size() * 4);
        quantize_activations_cuda(stream, xd.as<float>(), qd.data(), c.n_in, n_rows);
        const std::vector<float> poison((size_t)c.rows * n_rows, std::nanf(""));
        std::vector<cuda::DeviceBuffer> got, want;
        for (int i = 0; i < 6; ++i) {
            auto& v = i < 3 ? got : want;
            v.push_back(cuda::DeviceBuffer::allocate(dev, poison.size() * 4).value());
            v.back().upload(stream, poison.data(), poison.size() * 4);
        }
        MatmulQ8Matrix m[3];
        for (int st = 0; st < 3; ++st) m[st] = stacks[st].m, m[st].n_out = c.rows;  // rows per expert
        matmul_cuda_q8_expert_groups(stream, qd.data(), c.n_in, n_rows, d_items.as<int32_t>(), n_items, max_rows,
                                     {{m[0], got[0].as<float>()}, {m[1], got[1].as<float>()}, {m[2], got[2].as<float>()}});
        const bool one_chain = matmul_cuda_q8_chains(dev, c.n_in, c.rows) == 1;
        for (int i = 0; i < n_items; ++i) {
            const int32_t e = items[4 * i], r0 = items[4 * i + 1], cnt = items[4 * i + 2];
            quantize_activations_cuda(stream, xd.as<float>() + r0 * c.n_in, q1.data(), c.n_in, cnt);
            for (int st = 0; st < 3; ++st)
                matmul_cuda_q8(stream, types[st], m[st].w + (size_t)e * c.rows * m[st].row_bytes, m[st].row_bytes,
                               q1.data(), want[st].as<float>() + (size_t)r0 * c.rows, c.n_in, c.rows, cnt);
        }
        ASSERT_TRUE(stream.synchronize().ok()) << dev.status().message();
        const auto xg = device_q8_activations(x, c.n_in);
        std::vector<float> wrow((size_t)c.n_in);
        for (int st = 0; st < 3; ++st) {
            const auto a = download<float>(stream, got[st], poison.size());
            const auto b = download<float>(stream, want[st], poison.size());
            for (size_t i = 0; i < a.size(); ++i) ASSERT_TRUE(std::isfinite(a[i])) << "stack " << st << " output " << i;
            if (one_chain) {
                ASSERT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * 4)) << "stack " << st;
                continue;
            }
            // Several chains in matmul_cuda_q8: against the exact product of the int8 inputs.
            std::vector<std::byte> host((size_t)m[st].row_bytes * c.rows * n_expert);
            stacks[st].buf.download(stream, host.data(), host.size());
            ASSERT_TRUE(stream.synchronize().ok());
            int32_t row = 0;
            for (const Group& g : groups) {
                for (int64_t o = 0; o < c.rows; ++o) {
                    quant::traits(types[st]).dequantize_row(host.data() + ((size_t)g.expert * c.rows + o) * m[st].row_bytes,
                                                            wrow.data(), c.n_in);
                    for (int32_t t = row; t < row + g.rows; ++t) {
                        double model = 0, mag = 0;
                        for (int64_t i = 0; i < c.n_in; ++i) {
                            model += (double)wrow[i] * xg[(size_t)t * c.n_in + i];
                            mag += std::fabs((double)wrow[i] * xg[(size_t)t * c.n_in + i]);
                        }
                        ASSERT_LE(std::fabs(a[(size_t)t * c.rows + o] - model), 1e-4 * mag + 1e-30)
                            << "stack " << st << " expert " << g.expert << " row " << o << " token " << t;
                    }
                }
                row += g.rows;
            }
        }
    }
    // Bad arguments are a recorded error, not a launch: groups of more than 64 rows, a type
    // without the tensor-core kernel.
    auto bad_dev = cuda::Device::open(0);
    ASSERT_TRUE(bad_dev.ok());
    cuda::Stream bad(**bad_dev);
    DevMatrix m8 = make_matrix(**bad_dev, bad, QuantType::q8_0, 256, 8, 1);
    auto xq = cuda::DeviceBuffer::allocate(**bad_dev, activation_q8_bytes(256, 65)).value();
    auto y = cuda::DeviceBuffer::allocate(**bad_dev, 8 * 65 * 4).value();
    auto it = cuda::DeviceBuffer::allocate(**bad_dev, 16).value();
    matmul_cuda_q8_expert_groups(bad, xq.data(), 256, 65, it.as<int32_t>(), 1, 65, {{m8.m, y.as<float>()}});
    EXPECT_EQ(bad.synchronize().code(), StatusCode::invalid_argument);
    EXPECT_FALSE(can_matmul_cuda_q8_expert_groups(QuantType::mxfp4));
    auto other_dev = cuda::Device::open(0);
    ASSERT_TRUE(other_dev.ok());
    cuda::Stream other(**other_dev);
    DevMatrix mx = make_matrix(**other_dev, other, QuantType::mxfp4, 256, 8, 2);
    matmul_cuda_q8_expert_groups(other, xq.data(), 256, 65, it.as<int32_t>(), 1, 8, {{mx.m, y.as<float>()}});
    EXPECT_EQ(other.synchronize().code(), StatusCode::unsupported);
}

// matmul_qkv_rope_cuda equals quantize-once dp4a matmuls of Q, K and V followed by
// rope_kv_write_cuda, bit for bit: rotated q, and the K and V cache rows of the tokens' slots
// (every other row keeps its poison). Partial rotary dims, freq factors, YaRN, Q4_K_M's mixed
// V type, and two token groups of the kernel.
TEST(CudaMatmulQ8, QkvRopeEqualsMatmulThenRopeKvWrite) {
    CUDA_OPEN_DEVICE_OR_SKIP(dev);
    cuda::Stream stream(dev);
    stream.set_programmatic(true);
    struct Case { int n_head, n_head_kv, hdk, hdv, n_rot; QuantType qk, v; int64_t n_in; bool freq_factors, yarn; };
    const Case cases[] = {
        {32, 8, 128, 128, 128, QuantType::q4_k, QuantType::q6_k, 1024, true, false},  // Llama-3.1-8B's heads
        {8, 2, 64, 64, 64, QuantType::q4_k, QuantType::q4_k, 512, false, false},
        {6, 2, 64, 32, 32, QuantType::q8_0, QuantType::q8_0, 320, false, true},      // partial rotary, YaRN
        {4, 4, 96, 96, 96, QuantType::q6_k, QuantType::q4_0, 768, true, true},
    };
    const std::vector<int32_t> pos_all = {0, 1, 17, 511, 4095, 40000, 131071, 3, 9, 77, 1000};
    const std::vector<int32_t> slot_all = {3, 0, 11, 12, 7, 1, 2, 15, 4, 9, 13};
    const int64_t n_slots = 16;
    uint32_t seed = 700;
    for (const Case& c : cases) {
        for (const int64_t n_tokens : {int64_t{1}, int64_t{3}, int64_t{11}}) {
            SCOPED_TRACE(testing::Message() << "heads " << c.n_head << "/" << c.n_head_kv << " hd " << c.hdk << "/"
                                            << c.hdv << " n_rot " << c.n_rot << " " << quant::type_name(c.qk) << "/"
                                            << quant::type_name(c.v) << " tokens " << n_tokens);
            const int64_t qw = (int64_t)c.n_head * c.hdk, kw = (int64_t)c.n_head_kv * c.hdk;
            const int64_t vw = (int64_t)c.n_head_kv * c.hdv;
            const int64_t k_row = kw + 8, v_row = vw + 2;  // padded cache rows, in halves
            DevMatrix wq = make_matrix(dev, stream, c.qk, c.n_in, qw, seed++);
            DevMatrix wk = make_matrix(dev, stream, c.qk, c.n_in, kw, seed++);
            DevMatrix wv = make_matrix(dev, stream, c.v, c.n_in, vw, seed++);
            std::vector<float> ff(c.n_rot / 2);
            for (size_t i = 0; i < ff.size(); ++i) ff[i] = 1.0f + (float)(i % 7);
            const auto x = random_floats((size_t)c.n_in * n_tokens, seed++, 1.0f);
            auto up = [&](const void* src, size_t bytes) {
                auto b = cuda::DeviceBuffer::allocate(dev, std::max<size_t>(bytes, 4)).value();
                b.upload(stream, src, bytes);
                return b;
            };
            auto dff = up(ff.data(), ff.size() * 4), dx = up(x.data(), x.size() * 4);
            auto dpos = up(pos_all.data(), n_tokens * 4), dslot = up(slot_all.data(), n_tokens * 4);
            const std::vector<float> nanq((size_t)qw * n_tokens, std::nanf(""));
            const std::vector<uint16_t> pk(n_slots * k_row, 0x7e00), pv(n_slots * v_row, 0x7e00);
            auto xq = cuda::DeviceBuffer::allocate(dev, activation_q8_bytes(c.n_in, n_tokens)).value();
            auto uq = up(nanq.data(), nanq.size() * 4), fq = up(nanq.data(), nanq.size() * 4);
            auto uk = cuda::DeviceBuffer::allocate(dev, (size_t)kw * n_tokens * 4).value();
            auto uv = cuda::DeviceBuffer::allocate(dev, (size_t)vw * n_tokens * 4).value();
            auto ukc = up(pk.data(), pk.size() * 2), uvc = up(pv.data(), pv.size() * 2);
            auto fkc = up(pk.data(), pk.size() * 2), fvc = up(pv.data(), pv.size() * 2);
            RopeConfig cfg;
            cfg.n_rot = c.n_rot, cfg.freq_base = 500000.0f;
            if (c.yarn) cfg.freq_scale = 0.25f, cfg.ext_factor = 1.0f, cfg.attn_factor = 0.9f, cfg.n_ctx_orig = 4096;
            cfg.freq_factors = c.freq_factors ? dff.as<float>() : nullptr;
            quantize_activations_cuda(stream, dx.as<float>(), xq.data(), c.n_in, n_tokens);
            // Unfused.
            for (auto [m, y] : {std::pair{&wq, uq.as<float>()}, {&wk, uk.as<float>()}, {&wv, uv.as<float>()}})
                matmul_cuda_q8(stream, m->m.type, m->m.w, m->m.row_bytes, xq.data(), y, c.n_in, m->m.n_out, n_tokens,
                               MatmulQ8Kernel::dp4a);
            rope_kv_write_cuda(stream, uq.as<float>(), uk.as<float>(), uv.as<float>(), dpos.as<int32_t>(),
                               dslot.as<int32_t>(), n_tokens, c.n_head, c.n_head_kv, c.hdk, c.hdv, cfg, ukc.data(),
                               k_row, uvc.data(), v_row);
            // Fused.
            QkvRopeCuda r;
            r.n_head = c.n_head, r.n_head_kv = c.n_head_kv, r.head_dim_k = c.hdk, r.head_dim_v = c.hdv;
            r.rope = cfg, r.positions = dpos.as<int32_t>(), r.slots = dslot.as<int32_t>();
            r.k_cache = fkc.data(), r.k_row_stride = k_row, r.v_cache = fvc.data(), r.v_row_stride = v_row;
            matmul_qkv_rope_cuda(stream, xq.data(), c.n_in, n_tokens, wq.m, wk.m, wv.m, fq.as<float>(), r);
            ASSERT_TRUE(stream.synchronize().ok()) << dev.status().message();
            const auto a = download<float>(stream, uq, nanq.size()), b = download<float>(stream, fq, nanq.size());
            for (size_t k = 0; k < a.size(); ++k) ASSERT_TRUE(std::isfinite(a[k])) << "q " << k;
            EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * 4)) << "q";
            EXPECT_EQ(download<uint16_t>(stream, ukc, pk.size()), download<uint16_t>(stream, fkc, pk.size())) << "K cache";
            EXPECT_EQ(download<uint16_t>(stream, uvc, pv.size()), download<uint16_t>(stream, fvc, pv.size())) << "V cache";
        }
    }
    // Neox rope is refused (its pairs are not adjacent rows).
    DevMatrix w = make_matrix(dev, stream, QuantType::q8_0, 256, 64, 1);
    auto xq = cuda::DeviceBuffer::allocate(dev, activation_q8_bytes(256, 1)).value();
    QkvRopeCuda r;
    r.n_head = 1, r.n_head_kv = 1, r.head_dim_k = 64, r.head_dim_v = 64;
    r.rope.n_rot = 64, r.rope.neox = true;
    matmul_qkv_rope_cuda(stream, xq.data(), 256, 1, w.m, w.m, w.m, nullptr, r);
    const Status st = stream.synchronize();
    EXPECT_FALSE(st.ok());
    EXPECT_NE(st.message().find("matmul_qkv_rope_cuda"), std::string::npos) << st.message();
}

TEST(CudaDevice, StreamScratchGrowsAndIsReused) {
    CUDA_OPEN_DEVICE_OR_SKIP(dev);
    cuda::Stream stream(dev);
    void* a = stream.scratch(1000);
    ASSERT_NE(a, nullptr);
    EXPECT_GE(stream.scratch_bytes(), 1000u);
    EXPECT_EQ(stream.scratch(10), a);  // smaller requests reuse the buffer
    void* b = stream.scratch(stream.scratch_bytes() + 1);
    ASSERT_NE(b, nullptr);
    EXPECT_GT(stream.scratch_bytes(), 1u << 20);
    EXPECT_TRUE(stream.synchronize().ok());
}

TEST(CudaDevice, ErrorsAreStickyAndSurfaceAtSync) {
    CUDA_OPEN_DEVICE_OR_SKIP(dev);
    cuda::Stream stream(dev);
    ASSERT_TRUE(stream.synchronize().ok());
    EXPECT_FALSE(dev.info().name.empty());
    EXPECT_GT(dev.info().n_sm, 0);
    // An unsupported type records a sticky error and launches nothing.
    float* none = nullptr;
    matmul_cuda(stream, QuantType::iq2_xxs, nullptr, 66, none, none, 256, 1, 1);  // no CUDA kernel
    const Status st = stream.synchronize();
    EXPECT_EQ(st.code(), StatusCode::unsupported) << st.message();
    // Later work is skipped and the first error stays.
    matmul_cuda(stream, QuantType::f16, nullptr, 3, none, none, 3, 1, 1);
    EXPECT_EQ(stream.synchronize().code(), StatusCode::unsupported);
    EXPECT_NE(dev.status().message().find("iq2_xxs"), std::string::npos) << dev.status().message();
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
