#include "backend/cpu/matmul.h"

#include "backend/ref/matmul.h"

namespace hearth::backend {

void matmul_cpu(ThreadPool& pool, quant::QuantType type, const std::byte* w, size_t row_bytes,
                const float* x, float* y, int64_t n_in, int64_t n_out, int64_t n_tokens,
                std::vector<std::byte>& scratch) {
    const auto& tr = quant::traits(type);
    const size_t act_bytes = activation_row_bytes(type, n_in);
    if (scratch.size() < act_bytes * n_tokens) scratch.resize(act_bytes * n_tokens);
    std::byte* xq = scratch.data();  // [n_tokens][act_bytes] activations in vec_dot_type
    pool.parallel_for(n_tokens, 1, [&](int64_t b, int64_t e) {
        for (int64_t t = b; t < e; ++t) quantize_activation_row(type, x + t * n_in, xq + t * act_bytes, n_in);
    });
    // Each worker takes a band of weight rows and dots it with every token, so a weight row
    // is read from memory once per call.
    pool.parallel_for(n_out, 16, [&](int64_t b, int64_t e) {
        for (int64_t o = b; o < e; ++o) {
            const std::byte* wr = w + o * row_bytes;
            for (int64_t t = 0; t < n_tokens; ++t) y[t * n_out + o] = tr.vec_dot(wr, xq + t * act_bytes, n_in);
        }
    });
}

}  // namespace hearth::backend
