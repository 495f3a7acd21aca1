// Pre-tokenizer splits on hand-made strings. Expected pieces were checked against llama.cpp's
// unicode_regex_split (commit 34af94cd) when written.
#include "tokenizer/pretokenize.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <gtest/gtest.h>
#include <pcre2.h>

#include <random>

#include "support/testdata.h"

namespace hearth::tok {
namespace {

using Pieces = std::vector<std::string>;

Pieces split(std::string_view pre, std::string_view text) {
    auto p = PreTokenizer::create(pre);
    EXPECT_TRUE(p.ok()) << p.status().message();
    if (!p.ok()) return {};
    std::vector<std::string_view> views;
    p.value()->split(text, views);
    return Pieces(views.begin(), views.end());
}

TEST(PreTokenizer, SupportsTheFamiliesLlamaCppSplitsWithRegexes) {
    const char* names[] = {
        "default", "gpt-2", "llama-bpe", "llama3", "qwen2", "qwen35", "deepseek-llm",
        "deepseek-coder", "deepseek-v3", "falcon", "mpt", "starcoder", "refact", "gpt-4o",
        "llama4", "command-r", "olmo", "dbrx", "smaug-bpe", "stablelm2", "jais", "jais-2",
        "tekken", "smollm", "bloom", "poro-chat", "chatglm-bpe", "viking", "exaone",
        "exaone-moe", "chameleon", "minerva-7b", "gpt3-finnish", "codeshell", "kimi-k2",
        "hunyuan", "hunyuan-dense", "seed-coder", "grok-2", "trillion", "bailingmoe", "glm4",
        "pixtral", "superbpe", "a.x-4.0", "tiny_aya", "afmoe", "laguna", "minicpm5", "youtu",
        "granite-embed-multi-97m", "gemma4", "minimax-m2", "solar-open", "megrez", "phi-2"};
    const std::string sample =
        "Hello, World!  I'm 12345 \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xf0\x9f\xa6\x99\n\n"
        "\t caf\xc3\xa9 3.14 ~~ <sentinel:1> \xe2\x80\x83x\r\n";
    for (const char* name : names) {
        auto p = PreTokenizer::create(name);
        ASSERT_TRUE(p.ok()) << name << ": " << p.status().message();
        EXPECT_EQ(p.value()->name(), name);
        EXPECT_FALSE(p.value()->regexes().empty()) << name;
        std::vector<std::string_view> pieces;
        p.value()->split(sample, pieces);
        std::string joined;
        for (std::string_view piece : pieces) {
            EXPECT_FALSE(piece.empty()) << name;
            joined += piece;
        }
        EXPECT_EQ(joined, sample) << name << ": pieces must cover the text in order";
    }
    EXPECT_GE(PreTokenizer::supported_names().size(), 80u);
}

TEST(PreTokenizer, UnknownNameIsUnsupported) {
    auto p = PreTokenizer::create("no-such-pre");
    ASSERT_FALSE(p.ok());
    EXPECT_EQ(p.status().code(), StatusCode::unsupported);
    EXPECT_NE(p.status().message().find("no-such-pre"), std::string::npos);
    // A missing tokenizer.ggml.pre is llama.cpp's "default".
    auto d = PreTokenizer::create("");
    ASSERT_TRUE(d.ok());
    EXPECT_EQ(d.value()->name(), "default");
}

TEST(PreTokenizer, FamilyFlagsFollowLlamaCpp) {
    auto llama3 = std::move(PreTokenizer::create("llama-bpe").value());
    EXPECT_TRUE(llama3->ignore_merges());
    EXPECT_TRUE(llama3->default_add_bos());
    EXPECT_TRUE(llama3->clean_spaces());
    EXPECT_TRUE(llama3->byte_encode());
    auto qwen2 = std::move(PreTokenizer::create("qwen2").value());
    EXPECT_FALSE(qwen2->ignore_merges());
    EXPECT_FALSE(qwen2->clean_spaces());
    EXPECT_TRUE(std::move(PreTokenizer::create("tekken").value())->ignore_merges());
    EXPECT_FALSE(std::move(PreTokenizer::create("dbrx").value())->ignore_merges());
    auto gemma4 = std::move(PreTokenizer::create("gemma4").value());
    EXPECT_FALSE(gemma4->byte_encode());
    EXPECT_TRUE(gemma4->escape_whitespaces());
    EXPECT_TRUE(gemma4->bpe_options().whole_newline_runs);
    EXPECT_FALSE(gemma4->bpe_options().byte_encode);
    // "default" is not the GPT-2 regex alone: llama.cpp applies four patterns.
    auto def = std::move(PreTokenizer::create("default").value());
    ASSERT_EQ(def->regexes().size(), 4u);
    EXPECT_EQ(def->regexes()[0], R"([\p{P}\$\+<=>\^~\|]+)");
    EXPECT_EQ(def->regexes()[3], "[0-9][0-9][0-9]");
}

TEST(PreTokenizer, Llama3) {
    EXPECT_EQ(split("llama-bpe", "Hello world"), (Pieces{"Hello", " world"}));
    EXPECT_EQ(split("llama-bpe", "I'm can't WE'LL they'RE"),
              (Pieces{"I", "'m", " can", "'t", " WE", "'LL", " they", "'RE"}));
    EXPECT_EQ(split("llama-bpe", "1234567 12"), (Pieces{"123", "456", "7", " ", "12"}));
    EXPECT_EQ(split("llama-bpe", "a  b"), (Pieces{"a", " ", " b"}));
    EXPECT_EQ(split("llama-bpe", "x   "), (Pieces{"x", "   "}));
    EXPECT_EQ(split("llama-bpe", "a\n\nb"), (Pieces{"a", "\n\n", "b"}));
    EXPECT_EQ(split("llama-bpe", "a \n  b"), (Pieces{"a", " \n", " ", " b"}));
    EXPECT_EQ(split("llama-bpe", "ok!!\n\nx"), (Pieces{"ok", "!!\n\n", "x"}));
    EXPECT_EQ(split("llama-bpe", "$100"), (Pieces{"$", "100"}));
    // Any one non-letter, non-digit, non-newline character may lead a word, tabs included.
    EXPECT_EQ(split("llama-bpe", "\tword"), (Pieces{"\tword"}));
    EXPECT_EQ(split("llama-bpe", "hello\xc2\xa0world"), (Pieces{"hello", "\xc2\xa0world"}));
    // U+3000 ideographic space is whitespace: the run keeps its last one for the word.
    EXPECT_EQ(split("llama-bpe", "\xe3\x80\x80\xe3\x80\x80x"),
              (Pieces{"\xe3\x80\x80", "\xe3\x80\x80x"}));
    // Emoji are symbols; CJK characters are letters.
    EXPECT_EQ(split("llama-bpe", "\xf0\x9f\xa6\x99\xf0\x9f\x9a\x80 hi"),
              (Pieces{"\xf0\x9f\xa6\x99\xf0\x9f\x9a\x80", " hi"}));
    EXPECT_EQ(split("llama-bpe", "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xe3\x83\x86\xe3\x82\xad"),
              (Pieces{"\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", " \xe3\x83\x86\xe3\x82\xad"}));
}

TEST(PreTokenizer, Qwen2AndQwen35) {
    EXPECT_EQ(split("qwen2", "1234 ab"), (Pieces{"1", "2", "3", "4", " ab"}));
    EXPECT_EQ(split("qwen2", "I'M here"), (Pieces{"I", "'M", " here"}));
    EXPECT_EQ(split("qwen2", "a  b\n\n  c"), (Pieces{"a", " ", " b", "\n\n", " ", " c"}));
    // A combining acute accent (U+0301) is a mark: not part of a Qwen2 word, part of a
    // Qwen3.5 word.
    EXPECT_EQ(split("qwen2", "e\xcc\x81t"), (Pieces{"e", "\xcc\x81t"}));
    EXPECT_EQ(split("qwen2", "e\xcc\x81 "), (Pieces{"e", "\xcc\x81", " "}));
    EXPECT_EQ(split("qwen35", "e\xcc\x81 "), (Pieces{"e\xcc\x81", " "}));
    EXPECT_EQ(split("qwen2", "\xe6\x88\x91\xe6\x83\xb3\xe5\x9c\xa8" "apple1314"),
              (Pieces{"\xe6\x88\x91\xe6\x83\xb3\xe5\x9c\xa8" "apple", "1", "3", "1", "4"}));
}

TEST(PreTokenizer, Gpt2) {
    EXPECT_EQ(split("gpt-2", "I'm I'M"), (Pieces{"I", "'m", " I", "'", "M"}));
    EXPECT_EQ(split("gpt-2", "1234 x"), (Pieces{"1234", " x"}));
    EXPECT_EQ(split("gpt-2", "  a"), (Pieces{" ", " a"}));
    EXPECT_EQ(split("gpt-2", "\tword"), (Pieces{"\t", "word"}));
    EXPECT_EQ(split("gpt-2", "hello  "), (Pieces{"hello", "  "}));
    EXPECT_EQ(split("gpt-2", "a\n\nb"), (Pieces{"a", "\n", "\n", "b"}));  // \s+(?!\S) leaves one
}

TEST(PreTokenizer, RegexFamilies) {
    // default: punctuation runs, GPT-2, digit runs, then ASCII digits in threes.
    EXPECT_EQ(split("default", "numbers 1234567890 a+b"),
              (Pieces{"numbers", " ", "123", "456", "789", "0", " a", "+", "b"}));
    EXPECT_EQ(split("starcoder", "x 123"), (Pieces{"x", " ", "1", "2", "3"}));
    EXPECT_EQ(split("deepseek-llm", "Hello \xe4\xb8\x96\xe7\x95\x8c" "123"),
              (Pieces{"Hello", " ", "\xe4\xb8\x96\xe7\x95\x8c", "123"}));
    EXPECT_EQ(split("superbpe", "1234567"), (Pieces{"1", "234", "567"}));
    // tiny_aya's digit step joins the text before a digit run to its first group, as
    // llama.cpp does; its word pattern separates them again.
    EXPECT_EQ(split("tiny_aya", "ab1234"), (Pieces{"ab", "1", "234"}));
    EXPECT_EQ(split("kimi-k2", "\xe6\x88\x91\xe6\x83\xb3\xe5\x9c\xa8" "apple" "\xe5\xb7\xa5"),
              (Pieces{"\xe6\x88\x91\xe6\x83\xb3\xe5\x9c\xa8", "apple", "\xe5\xb7\xa5"}));
    EXPECT_EQ(split("gpt-4o", "HelloWorld's 12345"), (Pieces{"Hello", "World's", " ", "123", "45"}));
    // Collapsed text: '~' is not \p{S} there (deepseek-v3's word pattern).
    EXPECT_EQ(split("deepseek-v3", "~\xc3\xa9t\xc3\xa9"), (Pieces{"~\xc3\xa9t\xc3\xa9"}));
    EXPECT_EQ(split("bloom", "Hello, world. ok"), (Pieces{"Hello", ",", " world", ".", " ok"}));
}

TEST(PreTokenizer, InvalidUtf8ReadsAsReplacementCharacters) {
    // Each undecodable byte is one U+FFFD (a symbol) for splitting; pieces keep the bytes.
    EXPECT_EQ(split("llama-bpe", "ab\xff" "cd"), (Pieces{"ab", "\xff" "cd"}));
    EXPECT_EQ(split("llama-bpe", "x\xe4\xb8"), (Pieces{"x", "\xe4\xb8"}));
    EXPECT_EQ(split("gpt-2", "x\xe4\xb8 y"), (Pieces{"x", "\xe4\xb8", " y"}));
    std::string out;
    EXPECT_FALSE(sanitize_utf8("plain \xc3\xa9", out));
    EXPECT_TRUE(sanitize_utf8("a\xe4\xb8", out));
    EXPECT_EQ(out, "a\xef\xbf\xbd\xef\xbf\xbd");

    std::mt19937 rng(7);
    for (const char* name : {"llama-bpe", "qwen2", "gpt-2", "default", "deepseek-llm",
                             "gpt-4o", "kimi-k2", "chameleon", "superbpe", "afmoe"}) {
        auto p = std::move(PreTokenizer::create(name).value());
        for (int iter = 0; iter < 200; ++iter) {
            std::string text(1 + rng() % 40, '\0');
            for (char& c : text) c = static_cast<char>(rng() % 3 == 0 ? ' ' : rng() & 0xFF);
            std::vector<std::string_view> pieces;
            p->split(text, pieces);
            std::string joined;
            for (std::string_view piece : pieces) {
                ASSERT_FALSE(piece.empty()) << name;
                joined += piece;
            }
            ASSERT_EQ(joined, text) << name;
        }
    }
}

TEST(PreTokenizer, EmptyTextHasNoPieces) {
    EXPECT_TRUE(split("llama-bpe", "").empty());
    EXPECT_TRUE(split("deepseek-llm", "").empty());
}

// The hand-written splitters must agree with the patterns they stand for, run by PCRE2 with
// Unicode properties, on llama.cpp's test strings (which use no characters whose category
// differs between PCRE2's and llama.cpp's Unicode versions).
Pieces pcre_split(std::string_view pattern, std::string_view text) {
    int err;
    PCRE2_SIZE off;
    pcre2_code* re = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                   PCRE2_UTF | PCRE2_UCP, &err, &off, nullptr);
    EXPECT_NE(re, nullptr);
    if (!re) return {};
    pcre2_match_data* md = pcre2_match_data_create_from_pattern(re, nullptr);
    Pieces out;
    size_t done = 0, from = 0;
    while (from < text.size()) {
        int rc = pcre2_match(re, reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), from, 0,
                             md, nullptr);
        if (rc < 0) break;
        const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
        if (ov[0] > done) out.emplace_back(text.substr(done, ov[0] - done));
        if (ov[1] > ov[0]) out.emplace_back(text.substr(ov[0], ov[1] - ov[0]));
        done = from = ov[1] > ov[0] ? ov[1] : ov[1] + 1;
    }
    if (done < text.size()) out.emplace_back(text.substr(done));
    pcre2_match_data_free(md);
    pcre2_code_free(re);
    return out;
}

