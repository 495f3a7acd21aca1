// A generator of random JSON Schemas over what chat/json_schema supports, for property tests of
// constrained decoding (grammar_mask_test, tool_mask_test).
#pragma once

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "chat/json_schema.h"

namespace hearth::runtime {

using Json = chat::Json;

// Random schemas over what the compiler supports, with every string, array and value bounded so
// that text from a random model ends within the token budget (a random model rarely closes an
// unbounded string); the grammar is what makes it parse.
class SchemaGen {
public:
    explicit SchemaGen(uint64_t seed) : rng_(seed) {}

    Json schema() {
        defs_ = Json::object();
        n_defs_ = 0;
        Json s = gen(0);
        if (!defs_.empty()) s["$defs"] = defs_;
        return s;
    }

private:
    int pick(int n) { return static_cast<int>(rng_() % static_cast<uint64_t>(n)); }
    bool coin(int percent) { return pick(100) < percent; }
    std::string word() {
        static const char* words[] = {"id", "name", "x", "value", "items", "ok", "tag", "a b", "é", "count", "nested", "q\"k"};
        return words[pick(12)];
    }

    Json gen(int depth) {
        const int kind = depth >= 3 ? 2 + pick(8) : pick(12);
        switch (kind) {
            case 0:
            case 1: return object(depth);
            case 2: {
                Json s = {{"type", "string"}};
                const int v = pick(5);
                if (v == 0) s["maxLength"] = pick(8);
                else if (v == 1) s["minLength"] = 1, s["maxLength"] = 1 + pick(5);
                else if (v == 2) s["format"] = std::vector<std::string>{"date", "time", "date-time", "uuid", "email", "ipv4", "uri"}[pick(7)];
                else if (v == 3) s["pattern"] = std::vector<std::string>{"^[a-z]{1,4}$", "^\\d{2}-[A-F]+?$", "^(yes|no|maybe)$", "^[^\"\\\\]{0,3}x$"}[pick(4)];
                else s["enum"] = {"alpha", "b\"eta", "", "γ"};
                return s;
            }
            case 3: {
                Json s = {{"type", "integer"}};
                if (coin(60)) s["minimum"] = pick(200) - 100;
                if (coin(60)) s["maximum"] = (s.contains("minimum") ? s["minimum"].get<int>() : 0) + pick(500);
                if (coin(15))
                    s["exclusiveMaximum"] = (s.contains("maximum")   ? s["maximum"].get<int>()
                                             : s.contains("minimum") ? s["minimum"].get<int>()
                                                                     : 0) + 1 + pick(3);
                return s;
            }
            case 4: {
                Json s = {{"type", "number"}};
                if (coin(50)) s["minimum"] = pick(10) - 5;
                if (coin(50)) s["maximum"] = (s.contains("minimum") ? s["minimum"].get<int>() : 0) + 1 + pick(10);
                if (coin(20)) s["exclusiveMinimum"] = (s.contains("minimum") ? s["minimum"].get<int>() : -3);
                return s;
            }
            case 5: return coin(50) ? Json{{"type", "boolean"}} : Json{{"type", {"integer", "null"}}, {"maximum", 9}, {"minimum", 0}};
            case 6: return Json{{"const", coin(50) ? Json("fixed") : Json::parse(R"({"k":[1,null]})")}};
            case 7: return Json{{"enum", {1, "two", nullptr, true, 3.5}}};
            case 8: {
                Json alts = Json::array();
                for (int k = 0, n = 2 + pick(2); k < n; ++k) alts.push_back(gen(depth + 1));
                return Json{{"anyOf", alts}};
            }
            case 9: {
                if (n_defs_ >= 2 || depth >= 3) return Json{{"type", "null"}};
                const std::string name = "d" + std::to_string(n_defs_++);
                defs_[name] = gen(depth + 1);
                return Json{{"$ref", "#/$defs/" + name}};
            }
            default: return array(depth);
        }
    }

    Json object(int depth) {
        Json s = {{"type", "object"}};
        Json props = Json::object();
        Json req = Json::array();
        for (int k = 0, n = pick(4); k < n; ++k) {
            std::string key = word();
            if (props.contains(key)) continue;
            props[key] = gen(depth + 1);
            if (coin(60)) req.push_back(key);
        }
        // Always `properties`: an object without them allows any keys, and a key is a string no
        // schema bounds (additionalProperties is covered by the chat tests instead).
        s["properties"] = props;
        if (!req.empty()) s["required"] = req;
        if (coin(10)) s["additionalProperties"] = false;
        return s;
    }

    Json array(int depth) {
        Json s = {{"type", "array"}};
        if (coin(20)) {
            s["prefixItems"] = Json::array({gen(depth + 1), gen(depth + 1)});
            s["items"] = false;
        } else {
            s["items"] = gen(depth + 1);
        }
        const int mn = pick(3);
        s["minItems"] = std::min(mn, s.contains("prefixItems") ? 2 : mn);
        s["maxItems"] = s["minItems"].get<int>() + pick(3);
        if (s.contains("prefixItems")) s["maxItems"] = std::min(2, s["maxItems"].get<int>());
        return s;
    }

    std::mt19937_64 rng_;
    Json defs_;
    int n_defs_ = 0;
};

}  // namespace hearth::runtime
