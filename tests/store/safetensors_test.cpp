// store/safetensors: parsing valid files (every dtype, metadata, empty and zero-size tensors,
// unaligned data), float conversion, checkpoint folders (one file, shards with an index), and
// every malformed input as a clear error — never a crash, including every truncation and many
// random corruptions of a valid file.
#include "store/safetensors.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "base/fp16.h"

namespace hearth::store {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;

std::vector<std::byte> bytes_of(const std::vector<float>& v) {
    std::vector<std::byte> out(v.size() * 4);
    std::memcpy(out.data(), v.data(), out.size());
    return out;
}

std::vector<std::byte> halves_of(const std::vector<float>& v, bool bf16) {
    std::vector<std::byte> out(v.size() * 2);
    for (size_t i = 0; i < v.size(); ++i) {
        const uint16_t h = bf16 ? f32_to_bf16(v[i]) : f32_to_fp16(v[i]);
        std::memcpy(out.data() + 2 * i, &h, 2);
    }
    return out;
}

// A file from a raw header string and data bytes (for malformed headers).
std::vector<std::byte> raw_file(const std::string& header, size_t n_data = 0) {
    std::vector<std::byte> out(8 + header.size() + n_data);
    const uint64_t n = header.size();
    for (int i = 0; i < 8; ++i) out[i] = static_cast<std::byte>((n >> (8 * i)) & 0xff);
    std::memcpy(out.data() + 8, header.data(), header.size());
    return out;
}

std::vector<std::byte> sample_file() {
    const std::vector<float> a = {1.0f, -2.5f, 3.25f, 0.0f, 65504.0f, -0.000061035156f};
    const auto a32 = bytes_of(a), a16 = halves_of(a, false), abf = halves_of(a, true);
    const std::vector<std::byte> i64(3 * 8, std::byte{1});
    const std::vector<StTensorData> ts = {
        {"w.f32", StDtype::f32, {2, 3}, a32},
        {"w.f16", StDtype::f16, {3, 2}, a16},
        {"w.bf16", StDtype::bf16, {6}, abf},
        {"idx", StDtype::i64, {3}, i64},
        {"empty", StDtype::f32, {0, 4}, {}},
        {"scalar", StDtype::f16, {}, std::span(a16).subspan(0, 2)},
    };
    auto r = build_safetensors(ts, {{"format", "pt"}, {"note", "x"}});
    EXPECT_TRUE(r.ok()) << r.status().message();
    return r.value();
}

TEST(Safetensors, ParsesEveryFieldAndConverts) {
    const std::vector<std::byte> file = sample_file();
    auto r = parse_safetensors(file, "sample.safetensors");
    ASSERT_TRUE(r.ok()) << r.status().message();
    const SafetensorsFile& f = r.value();
    EXPECT_EQ(f.tensors.size(), 6u);
    EXPECT_EQ(f.metadata.at("format"), "pt");
    EXPECT_EQ(f.metadata.at("note"), "x");
    // Data-offset order: the order they were written in (zero-size ones sit where they were).
    EXPECT_EQ(f.tensors[0].name, "w.f32");
    const StTensor* t = f.find("w.f16");
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(t->dtype, StDtype::f16);
    EXPECT_EQ(t->shape_string(), "[3, 2]");
    EXPECT_EQ(t->n_rows(), 3);
    EXPECT_EQ(t->row_length(), 2);
    EXPECT_EQ(f.find("nope"), nullptr);
    EXPECT_EQ(f.find("scalar")->n_elements(), 1);
    EXPECT_EQ(f.find("empty")->n_elements(), 0);
    EXPECT_EQ(f.find("idx")->data.size(), 24u);

    const std::vector<float> want = {1.0f, -2.5f, 3.25f, 0.0f, 65504.0f, -0.000061035156f};
    std::vector<float> got(6);
    for (const char* name : {"w.f32", "w.f16", "w.bf16"}) {
        const StTensor* x = f.find(name);
        ASSERT_TRUE(read_rows_f32(*x, 0, x->n_rows(), got).ok()) << name;
        for (size_t i = 0; i < 6; ++i) {
            const float w = x->dtype == StDtype::bf16 ? bf16_to_f32(f32_to_bf16(want[i])) : want[i];
            EXPECT_EQ(got[i], w) << name << " " << i;
        }
    }
    std::vector<float> row(3);
    ASSERT_TRUE(read_rows_f32(*f.find("w.f32"), 1, 1, row).ok());
    EXPECT_EQ(row, (std::vector<float>{0.0f, 65504.0f, -0.000061035156f}));
    EXPECT_EQ(read_rows_f32(*f.find("w.f32"), 1, 2, std::span(got).subspan(0, 6)).code(), StatusCode::out_of_range);
    std::vector<float> three(3);
    const Status st = read_rows_f32(*f.find("idx"), 0, 3, three);
    EXPECT_EQ(st.code(), StatusCode::unsupported);
    EXPECT_NE(st.message().find("I64"), std::string::npos) << st.message();
}

TEST(Safetensors, UnalignedDataAndEmptyFile) {
    // A header of odd length puts the data at an odd offset: values are copied, not cast.
    const std::vector<float> v = {1.5f, -7.0f};
    const auto b = bytes_of(v);
    json h = {{"x", {{"dtype", "F32"}, {"shape", {2}}, {"data_offsets", {0, 8}}}}};
    std::string text = h.dump() + " ";
    if (text.size() % 2 == 0) text += " ";
    std::vector<std::byte> file = raw_file(text, 8);
    std::memcpy(file.data() + 8 + text.size(), b.data(), 8);
    auto r = parse_safetensors(file);
    ASSERT_TRUE(r.ok()) << r.status().message();
    std::vector<float> got(2);
    ASSERT_TRUE(read_rows_f32(r->tensors[0], 0, 2, got).ok());  // 1-D: one value per row
    EXPECT_EQ(got, v);

    auto e = parse_safetensors(raw_file("{}"));
    ASSERT_TRUE(e.ok());
    EXPECT_TRUE(e->tensors.empty());
}

struct Bad {
    std::string header;
    size_t n_data;
    const char* expect;
};

TEST(Safetensors, MalformedHeadersAreClearErrors) {
    const Bad cases[] = {
        {"[]", 0, "not a JSON object"},
        {"{\"a\": ", 0, "not valid JSON"},
        {"  {}", 0, "not a JSON object"},
        {R"({"a": 3})", 0, "entry is not an object"},
        {R"({"a": {"shape": [1], "data_offsets": [0, 4]}})", 4, "dtype"},
        {R"({"a": {"dtype": "F32", "data_offsets": [0, 4]}})", 4, "shape"},
        {R"({"a": {"dtype": "F32", "shape": [1]}})", 4, "data_offsets"},
        {R"({"a": {"dtype": "F33", "shape": [1], "data_offsets": [0, 4]}})", 4, "unknown dtype 'F33'"},
        {R"({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}})", 4, "dimension"},
        {R"({"a": {"dtype": "F32", "shape": [1.5], "data_offsets": [0, 4]}})", 4, "dimension"},
        {R"({"a": {"dtype": "F32", "shape": [1099511627777, 2], "data_offsets": [0, 4]}})", 4, "dimension"},
        {R"({"a": {"dtype": "F32", "shape": [1048576, 1048576, 1048576], "data_offsets": [0, 4]}})", 4, "overflows"},
        {R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 8]}})", 4, "run past"},
        {R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}})", 4, "reversed"},
        {R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}})", 8, "expected 8"},
        {R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [-4, 0]}})", 8, "non-negative"},
        {R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4, 8]}})", 8, "data_offsets"},
        {R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
         12, "overlap"},
        {R"({"__metadata__": {"k": 1}})", 0, "__metadata__.k"},
        {R"({"__metadata__": []})", 0, "__metadata__"},
        {R"({"": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})", 4, "empty name"},
        {std::string(40, '[') + std::string(40, ']'), 0, "not a JSON object"},
        {"{\"a\": " + std::string(40, '[') + std::string(40, ']') + "}", 0, "nested too deeply"},
    };
    for (const Bad& b : cases) {
        auto r = parse_safetensors(raw_file(b.header, b.n_data), "bad.safetensors");
        ASSERT_FALSE(r.ok()) << b.header;
        EXPECT_EQ(r.status().code(), StatusCode::corrupt) << b.header;
        EXPECT_NE(r.status().message().find(b.expect), std::string::npos) << b.header << " -> " << r.status().message();
        EXPECT_NE(r.status().message().find("bad.safetensors"), std::string::npos) << r.status().message();
    }
}

