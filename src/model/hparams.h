// Hyper-parameters of a loaded model, read from GGUF metadata ("{arch}.block_count", ...).
// Every dimension a model uses has its name here, so families share one vocabulary.
#pragma once

#include <cstdint>
#include <string>

#include "base/status.h"
#include "gguf/gguf.h"
#include "ops/ops.h"

namespace hearth::model {

enum class Pooling { none = 0, mean = 1, cls = 2, last = 3 };

struct Hparams {
    std::string arch;
    int64_t n_vocab = 0;
    int64_t n_embd = 0;
    int n_layer = 0;
    int n_head = 0;
    int n_head_kv = 0;
    int head_dim_k = 0;       // per-head query/key size
    int head_dim_v = 0;       // per-head value size
    int64_t n_ff = 0;         // dense FFN width
    int64_t n_ctx_train = 0;  // context length the model was trained for
    int n_expert = 0;         // 0: dense
    int n_expert_used = 0;
    int64_t n_ff_exp = 0;     // per-expert FFN width
    bool expert_weights_norm = true;  // renormalize the selected experts' weights to sum 1
    float norm_eps = 1e-5f;
    // RoPE
    int n_rot = 0;            // rotated dims per head
    // Ready-made RoPE of the trained context, derived as llama.cpp derives its context
    // parameters (see read_rope_hparams): n_rot, freq_base, freq_scale, ext_factor,
    // attn_factor, n_ctx_orig. Families set only neox, freq_factors and per-layer bases.
    ops::RopeConfig rope;
    float rope_freq_scale_train = 1.0f;  // 1 / rope.scaling.factor, even for type "none"
    float rope_yarn_log_mul = 0.0f;      // rope.scaling.yarn_log_multiplier as stored (0.1 * mscale_all_dim)
    // Encoders
    bool causal = true;
    Pooling pooling = Pooling::none;
    int n_token_types = 0;
};

// Reads "{arch}.{suffix}" keys with typed errors naming the key.
class ArchKeys {
public:
    ArchKeys(const gguf::Metadata& meta, std::string arch) : meta_(meta), arch_(std::move(arch)) {}
    std::string key(const char* suffix) const { return arch_ + "." + suffix; }
    Status get(const char* suffix, int& out) const;
    Status get(const char* suffix, int64_t& out) const;
    Status get(const char* suffix, float& out) const;
    Status get_or(const char* suffix, int& out, int def) const;
    Status get_or(const char* suffix, int64_t& out, int64_t def) const;
    Status get_or(const char* suffix, float& out, float def) const;
    Status get_or(const char* suffix, bool& out, bool def) const;
    bool has(const char* suffix) const { return meta_.has(key(suffix)); }
    const gguf::Metadata& meta() const { return meta_; }

private:
    const gguf::Metadata& meta_;
    std::string arch_;
};

// The keys every transformer family shares: sizes, heads, norms, rope (read_rope_hparams),
// context, experts.
Status read_common_hparams(const ArchKeys& keys, Hparams& hp);

// RoPE base and scaling into hp.rope; needs hp.n_rot and hp.n_ctx_train. rope.scaling.type
// none / linear / yarn / longrope (longrope scales like linear, its per-dim factors are
// tensors) / llama3 (the scaling lives in rope_freqs.weight); absent with a factor: linear.
// YaRN: ext_factor 1 and attn_factor = mscale / (1 + 0.1 ln factor), the rope kernel
// multiplying the latter back; rope.scaling.attn_factor multiplies in. yarn_beta_fast/slow
// are ignored (llama.cpp uses 32 / 1). Other types are unsupported errors naming the type.
Status read_rope_hparams(const ArchKeys& keys, Hparams& hp);

}  // namespace hearth::model
