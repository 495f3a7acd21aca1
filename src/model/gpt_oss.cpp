// gpt-oss (OpenAI's open-weight MoE, GGUF arch "gpt-oss"). Pre-norm decoder: GQA attention
// with q/k/v/o biases, per-head attention sinks, NEOX RoPE with YaRN scaling, sliding-window
// attention on every other layer; then a mixture of experts whose router takes the top-k raw
// logits and softmaxes over those k only, with biased experts and the clamped SwiGLU-OAI.
// What llama.cpp hard-codes (and this file mirrors): SWA period 2 when
// attention.sliding_window_pattern is absent; YaRN beta_fast 32 / beta_slow 1 and SwiGLU-OAI
// alpha 1.702 / limit 7 are the defaults of ops::RopeConfig and MoeSpec.
#include <cmath>

#include "model/blocks.h"
#include "model/families.h"
#include "model/gpu_recipe.h"

namespace hearth::model {
namespace {

struct GptOssParams {
    int n_swa = 0;            // window incl. the query: key j visible from query i iff i - j < n_swa
    std::vector<bool> is_swa; // [n_layer]
    ops::RopeConfig rope_swa; // SWA layers: rope.freq_base_swa and the trained scale
};

struct GptOssLayer {
    std::vector<float> attn_norm, post_norm;  // [n_embd]
    AttnWeights attn;                         // q/k/v/o biases
    std::vector<float> sinks;                 // [n_head]
    MoeWeights moe;                           // router bias and expert biases
};

Result<GptOssParams> read_params(const ArchKeys& k, Hparams& hp) {
    HEARTH_TRY(read_common_hparams(k, hp));
    HEARTH_TRY(k.get("attention.layer_norm_rms_epsilon", hp.norm_eps));
    HEARTH_TRY(k.get("expert_feed_forward_length", hp.n_ff_exp));
    if (hp.n_expert < 1) return error(StatusCode::corrupt, k.key("expert_count") + ": gpt-oss needs experts");
    if (hp.n_ff_exp < 1) return error(StatusCode::corrupt, k.key("expert_feed_forward_length") + ": must be positive");
    // llama.cpp sizes every head by n_rot; other layouts would need their own code.
    if (hp.n_rot != hp.head_dim_k || hp.head_dim_v != hp.head_dim_k)
        return error(StatusCode::unsupported, strformat("gpt-oss with rope dims %d, key length %d, value length %d",
                                                        hp.n_rot, hp.head_dim_k, hp.head_dim_v));
    hp.rope.neox = true;
    GptOssParams p;
    HEARTH_TRY(k.get("attention.sliding_window", p.n_swa));
    if (p.n_swa < 1) return error(StatusCode::corrupt, k.key("attention.sliding_window") + ": must be positive");
    if (k.has("attention.sliding_window_pattern") && !k.meta().get_int(k.key("attention.sliding_window_pattern")).ok())
        return error(StatusCode::unsupported, k.key("attention.sliding_window_pattern") + ": only a period is supported");
    int period = 2;  // llama.cpp's default: even layers SWA, odd layers full
    HEARTH_TRY(k.get_or("attention.sliding_window_pattern", period, 2));
    p.is_swa.resize(hp.n_layer);
    for (int l = 0; l < hp.n_layer; ++l) p.is_swa[l] = period == 0 || l % period < period - 1;
    p.rope_swa = hp.rope;
    HEARTH_TRY(k.get_or("rope.freq_base_swa", p.rope_swa.freq_base, hp.rope.freq_base));
    p.rope_swa.freq_scale = hp.rope_freq_scale_train;  // SWA layers keep the trained scale even for "none"
    return p;
}

class GptOss : public DecoderBase {
public:
    GptOss(std::shared_ptr<const gguf::GgufFile> file, Hparams hp, GptOssParams p, int n_threads)
        : DecoderBase(std::move(file), std::move(hp), n_threads), p_(std::move(p)) {}

    Status load_weights() {
        const Hparams& hp = hp_;
        WeightLoader w(*file_, lora_.get());
        HEARTH_TRY(load_embeddings(w, /*output_required=*/true));
        const AttnLoad al{.out_bias = true, .out_bias_required = true, .refuse_fused_qkv = true};
        layers_.resize(hp.n_layer);
        for (int l = 0; l < hp.n_layer; ++l) {
            GptOssLayer& L = layers_[l];
            auto name = [l](const char* n) { return layer_tensor(l, n); };
            HEARTH_TRY(w.vec(name("attn_norm"), hp.n_embd, L.attn_norm));
            HEARTH_TRY(w.vec(name("post_attention_norm"), hp.n_embd, L.post_norm));
            HEARTH_TRY(blocks::load_attention(w, hp, l, al, L.attn));
            HEARTH_TRY(w.vec(name("attn_sinks"), hp.n_head, L.sinks));
            HEARTH_TRY(load_moe(w, hp, l, /*expert_biases=*/true, L.moe));
        }
        return {};
    }

