// server::config_from_env and server::apply_options: every variable and option, good and bad.
#include <gtest/gtest.h>

#include <map>

#include "server/config.h"
#include "server/options.h"

namespace hearth::server {
namespace {

Result<ServerConfig> from(const std::map<std::string, std::string>& env) {
    return config_from_env([&env](const char* k) -> const char* {
        auto it = env.find(k);
        return it == env.end() ? nullptr : it->second.c_str();
    });
}

TEST(ServerConfig, Defaults) {
    auto c = from({});
    ASSERT_TRUE(c.ok());
    EXPECT_EQ(c->host, "127.0.0.1");
    EXPECT_EQ(c->port, 11434);
    EXPECT_EQ(c->keep_alive, std::chrono::minutes(5));
    EXPECT_EQ(c->kv_cache_type, "f16");
    EXPECT_EQ(c->max_queue, 512);
    EXPECT_TRUE(c->api_key.empty());
}

TEST(ServerConfig, DiskCacheSizes) {
    EXPECT_EQ(from({})->kv_disk_bytes, 0);
    const std::pair<const char*, int64_t> good[] = {{"0", 0},           {"4096", 4096},         {"8G", 8ll << 30},
                                                    {"512M", 512ll << 20}, {"1.5GiB", 3ll << 29}, {"2gb", 2ll << 30},
                                                    {"64k", 64 << 10}};
    for (const auto& [text, bytes] : good) {
        auto c = from({{"HEARTH_KV_DISK_CACHE", text}, {"HEARTH_KV_DISK_DIR", "/tmp/x"}});
        ASSERT_TRUE(c.ok()) << text << ": " << c.status().message();
        EXPECT_EQ(c->kv_disk_bytes, bytes) << text;
        EXPECT_EQ(c->kv_disk_dir, "/tmp/x");
    }
    for (const char* bad : {"lots", "8X", "-1G", "G", "1e30"}) {
        auto c = from({{"HEARTH_KV_DISK_CACHE", bad}});
        ASSERT_FALSE(c.ok()) << bad;
        EXPECT_NE(c.status().message().find("HEARTH_KV_DISK_CACHE"), std::string::npos);
    }
}

TEST(ServerConfig, TensorSplit) {
    EXPECT_TRUE(from({})->tensor_split.empty());
    auto c = from({{"HEARTH_TENSOR_SPLIT", "3,1"}});
    ASSERT_TRUE(c.ok()) << c.status().message();
    EXPECT_EQ(c->tensor_split, (std::vector<float>{3.0f, 1.0f}));
    c = from({{"HEARTH_TENSOR_SPLIT", "0.5,0.25,0.25"}});
    ASSERT_TRUE(c.ok()) << c.status().message();
    EXPECT_EQ(c->tensor_split.size(), 3u);
    for (const char* bad : {"3,,1", "a,b", "1,-1", "nan,1", "1x", ",", "3,1,", "inf"}) {
        auto b = from({{"HEARTH_TENSOR_SPLIT", bad}});
        ASSERT_FALSE(b.ok()) << bad;
        EXPECT_NE(b.status().message().find("HEARTH_TENSOR_SPLIT"), std::string::npos);
    }
}

TEST(ServerConfig, HostForms) {
    struct Case {
        const char* in;
        const char* host;
        int port;
    };
    for (const Case& k : {Case{"0.0.0.0", "0.0.0.0", 11434}, Case{"0.0.0.0:8080", "0.0.0.0", 8080},
                          Case{":9000", "127.0.0.1", 9000}, Case{"http://localhost:1234/", "localhost", 1234},
                          Case{"[::1]:7000", "::1", 7000}, Case{"[::]", "::", 11434}}) {
        auto c = from({{"HEARTH_HOST", k.in}});
        ASSERT_TRUE(c.ok()) << k.in << ": " << c.status().message();
        EXPECT_EQ(c->host, k.host) << k.in;
        EXPECT_EQ(c->port, k.port) << k.in;
    }
    auto bad = from({{"HEARTH_HOST", "localhost:http"}});
    ASSERT_FALSE(bad.ok());
    EXPECT_NE(bad.status().message().find("HEARTH_HOST"), std::string::npos);
}

TEST(ServerConfig, VariablesAndErrors) {
    auto c = from({{"HEARTH_KEEP_ALIVE", "1h"}, {"HEARTH_MAX_LOADED_MODELS", "2"}, {"HEARTH_NUM_PARALLEL", "4"},
                   {"HEARTH_NUM_THREAD", "3"}, {"HEARTH_CONTEXT_LENGTH", "8192"}, {"HEARTH_KV_CACHE_TYPE", "q8_0"}, {"HEARTH_MAX_QUEUE", "7"},
                   {"HEARTH_API_KEY", "k"}, {"HEARTH_ORIGINS", "https://a.com, https://*.b.com"},
                   {"HEARTH_MAX_BODY", "65536"}, {"HEARTH_MODELS", "/tmp/m"}});
    ASSERT_TRUE(c.ok()) << c.status().message();
    EXPECT_EQ(c->keep_alive, std::chrono::hours(1));
    EXPECT_EQ(c->max_loaded_models, 2);
    EXPECT_EQ(c->num_parallel, 4);
    EXPECT_EQ(c->num_thread, 3);
    EXPECT_EQ(c->context_length, 8192);
    EXPECT_EQ(c->kv_cache_type, "q8_0");
    EXPECT_EQ(c->max_queue, 7);
    EXPECT_EQ(c->api_key, "k");
    EXPECT_EQ(c->origins, (std::vector<std::string>{"https://a.com", "https://*.b.com"}));
    EXPECT_EQ(c->max_body_bytes, 65536);
    EXPECT_EQ(c->models_dir, "/tmp/m");
    for (const auto& [k, v] : std::map<std::string, std::string>{{"HEARTH_KEEP_ALIVE", "soon"},
                                                                 {"HEARTH_NUM_PARALLEL", "many"},
                                                                 {"HEARTH_NUM_THREAD", "-1"},
                                                                 {"HEARTH_KV_CACHE_TYPE", "q5_k"},
                                                                 {"HEARTH_MAX_QUEUE", "0"},
                                                                 {"HEARTH_CONTEXT_LENGTH", "-5"}}) {
        auto r = from({{k, v}});
        ASSERT_FALSE(r.ok()) << k;
        EXPECT_NE(r.status().message().find(k), std::string::npos) << r.status().message();
    }
}

TEST(RequestOptions, OllamaTypesAndNames) {
    RequestOptions o;
    nlohmann::json j = {{"temperature", 0.2}, {"top_k", 10.0}, {"top_p", 0.5}, {"min_p", 0.1}, {"typical_p", 0.9},
                        {"repeat_penalty", 1.1}, {"repeat_last_n", 32}, {"presence_penalty", 0.3},
                        {"frequency_penalty", 0.4}, {"seed", 42}, {"num_predict", 7}, {"stop", {"a", "b"}},
                        {"num_keep", 4}, {"num_ctx", 1024}, {"num_batch", 64}, {"num_thread", 2},
                        {"num_gpu", 0}, {"use_mmap", true}, {"use_mlock", true}, {"mirostat", 0}, {"unknown_thing", "x"}};
    ASSERT_TRUE(apply_options(j, o).ok());
    EXPECT_FLOAT_EQ(o.sampling.temperature, 0.2f);
    EXPECT_EQ(o.sampling.top_k, 10);
    EXPECT_EQ(o.sampling.seed, 42);
    EXPECT_EQ(o.num_predict, 7);
    EXPECT_EQ(o.stop, (std::vector<std::string>{"a", "b"}));
    EXPECT_EQ(*o.num_ctx, 1024);
    EXPECT_EQ(*o.num_batch, 64);
    EXPECT_EQ(o.use_mlock, true);
    EXPECT_EQ(o.ignored, std::vector<std::string>{"unknown_thing"});
    EXPECT_TRUE(validate_options(o).ok());

    RequestOptions bad;
    Status s = apply_options({{"temperature", "hot"}}, bad);
    EXPECT_EQ(s.message(), "option \"temperature\" must be of type number");
    EXPECT_EQ(apply_options({{"num_ctx", "big"}}, bad).message(), "option \"num_ctx\" must be of type integer");
    EXPECT_EQ(apply_options({{"stop", {1}}}, bad).message(), "option \"stop\" must be of type array of strings");
    EXPECT_EQ(apply_options({{"use_mmap", 1}}, bad).message(), "option \"use_mmap\" must be of type boolean");
    EXPECT_EQ(apply_options({{"use_mlock", "yes"}}, bad).message(), "option \"use_mlock\" must be of type boolean");
    EXPECT_FALSE(apply_options(nlohmann::json::array(), bad).ok());
    RequestOptions range;
    ASSERT_TRUE(apply_options({{"top_p", 2}}, range).ok());
    EXPECT_NE(validate_options(range).message().find("top_p"), std::string::npos);
    RequestOptions ctx;
    ASSERT_TRUE(apply_options({{"num_ctx", 0}}, ctx).ok());
    EXPECT_NE(validate_options(ctx).message().find("num_ctx"), std::string::npos);
}

}  // namespace
}  // namespace hearth::server
