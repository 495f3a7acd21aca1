#include "chat/jinja_parser.h"

#include <initializer_list>

#include "chat/jinja_builtins.h"
#include "chat/jinja_lexer.h"

namespace hearth::chat::jinja {
namespace {

constexpr int kMaxNesting = 200;  // expression/statement nesting; deeper templates are rejected

// Parse errors travel as this exception inside the parser only; parse() turns them into a Status.
struct ParseError {
    std::string message;
};

class Parser {
public:
    explicit Parser(std::vector<Token> tokens) : t_(std::move(tokens)) {}

    Body parse_template() {
        Body body = subparse({});
        if (cur().type != Tok::eof) fail_at(cur(), "unexpected '" + describe(cur()) + "'");
        for (const Unknown& u : unknown_)
            if (!u.soft) fail_at(u.where, std::string("No ") + (u.is_filter ? "filter" : "test") + " named '" + u.name + "'.");
        return body;
    }

private:
    // ---- token stream ----
    const Token& cur() const { return t_[i_]; }
    const Token& look() const { return t_[std::min(i_ + 1, t_.size() - 1)]; }
    const Token& next() {
        const Token& t = t_[i_];
        if (i_ + 1 < t_.size()) ++i_;
        return t;
    }
    bool is_op(const char* op) const { return cur().type == Tok::op && cur().text == op; }
    bool is_name(const char* n) const { return cur().type == Tok::name && cur().text == n; }
    bool skip_op(const char* op) {
        if (!is_op(op)) return false;
        next();
        return true;
    }
    bool skip_name(const char* n) {
        if (!is_name(n)) return false;
        next();
        return true;
    }
    static std::string describe(const Token& t) {
        switch (t.type) {
        case Tok::eof: return "end of template";
        case Tok::block_end: return "end of statement block";
        case Tok::var_end: return "end of print statement";
        case Tok::block_begin: return "begin of statement block";
        case Tok::var_begin: return "begin of print statement";
        case Tok::data: return "template data";
        case Tok::integer: return std::to_string(t.int_value);
        default: return t.text;
        }
    }
    [[noreturn]] void fail_at(const Token& t, const std::string& msg) const {
        throw ParseError{strformat("line %d, column %d: %s", t.line, t.column, msg.c_str())};
    }
    void expect_op(const char* op) {
        if (!skip_op(op)) fail_at(cur(), std::string("expected '") + op + "', got '" + describe(cur()) + "'");
    }
    std::string expect_name() {
        if (cur().type != Tok::name) fail_at(cur(), "expected a name, got '" + describe(cur()) + "'");
        return next().text;
    }
    void expect_block_end() {
        if (cur().type != Tok::block_end) fail_at(cur(), "expected end of statement block, got '" + describe(cur()) + "'");
        next();
    }

    struct DepthGuard {
        Parser& p;
        explicit DepthGuard(Parser& parser) : p(parser) {
            if (++p.depth_ > kMaxNesting) p.fail_at(p.cur(), "template nested too deeply");
        }
        ~DepthGuard() { --p.depth_; }
    };

    ExprPtr make(ExprKind k, int line) {
        auto e = std::make_unique<Expr>();
        e->kind = k;
        e->line = line;
        return e;
    }

    // ---- statements ----
    bool at_end_tag(std::initializer_list<const char*> ends) const {
        if (cur().type != Tok::name) return false;
        for (const char* e : ends)
            if (cur().text == e) return true;
        return false;
    }

    // Parses until a block whose first name is in `ends` (left as the current token) or eof.
    Body subparse(std::initializer_list<const char*> ends) {
        Body body;
        while (cur().type != Tok::eof) {
            const Token& t = cur();
            if (t.type == Tok::data) {
                auto s = std::make_unique<Stmt>();
                s->kind = StmtKind::output;
                s->line = t.line;
                s->text = t.text;
                next();
                body.push_back(std::move(s));
            } else if (t.type == Tok::var_begin) {
                next();
                auto s = std::make_unique<Stmt>();
                s->kind = StmtKind::print;
                s->line = t.line;
                s->expr = parse_tuple(true, {}, false);
                if (cur().type != Tok::var_end) fail_at(cur(), "expected end of print statement, got '" + describe(cur()) + "'");
                next();
                body.push_back(std::move(s));
            } else if (t.type == Tok::block_begin) {
                next();
                if (ends.size() && at_end_tag(ends)) return body;
                body.push_back(parse_statement());
                expect_block_end();
            } else {
                fail_at(t, "unexpected '" + describe(t) + "'");
            }
        }
        return body;
    }

