// hearth list / ps / show / stop / rm / cp and --version: Ollama's columns and messages, each
// through a live daemon (`hearth serve` on a temporary store) and without one (the store read
// directly), plus a scripted fake daemon for what a real one does not show here (other
// versions, a GPU, an API key, Ollama's own time stamps).
#include <gtest/gtest.h>

#include <chrono>
#include <ctime>
#include <regex>
#include <sstream>
#include <thread>

#include "cli/cli_daemon.h"

namespace {

using namespace hearth::test;

std::vector<std::string> lines(const std::string& s) {
    std::vector<std::string> out;
    std::istringstream in(s);
    for (std::string l; std::getline(in, l);) out.push_back(l);
    return out;
}

// The cell of `row` under the header `column` of `header` (columns are left-aligned, so every
// cell starts where its header does), up to the next run of 4+ spaces.
std::string cell(const std::string& header, const std::string& row, const std::string& column) {
    const size_t at = header.find(column);
    if (at == std::string::npos || at >= row.size()) return "";
    const std::string rest = row.substr(at);
    return rest.substr(0, rest.find("    "));
}

std::string row_of(const std::string& out, const std::string& name) {
    for (const auto& l : lines(out))
        if (l.rfind(name + " ", 0) == 0) return l;
    return "";
}

std::string rfc3339_from_now(std::chrono::seconds delta, const char* offset = "Z", int offset_s = 0) {
    const std::time_t t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now() + delta) + offset_s;
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[64];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    return std::string(buf) + ".123456789" + offset;
}

class CliModels : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        store_ = new CliStore("models");
        daemon_ = new Daemon(store_->root());
        dead_port_ = free_port();
    }
    static void TearDownTestSuite() {
        delete daemon_;
        delete store_;
    }
    static std::string with_daemon() { return "HEARTH_HOST=" + daemon_->host() + " HEARTH_MODELS=" + store_->root(); }
    static std::string without_daemon() {
        return "HEARTH_HOST=127.0.0.1:" + std::to_string(dead_port_) + " HEARTH_MODELS=" + store_->root();
    }
    // `hearth ps` until `name` is (or is no longer) listed; its last output.
    static std::string ps_until(const std::string& name, bool listed) {
        std::string out;
        for (int i = 0; i < 100; ++i) {
            out = run_hearth("ps", "", with_daemon()).out;
            if (!row_of(out, name).empty() == listed) break;
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        return out;
    }

    static CliStore* store_;
    static Daemon* daemon_;
    static int dead_port_;
};
CliStore* CliModels::store_ = nullptr;
Daemon* CliModels::daemon_ = nullptr;
int CliModels::dead_port_ = 0;

TEST_F(CliModels, ListShowsEveryModelInAlignedColumns) {
    const std::regex id("[0-9a-f]{12}"), size(R"(\d+(\.\d)? (B|KB|MB|GB))"),
        modified(R"((Less than a second|1 second|\d+ seconds|About a minute|\d+ minutes) ago)");
    for (const std::string& env : {without_daemon(), with_daemon()}) {
        HearthRun r = run_hearth("list", "", env);
        ASSERT_EQ(r.exit_code, 0) << r.err;
        const auto ls = lines(r.out);
        ASSERT_GE(ls.size(), 6u) << r.out;
        const std::string& header = ls[0];
        EXPECT_TRUE(std::regex_match(header, std::regex("NAME +ID +SIZE +MODIFIED"))) << header;
        for (const char* name : {"stories:latest", "stories-short:latest", "llama3-tiny:latest", "qwen3-tiny:latest", "bge:latest"}) {
            const std::string row = row_of(r.out, name);
            ASSERT_FALSE(row.empty()) << name << "\n" << r.out;
            EXPECT_TRUE(std::regex_match(cell(header, row, "ID"), id)) << row;
            EXPECT_TRUE(std::regex_match(cell(header, row, "SIZE"), size)) << row;
            EXPECT_TRUE(std::regex_match(cell(header, row, "MODIFIED"), modified)) << row;
        }
        // Ollama's size: the manifest's layers and config, in decimal units.
        const double stories_mb = (double)(fs::file_size(model("stories260K.gguf")) + 2) / 1e6;
        char want[32];
        std::snprintf(want, sizeof want, "%.1f MB", stories_mb);
        EXPECT_EQ(cell(header, row_of(r.out, "stories:latest"), "SIZE"), want);
    }
    // A prefix filters; ls is list.
    HearthRun r = run_hearth("ls stories", "", without_daemon());
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(lines(r.out).size(), 3u) << r.out;
}

