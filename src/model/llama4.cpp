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
#include <algorithm>
#include <cmath>
#include <numeric>

#include "model/families.h"

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
};

struct Llama4Layer {
    std::vector<float> attn_norm, ffn_norm;   // [n_embd]
    ops::Weight wq, wk, wv, wo;
    std::vector<float> bq, bk, bv, bo;        // optional biases
    ops::Weight ffn_gate, ffn_up, ffn_down;   // dense: [n_embd -> n_ff] x2, [n_ff -> n_embd]
    ops::Weight router;                       // [n_embd -> n_expert]
    ops::Weight gate_exps, up_exps, down_exps;// [n_embd -> n_ff_exp, n_expert] ...
    ops::Weight gate_sh, up_sh, down_sh;      // shared expert, n_ff_exp wide
};

class Llama4 : public Model {
public:
    Llama4(std::shared_ptr<const gguf::GgufFile> file, Hparams hp, Llama4Params p, int n_threads)
        : Model(std::move(file), std::move(hp), n_threads), p_(std::move(p)) {}

    Status load_weights() {
        const Hparams& hp = hp_;
        WeightLoader w(*file_);
        const int64_t d = hp.n_embd, q_dim = (int64_t)hp.n_head * hp.head_dim_k;
        const int64_t kv_dim = (int64_t)hp.n_head_kv * hp.head_dim_k, ff = hp.n_ff_exp;
        HEARTH_TRY(w.matrix("token_embd.weight", {d, hp.n_vocab}, tok_embd_));
        HEARTH_TRY(w.vec("output_norm.weight", d, output_norm_));
        HEARTH_TRY(w.matrix("output.weight", {d, hp.n_vocab}, output_, /*required=*/false));
        if (!output_.present()) output_ = tok_embd_;
        HEARTH_TRY(w.vec("rope_freqs.weight", hp.n_rot / 2, rope_freqs_, /*required=*/false));
        layers_.resize(hp.n_layer);
        for (int l = 0; l < hp.n_layer; ++l) {
            Llama4Layer& L = layers_[l];
            auto name = [l](const char* n, const char* s = "weight") { return layer_tensor(l, n, s); };
            if (w.has(name("attn_qkv")))
                return error(StatusCode::unsupported, name("attn_qkv") + ": fused QKV is not supported for llama4");
            HEARTH_TRY(w.vec(name("attn_norm"), d, L.attn_norm));
            HEARTH_TRY(w.matrix(name("attn_q"), {d, q_dim}, L.wq));
            HEARTH_TRY(w.matrix(name("attn_k"), {d, kv_dim}, L.wk));
            HEARTH_TRY(w.matrix(name("attn_v"), {d, kv_dim}, L.wv));
            HEARTH_TRY(w.matrix(name("attn_output"), {q_dim, d}, L.wo));
            HEARTH_TRY(w.vec(name("attn_q", "bias"), q_dim, L.bq, false));
            HEARTH_TRY(w.vec(name("attn_k", "bias"), kv_dim, L.bk, false));
            HEARTH_TRY(w.vec(name("attn_v", "bias"), kv_dim, L.bv, false));
            HEARTH_TRY(w.vec(name("attn_output", "bias"), d, L.bo, false));
            HEARTH_TRY(w.vec(name("ffn_norm"), d, L.ffn_norm));
            if (is_moe(l)) {
                HEARTH_TRY(w.matrix(name("ffn_gate_inp"), {d, hp.n_expert}, L.router));
                HEARTH_TRY(w.matrix(name("ffn_gate_exps"), {d, ff, hp.n_expert}, L.gate_exps));
                HEARTH_TRY(w.matrix(name("ffn_up_exps"), {d, ff, hp.n_expert}, L.up_exps));
                HEARTH_TRY(w.matrix(name("ffn_down_exps"), {ff, d, hp.n_expert}, L.down_exps));
                HEARTH_TRY(w.matrix(name("ffn_gate_shexp"), {d, ff}, L.gate_sh));
                HEARTH_TRY(w.matrix(name("ffn_up_shexp"), {d, ff}, L.up_sh));
                HEARTH_TRY(w.matrix(name("ffn_down_shexp"), {ff, d}, L.down_sh));
            } else {
                HEARTH_TRY(w.matrix(name("ffn_gate"), {d, hp.n_ff}, L.ffn_gate));
                HEARTH_TRY(w.matrix(name("ffn_up"), {d, hp.n_ff}, L.ffn_up));
                HEARTH_TRY(w.matrix(name("ffn_down"), {hp.n_ff, d}, L.ffn_down));
            }
        }
        return {};
    }

