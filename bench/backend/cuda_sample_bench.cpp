// Time of topk_rows_cuda (backend/cuda/sample.h) for decode-sized selections: 32 rows of an 8B
// llama's 128,256-token vocabulary at Ollama's top_k (40) and the largest k, wall clock per call
// over 200 calls, launches included (the figure the Engine pays per step when the candidates are
// selected on the device). Its correctness is tests/backend/cuda_sample_test.cpp's.
//   build/bench/cuda_sample_bench [rows] [cols]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "backend/cuda/device.h"
#include "backend/cuda/sample.h"

using namespace hearth;

int main(int argc, char** argv) {
    const int64_t rows = argc > 1 ? std::atoll(argv[1]) : 32, cols = argc > 2 ? std::atoll(argv[2]) : 128256;
    if (rows < 1 || rows > 65535 || cols < backend::kTopKMax) {
        std::fprintf(stderr, "cuda_sample_bench: rows must be 1..65535 and cols >= %d\n", backend::kTopKMax);
        return 1;
    }
    auto dev_r = backend::cuda::Device::open(0);
    if (!dev_r.ok()) {
        std::fprintf(stderr, "cuda_sample_bench: %s\n", dev_r.status().message().c_str());
        return 1;
    }
    backend::cuda::Device& dev = **dev_r;
    backend::cuda::Stream s(dev);
    std::vector<float> logits((size_t)(rows * cols));
    std::mt19937 rng(9);
    std::normal_distribution<float> g(0.0f, 3.0f);
    for (auto& x : logits) x = g(rng);
    auto alloc = [&](size_t bytes) {
        auto b = backend::cuda::DeviceBuffer::allocate(dev, bytes);
        if (!b.ok()) {
            std::fprintf(stderr, "cuda_sample_bench: %s\n", b.status().message().c_str());
            std::exit(1);
        }
        return std::move(b).value();
    };
    auto dl = alloc(logits.size() * sizeof(float));
    dl.upload(s, logits.data(), logits.size() * sizeof(float));
    std::printf("| rows x vocabulary | k | us per call |\n|---|---:|---:|\n");
    for (int k : {40, backend::kTopKMax}) {
        auto dids = alloc((size_t)(rows * k) * sizeof(int32_t));
        auto dvals = alloc((size_t)(rows * k) * sizeof(float));
        auto dws = alloc(std::max<size_t>(backend::topk_rows_workspace_bytes(rows, cols, k), 256));
        auto call = [&] {
            backend::topk_rows_cuda(s, dl.as<float>(), rows, cols, k, dids.as<int32_t>(), dvals.as<float>(), dws.data());
        };
        call();  // warm-up
        if (const Status st = s.synchronize(); !st.ok()) {
            std::fprintf(stderr, "cuda_sample_bench: %s\n", st.message().c_str());
            return 1;
        }
        const int n_iter = 200;
        const auto t0 = std::chrono::steady_clock::now();
        for (int i = 0; i < n_iter; ++i) call();
        if (const Status st = s.synchronize(); !st.ok()) {
            std::fprintf(stderr, "cuda_sample_bench: %s\n", st.message().c_str());
            return 1;
        }
        const double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / n_iter;
        std::printf("| %lld x %lld | %d | %.1f |\n", (long long)rows, (long long)cols, k, us);
    }
    std::printf("(%s)\n", dev.info().name.c_str());
    return 0;
}
