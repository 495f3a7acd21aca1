// backend matmul: the threaded CPU kernel against the scalar reference (bit-identical), and
// the reference against a plain f32 product of dequantized weights, for every computable type.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "backend/cpu/matmul.h"
#include "backend/ref/matmul.h"

namespace hearth::backend {
namespace {

using quant::QuantType;

std::vector<float> random_floats(size_t n, uint32_t seed, float scale = 1.0f) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> dist(0.0f, scale);
    std::vector<float> v(n);
    for (auto& x : v) x = dist(rng);
    return v;
}

class MatmulTest : public ::testing::TestWithParam<QuantType> {};

TEST_P(MatmulTest, CpuEqualsRefAndRefApproximatesF32) {
    const QuantType type = GetParam();
    const auto& tr = quant::traits(type);
    ASSERT_NE(tr.quantize_row, nullptr);
    ThreadPool pool(3);
    std::vector<std::byte> scratch;
    for (auto [n_in, n_out, n_tok] : {std::tuple{256, 7, 1}, std::tuple{512, 33, 5}, std::tuple{1024, 64, 17}}) {
        const size_t row_bytes = quant::row_size(type, n_in);
        const auto wf = random_floats((size_t)n_in * n_out, 1 + n_out, 0.05f);
        std::vector<std::byte> w(row_bytes * n_out);
        for (int o = 0; o < n_out; ++o) tr.quantize_row(wf.data() + (size_t)o * n_in, w.data() + o * row_bytes, n_in);
        const auto x = random_floats((size_t)n_in * n_tok, 100 + n_tok);
        std::vector<float> y_ref((size_t)n_out * n_tok), y_cpu((size_t)n_out * n_tok);
        matmul_ref(type, w.data(), row_bytes, x.data(), y_ref.data(), n_in, n_out, n_tok);
        matmul_cpu(pool, type, w.data(), row_bytes, x.data(), y_cpu.data(), n_in, n_out, n_tok, scratch);
        ASSERT_EQ(y_ref, y_cpu) << quant::type_name(type) << " " << n_in << "x" << n_out << "x" << n_tok;

        // Against dequantized weights times f32 activations: only activation rounding differs.
        std::vector<float> wd((size_t)n_in);
        for (int t = 0; t < n_tok; ++t) {
            for (int o = 0; o < n_out; ++o) {
                tr.dequantize_row(w.data() + o * row_bytes, wd.data(), n_in);
                double dot = 0.0, mag = 0.0;
                for (int i = 0; i < n_in; ++i) {
                    dot += (double)wd[i] * x[(size_t)t * n_in + i];
                    mag += std::fabs((double)wd[i] * x[(size_t)t * n_in + i]);
                }
                ASSERT_NEAR(y_ref[(size_t)t * n_out + o], dot, 0.02 * mag + 1e-6) << quant::type_name(type);
            }
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

INSTANTIATE_TEST_SUITE_P(AllTypes, MatmulTest, ::testing::ValuesIn(computable_types()),
                         [](const auto& info) { return std::string(quant::type_name(info.param)); });

}  // namespace
}  // namespace hearth::backend
