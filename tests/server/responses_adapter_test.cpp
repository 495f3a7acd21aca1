// adapters/openai_responses: request mapping, the response object and the streamed event
// sequence against golden JSON (STYLE.md §8).
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "server/adapters/openai_responses.h"

namespace hearth::server::openai_responses {
namespace {

// Fixed ids ("msg_1", "rs_2", ...) and clock.
WriterOptions fixed_options() {
    WriterOptions o;
    o.model = std::string("m");  // (assigning a literal trips GCC 12 -Wrestrict)
    o.created_at = 1700000000;
    o.now = [] { return (int64_t)1700000005; };
    auto n = std::make_shared<int>(0);
    o.new_id = [n](const std::string& prefix) {
        std::string id = prefix;
        id += '_';
        id += std::to_string((*n)++);
        return id;
    };
    return o;
}

Request parse_ok(const std::string& body) {
    auto r = parse_request(json::parse(body));
    EXPECT_TRUE(r.ok()) << body << ": " << r.status().message();
    return r.ok() ? std::move(r).value() : Request{};
}

std::string parse_error(const std::string& body) {
    auto r = parse_request(json::parse(body));
    EXPECT_FALSE(r.ok()) << body;
    if (!r.ok()) {
        EXPECT_EQ(r.status().code(), StatusCode::invalid_argument);
        return r.status().message();
    }
    return {};
}

struct Event {
    std::string name;
    json data;
};

// "event: X\ndata: {...}\n\n" blocks; the event line must match the data's type.
std::vector<Event> parse_sse(const std::string& text) {
    std::vector<Event> out;
    size_t p = 0;
    while (p < text.size()) {
        const size_t end = text.find("\n\n", p);
        EXPECT_NE(end, std::string::npos) << "unterminated event: " << text.substr(p);
        if (end == std::string::npos) break;
        const std::string block = text.substr(p, end - p);
        p = end + 2;
        const size_t nl = block.find('\n');
        EXPECT_EQ(block.rfind("event: ", 0), 0u) << block;
        EXPECT_EQ(block.compare(nl + 1, 6, "data: "), 0) << block;
        Event e{block.substr(7, nl - 7), json::parse(block.substr(nl + 7))};
        EXPECT_EQ(e.data["type"], e.name);
        out.push_back(std::move(e));
    }
    return out;
}

std::vector<std::string> names(const std::vector<Event>& events) {
    std::vector<std::string> out;
    for (const auto& e : events) out.push_back(e.name);
    return out;
}

Final final_with(const std::string& reason) {
    Final f;
    f.done_reason = reason;
    f.stats.prompt_tokens = 10;
    f.stats.cached_tokens = 4;
    f.stats.generated_tokens = 3;
    return f;
}

Delta text(const std::string& s) {
    Delta d;
    d.content = s;
    return d;
}
Delta thought(const std::string& s) {
    Delta d;
    d.thinking = s;
    return d;
}

// The writer's bytes for these deltas and then the final, in that order.
std::string run(TextWriter& w, const std::vector<Delta>& deltas, const Final& f) {
    std::string out;
    for (const auto& d : deltas) out += w.stream_delta(d);
    out += w.stream_final(f);
    return out;
}

chat::ToolCall weather_call() {
    chat::ToolCall c;
    c.id = "call_0";
    c.name = "get_weather";
    c.arguments = {{"city", "Paris"}};
    return c;
}

// ---- requests ----

TEST(ResponsesAdapter, StringInputAndSettings) {
    Request r = parse_ok(R"({"model":"llama3","input":"Hi","instructions":"Be brief.","stream":true,
        "temperature":0.5,"top_p":0.9,"max_output_tokens":32,"store":true,"metadata":{"k":"v"},"user":"u1",
        "parallel_tool_calls":false,"truncation":"auto","include":["reasoning.encrypted_content"],
        "options":{"seed":7,"temperature":1.5}})");
    EXPECT_TRUE(r.stream);
    EXPECT_EQ(r.input.model, "llama3");
    EXPECT_TRUE(r.input.chat);
    EXPECT_EQ(r.input.messages.dump(),
              R"([{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"}])");
    // Ollama's options as an extension; the standard fields win.
    EXPECT_EQ(r.input.options.dump(), R"({"num_predict":32,"seed":7,"temperature":0.5,"top_p":0.9})");
    EXPECT_TRUE(r.input.truncate);
    EXPECT_TRUE(r.input.tools.is_null());
    EXPECT_EQ(r.input.tool_choice, "auto");
    EXPECT_TRUE(r.input.format.is_null());
    EXPECT_EQ(r.input.think.mode, chat::Think::Mode::unset);
    EXPECT_EQ(r.echo.instructions, "Be brief.");
    EXPECT_EQ(r.echo.temperature, 0.5);
    EXPECT_EQ(r.echo.top_p, 0.9);
    EXPECT_EQ(r.echo.max_output_tokens, 32);
    EXPECT_FALSE(r.echo.parallel_tool_calls);
    EXPECT_EQ(r.echo.truncation, "auto");
    EXPECT_EQ(r.echo.user, "u1");
    EXPECT_EQ(r.echo.metadata.dump(), R"({"k":"v"})");

    Request d = parse_ok(R"({"model":"m","input":"x"})");
    EXPECT_FALSE(d.stream);  // OpenAI's default
    EXPECT_TRUE(d.input.options.is_null());
    EXPECT_FALSE(d.input.truncate);
    EXPECT_TRUE(d.echo.temperature.is_null());
    EXPECT_EQ(d.echo.text.dump(), R"({"format":{"type":"text"}})");
}

