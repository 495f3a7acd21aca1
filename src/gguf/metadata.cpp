#include <limits>

#include "gguf/gguf.h"

namespace hearth::gguf {

const char* value_type_name(ValueType t) {
    switch (t) {
        case ValueType::u8: return "u8";
        case ValueType::i8: return "i8";
        case ValueType::u16: return "u16";
        case ValueType::i16: return "i16";
        case ValueType::u32: return "u32";
        case ValueType::i32: return "i32";
        case ValueType::f32: return "f32";
        case ValueType::boolean: return "bool";
        case ValueType::string: return "string";
        case ValueType::array: return "array";
        case ValueType::u64: return "u64";
        case ValueType::i64: return "i64";
        case ValueType::f64: return "f64";
    }
    return "unknown";
}

bool Value::is_integer() const {
    switch (type) {
        case ValueType::u8: case ValueType::i8: case ValueType::u16: case ValueType::i16:
        case ValueType::u32: case ValueType::i32: case ValueType::u64: case ValueType::i64:
        case ValueType::boolean:
            return true;
        default:
            return false;
    }
}

static bool is_signed(ValueType t) {
    return t == ValueType::i8 || t == ValueType::i16 || t == ValueType::i32 || t == ValueType::i64;
}

bool Value::to_i64(int64_t& out) const {
    if (!is_integer()) return false;
    if (is_signed(type)) {
        out = i;
        return true;
    }
    if (u > (uint64_t)std::numeric_limits<int64_t>::max()) return false;
    out = (int64_t)u;
    return true;
}

bool Value::to_f64(double& out) const {
    if (is_float()) {
        out = f;
        return true;
    }
    int64_t v;
    if (!to_i64(v)) return false;
    out = (double)v;
    return true;
}

Value Value::make_u32(uint32_t v) { Value x; x.type = ValueType::u32; x.u = v; return x; }
Value Value::make_i32(int32_t v) { Value x; x.type = ValueType::i32; x.i = v; return x; }
Value Value::make_u64(uint64_t v) { Value x; x.type = ValueType::u64; x.u = v; return x; }
Value Value::make_f32(float v) { Value x; x.type = ValueType::f32; x.f = v; return x; }
Value Value::make_bool(bool v) { Value x; x.type = ValueType::boolean; x.u = v ? 1 : 0; return x; }
Value Value::make_string(std::string v) { Value x; x.type = ValueType::string; x.str = std::move(v); return x; }
Value Value::make_array(ValueType elem, std::vector<Value> items) {
    Value x;
    x.type = ValueType::array;
    x.elem_type = elem;
    x.items = std::move(items);
    return x;
}
Value Value::make_string_array(const std::vector<std::string>& v) {
    std::vector<Value> items;
    items.reserve(v.size());
    for (const auto& s : v) items.push_back(make_string(s));
    return make_array(ValueType::string, std::move(items));
}
Value Value::make_f32_array(const std::vector<float>& v) {
    std::vector<Value> items;
    items.reserve(v.size());
    for (float f : v) items.push_back(make_f32(f));
    return make_array(ValueType::f32, std::move(items));
}
Value Value::make_i32_array(const std::vector<int32_t>& v) {
    std::vector<Value> items;
    items.reserve(v.size());
    for (int32_t i : v) items.push_back(make_i32(i));
    return make_array(ValueType::i32, std::move(items));
}

void Metadata::set(std::string key, Value v) {
    if (auto it = index_.find(key); it != index_.end()) {
        entries_[it->second].second = std::move(v);
        return;
    }
    index_.emplace(key, entries_.size());
    entries_.emplace_back(std::move(key), std::move(v));
}

const Value* Metadata::find(std::string_view key) const {
    auto it = index_.find(key);
    return it == index_.end() ? nullptr : &entries_[it->second].second;
}

static Status missing(std::string_view key) {
    return error(StatusCode::not_found, "metadata key " + std::string(key) + " is missing");
}
static Status wrong_type(std::string_view key, const char* expected, const Value& v) {
    return error(StatusCode::invalid_argument,
                 strformat("metadata key %s: expected %s, found %s", std::string(key).c_str(), expected,
                           value_type_name(v.type)));
}

Result<int64_t> Metadata::get_int(std::string_view key) const {
    const Value* v = find(key);
    if (!v) return missing(key);
    int64_t out;
    if (!v->to_i64(out)) return wrong_type(key, "an integer", *v);
    return out;
}

Result<uint32_t> Metadata::get_u32(std::string_view key) const {
    HEARTH_ASSIGN(int64_t v, get_int(key));
    if (v < 0 || v > (int64_t)std::numeric_limits<uint32_t>::max())
        return error(StatusCode::invalid_argument,
                     strformat("metadata key %s: value %lld out of range", std::string(key).c_str(), (long long)v));
    return (uint32_t)v;
}

Result<double> Metadata::get_float(std::string_view key) const {
    const Value* v = find(key);
    if (!v) return missing(key);
    double out;
    if (!v->to_f64(out)) return wrong_type(key, "a number", *v);
    return out;
}

Result<bool> Metadata::get_bool(std::string_view key) const {
    const Value* v = find(key);
    if (!v) return missing(key);
    if (v->type == ValueType::boolean) return v->u != 0;
    int64_t i;
    if (v->to_i64(i)) return i != 0;
    return wrong_type(key, "a bool", *v);
}

Result<std::string> Metadata::get_string(std::string_view key) const {
    const Value* v = find(key);
    if (!v) return missing(key);
    if (v->type != ValueType::string) return wrong_type(key, "a string", *v);
    return v->str;
}

Result<std::vector<std::string>> Metadata::get_string_array(std::string_view key) const {
    const Value* v = find(key);
    if (!v) return missing(key);
    if (v->type != ValueType::array || v->elem_type != ValueType::string)
        return wrong_type(key, "an array of strings", *v);
    std::vector<std::string> out;
    out.reserve(v->items.size());
    for (const auto& it : v->items) out.push_back(it.str);
    return out;
}

Result<std::vector<float>> Metadata::get_f32_array(std::string_view key) const {
    const Value* v = find(key);
    if (!v) return missing(key);
    if (v->type != ValueType::array) return wrong_type(key, "an array of numbers", *v);
    std::vector<float> out;
    out.reserve(v->items.size());
    for (const auto& it : v->items) {
        double d;
        if (!it.to_f64(d)) return wrong_type(key, "an array of numbers", it);
        out.push_back((float)d);
    }
    return out;
}

Result<std::vector<int64_t>> Metadata::get_int_array(std::string_view key) const {
    const Value* v = find(key);
    if (!v) return missing(key);
    if (v->type != ValueType::array) return wrong_type(key, "an array of integers", *v);
    std::vector<int64_t> out;
    out.reserve(v->items.size());
    for (const auto& it : v->items) {
        int64_t i;
        if (!it.to_i64(i)) return wrong_type(key, "an array of integers", it);
        out.push_back(i);
    }
    return out;
}

Result<int64_t> Metadata::get_int_or(std::string_view key, int64_t def) const {
    return has(key) ? get_int(key) : Result<int64_t>(def);
}
Result<double> Metadata::get_float_or(std::string_view key, double def) const {
    return has(key) ? get_float(key) : Result<double>(def);
}
Result<bool> Metadata::get_bool_or(std::string_view key, bool def) const {
    return has(key) ? get_bool(key) : Result<bool>(def);
}
Result<std::string> Metadata::get_string_or(std::string_view key, std::string def) const {
    return has(key) ? get_string(key) : Result<std::string>(std::move(def));
}

}  // namespace hearth::gguf