    Body parse_statements(std::initializer_list<const char*> ends, bool drop_needle) {
        skip_op(":");
        expect_block_end();
        Body body = subparse(ends);
        if (cur().type == Tok::eof) {
            std::string names;
            for (const char* e : ends) names += std::string(names.empty() ? "" : " or ") + "'" + e + "'";
            fail_at(cur(), "unexpected end of template; jinja was looking for " + names);
        }
        if (drop_needle) next();
        return body;
    }

    std::unique_ptr<Stmt> parse_statement() {
        DepthGuard guard(*this);
        const Token& t = cur();
        if (t.type != Tok::name) fail_at(t, "tag name expected");
        auto s = std::make_unique<Stmt>();
        s->line = t.line;
        const std::string tag = next().text;
        if (tag == "if") {
            s->kind = StmtKind::if_;
            while (true) {
                ++soft_;
                ExprPtr cond = parse_tuple(false, {}, false);
                Body body = parse_statements({"elif", "else", "endif"}, false);
                --soft_;
                s->branches.emplace_back(std::move(cond), std::move(body));
                const std::string which = next().text;
                if (which == "elif") continue;
                if (which == "else") {
                    ++soft_;
                    s->else_body = parse_statements({"endif"}, true);
                    --soft_;
                }
                break;
            }
        } else if (tag == "for") {
            s->kind = StmtKind::for_;
            s->target = parse_assign_target(false, {"in"});
            if (!skip_name("in")) fail_at(cur(), "expected 'in', got '" + describe(cur()) + "'");
            s->expr = parse_tuple(false, {"recursive"}, false);
            const int saved_soft = soft_;
            soft_ = 0;
            if (skip_name("if")) s->cond = parse_expression(true);
            if (skip_name("recursive")) fail_at(cur(), "recursive loops are not supported");
            ++loops_;
            s->body = parse_statements({"endfor", "else"}, false);
            --loops_;
            if (next().text == "else") s->else_body = parse_statements({"endfor"}, true);
            soft_ = saved_soft;
        } else if (tag == "set") {
            s->target = parse_assign_target(true, {});
            if (skip_op("=")) {
                s->kind = StmtKind::set;
                s->expr = parse_tuple(true, {}, false);
            } else {
                s->kind = StmtKind::set_block;
                if (is_op("|")) parse_filter_chain(s->filters, false);
                const int saved_soft = soft_;
                soft_ = 0;
                s->body = parse_statements({"endset"}, true);
                soft_ = saved_soft;
            }
        } else if (tag == "macro") {
            s->kind = StmtKind::macro;
            s->name = expect_name();
            parse_signature(s->params);
            parse_frame_body(*s, {"endmacro"});
        } else if (tag == "call") {
            s->kind = StmtKind::call_block;
            if (is_op("(")) parse_signature(s->params);
            s->expr = parse_expression(true);
            if (s->expr->kind != ExprKind::call) fail_at(cur(), "expected call");
            parse_frame_body(*s, {"endcall"});
        } else if (tag == "filter") {
            s->kind = StmtKind::filter_block;
            parse_filter_chain(s->filters, true);
            const int saved_soft = soft_;
            soft_ = 0;
            s->body = parse_statements({"endfilter"}, true);
            soft_ = saved_soft;
        } else if (tag == "generation") {
            s->kind = StmtKind::scope;
            parse_frame_body(*s, {"endgeneration"});
        } else if (tag == "print") {
            s->kind = StmtKind::print;
            s->expr = parse_tuple(true, {}, false);
        } else if (tag == "break" || tag == "continue") {
            if (loops_ == 0) fail_at(t_[i_ - 1], "'" + tag + "' outside of a loop");
            s->kind = tag == "break" ? StmtKind::break_ : StmtKind::continue_;
        } else {
            fail_at(t_[i_ - 1], "Encountered unknown tag '" + tag + "'.");
        }
        return s;
    }

