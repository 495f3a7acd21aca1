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
//
// Longer than a family file should be (~450 lines) because two reusable blocks live here until
// model/blocks.* can take them: sigmoid/softmax expert routing with selection bias and expert
// groups (ffn_moe), and the YaRN/mscale parameters that read_common_hparams rejects.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "model/families.h"

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
    int n_groups = 0, n_group_used = 0;  // expert groups (0 or 1: no group selection)
    bool gating_sigmoid = false;         // else softmax
    float w_scale = 0.0f;                // 0 or 1: selected weights are not scaled
    float kq_scale = 1.0f;
    ops::RopeConfig rope;
};

struct Ds2Layer {
    std::vector<float> attn_norm, q_a_norm, kv_a_norm, ffn_norm, exp_probs_b;  // exp_probs_b: [n_expert] or empty
    ops::Weight wq_a, wq_b, wq, wkv_a, wk_b, wv_b, wo;  // wk_b: [nope, kv_lora, n_head]; wv_b: [kv_lora, v, n_head]
    ops::Weight ffn_gate, ffn_up, ffn_down;             // dense, or the shared experts of a MoE layer
    ops::Weight router, gate_exps, up_exps, down_exps;  // [n_embd -> n_expert], [n_embd -> n_ff_exp, n_expert] ...
};

class Deepseek2 : public Model {
public:
    Deepseek2(std::shared_ptr<const gguf::GgufFile> file, Hparams hp, Ds2Params p, int n_threads)
        : Model(std::move(file), std::move(hp), n_threads), p_(p) {}

    KvLayout kv_layout() const override {  // one latent row per position, shared by all heads
        KvLayout l;
        l.n_layer = hp_.n_layer;
        l.k_width.assign(hp_.n_layer, p_.n_lora_kv + hp_.n_rot);
        l.v_width.assign(hp_.n_layer, p_.n_lora_kv);
        return l;
    }

