// deepseek2 (DeepSeek-V2/V3 style): multi-head latent attention (MLA) and sigmoid-routed
// grouped experts with shared experts after `leading_dense_block_count` dense layers.
//
// Attention runs in the absorbed form llama.cpp uses: the KV cache holds one shared latent
// row per position, K = [rms_norm(kv_lora) | roped k_pe] and V = the normed kv_lora part
// (GQA with a single kv head). Each head's q_nope is multiplied into the latent space by
// attn_k_b, and the attention output is decompressed per head by attn_v_b. Caching the latent
// is what the metadata describes (key_length = kv_lora + rope, value_length = kv_lora), needs
// no shared change (KvLayout widths) and reproduces llama.cpp's rounding: the same
// activations are converted to F16/Q8_0 before the same matmuls.
// Expert routing (sigmoid/softmax, exp_probs_b, groups) and the shared experts are
// model/blocks.*'s MoeBlock; YaRN comes from read_rope_hparams.
#include <algorithm>
#include <cmath>

#include "model/blocks.h"
#include "model/families.h"
#include "model/gpu_recipe.h"

namespace hearth::model {
namespace {

struct Ds2Params {
    int n_lora_q = 0;      // 0: attn_q projects directly (the "Lite" models)
    int n_lora_kv = 0;     // latent width
    int n_embd_k_mla = 0;  // per-head q/k size = nope + rope
    int n_embd_v_mla = 0;  // per-head value size after decompression
    int n_nope = 0;        // n_embd_k_mla - n_rot
    int n_dense_lead = 0;  // layers [0, n_dense_lead) have a dense FFN
    int n_expert_shared = 0;
    MoeSpec moe;           // sigmoid or softmax gating, groups, normalization, scale
    float kq_scale = 1.0f;
};

struct Ds2Layer {
    std::vector<float> attn_norm, q_a_norm, kv_a_norm, ffn_norm;
    ops::Weight wq_a, wq_b, wq, wkv_a, wk_b, wv_b, wo;  // wk_b: [nope, kv_lora, n_head]; wv_b: [kv_lora, v, n_head]
    FfnWeights ffn;                                     // dense layers
    MoeWeights moe;                                     // MoE layers: exp_probs_b and shared experts
};

class Deepseek2 : public DecoderBase {
public:
    Deepseek2(std::shared_ptr<const gguf::GgufFile> file, Hparams hp, Ds2Params p, int n_threads)
        : DecoderBase(std::move(file), std::move(hp), n_threads), p_(p) {}

    KvLayout kv_layout() const override {  // one latent row per position, shared by all heads
        KvLayout l;
        l.n_layer = hp_.n_layer;
        l.k_width.assign(hp_.n_layer, p_.n_lora_kv + hp_.n_rot);
        l.v_width.assign(hp_.n_layer, p_.n_lora_kv);
        l.k_head_dim = l.k_width;  // a single kv head
        l.v_head_dim = l.v_width;
        return l;
    }

