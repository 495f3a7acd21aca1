// OpenAI's Responses API (/v1/responses) end to end: a real server in this process on a free
// loopback port over the shared test models, driven with raw HTTP and SSE.
#include <map>
#include <set>

#include "chat/json_schema.h"
#include "server_test_util.h"

namespace hearth::server {
namespace {

using namespace test_util;

class ResponsesApi : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        store_ = new TempStore("responses");
        server_ = start_server(test_config(store_->root())).release();
    }
    static void TearDownTestSuite() {
        delete server_;
        delete store_;
    }
    Http http() { return Http(server_->port()); }

    struct Stream {
        int status = 0;
        std::string content_type;
        std::string body;                      // the raw bytes (for an error before the stream)
        std::vector<std::pair<std::string, json>> events;  // (event line, data)
    };

    // POST with stream true; the SSE events as they came.
    Stream stream(json body) {
        body["stream"] = true;
        httplib::Client cli("127.0.0.1", server_->port());
        cli.set_read_timeout(30, 0);
        httplib::Request req;
        req.method = "POST";
        req.path = "/v1/responses";
        req.body = body.dump();
        req.set_header("Content-Type", "application/json");
        Stream s;
        req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
            s.body.append(data, n);
            return true;
        };
        httplib::Response res;
        httplib::Error err = httplib::Error::Success;
        if (!cli.send(req, res, err)) ADD_FAILURE() << "POST /v1/responses: " << httplib::to_string(err);
        s.status = res.status;
        s.content_type = res.get_header_value("Content-Type");
        if (s.status != 200) return s;
        for (size_t p = 0, end; (end = s.body.find("\n\n", p)) != std::string::npos; p = end + 2) {
            const std::string block = s.body.substr(p, end - p);
            if (block == ": keep-alive") continue;  // written after a quiet second; clients skip it
            const size_t nl = block.find('\n');
            EXPECT_EQ(block.rfind("event: ", 0), 0u) << block;
            EXPECT_EQ(block.compare(nl + 1, 6, "data: "), 0) << block;
            json data = json::parse(block.substr(nl + 7), nullptr, false);
            EXPECT_FALSE(data.is_discarded()) << block;
            s.events.emplace_back(block.substr(7, nl - 7), std::move(data));
        }
        EXPECT_EQ(s.body.size() - s.body.rfind("\n\n"), 2u) << "trailing bytes after the last event";
        return s;
    }

    static TempStore* store_;
    static Server* server_;
};
TempStore* ResponsesApi::store_ = nullptr;
Server* ResponsesApi::server_ = nullptr;

json greedy(const std::string& model, const std::string& input, int max_tokens) {
    return {{"model", model}, {"input", input}, {"temperature", 0}, {"max_output_tokens", max_tokens}};
}

// Checks the stream's grammar and returns the final response object: sequence numbers 0, 1,
// ...; created and in_progress first; every item and content part added before its deltas and
// done once; the terminal event last; its output equal to the items as streamed, and to the
// deltas concatenated.
json check_stream(const std::vector<std::pair<std::string, json>>& events) {
    EXPECT_GE(events.size(), 3u);
    if (events.size() < 3) return json();
    EXPECT_EQ(events[0].first, "response.created");
    EXPECT_EQ(events[1].first, "response.in_progress");
    const std::string id = events[0].second["response"]["id"];
    EXPECT_EQ(id.rfind("resp_", 0), 0u);
    json items = json::array();                // done items, in order
    std::map<std::string, std::string> text;   // item id -> deltas so far
    std::set<std::string> open_items, open_parts;
    for (size_t i = 0; i < events.size(); ++i) {
        const auto& [name, d] = events[i];
        EXPECT_EQ(d["type"], name);
        EXPECT_EQ(d["sequence_number"], i) << name;
        const bool last = i + 1 == events.size();
        EXPECT_EQ(last, name == "response.completed" || name == "response.incomplete" || name == "response.failed") << name;
        if (name == "response.output_item.added") {
            EXPECT_EQ(d["output_index"], items.size());
            EXPECT_TRUE(open_items.insert(d["item"]["id"].get<std::string>()).second);
        } else if (name == "response.content_part.added") {
            EXPECT_TRUE(open_items.count(d["item_id"]));
            EXPECT_TRUE(open_parts.insert(d["item_id"].get<std::string>()).second);
        } else if (name == "response.output_text.delta" || name == "response.reasoning_text.delta" ||
                   name == "response.function_call_arguments.delta") {
            EXPECT_TRUE(open_items.count(d["item_id"])) << name;
            EXPECT_EQ(d["output_index"], items.size());
            text[d["item_id"]] += d["delta"].get<std::string>();
        } else if (name == "response.output_text.done" || name == "response.reasoning_text.done") {
            EXPECT_EQ(d["text"], text[d["item_id"]]);
        } else if (name == "response.function_call_arguments.done") {
            EXPECT_EQ(d["arguments"], text[d["item_id"]]);
        } else if (name == "response.content_part.done") {
            EXPECT_EQ(open_parts.erase(d["item_id"]), 1u);
            EXPECT_EQ(d["part"]["text"], text[d["item_id"]]);
        } else if (name == "response.output_item.done") {
            const std::string item_id = d["item"]["id"];
            EXPECT_EQ(open_items.erase(item_id), 1u);
            EXPECT_EQ(open_parts.count(item_id), 0u);
            EXPECT_EQ(d["output_index"], items.size());
            EXPECT_EQ(d["item"]["status"], "completed");
            items.push_back(d["item"]);
        }
    }
    EXPECT_TRUE(open_items.empty());
    const json resp = events.back().second["response"];
    EXPECT_EQ(resp["id"], id);
    EXPECT_EQ(resp["output"].dump(), items.dump());
    for (const auto& item : items) {
        const std::string item_id = item["id"];
        if (item["type"] == "function_call") EXPECT_EQ(item["arguments"], text[item_id]);
        else EXPECT_EQ(item["content"][0]["text"], text[item_id]);
    }
    return resp;
}

