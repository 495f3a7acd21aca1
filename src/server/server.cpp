#include "server/server.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <httplib.h>

#include <cerrno>
#include <csignal>
#include <cstring>

#include "base/timer.h"
#include "server/adapters/anthropic.h"
#include "server/adapters/ollama.h"
#include "server/adapters/openai.h"
#include "server/routes_fit.h"

namespace hearth::server {
namespace {

using json = nlohmann::ordered_json;
namespace ol = ollama;
using WallTime = ollama::WallTime;

constexpr const char* kJson = "application/json; charset=utf-8";

WallTime wall_now() { return std::chrono::system_clock::now(); }

// Errors of Ollama's endpoints: {"error": "..."}.
void ollama_error(httplib::Response& res, const Status& s) { Server::send_error(res, s, Server::Protocol::ollama); }

// '*' matches any run of characters.
bool glob_match(std::string_view pat, std::string_view s) {
    size_t p = 0, i = 0, star = std::string_view::npos, mark = 0;
    while (i < s.size()) {
        if (p < pat.size() && (pat[p] == s[i])) {
            ++p, ++i;
        } else if (p < pat.size() && pat[p] == '*') {
            star = p++;
            mark = i;
        } else if (star != std::string_view::npos) {
            p = star + 1;
            i = ++mark;
        } else {
            return false;
        }
    }
    while (p < pat.size() && pat[p] == '*') ++p;
    return p == pat.size();
}

std::string endpoint_of(const std::string& path) {
    static const char* kKnown[] = {"/",         "/api/generate", "/api/chat",   "/api/embed",      "/api/embeddings",
                                   "/api/tags", "/api/show",     "/api/ps",     "/api/version",    "/api/tokenize",
                                   "/api/detokenize", "/api/copy", "/api/delete", "/api/pull",     "/api/push",
                                   "/api/create", "/api/fit", "/metrics", "/v1/chat/completions", "/v1/completions",
                                   "/v1/embeddings", "/v1/models", "/v1/responses", "/v1/messages",
                                   "/v1/messages/count_tokens"};
    for (const char* k : kKnown)
        if (path == k) return path;
    if (path.rfind("/api/blobs/", 0) == 0) return "/api/blobs";
    if (path.rfind("/v1/models/", 0) == 0) return "/v1/models/{id}";
    return "other";
}

// Why a bind would fail, with errno, before handing the address to httplib (which only says
// "false").
Status probe_bind(const std::string& host, int port) {
    addrinfo hints{}, *res = nullptr;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    const std::string port_s = std::to_string(port);
    if (int rc = getaddrinfo(host.c_str(), port_s.c_str(), &hints, &res); rc != 0)
        return error(StatusCode::invalid_argument, "HEARTH_HOST: cannot resolve \"" + host + "\": " + gai_strerror(rc));
    Status st;
    const int fd = socket(res->ai_family, res->ai_socktype, res->ai_protocol);
    if (fd >= 0) {
        int yes = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
        if (bind(fd, res->ai_addr, res->ai_addrlen) != 0) {
            const int err = errno;
            if (err == EADDRINUSE)
                st = error(StatusCode::unsupported,
                           strformat("%s:%d is already in use (another hearth or Ollama running?); choose another "
                                     "address with HEARTH_HOST, e.g. HEARTH_HOST=%s:%d hearth serve",
                                     host.c_str(), port, host.c_str(), port + 1));
            else
                st = error(StatusCode::io_error, strformat("cannot listen on %s:%d: %s", host.c_str(), port, std::strerror(err)));
        }
        close(fd);
    }
    freeaddrinfo(res);
    return st;
}

// httplib 0.11 listens with a backlog of 5 (compiled into Debian's library): 32 clients
// connecting at once overflow it, and connections completed by SYN cookies while the queue is
// full can be reset. listen() again on the bound socket raises the backlog.
class HttpServer : public httplib::Server {
public:
    void raise_backlog() {
        if (svr_sock_ != INVALID_SOCKET) ::listen(svr_sock_, SOMAXCONN);
    }
};

}  // namespace

struct Server::LogInfo {
    int64_t start_ns = 0;
    std::mutex mu;
    std::string model;           // under mu
    int64_t prompt_tokens = 0;   // under mu
    int64_t eval_tokens = 0;     // under mu
    std::string note;            // under mu: e.g. "client disconnected", ignored options
};

bool Server::host_allowed(const std::string& host_header, const std::string& bind_host) {
    auto is_loopback_bind = [](const std::string& h) {
        return h == "127.0.0.1" || h == "localhost" || h == "::1" || h.rfind("127.", 0) == 0;
    };
    if (!is_loopback_bind(bind_host)) return true;  // listening on the network: the user chose to be reachable
    std::string h = host_header;
    if (!h.empty() && h.front() == '[') {  // [v6]:port
        const size_t close = h.find(']');
        h = close == std::string::npos ? h : h.substr(1, close - 1);
    } else if (const size_t colon = h.rfind(':'); colon != std::string::npos && h.find(':') == colon) {
        h = h.substr(0, colon);
    }
    for (char& c : h) c = (char)std::tolower((unsigned char)c);
    if (h.empty() || h == "localhost") return true;
    auto ends_with = [&](std::string_view suffix) {
        return h.size() > suffix.size() && h.compare(h.size() - suffix.size(), suffix.size(), suffix) == 0;
    };
    if (ends_with(".localhost") || ends_with(".local") || ends_with(".internal")) return true;
    // An IP literal cannot be rebound by DNS.
    in6_addr a6;
    in_addr a4;
    if (inet_pton(AF_INET, h.c_str(), &a4) == 1 || inet_pton(AF_INET6, h.c_str(), &a6) == 1) return true;
    char name[256] = {0};
    if (gethostname(name, sizeof name - 1) == 0) {
        std::string self = name;
        for (char& c : self) c = (char)std::tolower((unsigned char)c);
        if (h == self) return true;
    }
    return false;
}

bool Server::origin_allowed(const std::string& origin, const std::vector<std::string>& extra) {
    static const char* kDefaults[] = {"http://localhost",   "https://localhost",   "http://localhost:*",
                                      "https://localhost:*", "http://127.0.0.1",    "https://127.0.0.1",
                                      "http://127.0.0.1:*", "https://127.0.0.1:*", "http://0.0.0.0",
                                      "https://0.0.0.0",    "http://0.0.0.0:*",    "https://0.0.0.0:*",
                                      "http://[::1]",       "http://[::1]:*",      "https://[::1]",
                                      "https://[::1]:*",    "app://*",             "file://*",
                                      "tauri://*",          "vscode-webview://*"};
    for (const char* p : kDefaults)
        if (glob_match(p, origin)) return true;
    for (const auto& p : extra)
        if (p == "*" || glob_match(p, origin)) return true;
    return false;
}

Server::Protocol Server::protocol_of(const std::string& path) {
    if (path.rfind("/v1/messages", 0) == 0) return Protocol::anthropic;
    if (path.rfind("/v1/", 0) == 0) return Protocol::openai;
    return Protocol::ollama;
}

void Server::send_json(httplib::Response& res, int http_status, const json& j) {
    res.status = http_status;
    res.set_content(j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), kJson);
}

