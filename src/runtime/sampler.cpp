#include "runtime/sampler.h"

#include <algorithm>
#include <bit>
#include <cassert>
#include <chrono>
#include <cmath>
#include <limits>

namespace hearth::runtime {

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

// Below this many candidates, selection just sorts.
constexpr size_t kSortBelow = 64;

// top_k selects with a heap (std::partial_sort) while k * kHeapSelectRatio <= n, with nth_element
// beyond: the heap wins up to k of about 1-2k out of 150k (measured), nth_element above.
constexpr size_t kHeapSelectRatio = 128;

Status bad_option(const char* field, const char* rule, double value) {
    return error(StatusCode::invalid_argument, strformat("%s must be %s, got %g", field, rule, value));
}

// options.seed, or 64 bits from the OS for kSeedRandom.
uint64_t resolve_seed(int64_t seed) {
    if (seed != kSeedRandom) return static_cast<uint64_t>(seed);
    try {
        std::random_device rd;
        const uint64_t hi = rd();
        return (hi << 32) ^ static_cast<uint64_t>(rd());
    } catch (...) {
        // No entropy source on this platform. A random seed only has to differ between runs.
        return static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
    }
}

float max_logit(const CandidateList& c) {
    if (c.is_sorted) return c.items.front().logit;
    // Four running maxima: one would be a single chain of dependent compares.
    float lane_max[4] = {-kInf, -kInf, -kInf, -kInf};
    const size_t n = c.size();
    size_t i = 0;
    for (; i + 4 <= n; i += 4)
        for (size_t lane = 0; lane < 4; ++lane)
            lane_max[lane] = std::max(lane_max[lane], c.items[i + lane].logit);
    for (; i < n; ++i) lane_max[0] = std::max(lane_max[0], c.items[i].logit);
    return std::max(std::max(lane_max[0], lane_max[1]), std::max(lane_max[2], lane_max[3]));
}

struct Selection {
    size_t n_keep;  // length of the selected prefix
    bool is_sorted; // whether items[0, n_keep) came out in `less` order
};

size_t median_of_three(std::span<const TokenData> items, size_t a, size_t b, size_t c, auto less) {
    if (less(items[b], items[a])) std::swap(a, b);
    if (less(items[c], items[b])) {
        b = c;
        if (less(items[b], items[a])) b = a;
    }
    return b;
}

// Moves to the front the shortest prefix of `items` in `less` order whose summed prob makes
// is_done(mass) true, and returns its length (items.size() when no prefix does). This is a
// quickselect that steers by mass instead of by count: expected O(n) whatever the size of the
// result, where sorting the result would cost O(m log m) and m can be tens of thousands on a flat
// distribution. `less` must be a total order. The front comes out in an unspecified order, but the
// pivots and partitions are this file's own code, so that order is the same on every standard
// library, and so are the draws made from it. Items past the result are left in no useful order.
template <class Less, class IsDone>
Selection select_by_mass(std::span<TokenData> items, Less less, IsDone is_done) {
    size_t lo = 0, hi = items.size();  // the cut lies in [lo, hi]; items[0, lo) all precede items[lo, n)
    double mass = 0.0;                 // summed prob of items[0, lo)
    // Partition rounds allowed before giving up on pivots and sorting what is left: median-of-three
    // needs about log2(n) rounds, so only an adversarial order reaches the limit.
    int rounds_left = 4 * static_cast<int>(std::bit_width(items.size()));
    while (hi - lo > kSortBelow && rounds_left-- > 0) {
        std::swap(items[median_of_three(items, lo, lo + (hi - lo) / 2, hi - 1, less)], items[hi - 1]);
        const TokenData pivot = items[hi - 1];
        size_t n_before = lo;        // items[lo, n_before) precede the pivot
        double before_mass = 0.0;
        for (size_t j = lo; j + 1 < hi; ++j) {
            if (less(items[j], pivot)) {
                before_mass += items[j].prob;
                std::swap(items[n_before++], items[j]);
            }
        }
        std::swap(items[n_before], items[hi - 1]);
        if (is_done(mass + before_mass)) {
            hi = n_before;
            continue;
        }
        mass += before_mass + pivot.prob;
        if (is_done(mass)) return {n_before + 1, lo == 0 && n_before == 0};
        lo = n_before + 1;
    }
    std::sort(items.begin() + static_cast<ptrdiff_t>(lo), items.begin() + static_cast<ptrdiff_t>(hi), less);
    for (size_t i = lo; i < hi; ++i) {
        mass += items[i].prob;
        if (is_done(mass)) return {i + 1, lo == 0};
    }
    // Only when no prefix is enough, or when float rounding in the sums above made the sorted walk
    // fall just short of a part already known to be enough: either way all of [0, hi) is the answer.
    return {hi, lo == 0};
}

}  // namespace

