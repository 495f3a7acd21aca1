#include "runtime/generate.h"

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

Result<GenerateStats> generate(model::Session& session, const tok::Tokenizer& tok, const GenerateRequest& req,
                               const std::function<bool(std::string_view)>& on_text) {
    if (req.prompt.empty()) return error(StatusCode::invalid_argument, "the prompt is empty");
    const int64_t room = session.n_ctx() - session.n_past();
    if ((int64_t)req.prompt.size() >= room)
        return error(StatusCode::out_of_range,
                     strformat("the prompt is %zu tokens but only %lld of the context's %lld positions are free",
                               req.prompt.size(), (long long)room, (long long)session.n_ctx()));
    HEARTH_ASSIGN(Sampler sampler, Sampler::create(req.sampling, tok.n_vocab()));
    GenerateStats st;
    st.seed = sampler.seed();
    st.prompt_tokens = (int64_t)req.prompt.size();

    std::vector<int32_t> history(req.prompt);  // prompt + generated: the penalty window reads its tail
    std::vector<float> logits;
    const int64_t t0 = now_ns();
    HEARTH_TRY(session.eval(req.prompt, false, logits));
    st.prompt_ns = now_ns() - t0;

    Decoding decoding(tok, std::move(sampler), req);
    const int64_t t1 = now_ns();
    bool cancelled = false;
    auto emit = [&](const std::string& s) {
        if (!s.empty() && !on_text(s)) cancelled = true;
    };
    for (;;) {
        Decoding::Step step = decoding.next(logits, history);
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
    if (!cancelled) emit(decoding.finish());
    if (cancelled) st.done = DoneReason::cancelled;
    st.generate_ns = now_ns() - t1;
    return st;
}

}  // namespace hearth::runtime
