// Tokenizer against llama.cpp's own outputs: its test-tokenizer-0 vectors (.inp/.out), the
// tokenizer_cases goldens on every vocab (three modes), and the prompt / chat / greedy goldens of
// every model file. Every id must match exactly.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "gguf/gguf.h"
#include "support/testdata.h"
#include "tokenizer/stream.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace hearth::tok {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

// Parsed tokenizers, loaded once per process (the big vocabularies take a moment to parse).
std::map<std::string, std::shared_ptr<Tokenizer>>& tokenizer_cache() {
    static std::map<std::string, std::shared_ptr<Tokenizer>> cache;
    return cache;
}

std::shared_ptr<Tokenizer> load_tokenizer(const std::string& rel_path) {
    auto& cache = tokenizer_cache();
    if (auto it = cache.find(rel_path); it != cache.end()) return it->second;
    const std::string path = test::testdata_path(rel_path);
    std::vector<uint8_t> bytes;
    const bool read_ok = rel_path.ends_with(".gz") ? test::read_gzip_file(path, bytes) : test::read_file(path, bytes);
    if (!read_ok) {
        ADD_FAILURE() << "cannot read " << path;
        return nullptr;
    }
    auto file = gguf::parse_gguf(std::as_bytes(std::span(bytes)));
    if (!file.ok()) {
        ADD_FAILURE() << path << ": " << file.status().message();
        return nullptr;
    }
    auto tok = Tokenizer::from_gguf(file.value());
    if (!tok.ok()) {
        ADD_FAILURE() << path << ": " << tok.status().message();
        return nullptr;
    }
    std::shared_ptr<Tokenizer> shared(std::move(tok).value());
    cache[rel_path] = shared;
    return shared;
}

std::vector<std::string> split_cases(const std::string& all) {
    static const std::string kSep = "\n__ggml_vocab_test__\n";
    std::vector<std::string> out;
    size_t pos = 0;
    for (size_t hit; (hit = all.find(kSep, pos)) != std::string::npos; pos = hit + kSep.size()) {
        out.push_back(all.substr(pos, hit - pos));
    }
    if (pos < all.size()) out.push_back(all.substr(pos));
    return out;
}

std::vector<int32_t> parse_ids(const std::string& line) {
    std::vector<int32_t> ids;
    size_t pos = 0;
    while (pos < line.size()) {
        while (pos < line.size() && line[pos] == ' ') ++pos;
        if (pos >= line.size()) break;
        size_t end = line.find(' ', pos);
        if (end == std::string::npos) end = line.size();
        ids.push_back(std::stoi(line.substr(pos, end - pos)));
        pos = end;
    }
    return ids;
}

std::string ids_str(const std::vector<int32_t>& ids) {
    std::string s = "[";
    for (size_t i = 0; i < ids.size(); ++i) s += (i ? ", " : "") + std::to_string(ids[i]);
    return s + "]";
}

std::string to_hex(std::string_view s) {
    std::string out;
    char buf[3];
    for (unsigned char c : s) {
        std::snprintf(buf, sizeof buf, "%02x", c);
        out += buf;
    }
    return out;
}

// The goldens' replacement of invalid UTF-8: every byte that does not start a complete valid
// sequence becomes one U+FFFD (not one per maximal subpart, as utf8_sanitize does).
std::string golden_sanitize(std::string_view s) {
    std::string out;
    for (size_t i = 0; i < s.size();) {
        const int r = utf8_check_prefix(s.substr(i));
        if (r > 0) {
            out.append(s.substr(i, r));
            i += static_cast<size_t>(r);
        } else {
            out += "\xEF\xBF\xBD";
            i += 1;
        }
    }
    return out;
}

json read_json(const std::string& rel) {
    const std::string text = test::read_text_file(test::testdata_path(rel));
    return json::parse(text, nullptr, /*allow_exceptions=*/false);
}

