// Unit tests of the Jinja2 subset: whitespace control, printing with Python semantics, string
// methods, filters, tests, loops, scopes, macros, errors that name the template line, and the
// limits that stop hostile templates. Expected strings were produced by Python's jinja2 with the
// Hugging Face renderer's settings (scripts/gen-template-expectations.py's environment) over the
// context of kContext.
#include <gtest/gtest.h>

#include "chat/template.h"

namespace {

using hearth::StatusCode;
using hearth::chat::ChatTemplate;
using hearth::chat::RenderOptions;

const char* const kContext = R"({
  "messages": [{"role": "user", "content": "hi"}], "s": "Hello World", "n": 3, "f": 2.5,
  "l": [3, 1, 2], "d": {"b": 1, "a": [1, {"x": null}]}, "t": true, "u8": "héllo wörld ✓", "none": null})";

struct Case {
    const char* source;
    const char* expected;
};

hearth::Result<std::string> render(const std::string& source, const std::string& context = kContext,
                                   const RenderOptions& options = {}) {
    auto t = ChatTemplate::parse(source);
    if (!t.ok()) return t.status();
    return t->render(nlohmann::ordered_json::parse(context), options);
}

void check_cases(const Case* cases, size_t n) {
    for (size_t i = 0; i < n; ++i) {
        const auto got = render(cases[i].source);
        ASSERT_TRUE(got.ok()) << cases[i].source << "\n" << got.status().message();
        EXPECT_EQ(*got, cases[i].expected) << "template: " << cases[i].source;
    }
}

const Case kWhitespaceCases[] = {
    {R"J({% if t %}
A
{% endif %}
B
)J",
     R"J(A
B)J"},
    {R"J(  {% for x in l %}
    {{ x }}
  {% endfor %}
end

)J",
     R"J(    3
    1
    2
end
)J"},
    {R"J({{- ' a ' -}}  
  {{- 'b' }}   {{ 'c' -}}   
 d)J",
     R"J( a b   cd)J"},
    {R"J({%- set x = 1 -%}

  {{ x }}  
{%- if t %}  y  {% endif -%}
)J",
     R"J(1  y  )J"},
    {R"J(text {# comment #}
{#- c2 #}  after
   {#- c3 -#}   end)J",
     R"J(text   afterend)J"},
    {R"J( 	{% if t %}tab-indented{% endif %}
	{{ 'var' }})J",
     R"J(tab-indented	var)J"},
    {R"J({%+ if t %}x{% endif %}
  {%+ if t %}y{% endif +%}
z)J",
     R"J(x  y
z)J"},
    {R"J(  {{ s }}
  {% if t %}
q{% endif %})J",
     R"J(  Hello World
q)J"},
    {R"J(a
  {% raw %}  x {{ y }}
  {% endraw %}
b)J",
     R"J(a
  x {{ y }}
b)J"},
    {R"J({% macro m() -%}
  body
{%- endmacro %}[{{ m() }}])J",
     R"J([body])J"},
    {R"J({%- for x in [1, 2] %}
  {{- x }}
{%- endfor %})J",
     R"J(12)J"},
    {R"J(x{% if t %}
y{% endif %}
z)J",
     R"J(xyz)J"},
};

