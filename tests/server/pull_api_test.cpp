// POST /api/pull against a registry on loopback (tests/store/test_registry.h): Ollama's streamed
// statuses, errors before the stream as HTTP statuses and after it as {"error"} lines, and the
// pulled model listed by /api/tags and answering /api/generate.
#include <gtest/gtest.h>

#include "server/server_test_util.h"
#include "store/test_registry.h"

namespace hearth::server {
namespace {

using namespace test_util;
using test::EmptyStore;
using test::TestRegistry;

std::string tiny_gguf() {
    std::vector<uint8_t> bytes;
    EXPECT_TRUE(test::read_file(test::testdata_path("models/stories260K.gguf"), bytes));
    return std::string(bytes.begin(), bytes.end());
}

TEST(PullApi, StreamsStatusesThenTheModelListsAndRuns) {
    EmptyStore store("stream");
    TestRegistry reg;
    const std::string weights = tiny_gguf();
    const std::string d = TestRegistry::digest_of(weights);
    reg.add_model("library", "stories", "latest", {{"application/vnd.ollama.image.model", weights}});
    auto server = start_server(test_config(store.root()));
    ASSERT_TRUE(server);
    Http http(server->port());
    const std::string name = reg.host() + "/library/stories:latest";

    std::vector<json> lines;
    const int status = http.stream("/api/pull", {{"model", name}, {"insecure", true}}, [&](const json& j) {
        lines.push_back(j);
        return true;
    });
    ASSERT_EQ(status, 200);
    ASSERT_GE(lines.size(), 5u);
    EXPECT_EQ(lines.front(), json({{"status", "pulling manifest"}}));
    bool saw_layer = false;
    for (const auto& l : lines) {
        if (!l.contains("digest") || l["digest"] != d) continue;
        saw_layer = true;
        EXPECT_EQ(l["status"], "pulling " + d.substr(7, 12));
        EXPECT_EQ(l["total"], (int64_t)weights.size());
        EXPECT_TRUE(l["completed"].is_number());
    }
    EXPECT_TRUE(saw_layer);
    const size_t n = lines.size();
    EXPECT_EQ(lines[n - 3], json({{"status", "verifying sha256 digest"}}));
    EXPECT_EQ(lines[n - 2], json({{"status", "writing manifest"}}));
    EXPECT_EQ(lines[n - 1], json({{"status", "success"}}));

    Reply tags = http.get("/api/tags");
    ASSERT_EQ(tags.status, 200);
    bool listed = false;
    const json models = tags.j()["models"];
    for (const auto& m : models) listed = listed || m["name"] == name;
    EXPECT_TRUE(listed) << tags.body;

    Reply gen = http.post("/api/generate", {{"model", name},
                                            {"prompt", "Once upon a time"},
                                            {"stream", false},
                                            {"options", {{"num_predict", 3}, {"temperature", 0}}}});
    ASSERT_EQ(gen.status, 200) << gen.body;
    EXPECT_EQ(gen.j()["eval_count"], 3);
}

TEST(PullApi, NotStreamedAnswersOnce) {
    EmptyStore store("once");
    TestRegistry reg;
    reg.add_model("library", "tiny", "latest", {{"application/vnd.ollama.image.model", TestRegistry::random_blob(5000, 1)}});
    auto server = start_server(test_config(store.root()));
    ASSERT_TRUE(server);
    Http http(server->port());
    // "name" is the older spelling of "model".
    Reply r = http.post("/api/pull", {{"name", reg.host() + "/library/tiny"}, {"insecure", true}, {"stream", false}});
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.j(), json({{"status", "success"}}));
    EXPECT_TRUE(fs::exists(store.root() + "/manifests/" + reg.host() + "/library/tiny/latest"));
}

TEST(PullApi, ErrorsBeforeTheStreamAreHttpStatuses) {
    EmptyStore store("errors");
    TestRegistry reg;
    auto server = start_server(test_config(store.root()));
    ASSERT_TRUE(server);
    Http http(server->port());
    Reply r = http.post("/api/pull", {{"model", reg.host() + "/library/nothere"}, {"insecure", true}});
    EXPECT_EQ(r.status, 404) << r.body;
    EXPECT_NE(r.j()["error"].get<std::string>().find("not found"), std::string::npos) << r.body;
    r = http.post("/api/pull", json::object());
    EXPECT_EQ(r.status, 400) << r.body;
    r = http.post("/api/pull", {{"model", "bad name!"}});
    EXPECT_EQ(r.status, 400) << r.body;
    r = http.post("/api/pull", {{"model", "x"}, {"insecure", "yes"}});
    EXPECT_EQ(r.status, 400) << r.body;
    r = http.post("/api/push", {{"model", "x"}});
    EXPECT_EQ(r.status, 501) << r.body;
    EXPECT_NE(r.j()["error"].get<std::string>().find("push"), std::string::npos) << r.body;
    EXPECT_FALSE(fs::exists(store.root() + "/manifests"));
}

TEST(PullApi, FailureMidStreamIsAnErrorLine) {
    EmptyStore store("midstream");
    TestRegistry reg;
    reg.add_model("library", "tiny", "latest", {{"application/vnd.ollama.image.model", TestRegistry::random_blob(20000, 2)}});
    reg.set_hook([](const TestRegistry::Request& r) {
        TestRegistry::Fault f;
        f.corrupt = r.kind == TestRegistry::Kind::blob;
        return f;
    });
    auto server = start_server(test_config(store.root()));
    ASSERT_TRUE(server);
    Http http(server->port());
    std::vector<json> lines;
    const int status = http.stream("/api/pull", {{"model", reg.host() + "/library/tiny"}, {"insecure", true}},
                                   [&](const json& j) {
                                       lines.push_back(j);
                                       return true;
                                   });
    EXPECT_EQ(status, 200);
    ASSERT_FALSE(lines.empty());
    ASSERT_TRUE(lines.back().contains("error")) << lines.back();
    EXPECT_NE(lines.back()["error"].get<std::string>().find("digest mismatch"), std::string::npos);
    EXPECT_FALSE(fs::exists(store.root() + "/manifests/" + reg.host()));
}

TEST(PullApi, ClientGoingAwayStopsThePull) {
    EmptyStore store("gone");
    TestRegistry reg;
    const std::string weights = TestRegistry::random_blob(2000000, 3);
    reg.add_model("library", "tiny", "latest", {{"application/vnd.ollama.image.model", weights}});
    reg.set_hook([](const TestRegistry::Request& r) {
        TestRegistry::Fault f;
        if (r.kind == TestRegistry::Kind::blob) f.bytes_per_s = 1000000;
        return f;
    });
    auto server = start_server(test_config(store.root()));
    ASSERT_TRUE(server);
    Http http(server->port());
    http.stream("/api/pull", {{"model", reg.host() + "/library/tiny"}, {"insecure", true}}, [&](const json& j) {
        return !(j.contains("completed") && j["completed"].get<int64_t>() > 100000);
    });
    // The daemon notices at its next write and stops downloading; the partial stays.
    int64_t served = 0;
    for (int i = 0; i < 100; ++i) {
        served = reg.bytes_served();
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        if (reg.bytes_served() == served) break;
    }
    EXPECT_LT(reg.bytes_served(), 1500000);
    EXPECT_FALSE(fs::exists(store.root() + "/manifests/" + reg.host()));
    EXPECT_TRUE(fs::exists(store.root() + "/blobs/sha256-" + TestRegistry::digest_of(weights).substr(7) + "-partial"));
}

TEST(PullApi, StoppingTheDaemonEndsARunningPull) {
    EmptyStore store("stop");
    TestRegistry reg;
    const std::string weights = TestRegistry::random_blob(5000000, 4);
    reg.add_model("library", "tiny", "latest", {{"application/vnd.ollama.image.model", weights}});
    reg.set_hook([](const TestRegistry::Request& r) {
        TestRegistry::Fault f;
        if (r.kind == TestRegistry::Kind::blob) f.bytes_per_s = 1000000;  // five seconds of download
        return f;
    });
    auto server = start_server(test_config(store.root()));
    ASSERT_TRUE(server);
    std::atomic<int> n_lines{0};
    std::thread client([&] {
        httplib::Client cli("127.0.0.1", server->port());
        httplib::Request req;
        req.method = "POST";
        req.path = "/api/pull";
        req.body = json{{"model", reg.host() + "/library/tiny"}, {"insecure", true}}.dump();
        req.content_receiver = [&](const char*, size_t, uint64_t, uint64_t) {
            ++n_lines;
            return true;
        };
        httplib::Response res;
        httplib::Error err;
        cli.send(req, res, err);  // the stream is cut when the daemon stops
    });
    for (int i = 0; i < 400 && reg.bytes_served() < 200000; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    const auto t0 = std::chrono::steady_clock::now();
    server->stop();  // does not wait for the download to finish
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    client.join();
    EXPECT_LT(s, 2.0);
    EXPECT_GT(n_lines.load(), 0);
    reg.wait_idle();
    EXPECT_LT(reg.bytes_served(), 2000000);
    EXPECT_TRUE(fs::exists(store.root() + "/blobs/sha256-" + TestRegistry::digest_of(weights).substr(7) + "-partial"));
    EXPECT_FALSE(fs::exists(store.root() + "/manifests/" + reg.host()));
}

}  // namespace
}  // namespace hearth::server
