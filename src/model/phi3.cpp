// phi3: Phi-3 / Phi-3.5-mini. A pre-norm llama-like decoder with fused projections:
// attn_qkv rows are [q | k | v] and ffn_up rows are [gate | up] (silu(gate) * up). RoPE rotates
// halves (neox) with LongRoPE frequency factors (rope_factors_short, or rope_factors_long when the
// context exceeds the original one) and cos/sin scaled by rope.scaling.attn_factor (hparams.cpp).
// attention.sliding_window is read but, as in llama.cpp, not applied (Phi SWA is disabled there).
#include <algorithm>
#include <cmath>

#include "model/blocks.h"
#include "model/families.h"
#include "model/gpu_recipe.h"

namespace hearth::model {
namespace {

struct Phi3Layer {
    std::vector<float> attn_norm, ffn_norm;  // [n_embd]
    ops::Weight wqkv;                        // [n_embd -> q_dim + 2 kv_dim], or absent
    std::vector<float> bqkv;                 // [q_dim + 2 kv_dim] or empty
    AttnWeights attn;                        // separate projections (used when wqkv is absent) and wo
    ops::Weight ffn_up;                      // [n_embd -> 2 n_ff]: gate rows, then up rows
    ops::Weight ffn_down;                    // [n_ff -> n_embd]
};

Status read_params(const ArchKeys& k, Hparams& hp) {
    HEARTH_TRY(read_common_hparams(k, hp));
    HEARTH_TRY(k.get("attention.layer_norm_rms_epsilon", hp.norm_eps));
    if (hp.head_dim_k != hp.head_dim_v || (int64_t)hp.n_head * hp.head_dim_k != hp.n_embd)
        return error(StatusCode::corrupt, strformat("phi3 needs n_head * head_dim == n_embd and equal k/v head sizes "
                                                    "(%d x %d/%d, n_embd %lld)", hp.n_head, hp.head_dim_k,
                                                    hp.head_dim_v, (long long)hp.n_embd));
    if (hp.n_ff <= 0) return error(StatusCode::corrupt, k.key("feed_forward_length") + ": missing or zero");
    if (hp.n_expert > 0) return error(StatusCode::unsupported, "phi3 with experts (PhiMoE) is not supported");
    hp.rope.neox = true;
    return {};
}

class Phi3 : public DecoderBase {
public:
    using DecoderBase::DecoderBase;

    Status load_weights() {
        const Hparams& hp = hp_;
        WeightLoader w(*file_, lora_.get());
        const int64_t d = hp.n_embd, kv_dim = (int64_t)hp.n_head_kv * hp.head_dim_k;
        HEARTH_TRY(load_embeddings(w));
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
                HEARTH_TRY(w.matrix(name("attn_output"), {d, d}, L.attn.wo));
            } else {
                HEARTH_TRY(blocks::load_attention(w, hp, l, AttnLoad{}, L.attn));
            }
            HEARTH_TRY(w.vec(name("ffn_norm"), d, L.ffn_norm));
            HEARTH_TRY(w.matrix(name("ffn_up"), {d, 2 * hp.n_ff}, L.ffn_up));
            HEARTH_TRY(w.matrix(name("ffn_down"), {hp.n_ff, d}, L.ffn_down));
        }
        return {};
    }

