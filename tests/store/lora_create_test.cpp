// `hearth create` with ADAPTER (and POST /api/create's "adapters"): the LoRA adapter is stored
// as an application/vnd.ollama.image.adapter layer, verified against the weights, kept by
// models built FROM it, and applied when the model is loaded through the store (the logits
// equal those of the model with the adapter merged into its weights).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "base/sha256.h"
#include "store/create.h"
#include "support/lora_fixture.h"

namespace hearth::store {
namespace {

namespace fs = std::filesystem;

class LoraCreateTest : public ::testing::Test {
protected:
    void SetUp() override {
        const std::string test = ::testing::UnitTest::GetInstance()->current_test_info()->name();
        base_ = fs::temp_directory_path() / ("hearth-lora-create-" + std::to_string(::getpid()) + "-" + test);
        fs::remove_all(base_);
        root_ = base_ / "models";
        dl_ = base_ / "downloads";
        fs::create_directories(root_);
        fs::create_directories(dl_);
        ASSERT_TRUE(test::write_tiny_base((dl_ / "base.gguf").string(), /*untied=*/true));
        auto f = gguf::open_gguf((dl_ / "base.gguf").string());
        ASSERT_TRUE(f.ok());
        weights_ = *f;
    }
    void TearDown() override {
        weights_.reset();
        fs::remove_all(base_);
    }

    Status create_from(Store& s, const std::string& name, const std::string& modelfile) {
        auto mf = parse_modelfile(modelfile);
        if (!mf.ok()) return mf.status();
        auto req = create_request(*mf, name, dl_.string());
        if (!req.ok()) return req.status();
        return create_model(s, *req);
    }
    std::string dl(const std::string& name) const { return (dl_ / name).string(); }
    static std::string read_bytes(const std::string& path) {
        std::ifstream f(path, std::ios::binary);
        std::stringstream ss;
        ss << f.rdbuf();
        return ss.str();
    }

