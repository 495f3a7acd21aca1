// Pulling and pushing over HTTP. POST /api/pull {model (or name), insecure, stream} runs
// store::pull_model on a thread of its own and streams Ollama's status objects as NDJSON:
// "pulling manifest", per blob {"status":"pulling <digest12>","digest","total","completed"},
// "verifying sha256 digest", "writing manifest", "success". The status line waits for the
// manifest, so an unknown model or a bad name is a proper 404/400; a failure after that can only
// be an {"error"} line in the stream. A client that goes away, or a daemon that stops (httplib
// then ends the stream), cancels the pull: its partial files stay, and the next pull resumes them. With stream false the answer is one
// {"status":"success"} or the error. POST /api/push answers 501: pushing is not in scope.
//
// Before the blobs, the model's fit in this machine's memory is reported as one more status
// ({"status":"fits in memory: needs ...","fit":{...}}, store/pull.h), with the daemon's
// HEARTH_CONTEXT_LENGTH / HEARTH_KV_CACHE_TYPE / HEARTH_NUM_PARALLEL unless the request sets
// num_ctx, kv_type, num_parallel (routes_fit.h). With "check_fit": true a model that does not
// fit is refused before any blob byte is downloaded: a 400 whose error says what it needs.
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>

#include "base/timer.h"
#include "server/adapters/ollama.h"
#include "server/routes_fit.h"
#include "server/server.h"
#include "store/pull.h"

namespace hearth::server {
namespace {

namespace ol = ollama;
using json = nlohmann::ordered_json;

// One pull on its own thread; its events wait here for the HTTP worker that writes them.
struct PullJob {
    std::mutex mu;
    std::condition_variable cv;
    // ---- under mu ----
    std::deque<store::PullEvent> events;  // not yet written; a blob's progress keeps only its newest
    bool past_manifest = false;           // an event after "pulling manifest" came: the model exists
    bool done = false;
    Status status;                        // how the pull ended, once done
    // ----
    std::atomic<bool> cancel{false};
    std::thread thread;

    void push(const store::PullEvent& e) {
        std::lock_guard lk(mu);
        if (!events.empty() && !e.digest.empty() && events.back().digest == e.digest) events.back() = e;
        else events.push_back(e);
        if (e.status != "pulling manifest") past_manifest = true;
        cv.notify_all();
    }
    void finish(Status s) {
        std::lock_guard lk(mu);
        done = true;
        status = std::move(s);
        cv.notify_all();
    }
    void stop() {
        cancel = true;
        if (thread.joinable()) thread.join();
    }
};

std::string ndjson(const json& j) { return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n"; }

}  // namespace

void Server::pull_routes() {
    http_->Post("/api/pull", [this](const httplib::Request& req, httplib::Response& res) {
        auto body = ol::parse_body(req.body);
        if (!body.ok()) return send_error(res, body.status(), Protocol::ollama);
        std::string model;
        for (const char* key : {"model", "name"})
            if (model.empty() && body->contains(key) && (*body)[key].is_string()) model = (*body)[key].get<std::string>();
        if (model.empty()) return send_error(res, 400, "model is required", Protocol::ollama);
        auto flag = [&](const char* key, bool def) -> Result<bool> {
            if (!body->contains(key) || (*body)[key].is_null()) return def;
            if (!(*body)[key].is_boolean())
                return error(StatusCode::invalid_argument, std::string("field \"") + key + "\" must be a boolean");
            return (*body)[key].get<bool>();
        };
        auto insecure = flag("insecure", false);
        auto stream = flag("stream", true);
        auto check_fit = flag("check_fit", false);
        if (!insecure.ok()) return send_error(res, insecure.status(), Protocol::ollama);
        if (!stream.ok()) return send_error(res, stream.status(), Protocol::ollama);
        if (!check_fit.ok()) return send_error(res, check_fit.status(), Protocol::ollama);
        auto fit = fit_options_from(*body, config_);
        if (!fit.ok()) return send_error(res, fit.status(), Protocol::ollama);
        log_model(req, model);
        auto opts = store::PullOptions::from_env(*insecure);
        if (!opts.ok()) return send_error(res, opts.status(), Protocol::ollama);
        opts->fit = *fit;
        if (*check_fit) opts->fit_check = store::FitCheck::require;

        auto job = std::make_shared<PullJob>();
        opts->transfer.cancelled = [job] { return job->cancel.load(); };
        store::Store* st = &service_->store();
        job->thread = std::thread([job, st, model, o = std::move(opts).value()] {
            job->finish(store::pull_model(*st, model, o, [&](const store::PullEvent& e) { job->push(e); }));
        });

        // The status line waits until the model is known to exist (or the pull ended).
        {
            std::unique_lock lk(job->mu);
            job->cv.wait(lk, [&] { return job->past_manifest || job->done; });
            if (job->done && !job->status.ok() && (!job->past_manifest || !*stream)) {
                const Status s = job->status;
                lk.unlock();
                job->stop();
                return send_error(res, s, Protocol::ollama);
            }
        }
        if (!*stream) {
            Status s;
            {
                std::unique_lock lk(job->mu);
                job->cv.wait(lk, [&] { return job->done; });
                s = job->status;
            }
            job->stop();
            if (!s.ok()) return send_error(res, s, Protocol::ollama);
            return send_json(res, 200, json{{"status", "success"}});
        }

        struct StreamState {
            bool finished = false;
            int64_t last_write_ns = 0;
            std::string last_line;  // written again after a quiet second, to notice a client gone
        };
        auto state = std::make_shared<StreamState>();
        state->last_write_ns = now_ns();
        res.set_header("Cache-Control", "no-cache");
        res.set_chunked_content_provider(
            "application/x-ndjson",
            [job, state](size_t, httplib::DataSink& sink) {
                if (state->finished) return false;
                std::string out;
                bool end = false;
                {
                    std::unique_lock lk(job->mu);
                    job->cv.wait_for(lk, std::chrono::milliseconds(250), [&] { return !job->events.empty() || job->done; });
                    while (!job->events.empty()) {
                        state->last_line = ndjson(job->events.front().to_json());
                        out += state->last_line;
                        job->events.pop_front();
                    }
                    if (job->done) {
                        end = true;
                        if (!job->status.ok())
                            out += ndjson(ol::error_json(job->status.message()));
                    }
                }
                if (out.empty() && now_ns() - state->last_write_ns > 1000000000) out = state->last_line;
                if (!out.empty()) {
                    state->last_write_ns = now_ns();
                    if (!sink.write(out.data(), out.size())) {
                        job->cancel = true;  // the client went away: stop downloading
                        return false;
                    }
                }
                if (end) {
                    state->finished = true;
                    sink.done();
                }
                return true;
            },
            [job](bool) { job->stop(); });
    });
    http_->Post("/api/push", [](const httplib::Request&, httplib::Response& res) {
        send_error(res, 501,
                   "pushing models is not supported by hearth; share a model by copying its GGUF file or the "
                   "store's blobs and manifest",
                   Protocol::ollama);
    });
}

}  // namespace hearth::server
