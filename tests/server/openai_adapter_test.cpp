// adapters/openai: request parsing and response objects against golden JSON (STYLE.md §8).
#include <gtest/gtest.h>

#include "server/adapters/openai.h"

namespace hearth::server::openai {
namespace {

json J(const char* text) { return json::parse(text); }

Result<TextRequest> chat(const char* body) { return parse_chat(J(body)); }

// The message of a request that must fail: invalid_argument naming `needle`.
void expect_bad(const Result<TextRequest>& r, const std::string& needle, const char* body) {
    ASSERT_FALSE(r.ok()) << body;
    EXPECT_EQ(r.status().code(), StatusCode::invalid_argument) << body;
    EXPECT_NE(r.status().message().find(needle), std::string::npos) << body << " -> " << r.status().message();
}

ReplyInfo info(bool include_usage = false, bool logprobs = false) {
    ReplyInfo i;
    i.id = "chatcmpl-abc";
    i.created = 1714566896;
    i.model = "qwen3";
    i.include_usage = include_usage;
    i.logprobs = logprobs;
    i.id_seed = 7;
    return i;
}

Final final_of(const char* reason, int64_t prompt = 5, int64_t generated = 3, int64_t cached = 2) {
    Final f;
    f.done_reason = reason;
    f.stats.prompt_tokens = prompt;
    f.stats.generated_tokens = generated;
    f.stats.cached_tokens = cached;
    return f;
}

runtime::TokenLogprob lp(int32_t id, const std::string& text, float logprob, std::vector<runtime::TopLogprob> top = {}) {
    runtime::TokenLogprob t;
    t.token = id;
    t.text = text;
    t.logprob = logprob;
    t.top = std::move(top);
    return t;
}

TEST(OpenAiAdapter, ParsesChatFields) {
    auto r = chat(R"({"model":"llama3","messages":[{"role":"user","content":"hi"}],"stream":true,
        "stream_options":{"include_usage":true},"stop":"END","max_tokens":7,"temperature":0.5,"top_p":0.9,
        "seed":42,"frequency_penalty":0.25,"presence_penalty":-0.5,"n":1,"logprobs":true,"top_logprobs":3,
        "options":{"num_ctx":512,"temperature":0.1,"top_k":5},"keep_alive":"1m",
        "user":"u","metadata":{"a":"b"},"store":false,"parallel_tool_calls":true,"service_tier":"auto"})");
    ASSERT_TRUE(r.ok()) << r.status().message();
    const TextInput& in = r->in;
    EXPECT_TRUE(in.chat);
    EXPECT_FALSE(in.raw);
    EXPECT_EQ(in.model, "llama3");
    EXPECT_TRUE(r->stream);
    EXPECT_TRUE(r->include_usage);
    EXPECT_EQ(in.messages.dump(), R"([{"role":"user","content":"hi"}])");
    // The OpenAI fields win over the `options` extension; the other options stay.
    EXPECT_EQ(in.options.dump(),
              R"({"frequency_penalty":0.25,"num_ctx":512,"num_predict":7,"presence_penalty":-0.5,"seed":42,)"
              R"("stop":["END"],"temperature":0.5,"top_k":5,"top_p":0.9})");
    EXPECT_TRUE(in.logprobs);
    EXPECT_EQ(in.top_logprobs, 3);
    EXPECT_EQ(*in.keep_alive, std::chrono::minutes(1));
    EXPECT_EQ(in.tool_choice, "auto");
    EXPECT_TRUE(in.tools.is_null());
    EXPECT_TRUE(in.format.is_null());
    EXPECT_EQ(in.think.mode, chat::Think::Mode::unset);

    // Defaults: not streamed; max_completion_tokens wins over max_tokens; stop as an array.
    r = chat(R"({"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":3,"max_completion_tokens":9,
                 "stop":["a","b"],"stream_options":null,"logprobs":false})");
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_FALSE(r->stream);
    EXPECT_FALSE(r->include_usage);
    EXPECT_EQ(r->in.options.dump(), R"({"num_predict":9,"stop":["a","b"]})");
    EXPECT_FALSE(r->in.logprobs);
    // Nulls are absent fields.
    r = chat(R"({"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":null,"n":null,"stop":null,
                 "tools":null,"tool_choice":null,"response_format":null,"seed":null,"top_logprobs":null})");
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_EQ(r->in.options.dump(), "{}");
}

