// store::create_model over a temporary store: layered manifests, shared layers and reference
// counting, hard links (and the copy fallback across file systems), crash safety (a create that
// stops midway leaves no manifest, no temporary file and no orphaned blob), quantize, errors,
// and `hearth import`'s discovery of Hugging Face and LM Studio files.
#include "store/create.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "base/sha256.h"
#include "support/testdata.h"

namespace hearth::store {
namespace {
namespace fs = std::filesystem;
using json = nlohmann::json;

class CreateTest : public ::testing::Test {
protected:
    void SetUp() override {
        const std::string test = ::testing::UnitTest::GetInstance()->current_test_info()->name();
        base_ = fs::temp_directory_path() / ("hearth-create-test-" + std::to_string(::getpid()) + "-" + test);
        fs::remove_all(base_);
        root_ = base_ / "models";
        downloads_ = base_ / "downloads";
        fs::create_directories(root_);
        fs::create_directories(downloads_);
    }
    void TearDown() override { fs::remove_all(base_); }

    // A private copy of a test model (a hard link to the shared file would make it ours).
    std::string copy_model(const std::string& rel, const fs::path& dir) {
        const fs::path dst = dir / fs::path(rel).filename();
        fs::copy_file(test::testdata_path(rel), dst, fs::copy_options::overwrite_existing);
        return dst.string();
    }
    std::vector<std::string> temps() const {
        std::vector<std::string> out;
        std::error_code ec;
        for (auto it = fs::recursive_directory_iterator(root_, ec); !ec && it != fs::recursive_directory_iterator(); it.increment(ec))
            if (it->path().filename().string().rfind(".", 0) == 0 && it->path().filename() != ".lock")
                out.push_back(it->path().string());
        return out;
    }
    size_t n_blobs() const {
        size_t n = 0;
        std::error_code ec;
        for (auto it = fs::directory_iterator(root_ / "blobs", ec); !ec && it != fs::directory_iterator(); it.increment(ec))
            n += it->path().filename().string().rfind("sha256-", 0) == 0;
        return n;
    }
    Status create_from(Store& s, const std::string& name, const std::string& modelfile, std::vector<CreateStatus>* log = nullptr) {
        auto mf = parse_modelfile(modelfile);
        if (!mf.ok()) return mf.status();
        auto req = create_request(*mf, name, downloads_.string());
        if (!req.ok()) return req.status();
        return create_model(s, *req, [&](const CreateStatus& st) {
            if (log) log->push_back(st);
            return true;
        });
    }
    static bool has_status(const std::vector<CreateStatus>& log, const std::string& prefix) {
        for (const auto& s : log)
            if (s.status.rfind(prefix, 0) == 0) return true;
        return false;
    }

