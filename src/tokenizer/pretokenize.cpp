// Pre-tokenizers for byte-level BPE, matching llama.cpp's unicode_regex_split() (commit
// 34af94cd). The header explains the three ways a pattern is run; this file has, in order:
// the family table (GGUF name -> regex sequence and flags), the decoded text, the hand-written
// splitters, the PCRE2 runner, PreTokenizer itself, and the Unicode category table.
//
// File length: ~1150 lines, of which ~230 are the generated category table at the bottom and
// ~150 the family table; both are only used here and must not drift from the code using them.
#include "tokenizer/pretokenize.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <optional>

namespace hearth::tok {
namespace {

// ---------------------------------------------------------------------------------------
// Family table. Regex strings are byte-for-byte the ones llama.cpp uses (llm_tokenizer_bpe),
// because llama.cpp picks its hand-written splitters by comparing these strings.

constexpr std::string_view kReGpt2 =
    R"re('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S))re";
constexpr std::string_view kReLlama3 =
    R"re((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)re";
constexpr std::string_view kReQwen2 =
    R"re((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)re";
constexpr std::string_view kReQwen35 =
    R"re((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)re";
constexpr std::string_view kReJais2 =
    R"re((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s{512}(?!\S)|\s{256}(?!\S)|\s{128}(?!\S)|\s{64}(?!\S)|\s{32}(?!\S)|\s{16}(?!\S)|\s{8}(?!\S)|\s{4}(?!\S)|\s{1,2}(?!\S)|\s{1})re";
constexpr std::string_view kReTekken =
    R"re([^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)re";
constexpr std::string_view kReGpt4o =
    R"re([^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)re";
constexpr std::string_view kReGraniteEmbMulti =
    R"re([^\r\n\p{L}\p{N}]?((?=[\p{L}\p{M}])([^a-z]))*((?=[\p{L}\p{M}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?((?=[\p{L}\p{M}])([^a-z]))+((?=[\p{L}\p{M}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)re";
constexpr std::string_view kReTinyAya =
    R"re([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)re";
constexpr std::string_view kReYoutuWords =
    R"re([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)re";
constexpr std::string_view kReBailing =
    R"re('(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+)re";
constexpr std::string_view kReSeedCoder =
    R"re((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}| ?[^\s\p{L}\p{N}\r\n]+|\s*[\r\n]+|\s+(?!\S)|\s+)re";
constexpr std::string_view kReExaoneMoe =
    R"re((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?(?:\p{L}\p{M}*(?: \p{L}\p{M}*)*)+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]?|\s*[\r\n]|\s+(?!\S)|\s+)re";
constexpr std::string_view kReMiniCpm5 =
    R"re((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}+| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)re";
// DeepSeek-V3 and AFMoE share the word pattern; its ASCII punctuation class lists '~' on purpose.
constexpr std::string_view kReDeepseek3Words =
    R"re([!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^)re" "\r\n" R"re(\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[)re" "\r\n" R"re(]*|\s*[)re" "\r\n" R"re(]+|\s+(?!\S)|\s+)re";
constexpr std::string_view kReAfmoeWords =
    R"re([!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)re";
constexpr std::string_view kReBloom = " ?[^(\\s|.,!?\u2026\u3002\uFF0C\u3001\u0964\u06D4\u060C)]+";
constexpr std::string_view kReDigit = R"re(\p{N})re";
constexpr std::string_view kReDigits = R"re(\p{N}+)re";
constexpr std::string_view kReDigits3 = R"re(\p{N}{1,3})re";
constexpr std::string_view kReAsciiDigits3 = "[0-9][0-9][0-9]";
constexpr std::string_view kReDefaultPunct = R"re([\p{P}\$\+<=>\^~\|]+)re";
constexpr std::string_view kReFalconPunct = R"re([\p{P}\$\+<=>\^~\|`]+)re";
constexpr std::string_view kReNewlines = R"re([^\n]+|[\n]+)re";
constexpr std::string_view kReCrLf = "[\r\n]";  // a class of the two characters themselves
constexpr std::string_view kReDeepseekLlmLetters =
    "\\s?[A-Za-z\u00B5\u00C0-\u00D6\u00D8-\u00F6\u00F8-\u01BA\u01BC-\u01BF\u01C4-\u0293"
    "\u0295-\u02AF\u0370-\u0373\u0376\u0377\u037B-\u037D\u037F\u0386\u0388-\u038A\u038C"
    "\u038E-\u03A1\u03A3-\u03F5\u03F7-\u0481\u048A-\u052F\u0531-\u0556\u10A0-\u10C5"
    "\u13A0-\u13F5\u13F8-\u13FD\u1C90-\u1CBA\u1CBD-\u1CBF\u1D00-\u1D2B\u1D6B-\u1D77"
    "\u1D79-\u1D9A\u1E00-\u1F15\u1F18-\u1F1D\u1F20-\u1F45\u1F48-\u1F4D\u1F50-\u1F57\u1F59"
    "\u1F5B\u1F5D\u1F5F-\u1F7D\u1F80-\u1FB4\u1FB6-\u1FBC\u1FBE\u1FC2-\u1FC4\u1FC6-\u1FCC"
    "\u1FD0-\u1FD3\u1FD6-\u1FDB\u1FE0-\u1FEC\u1FF2-\u1FF4\u1FF6-\u1FFC\u2102\u2107"
    "\u210A-\u2113\u2115\u2119-\u211D\u2124\u2126\u2128\u212A-\u212D\u212F-\u2134\u2139"
    "\u213C-\u213F\u2145-\u2149\u214E\u2183\u2184\u2C00-\u2C7B\u2C7E-\u2CE4\u2CEB-\u2CEE"
    "\u2CF2\u2CF3\uA640-\uA66D\uA680-\uA69B\uA722-\uA76F\uA771-\uA787\uA78B-\uA78E"
    "\uAB70-\uABBF\uFB00-\uFB06\uFB13-\uFB17\uFF21-\uFF3A\uFF41-\uFF5A\U00010400-\U0001044F"
    "\U000104B0-\U000104D3\U000104D8-\U000104FB\U00010C80-\U00010CB2\U00010CC0-\U00010CF2"
    "\U000118A0-\U000118DF\U0001E900-\U0001E943]+";
constexpr std::string_view kReDeepseekLlmPunct =
    "\\s?[!-/:-~\uFF01-\uFF0F\uFF1A-\uFF5E\u2018-\u201F\u3000-\u3002]+";
constexpr std::string_view kReTrailingSpace = R"re(\s+$)re";
constexpr std::string_view kReDeepseekCjk = "[\u4E00-\u9FA5\u0800-\u4E00\uAC00-\uD7FF]+";
constexpr std::string_view kReCjkKana = "[\u4E00-\u9FA5\u3040-\u309F\u30A0-\u30FF]+";
constexpr std::string_view kReYoutuCjk =
    "[\uAC00-\uD7A3\u3131-\u318E]+|[\uFF01\u2026\u201C\u201D\u2018\u2019\u2014\uFF1A\uFF1B"
    "\uFF0C\u3001-\u303F\uFE30-\uFE4F]+|[\u3105-\u312F]+|[\u4E00-\u9FA5\u3040-\u309F\u30A0-\u30FF]+";
// The third range starts at U+8C48 (not U+F900) in llama.cpp's source; kept as is.
constexpr std::string_view kReAfmoeCjk =
    "[\u4E00-\u9FFF\u3400-\u4DBF\u8C48-\uFAFF\u3040-\u309F\u30A0-\u30FF\uFF65-\uFF9F"
    "\u2F00-\u2FDF\u0E40-\u0E7F\u0E80-\u0EFF\u1780-\u17FF\u1000-\u109F\uAA60-\uAA7F"
    "\uA9E0-\uA9FF\uAC00-\uD7AF\u1100-\u11FF]+";
constexpr std::string_view kReBcSentinel = "<sentinel:[0-9]+>";
constexpr std::string_view kReBcImage = "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z";
constexpr std::string_view kReBcSpaces = "([\\t\\n]|    |  )";
constexpr std::string_view kReBcPunct = R"re([\p{P}!-/:-@\[-`{-~])re";
constexpr std::string_view kReHan = R"re(\p{Han}+)re";
constexpr std::string_view kReAfmoeDigits = R"re(\p{AFMoE_digits})re";
constexpr std::string_view kReTinyAyaDigits = R"re(\d{1,3}(?=(?:\d{3})*\b))re";
constexpr std::string_view kReThousands = R"re((?=(\d{3})+(?!\d)))re";

enum FamilyFlag : uint8_t {
    kIgnoreMerges = 1,
    kRawUtf8 = 2,     // byte_encode = false
    kEscapeWs = 4,    // ' ' -> U+2581 before splitting
    kKeepSpaces = 8,  // clean_spaces = false
    kAddBos = 16,
    kNewlineRuns = 32,  // BpeOptions::whole_newline_runs
};

struct Family {
    std::string_view names;  // space-separated tokenizer.ggml.pre values
    std::array<std::string_view, 6> regexes;  // applied in order; unused slots empty
    uint8_t flags;
};

// Same grouping and order as llama_vocab::impl::load; every name there except "whitespace"
// (jina-embeddings-v2-base-zh: its own session type and normalizer).
constexpr Family kFamilies[] = {
    {"default", {kReDefaultPunct, kReGpt2, kReDigits, kReAsciiDigits3}, 0},
    {"minicpm5", {kReDigits3, kReMiniCpm5}, kIgnoreMerges},
    {"llama3 llama-v3 llama-bpe falcon3 falcon-h1 pixtral midm-2.0 lfm2 jina-v5-nano",
     {kReLlama3}, kIgnoreMerges | kAddBos},
    {"deepseek-llm",
     {kReCrLf, kReDeepseekLlmLetters, kReDeepseekLlmPunct, kReTrailingSpace, kReDeepseekCjk,
      kReDigits},
     kKeepSpaces},
    {"deepseek-coder", {kReCrLf, R"re(\s?\p{L}+)re", R"re(\s?\p{P}+)re", kReDeepseekCjk, kReDigit},
     kKeepSpaces},
    {"deepseek-v3", {kReDigits3, kReCjkKana, kReDeepseek3Words}, kKeepSpaces},
    {"youtu", {kReYoutuCjk, kReYoutuWords}, kKeepSpaces | kIgnoreMerges},
    {"falcon", {kReFalconPunct, kReGpt2, kReAsciiDigits3}, 0},
    {"mpt", {kReGpt2}, 0},
    {"starcoder", {kReDigit, kReGpt2}, 0},
    {"gpt-2 phi-2 jina-es jina-de gigachat jina-v2-es jina-v2-de a.x-4.0 mellum modern-bert",
     {kReGpt2}, 0},
    {"jais-2", {kReJais2}, 0},
    {"gemma4 granite-embed-multi-311m", {kReNewlines}, kRawUtf8 | kEscapeWs | kNewlineRuns},
    {"sarvam-moe", {kReNewlines}, kRawUtf8 | kEscapeWs | kKeepSpaces},
    {"jina-v1-en jina-v2-code roberta-bpe", {kReGpt2}, 0},
    {"refact", {kReDigit, kReGpt2}, 0},
    {"command-r", {kReDigit, kReGpt2}, kKeepSpaces},
    {"qwen2 deepseek-r1-qwen kormo f2llmv2", {kReQwen2}, kKeepSpaces},
    {"qwen35", {kReQwen35}, kKeepSpaces},
    {"stablelm2", {kReQwen2}, 0},
    {"olmo", {kReGpt2}, 0},
    {"dbrx", {kReLlama3}, 0},
    {"smaug-bpe", {kReLlama3}, 0},
    {"poro-chat", {kReBloom}, kKeepSpaces},
    {"glm4 chatglm-bpe", {kReLlama3}, 0},
    {"viking", {kReBloom, kReDigit}, kKeepSpaces},
    {"jais", {kReGpt2}, 0},
    {"tekken", {kReTekken}, kKeepSpaces | kIgnoreMerges | kAddBos},
    {"smollm", {kReDigit, kReGpt2}, kKeepSpaces},
    {"codeshell", {kReDigit, kReGpt2}, 0},
    {"bloom", {kReBloom}, 0},
    {"gpt3-finnish", {kReBloom}, 0},
    {"exaone", {kReDigit, kReGpt2}, 0},
    {"exaone4", {kReGpt2}, 0},
    {"exaone-moe", {kReExaoneMoe}, 0},
    {"chameleon",
     {kReBcSentinel, kReBcImage, kReBcSpaces, kReDigit, kReBcPunct, kReGpt2},
     kAddBos | kKeepSpaces},
    {"minerva-7b", {kReDigit, kReGpt2}, 0},
    {"megrez", {kReQwen2}, 0},
    {"gpt-4o llama4 kanana2 talkie", {kReGpt4o}, kKeepSpaces},
    {"granite-embed-multi-97m", {kReGraniteEmbMulti}, kKeepSpaces | kIgnoreMerges},
    {"tiny_aya cohere2moe", {kReTinyAyaDigits, kReTinyAya}, kKeepSpaces},
    {"superbpe", {kReDigits, kReThousands}, kKeepSpaces},
    {"trillion", {kReGpt2}, kKeepSpaces},
    {"granite-docling", {kReGpt2}, kKeepSpaces},
    {"bailingmoe bailingmoe2 llada-moe", {kReBailing}, kKeepSpaces},
    {"seed-coder", {kReSeedCoder}, kKeepSpaces},
    {"hunyuan", {kReQwen2}, kKeepSpaces},
    {"hunyuan-dense", {kReDigits3, kReCjkKana, kReDeepseek3Words}, kKeepSpaces},
    {"joyai-llm", {kReDigits3, kReCjkKana, kReDeepseek3Words}, kKeepSpaces},
    {"kimi-k2", {kReHan}, kKeepSpaces},
    {"grok-2", {kReQwen2}, kKeepSpaces},
    {"afmoe", {kReAfmoeDigits, kReAfmoeCjk, kReAfmoeWords}, kKeepSpaces},
    {"laguna", {kReNewlines, kReQwen2}, kKeepSpaces},
    {"minimax-m2", {kReGpt4o}, kKeepSpaces},
    {"solar-open", {kReQwen2}, kKeepSpaces},
    {"mellum2", {kReDigit, kReGpt2}, 0},
};

bool family_has_name(const Family& f, std::string_view name) {
    std::string_view rest = f.names;
    while (!rest.empty()) {
        size_t sp = rest.find(' ');
        std::string_view word = rest.substr(0, sp);
        if (word == name) return true;
        if (sp == std::string_view::npos) break;
        rest.remove_prefix(sp + 1);
    }
    return false;
}

// ---------------------------------------------------------------------------------------
// Unicode classes, as llama.cpp's unicode_cpt_flags sees them.

enum Category : uint8_t {
    kUndefined = 0, kNumber = 1, kLetter = 2, kSeparator = 3,
    kMark = 4, kPunctuation = 5, kSymbol = 6, kControl = 7,
};
Category category_of(uint32_t cp);  // defined with the table at the end of the file

// llama.cpp's whitespace set is Unicode's White_Space property.
bool is_white_space(uint32_t cp) {
    if (cp < 0x80) return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20;
    switch (cp) {
        case 0x85: case 0xA0: case 0x1680: case 0x2028: case 0x2029: case 0x202F: case 0x205F:
        case 0x3000:
            return true;
        default:
            return cp >= 0x2000 && cp <= 0x200A;
    }
}

// Per-code-point class byte: category in the low 3 bits, then flag bits. 0 = "no code point"
// (outside the piece), which llama.cpp's splitters test with flags.as_uint() == 0.
constexpr uint8_t kCatMask = 0x07;
constexpr uint8_t kWs = 0x08;
constexpr uint8_t kValid = 0x10;

struct Cls {
    uint8_t v = 0;
    bool valid() const { return v & kValid; }
    bool ws() const { return v & kWs; }
    bool letter() const { return valid() && (v & kCatMask) == kLetter; }
    bool number() const { return valid() && (v & kCatMask) == kNumber; }
    bool mark() const { return valid() && (v & kCatMask) == kMark; }
};

// Decodes like unicode_cpts_from_utf8(): lead byte decides the length; continuation bytes
// must be 10xxxxxx and present; no overlong or surrogate checks. Anything else is one byte
// decoded as U+FFFD. (A 4-byte form above U+10FFFF is also U+FFFD here; llama.cpp throws.)
uint32_t decode_one(std::string_view s, size_t i, size_t& len) {
    auto b = [&](size_t k) { return static_cast<uint8_t>(s[k]); };
    auto cont = [&](size_t k) { return k < s.size() && (b(k) & 0xC0) == 0x80; };
    uint8_t c = b(i);
    len = 1;
    if (c < 0x80) return c;
    if ((c & 0xE0) == 0xC0 && cont(i + 1)) {
        len = 2;
        return ((c & 0x1Fu) << 6) | (b(i + 1) & 0x3Fu);
    }
    if ((c & 0xF0) == 0xE0 && cont(i + 1) && cont(i + 2)) {
        len = 3;
        return ((c & 0x0Fu) << 12) | ((b(i + 1) & 0x3Fu) << 6) | (b(i + 2) & 0x3Fu);
    }
    if ((c & 0xF8) == 0xF0 && cont(i + 1) && cont(i + 2) && cont(i + 3)) {
        uint32_t cp = ((c & 0x07u) << 18) | ((b(i + 1) & 0x3Fu) << 12) |
                      ((b(i + 2) & 0x3Fu) << 6) | (b(i + 3) & 0x3Fu);
        if (cp <= 0x10FFFF) {
            len = 4;
            return cp;
        }
    }
    return 0xFFFD;
}

void append_utf8(uint32_t cp, std::string& out) {
    if (cp < 0x80) {
        out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
        out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
        out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
        out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
}

// The text of one split() call, decoded once.
struct Decoded {
    std::vector<uint32_t> cps;     // [n] code points
    std::vector<size_t> byte_pos;  // [n + 1] offset of each code point in the original text
    std::vector<uint8_t> cls;      // [n] Cls bytes

    explicit Decoded(std::string_view text) {
        cps.reserve(text.size());
        byte_pos.reserve(text.size() + 1);
        for (size_t i = 0; i < text.size();) {
            size_t len;
            uint32_t cp = decode_one(text, i, len);
            cps.push_back(cp);
            byte_pos.push_back(i);
            i += len;
        }
        byte_pos.push_back(text.size());
        cls.resize(cps.size());
        for (size_t i = 0; i < cps.size(); ++i) {
            cls[i] = static_cast<uint8_t>(category_of(cps[i]) | kValid |
                                          (is_white_space(cps[i]) ? kWs : 0));
        }
    }
    size_t size() const { return cps.size(); }
};

struct Range {
    size_t begin, end;  // code point indices into Decoded, begin < end
};

// ---------------------------------------------------------------------------------------
// Hand-written splitters. Each works on one piece [ini, end) of the previous step and reads
// nothing outside it; positions outside read as "no code point" (OOR / Cls{}).

constexpr uint32_t kOor = 0xFFFFFFFF;

struct PieceView {
    const Decoded& d;
    size_t ini, end;
    uint32_t cp(size_t i) const { return i >= ini && i < end ? d.cps[i] : kOor; }
    Cls cls(size_t i) const { return i >= ini && i < end ? Cls{d.cls[i]} : Cls{}; }
};

// Appends [prev, to) when non-empty and moves prev; the splitters keep prev == pos between
// iterations, as llama.cpp's _add_token does.
struct Emitter {
    std::vector<Range>& out;
    size_t prev;
    void to(size_t e) {
        if (e > prev) out.push_back({prev, e});
        prev = e;
    }
};

uint32_t ascii_lower(uint32_t c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

// 's 't 'm 'd 're 've 'll at pos (which holds '\''): returns the contraction length or 0.
// Only ASCII letters lower-case to s/t/m/d/r/e/v/l in Unicode, so ASCII folding matches
// llama.cpp's unicode_tolower here.
size_t contraction_len(const PieceView& p, size_t pos, bool fold_case) {
    if (pos + 1 >= p.end) return 0;
    auto fold = [&](uint32_t c) { return fold_case ? ascii_lower(c) : c; };
    uint32_t c1 = fold(p.cp(pos + 1));
    if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') return 2;
    if (pos + 2 >= p.end) return 0;
    uint32_t c2 = fold(p.cp(pos + 2));
    if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) return 3;
    return 0;
}

// Whitespace tail shared by the Llama-3-like splitters: \s*[\r\n]+ | \s+(?!\S) | \s+ | any.
size_t whitespace_end(const PieceView& p, size_t pos, bool newline_alt) {
    size_t n = 0, last_nl_end = 0;
    while (p.cls(pos + n).ws()) {
        uint32_t c = p.cp(pos + n);
        if (c == '\r' || c == '\n') last_nl_end = pos + n + 1;
        ++n;
    }
    if (newline_alt && last_nl_end > 0) return last_nl_end;
    if (n > 1 && pos + n < p.end) return pos + n - 1;
    if (n > 0) return pos + n;
    return pos + 1;
}

// 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S) (plus \s+).
void split_gpt2(const PieceView& p, std::vector<Range>& out) {
    Emitter em{out, p.ini};
    for (size_t pos = p.ini; pos < p.end;) {
        const uint32_t c = p.cp(pos);
        if (c == '\'') {
            if (size_t n = contraction_len(p, pos, /*fold_case=*/false)) {
                pos += n;
                em.to(pos);
                continue;
            }
        }
        Cls f2 = c == ' ' ? p.cls(pos + 1) : p.cls(pos);
        if (f2.letter() || f2.number()) {
            const bool letters = f2.letter();
            pos += (c == ' ');
            while (letters ? p.cls(pos).letter() : p.cls(pos).number()) ++pos;
            em.to(pos);
            continue;
        }
        auto is_other = [](Cls f) { return f.valid() && !(f.ws() || f.letter() || f.number()); };
        if (is_other(f2)) {
            pos += (c == ' ');
            while (is_other(p.cls(pos))) ++pos;
            em.to(pos);
            continue;
        }
        pos = whitespace_end(p, pos, /*newline_alt=*/false);
        em.to(pos);
    }
}

// Llama-3 (digits in groups of 3), Qwen2 (single digits) and Qwen3.5 (single digits, marks
// count as letters):
// (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|
// \s*[\r\n]+|\s+(?!\S)|\s+
void split_llama3_like(const PieceView& p, int digit_group, bool marks_are_letters,
                       std::vector<Range>& out) {
    auto wordish = [&](Cls f) { return f.letter() || (marks_are_letters && f.mark()); };
    Emitter em{out, p.ini};
    for (size_t pos = p.ini; pos < p.end;) {
        const uint32_t c = p.cp(pos);
        const Cls f = p.cls(pos);
        if (c == '\'') {
            if (size_t n = contraction_len(p, pos, /*fold_case=*/true)) {
                pos += n;
                em.to(pos);
                continue;
            }
        }
        if (!(c == '\r' || c == '\n' || f.number()) && (wordish(f) || wordish(p.cls(pos + 1)))) {
            ++pos;
            while (wordish(p.cls(pos))) ++pos;
            em.to(pos);
            continue;
        }
        if (f.number()) {
            size_t group_start = pos;
            while (p.cls(pos).number()) {
                ++pos;
                if (pos - group_start >= static_cast<size_t>(digit_group)) {
                    em.to(pos);
                    group_start = pos;
                }
            }
            em.to(pos);
            continue;
        }
        // llama.cpp tests the first character's own flags (always set) rather than f2's here,
        // so a trailing ' ' ends up alone; \s+ would give the same piece.
        auto is_other = [&](Cls x) {
            return !(x.ws() || x.letter() || x.number() || (marks_are_letters && x.mark()));
        };
        Cls f2 = c == ' ' ? p.cls(pos + 1) : f;
        if (is_other(f2) && f.valid()) {
            pos += (c == ' ');
            while (is_other(p.cls(pos)) && p.cls(pos).valid()) ++pos;
            while (p.cp(pos) == '\r' || p.cp(pos) == '\n') ++pos;
            em.to(pos);
            continue;
        }
        pos = whitespace_end(p, pos, /*newline_alt=*/true);
        em.to(pos);
    }
}

bool is_han(uint32_t c) {
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
           (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
           (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B820 && c <= 0x2CEAF) ||
           (c >= 0x2CEB0 && c <= 0x2EBEF) || (c >= 0xF900 && c <= 0xFAFF) ||
           (c >= 0x2F800 && c <= 0x2FA1F);
}

// Kimi-K2: \p{Han}+ | letter words without Han, with an optional leading non-letter and
// contraction suffix | \p{N}{1,3} | ?[^\s\p{L}\p{N}]+[\r\n]* | \s*[\r\n]+ | \s+(?!\S) | \s+
void split_kimi_k2(const PieceView& p, std::vector<Range>& out) {
    auto plain_letter = [&](size_t i) { return p.cls(i).letter() && !is_han(p.cp(i)); };
    Emitter em{out, p.ini};
    for (size_t pos = p.ini; pos < p.end;) {
        const uint32_t c = p.cp(pos);
        const Cls f = p.cls(pos);
        if (is_han(c)) {
            while (is_han(p.cp(pos))) ++pos;
            em.to(pos);
            continue;
        }
        const bool can_lead = !(c == '\r' || c == '\n' || f.letter() || f.number());
        if (plain_letter(pos) || (can_lead && plain_letter(pos + 1))) {
            pos += can_lead;  // the optional leading character
            while (plain_letter(pos)) ++pos;
            if (p.cp(pos) == '\'') pos += contraction_len(p, pos, /*fold_case=*/true);
            em.to(pos);
            continue;
        }
        if (f.number()) {
            size_t group_start = pos;
            while (p.cls(pos).number()) {
                if (++pos - group_start >= 3) {
                    em.to(pos);
                    group_start = pos;
                }
            }
            em.to(pos);
            continue;
        }
        auto is_other = [](Cls x) { return x.valid() && !(x.ws() || x.letter() || x.number()); };
        if (is_other(c == ' ' ? p.cls(pos + 1) : f)) {
            pos += (c == ' ');
            while (is_other(p.cls(pos))) ++pos;
            while (p.cp(pos) == '\r' || p.cp(pos) == '\n') ++pos;
            em.to(pos);
            continue;
        }
        pos = whitespace_end(p, pos, /*newline_alt=*/true);
        em.to(pos);
    }
}

// AFMoE / tiny_aya digits: each run of \p{N} is cut so that the groups after the first have
// 3 digits (1234567 -> 1 234 567). As in llama.cpp, text before a run is not cut off: it is
// joined to the run's first group ("ab1234" -> "ab1" "234"); later steps split it again.
void split_digit_groups(const PieceView& p, std::vector<Range>& out) {
    Emitter em{out, p.ini};
    for (size_t pos = p.ini; pos < p.end;) {
        if (!p.cls(pos).number()) {
            ++pos;
            continue;
        }
        const size_t run_start = pos;
        while (pos < p.end && p.cls(pos).number()) ++pos;
        size_t cut = run_start + (pos - run_start) % 3;
        if (cut > run_start) em.to(cut);
        for (; cut < pos; cut += 3) em.to(cut + 3);
    }
    em.to(p.end);
}

// [^\n]+|[\n]+
void split_newlines(const PieceView& p, std::vector<Range>& out) {
    for (size_t pos = p.ini; pos < p.end;) {
        const size_t start = pos;
        const bool nl = p.cp(pos) == '\n';
        while (pos < p.end && (p.cp(pos) == '\n') == nl) ++pos;
        out.push_back({start, pos});
    }
}

enum class Splitter : uint8_t { regex, gpt2, llama3, qwen2, qwen35, kimi_k2, digit_groups, newlines };

// The patterns llama.cpp runs through hand-written code (unicode_regex_split_custom).
Splitter splitter_for(std::string_view re) {
    if (re == kReGpt2) return Splitter::gpt2;
    if (re == kReLlama3) return Splitter::llama3;
    if (re == kReQwen2) return Splitter::qwen2;
    if (re == kReQwen35) return Splitter::qwen35;
    if (re == kReHan) return Splitter::kimi_k2;
    if (re == kReAfmoeDigits || re == kReTinyAyaDigits) return Splitter::digit_groups;
    if (re == kReNewlines) return Splitter::newlines;
    return Splitter::regex;
}

// ---------------------------------------------------------------------------------------
// Patterns run through PCRE2 (std::regex in llama.cpp).

// Private-use stand-ins for the non-ASCII code points of each category in "collapsed" text.
constexpr uint32_t kStandIn[8] = {
    0xE0D0,  // undefined: matches only negated classes
    0xE0D1,  // \p{N}
    0xE0D2,  // \p{L}
    0xE0D0,  // separators that are not White_Space
    0xE0D4,  // \p{M}
    0xE0D3,  // \p{P}
    0xE0D5,  // \p{S}
    0xE0D0,  // \p{C}
};

struct CategoryName {
    std::string_view name;  // as written in the pattern
    Category cat;
    std::string_view ascii;  // its ASCII members, as llama.cpp lists them (no '~' in \p{S})
};
constexpr CategoryName kCategoryNames[] = {
    {"\\p{N}", kNumber, "0-9"},
    {"\\p{L}", kLetter, "A-Za-z"},
    {"\\p{P}", kPunctuation, "!-#%-*,-/:-;?-@\\[-\\]_\\{\\}"},
    {"\\p{M}", kMark, ""},
    {"\\p{S}", kSymbol, "\\$\\+<-=>\\^`\\|"},
    {"\\p{Lu}", kLetter, "A-Za-z"},
    {"\\p{Ll}", kLetter, "A-Za-z"},
    {"\\p{Lt}", kLetter, "A-Za-z"},
    {"\\p{Lm}", kLetter, "A-Za-z"},
    {"\\p{Lo}", kLetter, "A-Za-z"},
};

bool uses_categories(std::string_view re) {
    for (const auto& c : kCategoryNames) {
        if (re.find(c.name) != std::string_view::npos) return true;
    }
    return false;
}

// Rewrites \p{X} as a class of its stand-in and ASCII members, inside or outside [].
Result<std::string> collapse_pattern(std::string_view re) {
    std::string out;
    bool in_class = false;
    for (size_t i = 0; i < re.size(); ++i) {
        const char c = re[i];
        if (static_cast<uint8_t>(c) >= 0x80) {
            return error(StatusCode::internal,
                         "pre-tokenizer regex mixes Unicode categories and non-ASCII text");
        }
        if (c == '\\' && i + 1 < re.size()) {
            const CategoryName* hit = nullptr;
            for (const auto& cn : kCategoryNames) {
                if (re.substr(i, cn.name.size()) == cn.name) hit = &cn;
            }
            if (hit) {
                if (!in_class) out += '[';
                out += strformat("\\x{%X}", kStandIn[hit->cat]);
                out += hit->ascii;
                if (!in_class) out += ']';
                i += hit->name.size() - 1;
            } else {
                out += c;
                out += re[++i];
            }
            continue;
        }
        if (c == '[' && !in_class) in_class = true;
        else if (c == ']' && in_class) in_class = false;
        out += c;
    }
    return out;
}

struct CodeDeleter {
    void operator()(pcre2_code* c) const { pcre2_code_free(c); }
};
struct MatchDataDeleter {
    void operator()(pcre2_match_data* m) const { pcre2_match_data_free(m); }
};
struct MatchContextDeleter {
    void operator()(pcre2_match_context* m) const { pcre2_match_context_free(m); }
};
struct JitStackDeleter {
    void operator()(pcre2_jit_stack* s) const { pcre2_jit_stack_free(s); }
};

struct Step {
    std::string source;  // the llama.cpp pattern
    Splitter splitter = Splitter::regex;
    bool collapsed = false;  // regex only: runs on collapsed text
    std::unique_ptr<pcre2_code, CodeDeleter> code;
};

Status compile_step(Step& step) {
    step.splitter = splitter_for(step.source);
    if (step.splitter != Splitter::regex) return {};
    step.collapsed = uses_categories(step.source);
    std::string pattern = step.source;
    if (step.collapsed) {
        HEARTH_ASSIGN(pattern, collapse_pattern(step.source));
    }
    // No PCRE2_UCP: \s \d \w are ASCII as in std::regex's "C" locale. $ only at the very end
    // (ECMAScript without multiline).
    int err = 0;
    PCRE2_SIZE err_off = 0;
    pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                     PCRE2_UTF | PCRE2_DOLLAR_ENDONLY, &err, &err_off, nullptr);
    if (!code) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        return error(StatusCode::internal,
                     strformat("pre-tokenizer regex does not compile at %zu: %s: %s",
                               static_cast<size_t>(err_off), reinterpret_cast<const char*>(msg),
                               step.source.c_str()));
    }
    step.code.reset(code);
    pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // failure just means the interpreter runs
    return {};
}

// The text a regex step sees, as UTF-8, and where each code point starts in it.
struct Subject {
    std::string text;
    std::vector<size_t> pos;  // [n + 1]

