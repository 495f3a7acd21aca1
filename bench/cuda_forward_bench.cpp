// Whole-model throughput of the CUDA decoder (model/cuda_decoder.h), in llama-bench's terms:
//  - pp<N>: one batch of N prompt tokens (positions 0..N-1, logits of the last only), t/s;
//  - tg<N>: N single-token decode steps from an empty context (logits copied back each step), t/s;
//  - tg<M>@<C>: M single-token decode steps after a prefill of C tokens (in batches of --pp),
//    which exercises attention over a long context (--ctx C, default 4096, 0 skips; --tg-ctx M,
//    default 32); its roofline counts the KV bytes read per token too (f16 K and V of every
//    layer, at the mean context of the steps);
//  - tg@B (--batch B[,B...], default off): decode steps of B sequences at once (one token of each
//    per step, logits of all B copied back), after each sequence was prefilled with --batch-ctx
//    tokens (default 512), as the Engine's decode phase with B streams but without sampling or
//    scheduling: --batch-steps steps (default 32) per rep, t/s = B * steps / time, and the
//    median ms per step; a second figure with the logits of one sequence only (the rest of the
//    step: what the B x n_vocab logits cost). --profile brackets one measured step of each B
//    with cudaProfilerStart/Stop (for ncu --profile-from-start off; scripts/gpu-check.sh).
//    --pp 0 / --tg 0 skip those figures.
// --layers L synthesizes the presets with L layers only (a cut of a model too large to write in
// the time at hand: per-layer costs, not the model's figures). --num-gpu N loads the first N layers on the GPU and the rest on the CPU (partial offload,
// model/cuda_decoder.h; --threads T CPU threads, default every hardware thread); the roofline
// figures then still count every weight at GPU bandwidth.
// median over --reps runs after a warm-up. Each figure is also given against the decode roofline
// (device-to-device copy bandwidth measured in this run, read + write counted as in ANCHORS.md,
// over the weight bytes one token reads) and against llama.cpp's figure for the same shape on
// the H100 (../shared/bench/ANCHORS.md), when there is one.
//
// Models come from hearth synth (random weights, real shapes): `preset:TYPE` arguments, each
// written once to --dir (default /tmp) as <preset>-<TYPE>.gguf with the built-in vocabulary.
//   build/bench/cuda_forward_bench [--dir /tmp] [--pp 512] [--tg 128] [--ctx 4096] [--tg-ctx 32]
//       [--reps 5] llama3.2-1b:Q4_K_M ...
#include <cuda_profiler_api.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "backend/cuda/device.h"
#include "gguf/gguf.h"
#include "model/cuda_decoder.h"
#include "model/synth.h"

using namespace hearth;

namespace {

void die(const std::string& what, const Status& st) {
    std::fprintf(stderr, "cuda_forward_bench: %s: %s\n", what.c_str(), st.message().c_str());
    std::exit(1);
}

double now_s() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

// Device-to-device copy of 1 GiB, bytes read + written, median of 10 (as cuda_matmul_bench).
double copy_gbs() {
    const size_t bytes = size_t(1) << 30;
    void *a = nullptr, *b = nullptr;
    if (cudaMalloc(&a, bytes) != cudaSuccess || cudaMalloc(&b, bytes) != cudaSuccess) return 0.0;
    cudaMemset(a, 1, bytes);
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    std::vector<double> gbs;
    for (int r = 0; r < 12; ++r) {
        cudaEventRecord(e0);
        cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice);
        cudaEventRecord(e1);
        cudaEventSynchronize(e1);
        float ms = 0;
        cudaEventElapsedTime(&ms, e0, e1);
        if (r >= 2) gbs.push_back(2.0 * bytes / (ms * 1e-3) / 1e9);
    }
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    cudaFree(a);
    cudaFree(b);
    return median(gbs);
}

