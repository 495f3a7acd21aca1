// phi3: broken files are clear errors (the golden logits are in golden_test.cpp).
#include "model/model_test_util.h"

namespace hearth::model {
namespace {

TEST(Phi3Load, BrokenFilesAreClearErrors) {
    const test::Broken kBad[] = {
        {"phi3-tiny.F16", "phi3.attention.layer_norm_rms_epsilon", {}, "", {}, "layer_norm_rms_epsilon"},
        {"phi3-tiny.F16", "", {}, "blk.1.ffn_up.weight", {}, "blk.1.ffn_up.weight"},
        {"phi3-tiny.F16", "", {}, "blk.0.attn_qkv.weight", {}, "blk.0.attn_q.weight"},
        {"phi3-tiny.F16", "", {}, "blk.1.ffn_up.weight", {512, 256}, "blk.1.ffn_up.weight"},
    };
    test::expect_clear_errors(kBad);
}

}  // namespace
}  // namespace hearth::model
