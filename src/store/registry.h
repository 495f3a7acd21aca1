// Where a model comes from: a model name -> the sources, the manifest and the blobs to fetch.
//
// Three kinds of names (peers.md §1.9):
//   llama3, user/model:tag            Ollama's registry, https://registry.ollama.ai
//   host:port/namespace/model:tag     a registry named in the name: https, or plain http with
//                                     insecure (as Ollama's --insecure); "http://host/..." too
//   hf.co/user/repo[:quant]           a Hugging Face GGUF repository (also huggingface.co/...),
//                                     at HF_ENDPOINT (default https://huggingface.co)
//
// Registries speak the Docker distribution v2 protocol that Ollama uses:
//   GET /v2/<namespace>/<model>/manifests/<tag>   (Accept: the v2 / OCI manifest types)
//   GET /v2/<namespace>/<model>/blobs/<digest>    (may redirect to a CDN)
// and the manifest is written to the store byte for byte, so its digest is the registry's.
//
// The Hub has no manifests: its file list (GET /api/models/<user>/<repo>/tree/main?recursive=true,
// whose LFS entries carry each file's sha256 and size) picks the GGUF whose name holds the
// quant (case-insensitive; default Q4_K_M, else the repository's only GGUF), and the manifest is
// built here: a config blob made locally, the weights as the model layer, and a projector
// layer when the repository has an mmproj GGUF. Blobs come from /<user>/<repo>/resolve/main/<file>.
//
// Mirrors (HEARTH_MIRRORS, comma-separated base URLs) serve the same paths as the source they
// stand in for and are tried in order after it (store/download.h). They are trusted for nothing:
// every blob is verified against the manifest's digest. The manifest itself comes from a mirror
// only when the primary cannot be reached or fails (5xx); a 404 from the primary is final.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "store/download.h"
#include "store/name.h"
#include "store/store.h"

namespace hearth::store {

inline constexpr const char* kMediaManifestV2 = "application/vnd.docker.distribution.manifest.v2+json";
inline constexpr const char* kMediaManifestOci = "application/vnd.oci.image.manifest.v1+json";
inline constexpr const char* kMediaImageConfig = "application/vnd.docker.container.image.v1+json";
inline constexpr const char* kDefaultHfEndpoint = "https://huggingface.co";
inline constexpr const char* kDefaultHfQuant = "Q4_K_M";

struct RegistryOptions {
    bool insecure = false;                         // plain http for registries
    std::string hf_endpoint = kDefaultHfEndpoint;  // no trailing '/'
    std::string hf_token;                          // sent to hf_endpoint only, never to mirrors
    std::vector<std::string> mirrors;              // base URLs, no trailing '/'

    // HF_ENDPOINT, HF_TOKEN (or HUGGING_FACE_HUB_TOKEN) and HEARTH_MIRRORS. Errors name the
    // variable (a mirror that is not an http(s) URL).
    static Result<RegistryOptions> from_env();
};

// A model name read for pulling.
struct RemoteName {
    enum class Kind { registry, huggingface };
    Kind kind = Kind::registry;
    ModelName name;        // where the manifest goes in the store
    std::string base_url;  // the primary source: "https://registry.ollama.ai", the Hub endpoint
    std::string hf_repo;   // Hub: "user/repo"
    std::string hf_quant;  // Hub: the tag; "" for none (or "latest"): the default pick
};

// invalid_argument for a bad name, a path, or http:// without insecure.
Result<RemoteName> parse_remote_name(std::string_view text, const RegistryOptions& opts);

// One blob of the manifest.
struct RemoteBlob {
    Layer layer;
    std::string path;           // under each source's base URL
    std::string local_content;  // non-empty: made here (the Hub's config blob), not downloaded
};

struct RemoteModel {
    ModelName name;
    std::string manifest_text;    // what is written to manifests/
    Manifest manifest;
    std::vector<RemoteBlob> blobs;  // config first, then the layers in order; each digest once
    std::vector<Source> sources;    // the primary, then the mirrors
    std::string hf_file;            // Hub: the GGUF file picked
};

// Fetches the manifest (registries) or lists the repository and builds one (Hub). Errors:
// not_found "model 'x' not found ..." (a 404 from the primary, no matching GGUF), unsupported (a
// manifest without a GGUF layer, a split GGUF), invalid_argument (several GGUFs match the quant;
// the Hub wants a token), corrupt (a manifest or listing that does not parse), io_error
// (nothing answered).
Result<RemoteModel> fetch_remote(const RemoteName& name, const RegistryOptions& opts, const TransferOptions& transfer);

// The Hub's pick among a repository's files (paths): the GGUF (not mmproj) whose name holds
// `quant` (case-insensitive; as a whole word when several do); with `quant` empty Q4_K_M, else
// the only GGUF. Errors list the GGUF files there are.
Result<std::string> pick_hf_file(const std::vector<std::string>& files, const std::string& quant,
                                 const std::string& repo);

}  // namespace hearth::store