Status SamplingOptions::validate() const {
    // Written as !(in range) so NaN fails every check.
    if (!(std::isfinite(temperature) && temperature >= 0.0f))
        return bad_option("temperature", ">= 0 (0 = greedy)", temperature);
    if (top_k < 0) return bad_option("top_k", ">= 0 (0 = off)", top_k);
    if (!(top_p > 0.0f && top_p <= 1.0f)) return bad_option("top_p", "in (0, 1] (1 = off)", top_p);
    if (!(min_p >= 0.0f && min_p <= 1.0f)) return bad_option("min_p", "in [0, 1] (0 = off)", min_p);
    if (!(typical_p > 0.0f && typical_p <= 1.0f))
        return bad_option("typical_p", "in (0, 1] (1 = off)", typical_p);
    if (!(std::isfinite(repeat_penalty) && repeat_penalty > 0.0f))
        return bad_option("repeat_penalty", "> 0 (1 = off)", repeat_penalty);
    if (repeat_last_n < kRepeatLastNAll)
        return bad_option("repeat_last_n", ">= -1 (-1 = whole context, 0 = off)", repeat_last_n);
    if (!std::isfinite(presence_penalty)) return bad_option("presence_penalty", "finite", presence_penalty);
    if (!std::isfinite(frequency_penalty)) return bad_option("frequency_penalty", "finite", frequency_penalty);
    return Status::ok_status();
}

// ---- stages ------------------------------------------------------------------------------------

std::span<const int32_t> penalty_window(std::span<const int32_t> history, int32_t repeat_last_n) {
    if (repeat_last_n == 0) return {};
    // Negative is kRepeatLastNAll here; validate() rejects the other negatives.
    if (repeat_last_n < 0 || static_cast<size_t>(repeat_last_n) >= history.size()) return history;
    return history.last(static_cast<size_t>(repeat_last_n));
}

float penalize_logit(float logit, int32_t count, float repeat_penalty, float frequency_penalty,
                     float presence_penalty) {
    // Dividing a negative logit would raise it, so negative logits are multiplied instead: either
    // way the token becomes less likely.
    logit = logit <= 0.0f ? logit * repeat_penalty : logit / repeat_penalty;
    return logit - (static_cast<float>(count) * frequency_penalty + (count > 0 ? presence_penalty : 0.0f));
}

void apply_penalties(CandidateList& c, std::span<const int32_t> window, float repeat_penalty,
                     float frequency_penalty, float presence_penalty, std::span<int32_t> counts) {
    const size_t n = c.size();
    assert(counts.size() >= n);
    auto in_list = [n](int32_t id) { return id >= 0 && static_cast<size_t>(id) < n; };
    for (int32_t id : window)
        if (in_list(id)) ++counts[static_cast<size_t>(id)];
    // Second pass: penalize each distinct id once (at its first occurrence) and zero its count, which
    // both skips its later occurrences and leaves counts zeroed for the next call.
    for (int32_t id : window) {
        if (!in_list(id)) continue;
        const size_t i = static_cast<size_t>(id);
        if (counts[i] == 0) continue;
        assert(c.items[i].id == id);
        c.items[i].logit = penalize_logit(c.items[i].logit, counts[i], repeat_penalty, frequency_penalty,
                                          presence_penalty);
        counts[i] = 0;
    }
    c.is_sorted = false;
}

void apply_top_k(CandidateList& c, int32_t k) {
    if (k <= 0 || static_cast<size_t>(k) >= c.size()) return;
    const size_t n_keep = static_cast<size_t>(k);
    if (!c.is_sorted) {
        const auto mid = c.items.begin() + static_cast<ptrdiff_t>(n_keep);
        if (n_keep * kHeapSelectRatio <= c.size()) {
            // A heap of the best k so far: one compare against its worst rejects nearly every
            // other candidate, so for k << n this is a single pass (4x faster than nth_element
            // at k = 40 of 150k).
            std::partial_sort(c.items.begin(), mid, c.items.end(), by_logit_desc);
        } else {
            std::nth_element(c.items.begin(), mid, c.items.end(), by_logit_desc);
            std::sort(c.items.begin(), mid, by_logit_desc);
        }
    }
    c.truncate(n_keep);
    c.is_sorted = true;
}

