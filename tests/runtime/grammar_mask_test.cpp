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
#include "runtime/model_loader.h"
#include "runtime/schema_gen.h"
#include "support/testdata.h"

namespace hearth::runtime {
namespace {

using chat::Json;

using test::Loaded;
using test::load;

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
        // Counted repetitions (the counted loop tables): a string filled to exactly its maxLength,
        // minLength, escapes counted as one character, and counted items nested in a counted array.
        {R"({"type":"object","properties":{"s":{"type":"string","minLength":2,"maxLength":5},
            "t":{"type":"string","maxLength":39},
            "a":{"type":"array","items":{"type":"string","minLength":1,"maxLength":3},"minItems":1,"maxItems":3}},
            "required":["s","t","a"]})",
         "{\"s\": \"h\xC3\xA9\\\"lo\", \"t\": \"abcdefghij klmnopqrst uvwxyz 0123456789\", \"a\": [\"ab\", \"\\u00e9\", \"xyz\"]}"},
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

// SchemaGen: tests/runtime/schema_gen.h (shared with the tool-call mask test).

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
