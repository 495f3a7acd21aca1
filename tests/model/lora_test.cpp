// LoRA adapters (model/lora.h) applied at load as low-rank deltas on ops::Weight: the ops-level
// product against a dense W + scale·B·A, a tiny model with an adapter against the same model
// with the adapter merged into its F32 weights (the logits must agree), stacking, the flipped
// token_embd pair with a tied output, quantized factors, and the errors of bad adapters.
#include "model/lora.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>

#include "ops/ops.h"
#include "support/lora_fixture.h"

namespace hearth::model {
namespace {

namespace fs = std::filesystem;
using quant::QuantType;

// ---- ops level ----

std::vector<float> randn(std::mt19937& rng, int64_t n, float sd) {
    std::normal_distribution<float> d(0.0f, sd);
    std::vector<float> v(n);
    for (float& x : v) x = d(rng);
    return v;
}

ops::MatrixView f32_view(const std::vector<float>& v, int64_t n_in, int64_t n_out) {
    return {QuantType::f32, reinterpret_cast<const std::byte*>(v.data()), n_in, n_out, (size_t)n_in * sizeof(float)};
}

// Dense W' = W + sum scale_k * B_k·A_k, [n_out][n_in], in double.
std::vector<double> dense(const std::vector<float>& W, const std::vector<const std::vector<float>*>& As,
                          const std::vector<const std::vector<float>*>& Bs, const std::vector<float>& scales, int64_t n_in,
                          int64_t n_out, int64_t rank) {
    std::vector<double> out(W.begin(), W.end());
    for (size_t k = 0; k < As.size(); ++k)
        for (int64_t o = 0; o < n_out; ++o)
            for (int64_t i = 0; i < n_in; ++i) {
                double s = 0.0;
                for (int64_t r = 0; r < rank; ++r) s += (double)(*Bs[k])[o * rank + r] * (*As[k])[r * n_in + i];
                out[o * n_in + i] += scales[k] * s;
            }
    return out;
}

TEST(LoraOps, MatmulAndGetRowsAddTheScaledLowRankProducts) {
    const int64_t n_in = 96, n_out = 80, rank = 8, n_tok = 5;
    std::mt19937 rng(3);
    const auto W = randn(rng, n_out * n_in, 0.1f), x = randn(rng, n_tok * n_in, 1.0f);
    const auto A1 = randn(rng, rank * n_in, 0.1f), B1 = randn(rng, n_out * rank, 0.2f);
    const auto A2 = randn(rng, rank * n_in, 0.1f), B2 = randn(rng, n_out * rank, 0.2f);
    ops::Weight w;
    w.type = QuantType::f32;
    w.data = reinterpret_cast<const std::byte*>(W.data());
    w.ne[0] = n_in, w.ne[1] = n_out;
    w.row_bytes = n_in * sizeof(float);
    w.deltas.push_back({f32_view(A1, n_in, rank), f32_view(B1, rank, n_out), 0.75f});
    w.deltas.push_back({f32_view(A2, n_in, rank), f32_view(B2, rank, n_out), -1.5f});
    const auto Wd = dense(W, {&A1, &A2}, {&B1, &B2}, {0.75f, -1.5f}, n_in, n_out, rank);

    ops::Ops ops(2);
    std::vector<float> y(n_tok * n_out), y_base(n_tok * n_out);
    ops.matmul(w, x.data(), y.data(), n_tok);
    ops::Weight plain = w;
    plain.deltas.clear();
    ops.matmul(plain, x.data(), y_base.data(), n_tok);
    double moved = 0.0;
    for (int64_t t = 0; t < n_tok; ++t)
        for (int64_t o = 0; o < n_out; ++o) {
            double want = 0.0;
            for (int64_t i = 0; i < n_in; ++i) want += Wd[o * n_in + i] * x[t * n_in + i];
            const float got = y[t * n_out + o];
            EXPECT_NEAR(got, want, 1e-4 * std::max(1.0, std::fabs(want))) << "token " << t << " row " << o;
            moved = std::max(moved, (double)std::fabs(got - y_base[t * n_out + o]));
        }
    EXPECT_GT(moved, 0.1) << "the deltas must change the product";

    const int32_t ids[] = {0, 79, 13, 13};
    std::vector<float> rows(4 * n_in);
    ops.get_rows(w, ids, 4, rows.data());
    for (int k = 0; k < 4; ++k)
        for (int64_t i = 0; i < n_in; ++i)
            EXPECT_NEAR(rows[k * n_in + i], Wd[ids[k] * n_in + i], 1e-5) << "row " << ids[k] << " col " << i;
}

TEST(LoraOps, QuantizedFactors) {
    // F16, BF16 and Q8_0 factors: the product uses what they hold; the activations are
    // converted to the factor's dot type as for any weight, hence the tolerance.
    const int64_t n_in = 64, n_out = 48, rank = 32, n_tok = 3;
    for (QuantType type : {QuantType::f16, QuantType::bf16, QuantType::q8_0}) {
        std::mt19937 rng(5);
        auto W = randn(rng, n_out * n_in, 0.1f), x = randn(rng, n_tok * n_in, 1.0f);
        auto A = randn(rng, rank * n_in, 0.1f), B = randn(rng, n_out * rank, 0.2f);
        const auto Ab = test::store_as(type, A, n_in), Bb = test::store_as(type, B, rank);
        ops::Weight w;
        w.type = QuantType::f32;
        w.data = reinterpret_cast<const std::byte*>(W.data());
        w.ne[0] = n_in, w.ne[1] = n_out;
        w.row_bytes = n_in * sizeof(float);
        w.deltas.push_back({{type, Ab.data(), n_in, rank, quant::row_size(type, n_in)},
                            {type, Bb.data(), rank, n_out, quant::row_size(type, rank)},
                            0.5f});
        const auto Wd = dense(W, {&A}, {&B}, {0.5f}, n_in, n_out, rank);
        ops::Ops ops(1);
        std::vector<float> y(n_tok * n_out);
        ops.matmul(w, x.data(), y.data(), n_tok);
        for (int64_t t = 0; t < n_tok; ++t)
            for (int64_t o = 0; o < n_out; ++o) {
                double want = 0.0;
                for (int64_t i = 0; i < n_in; ++i) want += Wd[o * n_in + i] * x[t * n_in + i];
                EXPECT_NEAR(y[t * n_out + o], want, 0.03 * std::max(1.0, std::fabs(want))) << quant::type_name(type);
            }
    }
}

// ---- model level ----

class LoraModelTest : public ::testing::Test {
protected:
    void SetUp() override {
        const std::string test = ::testing::UnitTest::GetInstance()->current_test_info()->name();
        dir_ = fs::temp_directory_path() / ("hearth-lora-test-" + std::to_string(::getpid()) + "-" + test);
        fs::remove_all(dir_);
        fs::create_directories(dir_);
    }
    void TearDown() override { fs::remove_all(dir_); }
    std::string path(const std::string& name) const { return (dir_ / name).string(); }

