// Template source -> syntax tree, following jinja2's grammar (operator precedence, tests binding
// tighter than `not`, filters after postfix expressions, tuples without parentheses, ...).
#pragma once

#include <string>

#include "base/status.h"
#include "chat/jinja_ast.h"

namespace hearth::chat::jinja {

// Syntax errors say "line L, column C: ...". As in jinja2, an unknown filter or test is an
// error here unless it sits inside an `if` (then only reaching it is an error).
Result<Body> parse(const std::string& source);

}  // namespace hearth::chat::jinja
