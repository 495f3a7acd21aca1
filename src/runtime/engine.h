// The serving engine: one loaded model, its paged KV pool and one scheduler thread that runs
// many requests at once (continuous batching).
//
// Each scheduler step builds one Batch. A sequence's `tokens` are its prompt plus what it has
// generated; `computed` of them have K/V in the pool and its target is tokens.size(). The step
// hands out a token budget (EngineOptions::step_tokens) that moves `computed` toward the target:
// a decoding sequence needs 1, a prefilling one the rest of its prompt, cut to what the budget
// leaves (chunked prefill). Policy only decides the order: sequences that need one token first,
// then prefills, shortest remaining prompt first (a prefill passed over four steps in a row
// goes first), so a long prompt never stalls running decodes and short prompts do not wait
// behind it. When decodes alone exceed the budget they take turns. Every
// sequence whose computed count reaches its target gets logits and samples one token (from
// its row's best candidates only when every such sequence of the step can sample exactly from
// them: EngineOptions::sample_top_k).
//
// Admission is FIFO. A request is admitted when a sequence slot is free and the pool can
// promise every block it may ever need (prompt plus num_predict, capped at n_ctx, minus the
// prefix blocks it reuses): blocks are allocated lazily but reserved up front, so a running
// sequence never runs out of KV and nothing is ever preempted or evicted from under it; a
// request that does not fit waits, and so does every request behind it.
//
// Automatic prefix caching (BlockPool): every full block a sequence computes is published under
// the hash chain of its tokens; a new request reuses the longest published chain that prefixes
// its prompt (always leaving at least its last prompt token to compute, which produces the
// first logits) and reports those positions as cached. Finished sequences leave their published
// blocks in an LRU, evicted only when the pool needs blocks. With the disk tier on
// (EngineOptions::spill_root), published blocks are also written to disk and a prompt's match
// continues there, block by block, after the in-memory one ends.
//
// Batch invariance: every kernel computes a token's result from that token and its own KV only
// (backend/ref/attention.h), so N sequences decoded together give exactly the tokens each gives
// alone, whatever else shares the step (on the CPU backends; GPU models: see below).
//
// Threads: submit() and cancel() may be called from any thread, callbacks included. Callbacks
// run on the scheduler thread, one event at a time, and must not block for long (they stall
// every sequence).
//
// A model that keeps its KV on a GPU (Model::kv_on_device(), the CUDA decoder) gets an f16
// pool (another kv_type falls back, said in kv_note()), sized from device memory when
// automatic, and no disk tier (spill_root is ignored: blocks on the device cannot be read back
// to disk; kv_note() says so). Its steps are not bitwise batch-invariant: the GPU picks its
// kernels by the step's token count (<= 64 tokens: per-token kernels, so decode steps are
// invariant; > 64, e.g. a prefill chunk beside decodes: the f16 tensor-core GEMM), so a prompt
// prefilled beside others gets K/V that differ by rounding from its prefill alone
// (tests/runtime/engine_gpu_test.cpp measures how far).
//
// A prompt longer than the context is an error, or is cut (Request::truncate, keeping
// Request::keep leading tokens; see fit_prompt) with the cut reported in the stats. A
// request's LogitsMask (constrained decoding) runs on the scheduler thread.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "model/model.h"
#include "runtime/block_pool.h"
#include "runtime/generate.h"
#include "runtime/prefix_store.h"
#include "runtime/sampler.h"
#include "tokenizer/tokenizer.h"

