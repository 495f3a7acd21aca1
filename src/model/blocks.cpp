#include "model/blocks.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "model/families.h"
#include "model/gpu_recipe.h"

namespace hearth::model {

void AttnIndex::set_causal(const Batch& batch) {
    const int64_t n = batch.n_tokens();
    kv_end.resize(n);
    tables.resize(n);
    for (int64_t t = 0; t < n; ++t) {
        kv_end[t] = batch.positions[t] + 1;
        tables[t] = batch.block_tables[batch.seq_ids[t]].data();
    }
}

namespace blocks {

void linear(ops::Ops& ops, const ops::Weight& w, const std::vector<float>& b, const float* x, float* y, int64_t n) {
    ops.matmul(w, x, y, n);
    if (!b.empty()) ops.add_bias(y, b.data(), n, w.n_out());
}

Status load_attention(WeightLoader& w, const Hparams& hp, int l, const AttnLoad& spec, AttnWeights& a) {
    auto name = [l](const char* n, const char* s = "weight") { return layer_tensor(l, n, s); };
    if (spec.refuse_fused_qkv && w.has(name("attn_qkv")))
        return error(StatusCode::unsupported,
                     name("attn_qkv") + ": fused QKV is not supported for " + hp.arch);
    const int64_t d = hp.n_embd, q_dim = (int64_t)hp.n_head * hp.head_dim_k;
    const int64_t k_dim = (int64_t)hp.n_head_kv * hp.head_dim_k, v_dim = (int64_t)hp.n_head_kv * hp.head_dim_v;
    HEARTH_TRY(w.matrix(name("attn_q"), {d, q_dim}, a.wq));
    HEARTH_TRY(w.matrix(name("attn_k"), {d, k_dim}, a.wk));
    HEARTH_TRY(w.matrix(name("attn_v"), {d, v_dim}, a.wv));
    HEARTH_TRY(w.matrix(name("attn_output"), {(int64_t)hp.n_head * hp.head_dim_v, d}, a.wo));
    HEARTH_TRY(w.vec(name("attn_q", "bias"), q_dim, a.bq, spec.biases_required));
    HEARTH_TRY(w.vec(name("attn_k", "bias"), k_dim, a.bk, spec.biases_required));
    HEARTH_TRY(w.vec(name("attn_v", "bias"), v_dim, a.bv, spec.biases_required));
    if (spec.out_bias) HEARTH_TRY(w.vec(name("attn_output", "bias"), d, a.bo, spec.out_bias_required));
    if (spec.qk_norm) {
        HEARTH_TRY(w.vec(name("attn_q_norm"), hp.head_dim_k, a.q_norm));
        HEARTH_TRY(w.vec(name("attn_k_norm"), hp.head_dim_k, a.k_norm));
    }
    return {};
}

void project_qkv(ops::Ops& ops, const AttnWeights& a, const float* h, float* q, float* k, float* v, int64_t n) {
    linear(ops, a.wq, a.bq, h, q, n);
    linear(ops, a.wk, a.bk, h, k, n);
    linear(ops, a.wv, a.bv, h, v, n);
}

void qk_norm(ops::Ops& ops, const Hparams& hp, const float* q_norm, const float* k_norm, float* q, float* k, int64_t n) {
    ops.rms_norm(q, q_norm, q, hp.head_dim_k, n * hp.n_head, hp.norm_eps);
    ops.rms_norm(k, k_norm, k, hp.head_dim_k, n * hp.n_head_kv, hp.norm_eps);
}

void write_kv(ops::Ops& ops, KvCache& kv, int layer, const Batch& batch, const float* k, int64_t k_stride,
              const float* v, int64_t v_stride) {
    const int bs = kv.block_size();
    const quant::QuantType type = kv.type();
    // Distinct tokens have distinct slots: the pieces write disjoint rows.
    ops.pool().parallel_for(batch.n_tokens(), 32, [&](int64_t b, int64_t e) {
        for (int64_t t = b; t < e; ++t) {
            const int32_t pos = batch.positions[t];
            const int32_t blk = batch.block_tables[batch.seq_ids[t]][pos / bs];
            ops.quantize_row(type, k + t * k_stride, kv.k_row(layer, blk, pos % bs), kv.k_width(layer));
            ops.quantize_row(type, v + t * v_stride, kv.v_row(layer, blk, pos % bs), kv.v_width(layer));
        }
    });
}

Status load_ffn(WeightLoader& w, int l, int64_t n_embd, int64_t n_ff, FfnWeights& f, const char* gate, const char* up,
                const char* down) {
    HEARTH_TRY(w.matrix(layer_tensor(l, gate), {n_embd, n_ff}, f.gate));
    HEARTH_TRY(w.matrix(layer_tensor(l, up), {n_embd, n_ff}, f.up));
    HEARTH_TRY(w.matrix(layer_tensor(l, down), {n_ff, n_embd}, f.down));
    return {};
}

void swiglu_ffn(ops::Ops& ops, const FfnWeights& f, const float* x, float* y, int64_t n, std::vector<float>& g,
                std::vector<float>& u) {
    const int64_t n_ff = f.gate.n_out();
    grow(g, n * n_ff);
    grow(u, n * n_ff);
    ops.matmul(f.gate, x, g.data(), n);
    ops.matmul(f.up, x, u.data(), n);
    ops.swiglu(g.data(), u.data(), g.data(), n * n_ff);
    ops.matmul(f.down, g.data(), y, n);
}

void top_k(const float* s, int n, int k, int32_t* idx) {
    std::iota(idx, idx + n, 0);
    std::partial_sort(idx, idx + k, idx + n,
                      [s](int32_t a, int32_t b) { return s[a] > s[b] || (s[a] == s[b] && a < b); });
}

void pool(Pooling pooling, const Batch& batch, const float* x, int64_t d, std::vector<float>& out) {
    const size_t n_seqs = batch.block_tables.size();
    out.assign(n_seqs * d, 0.0f);
    std::vector<int32_t> count(n_seqs, 0), best_pos(n_seqs, -1);
    for (int64_t t = 0; t < batch.n_tokens(); ++t) {
        const int32_t s = batch.seq_ids[t], pos = batch.positions[t];
        float* dst = out.data() + s * d;
        const float* src = x + t * d;
        switch (pooling) {
            case Pooling::mean:
                for (int64_t i = 0; i < d; ++i) dst[i] += src[i];
                ++count[s];
                break;
            case Pooling::cls:
                if (pos == 0) std::copy_n(src, d, dst);
                break;
            case Pooling::last:
                if (pos > best_pos[s]) best_pos[s] = pos, std::copy_n(src, d, dst);
                break;
            case Pooling::none:
                break;
        }
    }
    if (pooling == Pooling::mean)
        for (size_t s = 0; s < n_seqs; ++s)
            if (count[s] > 0)
                for (int64_t i = 0; i < d; ++i) out[s * d + i] /= (float)count[s];
}

}  // namespace blocks

Status read_decoder_pooling(const ArchKeys& k, const LoadOptions& opts, Hparams& hp) {
    int pooling = 0;
    HEARTH_TRY(k.get_or("pooling_type", pooling, 0));
    if (pooling < 0 || pooling > 3)
        return error(StatusCode::unsupported, strformat("%s %d is not supported (0 none, 1 mean, 2 cls, 3 last)",
                                                        k.key("pooling_type").c_str(), pooling));
    hp.pooling = opts.pooling.value_or((Pooling)pooling);
    bool causal = true;
    HEARTH_TRY(k.get_or("attention.causal", causal, true));
    if (!causal)
        return error(StatusCode::unsupported,
                     k.key("attention.causal") + " is false: bidirectional attention is not supported for " + hp.arch);
    return {};
}

// A 2-D f32 table (expert biases) of rows x cols, dequantized.
static Status table_f32(WeightLoader& w, const std::string& name, int64_t cols, int64_t rows, std::vector<float>& out) {
    ops::Weight m;
    HEARTH_TRY(w.matrix(name, {cols, rows}, m));
    out.resize(cols * rows);
    for (int64_t r = 0; r < rows; ++r)
        quant::traits(m.type).dequantize_row(m.data + r * m.row_bytes, out.data() + r * cols, cols);
    return {};
}

Status load_moe(WeightLoader& w, const Hparams& hp, int l, bool expert_biases, MoeWeights& m) {
    auto name = [l](const char* n, const char* s = "weight") { return layer_tensor(l, n, s); };
    const int64_t d = hp.n_embd, ff = hp.n_ff_exp, n_exp = hp.n_expert;
    if (!w.has(name("ffn_gate_exps")) && w.has(name("ffn_gate.0")))
        return error(StatusCode::unsupported,
                     "per-expert tensors (blk.N.ffn_gate.E.weight) are an old GGUF layout; re-convert the model");
    HEARTH_TRY(w.matrix(name("ffn_gate_inp"), {d, n_exp}, m.router));
    if (expert_biases) HEARTH_TRY(w.vec(name("ffn_gate_inp", "bias"), n_exp, m.router_b));
    HEARTH_TRY(w.matrix(name("ffn_gate_exps"), {d, ff, n_exp}, m.gate_exps));
    HEARTH_TRY(w.matrix(name("ffn_up_exps"), {d, ff, n_exp}, m.up_exps));
    HEARTH_TRY(w.matrix(name("ffn_down_exps"), {ff, d, n_exp}, m.down_exps));
    if (expert_biases) {
        HEARTH_TRY(table_f32(w, name("ffn_gate_exps", "bias"), ff, n_exp, m.gate_b));
        HEARTH_TRY(table_f32(w, name("ffn_up_exps", "bias"), ff, n_exp, m.up_b));
        HEARTH_TRY(table_f32(w, name("ffn_down_exps", "bias"), d, n_exp, m.down_b));
    }
    return {};
}

// ggml's softmax, in place: f32 exps, double sum, scaled by the f32 inverse.
static void softmax_scaled(float* p, int n) {
    const float mx = *std::max_element(p, p + n);
    double sum = 0.0;
    for (int e = 0; e < n; ++e) sum += (p[e] = std::exp(p[e] - mx));
    const float inv = (float)(1.0 / sum);
    for (int e = 0; e < n; ++e) p[e] *= inv;
}

void MoeSelector::select(const Hparams& hp, const MoeSpec& spec, const std::vector<float>& probs_b, float* logits,
                         int64_t n, int32_t* chosen_all, float* weight_all) {
    const int n_exp = hp.n_expert, k = hp.n_expert_used;
    const int per_group = spec.n_groups > 1 ? n_exp / spec.n_groups : n_exp;
    sel_.resize(n_exp), order_.resize(n_exp);
    group_score_.resize(std::max(spec.n_groups, 1));
    for (int64_t t = 0; t < n; ++t) {
        float* p = logits + t * n_exp;
        int32_t* chosen = chosen_all + t * k;
        float* weight = weight_all + t * k;
        if (spec.gating == Gating::softmax_selected) {
            blocks::top_k(p, n_exp, k, order_.data());
            for (int j = 0; j < k; ++j) chosen[j] = order_[j], weight[j] = p[order_[j]];
            softmax_scaled(weight, k);
        } else {
            if (spec.gating == Gating::sigmoid) {
                for (int e = 0; e < n_exp; ++e) p[e] = 1.0f / (1.0f + std::exp(-p[e]));
            } else {  // f32 exps, double sum, each probability divided in double
                const float mx = *std::max_element(p, p + n_exp);
                double sum = 0.0;
                for (int e = 0; e < n_exp; ++e) sum += (p[e] = std::exp(p[e] - mx));
                for (int e = 0; e < n_exp; ++e) p[e] = (float)(p[e] / sum);
            }
            for (int e = 0; e < n_exp; ++e) sel_[e] = p[e] + (probs_b.empty() ? 0.0f : probs_b[e]);
            if (spec.n_groups > 1) {  // keep the groups with the best sum of their 2 best scores
                for (int g = 0; g < spec.n_groups; ++g) {
                    blocks::top_k(sel_.data() + g * per_group, per_group, 2, order_.data());
                    group_score_[g] = sel_[g * per_group + order_[0]] + sel_[g * per_group + order_[1]];
                }
                blocks::top_k(group_score_.data(), spec.n_groups, spec.n_group_used, order_.data());
                for (int g = spec.n_group_used; g < spec.n_groups; ++g)
                    std::fill_n(sel_.begin() + order_[g] * per_group, per_group, -INFINITY);
            }
            blocks::top_k(sel_.data(), n_exp, k, order_.data());
            for (int j = 0; j < k; ++j) chosen[j] = order_[j], weight[j] = p[order_[j]];
        }
        if (spec.norm_w) {
            float wsum = 0.0f;
            for (int j = 0; j < k; ++j) wsum += weight[j];
            wsum = std::max(wsum, 6.103515625e-5f);  // llama.cpp clamps to the smallest normal F16
            for (int j = 0; j < k; ++j) weight[j] /= wsum;
        }
        if (spec.scale_w != 0.0f && spec.scale_w != 1.0f)
            for (int j = 0; j < k; ++j) weight[j] *= spec.scale_w;
    }
}

void MoeSelector::sum_order(const MoeSpec& spec, const int32_t* chosen, int k, int32_t* slots) {
    std::iota(slots, slots + k, 0);
    if (spec.sum_order == SumOrder::expert_id)
        std::sort(slots, slots + k, [&](int32_t a, int32_t b) { return chosen[a] < chosen[b]; });
}

void MoeBlock::route(ops::Ops& ops, const Hparams& hp, const MoeSpec& spec, const MoeWeights& w, const float* x,
                     int64_t n) {
    const int k = hp.n_expert_used;
    grow(logits_, n * hp.n_expert);
    blocks::linear(ops, w.router, w.router_b, x, logits_.data(), n);
    chosen_.resize(n * k), weight_.resize(n * k), order_.resize(hp.n_expert);
    selector_.select(hp, spec, w.probs_b, logits_.data(), n, chosen_.data(), weight_.data());
}

void MoeBlock::forward(ops::Ops& ops, const Hparams& hp, const MoeSpec& spec, const MoeWeights& w, const float* x,
                       int64_t n, float* out) {
    route(ops, hp, spec, w, x, n);
    const int n_exp = hp.n_expert, k = hp.n_expert_used;
    const int64_t d = hp.n_embd, n_ff = hp.n_ff_exp;
    grow(ys_, n * k * d);
    // Each expert runs once over the slots routed to it, so its weights are read once per batch.
    for (int e = 0; e < n_exp; ++e) {
        rows_.clear();
        for (int64_t i = 0; i < n * k; ++i)
            if (chosen_[i] == e) rows_.push_back(i);
        if (rows_.empty()) continue;
        const int64_t m = (int64_t)rows_.size();
        grow(xin_, m * d), grow(g_, m * n_ff), grow(u_, m * n_ff), grow(y_, m * d);
        for (int64_t i = 0; i < m; ++i) {
            const float* src = x + rows_[i] / k * d;
            float* dst = xin_.data() + i * d;
            if (spec.weight_input)
                for (int64_t c = 0; c < d; ++c) dst[c] = src[c] * weight_[rows_[i]];
            else
                std::copy_n(src, d, dst);
        }
        ops.matmul(w.gate_exps.slice(e), xin_.data(), g_.data(), m);
        ops.matmul(w.up_exps.slice(e), xin_.data(), u_.data(), m);
        if (!w.gate_b.empty()) ops.add_bias(g_.data(), w.gate_b.data() + e * n_ff, m, n_ff);
        if (!w.up_b.empty()) ops.add_bias(u_.data(), w.up_b.data() + e * n_ff, m, n_ff);
        if (spec.act == Activation::swiglu_oai)
            ops.swiglu_oai(g_.data(), u_.data(), g_.data(), m * n_ff, spec.oai_alpha, spec.oai_limit);
        else
            ops.swiglu(g_.data(), u_.data(), g_.data(), m * n_ff);
        ops.matmul(w.down_exps.slice(e), g_.data(), y_.data(), m);
        if (!w.down_b.empty()) ops.add_bias(y_.data(), w.down_b.data() + e * d, m, d);
        for (int64_t i = 0; i < m; ++i) std::copy_n(y_.data() + i * d, d, ys_.data() + rows_[i] * d);
    }
    // Summed per token in selection order (as llama.cpp adds them) or in expert-id order.
    for (int64_t t = 0; t < n; ++t) {
        int32_t* slots = order_.data();  // [k] this token's slots in summation order
        MoeSelector::sum_order(spec, chosen_.data() + t * k, k, slots);
        float* dst = out + t * d;
        for (int j = 0; j < k; ++j) {
            const int64_t slot = t * k + slots[j];
            const float* y = ys_.data() + slot * d;
            const float wj = weight_[slot];
            if (spec.weight_input && j == 0) std::copy_n(y, d, dst);
            else if (spec.weight_input) ops.add(dst, y, d);
            else if (j == 0) for (int64_t c = 0; c < d; ++c) dst[c] = wj * y[c];
            else for (int64_t c = 0; c < d; ++c) dst[c] += wj * y[c];
        }
    }
    if (w.shared.present()) {
        grow(y_, n * d);
        blocks::swiglu_ffn(ops, w.shared, x, y_.data(), n, g_, u_);
        ops.add(out, y_.data(), n * d);
    }
}

Status DecoderBase::load_embeddings(WeightLoader& w, bool output_required) {
    const Hparams& hp = hp_;
    HEARTH_TRY(w.matrix("token_embd.weight", {hp.n_embd, hp.n_vocab}, tok_embd_));
    HEARTH_TRY(w.vec("output_norm.weight", hp.n_embd, output_norm_));
    HEARTH_TRY(w.matrix("output.weight", {hp.n_embd, hp.n_vocab}, output_, output_required));
    if (!output_.present()) output_ = tok_embd_;  // tied embeddings
    return {};
}

Status DecoderBase::begin(const Batch& batch, KvCache& kv, const float* x) {
    HEARTH_TRY(validate(batch, kv));
    const int64_t n = batch.n_tokens(), d = hp_.n_embd;
    grow(x_, n * d), grow(h_, n * d), grow(proj_, n * d);
    idx_.set_causal(batch);
    if (x != nullptr) std::copy_n(x, n * d, x_.data());
    else ops_.get_rows(tok_embd_, batch.tokens.data(), n, x_.data());
    return {};
}

void DecoderBase::finish(const Batch& batch, ForwardOutput& out) {
    const int64_t d = hp_.n_embd;
    if (hp_.pooling != Pooling::none) {
        ops_.rms_norm(x_.data(), output_norm_.data(), h_.data(), d, batch.n_tokens(), hp_.norm_eps);
        blocks::pool(hp_.pooling, batch, h_.data(), d, out.embeddings);
        out.logits.clear();
        return;
    }
    int64_t n_out = 0;
    for (int64_t t = 0; t < batch.n_tokens(); ++t)
        if (batch.output[t]) std::copy_n(x_.data() + t * d, d, h_.data() + (n_out++) * d);
    ops_.rms_norm(h_.data(), output_norm_.data(), h_.data(), d, n_out, hp_.norm_eps);
    out.logits.resize(n_out * hp_.n_vocab);
    if (n_out > 0) ops_.matmul(output_, h_.data(), out.logits.data(), n_out);
    out.embeddings.clear();
}

// ---- Decoder: llama, qwen2, qwen3, qwen3moe ----

Status Decoder::load_weights() {
    const Hparams& hp = hp_;
    WeightLoader w(*file_, lora_.get());
    HEARTH_TRY(load_embeddings(w));
    if (w.has("rope_freqs.weight")) HEARTH_TRY(w.vec("rope_freqs.weight", hp.n_rot / 2, rope_freqs_));
    hp_.rope.neox = spec_.rope_neox;
    hp_.rope.freq_factors = rope_freqs_.empty() ? nullptr : rope_freqs_.data();
    AttnLoad al;
    al.biases_required = spec_.qkv_bias;
    al.qk_norm = spec_.qk_norm;
    layers_.resize(hp.n_layer);
    for (int l = 0; l < hp.n_layer; ++l) {
        DecoderLayer& L = layers_[l];
        HEARTH_TRY(w.vec(layer_tensor(l, "attn_norm"), hp.n_embd, L.attn_norm));
        HEARTH_TRY(blocks::load_attention(w, hp, l, al, L.attn));
        HEARTH_TRY(w.vec(layer_tensor(l, "ffn_norm"), hp.n_embd, L.ffn_norm));
        if (hp.n_expert == 0) {
            HEARTH_TRY(blocks::load_ffn(w, l, hp.n_embd, hp.n_ff, L.ffn));
            continue;
        }
        HEARTH_TRY(load_moe(w, hp, l, /*expert_biases=*/false, L.moe));
    }
    return {};
}

Status Decoder::run_forward(const Batch& batch, KvCache& kv, ForwardOutput& out) {
    HEARTH_TRY(begin(batch, kv));
    return run_layers(0, batch, kv, out);
}

Status Decoder::forward_from(int first_layer, const float* x, const Batch& batch, KvCache& kv, ForwardOutput& out) {
    if (first_layer < 0 || first_layer > hp_.n_layer || x == nullptr)
        return error(StatusCode::invalid_argument, strformat("forward_from layer %d of %d", first_layer, hp_.n_layer));
    HEARTH_TRY(begin(batch, kv, x));
    return run_layers(first_layer, batch, kv, out);
}

Status Decoder::run_layers(int first_layer, const Batch& batch, KvCache& kv, ForwardOutput& out) {
    const Hparams& hp = hp_;
    const int64_t n = batch.n_tokens(), d = hp.n_embd;
    const int64_t k_dim = (int64_t)hp.n_head_kv * hp.head_dim_k, v_dim = (int64_t)hp.n_head_kv * hp.head_dim_v;
    grow(q_, n * hp.n_head * hp.head_dim_k), grow(k_, n * k_dim), grow(v_, n * v_dim);
    grow(attn_, n * hp.n_head * hp.head_dim_v);
    ops::AttentionParams ap;
    ap.n_head = hp.n_head, ap.n_head_kv = hp.n_head_kv, ap.head_dim_k = hp.head_dim_k, ap.head_dim_v = hp.head_dim_v;
    ap.scale = spec_.attn_scale > 0.0f ? spec_.attn_scale : 1.0f / std::sqrt((float)hp.head_dim_k);
    MoeSpec ms;
    ms.gating = Gating::softmax;
    ms.norm_w = hp.expert_weights_norm;
    ms.sum_order = SumOrder::expert_id;

    for (int l = first_layer; l < hp.n_layer; ++l) {
        const DecoderLayer& L = layers_[l];
        ops_.rms_norm(x_.data(), L.attn_norm.data(), h_.data(), d, n, hp.norm_eps);
        blocks::project_qkv(ops_, L.attn, h_.data(), q_.data(), k_.data(), v_.data(), n);
        if (!L.attn.q_norm.empty())
            blocks::qk_norm(ops_, hp, L.attn.q_norm.data(), L.attn.k_norm.data(), q_.data(), k_.data(), n);
        ops_.rope(q_.data(), batch.positions.data(), n, hp.n_head, hp.head_dim_k, hp.rope);
        ops_.rope(k_.data(), batch.positions.data(), n, hp.n_head_kv, hp.head_dim_k, hp.rope);
        blocks::write_kv(ops_, kv, l, batch, k_.data(), k_dim, v_.data(), v_dim);
        ops_.attention(q_.data(), kv.view(l), idx_.tables.data(), batch.positions.data(), idx_.kv_end.data(), n, ap,
                       attn_.data());
        ops_.matmul(L.attn.wo, attn_.data(), proj_.data(), n);
        ops_.add(x_.data(), proj_.data(), n * d);
        ops_.rms_norm(x_.data(), L.ffn_norm.data(), h_.data(), d, n, hp.norm_eps);
        if (hp.n_expert > 0) moe_.forward(ops_, hp, ms, L.moe, h_.data(), n, proj_.data());
        else blocks::swiglu_ffn(ops_, L.ffn, h_.data(), proj_.data(), n, gate_, up_);
        ops_.add(x_.data(), proj_.data(), n * d);
    }
    finish(batch, out);
    return {};
}

// A Decoder family's hparams: the common keys, the RMS eps (eps_default when absent), pooling
// and vocabulary (read_family).
static Status read_decoder_hparams(const gguf::GgufFile& file, const LoadOptions& opts, const char* arch,
                                   float eps_default, Hparams& hp) {
    auto read = [eps_default](const ArchKeys& k, Hparams& h) -> Result<bool> {
        HEARTH_TRY(read_common_hparams(k, h));
        HEARTH_TRY(k.get_or("attention.layer_norm_rms_epsilon", h.norm_eps, eps_default));
        return true;
    };
    return read_family(file, opts, arch, hp, read).status();
}

Result<GpuRecipe> decoder_gpu_recipe(const gguf::GgufFile& file, const LoadOptions& opts, const char* arch,
                                     const DecoderSpec& spec, float eps_default) {
    GpuRecipe r;
    HEARTH_TRY(read_decoder_hparams(file, opts, arch, eps_default, r.hp));
    Hparams& hp = r.hp;
    hp.rope.neox = spec.rope_neox;  // as Decoder runs it
    r.plain = true;
    r.decoder = spec;
    r.attn = AttnLoad{.biases_required = spec.qkv_bias, .qk_norm = spec.qk_norm, .refuse_fused_qkv = true};
    r.attn_scale = spec.attn_scale;
    r.moe = MoeSpec{.norm_w = hp.expert_weights_norm, .sum_order = SumOrder::expert_id};
    r.layers.resize(hp.n_layer);
    for (GpuLayerRecipe& l : r.layers) l.rope_cfg = hp.rope, l.moe = hp.n_expert > 0;
    return r;
}

Result<std::unique_ptr<Model>> load_decoder(std::shared_ptr<const gguf::GgufFile> file, const LoadOptions& opts,
                                            const char* arch, const DecoderSpec& spec, float eps_default) {
    Hparams hp;
    HEARTH_TRY(read_decoder_hparams(*file, opts, arch, eps_default, hp));
    auto m = std::make_unique<Decoder>(file, hp, spec, opts.n_threads);
    HEARTH_TRY(m->open_adapters(opts));
    HEARTH_TRY(m->load_weights());
    return std::unique_ptr<Model>(std::move(m));
}

}  // namespace hearth::model
