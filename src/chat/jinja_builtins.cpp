#include "chat/jinja_builtins.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <ctime>
#include <map>
#include <optional>
#include <utility>

#include "chat/jinja_args.h"
#include "chat/jinja_interpreter.h"
#include "chat/jinja_pystr.h"

namespace hearth::chat::jinja {
namespace {

size_t py_len(const Value& v) {
    switch (v.kind()) {
    case Kind::string: return py::length(v.str());
    case Kind::list:
        if (v.is_generator()) break;
        return v.items().size();
    case Kind::dict: return v.dict().entries.size();
    case Kind::undefined: return 0;
    default: break;
    }
    type_error("object of type '" + v.type_name() + "' has no len()");
}

// jinja2's make_attrgetter: "a.b.0" walks attributes/items; integer parts index.
Value attr_path(const Value& item, const std::string& path) {
    Value v = item;
    size_t start = 0;
    while (true) {
        const size_t dot = path.find('.', start);
        const std::string part = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
        const bool numeric = !part.empty() && std::all_of(part.begin(), part.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); });
        if (v.is_undefined()) fail_undefined(v);
        v = numeric ? get_item(v, Value(int64_t(std::stoll(part)))) : get_item(v, Value(part));
        if (dot == std::string::npos) return v;
        start = dot + 1;
    }
}

// Sort key for sort/dictsort/unique/min/max: strings lower-cased unless case_sensitive.
Value sort_key(const Value& v, bool case_sensitive) {
    if (v.is_string() && !case_sensitive) return Value(py::lower(v.str()));
    return v;
}

List select_items(Interpreter& in, const Value& seq, const CallArgs& a, bool by_attr, bool select) {
    // by_attr: (attr, [test, args...]); else ([test, args...])
    size_t next_pos = 0;
    std::string attr;
    if (by_attr) {
        if (a.positional.empty()) type_error("Missing parameter for attribute name");
        attr = to_str(a.positional[0]);
        next_pos = 1;
    }
    std::optional<std::string> test;
    CallArgs test_args;
    if (next_pos < a.positional.size()) {
        test = to_str(a.positional[next_pos]);
        test_args.positional.assign(a.positional.begin() + long(next_pos) + 1, a.positional.end());
        test_args.keyword = a.keyword;
        if (!has_test(*test)) throw_error("TemplateRuntimeError", "No test named '" + *test + "'.");
    }
    List out;
    if (!seq.truthy()) return out;  // jinja2: `if value:` before iterating, so None selects nothing
    for (const Value& item : iterate(seq)) {
        const Value v = by_attr ? attr_path(item, attr) : item;
        const bool ok = test ? apply_test(in, *test, v, test_args) : v.truthy();
        if (ok == select) out.push_back(item);
    }
    return out;
}

std::string do_title(const std::string& s) {
    // jinja2: re.split(r"([-\s({\[<]+)") then upper-case each piece's first char, lower the rest.
    std::string out;
    bool word_start = true;
    for (char32_t c : py::decode(s)) {
        const bool sep = c == '-' || c == '(' || c == '{' || c == '[' || c == '<' || py::is_space(c);
        if (sep) {
            py::append_utf8(out, c);
            word_start = true;
        } else {
            py::append_utf8(out, word_start ? py::to_upper(c) : py::to_lower(c));
            word_start = false;
        }
    }
    return out;
}

Value do_indent(const Value& v, const CallArgs& a) {
    const Value s = soft_str(v);
    std::string indention;
    const Value* w = arg(a, 0, "width");
    if (w && w->is_string()) indention = w->str();
    else indention = std::string(size_t(std::max<int64_t>(0, arg_int(a, 0, "width", 4))), ' ');
    const bool first = arg_bool(a, 1, "first", false), blank = arg_bool(a, 2, "blank", false);
    const std::vector<std::string> lines = py::splitlines(s.str() + "\n", false);
    std::string rv;
    if (blank) {
        for (size_t i = 0; i < lines.size(); ++i) rv += (i ? "\n" + indention : "") + lines[i];
    } else {
        rv = lines.empty() ? "" : lines[0];
        for (size_t i = 1; i < lines.size(); ++i) rv += "\n" + (lines[i].empty() ? lines[i] : indention + lines[i]);
    }
    if (first) rv = indention + rv;
    return str_like(s, rv);
}