    fs::path base_, root_, downloads_;
};

const char* kTemplate = "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}";

TEST_F(CreateTest, BuildsALayeredManifestFromAGgufFile) {
    const std::string gguf = copy_model("models/stories260K.gguf", downloads_);
    Store s(root_.string());
    std::vector<CreateStatus> log;
    const std::string mf = std::string("FROM ./stories260K.gguf\nTEMPLATE \"\"\"") + kTemplate +
                           "\"\"\"\nSYSTEM You tell stories.\nPARAMETER temperature 0.25\nPARAMETER stop <end>\n"
                           "PARAMETER num_predict 7\nMESSAGE user Hi\nMESSAGE assistant Once upon a time\nLICENSE MIT\n";
    Status st = create_from(s, "stories-mf", mf, &log);
    ASSERT_TRUE(st.ok()) << st.message();
    ASSERT_FALSE(log.empty());
    EXPECT_EQ(log.back().status, "success");
    EXPECT_TRUE(has_status(log, "parsing GGUF"));
    EXPECT_TRUE(has_status(log, "linked stories260K.gguf into the store"));
    EXPECT_TRUE(has_status(log, "writing manifest"));

    auto r = s.resolve("stories-mf");
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_EQ(r->model_digest, "sha256:" + *sha256_file(gguf));
    EXPECT_EQ(r->system, "You tell stories.");
    EXPECT_EQ(r->template_text, kTemplate);
    EXPECT_EQ(r->params, json::parse(R"({"temperature":0.25,"stop":["<end>"],"num_predict":7})"));
    EXPECT_EQ(r->messages, json::parse(R"([{"role":"user","content":"Hi"},{"role":"assistant","content":"Once upon a time"}])"));
    EXPECT_EQ(r->license, "MIT");

    // The weights are the same inode as the file: no second copy.
    struct stat a{}, b{};
    ASSERT_EQ(::stat(gguf.c_str(), &a), 0);
    ASSERT_EQ(::stat(r->model_path.c_str(), &b), 0);
    EXPECT_EQ(a.st_ino, b.st_ino);
    EXPECT_EQ(b.st_nlink, 2u);

    // Ollama's layout: layer order, media types, sizes, and the config blob.
    auto m = s.read_manifest("stories-mf");
    ASSERT_TRUE(m.ok());
    std::vector<std::string> types;
    for (const auto& l : m->layers) {
        types.push_back(l.media_type);
        EXPECT_EQ(l.size, (int64_t)fs::file_size(s.blob_path(l.digest))) << l.media_type;
        EXPECT_EQ(l.digest, "sha256:" + *sha256_file(s.blob_path(l.digest)));
    }
    EXPECT_EQ(types, (std::vector<std::string>{kMediaModel, kMediaTemplate, kMediaSystem, kMediaParams, kMediaMessages, kMediaLicense}));
    EXPECT_EQ(m->config.media_type, "application/vnd.docker.container.image.v1+json");
    std::ifstream cf(s.blob_path(m->config.digest));
    const json config = json::parse(cf);
    EXPECT_EQ(config["model_format"], "gguf");
    EXPECT_EQ(config["model_family"], "llama");
    EXPECT_EQ(config["model_families"], json::array({"llama"}));
    EXPECT_FALSE(config["model_type"].get<std::string>().empty());
    EXPECT_FALSE(config["file_type"].get<std::string>().empty());

    // The TEMPLATE is what the model renders with (the store's info says so to the service).
    auto info = s.info(*r);
    ASSERT_TRUE(info.ok());
    EXPECT_EQ(info->chat_template, kTemplate);
    EXPECT_TRUE(temps().empty());
}

TEST_F(CreateTest, FromAStoreModelReusesItsLayersAndBlobsAreCounted) {
    const std::string gguf = copy_model("models/stories260K.gguf", downloads_);
    Store s(root_.string());
    ASSERT_TRUE(create_from(s, "base", "FROM " + gguf + "\nSYSTEM base system\nPARAMETER temperature 0.5\nPARAMETER top_k 3\n").ok());
    const size_t blobs_before = n_blobs();
    std::vector<CreateStatus> log;
    Status st = create_from(s, "derived:v1", "FROM base\nSYSTEM derived system\nPARAMETER temperature 0.9\n", &log);
    ASSERT_TRUE(st.ok()) << st.message();
    auto base = s.resolve("base");
    auto derived = s.resolve("derived:v1");
    ASSERT_TRUE(base.ok() && derived.ok());
    EXPECT_EQ(derived->model_digest, base->model_digest);
    EXPECT_TRUE(has_status(log, "using existing layer " + base->model_digest));
    EXPECT_EQ(derived->system, "derived system");
    EXPECT_EQ(derived->params, json::parse(R"({"temperature":0.9,"top_k":3})"));  // merged over the base's
    EXPECT_EQ(n_blobs(), blobs_before + 2);  // system and params: the weights and the config are shared

    // Removing one of the two models keeps the shared weights; removing the other frees them,
    // and the original file is untouched (only the store's link went).
    ASSERT_TRUE(s.remove("base").ok());
    EXPECT_TRUE(s.has_blob(derived->model_digest));
    ASSERT_TRUE(s.resolve("derived:v1").ok());
    ASSERT_TRUE(s.remove("derived:v1").ok());
    EXPECT_FALSE(s.has_blob(derived->model_digest));
    EXPECT_TRUE(fs::exists(gguf));
    EXPECT_EQ(n_blobs(), 0u);

    // SYSTEM "" removes the base's; a blob FROM (the FROM `show --modelfile` writes) is not hashed again.
    ASSERT_TRUE(create_from(s, "base", "FROM " + gguf + "\nSYSTEM base system\n").ok());
    auto b2 = s.resolve("base");
    ASSERT_TRUE(b2.ok());
    log.clear();
    ASSERT_TRUE(create_from(s, "plain", "FROM " + b2->model_path + "\nSYSTEM \"\"\n", &log).ok());
    EXPECT_FALSE(has_status(log, "hashing"));
    EXPECT_EQ(s.resolve("plain")->system, "");
    ASSERT_TRUE(create_from(s, "plain2", "FROM @" + b2->model_digest + "\n").ok());
    EXPECT_EQ(s.resolve("plain2")->model_digest, b2->model_digest);
}

TEST_F(CreateTest, CopiesAcrossFileSystems) {
    const fs::path shm = fs::path("/dev/shm") / ("hearth-create-test-" + std::to_string(::getpid()));
    std::error_code ec;
    fs::create_directories(shm, ec);
    struct stat a{}, b{};
    if (ec || ::stat(shm.c_str(), &a) != 0 || ::stat(root_.c_str(), &b) != 0 || a.st_dev == b.st_dev) {
        fs::remove_all(shm, ec);
        GTEST_SKIP() << "no second file system at /dev/shm";
    }
    const std::string gguf = copy_model("models/stories260K.gguf", shm);
    Store s(root_.string());
    std::vector<CreateStatus> log;
    // By default the file would be referenced in place (reference_test.cpp); this opt-out copies.
    ::setenv("HEARTH_COPY_FOREIGN", "1", 1);
    Status st = create_from(s, "copied", "FROM " + gguf + "\n", &log);
    ::unsetenv("HEARTH_COPY_FOREIGN");
    fs::remove_all(shm, ec);
    ASSERT_TRUE(st.ok()) << st.message();
    EXPECT_TRUE(has_status(log, "copied stories260K.gguf into the store"));
    auto r = s.resolve("copied");
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->model_digest, "sha256:" + *sha256_file(test::testdata_path("models/stories260K.gguf")));
    EXPECT_TRUE(temps().empty());
}

TEST_F(CreateTest, AnInterruptedCreateLeavesNothingBehind) {
    const std::string gguf = copy_model("models/stories260K.gguf", downloads_);
    Store s(root_.string());
    // A dead writer's leftovers (kill -9 mid-create): removed by the next create.
    std::ofstream(root_ / "blobs" / ".hearth-tmp-99999999-deadbeef.gguf") << "partial";
    for (const std::string stop_at : {"linked", "creating new layer", "writing manifest"}) {
        auto mf = parse_modelfile("FROM " + gguf + "\nSYSTEM s\nPARAMETER temperature 0.5\n");
        ASSERT_TRUE(mf.ok());
        auto req = create_request(*mf, "interrupted", "");
        bool stopped = false;
        Status st = create_model(s, *req, [&](const CreateStatus& c) {
            if (c.status.rfind(stop_at, 0) == 0) stopped = true;
            return !stopped;
        });
        EXPECT_TRUE(stopped) << stop_at;
        EXPECT_FALSE(st.ok()) << stop_at;
        EXPECT_FALSE(s.resolve("interrupted").ok()) << stop_at;
        EXPECT_FALSE(fs::exists(root_ / "manifests/registry.ollama.ai/library/interrupted")) << stop_at;
        EXPECT_TRUE(temps().empty()) << stop_at << ": " << (temps().empty() ? "" : temps()[0]);
        EXPECT_EQ(n_blobs(), 0u) << stop_at;  // what it added and nothing uses went too
        EXPECT_TRUE(fs::exists(gguf));
    }
    // A failed create keeps an existing model of the same name as it was.
    ASSERT_TRUE(create_from(s, "keep", "FROM " + gguf + "\nSYSTEM first\n").ok());
    auto mf = parse_modelfile("FROM " + gguf + "\nSYSTEM second\n");
    auto req = create_request(*mf, "keep", "");
    EXPECT_FALSE(create_model(s, *req, [](const CreateStatus& c) { return c.status != "writing manifest"; }).ok());
    EXPECT_EQ(s.resolve("keep")->system, "first");
    EXPECT_TRUE(temps().empty());
}

TEST_F(CreateTest, RefusesWhatItCannotBuild) {
    const std::string gguf = copy_model("models/stories260K.gguf", downloads_);
    std::ofstream(downloads_ / "notes.gguf") << "not a gguf";
    Store s(root_.string());
    auto fails = [&](const std::string& mf, StatusCode code, const std::string& part) {
        Status st = create_from(s, "bad", mf);
        EXPECT_EQ(st.code(), code) << mf << ": " << st.message();
        EXPECT_NE(st.message().find(part), std::string::npos) << st.message();
        EXPECT_FALSE(s.resolve("bad").ok());
    };
    fails("FROM " + gguf + "\nADAPTER ./lora.gguf\n", StatusCode::not_found, "ADAPTER ./lora.gguf: no such file");
    fails("FROM " + gguf + "\nTEMPLATE \"\"\"{{ if .System }}{{ .System }}{{ end }}{{ .Prompt }}\"\"\"\n", StatusCode::invalid_argument,
          "Ollama Go template");
    fails("FROM " + gguf + "\nTEMPLATE \"\"\"{% for %}\"\"\"\n", StatusCode::invalid_argument, "not a Jinja chat template");
    fails("FROM no-such-model\n", StatusCode::not_found, "base model 'no-such-model' not found");
    fails("FROM ./missing.gguf\n", StatusCode::not_found, "no such file");
    fails("FROM ./notes.gguf\n", StatusCode::invalid_argument, "is not a GGUF model file");
    fails("FROM @sha256:" + std::string(64, 'a') + "\n", StatusCode::invalid_argument, "not in the store");
    EXPECT_EQ(create_from(s, "bad name!", "FROM " + gguf + "\n").code(), StatusCode::invalid_argument);
    auto mf = parse_modelfile("FROM " + gguf + "\n");
    auto req = create_request(*mf, "bad", "");
    req->quantize = "q9_z";
    EXPECT_EQ(create_model(s, *req).code(), StatusCode::invalid_argument);
    // The API takes no local paths.
    CreateRequest api;
    api.model = "bad";
    api.from = gguf;
    EXPECT_NE(check_create(s, api).message().find("local path is not accepted"), std::string::npos);
    api.from.clear();
    api.parameters = {{"temperature", "warm"}};
    EXPECT_EQ(check_create(s, api).code(), StatusCode::invalid_argument);
    EXPECT_TRUE(temps().empty());
    EXPECT_EQ(n_blobs(), 0u);
}

TEST_F(CreateTest, Quantizes) {
    const std::string gguf = copy_model("models/llama3-tiny.F16.gguf", downloads_);
    Store s(root_.string());
    auto mf = parse_modelfile("FROM " + gguf + "\n");
    auto req = create_request(*mf, "tiny:q8_0", "");
    req->quantize = "q8_0";
    std::vector<CreateStatus> log;
    Status st = create_model(s, *req, [&](const CreateStatus& c) {
        log.push_back(c);
        return true;
    });
    ASSERT_TRUE(st.ok()) << st.message();
    EXPECT_TRUE(has_status(log, "quantizing F16 model to Q8_0"));
    auto r = s.resolve("tiny:q8_0");
    ASSERT_TRUE(r.ok());
    auto info = s.info(*r);
    ASSERT_TRUE(info.ok());
    EXPECT_EQ(info->quantization, "Q8_0");
    EXPECT_NE(r->model_digest, "sha256:" + *sha256_file(gguf));
    // Only the quantized weights stay: the F16 blob this create linked in is not kept (no model
    // uses it); the user's file is still there.
    EXPECT_FALSE(s.has_blob("sha256:" + *sha256_file(gguf)));
    EXPECT_EQ(n_blobs(), 2u);  // weights and config
    EXPECT_TRUE(fs::exists(gguf));
    EXPECT_TRUE(temps().empty());
}

TEST_F(CreateTest, BlobWriterChecksTheDigest) {
    Store s(root_.string());
    auto w = s.begin_blob();
    ASSERT_TRUE(w.ok());
    const std::string text = "hello";
    ASSERT_TRUE(w->write(std::as_bytes(std::span(text.data(), text.size()))).ok());
    auto bad = w->commit("sha256:" + std::string(64, '0'));
    EXPECT_EQ(bad.status().code(), StatusCode::invalid_argument);
    EXPECT_TRUE(temps().empty());
    auto w2 = s.begin_blob();
    ASSERT_TRUE(w2->write(std::as_bytes(std::span(text.data(), text.size()))).ok());
    auto good = w2->commit("sha256:" + sha256_hex(std::string_view(text)));
    ASSERT_TRUE(good.ok()) << good.status().message();
    EXPECT_TRUE(s.has_blob(*good));
    EXPECT_TRUE(temps().empty());
}

TEST_F(CreateTest, FindsHuggingFaceAndLmStudioFiles) {
    // Hugging Face's cache: snapshot entries are symlinks into the repo's blobs/.
    const fs::path hub = base_ / "hf" / "hub";
    const fs::path repo = hub / "models--bartowski--Tiny-Llama-GGUF";
    fs::create_directories(repo / "blobs");
    fs::create_directories(repo / "snapshots" / "abc123" / "sub");
    fs::create_directories(repo / "refs");
    std::ofstream(repo / "refs" / "main") << "abc123\n";
    const std::string blob = copy_model("models/stories260K.gguf", repo / "blobs");
    fs::create_symlink(blob, repo / "snapshots" / "abc123" / "Tiny-Llama-Q8_0.gguf");
    fs::create_symlink(blob, repo / "snapshots" / "abc123" / "sub" / "Tiny-Llama-F16.gguf");
    std::ofstream(repo / "snapshots" / "abc123" / "mmproj-Tiny-f16.gguf") << "x";
    std::ofstream(repo / "snapshots" / "abc123" / "Big-Q4_K_M-00001-of-00002.gguf") << "x";
    // LM Studio: <publisher>/<repo>/*.gguf.
    const fs::path lms = base_ / "lms";
    fs::create_directories(lms / "lmstudio-community" / "Qwen-GGUF");
    copy_model("models/qwen3-tiny.Q8_0.gguf", lms / "lmstudio-community" / "Qwen-GGUF");
    fs::rename(lms / "lmstudio-community" / "Qwen-GGUF" / "qwen3-tiny.Q8_0.gguf", lms / "lmstudio-community" / "Qwen-GGUF" / "Qwen3-0.6B-q8_0.gguf");

    auto dirs = default_import_dirs([&](const char* k) -> const char* {
        static std::string hf, home;
        hf = (base_ / "hf").string();
        home = (base_ / "home").string();
        if (std::string_view(k) == "HF_HOME") return hf.c_str();
        if (std::string_view(k) == "HOME") return home.c_str();
        return nullptr;
    });
    ASSERT_EQ(dirs.hf_hub, std::vector<std::string>{(base_ / "hf" / "hub").string()});
    dirs.lmstudio = {lms.string()};
    Store s(root_.string());
    auto found = find_importable(s, dirs);
    std::map<std::string, ImportCandidate> by;
    for (const auto& c : found) by[c.model] = c;
    ASSERT_EQ(found.size(), 5u);
    ASSERT_TRUE(by.count("hf.co/bartowski/Tiny-Llama-GGUF:Q8_0"));
    EXPECT_EQ(by["hf.co/bartowski/Tiny-Llama-GGUF:Q8_0"].skip, "");
    EXPECT_EQ(by["hf.co/bartowski/Tiny-Llama-GGUF:Q8_0"].source, "huggingface");
    EXPECT_TRUE(by.count("hf.co/bartowski/Tiny-Llama-GGUF:F16"));
    EXPECT_NE(by["hf.co/bartowski/Tiny-Llama-GGUF:mmproj-Tiny-f16"].skip, "");
    EXPECT_NE(by["hf.co/bartowski/Tiny-Llama-GGUF:Big-Q4_K_M-00001-of-00002"].skip, "");  // split
    ASSERT_TRUE(by.count("hf.co/lmstudio-community/Qwen-GGUF:Q8_0"));
    EXPECT_EQ(by["hf.co/lmstudio-community/Qwen-GGUF:Q8_0"].source, "lmstudio");

    // Importing = creating from the path; afterwards the same scan reports it imported, and the
    // Hugging Face blob is the store's blob (one inode).
    const auto& c = by["hf.co/bartowski/Tiny-Llama-GGUF:Q8_0"];
    CreateRequest req;
    req.model = c.model;
    req.from = c.path;
    req.allow_paths = true;
    ASSERT_TRUE(create_model(s, req).ok());
    for (const auto& again : find_importable(s, dirs))
        if (again.model == c.model) {
            EXPECT_TRUE(again.imported);
        }
    struct stat a{}, b{};
    ASSERT_EQ(::stat(blob.c_str(), &a), 0);
    ASSERT_EQ(::stat(s.resolve(c.model)->model_path.c_str(), &b), 0);
    EXPECT_EQ(a.st_ino, b.st_ino);
}

TEST(QuantLabel, FromFileNames) {
    EXPECT_EQ(quant_label("Llama-3.2-1B-Instruct-Q4_K_M.gguf"), "Q4_K_M");
    EXPECT_EQ(quant_label("qwen2.5-0.5b-instruct-q8_0.gguf"), "Q8_0");
    EXPECT_EQ(quant_label("model.IQ4_XS.gguf"), "IQ4_XS");
    EXPECT_EQ(quant_label("gemma-3-4b-it-BF16.gguf"), "BF16");
    EXPECT_EQ(quant_label("model.gguf"), "");
    EXPECT_EQ(quant_label("Qwen3-0.6B.gguf"), "");
}

}  // namespace
}  // namespace hearth::store
