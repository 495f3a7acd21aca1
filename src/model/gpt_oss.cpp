// gpt-oss (OpenAI's open-weight MoE, GGUF arch "gpt-oss"). Pre-norm decoder: GQA attention
// with q/k/v/o biases, per-head attention sinks, NEOX RoPE with YaRN scaling, sliding-window
// attention on every other layer; then a mixture of experts whose router takes the top-k raw
// logits and softmaxes over those k only, with biased experts and the clamped SwiGLU-OAI.
// What llama.cpp hard-codes (and this file mirrors): SWA period 2 when
// attention.sliding_window_pattern is absent, YaRN beta_fast 32 / beta_slow 1, SwiGLU-OAI
// alpha 1.702 and limit 7.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "model/families.h"

namespace hearth::model {
namespace {

constexpr float kOaiAlpha = 1.702f, kOaiLimit = 7.0f;

struct GptOssParams {
    int n_swa = 0;            // window incl. the query: key j visible from query i iff i - j < n_swa
    std::vector<bool> is_swa; // [n_layer]
    ops::RopeConfig rope, rope_swa;  // full-attention and SWA layers (base may differ)
};

struct GptOssLayer {
    std::vector<float> attn_norm, post_norm;  // [n_embd]
    ops::Weight wq, wk, wv, wo;
    std::vector<float> bq, bk, bv, bo;        // [q_dim], [kv_dim] x2, [n_embd]
    std::vector<float> sinks;                 // [n_head]
    ops::Weight router;                       // [n_embd -> n_expert]
    std::vector<float> router_b;              // [n_expert]
    ops::Weight gate_exps, up_exps, down_exps;// [n_embd -> n_ff_exp, n_expert], ..., [n_ff_exp -> n_embd, n_expert]
    std::vector<float> gate_b, up_b, down_b;  // [n_expert][n_ff_exp], [n_expert][n_ff_exp], [n_expert][n_embd]
};

// Reads rope scaling the way llama.cpp derives its context parameters: type (default
// "linear"), factor, original context, rope.scaling.attn_factor; YaRN turns ext_factor on and
// cancels its own magnitude correction so only ggml's 1 + 0.1 ln(factor) remains.
Status read_rope(const ArchKeys& k, const Hparams& hp, GptOssParams& p) {
    auto type = k.meta().get_string_or(k.key("rope.scaling.type"), "linear");
    if (!type.ok()) return type.status();
    float factor = 0.0f, attn_factor = 1.0f, base_swa = hp.rope_freq_base;
    HEARTH_TRY(k.get_or("rope.scaling.factor", factor, 0.0f));
    HEARTH_TRY(k.get_or("rope.scaling.attn_factor", attn_factor, 1.0f));
    HEARTH_TRY(k.get_or("rope.freq_base_swa", base_swa, hp.rope_freq_base));
    if (!(factor >= 0.0f) || !std::isfinite(factor)) return error(StatusCode::corrupt, k.key("rope.scaling.factor") + ": invalid");
    const float scale_train = factor == 0.0f ? 1.0f : 1.0f / factor;
    ops::RopeConfig& r = p.rope;
    r.n_rot = hp.n_rot;
    r.neox = true;
    r.freq_base = hp.rope_freq_base;
    r.n_ctx_orig = hp.n_ctx_orig;
    const std::string& t = type.value();
    if (t == "none") r.freq_scale = 1.0f;
    else if (t == "linear" || t == "yarn") r.freq_scale = scale_train;
    else return error(StatusCode::unsupported, "rope scaling type " + t + " is not supported for gpt-oss");
    r.attn_factor = 1.0f;
    if (t == "yarn") {
        r.ext_factor = 1.0f;
        const float f = 1.0f / r.freq_scale;
        const float mscale = f <= 1.0f ? 1.0f : 1.0f + 0.1f * std::log(f);
        r.attn_factor = mscale / (1.0f + 0.1f * std::log(f));
    }
    r.attn_factor *= attn_factor;
    p.rope_swa = r;
    p.rope_swa.freq_base = base_swa;
    p.rope_swa.freq_scale = scale_train;  // SWA layers keep the trained scale even for "none"
    return {};
}

// Every key except rope.scaling.type, so read_common_hparams does not refuse YaRN.
gguf::Metadata arch_keys_without_scaling_type(const gguf::Metadata& meta, const std::string& arch) {
    gguf::Metadata out;
    for (const auto& [key, v] : meta.entries())
        if (key.rfind(arch + ".", 0) == 0 && key != arch + ".rope.scaling.type") out.set(key, v);
    return out;
}

class GptOss : public Model {
public:
    GptOss(std::shared_ptr<const gguf::GgufFile> file, Hparams hp, GptOssParams p, int n_threads)
        : Model(std::move(file), std::move(hp), n_threads), p_(std::move(p)) {}

