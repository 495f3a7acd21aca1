#include "store/pull.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
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
    for (const auto& d : candidates)
        if (const std::string p = store.blob_path(d); !p.empty()) fs::remove(p, ec);
}

}  // namespace

Result<PullOptions> PullOptions::from_env(bool insecure) {
    PullOptions o;
    HEARTH_ASSIGN(o.registry, RegistryOptions::from_env());
    o.registry.insecure = insecure;
    o.transfer.allow_http = insecure;
    return o;
}

nlohmann::ordered_json PullEvent::to_json() const {
    nlohmann::ordered_json j = {{"status", status}};
    if (!digest.empty()) {
        j["digest"] = digest;
        j["total"] = total;
        j["completed"] = completed;
    }
    return j;
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

    auto fetch_blobs = [&]() -> Status {
        for (const auto& b : m.blobs) {
            if (!b.local_content.empty()) {
                if (!blob_ok(store, b.layer)) HEARTH_TRY(write_atomic(store.blob_path(b.layer.digest), b.local_content));
                continue;
            }
            const std::string label = "pulling " + b.layer.digest.substr(7, 12);
            HEARTH_TRY(download_blob(blobs_dir, b.layer.digest, b.layer.size, m.sources, b.path, transfer,
                                     [&](const TransferProgress& p) {
                                         PullEvent e{label, b.layer.digest, p.total, p.completed};
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