    Subject(const Decoded& d, bool collapsed) {
        text.reserve(d.size());
        pos.reserve(d.size() + 1);
        for (size_t i = 0; i < d.size(); ++i) {
            pos.push_back(text.size());
            const uint32_t cp = d.cps[i];
            if (cp < 0x80) {
                text.push_back(static_cast<char>(cp));
            } else if (d.cls[i] & kWs) {
                text.push_back('\v');  // llama.cpp: non-ASCII whitespace -> 0x0B
            } else {
                append_utf8(collapsed ? kStandIn[d.cls[i] & kCatMask] : cp, text);
            }
        }
        pos.push_back(text.size());
    }
    // Code point index of byte offset `b` (a code point boundary) within [lo, hi].
    size_t index_of(size_t b, size_t lo, size_t hi) const {
        return static_cast<size_t>(std::lower_bound(pos.begin() + lo, pos.begin() + hi + 1, b) -
                                   pos.begin());
    }
};

// Per-call PCRE2 scratch, so one PreTokenizer can be used from several threads. The limits
// are raised so that long pieces do not fail: the patterns backtrack at most linearly.
struct MatchScratch {
    std::unique_ptr<pcre2_match_context, MatchContextDeleter> ctx{pcre2_match_context_create(nullptr)};
    std::unique_ptr<pcre2_jit_stack, JitStackDeleter> stack{
        pcre2_jit_stack_create(32 * 1024, 16 * 1024 * 1024, nullptr)};
    MatchScratch() {
        if (!ctx) return;
        if (stack) pcre2_jit_stack_assign(ctx.get(), nullptr, stack.get());
        pcre2_set_match_limit(ctx.get(), 0xFFFFFFFFu);
        pcre2_set_depth_limit(ctx.get(), 0xFFFFFFFFu);
        pcre2_set_heap_limit(ctx.get(), 4u * 1024 * 1024);  // KiB: 4 GiB
    }
};

// Splits one piece like llama.cpp's unicode_regex_split_stl: matches and the gaps between
// them all become pieces; an empty match is retried as non-empty at the same place, else the
// search moves on by one code point (std::regex_iterator). Empty pieces are dropped.
// If PCRE2 still fails (out of memory), the rest of the piece stays whole.
void split_regex(const Step& step, const Subject& s, const Range& piece, MatchScratch& scratch,
                 pcre2_match_data* md, std::vector<Range>& out) {
    const size_t base = s.pos[piece.begin];
    const size_t len = s.pos[piece.end] - base;
    auto subject = reinterpret_cast<PCRE2_SPTR>(s.text.data() + base);
    auto emit = [&](size_t b0, size_t b1) {
        if (b1 > b0) {
            out.push_back({s.index_of(base + b0, piece.begin, piece.end),
                           s.index_of(base + b1, piece.begin, piece.end)});
        }
    };
    auto next_cp = [&](size_t b) {  // byte offset after the code point at b
        ++b;
        while (b < len && (static_cast<uint8_t>(subject[b]) & 0xC0) == 0x80) ++b;
        return b;
    };
    size_t done = 0, from = 0;
    uint32_t options = 0;
    while (from <= len) {
        int rc = pcre2_match(step.code.get(), subject, len, from, options | PCRE2_NO_UTF_CHECK, md,
                             scratch.ctx.get());
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT) {  // the interpreter keeps its stack on the heap
            rc = pcre2_match(step.code.get(), subject, len, from,
                             options | PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, md, scratch.ctx.get());
        }
        if (rc == PCRE2_ERROR_NOMATCH) {
            if (options == 0) break;
            // No non-empty match right after an empty one: search on from the next character.
            options = 0;
            if (from >= len) break;
            from = next_cp(from);
            continue;
        }
        if (rc < 0) break;
        const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
        emit(done, ov[0]);
        emit(ov[0], ov[1]);
        done = ov[1];
        from = ov[1];
        options = ov[0] == ov[1] ? (PCRE2_NOTEMPTY_ATSTART | PCRE2_ANCHORED) : 0;
        if (options != 0 && from >= len) break;
    }
    emit(done, len);
}

}  // namespace

