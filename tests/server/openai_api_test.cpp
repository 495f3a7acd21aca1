// OpenAI's API end to end: a real server in this process on a free loopback port, over a
// temporary store holding the shared test models, driven with raw HTTP as the official SDKs
// send it (SSE read by a small reader below).
#include <algorithm>
#include <cstring>
#include <ctime>

#include "chat/json_schema.h"
#include "server_test_util.h"

namespace hearth::server {
namespace {

using namespace test_util;

// A streamed POST, split into SSE events.
struct Sse {
    int status = 0;
    std::string content_type;
    std::string body;                 // everything received
    std::vector<std::string> events;  // the data of each event, in order ("[DONE]" included)
    // The events as JSON, [DONE] left out.
    std::vector<json> chunks() const {
        std::vector<json> out;
        for (const auto& e : events)
            if (e != "[DONE]") out.push_back(json::parse(e, nullptr, false));
        return out;
    }
};

// on_event returning false drops the connection (a client going away mid-stream).
Sse sse_post(int port, const std::string& path, const json& body,
             const std::function<bool(const std::string&)>& on_event = nullptr) {
    httplib::Client cli("127.0.0.1", port);
    cli.set_read_timeout(30, 0);
    httplib::Request req;
    req.method = "POST";
    req.path = path;
    req.body = body.dump();
    req.set_header("Content-Type", "application/json");
    req.set_header("Accept", "text/event-stream");
    Sse out;
    std::string buf;
    bool stopped = false;
    req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
        out.body.append(data, n);
        buf.append(data, n);
        for (size_t p; (p = buf.find("\n\n")) != std::string::npos;) {
            const std::string ev = buf.substr(0, p);
            buf.erase(0, p + 2);
            // A comment is the keepalive written after a quiet second (a loaded machine has
            // them mid-stream); clients skip it, and so does this reader.
            if (ev == ": keep-alive") continue;
            EXPECT_EQ(ev.rfind("data: ", 0), 0u) << "not an SSE data event: " << ev;
            if (ev.rfind("data: ", 0) != 0) continue;
            out.events.push_back(ev.substr(6));
            if (on_event && !on_event(out.events.back())) {
                stopped = true;
                return false;
            }
        }
        return true;
    };
    httplib::Response res;
    httplib::Error err = httplib::Error::Success;
    if (!cli.send(req, res, err) && !stopped) ADD_FAILURE() << "POST " << path << ": " << httplib::to_string(err);
    out.status = res.status;
    out.content_type = res.get_header_value("Content-Type");
    return out;
}

std::vector<float> from_base64(const std::string& s) {
    auto val = [](char c) -> int {
        if (c >= 'A' && c <= 'Z') return c - 'A';
        if (c >= 'a' && c <= 'z') return c - 'a' + 26;
        if (c >= '0' && c <= '9') return c - '0' + 52;
        return c == '+' ? 62 : c == '/' ? 63 : -1;
    };
    std::string bytes;
    uint32_t acc = 0;
    int bits = 0;
    for (char c : s) {
        const int v = val(c);
        if (v < 0) break;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            bytes += (char)((acc >> bits) & 0xff);
        }
    }
    std::vector<float> out(bytes.size() / 4);
    for (size_t i = 0; i < out.size(); ++i) {
        uint32_t u = 0;
        for (int k = 0; k < 4; ++k) u |= (uint32_t)(unsigned char)bytes[4 * i + k] << (8 * k);
        std::memcpy(&out[i], &u, 4);
    }
    return out;
}

class OpenAiApi : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        store_ = new TempStore("openai");
        server_ = start_server(test_config(store_->root())).release();
    }
    static void TearDownTestSuite() {
        delete server_;
        delete store_;
    }
    Http http() { return Http(server_->port()); }
    Sse stream(const std::string& path, json body, const std::function<bool(const std::string&)>& on_event = nullptr) {
        body["stream"] = true;
        return sse_post(server_->port(), path, body, on_event);
    }

    static TempStore* store_;
    static Server* server_;
};
TempStore* OpenAiApi::store_ = nullptr;
Server* OpenAiApi::server_ = nullptr;

