// The values a chat template computes with, with Python's semantics wherever a template can
// observe them: None/True/False, int vs float (3 vs 3.0), str() and repr() of lists and dicts,
// dict insertion order, truthiness, == across int/float/bool, markupsafe's Markup (what `|safe`
// returns: adding a plain string to it HTML-escapes that string), and jinja2's Undefined.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "base/status.h"

namespace hearth::chat::jinja {

class Value;
class Interpreter;
using List = std::vector<Value>;

// Raised inside the interpreter and turned into a Status at ChatTemplate's boundary; never
// leaves the chat library. `type` is the Python exception class jinja2 would raise
// (TemplateError for raise_exception, UndefinedError, TypeError, SecurityError, ...).
struct JinjaError {
    std::string type;
    std::string message;
    int line = 0;  // template line, 0 until the statement that failed fills it in
};
[[noreturn]] void throw_error(const std::string& type, const std::string& message);

enum class Kind : uint8_t { undefined, none, boolean, integer, floating, string, list, dict, callable, object };
// list: a Python list; tuple: prints (a, b); generator: what map/select/selectattr/... return:
// always truthy, no len(), not JSON-serializable.
enum class ListKind : uint8_t { list, tuple, generator };

struct Dict;
struct Callable;
struct Object;

class Value {
public:
    Value() = default;  // undefined without a hint
    Value(bool b) : kind_(Kind::boolean), b_(b) {}              // NOLINT: implicit by design
    Value(int i) : kind_(Kind::integer), i_(i) {}               // NOLINT
    Value(int64_t i) : kind_(Kind::integer), i_(i) {}           // NOLINT
    Value(double f) : kind_(Kind::floating), f_(f) {}           // NOLINT
    Value(std::string s, bool markup = false);                  // NOLINT
    Value(const char* s) : Value(std::string(s)) {}            // NOLINT

    // hint: what jinja2 says when it is used; error_type: what it raises then (SecurityError for
    // an attribute the sandbox refuses).
    static Value undefined(std::string hint, std::string error_type = "UndefinedError");
    static Value none() { Value v; v.kind_ = Kind::none; return v; }
    static Value list(List items, ListKind list_kind = ListKind::list);
    static Value dict(Dict d);
    static Value callable(std::shared_ptr<const Callable> fn);
    static Value object(std::shared_ptr<Object> obj);
    static Value from_json(const nlohmann::ordered_json& j);

    Kind kind() const { return kind_; }
    bool is_undefined() const { return kind_ == Kind::undefined; }
    bool is_none() const { return kind_ == Kind::none; }
    bool is_bool() const { return kind_ == Kind::boolean; }
    bool is_int() const { return kind_ == Kind::integer; }
    bool is_float() const { return kind_ == Kind::floating; }
    bool is_number() const { return kind_ == Kind::integer || kind_ == Kind::floating || kind_ == Kind::boolean; }
    bool is_string() const { return kind_ == Kind::string; }
    bool is_markup() const { return kind_ == Kind::string && sub_ == 1; }
    bool is_list() const { return kind_ == Kind::list; }
    bool is_tuple() const { return kind_ == Kind::list && sub_ == uint8_t(ListKind::tuple); }
    bool is_generator() const { return kind_ == Kind::list && sub_ == uint8_t(ListKind::generator); }
    bool is_dict() const { return kind_ == Kind::dict; }
    bool is_callable() const { return kind_ == Kind::callable; }
    bool is_object() const { return kind_ == Kind::object; }
    ListKind list_kind() const { return ListKind(sub_); }

    bool bool_value() const { return b_; }
    int64_t int_value() const { return kind_ == Kind::boolean ? int64_t(b_) : i_; }  // int or bool
    double number() const;                                                     // int, bool or float
    const std::string& str() const { return *static_cast<const std::string*>(p_.get()); }
    const List& items() const { return *static_cast<const List*>(p_.get()); }
    const Dict& dict() const { return *static_cast<const Dict*>(p_.get()); }
    const Callable& fn() const { return *static_cast<const Callable*>(p_.get()); }
    Object& obj() const { return *static_cast<Object*>(const_cast<void*>(p_.get())); }
    const std::string& hint() const;  // undefined only; "" when none was given
    const std::string& undefined_error_type() const;
    const void* identity() const { return p_.get(); }

    bool truthy() const;
    // Python's type name as error messages print it: str, int, NoneType, dict, ...
    std::string type_name() const;

private:
    Kind kind_ = Kind::undefined;
    uint8_t sub_ = 0;  // string: 1 = Markup; list: ListKind
    union {
        bool b_;
        int64_t i_ = 0;
        double f_;
    };
    // string: std::string; list: List; dict: Dict; callable: Callable; object: Object;
    // undefined: UndefinedInfo or null. Strings, lists and dicts are immutable once
    // built (the template sandbox forbids mutation), so values share them freely.
    std::shared_ptr<const void> p_;
};

struct Dict {
    std::vector<std::pair<Value, Value>> entries;  // insertion order, keys unique (Python ==)
    const Value* find(const Value& key) const;
    const Value* find(const std::string& key) const;
    void set(Value key, Value value);  // replaces in place or appends
};

struct CallArgs {
    std::vector<Value> positional;
    std::vector<std::pair<std::string, Value>> keyword;
    const Value* kwarg(const std::string& name) const;
};

// A function a template can call: a builtin (range, namespace, raise_exception, a bound
// method such as "abc".split) or a macro.
struct Callable {
    std::string name;
    bool is_macro = false;
    std::function<Value(Interpreter& in, const CallArgs& args)> call;
};

// Mutable attribute bags: namespace() (the only thing `{% set ns.x = ... %}` may change) and the
// loop object. Values hold them by reference, so a change made in a loop body is seen outside.
struct Object {
    enum class Type : uint8_t { ns, loop, cycler } type = Type::ns;
    std::vector<std::pair<std::string, Value>> attrs;
    const Value* find(const std::string& name) const;
    void set(const std::string& name, Value v);
};

// Python's str(v): what `{{ v }}` prints. Undefined prints nothing.
std::string to_str(const Value& v);
// Python's repr(v): strings quoted and escaped, as inside a printed list or dict.
std::string repr(const Value& v);
// Python ==, and <, which raises TypeError between unorderable types.
bool py_eq(const Value& a, const Value& b);
bool py_lt(const Value& a, const Value& b);
// jinja2's object_type_repr: "None", "dict object", ... (in Undefined messages).
std::string object_type_repr(const Value& v);

// json.dumps(v, ensure_ascii, indent, separators, sort_keys), the `tojson` filter Hugging Face
// installs. indent: empty for none, else the string put per level (indent=2 -> "  ").
struct JsonDumpOptions {
    bool ensure_ascii = false;
    bool has_indent = false;
    std::string indent;
    std::string item_sep;  // default ", " (no indent) or "," (indent)
    std::string key_sep = ": ";
    bool sort_keys = false;
};
std::string json_dumps(const Value& v, const JsonDumpOptions& opt);

}  // namespace hearth::chat::jinja
