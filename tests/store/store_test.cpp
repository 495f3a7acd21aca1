// store::ModelName and store::Store over a temporary Ollama-layout store whose blobs are
// symlinks to the shared test models.
#include "store/store.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "base/sha256.h"
#include "support/testdata.h"

namespace hearth::store {
namespace {
namespace fs = std::filesystem;

TEST(ModelName, NormalisesLikeOllama) {
    auto n = ModelName::parse("llama3");
    ASSERT_TRUE(n.ok()) << n.status().message();
    EXPECT_EQ(n->full(), "registry.ollama.ai/library/llama3:latest");
    EXPECT_EQ(n->display(), "llama3:latest");
    EXPECT_EQ(n->manifest_rel(), "manifests/registry.ollama.ai/library/llama3/latest");

    n = ModelName::parse("user/model:q4_K_M");
    ASSERT_TRUE(n.ok());
    EXPECT_EQ(n->full(), "registry.ollama.ai/user/model:q4_K_M");
    EXPECT_EQ(n->display(), "user/model:q4_K_M");

    n = ModelName::parse("example.com:5000/ns/model:v1.2");
    ASSERT_TRUE(n.ok());
    EXPECT_EQ(n->host, "example.com:5000");
    EXPECT_EQ(n->display(), "example.com:5000/ns/model:v1.2");

    n = ModelName::parse("qwen3:0.6b");
    ASSERT_TRUE(n.ok());
    EXPECT_EQ(n->tag, "0.6b");
}

TEST(ModelName, RejectsBadNames) {
    for (const char* bad : {"", "a/b/c/d", "mo del", "model:", "/x", "../etc:passwd", "a//b", "model:.hidden"}) {
        auto n = ModelName::parse(bad);
        EXPECT_FALSE(n.ok()) << bad;
        if (!n.ok()) {
            EXPECT_EQ(n.status().code(), StatusCode::invalid_argument) << bad;
        }
    }
}

TEST(ModelName, PathsAreNotNames) {
    EXPECT_TRUE(looks_like_path("/models/x.gguf"));
    EXPECT_TRUE(looks_like_path("./x"));
    EXPECT_TRUE(looks_like_path("model.GGUF"));
    EXPECT_FALSE(looks_like_path("llama3:8b"));
    EXPECT_FALSE(looks_like_path("user/model"));
}

TEST(GgufInfo, HumanNumberAndFileTypes) {
    EXPECT_EQ(human_number(8030261248), "8.0B");
    EXPECT_EQ(human_number(7000000000), "7B");
    EXPECT_EQ(human_number(494032768), "494.03M");
    EXPECT_EQ(human_number(260000), "260K");
    EXPECT_EQ(human_number(999), "999");
    EXPECT_EQ(file_type_name(15), "Q4_K_M");
    EXPECT_EQ(file_type_name(7), "Q8_0");
    EXPECT_EQ(file_type_name(999), "");
}

// A temporary store; removed with everything in it.
class StoreTest : public ::testing::Test {
protected:
    void SetUp() override {
        root_ = fs::temp_directory_path() / ("hearth-store-test-" + std::to_string(::getpid()) + "-" +
                                             ::testing::UnitTest::GetInstance()->current_test_info()->name());
        fs::remove_all(root_);
        fs::create_directories(root_ / "blobs");
    }
    void TearDown() override { fs::remove_all(root_); }

    // Writes a blob with `text` and returns its digest "sha256:<hex>".
    std::string add_text_blob(const std::string& text) {
        const std::string hex = sha256_hex(std::string_view(text));
        std::ofstream(root_ / "blobs" / ("sha256-" + hex), std::ios::binary) << text;
        return "sha256:" + hex;
    }
    // Links a test model in as a blob; the digest is the real one (the store trusts names).
    std::string add_model_blob(const std::string& rel) {
        const std::string src = test::testdata_path(rel);
        auto hex = sha256_file(src);
        EXPECT_TRUE(hex.ok());
        fs::create_symlink(src, root_ / "blobs" / ("sha256-" + *hex));
        return "sha256:" + *hex;
    }
    void add_manifest(const std::string& name, const std::string& model_digest, const std::vector<std::pair<std::string, std::string>>& extra = {}) {
        nlohmann::json m = {{"schemaVersion", 2},
                            {"mediaType", "application/vnd.docker.distribution.manifest.v2+json"},
                            {"config", {{"mediaType", "application/vnd.docker.container.image.v1+json"},
                                        {"digest", add_text_blob("{}")}, {"size", 2}}}};
        m["layers"] = nlohmann::json::array({{{"mediaType", kMediaModel}, {"digest", model_digest}, {"size", 1000}}});
        for (const auto& [type, digest] : extra) m["layers"].push_back({{"mediaType", type}, {"digest", digest}, {"size", 10}});
        auto n = ModelName::parse(name);
        ASSERT_TRUE(n.ok());
        fs::create_directories((root_ / n->manifest_rel()).parent_path());
        std::ofstream(root_ / n->manifest_rel()) << m.dump();
    }