namespace hearth::runtime {

struct EngineOptions {
    int64_t n_ctx = 2048;      // most positions one sequence may hold (prompt + generated)
    int block_size = 32;       // positions per KV block
    // Most sequences running at once (HEARTH_NUM_PARALLEL); 0 = auto: as many full contexts as
    // the pool holds, at least 1 and at most kMaxAutoParallel.
    int n_parallel = 0;
    // Pool size in blocks. 0: n_parallel full contexts when n_parallel > 0, else sized from
    // kv_bytes. Must hold at least one full context.
    int n_kv_blocks = 0;
    // KV memory budget when both counts above are 0. 0 = auto: a quarter of the memory
    // available when the engine starts, at most 8 GiB. An automatic pool keeps at most twice
    // what its sequences need at full context (the rest serves the prefix cache).
    int64_t kv_bytes = 0;
    // Cache type (HEARTH_KV_CACHE_TYPE): f16, q8_0 or q4_0 (f32 for reference runs). q8_0/q4_0
    // need head dims divisible by 32: for other models the engine falls back to f16 and says so
    // in kv_note().
    quant::QuantType kv_type = quant::QuantType::f16;
    int64_t step_tokens = 512;       // token budget of one scheduler step (one forward pass)
    // The budget of a step in which no sequence waits for a decode token (prompts only): 0 =
    // the larger of step_tokens and the model's Model::prefill_step_tokens() (a GPU model
    // prefills a 10,000-token prompt in 3 forwards instead of 20: 0.59 s instead of 0.85 s on
    // an H100). While sequences decode, step_tokens bounds every step, so a long prompt
    // delays their next tokens by one step_tokens forward at most.
    int64_t solo_step_tokens = 0;
    // The disk tier of the prefix cache, off when spill_root is empty. Every full block a
    // sequence computes is also written (behind the scheduler's back) under
    // PrefixStore::default_dir(spill_root, model_key, the cache's layout key), and admission
    // continues a prompt's in-memory prefix match from there, so a prompt seen before a restart
    // is not prefilled again. model_key must name the weights exactly (their SHA-256 digest).
    std::string spill_root;
    std::string model_key;
    int64_t spill_bytes = 8ll << 30;  // disk budget; least recently used blocks go first
    // Steps whose every sampling sequence can be sampled exactly from its best candidates
    // (Decoding::top_candidates_needed: greedy or top_k, without logits masks or logprobs, and
    // without penalties or with ones that only lower logits, whose window's tokens are then
    // added to the candidates) ask the model for only those (Batch::output_top_k: the largest any of them
    // needs), so a GPU model copies k ids and logits per row back instead of the vocabulary,
    // and the sampler sorts k candidates instead of the row. The tokens are the same bits
    // either way. HEARTH_SAMPLE_TOPK=0 in the environment turns it off (comparisons).
    bool sample_top_k = true;
    // One line per scheduler step on stderr (HEARTH_TRACE_STEPS=1 in the environment): the
    // step's tokens, sequences and decodes, and how long the model's forward and the sampling
    // took, to see where a request's time goes without a profiler.
    bool trace_steps = false;
};

constexpr int kMaxAutoParallel = 32;

// How an engine with these options would size its KV pool for a model of this layout, for
// callers that must know before loading (the model manager's memory estimate). mem_available:
// bytes free now (read_mem_available()), used only by the automatic budget.
struct KvPlan {
    quant::QuantType type = quant::QuantType::f16;  // after a fallback to f16
    int64_t n_blocks = 0;
    int n_parallel = 0;
    int64_t bytes = 0;
    std::string note;  // the load log line (type, size, saving, fallback)
};
Result<KvPlan> plan_kv(const model::KvLayout& layout, const EngineOptions& opt, int64_t mem_available);

// A request carries the same fields as single-sequence generation (prompt, sampling,
// num_predict, stop strings, ignore_eos).
using Request = GenerateRequest;

// What generate() reports, plus what only a shared engine knows.
struct RequestStats : GenerateStats {
    int64_t cached_tokens = 0;  // prompt positions reused from the prefix cache (not computed)
    int64_t queue_ns = 0;       // submit to admission (waiting for a slot or KV blocks)
    int64_t disk_cached_tokens = 0;  // of cached_tokens, those read back from the disk tier
};

struct Event {
    enum class Kind { text, done, error };
    Kind kind = Kind::text;
    std::string text;    // text: the next piece of complete UTF-8
    // text: the tokens sampled since the last text event, when Request::logprobs is set (a
    // token whose text is held back, e.g. a partial stop string, comes with the text that
    // releases it; the tokens of a matched stop string are not reported)
    std::vector<TokenLogprob> logprobs;
    RequestStats stats;  // done
    Status status;       // error: why the request failed; no done event follows
};

// Receives a request's events in order: text pieces, then exactly one done or error.
using EventCallback = std::function<void(const Event&)>;
using RequestId = uint64_t;  // 0 is never a valid handle

// Pool accounting, as of the end of the last scheduler step.
struct PoolStats {
    int n_blocks = 0;   // usable by sequences
    int n_free = 0;
    int n_cached = 0;   // unreferenced prefix-cache blocks (evictable)
    int n_used = 0;     // referenced by running sequences
    int n_running = 0;
    int n_waiting = 0;
};

class Engine {
public:
    // Sizes the pool and starts the scheduler thread. invalid_argument for a bad option
    // (n_ctx or block_size <= 0, a pool smaller than one context, step_tokens < 1).
    static Result<std::unique_ptr<Engine>> create(std::shared_ptr<model::Model> model,
                                                  std::shared_ptr<const tok::Tokenizer> tokenizer,
                                                  const EngineOptions& options);
    // Stops the scheduler: every request not yet done gets done with DoneReason::cancelled.
    // Must not run on the scheduler thread (from a callback); shutdown() may.
    ~Engine();
    Engine(const Engine&) = delete;
    Engine& operator=(const Engine&) = delete;