    std::shared_ptr<gguf::GgufFile> base(bool untied, const std::string& preset = "llama-tiny") {
        const std::string p = path("base.gguf");
        if (!test::write_tiny_base(p, untied, preset)) return nullptr;
        auto f = gguf::open_gguf(p);
        EXPECT_TRUE(f.ok()) << f.status().message();
        return f.ok() ? *f : nullptr;
    }

    // Loading base + adapters fails with a message containing `part`.
    void expect_load_error(const std::vector<std::string>& adapters, const std::string& part) {
        Status st;
        const auto logits = test::lora_logits(path("base.gguf"), adapters, &st);
        EXPECT_TRUE(logits.empty());
        EXPECT_FALSE(st.ok());
        EXPECT_NE(st.message().find(part), std::string::npos) << st.message();
    }

    fs::path dir_;
};

const std::vector<std::string> kEveryKind = {
    "token_embd.weight",       "blk.0.attn_q.weight",    "blk.0.attn_k.weight",    "blk.0.attn_v.weight",
    "blk.0.attn_output.weight", "blk.0.ffn_gate.weight", "blk.1.ffn_up.weight",    "blk.1.ffn_down.weight",
    "blk.1.attn_q.weight",     "output.weight"};

TEST_F(LoraModelTest, AdapterGivesTheMergedModelsLogits) {
    auto b = base(/*untied=*/true);
    ASSERT_TRUE(b);
    const auto spec = test::write_lora(path("lora.gguf"), *b, kEveryKind);
    ASSERT_TRUE(test::write_merged(path("merged.gguf"), *b, {spec}));
    std::string note;
    const auto with = test::lora_logits(path("base.gguf"), {spec.path}, nullptr, &note);
    const auto merged = test::lora_logits(path("merged.gguf"), {});
    const auto plain = test::lora_logits(path("base.gguf"), {});
    ASSERT_FALSE(with.empty());
    EXPECT_LE(test::max_abs_diff(with, merged), 1e-3);
    EXPECT_GT(test::max_abs_diff(with, plain), 0.05) << "the adapter must change the logits";
    EXPECT_NE(note.find("LoRA adapters are applied on the CPU only"), std::string::npos) << note;
}

TEST_F(LoraModelTest, AdaptersStack) {
    auto b = base(true);
    ASSERT_TRUE(b);
    test::LoraOptions o1, o2;
    o2.seed = 2, o2.rank = 4, o2.alpha = 0.0f;  // no alpha: scale 1
    const auto s1 = test::write_lora(path("a.gguf"), *b, {"blk.0.attn_q.weight", "blk.1.ffn_down.weight"}, o1);
    const auto s2 = test::write_lora(path("b.gguf"), *b, {"blk.0.attn_q.weight", "output.weight"}, o2);
    ASSERT_TRUE(test::write_merged(path("merged.gguf"), *b, {s1, s2}));
    const auto with = test::lora_logits(path("base.gguf"), {s1.path, s2.path});
    const auto merged = test::lora_logits(path("merged.gguf"), {});
    const auto only1 = test::lora_logits(path("base.gguf"), {s1.path});
    ASSERT_FALSE(with.empty());
    EXPECT_LE(test::max_abs_diff(with, merged), 1e-3);
    EXPECT_GT(test::max_abs_diff(with, only1), 0.01) << "the second adapter must count";
}

TEST_F(LoraModelTest, FlippedTokenEmbdPairAlsoAdaptsATiedOutput) {
    auto b = base(/*untied=*/false);
    ASSERT_TRUE(b);
    ASSERT_EQ(b->find_tensor("output.weight"), nullptr);
    test::LoraOptions o;
    o.a_sd = 0.02f, o.b_sd = 0.05f;
    const auto spec = test::write_lora(path("lora.gguf"), *b, {"token_embd.weight", "blk.1.attn_v.weight"}, o);
    ASSERT_TRUE(test::write_merged(path("merged.gguf"), *b, {spec}));
    const auto with = test::lora_logits(path("base.gguf"), {spec.path});
    const auto merged = test::lora_logits(path("merged.gguf"), {});
    const auto plain = test::lora_logits(path("base.gguf"), {});
    ASSERT_FALSE(with.empty());
    EXPECT_LE(test::max_abs_diff(with, merged), 1e-3);
    EXPECT_GT(test::max_abs_diff(with, plain), 0.01);
}

TEST_F(LoraModelTest, QuantizedAdapters) {
    auto b = base(true);
    ASSERT_TRUE(b);
    // The factors' dot products take activations converted to f16/bf16/q8_0, so the logits
    // stay within a small share of the adapter's effect (measured: 0.02%, 0.14%, 0.5%).
    const std::pair<QuantType, double> kCases[] = {{QuantType::f16, 0.002}, {QuantType::bf16, 0.005}, {QuantType::q8_0, 0.01}};
    for (const auto& [type, share] : kCases) {
        test::LoraOptions o;
        o.type = type;
        o.rank = 32;  // Q8_0 rows of lora_b are rank long: a whole block
        o.alpha = 64.0f;
        const auto spec = test::write_lora(path("lora.gguf"), *b, kEveryKind, o);
        ASSERT_TRUE(test::write_merged(path("merged.gguf"), *b, {spec}));
        const auto with = test::lora_logits(path("base.gguf"), {spec.path});
        const auto merged = test::lora_logits(path("merged.gguf"), {});
        const auto plain = test::lora_logits(path("base.gguf"), {});
        ASSERT_FALSE(with.empty()) << quant::type_name(type);
        const double effect = test::max_abs_diff(with, plain);
        EXPECT_GT(effect, 0.1) << quant::type_name(type);
        EXPECT_LE(test::max_abs_diff(with, merged), share * effect) << quant::type_name(type);
    }
}

TEST_F(LoraModelTest, BadAdaptersAreClearErrors) {
    auto b = base(true);
    ASSERT_TRUE(b);
    // Wrong shape: an adapter made for a wider model.
    {
        gguf::GgufWriter w;
        w.set("general.architecture", gguf::Value::make_string("llama"));
        w.set("general.type", gguf::Value::make_string("adapter"));
        w.set("adapter.type", gguf::Value::make_string("lora"));
        std::vector<float> a(512 * 8, 0.01f), bb(8 * 256, 0.01f);
        ASSERT_TRUE(w.add_tensor("blk.0.attn_q.weight.lora_a", QuantType::f32, {512, 8}, std::as_bytes(std::span(a))).ok());
        ASSERT_TRUE(w.add_tensor("blk.0.attn_q.weight.lora_b", QuantType::f32, {8, 256}, std::as_bytes(std::span(bb))).ok());
        ASSERT_TRUE(w.write_file(path("shape.gguf")).ok());
        expect_load_error({path("shape.gguf")}, "tensor blk.0.attn_q.weight: blk.0.attn_q.weight.lora_a [512, 8]");
    }
    // A tensor the base does not have (layer 7 of a 2-layer model).
    {
        gguf::GgufWriter w;
        w.set("general.architecture", gguf::Value::make_string("llama"));
        w.set("general.type", gguf::Value::make_string("adapter"));
        w.set("adapter.type", gguf::Value::make_string("lora"));
        std::vector<float> a(256 * 8, 0.01f), bb(8 * 256, 0.01f);
        ASSERT_TRUE(w.add_tensor("blk.7.attn_q.weight.lora_a", QuantType::f32, {256, 8}, std::as_bytes(std::span(a))).ok());
        ASSERT_TRUE(w.add_tensor("blk.7.attn_q.weight.lora_b", QuantType::f32, {8, 256}, std::as_bytes(std::span(bb))).ok());
        ASSERT_TRUE(w.write_file(path("unknown.gguf")).ok());
        expect_load_error({path("unknown.gguf")}, "tensors blk.7.attn_q.weight.lora_a/.lora_b adapt blk.7.attn_q.weight");
    }
    // Another architecture.
    test::LoraOptions qwen;
    qwen.arch = "qwen2";
    test::write_lora(path("arch.gguf"), *b, {"blk.0.attn_q.weight"}, qwen);
    expect_load_error({path("arch.gguf")}, "it is for architecture qwen2, the model is llama");
    // Not an adapter: the base model itself, and a GGUF whose general.type says model.
    expect_load_error({path("base.gguf")}, "not a LoRA adapter: general.type is \"model\"");
    test::LoraOptions no_type;
    no_type.general_type = "";
    test::write_lora(path("untyped.gguf"), *b, {"blk.0.attn_q.weight"}, no_type);
    expect_load_error({path("untyped.gguf")}, "not a LoRA adapter: general.type is missing");
    // Corrupt: garbage, a truncated adapter, a missing file.
    std::ofstream(path("garbage.gguf")) << "GGUF but not really";
    expect_load_error({path("garbage.gguf")}, "garbage.gguf");
    test::write_lora(path("full.gguf"), *b, {"blk.0.attn_q.weight"});
    fs::copy_file(path("full.gguf"), path("cut.gguf"));
    fs::resize_file(path("cut.gguf"), fs::file_size(path("full.gguf")) - 100);
    expect_load_error({path("cut.gguf")}, "cut.gguf");
    expect_load_error({path("missing.gguf")}, "missing.gguf");
    // Half a pair; a norm (1-D) adapted.
    {
        gguf::GgufWriter w;
        w.set("general.architecture", gguf::Value::make_string("llama"));
        w.set("general.type", gguf::Value::make_string("adapter"));
        w.set("adapter.type", gguf::Value::make_string("lora"));
        std::vector<float> a(256 * 8, 0.01f);
        ASSERT_TRUE(w.add_tensor("blk.0.attn_q.weight.lora_a", QuantType::f32, {256, 8}, std::as_bytes(std::span(a))).ok());
        ASSERT_TRUE(w.write_file(path("half.gguf")).ok());
        expect_load_error({path("half.gguf")}, "tensor blk.0.attn_q.weight.lora_a has no .lora_b");
    }
    {
        gguf::GgufWriter w;
        w.set("general.architecture", gguf::Value::make_string("llama"));
        w.set("general.type", gguf::Value::make_string("adapter"));
        w.set("adapter.type", gguf::Value::make_string("lora"));
        std::vector<float> a(256 * 8, 0.01f), bb(8, 0.01f);
        ASSERT_TRUE(w.add_tensor("blk.0.attn_norm.weight.lora_a", QuantType::f32, {256, 8}, std::as_bytes(std::span(a))).ok());
        ASSERT_TRUE(w.add_tensor("blk.0.attn_norm.weight.lora_b", QuantType::f32, {8, 1}, std::as_bytes(std::span(bb))).ok());
        ASSERT_TRUE(w.write_file(path("norm.gguf")).ok());
        expect_load_error({path("norm.gguf")}, "tensor blk.0.attn_norm.weight: a LoRA adapter adapts it, but it is a 1-D tensor");
    }
    // A stray tensor.
    {
        gguf::GgufWriter w;
        w.set("general.architecture", gguf::Value::make_string("llama"));
        w.set("general.type", gguf::Value::make_string("adapter"));
        w.set("adapter.type", gguf::Value::make_string("lora"));
        std::vector<float> a(256, 0.01f);
        ASSERT_TRUE(w.add_tensor("blk.0.attn_q.weight", QuantType::f32, {256}, std::as_bytes(std::span(a))).ok());
        ASSERT_TRUE(w.write_file(path("stray.gguf")).ok());
        expect_load_error({path("stray.gguf")}, "tensor blk.0.attn_q.weight is neither a .lora_a nor a .lora_b tensor");
    }
    // The good adapter still loads after all that.
    EXPECT_FALSE(test::lora_logits(path("base.gguf"), {path("full.gguf")}).empty());
}

TEST_F(LoraModelTest, ExpertStacksAreRefused) {
    auto b = base(false, "qwen3moe-tiny");
    ASSERT_TRUE(b);
    gguf::GgufWriter w;
    w.set("general.architecture", gguf::Value::make_string("qwen3moe"));
    w.set("general.type", gguf::Value::make_string("adapter"));
    w.set("adapter.type", gguf::Value::make_string("lora"));
    const gguf::TensorInfo* t = b->find_tensor("blk.0.ffn_gate_exps.weight");
    ASSERT_NE(t, nullptr);
    std::vector<float> a(t->ne[0] * 8, 0.01f), bb(8 * t->ne[1], 0.01f);
    ASSERT_TRUE(w.add_tensor("blk.0.ffn_gate_exps.weight.lora_a", QuantType::f32, {t->ne[0], 8}, std::as_bytes(std::span(a))).ok());
    ASSERT_TRUE(w.add_tensor("blk.0.ffn_gate_exps.weight.lora_b", QuantType::f32, {8, t->ne[1]}, std::as_bytes(std::span(bb))).ok());
    ASSERT_TRUE(w.write_file(path("exps.gguf")).ok());
    Status st;
    EXPECT_TRUE(test::lora_logits(path("base.gguf"), {path("exps.gguf")}, &st).empty());
    EXPECT_EQ(st.code(), StatusCode::unsupported) << st.message();
    EXPECT_NE(st.message().find("blk.0.ffn_gate_exps.weight: LoRA on expert (3-D) weights is not supported"),
              std::string::npos)
        << st.message();
}

TEST_F(LoraModelTest, CheckAgainstABaseFileWithoutLoading) {
    auto b = base(true);
    ASSERT_TRUE(b);
    test::write_lora(path("good.gguf"), *b, kEveryKind);
    auto good = open_lora_adapter(path("good.gguf"));
    ASSERT_TRUE(good.ok()) << good.status().message();
    EXPECT_EQ(good->pairs.size(), kEveryKind.size());
    EXPECT_FLOAT_EQ(good->alpha, 16.0f);
    EXPECT_TRUE(check_lora_against(*good, *b).ok());

    // The same adapter against a tied model (no output.weight) and another architecture.
    ASSERT_TRUE(test::write_tiny_base(path("tied.gguf"), false));
    auto tied = gguf::open_gguf(path("tied.gguf"));
    ASSERT_TRUE(tied.ok());
    Status st = check_lora_against(*good, **tied);
    EXPECT_NE(st.message().find("tensor output.weight is not in the base model"), std::string::npos) << st.message();
    ASSERT_TRUE(test::write_tiny_base(path("qwen.gguf"), false, "qwen3-tiny"));
    auto qwen = gguf::open_gguf(path("qwen.gguf"));
    ASSERT_TRUE(qwen.ok());
    st = check_lora_against(*good, **qwen);
    EXPECT_NE(st.message().find("it is for architecture llama, the model is qwen3"), std::string::npos) << st.message();
}

}  // namespace
}  // namespace hearth::model