json user(const std::string& text) { return json::array({{{"role", "user"}, {"content", text}}}); }

json chat_body(const std::string& model, const json& messages, int max_tokens) {
    return {{"model", model}, {"messages", messages}, {"temperature", 0}, {"max_tokens", max_tokens}};
}

// An OpenAI error object: {"error": {"message", "type", "param", "code"}}.
void expect_error(const Reply& r, int status, const std::string& needle, const char* type = "invalid_request_error") {
    EXPECT_EQ(r.status, status) << r.body;
    json j = r.j();
    ASSERT_TRUE(j.contains("error") && j["error"].is_object()) << r.body;
    EXPECT_EQ(j["error"]["type"], type) << r.body;
    EXPECT_TRUE(j["error"].contains("param") && j["error"].contains("code")) << r.body;
    EXPECT_NE(j["error"]["message"].get<std::string>().find(needle), std::string::npos) << r.body;
}

// The text of streamed chat chunks, and the checks every chunk of one stream passes.
struct Streamed {
    std::string content, reasoning, finish_reason;
    json usage;  // the usage chunk's, or null
    std::vector<json> tool_calls;
    int n_logprobs = 0;
};
Streamed read_chat_stream(const Sse& s, bool include_usage) {
    Streamed out;
    EXPECT_EQ(s.status, 200) << s.body;
    EXPECT_NE(s.content_type.find("text/event-stream"), std::string::npos);
    EXPECT_FALSE(s.events.empty());
    if (s.events.empty()) return out;
    EXPECT_EQ(s.events.back(), "[DONE]");
    const std::vector<json> chunks = s.chunks();
    EXPECT_GE(chunks.size(), 2u);
    const std::string id = chunks[0].value("id", "");
    EXPECT_EQ(id.rfind("chatcmpl-", 0), 0u) << id;
    EXPECT_EQ(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    for (size_t i = 0; i < chunks.size(); ++i) {
        const json& c = chunks[i];
        EXPECT_EQ(c["object"], "chat.completion.chunk");
        EXPECT_EQ(c["id"], id);
        EXPECT_EQ(c["system_fingerprint"], "fp_hearth");
        EXPECT_TRUE(c["created"].is_number_integer());
        const bool last = i + 1 == chunks.size();
        if (include_usage) {
            EXPECT_TRUE(c.contains("usage")) << c.dump();
            if (last) {
                EXPECT_TRUE(c["choices"].empty());
                out.usage = c["usage"];
                continue;
            }
            EXPECT_TRUE(c["usage"].is_null()) << c.dump();
        } else {
            EXPECT_FALSE(c.contains("usage")) << c.dump();
        }
        const json& ch = c["choices"][0];
        const json& d = ch["delta"];
        if (d.contains("content") && d["content"].is_string()) out.content += d["content"].get<std::string>();
        if (d.contains("reasoning_content")) out.reasoning += d["reasoning_content"].get<std::string>();
        if (d.contains("tool_calls"))
            for (const auto& t : d["tool_calls"]) out.tool_calls.push_back(t);
        if (ch["logprobs"].is_object()) out.n_logprobs += (int)ch["logprobs"]["content"].size();
        if (!ch["finish_reason"].is_null()) {
            EXPECT_TRUE(out.finish_reason.empty()) << "two finish reasons";
            out.finish_reason = ch["finish_reason"];
            EXPECT_TRUE(d.empty()) << c.dump();
        }
    }
    return out;
}

TEST_F(OpenAiApi, ChatWholeAndStreamedAgree) {
    for (const char* model : {"llama3-tiny", "qwen3-tiny"}) {
        SCOPED_TRACE(model);
        json body = chat_body(model, json::array({{{"role", "developer"}, {"content", "Be brief."}},
                                                  {{"role", "user"}, {"content", "Hello!"}}}),
                              12);
        const int64_t before = (int64_t)std::time(nullptr);
        Reply r = http().post("/v1/chat/completions", body);
        ASSERT_EQ(r.status, 200) << r.body;
        json j = r.j();
        EXPECT_EQ(j["id"].get<std::string>().rfind("chatcmpl-", 0), 0u);
        EXPECT_EQ(j["object"], "chat.completion");
        EXPECT_GE(j["created"].get<int64_t>(), before);
        EXPECT_EQ(j["model"], model);  // as the request named it
        EXPECT_EQ(j["system_fingerprint"], "fp_hearth");
        ASSERT_EQ(j["choices"].size(), 1u);
        const json& choice = j["choices"][0];
        EXPECT_EQ(choice["index"], 0);
        EXPECT_EQ(choice["message"]["role"], "assistant");
        EXPECT_TRUE(choice["message"]["content"].is_string());
        EXPECT_TRUE(choice["logprobs"].is_null());
        const std::string finish = choice["finish_reason"];
        EXPECT_TRUE(finish == "stop" || finish == "length") << finish;
        const json& u = j["usage"];
        EXPECT_GT(u["prompt_tokens"].get<int>(), 5);
        EXPECT_GT(u["completion_tokens"].get<int>(), 0);
        EXPECT_LE(u["completion_tokens"].get<int>(), 12);
        EXPECT_EQ(u["total_tokens"], u["prompt_tokens"].get<int>() + u["completion_tokens"].get<int>());
        EXPECT_TRUE(u["prompt_tokens_details"]["cached_tokens"].is_number_integer());

        body["stream_options"] = {{"include_usage", true}};
        Streamed s = read_chat_stream(stream("/v1/chat/completions", body), true);
        EXPECT_EQ(s.content, choice["message"]["content"].get<std::string>());
        EXPECT_EQ(s.reasoning, choice["message"].value("reasoning_content", ""));
        EXPECT_EQ(s.finish_reason, finish);
        ASSERT_TRUE(s.usage.is_object());
        EXPECT_EQ(s.usage["prompt_tokens"], u["prompt_tokens"]);
        EXPECT_EQ(s.usage["completion_tokens"], u["completion_tokens"]);
        // The second run found the first one's prompt in the prefix cache.
        EXPECT_GE(s.usage["prompt_tokens_details"]["cached_tokens"].get<int>(), 0);

        body.erase("stream_options");
        Streamed plain = read_chat_stream(stream("/v1/chat/completions", body), false);
        EXPECT_EQ(plain.content, s.content);
    }
}

TEST_F(OpenAiApi, ReasoningEffort) {
    // qwen3-tiny's template has a thinking switch: reasoning_effort none closes an empty
    // thinking block in the prompt (more prompt tokens), a level leaves the model to think.
    json body = chat_body("qwen3-tiny", user("Why?"), 16);
    body["reasoning_effort"] = "none";
    Reply r = http().post("/v1/chat/completions", body);
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_FALSE(r.j()["choices"][0]["message"].contains("reasoning_content")) << r.body;
    const int off_tokens = r.j()["usage"]["prompt_tokens"];
    body["reasoning_effort"] = "high";
    r = http().post("/v1/chat/completions", body);
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_LT(r.j()["usage"]["prompt_tokens"].get<int>(), off_tokens) << r.body;
    body.erase("reasoning_effort");
    body["reasoning"] = {{"effort", "low"}};
    EXPECT_EQ(http().post("/v1/chat/completions", body).status, 200);
    // A model with no thinking switch answers without thinking (clients send an effort
    // whatever the model).
    body["model"] = "llama3-tiny";
    r = http().post("/v1/chat/completions", body);
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_FALSE(r.j()["choices"][0]["message"].contains("reasoning_content")) << r.body;
}

TEST_F(OpenAiApi, MaxTokensAndStop) {
    // max_tokens: cut off with finish_reason length.
    Reply r = http().post("/v1/chat/completions", chat_body("llama3-tiny", user("Count."), 3));
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.j()["choices"][0]["finish_reason"], "length");
    EXPECT_EQ(r.j()["usage"]["completion_tokens"], 3);
    json body = chat_body("llama3-tiny", user("Count."), 0);
    body.erase("max_tokens");
    body["max_completion_tokens"] = 2;
    r = http().post("/v1/chat/completions", body);
    EXPECT_EQ(r.j()["usage"]["completion_tokens"], 2) << r.body;

    // stop: the text ends before the stop string (the stories model writes plain English).
    for (const char* path : {"/v1/completions", "/v1/chat/completions"}) {
        SCOPED_TRACE(path);
        const bool is_chat = std::string(path) == "/v1/chat/completions";
        json b = is_chat ? chat_body("stories", user("Once upon a time"), 24)
                         : json{{"model", "stories"}, {"prompt", "Once upon a time"}, {"temperature", 0}, {"max_tokens", 24}};
        auto text_of = [&](const Reply& rep) {
            const json c = rep.j()["choices"][0];
            return is_chat ? c["message"]["content"].get<std::string>() : c["text"].get<std::string>();
        };
        r = http().post(path, b);
        ASSERT_EQ(r.status, 200) << r.body;
        const std::string full = text_of(r);
        const size_t space = full.find(' ', full.size() / 2);
        ASSERT_NE(space, std::string::npos) << full;
        const std::string stop = full.substr(space, 3);
        b["stop"] = json::array({"zzzz", stop});
        r = http().post(path, b);
        ASSERT_EQ(r.status, 200) << r.body;
        EXPECT_EQ(text_of(r), full.substr(0, full.find(stop))) << "stop " << json(stop).dump();
        EXPECT_EQ(r.j()["choices"][0]["finish_reason"], "stop");
        b["stop"] = stop;  // a single string works too
        EXPECT_EQ(text_of(http().post(path, b)), full.substr(0, full.find(stop)));
    }
}

