// gemma3: broken files are clear errors (the golden logits are in golden_test.cpp).
#include "model/model_test_util.h"

namespace hearth::model {
namespace {

TEST(Gemma3Load, BrokenFilesAreClearErrors) {
    const test::Broken kBad[] = {
        {"gemma3-tiny.F16", "gemma3.attention.layer_norm_rms_epsilon", {}, "", {}, "layer_norm_rms_epsilon"},
        {"gemma3-tiny.F16", "", {}, "blk.3.post_ffw_norm.weight", {}, "blk.3.post_ffw_norm.weight"},
        {"gemma3-tiny.F16", "", {}, "blk.0.attn_q.weight", {96, 128}, "blk.0.attn_q.weight"},
    };
    test::expect_clear_errors(kBad);
}

}  // namespace
}  // namespace hearth::model
