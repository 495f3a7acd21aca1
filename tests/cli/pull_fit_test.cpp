// `hearth pull` and the fit check (store/pull.h): a line saying whether the model fits before
// the progress bars, and --check-fit refusing a model that does not, before any byte of it is
// downloaded; in process and through a daemon.
#include <gtest/gtest.h>

#include <filesystem>
#include <sstream>

#include "cli/cli_daemon.h"
#include "cli/cli_util.h"
#include "store/test_registry.h"

namespace hearth::test {
namespace {

namespace fs = std::filesystem;

std::string bytes_of(const std::string& name) {
    std::vector<uint8_t> bytes;
    EXPECT_TRUE(read_file(model(name), bytes));
    return std::string(bytes.begin(), bytes.end());
}

std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> out;
    std::istringstream in(text);
    for (std::string l; std::getline(in, l);) out.push_back(l);
    return out;
}

std::string in_process_env(const EmptyStore& s) {
    return "HEARTH_HOST=127.0.0.1:" + std::to_string(free_port()) + " HEARTH_MODELS=" + s.root();
}

// 16M positions x 1024 sequences of llama3-tiny's 1 KiB per position: no machine has it.
constexpr const char* kHugeContext = " HEARTH_CONTEXT_LENGTH=16777216 HEARTH_NUM_PARALLEL=1024";

TEST(CliPullFit, SaysWhetherItFitsBeforeTheBars) {
    EmptyStore store("line");
    TestRegistry reg;
    const std::string weights = bytes_of("llama3-tiny.F16.gguf");
    const std::string d = TestRegistry::digest_of(weights);
    reg.add_model("library", "tiny", "latest", {{"application/vnd.ollama.image.model", weights}});
    const std::string name = reg.host() + "/library/tiny";

    HearthRun r = run_hearth("pull --insecure " + name, "", in_process_env(store));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    auto lines = lines_of(r.err);
    ASSERT_GE(lines.size(), 3u) << r.err;
    EXPECT_EQ(lines[0], "pulling manifest");
    EXPECT_EQ(lines[1].rfind("fits in memory: needs ", 0), 0u) << r.err;
    EXPECT_NE(lines[1].find(" available"), std::string::npos) << r.err;
    // Then the bars (the config blob's, then the weights').
    size_t first_bar = lines.size(), weights_bar = lines.size();
    for (size_t i = 0; i < lines.size(); ++i) {
        if (lines[i] != "pulling manifest" && lines[i].rfind("pulling ", 0) == 0 && first_bar == lines.size()) first_bar = i;
        if (lines[i].rfind("pulling " + d.substr(7, 12) + ":", 0) == 0 && weights_bar == lines.size()) weights_bar = i;
    }
    EXPECT_EQ(first_bar, 2u) << r.err;
    EXPECT_LT(weights_bar, lines.size()) << r.err;
    EXPECT_EQ(lines.back(), "success");

    // Does not fit: said, and downloaded anyway (another store, the same model).
    EmptyStore store2("line-nofit");
    r = run_hearth("pull --insecure " + name, "", in_process_env(store2) + kHugeContext);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    lines = lines_of(r.err);
    ASSERT_GE(lines.size(), 2u) << r.err;
    EXPECT_EQ(lines[1].rfind("does not fit: needs ", 0), 0u) << r.err;
    EXPECT_NE(lines[1].find("try num_ctx"), std::string::npos) << r.err;
    EXPECT_TRUE(fs::exists(store2.root() + "/blobs/sha256-" + d.substr(7)));
}

TEST(CliPullFit, CheckFitRefusesBeforeDownloading) {
    EmptyStore store("refuse");
    TestRegistry reg;
    const std::string weights = bytes_of("llama3-tiny.F16.gguf");
    reg.add_model("library", "tiny", "latest", {{"application/vnd.ollama.image.model", weights}});
    const std::string name = reg.host() + "/library/tiny";
    HearthRun r = run_hearth("pull --insecure --check-fit " + name, "", in_process_env(store) + kHugeContext);
    EXPECT_EQ(r.exit_code, 1) << r.err;
    const auto lines = lines_of(r.err);
    ASSERT_FALSE(lines.empty());
    EXPECT_EQ(lines.back().rfind("hearth pull: ", 0), 0u) << r.err;
    EXPECT_NE(lines.back().find("does not fit: needs "), std::string::npos) << r.err;
    EXPECT_NE(lines.back().find("nothing was downloaded"), std::string::npos) << r.err;
    EXPECT_EQ(r.err.find("pulling " + TestRegistry::digest_of(weights).substr(7, 12)), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(store.root() + "/blobs") && !fs::is_empty(store.root() + "/blobs"));
    EXPECT_FALSE(fs::exists(store.root() + "/manifests"));
    EXPECT_LT(reg.bytes_served(), (int64_t)weights.size() / 4);

    // A model that fits goes through.
    r = run_hearth("pull --insecure --check-fit " + name, "", in_process_env(store));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_TRUE(fs::exists(store.root() + "/manifests/" + reg.host() + "/library/tiny/latest"));
}

TEST(CliPullFit, ThroughTheDaemon) {
    EmptyStore store("daemon");
    TestRegistry reg;
    reg.add_model("library", "tiny", "latest", {{"application/vnd.ollama.image.model", bytes_of("llama3-tiny.F16.gguf")}});
    // Weights the header check cannot read: only a daemon told to check says so.
    reg.add_model("library", "noise", "latest",
                  {{"application/vnd.ollama.image.model", TestRegistry::random_blob(20000, 5)}});
    Daemon daemon(store.root());
    HearthRun r = run_hearth("pull --insecure " + reg.host() + "/library/tiny", "", "HEARTH_HOST=" + daemon.host());
    ASSERT_EQ(r.exit_code, 0) << r.err << daemon.log();
    auto lines = lines_of(r.err);
    ASSERT_GE(lines.size(), 2u) << r.err;
    EXPECT_EQ(lines[1].rfind("fits in memory: needs ", 0), 0u) << r.err;

    r = run_hearth("pull --insecure --check-fit " + reg.host() + "/library/noise", "", "HEARTH_HOST=" + daemon.host());
    ASSERT_EQ(r.exit_code, 0) << r.err << daemon.log();
    EXPECT_NE(r.err.find("cannot tell whether it fits before downloading: "), std::string::npos) << r.err;
    r = run_hearth("pull --insecure " + reg.host() + "/library/noise", "", "HEARTH_HOST=" + daemon.host());
    ASSERT_EQ(r.exit_code, 0) << r.err << daemon.log();
    EXPECT_EQ(r.err.find("cannot tell"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace hearth::test
