// store::fit: the memory estimate the daemon reserves before a load, and the verdict against
// this machine (fit.h).
#include "store/fit.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>

#include "backend/cpu/membw.h"
#include "base/sysinfo.h"
#include "base/thread_pool.h"
#include "model/cuda_decoder.h"
#include "store/quantize.h"
#include "store/store.h"

namespace hearth::store {
namespace {

constexpr int64_t kDefaultNumCtx = 4096;  // the daemon's default (server/config.h: HEARTH_CONTEXT_LENGTH)
constexpr int64_t kGiB = int64_t{1} << 30;

// Verdict sizes: "12.3 GiB" from 1 GiB up (one decimal, so lines compare at a glance), else "300 MiB".
std::string gib(int64_t bytes) {
    if (bytes >= kGiB) return strformat("%.1f GiB", (double)bytes / (double)kGiB);
    return strformat("%.0f MiB", (double)bytes / (double)(1 << 20));
}

// Physical memory; 0 when the system will not say.
int64_t physical_memory() {
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    return pages > 0 && page > 0 ? (int64_t)pages * page : 0;
}

Result<quant::QuantType> parse_kv_type(const std::string& name) {
    auto t = quant::parse_type_name(name);
    if (!t || (*t != quant::QuantType::f32 && *t != quant::QuantType::f16 && *t != quant::QuantType::q8_0 &&
               *t != quant::QuantType::q4_0))
        return error(StatusCode::invalid_argument, "unknown KV cache type '" + name + "' (choose f16, q8_0 or q4_0)");
    return *t;
}

// estimate_memory with the weights given (another quantization's file size).
Result<MemoryEstimate> estimate_with(const GgufInfo& info, int64_t weights_bytes, const runtime::EngineOptions& opt,
                                     int64_t mem_available) {
    MemoryEstimate e;
    e.weights_bytes = weights_bytes;
    e.vocab_bytes = vocabulary_bytes(info.n_vocab);
    if (!info.embedding && info.kv_layout.n_layer > 0) {
        HEARTH_ASSIGN(e.kv, runtime::plan_kv(info.kv_layout, opt, mem_available));
        e.kv_bytes = e.kv.bytes;
    }
    // Every sequence of the pool may sample in one step (an embedding model: no logits).
    const int64_t outputs = info.embedding ? 0 : std::min<int64_t>(std::max(e.kv.n_parallel, 1), opt.step_tokens);
    e.compute_bytes = compute_scratch_bytes(info.n_embd, info.embedding ? 0 : info.n_vocab, opt.step_tokens, outputs);
    return e;
}

// The estimate for num_ctx, or what one full context needs when an automatic pool cannot hold
// one (the daemon would refuse to load: a "does not fit", not an error). `squeezed` says so.
Result<MemoryEstimate> estimate_ctx(const GgufInfo& info, int64_t weights_bytes, runtime::EngineOptions opt,
                                    int64_t mem_available, bool* squeezed) {
    auto e = estimate_with(info, weights_bytes, opt, mem_available);
    if (squeezed) *squeezed = false;
    const bool automatic = opt.n_parallel == 0 && opt.n_kv_blocks == 0 && opt.kv_bytes == 0;
    if (e.ok() || !automatic || e.status().code() != StatusCode::resource_exhausted) return e;
    if (squeezed) *squeezed = true;
    opt.n_parallel = 1;
    return estimate_with(info, weights_bytes, opt, mem_available);
}

// The largest num_ctx below opt.n_ctx (a multiple of 1024, or of 256 under 1024) whose estimate
// fits in mem_available; 0 when none does. The KV pool grows with num_ctx, so bisect.
int64_t largest_fitting_ctx(const GgufInfo& info, int64_t weights_bytes, const runtime::EngineOptions& opt,
                            int64_t mem_available) {
    auto fits = [&](int64_t n_ctx) {
        runtime::EngineOptions o = opt;
        o.n_ctx = n_ctx;
        bool squeezed = false;
        auto e = estimate_ctx(info, weights_bytes, o, mem_available, &squeezed);
        return e.ok() && !squeezed && e->total_bytes() <= mem_available;
    };
    auto step_of = [](int64_t n) { return n >= 1024 ? int64_t{1024} : int64_t{256}; };
    int64_t lo = 0, hi = opt.n_ctx;  // fits(lo) (or lo == 0), !fits(hi)
    while (hi - lo > 1) {
        const int64_t mid = lo + (hi - lo) / 2;
        if (fits(mid)) lo = mid;
        else hi = mid;
    }
    int64_t n = lo / step_of(lo) * step_of(lo);
    if (n < 256) return 0;
    return fits(n) ? n : 0;
}

std::string verdict_line(const FitReport& r, bool squeezed) {
    if (r.fits) return r.spare_bytes >= (int64_t{100} << 20) ? "fits with " + gib(r.spare_bytes) + " to spare" : "fits";
    std::string v = "does not fit: needs " + gib(r.need.total_bytes()) + ", " + gib(r.mem_available) + " available";
    if (squeezed)
        v += strformat(" (an automatic KV pool, a quarter of free memory, cannot hold one context of %lld positions)",
                       (long long)r.num_ctx);
    std::vector<std::string> tries;
    if (r.suggested_num_ctx > 0) tries.push_back(strformat("num_ctx %lld", (long long)r.suggested_num_ctx));
    if (!r.suggested_type.empty()) {
        for (const FitAlternative& a : r.alternatives)
            if (a.type == r.suggested_type)
                tries.push_back("a smaller quantization (" + a.type + " would need " + gib(a.total_bytes) + ")");
    } else {
        // Nothing smaller fits: say what the smallest would need, when quantizing would matter
        // at all (not when the KV cache is nearly everything).
        const FitAlternative* smallest = nullptr;
        for (const FitAlternative& a : r.alternatives)
            if (!smallest || a.total_bytes < smallest->total_bytes) smallest = &a;
        if (smallest && (double)smallest->total_bytes < 0.9 * (double)r.need.total_bytes())
            v += " (even " + smallest->type + " would need " + gib(smallest->total_bytes) + ")";
    }
    if (!tries.empty()) {
        v += " — try " + tries[0];
        for (size_t i = 1; i < tries.size(); ++i) v += " or " + tries[i];
    }
    if (r.mem_total > r.need.total_bytes())
        v += "; the machine has " + gib(r.mem_total) + " in all: free some (close programs, unload models)";
    return v;
}

}  // namespace

int64_t vocabulary_bytes(int64_t n_vocab) { return std::max<int64_t>(n_vocab, 0) * 560; }

int64_t compute_scratch_bytes(int64_t n_embd, int64_t n_vocab, int64_t step_tokens, int64_t n_outputs) {
    return step_tokens * n_embd * 4 * 12 + std::max<int64_t>(n_outputs, 1) * n_vocab * 4 + (int64_t{8} << 20);
}

Result<MemoryEstimate> estimate_memory(const GgufInfo& info, const runtime::EngineOptions& opt, int64_t mem_available) {
    return estimate_with(info, info.file_bytes, opt, mem_available);
}

double machine_read_bandwidth() {
    static const double bw = [] {
        ThreadPool pool;
        auto r = backend::measure_read_bandwidth(pool);
        return r.ok() ? r->bytes_per_second : 0.0;
    }();
    return bw;
}

// The GPU part of the report (FitReport::gpu), from FitOptions' figure or device 0.
static FitGpu fit_gpu(const GgufInfo& info, const FitOptions& opt) {
    FitGpu g;
    g.free_bytes = opt.gpu_free_bytes;
    g.name = opt.gpu_name;
    std::vector<int64_t> others = opt.other_gpus_free_bytes;
    if (g.free_bytes < 0) {
        auto mem = model::query_gpu_memory(0);
        if (!mem.ok()) return FitGpu{};
        g.free_bytes = mem->free_bytes;
        g.name = mem->name;
        others.clear();
        for (int i = 1; i < model::cuda_device_count(); ++i) {
            auto m = model::query_gpu_memory(i);
            if (m.ok()) others.push_back(m->free_bytes);
        }
    }
    if (g.free_bytes <= 0) return FitGpu{};
    if (g.name.empty()) g.name = "the GPU";
    const double gib = (double)g.free_bytes / (1 << 30);
    g.n_layers_total = info.kv_layout.n_layer;
    g.supported = model::cuda_runs_architecture(info.architecture);
    if (!g.supported) {
        g.verdict = "CPU only: hearth has no CUDA executor for " + info.architecture + " yet";
        return g;
    }
    const int64_t q_dim = info.q_dim > 0 ? info.q_dim : info.n_embd;
    const model::GpuLayerPlan plan = model::plan_gpu_placement(*info.file, info.kv_layout, info.n_embd, info.n_ff,
                                                               q_dim, info.n_vocab, g.free_bytes);
    g.n_layers = plan.n_layers;
    g.output = plan.output;
    if (!plan.output && !others.empty()) {  // too large for device 0: the split the loader would make
        std::vector<int64_t> all = {g.free_bytes};
        all.insert(all.end(), others.begin(), others.end());
        const std::vector<int> split = model::plan_gpu_split(*info.file, info.kv_layout, info.n_embd, info.n_ff, q_dim,
                                                             info.n_vocab, all);
        if (!split.empty()) {
            g.split = split;
            g.n_layers = g.n_layers_total;
            g.output = true;
            std::string parts;
            for (int c : split) {
                if (!parts.empty()) parts += " + ";
                parts += std::to_string(c);
            }
            g.verdict = strformat("fits on %zu GPUs, split by layers %s (%s, %.1f GiB free on the first)", split.size(),
                                  parts.c_str(), g.name.c_str(), gib);
            return g;
        }
    }
    if (!plan.output && plan.n_layers > 0 && !model::cuda_offloads_partially(info.architecture)) {
        g.n_layers = 0;  // the loader keeps the whole model on the CPU (load_model_cuda)
        g.verdict = strformat("CPU only: %d of %d layers would fit on %s (%.1f GiB free), and a partial offload "
                              "runs llama-style families only",
                              plan.n_layers, g.n_layers_total, g.name.c_str(), gib);
        return g;
    }
    if (plan.output)
        g.verdict = strformat("fits fully on the GPU (%s, %.1f GiB free)", g.name.c_str(), gib);
    else if (plan.n_layers > 0)
        g.verdict = strformat("partial offload: %d of %d layers on the GPU (%s, %.1f GiB free), the rest on the CPU",
                              plan.n_layers, g.n_layers_total, g.name.c_str(), gib);
    else
        g.verdict = strformat("CPU only: not one layer fits in %.1f GiB free on %s", gib, g.name.c_str());
    return g;
}

Result<FitReport> fit_info(const GgufInfo& info, const FitOptions& opt) {
    if (opt.num_ctx < 0 || opt.n_parallel < 0 || opt.step_tokens < 1)
        return error(StatusCode::invalid_argument, "num_ctx and parallel must not be negative, num_batch must be positive");
    FitReport r;
    r.architecture = info.architecture;
    r.quantization = info.quantization;
    r.parameter_size = info.parameter_size;
    r.n_ctx_train = info.n_ctx_train;
    r.num_ctx = opt.num_ctx > 0 ? opt.num_ctx
                                : (info.n_ctx_train > 0 ? std::min(kDefaultNumCtx, info.n_ctx_train) : kDefaultNumCtx);

    if (opt.mem_available >= 0) {
        r.mem_available = opt.mem_available;
    } else {
        Result<int64_t> mem = read_mem_available();
        if (!mem.ok()) return mem.status().with_context("free memory");
        r.mem_available = *mem;
    }
    r.mem_total = opt.mem_total >= 0 ? opt.mem_total : physical_memory();

    runtime::EngineOptions eo;
    eo.n_ctx = r.num_ctx;
    eo.n_parallel = opt.n_parallel;
    eo.step_tokens = opt.step_tokens;
    HEARTH_ASSIGN(eo.kv_type, parse_kv_type(opt.kv_type));

    bool squeezed = false;
    HEARTH_ASSIGN(r.need, estimate_ctx(info, info.file_bytes, eo, r.mem_available, &squeezed));
    const bool has_pool = r.need.kv.n_blocks > 0;
    r.n_parallel = has_pool ? r.need.kv.n_parallel : 0;
    r.kv_type = has_pool ? quant::type_name(r.need.kv.type) : "";
    r.spare_bytes = r.mem_available - r.need.total_bytes();
    r.fits = !squeezed && r.spare_bytes >= 0;

    if (info.file) {
        for (const std::string& type : opt.alternatives) {
            auto plan = plan_quantize(*info.file, type);
            if (!plan.ok()) return plan.status().with_context("alternative");
            FitAlternative a;
            a.type = plan->target.name;
            a.weights_bytes = (int64_t)plan->file_bytes;
            bool alt_squeezed = false;
            auto e = estimate_ctx(info, a.weights_bytes, eo, r.mem_available, &alt_squeezed);
            if (!e.ok()) return e.status();
            a.total_bytes = e->total_bytes();
            a.fits = !alt_squeezed && a.total_bytes <= r.mem_available;
            r.alternatives.push_back(std::move(a));
        }
    }
    if (opt.read_bandwidth > 0) {
        // Weights a decode token reads: the file less the embedding table when the output
        // matrix is its own tensor (a lookup reads one row); without tensor infos, the file.
        int64_t embd_bytes = 0;
        if (info.file) {
            bool tied = true;
            for (const auto& t : info.file->tensors) tied = tied && t.name != "output.weight";
            for (const auto& t : info.file->tensors)
                if (t.name == "token_embd.weight" && !tied) embd_bytes = (int64_t)t.n_bytes;
        }
        const double read_share = info.file_bytes > 0 ? 1.0 - (double)embd_bytes / (double)info.file_bytes : 1.0;
        r.read_bandwidth = opt.read_bandwidth;
        r.decode_bytes_per_token = info.file_bytes - embd_bytes;
        const double kv_per_seq = has_pool ? (double)r.need.kv_bytes / std::max(1, r.n_parallel) : 0.0;
        if (r.decode_bytes_per_token > 0) {
            r.decode_tokens_per_second = opt.read_bandwidth / (double)r.decode_bytes_per_token;
            r.decode_tokens_per_second_full_ctx = opt.read_bandwidth / ((double)r.decode_bytes_per_token + kv_per_seq);
        }
        for (FitAlternative& a : r.alternatives)
            if (a.weights_bytes > 0) a.decode_tokens_per_second = opt.read_bandwidth / (read_share * (double)a.weights_bytes);
    }
    if (!r.fits) {
        if (has_pool) r.suggested_num_ctx = largest_fitting_ctx(info, info.file_bytes, eo, r.mem_available);
        for (const FitAlternative& a : r.alternatives) {  // largest first: the best quality that fits
            if (a.fits && a.weights_bytes < r.need.weights_bytes) {
                r.suggested_type = a.type;
                break;
            }
        }
    }
    r.verdict = verdict_line(r, squeezed);
    if (info.file && info.kv_layout.n_layer > 0) r.gpu = fit_gpu(info, opt);
    return r;
}

Result<FitReport> fit_file(const std::string& path, const FitOptions& opt) {
    HEARTH_ASSIGN(GgufInfo info, read_gguf_info(path));
    auto r = fit_info(info, opt);
    if (!r.ok()) return r.status().with_context(path);
    return r;
}

Result<FitReport> fit_model(const Store& store, std::string_view name_or_path, const FitOptions& opt) {
    HEARTH_ASSIGN(ModelRef ref, store.resolve(name_or_path));
    HEARTH_ASSIGN(GgufInfo info, store.info(ref, /*with_file=*/true));
    auto r = fit_info(info, opt);
    if (!r.ok()) return r.status().with_context(ref.name);
    return r;
}

// gguf's reader wants the whole file: it checks every tensor's data range against the bytes it
// is given. A header alone is parsed as a sparse in-memory file of the real size (memfd: the
// holes cost no memory and read as zeros; only the header's pages are ever touched), so the
// reader, its validation and read_gguf_info are used exactly as for a file on disk. A header
// cut short reads zeros where its end is missing, which the reader rejects (an empty key or
// tensor name, a tensor of no dimensions) or which leaves the tensor infos ending past the bytes
// given: both are reported as out_of_range, "fetch more".
Result<FitReport> fit_from_header(std::span<const std::byte> header_bytes, int64_t file_size, const FitOptions& opt) {
    constexpr int64_t kMaxFileBytes = int64_t{1} << 46;  // 64 TiB: no model is larger
    if (file_size <= 0 || file_size > kMaxFileBytes || (uint64_t)file_size < header_bytes.size())
        return error(StatusCode::invalid_argument,
                     strformat("GGUF header: %zu bytes given of a file of %lld bytes", header_bytes.size(), (long long)file_size));
    const int fd = memfd_create("hearth-gguf-header", MFD_CLOEXEC);
    if (fd < 0) return error(StatusCode::io_error, std::string("GGUF header: memfd_create: ") + std::strerror(errno));
    struct Closer {
        int fd;
        ~Closer() { ::close(fd); }
    } closer{fd};
    if (ftruncate(fd, (off_t)file_size) != 0)
        return error(StatusCode::io_error, std::string("GGUF header: ftruncate: ") + std::strerror(errno));
    for (size_t done = 0; done < header_bytes.size();) {
        const ssize_t n = pwrite(fd, header_bytes.data() + done, header_bytes.size() - done, (off_t)done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return error(StatusCode::io_error, std::string("GGUF header: write: ") + std::strerror(errno));
        done += (size_t)n;
    }
    const std::string path = "/proc/self/fd/" + std::to_string(fd);
    const bool partial = header_bytes.size() < (uint64_t)file_size;
    const std::string what = strformat("GGUF header (%zu of %lld bytes)", header_bytes.size(), (long long)file_size);
    auto info = read_gguf_info(path);
    if (!info.ok()) {
        std::string msg = info.status().message();
        if (msg.rfind(path + ": ", 0) == 0) msg.erase(0, path.size() + 2);  // the memfd's name means nothing to a reader
        if (partial)
            return error(StatusCode::out_of_range,
                         what + ": the metadata and tensor infos do not end within these bytes, or are damaged (" + msg +
                             "); fetch more of the file");
        return error(info.status().code(), what + ": " + msg);
    }
    if (info->file->data_offset > header_bytes.size())
        return error(StatusCode::out_of_range,
                     strformat("%s: the tensor infos end at byte %llu; fetch more of the file", what.c_str(),
                               (unsigned long long)info->file->data_offset));
    auto r = fit_info(*info, opt);
    if (!r.ok()) return r.status().with_context(what);
    return r;
}

nlohmann::ordered_json fit_report_json(const FitReport& r) {
    nlohmann::ordered_json j;
    j["architecture"] = r.architecture;
    j["quantization"] = r.quantization;
    j["parameter_size"] = r.parameter_size;
    j["context_length"] = r.n_ctx_train;
    j["num_ctx"] = r.num_ctx;
    j["num_parallel"] = r.n_parallel;
    j["kv_cache_type"] = r.kv_type;
    j["weights_bytes"] = r.need.weights_bytes;
    j["kv_cache_bytes"] = r.need.kv_bytes;
    j["compute_bytes"] = r.need.compute_bytes;
    j["vocabulary_bytes"] = r.need.vocab_bytes;
    j["total_bytes"] = r.need.total_bytes();
    j["memory_available_bytes"] = r.mem_available;
    j["memory_total_bytes"] = r.mem_total;
    j["fits"] = r.fits;
    j["spare_bytes"] = r.spare_bytes;
    if (r.suggested_num_ctx > 0) j["suggested_num_ctx"] = r.suggested_num_ctx;
    if (!r.suggested_type.empty()) j["suggested_quantization"] = r.suggested_type;
    nlohmann::ordered_json alts = nlohmann::ordered_json::array();
    for (const FitAlternative& a : r.alternatives)
        alts.push_back({{"quantization", a.type},
                        {"weights_bytes", a.weights_bytes},
                        {"total_bytes", a.total_bytes},
                        {"fits", a.fits}});
    j["alternatives"] = std::move(alts);
    if (r.read_bandwidth > 0) {
        j["read_bandwidth_bytes_per_second"] = r.read_bandwidth;
        j["decode_bytes_per_token"] = r.decode_bytes_per_token;
        j["expected_decode_tokens_per_second"] = r.decode_tokens_per_second;
        j["expected_decode_tokens_per_second_full_context"] = r.decode_tokens_per_second_full_ctx;
        for (size_t i = 0; i < r.alternatives.size(); ++i)
            j["alternatives"][i]["expected_decode_tokens_per_second"] = r.alternatives[i].decode_tokens_per_second;
    }
    j["verdict"] = r.verdict;
    if (!r.gpu.name.empty()) {
        j["gpu"] = {{"name", r.gpu.name},
                    {"free_bytes", r.gpu.free_bytes},
                    {"supported", r.gpu.supported},
                    {"layers", r.gpu.n_layers},
                    {"layers_total", r.gpu.n_layers_total},
                    {"output", r.gpu.output},
                    {"verdict", r.gpu.verdict}};
        if (!r.gpu.split.empty()) j["gpu"]["split"] = r.gpu.split;
    }
    return j;
}

}  // namespace hearth::store
