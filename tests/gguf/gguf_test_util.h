// Helpers shared by the GGUF tests: a raw byte builder for hand-made (often hostile) files,
// deep comparison of metadata values, and a scratch folder that removes itself.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <string_view>
#include <unistd.h>
#include <vector>

#include "gguf/gguf.h"

namespace hearth::gguf::test {

// Little-endian GGUF bytes written field by field, with no validation at all.
class RawGguf {
public:
    std::vector<std::byte> bytes;

    template <typename T>
    RawGguf& put(T v) {
        const size_t at = bytes.size();
        bytes.resize(at + sizeof(T));
        std::memcpy(bytes.data() + at, &v, sizeof(T));
        return *this;
    }
    RawGguf& u8(uint8_t v) { return put(v); }
    RawGguf& u32(uint32_t v) { return put(v); }
    RawGguf& u64(uint64_t v) { return put(v); }
    RawGguf& str(std::string_view s) {
        u64(s.size());
        for (char c : s) bytes.push_back((std::byte)c);
        return *this;
    }
    RawGguf& header(uint64_t n_tensors, uint64_t n_kv, uint32_t version = 3) {
        return u32(0x46554747).u32(version).u64(n_tensors).u64(n_kv);
    }
    RawGguf& kv_u32(std::string_view key, uint32_t v) { return str(key).u32((uint32_t)ValueType::u32).u32(v); }
    RawGguf& kv_string(std::string_view key, std::string_view v) {
        return str(key).u32((uint32_t)ValueType::string).str(v);
    }
    RawGguf& tensor(std::string_view name, const std::vector<uint64_t>& ne, uint32_t type, uint64_t offset) {
        str(name).u32((uint32_t)ne.size());
        for (uint64_t d : ne) u64(d);
        return u32(type).u64(offset);
    }
    RawGguf& pad_to(size_t alignment) {
        while (bytes.size() % alignment) bytes.push_back(std::byte{0});
        return *this;
    }
    RawGguf& zeros(size_t n) {
        bytes.resize(bytes.size() + n, std::byte{0});
        return *this;
    }
};

// Equal type, element type and payload, recursively; NaN equals NaN (the f32 round trip
// through double may quiet a signalling NaN, so bit equality is too strict).
inline bool same_value(const Value& a, const Value& b) {
    if (a.type != b.type) return false;
    switch (a.type) {
        case ValueType::u8: case ValueType::u16: case ValueType::u32: case ValueType::u64:
        case ValueType::boolean:
            return a.u == b.u;
        case ValueType::i8: case ValueType::i16: case ValueType::i32: case ValueType::i64:
            return a.i == b.i;
        case ValueType::f32: case ValueType::f64:
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

// A fresh folder under the system temp dir, removed with everything in it.
class ScratchDir {
public:
    ScratchDir() {
        std::string tmpl = (std::filesystem::temp_directory_path() / "hearth-gguf-test-XXXXXX").string();
        if (mkdtemp(tmpl.data())) path_ = tmpl;
    }
    ~ScratchDir() {
        std::error_code ec;
        if (!path_.empty()) std::filesystem::remove_all(path_, ec);
    }
    ScratchDir(const ScratchDir&) = delete;
    ScratchDir& operator=(const ScratchDir&) = delete;

    const std::string& path() const { return path_; }
    std::string file(const std::string& name) const { return path_ + "/" + name; }
    // Names in the folder, sorted (temporary files included: they start with '.').
    std::vector<std::string> names() const {
        std::vector<std::string> out;
        for (const auto& e : std::filesystem::directory_iterator(path_)) out.push_back(e.path().filename().string());
        std::sort(out.begin(), out.end());
        return out;
    }

private:
    std::string path_;
};

inline std::span<const std::byte> as_bytes(const std::vector<uint8_t>& v) {
    return {reinterpret_cast<const std::byte*>(v.data()), v.size()};
}

}  // namespace hearth::gguf::test
