// Python's str, list and dict methods as chat templates call them ("a b".split(), d.get(k),
// '<|{}|>'.format(x), ...), with the immutable sandbox's refusals of mutating methods.
#include <algorithm>
#include <cctype>
#include <cstring>

#include "chat/jinja_args.h"
#include "chat/jinja_builtins.h"
#include "chat/jinja_interpreter.h"
#include "chat/jinja_pystr.h"

namespace hearth::chat::jinja {
namespace {

// str.format with positional/keyword fields, !r/!s and a small spec subset (fill, align, width,
// precision, s/d/f), which is what chat templates use.
std::string py_format(const std::string& fmt, const CallArgs& args) {
    std::string out;
    size_t auto_index = 0;
    for (size_t i = 0; i < fmt.size(); ++i) {
        const char c = fmt[i];
        if (c == '}') {
            if (i + 1 >= fmt.size() || fmt[i + 1] != '}') throw_error("ValueError", "Single '}' encountered in format string");
            ++i;
            out.push_back('}');
            continue;
        }
        if (c != '{') {
            out.push_back(c);
            continue;
        }
        if (i + 1 < fmt.size() && fmt[i + 1] == '{') {
            out.push_back('{');
            ++i;
            continue;
        }
        const size_t close = fmt.find('}', i);
        if (close == std::string::npos) throw_error("ValueError", "Single '{' encountered in format string");
        std::string field = fmt.substr(i + 1, close - i - 1), spec, conv;
        i = close;
        if (const size_t colon = field.find(':'); colon != std::string::npos) {
            spec = field.substr(colon + 1);
            field.resize(colon);
        }
        if (const size_t bang = field.find('!'); bang != std::string::npos) {
            conv = field.substr(bang + 1);
            field.resize(bang);
        }
        Value v;
        if (field.empty() || std::isdigit(static_cast<unsigned char>(field[0]))) {
            const size_t idx = field.empty() ? auto_index++ : size_t(std::stoul(field));
            if (idx >= args.positional.size()) throw_error("IndexError", "Replacement index " + std::to_string(idx) + " out of range for positional args tuple");
            v = args.positional[idx];
        } else {
            const Value* kw = args.kwarg(field);
            if (!kw) throw_error("KeyError", "'" + field + "'");
            v = *kw;
        }
        std::string text;
        if (conv == "r") text = repr(v);
        else if (!spec.empty() && spec.back() == 'f' && v.is_number()) {
            const size_t dot = spec.find('.');
            const int prec = dot == std::string::npos ? 6 : std::atoi(spec.c_str() + dot + 1);
            text = strformat("%.*f", prec, v.number());
            spec = spec.substr(0, dot == std::string::npos ? spec.size() - 1 : dot);
        } else text = to_str(v);
        // [[fill]align][width]
        char fill = ' ', align = v.is_number() ? '>' : '<';
        size_t p = 0;
        if (spec.size() >= 2 && std::strchr("<>^", spec[1])) {
            fill = spec[0];
            align = spec[1];
            p = 2;
        } else if (!spec.empty() && std::strchr("<>^", spec[0])) {
            align = spec[0];
            p = 1;
        }
        const size_t width = size_t(std::atoi(spec.c_str() + p));
        const size_t len = py::length(text);
        if (width > len) {
            const size_t pad = width - len;
            if (align == '<') text += std::string(pad, fill);
            else if (align == '>') text = std::string(pad, fill) + text;
            else text = std::string(pad / 2, fill) + text + std::string(pad - pad / 2, fill);
        }
        out += text;
    }
    return out;
}

bool starts_or_ends(const Value& self, const Value& arg_v, bool ends) {
    auto one = [&](const Value& p) {
        if (!p.is_string()) type_error(std::string(ends ? "endswith" : "startswith") + " first arg must be str or a tuple of str, not " + p.type_name());
        const std::string& s = self.str();
        const std::string& x = p.str();
        if (x.size() > s.size()) return false;
        return ends ? s.compare(s.size() - x.size(), x.size(), x) == 0 : s.compare(0, x.size(), x) == 0;
    };
    if (arg_v.is_tuple()) {
        for (const Value& p : arg_v.items())
            if (one(p)) return true;
        return false;
    }
    return one(arg_v);
}

bool str_predicate(const std::string& s, bool (*pred)(char32_t)) {
    const std::u32string u = py::decode(s);
    if (u.empty()) return false;
    for (char32_t c : u)
        if (!pred(c)) return false;
    return true;
}

}  // namespace

Value str_method(const Value& self, const std::string& name) {
    static const char* const kNames[] = {
        "upper", "lower", "title", "capitalize", "strip", "lstrip", "rstrip", "split", "rsplit", "splitlines",
        "startswith", "endswith", "replace", "find", "rfind", "index", "rindex", "count", "join", "format",
        "isdigit", "isalpha", "isalnum", "isspace", "isupper", "islower", "isnumeric", "isdecimal", "zfill",
        "center", "ljust", "rjust", "removeprefix", "removesuffix", "casefold", "swapcase", "partition", "rpartition"};
    bool known = false;
    for (const char* n : kNames) known |= name == n;
    if (!known) return Value::undefined("'str object' has no attribute '" + name + "'");
    return bound(name, [self, name](Interpreter& in, const CallArgs& a) -> Value {
        const std::string& s = self.str();
        if (name == "upper") return str_like(self, py::upper(s));
        if (name == "lower" || name == "casefold") return str_like(self, py::lower(s));
        if (name == "title") return str_like(self, py::title(s));
        if (name == "capitalize") return str_like(self, py::capitalize(s));
        if (name == "swapcase") {
            std::string out;
            for (char32_t c : py::decode(s)) py::append_utf8(out, py::is_upper(c) ? py::to_lower(c) : py::to_upper(c));
            return str_like(self, out);
        }
        if (name == "strip" || name == "lstrip" || name == "rstrip")
            return str_like(self, py::strip(s, arg_str(a, 0, "chars"), name != "rstrip", name != "lstrip"));
        if (name == "split" || name == "rsplit") {
            const auto sep = arg_str(a, 0, "sep");
            if (sep && sep->empty()) throw_error("ValueError", "empty separator");
            List out;
            for (auto& part : py::split(s, sep, arg_int(a, 1, "maxsplit", -1), name == "rsplit")) out.push_back(str_like(self, std::move(part)));
            return Value::list(std::move(out));
        }
        if (name == "splitlines") {
            List out;
            for (auto& part : py::splitlines(s, arg_bool(a, 0, "keepends", false))) out.push_back(str_like(self, std::move(part)));
            return Value::list(std::move(out));
        }
        if (name == "startswith" || name == "endswith") {
            const Value* p = arg(a, 0, "prefix");
            if (!p) type_error(name + "() takes at least 1 argument (0 given)");
            return Value(starts_or_ends(self, *p, name == "endswith"));
        }
        if (name == "replace") {
            const auto old = arg_str(a, 0, "old"), repl = arg_str(a, 1, "new");
            if (!old || !repl) type_error("replace() takes at least 2 arguments");
            // Markup.replace escapes plain-string arguments.
            auto escaped = [&](size_t i, const std::string& x) {
                const bool plain = i < a.positional.size() && !a.positional[i].is_markup();
                return self.is_markup() && plain ? py::html_escape(x) : x;
            };
            std::string out = py::replace(s, escaped(0, *old), escaped(1, *repl), arg_int(a, 2, "count", -1));
            in.check_size(out.size());
            return str_like(self, std::move(out));
        }
        if (name == "find" || name == "rfind" || name == "index" || name == "rindex") {
            const auto sub = arg_str(a, 0, "sub");
            if (!sub) type_error(name + "() takes at least 1 argument (0 given)");
            const int64_t r = py::find(s, *sub, name[0] == 'r');
            if (r < 0 && name.find("index") != std::string::npos) throw_error("ValueError", "substring not found");
            return Value(r);
        }
        if (name == "count") {
            const auto sub = arg_str(a, 0, "sub");
            if (!sub) type_error("count() takes at least 1 argument (0 given)");
            return Value(py::count(s, *sub));
        }
        if (name == "join") {
            const Value* seq = arg(a, 0, "iterable");
            if (!seq) type_error("join() takes exactly one argument (0 given)");
            std::string out;
            bool first = true;
            for (const Value& item : iterate(*seq)) {
                if (!item.is_string()) type_error("sequence item: expected str instance, " + item.type_name() + " found");
                if (!first) out += s;
                out += self.is_markup() && !item.is_markup() ? py::html_escape(item.str()) : item.str();
                first = false;
            }
            in.check_size(out.size());
            return str_like(self, std::move(out));
        }
        if (name == "format") {
            CallArgs escaped = a;
            if (self.is_markup())
                for (Value& v : escaped.positional)
                    if (!v.is_markup()) v = Value(py::html_escape(to_str(v)), true);
            std::string out = py_format(s, escaped);
            in.check_size(out.size());
            return str_like(self, std::move(out));
        }
        if (name == "isdigit" || name == "isdecimal" || name == "isnumeric") return Value(str_predicate(s, py::is_digit));
        if (name == "isalpha") return Value(str_predicate(s, py::is_alpha));
        if (name == "isalnum") return Value(str_predicate(s, py::is_alnum));
        if (name == "isspace") return Value(str_predicate(s, py::is_space));
        if (name == "isupper" || name == "islower") {
            bool cased = false;
            for (char32_t c : py::decode(s)) {
                if (name == "isupper" ? py::is_lower(c) : py::is_upper(c)) return Value(false);
                cased |= py::is_upper(c) || py::is_lower(c);
            }
            return Value(cased);
        }
        if (name == "removeprefix" || name == "removesuffix") {
            const auto x = arg_str(a, 0, "prefix").value_or("");
            const bool pre = name == "removeprefix";
            if (starts_or_ends(self, Value(x), !pre)) return str_like(self, pre ? s.substr(x.size()) : s.substr(0, s.size() - x.size()));
            return self;
        }
        if (name == "partition" || name == "rpartition") {
            const auto sep = arg_str(a, 0, "sep").value_or("");
            if (sep.empty()) throw_error("ValueError", "empty separator");
            const size_t f = name == "partition" ? s.find(sep) : s.rfind(sep);
            if (f == std::string::npos)
                return name == "partition" ? Value::list({self, Value(""), Value("")}, ListKind::tuple)
                                           : Value::list({Value(""), Value(""), self}, ListKind::tuple);
            return Value::list({Value(s.substr(0, f)), Value(sep), Value(s.substr(f + sep.size()))}, ListKind::tuple);
        }
        // zfill / center / ljust / rjust
        const int64_t width = arg_int(a, 0, "width", 0);
        const auto fillstr = arg_str(a, 1, "fillchar");
        const std::string fill = fillstr ? *fillstr : std::string(name == "zfill" ? "0" : " ");
        const int64_t len = int64_t(py::length(s));
        if (width <= len) return self;
        in.check_size(size_t(width) * fill.size());
        const int64_t pad = width - len;
        auto rep = [&](int64_t n) {
            std::string r;
            for (int64_t i = 0; i < n; ++i) r += fill;
            return r;
        };
        if (name == "ljust") return str_like(self, s + rep(pad));
        if (name == "rjust") return str_like(self, rep(pad) + s);
        if (name == "zfill") {
            if (!s.empty() && (s[0] == '-' || s[0] == '+')) return Value(s.substr(0, 1) + rep(pad) + s.substr(1));
            return Value(rep(pad) + s);
        }
        const int64_t left = pad / 2 + (pad & width & 1);
        return str_like(self, rep(left) + s + rep(pad - left));
    });
}

Value unsafe_attr(const Value& obj, const std::string& name) {
    return Value::undefined("access to attribute '" + name + "' of '" + obj.type_name() + "' object is unsafe.", "SecurityError");
}

Value list_method(const Value& self, const std::string& name) {
    static const char* const kMutating[] = {"append", "pop", "insert", "extend", "remove", "clear", "sort", "reverse"};
    for (const char* n : kMutating)
        if (name == n && !self.is_tuple()) return unsafe_attr(self, name);
    if (name == "index" || name == "count") {
        return bound(name, [self, name](Interpreter&, const CallArgs& a) -> Value {
            const Value* x = arg(a, 0, "value");
            if (!x) type_error(name + "() takes exactly one argument (0 given)");
            int64_t n = 0;
            for (size_t i = 0; i < self.items().size(); ++i) {
                if (!py_eq(self.items()[i], *x)) continue;
                if (name == "index") return Value(int64_t(i));
                ++n;
            }
            if (name == "index") throw_error("ValueError", repr(*x) + " is not in list");
            return Value(n);
        });
    }
    if (name == "copy" && !self.is_tuple()) return bound(name, [self](Interpreter&, const CallArgs&) { return Value::list(self.items()); });
    return Value::undefined(std::string("'").append(self.type_name()).append(" object' has no attribute '").append(name).append("'"));
}

Value dict_method(const Value& self, const std::string& name) {
    if (name == "items" || name == "keys" || name == "values") {
        return bound(name, [self, name](Interpreter&, const CallArgs&) {
            List out;
            for (const auto& [k, v] : self.dict().entries) {
                if (name == "items") out.push_back(Value::list({k, v}, ListKind::tuple));
                else out.push_back(name == "keys" ? k : v);
            }
            return Value::list(std::move(out));
        });
    }
    if (name == "get") {
        return bound(name, [self](Interpreter&, const CallArgs& a) -> Value {
            const Value* key = arg(a, 0, "key");
            if (!key) type_error("get expected at least 1 argument, got 0");
            const Value* found = self.dict().find(*key);
            if (found) return *found;
            const Value* def = arg(a, 1, "default");
            return def ? *def : Value::none();
        });
    }
    if (name == "copy") return bound(name, [self](Interpreter&, const CallArgs&) { return Value::dict(self.dict()); });
    static const char* const kMutating[] = {"update", "pop", "popitem", "setdefault", "clear"};
    for (const char* n : kMutating)
        if (name == n) return unsafe_attr(self, name);
    return Value();  // not a method: the caller looks the key up
}

}  // namespace hearth::chat::jinja
