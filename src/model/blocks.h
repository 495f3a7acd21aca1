// Reusable pieces of decoder-only transformers, written once over ops/: the embedding/output
// weights and scratch every decoder holds (DecoderBase), attention projections with optional
// biases, per-head q/k norms, writing a batch's K/V rows into the paged cache, the final
// norm + output matmul over the output rows, SwiGLU FFNs, and a mixture-of-experts block
// (routing variants, grouped expert runner, shared experts). Family files combine them and
// keep only what is theirs. Decoder is the plain llama-style family (llama, qwen2/3, qwen3moe).
#pragma once

#include <memory>
#include <utility>
#include <vector>

#include "model/families.h"
#include "model/model.h"

namespace hearth::model {

template <class T>
void grow(std::vector<T>& v, int64_t size) {
    if ((int64_t)v.size() < size) v.resize(size);
}

// The attention op's per-token views of a batch.
struct AttnIndex {
    std::vector<int32_t> kv_end;         // [n] visible positions per token (causal: position + 1)
    std::vector<const int32_t*> tables;  // [n] block table per token
    void set_causal(const Batch& batch);
};

// attn_q/k/v/output with optional biases and per-head q/k RMS-norm weights.
struct AttnWeights {
    ops::Weight wq, wk, wv, wo;         // [n_embd -> q_dim], [n_embd -> kv_dim_k], [n_embd -> kv_dim_v], [o_dim -> n_embd]
    std::vector<float> bq, bk, bv, bo;  // biases or empty
    std::vector<float> q_norm, k_norm;  // [head_dim_k] or empty
};

struct AttnLoad {
    bool biases_required = false;  // q/k/v biases must exist (qwen2)
    bool out_bias = false;         // look for attn_output.bias
    bool out_bias_required = false;
    bool qk_norm = false;          // attn_q_norm / attn_k_norm are required
    bool refuse_fused_qkv = false; // attn_qkv present: unsupported error (the family has no fused path)
};

// SwiGLU FFN: down(silu(gate x) * up x).
struct FfnWeights {
    ops::Weight gate, up, down;  // [n_embd -> n_ff] x2, [n_ff -> n_embd]
    bool present() const { return gate.present(); }
};

// Expert routing, as llama.cpp's build_moe_ffn does it.
enum class Gating {
    softmax,           // probs = softmax over all experts (divided in double); select the top k (qwen3moe, mixtral)
    softmax_selected,  // select the top k logits, weights = softmax over those k (gpt-oss)
    sigmoid,           // probs = sigmoid; select on probs + exp_probs_b, optionally in groups (deepseek2, llama4)
};
enum class Activation { swiglu, swiglu_oai };
// The order a token's expert outputs are added in (it matters from k = 3 on). Each family keeps
// the order its golden logits were matched with: expert id for Decoder and gpt-oss (whose
// k = 4 file is measurably closer to llama.cpp that way), selection order for deepseek2.
enum class SumOrder { selection, expert_id };

struct MoeSpec {
    Gating gating = Gating::softmax;
    bool norm_w = false;       // renormalize the selected weights to sum 1 (sum clamped to 2^-14)
    float scale_w = 0.0f;      // 0 or 1: weights not scaled
    int n_groups = 0, n_group_used = 0;  // expert groups: keep the n_group_used with the best top-2 sums
    bool weight_input = false; // scale the expert's input by its weight, not its output (llama4)
    Activation act = Activation::swiglu;
    SumOrder sum_order = SumOrder::selection;
    float oai_alpha = 1.702f, oai_limit = 7.0f;  // SwiGLU-OAI constants (llama.cpp's)
};

struct MoeWeights {
    ops::Weight router;                        // [n_embd -> n_expert]
    std::vector<float> router_b;               // [n_expert] router logit bias, or empty
    std::vector<float> probs_b;                // [n_expert] exp_probs_b selection bias, or empty
    ops::Weight gate_exps, up_exps, down_exps; // [n_embd -> n_ff_exp, n_expert], ..., [n_ff_exp -> n_embd, n_expert]
    std::vector<float> gate_b, up_b, down_b;   // [n_expert][n_ff_exp] x2, [n_expert][n_embd], or empty
    FfnWeights shared;                         // shared experts (added to the routed sum), or absent
};

namespace blocks {

// y[t] = W x[t] (+ b when b is not empty); x: [n][n_in], y: [n][n_out].
void linear(ops::Ops& ops, const ops::Weight& w, const std::vector<float>& b, const float* x, float* y, int64_t n);

// Loads blk.{layer}.attn_q/k/v/output as the spec says; shapes from hp.
Status load_attention(WeightLoader& w, const Hparams& hp, int layer, const AttnLoad& spec, AttnWeights& a);
// q [n][n_head*hd_k], k [n][n_head_kv*hd_k], v [n][n_head_kv*hd_v] from h [n][n_embd], biases added.
void project_qkv(ops::Ops& ops, const AttnWeights& a, const float* h, float* q, float* k, float* v, int64_t n);
// RMS-norms each head of q and k in place; null weights: unweighted ("L2" norm).
void qk_norm(ops::Ops& ops, const Hparams& hp, const float* q_norm, const float* k_norm, float* q, float* k, int64_t n);
// K row t (k_stride floats apart) and V row t into the cache slots of the tokens' positions,
// converted to the cache's type; the cache's layer widths give how many floats of each row are read.
// Tokens in parallel over ops' pool; rows converted by Ops::quantize_row.
void write_kv(ops::Ops& ops, KvCache& kv, int layer, const Batch& batch, const float* k, int64_t k_stride,
              const float* v, int64_t v_stride);

// Loads ffn_gate/up/down (or the given names) with width n_ff.
Status load_ffn(WeightLoader& w, int layer, int64_t n_embd, int64_t n_ff, FfnWeights& f, const char* gate = "ffn_gate",
                const char* up = "ffn_up", const char* down = "ffn_down");
// y = down(silu(gate x) * up x) for n tokens; g, u: scratch grown to [n][n_ff]. y may alias x.
void swiglu_ffn(ops::Ops& ops, const FfnWeights& f, const float* x, float* y, int64_t n, std::vector<float>& g,
                std::vector<float>& u);

// Indices of the k largest of s[0, n) into idx[0, k), ties to the lower index; idx holds n.
void top_k(const float* s, int n, int k, int32_t* idx);

// Pools the rows of x [n_tokens][d] (batch order) per sequence into out [n_seqs][d] (resized):
// mean sums a sequence's rows in batch order and divides by their count, cls copies its
// position-0 row, last the row of its highest position. A sequence's result depends only on
// its own rows. Sequences without a (matching) row get zeros. pooling must not be none.
void pool(Pooling pooling, const Batch& batch, const float* x, int64_t d, std::vector<float>& out);

}  // namespace blocks

// The pooling a decoder family runs with: {arch}.pooling_type (llama.cpp's numbering: 0 none,
// 1 mean, 2 cls, 3 last; absent: none), replaced by opts.pooling when set. Rank (4) and other
// values are unsupported errors naming the key; so is {arch}.attention.causal = false (a
// bidirectional decoder), which the decoders here cannot run.
Status read_decoder_pooling(const ArchKeys& keys, const LoadOptions& opts, Hparams& hp);

// Loads ffn_gate_inp, the expert stacks and (per spec/presence) their biases. The old layout
// of one tensor per expert (blk.N.ffn_gate.E) is an unsupported error saying so.
Status load_moe(WeightLoader& w, const Hparams& hp, int layer, bool expert_biases, MoeWeights& m);

// Expert selection from router logits, as llama.cpp's build_moe_ffn does it (spec.gating,
// exp_probs_b, groups, norm_w, scale_w); shared by MoeBlock and the CUDA executor, which routes
// on the host from logits computed on the device.
class MoeSelector {
public:
    // logits [n][n_expert] (router bias already added; left holding the probabilities) ->
    // chosen [n][k] expert ids in selection order and weight [n][k], k = hp.n_expert_used.
    void select(const Hparams& hp, const MoeSpec& spec, const std::vector<float>& probs_b, float* logits, int64_t n,
                int32_t* chosen, float* weight);
    // slots[0, k) = the order a token's k terms are summed in (indices into its chosen row).
    static void sum_order(const MoeSpec& spec, const int32_t* chosen, int k, int32_t* slots);

private:
    std::vector<float> sel_, group_score_;  // [n_expert] selection scores, [n_groups]
    std::vector<int32_t> order_;            // [n_expert] sort scratch
};

// The mixture-of-experts block with its scratch (grown to the largest batch, then reused).
class MoeBlock {
public:
    // out [n][n_embd] = sum over each token's selected experts, in spec.sum_order, of
    // weight * expert(x) (or expert(weight * x)), plus the shared experts when present.
    // x [n][n_embd] is not modified; out must not alias x.
    void forward(ops::Ops& ops, const Hparams& hp, const MoeSpec& spec, const MoeWeights& w, const float* x, int64_t n,
                 float* out);

private:
    void route(ops::Ops& ops, const Hparams& hp, const MoeSpec& spec, const MoeWeights& w, const float* x, int64_t n);

