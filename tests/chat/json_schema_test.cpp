// JSON Schema -> GBNF: every supported keyword accepts what the schema allows and rejects what
// it forbids (checked through the grammar matcher), unsupported keywords are errors that name
// them, and the validator agrees with the grammar.
#include "chat/json_schema.h"

#include <gtest/gtest.h>

#include <random>
#include <regex>

#include "chat/grammar.h"

namespace hearth::chat {
namespace {

class Compiled {
public:
    explicit Compiled(const Json& schema) : schema_(schema) {
        auto text = format_to_gbnf(schema);
        EXPECT_TRUE(text.ok()) << text.status().message() << "\nschema: " << schema.dump();
        if (!text.ok()) return;
        gbnf_ = text.value();
        auto g = Grammar::parse(gbnf_);
        EXPECT_TRUE(g.ok()) << g.status().message() << "\n" << gbnf_;
        if (g.ok()) g_ = g.value();
    }
    // The grammar accepts `text` as a whole; also checks the validator agrees when it parses.
    bool accepts(const std::string& text) const {
        if (!g_) return false;
        GrammarMatcher m(g_);
        const bool ok = m.accept(text) && m.can_end();
        if (ok && schema_.is_object()) {
            auto v = Json::parse(text, nullptr, false);
            EXPECT_FALSE(v.is_discarded()) << "grammar accepted non-JSON: " << text;
            Status st = validate_json(schema_, v);
            EXPECT_TRUE(st.ok()) << "grammar accepted " << text << " but the validator says " << st.message();
        }
        return ok;
    }
    const std::string& gbnf() const { return gbnf_; }

private:
    Json schema_;
    std::string gbnf_;
    std::shared_ptr<const Grammar> g_;
};

Status compile_status(const Json& schema) {
    auto r = format_to_gbnf(schema);
    return r.ok() ? Status{} : r.status();
}

TEST(JsonSchema, FormatJsonIsAnyObject) {
    Compiled c(Json("json"));
    EXPECT_TRUE(c.accepts("{}"));
    EXPECT_TRUE(c.accepts("{\"a\": [1, 2.5e3, -0.25, true, null, \"x\\n\\u00e9\"], \"b\": {\"c\": {}}}"));
    EXPECT_TRUE(c.accepts("{\n  \"a\": 1,\n  \"b\": [\n    2\n  ]\n}"));
    EXPECT_FALSE(c.accepts("[1]"));
    EXPECT_FALSE(c.accepts("\"s\""));
    EXPECT_FALSE(c.accepts(" {}"));        // no whitespace before the value
    EXPECT_FALSE(c.accepts("{} "));        // nor after
    EXPECT_FALSE(c.accepts("{\"a\":01}"));  // no leading zeros
    EXPECT_FALSE(c.accepts("{\"a\":1,}"));
    EXPECT_FALSE(c.accepts("{\"a\"  :1}"));  // at most one space between tokens
    EXPECT_FALSE(c.accepts("{\"a\":\"\x01\"}"));
    EXPECT_FALSE(c.accepts("{\"a\":" + std::string(17, '1') + "}"));  // 16 digits at most
    EXPECT_EQ(compile_status(Json("xml")).code(), StatusCode::invalid_argument);
    EXPECT_EQ(compile_status(Json(3)).code(), StatusCode::invalid_argument);
    EXPECT_EQ(compile_status(Json::array()).code(), StatusCode::invalid_argument);
}

TEST(JsonSchema, PrimitiveTypes) {
    EXPECT_TRUE(Compiled(Json{{"type", "string"}}).accepts("\"a\\\"b\""));
    EXPECT_FALSE(Compiled(Json{{"type", "string"}}).accepts("1"));
    EXPECT_TRUE(Compiled(Json{{"type", "integer"}}).accepts("-42"));
    EXPECT_FALSE(Compiled(Json{{"type", "integer"}}).accepts("4.2"));
    EXPECT_TRUE(Compiled(Json{{"type", "number"}}).accepts("4.2e-7"));
    EXPECT_TRUE(Compiled(Json{{"type", "boolean"}}).accepts("false"));
    EXPECT_TRUE(Compiled(Json{{"type", "null"}}).accepts("null"));
    Compiled multi(Json{{"type", {"string", "null"}}});
    EXPECT_TRUE(multi.accepts("null"));
    EXPECT_TRUE(multi.accepts("\"x\""));
    EXPECT_FALSE(multi.accepts("1"));
    Compiled any(Json::object());
    EXPECT_TRUE(any.accepts("[1,{\"a\":null}]"));
    Compiled nullable(Json{{"type", "integer"}, {"nullable", true}});
    EXPECT_TRUE(nullable.accepts("null"));
    EXPECT_TRUE(nullable.accepts("3"));
}

TEST(JsonSchema, ObjectPropertiesInDeclaredOrder) {
    Json s = Json::parse(R"({"type":"object","properties":{"zeta":{"type":"integer"},"alpha":{"type":"string"},
                             "mid":{"type":"boolean"}},"required":["zeta","mid"]})");
    Compiled c(s);
    EXPECT_TRUE(c.accepts("{\"zeta\":1,\"alpha\":\"a\",\"mid\":true}"));
    EXPECT_TRUE(c.accepts("{\"zeta\": 1, \"mid\": false}"));  // optional left out
    EXPECT_FALSE(c.accepts("{\"alpha\":\"a\",\"zeta\":1,\"mid\":true}"));  // order
    EXPECT_FALSE(c.accepts("{\"zeta\":1}"));                               // required
    EXPECT_FALSE(c.accepts("{\"zeta\":1,\"mid\":true,\"other\":1}"));      // no extra keys
    EXPECT_FALSE(c.accepts("{\"zeta\":\"1\",\"mid\":true}"));              // type of a value
    Compiled empty(Json::parse(R"({"type":"object","properties":{"a":{"type":"integer"}}})"));
    EXPECT_TRUE(empty.accepts("{}"));
    EXPECT_TRUE(empty.accepts("{\"a\":1}"));
}

