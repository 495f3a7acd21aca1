// GGUF reader. Every count, length and offset is checked against the bytes that remain
// before it is used, so a hostile file can neither make us read out of bounds nor allocate
// more than the file could describe.
#include <algorithm>
#include <cstring>
#include <limits>

#include "gguf/gguf.h"

namespace hearth::gguf {
namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" little-endian
constexpr int kMaxArrayDepth = 8;         // nested arrays deeper than this are hostile
constexpr uint64_t kMaxStringBytes = 1ull << 30;
// Metadata values (entries plus array items) in one file. A Value takes ~100 bytes in memory
// but a u8 array item only 1 byte on disk, so without a cap a hostile file of a few GB could
// make us allocate hundreds. The largest real vocabularies hold ~1M values.
constexpr uint64_t kMaxMetadataValues = 1ull << 24;
constexpr int64_t kMaxDimension = int64_t(1) << 40;

// A file-supplied name for an error message: printable ASCII kept, other bytes as \xNN.
std::string printable(const std::string& s) {
    std::string out;
    out.reserve(s.size());
    for (unsigned char ch : s) {
        if (ch >= 0x20 && ch < 0x7f && ch != '\\') out += (char)ch;
        else out += strformat("\\x%02x", ch);
    }
    return out;
}

class Cursor {
public:
    explicit Cursor(std::span<const std::byte> b) : b_(b) {}
    uint64_t pos() const { return pos_; }
    uint64_t remaining() const { return b_.size() - pos_; }

    template <typename T>
    Status read(T& out, const char* what) {
        if (remaining() < sizeof(T))
            return error(StatusCode::corrupt, strformat("truncated: file ends inside %s at byte %llu", what,
                                                        (unsigned long long)pos_));
        std::memcpy(&out, b_.data() + pos_, sizeof(T));
        pos_ += sizeof(T);
        return {};
    }

    Status read_string(std::string& out, const char* what) {
        uint64_t len;
        HEARTH_TRY(read(len, what));
        if (len > remaining() || len > kMaxStringBytes)
            return error(StatusCode::corrupt, strformat("%s: string length %llu exceeds the %llu bytes left", what,
                                                        (unsigned long long)len, (unsigned long long)remaining()));
        out.assign(reinterpret_cast<const char*>(b_.data() + pos_), (size_t)len);
        pos_ += len;
        return {};
    }

private:
    std::span<const std::byte> b_;
    uint64_t pos_ = 0;
};

// Smallest encoded size of one value of type t (arrays: type + count).
uint64_t min_value_size(ValueType t) {
    switch (t) {
        case ValueType::u8: case ValueType::i8: case ValueType::boolean: return 1;
        case ValueType::u16: case ValueType::i16: return 2;
        case ValueType::u32: case ValueType::i32: case ValueType::f32: return 4;
        case ValueType::u64: case ValueType::i64: case ValueType::f64: return 8;
        case ValueType::string: return 8;
        case ValueType::array: return 12;
    }
    return 1;
}

bool is_valid_type(uint32_t t) { return t <= 12; }

// values_left: how many more Values the file may still create (kMaxMetadataValues budget).
Status read_value(Cursor& c, ValueType type, Value& v, int depth, const std::string& key, uint64_t& values_left) {
    v.type = type;
    switch (type) {
        case ValueType::u8: { uint8_t x; HEARTH_TRY(c.read(x, key.c_str())); v.u = x; return {}; }
        case ValueType::i8: { int8_t x; HEARTH_TRY(c.read(x, key.c_str())); v.i = x; return {}; }
        case ValueType::u16: { uint16_t x; HEARTH_TRY(c.read(x, key.c_str())); v.u = x; return {}; }
        case ValueType::i16: { int16_t x; HEARTH_TRY(c.read(x, key.c_str())); v.i = x; return {}; }
        case ValueType::u32: { uint32_t x; HEARTH_TRY(c.read(x, key.c_str())); v.u = x; return {}; }
        case ValueType::i32: { int32_t x; HEARTH_TRY(c.read(x, key.c_str())); v.i = x; return {}; }
        case ValueType::u64: { uint64_t x; HEARTH_TRY(c.read(x, key.c_str())); v.u = x; return {}; }
        case ValueType::i64: { int64_t x; HEARTH_TRY(c.read(x, key.c_str())); v.i = x; return {}; }
        case ValueType::f32: { float x; HEARTH_TRY(c.read(x, key.c_str())); v.f = x; return {}; }
        case ValueType::f64: { double x; HEARTH_TRY(c.read(x, key.c_str())); v.f = x; return {}; }
        case ValueType::boolean: {
            uint8_t x;
            HEARTH_TRY(c.read(x, key.c_str()));
            if (x > 1) return error(StatusCode::corrupt, strformat("metadata key %s: bool value %u is not 0 or 1", key.c_str(), x));
            v.u = x;
            return {};
        }
        case ValueType::string: return c.read_string(v.str, key.c_str());
        case ValueType::array: {
            if (depth >= kMaxArrayDepth)
                return error(StatusCode::corrupt, "metadata key " + key + ": arrays nested too deeply");
            uint32_t et;
            uint64_t n;
            HEARTH_TRY(c.read(et, key.c_str()));
            if (!is_valid_type(et))
                return error(StatusCode::corrupt, strformat("metadata key %s: unknown array element type %u", key.c_str(), et));
            HEARTH_TRY(c.read(n, key.c_str()));
            v.elem_type = (ValueType)et;
            if (n > c.remaining() / min_value_size(v.elem_type))
                return error(StatusCode::corrupt, strformat("metadata key %s: array of %llu elements cannot fit in the %llu bytes left",
                                                            key.c_str(), (unsigned long long)n, (unsigned long long)c.remaining()));
            if (n > values_left)
                return error(StatusCode::corrupt, strformat("metadata key %s: array of %llu elements exceeds the limit of %llu "
                                                            "metadata values per file", key.c_str(), (unsigned long long)n,
                                                            (unsigned long long)kMaxMetadataValues));
            values_left -= n;
            v.items.resize((size_t)n);
            for (auto& item : v.items) HEARTH_TRY(read_value(c, v.elem_type, item, depth + 1, key, values_left));
            return {};
        }
    }
    return error(StatusCode::corrupt, "metadata key " + key + ": unknown value type");
}

}  // namespace

