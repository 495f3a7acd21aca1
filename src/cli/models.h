// The model commands' shared pieces: the store the CLI reads when no daemon runs, and
// `hearth show`'s default view, which the REPL's /show info (through a daemon) prints too.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "base/status.h"
#include "cli/client.h"

namespace hearth::cli {

// $HEARTH_MODELS, else ~/.hearth/models (what `hearth serve` opens).
std::string store_root();

// POST /api/show's answer for `model` (a name or a .gguf path): from the daemon when `daemon` is
// given, else built from the store exactly as the daemon would build it.
Result<nlohmann::ordered_json> show_model(Client* daemon, const std::string& model, bool verbose);

// Ollama's `show` view of an /api/show answer: Model (architecture, parameters, context length,
// embedding length, quantization), Capabilities, Parameters, (verbose: Metadata), System and
// License (their first two lines, then "...").
std::string format_show_info(const nlohmann::ordered_json& show, bool verbose);

}  // namespace hearth::cli
