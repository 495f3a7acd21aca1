// The HTTP daemon (`hearth serve`): cpp-httplib serving the Ollama API (adapters/ollama.cpp)
// over a Service, plus the cross-cutting parts: bearer auth (HEARTH_API_KEY), CORS
// (HEARTH_ORIGINS, localhost allowed by default), request size limit, Prometheus /metrics, one
// structured log line per request, and a graceful stop.
//
// Streaming: generate and chat answer NDJSON through a chunked content provider that pulls
// from the request's Generation on the HTTP worker's thread. The first item is awaited before
// the status line is sent, so an error found before any output (a prompt too long, bad
// options, a failed load) is a proper 4xx/5xx, not an error line inside a 200 stream. A client
// that disconnects makes a chunk write fail; the request is then cancelled and its KV blocks
// are released within one engine step.
//
// Stop (SIGINT/SIGTERM in `hearth serve`, or stop()): running generations are cancelled (their
// streams end with done_reason "cancelled"), new requests get 503, the listener closes once the
// streams have drained, and every model is unloaded.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "base/status.h"
#include "server/config.h"
#include "server/service.h"
#include "server/writer.h"

namespace httplib {
class Server;
struct Request;
struct Response;
}  // namespace httplib

namespace hearth::server {

class Server {
public:
    static Result<std::unique_ptr<Server>> create(const ServerConfig& config);
    ~Server();  // stop()

    // Binds config.host:config.port (port 0: a free one) and serves on a background thread.
    // A port in use is an error saying so and how to choose another.
    Status start();
    int port() const { return port_; }
    // Graceful stop; idempotent; any thread but an HTTP worker.
    void stop();
    // Blocks until stop() has finished.
    void wait();

    Service& service() { return *service_; }

    // True when `origin` may make cross-origin requests: localhost/127.0.0.1/[::1]/0.0.0.0 on
    // any port and scheme http(s), app://, file://, tauri://, vscode-webview:// (Ollama's
    // defaults), and `extra` patterns where '*' matches any run of characters.
    static bool origin_allowed(const std::string& origin, const std::vector<std::string>& extra);
    // Ollama's Host check against DNS rebinding: when listening on loopback, only requests whose
    // Host header is localhost, *.localhost, *.local, *.internal, an IP literal or this machine's
    // name are served (403 otherwise). Listening on other addresses, every Host is accepted.
    static bool host_allowed(const std::string& host_header, const std::string& bind_host);

    // The wire protocol a path belongs to, which decides the shape of its errors: /v1/messages*
    // is Anthropic's, the rest of /v1/ OpenAI's, everything else Ollama's.
    enum class Protocol { ollama, openai, anthropic };
    static Protocol protocol_of(const std::string& path);

private:
    struct LogInfo;
    explicit Server(const ServerConfig& config);
    void routes();            // cross-cutting handlers and Ollama's API (server.cpp)
    void openai_routes();     // routes_openai.cpp
    void anthropic_routes();  // routes_anthropic.cpp
    void responses_routes();  // routes_responses.cpp: OpenAI's /v1/responses
    void store_routes();      // routes_store.cpp: /api/create, POST /api/blobs/:digest
    void pull_routes();       // routes_pull.cpp: /api/pull, /api/push
    std::shared_ptr<LogInfo> log_info(const httplib::Request& req);
    // Sets the model name and prompt size the request log line reports.
    void log_model(const httplib::Request& req, const std::string& model, int64_t prompt_tokens = 0);
    void handle_text(const httplib::Request& req, httplib::Response& res, bool chat);
    void handle_embed(const httplib::Request& req, httplib::Response& res, bool legacy);
    // Runs a started generation to its end and writes it with `w`: streamed, or collected into
    // one JSON answer. The first item is awaited before the status line, so an error before any
    // output is answered with its HTTP status in `protocol`'s error shape.
    void serve_generation(const httplib::Request& req, httplib::Response& res, std::unique_ptr<Generation> g,
                          std::shared_ptr<TextWriter> w, bool stream, Protocol protocol);

public:
    // An error answer in the protocol's shape (503 adds Retry-After).
    static void send_error(httplib::Response& res, const Status& s, Protocol protocol);
    static void send_error(httplib::Response& res, int http_status, const std::string& message, Protocol protocol);
    static void send_json(httplib::Response& res, int http_status, const nlohmann::ordered_json& j);

private:

    ServerConfig config_;
    std::unique_ptr<Service> service_;
    std::unique_ptr<httplib::Server> http_;
    std::thread listener_;
    int port_ = 0;
    std::atomic<bool> started_{false};
    std::mutex stop_mu_;  // serializes stop(); wait() blocks on it
    bool stopped_ = false;  // under stop_mu_
    std::mutex log_mu_;
    std::map<const httplib::Request*, std::shared_ptr<LogInfo>> log_;  // under log_mu_: requests being served
};

}  // namespace hearth::server