const Case kPrintingCases[] = {
    {R"J({{ 1 + 1 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 2 ** 10 }} {{ 1 / 4 }} {{ 10 / 5 }} {{ 3 * 1.5 }})J",
     R"J(2 3 -4 1 2 1024 0.25 2.0 4.5)J"},
    {R"J({{ 0.1 + 0.2 }} {{ 1e20 }} {{ 1e16 }} {{ 1e15 }} {{ 1.5e-7 }} {{ 0.0001 }} {{ -0.0 }} {{ 100.0 }} {{ 1/3 }})J",
     R"J(0.30000000000000004 1e+20 1e+16 1000000000000000.0 1.5e-07 0.0001 -0.0 100.0 0.3333333333333333)J"},
    {R"J({{ none }} {{ true }} {{ false }} {{ undefined_var }}|)J",
     R"J(None True False |)J"},
    {R"J({{ [1, 'a', none, true, 2.0] }} {{ {'a': 1, 'b': [1, 2]} }} {{ ('x',) }} {{ (1, 2) }} {{ ["it's", 'say "hi"', 'both \' "'] }})J",
     R"J([1, 'a', None, True, 2.0] {'a': 1, 'b': [1, 2]} ('x',) (1, 2) ["it's", 'say "hi"', 'both \' "'])J"},
    {R"J({{ ['tab\there', 'nl\nx', 'back\\slash', 'ctl\x01', 'é✓'] }})J",
     R"J(['tab\there', 'nl\nx', 'back\\slash', 'ctl\x01', 'é✓'])J"},
    {R"J({{ messages }})J",
     R"J([{'role': 'user', 'content': 'hi'}])J"},
    {R"J({{ 'a' ~ 1 ~ none ~ undefined_var ~ 2.0 }} {{ 'ab' * 3 }} {{ [1] * 2 }} {{ l + [9] }} {{ -n }} {{ n if t else 0 }} {{ n if not t }}| {{ t and 'yes' or 'no' }} {{ none or 'fb' }} {{ 0 and 1 }})J",
     R"J(a1None2.0 ababab [1, 1] [3, 1, 2, 9] -3 3 | yes fb 0)J"},
    {R"J({{ -2 ** 2 }} {{ 2 ** 3 ** 2 }} {{ 10 - 2 - 3 }} {{ 1 + 2 * 3 }} {{ 7 // 2 * 2 }} {{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }})J",
     R"J(4 64 5 7 6 True False)J"},
    {R"J({{ "a" "b" 'c' }} {{ 1_000 }} {{ 0x1F }} {{ 1.5e3 }} {{ () }} {{ 1, 2 }} {{ '\u00e9\x41\101\q' }})J",
     R"J(abc 1000 31 1500.0 () (1, 2) éAA\q)J"},
};

const Case kStringsCases[] = {
    {R"J({{ s|length }} {{ u8|length }} {{ s[::-1] }} {{ s[1:3] }} {{ s[-3:] }} {{ u8[1:4] }} {{ s[0] }} {{ l[10] }}|)J",
     R"J(11 13 dlroW olleH el rld éll H |)J"},
    {R"J({{ s|upper }} {{ 'hello world-foo(bar'|title }} {{ 'hELLO wORLD'|capitalize }} {{ 'o\'neil mcdonald'.title() }} {{ 'ß'.upper() }})J",
     R"J(HELLO WORLD Hello World-Foo(Bar Hello world O'Neil Mcdonald SS)J"},
    {R"J({{ '  x  '|trim }}|{{ 'xxhixx'|trim('x') }}|{{ '..a..'.lstrip('.') }}|{{ '..a..'.rstrip('.') }}|{{ '  \u00a0x\u3000 '.strip() }}|)J",
     R"J(x|hi|a..|..a|x|)J"},
    {R"J({{ 'a,b,,c'.split(',') }} {{ ' a  b '.split() }} {{ 'a b c'.split(' ', 1) }} {{ 'a b c'.rsplit(' ', 1) }})J",
     R"J(['a', 'b', '', 'c'] ['a', 'b'] ['a', 'b c'] ['a b', 'c'])J"},
    {R"J({{ s.startswith('Hell') }} {{ s.endswith(('x', 'ld')) }} {{ s.replace('l', 'L', 1) }} {{ s.find('o') }} {{ s.count('l') }} {{ '-'.join(['a', 'b']) }})J",
     R"J(True True HeLlo World 4 3 a-b)J"},
    {R"J({{ '<|x{}|>'.format(1) }} {{ '{0}{name}'.format('a', name='b') }} {{ 'a\nb\r\nc'.splitlines() }})J",
     R"J(<|x1|> ab ['a', 'b', 'c'])J"},
};

