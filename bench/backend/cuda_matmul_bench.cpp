// CUDA matmul per weight type and shape (issue 8).
//  - Decode (1..8 tokens): achieved GB/s of weight bytes (decode is bandwidth-bound: every
//    weight byte is read once per token group) and its share of the device-to-device copy
//    bandwidth measured in the same run (read + write counted, as in ANCHORS.md). Two figures for
//    the quantized types: matmul_cuda as a whole (activation quantizer + dp4a kernel, launched
//    as a programmatic dependent so the two overlap) and the dp4a kernel alone on activations
//    quantized beforehand (the form a forward pass uses when Q, K, V share one quantization).
//  - Prefill (>= 16 tokens): TFLOP/s (2 * n_out * n_in * tokens / time) against the ~790 TFLOP/s
//    dense bf16 peak measured on this H100 (ANCHORS.md), including the f16 conversion of X.
//  - Whole-model estimates: the sum of one token's (or one 512-token prompt's) matmuls of
//    Llama-3.1-8B and Llama-3.2-1B with llama.cpp's Q4_K_M type mix and of 8B Q8_0, as t/s of
//    the matmuls alone (no attention, norms, launches between kernels), against the roofline and
//    llama.cpp's whole-model figures in ANCHORS.md.
//
// Timing: the weights rotate over enough copies to exceed 4x the L2 (so no run is served from
// L2), the calls are captured in a CUDA graph (as the decode step will be), and each figure is
// the median over 15 replays of (graph time / calls). Weights: 64 distinct random rows quantized
// by the reference quantizer, tiled over the matrix (speed does not depend on the values; none
// are zero). Run: build/bench/cuda_matmul_bench [--quick | --decode]
//
// --prefill: the two prefill paths of matmul_cuda per shape and token count, on the same weights
// and activations in the same process: the hand-written GEMM (HEARTH_CUDA_BLAS=0) against the
// cuBLAS path (HEARTH_CUDA_BLAS=all: dequantize W to f16, cublasGemmEx), both including their
// conversions, on Llama-3.1-8B's shapes; then Llama-3.1-8B Q4_K_M's 512-token prompt as the sum
// of its matmuls with each path and with matmul_cuda's own choice (matmul_cuda_uses_blas).
//
// --profile TYPE:N_OUT:N_IN:TOKENS[:dp4a] ...: runs each matmul_cuda_q8 three times (no graph)
// between cudaProfilerStart and Stop, for ncu --profile-from-start off (scripts/gpu-check.sh,
// HEARTH_GPU_NCU_MATMUL).
// --decode: only the int8 path at decode batch sizes (1..64 tokens, as the Engine's decode steps
// of that many streams), the batch-invariant tensor-core kernel against the earlier dp4a
// kernels (MatmulQ8Kernel), on activations quantized beforehand; weight GB/s counts each
// weight byte once per call (the floor the kernels approach), and the summary adds Llama-3.1-8B
// Q4_K_M's matrices into one decode step per batch size. Q5_K, IQ4_XS and MXFP4 rows have no
// tensor-core kernel: their "mma" column is the dp4a fallback too. Then the grouped launches
// (Q/K/V, gate/up as one launch per type: grouped_decode_bench) against the separate ones, and
// the step with them.
#include <cuda_profiler_api.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "backend/cuda/device.h"
#include "backend/cuda/matmul.h"
#include "quant/types.h"

using namespace hearth;
using quant::QuantType;

