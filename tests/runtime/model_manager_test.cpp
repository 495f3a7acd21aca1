// runtime::ModelManager: one load under concurrent acquires, failures shared and not cached,
// keep_alive (default, 0, forever) with expiry driven by a fake clock, LRU unloads at the memory
// budget and at max_loaded, in-flight models never unloaded, reload on config change, the queue
// bound, list(), unload(), shutdown, a real Engine behind a lease, and keep_alive parsing.
// Every wait is bounded; the normal path sleeps well under 100 ms in all.
#include "runtime/model_manager.h"

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <future>
#include <map>
#include <mutex>
#include <thread>

#include "runtime/engine.h"
#include "support/testdata.h"

namespace hearth::runtime {
namespace {

using namespace std::chrono_literals;

constexpr auto kWait = 10s;  // bound of every "until" wait; the normal path takes milliseconds

// Options with a fixed budget (designated initializers would trip -Wmissing-field-initializers).
ModelManagerOptions options(int64_t budget_bytes, int max_loaded = 3, int max_queue = 512,
                            Duration wait_timeout = std::chrono::minutes(5)) {
    ModelManagerOptions o;
    o.budget_bytes = budget_bytes;
    o.max_loaded = max_loaded;
    o.max_queue = max_queue;
    o.wait_timeout = wait_timeout;
    return o;
}

ModelConfig with_ctx(int64_t n_ctx) {
    ModelConfig c;
    c.n_ctx = n_ctx;
    return c;
}

struct FakeClock {
    std::atomic<int64_t> ns{int64_t{1000} * 1000 * 1000 * 1000};
    TimePoint now() const { return TimePoint(Duration(ns.load())); }
    void advance(Duration d) { ns += d.count(); }
};

// A loader whose models are plain LoadedModels of chosen sizes; it records loads and unloads
// (the LoadedModel's deleter) and can hold loads at a gate or fail them.
class FakeModels {
public:
    ModelLoader loader() {
        return [this](const std::string& name, const ModelConfig& cfg) -> Result<std::shared_ptr<LoadedModel>> {
            std::unique_lock<std::mutex> lk(mu_);
            ++n_loads;
            events.push_back("load " + name + " " + std::to_string(cfg.n_ctx));
            ++n_at_gate;
            cv_.notify_all();
            cv_.wait_for(lk, kWait, [&] { return !gate_closed; });
            --n_at_gate;
            if (fail_next) {
                fail_next = false;
                return error(StatusCode::io_error, "disk on fire");
            }
            ++n_live;
            int64_t bytes = size_of(name);
            auto* lm = new LoadedModel();
            lm->bytes = bytes;
            return std::shared_ptr<LoadedModel>(lm, [this, name](LoadedModel* m) {
                delete m;
                std::lock_guard<std::mutex> g(mu_);
                --n_live;
                events.push_back("unload " + name);
                unloaded.push_back(name);
                cv_.notify_all();
            });
        };
    }
    ModelEstimator estimator() {
        return [this](const std::string& name, const ModelConfig&) -> Result<int64_t> {
            std::lock_guard<std::mutex> lk(mu_);
            if (name == "missing") return error(StatusCode::not_found, "no such model");
            return size_of(name);
        };
    }
    int64_t size_of(const std::string& name) const {
        auto it = sizes.find(name);
        return it == sizes.end() ? 100 : it->second;
    }
    // Waits until `name` has been unloaded `n` times in all.
    bool wait_unloaded(const std::string& name, int n = 1) {
        std::unique_lock<std::mutex> lk(mu_);
        return cv_.wait_for(lk, kWait, [&] { return std::count(unloaded.begin(), unloaded.end(), name) >= n; });
    }
    bool wait_at_gate(int n) {
        std::unique_lock<std::mutex> lk(mu_);
        return cv_.wait_for(lk, kWait, [&] { return n_at_gate >= n; });
    }
    void open_gate() {
        std::lock_guard<std::mutex> lk(mu_);
        gate_closed = false;
        cv_.notify_all();
    }
    void close_gate() {
        std::lock_guard<std::mutex> lk(mu_);
        gate_closed = true;
    }
    void set_fail_next() {
        std::lock_guard<std::mutex> lk(mu_);
        fail_next = true;
    }
    int loads() {
        std::lock_guard<std::mutex> lk(mu_);
        return n_loads;
    }
    std::vector<std::string> unloads() {
        std::lock_guard<std::mutex> lk(mu_);
        return unloaded;
    }
    std::vector<std::string> history() {
        std::lock_guard<std::mutex> lk(mu_);
        return events;
    }

