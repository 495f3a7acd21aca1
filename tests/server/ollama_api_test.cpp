// The Ollama API end to end: a real server in this process on a free loopback port, over a
// temporary store holding the shared test models, driven with raw HTTP.
#include <atomic>
#include <cmath>
#include <future>
#include <thread>

#include "server_test_util.h"

namespace hearth::server {
namespace {

using namespace test_util;

class OllamaApi : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        store_ = new TempStore("api");
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
TempStore* OllamaApi::store_ = nullptr;
Server* OllamaApi::server_ = nullptr;

json greedy(json body, int n) {
    body["options"] = {{"temperature", 0}, {"num_predict", n}};
    return body;
}

TEST_F(OllamaApi, RootVersionAndHead) {
    Reply r = http().get("/");
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body, "Ollama is running");  // clients and health checks match the text
    EXPECT_EQ(http().request("HEAD", "/").status, 200);
    r = http().get("/api/version");
    ASSERT_EQ(r.status, 200);
    EXPECT_TRUE(r.j()["version"].is_string());
    EXPECT_EQ(http().get("/api/nope").status, 404);
    EXPECT_TRUE(http().get("/api/nope").j().contains("error"));
}

TEST_F(OllamaApi, Tags) {
    Reply r = http().get("/api/tags");
    ASSERT_EQ(r.status, 200) << r.body;
    json models = r.j()["models"];
    ASSERT_EQ(models.size(), 5u) << r.body;
    bool seen = false;
    for (const auto& m : models) {
        EXPECT_TRUE(m["modified_at"].is_string());
        EXPECT_EQ(m["digest"].get<std::string>().size(), 64u);
        EXPECT_EQ(m["name"], m["model"]);
        if (m["name"] == "llama3-tiny:latest") {
            seen = true;
            EXPECT_EQ(m["details"]["format"], "gguf");
            EXPECT_EQ(m["details"]["family"], "llama");
            EXPECT_EQ(m["details"]["families"], json::array({"llama"}));
            EXPECT_EQ(m["details"]["quantization_level"], "Q8_0");
            EXPECT_FALSE(m["details"]["parameter_size"].get<std::string>().empty());
        }
    }
    EXPECT_TRUE(seen);
}

TEST_F(OllamaApi, Show) {
    Reply r = http().post("/api/show", {{"model", "llama3-tiny"}});
    ASSERT_EQ(r.status, 200) << r.body;
    json j = r.j();
    EXPECT_NE(j["template"].get<std::string>().find("start_header_id"), std::string::npos);
    EXPECT_EQ(j["model_info"]["general.architecture"], "llama");
    EXPECT_TRUE(j["model_info"]["tokenizer.ggml.tokens"].is_null());
    EXPECT_GT(j["model_info"]["general.parameter_count"].get<int64_t>(), 0);
    EXPECT_EQ(j["capabilities"][0], "completion");
    EXPECT_NE(j["modelfile"].get<std::string>().find("FROM "), std::string::npos);
    r = http().post("/api/show", {{"model", "stories-short"}});
    ASSERT_EQ(r.status, 200);
    EXPECT_NE(r.j()["parameters"].get<std::string>().find("num_predict"), std::string::npos);
    EXPECT_EQ(r.j()["system"], "Once upon a time");
    r = http().post("/api/show", {{"model", "bge"}, {"verbose", true}});
    ASSERT_EQ(r.status, 200);
    EXPECT_EQ(r.j()["capabilities"], json::array({"embedding"}));
    EXPECT_TRUE(r.j()["model_info"]["tokenizer.ggml.tokens"].is_array());
    r = http().post("/api/show", {{"model", "missing"}});
    EXPECT_EQ(r.status, 404);
    EXPECT_EQ(r.j()["error"], "model 'missing' not found");
}

TEST_F(OllamaApi, GenerateRawAndStreamed) {
    json body = greedy({{"model", "stories"}, {"prompt", "Once upon a time"}, {"stream", false}}, 12);
    Reply r = http().post("/api/generate", body);
    ASSERT_EQ(r.status, 200) << r.body;
    json j = r.j();
    EXPECT_EQ(j["model"], "stories");  // as the request named it
    EXPECT_TRUE(j["done"].get<bool>());
    EXPECT_EQ(j["done_reason"], "length");
    EXPECT_EQ(j["eval_count"], 12);
    EXPECT_GT(j["prompt_eval_count"].get<int>(), 3);
    EXPECT_GE(j["prompt_cache_count"].get<int>(), 0);
    EXPECT_GT(j["total_duration"].get<int64_t>(), 0);
    EXPECT_GE(j["load_duration"].get<int64_t>(), 0);
    EXPECT_GT(j["eval_duration"].get<int64_t>(), 0);
    const std::string text = j["response"];
    EXPECT_FALSE(text.empty());
    ASSERT_TRUE(j["context"].is_array());
    EXPECT_EQ(j["context"].size(), (size_t)(j["prompt_eval_count"].get<int>() + 12));

    // Streamed: NDJSON chunks whose text adds up to the same greedy reply.
    body["stream"] = true;
    std::string streamed;
    json last;
    int chunks = 0;
    const int status = http().stream("/api/generate", body, [&](const json& l) {
        if (!l["done"].get<bool>()) {
            ++chunks;
            streamed += l["response"].get<std::string>();
            EXPECT_TRUE(l["created_at"].is_string());
        }
        last = l;
        return true;
    });
    EXPECT_EQ(status, 200);
    EXPECT_GT(chunks, 1);
    EXPECT_EQ(streamed, text);
    EXPECT_TRUE(last["done"].get<bool>());
    EXPECT_EQ(last["response"], "");
    EXPECT_EQ(last["eval_count"], 12);
    // The second run reused the first one's prompt blocks? Only whole blocks: just check the field.
    EXPECT_TRUE(last.contains("prompt_cache_count"));

    // The context array continues a conversation.
    json next = greedy({{"model", "stories"}, {"prompt", " The end."}, {"stream", false}, {"context", j["context"]}}, 4);
    r = http().post("/api/generate", next);
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_GT(r.j()["prompt_eval_count"].get<int>(), j["context"].size());

    // raw: no context comes back.
    json raw = greedy({{"model", "stories"}, {"prompt", "Lily"}, {"raw", true}, {"stream", false}}, 3);
    r = http().post("/api/generate", raw);
    ASSERT_EQ(r.status, 200);
    EXPECT_FALSE(r.j().contains("context"));
}

TEST_F(OllamaApi, ModelParamsAndSystemApply) {
    // stories-short's params layer says num_predict 3.
    Reply r = http().post("/api/generate", {{"model", "stories-short"}, {"prompt", "Tom"}, {"stream", false}});
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.j()["eval_count"], 3);
    // The request's options win.
    r = http().post("/api/generate",
                    {{"model", "stories-short"}, {"prompt", "Tom"}, {"stream", false}, {"options", {{"num_predict", 5}}}});
    EXPECT_EQ(r.j()["eval_count"], 5);
}

