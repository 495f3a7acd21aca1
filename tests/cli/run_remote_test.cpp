// `hearth run` through a running daemon (and, for comparison, the same store without one):
// one-shot and piped prompts, --verbose's summary, the model's own parameters under the flags,
// chat templates, --format, embedding models, conversations that keep their context, and the
// failures a client must put in one line (unknown model, flags the daemon cannot honour, a
// daemon that drops the stream or reports an error mid-stream).
#include <gtest/gtest.h>

#include <atomic>
#include <nlohmann/json.hpp>
#include <regex>
#include <thread>

#include "cli/cli_daemon.h"

namespace {

using namespace hearth::test;

// The numbers after `label` (at a line start) in the --verbose summary, one per turn.
std::vector<long> stat_values(const std::string& err, const std::string& label) {
    std::vector<long> v;
    const std::regex re("(?:^|\n)" + label + R"(:\s+(\d+) token)");
    for (auto it = std::sregex_iterator(err.begin(), err.end(), re); it != std::sregex_iterator(); ++it)
        v.push_back(std::stol((*it)[1]));
    return v;
}

class CliRunDaemon : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        store_ = new CliStore("run");
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
    static bool loaded(const std::string& name) {
        return run_hearth("ps", "", with_daemon()).out.find("\n" + name + " ") != std::string::npos;
    }

    static CliStore* store_;
    static Daemon* daemon_;
    static int dead_port_;
};
CliStore* CliRunDaemon::store_ = nullptr;
Daemon* CliRunDaemon::daemon_ = nullptr;
int CliRunDaemon::dead_port_ = 0;

TEST_F(CliRunDaemon, OneShotTellsTheSameStoryAsInProcess) {
    const auto g = nlohmann::json::parse(read_text_file(testdata_path("golden/stories260K.json")));
    const std::string want = g["greedy_text"].get<std::string>() + "\n";
    const std::string args = "run stories \"Once upon a time\" --temperature 0 --repeat-penalty 1 -n 64";
    HearthRun remote = run_hearth(args, "", with_daemon());
    ASSERT_EQ(remote.exit_code, 0) << remote.err;
    EXPECT_EQ(remote.out, want);
    EXPECT_TRUE(loaded("stories:latest"));  // it ran in the daemon
    // No daemon: the name is resolved in the store and runs in this process.
    HearthRun local = run_hearth(args, "", without_daemon());
    ASSERT_EQ(local.exit_code, 0) << local.err;
    EXPECT_EQ(local.out, want);
}

TEST_F(CliRunDaemon, PipedPrompt) {
    HearthRun r = run_hearth("run stories --temperature 0 -n 4", "Once upon a time\n", with_daemon());
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out.rfind(", there was", 0), 0u) << r.out;
}

TEST_F(CliRunDaemon, VerbosePrintsOllamasSummary) {
    const std::regex duration(R"([0-9.]+(ns|µs|ms|s)|[0-9]+m[0-9.]+s)");
    std::vector<long> prompt_tokens;
    for (const std::string& env : {with_daemon(), without_daemon()}) {
        HearthRun r = run_hearth("run stories \"A dragon flew\" -n 10 --temperature 0 --verbose", "", env);
        ASSERT_EQ(r.exit_code, 0) << r.err;
        const std::string& e = r.err;
        for (const char* label : {"total duration", "load duration", "prompt eval duration", "eval duration"}) {
            std::smatch m;
            ASSERT_TRUE(std::regex_search(e, m, std::regex(std::string("(?:^|\n)") + label + R"(:\s+(\S+)\n)"))) << label << "\n" << e;
            EXPECT_TRUE(std::regex_match(m[1].str(), duration)) << label << ": " << m[1];
        }
        EXPECT_TRUE(std::regex_search(e, std::regex(R"(\nprompt eval rate:\s+[0-9.]+ tokens/s\n)"))) << e;
        EXPECT_TRUE(std::regex_search(e, std::regex(R"(\neval rate:\s+[0-9.]+ tokens/s\n)"))) << e;
        EXPECT_EQ(stat_values(e, "eval count"), std::vector<long>{10}) << e;
        const auto evaluated = stat_values(e, "prompt eval count"), cached = stat_values(e, "prompt cached");
        ASSERT_EQ(evaluated.size(), 1u) << e;
        ASSERT_EQ(cached.size(), 1u) << e;
        prompt_tokens.push_back(evaluated[0] + cached[0]);  // from the cache or computed
    }
    // The same prompt, whether the daemon or this process tokenized it.
    EXPECT_EQ(prompt_tokens[0], prompt_tokens[1]);
    EXPECT_GT(prompt_tokens[0], 3);
}

