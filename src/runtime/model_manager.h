// The model manager: which models are loaded, for how long, and what gets unloaded to make room.
// The daemon calls acquire() for every request (generate, chat, embed, the OpenAI endpoints),
// list() for /api/ps and unload() for keep_alive 0 / `hearth stop`. It behaves like Ollama's
// scheduler (peers.md §1.10):
//
//  - Load on first use. acquire() returns a Lease on a loaded model, loading it if needed. Loads of
//    the same (name, config) from many threads at once run the loader once; the others wait and
//    share the result; a failed load is returned to every one of them and nothing stays cached.
//    Loads of different models run concurrently.
//  - Keep alive. A model with leases is in flight and is never unloaded. When its last lease ends
//    it expires after the keep_alive of the last request that acquired it (default 5 minutes;
//    0 = unload as soon as idle; negative = never expires). A reaper thread unloads expired
//    models; it sleeps until the next expiry and is woken by lease ends and clock_advanced().
//  - Room. Every loaded, loading and still-unloading model counts against a memory budget
//    (default: MemAvailable at construction minus a reserve) and against max_loaded. A load that
//    does not fit first unloads idle models, least recently used first (Ollama picks the shortest
//    keep_alive first; LRU keeps what is actually used), and only as many as it needs; if the idle ones are not enough it unloads none and waits (up to wait_timeout) for
//    requests to end. A model whose estimate alone exceeds the budget fails at once with both
//    sizes, even when nothing else is loaded: on a CPU host a bigger budget than MemAvailable
//    means swapping, and Ollama likewise refuses ("model requires more system memory"). The
//    budget is an option, so a user who knows better can raise it.
//  - Reload on config change. A request whose ModelConfig (num_ctx, parallel slots, ...)
//    differs from the loaded one waits until the model is idle, then it is unloaded and loaded
//    again with the new config. While such a request waits, new requests for the old config
//    wait too (no starvation of the reload).
//  - Bounded queue. At most max_queue acquire() calls may be in progress (waiting for a load,
//    for room or for a reload); one more fails with "server busy" (Ollama's OLLAMA_MAX_QUEUE).
//
// Threads: every member may be called from any thread. The manager's mutex is never held across
// the loader, the estimator or an unload (loads take seconds and must not block acquires of other
// models). Unloading a model drops the manager's reference to its LoadedModel, which destroys the
// Engine (stopping its scheduler thread); unloads run on the thread of acquire() (evictions),
// unload() (idle models) or the reaper, never on the thread that ends a lease, so a Lease may be
// released from an Engine callback.
//
// Errors: resource_exhausted for "try again later" (queue full, timed out waiting, shutting
// down, cancelled); out_of_range for a model bigger than the whole budget; the estimator's and
// loader's own errors otherwise, with the model name in front.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "base/status.h"
#include "base/sysinfo.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace hearth::runtime {

class Engine;
class Embedder;  // runtime/embedder.h: pooled embeddings for embedding models

using Duration = std::chrono::nanoseconds;
using TimePoint = std::chrono::steady_clock::time_point;
// The clock keep_alive expiry is measured on. Tests inject a fake one and call
// ModelManager::clock_advanced() after moving it.
using ClockFn = std::function<TimePoint()>;

// keep_alive meaning "never expire". Any negative keep_alive means the same.
inline constexpr Duration kKeepAliveForever = Duration(-1);

// Parses a keep_alive as Ollama accepts it: a number of seconds ("300", "2.5", "-1", "0") or a
// Go duration ("5m", "1h30m", "1.5h", "250ms", "-1m"; units ns, us/µs, ms, s, m, h). Any negative
// value means forever and comes back as kKeepAliveForever; values past what int64 nanoseconds
// hold (~292 years) are forever too. Errors (invalid_argument) quote the text and say what is
// wrong.
Result<Duration> parse_keep_alive(std::string_view text);
// A JSON number keep_alive: seconds; negative = forever. NaN is an error.
Result<Duration> keep_alive_from_seconds(double seconds);

// The load options that need a reload when they change. A name has at most one loaded instance,
// with one config. The daemon resolves its defaults before calling (num_ctx unset and num_ctx
// set to the default must compare equal, or they would reload each other); 0 / -1 / "" are left
// for "automatic".
struct ModelConfig {
    int64_t n_ctx = 0;          // num_ctx: positions per sequence
    int n_parallel = 0;         // sequences at once (HEARTH_NUM_PARALLEL)
    int64_t n_batch = 0;        // num_batch: tokens per scheduler step
    int n_gpu_layers = -1;      // num_gpu: layers offloaded; -1 = automatic
    std::vector<float> tensor_split;  // layers per CUDA device in proportion (HEARTH_TENSOR_SPLIT); empty = automatic
    int n_threads = 0;          // num_thread
    std::string kv_cache_type;  // "f16", "q8_0", "q4_0" (HEARTH_KV_CACHE_TYPE)
    bool use_mlock = false;     // use_mlock: pin the mapped weights in RAM

