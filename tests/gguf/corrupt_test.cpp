// GGUF reader on hostile input: every malformed file is an error whose message names the
// problem, never a crash, an out-of-bounds read or a huge allocation. Each parse gets its own
// exactly-sized heap copy so AddressSanitizer builds catch any read past the end.
#include <gtest/gtest.h>

#include <cstring>
#include <initializer_list>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "gguf/gguf.h"
#include "gguf_test_util.h"

namespace hearth::gguf {
namespace {

using quant::QuantType;
using test::RawGguf;

// Parses a private copy of exactly `n` bytes of `bytes`.
Result<GgufFile> parse_copy(std::span<const std::byte> bytes, size_t n) {
    std::unique_ptr<std::byte[]> copy(new std::byte[n == 0 ? 1 : n]);
    if (n) std::memcpy(copy.get(), bytes.data(), n);
    auto r = parse_gguf({copy.get(), n});
    if (r.ok()) {
        // Views would dangle once the copy goes; the callers only look at the status then.
        for (auto& t : r->tensors) t.data = nullptr;
        r->bytes = {};
    }
    return r;
}

Result<GgufFile> parse_copy(const std::vector<std::byte>& bytes) { return parse_copy(bytes, bytes.size()); }

// The parse fails with `code` and a message containing `needle`.
void expect_error(const std::vector<std::byte>& bytes, StatusCode code, const std::string& needle) {
    auto r = parse_copy(bytes);
    ASSERT_FALSE(r.ok()) << "parsed, expected an error containing \"" << needle << "\"";
    EXPECT_EQ(r.status().code(), code) << status_code_name(r.status().code()) << ": " << r.status().message();
    EXPECT_NE(r.status().message().find(needle), std::string::npos)
        << "message \"" << r.status().message() << "\" does not contain \"" << needle << "\"";
}

void expect_corrupt(const std::vector<std::byte>& bytes, const std::string& needle) {
    expect_error(bytes, StatusCode::corrupt, needle);
}

// A valid file: header, one string key, one f32 [16] tensor at offset 0.
std::vector<std::byte> one_tensor(const std::vector<uint64_t>& ne, uint32_t type, uint64_t offset = 0,
                                  size_t data_bytes = 64) {
    RawGguf g;
    g.header(1, 1).kv_string("general.architecture", "llama");
    g.tensor("w", ne, type, offset).pad_to(32).zeros(data_bytes);
    return g.bytes;
}

// A small valid file whose last tensor ends exactly at the end of the file (no trailing
// padding), so every proper prefix of it is truncated somewhere that matters.
std::vector<std::byte> small_valid_file() {
    GgufWriter w;
    w.set("general.architecture", Value::make_string("llama"));
    w.set("llama.block_count", Value::make_u32(2));
    w.set("llama.rope.freq_base", Value::make_f32(10000.f));
    w.set("general.flag", Value::make_bool(true));
    w.set("tokenizer.ggml.tokens", Value::make_string_array({"<s>", "</s>", "a", "bc"}));
    w.set("tokenizer.ggml.scores", Value::make_f32_array({0.f, -1.f, -2.f, -3.f}));
    w.set("nested", Value::make_array(ValueType::array, {Value::make_string_array({"x"}), Value::make_string_array({})}));
    std::vector<std::byte> a(32, std::byte{1}), b(64, std::byte{2});
    EXPECT_TRUE(w.add_tensor("a", QuantType::f32, {8}, a).ok());
    EXPECT_TRUE(w.add_tensor("b", QuantType::f16, {16, 2}, b).ok());
    auto bytes = w.serialize();
    EXPECT_TRUE(bytes.ok());
    return bytes.ok() ? bytes.value() : std::vector<std::byte>();
}

TEST(GgufCorrupt, SmallValidFileParses) {
    const auto bytes = small_valid_file();
    auto r = parse_copy(bytes);
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_EQ(r->tensors.size(), 2u);
    EXPECT_EQ(r->data_offset + r->tensors[1].offset + r->tensors[1].n_bytes, bytes.size());
}

TEST(GgufCorrupt, EmptyFile) {
    expect_corrupt({}, "too short");
}

TEST(GgufCorrupt, BadMagic) {
    auto bytes = small_valid_file();
    bytes[3] = (std::byte)'G';
    expect_corrupt(bytes, "bad magic");
    expect_corrupt({std::byte{'G'}, std::byte{'G'}, std::byte{'U'}}, "too short");
}

TEST(GgufCorrupt, UnsupportedVersions) {
    for (uint32_t version : {0u, 1u, 4u, 0x03000000u}) {
        auto bytes = small_valid_file();
        std::memcpy(bytes.data() + 4, &version, 4);
        expect_error(bytes, StatusCode::unsupported, "version " + std::to_string(version));
    }
}

TEST(GgufCorrupt, TruncationAtEveryOffset) {
    const auto bytes = small_valid_file();
    ASSERT_FALSE(bytes.empty());
    for (size_t n = 0; n < bytes.size(); ++n) {
        auto r = parse_copy(bytes, n);
        ASSERT_FALSE(r.ok()) << "a prefix of " << n << " of " << bytes.size() << " bytes parsed";
        EXPECT_EQ(r.status().code(), StatusCode::corrupt) << n << ": " << r.status().message();
        const std::string& msg = r.status().message();
        bool named = false;
        for (const char* s : {"truncated", "too short", "cannot fit", "bytes left", "past the end"})
            named = named || msg.find(s) != std::string::npos;
        EXPECT_TRUE(named) << "prefix of " << n << " bytes: \"" << msg << "\"";
    }
}

// Not a claim about messages: every single-byte corruption of a valid file either parses or
// fails cleanly (and, under ASan, reads nothing out of bounds).
TEST(GgufCorrupt, SingleByteCorruptionsNeverCrash) {
    const auto bytes = small_valid_file();
    for (size_t i = 0; i < bytes.size(); ++i) {
        for (uint8_t v : {0x00, 0x01, 0x7f, 0x80, 0xff}) {
            auto mutated = bytes;
            mutated[i] = (std::byte)v;
            auto r = parse_copy(mutated);
            if (!r.ok()) {
                EXPECT_FALSE(r.status().message().empty());
            }
        }
        auto flipped = bytes;
        flipped[i] ^= std::byte{0x40};
        (void)parse_copy(flipped);
    }
}

TEST(GgufCorrupt, HugeCounts) {
    RawGguf kv;
    kv.header(0, 1ull << 60).kv_u32("a", 1);
    expect_corrupt(kv.bytes, "metadata count");
    RawGguf tensors;
    tensors.header(std::numeric_limits<uint64_t>::max(), 0).zeros(64);
    expect_corrupt(tensors.bytes, "tensor count");
}

TEST(GgufCorrupt, HugeStringLength) {
    RawGguf key;
    key.header(0, 1).u64(1ull << 63).zeros(16);
    expect_corrupt(key.bytes, "string length");
    RawGguf value;
    value.header(0, 1).str("general.name").u32((uint32_t)ValueType::string).u64(std::numeric_limits<uint64_t>::max());
    expect_corrupt(value.bytes, "string length");
    RawGguf name;
    name.header(1, 0).u64(1ull << 40).zeros(40);
    expect_corrupt(name.bytes, "string length");
}

TEST(GgufCorrupt, HugeArrayCount) {
    for (uint32_t elem : {(uint32_t)ValueType::u8, (uint32_t)ValueType::string, (uint32_t)ValueType::array}) {
        RawGguf g;
        g.header(0, 1).str("tokenizer.ggml.tokens").u32((uint32_t)ValueType::array).u32(elem).u64(1ull << 62).zeros(32);
        expect_corrupt(g.bytes, "cannot fit");
    }
}

// 16M one-byte items would become ~1.6 GB of Values: the reader caps values per file.
TEST(GgufCorrupt, TooManyMetadataValues) {
    constexpr uint64_t kItems = (1ull << 24) + 1;
    RawGguf g;
    g.header(0, 1).str("blob").u32((uint32_t)ValueType::array).u32((uint32_t)ValueType::u8).u64(kItems).zeros(kItems);
    expect_corrupt(g.bytes, "exceeds the limit of 16777216 metadata values");
    // The budget is per file: 2 entries + 3 items + (2^24 - 4) items is 1 too many.
    RawGguf split;
    split.header(0, 2);
    split.str("a").u32((uint32_t)ValueType::array).u32((uint32_t)ValueType::u8).u64(3).zeros(3);
    split.str("b").u32((uint32_t)ValueType::array).u32((uint32_t)ValueType::u8).u64((1ull << 24) - 4).zeros((1ull << 24) - 4);
    expect_corrupt(split.bytes, "metadata key b: array of 16777212 elements exceeds");
}

TEST(GgufCorrupt, ArraysNestedTooDeeply) {
    RawGguf g;
    g.header(0, 1).str("deep").u32((uint32_t)ValueType::array);
    for (int depth = 0; depth < 64; ++depth) g.u32((uint32_t)ValueType::array).u64(1);
    g.u32((uint32_t)ValueType::u8).u64(1).u8(0);
    expect_corrupt(g.bytes, "nested too deeply");
}

TEST(GgufCorrupt, UnknownValueTypes) {
    RawGguf top;
    top.header(0, 1).str("k").u32(13).u32(0);
    expect_corrupt(top.bytes, "unknown value type 13");
    RawGguf big;
    big.header(0, 1).str("k").u32(0xffffffffu).u32(0);
    expect_corrupt(big.bytes, "unknown value type");
    RawGguf elem;
    elem.header(0, 1).str("k").u32((uint32_t)ValueType::array).u32(99).u64(0);
    expect_corrupt(elem.bytes, "unknown array element type 99");
}

TEST(GgufCorrupt, BoolOtherThanZeroOrOne) {
    RawGguf g;
    g.header(0, 1).str("general.flag").u32((uint32_t)ValueType::boolean).u8(2);
    expect_corrupt(g.bytes, "bool value 2");
    RawGguf arr;
    arr.header(0, 1).str("flags").u32((uint32_t)ValueType::array).u32((uint32_t)ValueType::boolean).u64(2).u8(1).u8(255);
    expect_corrupt(arr.bytes, "bool value 255");
}

TEST(GgufCorrupt, DuplicateKey) {
    RawGguf g;
    g.header(0, 2).kv_u32("llama.block_count", 1).kv_u32("llama.block_count", 2);
    expect_corrupt(g.bytes, "llama.block_count appears twice");
}

TEST(GgufCorrupt, FileNamesInMessagesAreEscaped) {
    RawGguf g;
    const std::string key("bad\x01key\0tail\x1b[31m", 17);
    g.header(0, 2).kv_u32(key, 1).kv_u32(key, 2);
    expect_corrupt(g.bytes, "bad\\x01key\\x00tail\\x1b[31m appears twice");
    RawGguf t;
    t.header(2, 0).tensor("w\n", {16}, 0, 0).tensor("w\n", {16}, 0, 64).pad_to(32).zeros(128);
    expect_corrupt(t.bytes, "tensor w\\x0a: name appears twice");
}

TEST(GgufCorrupt, EmptyKeyAndEmptyTensorName) {
    RawGguf key;
    key.header(0, 1).kv_u32("", 1);
    expect_corrupt(key.bytes, "empty key");
    RawGguf name;
    name.header(1, 0).tensor("", {32}, 0, 0).pad_to(32).zeros(128);
    expect_corrupt(name.bytes, "empty name");
}

TEST(GgufCorrupt, BadAlignment) {
    RawGguf wrong_type;
    wrong_type.header(0, 1).str("general.alignment").u32((uint32_t)ValueType::u64).u64(32);
    expect_corrupt(wrong_type.bytes, "general.alignment must be u32");
    RawGguf string_type;
    string_type.header(0, 1).kv_string("general.alignment", "32");
    expect_corrupt(string_type.bytes, "general.alignment must be u32");
    for (uint32_t a : {0u, 3u, 48u, 0xffffffffu}) {
        RawGguf g;
        g.header(0, 1).kv_u32("general.alignment", a);
        expect_corrupt(g.bytes, "not a power of two");
    }
}

TEST(GgufCorrupt, UnknownTensorType) {
    for (uint32_t id : {4u, 5u, 31u, 36u, 40u, 1000u, 0xffffffffu})
        expect_error(one_tensor({32}, id), StatusCode::unsupported, "unknown tensor type id " + std::to_string(id));
}

TEST(GgufCorrupt, DimensionCount) {
    expect_corrupt(one_tensor({}, 0), "0 dimensions");
    expect_corrupt(one_tensor({2, 2, 2, 2, 1}, 0), "5 dimensions");
    RawGguf huge;
    huge.header(1, 0).str("w").u32(0xffffffffu).zeros(64);
    expect_corrupt(huge.bytes, "dimensions");
}

TEST(GgufCorrupt, ZeroOrHugeDimension) {
    expect_corrupt(one_tensor({0}, 0), "dimension 0 is 0");
    expect_corrupt(one_tensor({16, 0}, 0), "dimension 1 is 0");
    expect_corrupt(one_tensor({1ull << 41}, 0), "dimension 0 is 2199023255552");
    expect_corrupt(one_tensor({std::numeric_limits<uint64_t>::max()}, 0), "dimension 0");
}

TEST(GgufCorrupt, ElementCountOverflow) {
    expect_corrupt(one_tensor({1ull << 40, 1ull << 40}, 0), "element count overflows");
    expect_corrupt(one_tensor({1ull << 32, 1ull << 32, 1ull << 32}, 0), "element count overflows");
}

TEST(GgufCorrupt, ByteSizeBeyondTheFile) {
    // Element count fits int64 but the data cannot be in the file.
    expect_corrupt(one_tensor({1ull << 31, 1ull << 20}, 0), "past the end");
    expect_corrupt(one_tensor({1ull << 40, 1ull << 22}, (uint32_t)QuantType::f64), "byte size overflows");
}

TEST(GgufCorrupt, RowLengthNotAMultipleOfTheBlockSize) {
    expect_corrupt(one_tensor({33}, (uint32_t)QuantType::q4_0), "not a multiple of the q4_0 block size 32");
    expect_corrupt(one_tensor({128, 2}, (uint32_t)QuantType::q4_k), "not a multiple of the q4_k block size 256");
}

TEST(GgufCorrupt, TensorOffsetPastTheEnd) {
    expect_corrupt(one_tensor({16}, 0, 32), "past the end");                       // data ends 32 bytes short
    expect_corrupt(one_tensor({16}, 0, 1ull << 40), "past the end");
    expect_corrupt(one_tensor({16}, 0, std::numeric_limits<uint64_t>::max() - 31), "past the end");
    expect_corrupt(one_tensor({16}, 0, 0, 63), "past the end");                   // one byte short
}

TEST(GgufCorrupt, TensorDataSectionMissing) {
    RawGguf g;
    g.header(1, 0).tensor("w", {16}, 0, 0);
    expect_corrupt(g.bytes, "truncated");
}

TEST(GgufCorrupt, MisalignedOffset) {
    expect_corrupt(one_tensor({8}, 0, 4, 64), "offset 4 is not aligned to 32");
    RawGguf g;
    g.header(1, 1).kv_u32("general.alignment", 64).tensor("w", {8}, 0, 32).pad_to(64).zeros(128);
    expect_corrupt(g.bytes, "offset 32 is not aligned to 64");
}

TEST(GgufCorrupt, OverlappingTensors) {
    RawGguf g;
    g.header(2, 0).tensor("a", {16}, 0, 0).tensor("b", {16}, 0, 32).pad_to(32).zeros(128);
    expect_corrupt(g.bytes, "overlaps");
    RawGguf same;
    same.header(2, 0).tensor("a", {16}, 0, 64).tensor("b", {8}, 0, 64).pad_to(32).zeros(128);
    expect_corrupt(same.bytes, "overlaps");
    RawGguf touching;  // back to back is fine
    touching.header(2, 0).tensor("a", {16}, 0, 64).tensor("b", {16}, 0, 0).pad_to(32).zeros(128);
    auto r = parse_copy(touching.bytes);
    EXPECT_TRUE(r.ok()) << r.status().message();
}

TEST(GgufCorrupt, DuplicateTensorName) {
    RawGguf g;
    g.header(2, 0).tensor("w", {16}, 0, 0).tensor("w", {16}, 0, 64).pad_to(32).zeros(128);
    expect_corrupt(g.bytes, "tensor w: name appears twice");
}

TEST(GgufCorrupt, OpenMissingPathIsNotFoundNamingThePath) {
    const std::string path = "/nonexistent-hearth-dir/model.gguf";
    auto r = open_gguf(path);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::not_found);
    EXPECT_NE(r.status().message().find(path), std::string::npos) << r.status().message();
}

TEST(GgufCorrupt, OpenDirectoryIsAnError) {
    test::ScratchDir dir;
    ASSERT_FALSE(dir.path().empty());
    auto r = open_gguf(dir.path());
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find(dir.path()), std::string::npos) << r.status().message();
    EXPECT_NE(r.status().message().find("not a regular file"), std::string::npos) << r.status().message();
}

TEST(GgufCorrupt, OpenEmptyOrCorruptFileNamesThePath) {
    test::ScratchDir dir;
    ASSERT_TRUE(write_file_atomic(dir.file("empty.gguf"), {}).ok());
    auto r = open_gguf(dir.file("empty.gguf"));
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::corrupt);
    EXPECT_NE(r.status().message().find(dir.file("empty.gguf")), std::string::npos) << r.status().message();
    EXPECT_NE(r.status().message().find("too short"), std::string::npos) << r.status().message();

    auto bytes = small_valid_file();
    bytes.resize(bytes.size() - 1);
    ASSERT_TRUE(write_file_atomic(dir.file("cut.gguf"), bytes).ok());
    r = open_gguf(dir.file("cut.gguf"));
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("cut.gguf"), std::string::npos) << r.status().message();
    EXPECT_NE(r.status().message().find("past the end"), std::string::npos) << r.status().message();
}

}  // namespace
}  // namespace hearth::gguf
