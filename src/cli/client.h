// The CLI's side of the daemon: where it is (HEARTH_HOST, read as `hearth serve` reads it),
// whether one is running, and Ollama's API over cpp-httplib's client. The commands that change
// or read the daemon's state (ps, stop) need one; list, show, rm, cp and run go through it when
// it runs and work on the store (or in this process) when none does.
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "base/status.h"

namespace hearth::cli {

struct DaemonAddress {
    std::string scheme = "http";  // "https" when HEARTH_HOST starts with https://
    std::string host = "127.0.0.1";
    int port = 11434;
    std::string api_key;          // HEARTH_API_KEY, sent as a bearer token when set

    std::string display() const;  // "127.0.0.1:11434", "[::1]:11434"
    std::string url() const;      // "http://127.0.0.1:11434"
};

// HEARTH_HOST and HEARTH_API_KEY, parsed by the daemon's own config parser (server/config.h)
// so the client looks where `hearth serve` listens: host, host:port, :port, [v6]:port, with or
// without http(s)://; a host alone keeps port 11434 (Ollama's client would take 80/443 after an
// explicit scheme; hearth's daemon does not, and the two must agree). A daemon bound to a
// wildcard address (0.0.0.0, ::) is reached on loopback. Errors name the variable.
Result<DaemonAddress> daemon_address_from_env();

class Client {
public:
    using json = nlohmann::ordered_json;

    explicit Client(DaemonAddress addr) : addr_(std::move(addr)) {}
    const DaemonAddress& address() const { return addr_; }
    // The daemon's version from the probe; "" when it did not say (it wants an API key).
    const std::string& server_version() const { return version_; }

    // Is a daemon answering? GET /api/version with a 200 ms connect timeout: true (and the
    // version noted) when it answers {"version"}, or 401 (a daemon that wants HEARTH_API_KEY:
    // the commands then report that). False when nothing listens or something that is not an
    // Ollama-style daemon answers.
    bool probe();

    // One request; the JSON answer (null for an empty body). Errors: the daemon's {"error"}
    // message with its HTTP status mapped to a code (404 not_found, 400 invalid_argument, ...),
    // or io_error "cannot reach the daemon at ..." when the connection fails.
    Result<json> get(const std::string& path);
    Result<json> post(const std::string& path, const json& body);
    Result<json> del(const std::string& path, const json& body);

    // A streamed POST: every NDJSON object of a 200 answer goes to on_line as it arrives, on
    // another thread than the caller's. `stop` is polled every 50 ms; when it returns true the
    // connection is dropped (the daemon cancels the request) and *cancelled is set. Errors: a
    // non-200 answer (its message), or a connection that breaks before the answer ends.
    Status stream(const std::string& path, const json& body, const std::function<void(const json&)>& on_line,
                  const std::function<bool()>& stop, bool* cancelled);

private:
    Result<json> call(const std::string& method, const std::string& path, const json* body);

    DaemonAddress addr_;
    std::string version_;
};

// A client for the daemon at HEARTH_HOST when one is running; nullopt when none is. A bad
// HEARTH_HOST fails the command (`cmd`) with one line.
std::optional<Client> find_daemon(const std::string& cmd);

// The client's version string (the build's HEARTH_VERSION).
const char* client_version();

}  // namespace hearth::cli
