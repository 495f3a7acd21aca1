// adapters/anthropic: request mapping and the message / event sequence against golden JSON
// (STYLE.md §8).
#include <gtest/gtest.h>

#include "server/adapters/anthropic.h"

namespace hearth::server::anthropic {
namespace {

json parse(const char* text) { return json::parse(text); }

Result<MessagesRequest> parse_text(const char* text) { return parse_messages(parse(text)); }

// A writer with fixed ids: msg_test, toolu_0, toolu_1, ...
std::unique_ptr<TextWriter> test_writer(std::vector<std::string> stops = {},
                                        std::function<std::string(const std::vector<int32_t>&)> detok = nullptr) {
    WriterParams p;
    p.model = "claude-3-5-sonnet";
    p.id = "msg_test";
    p.input_tokens = 12;
    p.stop_sequences = std::move(stops);
    p.detokenize = std::move(detok);
    auto n = std::make_shared<int>(0);
    p.tool_id = [n] { return "toolu_" + std::to_string((*n)++); };
    return make_writer(std::move(p));
}

Final final_with(const char* reason, int64_t prompt, int64_t cached, int64_t generated) {
    Final f;
    f.done_reason = reason;
    f.stats.prompt_tokens = prompt;
    f.stats.cached_tokens = cached;
    f.stats.generated_tokens = generated;
    return f;
}

Delta text(const char* s) {
    Delta d;
    d.content = s;
    return d;
}

Delta thinking(const char* s) {
    Delta d;
    d.thinking = s;
    return d;
}

chat::ToolCall call(const char* name, json args) {
    chat::ToolCall c;
    c.name = name;
    c.arguments = std::move(args);
    c.id = "call_0";  // the model's own id: replaced by a toolu_ id
    return c;
}

const char* const kStart =
    "event: message_start\n"
    R"(data: {"type":"message_start","message":{"id":"msg_test","type":"message","role":"assistant","model":"claude-3-5-sonnet",)"
    R"("content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":12,"cache_creation_input_tokens":0,)"
    R"("cache_read_input_tokens":0,"output_tokens":0}}})"
    "\n\n"
    "event: ping\n"
    R"(data: {"type":"ping"})"
    "\n\n";

TEST(AnthropicAdapter, ErrorJson) {
    EXPECT_EQ(error_json(400, "bad").dump(), R"({"type":"error","error":{"type":"invalid_request_error","message":"bad"}})");
    EXPECT_EQ(error_json(401, "x")["error"]["type"], "authentication_error");
    EXPECT_EQ(error_json(403, "x")["error"]["type"], "permission_error");
    EXPECT_EQ(error_json(404, "x")["error"]["type"], "not_found_error");
    EXPECT_EQ(error_json(413, "x")["error"]["type"], "request_too_large");
    EXPECT_EQ(error_json(429, "x")["error"]["type"], "rate_limit_error");
    EXPECT_EQ(error_json(500, "x")["error"]["type"], "api_error");
    EXPECT_EQ(error_json(503, "x")["error"]["type"], "overloaded_error");
}

TEST(AnthropicAdapter, ParsesAConversation) {
    auto r = parse_text(R"({
        "model": "qwen3", "max_tokens": 64, "stream": true,
        "system": [{"type": "text", "text": "You are terse."}, {"type": "text", "text": "Use tools.", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "Need the tool.", "signature": "sig"},
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_a", "name": "get_weather", "input": {"city": "Paris"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_a", "content": [{"type": "text", "text": "sunny"}]},
                {"type": "tool_result", "tool_use_id": "toolu_b", "content": "boom", "is_error": true},
                {"type": "text", "text": "And tomorrow?"}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_a"}]}
        ],
        "metadata": {"user_id": "u1"}, "anthropic_future_field": 1
    })");
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_TRUE(r->stream);
    EXPECT_TRUE(r->input.chat);
    EXPECT_EQ(r->input.model, "qwen3");
    EXPECT_EQ(r->input.messages.dump(),
              R"([{"role":"system","content":"You are terse.\n\nUse tools."},)"
              R"({"role":"user","content":"Weather in Paris?"},)"
              R"({"role":"assistant","content":"Checking.","thinking":"Need the tool.","reasoning_content":"Need the tool.",)"
              R"("tool_calls":[{"type":"function","id":"toolu_a","function":{"name":"get_weather","arguments":{"city":"Paris"}}}]},)"
              R"({"role":"tool","content":"sunny","tool_call_id":"toolu_a","tool_name":"get_weather","name":"get_weather"},)"
              R"({"role":"tool","content":"Error: boom","tool_call_id":"toolu_b"},)"
              R"({"role":"user","content":"And tomorrow?"},)"
              R"({"role":"tool","content":"","tool_call_id":"toolu_a","tool_name":"get_weather","name":"get_weather"}])");
    EXPECT_EQ(r->input.options.dump(), R"({"num_predict":64})");
    EXPECT_TRUE(r->input.tools.is_null());
    EXPECT_EQ(r->input.tool_choice, "auto");
    EXPECT_EQ(r->input.think.mode, chat::Think::Mode::unset);
}