    Status load_weights() {
        const Hparams& hp = hp_;
        const int64_t d = hp.n_embd, nh = hp.n_head, q_dim = nh * p_.n_embd_k_mla;
        WeightLoader w(*file_);
        HEARTH_TRY(w.matrix("token_embd.weight", {d, hp.n_vocab}, tok_embd_));
        HEARTH_TRY(w.vec("output_norm.weight", d, output_norm_));
        HEARTH_TRY(w.matrix("output.weight", {d, hp.n_vocab}, output_, /*required=*/false));
        if (!output_.present()) output_ = tok_embd_;
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
                HEARTH_TRY(w.matrix(name("ffn_gate"), {d, hp.n_ff}, L.ffn_gate));
                HEARTH_TRY(w.matrix(name("ffn_up"), {d, hp.n_ff}, L.ffn_up));
                HEARTH_TRY(w.matrix(name("ffn_down"), {hp.n_ff, d}, L.ffn_down));
                continue;
            }
            const int64_t n_exp = hp.n_expert, ff = hp.n_ff_exp, ff_sh = ff * p_.n_expert_shared;
            HEARTH_TRY(w.matrix(name("ffn_gate_inp"), {d, n_exp}, L.router));
            HEARTH_TRY(w.vec(name("exp_probs_b", "bias"), n_exp, L.exp_probs_b, /*required=*/false));
            if (!w.has(name("ffn_gate_exps")) && w.has(name("ffn_gate_up_exps")))
                return error(StatusCode::unsupported,
                             name("ffn_gate_up_exps") + ": fused expert gate/up is not supported yet");
            HEARTH_TRY(w.matrix(name("ffn_gate_exps"), {d, ff, n_exp}, L.gate_exps));
            HEARTH_TRY(w.matrix(name("ffn_up_exps"), {d, ff, n_exp}, L.up_exps));
            HEARTH_TRY(w.matrix(name("ffn_down_exps"), {ff, d, n_exp}, L.down_exps));
            if (ff_sh > 0) {
                HEARTH_TRY(w.matrix(name("ffn_gate_shexp"), {d, ff_sh}, L.ffn_gate));
                HEARTH_TRY(w.matrix(name("ffn_up_shexp"), {d, ff_sh}, L.ffn_up));
                HEARTH_TRY(w.matrix(name("ffn_down_shexp"), {ff_sh, d}, L.ffn_down));
            }
        }
        return {};
    }

    Status forward(const Batch& batch, KvCache& kv, ForwardOutput& out) override {
        HEARTH_TRY(validate(batch, kv));
        const Hparams& hp = hp_;
        const int64_t n = batch.n_tokens(), d = hp.n_embd, nh = hp.n_head;
        const int64_t lat = p_.n_lora_kv, rot = hp.n_rot, kw = lat + rot;
        const int64_t ff = std::max({hp.n_ff, hp.n_ff_exp * std::max(p_.n_expert_shared, 1), hp.n_ff_exp});
        for (auto [v, size] : {std::pair{&x_, n * d}, {&h_, n * d}, {&proj_, n * d}, {&qa_, n * p_.n_lora_q},
                               {&q_, n * nh * p_.n_embd_k_mla}, {&kva_, n * kw}, {&qpe_, n * nh * rot},
                               {&kpe_, n * rot}, {&qlat_, n * nh * kw}, {&att_, n * nh * lat},
                               {&attv_, n * nh * p_.n_embd_v_mla}, {&head_in_, n * std::max<int64_t>(lat, p_.n_nope)},
                               {&head_out_, n * std::max<int64_t>(lat, p_.n_embd_v_mla)}, {&gate_, n * ff},
                               {&up_, n * ff}, {&router_, n * hp.n_expert}})
            grow_to(*v, size);
        kv_end_.resize(n);
        tables_.resize(n);
        for (int64_t t = 0; t < n; ++t) {
            kv_end_[t] = batch.positions[t] + 1;
            tables_[t] = batch.block_tables[batch.seq_ids[t]].data();
        }
        ops::AttentionParams ap;
        ap.n_head = (int)nh;
        ap.n_head_kv = 1;
        ap.head_dim_k = (int)kw;
        ap.head_dim_v = (int)lat;
        ap.scale = p_.kq_scale;

        ops_.get_rows(tok_embd_, batch.tokens.data(), n, x_.data());
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
            ops_.rope(qpe_.data(), batch.positions.data(), n, (int)nh, (int)rot, p_.rope);
            ops_.rope(kpe_.data(), batch.positions.data(), n, 1, (int)rot, p_.rope);
            for (int64_t t = 0; t < n; ++t)  // the norm covers the latent part only, not k_pe
                ops_.rms_norm(kva_.data() + t * kw, L.kv_a_norm.data(), kva_.data() + t * kw, lat, 1, hp.norm_eps);
            // Query per head in latent space: [q_nope · k_b | roped q_pe].
            per_head_matmul(L.wk_b, q_.data(), p_.n_embd_k_mla, qlat_.data(), kw, n);
            for (int64_t i = 0; i < n * nh; ++i) std::copy_n(qpe_.data() + i * rot, rot, qlat_.data() + i * kw + lat);
            for (int64_t t = 0; t < n; ++t) {
                const int32_t pos = batch.positions[t];
                const int32_t blk = tables_[t][pos / kv.block_size()];
                float* krow = kv.k_row(l, blk, pos % kv.block_size());
                std::copy_n(kva_.data() + t * kw, lat, krow);
                std::copy_n(kpe_.data() + t * rot, rot, krow + lat);
                std::copy_n(kva_.data() + t * kw, lat, kv.v_row(l, blk, pos % kv.block_size()));
            }
            ops_.attention(qlat_.data(), kv.view(l), tables_.data(), batch.positions.data(), kv_end_.data(), n, ap,
                           att_.data());
            per_head_matmul(L.wv_b, att_.data(), lat, attv_.data(), p_.n_embd_v_mla, n);  // decompress V per head
            ops_.matmul(L.wo, attv_.data(), proj_.data(), n);
            ops_.add(x_.data(), proj_.data(), n * d);
            ops_.rms_norm(x_.data(), L.ffn_norm.data(), h_.data(), d, n, hp.norm_eps);
            if (l < p_.n_dense_lead) {
                swiglu_ffn(L.ffn_gate, L.ffn_up, L.ffn_down, h_.data(), proj_.data(), n);
            } else {
                ffn_moe(L, n);  // proj_ = routed experts
                if (L.ffn_gate.present()) {
                    swiglu_ffn(L.ffn_gate, L.ffn_up, L.ffn_down, h_.data(), h_.data(), n);  // h_ is free after this
                    ops_.add(proj_.data(), h_.data(), n * d);
                }
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

    // y = down(silu(gate x) * up x); y may alias x (x is consumed before y is written).
    void swiglu_ffn(const ops::Weight& g, const ops::Weight& u, const ops::Weight& dn, const float* x, float* y,
                    int64_t n) {
        ops_.matmul(g, x, gate_.data(), n);
        ops_.matmul(u, x, up_.data(), n);
        ops_.swiglu(gate_.data(), up_.data(), gate_.data(), n * g.n_out());
        ops_.matmul(dn, gate_.data(), y, n);
    }

    // Routing as llama.cpp's build_moe_ffn: probs = sigmoid (or softmax) of the router logits;
    // selection on probs + exp_probs_b, restricted to the n_group_used groups with the best sum
    // of their 2 best scores; weights = unbiased probs of the chosen, normalized, scaled.
    void ffn_moe(const Ds2Layer& L, int64_t n) {
        const Hparams& hp = hp_;
        const int n_exp = hp.n_expert, k = hp.n_expert_used, per_group = p_.n_groups > 1 ? n_exp / p_.n_groups : n_exp;
        ops_.matmul(L.router, h_.data(), router_.data(), n);
        chosen_.resize((size_t)n * k);
        weight_.resize((size_t)n * k);
        sel_.resize(n_exp);
        order_.resize(n_exp);
        group_score_.resize(std::max(p_.n_groups, 1));
        for (int64_t t = 0; t < n; ++t) {
            float* p = router_.data() + t * n_exp;
            if (p_.gating_sigmoid) {
                for (int e = 0; e < n_exp; ++e) p[e] = 1.0f / (1.0f + std::exp(-p[e]));
            } else {
                const float mx = *std::max_element(p, p + n_exp);
                float sum = 0.0f;
                for (int e = 0; e < n_exp; ++e) sum += (p[e] = std::exp(p[e] - mx));
                for (int e = 0; e < n_exp; ++e) p[e] /= sum;
            }
            for (int e = 0; e < n_exp; ++e) sel_[e] = p[e] + (L.exp_probs_b.empty() ? 0.0f : L.exp_probs_b[e]);
            if (p_.n_groups > 1) {
                for (int g = 0; g < p_.n_groups; ++g) {
                    top_k(sel_.data() + g * per_group, per_group, 2, order_.data());
                    group_score_[g] = sel_[g * per_group + order_[0]] + sel_[g * per_group + order_[1]];
                }
                top_k(group_score_.data(), p_.n_groups, p_.n_group_used, order_.data());
                for (int g = p_.n_group_used; g < p_.n_groups; ++g)
                    std::fill_n(sel_.begin() + order_[g] * per_group, per_group, -INFINITY);
            }
            top_k(sel_.data(), n_exp, k, order_.data());
            float wsum = 0.0f;
            for (int j = 0; j < k; ++j) wsum += p[order_[j]];
            wsum = std::max(wsum, 6.103515625e-5f);  // llama.cpp clamps to the smallest normal F16
            for (int j = 0; j < k; ++j) {
                float w = p[order_[j]];
                if (hp.expert_weights_norm) w /= wsum;
                if (p_.w_scale != 0.0f && p_.w_scale != 1.0f) w *= p_.w_scale;
                chosen_[t * k + j] = order_[j];
                weight_[t * k + j] = w;
            }
        }
        // Each expert runs once over the tokens routed to it; outputs land in y_[t][j] and are
        // summed per token in selection order, as llama.cpp adds them.
        const int64_t d = hp.n_embd;
        grow_to(y_, n * k * d);
        for (int e = 0; e < n_exp; ++e) {
            rows_.clear();
            for (int64_t i = 0; i < n * k; ++i)
                if (chosen_[i] == e) rows_.push_back(i);
            if (rows_.empty()) continue;
            const int64_t m = (int64_t)rows_.size();
            grow_to(xin_, m * d);
            grow_to(yout_, m * d);
            for (int64_t i = 0; i < m; ++i) std::copy_n(h_.data() + rows_[i] / k * d, d, xin_.data() + i * d);
            swiglu_ffn(L.gate_exps.slice(e), L.up_exps.slice(e), L.down_exps.slice(e), xin_.data(), yout_.data(), m);
            for (int64_t i = 0; i < m; ++i) std::copy_n(yout_.data() + i * d, d, y_.data() + rows_[i] * d);
        }
        for (int64_t t = 0; t < n; ++t) {
            float* dst = proj_.data() + t * d;
            for (int64_t i = 0; i < d; ++i) dst[i] = weight_[t * k] * y_[(t * k) * d + i];
            for (int j = 1; j < k; ++j)
                for (int64_t i = 0; i < d; ++i) dst[i] += weight_[t * k + j] * y_[(t * k + j) * d + i];
        }
    }

    // Indices of the k largest of s[0, n) into idx[0, k), ties to the lower index; idx holds n.
    static void top_k(const float* s, int n, int k, int32_t* idx) {
        std::iota(idx, idx + n, 0);
        std::partial_sort(idx, idx + k, idx + n,
                          [s](int32_t a, int32_t b) { return s[a] > s[b] || (s[a] == s[b] && a < b); });
    }

    static void grow_to(std::vector<float>& v, int64_t size) { if ((int64_t)v.size() < size) v.resize(size); }

    Ds2Params p_;
    ops::Weight tok_embd_, output_;
    std::vector<float> output_norm_;
    std::vector<Ds2Layer> layers_;
    // Scratch, grown to the largest batch seen and reused. n = batch tokens, nh = heads.
    std::vector<float> x_, h_, proj_;       // [n][n_embd] residual, block input, block output
    std::vector<float> qa_, q_;             // [n][n_lora_q], [n][nh][nope + rope]
    std::vector<float> kva_;                // [n][kv_lora | rope] compressed kv, then normed in place
    std::vector<float> qpe_, kpe_;          // [n][nh][rope], [n][rope]
    std::vector<float> qlat_;               // [n][nh][kv_lora + rope] query in latent space
    std::vector<float> att_, attv_;         // [n][nh][kv_lora] latent attention output, [n][nh][v] decompressed
    std::vector<float> head_in_, head_out_; // [n][max(nope, kv_lora)], [n][max(kv_lora, v)] one head at a time
    std::vector<float> gate_, up_, router_; // [n][ff], [n][ff], [n][n_expert]
    std::vector<float> sel_, group_score_, weight_, y_, xin_, yout_;  // routing and expert outputs
    std::vector<int32_t> order_, chosen_;   // [n_expert], [n][n_expert_used]
    std::vector<int64_t> rows_;             // (token * n_expert_used + slot) routed to the current expert
    std::vector<int32_t> kv_end_;
    std::vector<const int32_t*> tables_;
};

}  // namespace