    std::map<std::string, int64_t> sizes;  // set before the manager starts

private:
    std::mutex mu_;
    std::condition_variable cv_;
    int n_loads = 0, n_live = 0, n_at_gate = 0;
    bool gate_closed = false, fail_next = false;
    std::vector<std::string> unloaded;  // names, in unload order
    std::vector<std::string> events;    // "load a 0", "unload a", in order
};

class ModelManagerTest : public ::testing::Test {
protected:
    void start(ModelManagerOptions o = {}) {
        if (!o.budget_bytes) o.budget_bytes = 1000;
        o.clock = [this] { return clock_.now(); };
        auto m = ModelManager::create(fake_.loader(), fake_.estimator(), o);
        ASSERT_TRUE(m.ok()) << m.status().message();
        mgr_ = std::move(m).value();
    }
    Lease get(const std::string& name, std::optional<Duration> keep_alive = std::nullopt, ModelConfig cfg = {}) {
        auto r = mgr_->acquire(name, cfg, keep_alive);
        EXPECT_TRUE(r.ok()) << name << ": " << r.status().message();
        return r.ok() ? std::move(r).value() : Lease();
    }
    bool is_loaded(const std::string& name) {
        for (const ModelStatus& m : mgr_->list())
            if (m.name == name) return true;
        return false;
    }
    bool wait_used(int64_t bytes) {
        auto until = std::chrono::steady_clock::now() + kWait;
        while (mgr_->used_bytes() != bytes) {
            if (std::chrono::steady_clock::now() > until) return false;
            std::this_thread::yield();
        }
        return true;
    }
    bool wait_queue(int n) {
        auto until = std::chrono::steady_clock::now() + kWait;
        while (mgr_->queue_length() < n) {
            if (std::chrono::steady_clock::now() > until) return false;
            std::this_thread::yield();
        }
        return true;
    }

    FakeModels fake_;
    FakeClock clock_;
    std::unique_ptr<ModelManager> mgr_;  // after the fakes: destroyed first