// ---------------------------------------------------------------------------------------

uint32_t decode_utf8(std::string_view text, size_t pos, size_t& len) {
    return decode_one(text, pos, len);
}

bool sanitize_utf8(std::string_view text, std::string& out) {
    size_t i = 0;
    while (i < text.size() && static_cast<uint8_t>(text[i]) < 0x80) ++i;
    if (i == text.size()) return false;
    std::string fixed(text.substr(0, i));
    fixed.reserve(text.size() + 8);
    while (i < text.size()) {
        size_t len;
        append_utf8(decode_one(text, i, len), fixed);
        i += len;
    }
    if (fixed == text) return false;
    out = std::move(fixed);
    return true;
}

// Immutable after create(); split() only reads it, so concurrent calls are safe.
struct PreTokenizer::Impl {
    std::string name;
    std::vector<std::string> regexes;
    std::vector<Step> steps;
    uint8_t flags = 0;
};

PreTokenizer::PreTokenizer() : impl_(std::make_unique<Impl>()) {}
PreTokenizer::~PreTokenizer() = default;

Result<std::unique_ptr<PreTokenizer>> PreTokenizer::create(std::string_view pre) {
    const std::string_view lookup = pre.empty() ? std::string_view("default") : pre;
    const Family* family = nullptr;
    for (const auto& f : kFamilies) {
        if (family_has_name(f, lookup)) {
            family = &f;
            break;
        }
    }
    if (!family) {
        return error(StatusCode::unsupported,
                     strformat("unknown pre-tokenizer type (tokenizer.ggml.pre): '%.*s'",
                               static_cast<int>(pre.size()), pre.data()));
    }
    std::unique_ptr<PreTokenizer> p(new PreTokenizer());
    p->impl_->name = std::string(lookup);
    p->impl_->flags = family->flags;
    for (std::string_view re : family->regexes) {
        if (re.empty()) break;
        p->impl_->regexes.emplace_back(re);
        Step step;
        step.source = std::string(re);
        HEARTH_TRY(compile_step(step).with_context(strformat("pre-tokenizer '%s'",
                                                             p->impl_->name.c_str())));
        p->impl_->steps.push_back(std::move(step));
    }
    return p;
}

