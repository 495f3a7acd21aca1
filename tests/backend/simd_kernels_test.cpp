// CPU SIMD kernels (backend/cpu/dot_kernels.h) against the quant/ reference: every tile and
// column kernel of every level this CPU supports, on random and extreme data of awkward sizes,
// must give the reference vec_dot bit for bit; and matmul_cpu at every level must equal
// matmul_ref exactly. Levels the CPU lacks are skipped (and said so); CI covers the avx2 and
// scalar paths on every x86-64 machine because each supported level below the top one is
// tested too.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/cpu_features.h"
#include "backend/cpu/dot_kernels.h"
#include "backend/cpu/matmul.h"
#include "backend/ref/matmul.h"
#include "base/fp16.h"
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

namespace hearth::backend {
namespace {

using quant::QuantType;

uint32_t bits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
}

// Data flavours: smooth random weights quantized by the reference quantizer; heavy-tailed
// values over a wide range (with whole zero blocks); raw random bytes in every code field with
// finite scales (codes at their extremes: Q8_0 -128, Q4 nibbles 0 and 15, Q6_K 0 and 63,
// 6-bit scales and mins up to 63, int8 Q6_K scales down to -128, every 2-, 3-, 5-bit and table
// code, every MXFP4 exponent) and fp16 scales from subnormal to near the largest finite value.
enum class Data { smooth, wide, raw };
const char* data_name(Data d) { return d == Data::smooth ? "smooth" : d == Data::wide ? "wide" : "raw"; }

std::vector<float> random_floats(size_t n, std::mt19937& rng, Data data) {
    std::vector<float> v(n);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::uniform_real_distribution<float> expo(-20.0f, 8.0f);
    for (size_t i = 0; i < n; ++i) {
        if (data == Data::smooth) v[i] = normal(rng) * 0.05f;
        else v[i] = normal(rng) * std::exp2(expo(rng));
    }
    if (data != Data::smooth && n >= 512) {
        for (size_t i = 256; i < 512; ++i) v[i] = 0.0f;  // a zero block (or super-block)
    }
    return v;
}

// A finite fp16 scale of random magnitude and sign; one in 8 is extreme (subnormal, zero or
// above 2^14).
uint16_t random_scale(std::mt19937& rng) {
    const float sign = rng() & 1 ? 1.0f : -1.0f;
    if (rng() % 8 == 0) {
        const float extremes[] = {std::exp2(-24.0f), std::exp2(-20.0f), 0.0f, 20000.0f, 65504.0f};
        return f32_to_fp16(sign * extremes[rng() % 5]);
    }
    std::uniform_real_distribution<float> e(-14.0f, 4.0f);
    return f32_to_fp16(std::exp2(e(rng)) * sign);
}

// One weight row of n elements of `type`.
std::vector<std::byte> make_row(QuantType type, int64_t n, std::mt19937& rng, Data data) {
    const auto& tr = quant::traits(type);
    std::vector<std::byte> row(quant::row_size(type, n));
    const auto f = random_floats((size_t)n, rng, data == Data::raw ? Data::smooth : data);
    tr.quantize_row(f.data(), row.data(), n);
    if (data != Data::raw) return row;
    for (auto& b : row) b = (std::byte)(rng() & 0xFF);
    // Finite scales (raw fp16 bits can be NaN or inf).
    const int64_t nb = n / tr.block_size;
    for (int64_t i = 0; i < nb; ++i) {
        std::byte* blk = row.data() + i * tr.type_size;
        switch (type) {
            case QuantType::q8_0: reinterpret_cast<quant::BlockQ8_0*>(blk)->d = random_scale(rng); break;
            case QuantType::q4_0: reinterpret_cast<quant::BlockQ4_0*>(blk)->d = random_scale(rng); break;
            case QuantType::q4_k: {
                auto* b = reinterpret_cast<quant::BlockQ4_K*>(blk);
                b->d = random_scale(rng);
                b->dmin = random_scale(rng);
                break;
            }
            case QuantType::q6_k: reinterpret_cast<quant::BlockQ6_K*>(blk)->d = random_scale(rng); break;
            case QuantType::q5_k: {
                auto* b = reinterpret_cast<quant::BlockQ5_K*>(blk);
                b->d = random_scale(rng);
                b->dmin = random_scale(rng);
                break;
            }
            case QuantType::q2_k: {
                auto* b = reinterpret_cast<quant::BlockQ2_K*>(blk);
                b->d = random_scale(rng);
                b->dmin = random_scale(rng);
                break;
            }
            case QuantType::q3_k: reinterpret_cast<quant::BlockQ3_K*>(blk)->d = random_scale(rng); break;
            case QuantType::iq4_xs: reinterpret_cast<quant::BlockIQ4_XS*>(blk)->d = random_scale(rng); break;
            case QuantType::q5_0: reinterpret_cast<quant::BlockQ5_0*>(blk)->d = random_scale(rng); break;
            case QuantType::q4_1: {
                auto* b = reinterpret_cast<quant::BlockQ4_1*>(blk);
                b->d = random_scale(rng);
                b->m = random_scale(rng);
                break;
            }
            case QuantType::q5_1: {
                auto* b = reinterpret_cast<quant::BlockQ5_1*>(blk);
                b->d = random_scale(rng);
                b->m = random_scale(rng);
                break;
            }
            case QuantType::iq4_nl: reinterpret_cast<quant::BlockIQ4_NL*>(blk)->d = random_scale(rng); break;
            case QuantType::mxfp4: break;  // every E8M0 exponent byte is a finite scale
            default: {
                // Float types: random finite values over a wide range instead of raw bits.
                const auto g = random_floats((size_t)n, rng, Data::wide);
                tr.quantize_row(g.data(), row.data(), n);
                return row;
            }
        }
    }
    return row;
}

// One activation row in the type's vec_dot_type, as the matmul converts it.
std::vector<std::byte> make_activation(QuantType type, int64_t n, std::mt19937& rng, Data data) {
    std::vector<std::byte> a(activation_row_bytes(type, n));
    auto f = random_floats((size_t)n, rng, data == Data::raw ? Data::wide : data);
    if (data == Data::raw) {
        // Saturated blocks: every value +-amax, so the quants are +-127.
        for (int64_t i = 0; i < std::min<int64_t>(n, 64); ++i) f[i] = (rng() & 1) ? 3.0f : -3.0f;
    }
    quantize_activation_row(type, f.data(), a.data(), n);
    return a;
}

struct KernelCase {
    QuantType type;
    std::vector<int64_t> sizes;  // row lengths: 1, 7 and 33 blocks, and others not a multiple of 64
};

std::vector<KernelCase> kernel_cases() {
    return {
        {QuantType::q4_k, {256, 7 * 256, 33 * 256}},
        {QuantType::q6_k, {256, 7 * 256, 33 * 256}},
        {QuantType::q5_k, {256, 7 * 256, 33 * 256}},
        {QuantType::q3_k, {256, 7 * 256, 33 * 256}},
        {QuantType::q2_k, {256, 7 * 256, 33 * 256}},
        {QuantType::iq4_xs, {256, 7 * 256, 33 * 256}},
        {QuantType::q5_0, {32, 7 * 32, 33 * 32, 2048 + 96}},
        {QuantType::q4_1, {32, 7 * 32, 33 * 32, 2048 + 96}},
        {QuantType::q5_1, {32, 7 * 32, 33 * 32, 2048 + 96}},
        {QuantType::iq4_nl, {32, 7 * 32, 33 * 32, 2048 + 96}},
        {QuantType::mxfp4, {32, 7 * 32, 33 * 32, 2048 + 96}},
        {QuantType::q8_0, {32, 7 * 32, 33 * 32, 2048 + 96}},
        {QuantType::q4_0, {32, 7 * 32, 33 * 32, 2048 + 96}},
        {QuantType::f16, {16, 48, 33 * 16, 2048 + 80}},
        {QuantType::f32, {16, 48, 33 * 16}},
        {QuantType::bf16, {16, 48, 33 * 16}},
    };
}

// Runs one tile kernel on R rows x C tokens (all different) and compares every output with
// the reference vec_dot of its pair, bit for bit.
void check_tile(DotTileFn fn, int rows, int cols, QuantType type, int64_t n, Data data, uint32_t seed,
                const std::string& what) {
    std::mt19937 rng(seed);
    std::vector<std::vector<std::byte>> w, x;
    const std::byte* wp[kMaxTileRows];
    const std::byte* xp[kMaxTileCols];
    for (int r = 0; r < rows; ++r) w.push_back(make_row(type, n, rng, data));
    for (int c = 0; c < cols; ++c) x.push_back(make_activation(type, n, rng, data));
    for (int r = 0; r < rows; ++r) wp[r] = w[r].data();
    for (int c = 0; c < cols; ++c) xp[c] = x[c].data();
    std::vector<float> out((size_t)rows * cols, -1.0f);
    fn(wp, xp, n, out.data());
    const auto& tr = quant::traits(type);
    for (int r = 0; r < rows; ++r) {
        for (int c = 0; c < cols; ++c) {
            const float ref = tr.vec_dot(w[r].data(), x[c].data(), n);
            const float got = out[(size_t)r * cols + c];
            ASSERT_EQ(bits(got), bits(ref)) << what << " row " << r << " col " << c << ": got " << got << ", reference "
                                            << ref;
        }
    }
}

// The packed prompt kernel: rows x kPackTokens outputs from kPackTokens packed activation rows.
void check_packed(const DotKernels& k, QuantType type, int64_t n, Data data, uint32_t seed, const std::string& what) {
    std::mt19937 rng(seed);
    std::vector<std::vector<std::byte>> w, x;
    const std::byte* wp[kMaxTileRows];
    const std::byte* xp[kPackTokens];
    for (int r = 0; r < k.packed_rows; ++r) w.push_back(make_row(type, n, rng, data));
    for (int c = 0; c < kPackTokens; ++c) x.push_back(make_activation(type, n, rng, data));
    for (int r = 0; r < k.packed_rows; ++r) wp[r] = w[r].data();
    for (int c = 0; c < kPackTokens; ++c) xp[c] = x[c].data();
    std::vector<std::byte> packed((size_t)(n / quant::block_size(type)) * k.packed_block_bytes);
    k.pack(xp, n, packed.data());
    std::vector<float> out((size_t)k.packed_rows * kPackTokens, -1.0f);
    k.packed(wp, packed.data(), n, out.data());
    // The prepared-weights form, where the type has one, must give the same bits.
    std::vector<float> out_prepared(out.size(), -1.0f);
    if (k.packed_prepared) {
        std::vector<std::byte> prepared((size_t)(n / quant::block_size(type)) * k.prepared_block_bytes);
        k.prepare_weights(wp, n, prepared.data());
        k.packed_prepared(prepared.data(), packed.data(), n, out_prepared.data());
    }
    const auto& tr = quant::traits(type);
    for (int r = 0; r < k.packed_rows; ++r) {
        for (int c = 0; c < kPackTokens; ++c) {
            const float ref = tr.vec_dot(w[r].data(), x[c].data(), n);
            const float got = out[(size_t)r * kPackTokens + c];
            ASSERT_EQ(bits(got), bits(ref)) << what << " row " << r << " token " << c << ": got " << got
                                            << ", reference " << ref;
            if (k.packed_prepared) {
                ASSERT_EQ(bits(out_prepared[(size_t)r * kPackTokens + c]), bits(ref))
                    << what << " prepared, row " << r << " token " << c;
            }
        }
    }
}

TEST(CpuFeatures, LevelsAndNames) {
    const CpuFeatures& f = cpu_features();
    const SimdLevel top = max_simd_level(f);
    std::printf("[ info ] CPU: avx2 %d fma %d f16c %d avx512f %d bw %d vl %d vnni %d bf16 %d -> %s (default %s)\n",
                f.avx2, f.fma, f.f16c, f.avx512f, f.avx512bw, f.avx512vl, f.avx512vnni, f.avx512bf16,
                simd_level_name(top), simd_level_name(default_simd_level()));
    if (top >= SimdLevel::avx2) {
        EXPECT_TRUE(f.avx2 && f.fma && f.f16c);
    }
    if (top == SimdLevel::avx512) {
        EXPECT_TRUE(f.avx512f && f.avx512bw && f.avx512vl && f.avx512vnni);
    }
    EXPECT_LE((int)default_simd_level(), (int)top);
    for (int l = 0; l < kSimdLevelCount; ++l) EXPECT_EQ(parse_simd_level(simd_level_name((SimdLevel)l)), (SimdLevel)l);
    EXPECT_EQ(parse_simd_level("sse9"), std::nullopt);
    EXPECT_EQ(max_simd_level(CpuFeatures{}), SimdLevel::scalar);
    CpuFeatures no_vnni{.avx2 = true, .fma = true, .f16c = true, .avx512f = true, .avx512bw = true, .avx512vl = true};
    EXPECT_EQ(max_simd_level(no_vnni), SimdLevel::avx2);
}

TEST(SimdKernels, EveryKernelMatchesReferenceBitForBit) {
    int n_checked = 0;
    for (SimdLevel level : supported_simd_levels()) {
        if (level == SimdLevel::scalar) continue;
        for (const auto& kc : kernel_cases()) {
            for (int64_t n : kc.sizes) {
                const DotKernels* k = find_dot_kernels(level, kc.type, n);
                ASSERT_NE(k, nullptr) << simd_level_name(level) << " " << quant::type_name(kc.type) << " n=" << n;
                for (Data data : {Data::smooth, Data::wide, Data::raw}) {
                    const std::string what = std::string(simd_level_name(level)) + " " + quant::type_name(kc.type) +
                                             " n=" + std::to_string(n) + " " + data_name(data);
                    const uint32_t seed = (uint32_t)(n * 31 + (int)kc.type * 7 + (int)data);
                    check_tile(k->tile, k->rows, k->cols, kc.type, n, data, seed, what + " tile");
                    check_tile(k->column, k->column_rows, 1, kc.type, n, data, seed + 1, what + " column");
                    if (k->column4) check_tile(k->column4, k->column_rows, 4, kc.type, n, data, seed + 3, what + " column4");
                    if (k->column2) check_tile(k->column2, k->column_rows, 2, kc.type, n, data, seed + 4, what + " column2");
                    if (k->packed) check_packed(*k, kc.type, n, data, seed + 2, what + " packed");
                    if (HasFatalFailure()) return;
                    ++n_checked;
                }
            }
        }
    }
    if (n_checked == 0) GTEST_SKIP() << "this CPU has no SIMD level (scalar only)";
}

// Q8_0 at its extremes, in every kernel form (tile, columns, packed): weight quants -128, -127,
// 127 and mixes with 0 and +-1 (any int8 is a valid weight), activation quants +-127 (the largest
// an activation quantizer writes), weight scales up to the largest finite fp16 and subnormal, so
// that the int lanes reach +-65024 and the packed kernel's code - 128 correction is exercised at
// both ends. Scales are chosen so that no sum overflows to inf.
TEST(SimdKernels, Q8_0ExtremeQuantsMatchReference) {
    int n_checked = 0;
    const int64_t n = 9 * 32;
    const int8_t weight_patterns[][4] = {{-128, -128, -128, -128}, {127, 127, 127, 127}, {-128, 127, -127, 0},
                                         {-127, -127, 1, -1}};
    for (SimdLevel level : supported_simd_levels()) {
        const DotKernels* k = find_dot_kernels(level, QuantType::q8_0, n);
        if (!k) continue;
        for (int variant = 0; variant < 4; ++variant) {
            std::mt19937 rng((uint32_t)(variant * 977 + (int)level));
            const int n_rows = std::max({k->rows, k->column_rows, k->packed_rows});
            const int n_tokens = std::max(k->cols, kPackTokens);
            std::vector<std::vector<std::byte>> w(n_rows), x(n_tokens);
            for (int r = 0; r < n_rows; ++r) {
                w[r].resize(quant::row_size(QuantType::q8_0, n));
                auto* b = reinterpret_cast<quant::BlockQ8_0*>(w[r].data());
                for (int64_t i = 0; i < n / 32; ++i) {
                    const float scales[] = {65504.0f, -65504.0f, 1.0f, std::exp2(-24.0f), -3.5f};
                    b[i].d = f32_to_fp16(scales[(r + i + variant) % 5]);
                    const int8_t* pat = weight_patterns[(r + variant) % 4];
                    for (int j = 0; j < 32; ++j) {
                        // Every third block random bytes, the others the row's pattern.
                        b[i].qs[j] = i % 3 == 2 ? (int8_t)(rng() & 0xFF) : pat[(j + (int)i) % 4];
                    }
                }
            }
            for (int t = 0; t < n_tokens; ++t) {
                std::vector<float> f((size_t)n);
                for (int64_t e = 0; e < n; ++e) {
                    // +-amax everywhere (quants +-127), or every second token random values.
                    f[e] = (t % 2 == 0 || e % 5 == 0) ? ((rng() & 1) ? 3.0f : -3.0f)
                                                      : std::uniform_real_distribution<float>(-3.0f, 3.0f)(rng);
                }
                x[t].resize(activation_row_bytes(QuantType::q8_0, n));
                quantize_activation_row(QuantType::q8_0, f.data(), x[t].data(), n);
            }
            const auto& tr = quant::traits(QuantType::q8_0);
            const std::string what = std::string(simd_level_name(level)) + " variant " + std::to_string(variant);
            // form: "tile" and the columns call fn; "packed" and "prepared" take the packed activations.
            auto check = [&](DotTileFn fn, int rows, int cols, const std::byte* packed, const std::string& form) {
                const std::byte* wp[kMaxTileRows];
                const std::byte* xp[kMaxTileCols];
                for (int r = 0; r < rows; ++r) wp[r] = w[r].data();
                for (int c = 0; c < cols; ++c) xp[c] = x[c].data();
                std::vector<float> out((size_t)rows * cols, -1.0f);
                if (form == "packed") {
                    k->packed(wp, packed, n, out.data());
                } else if (form == "prepared") {
                    std::vector<std::byte> prepared((size_t)(n / 32) * k->prepared_block_bytes);
                    k->prepare_weights(wp, n, prepared.data());
                    k->packed_prepared(prepared.data(), packed, n, out.data());
                } else {
                    fn(wp, xp, n, out.data());
                }
                for (int r = 0; r < rows; ++r) {
                    for (int c = 0; c < cols; ++c) {
                        const float ref = tr.vec_dot(w[r].data(), x[c].data(), n);
                        ASSERT_TRUE(std::isfinite(ref)) << what;
                        ASSERT_EQ(bits(out[(size_t)r * cols + c]), bits(ref))
                            << what << " " << form << " row " << r << " token " << c << ": got "
                            << out[(size_t)r * cols + c] << ", reference " << ref;
                    }
                }
            };
            check(k->tile, k->rows, k->cols, nullptr, "tile");
            check(k->column, k->column_rows, 1, nullptr, "column");
            if (k->column4) check(k->column4, k->column_rows, 4, nullptr, "column4");
            if (k->column2) check(k->column2, k->column_rows, 2, nullptr, "column2");
            if (k->packed) {
                const std::byte* xp[kPackTokens];
                for (int t = 0; t < kPackTokens; ++t) xp[t] = x[t].data();
                std::vector<std::byte> packed((size_t)(n / 32) * k->packed_block_bytes);
                k->pack(xp, n, packed.data());
                check(nullptr, k->packed_rows, kPackTokens, packed.data(), "packed");
                if (k->packed_prepared) check(nullptr, k->packed_rows, kPackTokens, packed.data(), "prepared");
            }
            if (HasFatalFailure()) return;
            ++n_checked;
        }
    }
    if (n_checked == 0) GTEST_SKIP() << "no Q8_0 kernels on this CPU";
}

// The kernels' activation quantizers give the reference's bytes (scales, quants, bsums): random,
// wide-range, all-zero and tied blocks (+-a repeated, where the first of largest magnitude decides
// the sign of Q8_K's scale), values that round at exactly .5 steps.
TEST(SimdKernels, ActivationQuantizersMatchReference) {
    int n_checked = 0;
    for (SimdLevel level : supported_simd_levels()) {
        for (QuantType type : {QuantType::q4_k, QuantType::q6_k, QuantType::q8_0, QuantType::q4_0, QuantType::q4_1,
                               QuantType::q5_1}) {
            const int64_t n = 33 * 256;
            const DotKernels* k = find_dot_kernels(level, type, n);
            if (!k || !k->quantize) continue;
            for (int variant = 0; variant < 4; ++variant) {
                std::mt19937 rng((uint32_t)(variant * 101 + (int)type));
                auto x = random_floats((size_t)n, rng, variant == 0 ? Data::smooth : Data::wide);
                if (variant == 2) {
                    for (int64_t i = 0; i < n; ++i) x[i] = (float)((int)(rng() % 9) - 4) * 0.5f;  // ties everywhere
                }
                if (variant == 3) {
                    for (int64_t i = 0; i < 256; ++i) x[i] = (i % 3 == 0) ? -2.0f : 2.0f;  // max first negative
                    for (int64_t i = 256; i < 512; ++i) x[i] = (i % 5 == 1) ? 2.0f : -1.0f;  // max first positive
                    for (int64_t i = 512; i < 768; ++i) x[i] = 1e-30f * (float)(i % 7);     // tiny: subnormal fp16 d
                }
                std::vector<std::byte> ref(activation_row_bytes(type, n)), got(ref.size(), std::byte{0x55});
                quantize_activation_row(type, x.data(), ref.data(), n);
                k->quantize(x.data(), got.data(), n);
                ASSERT_EQ(std::memcmp(ref.data(), got.data(), ref.size()), 0)
                    << simd_level_name(level) << " " << quant::type_name(type) << " variant " << variant;
                ++n_checked;
            }
        }
    }
    if (n_checked == 0) GTEST_SKIP() << "no SIMD activation quantizer on this CPU";
}

// Float rows whose length is not a multiple of 16 sum in ggml_vec_dot's order, which has no
// kernel yet: the table must say so, and matmul_cpu falls back to the reference.
TEST(SimdKernels, FloatRowsOfOtherLengthsHaveNoKernel) {
    for (SimdLevel level : supported_simd_levels()) {
        for (QuantType t : {QuantType::f32, QuantType::f16, QuantType::bf16}) {
            EXPECT_EQ(find_dot_kernels(level, t, 40), nullptr) << simd_level_name(level);
        }
    }
}

std::vector<QuantType> computable_types() {
    std::vector<QuantType> out;
    for (uint32_t id = 0; id < 64; ++id) {
        const auto* tr = quant::find_traits(id);
        if (tr && quant::can_compute((QuantType)id) && tr->quantize_row) out.push_back((QuantType)id);
    }
    return out;
}

// matmul_cpu at every supported level equals matmul_ref exactly, over token counts that leave
// partial tiles and row counts that are not a multiple of any tile.
TEST(SimdKernels, MatmulEveryLevelEqualsReference) {
    ThreadPool pool(3);
    std::vector<std::byte> scratch;
    for (QuantType type : computable_types()) {
        const auto& tr = quant::traits(type);
        const int64_t n_in = tr.block_size == 256 ? 512 : (type == QuantType::f32 || type == QuantType::f16 ||
                                                            type == QuantType::bf16) ? 208 : 224;
        for (int64_t n_out : {1, 6, 37}) {
            std::mt19937 rng((uint32_t)(n_out * 13 + (int)type));
            const size_t row_bytes = quant::row_size(type, n_in);
            std::vector<std::byte> w(row_bytes * n_out);
            for (int64_t o = 0; o < n_out; ++o) {
                const auto row = make_row(type, n_in, rng, o % 3 == 2 ? Data::wide : Data::smooth);
                std::memcpy(w.data() + o * row_bytes, row.data(), row_bytes);
            }
            for (int64_t n_tok : {1, 2, 3, 5, 8, 17}) {
                const auto x = random_floats((size_t)(n_in * n_tok), rng, Data::smooth);
                std::vector<float> y_ref((size_t)(n_out * n_tok));
                matmul_ref(type, w.data(), row_bytes, x.data(), y_ref.data(), n_in, n_out, n_tok);
                for (SimdLevel level : supported_simd_levels()) {
                    std::vector<float> y((size_t)(n_out * n_tok), -1.0f);
                    matmul_cpu(pool, type, w.data(), row_bytes, x.data(), y.data(), n_in, n_out, n_tok, scratch, level);
                    for (size_t i = 0; i < y.size(); ++i) {
                        ASSERT_EQ(bits(y[i]), bits(y_ref[i]))
                            << simd_level_name(level) << " " << tr.name << " " << n_in << "x" << n_out << "x" << n_tok
                            << " output " << i % n_out << " token " << i / n_out;
                    }
                }
            }
        }
    }
}

// matmul_cpu at every level equals matmul_ref bit for bit over awkward row counts (partial tiles of
// every kernel form), every token count 1..17 and 40 (column kernels alone and in groups of 4 and
// 2, partial tiles, packed groups plus leftovers), with
// raw weights (every code value, extreme scales) in every third row.
TEST(SimdKernels, MatmulAwkwardShapesEqualReference) {
    ThreadPool pool(2);
    std::vector<std::byte> scratch;
    for (QuantType type : {QuantType::q5_k, QuantType::q3_k, QuantType::q2_k, QuantType::iq4_xs, QuantType::q5_0,
                           QuantType::q4_1, QuantType::q5_1, QuantType::iq4_nl, QuantType::mxfp4, QuantType::q4_k,
                           QuantType::q6_k, QuantType::q8_0, QuantType::q4_0, QuantType::f16}) {
        const auto& tr = quant::traits(type);
        const int64_t n_in = tr.block_size == 256 ? 768 : 96;
        const size_t row_bytes = quant::row_size(type, n_in);
        std::vector<int64_t> token_counts;
        for (int64_t t = 1; t <= 17; ++t) token_counts.push_back(t);
        token_counts.push_back(40);
        for (int64_t n_out : {1, 3, 7, 9, 33}) {
            std::mt19937 rng((uint32_t)(n_out * 17 + (int)type));
            std::vector<std::byte> w(row_bytes * n_out);
            for (int64_t o = 0; o < n_out; ++o) {
                const Data data = o % 3 == 0 ? Data::raw : o % 3 == 1 ? Data::smooth : Data::wide;
                const auto row = make_row(type, n_in, rng, data);
                std::memcpy(w.data() + o * row_bytes, row.data(), row_bytes);
            }
            for (int64_t n_tok : token_counts) {
                const auto x = random_floats((size_t)(n_in * n_tok), rng, n_tok % 2 ? Data::smooth : Data::wide);
                std::vector<float> y_ref((size_t)(n_out * n_tok));
                matmul_ref(type, w.data(), row_bytes, x.data(), y_ref.data(), n_in, n_out, n_tok);
                for (SimdLevel level : supported_simd_levels()) {
                    std::vector<float> y((size_t)(n_out * n_tok), -1.0f);
                    matmul_cpu(pool, type, w.data(), row_bytes, x.data(), y.data(), n_in, n_out, n_tok, scratch, level);
                    for (size_t i = 0; i < y.size(); ++i) {
                        ASSERT_EQ(bits(y[i]), bits(y_ref[i]))
                            << simd_level_name(level) << " " << tr.name << " " << n_in << "x" << n_out << "x" << n_tok
                            << " output " << i % n_out << " token " << i / n_out;
                    }
                }
            }
        }
    }
}

// A prompt-sized product: several token blocks (8192-wide rows: matmul_cpu keeps about 512 KB
// of activations per block, i.e. 56 tokens), packed groups plus leftover tokens, thread bands.
TEST(SimdKernels, LargeMatmulEqualsReference) {
    ThreadPool pool(2);
    std::vector<std::byte> scratch;
    for (QuantType type : {QuantType::q4_k, QuantType::q6_k, QuantType::q8_0, QuantType::q4_0, QuantType::q5_k,
                           QuantType::q3_k, QuantType::q2_k, QuantType::iq4_xs, QuantType::q5_0, QuantType::q4_1,
                           QuantType::q5_1, QuantType::iq4_nl, QuantType::mxfp4}) {
        const int64_t n_in = 8192, n_out = 22, n_tok = 67;
        std::mt19937 rng(7);
        const auto& tr = quant::traits(type);
        const size_t row_bytes = quant::row_size(type, n_in);
        const auto wf = random_floats((size_t)(n_in * n_out), rng, Data::smooth);
        std::vector<std::byte> w(row_bytes * n_out);
        for (int64_t o = 0; o < n_out; ++o) tr.quantize_row(wf.data() + o * n_in, w.data() + o * row_bytes, n_in);
        const auto x = random_floats((size_t)(n_in * n_tok), rng, Data::smooth);
        std::vector<float> y_ref((size_t)(n_out * n_tok)), y((size_t)(n_out * n_tok));
        matmul_ref(type, w.data(), row_bytes, x.data(), y_ref.data(), n_in, n_out, n_tok);
        for (SimdLevel level : supported_simd_levels()) {
            if (level == SimdLevel::scalar) continue;  // MatmulEveryLevelEqualsReference covers it
            matmul_cpu(pool, type, w.data(), row_bytes, x.data(), y.data(), n_in, n_out, n_tok, scratch, level);
            ASSERT_EQ(y, y_ref) << tr.name << " at " << simd_level_name(level);
        }
    }
}

}  // namespace
}  // namespace hearth::backend
