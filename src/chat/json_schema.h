// JSON Schema (and Ollama's `format: "json"`) compiled to GBNF for constrained decoding, and a
// validator for the same subset.
//
// `format: "json"` means a JSON object, as in Ollama (its grammar's root is an object) and
// OpenAI's json_object mode: applications that ask for JSON parse an object.
//
// Supported keywords: type (one or a list), properties, required, additionalProperties (false,
// true or a schema), items, prefixItems, minItems, maxItems, minLength, maxLength, pattern (an
// ECMAScript regex subset: literals, ., classes, \d \w \s, groups, |, ? * + {m,n}; anchors ^ $),
// format (date, time, date-time, uuid, email, ipv4, uri), minimum, maximum, exclusiveMinimum,
// exclusiveMaximum, enum, const, anyOf, oneOf (as anyOf: the grammar cannot make the branches
// exclusive), allOf (of object schemas: merged), $ref to "#" or "#/<pointer>" (so $defs and
// definitions), nullable (OpenAPI). Annotations are ignored: title, description, default,
// examples, $schema, $id, $comment, deprecated, readOnly, writeOnly, $defs, definitions.
// Anything else (not, if/then/else, uniqueItems, multipleOf, patternProperties, contains, ...)
// is an error naming the keyword and where it is: a format the engine cannot honour is never
// silently ignored.
//
// The grammar is stricter than the schema where the schema allows things no model should emit,
// never looser:
//  - Properties come in declaration order; optional ones may be left out. Without
//    additionalProperties an object with declared properties gets only those (an object with no
//    `properties` and no additionalProperties is any object). Extra keys, when allowed, follow the
//    declared ones and never repeat a declared name (as written; a key spelled with \u escapes
//    is not compared).
//  - Whitespace is bounded so a model cannot loop on it: between two JSON tokens at most one
//    space, or one line break followed by at most 20 spaces/tabs; none before the value or after it.
//  - Numbers have at most 16 integer digits, 16 fraction digits and 2 exponent digits (like
//    llama.cpp's converter). Bounded numbers have no exponent; non-integer bounds are rounded
//    inward to integers (a bounded number's integer part is what the grammar counts).
//  - Strings: minLength/maxLength count code points (an escape is one); at most kMaxRepeat.
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "base/status.h"

namespace hearth::chat {

// Schemas are ordered_json so that properties keep their declaration order (nlohmann::json sorts
// object keys); a plain nlohmann::json converts implicitly, with its keys in sorted order.
using Json = nlohmann::ordered_json;

// GBNF for `format`: the string "json" (any JSON object) or a JSON Schema object. Anything else
// ("", "xml", a number, an array) is invalid_argument; a schema using what the compiler cannot
// honour is unsupported, naming the keyword and its path ("unsupported JSON Schema keyword
// 'not' at /properties/a").
Result<std::string> format_to_gbnf(const Json& format);
Result<std::string> json_schema_to_gbnf(const Json& schema);

// Compiles several schemas into one grammar (tool calls: one alternative per tool). Rule names
// get the given prefix; the shared JSON rules (value, string, ws, ...) appear once.
class JsonSchemaCompiler {
public:
    // Adds the rules of `schema` and returns the name of its rule. `prefix` must be a GBNF name.
    Result<std::string> add(const Json& schema, const std::string& prefix);
    // The rule for any JSON value / any JSON object, added on demand.
    std::string any_value();
    std::string any_object();
    // Every rule so far plus `root ::= <root_rhs>`.
    std::string gbnf(const std::string& root_rhs) const;

private:
    struct Ctx;
    Result<std::string> visit(const Json& s, const std::string& name, const std::string& path, Ctx& ctx);
    Result<std::string> visit_object(const Json& s, const std::string& name, const std::string& path, Ctx& ctx);
    Result<std::string> visit_array(const Json& s, const std::string& name, const std::string& path, Ctx& ctx);
    Result<std::string> visit_string(const Json& s, const std::string& name, const std::string& path);
    Result<std::string> visit_number(const Json& s, const std::string& name, const std::string& path, bool integer);
    std::string rule(const std::string& name, const std::string& rhs);  // adds (or reuses) a rule
    std::string unique_name(const std::string& base);
    void add_primitives();
    std::string key_except(const std::vector<std::string>& keys, const std::string& name);

    std::vector<std::pair<std::string, std::string>> rules_;  // name -> rhs, in order of creation
    std::set<std::string> names_;
    std::map<std::string, std::string> by_rhs_;  // rhs -> name, so equal rules are shared
    bool primitives_ = false;
};

// Checks `value` against `schema` for the subset above (pattern via std::regex, ECMAScript).
// invalid_argument naming the path and the failed keyword: "/a/0: 7 is above maximum 5".
Status validate_json(const Json& schema, const Json& value);

// Regex (the subset `pattern` supports) to a GBNF expression over the JSON-encoded characters of
// a string's content (no quotes). Exposed for tests.
Result<std::string> regex_to_gbnf(const std::string& pattern);

}  // namespace hearth::chat
