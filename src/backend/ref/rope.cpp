#include "backend/ref/rope.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace hearth::backend {
namespace {

float yarn_corr_dim(int n_rot, int n_ctx_orig, float n_rotations, float base) {
    return n_rot * std::log(n_ctx_orig / (n_rotations * 2.0f * (float)M_PI)) / (2.0f * std::log(base));
}

float yarn_ramp(float low, float high, int i0) {
    const float y = (i0 / 2 - low) / std::max(0.001f, high - low);
    return 1.0f - std::min(1.0f, std::max(0.0f, y));
}

}  // namespace

void rope_cache(int32_t pos, const RopeConfig& cfg, float* cache) {
    const float theta_scale = std::pow(cfg.freq_base, -2.0f / cfg.n_rot);
    float corr_lo = 0.0f, corr_hi = 0.0f;
    float mscale = cfg.attn_factor;
    if (cfg.ext_factor != 0.0f) {
        corr_lo = std::max(0.0f, std::floor(yarn_corr_dim(cfg.n_rot, cfg.n_ctx_orig, cfg.beta_fast, cfg.freq_base)));
        corr_hi = std::min((float)(cfg.n_rot - 1),
                           std::ceil(yarn_corr_dim(cfg.n_rot, cfg.n_ctx_orig, cfg.beta_slow, cfg.freq_base)));
        mscale *= 1.0f + 0.1f * std::log(1.0f / cfg.freq_scale);
    }
    // theta is advanced by repeated multiplication, as ggml does, so angles round the same way.
    float theta_extrap = (float)pos;
    for (int i0 = 0; i0 < cfg.n_rot; i0 += 2) {
        const float ff = cfg.freq_factors ? cfg.freq_factors[i0 / 2] : 1.0f;
        const float te = theta_extrap / ff;
        const float theta_interp = cfg.freq_scale * te;
        float theta = theta_interp;
        if (cfg.ext_factor != 0.0f) {
            const float mix = yarn_ramp(corr_lo, corr_hi, i0) * cfg.ext_factor;
            theta = theta_interp * (1 - mix) + te * mix;
        }
        cache[i0] = std::cos(theta) * mscale;
        cache[i0 + 1] = std::sin(theta) * mscale;
        theta_extrap *= theta_scale;
    }
}

void rope_ref(float* x, const int32_t* positions, int64_t n_tokens, int n_heads, int head_dim,
              const RopeConfig& cfg) {
    std::vector<float> cache(cfg.n_rot);  // (cos, sin) per rotated pair at this token's position
    for (int64_t t = 0; t < n_tokens; ++t) {
        rope_cache(positions[t], cfg, cache.data());
        for (int h = 0; h < n_heads; ++h) {
            float* v = x + (t * n_heads + h) * head_dim;
            for (int i0 = 0; i0 < cfg.n_rot; i0 += 2) {
                const float c = cache[i0], s = cache[i0 + 1];
                const int a = cfg.neox ? i0 / 2 : i0;
                const int b = cfg.neox ? i0 / 2 + cfg.n_rot / 2 : i0 + 1;
                const float x0 = v[a], x1 = v[b];
                v[a] = x0 * c - x1 * s;
                v[b] = x0 * s + x1 * c;
            }
        }
    }
}

}  // namespace hearth::backend
