#include "runtime/embedder.h"

#include <algorithm>
#include <cmath>
#include <exception>

#include "base/timer.h"

namespace hearth::runtime {
namespace {

constexpr int kBlockSize = 16;            // KV positions per block
constexpr int64_t kDefaultMaxCtx = 2048;  // default n_ctx cap
constexpr int64_t kDefaultBatch = 2048;

bool starts_with(std::span<const int32_t> ids, std::span<const int32_t> p) {
    return p.size() <= ids.size() && std::equal(p.begin(), p.end(), ids.begin());
}
bool ends_with(std::span<const int32_t> ids, std::span<const int32_t> s) {
    return s.size() <= ids.size() && std::equal(s.begin(), s.end(), ids.end() - (ptrdiff_t)s.size());
}

// llama.cpp's common_embd_normalize(embd_norm = 2): sum of squares in double, scaled by the f32
// inverse; a zero vector stays zero.
void l2_normalize(std::vector<float>& v) {
    double sum = 0.0;
    for (float x : v) sum += (double)(x * x);
    const double norm = std::sqrt(sum);
    const float scale = norm > 0.0 ? (float)(1.0 / norm) : 0.0f;
    for (float& x : v) x *= scale;
}

}  // namespace

Result<std::unique_ptr<Embedder>> Embedder::create(std::shared_ptr<model::Model> model,
                                                   std::shared_ptr<const tok::Tokenizer> tokenizer,
                                                   const EmbedderOptions& opt) {
    if (!model || !tokenizer) return error(StatusCode::invalid_argument, "the embedder needs a model and a tokenizer");
    const model::Hparams& hp = model->hparams();
    if (!model->is_embedding())
        return error(StatusCode::invalid_argument,
                     hp.arch + " model does not pool embeddings: use an embedding model, or load the decoder with a "
                               "pooling (model::LoadOptions::pooling)");
    if (opt.n_ctx < 0 || opt.batch_tokens < 0 || opt.max_seqs < 1)
        return error(StatusCode::invalid_argument,
                     strformat("n_ctx (%lld) and batch_tokens (%lld) must not be negative, max_seqs (%d) at least 1",
                               (long long)opt.n_ctx, (long long)opt.batch_tokens, opt.max_seqs));
    const int64_t n_train = hp.n_ctx_train;
    int64_t n_ctx = opt.n_ctx;
    if (n_ctx == 0) n_ctx = n_train > 0 ? std::min(n_train, kDefaultMaxCtx) : kDefaultMaxCtx;
    if (n_train > 0 && n_ctx > n_train)
        return error(StatusCode::invalid_argument,
                     strformat("n_ctx %lld is more than the model's training context of %lld tokens", (long long)n_ctx,
                               (long long)n_train));
    const int64_t batch_tokens = opt.batch_tokens > 0 ? opt.batch_tokens : std::max(kDefaultBatch, n_ctx);
    if (batch_tokens < n_ctx)
        return error(StatusCode::invalid_argument,
                     strformat("batch_tokens %lld is less than n_ctx %lld: every input is evaluated in one forward pass",
                               (long long)batch_tokens, (long long)n_ctx));
    // A sequence of L tokens takes ceil(L / kBlockSize) <= L / kBlockSize + 1 blocks, so a pass
    // of at most batch_tokens tokens and max_seqs sequences never runs out.
    const int64_t n_blocks = (batch_tokens + kBlockSize - 1) / kBlockSize + opt.max_seqs;
    if (n_blocks > INT32_MAX) return error(StatusCode::invalid_argument, "batch_tokens and max_seqs are too large");
    HEARTH_ASSIGN(model::KvCache kv, model::KvCache::create(model->kv_layout(), (int)n_blocks, kBlockSize));
    std::unique_ptr<Embedder> e(new Embedder(std::move(model), std::move(tokenizer), std::move(kv), n_ctx, batch_tokens,
                                             opt.max_seqs));
    // What encode(add_special) puts around a text: the difference between a sample text
    // encoded with and without specials (none when the two do not line up).
    const std::vector<int32_t> full = e->tok_->encode("hello", true, false);
    const std::vector<int32_t> plain = e->tok_->encode("hello", false, false);
    for (size_t k = 0; !plain.empty() && k + plain.size() <= full.size(); ++k)
        if (std::equal(plain.begin(), plain.end(), full.begin() + (ptrdiff_t)k)) {
            e->prefix_ids_.assign(full.begin(), full.begin() + (ptrdiff_t)k);
            e->suffix_ids_.assign(full.begin() + (ptrdiff_t)(k + plain.size()), full.end());
            break;
        }
    return e;
}

Embedder::Embedder(std::shared_ptr<model::Model> model, std::shared_ptr<const tok::Tokenizer> tokenizer,
                   model::KvCache kv, int64_t n_ctx, int64_t batch_tokens, int max_seqs)
    : model_(std::move(model)),
      tok_(std::move(tokenizer)),
      n_ctx_(n_ctx),
      batch_tokens_(batch_tokens),
      max_seqs_(max_seqs),
      kv_(std::move(kv)) {}

Embedder::~Embedder() = default;

bool Embedder::truncate(std::vector<int32_t>& ids) const {
    const size_t n_pre = starts_with(ids, prefix_ids_) ? prefix_ids_.size() : 0;
    const size_t n_suf = ends_with(ids, suffix_ids_) && ids.size() >= n_pre + suffix_ids_.size() ? suffix_ids_.size() : 0;
    if ((int64_t)(n_pre + n_suf) >= n_ctx_) return false;
    const size_t keep = (size_t)n_ctx_ - n_pre - n_suf;  // content tokens kept
    std::copy(ids.end() - (ptrdiff_t)n_suf, ids.end(), ids.begin() + (ptrdiff_t)(n_pre + keep));
    ids.resize((size_t)n_ctx_);
    return true;
}

Result<EmbedResult> Embedder::embed(std::span<const std::string> inputs, const EmbedRequestOptions& options) {
    const int64_t start = now_ns();
    std::vector<std::vector<int32_t>> ids(inputs.size());
    for (size_t i = 0; i < inputs.size(); ++i) ids[i] = tok_->encode(inputs[i], true, true);
    return run(std::move(ids), options, start);
}

Result<EmbedResult> Embedder::embed(std::span<const std::vector<int32_t>> inputs, const EmbedRequestOptions& options) {
    const int64_t start = now_ns();
    return run(std::vector<std::vector<int32_t>>(inputs.begin(), inputs.end()), options, start);
}

Result<EmbedResult> Embedder::run(std::vector<std::vector<int32_t>> inputs, const EmbedRequestOptions& options,
                                  int64_t start_ns) {
    const int64_t n_embd = model_->hparams().n_embd, n_vocab = model_->hparams().n_vocab;
    if (options.dimensions && (*options.dimensions < 1 || *options.dimensions > n_embd))
        return error(StatusCode::invalid_argument,
                     strformat("dimensions %lld: the model's vectors have %lld, ask for 1 to %lld",
                               (long long)*options.dimensions, (long long)n_embd, (long long)n_embd));
    // Checked here, not left to the model: a bad input would fail a pass shared with other calls.
    std::vector<uint8_t> truncated(inputs.size(), 0);
    for (size_t i = 0; i < inputs.size(); ++i) {
        std::vector<int32_t>& ids = inputs[i];
        if (ids.empty())
            return error(StatusCode::invalid_argument, strformat("input %zu has no tokens to embed", i));
        for (int32_t id : ids)
            if (id < 0 || id >= n_vocab)
                return error(StatusCode::invalid_argument,
                             strformat("input %zu: token id %d is outside the vocabulary (size %lld)", i, id,
                                       (long long)n_vocab));
        if ((int64_t)ids.size() <= n_ctx_) continue;
        if (!options.truncate)
            return error(StatusCode::invalid_argument,
                         strformat("input %zu has %zu tokens, more than the context of %lld (truncate is off)", i,
                                   ids.size(), (long long)n_ctx_));
        if (!truncate(ids))
            return error(StatusCode::invalid_argument,
                         strformat("input %zu cannot be truncated to %lld tokens and keep its special tokens", i,
                                   (long long)n_ctx_));
        truncated[i] = 1;
    }

    EmbedResult r;
    r.prompt_tokens.resize(inputs.size());
    for (size_t i = 0; i < inputs.size(); ++i) {
        r.prompt_tokens[i] = (int64_t)inputs[i].size();
        r.prompt_tokens_total += r.prompt_tokens[i];
    }
    r.truncated = std::move(truncated);
    if (!inputs.empty()) {
        Job job;
        job.inputs = std::move(inputs);
        job.pooled.resize(job.inputs.size());
        std::unique_lock<std::mutex> lk(mu_);
        queue_.push_back(&job);
        while (!job.done) {
            if (busy_) {
                cv_.wait(lk);
                continue;
            }
            // Become the evaluating thread for everything queued, this call included.
            busy_ = true;
            std::vector<Job*> jobs(queue_.begin(), queue_.end());
            queue_.clear();
            lk.unlock();
            try {
                evaluate(jobs);
            } catch (const std::exception& ex) {  // out of memory: fail these calls, stay usable
                for (auto& table : batch_.block_tables) kv_.release(table);
                batch_.clear();
                for (Job* j : jobs)
                    if (j->status.ok())
                        j->status = error(StatusCode::resource_exhausted, std::string("embedding: ") + ex.what());
            }
            lk.lock();
            for (Job* j : jobs) j->done = true;
            busy_ = false;
            cv_.notify_all();
        }
        lk.unlock();
        if (!job.status.ok()) return job.status;

        const int64_t dims = options.dimensions.value_or(n_embd);
        r.vectors = std::move(job.pooled);
        for (size_t i = 0; i < r.vectors.size(); ++i) {
            std::vector<float>& v = r.vectors[i];
            if (!std::all_of(v.begin(), v.end(), [](float x) { return std::isfinite(x); }))
                return error(StatusCode::out_of_range,
                             strformat("the embedding of input %zu is not finite (NaN or Inf)", i));
            v.resize(dims);
            if (options.normalize) l2_normalize(v);
        }
    }
    r.total_ns = now_ns() - start_ns;
    return r;
}

void Embedder::evaluate(const std::vector<Job*>& jobs) {
    const int64_t n_embd = model_->hparams().n_embd;
    // (job, input) pairs of the pass being filled, in queue order.
    std::vector<std::pair<Job*, size_t>> seqs;
    auto flush = [&] {
        if (seqs.empty()) return;
        Status st;
        batch_.block_tables.resize(seqs.size());
        for (size_t s = 0; s < seqs.size() && st.ok(); ++s)
            st = kv_.ensure_capacity(batch_.block_tables[s], (int64_t)seqs[s].first->inputs[seqs[s].second].size());
        if (st.ok()) {
            st = model_->forward(batch_, kv_, out_);
            passes_.fetch_add(1, std::memory_order_relaxed);
        }
        if (st.ok() && out_.embeddings.size() != seqs.size() * (size_t)n_embd)
            st = error(StatusCode::internal, strformat("the model pooled %zu values for %zu sequences of %lld",
                                                       out_.embeddings.size(), seqs.size(), (long long)n_embd));
        for (size_t s = 0; s < seqs.size(); ++s) {
            auto [job, i] = seqs[s];
            if (!st.ok()) {
                if (job->status.ok()) job->status = st;
                continue;
            }
            const float* row = out_.embeddings.data() + s * n_embd;
            job->pooled[i].assign(row, row + n_embd);
        }
        for (auto& table : batch_.block_tables) kv_.release(table);
        batch_.clear();
        seqs.clear();
    };
    for (Job* job : jobs) {
        for (size_t i = 0; i < job->inputs.size(); ++i) {
            const std::vector<int32_t>& ids = job->inputs[i];
            const bool full = batch_.n_tokens() + (int64_t)ids.size() > batch_tokens_ || (int)seqs.size() == max_seqs_;
            if (!seqs.empty() && full) flush();
            if (!job->status.ok()) break;  // an earlier pass failed this job: skip the rest of it
            const int32_t seq = (int32_t)seqs.size();
            for (size_t p = 0; p < ids.size(); ++p) batch_.add(ids[p], (int32_t)p, seq, true);
            seqs.emplace_back(job, i);
        }
    }
    flush();
}

}  // namespace hearth::runtime
