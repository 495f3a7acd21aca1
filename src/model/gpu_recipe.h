// What the CUDA executor (model/cuda_decoder.*) needs to know of a pre-norm decoder family
// beyond the tensor names every such family shares (token_embd, blk.N.attn_norm, attn_q/k/v,
// attn_output, ffn_norm, ffn_gate/up/down or the expert stacks, output_norm, output). Each
// family fills it in its own file from the same hparams reading its CPU model uses, so the
// metadata is parsed by one piece of code; the executor composes the ops in the order the CPU
// family runs them. No CUDA here.
#pragma once

#include <string>
#include <vector>

#include "model/blocks.h"

namespace hearth::model {

enum class FfnAct { swiglu, geglu };  // silu(gate) * up, gelu(gate) * up

struct GpuLayerRecipe {
    int window = 0;         // sliding window (key j visible from query i iff i - j < window); 0: none
    bool chunked = false;   // chunked attention: query i sees keys from floor(i / n_chunk) * n_chunk
    bool rope = true;       // false: a NoPE layer
    ops::RopeConfig rope_cfg;  // this layer's RoPE (its freq_factors are ignored: see GpuRecipe::long_rope)
    bool moe = false;       // mixture-of-experts FFN (else dense, n_ff wide)
};

// DeepSeek multi-head latent attention (model/deepseek2.cpp): widths of the low-rank query, the
// cached latent, the per-head q/k (nope + rope) and v.
struct MlaRecipe {
    int n_lora_q = 0, n_lora_kv = 0, n_embd_k_mla = 0, n_embd_v_mla = 0, n_nope = 0;
};

struct GpuRecipe {
    Hparams hp;
    AttnLoad attn;                   // biases, q/k norms (weighted, before RoPE), fused attn_qkv
    bool sinks = false;              // attn_sinks [n_head] (gpt-oss)
    bool qk_l2_after_rope = false;   // unweighted q/k RMS norm after RoPE, RoPE layers only (llama4)
    float attn_scale = 0.0f;         // 0: 1/sqrt(head_dim_k)
    float embd_scale = 0.0f;         // token embeddings multiplied by it; 0: not scaled
    float final_softcap = 0.0f;      // logits = tanh(logits / c) * c; 0: off
    bool output_required = false;    // no tying of output to token_embd
    std::string ffn_norm = "ffn_norm";  // the FFN's pre-norm tensor (gpt-oss: post_attention_norm)
    bool post_norms = false;         // post_attention_norm / post_ffw_norm on the block outputs (gemma3)
    FfnAct act = FfnAct::swiglu;     // dense FFN activation
    bool fused_up = false;           // ffn_up rows are [gate | up], no ffn_gate (phi3)
    // RoPE frequency divisors of every RoPE layer: rope_freqs.weight when the file has it; with
    // long_rope (phi3) rope_factors_short.weight, or rope_factors_long.weight when the KV pool
    // holds more than rope.n_ctx_orig positions (as the CPU family picks them).
    bool long_rope = false;
    float temp_scale = 0.0f;         // NoPE layers scale q by 1 + temp_scale * ln(floor((pos + 1) / temp_floor) + 1)
    int temp_floor = 0;              // 0: off
    int n_chunk = 0;                 // chunked attention's chunk (GpuLayerRecipe::chunked)
    MoeSpec moe;                     // routing, activation, summation order of MoE layers
    bool expert_biases = false;      // ffn_{gate,up,down}_exps.bias (gpt-oss)
    bool shared_expert = false;      // ffn_{gate,up,down}_shexp, shared_ff wide, added to the routed sum
    int64_t shared_ff = 0;
    bool probs_bias = false;         // exp_probs_b.bias: expert selection bias (deepseek2), optional
    // A BERT encoder (model/bert.cpp): absolute position and token-type embeddings, LayerNorms
    // with biases after each block, bidirectional attention, a GELU FFN with biases, pooled
    // embeddings instead of logits.
    bool encoder = false;
    bool mla = false;                // attention is MLA (hp: one kv head of the latent, as the CPU family's)
    MlaRecipe mla_dims;
    std::vector<GpuLayerRecipe> layers;  // [n_layer]
    // The llama-style families (llama, qwen2, qwen3, qwen3moe): fused decode kernels, device
    // routing of single-token MoE steps, and a partial offload whose CPU part is a Decoder of
    // this spec.
    bool plain = false;
    DecoderSpec decoder;
};

// A llama-style family's recipe (plain: Decoder with `spec`), from the hparams load_decoder
// reads (model/blocks.cpp).
Result<GpuRecipe> decoder_gpu_recipe(const gguf::GgufFile& file, const LoadOptions& opts, const char* arch,
                                     const DecoderSpec& spec, float eps_default);

// Every family's recipe (each in its family's file). Errors as the family's CPU loader reports
// them for the same metadata.
Result<GpuRecipe> llama_gpu_recipe(const gguf::GgufFile& file, const LoadOptions& opts);
Result<GpuRecipe> qwen2_gpu_recipe(const gguf::GgufFile& file, const LoadOptions& opts);
Result<GpuRecipe> qwen3_gpu_recipe(const gguf::GgufFile& file, const LoadOptions& opts);
Result<GpuRecipe> qwen3moe_gpu_recipe(const gguf::GgufFile& file, const LoadOptions& opts);
Result<GpuRecipe> gemma3_gpu_recipe(const gguf::GgufFile& file, const LoadOptions& opts);
Result<GpuRecipe> phi3_gpu_recipe(const gguf::GgufFile& file, const LoadOptions& opts);
Result<GpuRecipe> gpt_oss_gpu_recipe(const gguf::GgufFile& file, const LoadOptions& opts);
Result<GpuRecipe> llama4_gpu_recipe(const gguf::GgufFile& file, const LoadOptions& opts);
Result<GpuRecipe> deepseek2_gpu_recipe(const gguf::GgufFile& file, const LoadOptions& opts);
Result<GpuRecipe> bert_gpu_recipe(const gguf::GgufFile& file, const LoadOptions& opts);

}  // namespace hearth::model