TEST_F(OllamaApi, ChatWithTemplate) {
    json body = greedy({{"model", "llama3-tiny"},
                        {"messages", json::array({{{"role", "system"}, {"content", "Be brief."}},
                                                  {{"role", "user"}, {"content", "Hello!"}}})},
                        {"stream", false}},
                       6);
    Reply r = http().post("/api/chat", body);
    ASSERT_EQ(r.status, 200) << r.body;
    json j = r.j();
    EXPECT_EQ(j["message"]["role"], "assistant");
    EXPECT_TRUE(j["message"]["content"].is_string());
    EXPECT_TRUE(j["done"].get<bool>());
    EXPECT_FALSE(j.contains("context"));
    // The template adds the header tokens: more prompt tokens than the words.
    EXPECT_GT(j["prompt_eval_count"].get<int>(), 10);

    body["stream"] = true;
    std::string streamed;
    json last;
    EXPECT_EQ(http().stream("/api/chat", body, [&](const json& l) {
        if (!l["done"].get<bool>()) streamed += l["message"]["content"].get<std::string>();
        last = l;
        return true;
    }), 200);
    EXPECT_EQ(streamed, j["message"]["content"].get<std::string>());
    EXPECT_EQ(last["done_reason"], j["done_reason"]);

    // Tools and think are accepted (the tiny model's reply is random; the shapes are checked).
    body["stream"] = false;
    body["tools"] = json::array({{{"type", "function"},
                                  {"function", {{"name", "get_weather"},
                                                {"description", "Weather"},
                                                {"parameters", {{"type", "object"}, {"properties", {{"city", {{"type", "string"}}}}}}}}}}});
    body["messages"].push_back({{"role", "assistant"}, {"content", ""},
                                {"tool_calls", json::array({{{"function", {{"name", "get_weather"}, {"arguments", {{"city", "Paris"}}}}}}})}});
    body["messages"].push_back({{"role", "tool"}, {"content", "sunny"}, {"tool_name", "get_weather"}});
    r = http().post("/api/chat", body);
    EXPECT_EQ(r.status, 200) << r.body;
    json think = greedy({{"model", "qwen3-tiny"}, {"messages", json::array({{{"role", "user"}, {"content", "Why?"}}})},
                         {"think", true}, {"stream", false}}, 8);
    r = http().post("/api/chat", think);
    EXPECT_EQ(r.status, 200) << r.body;
    think["think"] = "high";
    EXPECT_EQ(http().post("/api/chat", think).status, 200);
    think["think"] = 3;
    EXPECT_EQ(http().post("/api/chat", think).status, 400);
    // A model whose template has no thinking switch says so.
    think["model"] = "llama3-tiny";
    think["think"] = true;
    r = http().post("/api/chat", think);
    EXPECT_EQ(r.status, 400);
    EXPECT_NE(r.j().value("error", "").find("does not support thinking"), std::string::npos) << r.body;
}

