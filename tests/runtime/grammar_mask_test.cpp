// runtime::GrammarMask: the per-step allowed set equals a brute-force check of every token,
// special tokens are never allowed, end-of-generation only where the grammar can end, and the
// property test: 200+ random JSON Schemas, sampled at temperature 1 with the tiny test models,
// always give output that completes, parses and validates. Also `format: "json"` and the
// deferred mask of thinking models.
#include "runtime/grammar_mask.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>

#include "chat/json_schema.h"
#include "runtime/generate.h"
#include "support/testdata.h"

namespace hearth::runtime {
namespace {

using chat::Json;

struct Loaded {
    std::unique_ptr<tok::Tokenizer> tok;
    std::unique_ptr<model::Model> model;
};

Loaded load(const std::string& name) {
    Loaded l;
    auto f = gguf::open_gguf(test::testdata_path("models/" + name));
    EXPECT_TRUE(f.ok()) << f.status().message();
    if (!f.ok()) return l;
    auto t = tok::Tokenizer::from_gguf(*f.value());
    EXPECT_TRUE(t.ok()) << t.status().message();
    if (!t.ok()) return l;
    l.tok = std::move(t).value();
    auto m = model::load_model(f.value(), model::LoadOptions{2});
    EXPECT_TRUE(m.ok()) << m.status().message();
    if (m.ok()) l.model = std::move(m).value();
    return l;
}

bool bit(const std::vector<uint64_t>& bits, int32_t id) { return (bits[id >> 6] >> (id & 63)) & 1; }

// Every token's verdict from scratch: a fresh matcher fed the text so far, then the token.
void expect_exact(GrammarMask& mask, const std::shared_ptr<const chat::Grammar>& g, const TokenTable& table,
                  const tok::Tokenizer& tok, const std::string& text_so_far) {
    const std::vector<uint64_t> bits = mask.allowed();
    chat::GrammarMatcher base(g);
    ASSERT_TRUE(base.accept(text_so_far));
    for (int32_t id = 0; id < table.n_vocab(); ++id) {
        bool expect;
        if (tok.is_eog(id)) {
            expect = base.can_end();
        } else if (table.piece(id).empty()) {
            expect = false;
        } else {
            chat::GrammarMatcher m(g);
            expect = m.accept(text_so_far) && m.accept(table.piece(id));
        }
        ASSERT_EQ(bit(bits, id), expect) << "token " << id << " '" << table.piece(id) << "' after '" << text_so_far << "'";
    }
}

TEST(GrammarMask, AllowedSetMatchesBruteForce) {
    // Bounded strings (the general trie walk) and free strings (the `[class]*` loop tables),
    // with escapes, multi-byte characters and byte tokens.
    const std::pair<const char*, const char*> cases[] = {
        {R"({"type":"object","properties":{"name":{"type":"string","maxLength":6},
            "n":{"type":"integer","minimum":-5,"maximum":250},"tags":{"type":"array","items":{"enum":["ab","c d"]},"maxItems":2}},
            "required":["name","n"]})",
         "{\"name\": \"h\\u00e9\xC3\xA9\", \"n\":249,\"tags\":[\"c d\"]}"},
        {R"("json")", "{\"k\": \"a \\\"quoted\\\" \xE2\x82\xAC word\\n\", \"v\": [1.5, \"\xF0\x9F\x98\x80x\", {}]}"},
    };
    for (const char* model : {"llama3-tiny.Q8_0.gguf", "qwen3-tiny.Q8_0.gguf", "llama2-spm-tiny.F32.gguf"}) {
        Loaded l = load(model);
        ASSERT_TRUE(l.tok);
        for (const auto& [schema_text, text_c] : cases) {
        const Json schema = Json::parse(schema_text);
        const std::string text = text_c;
        auto gbnf = chat::format_to_gbnf(schema);
        ASSERT_TRUE(gbnf.ok()) << gbnf.status().message();
        auto g = chat::Grammar::parse(gbnf.value());
        ASSERT_TRUE(g.ok()) << g.status().message();
        auto table = TokenTable::get(*l.tok);
        GrammarMask mask(table, g.value());
        // Walk a fixed valid text, each step taking the longest allowed token that continues it.
        std::string so_far;
        while (so_far.size() < text.size()) {
            expect_exact(mask, g.value(), *table, *l.tok, so_far);
            const std::vector<uint64_t>& bits = mask.allowed();
            int32_t best = -1;
            for (int32_t id = 0; id < table->n_vocab(); ++id) {
                const std::string_view p = table->piece(id);
                if (bit(bits, id) && !p.empty() && text.compare(so_far.size(), p.size(), p) == 0 &&
                    (best < 0 || p.size() > table->piece(best).size()))
                    best = id;
            }
            ASSERT_GE(best, 0) << model << ": no allowed token continues " << so_far;
            mask.accept(best);
            so_far += table->piece(best);
        }
        EXPECT_TRUE(mask.complete());
        EXPECT_FALSE(mask.failed());
        }
    }
}