TEST(Safetensors, SizeFieldProblems) {
    std::vector<std::byte> tiny(5);
    auto r = parse_safetensors(tiny, "t");
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("too short"), std::string::npos);

    std::vector<std::byte> huge = raw_file("{}");
    const uint64_t n = kMaxSafetensorsHeader + 1;
    for (int i = 0; i < 8; ++i) huge[i] = static_cast<std::byte>((n >> (8 * i)) & 0xff);
    r = parse_safetensors(huge, "t");
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("limit"), std::string::npos) << r.status().message();

    std::vector<std::byte> past = raw_file("{}");
    past[0] = std::byte{200};
    r = parse_safetensors(past, "t");
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("truncated"), std::string::npos) << r.status().message();
}

TEST(Safetensors, EveryTruncationAndRandomCorruptionIsAnErrorNotACrash) {
    const std::vector<std::byte> file = sample_file();
    for (size_t n = 0; n < file.size(); ++n) {
        auto r = parse_safetensors(std::span(file).subspan(0, n));
        // A cut inside the data section leaves the header intact but its offsets past the end.
        EXPECT_FALSE(r.ok()) << n;
    }
    std::mt19937 rng(11);
    int n_ok = 0;
    for (int iter = 0; iter < 3000; ++iter) {
        std::vector<std::byte> f = file;
        const int flips = 1 + (int)(rng() % 4);
        for (int k = 0; k < flips; ++k) f[rng() % f.size()] = static_cast<std::byte>(rng() & 0xff);
        auto r = parse_safetensors(f);
        if (!r.ok()) continue;
        ++n_ok;
        // Whatever parsed is internally consistent: every view lies inside the file.
        for (const StTensor& t : r->tensors) {
            EXPECT_GE(t.data.data(), f.data());
            EXPECT_LE(t.data.data() + t.data.size(), f.data() + f.size());
            EXPECT_EQ(t.data.size(), (size_t)t.n_elements() * st_dtype_size(t.dtype));
            if (is_st_float(t.dtype) && t.n_rows() > 0) {
                std::vector<float> out((size_t)t.n_elements());
                EXPECT_TRUE(read_rows_f32(t, 0, t.n_rows(), out).ok());
            }
        }
    }
    EXPECT_GT(n_ok, 0);  // flips inside tensor data keep the file valid
}

