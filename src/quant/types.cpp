#include "quant/types.h"

#include <array>
#include <cctype>

#include "quant/float.h"
#include "quant/iq4_nl.h"
#include "quant/iq4_xs.h"
#include "quant/mxfp4.h"
#include "quant/q2_k.h"
#include "quant/q3_k.h"
#include "quant/q4_0.h"
#include "quant/q4_1.h"
#include "quant/q4_k.h"
#include "quant/q5_0.h"
#include "quant/q5_1.h"
#include "quant/q5_k.h"
#include "quant/q6_k.h"
#include "quant/q8_0.h"
#include "quant/q8_1.h"
#include "quant/q8_k.h"

namespace hearth::quant {

namespace {

// Adapters from the typed per-format kernels to the type-erased table signatures.
template <class X, void (*F)(const X*, float*, int64_t)>
void dequantize_as(const void* src, float* dst, int64_t n) {
    F(static_cast<const X*>(src), dst, n);
}

template <class Y, void (*F)(const float*, Y*, int64_t)>
void quantize_as(const float* src, void* dst, int64_t n) {
    F(src, static_cast<Y*>(dst), n);
}

template <class X, class Y, float (*F)(const X*, const Y*, int64_t)>
float vec_dot_as(const void* x, const void* y, int64_t n) {
    return F(static_cast<const X*>(x), static_cast<const Y*>(y), n);
}

// One past the largest GGUF type id in QuantType.
constexpr uint32_t kTypeIdCount = 40;

// A known GGUF type without kernels: geometry only.
constexpr TypeTraits geometry_only(const char* name, int64_t block_size, size_t type_size,
                                   QuantType self) {
    return {name, block_size, type_size, true, nullptr, nullptr, self, nullptr};
}

template <class Block, void (*Deq)(const Block*, float*, int64_t),
          void (*Quant)(const float*, Block*, int64_t)>
constexpr TypeTraits block_type(const char* name, QuantType vec_dot_type, VecDotFn vec_dot) {
    return {name,
            Block::kBlockSize,
            sizeof(Block),
            true,
            &dequantize_as<Block, Deq>,
            &quantize_as<Block, Quant>,
            vec_dot_type,
            vec_dot};
}

constexpr std::array<TypeTraits, kTypeIdCount> make_table() {
    std::array<TypeTraits, kTypeIdCount> t{};
    for (auto& e : t) e = {"unknown", 0, 0, false, nullptr, nullptr, QuantType::f32, nullptr};

    auto set = [&t](QuantType id, TypeTraits traits) { t[(uint32_t)id] = traits; };
    using Q = QuantType;

    set(Q::f32, {"f32", 1, 4, true, &dequantize_as<float, dequantize_row_f32>,
                 &quantize_as<float, quantize_row_f32>, Q::f32,
                 &vec_dot_as<float, float, vec_dot_f32>});
    set(Q::f16, {"f16", 1, 2, true, &dequantize_as<uint16_t, dequantize_row_f16>,
                 &quantize_as<uint16_t, quantize_row_f16>, Q::f16,
                 &vec_dot_as<uint16_t, uint16_t, vec_dot_f16>});
    set(Q::bf16, {"bf16", 1, 2, true, &dequantize_as<uint16_t, dequantize_row_bf16>,
                  &quantize_as<uint16_t, quantize_row_bf16>, Q::bf16,
                  &vec_dot_as<uint16_t, uint16_t, vec_dot_bf16>});

    set(Q::q4_0, block_type<BlockQ4_0, dequantize_row_q4_0, quantize_row_q4_0>(
                     "q4_0", Q::q8_0, &vec_dot_as<BlockQ4_0, BlockQ8_0, vec_dot_q4_0>));
    set(Q::q4_1, block_type<BlockQ4_1, dequantize_row_q4_1, quantize_row_q4_1>(
                     "q4_1", Q::q8_1, &vec_dot_as<BlockQ4_1, BlockQ8_1, vec_dot_q4_1>));
    set(Q::q5_0, block_type<BlockQ5_0, dequantize_row_q5_0, quantize_row_q5_0>(
                     "q5_0", Q::q8_0, &vec_dot_as<BlockQ5_0, BlockQ8_0, vec_dot_q5_0>));
    set(Q::q5_1, block_type<BlockQ5_1, dequantize_row_q5_1, quantize_row_q5_1>(
                     "q5_1", Q::q8_1, &vec_dot_as<BlockQ5_1, BlockQ8_1, vec_dot_q5_1>));
    set(Q::q8_0, block_type<BlockQ8_0, dequantize_row_q8_0, quantize_row_q8_0>(
                     "q8_0", Q::q8_0, &vec_dot_as<BlockQ8_0, BlockQ8_0, vec_dot_q8_0>));
    // Activation type only: no weight kernel uses Q8_1 as its x side.
    set(Q::q8_1, block_type<BlockQ8_1, dequantize_row_q8_1, quantize_row_q8_1>(
                     "q8_1", Q::q8_1, nullptr));
    set(Q::q2_k, block_type<BlockQ2_K, dequantize_row_q2_k, quantize_row_q2_k>(
                     "q2_k", Q::q8_k, &vec_dot_as<BlockQ2_K, BlockQ8_K, vec_dot_q2_k>));
    set(Q::q3_k, block_type<BlockQ3_K, dequantize_row_q3_k, quantize_row_q3_k>(
                     "q3_k", Q::q8_k, &vec_dot_as<BlockQ3_K, BlockQ8_K, vec_dot_q3_k>));
    set(Q::q4_k, block_type<BlockQ4_K, dequantize_row_q4_k, quantize_row_q4_k>(
                     "q4_k", Q::q8_k, &vec_dot_as<BlockQ4_K, BlockQ8_K, vec_dot_q4_k>));
    set(Q::q5_k, block_type<BlockQ5_K, dequantize_row_q5_k, quantize_row_q5_k>(
                     "q5_k", Q::q8_k, &vec_dot_as<BlockQ5_K, BlockQ8_K, vec_dot_q5_k>));
    set(Q::q6_k, block_type<BlockQ6_K, dequantize_row_q6_k, quantize_row_q6_k>(
                     "q6_k", Q::q8_k, &vec_dot_as<BlockQ6_K, BlockQ8_K, vec_dot_q6_k>));
    set(Q::q8_k, block_type<BlockQ8_K, dequantize_row_q8_k, quantize_row_q8_k>(
                     "q8_k", Q::q8_k, &vec_dot_as<BlockQ8_K, BlockQ8_K, vec_dot_q8_k>));
    set(Q::iq4_nl, block_type<BlockIQ4_NL, dequantize_row_iq4_nl, quantize_row_iq4_nl>(
                       "iq4_nl", Q::q8_0, &vec_dot_as<BlockIQ4_NL, BlockQ8_0, vec_dot_iq4_nl>));
    set(Q::iq4_xs, block_type<BlockIQ4_XS, dequantize_row_iq4_xs, quantize_row_iq4_xs>(
                       "iq4_xs", Q::q8_k, &vec_dot_as<BlockIQ4_XS, BlockQ8_K, vec_dot_iq4_xs>));
    set(Q::mxfp4, block_type<BlockMXFP4, dequantize_row_mxfp4, quantize_row_mxfp4>(
                      "mxfp4", Q::q8_0, &vec_dot_as<BlockMXFP4, BlockQ8_0, vec_dot_mxfp4>));

    // Known layouts we do not compute with (sizes from GGUF's block structs).
    set(Q::iq2_xxs, geometry_only("iq2_xxs", 256, 66, Q::iq2_xxs));
    set(Q::iq2_xs, geometry_only("iq2_xs", 256, 74, Q::iq2_xs));
    set(Q::iq3_xxs, geometry_only("iq3_xxs", 256, 98, Q::iq3_xxs));
    set(Q::iq1_s, geometry_only("iq1_s", 256, 50, Q::iq1_s));
    set(Q::iq3_s, geometry_only("iq3_s", 256, 110, Q::iq3_s));
    set(Q::iq2_s, geometry_only("iq2_s", 256, 82, Q::iq2_s));
    set(Q::iq1_m, geometry_only("iq1_m", 256, 56, Q::iq1_m));
    set(Q::tq1_0, geometry_only("tq1_0", 256, 54, Q::tq1_0));
    set(Q::tq2_0, geometry_only("tq2_0", 256, 66, Q::tq2_0));
    set(Q::i8, geometry_only("i8", 1, 1, Q::i8));
    set(Q::i16, geometry_only("i16", 1, 2, Q::i16));
    set(Q::i32, geometry_only("i32", 1, 4, Q::i32));
    set(Q::i64, geometry_only("i64", 1, 8, Q::i64));
    set(Q::f64, geometry_only("f64", 1, 8, Q::f64));
    return t;
}

// Immutable after constant initialization.
constexpr std::array<TypeTraits, kTypeIdCount> kTraits = make_table();

bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i) {
        if (std::tolower((unsigned char)a[i]) != std::tolower((unsigned char)b[i])) return false;
    }
    return true;
}

}  // namespace

const TypeTraits* find_traits(uint32_t type_id) {
    if (type_id >= kTypeIdCount || !kTraits[type_id].is_known) return nullptr;
    return &kTraits[type_id];
}

const TypeTraits& traits(QuantType t) { return kTraits[(uint32_t)t]; }

const char* type_name(QuantType t) { return traits(t).name; }

std::optional<QuantType> parse_type_name(std::string_view name) {
    for (uint32_t id = 0; id < kTypeIdCount; ++id) {
        if (kTraits[id].is_known && iequals(name, kTraits[id].name)) return (QuantType)id;
    }
    return std::nullopt;
}

bool can_compute(QuantType t) {
    const TypeTraits& tt = traits(t);
    return tt.dequantize_row && tt.vec_dot && traits(tt.vec_dot_type).quantize_row;
}

}  // namespace hearth::quant