TEST(GrammarMask, SpecialTokensNeverAndEndOfGenerationOnlyAtTheEnd) {
    Loaded l = load("qwen3-tiny.Q8_0.gguf");
    ASSERT_TRUE(l.tok);
    auto m = make_grammar_mask(*l.tok, "root ::= [a-z<>/|_]+");
    ASSERT_TRUE(m.ok()) << m.status().message();
    std::vector<float> logits(l.tok->n_vocab(), 0.0f);
    m.value()->apply(logits);
    for (int32_t id = 0; id < l.tok->n_vocab(); ++id) {
        const uint32_t a = l.tok->token_attr(id);
        if (a & (tok::kAttrControl | tok::kAttrUserDefined)) {
            EXPECT_EQ(logits[id], -INFINITY) << l.tok->token_text(id);
        }
        if (l.tok->is_eog(id)) {
            EXPECT_EQ(logits[id], -INFINITY);  // nothing generated yet
        }
    }
    m.value()->accept(l.tok->encode("abc", false, false)[0]);
    std::fill(logits.begin(), logits.end(), 0.0f);
    m.value()->apply(logits);
    for (int32_t id : l.tok->eog_ids()) EXPECT_EQ(logits[id], 0.0f);
}

TEST(GrammarMask, FormatErrorsAreNeverIgnored) {
    Loaded l = load("llama3-tiny.Q8_0.gguf");
    ASSERT_TRUE(l.tok);
    EXPECT_EQ(make_format_mask(*l.tok, nlohmann::json("yaml")).status().code(), StatusCode::invalid_argument);
    auto st = make_format_mask(*l.tok, nlohmann::json::parse(R"({"type":"string","format":"hostname"})")).status();
    EXPECT_EQ(st.code(), StatusCode::unsupported);
    EXPECT_NE(st.message().find("hostname"), std::string::npos);
    EXPECT_EQ(make_grammar_mask(*l.tok, "root ::= undefined-rule").status().code(), StatusCode::invalid_argument);
    EXPECT_TRUE(make_format_mask(*l.tok, nlohmann::json("json")).ok());
}

// ---- the property test -----------------------------------------------------------------------

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

struct Outcome {
    std::string text;
    Result<GenerateStats> stats = error(StatusCode::internal, "not run");
};

Outcome run(const Loaded& l, std::shared_ptr<LogitsMask> mask, uint64_t seed, int64_t num_predict, const std::string& prompt) {
    Outcome o;
    auto s = model::Session::create(*l.model, 1024);
    EXPECT_TRUE(s.ok());
    GenerateRequest r;
    r.prompt = l.tok->encode(prompt, true, false);
    r.sampling.temperature = 1.0f;
    r.sampling.top_k = 0;
    r.sampling.top_p = 1.0f;
    r.sampling.seed = static_cast<int64_t>(seed);
    r.num_predict = num_predict;
    r.mask = std::move(mask);
    o.stats = generate(s.value(), *l.tok, r, [&](std::string_view p) {
        o.text += p;
        return true;
    });
    return o;
}

TEST(GrammarMask, RandomSchemasAlwaysGiveValidOutput) {
    const Loaded models[] = {load("qwen3-tiny.Q8_0.gguf"), load("llama3-tiny.Q8_0.gguf")};
    for (const Loaded& l : models) ASSERT_TRUE(l.model && l.tok);
    SchemaGen gen(20261125);
    constexpr int kSchemas = 220;
    int n_generated = 0;
    int64_t n_tokens = 0;
    for (int i = 0; i < kSchemas; ++i) {
        const Json schema = gen.schema();
        const Loaded& l = models[i % 2];
        auto mask_or = make_format_mask(*l.tok, schema);
        ASSERT_TRUE(mask_or.ok()) << "schema " << i << ": " << mask_or.status().message() << "\n" << schema.dump();
        // One seed per schema, and two more for every tenth.
        for (int k = 0; k < (i % 10 == 0 ? 3 : 1); ++k) {
            auto mask = make_format_mask(*l.tok, schema).value();
            const Outcome o = run(l, mask, 1000 * i + k, 800, "Answer in JSON:");
            ASSERT_TRUE(o.stats.ok()) << "schema " << i << ": " << o.stats.status().message() << "\n"
                                      << schema.dump() << "\n" << o.text;
            ++n_generated;
            n_tokens += o.stats->generated_tokens;
            if (std::getenv("HEARTH_SHOW_OUTPUTS")) std::printf("%s\n  -> %s\n", schema.dump().c_str(), o.text.c_str());
            ASSERT_EQ(o.stats->done, DoneReason::stop)
                << "schema " << i << " seed " << k << " did not finish in 800 tokens:\n" << schema.dump() << "\n" << o.text;
            auto v = Json::parse(o.text, nullptr, false);
            ASSERT_FALSE(v.is_discarded()) << "schema " << i << ": not JSON:\n" << o.text << "\nschema: " << schema.dump();
            Status st = chat::validate_json(schema, v);
            ASSERT_TRUE(st.ok()) << "schema " << i << ": " << st.message() << "\n" << o.text << "\nschema: " << schema.dump();
        }
    }
    EXPECT_GE(n_generated, 200);
    std::printf("%d constrained generations, %lld tokens\n", n_generated, static_cast<long long>(n_tokens));
}

