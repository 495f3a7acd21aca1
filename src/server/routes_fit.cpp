// POST /api/fit and the fit numbers of /api/show (routes_fit.h).
#include "server/routes_fit.h"

#include <httplib.h>

#include "server/adapters/ollama.h"
#include "server/server.h"
#include "server/service.h"
#include "store/pull.h"

namespace hearth::server {
namespace {

namespace ol = ollama;
using json = nlohmann::ordered_json;

// A whole, non-negative number field; `out` is left as it is when the field is absent or null.
Status count_field(const json& body, const char* key, int64_t max, int64_t& out) {
    if (!body.contains(key) || body[key].is_null()) return {};
    const json& v = body[key];
    if (!v.is_number_integer() || v.get<int64_t>() < 0)
        return error(StatusCode::invalid_argument, std::string("field \"") + key + "\" must be a non-negative integer");
    out = std::min(v.get<int64_t>(), max);
    return {};
}

Result<bool> bool_field(const json& body, const char* key, bool def) {
    if (!body.contains(key) || body[key].is_null()) return def;
    if (!body[key].is_boolean())
        return error(StatusCode::invalid_argument, std::string("field \"") + key + "\" must be a boolean");
    return body[key].get<bool>();
}

}  // namespace

Result<store::FitOptions> fit_options_from(const json& body, const ServerConfig& config) {
    store::FitOptions o;
    o.num_ctx = config.context_length;
    o.kv_type = config.kv_cache_type;
    o.n_parallel = config.num_parallel > 0 ? config.num_parallel : 1;
    // Ollama's requests carry load options in "options"; top-level fields win.
    for (const json* src : {body.contains("options") && body["options"].is_object() ? &body["options"] : nullptr, &body}) {
        if (!src) continue;
        HEARTH_TRY(count_field(*src, "num_ctx", int64_t{1} << 40, o.num_ctx));
        int64_t parallel = o.n_parallel;
        HEARTH_TRY(count_field(*src, "num_parallel", 1 << 20, parallel));
        o.n_parallel = (int)parallel;
        HEARTH_TRY(count_field(*src, "num_batch", int64_t{1} << 20, o.step_tokens));
        for (const char* key : {"kv_type", "kv_cache_type"}) {
            if (!src->contains(key) || (*src)[key].is_null()) continue;
            if (!(*src)[key].is_string())
                return error(StatusCode::invalid_argument, std::string("field \"") + key + "\" must be a string (f16, q8_0 or q4_0)");
            o.kv_type = (*src)[key].get<std::string>();
        }
    }
    if (o.step_tokens < 1) o.step_tokens = 1;
    return o;
}

json show_fit_json(const store::GgufInfo& info, const ServerConfig& config) {
    auto opt = fit_options_from(json::object(), config);
    if (!opt.ok()) return nullptr;
    auto r = store::fit_info(info, *opt);
    if (!r.ok()) return nullptr;
    return store::fit_report_json(*r);
}

void add_fit_routes(httplib::Server& http, Service& service, const ServerConfig& config) {
    http.Post("/api/fit", [&service, &config](const httplib::Request& req, httplib::Response& res) {
        auto fail = [&](const Status& s) { Server::send_error(res, s, Server::Protocol::ollama); };
        auto body = ol::parse_body(req.body);
        if (!body.ok()) return fail(body.status());
        const char* field = body->contains("model") || !body->contains("name") ? "model" : "name";
        auto model = ol::required_string(*body, field);
        if (!model.ok()) return fail(model.status());
        auto opt = fit_options_from(*body, config);
        if (!opt.ok()) return fail(opt.status());
        // Only here: /api/show and a pull's fit check must not stream 1 GiB (~1 s) on first use.
        opt->read_bandwidth = store::machine_read_bandwidth();  // measured once per daemon, then cached
        auto insecure = bool_field(*body, "insecure", false);
        if (!insecure.ok()) return fail(insecure.status());

        store::Store& st = service.store();
        auto ref = st.resolve(*model);
        if (ref.ok()) {
            auto info = st.info(*ref, /*with_file=*/true);
            if (!info.ok()) return fail(info.status());
            auto r = store::fit_info(*info, *opt);
            if (!r.ok()) return fail(r.status().with_context(ref->name));
            return Server::send_json(res, 200, store::fit_report_json(*r));
        }
        // Not here: where a pull would fetch it, the header only. Paths and bad names end here.
        if (ref.status().code() != StatusCode::not_found || store::looks_like_path(*model)) return fail(ref.status());
        auto pull_opts = store::PullOptions::from_env(*insecure);
        if (!pull_opts.ok()) return fail(pull_opts.status());
        pull_opts->fit = *opt;
        auto r = store::fit_remote(st, *model, *pull_opts);
        if (!r.ok()) {
            if (r.status().code() == StatusCode::not_found)
                return fail(error(StatusCode::not_found, "model '" + *model + "' not found: not in the store, and " +
                                                             r.status().message()));
            return fail(r.status().with_context("cannot tell whether '" + *model + "' fits without downloading it"));
        }
        Server::send_json(res, 200, store::fit_report_json(*r));
    });
}

}  // namespace hearth::server
