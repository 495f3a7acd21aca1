// Every GGUF tensor type: on-disk id (bit-exact with GGUF), block geometry and, for the types
// hearth computes with, the reference kernels. The block structs live one per header
// (quant/q4_0.h, quant/q4_k.h, ...); this table ties them together.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace hearth::quant {

// Values are GGUF's `ggml_type` ids. Names match GGUF's type names, lower case.
enum class QuantType : uint32_t {
    f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3, q5_0 = 6, q5_1 = 7, q8_0 = 8, q8_1 = 9,
    q2_k = 10, q3_k = 11, q4_k = 12, q5_k = 13, q6_k = 14, q8_k = 15,
    iq2_xxs = 16, iq2_xs = 17, iq3_xxs = 18, iq1_s = 19, iq4_nl = 20, iq3_s = 21, iq2_s = 22,
    iq4_xs = 23, i8 = 24, i16 = 25, i32 = 26, i64 = 27, f64 = 28, iq1_m = 29, bf16 = 30,
    tq1_0 = 34, tq2_0 = 35, mxfp4 = 39,
};

// Reference kernels of one type. Row length n is a multiple of block_size.
using DequantizeRowFn = void (*)(const void* src, float* dst, int64_t n);
using QuantizeRowFn = void (*)(const float* src, void* dst, int64_t n);
// Dot product of one row of this type (x) with one row of its vec_dot_type (y), n elements.
using VecDotFn = float (*)(const void* x, const void* y, int64_t n);

struct TypeTraits {
    const char* name;          // "q4_k", as GGUF names it (upper-cased in user messages)
    int64_t block_size;        // elements per block
    size_t type_size;          // bytes per block
    bool is_known;             // a GGUF id we know the geometry of
    DequantizeRowFn dequantize_row;  // null: we cannot read this type
    QuantizeRowFn quantize_row;      // null: no reference quantizer
    QuantType vec_dot_type;          // activation type the dot product takes
    VecDotFn vec_dot;                // null: no dot product
};

// Traits of a type id read from a file. Unknown ids return nullptr.
const TypeTraits* find_traits(uint32_t type_id);
const TypeTraits& traits(QuantType t);

inline int64_t block_size(QuantType t) { return traits(t).block_size; }
inline size_t type_size(QuantType t) { return traits(t).type_size; }
// Bytes of a row of n elements; n must be a multiple of block_size.
inline size_t row_size(QuantType t, int64_t n) {
    return (size_t)(n / block_size(t)) * type_size(t);
}
const char* type_name(QuantType t);
// Parses "Q4_K", "q4_k", "F16", ... (case-insensitive).
std::optional<QuantType> parse_type_name(std::string_view name);
// True when every reference kernel needed to run a model with weights of this type exists.
bool can_compute(QuantType t);

}  // namespace hearth::quant