TEST_F(OllamaApi, Embeddings) {
    Reply r = http().post("/api/embed", {{"model", "bge"}, {"input", json::array({"hello world", "a second text"})}});
    ASSERT_EQ(r.status, 200) << r.body;
    json j = r.j();
    ASSERT_EQ(j["embeddings"].size(), 2u);
    double norm = 0;
    for (double x : j["embeddings"][0]) norm += x * x;
    EXPECT_NEAR(norm, 1.0, 1e-4);
    EXPECT_GT(j["prompt_eval_count"].get<int>(), 4);
    EXPECT_EQ(j["model"], "bge");

    r = http().post("/api/embed", {{"model", "bge"}, {"input", "one"}, {"dimensions", 8}});
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.j()["embeddings"][0].size(), 8u);

    r = http().post("/api/embeddings", {{"model", "bge"}, {"prompt", "hello world"}});
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.j()["embedding"].size(), 16u);

    // Too long without truncation: an error naming the sizes.
    std::string long_text;
    for (int i = 0; i < 600; ++i) long_text += "word ";
    r = http().post("/api/embed", {{"model", "bge"}, {"input", long_text}, {"truncate", false}});
    EXPECT_EQ(r.status, 400) << r.body;
    r = http().post("/api/embed", {{"model", "bge"}, {"input", long_text}});
    EXPECT_EQ(r.status, 200) << r.body;

    EXPECT_EQ(http().post("/api/embed", {{"model", "bge"}, {"input", 5}}).status, 400);
    r = http().post("/api/generate", {{"model", "bge"}, {"prompt", "hi"}});
    EXPECT_EQ(r.status, 400);
    EXPECT_NE(r.j()["error"].get<std::string>().find("does not support generate"), std::string::npos);
    r = http().post("/api/embed", {{"model", "stories"}, {"input", "hi"}});
    EXPECT_EQ(r.status, 400);
    EXPECT_NE(r.j()["error"].get<std::string>().find("does not support embeddings"), std::string::npos);
}

TEST_F(OllamaApi, RequestErrors) {
    auto err = [](const Reply& r) { return r.j().value("error", std::string()); };
    Reply r = http().request("POST", "/api/generate", "{not json");
    EXPECT_EQ(r.status, 400);
    EXPECT_NE(err(r).find("invalid JSON"), std::string::npos);
    r = http().request("POST", "/api/generate", "");
    EXPECT_EQ(r.status, 400);
    r = http().request("POST", "/api/generate", "[1,2]");
    EXPECT_EQ(r.status, 400);
    r = http().post("/api/generate", {{"prompt", "hi"}});
    EXPECT_EQ(r.status, 400);
    EXPECT_EQ(err(r), "model is required");
    r = http().post("/api/generate", {{"model", "stories"}, {"prompt", 5}});
    EXPECT_EQ(r.status, 400);
    EXPECT_NE(err(r).find("\"prompt\""), std::string::npos);
    r = http().post("/api/generate", {{"model", "stories"}, {"prompt", "x"}, {"stream", "yes"}});
    EXPECT_EQ(r.status, 400);
    EXPECT_NE(err(r).find("\"stream\""), std::string::npos);
    r = http().post("/api/generate", {{"model", "nope"}, {"prompt", "hi"}});
    EXPECT_EQ(r.status, 404);
    EXPECT_EQ(err(r), "model 'nope' not found");
    r = http().post("/api/generate", {{"model", "bad name!"}, {"prompt", "hi"}});
    EXPECT_EQ(r.status, 400);
    r = http().post("/api/generate", {{"model", "stories"}, {"prompt", "hi"}, {"options", {{"temperature", "hot"}}}});
    EXPECT_EQ(r.status, 400);
    EXPECT_NE(err(r).find("temperature"), std::string::npos);
    r = http().post("/api/generate", {{"model", "stories"}, {"prompt", "hi"}, {"options", {{"top_p", 5}}}});
    EXPECT_EQ(r.status, 400);
    EXPECT_NE(err(r).find("top_p"), std::string::npos);
    r = http().post("/api/generate", {{"model", "stories"}, {"prompt", "hi"}, {"options", {{"stop", "x"}}}});
    EXPECT_EQ(r.status, 400);
    // Unknown options are ignored, as Ollama does.
    r = http().post("/api/generate", greedy({{"model", "stories"}, {"prompt", "hi"}, {"stream", false}}, 2));
    EXPECT_EQ(r.status, 200);
    json unknown = {{"model", "stories"}, {"prompt", "hi"}, {"stream", false}, {"options", {{"num_predict", 2}, {"bogus", 1}}}};
    EXPECT_EQ(http().post("/api/generate", unknown).status, 200);
    r = http().post("/api/generate", {{"model", "stories"}, {"prompt", "hi"}, {"images", json::array({"aGVsbG8="})}});
    EXPECT_EQ(r.status, 400);
    EXPECT_NE(err(r).find("images"), std::string::npos);
    r = http().post("/api/generate", {{"model", "stories"}, {"prompt", "hi"}, {"format", "xml"}});
    EXPECT_EQ(r.status, 400);
    EXPECT_NE(err(r).find("format"), std::string::npos);
    r = http().post("/api/generate", {{"model", "stories"}, {"prompt", "hi"}, {"format", {{"type", "object"}, {"not", {{"type", "string"}}}}}});
    EXPECT_EQ(r.status, 400);  // a schema keyword the grammar cannot honour is refused, not ignored
    EXPECT_NE(err(r).find("not"), std::string::npos);
    r = http().post("/api/generate", {{"model", "stories"}, {"prompt", "hi"}, {"suffix", "end"}});
    EXPECT_EQ(r.status, 400);
    EXPECT_NE(err(r).find("insert"), std::string::npos);
    r = http().post("/api/generate", {{"model", "stories"}, {"prompt", "hi"}, {"keep_alive", "soon"}});
    EXPECT_EQ(r.status, 400);
    EXPECT_NE(err(r).find("keep_alive"), std::string::npos);
    r = http().post("/api/chat", {{"model", "llama3-tiny"}, {"messages", json::array({{{"role", "robot"}, {"content", "x"}}})}});
    EXPECT_EQ(r.status, 400);
    EXPECT_NE(err(r).find("messages[0].role"), std::string::npos);

    // A prompt longer than the context: 400 naming num_ctx, unless truncate.
    std::string long_prompt;
    for (int i = 0; i < 100; ++i) long_prompt += "Once upon a time there was a cat. ";
    json too_long = {{"model", "stories"}, {"prompt", long_prompt}, {"stream", false},
                     {"options", {{"num_ctx", 64}, {"num_predict", 4}, {"temperature", 0}}}};
    r = http().post("/api/generate", too_long);
    EXPECT_EQ(r.status, 400) << r.body;
    EXPECT_NE(err(r).find("num_ctx"), std::string::npos);
    too_long["stream"] = true;  // streamed too: the error comes before the stream starts
    EXPECT_EQ(http().post("/api/generate", too_long).status, 400);
    too_long["stream"] = false;
    too_long["truncate"] = true;
    r = http().post("/api/generate", too_long);
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_GT(r.j()["prompt_truncated_count"].get<int>(), 0);
    EXPECT_LT(r.j()["prompt_eval_count"].get<int>(), 64);
}

