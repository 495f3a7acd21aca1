// One sequence over one model: its own KV blocks and position. The simplest way to run a
// model (tests, `hearth run`, `hearth logits`); the runtime's scheduler batches many.
#pragma once

#include <span>
#include <vector>

#include "model/model.h"

namespace hearth::model {

class Session {
public:
    // n_ctx: most positions this session may hold (KV capacity); kv_type: the KV cache's
    // storage type (f32, f16, q8_0 or q4_0; KvCache::create says which fit the model).
    static Result<Session> create(Model& model, int64_t n_ctx, int block_size = 32,
                                  quant::QuantType kv_type = quant::QuantType::f16);

    int64_t n_past() const { return n_past_; }
    int64_t n_ctx() const { return n_ctx_; }
    // Appends tokens in chunks of at most n_batch. logits receives [n][n_vocab] when
    // all_logits, else the last token's [n_vocab] row. out_of_range if the context would
    // overflow (nothing is evaluated then).
    Status eval(std::span<const int32_t> tokens, bool all_logits, std::vector<float>& logits, int64_t n_batch = 512);
    // Embedding models: the pooled embedding of `tokens` as one sequence (resets the session).
    Status embed(std::span<const int32_t> tokens, std::vector<float>& embedding);
    void reset();

private:
    Session(Model& m, KvCache kv, int64_t n_ctx) : model_(&m), kv_(std::move(kv)), n_ctx_(n_ctx) {}
    Model* model_;
    KvCache kv_;
    int64_t n_ctx_;
    int64_t n_past_ = 0;
    Batch batch_;  // block_tables[0] is this sequence's table
    ForwardOutput out_;
};

}  // namespace hearth::model