// ---------------------------------------------------------------------------------------------
// llama.cpp tests/test-tokenizer-0 vectors: add_special=false, parse_special=false.

class LlamaCppVectors : public testing::TestWithParam<std::string> {};

TEST_P(LlamaCppVectors, MatchesExactly) {
    const std::string vocab = "ggml-vocab-" + GetParam() + ".gguf";
    auto tok = load_tokenizer("tokenizers/" + vocab + ".gz");
    ASSERT_NE(tok, nullptr);
    const auto inputs = split_cases(test::read_text_file(test::testdata_path("tokenizers/" + vocab + ".inp")));
    const std::string out_text = test::read_text_file(test::testdata_path("tokenizers/" + vocab + ".out"));
    std::vector<std::string> lines;
    for (size_t pos = 0; pos < out_text.size();) {
        size_t end = out_text.find('\n', pos);
        if (end == std::string::npos) end = out_text.size();
        lines.push_back(out_text.substr(pos, end - pos));
        pos = end + 1;
    }
    ASSERT_GE(lines.size(), inputs.size());
    ASSERT_GT(inputs.size(), 0u);
    int n_pass = 0;
    for (size_t i = 0; i < inputs.size(); ++i) {
        const auto expected = parse_ids(lines[i]);
        const auto got = tok->encode(inputs[i], false, false);
        if (got == expected) {
            ++n_pass;
        } else {
            ADD_FAILURE() << vocab << " case " << i << " text '" << inputs[i] << "'\n  expected "
                          << ids_str(expected) << "\n  got      " << ids_str(got);
        }
    }
    std::printf("[ vectors  ] %-32s %d/%zu\n", vocab.c_str(), n_pass, inputs.size());
}

INSTANTIATE_TEST_SUITE_P(Vocabs, LlamaCppVectors,
                         testing::Values("bert-bge", "deepseek-coder", "deepseek-llm", "falcon", "gpt-2",
                                         "llama-spm", "mpt", "phi-3", "refact", "starcoder"),
                         [](const auto& info) {
                             std::string s = info.param;
                             for (char& c : s) if (c == '-') c = '_';
                             return s;
                         });

// ---------------------------------------------------------------------------------------------
// tokenizers/extra/*.tokens.json: prompts/tokenizer_cases.txt on every vocab, three modes.

class ExtraCases : public testing::TestWithParam<std::string> {};

TEST_P(ExtraCases, AllModesMatch) {
    const std::string vocab = "ggml-vocab-" + GetParam();
    auto tok = load_tokenizer("tokenizers/" + vocab + ".gguf.gz");
    ASSERT_NE(tok, nullptr);
    const json j = read_json("tokenizers/extra/" + vocab + ".tokens.json");
    ASSERT_TRUE(j.is_object());
    EXPECT_EQ(tok->n_vocab(), j["n_vocab"].get<int>());
    EXPECT_TRUE(tok->encode("", false, false).empty());
    EXPECT_TRUE(tok->encode("", false, true).empty());
    struct Mode {
        const char* key;
        bool add_special, parse_special;
    };
    const Mode modes[] = {{"plain", false, false}, {"add_special", true, false}, {"add_special_parse_special", true, true}};
    for (const Mode& m : modes) {
        int n_pass = 0, n = 0;
        for (const auto& c : j["cases"]) {
            const std::string text = c["text"].get<std::string>();
            const auto expected = c[m.key].get<std::vector<int32_t>>();
            const auto got = tok->encode(text, m.add_special, m.parse_special);
            ++n;
            if (got == expected) {
                ++n_pass;
            } else {
                ADD_FAILURE() << vocab << " mode " << m.key << " text '" << text << "'\n  expected "
                              << ids_str(expected) << "\n  got      " << ids_str(got);
            }
        }
        std::printf("[ extra    ] %-28s %-26s %d/%d\n", vocab.c_str(), m.key, n_pass, n);
    }
}

