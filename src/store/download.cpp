#include "store/download.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <thread>

#include "base/file_writer.h"
#include "base/sha256.h"

namespace hearth::store {
namespace fs = std::filesystem;
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

void init_curl() {
    static std::once_flag once;
    std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

bool is_hex64(std::string_view s) {
    return s.size() == 64 &&
           std::all_of(s.begin(), s.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

std::string lower(std::string s) {
    for (auto& c : s) c = (char)std::tolower((unsigned char)c);
    return s;
}

// ---- one GET ----

struct GetRequest {
    std::string url;
    std::vector<std::string> headers;
    int64_t range_start = -1, range_end = -1;  // inclusive byte range; -1: the whole body
    bool compressed = false;                   // accept gzip etc. (texts; never ranges)
    const TransferOptions* opts = nullptr;
    std::function<bool()> stop;                // polled every 50 ms
    // The body of a 2xx answer in order, from range_start on (bytes before it, from a server
    // that ignored the Range, are skipped here). Returning false ends the transfer: enough
    // bytes, or a local write error the caller has noted.
    std::function<bool(const char*, size_t)> on_body;
};

struct Attempt {
    std::string url;
    CURLcode curl = CURLE_OK;
    long http_status = 0;
    bool stalled = false, cancelled = false;
    bool sink_stopped = false;   // on_body returned false
    bool bad_range = false;      // a 206 for another range than the one asked for
    std::string curl_error;
    std::string error_body;      // the start of a non-2xx body
    int64_t body_bytes = 0;      // bytes handed to on_body
};

struct GetContext {
    const GetRequest* req;
    Attempt* out;
    CURL* easy;
    Clock::time_point last_data;
    int64_t content_range_start = -1;  // of the current response
    bool status_checked = false;
    bool is_ok = false;
    int64_t skip = 0;
};

size_t on_header(char* data, size_t size, size_t n, void* user) {
    auto* ctx = static_cast<GetContext*>(user);
    const std::string line(data, size * n);
    ctx->last_data = Clock::now();
    if (line.rfind("HTTP/", 0) == 0) {  // a new response (after a redirect or a 100)
        ctx->content_range_start = -1;
        ctx->status_checked = false;
    } else if (lower(line.substr(0, 14)) == "content-range:") {
        const size_t b = line.find("bytes");
        if (b != std::string::npos) ctx->content_range_start = std::strtoll(line.c_str() + b + 5, nullptr, 10);
    }
    return size * n;
}

size_t on_write(char* data, size_t size, size_t n, void* user) {
    auto* ctx = static_cast<GetContext*>(user);
    const size_t len = size * n;
    ctx->last_data = Clock::now();
    if (!ctx->status_checked) {
        ctx->status_checked = true;
        long code = 0;
        curl_easy_getinfo(ctx->easy, CURLINFO_RESPONSE_CODE, &code);
        ctx->out->http_status = code;
        ctx->is_ok = code >= 200 && code < 300;
        ctx->skip = 0;
        const int64_t start = ctx->req->range_start;
        if (ctx->is_ok && start > 0) {
            if (code == 206) {
                if (ctx->content_range_start != start) {
                    ctx->out->bad_range = true;
                    return 0;
                }
            } else {
                ctx->skip = start;  // the whole body came: drop what precedes the range
            }
        }
    }
    if (!ctx->is_ok) {
        if (ctx->out->error_body.size() < 4096) ctx->out->error_body.append(data, std::min<size_t>(len, 4096));
        return len;
    }
    size_t off = 0;
    if (ctx->skip > 0) {
        off = (size_t)std::min<int64_t>(ctx->skip, (int64_t)len);
        ctx->skip -= (int64_t)off;
        if (off == len) return len;
    }
    ctx->out->body_bytes += (int64_t)(len - off);
    if (!ctx->req->on_body(data + off, len - off)) {
        ctx->out->sink_stopped = true;
        return 0;
    }
    return len;
}

Attempt http_get(const GetRequest& req) {
    Attempt a;
    a.url = req.url;
    CURL* e = curl_easy_init();
    if (!e) {
        a.curl = CURLE_FAILED_INIT;
        a.curl_error = "curl_easy_init failed";
        return a;
    }
    char errbuf[CURL_ERROR_SIZE] = {0};
    GetContext ctx{&req, &a, e, Clock::now()};
    curl_slist* headers = nullptr;
    for (const auto& h : req.headers) headers = curl_slist_append(headers, h.c_str());
    const TransferOptions& o = *req.opts;
    // https only, across redirects too, unless plain http is allowed or the source itself is
    // http:// (a mirror or endpoint the user wrote down that way).
    const bool http_ok = o.allow_http || req.url.rfind("http://", 0) == 0;
    curl_easy_setopt(e, CURLOPT_URL, req.url.c_str());
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, http_ok ? "http,https" : "https");
    curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, http_ok ? "http,https" : "https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(e, CURLOPT_MAXREDIRS, 10L);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)o.connect_timeout.count());
    curl_easy_setopt(e, CURLOPT_USERAGENT, "hearth (" LIBCURL_VERSION ")");
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, &ctx);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &ctx);
    if (req.compressed) curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
    std::string range;
    if (req.range_start >= 0) {
        range = std::to_string(req.range_start) + "-" + (req.range_end >= 0 ? std::to_string(req.range_end) : "");
        curl_easy_setopt(e, CURLOPT_RANGE, range.c_str());
    }
    // Proxies: nothing here sets CURLOPT_PROXY or CURLOPT_NOPROXY, so libcurl takes them from
    // http_proxy / https_proxy / all_proxy / no_proxy.

    CURLM* m = curl_multi_init();
    curl_multi_add_handle(m, e);
    int running = 1;
    for (;;) {
        curl_multi_perform(m, &running);
        if (!running) break;
        curl_multi_poll(m, nullptr, 0, 50, nullptr);
        if (req.stop && req.stop()) {
            a.cancelled = true;
            break;
        }
        if (Clock::now() - ctx.last_data > o.stall_timeout) {
            a.stalled = true;
            break;
        }
    }
    if (!running) {
        int left = 0;
        while (CURLMsg* msg = curl_multi_info_read(m, &left))
            if (msg->msg == CURLMSG_DONE) a.curl = msg->data.result;
        long code = 0;
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
        if (code) a.http_status = code;
    }
    a.curl_error = errbuf[0] ? errbuf : curl_easy_strerror(a.curl);
    curl_multi_remove_handle(m, e);
    curl_easy_cleanup(e);
    curl_multi_cleanup(m);
    curl_slist_free_all(headers);
    return a;
}

enum class Outcome { ok, transient, permanent, cancelled };

Outcome classify(const Attempt& a) {
    if (a.cancelled) return Outcome::cancelled;
    if (a.stalled || a.bad_range) return Outcome::transient;
    if (a.sink_stopped) return Outcome::ok;
    switch (a.curl) {
    case CURLE_OK: break;
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
    case CURLE_TOO_MANY_REDIRECTS:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CACERT_BADFILE: return Outcome::permanent;
    default: return Outcome::transient;  // refused, reset, timed out, cut short, DNS
    }
    const long s = a.http_status;
    if (s >= 200 && s < 300) return Outcome::ok;
    if (s == 408 || s == 429 || s >= 500) return Outcome::transient;
    return Outcome::permanent;
}

// What went wrong, for messages: "http://h/p: HTTP 503", "http://h/p: stalled (no data for 2.0 s)".
std::string describe(const Attempt& a, const TransferOptions& o) {
    std::string why;
    if (a.stalled) {
        why = strformat("stalled (no data for %.1f s)", (double)o.stall_timeout.count() / 1000.0);
    } else if (a.bad_range) {
        why = "answered another byte range than the one asked for";
    } else if (a.curl == CURLE_UNSUPPORTED_PROTOCOL && a.url.rfind("http://", 0) != 0) {
        why = "refused to leave https (" + a.curl_error + "); plain http needs --insecure";
    } else if (a.curl != CURLE_OK) {
        why = a.curl_error;
        if (a.curl == CURLE_SSL_CONNECT_ERROR && !o.allow_http) why += " (a plain-http registry? pull with --insecure)";
    } else {
        why = strformat("HTTP %ld", a.http_status);
        // Registries answer {"errors":[{"message"}]}, the Hub {"error": "..."}.
        auto j = nlohmann::json::parse(a.error_body, nullptr, false);
        std::string msg;
        if (j.is_object()) {
            if (j.contains("error") && j["error"].is_string()) msg = j["error"].get<std::string>();
            else if (j.contains("errors") && j["errors"].is_array() && !j["errors"].empty() &&
                     j["errors"][0].is_object() && j["errors"][0].contains("message") &&
                     j["errors"][0]["message"].is_string())
                msg = j["errors"][0]["message"].get<std::string>();
        }
        if (!msg.empty()) why += ": " + msg;
    }
    return a.url + ": " + why;
}

milliseconds backoff(const TransferOptions& o, int failures) {
    int64_t ms = o.backoff_first.count();
    for (int i = 1; i < failures && ms < o.backoff_max.count(); ++i) ms *= 2;
    return milliseconds(std::min<int64_t>(ms, o.backoff_max.count()));
}

// Sleeps `d`, waking early (false) when `stop` says so.
bool sleep_for(milliseconds d, const std::function<bool()>& stop) {
    const auto end = Clock::now() + d;
    while (Clock::now() < end) {
        if (stop && stop()) return false;
        std::this_thread::sleep_for(std::min<Clock::duration>(milliseconds(20), end - Clock::now()));
    }
    return !(stop && stop());
}

std::vector<std::string> with_source_headers(const Source& s, const std::vector<std::string>& extra) {
    std::vector<std::string> h = s.headers;
    h.insert(h.end(), extra.begin(), extra.end());
    return h;
}

// Walks the sources for one transfer: which one is next, who is out, and when to back off.
class SourceCycle {
public:
    // `excluded`: sources already known to serve bad bytes for this transfer (empty: none).
    SourceCycle(const std::vector<Source>& sources, const std::vector<bool>& excluded, const TransferOptions& opts)
        : sources_(sources), opts_(opts), dead_(sources.size(), false), why_(sources.size()) {
        for (size_t i = 0; i < excluded.size() && i < dead_.size(); ++i) dead_[i] = excluded[i];
        while (cur_ + 1 < dead_.size() && dead_[cur_]) ++cur_;
    }