struct Anchor { double pp, tg, tg_at_4096; };
// llama.cpp on the H100, llama-bench -p 512 -n 128, FA on (ANCHORS.md); tg_at_4096: tg128 with
// 4096 tokens already in context (0: not measured).
const std::map<std::string, Anchor> kAnchors = {
    {"llama3.1-8b:Q4_K_M", {10246, 259.9, 242.9}},
    {"llama3.1-8b:Q8_0", {11654, 227.2, 0}},
    {"llama3.2-1b:Q4_K_M", {37245, 825.5, 0}},
};

struct Row {
    std::string spec;
    double pp_ts = 0, tg_ts = 0, roofline_ts = 0;
    double tg_ctx_ts = 0, roofline_ctx_ts = 0;  // tg<M>@<C>
};

struct BatchRow {
    std::string spec;
    int streams = 0;
    double step_ms = 0, ts = 0, step_one_out_ms = 0;
};

std::vector<int> parse_list(const std::string& s) {
    std::vector<int> v;
    for (size_t i = 0; i < s.size();) {
        const size_t j = std::min(s.find(',', i), s.size());
        if (j > i) v.push_back(std::atoi(s.substr(i, j - i).c_str()));
        i = j + 1;
    }
    return v;
}

}  // namespace

int main(int argc, char** argv) {
    // Line-buffered even into a pipe: a run that dies (a GPU fault, an abort) keeps what it printed.
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    std::string dir = "/tmp";
    int pp = 512, tg = 128, reps = 5, ctx = 4096, tg_ctx = 32, batch_ctx = 512, batch_steps = 32;
    bool profile = false;
    int num_gpu = -1, threads = 0, layers = 0;
    std::vector<int> batches;
    std::vector<std::string> specs;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
        if (a == "--dir") dir = next();
        else if (a == "--pp") pp = std::atoi(next().c_str());
        else if (a == "--tg") tg = std::atoi(next().c_str());
        else if (a == "--ctx") ctx = std::max(0, std::atoi(next().c_str()));
        else if (a == "--tg-ctx") tg_ctx = std::max(1, std::atoi(next().c_str()));
        else if (a == "--reps") reps = std::max(1, std::atoi(next().c_str()));
        else if (a == "--batch") batches = parse_list(next());
        else if (a == "--batch-ctx") batch_ctx = std::max(1, std::atoi(next().c_str()));
        else if (a == "--batch-steps") batch_steps = std::max(1, std::atoi(next().c_str()));
        else if (a == "--profile") profile = true;
        else if (a == "--num-gpu") num_gpu = std::atoi(next().c_str());
        else if (a == "--threads") threads = std::max(0, std::atoi(next().c_str()));
        else if (a == "--layers") layers = std::max(0, std::atoi(next().c_str()));
        else specs.push_back(a);
    }
    if (specs.empty()) specs = {"llama3.2-1b:Q4_K_M", "llama3.1-8b:Q4_K_M"};
    if (backend::cuda::device_count() == 0) {
        std::fprintf(stderr, "cuda_forward_bench: no CUDA device: %s\n", backend::cuda::no_device_reason().c_str());
        return 1;
    }
    auto info = backend::cuda::query_device(0);
    const double bw = copy_gbs();
    std::printf("device: %s, copy bandwidth %.0f GB/s (read + write)\n", info.ok() ? info->name.c_str() : "?", bw);

    std::vector<Row> rows;
    std::vector<BatchRow> batch_rows;
    for (const std::string& spec : specs) {
        const size_t colon = spec.find(':');
        const std::string preset = spec.substr(0, colon), type = colon == std::string::npos ? "Q4_K_M" : spec.substr(colon + 1);
        const std::string path =
            dir + "/" + preset + "-" + type + (layers > 0 ? "-L" + std::to_string(layers) : std::string()) + ".gguf";
        if (!std::filesystem::exists(path)) {
            const double t0 = now_s();
            auto cfg = model::find_synth_preset(preset, "");
            if (!cfg.ok()) die(spec, cfg.status());
            auto st = model::parse_synth_type(type);
            if (!st.ok()) die(spec, st.status());
            model::SynthOptions so;
            so.config = cfg.value();
            if (layers > 0) {
                model::SynthOverrides ov;
                ov.n_layer = layers;
                const Status ost = model::apply_synth_overrides(so.config, ov);
                if (!ost.ok()) die(spec, ost);
            }
            so.type = st.value();
            so.seed = 1;
            auto plan = model::plan_synth(so);
            if (!plan.ok()) die(spec, plan.status());
            auto written = model::write_synth(so, plan.value(), path);
            if (!written.ok()) die(spec, written.status());
            std::printf("%s: synthesized %s (%.2f GB) in %.1f s\n", spec.c_str(), path.c_str(), written.value() / 1e9,
                        now_s() - t0);
        }
        auto file = gguf::open_gguf(path);
        if (!file.ok()) die(path, file.status());
        const double t_load = now_s();
        model::LoadOptions lo{num_gpu > 0 ? threads : 1};
        lo.num_gpu = num_gpu;
        auto m = model::load_model_cuda(file.value(), lo);
        if (!m.ok()) die(spec + " load", m.status());
        // Weight bytes one decode token reads: every tensor except the embedding table (one row),
        // which a tied model reads whole as its output matrix; of an expert stack (*_exps) only
        // the n_expert_used experts a token picks.
        const bool tied = file.value()->find_tensor("output.weight") == nullptr;
        const model::Hparams& hpm = m.value()->hparams();
        uint64_t weight_bytes = 0;
        for (const gguf::TensorInfo& t : file.value()->tensors) {
            if (t.name == "token_embd.weight" && !tied) continue;
            if (hpm.n_expert > 0 && t.name.find("_exps.") != std::string::npos)
                weight_bytes += t.n_bytes / (uint64_t)hpm.n_expert * (uint64_t)hpm.n_expert_used;
            else
                weight_bytes += t.n_bytes;
        }
        std::printf("%s: loaded in %.1f s, %.2f GB of weights read per decode token, on %s\n", spec.c_str(),
                    now_s() - t_load, weight_bytes / 1e9, m.value()->device_name().c_str());
        model::Model& model = *m.value();
        const int block_size = 16;
        const int max_ctx = std::max({pp, tg, ctx > 0 ? ctx + tg_ctx : 0, 1});
        auto kv = model::KvCache::create(model.kv_layout(), (max_ctx + 64) / block_size + 1, block_size,
                                         quant::QuantType::f16, model.kv_host_first_layer());
        if (!kv.ok()) die(spec + " kv", kv.status());
        std::vector<int32_t> table;
        if (auto st = kv->ensure_capacity(table, max_ctx + 16); !st.ok()) die(spec, st);
        std::mt19937 rng(7);
        std::uniform_int_distribution<int32_t> tok(0, (int32_t)model.hparams().n_vocab - 1);
        model::Batch batch;
        batch.block_tables = {table};
        model::ForwardOutput out;
        Row row;
        row.spec = spec;
        row.roofline_ts = bw * 1e9 / (double)weight_bytes;

        // pp: one batch of pp tokens, logits of the last.
        std::vector<double> pp_s;
        for (int r = 0; r <= reps && pp > 0; ++r) {
            batch.clear();
            for (int i = 0; i < pp; ++i) batch.add(tok(rng), i, 0, i == pp - 1);
            const double t0 = now_s();
            if (auto st = model.forward(batch, *kv, out); !st.ok()) die(spec + " pp", st);
            if (r > 0) pp_s.push_back(now_s() - t0);  // run 0 is the warm-up
        }
        row.pp_ts = pp > 0 ? pp / median(pp_s) : 0.0;
        // tg: tg steps of one token from position 0.
        std::vector<double> tg_s;
        for (int r = 0; r <= reps && tg > 0; ++r) {
            const double t0 = now_s();
            for (int i = 0; i < tg; ++i) {
                batch.clear();
                batch.add(tok(rng), i, 0, true);
                if (auto st = model.forward(batch, *kv, out); !st.ok()) die(spec + " tg", st);
            }
            if (r > 0) tg_s.push_back(now_s() - t0);
        }
        row.tg_ts = tg > 0 ? tg / median(tg_s) : 0.0;
        std::printf("%s: pp%d %.0f t/s, tg%d %.1f t/s (%.0f%% of the %.0f t/s roofline)\n", spec.c_str(), pp, row.pp_ts,
                    tg, row.tg_ts, 100.0 * row.tg_ts / row.roofline_ts, row.roofline_ts);
        // tg at a long context: prefill ctx tokens once (batches of pp), then tg_ctx steps from there.
        if (ctx > 0) {
            for (int p0 = 0; p0 < ctx; p0 += std::max(pp, 1)) {
                batch.clear();
                const int p1 = std::min(ctx, p0 + std::max(pp, 1));
                for (int i = p0; i < p1; ++i) batch.add(tok(rng), i, 0, i == p1 - 1);
                if (auto st = model.forward(batch, *kv, out); !st.ok()) die(spec + " ctx prefill", st);
            }
            std::vector<double> ctx_s;
            for (int r = 0; r <= reps; ++r) {
                const double t0 = now_s();
                for (int i = 0; i < tg_ctx; ++i) {
                    batch.clear();
                    batch.add(tok(rng), ctx + i, 0, true);
                    if (auto st = model.forward(batch, *kv, out); !st.ok()) die(spec + " tg@ctx", st);
                }
                if (r > 0) ctx_s.push_back(now_s() - t0);
            }
            row.tg_ctx_ts = tg_ctx / median(ctx_s);
            const model::Hparams& hp = model.hparams();
            const double kv_bytes = (double)hp.n_layer * hp.n_head_kv * (hp.head_dim_k + hp.head_dim_v) * 2.0 *
                                    (ctx + (tg_ctx + 1) / 2.0);
            row.roofline_ctx_ts = bw * 1e9 / ((double)weight_bytes + kv_bytes);
            std::printf("%s: tg%d@%d %.1f t/s (%.0f%% of the %.0f t/s roofline, weights + %.2f GB of KV)\n",
                        spec.c_str(), tg_ctx, ctx, row.tg_ctx_ts, 100.0 * row.tg_ctx_ts / row.roofline_ctx_ts,
                        row.roofline_ctx_ts, kv_bytes / 1e9);
        }
        rows.push_back(row);

        // tg@B: decode steps of B sequences, each prefilled with batch_ctx tokens first.
        for (const int n_seq : batches) {
            if (n_seq <= 0) continue;
            // Positions: the prefill, 3 warm-up steps, the profiled one, then per rep the measured
            // steps, 2 steps of the one-output shape (eager run, capture) and its measured steps.
            const int seq_len = batch_ctx + 4 + reps * (batch_steps + 2 + batch_steps / 2) + 16;
            auto bkv = model::KvCache::create(model.kv_layout(), n_seq * ((seq_len + block_size - 1) / block_size) + 1,
                                              block_size, quant::QuantType::f16, model.kv_host_first_layer());
            if (!bkv.ok()) die(spec + " batch kv", bkv.status());
            std::vector<std::vector<int32_t>> tables(n_seq);
            for (auto& t : tables)
                if (auto st = bkv->ensure_capacity(t, seq_len); !st.ok()) die(spec + " batch kv", st);
            for (int sq = 0; sq < n_seq; ++sq) {  // prefill, in chunks of up to 512 tokens
                for (int p0 = 0; p0 < batch_ctx; p0 += 512) {
                    batch.clear();
                    batch.block_tables = tables;
                    const int p1 = std::min(batch_ctx, p0 + 512);
                    for (int i = p0; i < p1; ++i) batch.add(tok(rng), i, sq, i == p1 - 1);
                    if (auto st = model.forward(batch, *bkv, out); !st.ok()) die(spec + " batch prefill", st);
                }
            }
            int pos = batch_ctx;
            auto step = [&](bool all_outputs) {
                batch.clear();
                batch.block_tables = tables;
                for (int sq = 0; sq < n_seq; ++sq) batch.add(tok(rng), pos, sq, all_outputs || sq == 0);
                ++pos;
                if (auto st = model.forward(batch, *bkv, out); !st.ok()) die(spec + " batch step", st);
            };
            for (int i = 0; i < 3; ++i) step(true);  // eager run, graph capture, first replay
            if (profile) {
                cudaProfilerStart();
                step(true);
                cudaProfilerStop();
            }
            std::vector<double> step_s, one_s;
            for (int r = 0; r < reps; ++r) {
                double t0 = now_s();
                for (int i = 0; i < batch_steps; ++i) step(true);
                step_s.push_back((now_s() - t0) / batch_steps);
                if (r == 0) step(false), step(false);  // the one-output shape: eager run and capture
                t0 = now_s();
                for (int i = 0; i < batch_steps / 2; ++i) step(false);
                one_s.push_back((now_s() - t0) / std::max(1, batch_steps / 2));
            }
            BatchRow br{spec, n_seq, 1e3 * median(step_s), n_seq / median(step_s), 1e3 * median(one_s)};
            std::printf("%s: tg@%d (context %d..%d): %.2f ms per step, %.1f t/s; %.2f ms per step with one "
                        "sequence's logits\n",
                        spec.c_str(), n_seq, batch_ctx, pos, br.step_ms, br.ts, br.step_one_out_ms);
            std::fflush(stdout);
            batch_rows.push_back(br);
        }
    }

    std::printf("\n## CUDA forward pass, %s (copy %.0f GB/s), median of %d\n\n", info.ok() ? info->name.c_str() : "?",
                bw, reps);
    std::printf("| model | pp%d t/s | vs llama.cpp | tg%d t/s | vs llama.cpp | tg roofline | %% of roofline |\n", pp,
                tg);
    std::printf("|---|---:|---:|---:|---:|---:|---:|\n");
    for (const Row& r : rows) {
        const auto it = kAnchors.find(r.spec);
        char pp_ratio[32] = "-", tg_ratio[32] = "-";
        if (it != kAnchors.end() && pp == 512) std::snprintf(pp_ratio, sizeof pp_ratio, "%.2fx", r.pp_ts / it->second.pp);
        if (it != kAnchors.end() && tg == 128) std::snprintf(tg_ratio, sizeof tg_ratio, "%.2fx", r.tg_ts / it->second.tg);
        std::printf("| %s | %.0f | %s | %.1f | %s | %.0f | %.0f %% |\n", r.spec.c_str(), r.pp_ts, pp_ratio, r.tg_ts,
                    tg_ratio, r.roofline_ts, 100.0 * r.tg_ts / r.roofline_ts);
    }
    if (!batch_rows.empty()) {
        std::printf("\n| model | streams (tokens per step) | ms per step | decode t/s | ms per step, one row of logits |\n");
        std::printf("|---|---:|---:|---:|---:|\n");
        for (const BatchRow& b : batch_rows)
            std::printf("| %s | %d | %.2f | %.1f | %.2f |\n", b.spec.c_str(), b.streams, b.step_ms, b.ts,
                        b.step_one_out_ms);
    }
    if (ctx > 0) {
        std::printf("\n| model | tg%d@%d t/s | vs llama.cpp tg128@4096 | roofline (weights + KV) | %% of roofline |\n",
                    tg_ctx, ctx);
        std::printf("|---|---:|---:|---:|---:|\n");
        for (const Row& r : rows) {
            const auto it = kAnchors.find(r.spec);
            char ratio[32] = "-";
            if (it != kAnchors.end() && it->second.tg_at_4096 > 0 && ctx == 4096)
                std::snprintf(ratio, sizeof ratio, "%.2fx", r.tg_ctx_ts / it->second.tg_at_4096);
            std::printf("| %s | %.1f | %s | %.0f | %.0f %% |\n", r.spec.c_str(), r.tg_ctx_ts, ratio, r.roofline_ctx_ts,
                        100.0 * r.tg_ctx_ts / r.roofline_ctx_ts);
        }
    }
    return 0;
}
