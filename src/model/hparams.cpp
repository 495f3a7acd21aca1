#include "model/hparams.h"

#include <limits>

namespace hearth::model {

static Status check_range(const std::string& key, int64_t v, int64_t lo, int64_t hi) {
    if (v < lo || v > hi)
        return error(StatusCode::corrupt, strformat("metadata key %s: value %lld outside [%lld, %lld]", key.c_str(),
                                                    (long long)v, (long long)lo, (long long)hi));
    return {};
}

Status ArchKeys::get(const char* suffix, int64_t& out) const {
    auto r = meta_.get_int(key(suffix));
    if (!r.ok()) return r.status();
    HEARTH_TRY(check_range(key(suffix), r.value(), 0, int64_t(1) << 40));
    out = r.value();
    return {};
}

Status ArchKeys::get(const char* suffix, int& out) const {
    int64_t v;
    HEARTH_TRY(get(suffix, v));
    HEARTH_TRY(check_range(key(suffix), v, 0, std::numeric_limits<int32_t>::max()));
    out = (int)v;
    return {};
}

Status ArchKeys::get(const char* suffix, float& out) const {
    auto r = meta_.get_float(key(suffix));
    if (!r.ok()) return r.status();
    out = (float)r.value();
    return {};
}

Status ArchKeys::get_or(const char* suffix, int& out, int def) const {
    if (!has(suffix)) { out = def; return {}; }
    return get(suffix, out);
}
Status ArchKeys::get_or(const char* suffix, int64_t& out, int64_t def) const {
    if (!has(suffix)) { out = def; return {}; }
    return get(suffix, out);
}
Status ArchKeys::get_or(const char* suffix, float& out, float def) const {
    if (!has(suffix)) { out = def; return {}; }
    return get(suffix, out);
}
Status ArchKeys::get_or(const char* suffix, bool& out, bool def) const {
    auto r = meta_.get_bool_or(key(suffix), def);
    if (!r.ok()) return r.status();
    out = r.value();
    return {};
}

Status read_common_hparams(const ArchKeys& k, Hparams& hp) {
    HEARTH_TRY(k.get("embedding_length", hp.n_embd));
    HEARTH_TRY(k.get("block_count", hp.n_layer));
    HEARTH_TRY(k.get("attention.head_count", hp.n_head));
    HEARTH_TRY(k.get_or("attention.head_count_kv", hp.n_head_kv, hp.n_head));
    HEARTH_TRY(k.get_or("feed_forward_length", hp.n_ff, 0));
    HEARTH_TRY(k.get_or("context_length", hp.n_ctx_train, 2048));
    if (hp.n_layer < 1 || hp.n_layer > 4096) return error(StatusCode::corrupt, k.key("block_count") + ": out of range");
    if (hp.n_head < 1 || hp.n_head_kv < 1 || hp.n_head % hp.n_head_kv != 0)
        return error(StatusCode::corrupt, strformat("%d attention heads cannot be shared by %d kv heads", hp.n_head,
                                                    hp.n_head_kv));
    const int default_hd = (int)(hp.n_embd / hp.n_head);
    HEARTH_TRY(k.get_or("attention.key_length", hp.head_dim_k, default_hd));
    HEARTH_TRY(k.get_or("attention.value_length", hp.head_dim_v, hp.head_dim_k));
    if (hp.head_dim_k < 1 || hp.head_dim_v < 1) return error(StatusCode::corrupt, "head size is zero");
    HEARTH_TRY(k.get_or("rope.dimension_count", hp.n_rot, hp.head_dim_k));
    if (hp.n_rot > hp.head_dim_k || hp.n_rot % 2) return error(StatusCode::corrupt, k.key("rope.dimension_count") + ": invalid");
    HEARTH_TRY(k.get_or("rope.freq_base", hp.rope_freq_base, 10000.0f));
    float scale_factor = 1.0f;
    HEARTH_TRY(k.get_or("rope.scaling.factor", scale_factor, 1.0f));
    auto scaling_type = k.meta().get_string_or(k.key("rope.scaling.type"), "");
    if (!scaling_type.ok()) return scaling_type.status();
    if (scaling_type.value() == "linear" && scale_factor > 0.0f) hp.rope_freq_scale = 1.0f / scale_factor;
    else if (!scaling_type.value().empty() && scaling_type.value() != "none" && scaling_type.value() != "linear" &&
             scaling_type.value() != "llama3")
        return error(StatusCode::unsupported, "rope scaling type " + scaling_type.value() + " is not supported yet");
    int64_t orig = 0;
    HEARTH_TRY(k.get_or("rope.scaling.original_context_length", orig, hp.n_ctx_train));
    hp.n_ctx_orig = (int)orig;
    HEARTH_TRY(k.get_or("expert_count", hp.n_expert, 0));
    HEARTH_TRY(k.get_or("expert_used_count", hp.n_expert_used, 0));
    HEARTH_TRY(k.get_or("expert_feed_forward_length", hp.n_ff_exp, hp.n_ff));
    HEARTH_TRY(k.get_or("expert_weights_norm", hp.expert_weights_norm, true));
    if (hp.n_expert > 0 && (hp.n_expert_used < 1 || hp.n_expert_used > hp.n_expert))
        return error(StatusCode::corrupt, strformat("%d of %d experts used per token", hp.n_expert_used, hp.n_expert));
    return {};
}

}  // namespace hearth::model