    Status run_forward(const Batch& batch, KvCache& kv, ForwardOutput& out) override {
        HEARTH_TRY(begin(batch, kv));
        const Hparams& hp = hp_;
        const int64_t n = batch.n_tokens(), d = hp.n_embd, n_ff = hp.n_ff;
        const int64_t kv_dim = (int64_t)hp.n_head_kv * hp.head_dim_k, qkv_dim = d + 2 * kv_dim;
        grow(h_, n * std::max(d, n_ff)), grow(q_, n * d), grow(k_, n * kv_dim), grow(v_, n * kv_dim);
        grow(qkv_, n * qkv_dim), grow(attn_, n * d), grow(ff_, n * 2 * n_ff);
        // llama.cpp picks the factors by the per-sequence context size; the closest thing a
        // forward pass sees is the KV pool's capacity (one Session = one sequence's context).
        const int64_t n_ctx = (int64_t)kv.n_blocks() * kv.block_size();
        const std::vector<float>& factors = n_ctx > hp.rope.n_ctx_orig ? rope_long_ : rope_short_;
        ops::RopeConfig rc = hp.rope;
        rc.freq_factors = factors.empty() ? nullptr : factors.data();
        ops::AttentionParams ap;
        ap.n_head = hp.n_head;
        ap.n_head_kv = hp.n_head_kv;
        ap.head_dim_k = ap.head_dim_v = hp.head_dim_k;
        ap.scale = 1.0f;  // q is scaled by 1/sqrt(head_dim) after RoPE, as llama.cpp does
        const float q_scale = 1.0f / std::sqrt((float)hp.head_dim_k);

        for (int l = 0; l < hp.n_layer; ++l) {
            const Phi3Layer& L = layers_[l];
            ops_.rms_norm(x_.data(), L.attn_norm.data(), h_.data(), d, n, hp.norm_eps);
            project_qkv(L, n);
            ops_.rope(q_.data(), batch.positions.data(), n, hp.n_head, hp.head_dim_k, rc);
            ops_.rope(k_.data(), batch.positions.data(), n, hp.n_head_kv, hp.head_dim_k, rc);
            for (int64_t i = 0; i < n * d; ++i) q_[i] *= q_scale;
            blocks::write_kv(ops_, kv, l, batch, k_.data(), kv_dim, v_.data(), kv_dim);
            ops_.attention(q_.data(), kv.view(l), idx_.tables.data(), batch.positions.data(), idx_.kv_end.data(), n,
                           ap, attn_.data());
            ops_.matmul(L.attn.wo, attn_.data(), proj_.data(), n);
            ops_.add(x_.data(), proj_.data(), n * d);

            ops_.rms_norm(x_.data(), L.ffn_norm.data(), h_.data(), d, n, hp.norm_eps);
            ops_.matmul(L.ffn_up, h_.data(), ff_.data(), n);
            // Row t of ff_ is [gate | up]; the product is packed into h_ as [n][n_ff].
            for (int64_t t = 0; t < n; ++t)
                ops_.swiglu(ff_.data() + t * 2 * n_ff, ff_.data() + t * 2 * n_ff + n_ff, h_.data() + t * n_ff, n_ff);
            ops_.matmul(L.ffn_down, h_.data(), proj_.data(), n);
            ops_.add(x_.data(), proj_.data(), n * d);
        }
        finish(batch, out);
        return {};
    }

private:
    // h_ -> q_ [n][n_embd], k_ and v_ [n][kv_dim], biases added.
    void project_qkv(const Phi3Layer& L, int64_t n) {
        if (!L.wqkv.present()) return blocks::project_qkv(ops_, L.attn, h_.data(), q_.data(), k_.data(), v_.data(), n);
        const int64_t d = hp_.n_embd, kv_dim = (int64_t)hp_.n_head_kv * hp_.head_dim_k, qkv_dim = d + 2 * kv_dim;
        blocks::linear(ops_, L.wqkv, L.bqkv, h_.data(), qkv_.data(), n);
        for (int64_t t = 0; t < n; ++t) {
            const float* row = qkv_.data() + t * qkv_dim;
            std::copy_n(row, d, q_.data() + t * d);
            std::copy_n(row + d, kv_dim, k_.data() + t * kv_dim);
            std::copy_n(row + d + kv_dim, kv_dim, v_.data() + t * kv_dim);
        }
    }

    std::vector<float> rope_long_, rope_short_;  // [n_rot/2] frequency divisors, or empty
    std::vector<Phi3Layer> layers_;

    // Scratch, grown to the largest batch seen and reused; h_ holds [n][max(n_embd, n_ff)].
    std::vector<float> qkv_;         // [n][n_embd + 2 kv_dim] fused projection
    std::vector<float> q_, k_, v_;   // [n][n_embd], [n][kv_dim] x2
    std::vector<float> attn_;        // [n][n_embd]
    std::vector<float> ff_;          // [n][2 n_ff] gate | up
};

}  // namespace

Result<GpuRecipe> phi3_gpu_recipe(const gguf::GgufFile& file, const LoadOptions& opts) {
    GpuRecipe r;
    r.hp.arch = "phi3";
    const ArchKeys keys(file.meta, r.hp.arch);
    HEARTH_TRY(read_params(keys, r.hp));
    HEARTH_TRY(read_decoder_pooling(keys, opts, r.hp));
    HEARTH_TRY(read_vocab_size(file, r.hp));
    r.attn = AttnLoad{};  // attn_qkv (with its optional bias) or separate projections
    r.fused_up = true;
    r.long_rope = true;
    r.layers.resize(r.hp.n_layer);
    for (GpuLayerRecipe& l : r.layers) l.rope_cfg = r.hp.rope;
    return r;
}

Result<std::unique_ptr<Model>> load_phi3(std::shared_ptr<const gguf::GgufFile> file, const LoadOptions& opts) {
    Hparams hp;
    hp.arch = "phi3";
    const ArchKeys keys(file->meta, hp.arch);
    HEARTH_TRY(read_params(keys, hp));
    HEARTH_TRY(read_decoder_pooling(keys, opts, hp));
    HEARTH_TRY(read_vocab_size(*file, hp));
    auto m = std::make_unique<Phi3>(file, hp, opts.n_threads);
    HEARTH_TRY(m->open_adapters(opts));
    HEARTH_TRY(m->load_weights());
    return std::unique_ptr<Model>(std::move(m));
}

}  // namespace hearth::model