TEST_F(OllamaApi, FormatConstrainsOutput) {
    json schema = {{"type", "object"},
                   {"properties", {{"name", {{"type", "string"}, {"maxLength", 12}}}, {"age", {{"type", "integer"}, {"minimum", 0}, {"maximum", 99}}}}},
                   {"required", {"name", "age"}}};
    for (const char* model : {"stories", "llama3-tiny"}) {
        json body = {{"model", model}, {"prompt", "Tell me about Tom."}, {"stream", false}, {"format", schema},
                     {"options", {{"num_predict", 200}, {"seed", 3}}}};
        Reply r = http().post("/api/generate", body);
        ASSERT_EQ(r.status, 200) << r.body;
        ASSERT_EQ(r.j()["done_reason"], "stop") << r.body;  // the grammar completed
        json out = json::parse(r.j()["response"].get<std::string>(), nullptr, false);
        ASSERT_TRUE(out.is_object()) << r.j()["response"];
        EXPECT_TRUE(out["name"].is_string());
        EXPECT_TRUE(out["age"].is_number_integer());
    }
    // A thinking model thinks freely first; the answer after </think> is the JSON.
    json chat = {{"model", "qwen3-tiny"}, {"messages", json::array({{{"role", "user"}, {"content", "JSON please"}}})},
                 {"think", true}, {"format", "json"}, {"stream", false}, {"options", {{"num_predict", 300}, {"seed", 5}}}};
    Reply r = http().post("/api/chat", chat);
    EXPECT_EQ(r.status, 200) << r.body;
}

