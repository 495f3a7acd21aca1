#include "server/adapters/openai.h"

namespace hearth::server::openai {

json error_json(int http_status, const std::string& message) {
    const char* type = "invalid_request_error";
    json code = nullptr;
    switch (http_status) {
    case 401: type = "authentication_error"; code = "invalid_api_key"; break;
    case 403: type = "permission_error"; break;
    case 404: type = "not_found_error"; break;
    case 413: type = "invalid_request_error"; code = "request_too_large"; break;
    case 429:
    case 503: type = "rate_limit_error"; break;
    default:
        if (http_status >= 500) type = "server_error";
    }
    return {{"error", {{"message", message}, {"type", type}, {"param", nullptr}, {"code", code}}}};
}

}  // namespace hearth::server::openai
