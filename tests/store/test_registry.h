// A registry on loopback for the pull tests: Ollama's v2 manifest + blob protocol, the Hugging
// Face API file listing and resolve URLs, and (as a forward proxy) absolute-form requests, all
// from content the tests generate, with faults injected per request by a hook: drop the
// connection after N body bytes, stall, answer a status, corrupt the bytes, ignore Range,
// throttle. It counts what it serves, so a test can check that a resume fetched only the bytes
// that were missing.
//
// A plain-socket HTTP/1.1 server rather than cpp-httplib: the store and CLI test binaries do
// not link cpp-httplib (Debian's is a compiled library), and byte-exact drops and stalls are
// simpler to inject at this level. One thread per connection; every answer closes its
// connection. stop() closes every connection at once (a server that goes away), start() listens
// again on the same port (a restart).
#pragma once

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <filesystem>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "base/sha256.h"

namespace hearth::test {

// An empty store root (HEARTH_MODELS) for pull tests: a fresh folder under the temp dir,
// named by process and tag, removed on destruction.
class EmptyStore {
public:
    explicit EmptyStore(const std::string& tag) {
        root_ = std::filesystem::temp_directory_path() /
                ("hearth-empty-store-" + std::to_string(::getpid()) + "-" + tag);
        std::filesystem::remove_all(root_);
        std::filesystem::create_directories(root_);
    }
    ~EmptyStore() { std::filesystem::remove_all(root_); }
    EmptyStore(const EmptyStore&) = delete;
    EmptyStore& operator=(const EmptyStore&) = delete;
    std::string root() const { return root_.string(); }

private:
    std::filesystem::path root_;
};

class TestRegistry {
public:
    enum class Kind { manifest, blob, hf_tree, hf_file, other };
    struct Request {
        int n = 0;  // 0, 1, 2, ... in arrival order
        Kind kind = Kind::other;
        std::string method, path;  // path without the query
        std::string target;        // as sent (absolute-form through a proxy)
        std::string accept, authorization, range;
        int64_t range_start = -1, range_end = -1;  // inclusive; -1 when absent / open
        bool proxied = false;                      // absolute-form request line
    };
    // What to do with one request. The defaults serve it normally.
    struct Fault {
        int status = 0;             // answer this status (with a JSON error body) instead
        int64_t drop_after = -1;    // close the connection after this many body bytes
        int64_t stall_after = -1;   // after this many body bytes, send nothing for stall_ms
        int stall_ms = 0;
        bool drop_after_stall = false;  // close instead of going on once the stall is over
        bool corrupt = false;       // serve wrong bytes (same length)
        bool ignore_range = false;  // answer 200 with the whole body
        int64_t bytes_per_s = 0;    // throttle the body (0: as fast as possible)
    };
    using Hook = std::function<Fault(const Request&)>;

    // Listens on `port` (0: a free one) at once.
    explicit TestRegistry(int port = 0) : port_(port) { start(); }
    ~TestRegistry() { stop(); }
    TestRegistry(const TestRegistry&) = delete;
    TestRegistry& operator=(const TestRegistry&) = delete;

    int port() const { return port_; }
    std::string host() const { return "127.0.0.1:" + std::to_string(port_); }
    std::string url() const { return "http://" + host(); }

    void start() {
        std::lock_guard lk(life_mu_);
        if (running_) return;
        listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int one = 1;
        ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a.sin_port = htons((uint16_t)port_);
        bool bound = false;
        for (int i = 0; i < 200 && !(bound = ::bind(listen_fd_, (sockaddr*)&a, sizeof a) == 0); ++i)
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        EXPECT_TRUE(bound) << "test registry: cannot bind port " << port_;
        socklen_t len = sizeof a;
        ::getsockname(listen_fd_, (sockaddr*)&a, &len);
        port_ = ntohs(a.sin_port);
        EXPECT_EQ(::listen(listen_fd_, 64), 0);
        stopping_ = false;
        running_ = true;
        accept_thread_ = std::thread([this] { accept_loop(); });
    }

    // Closes the listener and every open connection, mid-body or not.
    void stop() {
        std::lock_guard lk(life_mu_);
        if (!running_) return;
        stopping_ = true;
        ::shutdown(listen_fd_, SHUT_RDWR);
        ::close(listen_fd_);
        accept_thread_.join();
        std::vector<std::thread> threads;
        {
            std::lock_guard c(conn_mu_);
            for (int fd : conn_fds_) ::shutdown(fd, SHUT_RDWR);
            threads.swap(conn_threads_);
        }
        for (auto& t : threads) t.join();
        running_ = false;
    }

    // ---- content ----

