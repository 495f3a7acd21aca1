// A loaded model: hyper-parameters, weights (views into the mapped GGUF file) and a forward
// pass over a Batch. Families register a loader by GGUF architecture name (registry.cpp).
#pragma once

#include <functional>
#include <memory>
#include <memory_resource>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "base/status.h"
#include "gguf/gguf.h"
#include "model/batch.h"
#include "model/hparams.h"
#include "model/kv_cache.h"
#include "ops/ops.h"

namespace hearth::model {

struct ForwardOutput {
    // [n_outputs][n_vocab]: one row per batch token with output = 1, in batch order. Empty
    // when the model pools (is_embedding()). A polymorphic vector so that a GPU model can give
    // it page-locked memory to copy into (model/cuda_decoder.cpp); callers see a plain vector.
    // Empty when the batch asked for top-k candidates (Batch::output_top_k > 0).
    std::pmr::vector<float> logits;
    // Batch::output_top_k = k > 0: [n_outputs][k] the k best token ids of each output row and
    // their logits, best first in the sampler's order (higher logit first, ties by lower id:
    // runtime/sampler.h's by_logit_desc), a NaN logit counted and reported as -inf. Rows of
    // the full logits the model would have produced, selected exactly: the same ids and bits.
    // Empty when output_top_k is 0.
    std::vector<int32_t> top_ids;
    std::vector<float> top_logits;
    // Models that pool: [n_seqs][n_embd], row s pooled over the tokens of sequence s in this
    // batch only (every token, whatever its output flag), raw (not normalized). A sequence is
    // pooled from what this one pass holds, so an input must be evaluated in a single forward
    // pass; a sequence with no token in the batch (or none at position 0, for cls) gets zeros.
    std::vector<float> embeddings;
};

struct LoadOptions {
    int n_threads = 0;  // 0: one per hardware thread
    // Pooled embeddings instead of logits, as llama.cpp's --embeddings --pooling: unset keeps
    // what the file says ({arch}.pooling_type; bert without it: cls; decoders without it: none,
    // i.e. logits). A decoder that pools takes the hidden state after its final norm (before
    // the output projection), attention staying causal: last = the highest position of the
    // sequence, mean = the average over its tokens, cls = position 0. none on bert is
    // unsupported (it has no per-token output). The decoder families loaded through
    // load_decoder/load_family honour it; phi3 and deepseek2 do not read it yet (their models
    // then report is_embedding() false).
    std::optional<Pooling> pooling = {};
    // Placement, Ollama's num_gpu: -1 automatic (on CUDA device 0 when hearth has a GPU
    // executor for the architecture: the whole model when it fits in the memory free now, else
    // as many leading layers as fit, the rest on the CPU), 0 the CPU only, > 0 that many
    // leading layers on the GPU (n_layer or more: the whole model). When the GPU is asked for
    // but cannot be used, load_model runs the model on the CPU and says why in
    // Model::placement_note() (a partial offload says there how it was split).
    int num_gpu = -1;
    // Several CUDA devices (CUDA_VISIBLE_DEVICES chooses which ones the process sees): each
    // device's share of the layers, as llama.cpp's --tensor-split (proportions: {3, 1} puts three
    // quarters of the layers on device 0, the rest and the output on device 1). Empty:
    // automatic: the whole model on device 0 when it fits there, else the visible devices in
    // proportion to their free memory when the model fits on them together, else device 0 and
    // the CPU (num_gpu above). Only with num_gpu < 0 or >= n_layer.
    std::vector<float> tensor_split = {};
    // The devices tensor_split's entries are for (default 0, 1, ...). One device may appear more
    // than once: the split path on one GPU (tests).
    std::vector<int> split_devices = {};
    // LoRA adapter GGUF files (model/lora.h), applied in this order as low-rank deltas on the
    // weights they name; the base weights stay mapped and untouched. Each must be for the
    // model's architecture and every one of its tensor pairs must adapt a weight the model
    // uses, else loading fails naming the adapter and the tensor. A model with adapters runs
    // on the CPU (the CUDA executor has no low-rank deltas): load_model does not try the GPU
    // and says so in Model::placement_note() when num_gpu asked for it.
    std::vector<std::string> adapters = {};
};

// The KV layout of a model whose every layer has n_head_kv heads of head_dim_k / head_dim_v
// (Model::kv_layout's default; families with other layouts override it).
KvLayout kv_layout_of(const Hparams& hp);

class LoraSet;

class Model {
public:
    virtual ~Model() = default;
    const Hparams& hparams() const { return hp_; }
    const gguf::GgufFile& file() const { return *file_; }
    bool is_embedding() const { return hp_.pooling != Pooling::none; }
    virtual KvLayout kv_layout() const;

