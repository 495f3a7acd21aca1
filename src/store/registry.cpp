#include "store/registry.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>

#include "base/sha256.h"

namespace hearth::store {
namespace {

using json = nlohmann::json;

std::string lower(std::string s) {
    for (auto& c : s) c = (char)std::tolower((unsigned char)c);
    return s;
}

std::string upper(std::string s) {
    for (auto& c : s) c = (char)std::toupper((unsigned char)c);
    return s;
}

std::string trim_slashes(std::string s) {
    while (!s.empty() && (s.back() == '/' || s.back() == ' ')) s.pop_back();
    while (!s.empty() && s.front() == ' ') s.erase(0, 1);
    return s;
}

bool is_http_url(const std::string& s) { return s.rfind("http://", 0) == 0 || s.rfind("https://", 0) == 0; }

bool is_hf_host(const std::string& host) {
    const std::string h = lower(host);
    return h == "hf.co" || h == "huggingface.co";
}

// Percent-encodes one path segment (RFC 3986 unreserved characters stay).
std::string escape_segment(const std::string& s) {
    static const char* kHex = "0123456789ABCDEF";
    std::string out;
    for (unsigned char c : s) {
        if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
            out += (char)c;
        } else {
            out += '%';
            out += kHex[c >> 4];
            out += kHex[c & 15];
        }
    }
    return out;
}

std::string escape_path(const std::string& path) {
    std::string out;
    size_t start = 0;
    for (;;) {
        const size_t p = path.find('/', start);
        out += escape_segment(path.substr(start, p == std::string::npos ? std::string::npos : p - start));
        if (p == std::string::npos) break;
        out += '/';
        start = p + 1;
    }
    return out;
}

std::string basename(const std::string& path) {
    const size_t p = path.rfind('/');
    return p == std::string::npos ? path : path.substr(p + 1);
}

bool is_gguf(const std::string& path) {
    const std::string l = lower(path);
    return l.size() > 5 && l.compare(l.size() - 5, 5, ".gguf") == 0;
}

bool is_mmproj(const std::string& path) { return lower(basename(path)).find("mmproj") != std::string::npos; }

bool is_split(const std::string& path) {
    static const std::regex kSplit(R"(-\d{5}-of-\d{5}\.gguf$)", std::regex::icase);
    return std::regex_search(path, kSplit);
}

// `word` occurs in `text` (both lower case) with no letter, digit or '_' on either side.
bool has_word(const std::string& text, const std::string& word) {
    auto is_word = [](char c) { return std::isalnum((unsigned char)c) || c == '_'; };
    for (size_t p = text.find(word); p != std::string::npos; p = text.find(word, p + 1)) {
        const bool left = p == 0 || !is_word(text[p - 1]);
        const bool right = p + word.size() >= text.size() || !is_word(text[p + word.size()]);
        if (left && right) return true;
    }
    return false;
}

std::string join(const std::vector<std::string>& v, const char* sep) {
    std::string out;
    for (const auto& s : v) out += (out.empty() ? "" : sep) + s;
    return out;
}

bool valid_digest(const std::string& d) {
    if (d.rfind("sha256:", 0) != 0 || d.size() != 71) return false;
    return std::all_of(d.begin() + 7, d.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

std::vector<Source> sources_for(const std::string& primary, std::vector<std::string> primary_headers,
                                const RegistryOptions& opts) {
    std::vector<Source> s{{primary, std::move(primary_headers)}};
    for (const auto& m : opts.mirrors)
        if (m != primary) s.push_back({m, {}});
    return s;
}

// Registry manifests: checked and listed as blobs.
Status add_blobs(RemoteModel& m, const std::string& blob_prefix) {
    std::vector<const Layer*> all;
    if (!m.manifest.config.digest.empty()) all.push_back(&m.manifest.config);
    for (const auto& l : m.manifest.layers) all.push_back(&l);
    for (const Layer* l : all) {
        if (!valid_digest(l->digest))
            return error(StatusCode::corrupt, "the manifest names a malformed digest \"" + l->digest + "\"");
        if (l->size < 0) return error(StatusCode::corrupt, "the manifest gives " + l->digest + " a negative size");
        bool seen = false;
        for (const auto& b : m.blobs) seen = seen || b.layer.digest == l->digest;
        if (!seen) m.blobs.push_back({*l, blob_prefix + l->digest, ""});
    }
    return {};
}

Result<RemoteModel> fetch_registry(const RemoteName& rn, const RegistryOptions& opts, const TransferOptions& transfer) {
    RemoteModel m;
    m.name = rn.name;
    m.sources = sources_for(rn.base_url, {}, opts);
    const std::string repo = "/v2/" + rn.name.ns + "/" + rn.name.model;
    auto text = fetch_text(m.sources, repo + "/manifests/" + rn.name.tag,
                           {std::string("Accept: ") + kMediaManifestV2 + ", " + kMediaManifestOci}, transfer,
                           4 << 20);
    if (!text.ok()) {
        if (text.status().code() == StatusCode::not_found)
            return error(StatusCode::not_found, "pull model manifest: model '" + rn.name.display() +
                                                    "' not found (" + text.status().message() + ")");
        return text.status().with_context("pull model manifest for '" + rn.name.display() + "'");
    }
    m.manifest_text = std::move(text).value();
    auto parsed = Manifest::parse(m.manifest_text);
    if (!parsed.ok()) return parsed.status().with_context("the manifest of '" + rn.name.display() + "'");
    m.manifest = std::move(parsed).value();
    if (m.manifest.schema_version != 2)
        return error(StatusCode::unsupported, strformat("the manifest of '%s' has schemaVersion %d; only 2 is understood",
                                                        rn.name.display().c_str(), m.manifest.schema_version));
    if (!m.manifest.find(kMediaModel))
        return error(StatusCode::unsupported, "'" + rn.name.display() +
                                                  "' has no GGUF model layer (a safetensors or MLX model?); hearth "
                                                  "pulls GGUF models");
    HEARTH_TRY(add_blobs(m, repo + "/blobs/"));
    return m;
}

struct HfFile {
    std::string path;
    int64_t size = 0;
    std::string sha256;  // hex, from the LFS pointer; "" for a file kept in git itself
};

Result<RemoteModel> fetch_hf(const RemoteName& rn, const RegistryOptions& opts, const TransferOptions& transfer) {
    RemoteModel m;
    m.name = rn.name;
    std::vector<std::string> auth;
    if (!opts.hf_token.empty()) auth.push_back("Authorization: Bearer " + opts.hf_token);
    m.sources = sources_for(rn.base_url, auth, opts);
    const std::string display = "hf.co/" + rn.hf_repo;
    auto text = fetch_text(m.sources, "/api/models/" + escape_path(rn.hf_repo) + "/tree/main?recursive=true",
                           {"Accept: application/json"}, transfer, 64 << 20);
    if (!text.ok()) {
        if (text.status().code() == StatusCode::not_found)
            return error(StatusCode::not_found,
                         "model '" + display + "' not found: the Hub has no repository " + rn.hf_repo + " (" +
                             text.status().message() + ")");
        if (text.status().code() == StatusCode::invalid_argument)
            return error(StatusCode::invalid_argument, "the Hub refused to list " + rn.hf_repo +
                                                           " (a gated or private repository needs HF_TOKEN): " +
                                                           text.status().message());
        return text.status().with_context("listing " + rn.hf_repo + " on the Hub");
    }
    auto listing = json::parse(*text, nullptr, false);
    if (!listing.is_array()) return error(StatusCode::corrupt, "the Hub's file list of " + rn.hf_repo + " is not a JSON array");
    std::map<std::string, HfFile> files;
    std::vector<std::string> names;
    for (const auto& e : listing) {
        if (!e.is_object() || !e.contains("path") || !e["path"].is_string()) continue;
        if (e.contains("type") && e["type"] != "file") continue;
        HfFile f;
        f.path = e["path"].get<std::string>();
        if (e.contains("size") && e["size"].is_number_integer()) f.size = e["size"].get<int64_t>();
        if (e.contains("lfs") && e["lfs"].is_object()) {
            const json& lfs = e["lfs"];
            // The tree API says "oid"; the model API's blobs=true says "sha256".
            for (const char* key : {"oid", "sha256"})
                if (lfs.contains(key) && lfs[key].is_string()) f.sha256 = lower(lfs[key].get<std::string>());
            if (lfs.contains("size") && lfs["size"].is_number_integer()) f.size = lfs["size"].get<int64_t>();
        }
        names.push_back(f.path);
        files[f.path] = std::move(f);
    }
    HEARTH_ASSIGN(m.hf_file, pick_hf_file(names, rn.hf_quant, rn.hf_repo));
    if (is_split(m.hf_file))
        return error(StatusCode::unsupported, "the GGUF picked in " + rn.hf_repo + " (" + m.hf_file +
                                                  ") is split into several files; hearth cannot pull split GGUFs yet");
    std::vector<std::pair<std::string, const HfFile*>> layers{{kMediaModel, &files[m.hf_file]}};
    // A vision projector rides along, as in the Hub's own Ollama manifests: the F16 one if
    // there are several.
    std::vector<std::string> projectors;
    for (const auto& n : names)
        if (is_gguf(n) && is_mmproj(n)) projectors.push_back(n);
    std::sort(projectors.begin(), projectors.end());
    if (!projectors.empty()) {
        std::string pick = projectors.front();
        for (const auto& p : projectors)
            if (lower(basename(p)).find("f16") != std::string::npos) {
                pick = p;
                break;
            }
        layers.push_back({kMediaProjector, &files[pick]});
    }
    json manifest_layers = json::array();
    std::vector<std::string> diff_ids;
    for (const auto& [type, f] : layers) {
        if (f->sha256.size() != 64)
            return error(StatusCode::unsupported, "the Hub gives no sha256 for " + rn.hf_repo + "/" + f->path +
                                                      " (not an LFS file), so it cannot be verified");
        Layer l{type, "sha256:" + f->sha256, f->size};
        if (!valid_digest(l.digest))
            return error(StatusCode::corrupt, "the Hub gives " + f->path + " a malformed sha256 \"" + f->sha256 + "\"");
        manifest_layers.push_back({{"mediaType", l.media_type}, {"digest", l.digest}, {"size", l.size}});
        diff_ids.push_back(l.digest);
        m.blobs.push_back({l, "/" + escape_path(rn.hf_repo) + "/resolve/main/" + escape_path(f->path), ""});
    }
    // Ollama's config blob: what `ollama show` reads for the format and quantization.
    std::string quant = rn.hf_quant.empty() ? std::string(kDefaultHfQuant) : rn.hf_quant;
    if (!has_word(lower(basename(m.hf_file)), lower(quant))) quant.clear();
    json config = {{"model_format", "gguf"},
                   {"file_type", upper(quant)},
                   {"architecture", "amd64"},
                   {"os", "linux"},
                   {"rootfs", {{"type", "layers"}, {"diff_ids", diff_ids}}}};
    const std::string config_text = config.dump();
    Layer cl{kMediaImageConfig, "sha256:" + sha256_hex(std::string_view(config_text)), (int64_t)config_text.size()};
    m.blobs.insert(m.blobs.begin(), RemoteBlob{cl, "", config_text});
    json manifest = {{"schemaVersion", 2},
                     {"mediaType", kMediaManifestV2},
                     {"config", {{"mediaType", cl.media_type}, {"digest", cl.digest}, {"size", cl.size}}},
                     {"layers", manifest_layers}};
    m.manifest_text = manifest.dump();
    HEARTH_ASSIGN(m.manifest, Manifest::parse(m.manifest_text));
    return m;
}

}  // namespace

Result<RegistryOptions> RegistryOptions::from_env() {
    RegistryOptions o;
    if (const char* e = std::getenv("HF_ENDPOINT"); e && *e) {
        o.hf_endpoint = trim_slashes(e);
        if (!is_http_url(o.hf_endpoint))
            return error(StatusCode::invalid_argument, "HF_ENDPOINT: \"" + std::string(e) + "\" is not an http(s) URL");
    }
    for (const char* var : {"HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"})
        if (const char* e = std::getenv(var); e && *e && o.hf_token.empty()) o.hf_token = e;
    if (const char* e = std::getenv("HEARTH_MIRRORS"); e && *e) {
        const std::string all = e;
        size_t start = 0;
        for (;;) {
            const size_t p = all.find(',', start);
            const std::string m = trim_slashes(all.substr(start, p == std::string::npos ? std::string::npos : p - start));
            if (!m.empty()) {
                if (!is_http_url(m))
                    return error(StatusCode::invalid_argument, "HEARTH_MIRRORS: \"" + m + "\" is not an http(s) URL");
                o.mirrors.push_back(m);
            }
            if (p == std::string::npos) break;
            start = p + 1;
        }
    }
    return o;
}

Result<RemoteName> parse_remote_name(std::string_view text, const RegistryOptions& opts) {
    if (looks_like_path(text))
        return error(StatusCode::invalid_argument, "\"" + std::string(text) + "\" is a file path, not a model to pull");
    const bool plain_http = text.substr(0, 7) == "http://";
    if (plain_http && !opts.insecure)
        return error(StatusCode::invalid_argument,
                     "\"" + std::string(text) + "\" asks for plain http; pulling over http needs --insecure");
    HEARTH_ASSIGN(ModelName name, ModelName::parse(text));
    RemoteName r;
    r.name = name;
    if (is_hf_host(name.host)) {
        r.kind = RemoteName::Kind::huggingface;
        r.base_url = opts.hf_endpoint;
        r.hf_repo = name.ns + "/" + name.model;
        r.hf_quant = name.tag == kDefaultTag ? "" : name.tag;
        return r;
    }
    r.base_url = std::string(plain_http || opts.insecure ? "http://" : "https://") + name.host;
    return r;
}

Result<RemoteModel> fetch_remote(const RemoteName& name, const RegistryOptions& opts, const TransferOptions& transfer) {
    if (name.kind == RemoteName::Kind::huggingface) return fetch_hf(name, opts, transfer);
    return fetch_registry(name, opts, transfer);
}

Result<std::string> pick_hf_file(const std::vector<std::string>& files, const std::string& quant,
                                 const std::string& repo) {
    std::vector<std::string> models;
    for (const auto& f : files)
        if (is_gguf(f) && !is_mmproj(f)) models.push_back(f);
    std::sort(models.begin(), models.end());
    if (models.empty()) return error(StatusCode::not_found, "model 'hf.co/" + repo + "' not found: " + repo + " has no GGUF file");
    const std::string want = lower(quant.empty() ? std::string(kDefaultHfQuant) : quant);
    std::vector<std::string> hits, word_hits;
    for (const auto& f : models) {
        const std::string l = lower(f);
        if (l.find(want) == std::string::npos) continue;
        hits.push_back(f);
        if (has_word(l, want)) word_hits.push_back(f);
    }
    // A split GGUF's parts all match: its first part stands for them.
    auto firsts = [](std::vector<std::string> v) {
        v.erase(std::remove_if(v.begin(), v.end(),
                               [](const std::string& f) { return is_split(f) && !std::regex_search(f, std::regex(R"(-00001-of-)")); }),
                v.end());
        return v;
    };
    hits = firsts(hits);
    word_hits = firsts(word_hits);
    if (hits.size() == 1) return hits[0];
    if (word_hits.size() == 1) return word_hits[0];
    if (hits.size() > 1)
        return error(StatusCode::invalid_argument, "several GGUF files of " + repo + " match '" + (quant.empty() ? kDefaultHfQuant : quant) +
                                                       "': " + join(hits, ", ") + "; name one exactly with the tag");
    if (quant.empty() && firsts(models).size() == 1) return firsts(models)[0];
    std::vector<std::string> names;
    for (const auto& f : models) names.push_back(basename(f));
    if (quant.empty())
        return error(StatusCode::invalid_argument, repo + " has several GGUF files and none is " + kDefaultHfQuant +
                                                       "; pick one with a tag, e.g. hf.co/" + repo + ":<quant> (files: " +
                                                       join(names, ", ") + ")");
    return error(StatusCode::not_found, "model 'hf.co/" + repo + ":" + quant + "' not found: no GGUF file of " + repo +
                                            " matches '" + quant + "' (files: " + join(names, ", ") + ")");
}

}  // namespace hearth::store
