// Argument helpers shared by the builtins (filters, tests, globals) and the str/list/dict
// methods: Python-style parameters that may come by position or by keyword.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "chat/jinja_value.h"

namespace hearth::chat::jinja {

[[noreturn]] inline void type_error(const std::string& msg) { throw_error("TypeError", msg); }

// Parameter `index`/`name` of a Python-style signature: positional first, then by keyword.
inline const Value* arg(const CallArgs& a, size_t index, const char* name) {
    if (index < a.positional.size()) return &a.positional[index];
    return a.kwarg(name);
}

inline bool arg_bool(const CallArgs& a, size_t index, const char* name, bool def) {
    const Value* v = arg(a, index, name);
    return v ? v->truthy() : def;
}

inline std::optional<std::string> arg_str(const CallArgs& a, size_t index, const char* name) {
    const Value* v = arg(a, index, name);
    if (!v || v->is_none()) return std::nullopt;
    if (!v->is_string()) type_error("expected a string argument for '" + std::string(name) + "', got " + v->type_name());
    return v->str();
}

inline int64_t arg_int(const CallArgs& a, size_t index, const char* name, int64_t def) {
    const Value* v = arg(a, index, name);
    if (!v || v->is_none()) return def;
    if (!v->is_int() && !v->is_bool()) type_error("'" + v->type_name() + "' object cannot be interpreted as an integer");
    return v->int_value();
}

// jinja2's soft_str: strings (and Markup) stay, everything else goes through str().
inline Value soft_str(const Value& v) { return v.is_string() ? v : Value(to_str(v)); }

inline Value str_like(const Value& original, std::string s) { return Value(std::move(s), original.is_markup()); }

inline Value make_generator(List items) { return Value::list(std::move(items), ListKind::generator); }

inline Value bound(const std::string& name, std::function<Value(Interpreter&, const CallArgs&)> fn) {
    auto c = std::make_shared<Callable>();
    c->name = name;
    c->call = std::move(fn);
    return Value::callable(std::move(c));
}

// Python methods of strings, lists and dicts as bound callables (jinja_methods.cpp). A name
// that is no method gives an Undefined; list/dict methods that mutate give the sandbox's
// SecurityError Undefined. dict_method returns a hintless Undefined when `name` is no method, so
// the caller can look the key up instead.
Value str_method(const Value& self, const std::string& name);
Value list_method(const Value& self, const std::string& name);
Value dict_method(const Value& self, const std::string& name);
Value unsafe_attr(const Value& obj, const std::string& name);

}  // namespace hearth::chat::jinja