void PreTokenizer::split(std::string_view text, std::vector<std::string_view>& out) const {
    if (text.empty()) return;
    const Decoded d(text);
    std::vector<Range> pieces{{0, d.size()}}, next;
    std::optional<Subject> collapsed, plain;
    std::optional<MatchScratch> scratch;
    for (const Step& step : impl_->steps) {
        next.clear();
        next.reserve(pieces.size() * 2);
        if (step.splitter == Splitter::regex) {
            std::optional<Subject>& subj = step.collapsed ? collapsed : plain;
            if (!subj) subj.emplace(d, step.collapsed);
            if (!scratch) scratch.emplace();
            std::unique_ptr<pcre2_match_data, MatchDataDeleter> md(
                pcre2_match_data_create_from_pattern(step.code.get(), nullptr));
            for (const Range& piece : pieces) {
                split_regex(step, *subj, piece, *scratch, md.get(), next);
            }
        } else {
            for (const Range& piece : pieces) {
                const PieceView p{d, piece.begin, piece.end};
                switch (step.splitter) {
                    case Splitter::gpt2: split_gpt2(p, next); break;
                    case Splitter::llama3: split_llama3_like(p, 3, false, next); break;
                    case Splitter::qwen2: split_llama3_like(p, 1, false, next); break;
                    case Splitter::qwen35: split_llama3_like(p, 1, true, next); break;
                    case Splitter::kimi_k2: split_kimi_k2(p, next); break;
                    case Splitter::digit_groups: split_digit_groups(p, next); break;
                    case Splitter::newlines: split_newlines(p, next); break;
                    case Splitter::regex: break;
                }
            }
        }
        pieces.swap(next);
    }
    out.reserve(out.size() + pieces.size());
    for (const Range& r : pieces) {
        out.push_back(text.substr(d.byte_pos[r.begin], d.byte_pos[r.end] - d.byte_pos[r.begin]));
    }
}

const std::string& PreTokenizer::name() const { return impl_->name; }
bool PreTokenizer::ignore_merges() const { return impl_->flags & kIgnoreMerges; }
bool PreTokenizer::byte_encode() const { return !(impl_->flags & kRawUtf8); }
bool PreTokenizer::escape_whitespaces() const { return impl_->flags & kEscapeWs; }
bool PreTokenizer::clean_spaces() const { return !(impl_->flags & kKeepSpaces); }
bool PreTokenizer::default_add_bos() const { return impl_->flags & kAddBos; }
BpeOptions PreTokenizer::bpe_options() const {
    BpeOptions o;
    o.ignore_merges = ignore_merges();
    o.byte_encode = byte_encode();
    o.whole_newline_runs = impl_->flags & kNewlineRuns;
    return o;
}
const std::vector<std::string>& PreTokenizer::regexes() const { return impl_->regexes; }

std::vector<std::string> PreTokenizer::supported_names() {
    std::vector<std::string> names;
    for (const auto& f : kFamilies) {
        std::string_view rest = f.names;
        while (!rest.empty()) {
            size_t sp = rest.find(' ');
            names.emplace_back(rest.substr(0, sp));
            if (sp == std::string_view::npos) break;
            rest.remove_prefix(sp + 1);
        }
    }
    return names;
}

