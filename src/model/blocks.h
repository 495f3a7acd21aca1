// Reusable pieces of decoder-only transformers: the weights of one layer and a forward pass
// (pre-norm attention with GQA + RoPE + optional biases and q/k norms, then a SwiGLU FFN that
// is either dense or a mixture of experts). A family file fills in a DecoderSpec and the
// weight names; the math lives here once.
#pragma once

#include <memory>
#include <vector>

#include "model/model.h"

namespace hearth::model {

// What differs between the llama-style families.
struct DecoderSpec {
    bool qk_norm = false;        // RMS-norm q and k per head (qwen3)
    bool qkv_bias = false;       // q/k/v projections have biases (qwen2)
    bool tied_output = false;    // no output.weight: reuse token_embd
    float attn_scale = 0.0f;     // 0: 1/sqrt(head_dim_k)
    // MoE: router probabilities are the softmax over all experts, the top n_expert_used are
    // taken and (if hp.expert_weights_norm) renormalized to sum 1.
};

struct DecoderLayer {
    std::vector<float> attn_norm;      // [n_embd]
    ops::Weight wq, wk, wv, wo;        // [n_embd -> n_head*hd], [n_embd -> n_kv*hd] x2, [n_head*hd_v -> n_embd]
    std::vector<float> bq, bk, bv;     // biases or empty
    std::vector<float> q_norm, k_norm; // [head_dim] or empty
    std::vector<float> ffn_norm;       // [n_embd]
    ops::Weight ffn_gate, ffn_up, ffn_down;              // dense
    ops::Weight router;                                  // [n_embd -> n_expert]
    ops::Weight gate_exps, up_exps, down_exps;           // [n_embd -> n_ff_exp, n_expert] ...
};

class Decoder : public Model {
public:
    Decoder(std::shared_ptr<const gguf::GgufFile> file, Hparams hp, DecoderSpec spec, int n_threads)
        : Model(std::move(file), std::move(hp), n_threads), spec_(spec) {}

    // Loads the standard llama-family tensor names (token_embd, blk.N.attn_q, ...).
    Status load_weights();
    Status forward(const Batch& batch, KvCache& kv, ForwardOutput& out) override;

    std::vector<float> rope_freqs;  // [n_rot/2] frequency divisors (llama 3.1), or empty

private:
    void attention(int layer, const Batch& batch, KvCache& kv, int64_t n);
    void ffn_dense(const DecoderLayer& L, int64_t n);
    void ffn_moe(const DecoderLayer& L, int64_t n);

    DecoderSpec spec_;
    ops::Weight tok_embd_, output_;
    std::vector<float> output_norm_;
    std::vector<DecoderLayer> layers_;

    // Scratch, grown to the largest batch seen and reused (the decode step allocates nothing).
    std::vector<float> x_;      // [n][n_embd] residual stream
    std::vector<float> h_;      // [n][n_embd] normed input of a block
    std::vector<float> q_, k_, v_;  // [n][n_head*hd_k], [n][n_kv*hd_k], [n][n_kv*hd_v]
    std::vector<float> attn_;   // [n][n_head*hd_v]
    std::vector<float> gate_, up_;  // [n][n_ff]
    std::vector<float> proj_;   // [n][n_embd] block output
    std::vector<float> router_; // [n][n_expert]
    std::vector<float> moe_acc_;   // [n_embd] one token's expert sum
    std::vector<int32_t> kv_end_;  // [n] visible positions per token
    std::vector<const int32_t*> tables_;  // [n] block table per token
    std::vector<float> out_rows_;  // [n_outputs][n_embd]
};

}  // namespace hearth::model