    bool operator==(const ModelConfig&) const = default;
    // "num_ctx=4096 num_parallel=1 num_batch=auto num_gpu=auto num_thread=auto kv_cache_type=f16"
    std::string to_string() const;
};

// One loaded model and everything built for it. The loader fills it; the manager owns it.
struct LoadedModel {
    std::string name;    // set by the manager to the acquired name
    ModelConfig config;  // set by the manager to the config it was loaded with
    std::shared_ptr<model::Model> model;
    std::shared_ptr<const tok::Tokenizer> tokenizer;
    // Declared after what they use, so they are destroyed first.
    std::shared_ptr<Engine> engine;      // text generation; null for embedding-only models
    std::shared_ptr<Embedder> embedder;  // embedding models; null otherwise
    // Memory it holds: mapped weights + KV pool + scratch. <= 0: the manager keeps the estimate.
    int64_t bytes = 0;
    // Of that, or besides it, what lives in device memory (weights and KV rows on a GPU), for
    // /api/ps's size_vram; 0 on the CPU.
    int64_t bytes_vram = 0;
};

// Loads `name` with `config`; runs without the manager's lock, possibly on several threads at
// once for different names. Must not call back into the manager.
using ModelLoader = std::function<Result<std::shared_ptr<LoadedModel>>(const std::string& name, const ModelConfig& config)>;
// Bytes `name` will hold once loaded with `config` (store::fit's figure), so that room is made
// before loading. Same threading as the loader.
using ModelEstimator = std::function<Result<int64_t>(const std::string& name, const ModelConfig& config)>;

struct ModelManagerOptions {
    // Memory all loaded models may hold together. Unset: MemAvailable at construction minus
    // reserve_bytes (but at least half of MemAvailable).
    std::optional<int64_t> budget_bytes;
    int64_t reserve_bytes = int64_t{1} << 30;  // for the OS and the rest of the process
    int max_loaded = 3;                        // HEARTH_MAX_LOADED_MODELS (Ollama: 3 on CPU)
    Duration default_keep_alive = std::chrono::minutes(5);  // HEARTH_KEEP_ALIVE
    int max_queue = 512;                       // HEARTH_MAX_QUEUE: acquire() calls in progress
    // Longest one acquire() waits in all (for room, for a load by another request, for a reload).
    // Real (steady) time, whatever `clock` says. The loader call itself is not bounded.
    Duration wait_timeout = std::chrono::minutes(5);
    ClockFn clock;  // keep_alive expiry clock; empty = std::chrono::steady_clock::now
};

// What /api/ps shows of one loaded model (models still loading are not listed).
struct ModelStatus {
    std::string name;
    ModelConfig config;
    int64_t bytes = 0;
    int64_t bytes_vram = 0;  // LoadedModel::bytes_vram
    int n_in_flight = 0;  // live leases
    Duration keep_alive{};  // of the last request; negative = forever
    // Idle: when it unloads. In flight: when it would if its requests ended now (what `ollama ps`
    // shows). Empty: never (negative keep_alive). On the manager's clock; see ModelManager::now().
    std::optional<TimePoint> expires_at;
};

struct ModelSlot;  // the manager's bookkeeping for one model (model_manager.cpp)
class ModelManager;

// A model in use by one request: move-only, and the model stays loaded while it lives. Must end
// before the manager is destroyed (shutdown() waits for every lease). May be released on any
// thread, an Engine callback included. Keep no copy of the LoadedModel's pointers past it.
class Lease {
public:
    Lease() = default;
    Lease(Lease&& other) noexcept;
    Lease& operator=(Lease&& other) noexcept;
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    ~Lease();

    explicit operator bool() const { return model_ != nullptr; }
    const LoadedModel& operator*() const { return *model_; }
    const LoadedModel* operator->() const { return model_; }
    // Time acquire() took: 0-ish for a loaded model, the load (or wait) otherwise. Ollama's
    // load_duration.
    int64_t acquire_ns() const { return acquire_ns_; }
    // Ends the lease now (the destructor does the same); idempotent.
    void release();

private:
    friend class ModelManager;
    Lease(ModelManager* manager, std::shared_ptr<ModelSlot> slot, const LoadedModel* model, int64_t acquire_ns)
        : manager_(manager), slot_(std::move(slot)), model_(model), acquire_ns_(acquire_ns) {}

    ModelManager* manager_ = nullptr;
    std::shared_ptr<ModelSlot> slot_;
    const LoadedModel* model_ = nullptr;  // owned by the slot; valid while the lease lives
    int64_t acquire_ns_ = 0;
};