TEST_F(OpenAiApi, ResponseFormat) {
    // json_object: the grammar keeps the text JSON. Whether a random-weight model closes an
    // unbounded object within max_tokens is chance, so: every answer that ends is a JSON object,
    // one cut at the limit starts as one. (The bounded schema below must complete.)
    json body = chat_body("llama3-tiny", user("Give me JSON."), 300);
    body["temperature"] = 0.8;
    body["response_format"] = {{"type", "json_object"}};
    Reply r;
    for (int seed = 1; seed <= 3; ++seed) {
        body["seed"] = seed;
        r = http().post("/v1/chat/completions", body);
        ASSERT_EQ(r.status, 200) << r.body;
        const std::string content = r.j()["choices"][0]["message"]["content"];
        EXPECT_EQ(content.rfind("{", 0), 0u) << content;
        if (r.j()["choices"][0]["finish_reason"] == "stop") {
            EXPECT_TRUE(json::parse(content, nullptr, false).is_object()) << r.body;
        } else {
            EXPECT_EQ(r.j()["choices"][0]["finish_reason"], "length") << r.body;
            EXPECT_EQ(r.j()["usage"]["completion_tokens"], 300) << r.body;
        }
    }

    const chat::Json schema = chat::Json::parse(R"({"type":"object","properties":{
        "name":{"type":"string","maxLength":12},"age":{"type":"integer","minimum":0,"maximum":99}},
        "required":["name","age"],"additionalProperties":false})");
    body["response_format"] = {{"type", "json_schema"},
                               {"json_schema", {{"name", "person"}, {"strict", true}, {"schema", json::parse(schema.dump())}}}};
    for (const char* model : {"llama3-tiny", "qwen3-tiny"}) {
        SCOPED_TRACE(model);
        body["model"] = model;
        r = http().post("/v1/chat/completions", body);
        ASSERT_EQ(r.status, 200) << r.body;
        ASSERT_EQ(r.j()["choices"][0]["finish_reason"], "stop") << r.body;
        const chat::Json value =
            chat::Json::parse(r.j()["choices"][0]["message"]["content"].get<std::string>(), nullptr, false);
        ASSERT_FALSE(value.is_discarded()) << r.body;
        Status valid = chat::validate_json(schema, value);
        EXPECT_TRUE(valid.ok()) << valid.message() << ": " << value.dump();
    }
}