TEST(Safetensors, BuildRejectsBadInput) {
    const std::vector<std::byte> four(4);
    std::vector<StTensorData> dup = {{"a", StDtype::f32, {1}, four}, {"a", StDtype::f32, {1}, four}};
    EXPECT_EQ(build_safetensors(dup).status().code(), StatusCode::invalid_argument);
    std::vector<StTensorData> size = {{"a", StDtype::f32, {2}, four}};
    EXPECT_EQ(build_safetensors(size).status().code(), StatusCode::invalid_argument);
    std::vector<StTensorData> meta = {{"__metadata__", StDtype::f32, {1}, four}};
    EXPECT_EQ(build_safetensors(meta).status().code(), StatusCode::invalid_argument);
    auto ok = build_safetensors(std::vector<StTensorData>{{"a", StDtype::f32, {1}, four}});
    ASSERT_TRUE(ok.ok());
    EXPECT_EQ((ok->size() - 8 - 4) % 8, 0u);  // header padded to 8 bytes
}

TEST(Safetensors, DtypeNames) {
    for (const char* n : {"BOOL", "U8", "I8", "U16", "I16", "F16", "BF16", "U32", "I32", "F32", "U64", "I64", "F64",
                          "F8_E4M3", "F8_E5M2"}) {
        auto t = parse_st_dtype(n);
        ASSERT_TRUE(t.has_value()) << n;
        EXPECT_STREQ(st_dtype_name(*t), n);
    }
    EXPECT_FALSE(parse_st_dtype("f32").has_value());
    EXPECT_EQ(st_dtype_size(StDtype::bf16), 2u);
    EXPECT_EQ(st_dtype_size(StDtype::f64), 8u);
}

// Checkpoint folders.

struct Folder {
    fs::path path;
    explicit Folder(const std::string& tag) {
        path = fs::temp_directory_path() / ("hearth_st_" + std::to_string(getpid()) + "_" + tag);
        fs::remove_all(path);
        fs::create_directories(path);
    }
    ~Folder() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
    void write(const std::string& name, std::span<const std::byte> bytes) const {
        std::ofstream f(path / name, std::ios::binary);
        f.write(reinterpret_cast<const char*>(bytes.data()), (std::streamsize)bytes.size());
    }
    void write_text(const std::string& name, const std::string& text) const {
        std::ofstream f(path / name, std::ios::binary);
        f << text;
    }
};

std::vector<std::byte> one_tensor_file(const std::vector<std::string>& names) {
    static const std::vector<std::byte> four(4, std::byte{0});
    std::vector<StTensorData> ts;
    for (const std::string& n : names) ts.push_back({n, StDtype::f32, {1}, four});
    return build_safetensors(ts).value();
}

