#include "chat/grammar.h"

#include <algorithm>
#include <map>
#include <optional>
#include <unordered_map>

namespace hearth::chat {

// ---- parsing ----------------------------------------------------------------------------------

namespace {

constexpr uint32_t kMaxCodePoint = 0x10FFFF;
constexpr int kInfinite = -1;

// One parsed expression.
struct Node {
    enum class Kind { seq, alt, chars, ref, repeat };
    Kind kind = Kind::seq;
    std::vector<Node> kids;  // seq: items; alt: alternatives (each a seq); repeat: the item
    uint32_t cls = 0;        // chars: class id
    std::string name;        // ref
    int min = 0, max = 0;    // repeat; max kInfinite: no bound
    int line = 0, col = 0;   // ref: where, for "undefined rule"
};

using Ranges = std::vector<std::pair<uint32_t, uint32_t>>;

Ranges normalize(Ranges r, bool negated) {
    std::sort(r.begin(), r.end());
    Ranges merged;
    for (auto [lo, hi] : r) {
        if (!merged.empty() && lo <= merged.back().second + 1)
            merged.back().second = std::max(merged.back().second, hi);
        else
            merged.push_back({lo, hi});
    }
    if (!negated) return merged;
    Ranges out;
    uint32_t next = 0;
    for (auto [lo, hi] : merged) {
        if (lo > next) out.push_back({next, lo - 1});
        next = hi + 1;
    }
    if (next <= kMaxCodePoint) out.push_back({next, kMaxCodePoint});
    return out;
}

// Surrogates (U+D800..U+DFFF) are not characters: UTF-8 cannot carry them, so no class has them.
Ranges without_surrogates(const Ranges& r) {
    Ranges out;
    for (auto [lo, hi] : r) {
        if (hi < 0xD800 || lo > 0xDFFF) {
            out.push_back({lo, hi});
            continue;
        }
        if (lo < 0xD800) out.push_back({lo, 0xD7FF});
        if (hi > 0xDFFF) out.push_back({0xE000, hi});
    }
    return out;
}

bool is_name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

}  // namespace

// Parses GBNF into per-rule expression trees, then lowers them to the element array.
class GrammarCompiler {
public:
    explicit GrammarCompiler(std::string_view text) : s_(text) {}

    Result<std::shared_ptr<const Grammar>> compile(std::string_view root);

private:
    // ---- lexing helpers ----
    bool eof() const { return i_ >= s_.size(); }
    char peek() const { return eof() ? '\0' : s_[i_]; }
    Status err_at(size_t at, const std::string& msg) const {
        int line = 1, col = 1;
        for (size_t k = 0; k < at && k < s_.size(); ++k) {
            if (s_[k] == '\n') ++line, col = 1;
            else ++col;
        }
        return error(StatusCode::invalid_argument, strformat("line %d, column %d: ", line, col) + msg);
    }
    Status err(const std::string& msg) const { return err_at(i_, msg); }
    void line_col(size_t at, int& line, int& col) const {
        line = 1, col = 1;
        for (size_t k = 0; k < at && k < s_.size(); ++k) {
            if (s_[k] == '\n') ++line, col = 1;
            else ++col;
        }
    }
    // Skips blanks and comments; line breaks too when `newlines`.
    void skip_space(bool newlines) {
        while (!eof()) {
            char c = s_[i_];
            if (c == ' ' || c == '\t' || c == '\r' || (newlines && c == '\n')) {
                ++i_;
            } else if (c == '#') {
                while (!eof() && s_[i_] != '\n') ++i_;
            } else {
                break;
            }
        }
    }
    Result<uint32_t> parse_code_point();  // one (possibly escaped) character of a literal or class
    Result<Node> parse_alternatives(bool nested);
    Result<Node> parse_sequence(bool nested);
    Result<Node> parse_primary(bool nested);
    Result<int> parse_int();
    uint32_t intern_class(const Ranges& r);

    // ---- lowering ----
    using Alt = std::vector<Grammar::Elem>;
    using Rule = std::vector<Alt>;
    uint32_t new_rule(const std::string& name) {
        rules_.emplace_back();
        names_.push_back(name);
        return static_cast<uint32_t>(rules_.size() - 1);
    }
    Status lower_alternatives(const Node& alt, uint32_t rule);
    Status lower_sequence(const Node& seq, uint32_t rule, Alt& out);
    Status lower_item(const Node& item, uint32_t rule, Alt& out);
    // One element standing for `item` (a rule reference unless it is one class or one reference).
    Result<Grammar::Elem> as_element(const Node& item, uint32_t rule);
    uint32_t synthetic(uint32_t parent) {
        return new_rule(names_[parent] + "-" + std::to_string(++n_synthetic_[parent]));
    }
    Status check_left_recursion(const Grammar& g);

