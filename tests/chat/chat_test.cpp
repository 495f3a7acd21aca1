// ChatFormat detection for every template of the corpus (a table: template → family, tool-call
// convention, thinking marker, thinking switch), prompt rendering (thinking switch, BOS, the
// prompt-opened thinking block), and the prefix property the REPL's prefix cache relies on.
#include "chat/chat.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <algorithm>
#include <set>
#include <sstream>

#include "support/testdata.h"

namespace {

namespace fs = std::filesystem;
using namespace hearth::chat;
using nlohmann::ordered_json;

std::string slurp(const fs::path& p) { return hearth::test::read_text_file(p.string()); }

std::string corpus(const std::string& name) { return slurp(hearth::test::testdata_path("templates/" + name)); }

struct Row {
    const char* file;
    const char* family;
    ToolCallFormat tools;
    const char* think_start;
    ThinkSwitch think_switch;
};

const Row kTable[] = {
    {"Apertus-8B-Instruct.jinja", "generic", ToolCallFormat::none, "", ThinkSwitch::enable_thinking},
    {"Apriel-1.6-15b-Thinker-fixed.jinja", "apriel", ToolCallFormat::apriel, "", ThinkSwitch::none},
    {"Bielik-11B-v3.0-Instruct.jinja", "hermes", ToolCallFormat::hermes, "<think>", ThinkSwitch::enable_thinking},
    {"ByteDance-Seed-OSS.jinja", "seed-oss", ToolCallFormat::seed_oss, "<seed:think>", ThinkSwitch::none},
    {"Cohere2MoE.jinja", "command-r7b", ToolCallFormat::command_r7b, "<|START_THINKING|>", ThinkSwitch::reasoning_effort},
    {"CohereForAI-c4ai-command-r-plus-tool_use.jinja", "generic", ToolCallFormat::none, "", ThinkSwitch::none},
    {"CohereForAI-c4ai-command-r7b-12-2024-tool_use.jinja", "command-r7b", ToolCallFormat::command_r7b, "<|START_THINKING|>", ThinkSwitch::enable_thinking},
    {"GLM-4.6.jinja", "glm", ToolCallFormat::glm45, "<think>", ThinkSwitch::enable_thinking},
    {"GigaChat3-10B-A1.8B.jinja", "generic", ToolCallFormat::none, "", ThinkSwitch::none},
    {"GigaChat3.1-10B-A1.8B.jinja", "generic", ToolCallFormat::none, "", ThinkSwitch::none},
    {"HuggingFaceTB-SmolLM3-3B.jinja", "chatml", ToolCallFormat::none, "<think>", ThinkSwitch::enable_thinking},
    {"Kimi-K2-Instruct.jinja", "kimi-k2", ToolCallFormat::kimi_k2, "", ThinkSwitch::none},
    {"Kimi-K3.jinja", "generic", ToolCallFormat::none, "", ThinkSwitch::thinking},
    {"LFM2-8B-A1B.jinja", "chatml", ToolCallFormat::none, "", ThinkSwitch::none},
    {"LFM2.5-8B-A1B.jinja", "chatml", ToolCallFormat::none, "<think>", ThinkSwitch::none},
    {"LFM2.5-Instruct.jinja", "chatml", ToolCallFormat::none, "", ThinkSwitch::none},
    {"MiMo-VL.jinja", "hermes", ToolCallFormat::hermes, "", ThinkSwitch::none},
    {"MiniMax-M1.jinja", "generic", ToolCallFormat::none, "", ThinkSwitch::none},
    {"MiniMax-M2.jinja", "minimax-m2", ToolCallFormat::minimax_m2, "<think>", ThinkSwitch::none},
    {"Mistral-Small-3.2-24B-Instruct-2506.jinja", "mistral", ToolCallFormat::mistral, "", ThinkSwitch::none},
    {"NVIDIA-Nemotron-3-Nano-30B-A3B-BF16.jinja", "qwen3-coder", ToolCallFormat::qwen3_coder, "<think>", ThinkSwitch::enable_thinking},
    {"NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use.jinja", "hermes", ToolCallFormat::hermes, "", ThinkSwitch::none},
    {"NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja", "hermes", ToolCallFormat::hermes, "", ThinkSwitch::none},
    {"Qwen-QwQ-32B.jinja", "hermes", ToolCallFormat::hermes, "<think>", ThinkSwitch::enable_thinking},
    {"Qwen-Qwen2.5-7B-Instruct.jinja", "hermes", ToolCallFormat::hermes, "", ThinkSwitch::none},
    {"Qwen-Qwen3-0.6B.jinja", "hermes", ToolCallFormat::hermes, "<think>", ThinkSwitch::enable_thinking},
    {"Qwen3-Coder.jinja", "qwen3-coder", ToolCallFormat::qwen3_coder, "", ThinkSwitch::none},
    {"Reka-Edge.jinja", "hermes", ToolCallFormat::hermes, "<think>", ThinkSwitch::enable_thinking},
    {"StepFun3.5-Flash.jinja", "qwen3-coder", ToolCallFormat::qwen3_coder, "<think>", ThinkSwitch::none},
    {"deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja", "deepseek-r1", ToolCallFormat::deepseek_r1, "<think>", ThinkSwitch::none},
    {"deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja", "deepseek-r1", ToolCallFormat::deepseek_r1, "<think>", ThinkSwitch::enable_thinking},
    {"deepseek-ai-DeepSeek-V3.1.jinja", "deepseek-v3.1", ToolCallFormat::deepseek_r1, "<think>", ThinkSwitch::enable_thinking},
    {"deepseek-ai-DeepSeek-V4-Flash-0731.jinja", "deepseek-v4", ToolCallFormat::deepseek_v4, "<think>", ThinkSwitch::enable_thinking},
    {"deepseek-ai-DeepSeek-V4.jinja", "deepseek-v4", ToolCallFormat::deepseek_v4, "<think>", ThinkSwitch::enable_thinking},
    {"fireworks-ai-llama-3-firefunction-v2.jinja", "firefunction-v2", ToolCallFormat::firefunction_v2, "", ThinkSwitch::none},
    {"google-gemma-2-2b-it.jinja", "generic", ToolCallFormat::none, "", ThinkSwitch::none},
    {"google-gemma-4-31B-it.jinja", "gemma4", ToolCallFormat::none, "<|channel>thought", ThinkSwitch::enable_thinking},
    {"ibm-granite-granite-3.3-2B-Instruct.jinja", "granite", ToolCallFormat::granite, "<think>", ThinkSwitch::thinking},
    {"ibm-granite-granite-4.0.jinja", "hermes", ToolCallFormat::hermes, "", ThinkSwitch::none},
    {"llama-cpp-deepseek-r1.jinja", "deepseek-r1", ToolCallFormat::deepseek_r1, "<think>", ThinkSwitch::none},
    {"llama-cpp-rwkv-world.jinja", "generic", ToolCallFormat::none, "<think>", ThinkSwitch::enable_thinking},
    {"meetkai-functionary-medium-v3.1.jinja", "functionary-v3.1", ToolCallFormat::functionary_v3_1, "", ThinkSwitch::none},
    {"meetkai-functionary-medium-v3.2.jinja", "functionary-v3.2", ToolCallFormat::none, "", ThinkSwitch::none},
    {"meta-llama-Llama-3.1-8B-Instruct.jinja", "llama3", ToolCallFormat::llama3_json, "", ThinkSwitch::none},
    {"meta-llama-Llama-3.2-3B-Instruct.jinja", "llama3", ToolCallFormat::llama3_json, "", ThinkSwitch::none},
    {"meta-llama-Llama-3.3-70B-Instruct.jinja", "llama3", ToolCallFormat::llama3_json, "", ThinkSwitch::none},
    {"microsoft-Phi-3.5-mini-instruct.jinja", "generic", ToolCallFormat::none, "", ThinkSwitch::none},
    {"mistralai-Mistral-Nemo-Instruct-2407.jinja", "mistral-nemo", ToolCallFormat::mistral_nemo, "", ThinkSwitch::none},
    {"moonshotai-Kimi-K2.jinja", "kimi-k2", ToolCallFormat::kimi_k2, "", ThinkSwitch::none},
    {"muse-glimmer.jinja", "generic", ToolCallFormat::none, "", ThinkSwitch::none},
    {"openai-gpt-oss-120b.jinja", "gpt-oss", ToolCallFormat::harmony, "", ThinkSwitch::reasoning_effort},
    {"poolside-Laguna-S-2.1.jinja", "glm", ToolCallFormat::glm45, "<think>", ThinkSwitch::enable_thinking},
    {"poolside-Laguna-XS-2.1.jinja", "glm", ToolCallFormat::glm45, "<think>", ThinkSwitch::enable_thinking},
    {"poolside-Laguna-XS.2.jinja", "glm", ToolCallFormat::glm45, "<think>", ThinkSwitch::enable_thinking},
    {"tencent-Hy3.jinja", "generic", ToolCallFormat::none, "", ThinkSwitch::none},
    {"unsloth-Apriel-1.5.jinja", "apriel", ToolCallFormat::apriel, "", ThinkSwitch::none},
    {"unsloth-mistral-Devstral-Small-2507.jinja", "mistral", ToolCallFormat::mistral, "", ThinkSwitch::none},
    {"upstage-Solar-Open-100B.jinja", "generic", ToolCallFormat::none, "", ThinkSwitch::none},
};

TEST(ChatFormat, DetectsEveryTemplateOfTheCorpus) {
    std::set<std::string> listed;
    for (const Row& r : kTable) {
        listed.insert(r.file);
        const std::string src = corpus(r.file);
        ASSERT_FALSE(src.empty()) << r.file;
        const ChatFormat f = detect_format(src);
        EXPECT_EQ(f.family, r.family) << r.file;
        EXPECT_EQ(f.tool_calls, r.tools) << r.file << ": " << tool_call_format_name(f.tool_calls);
        EXPECT_EQ(f.think_start, r.think_start) << r.file;
        EXPECT_EQ(f.think_switch, r.think_switch) << r.file << ": " << think_switch_name(f.think_switch);
    }
    // Every template of the corpus has a row.
    for (const auto& e : fs::directory_iterator(hearth::test::testdata_path("templates")))
        if (e.path().extension() == ".jinja") {
            EXPECT_TRUE(listed.count(e.path().filename().string())) << e.path();
        }
}

TEST(ChatFormat, MarkersToPreserveAndStops) {
    ChatFormat f = detect_format(corpus("meta-llama-Llama-3.1-8B-Instruct.jinja"));
    EXPECT_NE(std::find(f.preserved_tokens.begin(), f.preserved_tokens.end(), "<|python_tag|>"), f.preserved_tokens.end());
    EXPECT_NE(std::find(f.stop.begin(), f.stop.end(), "<|eot_id|>"), f.stop.end());
    f = detect_format(corpus("openai-gpt-oss-120b.jinja"));
    EXPECT_TRUE(f.has_thinking());
    EXPECT_EQ(std::find(f.stop.begin(), f.stop.end(), "<|end|>"), f.stop.end());  // ends a message, not the turn
    f = detect_format(corpus("Qwen-Qwen3-0.6B.jinja"));
    EXPECT_NE(std::find(f.stop.begin(), f.stop.end(), "<|im_end|>"), f.stop.end());
    EXPECT_NE(std::find(f.preserved_tokens.begin(), f.preserved_tokens.end(), "<think>"), f.preserved_tokens.end());
}

hearth::Result<RenderedPrompt> render(const std::string& file, const ordered_json& messages, const PromptOptions& opt) {
    const std::string src = corpus(file);
    auto t = ChatTemplate::parse(src);
    if (!t.ok()) return t.status();
    return render_prompt(*t, detect_format(src), messages, nullptr, opt);
}

hearth::Result<RenderedPrompt> render(const std::string& file, const ordered_json& messages) {
    return render(file, messages, PromptOptions());
}

Think th(const char* text) {
    auto r = Think::parse(text);
    EXPECT_TRUE(r.ok()) << text;
    return r.ok() ? r.value() : Think{};
}

const ordered_json kHi = ordered_json::parse(R"([{"role": "user", "content": "Hi"}])");

bool ends_with(const std::string& s, const std::string& e) { return s.size() >= e.size() && s.compare(s.size() - e.size(), e.size(), e) == 0; }

TEST(RenderPrompt, ThinkSwitchReachesTheTemplate) {
    PromptOptions opt;
    auto r = render("Qwen-Qwen3-0.6B.jinja", kHi, opt);
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_TRUE(ends_with(r->text, "<|im_start|>assistant\n"));
    opt.think = th("false");
    r = render("Qwen-Qwen3-0.6B.jinja", kHi, opt);
    ASSERT_TRUE(r.ok());
    EXPECT_TRUE(ends_with(r->text, "<think>\n\n</think>\n\n")) << r->text;
    EXPECT_FALSE(r->thinking_open);

    opt.think = th("high");
    r = render("openai-gpt-oss-120b.jinja", kHi, opt);
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_NE(r->text.find("Reasoning: high"), std::string::npos);
    opt.think = th("false");  // gpt-oss cannot stop thinking: the least of it
    r = render("openai-gpt-oss-120b.jinja", kHi, opt);
    ASSERT_TRUE(r.ok());
    EXPECT_NE(r->text.find("Reasoning: low"), std::string::npos);

    opt.think = th("true");  // DeepSeek V3.1 reads `thinking`, falling back to enable_thinking
    r = render("deepseek-ai-DeepSeek-V3.1.jinja", kHi, opt);
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_TRUE(ends_with(r->text, "<think>")) << r->text;
    EXPECT_TRUE(r->thinking_open);
    opt.think = th("false");
    r = render("deepseek-ai-DeepSeek-V3.1.jinja", kHi, opt);
    ASSERT_TRUE(r.ok());
    EXPECT_TRUE(ends_with(r->text, "<think></think>"));
    EXPECT_FALSE(r->thinking_open);
}

TEST(RenderPrompt, PromptOpenedThinking) {
    for (const char* f : {"llama-cpp-deepseek-r1.jinja", "deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja", "MiniMax-M2.jinja"}) {
        auto r = render(f, kHi);
        ASSERT_TRUE(r.ok()) << f << ": " << r.status().message();
        EXPECT_TRUE(r->thinking_open) << f;
    }
    for (const char* f : {"deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja", "Qwen-Qwen3-0.6B.jinja", "Qwen-Qwen2.5-7B-Instruct.jinja"}) {
        auto r = render(f, kHi);
        ASSERT_TRUE(r.ok()) << f;
        EXPECT_FALSE(r->thinking_open) << f;
    }
    PromptOptions no_gen;
    no_gen.add_generation_prompt = false;
    auto r = render("llama-cpp-deepseek-r1.jinja", kHi, no_gen);
    ASSERT_TRUE(r.ok());
    EXPECT_FALSE(r->thinking_open);
}

TEST(RenderPrompt, BosWrittenByTheTemplateIsNotDoubled) {
    PromptOptions opt;
    opt.bos_token = "<|begin_of_text|>";
    opt.eos_token = "<|eot_id|>";
    auto r = render("meta-llama-Llama-3.1-8B-Instruct.jinja", kHi, opt);
    ASSERT_TRUE(r.ok());
    EXPECT_TRUE(r->template_bos);
    EXPECT_EQ(r->text.rfind("<|begin_of_text|>", 0), 0u);  // the vocabulary adds none: keep it
    opt.vocab_adds_bos = true;
    r = render("meta-llama-Llama-3.1-8B-Instruct.jinja", kHi, opt);
    ASSERT_TRUE(r.ok());
    EXPECT_TRUE(r->template_bos);
    EXPECT_EQ(r->text.rfind("<|start_header_id|>system", 0), 0u) << r->text;  // the tokenizer's BOS is the only one
    r = render("Qwen-Qwen2.5-7B-Instruct.jinja", kHi, opt);
    ASSERT_TRUE(r.ok());
    EXPECT_FALSE(r->template_bos);
}

// The REPL resubmits the whole conversation each turn; the prefix cache reuses the earlier turns
// when the new rendering starts with the old one. (Not every template has the property: Mistral's
// move the system prompt into the last user turn, so there only the BOS is shared.)
TEST(RenderPrompt, EarlierTurnsArePrefixOfTheNextRendering) {
    const ordered_json one = ordered_json::parse(R"([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}])");
    ordered_json two = one;
    two.push_back({{"role", "assistant"}, {"content", "Hello!"}});
    two.push_back({{"role", "user"}, {"content", "How are you?"}});
    PromptOptions opt;
    opt.bos_token = "<s>";
    for (const char* f : {"Qwen-Qwen2.5-7B-Instruct.jinja", "meta-llama-Llama-3.1-8B-Instruct.jinja",
                          "Qwen-Qwen3-0.6B.jinja", "openai-gpt-oss-120b.jinja", "google-gemma-2-2b-it.jinja"}) {
        auto a = render(f, one, opt), b = render(f, two, opt);
        if (std::string(f).find("gemma") != std::string::npos) {  // no system role: start with the user
            a = render(f, ordered_json::array({one[1]}), opt);
            b = render(f, ordered_json(ordered_json::array({one[1], two[2], two[3]})), opt);
        }
        ASSERT_TRUE(a.ok() && b.ok()) << f;
        EXPECT_EQ(b->text.rfind(a->text, 0), 0u) << f << "\n" << a->text << "\n---\n" << b->text;
    }
}

TEST(DefaultTemplate, RendersChatMLAndParsesHermesCalls) {
    auto t = ChatTemplate::parse(kDefaultTemplate);
    ASSERT_TRUE(t.ok()) << t.status().message();
    const ChatFormat f = detect_format(kDefaultTemplate);
    EXPECT_EQ(f.tool_calls, ToolCallFormat::hermes);
    const ordered_json msgs = ordered_json::parse(R"([
        {"role": "system", "content": "S"}, {"role": "user", "content": "U"},
        {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": {"a": 1}}}]},
        {"role": "tool", "content": "42"}])");
    const PromptOptions opt;
    auto r = render_prompt(*t, f, msgs, nullptr, opt);
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_EQ(r->text,
              "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n"
              "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": 1}}\n</tool_call><|im_end|>\n"
              "<|im_start|>user\n<tool_response>\n42\n</tool_response><|im_end|>\n<|im_start|>assistant\n");
    const ordered_json tools = ordered_json::parse(R"([{"type": "function", "function": {"name": "f", "parameters": {}}}])");
    r = render_prompt(*t, f, msgs, tools, opt);
    ASSERT_TRUE(r.ok());
    EXPECT_NE(r->text.find("<tools>\n{\"type\": \"function\""), std::string::npos) << r->text;
}

TEST(Think, Parse) {
    EXPECT_EQ(th("true").mode, Think::Mode::on);
    EXPECT_EQ(th("False").mode, Think::Mode::off);
    const Think k = th("medium");
    EXPECT_EQ(k.mode, Think::Mode::on);
    EXPECT_EQ(k.level, "medium");
    EXPECT_FALSE(Think::parse("maybe").ok());
    EXPECT_EQ(Think::from_json(true).mode, Think::Mode::on);
    EXPECT_EQ(Think::from_json(nullptr).mode, Think::Mode::unset);
}

}  // namespace