    // "GGUF" and `n_bytes - 4` pseudo-random bytes.
    static std::string random_blob(size_t n_bytes, uint32_t seed) {
        std::mt19937 rng(seed);
        std::string s(n_bytes, '\0');
        for (auto& c : s) c = (char)(rng() & 0xff);
        if (n_bytes >= 4) s.replace(0, 4, "GGUF");
        return s;
    }
    static std::string digest_of(const std::string& bytes) { return "sha256:" + sha256_hex(std::string_view(bytes)); }

    std::string add_blob(const std::string& bytes) {
        const std::string d = digest_of(bytes);
        std::lock_guard lk(data_mu_);
        blobs_[d] = bytes;
        return d;
    }
    // Every model's config blob.
    static constexpr std::string_view kConfig = R"({"model_format":"gguf","file_type":"test"})";

    // A model with the config blob and these layers ({media type, bytes}); the manifest text.
    std::string add_model(const std::string& ns, const std::string& model, const std::string& tag,
                          const std::vector<std::pair<std::string, std::string>>& layers) {
        using json = nlohmann::json;
        const std::string config(kConfig);
        json m = {{"schemaVersion", 2},
                  {"mediaType", "application/vnd.docker.distribution.manifest.v2+json"},
                  {"config",
                   {{"mediaType", "application/vnd.docker.container.image.v1+json"},
                    {"digest", add_blob(config)},
                    {"size", config.size()}}},
                  {"layers", json::array()}};
        for (const auto& [type, bytes] : layers)
            m["layers"].push_back({{"mediaType", type}, {"digest", add_blob(bytes)}, {"size", bytes.size()}});
        const std::string text = m.dump();
        std::lock_guard lk(data_mu_);
        manifests_["/v2/" + ns + "/" + model + "/manifests/" + tag] = text;
        return text;
    }
    // A file of a Hub repository ("user/repo"); `lfs`: listed with its sha256 (as the Hub lists
    // GGUF files), else with only a git oid.
    void add_hf_file(const std::string& repo, const std::string& path, const std::string& bytes, bool lfs = true) {
        std::lock_guard lk(data_mu_);
        hf_files_[repo][path] = {bytes, lfs};
    }
    // Blobs answer 307 to /cdn/<digest> (as registry.ollama.ai sends them to its CDN).
    void set_redirect_blobs(bool on) { redirect_blobs_ = on; }

    // ---- faults and counters ----

