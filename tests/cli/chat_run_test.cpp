// `hearth run` chatting through the model's chat template: multi-turn conversations that reuse
// the prefix cache, the REPL commands (/set parameter, /show info, /clear, /set system, """),
// the thinking switch, --raw, and --format constraining the reply to JSON. The tiny test models
// have random weights, so the tests check structure (token counts, what the REPL prints, that
// output parses), not what the model says.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>

#include "cli/cli_util.h"
#include "support/testdata.h"

namespace {

namespace fs = std::filesystem;

using hearth::test::HearthRun;
using hearth::test::model;
using hearth::test::run_hearth;

// The numbers after `label` (at a line start) in the --verbose statistics, one per turn.
std::vector<long> stat_values(const std::string& err, const std::string& label) {
    std::vector<long> v;
    const std::regex re("(?:^|\n)" + label + R"(:\s+(\d+) token)");
    for (auto it = std::sregex_iterator(err.begin(), err.end(), re); it != std::sregex_iterator(); ++it)
        v.push_back(std::stol((*it)[1]));
    return v;
}

const std::string kLongTurn =
    "Tell me a long story about a dragon who lived in the mountains, a knight who came to visit, and the "
    "village below that watched them both.";

TEST(ChatRun, SecondTurnReusesThePrefixCache) {
    for (const char* m : {"llama3-tiny.Q8_0.gguf", "qwen3-tiny.Q8_0.gguf"}) {
        HearthRun r = run_hearth("run " + model(m) + " -i --temperature 0 -n 16 --verbose",
                                 kLongTurn + "\nAnd then?\n");
        ASSERT_EQ(r.exit_code, 0) << m << r.err;
        const auto cached = stat_values(r.err, "prompt cached");
        const auto evaluated = stat_values(r.err, "prompt eval count");
        ASSERT_EQ(cached.size(), 2u) << m << r.err;
        EXPECT_EQ(cached[0], 0) << m;
        EXPECT_GT(cached[1], 0) << m << r.err;
        // The first turn's prompt (whole blocks of it) came from the cache, not its tokens again.
        EXPECT_GE(cached[1] + 32, evaluated[0]) << m << r.err;
    }
}

TEST(ChatRun, PromptGoesThroughTheTemplate) {
    // "hi" alone is one or two tokens; the Llama 3.1 template adds headers and a system block.
    HearthRun chat = run_hearth("run " + model("llama3-tiny.Q8_0.gguf") + " hi -n 1 --verbose");
    HearthRun raw = run_hearth("run " + model("llama3-tiny.Q8_0.gguf") + " hi -n 1 --verbose --raw");
    ASSERT_EQ(chat.exit_code, 0) << chat.err;
    ASSERT_EQ(raw.exit_code, 0) << raw.err;
    const auto c = stat_values(chat.err, "prompt eval count"), w = stat_values(raw.err, "prompt eval count");
    ASSERT_EQ(c.size(), 1u);
    ASSERT_EQ(w.size(), 1u);
    EXPECT_LE(w[0], 3);
    EXPECT_GT(c[0], 20);
}

TEST(ChatRun, SetParameterAndShowInfo) {
    HearthRun r = run_hearth("run " + model("llama3-tiny.Q8_0.gguf") + " -i",
                             "/set parameter temperature 0.5\n/set parameter top_p 2\n/set parameter num_predict 4\n"
                             "/set parameter bogus 1\n/set parameter stop a b\n/show parameters\n/show info\n/?\n/bye\n"
                             "never reached\n");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("Set parameter 'temperature' to '0.5'"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("Couldn't set parameter: top_p"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("Set parameter 'num_predict' to '4'"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("Unknown parameter 'bogus'"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("Set parameter 'stop' to 'a', 'b'"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("temperature        0.5"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("top_p              0.9"), std::string::npos) << r.out;  // the bad value was refused
    EXPECT_NE(r.out.find("architecture         llama"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("context length       131072"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("quantization         Q8_0"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("chat template        yes (llama3)"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("/set parameter NAME VALUE"), std::string::npos) << r.out;  // /? help
    EXPECT_EQ(r.out.find("never reached"), std::string::npos);
}

TEST(ChatRun, SetParameterChangesGeneration) {
    HearthRun r = run_hearth("run " + model("llama3-tiny.Q8_0.gguf") + " -i --temperature 0 --verbose",
                             "/set parameter num_predict 3\nhi\n/set parameter num_ctx 512\n/show parameters\nhi\n");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto counts = stat_values(r.err, "eval count");
    ASSERT_EQ(counts.size(), 2u) << r.err;
    EXPECT_EQ(counts[0], 3);
    EXPECT_EQ(counts[1], 3);
    EXPECT_NE(r.out.find("num_ctx            512"), std::string::npos) << r.out;
}

TEST(ChatRun, ClearForgetsTheConversation) {
    HearthRun r = run_hearth("run " + model("llama3-tiny.Q8_0.gguf") + " -i --temperature 0 -n 8 --verbose",
                             "first message\nsecond message\n/clear\nfirst message\n");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("Cleared session context"), std::string::npos);
    const auto cached = stat_values(r.err, "prompt cached"), evaluated = stat_values(r.err, "prompt eval count");
    ASSERT_EQ(cached.size(), 3u) << r.err;
    // The third turn's prompt is the first turn's again: same length, not the grown conversation.
    EXPECT_EQ(cached[0] + evaluated[0], cached[2] + evaluated[2]);
    EXPECT_GT(cached[1] + evaluated[1], cached[0] + evaluated[0]);
}

TEST(ChatRun, SystemMessageAndMultiLineInput) {
    HearthRun plain = run_hearth("run " + model("qwen3-tiny.Q8_0.gguf") + " -i -n 1 --verbose", "hi\n");
    HearthRun sys = run_hearth("run " + model("qwen3-tiny.Q8_0.gguf") + " -i -n 1 --verbose",
                               "/set system You answer in one word.\n/show system\n\"\"\"hi\nthere\"\"\"\n");
    ASSERT_EQ(plain.exit_code, 0) << plain.err;
    ASSERT_EQ(sys.exit_code, 0) << sys.err;
    EXPECT_NE(sys.out.find("You answer in one word."), std::string::npos);
    const auto p = stat_values(plain.err, "prompt eval count"), s = stat_values(sys.err, "prompt eval count");
    ASSERT_EQ(p.size(), 1u);
    ASSERT_EQ(s.size(), 1u);  // the multi-line message was one turn
    EXPECT_GT(s[0], p[0] + 5);
}

TEST(ChatRun, ThinkSwitchReachesTheTemplate) {
    // Qwen3's template closes an empty think block in the prompt when thinking is off.
    HearthRun on = run_hearth("run " + model("qwen3-tiny.Q8_0.gguf") + " hi -n 1 --verbose --think");
    HearthRun off = run_hearth("run " + model("qwen3-tiny.Q8_0.gguf") + " hi -n 1 --verbose --think=false");
    ASSERT_EQ(on.exit_code, 0) << on.err;
    ASSERT_EQ(off.exit_code, 0) << off.err;
    const auto a = stat_values(on.err, "prompt eval count"), b = stat_values(off.err, "prompt eval count");
    ASSERT_EQ(a.size(), 1u);
    ASSERT_EQ(b.size(), 1u);
    EXPECT_GT(b[0], a[0]);
    HearthRun bad = run_hearth("run " + model("qwen3-tiny.Q8_0.gguf") + " hi --think=maybe");
    EXPECT_EQ(bad.exit_code, 1);
    EXPECT_NE(bad.err.find("hearth run: --think"), std::string::npos) << bad.err;
}

TEST(ChatRun, FormatSchemaPrintsValidJson) {
    const std::string schema =
        R"('{"type":"object","properties":{"ok":{"type":"boolean"},"n":{"type":"integer","minimum":0,"maximum":9}},"required":["ok","n"],"additionalProperties":false}')";
    HearthRun r = run_hearth("run " + model("llama3-tiny.Q8_0.gguf") + " \"Give me JSON\" -n 200 --temperature 0 --format " + schema);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto j = nlohmann::json::parse(r.out, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << r.out;
    EXPECT_TRUE(j["ok"].is_boolean());
    EXPECT_TRUE(j["n"].is_number_integer());
}

TEST(ChatRun, FormatJsonPrintsValidJson) {
    HearthRun r = run_hearth("run " + model("qwen2-tiny.F16.gguf") + " hi -n 300 --temperature 0 --format json");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto j = nlohmann::json::parse(r.out, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << r.out;
    EXPECT_TRUE(j.is_object());
    HearthRun bad = run_hearth("run " + model("qwen2-tiny.F16.gguf") + " hi --format xml");
    EXPECT_EQ(bad.exit_code, 1);
    EXPECT_NE(bad.err.find("--format"), std::string::npos) << bad.err;
}

TEST(ChatRun, TemplatelessModelStillTellsAStory) {
    HearthRun r = run_hearth("run " + model("stories260K.gguf") + " -p \"Once upon a time\" -n 32 --temperature 0");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out.rfind(", there was a little girl", 0), 0u) << r.out;
    // Interactive, it says why there is no chat.
    HearthRun i = run_hearth("run " + model("stories260K.gguf") + " -i -n 4", "Once upon a time\n");
    ASSERT_EQ(i.exit_code, 0) << i.err;
    EXPECT_NE(i.err.find("no chat template"), std::string::npos) << i.err;
}

}  // namespace