TEST_F(CliModels, ListThroughTheDaemonMatchesTheStore) {
    HearthRun a = run_hearth("list", "", without_daemon()), b = run_hearth("list", "", with_daemon());
    ASSERT_EQ(a.exit_code, 0);
    ASSERT_EQ(b.exit_code, 0);
    const auto la = lines(a.out), lb = lines(b.out);
    ASSERT_EQ(la.size(), lb.size());
    for (size_t i = 1; i < la.size(); ++i) {
        const std::string name = la[i].substr(0, la[i].find(' '));
        const std::string other = row_of(b.out, name);
        EXPECT_EQ(cell(la[0], la[i], "ID"), cell(lb[0], other, "ID")) << name;
        EXPECT_EQ(cell(la[0], la[i], "SIZE"), cell(lb[0], other, "SIZE")) << name;
    }
}

TEST_F(CliModels, ShowPrintsOllamasView) {
    const std::string want =
        "  Model\n"
        "    architecture        llama\n";
    HearthRun a = run_hearth("show stories-short", "", without_daemon()), b = run_hearth("show stories-short", "", with_daemon());
    ASSERT_EQ(a.exit_code, 0) << a.err;
    ASSERT_EQ(b.exit_code, 0) << b.err;
    EXPECT_EQ(a.out, b.out);
    const std::string& o = a.out;
    EXPECT_EQ(o.rfind(want, 0), 0u) << o;
    EXPECT_TRUE(std::regex_search(o, std::regex("\n    parameters          \\d+(\\.\\d+)?[KMB]\n"))) << o;
    EXPECT_NE(o.find("\n    context length      2048\n"), std::string::npos) << o;
    EXPECT_NE(o.find("\n    embedding length    64\n"), std::string::npos) << o;
    EXPECT_NE(o.find("\n    quantization        F32\n\n"), std::string::npos) << o;
    EXPECT_NE(o.find("\n  Capabilities\n    completion\n\n"), std::string::npos) << o;
    EXPECT_NE(o.find("\n  Parameters\n    num_predict    3\n    temperature    0\n\n"), std::string::npos) << o;
    EXPECT_NE(o.find("\n  System\n    Once upon a time\n\n"), std::string::npos) << o;
    // The license's first two lines, then "...".
    EXPECT_NE(o.find("\n  License\n    MIT License\n    Copyright 2024 hearth\n    ...\n"), std::string::npos) << o;

    HearthRun chat = run_hearth("show llama3-tiny", "", with_daemon());
    ASSERT_EQ(chat.exit_code, 0) << chat.err;
    EXPECT_NE(chat.out.find("context length      131072"), std::string::npos) << chat.out;
    EXPECT_NE(chat.out.find("quantization        Q8_0"), std::string::npos) << chat.out;
    EXPECT_EQ(chat.out.find("  System"), std::string::npos) << chat.out;

    // A GGUF path works without the store.
    HearthRun file = run_hearth("show " + model("stories260K.gguf"), "", without_daemon());
    ASSERT_EQ(file.exit_code, 0) << file.err;
    EXPECT_EQ(file.out.rfind(want, 0), 0u) << file.out;
}

TEST_F(CliModels, ShowFlags) {
    for (const std::string& env : {without_daemon(), with_daemon()}) {
        HearthRun mf = run_hearth("show stories-short --modelfile", "", env);
        ASSERT_EQ(mf.exit_code, 0) << mf.err;
        EXPECT_NE(mf.out.find("\nFROM " + store_->root() + "/blobs/sha256-"), std::string::npos) << mf.out;
        EXPECT_NE(mf.out.find("\nSYSTEM \"\"\"Once upon a time\"\"\"\n"), std::string::npos) << mf.out;
        EXPECT_NE(mf.out.find("\nPARAMETER num_predict 3\n"), std::string::npos) << mf.out;
        EXPECT_NE(mf.out.find("\nLICENSE \"\"\"MIT License\n"), std::string::npos) << mf.out;
        EXPECT_NE(run_hearth("show llama3-tiny --template", "", env).out.find("<|start_header_id|>"), std::string::npos);
        EXPECT_EQ(run_hearth("show stories-short --system", "", env).out, "Once upon a time\n");
        EXPECT_EQ(run_hearth("show stories-short --license", "", env).out.rfind("MIT License\nCopyright 2024 hearth\n", 0), 0u);
        EXPECT_NE(run_hearth("show stories-short --parameters", "", env).out.find("num_predict"), std::string::npos);
        HearthRun v = run_hearth("show stories -v", "", env);
        ASSERT_EQ(v.exit_code, 0) << v.err;
        EXPECT_NE(v.out.find("\n  Metadata\n"), std::string::npos) << v.out;
        EXPECT_TRUE(std::regex_search(v.out, std::regex(R"(\n    general\.architecture +llama\n)"))) << v.out;
        EXPECT_TRUE(std::regex_search(v.out, std::regex(R"(\n    tokenizer\.ggml\.tokens +\[.* \.\.\.\+\d+ more\]\n)"))) << v.out;
        expect_one_error_line(run_hearth("show stories --system --license", "", env), "show", "only one of");
        expect_one_error_line(run_hearth("show nope", "", env), "show", "model 'nope' not found");
    }
}

