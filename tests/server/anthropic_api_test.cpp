// Anthropic's Messages API end to end: a real server in this process on a free loopback port,
// over a temporary store holding the shared test models, driven with raw HTTP. The models have
// random weights: replies are checked for shape and for agreeing with each other, not for sense.
#include <utility>

#include "server_test_util.h"

namespace hearth::server {
namespace {

using namespace test_util;

class AnthropicApi : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        store_ = new TempStore("anthropic");
        server_ = start_server(test_config(store_->root())).release();
    }
    static void TearDownTestSuite() {
        delete server_;
        delete store_;
    }
    Http http() { return Http(server_->port()); }

    static TempStore* store_;
    static Server* server_;
};
TempStore* AnthropicApi::store_ = nullptr;
Server* AnthropicApi::server_ = nullptr;

json ask(const std::string& model, const std::string& text, int max_tokens) {
    return {{"model", model},
            {"max_tokens", max_tokens},
            {"temperature", 0},
            {"messages", json::array({{{"role", "user"}, {"content", text}}})}};
}

json weather_tools() {
    return json::array({{{"name", "get_weather"},
                         {"description", "Weather in a city"},
                         {"input_schema", {{"type", "object"},
                                           {"properties", {{"city", {{"type", "string"}, {"maxLength", 12}}}}},
                                           {"required", {"city"}}}}}});
}

// An SSE body as its events, in order: {event name, data}.
std::vector<std::pair<std::string, json>> sse_events(const std::string& body) {
    std::vector<std::pair<std::string, json>> out;
    size_t pos = 0;
    for (size_t end; (end = body.find("\n\n", pos)) != std::string::npos; pos = end + 2) {
        const std::string ev = body.substr(pos, end - pos);
        std::string name, data;
        size_t p = 0;
        while (p < ev.size()) {
            size_t nl = ev.find('\n', p);
            if (nl == std::string::npos) nl = ev.size();
            const std::string line = ev.substr(p, nl - p);
            if (line.rfind("event: ", 0) == 0) name = line.substr(7);
            if (line.rfind("data: ", 0) == 0) data = line.substr(6);
            p = nl + 1;
        }
        json j = json::parse(data, nullptr, false);
        EXPECT_FALSE(j.is_discarded()) << "not JSON: " << data;
        EXPECT_EQ(j.value("type", ""), name) << ev;  // the event name repeats the data's type
        out.emplace_back(name, j);
    }
    EXPECT_EQ(pos, body.size()) << "trailing bytes: " << body.substr(pos);
    return out;
}

// A streamed reply, checked for well-formedness (message_start first, blocks opened and closed in
// pairs with indices 0, 1, 2, ..., deltas of the open block's kind, message_delta then
// message_stop last) and folded back into the message object a client would build.
json fold_stream(const std::string& body) {
    const auto events = sse_events(body);
    json msg;
    EXPECT_GE(events.size(), 3u) << body;
    if (events.size() < 3) return msg;
    EXPECT_EQ(events.front().first, "message_start");
    msg = events.front().second["message"];
    EXPECT_EQ(msg["content"], json::array());
    EXPECT_TRUE(msg["stop_reason"].is_null());
    EXPECT_EQ(events[events.size() - 2].first, "message_delta");
    EXPECT_EQ(events.back().first, "message_stop");
    int open = -1;
    std::string partial_json;
    for (size_t i = 1; i + 2 < events.size(); ++i) {
        const auto& [name, d] = events[i];
        if (name == "ping") continue;
        if (name == "content_block_start") {
            EXPECT_EQ(open, -1) << "a block started inside another";
            open = d["index"].get<int>();
            EXPECT_EQ(open, (int)msg["content"].size()) << "indices count up from 0";
            msg["content"].push_back(d["content_block"]);
            partial_json.clear();
        } else if (name == "content_block_delta") {
            EXPECT_EQ(d["index"].get<int>(), open);
            if (open < 0) continue;
            json& block = msg["content"][(size_t)open];
            const json& delta = d["delta"];
            if (delta["type"] == "text_delta") {
                EXPECT_EQ(block["type"], "text");
                block["text"] = block["text"].get<std::string>() + delta["text"].get<std::string>();
            } else if (delta["type"] == "thinking_delta") {
                EXPECT_EQ(block["type"], "thinking");
                block["thinking"] = block["thinking"].get<std::string>() + delta["thinking"].get<std::string>();
            } else if (delta["type"] == "input_json_delta") {
                EXPECT_EQ(block["type"], "tool_use");
                partial_json += delta["partial_json"].get<std::string>();
            } else {
                ADD_FAILURE() << "unknown delta " << delta.dump();
            }
        } else if (name == "content_block_stop") {
            EXPECT_EQ(d["index"].get<int>(), open);
            if (open >= 0 && msg["content"][(size_t)open]["type"] == "tool_use") {
                json input = json::parse(partial_json, nullptr, false);
                EXPECT_TRUE(input.is_object()) << partial_json;
                msg["content"][(size_t)open]["input"] = input;
            }
            open = -1;
        } else {
            ADD_FAILURE() << "unexpected event " << name;
        }
    }
    EXPECT_EQ(open, -1) << "a block was left open";
    const json& md = events[events.size() - 2].second;
    msg["stop_reason"] = md["delta"]["stop_reason"];
    msg["stop_sequence"] = md["delta"]["stop_sequence"];
    for (const auto& [k, v] : md["usage"].items()) msg["usage"][k] = v;
    return msg;
}