namespace {

constexpr double kPeakTflops = 790.0;  // dense bf16, measured on this H100 (ANCHORS.md)

#define CK(expr)                                                                                   \
    do {                                                                                           \
        const cudaError_t e_ = (expr);                                                             \
        if (e_ != cudaSuccess) {                                                                   \
            std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #expr, cudaGetErrorString(e_)); \
            std::exit(1);                                                                          \
        }                                                                                          \
    } while (0)

void check(const Status& st) {
    if (!st.ok()) {
        std::fprintf(stderr, "cuda_matmul_bench: %s\n", st.message().c_str());
        std::exit(1);
    }
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

// Device-to-device copy of 1 GiB, bytes read + written, median of 10.
double copy_gbs(cudaStream_t s) {
    const size_t bytes = size_t(1) << 30;
    void *a = nullptr, *b = nullptr;
    CK(cudaMalloc(&a, bytes));
    CK(cudaMalloc(&b, bytes));
    CK(cudaMemsetAsync(a, 1, bytes, s));
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    std::vector<double> gbs;
    for (int r = 0; r < 12; ++r) {
        CK(cudaEventRecord(e0, s));
        CK(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, s));
        CK(cudaEventRecord(e1, s));
        CK(cudaEventSynchronize(e1));
        float ms = 0;
        CK(cudaEventElapsedTime(&ms, e0, e1));
        if (r >= 2) gbs.push_back(2.0 * bytes / (ms * 1e-3) / 1e9);
    }
    CK(cudaEventDestroy(e0));
    CK(cudaEventDestroy(e1));
    CK(cudaFree(a));
    CK(cudaFree(b));
    return median(gbs);
}

// Median time per call (us) of `issue(i)` for i = 0..calls-1, captured in one graph.
template <typename Issue>
double time_graph(backend::cuda::Stream& stream, int calls, Issue issue) {
    auto s = static_cast<cudaStream_t>(stream.handle());
    for (int i = 0; i < std::min(calls, 8); ++i) issue(i);  // warm-up: module load, scratch growth
    check(stream.synchronize());
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    for (int i = 0; i < calls; ++i) issue(i);
    CK(cudaStreamEndCapture(s, &graph));
    check(stream.device().status());
    CK(cudaGraphInstantiate(&exec, graph, 0));
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    CK(cudaGraphLaunch(exec, s));  // warm-up replay
    std::vector<double> us;
    for (int r = 0; r < 15; ++r) {
        CK(cudaEventRecord(e0, s));
        CK(cudaGraphLaunch(exec, s));
        CK(cudaEventRecord(e1, s));
        CK(cudaEventSynchronize(e1));
        float ms = 0;
        CK(cudaEventElapsedTime(&ms, e0, e1));
        us.push_back(ms * 1e3 / calls);
    }
    check(stream.synchronize());
    CK(cudaGraphExecDestroy(exec));
    CK(cudaGraphDestroy(graph));
    CK(cudaEventDestroy(e0));
    CK(cudaEventDestroy(e1));
    return median(us);
}

struct Weights {
    std::vector<backend::cuda::DeviceBuffer> copies;
    size_t row_bytes = 0, bytes = 0;
};

Weights make_weights(backend::cuda::Device& dev, backend::cuda::Stream& stream, QuantType type, int64_t n_out,
                     int64_t n_in, size_t l2_bytes, std::mt19937& rng) {
    Weights wt;
    const auto& tr = quant::traits(type);
    wt.row_bytes = quant::row_size(type, n_in);
    wt.bytes = wt.row_bytes * n_out;
    constexpr int kDistinct = 64;
    std::normal_distribution<float> dist(0.0f, 0.02f);
    std::vector<std::byte> rows(wt.row_bytes * kDistinct);
    std::vector<float> row(n_in);
    for (int o = 0; o < kDistinct; ++o) {
        for (auto& v : row) v = dist(rng);
        tr.quantize_row(row.data(), rows.data() + o * wt.row_bytes, n_in);
    }
    std::vector<std::byte> w(wt.bytes);
    for (int64_t o = 0; o < n_out; ++o) std::memcpy(w.data() + o * wt.row_bytes, rows.data() + (o % kDistinct) * wt.row_bytes, wt.row_bytes);
    const int n_copies = (int)std::max<size_t>(2, (4 * l2_bytes) / wt.bytes + 1);
    for (int c = 0; c < n_copies; ++c) {
        auto b = backend::cuda::DeviceBuffer::allocate(dev, wt.bytes);
        check(b.status());
        if (c == 0) {
            b->upload(stream, w.data(), wt.bytes);
        } else {
            CK(cudaMemcpyAsync(b->data(), wt.copies[0].data(), wt.bytes, cudaMemcpyDeviceToDevice,
                               static_cast<cudaStream_t>(stream.handle())));
        }
        wt.copies.push_back(std::move(*b));
    }
    check(stream.synchronize());
    return wt;
}

struct Row {
    QuantType type;
    int64_t n_out, n_in, n_tokens;
    double weight_mb, us, us_kernel;  // us_kernel: dp4a kernel alone (0: not measured)
};

std::string key(QuantType type, int64_t n_out, int64_t n_in, int64_t nt) {
    return std::string(quant::type_name(type)) + ":" + std::to_string(n_out) + "x" + std::to_string(n_in) + ":" +
           std::to_string(nt);
}

}  // namespace