    size_t current() const { return cur_; }
    bool all_dead() const { return std::all_of(dead_.begin(), dead_.end(), [](bool d) { return d; }); }
    int failures() const { return failures_; }

    // Records an attempt that did not finish; false when the transfer should give up (every
    // source out, or too many transient failures in a row). `progressed`: it moved bytes.
    bool failed(Outcome o, const std::string& why, bool progressed, const std::function<bool()>& stop) {
        why_[cur_] = why;
        if (progressed) failures_ = 0;
        if (o == Outcome::permanent) {
            dead_[cur_] = true;
        } else {
            ++failures_;
            if (failures_ >= opts_.max_failures) return false;
        }
        if (all_dead()) return false;
        const size_t before = cur_;
        do {
            cur_ = (cur_ + 1) % sources_.size();
        } while (dead_[cur_]);
        // Back to a source tried in this round: every source has failed once, so wait.
        if (cur_ <= before && o != Outcome::permanent) sleep_for(backoff(opts_, failures_), stop);
        return true;
    }

    // "a: why; b: why", every source that failed.
    std::string reasons() const {
        std::string out;
        for (const auto& w : why_)
            if (!w.empty()) out += (out.empty() ? "" : "; ") + w;
        return out;
    }
    bool only_not_found() const {
        bool any = false;
        for (const auto& w : why_) {
            if (w.empty()) continue;
            if (w.find(": HTTP 404") == std::string::npos) return false;
            any = true;
        }
        return any;
    }

private:
    const std::vector<Source>& sources_;
    const TransferOptions& opts_;
    std::vector<bool> dead_;
    std::vector<std::string> why_;
    size_t cur_ = 0;
    int failures_ = 0;  // transient failures in a row
};

// ---- blobs ----

struct Part {
    int n = 0;
    int64_t offset = 0, size = 0;
    std::atomic<int64_t> completed{0};
    std::mutex save_mu;          // one state write at a time for this part
    int64_t saved = -1;          // under save_mu: Completed in the state file
    Clock::time_point saved_at;  // under save_mu
    Status status;               // set by its thread when it ends; read after the join
};

struct BlobJob {
    std::string digest, final_path, partial_path;
    int64_t size = 0;
    int fd = -1;  // the partial data file, flocked
    std::vector<std::unique_ptr<Part>> parts;
    std::atomic<int64_t> completed{0};
    std::atomic<bool> stop{false};
    std::mutex mu;
    std::set<size_t> contributors;  // under mu: sources that delivered bytes this round
};

std::string part_path(const BlobJob& job, int n) { return job.partial_path + "-" + std::to_string(n); }

// Syncs the data and writes part p's state ({"N","Offset","Size","Completed"}, Ollama's).
Status save_part(BlobJob& job, Part& p) {
    std::lock_guard lk(p.save_mu);
    const int64_t done = p.completed.load();
    if (done == p.saved) return {};
    if (::fdatasync(job.fd) != 0)
        return error(StatusCode::io_error, job.partial_path + ": fdatasync: " + std::strerror(errno));
    const std::string text =
        nlohmann::json{{"N", p.n}, {"Offset", p.offset}, {"Size", p.size}, {"Completed", done}}.dump();
    HEARTH_ASSIGN(AtomicFileWriter w, AtomicFileWriter::create(part_path(job, p.n)));
    HEARTH_TRY(w.write(std::as_bytes(std::span(text.data(), text.size()))));
    HEARTH_TRY(w.commit());
    p.saved = done;
    p.saved_at = Clock::now();
    return {};
}

void remove_part_files(const std::string& partial_path) {
    std::error_code ec;
    const fs::path dir = fs::path(partial_path).parent_path();
    const std::string prefix = fs::path(partial_path).filename().string() + "-";
    for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
        const std::string name = it->path().filename().string();
        if (name.rfind(prefix, 0) == 0) fs::remove(it->path(), ec);
    }
}