TEST(AnthropicAdapter, ParsesSamplingToolsAndThinking) {
    auto r = parse_text(R"({
        "model": "m", "max_tokens": 10, "system": "Be brief.",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}],
        "temperature": 0.5, "top_p": 0.9, "top_k": 40, "stop_sequences": ["END", "\n\n"],
        "options": {"num_ctx": 2048, "num_predict": 5, "temperature": 1.5},
        "tools": [{"name": "get_weather", "description": "Weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}},
                  {"type": "custom", "name": "noop", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "any"},
        "thinking": {"type": "enabled", "budget_tokens": 2048}
    })");
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_FALSE(r->stream);  // default
    EXPECT_EQ(r->input.messages.dump(),
              R"([{"role":"system","content":"Be brief."},{"role":"user","content":"a\n\nb"}])");
    // Ollama's options are the extension; the Anthropic fields win over them.
    EXPECT_EQ(nlohmann::json(r->input.options),
              nlohmann::json::parse(R"({"num_ctx":2048,"num_predict":10,"temperature":0.5,"top_p":0.9,"top_k":40,
                                        "stop":["END","\n\n"]})"));
    EXPECT_EQ(r->stop_sequences, (std::vector<std::string>{"END", "\n\n"}));
    EXPECT_EQ(r->input.tools.dump(),
              R"([{"type":"function","function":{"name":"get_weather","description":"Weather",)"
              R"("parameters":{"type":"object","properties":{"city":{"type":"string"}}}}},)"
              R"({"type":"function","function":{"name":"noop","parameters":{"type":"object"}}}])");
    EXPECT_EQ(r->input.tool_choice, "required");
    EXPECT_EQ(r->input.think.mode, chat::Think::Mode::on);

    const char* base = R"({"model":"m","max_tokens":1,"messages":[{"role":"user","content":"x"}],
        "tools":[{"name":"get_weather","input_schema":{"type":"object"}}],)";
    auto with = [&](const char* tail) { return parse_messages(json::parse(std::string(base) + tail)); };
    EXPECT_EQ(with(R"("tool_choice":{"type":"auto"}})")->input.tool_choice, "auto");
    EXPECT_EQ(with(R"("tool_choice":{"type":"none"}})")->input.tool_choice, "none");
    EXPECT_EQ(with(R"("tool_choice":{"type":"tool","name":"get_weather","disable_parallel_tool_use":true}})")->input.tool_choice,
              "get_weather");
    EXPECT_EQ(with(R"("thinking":{"type":"disabled"}})")->input.think.mode, chat::Think::Mode::off);
    EXPECT_EQ(with(R"("thinking":{"type":"adaptive"}})")->input.think.mode, chat::Think::Mode::unset);

    // count_tokens: no max_tokens needed.
    auto c = parse_messages(json::parse(R"({"model":"m","messages":[{"role":"user","content":"x"}]})"), true);
    ASSERT_TRUE(c.ok()) << c.status().message();
    EXPECT_FALSE(c->input.options.contains("num_predict"));
}