INSTANTIATE_TEST_SUITE_P(Vocabs, ExtraCases,
                         testing::Values("baichuan", "bert-bge", "deepseek-coder", "deepseek-llm", "falcon", "gpt-2",
                                         "gpt-neox", "llama-spm", "mpt", "phi-3", "refact", "starcoder"),
                         [](const auto& info) {
                             std::string s = info.param;
                             for (char& c : s) if (c == '-') c = '_';
                             return s;
                         });

// ---------------------------------------------------------------------------------------------
// Model goldens: every golden/<model>.json whose model file is in models/.

std::vector<std::string> golden_files() {
    std::vector<std::string> out;
    const std::string dir = test::testdata_path("golden");
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir, ec)) {
        if (e.path().extension() == ".json") out.push_back(e.path().filename().string());
    }
    std::sort(out.begin(), out.end());
    return out;
}

TEST(ModelGoldens, PromptChatGreedy) {
    const auto files = golden_files();
    ASSERT_GE(files.size(), 30u);
    for (const std::string& name : files) {
        SCOPED_TRACE(name);
        const json g = read_json("golden/" + name);
        ASSERT_TRUE(g.is_object());
        auto tok = load_tokenizer("models/" + g["model"].get<std::string>());
        ASSERT_NE(tok, nullptr);
        int n_checks = 0, n_pass = 0;
        auto check = [&](bool ok, const std::string& what) {
            ++n_checks;
            if (ok) ++n_pass;
            else ADD_FAILURE() << name << ": " << what;
        };
        EXPECT_EQ(tok->n_vocab(), g["n_vocab"].get<int>());

        const std::string prompt = g["prompt_text"].get<std::string>();
        const auto prompt_ids = g["prompt_tokens"].get<std::vector<int32_t>>();
        const auto got = tok->encode(prompt, true, false);
        check(got == prompt_ids, "prompt tokens\n  expected " + ids_str(prompt_ids) + "\n  got      " + ids_str(got));

        // Pieces (llama_token_to_piece with special=true; invalid UTF-8 shown as U+FFFD).
        if (g.contains("prompt_pieces")) {
            const auto pieces = g["prompt_pieces"].get<std::vector<std::string>>();
            bool ok = pieces.size() == prompt_ids.size();
            for (size_t i = 0; ok && i < pieces.size(); ++i) {
                ok = golden_sanitize(tok->token_to_piece(prompt_ids[i], true)) == pieces[i];
            }
            check(ok, "prompt pieces");
        }

        // Round trip: the prompt without the BOS the tokenizer added decodes to the prompt text.
        std::vector<int32_t> body = prompt_ids;
        if (!body.empty() && tok->add_bos() && body.front() == tok->bos()) body.erase(body.begin());
        if (tok->kind() == VocabKind::wpm) {
            if (!body.empty() && body.back() == tok->sep()) body.pop_back();
            std::string lower = " ";
            for (char c : prompt) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
            check(tok->decode(body, false) == lower, "bert decode");
        } else {
            std::string text = tok->decode(body, false);
            // SPM vocabularies without a standalone U+2581 piece spell spaces as byte tokens
            // <0xE2><0x96><0x81>; llama.cpp emits those bytes verbatim, so map them back here.
            if (tok->kind() == VocabKind::spm) {
                std::string spaced;
                for (size_t i = 0; i < text.size(); ++i) {
                    if (text.compare(i, 3, "\xE2\x96\x81") == 0) {
                        spaced += ' ';
                        i += 2;
                    } else {
                        spaced += text[i];
                    }
                }
                text = spaced;
            }
            check(text == prompt, "decode round trip: got '" + text + "'");
        }

        if (g.contains("chat")) {
            const json& chat = g["chat"];
            const std::string rendered = chat["rendered"].get<std::string>();
            const auto chat_ids = chat["tokens_add_special_parse_special"].get<std::vector<int32_t>>();
            const auto got_chat = tok->encode(rendered, true, true);
            check(got_chat == chat_ids,
                  "chat tokens\n  expected " + ids_str(chat_ids) + "\n  got      " + ids_str(got_chat));
            if (chat.contains("pieces")) {
                const auto pieces = chat["pieces"].get<std::vector<std::string>>();
                bool ok = pieces.size() == chat_ids.size();
                for (size_t i = 0; ok && i < pieces.size(); ++i) {
                    ok = golden_sanitize(tok->token_to_piece(chat_ids[i], true)) == pieces[i];
                }
                check(ok, "chat pieces");
            }
            if (tok->kind() == VocabKind::bpe) {  // byte-level BPE is lossless
                std::vector<int32_t> chat_body = chat_ids;
                if (!chat_body.empty() && tok->add_bos() && chat_body.front() == tok->bos()) chat_body.erase(chat_body.begin());
                check(tok->decode(chat_body, true) == rendered, "chat decode round trip");
            }
        }

        if (g.contains("greedy_tokens")) {
            const auto greedy = g["greedy_tokens"].get<std::vector<int32_t>>();
            const std::string hex = to_hex(tok->decode(greedy, true));
            check(hex == g["greedy_text_hex"].get<std::string>(),
                  "greedy text hex " + hex + " expected " + g["greedy_text_hex"].get<std::string>());
            if (g.contains("greedy_text")) {
                check(golden_sanitize(tok->decode(greedy, true)) == g["greedy_text"].get<std::string>(), "greedy text");
            }
            if (g.contains("greedy_pieces")) {
                const auto pieces = g["greedy_pieces"].get<std::vector<std::string>>();
                bool ok = pieces.size() == greedy.size();
                for (size_t i = 0; ok && i < pieces.size(); ++i) {
                    ok = golden_sanitize(tok->token_to_piece(greedy[i], true)) == pieces[i];
                }
                check(ok, "greedy pieces");
            }
            if (g.contains("greedy_is_eog")) {
                const auto eog = g["greedy_is_eog"].get<std::vector<bool>>();
                bool ok = eog.size() == greedy.size();
                for (size_t i = 0; ok && i < eog.size(); ++i) ok = tok->is_eog(greedy[i]) == eog[i];
                check(ok, "greedy is_eog");
            }
        }
        std::printf("[ golden   ] %-34s %d/%d checks\n", name.c_str(), n_pass, n_checks);
    }
}