TEST(OpenAiAdapter, ConvertsChatMessages) {
    auto r = chat(R"({"model":"m","messages":[
        {"role":"developer","content":"Be brief."},
        {"role":"system","content":[{"type":"text","text":"One."},{"type":"text","text":"Two."}]},
        {"role":"user","content":[{"type":"text","text":"Weather?"}],"name":"bob"},
        {"role":"assistant","content":null,"reasoning_content":"hmm","tool_calls":[
            {"id":"call_A1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}},
            {"id":"call_B2","type":"function","function":{"name":"get_time","arguments":""}}]},
        {"role":"tool","tool_call_id":"call_A1","content":"sunny"},
        {"role":"tool","tool_call_id":"call_B2","content":[{"type":"text","text":"noon"}]},
        {"role":"assistant","content":"Sunny at noon."}]})");
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_EQ(r->in.messages.dump(),
              R"([{"role":"system","content":"Be brief."},)"
              R"({"role":"system","content":"One.\nTwo."},)"
              R"({"role":"user","content":"Weather?"},)"
              R"({"role":"assistant","content":"","thinking":"hmm","reasoning_content":"hmm","tool_calls":[)"
              R"({"id":"call_A1","type":"function","function":{"name":"get_weather","arguments":{"city":"Paris"}}},)"
              R"({"id":"call_B2","type":"function","function":{"name":"get_time","arguments":{}}}]},)"
              R"({"role":"tool","content":"sunny","tool_call_id":"call_A1","name":"get_weather","tool_name":"get_weather"},)"
              R"({"role":"tool","content":"noon","tool_call_id":"call_B2","name":"get_time","tool_name":"get_time"},)"
              R"({"role":"assistant","content":"Sunny at noon."}])");
}

TEST(OpenAiAdapter, ToolsAndToolChoice) {
    const std::string tools =
        R"("tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}},
                    {"type":"function","function":{"name":"get_time"}}])";
    auto with = [&](const std::string& extra) {
        const std::string body = R"({"model":"m","messages":[{"role":"user","content":"hi"}],)" + tools + extra + "}";
        return parse_chat(json::parse(body));
    };
    auto r = with("");
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_EQ(r->in.tools.size(), 2u);
    EXPECT_EQ(r->in.tool_choice, "auto");
    for (const char* c : {"auto", "none", "required"}) {
        r = with(std::string(R"(,"tool_choice":")") + c + "\"");
        ASSERT_TRUE(r.ok()) << c;
        EXPECT_EQ(r->in.tool_choice, c);
    }
    r = with(R"(,"tool_choice":{"type":"function","function":{"name":"get_time"}})");
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_EQ(r->in.tool_choice, "get_time");
    expect_bad(with(R"(,"tool_choice":{"type":"function","function":{"name":"nope"}})"), "nope", "named unknown");
    expect_bad(with(R"(,"tool_choice":"sometimes")"), "tool_choice", "bad string");
    expect_bad(with(R"(,"tool_choice":7)"), "tool_choice", "bad type");
    expect_bad(chat(R"({"model":"m","messages":[{"role":"user","content":"hi"}],"tool_choice":"required"})"),
               "needs tools", "required without tools");
    expect_bad(chat(R"({"model":"m","messages":[{"role":"user","content":"hi"}],"tools":{"a":1}})"), "\"tools\"", "tools object");
    expect_bad(chat(R"({"model":"m","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"custom","custom":{}}]})"),
               "tools[0].type", "custom tool");
    expect_bad(chat(R"({"model":"m","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{}}]})"),
               "tools[0].function.name", "nameless tool");
    // An empty list is no tools.
    r = chat(R"({"model":"m","messages":[{"role":"user","content":"hi"}],"tools":[],"tool_choice":"none"})");
    ASSERT_TRUE(r.ok());
    EXPECT_TRUE(r->in.tools.is_null());
}

