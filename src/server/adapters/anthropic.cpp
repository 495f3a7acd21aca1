#include "server/adapters/anthropic.h"

namespace hearth::server::anthropic {

json error_json(int http_status, const std::string& message) {
    const char* type = "invalid_request_error";
    switch (http_status) {
    case 401: type = "authentication_error"; break;
    case 403: type = "permission_error"; break;
    case 404: type = "not_found_error"; break;
    case 413: type = "request_too_large"; break;
    case 429: type = "rate_limit_error"; break;
    case 503: type = "overloaded_error"; break;
    default:
        if (http_status >= 500) type = "api_error";
    }
    return {{"type", "error"}, {"error", {{"type", type}, {"message", message}}}};
}

}  // namespace hearth::server::anthropic