// ---------------------------------------------------------------------------------------------
// Quirks named in the test data README.

TEST(TokenizerQuirks, DeepseekUserDefinedByteSymbolsMatchInRawText) {
    auto tok = load_tokenizer("models/deepseek2-tiny.F16.gguf");
    ASSERT_NE(tok, nullptr);
    EXPECT_EQ(tok->encode("a\xC3\xB8" "b \xC3\xBF", true, false), (std::vector<int32_t>{393, 64, 380, 65, 207, 383}));
    // llama.cpp renders USER_DEFINED pieces as their stored text, so 380 gives "ø" (C3 B8) back,
    // not the byte 0xF8 the byte-level symbol stands for.
    EXPECT_EQ(tok->token_to_piece(380, false), "\xC3\xB8");
    EXPECT_EQ(tok->decode(tok->encode("a\xC3\xB8" "b", false, false), false), "a\xC3\xB8" "b");
}

TEST(TokenizerQuirks, GptOssEndOfGeneration) {
    auto tok = load_tokenizer("models/gpt-oss-tiny.F16.gguf");
    ASSERT_NE(tok, nullptr);
    EXPECT_EQ(tok->eog_ids(), (std::vector<int32_t>{392, 393, 399}));  // <|endoftext|> <|return|> <|call|>
    EXPECT_FALSE(tok->is_eog(397));                                    // <|end|>
    // Forced USER_DEFINED: matched in text without parse_special and always rendered.
    EXPECT_EQ(tok->encode("<|start|>", false, false), (std::vector<int32_t>{396}));
    EXPECT_EQ(tok->token_to_piece(398, false), "<|message|>");
    EXPECT_EQ(tok->token_to_piece(393, false), "");
    EXPECT_EQ(tok->token_to_piece(393, true), "<|return|>");
    EXPECT_FALSE(tok->add_bos());
}

