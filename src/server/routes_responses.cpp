// OpenAI's Responses API (/v1/responses): HTTP glue over adapters/openai_responses.cpp and the
// Service. Stateless: nothing is stored, so there is no GET/DELETE /v1/responses/{id}.
#include <httplib.h>

#include "server/adapters/ollama.h"
#include "server/adapters/openai_responses.h"
#include "server/server.h"

namespace hearth::server {

void Server::responses_routes() {
    namespace rs = openai_responses;
    http_->Post("/v1/responses", [this](const httplib::Request& req, httplib::Response& res) {
        auto body = ollama::parse_body(req.body);
        if (!body.ok()) return send_error(res, body.status(), Protocol::openai);
        auto r = rs::parse_request(*body);
        if (!r.ok()) return send_error(res, r.status(), Protocol::openai);
        log_model(req, r->input.model);
        // The response names the model as the request did, as Ollama's does.
        auto w = rs::make_writer(r->echo, rs::default_writer_options(r->input.model));
        const bool stream = r->stream;
        auto started = service_->generate(std::move(r->input));
        if (!started.ok()) return send_error(res, started.status(), Protocol::openai);
        serve_generation(req, res, std::move(started).value(), std::move(w), stream, Protocol::openai);
    });
}

}  // namespace hearth::server
