// OpenAI's endpoints (/v1/chat/completions, /v1/completions, /v1/embeddings, /v1/models): HTTP
// glue over adapters/openai.cpp and the Service. Every error is answered in OpenAI's shape.
#include <httplib.h>

#include <ctime>
#include <random>

#include "server/adapters/openai.h"
#include "server/server.h"

namespace hearth::server {
namespace {

void send_reply(httplib::Response& res, const openai::ErrorReply& e) {
    if (e.http_status == 503) res.set_header("Retry-After", "1");
    Server::send_json(res, e.http_status, e.body);
}

void send_status(httplib::Response& res, const Status& s, const std::string& model = "") {
    send_reply(res, openai::error_reply(s, model));
}

}  // namespace

void Server::openai_routes() {
    httplib::Server& h = *http_;

    auto text = [this](const httplib::Request& req, httplib::Response& res, bool chat) {
        auto body = openai::parse_body(req.body);
        if (!body.ok()) return send_status(res, body.status());
        auto parsed = chat ? openai::parse_chat(*body) : openai::parse_completion(*body);
        if (!parsed.ok()) return send_status(res, parsed.status());
        openai::TextRequest r = std::move(parsed).value();
        log_model(req, r.in.model);
        openai::ReplyInfo info;
        info.id = openai::random_id(chat ? "chatcmpl-" : "cmpl-");
        info.created = (int64_t)std::time(nullptr);
        info.model = r.in.model;  // echoed as the request named it
        info.include_usage = r.stream && r.include_usage;
        info.logprobs = r.in.logprobs;
        info.id_seed = std::random_device{}();
        auto started = service_->generate(std::move(r.in));
        if (!started.ok()) return send_status(res, started.status(), info.model);
        std::shared_ptr<TextWriter> w = chat ? openai::make_chat_writer(info) : openai::make_completion_writer(info);
        serve_generation(req, res, std::move(started).value(), std::move(w), r.stream, Protocol::openai);
    };
    h.Post("/v1/chat/completions", [text](const httplib::Request& req, httplib::Response& res) { text(req, res, true); });
    h.Post("/v1/completions", [text](const httplib::Request& req, httplib::Response& res) { text(req, res, false); });

    h.Post("/v1/embeddings", [this](const httplib::Request& req, httplib::Response& res) {
        auto body = openai::parse_body(req.body);
        if (!body.ok()) return send_status(res, body.status());
        auto parsed = openai::parse_embeddings(*body);
        if (!parsed.ok()) return send_status(res, parsed.status());
        openai::EmbedRequest r = std::move(parsed).value();
        const std::string model = r.in.model;
        log_model(req, model);
        auto out = service_->embed(std::move(r.in));
        if (!out.ok()) return send_status(res, out.status(), model);
        log_model(req, out->model, out->result.prompt_tokens_total);
        send_json(res, 200, openai::embeddings_response(*out, model, r.base64));
    });

    h.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
        openai::json data = openai::json::array();
        for (const auto& ref : service_->store().list()) data.push_back(openai::model_json(ref, ref.name));
        send_json(res, 200, {{"object", "list"}, {"data", std::move(data)}});
    });
    // Model names may hold '/' (user/model:tag), so the id is the rest of the path.
    h.Get(R"(/v1/models/(.+))", [this](const httplib::Request& req, httplib::Response& res) {
        const std::string id = req.matches[1];
        auto ref = service_->store().resolve(id);
        // A name that cannot exist (invalid_argument) is as unknown as a missing one.
        if (!ref.ok() && (ref.status().code() == StatusCode::not_found || ref.status().code() == StatusCode::invalid_argument))
            return send_reply(res, openai::model_not_found(id));
        if (!ref.ok()) return send_status(res, ref.status(), id);
        send_json(res, 200, openai::model_json(*ref, id));
    });
}

}  // namespace hearth::server