TEST(TokenizerQuirks, GemmaHasNoSpacePrefix) {
    auto tok = load_tokenizer("models/gemma3-tiny.F16.gguf");
    ASSERT_NE(tok, nullptr);
    EXPECT_FALSE(tok->add_space_prefix());
    EXPECT_TRUE(tok->is_eog(6));  // <end_of_turn>
    EXPECT_TRUE(tok->is_eog(1));  // <eos>
    const auto ids = tok->encode("a b", false, false);
    ASSERT_FALSE(ids.empty());
    EXPECT_NE(tok->token_to_piece(ids.front(), false).front(), ' ');
}

TEST(TokenizerQuirks, SpecialIdsAndEog) {
    auto llama3 = load_tokenizer("models/llama3-tiny.F16.gguf");
    ASSERT_NE(llama3, nullptr);
    EXPECT_EQ(llama3->kind(), VocabKind::bpe);
    EXPECT_EQ(llama3->bos(), 492);
    EXPECT_EQ(llama3->eos(), 496);
    EXPECT_EQ(llama3->eot(), 496);
    EXPECT_EQ(llama3->eom(), 497);
    EXPECT_TRUE(llama3->add_bos());
    EXPECT_TRUE(llama3->is_eog(493) && llama3->is_eog(496) && llama3->is_eog(497));
    EXPECT_FALSE(llama3->is_eog(492));
    EXPECT_TRUE(llama3->is_control(494));

    auto phi3 = load_tokenizer("models/phi3-tiny.F16.gguf");
    ASSERT_NE(phi3, nullptr);
    EXPECT_EQ(phi3->eot(), 396);  // <|end|>
    EXPECT_TRUE(phi3->is_eog(389) && phi3->is_eog(396));

    auto bert = load_tokenizer("models/bert-bge-tiny.F16.gguf");
    ASSERT_NE(bert, nullptr);
    EXPECT_EQ(bert->kind(), VocabKind::wpm);
    EXPECT_EQ(bert->bos(), 101);
    EXPECT_EQ(bert->sep(), 102);
    EXPECT_EQ(bert->encode("Hello", true, false).front(), 101);
    EXPECT_EQ(bert->encode("Hello", true, false).back(), 102);

    auto stories = load_tokenizer("models/stories260K.gguf");  // sep/pad = 0xFFFFFFFF: "none"
    ASSERT_NE(stories, nullptr);
    EXPECT_EQ(stories->sep(), kNoToken);
    EXPECT_EQ(stories->token_to_piece(-1, true), "");
    EXPECT_EQ(stories->token_to_piece(100000, true), "");
}

TEST(TokenizerQuirks, SpmDecodeLeadingSpace) {
    auto tok = load_tokenizer("tokenizers/ggml-vocab-llama-spm.gguf.gz");
    ASSERT_NE(tok, nullptr);
    const std::vector<int32_t> ids = {1, 15043, 3186};  // <s> ▁Hello ▁world
    EXPECT_EQ(tok->encode("Hello world", true, false), ids);
    // As llama_detokenize: the first piece loses its space only when it is the first token.
    EXPECT_EQ(tok->decode(std::span(ids).subspan(1), false), "Hello world");
    EXPECT_EQ(tok->decode(ids, false), " Hello world");
    EXPECT_EQ(tok->decode(ids, true), "<s> Hello world");
    EXPECT_EQ(tok->decode(ids, false, /*remove_special=*/true), " Hello world");
    // parse_special: "<s>" in text becomes the BOS token, and the next fragment gets a space prefix.
    EXPECT_EQ(tok->encode("<s>Hello", false, true), (std::vector<int32_t>{1, 15043}));
    EXPECT_NE(tok->encode("<s>Hello", false, false), (std::vector<int32_t>{1, 15043}));
}