TEST(ResponsesAdapter, InputItems) {
    Request r = parse_ok(R"({"model":"m","input":[
        {"role":"developer","content":"Use tools."},
        {"type":"message","role":"user","content":[{"type":"input_text","text":"Weather in "},{"type":"input_text","text":"Paris?"}]},
        {"type":"reasoning","id":"rs_1","summary":[],"content":[{"type":"reasoning_text","text":"Need the tool."}]},
        {"type":"function_call","id":"fc_1","call_id":"call_a","name":"get_weather","arguments":"{\"city\":\"Paris\"}","status":"completed"},
        {"type":"function_call","call_id":"call_b","name":"get_time","arguments":""},
        {"type":"function_call_output","call_id":"call_a","output":"18C"},
        {"type":"function_call_output","call_id":"call_b","output":[{"type":"input_text","text":"noon"}]},
        {"type":"message","role":"assistant","status":"completed","content":[{"type":"output_text","text":"18C at noon.","annotations":[]}]},
        {"role":"user","content":"Thanks"}]})");
    EXPECT_EQ(r.input.messages.dump(),
              R"([{"role":"system","content":"Use tools."},)"
              R"({"role":"user","content":"Weather in Paris?"},)"
              R"({"role":"assistant","content":"","thinking":"Need the tool.","reasoning_content":"Need the tool.","tool_calls":[)"
              R"({"type":"function","function":{"name":"get_weather","arguments":{"city":"Paris"}},"id":"call_a"},)"
              R"({"type":"function","function":{"name":"get_time","arguments":{}},"id":"call_b"}]},)"
              R"({"role":"tool","content":"18C","tool_call_id":"call_a","tool_name":"get_weather","name":"get_weather"},)"
              R"({"role":"tool","content":"noon","tool_call_id":"call_b","tool_name":"get_time","name":"get_time"},)"
              R"({"role":"assistant","content":"18C at noon."},)"
              R"({"role":"user","content":"Thanks"}])");

    // A call right after an assistant message joins its turn; reasoning with only a summary.
    Request m = parse_ok(R"({"model":"m","input":[{"role":"user","content":"q"},
        {"type":"reasoning","summary":[{"type":"summary_text","text":"s"}]},
        {"role":"assistant","content":"Let me check."},
        {"type":"function_call","call_id":"c1","name":"f","arguments":"{}"}]})");
    EXPECT_EQ(m.input.messages[1].dump(),
              R"({"role":"assistant","content":"Let me check.","thinking":"s","reasoning_content":"s",)"
              R"("tool_calls":[{"type":"function","function":{"name":"f","arguments":{}},"id":"c1"}]})");
}