TEST(JsonSchema, AdditionalProperties) {
    Compiled values(Json::parse(R"({"type":"object","additionalProperties":{"type":"integer"}})"));
    EXPECT_TRUE(values.accepts("{\"x\":1,\"y\":2}"));
    EXPECT_FALSE(values.accepts("{\"x\":\"1\"}"));
    // Extra keys after the declared ones, never repeating a declared name.
    Compiled extra(Json::parse(R"({"type":"object","properties":{"id":{"type":"integer"},"ié":{"type":"null"}},
                                  "required":["id"],"additionalProperties":true})"));
    EXPECT_TRUE(extra.accepts("{\"id\":1,\"name\":\"x\",\"i\":2,\"idx\":3,\"\":4}"));
    EXPECT_FALSE(extra.accepts("{\"id\":1,\"id\":2}"));
    EXPECT_FALSE(extra.accepts("{\"id\":1,\"ié\":2}"));
    EXPECT_TRUE(extra.accepts("{\"id\":1,\"iéé\":2}"));
    Compiled closed(Json::parse(R"({"type":"object","additionalProperties":false})"));
    EXPECT_TRUE(closed.accepts("{}"));
    EXPECT_FALSE(closed.accepts("{\"a\":1}"));
}

TEST(JsonSchema, Arrays) {
    Compiled c(Json::parse(R"({"type":"array","items":{"type":"integer"},"minItems":2,"maxItems":3})"));
    EXPECT_FALSE(c.accepts("[1]"));
    EXPECT_TRUE(c.accepts("[1,2]"));
    EXPECT_TRUE(c.accepts("[1, 2, 3]"));
    EXPECT_FALSE(c.accepts("[1,2,3,4]"));
    EXPECT_FALSE(c.accepts("[1,\"2\"]"));
    Compiled open(Json::parse(R"({"type":"array","minItems":1})"));
    EXPECT_FALSE(open.accepts("[]"));
    EXPECT_TRUE(open.accepts("[null,{},[]]"));
    Compiled tuple(Json::parse(R"({"type":"array","prefixItems":[{"type":"string"},{"type":"integer"}],"items":false,"minItems":1})"));
    EXPECT_TRUE(tuple.accepts("[\"a\"]"));
    EXPECT_TRUE(tuple.accepts("[\"a\",1]"));
    EXPECT_FALSE(tuple.accepts("[\"a\",1,2]"));
    EXPECT_FALSE(tuple.accepts("[1]"));
    Compiled none(Json::parse(R"({"type":"array","maxItems":0})"));
    EXPECT_TRUE(none.accepts("[]"));
    EXPECT_FALSE(none.accepts("[1]"));
}

