#include "runtime/generate.h"

#include <algorithm>

#include "base/timer.h"
#include "runtime/decoding.h"

namespace hearth::runtime {

const char* done_reason_name(DoneReason r) {
    switch (r) {
        case DoneReason::stop: return "stop";
        case DoneReason::length: return "length";
        case DoneReason::cancelled: return "cancelled";
    }
    return "stop";
}

Result<int64_t> fit_prompt(std::vector<int32_t>& prompt, int64_t room, const GenerateRequest& req) {
    const int64_t n = (int64_t)prompt.size();
    if (n < room) return 0;
    if (!req.truncate)
        return error(StatusCode::out_of_range,
                     strformat("the prompt is %lld tokens but the context has %lld free positions, one of them needed "
                               "for generation (ask for truncation, or a larger num_ctx)",
                               (long long)n, (long long)room));
    if (room < 2)
        return error(StatusCode::out_of_range,
                     strformat("the context has %lld free positions: too few to truncate a prompt into", (long long)room));
    const int64_t gen = req.num_predict > 0 ? std::min(req.num_predict, room / 2) : room / 4;
    const int64_t target = std::max<int64_t>(1, room - std::max<int64_t>(1, gen));
    const int64_t keep = std::clamp<int64_t>(req.keep, 0, target / 2);  // at least half the kept prompt is its tail
    const int64_t drop = n - target;
    prompt.erase(prompt.begin() + keep, prompt.begin() + keep + drop);
    return drop;
}

Result<GenerateStats> generate(model::Session& session, const tok::Tokenizer& tok, const GenerateRequest& req,
                               const std::function<bool(std::string_view)>& on_text) {
    if (req.prompt.empty()) return error(StatusCode::invalid_argument, "the prompt is empty");
    HEARTH_TRY(check_logprobs(req));
    std::vector<int32_t> history(req.prompt);  // prompt + generated: the penalty window reads its tail
    HEARTH_ASSIGN(const int64_t truncated, fit_prompt(history, session.n_ctx() - session.n_past(), req));
    HEARTH_ASSIGN(Sampler sampler, Sampler::create(req.sampling, tok.n_vocab()));
    GenerateStats st;
    st.seed = sampler.seed();
    st.prompt_tokens = (int64_t)history.size();
    st.truncated_tokens = truncated;

    std::vector<float> logits;
    const int64_t t0 = now_ns();
    HEARTH_TRY(session.eval(history, false, logits));
    st.prompt_ns = now_ns() - t0;

    Decoding decoding(tok, std::move(sampler), req);
    const int64_t t1 = now_ns();
    bool cancelled = false;
    auto emit = [&](const std::string& s) {
        if (!s.empty() && !on_text(s)) cancelled = true;
    };
    for (;;) {
        Decoding::Step step = decoding.next(logits, history);
        HEARTH_TRY(step.status);
        if (step.token >= 0) {
            st.tokens.push_back(step.token);
            history.push_back(step.token);
            ++st.generated_tokens;
        }
        emit(step.text);
        if (step.done) {
            st.done = step.reason;
            break;
        }
        if (cancelled) break;
        if (session.n_past() >= session.n_ctx()) {  // no position left for the sampled token
            st.done = DoneReason::length;
            break;
        }
        HEARTH_TRY(session.eval(std::span<const int32_t>(&step.token, 1), false, logits));
    }
    if (!cancelled) emit(decoding.finish().text);  // on_text takes no logprobs: `hearth run` shows none
    if (cancelled) st.done = DoneReason::cancelled;
    st.generate_ns = now_ns() - t1;
    return st;
}

}  // namespace hearth::runtime
