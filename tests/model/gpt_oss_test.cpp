// gpt-oss: broken files are clear errors (the golden logits are in golden_test.cpp).
#include "model/model_test_util.h"

namespace hearth::model {
namespace {

TEST(GptOssLoad, BrokenFilesAreClearErrors) {
    using gguf::Value;
    const test::Broken kBad[] = {
        {"gpt-oss-tiny.F16", "gpt-oss.attention.sliding_window", {}, "", {}, "sliding_window"},
        {"gpt-oss-tiny.F16", "gpt-oss.attention.sliding_window", Value::make_u32(0), "", {}, "sliding_window"},
        {"gpt-oss-tiny.F16", "gpt-oss.rope.scaling.type", Value::make_string("dynamic"), "", {}, "dynamic",
         StatusCode::unsupported},
        {"gpt-oss-tiny.F16", "gpt-oss.expert_feed_forward_length", {}, "", {}, "expert_feed_forward_length"},
        {"gpt-oss-tiny.F16", "", {}, "blk.1.attn_sinks.weight", {}, "blk.1.attn_sinks.weight"},
        {"gpt-oss-tiny.F16", "", {}, "blk.0.ffn_up_exps.bias", {}, "blk.0.ffn_up_exps.bias"},
        {"gpt-oss-tiny.F16", "", {}, "blk.0.ffn_gate_exps.weight", {128, 128, 4}, "blk.0.ffn_gate_exps.weight"},
    };
    test::expect_clear_errors(kBad);
}

}  // namespace
}  // namespace hearth::model