TEST(AnthropicAdapter, RequestErrorsNameTheField) {
    struct Case {
        const char* body;
        const char* says;
    };
    const Case cases[] = {
        {R"({"max_tokens":1,"messages":[{"role":"user","content":"x"}]})", "model is required"},
        {R"({"model":3,"max_tokens":1,"messages":[{"role":"user","content":"x"}]})", "\"model\""},
        {R"({"model":"m","messages":[{"role":"user","content":"x"}]})", "max_tokens is required"},
        {R"({"model":"m","max_tokens":0,"messages":[{"role":"user","content":"x"}]})", "\"max_tokens\""},
        {R"({"model":"m","max_tokens":"5","messages":[{"role":"user","content":"x"}]})", "\"max_tokens\""},
        {R"({"model":"m","max_tokens":1})", "messages is required"},
        {R"({"model":"m","max_tokens":1,"messages":[]})", "at least one message"},
        {R"({"model":"m","max_tokens":1,"messages":{}})", "\"messages\""},
        {R"({"model":"m","max_tokens":1,"messages":[{"role":"system","content":"x"}]})", "top-level \"system\""},
        {R"({"model":"m","max_tokens":1,"messages":[{"role":"bot","content":"x"}]})", "messages[0].role"},
        {R"({"model":"m","max_tokens":1,"messages":[{"role":"user"}]})", "messages[0].content is required"},
        {R"({"model":"m","max_tokens":1,"messages":[{"role":"user","content":5}]})", "\"messages[0].content\""},
        {R"({"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"image","source":{"type":"base64","media_type":"image/png","data":"AA=="}}]}]})",
         "images are not supported"},
        {R"({"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":[{"type":"image"}]}]}]})",
         "images are not supported"},
        {R"({"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"document"}]}]})", "\"document\""},
        {R"({"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"text":"x"}]}]})", "messages[0].content[0].type"},
        {R"({"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"text","text":1}]}]})",
         "\"messages[0].content[0].text\""},
        {R"({"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"tool_use","id":"a","name":"f"}]}]})",
         "assistant messages"},
        {R"({"model":"m","max_tokens":1,"messages":[{"role":"assistant","content":[{"type":"tool_use","name":"f"}]}]})",
         "\"messages[0].content[0].id\""},
        {R"({"model":"m","max_tokens":1,"messages":[{"role":"assistant","content":[{"type":"tool_use","id":"a","name":"f","input":"{}"}]}]})",
         "\"messages[0].content[0].input\""},
        {R"({"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"tool_result"}]}]})",
         "\"messages[0].content[0].tool_use_id\""},
        {R"({"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","is_error":"yes"}]}]})",
         "\"messages[0].content[0].is_error\""},
        {R"({"model":"m","max_tokens":1,"system":7,"messages":[{"role":"user","content":"x"}]})", "\"system\""},
        {R"({"model":"m","max_tokens":1,"system":[{"type":"image"}],"messages":[{"role":"user","content":"x"}]})", "system[0]"},
        {R"({"model":"m","max_tokens":1,"stream":"yes","messages":[{"role":"user","content":"x"}]})", "\"stream\""},
        {R"({"model":"m","max_tokens":1,"temperature":"hot","messages":[{"role":"user","content":"x"}]})", "\"temperature\""},
        {R"({"model":"m","max_tokens":1,"top_p":[],"messages":[{"role":"user","content":"x"}]})", "\"top_p\""},
        {R"({"model":"m","max_tokens":1,"top_k":0.5,"messages":[{"role":"user","content":"x"}]})", "\"top_k\""},
        {R"({"model":"m","max_tokens":1,"stop_sequences":"END","messages":[{"role":"user","content":"x"}]})", "\"stop_sequences\""},
        {R"({"model":"m","max_tokens":1,"stop_sequences":[1],"messages":[{"role":"user","content":"x"}]})", "\"stop_sequences[0]\""},
        {R"({"model":"m","max_tokens":1,"options":[],"messages":[{"role":"user","content":"x"}]})", "\"options\""},
        {R"({"model":"m","max_tokens":1,"tools":{},"messages":[{"role":"user","content":"x"}]})", "\"tools\""},
        {R"({"model":"m","max_tokens":1,"tools":[{"input_schema":{}}],"messages":[{"role":"user","content":"x"}]})", "tools[0].name"},
        {R"({"model":"m","max_tokens":1,"tools":[{"name":"f"}],"messages":[{"role":"user","content":"x"}]})", "tools[0].input_schema"},
        {R"({"model":"m","max_tokens":1,"tools":[{"name":"f","input_schema":"s"}],"messages":[{"role":"user","content":"x"}]})",
         "\"tools[0].input_schema\""},
        {R"({"model":"m","max_tokens":1,"tools":[{"type":"web_search_20250305","name":"web_search"}],"messages":[{"role":"user","content":"x"}]})",
         "web_search_20250305"},
        {R"({"model":"m","max_tokens":1,"tool_choice":"auto","messages":[{"role":"user","content":"x"}]})", "\"tool_choice\""},
        {R"({"model":"m","max_tokens":1,"tool_choice":{"type":"sometimes"},"messages":[{"role":"user","content":"x"}]})", "tool_choice.type"},
        {R"({"model":"m","max_tokens":1,"tool_choice":{"type":"tool"},"messages":[{"role":"user","content":"x"}]})", "tool_choice.name"},
        {R"({"model":"m","max_tokens":1,"tool_choice":{"type":"tool","name":"nope"},"messages":[{"role":"user","content":"x"}]})",
         "not one of the request's tools"},
        {R"({"model":"m","max_tokens":1,"thinking":true,"messages":[{"role":"user","content":"x"}]})", "\"thinking\""},
        {R"({"model":"m","max_tokens":1,"thinking":{"type":"max"},"messages":[{"role":"user","content":"x"}]})", "thinking.type"},
        {R"({"model":"m","max_tokens":1,"thinking":{"type":"enabled","budget_tokens":"lots"},"messages":[{"role":"user","content":"x"}]})",
         "\"thinking.budget_tokens\""},
    };
    for (const auto& c : cases) {
        auto r = parse_text(c.body);
        ASSERT_FALSE(r.ok()) << c.body;
        EXPECT_EQ(r.status().code(), StatusCode::invalid_argument) << c.body;
        EXPECT_NE(r.status().message().find(c.says), std::string::npos) << c.body << " -> " << r.status().message();
    }
    EXPECT_FALSE(parse_body("").ok());
    EXPECT_NE(parse_body("{nope").status().message().find("invalid JSON"), std::string::npos);
    EXPECT_FALSE(parse_body("[1]").ok());
}

