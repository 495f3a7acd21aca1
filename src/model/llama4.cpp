// llama4 (Llama 4 Scout/Maverick text model, GGUF arch "llama4"). Pre-norm decoder with GQA,
// RoPE on adjacent pairs with rope_freqs divisors; every n_no_rope_layer_step-th layer has no
// RoPE (NoPE), the others RMS-normalise q and k without weights after RoPE. Dense SwiGLU
// layers interleave with MoE layers: top-k on the raw router logits, the selected expert's
// INPUT scaled by sigmoid(logit), plus an always-on shared expert.
// What llama.cpp hard-codes (and this file mirrors): without attention.sliding_window, RoPE
// layers use chunked attention (chunk 8192, pattern 3 chunked : 1 full unless
// attention.sliding_window_pattern says otherwise), NoPE every 4th layer, and NoPE layers
// scale q by 1 + 0.1 ln(floor((pos + 1) / 8192) + 1); sliding_window 0 turns chunking and
// temperature tuning off and leaves only the last layer NoPE. q/k norm is off for 128 experts.
#include <cmath>

#include "model/blocks.h"
#include "model/families.h"
#include "model/gpu_recipe.h"

namespace hearth::model {
namespace {

struct Llama4Params {
    int n_chunk = 0;              // chunked attention: query i sees keys j >= floor(i/n_chunk)*n_chunk; 0 = off
    std::vector<bool> is_chunked; // [n_layer]
    int no_rope_step = 4;         // layer l has no RoPE iff (l + 1) % no_rope_step == 0
    bool kq_norm = true;
    int moe_step = 0;             // layer l is MoE iff moe_step > 0 && (l + 1) % moe_step == 0
    float temp_scale = 0.0f;      // NoPE q scale 1 + temp_scale * ln(floor((pos + 1) / temp_floor) + 1)
    int temp_floor = 0;
    bool is_moe(int l) const { return moe_step > 0 && (l + 1) % moe_step == 0; }
};

struct Llama4Layer {
    std::vector<float> attn_norm, ffn_norm;  // [n_embd]
    AttnWeights attn;                        // optional biases
    FfnWeights ffn;                          // dense layers: n_ff wide
    MoeWeights moe;                          // MoE layers, with the shared expert (n_ff_exp wide)
};

Result<Llama4Params> read_params(const ArchKeys& k, Hparams& hp) {
    HEARTH_TRY(read_common_hparams(k, hp));
    HEARTH_TRY(k.get("attention.layer_norm_rms_epsilon", hp.norm_eps));
    HEARTH_TRY(k.get("expert_feed_forward_length", hp.n_ff_exp));
    hp.rope.neox = false;
    if (hp.n_expert < 1) return error(StatusCode::corrupt, k.key("expert_count") + ": llama4 cannot have zero experts");
    if (hp.n_rot != hp.head_dim_k || hp.head_dim_v != hp.head_dim_k)
        return error(StatusCode::unsupported, strformat("llama4 with rope dims %d, key length %d, value length %d",
                                                        hp.n_rot, hp.head_dim_k, hp.head_dim_v));
    Llama4Params p;
    HEARTH_TRY(k.get("interleave_moe_layer_step", p.moe_step));
    bool any_moe = false, any_dense = false;
    for (int l = 0; l < hp.n_layer; ++l) (p.is_moe(l) ? any_moe : any_dense) = true;
    if (any_moe && hp.n_ff_exp < 1) return error(StatusCode::corrupt, k.key("expert_feed_forward_length") + ": must be positive");
    if (any_dense && hp.n_ff < 1) return error(StatusCode::corrupt, k.key("feed_forward_length") + ": must be positive");
    p.is_chunked.assign(hp.n_layer, false);
    int n_swa = -1;
    HEARTH_TRY(k.get_or("attention.sliding_window", n_swa, -1));
    if (n_swa == 0) {
        p.no_rope_step = hp.n_layer;
    } else {
        p.n_chunk = 8192, p.temp_floor = 8192, p.temp_scale = 0.1f;
        if (k.has("attention.sliding_window_pattern") && !k.meta().get_int(k.key("attention.sliding_window_pattern")).ok())
            return error(StatusCode::unsupported, k.key("attention.sliding_window_pattern") + ": only a period is supported");
        int period = 4;
        HEARTH_TRY(k.get_or("attention.sliding_window_pattern", period, 4));
        for (int l = 0; l < hp.n_layer; ++l) p.is_chunked[l] = period == 0 || l % period < period - 1;
    }
    p.kq_norm = hp.n_expert != 128;
    return p;
}

class Llama4 : public DecoderBase {
public:
    Llama4(std::shared_ptr<const gguf::GgufFile> file, Hparams hp, Llama4Params p, int n_threads)
        : DecoderBase(std::move(file), std::move(hp), n_threads), p_(std::move(p)) {}

