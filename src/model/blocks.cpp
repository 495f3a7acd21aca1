#include "model/blocks.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace hearth::model {

Status Decoder::load_weights() {
    const Hparams& hp = hp_;
    WeightLoader w(*file_);
    const int64_t q_dim = (int64_t)hp.n_head * hp.head_dim_k;
    const int64_t k_dim = (int64_t)hp.n_head_kv * hp.head_dim_k;
    const int64_t v_dim = (int64_t)hp.n_head_kv * hp.head_dim_v;
    const int64_t o_dim = (int64_t)hp.n_head * hp.head_dim_v;
    HEARTH_TRY(w.matrix("token_embd.weight", {hp.n_embd, hp.n_vocab}, tok_embd_));
    HEARTH_TRY(w.vec("output_norm.weight", hp.n_embd, output_norm_));
    HEARTH_TRY(w.matrix("output.weight", {hp.n_embd, hp.n_vocab}, output_, /*required=*/false));
    if (!output_.present()) output_ = tok_embd_;  // tied embeddings
    if (w.has("rope_freqs.weight")) HEARTH_TRY(w.vec("rope_freqs.weight", hp.n_rot / 2, rope_freqs));
    layers_.resize(hp.n_layer);
    for (int l = 0; l < hp.n_layer; ++l) {
        DecoderLayer& L = layers_[l];
        auto name = [l](const char* n, const char* s = "weight") { return layer_tensor(l, n, s); };
        HEARTH_TRY(w.vec(name("attn_norm"), hp.n_embd, L.attn_norm));
        HEARTH_TRY(w.matrix(name("attn_q"), {hp.n_embd, q_dim}, L.wq));
        HEARTH_TRY(w.matrix(name("attn_k"), {hp.n_embd, k_dim}, L.wk));
        HEARTH_TRY(w.matrix(name("attn_v"), {hp.n_embd, v_dim}, L.wv));
        HEARTH_TRY(w.matrix(name("attn_output"), {o_dim, hp.n_embd}, L.wo));
        HEARTH_TRY(w.vec(name("attn_q", "bias"), q_dim, L.bq, spec_.qkv_bias));
        HEARTH_TRY(w.vec(name("attn_k", "bias"), k_dim, L.bk, spec_.qkv_bias));
        HEARTH_TRY(w.vec(name("attn_v", "bias"), v_dim, L.bv, spec_.qkv_bias));
        if (spec_.qk_norm) {
            HEARTH_TRY(w.vec(name("attn_q_norm"), hp.head_dim_k, L.q_norm));
            HEARTH_TRY(w.vec(name("attn_k_norm"), hp.head_dim_k, L.k_norm));
        }
        HEARTH_TRY(w.vec(name("ffn_norm"), hp.n_embd, L.ffn_norm));
        if (hp.n_expert > 0) {
            HEARTH_TRY(w.matrix(name("ffn_gate_inp"), {hp.n_embd, hp.n_expert}, L.router));
            if (!w.has(name("ffn_gate_exps")) && w.has(layer_tensor(l, "ffn_gate.0")))
                return error(StatusCode::unsupported,
                             "per-expert tensors (blk.N.ffn_gate.E.weight) are an old GGUF layout; re-convert the model");
            HEARTH_TRY(w.matrix(name("ffn_gate_exps"), {hp.n_embd, hp.n_ff_exp, hp.n_expert}, L.gate_exps));
            HEARTH_TRY(w.matrix(name("ffn_up_exps"), {hp.n_embd, hp.n_ff_exp, hp.n_expert}, L.up_exps));
            HEARTH_TRY(w.matrix(name("ffn_down_exps"), {hp.n_ff_exp, hp.n_embd, hp.n_expert}, L.down_exps));
        } else {
            HEARTH_TRY(w.matrix(name("ffn_gate"), {hp.n_embd, hp.n_ff}, L.ffn_gate));
            HEARTH_TRY(w.matrix(name("ffn_up"), {hp.n_embd, hp.n_ff}, L.ffn_up));
            HEARTH_TRY(w.matrix(name("ffn_down"), {hp.n_ff, hp.n_embd}, L.ffn_down));
        }
    }
    return {};
}

static void add_bias(float* x, const std::vector<float>& b, int64_t n_rows) {
    if (b.empty()) return;
    const int64_t d = (int64_t)b.size();
    for (int64_t r = 0; r < n_rows; ++r)
        for (int64_t i = 0; i < d; ++i) x[r * d + i] += b[i];
}