TEST(GrammarMask, FormatJsonGivesAnObject) {
    Loaded l = load("qwen3-tiny.Q8_0.gguf");
    ASSERT_TRUE(l.model);
    // Free JSON has no bounds on lengths, so a random model may not finish: what it writes is
    // always a valid prefix, and what finishes parses.
    int n_finished = 0;
    for (uint64_t seed = 1; seed <= 12; ++seed) {
        auto mask = make_format_mask(*l.tok, nlohmann::json("json"));
        ASSERT_TRUE(mask.ok());
        const Outcome o = run(l, mask.value(), seed, 300, "JSON:");
        ASSERT_TRUE(o.stats.ok()) << o.stats.status().message();
        ASSERT_FALSE(o.text.empty());
        EXPECT_EQ(o.text[0], '{');
        if (o.stats->done != DoneReason::stop) continue;
        ++n_finished;
        auto v = Json::parse(o.text, nullptr, false);
        ASSERT_FALSE(v.is_discarded()) << o.text;
        EXPECT_TRUE(v.is_object()) << o.text;
    }
    EXPECT_GT(n_finished, 0);
}

TEST(GrammarMask, DeferredMaskLeavesThinkingFree) {
    Loaded l = load("qwen3-tiny.Q8_0.gguf");
    ASSERT_TRUE(l.tok);
    auto inner = make_grammar_mask_for(TokenTable::get(*l.tok), "root ::= \"{\" [0-9] \"}\"");
    ASSERT_TRUE(inner.ok());
    auto mask = make_deferred_mask(*l.tok, inner.value(), "</think>");
    std::vector<float> logits(l.tok->n_vocab());
    auto n_allowed = [&] {
        std::fill(logits.begin(), logits.end(), 0.0f);
        mask->apply(logits);
        return std::count_if(logits.begin(), logits.end(), [](float x) { return x > -INFINITY; });
    };
    const auto n_free = n_allowed();
    EXPECT_EQ(n_free, l.tok->n_vocab() - static_cast<int64_t>(l.tok->eog_ids().size()));  // free, but not the end
    // Thinking text, with the marker split over byte-level tokens.
    for (int32_t id : l.tok->encode("<think>\nhmm {not json} </th", false, true)) {
        mask->accept(id);
        EXPECT_EQ(n_allowed(), n_free);
    }
    for (int32_t id : l.tok->encode("ink>", false, false)) mask->accept(id);
    // Now the grammar rules: only "{".
    EXPECT_EQ(n_allowed(), 1);
    EXPECT_GT(logits[l.tok->encode("{", false, false)[0]], -INFINITY);
    EXPECT_FALSE(mask->complete());
    // The marker as one special token, with text after it inside a later token.
    auto inner2 = make_grammar_mask_for(TokenTable::get(*l.tok), "root ::= \"{\" [0-9] \"}\"");
    auto mask2 = make_deferred_mask(*l.tok, inner2.value(), "</think>");
    const int32_t end_think = l.tok->find_token("</think>");
    ASSERT_GE(end_think, 0);
    mask2->accept(end_think);
    for (int32_t id : l.tok->encode("{7}", false, false)) mask2->accept(id);
    EXPECT_TRUE(mask2->complete());
    // A lazy constraint (tool calls) may also end before its marker.
    auto lazy = make_deferred_mask(*l.tok, make_grammar_mask_for(TokenTable::get(*l.tok), "root ::= \"x\"").value(),
                                   "<tool_call>", /*end_before_marker=*/true);
    std::fill(logits.begin(), logits.end(), 0.0f);
    lazy->apply(logits);
    for (int32_t id : l.tok->eog_ids()) EXPECT_EQ(logits[id], 0.0f);
}

}  // namespace
}  // namespace hearth::runtime
