// anthropic endpoints: HTTP glue over adapters/anthropic.cpp and the Service.
#include <httplib.h>

#include "server/adapters/anthropic.h"
#include "server/server.h"

namespace hearth::server {

void Server::anthropic_routes() {}

}  // namespace hearth::server