    // Macro, call-block caller and generation bodies: their own frame, outside any loop.
    void parse_frame_body(Stmt& s, std::initializer_list<const char*> ends) {
        const int saved_soft = soft_, saved_loops = loops_;
        soft_ = loops_ = 0;
        names_.emplace_back();
        s.body = parse_statements(ends, true);
        for (const std::string& n : names_.back()) {
            s.uses_varargs |= n == "varargs";
            s.uses_kwargs |= n == "kwargs";
            s.uses_caller |= n == "caller";
        }
        std::vector<std::string> inner = std::move(names_.back());
        names_.pop_back();
        if (!names_.empty()) names_.back().insert(names_.back().end(), inner.begin(), inner.end());
        soft_ = saved_soft;
        loops_ = saved_loops;
    }

    void parse_signature(std::vector<Param>& params) {
        expect_op("(");
        while (!is_op(")")) {
            if (!params.empty()) expect_op(",");
            if (is_op(")")) break;
            Param p;
            p.name = expect_name();
            if (skip_op("=")) p.default_value = parse_expression(true);
            else if (!params.empty() && params.back().default_value) fail_at(cur(), "non-default argument follows default argument");
            params.push_back(std::move(p));
        }
        expect_op(")");
    }

    Target parse_assign_target(bool with_namespace, std::initializer_list<const char*> extra_end) {
        if (with_namespace && cur().type == Tok::name && look().type == Tok::op && look().text == ".") {
            Target t;
            t.kind = Target::Kind::ns_attr;
            t.name = next().text;
            next();
            t.attr = expect_name();
            return t;
        }
        // A simplified tuple: names, optionally parenthesized, separated by commas.
        std::vector<Target> items;
        bool is_tuple = false;
        while (true) {
            if (!items.empty()) expect_op(",");
            if (cur().type == Tok::block_end || is_op(")") || at_end_tag(extra_end) || is_op("=") || is_op("|")) break;
            items.push_back(parse_target_primary());
            if (is_op(",")) is_tuple = true;
            else break;
        }
        if (items.empty()) fail_at(cur(), "expected an assignment target, got '" + describe(cur()) + "'");
        if (!is_tuple) return std::move(items[0]);
        Target t;
        t.kind = Target::Kind::tuple;
        t.items = std::move(items);
        return t;
    }

    Target parse_target_primary() {
        if (skip_op("(")) {
            std::vector<Target> items;
            while (!is_op(")")) {
                if (!items.empty()) expect_op(",");
                if (is_op(")")) break;
                items.push_back(parse_target_primary());
            }
            expect_op(")");
            Target t;
            t.kind = Target::Kind::tuple;
            t.items = std::move(items);
            return t;
        }
        if (cur().type != Tok::name) fail_at(cur(), "can't assign to '" + describe(cur()) + "'");
        const std::string& n = cur().text;
        if (n == "true" || n == "false" || n == "none" || n == "True" || n == "False" || n == "None")
            fail_at(cur(), "can't assign to '" + n + "'");
        Target t;
        t.name = next().text;
        return t;
    }

    // ---- expressions ----
    ExprPtr parse_expression(bool with_condexpr) { return with_condexpr ? parse_condexpr() : parse_or(); }

    ExprPtr parse_condexpr() {
        DepthGuard guard(*this);
        const int line = cur().line;
        const size_t first_unknown = unknown_.size();
        ExprPtr e = parse_or();
        while (is_name("if")) {
            // A conditional expression is a soft frame as a whole, its first branch included.
            for (size_t i = first_unknown; i < unknown_.size(); ++i) unknown_[i].soft = true;
            next();
            auto c = make(ExprKind::cond, line);
            ++soft_;
            c->b = parse_or();
            if (skip_name("else")) c->c = parse_condexpr();
            --soft_;
            c->a = std::move(e);
            e = std::move(c);
        }
        return e;
    }

