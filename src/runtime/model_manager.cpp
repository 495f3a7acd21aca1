#include "runtime/model_manager.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <fstream>
#include <limits>
#include <new>
#include <sstream>
#include <utility>

#include "base/timer.h"

namespace hearth::runtime {

// One name's model. Everything here is under ModelManager::mu_.
struct ModelSlot {
    enum class State { loading, ready, failed, unloaded };
    std::string name;
    ModelConfig config;
    State state = State::loading;
    std::shared_ptr<LoadedModel> model;  // set when ready; moved out when unloaded
    Status error;                        // failed: what every waiter of this load returns
    // Counted against the budget: the estimate while loading, then the model's own figure.
    int64_t bytes = 0;
    int n_leases = 0;       // in flight; the loading request holds one from the start
    Duration keep_alive{};  // of the last acquire; negative = forever
    uint64_t last_use = 0;  // ModelManager::use_seq_ at the last acquire or release (LRU)
    // Idle with a finite keep_alive: when the reaper unloads it. Empty otherwise.
    std::optional<TimePoint> expires_at;
    // acquire() calls waiting for this model to go idle so they can load it with another config;
    // while > 0, requests for this config wait behind them.
    int n_reload_waiters = 0;
};

namespace {

// t + d, saturating at the clock's end instead of overflowing.
TimePoint add_saturating(TimePoint t, Duration d) {
    if (d > TimePoint::max() - t) return TimePoint::max();
    return t + d;
}

std::string seconds_text(Duration d) {
    return strformat("%.3g s", std::chrono::duration<double>(d).count());
}

Status shutting_down(const std::string& name) {
    return error(StatusCode::resource_exhausted, "model " + name + ": the server is shutting down");
}

// Runs a user callback, turning an escaping exception into a Status.
template <typename T, typename F>
Result<T> guarded(const char* what, F&& f) {
    try {
        return f();
    } catch (const std::bad_alloc&) {
        return error(StatusCode::resource_exhausted, std::string(what) + ": out of memory");
    } catch (const std::exception& e) {
        return error(StatusCode::internal, std::string(what) + " threw: " + e.what());
    } catch (...) {
        return error(StatusCode::internal, std::string(what) + " threw");
    }
}

// Reads one decimal number ("12", "1.5", ".5", "5.") at the front of s; nullopt without a digit.
std::optional<long double> take_number(std::string_view& s) {
    long double v = 0;
    bool any = false;
    size_t i = 0;
    for (; i < s.size() && s[i] >= '0' && s[i] <= '9'; ++i, any = true) v = v * 10 + (s[i] - '0');
    if (i < s.size() && s[i] == '.') {
        long double scale = 0.1L;
        for (++i; i < s.size() && s[i] >= '0' && s[i] <= '9'; ++i, any = true, scale /= 10) v += (s[i] - '0') * scale;
    }
    if (!any) return std::nullopt;
    s.remove_prefix(i);
    return v;
}

Result<Duration> to_duration(long double ns, bool negative) {
    if (negative && ns > 0) return kKeepAliveForever;
    // int64 nanoseconds end at ~292 years: anything longer is forever.
    if (ns >= 9.2e18L) return kKeepAliveForever;
    return Duration(static_cast<int64_t>(std::llround(static_cast<double>(ns))));
}

}  // namespace

// ---- keep_alive ----

Result<Duration> parse_keep_alive(std::string_view text) {
    auto bad = [&](const std::string& why) -> Status {
        return error(StatusCode::invalid_argument, "invalid keep_alive \"" + std::string(text) + "\": " + why +
                                                       " (use seconds like \"300\" or a duration like \"5m\", "
                                                       "\"1h30m\"; \"0\" unloads at once, negative keeps forever)");
    };
    std::string_view s = text;
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
    if (s.empty()) return bad("empty");
    bool negative = false;
    if (s.front() == '-' || s.front() == '+') {
        negative = s.front() == '-';
        s.remove_prefix(1);
    }
    if (s.empty()) return bad("no number");

    // A plain number is seconds (Ollama's OLLAMA_KEEP_ALIVE and JSON numbers).
    if (s.find_first_not_of("0123456789.") == std::string_view::npos) {
        std::string_view rest = s;
        std::optional<long double> v = take_number(rest);
        if (!v || !rest.empty()) return bad("not a number");
        return to_duration(*v * 1e9L, negative);
    }
    // A Go duration: one or more <number><unit>.
    struct Unit {
        std::string_view name;
        long double ns;
    };
    static constexpr Unit kUnits[] = {
        {"ns", 1},          {"us", 1e3L},       {"\xc2\xb5s", 1e3L}, {"\xce\xbcs", 1e3L}, {"ms", 1e6L},
        {"s", 1e9L},        {"m", 60e9L},       {"h", 3600e9L},
    };
    long double total_ns = 0;
    while (!s.empty()) {
        std::optional<long double> v = take_number(s);
        if (!v) return bad("expected a number at \"" + std::string(s) + "\"");
        size_t n = 0;
        while (n < s.size() && !(s[n] >= '0' && s[n] <= '9') && s[n] != '.') ++n;
        std::string_view unit = s.substr(0, n);
        if (unit.empty()) return bad("missing unit after the last number");
        const Unit* u = nullptr;
        for (const Unit& k : kUnits)
            if (k.name == unit) u = &k;
        if (!u) return bad("unknown unit \"" + std::string(unit) + "\"; units are ns, us, ms, s, m, h");
        total_ns += *v * u->ns;
        s.remove_prefix(n);
    }
    return to_duration(total_ns, negative);
}

Result<Duration> keep_alive_from_seconds(double seconds) {
    if (std::isnan(seconds)) return error(StatusCode::invalid_argument, "invalid keep_alive: not a number");
    return to_duration(static_cast<long double>(std::fabs(seconds)) * 1e9L, seconds < 0);
}

namespace {
std::string split_text(const std::vector<float>& split) {
    if (split.empty()) return {};
    std::string s = " tensor_split=";
    for (size_t i = 0; i < split.size(); ++i) {
        if (i > 0) s += ',';
        s += strformat("%g", split[i]);
    }
    return s;
}
}  // namespace

std::string ModelConfig::to_string() const {
    auto num = [](int64_t v, int64_t automatic) { return v == automatic ? std::string("auto") : std::to_string(v); };
    return "num_ctx=" + num(n_ctx, 0) + " num_parallel=" + num(n_parallel, 0) + " num_batch=" + num(n_batch, 0) +
           " num_gpu=" + num(n_gpu_layers, -1) + split_text(tensor_split) + " num_thread=" + num(n_threads, 0) +
           " kv_cache_type=" + (kv_cache_type.empty() ? std::string("default") : kv_cache_type) +
           (use_mlock ? " use_mlock=true" : "");
}

// ---- Lease ----

Lease::Lease(Lease&& other) noexcept
    : manager_(std::exchange(other.manager_, nullptr)), slot_(std::move(other.slot_)),
      model_(std::exchange(other.model_, nullptr)), acquire_ns_(other.acquire_ns_) {}

Lease& Lease::operator=(Lease&& other) noexcept {
    if (this != &other) {
        release();
        manager_ = std::exchange(other.manager_, nullptr);
        slot_ = std::move(other.slot_);
        model_ = std::exchange(other.model_, nullptr);
        acquire_ns_ = other.acquire_ns_;
    }
    return *this;
}

Lease::~Lease() { release(); }

void Lease::release() {
    if (!manager_) return;
    model_ = nullptr;
    std::shared_ptr<ModelSlot> slot = std::move(slot_);
    std::exchange(manager_, nullptr)->release(*slot);
}

// ---- ModelManager ----

Result<std::unique_ptr<ModelManager>> ModelManager::create(ModelLoader loader, ModelEstimator estimator,
                                                           ModelManagerOptions options) {
    if (!loader || !estimator) return error(StatusCode::invalid_argument, "model manager: a loader and an estimator are required");
    if (options.max_loaded < 1)
        return error(StatusCode::invalid_argument, strformat("max loaded models %d: must be at least 1", options.max_loaded));
    if (options.max_queue < 1)
        return error(StatusCode::invalid_argument, strformat("max queue %d: must be at least 1", options.max_queue));
    if (options.wait_timeout < Duration::zero())
        return error(StatusCode::invalid_argument, "model manager: wait_timeout must not be negative");
    int64_t budget = 0;
    if (options.budget_bytes) {
        budget = *options.budget_bytes;
        if (budget <= 0)
            return error(StatusCode::invalid_argument, strformat("memory budget %lld bytes: must be positive", static_cast<long long>(budget)));
    } else {
        HEARTH_ASSIGN(int64_t available, read_mem_available());
        budget = std::max(available - std::max<int64_t>(options.reserve_bytes, 0), available / 2);
        if (budget <= 0) return error(StatusCode::resource_exhausted, "model manager: no memory available (MemAvailable is 0)");
    }
    return std::unique_ptr<ModelManager>(new ModelManager(std::move(loader), std::move(estimator), options, budget));
}

ModelManager::ModelManager(ModelLoader loader, ModelEstimator estimator, const ModelManagerOptions& options,
                           int64_t budget_bytes)
    : loader_(std::move(loader)), estimator_(std::move(estimator)), opt_(options),
      clock_(options.clock ? options.clock : ClockFn([] { return std::chrono::steady_clock::now(); })),
      budget_bytes_(budget_bytes), reaper_([this] { reaper_loop(); }) {}

ModelManager::~ModelManager() { shutdown(); }

void ModelManager::changed() {
    ++state_gen_;
    cv_.notify_all();
}

int64_t ModelManager::used_bytes_locked() const {
    int64_t used = unloading_bytes_;
    for (const auto& [name, s] : slots_) used += s->bytes;
    return used;
}

int64_t ModelManager::used_bytes() const {
    std::lock_guard<std::mutex> lk(mu_);
    return used_bytes_locked();
}

int ModelManager::queue_length() const {
    std::lock_guard<std::mutex> lk(mu_);
    return n_acquiring_;
}

Result<Lease> ModelManager::acquire(const std::string& name, const ModelConfig& config,
                                    std::optional<Duration> keep_alive, std::stop_token stop) {
    const int64_t t0 = now_ns();
    std::unique_lock<std::mutex> lk(mu_);
    if (stopping_) return shutting_down(name);
    if (n_acquiring_ >= opt_.max_queue)
        return error(StatusCode::resource_exhausted,
                     strformat("server busy: %d requests are already waiting for a model; try again later", n_acquiring_));
    ++n_acquiring_;
    Result<Lease> r = acquire_locked(lk, name, config, keep_alive.value_or(opt_.default_keep_alive), stop);
    if (!lk.owns_lock()) lk.lock();
    --n_acquiring_;
    if (stopping_) changed();  // shutdown() waits for the last acquire to leave
    if (r.ok()) r.value().acquire_ns_ = now_ns() - t0;
    return r;
}

Result<Lease> ModelManager::acquire_locked(std::unique_lock<std::mutex>& lk, const std::string& name,
                                           const ModelConfig& config, Duration keep_alive, const std::stop_token& stop) {
    const auto deadline = add_saturating(std::chrono::steady_clock::now(), opt_.wait_timeout);
    std::optional<int64_t> estimate;
    // The slot this call waits to see idle so it can reload `name` with `config`.
    std::shared_ptr<ModelSlot> reload_claim;
    auto drop_claim = [&] {
        if (!reload_claim) return;
        if (--reload_claim->n_reload_waiters == 0) changed();
        reload_claim.reset();
    };
    // Waits until something changes. Not ok: stop waiting and return it.
    auto wait_for_change = [&](const std::string& what) -> Status {
        const uint64_t seen = state_gen_;
        const bool woke = cv_.wait_until(lk, stop, deadline, [&] { return state_gen_ != seen || stopping_; });
        if (stopping_) return shutting_down(name);
        if (stop.stop_requested()) return error(StatusCode::resource_exhausted, "cancelled while waiting for " + what);
        if (!woke)
            return error(StatusCode::resource_exhausted,
                         "timed out after " + seconds_text(opt_.wait_timeout) + " waiting for " + what);
        return Status::ok_status();
    };
    auto lease_on = [&](const std::shared_ptr<ModelSlot>& s) {
        ++s->n_leases;
        ++n_leases_;
        s->keep_alive = keep_alive;
        s->expires_at.reset();
        s->last_use = ++use_seq_;
        return Lease(this, s, s->model.get(), 0);
    };

    for (;;) {
        if (stopping_) {
            drop_claim();
            return shutting_down(name);
        }
        auto it = slots_.find(name);
        std::shared_ptr<ModelSlot> s = it == slots_.end() ? nullptr : it->second;

        if (s && s->state == ModelSlot::State::loading) {
            Status st = wait_for_change("model " + name + " to load");
            if (!st.ok()) {
                drop_claim();
                return st;
            }
            // The load this call waited for failed: every waiter gets its error.
            if (s->state == ModelSlot::State::failed && s->config == config) {
                drop_claim();
                return s->error;
            }
            continue;
        }

        if (s && s->config == config) {
            drop_claim();
            if (s->n_reload_waiters == 0) return lease_on(s);
            // A request for another config waits for this model to go idle; queue behind it.
            HEARTH_TRY(wait_for_change("model " + name + " to be reloaded for an earlier request"));
            continue;
        }

        if (s) {  // loaded with another config: reload it once idle
            if (reload_claim != s) {
                drop_claim();
                reload_claim = s;
                ++s->n_reload_waiters;
            }
            if (s->n_leases > 0) {
                Status st = wait_for_change("model " + name + " to finish its requests before reloading it with " +
                                            config.to_string());
                if (!st.ok()) {
                    drop_claim();
                    return st;
                }
                continue;
            }
            // Idle: replaced below, in the same critical section that reserves the new load, so
            // no request for the old config slips in between.
        } else {
            drop_claim();
        }

        // Not loaded, or `s` is an idle model with another config to replace.
        if (!estimate) {
            lk.unlock();
            Result<int64_t> est = guarded<int64_t>("memory estimate", [&] { return estimator_(name, config); });
            lk.lock();
            if (!est.ok()) {
                drop_claim();
                return est.status().with_context("model " + name);
            }
            estimate = std::max<int64_t>(est.value(), 0);
            continue;  // the map may have changed meanwhile
        }
        if (*estimate > budget_bytes_) {
            drop_claim();
            return error(StatusCode::out_of_range,
                         "model " + name + " needs " + format_bytes(*estimate) + " (weights, KV cache and buffers with " +
                             config.to_string() + ") but the memory budget for all models is " +
                             format_bytes(budget_bytes_) + "; use a smaller num_ctx or quantization, or raise the budget");
        }
        std::optional<std::vector<std::shared_ptr<ModelSlot>>> victims = plan_room(*estimate, s);
        if (!victims) {
            int n_busy = 0;
            for (const auto& [n, o] : slots_) n_busy += o->n_leases > 0 || o->state == ModelSlot::State::loading;
            Status st = wait_for_change(strformat(
                "memory: model %s needs %s; %s of the %s budget is held by %d models with requests in flight "
                "or loading (at most %d models at once)",
                name.c_str(), format_bytes(*estimate).c_str(), format_bytes(used_bytes_locked()).c_str(),
                format_bytes(budget_bytes_).c_str(), n_busy, opt_.max_loaded));
            if (!st.ok()) {
                drop_claim();
                return st;
            }
            continue;
        }
        drop_claim();

        // Reserve the room (the estimate counts from now on), make it, then load without the lock.
        auto slot = std::make_shared<ModelSlot>();
        slot->name = name;
        slot->config = config;
        slot->bytes = *estimate;
        slot->keep_alive = keep_alive;
        slot->n_leases = 1;
        ++n_leases_;
        slot->last_use = ++use_seq_;
        slots_[name] = slot;  // replaces `s` when reloading; `s` is among the victims
        if (!victims->empty()) unload_slots(lk, std::move(*victims));
        lk.unlock();
        Result<std::shared_ptr<LoadedModel>> loaded =
            guarded<std::shared_ptr<LoadedModel>>("model loader", [&] { return loader_(name, config); });
        lk.lock();
        if (!loaded.ok() || !loaded.value()) {
            // A loading slot is never unloaded, so it is still in the map.
            slot->state = ModelSlot::State::failed;
            slot->error = loaded.ok() ? error(StatusCode::internal, "model " + name + ": the loader returned nothing")
                                      : loaded.status().with_context("model " + name);
            slot->n_leases = 0;
            --n_leases_;
            slots_.erase(name);
            changed();
            return slot->error;
        }
        slot->model = std::move(loaded).value();
        slot->model->name = name;
        slot->model->config = config;
        if (slot->model->bytes > 0) slot->bytes = slot->model->bytes;
        slot->state = ModelSlot::State::ready;
        changed();
        if (stopping_) {  // shutdown() unloads it once this lease is gone
            --slot->n_leases;
            --n_leases_;
            return shutting_down(name);
        }
        return Lease(this, slot, slot->model.get(), 0);
    }
}

std::optional<std::vector<std::shared_ptr<ModelSlot>>> ModelManager::plan_room(
    int64_t need_bytes, const std::shared_ptr<ModelSlot>& replaced) const {
    int64_t used = used_bytes_locked();
    int64_t n_models = static_cast<int64_t>(slots_.size());
    auto fits = [&] { return used + need_bytes <= budget_bytes_ && n_models + 1 <= opt_.max_loaded; };
    std::vector<std::shared_ptr<ModelSlot>> victims;
    if (replaced) {
        used -= replaced->bytes;
        --n_models;
        victims.push_back(replaced);
    }
    if (fits()) return victims;
    std::vector<std::shared_ptr<ModelSlot>> idle;
    for (const auto& [name, s] : slots_)
        if (s->state == ModelSlot::State::ready && s->n_leases == 0 && s != replaced) idle.push_back(s);
    std::sort(idle.begin(), idle.end(), [](const auto& a, const auto& b) { return a->last_use < b->last_use; });
    for (auto& s : idle) {
        used -= s->bytes;
        --n_models;
        victims.push_back(s);
        if (fits()) return victims;
    }
    return std::nullopt;  // unloading every idle model would not be enough: unload none, wait
}

void ModelManager::unload_slots(std::unique_lock<std::mutex>& lk, std::vector<std::shared_ptr<ModelSlot>> slots) {
    int64_t bytes = 0;
    std::vector<std::shared_ptr<LoadedModel>> models;
    for (auto& s : slots) {
        auto it = slots_.find(s->name);
        if (it != slots_.end() && it->second == s) slots_.erase(it);
        bytes += s->bytes;
        models.push_back(std::move(s->model));
        s->state = ModelSlot::State::unloaded;
        s->expires_at.reset();
    }
    // Until the destructors are done the memory is still held: count it.
    unloading_bytes_ += bytes;
    changed();
    lk.unlock();
    models.clear();  // Engine destructors join their scheduler threads; weights are unmapped
    slots.clear();
    lk.lock();
    unloading_bytes_ -= bytes;
    changed();
}

void ModelManager::release(ModelSlot& slot) {
    std::lock_guard<std::mutex> lk(mu_);
    --slot.n_leases;
    --n_leases_;
    slot.last_use = ++use_seq_;
    if (slot.n_leases == 0) {
        if (slot.keep_alive < Duration::zero()) slot.expires_at.reset();
        else slot.expires_at = add_saturating(clock_(), slot.keep_alive);
        reaper_cv_.notify_all();
    }
    changed();
}

bool ModelManager::unload(const std::string& name) {
    std::unique_lock<std::mutex> lk(mu_);
    auto it = slots_.find(name);
    if (it == slots_.end()) return false;
    std::shared_ptr<ModelSlot> s = it->second;
    s->keep_alive = Duration::zero();  // in flight or loading: expires when its last lease ends
    if (s->state == ModelSlot::State::ready && s->n_leases == 0) unload_slots(lk, {s});
    return true;
}

std::vector<ModelStatus> ModelManager::list() const {
    std::lock_guard<std::mutex> lk(mu_);
    const TimePoint now = clock_();
    std::vector<ModelStatus> out;
    for (const auto& [name, s] : slots_) {
        if (s->state != ModelSlot::State::ready) continue;
        ModelStatus m;
        m.name = name;
        m.config = s->config;
        m.bytes = s->bytes;
        m.bytes_vram = s->model ? s->model->bytes_vram : 0;
        m.n_in_flight = s->n_leases;
        m.keep_alive = s->keep_alive;
        if (s->n_leases == 0) m.expires_at = s->expires_at;
        else if (s->keep_alive >= Duration::zero()) m.expires_at = add_saturating(now, s->keep_alive);
        out.push_back(std::move(m));
    }
    return out;
}

void ModelManager::clock_advanced() {
    std::lock_guard<std::mutex> lk(mu_);
    reaper_cv_.notify_all();
}

void ModelManager::reaper_loop() {
    std::unique_lock<std::mutex> lk(mu_);
    while (!stopping_) {
        const TimePoint now = clock_();
        std::vector<std::shared_ptr<ModelSlot>> expired;
        std::optional<TimePoint> next;
        for (const auto& [name, s] : slots_) {
            if (s->state != ModelSlot::State::ready || s->n_leases > 0 || !s->expires_at) continue;
            if (*s->expires_at <= now) expired.push_back(s);
            else if (!next || *s->expires_at < *next) next = s->expires_at;
        }
        if (!expired.empty()) {
            unload_slots(lk, std::move(expired));
            continue;
        }
        // Bounded, so a clock that moves by itself but jumps is re-read now and then.
        if (next) reaper_cv_.wait_for(lk, std::min<Duration>(*next - now, std::chrono::minutes(1)));
        else reaper_cv_.wait(lk);
    }
}

void ModelManager::shutdown() {
    {
        std::lock_guard<std::mutex> lk(mu_);
        if (shut_down_) return;
        shut_down_ = true;
        stopping_ = true;
        changed();
        reaper_cv_.notify_all();
    }
    if (reaper_.joinable()) reaper_.join();
    std::unique_lock<std::mutex> lk(mu_);
    // Waiting acquires return at once; a running load finishes and its caller gets an error.
    cv_.wait(lk, [&] { return n_acquiring_ == 0 && n_leases_ == 0; });
    std::vector<std::shared_ptr<ModelSlot>> all;
    for (const auto& [name, s] : slots_) all.push_back(s);
    if (!all.empty()) unload_slots(lk, std::move(all));
}

}  // namespace hearth::runtime
