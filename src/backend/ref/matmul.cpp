#include "backend/ref/matmul.h"

#include <vector>

#include "quant/q8_0.h"
#include "quant/q8_1.h"

namespace hearth::backend {

size_t activation_row_bytes(quant::QuantType type, int64_t n) {
    return quant::row_size(quant::traits(type).vec_dot_type, n);
}

void quantize_activation_row(quant::QuantType type, const float* x, std::byte* dst, int64_t n) {
    // Activations are rounded the way ggml's x86 CPU backend rounds them (scale by 127/amax,
    // ties to even) rather than by the reference weight quantizer (1/d, ties away), so that
    // our logits agree with llama.cpp's to float noise, not to 8-bit rounding noise.
    switch (quant::traits(type).vec_dot_type) {
        case quant::QuantType::q8_0:
            quant::quantize_row_q8_0_x86(x, reinterpret_cast<quant::BlockQ8_0*>(dst), n);
            return;
        case quant::QuantType::q8_1:
            quant::quantize_row_q8_1_x86(x, reinterpret_cast<quant::BlockQ8_1*>(dst), n);
            return;
        default:
            quant::traits(quant::traits(type).vec_dot_type).quantize_row(x, dst, n);
    }
}

void matmul_ref(quant::QuantType type, const std::byte* w, size_t row_bytes, const float* x,
                float* y, int64_t n_in, int64_t n_out, int64_t n_tokens) {
    const auto& tr = quant::traits(type);
    std::vector<std::byte> xq(activation_row_bytes(type, n_in));  // one activation row, vec_dot_type
    for (int64_t t = 0; t < n_tokens; ++t) {
        quantize_activation_row(type, x + t * n_in, xq.data(), n_in);
        for (int64_t o = 0; o < n_out; ++o) {
            y[t * n_out + o] = tr.vec_dot(w + o * row_bytes, xq.data(), n_in);
        }
    }
}

}  // namespace hearth::backend