// The same request whole and streamed: both answers, the streamed one folded.
std::pair<json, json> both_ways(Http http, json body) {
    body["stream"] = false;
    Reply whole = http.post("/v1/messages", body);
    EXPECT_EQ(whole.status, 200) << whole.body;
    body["stream"] = true;
    Reply streamed = http.post("/v1/messages", body);
    EXPECT_EQ(streamed.status, 200) << streamed.body;
    EXPECT_NE(streamed.header("Content-Type").find("text/event-stream"), std::string::npos);
    return {whole.j(), fold_stream(streamed.body)};
}

// A message's content as {all thinking, all text, the tool calls without ids}: the whole answer
// orders its blocks thinking, text, tool_use while the stream keeps the model's order.
json normalized_content(const json& msg) {
    std::string thinking, text;
    json calls = json::array();
    for (const auto& b : msg["content"]) {
        if (b["type"] == "thinking") thinking += b["thinking"].get<std::string>();
        if (b["type"] == "text") text += b["text"].get<std::string>();
        if (b["type"] == "tool_use") calls.push_back({{"name", b["name"]}, {"input", b["input"]}});
    }
    return {{"thinking", thinking}, {"text", text}, {"tool_use", calls}};
}

// Both answers say the same (ids aside).
void expect_same(const json& whole, const json& streamed) {
    EXPECT_EQ(normalized_content(whole), normalized_content(streamed)) << whole.dump() << "\n" << streamed.dump();
    EXPECT_EQ(whole["stop_reason"], streamed["stop_reason"]);
    EXPECT_EQ(whole["stop_sequence"], streamed["stop_sequence"]);
    EXPECT_EQ(whole["usage"]["output_tokens"], streamed["usage"]["output_tokens"]);
    EXPECT_EQ(whole["usage"]["input_tokens"].get<int64_t>() + whole["usage"]["cache_read_input_tokens"].get<int64_t>(),
              streamed["usage"]["input_tokens"].get<int64_t>() + streamed["usage"]["cache_read_input_tokens"].get<int64_t>());
}

std::string text_of(const json& msg) {
    std::string s;
    for (const auto& b : msg["content"])
        if (b["type"] == "text") s += b["text"].get<std::string>();
    return s;
}

