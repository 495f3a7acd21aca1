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

// llama3-tiny.Q4_K_M (2 layers), loaded on the CPU for its hyperparameters and KV layout.
void open_tiny(std::shared_ptr<gguf::GgufFile>& file, std::unique_ptr<Model>& model) {
    auto f = gguf::open_gguf(hearth::test::testdata_path("models/llama3-tiny.Q4_K_M.gguf"));
    ASSERT_TRUE(f.ok()) << f.status().message();
    LoadOptions o{1};
    o.num_gpu = 0;
    auto m = load_model(f.value(), o);
    ASSERT_TRUE(m.ok()) << m.status().message();
    file = std::move(f).value();
    model = std::move(m).value();
}

TEST(GpuPlan, TakesTheLayersThatFit) {
    std::shared_ptr<gguf::GgufFile> file;
    std::unique_ptr<Model> model;
    ASSERT_NO_FATAL_FAILURE(open_tiny(file, model));
    const Hparams& hp = model->hparams();
    ASSERT_EQ(hp.n_layer, 2);

    // The sizes by hand: layer tensors, the output matrix, everything else.
    int64_t layer[2] = {0, 0}, output = 0, fixed = 0;
    for (const gguf::TensorInfo& t : file->tensors) {
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
            plan_gpu_layers(*file, model->kv_layout(), cuda_working_bytes(hp), w.free, positions);
        EXPECT_EQ(p.n_layers, w.n_layers) << "free " << w.free;
        EXPECT_EQ(p.output, w.output) << "free " << w.free;
    }
}

TEST(GpuPlan, PromptStepsAsLargeAsTheirActivationsAllow) {
    // 768 MiB of activations, in multiples of 512 tokens from 512 to 8192.
    EXPECT_EQ(cuda_prefill_tokens(4096, 14336, 4096), 3584);  // Llama-3.1-8B
    EXPECT_EQ(cuda_prefill_tokens(2048, 8192, 2048), 6656);   // Llama-3.2-1B
    EXPECT_EQ(cuda_prefill_tokens(8192, 28672, 8192), 1536);  // Llama-3.1-70B
    EXPECT_EQ(cuda_prefill_tokens(64, 256, 64), 8192);
    EXPECT_EQ(cuda_prefill_tokens(16384, 65536, 16384), 512);
    EXPECT_GT(cuda_working_bytes(4096, 14336, 4096, 128256, 3584), cuda_working_bytes(4096, 14336, 4096, 128256));

    std::shared_ptr<gguf::GgufFile> file;
    std::unique_ptr<Model> model;
    ASSERT_NO_FATAL_FAILURE(open_tiny(file, model));
    const Hparams& hp = model->hparams();
    const KvLayout kv = model->kv_layout();
    const int64_t q_dim = (int64_t)hp.n_head * hp.head_dim_k;
    const int64_t big = cuda_prefill_tokens(hp.n_embd, hp.n_ff, q_dim);
    ASSERT_GT(big, 512);
    auto place = [&](int64_t free) {
        return plan_gpu_placement(*file, kv, hp.n_embd, hp.n_ff, q_dim, hp.n_vocab, free);
    };
    // The smallest memory the whole model fits in with each step's working memory.
    auto least_full = [&](int64_t step) {
        const int64_t w = cuda_working_bytes(hp.n_embd, hp.n_ff, q_dim, hp.n_vocab, step);
        int64_t lo = 0, hi = 1ll << 40;
        while (lo < hi) {
            const int64_t mid = lo + (hi - lo) / 2;
            const GpuLayerPlan p = plan_gpu_layers(*file, kv, w, mid);
            if (p.n_layers == hp.n_layer && p.output) hi = mid;
            else lo = mid + 1;
        }
        return lo;
    };
    const int64_t full_small = least_full(512), full_big = least_full(big);
    ASSERT_LT(full_small, full_big);
    // Room for the larger steps: they are planned; room only for 512-token steps: the whole
    // model still goes on the GPU, with those; less: the partial plan of 512-token steps.
    EXPECT_EQ(place(full_big).step_tokens, big);
    EXPECT_TRUE(place(full_big).output);
    EXPECT_EQ(place(full_big - 1).step_tokens, 512);
    EXPECT_TRUE(place(full_big - 1).output);
    EXPECT_EQ(place(full_small).n_layers, hp.n_layer);
    EXPECT_FALSE(place(full_small - 1).output);
    EXPECT_EQ(place(full_small - 1).step_tokens, 512);
}

