// Shared by the CLI commands: loading a model file with one-line errors, the default model,
// and how a failed command exits.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "gguf/gguf.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace hearth::cli {

struct LoadedModel {
    std::shared_ptr<gguf::GgufFile> file;
    std::unique_ptr<tok::Tokenizer> tokenizer;
    std::unique_ptr<model::Model> model;  // null when only the tokenizer was asked for
    int64_t load_ns = 0;
};

// Opens a GGUF file and builds its tokenizer and (when with_model) the model, with the LoRA
// adapters (GGUF files, model::LoadOptions::adapters) applied.
Result<LoadedModel> load_model_file(const std::string& path, bool with_model, int n_threads,
                                    const std::vector<std::string>& adapters = {});

// A file of the shared test data ($HEARTH_TESTDATA, else ../shared/testdata beside the source
// tree), e.g. "models/stories260K.gguf". Empty when it is not there.
std::string testdata_file(const std::string& rel);

// The small model used when none is named: the trained stories260K from the test data.
// Empty when absent.
std::string default_model_path();

// Prints "hearth <cmd>: <message>" to stderr and exits with status 1.
[[noreturn]] void fail(const std::string& cmd, const std::string& message);
[[noreturn]] void fail(const std::string& cmd, const Status& status);

}  // namespace hearth::cli