void apply_typical(CandidateList& c, float p) {
    if (p >= 1.0f || c.size() <= 1) return;
    const double log_z = softmax(c);
    // All -inf (uniform) or some +inf (one-hot): there is no finite entropy to centre on.
    if (!std::isfinite(log_z)) return;
    // -log p_i = log_z - logit_i, so H = sum p_i (-log p_i) = log_z - E[logit], and the typicality
    // key |-log p_i - H| is just |E[logit] - logit_i|: no log per candidate, no cancellation, and
    // equal logits get exactly equal keys.
    double mean_logit = 0.0;
    for (const TokenData& t : c.items)
        if (t.prob > 0.0f) mean_logit += static_cast<double>(t.prob) * static_cast<double>(t.logit);
    auto key = [mean_logit](const TokenData& t) { return std::abs(mean_logit - static_cast<double>(t.logit)); };
    auto less = [&key](const TokenData& a, const TokenData& b) {
        const double ka = key(a), kb = key(b);
        return ka < kb || (ka == kb && a.id < b.id);
    };
    c.truncate(select_by_mass(c.items, less, [p](double mass) { return mass > p; }).n_keep);
    c.is_sorted = c.size() <= 1;
}

void apply_top_p(CandidateList& c, float p) {
    if (p >= 1.0f || c.size() <= 1) return;
    softmax(c);
    auto is_done = [p](double mass) { return mass >= p; };
    if (c.is_sorted) {
        double mass = 0.0;
        size_t n_keep = c.size();
        for (size_t i = 0; i < c.size(); ++i) {
            mass += c.items[i].prob;
            if (is_done(mass)) {
                n_keep = i + 1;
                break;
            }
        }
        c.truncate(n_keep);
        return;
    }
    // Tokens with prob < (1 - p) / n hold less than 1 - p between them, so the others hold more
    // than p; being the top of the order, they contain the nucleus. Dropping the rest first (one
    // branch-free, order-keeping pass) leaves the selection only the plausible tokens, typically a
    // small part of a 150k vocabulary.
    const float floor_prob = (1.0f - p) / static_cast<float>(c.size());
    size_t n_plausible = 0;
    for (size_t i = 0; i < c.size(); ++i) {
        c.items[n_plausible] = c.items[i];
        n_plausible += c.items[i].prob >= floor_prob ? 1 : 0;
    }
    c.truncate(n_plausible);
    const Selection s = select_by_mass(c.items, by_logit_desc, is_done);
    c.truncate(s.n_keep);
    c.is_sorted = s.is_sorted;
}

void apply_min_p(CandidateList& c, float p) {
    if (p <= 0.0f || c.size() <= 1) return;
    const float min_logit = max_logit(c) + std::log(p);
    // remove_if keeps the survivors' order, so a sorted list stays sorted. The best token always
    // survives (log(p) <= 0).
    const auto end = std::remove_if(c.items.begin(), c.items.end(),
                                    [min_logit](const TokenData& t) { return t.logit < min_logit; });
    c.truncate(static_cast<size_t>(end - c.items.begin()));
}

void apply_temperature(CandidateList& c, float t) {
    if (c.items.empty()) return;
    if (t <= 0.0f) {
        const auto best = std::min_element(c.items.begin(), c.items.end(), by_logit_desc);
        std::iter_swap(c.items.begin(), best);
        c.truncate(1);
        c.is_sorted = true;
        return;
    }
    for (TokenData& d : c.items) d.logit /= t;
}

double softmax(CandidateList& c) {
    if (c.items.empty()) return -std::numeric_limits<double>::infinity();
    const float top = max_logit(c);
    if (top == -kInf) {
        const float uniform = 1.0f / static_cast<float>(c.size());
        for (TokenData& t : c.items) t.prob = uniform;
        return -std::numeric_limits<double>::infinity();
    }
    if (top == kInf) {
        const auto n_inf = std::count_if(c.items.begin(), c.items.end(), [](const TokenData& t) { return t.logit == kInf; });
        const float share = 1.0f / static_cast<float>(n_inf);
        for (TokenData& t : c.items) t.prob = t.logit == kInf ? share : 0.0f;
        return std::numeric_limits<double>::infinity();
    }
    double sum = 0.0;  // double: 150k terms of very different sizes
    for (TokenData& t : c.items) {
        t.prob = std::exp(t.logit - top);
        sum += t.prob;
    }
    const float inv_sum = static_cast<float>(1.0 / sum);
    for (TokenData& t : c.items) t.prob *= inv_sum;
    return static_cast<double>(top) + std::log(sum);
}