TEST_F(CliModels, PsWithoutADaemonIsAnEmptyTableAndANote) {
    HearthRun r = run_hearth("ps", "", without_daemon());
    EXPECT_EQ(r.exit_code, 0);
    EXPECT_EQ(r.out, "NAME    ID    SIZE    PROCESSOR    CONTEXT    UNTIL\n");
    EXPECT_NE(r.err.find("no daemon is running at 127.0.0.1:" + std::to_string(dead_port_)), std::string::npos) << r.err;
}

TEST_F(CliModels, PsShowsLoadedModelsAndStopUnloads) {
    HearthRun run = run_hearth("run stories hi -n 1", "", with_daemon());
    ASSERT_EQ(run.exit_code, 0) << run.err;
    run = run_hearth("run llama3-tiny hi -n 1 --keepalive -1", "", with_daemon());
    ASSERT_EQ(run.exit_code, 0) << run.err;
    HearthRun ps = run_hearth("ps", "", with_daemon());
    ASSERT_EQ(ps.exit_code, 0) << ps.err;
    const std::string header = lines(ps.out)[0];
    EXPECT_TRUE(std::regex_match(header, std::regex("NAME +ID +SIZE +PROCESSOR +CONTEXT +UNTIL"))) << header;
    const std::string stories = row_of(ps.out, "stories:latest"), llama = row_of(ps.out, "llama3-tiny:latest");
    ASSERT_FALSE(stories.empty()) << ps.out;
    ASSERT_FALSE(llama.empty()) << ps.out;
    // The same ID as `hearth list`.
    const std::string list = run_hearth("list", "", with_daemon()).out;
    EXPECT_EQ(cell(header, stories, "ID"), cell(lines(list)[0], row_of(list, "stories:latest"), "ID"));
    EXPECT_TRUE(std::regex_match(cell(header, stories, "SIZE"), std::regex(R"(\d+(\.\d)? (KB|MB|GB))"))) << stories;
    EXPECT_EQ(cell(header, stories, "PROCESSOR"), "100% CPU");
    EXPECT_EQ(cell(header, stories, "CONTEXT"), "2048");
    EXPECT_TRUE(std::regex_match(cell(header, stories, "UNTIL"), std::regex("(4 minutes|About a minute|\\d+ seconds) from now")))
        << stories;
    // keep_alive -1: "Forever" (the daemon writes now + 292 years, as Ollama does).
    const std::string raw_ps = http_get(daemon_->port(), "/api/ps");
    EXPECT_NE(raw_ps.find("\"expires_at\":\"23"), std::string::npos) << raw_ps;
    EXPECT_EQ(cell(header, llama, "UNTIL"), "Forever") << llama;

    HearthRun stop = run_hearth("stop llama3-tiny", "", with_daemon());
    EXPECT_EQ(stop.exit_code, 0) << stop.err;
    EXPECT_EQ(stop.out, "");
    EXPECT_TRUE(row_of(ps_until("llama3-tiny:latest", false), "llama3-tiny:latest").empty());
    // keep_alive 0: unloaded as soon as the answer is done.
    run = run_hearth("run qwen3-tiny hi -n 1 --keepalive 0", "", with_daemon());
    ASSERT_EQ(run.exit_code, 0) << run.err;
    EXPECT_TRUE(row_of(ps_until("qwen3-tiny:latest", false), "qwen3-tiny:latest").empty());
}