TEST(ResponsesAdapter, ToolsToolChoiceFormatReasoning) {
    Request r = parse_ok(R"({"model":"m","input":"x","tools":[
        {"type":"function","name":"get_weather","description":"Weather now","strict":true,
         "parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}},
        {"type":"function","name":"noop"}],
        "tool_choice":"required","text":{"format":{"type":"json_schema","name":"w","strict":true,
        "schema":{"type":"object","properties":{"a":{"type":"integer"}}}}},"reasoning":{"effort":"high","summary":"auto"}})");
    EXPECT_EQ(r.input.tools.dump(),
              R"([{"type":"function","function":{"name":"get_weather","description":"Weather now",)"
              R"("parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}},)"
              R"({"type":"function","function":{"name":"noop","parameters":{"type":"object","properties":{}}}}])");
    EXPECT_EQ(r.input.tool_choice, "required");
    EXPECT_EQ(r.input.format.dump(), R"({"type":"object","properties":{"a":{"type":"integer"}}})");
    EXPECT_EQ(r.input.think.mode, chat::Think::Mode::on);
    EXPECT_EQ(r.input.think.level, "high");
    EXPECT_EQ(r.echo.tools.size(), 2u);
    EXPECT_EQ(r.echo.tools[0]["strict"], true);  // echoed as given
    EXPECT_EQ(r.echo.tool_choice, "required");
    EXPECT_EQ(r.echo.text["format"]["name"], "w");
    EXPECT_EQ(r.echo.reasoning.dump(), R"({"effort":"high","summary":"auto"})");

    auto choice = [](const std::string& tc) { return parse_ok(R"({"model":"m","input":"x","tool_choice":)" + tc + "}"); };
    EXPECT_EQ(choice(R"("none")").input.tool_choice, "none");
    EXPECT_EQ(choice(R"("auto")").input.tool_choice, "auto");
    Request named = choice(R"({"type":"function","name":"get_weather"})");
    EXPECT_EQ(named.input.tool_choice, "get_weather");
    EXPECT_EQ(named.echo.tool_choice.dump(), R"({"type":"function","name":"get_weather"})");

    auto format = [](const std::string& f) {
        return parse_ok(R"({"model":"m","input":"x","text":{"format":)" + f + "}}").input.format;
    };
    EXPECT_EQ(format(R"({"type":"json_object"})"), "json");
    EXPECT_TRUE(format(R"({"type":"text"})").is_null());

    auto effort = [](const std::string& e) {
        return parse_ok(R"({"model":"m","input":"x","reasoning":{"effort":")" + e + R"("}})").input.think;
    };
    EXPECT_EQ(effort("none").mode, chat::Think::Mode::off);
    EXPECT_EQ(effort("minimal").level, "low");
    EXPECT_EQ(effort("low").level, "low");
    EXPECT_EQ(effort("medium").level, "medium");
    EXPECT_EQ(effort("xhigh").level, "high");
}

