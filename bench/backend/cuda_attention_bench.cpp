// One layer of prefill attention on the GPU (backend/cuda/attention.h), Llama-3.1-8B's shape: 32
// query heads, 8 kv heads, head dim 128, f16 cache in blocks of 16. One causal prompt of n tokens
// per figure (--tokens, default 512,10000), random q, K and V. Prints the median time of --reps
// calls (default 10, after a warm-up) and TFLOP/s, counting 4 * head dim FLOPs per (query head,
// visible position) pair (QK^T and PV, causal: n (n + 1) / 2 pairs per head), and a checksum of
// the output (sum of |out|) to compare kernels that should agree. --offset P,...: the call's tokens
// come after P cached positions of the same sequence (a later step of a prompt cut into steps;
// default 0), one figure per (tokens, offset).
//   build/bench/cuda_attention_bench [--tokens 512,10000] [--offset 0,3584] [--reps 10]
//
// --decode S:C[:T],...: decode attention instead (the per-token kernels with the split workspace
// as model/cuda_decoder.cpp sizes it: attention_decode_splits, for each kernel; <= 32
// parts): S sequences of C cached positions each, T tokens per sequence (default 1, positions
// C - T .. C - 1), cache blocks of 32 in shuffled order. Each call reads a different copy of the
// cache ("layers", >= 256 MiB in all, so the reads come from DRAM as in a decode step, not from
// the 50 MB L2), on a stream with programmatic launches as the decoder's; the time is the median
// over --reps rounds of the mean per call. GB/s counts the K and V bytes of the calls' visible
// positions once per sequence (S * C * 8 kv heads * 128 * 2 halves). Per shape: attention_kernel
// (HEARTH_CUDA_DECODE_MMA=0, the baseline) and decode_mma_kernel, each at the split count the
// decoder gives it, then decode_mma_kernel at each of --splits (default 1,2,4,8,16,32), with the
// largest difference from the baseline's output.
//   build/bench/cuda_attention_bench --decode 32:516,1:4096 [--splits 1,4,16] [--reps 10]
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
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

struct DecodeShape { int n_seqs, ctx, per_seq; };

