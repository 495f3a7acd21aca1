// The REPL of `hearth run` on a pseudo-terminal, as a person uses it: type a prompt, read the
// streamed answer, /show info, /set ..., Ctrl-C to stop a reply, /bye. Through a running daemon
// and in this process.
#include <gtest/gtest.h>

#include "cli/cli_daemon.h"

namespace {

using namespace hearth::test;

class CliRepl : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        store_ = new CliStore("repl");
        daemon_ = new Daemon(store_->root());
        dead_port_ = free_port();
    }
    static void TearDownTestSuite() {
        delete daemon_;
        delete store_;
    }
    static std::vector<std::string> with_daemon() {
        return {"HEARTH_HOST=" + daemon_->host(), "HEARTH_MODELS=" + store_->root()};
    }
    static std::vector<std::string> without_daemon() {
        return {"HEARTH_HOST=127.0.0.1:" + std::to_string(dead_port_), "HEARTH_MODELS=" + store_->root(), "HEARTH_NUM_THREAD=1"};
    }

    static CliStore* store_;
    static Daemon* daemon_;
    static int dead_port_;
};
CliStore* CliRepl::store_ = nullptr;
Daemon* CliRepl::daemon_ = nullptr;
int CliRepl::dead_port_ = 0;

// Types a line and waits for the prompt after it; the text between them.
std::string exchange(Pty& t, const std::string& line) {
    const size_t prompts = t.count(">>> "), from = t.output().size();
    t.type(line + "\n");
    EXPECT_TRUE(t.wait_prompts(prompts + 1)) << "no prompt after " << line << ":\n" << t.output();
    const size_t end = t.output().rfind(">>> ");
    return end > from ? t.output().substr(from, end - from) : "";
}

TEST_F(CliRepl, StoryThroughTheDaemon) {
    Pty t({"run", "stories", "--temperature", "0", "--repeat-penalty", "1", "-n", "8"}, with_daemon());
    ASSERT_TRUE(t.wait_prompts(1)) << t.output();
    EXPECT_NE(t.output().find("no chat template"), std::string::npos) << t.output();
    const std::string reply = exchange(t, "Once upon a time");
    EXPECT_EQ(reply.rfind(", there was a little girl", 0), 0u) << reply;
    const std::string info = exchange(t, "/show info");
    EXPECT_NE(info.find("  Model\r\n    architecture        llama\r\n"), std::string::npos) << info;
    EXPECT_NE(info.find("    context length      2048"), std::string::npos) << info;
    t.type("/bye\n");
    EXPECT_EQ(t.wait_exit(), 0) << t.output();
    EXPECT_NE(run_hearth("ps", "", with_daemon()[0]).out.find("stories:latest"), std::string::npos);
}

TEST_F(CliRepl, StoryInProcess) {
    Pty t({"run", model("stories260K.gguf"), "--temperature", "0", "--repeat-penalty", "1", "-n", "8"}, without_daemon());
    ASSERT_TRUE(t.wait_prompts(1)) << t.output();
    const std::string reply = exchange(t, "Once upon a time");
    EXPECT_EQ(reply.rfind(", there was a little girl", 0), 0u) << reply;
    const std::string info = exchange(t, "/show info");
    EXPECT_NE(info.find("architecture         llama"), std::string::npos) << info;
    t.type("/bye\n");
    EXPECT_EQ(t.wait_exit(), 0) << t.output();
}

TEST_F(CliRepl, ChatCommandsThroughTheDaemon) {
    Pty t({"run", "llama3-tiny", "--temperature", "0", "-n", "4", "--verbose"}, with_daemon());
    ASSERT_TRUE(t.wait_prompts(1)) << t.output();
    const std::string first = exchange(t, "hi");
    EXPECT_NE(first.find("eval count:           4 token(s)"), std::string::npos) << first;
    EXPECT_NE(exchange(t, "/set parameter num_predict 2").find("Set parameter 'num_predict' to '2'"), std::string::npos);
    EXPECT_NE(exchange(t, "/set parameter top_p 2").find("Couldn't set parameter"), std::string::npos);
    EXPECT_NE(exchange(t, "/set parameter bogus 1").find("Unknown parameter 'bogus'"), std::string::npos);
    const std::string params = exchange(t, "/show parameters");
    EXPECT_NE(params.find("User defined parameters:"), std::string::npos) << params;
    EXPECT_NE(params.find("num_predict                    2"), std::string::npos) << params;
    const std::string second = exchange(t, "and then?");
    EXPECT_NE(second.find("eval count:           2 token(s)"), std::string::npos) << second;
    EXPECT_NE(exchange(t, "/set system Be brief.").find("Set system message."), std::string::npos);
    EXPECT_NE(exchange(t, "/show system").find("Be brief."), std::string::npos);
    EXPECT_NE(exchange(t, "/show template").find("<|start_header_id|>"), std::string::npos);
    EXPECT_NE(exchange(t, "/clear").find("Cleared session context"), std::string::npos);
    EXPECT_NE(exchange(t, "/nope").find("Unknown command '/nope'"), std::string::npos);
    t.type("/bye\n");
    EXPECT_EQ(t.wait_exit(), 0) << t.output();
}

TEST_F(CliRepl, CtrlCStopsAReplyThroughTheDaemon) {
    // The story model goes on for thousands of tokens (seconds) with this seed before the
    // context is full; raw completion streams every token (a chat model's output parser may
    // hold text back, and the daemon notices a gone client only when it writes).
    Pty t({"run", "stories", "--seed", "1", "-n", "1000000", "-c", "8192"}, with_daemon());
    ASSERT_TRUE(t.wait_prompts(1)) << t.output();
    const size_t from = t.output().size();
    t.type("Once upon a time\n");
    ASSERT_TRUE(t.wait_size(from + 200)) << t.output();  // streaming
    t.type("\x03");
    EXPECT_TRUE(t.wait_prompts(2, 15)) << t.output().size();
    // The daemon cancelled the request: no stream stays open, and its log says why.
    double streams = -1;
    for (int i = 0; i < 100 && streams != 0; ++i) {
        const std::string m = http_get(daemon_->port(), "/metrics");
        const size_t p = m.find("\nhearth_streams ");
        streams = p == std::string::npos ? -1 : std::stod(m.substr(p + 16));
        if (streams != 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    EXPECT_EQ(streams, 0);
    EXPECT_NE(daemon_->log().find("note=\"client disconnected\""), std::string::npos) << daemon_->log();
    // The REPL goes on.
    EXPECT_NE(exchange(t, "/show info").find("architecture"), std::string::npos);
    t.type("/bye\n");
    EXPECT_EQ(t.wait_exit(), 0);
}

}  // namespace