TEST(OpenAiAdapter, ResponseFormatAndReasoning) {
    auto fmt = [](const std::string& rf) {
        return parse_chat(json::parse(R"({"model":"m","messages":[{"role":"user","content":"hi"}],"response_format":)" + rf + "}"));
    };
    auto r = fmt(R"({"type":"text"})");
    ASSERT_TRUE(r.ok());
    EXPECT_TRUE(r->in.format.is_null());
    r = fmt(R"({"type":"json_object"})");
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->in.format, "json");
    r = fmt(R"({"type":"json_schema","json_schema":{"name":"p","strict":true,"schema":{"type":"object","properties":{"z":{},"a":{}}}}})");
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_EQ(r->in.format.dump(), R"({"type":"object","properties":{"z":{},"a":{}}})");  // declaration order kept
    expect_bad(fmt(R"({"type":"xml"})"), "xml", "unknown type");
    expect_bad(fmt(R"("json")"), "response_format", "string");
    expect_bad(fmt(R"({"type":"json_schema"})"), "json_schema", "no json_schema");
    expect_bad(fmt(R"({"type":"json_schema","json_schema":{"name":"x","schema":"s"}})"), "schema", "schema string");

    auto effort = [](const std::string& fields) {
        return parse_chat(json::parse(R"({"model":"m","messages":[{"role":"user","content":"hi"}],)" + fields + "}"));
    };
    r = effort(R"("reasoning_effort":"none")");
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->in.think.mode, chat::Think::Mode::off);
    r = effort(R"("reasoning_effort":"medium")");
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->in.think.mode, chat::Think::Mode::on);
    EXPECT_EQ(r->in.think.level, "medium");
    r = effort(R"("reasoning":{"effort":"high"})");
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->in.think.level, "high");
    r = effort(R"("reasoning_effort":"minimal")");
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->in.think.level, "low");
    expect_bad(effort(R"("reasoning_effort":"extreme")"), "reasoning_effort", "unknown effort");
    expect_bad(effort(R"("reasoning_effort":1)"), "reasoning_effort", "effort type");
    expect_bad(effort(R"("reasoning":"high")"), "reasoning", "reasoning type");
}

TEST(OpenAiAdapter, ChatRequestErrors) {
    struct Case {
        const char* body;
        const char* needle;
    };
    const Case cases[] = {
        {R"({"messages":[{"role":"user","content":"hi"}]})", "model is required"},
        {R"({"model":5,"messages":[]})", "\"model\""},
        {R"({"model":"m"})", "messages is required"},
        {R"({"model":"m","messages":[]})", "at least one"},
        {R"({"model":"m","messages":{}})", "\"messages\""},
        {R"({"model":"m","messages":[{"role":"robot","content":"x"}]})", "messages[0].role"},
        {R"({"model":"m","messages":[{"content":"x"}]})", "messages[0].role"},
        {R"({"model":"m","messages":[{"role":"user"}]})", "messages[0].content"},
        {R"({"model":"m","messages":[{"role":"user","content":5}]})", "messages[0].content"},
        {R"({"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:"}}]}]})",
         "images are not supported"},
        {R"({"model":"m","messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{}}]}]})", "audio"},
        {R"({"model":"m","messages":[{"role":"user","content":[{"type":"video"}]}]})", "video"},
        {R"({"model":"m","messages":[{"role":"user","content":[{"type":"text","text":3}]}]})", "messages[0].content[0].text"},
        {R"({"model":"m","messages":[{"role":"assistant","tool_calls":[{"type":"function","function":{"name":"f","arguments":"{bad"}}]}]})",
         "messages[0].tool_calls[0].function.arguments"},
        {R"({"model":"m","messages":[{"role":"assistant","tool_calls":[{"type":"function"}]}]})", "messages[0].tool_calls[0].function"},
        {R"({"model":"m","messages":[{"role":"tool","content":"x","tool_call_id":5}]})", "messages[0].tool_call_id"},
        {R"({"model":"m","messages":[{"role":"user","content":"x"}],"stream":"yes"})", "\"stream\""},
        {R"({"model":"m","messages":[{"role":"user","content":"x"}],"stream_options":true})", "stream_options"},
        {R"({"model":"m","messages":[{"role":"user","content":"x"}],"stream_options":{"include_usage":1}})", "include_usage"},
        {R"({"model":"m","messages":[{"role":"user","content":"x"}],"temperature":"hot"})", "\"temperature\""},
        {R"({"model":"m","messages":[{"role":"user","content":"x"}],"top_p":[1]})", "\"top_p\""},
        {R"({"model":"m","messages":[{"role":"user","content":"x"}],"seed":1.5})", "\"seed\""},
        {R"({"model":"m","messages":[{"role":"user","content":"x"}],"stop":5})", "\"stop\""},
        {R"({"model":"m","messages":[{"role":"user","content":"x"}],"stop":["a",1]})", "\"stop\""},
        {R"({"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":"9"})", "\"max_tokens\""},
        {R"({"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":-1})", "max_tokens"},
        {R"({"model":"m","messages":[{"role":"user","content":"x"}],"max_completion_tokens":true})", "\"max_completion_tokens\""},
        {R"({"model":"m","messages":[{"role":"user","content":"x"}],"n":2})", "n must be 1"},
        {R"({"model":"m","messages":[{"role":"user","content":"x"}],"logprobs":1})", "\"logprobs\""},
        {R"({"model":"m","messages":[{"role":"user","content":"x"}],"logprobs":true,"top_logprobs":21})", "top_logprobs"},
        {R"({"model":"m","messages":[{"role":"user","content":"x"}],"top_logprobs":2})", "needs logprobs"},
        {R"({"model":"m","messages":[{"role":"user","content":"x"}],"options":[1]})", "\"options\""},
        {R"({"model":"m","messages":[{"role":"user","content":"x"}],"keep_alive":"soon"})", "keep_alive"},
        {R"({"model":"m","messages":[{"role":"user","content":"x"}],"keep_alive":true})", "keep_alive"},
    };
    for (const auto& c : cases) expect_bad(chat(c.body), c.needle, c.body);
}