    void TearDown() override { mgr_.reset(); }
};

TEST_F(ModelManagerTest, LoadsOnceUnderConcurrentAcquires) {
    start();
    fake_.close_gate();
    // The first one is loading before the other seven start, so all seven wait on that load.
    std::vector<std::future<Result<Lease>>> got;
    for (int i = 0; i < 8; ++i) {
        got.push_back(std::async(std::launch::async, [&] { return mgr_->acquire("a", {}, std::nullopt); }));
        if (i == 0) {
            ASSERT_TRUE(fake_.wait_at_gate(1));
        }
    }
    fake_.open_gate();
    std::vector<Lease> leases;
    for (auto& f : got) {
        Result<Lease> r = f.get();
        ASSERT_TRUE(r.ok()) << r.status().message();
        leases.push_back(std::move(r).value());
    }
    EXPECT_EQ(fake_.loads(), 1);
    for (const Lease& l : leases) EXPECT_EQ(&*l, &*leases[0]);
    EXPECT_EQ(leases[0]->name, "a");
    auto ls = mgr_->list();
    ASSERT_EQ(ls.size(), 1u);
    EXPECT_EQ(ls[0].n_in_flight, 8);
    leases.clear();
    EXPECT_EQ(mgr_->list()[0].n_in_flight, 0);
    EXPECT_EQ(mgr_->queue_length(), 0);
}

TEST_F(ModelManagerTest, FailureGoesToEveryWaiterAndIsNotCached) {
    start();
    fake_.close_gate();
    fake_.set_fail_next();
    // The first one is loading before the other seven start, so all seven wait on that load.
    std::vector<std::future<Result<Lease>>> got;
    for (int i = 0; i < 8; ++i) {
        got.push_back(std::async(std::launch::async, [&] { return mgr_->acquire("a", {}, std::nullopt); }));
        if (i == 0) {
            ASSERT_TRUE(fake_.wait_at_gate(1));
        }
    }
    ASSERT_TRUE(wait_queue(8));
    fake_.open_gate();
    for (auto& f : got) {
        Result<Lease> r = f.get();
        ASSERT_FALSE(r.ok());
        EXPECT_EQ(r.status().code(), StatusCode::io_error);
        EXPECT_EQ(r.status().message(), "model a: disk on fire");
    }
    EXPECT_EQ(fake_.loads(), 1);
    EXPECT_TRUE(mgr_->list().empty());
    EXPECT_EQ(mgr_->used_bytes(), 0);  // the reservation is gone
    Lease l = get("a");                // tried again, and works
    EXPECT_TRUE(l);
    EXPECT_EQ(fake_.loads(), 2);

    auto r = mgr_->acquire("missing", {}, std::nullopt);  // the estimator's error, named
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::not_found);
    EXPECT_EQ(r.status().message(), "model missing: no such model");
}

TEST_F(ModelManagerTest, DefaultKeepAliveExpiresByTheReaper) {
    start();
    get("a");                 // default: 5 minutes
    get("b", 4min);           // ends first
    auto ls = mgr_->list();
    ASSERT_EQ(ls.size(), 2u);
    EXPECT_EQ(ls[0].keep_alive, Duration(5min));
    ASSERT_TRUE(ls[0].expires_at);
    EXPECT_EQ(*ls[0].expires_at, clock_.now() + 5min);
    EXPECT_EQ(fake_.unloads().size(), 0u);

    clock_.advance(4min + 1s);
    mgr_->clock_advanced();
    ASSERT_TRUE(fake_.wait_unloaded("b"));
    // The reaper looked at both at the same time: a had a minute left.
    EXPECT_TRUE(is_loaded("a"));
    EXPECT_FALSE(is_loaded("b"));

    clock_.advance(1min);
    mgr_->clock_advanced();
    ASSERT_TRUE(fake_.wait_unloaded("a"));
    EXPECT_TRUE(mgr_->list().empty());
    EXPECT_TRUE(wait_used(0));  // counted until the reaper is back from the destructor
}

TEST_F(ModelManagerTest, KeepAliveZeroUnloadsWhenIdle) {
    start();
    Lease l = get("a", 0s);
    Lease l2 = get("a", 0s);
    l.release();
    EXPECT_TRUE(is_loaded("a"));  // still in flight
    l2.release();
    ASSERT_TRUE(fake_.wait_unloaded("a"));  // the lease end woke the reaper; no clock move
    EXPECT_FALSE(is_loaded("a"));
}

TEST_F(ModelManagerTest, NegativeKeepAliveNeverExpires) {
    start();
    get("a", kKeepAliveForever);
    get("b", 1min);
    auto ls = mgr_->list();
    EXPECT_FALSE(ls[0].expires_at);
    clock_.advance(24h * 365);
    mgr_->clock_advanced();
    ASSERT_TRUE(fake_.wait_unloaded("b"));
    EXPECT_TRUE(is_loaded("a"));
}

TEST_F(ModelManagerTest, LastRequestsKeepAliveDecides) {
    start();
    Lease l1 = get("a", 10min);
    Lease l2 = get("a", 1min);  // acquired last: its keep_alive counts
    l2.release();
    l1.release();
    auto ls = mgr_->list();
    ASSERT_EQ(ls.size(), 1u);
    EXPECT_EQ(*ls[0].expires_at, clock_.now() + 1min);
    Lease again = get("a");  // reuse stops the countdown
    EXPECT_EQ(fake_.loads(), 1);
    EXPECT_EQ(mgr_->list()[0].n_in_flight, 1);
}

TEST_F(ModelManagerTest, BudgetUnloadsLeastRecentlyUsedIdleModels) {
    fake_.sizes = {{"a", 300}, {"b", 300}, {"c", 300}, {"d", 500}};
    start(options(1000, 10));
    get("a");
    get("b");
    get("c");
    get("a");  // b is now the least recently used
    EXPECT_EQ(mgr_->used_bytes(), 900);
    get("d");  // needs 500: unloading b (300) alone is not enough, c goes too
    auto gone = fake_.unloads();
    std::sort(gone.begin(), gone.end());
    EXPECT_EQ(gone, (std::vector<std::string>{"b", "c"}));
    EXPECT_TRUE(is_loaded("a"));
    EXPECT_TRUE(is_loaded("d"));
    EXPECT_EQ(mgr_->used_bytes(), 800);
}

TEST_F(ModelManagerTest, MaxLoadedUnloadsLeastRecentlyUsed) {
    start(options(1 << 30, 2));
    get("a");
    get("b");
    get("c");
    EXPECT_EQ(fake_.unloads(), std::vector<std::string>{"a"});
    EXPECT_EQ(mgr_->list().size(), 2u);
}

TEST_F(ModelManagerTest, ModelBiggerThanTheBudgetFailsNamingTheSizes) {
    fake_.sizes = {{"big", 3 << 20}};
    start(options(2 << 20));
    auto r = mgr_->acquire("big", {}, std::nullopt);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::out_of_range);
    EXPECT_NE(r.status().message().find("needs 3.00 MiB"), std::string::npos) << r.status().message();
    EXPECT_NE(r.status().message().find("budget for all models is 2.00 MiB"), std::string::npos) << r.status().message();
    EXPECT_EQ(fake_.loads(), 0);
}

