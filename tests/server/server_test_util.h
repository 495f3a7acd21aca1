// Test helpers for the daemon: a temporary Ollama-layout store holding the shared test models,
// an in-process server on a free loopback port, and raw HTTP through cpp-httplib's client.
#pragma once

#include <gtest/gtest.h>
#include <httplib.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "base/sha256.h"
#include "server/server.h"
#include "store/name.h"
#include "support/testdata.h"

namespace hearth::server::test_util {

namespace fs = std::filesystem;
using json = nlohmann::json;

// A store under the temp directory: stories (stories260K, no chat template), llama3-tiny and
// qwen3-tiny (chat templates), bge (bert embeddings), stories-short (stories with a params layer
// setting num_predict 3 and a system layer).
class TempStore {
public:
    explicit TempStore(const std::string& tag) {
        root_ = fs::temp_directory_path() / ("hearth-server-test-" + std::to_string(::getpid()) + "-" + tag);
        fs::remove_all(root_);
        fs::create_directories(root_ / "blobs");
        const std::string stories = model_blob("models/stories260K.gguf");
        add("stories", stories);
        add("llama3-tiny", model_blob("models/llama3-tiny.Q8_0.gguf"));
        add("qwen3-tiny", model_blob("models/qwen3-tiny.Q8_0.gguf"));
        add("bge", model_blob("models/bert-bge-tiny.F16.gguf"));
        add("stories-short", stories,
            {{"application/vnd.ollama.image.params", text_blob(R"({"num_predict": 3, "temperature": 0})")},
             {"application/vnd.ollama.image.system", text_blob("Once upon a time")}});
    }
    ~TempStore() { fs::remove_all(root_); }
    std::string root() const { return root_.string(); }

private:
    std::string text_blob(const std::string& text) {
        const std::string hex = sha256_hex(std::string_view(text));
        std::ofstream(root_ / "blobs" / ("sha256-" + hex), std::ios::binary) << text;
        return "sha256:" + hex;
    }
    std::string model_blob(const std::string& rel) {
        const std::string src = test::testdata_path(rel);
        auto hex = sha256_file(src);
        EXPECT_TRUE(hex.ok()) << src;
        const fs::path dst = root_ / "blobs" / ("sha256-" + *hex);
        if (!fs::exists(dst)) fs::create_symlink(src, dst);
        return "sha256:" + *hex;
    }
    void add(const std::string& name, const std::string& model_digest,
             const std::vector<std::pair<std::string, std::string>>& extra = {}) {
        json m = {{"schemaVersion", 2},
                  {"mediaType", "application/vnd.docker.distribution.manifest.v2+json"},
                  {"config", {{"mediaType", "application/vnd.docker.container.image.v1+json"},
                              {"digest", text_blob("{}")},
                              {"size", 2}}}};
        m["layers"] = json::array({{{"mediaType", "application/vnd.ollama.image.model"}, {"digest", model_digest}, {"size", 1000}}});
        for (const auto& [type, digest] : extra) m["layers"].push_back({{"mediaType", type}, {"digest", digest}, {"size", 10}});
        auto n = store::ModelName::parse(name);
        fs::create_directories((root_ / n->manifest_rel()).parent_path());
        std::ofstream(root_ / n->manifest_rel()) << m.dump();
    }

    fs::path root_;
};

inline ServerConfig test_config(const std::string& models_dir) {
    ServerConfig c;
    c.host = "127.0.0.1";
    c.port = 0;
    c.models_dir = models_dir;
    c.log_requests = std::getenv("HEARTH_TEST_LOG") != nullptr;
    c.http_threads = 96;
    return c;
}

inline std::unique_ptr<Server> start_server(const ServerConfig& c) {
    auto s = Server::create(c);
    EXPECT_TRUE(s.ok()) << s.status().message();
    if (!s.ok()) return nullptr;
    Status st = (*s)->start();
    EXPECT_TRUE(st.ok()) << st.message();
    return std::move(s).value();
}

struct Reply {
    int status = 0;
    std::string body;
    httplib::Headers headers;
    json j() const { return json::parse(body, nullptr, false); }
    std::string header(const std::string& k) const {
        auto it = headers.find(k);
        return it == headers.end() ? std::string() : it->second;
    }
};

class Http {
public:
    explicit Http(int port) : port_(port) {}

