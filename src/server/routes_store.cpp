// Building models in the store over HTTP: POST /api/create (Ollama's create: from a model, a
// GGUF blob or safetensors files, with template/system/parameters/messages/license layers and
// an optional quantization) and POST /api/blobs/:digest (uploads, verified before they land).
#include <httplib.h>

#include "server/adapters/ollama.h"
#include "server/server.h"

namespace hearth::server {

void Server::store_routes() {
    auto not_yet = [](const char* what) {
        return [what](const httplib::Request&, httplib::Response& res) {
            send_error(res, 501,
                       std::string(what) + " is not implemented yet in hearth; put GGUF files in the store by hand, or "
                                           "point HEARTH_MODELS at an existing Ollama store",
                       Protocol::ollama);
        };
    };
    http_->Post("/api/create", not_yet("/api/create"));
    http_->Post(R"(/api/blobs/(.+))", not_yet("uploading blobs (POST /api/blobs)"));
}

}  // namespace hearth::server