// ---------------------------------------------------------------------------------------
// Unicode 15.1 general categories (the version of llama.cpp's unicode-data.cpp), as
// (first_code_point << 4 | Category) for each run of equal category; code points not covered
// by UnicodeData.txt are kUndefined. Generated from UnicodeData.txt 15.0 plus the 627
// characters 15.1 added (U+2EBF0..2EE5D Lo, U+2FFC..2FFF So, U+31EF So); checked equal,
// code point by code point, to llama.cpp's unicode_ranges_flags categories.
namespace {

constexpr uint32_t kCategoryRanges[] = {
    0x0000007, 0x0000203, 0x0000215, 0x0000246, 0x0000255, 0x00002B6, 0x00002C5, 0x0000301, 0x00003A5, 0x00003C6,
    0x00003F5, 0x0000412, 0x00005B5, 0x00005E6, 0x00005F5, 0x0000606, 0x0000612, 0x00007B5, 0x00007C6, 0x00007D5,
    0x00007E6, 0x00007F7, 0x0000A03, 0x0000A15, 0x0000A26, 0x0000A75, 0x0000A86, 0x0000AA2, 0x0000AB5, 0x0000AC6,
    0x0000AD7, 0x0000AE6, 0x0000B21, 0x0000B46, 0x0000B52, 0x0000B65, 0x0000B86, 0x0000B91, 0x0000BA2, 0x0000BB5,
    0x0000BC1, 0x0000BF5, 0x0000C02, 0x0000D76, 0x0000D82, 0x0000F76, 0x0000F82, 0x0002C26, 0x0002C62, 0x0002D26,
    0x0002E02, 0x0002E56, 0x0002EC2, 0x0002ED6, 0x0002EE2, 0x0002EF6, 0x0003004, 0x0003702, 0x0003756, 0x0003762,
    0x0003780, 0x00037A2, 0x00037E5, 0x00037F2, 0x0003800, 0x0003846, 0x0003862, 0x0003875, 0x0003882, 0x00038B0,
    0x00038C2, 0x00038D0, 0x00038E2, 0x0003A20, 0x0003A32, 0x0003F66, 0x0003F72, 0x0004826, 0x0004834, 0x00048A2,
    0x0005300, 0x0005312, 0x0005570, 0x0005592, 0x00055A5, 0x0005602, 0x0005895, 0x00058B0, 0x00058D6, 0x0005900,
    0x0005914, 0x0005BE5, 0x0005BF4, 0x0005C05, 0x0005C14, 0x0005C35, 0x0005C44, 0x0005C65, 0x0005C74, 0x0005C80,
    0x0005D02, 0x0005EB0, 0x0005EF2, 0x0005F35, 0x0005F50, 0x0006007, 0x0006066, 0x0006095, 0x00060B6, 0x00060C5,
    0x00060E6, 0x0006104, 0x00061B5, 0x00061C7, 0x00061D5, 0x0006202, 0x00064B4, 0x0006601, 0x00066A5, 0x00066E2,
    0x0006704, 0x0006712, 0x0006D45, 0x0006D52, 0x0006D64, 0x0006DD7, 0x0006DE6, 0x0006DF4, 0x0006E52, 0x0006E74,
    0x0006E96, 0x0006EA4, 0x0006EE2, 0x0006F01, 0x0006FA2, 0x0006FD6, 0x0006FF2, 0x0007005, 0x00070E0, 0x00070F7,
    0x0007102, 0x0007114, 0x0007122, 0x0007304, 0x00074B0, 0x00074D2, 0x0007A64, 0x0007B12, 0x0007B20, 0x0007C01,
    0x0007CA2, 0x0007EB4, 0x0007F42, 0x0007F66, 0x0007F75, 0x0007FA2, 0x0007FB0, 0x0007FD4, 0x0007FE6, 0x0008002,
    0x0008164, 0x00081A2, 0x00081B4, 0x0008242, 0x0008254, 0x0008282, 0x0008294, 0x00082E0, 0x0008305, 0x00083F0,
    0x0008402, 0x0008594, 0x00085C0, 0x00085E5, 0x00085F0, 0x0008602, 0x00086B0, 0x0008702, 0x0008886, 0x0008892,
    0x00088F0, 0x0008907, 0x0008920, 0x0008984, 0x0008A02, 0x0008CA4, 0x0008E27, 0x0008E34, 0x0009042, 0x00093A4,
    0x00093D2, 0x00093E4, 0x0009502, 0x0009514, 0x0009582, 0x0009624, 0x0009645, 0x0009661, 0x0009705, 0x0009712,
    0x0009814, 0x0009840, 0x0009852, 0x00098D0, 0x00098F2, 0x0009910, 0x0009932, 0x0009A90, 0x0009AA2, 0x0009B10,
    0x0009B22, 0x0009B30, 0x0009B62, 0x0009BA0, 0x0009BC4, 0x0009BD2, 0x0009BE4, 0x0009C50, 0x0009C74, 0x0009C90,
    0x0009CB4, 0x0009CE2, 0x0009CF0, 0x0009D74, 0x0009D80, 0x0009DC2, 0x0009DE0, 0x0009DF2, 0x0009E24, 0x0009E40,
    0x0009E61, 0x0009F02, 0x0009F26, 0x0009F41, 0x0009FA6, 0x0009FC2, 0x0009FD5, 0x0009FE4, 0x0009FF0, 0x000A014,
    0x000A040, 0x000A052, 0x000A0B0, 0x000A0F2, 0x000A110, 0x000A132, 0x000A290, 0x000A2A2, 0x000A310, 0x000A322,
    0x000A340, 0x000A352, 0x000A370, 0x000A382, 0x000A3A0, 0x000A3C4, 0x000A3D0, 0x000A3E4, 0x000A430, 0x000A474,
    0x000A490, 0x000A4B4, 0x000A4E0, 0x000A514, 0x000A520, 0x000A592, 0x000A5D0, 0x000A5E2, 0x000A5F0, 0x000A661,
    0x000A704, 0x000A722, 0x000A754, 0x000A765, 0x000A770, 0x000A814, 0x000A840, 0x000A852, 0x000A8E0, 0x000A8F2,
    0x000A920, 0x000A932, 0x000AA90, 0x000AAA2, 0x000AB10, 0x000AB22, 0x000AB40, 0x000AB52, 0x000ABA0, 0x000ABC4,
    0x000ABD2, 0x000ABE4, 0x000AC60, 0x000AC74, 0x000ACA0, 0x000ACB4, 0x000ACE0, 0x000AD02, 0x000AD10, 0x000AE02,
    0x000AE24, 0x000AE40, 0x000AE61, 0x000AF05, 0x000AF16, 0x000AF20, 0x000AF92, 0x000AFA4, 0x000B000, 0x000B014,
    0x000B040, 0x000B052, 0x000B0D0, 0x000B0F2, 0x000B110, 0x000B132, 0x000B290, 0x000B2A2, 0x000B310, 0x000B322,
    0x000B340, 0x000B352, 0x000B3A0, 0x000B3C4, 0x000B3D2, 0x000B3E4, 0x000B450, 0x000B474, 0x000B490, 0x000B4B4,
    0x000B4E0, 0x000B554, 0x000B580, 0x000B5C2, 0x000B5E0, 0x000B5F2, 0x000B624, 0x000B640, 0x000B661, 0x000B706,
    0x000B712, 0x000B721, 0x000B780, 0x000B824, 0x000B832, 0x000B840, 0x000B852, 0x000B8B0, 0x000B8E2, 0x000B910,
    0x000B922, 0x000B960, 0x000B992, 0x000B9B0, 0x000B9C2, 0x000B9D0, 0x000B9E2, 0x000BA00, 0x000BA32, 0x000BA50,
    0x000BA82, 0x000BAB0, 0x000BAE2, 0x000BBA0, 0x000BBE4, 0x000BC30, 0x000BC64, 0x000BC90, 0x000BCA4, 0x000BCE0,
    0x000BD02, 0x000BD10, 0x000BD74, 0x000BD80, 0x000BE61, 0x000BF36, 0x000BFB0, 0x000C004, 0x000C052, 0x000C0D0,
    0x000C0E2, 0x000C110, 0x000C122, 0x000C290, 0x000C2A2, 0x000C3A0, 0x000C3C4, 0x000C3D2, 0x000C3E4, 0x000C450,
    0x000C464, 0x000C490, 0x000C4A4, 0x000C4E0, 0x000C554, 0x000C570, 0x000C582, 0x000C5B0, 0x000C5D2, 0x000C5E0,
    0x000C602, 0x000C624, 0x000C640, 0x000C661, 0x000C700, 0x000C775, 0x000C781, 0x000C7F6, 0x000C802, 0x000C814,
    0x000C845, 0x000C852, 0x000C8D0, 0x000C8E2, 0x000C910, 0x000C922, 0x000CA90, 0x000CAA2, 0x000CB40, 0x000CB52,
    0x000CBA0, 0x000CBC4, 0x000CBD2, 0x000CBE4, 0x000CC50, 0x000CC64, 0x000CC90, 0x000CCA4, 0x000CCE0, 0x000CD54,
    0x000CD70, 0x000CDD2, 0x000CDF0, 0x000CE02, 0x000CE24, 0x000CE40, 0x000CE61, 0x000CF00, 0x000CF12, 0x000CF34,
    0x000CF40, 0x000D004, 0x000D042, 0x000D0D0, 0x000D0E2, 0x000D110, 0x000D122, 0x000D3B4, 0x000D3D2, 0x000D3E4,
    0x000D450, 0x000D464, 0x000D490, 0x000D4A4, 0x000D4E2, 0x000D4F6, 0x000D500, 0x000D542, 0x000D574, 0x000D581,
    0x000D5F2, 0x000D624, 0x000D640, 0x000D661, 0x000D796, 0x000D7A2, 0x000D800, 0x000D814, 0x000D840, 0x000D852,
    0x000D970, 0x000D9A2, 0x000DB20, 0x000DB32, 0x000DBC0, 0x000DBD2, 0x000DBE0, 0x000DC02, 0x000DC70, 0x000DCA4,
    0x000DCB0, 0x000DCF4, 0x000DD50, 0x000DD64, 0x000DD70, 0x000DD84, 0x000DE00, 0x000DE61, 0x000DF00, 0x000DF24,
    0x000DF45, 0x000DF50, 0x000E012, 0x000E314, 0x000E322, 0x000E344, 0x000E3B0, 0x000E3F6, 0x000E402, 0x000E474,
    0x000E4F5, 0x000E501, 0x000E5A5, 0x000E5C0, 0x000E812, 0x000E830, 0x000E842, 0x000E850, 0x000E862, 0x000E8B0,
    0x000E8C2, 0x000EA40, 0x000EA52, 0x000EA60, 0x000EA72, 0x000EB14, 0x000EB22, 0x000EB44, 0x000EBD2, 0x000EBE0,
    0x000EC02, 0x000EC50, 0x000EC62, 0x000EC70, 0x000EC84, 0x000ECF0, 0x000ED01, 0x000EDA0, 0x000EDC2, 0x000EE00,
    0x000F002, 0x000F016, 0x000F045, 0x000F136, 0x000F145, 0x000F156, 0x000F184, 0x000F1A6, 0x000F201, 0x000F346,
    0x000F354, 0x000F366, 0x000F374, 0x000F386, 0x000F394, 0x000F3A5, 0x000F3E4, 0x000F402, 0x000F480, 0x000F492,
    0x000F6D0, 0x000F714, 0x000F855, 0x000F864, 0x000F882, 0x000F8D4, 0x000F980, 0x000F994, 0x000FBD0, 0x000FBE6,
    0x000FC64, 0x000FC76, 0x000FCD0, 0x000FCE6, 0x000FD05, 0x000FD56, 0x000FD95, 0x000FDB0, 0x0010002, 0x00102B4,
    0x00103F2, 0x0010401, 0x00104A5, 0x0010502, 0x0010564, 0x00105A2, 0x00105E4, 0x0010612, 0x0010624, 0x0010652,
    0x0010674, 0x00106E2, 0x0010714, 0x0010752, 0x0010824, 0x00108E2, 0x00108F4, 0x0010901, 0x00109A4, 0x00109E6,
    0x0010A02, 0x0010C60, 0x0010C72, 0x0010C80, 0x0010CD2, 0x0010CE0, 0x0010D02, 0x0010FB5, 0x0010FC2, 0x0012490,
    0x00124A2, 0x00124E0, 0x0012502, 0x0012570, 0x0012582, 0x0012590, 0x00125A2, 0x00125E0, 0x0012602, 0x0012890,
    0x00128A2, 0x00128E0, 0x0012902, 0x0012B10, 0x0012B22, 0x0012B60, 0x0012B82, 0x0012BF0, 0x0012C02, 0x0012C10,
    0x0012C22, 0x0012C60, 0x0012C82, 0x0012D70, 0x0012D82, 0x0013110, 0x0013122, 0x0013160, 0x0013182, 0x00135B0,
    0x00135D4, 0x0013605, 0x0013691, 0x00137D0, 0x0013802, 0x0013906, 0x00139A0, 0x0013A02, 0x0013F60, 0x0013F82,
    0x0013FE0, 0x0014005, 0x0014012, 0x00166D6, 0x00166E5, 0x00166F2, 0x0016803, 0x0016812, 0x00169B5, 0x00169D0,
    0x0016A02, 0x0016EB5, 0x0016EE1, 0x0016F12, 0x0016F90, 0x0017002, 0x0017124, 0x0017160, 0x00171F2, 0x0017324,
    0x0017355, 0x0017370, 0x0017402, 0x0017524, 0x0017540, 0x0017602, 0x00176D0, 0x00176E2, 0x0017710, 0x0017724,
    0x0017740, 0x0017802, 0x0017B44, 0x0017D45, 0x0017D72, 0x0017D85, 0x0017DB6, 0x0017DC2, 0x0017DD4, 0x0017DE0,
    0x0017E01, 0x0017EA0, 0x0017F01, 0x0017FA0, 0x0018005, 0x00180B4, 0x00180E7, 0x00180F4, 0x0018101, 0x00181A0,
    0x0018202, 0x0018790, 0x0018802, 0x0018854, 0x0018872, 0x0018A94, 0x0018AA2, 0x0018AB0, 0x0018B02, 0x0018F60,
    0x0019002, 0x00191F0, 0x0019204, 0x00192C0, 0x0019304, 0x00193C0, 0x0019406, 0x0019410, 0x0019445, 0x0019461,
    0x0019502, 0x00196E0, 0x0019702, 0x0019750, 0x0019802, 0x0019AC0, 0x0019B02, 0x0019CA0, 0x0019D01, 0x0019DB0,
    0x0019DE6, 0x001A002, 0x001A174, 0x001A1C0, 0x001A1E5, 0x001A202, 0x001A554, 0x001A5F0, 0x001A604, 0x001A7D0,
    0x001A7F4, 0x001A801, 0x001A8A0, 0x001A901, 0x001A9A0, 0x001AA05, 0x001AA72, 0x001AA85, 0x001AAE0, 0x001AB04,
    0x001ACF0, 0x001B004, 0x001B052, 0x001B344, 0x001B452, 0x001B4D0, 0x001B501, 0x001B5A5, 0x001B616, 0x001B6B4,
    0x001B746, 0x001B7D5, 0x001B7F0, 0x001B804, 0x001B832, 0x001BA14, 0x001BAE2, 0x001BB01, 0x001BBA2, 0x001BE64,
    0x001BF40, 0x001BFC5, 0x001C002, 0x001C244, 0x001C380, 0x001C3B5, 0x001C401, 0x001C4A0, 0x001C4D2, 0x001C501,
    0x001C5A2, 0x001C7E5, 0x001C802, 0x001C890, 0x001C902, 0x001CBB0, 0x001CBD2, 0x001CC05, 0x001CC80, 0x001CD04,
    0x001CD35, 0x001CD44, 0x001CE92, 0x001CED4, 0x001CEE2, 0x001CF44, 0x001CF52, 0x001CF74, 0x001CFA2, 0x001CFB0,
    0x001D002, 0x001DC04, 0x001E002, 0x001F160, 0x001F182, 0x001F1E0, 0x001F202, 0x001F460, 0x001F482, 0x001F4E0,
    0x001F502, 0x001F580, 0x001F592, 0x001F5A0, 0x001F5B2, 0x001F5C0, 0x001F5D2, 0x001F5E0, 0x001F5F2, 0x001F7E0,
    0x001F802, 0x001FB50, 0x001FB62, 0x001FBD6, 0x001FBE2, 0x001FBF6, 0x001FC22, 0x001FC50, 0x001FC62, 0x001FCD6,
    0x001FD02, 0x001FD40, 0x001FD62, 0x001FDC0, 0x001FDD6, 0x001FE02, 0x001FED6, 0x001FF00, 0x001FF22, 0x001FF50,
    0x001FF62, 0x001FFD6, 0x001FFF0, 0x0020003, 0x00200B7, 0x0020105, 0x0020283, 0x00202A7, 0x00202F3, 0x0020305,
    0x0020446, 0x0020455, 0x0020526, 0x0020535, 0x00205F3, 0x0020607, 0x0020650, 0x0020667, 0x0020701, 0x0020712,
    0x0020720, 0x0020741, 0x00207A6, 0x00207D5, 0x00207F2, 0x0020801, 0x00208A6, 0x00208D5, 0x00208F0, 0x0020902,
    0x00209D0, 0x0020A06, 0x0020C10, 0x0020D04, 0x0020F10, 0x0021006, 0x0021022, 0x0021036, 0x0021072, 0x0021086,
    0x00210A2, 0x0021146, 0x0021152, 0x0021166, 0x0021192, 0x00211E6, 0x0021242, 0x0021256, 0x0021262, 0x0021276,
    0x0021282, 0x0021296, 0x00212A2, 0x00212E6, 0x00212F2, 0x00213A6, 0x00213C2, 0x0021406, 0x0021452, 0x00214A6,
    0x00214E2, 0x00214F6, 0x0021501, 0x0021832, 0x0021851, 0x00218A6, 0x00218C0, 0x0021906, 0x0023085, 0x00230C6,
    0x0023295, 0x00232B6, 0x0024270, 0x0024406, 0x00244B0, 0x0024601, 0x00249C6, 0x0024EA1, 0x0025006, 0x0027685,
    0x0027761, 0x0027946, 0x0027C55, 0x0027C76, 0x0027E65, 0x0027F06, 0x0029835, 0x0029996, 0x0029D85, 0x0029DC6,
    0x0029FC5, 0x0029FE6, 0x002B740, 0x002B766, 0x002B960, 0x002B976, 0x002C002, 0x002CE56, 0x002CEB2, 0x002CEF4,
    0x002CF22, 0x002CF40, 0x002CF95, 0x002CFD1, 0x002CFE5, 0x002D002, 0x002D260, 0x002D272, 0x002D280, 0x002D2D2,
    0x002D2E0, 0x002D302, 0x002D680, 0x002D6F2, 0x002D705, 0x002D710, 0x002D7F4, 0x002D802, 0x002D970, 0x002DA02,
    0x002DA70, 0x002DA82, 0x002DAF0, 0x002DB02, 0x002DB70, 0x002DB82, 0x002DBF0, 0x002DC02, 0x002DC70, 0x002DC82,
    0x002DCF0, 0x002DD02, 0x002DD70, 0x002DD82, 0x002DDF0, 0x002DE04, 0x002E005, 0x002E2F2, 0x002E305, 0x002E506,
    0x002E525, 0x002E5E0, 0x002E806, 0x002E9A0, 0x002E9B6, 0x002EF40, 0x002F006, 0x002FD60, 0x002FF06, 0x0030003,
    0x0030015, 0x0030046, 0x0030052, 0x0030071, 0x0030085, 0x0030126, 0x0030145, 0x0030206, 0x0030211, 0x00302A4,
    0x0030305, 0x0030312, 0x0030366, 0x0030381, 0x00303B2, 0x00303D5, 0x00303E6, 0x0030400, 0x0030412, 0x0030970,
    0x0030994, 0x00309B6, 0x00309D2, 0x0030A05, 0x0030A12, 0x0030FB5, 0x0030FC2, 0x0031000, 0x0031052, 0x0031300,
    0x0031312, 0x00318F0, 0x0031906, 0x0031921, 0x0031966, 0x0031A02, 0x0031C06, 0x0031E40, 0x0031EF6, 0x0031F02,
    0x0032006, 0x00321F0, 0x0032201, 0x00322A6, 0x0032481, 0x0032506, 0x0032511, 0x0032606, 0x0032801, 0x00328A6,
    0x0032B11, 0x0032C06, 0x0034002, 0x004DC06, 0x004E002, 0x00A48D0, 0x00A4906, 0x00A4C70, 0x00A4D02, 0x00A4FE5,
    0x00A5002, 0x00A60D5, 0x00A6102, 0x00A6201, 0x00A62A2, 0x00A62C0, 0x00A6402, 0x00A66F4, 0x00A6735, 0x00A6744,
    0x00A67E5, 0x00A67F2, 0x00A69E4, 0x00A6A02, 0x00A6E61, 0x00A6F04, 0x00A6F25, 0x00A6F80, 0x00A7006, 0x00A7172,
    0x00A7206, 0x00A7222, 0x00A7896, 0x00A78B2, 0x00A7CB0, 0x00A7D02, 0x00A7D20, 0x00A7D32, 0x00A7D40, 0x00A7D52,
    0x00A7DA0, 0x00A7F22, 0x00A8024, 0x00A8032, 0x00A8064, 0x00A8072, 0x00A80B4, 0x00A80C2, 0x00A8234, 0x00A8286,
    0x00A82C4, 0x00A82D0, 0x00A8301, 0x00A8366, 0x00A83A0, 0x00A8402, 0x00A8745, 0x00A8780, 0x00A8804, 0x00A8822,
    0x00A8B44, 0x00A8C60, 0x00A8CE5, 0x00A8D01, 0x00A8DA0, 0x00A8E04, 0x00A8F22, 0x00A8F85, 0x00A8FB2, 0x00A8FC5,
    0x00A8FD2, 0x00A8FF4, 0x00A9001, 0x00A90A2, 0x00A9264, 0x00A92E5, 0x00A9302, 0x00A9474, 0x00A9540, 0x00A95F5,
    0x00A9602, 0x00A97D0, 0x00A9804, 0x00A9842, 0x00A9B34, 0x00A9C15, 0x00A9CE0, 0x00A9CF2, 0x00A9D01, 0x00A9DA0,
    0x00A9DE5, 0x00A9E02, 0x00A9E54, 0x00A9E62, 0x00A9F01, 0x00A9FA2, 0x00A9FF0, 0x00AA002, 0x00AA294, 0x00AA370,
    0x00AA402, 0x00AA434, 0x00AA442, 0x00AA4C4, 0x00AA4E0, 0x00AA501, 0x00AA5A0, 0x00AA5C5, 0x00AA602, 0x00AA776,
    0x00AA7A2, 0x00AA7B4, 0x00AA7E2, 0x00AAB04, 0x00AAB12, 0x00AAB24, 0x00AAB52, 0x00AAB74, 0x00AAB92, 0x00AABE4,
    0x00AAC02, 0x00AAC14, 0x00AAC22, 0x00AAC30, 0x00AADB2, 0x00AADE5, 0x00AAE02, 0x00AAEB4, 0x00AAF05, 0x00AAF22,
    0x00AAF54, 0x00AAF70, 0x00AB012, 0x00AB070, 0x00AB092, 0x00AB0F0, 0x00AB112, 0x00AB170, 0x00AB202, 0x00AB270,
    0x00AB282, 0x00AB2F0, 0x00AB302, 0x00AB5B6, 0x00AB5C2, 0x00AB6A6, 0x00AB6C0, 0x00AB702, 0x00ABE34, 0x00ABEB5,
    0x00ABEC4, 0x00ABEE0, 0x00ABF01, 0x00ABFA0, 0x00AC002, 0x00D7A40, 0x00D7B02, 0x00D7C70, 0x00D7CB2, 0x00D7FC0,
    0x00D8007, 0x00F9002, 0x00FA6E0, 0x00FA702, 0x00FADA0, 0x00FB002, 0x00FB070, 0x00FB132, 0x00FB180, 0x00FB1D2,
    0x00FB1E4, 0x00FB1F2, 0x00FB296, 0x00FB2A2, 0x00FB370, 0x00FB382, 0x00FB3D0, 0x00FB3E2, 0x00FB3F0, 0x00FB402,
    0x00FB420, 0x00FB432, 0x00FB450, 0x00FB462, 0x00FBB26, 0x00FBC30, 0x00FBD32, 0x00FD3E5, 0x00FD406, 0x00FD502,
    0x00FD900, 0x00FD922, 0x00FDC80, 0x00FDCF6, 0x00FDD00, 0x00FDF02, 0x00FDFC6, 0x00FE004, 0x00FE105, 0x00FE1A0,
    0x00FE204, 0x00FE305, 0x00FE530, 0x00FE545, 0x00FE626, 0x00FE635, 0x00FE646, 0x00FE670, 0x00FE685, 0x00FE696,
    0x00FE6A5, 0x00FE6C0, 0x00FE702, 0x00FE750, 0x00FE762, 0x00FEFD0, 0x00FEFF7, 0x00FF000, 0x00FF015, 0x00FF046,
    0x00FF055, 0x00FF0B6, 0x00FF0C5, 0x00FF101, 0x00FF1A5, 0x00FF1C6, 0x00FF1F5, 0x00FF212, 0x00FF3B5, 0x00FF3E6,
    0x00FF3F5, 0x00FF406, 0x00FF412, 0x00FF5B5, 0x00FF5C6, 0x00FF5D5, 0x00FF5E6, 0x00FF5F5, 0x00FF662, 0x00FFBF0,
    0x00FFC22, 0x00FFC80, 0x00FFCA2, 0x00FFD00, 0x00FFD22, 0x00FFD80, 0x00FFDA2, 0x00FFDD0, 0x00FFE06, 0x00FFE70,
    0x00FFE86, 0x00FFEF0, 0x00FFF97, 0x00FFFC6, 0x00FFFE0, 0x0100002, 0x01000C0, 0x01000D2, 0x0100270, 0x0100282,
    0x01003B0, 0x01003C2, 0x01003E0, 0x01003F2, 0x01004E0, 0x0100502, 0x01005E0, 0x0100802, 0x0100FB0, 0x0101005,
    0x0101030, 0x0101071, 0x0101340, 0x0101376, 0x0101401, 0x0101796, 0x01018A1, 0x01018C6, 0x01018F0, 0x0101906,
    0x01019D0, 0x0101A06, 0x0101A10, 0x0101D06, 0x0101FD4, 0x0101FE0, 0x0102802, 0x01029D0, 0x0102A02, 0x0102D10,
    0x0102E04, 0x0102E11, 0x0102FC0, 0x0103002, 0x0103201, 0x0103240, 0x01032D2, 0x0103411, 0x0103422, 0x01034A1,
    0x01034B0, 0x0103502, 0x0103764, 0x01037B0, 0x0103802, 0x01039E0, 0x01039F5, 0x0103A02, 0x0103C40, 0x0103C82,
    0x0103D05, 0x0103D11, 0x0103D60, 0x0104002, 0x01049E0, 0x0104A01, 0x0104AA0, 0x0104B02, 0x0104D40, 0x0104D82,
    0x0104FC0, 0x0105002, 0x0105280, 0x0105302, 0x0105640, 0x01056F5, 0x0105702, 0x01057B0, 0x01057C2, 0x01058B0,
    0x01058C2, 0x0105930, 0x0105942, 0x0105960, 0x0105972, 0x0105A20, 0x0105A32, 0x0105B20, 0x0105B32, 0x0105BA0,
    0x0105BB2, 0x0105BD0, 0x0106002, 0x0107370, 0x0107402, 0x0107560, 0x0107602, 0x0107680, 0x0107802, 0x0107860,
    0x0107872, 0x0107B10, 0x0107B22, 0x0107BB0, 0x0108002, 0x0108060, 0x0108082, 0x0108090, 0x01080A2, 0x0108360,
    0x0108372, 0x0108390, 0x01083C2, 0x01083D0, 0x01083F2, 0x0108560, 0x0108575, 0x0108581, 0x0108602, 0x0108776,
    0x0108791, 0x0108802, 0x01089F0, 0x0108A71, 0x0108B00, 0x0108E02, 0x0108F30, 0x0108F42, 0x0108F60, 0x0108FB1,
    0x0109002, 0x0109161, 0x01091C0, 0x01091F5, 0x0109202, 0x01093A0, 0x01093F5, 0x0109400, 0x0109802, 0x0109B80,
    0x0109BC1, 0x0109BE2, 0x0109C01, 0x0109D00, 0x0109D21, 0x010A002, 0x010A014, 0x010A040, 0x010A054, 0x010A070,
    0x010A0C4, 0x010A102, 0x010A140, 0x010A152, 0x010A180, 0x010A192, 0x010A360, 0x010A384, 0x010A3B0, 0x010A3F4,
    0x010A401, 0x010A490, 0x010A505, 0x010A590, 0x010A602, 0x010A7D1, 0x010A7F5, 0x010A802, 0x010A9D1, 0x010AA00,
    0x010AC02, 0x010AC86, 0x010AC92, 0x010AE54, 0x010AE70, 0x010AEB1, 0x010AF05, 0x010AF70, 0x010B002, 0x010B360,
    0x010B395, 0x010B402, 0x010B560, 0x010B581, 0x010B602, 0x010B730, 0x010B781, 0x010B802, 0x010B920, 0x010B995,
    0x010B9D0, 0x010BA91, 0x010BB00, 0x010C002, 0x010C490, 0x010C802, 0x010CB30, 0x010CC02, 0x010CF30, 0x010CFA1,
    0x010D002, 0x010D244, 0x010D280, 0x010D301, 0x010D3A0, 0x010E601, 0x010E7F0, 0x010E802, 0x010EAA0, 0x010EAB4,
    0x010EAD5, 0x010EAE0, 0x010EB02, 0x010EB20, 0x010EFD4, 0x010F002, 0x010F1D1, 0x010F272, 0x010F280, 0x010F302,
    0x010F464, 0x010F511, 0x010F555, 0x010F5A0, 0x010F702, 0x010F824, 0x010F865, 0x010F8A0, 0x010FB02, 0x010FC51,
    0x010FCC0, 0x010FE02, 0x010FF70, 0x0110004, 0x0110032, 0x0110384, 0x0110475, 0x01104E0, 0x0110521, 0x0110704,
    0x0110712, 0x0110734, 0x0110752, 0x0110760, 0x01107F4, 0x0110832, 0x0110B04, 0x0110BB5, 0x0110BD7, 0x0110BE5,
    0x0110C24, 0x0110C30, 0x0110CD7, 0x0110CE0, 0x0110D02, 0x0110E90, 0x0110F01, 0x0110FA0, 0x0111004, 0x0111032,
    0x0111274, 0x0111350, 0x0111361, 0x0111405, 0x0111442, 0x0111454, 0x0111472, 0x0111480, 0x0111502, 0x0111734,
    0x0111745, 0x0111762, 0x0111770, 0x0111804, 0x0111832, 0x0111B34, 0x0111C12, 0x0111C55, 0x0111C94, 0x0111CD5,
    0x0111CE4, 0x0111D01, 0x0111DA2, 0x0111DB5, 0x0111DC2, 0x0111DD5, 0x0111E00, 0x0111E11, 0x0111F50, 0x0112002,
    0x0112120, 0x0112132, 0x01122C4, 0x0112385, 0x01123E4, 0x01123F2, 0x0112414, 0x0112420, 0x0112802, 0x0112870,
    0x0112882, 0x0112890, 0x01128A2, 0x01128E0, 0x01128F2, 0x01129E0, 0x01129F2, 0x0112A95, 0x0112AA0, 0x0112B02,
    0x0112DF4, 0x0112EB0, 0x0112F01, 0x0112FA0, 0x0113004, 0x0113040, 0x0113052, 0x01130D0, 0x01130F2, 0x0113110,
    0x0113132, 0x0113290, 0x01132A2, 0x0113310, 0x0113322, 0x0113340, 0x0113352, 0x01133A0, 0x01133B4, 0x01133D2,
    0x01133E4, 0x0113450, 0x0113474, 0x0113490, 0x01134B4, 0x01134E0, 0x0113502, 0x0113510, 0x0113574, 0x0113580,
    0x01135D2, 0x0113624, 0x0113640, 0x0113664, 0x01136D0, 0x0113704, 0x0113750, 0x0114002, 0x0114354, 0x0114472,
    0x01144B5, 0x0114501, 0x01145A5, 0x01145C0, 0x01145D5, 0x01145E4, 0x01145F2, 0x0114620, 0x0114802, 0x0114B04,
    0x0114C42, 0x0114C65, 0x0114C72, 0x0114C80, 0x0114D01, 0x0114DA0, 0x0115802, 0x0115AF4, 0x0115B60, 0x0115B84,
    0x0115C15, 0x0115D82, 0x0115DC4, 0x0115DE0, 0x0116002, 0x0116304, 0x0116415, 0x0116442, 0x0116450, 0x0116501,
    0x01165A0, 0x0116605, 0x01166D0, 0x0116802, 0x0116AB4, 0x0116B82, 0x0116B95, 0x0116BA0, 0x0116C01, 0x0116CA0,
    0x0117002, 0x01171B0, 0x01171D4, 0x01172C0, 0x0117301, 0x01173C5, 0x01173F6, 0x0117402, 0x0117470, 0x0118002,
    0x01182C4, 0x01183B5, 0x01183C0, 0x0118A02, 0x0118E01, 0x0118F30, 0x0118FF2, 0x0119070, 0x0119092, 0x01190A0,
    0x01190C2, 0x0119140, 0x0119152, 0x0119170, 0x0119182, 0x0119304, 0x0119360, 0x0119374, 0x0119390, 0x01193B4,
    0x01193F2, 0x0119404, 0x0119412, 0x0119424, 0x0119445, 0x0119470, 0x0119501, 0x01195A0, 0x0119A02, 0x0119A80,
    0x0119AA2, 0x0119D14, 0x0119D80, 0x0119DA4, 0x0119E12, 0x0119E25, 0x0119E32, 0x0119E44, 0x0119E50, 0x011A002,
    0x011A014, 0x011A0B2, 0x011A334, 0x011A3A2, 0x011A3B4, 0x011A3F5, 0x011A474, 0x011A480, 0x011A502, 0x011A514,
    0x011A5C2, 0x011A8A4, 0x011A9A5, 0x011A9D2, 0x011A9E5, 0x011AA30, 0x011AB02, 0x011AF90, 0x011B005, 0x011B0A0,
    0x011C002, 0x011C090, 0x011C0A2, 0x011C2F4, 0x011C370, 0x011C384, 0x011C402, 0x011C415, 0x011C460, 0x011C501,
    0x011C6D0, 0x011C705, 0x011C722, 0x011C900, 0x011C924, 0x011CA80, 0x011CA94, 0x011CB70, 0x011D002, 0x011D070,
    0x011D082, 0x011D0A0, 0x011D0B2, 0x011D314, 0x011D370, 0x011D3A4, 0x011D3B0, 0x011D3C4, 0x011D3E0, 0x011D3F4,
    0x011D462, 0x011D474, 0x011D480, 0x011D501, 0x011D5A0, 0x011D602, 0x011D660, 0x011D672, 0x011D690, 0x011D6A2,
    0x011D8A4, 0x011D8F0, 0x011D904, 0x011D920, 0x011D934, 0x011D982, 0x011D990, 0x011DA01, 0x011DAA0, 0x011EE02,
    0x011EF34, 0x011EF75, 0x011EF90, 0x011F004, 0x011F022, 0x011F034, 0x011F042, 0x011F110, 0x011F122, 0x011F344,
    0x011F3B0, 0x011F3E4, 0x011F435, 0x011F501, 0x011F5A0, 0x011FB02, 0x011FB10, 0x011FC01, 0x011FD56, 0x011FF20,
    0x011FFF5, 0x0120002, 0x01239A0, 0x0124001, 0x01246F0, 0x0124705, 0x0124750, 0x0124802, 0x0125440, 0x012F902,
    0x012FF15, 0x012FF30, 0x0130002, 0x0134307, 0x0134404, 0x0134412, 0x0134474, 0x0134560, 0x0144002, 0x0146470,
    0x0168002, 0x016A390, 0x016A402, 0x016A5F0, 0x016A601, 0x016A6A0, 0x016A6E5, 0x016A702, 0x016ABF0, 0x016AC01,
    0x016ACA0, 0x016AD02, 0x016AEE0, 0x016AF04, 0x016AF55, 0x016AF60, 0x016B002, 0x016B304, 0x016B375, 0x016B3C6,
    0x016B402, 0x016B445, 0x016B456, 0x016B460, 0x016B501, 0x016B5A0, 0x016B5B1, 0x016B620, 0x016B632, 0x016B780,
    0x016B7D2, 0x016B900, 0x016E402, 0x016E801, 0x016E975, 0x016E9B0, 0x016F002, 0x016F4B0, 0x016F4F4, 0x016F502,
    0x016F514, 0x016F880, 0x016F8F4, 0x016F932, 0x016FA00, 0x016FE02, 0x016FE25, 0x016FE32, 0x016FE44, 0x016FE50,
    0x016FF04, 0x016FF20, 0x0170002, 0x0187F80, 0x0188002, 0x018CD60, 0x018D002, 0x018D090, 0x01AFF02, 0x01AFF40,
    0x01AFF52, 0x01AFFC0, 0x01AFFD2, 0x01AFFF0, 0x01B0002, 0x01B1230, 0x01B1322, 0x01B1330, 0x01B1502, 0x01B1530,
    0x01B1552, 0x01B1560, 0x01B1642, 0x01B1680, 0x01B1702, 0x01B2FC0, 0x01BC002, 0x01BC6B0, 0x01BC702, 0x01BC7D0,
    0x01BC802, 0x01BC890, 0x01BC902, 0x01BC9A0, 0x01BC9C6, 0x01BC9D4, 0x01BC9F5, 0x01BCA07, 0x01BCA40, 0x01CF004,
    0x01CF2E0, 0x01CF304, 0x01CF470, 0x01CF506, 0x01CFC40, 0x01D0006, 0x01D0F60, 0x01D1006, 0x01D1270, 0x01D1296,
    0x01D1654, 0x01D16A6, 0x01D16D4, 0x01D1737, 0x01D17B4, 0x01D1836, 0x01D1854, 0x01D18C6, 0x01D1AA4, 0x01D1AE6,
    0x01D1EB0, 0x01D2006, 0x01D2424, 0x01D2456, 0x01D2460, 0x01D2C01, 0x01D2D40, 0x01D2E01, 0x01D2F40, 0x01D3006,
    0x01D3570, 0x01D3601, 0x01D3790, 0x01D4002, 0x01D4550, 0x01D4562, 0x01D49D0, 0x01D49E2, 0x01D4A00, 0x01D4A22,
    0x01D4A30, 0x01D4A52, 0x01D4A70, 0x01D4A92, 0x01D4AD0, 0x01D4AE2, 0x01D4BA0, 0x01D4BB2, 0x01D4BC0, 0x01D4BD2,
    0x01D4C40, 0x01D4C52, 0x01D5060, 0x01D5072, 0x01D50B0, 0x01D50D2, 0x01D5150, 0x01D5162, 0x01D51D0, 0x01D51E2,
    0x01D53A0, 0x01D53B2, 0x01D53F0, 0x01D5402, 0x01D5450, 0x01D5462, 0x01D5470, 0x01D54A2, 0x01D5510, 0x01D5522,
    0x01D6A60, 0x01D6A82, 0x01D6C16, 0x01D6C22, 0x01D6DB6, 0x01D6DC2, 0x01D6FB6, 0x01D6FC2, 0x01D7156, 0x01D7162,
    0x01D7356, 0x01D7362, 0x01D74F6, 0x01D7502, 0x01D76F6, 0x01D7702, 0x01D7896, 0x01D78A2, 0x01D7A96, 0x01D7AA2,
    0x01D7C36, 0x01D7C42, 0x01D7CC0, 0x01D7CE1, 0x01D8006, 0x01DA004, 0x01DA376, 0x01DA3B4, 0x01DA6D6, 0x01DA754,
    0x01DA766, 0x01DA844, 0x01DA856, 0x01DA875, 0x01DA8C0, 0x01DA9B4, 0x01DAA00, 0x01DAA14, 0x01DAB00, 0x01DF002,
    0x01DF1F0, 0x01DF252, 0x01DF2B0, 0x01E0004, 0x01E0070, 0x01E0084, 0x01E0190, 0x01E01B4, 0x01E0220, 0x01E0234,
    0x01E0250, 0x01E0264, 0x01E02B0, 0x01E0302, 0x01E06E0, 0x01E08F4, 0x01E0900, 0x01E1002, 0x01E12D0, 0x01E1304,
    0x01E1372, 0x01E13E0, 0x01E1401, 0x01E14A0, 0x01E14E2, 0x01E14F6, 0x01E1500, 0x01E2902, 0x01E2AE4, 0x01E2AF0,
    0x01E2C02, 0x01E2EC4, 0x01E2F01, 0x01E2FA0, 0x01E2FF6, 0x01E3000, 0x01E4D02, 0x01E4EC4, 0x01E4F01, 0x01E4FA0,
    0x01E7E02, 0x01E7E70, 0x01E7E82, 0x01E7EC0, 0x01E7ED2, 0x01E7EF0, 0x01E7F02, 0x01E7FF0, 0x01E8002, 0x01E8C50,
    0x01E8C71, 0x01E8D04, 0x01E8D70, 0x01E9002, 0x01E9444, 0x01E94B2, 0x01E94C0, 0x01E9501, 0x01E95A0, 0x01E95E5,
    0x01E9600, 0x01EC711, 0x01ECAC6, 0x01ECAD1, 0x01ECB06, 0x01ECB11, 0x01ECB50, 0x01ED011, 0x01ED2E6, 0x01ED2F1,
    0x01ED3E0, 0x01EE002, 0x01EE040, 0x01EE052, 0x01EE200, 0x01EE212, 0x01EE230, 0x01EE242, 0x01EE250, 0x01EE272,
    0x01EE280, 0x01EE292, 0x01EE330, 0x01EE342, 0x01EE380, 0x01EE392, 0x01EE3A0, 0x01EE3B2, 0x01EE3C0, 0x01EE422,
    0x01EE430, 0x01EE472, 0x01EE480, 0x01EE492, 0x01EE4A0, 0x01EE4B2, 0x01EE4C0, 0x01EE4D2, 0x01EE500, 0x01EE512,
    0x01EE530, 0x01EE542, 0x01EE550, 0x01EE572, 0x01EE580, 0x01EE592, 0x01EE5A0, 0x01EE5B2, 0x01EE5C0, 0x01EE5D2,
    0x01EE5E0, 0x01EE5F2, 0x01EE600, 0x01EE612, 0x01EE630, 0x01EE642, 0x01EE650, 0x01EE672, 0x01EE6B0, 0x01EE6C2,
    0x01EE730, 0x01EE742, 0x01EE780, 0x01EE792, 0x01EE7D0, 0x01EE7E2, 0x01EE7F0, 0x01EE802, 0x01EE8A0, 0x01EE8B2,
    0x01EE9C0, 0x01EEA12, 0x01EEA40, 0x01EEA52, 0x01EEAA0, 0x01EEAB2, 0x01EEBC0, 0x01EEF06, 0x01EEF20, 0x01F0006,
    0x01F02C0, 0x01F0306, 0x01F0940, 0x01F0A06, 0x01F0AF0, 0x01F0B16, 0x01F0C00, 0x01F0C16, 0x01F0D00, 0x01F0D16,
    0x01F0F60, 0x01F1001, 0x01F10D6, 0x01F1AE0, 0x01F1E66, 0x01F2030, 0x01F2106, 0x01F23C0, 0x01F2406, 0x01F2490,
    0x01F2506, 0x01F2520, 0x01F2606, 0x01F2660, 0x01F3006, 0x01F6D80, 0x01F6DC6, 0x01F6ED0, 0x01F6F06, 0x01F6FD0,
    0x01F7006, 0x01F7770, 0x01F77B6, 0x01F7DA0, 0x01F7E06, 0x01F7EC0, 0x01F7F06, 0x01F7F10, 0x01F8006, 0x01F80C0,
    0x01F8106, 0x01F8480, 0x01F8506, 0x01F85A0, 0x01F8606, 0x01F8880, 0x01F8906, 0x01F8AE0, 0x01F8B06, 0x01F8B20,
    0x01F9006, 0x01FA540, 0x01FA606, 0x01FA6E0, 0x01FA706, 0x01FA7D0, 0x01FA806, 0x01FA890, 0x01FA906, 0x01FABE0,
    0x01FABF6, 0x01FAC60, 0x01FACE6, 0x01FADC0, 0x01FAE06, 0x01FAE90, 0x01FAF06, 0x01FAF90, 0x01FB006, 0x01FB930,
    0x01FB946, 0x01FBCB0, 0x01FBF01, 0x01FBFA0, 0x0200002, 0x02A6E00, 0x02A7002, 0x02B73A0, 0x02B7402, 0x02B81E0,
    0x02B8202, 0x02CEA20, 0x02CEB02, 0x02EBE10, 0x02EBF02, 0x02EE5E0, 0x02F8002, 0x02FA1E0, 0x0300002, 0x03134B0,
    0x0313502, 0x0323B00, 0x0E00017, 0x0E00020, 0x0E00207, 0x0E00800, 0x0E01004, 0x0E01F00, 0x0F00007, 0x0FFFFE0,
    0x1000007, 0x10FFFE0,
};

Category category_of(uint32_t cp) {
    if (cp < 0x80) {
        // Fast path; equal to the table.
        if (cp < 0x20 || cp == 0x7F) return kControl;
        if (cp == ' ') return kSeparator;
        if ((cp >= '0' && cp <= '9')) return kNumber;
        if ((cp >= 'A' && cp <= 'Z') || (cp >= 'a' && cp <= 'z')) return kLetter;
        if (cp == '$' || cp == '+' || cp == '<' || cp == '=' || cp == '>' || cp == '^' ||
            cp == '`' || cp == '|' || cp == '~') {
            return kSymbol;
        }
        return kPunctuation;
    }
    if (cp >= 0x110000) return kUndefined;
    const uint32_t key = (cp << 4) | 0xF;
    const uint32_t* it = std::upper_bound(std::begin(kCategoryRanges), std::end(kCategoryRanges), key);
    return static_cast<Category>(*(it - 1) & 0xF);
}

}  // namespace
}  // namespace hearth::tok