TEST(OpenAiAdapter, ParsesCompletion) {
    auto r = parse_completion(J(R"({"model":"m","prompt":"Once","suffix":"end","stream":true,"temperature":0,"stop":["."],
                                    "logprobs":2,"seed":3,"n":1,"best_of":1,"echo":false})"));
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_FALSE(r->in.chat);
    EXPECT_TRUE(r->in.raw);
    EXPECT_EQ(r->in.prompt, "Once");
    EXPECT_EQ(r->in.suffix, "end");
    EXPECT_TRUE(r->stream);
    EXPECT_TRUE(r->in.logprobs);
    EXPECT_EQ(r->in.top_logprobs, 2);
    // OpenAI's default of 16 tokens.
    EXPECT_EQ(r->in.options.dump(), R"({"num_predict":16,"seed":3,"stop":["."],"temperature":0.0})");
    r = parse_completion(J(R"({"model":"m","prompt":["Once"],"max_tokens":4,"logprobs":0})"));
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->in.prompt, "Once");
    EXPECT_EQ(r->in.options["num_predict"], 4);
    EXPECT_TRUE(r->in.logprobs);
    EXPECT_EQ(r->in.top_logprobs, 0);
    r = parse_completion(J(R"({"model":"m","prompt":"x","options":{"num_predict":40}})"));
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->in.options["num_predict"], 40);  // the extension replaces the default
    EXPECT_FALSE(r->in.logprobs);

    const char* bad[][2] = {
        {R"({"model":"m"})", "prompt is required"},
        {R"({"model":"m","prompt":[1,2,3]})", "token prompts"},
        {R"({"model":"m","prompt":[[1,2]]})", "token prompts"},
        {R"({"model":"m","prompt":["a","b"]})", "one prompt"},
        {R"({"model":"m","prompt":[]})", "prompt"},
        {R"({"model":"m","prompt":5})", "\"prompt\""},
        {R"({"model":"m","prompt":"x","echo":true})", "echo"},
        {R"({"model":"m","prompt":"x","n":3})", "n must be 1"},
        {R"({"model":"m","prompt":"x","best_of":2})", "best_of must be 1"},
        {R"({"model":"m","prompt":"x","logprobs":6})", "logprobs"},
        {R"({"model":"m","prompt":"x","logprobs":true})", "\"logprobs\""},
        {R"({"model":"m","prompt":"x","suffix":1})", "\"suffix\""},
        {R"({"model":"m","prompt":"x","max_tokens":1.5})", "\"max_tokens\""},
    };
    for (const auto& b : bad) expect_bad(parse_completion(J(b[0])), b[1], b[0]);
}

