// Helpers of the CLI tests that need a daemon or a terminal: a temporary Ollama-layout store
// of the shared test models, a real `hearth serve` child on a free loopback port, a scripted
// fake daemon (for answers a real one never gives: another version, a dropped stream, a key
// check), and a pseudo-terminal to drive the REPL as a person would.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "base/sha256.h"
#include "cli/cli_util.h"
#include "support/temp_store.h"
#include "support/testdata.h"

namespace hearth::test {

namespace fs = std::filesystem;

using CliStore = TempStore;  // support/temp_store.h

// A loopback port nothing listens on right now (bound, noted, released).
inline int free_port() {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    socklen_t len = sizeof a;
    EXPECT_EQ(::bind(fd, (sockaddr*)&a, sizeof a), 0);
    EXPECT_EQ(::getsockname(fd, (sockaddr*)&a, &len), 0);
    ::close(fd);
    return ntohs(a.sin_port);
}

inline bool port_open(int port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)port);
    const bool ok = ::connect(fd, (sockaddr*)&a, sizeof a) == 0;
    ::close(fd);
    return ok;
}

// GET `path` from a loopback port over a plain socket (HTTP/1.0: the answer ends when the
// connection closes); the body, "" on failure.
inline std::string http_get(int port, const std::string& path) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)port);
    std::string in;
    if (::connect(fd, (sockaddr*)&a, sizeof a) == 0) {
        const std::string req = "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
        ::send(fd, req.data(), req.size(), MSG_NOSIGNAL);
        char buf[4096];
        for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;) in.append(buf, (size_t)n);
    }
    ::close(fd);
    const size_t body = in.find("\r\n\r\n");
    return body == std::string::npos ? "" : in.substr(body + 4);
}

// `hearth serve` as a child process on a free port over `store_root`; SIGTERM on destruction.
class Daemon {
public:
    explicit Daemon(const std::string& store_root) {
        port_ = free_port();
        log_ = store_root + "/serve.log";
        pid_ = ::fork();
        if (pid_ == 0) {
            ::setenv("HEARTH_HOST", ("127.0.0.1:" + std::to_string(port_)).c_str(), 1);
            ::setenv("HEARTH_MODELS", store_root.c_str(), 1);
            ::setenv("HEARTH_NUM_THREAD", "1", 1);
            ::setenv("HEARTH_NUM_PARALLEL", "2", 1);  // small KV caches: the tests run one request at a time
            if (!std::freopen(log_.c_str(), "w", stderr)) ::_exit(99);
            ::execl(HEARTH_BINARY, HEARTH_BINARY, "serve", (char*)nullptr);
            ::_exit(98);
        }
        for (int i = 0; i < 600 && !port_open(port_); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(25));
        EXPECT_TRUE(port_open(port_)) << "hearth serve did not start: " << read_text_file(log_);
    }
    ~Daemon() { stop(); }
    // SIGTERM and wait; SIGKILL with `kill`, as a crash would.
    void stop(bool kill = false) {
        if (pid_ <= 0) return;
        ::kill(pid_, kill ? SIGKILL : SIGTERM);
        int status = 0;
        for (int i = 0; i < 800 && ::waitpid(pid_, &status, WNOHANG) == 0; ++i)
            std::this_thread::sleep_for(std::chrono::milliseconds(25));
        pid_ = -1;
    }
    int port() const { return port_; }
    std::string host() const { return "127.0.0.1:" + std::to_string(port_); }
    std::string log() const { return read_text_file(log_); }

private:
    pid_t pid_ = -1;
    int port_ = 0;
    std::string log_;
};

// A scripted HTTP/1.1 server on a free loopback port, one connection at a time, for answers a
// real daemon does not give. The handler gets the method, path, headers and body and returns
// the raw bytes to send; the connection closes after them (so a handler can cut a stream short).
class FakeDaemon {
public:
    using Handler = std::function<std::string(const std::string& method, const std::string& path,
                                              const std::string& headers, const std::string& body)>;
    explicit FakeDaemon(Handler h) : handler_(std::move(h)) {
        fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
        int one = 1;
        ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof a;
        EXPECT_EQ(::bind(fd_, (sockaddr*)&a, sizeof a), 0);
        EXPECT_EQ(::getsockname(fd_, (sockaddr*)&a, &len), 0);
        port_ = ntohs(a.sin_port);
        EXPECT_EQ(::listen(fd_, 16), 0);
        thread_ = std::thread([this] { serve(); });
    }
    ~FakeDaemon() {
        stop_ = true;
        ::shutdown(fd_, SHUT_RDWR);
        ::close(fd_);
        thread_.join();
    }
    std::string host() const { return "127.0.0.1:" + std::to_string(port_); }