TEST_F(ModelManagerTest, InFlightModelIsNeverUnloaded) {
    fake_.sizes = {{"a", 600}, {"b", 600}};
    start(options(1000));
    Lease a = get("a");
    auto b = std::async(std::launch::async, [&] { return mgr_->acquire("b", {}, std::nullopt); });
    ASSERT_TRUE(wait_queue(1));
    std::this_thread::sleep_for(20ms);  // let it reach the wait for memory
    EXPECT_EQ(fake_.loads(), 1);         // b waits: a is in flight
    EXPECT_TRUE(fake_.unloads().empty());
    a.release();
    Result<Lease> rb = b.get();
    ASSERT_TRUE(rb.ok()) << rb.status().message();
    EXPECT_EQ(fake_.history(), (std::vector<std::string>{"load a 0", "unload a", "load b 0"}));
}

TEST_F(ModelManagerTest, WaitingForMemoryTimesOut) {
    fake_.sizes = {{"a", 600}, {"b", 600}};
    start(options(1000, 3, 512, 30ms));
    Lease a = get("a");
    auto r = mgr_->acquire("b", {}, std::nullopt);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::resource_exhausted);
    EXPECT_NE(r.status().message().find("timed out"), std::string::npos) << r.status().message();
    EXPECT_NE(r.status().message().find("waiting for memory: model b needs 600 B"), std::string::npos)
        << r.status().message();
    EXPECT_TRUE(is_loaded("a"));
    EXPECT_EQ(mgr_->used_bytes(), 600);
}

TEST_F(ModelManagerTest, StopTokenCancelsAWaitingAcquire) {
    fake_.sizes = {{"a", 600}, {"b", 600}};
    start(options(1000));
    Lease a = get("a");
    std::stop_source stop;
    auto b = std::async(std::launch::async, [&] { return mgr_->acquire("b", {}, std::nullopt, stop.get_token()); });
    ASSERT_TRUE(wait_queue(1));
    stop.request_stop();
    Result<Lease> r = b.get();
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::resource_exhausted);
    EXPECT_EQ(mgr_->queue_length(), 0);
}

