#include "chat/jinja_interpreter.h"

#include <cmath>

#include "chat/jinja_builtins.h"
#include "chat/jinja_pystr.h"

namespace hearth::chat::jinja {

const Value* Scope::find(const std::string& name) const {
    for (const Scope* s = this; s; s = s->parent.get())
        for (const auto& [k, v] : s->vars)
            if (k == name) return &v;
    return nullptr;
}

void Scope::set(const std::string& name, Value v) {
    for (auto& [k, old] : vars)
        if (k == name) {
            old = std::move(v);
            return;
        }
    vars.emplace_back(name, std::move(v));
}

namespace {

[[noreturn]] void type_error(const std::string& msg) { throw_error("TypeError", msg); }

void require_defined(const Value& v) {
    if (v.is_undefined()) fail_undefined(v);
}

// Python ints do not overflow; ours are 64-bit and say so instead of wrapping.
void check_overflow(bool overflow) {
    if (overflow) throw_error("OverflowError", "integer result too large for this renderer");
}

std::string repeat(const std::string& s, int64_t n, const Interpreter& in) {
    if (n <= 0 || s.empty()) return {};
    in.check_size(s.size() * size_t(n));
    std::string out;
    out.reserve(s.size() * size_t(n));
    for (int64_t i = 0; i < n; ++i) out += s;
    return out;
}

Value arith(const std::string& op, const Value& a, const Value& b) {
    const bool as_float = a.is_float() || b.is_float();
    if (op == "-") {
        if (as_float) return Value(a.number() - b.number());
        int64_t r = 0;
        check_overflow(__builtin_sub_overflow(a.int_value(), b.int_value(), &r));
        return Value(r);
    }
    if (op == "*") {
        if (as_float) return Value(a.number() * b.number());
        int64_t r = 0;
        check_overflow(__builtin_mul_overflow(a.int_value(), b.int_value(), &r));
        return Value(r);
    }
    if (op == "/") {
        if (b.number() == 0) throw_error("ZeroDivisionError", "division by zero");
        return Value(a.number() / b.number());
    }
    if (op == "//" || op == "%") {
        if (b.number() == 0) throw_error("ZeroDivisionError", as_float ? "float floor division by zero" : "integer division or modulo by zero");
        if (as_float) {
            const double x = a.number(), y = b.number();
            double mod = std::fmod(x, y);
            if (mod != 0 && ((y < 0) != (mod < 0))) mod += y;
            if (op == "%") return Value(mod);
            return Value(std::floor((x - mod) / y + 0.5));  // (x - mod) / y is integral up to rounding
        }
        const int64_t x = a.int_value(), y = b.int_value();
        if (x == INT64_MIN && y == -1) throw_error("OverflowError", "integer result too large for this renderer");
        int64_t q = x / y, r = x % y;
        if (r != 0 && ((r < 0) != (y < 0))) {
            --q;
            r += y;
        }
        return Value(op == "%" ? r : q);
    }
    // "**"
    if (as_float || b.int_value() < 0) {
        if (a.number() == 0 && b.number() < 0) throw_error("ZeroDivisionError", "0.0 cannot be raised to a negative power");
        return Value(std::pow(a.number(), b.number()));
    }
    int64_t base = a.int_value(), e = b.int_value(), r = 1;
    while (e > 0) {
        if (e & 1) check_overflow(__builtin_mul_overflow(r, base, &r));
        e >>= 1;
        if (e) check_overflow(__builtin_mul_overflow(base, base, &base));
    }
    return Value(r);
}

}  // namespace

bool contains(const Value& container, const Value& item) {
    switch (container.kind()) {
    case Kind::string:
        if (!item.is_string()) type_error("'in <string>' requires string as left operand, not " + item.type_name());
        return container.str().find(item.str()) != std::string::npos;
    case Kind::list:
        for (const Value& v : container.items())
            if (py_eq(v, item)) return true;
        return false;
    case Kind::dict: return container.dict().find(item) != nullptr;
    case Kind::undefined: return false;  // iterating an Undefined yields nothing
    default: type_error("argument of type '" + container.type_name() + "' is not iterable");
    }
}

void Interpreter::check_size(size_t bytes) const {
    if (bytes > limits_.max_output_bytes)
        throw_error("ResourceExhausted", strformat("output larger than the limit of %zu bytes", limits_.max_output_bytes));
}

void Interpreter::count_steps(int64_t n) {
    steps_ += n;
    if (steps_ > limits_.max_steps)
        throw_error("ResourceExhausted", strformat("template ran more than %lld steps", static_cast<long long>(limits_.max_steps)));
}

std::string Interpreter::render(const Body& body, std::vector<std::pair<std::string, Value>> context) {
    auto globals = std::make_shared<Scope>();
    globals->vars = make_globals();
    auto root = std::make_shared<Scope>();
    root->parent = globals;
    root->vars = std::move(context);
    std::string out;
    try {
        exec(body, root, out);
    } catch (JinjaError& e) {
        if (e.line == 0) e.line = line_;
        throw;
    }
    return out;
}

Interpreter::Flow Interpreter::exec(const Body& body, const ScopePtr& scope, std::string& out) {
    for (const auto& s : body) {
        const Flow f = exec_stmt(*s, scope, out);
        if (f != Flow::normal) return f;
    }
    return Flow::normal;
}

std::string Interpreter::render_scoped(const Body& body, const ScopePtr& parent) {
    auto scope = std::make_shared<Scope>();
    scope->parent = parent;
    std::string out;
    exec(body, scope, out);
    return out;
}

Value Interpreter::apply_filters(const std::vector<ExprPtr>& filters, Value v, Scope& scope) {
    for (const auto& f : filters) {
        line_ = f->line;
        if (!f->known) throw_error("TemplateRuntimeError", "No filter named '" + f->name + "' found.");
        CallArgs args = eval_args(f->args, scope);
        v = apply_filter(*this, f->name, v, args);
    }
    return v;
}

Interpreter::Flow Interpreter::exec_stmt(const Stmt& s, const ScopePtr& scope, std::string& out) {
    count_steps(1);
    line_ = s.line;
    switch (s.kind) {
    case StmtKind::output:
        out += s.text;
        check_size(out.size());
        return Flow::normal;
    case StmtKind::print: {
        const Value v = eval(*s.expr, *scope);
        out += to_str(v);
        check_size(out.size());
        return Flow::normal;
    }
    case StmtKind::if_:
        for (const auto& [cond, body] : s.branches) {
            line_ = cond->line;
            if (eval(*cond, *scope).truthy()) return exec(body, scope, out);
        }
        return exec(s.else_body, scope, out);
    case StmtKind::for_: exec_for(s, scope, out); return Flow::normal;
    case StmtKind::set: assign(s.target, eval(*s.expr, *scope), *scope); return Flow::normal;
    case StmtKind::set_block: {
        Value v(render_scoped(s.body, scope));
        v = apply_filters(s.filters, std::move(v), *scope);
        line_ = s.line;
        assign(s.target, v, *scope);
        return Flow::normal;
    }
    case StmtKind::macro: scope->set(s.name, make_macro(s, scope)); return Flow::normal;
    case StmtKind::call_block: {
        const Expr& call = *s.expr;
        const Value callee = eval(*call.a, *scope);
        CallArgs args = eval_args(call.args, *scope);
        args.keyword.emplace_back("caller", make_macro(s, scope));
        line_ = s.line;
        out += to_str(this->call(callee, args));
        check_size(out.size());
        return Flow::normal;
    }
    case StmtKind::filter_block: {
        Value v(render_scoped(s.body, scope));
        out += to_str(apply_filters(s.filters, std::move(v), *scope));
        check_size(out.size());
        return Flow::normal;
    }
    case StmtKind::scope:
        out += render_scoped(s.body, scope);
        check_size(out.size());
        return Flow::normal;
    case StmtKind::break_: return Flow::break_;
    case StmtKind::continue_: return Flow::continue_;
    }
    return Flow::normal;
}

void Interpreter::exec_for(const Stmt& s, const ScopePtr& scope, std::string& out) {
    List items = iterate(eval(*s.expr, *scope));
    if (s.cond) {
        List kept;
        for (Value& item : items) {
            count_steps(1);
            Scope probe;
            probe.parent = scope;
            assign(s.target, item, probe);
            if (eval(*s.cond, probe).truthy()) kept.push_back(std::move(item));
        }
        items = std::move(kept);
    }
    if (items.empty()) {
        if (!s.else_body.empty()) {
            auto else_scope = std::make_shared<Scope>();
            else_scope->parent = scope;
            exec(s.else_body, else_scope, out);
        }
        return;
    }
    const int64_t depth = 1;  // only recursive loops (not supported) go deeper
    const int64_t n = int64_t(items.size());
    auto loop = std::make_shared<Object>();
    loop->type = Object::Type::loop;
    auto index0 = std::make_shared<int64_t>(0);
    auto cycle = std::make_shared<Callable>();
    cycle->name = "cycle";
    cycle->call = [index0](Interpreter&, const CallArgs& a) -> Value {
        if (a.positional.empty()) type_error("no items for cycling given");
        return a.positional[size_t(*index0 % int64_t(a.positional.size()))];
    };
    const Value loop_value = Value::object(loop);
    loop->attrs = {{"index", {}}, {"index0", {}}, {"revindex", {}}, {"revindex0", {}}, {"first", {}}, {"last", {}},
                   {"length", Value(n)}, {"depth", Value(depth)}, {"depth0", Value(depth - 1)}, {"previtem", {}},
                   {"nextitem", {}}, {"cycle", Value::callable(cycle)}};
    for (int64_t i = 0; i < n; ++i) {
        count_steps(1);
        *index0 = i;
        auto& at = loop->attrs;  // same order as above
        at[0].second = Value(i + 1);
        at[1].second = Value(i);
        at[2].second = Value(n - i);
        at[3].second = Value(n - i - 1);
        at[4].second = Value(i == 0);
        at[5].second = Value(i == n - 1);
        at[9].second = i > 0 ? items[size_t(i - 1)] : Value::undefined("there is no previous item");
        at[10].second = i + 1 < n ? items[size_t(i + 1)] : Value::undefined("there is no next item");
        auto iter_scope = std::make_shared<Scope>();
        iter_scope->parent = scope;
        iter_scope->vars.emplace_back("loop", loop_value);
        line_ = s.line;
        assign(s.target, items[size_t(i)], *iter_scope);
        if (exec(s.body, iter_scope, out) == Flow::break_) break;
    }
}

void Interpreter::assign(const Target& t, const Value& v, Scope& scope) {
    switch (t.kind) {
    case Target::Kind::name: scope.set(t.name, v); return;
    case Target::Kind::ns_attr: {
        const Value* ns = scope.find(t.name);
        if (!ns || !ns->is_object() || ns->obj().type != Object::Type::ns)
            throw_error("TemplateRuntimeError", "cannot assign attribute on non-namespace object");
        ns->obj().set(t.attr, v);
        return;
    }
    case Target::Kind::tuple: {
        const List parts = iterate(v);
        if (v.is_undefined()) fail_undefined(v);
        if (parts.size() > t.items.size())
            throw_error("ValueError", strformat("too many values to unpack (expected %zu)", t.items.size()));
        if (parts.size() < t.items.size())
            throw_error("ValueError", strformat("not enough values to unpack (expected %zu, got %zu)", t.items.size(), parts.size()));
        for (size_t i = 0; i < parts.size(); ++i) assign(t.items[i], parts[i], scope);
        return;
    }
    }
}

Value Interpreter::make_macro(const Stmt& s, const ScopePtr& scope) {
    auto fn = std::make_shared<Callable>();
    fn->name = s.kind == StmtKind::macro ? s.name : "caller";
    fn->is_macro = true;
    // The macro reads the scope it was defined in (at call time, as jinja2 does). It holds that
    // scope weakly, since the scope usually holds the macro and a strong reference would be a
    // cycle; the interpreter keeps the scope alive until the render ends.
    retained_.push_back(scope);
    std::weak_ptr<Scope> closure = scope;
    const Stmt* stmt = &s;
    fn->call = [stmt, closure](Interpreter& in, const CallArgs& args) {
        return in.call_macro(*stmt, closure.lock(), args);
    };
    return Value::callable(std::move(fn));
}

Value Interpreter::call_macro(const Stmt& m, const ScopePtr& closure, const CallArgs& args) {
    if (depth_ >= limits_.max_call_depth)
        throw_error("RecursionError", strformat("macro calls nested deeper than %d", limits_.max_call_depth));
    auto scope = std::make_shared<Scope>();
    scope->parent = closure;
    const std::string& name = m.kind == StmtKind::macro ? m.name : std::string("caller");
    const size_t n_params = m.params.size();
    std::vector<bool> bound(n_params, false);
    List varargs;
    for (size_t i = 0; i < args.positional.size(); ++i) {
        if (i < n_params) {
            scope->set(m.params[i].name, args.positional[i]);
            bound[i] = true;
        } else if (m.uses_varargs) {
            varargs.push_back(args.positional[i]);
        } else {
            type_error(strformat("macro '%s' takes not more than %zu argument(s)", name.c_str(), n_params));
        }
    }
    Dict kwargs;
    bool has_caller = false;
    for (const auto& [k, v] : args.keyword) {
        size_t idx = n_params;
        for (size_t i = 0; i < n_params; ++i)
            if (m.params[i].name == k) idx = i;
        if (idx < n_params) {
            if (bound[idx]) type_error("macro '" + name + "' got multiple values for argument '" + k + "'");
            scope->set(k, v);
            bound[idx] = true;
        } else if (k == "caller" && m.kind == StmtKind::macro) {
            scope->set("caller", v);
            has_caller = true;
        } else if (m.uses_kwargs) {
            kwargs.set(Value(k), v);
        } else {
            type_error("macro '" + name + "' takes no keyword argument '" + k + "'");
        }
    }
    for (size_t i = 0; i < n_params; ++i) {
        if (bound[i]) continue;
        const Param& p = m.params[i];
        scope->set(p.name, p.default_value ? eval(*p.default_value, *scope)
                                           : Value::undefined("parameter '" + p.name + "' was not provided"));
    }
    if (m.uses_varargs) scope->set("varargs", Value::list(std::move(varargs), ListKind::tuple));
    if (m.uses_kwargs) scope->set("kwargs", Value::dict(std::move(kwargs)));
    if (m.uses_caller && !has_caller && m.kind == StmtKind::macro) scope->set("caller", Value::undefined("No caller defined"));
    ++depth_;
    std::string out;
    exec(m.body, scope, out);
    --depth_;
    return Value(std::move(out));
}

Value Interpreter::call(const Value& callee, const CallArgs& args) {
    count_steps(1);
    if (callee.is_undefined()) fail_undefined(callee);
    if (!callee.is_callable()) type_error("'" + callee.type_name() + "' object is not callable");
    const int line = line_;
    Value r = callee.fn().call(*this, args);
    line_ = line;
    return r;
}

Value Interpreter::lookup(const std::string& name, const Scope& scope) const {
    const Value* v = scope.find(name);
    return v ? *v : Value::undefined("'" + name + "' is undefined");
}

CallArgs Interpreter::eval_args(const std::vector<Arg>& args, Scope& scope) {
    CallArgs out;
    for (const Arg& a : args) {
        if (a.name.empty()) out.positional.push_back(eval(*a.value, scope));
        else out.keyword.emplace_back(a.name, eval(*a.value, scope));
    }
    return out;
}

Value Interpreter::eval_binary(const std::string& op, const Value& a, const Value& b) {
    if (op == "~") {
        std::string s = to_str(a) + to_str(b);
        check_size(s.size());
        return Value(std::move(s));
    }
    if (op == "in") return Value(contains(b, a));
    if (op == "notin") return Value(!contains(b, a));
    require_defined(a);
    require_defined(b);
    if (op == "+") {
        if (a.is_number() && b.is_number()) {
            if (a.is_float() || b.is_float()) return Value(a.number() + b.number());
            int64_t r = 0;
            check_overflow(__builtin_add_overflow(a.int_value(), b.int_value(), &r));
        return Value(r);
        }
        if (a.is_string() && b.is_string()) {
            check_size(a.str().size() + b.str().size());
            if (a.is_markup() || b.is_markup())
                return Value((a.is_markup() ? a.str() : py::html_escape(a.str())) + (b.is_markup() ? b.str() : py::html_escape(b.str())), true);
            return Value(a.str() + b.str());
        }
        if (a.is_list() && b.is_list() && !a.is_generator() && !b.is_generator() && a.is_tuple() == b.is_tuple()) {
            List items = a.items();
            items.insert(items.end(), b.items().begin(), b.items().end());
            return Value::list(std::move(items), a.list_kind());
        }
        if (a.is_string() && !a.is_markup()) type_error("can only concatenate str (not \"" + b.type_name() + "\") to str");
        if (a.is_list() && !a.is_tuple() && !a.is_generator()) type_error("can only concatenate list (not \"" + b.type_name() + "\") to list");
        if (a.is_tuple()) type_error("can only concatenate tuple (not \"" + b.type_name() + "\") to tuple");
        type_error("unsupported operand type(s) for +: '" + a.type_name() + "' and '" + b.type_name() + "'");
    }
    if (op == "*") {
        auto is_seq = [](const Value& v) { return v.is_string() || (v.is_list() && !v.is_generator()); };
        auto is_count = [](const Value& v) { return v.is_int() || v.is_bool(); };
        const Value* seq = is_seq(a) && is_count(b) ? &a : is_seq(b) && is_count(a) ? &b : nullptr;
        if (seq) {
            const int64_t n = (seq == &a ? b : a).int_value();
            if (seq->is_string()) return Value(repeat(seq->str(), n, *this), seq->is_markup());
            List items;
            if (n > 0) check_size(seq->items().size() * size_t(n) * sizeof(Value));
            for (int64_t i = 0; i < n; ++i) items.insert(items.end(), seq->items().begin(), seq->items().end());
            return Value::list(std::move(items), seq->list_kind());
        }
    }
    if (a.is_number() && b.is_number()) return arith(op, a, b);
    type_error("unsupported operand type(s) for " + op + ": '" + a.type_name() + "' and '" + b.type_name() + "'");
}

bool Interpreter::compare(const std::string& op, const Value& a, const Value& b) {
    if (op == "==") return py_eq(a, b);
    if (op == "!=") return !py_eq(a, b);
    if (op == "in") return contains(b, a);
    if (op == "notin") return !contains(b, a);
    if (op == "<") return py_lt(a, b);
    if (op == ">") return py_lt(b, a);
    if (op == "<=") return py_eq(a, b) || py_lt(a, b);
    return py_eq(a, b) || py_lt(b, a);  // ">="
}

Value Interpreter::eval(const Expr& e, Scope& scope) {
    line_ = e.line;
    switch (e.kind) {
    case ExprKind::constant: return e.value;
    case ExprKind::name: return lookup(e.name, scope);
    case ExprKind::list:
    case ExprKind::tuple: {
        List items;
        items.reserve(e.items.size());
        for (const auto& x : e.items) items.push_back(eval(*x, scope));
        return Value::list(std::move(items), e.kind == ExprKind::tuple ? ListKind::tuple : ListKind::list);
    }
    case ExprKind::dict: {
        Dict d;
        for (size_t i = 0; i + 1 < e.items.size(); i += 2) {
            Value k = eval(*e.items[i], scope);
            d.set(std::move(k), eval(*e.items[i + 1], scope));
        }
        return Value::dict(std::move(d));
    }
    case ExprKind::getattr: {
        const Value obj = eval(*e.a, scope);
        line_ = e.line;
        if (obj.is_undefined()) fail_undefined(obj);
        return get_attr(obj, e.name);
    }
    case ExprKind::getitem: {
        const Value obj = eval(*e.a, scope);
        if (e.b->kind == ExprKind::slice) {
            const Expr& sl = *e.b;
            auto bound = [&](const ExprPtr& x) -> std::optional<int64_t> {
                if (!x) return std::nullopt;
                const Value v = eval(*x, scope);
                if (v.is_none()) return std::nullopt;
                if (!v.is_int() && !v.is_bool()) type_error("slice indices must be integers or None or have an __index__ method");
                return v.int_value();
            };
            const auto start = bound(sl.a), stop = bound(sl.b), step = bound(sl.c);
            line_ = e.line;
            if (step && *step == 0) throw_error("ValueError", "slice step cannot be zero");
            if (obj.is_undefined()) fail_undefined(obj);
            if (obj.is_string()) {
                const std::u32string u = py::decode(obj.str());
                std::u32string r;
                for (int64_t i : py::slice_indices(int64_t(u.size()), start, stop, step)) r.push_back(u[size_t(i)]);
                return Value(py::encode(r), obj.is_markup());
            }
            if (obj.is_list() && !obj.is_generator()) {
                List r;
                for (int64_t i : py::slice_indices(int64_t(obj.items().size()), start, stop, step)) r.push_back(obj.items()[size_t(i)]);
                return Value::list(std::move(r), obj.list_kind());
            }
            return Value::undefined("'" + obj.type_name() + " object' has no attribute 'slice'");
        }
        const Value key = eval(*e.b, scope);
        line_ = e.line;
        if (obj.is_undefined()) fail_undefined(obj);
        return get_item(obj, key);
    }
    case ExprKind::slice: type_error("slice outside of a subscript");
    case ExprKind::call: {
        const Value callee = eval(*e.a, scope);
        const CallArgs args = eval_args(e.args, scope);
        line_ = e.line;
        return call(callee, args);
    }
    case ExprKind::filter: {
        const Value v = eval(*e.a, scope);
        const CallArgs args = eval_args(e.args, scope);
        line_ = e.line;
        if (!e.known) throw_error("TemplateRuntimeError", "No filter named '" + e.name + "' found.");
        return apply_filter(*this, e.name, v, args);
    }
    case ExprKind::test: {
        const Value v = eval(*e.a, scope);
        const CallArgs args = eval_args(e.args, scope);
        line_ = e.line;
        if (!e.known) throw_error("TemplateRuntimeError", "No test named '" + e.name + "' found.");
        return Value(apply_test(*this, e.name, v, args));
    }
    case ExprKind::not_: return Value(!eval(*e.a, scope).truthy());
    case ExprKind::neg:
    case ExprKind::pos: {
        const Value v = eval(*e.a, scope);
        line_ = e.line;
        require_defined(v);
        if (!v.is_number()) type_error(std::string("bad operand type for unary ") + (e.kind == ExprKind::neg ? "-" : "+") + ": '" + v.type_name() + "'");
        if (e.kind == ExprKind::pos) return v.is_bool() ? Value(v.int_value()) : v;
        if (v.is_float()) return Value(-v.number());
        check_overflow(v.int_value() == INT64_MIN);
        return Value(-v.int_value());
    }
    case ExprKind::binary: {
        const Value a = eval(*e.a, scope);
        const Value b = eval(*e.b, scope);
        line_ = e.line;
        return eval_binary(e.name, a, b);
    }
    case ExprKind::compare: {
        Value left = eval(*e.items[0], scope);
        for (size_t i = 0; i < e.ops.size(); ++i) {
            Value right = eval(*e.items[i + 1], scope);
            line_ = e.line;
            if (!compare(e.ops[i], left, right)) return Value(false);
            left = std::move(right);
        }
        return Value(true);
    }
    case ExprKind::and_: {
        Value a = eval(*e.a, scope);
        return a.truthy() ? eval(*e.b, scope) : a;
    }
    case ExprKind::or_: {
        Value a = eval(*e.a, scope);
        return a.truthy() ? a : eval(*e.b, scope);
    }
    case ExprKind::cond:
        if (eval(*e.b, scope).truthy()) return eval(*e.a, scope);
        if (e.c) return eval(*e.c, scope);
        return Value::undefined(strformat("the inline if-expression on line %d evaluated to false and no else section was defined.", e.line));
    }
    return Value();
}

}  // namespace hearth::chat::jinja