    Status load_weights() {
        const Hparams& hp = hp_;
        const int64_t d = hp.n_embd, nh = hp.n_head, q_dim = nh * p_.n_embd_k_mla;
        WeightLoader w(*file_, lora_.get());
        HEARTH_TRY(load_embeddings(w));
        layers_.resize(hp.n_layer);
        for (int l = 0; l < hp.n_layer; ++l) {
            Ds2Layer& L = layers_[l];
            auto name = [l](const char* n, const char* s = "weight") { return layer_tensor(l, n, s); };
            if (w.has(name("attn_kv_b")) && !w.has(name("attn_k_b")))
                return error(StatusCode::unsupported, name("attn_kv_b") + ": the unsplit (non-MLA) layout of old "
                                                                          "GGUF files is not supported; re-convert");
            HEARTH_TRY(w.vec(name("attn_norm"), d, L.attn_norm));
            if (p_.n_lora_q > 0) {
                HEARTH_TRY(w.vec(name("attn_q_a_norm"), p_.n_lora_q, L.q_a_norm));
                HEARTH_TRY(w.matrix(name("attn_q_a"), {d, p_.n_lora_q}, L.wq_a));
                HEARTH_TRY(w.matrix(name("attn_q_b"), {p_.n_lora_q, q_dim}, L.wq_b));
            } else {
                HEARTH_TRY(w.matrix(name("attn_q"), {d, q_dim}, L.wq));
            }
            HEARTH_TRY(w.vec(name("attn_kv_a_norm"), p_.n_lora_kv, L.kv_a_norm));
            HEARTH_TRY(w.matrix(name("attn_kv_a_mqa"), {d, p_.n_lora_kv + hp.n_rot}, L.wkv_a));
            HEARTH_TRY(w.matrix(name("attn_k_b"), {p_.n_nope, p_.n_lora_kv, nh}, L.wk_b));
            HEARTH_TRY(w.matrix(name("attn_v_b"), {p_.n_lora_kv, p_.n_embd_v_mla, nh}, L.wv_b));
            HEARTH_TRY(w.matrix(name("attn_output"), {nh * p_.n_embd_v_mla, d}, L.wo));
            HEARTH_TRY(w.vec(name("ffn_norm"), d, L.ffn_norm));
            if (l < p_.n_dense_lead) {
                HEARTH_TRY(blocks::load_ffn(w, l, d, hp.n_ff, L.ffn));
                continue;
            }
            if (!w.has(name("ffn_gate_exps")) && w.has(name("ffn_gate_up_exps")))
                return error(StatusCode::unsupported,
                             name("ffn_gate_up_exps") + ": fused expert gate/up is not supported yet");
            HEARTH_TRY(load_moe(w, hp, l, /*expert_biases=*/false, L.moe));
            HEARTH_TRY(w.vec(name("exp_probs_b", "bias"), hp.n_expert, L.moe.probs_b, /*required=*/false));
            if (const int64_t ff_sh = hp.n_ff_exp * p_.n_expert_shared; ff_sh > 0)
                HEARTH_TRY(blocks::load_ffn(w, l, d, ff_sh, L.moe.shared, "ffn_gate_shexp", "ffn_up_shexp",
                                            "ffn_down_shexp"));
        }
        return {};
    }

    Status run_forward(const Batch& batch, KvCache& kv, ForwardOutput& out) override {
        HEARTH_TRY(begin(batch, kv));
        const Hparams& hp = hp_;
        const int64_t n = batch.n_tokens(), d = hp.n_embd, nh = hp.n_head;
        const int64_t lat = p_.n_lora_kv, rot = hp.n_rot, kw = lat + rot;
        for (auto [v, size] : {std::pair{&qa_, n * p_.n_lora_q}, {&q_, n * nh * p_.n_embd_k_mla}, {&kva_, n * kw},
                               {&qpe_, n * nh * rot}, {&kpe_, n * rot}, {&qlat_, n * nh * kw}, {&att_, n * nh * lat},
                               {&attv_, n * nh * p_.n_embd_v_mla}, {&head_in_, n * std::max<int64_t>(lat, p_.n_nope)},
                               {&head_out_, n * std::max<int64_t>(lat, p_.n_embd_v_mla)}})
            grow(*v, size);
        ops::AttentionParams ap;
        ap.n_head = (int)nh;
        ap.n_head_kv = 1;
        ap.head_dim_k = (int)kw;
        ap.head_dim_v = (int)lat;
        ap.scale = p_.kq_scale;

        for (int l = 0; l < hp.n_layer; ++l) {
            const Ds2Layer& L = layers_[l];
            ops_.rms_norm(x_.data(), L.attn_norm.data(), h_.data(), d, n, hp.norm_eps);
            if (L.wq.present()) {
                ops_.matmul(L.wq, h_.data(), q_.data(), n);
            } else {
                ops_.matmul(L.wq_a, h_.data(), qa_.data(), n);
                ops_.rms_norm(qa_.data(), L.q_a_norm.data(), qa_.data(), p_.n_lora_q, n, hp.norm_eps);
                ops_.matmul(L.wq_b, qa_.data(), q_.data(), n);
            }
            ops_.matmul(L.wkv_a, h_.data(), kva_.data(), n);  // [n][lat | rot]
            for (int64_t i = 0; i < n * nh; ++i)
                std::copy_n(q_.data() + i * p_.n_embd_k_mla + p_.n_nope, rot, qpe_.data() + i * rot);
            for (int64_t t = 0; t < n; ++t) std::copy_n(kva_.data() + t * kw + lat, rot, kpe_.data() + t * rot);
            ops_.rope(qpe_.data(), batch.positions.data(), n, (int)nh, (int)rot, hp.rope);
            ops_.rope(kpe_.data(), batch.positions.data(), n, 1, (int)rot, hp.rope);
            for (int64_t t = 0; t < n; ++t) {  // K row = [rms_norm(latent) | roped k_pe]; V row = its latent part
                ops_.rms_norm(kva_.data() + t * kw, L.kv_a_norm.data(), kva_.data() + t * kw, lat, 1, hp.norm_eps);
                std::copy_n(kpe_.data() + t * rot, rot, kva_.data() + t * kw + lat);
            }
            // Query per head in latent space: [q_nope · k_b | roped q_pe].
            per_head_matmul(L.wk_b, q_.data(), p_.n_embd_k_mla, qlat_.data(), kw, n);
            for (int64_t i = 0; i < n * nh; ++i) std::copy_n(qpe_.data() + i * rot, rot, qlat_.data() + i * kw + lat);
            blocks::write_kv(ops_, kv, l, batch, kva_.data(), kw, kva_.data(), kw);
            ops_.attention(qlat_.data(), kv.view(l), idx_.tables.data(), batch.positions.data(), idx_.kv_end.data(), n,
                           ap, att_.data());
            per_head_matmul(L.wv_b, att_.data(), lat, attv_.data(), p_.n_embd_v_mla, n);  // decompress V per head
            ops_.matmul(L.wo, attv_.data(), proj_.data(), n);
            ops_.add(x_.data(), proj_.data(), n * d);
            ops_.rms_norm(x_.data(), L.ffn_norm.data(), h_.data(), d, n, hp.norm_eps);
            if (l < p_.n_dense_lead) blocks::swiglu_ffn(ops_, L.ffn, h_.data(), proj_.data(), n, gate_, up_);
            else moe_.forward(ops_, hp, p_.moe, L.moe, h_.data(), n, proj_.data());
            ops_.add(x_.data(), proj_.data(), n * d);
        }
        finish(batch, out);
        return {};
    }

private:
    // For each head h: out[t][h][0, n_out) = w.slice(h) · in[t][h][0, n_in), the rows of `in`
    // and `out` being in_stride and out_stride floats apart (one head's slice of a wider row).
    void per_head_matmul(const ops::Weight& w, const float* in, int64_t in_stride, float* out, int64_t out_stride,
                         int64_t n) {
        const int64_t nh = hp_.n_head, n_in = w.n_in(), n_out = w.n_out();
        for (int64_t hd = 0; hd < nh; ++hd) {
            for (int64_t t = 0; t < n; ++t)
                std::copy_n(in + (t * nh + hd) * in_stride, n_in, head_in_.data() + t * n_in);
            ops_.matmul(w.slice(hd), head_in_.data(), head_out_.data(), n);
            for (int64_t t = 0; t < n; ++t)
                std::copy_n(head_out_.data() + t * n_out, n_out, out + (t * nh + hd) * out_stride);
        }
    }

