// Tool-call (and thinking) parsing of recorded outputs, one folder per family under
// tests/chat/recorded/: <case>.txt is the generated text, written to match the family's
// documented format; <case>.json names the template whose detected ChatFormat parses it and
// the expected content, thinking, tool calls and malformed flag. Every case is parsed whole and
// streamed in every two-piece split, one byte at a time, in fixed and in random chunkings; all
// must give exactly the expected result, so no markup ever reaches the content.
#include "chat/tool_calls.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "chat/chat.h"
#include "support/testdata.h"

namespace {

namespace fs = std::filesystem;
using hearth::chat::ChatDelta;
using hearth::chat::ChatFormat;
using hearth::chat::OutputParser;
using hearth::chat::ParserOptions;
using hearth::chat::ToolCallFormat;
using hearth::chat::ToolCallParser;
using nlohmann::ordered_json;

std::string slurp(const fs::path& p) { return hearth::test::read_text_file(p.string()); }

fs::path recorded_dir() { return fs::path(HEARTH_SOURCE_DIR) / "tests" / "chat" / "recorded"; }

struct Parsed {
    ChatDelta delta;
    bool malformed = false;
};

Parsed parse_in_pieces(const ChatFormat& format, bool thinking_open, const ParserOptions& opt,
                       const std::vector<std::string>& pieces) {
    OutputParser p(format, thinking_open, opt);
    Parsed r;
    for (const auto& s : pieces) r.delta.append(p.push(s));
    r.delta.append(p.finish());
    r.malformed = p.malformed();
    return r;
}

std::vector<std::string> chunk(const std::string& text, const std::vector<size_t>& sizes) {
    std::vector<std::string> out;
    size_t i = 0, k = 0;
    while (i < text.size()) {
        const size_t n = std::max<size_t>(1, sizes[k++ % sizes.size()]);
        out.push_back(text.substr(i, n));
        i += n;
    }
    return out;
}

ordered_json calls_json(const ChatDelta& d, bool with_ids) {
    ordered_json a = ordered_json::array();
    for (const auto& c : d.tool_calls) {
        ordered_json j{{"name", c.name}, {"arguments", c.arguments}};
        if (with_ids) j["id"] = c.id;
        a.push_back(j);
    }
    return a;
}

// The expected calls, with each id compared only where the case gives one.
void expect_calls(const ChatDelta& got, const ordered_json& want, const std::string& where) {
    ASSERT_EQ(got.tool_calls.size(), want.size()) << where << ": " << calls_json(got, true).dump();
    for (size_t i = 0; i < want.size(); ++i) {
        EXPECT_EQ(got.tool_calls[i].name, want[i]["name"].get<std::string>()) << where;
        EXPECT_EQ(got.tool_calls[i].arguments, want[i]["arguments"]) << where << " call " << i;
        EXPECT_EQ(got.tool_calls[i].index, (int)i) << where;
        if (want[i].contains("id")) {
            EXPECT_EQ(got.tool_calls[i].id, want[i]["id"].get<std::string>()) << where;
        }
    }
}

void expect_same(const Parsed& a, const Parsed& b, const std::string& where) {
    EXPECT_EQ(a.delta.content, b.delta.content) << where;
    EXPECT_EQ(a.delta.thinking, b.delta.thinking) << where;
    EXPECT_EQ(calls_json(a.delta, true), calls_json(b.delta, true)) << where;
    EXPECT_EQ(a.malformed, b.malformed) << where;
}

TEST(ToolCallsRecorded, EveryFamilyWholeAndStreamed) {
    int n_cases = 0;
    std::set<std::string> families;
    std::mt19937 rng(1234);
    for (const auto& fam : fs::directory_iterator(recorded_dir())) {
        if (!fam.is_directory()) continue;
        for (const auto& e : fs::directory_iterator(fam.path())) {
            if (e.path().extension() != ".txt") continue;
            const std::string where = fam.path().filename().string() + "/" + e.path().filename().string();
            const std::string text = slurp(e.path());
            fs::path jp = e.path();
            jp.replace_extension(".json");
            const ordered_json want = ordered_json::parse(slurp(jp));
            const std::string tmpl = slurp(hearth::test::testdata_path("templates/" + want["template"].get<std::string>()));
            ASSERT_FALSE(tmpl.empty()) << where;
            const ChatFormat format = hearth::chat::detect_format(tmpl);
            ParserOptions opt;
            if (want.contains("tools")) opt.tools = want["tools"];
            const bool open = want.value("thinking_open", false);

            const Parsed whole = parse_in_pieces(format, open, opt, {text});
            EXPECT_EQ(whole.delta.content, want["content"].get<std::string>()) << where;
            EXPECT_EQ(whole.delta.thinking, want["thinking"].get<std::string>()) << where;
            expect_calls(whole.delta, want["tool_calls"], where);
            EXPECT_EQ(whole.malformed, want["malformed"].get<bool>()) << where;
            const ChatDelta once = OutputParser::parse(format, open, text, opt);
            expect_same(whole, Parsed{once, whole.malformed}, where + " (parse)");

            for (size_t i = 1; i < text.size(); ++i)
                expect_same(parse_in_pieces(format, open, opt, {text.substr(0, i), text.substr(i)}), whole,
                            where + " split at " + std::to_string(i));
            for (size_t n : {1, 2, 3, 5, 7, 13})
                expect_same(parse_in_pieces(format, open, opt, chunk(text, {n})), whole,
                            where + " chunks of " + std::to_string(n));
            for (int r = 0; r < 30; ++r) {
                std::vector<size_t> sizes(16);
                for (auto& s : sizes) s = std::uniform_int_distribution<size_t>(1, 12)(rng);
                expect_same(parse_in_pieces(format, open, opt, chunk(text, sizes)), whole,
                            where + " random chunking " + std::to_string(r));
            }
            ++n_cases;
            families.insert(fam.path().filename().string());
        }
    }
    EXPECT_GE(n_cases, 50);
    EXPECT_GE(families.size(), 20u);
}

// Content streams as it comes: only a possible marker prefix is held back.
TEST(ToolCallParser, StreamsContentAndHoldsOnlyMarkerPrefixes) {
    ToolCallParser p(ToolCallFormat::hermes);
    EXPECT_EQ(p.push("Hello wor").content, "Hello wor");
    EXPECT_EQ(p.push("ld <tool").content, "ld");  // " <tool" may open a call
    EXPECT_EQ(p.push("box> ok").content, " <toolbox> ok");
    ChatDelta d = p.push("\n<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_call>");
    EXPECT_EQ(d.content, "");
    ASSERT_EQ(d.tool_calls.size(), 1u);  // a call comes out as soon as its block closes
    EXPECT_EQ(d.tool_calls[0].name, "f");
    EXPECT_EQ(p.finish().content, "");
}

TEST(ToolCallParser, NoneFormatPassesTextThrough) {
    ToolCallParser p(ToolCallFormat::none);
    EXPECT_EQ(p.push("a <tool_call> b\n").content, "a <tool_call> b\n");
    EXPECT_TRUE(p.finish().empty());
}

TEST(ToolCallParser, MistralCallEndsWhenItsJsonCompletes) {
    ToolCallParser p(ToolCallFormat::mistral);
    ChatDelta d = p.push("[TOOL_CALLS]f[ARGS]{\"a\": {\"b\": \"}\"}}");
    ASSERT_EQ(d.tool_calls.size(), 1u);
    EXPECT_EQ(d.tool_calls[0].arguments, ordered_json::parse(R"({"a": {"b": "}"}})"));
    EXPECT_EQ(d.tool_calls[0].id.size(), 9u);  // Mistral's templates reject other id lengths
}

