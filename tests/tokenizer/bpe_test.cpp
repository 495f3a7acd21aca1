// Byte-level BPE + pre-tokenizer against llama.cpp's tokenizer test vectors (plain mode: no
// special-token parsing, no BOS), on the real vocab files in shared/testdata/tokenizers.
#include "tokenizer/bpe.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <map>
#include <random>
#include <span>
#include <sstream>

#include "gguf/gguf.h"
#include "support/testdata.h"
#include "tokenizer/pretokenize.h"

namespace hearth::tok {
namespace {

struct Vocab {
    std::vector<std::string> tokens, merges;
    std::vector<int32_t> user_defined;  // ids of USER_DEFINED tokens, longest text first
    std::string pre;
    int64_t bos = -1;
    bool add_bos = false;
    std::unique_ptr<PreTokenizer> pretok;
    std::unique_ptr<BpeModel> bpe;
};

// Loads a vocab from shared/testdata: "<name>" is tokenizers/ggml-vocab-<name>.gguf.gz,
// "models/<file>" a model file. nullptr after a test failure naming the problem. Cached:
// several tests use the same vocab.
const Vocab* load_vocab(const std::string& name) {
    static std::map<std::string, std::unique_ptr<Vocab>> cache;
    if (auto it = cache.find(name); it != cache.end()) return it->second.get();
    const bool is_model = name.rfind("models/", 0) == 0;
    const std::string path =
        test::testdata_path(is_model ? name : "tokenizers/ggml-vocab-" + name + ".gguf.gz");
    std::vector<uint8_t> bytes;
    if (!(is_model ? test::read_file(path, bytes) : test::read_gzip_file(path, bytes))) {
        ADD_FAILURE() << "cannot read " << path;
        return nullptr;
    }
    auto file = gguf::parse_gguf(std::as_bytes(std::span(bytes)));
    if (!file.ok()) {
        ADD_FAILURE() << path << ": " << file.status().message();
        return nullptr;
    }
    auto v = std::make_unique<Vocab>();
    auto tokens = file->meta.get_string_array("tokenizer.ggml.tokens");
    auto merges = file->meta.get_string_array("tokenizer.ggml.merges");
    auto pre = file->meta.get_string_or("tokenizer.ggml.pre", "");
    if (!tokens.ok() || !merges.ok() || !pre.ok()) {
        ADD_FAILURE() << path << ": missing tokenizer metadata";
        return nullptr;
    }
    v->tokens = std::move(tokens).value();
    v->merges = std::move(merges).value();
    v->pre = std::move(pre).value();
    if (auto types = file->meta.get_int_array("tokenizer.ggml.token_type"); types.ok()) {
        constexpr int64_t kUserDefined = 4;  // llama_token_type
        for (size_t i = 0; i < types->size(); ++i) {
            if ((*types)[i] == kUserDefined) v->user_defined.push_back(static_cast<int32_t>(i));
        }
        std::stable_sort(v->user_defined.begin(), v->user_defined.end(), [&](int32_t a, int32_t b) {
            return v->tokens[a].size() > v->tokens[b].size();
        });
    }
    auto pretok = PreTokenizer::create(v->pre);
    if (!pretok.ok()) {
        ADD_FAILURE() << path << ": " << pretok.status().message();
        return nullptr;
    }
    v->pretok = std::move(pretok).value();
    v->bos = file->meta.get_int_or("tokenizer.ggml.bos_token_id", -1).value();
    v->add_bos = file->meta.get_bool_or("tokenizer.ggml.add_bos_token", v->pretok->default_add_bos()).value();
    auto bpe = BpeModel::build(v->tokens, v->merges, v->pretok->bpe_options());
    if (!bpe.ok()) {
        ADD_FAILURE() << path << ": " << bpe.status().message();
        return nullptr;
    }
    v->bpe = std::make_unique<BpeModel>(std::move(bpe).value());
    return cache.emplace(name, std::move(v)).first->second.get();
}

std::vector<int32_t> encode(const Vocab& v, std::string_view text) {
    std::vector<std::string_view> pieces;
    v.pretok->split(text, pieces);
    std::vector<int32_t> ids;
    for (std::string_view p : pieces) v.bpe->encode_piece(p, ids);
    return ids;
}

// Stand-in for the Tokenizer's special-token pass, for the test only: llama.cpp cuts the
// text of USER_DEFINED tokens out of the raw text even in plain mode (parse_special=false),
// longest token first, before pre-tokenizing (tokenizer_st_partition). Returns false if the
// text contains none, i.e. pre-tokenizer + BPE alone must reproduce llama.cpp.
bool encode_with_user_defined(const Vocab& v, const std::string& text, std::vector<int32_t>& ids) {
    struct Fragment {
        int32_t token;  // -1: raw text
        std::string text;
    };
    std::vector<Fragment> frags{{-1, text}};
    bool any = false;
    for (int32_t id : v.user_defined) {
        const std::string& t = v.tokens[id];
        std::vector<Fragment> next;
        for (Fragment& f : frags) {
            if (f.token >= 0) {
                next.push_back(std::move(f));
                continue;
            }
            size_t pos = 0;
            for (size_t hit; (hit = f.text.find(t, pos)) != std::string::npos; pos = hit + t.size()) {
                if (hit > pos) next.push_back({-1, f.text.substr(pos, hit - pos)});
                next.push_back({id, ""});
                any = true;
            }
            if (pos < f.text.size()) next.push_back({-1, f.text.substr(pos)});
        }
        frags = std::move(next);
    }
    ids.clear();
    for (const Fragment& f : frags) {
        if (f.token >= 0) {
            ids.push_back(f.token);
            continue;
        }
        const auto part = encode(v, f.text);
        ids.insert(ids.end(), part.begin(), part.end());
    }
    return any;
}

std::string join(const std::vector<int32_t>& ids) {
    std::string s;
    for (int32_t id : ids) {
        if (!s.empty()) s += ' ';
        s += std::to_string(id);
    }
    return s;
}

std::string escaped(std::string_view s) {
    std::string out;
    for (unsigned char c : s) {
        if (c == '\n') out += "\\n";
        else if (c == '\t') out += "\\t";
        else if (c < 0x20) out += strformat("\\x%02x", c);
        else out += static_cast<char>(c);
    }
    return out;
}

// test-tokenizer-0 format: strings separated by "\n__ggml_vocab_test__\n"; one line of
// space-separated ids per string.
struct Case {
    std::string text, expected;
};
std::vector<Case> read_cases(const std::string& name) {
    const std::string base = test::testdata_path("tokenizers/ggml-vocab-" + name + ".gguf");
    const std::string inp = test::read_text_file(base + ".inp");
    const std::string outp = test::read_text_file(base + ".out");
    const std::string sep = "\n__ggml_vocab_test__\n";
    std::vector<Case> cases;
    for (size_t pos = 0; pos < inp.size();) {
        size_t next = inp.find(sep, pos);
        if (next == std::string::npos) break;
        cases.push_back({inp.substr(pos, next - pos), ""});
        pos = next + sep.size();
    }
    std::istringstream lines(outp);
    std::string line;
    for (Case& c : cases) {
        if (!std::getline(lines, line)) break;
        size_t first = line.find_first_not_of(' ');
        c.expected = first == std::string::npos ? "" : line.substr(first);
    }
    return cases;
}

class VocabTest : public ::testing::TestWithParam<std::string> {};

TEST_P(VocabTest, MatchesLlamaCppTestVectors) {
    const Vocab* v = load_vocab(GetParam());
    ASSERT_NE(v, nullptr);
    const auto cases = read_cases(GetParam());
    ASSERT_GE(cases.size(), 40u);
    int passed = 0, with_user_defined = 0;
    for (const Case& c : cases) {
        std::vector<int32_t> ids;
        const bool partitioned = encode_with_user_defined(*v, c.text, ids);
        with_user_defined += partitioned;
        const std::string got = join(ids);
        if (got == c.expected) {
            ++passed;
        } else {
            ADD_FAILURE() << GetParam() << ": '" << escaped(c.text) << "'"
                          << (partitioned ? " (has USER_DEFINED token text)" : "")
                          << "\n  expected: " << c.expected << "\n  got:      " << got;
        }
    }
    std::printf("[ vocab    ] %s (pre '%s'): %d/%zu test strings match; %d contain USER_DEFINED "
                "token text\n", GetParam().c_str(), v->pre.c_str(), passed, cases.size(),
                with_user_defined);
}

INSTANTIATE_TEST_SUITE_P(Tokenizers, VocabTest,
                         ::testing::Values("gpt-2", "deepseek-coder", "deepseek-llm", "falcon",
                                           "mpt", "refact", "starcoder"),
                         [](const auto& info) {
                             std::string n = info.param;
                             std::replace(n.begin(), n.end(), '-', '_');
                             return n;
                         });

// extra/ goldens: prompts/tokenizer_cases.txt through llama_tokenize(add_special=false,
// parse_special=false).
class ExtraGoldenTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ExtraGoldenTest, PlainModeMatches) {
    const Vocab* v = load_vocab(GetParam());
    ASSERT_NE(v, nullptr);
    const std::string path = test::testdata_path("tokenizers/extra/ggml-vocab-" + GetParam() +
                                                 ".tokens.json");
    const auto j = nlohmann::json::parse(test::read_text_file(path), nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << path;
    int compared = 0, with_user_defined = 0;
    for (const auto& c : j.at("cases")) {
        const std::string text = c.at("text");
        const auto expected = c.at("plain").get<std::vector<int32_t>>();
        std::vector<int32_t> ids;
        const bool partitioned = encode_with_user_defined(*v, text, ids);
        EXPECT_EQ(join(ids), join(expected))
            << GetParam() << ": '" << escaped(text) << "'"
            << (partitioned ? " (has USER_DEFINED token text)" : "");
        ++compared;
        with_user_defined += partitioned;
    }
    std::printf("[ extra    ] %s: %d strings, %d contain USER_DEFINED token text\n",
                GetParam().c_str(), compared, with_user_defined);
    EXPECT_EQ(compared, 7);  // the 8th string of tokenizer_cases.txt is empty and not listed
}

INSTANTIATE_TEST_SUITE_P(Tokenizers, ExtraGoldenTest,
                         ::testing::Values("gpt-2", "gpt-neox", "deepseek-coder", "deepseek-llm",
                                           "falcon", "mpt", "refact", "starcoder"),
                         [](const auto& info) {
                             std::string n = info.param;
                             std::replace(n.begin(), n.end(), '-', '_');
                             return n;
                         });

// Model goldens: golden/<model>.json has the shared prompt tokenized by llama_tokenize
// (add_special=true, parse_special=false). These vocabs are cut-down copies of real ones with
// the real pre-tokenizer types, so they exercise llama-bpe (ignore_merges), qwen2,
// deepseek-v3, gpt-4o and llama4 end to end.
class ModelPromptTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ModelPromptTest, PromptTokensMatch) {
    const Vocab* v = load_vocab("models/" + GetParam() + ".gguf");
    ASSERT_NE(v, nullptr);
    const std::string path = test::testdata_path("golden/" + GetParam() + ".json");
    const auto j = nlohmann::json::parse(test::read_text_file(path), nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << path;
    const std::string text = j.at("prompt_text");
    auto expected = j.at("prompt_tokens").get<std::vector<int32_t>>();
    // The BOS that add_special put first is the Tokenizer's business.
    if (v->add_bos) {
        ASSERT_EQ(expected.at(0), v->bos);
        expected.erase(expected.begin());
    }
    std::vector<int32_t> ids;
    encode_with_user_defined(*v, text, ids);
    EXPECT_EQ(join(ids), join(expected)) << GetParam() << " (pre '" << v->pre << "')";
}

INSTANTIATE_TEST_SUITE_P(Models, ModelPromptTest,
                         ::testing::Values("llama3-tiny.F16", "qwen2-tiny.F16", "qwen3-tiny.Q8_0",
                                           "deepseek2-tiny.F16", "gpt-oss-tiny.F16",
                                           "llama4-tiny.F16"),
                         [](const auto& info) {
                             std::string n = info.param;
                             for (char& c : n) if (c == '-' || c == '.') c = '_';
                             return n;
                         });

// Straightforward BPE on strings, as in llama.cpp: repeatedly merge the leftmost pair with the
// lowest rank. Used to check the heap/linked-list version on random pieces.
std::vector<int32_t> naive_bpe(const Vocab& v, std::string_view raw) {
    static std::map<const Vocab*, std::map<std::pair<std::string, std::string>, size_t>> cache;
    auto& r = cache[&v];
    if (r.empty()) {
        for (size_t i = 0; i < v.merges.size(); ++i) {
            size_t sp = v.merges[i].find(' ', 1);
            if (sp == std::string::npos) continue;
            r.emplace(std::make_pair(v.merges[i].substr(0, sp), v.merges[i].substr(sp + 1)), i);
        }
    }
    std::vector<std::string> syms;
    for (unsigned char c : raw) syms.push_back(byte_to_unicode(c));
    for (;;) {
        size_t best = SIZE_MAX, at = 0;
        for (size_t i = 0; i + 1 < syms.size(); ++i) {
            auto it = r.find({syms[i], syms[i + 1]});
            if (it != r.end() && it->second < best) best = it->second, at = i;
        }
        if (best == SIZE_MAX) break;
        syms[at] += syms[at + 1];
        syms.erase(syms.begin() + static_cast<std::ptrdiff_t>(at) + 1);
    }
    std::vector<int32_t> ids;
    for (const auto& s : syms) {
        int32_t id = v.bpe->find_token(s);
        if (id >= 0) {
            ids.push_back(id);
            continue;
        }
        for (char c : s) {
            int32_t b = v.bpe->find_token(std::string(1, c));
            if (b >= 0) ids.push_back(b);
        }
    }
    return ids;
}

TEST(BpeModel, HeapMergeEqualsNaiveMerge) {
    const Vocab* v = load_vocab("gpt-2");
    ASSERT_NE(v, nullptr);
    std::mt19937 rng(1234);
    const std::string alphabet = "aaabbeeelnorsttt  ..,'\xc3\xa9\xe2\x82\xac";
    for (int iter = 0; iter < 300; ++iter) {
        std::string piece;
        const int n = 1 + static_cast<int>(rng() % 40);
        for (int i = 0; i < n; ++i) piece += alphabet[rng() % alphabet.size()];
        std::string clean;
        if (sanitize_utf8(piece, clean)) piece = clean;
        std::vector<int32_t> got;
        v->bpe->encode_piece(piece, got);
        ASSERT_EQ(join(got), join(naive_bpe(*v, piece))) << escaped(piece);
    }
}

TEST(BpeModel, LongPieceIsFast) {
    const Vocab* v = load_vocab("gpt-2");
    ASSERT_NE(v, nullptr);
    std::string piece;
    for (int i = 0; i < 20000; ++i) piece += "abcdefghij"[i % 10];
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<int32_t> ids;
    v->bpe->encode_piece(piece, ids);
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::steady_clock::now() - t0).count();
    EXPECT_FALSE(ids.empty());
    EXPECT_LT(ms, 2000) << "200 KB piece took " << ms << " ms";
    std::string decoded;
    for (int32_t id : ids) EXPECT_TRUE(unicode_to_bytes(v->tokens[id], decoded));
    EXPECT_EQ(decoded, piece);
}

TEST(BpeModel, ByteMapRoundTrips) {
    EXPECT_EQ(byte_to_unicode(' '), "\xc4\xa0");   // U+0120 'Ġ'
    EXPECT_EQ(byte_to_unicode('\n'), "\xc4\x8a");  // U+010A 'Ċ'
    EXPECT_EQ(byte_to_unicode('a'), "a");
    EXPECT_EQ(byte_to_unicode(0xAD), "\xc5\x83");  // the one non-printable in A1..FF: U+0143
    for (int b = 0; b < 256; ++b) {
        std::string out;
        ASSERT_TRUE(unicode_to_bytes(byte_to_unicode(static_cast<uint8_t>(b)), out));
        ASSERT_EQ(out, std::string(1, static_cast<char>(b)));
    }
    std::string out;
    EXPECT_FALSE(unicode_to_bytes("a\xe2\x82\xac", out));  // U+20AC is not a mapped byte
    EXPECT_EQ(out, "a[UNK_BYTE_0xe282aca\xe2\x82\xac]");
}

TEST(BpeModel, InvalidUtf8IsReplacedLikeLlamaCpp) {
    const Vocab* v = load_vocab("gpt-2");
    ASSERT_NE(v, nullptr);
    // llama.cpp turns each undecodable byte into U+FFFD before BPE.
    const std::string bad = "ab\xff" "c\xe4\xb8" "d\xc0\x80";
    const std::string fixed = "ab\xef\xbf\xbd" "c\xef\xbf\xbd\xef\xbf\xbd" "d" + std::string(1, '\0');
    std::string clean;
    ASSERT_TRUE(sanitize_utf8(bad, clean));
    EXPECT_EQ(clean, fixed);
    EXPECT_EQ(join(encode(*v, bad)), join(encode(*v, fixed)));
}

TEST(BpeModel, IgnoreMergesEmitsWholeVocabWords) {
    // Merges would build "ab" + "c" but never "abc"; with ignore_merges the vocab entry wins.
    const std::vector<std::string> tokens = {"a", "b", "c", "ab", "abc"};
    const std::vector<std::string> merges = {"a b"};
    auto plain = BpeModel::build(tokens, merges);
    ASSERT_TRUE(plain.ok());
    std::vector<int32_t> ids;
    plain->encode_piece("abc", ids);
    EXPECT_EQ(join(ids), "3 2");
    BpeOptions o;
    o.ignore_merges = true;
    auto ignoring = BpeModel::build(tokens, merges, o);
    ASSERT_TRUE(ignoring.ok());
    ids.clear();
    ignoring->encode_piece("abc", ids);
    EXPECT_EQ(join(ids), "4");
}

TEST(BpeModel, MissingSymbolFallsBackToSingleByteTokens) {
    // "xy" is merged but is not a token: llama.cpp emits the tokens of its single bytes.
    // ' ' maps to U+0120 ("\xc4\xa0"); neither of those two bytes is a token: skipped.
    const std::vector<std::string> tokens = {"x", "y", "z"};
    const std::vector<std::string> merges = {"x y", "y z"};
    auto m = BpeModel::build(tokens, merges);
    ASSERT_TRUE(m.ok());
    std::vector<int32_t> ids;
    EXPECT_EQ(m->encode_piece("xyz", ids), 0);
    EXPECT_EQ(join(ids), "0 1 2");  // "xy" (rank 0) then "z"; "xy" has no token
    ids.clear();
    EXPECT_EQ(m->encode_piece(" x", ids), 2);
    EXPECT_EQ(join(ids), "0");
}

TEST(BpeModel, TiesMergeLeftmostFirst) {
    // "aaa": both pairs have rank 0; the left one merges first -> "aa" "a".
    const std::vector<std::string> tokens = {"a", "aa"};
    auto m = BpeModel::build(tokens, {"a a"});
    ASSERT_TRUE(m.ok());
    std::vector<int32_t> ids;
    m->encode_piece("aaa", ids);
    EXPECT_EQ(join(ids), "1 0");
}

}  // namespace
}  // namespace hearth::tok
