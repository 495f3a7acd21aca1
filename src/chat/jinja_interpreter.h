// Renders a parsed template: scopes as jinja2 has them (a `for` iteration, a macro call and a
// set/filter block body are scopes of their own; `if` is not), macros as closures over the scope
// they were defined in, loop objects, break/continue, and limits that stop hostile templates
// (output size, executed steps, macro recursion) with an error instead of exhausting the machine.
#pragma once

#include <ctime>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "chat/jinja_ast.h"
#include "chat/jinja_value.h"

namespace hearth::chat::jinja {

struct RenderLimits {
    size_t max_output_bytes = size_t(16) << 20;  // the rendering, and any one string built on the way
    int64_t max_steps = 20'000'000;              // statements executed + loop iterations + calls
    int max_call_depth = 256;                    // nested macro calls
};

struct Scope {
    std::shared_ptr<Scope> parent;
    std::vector<std::pair<std::string, Value>> vars;
    const Value* find(const std::string& name) const;
    void set(const std::string& name, Value v);
};

class Interpreter {
public:
    // now: the instant strftime_now formats (local time).
    Interpreter(RenderLimits limits, std::time_t now) : limits_(limits), now_(now) {}

    // Renders the template with `context` as its variables, over the globals. Throws JinjaError
    // (with the template line filled in).
    std::string render(const Body& body, std::vector<std::pair<std::string, Value>> context);

    Value call(const Value& callee, const CallArgs& args);
    std::time_t now() const { return now_; }
    // Raises when a string of `bytes` would exceed the output limit.
    void check_size(size_t bytes) const;
    void count_steps(int64_t n);
    // Calls a macro (or a call block's caller) defined in `closure`.
    Value call_macro(const Stmt& m, const std::shared_ptr<Scope>& closure, const CallArgs& args);

private:
    enum class Flow { normal, break_, continue_ };
    using ScopePtr = std::shared_ptr<Scope>;

    Flow exec(const Body& body, const ScopePtr& scope, std::string& out);
    Flow exec_stmt(const Stmt& s, const ScopePtr& scope, std::string& out);
    void exec_for(const Stmt& s, const ScopePtr& scope, std::string& out);
    void assign(const Target& t, const Value& v, Scope& scope);
    std::string render_scoped(const Body& body, const ScopePtr& parent);
    Value apply_filters(const std::vector<ExprPtr>& filters, Value v, Scope& scope);
    Value make_macro(const Stmt& s, const ScopePtr& scope);

    Value eval(const Expr& e, Scope& scope);
    Value lookup(const std::string& name, const Scope& scope) const;
    CallArgs eval_args(const std::vector<Arg>& args, Scope& scope);
    Value eval_binary(const std::string& op, const Value& a, const Value& b);
    bool compare(const std::string& op, const Value& a, const Value& b);

    RenderLimits limits_;
    std::time_t now_;
    int64_t steps_ = 0;
    int depth_ = 0;
    std::vector<ScopePtr> retained_;  // scopes macros were defined in (macros hold them weakly)
    int line_ = 0;  // line of the expression or statement being evaluated, for error messages
};

bool contains(const Value& container, const Value& item);

}  // namespace hearth::chat::jinja
