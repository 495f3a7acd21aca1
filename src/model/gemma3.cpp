// gemma3: Gemma 3 text models. Embeddings scaled by sqrt(n_embd); sandwich RMS norms around
// attention and FFN (norm weights are stored with Gemma's +1 applied); q/k RMS-normed per head
// before RoPE (neox); GELU-tanh gated FFN; interleaved sliding-window layers (i % pattern <
// pattern - 1) whose RoPE uses rope.freq_base_swa without linear scaling, while global layers
// use rope.freq_base with rope.scaling.factor; optional final logit soft-capping; tied output.
#include <algorithm>
#include <cmath>

#include "model/families.h"

namespace hearth::model {
namespace {

struct Gemma3Params {
    int n_swa = 0;                      // attention.sliding_window; 0: every layer is global
    std::vector<uint8_t> is_swa;        // [n_layer] 1: sliding-window layer
    float rope_base_swa = 10000.0f;     // rope.freq_base_swa
    float rope_attn_factor = 1.0f;      // rope.scaling.attn_factor: multiplies cos and sin
    float attn_scale = 0.0f;            // applied to q after RoPE
    float final_softcap = 0.0f;         // final_logit_softcapping; 0: off
};

struct Gemma3Layer {
    std::vector<float> attn_norm, post_attn_norm, ffn_norm, post_ffn_norm;  // [n_embd]
    std::vector<float> q_norm, k_norm;                                      // [head_dim_k]
    ops::Weight wq, wk, wv, wo;          // [n_embd -> n_head*hd_k], [n_embd -> n_kv*hd] x2, [n_head*hd_v -> n_embd]
    ops::Weight ffn_gate, ffn_up, ffn_down;  // [n_embd -> n_ff] x2, [n_ff -> n_embd]
};

Result<Gemma3Params> read_params(const ArchKeys& k, Hparams& hp) {
    Gemma3Params p;
    HEARTH_TRY(read_common_hparams(k, hp));
    HEARTH_TRY(k.get("attention.layer_norm_rms_epsilon", hp.norm_eps));
    HEARTH_TRY(k.get_or("rope.scaling.attn_factor", p.rope_attn_factor, 1.0f));
    // Without rope.scaling.type llama.cpp assumes linear scaling by rope.scaling.factor.
    if (!k.has("rope.scaling.type") && k.has("rope.scaling.factor")) {
        float factor = 0.0f;
        HEARTH_TRY(k.get("rope.scaling.factor", factor));
        if (factor > 0.0f) hp.rope_freq_scale = 1.0f / factor;
    }
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
    hp.rope_neox = true;
    return p;
}

class Gemma3 : public Model {
public:
    Gemma3(std::shared_ptr<const gguf::GgufFile> file, Hparams hp, Gemma3Params p, int n_threads)
        : Model(std::move(file), std::move(hp), n_threads), p_(std::move(p)) {}

    Status load_weights() {
        const Hparams& hp = hp_;
        WeightLoader w(*file_);
        const int64_t d = hp.n_embd, hd = hp.head_dim_k;
        const int64_t q_dim = hp.n_head * hd, kv_dim = hp.n_head_kv * hd, v_dim = (int64_t)hp.n_head_kv * hp.head_dim_v;
        HEARTH_TRY(w.matrix("token_embd.weight", {d, hp.n_vocab}, tok_embd_));
        HEARTH_TRY(w.vec("output_norm.weight", d, output_norm_));
        HEARTH_TRY(w.matrix("output.weight", {d, hp.n_vocab}, output_, /*required=*/false));
        if (!output_.present()) output_ = tok_embd_;  // tied embeddings
        layers_.resize(hp.n_layer);
        for (int l = 0; l < hp.n_layer; ++l) {
            Gemma3Layer& L = layers_[l];
            auto name = [l](const char* n) { return layer_tensor(l, n); };
            HEARTH_TRY(w.vec(name("attn_norm"), d, L.attn_norm));
            HEARTH_TRY(w.matrix(name("attn_q"), {d, q_dim}, L.wq));
            HEARTH_TRY(w.matrix(name("attn_k"), {d, kv_dim}, L.wk));
            HEARTH_TRY(w.matrix(name("attn_v"), {d, v_dim}, L.wv));
            HEARTH_TRY(w.matrix(name("attn_output"), {hp.n_head * (int64_t)hp.head_dim_v, d}, L.wo));
            HEARTH_TRY(w.vec(name("attn_q_norm"), hd, L.q_norm));
            HEARTH_TRY(w.vec(name("attn_k_norm"), hd, L.k_norm));
            HEARTH_TRY(w.vec(name("post_attention_norm"), d, L.post_attn_norm));
            HEARTH_TRY(w.vec(name("ffn_norm"), d, L.ffn_norm));
            HEARTH_TRY(w.matrix(name("ffn_gate"), {d, hp.n_ff}, L.ffn_gate));
            HEARTH_TRY(w.matrix(name("ffn_up"), {d, hp.n_ff}, L.ffn_up));
            HEARTH_TRY(w.matrix(name("ffn_down"), {hp.n_ff, d}, L.ffn_down));
            HEARTH_TRY(w.vec(name("post_ffw_norm"), d, L.post_ffn_norm));
        }
        return {};
    }

