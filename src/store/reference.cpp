// References: blobs kept outside the store, in place (store.h). A record per digest,
// references/sha256-<hex>.json, names the file and its state when it was last verified; a digest
// resolves to blobs/ first, else to the referenced file, checked (size; hashed again when its
// time or inode moved).
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <vector>

#include "base/sha256.h"
#include "store/store.h"
#include "store/store_lock.h"

namespace hearth::store {
namespace fs = std::filesystem;
namespace {

// not_found when the file does not exist.
Result<std::string> read_text(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) return error(errno == ENOENT ? StatusCode::not_found : StatusCode::io_error, path + ": cannot open");
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

struct Reference {
    std::string path;  // absolute, symlinks resolved
    int64_t size = 0;
    int64_t mtime_ns = 0;
    uint64_t inode = 0, device = 0;  // when it was last verified
};

int64_t stat_mtime_ns(const struct stat& st) { return (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec; }

bool same_state(const Reference& r, const struct stat& st) {
    return (int64_t)st.st_size == r.size && stat_mtime_ns(st) == r.mtime_ns && (uint64_t)st.st_ino == r.inode &&
           (uint64_t)st.st_dev == r.device;
}

Reference reference_of(const std::string& path, const struct stat& st) {
    return {path, (int64_t)st.st_size, stat_mtime_ns(st), (uint64_t)st.st_ino, (uint64_t)st.st_dev};
}

// not_found when there is no record; corrupt for one that does not parse.
Result<Reference> read_reference(const std::string& record) {
    HEARTH_ASSIGN(std::string text, read_text(record));
    const nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
    Reference r;
    auto num = [&](const char* k, auto& out) {
        if (!j.contains(k) || !j[k].is_number_integer()) return false;
        out = j[k].get<std::remove_reference_t<decltype(out)>>();
        return true;
    };
    if (!j.is_object() || !j.contains("path") || !j["path"].is_string() || !num("size", r.size) ||
        !num("mtime_ns", r.mtime_ns) || !num("inode", r.inode) || !num("device", r.device))
        return error(StatusCode::corrupt, record + ": not a reference record");
    r.path = j["path"].get<std::string>();
    return r;
}

std::string reference_json(const Reference& r) {
    char when[32] = {0};
    const std::time_t now = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&now, &tm);
    std::strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    nlohmann::ordered_json j;
    j["path"] = r.path;
    j["size"] = r.size;
    j["mtime_ns"] = r.mtime_ns;
    j["inode"] = r.inode;
    j["device"] = r.device;
    j["verified_at"] = when;
    return j.dump(2) + "\n";
}

// The store lock when it is free at once, else -1: for a refresh that a later load can redo,
// never worth waiting for (nor a deadlock with a caller that holds the lock).
int try_lock_store(const std::string& root) {
    const int fd = ::open((root + "/.lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return -1;
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
        ::close(fd);
        return -1;
    }
    return fd;
}

}  // namespace

std::string Store::reference_path(std::string_view digest) const {
    const std::string p = blob_path(digest);
    if (p.empty()) return {};
    return root_ + "/references/" + fs::path(p).filename().string() + ".json";
}

Result<std::string> Store::blob_file(std::string_view digest, std::string_view owner, bool verify) const {
    const std::string blob = blob_path(digest);
    if (blob.empty()) return error(StatusCode::invalid_argument, "malformed blob digest \"" + std::string(digest) + "\"");
    std::error_code ec;
    if (fs::is_regular_file(blob, ec)) return blob;
    const std::string record = reference_path(digest);
    auto ref = read_reference(record);
    if (!ref.ok()) {
        if (ref.status().code() == StatusCode::not_found)
            return error(StatusCode::not_found, "blob " + std::string(digest) + " is not in " + root_ + "/blobs");
        return ref.status();
    }
    const std::string hex = fs::path(blob).filename().string().substr(7);
    auto changed = [&](const std::string& why) {
        return error(StatusCode::corrupt, "the file " + ref->path + " referenced by " +
                                              (owner.empty() ? std::string("blob sha256:" + hex) : "model '" + std::string(owner) + "'") +
                                              " changed or was removed (" + why + "); re-run hearth create");
    };
    struct stat st{};
    if (::stat(ref->path.c_str(), &st) != 0) return changed(errno == ENOENT ? "it is gone" : std::strerror(errno));
    if (!S_ISREG(st.st_mode)) return changed("it is no longer a regular file");
    if ((int64_t)st.st_size != ref->size)
        return changed(strformat("it has %lld bytes, %lld when it was registered", (long long)st.st_size, (long long)ref->size));
    if (!verify || same_state(*ref, st)) return ref->path;

    // Touched, replaced or rewritten since it was verified: only its bytes can tell.
    const InfoKey key{ref->path + "\n" + std::to_string((uint64_t)st.st_ino) + ":" + std::to_string((uint64_t)st.st_dev),
                      (int64_t)st.st_size, stat_mtime_ns(st)};
    std::optional<std::string> got;
    {
        std::lock_guard lk(mu_);
        if (auto it = reference_hash_cache_.find(key); it != reference_hash_cache_.end()) got = it->second;
    }
    if (!got) {
        auto h = sha256_file(ref->path);
        if (!h.ok()) return changed(h.status().message());
        std::lock_guard lk(mu_);
        if (reference_hash_cache_.size() > 256) reference_hash_cache_.clear();
        reference_hash_cache_[key] = *h;
        got = *h;
    }
    if (*got != hex) return changed("its SHA-256 is now " + *got + ", not " + hex);
    // The same bytes: record this state, so the next load does not hash it again. Only when the
    // lock is free; the record may have gone meanwhile (the model removed): then nothing.
    if (const int fd = try_lock_store(root_); fd >= 0) {
        if (auto again = read_reference(record); again.ok() && again->path == ref->path)
            (void)write_atomic(record, reference_json(reference_of(ref->path, st)));
        ::close(fd);
    }
    return ref->path;
}

void Store::delete_blob(std::string_view digest) const {
    const std::string p = blob_path(digest);
    if (p.empty()) return;
    std::error_code ec;
    fs::remove(p, ec);
    fs::remove(reference_path(digest), ec);
}

Result<Store::Adopted> Store::adopt_by_reference(const std::string& path,
                                                 const std::function<bool(int64_t, int64_t)>& progress) {
    struct stat before{}, after{};
    if (::stat(path.c_str(), &before) != 0) return error(StatusCode::io_error, path + ": " + std::strerror(errno));
    Adopted a;
    a.path = path;
    a.size = (int64_t)before.st_size;
    auto hex = sha256_file(path, progress);
    if (!hex.ok()) return hex.status().with_context(path);
    a.digest = "sha256:" + *hex;
    if (::stat(path.c_str(), &after) != 0) return error(StatusCode::io_error, path + ": " + std::strerror(errno));
    const Reference ref = reference_of(path, before);
    if (!same_state(ref, after))
        return error(StatusCode::io_error, path + " changed while it was hashed; try again once it is complete");
    std::error_code ec;
    if (fs::is_regular_file(blob_path(a.digest), ec)) {
        a.existed = true;  // the bytes are in the store already
        return a;
    }
    HEARTH_ASSIGN(StoreLock lock, StoreLock::take(root_));
    const std::string record = reference_path(a.digest);
    if (auto old = read_reference(record); old.ok()) {
        // A sound reference to these bytes is kept (another file of the same content, or this
        // one): the models that use it keep working. One that went bad is replaced.
        a.existed = old->path == path || blob_file(a.digest, {}, /*verify=*/true).ok();
        if (a.existed) {
            a.referenced = true;
            if (old->path == path) HEARTH_TRY(write_atomic(record, reference_json(ref)));
            return a;
        }
    }
    HEARTH_TRY(write_atomic(record, reference_json(ref)));
    a.referenced = true;
    return a;
}

}  // namespace hearth::store