TEST(OpenAiAdapter, ParsesEmbeddings) {
    auto r = parse_embeddings(J(R"({"model":"bge","input":["a","b"],"encoding_format":"base64","dimensions":8,"user":"x"})"));
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_EQ(r->in.inputs, (std::vector<std::string>{"a", "b"}));
    EXPECT_TRUE(r->base64);
    EXPECT_EQ(*r->in.dimensions, 8);
    EXPECT_TRUE(r->in.normalize);
    r = parse_embeddings(J(R"({"model":"bge","input":"one","encoding_format":"float"})"));
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->in.inputs.size(), 1u);
    EXPECT_FALSE(r->base64);
    for (const char* b : {R"({"model":"bge"})", R"({"model":"bge","input":[1,2]})", R"({"model":"bge","input":[[1]]})",
                          R"({"model":"bge","input":[]})", R"({"model":"bge","input":""})", R"({"model":"bge","input":5})",
                          R"({"model":"bge","input":"a","encoding_format":"int8"})", R"({"model":"bge","input":"a","dimensions":0})",
                          R"({"input":"a"})"}) {
        auto e = parse_embeddings(J(b));
        EXPECT_FALSE(e.ok()) << b;
        if (!e.ok()) {
            EXPECT_EQ(e.status().code(), StatusCode::invalid_argument) << b;
        }
    }
    auto tokens = parse_embeddings(J(R"({"model":"bge","input":[1,2]})"));
    ASSERT_FALSE(tokens.ok());
    EXPECT_NE(tokens.status().message().find("token inputs are not supported"), std::string::npos);
}

TEST(OpenAiAdapter, ChatStreamGolden) {
    auto w = make_chat_writer(info());
    EXPECT_STREQ(w->stream_content_type(), "text/event-stream");
    const std::string head = R"({"id":"chatcmpl-abc","object":"chat.completion.chunk","created":1714566896,"model":"qwen3",)"
                             R"("system_fingerprint":"fp_hearth","choices":[{"index":0,)";
    Delta d;
    d.thinking = "Hmm.";
    // The first delta is preceded by the role chunk.
    EXPECT_EQ(w->stream_delta(d),
              "data: " + head + R"("delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}]})" + "\n\n" +
              "data: " + head + R"("delta":{"reasoning_content":"Hmm."},"logprobs":null,"finish_reason":null}]})" + "\n\n");
    d = Delta{};
    d.content = "Hi";
    EXPECT_EQ(w->stream_delta(d), "data: " + head + R"("delta":{"content":"Hi"},"logprobs":null,"finish_reason":null}]})" + "\n\n");
    d = Delta{};
    chat::ToolCall call;
    call.id = "abc123XYZ";  // the model's own id is kept
    call.name = "get_weather";
    call.arguments = {{"city", "Paris"}};
    call.index = 0;
    d.tool_calls = {call};
    EXPECT_EQ(w->stream_delta(d),
              "data: " + head +
                  R"("delta":{"tool_calls":[{"index":0,"id":"abc123XYZ","type":"function","function":{"name":"get_weather",)"
                  R"("arguments":"{\"city\":\"Paris\"}"}}]},"logprobs":null,"finish_reason":null}]})" + "\n\n");
    EXPECT_EQ(w->stream_final(final_of("stop")),
              "data: " + head + R"("delta":{},"logprobs":null,"finish_reason":"tool_calls"}]})" + "\n\ndata: [DONE]\n\n");
}