json weather_tools() {
    return json::array({{{"type", "function"},
                         {"function", {{"name", "get_weather"},
                                       {"description", "The weather in a city"},
                                       {"parameters", {{"type", "object"},
                                                       // an enum: the random-weight model could write a
                                                       // free string forever
                                                       {"properties", {{"city", {{"type", "string"}, {"enum", {"Paris", "Rome"}}}}}},
                                                       {"required", {"city"}},
                                                       {"additionalProperties", false}}}}}}});
}

TEST_F(OpenAiApi, ToolChoiceRequiredGivesToolCalls) {
    json body = chat_body("qwen3-tiny", user("Weather in Paris?"), 200);
    body["tools"] = weather_tools();
    body["tool_choice"] = "required";
    body["reasoning_effort"] = "none";
    Reply r = http().post("/v1/chat/completions", body);
    ASSERT_EQ(r.status, 200) << r.body;
    const json choice = r.j()["choices"][0];
    EXPECT_EQ(choice["finish_reason"], "tool_calls") << r.body;
    ASSERT_TRUE(choice["message"].contains("tool_calls")) << r.body;
    const json call = choice["message"]["tool_calls"][0];
    EXPECT_EQ(call["type"], "function");
    EXPECT_EQ(call["id"].get<std::string>().rfind("call_", 0), 0u);
    EXPECT_EQ(call["function"]["name"], "get_weather");
    ASSERT_TRUE(call["function"]["arguments"].is_string());
    json args = json::parse(call["function"]["arguments"].get<std::string>(), nullptr, false);
    EXPECT_TRUE(args.is_object()) << call.dump();
    // The random-weight model writes on after the call (hermes allows text between calls), so
    // content may be text; a reply of calls alone has content null (adapter tests).
    EXPECT_TRUE(choice["message"]["content"].is_null() || choice["message"]["content"].is_string());

    // Streamed: the call comes whole in one delta with its index, id and type.
    Streamed s = read_chat_stream(stream("/v1/chat/completions", body), false);
    EXPECT_EQ(s.finish_reason, "tool_calls");
    ASSERT_EQ(s.tool_calls.size(), choice["message"]["tool_calls"].size());
    EXPECT_EQ(s.tool_calls[0]["index"], 0);
    EXPECT_EQ(s.tool_calls[0]["type"], "function");
    EXPECT_EQ(s.tool_calls[0]["function"]["name"], "get_weather");
    EXPECT_EQ(s.tool_calls[0]["function"]["arguments"], call["function"]["arguments"]);

    // The client sends the call back with its result: the conversation goes on.
    json next = chat_body("qwen3-tiny", user("Weather in Paris?"), 8);
    next["tools"] = weather_tools();
    next["messages"].push_back({{"role", "assistant"}, {"content", nullptr}, {"tool_calls", json::array({call})}});
    next["messages"].push_back({{"role", "tool"}, {"tool_call_id", call["id"]}, {"content", "Sunny, 21 C"}});
    r = http().post("/v1/chat/completions", next);
    EXPECT_EQ(r.status, 200) << r.body;
    // A named tool_choice is a required call of that tool.
    body["tool_choice"] = {{"type", "function"}, {"function", {{"name", "get_weather"}}}};
    r = http().post("/v1/chat/completions", body);
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.j()["choices"][0]["finish_reason"], "tool_calls") << r.body;
}