    Status forward(const Batch& batch, KvCache& kv, ForwardOutput& out) override {
        HEARTH_TRY(validate(batch, kv));
        const Hparams& hp = hp_;
        const int64_t n = batch.n_tokens(), d = hp.n_embd, hd = hp.head_dim_k;
        const int64_t q_dim = hp.n_head * hd, kv_dim = hp.n_head_kv * hd;
        const int64_t ff = std::max(hp.n_ff, hp.n_ff_exp);
        grow(x_, n * d), grow(h_, n * d), grow(proj_, n * d), grow(xin_, n * d), grow(y_, n * d);
        grow(q_, n * q_dim), grow(attn_, n * q_dim), grow(k_, n * kv_dim), grow(v_, n * kv_dim);
        grow(g_, n * ff), grow(u_, n * ff), grow(router_, n * hp.n_expert);
        kv_end_.resize(n), tables_.resize(n);
        bool past_first_chunk = false;
        for (int64_t t = 0; t < n; ++t) {
            kv_end_[t] = batch.positions[t] + 1;
            tables_[t] = batch.block_tables[batch.seq_ids[t]].data();
            past_first_chunk |= p_.n_chunk > 0 && batch.positions[t] >= p_.n_chunk;
        }
        ops::RopeConfig rc;
        rc.n_rot = hp.n_rot;
        rc.freq_base = hp.rope_freq_base;
        rc.freq_scale = hp.rope_freq_scale;
        rc.freq_factors = rope_freqs_.empty() ? nullptr : rope_freqs_.data();
        rc.n_ctx_orig = hp.n_ctx_orig;
        ops::AttentionParams ap;
        ap.n_head = hp.n_head, ap.n_head_kv = hp.n_head_kv, ap.head_dim_k = ap.head_dim_v = (int)hd;
        ap.scale = 1.0f / std::sqrt((float)hd);

        ops_.get_rows(tok_embd_, batch.tokens.data(), n, x_.data());
        for (int l = 0; l < hp.n_layer; ++l) {
            const Llama4Layer& L = layers_[l];
            ops_.rms_norm(x_.data(), L.attn_norm.data(), h_.data(), d, n, hp.norm_eps);
            linear(L.wq, L.bq, h_.data(), q_.data(), n);
            linear(L.wk, L.bk, h_.data(), k_.data(), n);
            linear(L.wv, L.bv, h_.data(), v_.data(), n);
            if ((l + 1) % p_.no_rope_step != 0) {
                ops_.rope(q_.data(), batch.positions.data(), n, hp.n_head, (int)hd, rc);
                ops_.rope(k_.data(), batch.positions.data(), n, hp.n_head_kv, (int)hd, rc);
                if (p_.kq_norm) {  // "L2 norm": unweighted RMS norm per head
                    ops_.rms_norm(q_.data(), nullptr, q_.data(), hd, n * hp.n_head, hp.norm_eps);
                    ops_.rms_norm(k_.data(), nullptr, k_.data(), hd, n * hp.n_head_kv, hp.norm_eps);
                }
            } else if (p_.temp_floor > 0) {  // attention temperature tuning
                for (int64_t t = 0; t < n; ++t) {
                    const float pos = (float)batch.positions[t];
                    const float s = (float)(std::log(std::floor((pos + 1.0f) / p_.temp_floor) + 1.0) * p_.temp_scale + 1.0);
                    for (int64_t i = 0; i < q_dim; ++i) q_[t * q_dim + i] *= s;
                }
            }
            for (int64_t t = 0; t < n; ++t) {
                const int32_t pos = batch.positions[t], blk = tables_[t][pos / kv.block_size()];
                std::copy_n(k_.data() + t * kv_dim, kv_dim, kv.k_row(l, blk, pos % kv.block_size()));
                std::copy_n(v_.data() + t * kv_dim, kv_dim, kv.v_row(l, blk, pos % kv.block_size()));
            }
            if (p_.is_chunked[l] && past_first_chunk) {
                // The op only knows windows ending at the query: one call per token whose
                // window reaches back exactly to its chunk start.
                for (int64_t t = 0; t < n; ++t) {
                    ap.sliding_window = batch.positions[t] % p_.n_chunk + 1;
                    ops_.attention(q_.data() + t * q_dim, kv.view(l), tables_.data() + t, batch.positions.data() + t,
                                   kv_end_.data() + t, 1, ap, attn_.data() + t * q_dim);
                }
            } else {
                ap.sliding_window = 0;
                ops_.attention(q_.data(), kv.view(l), tables_.data(), batch.positions.data(), kv_end_.data(), n, ap,
                               attn_.data());
            }
            linear(L.wo, L.bo, attn_.data(), proj_.data(), n);
            ops_.add(x_.data(), proj_.data(), n * d);
            ops_.rms_norm(x_.data(), L.ffn_norm.data(), h_.data(), d, n, hp.norm_eps);
            if (is_moe(l)) {
                moe(L, n);
                swiglu_ffn(L.gate_sh, L.up_sh, L.down_sh, h_.data(), y_.data(), n);
                ops_.add(proj_.data(), y_.data(), n * d);
            } else {
                swiglu_ffn(L.ffn_gate, L.ffn_up, L.ffn_down, h_.data(), proj_.data(), n);
            }
            ops_.add(x_.data(), proj_.data(), n * d);
        }

        int64_t n_out = 0;
        for (int64_t t = 0; t < n; ++t)
            if (batch.output[t]) std::copy_n(x_.data() + t * d, d, h_.data() + (n_out++) * d);
        ops_.rms_norm(h_.data(), output_norm_.data(), h_.data(), d, n_out, hp.norm_eps);
        out.logits.resize(n_out * hp.n_vocab);
        if (n_out > 0) ops_.matmul(output_, h_.data(), out.logits.data(), n_out);
        out.embeddings.clear();
        return {};
    }

private:
    bool is_moe(int l) const { return p_.moe_step > 0 && (l + 1) % p_.moe_step == 0; }

