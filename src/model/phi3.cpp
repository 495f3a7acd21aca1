// phi3: Phi-3 / Phi-3.5-mini. A pre-norm llama-like decoder with fused projections:
// attn_qkv rows are [q | k | v] and ffn_up rows are [gate | up] (silu(gate) * up). RoPE rotates
// halves (neox) with LongRoPE frequency factors (rope_factors_short, or rope_factors_long when the
// context exceeds the original one) and cos/sin scaled by rope.scaling.attn_factor.
// attention.sliding_window is read but, as in llama.cpp, not applied (Phi SWA is disabled there).
#include <algorithm>
#include <cmath>

#include "model/families.h"

namespace hearth::model {
namespace {

struct Phi3Params {
    float rope_attn_factor = 1.0f;  // rope.scaling.attn_factor: multiplies cos and sin
};

struct Phi3Layer {
    std::vector<float> attn_norm, ffn_norm;  // [n_embd]
    ops::Weight wqkv;                        // [n_embd -> q_dim + 2 kv_dim], or absent
    std::vector<float> bqkv;                 // [q_dim + 2 kv_dim] or empty
    ops::Weight wq, wk, wv;                  // separate projections, used when wqkv is absent
    std::vector<float> bq, bk, bv;           // their optional biases
    ops::Weight wo;                          // [n_embd -> n_embd]
    ops::Weight ffn_up;                      // [n_embd -> 2 n_ff]: gate rows, then up rows
    ops::Weight ffn_down;                    // [n_ff -> n_embd]
};

Result<Phi3Params> read_params(const ArchKeys& k, Hparams& hp) {
    Phi3Params p;
    HEARTH_TRY(read_common_hparams(k, hp));
    HEARTH_TRY(k.get("attention.layer_norm_rms_epsilon", hp.norm_eps));
    HEARTH_TRY(k.get_or("rope.scaling.attn_factor", p.rope_attn_factor, 1.0f));
    // Without rope.scaling.type llama.cpp assumes linear scaling by rope.scaling.factor.
    if (!k.has("rope.scaling.type") && k.has("rope.scaling.factor")) {
        float factor = 0.0f;
        HEARTH_TRY(k.get("rope.scaling.factor", factor));
        if (factor > 0.0f) hp.rope_freq_scale = 1.0f / factor;
    }
    if (hp.head_dim_k != hp.head_dim_v || (int64_t)hp.n_head * hp.head_dim_k != hp.n_embd)
        return error(StatusCode::corrupt, strformat("phi3 needs n_head * head_dim == n_embd and equal k/v head sizes "
                                                    "(%d x %d/%d, n_embd %lld)", hp.n_head, hp.head_dim_k,
                                                    hp.head_dim_v, (long long)hp.n_embd));
    if (hp.n_ff <= 0) return error(StatusCode::corrupt, k.key("feed_forward_length") + ": missing or zero");
    if (hp.n_expert > 0) return error(StatusCode::unsupported, "phi3 with experts (PhiMoE) is not supported");
    hp.rope_neox = true;
    return p;
}

class Phi3 : public Model {
public:
    Phi3(std::shared_ptr<const gguf::GgufFile> file, Hparams hp, Phi3Params p, int n_threads)
        : Model(std::move(file), std::move(hp), n_threads), p_(p) {}

