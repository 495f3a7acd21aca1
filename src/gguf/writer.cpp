// GGUF v3 writer. Everything the reader would reject is rejected here first, so a file this
// writer produces always parses. Tensor bytes are streamed: see GgufWriter in gguf.h.
#include <algorithm>
#include <cstring>
#include <limits>
#include <memory>

#include "base/file_writer.h"
#include "gguf/gguf.h"

namespace hearth::gguf {
namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" little-endian
constexpr uint32_t kVersion = 3;
constexpr uint64_t kDefaultAlignment = 32;
// The reader's limits (reader.cpp): deeper nesting or longer strings are rejected there.
constexpr int kMaxArrayDepth = 8;
constexpr uint64_t kMaxStringBytes = 1ull << 30;
constexpr int64_t kMaxDimension = int64_t(1) << 40;
constexpr size_t kMaxPadding = 4096;  // zeros emitted per call; any alignment works, in steps

class Out {
public:
    std::vector<std::byte> buf;
    template <typename T>
    void put(T v) {
        size_t at = buf.size();
        buf.resize(at + sizeof(T));
        std::memcpy(buf.data() + at, &v, sizeof(T));
    }
    void put_string(const std::string& s) {
        put<uint64_t>(s.size());
        size_t at = buf.size();
        buf.resize(at + s.size());
        std::memcpy(buf.data() + at, s.data(), s.size());
    }
};

bool is_valid_type(ValueType t) { return (uint32_t)t <= (uint32_t)ValueType::f64; }

Status check_value(const std::string& key, const Value& v, int depth) {
    if (!is_valid_type(v.type))
        return error(StatusCode::invalid_argument, strformat("metadata key %s: unknown value type %u", key.c_str(), (unsigned)v.type));
    if (v.type == ValueType::string && v.str.size() > kMaxStringBytes)
        return error(StatusCode::invalid_argument, "metadata key " + key + ": string longer than 1 GiB");
    if (v.type != ValueType::array) return {};
    if (depth >= kMaxArrayDepth)
        return error(StatusCode::invalid_argument,
                     strformat("metadata key %s: arrays nested more than %d deep", key.c_str(), kMaxArrayDepth));
    if (!is_valid_type(v.elem_type))
        return error(StatusCode::invalid_argument,
                     strformat("metadata key %s: unknown array element type %u", key.c_str(), (unsigned)v.elem_type));
    for (const Value& item : v.items) {
        if (item.type != v.elem_type)
            return error(StatusCode::invalid_argument,
                         strformat("metadata key %s: array of %s holds a %s", key.c_str(), value_type_name(v.elem_type),
                                   value_type_name(item.type)));
        HEARTH_TRY(check_value(key, item, depth + 1));
    }
    return {};
}

void put_value(Out& o, const Value& v) {
    switch (v.type) {
        case ValueType::u8: o.put<uint8_t>((uint8_t)v.u); break;
        case ValueType::i8: o.put<int8_t>((int8_t)v.i); break;
        case ValueType::u16: o.put<uint16_t>((uint16_t)v.u); break;
        case ValueType::i16: o.put<int16_t>((int16_t)v.i); break;
        case ValueType::u32: o.put<uint32_t>((uint32_t)v.u); break;
        case ValueType::i32: o.put<int32_t>((int32_t)v.i); break;
        case ValueType::u64: o.put<uint64_t>(v.u); break;
        case ValueType::i64: o.put<int64_t>(v.i); break;
        case ValueType::f32: o.put<float>((float)v.f); break;
        case ValueType::f64: o.put<double>(v.f); break;
        case ValueType::boolean: o.put<uint8_t>(v.u ? 1 : 0); break;
        case ValueType::string: o.put_string(v.str); break;
        case ValueType::array:
            o.put<uint32_t>((uint32_t)v.elem_type);
            o.put<uint64_t>(v.items.size());
            for (const auto& it : v.items) put_value(o, it);
            break;
    }
}

uint64_t padding(uint64_t n, uint64_t alignment) { return (alignment - n % alignment) % alignment; }

}  // namespace

