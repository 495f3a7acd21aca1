// Pre-norm decoders run on one CUDA GPU: the plain llama-style Decoder family (llama, qwen2,
// qwen3, and with experts mixtral-style llama and qwen3moe), and the families a GpuRecipe
// describes (model/gpu_recipe.h: gemma3, phi3, gpt-oss, llama4), whose layers add what the
// recipe names (sandwich norms, GELU FFN, fused projections, sinks, sliding windows, chunked
// attention, NoPE layers, other expert routings, shared experts) to the same op sequence:
// weights uploaded once at load, the KV cache on the device (f16), every op of a forward pass
// on the device (backend/cuda), only the requested logits copied back. Same Model interface
// and ForwardOutput as the CPU Decoder (model/blocks.h), so callers can pick either.
//
// The KvCache passed to forward() serves as the block allocator and must be f16: block ids and
// positions mean the same as on the CPU, but the cached rows live in a device pool of the same
// geometry that this model owns (allocated on first use, reallocated, and so emptied, when a
// cache of another block count or block size comes). The host cache's own rows are not
// written, so read_block/write_block (moving blocks to disk) see nothing of the GPU's KV. One
// device pool per model: two KvCaches of the same geometry used with one model at once (two
// Engines) would share it.
//
// Batches of <= 64 tokens run on int8 activations: up to 4 tokens through the dp4a
// matrix-vector kernels (fastest for one stream), 5..64 through the integer tensor-core matmul,
// which reads the weights once per step and is batch-invariant within that range; larger ones
// (prefill) the f16 tensor-core GEMM, which rounds activations to f16. Logits come back in
// page-locked memory (ForwardOutput::logits); with Batch::output_top_k the step (and its CUDA
// graph) ends by selecting each row's best candidates on the device (backend/cuda/sample.h),
// and only those ids and logits come back (a partial offload selects on the host).
//
// Mixture-of-experts layers route on the device (backend/cuda/moe.h; the recipe families:
// router logits on the device, the selection on the host by the CPU's MoeSelector), bring the
// chosen expert ids back to the host (one synchronization per MoE layer, so their steps are not
// CUDA graphs) and run each chosen expert once over the rows routed to it (matmul_cuda). The
// fused decode kernels, the device routing of single-token steps and partial offload are the
// llama-style family's only; the recipe families run the unfused kernels (CUDA graphs for the
// dense ones).
//
// load_model (model.h) picks it when LoadOptions::num_gpu allows the GPU; runtime::Engine then
// keeps an f16 pool without the disk tier for it (Model::kv_on_device()).
#pragma once

#include <memory>
#include <vector>

#include "model/model.h"