void Decoder::attention(int layer, const Batch& batch, KvCache& kv, int64_t n) {
    const Hparams& hp = hp_;
    const DecoderLayer& L = layers_[layer];
    const int64_t q_dim = (int64_t)hp.n_head * hp.head_dim_k;
    const int64_t k_dim = (int64_t)hp.n_head_kv * hp.head_dim_k;
    const int64_t v_dim = (int64_t)hp.n_head_kv * hp.head_dim_v;
    ops_.matmul(L.wq, h_.data(), q_.data(), n);
    ops_.matmul(L.wk, h_.data(), k_.data(), n);
    ops_.matmul(L.wv, h_.data(), v_.data(), n);
    add_bias(q_.data(), L.bq, n);
    add_bias(k_.data(), L.bk, n);
    add_bias(v_.data(), L.bv, n);
    if (!L.q_norm.empty()) {
        ops_.rms_norm(q_.data(), L.q_norm.data(), q_.data(), hp.head_dim_k, n * hp.n_head, hp.norm_eps);
        ops_.rms_norm(k_.data(), L.k_norm.data(), k_.data(), hp.head_dim_k, n * hp.n_head_kv, hp.norm_eps);
    }
    ops::RopeConfig rc;
    rc.n_rot = hp.n_rot;
    rc.neox = hp.rope_neox;
    rc.freq_base = hp.rope_freq_base;
    rc.freq_scale = hp.rope_freq_scale;
    rc.freq_factors = rope_freqs.empty() ? nullptr : rope_freqs.data();
    rc.n_ctx_orig = hp.n_ctx_orig;
    ops_.rope(q_.data(), batch.positions.data(), n, hp.n_head, hp.head_dim_k, rc);
    ops_.rope(k_.data(), batch.positions.data(), n, hp.n_head_kv, hp.head_dim_k, rc);
    for (int64_t t = 0; t < n; ++t) {
        const int32_t pos = batch.positions[t];
        const int32_t blk = batch.block_tables[batch.seq_ids[t]][pos / kv.block_size()];
        std::copy_n(k_.data() + t * k_dim, k_dim, kv.k_row(layer, blk, pos % kv.block_size()));
        std::copy_n(v_.data() + t * v_dim, v_dim, kv.v_row(layer, blk, pos % kv.block_size()));
    }
    ops::AttentionParams ap;
    ap.n_head = hp.n_head;
    ap.n_head_kv = hp.n_head_kv;
    ap.head_dim_k = hp.head_dim_k;
    ap.head_dim_v = hp.head_dim_v;
    ap.scale = spec_.attn_scale > 0.0f ? spec_.attn_scale : 1.0f / std::sqrt((float)hp.head_dim_k);
    ops_.attention(q_.data(), kv.view(layer), tables_.data(), batch.positions.data(), kv_end_.data(), n, ap,
                   attn_.data());
    ops_.matmul(L.wo, attn_.data(), proj_.data(), n);
    (void)q_dim;
}

void Decoder::ffn_dense(const DecoderLayer& L, int64_t n) {
    const int64_t n_ff = hp_.n_ff;
    ops_.matmul(L.ffn_gate, h_.data(), gate_.data(), n);
    ops_.matmul(L.ffn_up, h_.data(), up_.data(), n);
    ops_.swiglu(gate_.data(), up_.data(), gate_.data(), n * n_ff);
    ops_.matmul(L.ffn_down, gate_.data(), proj_.data(), n);
}