TEST(JsonSchema, StringsLengthFormatsPatterns) {
    Compiled len(Json::parse(R"({"type":"string","minLength":2,"maxLength":3})"));
    EXPECT_FALSE(len.accepts("\"a\""));
    EXPECT_TRUE(len.accepts("\"ab\""));
    EXPECT_TRUE(len.accepts("\"a\\nb\""));   // an escape is one character
    EXPECT_TRUE(len.accepts("\"\xC3\xA9\xC3\xA9\""));  // code points, not bytes
    EXPECT_FALSE(len.accepts("\"abcd\""));
    Compiled date(Json::parse(R"({"type":"string","format":"date"})"));
    EXPECT_TRUE(date.accepts("\"2024-02-29\""));
    EXPECT_FALSE(date.accepts("\"2024-13-01\""));
    Compiled dt(Json::parse(R"({"type":"string","format":"date-time"})"));
    EXPECT_TRUE(dt.accepts("\"2024-02-29T23:59:07.123Z\""));
    EXPECT_TRUE(dt.accepts("\"2024-02-29T01:02:03+05:30\""));
    EXPECT_FALSE(dt.accepts("\"2024-02-29 01:02:03\""));
    Compiled uuid(Json::parse(R"({"type":"string","format":"uuid"})"));
    EXPECT_TRUE(uuid.accepts("\"123e4567-e89b-12d3-a456-426614174000\""));
    EXPECT_FALSE(uuid.accepts("\"123e4567e89b12d3a456426614174000\""));
    EXPECT_TRUE(Compiled(Json::parse(R"({"type":"string","format":"email"})")).accepts("\"a.b@example.com\""));
    EXPECT_TRUE(Compiled(Json::parse(R"({"type":"string","format":"ipv4"})")).accepts("\"192.168.0.255\""));
    EXPECT_FALSE(Compiled(Json::parse(R"({"type":"string","format":"ipv4"})")).accepts("\"256.1.1.1\""));
    Compiled pat(Json::parse(R"({"type":"string","pattern":"^[A-Z]{2}-\\d{3,4}(x|yz)?$"})"));
    EXPECT_TRUE(pat.accepts("\"AB-123\""));
    EXPECT_TRUE(pat.accepts("\"AB-1234yz\""));
    EXPECT_FALSE(pat.accepts("\"AB-12\""));
    EXPECT_FALSE(pat.accepts("\"ab-123\""));
    // Unanchored patterns may have anything around them; quotes and backslashes are escaped.
    Compiled search(Json::parse(R"({"type":"string","pattern":"q\"\\\\"})"));
    EXPECT_TRUE(search.accepts("\"xxq\\\"\\\\yy\""));
    EXPECT_FALSE(search.accepts("\"xxq\""));
}

TEST(JsonSchema, RegexAgreesWithStdRegex) {
    const char* patterns[] = {"^a(b|c)*d?$", "^[^a-c]{1,3}$", "^\\w+@\\w+\\.com$", "^(ab|a)(bc|c)$", "^.\\s\\S$"};
    const char* inputs[] = {"a", "ad", "abcbd", "abce", "xyz", "wxyz", "ab", "a_1@b2.com", "a@b.org", "abc",
                            "x y", "x  ", "d", "abbd", "ac"};
    for (const char* p : patterns) {
        Compiled c(Json{{"type", "string"}, {"pattern", p}});
        for (const char* in : inputs) {
            const bool expect = std::regex_search(in, std::regex(p, std::regex::ECMAScript));
            EXPECT_EQ(c.accepts(Json(in).dump()), expect) << p << " on " << in;
        }
    }
}