TEST(ResponsesAdapter, RequestErrors) {
    const std::vector<std::pair<std::string, std::string>> cases = {
        {R"({"input":"x"})", "model is required"},
        {R"({"model":7,"input":"x"})", "field \"model\" must be a string"},
        {R"({"model":"m"})", "input is required"},
        {R"({"model":"m","input":[]})", "input is required: it holds no message"},
        {R"({"model":"m","input":5})", "field \"input\" must be a string or an array of input items"},
        {R"({"model":"m","input":"x","stream":"yes"})", "field \"stream\" must be a boolean"},
        {R"({"model":"m","input":"x","previous_response_id":"resp_1"})",
         "previous_response_id is not supported: hearth keeps no response state"},
        {R"({"model":"m","input":"x","conversation":"conv_1"})",
         "conversation is not supported: hearth keeps no response state"},
        {R"({"model":"m","input":"x","prompt":{"id":"pmpt_1"}})",
         "prompt (a stored prompt template) is not supported: hearth stores no prompts"},
        {R"({"model":"m","input":"x","background":true})", "background is not supported: hearth keeps no response state"},
        {R"({"model":"m","input":[{"type":"item_reference","id":"msg_1"}]})",
         "input[0]: item_reference is not supported: hearth keeps no response state"},
        {R"({"model":"m","input":[{"role":"user","content":[{"type":"input_image","image_url":"data:image/png;base64,AA"}]}]})",
         "input[0].content[0]: images are not supported: hearth runs no vision (multimodal) model yet"},
        {R"({"model":"m","input":[{"role":"user","content":[{"type":"input_file","file_id":"f"}]}]})",
         "input[0].content[0]: file inputs are not supported"},
        {R"({"model":"m","input":[{"role":"user","content":7}]})",
         "field \"input[0].content\" must be a string or an array of content parts"},
        {R"({"model":"m","input":[{"role":"tool","content":"x"}]})",
         "input[0].role \"tool\" is not one of user, assistant, system, developer"},
        {R"({"model":"m","input":[{"content":"x"}]})", "input[0].type is required"},
        {R"({"model":"m","input":[{"type":"web_search_call","id":"ws"}]})",
         "input[0]: input item type \"web_search_call\" is not supported"},
        {R"({"model":"m","input":[{"type":"function_call","call_id":"c","name":"f","arguments":"{oops"}]})",
         "input[0].arguments must be a JSON object encoded as a string"},
        {R"({"model":"m","input":[{"type":"function_call_output","call_id":"c"}]})", "input[0].output is required"},
        {R"({"model":"m","input":"x","tools":[{"type":"web_search"}]})",
         "tools[0]: tool type \"web_search\" is not supported (only \"function\" tools are)"},
        {R"({"model":"m","input":"x","tools":[{"type":"file_search","vector_store_ids":[]}]})",
         "tools[0]: tool type \"file_search\" is not supported (only \"function\" tools are)"},
        {R"({"model":"m","input":"x","tools":[{"type":"function"}]})", "tools[0].name is required"},
        {R"({"model":"m","input":"x","tools":{}})", "field \"tools\" must be an array"},
        {R"({"model":"m","input":"x","tool_choice":"any"})",
         "tool_choice must be \"auto\", \"none\", \"required\" or {\"type\": \"function\", \"name\": ...}"},
        {R"({"model":"m","input":"x","tool_choice":{"type":"web_search"}})",
         "tool_choice type \"web_search\" is not supported (\"auto\", \"none\", \"required\" or a function)"},
        {R"({"model":"m","input":"x","text":{"format":{"type":"json_schema","name":"x"}}})",
         "text.format.schema is required (a JSON Schema object) for type \"json_schema\""},
        {R"({"model":"m","input":"x","text":{"format":{"type":"xml"}}})",
         "text.format.type must be \"text\", \"json_object\" or \"json_schema\""},
        {R"({"model":"m","input":"x","temperature":"hot"})", "field \"temperature\" must be a number"},
        {R"({"model":"m","input":"x","temperature":3})", "temperature must be between 0 and 2"},
        {R"({"model":"m","input":"x","top_p":1.5})", "top_p must be between 0 and 1"},
        {R"({"model":"m","input":"x","max_output_tokens":0})", "max_output_tokens must be at least 1"},
        {R"({"model":"m","input":"x","max_output_tokens":1.5})", "field \"max_output_tokens\" must be an integer"},
        {R"({"model":"m","input":"x","reasoning":{"effort":"extreme"}})",
         "reasoning.effort \"extreme\" is not one of none, minimal, low, medium, high, xhigh"},
        {R"({"model":"m","input":"x","options":[]})", "field \"options\" must be an object"},
        {R"({"model":"m","input":"x","truncation":"sometimes"})", "truncation must be \"auto\" or \"disabled\""},
    };
    for (const auto& [body, message] : cases) EXPECT_EQ(parse_error(body), message) << body;
}

// ---- responses ----

TEST(ResponsesAdapter, WholeObjectGolden) {
    Request r = parse_ok(R"({"model":"m","input":"Hi","instructions":"Be brief.","max_output_tokens":50})");
    auto w = make_writer(r.echo, fixed_options());
    Collected c;
    c.add(text("Hello"));
    c.add(text(" there."));
    EXPECT_EQ(w->whole(final_with("stop"), c).dump(),
              R"({"id":"resp_0","object":"response","created_at":1700000000,"status":"completed","completed_at":1700000005,)"
              R"("error":null,"incomplete_details":null,"instructions":"Be brief.","max_output_tokens":50,"model":"m",)"
              R"("output":[{"type":"message","id":"msg_1","status":"completed","role":"assistant","content":[)"
              R"({"type":"output_text","text":"Hello there.","annotations":[],"logprobs":[]}]}],)"
              R"("parallel_tool_calls":true,"previous_response_id":null,"reasoning":{"effort":null,"summary":null},)"
              R"("store":false,"temperature":null,"text":{"format":{"type":"text"}},"tool_choice":"auto","tools":[],)"
              R"("top_p":null,"truncation":"disabled","usage":{"input_tokens":10,"input_tokens_details":{"cached_tokens":4},)"
              R"("output_tokens":3,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":13},"user":null,"metadata":{}})");
}