Value do_tojson(const Value& v, const CallArgs& a) {
    JsonDumpOptions opt;
    opt.ensure_ascii = arg_bool(a, 0, "ensure_ascii", false);
    const Value* indent = arg(a, 1, "indent");
    if (indent && !indent->is_none()) {
        opt.has_indent = true;
        if (indent->is_string()) opt.indent = indent->str();
        else opt.indent = std::string(size_t(std::max<int64_t>(0, indent->int_value())), ' ');
    }
    opt.item_sep = opt.has_indent ? "," : ", ";
    const Value* seps = arg(a, 2, "separators");
    if (seps && !seps->is_none()) {
        const List parts = iterate(*seps);
        if (parts.size() != 2 || !parts[0].is_string() || !parts[1].is_string()) type_error("separators must be a pair of strings");
        opt.item_sep = parts[0].str();
        opt.key_sep = parts[1].str();
    }
    opt.sort_keys = arg_bool(a, 3, "sort_keys", false);
    return Value(json_dumps(v, opt));
}

Value do_int(const Value& v, const CallArgs& a) {
    const Value* def = arg(a, 0, "default");
    const Value fallback = def ? *def : Value(int64_t(0));
    if (v.is_int()) return v;
    if (v.is_bool()) return Value(v.int_value());
    if (v.is_float()) return std::isfinite(v.number()) ? Value(int64_t(std::trunc(v.number()))) : fallback;
    if (v.is_string()) {
        std::string s = py::strip(v.str(), std::nullopt, true, true);
        s.erase(std::remove(s.begin(), s.end(), '_'), s.end());
        const int base = int(arg_int(a, 1, "base", 10));
        char* end = nullptr;
        errno = 0;
        const long long r = std::strtoll(s.c_str(), &end, base);
        if (!s.empty() && end && *end == '\0' && errno == 0) return Value(int64_t(r));
        const double f = std::strtod(s.c_str(), &end);
        if (!s.empty() && end && *end == '\0' && std::isfinite(f)) return Value(int64_t(std::trunc(f)));
    }
    return fallback;
}

Value do_float(const Value& v, const CallArgs& a) {
    const Value* def = arg(a, 0, "default");
    if (v.is_number()) return Value(v.number());
    if (v.is_string()) {
        const std::string s = py::strip(v.str(), std::nullopt, true, true);
        char* end = nullptr;
        const double f = std::strtod(s.c_str(), &end);
        if (!s.empty() && end && *end == '\0') return Value(f);
    }
    return def ? *def : Value(0.0);
}

List sorted_items(List items, bool reverse, bool case_sensitive, const std::optional<std::string>& attr) {
    std::vector<std::pair<Value, Value>> keyed;
    for (Value& v : items) keyed.emplace_back(sort_key(attr ? attr_path(v, *attr) : v, case_sensitive), std::move(v));
    std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& x, const auto& y) {
        return reverse ? py_lt(y.first, x.first) : py_lt(x.first, y.first);
    });
    List out;
    for (auto& kv : keyed) out.push_back(std::move(kv.second));
    return out;
}

using FilterFn = Value (*)(Interpreter&, const Value&, const CallArgs&);

