// One layer of prefill attention on the GPU (backend/cuda/attention.h), Llama-3.1-8B's shape: 32
// query heads, 8 kv heads, head dim 128, f16 cache in blocks of 16. One causal prompt of n tokens
// per figure (--tokens, default 512,10000), random q, K and V. Prints the median time of --reps
// calls (default 10, after a warm-up) and TFLOP/s, counting 4 * head dim FLOPs per (query head,
// visible position) pair (QK^T and PV, causal: n (n + 1) / 2 pairs per head), and a checksum of
// the output (sum of |out|) to compare kernels that should agree. --offset P,...: the call's tokens
// come after P cached positions of the same sequence (a later step of a prompt cut into steps;
// default 0), one figure per (tokens, offset).
//   build/bench/cuda_attention_bench [--tokens 512,10000] [--offset 0,3584] [--reps 10]
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "backend/cuda/attention.h"
#include "backend/cuda/device.h"
#include "base/fp16.h"

using namespace hearth;
using namespace hearth::backend;

namespace {

constexpr int kHeads = 32, kKvHeads = 8, kHeadDim = 128, kBlock = 16;

void die(const char* what, const Status& st) {
    std::fprintf(stderr, "cuda_attention_bench: %s: %s\n", what, st.message().c_str());
    std::exit(1);
}

template <class T>
cuda::DeviceBuffer upload(cuda::Device& dev, cuda::Stream& s, const std::vector<T>& v) {
    auto b = cuda::DeviceBuffer::allocate(dev, std::max<size_t>(v.size() * sizeof(T), 4));
    if (!b.ok()) die("allocate", b.status());
    b->upload(s, v.data(), v.size() * sizeof(T));
    return std::move(b).value();
}

}  // namespace

int main(int argc, char** argv) {
    std::vector<int> tokens = {512, 10000}, offsets = {0};
    int reps = 10;
    auto parse_list = [](const std::string& list, int min) {
        std::vector<int> v;
        for (size_t p = 0; p < list.size();) {
            const size_t q = std::min(list.find(',', p), list.size());
            v.push_back(std::max(min, std::atoi(list.substr(p, q - p).c_str())));
            p = q + 1;
        }
        return v;
    };
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
        if (a == "--reps") {
            reps = std::max(1, std::atoi(next().c_str()));
        } else if (a == "--tokens") {
            tokens = parse_list(next(), 1);
        } else if (a == "--offset") {
            offsets = parse_list(next(), 0);
        }
    }
    auto dev_r = cuda::Device::open(0);
    if (!dev_r.ok()) die("open device", dev_r.status());
    cuda::Device& dev = **dev_r;
    cuda::Stream s(dev);
    std::printf("| tokens | offset | ms | TFLOP/s | checksum |\n|---:|---:|---:|---:|---:|\n");
    for (const int n : tokens)
    for (const int off : offsets) {
        std::mt19937 rng(42);
        std::normal_distribution<float> nd(0.0f, 1.0f);
        const int n_blocks = (off + n + kBlock - 1) / kBlock;
        const int64_t stride = kKvHeads * kHeadDim;  // halves per cached position
        std::vector<uint16_t> kc((size_t)n_blocks * kBlock * stride), vc(kc.size());
        for (auto& h : kc) h = f32_to_fp16(nd(rng));
        for (auto& h : vc) h = f32_to_fp16(nd(rng));
        std::vector<float> q((size_t)n * kHeads * kHeadDim);
        for (auto& x : q) x = nd(rng);
        std::vector<int32_t> table(n_blocks), seq(n, 0), pos(n), end(n);
        for (int b = 0; b < n_blocks; ++b) table[b] = b;
        for (int t = 0; t < n; ++t) pos[t] = off + t, end[t] = off + t + 1;
        auto dk = upload(dev, s, kc), dv = upload(dev, s, vc), dq = upload(dev, s, q);
        auto dtable = upload(dev, s, table), dseq = upload(dev, s, seq), dpos = upload(dev, s, pos);
        auto dend = upload(dev, s, end);
        auto dout = upload(dev, s, std::vector<float>(q.size(), 0.0f));
        AttentionParams p;
        p.n_head = kHeads, p.n_head_kv = kKvHeads, p.head_dim_k = p.head_dim_v = kHeadDim;
        p.scale = 1.0f / std::sqrt((float)kHeadDim);
        const PagedKvCuda kv{dk.data(), dv.data(), kBlock, stride, stride};
        const AttnIndexCuda idx{dtable.as<int32_t>(), n_blocks, dseq.as<int32_t>(), dpos.as<int32_t>(),
                                dend.as<int32_t>()};
        cudaEvent_t e0, e1;
        cudaEventCreate(&e0);
        cudaEventCreate(&e1);
        auto stream = static_cast<cudaStream_t>(s.handle());
        std::vector<double> ms;
        for (int r = 0; r <= reps; ++r) {
            cudaEventRecord(e0, stream);
            attention_cuda(s, dq.as<float>(), kv, idx, n, p, dout.as<float>());
            cudaEventRecord(e1, stream);
            const Status st = s.synchronize();
            if (!st.ok()) die("attention_cuda", st);
            float t_ms = 0.0f;
            cudaEventElapsedTime(&t_ms, e0, e1);
            if (r > 0) ms.push_back(t_ms);  // the first call is the warm-up
        }
        cudaEventDestroy(e0);
        cudaEventDestroy(e1);
        std::sort(ms.begin(), ms.end());
        const double med = ms[ms.size() / 2];
        const double flops = 4.0 * kHeadDim * kHeads * ((double)n * off + (double)n * (n + 1) / 2);
        std::vector<float> out(q.size());
        dout.download(s, out.data(), out.size() * sizeof(float));
        if (const Status st = s.synchronize(); !st.ok()) die("download", st);
        double sum = 0.0;
        for (const float x : out) sum += std::fabs(x);
        std::printf("| %d | %d | %.3f | %.1f | %.6e |\n", n, off, med, flops / (med * 1e-3) / 1e12, sum);
    }
    return 0;
}