// --decode, second part: the matrices of an 8B layer that read the same activations (Q, K, V;
// gate, up) as separate tensor-core launches against one grouped launch per weight type
// (matmul_cuda_q8_grouped, MatmulQ8Kernel::mma), each matrix's chains its own (MatmulQ8Chains::own:
// the bits of the separate launches) or those of the stacked matrix (joint); then the 8B step of
// the first part with the grouped launches in place of the separate ones. Q4_K_M layers: Q, K, V
// Q4_K in 16 layers, V Q6_K (a launch of its own) in the other 16; gate and up Q4_K in all 32.
void grouped_decode_bench(backend::cuda::Device& dev, backend::cuda::Stream& stream,
                          const std::map<std::pair<int64_t, int>, double>& step_us, double step_bytes) {
    const auto& info = dev.info();
    const int64_t kTokens[] = {2, 4, 8, 16, 32, 64}, n_in = 4096;
    std::mt19937 rng(12);
    struct GMat { QuantType type; int64_t n_out; Weights wt; backend::cuda::DeviceBuffer y; };
    std::vector<GMat> m;  // q, k, v (Q4_K), v (Q6_K), gate, up
    const std::pair<QuantType, int64_t> shapes[] = {{QuantType::q4_k, 4096}, {QuantType::q4_k, 1024},
                                                    {QuantType::q4_k, 1024}, {QuantType::q6_k, 1024},
                                                    {QuantType::q4_k, 14336}, {QuantType::q4_k, 14336}};
    for (const auto& [type, n_out] : shapes) {
        auto y = backend::cuda::DeviceBuffer::allocate(dev, (size_t)n_out * 64 * 4);
        check(y.status());
        m.push_back({type, n_out, make_weights(dev, stream, type, n_out, n_in, info.l2_bytes, rng), std::move(*y)});
    }
    auto out = [&](int j, int i) {
        const Weights& wt = m[j].wt;
        return backend::MatmulQ8Out{{m[j].type, wt.copies[i % wt.copies.size()].as<std::byte>(), wt.row_bytes, m[j].n_out},
                                    m[j].y.as<float>()};
    };
    // The three sets; per set the matrices (indices into m).
    const std::vector<int> sets[3] = {{0, 1, 2}, {0, 1, 3}, {4, 5}};
    const char* set_names[3] = {"Q+K+V Q4_K (4096+1024+1024 rows)", "Q+K Q4_K, V Q6_K", "gate+up Q4_K (2 x 14336 rows)"};
    const int calls = 48;
    std::printf("\n## Grouped launches (matmul_cuda_q8_grouped, mma) against separate ones, per 8B layer\n\n");
    std::printf("| matrices | tokens | separate us | grouped own us | joint us | own speed-up | joint speed-up |\n");
    std::printf("|---|---:|---:|---:|---:|---:|---:|\n");
    std::map<int64_t, std::array<double, 3>> d_own, d_joint, d_qkv;  // tokens -> per set: grouped - separate (us)
    for (int64_t nt : kTokens) {
        std::normal_distribution<float> dist(0.0f, 1.0f);
        std::vector<float> x(n_in * nt);
        for (auto& v : x) v = dist(rng);
        auto xd = backend::cuda::DeviceBuffer::allocate(dev, x.size() * 4);
        auto qd = backend::cuda::DeviceBuffer::allocate(dev, backend::activation_q8_bytes(n_in, nt));
        check(xd.status());
        check(qd.status());
        xd->upload(stream, x.data(), x.size() * 4);
        backend::quantize_activations_cuda(stream, xd->as<float>(), qd->data(), n_in, nt);
        for (int k = 0; k < 3; ++k) {
            const std::vector<int>& set = sets[k];
            const double sep = time_graph(stream, calls, [&](int i) {
                for (int j : set) {
                    const backend::MatmulQ8Out o = out(j, i);
                    backend::matmul_cuda_q8(stream, o.m.type, o.m.w, o.m.row_bytes, qd->data(), o.y, n_in, o.m.n_out, nt,
                                            backend::MatmulQ8Kernel::mma);
                }
            });
            double grp[2];
            for (int c = 0; c < 2; ++c) {
                const auto chains = c == 0 ? backend::MatmulQ8Chains::own : backend::MatmulQ8Chains::joint;
                grp[c] = time_graph(stream, calls, [&](int i) {
                    if (set.size() == 3) {
                        backend::matmul_cuda_q8_grouped(stream, qd->data(), n_in, nt, {out(set[0], i), out(set[1], i), out(set[2], i)},
                                                        backend::MatmulQ8Kernel::mma, chains);
                    } else {
                        backend::matmul_cuda_q8_grouped(stream, qd->data(), n_in, nt, {out(set[0], i), out(set[1], i)},
                                                        backend::MatmulQ8Kernel::mma, chains);
                    }
                });
            }
            d_own[nt][k] = grp[0] - sep, d_joint[nt][k] = grp[1] - sep;
            d_qkv[nt][k] = k < 2 ? grp[0] - sep : 0.0;
            std::printf("| %s | %lld | %.2f | %.2f | %.2f | %.2fx | %.2fx |\n", set_names[k], (long long)nt, sep, grp[0],
                        grp[1], sep / grp[0], sep / grp[1]);
            std::fflush(stdout);
        }
    }
    std::printf("\n## Llama-3.1-8B Q4_K_M decode step matmuls with grouped launches (the step above, 16 + 16 + 32 "
                "layers' sets replaced)\n\n");
    std::printf("| tokens per step | separate ms | own (Q/K/V + gate/up) ms | own Q/K/V only ms | joint ms | own weight GB/s |\n");
    std::printf("|---:|---:|---:|---:|---:|---:|\n");
    for (int64_t nt : kTokens) {
        const auto it = step_us.find({nt, 0});
        if (it == step_us.end()) continue;
        auto with = [&](const std::array<double, 3>& d) { return it->second + 16 * d[0] + 16 * d[1] + 32 * d[2]; };
        const double own = with(d_own[nt]);
        std::printf("| %lld | %.3f | %.3f | %.3f | %.3f | %.0f |\n", (long long)nt, it->second / 1e3, own / 1e3,
                    with(d_qkv[nt]) / 1e3, with(d_joint[nt]) / 1e3, step_bytes / (own * 1e-6) / 1e9);
    }
}