    std::vector<float> logits_;          // [n][n_expert] router logits, then probabilities
    MoeSelector selector_;
    std::vector<int32_t> order_;         // [k] summation order scratch
    std::vector<int32_t> chosen_;        // [n][k] selected experts, in selection order
    std::vector<float> weight_;          // [n][k] their weights
    std::vector<int64_t> rows_;          // slots (t * k + j) routed to the current expert
    std::vector<float> xin_, g_, u_, y_; // [m][n_embd], [m][n_ff] x2, [m][n_embd]
    std::vector<float> ys_;              // [n][k][n_embd] expert outputs per slot
};

// A decoder's embedding/output weights, residual scratch and attention index; the family
// adds its layers. begin() embeds the batch into x_; finish() writes the logits, or the
// pooled embeddings when hp_.pooling is set.
class DecoderBase : public Model {
public:
    DecoderBase(std::shared_ptr<const gguf::GgufFile> file, Hparams hp, int n_threads)
        : Model(std::move(file), std::move(hp), n_threads) {}

protected:
    // token_embd, output_norm and output (tied to token_embd when absent, unless required).
    Status load_embeddings(WeightLoader& w, bool output_required = false);
    // Validates, grows x_/h_/proj_ to [n][n_embd], embeds the tokens into x_ (or copies the
    // residual stream `x` [n][n_embd] there when given), sets idx_ causal.
    Status begin(const Batch& batch, KvCache& kv, const float* x = nullptr);
    // logits [n_outputs][n_vocab] = output · rms_norm(x_ rows with output = 1) (uses h_).
    // Pooling models: embeddings [n_seqs][n_embd] = blocks::pool(rms_norm(every x_ row)), no
    // logits (llama.cpp's t_embd: the final norm's output, before the output projection).
    void finish(const Batch& batch, ForwardOutput& out);

