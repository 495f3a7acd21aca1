// The families' GPU recipes (model/gpu_recipe.h) read a file's metadata with the code their CPU
// models use: on every shared test model the recipe's hyper-parameters are the CPU model's, and
// broken metadata gives the CPU loader's error. No GPU needed (recipes are plain C++).
#include <gtest/gtest.h>

#include <map>

#include "model/gpu_recipe.h"
#include "model/model_test_util.h"

namespace hearth::model::test {
namespace {

using RecipeFn = Result<GpuRecipe> (*)(const gguf::GgufFile&, const LoadOptions&);
const std::map<std::string, RecipeFn>& recipes() {
    static const std::map<std::string, RecipeFn> kRecipes = {
        {"llama", llama_gpu_recipe},         {"qwen2", qwen2_gpu_recipe},   {"qwen3", qwen3_gpu_recipe},
        {"qwen3moe", qwen3moe_gpu_recipe},   {"gemma3", gemma3_gpu_recipe}, {"phi3", phi3_gpu_recipe},
        {"gpt-oss", gpt_oss_gpu_recipe},     {"llama4", llama4_gpu_recipe}, {"deepseek2", deepseek2_gpu_recipe},
        {"bert", bert_gpu_recipe},
    };
    return kRecipes;
}

const char* const kModels[] = {
    "llama3-tiny.Q4_K_M", "llama2-spm-tiny.F32", "stories260K",        "qwen2-tiny.F16",    "qwen3-tiny.Q8_0",
    "qwen3moe-tiny.F16",  "mixtral-tiny.F16",    "gemma3-tiny.Q8_0",   "phi3-tiny.Q4_K_M",  "gpt-oss-tiny.F16",
    "llama4-tiny.Q8_0",   "deepseek2-tiny.F16",  "bert-bge-tiny.F16",
};

TEST(GpuRecipe, HyperParametersAreTheCpuModels) {
    for (const char* name : kModels) {
        SCOPED_TRACE(name);
        auto file = gguf::open_gguf(hearth::test::testdata_path(std::string("models/") + name + ".gguf"));
        ASSERT_TRUE(file.ok()) << file.status().message();
        LoadOptions o{1};
        o.num_gpu = 0;
        auto cpu = load_model(file.value(), o);
        ASSERT_TRUE(cpu.ok()) << cpu.status().message();
        const Hparams& want = cpu.value()->hparams();
        const auto fn = recipes().find(want.arch);
        ASSERT_NE(fn, recipes().end()) << want.arch;
        auto r = fn->second(*file.value(), o);
        ASSERT_TRUE(r.ok()) << r.status().message();
        const Hparams& hp = r.value().hp;
        EXPECT_EQ(hp.arch, want.arch);
        EXPECT_EQ(hp.n_vocab, want.n_vocab);
        EXPECT_EQ(hp.n_embd, want.n_embd);
        EXPECT_EQ(hp.n_layer, want.n_layer);
        EXPECT_EQ(hp.n_head, want.n_head);
        EXPECT_EQ(hp.n_head_kv, want.n_head_kv);
        EXPECT_EQ(hp.head_dim_k, want.head_dim_k);
        EXPECT_EQ(hp.head_dim_v, want.head_dim_v);
        EXPECT_EQ(hp.n_ff, want.n_ff);
        EXPECT_EQ(hp.n_expert, want.n_expert);
        EXPECT_EQ(hp.n_expert_used, want.n_expert_used);
        EXPECT_EQ(hp.n_ff_exp, want.n_ff_exp);
        EXPECT_EQ(hp.norm_eps, want.norm_eps);
        EXPECT_EQ(hp.n_rot, want.n_rot);
        EXPECT_EQ(hp.rope.neox, want.rope.neox);
        EXPECT_EQ(hp.rope.freq_base, want.rope.freq_base);
        EXPECT_EQ(hp.rope.freq_scale, want.rope.freq_scale);
        EXPECT_EQ(hp.pooling, want.pooling);
        EXPECT_EQ((int)r.value().layers.size(), want.n_layer);
        // What the executor's layer kinds cover: MoE layers only where the model has experts.
        for (const GpuLayerRecipe& l : r.value().layers) EXPECT_TRUE(!l.moe || want.n_expert > 0);
    }
}

// Broken metadata: the recipe fails as the CPU loader does (same code, the same key named).
TEST(GpuRecipe, BrokenMetadataGivesTheCpuLoadersError) {
    const Broken cases[] = {
        {"gemma3-tiny.Q8_0", "gemma3.attention.layer_norm_rms_epsilon", {}, "", {}, "layer_norm_rms_epsilon"},
        {"llama3-tiny.Q4_K_M", "llama.block_count", {}, "", {}, "block_count"},
        {"qwen3moe-tiny.F16", "qwen3moe.embedding_length", gguf::Value::make_string("wide"), "", {}, "embedding_length"},
        {"phi3-tiny.Q4_K_M", "phi3.attention.head_count", gguf::Value::make_u32(7), "", {}, "attention heads"},
        {"gpt-oss-tiny.F16", "gpt-oss.attention.sliding_window", {}, "", {}, "sliding_window"},
        {"llama4-tiny.Q8_0", "llama4.interleave_moe_layer_step", {}, "", {}, "interleave_moe_layer_step"},
        {"deepseek2-tiny.F16", "deepseek2.attention.key_length_mla", {}, "", {}, "key_length_mla"},
        {"bert-bge-tiny.F16", "bert.pooling_type", gguf::Value::make_u32(9), "", {}, "pooling_type"},
    };
    for (const Broken& b : cases) {
        SCOPED_TRACE(testing::Message() << b.model << " " << b.key);
        auto file = broken_file(b);
        ASSERT_TRUE(file.ok()) << file.status().message();
        LoadOptions o{1};
        o.num_gpu = 0;
        const Status cpu = load_model(file.value(), o).status();
        ASSERT_FALSE(cpu.ok());
        auto r = recipes().at(file.value()->architecture())(*file.value(), o);
        ASSERT_FALSE(r.ok());
        EXPECT_EQ(r.status().code(), cpu.code()) << r.status().message() << " / " << cpu.message();
        EXPECT_NE(r.status().message().find(b.expect), std::string::npos) << r.status().message();
        EXPECT_NE(cpu.message().find(r.status().message()), std::string::npos)
            << "CPU: " << cpu.message() << " / recipe: " << r.status().message();
    }
}

}  // namespace
}  // namespace hearth::model::test
