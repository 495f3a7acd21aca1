// The daemon under load and at its edges: a full queue (503 + Retry-After), 64 concurrent
// streaming clients with /api/version staying responsive, and the `hearth serve` binary
// stopping cleanly on SIGTERM.
#include <signal.h>
#include <sys/wait.h>

#include <atomic>
#include <cstdio>
#include <future>
#include <thread>

#include "server_test_util.h"

namespace hearth::server {
namespace {

using namespace test_util;

TEST(ServeLoad, FullQueueAnswers503WithRetryAfter) {
    TempStore store("busy");
    ServerConfig c = test_config(store.root());
    c.num_parallel = 1;  // one sequence at a time ...
    c.max_queue = 1;     // ... and one waiting
    auto srv = start_server(c);
    ASSERT_TRUE(srv);
    Http http(srv->port());
    // All three share one config (num_ctx 8192: A can run for seconds, past the training context).
    json long_run = {{"model", "stories"}, {"prompt", "A long story"}, {"options", {{"num_predict", 100000}, {"num_ctx", 8192}}}};
    std::promise<void> a_started, a_stop;
    std::shared_future<void> stop_a = a_stop.get_future().share();
    auto a = std::async(std::launch::async, [&] {
        bool first = true;
        http.stream("/api/generate", long_run, [&](const json&) {
            if (first) a_started.set_value(), first = false;
            return stop_a.wait_for(std::chrono::seconds(0)) != std::future_status::ready;
        });
    });
    a_started.get_future().wait();
    // B waits for A's slot; then the queue is full.
    std::atomic<int> b_status{0};
    auto b = std::async(std::launch::async, [&] {
        json last;
        b_status = http.stream("/api/generate", {{"model", "stories"}, {"prompt", "B"}, {"options", {{"num_predict", 4}, {"num_ctx", 8192}}}},
                               [&](const json& l) {
                                   last = l;
                                   return true;
                               });
        return last;
    });
    double waiting = -1;
    for (int i = 0; i < 200 && waiting != 1; ++i) {  // until B shows up as waiting in the engine's stats
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
        waiting = metric(http.get("/metrics").body, "hearth_sequences_waiting{model=\"stories:latest\"}");
    }
    ASSERT_EQ(waiting, 1);
    Reply r = http.post("/api/generate", {{"model", "stories"}, {"prompt", "C"}, {"stream", false},
                                          {"options", {{"num_predict", 2}, {"num_ctx", 8192}}}});
    EXPECT_EQ(r.status, 503) << r.body;
    EXPECT_EQ(r.header("Retry-After"), "1");
    EXPECT_NE(r.j().value("error", "").find("server busy"), std::string::npos) << r.body;
    a_stop.set_value();  // A's client goes away: its slot frees and B runs
    a.get();
    json b_last = b.get();
    EXPECT_EQ(b_status.load(), 200);
    EXPECT_TRUE(b_last.value("done", false)) << b_last.dump();
}

TEST(ServeLoad, SixtyFourStreamsStayResponsive) {
    TempStore store("load");
    auto srv = start_server(test_config(store.root()));
    ASSERT_TRUE(srv);
    Http http(srv->port());
    ASSERT_EQ(http.post("/api/generate", {{"model", "stories"}}).status, 200);  // load first
    constexpr int kClients = 64;
    std::atomic<bool> running{true};
    std::atomic<int64_t> worst_ms{0}, polls{0};
    auto poller = std::async(std::launch::async, [&] {
        while (running) {
            const auto t0 = std::chrono::steady_clock::now();
            EXPECT_EQ(http.get("/api/version").status, 200);
            const int64_t ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
            worst_ms = std::max<int64_t>(worst_ms, ms);
            ++polls;
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
    });
    std::vector<std::future<json>> clients;
    for (int i = 0; i < kClients; ++i)
        clients.push_back(std::async(std::launch::async, [&, i] {
            json last;
            // A few clients leave early.
            int n = 0;
            const int status = http.stream("/api/generate",
                                           {{"model", "stories"}, {"prompt", "Story " + std::to_string(i)},
                                            {"options", {{"num_predict", 48}, {"seed", i}}}},
                                           [&](const json& l) {
                                               last = l;
                                               return i % 8 != 7 || ++n < 4;
                                           });
            if (i % 8 != 7) {
                EXPECT_EQ(status, 200);
            }
            return i % 8 == 7 ? json{{"done", true}, {"left", true}} : last;
        }));
    for (auto& f : clients) {
        json last = f.get();
        EXPECT_TRUE(last.value("done", false)) << last.dump();
        if (!last.contains("left")) {
            EXPECT_EQ(last.value("eval_count", 0), 48);
        }
    }
    running = false;
    poller.get();
    EXPECT_GT(polls.load(), 0);
    EXPECT_LT(worst_ms.load(), 2000);
    // No leaks: every block back, no stream left.
    expect_idle(http);
}

#ifdef HEARTH_BINARY
// The real binary: serves, refuses a taken port with a clear line, stops on SIGTERM.
TEST(ServeBinary, ServesAndStopsOnSigterm) {
    TempStore store("binary");
    // A free port: bind an in-process server on port 0, note it, stop it.
    int port = 0;
    {
        auto probe = start_server(test_config(store.root()));
        ASSERT_TRUE(probe);
        port = probe->port();
    }
    const std::string err_path = store.root() + "/serve.err";
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        setenv("HEARTH_HOST", ("127.0.0.1:" + std::to_string(port)).c_str(), 1);
        setenv("HEARTH_MODELS", store.root().c_str(), 1);
        if (!freopen(err_path.c_str(), "w", stderr)) _exit(99);
        execl(HEARTH_BINARY, HEARTH_BINARY, "serve", (char*)nullptr);
        _exit(98);
    }
    Http http(port);
    bool up = false;
    for (int i = 0; i < 200 && !up; ++i) {
        httplib::Client cli("127.0.0.1", port);
        auto r = cli.Get("/");
        up = r && r->status == 200 && r->body == "Ollama is running";
        if (!up) std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    ASSERT_TRUE(up);
    Reply r = http.post("/api/generate", {{"model", "stories"}, {"prompt", "Hi"}, {"stream", false}, {"options", {{"num_predict", 3}}}});
    EXPECT_EQ(r.status, 200) << r.body;

    // A second daemon on the same port says what is wrong and how to fix it.
    std::string cmd = "HEARTH_HOST=127.0.0.1:" + std::to_string(port) + " HEARTH_MODELS=" + store.root() + " " +
                      HEARTH_BINARY + " serve 2>&1";
    FILE* p = popen(cmd.c_str(), "r");
    ASSERT_TRUE(p);
    std::string out;
    char buf[512];
    while (fgets(buf, sizeof buf, p)) out += buf;
    EXPECT_NE(pclose(p), 0);
    EXPECT_NE(out.find("already in use"), std::string::npos) << out;
    EXPECT_NE(out.find("HEARTH_HOST="), std::string::npos) << out;

    ASSERT_EQ(kill(pid, SIGTERM), 0);
    int status = 0;
    for (int i = 0; i < 400 && waitpid(pid, &status, WNOHANG) == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(25));
    ASSERT_TRUE(WIFEXITED(status)) << "hearth serve did not exit after SIGTERM";
    EXPECT_EQ(WEXITSTATUS(status), 0);
    const std::string log = test::read_text_file(err_path);
    EXPECT_NE(log.find("SIGTERM received"), std::string::npos) << log;
    EXPECT_NE(log.find("method=POST path=/api/generate status=200"), std::string::npos) << log;
    EXPECT_NE(log.find("hearth serve: stopped"), std::string::npos) << log;
}
#endif

}  // namespace
}  // namespace hearth::server