    Status load_weights() {
        const Hparams& hp = hp_;
        WeightLoader w(*file_);
        const int64_t d = hp.n_embd, kv_dim = (int64_t)hp.n_head_kv * hp.head_dim_k;
        HEARTH_TRY(w.matrix("token_embd.weight", {d, hp.n_vocab}, tok_embd_));
        HEARTH_TRY(w.vec("output_norm.weight", d, output_norm_));
        HEARTH_TRY(w.matrix("output.weight", {d, hp.n_vocab}, output_, /*required=*/false));
        if (!output_.present()) output_ = tok_embd_;  // tied embeddings
        HEARTH_TRY(w.vec("rope_factors_long.weight", hp.n_rot / 2, rope_long_, /*required=*/false));
        HEARTH_TRY(w.vec("rope_factors_short.weight", hp.n_rot / 2, rope_short_, /*required=*/false));
        layers_.resize(hp.n_layer);
        for (int l = 0; l < hp.n_layer; ++l) {
            Phi3Layer& L = layers_[l];
            auto name = [l](const char* n, const char* s = "weight") { return layer_tensor(l, n, s); };
            HEARTH_TRY(w.vec(name("attn_norm"), d, L.attn_norm));
            HEARTH_TRY(w.matrix(name("attn_qkv"), {d, d + 2 * kv_dim}, L.wqkv, /*required=*/false));
            if (L.wqkv.present()) {
                HEARTH_TRY(w.vec(name("attn_qkv", "bias"), d + 2 * kv_dim, L.bqkv, false));
            } else {
                HEARTH_TRY(w.matrix(name("attn_q"), {d, d}, L.wq));
                HEARTH_TRY(w.matrix(name("attn_k"), {d, kv_dim}, L.wk));
                HEARTH_TRY(w.matrix(name("attn_v"), {d, kv_dim}, L.wv));
                HEARTH_TRY(w.vec(name("attn_q", "bias"), d, L.bq, false));
                HEARTH_TRY(w.vec(name("attn_k", "bias"), kv_dim, L.bk, false));
                HEARTH_TRY(w.vec(name("attn_v", "bias"), kv_dim, L.bv, false));
            }
            HEARTH_TRY(w.matrix(name("attn_output"), {d, d}, L.wo));
            HEARTH_TRY(w.vec(name("ffn_norm"), d, L.ffn_norm));
            HEARTH_TRY(w.matrix(name("ffn_up"), {d, 2 * hp.n_ff}, L.ffn_up));
            HEARTH_TRY(w.matrix(name("ffn_down"), {hp.n_ff, d}, L.ffn_down));
        }
        return {};
    }