namespace hearth::model {

// Loads `file` for the GPU `device` (CUDA runtime ordinal). Errors, each leaving nothing
// allocated on the device: unsupported for an architecture other than llama/qwen2/qwen3/
// qwen3moe/gemma3/phi3/gpt-oss/llama4 (or a partial offload of one of the last four), for more experts than backend::kMoeMaxExperts (or used than kMoeMaxUsed), pooling,
// LoRA adapters (LoadOptions::adapters: applied on the CPU only), a KV-less layout, or a
// weight type the CUDA matmul lacks (the message names the tensor and type: the caller keeps
// the CPU path); not_found when there is no CUDA device or hearth was built without CUDA;
// resource_exhausted when the weights do not fit.
// Partial offload (LoadOptions::num_gpu: a count of layers, as Ollama's): the first layers
// on the GPU, the rest, the final norm and the output on the CPU (the CPU Decoder continues
// from the residual stream the GPU part hands over once per step). load_model_cuda takes
// num_gpu layers when 0 < num_gpu < n_layer, the whole model when num_gpu >= n_layer, and
// with num_gpu < 0 (automatic) what plan_gpu_layers finds room for in the memory free now.

// Device memory the CUDA executor needs besides weights and KV: the activations of a step of
// step_tokens tokens (n_embd wide, n_ff-wide FFN, q_dim-wide attention), 64 rows of logits, and
// 1 GiB for the CUDA context, scratch and graphs.
int64_t cuda_working_bytes(int64_t n_embd, int64_t n_ff, int64_t q_dim, int64_t n_vocab, int64_t step_tokens = 512);
int64_t cuda_working_bytes(const Hparams& hp, int64_t step_tokens = 512);
// The prompt step a whole-GPU model budgets its activations for (Model::prefill_step_tokens):
// the most tokens, a multiple of 512 from 512 to 8192, whose activations take at most 768 MiB
// (Llama-3.1-8B: 3,584; 1B: 6,656; 70B: 1,536). Through the Engine, a 10,000-token prompt of the
// 8B took 0.85 s in 512-token steps, 0.58-0.59 s in 2,048- or 4,096-token steps (H100, 2026-11-26).
int64_t cuda_prefill_tokens(int64_t n_embd, int64_t n_ff, int64_t q_dim);

struct GpuLayerPlan {
    int n_layers = 0;     // layers [0, n_layers) on the GPU
    bool output = false;  // the output matrix too (only when every layer is there)
    int64_t step_tokens = 512;  // the largest step its working memory was planned for
};
// The most leading layers of `file` whose weights, with room for the K/V of kv_positions
// positions each (f16, widths from `kv`), fit in free_bytes beside working_bytes and the
// tensors every placement uploads (token embeddings, norms); then the output matrix if it also
// fits. The loader (automatic num_gpu) and store::fit's GPU verdict both use it.
GpuLayerPlan plan_gpu_layers(const gguf::GgufFile& file, const KvLayout& kv, int64_t working_bytes,
                             int64_t free_bytes, int64_t kv_positions = 4096);

// The device memory of a file's tensors by where they go: layer[l] (blk.l.*), the output matrix,
// and the rest (embeddings, norms), each padded as the CUDA executor allocates it.
struct LayerBytes {
    std::vector<int64_t> layer;
    int64_t output = 0, fixed = 0;
};
LayerBytes layer_bytes(const gguf::GgufFile& file, int n_layer);

// Layers per device for a split in these proportions (LoadOptions::tensor_split): consecutive
// ranges by cumulative rounding, the last device taking what is left; all 0 without a positive share.
std::vector<int> split_layers(int n_layer, const std::vector<double>& shares);

// The automatic split over several devices (LoadOptions::tensor_split empty, num_gpu < 0), for
// free_bytes[i] free on device i: layers per device in proportion to what each has left beside
// its working memory (512-token steps) and the tensors every part uploads (the last one also the
// output), when every device's share fits with room for 4096 positions of K/V per layer. Empty
// when it does not, or for fewer than two devices. The loader and store::fit both use it.
std::vector<int> plan_gpu_split(const gguf::GgufFile& file, const KvLayout& kv, int64_t n_embd, int64_t n_ff,
                                int64_t q_dim, int64_t n_vocab, const std::vector<int64_t>& free_bytes);

// The automatic placement: plan_gpu_layers with the working memory of cuda_prefill_tokens-token
// steps when the whole model fits with it (step_tokens is then that), else of 512-token steps.
GpuLayerPlan plan_gpu_placement(const gguf::GgufFile& file, const KvLayout& kv, int64_t n_embd, int64_t n_ff,
                                int64_t q_dim, int64_t n_vocab, int64_t free_bytes);

// Whether load_model_cuda has an executor for this GGUF architecture (false without CUDA), and
// whether it can split one between the GPU and the CPU (partial offload: llama-style only).
bool cuda_runs_architecture(const std::string& arch);
bool cuda_offloads_partially(const std::string& arch);

struct GpuMemory {
    std::string name;  // "NVIDIA H100 80GB HBM3"
    int64_t free_bytes = 0, total_bytes = 0;
};
// CUDA device `device`'s name and memory free now; not_found without CUDA or a device.
Result<GpuMemory> query_gpu_memory(int device = 0);
// CUDA devices this process sees (CUDA_VISIBLE_DEVICES applies); 0 without CUDA.
int cuda_device_count();

Result<std::unique_ptr<Model>> load_model_cuda(std::shared_ptr<const gguf::GgufFile> file, const LoadOptions& opts,
                                               int device = 0);

}  // namespace hearth::model