    std::string_view s_;
    size_t i_ = 0;
    std::vector<Grammar::CharClass> classes_;
    std::vector<Grammar::Repeat> repeats_;
    std::map<Ranges, uint32_t> class_ids_;
    std::vector<Rule> rules_;
    std::vector<std::string> names_;
    std::unordered_map<std::string, uint32_t> ids_;
    std::unordered_map<uint32_t, int> n_synthetic_;
    size_t n_elems_ = 0;
};

uint32_t GrammarCompiler::intern_class(const Ranges& r0) {
    const Ranges r = without_surrogates(r0);
    auto it = class_ids_.find(r);
    if (it != class_ids_.end()) return it->second;
    Grammar::CharClass c;
    c.ranges = r;
    for (auto [lo, hi] : r)
        for (uint32_t cp = lo; cp <= hi && cp < 128; ++cp) c.ascii[cp >> 6] |= uint64_t{1} << (cp & 63);
    classes_.push_back(std::move(c));
    const uint32_t id = static_cast<uint32_t>(classes_.size() - 1);
    class_ids_.emplace(r, id);
    return id;
}

Result<uint32_t> GrammarCompiler::parse_code_point() {
    if (eof()) return err("unexpected end of grammar");
    const unsigned char c = static_cast<unsigned char>(s_[i_]);
    if (c == '\\') {
        const size_t at = i_;
        ++i_;
        if (eof()) return err("unexpected end of grammar after '\\'");
        const char e = s_[i_++];
        switch (e) {
            case 'n': return uint32_t{'\n'};
            case 'r': return uint32_t{'\r'};
            case 't': return uint32_t{'\t'};
            case '\\': case '"': case '\'': case '[': case ']': case '-': case '/': case '^':
                return static_cast<uint32_t>(static_cast<unsigned char>(e));
            case 'x': case 'u': case 'U': {
                const int n = e == 'x' ? 2 : e == 'u' ? 4 : 8;
                uint32_t v = 0;
                for (int k = 0; k < n; ++k) {
                    const int h = hex_value(peek());
                    if (eof() || h < 0) return err(strformat("escape \\%c needs %d hex digits", e, n));
                    v = v * 16 + static_cast<uint32_t>(h);
                    ++i_;
                }
                if (v > kMaxCodePoint) return err_at(at, "escape beyond U+10FFFF");
                return v;
            }
            default:
                return err_at(at, std::string("unknown escape \\") + e);
        }
    }
    // UTF-8 in the grammar text.
    int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (len == 0 || i_ + len > s_.size()) return err("invalid UTF-8 in the grammar");
    uint32_t v = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
    for (int k = 1; k < len; ++k) {
        const unsigned char d = static_cast<unsigned char>(s_[i_ + k]);
        if ((d & 0xC0) != 0x80) return err("invalid UTF-8 in the grammar");
        v = (v << 6) | (d & 0x3F);
    }
    i_ += len;
    return v;
}

Result<int> GrammarCompiler::parse_int() {
    skip_space(true);
    if (eof() || peek() < '0' || peek() > '9') return err("expected a number");
    int64_t v = 0;
    while (!eof() && peek() >= '0' && peek() <= '9') {
        v = v * 10 + (peek() - '0');
        if (v > kMaxRepeat) return err(strformat("repetition count above %d", kMaxRepeat));
        ++i_;
    }
    skip_space(true);
    return static_cast<int>(v);
}

Result<Node> GrammarCompiler::parse_primary(bool nested) {
    const char c = peek();
    Node n;
    if (c == '"' || c == '\'') {
        const char quote = c;
        ++i_;
        n.kind = Node::Kind::seq;
        while (!eof() && peek() != quote) {
            if (peek() == '\n') return err("line break inside a string literal");
            HEARTH_ASSIGN(uint32_t cp, parse_code_point());
            Node ch;
            ch.kind = Node::Kind::chars;
            ch.cls = intern_class({{cp, cp}});
            n.kids.push_back(std::move(ch));
        }
        if (eof()) return err("unterminated string literal");
        ++i_;
        return n;
    }
    if (c == '[') {
        ++i_;
        bool negated = false;
        if (peek() == '^') negated = true, ++i_;
        Ranges r;
        while (!eof() && peek() != ']') {
            HEARTH_ASSIGN(uint32_t lo, parse_code_point());
            uint32_t hi = lo;
            if (peek() == '-' && i_ + 1 < s_.size() && s_[i_ + 1] != ']') {
                ++i_;
                HEARTH_ASSIGN(hi, parse_code_point());
                if (hi < lo) return err("character range with its end before its start");
            }
            r.push_back({lo, hi});
        }
        if (eof()) return err("unterminated character class");
        ++i_;
        n.kind = Node::Kind::chars;
        n.cls = intern_class(normalize(std::move(r), negated));
        return n;
    }
    if (c == '.') {
        ++i_;
        n.kind = Node::Kind::chars;
        n.cls = intern_class({{0, kMaxCodePoint}});
        return n;
    }
    if (c == '(') {
        ++i_;
        skip_space(true);
        HEARTH_ASSIGN(n, parse_alternatives(true));
        skip_space(true);
        if (peek() != ')') return err("expected ')'");
        ++i_;
        return n;
    }
    if (is_name_char(c)) {
        const size_t start = i_;
        while (!eof() && is_name_char(peek())) ++i_;
        n.kind = Node::Kind::ref;
        n.name = std::string(s_.substr(start, i_ - start));
        line_col(start, n.line, n.col);
        // A name followed by ::= is the next rule: the caller should have stopped at the newline.
        return n;
    }
    (void)nested;
    return err(std::string("unexpected character '") + c + "'");
}

Result<Node> GrammarCompiler::parse_sequence(bool nested) {
    Node seq;
    seq.kind = Node::Kind::seq;
    for (;;) {
        skip_space(nested);
        const char c = peek();
        if (eof() || c == '|' || c == ')' || c == '\n') break;
        HEARTH_ASSIGN(Node item, parse_primary(nested));
        // Postfix operators bind to the item just parsed.
        for (;;) {
            const char p = peek();
            int mn, mx;
            if (p == '*') mn = 0, mx = kInfinite, ++i_;
            else if (p == '+') mn = 1, mx = kInfinite, ++i_;
            else if (p == '?') mn = 0, mx = 1, ++i_;
            else if (p == '{') {
                ++i_;
                HEARTH_ASSIGN(mn, parse_int());
                mx = mn;
                if (peek() == ',') {
                    ++i_;
                    skip_space(true);
                    if (peek() == '}') mx = kInfinite;
                    else {
                        HEARTH_ASSIGN(mx, parse_int());
                        if (mx < mn) return err("repetition {m,n} with n < m");
                    }
                }
                if (peek() != '}') return err("expected '}'");
                ++i_;
            } else {
                break;
            }
            Node rep;
            rep.kind = Node::Kind::repeat;
            rep.min = mn, rep.max = mx;
            rep.kids.push_back(std::move(item));
            item = std::move(rep);
        }
        seq.kids.push_back(std::move(item));
    }
    return seq;
}

Result<Node> GrammarCompiler::parse_alternatives(bool nested) {
    Node alt;
    alt.kind = Node::Kind::alt;
    HEARTH_ASSIGN(Node first, parse_sequence(nested));
    alt.kids.push_back(std::move(first));
    for (;;) {
        const size_t save = i_;
        skip_space(true);  // `|` may start the next line
        if (peek() != '|') {
            i_ = save;
            break;
        }
        ++i_;
        skip_space(true);
        HEARTH_ASSIGN(Node next, parse_sequence(nested));
        alt.kids.push_back(std::move(next));
    }
    return alt;
}

Result<Grammar::Elem> GrammarCompiler::as_element(const Node& item, uint32_t rule) {
    if (item.kind == Node::Kind::chars) return Grammar::Elem{Grammar::Op::chars, item.cls};
    if (item.kind == Node::Kind::ref) {
        auto it = ids_.find(item.name);
        if (it == ids_.end())
            return error(StatusCode::invalid_argument,
                         strformat("line %d, column %d: undefined rule '%s'", item.line, item.col, item.name.c_str()));
        return Grammar::Elem{Grammar::Op::rule, it->second};
    }
    const uint32_t r = synthetic(rule);
    if (item.kind == Node::Kind::alt) {
        HEARTH_TRY(lower_alternatives(item, r));
    } else {
        Alt a;
        HEARTH_TRY(lower_item(item, r, a));
        rules_[r].push_back(std::move(a));
    }
    return Grammar::Elem{Grammar::Op::rule, r};
}

Status GrammarCompiler::lower_item(const Node& item, uint32_t rule, Alt& out) {
    switch (item.kind) {
        case Node::Kind::chars:
        case Node::Kind::ref: {
            HEARTH_ASSIGN(Grammar::Elem e, as_element(item, rule));
            out.push_back(e);
            break;
        }
        case Node::Kind::seq:
            for (const Node& k : item.kids) HEARTH_TRY(lower_item(k, rule, out));
            break;
        case Node::Kind::alt:
            if (item.kids.size() == 1) {
                HEARTH_TRY(lower_item(item.kids[0], rule, out));
            } else {
                HEARTH_ASSIGN(Grammar::Elem e, as_element(item, rule));
                out.push_back(e);
            }
            break;
        case Node::Kind::repeat: {
            const Node& x = item.kids[0];
            HEARTH_ASSIGN(Grammar::Elem e, as_element(x, rule));
            if (item.max != kInfinite && item.max >= 2) {
                // Counted: one element, the count in the frame (see Grammar::Repeat).
                out.push_back({Grammar::Op::repeat, static_cast<uint32_t>(repeats_.size())});
                repeats_.push_back({e, static_cast<uint32_t>(item.min), static_cast<uint32_t>(item.max)});
                break;
            }
            if (item.max == kInfinite && item.min >= 2) {
                out.push_back({Grammar::Op::repeat, static_cast<uint32_t>(repeats_.size())});
                repeats_.push_back({e, static_cast<uint32_t>(item.min), static_cast<uint32_t>(item.min)});
            } else {
                for (int k = 0; k < item.min; ++k) out.push_back(e);
            }
            if (item.max == kInfinite) {
                if (e.op == Grammar::Op::chars) {
                    out.push_back({Grammar::Op::chars_star, e.arg});
                } else {
                    // star ::= x star | ε  (the tail call reuses the caller's frame)
                    const uint32_t star = synthetic(rule);
                    rules_[star].push_back({e, {Grammar::Op::rule, star}});
                    rules_[star].push_back({});
                    out.push_back({Grammar::Op::rule, star});
                }
            } else if (item.max > item.min) {
                // x? ::= x | ε
                const uint32_t opt = synthetic(rule);
                rules_[opt].push_back({e});
                rules_[opt].push_back({});
                out.push_back({Grammar::Op::rule, opt});
            }
            break;
        }
    }
    n_elems_ += out.size();
    if (n_elems_ > static_cast<size_t>(kMaxGrammarElems))
        return error(StatusCode::invalid_argument, "grammar too large after expanding repetitions");
    return {};
}

Status GrammarCompiler::lower_sequence(const Node& seq, uint32_t rule, Alt& out) { return lower_item(seq, rule, out); }

Status GrammarCompiler::lower_alternatives(const Node& alt, uint32_t rule) {
    for (const Node& seq : alt.kids) {
        Alt a;
        HEARTH_TRY(lower_sequence(seq, rule, a));
        rules_[rule].push_back(std::move(a));
    }
    return {};
}

Status GrammarCompiler::check_left_recursion(const Grammar& g) {
    // Edges r -> s when s can be reached from r before any character is consumed.
    const size_t n = g.n_rules();
    std::vector<std::vector<uint32_t>> left(n);
    for (uint32_t r = 0; r < n; ++r) {
        for (uint32_t a = g.rule_alts()[r]; a < g.rule_alts()[r + 1]; ++a) {
            for (uint32_t p = g.alt_starts()[a];; ++p) {
                const Grammar::Elem e = g.elems()[p];
                if (e.op == Grammar::Op::end || e.op == Grammar::Op::chars) break;
                if (e.op == Grammar::Op::rule) {
                    left[r].push_back(e.arg);
                    if (!g.is_nullable(e.arg)) break;
                }
                if (e.op == Grammar::Op::repeat) {
                    const Grammar::Repeat& rep = g.repeats()[e.arg];
                    if (rep.item.op == Grammar::Op::rule) left[r].push_back(rep.item.arg);
                    if (rep.min > 0) break;  // min is 0 for an item that can match nothing
                }
            }
        }
    }
    std::vector<int> color(n, 0);  // 0 new, 1 on the path, 2 done
    std::vector<uint32_t> path;
    std::vector<std::pair<uint32_t, size_t>> stack;
    for (uint32_t start = 0; start < n; ++start) {
        if (color[start]) continue;
        stack.push_back({start, 0});
        color[start] = 1;
        path.push_back(start);
        while (!stack.empty()) {
            auto& [r, k] = stack.back();
            if (k == left[r].size()) {
                color[r] = 2;
                path.pop_back();
                stack.pop_back();
                continue;
            }
            const uint32_t s = left[r][k++];
            if (color[s] == 1) {
                std::string cycle;
                auto it = std::find(path.begin(), path.end(), s);
                for (; it != path.end(); ++it) cycle += g.rule_name(*it) + " -> ";
                cycle += g.rule_name(s);
                return error(StatusCode::invalid_argument,
                             "left recursion (a rule reaching itself before any character, or a repetition of "
                             "something that can match nothing): " + cycle);
            }
            if (color[s] == 0) {
                color[s] = 1;
                path.push_back(s);
                stack.push_back({s, 0});
            }
        }
    }
    return {};
}

Result<std::shared_ptr<const Grammar>> GrammarCompiler::compile(std::string_view root) {
    // Pass 1: rule definitions.
    std::vector<std::pair<std::string, Node>> defs;
    for (;;) {
        skip_space(true);
        if (eof()) break;
        const size_t start = i_;
        while (!eof() && is_name_char(peek())) ++i_;
        if (i_ == start) return err("expected a rule name");
        std::string name(s_.substr(start, i_ - start));
        skip_space(false);
        if (s_.substr(i_, 3) != "::=") return err("expected '::=' after the rule name '" + name + "'");
        i_ += 3;
        skip_space(true);
        HEARTH_ASSIGN(Node body, parse_alternatives(false));
        skip_space(false);
        if (!eof() && peek() != '\n') {
            if (peek() == ')') return err("unbalanced ')'");
            return err(std::string("unexpected character '") + peek() + "'");
        }
        if (ids_.count(name)) return err_at(start, "rule '" + name + "' is defined twice");
        ids_[name] = new_rule(name);
        defs.push_back({std::move(name), std::move(body)});
    }
    auto root_it = ids_.find(std::string(root));
    if (root_it == ids_.end()) return error(StatusCode::invalid_argument, "the grammar has no rule '" + std::string(root) + "'");
    // Pass 2: lowering (defined rules keep ids 0..n-1; synthetic ones follow).
    for (size_t r = 0; r < defs.size(); ++r) HEARTH_TRY(lower_alternatives(defs[r].second, static_cast<uint32_t>(r)));

    auto g = std::make_shared<Grammar>();
    g->classes_ = std::move(classes_);
    g->repeats_ = std::move(repeats_);
    g->rule_names_ = std::move(names_);
    g->root_ = root_it->second;
    g->rule_alts_.push_back(0);
    for (const Rule& rule : rules_) {
        for (const Alt& a : rule) {
            g->alt_starts_.push_back(static_cast<uint32_t>(g->elems_.size()));
            g->elems_.insert(g->elems_.end(), a.begin(), a.end());
            g->elems_.push_back({Grammar::Op::end, 0});
        }
        g->rule_alts_.push_back(static_cast<uint32_t>(g->alt_starts_.size()));
    }
    // Nullable rules: fixpoint.
    g->nullable_.assign(rules_.size(), false);
    for (bool changed = true; changed;) {
        changed = false;
        for (uint32_t r = 0; r < rules_.size(); ++r) {
            if (g->nullable_[r]) continue;
            for (const Alt& a : rules_[r]) {
                bool all = true;
                for (const Grammar::Elem& e : a) {
                    bool empty_ok = e.op == Grammar::Op::chars_star || (e.op == Grammar::Op::rule && g->nullable_[e.arg]);
                    if (e.op == Grammar::Op::repeat) {
                        const Grammar::Repeat& rep = g->repeats_[e.arg];
                        empty_ok = rep.min == 0 || (rep.item.op == Grammar::Op::rule && g->nullable_[rep.item.arg]);
                    }
                    if (!empty_ok) {
                        all = false;
                        break;
                    }
                }
                if (all) {
                    g->nullable_[r] = true;
                    changed = true;
                    break;
                }
            }
        }
    }
    // x{m,n} of an x that can match nothing is x{0,n}; iterations never match nothing (the matcher
    // skips them), so the bound has to go.
    for (Grammar::Repeat& rep : g->repeats_)
        if (rep.item.op == Grammar::Op::rule && g->nullable_[rep.item.arg]) rep.min = 0;
    HEARTH_TRY(check_left_recursion(*g));
    return std::shared_ptr<const Grammar>(std::move(g));
}

Result<std::shared_ptr<const Grammar>> Grammar::parse(std::string_view text, std::string_view root) {
    GrammarCompiler c(text);
    return c.compile(root);
}

bool Grammar::matches_slow(uint32_t cls, uint32_t cp) const {
    const auto& r = classes_[cls].ranges;
    auto it = std::upper_bound(r.begin(), r.end(), std::make_pair(cp, kMaxCodePoint));
    if (it == r.begin()) return false;
    --it;
    return cp >= it->first && cp <= it->second;
}

bool Grammar::intersects(uint32_t cls, uint32_t lo, uint32_t hi) const {
    for (auto [a, b] : classes_[cls].ranges)
        if (a <= hi && lo <= b) return true;
    return false;
}

bool Grammar::classes_intersect(uint32_t a, uint32_t b) const {
    const auto& x = classes_[a].ranges;
    const auto& y = classes_[b].ranges;
    size_t i = 0, j = 0;
    while (i < x.size() && j < y.size()) {
        if (x[i].second < y[j].first) ++i;
        else if (y[j].second < x[i].first) ++j;
        else return true;
    }
    return false;
}

// ---- matching ---------------------------------------------------------------------------------

struct GrammarMatcher::VFrame {
    uint32_t pos;
    uint32_t count;      // as Frame::count
    const VFrame* next;  // nullptr: continue with the real frame chain
};

GrammarMatcher::GrammarMatcher(std::shared_ptr<const Grammar> grammar) : g_(std::move(grammar)) {
    elems_ = g_->elems().data();
    repeats_ = g_->repeats().data();
    // The start state: one frame per alternative of the root rule, each returning to nothing.
    const uint32_t r = g_->root();
    for (uint32_t a = g_->rule_alts()[r]; a < g_->rule_alts()[r + 1]; ++a) {
        const uint32_t pos = g_->alt_starts()[a];
        if (elems_[pos].op == Grammar::Op::end) {
            if (std::find(heads_.begin(), heads_.end(), kAccept) == heads_.end()) heads_.push_back(kAccept);
            continue;
        }
        frames_.push_back({pos, -1, 0});
        heads_.push_back(static_cast<int32_t>(frames_.size() - 1));
    }
    levels_.push_back({0, static_cast<uint32_t>(heads_.size()), 0, 0});
}

void GrammarMatcher::emit(int32_t frame, uint32_t out_begin) {
    for (uint32_t k = out_begin; k < heads_.size(); ++k)
        if (heads_[k] == frame) return;
    heads_.push_back(frame);
}

void GrammarMatcher::emit_new(uint32_t pos, int32_t parent, uint32_t count, uint32_t out_begin) {
    if (elems_[pos].op == Grammar::Op::end) {
        // Frames never point at `end`: the stack continues with the parent frame itself.
        emit(parent < 0 ? kAccept : parent, out_begin);
        return;
    }
    for (uint32_t k = out_begin; k < heads_.size(); ++k) {
        const int32_t h = heads_[k];
        if (h >= 0 && frames_[h].pos == pos && frames_[h].parent == parent && frames_[h].count == count) return;
    }
    frames_.push_back({pos, parent, count});
    heads_.push_back(static_cast<int32_t>(frames_.size() - 1));
}

// Consumes `cp` from the stack (pos, count, parent), appending the resulting stacks to heads_.
// `self` is the frame equal to (pos, parent) when one exists (reused instead of allocating a copy).
void GrammarMatcher::take(uint32_t pos, int32_t parent, int32_t self, uint32_t count, uint32_t cp, uint32_t out_begin) {
    for (;;) {
        const Grammar::Elem e = elems_[pos];
        switch (e.op) {
            case Grammar::Op::end:
                if (parent < 0) return;  // complete: nothing more may follow on this stack
                if (is_empty_iteration(parent)) return;
                self = parent;
                pos = frames_[parent].pos;
                count = frames_[parent].count;
                parent = frames_[parent].parent;
                continue;
            case Grammar::Op::chars:
                if (g_->matches(e.arg, cp)) emit_new(pos + 1, parent, 0, out_begin);
                return;
            case Grammar::Op::chars_star:
                if (g_->matches(e.arg, cp)) {
                    if (self >= 0) emit(self, out_begin);
                    else emit_new(pos, parent, 0, out_begin);
                }
                ++pos;  // or leave the loop
                self = -1;
                count = 0;
                continue;
            case Grammar::Op::rule: {
                int32_t cont = parent;  // a tail call returns straight to the caller's parent
                if (elems_[pos + 1].op != Grammar::Op::end) {
                    frames_.push_back({pos + 1, parent, 0});
                    cont = static_cast<int32_t>(frames_.size() - 1);
                }
                const uint32_t r = e.arg;
                for (uint32_t a = g_->rule_alts()[r]; a < g_->rule_alts()[r + 1]; ++a)
                    take(g_->alt_starts()[a], cont, -1, 0, cp, out_begin);
                return;
            }
            case Grammar::Op::repeat: {
                const Grammar::Repeat& rep = repeats_[e.arg];
                if (count < rep.max) {
                    if (rep.item.op == Grammar::Op::chars) {
                        if (g_->matches(rep.item.arg, cp)) emit_new(pos, parent, count + 1, out_begin);
                    } else {
                        frames_.push_back({pos, parent, count + 1});
                        const int32_t cont = static_cast<int32_t>(frames_.size() - 1);
                        const uint32_t r = rep.item.arg;
                        for (uint32_t a = g_->rule_alts()[r]; a < g_->rule_alts()[r + 1]; ++a)
                            take(g_->alt_starts()[a], cont, -1, 0, cp, out_begin);
                    }
                }
                if (count < rep.min) return;
                ++pos;
                self = -1;
                count = 0;
                continue;
            }
        }
    }
}

// Whether the next code point consumed from the stack (pos, count, v..., parent) can come from
// a character class for which meets(class) holds. Allocates nothing: continuations of rule calls
// live on the C++ stack (v).
template <class Meets>
bool GrammarMatcher::first_char_meets(uint32_t pos, uint32_t count, const VFrame* v, int32_t parent,
                                      const Meets& meets) const {
    for (;;) {
        const Grammar::Elem e = elems_[pos];
        switch (e.op) {
            case Grammar::Op::end:
                if (v) {
                    if (v->count > 0 && elems_[v->pos].op == Grammar::Op::repeat) return false;  // empty iteration
                    pos = v->pos;
                    count = v->count;
                    v = v->next;
                    continue;
                }
                if (parent < 0) return false;
                pos = frames_[parent].pos;
                count = frames_[parent].count;
                parent = frames_[parent].parent;
                continue;
            case Grammar::Op::chars:
                return meets(e.arg);
            case Grammar::Op::chars_star:
                if (meets(e.arg)) return true;
                ++pos;
                count = 0;
                continue;
            case Grammar::Op::rule: {
                VFrame cont{pos + 1, 0, v};
                const VFrame* c = elems_[pos + 1].op == Grammar::Op::end ? v : &cont;
                for (uint32_t a = g_->rule_alts()[e.arg]; a < g_->rule_alts()[e.arg + 1]; ++a)
                    if (first_char_meets(g_->alt_starts()[a], 0, c, parent, meets)) return true;
                return false;
            }
            case Grammar::Op::repeat: {
                const Grammar::Repeat& rep = repeats_[e.arg];
                if (count < rep.max) {
                    if (rep.item.op == Grammar::Op::chars) {
                        if (meets(rep.item.arg)) return true;
                    } else {
                        VFrame cont{pos, count + 1, v};
                        for (uint32_t a = g_->rule_alts()[rep.item.arg]; a < g_->rule_alts()[rep.item.arg + 1]; ++a)
                            if (first_char_meets(g_->alt_starts()[a], 0, &cont, parent, meets)) return true;
                    }
                }
                if (count < rep.min) return false;
                ++pos;
                count = 0;
                continue;
            }
        }
    }
}

// Whether some code point in [lo, hi] can be consumed from the stack (pos, count, v..., parent).
bool GrammarMatcher::can_take(uint32_t pos, uint32_t count, const VFrame* v, int32_t parent, uint32_t lo,
                              uint32_t hi) const {
    return first_char_meets(pos, count, v, parent, [&](uint32_t cls) {
        return lo == hi ? g_->matches(cls, lo) : g_->intersects(cls, lo, hi);
    });
}

// Whether some character of class `cls` can be consumed from the stack (pos, count, v..., parent).
bool GrammarMatcher::exit_meets(uint32_t pos, uint32_t count, const VFrame* v, int32_t parent, uint32_t cls) const {
    return first_char_meets(pos, count, v, parent, [&](uint32_t c) { return g_->classes_intersect(c, cls); });
}

int64_t GrammarMatcher::loop_class() const {
    const Level& cur = levels_.back();
    if (cur.need != 0 || cur.heads_end - cur.heads_begin != 1) return -1;
    const int32_t h = heads_[cur.heads_begin];
    if (h < 0) return -1;
    const Grammar::Elem e = elems_[frames_[h].pos];
    if (e.op != Grammar::Op::chars_star) return -1;
    if (exit_meets(frames_[h].pos + 1, 0, nullptr, frames_[h].parent, e.arg)) return -1;
    return e.arg;
}

// Whether the alternative run at `pos` may start with a character of `cls` (conservatively true
// when it could match nothing, or nests deeper than `depth`).
bool GrammarMatcher::starts_with_class(uint32_t pos, uint32_t cls, int depth) const {
    if (depth <= 0) return true;
    for (;; ++pos) {
        const Grammar::Elem e = elems_[pos];
        switch (e.op) {
            case Grammar::Op::end:
                return true;
            case Grammar::Op::chars:
                return g_->classes_intersect(e.arg, cls);
            case Grammar::Op::chars_star:
                if (g_->classes_intersect(e.arg, cls)) return true;
                continue;
            case Grammar::Op::rule:
                for (uint32_t a = g_->rule_alts()[e.arg]; a < g_->rule_alts()[e.arg + 1]; ++a)
                    if (starts_with_class(g_->alt_starts()[a], cls, depth - 1)) return true;
                if (!g_->is_nullable(e.arg)) return false;
                continue;
            case Grammar::Op::repeat:
                return true;  // rare here; stay conservative
        }
    }
}

namespace {

void append_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
        out += static_cast<char>(cp);
    } else if (cp < 0x800) {
        out += static_cast<char>(0xC0 | (cp >> 6));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out += static_cast<char>(0xE0 | (cp >> 12));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
        out += static_cast<char>(0xF0 | (cp >> 18));
        out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    }
}

}  // namespace