TEST_F(AnthropicApi, MessageWholeAndStreamed) {
    json body = ask("llama3-tiny", "Hello!", 8);
    body["system"] = json::array({{{"type", "text"}, {"text", "Be brief."}}});
    auto [whole, streamed] = both_ways(http(), body);
    EXPECT_EQ(whole["type"], "message");
    EXPECT_EQ(whole["role"], "assistant");
    EXPECT_EQ(whole["model"], "llama3-tiny");  // as requested
    EXPECT_EQ(whole["id"].get<std::string>().rfind("msg_", 0), 0u);
    EXPECT_EQ(streamed["id"].get<std::string>().rfind("msg_", 0), 0u);
    EXPECT_NE(whole["id"], streamed["id"]);
    EXPECT_GT(whole["usage"]["input_tokens"].get<int>() + whole["usage"]["cache_read_input_tokens"].get<int>(), 5);
    EXPECT_EQ(whole["usage"]["cache_creation_input_tokens"], 0);
    EXPECT_GE(whole["usage"]["output_tokens"].get<int>(), 1);
    EXPECT_LE(whole["usage"]["output_tokens"].get<int>(), 8);
    const std::string reason = whole["stop_reason"];
    EXPECT_TRUE(reason == "max_tokens" || reason == "end_turn") << reason;
    EXPECT_FALSE(text_of(whole).empty());
    expect_same(whole, streamed);
    // The second run reused the first one's prompt from the prefix cache.
    EXPECT_GT(streamed["usage"]["cache_read_input_tokens"].get<int>(), 0) << streamed.dump();
}

TEST_F(AnthropicApi, MaxTokens) {
    auto [whole, streamed] = both_ways(http(), ask("stories", "Once upon a time", 3));
    EXPECT_EQ(whole["stop_reason"], "max_tokens") << whole.dump();
    EXPECT_EQ(whole["usage"]["output_tokens"], 3);
    expect_same(whole, streamed);
}

TEST_F(AnthropicApi, StopSequences) {
    // A greedy reply, then the same request stopped at a piece of that reply.
    json body = ask("stories", "Once upon a time", 24);
    Reply r = http().post("/v1/messages", body);
    ASSERT_EQ(r.status, 200) << r.body;
    const std::string text = text_of(r.j());
    size_t at = std::string::npos;
    std::string stop;
    for (size_t k = 4; k + 3 <= text.size(); ++k) {
        const std::string s = text.substr(k, 3);
        const bool ascii = std::all_of(s.begin(), s.end(), [](char c) { return c > ' ' && (unsigned char)c < 0x80; });
        if (ascii && text.find(s) == k) {
            at = k;
            stop = s;
            break;
        }
    }
    ASSERT_NE(at, std::string::npos) << "no usable stop string in: " << text;
    body["stop_sequences"] = json::array({"\x01never", stop});
    auto [whole, streamed] = both_ways(http(), body);
    EXPECT_EQ(whole["stop_reason"], "stop_sequence") << whole.dump();
    EXPECT_EQ(whole["stop_sequence"], stop);
    EXPECT_EQ(text_of(whole), text.substr(0, at));  // the stop string itself is not in the reply
    expect_same(whole, streamed);
    // A stop sequence that never comes: the reply runs to max_tokens.
    body["stop_sequences"] = json::array({"\x01never"});
    r = http().post("/v1/messages", body);
    EXPECT_EQ(r.j()["stop_reason"], "max_tokens");
    EXPECT_TRUE(r.j()["stop_sequence"].is_null());
}

TEST_F(AnthropicApi, Thinking) {
    // The thinking switch reaches qwen3's template: turned off, it writes an empty think block
    // into the prompt.
    json body = ask("qwen3-tiny", "Why is the sky blue?", 12);
    body["thinking"] = {{"type", "enabled"}, {"budget_tokens", 1024}};
    Reply on = http().post("/v1/messages/count_tokens", body);
    body["thinking"] = {{"type", "disabled"}};
    Reply off = http().post("/v1/messages/count_tokens", body);
    ASSERT_EQ(on.status, 200) << on.body;
    ASSERT_EQ(off.status, 200) << off.body;
    EXPECT_GT(off.j()["input_tokens"].get<int>(), on.j()["input_tokens"].get<int>());

    // The random model seldom opens a thinking block by itself, so the event sequence of one is
    // checked in the adapter's golden tests; here both ways must agree, and a thinking block,
    // when one comes, leads.
    body["thinking"] = {{"type", "enabled"}, {"budget_tokens", 1024}};
    auto [whole, streamed] = both_ways(http(), body);
    expect_same(whole, streamed);
    for (size_t i = 0; i < whole["content"].size(); ++i)
        if (whole["content"][i]["type"] == "thinking") {
            EXPECT_EQ(i, 0u) << whole.dump();
            EXPECT_EQ(whole["content"][i]["signature"], "");
        }
    body["thinking"] = {{"type", "disabled"}};
    Reply r = http().post("/v1/messages", body);
    ASSERT_EQ(r.status, 200) << r.body;
    for (const auto& b : r.j()["content"]) EXPECT_NE(b["type"], "thinking") << r.body;
    // A model whose template cannot think answers without thinking (Claude Code asks for
    // thinking whatever the model): same prompt as with thinking disabled.
    body["model"] = "llama3-tiny";
    body["thinking"] = {{"type", "disabled"}};
    const int64_t plain = http().post("/v1/messages/count_tokens", body).j()["input_tokens"];
    body["thinking"] = {{"type", "enabled"}, {"budget_tokens", 1024}};
    EXPECT_EQ(http().post("/v1/messages/count_tokens", body).j()["input_tokens"], plain);
    r = http().post("/v1/messages", body);
    ASSERT_EQ(r.status, 200) << r.body;
    for (const auto& b : r.j()["content"]) EXPECT_NE(b["type"], "thinking") << r.body;
}

