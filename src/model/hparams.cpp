#include "model/hparams.h"

#include <algorithm>
#include <cmath>
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

Status read_rope_hparams(const ArchKeys& k, Hparams& hp) {
    ops::RopeConfig& r = hp.rope;
    r.n_rot = hp.n_rot;
    HEARTH_TRY(k.get_or("rope.freq_base", r.freq_base, 10000.0f));
    if (!(r.freq_base > 0.0f)) return error(StatusCode::corrupt, k.key("rope.freq_base") + ": must be positive");
    float factor = 0.0f, attn_factor = 1.0f;
    HEARTH_TRY(k.get_or("rope.scaling.factor", factor, 0.0f));
    HEARTH_TRY(k.get_or("rope.scaling.attn_factor", attn_factor, 1.0f));
    HEARTH_TRY(k.get_or("rope.scaling.yarn_log_multiplier", hp.rope_yarn_log_mul, 0.0f));
    if (!(factor >= 0.0f && factor < 1e6f)) return error(StatusCode::corrupt, k.key("rope.scaling.factor") + ": out of range");
    int64_t orig = 0;
    HEARTH_TRY(k.get_or("rope.scaling.original_context_length", orig, hp.n_ctx_train));
    r.n_ctx_orig = (int)std::min<int64_t>(orig, std::numeric_limits<int32_t>::max());
    auto type = k.meta().get_string_or(k.key("rope.scaling.type"), "linear");
    if (!type.ok()) return type.status();
    const std::string& t = type.value();
    if (t != "none" && t != "linear" && t != "yarn" && t != "longrope" && t != "llama3")
        return error(StatusCode::unsupported, k.key("rope.scaling.type") + ": rope scaling type " + t + " is not supported");
    hp.rope_freq_scale_train = factor == 0.0f ? 1.0f : 1.0f / factor;
    r.freq_scale = t == "none" || t == "llama3" ? 1.0f : hp.rope_freq_scale_train;
    r.ext_factor = t == "yarn" ? 1.0f : 0.0f;
    r.attn_factor = 1.0f;
    if (r.ext_factor != 0.0f) {
        // llama.cpp: get_mscale(factor, mscale) / get_mscale(factor, mscale_all_dim) with a log
        // multiplier (1: the models that store one have mscale == mscale_all_dim), else
        // get_mscale(factor, 1); divided by the 1 + 0.1 ln(factor) the rope kernel applies.
        const float f = 1.0f / r.freq_scale;
        auto get_mscale = [](float s, float m) { return s <= 1.0f ? 1.0f : 0.1f * m * std::log(s) + 1.0f; };
        r.attn_factor = hp.rope_yarn_log_mul != 0.0f ? 1.0f : get_mscale(f, 1.0f);
        r.attn_factor *= 1.0f / (1.0f + 0.1f * std::log(f));
    }
    r.attn_factor *= attn_factor;
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
    HEARTH_TRY(read_rope_hparams(k, hp));
    HEARTH_TRY(k.get_or("expert_count", hp.n_expert, 0));
    HEARTH_TRY(k.get_or("expert_used_count", hp.n_expert_used, 0));
    HEARTH_TRY(k.get_or("expert_feed_forward_length", hp.n_ff_exp, hp.n_ff));
    HEARTH_TRY(k.get_or("expert_weights_norm", hp.expert_weights_norm, true));
    if (hp.n_expert > 0 && (hp.n_expert_used < 1 || hp.n_expert_used > hp.n_expert))
        return error(StatusCode::corrupt, strformat("%d of %d experts used per token", hp.n_expert_used, hp.n_expert));
    return {};
}

}  // namespace hearth::model
