#include "runtime/decoding.h"

#include <algorithm>
#include <cmath>

namespace hearth::runtime {

Decoding::Decoding(const tok::Tokenizer& tok, Sampler sampler, const GenerateRequest& req)
    : tok_(tok),
      sampler_(std::move(sampler)),
      decoder_(tok),
      stops_(req.stop),
      num_predict_(req.num_predict),
      ignore_eos_(req.ignore_eos),
      mask_(req.mask) {
    decoder_.preserve(req.preserve_tokens);
}

Decoding::Step Decoding::next(std::span<const float> logits, std::span<const int32_t> history) {
    Step s;
    if (num_predict_ == 0) {
        s.done = true;
        s.reason = DoneReason::length;
        return s;
    }
    if (mask_ && mask_->complete()) {
        s.done = true;
        return s;
    }
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
    const int32_t id = sampler_.sample(logits, history);
    if (!ignore_eos_ && tok_.is_eog(id)) {
        s.done = true;
        return s;
    }
    s.token = id;
    ++n_generated_;
    if (mask_) mask_->accept(id);
    StopResult r = stops_.push(decoder_.push(id));
    s.text = std::move(r.text);
    if (r.stopped) {
        s.done = true;
    } else if (num_predict_ > 0 && n_generated_ >= num_predict_) {
        s.done = true;
        s.reason = DoneReason::length;
    }
    return s;
}

std::string Decoding::finish() {
    if (stops_.is_stopped()) return {};
    StopResult r = stops_.push(decoder_.flush());
    std::string tail = std::move(r.text);
    if (!r.stopped) tail += stops_.flush();
    return tail;
}

}  // namespace hearth::runtime