TEST_F(OpenAiApi, Completions) {
    json body = {{"model", "stories"}, {"prompt", "Once upon a time"}, {"temperature", 0}, {"max_tokens", 10}};
    Reply r = http().post("/v1/completions", body);
    ASSERT_EQ(r.status, 200) << r.body;
    json j = r.j();
    EXPECT_EQ(j["id"].get<std::string>().rfind("cmpl-", 0), 0u);
    EXPECT_EQ(j["object"], "text_completion");
    EXPECT_EQ(j["model"], "stories");
    const std::string text = j["choices"][0]["text"];
    EXPECT_FALSE(text.empty());
    EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
    EXPECT_TRUE(j["choices"][0]["logprobs"].is_null());
    EXPECT_EQ(j["usage"]["completion_tokens"], 10);

    body["stream_options"] = {{"include_usage", true}};
    Sse s = stream("/v1/completions", body);
    ASSERT_EQ(s.status, 200) << s.body;
    ASSERT_FALSE(s.events.empty());
    EXPECT_EQ(s.events.back(), "[DONE]");
    std::string streamed, finish;
    json usage;
    for (const json& c : s.chunks()) {
        EXPECT_EQ(c["object"], "text_completion");
        if (c["choices"].empty()) {
            usage = c["usage"];
            continue;
        }
        EXPECT_TRUE(c["usage"].is_null());
        streamed += c["choices"][0]["text"].get<std::string>();
        if (!c["choices"][0]["finish_reason"].is_null()) finish = c["choices"][0]["finish_reason"];
    }
    EXPECT_EQ(streamed, text);
    EXPECT_EQ(finish, "length");
    EXPECT_EQ(usage["completion_tokens"], 10);

    // OpenAI's default of 16 tokens.
    r = http().post("/v1/completions", {{"model", "stories"}, {"prompt", "Once upon a time"}, {"temperature", 0}});
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.j()["usage"]["completion_tokens"], 16) << r.body;
    // A prompt given as an array of one string.
    body.erase("stream_options");
    body["prompt"] = json::array({"Once upon a time"});
    r = http().post("/v1/completions", body);
    EXPECT_EQ(r.j()["choices"][0]["text"], text);
    // stories-short's params layer says num_predict 3; max_tokens wins.
    r = http().post("/v1/completions", {{"model", "stories-short"}, {"prompt", "Tom"}, {"max_tokens", 5}});
    EXPECT_EQ(r.j()["usage"]["completion_tokens"], 5) << r.body;
    expect_error(http().post("/v1/completions", {{"model", "stories"}, {"prompt", "x"}, {"echo", true}}), 400, "echo");
    expect_error(http().post("/v1/completions", {{"model", "stories"}, {"prompt", json::array({1, 2})}}), 400, "token prompts");
}

