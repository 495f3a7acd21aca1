// Our quantizers against llama-quantize: quantizing the shipped F16 weights must reproduce the
// shipped quantized files byte for byte (their weights are F16-exact, so llama-quantize from
// the F32 source and from the F16 file give identical bytes; testdata/README.md).
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <map>
#include <string>

#include "gguf/gguf.h"
#include "quant/types.h"
#include "support/testdata.h"

namespace hearth::quant {
namespace {

struct Tally {
    int64_t tensors = 0, tensors_identical = 0;
    int64_t rows = 0, rows_identical = 0;
};

// Requantizes every tensor of `quantized` from the same-named tensor of `source`, row by row.
// Returns per-type counts; adds a failure for each tensor that differs.
std::map<QuantType, Tally> requantize_and_compare(const std::string& source, const std::string& quantized) {
    std::map<QuantType, Tally> tally;
    auto src = gguf::open_gguf(hearth::test::testdata_path("models/" + source));
    auto dst = gguf::open_gguf(hearth::test::testdata_path("models/" + quantized));
    if (!src.ok() || !dst.ok()) {
        ADD_FAILURE() << "cannot open " << source << " or " << quantized;
        return tally;
    }
    for (const gguf::TensorInfo& q : (*dst)->tensors) {
        const gguf::TensorInfo* s = (*src)->find_tensor(q.name);
        if (!s) {
            ADD_FAILURE() << q.name << " missing from " << source;
            continue;
        }
        const TypeTraits& st = traits(s->type);
        const TypeTraits& qt = traits(q.type);
        if (!st.dequantize_row || !qt.quantize_row) {
            ADD_FAILURE() << q.name << ": no kernels for " << type_name(q.type);
            continue;
        }
        const int64_t row_len = q.ne[0];
        const size_t src_row_bytes = row_size(s->type, row_len);
        const size_t dst_row_bytes = row_size(q.type, row_len);
        std::vector<float> row((size_t)row_len);              // [row_len] f32
        std::vector<std::byte> requantized(dst_row_bytes);    // one row of q.type
        Tally& t = tally[q.type];
        int64_t rows_identical = 0;
        for (int64_t r = 0; r < q.n_rows(); ++r) {
            st.dequantize_row(s->data + r * src_row_bytes, row.data(), row_len);
            qt.quantize_row(row.data(), requantized.data(), row_len);
            if (std::memcmp(requantized.data(), q.data + r * dst_row_bytes, dst_row_bytes) == 0) ++rows_identical;
        }
        t.tensors++;
        t.rows += q.n_rows();
        t.rows_identical += rows_identical;
        if (rows_identical == q.n_rows()) {
            t.tensors_identical++;
        } else {
            ADD_FAILURE() << quantized << " " << q.name << " (" << type_name(q.type) << "): "
                          << q.n_rows() - rows_identical << " of " << q.n_rows() << " rows differ";
        }
    }
    for (const auto& [type, t] : tally) {
        std::printf("  %-28s %-7s %3lld/%3lld tensors, %6lld/%6lld rows byte-identical\n", quantized.c_str(),
                    type_name(type), (long long)t.tensors_identical, (long long)t.tensors,
                    (long long)t.rows_identical, (long long)t.rows);
    }
    return tally;
}

class Requantize : public testing::TestWithParam<const char*> {};

TEST_P(Requantize, ByteIdenticalToLlamaQuantize) {
    const std::string quantized = GetParam();
    const std::string model = quantized.substr(0, quantized.find('.'));
    requantize_and_compare(model + ".F16.gguf", quantized);
}

INSTANTIATE_TEST_SUITE_P(
    ShippedFiles, Requantize,
    testing::Values("llama3-tiny.Q8_0.gguf", "llama3-tiny.Q6_K.gguf", "llama3-tiny.Q5_1.gguf",
                    "llama3-tiny.Q5_K_M.gguf", "llama3-tiny.Q5_0.gguf", "llama3-tiny.Q4_1.gguf",
                    "llama3-tiny.Q4_K_M.gguf", "llama3-tiny.Q4_0.gguf", "llama3-tiny.IQ4_NL.gguf",
                    "llama3-tiny.IQ4_XS.gguf", "llama3-tiny.Q3_K_M.gguf", "llama3-tiny.Q2_K.gguf",
                    "llama3-tiny.BF16.gguf", "qwen3moe-tiny.MXFP4_MOE.gguf", "qwen3moe-tiny.Q8_0.gguf",
                    "gpt-oss-tiny.MXFP4_MOE.gguf", "phi3-tiny.Q4_K_M.gguf", "mixtral-tiny.Q4_0.gguf"),
    [](const testing::TestParamInfo<const char*>& info) {
        std::string name = info.param;
        name = name.substr(0, name.size() - 5);
        for (char& c : name) {
            if (!std::isalnum((unsigned char)c)) c = '_';
        }
        return name;
    });

}  // namespace
}  // namespace hearth::quant
