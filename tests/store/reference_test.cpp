// References (store/store.h): a GGUF file FROM another file system is registered in place, not
// copied; the model loads from it; a change to the file is caught at load with a message naming
// it; removing the model removes the record and never the file; HEARTH_COPY_FOREIGN=1 copies.
// The second file system is /dev/shm (tmpfs): skipped where it is the temp dir's.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "base/sha256.h"
#include "gguf/gguf.h"
#include "model/model.h"
#include "store/create.h"
#include "store/store.h"
#include "support/testdata.h"

namespace hearth::store {
namespace {

namespace fs = std::filesystem;

std::string read_file(const std::string& p) {
    std::ifstream f(p, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

class ReferenceTest : public ::testing::Test {
protected:
    void SetUp() override {
        const std::string tag = std::to_string(::getpid()) + "-" + ::testing::UnitTest::GetInstance()->current_test_info()->name();
        root_ = fs::temp_directory_path() / ("hearth-reference-test-" + tag);
        foreign_ = fs::path("/dev/shm") / ("hearth-reference-test-" + tag);
        fs::remove_all(root_);
        fs::create_directories(root_);
        std::error_code ec;
        fs::remove_all(foreign_, ec);
        fs::create_directories(foreign_, ec);
        struct stat a{}, b{};
        if (ec || ::stat(foreign_.c_str(), &a) != 0 || ::stat(root_.c_str(), &b) != 0 || a.st_dev == b.st_dev)
            GTEST_SKIP() << "no second file system at /dev/shm";
        gguf_ = (foreign_ / "stories260K.gguf").string();
        fs::copy_file(test::testdata_path("models/stories260K.gguf"), gguf_);
        fs::permissions(gguf_, fs::perms::owner_read | fs::perms::owner_write, fs::perm_options::replace);
        digest_ = "sha256:" + *sha256_file(gguf_);
        ::unsetenv("HEARTH_COPY_FOREIGN");
    }
    void TearDown() override {
        ::unsetenv("HEARTH_COPY_FOREIGN");
        std::error_code ec;
        fs::remove_all(root_, ec);
        fs::remove_all(foreign_, ec);
    }

    Status create(Store& s, const std::string& name, std::vector<CreateStatus>* log = nullptr) {
        Modelfile mf;
        mf.from = gguf_;
        auto req = create_request(mf, name, foreign_.string());
        if (!req.ok()) return req.status();
        return create_model(s, *req, [&](const CreateStatus& c) {
            if (log) log->push_back(c);
            return true;
        });
    }
    std::string blob() const { return (root_ / "blobs" / ("sha256-" + digest_.substr(7))).string(); }
    std::string record() const { return (root_ / "references" / ("sha256-" + digest_.substr(7) + ".json")).string(); }
    // Rewrites one byte of the file in place (same size) and moves its modification time on.
    void change_byte(int64_t at, char to) {
        const int fd = ::open(gguf_.c_str(), O_WRONLY);
        ASSERT_GE(fd, 0);
        ASSERT_EQ(::pwrite(fd, &to, 1, at), 1);
        ::close(fd);
        bump_mtime();
    }
    void bump_mtime() {
        struct stat st{};
        ASSERT_EQ(::stat(gguf_.c_str(), &st), 0);
        timespec times[2] = {st.st_atim, st.st_mtim};
        times[1].tv_sec += 10;
        ASSERT_EQ(::utimensat(AT_FDCWD, gguf_.c_str(), times, 0), 0);
    }

    fs::path root_, foreign_;
    std::string gguf_, digest_;
};

bool has_status(const std::vector<CreateStatus>& log, const std::string& prefix) {
    for (const auto& c : log)
        if (c.status.rfind(prefix, 0) == 0) return true;
    return false;
}

TEST_F(ReferenceTest, CreateRecordsAReferenceAndTheModelLoadsFromTheFile) {
    Store s(root_.string());
    std::vector<CreateStatus> log;
    ASSERT_TRUE(create(s, "ref", &log).ok());
    EXPECT_TRUE(has_status(log, "referenced " + gguf_ + " in place"));
    EXPECT_FALSE(has_status(log, "copied"));

    // No second copy: no blob of the weights, a record naming the file.
    EXPECT_FALSE(fs::exists(blob()));
    for (const auto& e : fs::directory_iterator(root_ / "blobs"))
        EXPECT_NE(e.file_size(), fs::file_size(gguf_)) << e.path();
    ASSERT_TRUE(fs::exists(record()));
    const auto rec = nlohmann::json::parse(read_file(record()));
    EXPECT_EQ(rec["path"], gguf_);
    EXPECT_EQ(rec["size"], (int64_t)fs::file_size(gguf_));
    EXPECT_TRUE(rec["verified_at"].is_string());
    EXPECT_TRUE(rec["inode"].is_number_integer());

    // The manifest is Ollama's shape: the weights layer names the file's digest.
    auto m = s.read_manifest("ref");
    ASSERT_TRUE(m.ok());
    ASSERT_NE(m->find(kMediaModel), nullptr);
    EXPECT_EQ(m->find(kMediaModel)->digest, digest_);
    EXPECT_EQ(m->find(kMediaModel)->size, (int64_t)fs::file_size(gguf_));
    EXPECT_TRUE(s.has_blob(digest_));

    auto ref = s.resolve("ref");
    ASSERT_TRUE(ref.ok()) << ref.status().message();
    EXPECT_EQ(ref->model_path, gguf_);
    EXPECT_EQ(ref->model_digest, digest_);
    EXPECT_EQ(s.list().size(), 1u);
    auto info = s.info(*ref);
    ASSERT_TRUE(info.ok()) << info.status().message();
    EXPECT_EQ(info->architecture, "llama");
    auto file = gguf::open_gguf(ref->model_path);
    ASSERT_TRUE(file.ok()) << file.status().message();
    auto model = model::load_model(*file, model::LoadOptions{2});
    ASSERT_TRUE(model.ok()) << model.status().message();

    // A second create of the same file uses the reference as a layer that exists.
    log.clear();
    ASSERT_TRUE(create(s, "ref2", &log).ok());
    EXPECT_TRUE(has_status(log, "using existing layer " + digest_));
    EXPECT_TRUE(s.resolve("ref2").ok());
}

TEST_F(ReferenceTest, AChangedFileIsAClearErrorAtLoad) {
    Store s(root_.string());
    ASSERT_TRUE(create(s, "ref").ok());
    const std::string original = read_file(gguf_);

    // Touched only: hashed again, the same bytes, so it loads; the record notes the new state.
    const auto before = nlohmann::json::parse(read_file(record()));
    bump_mtime();
    {
        Store fresh(root_.string());
        auto ref = fresh.resolve("ref");
        ASSERT_TRUE(ref.ok()) << ref.status().message();
    }
    const auto after = nlohmann::json::parse(read_file(record()));
    EXPECT_NE(before["mtime_ns"], after["mtime_ns"]);

    // The same size, other bytes, a new time: refused, naming the file and the model.
    change_byte((int64_t)original.size() - 7, (char)(original[original.size() - 7] ^ 0x55));
    auto ref = Store(root_.string()).resolve("ref");
    ASSERT_FALSE(ref.ok());
    EXPECT_EQ(ref.status().code(), StatusCode::corrupt);
    const std::string msg = ref.status().message();
    EXPECT_NE(msg.find("the file " + gguf_ + " referenced by model 'ref:latest' changed or was removed"), std::string::npos) << msg;
    EXPECT_NE(msg.find("re-run hearth create"), std::string::npos) << msg;
    EXPECT_NE(msg.find("SHA-256"), std::string::npos) << msg;
    // The listing still shows it (it does not hash); the record is not refreshed by a mismatch.
    EXPECT_EQ(Store(root_.string()).list().size(), 1u);
    EXPECT_EQ(nlohmann::json::parse(read_file(record()))["mtime_ns"], after["mtime_ns"]);

    // Put back: loads again.
    change_byte((int64_t)original.size() - 7, original[original.size() - 7]);
    ASSERT_EQ(read_file(gguf_), original);
    EXPECT_TRUE(Store(root_.string()).resolve("ref").ok());

    // Another size: refused without hashing.
    std::ofstream(gguf_, std::ios::app) << "x";
    ref = Store(root_.string()).resolve("ref");
    ASSERT_FALSE(ref.ok());
    EXPECT_NE(ref.status().message().find(" when it was registered"), std::string::npos) << ref.status().message();

    // Gone.
    fs::remove(gguf_);
    ref = Store(root_.string()).resolve("ref");
    ASSERT_FALSE(ref.ok());
    EXPECT_NE(ref.status().message().find("the file " + gguf_ + " referenced by model 'ref:latest' changed or was removed (it is gone)"),
              std::string::npos)
        << ref.status().message();
    EXPECT_FALSE(s.has_blob(digest_));
}

TEST_F(ReferenceTest, RemovingTheModelsRemovesTheRecordNeverTheFile) {
    Store s(root_.string());
    ASSERT_TRUE(create(s, "one").ok());
    ASSERT_TRUE(create(s, "two").ok());
    ASSERT_TRUE(s.remove("one").ok());
    EXPECT_TRUE(fs::exists(record()));  // "two" still uses it
    EXPECT_TRUE(s.resolve("two").ok());
    ASSERT_TRUE(s.remove("two").ok());
    EXPECT_FALSE(fs::exists(record()));
    EXPECT_FALSE(s.has_blob(digest_));
    ASSERT_TRUE(fs::exists(gguf_));
    EXPECT_EQ("sha256:" + *sha256_file(gguf_), digest_);
}

TEST_F(ReferenceTest, CopyForeignKeepsTheCopy) {
    ::setenv("HEARTH_COPY_FOREIGN", "1", 1);
    Store s(root_.string());
    std::vector<CreateStatus> log;
    ASSERT_TRUE(create(s, "copied", &log).ok());
    EXPECT_TRUE(has_status(log, "copied stories260K.gguf into the store"));
    EXPECT_TRUE(fs::exists(blob()));
    EXPECT_FALSE(fs::exists(record()));
    fs::remove(gguf_);
    auto ref = s.resolve("copied");
    ASSERT_TRUE(ref.ok()) << ref.status().message();
    EXPECT_EQ(ref->model_path, blob());
}

TEST_F(ReferenceTest, ABlobInTheStoreWinsOverAReference) {
    Store s(root_.string());
    ASSERT_TRUE(create(s, "ref").ok());
    fs::copy_file(gguf_, blob());  // e.g. pulled meanwhile
    fs::remove(gguf_);
    auto ref = s.resolve("ref");
    ASSERT_TRUE(ref.ok()) << ref.status().message();
    EXPECT_EQ(ref->model_path, blob());
    ASSERT_TRUE(s.remove("ref").ok());
    EXPECT_FALSE(fs::exists(blob()));
    EXPECT_FALSE(fs::exists(record()));
}

}  // namespace
}  // namespace hearth::store
