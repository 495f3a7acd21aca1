#include "store/pull.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "base/file_writer.h"
#include "store/store_lock.h"

namespace hearth::store {
namespace fs = std::filesystem;
namespace {


std::string read_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) return {};
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

std::set<std::string> digests_of(const Manifest& m) {
    std::set<std::string> d;
    if (!m.config.digest.empty()) d.insert(m.config.digest);
    for (const auto& l : m.layers) d.insert(l.digest);
    return d;
}

bool blob_ok(const Store& store, const Layer& l) {
    std::error_code ec;
    const std::string p = store.blob_path(l.digest);
    return !p.empty() && fs::is_regular_file(p, ec) && (int64_t)fs::file_size(p, ec) == l.size;
}

// Under the store lock: deletes the blobs in `candidates` that no manifest references.
void prune(const Store& store, std::set<std::string> candidates) {
    if (candidates.empty()) return;
    const fs::path base = fs::path(store.root()) / "manifests";
    std::error_code ec;
    for (auto it = fs::recursive_directory_iterator(base, ec); !ec && it != fs::recursive_directory_iterator();
         it.increment(ec)) {
        if (!it->is_regular_file(ec)) continue;
        auto m = Manifest::parse(read_file(it->path().string()));
        if (!m.ok()) continue;
        for (const auto& d : digests_of(*m)) candidates.erase(d);
    }
    for (const auto& d : candidates) store.delete_blob(d);
}

// ---- the fit before the download ----

// Sizes in status lines: "12.3 GiB" from 1 GiB up, else "300 MiB" (store/fit.cpp's verdicts).
std::string gib(int64_t bytes) {
    if (bytes >= (int64_t{1} << 30)) return strformat("%.1f GiB", (double)bytes / (double)(int64_t{1} << 30));
    return strformat("%.0f MiB", (double)bytes / (double)(1 << 20));
}

// How far a GGUF header reaches, from its first bytes: the header is walked (magic, version,
// counts, metadata, tensor infos) without building anything, so a blob that is not GGUF is told
// from its first bytes, and a header cut short says roughly how much more to fetch.
struct HeaderScan {
    enum class Kind { not_gguf, need_more, complete };
    Kind kind = Kind::need_more;
    uint64_t data_offset = 0;  // complete: where the tensor data starts (the header's end, aligned)
    uint64_t hint = 0;         // need_more: a guess of the header's size from what was read
    std::string why;           // not_gguf: what is wrong
};

class HeaderScanner {
public:
    explicit HeaderScanner(std::string_view b) : b_(b) {}