    Status load_weights() {
        const Hparams& hp = hp_;
        WeightLoader w(*file_, lora_.get());
        const int64_t d = hp.n_embd;
        HEARTH_TRY(load_embeddings(w));
        HEARTH_TRY(w.vec("rope_freqs.weight", hp.n_rot / 2, rope_freqs_, /*required=*/false));
        hp_.rope.freq_factors = rope_freqs_.empty() ? nullptr : rope_freqs_.data();
        const AttnLoad al{.out_bias = true, .refuse_fused_qkv = true};
        layers_.resize(hp.n_layer);
        for (int l = 0; l < hp.n_layer; ++l) {
            Llama4Layer& L = layers_[l];
            HEARTH_TRY(w.vec(layer_tensor(l, "attn_norm"), d, L.attn_norm));
            HEARTH_TRY(blocks::load_attention(w, hp, l, al, L.attn));
            HEARTH_TRY(w.vec(layer_tensor(l, "ffn_norm"), d, L.ffn_norm));
            if (p_.is_moe(l)) {
                HEARTH_TRY(load_moe(w, hp, l, /*expert_biases=*/false, L.moe));
                HEARTH_TRY(blocks::load_ffn(w, l, d, hp.n_ff_exp, L.moe.shared, "ffn_gate_shexp", "ffn_up_shexp",
                                            "ffn_down_shexp"));
            } else {
                HEARTH_TRY(blocks::load_ffn(w, l, d, hp.n_ff, L.ffn));
            }
        }
        return {};
    }

