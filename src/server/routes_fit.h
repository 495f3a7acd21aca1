// "Will it fit?" over HTTP: POST /api/fit, and the fit numbers /api/show and /api/pull share.
//
// POST /api/fit {"model", "num_ctx"?, "kv_type"?, "num_parallel"?, "num_batch"?, "insecure"?}
// answers the report `hearth fit --json` prints (store::fit_report_json: weights, KV cache and
// compute bytes, the memory available, the verdict and the other quantizations), 200 whether it
// fits or not. "model" is a store name or a .gguf path on this machine; a name the store does
// not hold is looked up where a pull would fetch it (a registry, hf.co/user/repo[:quant]) and
// only the weights' GGUF header is read (HTTP Range requests): nothing is downloaded into the
// store. A model found nowhere is a 404. Omitted numbers are the daemon's: HEARTH_CONTEXT_LENGTH,
// HEARTH_KV_CACHE_TYPE, HEARTH_NUM_PARALLEL (unset: one sequence; 0 in the request: sized from
// free memory, as the daemon does).
#pragma once

#include <nlohmann/json.hpp>

#include "base/status.h"
#include "server/config.h"
#include "store/fit.h"
#include "store/gguf_info.h"

namespace httplib {
class Server;
}

namespace hearth::server {

class Service;

// The fit options of a request body (the fields above), over the daemon's defaults.
// invalid_argument naming the field for a wrong type or a negative number.
Result<store::FitOptions> fit_options_from(const nlohmann::ordered_json& body, const ServerConfig& config);

// /api/show's "fit": the report for the daemon's defaults; null when it cannot be computed.
nlohmann::ordered_json show_fit_json(const store::GgufInfo& info, const ServerConfig& config);

// Registers POST /api/fit.
void add_fit_routes(httplib::Server& http, Service& service, const ServerConfig& config);

}  // namespace hearth::server