TEST(AnthropicAdapter, StreamsText) {
    auto w = test_writer();
    EXPECT_STREQ(w->stream_content_type(), "text/event-stream");
    std::string out = w->stream_delta(text("Hello"));
    out += w->stream_delta(text(" world"));
    out += w->stream_final(final_with("stop", 12, 4, 2));
    EXPECT_EQ(out, std::string(kStart) +
                       "event: content_block_start\n"
                       R"(data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}})"
                       "\n\n"
                       "event: content_block_delta\n"
                       R"(data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}})"
                       "\n\n"
                       "event: content_block_delta\n"
                       R"(data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" world"}})"
                       "\n\n"
                       "event: content_block_stop\n"
                       R"(data: {"type":"content_block_stop","index":0})"
                       "\n\n"
                       "event: message_delta\n"
                       R"(data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},)"
                       R"("usage":{"input_tokens":8,"cache_creation_input_tokens":0,"cache_read_input_tokens":4,"output_tokens":2}})"
                       "\n\n"
                       "event: message_stop\n"
                       R"(data: {"type":"message_stop"})"
                       "\n\n");
}

TEST(AnthropicAdapter, StreamsThinkingThenText) {
    auto w = test_writer();
    Delta both;
    both.thinking = " more";
    both.content = "Hi";
    std::string out = w->stream_delta(thinking("Let me"));
    out += w->stream_delta(both);
    out += w->stream_final(final_with("stop", 12, 0, 5));
    EXPECT_EQ(out, std::string(kStart) +
                       "event: content_block_start\n"
                       R"(data: {"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"","signature":""}})"
                       "\n\n"
                       "event: content_block_delta\n"
                       R"(data: {"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"Let me"}})"
                       "\n\n"
                       "event: content_block_delta\n"
                       R"(data: {"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":" more"}})"
                       "\n\n"
                       "event: content_block_stop\n"
                       R"(data: {"type":"content_block_stop","index":0})"
                       "\n\n"
                       "event: content_block_start\n"
                       R"(data: {"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}})"
                       "\n\n"
                       "event: content_block_delta\n"
                       R"(data: {"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"Hi"}})"
                       "\n\n"
                       "event: content_block_stop\n"
                       R"(data: {"type":"content_block_stop","index":1})"
                       "\n\n"
                       "event: message_delta\n"
                       R"(data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},)"
                       R"("usage":{"input_tokens":12,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":5}})"
                       "\n\n"
                       "event: message_stop\n"
                       R"(data: {"type":"message_stop"})"
                       "\n\n");
}