const std::map<std::string, FilterFn>& filters() {
    static const std::map<std::string, FilterFn> kFilters = {
        {"tojson", [](Interpreter&, const Value& v, const CallArgs& a) { return do_tojson(v, a); }},
        {"length", [](Interpreter&, const Value& v, const CallArgs&) { return Value(int64_t(py_len(v))); }},
        {"count", [](Interpreter&, const Value& v, const CallArgs&) { return Value(int64_t(py_len(v))); }},
        {"string", [](Interpreter&, const Value& v, const CallArgs&) { return soft_str(v); }},
        {"safe", [](Interpreter&, const Value& v, const CallArgs&) { return Value(to_str(v), true); }},
        {"escape", [](Interpreter&, const Value& v, const CallArgs&) { return v.is_markup() ? v : Value(py::html_escape(to_str(v)), true); }},
        {"e", [](Interpreter&, const Value& v, const CallArgs&) { return v.is_markup() ? v : Value(py::html_escape(to_str(v)), true); }},
        {"trim", [](Interpreter&, const Value& v, const CallArgs& a) {
             const Value s = soft_str(v);
             return str_like(s, py::strip(s.str(), arg_str(a, 0, "chars"), true, true));
         }},
        {"lower", [](Interpreter&, const Value& v, const CallArgs&) { const Value s = soft_str(v); return str_like(s, py::lower(s.str())); }},
        {"upper", [](Interpreter&, const Value& v, const CallArgs&) { const Value s = soft_str(v); return str_like(s, py::upper(s.str())); }},
        {"capitalize", [](Interpreter&, const Value& v, const CallArgs&) { const Value s = soft_str(v); return str_like(s, py::capitalize(s.str())); }},
        {"title", [](Interpreter&, const Value& v, const CallArgs&) { const Value s = soft_str(v); return str_like(s, do_title(s.str())); }},
        {"replace", [](Interpreter& in, const Value& v, const CallArgs& a) {
             const Value* old = arg(a, 0, "old");
             const Value* repl = arg(a, 1, "new");
             if (!old || !repl) type_error("do_replace() missing required arguments 'old' and 'new'");
             std::string out = py::replace(to_str(v), to_str(*old), to_str(*repl), arg_int(a, 2, "count", -1));
             in.check_size(out.size());
             return Value(std::move(out));
         }},
        {"default", [](Interpreter&, const Value& v, const CallArgs& a) {
             const Value* def = arg(a, 0, "default_value");
             const bool boolean = arg_bool(a, 1, "boolean", false);
             if (v.is_undefined() || (boolean && !v.truthy())) return def ? *def : Value("");
             return v;
         }},
        {"join", [](Interpreter& in, const Value& v, const CallArgs& a) {
             const Value* sep = arg(a, 0, "d");
             const auto attr = arg_str(a, 1, "attribute");
             std::string out;
             bool first = true;
             for (const Value& item : iterate(v)) {
                 if (!first && sep) out += to_str(*sep);
                 out += to_str(attr ? attr_path(item, *attr) : item);
                 first = false;
                 in.check_size(out.size());
             }
             return Value(std::move(out));
         }},
        {"items", [](Interpreter&, const Value& v, const CallArgs&) {
             if (v.is_undefined()) return make_generator({});
             if (!v.is_dict()) type_error("Can only get item pairs from a mapping.");
             List out;
             for (const auto& [k, x] : v.dict().entries) out.push_back(Value::list({k, x}, ListKind::tuple));
             return make_generator(std::move(out));
         }},
        {"dictsort", [](Interpreter&, const Value& v, const CallArgs& a) {
             if (!v.is_dict()) throw_error("AttributeError", "'" + v.type_name() + "' object has no attribute 'items'");
             const bool cs = arg_bool(a, 0, "case_sensitive", false);
             const std::string by = arg_str(a, 1, "by").value_or("key");
             const bool reverse = arg_bool(a, 2, "reverse", false);
             if (by != "key" && by != "value") throw_error("FilterArgumentError", "You can only sort by either \"key\" or \"value\"");
             std::vector<std::pair<Value, Value>> keyed;
             for (const auto& [k, x] : v.dict().entries) keyed.emplace_back(sort_key(by == "key" ? k : x, cs), Value::list({k, x}, ListKind::tuple));
             std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& p, const auto& q) { return reverse ? py_lt(q.first, p.first) : py_lt(p.first, q.first); });
             List out;
             for (auto& kv : keyed) out.push_back(std::move(kv.second));
             return Value::list(std::move(out));
         }},
        {"list", [](Interpreter&, const Value& v, const CallArgs&) { return Value::list(iterate(v)); }},
        {"first", [](Interpreter&, const Value& v, const CallArgs&) {
             const List items = iterate(v);
             return items.empty() ? Value::undefined("No first item, sequence was empty.") : items.front();
         }},
        {"last", [](Interpreter&, const Value& v, const CallArgs&) {
             if (v.is_generator()) type_error("'generator' object is not reversible");
             const List items = iterate(v);
             return items.empty() ? Value::undefined("No last item, sequence was empty.") : items.back();
         }},
        {"reverse", [](Interpreter&, const Value& v, const CallArgs&) {
             if (v.is_string()) {
                 std::u32string u = py::decode(v.str());
                 std::reverse(u.begin(), u.end());
                 return str_like(v, py::encode(u));
             }
             List items = iterate(v);
             std::reverse(items.begin(), items.end());
             return make_generator(std::move(items));
         }},
        {"sort", [](Interpreter&, const Value& v, const CallArgs& a) {
             return Value::list(sorted_items(iterate(v), arg_bool(a, 0, "reverse", false), arg_bool(a, 1, "case_sensitive", false), arg_str(a, 2, "attribute")));
         }},
        {"unique", [](Interpreter&, const Value& v, const CallArgs& a) {
             const bool cs = arg_bool(a, 0, "case_sensitive", false);
             const auto attr = arg_str(a, 1, "attribute");
             List out, seen;
             for (const Value& item : iterate(v)) {
                 const Value key = sort_key(attr ? attr_path(item, *attr) : item, cs);
                 if (contains(Value::list(seen), key)) continue;
                 seen.push_back(key);
                 out.push_back(item);
             }
             return make_generator(std::move(out));
         }},
        {"min", [](Interpreter&, const Value& v, const CallArgs& a) {
             const List s = sorted_items(iterate(v), false, arg_bool(a, 0, "case_sensitive", false), arg_str(a, 1, "attribute"));
             return s.empty() ? Value::undefined("No aggregated item, sequence was empty.") : s.front();
         }},
        {"max", [](Interpreter&, const Value& v, const CallArgs& a) {
             const List s = sorted_items(iterate(v), true, arg_bool(a, 0, "case_sensitive", false), arg_str(a, 1, "attribute"));
             return s.empty() ? Value::undefined("No aggregated item, sequence was empty.") : s.front();
         }},
        {"sum", [](Interpreter& in, const Value& v, const CallArgs& a) {
             const auto attr = arg_str(a, 0, "attribute");
             const Value* start = arg(a, 1, "start");
             Value total = start ? *start : Value(int64_t(0));
             for (const Value& item : iterate(v)) {
                 const Value x = attr ? attr_path(item, *attr) : item;
                 if (!total.is_number() || !x.is_number()) type_error("unsupported operand type(s) for +: '" + total.type_name() + "' and '" + x.type_name() + "'");
                 total = total.is_float() || x.is_float() ? Value(total.number() + x.number()) : Value(total.int_value() + x.int_value());
                 in.count_steps(1);
             }
             return total;
         }},
        {"abs", [](Interpreter&, const Value& v, const CallArgs&) {
             if (!v.is_number()) type_error("bad operand type for abs(): '" + v.type_name() + "'");
             return v.is_float() ? Value(std::fabs(v.number())) : Value(int64_t(std::llabs(v.int_value())));
         }},
        {"round", [](Interpreter&, const Value& v, const CallArgs& a) {
             const int64_t precision = arg_int(a, 0, "precision", 0);
             const std::string method = arg_str(a, 1, "method").value_or("common");
             const double m = std::pow(10.0, double(precision)), x = v.number() * m;
             // Python's round() rounds half to even.
             double r = method == "ceil" ? std::ceil(x) : method == "floor" ? std::floor(x) : std::nearbyint(x);
             return Value(r / m);
         }},
        {"int", [](Interpreter&, const Value& v, const CallArgs& a) { return do_int(v, a); }},
        {"float", [](Interpreter&, const Value& v, const CallArgs& a) { return do_float(v, a); }},
        {"indent", [](Interpreter&, const Value& v, const CallArgs& a) { return do_indent(v, a); }},
        {"center", [](Interpreter& in, const Value& v, const CallArgs& a) {
             CallArgs w;
             w.positional.push_back(Value(arg_int(a, 0, "width", 80)));
             return in.call(str_method(soft_str(v), "center"), w);
         }},
        {"batch", [](Interpreter&, const Value& v, const CallArgs& a) {
             const int64_t n = arg_int(a, 0, "linecount", 0);
             if (n <= 0) throw_error("ValueError", "batch size must be positive");
             const Value* fill = arg(a, 1, "fill_with");
             List out, cur;
             for (const Value& item : iterate(v)) {
                 cur.push_back(item);
                 if (int64_t(cur.size()) == n) out.push_back(Value::list(std::exchange(cur, {})));
             }
             if (!cur.empty()) {
                 if (fill && !fill->is_none())
                     while (int64_t(cur.size()) < n) cur.push_back(*fill);
                 out.push_back(Value::list(std::move(cur)));
             }
             return make_generator(std::move(out));
         }},
        {"wordcount", [](Interpreter&, const Value& v, const CallArgs&) { return Value(int64_t(py::split(to_str(v), std::nullopt, -1, false).size())); }},
        {"selectattr", [](Interpreter& in, const Value& v, const CallArgs& a) { return make_generator(select_items(in, v, a, true, true)); }},
        {"rejectattr", [](Interpreter& in, const Value& v, const CallArgs& a) { return make_generator(select_items(in, v, a, true, false)); }},
        {"select", [](Interpreter& in, const Value& v, const CallArgs& a) { return make_generator(select_items(in, v, a, false, true)); }},
        {"reject", [](Interpreter& in, const Value& v, const CallArgs& a) { return make_generator(select_items(in, v, a, false, false)); }},
        {"map", [](Interpreter& in, const Value& v, const CallArgs& a) {
             List out;
             if (!v.truthy()) return make_generator({});  // jinja2: `if value:` first
             if (a.positional.empty()) {
                 const auto attr = arg_str(a, 99, "attribute");
                 if (!attr) return make_generator({});
                 const Value* def = a.kwarg("default");
                 for (const Value& item : iterate(v)) {
                     Value x = attr_path(item, *attr);
                     out.push_back(x.is_undefined() && def ? *def : x);
                 }
             } else {
                 const std::string name = to_str(a.positional[0]);
                 if (!has_filter(name)) throw_error("TemplateRuntimeError", "No filter named '" + name + "'.");
                 CallArgs rest;
                 rest.positional.assign(a.positional.begin() + 1, a.positional.end());
                 rest.keyword = a.keyword;
                 for (const Value& item : iterate(v)) out.push_back(apply_filter(in, name, item, rest));
             }
             return make_generator(std::move(out));
         }},
        {"attr", [](Interpreter&, const Value& v, const CallArgs& a) {
             const auto name = arg_str(a, 0, "name").value_or("");
             if (v.is_dict()) { Value m = dict_method(v, name); return m.is_undefined() && m.hint().empty() ? Value::undefined("'dict object' has no attribute '" + name + "'") : m; }
             return get_attr(v, name);
         }},
    };
    return kFilters;
}

