// Decoder::forward_from (model/blocks.h), the CPU half of a partial GPU offload: started at
// layer 0 from the token embeddings it gives forward()'s bits (logits and the K/V it writes);
// started past layer 0 from a residual computed elsewhere it runs only the remaining layers; bad
// arguments are errors, not crashes.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "model/blocks.h"
#include "model/model_test_util.h"

namespace hearth::model::test {
namespace {

struct Pass {
    KvCache kv;
    std::vector<int32_t> table;
    Batch batch;
    ForwardOutput out;
};

Pass make_run(const Model& m, const std::vector<int32_t>& tokens) {
    Pass r{KvCache::create(m.kv_layout(), 8, 16).value(), {}, {}, {}};
    EXPECT_TRUE(r.kv.ensure_capacity(r.table, (int64_t)tokens.size()).ok());
    r.batch.block_tables = {r.table};
    for (size_t i = 0; i < tokens.size(); ++i) r.batch.add(tokens[i], (int32_t)i, 0, true);
    return r;
}

TEST(DecoderForwardFrom, LayerZeroFromTheEmbeddingsIsForward) {
    for (const char* name : {"llama3-tiny.Q8_0", "qwen3moe-tiny.Q8_0"}) {
        SCOPED_TRACE(name);
        auto model = load_test_model(name);
        ASSERT_TRUE(model.ok()) << model.status().message();
        auto* dec = dynamic_cast<Decoder*>(model.value().get());
        ASSERT_NE(dec, nullptr);
        const std::vector<int32_t> tokens = {1, 17, 99, 250, 3, 42, 7};
        const int64_t d = dec->hparams().n_embd;

        Pass a = make_run(*dec, tokens), b = make_run(*dec, tokens);
        ASSERT_TRUE(dec->forward(a.batch, a.kv, a.out).ok());
        // The embeddings, as begin() would look them up (get_rows of token_embd).
        WeightLoader loader(dec->file());
        ops::Weight embd;
        ASSERT_TRUE(loader.matrix("token_embd.weight", {d, dec->hparams().n_vocab}, embd).ok());
        ops::Ops ops(1);
        std::vector<float> x(tokens.size() * d);
        ops.get_rows(embd, tokens.data(), (int64_t)tokens.size(), x.data());
        ASSERT_TRUE(dec->forward_from(0, x.data(), b.batch, b.kv, b.out).ok());
        ASSERT_EQ(a.out.logits.size(), b.out.logits.size());
        EXPECT_EQ(0, std::memcmp(a.out.logits.data(), b.out.logits.data(), a.out.logits.size() * sizeof(float)));
        std::vector<std::byte> ka(a.kv.block_bytes()), kb(b.kv.block_bytes());
        a.kv.read_block(a.table[0], ka.data());
        b.kv.read_block(b.table[0], kb.data());
        EXPECT_EQ(ka, kb);

        // From the last layer only: runs (the residual is whatever the caller computed) and
        // gives logits of the right shape.
        Pass c = make_run(*dec, tokens);
        ASSERT_TRUE(dec->forward_from(dec->hparams().n_layer - 1, x.data(), c.batch, c.kv, c.out).ok());
        EXPECT_EQ(c.out.logits.size(), a.out.logits.size());
        // From n_layer: the final norm and the output only, so other logits than the full pass;
        // and the residual given is what is used (another one, other logits).
        Pass e = make_run(*dec, tokens);
        ASSERT_TRUE(dec->forward_from(dec->hparams().n_layer, x.data(), e.batch, e.kv, e.out).ok());
        ASSERT_EQ(e.out.logits.size(), a.out.logits.size());
        EXPECT_NE(0, std::memcmp(e.out.logits.data(), a.out.logits.data(), a.out.logits.size() * sizeof(float)));
        std::vector<float> x2 = x;
        for (float& v : x2) v = -v;
        Pass f = make_run(*dec, tokens);
        ASSERT_TRUE(dec->forward_from(0, x2.data(), f.batch, f.kv, f.out).ok());
        EXPECT_NE(0, std::memcmp(f.out.logits.data(), a.out.logits.data(), a.out.logits.size() * sizeof(float)));

        for (const int bad : {-1, dec->hparams().n_layer + 1}) {
            const Status st = dec->forward_from(bad, x.data(), c.batch, c.kv, c.out);
            EXPECT_EQ(st.code(), StatusCode::invalid_argument) << bad;
        }
        EXPECT_EQ(dec->forward_from(0, nullptr, c.batch, c.kv, c.out).code(), StatusCode::invalid_argument);
    }
}

}  // namespace
}  // namespace hearth::model::test