bool GrammarMatcher::counted_loop(CountedLoop& out) const {
    const Level& cur = levels_.back();
    if (cur.need != 0 || cur.heads_end - cur.heads_begin != 1) return false;
    const int32_t h = heads_[cur.heads_begin];
    if (h < 0) return false;
    const Frame f = frames_[h];
    const Grammar::Elem e = elems_[f.pos];
    if (e.op != Grammar::Op::repeat) return false;
    const Grammar::Repeat& rep = repeats_[e.arg];
    uint32_t cls;
    if (rep.item.op == Grammar::Op::chars) {
        cls = rep.item.arg;
    } else {
        // Exactly one alternative that is the single class element; no other can start with it.
        int64_t found = -1;
        const uint32_t r = rep.item.arg;
        for (uint32_t a = g_->rule_alts()[r]; a < g_->rule_alts()[r + 1]; ++a) {
            const uint32_t p = g_->alt_starts()[a];
            if (found < 0 && elems_[p].op == Grammar::Op::chars && elems_[p + 1].op == Grammar::Op::end) found = a;
        }
        if (found < 0) return false;
        cls = elems_[g_->alt_starts()[static_cast<uint32_t>(found)]].arg;
        for (uint32_t a = g_->rule_alts()[r]; a < g_->rule_alts()[r + 1]; ++a)
            if (a != static_cast<uint32_t>(found) && starts_with_class(g_->alt_starts()[a], cls, 8)) return false;
    }
    if (g_->char_class(cls).ranges.empty()) return false;
    if (exit_meets(f.pos + 1, 0, nullptr, f.parent, cls)) return false;
    out.cls = cls;
    out.remaining = rep.max - f.count;
    out.rep.clear();
    append_utf8(out.rep, g_->char_class(cls).ranges.front().first);
    return true;
}

