// A model store under the temp directory, in Ollama's layout, holding the shared test models
// (blobs are symlinks to ../shared/testdata): stories (stories260K, no chat template),
// llama3-tiny and qwen3-tiny (chat templates with tools and thinking), bge (bert embeddings),
// and stories-short (stories with a params layer setting num_predict 3 and temperature 0, a
// system layer "Once upon a time" and a three-line license layer). Removed at destruction.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "base/sha256.h"
#include "support/testdata.h"

namespace hearth::test {

class TempStore {
public:
    explicit TempStore(const std::string& tag) {
        namespace fs = std::filesystem;
        root_ = fs::temp_directory_path() / ("hearth-store-test-" + std::to_string(::getpid()) + "-" + tag);
        fs::remove_all(root_);
        fs::create_directories(root_ / "blobs");
        const std::string stories = model_blob("models/stories260K.gguf");
        add("stories", stories);
        add("llama3-tiny", model_blob("models/llama3-tiny.Q8_0.gguf"));
        add("qwen3-tiny", model_blob("models/qwen3-tiny.Q8_0.gguf"));
        add("bge", model_blob("models/bert-bge-tiny.F16.gguf"));
        add("stories-short", stories,
            {{"application/vnd.ollama.image.params", text_blob(R"({"num_predict": 3, "temperature": 0})")},
             {"application/vnd.ollama.image.system", text_blob("Once upon a time")},
             {"application/vnd.ollama.image.license",
              text_blob("MIT License\nCopyright 2024 hearth\nPermission is hereby granted\n")}});
    }
    ~TempStore() { std::filesystem::remove_all(root_); }
    TempStore(const TempStore&) = delete;
    TempStore& operator=(const TempStore&) = delete;

    std::string root() const { return root_.string(); }
    // A model of the default registry and namespace with tag latest ("stories").
    bool has_manifest(const std::string& name) const {
        return std::filesystem::exists(root_ / "manifests/registry.ollama.ai/library" / name / "latest");
    }

private:
    std::string text_blob(const std::string& text) {
        const std::string hex = sha256_hex(std::string_view(text));
        std::ofstream(root_ / "blobs" / ("sha256-" + hex), std::ios::binary) << text;
        sizes_["sha256:" + hex] = (int64_t)text.size();
        return "sha256:" + hex;
    }
    std::string model_blob(const std::string& rel) {
        const std::string src = testdata_path(rel);
        auto hex = sha256_file(src);
        EXPECT_TRUE(hex.ok()) << src;
        const std::filesystem::path dst = root_ / "blobs" / ("sha256-" + *hex);
        if (!std::filesystem::exists(dst)) std::filesystem::create_symlink(src, dst);
        sizes_["sha256:" + *hex] = (int64_t)std::filesystem::file_size(src);
        return "sha256:" + *hex;
    }
    void add(const std::string& name, const std::string& model_digest,
             const std::vector<std::pair<std::string, std::string>>& extra = {}) {
        using json = nlohmann::json;
        const std::string config = text_blob("{}");
        json m = {{"schemaVersion", 2},
                  {"mediaType", "application/vnd.docker.distribution.manifest.v2+json"},
                  {"config", {{"mediaType", "application/vnd.docker.container.image.v1+json"}, {"digest", config}, {"size", 2}}}};
        m["layers"] = json::array(
            {{{"mediaType", "application/vnd.ollama.image.model"}, {"digest", model_digest}, {"size", sizes_[model_digest]}}});
        for (const auto& [type, digest] : extra) m["layers"].push_back({{"mediaType", type}, {"digest", digest}, {"size", sizes_[digest]}});
        const std::filesystem::path p = root_ / "manifests/registry.ollama.ai/library" / name / "latest";
        std::filesystem::create_directories(p.parent_path());
        std::ofstream(p) << m.dump();
    }

    std::filesystem::path root_;
    std::map<std::string, int64_t> sizes_;
};

}  // namespace hearth::test