    Status load_weights() {
        const Hparams& hp = hp_;
        WeightLoader w(*file_);
        const int64_t q_dim = (int64_t)hp.n_head * hp.head_dim_k, kv_dim = (int64_t)hp.n_head_kv * hp.head_dim_k;
        const int64_t n_exp = hp.n_expert, n_ff = hp.n_ff_exp;
        HEARTH_TRY(w.matrix("token_embd.weight", {hp.n_embd, hp.n_vocab}, tok_embd_));
        HEARTH_TRY(w.vec("output_norm.weight", hp.n_embd, output_norm_));
        HEARTH_TRY(w.matrix("output.weight", {hp.n_embd, hp.n_vocab}, output_));
        layers_.resize(hp.n_layer);
        for (int l = 0; l < hp.n_layer; ++l) {
            GptOssLayer& L = layers_[l];
            auto name = [l](const char* n, const char* s = "weight") { return layer_tensor(l, n, s); };
            if (w.has(name("attn_qkv")))
                return error(StatusCode::unsupported, name("attn_qkv") + ": fused QKV is not supported for gpt-oss");
            HEARTH_TRY(w.vec(name("attn_norm"), hp.n_embd, L.attn_norm));
            HEARTH_TRY(w.vec(name("post_attention_norm"), hp.n_embd, L.post_norm));
            HEARTH_TRY(w.matrix(name("attn_q"), {hp.n_embd, q_dim}, L.wq));
            HEARTH_TRY(w.matrix(name("attn_k"), {hp.n_embd, kv_dim}, L.wk));
            HEARTH_TRY(w.matrix(name("attn_v"), {hp.n_embd, kv_dim}, L.wv));
            HEARTH_TRY(w.matrix(name("attn_output"), {q_dim, hp.n_embd}, L.wo));
            HEARTH_TRY(w.vec(name("attn_q", "bias"), q_dim, L.bq, false));
            HEARTH_TRY(w.vec(name("attn_k", "bias"), kv_dim, L.bk, false));
            HEARTH_TRY(w.vec(name("attn_v", "bias"), kv_dim, L.bv, false));
            HEARTH_TRY(w.vec(name("attn_output", "bias"), hp.n_embd, L.bo));
            HEARTH_TRY(w.vec(name("attn_sinks"), hp.n_head, L.sinks));
            HEARTH_TRY(w.matrix(name("ffn_gate_inp"), {hp.n_embd, n_exp}, L.router));
            HEARTH_TRY(w.vec(name("ffn_gate_inp", "bias"), n_exp, L.router_b));
            HEARTH_TRY(w.matrix(name("ffn_gate_exps"), {hp.n_embd, n_ff, n_exp}, L.gate_exps));
            HEARTH_TRY(w.matrix(name("ffn_up_exps"), {hp.n_embd, n_ff, n_exp}, L.up_exps));
            HEARTH_TRY(w.matrix(name("ffn_down_exps"), {n_ff, hp.n_embd, n_exp}, L.down_exps));
            HEARTH_TRY(matrix_f32(w, name("ffn_gate_exps", "bias"), n_ff, n_exp, L.gate_b));
            HEARTH_TRY(matrix_f32(w, name("ffn_up_exps", "bias"), n_ff, n_exp, L.up_b));
            HEARTH_TRY(matrix_f32(w, name("ffn_down_exps", "bias"), hp.n_embd, n_exp, L.down_b));
        }
        return {};
    }

