// POST /api/fit (server/routes_fit.h): the report `hearth fit --json` prints, for a store model
// and for a registry model read from its header only (nothing downloaded), 404 for a model found
// nowhere; /api/show's "fit"; and /api/pull's fit status and "check_fit" refusal.
#include <gtest/gtest.h>

#include "server/server_test_util.h"
#include "store/fit.h"
#include "store/store.h"
#include "store/test_registry.h"

namespace hearth::server {
namespace {

using namespace test_util;
using test::TestRegistry;

std::string model_bytes(const std::string& name) {
    std::vector<uint8_t> bytes;
    EXPECT_TRUE(test::read_file(test::testdata_path("models/" + name + ".gguf"), bytes));
    return std::string(bytes.begin(), bytes.end());
}

// The machine's memory, so that a context can be asked for that cannot fit on it.
int64_t mem_total_bytes() {
    std::ifstream f("/proc/meminfo");
    std::string key;
    int64_t kb = 0;
    while (f >> key >> kb) {
        if (key == "MemTotal:") return kb * 1024;
        f.ignore(256, '\n');
    }
    return int64_t{1} << 40;
}

// A num_ctx whose KV cache alone (f16, one sequence) is twice this machine's memory, for the
// llama3-tiny models (2 layers x K,V x 2 KV heads x 64 x 2 bytes = 1 KiB per position).
int64_t too_long_ctx() { return (2 * mem_total_bytes() / 1024 + 1023) / 1024 * 1024; }

std::vector<std::string> files_under(const std::string& dir) {
    std::vector<std::string> out;
    std::error_code ec;
    for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator(); it.increment(ec))
        if (it->is_regular_file(ec) || it->is_symlink(ec)) out.push_back(it->path().filename().string());
    return out;
}

TEST(FitApi, AStoreModelGetsTheReport) {
    TempStore store("fit-api-store");
    auto server = start_server(test_config(store.root()));
    ASSERT_TRUE(server);
    Http http(server->port());

    Reply r = http.post("/api/fit", {{"model", "llama3-tiny"}, {"num_ctx", 1024}, {"num_parallel", 2}});
    ASSERT_EQ(r.status, 200) << r.body;
    const json j = r.j();
    // What `hearth fit --json` prints, with the same options (the memory is read live).
    store::FitOptions o;
    o.num_ctx = 1024;
    o.n_parallel = 2;
    o.read_bandwidth = store::machine_read_bandwidth();  // the daemon's figure (measured once per process)
    auto want = store::fit_model(store::Store(store.root()), "llama3-tiny", o);
    ASSERT_TRUE(want.ok()) << want.status().message();
    const json w = json::parse(store::fit_report_json(*want).dump());
    for (const char* k : {"architecture", "quantization", "num_ctx", "num_parallel", "kv_cache_type", "weights_bytes",
                          "kv_cache_bytes", "compute_bytes", "total_bytes", "alternatives"})
        EXPECT_EQ(j[k], w[k]) << k;
    std::vector<std::string> keys, want_keys;
    for (const auto& [k, v] : j.items()) keys.push_back(k);
    for (const auto& [k, v] : w.items()) want_keys.push_back(k);
    EXPECT_EQ(keys, want_keys);
    EXPECT_EQ(j["kv_cache_bytes"], 2 * 2 * 2 * 64 * 1024 * 2 * 2);  // two sequences of 1024 positions
    EXPECT_EQ(j["fits"], true);
    EXPECT_GT(j["expected_decode_tokens_per_second"].get<double>(), 0.0);
    EXPECT_EQ(j["expected_decode_tokens_per_second"], w["expected_decode_tokens_per_second"]);
    EXPECT_TRUE(j["verdict"].get<std::string>().rfind("fits", 0) == 0) << j["verdict"];

    // A q8_0 cache is smaller; defaults come from the daemon (one sequence, 4096 positions).
    r = http.post("/api/fit", {{"model", "llama3-tiny"}, {"kv_type", "q8_0"}});
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.j()["num_ctx"], 4096);
    EXPECT_EQ(r.j()["num_parallel"], 1);
    EXPECT_EQ(r.j()["kv_cache_type"], "q8_0");
    EXPECT_EQ(r.j()["kv_cache_bytes"], 2 * 2 * 2 * 64 * 4096 / 32 * 34);