void Server::send_error(httplib::Response& res, int code, const std::string& message, Protocol protocol) {
    if (code == 503) res.set_header("Retry-After", "1");
    switch (protocol) {
    case Protocol::ollama: return send_json(res, code, ol::error_json(message));
    case Protocol::openai: return send_json(res, code, openai::error_json(code, message));
    case Protocol::anthropic: return send_json(res, code, anthropic::error_json(code, message));
    }
}

void Server::send_error(httplib::Response& res, const Status& s, Protocol protocol) {
    send_error(res, http_status(s), s.message(), protocol);
}

void Server::log_model(const httplib::Request& req, const std::string& model, int64_t prompt_tokens) {
    std::shared_ptr<LogInfo> log = log_info(req);
    std::lock_guard lk(log->mu);
    log->model = model;
    if (prompt_tokens) log->prompt_tokens = prompt_tokens;
}

Server::Server(const ServerConfig& config) : config_(config) {}

Server::~Server() { stop(); }

Result<std::unique_ptr<Server>> Server::create(const ServerConfig& config) {
    std::unique_ptr<Server> s(new Server(config));
    HEARTH_ASSIGN(s->service_, Service::create(config));
    s->http_ = std::make_unique<HttpServer>();
    s->routes();
    return s;
}

std::shared_ptr<Server::LogInfo> Server::log_info(const httplib::Request& req) {
    std::lock_guard lk(log_mu_);
    auto it = log_.find(&req);
    if (it != log_.end()) return it->second;
    auto info = std::make_shared<LogInfo>();
    info->start_ns = now_ns();
    log_[&req] = info;
    return info;
}

