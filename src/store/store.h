// The model store: $HEARTH_MODELS (default ~/.hearth/models) laid out like Ollama's, so an
// existing Ollama store works as it is (DESIGN.md, "Files on disk"):
//
//   manifests/<host>/<namespace>/<model>/<tag>   JSON: Docker distribution manifest v2
//   blobs/sha256-<64 hex>                         content-addressed layers
//   references/sha256-<64 hex>.json               a blob kept outside the store (see below)
//
// References. A GGUF file adopted from another file system (where it cannot be hard-linked) is
// not copied: a record {"path","size","mtime_ns","inode","device","verified_at"} names it, and
// the manifest is Ollama-shaped as for any blob (the layer's digest is the file's SHA-256). A
// digest resolves to blobs/sha256-<hex> when that exists, else to the referenced file, which is
// checked first: its size must match the record, and when its modification time or inode
// changed since the recorded verification it is hashed again (a match refreshes the record; a
// difference, or a file gone, is an error naming the file). Removing the last model that uses
// such a digest removes the record, never the file. Ollama itself does not read references.
//
// A manifest's layers name their blobs by digest ("sha256:<hex>") and media type: the weights
// (application/vnd.ollama.image.model, a GGUF file), and small text layers: template, system,
// params (JSON of Modelfile PARAMETERs), messages (JSON), license. The store resolves, lists,
// copies and deletes; the write side (blobs and manifests, used by create, uploads and pulls) is
// crash-safe: a blob is written under a temporary name in blobs/, hashed, fsynced and renamed to
// its digest only once verified, and a manifest is written last (temporary file, fsync, rename),
// so an interrupted write never leaves a half model visible.
//
// Concurrency: readers never lock (manifests are replaced atomically, by rename). Mutations
// (copy, remove, write_manifest) hold an exclusive flock on <root>/.lock, so two daemons or a
// daemon and a CLI sharing a store do not interleave them; writing a blob needs no lock (its
// name is its content), but a manifest's blobs are checked present under the lock that writes
// it, so a concurrent remove cannot take a blob from under a new model. The caches below are
// per Store object, under a mutex; a Store may be used from any number of threads.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <span>
#include <string_view>
#include <vector>

#include "base/sha256.h"
#include "base/status.h"
#include "store/gguf_info.h"
#include "store/name.h"

namespace hearth::store {

inline constexpr const char* kMediaModel = "application/vnd.ollama.image.model";
inline constexpr const char* kMediaTemplate = "application/vnd.ollama.image.template";
inline constexpr const char* kMediaSystem = "application/vnd.ollama.image.system";
inline constexpr const char* kMediaParams = "application/vnd.ollama.image.params";
inline constexpr const char* kMediaLicense = "application/vnd.ollama.image.license";
inline constexpr const char* kMediaProjector = "application/vnd.ollama.image.projector";
inline constexpr const char* kMediaAdapter = "application/vnd.ollama.image.adapter";
inline constexpr const char* kMediaMessages = "application/vnd.ollama.image.messages";

struct Layer {
    std::string media_type;
    std::string digest;  // "sha256:<64 hex>"
    int64_t size = 0;
};

struct Manifest {
    int schema_version = 2;
    std::string media_type;
    Layer config;
    std::vector<Layer> layers;

    // Errors (corrupt) say what is missing or mistyped.
    static Result<Manifest> parse(std::string_view json);
    const Layer* find(std::string_view media_type) const;  // the first layer of that type
    int64_t size() const;                                  // config + layers, as Ollama counts it
    // The JSON Ollama writes: schemaVersion, mediaType, config, layers ({mediaType, digest, size}).
    std::string to_json() const;
};

using WallTime = std::chrono::system_clock::time_point;

// A template hearth can render: Jinja that chat::ChatTemplate parses. Ollama's Go templates
// ({{ .Prompt }}, {{ if .System }}) are not, and the error (invalid_argument) says so.
Status check_template(const std::string& text);
inline bool is_jinja_template(const std::string& text) { return check_template(text).ok(); }

// A name or path resolved to files.
struct ModelRef {
    std::string name;           // display name ("llama3:latest"), or the absolute path of a file
    std::string full_name;      // "registry.ollama.ai/library/llama3:latest"; the path for a file
    bool is_file = false;       // a bare .gguf path, not in the store
    std::string model_path;     // the GGUF weights
    std::string model_digest;   // "sha256:<hex>" of the weights; empty for a file (see Store::weights_digest)
    std::string manifest_digest;  // hex SHA-256 of the manifest bytes (Ollama's digest); empty for a file
    int64_t size = 0;           // manifest: every layer; file: its size
    WallTime modified{};        // manifest (or file) modification time
    // Text layers ("" when absent) and the params layer (a JSON object, or null). `license` is
    // every license layer, joined by a newline; `licenses` each one.
    std::string template_text, system, license;
    std::vector<std::string> licenses;
    nlohmann::json params;
    nlohmann::json messages;    // the messages layer: [{"role", "content"}], or null
    bool has_projector = false, has_adapter = false;
    // The LoRA adapter layers (application/vnd.ollama.image.adapter, GGUF files applied at
    // load: model::LoadOptions::adapters), in manifest order: blob paths and digests.
    std::vector<std::string> adapter_paths, adapter_digests;
};

class Store {
public:
    explicit Store(std::string root);
    // $HEARTH_MODELS, else $HOME/.hearth/models.
    static std::string default_root();
    const std::string& root() const { return root_; }

