// `hearth pull` as people and scripts run it, against a registry on loopback
// (tests/store/test_registry.h): in process and through a daemon, line-based progress when
// stderr is not a terminal and bars redrawn in place when it is, clear one-line errors, and a
// pull killed with SIGKILL that resumes.
#include <gtest/gtest.h>

#include <filesystem>
#include <regex>
#include <sstream>

#include "cli/cli_daemon.h"
#include "cli/cli_util.h"
#include "store/test_registry.h"

namespace hearth::test {
namespace {

namespace fs = std::filesystem;

std::string tiny_gguf() {
    std::vector<uint8_t> bytes;
    EXPECT_TRUE(read_file(model("stories260K.gguf"), bytes));
    return std::string(bytes.begin(), bytes.end());
}

std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> out;
    std::istringstream in(text);
    for (std::string l; std::getline(in, l);) out.push_back(l);
    return out;
}

// No daemon: HEARTH_HOST points at a port nothing listens on.
std::string in_process_env(const EmptyStore& s) {
    return "HEARTH_HOST=127.0.0.1:" + std::to_string(free_port()) + " HEARTH_MODELS=" + s.root();
}

TEST(CliPull, InProcessWritesReadableLinesToANonTerminal) {
    EmptyStore store("inproc");
    TestRegistry reg;
    const std::string weights = tiny_gguf();
    const std::string d = TestRegistry::digest_of(weights);
    reg.add_model("library", "stories", "latest", {{"application/vnd.ollama.image.model", weights}});
    const std::string name = reg.host() + "/library/stories";
    HearthRun r = run_hearth("pull --insecure " + name, "", in_process_env(store));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, "");
    EXPECT_EQ(r.err.find('\r'), std::string::npos) << r.err;
    EXPECT_EQ(r.err.find('\033'), std::string::npos) << r.err;
    const auto lines = lines_of(r.err);
    ASSERT_GE(lines.size(), 5u) << r.err;
    EXPECT_EQ(lines.front(), "pulling manifest");
    EXPECT_EQ(lines[lines.size() - 3], "verifying sha256 digest");
    EXPECT_EQ(lines[lines.size() - 2], "writing manifest");
    EXPECT_EQ(lines.back(), "success");
    // The weights' last line: done, with the size.
    const std::string bar = "pulling " + d.substr(7, 12) + ": 100% ▕";
    bool done_line = false;
    for (const auto& l : lines)
        if (l.rfind(bar, 0) == 0) {
            done_line = true;
            EXPECT_NE(l.find("▏ 1.2 MB"), std::string::npos) << l;
        }
    EXPECT_TRUE(done_line) << r.err;

    HearthRun list = run_hearth("list", "", in_process_env(store));
    ASSERT_EQ(list.exit_code, 0) << list.err;
    EXPECT_NE(list.out.find(reg.host() + "/library/stories:latest"), std::string::npos) << list.out;

    // The pulled model runs.
    HearthRun run = run_hearth("run " + name + " 'Once upon a time' --num-predict 3", "", in_process_env(store));
    EXPECT_EQ(run.exit_code, 0) << run.err;
}

TEST(CliPull, SlowBlobShowsProgressAtEachTenth) {
    EmptyStore store("tenths");
    TestRegistry reg;
    reg.add_model("library", "tiny", "latest",
                  {{"application/vnd.ollama.image.model", TestRegistry::random_blob(600000, 1)}});
    reg.set_hook([](const TestRegistry::Request& r) {
        TestRegistry::Fault f;
        if (r.kind == TestRegistry::Kind::blob) f.bytes_per_s = 500000;
        return f;
    });
    HearthRun r = run_hearth("pull --insecure " + reg.host() + "/library/tiny", "", in_process_env(store));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    int progress_lines = 0;
    bool with_rate = false;
    for (const auto& l : lines_of(r.err))
        if (l.find("/600.0 KB") != std::string::npos) {
            ++progress_lines;
            with_rate = with_rate || l.find(" KB/s  ") != std::string::npos;
        }
    EXPECT_GE(progress_lines, 3) << r.err;  // not one line per event: at most one per tenth
    EXPECT_LE(progress_lines, 11) << r.err;
    EXPECT_TRUE(with_rate) << r.err;
}