    ops::Weight tok_embd_, output_;
    std::vector<float> output_norm_;  // [n_embd]
    std::vector<float> x_;            // [n][n_embd] residual stream
    std::vector<float> h_;            // [n][n_embd] normed input of a block
    std::vector<float> proj_;         // [n][n_embd] block output
    AttnIndex idx_;
};

// What differs between the llama-style families.
struct DecoderSpec {
    bool qk_norm = false;      // RMS-norm q and k per head (qwen3)
    bool qkv_bias = false;     // q/k/v projections have biases (qwen2)
    bool rope_neox = false;    // rotate halves (qwen) instead of adjacent pairs (llama)
    float attn_scale = 0.0f;   // 0: 1/sqrt(head_dim_k)
    // MoE: softmax over all experts, the top n_expert_used taken and (if hp.expert_weights_norm)
    // renormalized to sum 1.
};

struct DecoderLayer {
    std::vector<float> attn_norm, ffn_norm;  // [n_embd]
    AttnWeights attn;
    FfnWeights ffn;                          // dense
    MoeWeights moe;                          // n_expert > 0
};

class Decoder : public DecoderBase {
public:
    Decoder(std::shared_ptr<const gguf::GgufFile> file, Hparams hp, DecoderSpec spec, int n_threads)
        : DecoderBase(std::move(file), std::move(hp), n_threads), spec_(spec) {}

