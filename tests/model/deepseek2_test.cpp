// deepseek2: bad metadata is a Status naming the key or tensor, never a crash (the golden
// logits are in golden_test.cpp).
#include "model/model_test_util.h"

namespace hearth::model {
namespace {

TEST(Deepseek2Load, BadMetadataIsAClearError) {
    using gguf::Value;
    constexpr const char* kFile = "deepseek2-tiny.F16";
    const test::Broken kBad[] = {
        {kFile, "deepseek2.expert_group_count", Value::make_u32(3), "", {}, "expert_group_count", StatusCode::corrupt},
        {kFile, "deepseek2.expert_used_count", Value::make_u32(5), "", {}, "expert_group_used_count",
         StatusCode::corrupt},
        {kFile, "deepseek2.expert_gating_func", Value::make_u32(4), "", {}, "expert_gating_func",
         StatusCode::unsupported},
        {kFile, "deepseek2.rope.dimension_count", Value::make_u32(48), "", {}, "rope.dimension_count",
         StatusCode::corrupt},
        {kFile, "deepseek2.rope.scaling.type", Value::make_string("dynamic"), "", {}, "dynamic",
         StatusCode::unsupported},
        {kFile, "deepseek2.attention.kv_lora_rank", Value::make_u32(32), "", {}, "key_length", StatusCode::corrupt},
        {kFile, "deepseek2.attention.q_lora_rank", Value::make_u32(0), "", {}, "q_lora_rank", StatusCode::not_found},
        {kFile, "deepseek2.attention.value_length_mla", Value::make_u32(16), "", {}, "blk.0.attn_v_b.weight",
         StatusCode::corrupt},
        {kFile, "deepseek2.leading_dense_block_count", Value::make_u32(0), "", {}, "blk.0.ffn_gate_inp",
         StatusCode::not_found},
        {kFile, "deepseek2.attention.head_count", Value::make_string("4"), "", {}, "head_count",
         StatusCode::invalid_argument},
    };
    test::expect_clear_errors(kBad);
}

}  // namespace
}  // namespace hearth::model