    // Where forward() runs, for logs: "cpu", or "cuda:0 (NVIDIA H100 80GB HBM3)".
    virtual std::string device_name() const { return "cpu"; }
    // True when the cached K/V rows live in memory the model owns on a device (CudaDecoder):
    // the KvCache passed to forward() then only allocates blocks (block ids and positions mean
    // the same), must be f16, and its read_block/write_block see none of the cached rows.
    virtual bool kv_on_device() const { return false; }
    // Device memory left for a KV pool once the weights and activations are resident, for
    // sizing an automatic pool; -1 when kv_on_device() is false.
    virtual int64_t device_kv_budget_bytes() const { return -1; }
    // The layers whose K/V rows the host KvCache must hold: [kv_host_first_layer(), n_layer).
    // A model that keeps its KV on a device keeps the rows of its device layers there (all of
    // them for a whole-GPU model, the first N for a partial offload): the host cache then
    // allocates only block ids for those layers (KvCache::create's first_host_layer).
    virtual int kv_host_first_layer() const { return kv_on_device() ? hp_.n_layer : 0; }
    // Tokens per forward this model prefills best when nothing else waits (its activations
    // are budgeted for that many: the CUDA decoder), 0 for no preference. The Engine's
    // EngineOptions::solo_step_tokens takes it by default.
    virtual int64_t prefill_step_tokens() const { return 0; }
    // Bytes of weights the model holds in device memory (0 on the CPU), for /api/ps.
    virtual int64_t device_weight_bytes() const { return 0; }
    // Why load_model ran this model on the CPU although LoadOptions::num_gpu allowed the GPU
    // (no CUDA device, an unsupported architecture or weight type, too little device memory):
    // one line for the load log; empty when it runs where it was asked to.
    const std::string& placement_note() const { return placement_note_; }
    void set_placement_note(std::string note) { placement_note_ = std::move(note); }

    // Runs every token of the batch through the model, writing its K/V into `kv` at the
    // positions' slots and filling `out`. On error nothing in `out` is meaningful; the KV
    // slots of this batch's positions may have been written. With batch.output_top_k > 0 the
    // rows come back as top-k candidates: selected on the device by a model that can (the CUDA
    // decoder), else here, on the host, from the full rows run_forward produced; either way
    // the same candidates.
    Status forward(const Batch& batch, KvCache& kv, ForwardOutput& out);

    // Opens opts.adapters (checked against this model's architecture) for the WeightLoader of
    // load_weights; a family's loader calls it before loading weights. Nothing to do without
    // adapters. On error the model has no adapters.
    Status open_adapters(const LoadOptions& opts);
    // After the weights are loaded: whether every adapter tensor pair found its weight (ok
    // without adapters). load_model calls it; a family whose loader does not call
    // open_adapters is reported as not supporting adapters.
    Status check_adapters() const;
    bool has_adapters() const { return lora_ != nullptr; }

protected:
    Model(std::shared_ptr<const gguf::GgufFile> file, Hparams hp, int n_threads)
        : hp_(std::move(hp)), file_(std::move(file)), ops_(n_threads) {}
    // The family's forward pass (the contract of forward()). It may fill out.top_ids and
    // out.top_logits itself for batch.output_top_k > 0 and leave out.logits empty; when it
    // leaves full rows in out.logits instead, forward() selects the candidates from them.
    virtual Status run_forward(const Batch& batch, KvCache& kv, ForwardOutput& out) = 0;
    // Checks batch shape, sequence ids, block tables, token ids and output_top_k (0..
    // kMaxOutputTopK, at most n_vocab, 0 for a pooling model).
    Status validate(const Batch& batch, const KvCache& kv) const;

    Hparams hp_;
    std::shared_ptr<const gguf::GgufFile> file_;
    ops::Ops ops_;
    std::string placement_note_;
    // The adapter files and factors the weights' deltas point into (it lives as long as the
    // model, so the deltas stay valid); null without adapters.
    std::shared_ptr<LoraSet> lora_;

private:
    std::vector<std::pair<float, int32_t>> top_scratch_;  // [k] one row's best so far (select_top_k)
};

// The k best candidates of each of n_rows rows of n_cols logits (ForwardOutput::top_ids'
// order and NaN rule), into ids/vals [n_rows][k]. Preconditions: 0 < k <= n_cols; scratch is
// resized to k. The host selection forward() makes; the CUDA kernel (backend/cuda/sample.h)
// must agree with it.
void select_top_k(const float* logits, int64_t n_rows, int64_t n_cols, int k, int32_t* ids, float* vals,
                  std::vector<std::pair<float, int32_t>>& scratch);

// Looks tensors up by name, checks shape and type, and hands out views.
// With a LoraSet, every matrix it hands out carries the adapters' deltas for its name.
class WeightLoader {
public:
    explicit WeightLoader(const gguf::GgufFile& f, LoraSet* lora = nullptr) : f_(f), lora_(lora) {}
    // ne in ggml order. Missing + required → not_found naming the tensor. With adapters: their
    // deltas for `name` attached (errors: see LoraSet::attach).
    Status matrix(const std::string& name, std::vector<int64_t> ne, ops::Weight& out, bool required = true);
    // A 1-D tensor of n values as f32 (any float type). Missing + required → error. An adapter
    // pair for it is an unsupported error (its values are read once, not computed with).
    Status vec(const std::string& name, int64_t n, std::vector<float>& out, bool required = true);
    bool has(const std::string& name) const { return f_.find_tensor(name) != nullptr; }

private:
    Status matrix_view(const std::string& name, const std::vector<int64_t>& ne, ops::Weight& out, bool required);

    const gguf::GgufFile& f_;
    LoraSet* lora_;  // null: no adapters
};

// "blk.3.attn_q.weight" from ("attn_q", 3).
std::string layer_tensor(int layer, const char* name, const char* suffix = "weight");

using ModelFactory = std::function<Result<std::unique_ptr<Model>>(std::shared_ptr<const gguf::GgufFile>, const LoadOptions&)>;

// Architectures hearth can run.
std::vector<std::string> supported_architectures();
// Validates the file's metadata and tensors and builds the model; unsupported architectures
// and tensor types are errors naming them. opts.num_gpu != 0 tries the CUDA executor first
// (model/cuda_decoder.h) and falls back to the CPU with Model::placement_note() set.
Result<std::unique_ptr<Model>> load_model(std::shared_ptr<const gguf::GgufFile> file, const LoadOptions& opts);

}  // namespace hearth::model