std::string TensorInfo::shape_string() const {
    std::string s = "[";
    for (int d = 0; d < n_dims; ++d) {
        if (d) s += ", ";
        s += std::to_string(ne[d]);
    }
    return s + "]";
}

const TensorInfo* GgufFile::find_tensor(std::string_view name) const {
    auto it = tensor_index_.find(name);
    return it == tensor_index_.end() ? nullptr : &tensors[it->second];
}

std::string GgufFile::architecture() const {
    auto r = meta.get_string("general.architecture");
    return r.ok() ? r.value() : std::string();
}

Result<GgufFile> parse_gguf(std::span<const std::byte> bytes) {
    GgufFile f;
    f.bytes = bytes;
    Cursor c(bytes);
    uint32_t magic;
    if (bytes.size() < 4) return error(StatusCode::corrupt, "not a GGUF file: too short");
    HEARTH_TRY(c.read(magic, "magic"));
    if (magic != kMagic) return error(StatusCode::corrupt, "not a GGUF file: bad magic");
    HEARTH_TRY(c.read(f.version, "version"));
    if (f.version != 2 && f.version != 3)
        return error(StatusCode::unsupported, strformat("GGUF version %u is not supported (only 2 and 3)", f.version));
    uint64_t n_tensors, n_kv;
    HEARTH_TRY(c.read(n_tensors, "tensor count"));
    HEARTH_TRY(c.read(n_kv, "metadata count"));
    // A metadata entry takes >= 8 (key length) + 4 (type) + 1 bytes; a tensor info >= 8+4+8+4+8.
    if (n_kv > c.remaining() / 13)
        return error(StatusCode::corrupt, strformat("metadata count %llu cannot fit in the file", (unsigned long long)n_kv));
    if (n_tensors > c.remaining() / 32)
        return error(StatusCode::corrupt, strformat("tensor count %llu cannot fit in the file", (unsigned long long)n_tensors));

    if (n_kv > kMaxMetadataValues)
        return error(StatusCode::corrupt, strformat("metadata count %llu exceeds the limit of %llu", (unsigned long long)n_kv,
                                                    (unsigned long long)kMaxMetadataValues));
    uint64_t values_left = kMaxMetadataValues - n_kv;
    for (uint64_t k = 0; k < n_kv; ++k) {
        std::string key;
        HEARTH_TRY(c.read_string(key, "metadata key"));
        if (key.empty()) return error(StatusCode::corrupt, strformat("metadata entry %llu has an empty key", (unsigned long long)k));
        // Keys are file bytes: messages show them escaped (no control characters in logs).
        const std::string shown = printable(key);
        if (f.meta.has(key)) return error(StatusCode::corrupt, "metadata key " + shown + " appears twice");
        uint32_t t;
        HEARTH_TRY(c.read(t, shown.c_str()));
        if (!is_valid_type(t)) return error(StatusCode::corrupt, strformat("metadata key %s: unknown value type %u", shown.c_str(), t));
        Value v;
        HEARTH_TRY(read_value(c, (ValueType)t, v, 0, shown, values_left));
        f.meta.set(std::move(key), std::move(v));
    }

    if (const Value* a = f.meta.find("general.alignment")) {
        if (a->type != ValueType::u32)
            return error(StatusCode::corrupt, strformat("general.alignment must be u32, found %s", value_type_name(a->type)));
        if (a->u == 0 || (a->u & (a->u - 1)) != 0)
            return error(StatusCode::corrupt, strformat("general.alignment %llu is not a power of two", (unsigned long long)a->u));
        f.alignment = a->u;
    }

    f.tensors.resize((size_t)n_tensors);
    for (uint64_t ti = 0; ti < n_tensors; ++ti) {
        TensorInfo& t = f.tensors[ti];
        HEARTH_TRY(c.read_string(t.name, "tensor name"));
        if (t.name.empty()) return error(StatusCode::corrupt, strformat("tensor %llu has an empty name", (unsigned long long)ti));
        const std::string where = "tensor " + printable(t.name);
        if (f.tensor_index_.count(t.name)) return error(StatusCode::corrupt, where + ": name appears twice");
        uint32_t n_dims;
        HEARTH_TRY(c.read(n_dims, where.c_str()));
        if (n_dims < 1 || n_dims > kMaxDims)
            return error(StatusCode::corrupt, strformat("%s: %u dimensions (1 to %d allowed)", where.c_str(), n_dims, kMaxDims));
        t.n_dims = (int)n_dims;
        int64_t n_elem = 1;
        for (uint32_t d = 0; d < n_dims; ++d) {
            uint64_t ne;
            HEARTH_TRY(c.read(ne, where.c_str()));
            if (ne == 0 || ne > (uint64_t)kMaxDimension)
                return error(StatusCode::corrupt, strformat("%s: dimension %u is %llu (must be 1 to 2^40)", where.c_str(), d,
                                                            (unsigned long long)ne));
            t.ne[d] = (int64_t)ne;
            if (n_elem > std::numeric_limits<int64_t>::max() / t.ne[d])
                return error(StatusCode::corrupt, where + ": element count overflows");
            n_elem *= t.ne[d];
        }
        uint32_t type_id;
        HEARTH_TRY(c.read(type_id, where.c_str()));
        const quant::TypeTraits* tr = quant::find_traits(type_id);
        if (!tr || !tr->is_known)
            return error(StatusCode::unsupported, strformat("%s: unknown tensor type id %u", where.c_str(), type_id));
        t.type = (quant::QuantType)type_id;
        if (t.ne[0] % tr->block_size != 0)
            return error(StatusCode::corrupt, strformat("%s: row length %lld is not a multiple of the %s block size %lld", where.c_str(),
                                                        (long long)t.ne[0], tr->name, (long long)tr->block_size));
        HEARTH_TRY(c.read(t.offset, where.c_str()));
        if (t.offset % f.alignment != 0)
            return error(StatusCode::corrupt, strformat("%s: offset %llu is not aligned to %llu", where.c_str(),
                                                        (unsigned long long)t.offset, (unsigned long long)f.alignment));
        const uint64_t blocks = (uint64_t)(n_elem / tr->block_size);
        if (blocks > std::numeric_limits<uint64_t>::max() / tr->type_size)
            return error(StatusCode::corrupt, where + ": byte size overflows");
        t.n_bytes = blocks * tr->type_size;
        f.tensor_index_.emplace(t.name, (size_t)ti);
    }

    // The data section starts at the next multiple of the alignment.
    uint64_t pos = c.pos();
    f.data_offset = (pos + f.alignment - 1) / f.alignment * f.alignment;
    if (n_tensors > 0 && f.data_offset > bytes.size())
        return error(StatusCode::corrupt, "truncated: file ends before the tensor data section");
    const uint64_t data_size = n_tensors > 0 ? bytes.size() - f.data_offset : 0;

    std::vector<size_t> order(f.tensors.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return f.tensors[a].offset < f.tensors[b].offset; });
    uint64_t prev_end = 0;
    const TensorInfo* prev = nullptr;
    for (size_t i : order) {
        TensorInfo& t = f.tensors[i];
        if (t.offset > data_size || t.n_bytes > data_size - t.offset)
            return error(StatusCode::corrupt, strformat("tensor %s: data [%llu, +%llu) runs past the end of the file (truncated?)",
                                                        printable(t.name).c_str(), (unsigned long long)t.offset, (unsigned long long)t.n_bytes));
        if (prev && t.offset < prev_end)
            return error(StatusCode::corrupt, "tensor " + printable(t.name) + ": data overlaps tensor " + printable(prev->name));
        prev_end = t.offset + t.n_bytes;
        prev = &t;
        t.data = bytes.data() + f.data_offset + t.offset;
    }
    return f;
}

Result<std::shared_ptr<GgufFile>> open_gguf(const std::string& path) {
    auto mapped = MappedFile::open(path);
    if (!mapped.ok()) return mapped.status();
    auto parsed = parse_gguf(mapped.value()->bytes());
    if (!parsed.ok()) return parsed.status().with_context(path);
    auto f = std::make_shared<GgufFile>(std::move(parsed).value());
    f->mapping = std::move(mapped).value();
    return f;
}

}  // namespace hearth::gguf