// --decode: tensor-core vs dp4a kernels over decode batch sizes (see the top of the file).
int decode_bench(backend::cuda::Device& dev, backend::cuda::Stream& stream, double copy) {
    const auto& info = dev.info();
    const int64_t kTokens[] = {1, 2, 4, 8, 16, 32, 64};
    struct Mat { QuantType type; int64_t n_out, n_in; int per_step; };  // per_step: in one 8B decode step
    // Llama-3.1-8B Q4_K_M: 32 layers; attn_v and ffn_down Q6_K in 16 of them (use_more_bits).
    const Mat mats[] = {{QuantType::q4_k, 4096, 4096, 64},   {QuantType::q4_k, 1024, 4096, 48},
                        {QuantType::q6_k, 1024, 4096, 16},   {QuantType::q4_k, 14336, 4096, 64},
                        {QuantType::q4_k, 4096, 14336, 16},  {QuantType::q6_k, 4096, 14336, 16},
                        {QuantType::q6_k, 128256, 4096, 1},  {QuantType::q8_0, 4096, 4096, 0},
                        {QuantType::q8_0, 14336, 4096, 0},   {QuantType::q4_0, 14336, 4096, 0},
                        // Types without a tensor-core kernel (both columns: the dp4a kernel).
                        {QuantType::q5_k, 14336, 4096, 0},   {QuantType::q5_k, 4096, 14336, 0},
                        {QuantType::iq4_xs, 14336, 4096, 0}, {QuantType::mxfp4, 14336, 4096, 0}};
    std::mt19937 rng(11);
    std::map<std::pair<int64_t, int>, double> step_us;  // (tokens, kernel) -> 8B step matmul us
    std::printf("| type | W [n_out x n_in] | chains | tokens | mma us | mma weight GB/s | of copy | dp4a us | dp4a GB/s | mma speed-up |\n");
    std::printf("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (const Mat& m : mats) {
        Weights wt = make_weights(dev, stream, m.type, m.n_out, m.n_in, info.l2_bytes, rng);
        const int n_copies = (int)wt.copies.size();
        for (int64_t nt : kTokens) {
            std::normal_distribution<float> dist(0.0f, 1.0f);
            std::vector<float> x(m.n_in * nt);
            for (auto& v : x) v = dist(rng);
            auto xd = backend::cuda::DeviceBuffer::allocate(dev, x.size() * 4);
            auto yd = backend::cuda::DeviceBuffer::allocate(dev, (size_t)m.n_out * nt * 4);
            auto qd = backend::cuda::DeviceBuffer::allocate(dev, backend::activation_q8_bytes(m.n_in, nt));
            check(xd.status());
            check(yd.status());
            check(qd.status());
            xd->upload(stream, x.data(), x.size() * 4);
            backend::quantize_activations_cuda(stream, xd->as<float>(), qd->data(), m.n_in, nt);
            const int calls = std::max(n_copies, 40) / n_copies * n_copies;
            double us[2];
            for (int k = 0; k < 2; ++k) {
                const auto kernel = k == 0 ? backend::MatmulQ8Kernel::mma : backend::MatmulQ8Kernel::dp4a;
                us[k] = time_graph(stream, calls, [&](int i) {
                    backend::matmul_cuda_q8(stream, m.type, wt.copies[i % n_copies].as<std::byte>(), wt.row_bytes,
                                            qd->data(), yd->as<float>(), m.n_in, m.n_out, nt, kernel);
                });
                step_us[{nt, k}] += m.per_step * us[k];
            }
            const double gbs = wt.bytes / (us[0] * 1e-6) / 1e9, gbs_dp4a = wt.bytes / (us[1] * 1e-6) / 1e9;
            std::printf("| %s | %lld x %lld | %d | %lld | %.2f | %.0f | %.0f %% | %.2f | %.0f | %.2fx |\n",
                        quant::type_name(m.type), (long long)m.n_out, (long long)m.n_in,
                        backend::matmul_cuda_q8_chains(dev, m.n_in, m.n_out), (long long)nt, us[0], gbs,
                        100 * gbs / copy, us[1], gbs_dp4a, us[1] / us[0]);
            std::fflush(stdout);
        }
    }
    // 8B weight bytes per step (the matrices above with their counts; the output matrix once).
    const double step_bytes = 64 * 9.437e6 + 48 * 2.359e6 + 16 * 3.441e6 + 64 * 33.03e6 + 16 * 33.03e6 +
                              16 * 48.17e6 + 430.9e6;
    std::printf("\n## Llama-3.1-8B Q4_K_M: the matmuls of one decode step (%.2f GB of weights), copy %.0f GB/s\n\n",
                step_bytes / 1e9, copy);
    std::printf("| tokens per step | mma ms | weight GB/s | matmul-only t/s | dp4a ms | matmul-only t/s |\n|---:|---:|---:|---:|---:|---:|\n");
    for (int64_t nt : kTokens) {
        const double a = step_us[{nt, 0}], b = step_us[{nt, 1}];
        std::printf("| %lld | %.3f | %.0f | %.0f | %.3f | %.0f |\n", (long long)nt, a / 1e3, step_bytes / (a * 1e-6) / 1e9,
                    nt / (a * 1e-6), b / 1e3, nt / (b * 1e-6));
    }
    grouped_decode_bench(dev, stream, step_us, step_bytes);
    return 0;
}