    Status forward(const Batch& batch, KvCache& kv, ForwardOutput& out) override {
        HEARTH_TRY(validate(batch, kv));
        const Hparams& hp = hp_;
        const int64_t n = batch.n_tokens(), d = hp.n_embd, n_ff = hp.n_ff;
        const int64_t kv_dim = (int64_t)hp.n_head_kv * hp.head_dim_k, qkv_dim = d + 2 * kv_dim;
        auto grow = [](std::vector<float>& v, int64_t size) { if ((int64_t)v.size() < size) v.resize(size); };
        grow(x_, n * d), grow(h_, n * std::max(d, n_ff)), grow(q_, n * d), grow(k_, n * kv_dim), grow(v_, n * kv_dim);
        grow(qkv_, n * qkv_dim), grow(attn_, n * d), grow(ff_, n * 2 * n_ff), grow(proj_, n * d);
        kv_end_.resize(n);
        tables_.resize(n);
        for (int64_t t = 0; t < n; ++t) {
            kv_end_[t] = batch.positions[t] + 1;  // causal
            tables_[t] = batch.block_tables[batch.seq_ids[t]].data();
        }
        // llama.cpp picks the factors by the per-sequence context size; the closest thing a
        // forward pass sees is the KV pool's capacity (one Session = one sequence's context).
        const int64_t n_ctx = (int64_t)kv.n_blocks() * kv.block_size();
        const std::vector<float>& factors = n_ctx > hp.n_ctx_orig ? rope_long_ : rope_short_;
        ops::RopeConfig rc;
        rc.n_rot = hp.n_rot;
        rc.neox = true;
        rc.freq_base = hp.rope_freq_base;
        rc.freq_scale = hp.rope_freq_scale;
        rc.freq_factors = factors.empty() ? nullptr : factors.data();
        rc.attn_factor = p_.rope_attn_factor;
        rc.n_ctx_orig = hp.n_ctx_orig;
        ops::AttentionParams ap;
        ap.n_head = hp.n_head;
        ap.n_head_kv = hp.n_head_kv;
        ap.head_dim_k = ap.head_dim_v = hp.head_dim_k;
        ap.scale = 1.0f;  // q is scaled by 1/sqrt(head_dim) after RoPE, as llama.cpp does
        const float q_scale = 1.0f / std::sqrt((float)hp.head_dim_k);

        ops_.get_rows(tok_embd_, batch.tokens.data(), n, x_.data());
        for (int l = 0; l < hp.n_layer; ++l) {
            const Phi3Layer& L = layers_[l];
            ops_.rms_norm(x_.data(), L.attn_norm.data(), h_.data(), d, n, hp.norm_eps);
            project_qkv(L, n);
            ops_.rope(q_.data(), batch.positions.data(), n, hp.n_head, hp.head_dim_k, rc);
            ops_.rope(k_.data(), batch.positions.data(), n, hp.n_head_kv, hp.head_dim_k, rc);
            for (int64_t i = 0; i < n * d; ++i) q_[i] *= q_scale;
            for (int64_t t = 0; t < n; ++t) {
                const int32_t pos = batch.positions[t], blk = tables_[t][pos / kv.block_size()];
                std::copy_n(k_.data() + t * kv_dim, kv_dim, kv.k_row(l, blk, pos % kv.block_size()));
                std::copy_n(v_.data() + t * kv_dim, kv_dim, kv.v_row(l, blk, pos % kv.block_size()));
            }
            ops_.attention(q_.data(), kv.view(l), tables_.data(), batch.positions.data(), kv_end_.data(), n, ap,
                           attn_.data());
            ops_.matmul(L.wo, attn_.data(), proj_.data(), n);
            ops_.add(x_.data(), proj_.data(), n * d);

            ops_.rms_norm(x_.data(), L.ffn_norm.data(), h_.data(), d, n, hp.norm_eps);
            ops_.matmul(L.ffn_up, h_.data(), ff_.data(), n);
            // Row t of ff_ is [gate | up]; the product is packed into h_ as [n][n_ff].
            for (int64_t t = 0; t < n; ++t)
                ops_.swiglu(ff_.data() + t * 2 * n_ff, ff_.data() + t * 2 * n_ff + n_ff, h_.data() + t * n_ff, n_ff);
            ops_.matmul(L.ffn_down, h_.data(), proj_.data(), n);
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
    // h_ -> q_ [n][n_embd], k_ and v_ [n][kv_dim], biases added.
    void project_qkv(const Phi3Layer& L, int64_t n) {
        const int64_t d = hp_.n_embd, kv_dim = (int64_t)hp_.n_head_kv * hp_.head_dim_k, qkv_dim = d + 2 * kv_dim;
        auto add_bias = [n](float* y, const std::vector<float>& b, int64_t stride, int64_t off, int64_t len) {
            if (b.empty()) return;
            for (int64_t t = 0; t < n; ++t)
                for (int64_t i = 0; i < len; ++i) y[t * stride + i] += b[off + i];
        };
        if (!L.wqkv.present()) {
            ops_.matmul(L.wq, h_.data(), q_.data(), n);
            ops_.matmul(L.wk, h_.data(), k_.data(), n);
            ops_.matmul(L.wv, h_.data(), v_.data(), n);
            add_bias(q_.data(), L.bq, d, 0, d);
            add_bias(k_.data(), L.bk, kv_dim, 0, kv_dim);
            add_bias(v_.data(), L.bv, kv_dim, 0, kv_dim);
            return;
        }
        ops_.matmul(L.wqkv, h_.data(), qkv_.data(), n);
        add_bias(qkv_.data(), L.bqkv, qkv_dim, 0, qkv_dim);
        for (int64_t t = 0; t < n; ++t) {
            const float* row = qkv_.data() + t * qkv_dim;
            std::copy_n(row, d, q_.data() + t * d);
            std::copy_n(row + d, kv_dim, k_.data() + t * kv_dim);
            std::copy_n(row + d + kv_dim, kv_dim, v_.data() + t * kv_dim);
        }
    }

    Phi3Params p_;
    ops::Weight tok_embd_, output_;
    std::vector<float> output_norm_;             // [n_embd]
    std::vector<float> rope_long_, rope_short_;  // [n_rot/2] frequency divisors, or empty
    std::vector<Phi3Layer> layers_;

    // Scratch, grown to the largest batch seen and reused (the decode step allocates nothing).
    std::vector<float> x_;           // [n][n_embd] residual stream
    std::vector<float> h_;           // [n][max(n_embd, n_ff)] normed block input / FFN product
    std::vector<float> qkv_;         // [n][n_embd + 2 kv_dim] fused projection
    std::vector<float> q_, k_, v_;   // [n][n_embd], [n][kv_dim] x2
    std::vector<float> attn_;        // [n][n_embd]
    std::vector<float> ff_;          // [n][2 n_ff] gate | up
    std::vector<float> proj_;        // [n][n_embd] block output
    std::vector<int32_t> kv_end_;    // [n] visible positions per token
    std::vector<const int32_t*> tables_;  // [n] block table per token
};

}  // namespace

Result<std::unique_ptr<Model>> load_phi3(std::shared_ptr<const gguf::GgufFile> file, const LoadOptions& opts) {
    Hparams hp;
    hp.arch = "phi3";
    ArchKeys k(file->meta, hp.arch);
    HEARTH_ASSIGN(Phi3Params p, read_params(k, hp));
    HEARTH_TRY(read_vocab_size(*file, hp));
    auto m = std::make_unique<Phi3>(file, hp, p, opts.n_threads);
    HEARTH_TRY(m->load_weights());
    return std::unique_ptr<Model>(std::move(m));
}

}  // namespace hearth::model