    Status forward(const Batch& batch, KvCache& kv, ForwardOutput& out) override {
        HEARTH_TRY(validate(batch, kv));
        const Hparams& hp = hp_;
        const int64_t n = batch.n_tokens(), d = hp.n_embd, n_ff = hp.n_ff, hd = hp.head_dim_k;
        const int64_t q_dim = hp.n_head * hd, kv_dim = hp.n_head_kv * hd, v_dim = (int64_t)hp.n_head_kv * hp.head_dim_v;
        const int64_t o_dim = (int64_t)hp.n_head * hp.head_dim_v;
        auto grow = [](std::vector<float>& v, int64_t size) { if ((int64_t)v.size() < size) v.resize(size); };
        grow(x_, n * d), grow(h_, n * d), grow(q_, n * q_dim), grow(k_, n * kv_dim), grow(v_, n * v_dim);
        grow(attn_, n * o_dim), grow(gate_, n * n_ff), grow(up_, n * n_ff), grow(proj_, n * d);
        kv_end_.resize(n);
        tables_.resize(n);
        for (int64_t t = 0; t < n; ++t) {
            kv_end_[t] = batch.positions[t] + 1;  // causal
            tables_[t] = batch.block_tables[batch.seq_ids[t]].data();
        }
        ops::RopeConfig rc_global;
        rc_global.n_rot = hp.n_rot;
        rc_global.neox = true;
        rc_global.freq_base = hp.rope_freq_base;
        rc_global.freq_scale = hp.rope_freq_scale;
        rc_global.attn_factor = p_.rope_attn_factor;
        rc_global.n_ctx_orig = hp.n_ctx_orig;
        ops::RopeConfig rc_swa = rc_global;
        rc_swa.freq_base = p_.rope_base_swa;
        rc_swa.freq_scale = 1.0f;
        ops::AttentionParams ap;
        ap.n_head = hp.n_head;
        ap.n_head_kv = hp.n_head_kv;
        ap.head_dim_k = hp.head_dim_k;
        ap.head_dim_v = hp.head_dim_v;
        ap.scale = 1.0f;  // q carries the scale, applied after RoPE as llama.cpp does

        ops_.get_rows(tok_embd_, batch.tokens.data(), n, x_.data());
        const float embd_scale = std::sqrt((float)d);
        for (int64_t i = 0; i < n * d; ++i) x_[i] *= embd_scale;
        for (int l = 0; l < hp.n_layer; ++l) {
            const Gemma3Layer& L = layers_[l];
            const bool swa = p_.is_swa[l] != 0;
            ops_.rms_norm(x_.data(), L.attn_norm.data(), h_.data(), d, n, hp.norm_eps);
            ops_.matmul(L.wq, h_.data(), q_.data(), n);
            ops_.matmul(L.wk, h_.data(), k_.data(), n);
            ops_.matmul(L.wv, h_.data(), v_.data(), n);
            ops_.rms_norm(q_.data(), L.q_norm.data(), q_.data(), hd, n * hp.n_head, hp.norm_eps);
            ops_.rms_norm(k_.data(), L.k_norm.data(), k_.data(), hd, n * hp.n_head_kv, hp.norm_eps);
            const ops::RopeConfig& rc = swa ? rc_swa : rc_global;
            ops_.rope(q_.data(), batch.positions.data(), n, hp.n_head, (int)hd, rc);
            ops_.rope(k_.data(), batch.positions.data(), n, hp.n_head_kv, (int)hd, rc);
            for (int64_t i = 0; i < n * q_dim; ++i) q_[i] *= p_.attn_scale;
            for (int64_t t = 0; t < n; ++t) {
                const int32_t pos = batch.positions[t], blk = tables_[t][pos / kv.block_size()];
                std::copy_n(k_.data() + t * kv_dim, kv_dim, kv.k_row(l, blk, pos % kv.block_size()));
                std::copy_n(v_.data() + t * v_dim, v_dim, kv.v_row(l, blk, pos % kv.block_size()));
            }
            ap.sliding_window = swa ? p_.n_swa : 0;
            ops_.attention(q_.data(), kv.view(l), tables_.data(), batch.positions.data(), kv_end_.data(), n, ap,
                           attn_.data());
            ops_.matmul(L.wo, attn_.data(), proj_.data(), n);
            ops_.rms_norm(proj_.data(), L.post_attn_norm.data(), proj_.data(), d, n, hp.norm_eps);
            ops_.add(x_.data(), proj_.data(), n * d);

            ops_.rms_norm(x_.data(), L.ffn_norm.data(), h_.data(), d, n, hp.norm_eps);
            ops_.matmul(L.ffn_gate, h_.data(), gate_.data(), n);
            ops_.matmul(L.ffn_up, h_.data(), up_.data(), n);
            ops_.gelu(gate_.data(), gate_.data(), n * n_ff);
            for (int64_t i = 0; i < n * n_ff; ++i) gate_[i] *= up_[i];
            ops_.matmul(L.ffn_down, gate_.data(), proj_.data(), n);
            ops_.rms_norm(proj_.data(), L.post_ffn_norm.data(), proj_.data(), d, n, hp.norm_eps);
            ops_.add(x_.data(), proj_.data(), n * d);
        }

        int64_t n_out = 0;
        for (int64_t t = 0; t < n; ++t)
            if (batch.output[t]) std::copy_n(x_.data() + t * d, d, h_.data() + (n_out++) * d);
        ops_.rms_norm(h_.data(), output_norm_.data(), h_.data(), d, n_out, hp.norm_eps);
        out.logits.resize(n_out * hp.n_vocab);
        if (n_out > 0) ops_.matmul(output_, h_.data(), out.logits.data(), n_out);
        if (p_.final_softcap > 0.0f)
            for (float& v : out.logits) v = std::tanh(v / p_.final_softcap) * p_.final_softcap;
        out.embeddings.clear();
        return {};
    }

private:
    Gemma3Params p_;
    ops::Weight tok_embd_, output_;
    std::vector<float> output_norm_;  // [n_embd]
    std::vector<Gemma3Layer> layers_;