// Needs the engine's logprobs (runtime::Request::logprobs).
TEST_F(OpenAiApi, Logprobs) {
    json body = chat_body("llama3-tiny", user("Hi"), 4);
    body["logprobs"] = true;
    body["top_logprobs"] = 2;
    Reply r = http().post("/v1/chat/completions", body);
    ASSERT_EQ(r.status, 200) << r.body;
    const json choice = r.j()["choices"][0];
    ASSERT_TRUE(choice["logprobs"].is_object()) << r.body;
    const json& content = choice["logprobs"]["content"];
    ASSERT_EQ(content.size(), 4u) << r.body;
    for (const auto& t : content) {
        EXPECT_TRUE(t["token"].is_string());
        EXPECT_LE(t["logprob"].get<double>(), 0.0);
        EXPECT_TRUE(t["bytes"].is_array());
        ASSERT_EQ(t["top_logprobs"].size(), 2u) << t.dump();
        EXPECT_GE(t["top_logprobs"][0]["logprob"].get<double>(), t["top_logprobs"][1]["logprob"].get<double>());
        // Greedy: the sampled token is the most likely one.
        EXPECT_EQ(t["top_logprobs"][0]["bytes"], t["bytes"]);
    }
    Streamed s = read_chat_stream(stream("/v1/chat/completions", body), false);
    EXPECT_EQ(s.n_logprobs, 4);

    json legacy = {{"model", "stories"}, {"prompt", "Once upon a time"}, {"temperature", 0}, {"max_tokens", 5}, {"logprobs", 3}};
    r = http().post("/v1/completions", legacy);
    ASSERT_EQ(r.status, 200) << r.body;
    const json lp = r.j()["choices"][0]["logprobs"];
    ASSERT_TRUE(lp.is_object()) << r.body;
    ASSERT_EQ(lp["tokens"].size(), 5u) << r.body;
    EXPECT_EQ(lp["token_logprobs"].size(), 5u);
    EXPECT_EQ(lp["top_logprobs"].size(), 5u);
    EXPECT_EQ(lp["text_offset"][0], 0);
    EXPECT_GE(lp["top_logprobs"][0].size(), 3u);
    std::string joined;
    for (const auto& t : lp["tokens"]) joined += t.get<std::string>();
    EXPECT_EQ(joined, r.j()["choices"][0]["text"]);
}

