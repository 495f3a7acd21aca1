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

// HEARTH_KV_DISK_CACHE: a prompt seen before a restart is read back from disk, not prefilled.
TEST(Service, DiskPrefixCacheSurvivesARestart) {
    TempStore store("diskcache");
    const fs::path dir = fs::temp_directory_path() / ("hearth-kvdisk-" + std::to_string(::getpid()));
    fs::remove_all(dir);
    ServerConfig c = test_config(store.root());
    c.kv_disk_bytes = 64ll << 20;
    c.kv_disk_dir = dir.string();
    std::string prompt;
    for (int i = 0; i < 40; ++i) prompt += "The little cat sat on the warm mat and looked at the moon. ";
    const json body = {{"model", "stories"}, {"prompt", prompt}, {"raw", true}, {"stream", false},
                       {"options", {{"temperature", 0}, {"num_predict", 8}}}};
    json first, second;
    {
        auto server = start_server(c);
        ASSERT_TRUE(server);
        Http http(server->port());
        Reply r = http.post("/api/generate", body);
        ASSERT_EQ(r.status, 200) << r.body;
        first = r.j();
        EXPECT_EQ(first["prompt_cache_count"], 0);
    }  // stopping unloads the model; the writer finishes its queue first
    ASSERT_TRUE(fs::exists(dir / "kvcache"));
    {
        auto server = start_server(c);
        ASSERT_TRUE(server);
        Http http(server->port());
        Reply r = http.post("/api/generate", body);
        ASSERT_EQ(r.status, 200) << r.body;
        second = r.j();
    }
    const int64_t n = first["prompt_eval_count"].get<int64_t>();
    EXPECT_GT(n, 400);
    EXPECT_GE(second["prompt_cache_count"].get<int64_t>(), n - 64) << second.dump();
    EXPECT_EQ(second["response"], first["response"]);
    fs::remove_all(dir);
}

}  // namespace
}  // namespace hearth::server