int32_t draw(const CandidateList& c, double u) {
    assert(!c.items.empty());
    // Normalize by the actual sum so float rounding in the probs cannot leave a gap at the top.
    double total = 0.0;
    for (const TokenData& t : c.items) total += t.prob;
    const double target = u * total;
    double mass = 0.0;
    for (const TokenData& t : c.items) {
        mass += t.prob;
        if (target < mass) return t.id;
    }
    // Reached only if rounding put target at the very top: the last token with any mass.
    for (auto it = c.items.rbegin(); it != c.items.rend(); ++it)
        if (it->prob > 0.0f) return it->id;
    return c.items.front().id;
}

// ---- sampler -----------------------------------------------------------------------------------

Sampler::Sampler(const SamplingOptions& options, int32_t n_vocab)
    : options_(options), n_vocab_(std::max(n_vocab, 0)), seed_(resolve_seed(options.seed)), rng_(seed_) {
    assert(options.validate().ok());
    assert(n_vocab > 0);
    // Options never change after construction, so only the buffers this sampler's path uses are
    // made: greedy needs no candidate list, and no penalties need no counts.
    const size_t n = static_cast<size_t>(n_vocab_);
    const bool greedy = options_.temperature <= 0.0f;
    if (!greedy) candidates_.resize(n);
    if (has_penalties()) counts_.assign(n, 0);
    if (greedy && has_penalties()) greedy_logits_.resize(n);
}

Result<Sampler> Sampler::create(const SamplingOptions& options, int32_t n_vocab) {
    HEARTH_TRY(options.validate());
    if (n_vocab <= 0)
        return error(StatusCode::invalid_argument, strformat("n_vocab must be > 0, got %d", n_vocab));
    return Sampler(options, n_vocab);
}

bool Sampler::has_penalties() const {
    return options_.repeat_penalty != 1.0f || options_.frequency_penalty != 0.0f ||
           options_.presence_penalty != 0.0f;
}

int32_t Sampler::argmax(std::span<const float> logits) {
    if (logits.empty()) return -1;
    // Two passes. The first finds the largest value with eight independent running maxima, so it
    // is not one long compare-dependency chain and the compiler can vectorize it; `x > m ? x : m`
    // never takes a NaN. The second returns the first index that holds it, which gives ties to
    // the lowest id.
    constexpr size_t kLanes = 8;
    const size_t n = logits.size();
    float lane_max[kLanes];
    std::fill(std::begin(lane_max), std::end(lane_max), -kInf);
    size_t i = 0;
    for (; i + kLanes <= n; i += kLanes)
        for (size_t lane = 0; lane < kLanes; ++lane)
            lane_max[lane] = logits[i + lane] > lane_max[lane] ? logits[i + lane] : lane_max[lane];
    float best = -kInf;
    for (float m : lane_max) best = m > best ? m : best;
    for (; i < n; ++i) best = logits[i] > best ? logits[i] : best;
    for (size_t j = 0; j < n; ++j)
        if (logits[j] == best) return static_cast<int32_t>(j);
    return 0;  // every value is NaN
}

int32_t Sampler::sample(std::span<const float> logits, std::span<const int32_t> history) {
    const size_t n = std::min(logits.size(), static_cast<size_t>(n_vocab_));
    if (n == 0) return -1;
    logits = logits.first(n);
    const std::span<const int32_t> window =
        has_penalties() ? penalty_window(history, options_.repeat_last_n) : std::span<const int32_t>{};

    if (options_.temperature <= 0.0f) return sample_greedy(logits, window);

    for (size_t i = 0; i < n; ++i) {
        // NaN would break the sorts' ordering; a NaN logit is treated as masked out.
        const float x = logits[i];
        candidates_[i] = {static_cast<int32_t>(i), std::isnan(x) ? -kInf : x, 0.0f};
    }
    CandidateList c{std::span<TokenData>(candidates_).first(n), false};
    if (!window.empty())
        apply_penalties(c, window, options_.repeat_penalty, options_.frequency_penalty,
                        options_.presence_penalty, std::span<int32_t>(counts_).first(n));
    return sample_list(c);
}

int32_t Sampler::sample_list(CandidateList& c) {
    apply_top_k(c, options_.top_k);
    apply_typical(c, options_.typical_p);
    apply_top_p(c, options_.top_p);
    apply_min_p(c, options_.min_p);
    apply_temperature(c, options_.temperature);
    softmax(c);
    return draw(c, unit_double(rng_()));
}

bool Sampler::penalties_only_lower() const {
    return options_.repeat_penalty >= 1.0f && options_.frequency_penalty >= 0.0f && options_.presence_penalty >= 0.0f;
}