    static void grow(std::vector<float>& v, int64_t size) {
        if ((int64_t)v.size() < size) v.resize(size);
    }

    void linear(const ops::Weight& w, const std::vector<float>& b, const float* x, float* y, int64_t n) {
        ops_.matmul(w, x, y, n);
        if (b.empty()) return;
        for (int64_t t = 0; t < n; ++t)
            for (int64_t i = 0; i < w.n_out(); ++i) y[t * w.n_out() + i] += b[i];
    }

    // y = down(silu(gate x) * up x) for m tokens; uses g_/u_.
    void swiglu_ffn(const ops::Weight& gate, const ops::Weight& up, const ops::Weight& down, const float* x, float* y,
                    int64_t m) {
        ops_.matmul(gate, x, g_.data(), m);
        ops_.matmul(up, x, u_.data(), m);
        ops_.swiglu(g_.data(), u_.data(), g_.data(), m * gate.n_out());
        ops_.matmul(down, g_.data(), y, m);
    }

    // proj_ = sum over the selected experts of expert(sigmoid(logit) * h_).
    void moe(const Llama4Layer& L, int64_t n) {
        const int64_t d = hp_.n_embd;
        const int n_exp = hp_.n_expert, k = hp_.n_expert_used;
        ops_.matmul(L.router, h_.data(), router_.data(), n);
        chosen_.resize(n * k), weight_.resize(n * k), order_.resize(n_exp);
        for (int64_t t = 0; t < n; ++t) {
            const float* lg = router_.data() + t * n_exp;
            std::iota(order_.begin(), order_.end(), 0);
            std::partial_sort(order_.begin(), order_.begin() + k, order_.end(),
                              [lg](int32_t a, int32_t b) { return lg[a] > lg[b] || (lg[a] == lg[b] && a < b); });
            for (int j = 0; j < k; ++j) {
                chosen_[t * k + j] = order_[j];
                weight_[t * k + j] = 1.0f / (1.0f + std::exp(-lg[order_[j]]));
            }
        }
        std::fill(proj_.begin(), proj_.begin() + n * d, 0.0f);
        for (int e = 0; e < n_exp; ++e) {  // each expert's weights are read once per batch
            rows_.clear();
            int64_t m = 0;
            for (int64_t t = 0; t < n; ++t)
                for (int j = 0; j < k; ++j)
                    if (chosen_[t * k + j] == e) {
                        rows_.push_back(t);
                        for (int64_t c = 0; c < d; ++c) xin_[m * d + c] = h_[t * d + c] * weight_[t * k + j];
                        ++m;
                    }
            if (m == 0) continue;
            swiglu_ffn(L.gate_exps.slice(e), L.up_exps.slice(e), L.down_exps.slice(e), xin_.data(), y_.data(), m);
            for (int64_t i = 0; i < m; ++i) ops_.add(proj_.data() + rows_[i] * d, y_.data() + i * d, d);
        }
    }

