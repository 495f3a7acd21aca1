// Anthropic's Messages API: HTTP glue over adapters/anthropic.cpp and the Service.
//   POST /v1/messages               a generation, streamed (SSE) or whole
//   POST /v1/messages/count_tokens  {"input_tokens": n}: the rendered prompt's token count
//                                   (Service::count_prompt_tokens: no model load, and a prompt
//                                   longer than the context is counted, not refused)
// Every error under /v1/messages is in Anthropic's shape (Protocol::anthropic).
#include <httplib.h>

#include "server/adapters/anthropic.h"
#include "server/server.h"

namespace hearth::server {

void Server::anthropic_routes() {
    httplib::Server& h = *http_;

    h.Post("/v1/messages", [this](const httplib::Request& req, httplib::Response& res) {
        auto body = anthropic::parse_body(req.body);
        if (!body.ok()) return send_error(res, body.status(), Protocol::anthropic);
        auto parsed = anthropic::parse_messages(*body);
        if (!parsed.ok()) return send_error(res, parsed.status(), Protocol::anthropic);
        log_model(req, parsed->input.model);
        anthropic::WriterParams wp;
        wp.model = parsed->input.model;  // answered as the request named it
        wp.id = anthropic::random_id("msg_");
        wp.stop_sequences = parsed->stop_sequences;
        const bool stream = parsed->stream;
        auto started = service_->generate(std::move(parsed->input));
        if (!started.ok()) return send_error(res, anthropic::anthropic_status(started.status()), Protocol::anthropic);
        wp.input_tokens = (*started)->prompt_tokens();
        if (!wp.stop_sequences.empty()) {
            // The stop string is cut from the reply but its tokens are in Final::stats.tokens.
            Service* svc = service_.get();
            wp.detokenize = [svc, model = wp.model](const std::vector<int32_t>& tokens) {
                auto text = svc->detokenize(model, tokens);
                return text.ok() ? *text : std::string();
            };
        }
        serve_generation(req, res, std::move(started).value(), anthropic::make_writer(std::move(wp)), stream, Protocol::anthropic);
    });

    h.Post("/v1/messages/count_tokens", [this](const httplib::Request& req, httplib::Response& res) {
        auto body = anthropic::parse_body(req.body);
        if (!body.ok()) return send_error(res, body.status(), Protocol::anthropic);
        auto parsed = anthropic::parse_messages(*body, /*count_tokens=*/true);
        if (!parsed.ok()) return send_error(res, parsed.status(), Protocol::anthropic);
        const std::string model = parsed->input.model;
        log_model(req, model);
        auto n = service_->count_prompt_tokens(std::move(parsed->input));
        if (!n.ok()) return send_error(res, n.status(), Protocol::anthropic);
        log_model(req, model, *n);
        send_json(res, 200, anthropic::count_tokens_json(*n));
    });
}

}  // namespace hearth::server
