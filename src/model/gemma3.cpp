// gemma3: Gemma 3 text models. Embeddings scaled by sqrt(n_embd); sandwich RMS norms around
// attention and FFN (norm weights are stored with Gemma's +1 applied); q/k RMS-normed per head
// before RoPE (neox); GELU-tanh gated FFN; interleaved sliding-window layers (i % pattern <
// pattern - 1) whose RoPE uses rope.freq_base_swa without linear scaling, while global layers
// use rope.freq_base with rope.scaling.factor; optional final logit soft-capping; tied output.
#include <algorithm>
#include <cmath>

#include "model/blocks.h"
#include "model/families.h"
#include "model/gpu_recipe.h"

namespace hearth::model {
namespace {

struct Gemma3Params {
    int n_swa = 0;                      // attention.sliding_window; 0: every layer is global
    std::vector<uint8_t> is_swa;        // [n_layer] 1: sliding-window layer
    float rope_base_swa = 10000.0f;     // rope.freq_base_swa
    float attn_scale = 0.0f;            // applied to q after RoPE
    float final_softcap = 0.0f;         // final_logit_softcapping; 0: off
};

struct Gemma3Layer {
    std::vector<float> attn_norm, post_attn_norm, ffn_norm, post_ffn_norm;  // [n_embd]
    AttnWeights attn;                    // with q/k norms [head_dim_k]
    FfnWeights ffn;                      // GELU-gated: down(gelu(gate x) * up x)
};

Result<Gemma3Params> read_params(const ArchKeys& k, Hparams& hp) {
    Gemma3Params p;
    HEARTH_TRY(read_common_hparams(k, hp));
    HEARTH_TRY(k.get("attention.layer_norm_rms_epsilon", hp.norm_eps));
    HEARTH_TRY(k.get_or("attention.sliding_window", p.n_swa, 0));
    p.is_swa.assign(hp.n_layer, 0);
    if (p.n_swa > 0) {
        // A per-layer array here is ignored by llama.cpp (it keeps the default period of 6).
        int period = 6;
        const gguf::Value* pat = k.meta().find(k.key("attention.sliding_window_pattern"));
        if (pat && pat->type != gguf::ValueType::array) HEARTH_TRY(k.get("attention.sliding_window_pattern", period));
        for (int l = 0; l < hp.n_layer; ++l) p.is_swa[l] = period == 0 || l % period < period - 1;
        HEARTH_TRY(k.get_or("rope.freq_base_swa", p.rope_base_swa, 10000.0f));
    }
    HEARTH_TRY(k.get_or("final_logit_softcapping", p.final_softcap, 0.0f));
    // llama.cpp's rule: Gemma-3-27B (62 layers) scales by 1/sqrt(n_embd/n_head) (its
    // query_pre_attn_scalar, which the GGUF does not store); every other size by 1/sqrt(key_length).
    p.attn_scale = hp.n_layer == 62 ? 1.0f / std::sqrt((float)(hp.n_embd / hp.n_head))
                                    : 1.0f / std::sqrt((float)hp.head_dim_k);
    if (hp.n_ff <= 0) return error(StatusCode::corrupt, k.key("feed_forward_length") + ": missing or zero");
    if (hp.n_expert > 0) return error(StatusCode::unsupported, "gemma3 with experts is not supported");
    hp.rope.neox = true;
    return p;
}

class Gemma3 : public DecoderBase {
public:
    Gemma3(std::shared_ptr<const gguf::GgufFile> file, Hparams hp, Gemma3Params p, int n_threads)
        : DecoderBase(std::move(file), std::move(hp), n_threads), p_(std::move(p)) {}

    Status load_weights() {
        const Hparams& hp = hp_;
        WeightLoader w(*file_, lora_.get());
        const int64_t d = hp.n_embd;
        HEARTH_TRY(load_embeddings(w));
        layers_.resize(hp.n_layer);
        for (int l = 0; l < hp.n_layer; ++l) {
            Gemma3Layer& L = layers_[l];
            auto name = [l](const char* n) { return layer_tensor(l, n); };
            HEARTH_TRY(w.vec(name("attn_norm"), d, L.attn_norm));
            HEARTH_TRY(blocks::load_attention(w, hp, l, AttnLoad{.qk_norm = true}, L.attn));
            HEARTH_TRY(w.vec(name("post_attention_norm"), d, L.post_attn_norm));
            HEARTH_TRY(w.vec(name("ffn_norm"), d, L.ffn_norm));
            HEARTH_TRY(blocks::load_ffn(w, l, d, hp.n_ff, L.ffn));
            HEARTH_TRY(w.vec(name("post_ffw_norm"), d, L.post_ffn_norm));
        }
        return {};
    }