    static std::string json_reply(int status, const std::string& body) {
        return "HTTP/1.1 " + std::to_string(status) + " X\r\nContent-Type: application/json\r\nContent-Length: " +
               std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
    }
    // The start of a chunked NDJSON stream with these lines, not finished (no last chunk).
    static std::string cut_stream(const std::vector<std::string>& lines) {
        std::string out = "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n";
        for (const auto& l : lines) {
            char size[32];
            std::snprintf(size, sizeof size, "%zx\r\n", l.size() + 1);
            out += size + l + "\n\r\n";
        }
        return out;
    }

private:
    void serve() {
        while (!stop_) {
            const int c = ::accept(fd_, nullptr, nullptr);
            if (c < 0) return;
            std::string in;
            char buf[4096];
            size_t header_end = std::string::npos;
            size_t want = 0;
            for (;;) {
                const ssize_t n = ::recv(c, buf, sizeof buf, 0);
                if (n <= 0) break;
                in.append(buf, (size_t)n);
                if (header_end == std::string::npos && (header_end = in.find("\r\n\r\n")) != std::string::npos) {
                    const size_t cl = lower(in.substr(0, header_end)).find("content-length:");
                    want = cl == std::string::npos ? 0 : std::stoul(in.substr(cl + 15));
                }
                if (header_end != std::string::npos && in.size() >= header_end + 4 + want) break;
            }
            if (header_end != std::string::npos) {
                const std::string head = in.substr(0, header_end);
                const size_t sp1 = head.find(' '), sp2 = head.find(' ', sp1 + 1);
                const std::string reply =
                    handler_(head.substr(0, sp1), head.substr(sp1 + 1, sp2 - sp1 - 1), head, in.substr(header_end + 4));
                ::send(c, reply.data(), reply.size(), MSG_NOSIGNAL);
            }
            ::shutdown(c, SHUT_RDWR);
            ::close(c);
        }
    }
    static std::string lower(std::string s) {
        for (auto& ch : s) ch = (char)std::tolower((unsigned char)ch);
        return s;
    }

    Handler handler_;
    int fd_ = -1;
    int port_ = 0;
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

// `hearth ARGS...` on a pseudo-terminal (its standard input, output and error), as a person at
// a terminal runs it. Echo is off, so the output is only what hearth writes. Only
// posix_openpt and friends: no -lutil.
class Pty {
public:
    Pty(const std::vector<std::string>& args, const std::vector<std::string>& env) {
        master_ = ::posix_openpt(O_RDWR | O_NOCTTY);
        EXPECT_GE(master_, 0);
        EXPECT_EQ(::grantpt(master_), 0);
        EXPECT_EQ(::unlockpt(master_), 0);
        const std::string slave = ::ptsname(master_);
        pid_ = ::fork();
        if (pid_ == 0) {
            ::setsid();  // a new session: the terminal opened next becomes its controlling one
            const int s = ::open(slave.c_str(), O_RDWR);
            if (s < 0) ::_exit(97);
            termios t{};
            ::tcgetattr(s, &t);
            t.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
            ::tcsetattr(s, TCSANOW, &t);
            ::dup2(s, 0);
            ::dup2(s, 1);
            ::dup2(s, 2);
            if (s > 2) ::close(s);
            ::close(master_);
            for (const auto& e : env) ::putenv(const_cast<char*>(e.c_str()));
            std::vector<char*> argv{const_cast<char*>(HEARTH_BINARY)};
            for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
            argv.push_back(nullptr);
            ::execv(HEARTH_BINARY, argv.data());
            ::_exit(98);
        }
    }
    ~Pty() {
        if (pid_ > 0 && exit_code_ == -2) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, nullptr, 0);
        }
        if (master_ >= 0) ::close(master_);
    }

    void type(const std::string& text) { EXPECT_EQ(::write(master_, text.data(), text.size()), (ssize_t)text.size()); }

    // Reads until `what` appears in the output after `from` (a position in output()); true when
    // it did within `seconds`.
    bool wait_for(const std::string& what, size_t from = 0, double seconds = 20) {
        const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
        for (;;) {
            if (out_.find(what, from) != std::string::npos) return true;
            if (eof_ || std::chrono::steady_clock::now() > end) return false;
            read_some(50);
        }
    }
    // Waits until the output holds at least `n` bytes.
    bool wait_size(size_t n, double seconds = 20) {
        const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
        while (out_.size() < n) {
            if (eof_ || std::chrono::steady_clock::now() > end) return false;
            read_some(50);
        }
        return true;
    }
    // Waits for `n` prompts (">>> ") in all.
    bool wait_prompts(size_t n, double seconds = 20) {
        const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
        while (count(">>> ") < n) {
            if (std::chrono::steady_clock::now() > end || eof_) return false;
            read_some(50);
        }
        return true;
    }
    size_t count(const std::string& what) const {
        size_t n = 0;
        for (size_t p = 0; (p = out_.find(what, p)) != std::string::npos; p += what.size()) ++n;
        return n;
    }
    // The exit status once the process ends (reading what is left), -1 on timeout or a signal.
    int wait_exit(double seconds = 20) {
        const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
        int status = 0;
        while (std::chrono::steady_clock::now() < end) {
            read_some(20);
            if (::waitpid(pid_, &status, WNOHANG) == pid_) {
                while (read_some(20)) {
                }
                exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
                return exit_code_;
            }
        }
        return -1;
    }
    const std::string& output() const { return out_; }

private:
    // One read, waiting up to `ms`; false when nothing came.
    bool read_some(int ms) {
        pollfd p{master_, POLLIN, 0};
        if (::poll(&p, 1, ms) <= 0) return false;
        char buf[4096];
        const ssize_t n = ::read(master_, buf, sizeof buf);
        if (n <= 0) {
            eof_ = true;  // EIO once the last process on the terminal has gone
            return false;
        }
        out_.append(buf, (size_t)n);
        return true;
    }

    int master_ = -1;
    pid_t pid_ = -1;
    int exit_code_ = -2;  // -2: still running (or not waited for)
    bool eof_ = false;
    std::string out_;
};

}  // namespace hearth::test
