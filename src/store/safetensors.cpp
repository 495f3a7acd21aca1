#include "store/safetensors.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "base/fp16.h"

namespace hearth::store {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

struct DtypeInfo {
    StDtype type;
    const char* name;
    size_t size;
};

constexpr DtypeInfo kDtypes[] = {
    {StDtype::boolean, "BOOL", 1}, {StDtype::u8, "U8", 1},    {StDtype::i8, "I8", 1},
    {StDtype::u16, "U16", 2},      {StDtype::i16, "I16", 2},  {StDtype::f16, "F16", 2},
    {StDtype::bf16, "BF16", 2},    {StDtype::u32, "U32", 4},  {StDtype::i32, "I32", 4},
    {StDtype::f32, "F32", 4},      {StDtype::u64, "U64", 8},  {StDtype::i64, "I64", 8},
    {StDtype::f64, "F64", 8},      {StDtype::f8_e4m3, "F8_E4M3", 1}, {StDtype::f8_e5m2, "F8_E5M2", 1},
};

const DtypeInfo& info(StDtype t) {
    for (const DtypeInfo& d : kDtypes)
        if (d.type == t) return d;
    return kDtypes[0];
}

// Largest dimension and element count accepted: far beyond any real tensor, small enough that
// products of a few of them cannot overflow int64 unnoticed.
constexpr int64_t kMaxDim = int64_t(1) << 40;
constexpr int kMaxRank = 8;
// JSON nesting beyond this is no safetensors header; refusing it keeps the parser's recursion
// shallow whatever the input.
constexpr int kMaxJsonDepth = 16;

uint64_t read_u64_le(const std::byte* p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(p[i]);
    return v;
}

bool json_depth_ok(std::string_view text) {
    int depth = 0;
    bool in_string = false, escaped = false;
    for (char c : text) {
        if (in_string) {
            if (escaped) escaped = false;
            else if (c == '\\') escaped = true;
            else if (c == '"') in_string = false;
            continue;
        }
        if (c == '"') in_string = true;
        else if (c == '{' || c == '[') {
            if (++depth > kMaxJsonDepth) return false;
        } else if (c == '}' || c == ']') {
            --depth;
        }
    }
    return true;
}

Status corrupt(const std::string& where, const std::string& what) {
    return error(StatusCode::corrupt, where + ": " + what);
}

Result<int64_t> elements_of(const std::vector<int64_t>& shape, const std::string& where) {
    int64_t n = 1;
    for (int64_t d : shape) {
        if (__builtin_mul_overflow(n, d, &n) || n > kMaxDim * 16)
            return corrupt(where, "element count overflows");
    }
    return n;
}

std::string shape_str(const std::vector<int64_t>& shape) {
    std::string s = "[";
    for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + "]";
}

Result<std::string> read_text(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) return error(StatusCode::not_found, path + ": cannot open");
    std::stringstream ss;
    ss << f.rdbuf();
    if (f.bad()) return error(StatusCode::io_error, path + ": read error");
    return ss.str();
}

}  // namespace

const char* st_dtype_name(StDtype t) { return info(t).name; }
size_t st_dtype_size(StDtype t) { return info(t).size; }

std::optional<StDtype> parse_st_dtype(std::string_view name) {
    for (const DtypeInfo& d : kDtypes)
        if (name == d.name) return d.type;
    return std::nullopt;
}

int64_t StTensor::n_elements() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;  // validated at parse time: cannot overflow
    return n;
}

std::string StTensor::shape_string() const { return shape_str(shape); }

const StTensor* SafetensorsFile::find(std::string_view name) const {
    auto it = index_.find(name);
    return it == index_.end() ? nullptr : &tensors[it->second];
}

