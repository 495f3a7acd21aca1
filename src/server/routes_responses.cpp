// OpenAI's Responses API (/v1/responses): HTTP glue over adapters/openai_responses.cpp and the
// Service.
#include <httplib.h>

#include "server/server.h"

namespace hearth::server {

void Server::responses_routes() {}

}  // namespace hearth::server