TEST(CliPull, ThroughTheDaemon) {
    EmptyStore store("daemon");
    TestRegistry reg;
    const std::string weights = tiny_gguf();
    reg.add_model("library", "stories", "latest", {{"application/vnd.ollama.image.model", weights}});
    Daemon daemon(store.root());
    const std::string name = reg.host() + "/library/stories";
    HearthRun r = run_hearth("pull --insecure " + name, "", "HEARTH_HOST=" + daemon.host());
    ASSERT_EQ(r.exit_code, 0) << r.err << daemon.log();
    const auto lines = lines_of(r.err);
    ASSERT_FALSE(lines.empty());
    EXPECT_EQ(lines.front(), "pulling manifest");
    EXPECT_EQ(lines.back(), "success");
    EXPECT_EQ(r.err.find('\r'), std::string::npos) << r.err;
    EXPECT_TRUE(fs::exists(store.root() + "/manifests/" + reg.host() + "/library/stories/latest"));
    // The daemon did the download.
    EXPECT_FALSE(reg.requests_of(TestRegistry::Kind::blob).empty());

    // Errors come back as one line at the end, through the daemon too.
    r = run_hearth("pull --insecure " + reg.host() + "/library/nothere", "", "HEARTH_HOST=" + daemon.host());
    EXPECT_EQ(r.exit_code, 1);
    const auto err_lines = lines_of(r.err);
    ASSERT_FALSE(err_lines.empty());
    EXPECT_EQ(err_lines.back().rfind("hearth pull: ", 0), 0u) << r.err;
    EXPECT_NE(err_lines.back().find("not found"), std::string::npos) << r.err;
}

TEST(CliPull, ErrorsAreOneClearLine) {
    EmptyStore store("errors");
    TestRegistry reg;
    HearthRun r = run_hearth("pull --insecure " + reg.host() + "/library/nothere", "", in_process_env(store));
    EXPECT_EQ(r.exit_code, 1);
    auto lines = lines_of(r.err);
    ASSERT_FALSE(lines.empty());
    EXPECT_EQ(lines.back().rfind("hearth pull: ", 0), 0u) << r.err;
    EXPECT_NE(lines.back().find("model '" + reg.host() + "/library/nothere:latest' not found"), std::string::npos)
        << r.err;

    r = run_hearth("pull ./model.gguf", "", in_process_env(store));
    expect_one_error_line(r, "pull", "file path");

    r = run_hearth("pull x", "", in_process_env(store) + " HEARTH_MIRRORS=ftp://nope");
    expect_one_error_line(r, "pull", "HEARTH_MIRRORS");
}

TEST(CliPull, KilledPullResumesAndTerminalRedrawsInPlace) {
    EmptyStore store("kill");
    TestRegistry reg;
    const std::string weights = TestRegistry::random_blob(1500000, 2);
    const std::string d = TestRegistry::digest_of(weights);
    reg.add_model("library", "tiny", "latest", {{"application/vnd.ollama.image.model", weights}});
    reg.set_hook([](const TestRegistry::Request& r) {
        TestRegistry::Fault f;
        if (r.kind == TestRegistry::Kind::blob) f.bytes_per_s = 500000;
        return f;
    });
    const std::string name = reg.host() + "/library/tiny";
    const std::string host = "HEARTH_HOST=127.0.0.1:" + std::to_string(free_port());
    const std::string models = "HEARTH_MODELS=" + store.root();
    {
        Pty pty({"pull", "--insecure", name}, {host, models});
        // On a terminal: bars redrawn in place (cursor up, clear line), with rate and time left.
        ASSERT_TRUE(pty.wait_for("B/s", 0, 20)) << pty.output();
        for (int i = 0; i < 400 && reg.bytes_served() < 1500000 / 2; ++i)
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        EXPECT_NE(pty.output().find("\033[K"), std::string::npos);
        EXPECT_TRUE(std::regex_search(pty.output(), std::regex("\033\\[[0-9]+A"))) << pty.output();
        EXPECT_NE(pty.output().find("pulling " + d.substr(7, 12) + ":"), std::string::npos);
    }  // SIGKILL, as a crash or a closed laptop lid would
    EXPECT_FALSE(fs::exists(store.root() + "/manifests"));
    const std::string partial = store.root() + "/blobs/sha256-" + d.substr(7) + "-partial";
    ASSERT_TRUE(fs::exists(partial));
    // The state on disk is at most a second behind; the next pull starts from it.
    const auto state = nlohmann::json::parse(read_text_file(partial + "-0"));
    const int64_t kept = state["Completed"].get<int64_t>();
    reg.wait_idle();  // the killed pull's connection is gone on this side too
    reg.reset_counters();
    reg.set_hook(nullptr);
    HearthRun r = run_hearth("pull --insecure " + name, "", host + " " + models);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto gets = reg.requests_of(TestRegistry::Kind::blob);
    ASSERT_EQ(gets.size(), 1u);
    EXPECT_EQ(gets[0].range_start, kept);
    EXPECT_GT(kept, 0);
    EXPECT_EQ(reg.bytes_served(), 1500000 - kept);
    EXPECT_FALSE(fs::exists(partial));
    EXPECT_TRUE(fs::exists(store.root() + "/blobs/sha256-" + d.substr(7)));
}

}  // namespace
}  // namespace hearth::test