TEST(ResponsesAdapter, WholeReasoningCallsAndIncomplete) {
    Request r = parse_ok(R"({"model":"m","input":"Hi"})");
    auto w = make_writer(r.echo, fixed_options());
    Collected c;
    c.add(thought("Think."));
    Delta d;
    d.tool_calls = {weather_call()};
    c.add(std::move(d));
    json j = w->whole(final_with("stop"), c);
    EXPECT_EQ(j["output"].dump(),
              R"([{"type":"reasoning","id":"rs_1","summary":[],"content":[{"type":"reasoning_text","text":"Think."}],"status":"completed"},)"
              R"({"type":"function_call","id":"fc_2","call_id":"call_3","name":"get_weather","arguments":"{\"city\":\"Paris\"}","status":"completed"}])");

    // Cut by max_output_tokens: incomplete, and an (empty) message still answers.
    auto w2 = make_writer(r.echo, fixed_options());
    Collected t;
    t.add(thought("Long thought"));
    json inc = w2->whole(final_with("length"), t);
    EXPECT_EQ(inc["status"], "incomplete");
    EXPECT_EQ(inc["incomplete_details"].dump(), R"({"reason":"max_output_tokens"})");
    EXPECT_TRUE(inc["completed_at"].is_null());
    ASSERT_EQ(inc["output"].size(), 2u);
    EXPECT_EQ(inc["output"][1]["content"][0]["text"], "");

    json cancelled = make_writer(r.echo, fixed_options())->whole(final_with("cancelled"), Collected{});
    EXPECT_EQ(cancelled["status"], "failed");
    EXPECT_EQ(cancelled["error"]["code"], "server_error");
}

TEST(ResponsesAdapter, StreamTextGolden) {
    Request r = parse_ok(R"({"model":"m","input":"Hi","stream":true})");
    auto w = make_writer(r.echo, fixed_options());
    std::string s = run(*w, {text("Hel"), text("lo")}, final_with("stop"));
    std::vector<Event> ev = parse_sse(s);
    EXPECT_EQ(names(ev), (std::vector<std::string>{"response.created", "response.in_progress", "response.output_item.added",
                                                   "response.content_part.added", "response.output_text.delta",
                                                   "response.output_text.delta", "response.output_text.done",
                                                   "response.content_part.done", "response.output_item.done",
                                                   "response.completed"}));
    for (size_t i = 0; i < ev.size(); ++i) EXPECT_EQ(ev[i].data["sequence_number"], i);
    EXPECT_EQ(w->stream_content_type(), std::string("text/event-stream"));
    // Byte-exact for the item's events.
    const std::string golden =
        "event: response.output_item.added\n"
        R"(data: {"type":"response.output_item.added","sequence_number":2,"output_index":0,"item":{"type":"message","id":"msg_1","status":"in_progress","role":"assistant","content":[]}})"
        "\n\n"
        "event: response.content_part.added\n"
        R"(data: {"type":"response.content_part.added","sequence_number":3,"item_id":"msg_1","output_index":0,"content_index":0,"part":{"type":"output_text","text":"","annotations":[],"logprobs":[]}})"
        "\n\n"
        "event: response.output_text.delta\n"
        R"(data: {"type":"response.output_text.delta","sequence_number":4,"item_id":"msg_1","output_index":0,"content_index":0,"delta":"Hel","logprobs":[]})"
        "\n\n"
        "event: response.output_text.delta\n"
        R"(data: {"type":"response.output_text.delta","sequence_number":5,"item_id":"msg_1","output_index":0,"content_index":0,"delta":"lo","logprobs":[]})"
        "\n\n"
        "event: response.output_text.done\n"
        R"(data: {"type":"response.output_text.done","sequence_number":6,"item_id":"msg_1","output_index":0,"content_index":0,"text":"Hello","logprobs":[]})"
        "\n\n"
        "event: response.content_part.done\n"
        R"(data: {"type":"response.content_part.done","sequence_number":7,"item_id":"msg_1","output_index":0,"content_index":0,"part":{"type":"output_text","text":"Hello","annotations":[],"logprobs":[]}})"
        "\n\n"
        "event: response.output_item.done\n"
        R"(data: {"type":"response.output_item.done","sequence_number":8,"output_index":0,"item":{"type":"message","id":"msg_1","status":"completed","role":"assistant","content":[{"type":"output_text","text":"Hello","annotations":[],"logprobs":[]}]}})"
        "\n\n";
    EXPECT_NE(s.find(golden), std::string::npos) << s;
    EXPECT_EQ(ev[0].data["response"]["status"], "in_progress");
    EXPECT_EQ(ev[0].data["response"]["id"], "resp_0");
    EXPECT_TRUE(ev[0].data["response"]["usage"].is_null());
    const json& done = ev.back().data["response"];
    EXPECT_EQ(done["status"], "completed");
    EXPECT_EQ(done["output"].dump(), json::array({ev[8].data["item"]}).dump());
    EXPECT_EQ(done["usage"]["total_tokens"], 13);
    EXPECT_EQ(done["completed_at"], 1700000005);
}

