// bert: encoder-only embedding models (BGE, MiniLM, ...). Post-norm blocks with biases,
// absolute position embeddings, bidirectional attention, GELU FFN, pooled output.
#include <cmath>

#include "model/blocks.h"
#include "model/families.h"
#include "model/gpu_recipe.h"

namespace hearth::model {
namespace {

struct BertLayer {
    ops::Weight wq, wk, wv, wo, up, down;
    std::vector<float> bq, bk, bv, bo, b_up, b_down;
    std::vector<float> attn_norm_w, attn_norm_b, out_norm_w, out_norm_b;
};

class Bert : public Model {
public:
    Bert(std::shared_ptr<const gguf::GgufFile> file, Hparams hp, int n_threads)
        : Model(std::move(file), std::move(hp), n_threads) {}

    Status load_weights() {
        const Hparams& hp = hp_;
        WeightLoader w(*file_, lora_.get());
        HEARTH_TRY(w.matrix("token_embd.weight", {hp.n_embd, hp.n_vocab}, tok_embd_));
        HEARTH_TRY(w.matrix("position_embd.weight", {hp.n_embd, hp.n_ctx_train}, pos_embd_));
        const gguf::TensorInfo* tt = file_->find_tensor("token_types.weight");
        if (tt) {
            hp_.n_token_types = (int)tt->ne[1];
            HEARTH_TRY(w.matrix("token_types.weight", {hp.n_embd, tt->ne[1]}, type_embd_));
        }
        HEARTH_TRY(w.vec("token_embd_norm.weight", hp.n_embd, embd_norm_w_));
        HEARTH_TRY(w.vec("token_embd_norm.bias", hp.n_embd, embd_norm_b_));
        layers_.resize(hp.n_layer);
        const int64_t d = hp.n_embd;
        for (int l = 0; l < hp.n_layer; ++l) {
            BertLayer& L = layers_[l];
            auto name = [l](const char* n, const char* s = "weight") { return layer_tensor(l, n, s); };
            HEARTH_TRY(w.matrix(name("attn_q"), {d, d}, L.wq));
            HEARTH_TRY(w.matrix(name("attn_k"), {d, d}, L.wk));
            HEARTH_TRY(w.matrix(name("attn_v"), {d, d}, L.wv));
            HEARTH_TRY(w.matrix(name("attn_output"), {d, d}, L.wo));
            HEARTH_TRY(w.vec(name("attn_q", "bias"), d, L.bq));
            HEARTH_TRY(w.vec(name("attn_k", "bias"), d, L.bk));
            HEARTH_TRY(w.vec(name("attn_v", "bias"), d, L.bv));
            HEARTH_TRY(w.vec(name("attn_output", "bias"), d, L.bo));
            HEARTH_TRY(w.vec(name("attn_output_norm"), d, L.attn_norm_w));
            HEARTH_TRY(w.vec(name("attn_output_norm", "bias"), d, L.attn_norm_b));
            HEARTH_TRY(w.matrix(name("ffn_up"), {d, hp.n_ff}, L.up));
            HEARTH_TRY(w.vec(name("ffn_up", "bias"), hp.n_ff, L.b_up));
            HEARTH_TRY(w.matrix(name("ffn_down"), {hp.n_ff, d}, L.down));
            HEARTH_TRY(w.vec(name("ffn_down", "bias"), d, L.b_down));
            HEARTH_TRY(w.vec(name("layer_output_norm"), d, L.out_norm_w));
            HEARTH_TRY(w.vec(name("layer_output_norm", "bias"), d, L.out_norm_b));
        }
        return {};
    }