    Reply request(const std::string& method, const std::string& path, const std::string& body = "",
                  const httplib::Headers& headers = {}) {
        httplib::Client cli("127.0.0.1", port_);
        cli.set_read_timeout(30, 0);
        httplib::Request req;
        req.method = method;
        req.path = path;
        req.headers = headers;
        if (!body.empty() || method == "POST" || method == "DELETE") {
            req.body = body;
            req.set_header("Content-Type", "application/json");
        }
        httplib::Response res;
        httplib::Error err = httplib::Error::Success;
        Reply r;
        if (!cli.send(req, res, err)) {
            ADD_FAILURE() << method << " " << path << ": " << httplib::to_string(err);
            return r;
        }
        r.status = res.status;
        r.body = res.body;
        r.headers = res.headers;
        return r;
    }
    Reply get(const std::string& path, const httplib::Headers& h = {}) { return request("GET", path, "", h); }
    Reply post(const std::string& path, const json& body, const httplib::Headers& h = {}) {
        return request("POST", path, body.dump(), h);
    }

    // A streamed POST: every NDJSON line to on_line; on_line returning false drops the
    // connection (a client going away mid-stream). Returns the HTTP status (0 on a dropped
    // connection before the status line).
    int stream(const std::string& path, const json& body, const std::function<bool(const json&)>& on_line) {
        httplib::Client cli("127.0.0.1", port_);
        cli.set_read_timeout(30, 0);
        httplib::Request req;
        req.method = "POST";
        req.path = path;
        req.body = body.dump();
        req.set_header("Content-Type", "application/json");
        std::string buf;
        bool stopped = false;
        req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
            buf.append(data, n);
            for (size_t p; (p = buf.find('\n')) != std::string::npos;) {
                const std::string l = buf.substr(0, p);
                buf.erase(0, p + 1);
                json j = json::parse(l, nullptr, false);
                EXPECT_FALSE(j.is_discarded()) << "not JSON: " << l;
                if (!on_line(j)) {
                    stopped = true;
                    return false;
                }
            }
            return true;
        };
        httplib::Response res;
        httplib::Error err = httplib::Error::Success;
        if (!cli.send(req, res, err) && !stopped) ADD_FAILURE() << "POST " << path << ": " << httplib::to_string(err);
        if (!stopped && !buf.empty()) {
            json j = json::parse(buf, nullptr, false);
            if (!j.is_discarded()) on_line(j);
        }
        return res.status > 0 ? res.status : 0;
    }

private:
    int port_;
};

// The value of a metric line `name{labels} value` in Prometheus text; -1 when absent.
inline double metric(const std::string& text, const std::string& name_and_labels) {
    const std::string key = name_and_labels + " ";
    for (size_t p = 0; (p = text.find(key, p)) != std::string::npos; p += key.size())
        if (p == 0 || text[p - 1] == '\n') return std::stod(text.substr(p + key.size()));
    return -1;
}

// Polls /metrics (up to ~5 s) until `model` holds no KV blocks and no stream is open, and
// checks that it got there: cancelled and finished requests give everything back.
inline void expect_idle(Http& http, const std::string& model = "stories:latest") {
    double used = -1, streams = -1;
    for (int i = 0; i < 200; ++i) {
        const std::string m = http.get("/metrics").body;
        used = metric(m, "hearth_kv_blocks_used{model=\"" + model + "\"}");
        streams = metric(m, "hearth_streams");
        if (used == 0 && streams == 0) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    EXPECT_EQ(used, 0);
    EXPECT_EQ(streams, 0);
}

}  // namespace hearth::server::test_util
