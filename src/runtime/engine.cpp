#include "runtime/engine.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "base/sysinfo.h"
#include "base/timer.h"
#include "runtime/decoding.h"

namespace hearth::runtime {

// One admitted or waiting request. Touched only by the scheduler thread.
struct Engine::Sequence {
    Sequence(Pending&& p, Sampler smp, const tok::Tokenizer& tok)
        : id(p.id), req(std::move(p.req)), cb(std::move(p.cb)), decoding(tok, std::move(smp), req),
          submit_ns(p.submit_ns) {}

    RequestId id;
    Request req;
    EventCallback cb;        // moved into the done event when the sequence ends
    // Prompt + generated ids. [0, computed) have K/V in the pool; the target is tokens.size()
    // (computed < target while running). Capacity reserved at admission, so decode steps do not
    // reallocate it.
    std::vector<int32_t> tokens;
    int64_t computed = 0;
    int64_t scheduled = 0;   // tokens given to this sequence in the current step's batch
    int starved = 0;         // consecutive steps its prefill was pending and got no tokens
    int64_t max_positions = 0;  // most positions it may ever hold: its block reservation
    // KV blocks: position p lives in table[p / block_size]. The first hashes.size() entries are
    // full blocks whose chain hashes are hashes[i]; the ones reused from the prefix cache are
    // shared (read-only), the rest private. Blocks past them are private and being written.
    std::vector<int32_t> table;
    std::vector<uint64_t> hashes;
    int64_t reserve_left = 0;   // blocks promised by admission, not yet allocated
    Decoding decoding;          // sampling, stop conditions and text of the generated part
    RequestStats st;
    int64_t submit_ns = 0, admit_ns = 0, first_token_ns = 0;
    bool finished = false;      // done or error event queued; blocks released
};

Result<KvPlan> plan_kv(const model::KvLayout& layout, const EngineOptions& opt, int64_t mem_available) {
    if (opt.n_ctx <= 0 || opt.block_size <= 0)
        return error(StatusCode::invalid_argument,
                     strformat("n_ctx (%lld) and block_size (%d) must be positive", (long long)opt.n_ctx, opt.block_size));
    if (opt.n_parallel < 0 || opt.n_kv_blocks < 0 || opt.kv_bytes < 0)
        return error(StatusCode::invalid_argument, "n_parallel, n_kv_blocks and kv_bytes must not be negative");
    KvPlan plan;
    plan.type = opt.kv_type;
    std::string fallback;
    if (Status st = model::KvCache::check_type(layout, plan.type); !st.ok()) {
        if (plan.type != quant::QuantType::q8_0 && plan.type != quant::QuantType::q4_0) return st;
        fallback = " (" + st.message() + ": using f16)";
        plan.type = quant::QuantType::f16;
    }
    const int64_t blocks_per_ctx = (opt.n_ctx + opt.block_size - 1) / opt.block_size;
    const int64_t bytes_per_block = (int64_t)model::KvCache::bytes_per_block(layout, plan.type, opt.block_size);
    int64_t n_blocks = opt.n_kv_blocks;
    if (n_blocks == 0 && opt.n_parallel > 0) n_blocks = opt.n_parallel * blocks_per_ctx;
    if (n_blocks == 0) {
        const bool automatic = opt.kv_bytes == 0;
        const int64_t budget = automatic ? std::min<int64_t>(std::max<int64_t>(mem_available, 0) / 4, 8ll << 30)
                                         : opt.kv_bytes;
        n_blocks = budget / std::max<int64_t>(1, bytes_per_block);
        if (automatic) n_blocks = std::min<int64_t>(n_blocks, 2 * kMaxAutoParallel * blocks_per_ctx);
    }
    if (n_blocks < blocks_per_ctx)
        return error(StatusCode::resource_exhausted,
                     strformat("a KV pool of %lld blocks (%s) cannot hold one context of %lld positions (%lld blocks of "
                               "%d): use a smaller num_ctx or a quantized KV cache",
                               (long long)n_blocks, format_bytes(n_blocks * bytes_per_block).c_str(), (long long)opt.n_ctx,
                               (long long)blocks_per_ctx, opt.block_size));
    if (n_blocks > INT32_MAX / 2) return error(StatusCode::invalid_argument, "the KV pool is too large");
    plan.n_blocks = n_blocks;
    plan.n_parallel = opt.n_parallel > 0
                          ? opt.n_parallel
                          : (int)std::clamp<int64_t>(n_blocks / blocks_per_ctx, 1, kMaxAutoParallel);
    plan.bytes = n_blocks * bytes_per_block;
    const double f16_bytes =
        (double)model::KvCache::bytes_per_block(layout, quant::QuantType::f16, opt.block_size) * (double)n_blocks;
    plan.note = strformat("KV cache %s: %lld blocks of %d positions, %s for %d sequence(s) of %lld",
                          quant::type_name(plan.type), (long long)n_blocks, opt.block_size,
                          format_bytes(plan.bytes).c_str(), plan.n_parallel, (long long)opt.n_ctx);
    if (plan.type != quant::QuantType::f16 && plan.type != quant::QuantType::f32)
        plan.note += strformat(" (f16 would take %s: %.0f %% saved)", format_bytes((int64_t)f16_bytes).c_str(),
                               100.0 * (1.0 - (double)plan.bytes / f16_bytes));
    plan.note += fallback;
    return plan;
}

Result<std::unique_ptr<Engine>> Engine::create(std::shared_ptr<model::Model> model,
                                               std::shared_ptr<const tok::Tokenizer> tokenizer,
                                               const EngineOptions& opt) {
    if (!model || !tokenizer) return error(StatusCode::invalid_argument, "the engine needs a model and a tokenizer");
    if (model->is_embedding())
        return error(StatusCode::unsupported, "embedding models do not generate; the engine serves decoder models");
    if (opt.step_tokens < 1) return error(StatusCode::invalid_argument, "step_tokens must be at least 1");
    const model::KvLayout layout = model->kv_layout();
    // A model whose KV rows live on its device (the CUDA decoder) keeps them as f16 and cannot
    // hand blocks to the disk tier (KvCache::read_block sees none of them).
    const bool on_device = model->kv_on_device();
    EngineOptions o = opt;
    if (const char* v = std::getenv("HEARTH_SAMPLE_TOPK"); v && std::strcmp(v, "0") == 0) o.sample_top_k = false;
    if (const char* v = std::getenv("HEARTH_TRACE_STEPS"); v && *v && std::strcmp(v, "0") != 0) o.trace_steps = true;
    if (o.solo_step_tokens < 1) o.solo_step_tokens = std::max(o.step_tokens, model->prefill_step_tokens());
    std::string device_note;
    if (on_device) {
        if (o.kv_type != quant::QuantType::f16)
            device_note += strformat("; %s KV cache requested, but the GPU keeps f16", quant::type_name(o.kv_type));
        o.kv_type = quant::QuantType::f16;
        if (!o.spill_root.empty()) device_note += "; disk prefix cache off: the KV cache lives on the GPU";
        o.spill_root.clear();
    }
    int64_t mem_available = 0;
    if (o.n_kv_blocks == 0 && o.n_parallel == 0 && o.kv_bytes == 0) {
        Result<int64_t> m = read_mem_available();
        mem_available = m.ok() ? m.value() : 1ll << 30;  // no /proc: budget as if 1 GiB were free
        // Device pool: the budget is device memory (an automatic pool still takes a quarter, at
        // most 8 GiB); the host cache that allocates its block ids takes as much host memory.
        if (on_device) mem_available = std::min(model->device_kv_budget_bytes(), 4 * mem_available);
    }
    HEARTH_ASSIGN(KvPlan plan, plan_kv(layout, o, mem_available));
    if (on_device) plan.note += " on " + model->device_name() + device_note;
    // A device model's own layers keep their rows in its device pool: the host cache holds
    // only the rest (none for a whole-GPU model), not an unused copy of the device pool.
    HEARTH_ASSIGN(model::KvCache kv, model::KvCache::create(layout, (int)plan.n_blocks, o.block_size, plan.type,
                                                           on_device ? model->kv_host_first_layer() : 0));
    std::unique_ptr<PrefixStore> store;
    if (!o.spill_root.empty()) {
        if (o.model_key.empty())
            return error(StatusCode::invalid_argument, "the disk prefix cache needs a model key (the weights' digest)");
        const std::string dir = PrefixStore::default_dir(o.spill_root, o.model_key, kv.layout_key());
        auto st = PrefixStore::open(dir, o.model_key, kv.layout_key(), o.block_size, o.spill_bytes);
        if (!st.ok()) return st.status().with_context("disk prefix cache");
        store = std::move(st).value();
    }
    return std::unique_ptr<Engine>(
        new Engine(std::move(model), std::move(tokenizer), std::move(kv), std::move(store), o, std::move(plan)));
}

Engine::Engine(std::shared_ptr<model::Model> model, std::shared_ptr<const tok::Tokenizer> tokenizer, model::KvCache kv,
               std::unique_ptr<PrefixStore> store, const EngineOptions& opt, KvPlan plan)
    : model_(std::move(model)),
      tok_(std::move(tokenizer)),
      opt_(opt),
      n_parallel_(plan.n_parallel),
      kv_note_(std::move(plan.note)),
      kv_(std::move(kv)),
      pool_(kv_),
      store_(std::move(store)) {
    if (store_) spill_buf_.resize(kv_.block_bytes());
    running_.reserve((size_t)n_parallel_);
    in_batch_.reserve((size_t)n_parallel_);
    prefills_.reserve((size_t)n_parallel_);
    decodes_.reserve((size_t)n_parallel_);
    out_seq_.reserve((size_t)n_parallel_);
    publish_stats();
    thread_ = std::thread([this] { run(); });
}

Engine::~Engine() { shutdown(); }

void Engine::shutdown() {
    {
        std::lock_guard<std::mutex> lk(mu_);
        stopping_ = true;
    }
    cv_.notify_all();
    // From a callback (the scheduler thread itself) the thread only learns it must stop; the
    // destructor, which must not run on that thread, joins it.
    if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
}

RequestId Engine::submit(Request req, EventCallback on_event) {
    std::unique_lock<std::mutex> lk(mu_);
    if (stopping_) {
        lk.unlock();
        Event e;
        e.kind = Event::Kind::done;
        e.stats.prompt_tokens = (int64_t)req.prompt.size();
        e.stats.done = DoneReason::cancelled;
        on_event(e);
        return 0;
    }
    const RequestId id = next_id_++;
    incoming_.push_back(Pending{id, std::move(req), std::move(on_event), now_ns()});
    lk.unlock();
    cv_.notify_all();
    return id;
}

void Engine::cancel(RequestId id) {
    {
        std::lock_guard<std::mutex> lk(mu_);
        cancels_.push_back(id);
    }
    cv_.notify_all();
}

PoolStats Engine::pool_stats() const {
    std::lock_guard<std::mutex> lk(mu_);
    return stats_;
}

void Engine::publish_stats() {
    PoolStats s;
    s.n_blocks = pool_.n_total();
    s.n_free = pool_.n_free();
    s.n_cached = pool_.n_cached();
    s.n_used = pool_.n_used();
    s.n_running = (int)running_.size();
    s.n_waiting = (int)waiting_.size();
    std::lock_guard<std::mutex> lk(mu_);
    stats_ = s;
}

void Engine::flush_done() {
    // Callbacks may submit or cancel (they take mu_), so none runs under a lock.
    auto done = std::move(done_);
    done_.clear();
    for (auto& [cb, e] : done) cb(e);
}

void Engine::release_blocks(Sequence& s) {
    pool_.release(s.table);
    s.hashes.clear();
    reserved_ -= s.reserve_left;
    s.reserve_left = 0;
}

void Engine::finish(Sequence& s, DoneReason why) {
    if (why != DoneReason::cancelled) {
        Decoding::Tail tail = s.decoding.finish();
        if (!tail.text.empty() || !tail.logprobs.empty()) {
            Event e;
            e.text = std::move(tail.text);
            e.logprobs = std::move(tail.logprobs);
            s.cb(e);
        }
    }
    release_blocks(s);
    const int64_t t = now_ns();
    if (s.first_token_ns) s.st.generate_ns = t - s.first_token_ns;
    else if (s.admit_ns) s.st.prompt_ns = t - s.admit_ns;
    s.st.done = why;
    Event e;
    e.kind = Event::Kind::done;
    e.stats = std::move(s.st);
    done_.emplace_back(std::move(s.cb), std::move(e));
    s.finished = true;
}

void Engine::fail(Sequence& s, Status st) {
    release_blocks(s);
    Event e;
    e.kind = Event::Kind::error;
    e.status = std::move(st);
    done_.emplace_back(std::move(s.cb), std::move(e));
    s.finished = true;
}

void Engine::admit() {
    const int bs = opt_.block_size;
    std::vector<int32_t> blocks;
    std::vector<uint64_t> hashes;
    while (!waiting_.empty() && (int)running_.size() < n_parallel_) {
        Sequence& s = *waiting_.front();
        const int64_t n_prompt = (int64_t)s.tokens.size();
        // Leave the last prompt token to compute: its logits give the first sampled token.
        const int max_match = (int)((n_prompt - 1) / bs);
        int n_unref = 0;
        pool_.match(s.tokens, max_match, false, blocks, hashes, &n_unref);
        const int64_t need = (s.max_positions + bs - 1) / bs - (int64_t)blocks.size();
        // Reusing a cached block takes it out of the evictable set, hence + n_unref.
        if (need + n_unref > (int64_t)pool_.n_available() - reserved_) break;  // FIFO: everyone behind waits too
        pool_.match(s.tokens, max_match, true, s.table, s.hashes);
        s.reserve_left = need;
        reserved_ += need;
        if (store_) load_spilled(s, max_match);
        s.computed = (int64_t)s.table.size() * bs;
        s.st.cached_tokens = s.computed;
        s.admit_ns = now_ns();
        s.st.queue_ns = s.admit_ns - s.submit_ns;
        running_.push_back(std::move(waiting_.front()));
        waiting_.pop_front();
    }
}

// Continues the prefix match on disk: block after block of the prompt whose chain hash the
// store holds is read into a reserved block and published. Stops at the first miss (a damaged
// file is a miss: the store checks and deletes it), so everything after is computed as usual.
void Engine::load_spilled(Sequence& s, int max_blocks) {
    const int bs = opt_.block_size;
    while ((int)s.hashes.size() < max_blocks && s.reserve_left > 0) {
        const size_t i = s.hashes.size();
        const uint64_t parent = i ? s.hashes[i - 1] : kChainSeed;
        std::span<const int32_t> chunk(s.tokens.data() + i * bs, (size_t)bs);
        const uint64_t h = chain_hash(parent, chunk);
        if (!store_->contains(h) || !store_->get(h, parent, chunk, spill_buf_)) break;
        const int32_t b = pool_.alloc();
        if (b < 0) break;  // the reservation makes this unreachable
        --s.reserve_left;
        --reserved_;
        kv_.write_block(b, spill_buf_.data());
        pool_.publish(b, h, parent, chunk);  // false: an equal block is already indexed; keep ours private
        s.table.push_back(b);
        s.hashes.push_back(h);
        s.st.disk_cached_tokens += bs;
    }
}

void Engine::publish_full_blocks(Sequence& s) {
    const int bs = opt_.block_size;
    while ((int64_t)(s.hashes.size() + 1) * bs <= s.computed) {
        const size_t i = s.hashes.size();
        const uint64_t parent = i ? s.hashes[i - 1] : kChainSeed;
        std::span<const int32_t> chunk(s.tokens.data() + i * bs, (size_t)bs);
        const uint64_t h = chain_hash(parent, chunk);
        // false: an equal block is already indexed (and spilled); keep ours private.
        if (pool_.publish(s.table[i], h, parent, chunk) && store_ && !store_->contains(h)) {
            kv_.read_block(s.table[i], spill_buf_.data());
            store_->put(h, parent, chunk, spill_buf_);  // dropped when the writer is behind: only a cache
        }
        s.hashes.push_back(h);
    }
}

int32_t Engine::output_top_k() const {
    if (!opt_.sample_top_k || out_seq_.empty()) return 0;
    const int64_t n_vocab = model_->hparams().n_vocab;
    int32_t k = 0;
    for (const Sequence* s : out_seq_) {
        const int32_t need = s->decoding.top_candidates_needed(n_vocab, s->tokens);
        if (need == 0 || need > model::kMaxOutputTopK) return 0;
        k = std::max(k, need);
    }
    return k;
}

void Engine::sample(Sequence& s, std::span<const float> logits, std::span<const int32_t> top_ids) {
    const int64_t t = now_ns();
    if (!s.first_token_ns) {
        s.first_token_ns = t;
        s.st.prompt_ns = t - s.admit_ns;
    }
    Decoding::Step step = top_ids.empty() ? s.decoding.next(logits, s.tokens)
                                          : s.decoding.next_top(top_ids, logits, model_->hparams().n_vocab, s.tokens);
    if (!step.status.ok()) return fail(s, std::move(step.status));
    if (step.token >= 0) {
        s.tokens.push_back(step.token);
        s.st.tokens.push_back(step.token);
        ++s.st.generated_tokens;
    }
    if (!step.text.empty() || !step.logprobs.empty()) {
        Event e;
        e.text = std::move(step.text);
        e.logprobs = std::move(step.logprobs);
        s.cb(e);
    }
    if (step.done) return finish(s, step.reason);
    if (s.computed >= opt_.n_ctx) return finish(s, DoneReason::length);  // no position left for `id`
}

bool Engine::step() {
    const int64_t t_step = now_ns();
    admit();
    if (running_.empty()) return false;
    const int bs = opt_.block_size;
    batch_.clear();
    in_batch_.clear();
    out_seq_.clear();
    int64_t budget = opt_.step_tokens;  // opt_.solo_step_tokens once no decode is scheduled (below)
    // Decodes first (sequences one token from their target), then prefills, shortest remaining
    // prompt first (ties: admission order; starved ones before all), each cut to what the budget
    // leaves. Shortest-first keeps a short request from waiting behind a long prefill: it
    // finishes its prompt in the next step while the long one takes the rest of the budget.
    auto schedule = [&](Sequence& s, int64_t pending) {
        const int64_t n = std::min(pending, budget);
        while ((int64_t)s.table.size() * bs < s.computed + n) {
            const int32_t b = s.reserve_left > 0 ? pool_.alloc() : -1;
            if (b < 0) {  // the reservation makes this unreachable; fail this one request, not the engine
                fail(s, error(StatusCode::internal, "KV block reservation broken: no block for a running sequence"));
                return;
            }
            --s.reserve_left;
            --reserved_;
            s.table.push_back(b);
        }
        const int32_t seq = (int32_t)in_batch_.size();
        in_batch_.push_back(&s);
        for (int64_t p = s.computed; p < s.computed + n; ++p)
            batch_.add(s.tokens[p], (int32_t)p, seq, p + 1 == (int64_t)s.tokens.size());
        if (s.computed + n == (int64_t)s.tokens.size()) out_seq_.push_back(&s);
        s.scheduled = n;
        budget -= n;
    };
    prefills_.clear();
    decodes_.clear();
    for (auto& sp : running_) {
        const int64_t pending = (int64_t)sp->tokens.size() - sp->computed;
        if (pending > 1) prefills_.push_back(sp.get());
        else if (pending == 1) decodes_.push_back(sp.get());
    }
    if (decodes_.empty()) budget = opt_.solo_step_tokens;
    // More decodes than budget (a budget below n_parallel): start where the last step stopped,
    // so every sequence gets its turn.
    const size_t n_dec = decodes_.size();
    const size_t first = n_dec > (size_t)budget ? decode_cursor_ % n_dec : 0;
    size_t n_sched = 0;
    for (; n_sched < n_dec && budget > 0; ++n_sched) schedule(*decodes_[(first + n_sched) % n_dec], 1);
    decode_cursor_ = first + n_sched;
    // A prefill passed over kStarvedSteps steps in a row goes first, so a stream of short
    // prompts cannot hold a long one back forever.
    constexpr int kStarvedSteps = 4;
    std::stable_sort(prefills_.begin(), prefills_.end(), [](const Sequence* x, const Sequence* y) {
        const bool xs = x->starved >= kStarvedSteps, ys = y->starved >= kStarvedSteps;
        if (xs != ys) return xs;
        return (int64_t)x->tokens.size() - x->computed < (int64_t)y->tokens.size() - y->computed;
    });
    for (Sequence* sp : prefills_) {
        if (budget == 0) {
            ++sp->starved;
            continue;
        }
        sp->starved = 0;
        schedule(*sp, (int64_t)sp->tokens.size() - sp->computed);
    }
    if (!in_batch_.empty()) {
        batch_.block_tables.resize(in_batch_.size());
        for (size_t i = 0; i < in_batch_.size(); ++i) batch_.block_tables[i].assign(in_batch_[i]->table.begin(),
                                                                                  in_batch_[i]->table.end());
        batch_.output_top_k = output_top_k();
        const int64_t t_fwd = now_ns();
        Status st = model_->forward(batch_, kv_, out_);
        const int64_t t_sample = now_ns();
        if (!st.ok()) {
            // Only this batch's sequences fail; the K/V they wrote is in private blocks, which
            // go back to the free list unpublished.
            for (Sequence* s : in_batch_) fail(*s, st);
        } else {
            for (Sequence* s : in_batch_) {
                s->computed += s->scheduled;
                s->scheduled = 0;
                publish_full_blocks(*s);
            }
            const int64_t n_vocab = model_->hparams().n_vocab;
            const size_t top_k = (size_t)batch_.output_top_k;
            for (size_t i = 0; i < out_seq_.size(); ++i) {
                if (top_k > 0)
                    sample(*out_seq_[i], std::span<const float>(out_.top_logits).subspan(i * top_k, top_k),
                           std::span<const int32_t>(out_.top_ids).subspan(i * top_k, top_k));
                else
                    sample(*out_seq_[i], std::span<const float>(out_.logits.data() + (int64_t)i * n_vocab, (size_t)n_vocab));
            }
        }
        if (opt_.trace_steps) {
            const int64_t t_end = now_ns();
            std::fprintf(stderr,
                         "hearth engine step: %lld tokens, %zu sequences (%zu decoding), %zu outputs (top-k %d): "
                         "schedule %.3f ms, forward %.3f ms, sample %.3f ms\n",
                         (long long)batch_.n_tokens(), in_batch_.size(), n_sched, out_seq_.size(),
                         (int)batch_.output_top_k, (t_fwd - t_step) / 1e6, (t_sample - t_fwd) / 1e6,
                         (t_end - t_sample) / 1e6);
        }
    }
    std::erase_if(running_, [](const std::unique_ptr<Sequence>& s) { return s->finished; });
    return true;
}

void Engine::run() {
    std::vector<Pending> intake;
    std::vector<RequestId> cancels;
    for (;;) {
        bool stop = false;
        {
            std::unique_lock<std::mutex> lk(mu_);
            cv_.wait(lk, [&] {
                return stopping_ || !incoming_.empty() || !cancels_.empty() || !running_.empty() || !waiting_.empty();
            });
            intake.swap(incoming_);
            cancels.swap(cancels_);
            stop = stopping_;
        }
        for (Pending& p : intake) {
            // Requests that can never run fail now, before they queue behind anything.
            Status bad;
            std::vector<int32_t> prompt = std::move(p.req.prompt);
            int64_t truncated = 0;
            if (prompt.empty()) bad = error(StatusCode::invalid_argument, "the prompt is empty");
            else if (Status lp = check_logprobs(p.req); !lp.ok()) bad = std::move(lp);
            else if (Result<int64_t> fit = fit_prompt(prompt, opt_.n_ctx, p.req); fit.ok()) truncated = fit.value();
            else bad = fit.status();
            const int64_t n = (int64_t)prompt.size();
            for (int32_t t : prompt)
                if (bad.ok() && (t < 0 || t >= model_->hparams().n_vocab))
                    bad = error(StatusCode::invalid_argument,
                                strformat("prompt token %d is outside the vocabulary (size %lld)", t,
                                          (long long)model_->hparams().n_vocab));
            Result<Sampler> smp = bad.ok() ? Sampler::create(p.req.sampling, tok_->n_vocab())
                                           : Result<Sampler>(bad);
            if (!smp.ok()) {
                Event e;
                e.kind = Event::Kind::error;
                e.status = smp.status();
                done_.emplace_back(std::move(p.cb), std::move(e));
                continue;
            }
            auto s = std::make_unique<Sequence>(std::move(p), std::move(smp).value(), *tok_);
            s->st.prompt_tokens = n;
            s->st.truncated_tokens = truncated;
            s->st.seed = s->decoding.seed();
            s->max_positions = s->req.num_predict < 0
                                   ? opt_.n_ctx
                                   : std::min<int64_t>(opt_.n_ctx, n + std::max<int64_t>(0, s->req.num_predict - 1));
            s->tokens = std::move(prompt);
            s->tokens.reserve((size_t)s->max_positions + 1);
            waiting_.push_back(std::move(s));
        }
        intake.clear();
        for (RequestId id : cancels) {
            for (auto& s : running_)
                if (s->id == id && !s->finished) finish(*s, DoneReason::cancelled);
            for (auto& s : waiting_)
                if (s->id == id && !s->finished) finish(*s, DoneReason::cancelled);
        }
        cancels.clear();
        if (stop) {
            for (auto& s : running_) finish(*s, DoneReason::cancelled);
            for (auto& s : waiting_) finish(*s, DoneReason::cancelled);
        }
        std::erase_if(running_, [](const std::unique_ptr<Sequence>& s) { return s->finished; });
        std::erase_if(waiting_, [](const std::unique_ptr<Sequence>& s) { return s->finished; });
        if (!stop) step();
        publish_stats();
        flush_done();
        if (stop) return;
    }
}

}  // namespace hearth::runtime