int32_t Sampler::top_candidates_needed(int64_t row_size, std::span<const int32_t> history) const {
    if (row_size <= 0 || row_size > n_vocab_) return 0;
    // apply_top_k with k >= the row keeps the whole row unsorted: no candidate list matches it.
    const int64_t base = options_.temperature <= 0.0f                          ? 1
                         : options_.top_k > 0 && options_.top_k < row_size ? options_.top_k
                                                                             : 0;
    if (base == 0) return 0;
    const size_t window = has_penalties() ? penalty_window(history, options_.repeat_last_n).size() : 0;
    if (window == 0) return (int32_t)base;
    // Penalties that only lower logits move each of the window's W distinct tokens down and no
    // other token: the best `base` after them are among the best base + W before them (any token
    // outside those has base + W ahead of it, at most W of which can fall behind it). The window's
    // length bounds W. A penalty that can raise a logit needs the whole row.
    if (!penalties_only_lower() || (int64_t)window >= row_size - base) return 0;
    return (int32_t)(base + (int64_t)window);
}

int32_t Sampler::sample_top(std::span<const int32_t> ids, std::span<const float> logits,
                            std::span<const int32_t> history) {
    const size_t n = std::min(ids.size(), logits.size());
    if (n == 0) return -1;
    const bool greedy = options_.temperature <= 0.0f;
    const std::span<const int32_t> window =
        has_penalties() ? penalty_window(history, options_.repeat_last_n) : std::span<const int32_t>{};
    // Without penalties the best candidate is argmax's pick: the highest logit, lowest id on ties.
    if (greedy && window.empty()) return ids[0];
    // Each candidate penalized as apply_penalties would penalize it in the whole row (the
    // window's counts in counts_, all zero between calls; empty without penalties).
    const size_t n_counts = counts_.size();
    auto in_vocab = [n_counts](int32_t id) { return id >= 0 && static_cast<size_t>(id) < n_counts; };
    for (int32_t id : window)
        if (in_vocab(id)) ++counts_[static_cast<size_t>(id)];
    auto candidate = [&](size_t i) {
        const float x = std::isnan(logits[i]) ? -kInf : logits[i];
        const int32_t count = in_vocab(ids[i]) ? counts_[static_cast<size_t>(ids[i])] : 0;
        return TokenData{ids[i],
                         count > 0 ? penalize_logit(x, count, options_.repeat_penalty, options_.frequency_penalty,
                                                    options_.presence_penalty)
                                   : x,
                         0.0f};
    };
    auto clear_counts = [&] {
        for (int32_t id : window)
            if (in_vocab(id)) counts_[static_cast<size_t>(id)] = 0;
    };
    if (greedy) {  // argmax of the penalized row
        TokenData best = candidate(0);
        for (size_t i = 1; i < n; ++i)
            if (const TokenData t = candidate(i); by_logit_desc(t, best)) best = t;
        clear_counts();
        return best.id;
    }
    const size_t m = std::min(n, candidates_.size());
    for (size_t i = 0; i < m; ++i) candidates_[i] = candidate(i);
    clear_counts();
    // Sorted as apply_top_k leaves a full row: the penalties may have reordered the candidates.
    if (!window.empty()) std::sort(candidates_.begin(), candidates_.begin() + static_cast<ptrdiff_t>(m), by_logit_desc);
    CandidateList c{std::span<TokenData>(candidates_).first(m), true};
    return sample_list(c);
}

// Greedy skips the candidate list: top_k, top_p and min_p always keep the best token, and
// typical_p, which may drop it, is not applied, since greedy means "the most likely token".
// Penalties go into a copy of the logits, so argmax stays one fast pass.
int32_t Sampler::sample_greedy(std::span<const float> logits, std::span<const int32_t> window) {
    if (window.empty()) return argmax(logits);
    const size_t n = logits.size();
    std::copy(logits.begin(), logits.end(), greedy_logits_.begin());
    auto in_vocab = [n](int32_t id) { return id >= 0 && static_cast<size_t>(id) < n; };
    for (int32_t id : window)
        if (in_vocab(id)) ++counts_[static_cast<size_t>(id)];
    for (int32_t id : window) {
        if (!in_vocab(id)) continue;
        const size_t i = static_cast<size_t>(id);
        if (counts_[i] == 0) continue;  // already penalized
        greedy_logits_[i] = penalize_logit(logits[i], counts_[i], options_.repeat_penalty,
                                           options_.frequency_penalty, options_.presence_penalty);
        counts_[i] = 0;
    }
    return argmax(std::span<const float>(greedy_logits_).first(n));
}

}  // namespace hearth::runtime