TEST(TokenizerQuirks, Phi3RstripAndControlledUserDefined) {
    // Expected ids from llama.cpp at the reference commit (llama_tokenize on this vocab).
    auto tok = load_tokenizer("tokenizers/ggml-vocab-phi-3.gguf.gz");
    ASSERT_NE(tok, nullptr);
    // general.name "Phi3": special tokens eat the whitespace after them (RSTRIP), so "Hi" gets the
    // SPM space prefix instead of "\n  ".
    EXPECT_EQ(tok->encode("<|user|>\n  Hi<|end|>\n<|assistant|>", true, true),
              (std::vector<int32_t>{1, 32010, 6324, 32007, 32001}));
    // "</s>" is typed USER_DEFINED but is an EOG text, which makes it CONTROL too: matched only
    // with parse_special. Its RSTRIP eats the space before "y", which gets the prefix back.
    EXPECT_EQ(tok->encode("x </s> y", false, false), (std::vector<int32_t>{921, 1533, 29879, 29958, 343}));
    EXPECT_EQ(tok->encode("x </s> y", false, true), (std::vector<int32_t>{921, 29871, 2, 343}));
    EXPECT_TRUE(tok->is_eog(2));
    EXPECT_TRUE(tok->is_control(2));
    EXPECT_EQ(tok->token_to_piece(2, false), "");
}

// ---------------------------------------------------------------------------------------------
// Streaming detokenizer.

TEST(TokenStreamDecoder, EmojiSplitAcrossByteTokens) {
    auto tok = load_tokenizer("tokenizers/ggml-vocab-llama-spm.gguf.gz");
    ASSERT_NE(tok, nullptr);
    // "🦙🚀" is F0 9F A6 99 F0 9F 9A 80, byte tokens <0xF0> = 243 etc.
    const auto ids = tok->encode("\xF0\x9F\xA6\x99\xF0\x9F\x9A\x80", false, false);
    ASSERT_EQ(ids, (std::vector<int32_t>{29871, 243, 162, 169, 156, 243, 162, 157, 131}));
    TokenStreamDecoder dec(*tok, false, /*strip_leading_space=*/true);
    EXPECT_EQ(dec.push(ids[0]), "");  // "▁" minus the stripped leading space
    EXPECT_EQ(dec.push(ids[1]), "");
    EXPECT_EQ(dec.pending_bytes(), 1u);
    EXPECT_EQ(dec.push(ids[2]), "");
    EXPECT_EQ(dec.push(ids[3]), "");
    EXPECT_EQ(dec.push(ids[4]), "\xF0\x9F\xA6\x99");
    EXPECT_EQ(dec.pending_bytes(), 0u);
    EXPECT_EQ(dec.push(ids[5]), "");
    EXPECT_EQ(dec.push(ids[6]), "");
    EXPECT_EQ(dec.push(ids[7]), "");
    EXPECT_EQ(dec.push(ids[8]), "\xF0\x9F\x9A\x80");
    EXPECT_EQ(dec.flush(), "");

    // Without stripping the first piece keeps its space.
    TokenStreamDecoder dec2(*tok);
    EXPECT_EQ(dec2.push(ids[0]), " ");
}

