// GGUF (versions 2 and 3): a reader over a byte span (zero-copy tensor views) and a writer.
// The reader validates everything before anything is used: counts, string lengths, tensor
// shapes, types, offsets, alignment and overlaps. A bad file is an error naming what is wrong.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/mmap.h"
#include "base/status.h"
#include "quant/types.h"

namespace hearth::gguf {

enum class ValueType : uint32_t {
    u8 = 0, i8 = 1, u16 = 2, i16 = 3, u32 = 4, i32 = 5, f32 = 6, boolean = 7,
    string = 8, array = 9, u64 = 10, i64 = 11, f64 = 12,
};
const char* value_type_name(ValueType t);

// One metadata value. Scalars keep their declared type; arrays keep their element type and
// may nest (array of arrays).
struct Value {
    ValueType type = ValueType::u8;
    uint64_t u = 0;             // unsigned ints, bool
    int64_t i = 0;              // signed ints
    double f = 0.0;             // f32/f64
    std::string str;            // string
    ValueType elem_type = ValueType::u8;  // arrays: declared element type
    std::vector<Value> items;   // arrays

    bool is_integer() const;
    bool is_float() const { return type == ValueType::f32 || type == ValueType::f64; }
    // Value of an integer/bool as int64 (u64 above INT64_MAX is reported as not fitting).
    bool to_i64(int64_t& out) const;
    bool to_f64(double& out) const;  // ints and floats

    static Value make_u32(uint32_t v);
    static Value make_i32(int32_t v);
    static Value make_u64(uint64_t v);
    static Value make_f32(float v);
    static Value make_bool(bool v);
    static Value make_string(std::string v);
    static Value make_array(ValueType elem, std::vector<Value> items);
    static Value make_string_array(const std::vector<std::string>& v);
    static Value make_f32_array(const std::vector<float>& v);
    static Value make_i32_array(const std::vector<int32_t>& v);
};

// Ordered key/value metadata with typed getters. Getters return not_found for a missing key
// and invalid_argument (naming key, expected and actual type) for a wrong type.
class Metadata {
public:
    void set(std::string key, Value v);
    const Value* find(std::string_view key) const;
    bool has(std::string_view key) const { return find(key) != nullptr; }
    const std::vector<std::pair<std::string, Value>>& entries() const { return entries_; }

    Result<int64_t> get_int(std::string_view key) const;        // any integer type
    Result<uint32_t> get_u32(std::string_view key) const;       // any integer type in range
    Result<double> get_float(std::string_view key) const;       // f32, f64 or integer
    Result<bool> get_bool(std::string_view key) const;
    Result<std::string> get_string(std::string_view key) const;
    Result<std::vector<std::string>> get_string_array(std::string_view key) const;
    Result<std::vector<float>> get_f32_array(std::string_view key) const;    // float or int elems
    Result<std::vector<int64_t>> get_int_array(std::string_view key) const;  // int/bool elems
    // Getters with a default used when the key is absent (a wrong type is still an error).
    Result<int64_t> get_int_or(std::string_view key, int64_t def) const;
    Result<double> get_float_or(std::string_view key, double def) const;
    Result<bool> get_bool_or(std::string_view key, bool def) const;
    Result<std::string> get_string_or(std::string_view key, std::string def) const;

private:
    std::vector<std::pair<std::string, Value>> entries_;
    std::map<std::string, size_t, std::less<>> index_;
};

constexpr int kMaxDims = 4;

struct TensorInfo {
    std::string name;
    int n_dims = 0;
    int64_t ne[kMaxDims] = {1, 1, 1, 1};  // ggml order: ne[0] is the contiguous (row) length
    quant::QuantType type = quant::QuantType::f32;
    uint64_t offset = 0;       // relative to the start of the tensor data section
    uint64_t n_bytes = 0;
    const std::byte* data = nullptr;  // view into the file bytes; valid while the file lives

    int64_t n_elements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
    int64_t n_rows() const { return ne[1] * ne[2] * ne[3]; }
    std::string shape_string() const;  // "[4096, 1024]"
};

// A parsed GGUF file. Owns the mapping when opened from a path; when parsed from a span the
// caller keeps the bytes alive.
struct GgufFile {
    uint32_t version = 0;
    uint64_t alignment = 32;
    uint64_t data_offset = 0;  // start of the tensor data section in the file
    Metadata meta;
    std::vector<TensorInfo> tensors;
    std::span<const std::byte> bytes;
    std::shared_ptr<MappedFile> mapping;  // null when parsed from caller-owned bytes