void Server::routes() {
    httplib::Server& h = *http_;
    const int threads = config_.http_threads;
    h.new_task_queue = [threads] { return new httplib::ThreadPool((size_t)threads); };
    h.set_payload_max_length((size_t)config_.max_body_bytes);
    h.set_keep_alive_max_count(100);
    h.set_write_timeout(30, 0);
    h.set_read_timeout(30, 0);

    h.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
        log_info(req);
        // DNS rebinding: a web page on evil.example whose name resolves to 127.0.0.1 reaches a
        // loopback daemon with its own Host header; refuse names that are not this machine's.
        if (!host_allowed(req.get_header_value("Host"), config_.host)) {
            send_error(res, 403, "host " + req.get_header_value("Host") + " is not allowed for a daemon listening on " + config_.host,
                       protocol_of(req.path));
            return httplib::Server::HandlerResponse::Handled;
        }
        const std::string origin = req.get_header_value("Origin");
        if (!origin.empty()) {
            if (!origin_allowed(origin, config_.origins)) {
                send_error(res, 403, "origin " + origin + " is not allowed (set HEARTH_ORIGINS)", protocol_of(req.path));
                return httplib::Server::HandlerResponse::Handled;
            }
            res.set_header("Access-Control-Allow-Origin", origin);
            res.set_header("Vary", "Origin");
        }
        if (req.method == "OPTIONS") {  // CORS preflight: no auth (browsers send none)
            res.set_header("Access-Control-Allow-Methods", "GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS");
            res.set_header("Access-Control-Allow-Headers",
                           "Authorization, Content-Type, User-Agent, Accept, X-Requested-With, X-Stainless-Lang, "
                           "X-Stainless-Package-Version, X-Stainless-OS, X-Stainless-Arch, X-Stainless-Runtime, "
                           "X-Stainless-Runtime-Version, X-Stainless-Async, X-Stainless-Retry-Count, X-Api-Key, "
                           "Anthropic-Version, Anthropic-Beta, Anthropic-Dangerous-Direct-Browser-Access");
            res.set_header("Access-Control-Max-Age", "86400");
            res.status = 204;
            return httplib::Server::HandlerResponse::Handled;
        }
        if (!config_.api_key.empty() && !(req.path == "/" && (req.method == "GET" || req.method == "HEAD"))) {
            const std::string want = "Bearer " + config_.api_key;
            std::string got = req.get_header_value("Authorization");
            // Anthropic's clients send the key as x-api-key.
            if (got.empty() && req.has_header("x-api-key")) got = "Bearer " + req.get_header_value("x-api-key");
            // Constant time in the key's length: no early exit on the first differing byte.
            unsigned diff = got.size() != want.size();
            for (size_t i = 0; i < want.size(); ++i) diff |= (unsigned char)want[i] ^ (unsigned char)(i < got.size() ? got[i] : 0);
            if (diff) {
                res.set_header("WWW-Authenticate", "Bearer");
                send_error(res, 401, "unauthorized: this server needs 'Authorization: Bearer <HEARTH_API_KEY>'",
                           protocol_of(req.path));
                return httplib::Server::HandlerResponse::Handled;
            }
        }
        return httplib::Server::HandlerResponse::Unhandled;
    });

    h.set_error_handler(httplib::Server::HandlerWithResponse([](const httplib::Request& req, httplib::Response& res) {
        if (!res.body.empty() || res.content_length_ > 0) return httplib::Server::HandlerResponse::Unhandled;
        std::string msg;
        if (res.status == 413) msg = "the request body is too large (limit: HEARTH_MAX_BODY)";
        else if (res.status == 404) msg = "404 page not found: " + req.method + " " + req.path;
        else msg = strformat("HTTP status %d", res.status);
        send_error(res, res.status, msg, protocol_of(req.path));
        return httplib::Server::HandlerResponse::Handled;
    }));

    h.set_exception_handler([](const httplib::Request& req, httplib::Response& res, std::exception_ptr ep) {
        std::string what = "unknown exception";
        try {
            std::rethrow_exception(ep);
        } catch (const std::exception& e) {
            what = e.what();
        } catch (...) {
        }
        send_error(res, 500, "internal error: " + what, protocol_of(req.path));
    });

    // Counted before the response is written (the logger runs after it is sent), so a client
    // that reads /metrics right after its reply sees its own request.
    h.set_post_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
        service_->metrics().count_request(endpoint_of(req.path), res.status);
    });
    h.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
        std::shared_ptr<LogInfo> info;
        {
            std::lock_guard lk(log_mu_);
            auto it = log_.find(&req);
            if (it != log_.end()) {
                info = it->second;
                log_.erase(it);
            }
        }
        if (!config_.log_requests) return;
        const double ms = info ? (double)(now_ns() - info->start_ns) / 1e6 : 0.0;
        std::string model, note;
        int64_t pt = 0, et = 0;
        if (info) {
            std::lock_guard lk(info->mu);
            model = info->model, note = info->note, pt = info->prompt_tokens, et = info->eval_tokens;
        }
        std::string l = "time=" + ol::rfc3339(wall_now()) + " method=" + req.method + " path=" + req.path +
                        strformat(" status=%d duration_ms=%.1f", res.status, ms) + " remote=" + req.remote_addr;
        if (!model.empty()) l += " model=" + model;
        if (pt || et) l += strformat(" prompt_tokens=%lld eval_tokens=%lld", (long long)pt, (long long)et);
        if (!note.empty()) l += " note=\"" + note + "\"";
        std::fprintf(stderr, "%s\n", l.c_str());
    });

    // ---- endpoints ----
    h.Get("/", [](const httplib::Request&, httplib::Response& res) {
        // Health checks (and Homebrew's formula test) match this exact text.
        res.set_content("Ollama is running", "text/plain; charset=utf-8");
    });
    h.Get("/api/version", [](const httplib::Request&, httplib::Response& res) {
        send_json(res, 200, {{"version", HEARTH_VERSION}});
    });
    h.Post("/api/generate", [this](const httplib::Request& req, httplib::Response& res) { handle_text(req, res, false); });
    h.Post("/api/chat", [this](const httplib::Request& req, httplib::Response& res) { handle_text(req, res, true); });
    h.Post("/api/embed", [this](const httplib::Request& req, httplib::Response& res) { handle_embed(req, res, false); });
    h.Post("/api/embeddings", [this](const httplib::Request& req, httplib::Response& res) { handle_embed(req, res, true); });

    h.Get("/api/tags", [this](const httplib::Request&, httplib::Response& res) {
        json models = json::array();
        for (const auto& ref : service_->store().list()) {
            auto info = service_->store().info(ref);
            models.push_back(ol::tags_entry(ref, info.ok() ? &*info : nullptr));
        }
        send_json(res, 200, {{"models", models}});
    });

    h.Post("/api/show", [this](const httplib::Request& req, httplib::Response& res) {
        auto body = ol::parse_body(req.body);
        if (!body.ok()) return ollama_error(res, body.status());
        // Ollama's older clients send "name".
        const char* field = body->contains("model") || !body->contains("name") ? "model" : "name";
        auto model = ol::required_string(*body, field);
        if (!model.ok()) return ollama_error(res, model.status());
        bool verbose = false;
        if (body->contains("verbose")) {
            if (!(*body)["verbose"].is_boolean()) return ollama_error(res, error(StatusCode::invalid_argument, "field \"verbose\" must be a boolean"));
            verbose = (*body)["verbose"].get<bool>();
        }
        auto ref = service_->store().resolve(*model);
        if (!ref.ok()) return ollama_error(res, ref.status());
        auto info = service_->store().info(*ref, /*with_file=*/true);
        if (!info.ok()) return ollama_error(res, info.status());
        json shown = ol::show_response(*ref, *info, verbose);
        shown["fit"] = show_fit_json(*info, config_);  // will it fit, with the daemon's defaults (routes_fit.h)
        send_json(res, 200, shown);
    });

    h.Get("/api/ps", [this](const httplib::Request&, httplib::Response& res) {
        runtime::ModelManager& mm = service_->models();
        const auto steady_now = mm.now();
        const auto wall = wall_now();
        json models = json::array();
        for (const auto& st : mm.list()) {
            auto ref = service_->store().resolve(st.name);
            if (!ref.ok()) continue;
            auto info = service_->store().info(*ref);
            std::optional<WallTime> exp;
            if (st.expires_at)
                exp = wall + std::chrono::duration_cast<std::chrono::system_clock::duration>(*st.expires_at - steady_now);
            models.push_back(ol::ps_entry(*ref, info.ok() ? &*info : nullptr, st, exp));
        }
        send_json(res, 200, {{"models", models}});
    });

    h.Post("/api/tokenize", [this](const httplib::Request& req, httplib::Response& res) {
        auto body = ol::parse_body(req.body);
        if (!body.ok()) return ollama_error(res, body.status());
        auto model = ol::required_string(*body, "model");
        if (!model.ok()) return ollama_error(res, model.status());
        // "text" (Ollama's proposed API); "content" (llama.cpp's) and "prompt" are accepted too.
        std::string text;
        bool found = false;
        for (const char* f : {"text", "content", "prompt"}) {
            if (!body->contains(f)) continue;
            if (!(*body)[f].is_string())
                return ollama_error(res, error(StatusCode::invalid_argument, std::string("field \"") + f + "\" must be a string"));
            text = (*body)[f].get<std::string>();
            found = true;
            break;
        }
        if (!found) return ollama_error(res, error(StatusCode::invalid_argument, "text is required"));
        bool add_special = false;
        if (body->contains("add_special")) {
            if (!(*body)["add_special"].is_boolean())
                return ollama_error(res, error(StatusCode::invalid_argument, "field \"add_special\" must be a boolean"));
            add_special = (*body)["add_special"].get<bool>();
        }
        auto ids = service_->tokenize(*model, text, add_special);
        if (!ids.ok()) return ollama_error(res, ids.status());
        send_json(res, 200, {{"model", *model}, {"tokens", *ids}});
    });

    h.Post("/api/detokenize", [this](const httplib::Request& req, httplib::Response& res) {
        auto body = ol::parse_body(req.body);
        if (!body.ok()) return ollama_error(res, body.status());
        auto model = ol::required_string(*body, "model");
        if (!model.ok()) return ollama_error(res, model.status());
        if (!body->contains("tokens") || !(*body)["tokens"].is_array())
            return ollama_error(res, error(StatusCode::invalid_argument, "field \"tokens\" must be an array of token ids"));
        std::vector<int32_t> ids;
        for (const auto& t : (*body)["tokens"]) {
            if (!t.is_number_integer() || t.get<int64_t>() < INT32_MIN || t.get<int64_t>() > INT32_MAX)
                return ollama_error(res, error(StatusCode::invalid_argument, "field \"tokens\" must be an array of token ids"));
            ids.push_back((int32_t)t.get<int64_t>());
        }
        auto text = service_->detokenize(*model, ids);
        if (!text.ok()) return ollama_error(res, text.status());
        send_json(res, 200, {{"model", *model}, {"text", *text}});
    });

    h.Post("/api/copy", [this](const httplib::Request& req, httplib::Response& res) {
        auto body = ol::parse_body(req.body);
        if (!body.ok()) return ollama_error(res, body.status());
        auto src = ol::required_string(*body, "source");
        if (!src.ok()) return ollama_error(res, src.status());
        auto dst = ol::required_string(*body, "destination");
        if (!dst.ok()) return ollama_error(res, dst.status());
        if (Status s = service_->store().copy(*src, *dst); !s.ok()) return ollama_error(res, s);
        res.status = 200;
    });

    h.Delete("/api/delete", [this](const httplib::Request& req, httplib::Response& res) {
        auto body = ol::parse_body(req.body);
        if (!body.ok()) return ollama_error(res, body.status());
        const char* field = body->contains("model") || !body->contains("name") ? "model" : "name";
        auto model = ol::required_string(*body, field);
        if (!model.ok()) return ollama_error(res, model.status());
        if (Status s = service_->store().remove(*model); !s.ok()) return ollama_error(res, s);
        res.status = 200;
    });

    store_routes();
    pull_routes();
    add_fit_routes(h, *service_, config_);  // POST /api/fit (routes_fit.cpp)
    // HEAD /api/blobs/:digest (httplib routes HEAD to the GET handlers): does the store hold it?
    h.Get(R"(/api/blobs/(.+))", [this](const httplib::Request& req, httplib::Response& res) {
        const std::string digest = req.matches[1];
        if (service_->store().blob_path(digest).empty())
            return send_json(res, 400, ol::error_json("invalid digest \"" + digest + "\": expected sha256:<64 hex>"));
        res.status = service_->store().has_blob(digest) ? 200 : 404;
        if (res.status == 404) send_json(res, 404, ol::error_json("blob " + digest + " not found"));
    });

    openai_routes();
    anthropic_routes();
    responses_routes();

    h.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
        res.set_content(service_->metrics().render(service_->models().queue_length(), service_->model_gauges()),
                        "text/plain; version=0.0.4; charset=utf-8");
    });
}