class ModelManager {
public:
    // invalid_argument for a bad option (max_loaded or max_queue < 1, budget <= 0, negative
    // wait_timeout); io_error when the budget is automatic and /proc/meminfo cannot be read.
    // Starts the reaper thread.
    static Result<std::unique_ptr<ModelManager>> create(ModelLoader loader, ModelEstimator estimator,
                                                        ModelManagerOptions options = {});
    // shutdown().
    ~ModelManager();
    ModelManager(const ModelManager&) = delete;
    ModelManager& operator=(const ModelManager&) = delete;

    // A lease on `name` loaded with `config`, loading it first if needed (see the file comment).
    // keep_alive: this request's (empty = the default); it decides when the model expires if this
    // is the last request to acquire it. `stop` aborts a waiting acquire (client gone); it does not
    // interrupt the loader. Must not be called while the same thread holds a lease that has to end
    // for this one to proceed (it would wait until wait_timeout).
    Result<Lease> acquire(const std::string& name, const ModelConfig& config,
                          std::optional<Duration> keep_alive = std::nullopt, std::stop_token stop = {});

    // keep_alive 0 / `hearth stop`: an idle model is unloaded now, on this thread; one in flight
    // or loading is unloaded as soon as its last lease ends (unless a later request acquires it
    // with another keep_alive, as in Ollama). False when `name` is not loaded or loading.
    // Must not be called from an Engine callback (it may destroy that Engine).
    bool unload(const std::string& name);

    // Loaded models in name order.
    std::vector<ModelStatus> list() const;
    int64_t budget_bytes() const { return budget_bytes_; }
    // Loaded + loading (their estimates) + still unloading.
    int64_t used_bytes() const;
    // acquire() calls in progress (at most max_queue): the request queue's length.
    int queue_length() const;
    // The expiry clock's now (for turning expires_at into wall time).
    TimePoint now() const { return clock_(); }

    // The injected clock jumped: the reaper re-reads it now. Not needed with the steady clock.
    void clock_advanced();

    // Fails waiting and new acquires, stops the reaper, waits for running loads to finish and
    // for every lease to end (the daemon cancels its requests first), then unloads everything.
    // Idempotent; must not be called concurrently with itself or from an Engine callback.
    void shutdown();

private:
    friend class Lease;
    ModelManager(ModelLoader loader, ModelEstimator estimator, const ModelManagerOptions& options,
                 int64_t budget_bytes);
    Result<Lease> acquire_locked(std::unique_lock<std::mutex>& lk, const std::string& name,
                                 const ModelConfig& config, Duration keep_alive, const std::stop_token& stop);
    void release(ModelSlot& slot);
    void reaper_loop();
    // Takes `slots` out of the map (caller holds mu_; each is idle), unlocks, destroys their
    // models and relocks. Counts them as unloading meanwhile.
    void unload_slots(std::unique_lock<std::mutex>& lk, std::vector<std::shared_ptr<ModelSlot>> slots);
    // Which idle slots to unload, LRU first, so that `need_bytes` more and one more model fit;
    // `replaced` (an idle slot being reloaded with another config; may be null) always goes.
    // nullopt: even unloading every idle one would not be enough.
    std::optional<std::vector<std::shared_ptr<ModelSlot>>> plan_room(int64_t need_bytes,
                                                                     const std::shared_ptr<ModelSlot>& replaced) const;
    int64_t used_bytes_locked() const;
    // Something acquire() waiters may care about changed (under mu_).
    void changed();

    ModelLoader loader_;
    ModelEstimator estimator_;
    ModelManagerOptions opt_;
    ClockFn clock_;
    int64_t budget_bytes_;

    mutable std::mutex mu_;
    // acquire() waiters wait on state_gen_ changing (condition_variable_any: stop_token waits).
    std::condition_variable_any cv_;
    std::condition_variable reaper_cv_;  // the reaper: lease ends, clock jumps, shutdown
    // ---- under mu_ ----
    // Invariant: one slot per name; a slot leaves the map when its load fails or it is unloaded
    // (and only while it has no leases).
    std::map<std::string, std::shared_ptr<ModelSlot>> slots_;
    int64_t unloading_bytes_ = 0;  // taken out of slots_, destructors still running
    uint64_t state_gen_ = 0;       // bumped by changed()
    uint64_t use_seq_ = 0;         // LRU clock: slots record it at acquire and release
    int n_acquiring_ = 0;          // acquire() calls in progress (the queue)
    int n_leases_ = 0;             // live leases over all slots
    bool stopping_ = false;
    bool shut_down_ = false;

    std::thread reaper_;  // last: started after everything above exists
};

}  // namespace hearth::runtime
