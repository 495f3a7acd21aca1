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
                            R"({"model":"m","raw":"yes"})", R"({"model":"m","logprobs":"yes"})"}) {
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

TEST(OllamaAdapter, ParsesLogprobs) {
    bool stream = false;
    auto in = parse_generate(json::parse(R"({"model":"m","logprobs":true,"top_logprobs":3})"), stream);
    ASSERT_TRUE(in.ok()) << in.status().message();
    EXPECT_TRUE(in->logprobs);
    EXPECT_EQ(in->top_logprobs, 3);
    in = parse_chat(json::parse(R"({"model":"m","messages":[],"logprobs":true,"top_logprobs":20})"), stream);
    ASSERT_TRUE(in.ok()) << in.status().message();
    EXPECT_TRUE(in->logprobs);
    EXPECT_EQ(in->top_logprobs, 20);
    in = parse_generate(json::parse(R"({"model":"m"})"), stream);
    ASSERT_TRUE(in.ok());
    EXPECT_FALSE(in->logprobs);
    EXPECT_EQ(in->top_logprobs, 0);
    // top_logprobs alone is accepted (and checked) but asks for nothing without logprobs.
    in = parse_generate(json::parse(R"({"model":"m","top_logprobs":0,"logprobs":null})"), stream);
    ASSERT_TRUE(in.ok());
    EXPECT_FALSE(in->logprobs);
    const std::pair<const char*, const char*> bad[] = {
        {R"({"model":"m","logprobs":1})", "field \"logprobs\" must be a boolean"},
        {R"({"model":"m","top_logprobs":"3"})", "field \"top_logprobs\" must be an integer"},
        {R"({"model":"m","top_logprobs":2.5})", "field \"top_logprobs\" must be an integer"},
        {R"({"model":"m","top_logprobs":21})", "top_logprobs must be between 0 and 20"},
        {R"({"model":"m","top_logprobs":-1})", "top_logprobs must be between 0 and 20"},
        {R"({"model":"m","top_logprobs":18446744073709551615})", "top_logprobs must be between 0 and 20"},
    };
    for (const auto& [body, message] : bad) {
        auto r = parse_generate(json::parse(body), stream);
        ASSERT_FALSE(r.ok()) << body;
        EXPECT_EQ(r.status().code(), StatusCode::invalid_argument) << body;
        EXPECT_EQ(r.status().message(), message) << body;
        EXPECT_FALSE(parse_chat(json::parse(body), stream).ok()) << body;
    }
}

// Three tokens: a word with two alternatives, a lone UTF-8 lead byte (its "token" is U+FFFD, its
// "bytes" the raw byte), and a control token that renders as nothing (no "bytes").
std::vector<runtime::TokenLogprob> sample_logprobs() {
    std::vector<runtime::TokenLogprob> v(3);
    v[0].token = 15043;
    v[0].text = "Hello";
    v[0].logprob = -0.25f;
    v[0].top = {{15043, "Hello", -0.25f}, {6324, "Hi", -1.5f}};
    v[1].token = 229;
    v[1].text = "\xE2";
    v[1].logprob = -2.0f;
    v[2].token = 2;
    v[2].text = "";
    v[2].logprob = -0.1f;  // written as -0.1, not as the float widened to a double
    return v;
}

constexpr const char* kLogprobsGolden =
    R"([{"token":"Hello","logprob":-0.25,"bytes":[72,101,108,108,111],"top_logprobs":[)"
    R"({"token":"Hello","logprob":-0.25,"bytes":[72,101,108,108,111]},{"token":"Hi","logprob":-1.5,"bytes":[72,105]}]},)"
    "{\"token\":\"\xEF\xBF\xBD\",\"logprob\":-2.0,\"bytes\":[226]},"
    R"({"token":"","logprob":-0.1}])";

TEST(OllamaAdapter, LogprobsGolden) {
    EXPECT_EQ(logprobs_json(sample_logprobs()).dump(), kLogprobsGolden);
    EXPECT_EQ(logprobs_json({}).dump(), "[]");

    Delta d;
    d.content = "Hello";
    d.logprobs = sample_logprobs();
    const std::string lp = kLogprobsGolden;
    EXPECT_EQ(generate_chunk("m", kAt, d).dump(),
              R"({"model":"m","created_at":"2024-05-01T12:34:56.123456789Z","response":"Hello","done":false,"logprobs":)" +
                  lp + "}");
    EXPECT_EQ(chat_chunk("m", kAt, d).dump(),
              R"({"model":"m","created_at":"2024-05-01T12:34:56.123456789Z","message":{"role":"assistant","content":"Hello"},)"
              R"("done":false,"logprobs":)" + lp + "}");
    // A delta of logprobs only (tokens whose text a parser holds back).
    Delta only;
    only.logprobs = {sample_logprobs()[2]};
    EXPECT_EQ(chat_chunk("m", kAt, only).dump(),
              R"({"model":"m","created_at":"2024-05-01T12:34:56.123456789Z","message":{"role":"assistant","content":""},)"
              R"("done":false,"logprobs":[{"token":"","logprob":-0.1}]})");

    Final f;
    f.done_reason = "length";
    f.total_ns = 100;
    f.load_ns = 10;
    f.stats.prompt_tokens = 5;
    f.stats.prompt_ns = 20;
    f.stats.generated_tokens = 3;
    f.stats.generate_ns = 30;
    const std::string stats = R"("total_duration":100,"load_duration":10,"prompt_eval_count":5,"prompt_eval_duration":20,)"
                              R"("eval_count":3,"eval_duration":30,"prompt_cache_count":0)";
    EXPECT_EQ(generate_final("m", kAt, f, "Hello", "", sample_logprobs()).dump(),
              R"({"model":"m","created_at":"2024-05-01T12:34:56.123456789Z","response":"Hello","done":true,)"
              R"("done_reason":"length",)" + stats + R"(,"logprobs":)" + lp + "}");
    EXPECT_EQ(chat_final("m", kAt, f, "Hello", "", {}, sample_logprobs()).dump(),
              R"({"model":"m","created_at":"2024-05-01T12:34:56.123456789Z","message":{"role":"assistant","content":"Hello"},)"
              R"("done":true,"done_reason":"length","logprobs":)" + lp + "," + stats + "}");

    // The writer: chunks carry their delta's entries; the whole reply carries all of them; the
    // streamed final carries none (the chunks had them).
    for (bool chat : {false, true}) {
        auto w = make_writer(chat, "m");
        EXPECT_EQ(json::parse(w->stream_delta(d))["logprobs"].dump(), lp);
        EXPECT_FALSE(json::parse(w->stream_final(f)).contains("logprobs"));
        Collected c;
        c.add(Delta(d));
        Delta more;
        more.content = "!";
        more.logprobs = {sample_logprobs()[0]};
        c.add(std::move(more));
        const json whole = w->whole(f, c);
        ASSERT_TRUE(whole.contains("logprobs")) << chat;
        EXPECT_EQ(whole["logprobs"].size(), 4u);
        EXPECT_EQ(whole["logprobs"][3]["token"], "Hello");
        EXPECT_FALSE(w->whole(f, Collected{}).contains("logprobs"));
    }
}

}  // namespace
}  // namespace hearth::server::ollama