// The output's message text (all message items).
std::string output_text(const json& resp) {
    std::string out;
    for (const auto& item : resp["output"])
        if (item["type"] == "message")
            for (const auto& part : item["content"]) out += part["text"].get<std::string>();
    return out;
}

std::string reasoning_text(const json& resp) {
    std::string out;
    for (const auto& item : resp["output"])
        if (item["type"] == "reasoning")
            for (const auto& part : item["content"]) out += part["text"].get<std::string>();
    return out;
}

TEST_F(ResponsesApi, StreamedEqualsWhole) {
    for (const char* model : {"llama3-tiny", "qwen3-tiny"}) {
        SCOPED_TRACE(model);
        json body = greedy(model, "Tell me a story.", 12);
        body["instructions"] = "You are terse.";
        Reply r = http().post("/v1/responses", body);
        ASSERT_EQ(r.status, 200) << r.body;
        const json whole = r.j();
        EXPECT_EQ(whole["object"], "response");
        EXPECT_EQ(whole["model"], model);
        EXPECT_EQ(whole["instructions"], "You are terse.");
        EXPECT_EQ(whole["temperature"], 0);
        EXPECT_EQ(whole["usage"]["output_tokens"], 12);
        EXPECT_GT(whole["usage"]["input_tokens"].get<int>(), 5);
        EXPECT_EQ(whole["usage"]["total_tokens"].get<int>(),
                  whole["usage"]["input_tokens"].get<int>() + whole["usage"]["output_tokens"].get<int>());

        Stream s = stream(body);
        ASSERT_EQ(s.status, 200) << s.body;
        EXPECT_EQ(s.content_type.rfind("text/event-stream", 0), 0u) << s.content_type;
        const json streamed = check_stream(s.events);
        EXPECT_EQ(output_text(streamed), output_text(whole));
        EXPECT_EQ(reasoning_text(streamed), reasoning_text(whole));
        EXPECT_EQ(streamed["usage"]["output_tokens"], whole["usage"]["output_tokens"]);
        EXPECT_EQ(streamed["status"], whole["status"]);
        EXPECT_FALSE(output_text(whole).empty() && reasoning_text(whole).empty()) << r.body;
    }
    // qwen3-tiny with reasoning on: whatever it thinks (its weights are random, so it may not
    // open a thinking block at all) comes as a reasoning item before the message.
    json think = greedy("qwen3-tiny", "Why?", 10);
    think["reasoning"] = {{"effort", "high"}};
    Stream s = stream(think);
    ASSERT_EQ(s.status, 200) << s.body;
    const json resp = check_stream(s.events);
    ASSERT_GE(resp["output"].size(), 1u);
    EXPECT_EQ(resp["output"].back()["type"], "message") << resp.dump();
    for (size_t i = 0; i + 1 < resp["output"].size(); ++i) EXPECT_EQ(resp["output"][i]["type"], "reasoning");
    EXPECT_EQ(resp["reasoning"]["effort"], "high");
    Reply whole = http().post("/v1/responses", think);
    ASSERT_EQ(whole.status, 200) << whole.body;
    EXPECT_EQ(reasoning_text(whole.j()), reasoning_text(resp));
    EXPECT_EQ(output_text(whole.j()), output_text(resp));
    think["reasoning"] = {{"effort", "none"}};
    Reply r = http().post("/v1/responses", think);
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(reasoning_text(r.j()), "");
}

