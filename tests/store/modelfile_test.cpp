// store::parse_modelfile / format_modelfile: every instruction, Ollama's quoting, errors with
// line numbers, and parse(format(m)) == m, including texts that hold """ and backslashes.
#include "store/modelfile.h"

#include <gtest/gtest.h>

#include <random>

namespace hearth::store {
namespace {

using json = nlohmann::json;

Modelfile parse_ok(std::string_view text) {
    auto m = parse_modelfile(text);
    EXPECT_TRUE(m.ok()) << m.status().message() << "\n--- for ---\n" << text;
    return m.ok() ? *m : Modelfile{};
}

std::string parse_error(std::string_view text) {
    auto m = parse_modelfile(text);
    EXPECT_FALSE(m.ok()) << text;
    if (!m.ok()) {
        EXPECT_EQ(m.status().code(), StatusCode::invalid_argument);
        return m.status().message();
    }
    return {};
}

TEST(Modelfile, EveryInstruction) {
    const Modelfile m = parse_ok(R"(# a comment
FROM llama3.2
parameter temperature 0.7
PARAMETER num_ctx 4096
PARAMETER stop "<|eot_id|>"
PARAMETER stop <|start_header_id|>
PARAMETER use_mmap false
Template """{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}"""
SYSTEM You are Mario from Super Mario Bros.
MESSAGE user Is Toronto in Canada?
MESSAGE assistant "yes"
ADAPTER ./lora.gguf
LICENSE """MIT
and more"""
LICENSE Apache-2.0
REQUIRES v0.6.0
)");
    EXPECT_EQ(m.from, "llama3.2");
    EXPECT_EQ(m.parameters["temperature"], 0.7);
    EXPECT_TRUE(m.parameters["num_ctx"].is_number_integer());
    EXPECT_EQ(m.parameters["num_ctx"], 4096);
    EXPECT_EQ(m.parameters["stop"], json::array({"<|eot_id|>", "<|start_header_id|>"}));
    EXPECT_EQ(m.parameters["use_mmap"], false);
    ASSERT_TRUE(m.template_text);
    EXPECT_EQ(*m.template_text, "{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}");
    ASSERT_TRUE(m.system);
    EXPECT_EQ(*m.system, "You are Mario from Super Mario Bros.");
    ASSERT_EQ(m.messages.size(), 2u);
    EXPECT_EQ(m.messages[0], (ModelfileMessage{"user", "Is Toronto in Canada?"}));
    EXPECT_EQ(m.messages[1], (ModelfileMessage{"assistant", "yes"}));
    EXPECT_EQ(m.adapters, std::vector<std::string>{"./lora.gguf"});
    EXPECT_EQ(m.licenses, (std::vector<std::string>{"MIT\nand more", "Apache-2.0"}));
    EXPECT_EQ(m.requires_version, "0.6.0");
}

TEST(Modelfile, QuotingAsOllamaReadsIt) {
    // Bare values are the rest of the line, trimmed; "..." and """...""" may span lines and end
    // at a quote that closes its line; quotes inside are text.
    Modelfile m = parse_ok("FROM   ./my model.gguf   \r\nSYSTEM \"\"\"  say \"hi\" and \"\"\"x\"\"\"y \n twice  \"\"\"\n");
    EXPECT_EQ(m.from, "./my model.gguf");
    EXPECT_EQ(*m.system, "  say \"hi\" and \"\"\"x\"\"\"y \n twice  ");
    // A """ that closes its line ends the text, as in Ollama (write \""" to keep it).
    EXPECT_EQ(parse_error("FROM x\nSYSTEM \"\"\"a\"\"\" \nb\"\"\"\n").rfind("Modelfile:3: unknown instruction \"b\"\"\"\"", 0), 0u);
    m = parse_ok("FROM x\nSYSTEM \"one\ntwo \"quoted\" three\"\n");
    EXPECT_EQ(*m.system, "one\ntwo \"quoted\" three");
    m = parse_ok("FROM x\nSYSTEM \"\"\"ends with a quote\"\"\"\"\n");
    EXPECT_EQ(*m.system, "ends with a quote\"");
    m = parse_ok("FROM x\nSYSTEM \"\"\n");
    EXPECT_EQ(*m.system, "");
    m = parse_ok("FROM x\nSYSTEM say \"\"\"hi\"\"\"\n");  // bare: quotes inside are text
    EXPECT_EQ(*m.system, "say \"\"\"hi\"\"\"");
    // The last TEMPLATE / SYSTEM wins; a UTF-8 BOM is skipped.
    m = parse_ok("\xEF\xBB\xBF" "FROM x\nSYSTEM a\nSYSTEM b\n");
    EXPECT_EQ(*m.system, "b");
    // Backslashes are text except directly before """ (hearth's escape).
    m = parse_ok(R"(FROM x
TEMPLATE """{{ '\n' }} \" \\ \"""inner\""" end"""
)");
    EXPECT_EQ(*m.template_text, R"({{ '\n' }} \" \\ """inner""" end)");
}

TEST(Modelfile, ErrorsNameTheLine) {
    EXPECT_EQ(parse_error("FROM x\n\n# c\n\n\n\nFORM y\n"),
              "Modelfile:7: unknown instruction \"FORM\" (expected FROM, PARAMETER, TEMPLATE, SYSTEM, MESSAGE, ADAPTER, "
              "LICENSE or REQUIRES)");
    EXPECT_EQ(parse_error("FROM x\nPARAMETER temprature 0.5\n"), "Modelfile:2: unknown parameter \"temprature\"");
    EXPECT_EQ(parse_error("FROM x\nPARAMETER temperature hot\n"), "Modelfile:2: PARAMETER temperature: \"hot\" is not a number");
    EXPECT_EQ(parse_error("FROM x\nPARAMETER num_ctx 1.5\n"), "Modelfile:2: PARAMETER num_ctx: \"1.5\" is not an integer");
    EXPECT_EQ(parse_error("FROM x\nPARAMETER use_mmap maybe\n"), "Modelfile:2: PARAMETER use_mmap: \"maybe\" is not true or false");
    EXPECT_EQ(parse_error("FROM x\nPARAMETER temperature\n"),
              "Modelfile:2: PARAMETER needs a name and a value (PARAMETER temperature 0.7)");
    EXPECT_EQ(parse_error("FROM x\nMESSAGE robot hi\n"),
              "Modelfile:2: MESSAGE role must be one of \"system\", \"user\", or \"assistant\" (got \"robot\")");
    EXPECT_EQ(parse_error("FROM x\nSYSTEM\n"), "Modelfile:2: SYSTEM needs a value");
    EXPECT_EQ(parse_error("FROM x\nSYSTEM \"\"\"never\nclosed\n"),
              "Modelfile:2: SYSTEM: the \"\"\" string that starts here is not closed (a closing \"\"\" must end its line)");
    EXPECT_EQ(parse_error("FROM x\nLICENSE \"open\" more\n"),
              "Modelfile:2: LICENSE: the \" string that starts here is not closed (a closing \" must end its line)");
    EXPECT_EQ(parse_error("SYSTEM hi\n"), "Modelfile: no FROM line (FROM names the base model)");
    EXPECT_EQ(parse_error("FROM x\nREQUIRES soon\n"), "Modelfile:2: REQUIRES must be a version such as 0.14.0, got \"soon\"");
    EXPECT_NE(parse_error("FROM x\nRENDERER qwen3\n").find("Modelfile:2: RENDERER is not supported by hearth"), std::string::npos);
    EXPECT_NE(parse_error("FROM x\n\n1FROM y\n").find("Modelfile:3: unknown instruction \"1FROM\""), std::string::npos);
    auto named = parse_modelfile("FROM x\nBAD y\n", "/tmp/Modelfile.pirate");
    EXPECT_EQ(named.status().message().rfind("/tmp/Modelfile.pirate:2: unknown instruction \"BAD\"", 0), 0u);
}

TEST(Modelfile, ParametersAreTyped) {
    EXPECT_TRUE(find_parameter("temperature"));
    EXPECT_FALSE(find_parameter("nope"));
    EXPECT_EQ(*parse_parameter_value("seed", "-1"), -1);
    EXPECT_EQ(*parse_parameter_value("penalize_newline", "True"), true);
    EXPECT_EQ(*normalize_parameter("temperature", "0.25"), 0.25);
    EXPECT_EQ(*normalize_parameter("num_ctx", 2048.0), 2048);
    EXPECT_TRUE(normalize_parameter("num_ctx", 2048.0)->is_number_integer());
    EXPECT_EQ(*normalize_parameter("stop", "x"), json::array({"x"}));
    EXPECT_FALSE(normalize_parameter("stop", json::array({1})).ok());
    EXPECT_FALSE(normalize_parameter("top_k", true).ok());
    EXPECT_FALSE(normalize_parameter("top_k", 1.5).ok());
    EXPECT_FALSE(normalize_parameter("unknown", 1).ok());
}

TEST(Modelfile, QuoteValue) {
    EXPECT_EQ(quote_modelfile_value("plain text"), "plain text");
    EXPECT_EQ(quote_modelfile_value(""), "\"\"");
    EXPECT_EQ(quote_modelfile_value(" lead"), "\" lead\"");
    EXPECT_EQ(quote_modelfile_value("two\nlines"), "\"two\nlines\"");
    EXPECT_EQ(quote_modelfile_value("\"quoted\""), "\"\"\"\"quoted\"\"\"\"");
    EXPECT_EQ(quote_modelfile_value("a\"\"\"b\nc", false), "\"\"\"a\\\"\"\"b\nc\"\"\"");
    EXPECT_EQ(quote_modelfile_value("x", true), "\"\"\"x\"\"\"");
}

// parse(format(m)) == m, for hand-picked hard texts and for random ones over a small alphabet
// of the characters that matter (quotes, backslashes, blanks, newlines).
TEST(Modelfile, RoundTrips) {
    Modelfile m;
    m.from = "/models/my model.gguf";
    m.template_text = "{% for m in messages %}\"\"\"{{ m.content }}\"\"\"\n{% endfor %}\\";
    m.system = "  ends with quotes \"\"\n\"\"\"";
    m.parameters = {{"temperature", 0.1}, {"num_ctx", 8192}, {"stop", {"\"\"\"", " x ", "<|end|>", "\\"}}, {"use_mmap", true}};
    m.messages = {{"user", "\"hi\""}, {"assistant", "multi\nline"}, {"system", ""}};
    m.adapters = {"./a b.gguf"};
    m.licenses = {"MIT", "line one\nline \"two\"", "\\\"\"\""};
    m.requires_version = "0.6.0";
    auto back = parse_modelfile(format_modelfile(m));
    ASSERT_TRUE(back.ok()) << back.status().message() << "\n" << format_modelfile(m);
    EXPECT_EQ(*back, m) << format_modelfile(m);

    std::mt19937 rng(7);
    const std::string alphabet = "\"\"\"\\\\ \t\nab#";
    for (int i = 0; i < 3000; ++i) {
        std::string s;
        const int n = (int)(rng() % 12);
        for (int k = 0; k < n; ++k) s += alphabet[rng() % alphabet.size()];
        Modelfile r;
        r.from = "x";
        r.system = s;
        r.template_text = s + "\n";
        r.licenses = {s};
        r.messages = {{"user", s}};
        r.parameters = {{"stop", {s}}};
        const std::string text = format_modelfile(r);
        auto p = parse_modelfile(text);
        ASSERT_TRUE(p.ok()) << p.status().message() << "\n--- text ---\n" << text;
        ASSERT_EQ(*p, r) << "--- text ---\n" << text;
    }
}

}  // namespace
}  // namespace hearth::store