// Every key llama.cpp reads for deepseek2, with its defaults. read_common_hparams is not used:
// it rejects YaRN, and key_length/value_length here describe the latent cache, not the heads.
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
    HEARTH_TRY(k.get_or("expert_group_count", p.n_groups, 0));
    HEARTH_TRY(k.get_or("expert_group_used_count", p.n_group_used, 0));
    HEARTH_TRY(k.get_or("expert_shared_count", p.n_expert_shared, 0));
    HEARTH_TRY(k.get_or("expert_feed_forward_length", hp.n_ff_exp, 0));
    HEARTH_TRY(k.get_or("expert_weights_scale", p.w_scale, 0.0f));
    HEARTH_TRY(k.get_or("expert_weights_norm", hp.expert_weights_norm, false));
    int gating = 0;
    HEARTH_TRY(k.get_or("expert_gating_func", gating, 0));
    if (gating == 0)  // absent: softmax (DeepSeek V2/V2.5), except GLM 4.7 Lite, as llama.cpp decides
        gating = (hp.n_layer == 47 || hp.n_layer == 48) && hp.n_vocab == 154880 ? 2 : 1;
    if (gating != 1 && gating != 2)
        return error(StatusCode::unsupported, strformat("%s %d is not supported (1 softmax, 2 sigmoid)",
                                                        k.key("expert_gating_func").c_str(), gating));
    p.gating_sigmoid = gating == 2;
    if (p.n_dense_lead > hp.n_layer) return bad("leading_dense_block_count", "exceeds block_count");
    if (p.n_dense_lead > 0 && (hp.n_ff < 1 || hp.n_ff > (1 << 24))) return bad("feed_forward_length", "out of range");
    if (p.n_dense_lead < hp.n_layer) {
        if (hp.n_expert < 1 || hp.n_expert > 1024) return bad("expert_count", "must be in [1, 1024] for MoE layers");
        if (hp.n_expert_used < 1 || hp.n_expert_used > hp.n_expert) return bad("expert_used_count", "out of range");
        if (hp.n_ff_exp < 1 || hp.n_ff_exp > (1 << 24)) return bad("expert_feed_forward_length", "out of range");
        if (p.n_expert_shared > 64) return bad("expert_shared_count", "out of range");
        if (p.n_groups > 1) {
            const int per_group = hp.n_expert / p.n_groups;
            if (hp.n_expert % p.n_groups || per_group < 2)
                return bad("expert_group_count", "must split the experts into groups of >= 2");
            if (p.n_group_used < 1 || p.n_group_used >= p.n_groups || hp.n_expert_used > p.n_group_used * per_group)
                return bad("expert_group_used_count", "out of range");
        }
    }

    // RoPE (adjacent pairs on the rope part only) and the attention scale, as llama.cpp derives them.
    HEARTH_TRY(k.get_or("rope.freq_base", hp.rope_freq_base, 10000.0f));
    float factor = 0.0f, rope_attn_factor = 1.0f, log_mul = 0.0f;
    HEARTH_TRY(k.get_or("rope.scaling.factor", factor, 0.0f));
    HEARTH_TRY(k.get_or("rope.scaling.attn_factor", rope_attn_factor, 1.0f));
    HEARTH_TRY(k.get_or("rope.scaling.yarn_log_multiplier", log_mul, 0.0f));
    log_mul /= 0.1f;  // the converter stores 0.1 * mscale_all_dim
    HEARTH_TRY(k.get_or("rope.scaling.original_context_length", hp.n_ctx_orig,
                        (int)std::min<int64_t>(hp.n_ctx_train, INT32_MAX)));
    auto type = file.meta.get_string_or(k.key("rope.scaling.type"), "linear");
    if (!type.ok()) return type.status();
    if (type.value() != "none" && type.value() != "linear" && type.value() != "yarn")
        return error(StatusCode::unsupported, "deepseek2 rope scaling type " + type.value() + " is not supported");
    if (!(factor >= 0.0f && factor < 1e6f)) return bad("rope.scaling.factor", "out of range");
    if (!(hp.rope_freq_base > 0.0f)) return bad("rope.freq_base", "must be positive");
    hp.rope_freq_scale = factor == 0.0f || type.value() == "none" ? 1.0f : 1.0f / factor;
    hp.rope_neox = false;
    ops::RopeConfig& rc = p.rope;
    rc.n_rot = hp.n_rot;
    rc.freq_base = hp.rope_freq_base;
    rc.freq_scale = hp.rope_freq_scale;
    rc.n_ctx_orig = hp.n_ctx_orig;
    rc.ext_factor = type.value() == "yarn" ? 1.0f : 0.0f;
    float attn_factor = 1.0f;
    const float scale = 1.0f / hp.rope_freq_scale;
    auto get_mscale = [](float s, float m) { return s <= 1.0f ? 1.0f : 0.1f * m * std::log(s) + 1.0f; };
    if (rc.ext_factor != 0.0f) {
        // With a log multiplier llama.cpp's ratio get_mscale(mscale) / get_mscale(mscale_all_dim)
        // is 1 for deepseek2 (it sets mscale = mscale_all_dim); without one it is get_mscale(1).
        attn_factor = log_mul != 0.0f ? 1.0f : get_mscale(scale, 1.0f);
        attn_factor *= 1.0f / (1.0f + 0.1f * std::log(scale));  // the rope kernel multiplies it back
    }
    rc.attn_factor = attn_factor * rope_attn_factor;
    const float mscale = rc.attn_factor * (1.0f + 0.1f * std::log(scale)) * (1.0f + 0.1f * log_mul * std::log(scale));
    p.kq_scale = mscale * mscale / std::sqrt((float)p.n_embd_k_mla);
    return {};
}

Result<std::unique_ptr<Model>> load_deepseek2(std::shared_ptr<const gguf::GgufFile> file, const LoadOptions& opts) {
    Hparams hp;
    hp.arch = "deepseek2";
    Ds2Params p;
    HEARTH_TRY(read_params(*file, hp, p));
    auto m = std::make_unique<Deepseek2>(file, hp, p, opts.n_threads);
    HEARTH_TRY(m->load_weights());
    return std::unique_ptr<Model>(std::move(m));
}

}  // namespace hearth::model