TEST_F(AnthropicApi, ToolChoiceAnyCallsATool) {
    json body = ask("qwen3-tiny", "What is the weather in Paris?", 96);
    body["tools"] = weather_tools();
    body["tool_choice"] = {{"type", "any"}};
    body["thinking"] = {{"type", "disabled"}};
    auto [whole, streamed] = both_ways(http(), body);
    EXPECT_EQ(whole["stop_reason"], "tool_use") << whole.dump();
    json call;
    for (const auto& b : whole["content"])
        if (b["type"] == "tool_use") call = b;
    ASSERT_TRUE(call.is_object()) << whole.dump();
    EXPECT_EQ(call["name"], "get_weather");
    EXPECT_EQ(call["id"].get<std::string>().rfind("toolu_", 0), 0u);
    EXPECT_TRUE(call["input"].is_object());
    EXPECT_TRUE(call["input"].contains("city")) << call.dump();
    expect_same(whole, streamed);

    // The call's result goes back as a tool_result; the conversation continues.
    json next = body;
    next["tool_choice"] = {{"type", "none"}};
    next["max_tokens"] = 4;
    next["messages"].push_back({{"role", "assistant"}, {"content", json::array({call})}});
    next["messages"].push_back(
        {{"role", "user"},
         {"content", json::array({{{"type", "tool_result"}, {"tool_use_id", call["id"]}, {"content", "sunny, 21 C"}}})}});
    Reply r = http().post("/v1/messages", next);
    EXPECT_EQ(r.status, 200) << r.body;
}

TEST_F(AnthropicApi, CountTokensMatchesThePromptRun) {
    for (const char* model : {"llama3-tiny", "qwen3-tiny"}) {
        json body = ask(model, "What is the weather in Paris?", 1);
        body["system"] = "You are a weather bot.";
        body["tools"] = weather_tools();
        Reply c = http().post("/v1/messages/count_tokens", body);
        ASSERT_EQ(c.status, 200) << c.body;
        ASSERT_TRUE(c.j()["input_tokens"].is_number_integer()) << c.body;
        Reply m = http().post("/v1/messages", body);
        ASSERT_EQ(m.status, 200) << m.body;
        const json u = m.j()["usage"];
        EXPECT_EQ(c.j()["input_tokens"].get<int64_t>(),
                  u["input_tokens"].get<int64_t>() + u["cache_read_input_tokens"].get<int64_t>())
            << model;
        // No max_tokens needed.
        body.erase("max_tokens");
        body["thinking"] = {{"type", "disabled"}};
        c = http().post("/v1/messages/count_tokens", body);
        EXPECT_EQ(c.status, 200) << c.body;
    }
    Reply r = http().post("/v1/messages/count_tokens", {{"model", "missing"}, {"messages", json::array({{{"role", "user"}, {"content", "x"}}})}});
    EXPECT_EQ(r.status, 404);
    EXPECT_EQ(r.j()["error"]["type"], "not_found_error");
    r = http().post("/v1/messages/count_tokens", {{"model", "llama3-tiny"}, {"messages", json::array()}});
    EXPECT_EQ(r.status, 400);
    EXPECT_EQ(r.j()["type"], "error");
}

