// "Will it fit on this machine?" before a model is loaded or even downloaded: the memory a model
// needs with a given context (weights + KV cache + compute scratch, the same figure the daemon's
// model manager reserves before a load), against the memory this machine has, with a verdict and,
// when it does not fit, what would: a smaller num_ctx, or another quantization sized from the
// tensor shapes (store/quantize.h's per-tensor mixes).
//
// It works from a store name or a .gguf path (the file is mapped, no tensor is read), from a
// GgufInfo, or from the first bytes of a GGUF file (a pull fetches the header with a Range
// request and asks before downloading the rest).
#pragma once

#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "runtime/engine.h"
#include "store/gguf_info.h"

namespace hearth::store {

class Store;

// ---- The memory estimate (the daemon's model manager reserves this before a load) ----

// Scratch of one forward pass: the activations of a step (a dozen f32 rows of n_embd per
// token), the logits of the sequences that sample in it (n_vocab f32 each) and 8 MiB for the
// thread pool and small buffers. (Measured on the CPU, tests/store/fit_memory_test.cpp: a
// 128-token step of a 1024-wide model adds ~8 MiB; the former flat 32 MiB floor overstated it.)
int64_t compute_scratch_bytes(int64_t n_embd, int64_t n_vocab, int64_t step_tokens, int64_t n_outputs);
// What a loaded model holds per vocabulary entry besides its weights: the parsed GGUF
// metadata (token strings, scores, types) and the tokenizer's tables. Measured
// (tests/store/fit_memory_test.cpp): ~550 bytes per entry, 68 MiB for a 128k vocabulary, so it
// matters for small models with large vocabularies (~20 % of a 0.5B model with 152k tokens).
int64_t vocabulary_bytes(int64_t n_vocab);

struct MemoryEstimate {
    int64_t weights_bytes = 0;  // the mapped file
    int64_t kv_bytes = 0;       // the KV pool plan_kv sizes; 0 for embedding models (no KV pool)
    int64_t compute_bytes = 0;  // compute_scratch_bytes(n_embd, n_vocab, step_tokens, sequences)
    int64_t vocab_bytes = 0;    // vocabulary_bytes(n_vocab): parsed metadata + tokenizer tables
    runtime::KvPlan kv;         // type (after a fallback to f16), blocks, sequences; empty without a pool
    int64_t total_bytes() const { return weights_bytes + kv_bytes + compute_bytes + vocab_bytes; }
};

// What loading `info` with these engine options takes: weights (info.file_bytes) + KV pool +
// scratch. mem_available (bytes free now) only sizes an automatic pool (n_parallel, n_kv_blocks
// and kv_bytes all 0), as Engine::create does. Errors are plan_kv's: resource_exhausted when the
// pool cannot hold one context, invalid_argument for bad counts or a KV type the model cannot use.
Result<MemoryEstimate> estimate_memory(const GgufInfo& info, const runtime::EngineOptions& opt, int64_t mem_available);

// ---- The verdict ----

struct FitOptions {
    // Positions per sequence; 0: the daemon's default, 4096 capped at the training context.
    int64_t num_ctx = 0;
    std::string kv_type = "f16";  // KV cache type: f16, q8_0, q4_0 (f32)
    // Sequences served at once, each with a full context; 0: sized from free memory, as the
    // daemon does with HEARTH_NUM_PARALLEL unset (a quarter of what is free, at most 8 GiB).
    int n_parallel = 1;
    int64_t step_tokens = 512;  // tokens per forward pass (num_batch): sizes the scratch
    // The machine, in bytes; < 0: read /proc/meminfo (MemAvailable) and the physical memory.
    int64_t mem_available = -1;
    int64_t mem_total = -1;
    // Quantizations to size from the tensor shapes (quantize_type_names() spelling), largest
    // first: the report's alternatives, and what a "does not fit" verdict suggests.
    std::vector<std::string> alternatives = {"Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q3_K_M", "Q2_K"};
    // This machine's streaming read bandwidth in bytes/s (machine_read_bandwidth()); > 0 adds
    // the expected decode speed to the report. 0: no speed estimate.
    double read_bandwidth = 0;
    // The GPU's free memory in bytes: < 0 asks CUDA device 0 (no GPU verdict when hearth has no
    // CUDA or the machine no device), 0 means no GPU. gpu_name labels a given figure.
    int64_t gpu_free_bytes = -1;
    std::string gpu_name;
    // With a given gpu_free_bytes: the free memory of devices 1, 2, ... (a model too large for
    // device 0 is split over all of them when it fits: model::plan_gpu_split). Asked from CUDA
    // when gpu_free_bytes < 0.
    std::vector<int64_t> other_gpus_free_bytes = {};
};

// Where the loader would put the model on the GPU (automatic num_gpu: model::plan_gpu_placement,
// the same calculation), with the memory free now.
struct FitGpu {
    std::string name;         // the device; empty: no GPU, and the rest is unset
    int64_t free_bytes = 0;
    bool supported = false;   // hearth has a CUDA executor for the architecture
    int n_layers = 0;         // leading layers on the GPU
    int n_layers_total = 0;
    bool output = false;      // the output matrix too: the whole model on the GPU
    // Layers per device when the model is split over several GPUs (then n_layers is every layer
    // and free_bytes device 0's); empty on one device.
    std::vector<int> split;
    // "fits fully on the GPU (NVIDIA H100 80GB HBM3, 79.1 GiB free)", "partial offload: 20 of 32
    // layers on the GPU (..., 9.5 GiB free), the rest on the CPU", "fits on 2 GPUs, split by layers
    // 17 + 15 (..., 9.5 GiB free on the first)", "CPU only: not one layer fits
    // in 0.8 GiB free on ...", or "CPU only: hearth has no CUDA executor for gemma3 yet".
    std::string verdict;
};

// The CPU's streaming read bandwidth with every core (backend/cpu/membw.h), measured once per
// process (~1 s: 1 GiB streamed five times) and cached; 0 when it cannot be measured.
double machine_read_bandwidth();

struct FitAlternative {
    std::string type;           // "Q4_K_M"
    int64_t weights_bytes = 0;  // the file quantize_gguf would write
    int64_t total_bytes = 0;    // with the same KV cache and scratch
    bool fits = false;          // total_bytes <= mem_available
    double decode_tokens_per_second = 0;  // as FitReport's, for these weights; 0 without a bandwidth
};

struct FitReport {
    std::string architecture;    // general.architecture
    std::string quantization;    // "Q4_K_M", "F16", ...
    std::string parameter_size;  // "8.0B"
    int64_t n_ctx_train = 0;     // 0 when the file does not say
    int64_t num_ctx = 0;         // as estimated (the default resolved)
    int n_parallel = 0;          // sequences the KV pool holds (0 for embedding models)
    std::string kv_type;         // as planned ("f16" when q8_0/q4_0 fell back); "" without a pool
    MemoryEstimate need;
    int64_t mem_available = 0;   // bytes free now
    int64_t mem_total = 0;       // physical memory
    bool fits = false;           // need.total_bytes() <= mem_available
    int64_t spare_bytes = 0;     // mem_available - need (negative when it does not fit)
    // When it does not fit: the largest num_ctx that would (a multiple of 1024, or of 256 below
    // that), 0 when even 256 positions do not; and the largest alternative smaller than this
    // model that fits ("" when none does).
    int64_t suggested_num_ctx = 0;
    std::string suggested_type;
    std::vector<FitAlternative> alternatives;  // the options' list, in its order; empty without tensor infos
    // Expected decode speed of one sequence on the CPU, from memory bandwidth: decode reads
    // every weight once per token (all tensors but the embedding table, of which it reads one
    // row, unless the output is tied to it) plus the sequence's K/V so far. The bound a
    // bandwidth-limited decoder approaches (hearth reaches 55-95 % of it on the machines of
    // bench/RESULTS.md). 0 when FitOptions::read_bandwidth is 0.
    double read_bandwidth = 0;                   // bytes/s it was computed from
    int64_t decode_bytes_per_token = 0;          // weights read per token
    double decode_tokens_per_second = 0;         // at an empty context
    double decode_tokens_per_second_full_ctx = 0;  // with num_ctx positions of K/V to read
    FitGpu gpu;  // needs the tensor infos (info.file) and a GPU
    // One line: "fits with 12.3 GiB to spare" (or "... 300 MiB ..."), "fits" (less than 100 MiB to spare), or
    // "does not fit: needs 40.1 GiB, 30.2 GiB available — try num_ctx 2048 or a smaller
    // quantization (Q4_K_M would need 20.3 GiB)".
    std::string verdict;
};

// From facts already read. The alternatives need info.file (the tensor infos); without it the
// report has none. Errors: invalid_argument for a bad option (KV type, negative counts), and
// estimate_memory's, except that a num_ctx too large for an automatic pool is a "does not fit"
// report rather than an error.
Result<FitReport> fit_info(const GgufInfo& info, const FitOptions& opt);
// A .gguf file (mapped; only its header is read). Errors name the path.
Result<FitReport> fit_file(const std::string& path, const FitOptions& opt);
// A store name or a .gguf path, resolved by `store` (store/store.h's errors).
Result<FitReport> fit_model(const Store& store, std::string_view name_or_path, const FitOptions& opt);
// The first bytes of a GGUF file whose full size is file_size: enough of them to hold the
// metadata and the tensor infos (a few MB for most models; the vocabulary is the bulk).
// out_of_range when header_bytes ends before the tensor infos do (fetch more and call again),
// corrupt for a header that is not GGUF, invalid_argument when header_bytes is longer than
// file_size or file_size is absurd. The tensor data is never needed.
Result<FitReport> fit_from_header(std::span<const std::byte> header_bytes, int64_t file_size, const FitOptions& opt);

// The report as JSON (for POST /api/fit and `hearth fit --json`): byte counts as integers.
nlohmann::ordered_json fit_report_json(const FitReport& r);

}  // namespace hearth::store
