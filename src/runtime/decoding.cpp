#include "runtime/decoding.h"

#include <algorithm>
#include <cmath>

namespace hearth::runtime {

Status check_logprobs(const GenerateRequest& req) {
    if (req.top_logprobs < 0 || req.top_logprobs > kMaxTopLogprobs)
        return error(StatusCode::invalid_argument,
                     strformat("top_logprobs must be between 0 and %d, got %d", kMaxTopLogprobs, req.top_logprobs));
    return {};
}

LogSoftmaxPick log_softmax_pick(std::span<const float> logits, int32_t id, int top) {
    LogSoftmaxPick r;
    top = std::clamp(top, 0, (int)std::min<size_t>(kMaxTopLogprobs, logits.size()));
    // One pass: a running max with the sum of exp(x - max) rescaled whenever the max grows, and
    // the `top` best (logit, id) kept sorted in r.top (logits in .second until the end). Ids
    // arrive ascending, so an equal logit never displaces an earlier (lower) id.
    float m = -INFINITY;
    double s = 0.0;
    int n = 0;
    for (size_t i = 0; i < logits.size(); ++i) {
        float x = logits[i];
        if (std::isnan(x)) x = -INFINITY;
        if (x > m) {
            s = s * std::exp((double)m - (double)x) + 1.0;
            m = x;
        } else if (x == m) {
            if (x > -INFINITY) s += 1.0;
        } else {
            s += std::exp(x - m);
        }
        if (n < top || (top > 0 && x > r.top[(size_t)top - 1].second)) {
            int j = n < top ? n++ : top - 1;
            for (; j > 0 && r.top[(size_t)j - 1].second < x; --j) r.top[(size_t)j] = r.top[(size_t)j - 1];
            r.top[(size_t)j] = {(int32_t)i, x};
        }
    }
    // Every logit -inf: no mass anywhere; report -inf for all rather than NaN.
    const double lse = m == -INFINITY ? 0.0 : (double)m + std::log(s);
    auto at = [&](float x) { return (float)((std::isnan(x) ? -INFINITY : (double)x) - lse); };
    r.logprob = at(logits[(size_t)id]);
    r.n_top = n;
    for (int j = 0; j < n; ++j) r.top[(size_t)j].second = at(r.top[(size_t)j].second);
    return r;
}

Decoding::Decoding(const tok::Tokenizer& tok, Sampler sampler, const GenerateRequest& req)
    : tok_(tok),
      sampler_(std::move(sampler)),
      decoder_(tok),
      stops_(req.stop),
      num_predict_(req.num_predict),
      ignore_eos_(req.ignore_eos),
      mask_(req.mask),
      logprobs_(req.logprobs),
      top_logprobs_(std::clamp(req.top_logprobs, 0, kMaxTopLogprobs)) {
    decoder_.preserve(req.preserve_tokens);
    if (logprobs_) {
        preserved_ = req.preserve_tokens;
        std::sort(preserved_.begin(), preserved_.end());
    }
}

// The bytes the decoder receives for `id`: its piece, control tokens rendered only when preserved.
std::string_view Decoding::piece_of(int32_t id) const {
    return tok_.token_to_piece(id, std::binary_search(preserved_.begin(), preserved_.end(), id));
}

TokenLogprob Decoding::make_entry(std::span<const float> logits, int32_t id) {
    // Only ids the tokenizer knows are candidates (a padded output row is longer), as in the sampler.
    logits = logits.first(std::min<size_t>(logits.size(), (size_t)tok_.n_vocab()));
    TokenLogprob e;
    e.token = id;
    e.text = std::string(piece_of(id));
    if (id < 0 || (size_t)id >= logits.size()) {
        e.logprob = -INFINITY;  // unreachable: the sampler picks inside the row
        return e;
    }
    const LogSoftmaxPick p = log_softmax_pick(logits, id, top_logprobs_);
    e.logprob = p.logprob;
    e.top.reserve((size_t)p.n_top);
    for (int j = 0; j < p.n_top; ++j) {
        TopLogprob t;
        t.token = p.top[(size_t)j].first;
        t.text = std::string(piece_of(t.token));
        t.logprob = p.top[(size_t)j].second;
        e.top.push_back(std::move(t));
    }
    return e;
}

void Decoding::mark_decoded(int64_t n_out_bytes) {
    n_decoded_bytes_ += n_out_bytes;
    // The decoder has put out every input byte except the ones it still holds.
    const int64_t n_done = n_raw_bytes_ - (int64_t)decoder_.pending_bytes();
    for (auto it = waiting_.rbegin(); it != waiting_.rend() && it->end < 0; ++it) {
        if (it->raw_end <= n_done) it->end = n_decoded_bytes_;
    }
}

void Decoding::release(size_t n_bytes, bool stopped, std::vector<TokenLogprob>& out) {
    n_emitted_bytes_ += (int64_t)n_bytes;
    size_t n = 0;
    if (stopped) {
        // Tokens with a byte in the emitted text are the text's; the others are the stop string's.
        while (n < waiting_.size() && waiting_[n].start < n_emitted_bytes_) ++n;
    } else {
        while (n < waiting_.size() && waiting_[n].end >= 0 && waiting_[n].end <= n_emitted_bytes_) ++n;
    }
    out.reserve(out.size() + n);
    for (size_t i = 0; i < n; ++i) out.push_back(std::move(waiting_[i].entry));
    waiting_.erase(waiting_.begin(), waiting_.begin() + (std::ptrdiff_t)n);
    if (stopped) waiting_.clear();
}

bool Decoding::ends_before_sampling(Step& s) const {
    if (num_predict_ == 0) {
        s.done = true;
        s.reason = DoneReason::length;
        return true;
    }
    if (mask_ && mask_->complete()) {
        s.done = true;
        return true;
    }
    return false;
}

int32_t Decoding::top_candidates_needed(int64_t row_size, std::span<const int32_t> history) const {
    if (mask_ || logprobs_) return 0;
    return sampler_.top_candidates_needed(row_size, history);
}

Decoding::Step Decoding::next_top(std::span<const int32_t> ids, std::span<const float> logits, int64_t row_size,
                                  std::span<const int32_t> history) {
    Step s;
    if (ends_before_sampling(s)) return s;
    const int32_t need = top_candidates_needed(row_size, history);
    if (need == 0 || std::min(ids.size(), logits.size()) < (size_t)need) {
        s.done = true;
        s.status = error(StatusCode::internal, strformat("sampling got %zu best candidates of a row, but needs %s",
                                                         std::min(ids.size(), logits.size()),
                                                         need == 0 ? "the whole row" : std::to_string(need).c_str()));
        return s;
    }
    take(sampler_.sample_top(ids, logits, history), {}, s);
    return s;
}

Decoding::Step Decoding::next(std::span<const float> logits, std::span<const int32_t> history) {
    Step s;
    if (ends_before_sampling(s)) return s;
    const std::span<const float> raw = logits;  // logprobs are of the model's own distribution
    if (mask_) {
        masked_.assign(logits.begin(), logits.end());
        mask_->apply(masked_);
        if (std::none_of(masked_.begin(), masked_.end(), [](float x) { return x > -INFINITY; })) {
            s.done = true;
            s.status = error(StatusCode::invalid_argument, "the logits mask allows no token");
            return s;
        }
        logits = masked_;
    }
    take(sampler_.sample(logits, history), raw, s);
    return s;
}

void Decoding::take(int32_t id, std::span<const float> raw, Step& s) {
    if (!ignore_eos_ && tok_.is_eog(id)) {
        s.done = true;
        return;
    }
    s.token = id;
    ++n_generated_;
    if (mask_) mask_->accept(id);
    std::string piece = decoder_.push(id);
    if (logprobs_) {
        Waiting w;
        w.entry = make_entry(raw, id);
        w.start = n_decoded_bytes_;
        n_raw_bytes_ += (int64_t)w.entry.text.size();
        w.raw_end = n_raw_bytes_;
        waiting_.push_back(std::move(w));
        mark_decoded((int64_t)piece.size());
    }
    StopResult r = stops_.push(piece);
    s.text = std::move(r.text);
    if (logprobs_) release(s.text.size(), r.stopped, s.logprobs);
    if (r.stopped) {
        s.done = true;
    } else if (num_predict_ > 0 && n_generated_ >= num_predict_) {
        s.done = true;
        s.reason = DoneReason::length;
    }
}

Decoding::Tail Decoding::finish() {
    Tail t;
    if (stops_.is_stopped()) return t;
    std::string rest = decoder_.flush();
    if (logprobs_) mark_decoded((int64_t)rest.size());
    StopResult r = stops_.push(rest);
    t.text = std::move(r.text);
    if (!r.stopped) t.text += stops_.flush();
    if (logprobs_) release(t.text.size(), r.stopped, t.logprobs);
    return t;
}

}  // namespace hearth::runtime