TEST(PreTokenizer, HandWrittenSplittersMatchTheirRegexes) {
    const std::string sep = "\n__ggml_vocab_test__\n";
    std::vector<std::string> texts;
    for (const char* vocab : {"llama-bpe", "qwen2", "qwen35", "gpt-2", "command-r"}) {
        const std::string inp = test::read_text_file(
            test::testdata_path(std::string("tokenizers/ggml-vocab-") + vocab + ".gguf.inp"));
        for (size_t pos = 0, next; (next = inp.find(sep, pos)) != std::string::npos;
             pos = next + sep.size()) {
            texts.push_back(inp.substr(pos, next - pos));
        }
    }
    ASSERT_GE(texts.size(), 200u);
    for (const char* pre : {"llama-bpe", "qwen2", "qwen35", "gpt-2"}) {
        auto p = std::move(PreTokenizer::create(pre).value());
        ASSERT_EQ(p->regexes().size(), 1u);
        // GPT-2's pattern has no final \s+ alternative; an unmatched whitespace character
        // becomes a piece of its own either way.
        for (const std::string& text : texts) {
            std::vector<std::string_view> views;
            p->split(text, views);
            EXPECT_EQ(Pieces(views.begin(), views.end()), pcre_split(p->regexes()[0], text))
                << pre << ": '" << text << "'";
        }
    }
}

}  // namespace
}  // namespace hearth::tok
