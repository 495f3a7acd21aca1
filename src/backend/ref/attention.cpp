#include "backend/ref/attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace hearth::backend {

void attention_head_ref(const float* q_head, const PagedKvView& kv, const int32_t* block_table,
                        int32_t pos, int32_t kv_end, int head, const AttentionParams& p,
                        float* scores, float* out_head) {
    const int kv_head = head / (p.n_head / p.n_head_kv);
    const int64_t k_stride = (int64_t)p.n_head_kv * p.head_dim_k;  // floats per cached position
    const int64_t v_stride = (int64_t)p.n_head_kv * p.head_dim_v;
    const int32_t lo = p.sliding_window > 0 ? std::max(0, pos - p.sliding_window + 1) : 0;
    auto slot = [&](int32_t j) {
        return (int64_t)block_table[j / kv.block_size] * kv.block_size + j % kv.block_size;
    };
    float max_s = -std::numeric_limits<float>::infinity();
    for (int32_t j = lo; j < kv_end; ++j) {
        const float* k = kv.k + slot(j) * k_stride + (int64_t)kv_head * p.head_dim_k;
        float s = 0.0f;
        for (int d = 0; d < p.head_dim_k; ++d) s += q_head[d] * k[d];
        s *= p.scale;
        if (p.softcap > 0.0f) s = p.softcap * std::tanh(s / p.softcap);
        scores[j - lo] = s;
        max_s = std::max(max_s, s);
    }
    const float sink = p.sinks ? p.sinks[head] : -std::numeric_limits<float>::infinity();
    max_s = std::max(max_s, sink);
    double sum = p.sinks ? std::exp((double)(sink - max_s)) : 0.0;
    for (int32_t j = lo; j < kv_end; ++j) {
        const float e = std::exp(scores[j - lo] - max_s);
        scores[j - lo] = e;
        sum += e;
    }
    const float inv = sum > 0.0 ? (float)(1.0 / sum) : 0.0f;
    std::fill(out_head, out_head + p.head_dim_v, 0.0f);
    for (int32_t j = lo; j < kv_end; ++j) {
        const float* v = kv.v + slot(j) * v_stride + (int64_t)kv_head * p.head_dim_v;
        const float w = scores[j - lo] * inv;
        for (int d = 0; d < p.head_dim_v; ++d) out_head[d] += w * v[d];
    }
}

void attention_ref(const float* q, const PagedKvView& kv, const int32_t* const* block_tables,
                   const int32_t* positions, const int32_t* kv_end, int64_t n_tokens,
                   const AttentionParams& p, float* out) {
    int32_t max_end = 0;
    for (int64_t t = 0; t < n_tokens; ++t) max_end = std::max(max_end, kv_end[t]);
    std::vector<float> scores(std::max<int32_t>(max_end, 1));  // [visible positions] scratch
    for (int64_t t = 0; t < n_tokens; ++t) {
        for (int h = 0; h < p.n_head; ++h) {
            attention_head_ref(q + (t * p.n_head + h) * p.head_dim_k, kv, block_tables[t], positions[t],
                               kv_end[t], h, p, scores.data(), out + (t * p.n_head + h) * p.head_dim_v);
        }
    }
}

}  // namespace hearth::backend
