// Token sampling: turns one row of logits into one token id.
//
// The pipeline is llama.cpp's default chain, which Ollama's llama runner also uses:
//
//   penalties → top_k → typical_p → top_p → min_p → temperature → softmax → draw
//
// Each stage is a free function over a CandidateList so it can be tested on its own; Sampler
// strings them together over buffers it sizes once, at construction, to the vocabulary.
//
// Determinism: the RNG is std::mt19937_64, whose output sequence the C++ standard fixes, and a
// uniform double is made from its raw 64-bit output by hand (unit_double below). No <random>
// distribution is used, since their outputs are implementation-defined. Every sort uses a total
// order (ties broken by token id), and the selections that leave candidates unsorted are this
// project's own code, so the candidate order at the draw does not depend on the standard library
// either. The same seed, options and inputs give the same tokens everywhere;
// the one caveat is that std::exp/std::log may differ in the last ulp between C libraries, which
// can only matter when a draw lands within that rounding of a bucket edge.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include "base/status.h"

namespace hearth::runtime {

constexpr int64_t kSeedRandom = -1;      // SamplingOptions::seed: draw a seed from the OS
constexpr int32_t kRepeatLastNAll = -1;  // SamplingOptions::repeat_last_n: the whole history

// Ollama's sampling `options` (the Modelfile PARAMETERs of the same names) with its defaults.
struct SamplingOptions {
    float temperature = 0.8f;        // <= 0 (after validate(): == 0) means greedy: argmax, lowest id on ties
    int32_t top_k = 40;              // keep the k most likely tokens; 0 = off
    float top_p = 0.9f;              // keep the smallest most-likely set whose mass is >= top_p; 1 = off
    float min_p = 0.0f;              // drop tokens with p < min_p * p_max; 0 = off
    float typical_p = 1.0f;          // locally typical sampling (Meister et al. 2022); 1 = off
    // 1.0, as Ollama's current code (its old 1.1 default was removed 2026-08-11; peers.md §1.4).
    float repeat_penalty = 1.0f;     // > 0; 1 = off. Positive logits divided, negative multiplied
    int32_t repeat_last_n = 64;      // penalty window in tokens; 0 = off, kRepeatLastNAll = whole history
    float presence_penalty = 0.0f;   // subtracted once from every token seen in the window
    float frequency_penalty = 0.0f;  // subtracted count times from every token seen in the window
    // kSeedRandom draws one from the OS. Every other value, negative ones included, is a fixed
    // seed (cast to uint64_t), as in Ollama, whose only special value is -1.
    int64_t seed = kSeedRandom;

    // invalid_argument naming the first bad field and its value, e.g.
    // "top_p must be in (0, 1], got 1.5". NaN and infinities are rejected everywhere.
    Status validate() const;
};

// One candidate token.
struct TokenData {
    int32_t id;    // token id: index into the logits row
    float logit;   // current logit, after the stages applied so far
    float prob;    // probability; meaningful only after softmax() on the current list
};

// The live candidates: a view over storage its owner sized once. Stages reorder and shrink the
// view in place and never grow it, so sampling allocates nothing.
struct CandidateList {
    std::span<TokenData> items;  // [n_live] the live candidates
    // True when items are ordered by logit descending, ties by lower id first (by_logit_desc).
    // Stages that sort set it; stages that reorder differently clear it.
    bool is_sorted = false;

    size_t size() const { return items.size(); }
    void truncate(size_t n) { items = items.first(n); }
};

// The total order every logit sort uses: higher logit first, then lower id.
inline bool by_logit_desc(const TokenData& a, const TokenData& b) {
    return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
}

// [0, 1) from the top 53 bits of a raw 64-bit RNG output: every double k * 2^-53 is equally likely.
inline double unit_double(uint64_t bits) { return static_cast<double>(bits >> 11) * 0x1.0p-53; }

// ---- stages ------------------------------------------------------------------------------------
// Every filtering stage keeps at least one candidate (llama.cpp's min_keep = 1), and is a no-op on
// an empty list. Logits may be -inf (a grammar mask) but not NaN; Sampler maps NaN to -inf.

// The tail of `history` that the penalties look at: the last repeat_last_n tokens, all of them for
// kRepeatLastNAll, none for 0.
std::span<const int32_t> penalty_window(std::span<const int32_t> history, int32_t repeat_last_n);

// The penalized value of one logit whose token occurs `count` (> 0) times in the window, exactly as
// llama.cpp computes it: logit <= 0 ? logit * repeat : logit / repeat, minus
// count * frequency_penalty, minus presence_penalty.
float penalize_logit(float logit, int32_t count, float repeat_penalty, float frequency_penalty,
                     float presence_penalty);

// Applies penalize_logit once to every distinct token of `window`. Window ids outside the list are
// ignored.
// Preconditions: c.items[i].id == i for all i (the full vocabulary in id order, as Sampler fills
// it); counts is [c.size()] scratch, all zero. On return counts is all zero again.
void apply_penalties(CandidateList& c, std::span<const int32_t> window, float repeat_penalty,
                     float frequency_penalty, float presence_penalty, std::span<int32_t> counts);

// Keeps the k highest logits, sorted (is_sorted = true). k <= 0 or k >= size: no-op.
// A heap selection (one pass, O(n log k) worst case) for k << n, nth_element + sort otherwise.
void apply_top_k(CandidateList& c, int32_t k);

// Locally typical sampling as llama.cpp does it: with H the entropy of softmax(logits), orders the
// candidates by |-log p - H| ascending (ties: lower id) and keeps the shortest prefix whose mass
// exceeds p. May drop the most likely token. The kept tokens come out in a deterministic but
// unspecified order (is_sorted = false). p >= 1: no-op. Costs a softmax and an expected-O(n)
// selection over the whole list when top_k is off.
void apply_typical(CandidateList& c, float p);

// Nucleus sampling: keeps the shortest most-likely prefix whose mass is >= p. A sorted list is
// just cut. An unsorted one is not sorted: a mass-steered quickselect finds the same set in
// expected O(n) (after dropping tokens too unlikely to matter), so a 150k vocabulary with top_k
// off stays cheap; the kept tokens then come out in a deterministic but unspecified order, and
// is_sorted says whether that happens to be sorted. p >= 1: no-op.
void apply_top_p(CandidateList& c, float p);

// Keeps the tokens with p >= p_min * p_max, i.e. logit >= max_logit + log(p_min). Preserves the
// order (and is_sorted). p <= 0: no-op.
void apply_min_p(CandidateList& c, float p);

// Divides every logit by t (order kept). t <= 0 keeps only the best candidate (greedy).
void apply_temperature(CandidateList& c, float t);

// Fills prob with softmax(logit) over the list, order kept. Returns log(sum(exp(logit))).
// All logits -inf: uniform probabilities (returns -inf). Some logits +inf: the mass is split
// evenly among those (returns +inf).
double softmax(CandidateList& c);

// The candidate whose cumulative-probability bucket contains u * sum(prob), walking the list in its
// current order. u in [0, 1). Preconditions: softmax() ran on this list; the list is non-empty.
int32_t draw(const CandidateList& c, double u);

// ---- sampler -----------------------------------------------------------------------------------

class Sampler {
public:
    // Preconditions: options.validate().ok(); n_vocab > 0. Use create() where the options come
    // from a user. Allocates every buffer sample() needs.
    Sampler(const SamplingOptions& options, int32_t n_vocab);
    // Validates first; invalid_argument naming the field, or n_vocab <= 0.
    static Result<Sampler> create(const SamplingOptions& options, int32_t n_vocab);

