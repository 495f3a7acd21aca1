// hearth fit MODEL: will the model fit in this machine's memory with this context? Weights, KV
// cache and compute scratch as the daemon would reserve them (store/fit.h), against the memory
// free now, and the sizes of the usual quantizations of the same model.
#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <memory>

#include "base/sysinfo.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "cli/format.h"
#include "cli/models.h"
#include "server/config.h"
#include "store/fit.h"
#include "store/store.h"

namespace hearth::cli {
namespace {

// Numbers are taken as text so that a bad value is one "hearth fit: ..." line.
struct FitArgs {
    std::string model, num_ctx, kv_type, parallel, num_batch;
    bool json = false, no_speed = false;
};

int64_t parse_count(const std::string& text, const char* flag) {
    int64_t v = 0;
    const char* end = text.data() + text.size();
    auto [p, ec] = std::from_chars(text.data(), end, v);
    if (ec != std::errc() || p != end || v < 0)
        fail("fit", std::string(flag) + ": '" + text + "' is not a non-negative whole number");
    return v;
}

void run_fit(const FitArgs& a) {
    // Defaults as the daemon's: HEARTH_CONTEXT_LENGTH, HEARTH_KV_CACHE_TYPE, HEARTH_NUM_PARALLEL
    // (unset there means "sized from free memory"; here one sequence, unless --parallel 0).
    auto cfg = server::config_from_env();
    if (!cfg.ok()) fail("fit", cfg.status());
    store::FitOptions opt;
    opt.num_ctx = cfg->context_length;
    opt.kv_type = cfg->kv_cache_type;
    opt.n_parallel = cfg->num_parallel > 0 ? cfg->num_parallel : 1;
    if (!a.num_ctx.empty()) opt.num_ctx = parse_count(a.num_ctx, "--num-ctx");
    if (!a.kv_type.empty()) opt.kv_type = a.kv_type;
    if (!a.parallel.empty()) opt.n_parallel = (int)std::min<int64_t>(parse_count(a.parallel, "--parallel"), 1 << 20);
    if (!a.num_batch.empty()) opt.step_tokens = std::max<int64_t>(1, parse_count(a.num_batch, "--num-batch"));

    if (!a.no_speed) opt.read_bandwidth = store::machine_read_bandwidth();
    store::Store st(store_root());
    auto r = store::fit_model(st, a.model, opt);
    if (!r.ok()) fail("fit", r.status());
    const store::FitReport& f = r.value();

    if (a.json) {
        std::printf("%s\n", store::fit_report_json(f).dump(2).c_str());
        std::exit(f.fits ? 0 : 2);
    }
    std::vector<std::vector<std::string>> rows;
    rows.push_back({"architecture", f.architecture});
    rows.push_back({"parameters", f.parameter_size});
    rows.push_back({"quantization", f.quantization});
    std::string ctx = strformat("%lld", (long long)f.num_ctx);
    if (f.n_ctx_train > 0) ctx += strformat(" (trained for %lld)", (long long)f.n_ctx_train);
    rows.push_back({"context", ctx});
    std::printf("  Model\n%s\n", render_table(rows, 4, "    ").c_str());

    rows.clear();
    rows.push_back({"weights", format_bytes(f.need.weights_bytes)});
    if (f.n_parallel > 0)
        rows.push_back({"KV cache", format_bytes(f.need.kv_bytes),
                        strformat("%s, %d sequence%s of %lld positions", f.kv_type.c_str(), f.n_parallel,
                                  f.n_parallel == 1 ? "" : "s", (long long)f.num_ctx)});
    else
        rows.push_back({"KV cache", format_bytes(0), "none (embedding model)"});
    rows.push_back({"compute", format_bytes(f.need.compute_bytes)});
    if (f.need.vocab_bytes > 0) rows.push_back({"vocabulary", format_bytes(f.need.vocab_bytes), "metadata and tokenizer tables"});
    rows.push_back({"total", format_bytes(f.need.total_bytes())});
    rows.push_back({"available", format_bytes(f.mem_available), "of " + format_bytes(f.mem_total) + " memory"});
    std::printf("  Memory\n%s\n", render_table(rows, 4, "    ").c_str());

    const bool speed = f.decode_tokens_per_second > 0;
    auto tps = [](double v) { return v >= 100 ? strformat("~%.0f t/s", v) : strformat("~%.1f t/s", v); };
    if (speed) {
        rows.clear();
        rows.push_back({"decode", tps(f.decode_tokens_per_second), "at the start of a conversation"});
        if (f.n_parallel > 0)
            rows.push_back({"", tps(f.decode_tokens_per_second_full_ctx),
                            strformat("with %lld positions of context", (long long)f.num_ctx)});
        rows.push_back({"bandwidth", strformat("%.1f GB/s", f.read_bandwidth / 1e9),
                        strformat("memory read, CPU (%s per token)", format_bytes(f.decode_bytes_per_token).c_str())});
        std::printf("  Expected speed (the memory-bandwidth bound of one stream)\n%s\n", render_table(rows, 4, "    ").c_str());
    }

    if (!f.alternatives.empty()) {
        rows.clear();
        if (speed) rows.push_back({"QUANTIZATION", "WEIGHTS", "TOTAL", "FITS", "DECODE"});
        else rows.push_back({"QUANTIZATION", "WEIGHTS", "TOTAL", "FITS"});
        for (const store::FitAlternative& alt : f.alternatives) {
            rows.push_back({alt.type, format_bytes(alt.weights_bytes), format_bytes(alt.total_bytes), alt.fits ? "yes" : "no"});
            if (speed) rows.back().push_back(tps(alt.decode_tokens_per_second));
        }
        std::printf("  Other quantizations\n%s\n", render_table(rows, 4, "    ").c_str());
    }
    std::printf("%s\n", f.verdict.c_str());
    if (!f.gpu.verdict.empty()) std::printf("GPU: %s\n", f.gpu.verdict.c_str());
    std::exit(f.fits ? 0 : 2);
}

}  // namespace

void add_fit_command(CLI::App& app) {
    auto a = std::make_shared<FitArgs>();
    CLI::App* c = app.add_subcommand(
        "fit", "Will a model fit in this machine's memory? (exit status 0: fits, 2: does not fit)");
    c->add_option("model", a->model, "Model name or .gguf path")->required();
    c->add_flag("--no-speed", a->no_speed,
                "Skip the expected decode speed (it measures this machine's memory bandwidth, about a second)");
    c->add_option("--num-ctx,--ctx", a->num_ctx, "Context length per sequence (default: HEARTH_CONTEXT_LENGTH, else 4096 capped by the model)");
    c->add_option("--kv-type", a->kv_type, "KV cache type: f16, q8_0, q4_0 (default: HEARTH_KV_CACHE_TYPE, else f16)");
    c->add_option("--parallel", a->parallel, "Sequences at once, each with a full context (default: HEARTH_NUM_PARALLEL, else 1; 0: sized from free memory as the daemon does)");
    c->add_option("--num-batch", a->num_batch, "Tokens per forward pass (default 512)");
    c->add_flag("--json", a->json, "Print the report as JSON");
    c->callback([a] { run_fit(*a); });
}

}  // namespace hearth::cli