TEST_F(OllamaApi, ToolCallsComeBackParsed) {
    // The tiny model's weights are random, so a format schema makes it write the Llama 3 JSON
    // tool-call form; the chat format's parser must return it as a tool call, not as content.
    json tools = json::array({{{"type", "function"},
                               {"function", {{"name", "get_weather"},
                                             {"parameters", {{"type", "object"},
                                                             {"properties", {{"city", {{"type", "string"}}}}},
                                                             {"required", {"city"}}}}}}}});
    json call_schema = {{"type", "object"},
                        {"properties", {{"name", {{"const", "get_weather"}}},
                                        {"parameters", {{"type", "object"},
                                                        {"properties", {{"city", {{"const", "Paris"}}}}},
                                                        {"required", {"city"}},
                                                        {"additionalProperties", false}}}}},
                        {"required", {"name", "parameters"}},
                        {"additionalProperties", false}};
    json body = {{"model", "llama3-tiny"},
                 {"messages", json::array({{{"role", "user"}, {"content", "Weather in Paris?"}}})},
                 {"tools", tools}, {"format", call_schema}, {"stream", false},
                 {"options", {{"num_predict", 1000}, {"temperature", 0}}}};
    Reply r = http().post("/api/chat", body);
    ASSERT_EQ(r.status, 200) << r.body;
    json msg = r.j()["message"];
    ASSERT_TRUE(msg.contains("tool_calls")) << r.body;
    EXPECT_EQ(msg["tool_calls"][0]["function"]["name"], "get_weather");
    EXPECT_EQ(msg["tool_calls"][0]["function"]["arguments"], json({{"city", "Paris"}}));
    EXPECT_EQ(msg["content"], "");
    // Streamed: the call arrives whole in one chunk.
    body["stream"] = true;
    int calls = 0;
    EXPECT_EQ(http().stream("/api/chat", body, [&](const json& l) {
        if (l["message"].contains("tool_calls")) calls += (int)l["message"]["tool_calls"].size();
        return true;
    }), 200);
    EXPECT_EQ(calls, 1);
}

TEST_F(OllamaApi, LoadUnloadAndPs) {
    Reply r = http().post("/api/generate", {{"model", "stories"}, {"keep_alive", "10m"}});
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.j()["done_reason"], "load");
    EXPECT_TRUE(r.j()["done"].get<bool>());
    r = http().get("/api/ps");
    ASSERT_EQ(r.status, 200);
    bool listed = false;
    const json ps = r.j();
    for (const auto& m : ps["models"])
        if (m["name"] == "stories:latest") {
            listed = true;
            EXPECT_GT(m["size"].get<int64_t>(), 0);
            EXPECT_EQ(m["context_length"], 2048);  // 4096 capped by the model's training context
            EXPECT_TRUE(m["expires_at"].is_string());
            EXPECT_EQ(m["details"]["family"], "llama");
        }
    EXPECT_TRUE(listed) << r.body;
    r = http().post("/api/generate", {{"model", "stories"}, {"keep_alive", 0}});
    ASSERT_EQ(r.status, 200);
    EXPECT_EQ(r.j()["done_reason"], "unload");
    const json after = http().get("/api/ps").j();
    for (const auto& m : after["models"]) EXPECT_NE(m["name"], "stories:latest");
    r = http().post("/api/chat", {{"model", "llama3-tiny"}, {"messages", json::array()}});
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.j()["done_reason"], "load");
    EXPECT_EQ(r.j()["message"]["role"], "assistant");
    r = http().post("/api/chat", {{"model", "llama3-tiny"}, {"keep_alive", 0}});
    EXPECT_EQ(r.j()["done_reason"], "unload");
}

TEST_F(OllamaApi, TokenizeDetokenize) {
    Reply r = http().post("/api/tokenize", {{"model", "stories"}, {"text", "Once upon a time"}});
    ASSERT_EQ(r.status, 200) << r.body;
    json tokens = r.j()["tokens"];
    EXPECT_GT(tokens.size(), 2u);
    r = http().post("/api/detokenize", {{"model", "stories"}, {"tokens", tokens}});
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.j()["text"], "Once upon a time");
    EXPECT_EQ(http().post("/api/detokenize", {{"model", "stories"}, {"tokens", json::array({999999})}}).status, 400);
    EXPECT_EQ(http().post("/api/tokenize", {{"model", "stories"}}).status, 400);
}

TEST_F(OllamaApi, CopyDeleteAndPush) {
    Reply r = http().post("/api/copy", {{"source", "stories"}, {"destination", "my-stories:v1"}});
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(http().post("/api/show", {{"model", "my-stories:v1"}}).status, 200);
    EXPECT_EQ(http().post("/api/copy", {{"source", "nope"}, {"destination", "x"}}).status, 404);
    EXPECT_EQ(http().post("/api/copy", {{"source", "stories"}}).status, 400);
    r = http().request("DELETE", "/api/delete", json{{"model", "my-stories:v1"}}.dump());
    EXPECT_EQ(r.status, 200) << r.body;
    r = http().request("DELETE", "/api/delete", json{{"model", "my-stories:v1"}}.dump());
    EXPECT_EQ(r.status, 404);
    EXPECT_EQ(http().post("/api/show", {{"model", "stories"}}).status, 200);  // its blob stayed

    // Pushing is not built (pulls and creates have their own tests).
    r = http().post("/api/push", {{"model", "stories"}});
    EXPECT_EQ(r.status, 501);
    EXPECT_NE(r.j()["error"].get<std::string>().find("not supported"), std::string::npos);
    EXPECT_EQ(http().post("/api/create", {{"model", "x"}}).status, 400);  // nothing to create from
    const std::string blob = "sha256:" + std::string(64, '0');
    EXPECT_EQ(http().request("HEAD", "/api/blobs/" + blob).status, 404);
    EXPECT_EQ(http().request("HEAD", "/api/blobs/nonsense").status, 400);
}