    HeaderScan scan() {
        HeaderScan out;
        uint32_t magic = 0, version = 0;
        uint64_t n_tensors = 0, n_kv = 0;
        if (!get(magic) || !get(version) || !get(n_tensors) || !get(n_kv)) {
            if (b_.size() >= 4 && b_.substr(0, 4) != "GGUF") return bad("no GGUF magic");
            return more(24);
        }
        if (b_.substr(0, 4) != "GGUF") return bad("no GGUF magic");
        if (version != 2 && version != 3) return bad(strformat("GGUF version %u", version));
        if (n_tensors > (1u << 24) || n_kv > (1u << 24)) return bad("implausible counts");
        uint64_t alignment = 32;
        const uint64_t kv_start = pos_;
        for (uint64_t i = 0; i < n_kv; ++i) {
            std::string_view key;
            uint32_t type = 0;
            uint64_t left = 0;
            const auto rest = [&] {  // the keys not read yet, and the tensor infos
                const uint64_t per_kv = i > 0 ? (pos_ - kv_start) / i : 64;
                return left + std::min<uint64_t>(per_kv, 4096) * (n_kv - i - 1) + 96 * n_tensors;
            };
            if (!string(key, 65535)) return failed_ ? bad("a metadata key is too long") : more(pos_ + 64 + rest());
            if (!get(type)) return more(pos_ + 64 + rest());
            if (key == "general.alignment" && type == 4) {  // u32
                uint32_t a = 0;
                if (!get(a)) return more(pos_ + 64 + rest());
                if (a == 0 || (a & (a - 1)) != 0 || a > (1u << 20)) return bad("bad general.alignment");
                alignment = a;
                continue;
            }
            if (!skip_value(type, 0, left)) return failed_ ? bad(why_) : more(pos_ + rest());
        }
        const uint64_t infos_start = pos_;
        for (uint64_t t = 0; t < n_tensors; ++t) {
            const auto rest = [&] {
                const uint64_t per = t > 0 ? (pos_ - infos_start) / t : 96;
                return per * (n_tensors - t) + per * (n_tensors - t) / 4;
            };
            std::string_view name;
            uint32_t n_dims = 0, type = 0;
            uint64_t offset = 0;
            if (!string(name, 65535)) return failed_ ? bad("a tensor name is too long") : more(pos_ + rest());
            if (!get(n_dims)) return more(pos_ + rest());
            if (n_dims < 1 || n_dims > 8) return bad("a tensor of implausible rank");
            if (!skip(8ull * n_dims) || !get(type) || !get(offset)) return more(pos_ + rest());
        }
        out.kind = HeaderScan::Kind::complete;
        out.data_offset = (pos_ + alignment - 1) / alignment * alignment;
        return out;
    }

private:
    static uint64_t fixed_size(uint32_t type) {
        switch (type) {
        case 0: case 1: case 7: return 1;   // u8, i8, bool
        case 2: case 3: return 2;           // u16, i16
        case 4: case 5: case 6: return 4;   // u32, i32, f32
        case 10: case 11: case 12: return 8;  // u64, i64, f64
        default: return 0;                  // string (8), array (9), unknown
        }
    }
    bool has(uint64_t n) const { return pos_ <= b_.size() && b_.size() - pos_ >= n; }
    bool skip(uint64_t n) {
        if (!has(n)) return false;
        pos_ += n;
        return true;
    }
    template <class T>
    bool get(T& v) {
        if (!has(sizeof(T))) return false;
        std::memcpy(&v, b_.data() + pos_, sizeof(T));
        pos_ += sizeof(T);
        return true;
    }
    // A length-prefixed string of at most max_len bytes; false (failed_ set) for a longer one,
    // false for one that ends past the bytes.
    bool string(std::string_view& s, uint64_t max_len) {
        const uint64_t at = pos_;
        uint64_t len = 0;
        if (!get(len)) return false;
        if (len > max_len) {
            failed_ = true;
            return false;
        }
        if (!has(len)) {
            pos_ = at;
            return false;
        }
        s = b_.substr(pos_, len);
        pos_ += len;
        return true;
    }
    // One value; false when the bytes end first (`left`: a guess of the bytes it still needs) or
    // it is malformed (failed_, why_).
    bool skip_value(uint32_t type, int depth, uint64_t& left) {
        if (const uint64_t n = fixed_size(type)) {
            left = n;
            return skip(n);
        }
        if (type == 8) {  // string
            uint64_t len = 0;
            if (!get(len)) return (left = 8, false);
            if (len > (1ull << 30)) return fail("a string value is too long");
            left = len;
            return skip(len);
        }
        if (type != 9) return fail(strformat("unknown metadata value type %u", type));
        if (depth >= 8) return fail("arrays nested too deeply");
        uint32_t elem = 0;
        uint64_t n = 0;
        if (!get(elem) || !get(n)) return (left = 12, false);
        if (n > (1ull << 32)) return fail("an array is too long");
        if (const uint64_t size = fixed_size(elem)) {
            left = n * size;
            return skip(n * size);
        }
        if (elem != 8 && elem != 9) return fail(strformat("unknown array element type %u", elem));
        const uint64_t elems_start = pos_;
        for (uint64_t k = 0; k < n; ++k) {
            uint64_t inner = 0;
            if (!skip_value(elem, depth + 1, inner)) {
                if (failed_) return false;
                // The vocabulary is the bulk of a header: guess its rest from the strings read.
                const uint64_t avg = k > 0 ? (pos_ - elems_start) / k : 16;
                left = inner + avg * (n - k) + avg * (n - k) / 4;
                return false;
            }
        }
        return true;
    }
    bool fail(std::string why) {
        failed_ = true;
        why_ = std::move(why);
        return false;
    }
    HeaderScan bad(std::string why) {
        HeaderScan s;
        s.kind = HeaderScan::Kind::not_gguf;
        s.why = std::move(why);
        return s;
    }
    static HeaderScan more(uint64_t hint) {
        HeaderScan s;
        s.hint = hint;
        return s;
    }