    // Scratch, grown to the largest batch seen and reused (the decode step allocates nothing).
    std::vector<float> x_;           // [n][n_embd] residual stream
    std::vector<float> h_;           // [n][n_embd] normed block input
    std::vector<float> q_, k_, v_;   // [n][n_head*hd_k], [n][n_kv*hd_k], [n][n_kv*hd_v]
    std::vector<float> attn_;        // [n][n_head*hd_v]
    std::vector<float> gate_, up_;   // [n][n_ff]
    std::vector<float> proj_;        // [n][n_embd] block output
    std::vector<int32_t> kv_end_;    // [n] visible positions per token
    std::vector<const int32_t*> tables_;  // [n] block table per token
};

}  // namespace

Result<std::unique_ptr<Model>> load_gemma3(std::shared_ptr<const gguf::GgufFile> file, const LoadOptions& opts) {
    Hparams hp;
    hp.arch = "gemma3";
    ArchKeys k(file->meta, hp.arch);
    HEARTH_ASSIGN(Gemma3Params p, read_params(k, hp));
    HEARTH_TRY(read_vocab_size(*file, hp));
    auto m = std::make_unique<Gemma3>(file, hp, std::move(p), opts.n_threads);
    HEARTH_TRY(m->load_weights());
    return std::unique_ptr<Model>(std::move(m));
}

}  // namespace hearth::model
