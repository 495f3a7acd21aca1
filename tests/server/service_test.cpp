// Service entry points that no wire protocol test covers on its own.
#include <chrono>

#include "server_test_util.h"

namespace hearth::server {
namespace {

using namespace test_util;
using ojson = nlohmann::ordered_json;

TEST(Service, CountPromptTokensMatchesWhatRuns) {
    TempStore store("service");
    auto s = Service::create(test_config(store.root()));
    ASSERT_TRUE(s.ok()) << s.status().message();
    Service& service = **s;
    auto chat = [](const std::string& model) {
        TextInput in;
        in.model = model;
        in.chat = true;
        in.messages = ojson::array({{{"role", "system"}, {"content", "Be brief."}},
                                    {{"role", "user"}, {"content", "What is the weather in Paris?"}}});
        in.options = {{"num_predict", 1}};
        return in;
    };
    TextInput with_tools = chat("qwen3-tiny");
    with_tools.tools = ojson::parse(R"([{"type": "function", "function": {"name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}])");
    TextInput raw;
    raw.model = "stories";
    raw.raw = true;
    raw.prompt = "Once upon a time there was a cat";
    raw.options = {{"num_predict", 1}};
    for (const TextInput& in : {chat("llama3-tiny"), chat("qwen3-tiny"), with_tools, raw}) {
        auto n = service.count_prompt_tokens(in);
        ASSERT_TRUE(n.ok()) << n.status().message();
        auto g = service.generate(in);
        ASSERT_TRUE(g.ok()) << g.status().message();
        EXPECT_EQ(*n, (*g)->prompt_tokens()) << in.model;
        EXPECT_GT(*n, 5);
        while ((*g)->next(std::chrono::milliseconds(2000)).kind == Generation::Kind::delta) {
        }
    }
    // Tools add their schemas to the prompt.
    EXPECT_GT(*service.count_prompt_tokens(with_tools), *service.count_prompt_tokens(chat("qwen3-tiny")) + 10);
    TextInput unknown = chat("nope");
    EXPECT_EQ(service.count_prompt_tokens(unknown).status().code(), StatusCode::not_found);
}

}  // namespace
}  // namespace hearth::server