TEST_F(ResponsesApi, MaxOutputTokensIsIncomplete) {
    json body = greedy("llama3-tiny", "Count to one hundred.", 3);
    Reply r = http().post("/v1/responses", body);
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.j()["status"], "incomplete");
    EXPECT_EQ(r.j()["incomplete_details"]["reason"], "max_output_tokens");
    EXPECT_EQ(r.j()["max_output_tokens"], 3);
    EXPECT_EQ(r.j()["usage"]["output_tokens"], 3);
    Stream s = stream(body);
    ASSERT_EQ(s.status, 200);
    const json resp = check_stream(s.events);
    EXPECT_EQ(s.events.back().first, "response.incomplete");
    EXPECT_EQ(resp["status"], "incomplete");
    EXPECT_EQ(resp["incomplete_details"]["reason"], "max_output_tokens");
}

TEST_F(ResponsesApi, JsonSchemaFormat) {
    const json schema = {{"type", "object"},
                         {"properties", {{"name", {{"type", "string"}, {"maxLength", 12}}},
                                         {"age", {{"type", "integer"}, {"minimum", 0}, {"maximum", 99}}}}},
                         {"required", {"name", "age"}},
                         {"additionalProperties", false}};
    json body = {{"model", "llama3-tiny"}, {"input", "Tell me about Tom."}, {"max_output_tokens", 200},
                 {"options", {{"seed", 3}}},
                 {"text", {{"format", {{"type", "json_schema"}, {"name", "person"}, {"schema", schema}, {"strict", true}}}}}};
    Reply r = http().post("/v1/responses", body);
    ASSERT_EQ(r.status, 200) << r.body;
    ASSERT_EQ(r.j()["status"], "completed") << r.body;  // the grammar closed the object
    EXPECT_EQ(r.j()["text"]["format"]["name"], "person");
    const std::string text = output_text(r.j());
    json out = json::parse(text, nullptr, false);
    ASSERT_FALSE(out.is_discarded()) << text;
    Status valid = chat::validate_json(schema, chat::Json(out));
    EXPECT_TRUE(valid.ok()) << valid.message() << ": " << text;

    // Any JSON: the random model may ramble inside a string past the budget, but it starts as JSON.
    body["text"] = {{"format", {{"type", "json_object"}}}};
    body["max_output_tokens"] = 20;
    r = http().post("/v1/responses", body);
    ASSERT_EQ(r.status, 200) << r.body;
    const std::string any = output_text(r.j());
    ASSERT_FALSE(any.empty()) << r.body;
    EXPECT_NE(std::string("{[\"-0123456789tfn").find(any[0]), std::string::npos) << any;
}

json weather_tools() {
    return json::array({{{"type", "function"},
                         {"name", "get_weather"},
                         {"description", "Weather in a city"},
                         {"parameters", {{"type", "object"},
                                         {"properties", {{"city", {{"type", "string"}, {"enum", {"Paris", "Rome"}}}}}},
                                         {"required", {"city"}},
                                         {"additionalProperties", false}}},
                         {"strict", true}}});
}

TEST_F(ResponsesApi, RequiredToolChoiceGivesFunctionCall) {
    json body = {{"model", "qwen3-tiny"}, {"input", "Weather in Paris?"}, {"tools", weather_tools()},
                 {"tool_choice", "required"}, {"reasoning", {{"effort", "none"}}}, {"max_output_tokens", 100},
                 {"temperature", 0}};
    Reply r = http().post("/v1/responses", body);
    ASSERT_EQ(r.status, 200) << r.body;
    const json whole = r.j();
    json call;
    for (const auto& item : whole["output"])
        if (item["type"] == "function_call") call = item;
    ASSERT_TRUE(call.is_object()) << r.body;
    EXPECT_EQ(call["name"], "get_weather");
    EXPECT_EQ(call["status"], "completed");
    EXPECT_EQ(call["id"].get<std::string>().rfind("fc_", 0), 0u);
    EXPECT_FALSE(call["call_id"].get<std::string>().empty());
    json args = json::parse(call["arguments"].get<std::string>(), nullptr, false);
    ASSERT_TRUE(args.is_object()) << call.dump();
    EXPECT_TRUE(args["city"] == "Paris" || args["city"] == "Rome") << call.dump();
    EXPECT_EQ(whole["tool_choice"], "required");
    EXPECT_EQ(whole["tools"][0]["name"], "get_weather");

    Stream s = stream(body);
    ASSERT_EQ(s.status, 200) << s.body;
    const json streamed = check_stream(s.events);
    int calls = 0;
    for (const auto& item : streamed["output"])
        if (item["type"] == "function_call") {
            ++calls;
            EXPECT_EQ(item["arguments"], call["arguments"]);
        }
    EXPECT_EQ(calls, 1) << streamed.dump();

    // Naming the function forces it too.
    body["tool_choice"] = {{"type", "function"}, {"name", "get_weather"}};
    r = http().post("/v1/responses", body);
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.j()["output"].back()["type"], "function_call") << r.body;
    body["tool_choice"] = {{"type", "function"}, {"name", "nope"}};
    EXPECT_EQ(http().post("/v1/responses", body).status, 400);
}