void Decoder::ffn_moe(const DecoderLayer& L, int64_t n) {
    const Hparams& hp = hp_;
    const int64_t n_embd = hp.n_embd, n_ff = hp.n_ff_exp;
    const int n_exp = hp.n_expert, k = hp.n_expert_used;
    ops_.matmul(L.router, h_.data(), router_.data(), n);
    // Per token: softmax over all experts, take the k most probable, renormalize.
    std::vector<int32_t> chosen((size_t)n * k);  // [n][k] expert ids
    std::vector<float> weight((size_t)n * k);    // [n][k] mixing weights
    std::vector<int32_t> order(n_exp);
    for (int64_t t = 0; t < n; ++t) {
        float* p = router_.data() + t * n_exp;
        float mx = *std::max_element(p, p + n_exp);
        double sum = 0.0;
        for (int e = 0; e < n_exp; ++e) { p[e] = std::exp(p[e] - mx); sum += p[e]; }
        for (int e = 0; e < n_exp; ++e) p[e] = (float)(p[e] / sum);
        std::iota(order.begin(), order.end(), 0);
        std::partial_sort(order.begin(), order.begin() + k, order.end(),
                          [p](int32_t a, int32_t b) { return p[a] > p[b] || (p[a] == p[b] && a < b); });
        float wsum = 0.0f;
        for (int j = 0; j < k; ++j) wsum += p[order[j]];
        for (int j = 0; j < k; ++j) {
            chosen[t * k + j] = order[j];
            weight[t * k + j] = hp.expert_weights_norm ? p[order[j]] / wsum : p[order[j]];
        }
    }
    // Group tokens by expert so each expert's weights are read once per batch.
    std::fill(proj_.begin(), proj_.begin() + n * n_embd, 0.0f);
    std::vector<int64_t> rows;   // tokens routed to the current expert
    std::vector<float> rows_w;   // their mixing weights
    std::vector<float> xin, g, u, y;
    for (int e = 0; e < n_exp; ++e) {
        rows.clear();
        rows_w.clear();
        for (int64_t t = 0; t < n; ++t)
            for (int j = 0; j < k; ++j)
                if (chosen[t * k + j] == e) { rows.push_back(t); rows_w.push_back(weight[t * k + j]); }
        if (rows.empty()) continue;
        const int64_t m = (int64_t)rows.size();
        xin.resize(m * n_embd);
        g.resize(m * n_ff);
        u.resize(m * n_ff);
        y.resize(m * n_embd);
        for (int64_t i = 0; i < m; ++i) std::copy_n(h_.data() + rows[i] * n_embd, n_embd, xin.data() + i * n_embd);
        ops_.matmul(L.gate_exps.slice(e), xin.data(), g.data(), m);
        ops_.matmul(L.up_exps.slice(e), xin.data(), u.data(), m);
        ops_.swiglu(g.data(), u.data(), g.data(), m * n_ff);
        ops_.matmul(L.down_exps.slice(e), g.data(), y.data(), m);
        for (int64_t i = 0; i < m; ++i) {
            float* dst = proj_.data() + rows[i] * n_embd;
            for (int64_t d = 0; d < n_embd; ++d) dst[d] += rows_w[i] * y[i * n_embd + d];
        }
    }
}

Status Decoder::forward(const Batch& batch, KvCache& kv, ForwardOutput& out) {
    HEARTH_TRY(validate(batch, kv));
    const Hparams& hp = hp_;
    const int64_t n = batch.n_tokens();
    const int64_t n_embd = hp.n_embd;
    const int64_t ff = std::max(hp.n_ff, hp.n_ff_exp);
    auto grow = [](std::vector<float>& v, int64_t size) { if ((int64_t)v.size() < size) v.resize(size); };
    grow(x_, n * n_embd);
    grow(h_, n * n_embd);
    grow(q_, n * hp.n_head * hp.head_dim_k);
    grow(k_, n * hp.n_head_kv * hp.head_dim_k);
    grow(v_, n * hp.n_head_kv * hp.head_dim_v);
    grow(attn_, n * hp.n_head * hp.head_dim_v);
    grow(gate_, n * ff);
    grow(up_, n * ff);
    grow(proj_, n * n_embd);
    grow(router_, n * std::max(hp.n_expert, 1));
    kv_end_.resize(n);
    tables_.resize(n);
    for (int64_t t = 0; t < n; ++t) {
        kv_end_[t] = batch.positions[t] + 1;  // causal
        tables_[t] = batch.block_tables[batch.seq_ids[t]].data();
    }

    ops_.get_rows(tok_embd_, batch.tokens.data(), n, x_.data());
    for (int l = 0; l < hp.n_layer; ++l) {
        const DecoderLayer& L = layers_[l];
        ops_.rms_norm(x_.data(), L.attn_norm.data(), h_.data(), n_embd, n, hp.norm_eps);
        attention(l, batch, kv, n);
        ops_.add(x_.data(), proj_.data(), n * n_embd);
        ops_.rms_norm(x_.data(), L.ffn_norm.data(), h_.data(), n_embd, n, hp.norm_eps);
        if (hp.n_expert > 0) ffn_moe(L, n);
        else ffn_dense(L, n);
        ops_.add(x_.data(), proj_.data(), n * n_embd);
    }

    int64_t n_out = 0;
    for (int64_t t = 0; t < n; ++t) n_out += batch.output[t] ? 1 : 0;
    grow(out_rows_, n_out * n_embd);
    int64_t r = 0;
    for (int64_t t = 0; t < n; ++t)
        if (batch.output[t]) std::copy_n(x_.data() + t * n_embd, n_embd, out_rows_.data() + (r++) * n_embd);
    ops_.rms_norm(out_rows_.data(), output_norm_.data(), out_rows_.data(), n_embd, n_out, hp.norm_eps);
    out.logits.resize(n_out * hp.n_vocab);
    if (n_out > 0) ops_.matmul(output_, out_rows_.data(), out.logits.data(), n_out);
    out.embeddings.clear();
    return {};
}

}  // namespace hearth::model