bool is_iterable(const Value& v) {
    return v.is_string() || v.is_list() || v.is_dict() || v.is_undefined();
}

using TestFn = bool (*)(Interpreter&, const Value&, const CallArgs&);

const Value& test_arg(const CallArgs& a, const char* test) {
    if (a.positional.empty()) type_error(std::string("test '") + test + "' takes an argument");
    return a.positional[0];
}

const std::map<std::string, TestFn>& tests() {
    static const std::map<std::string, TestFn> kTests = {
        {"defined", [](Interpreter&, const Value& v, const CallArgs&) { return !v.is_undefined(); }},
        {"undefined", [](Interpreter&, const Value& v, const CallArgs&) { return v.is_undefined(); }},
        {"none", [](Interpreter&, const Value& v, const CallArgs&) { return v.is_none(); }},
        {"boolean", [](Interpreter&, const Value& v, const CallArgs&) { return v.is_bool(); }},
        {"true", [](Interpreter&, const Value& v, const CallArgs&) { return v.is_bool() && v.bool_value(); }},
        {"false", [](Interpreter&, const Value& v, const CallArgs&) { return v.is_bool() && !v.bool_value(); }},
        {"integer", [](Interpreter&, const Value& v, const CallArgs&) { return v.is_int(); }},
        {"float", [](Interpreter&, const Value& v, const CallArgs&) { return v.is_float(); }},
        {"number", [](Interpreter&, const Value& v, const CallArgs&) { return v.is_number(); }},
        {"string", [](Interpreter&, const Value& v, const CallArgs&) { return v.is_string(); }},
        {"mapping", [](Interpreter&, const Value& v, const CallArgs&) { return v.is_dict(); }},
        {"iterable", [](Interpreter&, const Value& v, const CallArgs&) { return is_iterable(v); }},
        {"sequence", [](Interpreter&, const Value& v, const CallArgs&) { return v.is_string() || (v.is_list() && !v.is_generator()) || v.is_dict() || v.is_undefined(); }},
        {"callable", [](Interpreter&, const Value& v, const CallArgs&) { return v.is_callable() || (v.is_object() && v.obj().type == Object::Type::cycler); }},
        {"escaped", [](Interpreter&, const Value& v, const CallArgs&) { return v.is_markup(); }},
        {"lower", [](Interpreter&, const Value& v, const CallArgs&) {
             const std::string s = to_str(v);
             bool cased = false;
             for (char32_t c : py::decode(s)) {
                 if (py::is_upper(c)) return false;
                 cased |= py::is_lower(c);
             }
             return cased;
         }},
        {"upper", [](Interpreter&, const Value& v, const CallArgs&) {
             const std::string s = to_str(v);
             bool cased = false;
             for (char32_t c : py::decode(s)) {
                 if (py::is_lower(c)) return false;
                 cased |= py::is_upper(c);
             }
             return cased;
         }},
        {"odd", [](Interpreter&, const Value& v, const CallArgs&) {
             if (!v.is_int() && !v.is_bool()) type_error("not all arguments converted during string formatting");
             return (v.int_value() % 2) != 0;
         }},
        {"even", [](Interpreter&, const Value& v, const CallArgs&) {
             if (!v.is_int() && !v.is_bool()) type_error("not all arguments converted during string formatting");
             return (v.int_value() % 2) == 0;
         }},
        {"divisibleby", [](Interpreter&, const Value& v, const CallArgs& a) {
             const Value& n = test_arg(a, "divisibleby");
             if (n.number() == 0) throw_error("ZeroDivisionError", "integer division or modulo by zero");
             return std::fmod(v.number(), n.number()) == 0;
         }},
        {"sameas", [](Interpreter&, const Value& v, const CallArgs& a) {
             const Value& o = test_arg(a, "sameas");
             if (v.kind() != o.kind()) return false;
             if (v.is_none() || v.is_undefined()) return true;
             if (v.is_bool()) return v.bool_value() == o.bool_value();
             if (v.is_int()) return v.int_value() == o.int_value() && v.int_value() >= -5 && v.int_value() <= 256;
             return v.identity() == o.identity();
         }},
        {"eq", [](Interpreter&, const Value& v, const CallArgs& a) { return py_eq(v, test_arg(a, "eq")); }},
        {"ne", [](Interpreter&, const Value& v, const CallArgs& a) { return !py_eq(v, test_arg(a, "ne")); }},
        {"lt", [](Interpreter&, const Value& v, const CallArgs& a) { return py_lt(v, test_arg(a, "lt")); }},
        {"gt", [](Interpreter&, const Value& v, const CallArgs& a) { return py_lt(test_arg(a, "gt"), v); }},
        {"le", [](Interpreter&, const Value& v, const CallArgs& a) { return py_eq(v, test_arg(a, "le")) || py_lt(v, test_arg(a, "le")); }},
        {"ge", [](Interpreter&, const Value& v, const CallArgs& a) { return py_eq(v, test_arg(a, "ge")) || py_lt(test_arg(a, "ge"), v); }},
        {"in", [](Interpreter&, const Value& v, const CallArgs& a) { return contains(test_arg(a, "in"), v); }},
        {"filter", [](Interpreter&, const Value& v, const CallArgs&) { return v.is_string() && has_filter(v.str()); }},
        {"test", [](Interpreter&, const Value& v, const CallArgs&) { return v.is_string() && has_test(v.str()); }},
    };
    return kTests;
}

