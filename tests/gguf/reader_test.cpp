// GGUF reader on valid input: writer → reader round trips of every value type, alignment,
// version 2, zero-copy tensor views, the typed getters, and every shared model and vocabulary.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "gguf/gguf.h"
#include "gguf_test_util.h"
#include "support/testdata.h"

namespace hearth::gguf {
namespace {

using quant::QuantType;
using test::same_value;

Value scalar(ValueType t, uint64_t u, int64_t i = 0, double f = 0) {
    Value v;
    v.type = t;
    v.u = u;
    v.i = i;
    v.f = f;
    return v;
}

std::vector<std::byte> pattern(size_t n, uint8_t seed) {
    std::vector<std::byte> b(n);
    for (size_t i = 0; i < n; ++i) b[i] = (std::byte)(uint8_t)(seed + i * 7);
    return b;
}

// Every value type, each scalar at its extremes, plus nested and empty arrays.
Metadata every_value_type() {
    Metadata m;
    m.set("t.u8", scalar(ValueType::u8, 255));
    m.set("t.i8", scalar(ValueType::i8, 0, -128));
    m.set("t.u16", scalar(ValueType::u16, 65535));
    m.set("t.i16", scalar(ValueType::i16, 0, -32768));
    m.set("t.u32", Value::make_u32(std::numeric_limits<uint32_t>::max()));
    m.set("t.i32", Value::make_i32(std::numeric_limits<int32_t>::min()));
    m.set("t.u64", Value::make_u64(std::numeric_limits<uint64_t>::max()));
    m.set("t.i64", scalar(ValueType::i64, 0, std::numeric_limits<int64_t>::min()));
    m.set("t.f32", Value::make_f32(-1.5e-3f));
    m.set("t.f64", scalar(ValueType::f64, 0, 0, 3.141592653589793));
    m.set("t.bool.true", Value::make_bool(true));
    m.set("t.bool.false", Value::make_bool(false));
    m.set("t.string", Value::make_string(std::string("h\xc3\xa9llo\0world", 12)));
    m.set("t.string.empty", Value::make_string(""));
    m.set("t.arr.u8", Value::make_array(ValueType::u8, {scalar(ValueType::u8, 0), scalar(ValueType::u8, 200)}));
    m.set("t.arr.i8", Value::make_array(ValueType::i8, {scalar(ValueType::i8, 0, -1)}));
    m.set("t.arr.u16", Value::make_array(ValueType::u16, {scalar(ValueType::u16, 7)}));
    m.set("t.arr.i16", Value::make_array(ValueType::i16, {scalar(ValueType::i16, 0, -7)}));
    m.set("t.arr.u32", Value::make_array(ValueType::u32, {Value::make_u32(1), Value::make_u32(2)}));
    m.set("t.arr.i32", Value::make_i32_array({-1, 0, 1}));
    m.set("t.arr.u64", Value::make_array(ValueType::u64, {Value::make_u64(1ull << 63)}));
    m.set("t.arr.i64", Value::make_array(ValueType::i64, {scalar(ValueType::i64, 0, -5)}));
    m.set("t.arr.f32", Value::make_f32_array({0.5f, -2.f, 1e30f}));
    m.set("t.arr.f64", Value::make_array(ValueType::f64, {scalar(ValueType::f64, 0, 0, 1e-300)}));
    m.set("t.arr.bool", Value::make_array(ValueType::boolean, {Value::make_bool(true), Value::make_bool(false)}));
    m.set("t.arr.string", Value::make_string_array({"a", "", "ccc"}));
    m.set("t.arr.arr.string",
          Value::make_array(ValueType::array, {Value::make_string_array({"x", "y"}), Value::make_string_array({}),
                                               Value::make_string_array({"z"})}));
    m.set("t.arr.arr.arr.i32",
          Value::make_array(ValueType::array,
                            {Value::make_array(ValueType::array, {Value::make_i32_array({1, 2}), Value::make_i32_array({})})}));
    m.set("t.arr.empty.u8", Value::make_array(ValueType::u8, {}));
    m.set("t.arr.empty.string", Value::make_string_array({}));
    m.set("t.arr.empty.array", Value::make_array(ValueType::array, {}));
    return m;
}

TEST(GgufReader, RoundTripsEveryValueType) {
    const Metadata want = every_value_type();
    GgufWriter w;
    for (const auto& [k, v] : want.entries()) w.set(k, v);
    auto bytes = w.serialize();
    ASSERT_TRUE(bytes.ok()) << bytes.status().message();
    auto f = parse_gguf(bytes.value());
    ASSERT_TRUE(f.ok()) << f.status().message();
    EXPECT_EQ(f->version, 3u);
    EXPECT_EQ(f->alignment, 32u);
    EXPECT_TRUE(f->tensors.empty());
    ASSERT_EQ(f->meta.entries().size(), want.entries().size());
    for (size_t i = 0; i < want.entries().size(); ++i) {
        const auto& [key, value] = want.entries()[i];
        EXPECT_EQ(f->meta.entries()[i].first, key);  // order kept
        EXPECT_TRUE(same_value(f->meta.entries()[i].second, value)) << key;
    }
    // Spot checks through the typed getters.
    EXPECT_EQ(f->meta.get_string("t.string").value(), std::string("h\xc3\xa9llo\0world", 12));
    EXPECT_EQ(f->meta.get_int("t.i64").value(), std::numeric_limits<int64_t>::min());
    EXPECT_EQ(f->meta.get_int("t.u8").value(), 255);
    EXPECT_FLOAT_EQ((float)f->meta.get_float("t.f32").value(), -1.5e-3f);
    EXPECT_EQ(f->meta.get_string_array("t.arr.string").value(), (std::vector<std::string>{"a", "", "ccc"}));
    EXPECT_TRUE(f->meta.get_string_array("t.arr.empty.string").value().empty());
    const Value* nested = f->meta.find("t.arr.arr.string");
    ASSERT_NE(nested, nullptr);
    ASSERT_EQ(nested->items.size(), 3u);
    EXPECT_EQ(nested->items[0].items[1].str, "y");
    EXPECT_TRUE(nested->items[1].items.empty());
    EXPECT_EQ(nested->items[1].elem_type, ValueType::string);
}

TEST(GgufReader, RoundTripsTensorsOfEveryKnownType) {
    GgufWriter w;
    std::vector<std::vector<std::byte>> datas;
    std::vector<std::string> names;
    for (uint32_t id = 0; id < 64; ++id) {
        const quant::TypeTraits* tr = quant::find_traits(id);
        if (!tr) continue;
        const std::vector<int64_t> ne = {tr->block_size * 2, 3};
        datas.push_back(pattern(tr->type_size * 6, (uint8_t)id));
        names.push_back(std::string("t.") + tr->name);
        ASSERT_TRUE(w.add_tensor(names.back(), (QuantType)id, ne, datas.back()).ok()) << tr->name;
    }
    auto bytes = w.serialize();
    ASSERT_TRUE(bytes.ok());
    auto f = parse_gguf(bytes.value());
    ASSERT_TRUE(f.ok()) << f.status().message();
    ASSERT_EQ(f->tensors.size(), datas.size());
    for (size_t i = 0; i < datas.size(); ++i) {
        const TensorInfo* t = f->find_tensor(names[i]);
        ASSERT_NE(t, nullptr) << names[i];
        EXPECT_EQ(t->n_dims, 2);
        EXPECT_EQ(t->ne[1], 3);
        EXPECT_EQ(t->n_bytes, datas[i].size());
        EXPECT_EQ(std::memcmp(t->data, datas[i].data(), datas[i].size()), 0) << names[i];
    }
    EXPECT_EQ(f->find_tensor("missing"), nullptr);
}

// Tensor sizes that are not multiples of the alignment, so every offset needs padding.
GgufWriter odd_sized_tensors(uint64_t alignment, std::vector<std::vector<std::byte>>& datas) {
    GgufWriter w(alignment);
    w.set("general.architecture", Value::make_string("llama"));
    datas = {pattern(12, 1), pattern(34, 2), pattern(10, 3), pattern(4 * 7 * 2 * 3, 4)};
    EXPECT_TRUE(w.add_tensor("a", QuantType::f32, {3}, datas[0]).ok());
    EXPECT_TRUE(w.add_tensor("b", QuantType::q8_0, {32}, datas[1]).ok());
    EXPECT_TRUE(w.add_tensor("c", QuantType::f16, {5}, datas[2]).ok());
    EXPECT_TRUE(w.add_tensor("d", QuantType::f32, {7, 2, 3}, datas[3]).ok());
    return w;
}

TEST(GgufReader, HonorsCustomAlignment) {
    for (uint64_t alignment : {1ull, 8ull, 64ull, 4096ull}) {
        SCOPED_TRACE(alignment);
        std::vector<std::vector<std::byte>> datas;
        auto bytes = odd_sized_tensors(alignment, datas).serialize();
        ASSERT_TRUE(bytes.ok()) << bytes.status().message();
        auto f = parse_gguf(bytes.value());
        ASSERT_TRUE(f.ok()) << f.status().message();
        EXPECT_EQ(f->alignment, alignment);
        if (alignment != 32) {
            EXPECT_EQ(f->meta.get_int("general.alignment").value(), (int64_t)alignment);
        }
        EXPECT_EQ(f->data_offset % alignment, 0u);
        ASSERT_EQ(f->tensors.size(), 4u);
        uint64_t expect_offset = 0;
        for (size_t i = 0; i < 4; ++i) {
            const TensorInfo& t = f->tensors[i];
            EXPECT_EQ(t.offset, expect_offset) << t.name;
            EXPECT_EQ(t.offset % alignment, 0u) << t.name;
            EXPECT_EQ((uint64_t)(t.data - bytes->data()) % alignment, 0u) << t.name;
            EXPECT_EQ(std::memcmp(t.data, datas[i].data(), datas[i].size()), 0) << t.name;
            expect_offset += (t.n_bytes + alignment - 1) / alignment * alignment;
        }
        EXPECT_EQ(bytes->size(), f->data_offset + expect_offset);
    }
}

TEST(GgufReader, AlignmentFromMetadataWins) {
    std::vector<std::vector<std::byte>> datas;
    GgufWriter w = odd_sized_tensors(32, datas);
    w.set("general.alignment", Value::make_u32(128));
    auto bytes = w.serialize();
    ASSERT_TRUE(bytes.ok()) << bytes.status().message();
    auto f = parse_gguf(bytes.value());
    ASSERT_TRUE(f.ok()) << f.status().message();
    EXPECT_EQ(f->alignment, 128u);
    for (const TensorInfo& t : f->tensors) EXPECT_EQ(t.offset % 128, 0u) << t.name;
}

TEST(GgufReader, ReadsVersion2) {
    std::vector<std::vector<std::byte>> datas;
    GgufWriter w = odd_sized_tensors(32, datas);
    w.set("tokenizer.ggml.tokens", Value::make_string_array({"<s>", "</s>", "hi"}));
    auto bytes = w.serialize();
    ASSERT_TRUE(bytes.ok());
    // Version 2 has the same layout as 3 (64-bit counts and lengths); only the field differs.
    std::vector<std::byte> v2 = bytes.value();
    const uint32_t version = 2;
    std::memcpy(v2.data() + 4, &version, 4);
    auto f3 = parse_gguf(bytes.value());
    auto f2 = parse_gguf(v2);
    ASSERT_TRUE(f3.ok());
    ASSERT_TRUE(f2.ok()) << f2.status().message();
    EXPECT_EQ(f2->version, 2u);
    EXPECT_EQ(f3->version, 3u);
    EXPECT_EQ(f2->meta.get_string_array("tokenizer.ggml.tokens").value(),
              (std::vector<std::string>{"<s>", "</s>", "hi"}));
    ASSERT_EQ(f2->tensors.size(), f3->tensors.size());
    for (size_t i = 0; i < f2->tensors.size(); ++i) {
        EXPECT_EQ(f2->tensors[i].offset, f3->tensors[i].offset);
        EXPECT_EQ(std::memcmp(f2->tensors[i].data, datas[i].data(), datas[i].size()), 0);
    }
}

TEST(GgufReader, TensorViewsAreZeroCopy) {
    std::vector<std::vector<std::byte>> datas;
    auto bytes = odd_sized_tensors(64, datas).serialize();
    ASSERT_TRUE(bytes.ok());
    const std::span<const std::byte> span = bytes.value();
    auto f = parse_gguf(span);
    ASSERT_TRUE(f.ok());
    EXPECT_EQ(f->bytes.data(), span.data());
    EXPECT_EQ(f->mapping, nullptr);
    for (size_t i = 0; i < f->tensors.size(); ++i) {
        const TensorInfo& t = f->tensors[i];
        EXPECT_EQ(t.data, span.data() + f->data_offset + t.offset) << t.name;
        EXPECT_GE(t.data, span.data());
        EXPECT_LE(t.data + t.n_bytes, span.data() + span.size());
        ASSERT_EQ(t.n_bytes, datas[i].size());
        EXPECT_EQ(std::memcmp(t.data, datas[i].data(), t.n_bytes), 0) << t.name;
    }
    const TensorInfo* d = f->find_tensor("d");
    ASSERT_NE(d, nullptr);
    EXPECT_EQ(d->shape_string(), "[7, 2, 3]");
    EXPECT_EQ(d->n_elements(), 42);
    EXPECT_EQ(d->n_rows(), 6);
}

TEST(GgufReader, OpenGgufMapsAWrittenFile) {
    test::ScratchDir dir;
    ASSERT_FALSE(dir.path().empty());
    std::vector<std::vector<std::byte>> datas;
    ASSERT_TRUE(odd_sized_tensors(32, datas).write_file(dir.file("m.gguf")).ok());
    auto f = open_gguf(dir.file("m.gguf"));
    ASSERT_TRUE(f.ok()) << f.status().message();
    ASSERT_NE(f.value()->mapping, nullptr);
    EXPECT_EQ(f.value()->architecture(), "llama");
    const auto file = f.value()->mapping->bytes();
    for (size_t i = 0; i < datas.size(); ++i) {
        const TensorInfo& t = f.value()->tensors[i];
        EXPECT_GE(t.data, file.data());
        EXPECT_LE(t.data + t.n_bytes, file.data() + file.size());
        EXPECT_EQ(std::memcmp(t.data, datas[i].data(), datas[i].size()), 0);
    }
}

std::vector<std::string> files_ending(const std::string& dir, const std::string& suffix) {
    std::vector<std::string> out;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
        const std::string p = e.path().string();
        if (p.size() >= suffix.size() && p.compare(p.size() - suffix.size(), suffix.size(), suffix) == 0) out.push_back(p);
    }
    std::sort(out.begin(), out.end());
    return out;
}

TEST(GgufReader, OpensEverySharedTestModel) {
    const auto paths = files_ending(hearth::test::testdata_path("models"), ".gguf");
    ASSERT_FALSE(paths.empty()) << "no models under " << hearth::test::testdata_path("models");
    for (const auto& path : paths) {
        SCOPED_TRACE(path);
        auto f = open_gguf(path);
        ASSERT_TRUE(f.ok()) << f.status().message();
        const GgufFile& g = *f.value();
        EXPECT_FALSE(g.architecture().empty());
        EXPECT_FALSE(g.tensors.empty());
        const auto file = g.mapping->bytes();
        EXPECT_EQ(g.data_offset % g.alignment, 0u);
        for (const TensorInfo& t : g.tensors) {
            ASSERT_GE(t.data, file.data() + g.data_offset) << t.name;
            ASSERT_LE(t.n_bytes, (uint64_t)(file.data() + file.size() - t.data)) << t.name;
            EXPECT_EQ(t.n_bytes, quant::row_size(t.type, t.ne[0]) * (uint64_t)t.n_rows()) << t.name;
            EXPECT_EQ(g.find_tensor(t.name), &t);
        }
    }
}

TEST(GgufReader, ParsesEveryGzippedVocabulary) {
    const auto paths = files_ending(hearth::test::testdata_path("tokenizers"), ".gguf.gz");
    ASSERT_FALSE(paths.empty());
    for (const auto& path : paths) {
        SCOPED_TRACE(path);
        std::vector<uint8_t> raw;
        ASSERT_TRUE(hearth::test::read_gzip_file(path, raw));
        auto f = parse_gguf(test::as_bytes(raw));
        ASSERT_TRUE(f.ok()) << f.status().message();
        EXPECT_TRUE(f->tensors.empty());
        auto model = f->meta.get_string("tokenizer.ggml.model");
        ASSERT_TRUE(model.ok()) << model.status().message();
        auto tokens = f->meta.get_string_array("tokenizer.ggml.tokens");
        ASSERT_TRUE(tokens.ok()) << tokens.status().message();
        EXPECT_GT(tokens->size(), 100u);
    }
}

// --- typed getters ---

Metadata getter_fixture() {
    Metadata m;
    m.set("s", Value::make_string("text"));
    m.set("u", Value::make_u32(7));
    m.set("neg", Value::make_i32(-3));
    m.set("big", Value::make_u64(std::numeric_limits<uint64_t>::max()));
    m.set("f", Value::make_f32(0.25f));
    m.set("b", Value::make_bool(true));
    m.set("strs", Value::make_string_array({"a", "b"}));
    m.set("ints", Value::make_i32_array({4, 5}));
    m.set("floats", Value::make_f32_array({1.5f}));
    m.set("nested", Value::make_array(ValueType::array, {Value::make_string_array({"x"})}));
    return m;
}

void expect_wrong_type(const Status& st, const std::string& key) {
    EXPECT_EQ(st.code(), StatusCode::invalid_argument) << st.message();
    EXPECT_NE(st.message().find(key), std::string::npos) << st.message();
}

TEST(GgufMetadata, GettersReturnValuesOfCompatibleTypes) {
    const Metadata m = getter_fixture();
    EXPECT_EQ(m.get_int("u").value(), 7);
    EXPECT_EQ(m.get_int("neg").value(), -3);
    EXPECT_EQ(m.get_int("b").value(), 1);
    EXPECT_EQ(m.get_u32("u").value(), 7u);
    EXPECT_DOUBLE_EQ(m.get_float("f").value(), 0.25);
    EXPECT_DOUBLE_EQ(m.get_float("u").value(), 7.0);
    EXPECT_TRUE(m.get_bool("b").value());
    EXPECT_EQ(m.get_string("s").value(), "text");
    EXPECT_EQ(m.get_string_array("strs").value(), (std::vector<std::string>{"a", "b"}));
    EXPECT_EQ(m.get_int_array("ints").value(), (std::vector<int64_t>{4, 5}));
    EXPECT_EQ(m.get_f32_array("ints").value(), (std::vector<float>{4.f, 5.f}));
    EXPECT_EQ(m.get_f32_array("floats").value(), (std::vector<float>{1.5f}));
    EXPECT_EQ(m.get_int_or("absent", 9).value(), 9);
    EXPECT_EQ(m.get_int_or("u", 9).value(), 7);
    EXPECT_DOUBLE_EQ(m.get_float_or("absent", 2.5).value(), 2.5);
    EXPECT_FALSE(m.get_bool_or("absent", false).value());
    EXPECT_EQ(m.get_string_or("absent", "def").value(), "def");
}

TEST(GgufMetadata, WrongTypeIsInvalidArgumentNamingTheKey) {
    const Metadata m = getter_fixture();
    expect_wrong_type(m.get_int("s").status(), "s");
    expect_wrong_type(m.get_int("f").status(), "f");
    expect_wrong_type(m.get_int("big").status(), "big");  // u64 above INT64_MAX
    expect_wrong_type(m.get_u32("neg").status(), "neg");   // out of range
    expect_wrong_type(m.get_float("s").status(), "s");
    expect_wrong_type(m.get_bool("s").status(), "s");
    expect_wrong_type(m.get_string("u").status(), "u");
    expect_wrong_type(m.get_string("strs").status(), "strs");
    expect_wrong_type(m.get_string_array("ints").status(), "ints");
    expect_wrong_type(m.get_string_array("s").status(), "s");
    expect_wrong_type(m.get_string_array("nested").status(), "nested");
    expect_wrong_type(m.get_int_array("strs").status(), "strs");
    expect_wrong_type(m.get_int_array("u").status(), "u");
    expect_wrong_type(m.get_f32_array("strs").status(), "strs");
    expect_wrong_type(m.get_int_or("s", 1).status(), "s");  // a default does not hide a wrong type
    expect_wrong_type(m.get_float_or("s", 1).status(), "s");
    expect_wrong_type(m.get_bool_or("s", true).status(), "s");
    expect_wrong_type(m.get_string_or("u", "x").status(), "u");
    // The message also names the types.
    const std::string msg = m.get_string("u").status().message();
    EXPECT_NE(msg.find("string"), std::string::npos) << msg;
    EXPECT_NE(msg.find("u32"), std::string::npos) << msg;
}

TEST(GgufMetadata, MissingKeyIsNotFoundNamingTheKey) {
    const Metadata m = getter_fixture();
    const std::string key = "llama.block_count";
    for (const Status& st : {m.get_int(key).status(), m.get_u32(key).status(), m.get_float(key).status(),
                             m.get_bool(key).status(), m.get_string(key).status(), m.get_string_array(key).status(),
                             m.get_f32_array(key).status(), m.get_int_array(key).status()}) {
        EXPECT_EQ(st.code(), StatusCode::not_found) << st.message();
        EXPECT_NE(st.message().find(key), std::string::npos) << st.message();
    }
    EXPECT_FALSE(m.has(key));
    EXPECT_EQ(m.find(key), nullptr);
}

TEST(GgufMetadata, SetReplacesInPlace) {
    Metadata m;
    m.set("a", Value::make_u32(1));
    m.set("b", Value::make_u32(2));
    m.set("a", Value::make_string("x"));
    ASSERT_EQ(m.entries().size(), 2u);
    EXPECT_EQ(m.entries()[0].first, "a");
    EXPECT_EQ(m.get_string("a").value(), "x");
}

}  // namespace
}  // namespace hearth::gguf