// --profile: each spec's matmul three times between cudaProfilerStart/Stop.
int profile_bench(backend::cuda::Device& dev, backend::cuda::Stream& stream, int argc, char** argv) {
    std::mt19937 rng(13);
    cudaProfilerStart();
    for (int a = 2; a < argc; ++a) {
        char type_name[16] = {0}, kernel_name[16] = {0};
        long long n_out = 0, n_in = 0, nt = 0;
        if (std::sscanf(argv[a], "%15[^:]:%lld:%lld:%lld:%15s", type_name, &n_out, &n_in, &nt, kernel_name) < 4) {
            std::fprintf(stderr, "cuda_matmul_bench --profile: bad spec %s (TYPE:N_OUT:N_IN:TOKENS[:dp4a])\n", argv[a]);
            return 1;
        }
        const auto type = quant::parse_type_name(type_name);
        if (!type) {
            std::fprintf(stderr, "cuda_matmul_bench --profile: unknown type %s\n", type_name);
            return 1;
        }
        const auto kernel = std::strcmp(kernel_name, "dp4a") == 0 ? backend::MatmulQ8Kernel::dp4a : backend::MatmulQ8Kernel::mma;
        Weights wt = make_weights(dev, stream, *type, n_out, n_in, 0, rng);
        std::normal_distribution<float> dist(0.0f, 1.0f);
        std::vector<float> x(n_in * nt);
        for (auto& v : x) v = dist(rng);
        auto xd = backend::cuda::DeviceBuffer::allocate(dev, x.size() * 4);
        auto yd = backend::cuda::DeviceBuffer::allocate(dev, (size_t)n_out * nt * 4);
        auto qd = backend::cuda::DeviceBuffer::allocate(dev, backend::activation_q8_bytes(n_in, nt));
        check(xd.status());
        check(yd.status());
        check(qd.status());
        xd->upload(stream, x.data(), x.size() * 4);
        backend::quantize_activations_cuda(stream, xd->as<float>(), qd->data(), n_in, nt);
        for (int r = 0; r < 3; ++r)
            backend::matmul_cuda_q8(stream, *type, wt.copies[0].as<std::byte>(), wt.row_bytes, qd->data(), yd->as<float>(),
                                    n_in, n_out, nt, kernel);
        check(stream.synchronize());
        std::printf("profiled %s\n", argv[a]);
    }
    cudaProfilerStop();
    return 0;
}