TEST_F(ModelManagerTest, ConfigChangeReloadsOnceIdle) {
    start();
    const ModelConfig small = with_ctx(2048), large = with_ctx(8192);
    Lease old = get("a", std::nullopt, small);
    auto reload = std::async(std::launch::async, [&] { return mgr_->acquire("a", large, std::nullopt); });
    ASSERT_TRUE(wait_queue(1));  // it registered as waiting for the reload when it came in
    // A request for the old config now queues behind the reload instead of starving it.
    auto same_as_old = std::async(std::launch::async, [&] { return mgr_->acquire("a", small, std::nullopt); });
    ASSERT_TRUE(wait_queue(2));
    EXPECT_EQ(fake_.loads(), 1);
    old.release();
    Result<Lease> r = reload.get();
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_EQ(r.value()->config.n_ctx, 8192);
    EXPECT_EQ(mgr_->list()[0].config, large);
    r.value().release();  // now the old config's request reloads in turn
    Result<Lease> r2 = same_as_old.get();
    ASSERT_TRUE(r2.ok()) << r2.status().message();
    EXPECT_EQ(r2.value()->config.n_ctx, 2048);
    EXPECT_EQ(fake_.history(),
              (std::vector<std::string>{"load a 2048", "unload a", "load a 8192", "unload a", "load a 2048"}));
}

TEST_F(ModelManagerTest, QueueLimitSaysServerBusy) {
    start(options(1000, 3, 2));
    fake_.close_gate();
    auto a = std::async(std::launch::async, [&] { return mgr_->acquire("a", {}, std::nullopt); });
    auto b = std::async(std::launch::async, [&] { return mgr_->acquire("b", {}, std::nullopt); });
    ASSERT_TRUE(fake_.wait_at_gate(2));
    auto r = mgr_->acquire("a", {}, std::nullopt);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::resource_exhausted);
    EXPECT_NE(r.status().message().find("server busy"), std::string::npos) << r.status().message();
    fake_.open_gate();
    EXPECT_TRUE(a.get().ok());
    EXPECT_TRUE(b.get().ok());
    EXPECT_TRUE(get("a"));  // room in the queue again
}

TEST_F(ModelManagerTest, ListShowsWhatOllamaPsNeeds) {
    fake_.sizes = {{"a", 123}, {"b", 456}};
    start();
    Lease a = get("a", 10min, with_ctx(4096));
    get("b", 1min);
    auto ls = mgr_->list();
    ASSERT_EQ(ls.size(), 2u);
    EXPECT_EQ(ls[0].name, "a");
    EXPECT_EQ(ls[0].bytes, 123);
    EXPECT_EQ(ls[0].config.n_ctx, 4096);
    EXPECT_EQ(ls[0].n_in_flight, 1);
    EXPECT_EQ(*ls[0].expires_at, mgr_->now() + 10min);  // in flight: if it ended now
    EXPECT_EQ(ls[1].name, "b");
    EXPECT_EQ(ls[1].n_in_flight, 0);
    EXPECT_EQ(*ls[1].expires_at, mgr_->now() + 1min);
    EXPECT_EQ(mgr_->used_bytes(), 579);
    EXPECT_EQ(ls[0].config.to_string(),
              "num_ctx=4096 num_parallel=auto num_batch=auto num_gpu=auto num_thread=auto kv_cache_type=default");
}

TEST_F(ModelManagerTest, UnloadNowOrWhenIdle) {
    start();
    get("a");
    EXPECT_TRUE(mgr_->unload("a"));  // idle: gone before unload returns
    EXPECT_EQ(fake_.unloads(), std::vector<std::string>{"a"});
    EXPECT_FALSE(mgr_->unload("a"));
    EXPECT_FALSE(mgr_->unload("never"));

    Lease b = get("b");
    EXPECT_TRUE(mgr_->unload("b"));  // in flight: stays until the request ends
    EXPECT_TRUE(is_loaded("b"));
    b.release();
    ASSERT_TRUE(fake_.wait_unloaded("b"));
}

