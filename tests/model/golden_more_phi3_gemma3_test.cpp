// phi3 and gemma3 against llama.cpp's reference logits and greedy continuations
// (testdata/README.md §5), plus clear errors for broken metadata and tensors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "model/session.h"
#include "support/testdata.h"

namespace hearth::model {
namespace {

using nlohmann::json;

struct Case {
    const char* file;  // model file name (without .gguf)
    // false: max-abs <= 0.05 and identical top-1 everywhere (activations are quantized like
    // ggml's CPU path, so quantized files match as tightly as F16 ones). true: the file has a
    // Q8_K rounding flip (phi3 Q4_K_M: one layer-0 activation of token 35 sits 4e-6 from a
    // rounding boundary, so last-ulp kernel differences move it; positions 0-34 match to 3e-6),
    // judged like testdata/README.md's quantized-noise rule: mean-abs and top-1 agreement.
    bool rounding_flip;
};

const Case kCases[] = {
    {"phi3-tiny.F16", false},
    {"phi3-tiny.Q4_K_M", true},
    {"gemma3-tiny.F16", false},
    {"gemma3-tiny.Q8_0", false},
};

std::vector<int32_t> ids(const json& a) { return a.get<std::vector<int32_t>>(); }
int32_t argmax(const float* v, int64_t n) { return (int32_t)(std::max_element(v, v + n) - v); }

class GoldenMoreTest : public ::testing::TestWithParam<Case> {};

TEST_P(GoldenMoreTest, LogitsAndGreedyMatchReference) {
    const Case c = GetParam();
    const json g = json::parse(test::read_text_file(test::testdata_path(std::string("golden/") + c.file + ".json")));
    const std::vector<float> ref = test::read_f32_file(test::testdata_path("golden/" + g["logits_file"].get<std::string>()));
    auto file = gguf::open_gguf(test::testdata_path(std::string("models/") + c.file + ".gguf"));
    ASSERT_TRUE(file.ok()) << file.status().message();
    auto model = load_model(file.value(), LoadOptions{2});
    ASSERT_TRUE(model.ok()) << model.status().message();
    const int64_t n_vocab = model.value()->hparams().n_vocab;
    ASSERT_EQ(n_vocab, g["n_vocab"].get<int64_t>());

    const std::vector<int32_t> prompt = ids(g["prompt_tokens"]);
    ASSERT_EQ(ref.size(), prompt.size() * n_vocab);
    auto session = Session::create(*model.value(), 512);  // the goldens' n_ctx
    ASSERT_TRUE(session.ok());
    std::vector<float> logits;
    Status st = session->eval(prompt, true, logits);
    ASSERT_TRUE(st.ok()) << st.message();

    double max_abs = 0.0, sum_abs = 0.0;
    int top1_same = 0;
    for (size_t t = 0; t < prompt.size(); ++t) {
        const float* a = logits.data() + t * n_vocab;
        const float* b = ref.data() + t * n_vocab;
        for (int64_t i = 0; i < n_vocab; ++i) {
            const double d = std::fabs((double)a[i] - b[i]);
            max_abs = std::max(max_abs, d);
            sum_abs += d;
        }
        top1_same += argmax(a, n_vocab) == argmax(b, n_vocab);
    }
    const double mean_abs = sum_abs / ref.size(), top1 = (double)top1_same / prompt.size();
    RecordProperty("max_abs", std::to_string(max_abs));
    RecordProperty("mean_abs", std::to_string(mean_abs));
    std::printf("[ %s ] max-abs %.4g mean-abs %.4g top-1 %.1f%%\n", c.file, max_abs, mean_abs, 100 * top1);
    if (c.rounding_flip) {
        EXPECT_LE(mean_abs, 0.075);
        EXPECT_GE(top1, 0.92);
    } else {
        EXPECT_LE(max_abs, 0.05);
        EXPECT_EQ(top1_same, (int)prompt.size());
    }

    // Greedy continuation up to the first step where the reference's top-2 gap is within the
    // logit tolerance (a near-tie may flip).
    const std::vector<int32_t> want = ids(g["greedy_tokens"]);
    const json& top5 = g["greedy_top5_logits"];
    int32_t next = argmax(logits.data() + (prompt.size() - 1) * n_vocab, n_vocab);
    const double tie = c.rounding_flip ? 0.5 : 0.05;
    size_t step = 0;
    for (; step < want.size(); ++step) {
        if (top5[step][0].get<double>() - top5[step][1].get<double>() < tie) break;
        ASSERT_EQ(next, want[step]) << "greedy step " << step;
        st = session->eval(std::span<const int32_t>(&next, 1), false, logits);
        ASSERT_TRUE(st.ok()) << st.message();
        next = argmax(logits.data(), n_vocab);
    }
    std::printf("[ %s ] greedy: %zu of %zu tokens compared and equal\n", c.file, step, want.size());
}

INSTANTIATE_TEST_SUITE_P(Models, GoldenMoreTest, ::testing::ValuesIn(kCases), [](const auto& info) {
    std::string n = info.param.file;
    std::replace_if(n.begin(), n.end(), [](char ch) { return !std::isalnum((unsigned char)ch); }, '_');
    return n;
});

// Loads a copy of `model` without the metadata key `drop_key` and with tensor `bad_tensor`
// removed (shape empty) or given shape `bad_ne`; returns the load status.
Status load_mutated(const char* model, const std::string& drop_key, const std::string& bad_tensor,
                    std::vector<int64_t> bad_ne = {}) {
    auto src = gguf::open_gguf(test::testdata_path(std::string("models/") + model + ".gguf"));
    if (!src.ok()) return src.status();
    gguf::GgufWriter w;
    for (const auto& [key, v] : src.value()->meta.entries())
        if (key != drop_key) w.set(key, v);
    for (const gguf::TensorInfo& t : src.value()->tensors) {
        std::vector<int64_t> ne(t.ne, t.ne + t.n_dims);
        if (t.name == bad_tensor && bad_ne.empty()) continue;
        if (t.name == bad_tensor) ne = bad_ne;  // same element count, different shape
        HEARTH_TRY(w.add_tensor(t.name, t.type, ne, std::span(t.data, t.n_bytes)));
    }
    HEARTH_ASSIGN(std::vector<std::byte> bytes, w.serialize());
    HEARTH_ASSIGN(gguf::GgufFile parsed, gguf::parse_gguf(bytes));
    return load_model(std::make_shared<gguf::GgufFile>(std::move(parsed)), LoadOptions{1}).status();
}

TEST(GoldenMoreErrors, BrokenFilesAreClearErrors) {
    struct Bad {
        const char* model;
        std::string drop_key, tensor;
        std::vector<int64_t> ne;
        const char* expect;  // substring of the message
    };
    const Bad kBad[] = {
        {"phi3-tiny.F16", "phi3.attention.layer_norm_rms_epsilon", "", {}, "layer_norm_rms_epsilon"},
        {"phi3-tiny.F16", "", "blk.1.ffn_up.weight", {}, "blk.1.ffn_up.weight"},
        {"phi3-tiny.F16", "", "blk.0.attn_qkv.weight", {}, "blk.0.attn_q.weight"},
        {"phi3-tiny.F16", "", "blk.1.ffn_up.weight", {512, 256}, "blk.1.ffn_up.weight"},
        {"gemma3-tiny.F16", "gemma3.attention.layer_norm_rms_epsilon", "", {}, "layer_norm_rms_epsilon"},
        {"gemma3-tiny.F16", "", "blk.3.post_ffw_norm.weight", {}, "blk.3.post_ffw_norm.weight"},
        {"gemma3-tiny.F16", "", "blk.0.attn_q.weight", {96, 128}, "blk.0.attn_q.weight"},
    };
    for (const Bad& b : kBad) {
        Status st = load_mutated(b.model, b.drop_key, b.tensor, b.ne);
        EXPECT_FALSE(st.ok()) << b.model << " " << b.drop_key << b.tensor;
        EXPECT_NE(st.message().find(b.expect), std::string::npos) << st.message();
    }
}

}  // namespace
}  // namespace hearth::model
