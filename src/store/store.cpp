#include "store/store.h"
#include "store/store_lock.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <optional>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <sstream>

#include "base/file_writer.h"
#include "base/sha256.h"
#include "chat/template.h"

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


std::string not_found_message(std::string_view as_given) { return "model '" + std::string(as_given) + "' not found"; }

// Temporary files in blobs/ are ".hearth-tmp-<pid>-<random><suffix>": the pid lets a later
// writer tell a dead writer's leftovers from a live one's.
constexpr std::string_view kTempPrefix = ".hearth-tmp-";

std::string random_hex(int n_chars) {
    thread_local std::mt19937_64 rng{std::random_device{}() ^ (uint64_t)::getpid()};
    static const char* kHex = "0123456789abcdef";
    std::string s;
    for (int i = 0; i < n_chars; ++i) s += kHex[rng() & 15];
    return s;
}

Status fsync_dir(const std::string& dir) {
    const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return error(StatusCode::io_error, dir + ": cannot open: " + std::strerror(errno));
    const int rc = ::fsync(fd);
    const int err = errno;
    ::close(fd);
    if (rc != 0 && err != EINVAL) return error(StatusCode::io_error, dir + ": fsync: " + std::strerror(err));
    return {};
}

Status fsync_file(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return error(StatusCode::io_error, path + ": cannot open: " + std::strerror(errno));
    const int rc = ::fsync(fd);
    const int err = errno;
    ::close(fd);
    if (rc != 0 && err != EINVAL) return error(StatusCode::io_error, path + ": fsync: " + std::strerror(err));
    return {};
}

// Renames a verified file to its blob name and makes both durable. An existing blob of the
// same digest is kept and `tmp` deleted.
Status install_blob(const std::string& tmp, const std::string& blob, const std::string& blobs_dir) {
    std::error_code ec;
    if (fs::is_regular_file(blob, ec)) {
        ::unlink(tmp.c_str());
        return {};
    }
    if (::rename(tmp.c_str(), blob.c_str()) != 0) {
        const int err = errno;
        ::unlink(tmp.c_str());
        return error(StatusCode::io_error, blob + ": cannot rename into place: " + std::strerror(err));
    }
    return fsync_dir(blobs_dir);
}

// HEARTH_COPY_FOREIGN=1 (or true/yes): copy files from other file systems instead of referencing them.
bool copy_foreign() {
    const char* v = std::getenv("HEARTH_COPY_FOREIGN");
    if (!v) return false;
    const std::string s(v);
    return s == "1" || s == "true" || s == "yes" || s == "TRUE" || s == "YES";
}

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

std::string Manifest::to_json() const {
    auto layer_json = [](const Layer& l) {
        nlohmann::ordered_json j;
        j["mediaType"] = l.media_type;
        j["digest"] = l.digest;
        j["size"] = l.size;
        return j;
    };
    nlohmann::ordered_json j;
    j["schemaVersion"] = schema_version;
    j["mediaType"] = media_type.empty() ? std::string("application/vnd.docker.distribution.manifest.v2+json") : media_type;
    j["config"] = layer_json(config);
    j["layers"] = nlohmann::ordered_json::array();
    for (const auto& l : layers) j["layers"].push_back(layer_json(l));
    return j.dump();
}

