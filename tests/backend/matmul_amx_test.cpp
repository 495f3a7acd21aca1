// The AMX tile kernels of the CPU matmul (backend/cpu/amx.h) for Q4_0 and Q2_K .. Q6_K: matmul_cpu
// through AMX must give the reference vec_dot (matmul_ref) and the AVX-512 kernels bit for bit,
// for every code and extreme scales, over row counts around the 16-row tile, token counts around
// the 16-token tile and its pairs (1..70, 512), and 1, 2 and 9 super-blocks per row (Q4_0: 1, 3,
// 8 and 73 blocks, odd counts for its two alternating sets of tiles), with 1 to 4 threads.
// Skipped where the CPU (or the OS) has no AMX-INT8.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/amx.h"
#include "backend/cpu/cpu_features.h"
#include "backend/cpu/matmul.h"
#include "backend/ref/matmul.h"
#include "base/fp16.h"
#include "quant/q2_k.h"
#include "quant/q3_k.h"
#include "quant/q4_0.h"
#include "quant/q4_k.h"
#include "quant/q5_k.h"
#include "quant/q6_k.h"

namespace hearth::backend {
namespace {

using quant::QuantType;

// A finite fp16 scale: mostly moderate, one in 6 extreme (zero, subnormal, largest finite), either sign.
uint16_t random_scale(std::mt19937& rng) {
    const float sign = rng() & 1 ? 1.0f : -1.0f;
    if (rng() % 6 == 0) {
        const float extremes[] = {0.0f, std::exp2(-24.0f), std::exp2(-15.0f), 20000.0f, 65504.0f};
        return f32_to_fp16(sign * extremes[rng() % 5]);
    }
    std::uniform_real_distribution<float> e(-14.0f, 2.0f);
    return f32_to_fp16(sign * std::exp2(e(rng)));
}

// n_out rows of n_in elements of `type` (Q4_0 or a K-quant). Row kinds by o % 4: quantized from
// smooth random values; raw random bytes (every code, scale and min: Q6_K int8 scales -128..127)
// with random finite fp16 scales; two kinds of extreme blocks with the largest integer sums (every
// code at its largest or smallest with the largest scales and mins, e.g. Q4_K codes 15 and 0 with
// scales and mins 63, Q6_K codes 63 and -32 with scales alternating -128 and 127, Q3_K
// (scale - 32) * code = 128 and 31 * 3, Q4_0 codes 15 and 0, i.e. +7 and -8).
std::vector<std::byte> make_weights(QuantType type, int64_t n_in, int64_t n_out, std::mt19937& rng) {
    const auto& tr = quant::traits(type);
    const size_t row_bytes = quant::row_size(type, n_in);
    std::vector<std::byte> w(row_bytes * n_out);
    std::normal_distribution<float> normal(0.0f, 0.05f);
    std::vector<float> f(n_in);
    const int64_t nb = n_in / tr.block_size;
    for (int64_t o = 0; o < n_out; ++o) {
        std::byte* row = w.data() + o * row_bytes;
        if (o % 4 == 0) {
            for (auto& v : f) v = normal(rng);
            tr.quantize_row(f.data(), row, n_in);
            continue;
        }
        for (size_t i = 0; i < row_bytes; ++i) row[i] = (std::byte)(rng() & 0xFF);
        for (int64_t i = 0; i < nb; ++i) {
            if (type == QuantType::q4_0) {
                auto& b = reinterpret_cast<quant::BlockQ4_0*>(row)[i];
                if (o % 4 != 1) std::memset(b.qs, o % 4 == 2 ? 0xFF : 0x00, sizeof b.qs);
                b.d = random_scale(rng);
            } else if (type == QuantType::q4_k) {
                auto& b = reinterpret_cast<quant::BlockQ4_K*>(row)[i];
                if (o % 4 != 1) {
                    std::memset(b.scales, 0xFF, sizeof b.scales);  // every scale and min 63
                    std::memset(b.qs, o % 4 == 2 ? 0xFF : 0x00, sizeof b.qs);
                }
                b.d = random_scale(rng);
                b.dmin = random_scale(rng);
            } else if (type == QuantType::q5_k) {
                auto& b = reinterpret_cast<quant::BlockQ5_K*>(row)[i];
                if (o % 4 != 1) {
                    std::memset(b.scales, 0xFF, sizeof b.scales);  // every scale and min 63
                    std::memset(b.qs, o % 4 == 2 ? 0xFF : 0x00, sizeof b.qs);
                    std::memset(b.qh, o % 4 == 2 ? 0xFF : 0x00, sizeof b.qh);
                }
                b.d = random_scale(rng);
                b.dmin = random_scale(rng);
            } else if (type == QuantType::q3_k) {
                auto& b = reinterpret_cast<quant::BlockQ3_K*>(row)[i];
                if (o % 4 != 1) {
                    // Scales 0 (-32 after the offset) with codes -4: (scale - 32) * code = 128, the
                    // largest; or every code 3 with scales 63 (+31).
                    const bool low = o % 4 == 2;
                    std::memset(b.scales, low ? 0x00 : 0xFF, sizeof b.scales);
                    std::memset(b.qs, low ? 0x00 : 0xFF, sizeof b.qs);
                    std::memset(b.hmask, low ? 0x00 : 0xFF, sizeof b.hmask);
                }
                b.d = random_scale(rng);
            } else if (type == QuantType::q2_k) {
                auto& b = reinterpret_cast<quant::BlockQ2_K*>(row)[i];
                if (o % 4 != 1) {
                    std::memset(b.scales, 0xFF, sizeof b.scales);  // every scale and min 15
                    std::memset(b.qs, o % 4 == 2 ? 0xFF : 0x00, sizeof b.qs);
                }
                b.d = random_scale(rng);
                b.dmin = random_scale(rng);
            } else {
                auto& b = reinterpret_cast<quant::BlockQ6_K*>(row)[i];
                if (o % 4 != 1) {
                    for (int j = 0; j < 16; ++j) b.scales[j] = (int8_t)(j % 2 ? 127 : -128);
                    std::memset(b.ql, o % 4 == 2 ? 0xFF : 0x00, sizeof b.ql);
                    std::memset(b.qh, o % 4 == 2 ? 0xFF : 0x00, sizeof b.qh);
                }
                b.d = random_scale(rng);
            }
        }
    }
    return w;
}

// n_tokens activation rows. Token kinds by t % 3: normal values; values of wide magnitude (with a
// zero super-block, whose Q8_K scale is 0); +-1 so that every quant is +-127.
std::vector<float> make_activations(int64_t n_in, int64_t n_tokens, std::mt19937& rng) {
    std::vector<float> x((size_t)(n_in * n_tokens));
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::uniform_real_distribution<float> expo(-20.0f, 8.0f);
    for (int64_t t = 0; t < n_tokens; ++t) {
        float* xt = x.data() + t * n_in;
        for (int64_t i = 0; i < n_in; ++i) {
            switch (t % 3) {
                case 0: xt[i] = normal(rng); break;
                case 1: xt[i] = i >= 256 && i < 512 ? 0.0f : normal(rng) * std::exp2(expo(rng)); break;
                default: xt[i] = rng() & 1 ? 1.0f : -1.0f; break;
            }
        }
    }
    return x;
}

// Random weights and activations of one shape and the reference's outputs for them.
struct Problem {
    QuantType type;
    int64_t n_in, n_out, n_tok;
    size_t row_bytes;
    std::vector<std::byte> w;
    std::vector<float> x, y_ref;
    Problem(QuantType t, int64_t in, int64_t out, int64_t tok, uint32_t seed)
        : type(t), n_in(in), n_out(out), n_tok(tok), row_bytes(quant::row_size(t, in)) {
        std::mt19937 rng(seed);
        w = make_weights(type, n_in, n_out, rng);
        x = make_activations(n_in, n_tok, rng);
        y_ref.resize((size_t)(n_out * n_tok));
        matmul_ref(type, w.data(), row_bytes, x.data(), y_ref.data(), n_in, n_out, n_tok);
    }
    // matmul_cpu at avx512 with `amx` on `threads` threads.
    std::vector<float> run(int threads, AmxMode amx) const {
        ThreadPool pool(threads);
        std::vector<std::byte> scratch;
        std::vector<float> y((size_t)(n_out * n_tok), -1.0f);
        matmul_cpu(pool, type, w.data(), row_bytes, x.data(), y.data(), n_in, n_out, n_tok, scratch, SimdLevel::avx512,
                   amx);
        return y;
    }
};

class MatmulAmx : public ::testing::Test {
protected:
    void SetUp() override {
        if (!amx_int8_available()) GTEST_SKIP() << "no AMX-INT8 on this CPU (or the OS does not grant it)";
    }
};

class MatmulAmxTypes : public MatmulAmx, public ::testing::WithParamInterface<QuantType> {};

// n_in 256, 512 and 2304: one super-block, an even and an odd count; Q4_0 also 32 and 96 (one
// and three blocks) and 2336 (73 blocks).
TEST_P(MatmulAmxTypes, EqualsReferenceAndAvx512Bitwise) {
    const QuantType type = GetParam();
    ThreadPool pool(2);
    std::vector<std::byte> scratch;
    std::vector<int64_t> token_counts;
    for (int64_t t = 1; t <= 70; ++t) token_counts.push_back(t);
    token_counts.push_back(512);
    const std::vector<int64_t> widths = type == QuantType::q4_0 ? std::vector<int64_t>{32, 96, 256, 2336}
                                                                : std::vector<int64_t>{256, 512, 2304};
    int n_checked = 0;
    for (int64_t n_in : widths) {
        const size_t row_bytes = quant::row_size(type, n_in);
        for (int64_t n_out : {1, 15, 16, 17, 100}) {
            std::mt19937 rng((uint32_t)(n_in * 7 + n_out));
            const auto w = make_weights(type, n_in, n_out, rng);
            for (int64_t n_tok : token_counts) {
                // The widest case only on the widest rows (the reference is scalar).
                if (n_in >= 2304 && n_tok > 40 && n_tok != 512 && n_tok % 7 != 0) continue;
                const auto x = make_activations(n_in, n_tok, rng);
                const size_t n_y = (size_t)(n_out * n_tok);
                std::vector<float> y_ref(n_y), y_amx(n_y, -1.0f), y_avx(n_y, -2.0f);
                matmul_ref(type, w.data(), row_bytes, x.data(), y_ref.data(), n_in, n_out, n_tok);
                matmul_cpu(pool, type, w.data(), row_bytes, x.data(), y_amx.data(), n_in, n_out, n_tok, scratch,
                           SimdLevel::avx512, AmxMode::force);
                matmul_cpu(pool, type, w.data(), row_bytes, x.data(), y_avx.data(), n_in, n_out, n_tok, scratch,
                           SimdLevel::avx512, AmxMode::off);
                if (std::memcmp(y_amx.data(), y_ref.data(), n_y * sizeof(float)) != 0) {
                    for (size_t i = 0; i < n_y; ++i) {
                        ASSERT_EQ(f32_to_bits(y_amx[i]), f32_to_bits(y_ref[i]))
                            << quant::type_name(type) << " " << n_in << "x" << n_out << "x" << n_tok << " output "
                            << i % n_out << " token " << i / n_out << ": " << y_amx[i] << " vs " << y_ref[i];
                    }
                }
                ASSERT_EQ(std::memcmp(y_avx.data(), y_ref.data(), n_y * sizeof(float)), 0)
                    << "avx512 " << quant::type_name(type) << " " << n_in << "x" << n_out << "x" << n_tok;
                ++n_checked;
            }
        }
    }
    EXPECT_GT(n_checked, 800);
}

// The automatic choice (what the engine runs) gives the same bits on a prompt-sized batch of
// Llama-3.2-1B's FFN width, several thread bands and a partial last token group.
TEST_P(MatmulAmxTypes, AutomaticPromptBatchEqualsReference) {
    const Problem p(GetParam(), 2048, 72, 203, 11);
    const std::vector<float> y = p.run(2, AmxMode::automatic);
    ASSERT_EQ(std::memcmp(y.data(), p.y_ref.data(), y.size() * sizeof(float)), 0);
}

// Q4_0 rows long enough that the packed activations of a prompt batch outgrow L2 go through the
// matmul in chunks of blocks (amx.cpp: kChunkActBytes), continuing the accumulators in y: 257
// blocks and 509 tokens (32 groups, the last one partial) take 4 uneven chunks.
TEST_F(MatmulAmx, Q4_0LongRowsInChunksEqualReference) {
    const Problem p(QuantType::q4_0, 257 * 32, 33, 509, 3);
    const std::vector<float> y = p.run(2, AmxMode::force);
    for (size_t i = 0; i < y.size(); ++i) {
        ASSERT_EQ(f32_to_bits(y[i]), f32_to_bits(p.y_ref[i])) << "output " << i % p.n_out << " token " << i / p.n_out;
    }
}

// Thread counts that split the bands unevenly (and one thread): each worker packs its own bands
// into its own scratch; the outputs must not depend on who computed them.
TEST_P(MatmulAmxTypes, ThreadCountsEqualReference) {
    const Problem p(GetParam(), 512, 113, 45, 5);
    for (int threads : {1, 3, 4}) {
        const std::vector<float> y = p.run(threads, AmxMode::force);
        ASSERT_EQ(std::memcmp(y.data(), p.y_ref.data(), y.size() * sizeof(float)), 0)
            << quant::type_name(p.type) << " with " << threads << " threads";
    }
}

INSTANTIATE_TEST_SUITE_P(Types, MatmulAmxTypes,
                         ::testing::Values(QuantType::q4_0, QuantType::q2_k, QuantType::q3_k, QuantType::q4_k,
                                           QuantType::q5_k, QuantType::q6_k),
                         [](const auto& info) { return std::string(quant::type_name(info.param)); });

// Single tokens (decode) never take the tile kernels.
TEST(MatmulAmxChoice, DecodeNeverUsesTiles) {
    for (QuantType t : {QuantType::q4_0, QuantType::q2_k, QuantType::q3_k, QuantType::q4_k, QuantType::q5_k,
                        QuantType::q6_k}) {
        EXPECT_TRUE(has_amx_kernel(t)) << quant::type_name(t);
        EXPECT_GT(amx_min_tokens(t), 1) << quant::type_name(t);
    }
    EXPECT_FALSE(has_amx_kernel(QuantType::q8_0));
    EXPECT_FALSE(has_amx_kernel(QuantType::q4_1));
}

}  // namespace
}  // namespace hearth::backend