// --prefill: hand-written GEMM vs cuBLAS (see the top of the file).
int prefill_bench(backend::cuda::Device& dev, backend::cuda::Stream& stream) {
    const auto& info = dev.info();
    const int64_t kTokens[] = {16, 32, 64, 96, 128, 192, 256, 384, 512, 1024};
    struct Mat { QuantType type; int64_t n_out, n_in; };
    const Mat mats[] = {{QuantType::q4_k, 4096, 4096},   {QuantType::q4_k, 1024, 4096},  {QuantType::q4_k, 14336, 4096},
                        {QuantType::q4_k, 4096, 14336},  {QuantType::q6_k, 1024, 4096},  {QuantType::q6_k, 4096, 14336},
                        {QuantType::q8_0, 4096, 4096},   {QuantType::q8_0, 14336, 4096}, {QuantType::q8_0, 4096, 14336},
                        {QuantType::f16, 4096, 4096},    {QuantType::f16, 14336, 4096},  {QuantType::q4_0, 14336, 4096},
                        {QuantType::q5_k, 14336, 4096},  {QuantType::q6_k, 128256, 4096}};
    std::mt19937 rng(17);
    std::map<std::string, std::pair<double, double>> us_of;  // key -> (gemm us, cublas us)
    std::printf("| type | W [n_out x n_in] | tokens | GEMM us | TFLOP/s | cuBLAS us | TFLOP/s | cuBLAS speed-up (taken: matmul_cuda's choice) |\n");
    std::printf("|---|---|---:|---:|---:|---:|---:|---:|\n");
    for (const Mat& m : mats) {
        Weights wt = make_weights(dev, stream, m.type, m.n_out, m.n_in, info.l2_bytes, rng);
        const int n_copies = (int)wt.copies.size();
        for (int64_t nt : kTokens) {
            if (m.n_out == 128256 && nt != 512) continue;  // all-token logits: one figure
            std::normal_distribution<float> dist(0.0f, 1.0f);
            std::vector<float> x(m.n_in * nt);
            for (auto& v : x) v = dist(rng);
            auto xd = backend::cuda::DeviceBuffer::allocate(dev, x.size() * 4);
            auto yd = backend::cuda::DeviceBuffer::allocate(dev, (size_t)m.n_out * nt * 4);
            check(xd.status());
            check(yd.status());
            xd->upload(stream, x.data(), x.size() * 4);
            const int calls = std::max(n_copies, 10) / n_copies * n_copies;
            double us[2];
            for (int k = 0; k < 2; ++k) {
                setenv("HEARTH_CUDA_BLAS", k == 0 ? "0" : "all", 1);
                stream.scratch(backend::matmul_cuda_scratch_bytes(m.type, m.n_in, nt));  // reserve before capture
                us[k] = time_graph(stream, calls, [&](int i) {
                    backend::matmul_cuda(stream, m.type, wt.copies[i % n_copies].as<std::byte>(), wt.row_bytes,
                                         xd->as<float>(), yd->as<float>(), m.n_in, m.n_out, nt);
                });
            }
            unsetenv("HEARTH_CUDA_BLAS");
            us_of[key(m.type, m.n_out, m.n_in, nt)] = {us[0], us[1]};
            const double flop = 2.0 * m.n_out * m.n_in * nt;
            std::printf("| %s | %lld x %lld | %lld | %.1f | %.1f | %.1f | %.1f | %.2fx%s |\n", quant::type_name(m.type),
                        (long long)m.n_out, (long long)m.n_in, (long long)nt, us[0], flop / (us[0] * 1e-6) / 1e12, us[1],
                        flop / (us[1] * 1e-6) / 1e12, us[0] / us[1],
                        backend::matmul_cuda_uses_blas(dev, m.type, m.n_out, nt) ? " (taken)" : "");
            std::fflush(stdout);
        }
    }
    // Llama-3.1-8B Q4_K_M, one prompt of nt tokens: the sum of its layers' matmuls (attn_v and
    // ffn_down Q6_K where use_more_bits, as in the main table's estimate).
    std::printf("\n## Llama-3.1-8B Q4_K_M: the matmuls of one prompt (32 layers, no output matrix)\n\n");
    std::printf("| tokens | GEMM ms | cuBLAS ms | default (matmul_cuda's choice) ms | matmul-only t/s: GEMM | cuBLAS | default |\n");
    std::printf("|---:|---:|---:|---:|---:|---:|---:|\n");
    for (int64_t nt : kTokens) {
        double g = 0, b = 0, d = 0;
        auto add = [&](QuantType t, int64_t n_out, int64_t n_in, int count) {
            const auto& p = us_of.at(key(t, n_out, n_in, nt));
            g += count * p.first, b += count * p.second;
            d += count * (backend::matmul_cuda_uses_blas(dev, t, n_out, nt) ? p.second : p.first);
        };
        for (int i = 0; i < 32; ++i) {
            const bool more = i < 4 || i >= 28 || (i - 4) % 3 == 2;
            add(QuantType::q4_k, 4096, 4096, 2);
            add(QuantType::q4_k, 1024, 4096, 1);
            add(more ? QuantType::q6_k : QuantType::q4_k, 1024, 4096, 1);
            add(QuantType::q4_k, 14336, 4096, 2);
            add(more ? QuantType::q6_k : QuantType::q4_k, 4096, 14336, 1);
        }
        std::printf("| %lld | %.2f | %.2f | %.2f | %.0f | %.0f | %.0f |\n", (long long)nt, g / 1e3, b / 1e3, d / 1e3,
                    nt / (g * 1e-6), nt / (b * 1e-6), nt / (d * 1e-6));
    }
    return 0;
}