    // A model name (store/name.h) or a path to a .gguf file. Errors: invalid_argument for a bad
    // name; not_found "model 'x' not found" (names) or "model file x does not exist" (paths);
    // corrupt for an unreadable manifest or a missing weights blob.
    Result<ModelRef> resolve(std::string_view name_or_path) const;
    // Every model with a readable manifest, newest first (as `ollama list`). Manifests that do
    // not parse are skipped.
    std::vector<ModelRef> list() const;

    // The file's GGUF facts, cached by path, size and modification time (the cached copy holds
    // no mapping; `with_file` maps the file again for callers that need its metadata).
    // chat_template is the template the model renders with: its template layer when that is a
    // Jinja template (TEMPLATE of `hearth create`), else the GGUF's tokenizer.chat_template (an
    // Ollama store's Go-template layers are not Jinja and are left aside).
    Result<GgufInfo> info(const ModelRef& ref, bool with_file = false) const;
    // Hex SHA-256 of the weights: the blob's name in the store; hashed (once per file, cached)
    // for a bare path. The disk tier of the prefix cache keys on it.
    Result<std::string> weights_digest(const ModelRef& ref) const;

    // Deletes the manifest and the blobs no other manifest references. not_found when absent.
    Status remove(std::string_view name);
    // Writes `dst`'s manifest as a copy of `src`'s (the blobs are shared). not_found for a
    // missing source; invalid_argument for a bad name.
    Status copy(std::string_view src, std::string_view dst);

    // blobs/sha256-<hex> for "sha256:<hex>" or "sha256-<hex>"; "" for a malformed digest.
    std::string blob_path(std::string_view digest) const;
    // The blob is in blobs/, or a reference names a file of the recorded size (not hashed here).
    bool has_blob(std::string_view digest) const;
    // references/sha256-<hex>.json; "" for a malformed digest.
    std::string reference_path(std::string_view digest) const;
    // The file holding a blob's bytes: blobs/sha256-<hex>, else the file its reference names,
    // checked as the header says (`verify` false: its size only, no hashing). `owner` names the
    // model in messages. Errors: not_found (neither blob nor reference), corrupt "the file X
    // referenced by model 'M' changed or was removed (...); re-run hearth create", invalid_argument
    // for a malformed digest.
    Result<std::string> blob_file(std::string_view digest, std::string_view owner = {}, bool verify = true) const;
    // Deletes blobs/sha256-<hex> and the digest's reference record, never the file a reference
    // names. The caller holds the store lock and knows no manifest uses the digest.
    void delete_blob(std::string_view digest) const;

    // ---- the write side ----

    // A blob being written: bytes go to a temporary file in blobs/ (a dot name the listing never
    // shows) and are hashed as they come. Destroying a writer that was not committed removes its
    // file.
    class BlobWriter {
    public:
        BlobWriter(BlobWriter&& o) noexcept;
        BlobWriter& operator=(BlobWriter&&) = delete;
        BlobWriter(const BlobWriter&) = delete;
        ~BlobWriter();
        Status write(std::span<const std::byte> bytes);
        int64_t size() const { return size_; }
        // Checks the SHA-256 against `expected` ("sha256:<hex>"; empty: any), fsyncs, and renames
        // the file to blobs/sha256-<hex> (an existing blob of that digest is kept: same bytes), then
        // fsyncs the folder. Returns "sha256:<hex>". A mismatch is invalid_argument naming both
        // digests; the temporary file is gone after any error.
        Result<std::string> commit(std::string_view expected = {});

