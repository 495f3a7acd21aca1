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
#include "support/temp_store.h"
#include "support/testdata.h"

namespace hearth::server::test_util {

namespace fs = std::filesystem;
using json = nlohmann::json;

using test::TempStore;  // support/temp_store.h

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