TEST(ResponsesAdapter, StreamReasoningThenText) {
    Request r = parse_ok(R"({"model":"m","input":"Hi","stream":true})");
    auto w = make_writer(r.echo, fixed_options());
    Delta both;
    both.thinking = "b.";
    both.content = "Hi";
    std::string s = run(*w, {thought("a "), both}, final_with("stop"));
    std::vector<Event> ev = parse_sse(s);
    EXPECT_EQ(names(ev),
              (std::vector<std::string>{"response.created", "response.in_progress",
                                        "response.output_item.added", "response.content_part.added",
                                        "response.reasoning_text.delta", "response.reasoning_text.delta",
                                        "response.reasoning_text.done", "response.content_part.done",
                                        "response.output_item.done",
                                        "response.output_item.added", "response.content_part.added",
                                        "response.output_text.delta", "response.output_text.done",
                                        "response.content_part.done", "response.output_item.done",
                                        "response.completed"}));
    EXPECT_EQ(ev[2].data["item"].dump(),
              R"({"type":"reasoning","id":"rs_1","summary":[],"content":[],"status":"in_progress"})");
    EXPECT_EQ(ev[3].data["part"].dump(), R"({"type":"reasoning_text","text":""})");
    EXPECT_EQ(ev[4].data.dump(),
              R"({"type":"response.reasoning_text.delta","sequence_number":4,"item_id":"rs_1","output_index":0,"content_index":0,"delta":"a "})");
    EXPECT_EQ(ev[6].data["text"], "a b.");
    EXPECT_EQ(ev[9].data["output_index"], 1);
    EXPECT_EQ(ev[11].data["item_id"], "msg_2");
    const json& out = ev.back().data["response"]["output"];
    ASSERT_EQ(out.size(), 2u);
    EXPECT_EQ(out[0].dump(), ev[8].data["item"].dump());
    EXPECT_EQ(out[1].dump(), ev[14].data["item"].dump());
    EXPECT_EQ(out[0]["content"][0]["text"], "a b.");
    EXPECT_EQ(out[1]["content"][0]["text"], "Hi");
}