    Status run_forward(const Batch& batch, KvCache& kv, ForwardOutput& out) override {
        HEARTH_TRY(validate(batch, kv));
        const Hparams& hp = hp_;
        const int64_t n = batch.n_tokens(), d = hp.n_embd;
        for (int64_t t = 0; t < n; ++t)
            if (batch.positions[t] >= hp.n_ctx_train)
                return error(StatusCode::out_of_range, strformat("position %d is beyond the model's %lld positions",
                                                                 batch.positions[t], (long long)hp.n_ctx_train));
        std::vector<float> x(n * d), h(n * d), q(n * d), k(n * d), v(n * d), a(n * d), ff(n * hp.n_ff), tmp(n * d);
        ops_.get_rows(tok_embd_, batch.tokens.data(), n, x.data());
        ops_.get_rows(pos_embd_, batch.positions.data(), n, tmp.data());
        ops_.add(x.data(), tmp.data(), n * d);
        if (type_embd_.present()) {  // every token is of type 0
            std::vector<int32_t> zeros(n, 0);
            ops_.get_rows(type_embd_, zeros.data(), n, tmp.data());
            ops_.add(x.data(), tmp.data(), n * d);
        }
        ops_.layer_norm(x.data(), embd_norm_w_.data(), embd_norm_b_.data(), x.data(), d, n, hp.norm_eps);

        // Bidirectional: every token sees all positions of its sequence present in the batch.
        std::vector<int32_t> seq_len(batch.block_tables.size(), 0);
        for (int64_t t = 0; t < n; ++t)
            seq_len[batch.seq_ids[t]] = std::max(seq_len[batch.seq_ids[t]], batch.positions[t] + 1);
        std::vector<int32_t> kv_end(n);
        std::vector<const int32_t*> tables(n);
        for (int64_t t = 0; t < n; ++t) {
            kv_end[t] = seq_len[batch.seq_ids[t]];
            tables[t] = batch.block_tables[batch.seq_ids[t]].data();
        }
        ops::AttentionParams ap;
        ap.n_head = ap.n_head_kv = hp.n_head;
        ap.head_dim_k = ap.head_dim_v = hp.head_dim_k;
        ap.scale = 1.0f / std::sqrt((float)hp.head_dim_k);
        for (int l = 0; l < hp.n_layer; ++l) {
            const BertLayer& L = layers_[l];
            blocks::linear(ops_, L.wq, L.bq, x.data(), q.data(), n);
            blocks::linear(ops_, L.wk, L.bk, x.data(), k.data(), n);
            blocks::linear(ops_, L.wv, L.bv, x.data(), v.data(), n);
            blocks::write_kv(ops_, kv, l, batch, k.data(), d, v.data(), d);
            ops_.attention(q.data(), kv.view(l), tables.data(), batch.positions.data(), kv_end.data(), n, ap, a.data());
            blocks::linear(ops_, L.wo, L.bo, a.data(), h.data(), n);
            ops_.add(x.data(), h.data(), n * d);
            ops_.layer_norm(x.data(), L.attn_norm_w.data(), L.attn_norm_b.data(), x.data(), d, n, hp.norm_eps);
            blocks::linear(ops_, L.up, L.b_up, x.data(), ff.data(), n);
            ops_.gelu(ff.data(), ff.data(), n * hp.n_ff);
            blocks::linear(ops_, L.down, L.b_down, ff.data(), h.data(), n);
            ops_.add(x.data(), h.data(), n * d);
            ops_.layer_norm(x.data(), L.out_norm_w.data(), L.out_norm_b.data(), x.data(), d, n, hp.norm_eps);
        }

        out.logits.clear();
        blocks::pool(hp.pooling, batch, x.data(), d, out.embeddings);
        return {};
    }

private:
    ops::Weight tok_embd_, pos_embd_, type_embd_;
    std::vector<float> embd_norm_w_, embd_norm_b_;
    std::vector<BertLayer> layers_;
};

}  // namespace

static Status read_params(const gguf::GgufFile& file, const LoadOptions& opts, Hparams& hp) {
    hp.arch = "bert";
    ArchKeys k(file.meta, hp.arch);
    HEARTH_TRY(read_common_hparams(k, hp));
    HEARTH_TRY(k.get_or("attention.layer_norm_epsilon", hp.norm_eps, 1e-12f));
    HEARTH_TRY(read_vocab_size(file, hp));
    bool causal = false;
    HEARTH_TRY(k.get_or("attention.causal", causal, false));
    hp.causal = causal;
    int pooling = 0;
    HEARTH_TRY(k.get_or("pooling_type", pooling, 2));
    if (pooling < 0 || pooling > 3) return error(StatusCode::unsupported, strformat("bert.pooling_type %d is not supported", pooling));
    hp.pooling = pooling == 0 ? Pooling::cls : (Pooling)pooling;
    if (opts.pooling == Pooling::none)
        return error(StatusCode::unsupported, "bert cannot run without pooling (no per-token embeddings)");
    if (opts.pooling) hp.pooling = *opts.pooling;
    return {};
}

Result<GpuRecipe> bert_gpu_recipe(const gguf::GgufFile& file, const LoadOptions& opts) {
    GpuRecipe r;
    HEARTH_TRY(read_params(file, opts, r.hp));
    r.encoder = true;
    r.layers.resize(r.hp.n_layer);
    for (GpuLayerRecipe& l : r.layers) l.rope = false;
    return r;
}

Result<std::unique_ptr<Model>> load_bert(std::shared_ptr<const gguf::GgufFile> file, const LoadOptions& opts) {
    Hparams hp;
    HEARTH_TRY(read_params(*file, opts, hp));
    auto m = std::make_unique<Bert>(file, hp, opts.n_threads);
    HEARTH_TRY(m->open_adapters(opts));
    HEARTH_TRY(m->load_weights());
    return std::unique_ptr<Model>(std::move(m));
}

}  // namespace hearth::model