    // Loads the standard llama-family tensor names (token_embd, blk.N.attn_q, ...).
    Status load_weights();
    Status run_forward(const Batch& batch, KvCache& kv, ForwardOutput& out) override;
    // The rest of a forward pass whose layers [0, first_layer) ran elsewhere (partial GPU
    // offload: model/cuda_decoder.cpp): x [n][n_embd] is the residual stream after them; layers
    // [first_layer, n_layer) write their K/V into kv, then the final norm and the logits.
    Status forward_from(int first_layer, const float* x, const Batch& batch, KvCache& kv, ForwardOutput& out);

private:
    Status run_layers(int first_layer, const Batch& batch, KvCache& kv, ForwardOutput& out);

    DecoderSpec spec_;
    std::vector<float> rope_freqs_;  // [n_rot/2] frequency divisors (llama 3.1), or empty
    std::vector<DecoderLayer> layers_;
    MoeBlock moe_;

    // Scratch, grown to the largest batch seen and reused.
    std::vector<float> q_, k_, v_;  // [n][n_head*hd_k], [n][n_kv*hd_k], [n][n_kv*hd_v]
    std::vector<float> attn_;       // [n][n_head*hd_v]
    std::vector<float> gate_, up_;  // [n][n_ff]
};

// A family's hyper-parameters into hp: hp.arch = arch, read_params(ArchKeys, Hparams&) ->
// Result<Params> (returned), the pooling and the vocabulary size. load_family and the families'
// GPU recipes (model/gpu_recipe.h) read them this one way.
template <class ReadParams>
auto read_family(const gguf::GgufFile& file, const LoadOptions& opts, const char* arch, Hparams& hp,
                 ReadParams read_params) -> decltype(read_params(std::declval<const ArchKeys&>(), hp)) {
    hp.arch = arch;
    const ArchKeys keys(file.meta, hp.arch);
    HEARTH_ASSIGN(auto p, read_params(keys, hp));
    HEARTH_TRY(read_decoder_pooling(keys, opts, hp));
    HEARTH_TRY(read_vocab_size(file, hp));
    return p;
}

// Builds a family model of class Family(file, hp, params, n_threads): params and hparams from
// read_family, then load_weights().
template <class Family, class ReadParams>
Result<std::unique_ptr<Model>> load_family(std::shared_ptr<const gguf::GgufFile> file, const LoadOptions& opts,
                                           const char* arch, ReadParams read_params) {
    Hparams hp;
    HEARTH_ASSIGN(auto p, read_family(*file, opts, arch, hp, read_params));
    auto m = std::make_unique<Family>(file, std::move(hp), std::move(p), opts.n_threads);
    HEARTH_TRY(m->open_adapters(opts));
    HEARTH_TRY(m->load_weights());
    return std::unique_ptr<Model>(std::move(m));
}

// Loads a Decoder family: common hparams, rms eps (default eps_default), vocab, weights.
Result<std::unique_ptr<Model>> load_decoder(std::shared_ptr<const gguf::GgufFile> file, const LoadOptions& opts,
                                            const char* arch, const DecoderSpec& spec, float eps_default);

}  // namespace hearth::model
