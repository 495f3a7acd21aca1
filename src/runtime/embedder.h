// Embeddings: many inputs at once through a model that pools (Model::is_embedding(): a BERT-
// family model, or a decoder loaded with model::LoadOptions::pooling), the vectors normalized
// as Ollama's /api/embed and llama.cpp's llama-embedding / llama-server return them.
//
// Packing: the inputs of a call (and of calls made at the same time from other threads) are
// packed, in order, into forward passes of at most batch_tokens tokens and max_seqs sequences,
// each input one sequence with its own KV blocks. Every input is evaluated whole in one pass:
// a model pools a sequence over the tokens one pass holds (ForwardOutput::embeddings), and
// BERT's attention is bidirectional, so an input is never split; n_ctx <= batch_tokens
// guarantees it fits. Every kernel computes a token's result from that token and its own
// sequence only, so an input's vector is bit-identical whatever it is batched with.
//
// Tokenizing: tok::Tokenizer::encode(text, add_special = true, parse_special = true), as
// llama.cpp's embedding tools do: WordPiece frames with [CLS] ... [SEP], other vocabularies add
// BOS/EOS as their metadata says.
//
// Truncation (truncate = true, the default, as Ollama): an input longer than n_ctx keeps the
// special tokens the tokenizer puts at its ends (BOS/[CLS] in front, EOS/[SEP] behind) and
// loses tokens from the end of its content; EmbedResult::truncated says which were cut. With
// truncate = false it is an invalid_argument error naming the input and both lengths.
//
// Vectors: the model's pooled vector (bert: its pooling_type, CLS when absent; decoders: the
// final norm's output pooled as loaded), then, with `dimensions`, its first N values
// (Matryoshka truncation, as OpenAI's and Ollama's `dimensions`), then L2-normalized unless
// normalize = false. L2 as llama.cpp's common_embd_normalize(2): sum of squares in double, a
// zero vector stays zero. GGUF metadata has no key saying whether a model's vectors are meant
// normalized (sentence-transformers' Normalize module is not exported), so the default follows
// what Ollama and llama.cpp return: normalized. A vector with NaN or Inf is an error (as Ollama).
//
// Empty inputs: an empty list gives an empty result. An empty string is embedded like any other
// (bert: [CLS] [SEP]; llama3: BOS alone); when the tokenizer gives it no token at all (qwen
// vocabularies add no BOS) it is an invalid_argument error naming the input. Ollama's single
// `"input": ""` meaning "no input" (an empty list, a load request) is the server adapter's
// business: it passes an empty list.
//
// Threads: embed() may be called from any number of threads at once. Calls that arrive while a
// pass runs queue up; the next caller to find the model idle evaluates everything queued, in
// shared passes, and hands each call its vectors (normalization runs on the calling thread).
// The Embedder must be the only user of its model's forward() while it lives (Model keeps
// scratch and is not reentrant); a model that pools is refused by runtime::Engine, and a
// second Model over the same GgufFile shares the mapped weights, so serving generation and
// embeddings from one file costs only the second model's scratch.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace hearth::runtime {

struct EmbedderOptions {
    // Most tokens of one input (after tokenization, specials included). 0: the model's training
    // context, at most 2048 (bert-base: 512). More than the training context is an error.
    int64_t n_ctx = 0;
    // Most tokens of one forward pass. 0: max(2048, n_ctx). Must be at least n_ctx.
    int64_t batch_tokens = 0;
    // Most inputs in one forward pass; each holds its own KV blocks, so KV memory is about
    // batch_tokens + 16 * max_seqs positions.
    int max_seqs = 64;
};

struct EmbedRequestOptions {
    bool truncate = true;               // cut inputs longer than n_ctx (else: error)
    std::optional<int64_t> dimensions;  // keep the first N values, 1 <= N <= n_embd
    bool normalize = true;              // L2-normalize (after the dimensions cut)
};

