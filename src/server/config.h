// The daemon's configuration: environment variables named like Ollama's (OLLAMA_HOST ->
// HEARTH_HOST, ...; peers.md §1.8), read once at start. Every bad value is an error naming the
// variable, so a typo never silently falls back to a default.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "base/status.h"
#include "runtime/model_manager.h"

namespace hearth::server {

struct ServerConfig {
    std::string host = "127.0.0.1";  // HEARTH_HOST: address to bind ...
    int port = 11434;                // ... and port (0: any free port, for tests)
    std::string models_dir;          // HEARTH_MODELS; empty = store::Store::default_root()
    runtime::Duration keep_alive = std::chrono::minutes(5);  // HEARTH_KEEP_ALIVE
    int max_loaded_models = 3;       // HEARTH_MAX_LOADED_MODELS (0 in the env = the default)
    int num_parallel = 0;            // HEARTH_NUM_PARALLEL: sequences per model; 0 = sized from memory
    int num_thread = 0;              // HEARTH_NUM_THREAD: worker threads per model unless a request's
                                     // num_thread says otherwise; 0 = one per core
    int num_gpu = -1;                // HEARTH_NUM_GPU: 0 = CPU only, -1 = the GPU when present and the
                                     // model is supported there (as many layers as fit), > 0 = that
                                     // many leading layers on the GPU (the rest on the CPU)
    // HEARTH_TENSOR_SPLIT: "3,1": the layers over CUDA devices 0, 1, ... in these proportions
    // (model::LoadOptions::tensor_split); empty = automatic (one GPU when the model fits there).
    std::vector<float> tensor_split;
    int64_t context_length = 0;      // HEARTH_CONTEXT_LENGTH: default num_ctx; 0 = 4096 (capped by the model)
    std::string kv_cache_type = "f16";  // HEARTH_KV_CACHE_TYPE: f16, q8_0, q4_0
    // HEARTH_KV_DISK_CACHE: disk budget of the persistent prefix cache (KV blocks of prompts seen
    // before, kept across restarts); 0 = off (the default). Under HEARTH_KV_DISK_DIR, default
    // ~/.hearth (blocks go to <dir>/kvcache/).
    int64_t kv_disk_bytes = 0;
    std::string kv_disk_dir;
    int max_queue = 512;             // HEARTH_MAX_QUEUE: requests waiting for a model or a slot
    std::string api_key;             // HEARTH_API_KEY: bearer token every endpoint but GET / needs
    std::vector<std::string> origins;  // HEARTH_ORIGINS: extra CORS origins (patterns with *)
    int64_t max_body_bytes = 32ll << 20;  // HEARTH_MAX_BODY: request body limit in bytes
    int http_threads = 128;          // connections served at once (each stream holds one)
    std::optional<int64_t> memory_budget_bytes;  // models' memory budget; unset = from MemAvailable
    bool log_requests = true;        // one log line per request on stderr
};

using EnvFn = std::function<const char*(const char*)>;

// Reads the HEARTH_* variables through `getenv` (std::getenv by default) over the defaults.
// HEARTH_HOST takes host, host:port, :port, [v6]:port, with or without http://.
Result<ServerConfig> config_from_env(const EnvFn& getenv = nullptr);

// The environment variables and what they do, for `hearth serve --help`.
std::string config_help();

}  // namespace hearth::server