const std::map<std::string, std::string>& test_aliases() {
    static const std::map<std::string, std::string> kAliases = {
        {"==", "eq"}, {"equalto", "eq"}, {"!=", "ne"}, {"<", "lt"}, {"lessthan", "lt"}, {">", "gt"},
        {"greaterthan", "gt"}, {"<=", "le"}, {">=", "ge"}};
    return kAliases;
}

const std::string& canonical_test(const std::string& name) {
    auto it = test_aliases().find(name);
    return it == test_aliases().end() ? name : it->second;
}

}  // namespace

void fail_undefined(const Value& undefined) {
    throw_error(undefined.undefined_error_type(), undefined.hint().empty() ? "Undefined" : undefined.hint());
}

bool has_filter(const std::string& name) { return filters().count(name) > 0 || name == "d"; }
bool has_test(const std::string& name) { return tests().count(canonical_test(name)) > 0; }

Value apply_filter(Interpreter& in, const std::string& name, const Value& v, const CallArgs& args) {
    in.count_steps(1);
    auto it = filters().find(name == "d" ? std::string("default") : name);
    if (it == filters().end()) throw_error("TemplateRuntimeError", "No filter named '" + name + "' found.");
    return it->second(in, v, args);
}

bool apply_test(Interpreter& in, const std::string& name, const Value& v, const CallArgs& args) {
    auto it = tests().find(canonical_test(name));
    if (it == tests().end()) throw_error("TemplateRuntimeError", "No test named '" + name + "' found.");
    return it->second(in, v, args);
}