    ExprPtr parse_or() {
        ExprPtr left = parse_and();
        while (is_name("or")) {
            auto e = make(ExprKind::or_, next().line);
            e->a = std::move(left);
            e->b = parse_and();
            left = std::move(e);
        }
        return left;
    }

    ExprPtr parse_and() {
        ExprPtr left = parse_not();
        while (is_name("and")) {
            auto e = make(ExprKind::and_, next().line);
            e->a = std::move(left);
            e->b = parse_not();
            left = std::move(e);
        }
        return left;
    }

    ExprPtr parse_not() {
        DepthGuard guard(*this);
        if (is_name("not")) {
            auto e = make(ExprKind::not_, next().line);
            e->a = parse_not();
            return e;
        }
        return parse_compare();
    }

    ExprPtr parse_compare() {
        const int line = cur().line;
        ExprPtr first = parse_math1();
        std::vector<ExprPtr> operands;
        std::vector<std::string> ops;
        while (true) {
            if (cur().type == Tok::op && (cur().text == "==" || cur().text == "!=" || cur().text == "<" ||
                                          cur().text == "<=" || cur().text == ">" || cur().text == ">=")) {
                ops.push_back(next().text);
            } else if (is_name("in")) {
                next();
                ops.push_back("in");
            } else if (is_name("not") && look().type == Tok::name && look().text == "in") {
                next();
                next();
                ops.push_back("notin");
            } else {
                break;
            }
            operands.push_back(parse_math1());
        }
        if (ops.empty()) return first;
        auto e = make(ExprKind::compare, line);
        e->items.push_back(std::move(first));
        for (auto& o : operands) e->items.push_back(std::move(o));
        e->ops = std::move(ops);
        return e;
    }

    ExprPtr binary(const std::string& op, ExprPtr a, ExprPtr b, int line) {
        auto e = make(ExprKind::binary, line);
        e->name = op;
        e->a = std::move(a);
        e->b = std::move(b);
        return e;
    }

    ExprPtr parse_math1() {
        ExprPtr left = parse_concat();
        while (is_op("+") || is_op("-")) {
            const Token& t = next();
            left = binary(t.text, std::move(left), parse_concat(), t.line);
        }
        return left;
    }

    ExprPtr parse_concat() {
        ExprPtr left = parse_math2();
        while (is_op("~")) {
            const int line = next().line;
            left = binary("~", std::move(left), parse_math2(), line);
        }
        return left;
    }

    ExprPtr parse_math2() {
        ExprPtr left = parse_pow();
        while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
            const Token& t = next();
            left = binary(t.text, std::move(left), parse_pow(), t.line);
        }
        return left;
    }

    ExprPtr parse_pow() {
        ExprPtr left = parse_unary(true);
        while (is_op("**")) {
            const int line = next().line;
            left = binary("**", std::move(left), parse_unary(true), line);
        }
        return left;
    }

    ExprPtr parse_unary(bool with_filter) {
        DepthGuard guard(*this);
        ExprPtr node;
        if (is_op("-") || is_op("+")) {
            const Token& t = next();
            node = make(t.text == "-" ? ExprKind::neg : ExprKind::pos, t.line);
            node->a = parse_unary(false);
        } else {
            node = parse_primary();
        }
        node = parse_postfix(std::move(node));
        if (with_filter) node = parse_filter_expr(std::move(node));
        return node;
    }