bool GrammarMatcher::can_end_from(uint32_t pos, uint32_t count, int32_t parent) const {
    for (;;) {
        const Grammar::Elem e = elems_[pos];
        switch (e.op) {
            case Grammar::Op::end:
                if (parent < 0) return true;
                pos = frames_[parent].pos;
                count = frames_[parent].count;
                parent = frames_[parent].parent;
                continue;
            case Grammar::Op::chars:
                return false;
            case Grammar::Op::chars_star:
                ++pos;
                count = 0;
                continue;
            case Grammar::Op::rule:
                if (!g_->is_nullable(e.arg)) return false;
                ++pos;
                count = 0;
                continue;
            case Grammar::Op::repeat:
                if (count < repeats_[e.arg].min) return false;
                ++pos;
                count = 0;
                continue;
        }
    }
}

bool GrammarMatcher::push_byte(uint8_t b) {
    const Level cur = levels_.back();
    Level next = cur;
    next.frames_before = static_cast<uint32_t>(frames_.size());
    next.heads_before = static_cast<uint32_t>(heads_.size());
    uint32_t cp = b;
    if (cur.need == 0 && b >= 0x80) {
        const int len = (b >= 0xC2 && b <= 0xDF) ? 2 : (b >= 0xE0 && b <= 0xEF) ? 3 : (b >= 0xF0 && b <= 0xF4) ? 4 : 0;
        if (len == 0) return false;
        next.len = static_cast<uint8_t>(len);
        next.need = static_cast<uint8_t>(len - 1);
        next.cp = b & (len == 2 ? 0x1F : len == 3 ? 0x0F : 0x07);
    } else if (cur.need > 0) {
        if ((b & 0xC0) != 0x80) return false;
        next.cp = (cur.cp << 6) | (b & 0x3F);
        --next.need;
        cp = next.cp;
    }
    const uint32_t min_cp = next.len <= 2 ? 0x80 : next.len == 3 ? 0x800 : 0x10000;
    if (next.need > 0) {
        // The code point is still open: its possible values form one interval. Keep the stacks
        // as they are if some stack can take a code point in it.
        const int rest = 6 * next.need;
        const uint32_t lo = std::max(next.cp << rest, min_cp);
        const uint32_t hi = std::min((next.cp << rest) | ((1u << rest) - 1), kMaxCodePoint);
        if (lo > hi || (lo >= 0xD800 && hi <= 0xDFFF)) return false;  // surrogates are not characters
        bool any = false;
        for (uint32_t k = cur.heads_begin; k < cur.heads_end && !any; ++k) {
            const int32_t h = heads_[k];
            if (h != kAccept) any = can_take(frames_[h].pos, frames_[h].count, nullptr, frames_[h].parent, lo, hi);
        }
        if (!any) return false;
        levels_.push_back(next);  // same heads range as the level below
        return true;
    }
    if (next.len > 0) {
        if (cp < min_cp || cp > kMaxCodePoint || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
        next.cp = 0;
        next.len = 0;
    }
    // A whole code point: advance every stack.
    next.heads_begin = static_cast<uint32_t>(heads_.size());
    take_floor_ = next.frames_before;
    for (uint32_t k = cur.heads_begin; k < cur.heads_end; ++k) {
        const int32_t h = heads_[k];
        if (h == kAccept) continue;
        take(frames_[h].pos, frames_[h].parent, h, frames_[h].count, cp, next.heads_begin);
    }
    next.heads_end = static_cast<uint32_t>(heads_.size());
    if (next.heads_end == next.heads_begin) {
        frames_.resize(next.frames_before);
        heads_.resize(next.heads_before);
        return false;
    }
    levels_.push_back(next);
    return true;
}

void GrammarMatcher::pop() {
    if (levels_.size() <= 1) return;
    const Level top = levels_.back();
    levels_.pop_back();
    frames_.resize(top.frames_before);
    heads_.resize(top.heads_before);
}

void GrammarMatcher::commit() {
    if (levels_.size() > 1) {
        Level top = levels_.back();
        std::vector<int32_t> heads(heads_.begin() + top.heads_begin, heads_.begin() + top.heads_end);
        heads_ = std::move(heads);
        top.heads_begin = 0;
        top.heads_end = static_cast<uint32_t>(heads_.size());
        top.heads_before = 0;
        top.frames_before = 0;
        levels_.assign(1, top);
    }
    if (frames_.size() >= compact_at_) compact();
}

// Drops frames no committed stack reaches (garbage from rejected paths and finished calls).
void GrammarMatcher::compact() {
    std::vector<int32_t> remap(frames_.size(), -1);
    std::vector<Frame> kept;
    // Parents always have smaller ids than their children, so one pass from each head upward
    // marks, and ascending order keeps parents before children.
    std::vector<char> live(frames_.size(), 0);
    for (int32_t h : heads_)
        for (int32_t f = h; f >= 0 && !live[f]; f = frames_[f].parent) live[f] = 1;
    for (size_t f = 0; f < frames_.size(); ++f) {
        if (!live[f]) continue;
        const int32_t p = frames_[f].parent;
        remap[f] = static_cast<int32_t>(kept.size());
        kept.push_back({frames_[f].pos, p < 0 ? p : remap[p], frames_[f].count});
    }
    for (int32_t& h : heads_)
        if (h >= 0) h = remap[h];
    frames_ = std::move(kept);
    compact_at_ = std::max<size_t>(1 << 16, frames_.size() * 4);
    ++generation_;
}

bool GrammarMatcher::accept(std::string_view bytes) {
    const size_t base = n_pushed();
    for (char c : bytes) {
        if (!push_byte(static_cast<uint8_t>(c))) {
            while (n_pushed() > base) pop();
            return false;
        }
    }
    commit();
    return true;
}

bool GrammarMatcher::can_end() const {
    const Level& cur = levels_.back();
    if (cur.need != 0) return false;
    for (uint32_t k = cur.heads_begin; k < cur.heads_end; ++k) {
        const int32_t h = heads_[k];
        if (h == kAccept || can_end_from(frames_[h].pos, frames_[h].count, frames_[h].parent)) return true;
    }
    return false;
}

bool GrammarMatcher::can_continue() const {
    const Level& cur = levels_.back();
    if (cur.need != 0) return true;
    for (uint32_t k = cur.heads_begin; k < cur.heads_end; ++k) {
        const int32_t h = heads_[k];
        if (h != kAccept && can_take(frames_[h].pos, frames_[h].count, nullptr, frames_[h].parent, 0, kMaxCodePoint)) return true;
    }
    return false;
}

bool GrammarMatcher::is_complete() const { return can_end() && !can_continue(); }

size_t GrammarMatcher::n_stacks() const { return levels_.back().heads_end - levels_.back().heads_begin; }

void GrammarMatcher::state_key(std::vector<uint32_t>& out) const {
    const Level& cur = levels_.back();
    out.clear();
    out.push_back(cur.cp);
    out.push_back(static_cast<uint32_t>(cur.need) << 8 | cur.len);
    const size_t begin = out.size();
    for (uint32_t k = cur.heads_begin; k < cur.heads_end; ++k) out.push_back(static_cast<uint32_t>(heads_[k]));
    std::sort(out.begin() + static_cast<std::ptrdiff_t>(begin), out.end());
}

}  // namespace hearth::chat
