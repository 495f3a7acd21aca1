// Modelfiles, Ollama's recipe format (peers.md §1.6; Ollama's parser/parser.go): one
// instruction per line, case-insensitive, in any order, `#` comments.
//
//   FROM llama3.2                    a store model, a .gguf file (absolute, ~/, or relative to the
//                                    Modelfile's folder) or a Hugging Face checkpoint folder
//   PARAMETER temperature 0.7        any option of the `options` object (kParameters below),
//   PARAMETER stop "<|im_end|>"      type-checked here; `stop` repeats
//   TEMPLATE """{{ messages }}"""    a Jinja chat template (hearth does not run Go templates)
//   SYSTEM You are a pirate.
//   MESSAGE user Hello               few-shot history: system, user or assistant
//   ADAPTER ./lora.gguf              a LoRA adapter in GGUF, applied at load (model/lora.h)
//   LICENSE """..."""                repeatable
//   REQUIRES 0.6.0                   minimum version, kept in the model's config
//
// Values, as Ollama reads them: the rest of the line, trimmed; or "..." (may span lines; ends at
// a `"` that closes its line); or """...""" (ends at a `"""` that closes its line, so the text may
// hold quotes and `"""` anywhere but at a line's end). Ollama has no escapes; hearth adds one so
// that every text round-trips: inside """...""", a backslash run directly before `"""` is
// halved, and an odd run makes that `"""` literal text (format_modelfile writes them).
//
// Errors are invalid_argument and name the file and line: `Modelfile:7: unknown instruction
// "FORM"`.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace hearth::store {

// The type of an option (a PARAMETER). The table mirrors what server/options.h accepts; store/
// sits below server/, so the table lives here and server's test checks the two agree.
enum class ParamType { integer, number, boolean, string_list };
struct ParamSpec {
    const char* name;
    ParamType type;
};
extern const ParamSpec kParameters[];
extern const size_t kParameterCount;
const ParamSpec* find_parameter(std::string_view name);

// A PARAMETER value as written in a Modelfile ("0.7", "true", "<|eot_id|>") as the JSON the
// params layer holds. invalid_argument: `PARAMETER temperature: "hot" is not a number`, or an
// unknown name.
Result<nlohmann::json> parse_parameter_value(std::string_view name, std::string_view text);
// A JSON value of the API's "parameters" object checked (and normalised: numbers given as
// strings are converted, a single stop string becomes a list) against the table.
Result<nlohmann::json> normalize_parameter(std::string_view name, const nlohmann::json& value);

struct ModelfileMessage {
    std::string role;  // system, user or assistant
    std::string content;
    bool operator==(const ModelfileMessage&) const = default;
};

struct Modelfile {
    std::string from;                          // as written (paths not yet resolved)
    nlohmann::json parameters = nlohmann::json::object();  // name -> typed value; "stop" a list
    std::optional<std::string> template_text;  // the last TEMPLATE; nullopt when none
    std::optional<std::string> system;         // the last SYSTEM; "" clears the base model's
    std::vector<ModelfileMessage> messages;
    std::vector<std::string> adapters;
    std::vector<std::string> licenses;
    std::string requires_version;

    bool operator==(const Modelfile&) const = default;
};

// `file_name` prefixes error messages ("Modelfile:3: ..."). A Modelfile without FROM is an
// error.
Result<Modelfile> parse_modelfile(std::string_view text, std::string_view file_name = "Modelfile");

// The Modelfile's text: FROM, then TEMPLATE, SYSTEM, PARAMETERs, MESSAGEs, ADAPTERs, LICENSEs,
// REQUIRES. parse_modelfile(format_modelfile(m)) == m for every m.
std::string format_modelfile(const Modelfile& m);

// One value as a Modelfile writes it: bare when that reads back the same, else "..." when it
// holds no quote, else """...""" with hearth's escapes. `force_triple` always uses """ (how
// `show --modelfile` writes TEMPLATE, SYSTEM and LICENSE, as Ollama does).
std::string quote_modelfile_value(std::string_view text, bool force_triple = false);

}  // namespace hearth::store
