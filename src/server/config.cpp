#include "server/config.h"

#include <cmath>
#include <cstdlib>
#include <limits>

#include "quant/types.h"

namespace hearth::server {
namespace {

// The comma-separated pieces of `text`, spaces around each trimmed (empty pieces kept).
std::vector<std::string> split_commas(const std::string& text) {
    std::vector<std::string> out;
    for (size_t start = 0; start <= text.size();) {
        size_t comma = text.find(',', start);
        if (comma == std::string::npos) comma = text.size();
        std::string piece = text.substr(start, comma - start);
        while (!piece.empty() && piece.front() == ' ') piece.erase(piece.begin());
        while (!piece.empty() && piece.back() == ' ') piece.pop_back();
        out.push_back(std::move(piece));
        start = comma + 1;
    }
    return out;
}

Result<int64_t> parse_int(const char* var, const std::string& text, int64_t lo, int64_t hi) {
    size_t used = 0;
    long long v = 0;
    try {
        v = std::stoll(text, &used);
    } catch (...) {
        used = 0;
    }
    if (used == 0 || used != text.size())
        return error(StatusCode::invalid_argument, strformat("%s=\"%s\" is not a whole number", var, text.c_str()));
    if (v < lo || v > hi)
        return error(StatusCode::invalid_argument,
                     strformat("%s=%lld is out of range [%lld, %lld]", var, v, (long long)lo, (long long)hi));
    return (int64_t)v;
}

Status parse_host(const std::string& text, ServerConfig& c) {
    std::string s = text;
    for (const char* scheme : {"http://", "https://"})
        if (s.rfind(scheme, 0) == 0) s = s.substr(std::string(scheme).size());
    while (!s.empty() && s.back() == '/') s.pop_back();
    std::string host = s, port;
    if (!s.empty() && s.front() == '[') {  // [v6]:port
        const size_t close = s.find(']');
        if (close == std::string::npos) return error(StatusCode::invalid_argument, "HEARTH_HOST=\"" + text + "\": unclosed [");
        host = s.substr(1, close - 1);
        if (close + 1 < s.size()) {
            if (s[close + 1] != ':') return error(StatusCode::invalid_argument, "HEARTH_HOST=\"" + text + "\": expected :port after ]");
            port = s.substr(close + 2);
        }
    } else if (const size_t colon = s.rfind(':'); colon != std::string::npos && s.find(':') == colon) {
        host = s.substr(0, colon);
        port = s.substr(colon + 1);
    }
    if (!host.empty()) c.host = host;
    if (!port.empty()) {
        auto p = parse_int("HEARTH_HOST port", port, 0, 65535);
        if (!p.ok()) return p.status();
        c.port = (int)*p;
    } else if (!host.empty()) {
        c.port = 11434;  // a host alone keeps Ollama's port
    }
    return {};
}

// "8G", "512M", "1024K", "1.5GiB", "0" (binary units; a bare number is bytes).
Result<int64_t> parse_size(const char* var, const std::string& text) {
    size_t used = 0;
    double v = 0;
    try {
        v = std::stod(text, &used);
    } catch (...) {
        used = 0;
    }
    std::string unit = used ? text.substr(used) : "";
    for (char& ch : unit) ch = (char)std::toupper((unsigned char)ch);
    if (unit.size() > 1 && unit.back() == 'B') unit.pop_back();
    if (unit.size() > 1 && unit.back() == 'I') unit.pop_back();
    double mul = 0;
    if (unit.empty()) mul = 1;
    else if (unit == "K") mul = 1024.0;
    else if (unit == "M") mul = 1024.0 * 1024;
    else if (unit == "G") mul = 1024.0 * 1024 * 1024;
    else if (unit == "T") mul = 1024.0 * 1024 * 1024 * 1024;
    if (used == 0 || mul == 0 || !(v >= 0) || v * mul > 9e18)
        return error(StatusCode::invalid_argument,
                     strformat("%s=\"%s\" is not a size (bytes, or a number with K, M, G or T)", var, text.c_str()));
    return (int64_t)(v * mul);
}

}  // namespace

Result<ServerConfig> config_from_env(const EnvFn& getenv_fn) {
    EnvFn get = getenv_fn ? getenv_fn : EnvFn([](const char* k) { return std::getenv(k); });
    auto env = [&](const char* k) -> std::optional<std::string> {
        const char* v = get(k);
        if (!v || !*v) return std::nullopt;
        return std::string(v);
    };
    ServerConfig c;
    if (auto v = env("HEARTH_HOST")) HEARTH_TRY(parse_host(*v, c));
    if (auto v = env("HEARTH_MODELS")) c.models_dir = *v;
    if (auto v = env("HEARTH_KEEP_ALIVE")) {
        auto d = runtime::parse_keep_alive(*v);
        if (!d.ok()) return d.status().with_context("HEARTH_KEEP_ALIVE");
        c.keep_alive = *d;
    }
    if (auto v = env("HEARTH_MAX_LOADED_MODELS")) {
        HEARTH_ASSIGN(int64_t n, parse_int("HEARTH_MAX_LOADED_MODELS", *v, 0, 1024));
        if (n > 0) c.max_loaded_models = (int)n;
    }
    if (auto v = env("HEARTH_NUM_PARALLEL")) {
        HEARTH_ASSIGN(int64_t n, parse_int("HEARTH_NUM_PARALLEL", *v, 0, 1024));
        c.num_parallel = (int)n;
    }
    if (auto v = env("HEARTH_NUM_THREAD")) {
        HEARTH_ASSIGN(int64_t n, parse_int("HEARTH_NUM_THREAD", *v, 0, 4096));
        c.num_thread = (int)n;
    }
    if (auto v = env("HEARTH_CONTEXT_LENGTH")) {
        HEARTH_ASSIGN(int64_t n, parse_int("HEARTH_CONTEXT_LENGTH", *v, 0, int64_t{1} << 24));
        c.context_length = n;
    }
    if (auto v = env("HEARTH_KV_CACHE_TYPE")) {
        auto t = quant::parse_type_name(*v);
        if (!t || (*t != quant::QuantType::f16 && *t != quant::QuantType::q8_0 && *t != quant::QuantType::q4_0 &&
                   *t != quant::QuantType::f32))
            return error(StatusCode::invalid_argument, "HEARTH_KV_CACHE_TYPE=\"" + *v + "\": use f16, q8_0 or q4_0");
        c.kv_cache_type = *v;
    }
    if (auto v = env("HEARTH_NUM_GPU")) {
        HEARTH_ASSIGN(int64_t n, parse_int("HEARTH_NUM_GPU", *v, -1, 1 << 20));
        c.num_gpu = (int)n;
    }
    if (auto v = env("HEARTH_TENSOR_SPLIT")) {
        for (const std::string& part : split_commas(*v)) {
            char* end = nullptr;
            const float x = std::strtof(part.c_str(), &end);
            if (part.empty() || end != part.c_str() + part.size() || !(x >= 0.0f) || !std::isfinite(x))
                return error(StatusCode::invalid_argument,
                             "HEARTH_TENSOR_SPLIT=\"" + *v + "\": use proportions per GPU, e.g. 3,1");
            c.tensor_split.push_back(x);
        }
    }
    if (auto v = env("HEARTH_KV_DISK_CACHE")) {
        HEARTH_ASSIGN(c.kv_disk_bytes, parse_size("HEARTH_KV_DISK_CACHE", *v));
    }
    if (auto v = env("HEARTH_KV_DISK_DIR")) c.kv_disk_dir = *v;
    if (auto v = env("HEARTH_MAX_QUEUE")) {
        HEARTH_ASSIGN(int64_t n, parse_int("HEARTH_MAX_QUEUE", *v, 1, 1 << 20));
        c.max_queue = (int)n;
    }
    if (auto v = env("HEARTH_API_KEY")) c.api_key = *v;
    if (auto v = env("HEARTH_ORIGINS")) {
        for (std::string& o : split_commas(*v))
            if (!o.empty()) c.origins.push_back(std::move(o));
    }
    if (auto v = env("HEARTH_MAX_BODY")) {
        HEARTH_ASSIGN(int64_t n, parse_int("HEARTH_MAX_BODY", *v, 1024, int64_t{1} << 40));
        c.max_body_bytes = n;
    }
    return c;
}

std::string config_help() {
    return "Environment:\n"
           "  HEARTH_HOST               address:port to listen on (default 127.0.0.1:11434)\n"
           "  HEARTH_MODELS             model store (default ~/.hearth/models; an Ollama store works as is)\n"
           "  HEARTH_KEEP_ALIVE         how long an idle model stays loaded (default 5m; -1 = forever)\n"
           "  HEARTH_MAX_LOADED_MODELS  models loaded at once (default 3)\n"
           "  HEARTH_NUM_PARALLEL       requests one model serves at once (default: sized from free memory)\n"
           "  HEARTH_NUM_THREAD         worker threads per model (default: one per core)\n"
           "  HEARTH_NUM_GPU            0 = CPU only; default: the GPU when present (CUDA builds) and the model runs there\n"
           "  HEARTH_TENSOR_SPLIT       several GPUs: each one's share of the layers, e.g. 3,1 (default: one GPU\n"
           "                            when the model fits there, else all of them by free memory)\n"
           "  HEARTH_CONTEXT_LENGTH     default num_ctx (default 4096, capped by the model's training context)\n"
           "  HEARTH_KV_CACHE_TYPE      KV cache type: f16 (default), q8_0, q4_0\n"
           "  HEARTH_KV_DISK_CACHE      keep prompts' KV blocks on disk across restarts, up to this size (e.g. 8G;\n"
           "                            default 0 = off)\n"
           "  HEARTH_KV_DISK_DIR        where (default ~/.hearth; blocks go to <dir>/kvcache/)\n"
           "  HEARTH_MAX_QUEUE          requests that may wait before the server answers 503 (default 512)\n"
           "  HEARTH_API_KEY            require 'Authorization: Bearer <key>' on every endpoint but GET /\n"
           "  HEARTH_ORIGINS            extra CORS origins, comma-separated, * wildcards (localhost is allowed)\n"
           "  HEARTH_MAX_BODY           request body limit in bytes (default 33554432)\n"
           "  HEARTH_TRACE_STEPS        1 = one line per scheduler step on stderr (tokens, forward and sampling time)\n";
}

}  // namespace hearth::server
