// hearth synth: write a random-weight GGUF with the real shapes and metadata of a known
// checkpoint (model/synth.h), for benchmarks and loader tests without downloads.
#include <unistd.h>
#include <zlib.h>

#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>

#include "base/timer.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "model/synth.h"

namespace hearth::cli {
namespace {

// Numbers are taken as text and parsed here, so a bad value is one "hearth synth: ..." line.
struct SynthArgs {
    std::string arch, preset, type = "F16", out, vocab, seed = "1", threads = "0";
    bool list = false, dry_run = false;
    // Dimension overrides, as given ("" when absent).
    std::string n_layer, n_embd, n_ff, n_head, n_head_kv, head_dim, n_expert, n_expert_used, n_ff_exp, n_vocab, n_ctx;
};

// A non-negative integer option; "" gives nullopt. Exits with a one-line error otherwise.
std::optional<int64_t> parse_count(const std::string& text, const char* flag) {
    if (text.empty()) return std::nullopt;
    int64_t v = 0;
    const char* end = text.data() + text.size();
    auto [p, ec] = std::from_chars(text.data(), end, v);
    if (ec != std::errc() || p != end || v < 0)
        fail("synth", std::string(flag) + ": '" + text + "' is not a non-negative whole number");
    return v;
}

// tokenizer.* (and everything else) of a GGUF file, plain or gzip-compressed.
Result<gguf::Metadata> read_vocab(const std::string& path) {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(path, ec))
        return error(StatusCode::not_found, "vocabulary file " + path + " does not exist");
    unsigned char magic[2] = {0, 0};
    {
        std::ifstream f(path, std::ios::binary);
        f.read(reinterpret_cast<char*>(magic), 2);
    }
    if (magic[0] != 0x1f || magic[1] != 0x8b) {
        auto file = gguf::open_gguf(path);  // mapped: only the metadata is touched
        if (!file.ok()) return file.status();
        return file.value()->meta;
    }
    gzFile gz = gzopen(path.c_str(), "rb");
    if (!gz) return error(StatusCode::io_error, "cannot open " + path);
    std::vector<std::byte> bytes;
    std::vector<char> buf(1 << 20);
    for (;;) {
        const int n = gzread(gz, buf.data(), (unsigned)buf.size());
        if (n < 0) {
            gzclose(gz);
            return error(StatusCode::corrupt, path + ": not a readable gzip file");
        }
        if (n == 0) break;
        const auto* p = reinterpret_cast<const std::byte*>(buf.data());
        bytes.insert(bytes.end(), p, p + n);
    }
    gzclose(gz);
    auto file = gguf::parse_gguf(bytes);
    if (!file.ok()) return file.status().with_context(path);
    return file.value().meta;
}

// The shared test data's vocabulary for the family, or "" when the test data is not at hand.
std::string default_vocab_path(model::SynthVocab v) {
    const char* file = v == model::SynthVocab::spm         ? "ggml-vocab-llama-spm.gguf.gz"
                       : v == model::SynthVocab::wordpiece ? "ggml-vocab-bert-bge.gguf.gz"
                                                           : "ggml-vocab-gpt-2.gguf.gz";
    return testdata_file(std::string("tokenizers/") + file);
}

void list_presets() {
    std::printf("%-18s %-9s %7s %6s %6s %6s %4s %4s %5s %8s %7s  %s\n", "preset", "arch", "vocab", "embd", "layers",
                "ff", "head", "kv", "hdim", "experts", "ctx", "tied");
    for (const model::SynthConfig& p : model::synth_presets()) {
        const std::string experts = p.n_expert ? std::to_string(p.n_expert_used) + "/" + std::to_string(p.n_expert) + "x" +
                                                     std::to_string(p.n_ff_exp)
                                               : "-";
        std::printf("%-18s %-9s %7lld %6lld %6d %6lld %4d %4d %5d %8s %7lld  %s\n", p.preset.c_str(), p.family.c_str(),
                    (long long)p.n_vocab, (long long)p.n_embd, p.n_layer, (long long)p.n_ff, p.n_head, p.n_head_kv,
                    p.head_dim, experts.c_str(), (long long)p.n_ctx, p.tied_output ? "yes" : "no");
    }
    std::printf("\ntypes: ");
    for (const auto& t : model::synth_type_names()) std::printf("%s ", t.c_str());
    std::printf("\n");
}

void run_synth(SynthArgs& a) {
    if (a.list) {
        list_presets();
        return;
    }
    if (a.preset.empty()) fail("synth", "give a preset with --preset (hearth synth --list shows them)");
    if (a.out.empty() && !a.dry_run) fail("synth", "give the output file with --out FILE.gguf");

    {
        std::error_code ec;
        const std::filesystem::path dir = std::filesystem::path(a.out).parent_path();
        if (!dir.empty() && !std::filesystem::is_directory(dir, ec))
            fail("synth", "folder " + dir.string() + " does not exist");
    }

    auto preset = model::find_synth_preset(a.preset, a.arch);
    if (!preset.ok()) fail("synth", preset.status());
    model::SynthOverrides ov;
    ov.n_layer = parse_count(a.n_layer, "--layers");
    ov.n_embd = parse_count(a.n_embd, "--embd");
    ov.n_ff = parse_count(a.n_ff, "--ff");
    ov.n_head = parse_count(a.n_head, "--heads");
    ov.n_head_kv = parse_count(a.n_head_kv, "--kv-heads");
    ov.head_dim = parse_count(a.head_dim, "--head-dim");
    ov.n_expert = parse_count(a.n_expert, "--experts");
    ov.n_expert_used = parse_count(a.n_expert_used, "--experts-used");
    ov.n_ff_exp = parse_count(a.n_ff_exp, "--expert-ff");
    ov.n_vocab = parse_count(a.n_vocab, "--vocab-size");
    ov.n_ctx = parse_count(a.n_ctx, "--ctx");
    model::SynthOptions opts;
    opts.config = preset.value();
    if (Status s = model::apply_synth_overrides(opts.config, ov); !s.ok()) fail("synth", s);
    auto type = model::parse_synth_type(a.type);
    if (!type.ok()) fail("synth", type.status());
    opts.type = type.value();
    {
        uint64_t seed = 0;
        const char* end = a.seed.data() + a.seed.size();
        auto [p, ec] = std::from_chars(a.seed.data(), end, seed);
        if (a.seed.empty() || ec != std::errc() || p != end)
            fail("synth", "--seed: '" + a.seed + "' is not a non-negative whole number");
        opts.seed = seed;
    }
    opts.n_threads = (int)std::min<int64_t>(*parse_count(a.threads.empty() ? "0" : a.threads, "--threads"), 1024);

    std::string vocab_path = a.vocab;
    if (vocab_path.empty()) {
        vocab_path = default_vocab_path(opts.config.vocab);
        if (vocab_path.empty())
            std::fprintf(stderr, "hearth synth: note: shared test data not found: using a built-in minimal vocabulary\n");
    } else if (vocab_path == "builtin") {
        vocab_path.clear();
    }
    gguf::Metadata vocab;
    if (!vocab_path.empty()) {
        auto v = read_vocab(vocab_path);
        if (!v.ok()) fail("synth", v.status());
        vocab = std::move(v).value();
        opts.vocab = &vocab;
    }

    auto plan = model::plan_synth(opts);
    if (!plan.ok()) fail("synth", plan.status());
    const model::SynthConfig& c = plan.value().config;
    std::fprintf(stderr, "hearth synth: %s (%s): %d layers, n_embd %lld, ff %lld, %d heads / %d kv x %d, vocab %lld, ctx %lld",
                 c.preset.c_str(), c.arch.c_str(), c.n_layer, (long long)c.n_embd, (long long)c.n_ff, c.n_head, c.n_head_kv,
                 c.head_dim, (long long)c.n_vocab, (long long)c.n_ctx);
    if (c.n_expert) std::fprintf(stderr, ", %d of %d experts x %lld", c.n_expert_used, c.n_expert, (long long)c.n_ff_exp);
    std::fprintf(stderr, "\nhearth synth: %s, %.3f B parameters, %.2f GB of tensors, vocabulary %s\n", opts.type.name.c_str(),
                 plan.value().n_params / 1e9, plan.value().tensor_bytes / 1e9,
                 vocab_path.empty() ? "built-in" : vocab_path.c_str());
    for (const auto& note : plan.value().notes) std::fprintf(stderr, "hearth synth: note: %s\n", note.c_str());
    if (a.dry_run) return;

    // Progress for models that take more than a moment: a rewritten line on a terminal, else a
    // line every few seconds.
    const bool tty = isatty(fileno(stderr));
    const bool show = plan.value().tensor_bytes > (uint64_t{64} << 20);
    const int64_t t0 = now_ns();
    int64_t last_print = t0;
    opts.on_progress = [&](const model::SynthProgress& p) {
        if (!show || p.name.empty()) return;
        const int64_t now = now_ns();
        if (!tty && now - last_print < 5'000'000'000) return;
        last_print = now;
        std::fprintf(stderr, "%s  tensor %d/%d  %.2f/%.2f GB  %.0f s  %.*s%s", tty ? "\r\033[K" : "", p.tensor + 1, p.n_tensors,
                     p.bytes_done / 1e9, p.bytes_total / 1e9, (now - t0) / 1e9, (int)p.name.size(), p.name.data(),
                     tty ? "" : "\n");
        std::fflush(stderr);
    };
    auto size = model::write_synth(opts, plan.value(), a.out);
    if (show && tty) std::fprintf(stderr, "\r\033[K");
    if (!size.ok()) fail("synth", size.status());
    std::printf("wrote %s: %s %s, %.2f GB, %zu tensors, %.1f s\n", a.out.c_str(), c.preset.c_str(), opts.type.name.c_str(),
                size.value() / 1e9, plan.value().tensors.size(), (now_ns() - t0) / 1e9);
}

}  // namespace

void add_synth_command(CLI::App& app) {
    auto a = std::make_shared<SynthArgs>();
    CLI::App* cmd = app.add_subcommand(
        "synth", "Write a random-weight GGUF with the real shapes and metadata of a known model (for benchmarks and tests)");
    cmd->add_option("--preset", a->preset, "Checkpoint to imitate: llama3.2-1b, qwen3-8b, ..., or tiny (see --list)");
    cmd->add_option("--arch", a->arch, "Architecture the preset must have (llama, mixtral, qwen2, qwen3, qwen3moe, bert)");
    cmd->add_option("--type", a->type, "Tensor type: F16, Q8_0, Q4_K, ... or a llama-quantize mix: Q4_K_M, Q5_K_M, Q3_K_M, "
                                       "Q4_K_S, Q5_K_S, MXFP4_MOE")->capture_default_str();
    cmd->add_option("-o,--out", a->out, "Output GGUF file");
    cmd->add_option("--vocab", a->vocab, "GGUF (or .gguf.gz) whose tokenizer to copy, or 'builtin' "
                                         "(default: the shared test data's vocabulary for the family)");
    cmd->add_option("--seed", a->seed, "Random seed (same seed, same file)")->type_name("INT")->capture_default_str();
    cmd->add_option("-t,--threads", a->threads, "Threads (0: all cores)")->type_name("INT")->capture_default_str();
    cmd->add_flag("--list", a->list, "List the presets and types");
    cmd->add_flag("--dry-run", a->dry_run, "Print the shapes, parameter count and size; write nothing");
    auto dim = [&](const char* flag, std::string& field, const char* help) { cmd->add_option(flag, field, help)->type_name("INT"); };
    dim("--layers", a->n_layer, "Override: number of layers");
    dim("--embd", a->n_embd, "Override: embedding width");
    dim("--ff", a->n_ff, "Override: feed-forward width");
    dim("--heads", a->n_head, "Override: attention heads");
    dim("--kv-heads", a->n_head_kv, "Override: key/value heads");
    dim("--head-dim", a->head_dim, "Override: head size");
    dim("--experts", a->n_expert, "Override: number of experts (0: dense)");
    dim("--experts-used", a->n_expert_used, "Override: experts used per token");
    dim("--expert-ff", a->n_ff_exp, "Override: expert feed-forward width");
    dim("--vocab-size", a->n_vocab, "Override: vocabulary size");
    dim("--ctx", a->n_ctx, "Override: context length");
    cmd->callback([a] { run_synth(*a); });
}

}  // namespace hearth::cli