Result<uint64_t> GgufWriter::check_tensor(const std::string& name, quant::QuantType type,
                                          const std::vector<int64_t>& ne) const {
    const std::string where = "tensor " + name;
    if (name.empty()) return error(StatusCode::invalid_argument, "tensor name is empty");
    if (names_.count(name))
        return error(StatusCode::invalid_argument, where + ": added twice");
    if (ne.empty() || ne.size() > (size_t)kMaxDims)
        return error(StatusCode::invalid_argument, where + ": 1 to 4 dimensions required");
    const quant::TypeTraits* tr = quant::find_traits((uint32_t)type);
    if (!tr) return error(StatusCode::invalid_argument, strformat("%s: unknown tensor type id %u", where.c_str(), (unsigned)type));
    int64_t n = 1;
    for (size_t i = 0; i < ne.size(); ++i) {
        const int64_t d = ne[i];
        if (d < 1 || d > kMaxDimension)
            return error(StatusCode::invalid_argument,
                         strformat("%s: dimension %zu is %lld (must be 1 to 2^40)", where.c_str(), i, (long long)d));
        if (n > std::numeric_limits<int64_t>::max() / d) return error(StatusCode::invalid_argument, where + ": element count overflows");
        n *= d;
    }
    if (ne[0] % tr->block_size != 0)
        return error(StatusCode::invalid_argument,
                     strformat("%s: row length %lld is not a multiple of the %s block size %lld", where.c_str(),
                               (long long)ne[0], tr->name, (long long)tr->block_size));
    const uint64_t blocks = (uint64_t)(n / tr->block_size);
    if (blocks > std::numeric_limits<uint64_t>::max() / 2 / tr->type_size)
        return error(StatusCode::invalid_argument, where + ": byte size overflows");
    return blocks * tr->type_size;
}

Status GgufWriter::add_tensor(std::string name, quant::QuantType type, std::vector<int64_t> ne,
                              std::span<const std::byte> data) {
    HEARTH_ASSIGN(uint64_t n_bytes, check_tensor(name, type, ne));
    if (data.size() != n_bytes)
        return error(StatusCode::invalid_argument, strformat("tensor %s: %zu bytes given, %llu expected", name.c_str(),
                                                             data.size(), (unsigned long long)n_bytes));
    names_.insert(name);
    tensors_.push_back({std::move(name), type, std::move(ne), n_bytes, std::vector<std::byte>(data.begin(), data.end()), {}});
    return {};
}

Status GgufWriter::add_tensor_lazy(std::string name, quant::QuantType type, std::vector<int64_t> ne, FillFn fill) {
    HEARTH_ASSIGN(uint64_t n_bytes, check_tensor(name, type, ne));
    if (!fill) return error(StatusCode::invalid_argument, "tensor " + name + ": no fill function");
    names_.insert(name);
    tensors_.push_back({std::move(name), type, std::move(ne), n_bytes, {}, std::move(fill)});
    return {};
}

// Header, metadata and tensor infos, padded to the alignment: everything before the data.
Status GgufWriter::build_header(std::vector<std::byte>& out, uint64_t& alignment) const {
    bool emit_alignment = false;
    if (const Value* a = meta_.find("general.alignment")) {
        if (a->type != ValueType::u32)
            return error(StatusCode::invalid_argument,
                         strformat("general.alignment must be u32, found %s", value_type_name(a->type)));
        alignment = a->u;
    } else {
        alignment = alignment_;
        emit_alignment = alignment != kDefaultAlignment;
    }
    if (alignment == 0 || (alignment & (alignment - 1)) != 0 || alignment > std::numeric_limits<uint32_t>::max())
        return error(StatusCode::invalid_argument,
                     strformat("alignment %llu is not a power of two that fits in u32", (unsigned long long)alignment));

    Out o;
    o.put<uint32_t>(kMagic);
    o.put<uint32_t>(kVersion);
    o.put<uint64_t>(tensors_.size());
    o.put<uint64_t>(meta_.entries().size() + (emit_alignment ? 1 : 0));
    for (const auto& [k, v] : meta_.entries()) {
        if (k.empty()) return error(StatusCode::invalid_argument, "metadata key is empty");
        HEARTH_TRY(check_value(k, v, 0));
        o.put_string(k);
        o.put<uint32_t>((uint32_t)v.type);
        put_value(o, v);
    }
    if (emit_alignment) {
        o.put_string("general.alignment");
        o.put<uint32_t>((uint32_t)ValueType::u32);
        o.put<uint32_t>((uint32_t)alignment);
    }
    uint64_t offset = 0;
    for (const auto& t : tensors_) {
        o.put_string(t.name);
        o.put<uint32_t>((uint32_t)t.ne.size());
        for (int64_t d : t.ne) o.put<uint64_t>((uint64_t)d);
        o.put<uint32_t>((uint32_t)t.type);
        o.put<uint64_t>(offset);
        const uint64_t padded = t.n_bytes + padding(t.n_bytes, alignment);
        if (offset > std::numeric_limits<uint64_t>::max() / 2 - padded)
            return error(StatusCode::invalid_argument, "tensor data larger than 2^63 bytes");
        offset += padded;
    }
    o.buf.resize(o.buf.size() + padding(o.buf.size(), alignment), std::byte{0});
    out = std::move(o.buf);
    return {};
}