// The part states left by an earlier attempt, when they tile [0, size) and the data file has
// the blob's size; empty otherwise (start over).
std::vector<std::unique_ptr<Part>> load_parts(const BlobJob& job) {
    std::vector<std::unique_ptr<Part>> parts;
    struct stat st{};
    if (::fstat(job.fd, &st) != 0 || st.st_size != job.size) return parts;
    for (int n = 0;; ++n) {
        std::ifstream f(part_path(job, n));
        if (!f) break;
        std::stringstream ss;
        ss << f.rdbuf();
        auto j = nlohmann::json::parse(ss.str(), nullptr, false);
        if (!j.is_object()) return {};
        auto p = std::make_unique<Part>();
        p->n = n;
        try {
            p->offset = j.at("Offset").get<int64_t>();
            p->size = j.at("Size").get<int64_t>();
            p->completed = j.at("Completed").get<int64_t>();
        } catch (const std::exception&) {
            return {};
        }
        p->saved = p->completed;
        parts.push_back(std::move(p));
    }
    int64_t next = 0;
    for (const auto& p : parts) {
        if (p->offset != next || p->size < 0 || p->completed < 0 || p->completed > p->size) return {};
        next += p->size;
    }
    if (next != job.size || (parts.empty() && job.size > 0)) return {};
    return parts;
}