TEST_F(ModelManagerTest, ShutdownWaitsForLeasesThenUnloadsAll) {
    start();
    get("a", kKeepAliveForever);
    get("c");
    Lease b = get("b");
    auto done = std::async(std::launch::async, [&] { mgr_->shutdown(); });
    // New acquires fail at once while shutdown waits for b's request.
    for (;;) {
        auto r = mgr_->acquire("c", {}, std::nullopt);
        if (!r.ok()) {
            EXPECT_NE(r.status().message().find("shutting down"), std::string::npos);
            break;
        }
    }
    EXPECT_EQ(done.wait_for(0ms), std::future_status::timeout);
    b.release();
    EXPECT_EQ(done.wait_for(kWait), std::future_status::ready);
    auto gone = fake_.unloads();
    std::sort(gone.begin(), gone.end());
    EXPECT_EQ(gone, (std::vector<std::string>{"a", "b", "c"}));
}

TEST_F(ModelManagerTest, RejectsBadOptions) {
    auto creates = [&](const ModelManagerOptions& o) { return ModelManager::create(fake_.loader(), fake_.estimator(), o).ok(); };
    EXPECT_FALSE(creates(options(0)));
    EXPECT_FALSE(creates(options(100, 0)));
    EXPECT_FALSE(creates(options(100, 3, 0)));
    EXPECT_FALSE(creates(options(100, 3, 512, Duration(-1))));
    EXPECT_FALSE(ModelManager::create(nullptr, fake_.estimator(), options(100)).ok());
    // Automatic budget: MemAvailable minus the reserve, at least half of it.
    auto m = ModelManager::create(fake_.loader(), fake_.estimator(), ModelManagerOptions());
    ASSERT_TRUE(m.ok()) << m.status().message();
    auto avail = read_mem_available();
    ASSERT_TRUE(avail.ok());
    EXPECT_GT(m.value()->budget_bytes(), 0);
    EXPECT_GE(m.value()->budget_bytes(), avail.value() / 4);  // MemAvailable moves a little meanwhile
}

// A real model behind a lease: an Engine generates, the lease ends from its callback (the
// scheduler thread), and unloading destroys the Engine.
TEST_F(ModelManagerTest, ServesARealEngine) {
    std::string path = test::testdata_path("models/stories260K.gguf");
    std::atomic<int> n_loads{0};
    ModelLoader loader = [&](const std::string&, const ModelConfig& cfg) -> Result<std::shared_ptr<LoadedModel>> {
        ++n_loads;
        HEARTH_ASSIGN(auto file, gguf::open_gguf(path));
        HEARTH_ASSIGN(auto tokenizer, tok::Tokenizer::from_gguf(*file));
        model::LoadOptions lo;
        lo.n_threads = 2;
        HEARTH_ASSIGN(auto model, model::load_model(file, lo));
        auto lm = std::make_shared<LoadedModel>();
        lm->model = std::move(model);
        lm->tokenizer = std::move(tokenizer);
        EngineOptions eo;
        eo.n_ctx = cfg.n_ctx;
        eo.n_parallel = 2;
        HEARTH_ASSIGN(auto engine, Engine::create(lm->model, lm->tokenizer, eo));
        lm->engine = std::move(engine);
        lm->bytes = static_cast<int64_t>(file->bytes.size()) + (1 << 20);
        return lm;
    };
    ModelEstimator estimator = [](const std::string&, const ModelConfig&) -> Result<int64_t> { return 2 << 20; };
    auto m = ModelManager::create(loader, estimator, options(1 << 30));
    ASSERT_TRUE(m.ok()) << m.status().message();
    ModelManager& mgr = *m.value();

    auto r = mgr.acquire("stories", with_ctx(256), std::nullopt);
    ASSERT_TRUE(r.ok()) << r.status().message();
    auto lease = std::make_shared<Lease>(std::move(r).value());
    ASSERT_TRUE((*lease)->engine);
    EXPECT_GT(lease->acquire_ns(), 0);
    Request req;
    req.prompt = (*lease)->tokenizer->encode("Once upon a time", true, false);
    req.num_predict = 8;
    req.sampling.temperature = 0;
    std::promise<Event> done;
    Engine& engine = *(*lease)->engine;
    engine.submit(req, [lease, &done](const Event& e) mutable {
        if (e.kind == Event::Kind::text) return;
        lease->release();  // on the scheduler thread: must not unload here
        done.set_value(e);
    });
    lease.reset();
    auto fut = done.get_future();
    ASSERT_EQ(fut.wait_for(kWait), std::future_status::ready);
    Event e = fut.get();
    EXPECT_EQ(e.kind, Event::Kind::done) << e.status.message();
    EXPECT_GT(e.stats.generated_tokens, 0);

    auto ls = mgr.list();
    ASSERT_EQ(ls.size(), 1u);
    EXPECT_EQ(ls[0].n_in_flight, 0);
    EXPECT_GT(ls[0].bytes, 1 << 20);
    EXPECT_TRUE(mgr.unload("stories"));  // destroys the Engine on this thread
    EXPECT_TRUE(mgr.list().empty());
    EXPECT_EQ(n_loads.load(), 1);
}