const Case kFiltersCases[] = {
    {R"J({{ l|join(', ') }} {{ l|sort }} {{ l|sort(reverse=true) }} {{ l|first }} {{ l|last }} {{ l|sum }} {{ l|min }} {{ l|max }})J",
     R"J(3, 1, 2 [1, 2, 3] [3, 2, 1] 3 2 6 1 3)J"},
    {R"J({{ d|items|list }} {{ {'B': 1, 'a': 2, 'c': 0}|dictsort }} {{ {'B': 1, 'a': 2, 'c': 0}|dictsort(by='value') }})J",
     R"J([('b', 1), ('a', [1, {'x': None}])] [('a', 2), ('B', 1), ('c', 0)] [('c', 0), ('B', 1), ('a', 2)])J"},
    {R"J({{ undefined_var|default('dflt') }} {{ none|default('dflt') }} {{ ''|default('dflt', true) }} {{ 0|d('z', true) }})J",
     R"J(dflt None dflt z)J"},
    {R"J({{ 'a\nb\n\nc'|indent(2) }}|{{ 'a\nb'|indent(2, true) }}|{{ 'a\n\nb'|indent(2, blank=true) }})J",
     R"J(a
  b

  c|  a
  b|a
  
  b)J"},
    {R"J({{ [{'a': 1, 'b': 'x'}, {'a': 0, 'b': 'y'}, {'b': 'z'}]|selectattr('a')|map(attribute='b')|list }} {{ [1,2,3]|reject('equalto', 2)|list }} {{ ['a', 'B', 'A', 'b']|unique|list }} {{ ['x', 'y']|map('upper')|join }})J",
     R"J(['x'] [1, 3] ['a', 'B'] XY)J"},
    {R"J({{ none|selectattr('x')|list }} {{ 'a' if l|selectattr('x') else 'b' }} {{ '3'|int + 1 }} {{ '3.7'|int }} {{ 'x'|int }} {{ none|string }} {{ 2.5|round }} {{ 3.5|round }})J",
     R"J([] a 4 3 0 None 2.0 4.0)J"},
    {R"J({{ 'x'|safe + '<b>' }} {{ '<b>' + 'x'|safe }} {{ ('<' ~ 'x'|safe) }} {{ '<&>'|e }} {{ ('a<'|safe).replace('a', '<') }})J",
     R"J(x&lt;b&gt; &lt;b&gt;x <x &lt;&amp;&gt; &lt;<)J"},
};

const Case kJsonCases[] = {
    {R"J({{ d|tojson }} {{ d|tojson(indent=2) }} {{ u8|tojson }} {{ 'a"b\\c\n\t\x01'|tojson }} {{ [1.0, 2.5e-10, none, true]|tojson }} {{ {}|tojson(indent=2) }})J",
     R"J({"b": 1, "a": [1, {"x": null}]} {
  "b": 1,
  "a": [
    1,
    {
      "x": null
    }
  ]
} "héllo wörld ✓" "a\"b\\c\n\t\u0001" [1.0, 2.5e-10, null, true] {})J"},
    {R"J({{ u8|tojson(ensure_ascii=true) }} {{ d|tojson(sort_keys=true) }} {{ d|tojson(separators=(',', ':')) }} {{ '🚀'|tojson(ensure_ascii=true) }} {{ l|tojson(indent='\t') }})J",
     R"J("h\u00e9llo w\u00f6rld \u2713" {"a": [1, {"x": null}], "b": 1} {"b":1,"a":[1,{"x":null}]} "\ud83d\ude80" [
	3,
	1,
	2
])J"},
};