Status fresh_parts(BlobJob& job, const TransferOptions& o) {
    remove_part_files(job.partial_path);
    if (::ftruncate(job.fd, 0) != 0 || ::ftruncate(job.fd, job.size) != 0)
        return error(StatusCode::io_error, job.partial_path + ": cannot size the file: " + std::strerror(errno));
    if (job.size > 0) {
        // Claim the disk now, so a full disk fails here and not hours in.
        const int err = ::posix_fallocate(job.fd, 0, job.size);
        if (err == ENOSPC)
            return error(StatusCode::io_error,
                         strformat("%s: no space left for %lld bytes", job.partial_path.c_str(), (long long)job.size));
    }
    const int n = job.size >= o.parallel_min_bytes && o.n_parts > 1 ? o.n_parts : 1;
    const int64_t each = job.size / n;
    job.parts.clear();
    for (int i = 0; i < n; ++i) {
        auto p = std::make_unique<Part>();
        p->n = i;
        p->offset = each * i;
        p->size = i == n - 1 ? job.size - p->offset : each;
        job.parts.push_back(std::move(p));
    }
    for (auto& p : job.parts) HEARTH_TRY(save_part(job, *p));
    return {};
}

// Downloads part p, trying the sources in order (the excluded ones never); its Status says how
// it ended.
void run_part(BlobJob& job, Part& p, const std::vector<Source>& sources, const std::string& path,
              const std::vector<bool>& excluded, const TransferOptions& o) {
    SourceCycle cycle(sources, excluded, o);
    auto stop = [&job] { return job.stop.load(); };
    Status io;  // a local write error
    while (p.completed < p.size) {
        if (job.stop) {
            p.status = error(StatusCode::io_error, "cancelled");
            return;
        }
        const Source& src = sources[cycle.current()];
        GetRequest req;
        req.url = src.base_url + path;
        req.headers = src.headers;
        req.range_start = p.offset + p.completed;
        req.range_end = p.offset + p.size - 1;
        req.opts = &o;
        req.stop = stop;
        req.on_body = [&](const char* data, size_t len) {
            const int64_t room = p.size - p.completed;
            const size_t n = (size_t)std::min<int64_t>(room, (int64_t)len);
            for (size_t off = 0; off < n;) {
                const ssize_t w = ::pwrite(job.fd, data + off, n - off, p.offset + p.completed);
                if (w < 0) {
                    if (errno == EINTR) continue;
                    io = error(StatusCode::io_error, job.partial_path + ": write: " + std::strerror(errno));
                    return false;
                }
                off += (size_t)w;
                p.completed += w;
                job.completed += w;
            }
            bool due;
            {
                std::lock_guard lk(p.save_mu);
                due = Clock::now() - p.saved_at > std::chrono::seconds(1);
            }
            if (due) {
                if (Status s = save_part(job, p); !s.ok()) {
                    io = s;
                    return false;
                }
            }
            return p.completed < p.size;
        };
        const int64_t before = p.completed;
        const Attempt a = http_get(req);
        if (p.completed > before) {
            std::lock_guard lk(job.mu);
            job.contributors.insert(cycle.current());
        }
        if (!io.ok()) {
            p.status = io;
            return;
        }
        if (p.completed >= p.size) break;
        Outcome out = classify(a);
        if (out == Outcome::cancelled) continue;  // the loop head reports it
        if (out == Outcome::ok) {
            // A 2xx whose body ended before the part did: a short answer, retried as a drop.
            out = Outcome::transient;
        }
        std::string why = describe(a, o);
        if (a.curl == CURLE_OK && a.http_status == 416)
            why += strformat(" (the source has fewer than the %lld bytes the manifest promises)", (long long)job.size);
        if (!cycle.failed(out, why, p.completed > before, stop)) {
            if (job.stop) continue;
            if (cycle.only_not_found())
                p.status = error(StatusCode::not_found, "blob " + job.digest + " not found: " + cycle.reasons());
            else
                p.status = error(StatusCode::io_error,
                                 strformat("downloading %s failed after %d attempts in a row: %s", job.digest.c_str(),
                                           std::max(cycle.failures(), 1), cycle.reasons().c_str()));
            return;
        }
    }
    p.status = save_part(job, p);
}