TEST(GpuPlan, SplitLayersInProportion) {
    EXPECT_EQ(split_layers(32, {1, 1}), (std::vector<int>{16, 16}));
    EXPECT_EQ(split_layers(32, {3, 1}), (std::vector<int>{24, 8}));
    EXPECT_EQ(split_layers(2, {1, 1}), (std::vector<int>{1, 1}));
    EXPECT_EQ(split_layers(5, {1, 1, 1}), (std::vector<int>{2, 1, 2}));  // cumulative rounding: 1.67, 3.33, 5
    EXPECT_EQ(split_layers(32, {0, 1}), (std::vector<int>{0, 32}));
    EXPECT_EQ(split_layers(32, {1, 0}), (std::vector<int>{32, 0}));
    EXPECT_EQ(split_layers(32, {0, 0}), (std::vector<int>{0, 0}));
    EXPECT_EQ(split_layers(32, {-1, 2}), (std::vector<int>{0, 32}));
    EXPECT_EQ(split_layers(48, {80e9, 80e9, 24e9}), (std::vector<int>{21, 21, 6}));
    for (int n : {1, 7, 61}) {
        const std::vector<int> c = split_layers(n, {0.3, 0.5, 0.2});
        EXPECT_EQ(c[0] + c[1] + c[2], n);
    }
}

TEST(GpuPlan, SplitOverDevicesWhenEachShareFits) {
    std::shared_ptr<gguf::GgufFile> file;
    std::unique_ptr<Model> model;
    ASSERT_NO_FATAL_FAILURE(open_tiny(file, model));
    const Hparams& hp = model->hparams();
    const KvLayout kv = model->kv_layout();
    ASSERT_EQ(hp.n_layer, 2);
    const int64_t q_dim = (int64_t)hp.n_head * hp.head_dim_k;
    const LayerBytes b = layer_bytes(*file, hp.n_layer);
    const int64_t working = cuda_working_bytes(hp.n_embd, hp.n_ff, q_dim, hp.n_vocab);
    auto need = [&](int l, bool last) {  // one layer on a device of its own
        return working + b.fixed + b.layer[l] + 4096ll * (kv.k_width[l] + kv.v_width[l]) * 2 + (last ? b.output : 0);
    };
    auto split = [&](std::vector<int64_t> free) {
        return plan_gpu_split(*file, kv, hp.n_embd, hp.n_ff, q_dim, hp.n_vocab, free);
    };
    EXPECT_EQ(split({need(0, false), need(1, true)}), (std::vector<int>{1, 1}));
    EXPECT_EQ(split({need(0, false) - 1, need(1, true)}), std::vector<int>{});  // device 0 one byte short
    EXPECT_EQ(split({need(0, false), need(1, true) - 1}), std::vector<int>{});  // the output does not fit
    EXPECT_EQ(split({need(0, false)}), std::vector<int>{});                     // one device: no split
    EXPECT_EQ(split({1ll << 40, need(1, true)}), std::vector<int>{});           // all on device 0: not a split
    EXPECT_EQ(split({1ll << 40, 1ll << 40}), (std::vector<int>{1, 1}));
    EXPECT_EQ(split({1ll << 40, 1ll << 40, 1ll << 40}).size(), 3u);
}

}  // namespace
}  // namespace hearth::model::test
