// The Decoder family's forward pass composed from backend/cuda ops (contract: cuda_decoder.h).
// The order of ops is Decoder::forward's (model/blocks.cpp), op for op, so the two stay
// comparable: rms_norm, q/k/v (+ biases), q/k norms, rope, KV write, attention, output
// projection, residual add, rms_norm, SwiGLU FFN, residual add; then the final norm and the
// output matrix over the rows that want logits.
//
// Decode-sized batches (<= kFuseMaxTokens = 64 tokens) take fused kernels where every weight of a layer
// has an int8 kernel (backend/cuda/ops.h: the residual add + rms_norm + activation quantization,
// swiglu + quantization; each bit-identical to the ops it replaces), attention split over the
// sequence (flash-decoding, attention.h) that also writes the int8 input of the output
// projection, and rope of q and k + the KV write in one kernel (any batch). Steps on the dp4a
// kernels (<= kDp4aMaxTokens tokens: single-stream decode) also launch Q, K and V (and gate and
// up) together, one launch per weight type, and for llama-style layers (normal rope, no biases
// or q/k norms) rope and the KV write happen in that launch's epilogue (matmul.h:
// matmul_qkv_rope_cuda); the last layer's residual add goes into the output norm. A
// single-token llama step is then 8 kernels per layer (9 where V has its own type) instead of
// 13, every one a programmatic dependent of the one before (launch.cuh), so the next matmul
// streams its weights while the small kernels before it run. Larger decode-sized steps (the
// tensor-core kernel) launch Q, K and V, and gate and up, of one type together as well
// (HEARTH_CUDA_MMA_GROUP). Every fusion gives the bits of the unfused sequence (the tests
// compare them) except that grouping: it sums each output in the stacked matrices' chain count
// (still batch-invariant; see mma_chains_). HEARTH_CUDA_PDL=0 launches the kernels plainly,
// HEARTH_CUDA_GROUP=0 takes the separate launches (before/after comparisons).
// They replay a CUDA graph of the whole device part
// of the step, captured on the first step of each shape (token count, output rows, block-table
// width) after one eager run (which also grows the stream scratch, so capture allocates
// nothing). Everything that changes between steps is read from device memory (token ids,
// positions, slots, kv ends, block tables), uploaded before the replay. Any reallocation of
// the buffers the graph points into (activations, the int tables, the KV pool) drops it.
#include "model/cuda_decoder.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

namespace hearth::model {

namespace {
// cuda_working_bytes' activations of one token (and CudaDecoder::reserve's, about).
int64_t act_bytes_per_token(int64_t n_embd, int64_t n_ff, int64_t q_dim) {
    return (4 * n_embd + 2 * n_ff + 2 * q_dim) * 4;
}
}  // namespace

int64_t cuda_working_bytes(int64_t n_embd, int64_t n_ff, int64_t q_dim, int64_t n_vocab, int64_t step_tokens) {
    return step_tokens * act_bytes_per_token(n_embd, n_ff, q_dim) + 64 * n_vocab * 4 + (1ll << 30);
}

int64_t cuda_working_bytes(const Hparams& hp, int64_t step_tokens) {
    return cuda_working_bytes(hp.n_embd, hp.n_ff, (int64_t)hp.n_head * hp.head_dim_k, hp.n_vocab, step_tokens);
}

int64_t cuda_prefill_tokens(int64_t n_embd, int64_t n_ff, int64_t q_dim) {
    const int64_t per = std::max<int64_t>(1, act_bytes_per_token(n_embd, n_ff, q_dim));
    return std::clamp<int64_t>((768ll << 20) / per / 512 * 512, 512, 8192);
}

std::vector<int> plan_gpu_split(const gguf::GgufFile& file, const KvLayout& kv, int64_t n_embd, int64_t n_ff,
                                int64_t q_dim, int64_t n_vocab, const std::vector<int64_t>& free_bytes) {
    const int n_dev = (int)free_bytes.size();
    if (n_dev < 2) return {};
    const LayerBytes b = layer_bytes(file, kv.n_layer);
    const int64_t working = cuda_working_bytes(n_embd, n_ff, q_dim, n_vocab);
    std::vector<double> shares;
    for (int i = 0; i < n_dev; ++i)
        shares.push_back((double)std::max<int64_t>(0, free_bytes[i] - working - b.fixed - (i + 1 == n_dev ? b.output : 0)));
    const std::vector<int> counts = split_layers(kv.n_layer, shares);
    int first = 0;
    for (int i = 0; i < n_dev; ++i) {
        int64_t need = working + b.fixed + (i + 1 == n_dev ? b.output : 0);
        for (int l = first; l < first + counts[i]; ++l)
            need += b.layer[l] + 4096ll * (kv.k_width[l] + kv.v_width[l]) * 2;
        if (counts[i] > 0 && need > free_bytes[i]) return {};
        if (counts[i] == 0 && i + 1 == n_dev) return {};  // the last device holds the output
        first += counts[i];
    }
    return counts;
}

GpuLayerPlan plan_gpu_placement(const gguf::GgufFile& file, const KvLayout& kv, int64_t n_embd, int64_t n_ff,
                                int64_t q_dim, int64_t n_vocab, int64_t free_bytes) {
    const int64_t big = cuda_prefill_tokens(n_embd, n_ff, q_dim);
    GpuLayerPlan p = plan_gpu_layers(file, kv, cuda_working_bytes(n_embd, n_ff, q_dim, n_vocab, big), free_bytes);
    if (p.n_layers == kv.n_layer && p.output) {
        p.step_tokens = big;
        return p;
    }
    return plan_gpu_layers(file, kv, cuda_working_bytes(n_embd, n_ff, q_dim, n_vocab), free_bytes);
}

LayerBytes layer_bytes(const gguf::GgufFile& file, int n_layer) {
    // Every tensor by where it goes: blk.L.* to layer L, output.weight to the output, the rest
    // (token_embd, norms, rope_freqs) always uploaded. Each allocation padded as upload_matrix pads.
    LayerBytes b;
    b.layer.assign(n_layer, 0);
    for (const gguf::TensorInfo& t : file.tensors) {
        const int64_t bytes = (int64_t)((t.n_bytes + 15) & ~(uint64_t)15) + 16;
        int l = -1, used = 0;
        if (std::sscanf(t.name.c_str(), "blk.%d.%n", &l, &used) == 1 && used > 0 && l >= 0 && l < n_layer)
            b.layer[l] += bytes;
        else if (t.name == "output.weight") b.output += bytes;
        else b.fixed += bytes;
    }
    return b;
}

GpuLayerPlan plan_gpu_layers(const gguf::GgufFile& file, const KvLayout& kv, int64_t working_bytes,
                             int64_t free_bytes, int64_t kv_positions) {
    const int n_layer = kv.n_layer;
    const LayerBytes b = layer_bytes(file, n_layer);
    int64_t left = free_bytes - working_bytes - b.fixed;
    GpuLayerPlan plan;
    while (plan.n_layers < n_layer) {
        const int l = plan.n_layers;
        const int64_t need = b.layer[l] + kv_positions * (int64_t)(kv.k_width[l] + kv.v_width[l]) * 2;
        if (left < need) break;
        left -= need;
        ++plan.n_layers;
    }
    plan.output = plan.n_layers == n_layer && left >= b.output;
    return plan;
}

std::vector<int> split_layers(int n_layer, const std::vector<double>& shares) {
    double total = 0;
    for (double x : shares) total += std::max(0.0, x);
    std::vector<int> counts(shares.size(), 0);
    if (total <= 0 || shares.empty()) return counts;
    double cum = 0;
    int given = 0;
    for (size_t i = 0; i < shares.size(); ++i) {
        cum += std::max(0.0, shares[i]);
        const int upto = i + 1 == shares.size() ? n_layer : (int)std::lround(cum / total * n_layer);
        counts[i] = std::max(0, upto - given);
        given += counts[i];
    }
    return counts;
}

}  // namespace hearth::model

#ifdef HEARTH_HAVE_CUDA

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <memory>
#include <numeric>

#include "backend/cuda/attention.h"
#include "backend/cuda/device.h"
#include "backend/cuda/graph.h"
#include "backend/cuda/matmul.h"
#include "backend/cuda/moe.h"
#include "backend/cuda/ops.h"
#include "backend/cuda/sample.h"
#include "model/blocks.h"
#include "model/families.h"
#include "model/gpu_recipe.h"

namespace hearth::model {
namespace {

namespace cuda = backend::cuda;
using quant::QuantType;

// The decoder's comparison switches (HEARTH_CUDA_*): whether variable `name` is set to `value`.
bool env_is(const char* name, const char* value) {
    const char* e = std::getenv(name);
    return e != nullptr && std::strcmp(e, value) == 0;
}

// Every family the executor runs, each described by its own file (model/gpu_recipe.h).
// `partial`: llama-style (the recipe's `plain`), whose partial offload continues on the CPU
// Decoder; said here too because store::fit asks by architecture name, without a file.
struct RecipeFamily {
    const char* arch;
    Result<GpuRecipe> (*recipe)(const gguf::GgufFile&, const LoadOptions&);
    bool partial;
};
const RecipeFamily kFamilies[] = {
    {"llama", llama_gpu_recipe, true},    {"qwen2", qwen2_gpu_recipe, true},
    {"qwen3", qwen3_gpu_recipe, true},    {"qwen3moe", qwen3moe_gpu_recipe, true},
    {"gemma3", gemma3_gpu_recipe, false}, {"phi3", phi3_gpu_recipe, false},
    {"gpt-oss", gpt_oss_gpu_recipe, false}, {"llama4", llama4_gpu_recipe, false},
    {"deepseek2", deepseek2_gpu_recipe, false}, {"bert", bert_gpu_recipe, false},
};

const RecipeFamily* find_family(const std::string& arch) {
    for (const RecipeFamily& f : kFamilies)
        if (arch == f.arch) return &f;
    return nullptr;
}

// Rows [r0, r0 + n) of a 2-D weight (one part of a fused projection).
ops::Weight weight_rows(const ops::Weight& w, int64_t r0, int64_t n) {
    ops::Weight v;
    v.type = w.type;
    v.data = w.data + r0 * w.row_bytes;
    v.ne[0] = w.ne[0], v.ne[1] = n;
    v.row_bytes = w.row_bytes;
    return v;
}

// A weight matrix in device memory, rows as in the file (a stack of experts: n_out rows each,
// one after the other).
struct DevMatrix {
    QuantType type = QuantType::f32;
    const std::byte* data = nullptr;
    size_t row_bytes = 0;
    int64_t n_in = 0, n_out = 0;
    DevMatrix expert(int64_t e) const {
        DevMatrix m = *this;
        m.data = data + e * n_out * row_bytes;
        return m;
    }
};

struct DevLayer {
    const GpuLayerRecipe* recipe = nullptr;
    const float* attn_norm = nullptr;  // [n_embd]
    const float* ffn_norm = nullptr;   // [n_embd]
    const float *post_attn_norm = nullptr, *post_ffn_norm = nullptr;  // [n_embd] or null (GpuRecipe::post_norms)
    const float *bq = nullptr, *bk = nullptr, *bv = nullptr, *bo = nullptr;  // biases or null
    const float *q_norm = nullptr, *k_norm = nullptr;         // [head_dim_k] or null
    const float* sinks = nullptr;                             // [n_head] or null
    DevMatrix wq, wk, wv, wo, gate, up, down;  // gate/up/down absent in MoE layers
    const float* router = nullptr;              // MoE: [n_expert][n_embd] f32 (dequantized at load)
    const float* router_b = nullptr;            // MoE: [n_expert] or null
    std::vector<float> probs_b;                 // MoE: [n_expert] selection bias (host routing), or empty
    DevMatrix gate_exps, up_exps, down_exps;    // MoE: expert stacks
    const float *gate_exps_b = nullptr, *up_exps_b = nullptr, *down_exps_b = nullptr;  // [n_expert][width] or null
    DevMatrix shared_gate, shared_up, shared_down;  // MoE: the shared expert, or absent
    // MLA (GpuRecipe::mla): q via wq or the low-rank wq_a -> q_a_norm -> wq_b; wkv_a to the latent
    // and k_pe; per-head stacks wk_b [n_head] x [nope -> kv_lora] and wv_b [n_head] x [kv_lora -> v].
    const float *q_a_norm = nullptr, *kv_a_norm = nullptr;
    DevMatrix wq_a, wq_b, wkv_a, wk_b, wv_b;
    // Encoder (GpuRecipe::encoder): LayerNorm biases (attn_norm/ffn_norm hold attn_output_norm and
    // layer_output_norm), the FFN's up/down (in up, down) biases.
    const float *attn_norm_b = nullptr, *ffn_norm_b = nullptr, *up_b = nullptr, *down_b = nullptr;
};

class CudaDecoder final : public DecoderBase {
public:
    // Layers [first_layer, first_layer + n_gpu_layers) run here. Without the output: a part of
    // a split model (ChainDecoder below): forward() leaves the residual stream in residual()
    // instead of logits. first_layer > 0: forward() starts from the residual stream set by
    // set_input (the previous part's) instead of the token embeddings.
    CudaDecoder(std::shared_ptr<const gguf::GgufFile> file, GpuRecipe recipe, std::unique_ptr<cuda::Device> dev,
                int first_layer, int n_gpu_layers, bool output)
        : DecoderBase(std::move(file), recipe.hp, 1), recipe_(std::move(recipe)), dev_(std::move(dev)),
          stream_(*dev_), first_layer_(first_layer), n_gpu_layers_(n_gpu_layers), partial_(!output) {
        stream_.set_programmatic(pdl_on_ && dev_->info().cc_major >= 9);
    }
    // After a forward() without the output: [n][n_embd] the residual stream after this part's last layer.
    const float* residual() const { return host_residual_.data(); }
    // For the next forward() of a part with first_layer > 0: the residual stream [n][n_embd]
    // entering its first layer (host memory, valid until that forward returns).
    void set_input(const float* residual) { input_ = residual; }
    int first_layer() const { return first_layer_; }
    int n_layers() const { return n_gpu_layers_; }

    Status load_weights();
    Status run_forward(const Batch& batch, KvCache& kv, ForwardOutput& out) override;
    std::string device_name() const override {
        return strformat("cuda:%d (%s)", dev_->info().index, dev_->info().name.c_str());
    }
    bool kv_on_device() const override { return true; }
    int64_t device_weight_bytes() const override { return weight_bytes_; }
    // Total device memory less the weights, the activations of a prefill_tokens_-token step and
    // 1 GiB for the CUDA context, scratch and graphs (cuda_working_bytes).
    int64_t device_kv_budget_bytes() const override {
        const int64_t left = std::max<int64_t>(
            0, (int64_t)dev_->info().total_mem_bytes - weight_bytes_ - cuda_working_bytes(hp_, prefill_tokens_));
        // A part keeps the K/V of its own layers only: the budget, in bytes of a pool over every
        // layer (what the Engine sizes), grows by n_layer / n_gpu_layers.
        return n_gpu_layers_ > 0 && n_gpu_layers_ < hp_.n_layer ? left / n_gpu_layers_ * hp_.n_layer : left;
    }

