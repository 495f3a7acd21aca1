#include "chat/jinja_value.h"

#include <algorithm>
#include <cmath>

#include "chat/jinja_pystr.h"

namespace hearth::chat::jinja {

void throw_error(const std::string& type, const std::string& message) { throw JinjaError{type, message, 0}; }

Value::Value(std::string s, bool markup) : kind_(Kind::string), sub_(markup ? 1 : 0) {
    p_ = std::make_shared<const std::string>(std::move(s));
}

namespace {
struct UndefinedInfo {
    std::string hint, error_type;
};
}  // namespace

Value Value::undefined(std::string hint, std::string error_type) {
    Value v;
    if (!hint.empty()) v.p_ = std::make_shared<const UndefinedInfo>(UndefinedInfo{std::move(hint), std::move(error_type)});
    return v;
}

Value Value::list(List items, ListKind list_kind) {
    Value v;
    v.kind_ = Kind::list;
    v.sub_ = uint8_t(list_kind);
    v.p_ = std::make_shared<const List>(std::move(items));
    return v;
}

Value Value::dict(Dict d) {
    Value v;
    v.kind_ = Kind::dict;
    v.p_ = std::make_shared<const Dict>(std::move(d));
    return v;
}

Value Value::callable(std::shared_ptr<const Callable> fn) {
    Value v;
    v.kind_ = Kind::callable;
    v.p_ = std::move(fn);
    return v;
}

Value Value::object(std::shared_ptr<Object> obj) {
    Value v;
    v.kind_ = Kind::object;
    v.p_ = std::move(obj);
    return v;
}

Value Value::from_json(const nlohmann::ordered_json& j) {
    switch (j.type()) {
    case nlohmann::ordered_json::value_t::null: return none();
    case nlohmann::ordered_json::value_t::boolean: return Value(j.get<bool>());
    case nlohmann::ordered_json::value_t::number_integer: return Value(j.get<int64_t>());
    case nlohmann::ordered_json::value_t::number_unsigned: {
        const uint64_t u = j.get<uint64_t>();
        return u > uint64_t(INT64_MAX) ? Value(double(u)) : Value(int64_t(u));
    }
    case nlohmann::ordered_json::value_t::number_float: return Value(j.get<double>());
    case nlohmann::ordered_json::value_t::string: return Value(j.get<std::string>());
    case nlohmann::ordered_json::value_t::array: {
        List items;
        items.reserve(j.size());
        for (const auto& e : j) items.push_back(from_json(e));
        return list(std::move(items));
    }
    case nlohmann::ordered_json::value_t::object: {
        Dict d;
        d.entries.reserve(j.size());
        for (auto it = j.begin(); it != j.end(); ++it) d.entries.emplace_back(Value(it.key()), from_json(it.value()));
        return dict(std::move(d));
    }
    default: return none();
    }
}

double Value::number() const {
    switch (kind_) {
    case Kind::boolean: return b_ ? 1.0 : 0.0;
    case Kind::integer: return double(i_);
    case Kind::floating: return f_;
    default: return 0.0;
    }
}

const std::string& Value::hint() const {
    static const std::string kEmpty;
    return kind_ == Kind::undefined && p_ ? static_cast<const UndefinedInfo*>(p_.get())->hint : kEmpty;
}

const std::string& Value::undefined_error_type() const {
    static const std::string kDefault = "UndefinedError";
    return kind_ == Kind::undefined && p_ ? static_cast<const UndefinedInfo*>(p_.get())->error_type : kDefault;
}

bool Value::truthy() const {
    switch (kind_) {
    case Kind::undefined:
    case Kind::none: return false;
    case Kind::boolean: return b_;
    case Kind::integer: return i_ != 0;
    case Kind::floating: return f_ != 0.0;
    case Kind::string: return !str().empty();
    case Kind::list: return is_generator() || !items().empty();
    case Kind::dict: return !dict().entries.empty();
    default: return true;
    }
}

std::string Value::type_name() const {
    switch (kind_) {
    case Kind::undefined: return "Undefined";
    case Kind::none: return "NoneType";
    case Kind::boolean: return "bool";
    case Kind::integer: return "int";
    case Kind::floating: return "float";
    case Kind::string: return is_markup() ? "Markup" : "str";
    case Kind::list: return is_tuple() ? "tuple" : is_generator() ? "generator" : "list";
    case Kind::dict: return "dict";
    case Kind::callable: return fn().is_macro ? "Macro" : "function";
    case Kind::object:
        return obj().type == Object::Type::ns ? "Namespace" : obj().type == Object::Type::loop ? "LoopContext" : "Cycler";
    }
    return "object";
}

const Value* Dict::find(const Value& key) const {
    for (const auto& [k, v] : entries)
        if (py_eq(k, key)) return &v;
    return nullptr;
}

const Value* Dict::find(const std::string& key) const {
    for (const auto& [k, v] : entries)
        if (k.is_string() && k.str() == key) return &v;
    return nullptr;
}

void Dict::set(Value key, Value value) {
    for (auto& [k, v] : entries)
        if (py_eq(k, key)) {
            v = std::move(value);
            return;
        }
    entries.emplace_back(std::move(key), std::move(value));
}

const Value* CallArgs::kwarg(const std::string& name) const {
    for (const auto& [k, v] : keyword)
        if (k == name) return &v;
    return nullptr;
}

const Value* Object::find(const std::string& name) const {
    for (const auto& [k, v] : attrs)
        if (k == name) return &v;
    return nullptr;
}

void Object::set(const std::string& name, Value v) {
    for (auto& [k, old] : attrs)
        if (k == name) {
            old = std::move(v);
            return;
        }
    attrs.emplace_back(name, std::move(v));
}

static std::string seq_repr(const Value& v) {
    const List& items = v.items();
    std::string out = v.is_tuple() ? "(" : "[";
    for (size_t i = 0; i < items.size(); ++i) {
        if (i) out += ", ";
        out += repr(items[i]);
    }
    if (v.is_tuple() && items.size() == 1) out += ",";
    out += v.is_tuple() ? ")" : "]";
    return out;
}

static std::string dict_repr(const std::vector<std::pair<Value, Value>>& entries) {
    std::string out = "{";
    for (size_t i = 0; i < entries.size(); ++i) {
        if (i) out += ", ";
        out += repr(entries[i].first) + ": " + repr(entries[i].second);
    }
    return out + "}";
}

std::string to_str(const Value& v) {
    switch (v.kind()) {
    case Kind::undefined: return "";
    case Kind::none: return "None";
    case Kind::boolean: return v.bool_value() ? "True" : "False";
    case Kind::integer: return py::format_int(v.int_value());
    case Kind::floating: return py::repr_float(v.number());
    case Kind::string: return v.str();
    case Kind::list: return v.is_generator() ? "<generator object>" : seq_repr(v);
    case Kind::dict: return dict_repr(v.dict().entries);
    case Kind::callable:
        return v.fn().is_macro ? std::string("<Macro '").append(v.fn().name).append("'>")
                               : std::string("<function ").append(v.fn().name).append(">");
    case Kind::object: {
        const Object& o = v.obj();
        if (o.type != Object::Type::ns) return std::string("<").append(v.type_name()).append(">");
        std::vector<std::pair<Value, Value>> entries;
        for (const auto& [k, x] : o.attrs) entries.emplace_back(Value(k), x);
        return "<Namespace " + dict_repr(entries) + ">";
    }
    }
    return "";
}

std::string repr(const Value& v) {
    if (v.is_string()) return v.is_markup() ? "Markup(" + py::repr_str(v.str()) + ")" : py::repr_str(v.str());
    if (v.is_undefined()) return "Undefined";
    return to_str(v);
}

bool py_eq(const Value& a, const Value& b) {
    if (a.is_number() && b.is_number()) {
        if (a.is_float() || b.is_float()) return a.number() == b.number();
        return a.int_value() == b.int_value();
    }
    if (a.kind() != b.kind()) return false;
    switch (a.kind()) {
    case Kind::undefined:
    case Kind::none: return true;
    case Kind::string: return a.str() == b.str();
    case Kind::list: {
        if (a.is_generator() || b.is_generator()) return a.identity() == b.identity();
        if (a.is_tuple() != b.is_tuple()) return false;
        const List &x = a.items(), &y = b.items();
        if (x.size() != y.size()) return false;
        for (size_t i = 0; i < x.size(); ++i)
            if (!py_eq(x[i], y[i])) return false;
        return true;
    }
    case Kind::dict: {
        const Dict &x = a.dict(), &y = b.dict();
        if (x.entries.size() != y.entries.size()) return false;
        for (const auto& [k, v] : x.entries) {
            const Value* other = y.find(k);
            if (!other || !py_eq(v, *other)) return false;
        }
        return true;
    }
    default: return a.identity() == b.identity();
    }
}

bool py_lt(const Value& a, const Value& b) {
    if (a.is_number() && b.is_number()) {
        if (a.is_float() || b.is_float()) return a.number() < b.number();
        return a.int_value() < b.int_value();
    }
    if (a.is_string() && b.is_string()) return a.str() < b.str();  // UTF-8 order is code point order
    if (a.is_list() && b.is_list() && !a.is_generator() && !b.is_generator() && a.is_tuple() == b.is_tuple()) {
        const List &x = a.items(), &y = b.items();
        for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
            if (py_eq(x[i], y[i])) continue;
            return py_lt(x[i], y[i]);
        }
        return x.size() < y.size();
    }
    if (a.is_undefined()) throw_error("UndefinedError", a.hint().empty() ? "Undefined" : a.hint());
    if (b.is_undefined()) throw_error("UndefinedError", b.hint().empty() ? "Undefined" : b.hint());
    throw_error("TypeError", "'<' not supported between instances of '" + a.type_name() + "' and '" + b.type_name() + "'");
}