    Status run_forward(const Batch& batch, KvCache& kv, ForwardOutput& out) override {
        HEARTH_TRY(begin(batch, kv));
        const Hparams& hp = hp_;
        const int64_t n = batch.n_tokens(), d = hp.n_embd, hd = hp.head_dim_k;
        const int64_t q_dim = hp.n_head * hd, kv_dim = hp.n_head_kv * hd;
        grow(q_, n * q_dim), grow(attn_, n * q_dim), grow(k_, n * kv_dim), grow(v_, n * kv_dim);
        bool past_first_chunk = false;
        for (int64_t t = 0; t < n; ++t) past_first_chunk |= p_.n_chunk > 0 && batch.positions[t] >= p_.n_chunk;
        ops::AttentionParams ap;
        ap.n_head = hp.n_head, ap.n_head_kv = hp.n_head_kv, ap.head_dim_k = ap.head_dim_v = (int)hd;
        ap.scale = 1.0f / std::sqrt((float)hd);
        const MoeSpec ms{.gating = Gating::sigmoid, .weight_input = true};

        for (int l = 0; l < hp.n_layer; ++l) {
            const Llama4Layer& L = layers_[l];
            ops_.rms_norm(x_.data(), L.attn_norm.data(), h_.data(), d, n, hp.norm_eps);
            blocks::project_qkv(ops_, L.attn, h_.data(), q_.data(), k_.data(), v_.data(), n);
            if ((l + 1) % p_.no_rope_step != 0) {
                ops_.rope(q_.data(), batch.positions.data(), n, hp.n_head, (int)hd, hp.rope);
                ops_.rope(k_.data(), batch.positions.data(), n, hp.n_head_kv, (int)hd, hp.rope);
                if (p_.kq_norm) blocks::qk_norm(ops_, hp, nullptr, nullptr, q_.data(), k_.data(), n);  // "L2 norm"
            } else if (p_.temp_floor > 0) {  // attention temperature tuning
                for (int64_t t = 0; t < n; ++t) {
                    const float pos = (float)batch.positions[t];
                    const float s = (float)(std::log(std::floor((pos + 1.0f) / p_.temp_floor) + 1.0) * p_.temp_scale + 1.0);
                    for (int64_t i = 0; i < q_dim; ++i) q_[t * q_dim + i] *= s;
                }
            }
            blocks::write_kv(ops_, kv, l, batch, k_.data(), kv_dim, v_.data(), kv_dim);
            if (p_.is_chunked[l] && past_first_chunk) {
                // The op only knows windows ending at the query: one call per token whose
                // window reaches back exactly to its chunk start.
                for (int64_t t = 0; t < n; ++t) {
                    ap.sliding_window = batch.positions[t] % p_.n_chunk + 1;
                    ops_.attention(q_.data() + t * q_dim, kv.view(l), idx_.tables.data() + t,
                                   batch.positions.data() + t, idx_.kv_end.data() + t, 1, ap, attn_.data() + t * q_dim);
                }
            } else {
                ap.sliding_window = 0;
                ops_.attention(q_.data(), kv.view(l), idx_.tables.data(), batch.positions.data(), idx_.kv_end.data(),
                               n, ap, attn_.data());
            }
            blocks::linear(ops_, L.attn.wo, L.attn.bo, attn_.data(), proj_.data(), n);
            ops_.add(x_.data(), proj_.data(), n * d);
            ops_.rms_norm(x_.data(), L.ffn_norm.data(), h_.data(), d, n, hp.norm_eps);
            if (p_.is_moe(l)) moe_.forward(ops_, hp, ms, L.moe, h_.data(), n, proj_.data());
            else blocks::swiglu_ffn(ops_, L.ffn, h_.data(), proj_.data(), n, g_, u_);
            ops_.add(x_.data(), proj_.data(), n * d);
        }
        finish(batch, out);
        return {};
    }

private:
    Llama4Params p_;
    std::vector<float> rope_freqs_;  // [n_rot/2] frequency divisors, or empty
    std::vector<Llama4Layer> layers_;
    MoeBlock moe_;

    // Scratch, grown to the largest batch seen and reused.
    std::vector<float> q_, attn_, k_, v_;  // [n][n_head * hd], [n][n_kv * hd]
    std::vector<float> g_, u_;             // [n][n_ff] dense FFN
};

}  // namespace

Result<GpuRecipe> llama4_gpu_recipe(const gguf::GgufFile& file, const LoadOptions& opts) {
    GpuRecipe r;
    HEARTH_ASSIGN(const Llama4Params p, read_family(file, opts, "llama4", r.hp, read_params));
    const Hparams& hp = r.hp;
    r.attn = AttnLoad{.out_bias = true, .refuse_fused_qkv = true};
    r.qk_l2_after_rope = p.kq_norm;
    r.temp_scale = p.temp_scale, r.temp_floor = p.temp_floor;
    r.n_chunk = p.n_chunk;
    r.moe = MoeSpec{.gating = Gating::sigmoid, .weight_input = true};
    r.shared_expert = true;
    r.shared_ff = r.hp.n_ff_exp;
    r.layers.resize(hp.n_layer);
    for (int l = 0; l < hp.n_layer; ++l) {
        r.layers[l].chunked = p.is_chunked[l] && p.n_chunk > 0;
        r.layers[l].rope = (l + 1) % p.no_rope_step != 0;
        r.layers[l].rope_cfg = hp.rope;
        r.layers[l].moe = p.is_moe(l);
    }
    return r;
}

Result<std::unique_ptr<Model>> load_llama4(std::shared_ptr<const gguf::GgufFile> file, const LoadOptions& opts) {
    return load_family<Llama4>(std::move(file), opts, "llama4", read_params);
}

}  // namespace hearth::model