TEST_F(OllamaApi, ConcurrentStreams) {
    constexpr int kClients = 32;
    std::vector<std::future<std::pair<int, json>>> got;
    for (int i = 0; i < kClients; ++i)
        got.push_back(std::async(std::launch::async, [this, i] {
            json last;
            const int status = http().stream(
                "/api/generate",
                {{"model", "stories"}, {"prompt", "Tim and Sam " + std::to_string(i)},
                 {"options", {{"num_predict", 16}, {"seed", i}}}},
                [&](const json& l) {
                    last = l;
                    return true;
                });
            return std::make_pair(status, last);
        }));
    for (auto& f : got) {
        auto [status, last] = f.get();
        EXPECT_EQ(status, 200);
        EXPECT_TRUE(last.value("done", false)) << last.dump();
        EXPECT_EQ(last.value("eval_count", 0), 16);
    }
}

TEST_F(OllamaApi, DisconnectCancelsAndFreesBlocks) {
    int lines = 0;
    http().stream("/api/generate",
                  {{"model", "stories"}, {"prompt", "A long story"}, {"options", {{"num_predict", 1500}, {"seed", 1}}}},
                  [&](const json&) { return ++lines < 3; });
    EXPECT_EQ(lines, 3);
    // Within a few engine steps the request is cancelled and its blocks go back to the pool.
    Http h = http();
    expect_idle(h);
}

TEST_F(OllamaApi, Metrics) {
    http().post("/api/generate", greedy({{"model", "stories"}, {"prompt", "Hi"}, {"stream", false}}, 2));
    Reply r = http().get("/metrics");
    ASSERT_EQ(r.status, 200);
    EXPECT_NE(r.header("Content-Type").find("text/plain"), std::string::npos);
    EXPECT_GE(metric(r.body, "hearth_requests_total{endpoint=\"/api/generate\",status=\"200\"}"), 1);
    EXPECT_GE(metric(r.body, "hearth_time_to_first_token_seconds_count"), 1);
    EXPECT_GE(metric(r.body, "hearth_generated_tokens_total"), 2);
    EXPECT_GE(metric(r.body, "hearth_queue_depth"), 0);
    EXPECT_GE(metric(r.body, "hearth_kv_blocks_total{model=\"stories:latest\"}"), 1);
}

// ---- servers with their own configuration -----------------------------------------------------

TEST(OllamaServer, AuthCorsAndBodyLimit) {
    TempStore store("auth");
    ServerConfig c = test_config(store.root());
    c.api_key = "s3cret";
    c.origins = {"https://app.example.com"};
    c.max_body_bytes = 4096;
    auto srv = start_server(c);
    ASSERT_TRUE(srv);
    Http http(srv->port());
    EXPECT_EQ(http.get("/").status, 200);  // the health check needs no key
    Reply r = http.get("/api/tags");
    EXPECT_EQ(r.status, 401);
    EXPECT_TRUE(r.j().contains("error"));
    EXPECT_EQ(http.get("/api/tags", {{"Authorization", "Bearer wrong"}}).status, 401);
    EXPECT_EQ(http.get("/api/tags", {{"Authorization", "Bearer s3cret"}}).status, 200);

    // Preflight: allowed origins (localhost by default, configured ones) get the CORS headers.
    r = http.request("OPTIONS", "/api/chat", "", {{"Origin", "http://localhost:3000"}, {"Access-Control-Request-Method", "POST"}});
    EXPECT_EQ(r.status, 204);
    EXPECT_EQ(r.header("Access-Control-Allow-Origin"), "http://localhost:3000");
    EXPECT_NE(r.header("Access-Control-Allow-Headers").find("Authorization"), std::string::npos);
    r = http.request("OPTIONS", "/api/chat", "", {{"Origin", "https://app.example.com"}});
    EXPECT_EQ(r.status, 204);
    r = http.request("OPTIONS", "/api/chat", "", {{"Origin", "https://evil.example.net"}});
    EXPECT_EQ(r.status, 403);
    r = http.get("/api/version", {{"Origin", "http://127.0.0.1:8080"}, {"Authorization", "Bearer s3cret"}});
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.header("Access-Control-Allow-Origin"), "http://127.0.0.1:8080");

    std::string big(8192, 'x');
    r = http.request("POST", "/api/generate", json{{"model", "stories"}, {"prompt", big}}.dump(),
                     {{"Authorization", "Bearer s3cret"}});
    EXPECT_EQ(r.status, 413);
    EXPECT_TRUE(r.j().contains("error")) << r.body;
}