    // Queues a request; any thread. A request that can never run (empty or too long prompt,
    // bad sampling options) gets an error event from the scheduler thread. After shutdown()
    // the callback gets a cancelled done event at once, on the calling thread.
    RequestId submit(Request req, EventCallback on_event);
    // The request ends with DoneReason::cancelled and its blocks are released before the next
    // step. Unknown or finished ids are ignored.
    void cancel(RequestId id);
    // Same as the destructor; idempotent.
    void shutdown();

    PoolStats pool_stats() const;
    // The disk tier's counters; all zero when it is off.
    PrefixStoreStats spill_stats() const { return store_ ? store_->stats() : PrefixStoreStats{}; }
    int n_parallel() const { return n_parallel_; }
    quant::QuantType kv_type() const { return kv_.type(); }
    size_t kv_bytes() const { return kv_.bytes(); }  // the KV rows held in host memory
    // The KV rows the model keeps in device memory for this pool (0 on the CPU).
    size_t kv_device_bytes() const {
        const size_t all = model::KvCache::bytes_per_block(model_->kv_layout(), kv_.type(), kv_.block_size());
        return (size_t)kv_.n_blocks() * (all - kv_.block_bytes());
    }
    // One line for the load log: the pool's type, size and what the type saves against f16/f32,
    // plus why a requested type was replaced, if it was.
    const std::string& kv_note() const { return kv_note_; }
    int64_t n_ctx() const { return opt_.n_ctx; }
    int block_size() const { return opt_.block_size; }

private:
    struct Pending {
        RequestId id;
        Request req;
        EventCallback cb;
        int64_t submit_ns;
    };
    struct Sequence;

    Engine(std::shared_ptr<model::Model> model, std::shared_ptr<const tok::Tokenizer> tokenizer,
           model::KvCache kv, std::unique_ptr<PrefixStore> store, const EngineOptions& opt, KvPlan plan);
    void run();
    // One scheduler pass over the state below; false when there was nothing to compute.
    bool step();
    void admit();
    void finish(Sequence& s, DoneReason why);
    void fail(Sequence& s, Status st);
    void release_blocks(Sequence& s);
    void publish_full_blocks(Sequence& s);
    void load_spilled(Sequence& s, int max_blocks);
    // Samples s's next token from its logits row, or, when top_ids is not empty, from the
    // row's best candidates: top_ids and their logits (Batch::output_top_k).
    void sample(Sequence& s, std::span<const float> logits, std::span<const int32_t> top_ids = {});
    // This step's Batch::output_top_k: what the sequences in out_seq_ need (0: full rows).
    int32_t output_top_k() const;
    void flush_done();
    void publish_stats();

    std::shared_ptr<model::Model> model_;
    std::shared_ptr<const tok::Tokenizer> tok_;
    EngineOptions opt_;
    int n_parallel_;
    std::string kv_note_;

    // ---- owned by the scheduler thread (no lock) ----
    model::KvCache kv_;
    BlockPool pool_;
    std::unique_ptr<PrefixStore> store_;   // disk tier; null when off
    std::vector<std::byte> spill_buf_;     // [kv_.block_bytes()] one block on its way to or from disk
    std::deque<std::unique_ptr<Sequence>> waiting_;   // validated, FIFO, no blocks yet
    std::vector<std::unique_ptr<Sequence>> running_;  // admitted, in admission order
    // Blocks promised to running sequences but not yet allocated: the sum of their
    // reserve_left. Invariant: reserved_ <= pool_.n_available().
    int64_t reserved_ = 0;
    model::Batch batch_;                   // rebuilt every step; capacity kept
    model::ForwardOutput out_;
    std::vector<Sequence*> in_batch_;      // [n_seqs of the batch] batch seq id -> sequence
    std::vector<Sequence*> out_seq_;       // [n_outputs] logits row -> sequence
    std::vector<Sequence*> prefills_;      // [running with > 1 pending token] this step's prefill order
    std::vector<Sequence*> decodes_;       // [running with 1 pending token]
    size_t decode_cursor_ = 0;             // where the next step's decodes start when they exceed the budget
    // Done/error events of this step, delivered after the pool stats are published so a
    // caller that saw every done event sees the final accounting.
    std::vector<std::pair<EventCallback, Event>> done_;

    // ---- shared with submitting threads, under mu_ ----
    mutable std::mutex mu_;
    std::condition_variable cv_;
    bool stopping_ = false;             // set once by shutdown(); the thread then drains and exits
    RequestId next_id_ = 1;
    std::vector<Pending> incoming_;     // submitted, not yet seen by the scheduler
    std::vector<RequestId> cancels_;    // cancel() calls not yet applied
    PoolStats stats_;                   // published by the scheduler after every step

    std::thread thread_;  // last member: started after everything above exists
};

}  // namespace hearth::runtime