std::string object_type_repr(const Value& v) {
    if (v.is_none()) return "None";
    return v.type_name() + " object";
}

static void json_string(std::string& out, const std::string& s, bool ensure_ascii) {
    out.push_back('"');
    auto escape_u = [&](unsigned c) {
        char buf[16];
        std::snprintf(buf, sizeof buf, "\\u%04x", c);
        out += buf;
    };
    const bool ascii = py::is_ascii(s);
    if (!ensure_ascii || ascii) {
        for (unsigned char c : s) {
            switch (c) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\n': out += "\\n"; break;
            case '\r': out += "\\r"; break;
            case '\t': out += "\\t"; break;
            case '\b': out += "\\b"; break;
            case '\f': out += "\\f"; break;
            default:
                if (c < 0x20 || (ensure_ascii && c == 0x7F)) escape_u(c);
                else out.push_back(char(c));
            }
        }
    } else {
        for (char32_t c : py::decode(s)) {
            if (c >= 0x20 && c < 0x7F) {
                if (c == '"') out += "\\\"";
                else if (c == '\\') out += "\\\\";
                else out.push_back(char(c));
            } else if (c == '\n') out += "\\n";
            else if (c == '\r') out += "\\r";
            else if (c == '\t') out += "\\t";
            else if (c == '\b') out += "\\b";
            else if (c == '\f') out += "\\f";
            else if (c >= 0x10000) {
                const unsigned v = unsigned(c) - 0x10000;
                escape_u(0xD800 | (v >> 10));
                escape_u(0xDC00 | (v & 0x3FF));
            } else {
                escape_u(unsigned(c));
            }
        }
    }
    out.push_back('"');
}

