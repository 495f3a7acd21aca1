// Hyper-parameters of a loaded model, read from GGUF metadata ("{arch}.block_count", ...).
// Every dimension a model uses has its name here, so families share one vocabulary.
#pragma once

#include <cstdint>
#include <string>

#include "base/status.h"
#include "gguf/gguf.h"

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
    bool rope_neox = false;   // rotate halves (neox) instead of adjacent pairs
    float rope_freq_base = 10000.0f;
    float rope_freq_scale = 1.0f;
    int n_ctx_orig = 0;       // rope scaling: original context
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

// The keys every transformer family shares: sizes, heads, norms, rope base, context.
Status read_common_hparams(const ArchKeys& keys, Hparams& hp);

}  // namespace hearth::model
