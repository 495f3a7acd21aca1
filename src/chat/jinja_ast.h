// The syntax tree of a parsed template. The parser builds it once; renders only read it.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "chat/jinja_value.h"

namespace hearth::chat::jinja {

struct Expr;
struct Stmt;
using ExprPtr = std::unique_ptr<Expr>;
using Body = std::vector<std::unique_ptr<Stmt>>;

enum class ExprKind : uint8_t {
    constant,  // value
    name,      // name
    list,      // items
    tuple,     // items
    dict,      // items: key, value, key, value, ...
    getattr,   // a.name
    getitem,   // a[b]
    slice,     // a, b, c = start, stop, step (each may be null); only as getitem's b
    call,      // a(args)
    filter,    // a|name(args); a is null in a filter block's chain
    test,      // a is name(args)
    not_,      // not a
    neg,       // -a
    pos,       // +a
    binary,    // a name b: + - * / // % ** ~ in notin
    compare,   // items[0] ops[0] items[1] ops[1] items[2] ...
    and_,      // a and b
    or_,       // a or b
    cond,      // a if b else c (c may be null)
};

struct Arg {
    std::string name;  // empty for a positional argument
    ExprPtr value;
};

struct Expr {
    ExprKind kind = ExprKind::constant;
    int line = 0;
    Value value;
    std::string name;
    ExprPtr a, b, c;
    std::vector<ExprPtr> items;
    std::vector<std::string> ops;
    std::vector<Arg> args;
    bool known = true;  // filter/test: false when no such filter exists (an error once evaluated)
};

// What `for` and `set` assign to: a name, a tuple of targets, or a namespace attribute.
struct Target {
    enum class Kind : uint8_t { name, tuple, ns_attr } kind = Kind::name;
    std::string name;
    std::string attr;
    std::vector<Target> items;
};

struct Param {
    std::string name;
    ExprPtr default_value;  // null when required
};

enum class StmtKind : uint8_t {
    output,        // text
    print,         // {{ expr }}
    if_,           // branches (cond, body) + else_body
    for_,          // target in expr [if cond]: body, else_body
    set,           // target = expr
    set_block,     // {% set target | filters %}body{% endset %}
    macro,         // name(params): body
    call_block,    // {% call(params) expr %}body{% endcall %}
    filter_block,  // {% filter filters %}body{% endfilter %}
    break_,
    continue_,
    scope,         // {% generation %}body{% endgeneration %}: renders body in its own scope
};

struct Stmt {
    StmtKind kind = StmtKind::output;
    int line = 0;
    std::string text;
    ExprPtr expr;
    ExprPtr cond;
    std::vector<std::pair<ExprPtr, Body>> branches;
    Body body, else_body;
    Target target;
    std::string name;
    std::vector<Param> params;
    std::vector<ExprPtr> filters;  // Filter exprs with a null operand, applied in order
    bool uses_varargs = false, uses_kwargs = false, uses_caller = false;  // macro bodies
};

}  // namespace hearth::chat::jinja