    int64_t prefill_step_tokens() const override { return partial_ || first_layer_ > 0 ? 0 : prefill_tokens_; }
    // After load_weights: holds the activations of a `tokens`-token step (GpuLayerPlan::step_tokens),
    // so that the Engine's prompt steps of that size cannot run out of device memory later.
    // If they do not fit now, the model keeps 512-token steps.
    void reserve_prefill(int64_t tokens) {
        if (tokens <= 512 || partial_ || first_layer_ > 0) return;
        if (reserve(tokens, 1).ok()) prefill_tokens_ = tokens;
    }

private:
    Result<DevMatrix> upload_matrix(const std::string& name, const ops::Weight& w);
    Result<const float*> upload_vec(const std::vector<float>& v);  // null for an empty vector
    Status ensure_kv(const KvCache& kv);
    Status reserve(int64_t n_tokens, int64_t n_outputs);
    // The device part of a step over the tables prepared in ints_ (kernels only: capturable,
    // unless the model has experts: see moe_ffn).
    void run_device(int64_t n, int64_t n_out, size_t stride);
    Status load_encoder_weights();
    // The encoder's layers over dx_ (embedded and normed by run_device), in place.
    void run_encoder(int64_t n, const int32_t* d_slot, const backend::AttnIndexCuda& idx,
                     const backend::AttnSplitCuda& split);
    // dproj_ = the mixture-of-experts block of layer L over dh_ (n tokens). The routing runs on
    // the device; the chosen experts come back to the host (one synchronization per layer),
    // which groups the tokens' slots by expert and runs each chosen expert once over its rows
    // (its weights read once per step), then the weighted sum is formed on the device in
    // expert-id order (MoeBlock's SumOrder::expert_id for this family).
    // Where every expert matrix has a tensor-core kernel (and no biases), the chosen experts run
    // as one launch per matrix over all of them (matmul_cuda_q8_expert_groups: groups of up to 64
    // rows per expert, int8 inputs); otherwise one matmul per chosen expert and matrix
    // (HEARTH_CUDA_MOE_GROUPS=0: always, for comparisons).
    // A single-token step (moe_on_device_) stays on the device instead: the expert kernels read
    // the chosen ids from device memory (matmul_cuda_q8_experts), so the step is a CUDA graph.
    // xq_ holds dh_ quantized when xq_ready.
    void moe_ffn(const DevLayer& L, int64_t n, bool xq_ready);
    // dproj_ += the shared expert of layer L over dh_ (n tokens), if it has one.
    void moe_shared_expert(const DevLayer& L, int64_t n);
    // dproj_ = the MLA block of layer l over dh_ (n tokens), as model/deepseek2.cpp runs it in the
    // absorbed form: K/V rows of the shared latent written to the cache, attention with one kv head.
    void mla_attention(const DevLayer& L, int l, int64_t n, const backend::RopeConfig& rope, const int32_t* d_pos,
                       const int32_t* d_slot, const backend::AttnIndexCuda& idx, const backend::AttnSplitCuda& split);
    void linear(const DevMatrix& w, const float* x, float* y, int64_t n) {
        backend::matmul_cuda(stream_, w.type, w.data, w.row_bytes, x, y, w.n_in, w.n_out, n);
    }
    // y_i = W_i x for matrices sharing the input x: decode-sized batches of int8-path types quantize x
    // once (into xq_) instead of once per matrix.
    void linear_shared(const float* x, int64_t n, std::initializer_list<std::pair<const DevMatrix*, float*>> outs);
    // Attention of the n tokens' queries in dq_ into dattn_: the first row_tokens_ tokens (runs of
    // fewer than kAttnFlashMinTokens tokens of one sequence: the step's decodes, which the Engine
    // puts first) by the per-token kernel, the rest in a call of their own, where a prefill
    // takes the flash kernel. One call when split (decode-sized: the row kernel anyway).
    void attend(const backend::PagedKvCuda& kv, const backend::AttnIndexCuda& idx, int64_t n,
                const backend::AttentionParams& ap, const backend::AttnSplitCuda& split, void* out_q8);
    void linear_q8(const DevMatrix& w, float* y, int64_t n) {
        backend::matmul_cuda_q8(stream_, w.type, w.data, w.row_bytes, xq_.data(), y, w.n_in, w.n_out, n, q8_kernel(n));
    }
    static backend::MatmulQ8Matrix q8_matrix(const DevMatrix& w) { return {w.type, w.data, w.row_bytes, w.n_out}; }
    backend::AttentionParams attention_params() const;
    // attention_cuda puts its arrival counters right after the partial sums of the call's
    // n tokens, so calls with different token counts would find each other's partial sums in
    // their counters (which must be zero between calls). The workspace of an n-token call starts
    // so that every call's counters begin at one fixed offset (after the partial sums of
    // kFuseMaxTokens tokens) and every call's partial sums end there. The partial-sum size
    // repeats attention.cu's attention_partial_bytes (16-byte rounded).
    void* attn_workspace(int64_t n) const {
        const backend::AttentionParams ap = attention_params();
        auto partial = [&](int64_t t, int splits) {
            return ((size_t)t * ap.n_head * splits * (ap.head_dim_v + 2) * sizeof(float) + 15) & ~(size_t)15;
        };
        return static_cast<std::byte*>(attn_ws_.data()) + partial(kFuseMaxTokens, attn_splits_.max_splits) -
               partial(n, attn_splits_for(n));
    }
    // Parts per (token, kv head) of an n-token decode-sized call (backend::AttnDecodeSplits). n *
    // parts never exceeds kFuseMaxTokens * max_splits, so every call's partial sums fit before the
    // fixed counters.
    int attn_splits_for(int64_t n) const { return attn_splits_.for_tokens(attention_params(), n); }
    backend::AttnSplitCuda attn_split(int64_t n) const {
        return n <= kFuseMaxTokens ? backend::AttnSplitCuda{attn_workspace(n), attn_splits_for(n)}
                                   : backend::AttnSplitCuda{};
    }

    GpuRecipe recipe_;
    // Declared first so it outlives every buffer and the stream (members die in reverse order).
    std::unique_ptr<cuda::Device> dev_;
    cuda::Stream stream_;
    int first_layer_;   // layers [first_layer_, first_layer_ + n_gpu_layers_) run here; layers_,
    int n_gpu_layers_;  // k_cache_ and v_cache_ are indexed from first_layer_
    bool partial_;      // the output runs elsewhere (the next part, or the CPU): forward() leaves the residual
    const float* input_ = nullptr;  // set_input
    std::pmr::vector<float> host_residual_{cuda::pinned_host_resource()};
    std::vector<cuda::DeviceBuffer> weights_;  // every uploaded tensor, owned
    int64_t weight_bytes_ = 0;                 // their sizes
    std::vector<DevLayer> layers_;
    DevMatrix embd_;              // token_embd on the device, when get_rows_cuda reads its type
    bool embd_on_device_ = false; // else rows are dequantized on the host per batch (exact)
    DevMatrix output_dev_;        // output (or the tied token_embd)
    const float* output_norm_dev_ = nullptr;
    backend::RopeConfig rope_;    // hp_.rope with freq_factors in device memory
    const float *rope_short_ = nullptr, *rope_long_ = nullptr;  // GpuRecipe::long_rope's factor sets, or null
    // Encoder: position embeddings, the token type 0 row (or null), the embedding LayerNorm.
    DevMatrix pos_embd_;
    const float *type_row_ = nullptr, *embd_norm_w_ = nullptr, *embd_norm_b_ = nullptr;
    std::vector<float> host_x_;  // encoder: [n][n_embd] final hidden states, pooled on the host

    // KV pool: per layer [kv_blocks_ * kv_block_size_][width] f16 rows.
    std::vector<cuda::DeviceBuffer> k_cache_, v_cache_;
    int kv_blocks_ = 0, kv_block_size_ = 0;

