// chat::Grammar and GrammarMatcher: GBNF parsing, errors with positions, and acceptance of
// hand-written cases (repetition, classes, UTF-8, prefixes, completion, undo).
#include "chat/grammar.h"

#include <gtest/gtest.h>

namespace hearth::chat {
namespace {

std::shared_ptr<const Grammar> parse_ok(const std::string& text) {
    auto g = Grammar::parse(text);
    EXPECT_TRUE(g.ok()) << g.status().message() << "\n" << text;
    return g.ok() ? g.value() : nullptr;
}

// The whole input is a sentence of the grammar.
bool full_match(const std::shared_ptr<const Grammar>& g, const std::string& input) {
    GrammarMatcher m(g);
    return m.accept(input) && m.can_end();
}

// The input is a prefix of some sentence.
bool prefix_match(const std::shared_ptr<const Grammar>& g, const std::string& input) {
    GrammarMatcher m(g);
    return m.accept(input);
}

std::string parse_error(const std::string& text) {
    auto g = Grammar::parse(text);
    EXPECT_FALSE(g.ok()) << "parsed: " << text;
    return g.ok() ? "" : g.status().message();
}

TEST(Grammar, LiteralsSequencesAlternatives) {
    auto g = parse_ok("root ::= \"ab\" (\"c\" | \"de\") tail\ntail ::= \"!\" | \"\"\n");
    EXPECT_TRUE(full_match(g, "abc!"));
    EXPECT_TRUE(full_match(g, "abde"));
    EXPECT_FALSE(full_match(g, "abd"));
    EXPECT_TRUE(prefix_match(g, "abd"));
    EXPECT_FALSE(prefix_match(g, "abx"));
    EXPECT_FALSE(full_match(g, "abc!!"));
}

TEST(Grammar, ClassesAndAnyChar) {
    auto g = parse_ok("root ::= [a-c0-9_] [^x-z] .");
    EXPECT_TRUE(full_match(g, "a \n"));
    EXPECT_TRUE(full_match(g, "_Q\xC3\xA9"));  // "é" as the last code point
    EXPECT_FALSE(full_match(g, "dxx"));
    EXPECT_FALSE(full_match(g, "ayx"));
    auto neg = parse_ok("root ::= [^\"\\\\]+");
    EXPECT_TRUE(full_match(neg, "hello world"));
    EXPECT_FALSE(full_match(neg, "a\"b"));
    EXPECT_FALSE(full_match(neg, "a\\b"));
    EXPECT_FALSE(full_match(neg, ""));
}

TEST(Grammar, Repetitions) {
    auto g = parse_ok("root ::= \"a\"? [b]* (\"c\" \"d\")+ [e]{2} [f]{1,3} \"g\"{2,}");
    EXPECT_TRUE(full_match(g, "cdeefgg"));
    EXPECT_TRUE(full_match(g, "abbbcdcdeefffggggg"));
    EXPECT_FALSE(full_match(g, "eefgg"));        // (cd)+ needs one
    EXPECT_FALSE(full_match(g, "cdefgg"));       // e{2}
    EXPECT_FALSE(full_match(g, "cdeeffffgg"));   // f{1,3}
    EXPECT_FALSE(full_match(g, "cdeefg"));       // g{2,}
    auto groups = parse_ok("root ::= (\"x\" [0-9]{0,2}){3}");
    EXPECT_TRUE(full_match(groups, "xx1x22"));
    EXPECT_FALSE(full_match(groups, "xx1x223"));
    EXPECT_FALSE(full_match(groups, "xx"));
}

// x{m,n} against its textbook expansion (m copies, then nested optionals), over every string of
// a small alphabet up to a length: the counted element must accept exactly the same prefixes
// and sentences. Covers class items, rule items with several alternatives, multi-character
// iterations, nullable items, nesting and a repetition right before its own class.
TEST(Grammar, CountedRepetitionMatchesItsExpansion) {
    const std::pair<const char*, const char*> cases[] = {
        {"root ::= [ab]{2,4}", "root ::= [ab] [ab] ([ab] ([ab])?)?"},
        {"root ::= [ab]{0,3} \"b\"", "root ::= ([ab] ([ab] ([ab])?)?)? \"b\""},
        {"root ::= (\"a\" | \"bc\"){1,3} \"c\"?", "root ::= x (x (x)?)? \"c\"?\nx ::= \"a\" | \"bc\""},
        {"root ::= (\"a\" [bc]{1,2}){2,3}", "root ::= y y y?\ny ::= \"a\" [bc] [bc]?"},
        {"root ::= (\"a\"?){2,3} \"b\"", "root ::= \"a\"? \"a\"? \"a\"? \"b\""},
        {"root ::= (\"a\" | \"b\"*){1,2} \"c\"", "root ::= z z? \"c\"\nz ::= \"a\" | \"b\"*"},
        {"root ::= [a]{3,} \"b\"", "root ::= [a] [a] [a] [a]* \"b\""},
        {"root ::= ([ab]{1,2} \"c\"){0,2}", "root ::= (w (w)?)?\nw ::= [ab] [ab]? \"c\""},
    };
    for (const auto& [counted_text, expanded_text] : cases) {
        auto counted = parse_ok(counted_text);
        auto expanded = parse_ok(expanded_text);
        ASSERT_TRUE(counted && expanded);
        std::vector<std::string> inputs = {""};
        for (size_t at = 0; at < inputs.size(); ++at) {
            const std::string in = inputs[at];
            GrammarMatcher a(counted), b(expanded);
            const bool pa = a.accept(in), pb = b.accept(in);
            ASSERT_EQ(pa, pb) << counted_text << " prefix '" << in << "'";
            if (!pa) continue;
            ASSERT_EQ(a.can_end(), b.can_end()) << counted_text << " sentence '" << in << "'";
            ASSERT_EQ(a.can_continue(), b.can_continue()) << counted_text << " after '" << in << "'";
            if (in.size() < 8)
                for (char c : std::string("abc")) inputs.push_back(in + c);
        }
    }
}

TEST(Grammar, LargeCountsStayOneElement) {
    auto g = parse_ok("root ::= \"\\\"\" ([^\"\\\\] | \"\\\\\" [nt]){0,10000} \"\\\"\"");
    ASSERT_TRUE(g);
    EXPECT_LT(g->elems().size(), 32u);
    GrammarMatcher m(g);
    ASSERT_TRUE(m.accept("\""));
    for (int k = 0; k < 10000; ++k) ASSERT_TRUE(m.accept(k % 100 == 0 ? "\\n" : "x")) << k;
    EXPECT_FALSE(m.accept("x"));
    EXPECT_TRUE(m.accept("\""));
    EXPECT_TRUE(m.is_complete());
    // The counted fast path's precondition holds inside the string and not after it.
    GrammarMatcher n(g);
    ASSERT_TRUE(n.accept("\"ab"));
    GrammarMatcher::CountedLoop loop;
    ASSERT_TRUE(n.counted_loop(loop));
    EXPECT_EQ(loop.remaining, 9998u);
    ASSERT_TRUE(n.accept("\""));
    EXPECT_FALSE(n.counted_loop(loop));
}

TEST(Grammar, EscapesCommentsAndLineBreaks) {
    auto g = parse_ok(
        "# a comment line\n"
        "root ::= item (\",\" item)*   # trailing comment\n"
        "item ::=\n"
        "    \"\\x41\" | \"\\u00e9\" | \"\\U0001F600\" | \"\\n\" | \"\\t\" | \"\\\"\"\n"
        "  | ( \"q\"\n"
        "      \"r\" )\n");
    EXPECT_TRUE(full_match(g, "A,\xC3\xA9,\xF0\x9F\x98\x80,\n,\t,\",qr"));
    EXPECT_FALSE(full_match(g, "q r"));
}

TEST(Grammar, Utf8IsCheckedPerCodePointAndByPrefix) {
    auto g = parse_ok("root ::= [\\u0400-\\u04FF]+");  // Cyrillic
    EXPECT_TRUE(full_match(g, "\xD0\x96\xD1\x8F"));  // Жя
    GrammarMatcher m(g);
    EXPECT_TRUE(m.push_byte(0xD0));   // a prefix of some Cyrillic letter
    EXPECT_FALSE(m.can_end());        // mid character
    EXPECT_FALSE(m.push_byte(0x41));  // not a continuation byte
    EXPECT_TRUE(m.push_byte(0x96));
    EXPECT_TRUE(m.can_end());
    GrammarMatcher m2(g);
    EXPECT_FALSE(m2.push_byte(0xE4));  // 3-byte characters start at U+0800: none in the class
    EXPECT_FALSE(m2.push_byte(0xC0));  // never valid UTF-8
    EXPECT_FALSE(m2.push_byte('a'));
}

TEST(Grammar, PushPopAndCommit) {
    auto g = parse_ok("root ::= \"abc\" | \"abd\"");
    GrammarMatcher m(g);
    ASSERT_TRUE(m.push_byte('a'));
    ASSERT_TRUE(m.push_byte('b'));
    ASSERT_TRUE(m.push_byte('c'));
    EXPECT_TRUE(m.is_complete());
    m.pop();
    EXPECT_FALSE(m.is_complete());
    EXPECT_FALSE(m.push_byte('e'));
    EXPECT_EQ(m.n_pushed(), 2u);
    ASSERT_TRUE(m.push_byte('d'));
    m.commit();
    EXPECT_EQ(m.n_pushed(), 0u);
    EXPECT_TRUE(m.is_complete());
    EXPECT_FALSE(m.can_continue());
    // accept() is all or nothing.
    GrammarMatcher m2(g);
    EXPECT_FALSE(m2.accept("abx"));
    EXPECT_TRUE(m2.accept("ab"));
    EXPECT_TRUE(m2.accept("c"));
    EXPECT_TRUE(m2.is_complete());
}

TEST(Grammar, CanEndButContinue) {
    auto g = parse_ok("root ::= [0-9]+");
    GrammarMatcher m(g);
    EXPECT_FALSE(m.can_end());
    ASSERT_TRUE(m.accept("12"));
    EXPECT_TRUE(m.can_end());
    EXPECT_TRUE(m.can_continue());
    EXPECT_FALSE(m.is_complete());
}

TEST(Grammar, RecursionAndLongInputsStayShallow) {
    auto g = parse_ok(
        "root ::= value\n"
        "value ::= \"[\" (value (\",\" value)*)? \"]\" | [0-9]\n");
    EXPECT_TRUE(full_match(g, "[1,[2,[]],[[3]]]"));
    EXPECT_FALSE(full_match(g, "[1,]"));
    // A long right-recursive repetition does not grow the stack set.
    auto s = parse_ok("root ::= \"\\\"\" [a-z]* \"\\\"\"");
    GrammarMatcher m(s);
    ASSERT_TRUE(m.accept("\""));
    for (int i = 0; i < 10000; ++i) ASSERT_TRUE(m.accept("x"));
    EXPECT_EQ(m.n_stacks(), 1u);
    ASSERT_TRUE(m.accept("\""));
    EXPECT_TRUE(m.is_complete());
}

TEST(Grammar, AmbiguityDoesNotBlowUp) {
    // Two ways to read every space; the state stays small because equal stacks merge.
    auto g = parse_ok("root ::= (ws | sp)* \"x\"\nws ::= [ ]\nsp ::= \" \"");
    GrammarMatcher m(g);
    for (int i = 0; i < 200; ++i) ASSERT_TRUE(m.accept(" "));
    EXPECT_LT(m.n_stacks(), 8u);
    EXPECT_TRUE(m.accept("x"));
    EXPECT_TRUE(m.can_end());
}

TEST(Grammar, ErrorsNamePositions) {
    EXPECT_NE(parse_error("root ::= foo\n").find("line 1, column 10: undefined rule 'foo'"), std::string::npos);
    EXPECT_NE(parse_error("a ::= \"x\"\n").find("no rule 'root'"), std::string::npos);
    EXPECT_NE(parse_error("root ::= \"x\"\nroot ::= \"y\"\n").find("line 2, column 1: rule 'root' is defined twice"),
              std::string::npos);
    EXPECT_NE(parse_error("root ::= \"abc\n").find("line 1"), std::string::npos);
    EXPECT_NE(parse_error("root ::= [a-z\n").find("line"), std::string::npos);
    EXPECT_NE(parse_error("root ::= \"\\q\"").find("unknown escape \\q"), std::string::npos);
    EXPECT_NE(parse_error("root ::= \"a\"{3,1}").find("n < m"), std::string::npos);
    EXPECT_NE(parse_error("root ::= (\"a\"").find("expected ')'"), std::string::npos);
    EXPECT_NE(parse_error("root ::= \"a\" )").find("unbalanced ')'"), std::string::npos);
    EXPECT_NE(parse_error("root ::= x ::= y").find("line 1"), std::string::npos);
    EXPECT_NE(parse_error("root ::= [z-a]").find("end before its start"), std::string::npos);
    EXPECT_NE(parse_error("root ::= \"a\"{20000}").find("repetition count above"), std::string::npos);
}

TEST(Grammar, LeftRecursionIsAnError) {
    EXPECT_NE(parse_error("root ::= root \"a\" | \"b\"").find("left recursion"), std::string::npos);
    EXPECT_NE(parse_error("root ::= a\na ::= b \"x\"\nb ::= \"\" | a").find("left recursion"), std::string::npos);
    // A repetition of something that can match nothing would loop forever.
    EXPECT_NE(parse_error("root ::= (\"a\"?)*").find("left recursion"), std::string::npos);
    // Right recursion is fine.
    auto g = parse_ok("root ::= \"a\" root | \"b\"");
    EXPECT_TRUE(full_match(g, "aaab"));
}

TEST(Grammar, EmptyRootAndEmptyAlternatives) {
    auto g = parse_ok("root ::= \"\" | \"a\"");
    GrammarMatcher m(g);
    EXPECT_TRUE(m.can_end());
    EXPECT_TRUE(m.can_continue());
    EXPECT_TRUE(full_match(g, "a"));
    EXPECT_TRUE(full_match(g, ""));
}

}  // namespace
}  // namespace hearth::chat