void Server::handle_text(const httplib::Request& req, httplib::Response& res, bool chat) {
    auto body = ol::parse_body(req.body);
    if (!body.ok()) return ollama_error(res, body.status());
    bool stream = true;
    auto in = chat ? ol::parse_chat(*body, stream) : ol::parse_generate(*body, stream);
    if (!in.ok()) return ollama_error(res, in.status());
    log_model(req, in->model);
    // Responses name the model as the request did ("llama3", not "llama3:latest"), as Ollama.
    const std::string model = in->model;
    auto started = service_->generate(std::move(in).value());
    if (!started.ok()) return ollama_error(res, started.status());
    serve_generation(req, res, std::move(started).value(), ol::make_writer(chat, model), stream, Protocol::ollama);
}

void Server::serve_generation(const httplib::Request& req, httplib::Response& res, std::unique_ptr<Generation> started,
                              std::shared_ptr<TextWriter> w, bool stream, Protocol protocol) {
    std::shared_ptr<LogInfo> log = log_info(req);
    std::shared_ptr<Generation> g = std::move(started);
    {
        std::lock_guard lk(log->mu);
        log->model = g->model_name();
        log->prompt_tokens = g->prompt_tokens();
    }
    // The first item decides the status line.
    Generation::Item first;
    while ((first = g->next(std::chrono::milliseconds(1000))).kind == Generation::Kind::none) {
    }
    if (first.kind == Generation::Kind::error) return send_error(res, first.status, protocol);
    auto note_final = [log](const Final& f) {
        std::lock_guard lk(log->mu);
        log->eval_tokens = f.stats.generated_tokens;
        if (f.done_reason == "cancelled" && log->note.empty()) log->note = "cancelled";
    };
    // Loading or unloading a model (an empty prompt) answers one object, streamed or not.
    if (first.kind == Generation::Kind::final && (first.final.done_reason == "load" || first.final.done_reason == "unload"))
        return send_json(res, 200, w->whole(first.final, Collected{}));

    if (!stream) {
        Collected c;
        Generation::Item it = std::move(first);
        for (;;) {
            if (it.kind == Generation::Kind::delta) {
                c.add(std::move(it.delta));
            } else if (it.kind == Generation::Kind::final) {
                note_final(it.final);
                return send_json(res, 200, w->whole(it.final, c));
            } else if (it.kind == Generation::Kind::error) {
                return send_error(res, it.status, protocol);
            }
            it = g->next(std::chrono::milliseconds(1000));
        }
    }

    struct StreamState {
        std::optional<Generation::Item> pending;
        bool done = false;
        int64_t last_write_ns = 0;
    };
    auto st = std::make_shared<StreamState>();
    st->pending = std::move(first);
    st->last_write_ns = now_ns();
    res.set_header("Cache-Control", "no-cache");
    res.set_chunked_content_provider(
        w->stream_content_type(),
        [g, st, w, note_final, log](size_t, httplib::DataSink& sink) {
            if (st->done) return false;
            Generation::Item it;
            if (st->pending) {
                it = std::move(*st->pending);
                st->pending.reset();
            } else {
                it = g->next(std::chrono::milliseconds(250));
            }
            std::string out;
            switch (it.kind) {
            case Generation::Kind::none:
                // Nothing yet. After a quiet second, write the protocol's keepalive: a client
                // that went away is only noticed by a failed write.
                if (now_ns() - st->last_write_ns < 1000000000) return true;
                out = w->stream_keepalive();
                break;
            case Generation::Kind::delta:
                out = w->stream_delta(it.delta);
                break;
            case Generation::Kind::final:
                note_final(it.final);
                out = w->stream_final(it.final);
                st->done = true;
                break;
            case Generation::Kind::error:
                // The status line is sent: the error goes in the stream.
                out = w->stream_error(it.status);
                st->done = true;
                break;
            }
            st->last_write_ns = now_ns();
            if (!out.empty() && !sink.write(out.data(), out.size())) {
                g->cancel();
                std::lock_guard lk(log->mu);
                log->note = "client disconnected";
                return false;
            }
            if (st->done) sink.done();
            return true;
        },
        [g](bool) {
            // The response is over (sent, or the connection died before the end): a request
            // still running has nobody to read it.
            if (!g->finished()) g->cancel();
        });
}