    fs::path root_;
};

TEST_F(StoreTest, ResolvesNamesAndPaths) {
    const std::string d = add_model_blob("models/stories260K.gguf");
    add_manifest("stories", d, {{kMediaSystem, add_text_blob("You tell stories.")},
                                {kMediaParams, add_text_blob(R"({"temperature":0.5,"stop":["<end>"]})")}});
    Store s(root_.string());
    auto r = s.resolve("stories");
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_EQ(r->name, "stories:latest");
    EXPECT_EQ(r->full_name, "registry.ollama.ai/library/stories:latest");
    EXPECT_EQ(r->model_digest, d);
    EXPECT_EQ(r->system, "You tell stories.");
    EXPECT_EQ(r->params["temperature"], 0.5);
    EXPECT_EQ(r->size, 2 + 1000 + 10 + 10);
    EXPECT_EQ(r->manifest_digest.size(), 64u);
    EXPECT_FALSE(r->is_file);
    auto w = s.weights_digest(*r);
    ASSERT_TRUE(w.ok());
    EXPECT_EQ("sha256:" + *w, d);

    auto info = s.info(*r);
    ASSERT_TRUE(info.ok()) << info.status().message();
    EXPECT_EQ(info->architecture, "llama");
    EXPECT_EQ(info->n_ctx_train, 2048);
    EXPECT_FALSE(info->embedding);
    EXPECT_EQ(info->kv_layout.n_layer, 5);
    EXPECT_EQ(info->kv_layout.k_width[0], 4 * 8);

    auto missing = s.resolve("nope:1b");
    ASSERT_FALSE(missing.ok());
    EXPECT_EQ(missing.status().code(), StatusCode::not_found);
    EXPECT_EQ(missing.status().message(), "model 'nope:1b' not found");

    // A bare path works wherever a name does; its digest is hashed on demand.
    const std::string path = test::testdata_path("models/bert-bge-tiny.F16.gguf");
    auto f = s.resolve(path);
    ASSERT_TRUE(f.ok()) << f.status().message();
    EXPECT_TRUE(f->is_file);
    EXPECT_EQ(f->model_path, path);
    auto fd = s.weights_digest(*f);
    ASSERT_TRUE(fd.ok());
    EXPECT_EQ(*fd, *sha256_file(path));
    auto finfo = s.info(*f);
    ASSERT_TRUE(finfo.ok());
    EXPECT_TRUE(finfo->embedding);
    EXPECT_FALSE(s.resolve("/no/such/model.gguf").ok());
}

TEST_F(StoreTest, ListsCopiesAndDeletes) {
    const std::string d1 = add_model_blob("models/stories260K.gguf");
    const std::string d2 = add_model_blob("models/llama3-tiny.Q8_0.gguf");
    add_manifest("stories", d1);
    add_manifest("user/llama3-tiny:q8", d2);
    Store s(root_.string());
    auto list = s.list();
    ASSERT_EQ(list.size(), 2u);
    std::set<std::string> names;
    for (const auto& r : list) names.insert(r.name);
    EXPECT_TRUE(names.count("stories:latest"));
    EXPECT_TRUE(names.count("user/llama3-tiny:q8"));

    ASSERT_TRUE(s.copy("stories", "copy:v2").ok());
    auto c = s.resolve("copy:v2");
    ASSERT_TRUE(c.ok());
    EXPECT_EQ(c->model_digest, d1);
    EXPECT_EQ(s.list().size(), 3u);
    EXPECT_EQ(s.copy("missing", "x").code(), StatusCode::not_found);
    EXPECT_EQ(s.copy("stories", "bad name").code(), StatusCode::invalid_argument);

    // Removing one of two manifests that share a blob keeps the blob.
    ASSERT_TRUE(s.remove("stories").ok());
    EXPECT_TRUE(s.has_blob(d1));
    EXPECT_FALSE(s.resolve("stories").ok());
    ASSERT_TRUE(s.remove("copy:v2").ok());
    EXPECT_FALSE(s.has_blob(d1));  // the last reference went
    EXPECT_TRUE(s.has_blob(d2));
    EXPECT_FALSE(fs::exists(root_ / "manifests/registry.ollama.ai/library/copy"));
    EXPECT_EQ(s.remove("stories").code(), StatusCode::not_found);
    EXPECT_EQ(s.list().size(), 1u);
}

}  // namespace
}  // namespace hearth::store
