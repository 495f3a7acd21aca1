// Building models in the store over HTTP.
//
// POST /api/create (adapters/ollama.h parse_create) checks everything it can before answering
// (a bad name, an unknown base, a missing blob, a Go template, a wrong parameter type are a 4xx),
// then builds the model with store::create_model, streaming Ollama's status objects as NDJSON
// ("parsing GGUF", "using existing layer sha256:...", "creating new layer sha256:...", "writing
// manifest", "success"); a later failure is an {"error"} line. A client that goes away cancels
// the create (nothing becomes visible). With stream false the answer is {"status":"success"} or
// the error. A model of that name that is loaded is unloaded, so the next request sees the new one.
//
// POST /api/blobs/:digest streams the body to a temporary file under blobs/ (never held in
// memory), hashing it as it comes: 201 when its SHA-256 is the digest (the blob is then renamed
// into place), 400 on a mismatch (nothing kept), 200 when the store already has it. The body
// limit (HEARTH_MAX_BODY, set for every route in server.cpp) applies to a Content-Length upload;
// chunked uploads (what Ollama's own client sends for files) are not limited.
#include <httplib.h>

#include "server/adapters/ollama.h"
#include "server/server.h"
#include "store/create.h"

namespace hearth::server {
namespace {

namespace ol = ollama;
using json = nlohmann::ordered_json;

std::string ndjson(const json& j) { return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n"; }

}  // namespace

void Server::store_routes() {
    http_->Post("/api/create", [this](const httplib::Request& req, httplib::Response& res) {
        auto body = ol::parse_body(req.body);
        if (!body.ok()) return send_error(res, body.status(), Protocol::ollama);
        bool stream = true;
        auto parsed = ol::parse_create(*body, stream);
        if (!parsed.ok()) return send_error(res, parsed.status(), Protocol::ollama);
        log_model(req, parsed->model);
        store::Store& st = service_->store();
        if (Status s = store::check_create(st, *parsed); !s.ok()) return send_error(res, s, Protocol::ollama);
        auto creq = std::make_shared<store::CreateRequest>(std::move(parsed).value());
        // The manager knows models by display name; a stale load of the old weights goes.
        auto unload = [this, creq] {
            if (auto n = store::ModelName::parse(creq->model); n.ok()) service_->models().unload(n->display());
        };
        if (!stream) {
            if (Status s = store::create_model(st, *creq); !s.ok()) return send_error(res, s, Protocol::ollama);
            unload();
            return send_json(res, 200, json{{"status", "success"}});
        }
        auto started = std::make_shared<bool>(false);
        res.set_header("Cache-Control", "no-cache");
        res.set_chunked_content_provider(
            "application/x-ndjson", [this, creq, started, unload](size_t, httplib::DataSink& sink) {
                if (*started) return false;
                *started = true;
                bool gone = false;
                Status s = store::create_model(service_->store(), *creq, [&](const store::CreateStatus& c) {
                    const std::string line = ndjson(ol::create_status_json(c));
                    gone = !sink.write(line.data(), line.size());
                    return !gone;
                });
                if (gone) return false;
                if (s.ok()) {
                    unload();
                } else {
                    const std::string line = ndjson(ol::error_json(s.message()));
                    if (!sink.write(line.data(), line.size())) return false;
                }
                sink.done();
                return true;
            });
    });

    // The upload, shared by the streaming route and the one for bodies httplib reads itself
    // (an empty body never reaches a content reader).
    auto upload = [this](const std::string& digest, httplib::Response& res,
                         const std::function<bool(const httplib::ContentReceiver&)>& read_body) {
        store::Store& st = service_->store();
        auto drain = [&] { read_body([](const char*, size_t) { return true; }); };
        if (st.blob_path(digest).empty()) {
            drain();
            return send_error(res, 400, "invalid digest \"" + digest + "\": expected sha256:<64 hex>", Protocol::ollama);
        }
        if (st.has_blob(digest)) {
            drain();
            res.status = 200;
            return;
        }
        auto w = st.begin_blob();
        if (!w.ok()) {
            drain();
            return send_error(res, w.status(), Protocol::ollama);
        }
        Status write_status;
        const bool read = read_body([&](const char* data, size_t n) {
            write_status = w->write(std::as_bytes(std::span(data, n)));
            return write_status.ok();
        });
        if (!write_status.ok()) return send_error(res, write_status, Protocol::ollama);
        if (!read) {
            if (res.status == 413)  // httplib skipped a body over the limit
                return send_error(res, 413,
                                  "the blob is larger than HEARTH_MAX_BODY; upload it with chunked transfer encoding (as "
                                  "Ollama's client does) or raise HEARTH_MAX_BODY",
                                  Protocol::ollama);
            return send_error(res, 400, "the upload was cut off before its end", Protocol::ollama);
        }
        auto d = w->commit(digest);
        if (!d.ok()) return send_error(res, d.status(), Protocol::ollama);
        res.status = 201;
    };
    http_->Post(R"(/api/blobs/(.+))",
                [upload](const httplib::Request& req, httplib::Response& res, const httplib::ContentReader& reader) {
                    upload(req.matches[1], res, [&](const httplib::ContentReceiver& r) { return reader(r); });
                });
    http_->Post(R"(/api/blobs/(.+))", [upload](const httplib::Request& req, httplib::Response& res) {
        upload(req.matches[1], res, [&](const httplib::ContentReceiver& r) { return r(req.body.data(), req.body.size()); });
    });
}

}  // namespace hearth::server