Result<SafetensorsFile> parse_safetensors(std::span<const std::byte> bytes, const std::string& name) {
    if (bytes.size() < 8)
        return corrupt(name, strformat("%zu bytes: too short for the 8-byte header length", bytes.size()));
    const uint64_t header_len = read_u64_le(bytes.data());
    if (header_len > kMaxSafetensorsHeader)
        return corrupt(name, strformat("header of %llu bytes is larger than the %llu-byte limit",
                                       (unsigned long long)header_len, (unsigned long long)kMaxSafetensorsHeader));
    if (header_len > bytes.size() - 8)
        return corrupt(name, strformat("header of %llu bytes runs past the end of the file (%zu bytes): truncated?",
                                       (unsigned long long)header_len, bytes.size()));
    const std::string_view header(reinterpret_cast<const char*>(bytes.data() + 8), (size_t)header_len);
    const std::span<const std::byte> data = bytes.subspan(8 + (size_t)header_len);
    if (header.empty() || header.front() != '{')
        return corrupt(name, "header is not a JSON object");
    if (!json_depth_ok(header)) return corrupt(name, "header JSON is nested too deeply");
    const json j = json::parse(header.begin(), header.end(), nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) return corrupt(name, "header is not valid JSON");
    if (!j.is_object()) return corrupt(name, "header is not a JSON object");

    SafetensorsFile file;
    struct Range {
        uint64_t begin, end;
        size_t tensor;
    };
    std::vector<Range> ranges;
    for (auto it = j.begin(); it != j.end(); ++it) {
        const std::string& key = it.key();
        const json& v = it.value();
        if (key == "__metadata__") {
            if (!v.is_object()) return corrupt(name, "__metadata__ is not an object");
            for (auto m = v.begin(); m != v.end(); ++m) {
                if (!m.value().is_string())
                    return corrupt(name, "__metadata__." + m.key() + " is not a string");
                file.metadata[m.key()] = m.value().get<std::string>();
            }
            continue;
        }
        const std::string where = name + ": tensor " + key;
        if (key.empty()) return corrupt(name, "a tensor has an empty name");
        if (!v.is_object()) return corrupt(where, "entry is not an object");
        auto dt = v.find("dtype");
        auto sh = v.find("shape");
        auto off = v.find("data_offsets");
        if (dt == v.end() || !dt->is_string()) return corrupt(where, "dtype is missing or not a string");
        if (sh == v.end() || !sh->is_array()) return corrupt(where, "shape is missing or not an array");
        if (off == v.end() || !off->is_array() || off->size() != 2)
            return corrupt(where, "data_offsets is missing or not a [begin, end] pair");

        StTensor t;
        t.name = key;
        t.file = name;
        const std::string dtype_name = dt->get<std::string>();
        auto dtype = parse_st_dtype(dtype_name);
        if (!dtype) return corrupt(where, "unknown dtype '" + dtype_name + "'");
        t.dtype = *dtype;
        if (sh->size() > (size_t)kMaxRank) return corrupt(where, strformat("%zu dimensions", sh->size()));
        for (const json& d : *sh) {
            if (!d.is_number_integer() || d.get<int64_t>() < 0 || d.get<int64_t>() > kMaxDim)
                return corrupt(where, "shape has a dimension that is not a non-negative integer below 2^40");
            t.shape.push_back(d.get<int64_t>());
        }
        HEARTH_ASSIGN(const int64_t n, elements_of(t.shape, where));
        uint64_t begin = 0, end = 0;
        for (int k = 0; k < 2; ++k) {
            const json& o = (*off)[k];
            if (!o.is_number_unsigned()) return corrupt(where, "data_offsets are not non-negative integers");
            (k == 0 ? begin : end) = o.get<uint64_t>();
        }
        if (begin > end) return corrupt(where, strformat("data_offsets [%llu, %llu] are reversed",
                                                         (unsigned long long)begin, (unsigned long long)end));
        if (end > data.size())
            return corrupt(where, strformat("data_offsets [%llu, %llu] run past the %zu data bytes: truncated?",
                                            (unsigned long long)begin, (unsigned long long)end, data.size()));
        const uint64_t want = (uint64_t)n * st_dtype_size(t.dtype);
        if (end - begin != want)
            return corrupt(where, strformat("%llu data bytes for shape %s of %s (expected %llu)",
                                            (unsigned long long)(end - begin), shape_str(t.shape).c_str(),
                                            dtype_name.c_str(), (unsigned long long)want));
        t.data = data.subspan((size_t)begin, (size_t)(end - begin));
        ranges.push_back({begin, end, file.tensors.size()});
        file.tensors.push_back(std::move(t));
    }

    // Overlaps: sorted by start, each non-empty range must begin at or after the previous end.
    std::stable_sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& b) { return a.begin < b.begin; });
    const Range* prev = nullptr;
    for (const Range& r : ranges) {
        if (r.begin == r.end) continue;
        if (prev && r.begin < prev->end)
            return corrupt(name, "tensors " + file.tensors[prev->tensor].name + " and " + file.tensors[r.tensor].name +
                                     " overlap");
        prev = &r;
    }
    std::vector<StTensor> ordered;
    ordered.reserve(ranges.size());
    for (const Range& r : ranges) ordered.push_back(std::move(file.tensors[r.tensor]));
    file.tensors = std::move(ordered);
    for (size_t i = 0; i < file.tensors.size(); ++i) file.index_[file.tensors[i].name] = i;
    return file;
}