TEST_F(CliRunDaemon, TheModelsParametersApplyUnderTheFlags) {
    for (const std::string& env : {with_daemon(), without_daemon()}) {
        // stories-short's params layer: num_predict 3, temperature 0.
        HearthRun a = run_hearth("run stories-short Lily --verbose", "", env);
        ASSERT_EQ(a.exit_code, 0) << a.err;
        EXPECT_EQ(stat_values(a.err, "eval count"), std::vector<long>{3}) << a.err;
        HearthRun b = run_hearth("run stories-short Lily --verbose -n 5", "", env);
        ASSERT_EQ(b.exit_code, 0) << b.err;
        EXPECT_EQ(stat_values(b.err, "eval count"), std::vector<long>{5}) << b.err;
    }
}

TEST_F(CliRunDaemon, ChatModelsGoThroughTheirTemplate) {
    HearthRun chat = run_hearth("run llama3-tiny hi -n 1 --verbose", "", with_daemon());
    HearthRun raw = run_hearth("run llama3-tiny hi -n 1 --verbose --raw", "", with_daemon());
    ASSERT_EQ(chat.exit_code, 0) << chat.err;
    ASSERT_EQ(raw.exit_code, 0) << raw.err;
    const auto c = stat_values(chat.err, "prompt eval count"), cc = stat_values(chat.err, "prompt cached");
    const auto w = stat_values(raw.err, "prompt eval count"), wc = stat_values(raw.err, "prompt cached");
    ASSERT_EQ(c.size(), 1u);
    ASSERT_EQ(w.size(), 1u);
    EXPECT_GT(c[0] + cc[0], 20);
    EXPECT_LE(w[0] + wc[0], 3);
    // The thinking switch reaches qwen3's template (an empty think block when off).
    HearthRun on = run_hearth("run qwen3-tiny hi -n 1 --verbose --think", "", with_daemon());
    HearthRun off = run_hearth("run qwen3-tiny hi -n 1 --verbose --think=false", "", with_daemon());
    ASSERT_EQ(on.exit_code, 0) << on.err;
    ASSERT_EQ(off.exit_code, 0) << off.err;
    const auto a = stat_values(on.err, "prompt eval count"), ac = stat_values(on.err, "prompt cached");
    const auto b = stat_values(off.err, "prompt eval count"), bc = stat_values(off.err, "prompt cached");
    EXPECT_GT(b[0] + bc[0], a[0] + ac[0]);
}