TEST_F(CliModels, StopNeedsADaemonAndAKnownModel) {
    expect_one_error_line(run_hearth("stop stories", "", without_daemon()), "stop",
                          "no daemon is running at 127.0.0.1:" + std::to_string(dead_port_));
    expect_one_error_line(run_hearth("stop nope", "", with_daemon()), "stop", "couldn't find model \"nope\" to stop");
}

TEST_F(CliModels, CopyAndRemoveWithoutADaemon) {
    HearthRun cp = run_hearth("cp stories copy-a", "", without_daemon());
    ASSERT_EQ(cp.exit_code, 0) << cp.err;
    EXPECT_EQ(cp.out, "copied 'stories' to 'copy-a'\n");
    EXPECT_TRUE(store_->has_manifest("copy-a"));
    const std::string list = run_hearth("list", "", without_daemon()).out;
    const std::string header = lines(list)[0];
    // The same manifest bytes: the same ID.
    EXPECT_EQ(cell(header, row_of(list, "copy-a:latest"), "ID"), cell(header, row_of(list, "stories:latest"), "ID")) << list;
    HearthRun rm = run_hearth("rm copy-a", "", without_daemon());
    ASSERT_EQ(rm.exit_code, 0) << rm.err;
    EXPECT_EQ(rm.out, "deleted 'copy-a'\n");
    EXPECT_FALSE(store_->has_manifest("copy-a"));
    EXPECT_TRUE(store_->has_manifest("stories"));
    expect_one_error_line(run_hearth("rm copy-a", "", without_daemon()), "rm", "not found");
    expect_one_error_line(run_hearth("cp nope copy-b", "", without_daemon()), "cp", "not found");
    expect_one_error_line(run_hearth("cp stories 'bad name!'", "", without_daemon()), "cp", "bad name!");
    // Several names: each is reported; a missing one fails the command at the end.
    ASSERT_EQ(run_hearth("cp stories copy-c", "", without_daemon()).exit_code, 0);
    HearthRun two = run_hearth("rm missing copy-c", "", without_daemon());
    EXPECT_EQ(two.exit_code, 1);
    EXPECT_EQ(two.out, "deleted 'copy-c'\n");
    EXPECT_EQ(two.err, "hearth rm: model 'missing' not found\n");
}

TEST_F(CliModels, CopyAndRemoveThroughTheDaemonUnloadFirst) {
    HearthRun cp = run_hearth("cp stories copy-d", "", with_daemon());
    ASSERT_EQ(cp.exit_code, 0) << cp.err;
    EXPECT_EQ(cp.out, "copied 'stories' to 'copy-d'\n");
    ASSERT_EQ(run_hearth("run copy-d hi -n 1", "", with_daemon()).exit_code, 0);
    EXPECT_FALSE(row_of(ps_until("copy-d:latest", true), "copy-d:latest").empty());
    HearthRun rm = run_hearth("rm copy-d", "", with_daemon());
    ASSERT_EQ(rm.exit_code, 0) << rm.err;
    EXPECT_EQ(rm.out, "deleted 'copy-d'\n");
    EXPECT_EQ(rm.err, "");
    EXPECT_TRUE(row_of(run_hearth("ps", "", with_daemon()).out, "copy-d:latest").empty());
    EXPECT_FALSE(store_->has_manifest("copy-d"));
    EXPECT_TRUE(row_of(run_hearth("list", "", with_daemon()).out, "copy-d:latest").empty());
    // The shared weights stay for the original.
    HearthRun still = run_hearth("run stories hi -n 1", "", with_daemon());
    EXPECT_EQ(still.exit_code, 0) << still.err;
    expect_one_error_line(run_hearth("rm copy-d", "", with_daemon()), "rm", "not found");
    expect_one_error_line(run_hearth("cp nope copy-e", "", with_daemon()), "cp", "not found");
}

TEST_F(CliModels, VersionComparesWithTheDaemon) {
    const std::regex same("hearth version is [0-9][0-9.]*\n");
    HearthRun none = run_hearth("--version", "", without_daemon());
    EXPECT_EQ(none.exit_code, 0);
    EXPECT_TRUE(std::regex_match(none.out, same)) << none.out;
    HearthRun up = run_hearth("--version", "", with_daemon());
    EXPECT_EQ(up.out, none.out);
    FakeDaemon other([](const std::string&, const std::string& path, const std::string&, const std::string&) {
        return path == "/api/version" ? FakeDaemon::json_reply(200, R"({"version":"9.9.9"})") : FakeDaemon::json_reply(404, "{}");
    });
    HearthRun old = run_hearth("-v", "", "HEARTH_HOST=" + other.host());
    EXPECT_EQ(old.exit_code, 0);
    EXPECT_EQ(old.out, "hearth version is 9.9.9\nWarning: client version is " + none.out.substr(18));
}