TEST(TokenStreamDecoder, InvalidBytesBecomeReplacementOnlyWhenCertain) {
    auto tok = load_tokenizer("tokenizers/ggml-vocab-llama-spm.gguf.gz");
    ASSERT_NE(tok, nullptr);
    const int32_t b_f0 = 243, b_9f = 162;  // <0xF0>, <0x9F>
    const int32_t b_41 = tok->find_token("<0x41>");
    ASSERT_NE(b_41, kNoToken);
    TokenStreamDecoder dec(*tok);
    EXPECT_EQ(dec.push(b_f0), "");
    EXPECT_EQ(dec.push(b_9f), "");
    EXPECT_EQ(dec.push(b_41), "\xEF\xBF\xBD" "A");  // F0 9F can no longer complete
    EXPECT_EQ(dec.push(b_f0), "");
    EXPECT_EQ(dec.flush(), "\xEF\xBF\xBD");          // incomplete at the end
    EXPECT_EQ(dec.pending_bytes(), 0u);

    Utf8StreamAssembler a;
    EXPECT_EQ(a.push("\xC0"), "\xEF\xBF\xBD");       // never valid: replaced at once
    EXPECT_EQ(a.push("\xED"), "");
    EXPECT_EQ(a.push("\xA0"), "\xEF\xBF\xBD\xEF\xBF\xBD");  // surrogate: ED, then A0
    EXPECT_EQ(a.push("\xE2\x82"), "");
    EXPECT_EQ(a.push("\xAC" "x"), "\xE2\x82\xAC" "x");
}

TEST(TokenStreamDecoder, ByteLevelBpeMatchesDecode) {
    auto tok = load_tokenizer("models/gpt-oss-tiny.F16.gguf");
    ASSERT_NE(tok, nullptr);
    const std::string text = "na\xC3\xAFve caf\xC3\xA9 \xF0\x9F\xA6\x99 <|return|> done";
    const auto ids = tok->encode(text, false, true);
    TokenStreamDecoder dec(*tok, /*render_special=*/true);
    std::string streamed;
    for (int32_t id : ids) {
        const std::string part = dec.push(id);
        EXPECT_EQ(utf8_sanitize(part), part);  // only complete, valid UTF-8 comes out
        streamed += part;
    }
    streamed += dec.flush();
    EXPECT_EQ(streamed, text);
    EXPECT_EQ(tok->decode(ids, true), text);
}

TEST(TokenStreamDecoder, PreservedControlTokensAreShown) {
    // gpt-oss's <|return|> is a control token: hidden by default, shown once preserved.
    auto tok = load_tokenizer("models/gpt-oss-tiny.F16.gguf");
    ASSERT_NE(tok, nullptr);
    const auto ids = tok->encode("a <|return|> b", false, true);
    int32_t ret = -1;
    for (int32_t id : ids)
        if (tok->is_control(id)) ret = id;
    ASSERT_GE(ret, 0);
    auto stream = [&](TokenStreamDecoder& dec) {
        std::string s;
        for (int32_t id : ids) s += dec.push(id);
        return s + dec.flush();
    };
    TokenStreamDecoder plain(*tok);
    EXPECT_EQ(stream(plain), "a  b");
    TokenStreamDecoder kept(*tok);
    kept.preserve({ret});
    EXPECT_EQ(stream(kept), "a <|return|> b");
}

// ---------------------------------------------------------------------------------------------
// Bad metadata: clear errors, no crash.

gguf::Metadata spm_meta(int n_tokens) {
    gguf::Metadata m;
    m.set("tokenizer.ggml.model", gguf::Value::make_string("llama"));
    std::vector<std::string> toks = {"<unk>", "<s>", "</s>"};
    for (int i = 3; i < n_tokens; ++i) toks.push_back("\xE2\x96\x81t" + std::to_string(i));
    m.set("tokenizer.ggml.tokens", gguf::Value::make_string_array(toks));
    m.set("tokenizer.ggml.scores", gguf::Value::make_f32_array(std::vector<float>(n_tokens, 0.0f)));
    std::vector<int32_t> types(n_tokens, 1);
    types[0] = 2, types[1] = 3, types[2] = 3;
    m.set("tokenizer.ggml.token_type", gguf::Value::make_i32_array(types));
    return m;
}