TEST_F(CliRunDaemon, FormatSchemaGivesValidJson) {
    const std::string schema =
        R"('{"type":"object","properties":{"ok":{"type":"boolean"},"n":{"type":"integer","minimum":0,"maximum":9}},"required":["ok","n"],"additionalProperties":false}')";
    HearthRun r = run_hearth("run llama3-tiny \"Give me JSON\" -n 200 --temperature 0 --format " + schema, "", with_daemon());
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto j = nlohmann::json::parse(r.out, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << r.out;
    EXPECT_TRUE(j["ok"].is_boolean());
    EXPECT_TRUE(j["n"].is_number_integer());
    expect_one_error_line(run_hearth("run llama3-tiny hi --format xml", "", with_daemon()), "run", "--format");
}

TEST_F(CliRunDaemon, EmbeddingModelPrintsItsVector) {
    HearthRun r = run_hearth("run bge \"hello world\"", "", with_daemon());
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto j = nlohmann::json::parse(r.out, nullptr, false);
    ASSERT_TRUE(j.is_array()) << r.out;
    ASSERT_FALSE(j.empty());
    EXPECT_TRUE(j[0].is_number_float());
}

TEST_F(CliRunDaemon, ConversationsKeepTheirContext) {
    // A template-less model continues through /api/generate's context; the second turn's prompt
    // holds the first exchange, most of it from the daemon's prefix cache.
    HearthRun r = run_hearth("run stories -i --temperature 0 -n 40 --verbose", "Once upon a time\nThe next day\n", with_daemon());
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto cached = stat_values(r.err, "prompt cached"), evaluated = stat_values(r.err, "prompt eval count");
    ASSERT_EQ(cached.size(), 2u) << r.err;
    EXPECT_GE(cached[1] + evaluated[1], 5 + 40 + 3) << r.err;
    EXPECT_GT(cached[1], 0) << r.err;
    // A chat model resends the conversation: the prompt grows turn by turn; /clear starts over.
    HearthRun c = run_hearth("run llama3-tiny -i --temperature 0 -n 8 --verbose",
                             "first message\nsecond message\n/clear\nfirst message\n", with_daemon());
    ASSERT_EQ(c.exit_code, 0) << c.err;
    EXPECT_NE(c.out.find("Cleared session context"), std::string::npos);
    const auto cc = stat_values(c.err, "prompt cached"), ce = stat_values(c.err, "prompt eval count");
    ASSERT_EQ(cc.size(), 3u) << c.err;
    EXPECT_GT(cc[1] + ce[1], cc[0] + ce[0]);
    EXPECT_EQ(cc[2] + ce[2], cc[0] + ce[0]);
}

TEST_F(CliRunDaemon, FailuresAreOneLine) {
    expect_one_error_line(run_hearth("run nope hi", "", with_daemon()), "run", "model 'nope' not found");
    expect_one_error_line(run_hearth("run nope hi", "", without_daemon()), "run", "model 'nope' not found");
    expect_one_error_line(run_hearth("run stories hi --kv-type q8_0", "", with_daemon()), "run", "--kv-type");
    expect_one_error_line(run_hearth("run stories hi --ignore-eos", "", with_daemon()), "run", "--ignore-eos");
    expect_one_error_line(run_hearth("run stories hi --keepalive soon", "", with_daemon()), "run", "--keepalive");
    expect_one_error_line(run_hearth("run stories hi --top-p 1.5", "", with_daemon()), "run", "top_p");
    expect_one_error_line(run_hearth("run stories hi --think=maybe", "", with_daemon()), "run", "--think");
    // A prompt longer than the context: the daemon's 400, as one line.
    expect_one_error_line(run_hearth("run stories -c 8 \"Once upon a time there was a little girl named Lily\"", "", with_daemon()),
                          "run", "context");
}

TEST(CliRunFakeDaemon, ADroppedStreamOrAnErrorLineIsOneLine) {
    const std::string show = R"({"template":"{{ messages }}","capabilities":["completion"],"details":{},"model_info":{}})";
    std::atomic<bool> drop{true};
    FakeDaemon fake([&](const std::string&, const std::string& path, const std::string&, const std::string&) {
        if (path == "/api/version") return FakeDaemon::json_reply(200, R"({"version":"0.1.0"})");
        if (path == "/api/show") return FakeDaemon::json_reply(200, show);
        if (path == "/api/chat" && drop)
            return FakeDaemon::cut_stream({R"({"model":"m","message":{"role":"assistant","content":"Hello"},"done":false})"});
        if (path == "/api/chat") {
            std::string s = FakeDaemon::cut_stream({R"({"model":"m","message":{"role":"assistant","content":"Hi"},"done":false})",
                                                    R"({"error":"the model ran out of memory"})"});
            return s + "0\r\n\r\n";
        }
        return FakeDaemon::json_reply(404, R"({"error":"not here"})");
    });
    HearthRun r = run_hearth("run m hi", "", "HEARTH_HOST=" + fake.host());
    EXPECT_EQ(r.out, "Hello\n");
    expect_one_error_line(r, "run", "broke before the answer ended");
    drop = false;
    r = run_hearth("run m hi", "", "HEARTH_HOST=" + fake.host());
    EXPECT_EQ(r.out, "Hi\n");
    expect_one_error_line(r, "run", "the model ran out of memory");
}

}  // namespace
