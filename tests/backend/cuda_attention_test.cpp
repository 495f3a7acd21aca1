// CUDA paged attention and KV write (backend/cuda/attention.h) against attention_ref over an f16
// cache: several sequences with shuffled block tables, prefill runs and lone decode tokens in
// one batch, GQA groups of 1 to 128 (more than one block's worth of warps), head dims 32..256
// (K and V of different sizes) and the wide ones past 256 (K up to 576, V up to 512: MLA's
// absorbed form, one kv head), padded row strides, a sliding window, softcap and sinks, and
// chunked attention's per-token first visible position (AttnIndexCuda::kv_begin). Decode-shaped
// calls (one token of each of many sequences) through both per-token kernels (attention_kernel and
// the tensor-core decode_mma_kernel), and a decode token's independence of the rest of its call.
// Compiles without CUDA (then skips); with CUDA but no GPU it skips with the reason.
//
// Tolerance, per (token, head), with S = scale * max over visible j of sum_i |q_i k_ji| and
// V = the largest |v| of the kv head: both sides compute the same scores up to the order of an
// f32 sum of hd_k products (each side <= hd_k * 2^-24 * sum|q k| worst case), then exponentials
// 2-4 ulp apart (expf vs ggml_vexp), then a convex combination of V rows:
//   |out - ref| <= V * (1e-5 + hd_k * 1.2e-7 * S)
// (a wrong slot, head or position moves an output by O(0.1 V) for this data). Outputs are
// poisoned with NaN first. The flash kernel (prefill) adds its f16 roundings to the bound
// (attention.h; derived where the test adds them). The optional int8 output (out_q8) must equal
// quantize_activations_cuda of the f32 output bit for bit (codes and block scales).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "backend/ref/attention.h"
#include "base/fp16.h"

#ifdef HEARTH_HAVE_CUDA
#include "backend/cuda/attention.h"
#include "backend/cuda/device.h"
#include "backend/cuda/matmul.h"
#include "backend/cuda_test_util.h"
#endif

