// Model names as Ollama writes them: [host/][namespace/]model[:tag], with the defaults
// host registry.ollama.ai, namespace library and tag latest (Ollama's types/model/name.go).
// "llama3" is registry.ollama.ai/library/llama3:latest; "user/model:q4" is
// registry.ollama.ai/user/model:q4; "example.com:5000/ns/model:tag" names its own host.
//
// A name that looks like a file (ends in .gguf, or starts with /, ./, ../ or ~/) is a path, not
// a name: the store resolves it to that GGUF file (a local .gguf works wherever a name does).
#pragma once

#include <string>
#include <string_view>

#include "base/status.h"

namespace hearth::store {

inline constexpr const char* kDefaultHost = "registry.ollama.ai";
inline constexpr const char* kDefaultNamespace = "library";
inline constexpr const char* kDefaultTag = "latest";

struct ModelName {
    std::string host, ns, model, tag;

    // Fills the defaults and checks every part: model, namespace and tag take letters, digits,
    // '_', '-' and '.' (a tag also no leading '.' or '-'), a host also ':' (a port). Errors
    // (invalid_argument) quote the name and say which part is wrong. Case is kept (Ollama
    // compares names case-insensitively on some systems only; hearth keeps them exact).
    static Result<ModelName> parse(std::string_view text);

    // registry.ollama.ai/library/llama3:latest
    std::string full() const;
    // What Ollama shows: llama3:latest for the default host and namespace, user/model:tag for
    // the default host, the full name otherwise.
    std::string display() const;
    // manifests/<host>/<namespace>/<model>/<tag>, relative to the store root.
    std::string manifest_rel() const;

    bool operator==(const ModelName&) const = default;
};

// True when `text` should be read as a path to a GGUF file rather than a model name.
bool looks_like_path(std::string_view text);

}  // namespace hearth::store