TEST_F(AnthropicApi, Errors) {
    auto expect_error = [&](const Reply& r, int status, const char* type, const char* says) {
        EXPECT_EQ(r.status, status) << r.body;
        json j = r.j();
        EXPECT_EQ(j["type"], "error") << r.body;
        EXPECT_EQ(j["error"]["type"], type) << r.body;
        EXPECT_NE(j["error"]["message"].get<std::string>().find(says), std::string::npos) << r.body;
    };
    expect_error(http().request("POST", "/v1/messages", "{not json"), 400, "invalid_request_error", "invalid JSON");
    json body = ask("llama3-tiny", "hi", 4);
    json b = body;
    b["max_tokens"] = "four";
    expect_error(http().post("/v1/messages", b), 400, "invalid_request_error", "\"max_tokens\"");
    b = body;
    b.erase("max_tokens");
    expect_error(http().post("/v1/messages", b), 400, "invalid_request_error", "max_tokens is required");
    b = body;
    b["messages"] = json::array();
    expect_error(http().post("/v1/messages", b), 400, "invalid_request_error", "at least one message");
    b = body;
    b["model"] = "no-such-model";
    expect_error(http().post("/v1/messages", b), 404, "not_found_error", "no-such-model");
    b = body;
    b["messages"][0]["content"] = json::array(
        {{{"type", "image"}, {"source", {{"type", "base64"}, {"media_type", "image/png"}, {"data", "AAAA"}}}}});
    expect_error(http().post("/v1/messages", b), 400, "invalid_request_error", "images are not supported");
    b = body;
    b["messages"][0]["content"] = 7;
    expect_error(http().post("/v1/messages", b), 400, "invalid_request_error", "\"messages[0].content\"");
    b = body;
    b["model"] = "bge";
    expect_error(http().post("/v1/messages", b), 400, "invalid_request_error", "does not support chat");
    b = body;
    b["options"] = {{"num_ctx", "big"}};
    expect_error(http().post("/v1/messages", b), 400, "invalid_request_error", "num_ctx");
    // Longer than the context (num_ctx through Ollama's options extension): Anthropic's words,
    // which clients such as Claude Code act on.
    b = body;
    std::string long_text;
    for (int i = 0; i < 300; ++i) long_text += "the cat sat on the mat ";
    b["messages"][0]["content"] = long_text;
    b["options"] = {{"num_ctx", 256}};
    b["stream"] = true;
    expect_error(http().post("/v1/messages", b), 400, "invalid_request_error", "prompt is too long: ");
    expect_error(http().post("/v1/messages/nope", body), 404, "not_found_error", "404");
}

TEST(AnthropicServer, ApiKeyHeader) {
    TempStore store("anthropic-auth");
    ServerConfig c = test_config(store.root());
    c.api_key = "s3cret";
    auto srv = start_server(c);
    ASSERT_TRUE(srv);
    Http http(srv->port());
    const json body = ask("stories", "Once", 2);
    Reply r = http.post("/v1/messages", body);
    EXPECT_EQ(r.status, 401);
    EXPECT_EQ(r.j()["type"], "error");
    EXPECT_EQ(r.j()["error"]["type"], "authentication_error");
    EXPECT_EQ(http.post("/v1/messages", body, {{"x-api-key", "wrong"}}).status, 401);
    r = http.post("/v1/messages", body, {{"x-api-key", "s3cret"}, {"anthropic-version", "2023-06-01"}});
    EXPECT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.j()["type"], "message");
    EXPECT_EQ(http.post("/v1/messages/count_tokens", body, {{"x-api-key", "s3cret"}}).status, 200);
    // Claude Code adds ?beta=true to the path.
    EXPECT_EQ(http.post("/v1/messages?beta=true", body, {{"x-api-key", "s3cret"}}).status, 200);
    EXPECT_EQ(http.post("/v1/messages/count_tokens?beta=true", body, {{"Authorization", "Bearer s3cret"}}).status, 200);
}

}  // namespace
}  // namespace hearth::server
