// plan_gpu_layers (model/cuda_decoder.h): how many leading layers a partial offload puts on
// the GPU for a given amount of free device memory. Pure arithmetic over the file's tensor
// sizes, so it runs (and is checked) on machines without a GPU.
#include <gtest/gtest.h>

#include <cstdio>

#include "model/cuda_decoder.h"
#include "model/model_test_util.h"

namespace hearth::model::test {
namespace {

int64_t padded(const gguf::TensorInfo& t) { return (int64_t)((t.n_bytes + 15) & ~(uint64_t)15) + 16; }

TEST(GpuPlan, TakesTheLayersThatFit) {
    auto file = gguf::open_gguf(hearth::test::testdata_path("models/llama3-tiny.Q4_K_M.gguf"));
    ASSERT_TRUE(file.ok()) << file.status().message();
    LoadOptions o{1};
    o.num_gpu = 0;
    auto m = load_model(file.value(), o);
    ASSERT_TRUE(m.ok()) << m.status().message();
    const Hparams& hp = m.value()->hparams();
    ASSERT_EQ(hp.n_layer, 2);

    // The sizes by hand: layer tensors, the output matrix, everything else.
    int64_t layer[2] = {0, 0}, output = 0, fixed = 0;
    for (const gguf::TensorInfo& t : file.value()->tensors) {
        if (t.name.rfind("blk.0.", 0) == 0) layer[0] += padded(t);
        else if (t.name.rfind("blk.1.", 0) == 0) layer[1] += padded(t);
        else if (t.name == "output.weight") output += padded(t);
        else fixed += padded(t);
    }
    ASSERT_GT(layer[0], 0);
    ASSERT_GT(layer[1], 0);
    const int64_t positions = 1000;
    const int64_t kv = positions * hp.n_head_kv * (hp.head_dim_k + hp.head_dim_v) * 2;
    const int64_t base = cuda_working_bytes(hp) + fixed;
    EXPECT_GT(cuda_working_bytes(hp), 1ll << 30);

    struct Want {
        int64_t free;
        int n_layers;
        bool output;
    };
    const Want cases[] = {
        {0, 0, false},
        {base, 0, false},
        {base + layer[0] + kv - 1, 0, false},
        {base + layer[0] + kv, 1, false},
        {base + layer[0] + layer[1] + 2 * kv - 1, 1, false},
        {base + layer[0] + layer[1] + 2 * kv, 2, output == 0},
        {base + layer[0] + layer[1] + 2 * kv + output, 2, true},
        {1ll << 50, 2, true},
    };
    for (const Want& w : cases) {
        const GpuLayerPlan p =
            plan_gpu_layers(*file.value(), m.value()->kv_layout(), cuda_working_bytes(hp), w.free, positions);
        EXPECT_EQ(p.n_layers, w.n_layers) << "free " << w.free;
        EXPECT_EQ(p.output, w.output) << "free " << w.free;
    }
}

}  // namespace
}  // namespace hearth::model::test