TEST_F(OpenAiApi, Embeddings) {
    json body = {{"model", "bge"}, {"input", json::array({"hello world", "a second text"})}};
    Reply r = http().post("/v1/embeddings", body);
    ASSERT_EQ(r.status, 200) << r.body;
    json j = r.j();
    EXPECT_EQ(j["object"], "list");
    EXPECT_EQ(j["model"], "bge");
    ASSERT_EQ(j["data"].size(), 2u);
    for (int i = 0; i < 2; ++i) {
        EXPECT_EQ(j["data"][i]["object"], "embedding");
        EXPECT_EQ(j["data"][i]["index"], i);
    }
    double norm = 0;
    for (double x : j["data"][0]["embedding"]) norm += x * x;
    EXPECT_NEAR(norm, 1.0, 1e-4);
    EXPECT_GT(j["usage"]["prompt_tokens"].get<int>(), 4);
    EXPECT_EQ(j["usage"]["total_tokens"], j["usage"]["prompt_tokens"]);

    body["encoding_format"] = "base64";
    r = http().post("/v1/embeddings", body);
    ASSERT_EQ(r.status, 200) << r.body;
    for (int i = 0; i < 2; ++i) {
        const std::vector<float> decoded = from_base64(r.j()["data"][i]["embedding"].get<std::string>());
        ASSERT_EQ(decoded.size(), j["data"][i]["embedding"].size());
        for (size_t k = 0; k < decoded.size(); ++k) EXPECT_EQ(decoded[k], j["data"][i]["embedding"][k].get<float>()) << k;
    }

    r = http().post("/v1/embeddings", {{"model", "bge"}, {"input", "one"}, {"dimensions", 8}});
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.j()["data"][0]["embedding"].size(), 8u);
    expect_error(http().post("/v1/embeddings", {{"model", "bge"}, {"input", json::array({1, 2})}}), 400, "token inputs");
    expect_error(http().post("/v1/embeddings", {{"model", "bge"}, {"input", 5}}), 400, "\"input\"");
    Reply missing = http().post("/v1/embeddings", {{"model", "nope"}, {"input", "x"}});
    expect_error(missing, 404, "not found", "not_found_error");
    EXPECT_EQ(missing.j()["error"]["code"], "model_not_found");
    expect_error(http().post("/v1/embeddings", {{"model", "stories"}, {"input", "x"}}), 400, "does not support embeddings");
}

TEST_F(OpenAiApi, Models) {
    Reply r = http().get("/v1/models");
    ASSERT_EQ(r.status, 200) << r.body;
    json j = r.j();
    EXPECT_EQ(j["object"], "list");
    ASSERT_EQ(j["data"].size(), 5u) << r.body;
    std::vector<std::string> tag_names;  // ids are the names /api/tags lists
    const json tags = http().get("/api/tags").j();
    for (const auto& t : tags["models"]) tag_names.push_back(t["name"]);
    bool seen = false;
    for (const auto& m : j["data"]) {
        EXPECT_EQ(m["object"], "model");
        EXPECT_EQ(m["owned_by"], "library");
        EXPECT_GT(m["created"].get<int64_t>(), 1600000000);
        EXPECT_NE(std::find(tag_names.begin(), tag_names.end(), m["id"].get<std::string>()), tag_names.end()) << m.dump();
        seen = seen || m["id"] == "llama3-tiny:latest";
    }
    EXPECT_TRUE(seen);
    r = http().get("/v1/models/llama3-tiny:latest");
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.j()["id"], "llama3-tiny:latest");
    EXPECT_EQ(r.j()["object"], "model");
    EXPECT_EQ(http().get("/v1/models/llama3-tiny").j()["id"], "llama3-tiny");
    for (const char* missing : {"/v1/models/nope", "/v1/models/someone/nope:v1", "/v1/models/bad%20name!"}) {
        r = http().get(missing);
        expect_error(r, 404, "not found", "not_found_error");
        EXPECT_EQ(r.j()["error"]["code"], "model_not_found") << missing;
    }
}