    Status forward(const Batch& batch, KvCache& kv, ForwardOutput& out) override {
        HEARTH_TRY(validate(batch, kv));
        const Hparams& hp = hp_;
        const int64_t n = batch.n_tokens(), d = hp.n_embd;
        const int64_t q_dim = (int64_t)hp.n_head * hp.head_dim_k, kv_dim = (int64_t)hp.n_head_kv * hp.head_dim_k;
        grow(x_, n * d), grow(h_, n * d), grow(proj_, n * d), grow(q_, n * q_dim), grow(attn_, n * q_dim);
        grow(k_, n * kv_dim), grow(v_, n * kv_dim), grow(router_, n * hp.n_expert);
        kv_end_.resize(n), tables_.resize(n);
        for (int64_t t = 0; t < n; ++t) {
            kv_end_[t] = batch.positions[t] + 1;
            tables_[t] = batch.block_tables[batch.seq_ids[t]].data();
        }
        ops::AttentionParams ap;
        ap.n_head = hp.n_head, ap.n_head_kv = hp.n_head_kv, ap.head_dim_k = ap.head_dim_v = hp.head_dim_k;
        ap.scale = 1.0f / std::sqrt((float)hp.head_dim_k);

        ops_.get_rows(tok_embd_, batch.tokens.data(), n, x_.data());
        for (int l = 0; l < hp.n_layer; ++l) {
            const GptOssLayer& L = layers_[l];
            ops_.rms_norm(x_.data(), L.attn_norm.data(), h_.data(), d, n, hp.norm_eps);
            linear(L.wq, L.bq, h_.data(), q_.data(), n);
            linear(L.wk, L.bk, h_.data(), k_.data(), n);
            linear(L.wv, L.bv, h_.data(), v_.data(), n);
            const ops::RopeConfig& rc = p_.is_swa[l] ? p_.rope_swa : p_.rope;
            ops_.rope(q_.data(), batch.positions.data(), n, hp.n_head, hp.head_dim_k, rc);
            ops_.rope(k_.data(), batch.positions.data(), n, hp.n_head_kv, hp.head_dim_k, rc);
            for (int64_t t = 0; t < n; ++t) {
                const int32_t pos = batch.positions[t], blk = tables_[t][pos / kv.block_size()];
                std::copy_n(k_.data() + t * kv_dim, kv_dim, kv.k_row(l, blk, pos % kv.block_size()));
                std::copy_n(v_.data() + t * kv_dim, kv_dim, kv.v_row(l, blk, pos % kv.block_size()));
            }
            ap.sliding_window = p_.is_swa[l] ? p_.n_swa : 0;
            ap.sinks = L.sinks.data();
            ops_.attention(q_.data(), kv.view(l), tables_.data(), batch.positions.data(), kv_end_.data(), n, ap,
                           attn_.data());
            linear(L.wo, L.bo, attn_.data(), proj_.data(), n);
            ops_.add(x_.data(), proj_.data(), n * d);
            ops_.rms_norm(x_.data(), L.post_norm.data(), h_.data(), d, n, hp.norm_eps);
            moe(L, n);
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
    static void grow(std::vector<float>& v, int64_t size) {
        if ((int64_t)v.size() < size) v.resize(size);
    }

    // A 2-D f32 table (expert biases) of rows x cols, dequantized.
    static Status matrix_f32(WeightLoader& w, const std::string& name, int64_t cols, int64_t rows, std::vector<float>& out) {
        ops::Weight m;
        HEARTH_TRY(w.matrix(name, {cols, rows}, m));
        out.resize(cols * rows);
        for (int64_t r = 0; r < rows; ++r)
            quant::traits(m.type).dequantize_row(m.data + r * m.row_bytes, out.data() + r * cols, cols);
        return {};
    }

    void linear(const ops::Weight& w, const std::vector<float>& b, const float* x, float* y, int64_t n) {
        ops_.matmul(w, x, y, n);
        if (b.empty()) return;
        for (int64_t t = 0; t < n; ++t)
            for (int64_t i = 0; i < w.n_out(); ++i) y[t * w.n_out() + i] += b[i];
    }

    // proj_ = sum over the k selected experts of softmax(selected logits) * expert(h_).
    void moe(const GptOssLayer& L, int64_t n) {
        const int64_t d = hp_.n_embd, n_ff = hp_.n_ff_exp;
        const int n_exp = hp_.n_expert, k = hp_.n_expert_used;
        linear(L.router, L.router_b, h_.data(), router_.data(), n);
        chosen_.resize(n * k), weight_.resize(n * k), order_.resize(n_exp);
        for (int64_t t = 0; t < n; ++t) {
            const float* lg = router_.data() + t * n_exp;
            std::iota(order_.begin(), order_.end(), 0);
            std::partial_sort(order_.begin(), order_.begin() + k, order_.end(),
                              [lg](int32_t a, int32_t b) { return lg[a] > lg[b] || (lg[a] == lg[b] && a < b); });
            const float mx = lg[order_[0]];
            double sum = 0.0;  // ggml's softmax: f32 exps, double sum, scaled by the f32 inverse
            for (int j = 0; j < k; ++j) sum += (weight_[t * k + j] = std::exp(lg[order_[j]] - mx));
            for (int j = 0; j < k; ++j) {
                chosen_[t * k + j] = order_[j];
                weight_[t * k + j] *= (float)(1.0 / sum);
            }
        }
        std::fill(proj_.begin(), proj_.begin() + n * d, 0.0f);
        for (int e = 0; e < n_exp; ++e) {  // each expert's weights are read once per batch
            rows_.clear(), rows_w_.clear();
            for (int64_t t = 0; t < n; ++t)
                for (int j = 0; j < k; ++j)
                    if (chosen_[t * k + j] == e) rows_.push_back(t), rows_w_.push_back(weight_[t * k + j]);
            if (rows_.empty()) continue;
            const int64_t m = (int64_t)rows_.size();
            grow(xin_, m * d), grow(g_, m * n_ff), grow(u_, m * n_ff), grow(y_, m * d);
            for (int64_t i = 0; i < m; ++i) std::copy_n(h_.data() + rows_[i] * d, d, xin_.data() + i * d);
            ops_.matmul(L.gate_exps.slice(e), xin_.data(), g_.data(), m);
            ops_.matmul(L.up_exps.slice(e), xin_.data(), u_.data(), m);
            const float* gb = L.gate_b.data() + e * n_ff;
            const float* ub = L.up_b.data() + e * n_ff;
            for (int64_t i = 0; i < m * n_ff; ++i) {  // SwiGLU-OAI
                const float x = std::min(g_[i] + gb[i % n_ff], kOaiLimit);
                const float y = std::clamp(u_[i] + ub[i % n_ff], -kOaiLimit, kOaiLimit);
                g_[i] = x / (1.0f + std::exp(kOaiAlpha * -x)) * (y + 1.0f);
            }
            ops_.matmul(L.down_exps.slice(e), g_.data(), y_.data(), m);
            const float* db = L.down_b.data() + e * d;
            for (int64_t i = 0; i < m; ++i) {
                float* dst = proj_.data() + rows_[i] * d;
                for (int64_t c = 0; c < d; ++c) dst[c] += (y_[i * d + c] + db[c]) * rows_w_[i];
            }
        }
    }

    GptOssParams p_;
    ops::Weight tok_embd_, output_;
    std::vector<float> output_norm_;
    std::vector<GptOssLayer> layers_;

    // Scratch, grown to the largest batch seen and reused.
    std::vector<float> x_, h_, proj_;   // [n][n_embd] residual, normed input, block output
    std::vector<float> q_, attn_;       // [n][n_head * head_dim]
    std::vector<float> k_, v_;          // [n][n_head_kv * head_dim]
    std::vector<float> router_;         // [n][n_expert] router logits
    std::vector<int32_t> chosen_, order_;  // [n][k] selected experts; [n_expert] sort scratch
    std::vector<float> weight_;         // [n][k] mixing weights
    std::vector<int64_t> rows_;         // tokens routed to the current expert
    std::vector<float> rows_w_;         // their weights
    std::vector<float> xin_, y_, g_, u_;// [m][n_embd] x2, [m][n_ff_exp] x2
    std::vector<int32_t> kv_end_;
    std::vector<const int32_t*> tables_;
};

}  // namespace

Result<std::unique_ptr<Model>> load_gpt_oss(std::shared_ptr<const gguf::GgufFile> file, const LoadOptions& opts) {
    Hparams hp;
    hp.arch = "gpt-oss";
    ArchKeys k(file->meta, hp.arch);
    const gguf::Metadata common = arch_keys_without_scaling_type(file->meta, hp.arch);
    HEARTH_TRY(read_common_hparams(ArchKeys(common, hp.arch), hp));
    HEARTH_TRY(k.get("attention.layer_norm_rms_epsilon", hp.norm_eps));
    HEARTH_TRY(k.get("expert_feed_forward_length", hp.n_ff_exp));
    HEARTH_TRY(read_vocab_size(*file, hp));
    hp.rope_neox = true;
    if (hp.n_expert < 1) return error(StatusCode::corrupt, k.key("expert_count") + ": gpt-oss needs experts");
    if (hp.n_ff_exp < 1) return error(StatusCode::corrupt, k.key("expert_feed_forward_length") + ": must be positive");
    // llama.cpp sizes every head by n_rot; other layouts would need their own code.
    if (hp.n_rot != hp.head_dim_k || hp.head_dim_v != hp.head_dim_k)
        return error(StatusCode::unsupported, strformat("gpt-oss with rope dims %d, key length %d, value length %d",
                                                        hp.n_rot, hp.head_dim_k, hp.head_dim_v));
    GptOssParams p;
    HEARTH_TRY(k.get("attention.sliding_window", p.n_swa));
    if (p.n_swa < 1) return error(StatusCode::corrupt, k.key("attention.sliding_window") + ": must be positive");
    if (k.has("attention.sliding_window_pattern") && !k.meta().get_int(k.key("attention.sliding_window_pattern")).ok())
        return error(StatusCode::unsupported, k.key("attention.sliding_window_pattern") + ": only a period is supported");
    int period = 2;  // llama.cpp's default: even layers SWA, odd layers full
    HEARTH_TRY(k.get_or("attention.sliding_window_pattern", period, 2));
    p.is_swa.resize(hp.n_layer);
    for (int l = 0; l < hp.n_layer; ++l) p.is_swa[l] = period == 0 || l % period < period - 1;
    HEARTH_TRY(read_rope(k, hp, p));
    auto m = std::make_unique<GptOss>(file, hp, std::move(p), opts.n_threads);
    HEARTH_TRY(m->load_weights());
    return std::unique_ptr<Model>(std::move(m));
}

}  // namespace hearth::model