void Server::handle_embed(const httplib::Request& req, httplib::Response& res, bool legacy) {
    auto body = ol::parse_body(req.body);
    if (!body.ok()) return ollama_error(res, body.status());
    auto in = legacy ? ol::parse_embeddings(*body) : ol::parse_embed(*body);
    if (!in.ok()) return ollama_error(res, in.status());
    log_model(req, in->model);
    const std::string model = in->model;
    auto out = service_->embed(std::move(in).value());
    if (!out.ok()) return ollama_error(res, out.status());
    log_model(req, out->model, out->result.prompt_tokens_total);
    out->model = model;  // echoed as the request named it
    send_json(res, 200, legacy ? ol::embeddings_response(*out) : ol::embed_response(*out));
}

Status Server::start() {
    // A client that closes its connection must not kill the daemon: writes to its socket then
    // fail with EPIPE instead of raising SIGPIPE (httplib sends without MSG_NOSIGNAL).
    std::signal(SIGPIPE, SIG_IGN);
    if (config_.port != 0) HEARTH_TRY(probe_bind(config_.host, config_.port));
    if (config_.port == 0) {
        port_ = http_->bind_to_any_port(config_.host);
        if (port_ <= 0) return error(StatusCode::io_error, "cannot listen on " + config_.host + ": no free port");
    } else {
        if (!http_->bind_to_port(config_.host, config_.port))
            return error(StatusCode::io_error, strformat("cannot listen on %s:%d", config_.host.c_str(), config_.port));
        port_ = config_.port;
    }
    static_cast<HttpServer&>(*http_).raise_backlog();
    listener_ = std::thread([this] { http_->listen_after_bind(); });
    // httplib 0.11 has no wait_until_ready: poll is_running.
    for (int i = 0; i < 2000 && !http_->is_running(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    started_ = true;
    return {};
}

void Server::stop() {
    std::lock_guard lk(stop_mu_);
    if (stopped_) return;
    stopped_ = true;
    if (!service_) return;
    service_->begin_shutdown();
    // Let cancelled streams send their last line before the listener and the workers go.
    for (int i = 0; i < 500 && service_->n_live() > 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    if (http_) http_->stop();
    if (listener_.joinable()) listener_.join();
    service_->finish_shutdown();
}

void Server::wait() {
    while (!started_) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    if (listener_.joinable()) {
        // The listener ends when stop() stops httplib; stop() then finishes the unload.
        while (http_->is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    std::lock_guard lk(stop_mu_);
}

}  // namespace hearth::server
