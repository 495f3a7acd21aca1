// libFuzzer target for the GGUF reader. For any input, parse_gguf must return an error or a
// file whose every part can be used: each metadata value is read back through the typed
// getters, each tensor's first and last byte are read (libFuzzer hands us an exactly-sized
// heap copy, so ASan flags any view past the end), the reader's invariants are re-checked
// independently, and the file must survive a round trip through GgufWriter unchanged.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "gguf/gguf.h"

namespace {

using namespace hearth;
using namespace hearth::gguf;

#define FUZZ_CHECK(cond, ...)                                              \
    do {                                                                   \
        if (!(cond)) {                                                     \
            std::fprintf(stderr, "gguf_fuzz: check failed: %s: ", #cond); \
            std::fprintf(stderr, __VA_ARGS__);                             \
            std::fprintf(stderr, "\n");                                    \
            std::abort();                                                  \
        }                                                                  \
    } while (0)

volatile uint64_t g_sink;  // keeps the reads below from being optimized away

bool same_value(const Value& a, const Value& b) {
    if (a.type != b.type) return false;
    switch (a.type) {
        case ValueType::u8: case ValueType::u16: case ValueType::u32: case ValueType::u64:
        case ValueType::boolean:
            return a.u == b.u;
        case ValueType::i8: case ValueType::i16: case ValueType::i32: case ValueType::i64:
            return a.i == b.i;
        case ValueType::f32: case ValueType::f64:
            // f32 goes through double and back: a signalling NaN may come back quiet.
            return (std::isnan(a.f) && std::isnan(b.f)) || a.f == b.f;
        case ValueType::string:
            return a.str == b.str;
        case ValueType::array:
            if (a.elem_type != b.elem_type || a.items.size() != b.items.size()) return false;
            for (size_t i = 0; i < a.items.size(); ++i)
                if (!same_value(a.items[i], b.items[i])) return false;
            return true;
    }
    return false;
}

void touch_value(const Value& v, int depth) {
    FUZZ_CHECK(depth <= 8, "value nested %d deep", depth);
    g_sink = g_sink + v.u + (uint64_t)v.i + v.str.size() + (uint64_t)v.type;
    if (!v.str.empty()) g_sink = g_sink + (uint8_t)v.str.front() + (uint8_t)v.str.back();
    int64_t i;
    double f;
    if (v.to_i64(i)) g_sink = g_sink + (uint64_t)i;
    if (v.to_f64(f)) g_sink = g_sink + (uint64_t)std::isnan(f);
    if (v.type == ValueType::boolean) FUZZ_CHECK(v.u <= 1, "bool %llu", (unsigned long long)v.u);
    if (v.type != ValueType::array) return;
    for (const Value& item : v.items) {
        FUZZ_CHECK(item.type == v.elem_type, "array item type %u, declared %u", (unsigned)item.type, (unsigned)v.elem_type);
        touch_value(item, depth + 1);
    }
}

// Every getter on every key: each returns a value or a clean error, never crashes.
void touch_metadata(const Metadata& m) {
    for (const auto& [key, value] : m.entries()) {
        FUZZ_CHECK(!key.empty(), "empty key");
        FUZZ_CHECK(m.find(key) == &value, "find(%s) is not its entry", key.c_str());
        touch_value(value, 0);
        g_sink = g_sink + m.get_int(key).ok() + m.get_u32(key).ok() + m.get_float(key).ok() + m.get_bool(key).ok();
        g_sink = g_sink + m.get_string(key).ok() + m.get_string_array(key).ok() + m.get_f32_array(key).ok();
        g_sink = g_sink + m.get_int_array(key).ok() + m.get_int_or(key, 0).ok() + m.get_string_or(key, "").ok();
    }
}

void check_tensors(const GgufFile& f, const std::byte* begin, size_t size) {
    const std::byte* end = begin + size;
    FUZZ_CHECK(f.alignment != 0 && (f.alignment & (f.alignment - 1)) == 0, "alignment %llu",
               (unsigned long long)f.alignment);
    std::vector<std::pair<uint64_t, uint64_t>> spans;  // [offset, offset + n_bytes) per tensor
    for (const TensorInfo& t : f.tensors) {
        FUZZ_CHECK(f.find_tensor(t.name) == &t, "find_tensor(%s)", t.name.c_str());
        FUZZ_CHECK(t.n_dims >= 1 && t.n_dims <= kMaxDims, "%s: n_dims %d", t.name.c_str(), t.n_dims);
        const quant::TypeTraits* tr = quant::find_traits((uint32_t)t.type);
        FUZZ_CHECK(tr != nullptr, "%s: type %u", t.name.c_str(), (unsigned)t.type);
        FUZZ_CHECK(t.ne[0] % tr->block_size == 0, "%s: row length", t.name.c_str());
        FUZZ_CHECK(t.n_bytes == quant::row_size(t.type, t.ne[0]) * (uint64_t)t.n_rows(), "%s: n_bytes", t.name.c_str());
        FUZZ_CHECK(t.n_bytes > 0, "%s: empty", t.name.c_str());
        FUZZ_CHECK(t.offset % f.alignment == 0, "%s: misaligned", t.name.c_str());
        FUZZ_CHECK(t.data == begin + f.data_offset + t.offset, "%s: data pointer", t.name.c_str());
        FUZZ_CHECK(t.data >= begin && t.data < end && t.n_bytes <= (uint64_t)(end - t.data), "%s: view outside the input",
                   t.name.c_str());
        g_sink = g_sink + (uint8_t)t.data[0] + (uint8_t)t.data[t.n_bytes - 1] + t.shape_string().size();
        spans.emplace_back(t.offset, t.offset + t.n_bytes);
    }
    std::sort(spans.begin(), spans.end());
    for (size_t i = 1; i < spans.size(); ++i)
        FUZZ_CHECK(spans[i].first >= spans[i - 1].second, "tensor views overlap");
}

// Writes the parsed file back out and parses that: same metadata, shapes, types and bytes.
void check_round_trip(const GgufFile& f) {
    GgufWriter w(f.alignment);
    for (const auto& [key, value] : f.meta.entries()) w.set(key, value);
    for (const TensorInfo& t : f.tensors) {
        Status st = w.add_tensor(t.name, t.type, std::vector<int64_t>(t.ne, t.ne + t.n_dims), {t.data, (size_t)t.n_bytes});
        FUZZ_CHECK(st.ok(), "writer rejects tensor %s: %s", t.name.c_str(), st.message().c_str());
    }
    auto bytes = w.serialize();
    FUZZ_CHECK(bytes.ok(), "writer rejects a parsed file: %s", bytes.status().message().c_str());
    auto g = parse_gguf(bytes.value());
    FUZZ_CHECK(g.ok(), "reader rejects the writer's output: %s", g.status().message().c_str());
    FUZZ_CHECK(g->alignment == f.alignment, "alignment changed");
    FUZZ_CHECK(g->meta.entries().size() == f.meta.entries().size(), "metadata count changed");
    for (size_t i = 0; i < f.meta.entries().size(); ++i) {
        const auto& [key, value] = f.meta.entries()[i];
        FUZZ_CHECK(g->meta.entries()[i].first == key, "key %zu changed", i);
        FUZZ_CHECK(same_value(g->meta.entries()[i].second, value), "value of %s changed", key.c_str());
    }
    FUZZ_CHECK(g->tensors.size() == f.tensors.size(), "tensor count changed");
    for (size_t i = 0; i < f.tensors.size(); ++i) {
        const TensorInfo& a = f.tensors[i];
        const TensorInfo& b = g->tensors[i];
        FUZZ_CHECK(a.name == b.name && a.type == b.type && a.n_dims == b.n_dims && a.n_bytes == b.n_bytes,
                   "tensor %s changed", a.name.c_str());
        for (int d = 0; d < kMaxDims; ++d) FUZZ_CHECK(a.ne[d] == b.ne[d], "tensor %s: shape changed", a.name.c_str());
        FUZZ_CHECK(std::memcmp(a.data, b.data, a.n_bytes) == 0, "tensor %s: bytes changed", a.name.c_str());
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const auto* begin = reinterpret_cast<const std::byte*>(data);
    auto parsed = parse_gguf({begin, size});
    if (!parsed.ok()) {
        FUZZ_CHECK(parsed.status().code() != StatusCode::ok && !parsed.status().message().empty(), "error without a message");
        return 0;
    }
    const GgufFile& f = parsed.value();
    FUZZ_CHECK(f.version == 2 || f.version == 3, "version %u", f.version);
    touch_metadata(f.meta);
    g_sink = g_sink + f.architecture().size();
    check_tensors(f, begin, size);
    check_round_trip(f);
    return 0;
}
