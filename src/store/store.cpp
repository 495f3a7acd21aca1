#include "store/store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "base/file_writer.h"
#include "base/sha256.h"

namespace hearth::store {
namespace fs = std::filesystem;
namespace {

Result<std::string> read_text(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) return error(errno == ENOENT ? StatusCode::not_found : StatusCode::io_error, path + ": cannot open");
    std::stringstream ss;
    ss << f.rdbuf();
    if (f.bad()) return error(StatusCode::io_error, path + ": read error");
    return ss.str();
}

int64_t mtime_ns(const fs::path& p) {
    std::error_code ec;
    const auto t = fs::last_write_time(p, ec);
    if (ec) return 0;
    return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

WallTime wall_mtime(const fs::path& p) {
    std::error_code ec;
    const auto t = fs::last_write_time(p, ec);
    if (ec) return {};
    return std::chrono::time_point_cast<std::chrono::system_clock::duration>(std::chrono::file_clock::to_sys(t));
}

bool is_hex64(std::string_view s) {
    if (s.size() != 64) return false;
    return std::all_of(s.begin(), s.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

// An exclusive flock on <root>/.lock for the life of the object.
class StoreLock {
public:
    static Result<StoreLock> take(const std::string& root) {
        std::error_code ec;
        fs::create_directories(root, ec);
        const std::string path = root + "/.lock";
        const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) return error(StatusCode::io_error, path + ": cannot open the store lock: " + std::strerror(errno));
        while (::flock(fd, LOCK_EX) != 0) {
            if (errno == EINTR) continue;
            const int err = errno;
            ::close(fd);
            return error(StatusCode::io_error, path + ": cannot lock the store: " + std::strerror(err));
        }
        return StoreLock(fd);
    }
    StoreLock(StoreLock&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
    StoreLock& operator=(StoreLock&&) = delete;
    ~StoreLock() {
        if (fd_ >= 0) ::close(fd_);  // closing drops the flock
    }

private:
    explicit StoreLock(int fd) : fd_(fd) {}
    int fd_;
};

Status write_atomic(const std::string& path, std::string_view text) {
    std::error_code ec;
    fs::create_directories(fs::path(path).parent_path(), ec);
    if (ec) return error(StatusCode::io_error, path + ": cannot create its folder: " + ec.message());
    HEARTH_ASSIGN(AtomicFileWriter w, AtomicFileWriter::create(path));
    HEARTH_TRY(w.write(std::as_bytes(std::span(text.data(), text.size()))));
    return w.commit();
}

std::string not_found_message(std::string_view as_given) { return "model '" + std::string(as_given) + "' not found"; }

}  // namespace

Result<Manifest> Manifest::parse(std::string_view text) {
    nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object()) return error(StatusCode::corrupt, "the manifest is not a JSON object");
    Manifest m;
    auto read_layer = [](const nlohmann::json& l, Layer& out) -> Status {
        if (!l.is_object()) return error(StatusCode::corrupt, "a layer is not an object");
        if (!l.contains("digest") || !l["digest"].is_string())
            return error(StatusCode::corrupt, "a layer has no digest");
        out.digest = l["digest"].get<std::string>();
        if (l.contains("mediaType") && l["mediaType"].is_string()) out.media_type = l["mediaType"].get<std::string>();
        if (l.contains("size") && l["size"].is_number_integer()) out.size = l["size"].get<int64_t>();
        return {};
    };
    if (j.contains("schemaVersion") && j["schemaVersion"].is_number_integer()) m.schema_version = j["schemaVersion"].get<int>();
    if (j.contains("mediaType") && j["mediaType"].is_string()) m.media_type = j["mediaType"].get<std::string>();
    if (j.contains("config") && j["config"].is_object()) HEARTH_TRY(read_layer(j["config"], m.config));
    if (!j.contains("layers") || !j["layers"].is_array()) return error(StatusCode::corrupt, "the manifest has no layers");
    for (const auto& l : j["layers"]) {
        Layer layer;
        HEARTH_TRY(read_layer(l, layer));
        m.layers.push_back(std::move(layer));
    }
    return m;
}

const Layer* Manifest::find(std::string_view media_type) const {
    for (const auto& l : layers)
        if (l.media_type == media_type) return &l;
    return nullptr;
}

int64_t Manifest::size() const {
    int64_t n = config.size;
    for (const auto& l : layers) n += l.size;
    return n;
}

Store::Store(std::string root) : root_(std::move(root)) {}

std::string Store::default_root() {
    if (const char* env = std::getenv("HEARTH_MODELS"); env && *env) return env;
    const char* home = std::getenv("HOME");
    return std::string(home && *home ? home : ".") + "/.hearth/models";
}

std::string Store::blob_path(std::string_view digest) const {
    std::string_view hex;
    if (digest.substr(0, 7) == "sha256:" || digest.substr(0, 7) == "sha256-") hex = digest.substr(7);
    if (!is_hex64(hex)) return {};
    return root_ + "/blobs/sha256-" + std::string(hex);
}

bool Store::has_blob(std::string_view digest) const {
    const std::string p = blob_path(digest);
    std::error_code ec;
    return !p.empty() && fs::is_regular_file(p, ec);
}

Result<ModelRef> Store::resolve(std::string_view text) const {
    if (looks_like_path(text)) return resolve_file(text);
    auto name = ModelName::parse(text);
    if (!name.ok()) return name.status();
    return resolve_name(*name, text);
}

Result<ModelRef> Store::resolve_file(std::string_view text) const {
    std::string p(text);
    if (p.substr(0, 2) == "~/") {
        const char* home = std::getenv("HOME");
        p = std::string(home ? home : "") + p.substr(1);
    }
    std::error_code ec;
    fs::path abs = fs::absolute(p, ec).lexically_normal();
    if (ec || !fs::exists(abs, ec)) return error(StatusCode::not_found, "model file " + p + " does not exist");
    if (!fs::is_regular_file(abs, ec)) return error(StatusCode::invalid_argument, p + " is not a GGUF model file");
    ModelRef r;
    r.name = r.full_name = abs.string();
    r.is_file = true;
    r.model_path = abs.string();
    r.size = (int64_t)fs::file_size(abs, ec);
    r.modified = wall_mtime(abs);
    return r;
}

Result<ModelRef> Store::resolve_name(const ModelName& name, std::string_view as_given) const {
    const std::string mpath = root_ + "/" + name.manifest_rel();
    auto text = read_text(mpath);
    if (!text.ok()) {
        if (text.status().code() == StatusCode::not_found) return error(StatusCode::not_found, not_found_message(as_given));
        return text.status();
    }
    auto m = Manifest::parse(*text);
    if (!m.ok()) return m.status().with_context(mpath);
    ModelRef r;
    r.name = name.display();
    r.full_name = name.full();
    r.manifest_digest = sha256_hex(std::string_view(*text));
    r.size = m->size();
    r.modified = wall_mtime(mpath);
    const Layer* weights = m->find(kMediaModel);
    if (!weights) return error(StatusCode::corrupt, "model '" + r.name + "': the manifest has no model (GGUF) layer");
    r.model_digest = weights->digest;
    r.model_path = blob_path(weights->digest);
    std::error_code ec;
    if (r.model_path.empty() || !fs::is_regular_file(r.model_path, ec))
        return error(StatusCode::corrupt, "model '" + r.name + "': its weights blob " + weights->digest + " is missing from " +
                                              root_ + "/blobs");
    auto read_layer = [&](const char* type, std::string& out) -> Status {
        const Layer* l = m->find(type);
        if (!l) return {};
        const std::string p = blob_path(l->digest);
        if (p.empty()) return error(StatusCode::corrupt, "model '" + r.name + "': malformed digest " + l->digest);
        auto t = read_text(p);
        if (!t.ok()) return t.status().with_context("model '" + r.name + "'");
        out = std::move(t).value();
        return {};
    };
    HEARTH_TRY(read_layer(kMediaTemplate, r.template_text));
    HEARTH_TRY(read_layer(kMediaSystem, r.system));
    HEARTH_TRY(read_layer(kMediaLicense, r.license));
    std::string params;
    HEARTH_TRY(read_layer(kMediaParams, params));
    if (!params.empty()) {
        r.params = nlohmann::json::parse(params, nullptr, false);
        if (r.params.is_discarded() || !r.params.is_object())
            return error(StatusCode::corrupt, "model '" + r.name + "': the params layer is not a JSON object");
    }
    r.has_projector = m->find(kMediaProjector) != nullptr;
    r.has_adapter = m->find(kMediaAdapter) != nullptr;
    return r;
}

std::vector<ModelRef> Store::list() const {
    std::vector<ModelRef> out;
    const fs::path base = fs::path(root_) / "manifests";
    std::error_code ec;
    if (!fs::is_directory(base, ec)) return out;
    for (auto it = fs::recursive_directory_iterator(base, ec); !ec && it != fs::recursive_directory_iterator();
         it.increment(ec)) {
        if (!it->is_regular_file(ec)) continue;
        const fs::path rel = it->path().lexically_relative(base);
        std::vector<std::string> parts;
        for (const auto& p : rel) parts.push_back(p.string());
        if (parts.size() != 4) continue;  // host/ns/model/tag
        auto name = ModelName::parse(parts[0] + "/" + parts[1] + "/" + parts[2] + ":" + parts[3]);
        if (!name.ok()) continue;
        auto r = resolve_name(*name, name->display());
        if (r.ok()) out.push_back(std::move(r).value());
    }
    std::sort(out.begin(), out.end(), [](const ModelRef& a, const ModelRef& b) {
        return a.modified != b.modified ? a.modified > b.modified : a.name < b.name;
    });
    return out;
}

Result<GgufInfo> Store::info(const ModelRef& ref, bool with_file) const {
    std::error_code ec;
    const InfoKey key{ref.model_path, (int64_t)fs::file_size(ref.model_path, ec), mtime_ns(ref.model_path)};
    if (!with_file) {
        std::lock_guard lk(mu_);
        if (auto it = info_cache_.find(key); it != info_cache_.end()) return it->second;
    }
    auto info = read_gguf_info(ref.model_path);
    if (!info.ok()) return info.status().with_context("model '" + ref.name + "'");
    GgufInfo cached = *info;
    cached.file.reset();
    {
        std::lock_guard lk(mu_);
        info_cache_[key] = std::move(cached);
    }
    if (!with_file) info->file.reset();
    return info;
}

Result<std::string> Store::weights_digest(const ModelRef& ref) const {
    if (!ref.model_digest.empty()) return ref.model_digest.substr(7);
    std::error_code ec;
    const InfoKey key{ref.model_path, (int64_t)fs::file_size(ref.model_path, ec), mtime_ns(ref.model_path)};
    {
        std::lock_guard lk(mu_);
        if (auto it = digest_cache_.find(key); it != digest_cache_.end()) return it->second;
    }
    HEARTH_ASSIGN(std::string hex, sha256_file(ref.model_path));
    std::lock_guard lk(mu_);
    digest_cache_[key] = hex;
    return hex;
}

Status Store::copy(std::string_view src, std::string_view dst) {
    HEARTH_ASSIGN(ModelName from, ModelName::parse(src));
    HEARTH_ASSIGN(ModelName to, ModelName::parse(dst));
    HEARTH_ASSIGN(StoreLock lock, StoreLock::take(root_));
    auto text = read_text(root_ + "/" + from.manifest_rel());
    if (!text.ok()) {
        if (text.status().code() == StatusCode::not_found) return error(StatusCode::not_found, not_found_message(src));
        return text.status();
    }
    HEARTH_TRY(Manifest::parse(*text).status().with_context("model '" + std::string(src) + "'"));
    return write_atomic(root_ + "/" + to.manifest_rel(), *text);
}

Status Store::remove(std::string_view text) {
    HEARTH_ASSIGN(ModelName name, ModelName::parse(text));
    HEARTH_ASSIGN(StoreLock lock, StoreLock::take(root_));
    const fs::path mpath = fs::path(root_) / name.manifest_rel();
    auto mtext = read_text(mpath.string());
    if (!mtext.ok()) {
        if (mtext.status().code() == StatusCode::not_found) return error(StatusCode::not_found, not_found_message(text));
        return mtext.status();
    }
    std::set<std::string> candidates;  // blobs of this manifest
    if (auto m = Manifest::parse(*mtext); m.ok()) {
        candidates.insert(m->config.digest);
        for (const auto& l : m->layers) candidates.insert(l.digest);
    }
    std::error_code ec;
    if (!fs::remove(mpath, ec) || ec)
        return error(StatusCode::io_error, mpath.string() + ": cannot delete: " + ec.message());
    // Empty folders up to manifests/ go too, as Ollama leaves none behind.
    const fs::path base = fs::path(root_) / "manifests";
    for (fs::path dir = mpath.parent_path(); dir != base && dir.string().size() > base.string().size();
         dir = dir.parent_path()) {
        if (!fs::is_empty(dir, ec) || ec) break;
        fs::remove(dir, ec);
    }
    // Blobs still referenced by another manifest stay.
    for (auto it = fs::recursive_directory_iterator(base, ec); !ec && it != fs::recursive_directory_iterator();
         it.increment(ec)) {
        if (!it->is_regular_file(ec)) continue;
        auto t = read_text(it->path().string());
        if (!t.ok()) continue;
        auto m = Manifest::parse(*t);
        if (!m.ok()) continue;
        candidates.erase(m->config.digest);
        for (const auto& l : m->layers) candidates.erase(l.digest);
    }
    for (const auto& d : candidates) {
        const std::string p = blob_path(d);
        if (!p.empty()) fs::remove(p, ec);
    }
    return {};
}

}  // namespace hearth::store