TEST(SafetensorsCheckpoint, SingleFileAndShards) {
    {
        Folder d("single");
        d.write("model.safetensors", one_tensor_file({"b", "a"}));
        d.write("consolidated.safetensors", one_tensor_file({"x"}));  // Mistral's other format: ignored
        auto ck = SafetensorsCheckpoint::open_dir(d.path.string());
        ASSERT_TRUE(ck.ok()) << ck.status().message();
        EXPECT_FALSE(ck->sharded());
        EXPECT_EQ(ck->tensors().size(), 2u);
        EXPECT_NE(ck->find("a"), nullptr);
        EXPECT_EQ(ck->find("x"), nullptr);
        EXPECT_EQ(ck->find("a")->file, "model.safetensors");
    }
    {
        Folder d("sharded");
        d.write("model-00001-of-00002.safetensors", one_tensor_file({"a", "b"}));
        d.write("model-00002-of-00002.safetensors", one_tensor_file({"c"}));
        d.write_text("model.safetensors.index.json",
                     R"({"metadata": {"total_size": 12}, "weight_map": {"a": "model-00001-of-00002.safetensors",
                         "b": "model-00001-of-00002.safetensors", "c": "model-00002-of-00002.safetensors"}})");
        auto ck = SafetensorsCheckpoint::open_dir(d.path.string());
        ASSERT_TRUE(ck.ok()) << ck.status().message();
        EXPECT_TRUE(ck->sharded());
        ASSERT_EQ(ck->tensors().size(), 3u);
        EXPECT_EQ(ck->tensors()[2]->name, "c");
        EXPECT_EQ(ck->find("c")->file, "model-00002-of-00002.safetensors");
    }
}

TEST(SafetensorsCheckpoint, Errors) {
    auto expect = [](const Folder& d, StatusCode code, const char* part) {
        auto ck = SafetensorsCheckpoint::open_dir(d.path.string());
        ASSERT_FALSE(ck.ok()) << part;
        EXPECT_EQ(ck.status().code(), code) << ck.status().message();
        EXPECT_NE(ck.status().message().find(part), std::string::npos) << ck.status().message();
    };
    {
        Folder d("none");
        expect(d, StatusCode::not_found, "no *.safetensors");
    }
    {
        Folder d("dup");
        d.write("model-1.safetensors", one_tensor_file({"a"}));
        d.write("model-2.safetensors", one_tensor_file({"a"}));
        expect(d, StatusCode::corrupt, "both");
    }
    {
        Folder d("badindex");
        d.write("model-00001-of-00001.safetensors", one_tensor_file({"a"}));
        for (const char* idx : {"", "[]", R"({"weight_map": 3})", R"({"weight_map": {}})", R"({"weight_map": {"a": 1}})",
                                R"({"weight_map": {"a": "sub/model.safetensors"}})"}) {
            d.write_text("model.safetensors.index.json", idx);
            expect(d, StatusCode::corrupt, "model.safetensors.index.json");
        }
    }
    {
        Folder d("missing_shard");
        d.write("model-00001-of-00002.safetensors", one_tensor_file({"a"}));
        d.write_text("model.safetensors.index.json", R"({"weight_map": {"a": "model-00001-of-00002.safetensors",
                                                         "b": "model-00002-of-00002.safetensors"}})");
        expect(d, StatusCode::not_found, "model-00002-of-00002.safetensors");
    }
    {
        Folder d("wrong_shard");
        d.write("model-00001-of-00002.safetensors", one_tensor_file({"a"}));
        d.write("model-00002-of-00002.safetensors", one_tensor_file({"b"}));
        d.write_text("model.safetensors.index.json", R"({"weight_map": {"a": "model-00002-of-00002.safetensors",
                                                         "b": "model-00001-of-00002.safetensors"}})");
        expect(d, StatusCode::corrupt, "puts it in");
    }
    {
        Folder d("missing_tensor");
        d.write("model-00001-of-00001.safetensors", one_tensor_file({"a"}));
        d.write_text("model.safetensors.index.json", R"({"weight_map": {"a": "model-00001-of-00001.safetensors",
                                                         "z": "model-00001-of-00001.safetensors"}})");
        expect(d, StatusCode::corrupt, "tensor z is missing");
    }
    {
        Folder d("bad_shard");
        d.write("model.safetensors", raw_file(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})", 2));
        expect(d, StatusCode::corrupt, "model.safetensors");
    }
}

}  // namespace
}  // namespace hearth::store