Result<std::shared_ptr<SafetensorsFile>> open_safetensors(const std::string& path) {
    HEARTH_ASSIGN(std::shared_ptr<MappedFile> mapping, MappedFile::open(path));
    HEARTH_ASSIGN(SafetensorsFile file, parse_safetensors(mapping->bytes(), path));
    file.mapping = std::move(mapping);
    return std::make_shared<SafetensorsFile>(std::move(file));
}

const StTensor* SafetensorsCheckpoint::find(std::string_view name) const {
    auto it = by_name_.find(name);
    return it == by_name_.end() ? nullptr : it->second;
}

Result<SafetensorsCheckpoint> SafetensorsCheckpoint::open_dir(const std::string& dir) {
    SafetensorsCheckpoint ck;
    const fs::path root(dir);
    const fs::path index_path = root / "model.safetensors.index.json";
    std::error_code ec;
    // weight_map: tensor -> shard file name; empty without an index.
    std::map<std::string, std::string> weight_map;
    std::vector<std::string> names;
    if (fs::exists(index_path, ec)) {
        ck.sharded_ = true;
        HEARTH_ASSIGN(std::string text, read_text(index_path.string()));
        const std::string where = index_path.string();
        if (!json_depth_ok(text)) return corrupt(where, "JSON is nested too deeply");
        const json j = json::parse(text, nullptr, false);
        if (j.is_discarded() || !j.is_object()) return corrupt(where, "not a JSON object");
        auto wm = j.find("weight_map");
        if (wm == j.end() || !wm->is_object()) return corrupt(where, "weight_map is missing or not an object");
        std::set<std::string> files;
        for (auto it = wm->begin(); it != wm->end(); ++it) {
            if (!it.value().is_string()) return corrupt(where, "weight_map." + it.key() + " is not a file name");
            const std::string f = it.value().get<std::string>();
            if (f.empty() || f.find('/') != std::string::npos || f == "." || f == "..")
                return corrupt(where, "weight_map." + it.key() + ": '" + f + "' is not a file in the checkpoint folder");
            weight_map[it.key()] = f;
            files.insert(f);
        }
        if (files.empty()) return corrupt(where, "weight_map is empty");
        names.assign(files.begin(), files.end());
    } else {
        std::vector<std::string> all, model;
        for (const auto& e : fs::directory_iterator(root, ec)) {
            const std::string n = e.path().filename().string();
            if (n.size() <= 12 || n.compare(n.size() - 12, 12, ".safetensors") != 0) continue;
            all.push_back(n);
            if (n.rfind("model", 0) == 0) model.push_back(n);
        }
        if (ec) return error(StatusCode::io_error, dir + ": " + ec.message());
        names = model.empty() ? all : model;
        std::sort(names.begin(), names.end());
        if (names.empty()) return error(StatusCode::not_found, dir + ": no *.safetensors file");
    }

    for (const std::string& n : names) {
        const fs::path p = root / n;
        if (!fs::exists(p, ec))
            return error(StatusCode::not_found, strformat("%s: shard %s named by model.safetensors.index.json is missing",
                                                          dir.c_str(), n.c_str()));
        HEARTH_ASSIGN(std::shared_ptr<SafetensorsFile> f, open_safetensors(p.string()));
        for (StTensor& t : f->tensors) t.file = n;
        ck.files_.push_back(std::move(f));
        ck.file_names_.push_back(n);
    }
    for (size_t i = 0; i < ck.files_.size(); ++i) {
        const std::string& fname = ck.file_names_[i];
        for (const StTensor& t : ck.files_[i]->tensors) {
            if (ck.sharded_) {
                auto it = weight_map.find(t.name);
                if (it == weight_map.end())
                    return corrupt(dir, "shard " + fname + " holds tensor " + t.name +
                                            ", which model.safetensors.index.json does not list");
                if (it->second != fname)
                    return corrupt(dir, "tensor " + t.name + " is in shard " + fname +
                                            " but model.safetensors.index.json puts it in " + it->second);
            }
            auto [pos, inserted] = ck.by_name_.emplace(t.name, &t);
            if (!inserted)
                return corrupt(dir, "tensor " + t.name + " is in both " + pos->second->file + " and " + fname);
            ck.order_.push_back(&t);
        }
    }
    for (const auto& [tensor, fname] : weight_map) {
        if (!ck.by_name_.count(tensor))
            return corrupt(dir, "tensor " + tensor + " is missing from shard " + fname +
                                    " (model.safetensors.index.json lists it there)");
    }
    return ck;
}