Status GgufWriter::write_to(const EmitFn& emit, std::span<const std::byte> header, uint64_t alignment) const {
    static constexpr std::byte kZeros[kMaxPadding] = {};
    HEARTH_TRY(emit(header));

    // One buffer for every lazy tensor, sized once for the largest: growing it tensor by
    // tensor would copy gigabytes and briefly hold two large buffers.
    uint64_t max_lazy = 0;
    for (const auto& t : tensors_)
        if (t.fill) max_lazy = std::max(max_lazy, t.n_bytes);
    std::unique_ptr<std::byte[]> scratch;  // [max_lazy] bytes: the lazy tensor being written
    if (max_lazy > 0) {
        scratch.reset(new (std::nothrow) std::byte[(size_t)max_lazy]);
        if (!scratch)
            return error(StatusCode::resource_exhausted,
                         strformat("cannot allocate %llu bytes for the largest tensor", (unsigned long long)max_lazy));
    }
    for (const auto& t : tensors_) {
        if (t.fill) {
            std::span<std::byte> dst(scratch.get(), (size_t)t.n_bytes);
            std::memset(dst.data(), 0, dst.size());
            Status st = t.fill(dst);
            if (!st.ok()) return st.with_context("tensor " + t.name);
            HEARTH_TRY(emit(dst));
        } else {
            HEARTH_TRY(emit(t.data));
        }
        for (uint64_t pad = padding(t.n_bytes, alignment); pad > 0;) {
            const uint64_t n = std::min<uint64_t>(pad, kMaxPadding);
            HEARTH_TRY(emit({kZeros, (size_t)n}));
            pad -= n;
        }
    }
    return {};
}

Result<std::vector<std::byte>> GgufWriter::serialize() const {
    std::vector<std::byte> header;
    uint64_t alignment;
    HEARTH_TRY(build_header(header, alignment));
    std::vector<std::byte> out;
    out.reserve((size_t)(header.size() + data_size(alignment)));
    HEARTH_TRY(write_to(
        [&](std::span<const std::byte> bytes) {
            out.insert(out.end(), bytes.begin(), bytes.end());
            return Status();
        },
        header, alignment));
    return out;
}

std::vector<std::byte> GgufWriter::to_bytes() const {
    auto r = serialize();
    return r.ok() ? std::move(r).value() : std::vector<std::byte>();
}

Result<uint64_t> GgufWriter::file_size() const {
    std::vector<std::byte> header;
    uint64_t alignment;
    HEARTH_TRY(build_header(header, alignment));
    return header.size() + data_size(alignment);
}

uint64_t GgufWriter::data_size(uint64_t alignment) const {
    uint64_t size = 0;
    for (const auto& t : tensors_) size += t.n_bytes + padding(t.n_bytes, alignment);
    return size;
}

Status GgufWriter::write_file(const std::string& path) const {
    // Validate before a temporary file exists.
    std::vector<std::byte> header;
    uint64_t alignment;
    HEARTH_TRY(build_header(header, alignment));
    const uint64_t size = header.size() + data_size(alignment);

    // On any error below, `file` removes the temporary as it goes out of scope.
    HEARTH_ASSIGN(AtomicFileWriter file, AtomicFileWriter::create(path));
    HEARTH_TRY(file.reserve(size));
    HEARTH_TRY(write_to([&](std::span<const std::byte> bytes) { return file.write(bytes); }, header, alignment));
    if (file.bytes_written() != size)
        return error(StatusCode::internal, strformat("%s: wrote %llu bytes, planned %llu", path.c_str(),
                                                     (unsigned long long)file.bytes_written(), (unsigned long long)size));
    return file.commit();
}

}  // namespace hearth::gguf