    Ds2Params p_;
    std::vector<Ds2Layer> layers_;
    MoeBlock moe_;
    // Scratch, grown to the largest batch seen and reused. n = batch tokens, nh = heads.
    std::vector<float> qa_, q_;             // [n][n_lora_q], [n][nh][nope + rope]
    std::vector<float> kva_;                // [n][kv_lora | rope]: compressed kv, then the cache's K rows
    std::vector<float> qpe_, kpe_;          // [n][nh][rope], [n][rope]
    std::vector<float> qlat_;               // [n][nh][kv_lora + rope] query in latent space
    std::vector<float> att_, attv_;         // [n][nh][kv_lora] latent attention output, [n][nh][v] decompressed
    std::vector<float> head_in_, head_out_; // [n][max(nope, kv_lora)], [n][max(kv_lora, v)] one head at a time
    std::vector<float> gate_, up_;          // [n][n_ff] dense FFN
};

}  // namespace

// Every key llama.cpp reads for deepseek2, with its defaults. read_common_hparams is not used:
// key_length/value_length here describe the latent cache, not the heads, and trailing MTP
// blocks leave the trunk; the rope keys go through the shared read_rope_hparams.
static Status read_params(const gguf::GgufFile& file, Hparams& hp, Ds2Params& p) {
    const ArchKeys k(file.meta, hp.arch);
    auto bad = [&k](const char* key, const std::string& why) {
        return error(StatusCode::corrupt, k.key(key) + ": " + why);
    };
    HEARTH_TRY(k.get("embedding_length", hp.n_embd));
    HEARTH_TRY(k.get("block_count", hp.n_layer));
    HEARTH_TRY(k.get("attention.head_count", hp.n_head));
    HEARTH_TRY(k.get("context_length", hp.n_ctx_train));
    HEARTH_TRY(k.get_or("feed_forward_length", hp.n_ff, 0));
    HEARTH_TRY(k.get("attention.layer_norm_rms_epsilon", hp.norm_eps));
    HEARTH_TRY(read_vocab_size(file, hp));
    if (hp.n_embd < 1 || hp.n_embd > (1 << 20)) return bad("embedding_length", "out of range");
    int n_nextn = 0;  // trailing multi-token-prediction blocks (GLM MTP): not part of the trunk, skipped
    HEARTH_TRY(k.get_or("nextn_predict_layers", n_nextn, 0));
    if (n_nextn >= hp.n_layer) return bad("nextn_predict_layers", "leaves no trunk layers");
    hp.n_layer -= n_nextn;
    if (hp.n_layer < 1 || hp.n_layer > 4096) return bad("block_count", "out of range");
    float temp_scale = 0.0f;
    HEARTH_TRY(k.get_or("attention.temperature_scale", temp_scale, 0.0f));
    if (temp_scale != 0.0f)
        return error(StatusCode::unsupported, k.key("attention.temperature_scale") + " is not supported");
    if (hp.n_head < 1 || hp.n_head > 4096) return bad("attention.head_count", "out of range");
    if (!(hp.norm_eps > 0.0f && hp.norm_eps < 1.0f)) return bad("attention.layer_norm_rms_epsilon", "out of range");

    if (!k.has("attention.key_length_mla") || !k.has("attention.value_length_mla"))
        return error(StatusCode::unsupported, "deepseek2 without " + k.key("attention.key_length_mla") +
                                                  " (old non-MLA GGUF layout) is not supported; re-convert the model");
    HEARTH_TRY(k.get("attention.key_length_mla", p.n_embd_k_mla));
    HEARTH_TRY(k.get("attention.value_length_mla", p.n_embd_v_mla));
    HEARTH_TRY(k.get("attention.kv_lora_rank", p.n_lora_kv));
    HEARTH_TRY(k.get_or("attention.q_lora_rank", p.n_lora_q, 0));
    if (p.n_lora_q == 0 && file.find_tensor("blk.0.attn_q_a.weight"))
        return error(StatusCode::not_found,
                     k.key("attention.q_lora_rank") + " is missing or 0 but blk.0.attn_q_a.weight exists");
    HEARTH_TRY(k.get("rope.dimension_count", hp.n_rot));
    p.n_nope = p.n_embd_k_mla - hp.n_rot;
    if (hp.n_rot < 2 || hp.n_rot % 2 || p.n_nope < 1)
        return bad("rope.dimension_count", "must be even and below key_length_mla");
    if (p.n_embd_v_mla < 1 || p.n_embd_v_mla > 65536) return bad("attention.value_length_mla", "out of range");
    if (p.n_lora_kv < 1 || p.n_lora_kv > 65536) return bad("attention.kv_lora_rank", "out of range");
    if (p.n_lora_q > 65536 || p.n_embd_k_mla > 65536) return bad("attention.q_lora_rank", "out of range");
    // The cache holds one latent row (MQA); the file's key/value lengths must describe it.
    hp.n_head_kv = 1;
    HEARTH_TRY(k.get_or("attention.key_length", hp.head_dim_k, p.n_lora_kv + hp.n_rot));
    HEARTH_TRY(k.get_or("attention.value_length", hp.head_dim_v, p.n_lora_kv));
    if (hp.head_dim_k != p.n_lora_kv + hp.n_rot || hp.head_dim_v != p.n_lora_kv)
        return bad("attention.key_length", strformat("key/value length %d/%d, expected kv_lora_rank + rope = %d and "
                                                     "kv_lora_rank = %d", hp.head_dim_k, hp.head_dim_v,
                                                     p.n_lora_kv + hp.n_rot, p.n_lora_kv));

    HEARTH_TRY(k.get_or("leading_dense_block_count", p.n_dense_lead, 0));
    HEARTH_TRY(k.get_or("expert_count", hp.n_expert, 0));
    HEARTH_TRY(k.get_or("expert_used_count", hp.n_expert_used, 0));
    HEARTH_TRY(k.get_or("expert_group_count", p.moe.n_groups, 0));
    HEARTH_TRY(k.get_or("expert_group_used_count", p.moe.n_group_used, 0));
    HEARTH_TRY(k.get_or("expert_shared_count", p.n_expert_shared, 0));
    HEARTH_TRY(k.get_or("expert_feed_forward_length", hp.n_ff_exp, 0));
    HEARTH_TRY(k.get_or("expert_weights_scale", p.moe.scale_w, 0.0f));
    HEARTH_TRY(k.get_or("expert_weights_norm", hp.expert_weights_norm, false));
    int gating = 0;
    HEARTH_TRY(k.get_or("expert_gating_func", gating, 0));
    if (gating == 0)  // absent: softmax (DeepSeek V2/V2.5), except GLM 4.7 Lite, as llama.cpp decides
        gating = (hp.n_layer == 47 || hp.n_layer == 48) && hp.n_vocab == 154880 ? 2 : 1;
    if (gating != 1 && gating != 2)
        return error(StatusCode::unsupported, strformat("%s %d is not supported (1 softmax, 2 sigmoid)",
                                                        k.key("expert_gating_func").c_str(), gating));
    p.moe.gating = gating == 2 ? Gating::sigmoid : Gating::softmax;
    p.moe.norm_w = hp.expert_weights_norm;
    if (p.n_dense_lead > hp.n_layer) return bad("leading_dense_block_count", "exceeds block_count");
    if (p.n_dense_lead > 0 && (hp.n_ff < 1 || hp.n_ff > (1 << 24))) return bad("feed_forward_length", "out of range");
    if (p.n_dense_lead < hp.n_layer) {
        if (hp.n_expert < 1 || hp.n_expert > 1024) return bad("expert_count", "must be in [1, 1024] for MoE layers");
        if (hp.n_expert_used < 1 || hp.n_expert_used > hp.n_expert) return bad("expert_used_count", "out of range");
        if (hp.n_ff_exp < 1 || hp.n_ff_exp > (1 << 24)) return bad("expert_feed_forward_length", "out of range");
        if (p.n_expert_shared > 64) return bad("expert_shared_count", "out of range");
        if (p.moe.n_groups > 1) {
            const int per_group = hp.n_expert / p.moe.n_groups;
            if (hp.n_expert % p.moe.n_groups || per_group < 2)
                return bad("expert_group_count", "must split the experts into groups of >= 2");
            if (p.moe.n_group_used < 1 || p.moe.n_group_used >= p.moe.n_groups || hp.n_expert_used > p.moe.n_group_used * per_group)
                return bad("expert_group_used_count", "out of range");
        }
    }

    // RoPE (adjacent pairs on the rope part only) and the attention scale, as llama.cpp derives them.
    HEARTH_TRY(read_rope_hparams(k, hp));
    hp.rope.neox = false;
    const float scale = 1.0f / hp.rope.freq_scale;
    const float log_mul = hp.rope_yarn_log_mul / 0.1f;  // the converter stores 0.1 * mscale_all_dim
    const float mscale = hp.rope.attn_factor * (1.0f + 0.1f * std::log(scale)) * (1.0f + 0.1f * log_mul * std::log(scale));
    p.kq_scale = mscale * mscale / std::sqrt((float)p.n_embd_k_mla);
    return {};
}

Result<GpuRecipe> deepseek2_gpu_recipe(const gguf::GgufFile& file, const LoadOptions& opts) {
    GpuRecipe r;
    r.hp.arch = "deepseek2";
    Ds2Params p;
    HEARTH_TRY(read_params(file, r.hp, p));
    HEARTH_TRY(read_decoder_pooling(ArchKeys(file.meta, r.hp.arch), opts, r.hp));
    const Hparams& hp = r.hp;
    r.mla = true;
    r.mla_dims = MlaRecipe{p.n_lora_q, p.n_lora_kv, p.n_embd_k_mla, p.n_embd_v_mla, p.n_nope};
    r.attn_scale = p.kq_scale;
    r.moe = p.moe;
    r.probs_bias = true;
    r.shared_expert = p.n_expert_shared > 0;
    r.shared_ff = hp.n_ff_exp * p.n_expert_shared;
    r.layers.resize(hp.n_layer);
    for (int l = 0; l < hp.n_layer; ++l) r.layers[l].rope_cfg = hp.rope, r.layers[l].moe = l >= p.n_dense_lead;
    return r;
}

Result<std::unique_ptr<Model>> load_deepseek2(std::shared_ptr<const gguf::GgufFile> file, const LoadOptions& opts) {
    Hparams hp;
    hp.arch = "deepseek2";
    Ds2Params p;
    HEARTH_TRY(read_params(*file, hp, p));
    HEARTH_TRY(read_decoder_pooling(ArchKeys(file->meta, hp.arch), opts, hp));
    auto m = std::make_unique<Deepseek2>(file, hp, p, opts.n_threads);
    HEARTH_TRY(m->open_adapters(opts));
    HEARTH_TRY(m->load_weights());
    return std::unique_ptr<Model>(std::move(m));
}

}  // namespace hearth::model
