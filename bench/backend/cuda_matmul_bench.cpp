// Matrix-vector bandwidth of the CUDA matmul per weight type: achieved GB/s of weight bytes
// (decode is bandwidth-bound: every weight byte is read once per token) and its share of the
// device's memory bandwidth, both the nominal ~3000 GB/s of an H100 SXM and the device-to-device
// copy bandwidth measured in the same run (read + write counted, as in ANCHORS.md).
//
// Timing: the matrices rotate over enough copies to exceed 4x the L2 (so no run is served from
// L2), the launches are captured in a CUDA graph (as the decode step will be), and each figure
// is the median over repeats of (graph time / launches). Run: build/bench/cuda_matmul_bench
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <random>
#include <vector>

#include "backend/cuda/device.h"
#include "backend/cuda/matmul.h"
#include "quant/types.h"

using namespace hearth;
using quant::QuantType;

namespace {

constexpr double kNominalGBs = 3000.0;  // H100 SXM HBM3, ~3.0-3.35 TB/s datasheet; ANCHORS.md measures 2979 copy

#define CK(expr)                                                                                   \
    do {                                                                                           \
        const cudaError_t e_ = (expr);                                                             \
        if (e_ != cudaSuccess) {                                                                   \
            std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #expr, cudaGetErrorString(e_)); \
            std::exit(1);                                                                          \
        }                                                                                          \
    } while (0)

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
    CK(cudaFree(a));
    CK(cudaFree(b));
    return median(gbs);
}

struct Row {
    const char* type;
    int64_t n_out, n_in, n_tokens;
    double weight_mb, us, gbs;
};

}  // namespace

int main() {
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

    std::vector<Row> rows;
    const QuantType types[] = {QuantType::f16, QuantType::q8_0, QuantType::q4_k};
    const int64_t shapes[][2] = {{4096, 4096}, {14336, 4096}, {4096, 14336}};  // {n_out, n_in}
    const int64_t token_counts[] = {1, 8};
    std::mt19937 rng(7);
    std::normal_distribution<float> dist(0.0f, 0.02f);
    for (QuantType type : types) {
        const auto& tr = quant::traits(type);
        for (const auto& shp : shapes) {
            const int64_t n_out = shp[0], n_in = shp[1];
            const size_t row_bytes = quant::row_size(type, n_in);
            const size_t w_bytes = row_bytes * n_out;
            // One random matrix, copied into enough buffers to exceed 4x L2 (and at least 4).
            std::vector<std::byte> w(w_bytes);
            std::vector<float> row(n_in);
            for (int64_t o = 0; o < n_out; ++o) {
                for (auto& v : row) v = dist(rng);
                tr.quantize_row(row.data(), w.data() + o * row_bytes, n_in);
            }
            const int n_copies = (int)std::max<size_t>(4, (4 * info.l2_bytes) / w_bytes + 1);
            std::vector<backend::cuda::DeviceBuffer> wd;
            for (int c = 0; c < n_copies; ++c) {
                auto b = backend::cuda::DeviceBuffer::allocate(dev, w_bytes);
                if (!b.ok()) {
                    std::fprintf(stderr, "%s\n", b.status().message().c_str());
                    return 1;
                }
                b->upload(stream, w.data(), w_bytes);
                wd.push_back(std::move(*b));
            }
            for (int64_t nt : token_counts) {
                std::vector<float> x(n_in * nt);
                for (auto& v : x) v = dist(rng) * 50;
                auto xd = backend::cuda::DeviceBuffer::allocate(dev, x.size() * 4);
                auto yd = backend::cuda::DeviceBuffer::allocate(dev, (size_t)n_out * nt * 4);
                if (!xd.ok() || !yd.ok()) return 1;
                xd->upload(stream, x.data(), x.size() * 4);
                // Warm up (module load), then capture `launches` calls rotating over the copies.
                for (int c = 0; c < n_copies; ++c) {
                    backend::matmul_cuda(stream, type, wd[c].as<std::byte>(), row_bytes, xd->as<float>(), yd->as<float>(),
                                         n_in, n_out, nt);
                }
                if (Status st = stream.synchronize(); !st.ok()) {
                    std::fprintf(stderr, "%s\n", st.message().c_str());
                    return 1;
                }
                const int launches = std::max(n_copies, 40) / n_copies * n_copies;
                cudaGraph_t graph;
                cudaGraphExec_t exec;
                CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
                for (int i = 0; i < launches; ++i) {
                    backend::matmul_cuda(stream, type, wd[i % n_copies].as<std::byte>(), row_bytes, xd->as<float>(),
                                         yd->as<float>(), n_in, n_out, nt);
                }
                CK(cudaStreamEndCapture(s, &graph));
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
                    us.push_back(ms * 1e3 / launches);
                }
                if (Status st = stream.synchronize(); !st.ok()) {
                    std::fprintf(stderr, "%s\n", st.message().c_str());
                    return 1;
                }
                CK(cudaGraphExecDestroy(exec));
                CK(cudaGraphDestroy(graph));
                CK(cudaEventDestroy(e0));
                CK(cudaEventDestroy(e1));
                const double t = median(us);
                rows.push_back({quant::type_name(type), n_out, n_in, nt, w_bytes / 1e6, t, w_bytes / (t * 1e-6) / 1e9});
                std::printf("%-5s %5lldx%-5lld tokens %lld: %8.2f us  %7.1f GB/s\n", quant::type_name(type),
                            (long long)n_out, (long long)n_in, (long long)nt, t, rows.back().gbs);
            }
        }
    }
    std::printf("\n| type | W [n_out x n_in] | tokens | weight MB | us / matmul | weight GB/s | of 3000 GB/s | of measured copy %.0f GB/s |\n",
                copy);
    std::printf("|---|---|---:|---:|---:|---:|---:|---:|\n");
    for (const Row& r : rows) {
        std::printf("| %s | %lld x %lld | %lld | %.1f | %.2f | %.0f | %.0f %% | %.0f %% |\n", r.type, (long long)r.n_out,
                    (long long)r.n_in, (long long)r.n_tokens, r.weight_mb, r.us, r.gbs, 100 * r.gbs / kNominalGBs,
                    100 * r.gbs / copy);
    }
    return 0;
}
