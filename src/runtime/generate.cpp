#include "runtime/generate.h"

#include "base/timer.h"
#include "runtime/stop.h"
#include "tokenizer/stream.h"

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

    tok::TokenStreamDecoder decoder(tok);
    StopMatcher stops(req.stop);
    const int64_t t1 = now_ns();
    bool cancelled = false;
    auto emit = [&](const std::string& s) {
        if (!s.empty() && !on_text(s)) cancelled = true;
    };
    for (;;) {
        if (req.num_predict >= 0 && st.generated_tokens >= req.num_predict) {
            st.done = DoneReason::length;
            break;
        }
        const int32_t id = sampler.sample(logits, history);
        if (!req.ignore_eos && tok.is_eog(id)) {
            st.done = DoneReason::stop;
            break;
        }
        st.tokens.push_back(id);
        history.push_back(id);
        ++st.generated_tokens;
        StopResult r = stops.push(decoder.push(id));
        emit(r.text);
        if (r.stopped) {
            st.done = DoneReason::stop;
            break;
        }
        if (cancelled) break;
        if (session.n_past() >= session.n_ctx()) {  // no position left for the sampled token
            st.done = DoneReason::length;
            break;
        }
        HEARTH_TRY(session.eval(std::span<const int32_t>(&id, 1), false, logits));
    }
    if (!stops.is_stopped()) {
        StopResult r = stops.push(decoder.flush());
        emit(r.text);
        if (!r.stopped) emit(stops.flush());
    }
    if (cancelled) st.done = DoneReason::cancelled;
    st.generate_ns = now_ns() - t1;
    return st;
}

}  // namespace hearth::runtime