namespace hearth::backend {
namespace {

#ifdef HEARTH_HAVE_CUDA

struct Case {
    int n_head, n_head_kv, hdk, hdv, block_size;
    int sliding_window = 0;
    float softcap = 0.0f;
    bool sinks = false;
    int row_pad = 0;  // extra halves per cached row
};

// Sequences: (length, first position of this batch's tokens): tokens [first, length) of each.
struct Seq { int length, first; };

// n_splits > 1: the sequence-split (flash-decoding) path, run twice on one workspace; the second
// run must equal the first bit for bit (the counters were left at zero). q8: also the int8
// output, on a stream with programmatic launches (launch.cuh). chunked: a random kv_begin per
// token (AttnIndexCuda), checked against attention_ref run per token with the sliding window
// that starts at the same position (the reference has no kv_begin).
// The default batch: the last sequence has 2 tokens at a 700-position context, so the split path
// merges many non-empty parts of several chunks each; a flash tile mixes sequences.
const std::vector<Seq> kDefaultSeqs = {{70, 0}, {1, 0}, {133, 132}, {45, 40}, {700, 698}};

// Sets an environment variable for the scope (attention.cu reads HEARTH_CUDA_FLASH at every call).
class ScopedEnv {
public:
    ScopedEnv(const char* name, const char* value) : name_(name) {
        if (const char* old = std::getenv(name)) old_ = old, had_ = true;
        setenv(name, value, 1);
    }
    ~ScopedEnv() { had_ ? (void)setenv(name_, old_.c_str(), 1) : (void)unsetenv(name_); }
    ScopedEnv(const ScopedEnv&) = delete;
    ScopedEnv& operator=(const ScopedEnv&) = delete;

private:
    const char* name_;
    std::string old_;
    bool had_ = false;
};

// expect_flash: 1 the call must take the flash kernel, 0 must not, -1 either. skip: the batch
// leaves out its first `skip` tokens (the data of the others is as without skip). result: the
// output, for bitwise comparisons between calls. empty_seq >= 0: that sequence's tokens (and
// every 7th other token) see no position.
void run_case(cuda::Device& dev, const Case& c, uint32_t seed, int n_splits = 1, bool q8 = false,
              bool chunked = false, const std::vector<Seq>& seqs = kDefaultSeqs, int expect_flash = -1,
              int skip = 0, std::vector<float>* result = nullptr, int empty_seq = -1) {
    SCOPED_TRACE(testing::Message() << "heads " << c.n_head << "/" << c.n_head_kv << " hd " << c.hdk << "/" << c.hdv
                                    << " block " << c.block_size << " window " << c.sliding_window << " softcap "
                                    << c.softcap << " sinks " << c.sinks << " splits " << n_splits << " q8 " << q8
                                    << " chunked " << chunked);
    cuda::Stream s(dev);
    s.set_programmatic(q8);
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    const int n_seqs = (int)seqs.size();
    int max_blocks = 0, total_blocks = 0;
    for (const Seq& q : seqs) {
        const int nb = (q.length + c.block_size - 1) / c.block_size;
        max_blocks = std::max(max_blocks, nb);
        total_blocks += nb;
    }
    const int n_blocks = total_blocks + 3;
    std::vector<int32_t> ids(n_blocks);
    std::iota(ids.begin(), ids.end(), 0);
    std::shuffle(ids.begin(), ids.end(), rng);
    std::vector<std::vector<int32_t>> tables(n_seqs);
    std::vector<int32_t> flat((size_t)n_seqs * max_blocks, -1);
    int next = 0;
    for (int q = 0; q < n_seqs; ++q)
        for (int b = 0; b < (seqs[q].length + c.block_size - 1) / c.block_size; ++b) {
            tables[q].push_back(ids[next++]);
            flat[(size_t)q * max_blocks + b] = tables[q].back();
        }
    // Batch.
    std::vector<int32_t> seq_of, pos, kv_end;
    for (int q = 0; q < n_seqs; ++q)
        for (int p = seqs[q].first; p < seqs[q].length; ++p) seq_of.push_back(q), pos.push_back(p), kv_end.push_back(p + 1);
    int64_t n_tokens = (int64_t)pos.size();
    // First visible position of each token: kv_begin when chunked (from its own generator, so the
    // other cases keep their data), else the sliding window's start. kv_begin cycles through 0,
    // the token itself, a start within 80 positions (inside or before a window of 50, mostly not
    // on a block or 32-position chunk boundary) and a start anywhere in [0, pos].
    std::vector<int32_t> kv_begin(n_tokens, 0), lo(n_tokens);
    std::mt19937 begin_rng(seed * 7919u + 1u);
    for (int64_t t = 0; t < n_tokens; ++t) {
        const int32_t window_lo = c.sliding_window > 0 ? std::max(0, pos[t] - c.sliding_window + 1) : 0;
        if (chunked) {
            switch (t % 4) {
            case 0: kv_begin[t] = 0; break;
            case 1: kv_begin[t] = pos[t]; break;
            case 2: kv_begin[t] = std::uniform_int_distribution<int32_t>(std::max(0, pos[t] - 80), pos[t])(begin_rng);
                    break;
            default: kv_begin[t] = std::uniform_int_distribution<int32_t>(0, pos[t])(begin_rng); break;
            }
        }
        lo[t] = std::max(window_lo, kv_begin[t]);
        // Empty windows (the contract gives zeros): every token of sequence empty_seq, and every
        // 7th token of the others in that case.
        if (empty_seq >= 0 && (seq_of[t] == empty_seq || t % 7 == 3)) kv_end[t] = lo[t];
    }
    // Cache rows (f16), every slot random.
    const int k_width = c.n_head_kv * c.hdk, v_width = c.n_head_kv * c.hdv;
    const int64_t k_stride = k_width + c.row_pad, v_stride = v_width + c.row_pad;
    const int64_t n_slots = (int64_t)n_blocks * c.block_size;
    std::vector<uint16_t> kc(n_slots * k_stride), vc(n_slots * v_stride);
    for (auto& h : kc) h = f32_to_fp16(nd(rng));
    for (auto& h : vc) h = f32_to_fp16(nd(rng));
    std::vector<float> q(n_tokens * c.n_head * c.hdk), sinks(c.n_head);
    for (auto& x : q) x = nd(rng);
    for (auto& x : sinks) x = nd(rng);
    if (skip > 0) {
        for (auto* v : {&seq_of, &pos, &kv_end, &kv_begin, &lo}) v->erase(v->begin(), v->begin() + skip);
        q.erase(q.begin(), q.begin() + (int64_t)skip * c.n_head * c.hdk);
        n_tokens -= skip;
    }

    AttentionParams p;
    p.n_head = c.n_head, p.n_head_kv = c.n_head_kv, p.head_dim_k = c.hdk, p.head_dim_v = c.hdv;
    p.scale = 1.0f / std::sqrt((float)c.hdk);
    p.sliding_window = c.sliding_window;
    p.softcap = c.softcap;
    p.sinks = c.sinks ? sinks.data() : nullptr;
    PagedKvView view{reinterpret_cast<const std::byte*>(kc.data()), reinterpret_cast<const std::byte*>(vc.data()),
                     c.block_size, quant::QuantType::f16, (size_t)k_stride * 2, (size_t)v_stride * 2};
    std::vector<const int32_t*> tptr(n_tokens);
    for (int64_t t = 0; t < n_tokens; ++t) tptr[t] = tables[seq_of[t]].data();
    std::vector<float> want(n_tokens * c.n_head * c.hdv);
    // The reference per token (each token's result depends on its own rows only), on every core:
    // the long calls' reference is most of these tests' time on a GPU machine.
    auto reference = [&](int64_t t) {
        AttentionParams pt = p;
        if (chunked) pt.sliding_window = pos[t] + 1 - lo[t];  // >= 1: the reference's window then starts at lo[t]
        attention_ref(q.data() + t * c.n_head * c.hdk, view, tptr.data() + t, pos.data() + t, kv_end.data() + t, 1, pt,
                      want.data() + t * c.n_head * c.hdv);
    };
    {
        const int64_t n_threads = std::clamp<int64_t>(std::thread::hardware_concurrency(), 1, 32);
        std::atomic<int64_t> next{0};
        std::vector<std::thread> pool;
        for (int64_t i = 0; i < n_threads; ++i)
            pool.emplace_back([&] {
                for (int64_t t; (t = next.fetch_add(16)) < n_tokens;)
                    for (int64_t u = t; u < std::min(t + 16, n_tokens); ++u) reference(u);
            });
        for (auto& th : pool) th.join();
    }

    auto up = [&](const void* src, size_t bytes) {
        auto b = cuda::DeviceBuffer::allocate(dev, std::max<size_t>(bytes, 4));
        EXPECT_TRUE(b.ok());
        b->upload(s, src, bytes);
        return std::move(b).value();
    };
    auto dk = up(kc.data(), kc.size() * 2), dv = up(vc.data(), vc.size() * 2);
    auto dq = up(q.data(), q.size() * 4), dsinks = up(sinks.data(), sinks.size() * 4);
    auto dflat = up(flat.data(), flat.size() * 4), dseq = up(seq_of.data(), seq_of.size() * 4);
    auto dpos = up(pos.data(), pos.size() * 4), dend = up(kv_end.data(), kv_end.size() * 4);
    auto dbegin = up(kv_begin.data(), kv_begin.size() * 4);
    const std::vector<float> nan(want.size(), std::numeric_limits<float>::quiet_NaN());
    auto dout = up(nan.data(), nan.size() * 4);
    PagedKvCuda kv{dk.data(), dv.data(), c.block_size, k_stride, v_stride};
    AttnIndexCuda idx{dflat.as<int32_t>(), max_blocks, dseq.as<int32_t>(), dpos.as<int32_t>(), dend.as<int32_t>()};
    if (chunked) idx.kv_begin = dbegin.as<int32_t>();
    AttentionParams dp = p;
    dp.sinks = c.sinks ? dsinks.as<float>() : nullptr;
    const size_t ws_bytes = attention_split_bytes(n_tokens, dp, n_splits);
    const std::vector<std::byte> zeros(ws_bytes);
    auto ws = up(zeros.data(), ws_bytes);
    // expect_flash 0: rows_only, so that unsplit calls of 16+ tokens also take the per-token kernels.
    const AttnSplitCuda split{n_splits > 1 ? ws.data() : nullptr, n_splits, /*rows_only=*/expect_flash == 0};
    const int64_t n_in = (int64_t)c.n_head * c.hdv;
    const size_t q8_bytes = activation_q8_bytes(n_in, n_tokens);
    const std::vector<std::byte> q8_poison(q8_bytes, std::byte{0x7f});
    auto dq8 = up(q8_poison.data(), q8_bytes), dq8_ref = up(q8_poison.data(), q8_bytes);
    const bool flash = attention_cuda_uses_flash(dp, kv, n_tokens, split, q8 ? dq8.data() : nullptr);
    if (expect_flash >= 0) {
        ASSERT_EQ(flash, expect_flash == 1) << "flash kernel choice";
    }
    attention_cuda(s, dq.as<float>(), kv, idx, n_tokens, dp, dout.as<float>(), split, q8 ? dq8.data() : nullptr);
    if (q8) quantize_activations_cuda(s, dout.as<float>(), dq8_ref.data(), n_in, n_tokens);
    std::vector<float> got(want.size());
    dout.download(s, got.data(), got.size() * 4);
    const Status st = s.synchronize();
    ASSERT_TRUE(st.ok()) << st.message();
    if (q8) {
        std::vector<std::byte> a(q8_bytes), b(q8_bytes);
        dq8.download(s, a.data(), q8_bytes);
        dq8_ref.download(s, b.data(), q8_bytes);
        ASSERT_TRUE(s.synchronize().ok());
        ASSERT_EQ(0, std::memcmp(a.data(), b.data(), q8_bytes)) << "int8 output differs from quantize_activations_cuda";
    }
    if (n_splits > 1) {
        auto dout2 = up(nan.data(), nan.size() * 4);
        attention_cuda(s, dq.as<float>(), kv, idx, n_tokens, dp, dout2.as<float>(), split);
        std::vector<float> again(want.size());
        dout2.download(s, again.data(), again.size() * 4);
        ASSERT_TRUE(s.synchronize().ok());
        ASSERT_EQ(0, std::memcmp(again.data(), got.data(), got.size() * 4)) << "second split run differs";
    }

    const int group = c.n_head / c.n_head_kv;
    double worst = 0.0;
    for (int64_t t = 0; t < n_tokens; ++t) {
        for (int h = 0; h < c.n_head; ++h) {
            const int kvh = h / group;
            const float* qh = q.data() + (t * c.n_head + h) * c.hdk;
            double S = 0.0, vmax = 0.0;
            for (int32_t j = lo[t]; j < kv_end[t]; ++j) {
                const int64_t slot = (int64_t)tables[seq_of[t]][j / c.block_size] * c.block_size + j % c.block_size;
                double sum = 0.0;
                for (int i = 0; i < c.hdk; ++i) sum += std::fabs(qh[i] * fp16_to_f32(kc[slot * k_stride + kvh * c.hdk + i]));
                S = std::max(S, sum * p.scale);
                for (int i = 0; i < c.hdv; ++i) vmax = std::max<double>(vmax, std::fabs(fp16_to_f32(vc[slot * v_stride + kvh * c.hdv + i])));
            }
            double tol = vmax * (1e-5 + c.hdk * 1.2e-7 * S) + 1e-30;
            // The flash kernel's f16 query (scores off by <= 2^-11 S: the weights e^s move by a
            // factor within e^(+-2^-10 S), so their convex combination by <= ~2.2 * 2^-11 S of V)
            // and f16 probabilities (each off by 2^-11 relative, or 2^-25 absolute when subnormal,
            // against a normalizer >= 1 that sums the same rounded values: twice that).
            if (flash)
                tol += vmax * (2.2 * std::ldexp(S, -11) + std::ldexp(1.0, -10) + (kv_end[t] - lo[t]) * std::ldexp(1.0, -24));
            for (int d = 0; d < c.hdv; ++d) {
                const size_t i = (t * c.n_head + h) * c.hdv + d;
                const double err = std::fabs((double)got[i] - want[i]);
                ASSERT_LE(err, tol) << "token " << t << " (pos " << pos[t] << ", first visible " << lo[t] << ") head "
                                    << h << " d " << d << " got " << got[i] << " want " << want[i];
                worst = std::max(worst, err / tol);
            }
        }
    }
    if (result) *result = got;
    std::printf("  attention heads %d/%d hd %d/%d splits %d%s%s: worst error %.3f of the bound\n", c.n_head,
                c.n_head_kv, c.hdk, c.hdv, n_splits, chunked ? " chunked" : "", flash ? " flash" : "", worst);
}

TEST(CudaAttention, MatchesReference) {
    CUDA_OPEN_DEVICE_OR_SKIP(dev);
    const Case cases[] = {
        {8, 2, 64, 64, 16},
        {4, 4, 128, 128, 32},
        {32, 2, 128, 128, 16},         // group 16: two blocks of 8 warps per kv head
        {6, 2, 32, 32, 7, 0, 0.0f, false, 2},  // odd block size, padded rows
        {4, 1, 96, 96, 16},
        {8, 8, 256, 256, 64},
        {4, 2, 192, 128, 16},          // K and V head dims differ
        {8, 4, 64, 64, 16, 50},        // sliding window
        {4, 2, 64, 64, 16, 0, 30.0f, true},  // softcap and sinks
    };
    uint32_t seed = 100;
    for (const Case& c : cases) run_case(dev, c, seed++);
}

// The same cases through the per-token kernel where the flash kernel would take them.
TEST(CudaAttention, RowKernelMatchesReference) {
    CUDA_OPEN_DEVICE_OR_SKIP(dev);
    const ScopedEnv off("HEARTH_CUDA_FLASH", "0");
    const Case cases[] = {
        {8, 2, 64, 64, 16},
        {32, 8, 128, 128, 16},
        {4, 1, 96, 96, 16},
        {8, 4, 64, 64, 16, 50},
        {4, 2, 64, 64, 16, 0, 30.0f, true},
    };
    uint32_t seed = 150;
    for (const Case& c : cases) run_case(dev, c, seed++, 1, false, false, kDefaultSeqs, /*expect_flash=*/0);
}

// The flash kernel: long prompts (many K/V tiles, a prompt continued from position 250, a short
// one), tiles that straddle sequences (the default batch), GQA groups of 1, 4, 7 (18 tokens per
// 128-row tile, two rows unused), 8 and 160 (head chunks of 128 per kv head, the second mostly
// empty), head dims 64, 96 and 128, a sliding window, softcap and sinks, chunked attention's
// kv_begin; and calls of over 4,000 tokens (many tiles of many sequences).
TEST(CudaAttention, FlashPrefillMatchesReference) {
    CUDA_OPEN_DEVICE_OR_SKIP(dev);
    const std::vector<Seq> long_seqs = {{400, 0}, {260, 200}, {90, 0}};
    const Case cases[] = {
        {32, 8, 128, 128, 16},                 // Llama-3.1-8B's heads
        {32, 8, 64, 64, 32},                   // Llama-3.2-1B's heads
        {4, 4, 128, 128, 32},                  // group 1: 128 tokens per tile
        {28, 4, 128, 128, 16},                 // group 7
        {160, 1, 64, 64, 16},                  // group 160: two head chunks
        {8, 1, 96, 96, 16},                    // group 8, head dim 96
        {8, 4, 128, 128, 16, 100},             // sliding window
        {8, 2, 128, 128, 16, 0, 30.0f, true},  // softcap and sinks
    };
    uint32_t seed = 700;
    for (const Case& c : cases) {
        run_case(dev, c, seed++, 1, false, false, long_seqs, /*expect_flash=*/1);
        run_case(dev, c, seed++, 1, false, false, kDefaultSeqs, 1);
        run_case(dev, c, seed++, 1, false, /*chunked=*/true, long_seqs, 1);
    }
    // Calls of 4,000+ tokens: 61 short prompts and a longer one, or 64 short ones (the CPU
    // reference stays cheap: its cost grows with the square of each prompt, not of the call).
    std::vector<Seq> many_seqs(61, Seq{64, 0});
    many_seqs.push_back({500, 0});
    const std::vector<Seq> short_seqs(64, Seq{64, 0});
    run_case(dev, {32, 8, 128, 128, 16}, seed++, 1, false, false, many_seqs, 1);
    run_case(dev, {4, 2, 64, 64, 32, 0, 30.0f, true}, seed++, 1, false, /*chunked=*/true, many_seqs, 1);
    run_case(dev, {28, 4, 128, 128, 16, 100}, seed++, 1, false, false, short_seqs, 1);
}

// Tokens whose window is empty get zeros from the flash kernel, also when a whole run of a tile
// (the second sequence, 60 tokens) has nothing to see, before and between runs that do.
TEST(CudaAttention, FlashEmptyWindowsGiveZeros) {
    CUDA_OPEN_DEVICE_OR_SKIP(dev);
    const std::vector<Seq> seqs = {{100, 30}, {90, 30}, {120, 0}};
    for (const Case& c : {Case{32, 8, 128, 128, 16}, Case{8, 2, 64, 64, 16, 0, 30.0f, true}})
        run_case(dev, c, 900, 1, false, false, seqs, 1, 0, nullptr, /*empty_seq=*/1);
}

// A token's flash result does not depend on the tile it shares: the batch without its first 5
// tokens (every tile then holds other tokens and straddles the sequences elsewhere) gives the
// remaining tokens the same bits; in short calls and in calls of 4404 and 4399 tokens.
TEST(CudaAttention, FlashResultIndependentOfTile) {
    CUDA_OPEN_DEVICE_OR_SKIP(dev);
    const std::vector<Seq> seqs = {{200, 0}, {330, 250}, {90, 0}};
    for (const Case& c : {Case{32, 8, 128, 128, 16}, Case{28, 4, 128, 128, 16, 100}, Case{8, 2, 64, 64, 16, 0, 30.0f, true}}) {
        std::vector<float> all, part;
        run_case(dev, c, 800, 1, false, false, seqs, 1, 0, &all);
        run_case(dev, c, 800, 1, false, false, seqs, 1, 5, &part);
        const size_t off = (size_t)5 * c.n_head * c.hdv;
        ASSERT_EQ(all.size(), part.size() + off);
        ASSERT_EQ(0, std::memcmp(all.data() + off, part.data(), part.size() * sizeof(float)))
            << "a token's flash output depends on its tile";
    }
    std::vector<Seq> many_seqs(61, Seq{64, 0});
    many_seqs.push_back({500, 0});
    for (const Case& c : {Case{32, 8, 128, 128, 16}, Case{8, 2, 64, 64, 16, 0, 30.0f, true}}) {
        std::vector<float> all, part;
        run_case(dev, c, 810, 1, false, false, many_seqs, 1, 0, &all);
        run_case(dev, c, 810, 1, false, false, many_seqs, 1, 5, &part);
        const size_t off = (size_t)5 * c.n_head * c.hdv;
        ASSERT_EQ(all.size(), part.size() + off);
        ASSERT_EQ(0, std::memcmp(all.data() + off, part.data(), part.size() * sizeof(float)))
            << "a token's flash output in a long call depends on its tile";
    }
}

// Flash-decoding: the same cases split over the sequence into 2, 5 and 16 parts (parts of whole
// 32-position chunks; with these sequences some parts are empty).
// The decoder's split counts (host arithmetic, no device): Llama-3.1-8B's heads on a 132-SM
// H100 take 16 parts for one token on the tensor-core kernel, 2 at 32 tokens, 1 at 64; the
// per-token kernel 32 for one token and 5 at 32 tokens (a 1,280-block grid). Groups past 8 heads
// count their head chunks; a bad head count gives one part.
TEST(CudaAttention, DecodeSplitCounts) {
    AttentionParams p;
    p.n_head = 32, p.n_head_kv = 8, p.head_dim_k = p.head_dim_v = 128;
    const AttnDecodeSplits mma = attention_decode_splits(p, 132, true), plain = attention_decode_splits(p, 132, false);
    EXPECT_EQ(mma.max_splits, 16);
    EXPECT_EQ(mma.for_tokens(p, 1), 16);
    EXPECT_EQ(mma.for_tokens(p, 32), 2);
    EXPECT_EQ(mma.for_tokens(p, 64), 1);
    EXPECT_EQ(plain.max_splits, 32);
    EXPECT_EQ(plain.for_tokens(p, 1), 32);
    EXPECT_EQ(plain.for_tokens(p, 32), 5);
    p.n_head = 64, p.n_head_kv = 2;  // groups of 32 heads: 4 blocks per (token, kv head)
    EXPECT_EQ(attention_decode_splits(p, 132, true).max_splits, 16);
    EXPECT_EQ(attention_decode_splits(p, 132, false).for_tokens(p, 64), 3);
    p.n_head_kv = 0;
    EXPECT_EQ(attention_decode_splits(p, 132, true).max_splits, 1);
    EXPECT_EQ(attention_decode_splits(p, 132, true).for_tokens(p, 4), 1);
}

TEST(CudaAttention, SplitOverSequenceMatchesReference) {
    CUDA_OPEN_DEVICE_OR_SKIP(dev);
    const Case cases[] = {
        {32, 8, 128, 128, 16},                // Llama-3.1-8B's heads
        {32, 2, 128, 128, 16},                // group 16: two blocks of 8 warps per kv head
        {6, 2, 32, 32, 7, 0, 0.0f, false, 2},  // odd block size, padded rows
        {4, 2, 192, 128, 16},                 // K and V head dims differ
        {8, 4, 64, 64, 16, 50},               // sliding window
        {4, 2, 64, 64, 16, 0, 30.0f, true},   // softcap and sinks
    };
    uint32_t seed = 200;
    for (const int n_splits : {2, 5, 16})
        for (const Case& c : cases) run_case(dev, c, seed++, n_splits);
}

// Decode-shaped calls (decode_mma_kernel for head dims 64, 96 and 128): one token of each of
// many sequences, contexts from 1 position to past a thousand (one step, partial steps, parts of
// whole 32-position chunks, empty parts), unsplit and split into 5 and 32 parts, and sequences
// with 3 tokens each; GQA groups of 1, 4, 7, 8 and 16 (two blocks of 8 heads per kv head), padded
// rows, a sliding window, softcap and sinks, kv_begin, the int8 output, empty windows; and one
// sequence of 20,000 positions.
std::vector<Seq> decode_seqs(int per_seq) {
    std::vector<Seq> seqs;
    for (const int c : {1, 2, 15, 16, 17, 31, 33, 64, 100, 129, 300, 516, 700, 1025, 1500})
        seqs.push_back({c, std::max(0, c - per_seq)});
    return seqs;
}

TEST(CudaAttention, DecodeMatchesReference) {
    CUDA_OPEN_DEVICE_OR_SKIP(dev);
    const Case cases[] = {
        {32, 8, 128, 128, 32},                 // Llama-3.1-8B's heads and cache blocks
        {32, 8, 64, 64, 16},                   // Llama-3.2-1B's heads
        {8, 8, 128, 128, 16},                  // group 1
        {28, 4, 128, 128, 16, 0, 0.0f, false, 8},  // group 7, padded rows
        {8, 1, 96, 96, 16},                    // group 8, head dim 96
        {32, 2, 128, 128, 16},                 // group 16: two blocks per kv head
        {8, 4, 128, 128, 16, 100},             // sliding window
        {8, 2, 64, 64, 16, 0, 30.0f, true},    // softcap and sinks
    };
    uint32_t seed = 1000;
    for (const Case& c : cases)
        for (const int n_splits : {1, 5, 32})
            run_case(dev, c, seed++, n_splits, false, false, decode_seqs(1), /*expect_flash=*/0);
    run_case(dev, cases[0], seed++, 5, false, false, decode_seqs(3), 0);
    run_case(dev, cases[0], seed++, 5, /*q8=*/true, false, decode_seqs(1), 0);
    run_case(dev, cases[7], seed++, 32, true, false, decode_seqs(1), 0);
    run_case(dev, cases[0], seed++, 5, false, /*chunked=*/true, decode_seqs(3), 0);
    run_case(dev, cases[6], seed++, 32, false, true, decode_seqs(1), 0);
    run_case(dev, cases[0], seed++, 5, false, false, decode_seqs(1), 0, 0, nullptr, /*empty_seq=*/3);
    // One sequence at 20,000 positions, unsplit: the longest walk per warp (O accumulates 300+ steps).
    run_case(dev, cases[0], seed++, 1, false, false, {{20000, 19999}}, 0);
    run_case(dev, cases[0], seed++, 16, false, false, {{20000, 19999}}, 0);
}

// A decode token's result does not depend on the other sequences of the call: the call without
// its first 5 tokens gives the others the same bits (same split count).
TEST(CudaAttention, DecodeResultIndependentOfBatch) {
    CUDA_OPEN_DEVICE_OR_SKIP(dev);
    for (const Case& c : {Case{32, 8, 128, 128, 32}, Case{8, 2, 64, 64, 16, 0, 30.0f, true}})
        for (const int n_splits : {1, 5}) {
            std::vector<float> all, part;
            run_case(dev, c, 1100, n_splits, false, false, decode_seqs(2), 0, 0, &all);
            run_case(dev, c, 1100, n_splits, false, false, decode_seqs(2), 0, 5, &part);
            const size_t off = (size_t)5 * c.n_head * c.hdv;
            ASSERT_EQ(all.size(), part.size() + off);
            ASSERT_EQ(0, std::memcmp(all.data() + off, part.data(), part.size() * sizeof(float)))
                << "a decode token's output depends on the other tokens of its call";
        }
}

// attention_kernel where decode_mma_kernel would run (HEARTH_CUDA_DECODE_MMA=0): decode shapes,
// split and not, with the int8 output.
TEST(CudaAttention, PerTokenKernelDecodeMatchesReference) {
    CUDA_OPEN_DEVICE_OR_SKIP(dev);
    const ScopedEnv off("HEARTH_CUDA_DECODE_MMA", "0");
    uint32_t seed = 1200;
    for (const Case& c : {Case{32, 8, 128, 128, 32}, Case{32, 8, 64, 64, 16}, Case{8, 2, 64, 64, 16, 0, 30.0f, true}})
        for (const int n_splits : {1, 5}) run_case(dev, c, seed++, n_splits, /*q8=*/true, false, decode_seqs(1), 0);
}

// The int8 output (out_q8) equals quantize_activations_cuda of the f32 output, split or not,
// for head dims of one, two, three (a half-warp row) and four blocks of 32 per lane group.
TEST(CudaAttention, Int8OutputEqualsQuantizedOutput) {
    CUDA_OPEN_DEVICE_OR_SKIP(dev);
    const Case cases[] = {
        {32, 8, 128, 128, 16},               // Llama-3.1-8B's heads
        {32, 8, 64, 64, 16},                 // Llama-3.2-1B's heads
        {4, 1, 96, 96, 16},                  // 3 blocks per head: the second lane group half-empty
        {8, 8, 256, 256, 64},
        {4, 2, 192, 32, 16},                 // one block per head
        {4, 2, 64, 64, 16, 0, 30.0f, true},  // softcap and sinks
    };
    uint32_t seed = 300;
    for (const int n_splits : {1, 5})
        for (const Case& c : cases) run_case(dev, c, seed++, n_splits, /*q8=*/true);
}

// Chunked attention: a random kv_begin per token (0, the token itself, inside or before a sliding
// window, mid-block), unsplit and split over the sequence (the parts are sized from [lo, kv_end)),
// with a sliding window, an odd block size, softcap and sinks.
TEST(CudaAttention, KvBeginMatchesReference) {
    CUDA_OPEN_DEVICE_OR_SKIP(dev);
    const Case cases[] = {
        {8, 2, 64, 64, 16},
        {32, 8, 128, 128, 16},                 // Llama-3.1-8B's heads
        {6, 2, 32, 32, 7, 0, 0.0f, false, 2},  // odd block size, padded rows
        {4, 2, 192, 128, 16},                  // K and V head dims differ (generic kernel)
        {8, 4, 64, 64, 16, 50},                // sliding window: kv_begin inside and before it
        {4, 2, 64, 64, 16, 0, 30.0f, true},    // softcap and sinks
    };
    uint32_t seed = 400;
    for (const int n_splits : {1, 2, 5, 16})
        for (const Case& c : cases) run_case(dev, c, seed++, n_splits, /*q8=*/false, /*chunked=*/true);
}

// Head dims past 256 (the wide kernel instances): DeepSeek-V2/V3's multi-head latent attention in
// its absorbed form (K = 512 latent + 64 rope dims, V = the 512 latent dims, one kv head shared by
// all query heads; the 576/512 instance with compile-time sizes) and other widths through the
// generic wide instance: V at 256 but K past it, V past 256 and not a multiple of 8 (the 4-byte
// copy path), padded rows (also the 4-byte path), two kv heads and an odd block size, a sliding
// window with softcap and sinks, and V alone past 256. Unsplit and split over the sequence.
TEST(CudaAttention, WideHeadDimsMatchReference) {
    CUDA_OPEN_DEVICE_OR_SKIP(dev);
    const Case cases[] = {
        {16, 1, 576, 512, 16},                    // DeepSeek-V2-Lite's MLA: group 16, two blocks
        {8, 1, 320, 256, 16},                     // generic wide instance, V at the common limit
        {4, 1, 288, 258, 16},                     // V past 256, hdv % 8 != 0
        {6, 2, 576, 512, 7, 0, 0.0f, false, 2},   // odd block size, padded rows, two kv heads
        {8, 1, 320, 256, 16, 50, 30.0f, true},    // sliding window, softcap and sinks
        {4, 2, 128, 384, 16},                     // only V past 256
    };
    uint32_t seed = 500;
    for (const int n_splits : {1, 2, 5, 16})
        for (const Case& c : cases) run_case(dev, c, seed++, n_splits);
    // DeepSeek-V3's 128 query heads on one kv head: 16 blocks of 8 warps per (token, kv head).
    for (const int n_splits : {1, 16}) run_case(dev, {128, 1, 576, 512, 16}, seed++, n_splits);
}

// The wide instances with the int8 output (V of 16, 8 and 15 blocks of 32: the last pair row of
// 480 is half-empty) and with chunked attention's kv_begin.
TEST(CudaAttention, WideHeadDimsInt8OutputAndKvBegin) {
    CUDA_OPEN_DEVICE_OR_SKIP(dev);
    const Case q8_cases[] = {
        {16, 1, 576, 512, 16},
        {8, 1, 320, 256, 16},
        {4, 1, 576, 480, 16},
        {8, 1, 576, 512, 16, 0, 30.0f, true},  // softcap and sinks
    };
    uint32_t seed = 600;
    for (const int n_splits : {1, 5})
        for (const Case& c : q8_cases) run_case(dev, c, seed++, n_splits, /*q8=*/true);
    const Case begin_cases[] = {
        {16, 1, 576, 512, 16},
        {4, 1, 288, 258, 16},
        {8, 1, 320, 256, 16, 50},  // kv_begin inside and before a sliding window
    };
    for (const int n_splits : {1, 2, 5, 16})
        for (const Case& c : begin_cases) run_case(dev, c, seed++, n_splits, /*q8=*/false, /*chunked=*/true);
}

// Head dims past the wide limits (K 578, V 514), odd ones and a non-multiple of 32 with the int8
// output record invalid_argument naming attention_cuda and launch nothing (the error is sticky, so
// each call gets its own Device); the limits themselves (576/512) are accepted.
TEST(CudaAttention, BadHeadDimsAreStickyErrors) {
    CUDA_OPEN_DEVICE_OR_SKIP(dev);
    // Valid pointers for every argument, zeroed: even a launch by mistake would see kv_end 0 (an
    // empty window) and write zeros within the buffer (16 heads of 514 f32 < 64 KiB).
    auto buf = cuda::DeviceBuffer::allocate(dev, 64 * 1024);
    ASSERT_TRUE(buf.ok());
    {
        cuda::Stream s(dev);
        const std::vector<std::byte> zeros(64 * 1024);
        buf->upload(s, zeros.data(), zeros.size());
        ASSERT_TRUE(s.synchronize().ok());
    }
    const PagedKvCuda kv{buf->data(), buf->data(), 16, 576, 512};
    const AttnIndexCuda idx{buf->as<int32_t>(), 1, buf->as<int32_t>(), buf->as<int32_t>(), buf->as<int32_t>()};
    auto call = [&](cuda::Device& d, int hdk, int hdv, int64_t n_tokens, bool q8) {
        cuda::Stream s(d);
        AttentionParams p;
        p.n_head = 16, p.n_head_kv = 1, p.head_dim_k = hdk, p.head_dim_v = hdv;
        p.scale = 0.05f;
        attention_cuda(s, buf->as<float>(), kv, idx, n_tokens, p, buf->as<float>(), {}, q8 ? buf->data() : nullptr);
        return s.synchronize();
    };
    {
        const Status st = call(dev, 576, 512, 0, /*q8=*/true);  // no tokens: checked, nothing launched
        EXPECT_TRUE(st.ok()) << st.message();
    }
    struct Bad { int hdk, hdv; bool q8; };
    const Bad bad[] = {{578, 512, false}, {576, 514, false}, {578, 514, false}, {575, 512, false},
                       {576, 511, false}, {576, 496, true}};
    for (const Bad& b : bad) {
        SCOPED_TRACE(testing::Message() << "hd " << b.hdk << "/" << b.hdv << " q8 " << b.q8);
        auto d = cuda::Device::open(0);
        ASSERT_TRUE(d.ok());
        const Status st = call(**d, b.hdk, b.hdv, 1, b.q8);
        EXPECT_EQ(st.code(), StatusCode::invalid_argument) << st.message();
        EXPECT_NE(st.message().find("attention_cuda"), std::string::npos) << st.message();
        EXPECT_FALSE(call(**d, 576, 512, 0, false).ok());  // sticky
    }
}

TEST(CudaAttention, KvWriteRoundsToF16) {
    CUDA_OPEN_DEVICE_OR_SKIP(dev);
    cuda::Stream s(dev);
    const int64_t n_tokens = 5, n_slots = 40;
    const int k_width = 96, v_width = 64;
    const int64_t k_stride = 100, v_stride = 66;  // rows of the cache, in halves
    std::mt19937 rng(7);
    std::normal_distribution<float> nd(0.0f, 3.0f);
    std::vector<float> k(n_tokens * 128), v(n_tokens * 80);  // source rows with strides 128 / 80
    for (auto& x : k) x = nd(rng);
    for (auto& x : v) x = nd(rng);
    const std::vector<int32_t> slots = {39, 0, 17, 18, 5};
    auto kc = cuda::DeviceBuffer::allocate(dev, n_slots * k_stride * 2).value();
    auto vc = cuda::DeviceBuffer::allocate(dev, n_slots * v_stride * 2).value();
    std::vector<uint16_t> poison_k(n_slots * k_stride, 0x7e00), poison_v(n_slots * v_stride, 0x7e00);
    kc.upload(s, poison_k.data(), poison_k.size() * 2);
    vc.upload(s, poison_v.data(), poison_v.size() * 2);
    auto dk = cuda::DeviceBuffer::allocate(dev, k.size() * 4).value();
    auto dv = cuda::DeviceBuffer::allocate(dev, v.size() * 4).value();
    auto ds = cuda::DeviceBuffer::allocate(dev, slots.size() * 4).value();
    dk.upload(s, k.data(), k.size() * 4);
    dv.upload(s, v.data(), v.size() * 4);
    ds.upload(s, slots.data(), slots.size() * 4);
    kv_write_cuda(s, dk.as<float>(), 128, dv.as<float>(), 80, ds.as<int32_t>(), n_tokens, k_width, v_width, kc.data(),
                  k_stride, vc.data(), v_stride);
    std::vector<uint16_t> gk(poison_k.size()), gv(poison_v.size());
    kc.download(s, gk.data(), gk.size() * 2);
    vc.download(s, gv.data(), gv.size() * 2);
    ASSERT_TRUE(s.synchronize().ok());
    std::vector<uint16_t> wk(poison_k), wv(poison_v);
    for (int64_t t = 0; t < n_tokens; ++t) {
        for (int i = 0; i < k_width; ++i) wk[slots[t] * k_stride + i] = f32_to_fp16(k[t * 128 + i]);
        for (int i = 0; i < v_width; ++i) wv[slots[t] * v_stride + i] = f32_to_fp16(v[t * 80 + i]);
    }
    EXPECT_EQ(gk, wk);
    EXPECT_EQ(gv, wv);
}

#else

TEST(CudaAttention, SkippedWithoutCuda) { GTEST_SKIP() << "built without CUDA"; }

#endif

}  // namespace
}  // namespace hearth::backend