TEST(ResponsesAdapter, StreamFunctionCall) {
    Request r = parse_ok(R"({"model":"m","input":"Hi","stream":true,"tools":[{"type":"function","name":"get_weather"}]})");
    auto w = make_writer(r.echo, fixed_options());
    Delta d;
    chat::ToolCall own = weather_call();
    own.id = "abc123XYZ";  // the model's own id is kept
    d.tool_calls = {weather_call(), own};
    std::string s = run(*w, {d}, final_with("stop"));
    std::vector<Event> ev = parse_sse(s);
    EXPECT_EQ(names(ev), (std::vector<std::string>{"response.created", "response.in_progress",
                                                   "response.output_item.added", "response.function_call_arguments.delta",
                                                   "response.function_call_arguments.done", "response.output_item.done",
                                                   "response.output_item.added", "response.function_call_arguments.delta",
                                                   "response.function_call_arguments.done", "response.output_item.done",
                                                   "response.completed"}));
    EXPECT_EQ(ev[2].data.dump(),
              R"({"type":"response.output_item.added","sequence_number":2,"output_index":0,"item":{"type":"function_call",)"
              R"("id":"fc_1","call_id":"call_2","name":"get_weather","arguments":"","status":"in_progress"}})");
    EXPECT_EQ(ev[3].data.dump(),
              R"({"type":"response.function_call_arguments.delta","sequence_number":3,"item_id":"fc_1","output_index":0,"delta":"{\"city\":\"Paris\"}"})");
    EXPECT_EQ(ev[4].data.dump(),
              R"({"type":"response.function_call_arguments.done","sequence_number":4,"item_id":"fc_1","output_index":0,"name":"get_weather","arguments":"{\"city\":\"Paris\"}"})");
    EXPECT_EQ(ev[5].data["item"].dump(),
              R"({"type":"function_call","id":"fc_1","call_id":"call_2","name":"get_weather","arguments":"{\"city\":\"Paris\"}","status":"completed"})");
    EXPECT_EQ(ev[9].data["item"]["call_id"], "abc123XYZ");
    EXPECT_EQ(ev[9].data["output_index"], 1);
    const json& resp = ev.back().data["response"];
    EXPECT_EQ(resp["output"].size(), 2u);  // no empty message next to calls
    EXPECT_EQ(resp["tools"][0]["name"], "get_weather");
}

TEST(ResponsesAdapter, StreamIncompleteAndEmpty) {
    Request r = parse_ok(R"({"model":"m","input":"Hi","stream":true,"max_output_tokens":2})");
    auto w = make_writer(r.echo, fixed_options());
    std::vector<Event> ev = parse_sse(run(*w, {text("Once")}, final_with("length")));
    EXPECT_EQ(ev.back().name, "response.incomplete");
    const json& resp = ev.back().data["response"];
    EXPECT_EQ(resp["status"], "incomplete");
    EXPECT_EQ(resp["incomplete_details"].dump(), R"({"reason":"max_output_tokens"})");
    EXPECT_EQ(resp["max_output_tokens"], 2);
    EXPECT_EQ(resp["output"][0]["content"][0]["text"], "Once");

    // Nothing generated at all: the created events and an empty message still come.
    auto e = make_writer(r.echo, fixed_options());
    std::vector<Event> empty = parse_sse(e->stream_final(final_with("stop")));
    EXPECT_EQ(names(empty), (std::vector<std::string>{"response.created", "response.in_progress", "response.output_item.added",
                                                      "response.content_part.added", "response.output_text.done",
                                                      "response.content_part.done", "response.output_item.done",
                                                      "response.completed"}));
}

TEST(ResponsesAdapter, StreamErrorAfterStart) {
    Request r = parse_ok(R"({"model":"m","input":"Hi","stream":true})");
    auto w = make_writer(r.echo, fixed_options());
    std::string s = w->stream_delta(text("Hi"));
    s += w->stream_error(error(StatusCode::internal, "the engine failed"));
    std::vector<Event> ev = parse_sse(s);
    ASSERT_GE(ev.size(), 3u);
    EXPECT_EQ(ev[ev.size() - 2].data.dump(),
              R"({"type":"error","sequence_number":)" + std::to_string(ev.size() - 2) +
                  R"(,"code":"server_error","message":"the engine failed","param":null})");
    EXPECT_EQ(ev.back().name, "response.failed");
    EXPECT_EQ(ev.back().data["response"]["status"], "failed");
    EXPECT_EQ(ev.back().data["response"]["error"].dump(), R"({"code":"server_error","message":"the engine failed"})");
    EXPECT_EQ(ev.back().data["response"]["output"][0]["content"][0]["text"], "Hi");
}

}  // namespace
}  // namespace hearth::server::openai_responses