TEST(AnthropicAdapter, StreamsToolUse) {
    auto w = test_writer();
    Delta calls;
    calls.tool_calls = {call("get_weather", {{"city", "Paris"}}), call("get_time", json::object())};
    std::string out = w->stream_delta(text("Checking."));
    out += w->stream_delta(calls);
    out += w->stream_final(final_with("stop", 12, 0, 20));
    EXPECT_EQ(out, std::string(kStart) +
                       "event: content_block_start\n"
                       R"(data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}})"
                       "\n\n"
                       "event: content_block_delta\n"
                       R"(data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Checking."}})"
                       "\n\n"
                       "event: content_block_stop\n"
                       R"(data: {"type":"content_block_stop","index":0})"
                       "\n\n"
                       "event: content_block_start\n"
                       R"(data: {"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_0","name":"get_weather","input":{}}})"
                       "\n\n"
                       "event: content_block_delta\n"
                       R"(data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"city\":\"Paris\"}"}})"
                       "\n\n"
                       "event: content_block_stop\n"
                       R"(data: {"type":"content_block_stop","index":1})"
                       "\n\n"
                       "event: content_block_start\n"
                       R"(data: {"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_1","name":"get_time","input":{}}})"
                       "\n\n"
                       "event: content_block_delta\n"
                       R"(data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{}"}})"
                       "\n\n"
                       "event: content_block_stop\n"
                       R"(data: {"type":"content_block_stop","index":2})"
                       "\n\n"
                       "event: message_delta\n"
                       R"(data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},)"
                       R"("usage":{"input_tokens":12,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":20}})"
                       "\n\n"
                       "event: message_stop\n"
                       R"(data: {"type":"message_stop"})"
                       "\n\n");
}

TEST(AnthropicAdapter, StreamsMaxTokensAndEmptyReplies) {
    auto w = test_writer();
    std::string out = w->stream_delta(text("Once"));
    out += w->stream_final(final_with("length", 12, 0, 1));
    EXPECT_NE(out.find(R"("delta":{"stop_reason":"max_tokens","stop_sequence":null})"), std::string::npos) << out;
    // A reply with no output at all still starts and ends the message, with no blocks.
    w = test_writer();
    EXPECT_EQ(w->stream_final(final_with("stop", 12, 0, 0)),
              std::string(kStart) +
                  "event: message_delta\n"
                  R"(data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},)"
                  R"("usage":{"input_tokens":12,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":0}})"
                  "\n\n"
                  "event: message_stop\n"
                  R"(data: {"type":"message_stop"})"
                  "\n\n");
}

TEST(AnthropicAdapter, StreamError) {
    auto w = test_writer();
    (void)w->stream_delta(text("x"));
    EXPECT_EQ(w->stream_error(error(StatusCode::internal, "the engine failed")),
              "event: error\n"
              R"(data: {"type":"error","error":{"type":"api_error","message":"the engine failed"}})"
              "\n\n");
}