const Case kTestsCases[] = {
    {R"J({{ x is defined }} {{ s is defined }} {{ none is none }} {{ s is string }} {{ d is mapping }} {{ l is iterable }} {{ undefined_var is iterable }} {{ 3 is number }} {{ true is number }} {{ l is sequence }})J",
     R"J(False True True True True True True True True True)J"},
    {R"J({{ 3 is odd }} {{ 9 is divisibleby 3 }} {{ 't' is lower }} {{ true is boolean }} {{ 1 is integer }} {{ true is integer }} {{ 1.0 is float }} {{ s is not none }} {{ t is true }} {{ none is true }})J",
     R"J(True True True True True False True True True False)J"},
    {R"J({{ 'a' in 'cat' }} {{ 2 in l }} {{ 'b' in d }} {{ 'z' not in d }} {{ 1 == 1.0 }} {{ true == 1 }} {{ (1,2) == [1,2] }} {{ 5 is in [5] }} {{ 3 is gt 2 }})J",
     R"J(True True True True True True False True True)J"},
};

const Case kLoopsCases[] = {
    {R"J({% for x in l %}{{ loop.index }}{{ loop.index0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ loop.revindex }}{{ loop.revindex0 }}/{% endfor %})J",
     R"J(10TrueFalse332/21FalseFalse321/32FalseTrue310/)J"},
    {R"J({% for x in l %}{{ loop.previtem }}-{{ loop.nextitem }}|{{ loop.cycle('a', 'b') }}{% endfor %})J",
     R"J(-1|a3-2|b1-|a)J"},
    {R"J({% for x in l if x > 1 %}{{ x }}{{ loop.length }}{% else %}none{% endfor %}{% for x in [] %}x{% else %}empty{% endfor %})J",
     R"J(3222empty)J"},
    {R"J({% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}{% for k in d %}{{ k }}{% endfor %}{% for c in 'ab' %}{{ c }}.{% endfor %})J",
     R"J(b=1;a=[1, {'x': None}];baa.b.)J"},
    {R"J({% for x in l %}{% if x == 1 %}{% continue %}{% endif %}{% if x == 2 %}{% break %}{% endif %}{{ x }}{% endfor %})J",
     R"J(3)J"},
    {R"J({% for a in [1, 2] %}{% for b in [3, 4] %}{{ loop.index }}{% endfor %}{{ loop.index }}{% endfor %})J",
     R"J(121122)J"},
};

const Case kScopesCases[] = {
    {R"J({% set x = 0 %}{% for i in [1,2] %}[{{ x }}]{% set x = i %}{% endfor %}{{ x }})J",
     R"J([0][0]0)J"},
    {R"J({% set ns = namespace(c=0) %}{% for i in l %}{% set ns.c = ns.c + i %}{% endfor %}{{ ns.c }})J",
     R"J(6)J"},
    {R"J({% set t1 = 'x' %}{% if true %}{% set t1 = 'y' %}{% endif %}{{ t1 }})J",
     R"J(y)J"},
    {R"J({% for i in range(3) %}{% set x = (x|default(0)) + i %}{{ x }}{% endfor %})J",
     R"J(012)J"},
    {R"J({% macro m() %}{{ y }}{% endmacro %}{% set y = 1 %}{{ m() }}{% set y = 2 %}{{ m() }})J",
     R"J(12)J"},
    {R"J({% set a, b = 1, 2 %}{{ a }}{{ b }}{% set c, d = [3, 4] %}{{ c }}{{ d }})J",
     R"J(1234)J"},
    {R"J({% set y %}  block {{ n }} {% endset %}[{{ y }}]{% set z | upper %}shout{% endset %}{{ z }}{% filter upper %}hello {{ s }}{% endfilter %})J",
     R"J([  block 3 ]SHOUTHELLO HELLO WORLD)J"},
};