TEST(OpenAiAdapter, ChatStreamUsageGolden) {
    auto w = make_chat_writer(info(/*include_usage=*/true));
    const std::string head = R"({"id":"chatcmpl-abc","object":"chat.completion.chunk","created":1714566896,"model":"qwen3",)"
                             R"("system_fingerprint":"fp_hearth",)";
    // A stream with no text still starts with the role chunk; every chunk says "usage": null
    // until the last, whose choices are empty.
    EXPECT_EQ(w->stream_final(final_of("length")),
              "data: " + head + R"("choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},)"
              R"("logprobs":null,"finish_reason":null}],"usage":null})" + "\n\n" +
              "data: " + head + R"("choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"length"}],"usage":null})" + "\n\n" +
              "data: " + head + R"("choices":[],"usage":{"prompt_tokens":5,"completion_tokens":3,"total_tokens":8,)"
              R"("prompt_tokens_details":{"cached_tokens":2}}})" + "\n\ndata: [DONE]\n\n");
    // An error after the stream started goes in the stream.
    EXPECT_EQ(w->stream_error(error(StatusCode::internal, "boom")),
              R"(data: {"error":{"message":"boom","type":"server_error","param":null,"code":null}})" "\n\n");
}

TEST(OpenAiAdapter, ChatWholeGolden) {
    auto w = make_chat_writer(info());
    Collected c;
    c.content = "Paris.";
    c.thinking = "Capital of France.";
    EXPECT_EQ(w->whole(final_of("stop"), c).dump(),
              R"({"id":"chatcmpl-abc","object":"chat.completion","created":1714566896,"model":"qwen3","system_fingerprint":"fp_hearth",)"
              R"("choices":[{"index":0,"message":{"role":"assistant","content":"Paris.","reasoning_content":"Capital of France.",)"
              R"("refusal":null},"logprobs":null,"finish_reason":"stop"}],)"
              R"("usage":{"prompt_tokens":5,"completion_tokens":3,"total_tokens":8,"prompt_tokens_details":{"cached_tokens":2}}})");
    // Only tool calls: content null, finish_reason tool_calls, arguments a JSON string.
    Collected t;
    chat::ToolCall call;
    call.id = "toolu_1";
    call.name = "get_weather";
    call.arguments = {{"city", "Paris"}, {"days", 2}};
    t.tool_calls = {call};
    EXPECT_EQ(w->whole(final_of("stop", 10, 4, 0), t).dump(),
              R"({"id":"chatcmpl-abc","object":"chat.completion","created":1714566896,"model":"qwen3","system_fingerprint":"fp_hearth",)"
              R"("choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[{"id":"toolu_1","type":"function",)"
              R"("function":{"name":"get_weather","arguments":"{\"city\":\"Paris\",\"days\":2}"}}],"refusal":null},)"
              R"("logprobs":null,"finish_reason":"tool_calls"}],)"
              R"("usage":{"prompt_tokens":10,"completion_tokens":4,"total_tokens":14,"prompt_tokens_details":{"cached_tokens":0}}})");
    // Cut off: length, with content "" (not null: there are no calls).
    EXPECT_EQ(w->whole(final_of("length"), Collected{})["choices"][0]["finish_reason"], "length");
    EXPECT_EQ(w->whole(final_of("length"), Collected{})["choices"][0]["message"]["content"], "");
    // Whole calls followed by text that was cut off: the calls are still to be run.
    t.content = "and then";
    json cut = w->whole(final_of("length"), t);
    EXPECT_EQ(cut["choices"][0]["finish_reason"], "tool_calls");
    EXPECT_EQ(cut["choices"][0]["message"]["content"], "and then");
}

