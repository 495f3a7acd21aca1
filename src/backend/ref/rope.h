// Rotary position embedding, in place, over x: [n_tokens][n_heads][head_dim] f32.
// The first n_rot dims of each head rotate; the rest pass through.
// norm mode rotates adjacent pairs (x[2i], x[2i+1]) (llama); neox mode rotates
// (x[i], x[i + n_rot/2]) (qwen, gpt-neox). Angles follow ggml: theta_i = pos * base^(-2i/n_rot)
// divided by freq_factors[i] when given, then linear scaling (freq_scale) and YaRN blending
// (ext_factor) with magnitude attn_factor.
#pragma once

#include <cstdint>

namespace hearth::backend {

struct RopeConfig {
    int n_rot = 0;
    bool neox = false;
    float freq_base = 10000.0f;
    float freq_scale = 1.0f;              // 1 / linear scaling factor
    const float* freq_factors = nullptr;  // [n_rot / 2] or null
    float ext_factor = 0.0f;              // YaRN extrapolation mix; 0 = off
    float attn_factor = 1.0f;             // multiplies cos and sin
    float beta_fast = 32.0f, beta_slow = 1.0f;
    int n_ctx_orig = 0;                   // YaRN original context length
};

void rope_ref(float* x, const int32_t* positions, int64_t n_tokens, int n_heads, int head_dim,
              const RopeConfig& cfg);

// cos/sin of every rotated pair at one position: cache [n_rot] as (cos, sin) pairs.
void rope_cache(int32_t pos, const RopeConfig& cfg, float* cache);

}  // namespace hearth::backend
