#include "runtime/stop.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace hearth::runtime {
namespace {

// Feeds the pieces in order, collecting the emitted text until a stop, then flushes.
struct Fed {
    std::string text;      // everything emitted, flush included
    bool stopped = false;
    int32_t stop_index = -1;
};

Fed feed(StopMatcher& m, const std::vector<std::string>& pieces) {
    Fed out;
    for (const std::string& piece : pieces) {
        StopResult r = m.push(piece);
        out.text += r.text;
        if (r.stopped) {
            out.stopped = true;
            out.stop_index = r.stop_index;
            break;
        }
    }
    out.text += m.flush();
    return out;
}

TEST(StopToken, IsStopToken) {
    const std::vector<int32_t> eog = {2, 128009};
    EXPECT_TRUE(is_stop_token(2, eog));
    EXPECT_TRUE(is_stop_token(128009, eog));
    EXPECT_FALSE(is_stop_token(3, eog));
    EXPECT_FALSE(is_stop_token(2, {}));
}

TEST(StopMatcher, NoStopsPassesEverythingThrough) {
    StopMatcher m({});
    StopResult r = m.push("hello ");
    EXPECT_EQ(r.text, "hello ");
    EXPECT_FALSE(r.stopped);
    EXPECT_EQ(m.push("world").text, "world");
    EXPECT_EQ(m.flush(), "");
}

TEST(StopMatcher, StopSplitAcrossManyPieces) {
    StopMatcher m({"</answer>"});
    EXPECT_EQ(m.push("The result is 4").text, "The result is 4");
    EXPECT_EQ(m.push(". <").text, ". ");  // "<" might start the stop
    for (const char* piece : {"/", "ans", "w", "er"}) {
        const StopResult r = m.push(piece);
        EXPECT_EQ(r.text, "") << piece;
        EXPECT_FALSE(r.stopped);
    }
    EXPECT_EQ(m.n_held_bytes(), 8u);  // "</answer"
    const StopResult r = m.push(">\nmore text");
    EXPECT_TRUE(r.stopped);
    EXPECT_EQ(r.text, "");
    EXPECT_EQ(r.stop_index, 0);
    EXPECT_TRUE(m.is_stopped());
    EXPECT_EQ(m.flush(), "");  // what followed the stop is discarded
}

TEST(StopMatcher, PartialPrefixThatIsNotAStopIsEmitted) {
    StopMatcher m({"</end>"});
    EXPECT_EQ(m.push("a </").text, "a ");
    EXPECT_EQ(m.push("e").text, "");
    EXPECT_EQ(m.push("x").text, "</ex");  // can no longer become "</end>"
    EXPECT_EQ(m.push("it").text, "it");
    EXPECT_FALSE(m.is_stopped());
    EXPECT_EQ(m.flush(), "");
}

TEST(StopMatcher, HoldsOnlyTheTailThatCanStillMatch) {
    // "aaa" ends in "aa", a prefix of "aab": only the first "a" is safe.
    StopMatcher m({"aab"});
    EXPECT_EQ(m.push("a").text, "");
    EXPECT_EQ(m.push("a").text, "");
    EXPECT_EQ(m.push("a").text, "a");
    const StopResult r = m.push("b");
    EXPECT_TRUE(r.stopped);
    EXPECT_EQ(r.text, "");
}

TEST(StopMatcher, StopInsideOnePiece) {
    StopMatcher m({"<|im_end|>"});
    const StopResult r = m.push("done.<|im_end|>trailing");
    EXPECT_TRUE(r.stopped);
    EXPECT_EQ(r.text, "done.");
}

TEST(StopMatcher, StopAtTheVeryStart) {
    StopMatcher m({"STOP"});
    const StopResult r = m.push("STOP");
    EXPECT_TRUE(r.stopped);
    EXPECT_EQ(r.text, "");
}

TEST(StopMatcher, AfterStopEverythingIsDropped) {
    StopMatcher m({"x"});
    EXPECT_TRUE(m.push("abx").stopped);
    const StopResult r = m.push("more");
    EXPECT_TRUE(r.stopped);
    EXPECT_EQ(r.text, "");
    EXPECT_EQ(r.stop_index, 0);
}

TEST(StopMatcher, MultipleStopStringsEarliestWins) {
    StopMatcher m({"world", "lo"});
    const StopResult r = m.push("hello world");
    EXPECT_TRUE(r.stopped);
    EXPECT_EQ(r.text, "hel");
    EXPECT_EQ(r.stop_index, 1);

    // Same start: the earlier one in the list is reported; the text is the same either way.
    StopMatcher tie({"ab", "abc"});
    const StopResult t = tie.push("xabc");
    EXPECT_EQ(t.text, "x");
    EXPECT_EQ(t.stop_index, 0);
}

TEST(StopMatcher, MultipleStopStringsHoldForEither) {
    StopMatcher m({"###", "User:"});
    EXPECT_EQ(m.push("Hi #").text, "Hi ");
    EXPECT_EQ(m.push("# U").text, "## ");  // "## " can't become "###"; "U" can become "User:"
    EXPECT_EQ(m.push("ser").text, "");
    const StopResult r = m.push(": next");
    EXPECT_TRUE(r.stopped);
    EXPECT_EQ(r.stop_index, 1);
    EXPECT_EQ(r.text, "");
}

TEST(StopMatcher, Utf8StopStrings) {
    // "。" is E3 80 82; "、" is E3 80 81 and shares its first two bytes.
    StopMatcher m({"。", "再见"});
    EXPECT_EQ(m.push("你好").text, "你好");
    EXPECT_EQ(m.push("\xE3\x80").text, "");  // could be "。"
    EXPECT_EQ(m.push("\x81").text, "、");    // it was "、": emitted whole
    EXPECT_EQ(m.push("世界\xE3").text, "世界");
    const StopResult r = m.push("\x80\x82再见");
    EXPECT_TRUE(r.stopped);
    EXPECT_EQ(r.stop_index, 0);
    EXPECT_EQ(r.text, "");

    StopMatcher bye({"再见"});
    EXPECT_EQ(feed(bye, {"好的，", "再", "见", "！"}).text, "好的，");
}

TEST(StopMatcher, IncompleteUtf8IsHeldEvenWithoutStops) {
    StopMatcher m({});
    EXPECT_EQ(m.push("a\xE4\xBD").text, "a");  // first two bytes of "你"
    EXPECT_EQ(m.push("\xA0").text, "你");
    EXPECT_EQ(m.push("\xF0\x9F\x98").text, "");  // three of the four bytes of U+1F600
    EXPECT_EQ(m.push("\x80!").text, "\xF0\x9F\x98\x80!");
    // Bytes that are not UTF-8 are not held: waiting would not complete them.
    EXPECT_EQ(m.push("\xFF").text, "\xFF");
    EXPECT_EQ(m.push("\x80\x80").text, "\x80\x80");
}

TEST(StopMatcher, FlushReturnsHeldText) {
    StopMatcher m({"</s>"});
    EXPECT_EQ(m.push("abc</").text, "abc");
    EXPECT_EQ(m.flush(), "</");
    EXPECT_EQ(m.flush(), "");

    StopMatcher utf8({});
    EXPECT_EQ(utf8.push("\xE4\xBD").text, "");
    EXPECT_EQ(utf8.flush(), "\xE4\xBD");  // the end: hand over whatever arrived
}

TEST(StopMatcher, EmptyStopStringsAreIgnored) {
    StopMatcher m({"", "z"});
    EXPECT_EQ(m.push("abc").text, "abc");
    const StopResult r = m.push("xyz");
    EXPECT_TRUE(r.stopped);
    EXPECT_EQ(r.text, "xy");
    EXPECT_EQ(r.stop_index, 1);
}

// Any split of a text gives the same output as the whole text at once: everything before the
// first occurrence of any stop string.
TEST(StopMatcher, RandomSplitsMatchReference) {
    std::mt19937_64 rng(17);
    const std::vector<std::string> stops = {"abab", "ba#", "##", "\xC3\xA9t\xC3\xA9"};  // "été"
    const std::string alphabet[] = {"a", "b", "#", "t", "\xC3\xA9", "x"};
    for (int iter = 0; iter < 2000; ++iter) {
        std::string text;
        const size_t n_chars = rng() % 24;
        for (size_t i = 0; i < n_chars; ++i) text += alphabet[rng() % 6];

        size_t first = std::string::npos;
        for (const std::string& s : stops) first = std::min(first, text.find(s));
        const std::string expected = first == std::string::npos ? text : text.substr(0, first);

        std::vector<std::string> pieces;  // byte-level splits, so UTF-8 gets cut too
        for (size_t pos = 0; pos < text.size();) {
            const size_t len = std::min<size_t>(1 + rng() % 4, text.size() - pos);
            pieces.push_back(text.substr(pos, len));
            pos += len;
        }
        StopMatcher m(stops);
        const Fed got = feed(m, pieces);
        ASSERT_EQ(got.text, expected) << "text: " << text;
        ASSERT_EQ(got.stopped, first != std::string::npos) << "text: " << text;
    }
}

}  // namespace
}  // namespace hearth::runtime