TEST_F(ResponsesApi, FunctionCallOutputRoundTrip) {
    json input = json::array({{{"role", "user"}, {"content", "Weather in Paris?"}}});
    json first = {{"model", "qwen3-tiny"}, {"input", input}, {"tools", weather_tools()}, {"max_output_tokens", 4},
                  {"temperature", 0}, {"reasoning", {{"effort", "none"}}}};
    Reply r = http().post("/v1/responses", first);
    ASSERT_EQ(r.status, 200) << r.body;
    const int base_tokens = r.j()["usage"]["input_tokens"];
    // The client sends the call and its result back; the template renders both.
    input.push_back({{"type", "function_call"}, {"id", "fc_1"}, {"call_id", "call_abc"}, {"name", "get_weather"},
                     {"arguments", R"({"city":"Paris"})"}, {"status", "completed"}});
    input.push_back({{"type", "function_call_output"}, {"call_id", "call_abc"}, {"output", "sunny, 21 degrees"}});
    json second = first;
    second["input"] = input;
    r = http().post("/v1/responses", second);
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_GT(r.j()["usage"]["input_tokens"].get<int>(), base_tokens + 10) << r.body;
    // The same on llama3-tiny, whose template has its own tool-result shape.
    second["model"] = "llama3-tiny";
    second.erase("reasoning");
    r = http().post("/v1/responses", second);
    EXPECT_EQ(r.status, 200) << r.body;
}

TEST_F(ResponsesApi, ErrorsInOpenAIShape) {
    auto expect_error = [&](const Reply& r, int status, const std::string& type, const std::string& needle) {
        EXPECT_EQ(r.status, status) << r.body;
        const json j = r.j();
        ASSERT_TRUE(j.contains("error")) << r.body;
        EXPECT_EQ(j["error"]["type"], type) << r.body;
        EXPECT_TRUE(j["error"].contains("param"));
        EXPECT_TRUE(j["error"].contains("code"));
        EXPECT_NE(j["error"]["message"].get<std::string>().find(needle), std::string::npos) << r.body;
    };
    expect_error(http().request("POST", "/v1/responses", "{not json"), 400, "invalid_request_error", "invalid JSON");
    expect_error(http().post("/v1/responses", {{"model", "llama3-tiny"}, {"input", 5}}), 400, "invalid_request_error",
                 "\"input\" must be");
    expect_error(http().post("/v1/responses", {{"model", "llama3-tiny"}, {"input", "x"}, {"max_output_tokens", "ten"}}),
                 400, "invalid_request_error", "max_output_tokens");
    expect_error(http().post("/v1/responses", {{"model", "no-such-model"}, {"input", "x"}}), 404, "not_found_error",
                 "no-such-model");
    expect_error(http().post("/v1/responses", {{"model", "llama3-tiny"}, {"input", "x"}, {"previous_response_id", "resp_1"}}),
                 400, "invalid_request_error", "hearth keeps no response state");
    json image = {{"model", "llama3-tiny"},
                  {"input", json::array({{{"role", "user"},
                                          {"content", json::array({{{"type", "input_image"},
                                                                    {"image_url", "data:image/png;base64,AAAA"}}})}}})}};
    expect_error(http().post("/v1/responses", image), 400, "invalid_request_error", "images are not supported");
    expect_error(http().post("/v1/responses", {{"model", "llama3-tiny"}, {"input", "x"},
                                               {"tools", json::array({{{"type", "web_search_preview"}}})}}),
                 400, "invalid_request_error", "web_search_preview");
    // Streamed requests fail before the stream starts, with a proper status.
    Stream s = stream({{"model", "no-such-model"}, {"input", "x"}});
    EXPECT_EQ(s.status, 404);
    EXPECT_EQ(json::parse(s.body, nullptr, false)["error"]["type"], "not_found_error") << s.body;
    // An embedding model cannot answer.
    Reply r = http().post("/v1/responses", {{"model", "bge"}, {"input", "x"}});
    EXPECT_EQ(r.status / 100, 4) << r.body;
    EXPECT_TRUE(r.j().contains("error")) << r.body;
}

}  // namespace
}  // namespace hearth::server