    const TensorInfo* find_tensor(std::string_view name) const;
    std::string architecture() const;  // general.architecture or ""

private:
    std::map<std::string, size_t, std::less<>> tensor_index_;
    friend Result<GgufFile> parse_gguf(std::span<const std::byte> bytes);
};

// Parses and validates. Tensor views point into `bytes`.
Result<GgufFile> parse_gguf(std::span<const std::byte> bytes);
// Maps the file read-only and parses it; errors name the path.
Result<std::shared_ptr<GgufFile>> open_gguf(const std::string& path);

// Builds a GGUF v3 file. Tensors are written in insertion order, each at an offset that is a
// multiple of the alignment: general.alignment when the metadata sets it (a u32 power of
// two), else the constructor's (written as general.alignment when it is not 32).
//
// write_file streams: it holds the header, the metadata and the tensors given by copy, but a
// lazy tensor's bytes exist only while they are written, in one buffer reused for every lazy
// tensor. Peak memory is the metadata plus the largest lazy tensor.
class GgufWriter {
public:
    // Produces a lazy tensor's bytes: `dst` is exactly the tensor's byte size, zeroed, and fill
    // writes all of it. Called once per write_file/serialize, in tensor order, on the calling
    // thread; an error aborts the write and is returned with the tensor's name as context.
    using FillFn = std::function<Status(std::span<std::byte> dst)>;

    explicit GgufWriter(uint64_t alignment = 32) : alignment_(alignment) {}
    void set(std::string key, Value v) { meta_.set(std::move(key), std::move(v)); }
    Metadata& metadata() { return meta_; }
    // ne in ggml order. `data` must hold exactly the tensor's byte size; it is copied.
    // Errors (nothing added): empty or duplicate name, 0 or >4 dims, a dimension < 1 or
    // > 2^40, unknown type, row length not a multiple of the block size, size mismatch.
    Status add_tensor(std::string name, quant::QuantType type, std::vector<int64_t> ne,
                      std::span<const std::byte> data);
    // Same checks; the bytes come from `fill` at write time (see FillFn).
    Status add_tensor_lazy(std::string name, quant::QuantType type, std::vector<int64_t> ne, FillFn fill);

    // Serializes to memory (tests, fuzz seeds, small files). Errors: invalid metadata (empty
    // key, array items not of the declared element type, arrays nested deeper than the reader
    // accepts, bad general.alignment) or a failed fill.
    Result<std::vector<std::byte>> serialize() const;
    // serialize() for callers that cannot fail: an empty vector (never a valid GGUF) on error.
    std::vector<std::byte> to_bytes() const;
    // Size in bytes of the file write_file produces (same errors as serialize, fills not run).
    Result<uint64_t> file_size() const;
    // Streams to a temporary file next to `path`, fsyncs it and renames it into place. On any
    // error (invalid metadata, fill failure, disk full) the temporary file is removed and an
    // existing file at `path` is left untouched.
    Status write_file(const std::string& path) const;

private:
    struct Pending {
        std::string name;
        quant::QuantType type;
        std::vector<int64_t> ne;
        uint64_t n_bytes = 0;
        std::vector<std::byte> data;  // add_tensor's copy; empty for a lazy tensor
        FillFn fill;                  // lazy tensors only
    };
    // Receives the file's bytes in order: memory for serialize(), a temporary file for write_file().
    using EmitFn = std::function<Status(std::span<const std::byte> bytes)>;
    Result<uint64_t> check_tensor(const std::string& name, quant::QuantType type,
                                  const std::vector<int64_t>& ne) const;
    Status build_header(std::vector<std::byte>& out, uint64_t& alignment) const;
    Status write_to(const EmitFn& emit, std::span<const std::byte> header, uint64_t alignment) const;
    uint64_t data_size(uint64_t alignment) const;  // bytes of tensor data, each tensor padded

    uint64_t alignment_;
    Metadata meta_;
    std::vector<Pending> tensors_;
    std::set<std::string, std::less<>> names_;  // of tensors_, to refuse duplicates
};

}  // namespace hearth::gguf
