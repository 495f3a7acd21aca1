#include "cli/client.h"

#include <httplib.h>

#include <chrono>
#include <cstdlib>
#include <future>
#include <string_view>
#include <thread>

#include "cli/commands.h"
#include "cli/common.h"
#include "server/config.h"

namespace hearth::cli {
namespace {

using json = Client::json;

// Connecting to a daemon on this machine takes microseconds; 200 ms also covers a remote one on
// a LAN while keeping every command snappy when there is none.
constexpr time_t kProbeConnectUs = 200000;
// A request may wait for a model to load (stop, show are quick; the first chat of a big model is
// not): no short read timeout on real requests.
constexpr time_t kReadTimeoutS = 3600;

StatusCode code_for_http(int status) {
    switch (status) {
    case 400: return StatusCode::invalid_argument;
    case 401:
    case 403: return StatusCode::invalid_argument;
    case 404: return StatusCode::not_found;
    case 413: return StatusCode::invalid_argument;
    case 429:
    case 503: return StatusCode::resource_exhausted;
    default: return StatusCode::internal;
    }
}

// The daemon's {"error": "..."} as a Status; the HTTP status when the body says nothing.
Status http_error(int status, const std::string& body) {
    json j = json::parse(body, nullptr, false);
    std::string msg;
    if (j.is_object() && j.contains("error")) {
        const auto& e = j["error"];
        // Ollama's own daemon says {"error": "..."}; OpenAI-shaped bodies nest {"error": {"message"}}.
        msg = e.is_string() ? e.get<std::string>() : e.is_object() ? e.value("message", e.dump()) : e.dump();
    }
    if (msg.empty()) msg = strformat("the daemon answered HTTP %d", status);
    return error(code_for_http(status), msg);
}

std::unique_ptr<httplib::Client> make_http(const DaemonAddress& a) {
    auto c = std::make_unique<httplib::Client>(a.url());
    if (!a.api_key.empty()) c->set_bearer_token_auth(a.api_key.c_str());
    c->set_default_headers({{"User-Agent", std::string("hearth/") + client_version()}});
    c->set_connection_timeout(2, 0);
    c->set_read_timeout(kReadTimeoutS, 0);
    c->set_write_timeout(30, 0);
    return c;
}

}  // namespace

const char* client_version() { return HEARTH_VERSION; }

std::string DaemonAddress::display() const {
    const std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;
    return h + ":" + std::to_string(port);
}

std::string DaemonAddress::url() const { return scheme + "://" + display(); }

Result<DaemonAddress> daemon_address_from_env() {
    // Only the two variables the client needs: a typo in a daemon-only setting (say
    // HEARTH_NUM_PARALLEL) must not stop `hearth list`.
    auto cfg = server::config_from_env([](const char* k) -> const char* {
        const std::string_view name(k);
        return name == "HEARTH_HOST" || name == "HEARTH_API_KEY" ? std::getenv(k) : nullptr;
    });
    if (!cfg.ok()) return cfg.status();
    DaemonAddress a;
    const char* raw = std::getenv("HEARTH_HOST");
    if (raw && std::string_view(raw).rfind("https://", 0) == 0) a.scheme = "https";
    a.host = cfg->host;
    if (a.host.empty() || a.host == "0.0.0.0") a.host = "127.0.0.1";
    if (a.host == "::") a.host = "::1";
    a.port = cfg->port;
    if (a.port == 0)
        return error(StatusCode::invalid_argument, "HEARTH_HOST=\"" + std::string(raw ? raw : "") +
                                                       "\": port 0 means \"any free port\" to a daemon; a client needs the real port");
    a.api_key = cfg->api_key;
    return a;
}

bool Client::probe() {
    auto c = make_http(addr_);
    c->set_connection_timeout(0, kProbeConnectUs);
    c->set_read_timeout(5, 0);
    auto res = c->Get("/api/version");
    if (!res) return false;
    if (res->status == 401) return true;
    if (res->status != 200) return false;
    json j = json::parse(res->body, nullptr, false);
    if (!j.is_object() || !j.contains("version") || !j["version"].is_string()) return false;
    version_ = j["version"].get<std::string>();
    return true;
}

Result<json> Client::call(const std::string& method, const std::string& path, const json* body) {
    auto c = make_http(addr_);
    httplib::Request req;
    req.method = method;
    req.path = path;
    if (body) {
        req.body = body->dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
        req.set_header("Content-Type", "application/json");
    }
    httplib::Response res;
    httplib::Error err = httplib::Error::Success;
    if (!c->send(req, res, err))
        return error(StatusCode::io_error,
                     "cannot reach the daemon at " + addr_.display() + " (" + httplib::to_string(err) + ")");
    if (res.status != 200) return http_error(res.status, res.body);
    if (res.body.empty()) return json();
    json j = json::parse(res.body, nullptr, false);
    if (j.is_discarded())
        return error(StatusCode::internal, method + " " + path + ": the daemon's answer is not JSON");
    return j;
}

Result<json> Client::get(const std::string& path) { return call("GET", path, nullptr); }
Result<json> Client::post(const std::string& path, const json& body) { return call("POST", path, &body); }
Result<json> Client::del(const std::string& path, const json& body) { return call("DELETE", path, &body); }

Status Client::stream(const std::string& path, const json& body, const std::function<void(const json&)>& on_line,
                      const std::function<bool()>& stop, bool* cancelled) {
    *cancelled = false;
    auto c = make_http(addr_);
    httplib::Request req;
    req.method = "POST";
    req.path = path;
    req.body = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    req.set_header("Content-Type", "application/json");
    int status = 0;
    std::string buf, error_body;
    Status bad_line;
    req.response_handler = [&](const httplib::Response& r) {
        status = r.status;
        return true;
    };
    req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
        if (status != 200) {
            error_body.append(data, n);
            return true;
        }
        buf.append(data, n);
        for (size_t p; (p = buf.find('\n')) != std::string::npos;) {
            const std::string line = buf.substr(0, p);
            buf.erase(0, p + 1);
            if (line.find_first_not_of(" \r\t") == std::string::npos) continue;
            json j = json::parse(line, nullptr, false);
            if (j.is_discarded()) {
                bad_line = error(StatusCode::internal, "the daemon sent a line that is not JSON: " + line.substr(0, 80));
                return false;
            }
            on_line(j);
        }
        return true;
    };
    httplib::Response res;
    httplib::Error err = httplib::Error::Success;
    // The request runs on a worker so that a stop (Ctrl-C) takes effect at once, even while the
    // daemon is still loading the model and sends nothing.
    std::promise<bool> sent;
    std::future<bool> done = sent.get_future();
    std::thread worker([&] { sent.set_value(c->send(req, res, err)); });
    bool stopping = false;
    while (done.wait_for(std::chrono::milliseconds(50)) != std::future_status::ready)
        if (!stopping && stop && stop()) {
            stopping = true;
            c->stop();
        }
    worker.join();
    const bool ok = done.get();
    if (stopping) {
        *cancelled = true;
        return {};
    }
    if (!bad_line.ok()) return bad_line;
    if (!ok) {
        if (err == httplib::Error::Connection)
            return error(StatusCode::io_error,
                         "cannot reach the daemon at " + addr_.display() + " (" + httplib::to_string(err) + ")");
        return error(StatusCode::io_error, "the connection to the daemon at " + addr_.display() + " broke " +
                                               (status == 0 ? "before it answered" : "before the answer ended") +
                                               " (" + httplib::to_string(err) + "): is it still running?");
    }
    if (status != 200) return http_error(status, error_body);
    if (buf.find_first_not_of(" \r\t\n") != std::string::npos) {  // a last line without its newline
        json j = json::parse(buf, nullptr, false);
        if (j.is_discarded()) return error(StatusCode::internal, "the daemon sent a line that is not JSON: " + buf.substr(0, 80));
        on_line(j);
    }
    return {};
}

// Ollama's `ollama -v`: the daemon's version, and a warning when this client's differs. Without a
// daemon hearth still works (in process), so that is no warning here: the client's version alone.
std::string version_text() {
    std::string server;
    if (auto addr = daemon_address_from_env(); addr.ok()) {
        Client c(std::move(addr).value());
        if (c.probe()) server = c.server_version();
    }
    if (server.empty() || server == client_version()) return std::string("hearth version is ") + client_version();
    return "hearth version is " + server + "\nWarning: client version is " + client_version();
}

std::optional<Client> find_daemon(const std::string& cmd) {
    auto addr = daemon_address_from_env();
    if (!addr.ok()) fail(cmd, addr.status());
    Client c(std::move(addr).value());
    if (!c.probe()) return std::nullopt;
    return c;
}

}  // namespace hearth::cli
