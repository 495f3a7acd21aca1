// hearth synth (model/synth.h): random-weight models must load and run in hearth, have the
// requested shapes, be reproducible, and match what llama.cpp's converter and llama-quantize
// write for the same shapes (tensor names, shapes, metadata keys, per-tensor mix types), using
// the shared test data's tiny models as the reference.
#include "model/synth.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <map>

#include "model/session.h"
#include "support/testdata.h"
#include "tokenizer/tokenizer.h"

namespace hearth::model {
namespace {

namespace fs = std::filesystem;

class SynthTest : public ::testing::Test {
protected:
    void SetUp() override {
        dir_ = fs::temp_directory_path() / ("hearth_synth_test_" + std::to_string(getpid()));
        fs::create_directories(dir_);
    }
    void TearDown() override {
        std::error_code ec;
        fs::remove_all(dir_, ec);
    }
    std::string path(const std::string& name) const { return (dir_ / name).string(); }

    static SynthOptions options(const std::string& preset, const std::string& type, uint64_t seed = 1) {
        SynthOptions o;
        auto p = find_synth_preset(preset, "");
        EXPECT_TRUE(p.ok()) << p.status().message();
        if (p.ok()) o.config = p.value();
        auto t = parse_synth_type(type);
        EXPECT_TRUE(t.ok()) << t.status().message();
        if (t.ok()) o.type = t.value();
        o.seed = seed;
        o.n_threads = 2;
        return o;
    }

    // Plans and writes; checks the file matches the plan. Returns the opened file.
    std::shared_ptr<gguf::GgufFile> synth(const SynthOptions& o, const std::string& name) {
        auto plan = plan_synth(o);
        EXPECT_TRUE(plan.ok()) << plan.status().message();
        if (!plan.ok()) return nullptr;
        auto size = write_synth(o, plan.value(), path(name));
        EXPECT_TRUE(size.ok()) << size.status().message();
        if (!size.ok()) return nullptr;
        EXPECT_EQ(fs::file_size(path(name)), size.value());
        auto file = gguf::open_gguf(path(name));
        EXPECT_TRUE(file.ok()) << file.status().message();
        if (!file.ok()) return nullptr;
        const auto& tensors = file.value()->tensors;
        EXPECT_EQ(tensors.size(), plan.value().tensors.size());
        for (size_t i = 0; i < std::min(tensors.size(), plan.value().tensors.size()); ++i) {
            const SynthTensor& want = plan.value().tensors[i];
            EXPECT_EQ(tensors[i].name, want.name);
            EXPECT_EQ(tensors[i].type, want.type) << want.name;
            EXPECT_EQ(tensors[i].n_bytes, want.n_bytes) << want.name;
        }
        return file.value();
    }