    ExprPtr parse_primary() {
        DepthGuard guard(*this);
        const Token& t = cur();
        if (t.type == Tok::name) {
            next();
            if (t.text == "true" || t.text == "True") return constant(Value(true), t.line);
            if (t.text == "false" || t.text == "False") return constant(Value(false), t.line);
            if (t.text == "none" || t.text == "None") return constant(Value::none(), t.line);
            auto e = make(ExprKind::name, t.line);
            e->name = t.text;
            if (!names_.empty()) names_.back().push_back(t.text);
            return e;
        }
        if (t.type == Tok::string) {
            std::string s = next().text;
            while (cur().type == Tok::string) s += next().text;
            return constant(Value(std::move(s)), t.line);
        }
        if (t.type == Tok::integer) return constant(Value(next().int_value), t.line);
        if (t.type == Tok::floating) return constant(Value(next().float_value), t.line);
        if (is_op("(")) {
            next();
            ExprPtr e = parse_tuple(true, {}, true);
            expect_op(")");
            return e;
        }
        if (is_op("[")) {
            next();
            auto e = make(ExprKind::list, t.line);
            while (!is_op("]")) {
                if (!e->items.empty()) expect_op(",");
                if (is_op("]")) break;
                e->items.push_back(parse_expression(true));
            }
            expect_op("]");
            return e;
        }
        if (is_op("{")) {
            next();
            auto e = make(ExprKind::dict, t.line);
            while (!is_op("}")) {
                if (!e->items.empty()) expect_op(",");
                if (is_op("}")) break;
                e->items.push_back(parse_expression(true));
                expect_op(":");
                e->items.push_back(parse_expression(true));
            }
            expect_op("}");
            return e;
        }
        fail_at(t, "unexpected '" + describe(t) + "'");
    }

    ExprPtr constant(Value v, int line) {
        auto e = make(ExprKind::constant, line);
        e->value = std::move(v);
        return e;
    }

    // parse_tuple of jinja2: `a, b` without parentheses is a tuple; `()` only with parentheses.
    ExprPtr parse_tuple(bool with_condexpr, std::initializer_list<const char*> extra_end, bool explicit_parens) {
        const int line = cur().line;
        std::vector<ExprPtr> items;
        bool is_tuple = false;
        while (true) {
            if (!items.empty()) expect_op(",");
            if (cur().type == Tok::var_end || cur().type == Tok::block_end || is_op(")") || at_end_tag(extra_end)) break;
            items.push_back(parse_expression(with_condexpr));
            if (is_op(",")) is_tuple = true;
            else break;
        }
        if (!is_tuple) {
            if (!items.empty()) return std::move(items[0]);
            if (!explicit_parens) fail_at(cur(), "Expected an expression, got '" + describe(cur()) + "'");
        }
        auto e = make(ExprKind::tuple, line);
        e->items = std::move(items);
        return e;
    }

    ExprPtr parse_postfix(ExprPtr node) {
        while (true) {
            if (is_op(".")) {
                const int line = next().line;
                if (cur().type == Tok::name) {
                    auto e = make(ExprKind::getattr, line);
                    e->name = next().text;
                    e->a = std::move(node);
                    node = std::move(e);
                } else if (cur().type == Tok::integer) {
                    auto e = make(ExprKind::getitem, line);
                    e->b = constant(Value(next().int_value), line);
                    e->a = std::move(node);
                    node = std::move(e);
                } else {
                    fail_at(cur(), "expected name or number");
                }
            } else if (is_op("[")) {
                const int line = next().line;
                std::vector<ExprPtr> subs;
                while (!is_op("]")) {
                    if (!subs.empty()) expect_op(",");
                    if (is_op("]")) break;
                    subs.push_back(parse_subscribed());
                }
                expect_op("]");
                auto e = make(ExprKind::getitem, line);
                if (subs.size() == 1) {
                    e->b = std::move(subs[0]);
                } else {
                    e->b = make(ExprKind::tuple, line);
                    e->b->items = std::move(subs);
                }
                e->a = std::move(node);
                node = std::move(e);
            } else if (is_op("(")) {
                node = parse_call(std::move(node));
            } else {
                return node;
            }
        }
    }

    ExprPtr parse_subscribed() {
        const int line = cur().line;
        ExprPtr start;
        if (is_op(":")) {
            next();
        } else {
            ExprPtr e = parse_expression(true);
            if (!is_op(":")) return e;
            next();
            start = std::move(e);
        }
        auto s = make(ExprKind::slice, line);
        s->a = std::move(start);
        if (!is_op(":") && !is_op("]") && !is_op(",")) s->b = parse_expression(true);
        if (skip_op(":"))
            if (!is_op("]") && !is_op(",")) s->c = parse_expression(true);
        return s;
    }

