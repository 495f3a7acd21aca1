#include "store/name.h"

#include <cctype>
#include <vector>

namespace hearth::store {
namespace {

bool is_part_char(char c, bool host) {
    const unsigned char u = (unsigned char)c;
    return std::isalnum(u) || c == '_' || c == '-' || c == '.' || (host && c == ':');
}

Status check_part(std::string_view name, std::string_view part, const char* what, bool host, size_t max_len) {
    if (part.empty())
        return error(StatusCode::invalid_argument, "invalid model name \"" + std::string(name) + "\": empty " + what);
    if (part.size() > max_len)
        return error(StatusCode::invalid_argument,
                     strformat("invalid model name \"%s\": the %s is longer than %zu characters",
                               std::string(name).c_str(), what, max_len));
    for (char c : part)
        if (!is_part_char(c, host))
            return error(StatusCode::invalid_argument,
                         strformat("invalid model name \"%s\": the %s may hold only letters, digits, '_', '-' and '.'",
                                   std::string(name).c_str(), what));
    if (part.front() == '.' || part.front() == '-')
        return error(StatusCode::invalid_argument, "invalid model name \"" + std::string(name) + "\": the " + what +
                                                       " may not start with '.' or '-'");
    return {};
}

}  // namespace

Result<ModelName> ModelName::parse(std::string_view text) {
    std::string_view s = text;
    if (s.empty()) return error(StatusCode::invalid_argument, "the model name is empty");
    // "https://host/ns/model:tag" is accepted the way Ollama's parser accepts a scheme.
    for (std::string_view scheme : {"https://", "http://"})
        if (s.substr(0, scheme.size()) == scheme) s.remove_prefix(scheme.size());
    ModelName n;
    n.tag = kDefaultTag;
    const size_t slash = s.rfind('/');
    const size_t colon = s.rfind(':');
    if (colon != std::string_view::npos && (slash == std::string_view::npos || colon > slash)) {
        n.tag = std::string(s.substr(colon + 1));
        s = s.substr(0, colon);
    }
    std::vector<std::string_view> parts;
    size_t start = 0;
    for (;;) {
        const size_t p = s.find('/', start);
        parts.push_back(s.substr(start, p == std::string_view::npos ? std::string_view::npos : p - start));
        if (p == std::string_view::npos) break;
        start = p + 1;
    }
    n.host = kDefaultHost;
    n.ns = kDefaultNamespace;
    if (parts.size() == 1) {
        n.model = std::string(parts[0]);
    } else if (parts.size() == 2) {
        n.ns = std::string(parts[0]);
        n.model = std::string(parts[1]);
    } else if (parts.size() == 3) {
        n.host = std::string(parts[0]);
        n.ns = std::string(parts[1]);
        n.model = std::string(parts[2]);
    } else {
        return error(StatusCode::invalid_argument,
                     "invalid model name \"" + std::string(text) + "\": expected [host/][namespace/]model[:tag]");
    }
    HEARTH_TRY(check_part(text, n.host, "host", true, 350));
    HEARTH_TRY(check_part(text, n.ns, "namespace", false, 80));
    HEARTH_TRY(check_part(text, n.model, "model", false, 80));
    HEARTH_TRY(check_part(text, n.tag, "tag", false, 80));
    return n;
}

std::string ModelName::full() const { return host + "/" + ns + "/" + model + ":" + tag; }

std::string ModelName::display() const {
    if (host == kDefaultHost && ns == kDefaultNamespace) return model + ":" + tag;
    if (host == kDefaultHost) return ns + "/" + model + ":" + tag;
    return full();
}

std::string ModelName::manifest_rel() const { return "manifests/" + host + "/" + ns + "/" + model + "/" + tag; }

bool looks_like_path(std::string_view text) {
    auto starts = [&](std::string_view p) { return text.substr(0, p.size()) == p; };
    if (starts("/") || starts("./") || starts("../") || starts("~/")) return true;
    if (text.size() >= 5) {
        std::string tail(text.substr(text.size() - 5));
        for (char& c : tail) c = (char)std::tolower((unsigned char)c);
        if (tail == ".gguf") return true;
    }
    return false;
}

}  // namespace hearth::store