Status check_template(const std::string& text) {
    auto t = chat::ChatTemplate::parse(text);
    if (t.ok()) return {};
    const bool go = text.find("{{ .") != std::string::npos || text.find("{{- .") != std::string::npos ||
                    text.find(".Prompt") != std::string::npos || text.find(".Messages") != std::string::npos ||
                    text.find("{{ if ") != std::string::npos || text.find("{{- if ") != std::string::npos;
    if (go)
        return error(StatusCode::invalid_argument,
                     "TEMPLATE looks like an Ollama Go template ({{ .Prompt }}), which hearth does not run: hearth renders "
                     "Jinja chat templates (as in the GGUF's tokenizer.chat_template); leave TEMPLATE out to use the "
                     "model's own, or write it in Jinja (" + t.status().message() + ")");
    return error(StatusCode::invalid_argument, "TEMPLATE is not a Jinja chat template: " + t.status().message());
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
    if (p.empty()) return false;
    if (fs::is_regular_file(p, ec)) return true;
    return blob_file(digest, {}, /*verify=*/false).ok();
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

Result<std::string> Store::manifest_text(const ModelName& name, std::string_view as_given) const {
    auto text = read_text(root_ + "/" + name.manifest_rel());
    if (!text.ok() && text.status().code() == StatusCode::not_found)
        return error(StatusCode::not_found, not_found_message(as_given));
    return text;
}

Result<ModelRef> Store::resolve_name(const ModelName& name, std::string_view as_given, bool verify) const {
    const std::string mpath = root_ + "/" + name.manifest_rel();
    auto text = manifest_text(name, as_given);
    if (!text.ok()) return text.status();
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
    auto weights_file = blob_file(weights->digest, r.name, verify);
    if (!weights_file.ok()) {
        if (weights_file.status().code() == StatusCode::corrupt) return weights_file.status();
        return error(StatusCode::corrupt, "model '" + r.name + "': its weights blob " + weights->digest + " is missing from " +
                                              root_ + "/blobs");
    }
    r.model_path = *weights_file;
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
    for (const auto& l : m->layers) {
        if (l.media_type != kMediaLicense) continue;
        const std::string p = blob_path(l.digest);
        if (p.empty()) return error(StatusCode::corrupt, "model '" + r.name + "': malformed digest " + l.digest);
        auto t = read_text(p);
        if (!t.ok()) return t.status().with_context("model '" + r.name + "'");
        r.licenses.push_back(std::move(t).value());
        r.license += (r.license.empty() ? "" : "\n") + r.licenses.back();
    }
    std::string params;
    HEARTH_TRY(read_layer(kMediaParams, params));
    if (!params.empty()) {
        r.params = nlohmann::json::parse(params, nullptr, false);
        if (r.params.is_discarded() || !r.params.is_object())
            return error(StatusCode::corrupt, "model '" + r.name + "': the params layer is not a JSON object");
    }
    std::string messages;
    HEARTH_TRY(read_layer(kMediaMessages, messages));
    if (!messages.empty()) {
        r.messages = nlohmann::json::parse(messages, nullptr, false);
        if (r.messages.is_discarded() || !r.messages.is_array())
            return error(StatusCode::corrupt, "model '" + r.name + "': the messages layer is not a JSON array");
    }
    r.has_projector = m->find(kMediaProjector) != nullptr;
    r.has_adapter = m->find(kMediaAdapter) != nullptr;
    for (const auto& l : m->layers) {
        if (l.media_type != kMediaAdapter) continue;
        auto file = blob_file(l.digest, r.name, verify);
        if (!file.ok()) {
            if (file.status().code() == StatusCode::corrupt) return file.status();
            return error(StatusCode::corrupt, "model '" + r.name + "': its adapter blob " + l.digest + " is missing from " +
                                                  root_ + "/blobs");
        }
        r.adapter_paths.push_back(*file);
        r.adapter_digests.push_back(l.digest);
    }
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
        auto r = resolve_name(*name, name->display(), /*verify=*/false);
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
    std::optional<GgufInfo> got;
    if (!with_file) {
        std::lock_guard lk(mu_);
        if (auto it = info_cache_.find(key); it != info_cache_.end()) got = it->second;
    }
    if (!got) {
        auto info = read_gguf_info(ref.model_path);
        if (!info.ok()) return info.status().with_context("model '" + ref.name + "'");
        GgufInfo cached = *info;
        cached.file.reset();
        {
            std::lock_guard lk(mu_);
            info_cache_[key] = std::move(cached);
        }
        if (!with_file) info->file.reset();
        got = std::move(info).value();
    }
    // The template layer wins when it is Jinja (see store.h).
    if (!ref.template_text.empty()) {
        const std::string tkey = sha256_hex(std::string_view(ref.template_text));
        std::optional<bool> jinja;
        {
            std::lock_guard lk(mu_);
            if (auto it = jinja_cache_.find(tkey); it != jinja_cache_.end()) jinja = it->second;
        }
        if (!jinja) {
            jinja = is_jinja_template(ref.template_text);
            std::lock_guard lk(mu_);
            if (jinja_cache_.size() > 256) jinja_cache_.clear();
            jinja_cache_[tkey] = *jinja;
        }
        if (*jinja) got->chat_template = ref.template_text;
    }
    return std::move(*got);
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
    for (const auto& d : candidates) delete_blob(d);
    return {};
}

// ---- the write side ----

Store::BlobWriter::BlobWriter(BlobWriter&& o) noexcept
    : fd_(o.fd_), tmp_path_(std::move(o.tmp_path_)), root_(std::move(o.root_)), hash_(o.hash_), size_(o.size_) {
    o.fd_ = -1;
    o.tmp_path_.clear();
}

Store::BlobWriter::~BlobWriter() {
    if (fd_ >= 0) ::close(fd_);
    if (!tmp_path_.empty()) ::unlink(tmp_path_.c_str());
}

Status Store::BlobWriter::write(std::span<const std::byte> bytes) {
    if (fd_ < 0) return error(StatusCode::io_error, "blob writer: write after commit or failure");
    hash_.update(bytes);
    const std::byte* p = bytes.data();
    size_t left = bytes.size();
    while (left > 0) {
        const ssize_t n = ::write(fd_, p, left);
        if (n < 0) {
            if (errno == EINTR) continue;
            const int err = errno;
            ::close(fd_);
            fd_ = -1;
            ::unlink(tmp_path_.c_str());
            tmp_path_.clear();
            return error(StatusCode::io_error, root_ + "/blobs: cannot write a new blob: " + std::strerror(err));
        }
        p += n;
        left -= (size_t)n;
    }
    size_ += (int64_t)bytes.size();
    return {};
}

Result<std::string> Store::BlobWriter::commit(std::string_view expected) {
    if (fd_ < 0) return error(StatusCode::io_error, "blob writer: commit after commit or failure");
    const std::string hex = to_hex(hash_.finish());
    const std::string digest = "sha256:" + hex;
    auto drop = [&] {
        if (fd_ >= 0) ::close(fd_);
        fd_ = -1;
        ::unlink(tmp_path_.c_str());
        tmp_path_.clear();
    };
    if (!expected.empty()) {
        std::string want(expected);
        if (want.rfind("sha256-", 0) == 0) want[6] = ':';
        if (want != digest) {
            drop();
            return error(StatusCode::invalid_argument, "digest mismatch: expected " + std::string(expected) + ", got " + digest);
        }
    }
    if (::fsync(fd_) != 0 && errno != EINVAL) {
        const int err = errno;
        drop();
        return error(StatusCode::io_error, root_ + "/blobs: fsync: " + std::strerror(err));
    }
    ::fchmod(fd_, 0644);
    ::close(fd_);
    fd_ = -1;
    const std::string tmp = std::move(tmp_path_);
    tmp_path_.clear();
    HEARTH_TRY(install_blob(tmp, root_ + "/blobs/sha256-" + hex, root_ + "/blobs"));
    return digest;
}

std::string Store::temp_path(std::string_view suffix) const {
    return root_ + "/blobs/" + std::string(kTempPrefix) + std::to_string(::getpid()) + "-" + random_hex(16) + std::string(suffix);
}

Result<Store::BlobWriter> Store::begin_blob() const {
    std::error_code ec;
    fs::create_directories(root_ + "/blobs", ec);
    if (ec) return error(StatusCode::io_error, root_ + "/blobs: cannot create: " + ec.message());
    BlobWriter w;
    w.root_ = root_;
    w.tmp_path_ = temp_path();
    w.fd_ = ::open(w.tmp_path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (w.fd_ < 0) {
        const int err = errno;
        w.tmp_path_.clear();
        return error(StatusCode::io_error, root_ + "/blobs: cannot create a temporary file: " + std::strerror(err));
    }
    return w;
}

Result<std::string> Store::commit_file(const std::string& temp, const std::function<void(int64_t, int64_t)>& progress) {
    auto hex = sha256_file(temp, [&](int64_t done, int64_t all) {
        if (progress) progress(done, all);
        return true;
    });
    if (!hex.ok()) {
        ::unlink(temp.c_str());
        return hex.status();
    }
    if (Status s = fsync_file(temp); !s.ok()) {
        ::unlink(temp.c_str());
        return s;
    }
    HEARTH_TRY(install_blob(temp, root_ + "/blobs/sha256-" + *hex, root_ + "/blobs"));
    return "sha256:" + *hex;
}

Result<Layer> Store::write_blob(std::string_view bytes, std::string media_type) {
    Layer l;
    l.media_type = std::move(media_type);
    l.digest = "sha256:" + sha256_hex(bytes);
    l.size = (int64_t)bytes.size();
    if (has_blob(l.digest)) return l;
    HEARTH_ASSIGN(BlobWriter w, begin_blob());
    HEARTH_TRY(w.write(std::as_bytes(std::span(bytes.data(), bytes.size()))));
    HEARTH_TRY(w.commit(l.digest).status());
    return l;
}

Result<Store::Adopted> Store::adopt_file(const std::string& path, const std::function<bool(int64_t, int64_t)>& progress) {
    std::error_code ec;
    const fs::path src = fs::canonical(path, ec);  // symlinks followed: link the file, not the link
    if (ec) return error(ec == std::errc::no_such_file_or_directory ? StatusCode::not_found : StatusCode::io_error,
                         path + ": " + ec.message());
    if (!fs::is_regular_file(src, ec)) return error(StatusCode::invalid_argument, path + " is not a file");
    fs::create_directories(root_ + "/blobs", ec);
    if (ec) return error(StatusCode::io_error, root_ + "/blobs: cannot create: " + ec.message());
    Adopted a;
    a.size = (int64_t)fs::file_size(src, ec);
    a.path = src.string();
    const std::string tmp = temp_path(".gguf");
    const bool linked = ::link(src.c_str(), tmp.c_str()) == 0;
    const int link_errno = errno;
    if (!linked && link_errno == EXDEV && !copy_foreign()) return adopt_by_reference(src.string(), progress);
    if (linked) {
        // Hash the linked inode: the digest is of exactly the bytes the blob holds.
        auto hex = sha256_file(tmp, progress);
        if (!hex.ok()) {
            ::unlink(tmp.c_str());
            return hex.status().with_context(path);
        }
        a.digest = "sha256:" + *hex;
        a.existed = has_blob(a.digest);
        a.linked = !a.existed;
        if (Status s = a.existed ? Status() : fsync_file(tmp); !s.ok()) {
            ::unlink(tmp.c_str());
            return s;
        }
        HEARTH_TRY(install_blob(tmp, blob_path(a.digest), root_ + "/blobs"));
        return a;
    }
    // Another file system (EXDEV), or links not allowed here: copy, hashing as we go. A blob that
    // is already in the store is found by hashing first (no copy at all).
    auto hex = sha256_file(src.string(), progress);
    if (!hex.ok()) return hex.status().with_context(path);
    a.digest = "sha256:" + *hex;
    if (has_blob(a.digest)) {
        a.existed = true;
        return a;
    }
    const int fd = ::open(src.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return error(StatusCode::io_error, path + ": cannot open: " + std::strerror(errno));
    HEARTH_ASSIGN(BlobWriter w, begin_blob());
    std::vector<std::byte> buf(4 << 20);
    int64_t done = 0;
    for (;;) {
        const ssize_t n = ::read(fd, buf.data(), buf.size());
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            const int err = errno;
            ::close(fd);
            return error(StatusCode::io_error, path + ": read: " + std::strerror(err));
        }
        if (n == 0) break;
        if (Status s = w.write(std::span(buf.data(), (size_t)n)); !s.ok()) {
            ::close(fd);
            return s;
        }
        done += n;
        if (progress && !progress(done, a.size)) {
            ::close(fd);
            return error(StatusCode::io_error, "cancelled");
        }
    }
    ::close(fd);
    // The file changed while it was copied if this fails: nothing is installed.
    HEARTH_TRY(w.commit(a.digest).status().with_context(path + " changed while it was copied"));
    return a;
}

Result<Manifest> Store::read_manifest(std::string_view text) const {
    HEARTH_ASSIGN(ModelName name, ModelName::parse(text));
    HEARTH_ASSIGN(std::string t, manifest_text(name, text));
    auto m = Manifest::parse(t);
    if (!m.ok()) return m.status().with_context(root_ + "/" + name.manifest_rel());
    return m;
}

Status Store::write_manifest(std::string_view text, const Manifest& m) {
    HEARTH_ASSIGN(ModelName name, ModelName::parse(text));
    HEARTH_ASSIGN(StoreLock lock, StoreLock::take(root_));
    auto check = [&](const Layer& l) -> Status {
        if (!has_blob(l.digest))
            return error(StatusCode::not_found, "blob " + l.digest + " (" + l.media_type + ") is not in " + root_ + "/blobs");
        return {};
    };
    if (!m.config.digest.empty()) HEARTH_TRY(check(m.config));
    for (const auto& l : m.layers) HEARTH_TRY(check(l));
    return write_atomic(root_ + "/" + name.manifest_rel(), m.to_json());
}

void Store::remove_unreferenced(const std::vector<std::string>& digests) {
    if (digests.empty()) return;
    auto lock = StoreLock::take(root_);
    if (!lock.ok()) return;
    std::set<std::string> candidates(digests.begin(), digests.end());
    const fs::path base = fs::path(root_) / "manifests";
    std::error_code ec;
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
    for (const auto& d : candidates) delete_blob(d);
}

void Store::remove_stale_temps() const {
    std::error_code ec;
    for (auto it = fs::directory_iterator(root_ + "/blobs", ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
        const std::string name = it->path().filename().string();
        if (name.rfind(kTempPrefix, 0) != 0) continue;
        const long pid = std::strtol(name.c_str() + kTempPrefix.size(), nullptr, 10);
        if (pid <= 0 || pid == (long)::getpid()) continue;
        if (::kill((pid_t)pid, 0) != 0 && errno == ESRCH) fs::remove_all(it->path(), ec);
    }
}

}  // namespace hearth::store