TEST_F(OpenAiApi, RequestErrors) {
    Reply r = http().request("POST", "/v1/chat/completions", "{not json");
    expect_error(r, 400, "invalid JSON");
    expect_error(http().request("POST", "/v1/chat/completions", ""), 400, "missing request body");
    expect_error(http().post("/v1/chat/completions", {{"model", "llama3-tiny"}, {"messages", user("hi")}, {"temperature", "hot"}}),
                 400, "temperature");
    expect_error(http().post("/v1/chat/completions", {{"model", "llama3-tiny"}, {"messages", "hi"}}), 400, "\"messages\"");
    r = http().post("/v1/chat/completions", {{"model", "nope"}, {"messages", user("hi")}});
    expect_error(r, 404, "model \"nope\" not found", "not_found_error");
    EXPECT_EQ(r.j()["error"]["code"], "model_not_found");
    r = http().post("/v1/chat/completions", {{"model", "nope"}, {"messages", user("hi")}, {"stream", true}});
    expect_error(r, 404, "not found", "not_found_error");  // before the stream starts: a plain error
    expect_error(http().post("/v1/completions", {{"model", "nope"}, {"prompt", "x"}}), 404, "not found", "not_found_error");
    expect_error(http().post("/v1/chat/completions", {{"model", "llama3-tiny"}, {"messages", user("hi")}, {"n", 2}}), 400,
                 "n must be 1");
    json image = {{"model", "llama3-tiny"},
                  {"messages", json::array({{{"role", "user"},
                                             {"content", json::array({{{"type", "text"}, {"text", "What is this?"}},
                                                                      {{"type", "image_url"},
                                                                       {"image_url", {{"url", "data:image/png;base64,AAAA"}}}}})}}})}};
    expect_error(http().post("/v1/chat/completions", image), 400, "images are not supported");
    expect_error(http().post("/v1/chat/completions", {{"model", "bge"}, {"messages", user("hi")}}), 400, "does not support chat");
    // Sampling values out of range are refused by the service, named.
    expect_error(http().post("/v1/chat/completions", {{"model", "llama3-tiny"}, {"messages", user("hi")}, {"top_p", 5}}), 400,
                 "top_p");

    // A prompt longer than the context: 400 context_length_exceeded, streamed or not.
    std::string long_text;
    for (int i = 0; i < 100; ++i) long_text += "Once upon a time there was a cat. ";
    json too_long = {{"model", "stories"}, {"messages", user(long_text)}, {"options", {{"num_ctx", 64}}}, {"max_tokens", 4}};
    r = http().post("/v1/chat/completions", too_long);
    expect_error(r, 400, "num_ctx");
    EXPECT_EQ(r.j()["error"]["code"], "context_length_exceeded");
    too_long["stream"] = true;
    Sse s = sse_post(server_->port(), "/v1/chat/completions", too_long);
    EXPECT_EQ(s.status, 400);
    EXPECT_NE(s.content_type.find("application/json"), std::string::npos);
    EXPECT_EQ(json::parse(s.body, nullptr, false)["error"]["code"], "context_length_exceeded") << s.body;

    r = http().get("/v1/nope");
    expect_error(r, 404, "404 page not found", "not_found_error");
}

TEST_F(OpenAiApi, DisconnectLeavesServerIdle) {
    int events = 0;
    json body = {{"model", "stories"}, {"messages", user("A long story")}, {"max_tokens", 1500}, {"seed", 1}};
    stream("/v1/chat/completions", body, [&](const std::string&) { return ++events < 3; });
    EXPECT_EQ(events, 3);
    Http h = http();
    expect_idle(h, "stories:latest");
}

TEST_F(OpenAiApi, MetricsNameTheEndpoints) {
    http().post("/v1/completions", {{"model", "stories"}, {"prompt", "Hi"}, {"max_tokens", 2}});
    http().get("/v1/models/nope");
    const std::string m = http().get("/metrics").body;
    EXPECT_GE(metric(m, "hearth_requests_total{endpoint=\"/v1/completions\",status=\"200\"}"), 1);
    EXPECT_GE(metric(m, "hearth_requests_total{endpoint=\"/v1/models/{id}\",status=\"404\"}"), 1);
}

}  // namespace
}  // namespace hearth::server