    Llama4Params p_;
    ops::Weight tok_embd_, output_;
    std::vector<float> output_norm_;
    std::vector<float> rope_freqs_;  // [n_rot/2] frequency divisors, or empty
    std::vector<Llama4Layer> layers_;

    // Scratch, grown to the largest batch seen and reused. Expert rows of one expert never
    // exceed n (each token picks an expert at most once), so [n]-sized buffers suffice.
    std::vector<float> x_, h_, proj_, xin_, y_;  // [n][n_embd]
    std::vector<float> q_, attn_, k_, v_;        // [n][n_head * hd], [n][n_kv * hd]
    std::vector<float> g_, u_;                   // [n][max(n_ff, n_ff_exp)]
    std::vector<float> router_;                  // [n][n_expert] router logits
    std::vector<int32_t> chosen_, order_;        // [n][k] selected experts; [n_expert] sort scratch
    std::vector<float> weight_;                  // [n][k] sigmoid weights
    std::vector<int64_t> rows_;                  // tokens routed to the current expert
    std::vector<int32_t> kv_end_;
    std::vector<const int32_t*> tables_;
};

}  // namespace

Result<std::unique_ptr<Model>> load_llama4(std::shared_ptr<const gguf::GgufFile> file, const LoadOptions& opts) {
    Hparams hp;
    hp.arch = "llama4";
    ArchKeys k(file->meta, hp.arch);
    HEARTH_TRY(read_common_hparams(k, hp));
    HEARTH_TRY(k.get("attention.layer_norm_rms_epsilon", hp.norm_eps));
    HEARTH_TRY(k.get("expert_feed_forward_length", hp.n_ff_exp));
    HEARTH_TRY(read_vocab_size(*file, hp));
    hp.rope_neox = false;
    if (hp.n_expert < 1) return error(StatusCode::corrupt, k.key("expert_count") + ": llama4 cannot have zero experts");
    if (hp.n_rot != hp.head_dim_k || hp.head_dim_v != hp.head_dim_k)
        return error(StatusCode::unsupported, strformat("llama4 with rope dims %d, key length %d, value length %d",
                                                        hp.n_rot, hp.head_dim_k, hp.head_dim_v));
    Llama4Params p;
    HEARTH_TRY(k.get("interleave_moe_layer_step", p.moe_step));
    bool any_moe = false, any_dense = false;
    for (int l = 0; l < hp.n_layer; ++l) (p.moe_step > 0 && (l + 1) % p.moe_step == 0 ? any_moe : any_dense) = true;
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
    auto m = std::make_unique<Llama4>(file, hp, std::move(p), opts.n_threads);
    HEARTH_TRY(m->load_weights());
    return std::unique_ptr<Model>(std::move(m));
}

}  // namespace hearth::model
