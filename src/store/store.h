// The model store: $HEARTH_MODELS (default ~/.hearth/models) laid out like Ollama's, so an
// existing Ollama store works as it is (DESIGN.md, "Files on disk"):
//
//   manifests/<host>/<namespace>/<model>/<tag>   JSON: Docker distribution manifest v2
//   blobs/sha256-<64 hex>                         content-addressed layers
//
// A manifest's layers name their blobs by digest ("sha256:<hex>") and media type: the weights
// (application/vnd.ollama.image.model, a GGUF file), and small text layers: template, system,
// params (JSON of Modelfile PARAMETERs), license. This first slice resolves, lists, copies and
// deletes; pulls, create and blob uploads come with the store issue.
//
// Concurrency: readers never lock (manifests are replaced atomically, by rename). Mutations
// (copy, remove) hold an exclusive flock on <root>/.lock, so two daemons or a daemon and a CLI
// sharing a store do not interleave them. The caches below are per Store object, under a mutex;
// a Store may be used from any number of threads.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

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
};

using WallTime = std::chrono::system_clock::time_point;

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
    // Text layers ("" when absent) and the params layer (a JSON object, or null).
    std::string template_text, system, license;
    nlohmann::json params;
    bool has_projector = false, has_adapter = false;
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
    bool has_blob(std::string_view digest) const;

private:
    struct InfoKey {
        std::string path;
        int64_t size;
        int64_t mtime_ns;
        auto operator<=>(const InfoKey&) const = default;
    };
    Result<ModelRef> resolve_name(const ModelName& name, std::string_view as_given) const;
    Result<ModelRef> resolve_file(std::string_view path) const;

    std::string root_;
    mutable std::mutex mu_;
    mutable std::map<InfoKey, GgufInfo> info_cache_;           // under mu_; entries hold no mapping
    mutable std::map<InfoKey, std::string> digest_cache_;      // under mu_; bare files' hashes
};

}  // namespace hearth::store