Value get_attr(const Value& obj, const std::string& name) {
    if (!name.empty() && name[0] == '_') return unsafe_attr(obj, name);
    switch (obj.kind()) {
    case Kind::string: return str_method(obj, name);
    case Kind::list:
        if (obj.is_generator()) break;
        return list_method(obj, name);
    case Kind::dict: {
        Value m = dict_method(obj, name);
        if (!m.is_undefined() || !m.hint().empty()) return m;
        const Value* v = obj.dict().find(name);
        return v ? *v : Value::undefined("'dict object' has no attribute '" + name + "'");
    }
    case Kind::object: {
        const Value* v = obj.obj().find(name);
        if (v) return *v;
        break;
    }
    case Kind::undefined: fail_undefined(obj);
    default: break;
    }
    return Value::undefined(obj.is_none() ? "'None' has no attribute '" + name + "'"
                                          : "'" + object_type_repr(obj) + "' has no attribute '" + name + "'");
}

Value get_item(const Value& obj, const Value& key) {
    const auto missing = [&]() {
        if (key.is_string()) {
            Value attr = get_attr(obj, key.str());
            if (!attr.is_undefined()) return attr;
            return Value::undefined(obj.is_none() ? "'None' has no attribute '" + key.str() + "'"
                                                  : "'" + object_type_repr(obj) + "' has no attribute '" + key.str() + "'");
        }
        return Value::undefined(object_type_repr(obj) + " has no element " + repr(key));
    };
    switch (obj.kind()) {
    case Kind::dict: {
        const Value* v = obj.dict().find(key);
        return v ? *v : missing();
    }
    case Kind::list:
    case Kind::string: {
        if (obj.is_generator() || !(key.is_int() || key.is_bool())) return missing();
        int64_t i = key.int_value();
        if (obj.is_list()) {
            const int64_t n = int64_t(obj.items().size());
            if (i < 0) i += n;
            return i >= 0 && i < n ? obj.items()[size_t(i)] : missing();
        }
        const std::u32string u = py::decode(obj.str());
        const int64_t n = int64_t(u.size());
        if (i < 0) i += n;
        if (i < 0 || i >= n) return missing();
        std::string out;
        py::append_utf8(out, u[size_t(i)]);
        return Value(std::move(out), obj.is_markup());
    }
    case Kind::undefined: fail_undefined(obj);
    default: return missing();
    }
}