    private:
        friend class Store;
        BlobWriter() = default;
        int fd_ = -1;
        std::string tmp_path_;  // while fd_ is open
        std::string root_;
        Sha256 hash_;
        int64_t size_ = 0;
    };
    Result<BlobWriter> begin_blob() const;
    // A fresh temporary path in blobs/ ending in `suffix`, for a tool that writes a file itself
    // (quantize_gguf, convert_hf_checkpoint); hand the file to commit_file, or delete it.
    std::string temp_path(std::string_view suffix = "") const;
    // Hashes a file at a temp_path() and renames it into blobs/ (the file is consumed: renamed, or
    // deleted when the blob already exists). Returns "sha256:<hex>".
    Result<std::string> commit_file(const std::string& temp, const std::function<void(int64_t done, int64_t total)>& progress = {});
    // Writes `bytes` as a blob (nothing when it exists). Returns its layer.
    Result<Layer> write_blob(std::string_view bytes, std::string media_type);

    // A file outside the store registered as a blob without a second copy: a hard link in
    // blobs/ on the same file system (then hashed, so the digest is of the linked bytes); on
    // another file system (link fails with EXDEV) a reference record (see above), written
    // atomically under the store lock after the file was hashed, and refused when the file
    // changed while it was hashed; elsewhere (links not allowed), or with HEARTH_COPY_FOREIGN=1
    // in the environment, a copy (hashed while copying). Symlinks are followed. A hard link
    // shares the file: the original must not be changed in place afterwards (Hugging Face's
    // cache and LM Studio never do); deleting either name keeps the other. A referenced file
    // must stay where it is, unchanged: loads check it.
    struct Adopted {
        std::string digest;       // "sha256:<hex>"
        int64_t size = 0;
        bool linked = false;      // hard link
        bool referenced = false;  // a reference record (neither linked nor copied)
        bool existed = false;     // the store already held this blob, or a sound reference to it
        std::string path;         // the adopted file (symlinks resolved)
    };
    // `progress` (bytes hashed or copied of the total) may return false to cancel.
    Result<Adopted> adopt_file(const std::string& path, const std::function<bool(int64_t done, int64_t total)>& progress = {});

    // The manifest of a model name, as stored. not_found "model 'x' not found".
    Result<Manifest> read_manifest(std::string_view name) const;
    // Under the store lock: checks that every blob of `m` is present (else not_found naming the
    // first missing one, and nothing is written), then writes the manifest (temporary file,
    // fsync, rename). invalid_argument for a bad name.
    Status write_manifest(std::string_view name, const Manifest& m);
    // Under the store lock: deletes those of `digests` that no manifest references (the blobs a
    // failed create had added).
    void remove_unreferenced(const std::vector<std::string>& digests);
    // Temporary files in blobs/ left by writers that were killed (their process is gone).
    void remove_stale_temps() const;

private:
    struct InfoKey {
        std::string path;
        int64_t size;
        int64_t mtime_ns;
        auto operator<=>(const InfoKey&) const = default;
    };
    // The manifest's bytes; not_found worded for `as_given` when there is none.
    Result<std::string> manifest_text(const ModelName& name, std::string_view as_given) const;
    // `verify` false (listings): a referenced weights file is checked by size only.
    Result<ModelRef> resolve_name(const ModelName& name, std::string_view as_given, bool verify = true) const;
    Result<ModelRef> resolve_file(std::string_view path) const;
    // adopt_file on another file system: hash `path` (symlinks resolved) and record it.
    Result<Adopted> adopt_by_reference(const std::string& path, const std::function<bool(int64_t, int64_t)>& progress);

    std::string root_;
    mutable std::mutex mu_;
    mutable std::map<InfoKey, GgufInfo> info_cache_;           // under mu_; entries hold no mapping
    mutable std::map<InfoKey, std::string> digest_cache_;      // under mu_; bare files' hashes
    // under mu_; referenced files' hashes, keyed by path and inode too (a file replaced by one
    // of the same size and time is hashed again)
    mutable std::map<InfoKey, std::string> reference_hash_cache_;
    mutable std::map<std::string, bool> jinja_cache_;          // under mu_; template hash -> parses as Jinja
};

}  // namespace hearth::store