TEST(JsonSchema, IntegerRangesAreExact) {
    const std::pair<int64_t, int64_t> ranges[] = {{-123, 456}, {0, 9}, {7, 7}, {-50, -3}, {10, 1099}, {95, 105}};
    for (auto [lo, hi] : ranges) {
        Compiled c(Json{{"type", "integer"}, {"minimum", lo}, {"maximum", hi}});
        for (int64_t v = -1200; v <= 1200; ++v)
            ASSERT_EQ(c.accepts(std::to_string(v)), v >= lo && v <= hi) << v << " in [" << lo << ", " << hi << "]";
    }
    Compiled ex(Json{{"type", "integer"}, {"exclusiveMinimum", 0}, {"exclusiveMaximum", 5}});
    EXPECT_FALSE(ex.accepts("0"));
    EXPECT_TRUE(ex.accepts("1"));
    EXPECT_TRUE(ex.accepts("4"));
    EXPECT_FALSE(ex.accepts("5"));
    Compiled half(Json{{"type", "integer"}, {"minimum", 1000}});
    EXPECT_TRUE(half.accepts("1000"));
    EXPECT_TRUE(half.accepts("123456789"));
    EXPECT_FALSE(half.accepts("999"));
    EXPECT_FALSE(half.accepts("-1000"));
}

TEST(JsonSchema, NumberBounds) {
    Compiled c(Json{{"type", "number"}, {"minimum", -2}, {"maximum", 3}});
    for (const char* ok : {"-2", "-1.99", "-0.5", "0", "0.25", "2.999", "3", "3.0"}) EXPECT_TRUE(c.accepts(ok)) << ok;
    for (const char* bad : {"-2.01", "-3", "3.01", "4", "1e2"}) EXPECT_FALSE(c.accepts(bad)) << bad;
    Compiled ex(Json{{"type", "number"}, {"exclusiveMinimum", 0}, {"exclusiveMaximum", 1}});
    EXPECT_FALSE(ex.accepts("0"));
    EXPECT_FALSE(ex.accepts("0.0"));
    EXPECT_TRUE(ex.accepts("0.5"));
    EXPECT_FALSE(ex.accepts("1"));
    // Non-integer bounds are rounded inward: a subset of the range, always valid.
    Compiled in(Json{{"type", "number"}, {"minimum", 0.5}, {"maximum", 2.5}});
    EXPECT_TRUE(in.accepts("1.75"));
    EXPECT_FALSE(in.accepts("0.75"));
    EXPECT_EQ(compile_status(Json{{"type", "number"}, {"minimum", 0.2}, {"maximum", 0.8}}).code(), StatusCode::unsupported);
}

TEST(JsonSchema, EnumConstAnyOfRefs) {
    Compiled e(Json::parse(R"({"enum":["red","green",3,null,{"a":[1]}]})"));
    EXPECT_TRUE(e.accepts("\"green\""));
    EXPECT_TRUE(e.accepts("{\"a\":[1]}"));
    EXPECT_TRUE(e.accepts("null"));
    EXPECT_FALSE(e.accepts("\"blue\""));
    Compiled typed(Json::parse(R"({"type":"string","enum":["a",1]})"));  // 1 is not a string
    EXPECT_TRUE(typed.accepts("\"a\""));
    EXPECT_FALSE(typed.accepts("1"));
    Compiled k(Json::parse(R"({"const":"fixed"})"));
    EXPECT_TRUE(k.accepts("\"fixed\""));
    EXPECT_FALSE(k.accepts("\"fixe\""));
    Compiled any(Json::parse(R"({"anyOf":[{"type":"integer"},{"type":"array","items":{"type":"boolean"}}]})"));
    EXPECT_TRUE(any.accepts("7"));
    EXPECT_TRUE(any.accepts("[true]"));
    EXPECT_FALSE(any.accepts("[1]"));
    Compiled refs(Json::parse(R"({"$defs":{"node":{"type":"object","properties":{"v":{"type":"integer"},
        "kids":{"type":"array","items":{"$ref":"#/$defs/node"}}},"required":["v"]}},"$ref":"#/$defs/node"})"));
    EXPECT_TRUE(refs.accepts("{\"v\":1,\"kids\":[{\"v\":2},{\"v\":3,\"kids\":[]}]}"));
    EXPECT_FALSE(refs.accepts("{\"v\":1,\"kids\":[{}]}"));
    Compiled defs(Json::parse(R"({"definitions":{"a~b":{"type":"boolean"}},"type":"object",
        "properties":{"x":{"$ref":"#/definitions/a~0b"}},"required":["x"]})"));
    EXPECT_TRUE(defs.accepts("{\"x\":true}"));
    Compiled all(Json::parse(R"({"allOf":[{"type":"object","properties":{"a":{"type":"integer"}},"required":["a"]},
        {"properties":{"b":{"type":"string"}}}]})"));
    EXPECT_TRUE(all.accepts("{\"a\":1,\"b\":\"x\"}"));
    EXPECT_FALSE(all.accepts("{\"b\":\"x\"}"));
}