    // Activations for up to cap_tokens_ tokens / cap_outputs_ output rows, carved from act_.
    cuda::DeviceBuffer act_;
    int64_t cap_tokens_ = 0, cap_outputs_ = 0;
    int64_t prefill_tokens_ = 512;  // the prompt step budgeted for (reserve_prefill)
    float *dx_ = nullptr, *dh_ = nullptr, *dproj_ = nullptr;  // [n][n_embd]: residual, normed, block output
    float *dq_ = nullptr, *dk_ = nullptr, *dv_ = nullptr;     // [n][n_head*hd_k], [n][n_kv*hd_k], [n][n_kv*hd_v]
    float* dattn_ = nullptr;                                  // [n][n_head*hd_v]
    float *dgate_ = nullptr, *dup_ = nullptr;                 // [n][max(n_ff, shared expert's n_ff_exp)]
    float* dshared_ = nullptr;                                // [n][n_embd] shared expert output (or null)
    // MLA scratch (GpuRecipe::mla): [n][lora_q], [n][n_head * k_mla], [n * n_head][rot], [n][rot],
    // [n][max(nope, kv_lora)], [n][max(kv_lora, v)], [n][n_head * v]. dq_ holds the latent-space
    // queries, dk_/dv_ the cache rows, dattn_ the latent attention output.
    cuda::DeviceBuffer mla_act_;
    float *dm_qa_ = nullptr, *dm_q_ = nullptr, *dm_qpe_ = nullptr, *dm_kpe_ = nullptr, *dm_head_in_ = nullptr,
          *dm_head_out_ = nullptr, *dm_attv_ = nullptr;
    float* dlogits_ = nullptr;                                // [n_outputs][n_vocab]
    // MoE scratch for cap_tokens_ tokens: f32 [n*k][n_embd] expert inputs, [n*k][n_ff_exp] x2,
    // [n*k][n_embd] expert outputs, [n][n_expert] router probabilities, [n][k] weights; int32
    // [n][k] chosen ids, then the host's tables: [n*k] token of each row (rows grouped by
    // expert), [n][k] combine rows, [n][k] combine weights (as float bits), [n*k] input scales;
    // from moe_items_offset(n*k) the expert groups' table.
    cuda::DeviceBuffer moe_act_, moe_ints_;
    static int64_t moe_items_offset(int64_t m) { return (5 * m + 3) & ~(int64_t)3; }  // int32s: 16-byte aligned
    // The experts' int8 inputs: a single-token step's [k][n_ff_exp] down inputs, or a prompt
    // step's [n*k] rows of n_embd (gate/up) and then of n_ff_exp (down).
    cuda::DeviceBuffer moe_xq_;
    bool moe_groups_on_ = !env_is("HEARTH_CUDA_MOE_GROUPS", "0");
    bool moe_on_device_ = false;    // every expert stack has an int8 kernel (set by load_weights)
    float *dm_in_ = nullptr, *dm_gate_ = nullptr, *dm_up_ = nullptr, *dm_out_ = nullptr, *dm_logits_ = nullptr,
          *dm_w_ = nullptr;
    std::pmr::vector<int32_t> host_moe_sel_{cuda::pinned_host_resource()};  // ids [n*k], weights [n*k] (float bits)
    std::pmr::vector<int32_t> host_moe_tab_{cuda::pinned_host_resource()};  // the tables uploaded to moe_ints_
    std::vector<int32_t> moe_count_;  // [n_expert + 1] first row of each expert (and the end)
    std::vector<int32_t> seq_len_;    // encoder: [n_seqs] positions of each sequence in the batch
    std::pmr::vector<float> host_moe_logits_{cuda::pinned_host_resource()};  // [n][n_expert] (host routing)
    MoeSelector moe_selector_;
    cuda::DeviceBuffer xq_;       // int8 activations shared by linear_shared and the fused ops
    bool fusable_ = false;        // every layer matrix has an int8 kernel and n_embd, n_ff % 32 == 0
    // Attention's sequence-split workspace for decode-sized batches (zeroed at allocation; the
    // kernel leaves it so); attn_splits_ says how many parts per (token, kv head)
    // (HEARTH_CUDA_ATTN_BLOCKS sets its target_blocks; 0: max_splits at every size).
    cuda::DeviceBuffer attn_ws_;
    backend::AttnDecodeSplits attn_splits_;
    // Per-batch int32 tables (tokens, positions, seq ids, kv ends, slots, output rows, block tables).
    cuda::DeviceBuffer ints_;
    // Decode-sized batches (<= kFuseMaxTokens tokens: one token of each of many sequences
    // under the Engine) take the fused kernels, the int8 matmuls for every matrix (the output
    // one too; see q8_kernel: dp4a up to 4 tokens, else the batch-invariant tensor-core kernel
    // that reads the weights once per step) and the split attention. Batches up to kGraphMaxTokens replay a CUDA
    // graph, captured when a step has the same shape as the step before (so a batch whose size
    // changes every step is not captured in vain); its key is the shape, the stream scratch and
    // gen_, which counts reallocations of what the graph points into.
    static constexpr int64_t kFuseMaxTokens = 64;
    static constexpr int64_t kIntsPerToken = 7;  // the per-token int tables (forward)
    static constexpr int64_t kGraphMaxTokens = 64;
    cuda::Graph graph_;
    int64_t graph_n_ = -1, graph_n_out_ = -1;
    size_t graph_stride_ = 0;
    uint64_t graph_gen_ = 0, gen_ = 1;
    int64_t last_n_ = -1, last_n_out_ = -1;  // the previous step's shape
    size_t last_stride_ = 0;
    // The stream scratch the graph's matmuls point into: a longer prefill in between (another
    // request) grows, i.e. moves, it, and the graph must then be captured again.
    const void* graph_scratch_ = nullptr;
    // HEARTH_CUDA_GRAPHS=0 runs every step eagerly (for comparing against the graph replays).
    bool graphs_on_ = !env_is("HEARTH_CUDA_GRAPHS", "0");
    // The int8 matmul of a step: up to kDp4aMaxTokens tokens the dp4a matrix-vector kernels
    // (measured on the H100: 8B Q4_K_M, one token, 2.43 ms of matmuls against 3.51 ms for the
    // tensor-core kernel, whose few warps per SM cannot hide the latency of a single row;
    // single-stream decode is the common case and must not pay for batching), above it the
    // tensor-core kernel that reads each weight once per step (32 tokens: 8.36 ms against
    // 18.23). The price: a sequence's bits differ between a step of <= 4 tokens and a larger one
    // (both within the decoder's tolerance; the tensor-core kernel alone is batch-invariant).
    // HEARTH_CUDA_MATVEC=dp4a or =mma forces one kernel for every step (before/after
    // comparisons), and HEARTH_CUDA_PINNED=0 copies logits into the caller's pageable memory
    // instead of giving ForwardOutput::logits page-locked memory.
    static constexpr int64_t kDp4aMaxTokens = 4;
    enum class Q8Choice { automatic, mma, dp4a };
    Q8Choice q8_choice_ = env_is("HEARTH_CUDA_MATVEC", "dp4a")  ? Q8Choice::dp4a
                          : env_is("HEARTH_CUDA_MATVEC", "mma") ? Q8Choice::mma
                                                                 : Q8Choice::automatic;
    backend::MatmulQ8Kernel q8_kernel(int64_t n) const {
        if (q8_choice_ == Q8Choice::dp4a || (q8_choice_ == Q8Choice::automatic && n <= kDp4aMaxTokens))
            return backend::MatmulQ8Kernel::dp4a;
        return backend::MatmulQ8Kernel::mma;
    }
    bool pinned_logits_ = !env_is("HEARTH_CUDA_PINNED", "0");
    // Batch::output_top_k: the candidates selected on the device (backend/cuda/sample.h) at the
    // end of the step, inside its graph (k is part of the graph's key), and only they copied
    // back. topk_buf_: int32 ids [cap][kMaxOutputTopK], f32 logits [cap][kMaxOutputTopK], then
    // the selection's workspace, for topk_cap_ output rows.
    cuda::DeviceBuffer topk_buf_;
    int64_t topk_cap_ = 0;
    int32_t graph_top_k_ = -1;
    // Leading tokens of this step in short runs (attend); a graph's calls are cut there.
    int64_t row_tokens_ = 0, graph_row_tokens_ = -1;
    bool device_topk_ = !env_is("HEARTH_CUDA_TOPK", "0");
    Status ensure_topk_buffer(int64_t n_out);
    size_t topk_vals_offset() const { return (size_t)topk_cap_ * kMaxOutputTopK * sizeof(int32_t); }
    size_t topk_ws_offset() const { return (2 * topk_vals_offset() + 255) & ~(size_t)255; }
    // Programmatic dependent launches for the whole step (sm_90; HEARTH_CUDA_PDL=0: plain launches).
    bool pdl_on_ = !env_is("HEARTH_CUDA_PDL", "0");
    // Grouped Q/K/V and gate/up launches, rope + KV write in the Q/K/V epilogue, the attention
    // output quantized by attention, the last residual add in the output norm
    // (HEARTH_CUDA_GROUP=0: the separate kernels, the same bits but for mma_chains_).
    bool group_on_ = !env_is("HEARTH_CUDA_GROUP", "0");
    // Steps on the tensor-core kernel (more than kDp4aMaxTokens tokens) launch Q, K and V, and
    // gate and up, of one weight type together too (matmul_cuda_q8_grouped, MatmulQ8Kernel::mma):
    // alone, K and V (1024 rows on an 8B model) are 128 blocks, a fraction of the device, at
    // ~150 GB/s. Each launch sums in the chain count of its stacked matrices
    // (MatmulQ8Chains::joint), a function of the shapes, so a token's bits still do not depend on
    // the batch; they differ from the separate launches' (HEARTH_CUDA_GROUP=0) in the last bits
    // where that count differs from a matrix's own (8B: K, V 8 chains alone, 4 with Q; gate, up
    // 2 alone, 1 together; the tiny test models: 1 chain either way). Measured (H100, 8B Q4_K_M,
    // cuda_forward_bench --batch 8,32, the same run): 4.52 / 9.06 ms per step against 4.99 / 10.24
    // with separate launches and 4.54 / 9.37 with each matrix's own count (MatmulQ8Chains::own:
    // the separate launches' bits). HEARTH_CUDA_MMA_GROUP=0: separate launches; =qkv: Q/K/V only;
    // =own: own chain counts (comparisons).
    bool mma_group_qkv_ = !env_is("HEARTH_CUDA_MMA_GROUP", "0");
    bool mma_group_ffn_ = !env_is("HEARTH_CUDA_MMA_GROUP", "0") && !env_is("HEARTH_CUDA_MMA_GROUP", "qkv");
    backend::MatmulQ8Chains mma_chains_ =
        env_is("HEARTH_CUDA_MMA_GROUP", "own") ? backend::MatmulQ8Chains::own : backend::MatmulQ8Chains::joint;
    bool rope_in_matmul_ = false;  // llama-style layers: set by load_weights
    // HEARTH_CUDA_MOE_HOST=1: single-token MoE steps take the host-routed path too (comparisons).
    bool moe_device_on_ = !env_is("HEARTH_CUDA_MOE_HOST", "1");
    // Tables and embedding rows copied to the device every step: page-locked, so the copies are
    // asynchronous DMA (the host writes them only after the previous step's synchronize).
    std::pmr::vector<int32_t> host_ints_{cuda::pinned_host_resource()};
    std::pmr::vector<float> host_embd_{cuda::pinned_host_resource()};  // [n][n_embd] rows dequantized on the host
};

Result<DevMatrix> CudaDecoder::upload_matrix(const std::string& name, const ops::Weight& w) {
    if (!backend::can_matmul_cuda(w.type))
        return error(StatusCode::unsupported, strformat("tensor %s: type %s has no CUDA matmul kernel", name.c_str(),
                                                        quant::type_name(w.type)));
    const size_t bytes = w.row_bytes * (size_t)w.n_out() * (size_t)w.ne[2] * (size_t)w.ne[3];
    // Padded: the int8 kernels read whole aligned 16-byte chunks (backend/cuda/matmul.h).
    HEARTH_ASSIGN(cuda::DeviceBuffer buf, cuda::DeviceBuffer::allocate(*dev_, ((bytes + 15) & ~(size_t)15) + 16));
    buf.upload(stream_, w.data, bytes);
    DevMatrix m{w.type, buf.as<std::byte>(), w.row_bytes, w.n_in(), w.n_out()};
    weight_bytes_ += (int64_t)buf.size_bytes();
    weights_.push_back(std::move(buf));
    return m;
}

Result<const float*> CudaDecoder::upload_vec(const std::vector<float>& v) {
    if (v.empty()) return static_cast<const float*>(nullptr);
    HEARTH_ASSIGN(cuda::DeviceBuffer buf, cuda::DeviceBuffer::allocate(*dev_, v.size() * sizeof(float)));
    buf.upload(stream_, v.data(), v.size() * sizeof(float));
    const float* p = buf.as<float>();
    weight_bytes_ += (int64_t)buf.size_bytes();
    weights_.push_back(std::move(buf));
    return p;
}

Status CudaDecoder::load_encoder_weights() {
    const Hparams& hp = hp_;
    const int64_t d = hp.n_embd;
    WeightLoader w(*file_);
    // The CPU family's names and shapes (model/bert.cpp).
    HEARTH_TRY(w.matrix("token_embd.weight", {d, hp.n_vocab}, tok_embd_));
    if (backend::can_get_rows_cuda(tok_embd_.type)) {
        HEARTH_ASSIGN(embd_, upload_matrix("token_embd.weight", tok_embd_));
        embd_on_device_ = true;
    }
    ops::Weight pos;
    HEARTH_TRY(w.matrix("position_embd.weight", {d, hp.n_ctx_train}, pos));
    if (!backend::can_get_rows_cuda(pos.type))
        return error(StatusCode::unsupported, strformat("position_embd.weight: type %s has no CUDA row lookup",
                                                        quant::type_name(pos.type)));
    HEARTH_ASSIGN(pos_embd_, upload_matrix("position_embd.weight", pos));
    if (const gguf::TensorInfo* tt = file_->find_tensor("token_types.weight")) {
        ops::Weight types;
        HEARTH_TRY(w.matrix("token_types.weight", {d, tt->ne[1]}, types));
        std::vector<float> row(d);  // every token is of type 0: one row, added as a bias
        const int32_t zero = 0;
        ops_.get_rows(types, &zero, 1, row.data());
        HEARTH_ASSIGN(type_row_, upload_vec(row));
    }
    std::vector<float> v;
    auto vec = [&](const std::string& tensor, int64_t n, const float*& dst) -> Status {
        v.clear();
        HEARTH_TRY(w.vec(tensor, n, v));
        HEARTH_ASSIGN(dst, upload_vec(v));
        return {};
    };
    HEARTH_TRY(vec("token_embd_norm.weight", d, embd_norm_w_));
    HEARTH_TRY(vec("token_embd_norm.bias", d, embd_norm_b_));
    layers_.resize(n_gpu_layers_);
    for (int l = 0; l < n_gpu_layers_; ++l) {
        auto name = [l](const char* n, const char* suffix = "weight") { return layer_tensor(l, n, suffix); };
        DevLayer& L = layers_[l];
        L.recipe = &recipe_.layers[l];
        struct M {
            const char* name;
            int64_t n_in, n_out;
            DevMatrix* dst;
            const float** bias;
        };
        for (const M& m : {M{"attn_q", d, d, &L.wq, &L.bq}, M{"attn_k", d, d, &L.wk, &L.bk}, M{"attn_v", d, d, &L.wv, &L.bv},
                           M{"attn_output", d, d, &L.wo, &L.bo}, M{"ffn_up", d, hp.n_ff, &L.up, &L.up_b},
                           M{"ffn_down", hp.n_ff, d, &L.down, &L.down_b}}) {
            ops::Weight t;
            HEARTH_TRY(w.matrix(name(m.name), {m.n_in, m.n_out}, t));
            HEARTH_ASSIGN(*m.dst, upload_matrix(name(m.name), t));
            HEARTH_TRY(vec(name(m.name, "bias"), m.n_out, *m.bias));
        }
        HEARTH_TRY(vec(name("attn_output_norm"), d, L.attn_norm));
        HEARTH_TRY(vec(name("attn_output_norm", "bias"), d, L.attn_norm_b));
        HEARTH_TRY(vec(name("layer_output_norm"), d, L.ffn_norm));
        HEARTH_TRY(vec(name("layer_output_norm", "bias"), d, L.ffn_norm_b));
    }
    return stream_.synchronize();  // uploads read the mapped file: finish before returning
}

void CudaDecoder::run_encoder(int64_t n, const int32_t* d_slot, const backend::AttnIndexCuda& idx,
                              const backend::AttnSplitCuda& split) {
    const Hparams& hp = hp_;
    const int64_t d = hp.n_embd;
    for (int l = 0; l < n_gpu_layers_; ++l) {
        const DevLayer& L = layers_[l];
        linear_shared(dx_, n, {{&L.wq, dq_}, {&L.wk, dk_}, {&L.wv, dv_}});
        backend::add_bias_cuda(stream_, dq_, L.bq, n, d);
        backend::add_bias_cuda(stream_, dk_, L.bk, n, d);
        backend::add_bias_cuda(stream_, dv_, L.bv, n, d);
        backend::kv_write_cuda(stream_, dk_, d, dv_, d, d_slot, n, (int)d, (int)d, k_cache_[l].data(), d,
                               v_cache_[l].data(), d);
        const backend::PagedKvCuda kvd{k_cache_[l].data(), v_cache_[l].data(), kv_block_size_, d, d};
        backend::attention_cuda(stream_, dq_, kvd, idx, n, attention_params(), dattn_, split);
        linear(L.wo, dattn_, dproj_, n);
        backend::add_bias_cuda(stream_, dproj_, L.bo, n, d);
        backend::add_cuda(stream_, dx_, dproj_, n * d);
        backend::layer_norm_cuda(stream_, dx_, L.attn_norm, L.attn_norm_b, dx_, d, n, hp.norm_eps);
        linear(L.up, dx_, dgate_, n);
        backend::add_bias_cuda(stream_, dgate_, L.up_b, n, hp.n_ff);
        backend::gelu_cuda(stream_, dgate_, dgate_, n * hp.n_ff);
        linear(L.down, dgate_, dproj_, n);
        backend::add_bias_cuda(stream_, dproj_, L.down_b, n, d);
        backend::add_cuda(stream_, dx_, dproj_, n * d);
        backend::layer_norm_cuda(stream_, dx_, L.ffn_norm, L.ffn_norm_b, dx_, d, n, hp.norm_eps);
    }
}

Status CudaDecoder::load_weights() {
    if (recipe_.encoder) return load_encoder_weights();
    const Hparams& hp = hp_;
    WeightLoader w(*file_);
    // Host views: tok_embd_, output_ (tied: = tok_embd_), output_norm_.
    HEARTH_TRY(load_embeddings(w, recipe_.output_required));
    rope_ = hp.rope;  // neox as the family says (the recipe's hparams)
    if (recipe_.long_rope) {  // phi3: both factor sets on the device, picked per step (forward)
        std::vector<float> f_short, f_long;
        HEARTH_TRY(w.vec("rope_factors_short.weight", hp.n_rot / 2, f_short, /*required=*/false));
        HEARTH_TRY(w.vec("rope_factors_long.weight", hp.n_rot / 2, f_long, /*required=*/false));
        HEARTH_ASSIGN(rope_short_, upload_vec(f_short));
        HEARTH_ASSIGN(rope_long_, upload_vec(f_long));
        rope_.freq_factors = rope_short_;
    } else {
        std::vector<float> rope_freqs;
        if (w.has("rope_freqs.weight")) HEARTH_TRY(w.vec("rope_freqs.weight", hp.n_rot / 2, rope_freqs));
        HEARTH_ASSIGN(rope_.freq_factors, upload_vec(rope_freqs));
    }

    const bool tied = output_.data == tok_embd_.data;
    // A later part of a split model looks up no tokens: it needs the matrix only as its output.
    const bool lookups = first_layer_ == 0;
    if ((lookups || (tied && !partial_)) && (tied || backend::can_get_rows_cuda(tok_embd_.type))) {
        if (tied) {
            HEARTH_ASSIGN(embd_, upload_matrix("token_embd.weight", tok_embd_));
        } else {
            HEARTH_ASSIGN(cuda::DeviceBuffer buf, cuda::DeviceBuffer::allocate(*dev_, tok_embd_.row_bytes * hp.n_vocab));
            buf.upload(stream_, tok_embd_.data, tok_embd_.row_bytes * hp.n_vocab);
            embd_ = DevMatrix{tok_embd_.type, buf.as<std::byte>(), tok_embd_.row_bytes, hp.n_embd, hp.n_vocab};
            weight_bytes_ += (int64_t)buf.size_bytes();
            weights_.push_back(std::move(buf));
        }
        embd_on_device_ = lookups && backend::can_get_rows_cuda(tok_embd_.type);
    }
    if (partial_) {
        // The output runs on the CPU.
    } else if (tied) {
        output_dev_ = embd_;
    } else {
        HEARTH_ASSIGN(output_dev_, upload_matrix("output.weight", output_));
    }
    if (!partial_) {
        HEARTH_ASSIGN(output_norm_dev_, upload_vec(output_norm_));
    }

    const AttnLoad& al = recipe_.attn;
    const int64_t d = hp.n_embd, q_dim = (int64_t)hp.n_head * hp.head_dim_k;
    const int64_t k_dim = (int64_t)hp.n_head_kv * hp.head_dim_k, v_dim = (int64_t)hp.n_head_kv * hp.head_dim_v;
    layers_.resize(n_gpu_layers_);
    for (int i = 0; i < n_gpu_layers_; ++i) {
        const int l = first_layer_ + i;  // the file's layer
        // Host views first (the CPU families' loaders: same names, shapes and checks), then uploads.
        auto name = [l](const char* n, const char* suffix = "weight") { return layer_tensor(l, n, suffix); };
        const GpuLayerRecipe& lr = recipe_.layers[l];
        DevLayer& L = layers_[i];
        L.recipe = &lr;
        std::vector<float> v;
        auto vec = [&](const std::string& tensor, int64_t n, const float*& dst, bool required = true) -> Status {
            v.clear();
            HEARTH_TRY(w.vec(tensor, n, v, required));
            HEARTH_ASSIGN(dst, upload_vec(v));
            return {};
        };
        HEARTH_TRY(vec(name("attn_norm"), d, L.attn_norm));
        if (recipe_.mla) {  // the CPU family's names and shapes (model/deepseek2.cpp)
            const MlaRecipe& ml = recipe_.mla_dims;
            const int64_t nh = hp.n_head, q_mla = nh * ml.n_embd_k_mla;
            ops::Weight t;
            if (ml.n_lora_q > 0) {
                HEARTH_TRY(vec(name("attn_q_a_norm"), ml.n_lora_q, L.q_a_norm));
                HEARTH_TRY(w.matrix(name("attn_q_a"), {d, ml.n_lora_q}, t));
                HEARTH_ASSIGN(L.wq_a, upload_matrix(name("attn_q_a"), t));
                HEARTH_TRY(w.matrix(name("attn_q_b"), {ml.n_lora_q, q_mla}, t));
                HEARTH_ASSIGN(L.wq_b, upload_matrix(name("attn_q_b"), t));
            } else {
                HEARTH_TRY(w.matrix(name("attn_q"), {d, q_mla}, t));
                HEARTH_ASSIGN(L.wq, upload_matrix(name("attn_q"), t));
            }
            HEARTH_TRY(vec(name("attn_kv_a_norm"), ml.n_lora_kv, L.kv_a_norm));
            HEARTH_TRY(w.matrix(name("attn_kv_a_mqa"), {d, ml.n_lora_kv + hp.n_rot}, t));
            HEARTH_ASSIGN(L.wkv_a, upload_matrix(name("attn_kv_a_mqa"), t));
            HEARTH_TRY(w.matrix(name("attn_k_b"), {ml.n_nope, ml.n_lora_kv, nh}, t));
            HEARTH_ASSIGN(L.wk_b, upload_matrix(name("attn_k_b"), t));
            HEARTH_TRY(w.matrix(name("attn_v_b"), {ml.n_lora_kv, ml.n_embd_v_mla, nh}, t));
            HEARTH_ASSIGN(L.wv_b, upload_matrix(name("attn_v_b"), t));
            HEARTH_TRY(w.matrix(name("attn_output"), {nh * ml.n_embd_v_mla, d}, t));
            HEARTH_ASSIGN(L.wo, upload_matrix(name("attn_output"), t));
        } else {
            AttnWeights a;
            if (!al.refuse_fused_qkv && w.has(name("attn_qkv"))) {  // [q | k | v] rows (phi3)
                ops::Weight qkv;
                HEARTH_TRY(w.matrix(name("attn_qkv"), {d, q_dim + k_dim + v_dim}, qkv));
                a.wq = weight_rows(qkv, 0, q_dim), a.wk = weight_rows(qkv, q_dim, k_dim);
                a.wv = weight_rows(qkv, q_dim + k_dim, v_dim);
                std::vector<float> b;
                HEARTH_TRY(w.vec(name("attn_qkv", "bias"), q_dim + k_dim + v_dim, b, /*required=*/false));
                if (!b.empty()) {
                    a.bq.assign(b.begin(), b.begin() + q_dim);
                    a.bk.assign(b.begin() + q_dim, b.begin() + q_dim + k_dim);
                    a.bv.assign(b.begin() + q_dim + k_dim, b.end());
                }
                HEARTH_TRY(w.matrix(name("attn_output"), {(int64_t)hp.n_head * hp.head_dim_v, d}, a.wo));
            } else {
                HEARTH_TRY(blocks::load_attention(w, hp, l, al, a));
            }
            HEARTH_ASSIGN(L.bq, upload_vec(a.bq));
            HEARTH_ASSIGN(L.bk, upload_vec(a.bk));
            HEARTH_ASSIGN(L.bv, upload_vec(a.bv));
            HEARTH_ASSIGN(L.bo, upload_vec(a.bo));
            HEARTH_ASSIGN(L.q_norm, upload_vec(a.q_norm));
            HEARTH_ASSIGN(L.k_norm, upload_vec(a.k_norm));
            HEARTH_ASSIGN(L.wq, upload_matrix(name("attn_q"), a.wq));
            HEARTH_ASSIGN(L.wk, upload_matrix(name("attn_k"), a.wk));
            HEARTH_ASSIGN(L.wv, upload_matrix(name("attn_v"), a.wv));
            HEARTH_ASSIGN(L.wo, upload_matrix(name("attn_output"), a.wo));
        }
        if (recipe_.sinks) HEARTH_TRY(vec(name("attn_sinks"), hp.n_head, L.sinks));
        if (recipe_.post_norms) HEARTH_TRY(vec(name("post_attention_norm"), d, L.post_attn_norm));
        HEARTH_TRY(vec(name(recipe_.ffn_norm.c_str()), d, L.ffn_norm));
        if (recipe_.post_norms) HEARTH_TRY(vec(name("post_ffw_norm"), d, L.post_ffn_norm));
        if (!lr.moe) {
            FfnWeights f;
            if (recipe_.fused_up) {  // ffn_up rows [gate | up] (phi3)
                ops::Weight up;
                HEARTH_TRY(w.matrix(name("ffn_up"), {d, 2 * hp.n_ff}, up));
                f.gate = weight_rows(up, 0, hp.n_ff), f.up = weight_rows(up, hp.n_ff, hp.n_ff);
                HEARTH_TRY(w.matrix(name("ffn_down"), {hp.n_ff, d}, f.down));
            } else {
                HEARTH_TRY(blocks::load_ffn(w, l, d, hp.n_ff, f));
            }
            HEARTH_ASSIGN(L.gate, upload_matrix(name("ffn_gate"), f.gate));
            HEARTH_ASSIGN(L.up, upload_matrix(name("ffn_up"), f.up));
            HEARTH_ASSIGN(L.down, upload_matrix(name("ffn_down"), f.down));
            continue;
        }
        MoeWeights moe;
        HEARTH_TRY(load_moe(w, hp, l, recipe_.expert_biases, moe));
        // The router is small (n_expert rows): dequantized to f32 once, whatever its file type.
        std::vector<int32_t> all(hp.n_expert);
        std::iota(all.begin(), all.end(), 0);
        std::vector<float> router((size_t)hp.n_expert * hp.n_embd);
        ops_.get_rows(moe.router, all.data(), hp.n_expert, router.data());
        HEARTH_ASSIGN(L.router, upload_vec(router));
        HEARTH_ASSIGN(L.router_b, upload_vec(moe.router_b));
        if (recipe_.probs_bias)
            HEARTH_TRY(w.vec(name("exp_probs_b", "bias"), hp.n_expert, moe.probs_b, /*required=*/false));
        L.probs_b = moe.probs_b;
        HEARTH_ASSIGN(L.gate_exps, upload_matrix(name("ffn_gate_exps"), moe.gate_exps));
        HEARTH_ASSIGN(L.up_exps, upload_matrix(name("ffn_up_exps"), moe.up_exps));
        HEARTH_ASSIGN(L.down_exps, upload_matrix(name("ffn_down_exps"), moe.down_exps));
        HEARTH_ASSIGN(L.gate_exps_b, upload_vec(moe.gate_b));
        HEARTH_ASSIGN(L.up_exps_b, upload_vec(moe.up_b));
        HEARTH_ASSIGN(L.down_exps_b, upload_vec(moe.down_b));
        if (recipe_.shared_expert) {
            FfnWeights sh;
            HEARTH_TRY(
                blocks::load_ffn(w, l, d, recipe_.shared_ff, sh, "ffn_gate_shexp", "ffn_up_shexp", "ffn_down_shexp"));
            HEARTH_ASSIGN(L.shared_gate, upload_matrix(name("ffn_gate_shexp"), sh.gate));
            HEARTH_ASSIGN(L.shared_up, upload_matrix(name("ffn_up_shexp"), sh.up));
            HEARTH_ASSIGN(L.shared_down, upload_matrix(name("ffn_down_shexp"), sh.down));
        }
    }
    // The fused decode kernels and the device routing compose the llama-style layer only.
    fusable_ = recipe_.plain && hp.n_embd % 32 == 0 && hp.n_ff % 32 == 0;
    for (const DevLayer& L : layers_)
        for (const DevMatrix* m : {&L.wq, &L.wk, &L.wv, &L.wo, &L.gate, &L.up, &L.down})
            if (m->data != nullptr)  // MoE layers have no dense FFN (their experts take matmul_cuda)
                fusable_ = fusable_ && backend::can_matmul_cuda_q8(m->type);
    moe_on_device_ = recipe_.plain && hp.n_expert > 0 && moe_device_on_ && hp.n_embd % 32 == 0 &&
                     hp.n_ff_exp % 32 == 0;
    for (const DevLayer& L : layers_)
        for (const DevMatrix* m : {&L.gate_exps, &L.up_exps, &L.down_exps})
            if (m->data != nullptr) moe_on_device_ = moe_on_device_ && backend::can_matmul_cuda_q8(m->type);
    const DecoderSpec& spec = recipe_.decoder;
    rope_in_matmul_ = fusable_ && !spec.rope_neox && !spec.qkv_bias && !spec.qk_norm && !rope_.neox &&
                      rope_.n_rot > 0 && rope_.n_rot % 2 == 0 && rope_.n_rot <= hp.head_dim_k &&
                      hp.head_dim_k % 2 == 0;
    for (const DevLayer& L : layers_)
        rope_in_matmul_ = rope_in_matmul_ && !L.bq && !L.bk && !L.bv && !L.q_norm && !L.k_norm;
    return stream_.synchronize();  // uploads read the mapped file: finish before returning
}

Status CudaDecoder::ensure_kv(const KvCache& kv) {
    if (kv.type() != QuantType::f16)
        return error(StatusCode::unsupported, strformat("the CUDA decoder keeps an f16 KV cache; got a %s cache",
                                                        quant::type_name(kv.type())));
    if (kv.n_blocks() == kv_blocks_ && kv.block_size() == kv_block_size_) return {};
    k_cache_.clear(), v_cache_.clear();
    kv_blocks_ = kv_block_size_ = 0;
    const size_t n_slots = (size_t)kv.n_blocks() * kv.block_size();
    for (int l = 0; l < n_gpu_layers_; ++l) {
        const int fl = first_layer_ + l;  // the cache's layer
        HEARTH_ASSIGN(cuda::DeviceBuffer k, cuda::DeviceBuffer::allocate(*dev_, n_slots * kv.k_width(fl) * 2));
        HEARTH_ASSIGN(cuda::DeviceBuffer v, cuda::DeviceBuffer::allocate(*dev_, n_slots * kv.v_width(fl) * 2));
        k_cache_.push_back(std::move(k));
        v_cache_.push_back(std::move(v));
    }
    kv_blocks_ = kv.n_blocks(), kv_block_size_ = kv.block_size();
    ++gen_;
    return {};
}

Status CudaDecoder::reserve(int64_t n, int64_t n_out) {
    if (n <= cap_tokens_ && n_out <= cap_outputs_) return {};
    n = std::max(n, cap_tokens_), n_out = std::max(n_out, cap_outputs_);
    const Hparams& hp = hp_;
    const int64_t d = hp.n_embd, qd = (int64_t)hp.n_head * hp.head_dim_k, ad = (int64_t)hp.n_head * hp.head_dim_v;
    const int64_t kd = (int64_t)hp.n_head_kv * hp.head_dim_k, vd = (int64_t)hp.n_head_kv * hp.head_dim_v;
    // Every piece rounded to 64 floats so each starts 256-byte aligned.
    auto round = [](int64_t x) { return (x + 63) & ~(int64_t)63; };
    const int64_t ff = std::max(hp.n_ff, recipe_.shared_expert ? recipe_.shared_ff : 0);
    const int64_t sizes[] = {n * d, n * d, n * d, n * qd, n * kd, n * vd, n * ad, n * ff, n * ff,
                             n_out * hp.n_vocab, recipe_.shared_expert ? n * d : 0};
    int64_t total = 0;
    for (int64_t s : sizes) total += round(s);
    act_ = cuda::DeviceBuffer();
    HEARTH_ASSIGN(act_, cuda::DeviceBuffer::allocate(*dev_, (size_t)total * sizeof(float)));
    float* p = act_.as<float>();
    float** slots[] = {&dx_, &dh_, &dproj_, &dq_, &dk_, &dv_, &dattn_, &dgate_, &dup_, &dlogits_, &dshared_};
    for (size_t i = 0; i < std::size(sizes); ++i) *slots[i] = p, p += round(sizes[i]);
    if (hp.n_expert > 0) {
        const int64_t m = n * hp.n_expert_used;
        const int64_t moe_sizes[] = {m * d, m * hp.n_ff_exp, m * hp.n_ff_exp, m * d, n * hp.n_expert, m};
        int64_t moe_total = 0;
        for (int64_t s : moe_sizes) moe_total += round(s);
        moe_act_ = cuda::DeviceBuffer();
        HEARTH_ASSIGN(moe_act_, cuda::DeviceBuffer::allocate(*dev_, (size_t)moe_total * sizeof(float)));
        float* q = moe_act_.as<float>();
        float** moe_slots[] = {&dm_in_, &dm_gate_, &dm_up_, &dm_out_, &dm_logits_, &dm_w_};
        for (size_t i = 0; i < std::size(moe_sizes); ++i) *moe_slots[i] = q, q += round(moe_sizes[i]);
        // The tables (5 m int32s), then the expert groups' table: at most one group per expert
        // plus one per 64 rows, 4 int32s each.
        const int64_t max_items = hp.n_expert + m / backend::kMatmulQ8ExpertGroupRows + 1;
        moe_ints_ = cuda::DeviceBuffer();
        HEARTH_ASSIGN(moe_ints_, cuda::DeviceBuffer::allocate(
                                     *dev_, (size_t)(moe_items_offset(m) + 4 * max_items) * sizeof(int32_t)));
        // The experts' int8 inputs: a decode step's k down inputs, or a prompt step's m rows.
        moe_xq_ = cuda::DeviceBuffer();
        HEARTH_ASSIGN(moe_xq_, cuda::DeviceBuffer::allocate(
                                   *dev_, backend::activation_q8_bytes(std::max(d, hp.n_ff_exp), m) + 256));
    }
    if (recipe_.mla) {
        const MlaRecipe& ml = recipe_.mla_dims;
        const int64_t nh = hp.n_head, rot = hp.n_rot, lat = ml.n_lora_kv, vw = ml.n_embd_v_mla;
        const int64_t mla_sizes[] = {n * ml.n_lora_q, n * nh * ml.n_embd_k_mla, n * nh * rot, n * rot,
                                     n * std::max<int64_t>(ml.n_nope, lat), n * std::max(lat, vw), n * nh * vw};
        int64_t mla_total = 0;
        for (int64_t s : mla_sizes) mla_total += round(s);
        mla_act_ = cuda::DeviceBuffer();
        HEARTH_ASSIGN(mla_act_, cuda::DeviceBuffer::allocate(*dev_, (size_t)mla_total * sizeof(float)));
        float* q = mla_act_.as<float>();
        float** mla_slots[] = {&dm_qa_, &dm_q_, &dm_qpe_, &dm_kpe_, &dm_head_in_, &dm_head_out_, &dm_attv_};
        for (size_t i = 0; i < std::size(mla_sizes); ++i) *mla_slots[i] = q, q += round(mla_sizes[i]);
    }
    xq_ = cuda::DeviceBuffer();
    const int64_t widest = std::max({d, ad, ff});
    HEARTH_ASSIGN(xq_, cuda::DeviceBuffer::allocate(
                           *dev_, backend::activation_q8_bytes(widest, std::min(n, kFuseMaxTokens)) + 256));
    const backend::AttentionParams ap = attention_params();
    attn_splits_ = backend::attention_decode_splits(ap, dev_->info().n_sm, backend::attention_cuda_decode_mma(ap));
    if (const char* blocks_env = std::getenv("HEARTH_CUDA_ATTN_BLOCKS")) {
        const int64_t b = std::atoll(blocks_env);
        attn_splits_.target_blocks = b > 0 ? b : INT64_MAX / 2;  // 0: max_splits at every size
    }
    attn_ws_ = cuda::DeviceBuffer();
    const size_t ws_bytes = backend::attention_split_bytes(kFuseMaxTokens, ap, attn_splits_.max_splits);
    HEARTH_ASSIGN(attn_ws_, cuda::DeviceBuffer::allocate(*dev_, ws_bytes));
    const std::vector<std::byte> zeros(ws_bytes);
    attn_ws_.upload(stream_, zeros.data(), ws_bytes);
    HEARTH_TRY(stream_.synchronize());
    cap_tokens_ = n, cap_outputs_ = n_out;
    ++gen_;
    return {};
}

Status CudaDecoder::run_forward(const Batch& batch, KvCache& kv, ForwardOutput& out) {
    HEARTH_TRY(dev_->status());  // a failed device stays failed (sticky errors)
    // This thread's current device is this part's (a split model's parts run on several).
    if (!dev_->make_current()) return dev_->status();
    HEARTH_TRY(validate(batch, kv));
    HEARTH_TRY(ensure_kv(kv));
    const Hparams& hp = hp_;
    const int64_t n = batch.n_tokens(), d = hp.n_embd;
    int64_t n_out = 0;
    for (int64_t t = 0; t < n; ++t) n_out += batch.output[t] ? 1 : 0;
    HEARTH_TRY(reserve(n, n_out));

    // Int tables: tokens, positions, seq ids, kv ends, slots, chunk starts (GpuRecipe::n_chunk),
    // q scales (f32 bits: NoPE temperature) [n]; output rows [n_out]; block tables [n_seqs][stride].
    const int bs = kv.block_size();
    size_t stride = 1;
    for (const auto& t : batch.block_tables) stride = std::max(stride, t.size());
    const size_t n_seqs = batch.block_tables.size();
    host_ints_.assign(kIntsPerToken * n + n_out + n_seqs * stride, 0);  // keeps its pinned block when it fits
    int32_t* hi = host_ints_.data();
    int32_t *h_tok = hi, *h_pos = hi + n, *h_seq = hi + 2 * n, *h_end = hi + 3 * n, *h_slot = hi + 4 * n;
    int32_t *h_begin = hi + 5 * n, *h_qscale = hi + 6 * n;
    int32_t *h_out = hi + kIntsPerToken * n, *h_tab = h_out + n_out;
    if (recipe_.encoder) {  // bidirectional: every token sees its sequence's positions in the batch
        for (int64_t t = 0; t < n; ++t)
            if (batch.positions[t] >= hp.n_ctx_train)
                return error(StatusCode::out_of_range, strformat("position %d is beyond the model's %lld positions",
                                                                 batch.positions[t], (long long)hp.n_ctx_train));
        seq_len_.assign(n_seqs, 0);
        for (int64_t t = 0; t < n; ++t)
            seq_len_[batch.seq_ids[t]] = std::max(seq_len_[batch.seq_ids[t]], batch.positions[t] + 1);
    }
    for (int64_t t = 0, o = 0; t < n; ++t) {
        const int32_t pos = batch.positions[t], seq = batch.seq_ids[t];
        h_tok[t] = batch.tokens[t], h_pos[t] = pos, h_seq[t] = seq;
        h_end[t] = recipe_.encoder ? seq_len_[seq] : pos + 1;
        h_slot[t] = batch.block_tables[seq][pos / bs] * bs + pos % bs;
        h_begin[t] = recipe_.n_chunk > 0 ? pos / recipe_.n_chunk * recipe_.n_chunk : 0;
        // As the CPU family computes it (llama4.cpp), in the same types.
        const float qs = recipe_.temp_floor > 0 ? (float)(std::log(std::floor(((float)pos + 1.0f) / recipe_.temp_floor) + 1.0) *
                                                                  recipe_.temp_scale + 1.0)
                                                : 1.0f;
        std::memcpy(&h_qscale[t], &qs, sizeof(float));
        if (batch.output[t]) h_out[o++] = (int32_t)t;
    }
    if (recipe_.long_rope) {  // as the CPU family picks the factors: by the KV pool's capacity
        const float* f = (int64_t)kv.n_blocks() * kv.block_size() > hp.rope.n_ctx_orig ? rope_long_ : rope_short_;
        if (f != rope_.freq_factors) rope_.freq_factors = f, ++gen_;
    }
    for (size_t s = 0; s < n_seqs; ++s)
        std::copy(batch.block_tables[s].begin(), batch.block_tables[s].end(), h_tab + s * stride);
    // (Decode-sized steps take the row kernel whole: no cut, so no graph key that varies.)
    row_tokens_ = 0;
    while (n > kFuseMaxTokens && row_tokens_ < n) {
        int64_t end = row_tokens_ + 1;
        while (end < n && batch.seq_ids[end] == batch.seq_ids[row_tokens_]) ++end;
        if (end - row_tokens_ >= backend::kAttnFlashMinTokens) break;
        row_tokens_ = end;
    }
    if (ints_.size_bytes() < host_ints_.size() * sizeof(int32_t)) {
        ints_ = cuda::DeviceBuffer();
        HEARTH_ASSIGN(ints_, cuda::DeviceBuffer::allocate(*dev_, std::max<size_t>(host_ints_.size() * 2, 1024) * 4));
        ++gen_;
    }
    ints_.upload(stream_, host_ints_.data(), host_ints_.size() * sizeof(int32_t));
    if (first_layer_ > 0) {  // the previous part's residual stream (set_input)
        if (input_ == nullptr) return error(StatusCode::internal, "a later part of a split model ran without its input");
        act_.upload(stream_, input_, (size_t)n * d * sizeof(float), (size_t)((std::byte*)dx_ - act_.as<std::byte>()));
    } else if (!embd_on_device_) {
        if ((int64_t)host_embd_.size() < n * d) host_embd_.resize(n * d);
        ops_.get_rows(tok_embd_, batch.tokens.data(), n, host_embd_.data());
        // Through act_'s buffer at dx_'s offset (DeviceBuffer::upload works on whole buffers).
        act_.upload(stream_, host_embd_.data(), (size_t)n * d * sizeof(float),
                    (size_t)((std::byte*)dx_ - act_.as<std::byte>()));
    }
    // A step of a MoE model synchronizes with the host once per layer (moe_ffn), unless it is a
    // single-token step on the device path: no graph then.
    const bool graphable = n <= kGraphMaxTokens && graphs_on_ && !recipe_.encoder &&
                           (hp.n_expert == 0 || (n == 1 && moe_on_device_));
    const bool repeated = n == last_n_ && n_out == last_n_out_ && stride == last_stride_;
    last_n_ = n, last_n_out_ = n_out, last_stride_ = stride;
    // Top-k candidates on the device (HEARTH_CUDA_TOPK=0: full rows). The selection matches the
    // host's bit for bit (tests/backend/cuda_sample_test.cpp) and the Engine's tokens from it equal
    // its full-row tokens in graph replays (EngineGpu TopKSampling..., H100 2026-11-26; the kernels
    // are plain launches: as programmatic dependents their tokens lagged one step in replays).
    // For a partial offload (whose logits come from the CPU part) the full rows come back and
    // Model::forward selects on the host.
    const int32_t top_k = partial_ || !device_topk_ ? 0 : batch.output_top_k;
    if (top_k > 0) HEARTH_TRY(ensure_topk_buffer(n_out));
    auto run_step = [&] {
        run_device(n, n_out, stride);
        if (top_k > 0 && n_out > 0)
            backend::topk_rows_cuda(stream_, dlogits_, n_out, hp.n_vocab, top_k, topk_buf_.as<int32_t>(),
                                    reinterpret_cast<float*>(topk_buf_.as<std::byte>() + topk_vals_offset()),
                                    topk_buf_.as<std::byte>() + topk_ws_offset());
    };
    if (graphable && graph_.is_ready() && graph_n_ == n && graph_n_out_ == n_out && graph_stride_ == stride &&
        graph_top_k_ == top_k && graph_row_tokens_ == row_tokens_ && graph_gen_ == gen_ &&
        graph_scratch_ == stream_.scratch(1)) {
        graph_.launch(stream_);
    } else {
        run_step();
        // Capture this shape for the next steps (recorded, not run).
        if (graphable && (repeated || n <= kFuseMaxTokens)) {
            graph_.reset();
            HEARTH_TRY(stream_.synchronize());
            if (graph_.begin_capture(stream_)) {
                run_step();
                if (graph_.end_capture(stream_)) {
                    graph_n_ = n, graph_n_out_ = n_out, graph_stride_ = stride, graph_gen_ = gen_;
                    graph_top_k_ = top_k, graph_row_tokens_ = row_tokens_;
                    graph_scratch_ = stream_.scratch(1);
                }
            }
        }
    }

    out.embeddings.clear();
    // The logits are copied into page-locked memory (an asynchronous copy at the link's speed;
    // pageable memory goes through the driver's staging at a fraction of it). ForwardOutput's
    // polymorphic vector cannot change its resource by assignment: it is rebuilt in place once,
    // and the caller's vector keeps the pinned block across steps (it only grows).
    if (pinned_logits_ && out.logits.get_allocator().resource() != cuda::pinned_host_resource()) {
        std::destroy_at(&out.logits);
        std::construct_at(&out.logits, cuda::pinned_host_resource());
    }
    if (recipe_.encoder) {  // pooled on the host, as the CPU family pools (blocks::pool)
        out.logits.clear();
        host_x_.resize(n * d);
        act_.download(stream_, host_x_.data(), host_x_.size() * sizeof(float),
                      (size_t)((std::byte*)dx_ - act_.as<std::byte>()));
        HEARTH_TRY(stream_.synchronize());
        blocks::pool(hp.pooling, batch, host_x_.data(), d, out.embeddings);
        return {};
    }
    if (partial_) {
        out.logits.clear();
        host_residual_.resize(n * d);
        act_.download(stream_, host_residual_.data(), host_residual_.size() * sizeof(float),
                      (size_t)((std::byte*)dx_ - act_.as<std::byte>()));
        return stream_.synchronize();
    }
    if (top_k > 0) {  // k ids and logits per row instead of the rows
        out.logits.clear();
        out.top_ids.resize(n_out * top_k);
        out.top_logits.resize(n_out * top_k);
        if (n_out > 0) {
            topk_buf_.download(stream_, out.top_ids.data(), out.top_ids.size() * sizeof(int32_t));
            topk_buf_.download(stream_, out.top_logits.data(), out.top_logits.size() * sizeof(float),
                               topk_vals_offset());
        }
        return stream_.synchronize();
    }
    out.logits.resize(n_out * hp.n_vocab);
    if (n_out > 0)
        act_.download(stream_, out.logits.data(), out.logits.size() * sizeof(float),
                      (size_t)((std::byte*)dlogits_ - act_.as<std::byte>()));
    return stream_.synchronize();
}

static_assert(kMaxOutputTopK <= backend::kTopKMax, "the device selection takes every valid output_top_k");

Status CudaDecoder::ensure_topk_buffer(int64_t n_out) {
    if (n_out <= topk_cap_ && topk_buf_.data() != nullptr) return {};
    const int64_t cap = std::max(n_out, cap_outputs_);
    topk_buf_ = cuda::DeviceBuffer();
    topk_cap_ = cap;
    const size_t bytes = topk_ws_offset() + backend::topk_rows_workspace_bytes(cap, hp_.n_vocab, kMaxOutputTopK);
    HEARTH_ASSIGN(topk_buf_, cuda::DeviceBuffer::allocate(*dev_, bytes));
    ++gen_;  // a graph that selects points into the old buffer
    return {};
}

void CudaDecoder::attend(const backend::PagedKvCuda& kv, const backend::AttnIndexCuda& idx, int64_t n,
                         const backend::AttentionParams& ap, const backend::AttnSplitCuda& split, void* out_q8) {
    const int64_t r = split.workspace != nullptr ? 0 : std::min(row_tokens_, n);
    if (r > 0) {
        backend::AttnSplitCuda rows;
        rows.rows_only = true;
        backend::attention_cuda(stream_, dq_, kv, idx, r, ap, dattn_, rows);
    }
    if (r == n) return;
    backend::AttnIndexCuda rest = idx;
    rest.seq_ids += r, rest.positions += r, rest.kv_end += r;
    if (rest.kv_begin != nullptr) rest.kv_begin += r;
    backend::attention_cuda(stream_, dq_ + r * ap.n_head * ap.head_dim_k, kv, rest, n - r, ap,
                            dattn_ + r * ap.n_head * ap.head_dim_v, split, r == 0 ? out_q8 : nullptr);
}

void CudaDecoder::linear_shared(const float* x, int64_t n,
                                std::initializer_list<std::pair<const DevMatrix*, float*>> outs) {
    bool shared = n < backend::kMatmulGemmMinTokens;
    const int64_t n_in = outs.begin()->first->n_in;
    for (const auto& [w, y] : outs) shared = shared && backend::can_matmul_cuda_q8(w->type) && w->n_in == n_in && n_in % 32 == 0;
    if (!shared) {
        for (const auto& [w, y] : outs) linear(*w, x, y, n);
        return;
    }
    backend::quantize_activations_cuda(stream_, x, xq_.data(), n_in, n);
    for (const auto& [w, y] : outs) linear_q8(*w, y, n);
}

void CudaDecoder::moe_ffn(const DevLayer& L, int64_t n, bool xq_ready) {
    const Hparams& hp = hp_;
    const MoeSpec& spec = recipe_.moe;
    const int n_exp = hp.n_expert, k = hp.n_expert_used;
    const int64_t d = hp.n_embd, ff = hp.n_ff_exp, m = n * k;
    // [m] chosen ids, then the host's tables: [m] rows' tokens, [m] combine rows, [m] combine
    // weights, [m] rows' input scales (the last two as float bits).
    auto* dids = moe_ints_.as<int32_t>();
    if (n == 1 && moe_on_device_) {
        int32_t* comb_rows = dids + 2 * m;
        auto* comb_w = reinterpret_cast<float*>(dids + 3 * m);
        backend::moe_route_softmax_cuda(stream_, dh_, L.router, nullptr, d, 1, n_exp, k, hp.expert_weights_norm,
                                        dm_logits_, dids, dm_w_, comb_rows, comb_w);
        if (!xq_ready) backend::quantize_activations_cuda(stream_, dh_, xq_.data(), d, 1);
        backend::matmul_cuda_q8_experts(stream_, xq_.data(), d, dids, k, /*per_expert_input=*/false,
                                        {{q8_matrix(L.gate_exps), dm_gate_}, {q8_matrix(L.up_exps), dm_up_}});
        backend::swiglu_q8_cuda(stream_, dm_gate_, dm_up_, moe_xq_.data(), ff, k);  // [k][ff]: each expert's input
        backend::matmul_cuda_q8_experts(stream_, moe_xq_.data(), ff, dids, k, /*per_expert_input=*/true,
                                        {{q8_matrix(L.down_exps), dm_out_}});
        backend::moe_combine_cuda(stream_, dm_out_, comb_rows, comb_w, 1, k, d, dproj_);
        return;
    }
    host_moe_sel_.resize(2 * m);
    if (recipe_.plain) {  // softmax routing on the device, the choices brought back
        backend::moe_route_softmax_cuda(stream_, dh_, L.router, nullptr, d, n, n_exp, k, hp.expert_weights_norm,
                                        dm_logits_, dids, dm_w_);
        moe_ints_.download(stream_, host_moe_sel_.data(), m * sizeof(int32_t));
        moe_act_.download(stream_, host_moe_sel_.data() + m, m * sizeof(float),
                          (size_t)((std::byte*)dm_w_ - moe_act_.as<std::byte>()));
        if (!stream_.synchronize().ok()) return;  // sticky: the step's synchronize reports it
    } else {
        // The router logits on the device in f32 (matmul_cuda's float path: below
        // kMatmulGemmMinTokens tokens per call, so no f16 rounding), the selection on the host by
        // the CPU block's code (every gating variant: model/blocks.h MoeSelector).
        const DevMatrix router{QuantType::f32, reinterpret_cast<const std::byte*>(L.router), (size_t)d * sizeof(float),
                               d, n_exp};
        for (int64_t t0 = 0; t0 < n; t0 += backend::kMatmulGemmMinTokens - 1) {
            const int64_t c = std::min<int64_t>(backend::kMatmulGemmMinTokens - 1, n - t0);
            linear(router, dh_ + t0 * d, dm_logits_ + t0 * n_exp, c);
        }
        if (L.router_b) backend::add_bias_cuda(stream_, dm_logits_, L.router_b, n, n_exp);
        host_moe_logits_.resize(n * n_exp);
        moe_act_.download(stream_, host_moe_logits_.data(), host_moe_logits_.size() * sizeof(float),
                          (size_t)((std::byte*)dm_logits_ - moe_act_.as<std::byte>()));
        if (!stream_.synchronize().ok()) return;
        moe_selector_.select(hp, spec, L.probs_b, host_moe_logits_.data(), n, host_moe_sel_.data(),
                             reinterpret_cast<float*>(host_moe_sel_.data() + m));
    }
    const int32_t* ids = host_moe_sel_.data();
    const auto* weights = reinterpret_cast<const float*>(host_moe_sel_.data() + m);

    // Rows grouped by expert (ascending), each expert's slots in slot order.
    moe_count_.assign(n_exp + 1, 0);
    for (int64_t i = 0; i < m; ++i) ++moe_count_[ids[i] + 1];
    for (int e = 0; e < n_exp; ++e) moe_count_[e + 1] += moe_count_[e];  // now: first row of each expert
    host_moe_tab_.resize(4 * m);
    int32_t* row_token = host_moe_tab_.data();
    int32_t* comb_row = row_token + m;
    auto* comb_w = reinterpret_cast<float*>(comb_row + m);
    auto* row_w = reinterpret_cast<float*>(comb_row + 2 * m);
    {
        std::vector<int32_t> next(moe_count_.begin(), moe_count_.end() - 1);
        for (int64_t i = 0; i < m; ++i) {
            const int32_t r = next[ids[i]]++;
            row_token[r] = (int32_t)(i / k);
            row_w[r] = weights[i];
            comb_row[i] = r;
        }
    }
    // Each token's terms in the family's summation order; with weight_input the weight scales
    // the expert's input row instead, and the terms are added with weight 1 (exactly y).
    for (int64_t t = 0; t < n; ++t) {
        int32_t js[backend::kMoeMaxUsed];
        MoeSelector::sum_order(spec, ids + t * k, k, js);
        int32_t rows[backend::kMoeMaxUsed];
        float ws[backend::kMoeMaxUsed];
        for (int j = 0; j < k; ++j)
            rows[j] = comb_row[t * k + js[j]], ws[j] = spec.weight_input ? 1.0f : weights[t * k + js[j]];
        std::copy_n(rows, k, comb_row + t * k);
        std::copy_n(ws, k, comb_w + t * k);
    }
    // Every expert in one tensor-core launch per matrix (and weight type) where the types allow
    // it: the groups table (matmul.h: matmul_cuda_q8_expert_groups) follows the tables above.
    const bool groups = moe_groups_on_ && !L.gate_exps_b && !L.up_exps_b && !L.down_exps_b &&
                        spec.act != Activation::swiglu_oai &&
                        backend::can_matmul_cuda_q8_expert_groups(L.gate_exps.type) &&
                        backend::can_matmul_cuda_q8_expert_groups(L.up_exps.type) &&
                        backend::can_matmul_cuda_q8_expert_groups(L.down_exps.type);
    int n_items = 0, max_rows = 0;
    if (groups) {
        for (int e = 0; e < n_exp; ++e)
            for (int64_t r = moe_count_[e]; r < moe_count_[e + 1]; r += backend::kMatmulQ8ExpertGroupRows) {
                const int rows = (int)std::min<int64_t>(backend::kMatmulQ8ExpertGroupRows, moe_count_[e + 1] - r);
                host_moe_tab_.insert(host_moe_tab_.end(), {e, (int32_t)r, rows, 0});
                ++n_items, max_rows = std::max(max_rows, rows);
            }
    }
    moe_ints_.upload(stream_, host_moe_tab_.data(), 4 * m * sizeof(int32_t), m * sizeof(int32_t));
    const int32_t* d_row_token = dids + m;
    const int32_t* d_comb_row = dids + 2 * m;
    const auto* d_comb_w = reinterpret_cast<const float*>(dids + 3 * m);
    const auto* d_row_w = reinterpret_cast<const float*>(dids + 4 * m);

    backend::gather_rows_cuda(stream_, dh_, d_row_token, m, d, dm_in_);
    if (spec.weight_input) backend::scale_rows_cuda(stream_, dm_in_, d_row_w, m, d);
    if (groups && n_items > 0) {
        const int64_t items_off = moe_items_offset(m);  // int32s, 16-byte aligned
        moe_ints_.upload(stream_, host_moe_tab_.data() + 4 * m, (size_t)4 * n_items * sizeof(int32_t),
                         (size_t)items_off * sizeof(int32_t));
        const int32_t* d_items = dids + items_off;
        backend::quantize_activations_cuda(stream_, dm_in_, moe_xq_.data(), d, m);
        backend::matmul_cuda_q8_expert_groups(stream_, moe_xq_.data(), d, m, d_items, n_items, max_rows,
                                              {{q8_matrix(L.gate_exps), dm_gate_}, {q8_matrix(L.up_exps), dm_up_}});
        backend::swiglu_q8_cuda(stream_, dm_gate_, dm_up_, moe_xq_.data(), ff, m);  // each row's down input
        backend::matmul_cuda_q8_expert_groups(stream_, moe_xq_.data(), ff, m, d_items, n_items, max_rows,
                                              {{q8_matrix(L.down_exps), dm_out_}});
        backend::moe_combine_cuda(stream_, dm_out_, d_comb_row, d_comb_w, n, k, d, dproj_);
        moe_shared_expert(L, n);
        return;
    }
    for (int e = 0; e < n_exp; ++e) {
        const int64_t r0 = moe_count_[e], rows = moe_count_[e + 1] - r0;
        if (rows == 0) continue;
        linear(L.gate_exps.expert(e), dm_in_ + r0 * d, dm_gate_ + r0 * ff, rows);
        linear(L.up_exps.expert(e), dm_in_ + r0 * d, dm_up_ + r0 * ff, rows);
        if (L.gate_exps_b) backend::add_bias_cuda(stream_, dm_gate_ + r0 * ff, L.gate_exps_b + e * ff, rows, ff);
        if (L.up_exps_b) backend::add_bias_cuda(stream_, dm_up_ + r0 * ff, L.up_exps_b + e * ff, rows, ff);
    }
    if (spec.act == Activation::swiglu_oai)
        backend::swiglu_oai_cuda(stream_, dm_gate_, dm_up_, dm_gate_, m * ff, spec.oai_alpha, spec.oai_limit);
    else
        backend::swiglu_cuda(stream_, dm_gate_, dm_up_, dm_gate_, m * ff);
    for (int e = 0; e < n_exp; ++e) {
        const int64_t r0 = moe_count_[e], rows = moe_count_[e + 1] - r0;
        if (rows == 0) continue;
        linear(L.down_exps.expert(e), dm_gate_ + r0 * ff, dm_out_ + r0 * d, rows);
        if (L.down_exps_b) backend::add_bias_cuda(stream_, dm_out_ + r0 * d, L.down_exps_b + e * d, rows, d);
    }
    backend::moe_combine_cuda(stream_, dm_out_, d_comb_row, d_comb_w, n, k, d, dproj_);
    moe_shared_expert(L, n);
}

void CudaDecoder::moe_shared_expert(const DevLayer& L, int64_t n) {
    if (L.shared_gate.data == nullptr) return;
    // The shared expert over every token, added to the routed sum.
    linear_shared(dh_, n, {{&L.shared_gate, dgate_}, {&L.shared_up, dup_}});
    backend::swiglu_cuda(stream_, dgate_, dup_, dgate_, n * L.shared_gate.n_out);
    linear(L.shared_down, dgate_, dshared_, n);
    backend::add_cuda(stream_, dproj_, dshared_, n * hp_.n_embd);
}

void CudaDecoder::mla_attention(const DevLayer& L, int l, int64_t n, const backend::RopeConfig& rope,
                                const int32_t* d_pos, const int32_t* d_slot, const backend::AttnIndexCuda& idx,
                                const backend::AttnSplitCuda& split) {
    const Hparams& hp = hp_;
    const MlaRecipe& ml = recipe_.mla_dims;
    const int64_t nh = hp.n_head, rot = hp.n_rot, lat = ml.n_lora_kv, kw = lat + rot, kq = ml.n_embd_k_mla;
    const int64_t vw = ml.n_embd_v_mla, nope = ml.n_nope;
    if (L.wq_a.data != nullptr) {
        linear(L.wq_a, dh_, dm_qa_, n);
        backend::rms_norm_cuda(stream_, dm_qa_, L.q_a_norm, dm_qa_, ml.n_lora_q, n, hp.norm_eps);
        linear(L.wq_b, dm_qa_, dm_q_, n);  // [n][nh][nope | rot]
    } else {
        linear(L.wq, dh_, dm_q_, n);
    }
    linear(L.wkv_a, dh_, dk_, n);  // [n][lat | rot]
    backend::copy_rows_cuda(stream_, dm_q_ + nope, kq, dm_qpe_, rot, n * nh, rot);
    backend::rope_cuda(stream_, dm_qpe_, d_pos, n, (int)nh, (int)rot, rope);
    backend::copy_rows_cuda(stream_, dk_ + lat, kw, dm_kpe_, rot, n, rot);
    backend::rope_cuda(stream_, dm_kpe_, d_pos, n, 1, (int)rot, rope);
    // V rows = the normed latent; K rows = [normed latent | roped k_pe].
    backend::copy_rows_cuda(stream_, dk_, kw, dv_, lat, n, lat);
    backend::rms_norm_cuda(stream_, dv_, L.kv_a_norm, dv_, lat, n, hp.norm_eps);
    backend::copy_rows_cuda(stream_, dv_, lat, dk_, kw, n, lat);
    backend::copy_rows_cuda(stream_, dm_kpe_, rot, dk_ + lat, kw, n, rot);
    // Each head's query in latent space: [q_nope · k_b | roped q_pe].
    for (int64_t h = 0; h < nh; ++h) {
        backend::copy_rows_cuda(stream_, dm_q_ + h * kq, nh * kq, dm_head_in_, nope, n, nope);
        linear(L.wk_b.expert(h), dm_head_in_, dm_head_out_, n);
        backend::copy_rows_cuda(stream_, dm_head_out_, lat, dq_ + h * kw, nh * kw, n, lat);
    }
    backend::copy_rows_cuda(stream_, dm_qpe_, rot, dq_ + lat, kw, n * nh, rot);
    backend::kv_write_cuda(stream_, dk_, kw, dv_, lat, d_slot, n, (int)kw, (int)lat, k_cache_[l].data(), kw,
                           v_cache_[l].data(), lat);
    const backend::PagedKvCuda kvd{k_cache_[l].data(), v_cache_[l].data(), kv_block_size_, kw, lat};
    backend::attention_cuda(stream_, dq_, kvd, idx, n, attention_params(), dattn_, split);  // [n][nh][lat]
    // Each head's output decompressed from the latent.
    for (int64_t h = 0; h < nh; ++h) {
        backend::copy_rows_cuda(stream_, dattn_ + h * lat, nh * lat, dm_head_in_, lat, n, lat);
        linear(L.wv_b.expert(h), dm_head_in_, dm_head_out_, n);
        backend::copy_rows_cuda(stream_, dm_head_out_, vw, dm_attv_ + h * vw, nh * vw, n, vw);
    }
    linear(L.wo, dm_attv_, dproj_, n);
}

backend::AttentionParams CudaDecoder::attention_params() const {
    const Hparams& hp = hp_;
    backend::AttentionParams ap;
    ap.n_head = hp.n_head, ap.n_head_kv = hp.n_head_kv, ap.head_dim_k = hp.head_dim_k, ap.head_dim_v = hp.head_dim_v;
    ap.scale = recipe_.attn_scale > 0.0f ? recipe_.attn_scale : 1.0f / std::sqrt((float)hp.head_dim_k);
    return ap;
}

void CudaDecoder::run_device(int64_t n, int64_t n_out, size_t stride) {
    const Hparams& hp = hp_;
    const int64_t d = hp.n_embd;
    const int bs = kv_block_size_;
    const int32_t* di = ints_.as<int32_t>();
    const int32_t *d_tok = di, *d_pos = di + n, *d_seq = di + 2 * n, *d_end = di + 3 * n, *d_slot = di + 4 * n;
    const int32_t *d_begin = di + 5 * n, *d_out = di + kIntsPerToken * n, *d_tab = d_out + n_out;
    const auto* d_qscale = reinterpret_cast<const float*>(di + 6 * n);

    if (first_layer_ == 0) {  // else dx_ holds the previous part's residual stream (run_forward)
        if (embd_on_device_) backend::get_rows_cuda(stream_, embd_.type, embd_.data, embd_.row_bytes, d_tok, n, d, dx_);
        if (recipe_.embd_scale > 0.0f) backend::scale_cuda(stream_, dx_, recipe_.embd_scale, n * d);
    }
    if (recipe_.encoder) {  // + position and token-type embeddings, LayerNorm, the layers
        backend::get_rows_cuda(stream_, pos_embd_.type, pos_embd_.data, pos_embd_.row_bytes, d_pos, n, d, dh_);
        backend::add_cuda(stream_, dx_, dh_, n * d);
        if (type_row_) backend::add_bias_cuda(stream_, dx_, type_row_, n, d);
        backend::layer_norm_cuda(stream_, dx_, embd_norm_w_, embd_norm_b_, dx_, d, n, hp_.norm_eps);
        run_encoder(n, d_slot, backend::AttnIndexCuda{d_tab, (int)stride, d_seq, d_pos, d_end},
                    attn_split(n));
        return;
    }

    const int64_t k_dim = (int64_t)hp.n_head_kv * hp.head_dim_k, v_dim = (int64_t)hp.n_head_kv * hp.head_dim_v;
    backend::AttentionParams ap = attention_params();
    backend::AttnIndexCuda idx{d_tab, (int)stride, d_seq, d_pos, d_end};
    // Decode-sized: fused norms/quantization (the block output waits in dproj_ and is added by
    // the next fused norm: `pending`) and the split attention.
    const bool fuse = fusable_ && n <= kFuseMaxTokens;
    const backend::AttnSplitCuda split = attn_split(n);
    bool pending = false;
    // Single-stream steps (dp4a kernels): grouped launches, rope in the Q/K/V epilogue.
    const bool grouped = fuse && group_on_ && q8_kernel(n) == backend::MatmulQ8Kernel::dp4a;
    // Multi-token steps (tensor-core kernel): grouped launches of that kernel (mma_group_qkv_).
    const bool mma_grouped = fuse && group_on_ && q8_kernel(n) == backend::MatmulQ8Kernel::mma;
    // The attention kernel writes the int8 input of the output projection itself.
    const bool attn_q8 = fuse && group_on_ && hp.head_dim_v % 32 == 0;

    for (int l = 0; l < n_gpu_layers_; ++l) {
        const DevLayer& L = layers_[l];
        const GpuLayerRecipe& lr = *L.recipe;
        backend::RopeConfig rope = lr.rope_cfg;  // the layer's RoPE with the model's factors
        rope.freq_factors = rope_.freq_factors;
        if (recipe_.mla) {  // DeepSeek multi-head latent attention (no fused kernels: fuse is off)
            backend::rms_norm_cuda(stream_, dx_, L.attn_norm, dh_, d, n, hp.norm_eps);
            mla_attention(L, l, n, rope, d_pos, d_slot, idx, split);
        } else {
            bool roped = false;  // rope and the KV write done by the Q/K/V launch
            if (fuse) {
                backend::add_rms_norm_q8_cuda(stream_, dx_, pending ? dproj_ : nullptr, L.attn_norm, nullptr, xq_.data(), d,
                                              n, hp.norm_eps);
                if (grouped && rope_in_matmul_) {
                    backend::QkvRopeCuda r;
                    r.n_head = hp.n_head, r.n_head_kv = hp.n_head_kv, r.head_dim_k = hp.head_dim_k,
                    r.head_dim_v = hp.head_dim_v;
                    r.rope = rope_, r.positions = d_pos, r.slots = d_slot;
                    r.k_cache = k_cache_[l].data(), r.k_row_stride = k_dim;
                    r.v_cache = v_cache_[l].data(), r.v_row_stride = v_dim;
                    backend::matmul_qkv_rope_cuda(stream_, xq_.data(), d, n, q8_matrix(L.wq), q8_matrix(L.wk),
                                                  q8_matrix(L.wv), dq_, r);
                    roped = true;
                } else if (grouped) {
                    backend::matmul_cuda_q8_grouped(stream_, xq_.data(), d, n,
                                                    {{q8_matrix(L.wq), dq_}, {q8_matrix(L.wk), dk_}, {q8_matrix(L.wv), dv_}});
                } else if (mma_grouped && mma_group_qkv_) {
                    backend::matmul_cuda_q8_grouped(stream_, xq_.data(), d, n,
                                                    {{q8_matrix(L.wq), dq_}, {q8_matrix(L.wk), dk_}, {q8_matrix(L.wv), dv_}},
                                                    backend::MatmulQ8Kernel::mma, mma_chains_);
                } else {
                    linear_q8(L.wq, dq_, n), linear_q8(L.wk, dk_, n), linear_q8(L.wv, dv_, n);
                }
            } else {
                backend::rms_norm_cuda(stream_, dx_, L.attn_norm, dh_, d, n, hp.norm_eps);
                linear_shared(dh_, n, {{&L.wq, dq_}, {&L.wk, dk_}, {&L.wv, dv_}});
            }
            if (!roped) {
                if (L.bq) backend::add_bias_cuda(stream_, dq_, L.bq, n, L.wq.n_out);
                if (L.bk) backend::add_bias_cuda(stream_, dk_, L.bk, n, L.wk.n_out);
                if (L.bv) backend::add_bias_cuda(stream_, dv_, L.bv, n, L.wv.n_out);
                // The q/k norms go into the rope + KV write kernel (same bits) unless the separate
                // launches are asked for (HEARTH_CUDA_GROUP=0) or the layer has no rope there.
                const bool norm_in_rope = L.q_norm && group_on_ && lr.rope && !recipe_.qk_l2_after_rope;
                if (L.q_norm && !norm_in_rope) {
                    backend::rms_norm_cuda(stream_, dq_, L.q_norm, dq_, hp.head_dim_k, n * hp.n_head, hp.norm_eps);
                    backend::rms_norm_cuda(stream_, dk_, L.k_norm, dk_, hp.head_dim_k, n * hp.n_head_kv, hp.norm_eps);
                }
                if (lr.rope && !recipe_.qk_l2_after_rope) {
                    backend::rope_kv_write_cuda(stream_, dq_, dk_, dv_, d_pos, d_slot, n, hp.n_head, hp.n_head_kv,
                                                hp.head_dim_k, hp.head_dim_v, rope, k_cache_[l].data(), k_dim,
                                                v_cache_[l].data(), v_dim,
                                                norm_in_rope ? backend::QkNorm{L.q_norm, L.k_norm, hp.norm_eps}
                                                             : backend::QkNorm{});
                } else {
                    if (lr.rope) {  // then the unweighted q/k norm (llama4)
                        backend::rope_cuda(stream_, dq_, d_pos, n, hp.n_head, hp.head_dim_k, rope);
                        backend::rope_cuda(stream_, dk_, d_pos, n, hp.n_head_kv, hp.head_dim_k, rope);
                        backend::rms_norm_cuda(stream_, dq_, nullptr, dq_, hp.head_dim_k, n * hp.n_head, hp.norm_eps);
                        backend::rms_norm_cuda(stream_, dk_, nullptr, dk_, hp.head_dim_k, n * hp.n_head_kv, hp.norm_eps);
                    } else if (recipe_.temp_floor > 0) {  // NoPE: the attention temperature
                        backend::scale_rows_cuda(stream_, dq_, d_qscale, n, (int64_t)hp.n_head * hp.head_dim_k);
                    }
                    backend::kv_write_cuda(stream_, dk_, k_dim, dv_, v_dim, d_slot, n, (int)k_dim, (int)v_dim,
                                           k_cache_[l].data(), k_dim, v_cache_[l].data(), v_dim);
                }
            }
            const backend::PagedKvCuda kvd{k_cache_[l].data(), v_cache_[l].data(), bs, k_dim, v_dim};
            ap.sliding_window = lr.window;
            ap.sinks = L.sinks;
            idx.kv_begin = lr.chunked ? d_begin : nullptr;
            attend(kvd, idx, n, ap, split, attn_q8 ? xq_.data() : nullptr);
            if (fuse) {  // the int8 path whatever n (matmul_cuda would take the GEMM from 16 tokens)
                if (!attn_q8) backend::quantize_activations_cuda(stream_, dattn_, xq_.data(), L.wo.n_in, n);
                linear_q8(L.wo, dproj_, n);
            } else {
                linear(L.wo, dattn_, dproj_, n);
            }
        }
        if (L.bo) backend::add_bias_cuda(stream_, dproj_, L.bo, n, d);
        if (L.post_attn_norm) backend::rms_norm_cuda(stream_, dproj_, L.post_attn_norm, dproj_, d, n, hp.norm_eps);
        if (L.router != nullptr) {
            if (fuse) {  // the residual add and the norm in one kernel (its int8 output unused)
                backend::add_rms_norm_q8_cuda(stream_, dx_, dproj_, L.ffn_norm, dh_, xq_.data(), d, n, hp.norm_eps);
            } else {
                backend::add_cuda(stream_, dx_, dproj_, n * d);
                backend::rms_norm_cuda(stream_, dx_, L.ffn_norm, dh_, d, n, hp.norm_eps);
            }
            moe_ffn(L, n, fuse);
            if (fuse) {
                pending = true;
            } else {
                if (L.post_ffn_norm) backend::rms_norm_cuda(stream_, dproj_, L.post_ffn_norm, dproj_, d, n, hp.norm_eps);
                backend::add_cuda(stream_, dx_, dproj_, n * d);
            }
        } else if (fuse) {
            backend::add_rms_norm_q8_cuda(stream_, dx_, dproj_, L.ffn_norm, nullptr, xq_.data(), d, n, hp.norm_eps);
            if (grouped) {
                backend::matmul_cuda_q8_grouped(stream_, xq_.data(), d, n,
                                                {{q8_matrix(L.gate), dgate_}, {q8_matrix(L.up), dup_}});
            } else if (mma_grouped && mma_group_ffn_) {
                backend::matmul_cuda_q8_grouped(stream_, xq_.data(), d, n,
                                                {{q8_matrix(L.gate), dgate_}, {q8_matrix(L.up), dup_}},
                                                backend::MatmulQ8Kernel::mma, mma_chains_);
            } else {
                linear_q8(L.gate, dgate_, n), linear_q8(L.up, dup_, n);
            }
            backend::swiglu_q8_cuda(stream_, dgate_, dup_, xq_.data(), hp.n_ff, n);
            linear_q8(L.down, dproj_, n);
            pending = true;
        } else {
            backend::add_cuda(stream_, dx_, dproj_, n * d);
            backend::rms_norm_cuda(stream_, dx_, L.ffn_norm, dh_, d, n, hp.norm_eps);
            linear_shared(dh_, n, {{&L.gate, dgate_}, {&L.up, dup_}});
            if (recipe_.act == FfnAct::geglu) backend::geglu_cuda(stream_, dgate_, dup_, dgate_, n * hp.n_ff);
            else backend::swiglu_cuda(stream_, dgate_, dup_, dgate_, n * hp.n_ff);
            linear(L.down, dgate_, dproj_, n);
            if (L.post_ffn_norm) backend::rms_norm_cuda(stream_, dproj_, L.post_ffn_norm, dproj_, d, n, hp.norm_eps);
            backend::add_cuda(stream_, dx_, dproj_, n * d);
        }
    }

    if (partial_) {  // the residual stream goes to the CPU part
        if (pending) backend::add_cuda(stream_, dx_, dproj_, n * d);
        return;
    }
    // Every token wants logits (single-stream decode): the output rows are the batch rows in
    // order, so the last residual add, the gather, the norm and the quantization are one kernel
    // (bit-identical to those four).
    if (pending && n_out == n && group_on_ && backend::can_matmul_cuda_q8(output_dev_.type)) {
        backend::add_rms_norm_q8_cuda(stream_, dx_, dproj_, output_norm_dev_, nullptr, xq_.data(), d, n, hp.norm_eps);
        linear_q8(output_dev_, dlogits_, n);
        return;
    }
    if (pending) backend::add_cuda(stream_, dx_, dproj_, n * d);

    if (n_out > 0) {
        backend::gather_rows_cuda(stream_, dx_, d_out, n_out, d, dh_);
        backend::rms_norm_cuda(stream_, dh_, output_norm_dev_, dh_, d, n_out, hp.norm_eps);
        if (fuse && backend::can_matmul_cuda_q8(output_dev_.type)) {
            backend::quantize_activations_cuda(stream_, dh_, xq_.data(), d, n_out);
            linear_q8(output_dev_, dlogits_, n_out);
        } else {
            linear(output_dev_, dh_, dlogits_, n_out);
        }
        if (recipe_.final_softcap > 0.0f)
            backend::softcap_cuda(stream_, dlogits_, recipe_.final_softcap, n_out * hp.n_vocab);
    }
}


// A model split by layers: consecutive parts on CUDA devices (CudaDecoder, each part's K/V in
// its own device pool), then optionally the remaining layers, the final norm and the output on
// the CPU (partial offload: Decoder::forward_from, their K/V in the host KvCache's rows). Each
// step hands the residual stream ([n][n_embd] f32) from part to part through pinned host
// memory, once per boundary: bit for bit what one device computes, since every part runs the
// same kernels on the same inputs. The KvCache is f16 (the GPU layers' rows live on the
// devices: kv_on_device(), so the Engine keeps f16 and no disk tier).
class ChainDecoder final : public Model {
public:
    ChainDecoder(std::shared_ptr<const gguf::GgufFile> file, std::vector<std::unique_ptr<CudaDecoder>> parts,
                 std::unique_ptr<Model> cpu)
        : Model(std::move(file), parts.front()->hparams(), 1), parts_(std::move(parts)), cpu_(std::move(cpu)) {
        n_gpu_ = parts_.back()->first_layer() + parts_.back()->n_layers();
    }