    void parse_call_args(std::vector<Arg>& args) {
        expect_op("(");
        bool seen_kw = false;
        while (!is_op(")")) {
            if (!args.empty()) expect_op(",");
            if (is_op(")")) break;
            if (is_op("*") || is_op("**")) fail_at(cur(), "*args and **kwargs in calls are not supported");
            Arg a;
            if (cur().type == Tok::name && look().type == Tok::op && look().text == "=") {
                a.name = next().text;
                next();
                seen_kw = true;
            } else if (seen_kw) {
                fail_at(cur(), "positional argument follows keyword argument");
            }
            a.value = parse_expression(true);
            args.push_back(std::move(a));
        }
        expect_op(")");
    }

    ExprPtr parse_call(ExprPtr callee) {
        auto e = make(ExprKind::call, cur().line);
        e->a = std::move(callee);
        parse_call_args(e->args);
        return e;
    }

    ExprPtr parse_filter_expr(ExprPtr node) {
        while (true) {
            if (is_op("|")) {
                next();
                node = parse_one_filter(std::move(node));
            } else if (is_name("is")) {
                node = parse_test(std::move(node));
            } else if (is_op("(")) {
                node = parse_call(std::move(node));
            } else {
                return node;
            }
        }
    }

    ExprPtr parse_one_filter(ExprPtr operand) {
        const int line = cur().line;
        auto e = make(ExprKind::filter, line);
        e->name = expect_name();
        while (is_op(".")) {
            next();
            e->name.append(".").append(expect_name());
        }
        if (is_op("(")) parse_call_args(e->args);
        e->known = has_filter(e->name);
        if (!e->known) unknown_.push_back({t_[i_ - 1], e->name, true, soft_ > 0});
        e->a = std::move(operand);
        return e;
    }

    // `| a | b(x)` of a set block, or `a | b(x)` of a filter block (start_inline).
    void parse_filter_chain(std::vector<ExprPtr>& out, bool start_inline) {
        bool first = true;
        while (is_op("|") || (first && start_inline)) {
            if (!(first && start_inline)) next();
            first = false;
            out.push_back(parse_one_filter(nullptr));
        }
    }

    ExprPtr parse_test(ExprPtr operand) {
        const int line = next().line;  // "is"
        const bool negated = skip_name("not");
        auto e = make(ExprKind::test, line);
        e->name = expect_name();
        while (is_op(".")) {
            next();
            e->name.append(".").append(expect_name());
        }
        if (is_op("(")) {
            parse_call_args(e->args);
        } else if ((cur().type == Tok::name || cur().type == Tok::string || cur().type == Tok::integer ||
                    cur().type == Tok::floating || is_op("(") || is_op("[") || is_op("{")) &&
                   !is_name("else") && !is_name("or") && !is_name("and")) {
            if (is_name("is")) fail_at(cur(), "You cannot chain multiple tests with is");
            Arg a;
            a.value = parse_postfix(parse_primary());
            e->args.push_back(std::move(a));
        }
        e->known = has_test(e->name);
        if (!e->known) unknown_.push_back({t_[i_ - 1], e->name, false, soft_ > 0});
        e->a = std::move(operand);
        if (!negated) return e;
        auto n = make(ExprKind::not_, line);
        n->a = std::move(e);
        return n;
    }

    std::vector<Token> t_;
    size_t i_ = 0;
    int depth_ = 0;
    int soft_ = 0;   // > 0 inside an if test/body or conditional expression (jinja2's soft frame)
    int loops_ = 0;  // enclosing for loops within the current frame
    std::vector<std::vector<std::string>> names_;  // names read in each enclosing macro body
    // Unknown filters and tests: an error at the end of parsing unless they sit in a soft frame
    // (an if, or a conditional expression), where jinja2 defers the error to when they run.
    struct Unknown {
        Token where;
        std::string name;
        bool is_filter;
        bool soft;
    };
    std::vector<Unknown> unknown_;
};

}  // namespace

Result<Body> parse(const std::string& source) {
    HEARTH_ASSIGN(std::vector<Token> tokens, tokenize(source));
    try {
        return Parser(std::move(tokens)).parse_template();
    } catch (const ParseError& e) {
        return error(StatusCode::invalid_argument, e.message);
    }
}

}  // namespace hearth::chat::jinja