    Status run_forward(const Batch& batch, KvCache& kv, ForwardOutput& out) override {
        HEARTH_TRY(begin(batch, kv));
        const Hparams& hp = hp_;
        const int64_t n = batch.n_tokens(), d = hp.n_embd;
        const int64_t q_dim = (int64_t)hp.n_head * hp.head_dim_k, kv_dim = (int64_t)hp.n_head_kv * hp.head_dim_k;
        grow(q_, n * q_dim), grow(attn_, n * q_dim), grow(k_, n * kv_dim), grow(v_, n * kv_dim);
        ops::AttentionParams ap;
        ap.n_head = hp.n_head, ap.n_head_kv = hp.n_head_kv, ap.head_dim_k = ap.head_dim_v = hp.head_dim_k;
        ap.scale = 1.0f / std::sqrt((float)hp.head_dim_k);
        const MoeSpec ms{.gating = Gating::softmax_selected, .act = Activation::swiglu_oai, .sum_order = SumOrder::expert_id};

        for (int l = 0; l < hp.n_layer; ++l) {
            const GptOssLayer& L = layers_[l];
            ops_.rms_norm(x_.data(), L.attn_norm.data(), h_.data(), d, n, hp.norm_eps);
            blocks::project_qkv(ops_, L.attn, h_.data(), q_.data(), k_.data(), v_.data(), n);
            const ops::RopeConfig& rc = p_.is_swa[l] ? p_.rope_swa : hp.rope;
            ops_.rope(q_.data(), batch.positions.data(), n, hp.n_head, hp.head_dim_k, rc);
            ops_.rope(k_.data(), batch.positions.data(), n, hp.n_head_kv, hp.head_dim_k, rc);
            blocks::write_kv(ops_, kv, l, batch, k_.data(), kv_dim, v_.data(), kv_dim);
            ap.sliding_window = p_.is_swa[l] ? p_.n_swa : 0;
            ap.sinks = L.sinks.data();
            ops_.attention(q_.data(), kv.view(l), idx_.tables.data(), batch.positions.data(), idx_.kv_end.data(), n,
                           ap, attn_.data());
            blocks::linear(ops_, L.attn.wo, L.attn.bo, attn_.data(), proj_.data(), n);
            ops_.add(x_.data(), proj_.data(), n * d);
            ops_.rms_norm(x_.data(), L.post_norm.data(), h_.data(), d, n, hp.norm_eps);
            moe_.forward(ops_, hp, ms, L.moe, h_.data(), n, proj_.data());
            ops_.add(x_.data(), proj_.data(), n * d);
        }
        finish(batch, out);
        return {};
    }

private:
    GptOssParams p_;
    std::vector<GptOssLayer> layers_;
    MoeBlock moe_;

    // Scratch, grown to the largest batch seen and reused.
    std::vector<float> q_, attn_;  // [n][n_head * head_dim]
    std::vector<float> k_, v_;     // [n][n_head_kv * head_dim]
};

}  // namespace

Result<GpuRecipe> gpt_oss_gpu_recipe(const gguf::GgufFile& file, const LoadOptions& opts) {
    GpuRecipe r;
    HEARTH_ASSIGN(const GptOssParams p, read_family(file, opts, "gpt-oss", r.hp, read_params));
    const Hparams& hp = r.hp;
    r.attn = AttnLoad{.out_bias = true, .out_bias_required = true, .refuse_fused_qkv = true};
    r.sinks = true;
    r.output_required = true;
    r.ffn_norm = "post_attention_norm";
    r.moe = MoeSpec{.gating = Gating::softmax_selected, .act = Activation::swiglu_oai, .sum_order = SumOrder::expert_id};
    r.expert_biases = true;
    r.layers.resize(hp.n_layer);
    for (int l = 0; l < hp.n_layer; ++l) {
        r.layers[l].window = p.is_swa[l] ? p.n_swa : 0;
        r.layers[l].rope_cfg = p.is_swa[l] ? p.rope_swa : hp.rope;
        r.layers[l].moe = true;
    }
    return r;
}

Result<std::unique_ptr<Model>> load_gpt_oss(std::shared_ptr<const gguf::GgufFile> file, const LoadOptions& opts) {
    return load_family<GptOss>(std::move(file), opts, "gpt-oss", read_params);
}

}  // namespace hearth::model