TEST(OpenAiAdapter, PlaceholderToolCallIdsBecomeUnique) {
    chat::ToolCall call;
    call.id = "call_0";  // the parser's placeholder for formats without ids
    call.name = "f";
    Collected c;
    c.tool_calls = {call, call};
    json a = make_chat_writer(info())->whole(final_of("stop"), c);
    const std::string id0 = a["choices"][0]["message"]["tool_calls"][0]["id"];
    const std::string id1 = a["choices"][0]["message"]["tool_calls"][1]["id"];
    EXPECT_EQ(id0.size(), 29u);
    EXPECT_EQ(id0.rfind("call_", 0), 0u);
    EXPECT_NE(id0, id1);
    EXPECT_EQ(id0.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", 5), std::string::npos);
    // The same seed gives the same ids (the writer takes its randomness from ReplyInfo).
    EXPECT_EQ(make_chat_writer(info())->whole(final_of("stop"), c)["choices"][0]["message"]["tool_calls"][0]["id"], id0);
    const std::string r = random_id("chatcmpl-");
    EXPECT_EQ(r.size(), 33u);
    EXPECT_NE(r, random_id("chatcmpl-"));
}

TEST(OpenAiAdapter, ChatLogprobsGolden) {
    std::vector<runtime::TokenLogprob> lps = {lp(5, "Hi", -0.25f, {{5, "Hi", -0.25f}, {9, "Yo", -1.5f}}),
                                              lp(7, "\xC3", -0.1f, {})};  // half of "é": bytes stay exact
    EXPECT_EQ(chat_logprobs_json(lps).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
              R"({"content":[{"token":"Hi","logprob":-0.25,"bytes":[72,105],"top_logprobs":[)"
              R"({"token":"Hi","logprob":-0.25,"bytes":[72,105]},{"token":"Yo","logprob":-1.5,"bytes":[89,111]}]},)"
              R"({"token":")" "\xEF\xBF\xBD" R"(","logprob":-0.1,"bytes":[195],"top_logprobs":[]}],"refusal":null})");
    // Streamed: a delta's tokens ride on its chunk when the request asked for them.
    auto w = make_chat_writer(info(false, /*logprobs=*/true));
    Delta d;
    d.content = "Hi";
    d.logprobs = {lps[0]};
    const std::string out = w->stream_delta(d);
    const std::string last = out.substr(out.rfind("data: ") + 6);
    json j = json::parse(last);
    EXPECT_EQ(j["choices"][0]["logprobs"]["content"][0]["token"], "Hi");
    EXPECT_EQ(j["choices"][0]["logprobs"]["content"][0]["top_logprobs"].size(), 2u);
    Collected c;
    c.content = "Hi";
    c.logprobs = {lps[0]};
    EXPECT_EQ(w->whole(final_of("stop"), c)["choices"][0]["logprobs"], chat_logprobs_json(c.logprobs));
    // Not asked for: null, even when the engine sent some.
    EXPECT_TRUE(make_chat_writer(info())->whole(final_of("stop"), c)["choices"][0]["logprobs"].is_null());
}

TEST(OpenAiAdapter, CompletionGolden) {
    ReplyInfo i = info(/*include_usage=*/true, /*logprobs=*/true);
    i.id = "cmpl-xyz";
    i.model = "stories";
    auto w = make_completion_writer(i);
    const std::string head = R"({"id":"cmpl-xyz","object":"text_completion","created":1714566896,"model":"stories",)"
                             R"("system_fingerprint":"fp_hearth",)";
    Delta d;
    d.content = "Once upon";
    d.logprobs = {lp(1, "Once", -0.5f, {{1, "Once", -0.5f}, {2, "One", -2.0f}}), lp(3, " upon", -0.125f, {{4, " a", -1.0f}})};
    EXPECT_EQ(w->stream_delta(d),
              "data: " + head + R"("choices":[{"text":"Once upon","index":0,"logprobs":{"tokens":["Once"," upon"],)"
              R"("token_logprobs":[-0.5,-0.125],"top_logprobs":[{"Once":-0.5,"One":-2.0},{" a":-1.0," upon":-0.125}],)"
              R"("text_offset":[0,4]},"finish_reason":null}],"usage":null})" + "\n\n");
    d.content = " a";
    d.logprobs = {lp(4, " a", -0.75f)};
    // Offsets continue from the text already streamed.
    EXPECT_NE(w->stream_delta(d).find(R"("text_offset":[9])"), std::string::npos);
    EXPECT_EQ(w->stream_final(final_of("length", 4, 3, 0)),
              "data: " + head + R"("choices":[{"text":"","index":0,"logprobs":null,"finish_reason":"length"}],"usage":null})" + "\n\n" +
              "data: " + head + R"("choices":[],"usage":{"prompt_tokens":4,"completion_tokens":3,"total_tokens":7,)"
              R"("prompt_tokens_details":{"cached_tokens":0}}})" + "\n\ndata: [DONE]\n\n");

    i.include_usage = false;
    i.logprobs = false;
    Collected c;
    c.content = "Once upon a";
    EXPECT_EQ(make_completion_writer(i)->whole(final_of("stop", 4, 3, 1), c).dump(),
              R"({"id":"cmpl-xyz","object":"text_completion","created":1714566896,"model":"stories","system_fingerprint":"fp_hearth",)"
              R"("choices":[{"text":"Once upon a","index":0,"logprobs":null,"finish_reason":"stop"}],)"
              R"("usage":{"prompt_tokens":4,"completion_tokens":3,"total_tokens":7,"prompt_tokens_details":{"cached_tokens":1}}})");
}

TEST(OpenAiAdapter, EmbeddingsGolden) {
    EmbedOutput out;
    out.model = "bge:latest";
    out.result.vectors = {{1.0f, -2.0f}, {0.1f, 0.0f}};
    out.result.prompt_tokens_total = 6;
    EXPECT_EQ(embeddings_response(out, "bge", false).dump(),
              R"({"object":"list","data":[{"object":"embedding","index":0,"embedding":[1.0,-2.0]},)"
              R"({"object":"embedding","index":1,"embedding":[0.1,0.0]}],"model":"bge",)"
              R"("usage":{"prompt_tokens":6,"total_tokens":6}})");
    // 1.0f = 00 00 80 3F, -2.0f = 00 00 00 C0 (little-endian).
    EXPECT_EQ(embeddings_response(out, "bge", true)["data"][0]["embedding"], "AACAPwAAAMA=");
    EXPECT_EQ(base64_floats({}), "");
    EXPECT_EQ(base64_floats({1.0f}), "AACAPw==");
    EXPECT_EQ(base64_floats({1.0f, -2.0f, 0.5f}), "AACAPwAAAMAAAAA/");
}

TEST(OpenAiAdapter, ErrorsGolden) {
    EXPECT_EQ(error_json(400, "bad").dump(),
              R"({"error":{"message":"bad","type":"invalid_request_error","param":null,"code":null}})");
    EXPECT_EQ(error_json(401, "no").dump(),
              R"({"error":{"message":"no","type":"authentication_error","param":null,"code":"invalid_api_key"}})");
    EXPECT_EQ(error_json(503, "busy")["error"]["type"], "rate_limit_error");
    EXPECT_EQ(error_json(500, "x")["error"]["type"], "server_error");
    ErrorReply r = error_reply(error(StatusCode::not_found, "model 'nope' not found"), "nope");
    EXPECT_EQ(r.http_status, 404);
    EXPECT_EQ(r.body.dump(),
              R"({"error":{"message":"model \"nope\" not found, try pulling it first","type":"not_found_error","param":null,)"
              R"("code":"model_not_found"}})");
    r = error_reply(error(StatusCode::out_of_range, "the prompt is 900 tokens"), "m");
    EXPECT_EQ(r.http_status, 400);
    EXPECT_EQ(r.body["error"]["code"], "context_length_exceeded");
    r = error_reply(error(StatusCode::resource_exhausted, "server busy"), "m");
    EXPECT_EQ(r.http_status, 503);
    r = error_reply(error(StatusCode::invalid_argument, "field \"x\" must be a string"), "");
    EXPECT_EQ(r.http_status, 400);
    EXPECT_EQ(r.body["error"]["message"], "field \"x\" must be a string");
    EXPECT_FALSE(parse_body("{x").ok());
    EXPECT_FALSE(parse_body("").ok());
    EXPECT_FALSE(parse_body("[]").ok());
    EXPECT_NE(parse_body("{x").status().message().find("invalid JSON"), std::string::npos);
}

TEST(OpenAiAdapter, ModelJson) {
    store::ModelRef ref;
    ref.name = "user/llama3:8b";
    ref.full_name = "registry.ollama.ai/user/llama3:8b";
    ref.modified = store::WallTime(std::chrono::seconds(1714566896)) + std::chrono::milliseconds(500);
    EXPECT_EQ(model_json(ref, "user/llama3:8b").dump(),
              R"({"id":"user/llama3:8b","object":"model","created":1714566896,"owned_by":"user"})");
    ref.full_name = "registry.ollama.ai/library/llama3:latest";
    EXPECT_EQ(model_json(ref, "llama3")["owned_by"], "library");
}

}  // namespace
}  // namespace hearth::server::openai