TEST_F(CliModels, OllamasFormatsFromAnotherDaemon) {
    // Answers as an Ollama daemon writes them: local-time offsets, a GPU, a bearer key.
    const std::string tags = R"({"models":[{"name":"llama3.2:latest","model":"llama3.2:latest","modified_at":")" +
                             rfc3339_from_now(-std::chrono::hours(72), "-07:00", -7 * 3600) +
                             R"(","size":2019393189,"digest":"a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72"}]})";
    const std::string ps = R"({"models":[)"
                           R"({"name":"a:latest","size":5000000000,"size_vram":5000000000,"digest":"aaaaaaaaaaaaaaaa","context_length":8192,"expires_at":")" +
                           rfc3339_from_now(std::chrono::seconds(270)) + R"("},)"
                           R"({"name":"b:latest","size":4000000000,"size_vram":1000000000,"digest":"bbbbbbbbbbbbbbbb","context_length":4096,"expires_at":")" +
                           rfc3339_from_now(-std::chrono::seconds(5)) + R"("},)"
                           R"({"name":"c:latest","size":1000,"size_vram":0,"digest":"cccccccccccccccc","context_length":2048,"expires_at":"2318-01-01T00:00:00Z"}]})";
    FakeDaemon fake([&](const std::string&, const std::string& path, const std::string& headers, const std::string&) {
        if (headers.find("Authorization: Bearer sekrit") == std::string::npos)
            return FakeDaemon::json_reply(401, R"({"error":"unauthorized"})");
        if (path == "/api/version") return FakeDaemon::json_reply(200, R"({"version":"0.12.0"})");
        if (path == "/api/tags") return FakeDaemon::json_reply(200, tags);
        if (path == "/api/ps") return FakeDaemon::json_reply(200, ps);
        return FakeDaemon::json_reply(404, R"({"error":"not here"})");
    });
    const std::string env = "HEARTH_HOST=http://" + fake.host() + " HEARTH_API_KEY=sekrit";
    HearthRun list = run_hearth("list", "", env);
    ASSERT_EQ(list.exit_code, 0) << list.err;
    EXPECT_EQ(list.out,
              "NAME               ID              SIZE      MODIFIED\n"
              "llama3.2:latest    a80c4f17acd5    2.0 GB    3 days ago\n");
    HearthRun p = run_hearth("ps", "", env);
    ASSERT_EQ(p.exit_code, 0) << p.err;
    const auto pl = lines(p.out);
    ASSERT_EQ(pl.size(), 4u) << p.out;
    EXPECT_EQ(cell(pl[0], pl[1], "PROCESSOR"), "100% GPU");
    EXPECT_EQ(cell(pl[0], pl[1], "UNTIL"), "4 minutes from now");
    EXPECT_EQ(cell(pl[0], pl[1], "SIZE"), "5.0 GB");
    EXPECT_EQ(cell(pl[0], pl[2], "PROCESSOR"), "75%/25% CPU/GPU");
    EXPECT_EQ(cell(pl[0], pl[2], "UNTIL"), "Stopping...");
    EXPECT_EQ(cell(pl[0], pl[3], "PROCESSOR"), "100% CPU");
    EXPECT_EQ(cell(pl[0], pl[3], "UNTIL"), "Forever");
    EXPECT_EQ(cell(pl[0], pl[3], "SIZE"), "1000 B");
    EXPECT_EQ(cell(pl[0], pl[3], "CONTEXT"), "2048");
    // Without the key: the daemon's refusal, one line.
    expect_one_error_line(run_hearth("list", "", "HEARTH_HOST=" + fake.host()), "list", "unauthorized");
}

TEST_F(CliModels, BadHostIsOneLine) {
    expect_one_error_line(run_hearth("list", "", "HEARTH_HOST=127.0.0.1:port"), "list", "HEARTH_HOST");
    expect_one_error_line(run_hearth("ps", "", "HEARTH_HOST=127.0.0.1:0"), "ps", "HEARTH_HOST");
}

}  // namespace