struct EmbedResult {
    std::vector<std::vector<float>> vectors;  // [n_inputs][dimensions or n_embd], input order
    std::vector<int64_t> prompt_tokens;       // [n_inputs] tokens evaluated (after truncation)
    std::vector<uint8_t> truncated;           // [n_inputs] 1: the input was cut to n_ctx
    int64_t prompt_tokens_total = 0;          // Ollama's prompt_eval_count, OpenAI's usage
    int64_t total_ns = 0;  // the call: tokenizing, waiting for the model, evaluating (no load)
};

class Embedder {
public:
    // invalid_argument: no model or tokenizer, a model that does not pool, bad options.
    static Result<std::unique_ptr<Embedder>> create(std::shared_ptr<model::Model> model,
                                                    std::shared_ptr<const tok::Tokenizer> tokenizer,
                                                    const EmbedderOptions& options);
    ~Embedder();
    Embedder(const Embedder&) = delete;
    Embedder& operator=(const Embedder&) = delete;

    // One vector per input, in order. Errors (nothing is returned then): invalid_argument for a
    // bad option, an input without tokens, an input too long with truncate off, a token id
    // outside the model's vocabulary, each naming the input's index; out_of_range for a
    // non-finite vector; whatever the model's forward() answered.
    Result<EmbedResult> embed(std::span<const std::string> inputs, const EmbedRequestOptions& options = {});
    // For callers that tokenized already: the ids are used as given (specials included).
    Result<EmbedResult> embed(std::span<const std::vector<int32_t>> inputs, const EmbedRequestOptions& options = {});

    int64_t n_ctx() const { return n_ctx_; }
    int64_t batch_tokens() const { return batch_tokens_; }
    int64_t n_embd() const { return model_->hparams().n_embd; }
    model::Pooling pooling() const { return model_->hparams().pooling; }
    // Forward passes run so far, over all calls (metrics, tests).
    int64_t forward_passes() const { return passes_.load(std::memory_order_relaxed); }

private:
    // One embed() call's inputs on their way through the queue.
    struct Job {
        std::vector<std::vector<int32_t>> inputs;  // [n_inputs] validated, at most n_ctx tokens each
        std::vector<std::vector<float>> pooled;    // [n_inputs][n_embd] raw pooled vectors
        Status status;                             // first failure of a pass holding one of its inputs
        bool done = false;                         // under mu_: the evaluating thread is finished with it
    };

    Embedder(std::shared_ptr<model::Model> model, std::shared_ptr<const tok::Tokenizer> tokenizer, model::KvCache kv,
             int64_t n_ctx, int64_t batch_tokens, int max_seqs);
    // Validates and truncates the inputs, queues them, waits for their vectors, finishes them.
    Result<EmbedResult> run(std::vector<std::vector<int32_t>> inputs, const EmbedRequestOptions& options,
                            int64_t start_ns);
    // Cuts `ids` to n_ctx_ keeping the tokenizer's leading/trailing specials; false when the
    // specials alone do not leave room for one token.
    bool truncate(std::vector<int32_t>& ids) const;
    // Runs every input of `jobs` through the model in packed passes (the caller holds busy_).
    void evaluate(const std::vector<Job*>& jobs);

    std::shared_ptr<model::Model> model_;
    std::shared_ptr<const tok::Tokenizer> tok_;
    int64_t n_ctx_, batch_tokens_;
    int max_seqs_;
    std::vector<int32_t> prefix_ids_, suffix_ids_;  // what encode(add_special) adds in front / behind

    // ---- used only by the thread that set busy_ ----
    model::KvCache kv_;
    model::Batch batch_;
    model::ForwardOutput out_;
    std::atomic<int64_t> passes_{0};

    // ---- shared by calling threads, under mu_ ----
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<Job*> queue_;  // calls waiting for a pass; each Job lives on its caller's stack
    bool busy_ = false;       // a caller is evaluating (owns kv_, batch_, out_ and the model)
};

}  // namespace hearth::runtime