    void set_hook(Hook h) {
        std::lock_guard lk(data_mu_);
        hook_ = std::move(h);
    }
    std::vector<Request> requests() const {
        std::lock_guard lk(data_mu_);
        return log_;
    }
    std::vector<Request> requests_of(Kind k) const {
        std::vector<Request> out;
        for (auto& r : requests())
            if (r.kind == k) out.push_back(r);
        return out;
    }
    // Body bytes of blobs and Hub files that went out (send() accepted them).
    int64_t bytes_served() const { return bytes_served_; }
    // Waits (up to 5 s) until no connection is open: a client that went away has been noticed.
    void wait_idle() {
        for (int i = 0; i < 500; ++i) {
            {
                std::lock_guard lk(conn_mu_);
                if (conn_fds_.empty()) return;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        ADD_FAILURE() << "test registry: connections still open";
    }
    void reset_counters() {
        std::lock_guard lk(data_mu_);
        log_.clear();
        bytes_served_ = 0;
    }

private:
    void accept_loop() {
        for (;;) {
            const int c = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
            if (c < 0) {
                if (stopping_) return;
                if (errno == EINTR || errno == ECONNABORTED) continue;
                return;
            }
            std::lock_guard lk(conn_mu_);
            if (stopping_) {
                ::close(c);
                continue;
            }
            conn_fds_.insert(c);
            conn_threads_.emplace_back([this, c] {
                serve(c);
                std::lock_guard l(conn_mu_);
                conn_fds_.erase(c);
                ::close(c);
            });
        }
    }

    static std::string lower(std::string s) {
        for (auto& ch : s) ch = (char)std::tolower((unsigned char)ch);
        return s;
    }
    static std::string header(const std::string& head, const std::string& name) {
        const std::string l = lower(head);
        const size_t p = l.find("\r\n" + name + ":");
        if (p == std::string::npos) return "";
        size_t b = p + 3 + name.size();
        while (b < head.size() && head[b] == ' ') ++b;
        const size_t e = head.find("\r\n", b);
        return head.substr(b, e - b);
    }
    bool send_all(int fd, const char* data, size_t n) {
        while (n > 0) {
            const ssize_t w = ::send(fd, data, n, MSG_NOSIGNAL);
            if (w <= 0) return false;
            data += w;
            n -= (size_t)w;
        }
        return true;
    }
    // Ends the connection after what was sent has left: the client reads every byte, then EOF.
    void close_gracefully(int fd) {
        ::shutdown(fd, SHUT_WR);
        char buf[256];
        pollfd p{fd, POLLIN, 0};
        for (int i = 0; i < 20 && ::poll(&p, 1, 50) > 0; ++i)
            if (::recv(fd, buf, sizeof buf, 0) <= 0) break;
    }
    bool sleep_ms(int ms) {
        for (int i = 0; i < ms / 10 && !stopping_; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
        return !stopping_;
    }

    void reply(int fd, int status, const std::string& type, const std::string& body,
               const std::string& extra_headers = "") {
        const std::string head = "HTTP/1.1 " + std::to_string(status) + " X\r\nContent-Type: " + type +
                                 "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n" + extra_headers +
                                 "Connection: close\r\n\r\n";
        if (send_all(fd, head.data(), head.size())) send_all(fd, body.data(), body.size());
        close_gracefully(fd);
    }
    void error_reply(int fd, int status, const std::string& message) {
        reply(fd, status, "application/json",
              nlohmann::json{{"errors", {{{"code", "TEST"}, {"message", message}}}}}.dump());
    }

    // Sends `content` (or its requested range) with the fault applied.
    void send_body(int fd, const Request& r, const std::string& content, const Fault& f) {
        int64_t start = 0, end = (int64_t)content.size() - 1;
        bool partial = false;
        if (r.range_start >= 0 && !f.ignore_range) {
            if (r.range_start >= (int64_t)content.size() && !content.empty()) {
                reply(fd, 416, "text/plain", "");
                return;
            }
            start = r.range_start;
            if (r.range_end >= 0) end = std::min<int64_t>(r.range_end, end);
            partial = true;
        }
        const int64_t n = std::max<int64_t>(0, end - start + 1);
        std::string head = std::string("HTTP/1.1 ") + (partial ? "206 Partial Content" : "200 OK") +
                           "\r\nContent-Type: application/octet-stream\r\nContent-Length: " + std::to_string(n) +
                           "\r\nAccept-Ranges: bytes\r\n";
        if (partial)
            head += "Content-Range: bytes " + std::to_string(start) + "-" + std::to_string(end) + "/" +
                    std::to_string(content.size()) + "\r\n";
        head += "Connection: close\r\n\r\n";
        if (!send_all(fd, head.data(), head.size())) return;
        int64_t sent = 0;
        bool stalled = false;
        const auto t0 = std::chrono::steady_clock::now();
        while (sent < n && !stopping_) {
            int64_t chunk = std::min<int64_t>(4096, n - sent);
            if (f.drop_after >= 0) chunk = std::min(chunk, f.drop_after - sent);
            if (f.stall_after >= 0 && !stalled) chunk = std::min(chunk, f.stall_after - sent);
            if (f.drop_after >= 0 && sent >= f.drop_after) break;
            if (f.stall_after >= 0 && !stalled && sent >= f.stall_after) {
                stalled = true;
                if (!sleep_ms(f.stall_ms) || f.drop_after_stall) break;
                continue;
            }
            if (f.bytes_per_s > 0) {
                chunk = std::min<int64_t>(chunk, std::max<int64_t>(1, f.bytes_per_s / 20));
                const double due = (double)sent / (double)f.bytes_per_s;
                const double now = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
                if (due > now && !sleep_ms((int)((due - now) * 1000) + 1)) break;
            }
            std::string piece = content.substr((size_t)(start + sent), (size_t)chunk);
            if (f.corrupt)
                for (auto& ch : piece) ch = (char)(ch ^ 0x5a);
            if (!send_all(fd, piece.data(), piece.size())) return;
            sent += chunk;
            bytes_served_ += chunk;
        }
        close_gracefully(fd);
    }

    void serve(int fd) {
        std::string in;
        char buf[4096];
        size_t end;
        while ((end = in.find("\r\n\r\n")) == std::string::npos) {
            const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
            if (n <= 0 || in.size() > 65536) return;
            in.append(buf, (size_t)n);
        }
        const std::string head = in.substr(0, end + 2);
        Request r;
        const size_t sp1 = head.find(' '), sp2 = head.find(' ', sp1 + 1);
        r.method = head.substr(0, sp1);
        r.target = head.substr(sp1 + 1, sp2 - sp1 - 1);
        std::string path = r.target;
        if (path.rfind("http://", 0) == 0) {  // absolute-form: we are the proxy
            r.proxied = true;
            const size_t slash = path.find('/', 7);
            path = slash == std::string::npos ? "/" : path.substr(slash);
        }
        r.path = path.substr(0, path.find('?'));
        r.accept = header(head, "accept");
        r.authorization = header(head, "authorization");
        r.range = header(head, "range");
        if (r.range.rfind("bytes=", 0) == 0) {
            const size_t dash = r.range.find('-');
            r.range_start = std::stoll(r.range.substr(6, dash - 6));
            if (dash + 1 < r.range.size()) r.range_end = std::stoll(r.range.substr(dash + 1));
        }
        const std::vector<std::string> parts = split(r.path);
        // /v2/<ns>/<model>/manifests/<tag>, /v2/<ns>/<model>/blobs/<digest>, /cdn/<digest>,
        // /api/models/<user>/<repo>/tree/main, /<user>/<repo>/resolve/main/<file...>
        if (parts.size() == 5 && parts[0] == "v2" && parts[3] == "manifests") r.kind = Kind::manifest;
        else if ((parts.size() == 5 && parts[0] == "v2" && parts[3] == "blobs") || (parts.size() == 2 && parts[0] == "cdn"))
            r.kind = Kind::blob;
        else if (parts.size() >= 6 && parts[0] == "api" && parts[1] == "models" && parts[4] == "tree") r.kind = Kind::hf_tree;
        else if (parts.size() >= 5 && parts[2] == "resolve") r.kind = Kind::hf_file;

        Fault f;
        std::string content;
        bool found = false;
        {
            std::lock_guard lk(data_mu_);
            r.n = next_n_++;
            log_.push_back(r);
            if (hook_) f = hook_(r);
            switch (r.kind) {
            case Kind::manifest:
                if (auto it = manifests_.find(r.path); it != manifests_.end()) content = it->second, found = true;
                break;
            case Kind::blob:
                if (auto it = blobs_.find(parts.back()); it != blobs_.end()) content = it->second, found = true;
                break;
            case Kind::hf_tree:
                if (auto it = hf_files_.find(parts[2] + "/" + parts[3]); it != hf_files_.end()) {
                    content = tree_json(it->second);
                    found = true;
                }
                break;
            case Kind::hf_file: {
                auto it = hf_files_.find(parts[0] + "/" + parts[1]);
                std::string file;
                for (size_t i = 4; i < parts.size(); ++i) file += (file.empty() ? "" : "/") + parts[i];
                if (it != hf_files_.end())
                    if (auto f2 = it->second.find(file); f2 != it->second.end()) content = f2->second.first, found = true;
                break;
            }
            case Kind::other: break;
            }
        }
        if (r.method != "GET") return error_reply(fd, 405, "only GET here");
        if (f.status) return error_reply(fd, f.status, "injected fault");
        if (!found) return error_reply(fd, 404, r.kind == Kind::manifest ? "manifest unknown" : "not found");
        switch (r.kind) {
        case Kind::manifest: return reply(fd, 200, "application/vnd.docker.distribution.manifest.v2+json", content);
        case Kind::hf_tree: return reply(fd, 200, "application/json", content);
        case Kind::blob:
            if (redirect_blobs_ && parts[0] == "v2")
                return reply(fd, 307, "text/plain", "", "Location: /cdn/" + parts.back() + "\r\n");
            return send_body(fd, r, content, f);
        case Kind::hf_file: return send_body(fd, r, content, f);
        case Kind::other: return;
        }
    }

    static std::vector<std::string> split(const std::string& path) {
        std::vector<std::string> out;
        size_t start = 1;
        while (start <= path.size()) {
            const size_t p = path.find('/', start);
            out.push_back(path.substr(start, p == std::string::npos ? std::string::npos : p - start));
            if (p == std::string::npos) break;
            start = p + 1;
        }
        return out;
    }
    static std::string tree_json(const std::map<std::string, std::pair<std::string, bool>>& files) {
        nlohmann::json a = nlohmann::json::array();
        for (const auto& [path, f] : files) {
            nlohmann::json e = {{"type", "file"}, {"oid", "0123456789abcdef0123456789abcdef01234567"},
                                {"size", f.first.size()}, {"path", path}};
            if (f.second)
                e["lfs"] = {{"oid", sha256_hex(std::string_view(f.first))}, {"size", f.first.size()}, {"pointerSize", 134}};
            a.push_back(e);
        }
        return a.dump();
    }

    int port_ = 0;
    std::mutex life_mu_;  // start/stop
    bool running_ = false;
    int listen_fd_ = -1;
    std::atomic<bool> stopping_{false};
    std::thread accept_thread_;
    std::mutex conn_mu_;
    std::set<int> conn_fds_;                 // under conn_mu_: open connections
    std::vector<std::thread> conn_threads_;  // under conn_mu_
    std::atomic<bool> redirect_blobs_{false};
    std::atomic<int64_t> bytes_served_{0};

    mutable std::mutex data_mu_;
    // ---- under data_mu_ ----
    std::map<std::string, std::string> blobs_;      // digest -> bytes
    std::map<std::string, std::string> manifests_;  // request path -> manifest text
    std::map<std::string, std::map<std::string, std::pair<std::string, bool>>> hf_files_;  // repo -> path -> {bytes, lfs}
    Hook hook_;
    int next_n_ = 0;
    std::vector<Request> log_;
};

}  // namespace hearth::test
