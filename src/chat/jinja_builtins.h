// jinja2's filters and tests, Python's str/list/dict methods as templates call them, attribute and
// item lookup (environment.getattr/getitem of the immutable sandbox), and the global functions of
// the Hugging Face renderer (raise_exception, strftime_now, namespace, range, dict).
#pragma once

#include <string>

#include "chat/jinja_value.h"

namespace hearth::chat::jinja {

class Interpreter;

bool has_filter(const std::string& name);
bool has_test(const std::string& name);
Value apply_filter(Interpreter& in, const std::string& name, const Value& v, const CallArgs& args);
bool apply_test(Interpreter& in, const std::string& name, const Value& v, const CallArgs& args);

// obj.name: Python attributes (bound methods such as dict.items) first, then obj[name].
Value get_attr(const Value& obj, const std::string& name);
// obj[key]: the item first, then the attribute of that name; slices are handled by the caller.
Value get_item(const Value& obj, const Value& key);

// Raises the error an Undefined raises when it is used (UndefinedError, or SecurityError for an
// attribute the sandbox refused).
[[noreturn]] void fail_undefined(const Value& undefined);

// The globals every template sees; the render context's variables shadow them.
std::vector<std::pair<std::string, Value>> make_globals();

// The items `for` iterates over: list/tuple items, dict keys, string characters; nothing for an
// undefined value. Raises TypeError for non-iterables.
List iterate(const Value& v);

}  // namespace hearth::chat::jinja