    fs::path base_, root_, dl_;
    std::shared_ptr<gguf::GgufFile> weights_;
};

const std::vector<std::string> kTargets = {"token_embd.weight", "blk.0.attn_q.weight", "blk.0.attn_v.weight",
                                           "blk.1.ffn_down.weight", "output.weight"};

TEST_F(LoraCreateTest, AdapterLayerIsStoredAndAppliedAtLoad) {
    const auto spec = test::write_lora(dl("lora.gguf"), *weights_, kTargets);
    ASSERT_TRUE(test::write_merged(dl("merged.gguf"), *weights_, {spec}));
    Store s(root_.string());
    Status st = create_from(s, "tuned", "FROM ./base.gguf\nADAPTER ./lora.gguf\nSYSTEM tuned\n");
    ASSERT_TRUE(st.ok()) << st.message();

    auto m = s.read_manifest("tuned");
    ASSERT_TRUE(m.ok());
    std::vector<std::string> types;
    for (const auto& l : m->layers) types.push_back(l.media_type);
    EXPECT_EQ(types, (std::vector<std::string>{kMediaModel, kMediaAdapter, kMediaSystem}));
    const Layer* adapter = m->find(kMediaAdapter);
    ASSERT_NE(adapter, nullptr);
    EXPECT_EQ(adapter->digest, "sha256:" + *sha256_file(dl("lora.gguf")));
    EXPECT_EQ(adapter->size, (int64_t)fs::file_size(dl("lora.gguf")));

    auto ref = s.resolve("tuned");
    ASSERT_TRUE(ref.ok()) << ref.status().message();
    EXPECT_TRUE(ref->has_adapter);
    ASSERT_EQ(ref->adapter_paths.size(), 1u);
    EXPECT_EQ(ref->adapter_digests, std::vector<std::string>{adapter->digest});

    // Loaded through the store: the adapter applies (the merged model's logits, not the base's).
    const auto with = test::lora_logits(ref->model_path, ref->adapter_paths);
    const auto merged = test::lora_logits(dl("merged.gguf"), {});
    const auto plain = test::lora_logits(ref->model_path, {});
    ASSERT_FALSE(with.empty());
    EXPECT_LE(test::max_abs_diff(with, merged), 1e-3);
    EXPECT_GT(test::max_abs_diff(with, plain), 0.05);

    // A model FROM it keeps the adapter; the API's "adapters" (an uploaded blob) stacks a second.
    ASSERT_TRUE(create_from(s, "tuned-sys", "FROM tuned\nSYSTEM other\n").ok());
    EXPECT_EQ(s.resolve("tuned-sys")->adapter_digests, std::vector<std::string>{adapter->digest});

    test::LoraOptions o2;
    o2.seed = 9;
    const auto spec2 = test::write_lora(dl("lora2.gguf"), *weights_, {"blk.1.attn_k.weight", "blk.0.attn_q.weight"}, o2);
    auto blob = s.write_blob(read_bytes(dl("lora2.gguf")), kMediaAdapter);
    ASSERT_TRUE(blob.ok()) << blob.status().message();
    CreateRequest req;
    req.model = "tuned-twice";
    req.from = "tuned";
    req.adapters = {{"lora2.gguf", blob->digest}};
    st = create_model(s, req);
    ASSERT_TRUE(st.ok()) << st.message();
    auto ref2 = s.resolve("tuned-twice");
    ASSERT_TRUE(ref2.ok());
    EXPECT_EQ(ref2->adapter_digests, (std::vector<std::string>{adapter->digest, blob->digest}));
    ASSERT_TRUE(test::write_merged(dl("merged2.gguf"), *weights_, {spec, spec2}));
    const auto with2 = test::lora_logits(ref2->model_path, ref2->adapter_paths);
    ASSERT_FALSE(with2.empty());
    EXPECT_LE(test::max_abs_diff(with2, test::lora_logits(dl("merged2.gguf"), {})), 1e-3);

    // The same adapter again is one layer, not two.
    ASSERT_TRUE(create_from(s, "tuned-again", "FROM tuned\nADAPTER ./lora.gguf\n").ok());
    EXPECT_EQ(s.resolve("tuned-again")->adapter_digests.size(), 1u);
}

TEST_F(LoraCreateTest, BadAdaptersAreRefusedAndLeaveNothing) {
    Store s(root_.string());
    auto fails = [&](const std::string& mf, StatusCode code, const std::string& part) {
        Status st = create_from(s, "bad", mf);
        EXPECT_EQ(st.code(), code) << mf << ": " << st.message();
        EXPECT_NE(st.message().find(part), std::string::npos) << st.message();
        EXPECT_FALSE(s.resolve("bad").ok());
    };
    fails("FROM ./base.gguf\nADAPTER ./missing.gguf\n", StatusCode::not_found, "ADAPTER ./missing.gguf: no such file");
    fails("FROM ./base.gguf\nADAPTER ./base.gguf\n", StatusCode::invalid_argument,
          "ADAPTER ./base.gguf: not a LoRA adapter: general.type is \"model\"");
    std::ofstream(dl("junk.gguf")) << "junk";
    fails("FROM ./base.gguf\nADAPTER ./junk.gguf\n", StatusCode::invalid_argument, "ADAPTER ./junk.gguf: not a GGUF file");
    fs::create_directories(dl("peft-adapter"));
    fails("FROM ./base.gguf\nADAPTER ./peft-adapter\n", StatusCode::unsupported, "LoRA adapters in GGUF only");

    test::LoraOptions qwen;
    qwen.arch = "qwen2";
    test::write_lora(dl("qwen.gguf"), *weights_, {"blk.0.attn_q.weight"}, qwen);
    fails("FROM ./base.gguf\nADAPTER ./qwen.gguf\n", StatusCode::invalid_argument,
          "ADAPTER ./qwen.gguf: it is for architecture qwen2, the model is llama");

    // Made for a model with an untied output: this one (tied) has no output.weight.
    ASSERT_TRUE(test::write_tiny_base(dl("tied.gguf"), false));
    test::write_lora(dl("out.gguf"), *weights_, {"output.weight"});
    fails("FROM ./tied.gguf\nADAPTER ./out.gguf\n", StatusCode::invalid_argument,
          "ADAPTER ./out.gguf: tensor output.weight is not in the base model");

    // The API: a digest not in the store, a local path.
    CreateRequest req;
    req.model = "bad";
    req.from = "./base.gguf";
    req.allow_paths = true;
    req.base_dir = dl_.string();
    req.adapters = {{"lora.gguf", "sha256:" + std::string(64, 'b')}};
    Status st = create_model(s, req);
    EXPECT_EQ(st.code(), StatusCode::invalid_argument);
    EXPECT_NE(st.message().find("adapters: \"lora.gguf\": blob sha256:bbbb"), std::string::npos) << st.message();
    req.adapters = {{"adapter_model.safetensors", "sha256:" + std::string(64, 'b')}};
    EXPECT_EQ(create_model(s, req).code(), StatusCode::unsupported);
    req.adapters.clear();
    req.allow_paths = false;
    req.from = "sha256:" + *sha256_file(dl("base.gguf"));
    req.adapter_paths = {dl("out.gguf")};
    st = create_model(s, req);
    EXPECT_NE(st.message().find("a local path is not accepted over the API"), std::string::npos) << st.message();
    EXPECT_FALSE(s.resolve("bad").ok());
}

}  // namespace
}  // namespace hearth::store