Status read_rows_f32(const StTensor& t, int64_t row_begin, int64_t n_rows, std::span<float> out) {
    const int64_t row_len = t.row_length();
    if (row_begin < 0 || n_rows < 0 || row_begin + n_rows > t.n_rows())
        return error(StatusCode::out_of_range, strformat("tensor %s: rows [%lld, %lld) outside its %lld rows", t.name.c_str(),
                                                         (long long)row_begin, (long long)(row_begin + n_rows),
                                                         (long long)t.n_rows()));
    const size_t n = (size_t)(n_rows * row_len);
    if (out.size() != n)
        return error(StatusCode::internal, strformat("tensor %s: %zu floats for %zu values", t.name.c_str(), out.size(), n));
    const std::byte* src = t.data.data() + (size_t)(row_begin * row_len) * st_dtype_size(t.dtype);
    // The data section may start at any byte offset, so elements are copied, never cast.
    switch (t.dtype) {
    case StDtype::f32:
        std::memcpy(out.data(), src, n * 4);
        return {};
    case StDtype::f16:
    case StDtype::bf16:
        for (size_t i = 0; i < n; ++i) {
            uint16_t h;
            std::memcpy(&h, src + 2 * i, 2);
            out[i] = t.dtype == StDtype::f16 ? fp16_to_f32(h) : bf16_to_f32(h);
        }
        return {};
    default:
        return error(StatusCode::unsupported, strformat("tensor %s: dtype %s is not supported (only F32, F16 and BF16)",
                                                        t.name.c_str(), st_dtype_name(t.dtype)));
    }
}

Result<std::vector<std::byte>> build_safetensors(std::span<const StTensorData> tensors,
                                                 const std::map<std::string, std::string>& metadata) {
    json header = json::object();
    if (!metadata.empty()) {
        json m = json::object();
        for (const auto& [k, v] : metadata) m[k] = v;
        header["__metadata__"] = m;
    }
    uint64_t offset = 0;
    for (const StTensorData& t : tensors) {
        if (t.name.empty() || t.name == "__metadata__")
            return error(StatusCode::invalid_argument, "tensor name '" + t.name + "' is not allowed");
        if (header.contains(t.name)) return error(StatusCode::invalid_argument, "duplicate tensor " + t.name);
        HEARTH_ASSIGN(const int64_t n, elements_of(t.shape, "tensor " + t.name));
        if ((uint64_t)n * st_dtype_size(t.dtype) != t.data.size())
            return error(StatusCode::invalid_argument, strformat("tensor %s: %zu bytes for shape %s of %s", t.name.c_str(),
                                                                 t.data.size(), shape_str(t.shape).c_str(),
                                                                 st_dtype_name(t.dtype)));
        header[t.name] = {{"dtype", st_dtype_name(t.dtype)},
                          {"shape", t.shape},
                          {"data_offsets", {offset, offset + t.data.size()}}};
        offset += t.data.size();
    }
    std::string text = header.dump();
    text.append((8 - text.size() % 8) % 8, ' ');
    std::vector<std::byte> out(8 + text.size());
    const uint64_t len = text.size();
    for (int i = 0; i < 8; ++i) out[i] = static_cast<std::byte>((len >> (8 * i)) & 0xff);
    std::memcpy(out.data() + 8, text.data(), text.size());
    out.reserve(out.size() + offset);
    for (const StTensorData& t : tensors) out.insert(out.end(), t.data.begin(), t.data.end());
    return out;
}

}  // namespace hearth::store