// Takes the flock on the partial data file (creating it), waiting while another downloader
// holds it. The fd, or -1 with `st` set; `waiting` is called while it waits.
int lock_partial(const std::string& partial, const TransferOptions& o, Status& st) {
    for (;;) {
        const int fd = ::open(partial.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) {
            st = error(StatusCode::io_error, partial + ": cannot open: " + std::strerror(errno));
            return -1;
        }
        if (::flock(fd, LOCK_EX | LOCK_NB) == 0) {
            // The file may have been renamed into place or removed while we waited: then lock
            // the file that is at the path now.
            struct stat a{}, b{};
            if (::fstat(fd, &a) == 0 && ::stat(partial.c_str(), &b) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev)
                return fd;
            ::close(fd);
            continue;
        }
        ::close(fd);
        if (errno != EWOULDBLOCK && errno != EINTR) {
            st = error(StatusCode::io_error, partial + ": cannot lock: " + std::strerror(errno));
            return -1;
        }
        if (!sleep_for(milliseconds(100), o.cancelled)) {
            st = error(StatusCode::io_error, "cancelled");
            return -1;
        }
    }
}

Status sync_dir(const std::string& dir) {
    const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return error(StatusCode::io_error, dir + ": cannot open: " + std::strerror(errno));
    const int r = ::fsync(fd);
    const int err = errno;
    ::close(fd);
    if (r != 0) return error(StatusCode::io_error, dir + ": fsync: " + std::strerror(err));
    return {};
}