const Case kMacrosCases[] = {
    {R"J({% macro m(a, b=2, c='x') %}{{ a }}{{ b }}{{ c }}{% endmacro %}{{ m(1) }} {{ m(1, 3) }} {{ m(1, c='y') }} {{ m() }}|)J",
     R"J(12x 13x 12y 2x|)J"},
    {R"J({% macro m(a) %}{{ a }}{{ varargs }}{{ kwargs }}{% endmacro %}{{ m(1, 2, 3, k=4) }})J",
     R"J(1(2, 3){'k': 4})J"},
    {R"J({% macro outer() %}[{{ caller() }}]{% endmacro %}{% call outer() %}inside{% endcall %})J",
     R"J([inside])J"},
    {R"J({% macro rec(n) %}{% if n > 0 %}{{ n }}{{ rec(n - 1) }}{% endif %}{% endmacro %}{{ rec(5) }})J",
     R"J(54321)J"},
};
TEST(ChatJinja, WhitespaceControl) { check_cases(kWhitespaceCases, std::size(kWhitespaceCases)); }
TEST(ChatJinja, PrintsValuesLikePython) { check_cases(kPrintingCases, std::size(kPrintingCases)); }
TEST(ChatJinja, StringMethods) { check_cases(kStringsCases, std::size(kStringsCases)); }
TEST(ChatJinja, Filters) { check_cases(kFiltersCases, std::size(kFiltersCases)); }
TEST(ChatJinja, ToJsonIsJsonDumps) { check_cases(kJsonCases, std::size(kJsonCases)); }
TEST(ChatJinja, Tests) { check_cases(kTestsCases, std::size(kTestsCases)); }
TEST(ChatJinja, LoopVariablesAndControls) { check_cases(kLoopsCases, std::size(kLoopsCases)); }
TEST(ChatJinja, ScopesAndNamespaces) { check_cases(kScopesCases, std::size(kScopesCases)); }
TEST(ChatJinja, Macros) { check_cases(kMacrosCases, std::size(kMacrosCases)); }

TEST(ChatJinja, OneTrailingNewlineOfTheSourceIsDropped) {
    EXPECT_EQ(*render("a\n"), "a");
    EXPECT_EQ(*render("a\n\n"), "a\n");
    EXPECT_EQ(*render("{{ 'x' }}\n"), "x");
}

TEST(ChatJinja, RaiseExceptionNamesTheTemplateLine) {
    const auto r = render("{% for m in messages %}\n{% if m.role == 'user' %}\n{{ raise_exception('no users here') }}\n{% endif %}{% endfor %}");
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::invalid_argument);
    EXPECT_EQ(r.status().message(), "line 3: no users here");
}

TEST(ChatJinja, RuntimeErrorsNameTheLineAndTheReason) {
    auto r = render("ok\n{{ missing.attr }}");
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().message(), "line 2: UndefinedError: 'missing' is undefined");
    r = render("{% set x = 1 %}\n\n{{ 'a' + x }}");
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().message(), "line 3: TypeError: can only concatenate str (not \"int\") to str");
    r = render("{{ d.zz.yy }}");
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().message(), "line 1: UndefinedError: 'dict object' has no attribute 'zz'");
    // The immutable sandbox refuses to change a list.
    r = render("{% set l2 = [] %}\n{{ l2.append(1) }}");
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().message(), "line 2: SecurityError: access to attribute 'append' of 'list' object is unsafe.");
    r = render("{% macro m(a) %}\n{{ a.b.c }}\n{% endmacro %}\n{{ m(none) }}");
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().message(), "line 2: UndefinedError: 'None' has no attribute 'b'");
}

TEST(ChatJinja, SyntaxErrorsNameLineAndColumn) {
    auto r = render("line one\n{% if x %}\nnever closed");
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("line 3"), std::string::npos) << r.status().message();
    EXPECT_NE(r.status().message().find("endif"), std::string::npos) << r.status().message();
    r = render("a\n  {{ x + }}");
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().message().rfind("line 2, column ", 0), 0u) << r.status().message();
    r = render("{% frobnicate %}");
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("unknown tag 'frobnicate'"), std::string::npos);
    r = render("{{ 'unterminated }}");
    EXPECT_FALSE(r.ok());
    r = render("{# never closed");
    EXPECT_FALSE(r.ok());
}

