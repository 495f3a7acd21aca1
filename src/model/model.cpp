#include "model/model.h"

#include <algorithm>
#include <cmath>

#include "model/lora.h"

namespace hearth::model {

KvLayout kv_layout_of(const Hparams& hp) {
    KvLayout l;
    l.n_layer = hp.n_layer;
    l.k_width.assign(hp.n_layer, hp.n_head_kv * hp.head_dim_k);
    l.v_width.assign(hp.n_layer, hp.n_head_kv * hp.head_dim_v);
    l.k_head_dim.assign(hp.n_layer, hp.head_dim_k);
    l.v_head_dim.assign(hp.n_layer, hp.head_dim_v);
    return l;
}

KvLayout Model::kv_layout() const { return kv_layout_of(hp_); }

Status Model::validate(const Batch& b, const KvCache& kv) const {
    const size_t n = b.tokens.size();
    if (n == 0) return error(StatusCode::invalid_argument, "empty batch");
    if (b.positions.size() != n || b.seq_ids.size() != n || b.output.size() != n)
        return error(StatusCode::invalid_argument, "batch arrays differ in length");
    for (size_t i = 0; i < n; ++i) {
        if (b.tokens[i] < 0 || b.tokens[i] >= hp_.n_vocab)
            return error(StatusCode::invalid_argument,
                         strformat("token id %d is outside the vocabulary (size %lld)", b.tokens[i], (long long)hp_.n_vocab));
        if (b.seq_ids[i] < 0 || (size_t)b.seq_ids[i] >= b.block_tables.size())
            return error(StatusCode::invalid_argument, strformat("sequence id %d has no block table", b.seq_ids[i]));
        if (b.positions[i] < 0)
            return error(StatusCode::invalid_argument, "negative position");
        const auto& table = b.block_tables[b.seq_ids[i]];
        const int64_t blk = b.positions[i] / kv.block_size();
        if (blk >= (int64_t)table.size())
            return error(StatusCode::invalid_argument,
                         strformat("position %d of sequence %d is beyond its KV blocks", b.positions[i], b.seq_ids[i]));
        for (int64_t j = 0; j <= blk; ++j)
            if (table[j] < 0 || table[j] >= kv.n_blocks())
                return error(StatusCode::invalid_argument, "block table names a block outside the KV pool");
    }
    if (b.output_top_k < 0 || b.output_top_k > kMaxOutputTopK || b.output_top_k > hp_.n_vocab)
        return error(StatusCode::invalid_argument,
                     strformat("output_top_k %d is outside 0..%d (the vocabulary has %lld tokens)", b.output_top_k,
                               (int)std::min<int64_t>(kMaxOutputTopK, hp_.n_vocab), (long long)hp_.n_vocab));
    if (b.output_top_k > 0 && is_embedding())
        return error(StatusCode::invalid_argument, "output_top_k asks for logits, but this model pools embeddings");
    return {};
}

Status Model::forward(const Batch& batch, KvCache& kv, ForwardOutput& out) {
    out.top_ids.clear();
    out.top_logits.clear();
    HEARTH_TRY(run_forward(batch, kv, out));
    const int k = batch.output_top_k;
    if (k == 0 || out.logits.empty()) return {};  // full rows asked for, or selected by the model
    const int64_t n_rows = (int64_t)out.logits.size() / hp_.n_vocab;
    out.top_ids.resize(n_rows * k);
    out.top_logits.resize(n_rows * k);
    select_top_k(out.logits.data(), n_rows, hp_.n_vocab, k, out.top_ids.data(), out.top_logits.data(), top_scratch_);
    out.logits.clear();
    return {};
}

void select_top_k(const float* logits, int64_t n_rows, int64_t n_cols, int k, int32_t* ids, float* vals,
                  std::vector<std::pair<float, int32_t>>& scratch) {
    scratch.resize((size_t)k);
    for (int64_t r = 0; r < n_rows; ++r) {
        const float* row = logits + r * n_cols;
        // scratch[0, n) holds the best so far, best first. Ids arrive ascending and only a
        // strictly greater logit moves past another, so equal logits keep the lower id first.
        int n = 0;
        for (int64_t i = 0; i < n_cols; ++i) {
            const float x = std::isnan(row[i]) ? -INFINITY : row[i];
            if (n == k && !(x > scratch[(size_t)k - 1].first)) continue;
            int j = n < k ? n++ : k - 1;
            for (; j > 0 && scratch[(size_t)j - 1].first < x; --j) scratch[(size_t)j] = scratch[(size_t)j - 1];
            scratch[(size_t)j] = {x, (int32_t)i};
        }
        for (int j = 0; j < k; ++j) ids[r * k + j] = scratch[(size_t)j].second, vals[r * k + j] = scratch[(size_t)j].first;
    }
}

std::string layer_tensor(int layer, const char* name, const char* suffix) {
    return "blk." + std::to_string(layer) + "." + name + "." + suffix;
}

static std::string shape_str(const std::vector<int64_t>& ne) {
    std::string s = "[";
    for (size_t i = 0; i < ne.size(); ++i) s += (i ? ", " : "") + std::to_string(ne[i]);
    return s + "]";
}

Status Model::open_adapters(const LoadOptions& opts) {
    lora_.reset();
    if (opts.adapters.empty()) return {};
    auto set = std::make_shared<LoraSet>();
    for (const std::string& path : opts.adapters) {
        HEARTH_ASSIGN(LoraAdapter a, open_lora_adapter(path));
        HEARTH_TRY(set->add(std::move(a), file_->architecture()));
    }
    lora_ = std::move(set);
    return {};
}

Status Model::check_adapters() const { return lora_ ? lora_->check_all_used() : Status{}; }

Status WeightLoader::matrix(const std::string& name, std::vector<int64_t> ne, ops::Weight& out, bool required) {
    HEARTH_TRY(matrix_view(name, ne, out, required));
    if (lora_ && out.present()) HEARTH_TRY(lora_->attach(name, out));
    return {};
}

Status WeightLoader::matrix_view(const std::string& name, const std::vector<int64_t>& ne, ops::Weight& out,
                                 bool required) {
    const gguf::TensorInfo* t = f_.find_tensor(name);
    if (!t) {
        if (required) return error(StatusCode::not_found, "tensor " + name + " is missing");
        out = {};
        return {};
    }
    bool match = (int)ne.size() >= t->n_dims;
    for (int d = 0; d < gguf::kMaxDims && match; ++d) {
        const int64_t want = d < (int)ne.size() ? ne[d] : 1;
        match = t->ne[d] == want;
    }
    if (!match)
        return error(StatusCode::corrupt, "tensor " + name + ": shape " + t->shape_string() + ", expected " + shape_str(ne));
    if (!quant::can_compute(t->type))
        return error(StatusCode::unsupported,
                     strformat("tensor %s: type %s is not supported", name.c_str(), quant::type_name(t->type)));
    out.type = t->type;
    out.data = t->data;
    for (int d = 0; d < 4; ++d) out.ne[d] = t->ne[d];
    out.row_bytes = quant::row_size(t->type, t->ne[0]);
    out.deltas.clear();
    return {};
}

Status WeightLoader::vec(const std::string& name, int64_t n, std::vector<float>& out, bool required) {
    if (lora_ && lora_->has(name))
        return error(StatusCode::unsupported, "tensor " + name + ": a LoRA adapter adapts it, but it is a 1-D tensor "
                                              "(a norm or bias); only matrices take LoRA deltas");
    ops::Weight w;
    HEARTH_TRY(matrix_view(name, {n}, w, required));
    if (!w.present()) {
        out.clear();
        return {};
    }
    out.resize(n);
    quant::traits(w.type).dequantize_row(w.data, out.data(), n);
    return {};
}

}  // namespace hearth::model