    // A context that cannot fit: 200, with the verdict and what would fit.
    r = http.post("/api/fit", {{"model", "llama3-tiny"}, {"num_ctx", too_long_ctx()}});
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.j()["fits"], false);
    EXPECT_GT(r.j()["suggested_num_ctx"].get<int64_t>(), 0) << r.body;
    EXPECT_EQ(r.j()["verdict"].get<std::string>().rfind("does not fit", 0), 0u) << r.body;

    // A .gguf path on this machine.
    r = http.post("/api/fit", {{"model", test::testdata_path("models/qwen3-tiny.Q4_K_M.gguf")}});
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.j()["architecture"], "qwen3");
}

TEST(FitApi, BadRequestsAndUnknownModels) {
    TempStore store("fit-api-bad");
    TestRegistry reg;
    auto server = start_server(test_config(store.root()));
    ASSERT_TRUE(server);
    Http http(server->port());
    EXPECT_EQ(http.post("/api/fit", json::object()).status, 400);
    EXPECT_EQ(http.post("/api/fit", {{"model", "stories"}, {"num_ctx", "big"}}).status, 400);
    EXPECT_EQ(http.post("/api/fit", {{"model", "stories"}, {"num_ctx", -1}}).status, 400);
    Reply r = http.post("/api/fit", {{"model", "stories"}, {"kv_type", "q3_k"}});
    EXPECT_EQ(r.status, 400) << r.body;
    EXPECT_NE(r.j()["error"].get<std::string>().find("q3_k"), std::string::npos) << r.body;
    EXPECT_EQ(http.request("POST", "/api/fit", "{not json").status, 400);

    // Found nowhere: 404, saying where it looked.
    r = http.post("/api/fit", {{"model", reg.host() + "/library/nothere"}, {"insecure", true}});
    EXPECT_EQ(r.status, 404) << r.body;
    EXPECT_NE(r.j()["error"].get<std::string>().find("not found"), std::string::npos) << r.body;
    EXPECT_NE(r.j()["error"].get<std::string>().find("not in the store"), std::string::npos) << r.body;
    r = http.post("/api/fit", {{"model", "/no/such/model.gguf"}});
    EXPECT_EQ(r.status, 404) << r.body;
}

TEST(FitApi, ARegistryModelIsCheckedFromItsHeaderWithoutADownload) {
    TempStore store("fit-api-remote");
    TestRegistry reg;
    const std::string weights = model_bytes("llama3-tiny.F16");
    reg.add_model("library", "tiny", "latest", {{"application/vnd.ollama.image.model", weights}});
    auto server = start_server(test_config(store.root()));
    ASSERT_TRUE(server);
    Http http(server->port());
    const auto blobs_before = files_under(store.root() + "/blobs");

    Reply r = http.post("/api/fit", {{"model", reg.host() + "/library/tiny"}, {"insecure", true}, {"num_ctx", 2048}});
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.j()["weights_bytes"], (int64_t)weights.size());
    EXPECT_EQ(r.j()["num_ctx"], 2048);
    EXPECT_EQ(r.j()["quantization"], "F16");
    EXPECT_EQ(r.j()["fits"], true);
    EXPECT_FALSE(r.j()["alternatives"].empty());
    // Only the header travelled, and nothing landed in the store.
    EXPECT_LT(reg.bytes_served(), (int64_t)weights.size() / 4);
    for (const auto& q : reg.requests_of(TestRegistry::Kind::blob)) EXPECT_GE(q.range_end, 0) << "not a Range request";
    EXPECT_EQ(files_under(store.root() + "/blobs"), blobs_before);
    EXPECT_FALSE(fs::exists(store.root() + "/manifests/" + reg.host()));

    // Weights that are not GGUF: the header cannot tell.
    reg.add_model("library", "noise", "latest", {{"application/vnd.ollama.image.model", TestRegistry::random_blob(5000, 9)}});
    r = http.post("/api/fit", {{"model", reg.host() + "/library/noise"}, {"insecure", true}});
    EXPECT_EQ(r.status, 400) << r.body;
    EXPECT_NE(r.j()["error"].get<std::string>().find("not a GGUF file"), std::string::npos) << r.body;
}