List iterate(const Value& v) {
    switch (v.kind()) {
    case Kind::list: return v.items();
    case Kind::dict: {
        List keys;
        for (const auto& [k, x] : v.dict().entries) keys.push_back(k);
        return keys;
    }
    case Kind::string: {
        List chars;
        for (char32_t c : py::decode(v.str())) {
            std::string s;
            py::append_utf8(s, c);
            chars.push_back(Value(std::move(s), v.is_markup()));
        }
        return chars;
    }
    case Kind::undefined: return {};
    default: type_error("'" + v.type_name() + "' object is not iterable");
    }
}

std::vector<std::pair<std::string, Value>> make_globals() {
    std::vector<std::pair<std::string, Value>> g;
    g.emplace_back("raise_exception", bound("raise_exception", [](Interpreter&, const CallArgs& a) -> Value {
        throw_error("TemplateError", a.positional.empty() ? std::string() : to_str(a.positional[0]));
    }));
    g.emplace_back("strftime_now", bound("strftime_now", [](Interpreter& in, const CallArgs& a) -> Value {
        const auto fmt = arg_str(a, 0, "format");
        if (!fmt) type_error("strftime_now() missing required argument 'format'");
        const std::time_t t = in.now();
        std::tm tm{};
        localtime_r(&t, &tm);
        char buf[512];
        const size_t n = std::strftime(buf, sizeof buf, fmt->c_str(), &tm);
        return Value(std::string(buf, n));
    }));
    g.emplace_back("namespace", bound("namespace", [](Interpreter&, const CallArgs& a) {
        auto ns = std::make_shared<Object>();
        for (const Value& p : a.positional) {
            if (!p.is_dict()) type_error("namespace() positional argument must be a mapping");
            for (const auto& [k, v] : p.dict().entries) ns->set(to_str(k), v);
        }
        for (const auto& [k, v] : a.keyword) ns->set(k, v);
        return Value::object(std::move(ns));
    }));
    g.emplace_back("dict", bound("dict", [](Interpreter&, const CallArgs& a) {
        Dict d;
        for (const Value& p : a.positional)
            if (p.is_dict())
                for (const auto& [k, v] : p.dict().entries) d.set(k, v);
        for (const auto& [k, v] : a.keyword) d.set(Value(k), v);
        return Value::dict(std::move(d));
    }));
    g.emplace_back("range", bound("range", [](Interpreter&, const CallArgs& a) {
        int64_t start = 0, stop = 0, step = 1;
        for (const Value& p : a.positional)
            if (!p.is_int() && !p.is_bool()) type_error("'" + p.type_name() + "' object cannot be interpreted as an integer");
        if (a.positional.size() == 1) stop = a.positional[0].int_value();
        else if (a.positional.size() >= 2) {
            start = a.positional[0].int_value();
            stop = a.positional[1].int_value();
            if (a.positional.size() >= 3) step = a.positional[2].int_value();
        } else {
            type_error("range expected at least 1 argument, got 0");
        }
        if (step == 0) throw_error("ValueError", "range() arg 3 must not be zero");
        const int64_t n = step > 0 ? (stop > start ? (stop - start + step - 1) / step : 0)
                                   : (start > stop ? (start - stop - step - 1) / -step : 0);
        if (n > 100000) throw_error("OverflowError", "Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
        List out;
        for (int64_t i = 0; i < n; ++i) out.push_back(Value(start + i * step));
        return Value::list(std::move(out));
    }));
    return g;
}

}  // namespace hearth::chat::jinja