TEST(JsonSchema, UnsupportedKeywordsAreErrorsNamingThem) {
    struct Case {
        const char* schema;
        const char* needle;
    } cases[] = {
        {R"({"type":"object","properties":{"a":{"not":{"type":"string"}}}})", "'not' at /properties/a"},
        {R"({"type":"array","uniqueItems":true})", "'uniqueItems'"},
        {R"({"type":"number","multipleOf":3})", "'multipleOf'"},
        {R"({"type":"object","patternProperties":{"^a":{}}})", "'patternProperties'"},
        {R"({"if":{"type":"string"},"then":{}})", "'if'"},
        {R"({"$ref":"https://example.com/s.json"})", "only local references"},
        {R"({"type":"string","format":"hostname"})", "format 'hostname'"},
        {R"({"type":"string","pattern":"(a)\\1"})", "back-references"},
        {R"({"type":"string","pattern":"(?=a)b"})", "look-around"},
        {R"({"type":"object","properties":{},"required":["ghost"]})", "'ghost'"},
        {R"({"type":"array","minItems":3,"maxItems":2})", "minItems above maxItems"},
        {R"({"type":"integer","minimum":5,"maximum":4})", "no integer value"},
        {R"({"type":"frobnicate"})", "unknown type 'frobnicate'"},
        {R"({"enum":["a"],"type":"integer"})", "no value allowed"},
    };
    for (const Case& c : cases) {
        Status st = compile_status(Json::parse(c.schema));
        EXPECT_FALSE(st.ok()) << c.schema;
        EXPECT_NE(st.message().find(c.needle), std::string::npos) << c.schema << " -> " << st.message();
    }
}

TEST(JsonSchema, ValidatorReportsPaths) {
    const Json s = Json::parse(R"({"type":"object","properties":{"a":{"type":"array","items":{"type":"integer","maximum":5}}}})");
    EXPECT_TRUE(validate_json(s, Json::parse(R"({"a":[1,5]})")).ok());
    Status st = validate_json(s, Json::parse(R"({"a":[1,7]})"));
    EXPECT_EQ(st.code(), StatusCode::invalid_argument);
    EXPECT_NE(st.message().find("/a/1"), std::string::npos) << st.message();
    EXPECT_NE(st.message().find("maximum"), std::string::npos) << st.message();
    EXPECT_FALSE(validate_json(Json::parse(R"({"oneOf":[{"type":"integer"},{"type":"number"}]})"), Json(3)).ok());
    EXPECT_EQ(validate_json(Json::parse(R"({"not":{}})"), Json(3)).code(), StatusCode::unsupported);
}

TEST(JsonSchema, ComposesSeveralSchemas) {
    JsonSchemaCompiler c;
    auto a = c.add(Json::parse(R"({"type":"object","properties":{"city":{"type":"string"}},"required":["city"]})"), "weather");
    auto b = c.add(Json::parse(R"({"type":"integer"})"), "count");
    ASSERT_TRUE(a.ok() && b.ok());
    auto g = Grammar::parse(c.gbnf("\"W\" " + a.value() + " | \"C\" " + b.value()));
    ASSERT_TRUE(g.ok()) << g.status().message();
    GrammarMatcher m(g.value());
    EXPECT_TRUE(m.accept("W{\"city\":\"Oslo\"}") && m.is_complete());
}

}  // namespace
}  // namespace hearth::chat