TEST(TokenizerErrors, BadMetadata) {
    {
        auto ok = Tokenizer::from_metadata(spm_meta(8));
        ASSERT_TRUE(ok.ok()) << ok.status().message();
        EXPECT_EQ(ok.value()->encode("", true, false), (std::vector<int32_t>{1}));
        EXPECT_EQ(ok.value()->encode("", false, false), (std::vector<int32_t>{}));
        // Bytes without any byte token are dropped, not a crash.
        EXPECT_TRUE(ok.value()->encode("\xFFz", false, false).empty());
    }
    {
        gguf::Metadata m = spm_meta(8);
        m.set("tokenizer.ggml.scores", gguf::Value::make_f32_array(std::vector<float>(5, 0.0f)));
        auto r = Tokenizer::from_metadata(m);
        ASSERT_FALSE(r.ok());
        EXPECT_NE(r.status().message().find("scores"), std::string::npos) << r.status().message();
    }
    {
        gguf::Metadata m = spm_meta(8);
        m.set("tokenizer.ggml.token_type", gguf::Value::make_i32_array({1, 1}));
        auto r = Tokenizer::from_metadata(m);
        ASSERT_FALSE(r.ok());
        EXPECT_NE(r.status().message().find("token_type"), std::string::npos);
    }
    {
        gguf::Metadata m;
        m.set("tokenizer.ggml.model", gguf::Value::make_string("llama"));
        auto r = Tokenizer::from_metadata(m);
        ASSERT_FALSE(r.ok());
        EXPECT_NE(r.status().message().find("tokenizer.ggml.tokens"), std::string::npos) << r.status().message();
    }
    {
        gguf::Metadata m = spm_meta(8);
        m.set("tokenizer.ggml.tokens", gguf::Value::make_i32_array({1, 2, 3}));
        auto r = Tokenizer::from_metadata(m);
        ASSERT_FALSE(r.ok());
        EXPECT_NE(r.status().message().find("tokenizer.ggml.tokens"), std::string::npos) << r.status().message();
    }
    {
        gguf::Metadata m = spm_meta(8);
        m.set("tokenizer.ggml.bos_token_id", gguf::Value::make_u32(8));
        auto r = Tokenizer::from_metadata(m);
        ASSERT_FALSE(r.ok());
        EXPECT_NE(r.status().message().find("bos_token_id"), std::string::npos) << r.status().message();
    }
    {
        gguf::Metadata m = spm_meta(8);
        m.set("tokenizer.ggml.padding_token_id", gguf::Value::make_u32(0xFFFFFFFFu));  // "none"
        m.set("tokenizer.ggml.eos_token_id", gguf::Value::make_u32(0xFFFFFFFFu));
        auto r = Tokenizer::from_metadata(m);
        ASSERT_TRUE(r.ok()) << r.status().message();
        EXPECT_EQ(r.value()->eos(), 2);  // keeps the default, like llama.cpp
    }
    {
        gguf::Metadata m = spm_meta(8);
        m.set("tokenizer.ggml.model", gguf::Value::make_string("t5"));
        auto r = Tokenizer::from_metadata(m);
        ASSERT_FALSE(r.ok());
        EXPECT_EQ(r.status().code(), StatusCode::unsupported);
        EXPECT_NE(r.status().message().find("t5"), std::string::npos);
    }
    {
        gguf::Metadata m = spm_meta(8);
        m.set("tokenizer.ggml.model", gguf::Value::make_string("gpt2"));
        auto r = Tokenizer::from_metadata(m);  // no merges
        ASSERT_FALSE(r.ok());
        EXPECT_NE(r.status().message().find("merges"), std::string::npos) << r.status().message();
    }
    {
        gguf::Metadata m = spm_meta(8);
        m.set("tokenizer.ggml.tokens", gguf::Value::make_string_array({}));
        EXPECT_FALSE(Tokenizer::from_metadata(m).ok());
    }
    {
        gguf::Metadata m;
        EXPECT_FALSE(Tokenizer::from_metadata(m).ok());  // no model key
    }
}

}  // namespace
}  // namespace hearth::tok
