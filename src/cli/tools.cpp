// hearth tokenize / hearth logits: the tools tests and later issues rely on.
#include <cstdio>
#include <nlohmann/json.hpp>
#include <sstream>

#include "base/mmap.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "model/session.h"
#include "quant/types.h"

namespace hearth::cli {
namespace {

struct TokenizeArgs {
    std::string model, text;
    bool json = false, no_special = false, parse_special = false;
};

void tokenize(const TokenizeArgs& a) {
    auto lm = load_model_file(a.model, false, 1);
    if (!lm.ok()) fail("tokenize", lm.status());
    const auto ids = lm->tokenizer->encode(a.text, !a.no_special, a.parse_special);
    if (a.json) {
        nlohmann::json out = nlohmann::json::array();
        for (int32_t id : ids)
            out.push_back({{"id", id}, {"piece", std::string(lm->tokenizer->token_to_piece(id, true))}});
        // Pieces of byte tokens can be partial UTF-8: replace invalid bytes rather than fail.
        std::puts(out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
        return;
    }
    std::string line;
    for (size_t i = 0; i < ids.size(); ++i) line += (i ? " " : "") + std::to_string(ids[i]);
    std::puts(line.c_str());
}

struct LogitsArgs {
    std::string model, tokens, text, out;
    std::string kv_type = "f32";  // f32 by default: the goldens were made with an F32 cache
    bool embed = false;
    int threads = 0;
};

Result<std::vector<int32_t>> parse_ids(const std::string& s) {
    std::vector<int32_t> ids;
    std::stringstream ss(s);
    std::string item;
    while (std::getline(ss, item, ',')) {
        size_t used = 0;
        long long v = 0;
        try {
            v = std::stoll(item, &used);
        } catch (...) {
            used = 0;
        }
        if (used == 0 || used != item.size() || v < 0 || v > INT32_MAX)
            return error(StatusCode::invalid_argument, "--tokens: \"" + item + "\" is not a token id");
        ids.push_back((int32_t)v);
    }
    return ids;
}

void logits(const LogitsArgs& a) {
    if (a.tokens.empty() == a.text.empty()) fail("logits", "give exactly one of --tokens and --text");
    auto lm = load_model_file(a.model, true, a.threads);
    if (!lm.ok()) fail("logits", lm.status());
    std::vector<int32_t> ids;
    if (!a.tokens.empty()) {
        auto r = parse_ids(a.tokens);
        if (!r.ok()) fail("logits", r.status());
        ids = r.value();
    } else {
        ids = lm->tokenizer->encode(a.text, true, false);
    }
    if (ids.empty()) fail("logits", "no tokens to evaluate");
    const auto& hp = lm->model->hparams();
    for (int32_t id : ids)
        if (id >= hp.n_vocab) fail("logits", strformat("token id %d is outside the vocabulary (size %lld)", id, (long long)hp.n_vocab));
    if (a.embed != lm->model->is_embedding())
        fail("logits", a.embed ? a.model + " is not an embedding model" : a.model + " is an embedding model: use --embed");
    const auto kv_type = quant::parse_type_name(a.kv_type);
    if (!kv_type) fail("logits", "--kv-type: \"" + a.kv_type + "\" is not a type name; use f32, f16, q8_0 or q4_0");
    auto session = model::Session::create(*lm->model, (int64_t)ids.size(), 32, *kv_type);
    if (!session.ok()) fail("logits", session.status());
    std::vector<float> values;
    Status st = a.embed ? session->embed(ids, values) : session->eval(ids, true, values);
    if (!st.ok()) fail("logits", st);
    st = write_file_atomic(a.out, std::as_bytes(std::span<const float>(values)));
    if (!st.ok()) fail("logits", st);
    if (a.embed) std::fprintf(stderr, "wrote embedding [%lld] to %s\n", (long long)hp.n_embd, a.out.c_str());
    else std::fprintf(stderr, "wrote logits [%zu, %lld] to %s\n", ids.size(), (long long)hp.n_vocab, a.out.c_str());
}

}  // namespace

void add_tokenize_command(CLI::App& app) {
    auto a = std::make_shared<TokenizeArgs>();
    CLI::App* c = app.add_subcommand("tokenize", "Print the token ids of a text");
    c->add_option("model", a->model, "GGUF model or vocabulary file")->required();
    c->add_option("text", a->text, "Text to tokenize")->required();
    c->add_flag("--json", a->json, "Print [{\"id\", \"piece\"}] as JSON");
    c->add_flag("--no-special", a->no_special, "Do not add BOS/EOS");
    c->add_flag("--parse-special", a->parse_special, "Match special-token text (e.g. <|eot_id|>) in the input");
    c->callback([a] { tokenize(*a); });
}

void add_logits_command(CLI::App& app) {
    auto a = std::make_shared<LogitsArgs>();
    CLI::App* c = app.add_subcommand("logits", "Write raw float32 logits (all positions x vocabulary) of a token sequence");
    c->add_option("model", a->model, "GGUF model file")->required();
    c->add_option("--tokens", a->tokens, "Comma-separated token ids, e.g. 1,2,3");
    c->add_option("--text", a->text, "Text to tokenize (with BOS as the model wants) instead of --tokens");
    c->add_option("--out", a->out, "Output file (little-endian float32)")->required();
    c->add_flag("--embed", a->embed, "Embedding models: write the pooled embedding instead");
    c->add_option("--kv-type", a->kv_type, "KV cache type: f32 (default), f16, q8_0 or q4_0");
    c->add_option("-t,--threads", a->threads, "Worker threads (default: all cores)");
    c->callback([a] { logits(*a); });
}

}  // namespace hearth::cli