    fs::path dir_;
};

std::vector<uint8_t> file_bytes(const std::string& p) {
    std::vector<uint8_t> b;
    EXPECT_TRUE(test::read_file(p, b));
    return b;
}

// ---------------------------------------------------------------------------------------------

struct RunCase {
    const char* preset;
    const char* type;
};

class SynthRunTest : public SynthTest, public ::testing::WithParamInterface<RunCase> {};

TEST_P(SynthRunTest, LoadsAndProducesVariedFiniteOutputs) {
    const RunCase rc = GetParam();
    const SynthOptions o = options(rc.preset, rc.type);
    auto file = synth(o, std::string(rc.preset) + "." + rc.type + ".gguf");
    ASSERT_TRUE(file);
    auto tokenizer = tok::Tokenizer::from_gguf(*file);
    ASSERT_TRUE(tokenizer.ok()) << tokenizer.status().message();
    const std::vector<int32_t> ids = tokenizer.value()->encode("Hello world, 42!", true, false);
    ASSERT_GE(ids.size(), 5u);

    auto model = load_model(file, LoadOptions{2});
    ASSERT_TRUE(model.ok()) << model.status().message();
    EXPECT_EQ(model.value()->hparams().n_vocab, o.config.n_vocab);
    EXPECT_EQ(model.value()->hparams().n_layer, o.config.n_layer);
    for (int32_t id : ids) ASSERT_LT(id, o.config.n_vocab);
    auto session = Session::create(*model.value(), 64);
    ASSERT_TRUE(session.ok()) << session.status().message();

    auto check_row = [](const float* v, int64_t n, const std::string& what) {
        float lo = v[0], hi = v[0];
        for (int64_t i = 0; i < n; ++i) {
            ASSERT_TRUE(std::isfinite(v[i])) << what << " [" << i << "]";
            lo = std::min(lo, v[i]);
            hi = std::max(hi, v[i]);
        }
        EXPECT_GT(hi - lo, 1e-3f) << what << ": all values (nearly) equal";
    };
    if (model.value()->is_embedding()) {
        std::vector<float> emb;
        ASSERT_TRUE(session.value().embed(ids, emb).ok());
        ASSERT_EQ((int64_t)emb.size(), o.config.n_embd);
        check_row(emb.data(), o.config.n_embd, "embedding");
        return;
    }
    std::vector<float> logits;
    Status st = session.value().eval(ids, /*all_logits=*/true, logits);
    ASSERT_TRUE(st.ok()) << st.message();
    const int64_t n_vocab = o.config.n_vocab;
    ASSERT_EQ(logits.size(), ids.size() * n_vocab);
    for (size_t t = 0; t < ids.size(); ++t) check_row(logits.data() + t * n_vocab, n_vocab, "logits row " + std::to_string(t));
    // Different positions see different contexts: the rows must not be copies of each other.
    EXPECT_NE(std::vector<float>(logits.begin(), logits.begin() + n_vocab),
              std::vector<float>(logits.end() - n_vocab, logits.end()));
}

INSTANTIATE_TEST_SUITE_P(Tiny, SynthRunTest,
                         ::testing::Values(RunCase{"llama-tiny", "F16"}, RunCase{"llama-tiny", "Q4_K_M"},
                                           RunCase{"llama-tiny", "Q4_0"}, RunCase{"qwen2-tiny", "Q8_0"},
                                           RunCase{"qwen2-tiny", "Q4_K_M"}, RunCase{"qwen3-tiny", "BF16"},
                                           RunCase{"qwen3-tiny", "Q5_K_M"}, RunCase{"qwen3moe-tiny", "F16"},
                                           RunCase{"qwen3moe-tiny", "MXFP4_MOE"}, RunCase{"mixtral-tiny", "Q4_K_S"},
                                           RunCase{"mixtral-tiny", "Q3_K_M"}, RunCase{"bert-tiny", "F32"},
                                           RunCase{"bert-tiny", "IQ4_NL"}),
                         [](const ::testing::TestParamInfo<RunCase>& info) {
                             std::string s = std::string(info.param.preset) + "_" + info.param.type;
                             for (char& c : s)
                                 if (!std::isalnum((unsigned char)c)) c = '_';
                             return s;
                         });

// ---------------------------------------------------------------------------------------------

TEST_F(SynthTest, OverridesGiveExactlyTheRequestedShapes) {
    SynthOptions o = options("qwen3-0.6b", "F16");
    SynthOverrides ov;
    ov.n_layer = 3;
    ov.n_embd = 256;
    ov.n_ff = 320;
    ov.n_head = 8;
    ov.n_head_kv = 2;
    ov.head_dim = 48;
    ov.n_vocab = 700;
    ov.n_ctx = 2048;
    ASSERT_TRUE(apply_synth_overrides(o.config, ov).ok());
    auto file = synth(o, "over.gguf");
    ASSERT_TRUE(file);
    auto shape = [&](const std::string& name) {
        const gguf::TensorInfo* t = file->find_tensor(name);
        EXPECT_TRUE(t) << name;
        std::vector<int64_t> ne;
        if (t)
            for (int d = 0; d < t->n_dims; ++d) ne.push_back(t->ne[d]);
        return ne;
    };
    using V = std::vector<int64_t>;
    EXPECT_EQ(shape("token_embd.weight"), (V{256, 700}));
    EXPECT_EQ(shape("blk.2.attn_q.weight"), (V{256, 8 * 48}));
    EXPECT_EQ(shape("blk.2.attn_k.weight"), (V{256, 2 * 48}));
    EXPECT_EQ(shape("blk.2.attn_v.weight"), (V{256, 2 * 48}));
    EXPECT_EQ(shape("blk.2.attn_output.weight"), (V{8 * 48, 256}));
    EXPECT_EQ(shape("blk.2.attn_q_norm.weight"), (V{48}));
    EXPECT_EQ(shape("blk.2.ffn_gate.weight"), (V{256, 320}));
    EXPECT_EQ(shape("blk.2.ffn_down.weight"), (V{320, 256}));
    EXPECT_FALSE(file->find_tensor("blk.3.attn_q.weight"));
    EXPECT_FALSE(file->find_tensor("output.weight"));  // qwen3-0.6b ties its embeddings
    auto model = load_model(file, LoadOptions{1});
    ASSERT_TRUE(model.ok()) << model.status().message();
    const Hparams& hp = model.value()->hparams();
    EXPECT_EQ(hp.n_layer, 3);
    EXPECT_EQ(hp.n_embd, 256);
    EXPECT_EQ(hp.n_ff, 320);
    EXPECT_EQ(hp.n_head, 8);
    EXPECT_EQ(hp.n_head_kv, 2);
    EXPECT_EQ(hp.head_dim_k, 48);
    EXPECT_EQ(hp.n_rot, 48);
    EXPECT_EQ(hp.n_vocab, 700);
    EXPECT_EQ(hp.n_ctx_train, 2048);

    // Experts: count, used and width reach the file; llama experts take --ff.
    SynthOptions m = options("qwen3-30b-a3b", "Q8_0");
    SynthOverrides mo;
    mo.n_layer = 1;
    mo.n_embd = 128;
    mo.n_head = 4;
    mo.n_head_kv = 2;
    mo.head_dim = 32;
    mo.n_expert = 6;
    mo.n_expert_used = 3;
    mo.n_ff_exp = 64;
    mo.n_vocab = 300;
    ASSERT_TRUE(apply_synth_overrides(m.config, mo).ok());
    auto plan = plan_synth(m);
    ASSERT_TRUE(plan.ok());
    std::map<std::string, std::vector<int64_t>> shapes;
    for (const auto& t : plan.value().tensors) shapes[t.name] = t.ne;
    EXPECT_EQ(shapes["blk.0.ffn_gate_exps.weight"], (V{128, 64, 6}));
    EXPECT_EQ(shapes["blk.0.ffn_down_exps.weight"], (V{64, 128, 6}));
    EXPECT_EQ(shapes["blk.0.ffn_gate_inp.weight"], (V{128, 6}));
    EXPECT_EQ(plan.value().meta.get_int("qwen3moe.expert_used_count").value(), 3);
    EXPECT_EQ(plan.value().meta.get_int("qwen3moe.expert_feed_forward_length").value(), 64);

    SynthConfig mx = find_synth_preset("mixtral-8x7b", "").value();
    SynthOverrides xo;
    xo.n_embd = 512;  // head size follows: 512 / 32 heads
    xo.n_expert = 4;
    xo.n_ff_exp = 384;
    ASSERT_TRUE(apply_synth_overrides(mx, xo).ok());
    EXPECT_EQ(mx.head_dim, 16);
    EXPECT_EQ(mx.n_ff, 384);
    EXPECT_EQ(mx.n_ff_exp, 384);
    EXPECT_EQ(mx.n_expert_used, 2);
}

TEST_F(SynthTest, SameSeedSameBytesOtherSeedOtherBytes) {
    SynthOptions a = options("qwen3moe-tiny", "Q4_0", 7);
    ASSERT_TRUE(synth(a, "a.gguf"));
    SynthOptions b = a;
    b.n_threads = 1;  // the thread count must not matter
    ASSERT_TRUE(synth(b, "b.gguf"));
    SynthOptions c = a;
    c.seed = 8;
    ASSERT_TRUE(synth(c, "c.gguf"));
    const auto fa = file_bytes(path("a.gguf")), fb = file_bytes(path("b.gguf")), fc = file_bytes(path("c.gguf"));
    EXPECT_TRUE(fa == fb);
    ASSERT_EQ(fa.size(), fc.size());
    EXPECT_FALSE(fa == fc);
}

TEST_F(SynthTest, ErrorsAreClear) {
    auto p = find_synth_preset("llama9-400b", "");
    ASSERT_FALSE(p.ok());
    EXPECT_NE(p.status().message().find("unknown preset 'llama9-400b'"), std::string::npos);
    EXPECT_NE(p.status().message().find("llama3.1-8b"), std::string::npos);  // lists the known ones
    p = find_synth_preset("llama3.1-8b", "qwen3");
    ASSERT_FALSE(p.ok());
    EXPECT_NE(p.status().message().find("not qwen3"), std::string::npos);
    p = find_synth_preset("tiny", "gpt5");
    ASSERT_FALSE(p.ok());
    EXPECT_NE(p.status().message().find("unknown architecture 'gpt5'"), std::string::npos);
    EXPECT_TRUE(find_synth_preset("mixtral-8x7b", "llama").ok());
    EXPECT_TRUE(find_synth_preset("mixtral-8x7b", "mixtral").ok());
    EXPECT_EQ(find_synth_preset("tiny", "qwen3moe").value().preset, "qwen3moe-tiny");

    auto t = parse_synth_type("Q4_K_XL");
    ASSERT_FALSE(t.ok());
    EXPECT_NE(t.status().message().find("unknown type 'Q4_K_XL'"), std::string::npos);
    EXPECT_NE(t.status().message().find("Q4_K_M"), std::string::npos);
    t = parse_synth_type("iq2_xxs");
    ASSERT_FALSE(t.ok());
    EXPECT_NE(t.status().message().find("no quantizer"), std::string::npos);
    EXPECT_FALSE(parse_synth_type("Q8_K").ok());
    EXPECT_TRUE(parse_synth_type("q4_k_m").ok());

    SynthConfig c = find_synth_preset("llama3.1-8b", "").value();
    SynthOverrides ov;
    ov.n_head = 30;  // 30 heads cannot share 8 kv heads
    EXPECT_FALSE(apply_synth_overrides(c, ov).ok());
    c = find_synth_preset("qwen3-8b", "").value();
    SynthOverrides ex;
    ex.n_expert = 4;
    Status st = apply_synth_overrides(c, ex);
    ASSERT_FALSE(st.ok());
    EXPECT_NE(st.message().find("has no experts"), std::string::npos);
    c = find_synth_preset("llama3.1-8b", "").value();
    SynthOverrides zero;
    zero.n_layer = 0;
    EXPECT_FALSE(apply_synth_overrides(c, zero).ok());

    SynthOptions o = options("llama-tiny", "F16");
    o.config.n_vocab = 100;  // smaller than the 256 byte tokens of the built-in vocabulary
    auto plan = plan_synth(o);
    ASSERT_FALSE(plan.ok());
    EXPECT_NE(plan.status().message().find("too small"), std::string::npos);

    o = options("llama-tiny", "F16");
    plan = plan_synth(o);
    ASSERT_TRUE(plan.ok());
    auto w = write_synth(o, plan.value(), path("no/such/folder/x.gguf"));
    ASSERT_FALSE(w.ok());
    EXPECT_NE(w.status().message().find("does not exist"), std::string::npos);
}

TEST_F(SynthTest, RefusesWhenTheDiskIsTooSmall) {
    SynthOptions o = options("llama-tiny", "F16");
    o.config.n_embd = int64_t{1} << 20;  // 64 layers of 2^44-value FFN matrices: petabytes
    o.config.n_ff = int64_t{1} << 24;
    o.config.n_layer = 64;
    auto plan = plan_synth(o);
    ASSERT_TRUE(plan.ok()) << plan.status().message();
    auto w = write_synth(o, plan.value(), path("huge.gguf"));
    ASSERT_FALSE(w.ok());
    EXPECT_NE(w.status().message().find("not enough disk space"), std::string::npos) << w.status().message();
    EXPECT_FALSE(fs::exists(path("huge.gguf")));
}

TEST_F(SynthTest, WritesTheExpectedMetadata) {
    auto file = synth(options("qwen3moe-tiny", "Q8_0"), "meta.gguf");
    ASSERT_TRUE(file);
    // Re-parse from bytes too (parse_gguf validates everything).
    const auto bytes = file_bytes(path("meta.gguf"));
    auto parsed = gguf::parse_gguf(std::span<const std::byte>((const std::byte*)bytes.data(), bytes.size()));
    ASSERT_TRUE(parsed.ok()) << parsed.status().message();
    const gguf::Metadata& m = parsed.value().meta;
    for (const char* key :
         {"general.architecture", "general.name", "general.file_type", "general.quantization_version",
          "qwen3moe.context_length", "qwen3moe.embedding_length", "qwen3moe.block_count", "qwen3moe.feed_forward_length",
          "qwen3moe.attention.head_count", "qwen3moe.attention.head_count_kv", "qwen3moe.rope.freq_base",
          "qwen3moe.attention.layer_norm_rms_epsilon", "qwen3moe.rope.dimension_count", "qwen3moe.attention.key_length",
          "qwen3moe.attention.value_length", "qwen3moe.expert_count", "qwen3moe.expert_used_count",
          "qwen3moe.expert_feed_forward_length", "tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.tokens",
          "tokenizer.ggml.token_type", "tokenizer.ggml.merges", "tokenizer.ggml.bos_token_id",
          "tokenizer.ggml.eos_token_id", "tokenizer.chat_template"})
        EXPECT_TRUE(m.has(key)) << key;
    EXPECT_EQ(m.get_string("general.architecture").value(), "qwen3moe");
    EXPECT_EQ(m.get_int("general.file_type").value(), 7);
    EXPECT_EQ(m.get_int("qwen3moe.expert_count").value(), 8);
    EXPECT_EQ(m.get_string_array("tokenizer.ggml.tokens").value().size(), 512u);
    EXPECT_EQ(m.get_string_array("tokenizer.ggml.tokens").value()[0], "!");  // GPT-2 byte order
    EXPECT_EQ(m.get_string_array("tokenizer.ggml.tokens").value()[511], "<|im_end|>");
    EXPECT_EQ(parsed.value().find_tensor("blk.0.ffn_gate_inp.weight")->type, quant::QuantType::f32);
    EXPECT_EQ(parsed.value().find_tensor("blk.0.attn_norm.weight")->type, quant::QuantType::f32);
}

// Tokenizer metadata is copied from a real vocabulary and padded up to the model's size.
TEST_F(SynthTest, CopiesAndPadsAVocabulary) {
    std::vector<uint8_t> gz;
    ASSERT_TRUE(test::read_gzip_file(test::testdata_path("tokenizers/ggml-vocab-llama-spm.gguf.gz"), gz));
    auto vocab = gguf::parse_gguf(std::span<const std::byte>((const std::byte*)gz.data(), gz.size()));
    ASSERT_TRUE(vocab.ok());
    SynthOptions o = options("mixtral-tiny", "Q8_0");
    SynthOverrides ov;
    ov.n_embd = 64;
    ov.n_vocab = 32010;
    ASSERT_TRUE(apply_synth_overrides(o.config, ov).ok());
    o.vocab = &vocab.value().meta;
    auto file = synth(o, "spm.gguf");
    ASSERT_TRUE(file);
    const auto tokens = file->meta.get_string_array("tokenizer.ggml.tokens").value();
    const auto types = file->meta.get_int_array("tokenizer.ggml.token_type").value();
    const auto scores = file->meta.get_f32_array("tokenizer.ggml.scores").value();
    ASSERT_EQ(tokens.size(), 32010u);
    ASSERT_EQ(types.size(), 32010u);
    ASSERT_EQ(scores.size(), 32010u);
    EXPECT_EQ(tokens[32005], "<|reserved_token_32005|>");
    EXPECT_EQ(types[32005], 5);
    EXPECT_EQ(file->find_tensor("token_embd.weight")->ne[1], 32010);
    auto mine = tok::Tokenizer::from_gguf(*file);
    auto ref = tok::Tokenizer::from_metadata(vocab.value().meta);
    ASSERT_TRUE(mine.ok() && ref.ok());
    const std::string text = "The quick brown fox jumps over the lazy dog.";
    EXPECT_EQ(mine.value()->encode(text, true, false), ref.value()->encode(text, true, false));
    auto model = load_model(file, LoadOptions{1});
    ASSERT_TRUE(model.ok()) << model.status().message();

    // A vocabulary larger than the preset's size wins.
    SynthOptions small = options("mixtral-tiny", "F16");
    small.vocab = &vocab.value().meta;
    auto plan = plan_synth(small);
    ASSERT_TRUE(plan.ok());
    EXPECT_EQ(plan.value().config.n_vocab, 32000);
    EXPECT_FALSE(plan.value().notes.empty());
}

TEST_F(SynthTest, RopeFreqsFollowTheLlama3Formula) {
    auto ref = gguf::open_gguf(test::testdata_path("models/llama3-tiny.F16.gguf"));
    ASSERT_TRUE(ref.ok());
    const gguf::TensorInfo* t = ref.value()->find_tensor("rope_freqs.weight");
    ASSERT_TRUE(t);
    SynthConfig c = find_synth_preset("llama-tiny", "").value();  // head 64, theta 500000, factor 32
    const std::vector<float> mine = llama3_rope_factors(c);
    ASSERT_EQ((int64_t)mine.size(), t->ne[0]);
    const float* want = reinterpret_cast<const float*>(t->data);
    for (size_t i = 0; i < mine.size(); ++i) EXPECT_NEAR(mine[i], want[i], 1e-5f * want[i]) << i;
    c.rope_scale_factor = 8.0f;  // Llama 3.1: low-frequency dims divided by 8
    EXPECT_FLOAT_EQ(llama3_rope_factors(c).front(), 1.0f);
    EXPECT_FLOAT_EQ(llama3_rope_factors(c).back(), 8.0f);
}

// The reference tiny models were written by llama.cpp's gguf-py and quantized by llama-quantize
// (default mixes). A synth plan for the same shapes must name the same tensors with the same
// shapes and types, and carry the same architecture keys.
struct RefCase {
    const char* file;
    const char* type;
};

class SynthReferenceTest : public ::testing::TestWithParam<RefCase> {};

TEST_P(SynthReferenceTest, MatchesLlamaCppLayoutAndMixes) {
    const RefCase rc = GetParam();
    auto ref_r = gguf::open_gguf(test::testdata_path(std::string("models/") + rc.file + ".gguf"));
    ASSERT_TRUE(ref_r.ok()) << ref_r.status().message();
    const gguf::GgufFile& ref = *ref_r.value();
    const std::string arch = ref.architecture();
    auto num = [&](const char* key, int64_t def) { return ref.meta.get_int_or(arch + "." + key, def).value(); };

    SynthOptions o;
    o.config.preset = rc.file;
    o.config.arch = arch;
    o.config.n_expert = (int)num("expert_count", 0);
    o.config.family = arch == "llama" && o.config.n_expert ? "mixtral" : arch;
    o.config.n_embd = num("embedding_length", 0);
    o.config.n_layer = (int)num("block_count", 0);
    o.config.n_head = (int)num("attention.head_count", 0);
    o.config.n_head_kv = (int)num("attention.head_count_kv", o.config.n_head);
    o.config.head_dim = (int)num("attention.key_length", o.config.n_embd / o.config.n_head);
    o.config.n_ff = num("feed_forward_length", 0);
    o.config.n_expert_used = (int)num("expert_used_count", 0);
    o.config.n_ff_exp = num("expert_feed_forward_length", o.config.n_ff);
    o.config.n_ctx = num("context_length", 0);
    o.config.n_vocab = ref.find_tensor("token_embd.weight")->ne[1];
    o.config.tied_output = ref.find_tensor("output.weight") == nullptr;
    o.config.rope_scale_factor = ref.find_tensor("rope_freqs.weight") ? 32.0f : 0.0f;
    o.config.rope_freq_base = (float)ref.meta.get_float_or(arch + ".rope.freq_base", 10000.0).value();
    o.config.norm_eps = (float)ref.meta
                            .get_float_or(arch + (arch == "bert" ? ".attention.layer_norm_epsilon"
                                                                 : ".attention.layer_norm_rms_epsilon"),
                                          1e-5)
                            .value();
    o.type = parse_synth_type(rc.type).value();
    o.vocab = &ref.meta;
    auto plan_r = plan_synth(o);
    ASSERT_TRUE(plan_r.ok()) << plan_r.status().message();
    const SynthPlan& plan = plan_r.value();

    std::map<std::string, const SynthTensor*> mine;
    for (const auto& t : plan.tensors) mine[t.name] = &t;
    EXPECT_EQ(mine.size(), ref.tensors.size());
    for (const gguf::TensorInfo& t : ref.tensors) {
        auto it = mine.find(t.name);
        if (it == mine.end()) {
            ADD_FAILURE() << "missing tensor " << t.name;
            continue;
        }
        std::vector<int64_t> ne(t.ne, t.ne + t.n_dims);
        EXPECT_EQ(it->second->ne, ne) << t.name;
        EXPECT_EQ(it->second->type, t.type) << t.name << ": " << quant::type_name(it->second->type) << " vs llama-quantize's "
                                            << quant::type_name(t.type);
    }
    for (const auto& [key, value] : ref.meta.entries()) {
        if (key.rfind("general.", 0) == 0 && key != "general.architecture" && key != "general.file_type") continue;
        const gguf::Value* v = plan.meta.find(key);
        if (!v) {
            ADD_FAILURE() << "missing key " << key;
            continue;
        }
        double a = 0, b = 0;
        if (value.to_f64(a) && v->to_f64(b)) {
            EXPECT_NEAR(a, b, 1e-6 * std::fabs(a)) << key;
        } else if (value.type == gguf::ValueType::string) {
            EXPECT_EQ(value.str, v->str) << key;
        } else if (value.type == gguf::ValueType::array) {
            EXPECT_EQ(value.items.size(), v->items.size()) << key;
        }
    }
}

INSTANTIATE_TEST_SUITE_P(
    TestData, SynthReferenceTest,
    ::testing::Values(RefCase{"llama3-tiny.F16", "F16"}, RefCase{"llama3-tiny.BF16", "BF16"},
                      RefCase{"llama3-tiny.Q8_0", "Q8_0"}, RefCase{"llama3-tiny.Q6_K", "Q6_K"},
                      RefCase{"llama3-tiny.Q4_K_M", "Q4_K_M"}, RefCase{"llama3-tiny.Q5_K_M", "Q5_K_M"},
                      RefCase{"llama3-tiny.Q3_K_M", "Q3_K_M"}, RefCase{"qwen3-tiny.Q4_K_M", "Q4_K_M"},
                      RefCase{"qwen3-tiny.Q8_0", "Q8_0"}, RefCase{"qwen2-tiny.F16", "F16"},
                      RefCase{"qwen3moe-tiny.F16", "F16"}, RefCase{"qwen3moe-tiny.Q8_0", "Q8_0"},
                      RefCase{"qwen3moe-tiny.MXFP4_MOE", "MXFP4_MOE"}, RefCase{"mixtral-tiny.F16", "F16"},
                      RefCase{"bert-bge-tiny.F16", "F16"}),
    [](const ::testing::TestParamInfo<RefCase>& info) {
        std::string s = info.param.file;
        for (char& c : s)
            if (!std::isalnum((unsigned char)c)) c = '_';
        return s;
    });

// llama-quantize's Q4_K_M on a real 32-layer shape (no file written).
TEST(SynthMix, Q4KMOnLlama31_8B) {
    SynthOptions o;
    o.config = find_synth_preset("llama3.1-8b", "").value();
    o.type = parse_synth_type("Q4_K_M").value();
    o.config.n_vocab = 1024;  // keep the built-in vocabulary small; shapes of the blocks are real
    auto plan = plan_synth(o);
    ASSERT_TRUE(plan.ok());
    std::map<std::string, quant::QuantType> types;
    for (const auto& t : plan.value().tensors) types[t.name] = t.type;
    using Q = quant::QuantType;
    EXPECT_EQ(types["token_embd.weight"], Q::q4_k);
    EXPECT_EQ(types["output.weight"], Q::q6_k);
    EXPECT_EQ(types["rope_freqs.weight"], Q::f32);
    // use_more_bits: layers < 4, >= 28, and (layer - 4) % 3 == 2.
    for (int l : {0, 3, 6, 9, 27, 28, 31}) EXPECT_EQ(types["blk." + std::to_string(l) + ".attn_v.weight"], Q::q6_k) << l;
    for (int l : {4, 5, 7, 26}) EXPECT_EQ(types["blk." + std::to_string(l) + ".attn_v.weight"], Q::q4_k) << l;
    EXPECT_EQ(types["blk.6.ffn_down.weight"], Q::q6_k);
    EXPECT_EQ(types["blk.7.ffn_down.weight"], Q::q4_k);
    EXPECT_EQ(types["blk.7.attn_q.weight"], Q::q4_k);
    EXPECT_EQ(plan.value().meta.get_int("general.file_type").value(), 15);
    EXPECT_EQ(plan.value().n_params, 8030261248ull - 127232ull * 4096 * 2 + 64);  // HF count, trimmed vocab, + rope_freqs
}

}  // namespace
}  // namespace hearth::model