TEST(ToolCallParser, CutOffCallIsContentAndFlagged) {
    ToolCallParser p(ToolCallFormat::deepseek_r1);
    ChatDelta d = p.push("<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>f\n```json\n{\"a\": ");
    EXPECT_TRUE(d.empty());
    d = p.finish();
    EXPECT_EQ(d.content, "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>f\n```json\n{\"a\": ");
    EXPECT_TRUE(p.malformed());
}

TEST(ToolCallParser, JsonValueLength) {
    using hearth::chat::json_value_length;
    EXPECT_EQ(json_value_length("{}"), 2u);
    EXPECT_EQ(json_value_length("  [1, [2]] tail"), 10u);
    EXPECT_EQ(json_value_length(R"({"a": "}\"]"} x)"), 13u);
    EXPECT_EQ(json_value_length("{\"a\": 1"), std::string::npos);
    EXPECT_EQ(json_value_length("hello"), std::string::npos);
}

TEST(ToolCallParser, DoubleEncodedArgumentsAreParsed) {
    ordered_json j;
    EXPECT_TRUE(hearth::chat::parse_arguments(R"("{\"x\": 1}")", j));
    EXPECT_EQ(j, ordered_json::parse(R"({"x": 1})"));
    EXPECT_FALSE(hearth::chat::parse_arguments("[1]", j));
    EXPECT_TRUE(hearth::chat::parse_arguments("  ", j));
    EXPECT_EQ(j, ordered_json::object());
}

TEST(HarmonyParser, PlainTextWithoutHeadersIsContent) {
    hearth::chat::HarmonyParser p;
    ChatDelta d = p.push("Hello");
    d.append(p.push(" there"));
    d.append(p.finish());
    EXPECT_EQ(d.content, "Hello there");
    EXPECT_EQ(d.thinking, "");
}

TEST(HarmonyParser, BadCallArgumentsAreContent) {
    hearth::chat::HarmonyParser p;
    ChatDelta d = p.push("<|channel|>commentary to=functions.f <|constrain|>json<|message|>{\"a\":");
    d.append(p.finish());
    EXPECT_TRUE(d.tool_calls.empty());
    EXPECT_EQ(d.content, "{\"a\":");
    EXPECT_TRUE(p.malformed());
}

}  // namespace