TEST(ParseKeepAlive, OllamaForms) {
    auto ok = [](std::string_view s) {
        auto r = parse_keep_alive(s);
        EXPECT_TRUE(r.ok()) << s << ": " << r.status().message();
        return r.ok() ? r.value() : Duration(-12345);
    };
    EXPECT_EQ(ok("5m"), Duration(5min));
    EXPECT_EQ(ok("1h30m"), Duration(90min));
    EXPECT_EQ(ok("300"), Duration(300s));
    EXPECT_EQ(ok(" 300 "), Duration(300s));
    EXPECT_EQ(ok("2.5"), Duration(2500ms));
    EXPECT_EQ(ok("0"), Duration::zero());
    EXPECT_EQ(ok("0s"), Duration::zero());
    EXPECT_EQ(ok("-0"), Duration::zero());
    EXPECT_EQ(ok("1.5h"), Duration(90min));
    EXPECT_EQ(ok(".5s"), Duration(500ms));
    EXPECT_EQ(ok("250ms"), Duration(250ms));
    EXPECT_EQ(ok("10us"), Duration(10us));
    EXPECT_EQ(ok("10\xc2\xb5s"), Duration(10us));
    EXPECT_EQ(ok("7ns"), Duration(7));
    EXPECT_EQ(ok("1h2m3s4ms"), Duration(1h + 2min + 3s + 4ms));
    EXPECT_EQ(ok("+10s"), Duration(10s));
    EXPECT_EQ(ok("-1"), kKeepAliveForever);
    EXPECT_EQ(ok("-1m"), kKeepAliveForever);
    EXPECT_EQ(ok("-5h30m"), kKeepAliveForever);
    EXPECT_EQ(ok("1000000000h"), kKeepAliveForever);  // past int64 nanoseconds

    for (const char* bad : {"", "  ", "-", "5x", "m", "5m3", "1..5s", "abc", "5 m", "1e3", "five minutes"}) {
        auto r = parse_keep_alive(bad);
        EXPECT_FALSE(r.ok()) << '"' << bad << '"';
        if (!r.ok()) {
            EXPECT_EQ(r.status().code(), StatusCode::invalid_argument);
            EXPECT_NE(r.status().message().find(std::string("\"") + bad + "\""), std::string::npos)
                << r.status().message();
        }
    }
    EXPECT_NE(parse_keep_alive("5x").status().message().find("unknown unit \"x\""), std::string::npos);
    EXPECT_NE(parse_keep_alive("5m3").status().message().find("missing unit"), std::string::npos);

    EXPECT_EQ(keep_alive_from_seconds(300).value(), Duration(300s));
    EXPECT_EQ(keep_alive_from_seconds(0.25).value(), Duration(250ms));
    EXPECT_EQ(keep_alive_from_seconds(-1).value(), kKeepAliveForever);
    EXPECT_EQ(keep_alive_from_seconds(1e300).value(), kKeepAliveForever);
    EXPECT_FALSE(keep_alive_from_seconds(std::nan("")).ok());
}

}  // namespace
}  // namespace hearth::runtime