TEST(FitApi, ShowCarriesTheFit) {
    TempStore store("fit-api-show");
    auto server = start_server(test_config(store.root()));
    ASSERT_TRUE(server);
    Http http(server->port());
    Reply r = http.post("/api/show", {{"model", "llama3-tiny"}});
    ASSERT_EQ(r.status, 200) << r.body;
    const json fit = r.j()["fit"];
    ASSERT_TRUE(fit.is_object()) << r.body;
    EXPECT_EQ(fit["weights_bytes"], (int64_t)fs::file_size(test::testdata_path("models/llama3-tiny.Q8_0.gguf")));
    EXPECT_EQ(fit["num_ctx"], 4096);
    EXPECT_GT(fit["kv_cache_bytes"].get<int64_t>(), 0);
    EXPECT_TRUE(fit["fits"].is_boolean());
    EXPECT_TRUE(fit["verdict"].is_string());
}

TEST(FitApi, PullReportsTheFitAndCheckFitRefusesBeforeDownloading) {
    TempStore store("fit-api-pull");
    TestRegistry reg;
    const std::string weights = model_bytes("llama3-tiny.F16");
    const std::string d = TestRegistry::digest_of(weights);
    reg.add_model("library", "tiny", "latest", {{"application/vnd.ollama.image.model", weights}});
    auto server = start_server(test_config(store.root()));
    ASSERT_TRUE(server);
    Http http(server->port());
    const std::string name = reg.host() + "/library/tiny";
    const std::string blob = store.root() + "/blobs/sha256-" + d.substr(7);

    // check_fit with a context this machine cannot hold: refused with an HTTP status, nothing
    // downloaded (streamed or not).
    for (bool stream : {true, false}) {
        Reply r = http.post("/api/pull", {{"model", name}, {"insecure", true}, {"stream", stream}, {"check_fit", true},
                                          {"num_ctx", too_long_ctx()}});
        EXPECT_EQ(r.status, 400) << r.body;
        EXPECT_NE(r.j()["error"].get<std::string>().find("does not fit: needs "), std::string::npos) << r.body;
        EXPECT_FALSE(fs::exists(blob));
        EXPECT_FALSE(fs::exists(blob + "-partial"));
        EXPECT_FALSE(fs::exists(store.root() + "/manifests/" + reg.host()));
    }
    EXPECT_LT(reg.bytes_served(), (int64_t)weights.size() / 2);
    EXPECT_EQ(http.post("/api/pull", {{"model", name}, {"insecure", true}, {"check_fit", "yes"}}).status, 400);

    // Without check_fit: the fit is one more status, before the blobs, and the pull goes on.
    std::vector<json> lines;
    const int status = http.stream("/api/pull", {{"model", name}, {"insecure", true}}, [&](const json& j) {
        lines.push_back(j);
        return true;
    });
    ASSERT_EQ(status, 200);
    ASSERT_GE(lines.size(), 3u);
    EXPECT_EQ(lines[0], json({{"status", "pulling manifest"}}));
    ASSERT_TRUE(lines[1].contains("fit")) << lines[1];
    EXPECT_EQ(lines[1]["status"].get<std::string>().rfind("fits in memory: needs ", 0), 0u) << lines[1];
    EXPECT_EQ(lines[1]["fit"]["fits"], true);
    EXPECT_EQ(lines[1]["fit"]["weights_bytes"], (int64_t)weights.size());
    EXPECT_EQ(lines.back(), json({{"status", "success"}}));
    EXPECT_TRUE(fs::exists(blob));
}

}  // namespace
}  // namespace hearth::server
