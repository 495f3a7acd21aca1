// tool_choice in the Service: "none" drops the tools, "required" and a tool's name make the
// answer a call held to the tools' schemas (also after a thinking block), "auto" holds a call the
// model starts to its schema. The models have random weights: without the mask they never call.
#include <chrono>

#include "chat/json_schema.h"
#include "server_test_util.h"

namespace hearth::server {
namespace {

using namespace test_util;
using ojson = nlohmann::ordered_json;

class ToolChoice : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        store_ = new TempStore("toolchoice");
        auto s = Service::create(test_config(store_->root()));
        ASSERT_TRUE(s.ok()) << s.status().message();
        service_ = std::move(s).value().release();
    }
    static void TearDownTestSuite() {
        delete service_;
        delete store_;
    }
    static TempStore* store_;
    static Service* service_;
};
TempStore* ToolChoice::store_ = nullptr;
Service* ToolChoice::service_ = nullptr;

ojson tools() {
    return ojson::parse(R"([
      {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 12}},
                       "required": ["city"]}}},
      {"type": "function", "function": {"name": "add", "description": "Add two integers",
        "parameters": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                       "required": ["a", "b"]}}}])");
}

TextInput chat_input(const std::string& tool_choice, int num_predict = 96) {
    TextInput in;
    in.model = "qwen3-tiny";
    in.chat = true;
    in.messages = ojson::array({{{"role", "user"}, {"content", "What is the weather in Paris?"}}});
    in.tools = tools();
    in.tool_choice = tool_choice;
    in.options = {{"temperature", 0.7}, {"seed", 7}, {"num_predict", num_predict}};
    return in;
}

struct Outcome {
    Collected c;
    Final f;
    Status error;
    int64_t prompt_tokens = 0;
};

Outcome run(Service& s, TextInput in) {
    Outcome o;
    auto g = s.generate(std::move(in));
    if (!g.ok()) {
        o.error = g.status();
        return o;
    }
    o.prompt_tokens = (*g)->prompt_tokens();
    for (;;) {
        Generation::Item it = (*g)->next(std::chrono::milliseconds(5000));
        if (it.kind == Generation::Kind::delta) o.c.add(std::move(it.delta));
        if (it.kind == Generation::Kind::final) {
            o.f = it.final;
            return o;
        }
        if (it.kind == Generation::Kind::error) {
            o.error = it.status;
            return o;
        }
        if (it.kind == Generation::Kind::none) {
            ADD_FAILURE() << "no output for 5 s";
            return o;
        }
    }
}

const ojson* schema_of(const std::string& name) {
    static const ojson t = tools();
    for (const auto& x : t)
        if (x["function"]["name"] == name) return &x["function"]["parameters"];
    return nullptr;
}

void expect_valid_calls(const Outcome& o, const std::string& only = "") {
    ASSERT_TRUE(o.error.ok()) << o.error.message();
    ASSERT_FALSE(o.c.tool_calls.empty()) << "content: " << o.c.content << " thinking: " << o.c.thinking;
    for (const auto& call : o.c.tool_calls) {
        if (!only.empty()) {
            EXPECT_EQ(call.name, only);
        }
        const ojson* schema = schema_of(call.name);
        ASSERT_NE(schema, nullptr) << "unknown tool " << call.name;
        const Status v = chat::validate_json(*schema, call.arguments);
        EXPECT_TRUE(v.ok()) << call.name << " " << call.arguments.dump() << ": " << v.message();
    }
}

TEST_F(ToolChoice, RequiredMakesTheAnswerAValidCall) {
    for (int seed : {1, 2, 3}) {
        TextInput in = chat_input("required", 400);
        in.options["seed"] = seed;
        Outcome o = run(*service_, std::move(in));
        expect_valid_calls(o);
        // Nothing but calls: no prose before or after them. (A random model rarely chooses to
        // end: it makes calls until the length limit, and the call cut there comes back as
        // text, the parser's rule for an unfinished call.)
        const size_t text = o.c.content.find_first_not_of(" \n\t\r");
        if (text != std::string::npos) {
            EXPECT_EQ(o.f.done_reason, "length") << "content: " << o.c.content;
            EXPECT_EQ(o.c.content.substr(text, 11), "<tool_call>") << "content: " << o.c.content;
        }
    }
}

TEST_F(ToolChoice, ANamedToolIsTheOneCalled) {
    for (const char* name : {"add", "get_weather"}) expect_valid_calls(run(*service_, chat_input(name)), name);
}

TEST_F(ToolChoice, RequiredAfterThinking) {
    TextInput in = chat_input("required", 160);
    in.think.mode = chat::Think::Mode::on;
    // The thinking block is free (the random model rarely closes it by itself within the
    // budget, so only the shape is checked when it does).
    Outcome o = run(*service_, std::move(in));
    ASSERT_TRUE(o.error.ok()) << o.error.message();
    if (!o.c.tool_calls.empty()) {
        expect_valid_calls(o);
    } else {
        EXPECT_EQ(o.f.done_reason, "length") << "a required call never came: " << o.c.content;
    }
}

TEST_F(ToolChoice, NoneDropsTheToolsFromThePrompt) {
    Outcome with = run(*service_, chat_input("auto", 1));
    Outcome none = run(*service_, chat_input("none", 1));
    ASSERT_TRUE(with.error.ok() && none.error.ok()) << with.error.message() << none.error.message();
    EXPECT_LT(none.prompt_tokens + 50, with.prompt_tokens);  // the tool schemas are gone
}

TEST_F(ToolChoice, AutoCallsAreValidWhenTheModelMakesOne) {
    int calls = 0;
    for (int seed = 1; seed <= 6; ++seed) {
        TextInput in = chat_input("auto");
        in.options["seed"] = seed;
        Outcome o = run(*service_, std::move(in));
        ASSERT_TRUE(o.error.ok()) << o.error.message();
        if (!o.c.tool_calls.empty()) {
            ++calls;
            expect_valid_calls(o);
        }
    }
    SUCCEED() << calls << " of 6 answers called a tool";
}

TEST_F(ToolChoice, Errors) {
    TextInput in = chat_input("nope");
    Outcome o = run(*service_, std::move(in));
    EXPECT_EQ(o.error.code(), StatusCode::invalid_argument);
    EXPECT_NE(o.error.message().find("nope"), std::string::npos) << o.error.message();

    in = chat_input("required");
    in.tools = nullptr;
    EXPECT_EQ(run(*service_, std::move(in)).error.code(), StatusCode::invalid_argument);

    in = chat_input("required");
    in.format = "json";
    o = run(*service_, std::move(in));
    EXPECT_EQ(o.error.code(), StatusCode::invalid_argument);
    EXPECT_NE(o.error.message().find("format"), std::string::npos) << o.error.message();

    // A raw prompt has no template to put tools in.
    in = chat_input("required");
    in.chat = false;
    in.raw = true;
    in.prompt = "Call a tool:";
    o = run(*service_, std::move(in));
    EXPECT_EQ(o.error.code(), StatusCode::invalid_argument);
    EXPECT_NE(o.error.message().find("template"), std::string::npos) << o.error.message();
}

}  // namespace
}  // namespace hearth::server
