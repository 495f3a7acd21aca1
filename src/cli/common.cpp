#include "cli/common.h"

#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "base/timer.h"

namespace hearth::cli {

Result<LoadedModel> load_model_file(const std::string& path, bool with_model, int n_threads,
                                    const std::vector<std::string>& adapters) {
    namespace fs = std::filesystem;
    std::error_code ec;
    if (!fs::exists(path, ec)) return error(StatusCode::not_found, "model file " + path + " does not exist");
    if (fs::is_directory(path, ec)) return error(StatusCode::invalid_argument, path + " is a directory, not a GGUF model file");
    LoadedModel lm;
    const int64_t t0 = now_ns();
    HEARTH_ASSIGN(lm.file, gguf::open_gguf(path));
    auto tok = tok::Tokenizer::from_gguf(*lm.file);
    if (!tok.ok()) return tok.status().with_context(path + ": tokenizer");
    lm.tokenizer = std::move(tok).value();
    if (with_model) {
        model::LoadOptions lo{n_threads};
        lo.adapters = adapters;
        auto m = model::load_model(lm.file, lo);
        if (!m.ok()) return m.status().with_context(path);
        lm.model = std::move(m).value();
        if (lm.model->hparams().n_vocab != lm.tokenizer->n_vocab())
            return error(StatusCode::corrupt,
                         strformat("%s: the tokenizer has %d tokens but the model's embedding has %lld rows", path.c_str(),
                                   lm.tokenizer->n_vocab(), (long long)lm.model->hparams().n_vocab));
    }
    lm.load_ns = now_ns() - t0;
    return lm;
}

std::string testdata_file(const std::string& rel) {
    const char* env = std::getenv("HEARTH_TESTDATA");
    const std::string p = std::string(env && *env ? env : HEARTH_DEFAULT_TESTDATA) + "/" + rel;
    std::error_code ec;
    return std::filesystem::is_regular_file(p, ec) ? p : std::string();
}

std::string default_model_path() { return testdata_file("models/stories260K.gguf"); }

void fail(const std::string& cmd, const std::string& message) {
    std::fflush(stdout);
    std::fprintf(stderr, "hearth %s: %s\n", cmd.c_str(), message.c_str());
    std::exit(1);
}

void fail(const std::string& cmd, const Status& status) { fail(cmd, status.message()); }

}  // namespace hearth::cli
