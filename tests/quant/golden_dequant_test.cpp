// Dequantization must equal llama.cpp's exactly: the first rows of one tensor per type,
// dequantized by llama.cpp (testdata/golden/dequant, see testdata/README.md), compared bit for
// bit with our dequantize_row of the same tensor bytes.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "gguf/gguf.h"
#include "quant/types.h"
#include "support/testdata.h"

namespace hearth::quant {
namespace {

TEST(GoldenDequant, ExactlyMatchesLlamaCpp) {
    const std::string index_path = hearth::test::testdata_path("golden/dequant/index.json");
    const std::string text = hearth::test::read_text_file(index_path);
    ASSERT_FALSE(text.empty()) << "cannot read " << index_path;
    const nlohmann::json index = nlohmann::json::parse(text);
    ASSERT_TRUE(index.is_array());

    std::set<std::string> types_seen;
    for (const auto& entry : index) {
        const std::string model = entry.at("model");
        const std::string tensor = entry.at("tensor");
        const std::string ggml_type = entry.at("ggml_type");
        const int64_t rows = entry.at("rows_dumped");
        SCOPED_TRACE(model + " " + tensor + " " + ggml_type);

        auto file = gguf::open_gguf(hearth::test::testdata_path("models/" + model));
        ASSERT_TRUE(file.ok()) << file.status().message();
        const gguf::TensorInfo* info = (*file)->find_tensor(tensor);
        ASSERT_NE(info, nullptr);
        const std::optional<QuantType> type = parse_type_name(ggml_type);
        ASSERT_TRUE(type.has_value());
        ASSERT_EQ(info->type, *type);
        const std::vector<int64_t> ne = entry.at("ne");
        for (size_t d = 0; d < ne.size(); ++d) ASSERT_EQ(info->ne[d], ne[d]);

        const std::vector<float> golden =
            hearth::test::read_f32_file(hearth::test::testdata_path("golden/dequant/" + entry.at("file").get<std::string>()));
        const int64_t row_len = info->ne[0];
        ASSERT_EQ((int64_t)golden.size(), rows * row_len);

        // Rows are contiguous, so the first `rows` rows (of expert 0 for 3-D tensors) are
        // one run of rows * row_len elements from the start of the tensor.
        const TypeTraits& t = traits(*type);
        ASSERT_NE(t.dequantize_row, nullptr);
        std::vector<float> out((size_t)(rows * row_len));
        for (int64_t r = 0; r < rows; ++r) {
            t.dequantize_row(info->data + r * row_size(*type, row_len), out.data() + r * row_len, row_len);
        }
        int64_t n_diff = 0;
        for (size_t i = 0; i < out.size(); ++i) {
            uint32_t a, b;
            std::memcpy(&a, &out[i], 4);
            std::memcpy(&b, &golden[i], 4);
            if (a != b && n_diff++ < 5) {
                ADD_FAILURE() << "element " << i << ": got " << out[i] << ", llama.cpp " << golden[i];
            }
        }
        EXPECT_EQ(n_diff, 0);
        types_seen.insert(ggml_type);
    }
    // The index covers every type the README lists.
    EXPECT_EQ(types_seen.size(), 15u);
}

}  // namespace
}  // namespace hearth::quant
