// Building a model in the store (`hearth create`, POST /api/create) and adopting GGUF files
// already on disk (`hearth import`).
//
// A created model is a layered manifest as Ollama writes one (peers.md §1.9): the weights
// (application/vnd.ollama.image.model), LoRA adapters (application/vnd.ollama.image.adapter),
// then template, system, params (JSON), messages (JSON) and license layers, and a config blob
// {model_format, model_family, model_families, model_type, file_type, ...}. Layers are content-addressed, so a model FROM another shares its weights and
// only its new small layers are written; a GGUF file FROM a path is hard-linked into the store
// (no second copy) when it is on the same file system, else copied.
//
// Crash safety: every blob lands under a temporary name, is hashed, fsynced and renamed; the
// manifest is written last, under the store lock that also checks its blobs are present. An
// interrupted or failed create leaves no manifest; a failure also removes the blobs it added that
// no model uses, and temporary files of killed runs are removed by the next create.
#pragma once

#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "base/status.h"
#include "store/modelfile.h"
#include "store/store.h"

namespace hearth::store {

struct CreateRequest {
    std::string model;  // the name to write ("mymodel", "user/model:tag")
    // The base, one of:
    //  - `from`: a store model name, or "@sha256:<hex>" / "sha256:<hex>" (a blob in the store);
    //    with allow_paths also a .gguf file or a Hugging Face checkpoint folder (absolute, ~/, or
    //    relative to base_dir);
    //  - `files`: file name -> "sha256:<hex>" of blobs already in the store (POST /api/blobs):
    //    one .gguf, or a checkpoint's config.json, tokenizer files and *.safetensors.
    std::string from;
    std::map<std::string, std::string> files;
    // LoRA adapters in GGUF (model/lora.h), stored as application/vnd.ollama.image.adapter
    // layers after the base's own and applied at load: the API's file name -> digest of blobs
    // in the store, a Modelfile's ADAPTER paths (absolute, ~/, or relative to base_dir; with
    // allow_paths, else only this store's blobs). Each must be a LoRA adapter for the weights'
    // architecture whose tensor pairs fit the weights.
    std::map<std::string, std::string> adapters;
    std::vector<std::string> adapter_paths;
    std::optional<std::string> template_text;  // Jinja; "" or nullopt: keep the base's
    std::optional<std::string> system;         // "" removes the base's
    nlohmann::json parameters;                 // null or an object of options, merged over the base's
    std::optional<std::vector<ModelfileMessage>> messages;  // replaces the base's
    std::vector<std::string> licenses;         // added to the base's
    std::string quantize;                      // "" or a quantize_gguf type ("q4_K_M")
    std::string requires_version;
    bool allow_paths = false;                  // the CLI: yes; the HTTP API: no (local files go up as blobs)
    std::string base_dir;                      // relative paths resolve here (the Modelfile's folder)
};

// A Modelfile as a request (allow_paths on). Errors: none today; kept a Result for checks that
// need the file system.
Result<CreateRequest> create_request(const Modelfile& mf, std::string model, std::string base_dir);

// Ollama's status objects: {"status": "..."}, with digest/total/completed while bytes move.
struct CreateStatus {
    std::string status;
    std::string digest;
    int64_t total = 0, completed = 0;  // bytes hashed, copied, converted or quantized; 0: none
};
// Called on the creating thread; returns false to cancel (a client that went away).
using CreateProgress = std::function<bool(const CreateStatus&)>;

// Everything that can be checked without moving bytes: the name, the base exists, files are in
// the store, the template parses as Jinja, parameter types, message roles, the quantize type,
// adapters (present and LoRA GGUFs; their fit to the weights is checked while building).
// invalid_argument / not_found / unsupported with a message for the user.
Status check_create(const Store& store, const CreateRequest& req);

// Builds the model; the last status is "success". On error nothing is visible under the name
// (an existing model of that name is untouched).
Status create_model(Store& store, const CreateRequest& req, const CreateProgress& progress = {});

// ---- import: GGUF files of other tools, adopted as store models ----

struct ImportDirs {
    std::vector<std::string> hf_hub;    // Hugging Face hub caches (models--<user>--<repo>/snapshots/<rev>/...)
    std::vector<std::string> lmstudio;  // LM Studio model folders (<publisher>/<repo>/*.gguf)
};
// HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub; ~/.lmstudio/models and
// ~/.cache/lm-studio/models. `env` reads a variable (nullptr when unset).
ImportDirs default_import_dirs(const std::function<const char*(const char*)>& env);

struct ImportCandidate {
    std::string source;  // "huggingface" or "lmstudio"
    std::string path;    // the .gguf as found (a Hugging Face snapshot entry is a symlink)
    std::string model;   // the store name it gets: hf.co/<user>/<repo>:<quant label or file stem>
    int64_t size = 0;
    bool imported = false;  // already in the store under that name (the same file)
    std::string skip;       // why it is not imported ("" when it is): split files, projectors, name taken
};
// Sorted by model name. Reads directories and file sizes only (no hashing).
std::vector<ImportCandidate> find_importable(const Store& store, const ImportDirs& dirs);

// The quant label in a GGUF file name ("Llama-3.2-1B-Instruct-Q4_K_M.gguf" -> "Q4_K_M"), "" when
// it has none.
std::string quant_label(const std::string& file_name);

}  // namespace hearth::store