    Status run_forward(const Batch& batch, KvCache& kv, ForwardOutput& out) override {
        HEARTH_TRY(begin(batch, kv));
        const Hparams& hp = hp_;
        const int64_t n = batch.n_tokens(), d = hp.n_embd, n_ff = hp.n_ff, hd = hp.head_dim_k;
        const int64_t q_dim = hp.n_head * hd, kv_dim = hp.n_head_kv * hd, v_dim = (int64_t)hp.n_head_kv * hp.head_dim_v;
        grow(q_, n * q_dim), grow(k_, n * kv_dim), grow(v_, n * v_dim);
        grow(attn_, n * (int64_t)hp.n_head * hp.head_dim_v), grow(gate_, n * n_ff), grow(up_, n * n_ff);
        ops::RopeConfig rc_swa = hp.rope;  // local layers: their own base, no linear scaling
        rc_swa.freq_base = p_.rope_base_swa;
        rc_swa.freq_scale = 1.0f;
        ops::AttentionParams ap;
        ap.n_head = hp.n_head;
        ap.n_head_kv = hp.n_head_kv;
        ap.head_dim_k = hp.head_dim_k;
        ap.head_dim_v = hp.head_dim_v;
        ap.scale = 1.0f;  // q carries the scale, applied after RoPE as llama.cpp does

        const float embd_scale = std::sqrt((float)d);
        for (int64_t i = 0; i < n * d; ++i) x_[i] *= embd_scale;
        for (int l = 0; l < hp.n_layer; ++l) {
            const Gemma3Layer& L = layers_[l];
            const bool swa = p_.is_swa[l] != 0;
            ops_.rms_norm(x_.data(), L.attn_norm.data(), h_.data(), d, n, hp.norm_eps);
            blocks::project_qkv(ops_, L.attn, h_.data(), q_.data(), k_.data(), v_.data(), n);
            blocks::qk_norm(ops_, hp, L.attn.q_norm.data(), L.attn.k_norm.data(), q_.data(), k_.data(), n);
            const ops::RopeConfig& rc = swa ? rc_swa : hp.rope;
            ops_.rope(q_.data(), batch.positions.data(), n, hp.n_head, (int)hd, rc);
            ops_.rope(k_.data(), batch.positions.data(), n, hp.n_head_kv, (int)hd, rc);
            for (int64_t i = 0; i < n * q_dim; ++i) q_[i] *= p_.attn_scale;
            blocks::write_kv(ops_, kv, l, batch, k_.data(), kv_dim, v_.data(), v_dim);
            ap.sliding_window = swa ? p_.n_swa : 0;
            ops_.attention(q_.data(), kv.view(l), idx_.tables.data(), batch.positions.data(), idx_.kv_end.data(), n,
                           ap, attn_.data());
            ops_.matmul(L.attn.wo, attn_.data(), proj_.data(), n);
            ops_.rms_norm(proj_.data(), L.post_attn_norm.data(), proj_.data(), d, n, hp.norm_eps);
            ops_.add(x_.data(), proj_.data(), n * d);

            ops_.rms_norm(x_.data(), L.ffn_norm.data(), h_.data(), d, n, hp.norm_eps);
            ops_.matmul(L.ffn.gate, h_.data(), gate_.data(), n);
            ops_.matmul(L.ffn.up, h_.data(), up_.data(), n);
            ops_.gelu(gate_.data(), gate_.data(), n * n_ff);
            for (int64_t i = 0; i < n * n_ff; ++i) gate_[i] *= up_[i];
            ops_.matmul(L.ffn.down, gate_.data(), proj_.data(), n);
            ops_.rms_norm(proj_.data(), L.post_ffn_norm.data(), proj_.data(), d, n, hp.norm_eps);
            ops_.add(x_.data(), proj_.data(), n * d);
        }
        finish(batch, out);
        if (p_.final_softcap > 0.0f)
            for (float& v : out.logits) v = std::tanh(v / p_.final_softcap) * p_.final_softcap;
        return {};
    }

private:
    Gemma3Params p_;
    std::vector<Gemma3Layer> layers_;

    // Scratch, grown to the largest batch seen and reused (the decode step allocates nothing).
    std::vector<float> q_, k_, v_;   // [n][n_head*hd_k], [n][n_kv*hd_k], [n][n_kv*hd_v]
    std::vector<float> attn_;        // [n][n_head*hd_v]
    std::vector<float> gate_, up_;   // [n][n_ff]
};

}  // namespace

Result<GpuRecipe> gemma3_gpu_recipe(const gguf::GgufFile& file, const LoadOptions& opts) {
    GpuRecipe r;
    HEARTH_ASSIGN(const Gemma3Params p, read_family(file, opts, "gemma3", r.hp, read_params));
    const Hparams& hp = r.hp;
    r.attn = AttnLoad{.qk_norm = true};
    r.attn_scale = p.attn_scale;  // the CPU scales q after RoPE; the GPU scales the scores
    r.embd_scale = std::sqrt((float)hp.n_embd);
    r.final_softcap = p.final_softcap;
    r.post_norms = true;
    r.act = FfnAct::geglu;
    ops::RopeConfig rc_swa = hp.rope;  // as forward(): local layers have their own base, no scaling
    rc_swa.freq_base = p.rope_base_swa;
    rc_swa.freq_scale = 1.0f;
    r.layers.resize(hp.n_layer);
    for (int l = 0; l < hp.n_layer; ++l) {
        r.layers[l].window = p.is_swa[l] ? p.n_swa : 0;
        r.layers[l].rope_cfg = p.is_swa[l] ? rc_swa : hp.rope;
    }
    return r;
}

Result<std::unique_ptr<Model>> load_gemma3(std::shared_ptr<const gguf::GgufFile> file, const LoadOptions& opts) {
    return load_family<Gemma3>(std::move(file), opts, "gemma3", read_params);
}

}  // namespace hearth::model