// One decode shape (see the file comment); exits on a CUDA error.
void bench_decode(cuda::Device& dev, const DecodeShape& shape, const std::vector<int>& split_list, int reps) {
    constexpr int kDecBlock = 32;
    const int n_seqs = shape.n_seqs, ctx = shape.ctx, per_seq = std::min(shape.per_seq, shape.ctx);
    const int64_t n = (int64_t)n_seqs * per_seq;
    cuda::Stream s(dev);
    s.set_programmatic(true);
    std::mt19937 rng(42);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    const int blocks_per_seq = (ctx + kDecBlock - 1) / kDecBlock, n_blocks = n_seqs * blocks_per_seq;
    const int64_t stride = kKvHeads * kHeadDim;                                // halves per cached position
    const size_t layer_halves = (size_t)n_blocks * kDecBlock * stride;        // K (or V) of one layer
    const size_t layer_bytes = layer_halves * 2;
    const int n_layers = (int)std::max<size_t>(2, ((size_t)256 << 20) / (2 * layer_bytes) + 1);
    std::vector<uint16_t> host(layer_halves);
    auto dk = cuda::DeviceBuffer::allocate(dev, layer_bytes * n_layers);
    auto dv = cuda::DeviceBuffer::allocate(dev, layer_bytes * n_layers);
    if (!dk.ok()) die("allocate", dk.status());
    if (!dv.ok()) die("allocate", dv.status());
    for (auto* b : {&*dk, &*dv}) {
        for (auto& h : host) h = f32_to_fp16(nd(rng));
        b->upload(s, host.data(), layer_bytes);
        for (int l = 1; l < n_layers; ++l)
            cudaMemcpyAsync(static_cast<std::byte*>(b->data()) + l * layer_bytes, b->data(), layer_bytes,
                            cudaMemcpyDeviceToDevice, static_cast<cudaStream_t>(s.handle()));
    }
    std::vector<int32_t> ids(n_blocks);
    std::iota(ids.begin(), ids.end(), 0);
    std::shuffle(ids.begin(), ids.end(), rng);
    std::vector<int32_t> seq(n), pos(n), end(n);
    for (int q = 0; q < n_seqs; ++q)
        for (int i = 0; i < per_seq; ++i) {
            const int64_t t = (int64_t)q * per_seq + i;
            seq[t] = q, pos[t] = ctx - per_seq + i, end[t] = pos[t] + 1;
        }
    std::vector<float> qv((size_t)n * kHeads * kHeadDim);
    for (auto& x : qv) x = nd(rng);
    auto dtable = upload(dev, s, ids), dseq = upload(dev, s, seq), dpos = upload(dev, s, pos), dend = upload(dev, s, end);
    auto dq = upload(dev, s, qv);
    auto dout = upload(dev, s, std::vector<float>(qv.size(), 0.0f));
    AttentionParams p;
    p.n_head = kHeads, p.n_head_kv = kKvHeads, p.head_dim_k = p.head_dim_v = kHeadDim;
    p.scale = 1.0f / std::sqrt((float)kHeadDim);
    const AttnIndexCuda idx{dtable.as<int32_t>(), blocks_per_seq, dseq.as<int32_t>(), dpos.as<int32_t>(),
                            dend.as<int32_t>()};
    // The decoder's split count for either kernel (attention_decode_splits).
    int n_sm = 0;
    cudaDeviceGetAttribute(&n_sm, cudaDevAttrMultiProcessorCount, 0);
    auto decoder_splits = [&](bool mma) { return attention_decode_splits(p, n_sm, mma).for_tokens(p, n); };
    const int dec_splits = decoder_splits(true);
    const size_t ws_bytes = attention_split_bytes(n, p, kAttnMaxSplits);
    auto ws = upload(dev, s, std::vector<std::byte>(ws_bytes));
    const double kv_bytes = (double)n_seqs * ctx * kKvHeads * kHeadDim * 2 * 2;
    const int calls = std::max(n_layers, 20);
    std::vector<float> base_out, out(qv.size());
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    auto stream = static_cast<cudaStream_t>(s.handle());
    auto run = [&](const char* name, const char* env, int splits) {
        setenv("HEARTH_CUDA_DECODE_MMA", env, 1);
        const AttnSplitCuda split{ws.data(), splits};
        auto call = [&](int layer) {
            const PagedKvCuda kv{static_cast<std::byte*>(dk->data()) + (size_t)layer * layer_bytes,
                                 static_cast<std::byte*>(dv->data()) + (size_t)layer * layer_bytes, kDecBlock, stride,
                                 stride};
            attention_cuda(s, dq.as<float>(), kv, idx, n, p, dout.as<float>(), split);
        };
        for (int l = 0; l < n_layers; ++l) call(l);  // warm-up
        std::vector<double> ms;
        for (int r = 0; r < reps; ++r) {
            cudaEventRecord(e0, stream);
            for (int i = 0; i < calls; ++i) call(i % n_layers);
            cudaEventRecord(e1, stream);
            if (const Status st = s.synchronize(); !st.ok()) die("attention_cuda", st);
            float t_ms = 0.0f;
            cudaEventElapsedTime(&t_ms, e0, e1);
            ms.push_back(t_ms / calls);
        }
        std::sort(ms.begin(), ms.end());
        const double med = ms[ms.size() / 2];
        call(0);
        dout.download(s, out.data(), out.size() * sizeof(float));
        if (const Status st = s.synchronize(); !st.ok()) die("download", st);
        if (base_out.empty()) base_out = out;
        double diff = 0.0;
        for (size_t i = 0; i < out.size(); ++i) diff = std::max(diff, (double)std::fabs(out[i] - base_out[i]));
        std::printf("| %d x %d (x%d) | %s | %d | %.2f | %.0f | %.2e |\n", n_seqs, ctx, per_seq, name, splits,
                    med * 1e3, kv_bytes / (med * 1e-3) / 1e9, diff);
    };
    run("attention_kernel", "0", decoder_splits(false));
    run("decode_mma_kernel", "1", dec_splits);
    for (const int sp : split_list)
        if (sp != dec_splits && sp <= kAttnMaxSplits) run("decode_mma_kernel", "1", sp);
    unsetenv("HEARTH_CUDA_DECODE_MMA");
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
}

int main(int argc, char** argv) {
    std::vector<int> tokens = {512, 10000}, offsets = {0}, split_list = {1, 2, 4, 8, 16, 32};
    std::vector<DecodeShape> decode;
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
        } else if (a == "--splits") {
            split_list = parse_list(next(), 1);
        } else if (a == "--decode") {
            const std::string list = next();
            for (size_t p = 0; p < list.size();) {
                const size_t q = std::min(list.find(',', p), list.size());
                DecodeShape d{1, 1, 1};
                if (std::sscanf(list.substr(p, q - p).c_str(), "%d:%d:%d", &d.n_seqs, &d.ctx, &d.per_seq) >= 2 &&
                    d.n_seqs > 0 && d.ctx > 0 && d.per_seq > 0)
                    decode.push_back(d);
                p = q + 1;
            }
        }
    }
    auto dev_r = cuda::Device::open(0);
    if (!dev_r.ok()) die("open device", dev_r.status());
    cuda::Device& dev = **dev_r;
    if (!decode.empty()) {
        std::printf("| seqs x ctx (tokens/seq) | kernel | splits | us | K+V GB/s | max diff vs first |\n"
                    "|---|---|---:|---:|---:|---:|\n");
        for (const DecodeShape& d : decode) bench_decode(dev, d, split_list, reps);
        return 0;
    }
    cuda::Stream s(dev);
    std::printf("| tokens | offset | ms | TFLOP/s | checksum |\n|---:|---:|---:|---:|---:|\n");
    for (size_t k = 0; k < tokens.size() * offsets.size(); ++k) {  // every (tokens, offset)
        const int n = tokens[k / offsets.size()], off = offsets[k % offsets.size()];
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
