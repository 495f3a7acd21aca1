// Hugging Face .safetensors files: an 8-byte little-endian header length N, N bytes of JSON
// ({"name": {"dtype", "shape", "data_offsets": [begin, end]}, ..., "__metadata__": {str: str}}),
// then the tensor bytes, offsets relative to the byte after the header. Files are mapped and
// tensors are zero-copy views into them.
//
// The parser validates everything before anything is used: header size, JSON shape, dtype
// names, shapes (element counts that overflow), offsets inside the data section, byte counts
// matching shape x dtype, and no two tensors overlapping. Every malformed input is an error
// value naming the file, tensor and field; none crashes. Holes between tensors are accepted
// (the data is still well defined), as are tensors of any known dtype; converting one to float
// is F32/F16/BF16 only (read_rows_f32 says unsupported for the others).
//
// A checkpoint is one file or several shards: model.safetensors.index.json's weight_map names
// the file of every tensor, and it must agree with what the shards hold.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/mmap.h"
#include "base/status.h"

namespace hearth::store {

// Every dtype the format defines. Only f32/f16/bf16 convert to float.
enum class StDtype { boolean, u8, i8, u16, i16, f16, bf16, u32, i32, f32, u64, i64, f64, f8_e4m3, f8_e5m2 };

const char* st_dtype_name(StDtype t);               // "F16", as the header spells it
size_t st_dtype_size(StDtype t);                    // bytes per element
std::optional<StDtype> parse_st_dtype(std::string_view name);
inline bool is_st_float(StDtype t) { return t == StDtype::f32 || t == StDtype::f16 || t == StDtype::bf16; }

// The largest header accepted, as the reference implementation (100 MB): a bigger one is a
// damaged or hostile file, not a model.
constexpr uint64_t kMaxSafetensorsHeader = 100u << 20;

struct StTensor {
    std::string name;
    StDtype dtype = StDtype::f32;
    std::vector<int64_t> shape;       // PyTorch order: shape[0] outermost, the last dim contiguous
    std::span<const std::byte> data;  // [n_elements * st_dtype_size] view into the file
    std::string file;                 // file name the tensor lives in (for messages)

    int64_t n_elements() const;
    // Contiguous length of a row (the last dim; 1 for a scalar or 1-D tensor) and row count.
    int64_t row_length() const { return shape.size() >= 2 ? shape.back() : 1; }
    int64_t n_rows() const { return row_length() == 0 ? 0 : n_elements() / row_length(); }
    std::string shape_string() const;  // "[4096, 1024]"
};

// One parsed file. Tensors are in data-offset order.
struct SafetensorsFile {
    std::vector<StTensor> tensors;
    std::map<std::string, std::string> metadata;  // __metadata__
    std::shared_ptr<MappedFile> mapping;          // null when parsed from caller-owned bytes

    const StTensor* find(std::string_view name) const;

private:
    std::map<std::string, size_t, std::less<>> index_;
    friend Result<SafetensorsFile> parse_safetensors(std::span<const std::byte> bytes, const std::string& name);
};

// Parses `bytes` (the whole file); `name` prefixes error messages. Views point into `bytes`.
Result<SafetensorsFile> parse_safetensors(std::span<const std::byte> bytes, const std::string& name = "safetensors");
// Maps `path` read-only and parses it; errors name the path.
Result<std::shared_ptr<SafetensorsFile>> open_safetensors(const std::string& path);

// Every tensor of a checkpoint directory. With model.safetensors.index.json: the shards its
// weight_map names, each tensor in exactly the shard the map says (a tensor missing from its
// shard, a shard holding a tensor the map does not list or puts elsewhere, a listed shard
// missing: errors naming both). Without: every model*.safetensors (else every *.safetensors),
// with no tensor name in two files.
class SafetensorsCheckpoint {
public:
    static Result<SafetensorsCheckpoint> open_dir(const std::string& dir);

    const StTensor* find(std::string_view name) const;
    // Every tensor, shard by shard (file name order), then data-offset order.
    const std::vector<const StTensor*>& tensors() const { return order_; }
    const std::vector<std::string>& files() const { return file_names_; }
    bool sharded() const { return sharded_; }

private:
    std::vector<std::shared_ptr<SafetensorsFile>> files_;
    std::vector<std::string> file_names_;  // [files_.size()] base names
    std::vector<const StTensor*> order_;
    std::map<std::string, const StTensor*, std::less<>> by_name_;
    bool sharded_ = false;
};

// Rows [row_begin, row_begin + n_rows) of `t` seen as [n_rows(), row_length()], converted to
// f32 into out (n_rows * row_length() floats). unsupported for a non-float dtype;
// out_of_range for rows outside the tensor.
Status read_rows_f32(const StTensor& t, int64_t row_begin, int64_t n_rows, std::span<float> out);

// Builds a file (tests, tools). Tensors are laid out in the order given; `data` must hold
// exactly n_elements * st_dtype_size bytes. The header is padded with spaces to a multiple of
// 8 bytes, as the reference writer does. Errors: duplicate or empty names, size mismatch.
struct StTensorData {
    std::string name;
    StDtype dtype = StDtype::f32;
    std::vector<int64_t> shape;
    std::span<const std::byte> data;
};
Result<std::vector<std::byte>> build_safetensors(std::span<const StTensorData> tensors,
                                                 const std::map<std::string, std::string>& metadata = {});

}  // namespace hearth::store