TEST(ChatJinja, UnknownFiltersFailAtParseTimeUnlessInsideAnIf) {
    // jinja2 compiles an unknown filter outside an `if` to an error, inside one to a runtime error.
    EXPECT_FALSE(ChatTemplate::parse("{{ x | from_json }}").ok());
    EXPECT_FALSE(ChatTemplate::parse("{{ x is frobbed }}").ok());
    EXPECT_TRUE(ChatTemplate::parse("{{ x | from_json if x is string else x }}").ok());
    ASSERT_TRUE(ChatTemplate::parse("{% if x is string %}{{ x | from_json }}{% endif %}").ok());
    EXPECT_EQ(*render("{% if s is number %}{{ s | from_json }}{% endif %}ok"), "ok");
    const auto r = render("{% if s is string %}{{ s | from_json }}{% endif %}");
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("No filter named 'from_json'"), std::string::npos);
}

TEST(ChatJinja, StrftimeNowUsesTheGivenClock) {
    std::tm tm{};
    tm.tm_year = 2024 - 1900;
    tm.tm_mon = 6;
    tm.tm_mday = 26;
    tm.tm_hour = 12;
    tm.tm_isdst = -1;
    RenderOptions options;
    options.now = std::mktime(&tm);
    EXPECT_EQ(*render("{{ strftime_now('%d %b %Y') }}", "{}", options), "26 Jul 2024");
}

TEST(ChatJinja, GenerationBlocksRenderTheirBodyInTheirOwnScope) {
    EXPECT_EQ(*render("{% set x = 1 %}{% generation %}[{{ x }}{% set x = 2 %}{{ x }}]{% endgeneration %}{{ x }}"), "[12]1");
}

TEST(ChatJinja, HostileTemplatesStopWithAnError) {
    RenderOptions small;
    small.limits.max_steps = 100000;
    small.limits.max_output_bytes = 1 << 20;
    // Unbounded recursion.
    auto r = render("{% macro r() %}{{ r() }}{% endmacro %}{{ r() }}", "{}", small);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::resource_exhausted) << r.status().message();
    // Nested loops: 10^10 iterations.
    r = render("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", "{}", small);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::resource_exhausted) << r.status().message();
    // Huge strings, built or printed.
    r = render("{{ 'x' * 100000000000 }}", "{}", small);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::resource_exhausted) << r.status().message();
    r = render("{% set s = 'x' * 1000 %}{% for i in range(10000) %}{{ s }}{% endfor %}", "{}", small);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::resource_exhausted) << r.status().message();
    r = render("{% set ns = namespace(s='ab') %}{% for i in range(100) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}", "{}", small);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::resource_exhausted) << r.status().message();
    // The sandbox's range limit.
    r = render("{{ range(1000000)|length }}");
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("Range too big"), std::string::npos);
    // Deep nesting is a syntax error, not a stack overflow.
    EXPECT_FALSE(ChatTemplate::parse("{{ " + std::string(5000, '(') + "1" + std::string(5000, ')') + " }}").ok());
    EXPECT_FALSE(ChatTemplate::parse("{{ " + std::string(3000, '[')).ok());
    std::string ifs;
    for (int i = 0; i < 1000; ++i) ifs += "{% if true %}";
    EXPECT_FALSE(ChatTemplate::parse(ifs).ok());
    // With the default limits, a runaway loop still ends (quickly) in an error.
    r = render("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", "{}");
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::resource_exhausted) << r.status().message();
}

TEST(ChatJinja, AParsedTemplateRendersManyTimes) {
    auto t = ChatTemplate::parse("{% for m in messages %}{{ m.content }}{% endfor %}");
    ASSERT_TRUE(t.ok());
    const ChatTemplate copy = *t;
    EXPECT_EQ(*t->render(nlohmann::ordered_json::parse(R"({"messages": [{"content": "a"}]})")), "a");
    EXPECT_EQ(*copy.render(nlohmann::ordered_json::parse(R"({"messages": [{"content": "b"}, {"content": "c"}]})")), "bc");
    EXPECT_FALSE(t->render(nlohmann::ordered_json::array()).ok());
}

}  // namespace
