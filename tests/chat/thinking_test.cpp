// The thinking splitter on its own: markers split anywhere, a block only at the start, a block
// opened by the prompt, whitespace rules. The recorded outputs of each family (thinking with
// tool calls) are in tool_calls_test.cpp.
#include "chat/thinking.h"

#include <gtest/gtest.h>

namespace {

using hearth::chat::ThinkingDelta;
using hearth::chat::ThinkingParser;

ThinkingDelta run(ThinkingParser p, const std::vector<std::string>& pieces) {
    ThinkingDelta all;
    for (const auto& s : pieces) {
        ThinkingDelta d = p.push(s);
        all.thinking += d.thinking;
        all.content += d.content;
    }
    ThinkingDelta d = p.finish();
    all.thinking += d.thinking;
    all.content += d.content;
    return all;
}

ThinkingDelta bytewise(ThinkingParser p, const std::string& text) {
    std::vector<std::string> pieces;
    for (char c : text) pieces.emplace_back(1, c);
    return run(std::move(p), pieces);
}

TEST(Thinking, MarkerPrefixSuffix) {
    using hearth::chat::marker_prefix_suffix;
    EXPECT_EQ(marker_prefix_suffix("abc<thi", "<think>"), 4u);
    EXPECT_EQ(marker_prefix_suffix("abc<", "<think>"), 1u);
    EXPECT_EQ(marker_prefix_suffix("abc", "<think>"), 0u);
    EXPECT_EQ(marker_prefix_suffix("<think>", "<think>"), 0u);  // whole markers are found, not held
    EXPECT_EQ(marker_prefix_suffix("x", ""), 0u);
}

TEST(Thinking, SplitsBlockAndAnswerInAnySplit) {
    const std::string text = "  <think>\nstep one\nstep two\n</think>\n\nThe answer.";
    for (size_t i = 0; i <= text.size(); ++i) {
        ThinkingDelta d = run(ThinkingParser("<think>", "</think>"), {text.substr(0, i), text.substr(i)});
        EXPECT_EQ(d.thinking, "step one\nstep two") << i;
        EXPECT_EQ(d.content, "The answer.") << i;
    }
    ThinkingDelta d = bytewise(ThinkingParser("<think>", "</think>"), text);
    EXPECT_EQ(d.thinking, "step one\nstep two");
    EXPECT_EQ(d.content, "The answer.");
}

TEST(Thinking, StreamsThinkingAsItComes) {
    ThinkingParser p("<think>", "</think>");
    EXPECT_EQ(p.push("<think>I am").thinking, "I am");
    EXPECT_EQ(p.push(" thinking </th").thinking, " thinking");  // trailing space held, "</th" held
    ThinkingDelta d = p.push("ink>Yes");
    EXPECT_EQ(d.thinking, "");
    EXPECT_EQ(d.content, "Yes");
    EXPECT_TRUE(p.has_thinking());
}

TEST(Thinking, BlockCountsOnlyAtTheStart) {
    ThinkingDelta d = run(ThinkingParser("<think>", "</think>"), {"Answer first. <think>not thinking</think>"});
    EXPECT_EQ(d.thinking, "");
    EXPECT_EQ(d.content, "Answer first. <think>not thinking</think>");
}

TEST(Thinking, NoThinkingKeepsLeadingWhitespace) {
    ThinkingDelta d = run(ThinkingParser("<think>", "</think>"), {"\n", "  Hi"});
    EXPECT_EQ(d.content, "\n  Hi");
}

TEST(Thinking, PromptOpenedBlock) {
    // DeepSeek-R1: the prompt ends with "<think>\n"; the output starts inside the block.
    ThinkingDelta d = bytewise(ThinkingParser("<think>", "</think>", true), "Reasoning here.\n</think>\n\nDone.");
    EXPECT_EQ(d.thinking, "Reasoning here.");
    EXPECT_EQ(d.content, "Done.");
}

TEST(Thinking, UnclosedBlockIsAllThinking) {
    ThinkingDelta d = bytewise(ThinkingParser("<think>", "</think>"), "<think>\nstill going  \n");
    EXPECT_EQ(d.thinking, "still going");
    EXPECT_EQ(d.content, "");
}

TEST(Thinking, EmptyMarkersMeanNoThinking) {
    ThinkingDelta d = run(ThinkingParser("", ""), {"<think>x</think>y"});
    EXPECT_EQ(d.content, "<think>x</think>y");
    EXPECT_EQ(d.thinking, "");
}

TEST(Thinking, OtherFamiliesMarkers) {
    ThinkingDelta d = bytewise(ThinkingParser("<|START_THINKING|>", "<|END_THINKING|>"),
                               "<|START_THINKING|>Plan.<|END_THINKING|>Answer.");
    EXPECT_EQ(d.thinking, "Plan.");
    EXPECT_EQ(d.content, "Answer.");
    d = bytewise(ThinkingParser("<seed:think>", "</seed:think>"), "<seed:think>a</seed:think>b");
    EXPECT_EQ(d.thinking, "a");
    EXPECT_EQ(d.content, "b");
    d = bytewise(ThinkingParser("[THINK]", "[/THINK]"), "[THINK]x y[/THINK]z");
    EXPECT_EQ(d.thinking, "x y");
    EXPECT_EQ(d.content, "z");
}

TEST(Thinking, PartialOpeningMarkerAtTheEndIsContent) {
    ThinkingDelta d = run(ThinkingParser("<think>", "</think>"), {"<thi"});
    EXPECT_EQ(d.content, "<thi");
}

}  // namespace
