// openai endpoints: HTTP glue over adapters/openai.cpp and the Service.
#include <httplib.h>

#include "server/adapters/openai.h"
#include "server/server.h"

namespace hearth::server {

void Server::openai_routes() {}

}  // namespace hearth::server
