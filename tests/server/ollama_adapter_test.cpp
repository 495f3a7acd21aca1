// adapters/ollama: request parsing and response objects against golden JSON (STYLE.md §8).
#include <gtest/gtest.h>

#include "server/adapters/ollama.h"

namespace hearth::server::ollama {
namespace {

const WallTime kAt = WallTime(std::chrono::seconds(1714566896)) + std::chrono::nanoseconds(123456789);

TEST(OllamaAdapter, Rfc3339) { EXPECT_EQ(rfc3339(kAt), "2024-05-01T12:34:56.123456789Z"); }

TEST(OllamaAdapter, GenerateChunksGolden) {
    Delta d;
    d.content = "Hello";
    EXPECT_EQ(generate_chunk("llama3:latest", kAt, d).dump(),
              R"({"model":"llama3:latest","created_at":"2024-05-01T12:34:56.123456789Z","response":"Hello","done":false})");
    d.thinking = "hmm";
    EXPECT_EQ(chat_chunk("m", kAt, d).dump(),
              R"({"model":"m","created_at":"2024-05-01T12:34:56.123456789Z","message":{"role":"assistant","content":"Hello","thinking":"hmm"},"done":false})");
    Final f;
    f.done_reason = "stop";
    f.total_ns = 100;
    f.load_ns = 10;
    f.stats.prompt_tokens = 5;
    f.stats.prompt_ns = 20;
    f.stats.generated_tokens = 3;
    f.stats.generate_ns = 30;
    f.stats.cached_tokens = 2;
    f.context = {1, 2, 3};
    EXPECT_EQ(generate_final("m", kAt, f, "", "").dump(),
              R"({"model":"m","created_at":"2024-05-01T12:34:56.123456789Z","response":"","done":true,"done_reason":"stop",)"
              R"("context":[1,2,3],"total_duration":100,"load_duration":10,"prompt_eval_count":5,"prompt_eval_duration":20,)"
              R"("eval_count":3,"eval_duration":30,"prompt_cache_count":2})");
    chat::ToolCall call;
    call.id = "call_0";
    call.name = "get_weather";
    call.arguments = {{"city", "Paris"}};
    f.context.clear();
    EXPECT_EQ(chat_final("m", kAt, f, "", "", {call}).dump(),
              R"({"model":"m","created_at":"2024-05-01T12:34:56.123456789Z","message":{"role":"assistant","content":"",)"
              R"("tool_calls":[{"id":"call_0","function":{"index":0,"name":"get_weather","arguments":{"city":"Paris"}}}]},)"
              R"("done":true,"done_reason":"stop","total_duration":100,"load_duration":10,"prompt_eval_count":5,)"
              R"("prompt_eval_duration":20,"eval_count":3,"eval_duration":30,"prompt_cache_count":2})");
    Final load;
    load.done_reason = "load";
    EXPECT_EQ(generate_final("m", kAt, load, "", "").dump(),
              R"({"model":"m","created_at":"2024-05-01T12:34:56.123456789Z","response":"","done":true,"done_reason":"load",)"
              R"("total_duration":0,"load_duration":0})");
}

TEST(OllamaAdapter, ParsesGenerate) {
    bool stream = false;
    auto in = parse_generate(nlohmann::json::parse(R"({"model":"m","prompt":"p","system":"s","raw":true,
        "context":[1,2],"options":{"temperature":0},"keep_alive":"1m","think":false,"truncate":true})"), stream);
    ASSERT_TRUE(in.ok()) << in.status().message();
    EXPECT_TRUE(stream);  // default
    EXPECT_EQ(in->model, "m");
    EXPECT_EQ(in->prompt, "p");
    EXPECT_EQ(in->system, "s");
    EXPECT_TRUE(in->raw);
    EXPECT_EQ(in->context, (std::vector<int32_t>{1, 2}));
    EXPECT_EQ(*in->keep_alive, std::chrono::minutes(1));
    EXPECT_EQ(in->think.mode, chat::Think::Mode::off);
    EXPECT_TRUE(in->truncate);
    in = parse_generate(nlohmann::json::parse(R"({"model":"m","keep_alive":-1,"stream":false})"), stream);
    ASSERT_TRUE(in.ok());
    EXPECT_FALSE(stream);
    EXPECT_LT(in->keep_alive->count(), 0);
    for (const char* bad : {R"({"prompt":"x"})", R"({"model":3})", R"({"model":"m","context":["a"]})",
                            R"({"model":"m","options":[1]})", R"({"model":"m","format":3})",
                            R"({"model":"m","format":"yaml"})", R"({"model":"m","images":["x"]})",
                            R"({"model":"m","raw":"yes"})", R"({"model":"m","logprobs":true})"}) {
        auto r = parse_generate(nlohmann::json::parse(bad), stream);
        EXPECT_FALSE(r.ok()) << bad;
        if (!r.ok()) {
            EXPECT_EQ(r.status().code(), StatusCode::invalid_argument) << bad;
        }
    }
    EXPECT_TRUE(parse_generate(nlohmann::json::parse(R"({"model":"m","format":""})"), stream).ok());
    auto fmt = parse_generate(json::parse(R"({"model":"m","format":{"type":"object","properties":{"z":{},"a":{}}}})"), stream);
    ASSERT_TRUE(fmt.ok());
    EXPECT_EQ(fmt->format["properties"].dump(), R"({"z":{},"a":{}})");  // declaration order kept
    EXPECT_TRUE(parse_generate(nlohmann::json::parse(R"({"model":"m","images":[]})"), stream).ok());
}

TEST(OllamaAdapter, ParsesChatMessages) {
    bool stream = true;
    auto in = parse_chat(nlohmann::json::parse(R"({"model":"m","messages":[
        {"role":"user","content":"hi"},
        {"role":"assistant","content":"","tool_calls":[{"function":{"name":"f","arguments":{"a":1}}}]},
        {"role":"tool","content":"42","tool_name":"f"}],
        "tools":[{"type":"function","function":{"name":"f"}}]})"), stream);
    ASSERT_TRUE(in.ok()) << in.status().message();
    ASSERT_EQ(in->messages.size(), 3u);
    EXPECT_EQ(in->messages[1]["tool_calls"][0].dump(),
              R"({"type":"function","function":{"name":"f","arguments":{"a":1}}})");
    EXPECT_EQ(in->messages[2]["name"], "f");
    EXPECT_TRUE(in->tools.is_array());
    auto bad = parse_chat(nlohmann::json::parse(R"({"model":"m","messages":[{"role":"user","content":5}]})"), stream);
    ASSERT_FALSE(bad.ok());
    EXPECT_NE(bad.status().message().find("messages[0].content"), std::string::npos);
}

TEST(OllamaAdapter, ParsesEmbed) {
    auto in = parse_embed(nlohmann::json::parse(R"({"model":"m","input":["a","b"],"truncate":false,"dimensions":4})"));
    ASSERT_TRUE(in.ok());
    EXPECT_EQ(in->inputs.size(), 2u);
    EXPECT_FALSE(in->truncate);
    EXPECT_EQ(*in->dimensions, 4);
    in = parse_embed(nlohmann::json::parse(R"({"model":"m","input":""})"));
    ASSERT_TRUE(in.ok());
    EXPECT_TRUE(in->inputs.empty());  // a load request
    EXPECT_FALSE(parse_embed(nlohmann::json::parse(R"({"model":"m","input":[1]})")).ok());
    EXPECT_FALSE(parse_embed(nlohmann::json::parse(R"({"model":"m","dimensions":0})")).ok());
    auto legacy = parse_embeddings(nlohmann::json::parse(R"({"model":"m","prompt":"x"})"));
    ASSERT_TRUE(legacy.ok());
    EXPECT_FALSE(legacy->normalize);
}

}  // namespace
}  // namespace hearth::server::ollama