    std::string_view b_;
    uint64_t pos_ = 0;
    bool failed_ = false;
    std::string why_;
};

// How many of a blob's first bytes its partial download holds: bytes [0, Completed) of part 0
// are on disk (synced before its state said so). 0 when there is no partial download.
int64_t partial_prefix(const std::string& blob) {
    auto state = nlohmann::json::parse(read_file(blob + "-partial-0"), nullptr, false);
    if (!state.is_object() || !state.contains("Offset") || !state.contains("Completed") ||
        !state["Offset"].is_number_integer() || !state["Completed"].is_number_integer() ||
        state["Offset"].get<int64_t>() != 0)
        return 0;
    return std::max<int64_t>(0, state["Completed"].get<int64_t>());
}

// Bytes [from, to) of a file; fewer when it is shorter or unreadable.
std::string read_range(const std::string& path, int64_t from, int64_t to) {
    std::ifstream f(path, std::ios::binary);
    if (!f || to <= from) return {};
    f.seekg(from);
    std::string out((size_t)(to - from), '\0');
    f.read(out.data(), (std::streamsize)out.size());
    out.resize((size_t)std::max<std::streamsize>(0, f.gcount()));
    return out;
}

// The fit report of `m`'s weights, from their GGUF header (see pull.h). `transfer` is the
// pull's (cancellation included).
Result<FitReport> fit_weights(const Store& store, const RemoteModel& m, const PullOptions& opts,
                              const TransferOptions& transfer) {
    const RemoteBlob* w = nullptr;
    for (const auto& b : m.blobs)
        if (!w && b.layer.media_type == kMediaModel) w = &b;
    if (!w || !w->local_content.empty()) return error(StatusCode::unsupported, "the manifest has no weights to check");
    const int64_t size = w->layer.size;
    if (size <= 0) return error(StatusCode::corrupt, "the weights are empty");
    const std::string blob = store.blob_path(w->layer.digest);
    std::error_code ec;
    if (!blob.empty() && fs::is_regular_file(blob, ec) && (int64_t)fs::file_size(blob, ec) == size)
        return fit_file(blob, opts.fit);  // pulled before: the header is here
    // A partial download's first bytes are read from disk, the rest from the sources.
    const int64_t on_disk = blob.empty() ? 0 : partial_prefix(blob);
    std::string head;
    TransferOptions t = transfer;
    t.max_failures = std::min(t.max_failures, 2);  // a check, not the download: give up soon
    bool ranged = true;
    for (;;) {
        const HeaderScan scan = HeaderScanner(head).scan();
        if (scan.kind == HeaderScan::Kind::not_gguf)
            return error(StatusCode::unsupported, "the weights are not a GGUF file (" + scan.why + ")");
        int64_t want = 0;
        if (scan.kind == HeaderScan::Kind::complete) {
            want = std::min<int64_t>((int64_t)scan.data_offset, size);
            if ((int64_t)head.size() >= want) break;
        } else {
            if ((int64_t)head.size() >= size) return error(StatusCode::corrupt, "the weights end inside their GGUF header");
            want = head.empty() ? opts.fit_first_bytes
                                : std::max<int64_t>(2 * (int64_t)head.size(), (int64_t)std::min<uint64_t>(scan.hint, INT64_MAX));
        }
        if ((int64_t)head.size() >= opts.fit_max_header_bytes)
            return error(StatusCode::unsupported, strformat("the GGUF header is larger than %lld bytes",
                                                            (long long)opts.fit_max_header_bytes));
        if (!ranged)
            return error(StatusCode::unsupported, "the source ignores HTTP Range requests (it sent the whole file)");
        want = std::min(std::max<int64_t>(want, 1), std::min(size, opts.fit_max_header_bytes));
        if (want <= (int64_t)head.size()) want = std::min<int64_t>(size, (int64_t)head.size() + 1);
        if ((int64_t)head.size() < on_disk) {
            const std::string more = read_range(blob + "-partial", (int64_t)head.size(), std::min(want, on_disk));
            if (!more.empty()) {
                head += more;
                continue;
            }
        }
        HEARTH_ASSIGN(std::string more,
                      fetch_range(m.sources, w->path, (int64_t)head.size(), want - (int64_t)head.size(), t, &ranged));
        if (more.empty()) return error(StatusCode::corrupt, "the source sent none of the weights' header");
        head += more;
    }
    return fit_from_header(std::as_bytes(std::span(head.data(), head.size())), size, opts.fit);
}

}  // namespace