    // Picks the next token. logits: [n_vocab] f32, one row of the model's output. history: prompt + generated tokens so
    // far, oldest first; only its last repeat_last_n entries are read (the penalty window).
    // Allocates nothing. Greedy (temperature <= 0) applies the penalties, then takes the argmax,
    // lowest id on ties, and consumes no randomness; otherwise every call consumes exactly one
    // 64-bit RNG output, so a token stream depends only on the seed and the inputs.
    // A row longer than n_vocab (an output matrix padded past the vocabulary) is read only up to
    // n_vocab; a shorter one makes only its own ids candidates. Returns -1 for an empty row.
    int32_t sample(std::span<const float> logits, std::span<const int32_t> history);

    // How many of a row's best candidates (best first in by_logit_desc order, NaN as -inf:
    // model::ForwardOutput::top_ids) sample_top() needs to pick exactly the token sample()
    // picks from that whole row of row_size logits with this history, with the same
    // randomness: 1 for greedy, top_k when 0 < top_k < row_size (the later stages only see the
    // top_k list), plus the penalty window's length when penalties only lower logits
    // (repeat_penalty >= 1, frequency and presence >= 0: the best after them are among the best
    // k + W before them, W the window's distinct tokens). 0 when only the whole row will do:
    // penalties that can raise a logit, top_k off or not below row_size, a window as long as
    // the rest of the row, or a row longer than n_vocab (a padded output matrix: its best
    // candidates may lie past the vocabulary). Greedy's one caveat: a row with no logit above
    // -inf gives candidate 0 the lowest id among its -inf and NaN entries, where argmax skips
    // NaN; such a row samples nothing meaningful either way.
    int32_t top_candidates_needed(int64_t row_size, std::span<const int32_t> history = {}) const;
    // sample() from a row's best candidates: ids and logits [n], best first as above, n >=
    // top_candidates_needed(row_size, history) > 0 for the row they came from and the same
    // history (else the result is not sample()'s). Allocates nothing. Returns -1 for no
    // candidates.
    int32_t sample_top(std::span<const int32_t> ids, std::span<const float> logits,
                       std::span<const int32_t> history = {});

    // Index of the largest value, lowest index on ties; NaN never wins. -1 for an empty span,
    // 0 when every value is NaN.
    static int32_t argmax(std::span<const float> logits);

    const SamplingOptions& options() const { return options_; }
    int32_t n_vocab() const { return n_vocab_; }
    // The seed in use: options.seed, or the one drawn from the OS for kSeedRandom. Logging it makes
    // a random run reproducible.
    uint64_t seed() const { return seed_; }

private:
    // True when some penalty changes a logit: repeat != 1, frequency != 0 or presence != 0.
    bool has_penalties() const;
    // True when no penalty can raise a logit: repeat >= 1, frequency >= 0 and presence >= 0.
    bool penalties_only_lower() const;
    int32_t sample_greedy(std::span<const float> logits, std::span<const int32_t> window);
    // The stages after the penalties, top_k to the draw, over c (the full row in id order, or
    // a row's best candidates sorted: apply_top_k leaves both in the same state).
    int32_t sample_list(CandidateList& c);

    SamplingOptions options_;
    int32_t n_vocab_;
    uint64_t seed_;
    std::mt19937_64 rng_;
    // Scratch, sized at construction and never reallocated. At 150k tokens: 1.8 MB + 0.6 MB.
    std::vector<TokenData> candidates_;  // [n_vocab] behind each call's CandidateList; empty when greedy
    std::vector<int32_t> counts_;        // [n_vocab] window occurrences, all zero between calls; empty without penalties
    std::vector<float> greedy_logits_;   // [n_vocab] penalized copy of the row; only for greedy with penalties
};

}  // namespace hearth::runtime