static std::string json_key(const Value& k) {
    switch (k.kind()) {
    case Kind::string: return k.str();
    case Kind::boolean: return k.bool_value() ? "true" : "false";
    case Kind::none: return "null";
    case Kind::integer: return py::format_int(k.int_value());
    case Kind::floating: return py::repr_float(k.number());
    default:
        throw_error("TypeError", "keys must be str, int, float, bool or None, not " + k.type_name());
    }
}

static void json_value(std::string& out, const Value& v, const JsonDumpOptions& opt, int depth) {
    if (depth > 512) throw_error("RecursionError", "maximum recursion depth exceeded while encoding a JSON object");
    auto newline = [&](int level) {
        if (!opt.has_indent) return;
        out.push_back('\n');
        for (int i = 0; i < level; ++i) out += opt.indent;
    };
    switch (v.kind()) {
    case Kind::none: out += "null"; return;
    case Kind::boolean: out += v.bool_value() ? "true" : "false"; return;
    case Kind::integer: out += py::format_int(v.int_value()); return;
    case Kind::floating: {
        const double f = v.number();
        if (std::isnan(f)) out += "NaN";
        else if (std::isinf(f)) out += f < 0 ? "-Infinity" : "Infinity";
        else out += py::repr_float(f);
        return;
    }
    case Kind::string: json_string(out, v.str(), opt.ensure_ascii); return;
    case Kind::list: {
        if (v.is_generator()) break;
        const List& items = v.items();
        if (items.empty()) {
            out += "[]";
            return;
        }
        out.push_back('[');
        for (size_t i = 0; i < items.size(); ++i) {
            if (i) out += opt.item_sep;
            newline(depth + 1);
            json_value(out, items[i], opt, depth + 1);
        }
        newline(depth);
        out.push_back(']');
        return;
    }
    case Kind::dict: {
        const auto& entries = v.dict().entries;
        if (entries.empty()) {
            out += "{}";
            return;
        }
        std::vector<std::pair<std::string, const Value*>> kv;
        kv.reserve(entries.size());
        for (const auto& [k, x] : entries) kv.emplace_back(json_key(k), &x);
        if (opt.sort_keys)
            std::stable_sort(kv.begin(), kv.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
        out.push_back('{');
        for (size_t i = 0; i < kv.size(); ++i) {
            if (i) out += opt.item_sep;
            newline(depth + 1);
            json_string(out, kv[i].first, opt.ensure_ascii);
            out += opt.key_sep;
            json_value(out, *kv[i].second, opt, depth + 1);
        }
        newline(depth);
        out.push_back('}');
        return;
    }
    default: break;
    }
    throw_error("TypeError", "Object of type " + v.type_name() + " is not JSON serializable");
}

std::string json_dumps(const Value& v, const JsonDumpOptions& opt) {
    std::string out;
    json_value(out, v, opt, 0);
    return out;
}

}  // namespace hearth::chat::jinja