Result<PullOptions> PullOptions::from_env(bool insecure) {
    PullOptions o;
    HEARTH_ASSIGN(o.registry, RegistryOptions::from_env());
    o.registry.insecure = insecure;
    o.transfer.allow_http = insecure;
    o.fit_check = FitCheck::warn;
    return o;
}

nlohmann::ordered_json PullEvent::to_json() const {
    nlohmann::ordered_json j = {{"status", status}};
    if (!digest.empty()) {
        j["digest"] = digest;
        j["total"] = total;
        j["completed"] = completed;
    }
    if (!fit.is_null()) j["fit"] = fit;
    return j;
}

std::string fit_status_line(const FitReport& r) {
    if (r.fits) return "fits in memory: needs " + gib(r.need.total_bytes()) + " of " + gib(r.mem_available) + " available";
    std::string s = "does not fit: needs " + gib(r.need.total_bytes()) + ", " + gib(r.mem_available) + " available";
    std::vector<std::string> tries;
    if (!r.suggested_type.empty())
        for (const FitAlternative& a : r.alternatives)
            if (a.type == r.suggested_type) tries.push_back(a.type + " (needs " + gib(a.total_bytes) + ")");
    if (r.suggested_num_ctx > 0) tries.push_back(strformat("num_ctx %lld", (long long)r.suggested_num_ctx));
    for (size_t i = 0; i < tries.size(); ++i) s += (i == 0 ? "; try " : " or ") + tries[i];
    return s;
}

Result<FitReport> fit_remote(const Store& store, std::string_view name, const PullOptions& opts) {
    HEARTH_ASSIGN(RemoteName rn, parse_remote_name(name, opts.registry));
    TransferOptions transfer = opts.transfer;
    transfer.allow_http = transfer.allow_http || opts.registry.insecure;
    HEARTH_ASSIGN(RemoteModel m, fetch_remote(rn, opts.registry, transfer));
    auto r = fit_weights(store, m, opts, transfer);
    if (!r.ok()) return r.status().with_context("'" + rn.name.display() + "'");
    return r;
}

