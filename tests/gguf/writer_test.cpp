// GGUF writer: lazy (streamed) tensors, crash-safe file output, failure semantics (the
// destination is untouched and no temporary file is left) and input validation.
#include <gtest/gtest.h>

#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <string>
#include <sys/resource.h>
#include <unistd.h>
#include <vector>

#include "base/file_writer.h"
#include "gguf/gguf.h"
#include "gguf_test_util.h"
#include "support/testdata.h"

namespace hearth::gguf {
namespace {

using quant::QuantType;
using test::ScratchDir;

std::vector<std::byte> pattern(size_t n, uint8_t seed) {
    std::vector<std::byte> b(n);
    for (size_t i = 0; i < n; ++i) b[i] = (std::byte)(uint8_t)(seed * 31 + i * 13);
    return b;
}

GgufWriter::FillFn copy_of(std::vector<std::byte> data) {
    return [data = std::move(data)](std::span<std::byte> dst) {
        if (dst.size() != data.size()) return error(StatusCode::internal, "wrong size");
        std::memcpy(dst.data(), data.data(), data.size());
        return Status();
    };
}

std::string read_all(const std::string& path) {
    std::vector<uint8_t> raw;
    if (!hearth::test::read_file(path, raw)) return "<unreadable>";
    return std::string(raw.begin(), raw.end());
}

void write_text(const std::string& path, const std::string& text) {
    std::ofstream(path, std::ios::binary) << text;
}

TEST(GgufWriter, LazyAndCopiedTensorsSerializeIdentically) {
    const auto a = pattern(4 * 40, 1), b = pattern(34 * 3, 2), c = pattern(2 * 7, 3);
    GgufWriter copied(64), lazy(64);
    for (GgufWriter* w : {&copied, &lazy}) w->set("general.architecture", Value::make_string("llama"));
    ASSERT_TRUE(copied.add_tensor("a", QuantType::f32, {8, 5}, a).ok());
    ASSERT_TRUE(copied.add_tensor("b", QuantType::q8_0, {96}, b).ok());
    ASSERT_TRUE(copied.add_tensor("c", QuantType::f16, {7}, c).ok());
    ASSERT_TRUE(lazy.add_tensor_lazy("a", QuantType::f32, {8, 5}, copy_of(a)).ok());
    ASSERT_TRUE(lazy.add_tensor("b", QuantType::q8_0, {96}, b).ok());  // mixed is fine
    ASSERT_TRUE(lazy.add_tensor_lazy("c", QuantType::f16, {7}, copy_of(c)).ok());
    auto x = copied.serialize(), y = lazy.serialize();
    ASSERT_TRUE(x.ok() && y.ok());
    EXPECT_EQ(x.value(), y.value());
    EXPECT_EQ(lazy.to_bytes(), y.value());
    EXPECT_EQ(lazy.file_size().value(), y->size());
}

TEST(GgufWriter, LazyFillsRunAtWriteTimeInOrderIntoOneZeroedBuffer) {
    struct Call {
        std::string name;
        const std::byte* data;
        size_t size;
        bool zeroed;
    };
    std::vector<Call> calls;
    auto recorder = [&calls](std::string name) {
        return [&calls, name](std::span<std::byte> dst) {
            bool zeroed = true;
            for (std::byte b : dst) zeroed = zeroed && b == std::byte{0};
            calls.push_back({name, dst.data(), dst.size(), zeroed});
            std::memset(dst.data(), 0xab, dst.size());  // dirty it for the next tensor
            return Status();
        };
    };
    GgufWriter w;
    ASSERT_TRUE(w.add_tensor_lazy("small", QuantType::f32, {16}, recorder("small")).ok());
    ASSERT_TRUE(w.add_tensor_lazy("big", QuantType::q8_0, {256, 4}, recorder("big")).ok());
    ASSERT_TRUE(w.add_tensor_lazy("mid", QuantType::f16, {100}, recorder("mid")).ok());
    EXPECT_TRUE(calls.empty()) << "fill ran before writing";

    auto bytes = w.serialize();
    ASSERT_TRUE(bytes.ok()) << bytes.status().message();
    ASSERT_EQ(calls.size(), 3u);
    EXPECT_EQ(calls[0].name, "small");
    EXPECT_EQ(calls[1].name, "big");
    EXPECT_EQ(calls[2].name, "mid");
    EXPECT_EQ(calls[0].size, 64u);
    EXPECT_EQ(calls[1].size, 34u * 8 * 4);
    EXPECT_EQ(calls[2].size, 200u);
    for (const Call& c : calls) {
        EXPECT_TRUE(c.zeroed) << c.name;
        EXPECT_EQ(c.data, calls[0].data) << c.name << ": not the shared buffer";
    }
    auto f = parse_gguf(bytes.value());
    ASSERT_TRUE(f.ok()) << f.status().message();
    for (const TensorInfo& t : f->tensors)
        for (uint64_t i = 0; i < t.n_bytes; ++i) ASSERT_EQ(t.data[i], std::byte{0xab}) << t.name;

    calls.clear();
    ASSERT_TRUE(w.serialize().ok());
    EXPECT_EQ(calls.size(), 3u) << "each write runs every fill again";
}

TEST(GgufWriter, WriteFileStreamsToATemporaryThenRenames) {
    ScratchDir dir;
    ASSERT_FALSE(dir.path().empty());
    const std::string path = dir.file("m.gguf");
    const auto a = pattern(4 * 33, 5), b = pattern(18 * 10, 6);
    std::vector<std::string> seen_during_fill;
    bool dest_existed_during_fill = true;
    GgufWriter w;
    w.set("general.architecture", Value::make_string("llama"));
    w.set("tokenizer.ggml.tokens", Value::make_string_array({"a", "b"}));
    ASSERT_TRUE(w.add_tensor_lazy("a", QuantType::f32, {33}, [&](std::span<std::byte> dst) {
        seen_during_fill = dir.names();
        dest_existed_during_fill = std::filesystem::exists(path);
        std::memcpy(dst.data(), a.data(), a.size());
        return Status();
    }).ok());
    ASSERT_TRUE(w.add_tensor_lazy("b", QuantType::q4_0, {64, 5}, copy_of(b)).ok());

    Status st = w.write_file(path);
    ASSERT_TRUE(st.ok()) << st.message();
    ASSERT_EQ(seen_during_fill.size(), 1u);
    EXPECT_EQ(seen_during_fill[0].rfind(".m.gguf.tmp-", 0), 0u) << seen_during_fill[0];
    EXPECT_FALSE(dest_existed_during_fill);
    EXPECT_EQ(dir.names(), std::vector<std::string>{"m.gguf"});
    EXPECT_EQ(std::filesystem::file_size(path), w.file_size().value());
    EXPECT_EQ(std::filesystem::status(path).permissions() & std::filesystem::perms::all,
              std::filesystem::perms(0644));

    auto f = open_gguf(path);
    ASSERT_TRUE(f.ok()) << f.status().message();
    const GgufFile& g = *f.value();
    ASSERT_EQ(g.tensors.size(), 2u);
    EXPECT_EQ(std::memcmp(g.find_tensor("a")->data, a.data(), a.size()), 0);
    EXPECT_EQ(std::memcmp(g.find_tensor("b")->data, b.data(), b.size()), 0);
    auto mem = w.serialize();
    ASSERT_TRUE(mem.ok());
    const auto file = g.mapping->bytes();
    EXPECT_TRUE(std::equal(file.begin(), file.end(), mem->begin(), mem->end())) << "file differs from serialize()";
}

TEST(GgufWriter, WriteFileReplacesAnExistingFile) {
    ScratchDir dir;
    const std::string path = dir.file("m.gguf");
    write_text(path, "old contents");
    GgufWriter w;
    ASSERT_TRUE(w.add_tensor("a", QuantType::f32, {4}, pattern(16, 1)).ok());
    ASSERT_TRUE(w.write_file(path).ok());
    EXPECT_TRUE(open_gguf(path).ok());
    EXPECT_EQ(dir.names(), std::vector<std::string>{"m.gguf"});
}

TEST(GgufWriter, FailingFillLeavesTheDestinationUntouched) {
    ScratchDir dir;
    const std::string path = dir.file("m.gguf");
    for (bool existing : {true, false}) {
        SCOPED_TRACE(existing);
        if (existing) write_text(path, "old contents");
        GgufWriter w;
        ASSERT_TRUE(w.add_tensor_lazy("ok", QuantType::f32, {1024}, copy_of(pattern(4096, 1))).ok());
        ASSERT_TRUE(w.add_tensor_lazy("blk.3.attn_q.weight", QuantType::f32, {8}, [](std::span<std::byte>) {
            return error(StatusCode::resource_exhausted, "source tensor unreadable");
        }).ok());
        Status st = w.write_file(path);
        ASSERT_FALSE(st.ok());
        EXPECT_EQ(st.code(), StatusCode::resource_exhausted);
        EXPECT_NE(st.message().find("blk.3.attn_q.weight"), std::string::npos) << st.message();
        EXPECT_NE(st.message().find("source tensor unreadable"), std::string::npos) << st.message();
        if (existing) {
            EXPECT_EQ(read_all(path), "old contents");
            EXPECT_EQ(dir.names(), std::vector<std::string>{"m.gguf"});
        } else {
            EXPECT_TRUE(dir.names().empty());
        }
        std::filesystem::remove(path);
        // serialize reports the same error.
        auto mem = w.serialize();
        ASSERT_FALSE(mem.ok());
        EXPECT_NE(mem.status().message().find("blk.3.attn_q.weight"), std::string::npos);
        EXPECT_TRUE(w.to_bytes().empty());
    }
}

// Caps this process's file size (RLIMIT_FSIZE) so writes fail with EFBIG as on a full disk;
// SIGXFSZ is ignored meanwhile so the write returns an error instead of killing us.
class FileSizeLimit {
public:
    explicit FileSizeLimit(rlim_t bytes) {
        getrlimit(RLIMIT_FSIZE, &old_);
        old_handler_ = std::signal(SIGXFSZ, SIG_IGN);
        rlimit lim = old_;
        lim.rlim_cur = bytes;
        ok_ = setrlimit(RLIMIT_FSIZE, &lim) == 0;
    }
    ~FileSizeLimit() {
        setrlimit(RLIMIT_FSIZE, &old_);
        std::signal(SIGXFSZ, old_handler_);
    }
    bool ok() const { return ok_; }

private:
    rlimit old_{};
    void (*old_handler_)(int) = nullptr;
    bool ok_ = false;
};

TEST(GgufWriter, DiskFullLeavesTheDestinationUntouched) {
    ScratchDir dir;
    const std::string path = dir.file("m.gguf");
    write_text(path, "old contents");
    GgufWriter w;
    ASSERT_TRUE(w.add_tensor_lazy("big", QuantType::f32, {64 * 1024}, copy_of(pattern(256 * 1024, 3))).ok());
    Status st;
    {
        FileSizeLimit limit(64 * 1024);
        ASSERT_TRUE(limit.ok());
        st = w.write_file(path);
    }
    ASSERT_FALSE(st.ok());
    EXPECT_EQ(st.code(), StatusCode::io_error);
    EXPECT_NE(st.message().find(path), std::string::npos) << st.message();
    EXPECT_EQ(read_all(path), "old contents");
    EXPECT_EQ(dir.names(), std::vector<std::string>{"m.gguf"});
}

// The helper under write_file, without the up-front reservation: the failure surfaces at write().
TEST(GgufWriter, AtomicFileWriterFailedWriteRemovesTheTemporary) {
    ScratchDir dir;
    const std::string path = dir.file("out.bin");
    auto out = AtomicFileWriter::create(path);
    ASSERT_TRUE(out.ok()) << out.status().message();
    const auto data = pattern(128 * 1024, 9);
    Status st;
    {
        FileSizeLimit limit(64 * 1024);
        ASSERT_TRUE(limit.ok());
        st = out->write(data);
    }
    ASSERT_FALSE(st.ok());
    EXPECT_EQ(st.code(), StatusCode::io_error);
    EXPECT_NE(st.message().find("write"), std::string::npos) << st.message();
    EXPECT_TRUE(dir.names().empty());
    EXPECT_FALSE(out->write(data).ok()) << "writes after a failure are refused";
    EXPECT_FALSE(out->commit().ok());
    EXPECT_FALSE(std::filesystem::exists(path));
}

TEST(GgufWriter, AtomicFileWriterAbandonedWithoutCommit) {
    ScratchDir dir;
    {
        auto out = AtomicFileWriter::create(dir.file("x"));
        ASSERT_TRUE(out.ok());
        ASSERT_TRUE(out->write(pattern(100, 1)).ok());
        ASSERT_TRUE(out->write_zeros(10000).ok());
        EXPECT_EQ(out->bytes_written(), 10100u);
        EXPECT_EQ(dir.names().size(), 1u);
    }
    EXPECT_TRUE(dir.names().empty());
}

TEST(GgufWriter, WriteIntoAMissingFolderFails) {
    GgufWriter w;
    const std::string path = "/nonexistent-hearth-dir/sub/m.gguf";
    Status st = w.write_file(path);
    ASSERT_FALSE(st.ok());
    EXPECT_EQ(st.code(), StatusCode::not_found);
    EXPECT_NE(st.message().find(path), std::string::npos) << st.message();
}

// Current resident set in bytes, from /proc/self/statm.
size_t resident_bytes() {
    long pages = 0, resident = 0;
    FILE* f = std::fopen("/proc/self/statm", "r");
    if (!f) return 0;
    if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    std::fclose(f);
    return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

// 8 lazy tensors of 16 MiB: a writer that held every tensor would be ~112 MiB larger at the
// last fill than before writing; a streaming one only holds the one shared buffer.
TEST(GgufWriter, WriteFileMemoryStaysAtOneTensor) {
    ScratchDir dir;
    constexpr int64_t kElems = 4 * 1024 * 1024;  // f32: 16 MiB per tensor
    size_t peak = 0;
    GgufWriter w;
    for (int i = 0; i < 8; ++i) {
        ASSERT_TRUE(w.add_tensor_lazy(strformat("t%d", i), QuantType::f32, {kElems}, [&, i](std::span<std::byte> dst) {
            std::memset(dst.data(), i + 1, dst.size());
            peak = std::max(peak, resident_bytes());
            return Status();
        }).ok());
    }
    const size_t before = resident_bytes();
    ASSERT_GT(before, 0u);
    Status st = w.write_file(dir.file("big.gguf"));
    ASSERT_TRUE(st.ok()) << st.message();
    EXPECT_LT(peak - std::min(peak, before), size_t(48) << 20) << "peak " << peak << ", before " << before;
    EXPECT_EQ(std::filesystem::file_size(dir.file("big.gguf")), w.file_size().value());
    auto f = open_gguf(dir.file("big.gguf"));
    ASSERT_TRUE(f.ok()) << f.status().message();
    for (int i = 0; i < 8; ++i) {
        const TensorInfo* t = f.value()->find_tensor(strformat("t%d", i));
        ASSERT_NE(t, nullptr);
        EXPECT_EQ(t->data[0], (std::byte)(i + 1));
        EXPECT_EQ(t->data[t->n_bytes - 1], (std::byte)(i + 1));
    }
}

// --- validation: what the reader would reject never gets written ---

void expect_invalid(const Status& st, const std::string& needle) {
    EXPECT_EQ(st.code(), StatusCode::invalid_argument) << st.message();
    EXPECT_NE(st.message().find(needle), std::string::npos) << "\"" << st.message() << "\" lacks \"" << needle << "\"";
}

TEST(GgufWriter, RejectsBadTensors) {
    GgufWriter w;
    const auto sixteen = pattern(16, 1);
    ASSERT_TRUE(w.add_tensor("w", QuantType::f32, {4}, sixteen).ok());
    expect_invalid(w.add_tensor("w", QuantType::f32, {4}, sixteen), "tensor w: added twice");
    expect_invalid(w.add_tensor_lazy("w", QuantType::f32, {4}, copy_of(sixteen)), "added twice");
    expect_invalid(w.add_tensor("", QuantType::f32, {4}, sixteen), "name is empty");
    expect_invalid(w.add_tensor("x", QuantType::f32, {}, sixteen), "1 to 4 dimensions");
    expect_invalid(w.add_tensor("x", QuantType::f32, {1, 1, 1, 1, 4}, sixteen), "1 to 4 dimensions");
    expect_invalid(w.add_tensor("x", QuantType::f32, {4, 0}, sixteen), "dimension 1 is 0");
    expect_invalid(w.add_tensor("x", QuantType::f32, {-4}, sixteen), "dimension 0 is -4");
    expect_invalid(w.add_tensor("x", QuantType::f32, {int64_t(1) << 41}, sixteen), "dimension");
    expect_invalid(w.add_tensor_lazy("x", QuantType::f32, {int64_t(1) << 40, int64_t(1) << 40}, copy_of(sixteen)),
                   "element count overflows");
    expect_invalid(w.add_tensor("x", (QuantType)4, {4}, sixteen), "unknown tensor type id 4");
    expect_invalid(w.add_tensor("x", (QuantType)1000, {4}, sixteen), "unknown tensor type id 1000");
    expect_invalid(w.add_tensor("x", QuantType::q4_0, {16}, sixteen), "not a multiple of the q4_0 block size");
    expect_invalid(w.add_tensor("x", QuantType::f32, {5}, sixteen), "16 bytes given, 20 expected");
    expect_invalid(w.add_tensor_lazy("x", QuantType::f32, {4}, nullptr), "no fill function");
    auto bytes = w.serialize();  // the failed adds left nothing behind
    ASSERT_TRUE(bytes.ok());
    auto f = parse_gguf(bytes.value());
    ASSERT_TRUE(f.ok());
    EXPECT_EQ(f->tensors.size(), 1u);
}

Value nested_arrays(int depth) {
    Value v = Value::make_string_array({"leaf"});
    for (int d = 1; d < depth; ++d) v = Value::make_array(ValueType::array, {v});
    return v;
}

TEST(GgufWriter, RejectsMetadataTheReaderWouldReject) {
    struct Case {
        const char* what;
        std::string key;
        Value value;
        const char* needle;
    };
    Value mixed = Value::make_array(ValueType::u32, {Value::make_u32(1), Value::make_i32(2)});
    Value bad_type;
    bad_type.type = (ValueType)13;
    Value bad_elem = Value::make_array((ValueType)42, {});
    const Case cases[] = {
        {"empty key", "", Value::make_u32(1), "key is empty"},
        {"mixed array", "k", mixed, "array of u32 holds a i32"},
        {"too deep", "k", nested_arrays(9), "nested more than 8 deep"},
        {"bad type", "k", bad_type, "unknown value type 13"},
        {"bad element type", "k", bad_elem, "unknown array element type 42"},
        {"alignment type", "general.alignment", Value::make_u64(64), "general.alignment must be u32"},
        {"alignment 0", "general.alignment", Value::make_u32(0), "not a power of two"},
        {"alignment 48", "general.alignment", Value::make_u32(48), "not a power of two"},
    };
    ScratchDir dir;
    for (const Case& c : cases) {
        SCOPED_TRACE(c.what);
        GgufWriter w;
        w.set(c.key, c.value);
        expect_invalid(w.serialize().status(), c.needle);
        expect_invalid(w.file_size().status(), c.needle);
        expect_invalid(w.write_file(dir.file("m.gguf")), c.needle);
        EXPECT_TRUE(dir.names().empty());
    }
    GgufWriter odd(48);
    expect_invalid(odd.serialize().status(), "alignment 48");
}

TEST(GgufWriter, WritesTheDeepestNestingTheReaderAccepts) {
    GgufWriter w;
    w.set("deep", nested_arrays(8));
    auto bytes = w.serialize();
    ASSERT_TRUE(bytes.ok()) << bytes.status().message();
    auto f = parse_gguf(bytes.value());
    ASSERT_TRUE(f.ok()) << f.status().message();
    EXPECT_TRUE(test::same_value(*f->meta.find("deep"), nested_arrays(8)));
}

TEST(GgufWriter, MetadataOnlyFileRoundTrips) {
    GgufWriter w;
    w.set("tokenizer.ggml.model", Value::make_string("gpt2"));
    auto bytes = w.serialize();
    ASSERT_TRUE(bytes.ok());
    EXPECT_EQ(bytes->size() % 32, 0u);
    auto f = parse_gguf(bytes.value());
    ASSERT_TRUE(f.ok()) << f.status().message();
    EXPECT_EQ(f->meta.get_string("tokenizer.ggml.model").value(), "gpt2");
    EXPECT_TRUE(f->tensors.empty());
}

}  // namespace
}  // namespace hearth::gguf