class RateMeter {
public:
    void add(int64_t bytes) {
        const auto now = Clock::now();
        samples_.push_back({now, bytes});
        while (samples_.size() > 2 && now - samples_.front().first > std::chrono::seconds(5)) samples_.pop_front();
    }
    double rate() const {
        if (samples_.size() < 2) return 0;
        const double dt = std::chrono::duration<double>(samples_.back().first - samples_.front().first).count();
        if (dt < 0.2) return 0;
        return (double)(samples_.back().second - samples_.front().second) / dt;
    }

private:
    std::deque<std::pair<Clock::time_point, int64_t>> samples_;
};

}  // namespace

Result<std::string> fetch_text(const std::vector<Source>& sources, const std::string& path,
                               const std::vector<std::string>& headers, const TransferOptions& opts, int64_t max_bytes) {
    init_curl();
    if (sources.empty()) return error(StatusCode::invalid_argument, "no source to fetch " + path + " from");
    SourceCycle cycle(sources, {}, opts);
    for (;;) {
        if (opts.cancelled && opts.cancelled()) return error(StatusCode::io_error, "cancelled");
        const size_t i = cycle.current();
        std::string body;
        GetRequest req;
        req.url = sources[i].base_url + path;
        req.headers = with_source_headers(sources[i], headers);
        req.compressed = true;
        req.opts = &opts;
        req.stop = opts.cancelled;
        bool too_big = false;
        req.on_body = [&](const char* data, size_t len) {
            if ((int64_t)(body.size() + len) > max_bytes) {
                too_big = true;
                return false;
            }
            body.append(data, len);
            return true;
        };
        const Attempt a = http_get(req);
        if (too_big)
            return error(StatusCode::corrupt, strformat("%s: the answer is larger than %lld bytes", req.url.c_str(),
                                                        (long long)max_bytes));
        const Outcome out = classify(a);
        if (out == Outcome::ok) return body;
        if (out == Outcome::cancelled) continue;
        const std::string why = describe(a, opts);
        if (i == 0 && a.curl == CURLE_OK && a.http_status == 404) return error(StatusCode::not_found, why);
        if (!cycle.failed(out, why, false, opts.cancelled)) {
            if (opts.cancelled && opts.cancelled()) continue;
            const long s = a.http_status;
            const StatusCode code = cycle.all_dead() && (s == 401 || s == 403) ? StatusCode::invalid_argument
                                    : cycle.only_not_found()                   ? StatusCode::not_found
                                                                               : StatusCode::io_error;
            return error(code, cycle.reasons());
        }
    }
}