    KvLayout kv_layout() const override { return cpu_ ? cpu_->kv_layout() : parts_.front()->kv_layout(); }
    // "cuda:0 (NVIDIA H100 80GB HBM3), 20 of 32 layers (the rest on the cpu)", or per device:
    // "cuda:0 (...) layers 0-15, cuda:1 (...) layers 16-31".
    std::string device_name() const override {
        if (cpu_)
            return strformat("%s, %d of %d layers (the rest on the cpu)", parts_.front()->device_name().c_str(), n_gpu_,
                             hp_.n_layer);
        std::string s;
        for (const auto& p : parts_)
            s += strformat("%s%s layers %d-%d", s.empty() ? "" : ", ", p->device_name().c_str(), p->first_layer(),
                           p->first_layer() + p->n_layers() - 1);
        return s;
    }
    bool kv_on_device() const override { return true; }
    int kv_host_first_layer() const override { return n_gpu_; }  // the CPU layers' rows stay on the host
    int64_t device_weight_bytes() const override {
        int64_t b = 0;
        for (const auto& p : parts_) b += p->device_weight_bytes();
        return b;
    }
    // The pool every part can hold its layers' share of.
    int64_t device_kv_budget_bytes() const override {
        int64_t b = INT64_MAX;
        for (const auto& p : parts_) b = std::min(b, p->device_kv_budget_bytes());
        return b;
    }
    Status run_forward(const Batch& batch, KvCache& kv, ForwardOutput& out) override {
        // Each part's own pass (run_forward, not forward: that would select candidates from
        // whatever rows out still holds; this model's forward selects once, at the end).
        for (size_t i = 0; i < parts_.size(); ++i) {
            if (i > 0) parts_[i]->set_input(parts_[i - 1]->residual());
            HEARTH_TRY(parts_[i]->run_forward(batch, kv, out));
        }
        if (!cpu_) return {};
        // The family loaders of plain recipes build a Decoder (load_model_cuda offloads partially only those).
        return static_cast<Decoder&>(*cpu_).forward_from(n_gpu_, parts_.back()->residual(), batch, kv, out);
    }

private:
    std::vector<std::unique_ptr<CudaDecoder>> parts_;
    std::unique_ptr<Model> cpu_;  // null: the last part has the output
    int n_gpu_ = 0;               // layers on the devices: [0, n_gpu_)
};

}  // namespace

bool cuda_runs_architecture(const std::string& arch) { return find_family(arch) != nullptr; }

bool cuda_offloads_partially(const std::string& arch) {
    const RecipeFamily* f = find_family(arch);
    return f != nullptr && f->partial;
}

int cuda_device_count() { return cuda::device_count(); }

Result<GpuMemory> query_gpu_memory(int device) {
    HEARTH_ASSIGN(std::unique_ptr<cuda::Device> dev, cuda::Device::open(device));
    HEARTH_ASSIGN(const size_t free_bytes, dev->free_memory());
    return GpuMemory{dev->info().name, (int64_t)free_bytes, (int64_t)dev->info().total_mem_bytes};
}

namespace {

struct SplitPart {
    int device = 0;
    int first = 0, count = 0;  // layers [first, first + count)
};

// The devices a model goes on, by layers, when it is split (empty: one device, load_model_cuda's
// single-device plan). LoadOptions::tensor_split as given; automatic (num_gpu < 0, no split
// given, several visible devices) only when the whole model does not fit on device 0 but fits
// on all of them, in proportion to what each has left beside its working memory.
Result<std::vector<SplitPart>> plan_split(const gguf::GgufFile& file, const Hparams& hp, bool encoder,
                                          const LoadOptions& opts) {
    const int64_t q_dim = (int64_t)hp.n_head * hp.head_dim_k;
    std::vector<int> devices = opts.split_devices;
    std::vector<double> shares(opts.tensor_split.begin(), opts.tensor_split.end());
    const bool given = !shares.empty();
    if (given) {
        if (opts.num_gpu > 0 && opts.num_gpu < hp.n_layer)
            return error(StatusCode::invalid_argument,
                         "tensor_split places every layer on the GPUs: num_gpu must be automatic or at least the layer count");
        if (devices.empty())
            for (int i = 0; i < (int)shares.size(); ++i) devices.push_back(i);
        if (devices.size() != shares.size())
            return error(StatusCode::invalid_argument,
                         strformat("tensor_split has %zu entries for %zu devices", shares.size(), devices.size()));
        for (double x : shares)
            if (!(x >= 0.0) || !std::isfinite(x))
                return error(StatusCode::invalid_argument, "tensor_split entries must be finite and not negative");
        if (encoder && shares.size() > 1)
            return error(StatusCode::unsupported, "an encoder model runs on one GPU (no tensor_split)");
    } else {
        const int n_dev = cuda::device_count();
        if (opts.num_gpu >= 0 || n_dev < 2 || encoder) return std::vector<SplitPart>{};
        const KvLayout kv = kv_layout_of(hp);
        std::vector<int64_t> free(n_dev, 0);
        for (int i = 0; i < n_dev; ++i) {
            HEARTH_ASSIGN(std::unique_ptr<cuda::Device> dev, cuda::Device::open(i));
            HEARTH_ASSIGN(const size_t f, dev->free_memory());
            free[i] = (int64_t)f;
        }
        const GpuLayerPlan one = plan_gpu_placement(file, kv, hp.n_embd, hp.n_ff, q_dim, hp.n_vocab, free[0]);
        if (one.n_layers == hp.n_layer && one.output) return std::vector<SplitPart>{};
        const std::vector<int> auto_counts = plan_gpu_split(file, kv, hp.n_embd, hp.n_ff, q_dim, hp.n_vocab, free);
        if (auto_counts.empty()) return std::vector<SplitPart>{};  // the single-device plan (device 0 and the CPU)
        for (int i = 0; i < n_dev; ++i) devices.push_back(i), shares.push_back(auto_counts[i]);
    }
    const std::vector<int> counts = split_layers(hp.n_layer, shares);
    std::vector<SplitPart> parts;
    int first = 0;
    for (size_t i = 0; i < counts.size(); ++i) {
        if (counts[i] > 0) parts.push_back(SplitPart{devices[i], first, counts[i]});
        first += counts[i];
    }
    if (parts.empty()) return error(StatusCode::invalid_argument, "tensor_split gives no device a share");
    return parts;
}

}  // namespace

Result<std::unique_ptr<Model>> load_model_cuda(std::shared_ptr<const gguf::GgufFile> file, const LoadOptions& opts,
                                               int device) {
    const std::string arch = file->architecture();
    // The executor uploads plain weights; LoRA deltas (LoadOptions::adapters) run on the CPU.
    if (!opts.adapters.empty())
        return error(StatusCode::unsupported, "LoRA adapters have no CUDA executor yet (they run on the CPU)");
    const RecipeFamily* family = find_family(arch);
    if (family == nullptr) {
        std::string list;
        for (const RecipeFamily& f : kFamilies) list += (list.empty() ? "" : ", ") + std::string(f.arch);
        return error(StatusCode::unsupported,
                     "architecture " + arch + " has no CUDA executor yet (CUDA runs " + list + ")");
    }
    Result<GpuRecipe> recipe = family->recipe(*file, opts);
    if (!recipe.ok()) return recipe.status().with_context(arch);
    const Hparams hp = recipe.value().hp;  // a copy: the recipe moves into the model below
    if (hp.n_expert > backend::kMoeMaxExperts || hp.n_expert_used > backend::kMoeMaxUsed)
        return error(StatusCode::unsupported,
                     strformat("%s: %d experts, %d used per token: the CUDA executor takes at most %d and %d",
                               arch.c_str(), hp.n_expert, hp.n_expert_used, backend::kMoeMaxExperts,
                               backend::kMoeMaxUsed));
    if (hp.head_dim_k > backend::kAttnMaxHeadDimK || hp.head_dim_v > backend::kAttnMaxHeadDimV ||
        hp.head_dim_k % 2 != 0 || hp.head_dim_v % 2 != 0)
        return error(StatusCode::unsupported,
                     strformat("%s: attention heads of %d/%d values; the CUDA attention takes even widths up to %d/%d",
                               arch.c_str(), hp.head_dim_k, hp.head_dim_v, backend::kAttnMaxHeadDimK,
                               backend::kAttnMaxHeadDimV));
    if (hp.pooling != Pooling::none && !recipe.value().encoder)
        return error(StatusCode::unsupported, arch + ": pooled embeddings of a decoder have no CUDA executor yet");
    // Several devices (LoadOptions::tensor_split, or automatic when the model needs them).
    HEARTH_ASSIGN(const std::vector<SplitPart> split, plan_split(*file, hp, recipe.value().encoder, opts));
    if (!split.empty()) {
        std::vector<std::unique_ptr<CudaDecoder>> parts;
        std::string note;
        for (size_t i = 0; i < split.size(); ++i) {
            const SplitPart& sp = split[i];
            HEARTH_ASSIGN(std::unique_ptr<cuda::Device> dev, cuda::Device::open(sp.device));
            auto part = std::make_unique<CudaDecoder>(file, recipe.value(), std::move(dev), sp.first, sp.count,
                                                      i + 1 == split.size());
            const Status st = part->load_weights();
            if (!st.ok()) return st.with_context(strformat("%s on CUDA device %d", arch.c_str(), sp.device));
            parts.push_back(std::move(part));
        }
        if (parts.size() == 1) {
            parts.front()->reserve_prefill(cuda_prefill_tokens(hp.n_embd, hp.n_ff, (int64_t)hp.n_head * hp.head_dim_k));
            return std::unique_ptr<Model>(std::move(parts.front()));
        }
        auto chain = std::make_unique<ChainDecoder>(file, std::move(parts), nullptr);
        chain->set_placement_note(strformat("split by layers over %zu GPUs: %s", split.size(), chain->device_name().c_str()));
        return std::unique_ptr<Model>(std::move(chain));
    }
    HEARTH_ASSIGN(std::unique_ptr<cuda::Device> dev, cuda::Device::open(device));
    // How many layers: num_gpu > 0 asks for that many (n_layer or more: the whole model, with
    // the larger prompt steps if their activations can be allocated), automatic (< 0) takes what
    // fits in the memory free now.
    GpuLayerPlan plan{hp.n_layer, true, cuda_prefill_tokens(hp.n_embd, hp.n_ff, (int64_t)hp.n_head * hp.head_dim_k)};
    std::string note;
    if (opts.num_gpu > 0 && opts.num_gpu < hp.n_layer) {
        plan = GpuLayerPlan{opts.num_gpu, false};
        note = strformat("num_gpu %d: layers %d-%d and the output run on the CPU", opts.num_gpu, opts.num_gpu,
                         hp.n_layer - 1);
    } else if (opts.num_gpu < 0) {
        HEARTH_ASSIGN(const size_t free_bytes, dev->free_memory());
        plan = plan_gpu_placement(*file, kv_layout_of(hp), hp.n_embd, hp.n_ff, (int64_t)hp.n_head * hp.head_dim_k,
                                  hp.n_vocab, (int64_t)free_bytes);
        if (plan.n_layers == 0)
            return error(StatusCode::resource_exhausted,
                         strformat("%.1f GiB free on %s: not one layer fits beside the working memory",
                                   (double)free_bytes / (1 << 30), dev->info().name.c_str()));
        if (plan.n_layers < hp.n_layer || !plan.output)
            note = strformat("%.1f GiB free on the GPU: %d of %d layers there, the rest%s on the CPU",
                             (double)free_bytes / (1 << 30), plan.n_layers, hp.n_layer,
                             plan.n_layers < hp.n_layer ? " and the output" : " (the output)");
    }
    // The CPU part of a partial offload continues a Decoder (forward_from): llama-style only.
    if ((plan.n_layers < hp.n_layer || !plan.output) && !recipe.value().plain)
        return error(StatusCode::unsupported, strformat("%s: %d of %d layers would fit on the GPU; a partial offload "
                                                        "runs llama-style families only",
                                                        arch.c_str(), plan.n_layers, hp.n_layer));
    const int n_gpu = plan.n_layers;
    auto m = std::make_unique<CudaDecoder>(file, std::move(recipe).value(), std::move(dev), 0, n_gpu, plan.output);
    const Status st = m->load_weights();
    if (!st.ok()) return st.with_context(arch + " on CUDA");
    m->reserve_prefill(plan.step_tokens);
    if (n_gpu == hp.n_layer && plan.output) return std::unique_ptr<Model>(std::move(m));
    LoadOptions cpu_opts = opts;
    cpu_opts.num_gpu = 0;
    auto cpu = load_model(file, cpu_opts);  // the family's own loader: a Decoder (plain recipes only)
    if (!cpu.ok()) return cpu.status().with_context(arch + " (the CPU part of a partial offload)");
    std::vector<std::unique_ptr<CudaDecoder>> parts;
    parts.push_back(std::move(m));
    auto hybrid = std::make_unique<ChainDecoder>(file, std::move(parts), std::move(cpu).value());
    hybrid->set_placement_note(std::move(note));
    return std::unique_ptr<Model>(std::move(hybrid));
}

}  // namespace hearth::model

#else  // !HEARTH_HAVE_CUDA

namespace hearth::model {

Result<std::unique_ptr<Model>> load_model_cuda(std::shared_ptr<const gguf::GgufFile>, const LoadOptions&, int) {
    return error(StatusCode::not_found, "hearth was built without CUDA");
}

bool cuda_runs_architecture(const std::string&) { return false; }
bool cuda_offloads_partially(const std::string&) { return false; }

Result<GpuMemory> query_gpu_memory(int) { return error(StatusCode::not_found, "hearth was built without CUDA"); }
int cuda_device_count() { return 0; }

}  // namespace hearth::model

#endif