Status pull_model(Store& store, std::string_view name, const PullOptions& opts, const PullEventFn& on_event) {
    auto emit = [&](PullEvent e) {
        if (on_event) on_event(e);
    };
    auto status = [&](const char* s) {
        PullEvent e;
        e.status = s;
        emit(e);
    };
    HEARTH_ASSIGN(RemoteName rn, parse_remote_name(name, opts.registry));
    TransferOptions transfer = opts.transfer;
    transfer.allow_http = transfer.allow_http || opts.registry.insecure;

    status("pulling manifest");
    HEARTH_ASSIGN(RemoteModel m, fetch_remote(rn, opts.registry, transfer));
    const std::string blobs_dir = store.root() + "/blobs";

    // Before any blob: will it fit? Only the weights' header is read; without one (a source
    // that ignores Range, weights that are not GGUF, a network error) the pull goes on.
    if (opts.fit_check != FitCheck::off) {
        auto fit = fit_weights(store, m, opts, transfer);
        if (transfer.cancelled && transfer.cancelled())
            return error(StatusCode::io_error, "pulling '" + rn.name.display() + "' cancelled");
        if (fit.ok()) {
            const std::string line = fit_status_line(*fit);
            if (!fit->fits && opts.fit_check == FitCheck::require)
                return error(StatusCode::unsupported, "pulling '" + rn.name.display() + "': " + line +
                                                          "; nothing was downloaded (the fit was checked on request; "
                                                          "pull without checking it to download anyway)");
            PullEvent e;
            e.status = line;
            e.fit = fit_report_json(*fit);
            emit(e);
        } else if (opts.fit_check == FitCheck::require) {
            PullEvent e;
            e.status = "cannot tell whether it fits before downloading: " + fit.status().message();
            emit(e);
        }
    }

    auto fetch_blobs = [&]() -> Status {
        for (const auto& b : m.blobs) {
            if (!b.local_content.empty()) {
                if (!blob_ok(store, b.layer)) HEARTH_TRY(write_atomic(store.blob_path(b.layer.digest), b.local_content));
                continue;
            }
            const std::string label = "pulling " + b.layer.digest.substr(7, 12);
            HEARTH_TRY(download_blob(blobs_dir, b.layer.digest, b.layer.size, m.sources, b.path, transfer,
                                     [&](const TransferProgress& p) {
                                         PullEvent e;
                                         e.status = label;
                                         e.digest = b.layer.digest;
                                         e.total = p.total;
                                         e.completed = p.completed;
                                         e.bytes_per_s = p.bytes_per_s;
                                         e.eta_s = p.eta_s;
                                         emit(e);
                                     })
                           .with_context("pulling '" + rn.name.display() + "'"));
        }
        return {};
    };
    HEARTH_TRY(fetch_blobs());

    // Each blob was hashed before it was renamed into place; what is left to check is that
    // they are all still there, whole.
    status("verifying sha256 digest");
    for (const auto& b : m.blobs)
        if (!blob_ok(store, b.layer))
            return error(StatusCode::io_error, "pulling '" + rn.name.display() + "': blob " + b.layer.digest +
                                                   " vanished from the store before the manifest was written");

    status("writing manifest");
    const std::string manifest_path = store.root() + "/" + m.name.manifest_rel();
    for (int round = 0;; ++round) {
        bool written = false;
        {
            HEARTH_ASSIGN(StoreLock lock, StoreLock::take(store.root()));
            bool complete = true;
            for (const auto& b : m.blobs) complete = complete && blob_ok(store, b.layer);
            if (complete) {
                std::set<std::string> old_only;
                if (auto old = Manifest::parse(read_file(manifest_path)); old.ok()) {
                    old_only = digests_of(*old);
                    for (const auto& d : digests_of(m.manifest)) old_only.erase(d);
                }
                HEARTH_TRY(write_atomic(manifest_path, m.manifest_text));
                prune(store, std::move(old_only));
                written = true;
            }
        }
        if (written) break;
        // A blob was pruned by an `rm` of another model that shared it, between its download
        // and here: fetch it again (outside the lock).
        if (round >= 2)
            return error(StatusCode::io_error,
                         "pulling '" + rn.name.display() + "': its blobs keep being removed while it is written");
        HEARTH_TRY(fetch_blobs());
    }
    status("success");
    return {};
}

}  // namespace hearth::store