Result<std::string> fetch_range(const std::vector<Source>& sources, const std::string& path, int64_t start,
                                int64_t length, const TransferOptions& opts, bool* ranged) {
    init_curl();
    if (sources.empty()) return error(StatusCode::invalid_argument, "no source to fetch " + path + " from");
    if (start < 0 || length <= 0) return error(StatusCode::invalid_argument, "fetch_range: bad byte range");
    SourceCycle cycle(sources, {}, opts);
    for (;;) {
        if (opts.cancelled && opts.cancelled()) return error(StatusCode::io_error, "cancelled");
        const size_t i = cycle.current();
        std::string body;
        GetRequest req;
        req.url = sources[i].base_url + path;
        req.headers = sources[i].headers;
        req.range_start = start;
        req.range_end = start + length - 1;
        req.opts = &opts;
        req.stop = opts.cancelled;
        req.on_body = [&](const char* data, size_t len) {
            const size_t room = (size_t)length - body.size();
            body.append(data, std::min(room, len));
            return body.size() < (size_t)length;  // a server that sends more than asked is cut off
        };
        const Attempt a = http_get(req);
        const Outcome out = classify(a);
        if (out == Outcome::ok) {
            if (ranged) *ranged = a.http_status == 206;
            return body;
        }
        if (out == Outcome::cancelled) continue;
        const std::string why = describe(a, opts);
        if (i == 0 && a.curl == CURLE_OK && a.http_status == 404) return error(StatusCode::not_found, why);
        if (!cycle.failed(out, why, !body.empty(), opts.cancelled)) {
            if (opts.cancelled && opts.cancelled()) continue;
            return error(cycle.only_not_found() ? StatusCode::not_found : StatusCode::io_error, cycle.reasons());
        }
    }
}