TEST(OllamaServer, OriginPatterns) {
    EXPECT_TRUE(Server::origin_allowed("http://localhost", {}));
    EXPECT_TRUE(Server::origin_allowed("http://localhost:11434", {}));
    EXPECT_TRUE(Server::origin_allowed("vscode-webview://abc", {}));
    EXPECT_FALSE(Server::origin_allowed("http://localhost.evil.com", {}));
    EXPECT_FALSE(Server::origin_allowed("https://example.com", {}));
    EXPECT_TRUE(Server::origin_allowed("https://a.example.com", {"https://*.example.com"}));
    EXPECT_TRUE(Server::origin_allowed("https://anything", {"*"}));
}

TEST(OllamaServer, HostHeaderCheck) {
    EXPECT_TRUE(Server::host_allowed("localhost:11434", "127.0.0.1"));
    EXPECT_TRUE(Server::host_allowed("127.0.0.1:11434", "127.0.0.1"));
    EXPECT_TRUE(Server::host_allowed("[::1]:11434", "127.0.0.1"));
    EXPECT_TRUE(Server::host_allowed("app.localhost", "127.0.0.1"));
    EXPECT_TRUE(Server::host_allowed("", "127.0.0.1"));
    EXPECT_FALSE(Server::host_allowed("evil.example.com", "127.0.0.1"));
    EXPECT_FALSE(Server::host_allowed("evil.example.com:11434", "localhost"));
    EXPECT_TRUE(Server::host_allowed("evil.example.com", "0.0.0.0"));  // listening on the network
    TempStore store("host");
    auto srv = start_server(test_config(store.root()));
    ASSERT_TRUE(srv);
    Http http(srv->port());
    Reply r = http.get("/api/version", {{"Host", "rebind.example.com"}});
    EXPECT_EQ(r.status, 403);
    EXPECT_NE(r.j().value("error", "").find("host"), std::string::npos);
}

TEST(OllamaServer, PortInUseSaysSo) {
    TempStore store("port");
    auto first = start_server(test_config(store.root()));
    ASSERT_TRUE(first);
    ServerConfig c = test_config(store.root());
    c.port = first->port();
    auto second = Server::create(c);
    ASSERT_TRUE(second.ok());
    Status s = (*second)->start();
    ASSERT_FALSE(s.ok());
    EXPECT_NE(s.message().find("already in use"), std::string::npos) << s.message();
    EXPECT_NE(s.message().find("HEARTH_HOST"), std::string::npos) << s.message();
}

TEST(OllamaServer, StopCancelsStreams) {
    TempStore store("stop");
    auto srv = start_server(test_config(store.root()));
    ASSERT_TRUE(srv);
    Http http(srv->port());
    std::promise<void> streaming;
    std::atomic<bool> signalled{false};
    auto client = std::async(std::launch::async, [&] {
        json last;
        http.stream("/api/generate",
                    {{"model", "stories"}, {"prompt", "A very long story"}, {"options", {{"num_predict", 100000}, {"num_ctx", 2048}}}},
                    [&](const json& l) {
                        if (!signalled.exchange(true)) streaming.set_value();
                        last = l;
                        return true;
                    });
        return last;
    });
    streaming.get_future().wait();
    srv->stop();
    json last = client.get();
    EXPECT_TRUE(last.value("done", false)) << last.dump();
    EXPECT_EQ(last.value("done_reason", ""), "cancelled");
    EXPECT_TRUE(srv->service().models().list().empty());
}

// ---- log-probabilities ---------------------------------------------------------------------------

// The entries' raw bytes, concatenated.
std::string logprob_bytes(const json& entries) {
    std::string s;
    for (const auto& e : entries)
        for (const auto& b : e.value("bytes", json::array())) s += (char)b.get<int>();
    return s;
}

// Shape checks every entry must pass: a token string, a logprob <= 0, `top` alternatives most
// likely first, the greedy choice first among them.
void expect_entries(const json& entries, size_t top) {
    for (const auto& e : entries) {
        ASSERT_TRUE(e["token"].is_string()) << e.dump();
        ASSERT_TRUE(e["logprob"].is_number()) << e.dump();
        EXPECT_LE(e["logprob"].get<double>(), 0.0);
        if (top == 0) {
            EXPECT_FALSE(e.contains("top_logprobs")) << e.dump();
            continue;
        }
        ASSERT_EQ(e["top_logprobs"].size(), top) << e.dump();
        EXPECT_EQ(e["top_logprobs"][0]["token"], e["token"]) << e.dump();
        EXPECT_EQ(e["top_logprobs"][0]["logprob"], e["logprob"]) << e.dump();
        for (size_t k = 1; k < top; ++k)
            EXPECT_LE(e["top_logprobs"][k]["logprob"].get<double>(), e["top_logprobs"][k - 1]["logprob"].get<double>());
    }
}

