// llama4: broken files are clear errors (the golden logits are in golden_test.cpp).
#include "model/model_test_util.h"

namespace hearth::model {
namespace {

TEST(Llama4Load, BrokenFilesAreClearErrors) {
    const test::Broken kBad[] = {
        {"llama4-tiny.F16", "llama4.interleave_moe_layer_step", {}, "", {}, "interleave_moe_layer_step"},
        {"llama4-tiny.F16", "llama4.expert_count", gguf::Value::make_u32(0), "", {}, "zero experts"},
        {"llama4-tiny.F16", "", {}, "blk.3.ffn_up_shexp.weight", {}, "blk.3.ffn_up_shexp.weight"},
        {"llama4-tiny.F16", "", {}, "blk.2.ffn_gate.weight", {256, 128}, "blk.2.ffn_gate.weight"},
    };
    test::expect_clear_errors(kBad);
}

}  // namespace
}  // namespace hearth::model