Status download_blob(const std::string& blobs_dir, const std::string& digest, int64_t size,
                     const std::vector<Source>& sources, const std::string& path, const TransferOptions& opts,
                     const ProgressFn& progress) {
    init_curl();
    if (digest.rfind("sha256:", 0) != 0 || !is_hex64(std::string_view(digest).substr(7)))
        return error(StatusCode::invalid_argument, "malformed blob digest \"" + digest + "\"");
    if (size < 0) return error(StatusCode::invalid_argument, "blob " + digest + ": negative size");
    if (sources.empty()) return error(StatusCode::invalid_argument, "no source to download " + digest + " from");
    std::error_code ec;
    fs::create_directories(blobs_dir, ec);
    if (ec) return error(StatusCode::io_error, blobs_dir + ": cannot create: " + ec.message());

    BlobJob job;
    job.digest = digest;
    job.size = size;
    job.final_path = blobs_dir + "/sha256-" + digest.substr(7);
    job.partial_path = job.final_path + "-partial";
    auto report = [&](int64_t done, const RateMeter* meter) {
        if (!progress) return;
        TransferProgress tp;
        tp.completed = done;
        tp.total = size;
        tp.bytes_per_s = meter ? meter->rate() : 0;
        if (tp.bytes_per_s > 0) tp.eta_s = (double)(size - done) / tp.bytes_per_s;
        if (done == size) tp.eta_s = 0;
        progress(tp);
    };
    auto have_final = [&] {
        std::error_code e;
        return fs::is_regular_file(job.final_path, e) && (int64_t)fs::file_size(job.final_path, e) == size;
    };
    if (have_final()) {
        report(size, nullptr);
        return {};
    }

    std::vector<bool> excluded(sources.size(), false);  // served bytes that failed the digest
    Status mismatch;                                     // the last digest mismatch, if any
    for (int round = 0;; ++round) {
        Status st;
        job.fd = lock_partial(job.partial_path, opts, st);
        if (job.fd < 0) return st;
        struct FdCloser {
            int& fd;
            ~FdCloser() {
                if (fd >= 0) ::close(fd);  // drops the flock
                fd = -1;
            }
        } closer{job.fd};
        if (have_final()) {  // another downloader finished it while we waited
            ::unlink(job.partial_path.c_str());
            remove_part_files(job.partial_path);
            report(size, nullptr);
            return {};
        }
        // A blob of the wrong size in place is damaged: it goes, and is fetched again.
        if (fs::exists(job.final_path, ec)) fs::remove(job.final_path, ec);

        job.parts = load_parts(job);
        if (job.parts.empty()) HEARTH_TRY(fresh_parts(job, opts));
        job.completed = 0;
        for (const auto& p : job.parts) job.completed += p->completed;
        job.stop = false;
        job.contributors.clear();

        RateMeter meter;
        meter.add(job.completed);
        report(job.completed, &meter);
        std::vector<std::thread> threads;
        std::atomic<int> running{0};
        for (auto& p : job.parts) {
            if (p->completed >= p->size) continue;
            ++running;
            threads.emplace_back([&, part = p.get()] {
                run_part(job, *part, sources, path, excluded, opts);
                if (!part->status.ok()) job.stop = true;  // one part gave up: the blob has failed
                --running;
            });
        }
        auto last_report = Clock::now();
        while (running > 0) {
            std::this_thread::sleep_for(milliseconds(20));
            if (opts.cancelled && opts.cancelled()) job.stop = true;
            if (Clock::now() - last_report >= opts.progress_interval) {
                meter.add(job.completed);
                report(job.completed, &meter);
                last_report = Clock::now();
            }
        }
        for (auto& t : threads) t.join();
        Status failed;
        for (auto& p : job.parts) {
            (void)save_part(job, *p);  // keep what arrived for a resume
            if (!p->status.ok() && (failed.ok() || failed.message() == "cancelled")) failed = p->status;
        }
        if (!failed.ok()) {
            if (job.completed == 0) {  // nothing worth resuming
                ::unlink(job.partial_path.c_str());
                remove_part_files(job.partial_path);
            }
            if (failed.message() == "cancelled") return error(StatusCode::io_error, "pulling " + digest + " cancelled");
            if (!mismatch.ok())  // what went wrong first is what matters
                return error(StatusCode::corrupt, mismatch.message() + "; no other source could serve it: " + failed.message());
            return failed;
        }
        meter.add(job.completed);
        report(job.completed, &meter);

        // Every byte is here: verify before the blob becomes visible.
        auto got = sha256_file(job.partial_path);
        if (!got.ok()) return got.status();
        if ("sha256:" + *got != digest) {
            ::unlink(job.partial_path.c_str());
            remove_part_files(job.partial_path);
            // Bytes left by an earlier run: fetch them all again once. Otherwise the sources
            // that served this round are out, and the others (if any) get their turn.
            if (job.contributors.empty() && round == 0) continue;
            std::string from;
            for (size_t c : job.contributors) {
                excluded[c] = true;
                from += (from.empty() ? "" : ", ") + sources[c].base_url + path;
            }
            mismatch = error(StatusCode::corrupt, "digest mismatch, file must be downloaded again: want " + digest +
                                                      ", got sha256:" + *got + (from.empty() ? "" : " (from " + from + ")"));
            if (!job.contributors.empty() && !std::all_of(excluded.begin(), excluded.end(), [](bool x) { return x; }))
                continue;
            return mismatch;
        }
        if (::fsync(job.fd) != 0)
            return error(StatusCode::io_error, job.partial_path + ": fsync: " + std::strerror(errno));
        if (::rename(job.partial_path.c_str(), job.final_path.c_str()) != 0)
            return error(StatusCode::io_error, job.final_path + ": cannot rename into place: " + std::strerror(errno));
        remove_part_files(job.partial_path);
        HEARTH_TRY(sync_dir(blobs_dir));
        return {};
    }
}

}  // namespace hearth::store