TEST_F(OllamaApi, LogprobsGenerate) {
    json body = greedy({{"model", "stories"}, {"prompt", "Once upon a time"}, {"stream", false},
                        {"logprobs", true}, {"top_logprobs", 3}}, 12);
    Reply r = http().post("/api/generate", body);
    ASSERT_EQ(r.status, 200) << r.body;
    const json j = r.j();
    ASSERT_TRUE(j["logprobs"].is_array()) << r.body;
    EXPECT_EQ(j["logprobs"].size(), 12u);  // one per generated token (no stop string here)
    expect_entries(j["logprobs"], 3);
    EXPECT_EQ(logprob_bytes(j["logprobs"]), j["response"].get<std::string>());

    // Streamed: each chunk carries the entries of its own text; together the same list.
    body["stream"] = true;
    json streamed = json::array();
    json last;
    EXPECT_EQ(http().stream("/api/generate", body, [&](const json& l) {
        if (!l["done"].get<bool>()) {
            EXPECT_TRUE(l.contains("logprobs")) << l.dump();
            EXPECT_EQ(logprob_bytes(l.value("logprobs", json::array())), l["response"].get<std::string>()) << l.dump();
            for (const auto& e : l.value("logprobs", json::array())) streamed.push_back(e);
        }
        last = l;
        return true;
    }), 200);
    EXPECT_EQ(streamed, j["logprobs"]);
    EXPECT_TRUE(last["done"].get<bool>());
    EXPECT_FALSE(last.contains("logprobs"));  // the chunks had them

    // top_logprobs 0: the chosen token only; not asked: no field at all.
    body["stream"] = false;
    body["top_logprobs"] = 0;
    r = http().post("/api/generate", body);
    ASSERT_EQ(r.status, 200) << r.body;
    expect_entries(r.j()["logprobs"], 0);
    EXPECT_EQ(r.j()["logprobs"].size(), 12u);
    body.erase("logprobs");
    r = http().post("/api/generate", body);
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_FALSE(r.j().contains("logprobs"));

    // A stop string: the text before it, and the entries of that text only.
    body["logprobs"] = true;
    body["options"]["stop"] = json::array({"girl"});
    body["options"]["num_predict"] = 40;
    r = http().post("/api/generate", body);
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.j()["done_reason"], "stop");
    const std::string text = r.j()["response"];
    const std::string bytes = logprob_bytes(r.j()["logprobs"]);
    EXPECT_FALSE(text.empty());
    EXPECT_EQ(bytes.substr(0, text.size()), text);          // the text's tokens are all there
    EXPECT_EQ(bytes.find("girl"), std::string::npos) << bytes;  // the stop's are not
}

TEST_F(OllamaApi, LogprobsChat) {
    json body = greedy({{"model", "llama3-tiny"},
                        {"messages", json::array({{{"role", "user"}, {"content", "Hello!"}}})},
                        {"stream", false}, {"logprobs", true}, {"top_logprobs", 2}}, 8);
    Reply r = http().post("/api/chat", body);
    ASSERT_EQ(r.status, 200) << r.body;
    const json j = r.j();
    ASSERT_TRUE(j["logprobs"].is_array()) << r.body;
    EXPECT_FALSE(j["message"].contains("logprobs"));  // top level, as Ollama
    EXPECT_GT(j["logprobs"].size(), 0u);
    EXPECT_LE(j["logprobs"].size(), (size_t)j["eval_count"].get<int>());
    expect_entries(j["logprobs"], 2);

    body["stream"] = true;
    json streamed = json::array();
    json last;
    EXPECT_EQ(http().stream("/api/chat", body, [&](const json& l) {
        if (!l["done"].get<bool>())
            for (const auto& e : l.value("logprobs", json::array())) streamed.push_back(e);
        last = l;
        return true;
    }), 200);
    EXPECT_EQ(streamed, j["logprobs"]);
    EXPECT_FALSE(last.contains("logprobs"));

    body.erase("logprobs");
    r = http().post("/api/chat", body);
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_FALSE(r.j().contains("logprobs"));
}

TEST_F(OllamaApi, LogprobsRequestErrors) {
    auto err = [](const Reply& r) { return r.j().value("error", std::string()); };
    const json gen = {{"model", "stories"}, {"prompt", "hi"}, {"stream", false}};
    const json chat = {{"model", "llama3-tiny"}, {"messages", json::array({{{"role", "user"}, {"content", "hi"}}})}};
    for (const auto& [path, base] : {std::pair{"/api/generate", gen}, std::pair{"/api/chat", chat}}) {
        json b = base;
        b["top_logprobs"] = 21;
        Reply r = http().post(path, b);
        EXPECT_EQ(r.status, 400) << path;
        EXPECT_EQ(err(r), "top_logprobs must be between 0 and 20") << path;
        b["top_logprobs"] = "3";
        r = http().post(path, b);
        EXPECT_EQ(r.status, 400) << path;
        EXPECT_NE(err(r).find("\"top_logprobs\""), std::string::npos) << err(r);
        b.erase("top_logprobs");
        b["logprobs"] = "yes";
        r = http().post(path, b);
        EXPECT_EQ(r.status, 400) << path;
        EXPECT_NE(err(r).find("\"logprobs\""), std::string::npos) << err(r);
    }
}

}  // namespace
}  // namespace hearth::server