TEST(AnthropicAdapter, WholeMessage) {
    auto w = test_writer();
    Collected c;
    c.thinking = "Hmm.";
    c.content = "Let me look.";
    c.tool_calls = {call("get_weather", {{"city", "Paris"}})};
    EXPECT_EQ(w->whole(final_with("stop", 30, 10, 7), c).dump(),
              R"({"id":"msg_test","type":"message","role":"assistant","model":"claude-3-5-sonnet","content":[)"
              R"({"type":"thinking","thinking":"Hmm.","signature":""},{"type":"text","text":"Let me look."},)"
              R"({"type":"tool_use","id":"toolu_0","name":"get_weather","input":{"city":"Paris"}}],)"
              R"("stop_reason":"tool_use","stop_sequence":null,)"
              R"("usage":{"input_tokens":20,"cache_creation_input_tokens":0,"cache_read_input_tokens":10,"output_tokens":7}})");
    Collected plain;
    plain.content = "Hi";
    EXPECT_EQ(w->whole(final_with("length", 3, 0, 1), plain).dump(),
              R"({"id":"msg_test","type":"message","role":"assistant","model":"claude-3-5-sonnet",)"
              R"("content":[{"type":"text","text":"Hi"}],"stop_reason":"max_tokens","stop_sequence":null,)"
              R"("usage":{"input_tokens":3,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":1}})");
    EXPECT_EQ(w->whole(final_with("stop", 3, 0, 0), Collected{})["content"], json::array());
    EXPECT_EQ(w->whole(final_with("cancelled", 3, 0, 0), Collected{})["stop_reason"], "end_turn");
}

TEST(AnthropicAdapter, StopSequenceFromTheGeneratedTokens) {
    // The engine cuts the stop string from the reply; the tokens behind it say which one it was.
    std::vector<int32_t> seen;
    auto detok = [&](const std::vector<int32_t>& t) {
        seen = t;
        return std::string("Once upon a time. THE END and more");
    };
    auto w = test_writer({"never", "END", "upon"}, detok);
    Final f = final_with("stop", 5, 0, 3);
    f.stats.tokens = {7, 8, 9};
    Collected c;
    c.content = "Once ";
    json j = w->whole(f, c);
    EXPECT_EQ(j["stop_reason"], "stop_sequence");
    EXPECT_EQ(j["stop_sequence"], "upon");  // the one that starts first
    EXPECT_EQ(seen, (std::vector<int32_t>{7, 8, 9}));
    std::string out = test_writer({"END"}, detok)->stream_final(f);
    EXPECT_NE(out.find(R"("delta":{"stop_reason":"stop_sequence","stop_sequence":"END"})"), std::string::npos) << out;
    // An end-of-generation token (no stop sequence in the text) is end_turn; so is a reply whose
    // tokens cannot be read back.
    EXPECT_EQ(test_writer({"zzz"}, detok)->whole(f, c)["stop_reason"], "end_turn");
    EXPECT_EQ(test_writer({"END"})->whole(f, c)["stop_reason"], "end_turn");
    // num_predict wins over a stop string found in the text, and a whole tool call over both.
    EXPECT_EQ(test_writer({"END"}, detok)->whole(final_with("length", 5, 0, 3), c)["stop_reason"], "max_tokens");
    c.tool_calls = {call("get_time", json::object())};
    EXPECT_EQ(test_writer({"END"}, detok)->whole(final_with("length", 5, 0, 3), c)["stop_reason"], "tool_use");
    EXPECT_EQ(test_writer({"END"}, detok)->whole(f, c)["stop_reason"], "tool_use");

    EXPECT_EQ(which_stop_sequence("abcabc", {"c", "b"}), 1);
    EXPECT_EQ(which_stop_sequence("abcabc", {"bc", "b"}), 0);  // same start: the earlier in the list
    EXPECT_EQ(which_stop_sequence("abc", {"", "x"}), -1);
}

TEST(AnthropicAdapter, PromptTooLongInAnthropicWords) {
    Status s = anthropic_status(error(StatusCode::out_of_range,
                                      "the prompt is 5000 tokens, more than the context holds (num_ctx 4096, with room "
                                      "for one generated token): shorten it"));
    EXPECT_EQ(s.code(), StatusCode::out_of_range);
    EXPECT_EQ(s.message().rfind("prompt is too long: 5000 tokens > 4095 maximum (the prompt is 5000", 0), 0u) << s.message();
    EXPECT_EQ(anthropic_status(error(StatusCode::not_found, "model 'x' not found")).message(), "model 'x' not found");
    EXPECT_EQ(random_id("msg_").size(), 28u);
    EXPECT_NE(random_id("msg_"), random_id("msg_"));
    EXPECT_EQ(count_tokens_json(42).dump(), R"({"input_tokens":42})");
}

}  // namespace
}  // namespace hearth::server::anthropic
