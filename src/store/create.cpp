#include "store/create.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>

#include "gguf/gguf.h"
#include "model/lora.h"
#include "store/convert.h"
#include "store/gguf_info.h"
#include "store/quantize.h"

namespace hearth::store {
namespace fs = std::filesystem;
namespace {

using json = nlohmann::json;

constexpr const char* kConfigMediaType = "application/vnd.docker.container.image.v1+json";

std::string lower(std::string s) {
    for (char& c : s) c = (char)std::tolower((unsigned char)c);
    return s;
}

bool ends_with_ci(const std::string& s, std::string_view suffix) {
    return s.size() >= suffix.size() && lower(s.substr(s.size() - suffix.size())) == suffix;
}

bool is_hex64(std::string_view s) {
    return s.size() == 64 &&
           std::all_of(s.begin(), s.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

// "sha256:<hex>" for "@sha256:<hex>", "sha256:<hex>" or "sha256-<hex>"; "" otherwise.
std::string as_digest(std::string_view s) {
    if (!s.empty() && s.front() == '@') s.remove_prefix(1);
    if ((s.substr(0, 7) == "sha256:" || s.substr(0, 7) == "sha256-") && is_hex64(s.substr(7)))
        return "sha256:" + std::string(s.substr(7));
    return {};
}

std::string expand_path(const std::string& p, const std::string& base_dir) {
    if (p == "~" || p.rfind("~/", 0) == 0) {
        const char* home = std::getenv("HOME");
        return std::string(home ? home : "") + p.substr(1);
    }
    if (!p.empty() && p.front() == '/') return p;
    return (fs::path(base_dir.empty() ? "." : base_dir) / p).string();
}

Result<std::string> read_file_text(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) return error(StatusCode::not_found, path + ": cannot open");
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

std::string human_size(int64_t n) {
    if (n >= 1000000000) return strformat("%.1f GB", (double)n / 1e9);
    if (n >= 1000000) return strformat("%.1f MB", (double)n / 1e6);
    if (n >= 1000) return strformat("%.1f KB", (double)n / 1e3);
    return strformat("%lld B", (long long)n);
}

// "sha256:<hex>" when `path` names a blob of this store (the FROM `show --modelfile` writes:
// its name is its digest, so it needs no hashing), else "".
std::string store_blob_digest(const Store& store, const std::string& path) {
    std::error_code ec;
    const fs::path abs = fs::absolute(path, ec).lexically_normal();
    const std::string fname = abs.filename().string();
    if (fname.rfind("sha256-", 0) != 0 || !is_hex64(fname.substr(7))) return {};
    if (fs::weakly_canonical(abs.parent_path(), ec) != fs::weakly_canonical(fs::path(store.root()) / "blobs", ec)) return {};
    const std::string d = "sha256:" + fname.substr(7);
    return store.has_blob(d) ? d : std::string();
}

enum class SourceKind { store_model, blob, gguf_file, checkpoint_dir, checkpoint_files };

struct Source {
    SourceKind kind = SourceKind::store_model;
    std::string path;    // gguf_file, checkpoint_dir
    std::string digest;  // blob
    std::string name;    // store_model
    Manifest base;       // store_model
    std::map<std::string, std::string> files;  // checkpoint_files: name -> digest
};

// A name in `files` that is safe to recreate under a folder: relative, no "..".
bool safe_file_name(const std::string& name) {
    if (name.empty() || name.front() == '/' || name.find('\\') != std::string::npos) return false;
    for (const auto& part : fs::path(name))
        if (part == ".." || part == ".") return false;
    return true;
}

Result<Source> resolve_source(const Store& store, const CreateRequest& req) {
    Source src;
    if (!req.files.empty()) {
        if (!req.from.empty())
            return error(StatusCode::invalid_argument, "give either \"from\" or \"files\", not both");
        std::vector<std::string> ggufs;
        bool safetensors = false, config = false;
        for (const auto& [name, digest] : req.files) {
            if (!safe_file_name(name)) return error(StatusCode::invalid_argument, "files: bad file name \"" + name + "\"");
            const std::string d = as_digest(digest);
            if (d.empty())
                return error(StatusCode::invalid_argument, "files: \"" + name + "\": expected a digest sha256:<64 hex>, got \"" + digest + "\"");
            if (!store.has_blob(d))
                return error(StatusCode::invalid_argument, "files: \"" + name + "\": blob " + d +
                                                               " is not in the store (upload it first with POST /api/blobs/" + d + ")");
            if (ends_with_ci(name, ".gguf")) ggufs.push_back(d);
            safetensors |= ends_with_ci(name, ".safetensors");
            config |= fs::path(name).filename() == "config.json";
        }
        if (ggufs.size() > 1)
            return error(StatusCode::unsupported,
                         "files: more than one .gguf file; hearth builds a model from one GGUF (vision projectors and "
                         "split GGUF files are not supported yet)");
        if (ggufs.size() == 1) {
            src.kind = SourceKind::blob;
            src.digest = ggufs[0];
            return src;
        }
        if (safetensors) {
            if (!config) return error(StatusCode::invalid_argument, "files: a safetensors checkpoint needs its config.json");
            src.kind = SourceKind::checkpoint_files;
            src.files = req.files;
            return src;
        }
        return error(StatusCode::invalid_argument, "files: no .gguf or .safetensors file among them");
    }
    if (req.from.empty()) return error(StatusCode::invalid_argument, "no base model: set \"from\" (FROM in a Modelfile) or \"files\"");
    if (const std::string d = as_digest(req.from); !d.empty()) {
        if (!store.has_blob(d))
            return error(StatusCode::invalid_argument, "FROM " + req.from + ": the blob is not in the store (upload it first with POST /api/blobs/" + d + ")");
        src.kind = SourceKind::blob;
        src.digest = d;
        return src;
    }
    if (looks_like_path(req.from)) {
        if (const std::string d = store_blob_digest(store, expand_path(req.from, req.base_dir)); !d.empty()) {
            src.kind = SourceKind::blob;
            src.digest = d;
            return src;
        }
    }
    if (req.allow_paths) {
        const std::string p = expand_path(req.from, req.base_dir);
        std::error_code ec;
        if (fs::is_directory(p, ec)) {
            if (is_hf_checkpoint(p)) {
                src.kind = SourceKind::checkpoint_dir;
                src.path = p;
                return src;
            }
            std::vector<std::string> ggufs;
            for (auto it = fs::directory_iterator(p, ec); !ec && it != fs::directory_iterator(); it.increment(ec))
                if (it->is_regular_file(ec) && ends_with_ci(it->path().filename().string(), ".gguf")) ggufs.push_back(it->path().string());
            if (ggufs.size() == 1) {
                src.kind = SourceKind::gguf_file;
                src.path = ggufs[0];
                return src;
            }
            return error(StatusCode::invalid_argument,
                         "FROM " + req.from + ": the folder holds " +
                             (ggufs.empty() ? std::string("neither a Hugging Face checkpoint (config.json and *.safetensors) nor a .gguf file")
                                            : "several .gguf files; name one"));
        }
        if (fs::exists(p, ec)) {
            src.kind = SourceKind::gguf_file;
            src.path = p;
            return src;
        }
        if (looks_like_path(req.from))
            return error(StatusCode::not_found, "FROM " + req.from + ": no such file (looked for " + p + ")");
    } else if (looks_like_path(req.from)) {
        return error(StatusCode::invalid_argument,
                     "\"from\": a local path is not accepted over the API (only this store's own blobs, as `show "
                     "--modelfile` writes them); upload the file with POST /api/blobs/<digest> and name it in \"files\"");
    }
    auto name = ModelName::parse(req.from);
    if (!name.ok()) return error(StatusCode::invalid_argument, "FROM " + req.from + ": " + name.status().message());
    auto m = store.read_manifest(req.from);
    if (!m.ok()) {
        if (m.status().code() == StatusCode::not_found)
            return error(StatusCode::not_found, "base model '" + req.from + "' not found (pull it first, or give a .gguf path)");
        return m.status();
    }
    if (!m->find(kMediaModel))
        return error(StatusCode::invalid_argument, "base model '" + req.from + "' has no model (GGUF) layer");
    src.kind = SourceKind::store_model;
    src.name = name->display();
    src.base = std::move(m).value();
    return src;
}

// One LoRA adapter of the request: a blob already in the store, or (a Modelfile's ADAPTER) a
// file to link, reference or copy in as FROM files are.
struct AdapterSource {
    std::string label;   // as the user named it, for messages: ADAPTER ./lora.gguf, adapters: "x.gguf"
    std::string digest;  // a blob of the store, or ""
    std::string path;    // a file outside the store (digest empty)
};

// Resolves the request's adapters and checks that each is a LoRA adapter GGUF (its metadata
// and tensor pairs; the fit to the weights is checked once the weights are known).
// invalid_argument / not_found / unsupported naming the adapter.
Result<std::vector<AdapterSource>> resolve_adapters(const Store& store, const CreateRequest& req) {
    std::vector<AdapterSource> out;
    auto not_gguf = [](const std::string& label) {
        return error(StatusCode::unsupported, label + ": hearth applies LoRA adapters in GGUF only; convert a "
                                                      "safetensors adapter with llama.cpp's convert_lora_to_gguf.py");
    };
    for (const auto& [name, digest] : req.adapters) {
        const std::string label = "adapters: \"" + name + "\"";
        if (ends_with_ci(name, ".safetensors") || ends_with_ci(name, ".bin") || name == "adapter_config.json")
            return not_gguf(label);
        const std::string d = as_digest(digest);
        if (d.empty())
            return error(StatusCode::invalid_argument, label + ": expected a digest sha256:<64 hex>, got \"" + digest + "\"");
        if (!store.has_blob(d))
            return error(StatusCode::invalid_argument,
                         label + ": blob " + d + " is not in the store (upload it first with POST /api/blobs/" + d + ")");
        out.push_back({label, d, ""});
    }
    for (const std::string& p : req.adapter_paths) {
        const std::string label = "ADAPTER " + p;
        if (const std::string d = as_digest(p); !d.empty()) {
            if (!store.has_blob(d))
                return error(StatusCode::invalid_argument, label + ": the blob is not in the store");
            out.push_back({label, d, ""});
            continue;
        }
        const std::string path = expand_path(p, req.base_dir);
        if (const std::string d = store_blob_digest(store, path); !d.empty()) {
            out.push_back({label, d, ""});
            continue;
        }
        if (!req.allow_paths)
            return error(StatusCode::invalid_argument, label + ": a local path is not accepted over the API; upload the "
                                                               "file with POST /api/blobs/<digest> and name it in \"adapters\"");
        std::error_code ec;
        if (fs::is_directory(path, ec)) return not_gguf(label + " (a folder)");
        if (!fs::exists(path, ec)) return error(StatusCode::not_found, label + ": no such file (looked for " + path + ")");
        out.push_back({label, "", path});
    }
    for (const AdapterSource& a : out) {
        Result<std::string> file = a.digest.empty() ? Result<std::string>(a.path) : store.blob_file(a.digest);
        if (!file.ok()) return file.status().with_context(a.label);
        auto f = gguf::open_gguf(*file);
        if (!f.ok()) return error(StatusCode::invalid_argument, a.label + ": not a GGUF file hearth can read: " + f.status().message());
        auto lora = model::read_lora_adapter(std::move(f).value(), a.label);
        if (!lora.ok())
            return error(lora.status().code() == StatusCode::unsupported ? StatusCode::unsupported : StatusCode::invalid_argument,
                         lora.status().message());
    }
    return out;
}

// Emits statuses; byte progress at most every 200 ms (and at the end).
class Reporter {
public:
    explicit Reporter(const CreateProgress& p) : p_(p) {}
    bool say(const std::string& status, const std::string& digest = {}) {
        if (!p_) return true;
        CreateStatus s;
        s.status = status;
        s.digest = digest;
        return ok_ = ok_ && p_(s);
    }
    bool bytes(const std::string& status, int64_t done, int64_t total, const std::string& digest = {}) {
        if (!p_) return true;
        std::lock_guard lk(mu_);  // quantize reports from its workers
        const auto now = std::chrono::steady_clock::now();
        if (done < total && now - last_ < std::chrono::milliseconds(200)) return ok_;
        last_ = now;
        CreateStatus s;
        s.status = status;
        s.digest = digest;
        s.total = total;
        s.completed = done;
        return ok_ = ok_ && p_(s);
    }
    bool ok() const { return ok_; }

private:
    const CreateProgress& p_;
    std::mutex mu_;
    std::chrono::steady_clock::time_point last_{};
    bool ok_ = true;
};

Status cancelled() { return error(StatusCode::io_error, "create cancelled"); }

class Builder {
public:
    Builder(Store& store, const CreateRequest& req, Reporter& rep) : store_(store), req_(req), rep_(rep) {}
    std::vector<std::string> added;  // blobs this create put in the store

    Status run() {
        HEARTH_ASSIGN(Source src, resolve_source(store_, req_));
        json config = json::object();
        std::vector<Layer> layers;
        Layer model;
        model.media_type = kMediaModel;
        switch (src.kind) {
        case SourceKind::store_model: {
            for (const auto& l : src.base.layers)
                if (!rep_.say("using existing layer " + l.digest, l.digest)) return cancelled();
            layers = src.base.layers;
            model = *src.base.find(kMediaModel);
            if (auto t = read_file_text(store_.blob_path(src.base.config.digest)); t.ok()) {
                json c = json::parse(*t, nullptr, false);
                if (c.is_object()) config = c;
            }
            break;
        }
        case SourceKind::blob:
            if (!rep_.say("parsing GGUF")) return cancelled();
            model.digest = src.digest;
            if (!rep_.say("using existing layer " + src.digest, src.digest)) return cancelled();
            break;
        case SourceKind::gguf_file: {
            HEARTH_ASSIGN(model.digest, adopt(src.path));
            break;
        }
        case SourceKind::checkpoint_dir: {
            HEARTH_ASSIGN(model.digest, convert(src.path));
            break;
        }
        case SourceKind::checkpoint_files: {
            // convert_hf_checkpoint reads a folder: one of links named as the client named them.
            const std::string dir = store_.temp_path(".checkpoint");
            std::error_code ec;
            fs::create_directories(dir, ec);
            if (ec) return error(StatusCode::io_error, dir + ": " + ec.message());
            Status st;
            for (const auto& [name, digest] : src.files) {
                const fs::path link = fs::path(dir) / name;
                fs::create_directories(link.parent_path(), ec);
                fs::create_symlink(store_.blob_path(as_digest(digest)), link, ec);
                if (ec) {
                    st = error(StatusCode::io_error, link.string() + ": " + ec.message());
                    break;
                }
            }
            Result<std::string> d = st.ok() ? convert(dir) : Result<std::string>(st);
            fs::remove_all(dir, ec);
            if (!d.ok()) return d.status();
            model.digest = *d;
            break;
        }
        }

        if (!req_.quantize.empty()) {
            HEARTH_ASSIGN(model.digest, quantize(model.digest));
        }

        // The blob, or the file a reference names (adopted from another file system).
        HEARTH_ASSIGN(const std::string model_path, store_.blob_file(model.digest));
        std::error_code ec;
        model.size = (int64_t)fs::file_size(model_path, ec);
        auto info = read_gguf_info(model_path);
        if (!info.ok()) return error(StatusCode::invalid_argument, "the model file is not a GGUF file hearth can read: " + info.status().message());
        if (info->file && info->file->meta.find("general.type")) {
            const auto* t = info->file->meta.find("general.type");
            if (t->str == "adapter" || t->str == "mmproj" || t->str == "projector")
                return error(StatusCode::invalid_argument,
                             "the model file is a " + t->str + " GGUF (general.type), not a model; FROM needs the base model's weights");
        }

        // The weights replace the base's in place (its position kept), else go first.
        auto it = std::find_if(layers.begin(), layers.end(), [](const Layer& l) { return l.media_type == kMediaModel; });
        if (it != layers.end()) *it = model;
        else layers.insert(layers.begin(), model);
        HEARTH_TRY(add_adapters(layers, model_path));

        if (req_.template_text && !req_.template_text->empty()) HEARTH_TRY(set_text(layers, kMediaTemplate, *req_.template_text));
        if (req_.system) {
            if (req_.system->empty()) remove_type(layers, kMediaSystem);
            else HEARTH_TRY(set_text(layers, kMediaSystem, *req_.system));
        }
        HEARTH_TRY(set_params(layers));
        if (req_.messages) {
            if (req_.messages->empty()) {
                remove_type(layers, kMediaMessages);
            } else {
                json msgs = json::array();
                for (const auto& m : *req_.messages) msgs.push_back({{"role", m.role}, {"content", m.content}});
                HEARTH_TRY(set_text(layers, kMediaMessages, msgs.dump()));
            }
        }
        for (const auto& l : req_.licenses) {
            HEARTH_ASSIGN(Layer layer, write_layer(l, kMediaLicense));
            const bool have = std::any_of(layers.begin(), layers.end(), [&](const Layer& x) {
                return x.media_type == kMediaLicense && x.digest == layer.digest;
            });
            if (!have) layers.push_back(layer);
        }

        // The config Ollama writes (server/images.go ConfigV2); keys of a base model's config kept.
        config["model_format"] = "gguf";
        config["model_family"] = info->architecture;
        config["model_families"] = json::array({info->architecture});
        config["model_type"] = info->parameter_size;
        config["file_type"] = info->quantization;
        if (!req_.requires_version.empty()) config["requires"] = req_.requires_version;
        if (!config.contains("architecture")) config["architecture"] = "amd64";
        if (!config.contains("os")) config["os"] = "linux";
        HEARTH_ASSIGN(Layer cfg, write_layer(config.dump(), kConfigMediaType, /*quiet=*/true));

        Manifest m;
        m.config = cfg;
        m.layers = std::move(layers);
        if (!rep_.say("writing manifest")) return cancelled();
        HEARTH_TRY(store_.write_manifest(req_.model, m));
        rep_.say("success");
        return {};
    }

private:
    static void remove_type(std::vector<Layer>& layers, const char* type) {
        std::erase_if(layers, [&](const Layer& l) { return l.media_type == type; });
    }

    // The request's LoRA adapters (application/vnd.ollama.image.adapter layers, applied at load),
    // each checked against the weights at `model_path` (architecture, tensor names and shapes),
    // added after those the base model already has; one already there is kept once.
    Status add_adapters(std::vector<Layer>& layers, const std::string& model_path) {
        if (req_.adapters.empty() && req_.adapter_paths.empty()) return {};
        HEARTH_ASSIGN(std::vector<AdapterSource> sources, resolve_adapters(store_, req_));
        auto weights = gguf::open_gguf(model_path);
        if (!weights.ok()) return weights.status();
        for (const AdapterSource& a : sources) {
            {
                Result<std::string> file = a.digest.empty() ? Result<std::string>(a.path) : store_.blob_file(a.digest);
                if (!file.ok()) return file.status().with_context(a.label);
                auto f = gguf::open_gguf(*file);
                if (!f.ok()) return f.status().with_context(a.label);
                HEARTH_ASSIGN(model::LoraAdapter lora, model::read_lora_adapter(std::move(f).value(), a.label));
                if (Status st = model::check_lora_against(lora, **weights); !st.ok())
                    return error(st.code() == StatusCode::unsupported ? StatusCode::unsupported : StatusCode::invalid_argument,
                                 st.message());
            }
            Layer l;
            l.media_type = kMediaAdapter;
            if (a.digest.empty()) {
                HEARTH_ASSIGN(l.digest, adopt(a.path));
            } else {
                l.digest = a.digest;
                if (!rep_.say("using existing layer " + a.digest, a.digest)) return cancelled();
            }
            HEARTH_ASSIGN(const std::string file, store_.blob_file(l.digest));
            std::error_code ec;
            l.size = (int64_t)fs::file_size(file, ec);
            const bool have = std::any_of(layers.begin(), layers.end(), [&](const Layer& x) {
                return x.media_type == kMediaAdapter && x.digest == l.digest;
            });
            if (!have) layers.push_back(l);
        }
        return {};
    }

    Result<Layer> write_layer(const std::string& bytes, const char* type, bool quiet = false) {
        const bool existed = store_.has_blob("sha256:" + sha256_hex(std::string_view(bytes)));
        HEARTH_ASSIGN(Layer l, store_.write_blob(bytes, type));
        if (!existed) added.push_back(l.digest);
        if (!quiet && !rep_.say((existed ? "using existing layer " : "creating new layer ") + l.digest, l.digest)) return cancelled();
        return l;
    }

    Status set_text(std::vector<Layer>& layers, const char* type, const std::string& text) {
        HEARTH_ASSIGN(Layer l, write_layer(text, type));
        remove_type(layers, type);
        layers.push_back(l);
        return {};
    }

    // The base's params, overridden key by key by the request's (as Ollama's setParameters).
    Status set_params(std::vector<Layer>& layers) {
        if (!req_.parameters.is_object() || req_.parameters.empty()) return {};
        json params = json::object();
        for (const auto& l : layers) {
            if (l.media_type != kMediaParams) continue;
            if (auto t = read_file_text(store_.blob_path(l.digest)); t.ok()) {
                json p = json::parse(*t, nullptr, false);
                if (p.is_object()) params = p;
            }
        }
        for (const auto& [k, v] : req_.parameters.items()) {
            HEARTH_ASSIGN(json nv, normalize_parameter(k, v));
            params[k] = nv;
        }
        return set_text(layers, kMediaParams, params.dump());
    }

    // A .gguf outside the store: linked or copied into blobs/.
    Result<std::string> adopt(const std::string& path) {
        const std::string file = fs::path(path).filename().string();
        if (!rep_.say("parsing GGUF")) return cancelled();
        if (auto info = read_gguf_info(path); !info.ok())
            return error(StatusCode::invalid_argument, path + " is not a GGUF model file hearth can read: " + info.status().message());
        const std::string status = "hashing " + file;
        auto a = store_.adopt_file(path, [&](int64_t done, int64_t total) { return rep_.bytes(status, done, total); });
        if (!a.ok()) return rep_.ok() ? a.status() : cancelled();
        if (a->existed) {
            if (!rep_.say("using existing layer " + a->digest, a->digest)) return cancelled();
        } else {
            added.push_back(a->digest);
            const std::string how =
                a->linked       ? "linked " + file + " into the store (a hard link: no space used)"
                : a->referenced ? "referenced " + a->path + " in place (" + human_size(a->size) +
                                      " on another file system: no copy; keep the file where it is, unchanged)"
                                : "copied " + file + " into the store (" + human_size(a->size) +
                                      "; it is on another file system, so it cannot be hard-linked)";
            if (!rep_.say(how, a->digest) || !rep_.say("creating new layer " + a->digest, a->digest)) return cancelled();
        }
        return a->digest;
    }

    Result<std::string> convert(const std::string& dir) {
        if (!rep_.say("converting model")) return cancelled();
        const std::string tmp = store_.temp_path(".gguf");
        ConvertOptions opt;
        opt.out_type = "auto";
        opt.progress = [&](int64_t done, int64_t total) { rep_.bytes("converting model", done, total); };
        Status s = convert_hf_checkpoint(dir, tmp, opt);
        if (!s.ok()) {
            ::unlink(tmp.c_str());
            return s;
        }
        if (!rep_.ok()) {
            ::unlink(tmp.c_str());
            return cancelled();
        }
        HEARTH_ASSIGN(std::string d, store_.commit_file(tmp));
        added.push_back(d);
        if (!rep_.say("creating new layer " + d, d)) return cancelled();
        return d;
    }

    Result<std::string> quantize(const std::string& digest) {
        HEARTH_ASSIGN(QuantizeTarget target, parse_quantize_type(req_.quantize));
        HEARTH_ASSIGN(const std::string in, store_.blob_file(digest));
        auto info = read_gguf_info(in);
        if (!info.ok()) return error(StatusCode::invalid_argument, "the model file is not a GGUF file hearth can read: " + info.status().message());
        const std::string status = "quantizing " + (info->quantization.empty() ? std::string("the") : info->quantization) +
                                   " model to " + target.name;
        if (!rep_.say(status)) return cancelled();
        const std::string tmp = store_.temp_path(".gguf");
        QuantizeOptions opt;
        opt.type = req_.quantize;
        opt.progress = [&](int64_t done, int64_t total) { rep_.bytes(status, done, total); };
        Status s = quantize_gguf(in, tmp, opt);
        if (!s.ok()) {
            ::unlink(tmp.c_str());
            return s;
        }
        if (!rep_.ok()) {
            ::unlink(tmp.c_str());
            return cancelled();
        }
        HEARTH_ASSIGN(std::string d, store_.commit_file(tmp));
        added.push_back(d);
        if (!rep_.say("creating new layer " + d, d)) return cancelled();
        return d;
    }

    Store& store_;
    const CreateRequest& req_;
    Reporter& rep_;
};

}  // namespace

Result<CreateRequest> create_request(const Modelfile& mf, std::string model, std::string base_dir) {
    CreateRequest r;
    r.model = std::move(model);
    r.from = mf.from;
    r.adapter_paths = mf.adapters;
    r.template_text = mf.template_text;
    r.system = mf.system;
    if (!mf.parameters.empty()) r.parameters = mf.parameters;
    if (!mf.messages.empty()) r.messages = mf.messages;
    r.licenses = mf.licenses;
    r.requires_version = mf.requires_version;
    r.allow_paths = true;
    r.base_dir = std::move(base_dir);
    return r;
}

Status check_create(const Store& store, const CreateRequest& req) {
    if (req.model.empty()) return error(StatusCode::invalid_argument, "the model name is empty");
    HEARTH_TRY(ModelName::parse(req.model).status());
    HEARTH_TRY(resolve_adapters(store, req).status());
    if (!req.parameters.is_null()) {
        if (!req.parameters.is_object()) return error(StatusCode::invalid_argument, "\"parameters\" must be an object");
        for (const auto& [k, v] : req.parameters.items()) HEARTH_TRY(normalize_parameter(k, v).status());
    }
    if (req.template_text && !req.template_text->empty()) HEARTH_TRY(check_template(*req.template_text));
    if (req.messages)
        for (const auto& m : *req.messages)
            if (m.role != "system" && m.role != "user" && m.role != "assistant")
                return error(StatusCode::invalid_argument,
                             "message role must be one of \"system\", \"user\", or \"assistant\", got \"" + m.role + "\"");
    if (!req.quantize.empty()) HEARTH_TRY(parse_quantize_type(req.quantize).status());
    return resolve_source(store, req).status();
}

Status create_model(Store& store, const CreateRequest& req, const CreateProgress& progress) {
    HEARTH_TRY(check_create(store, req));
    store.remove_stale_temps();
    Reporter rep(progress);
    Builder b(store, req, rep);
    Status s = b.run();
    // On failure: everything it added. On success: intermediates no model uses (the unquantized
    // weights of a --quantize create, when this create brought them in).
    store.remove_unreferenced(b.added);
    return s;
}

// ---- import ----

ImportDirs default_import_dirs(const std::function<const char*(const char*)>& env) {
    auto get = [&](const char* k) -> std::string {
        const char* v = env(k);
        return v ? v : "";
    };
    const std::string home = get("HOME");
    ImportDirs d;
    if (const std::string hub = get("HF_HUB_CACHE"); !hub.empty()) d.hf_hub.push_back(hub);
    else if (const std::string hf = get("HF_HOME"); !hf.empty()) d.hf_hub.push_back(hf + "/hub");
    else if (const std::string xdg = get("XDG_CACHE_HOME"); !xdg.empty()) d.hf_hub.push_back(xdg + "/huggingface/hub");
    else if (!home.empty()) d.hf_hub.push_back(home + "/.cache/huggingface/hub");
    if (!home.empty()) {
        d.lmstudio.push_back(home + "/.lmstudio/models");
        d.lmstudio.push_back(home + "/.cache/lm-studio/models");
    }
    return d;
}

std::string quant_label(const std::string& file_name) {
    std::string stem = file_name;
    if (ends_with_ci(stem, ".gguf")) stem.resize(stem.size() - 5);
    // Tokens split at '-' and '.'; a label is I?Q<digit>[_X...], F16, BF16, F32 or MXFP4[_MOE].
    std::string best;
    size_t start = 0;
    for (size_t i = 0; i <= stem.size(); ++i) {
        if (i < stem.size() && stem[i] != '-' && stem[i] != '.') continue;
        std::string tok = stem.substr(start, i - start);
        start = i + 1;
        for (char& c : tok) c = (char)std::toupper((unsigned char)c);
        bool label = tok == "F16" || tok == "BF16" || tok == "F32" || tok == "MXFP4" || tok == "MXFP4_MOE";
        size_t p = tok.rfind("IQ", 0) == 0 ? 2 : tok.rfind("Q", 0) == 0 || tok.rfind("TQ", 0) == 0 ? (tok[0] == 'T' ? 2 : 1) : 0;
        if (!label && p > 0 && p < tok.size() && std::isdigit((unsigned char)tok[p])) {
            label = std::all_of(tok.begin() + (long)p, tok.end(), [](char c) { return std::isalnum((unsigned char)c) || c == '_'; });
        }
        if (label) best = tok;
    }
    return best;
}

namespace {

bool is_split_file(const std::string& name) {
    // <stem>-00001-of-00003.gguf
    const size_t of = name.rfind("-of-");
    return of != std::string::npos && of >= 6 && name[of - 6] == '-' &&
           std::all_of(name.begin() + (long)of - 5, name.begin() + (long)of, [](char c) { return std::isdigit((unsigned char)c); });
}

// A tag from a file stem: the characters a tag allows, others as '-'.
std::string tag_from_stem(std::string stem) {
    if (ends_with_ci(stem, ".gguf")) stem.resize(stem.size() - 5);
    for (char& c : stem)
        if (!std::isalnum((unsigned char)c) && c != '_' && c != '-' && c != '.') c = '-';
    while (!stem.empty() && (stem.front() == '.' || stem.front() == '-')) stem.erase(0, 1);
    if (stem.size() > 80) stem.resize(80);
    return stem.empty() ? "latest" : stem;
}

std::string sanitize_part(std::string s) {
    for (char& c : s)
        if (!std::isalnum((unsigned char)c) && c != '_' && c != '-' && c != '.') c = '-';
    while (!s.empty() && (s.front() == '.' || s.front() == '-')) s.erase(0, 1);
    if (s.size() > 80) s.resize(80);
    return s;
}

struct Found {
    std::string source, path, user, repo, file;
    int64_t size = 0;
    int rank = 0;  // among files of the same name in one repo: lower wins (the current revision first)
};

void scan_hf(const std::string& hub, std::vector<Found>& out) {
    std::error_code ec;
    for (auto it = fs::directory_iterator(hub, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
        const std::string dir = it->path().filename().string();
        if (dir.rfind("models--", 0) != 0) continue;
        const std::string rest = dir.substr(8);
        const size_t sep = rest.find("--");
        if (sep == std::string::npos) continue;
        const std::string user = rest.substr(0, sep), repo = rest.substr(sep + 2);
        std::string main_rev;
        if (auto t = read_file_text((it->path() / "refs" / "main").string()); t.ok()) {
            main_rev = *t;
            while (!main_rev.empty() && std::isspace((unsigned char)main_rev.back())) main_rev.pop_back();
        }
        std::error_code ec2;
        for (auto snap = fs::directory_iterator(it->path() / "snapshots", ec2); !ec2 && snap != fs::directory_iterator();
             snap.increment(ec2)) {
            const bool current = snap->path().filename() == main_rev;
            std::error_code ec3;
            for (auto f = fs::recursive_directory_iterator(snap->path(), ec3); !ec3 && f != fs::recursive_directory_iterator();
                 f.increment(ec3)) {
                const std::string name = f->path().filename().string();
                if (!ends_with_ci(name, ".gguf")) continue;
                std::error_code ec4;
                if (!fs::is_regular_file(f->path(), ec4)) continue;  // follows the snapshot's symlink; a missing blob is skipped
                Found x{"huggingface", f->path().string(), user, repo, name, (int64_t)fs::file_size(f->path(), ec4), current ? 0 : 1};
                out.push_back(std::move(x));
            }
        }
    }
}

void scan_lmstudio(const std::string& root, std::vector<Found>& out) {
    std::error_code ec;
    for (auto pub = fs::directory_iterator(root, ec); !ec && pub != fs::directory_iterator(); pub.increment(ec)) {
        if (!pub->is_directory(ec)) continue;
        std::error_code ec2;
        for (auto repo = fs::directory_iterator(pub->path(), ec2); !ec2 && repo != fs::directory_iterator(); repo.increment(ec2)) {
            if (!repo->is_directory(ec2)) continue;
            std::error_code ec3;
            for (auto f = fs::directory_iterator(repo->path(), ec3); !ec3 && f != fs::directory_iterator(); f.increment(ec3)) {
                const std::string name = f->path().filename().string();
                std::error_code ec4;
                if (!ends_with_ci(name, ".gguf") || !fs::is_regular_file(f->path(), ec4)) continue;
                out.push_back({"lmstudio", f->path().string(), pub->path().filename().string(),
                               repo->path().filename().string(), name, (int64_t)fs::file_size(f->path(), ec4), 2});
            }
        }
    }
}

}  // namespace

std::vector<ImportCandidate> find_importable(const Store& store, const ImportDirs& dirs) {
    std::vector<Found> found;
    for (const auto& d : dirs.hf_hub) scan_hf(d, found);
    for (const auto& d : dirs.lmstudio) scan_lmstudio(d, found);

    auto skip_reason = [](const Found& f) -> std::string {
        const std::string lname = lower(f.file);
        if (is_split_file(f.file)) return "split GGUF files are not supported yet";
        if (lname.rfind("mmproj", 0) == 0 || lname.find("-mmproj") != std::string::npos) return "a vision projector, not a model";
        return {};
    };
    // Tags: the quant label, unless two different files of one repo share it (then the file
    // stem); files that are skipped take their stem and no label.
    std::map<std::string, std::set<std::string>> files_per_label;  // user/repo:label -> file names
    for (const auto& f : found) {
        const std::string label = quant_label(f.file);
        if (!label.empty() && skip_reason(f).empty()) files_per_label[f.user + "/" + f.repo + ":" + label].insert(f.file);
    }
    std::map<std::string, ImportCandidate> by_model;
    std::map<std::string, int> rank_of;
    for (const auto& f : found) {
        ImportCandidate c;
        c.source = f.source;
        c.path = f.path;
        c.size = f.size;
        c.skip = skip_reason(f);
        std::string tag = c.skip.empty() ? quant_label(f.file) : "";
        if (tag.empty() || files_per_label[f.user + "/" + f.repo + ":" + tag].size() > 1) tag = tag_from_stem(f.file);
        c.model = "hf.co/" + sanitize_part(f.user) + "/" + sanitize_part(f.repo) + ":" + tag;
        if (c.skip.empty() && !ModelName::parse(c.model).ok()) c.skip = "no valid model name can be made from it";
        if (c.skip.empty()) {
            if (auto m = store.read_manifest(c.model); m.ok()) {
                const Layer* w = m->find(kMediaModel);
                struct stat a{}, b{};
                if (w && ::stat(store.blob_path(w->digest).c_str(), &a) == 0 && ::stat(f.path.c_str(), &b) == 0 &&
                    a.st_dev == b.st_dev && a.st_ino == b.st_ino) {
                    c.imported = true;
                } else if (w && w->size == f.size) {
                    c.imported = true;  // a copy made across file systems
                } else {
                    c.skip = "a model of that name exists (hearth rm it to import this file)";
                }
            }
        }
        // One candidate per name: the current revision's file wins over older snapshots, the
        // Hugging Face cache over LM Studio's copy.
        auto it = by_model.find(c.model);
        if (it == by_model.end() || f.rank < rank_of[c.model]) {
            rank_of[c.model] = f.rank;
            by_model[c.model] = std::move(c);
        }
    }
    std::vector<ImportCandidate> out;
    for (auto& [k, v] : by_model) out.push_back(std::move(v));
    return out;
}

}  // namespace hearth::store