int main(int argc, char** argv) {
    const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
    const bool decode = argc > 1 && std::strcmp(argv[1], "--decode") == 0;
    const bool prefill = argc > 1 && std::strcmp(argv[1], "--prefill") == 0;
    const bool profile = argc > 1 && std::strcmp(argv[1], "--profile") == 0;
    auto dev_r = backend::cuda::Device::open(0);
    if (!dev_r.ok()) {
        std::fprintf(stderr, "cuda_matmul_bench: %s\n", dev_r.status().message().c_str());
        return 1;
    }
    backend::cuda::Device& dev = **dev_r;
    backend::cuda::Stream stream(dev);
    auto s = static_cast<cudaStream_t>(stream.handle());
    const auto& info = dev.info();
    int driver = 0, runtime = 0;
    cudaDriverGetVersion(&driver);
    cudaRuntimeGetVersion(&runtime);
    std::printf("device: %s, sm_%d%d, %d SMs, L2 %.0f MB, %.1f GiB; driver API %d, runtime %d\n", info.name.c_str(),
                info.cc_major, info.cc_minor, info.n_sm, info.l2_bytes / 1e6, info.total_mem_bytes / double(1 << 30),
                driver, runtime);
    const double copy = copy_gbs(s);
    std::printf("device-to-device copy: %.0f GB/s (1 GiB, read + write, median of 10)\n\n", copy);
    if (decode) return decode_bench(dev, stream, copy);
    if (profile) return profile_bench(dev, stream, argc, argv);
    if (prefill) return prefill_bench(dev, stream);

    const QuantType types[] = {QuantType::f16, QuantType::q8_0, QuantType::q4_0, QuantType::q4_k, QuantType::q6_k};
    // {n_out, n_in}: Llama-3.1-8B (q/o, k/v, gate/up, down, output) and Llama-3.2-1B.
    const std::vector<std::pair<int64_t, int64_t>> shapes_8b = {
        {4096, 4096}, {1024, 4096}, {14336, 4096}, {4096, 14336}, {128256, 4096}};
    const std::vector<std::pair<int64_t, int64_t>> shapes_1b = {
        {2048, 2048}, {512, 2048}, {8192, 2048}, {2048, 8192}, {128256, 2048}};
    constexpr int64_t kPrompt = 512;

    std::vector<Row> rows;
    std::map<std::string, double> us_of;  // key -> us per matmul_cuda call
    std::mt19937 rng(7);
    std::vector<std::pair<int64_t, int64_t>> shapes = shapes_8b;
    shapes.insert(shapes.end(), shapes_1b.begin(), shapes_1b.end());
    for (QuantType type : types) {
        for (const auto& [n_out, n_in] : shapes) {
            const bool big = n_out == 128256;
            // Prefill only where a prompt uses it (logits are computed for the last token only);
            // the full batch-size sweep on one shape.
            static const int64_t kSweep[] = {1, 2, 3, 4, 5, 6, 7, 8, 16, 32, 64, 128, 256, 512};
            static const int64_t kDecodePrefill[] = {1, 8, kPrompt};
            const bool sweep = type == QuantType::q4_k && n_out == 14336 && !quick;
            const int64_t* tc_begin = sweep ? kSweep : kDecodePrefill;
            const size_t n_tc = sweep ? std::size(kSweep) : big ? 2 : 3;
            const std::vector<int64_t> token_counts(tc_begin, tc_begin + n_tc);
            if (quick && (big || type == QuantType::q4_0)) continue;
            Weights wt = make_weights(dev, stream, type, n_out, n_in, info.l2_bytes, rng);
            const int n_copies = (int)wt.copies.size();
            for (int64_t nt : token_counts) {
                std::normal_distribution<float> dist(0.0f, 1.0f);
                std::vector<float> x(n_in * nt);
                for (auto& v : x) v = dist(rng);
                auto xd = backend::cuda::DeviceBuffer::allocate(dev, x.size() * 4);
                auto yd = backend::cuda::DeviceBuffer::allocate(dev, (size_t)n_out * nt * 4);
                check(xd.status());
                check(yd.status());
                xd->upload(stream, x.data(), x.size() * 4);
                stream.scratch(backend::matmul_cuda_scratch_bytes(type, n_in, nt));  // reserve before capture
                const int calls = std::max(n_copies, nt >= 16 ? 10 : 40) / n_copies * n_copies;
                const double us = time_graph(stream, calls, [&](int i) {
                    backend::matmul_cuda(stream, type, wt.copies[i % n_copies].as<std::byte>(), wt.row_bytes,
                                         xd->as<float>(), yd->as<float>(), n_in, n_out, nt);
                });
                double us_kernel = 0.0;
                if (type != QuantType::f16 && nt < backend::kMatmulGemmMinTokens) {
                    auto qd = backend::cuda::DeviceBuffer::allocate(dev, backend::activation_q8_bytes(n_in, nt));
                    check(qd.status());
                    backend::quantize_activations_cuda(stream, xd->as<float>(), qd->data(), n_in, nt);
                    us_kernel = time_graph(stream, calls, [&](int i) {
                        backend::matmul_cuda_q8(stream, type, wt.copies[i % n_copies].as<std::byte>(), wt.row_bytes,
                                                qd->data(), yd->as<float>(), n_in, n_out, nt);
                    });
                }
                rows.push_back({type, n_out, n_in, nt, wt.bytes / 1e6, us, us_kernel});
                us_of[key(type, n_out, n_in, nt)] = us;
                const double gbs = wt.bytes / (us * 1e-6) / 1e9;
                const double tflops = 2.0 * n_out * n_in * nt / (us * 1e-6) / 1e12;
                std::printf("%-5s %6lldx%-6lld tokens %3lld: %9.2f us  %7.1f GB/s (%3.0f %%)  %6.1f TFLOP/s", quant::type_name(type),
                            (long long)n_out, (long long)n_in, (long long)nt, us, gbs, 100 * gbs / copy, tflops);
                if (us_kernel > 0) {
                    std::printf("  | kernel alone %8.2f us %7.1f GB/s (%3.0f %%)", us_kernel,
                                wt.bytes / (us_kernel * 1e-6) / 1e9, 100 * wt.bytes / (us_kernel * 1e-6) / 1e9 / copy);
                }
                std::printf("\n");
                std::fflush(stdout);
            }
        }
    }

    std::printf("\n## Decode (matrix-vector): weight GB/s, %% of measured copy bandwidth %.0f GB/s\n\n", copy);
    std::printf("| type | W [n_out x n_in] | tokens | weight MB | us / matmul | GB/s | of copy | dp4a kernel alone: us | GB/s | of copy |\n");
    std::printf("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (const Row& r : rows) {
        if (r.n_tokens >= backend::kMatmulGemmMinTokens) continue;
        const double gbs = r.weight_mb * 1e6 / (r.us * 1e-6) / 1e9;
        std::printf("| %s | %lld x %lld | %lld | %.1f | %.2f | %.0f | %.0f %% |", quant::type_name(r.type), (long long)r.n_out,
                    (long long)r.n_in, (long long)r.n_tokens, r.weight_mb, r.us, gbs, 100 * gbs / copy);
        if (r.us_kernel > 0) {
            const double gk = r.weight_mb * 1e6 / (r.us_kernel * 1e-6) / 1e9;
            std::printf(" %.2f | %.0f | %.0f %% |\n", r.us_kernel, gk, 100 * gk / copy);
        } else {
            std::printf(" | | |\n");
        }
    }
    std::printf("\n## Prefill (tensor-core GEMM, f16 x f16 -> f32): TFLOP/s, %% of the %.0f TFLOP/s bf16 peak\n\n", kPeakTflops);
    std::printf("| type | W [n_out x n_in] | tokens | us / matmul | TFLOP/s | of peak |\n|---|---|---:|---:|---:|---:|\n");
    for (const Row& r : rows) {
        if (r.n_tokens < backend::kMatmulGemmMinTokens) continue;
        const double tflops = 2.0 * r.n_out * r.n_in * r.n_tokens / (r.us * 1e-6) / 1e12;
        std::printf("| %s | %lld x %lld | %lld | %.1f | %.1f | %.0f %% |\n", quant::type_name(r.type), (long long)r.n_out,
                    (long long)r.n_in, (long long)r.n_tokens, r.us, tflops, 100 * tflops / kPeakTflops);
    }

    // Whole-model matmul estimates. llama.cpp's Q4_K_M mix: attn_v and ffn_down are Q6_K in the
    // layers where use_more_bits(i, n) (i < n/8, i >= 7n/8, or (i - n/8) % 3 == 2), the output
    // matrix is Q6_K, everything else Q4_K.
    struct Model {
        const char* name;
        int n_layer;
        int64_t n_embd, n_kv, n_ff;
        bool q4_k_m;  // else all Q8_0
        double anchor_tg, anchor_pp, roofline_tg;
    };
    const Model models[] = {{"Llama-3.1-8B Q4_K_M", 32, 4096, 1024, 14336, true, 259.9, 10246, 645},
                            {"Llama-3.1-8B Q8_0", 32, 4096, 1024, 14336, false, 227.2, 11654, 374},
                            {"Llama-3.2-1B Q4_K_M", 16, 2048, 512, 8192, true, 825.5, 37245, 3725}};
    std::printf("\n## Whole-model matmul estimates (sum of the matmuls above; no attention, norms or launch gaps)\n\n");
    std::printf("| model | tg: matmul us / token | matmul-only t/s | weight GB/s | llama.cpp tg128 t/s (whole model) | pp512: matmul ms | matmul-only t/s | llama.cpp pp512 t/s |\n");
    std::printf("|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for (const Model& m : models) {
        double tg_us = 0, pp_us = 0, bytes = 0;
        bool complete = true;
        auto add = [&](QuantType t, int64_t n_out, int64_t n_in, int count, bool prefill_too) {
            const auto a = us_of.find(key(t, n_out, n_in, 1));
            if (a == us_of.end()) {
                complete = false;
                return;
            }
            tg_us += count * a->second;
            bytes += count * (double)quant::row_size(t, n_in) * n_out;
            if (prefill_too) {
                const auto p = us_of.find(key(t, n_out, n_in, kPrompt));
                if (p == us_of.end()) {
                    complete = false;
                    return;
                }
                pp_us += count * p->second;
            }
        };
        for (int i = 0; i < m.n_layer; ++i) {
            const bool more = i < m.n_layer / 8 || i >= 7 * m.n_layer / 8 || (i - m.n_layer / 8) % 3 == 2;
            const QuantType base = m.q4_k_m ? QuantType::q4_k : QuantType::q8_0;
            const QuantType extra = m.q4_k_m && more ? QuantType::q6_k : base;
            add(base, m.n_embd, m.n_embd, 2, true);   // q, o
            add(base, m.n_kv, m.n_embd, 1, true);     // k
            add(extra, m.n_kv, m.n_embd, 1, true);    // v
            add(base, m.n_ff, m.n_embd, 2, true);     // gate, up
            add(extra, m.n_embd, m.n_ff, 1, true);    // down
        }
        add(m.q4_k_m ? QuantType::q6_k : QuantType::q8_0, 128256, m.n_embd, 1, false);  // output, last token only
        if (!complete) {
            std::printf("| %s | (not measured in --quick) |\n", m.name);
            continue;
        }
        std::printf("| %s | %.0f | %.0f (roofline %.0f) | %.0f (%.0f %%) | %.1f | %.2f | %.0f | %.0f |\n", m.name, tg_us,
                    1e6 / tg_us, m.roofline_tg, bytes / (tg_us * 1e-6) / 1e9, 100 * bytes / (tg_us * 1e-6) / 1e9 / copy,
                    m.anchor_tg, pp_us / 1e3, kPrompt / (pp_us * 1e-6), m.anchor_pp);
    }
    return 0;
}
