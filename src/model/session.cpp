#include "model/session.h"

#include <algorithm>

namespace hearth::model {

Result<Session> Session::create(Model& model, int64_t n_ctx, int block_size, quant::QuantType kv_type) {
    if (n_ctx <= 0 || block_size <= 0)
        return error(StatusCode::invalid_argument, "context length and KV block size must be positive");
    const int n_blocks = (int)((n_ctx + block_size - 1) / block_size);
    HEARTH_ASSIGN(KvCache kv, KvCache::create(model.kv_layout(), n_blocks, block_size, kv_type));
    Session s(model, std::move(kv), n_ctx);
    s.batch_.block_tables.resize(1);
    return s;
}

void Session::reset() {
    kv_.release(batch_.block_tables[0]);
    n_past_ = 0;
}

Status Session::eval(std::span<const int32_t> tokens, bool all_logits, std::vector<float>& logits, int64_t n_batch) {
    const int64_t n_vocab = model_->hparams().n_vocab;
    if (n_past_ + (int64_t)tokens.size() > n_ctx_)
        return error(StatusCode::out_of_range,
                     strformat("%zu tokens do not fit: %lld of the context's %lld positions are used", tokens.size(),
                               (long long)n_past_, (long long)n_ctx_));
    HEARTH_TRY(kv_.ensure_capacity(batch_.block_tables[0], n_past_ + (int64_t)tokens.size()));
    logits.resize(all_logits ? tokens.size() * n_vocab : n_vocab);
    for (size_t start = 0; start < tokens.size(); start += n_batch) {
        const size_t end = std::min(tokens.size(), start + (size_t)n_batch);
        batch_.clear();
        for (size_t i = start; i < end; ++i)
            batch_.add(tokens[i], (int32_t)(n_past_ + (int64_t)(i - start)), 0, all_logits || i + 1 == tokens.size());
        HEARTH_TRY(model_->forward(batch_, kv_, out_));
        n_past_ += (int64_t)(end - start);
        if (all_logits) std::copy(out_.logits.begin(), out_.logits.end(), logits.begin() + start * n_vocab);
        else if (end == tokens.size()) std::copy_n(out_.logits.end() - n_vocab, n_vocab, logits.begin());
    }
    return {};
}

Status Session::embed(std::span<const int32_t> tokens, std::vector<float>& embedding) {
    reset();
    if ((int64_t)tokens.size() > n_ctx_)
        return error(StatusCode::out_of_range, strformat("%zu tokens exceed the context of %lld", tokens.size(), (long long)n_ctx_));
    if (tokens.empty()) return error(StatusCode::invalid_argument, "nothing to embed");
    HEARTH_TRY(kv_.ensure_capacity(batch_.block_tables[0], (int64_t)tokens.size()));
    batch_.clear();
    for (size_t i = 0; i < tokens.size(); ++i) batch_.add(tokens[i], (int32_t)i, 0, true);
    HEARTH_TRY(model_->forward(batch_, kv_, out_));
    embedding = out_.embeddings;
    reset();
    return {};
}

}  // namespace hearth::model
