// Pulls against a registry on loopback (test_registry.h) with injected faults: each case checks
// the outcome and that the store holds nothing corrupt afterwards (every blob hashes to its
// name, no manifest points at a missing blob).
#include "store/pull.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <thread>

#include "base/sha256.h"
#include "store/test_registry.h"
#include "support/testdata.h"

namespace hearth::store {
namespace {

namespace fs = std::filesystem;
using test::TestRegistry;
using Fault = TestRegistry::Fault;
using Kind = TestRegistry::Kind;
constexpr int64_t kConfigBytes = (int64_t)TestRegistry::kConfig.size();

class TempDir {
public:
    explicit TempDir(const std::string& tag) {
        path_ = fs::temp_directory_path() / ("hearth-pull-test-" + std::to_string(::getpid()) + "-" + tag);
        fs::remove_all(path_);
        fs::create_directories(path_);
    }
    ~TempDir() { fs::remove_all(path_); }
    std::string str() const { return path_.string(); }

private:
    fs::path path_;
};

// Short timeouts so that every fault resolves in well under a second.
PullOptions test_options() {
    PullOptions o;
    o.registry.insecure = true;
    o.transfer.allow_http = true;
    o.transfer.backoff_first = std::chrono::milliseconds(20);
    o.transfer.backoff_max = std::chrono::milliseconds(200);
    o.transfer.stall_timeout = std::chrono::milliseconds(400);
    o.transfer.connect_timeout = std::chrono::milliseconds(1000);
    o.transfer.progress_interval = std::chrono::milliseconds(20);
    o.transfer.max_failures = 5;
    return o;
}

std::string read_file(const std::string& p) {
    std::ifstream f(p, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

std::string tiny_gguf() { return read_file(test::testdata_path("models/stories260K.gguf")); }

// Nothing corrupt: every file in blobs/ is a finished blob whose bytes hash to its name (unless
// partial files are allowed), and every manifest's blobs are there.
void expect_store_consistent(const std::string& root, bool partials_allowed = false) {
    std::error_code ec;
    for (auto it = fs::directory_iterator(root + "/blobs", ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
        const std::string name = it->path().filename().string();
        if (name.find("-partial") != std::string::npos) {
            EXPECT_TRUE(partials_allowed) << "partial file left: " << name;
            continue;
        }
        ASSERT_EQ(name.rfind("sha256-", 0), 0u) << name;
        auto hex = sha256_file(it->path().string());
        ASSERT_TRUE(hex.ok());
        EXPECT_EQ("sha256-" + *hex, name) << "blob does not match its name";
    }
    Store st(root);
    for (auto it = fs::recursive_directory_iterator(root + "/manifests", ec); !ec && it != fs::recursive_directory_iterator();
         it.increment(ec)) {
        if (!it->is_regular_file()) continue;
        auto m = Manifest::parse(read_file(it->path().string()));
        ASSERT_TRUE(m.ok()) << it->path();
        for (const auto& l : m->layers) EXPECT_TRUE(st.has_blob(l.digest)) << it->path() << " -> " << l.digest;
    }
}

bool has_manifests(const std::string& root) {
    std::error_code ec;
    for (auto it = fs::recursive_directory_iterator(root + "/manifests", ec); !ec && it != fs::recursive_directory_iterator();
         it.increment(ec))
        if (it->is_regular_file()) return true;
    return false;
}

struct Pulled {
    Status status;
    std::vector<PullEvent> events;
};

Pulled pull(const std::string& root, const std::string& name, const PullOptions& o = test_options()) {
    Store st(root);
    Pulled p;
    p.status = pull_model(st, name, o, [&](const PullEvent& e) { p.events.push_back(e); });
    return p;
}

std::string model_name(const TestRegistry& r, const std::string& model = "tiny") {
    return r.host() + "/library/" + model + ":latest";
}

TEST(Pull, RegistryModelLandsWithOllamasStatusSequence) {
    TempDir dir("basic");
    TestRegistry reg;
    const std::string weights = TestRegistry::random_blob(200000, 1);
    const std::string manifest = reg.add_model("library", "tiny", "latest",
                                               {{kMediaModel, weights}, {kMediaTemplate, "{{ .Prompt }}"}});
    Pulled p = pull(dir.str(), model_name(reg));
    ASSERT_TRUE(p.status.ok()) << p.status.message();

    // "pulling manifest", per blob "pulling <12 hex>" with digest/total/completed, then the end.
    ASSERT_GE(p.events.size(), 6u);
    EXPECT_EQ(p.events.front().status, "pulling manifest");
    const std::string d = TestRegistry::digest_of(weights);
    bool saw_start = false, saw_end = false;
    for (const auto& e : p.events) {
        if (e.digest != d) continue;
        EXPECT_EQ(e.status, "pulling " + d.substr(7, 12));
        EXPECT_EQ(e.total, 200000);
        saw_start = saw_start || e.completed < e.total;
        saw_end = saw_end || e.completed == e.total;
        EXPECT_EQ(e.to_json()["digest"], d);
    }
    EXPECT_TRUE(saw_start);
    EXPECT_TRUE(saw_end);
    const size_t n = p.events.size();
    EXPECT_EQ(p.events[n - 3].status, "verifying sha256 digest");
    EXPECT_EQ(p.events[n - 2].status, "writing manifest");
    EXPECT_EQ(p.events[n - 1].status, "success");
    EXPECT_EQ(p.events[n - 1].to_json().dump(), R"({"status":"success"})");

    // The manifest is the registry's, byte for byte, under the registry's host.
    EXPECT_EQ(read_file(dir.str() + "/manifests/" + reg.host() + "/library/tiny/latest"), manifest);
    Store st(dir.str());
    auto ref = st.resolve(model_name(reg));
    ASSERT_TRUE(ref.ok()) << ref.status().message();
    EXPECT_EQ(ref->template_text, "{{ .Prompt }}");
    EXPECT_EQ(read_file(ref->model_path), weights);
    // The manifest was asked for with the v2 manifest type.
    auto manifests = reg.requests_of(Kind::manifest);
    ASSERT_EQ(manifests.size(), 1u);
    EXPECT_NE(manifests[0].accept.find("application/vnd.docker.distribution.manifest.v2+json"), std::string::npos);
    EXPECT_EQ(reg.bytes_served(), 200000 + 13 + kConfigBytes);  // weights + template + config
    expect_store_consistent(dir.str());
}

TEST(Pull, RealTinyGgufLoadsAfterThePull) {
    TempDir dir("real");
    TestRegistry reg;
    reg.add_model("library", "stories", "latest", {{kMediaModel, tiny_gguf()}});
    Pulled p = pull(dir.str(), model_name(reg, "stories"));
    ASSERT_TRUE(p.status.ok()) << p.status.message();
    Store st(dir.str());
    auto ref = st.resolve(model_name(reg, "stories"));
    ASSERT_TRUE(ref.ok()) << ref.status().message();
    auto info = st.info(*ref);
    ASSERT_TRUE(info.ok()) << info.status().message();
    EXPECT_EQ(info->architecture, "llama");
    ASSERT_EQ(st.list().size(), 1u);
}

TEST(Pull, BlobsAlreadyPresentAreNotFetchedAgain) {
    TempDir dir("again");
    TestRegistry reg;
    reg.add_model("library", "tiny", "latest", {{kMediaModel, TestRegistry::random_blob(100000, 2)}});
    ASSERT_TRUE(pull(dir.str(), model_name(reg)).status.ok());
    reg.wait_idle();
    reg.reset_counters();
    Pulled p = pull(dir.str(), model_name(reg));
    ASSERT_TRUE(p.status.ok()) << p.status.message();
    EXPECT_EQ(reg.bytes_served(), 0);
    EXPECT_TRUE(reg.requests_of(Kind::blob).empty());
    EXPECT_EQ(p.events.back().status, "success");
}

TEST(Pull, ConnectionDropResumesFromTheByteReached) {
    TempDir dir("drop");
    TestRegistry reg;
    const std::string weights = TestRegistry::random_blob(300000, 3);
    const std::string d = TestRegistry::digest_of(weights);
    reg.add_model("library", "tiny", "latest", {{kMediaModel, weights}});
    std::atomic<int> n_weights{0};
    reg.set_hook([&](const TestRegistry::Request& r) {
        Fault f;
        if (r.kind == Kind::blob && r.path.find(d) != std::string::npos && n_weights++ == 0) f.drop_after = 123457;
        return f;
    });
    Pulled p = pull(dir.str(), model_name(reg));
    ASSERT_TRUE(p.status.ok()) << p.status.message();
    std::vector<TestRegistry::Request> gets;
    for (const auto& r : reg.requests_of(Kind::blob))
        if (r.path.find(d) != std::string::npos) gets.push_back(r);
    ASSERT_EQ(gets.size(), 2u);
    EXPECT_EQ(gets[0].range_start, 0);
    EXPECT_EQ(gets[1].range_start, 123457);  // resumed where the drop left it
    EXPECT_EQ(gets[1].range_end, 299999);
    EXPECT_EQ(reg.bytes_served(), 300000 + kConfigBytes);  // no byte twice (+ the config blob)
    Store st(dir.str());
    auto ref = st.resolve(model_name(reg));
    ASSERT_TRUE(ref.ok());
    EXPECT_EQ(read_file(ref->model_path), weights);
    expect_store_consistent(dir.str());
}

TEST(Pull, InterruptedPullResumesInTheNextPull) {
    TempDir dir("resume");
    TestRegistry reg;
    const std::string weights = TestRegistry::random_blob(400000, 4);
    const std::string d = TestRegistry::digest_of(weights);
    reg.add_model("library", "tiny", "latest", {{kMediaModel, weights}});
    reg.set_hook([](const TestRegistry::Request& r) {
        Fault f;
        if (r.kind == Kind::blob) f.bytes_per_s = 1000000;
        return f;
    });
    // The first pull is cancelled (as by a client going away, or Ctrl-C) at about 40%.
    PullOptions o = test_options();
    std::atomic<int64_t> seen{0};
    o.transfer.cancelled = [&] { return seen.load() > 160000; };
    Store st(dir.str());
    Status s = pull_model(st, model_name(reg), o, [&](const PullEvent& e) {
        if (e.digest == d) seen = e.completed;
    });
    ASSERT_FALSE(s.ok());
    EXPECT_NE(s.message().find("cancelled"), std::string::npos) << s.message();
    EXPECT_FALSE(has_manifests(dir.str()));
    const std::string partial = dir.str() + "/blobs/sha256-" + d.substr(7) + "-partial";
    ASSERT_TRUE(fs::exists(partial));
    auto state = nlohmann::json::parse(read_file(partial + "-0"));
    const int64_t kept = state["Completed"].get<int64_t>();
    EXPECT_GT(kept, 160000);
    EXPECT_LT(kept, 400000);
    expect_store_consistent(dir.str(), /*partials_allowed=*/true);

    reg.wait_idle();
    reg.reset_counters();
    reg.set_hook(nullptr);
    Pulled p = pull(dir.str(), model_name(reg));
    ASSERT_TRUE(p.status.ok()) << p.status.message();
    auto gets = reg.requests_of(Kind::blob);
    ASSERT_EQ(gets.size(), 1u);  // the config blob was already there
    EXPECT_EQ(gets[0].range_start, kept);
    EXPECT_EQ(reg.bytes_served(), 400000 - kept);
    // The first progress event of the resumed pull starts from the kept bytes.
    for (const auto& e : p.events)
        if (e.digest == d) {
            EXPECT_EQ(e.completed, kept);
            break;
        }
    EXPECT_FALSE(fs::exists(partial));
    EXPECT_FALSE(fs::exists(partial + "-0"));
    expect_store_consistent(dir.str());
}

TEST(Pull, WrongDigestFailsClearlyAndLeavesNothing) {
    TempDir dir("digest");
    TestRegistry reg;
    const std::string weights = TestRegistry::random_blob(150000, 5);
    const std::string d = TestRegistry::digest_of(weights);
    reg.add_model("library", "tiny", "latest", {{kMediaModel, weights}});
    reg.set_hook([&](const TestRegistry::Request& r) {
        Fault f;
        f.corrupt = r.kind == Kind::blob && r.path.find(d) != std::string::npos;
        return f;
    });
    Pulled p = pull(dir.str(), model_name(reg));
    ASSERT_FALSE(p.status.ok());
    EXPECT_EQ(p.status.code(), StatusCode::corrupt);
    EXPECT_NE(p.status.message().find("digest mismatch"), std::string::npos) << p.status.message();
    EXPECT_NE(p.status.message().find(d), std::string::npos) << p.status.message();
    EXPECT_FALSE(has_manifests(dir.str()));
    EXPECT_FALSE(fs::exists(dir.str() + "/blobs/sha256-" + d.substr(7)));
    EXPECT_FALSE(fs::exists(dir.str() + "/blobs/sha256-" + d.substr(7) + "-partial"));
    expect_store_consistent(dir.str());
    EXPECT_NE(p.events.back().status, "success");
}

TEST(Pull, UnknownModelIsNotFound) {
    TempDir dir("404");
    TestRegistry reg;
    Pulled p = pull(dir.str(), model_name(reg, "nothere"));
    ASSERT_FALSE(p.status.ok());
    EXPECT_EQ(p.status.code(), StatusCode::not_found);
    EXPECT_NE(p.status.message().find("model '" + reg.host() + "/library/nothere:latest' not found"), std::string::npos)
        << p.status.message();
    EXPECT_EQ(reg.requests_of(Kind::manifest).size(), 1u);  // a 404 is an answer, not a retry
    EXPECT_FALSE(has_manifests(dir.str()));
}

TEST(Pull, MissingBlobIsNotFound) {
    TempDir dir("blob404");
    TestRegistry reg;
    const std::string weights = TestRegistry::random_blob(1000, 6);
    reg.add_model("library", "tiny", "latest", {{kMediaModel, weights}});
    reg.set_hook([](const TestRegistry::Request& r) {
        Fault f;
        if (r.kind == Kind::blob) f.status = 404;
        return f;
    });
    Pulled p = pull(dir.str(), model_name(reg));
    ASSERT_FALSE(p.status.ok());
    EXPECT_EQ(p.status.code(), StatusCode::not_found) << p.status.message();
    EXPECT_NE(p.status.message().find("HTTP 404"), std::string::npos) << p.status.message();
    EXPECT_EQ(reg.requests_of(Kind::blob).size(), 1u);  // 4xx is not retried
    EXPECT_FALSE(has_manifests(dir.str()));
}

TEST(Pull, ServerErrorsAreRetriedWithBackoff) {
    TempDir dir("5xx");
    TestRegistry reg;
    reg.add_model("library", "tiny", "latest", {{kMediaModel, TestRegistry::random_blob(5000, 7)}});
    std::atomic<int> n{0};
    reg.set_hook([&](const TestRegistry::Request& r) {
        Fault f;
        if (r.kind != Kind::other && n++ < 3) f.status = 503;
        return f;
    });
    Pulled p = pull(dir.str(), model_name(reg));
    ASSERT_TRUE(p.status.ok()) << p.status.message();
    EXPECT_EQ(reg.requests_of(Kind::manifest).size(), 4u);

    // Without end, the pull gives up after max_failures and says why.
    TempDir dir2("5xx-forever");
    reg.set_hook([](const TestRegistry::Request&) {
        Fault f;
        f.status = 500;
        return f;
    });
    p = pull(dir2.str(), model_name(reg));
    ASSERT_FALSE(p.status.ok());
    EXPECT_NE(p.status.message().find("HTTP 500"), std::string::npos) << p.status.message();
}

TEST(Pull, StallTimesOutAndResumes) {
    TempDir dir("stall");
    TestRegistry reg;
    const std::string weights = TestRegistry::random_blob(100000, 8);
    const std::string d = TestRegistry::digest_of(weights);
    reg.add_model("library", "tiny", "latest", {{kMediaModel, weights}});
    std::atomic<int> n{0};
    reg.set_hook([&](const TestRegistry::Request& r) {
        Fault f;
        if (r.kind == Kind::blob && r.path.find(d) != std::string::npos && n++ == 0) {
            f.stall_after = 30000;
            f.stall_ms = 5000;  // far beyond the 400 ms stall timeout
        }
        return f;
    });
    const auto t0 = std::chrono::steady_clock::now();
    Pulled p = pull(dir.str(), model_name(reg));
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    ASSERT_TRUE(p.status.ok()) << p.status.message();
    EXPECT_LT(s, 3.0);
    std::vector<int64_t> starts;
    for (const auto& r : reg.requests_of(Kind::blob))
        if (r.path.find(d) != std::string::npos) starts.push_back(r.range_start);
    ASSERT_EQ(starts.size(), 2u);
    EXPECT_EQ(starts[1], 30000);
    expect_store_consistent(dir.str());
}

TEST(Pull, SurvivesAServerRestartMidBlob) {
    TempDir dir("restart");
    TestRegistry reg;
    const std::string weights = TestRegistry::random_blob(300000, 9);
    reg.add_model("library", "tiny", "latest", {{kMediaModel, weights}});
    reg.set_hook([](const TestRegistry::Request& r) {
        Fault f;
        if (r.kind == Kind::blob) f.bytes_per_s = 1000000;
        return f;
    });
    Pulled p;
    std::thread t([&] { p = pull(dir.str(), model_name(reg)); });
    for (int i = 0; i < 500 && reg.bytes_served() < 100000; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    reg.stop();  // every connection dies mid-body; nothing listens for a while
    std::this_thread::sleep_for(std::chrono::milliseconds(150));
    reg.start();
    t.join();
    ASSERT_TRUE(p.status.ok()) << p.status.message();
    const auto gets = reg.requests_of(Kind::blob);
    ASSERT_GE(gets.size(), 3u);  // config, weights, weights again (resumed)
    EXPECT_GT(gets.back().range_start, 50000);
    Store st(dir.str());
    auto ref = st.resolve(model_name(reg));
    ASSERT_TRUE(ref.ok());
    EXPECT_EQ(read_file(ref->model_path), weights);
    expect_store_consistent(dir.str());
}

TEST(Pull, LargeBlobsComeInParallelRanges) {
    TempDir dir("parts");
    TestRegistry reg;
    const int64_t size = 1000003;  // not a multiple of the part count
    const std::string weights = TestRegistry::random_blob((size_t)size, 10);
    const std::string d = TestRegistry::digest_of(weights);
    reg.add_model("library", "tiny", "latest", {{kMediaModel, weights}});
    std::atomic<int> n{0};
    reg.set_hook([&](const TestRegistry::Request& r) {
        Fault f;
        if (r.kind == Kind::blob && r.path.find(d) != std::string::npos) {
            f.bytes_per_s = 4000000;  // slow enough that the parts overlap in time
            if (n++ == 1) f.drop_after = 1000;  // and one of them is cut short once
        }
        return f;
    });
    PullOptions o = test_options();
    o.transfer.parallel_min_bytes = 256 * 1024;
    o.transfer.n_parts = 4;
    Pulled p = pull(dir.str(), model_name(reg), o);
    ASSERT_TRUE(p.status.ok()) << p.status.message();
    std::vector<std::pair<int64_t, int64_t>> ranges;
    for (const auto& r : reg.requests_of(Kind::blob))
        if (r.path.find(d) != std::string::npos) ranges.push_back({r.range_start, r.range_end});
    ASSERT_EQ(ranges.size(), 5u);  // four parts, one of them twice
    std::sort(ranges.begin(), ranges.end());
    const int64_t each = size / 4;
    std::vector<std::pair<int64_t, int64_t>> want = {{0, each - 1}, {each, 2 * each - 1}, {2 * each, 3 * each - 1},
                                                     {3 * each, size - 1}};
    std::vector<std::pair<int64_t, int64_t>> firsts;
    for (const auto& r : ranges)
        if (std::find(want.begin(), want.end(), r) != want.end()) firsts.push_back(r);
    EXPECT_EQ(firsts.size(), 4u);
    EXPECT_EQ(reg.bytes_served(), size + kConfigBytes);
    Store st(dir.str());
    auto ref = st.resolve(model_name(reg));
    ASSERT_TRUE(ref.ok());
    EXPECT_EQ(read_file(ref->model_path), weights);
    expect_store_consistent(dir.str());
}

TEST(Pull, PrimaryDownUsesMirrorAndStillVerifies) {
    TempDir dir("mirror");
    // The primary: a port nothing listens on.
    int dead_port;
    {
        TestRegistry gone;
        dead_port = gone.port();
    }
    TestRegistry bad, good;
    const std::string weights = TestRegistry::random_blob(120000, 11);
    const std::string d = TestRegistry::digest_of(weights);
    for (TestRegistry* r : {&bad, &good}) r->add_model("library", "tiny", "latest", {{kMediaModel, weights}});
    bad.set_hook([&](const TestRegistry::Request& r) {
        Fault f;
        f.corrupt = r.kind == Kind::blob && r.path.find(d) != std::string::npos;
        return f;
    });
    const std::string name = "127.0.0.1:" + std::to_string(dead_port) + "/library/tiny:latest";

    // Only a mirror that serves wrong bytes: the digest catches it.
    PullOptions o = test_options();
    o.registry.mirrors = {bad.url()};
    Pulled p = pull(dir.str(), name, o);
    ASSERT_FALSE(p.status.ok());
    EXPECT_EQ(p.status.code(), StatusCode::corrupt) << p.status.message();
    EXPECT_NE(p.status.message().find(bad.url()), std::string::npos) << p.status.message();
    EXPECT_FALSE(has_manifests(dir.str()));
    expect_store_consistent(dir.str());

    // A bad mirror, then a good one: the good one's bytes land.
    o.registry.mirrors = {bad.url(), good.url()};
    bad.reset_counters();
    p = pull(dir.str(), name, o);
    ASSERT_TRUE(p.status.ok()) << p.status.message();
    EXPECT_GT(bad.bytes_served(), 0);
    EXPECT_GT(good.bytes_served(), 0);
    Store st(dir.str());
    auto ref = st.resolve(name);
    ASSERT_TRUE(ref.ok());
    EXPECT_EQ(read_file(ref->model_path), weights);
    expect_store_consistent(dir.str());
}

TEST(Pull, StalledPrimaryMovesToTheMirror) {
    TempDir dir("mirror-stall");
    TestRegistry primary, mirror;
    const std::string weights = TestRegistry::random_blob(80000, 12);
    for (TestRegistry* r : {&primary, &mirror}) r->add_model("library", "tiny", "latest", {{kMediaModel, weights}});
    primary.set_hook([](const TestRegistry::Request& r) {
        Fault f;
        if (r.kind == Kind::blob) {
            f.stall_after = 1000;
            f.stall_ms = 5000;
        }
        return f;
    });
    PullOptions o = test_options();
    o.registry.mirrors = {mirror.url()};
    Pulled p = pull(dir.str(), model_name(primary), o);
    ASSERT_TRUE(p.status.ok()) << p.status.message();
    EXPECT_FALSE(mirror.requests_of(Kind::blob).empty());
    EXPECT_TRUE(mirror.requests_of(Kind::manifest).empty());  // the primary answered that
    expect_store_consistent(dir.str());
}

TEST(Pull, FollowsRedirectsToACdn) {
    TempDir dir("cdn");
    TestRegistry reg;
    reg.set_redirect_blobs(true);
    reg.add_model("library", "tiny", "latest", {{kMediaModel, TestRegistry::random_blob(50000, 13)}});
    Pulled p = pull(dir.str(), model_name(reg));
    ASSERT_TRUE(p.status.ok()) << p.status.message();
    bool cdn = false;
    for (const auto& r : reg.requests_of(Kind::blob)) cdn = cdn || r.path.rfind("/cdn/", 0) == 0;
    EXPECT_TRUE(cdn);
}

TEST(Pull, ServerIgnoringRangeStillResumesCorrectly) {
    TempDir dir("norange");
    TestRegistry reg;
    const std::string weights = TestRegistry::random_blob(100000, 14);
    const std::string d = TestRegistry::digest_of(weights);
    reg.add_model("library", "tiny", "latest", {{kMediaModel, weights}});
    std::atomic<int> n{0};
    reg.set_hook([&](const TestRegistry::Request& r) {
        Fault f;
        if (r.kind == Kind::blob && r.path.find(d) != std::string::npos) {
            f.ignore_range = true;
            if (n++ == 0) f.drop_after = 40000;
        }
        return f;
    });
    Pulled p = pull(dir.str(), model_name(reg));
    ASSERT_TRUE(p.status.ok()) << p.status.message();
    Store st(dir.str());
    auto ref = st.resolve(model_name(reg));
    ASSERT_TRUE(ref.ok());
    EXPECT_EQ(read_file(ref->model_path), weights);
}

TEST(Pull, ProxyFromTheEnvironmentIsUsed) {
    TempDir dir("proxy");
    TestRegistry proxy;  // answers absolute-form requests from its own content
    const std::string weights = TestRegistry::random_blob(30000, 15);
    proxy.add_model("library", "tiny", "latest", {{kMediaModel, weights}});
    int dead_port;
    {
        TestRegistry gone;
        dead_port = gone.port();
    }
    struct Env {
        std::string name;
        std::optional<std::string> old;
    };
    std::vector<Env> saved;
    for (const char* v : {"http_proxy", "no_proxy", "NO_PROXY"}) {
        const char* e = std::getenv(v);
        saved.push_back({v, e ? std::optional<std::string>(e) : std::nullopt});
    }
    ::setenv("http_proxy", proxy.url().c_str(), 1);
    ::unsetenv("no_proxy");
    ::unsetenv("NO_PROXY");
    Pulled p = pull(dir.str(), "127.0.0.1:" + std::to_string(dead_port) + "/library/tiny:latest");
    for (const auto& e : saved)
        if (e.old) ::setenv(e.name.c_str(), e.old->c_str(), 1);
        else ::unsetenv(e.name.c_str());
    ASSERT_TRUE(p.status.ok()) << p.status.message();
    const auto reqs = proxy.requests();
    ASSERT_FALSE(reqs.empty());
    const std::string origin = "http://127.0.0.1:" + std::to_string(dead_port) + "/v2/";
    for (const auto& r : reqs) {
        EXPECT_TRUE(r.proxied) << r.target;
        EXPECT_EQ(r.target.rfind(origin, 0), 0u) << r.target;
    }
}

TEST(Pull, PullsOfTheSameBlobTakeTurns) {
    TempDir dir("shared");
    TestRegistry reg;
    const std::string weights = TestRegistry::random_blob(300000, 16);
    reg.add_model("library", "one", "latest", {{kMediaModel, weights}});
    reg.add_model("library", "two", "latest", {{kMediaModel, weights}, {kMediaSystem, "two"}});
    reg.set_hook([](const TestRegistry::Request& r) {
        Fault f;
        if (r.kind == Kind::blob) f.bytes_per_s = 3000000;
        return f;
    });
    Pulled a, b;
    std::thread ta([&] { a = pull(dir.str(), model_name(reg, "one")); });
    std::thread tb([&] { b = pull(dir.str(), model_name(reg, "two")); });
    ta.join();
    tb.join();
    ASSERT_TRUE(a.status.ok()) << a.status.message();
    ASSERT_TRUE(b.status.ok()) << b.status.message();
    EXPECT_EQ(reg.bytes_served(), 300000 + kConfigBytes + 3);  // the weights once
    EXPECT_EQ(Store(dir.str()).list().size(), 2u);
    expect_store_consistent(dir.str());
}

TEST(Pull, RepullOfAChangedTagPrunesTheOldBlobs) {
    TempDir dir("prune");
    TestRegistry reg;
    const std::string v1 = TestRegistry::random_blob(20000, 17), v2 = TestRegistry::random_blob(20000, 18);
    reg.add_model("library", "tiny", "latest", {{kMediaModel, v1}});
    ASSERT_TRUE(pull(dir.str(), model_name(reg)).status.ok());
    reg.add_model("library", "tiny", "latest", {{kMediaModel, v2}});
    ASSERT_TRUE(pull(dir.str(), model_name(reg)).status.ok());
    Store st(dir.str());
    EXPECT_FALSE(st.has_blob(TestRegistry::digest_of(v1)));
    EXPECT_TRUE(st.has_blob(TestRegistry::digest_of(v2)));
    expect_store_consistent(dir.str());
}

// ---- names ----

TEST(PullNames, SchemesAndHosts) {
    RegistryOptions o;
    auto r = parse_remote_name("llama3", o);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->base_url, "https://registry.ollama.ai");
    EXPECT_EQ(r->name.full(), "registry.ollama.ai/library/llama3:latest");
    r = parse_remote_name("example.com:5000/team/model:v1", o);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->base_url, "https://example.com:5000");
    EXPECT_FALSE(parse_remote_name("http://example.com/team/model", o).ok());
    EXPECT_FALSE(parse_remote_name("./model.gguf", o).ok());
    o.insecure = true;
    r = parse_remote_name("example.com:5000/team/model:v1", o);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->base_url, "http://example.com:5000");
    o.hf_endpoint = "http://127.0.0.1:1";
    for (const char* n : {"hf.co/user/Repo-GGUF:q8_0", "huggingface.co/user/Repo-GGUF:q8_0"}) {
        r = parse_remote_name(n, o);
        ASSERT_TRUE(r.ok()) << n;
        EXPECT_EQ(r->kind, RemoteName::Kind::huggingface);
        EXPECT_EQ(r->base_url, "http://127.0.0.1:1");
        EXPECT_EQ(r->hf_repo, "user/Repo-GGUF");
        EXPECT_EQ(r->hf_quant, "q8_0");
    }
    r = parse_remote_name("hf.co/user/Repo-GGUF", o);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->hf_quant, "");
}

TEST(PullNames, MirrorsAndEndpointFromTheEnvironment) {
    ::setenv("HEARTH_MIRRORS", " http://a.example/ ,https://b.example:8443,", 1);
    ::setenv("HF_ENDPOINT", "https://hf-mirror.example/", 1);
    auto o = RegistryOptions::from_env();
    ::setenv("HEARTH_MIRRORS", "ftp://nope", 1);
    auto bad = RegistryOptions::from_env();
    ::unsetenv("HEARTH_MIRRORS");
    ::unsetenv("HF_ENDPOINT");
    ASSERT_TRUE(o.ok()) << o.status().message();
    EXPECT_EQ(o->mirrors, (std::vector<std::string>{"http://a.example", "https://b.example:8443"}));
    EXPECT_EQ(o->hf_endpoint, "https://hf-mirror.example");
    ASSERT_FALSE(bad.ok());
    EXPECT_NE(bad.status().message().find("HEARTH_MIRRORS"), std::string::npos);
}

TEST(PullNames, HubFilePick) {
    const std::vector<std::string> files = {"README.md", "m.Q4_0.gguf", "m.Q4_0_4_4.gguf", "m.Q4_K_M.gguf",
                                            "m.Q4_K_S.gguf", "m.Q8_0.gguf", "mmproj-m-f16.gguf"};
    EXPECT_EQ(*pick_hf_file(files, "", "u/r"), "m.Q4_K_M.gguf");
    EXPECT_EQ(*pick_hf_file(files, "q8_0", "u/r"), "m.Q8_0.gguf");
    EXPECT_EQ(*pick_hf_file(files, "Q4_0", "u/r"), "m.Q4_0.gguf");  // the whole word wins
    auto ambiguous = pick_hf_file(files, "Q4_K", "u/r");
    ASSERT_FALSE(ambiguous.ok());
    EXPECT_EQ(ambiguous.status().code(), StatusCode::invalid_argument);
    EXPECT_NE(ambiguous.status().message().find("m.Q4_K_S.gguf"), std::string::npos);
    auto none = pick_hf_file(files, "Q5_K_M", "u/r");
    ASSERT_FALSE(none.ok());
    EXPECT_EQ(none.status().code(), StatusCode::not_found);
    EXPECT_NE(none.status().message().find("m.Q8_0.gguf"), std::string::npos);
    EXPECT_EQ(*pick_hf_file({"only.F16.gguf", "mmproj.gguf"}, "", "u/r"), "only.F16.gguf");
    EXPECT_FALSE(pick_hf_file({"a.F16.gguf", "b.F32.gguf"}, "", "u/r").ok());
    EXPECT_EQ(pick_hf_file({"README.md"}, "", "u/r").status().code(), StatusCode::not_found);
}

// ---- the Hub ----

TEST(PullHub, PicksTheQuantAndBuildsAManifest) {
    TempDir dir("hf");
    TestRegistry hub;
    const std::string q4 = read_file(test::testdata_path("models/llama3-tiny.Q4_K_M.gguf"));
    const std::string q8 = read_file(test::testdata_path("models/llama3-tiny.Q8_0.gguf"));
    hub.add_hf_file("test/llama3-tiny-GGUF", "llama3-tiny.Q4_K_M.gguf", q4);
    hub.add_hf_file("test/llama3-tiny-GGUF", "llama3-tiny.Q8_0.gguf", q8);
    hub.add_hf_file("test/llama3-tiny-GGUF", "README.md", "# tiny", /*lfs=*/false);
    PullOptions o = test_options();
    o.registry.hf_endpoint = hub.url();
    o.registry.hf_token = "secret";

    Pulled p = pull(dir.str(), "hf.co/test/llama3-tiny-GGUF", o);
    ASSERT_TRUE(p.status.ok()) << p.status.message();
    Store st(dir.str());
    auto ref = st.resolve("hf.co/test/llama3-tiny-GGUF");
    ASSERT_TRUE(ref.ok()) << ref.status().message();
    EXPECT_EQ(ref->model_digest, TestRegistry::digest_of(q4));
    auto info = st.info(*ref);
    ASSERT_TRUE(info.ok()) << info.status().message();
    EXPECT_EQ(info->quantization, "Q4_K_M");
    EXPECT_TRUE(fs::exists(dir.str() + "/manifests/hf.co/test/llama3-tiny-GGUF/latest"));
    // The listing and the file came with the token; Range on the file.
    auto trees = hub.requests_of(Kind::hf_tree);
    ASSERT_EQ(trees.size(), 1u);
    EXPECT_EQ(trees[0].authorization, "Bearer secret");
    auto files = hub.requests_of(Kind::hf_file);
    ASSERT_EQ(files.size(), 1u);
    EXPECT_EQ(files[0].path, "/test/llama3-tiny-GGUF/resolve/main/llama3-tiny.Q4_K_M.gguf");

    // A tag picks another quant, case-insensitively.
    p = pull(dir.str(), "hf.co/test/llama3-tiny-GGUF:q8_0", o);
    ASSERT_TRUE(p.status.ok()) << p.status.message();
    ref = st.resolve("hf.co/test/llama3-tiny-GGUF:q8_0");
    ASSERT_TRUE(ref.ok());
    EXPECT_EQ(ref->model_digest, TestRegistry::digest_of(q8));

    // A quant the repository lacks, and a repository that does not exist.
    p = pull(dir.str(), "hf.co/test/llama3-tiny-GGUF:Q5_K_M", o);
    ASSERT_FALSE(p.status.ok());
    EXPECT_EQ(p.status.code(), StatusCode::not_found);
    EXPECT_NE(p.status.message().find("llama3-tiny.Q8_0.gguf"), std::string::npos) << p.status.message();
    p = pull(dir.str(), "huggingface.co/test/nothing-GGUF", o);
    ASSERT_FALSE(p.status.ok());
    EXPECT_EQ(p.status.code(), StatusCode::not_found);
    EXPECT_NE(p.status.message().find("not found"), std::string::npos) << p.status.message();
    EXPECT_EQ(st.list().size(), 2u);
    expect_store_consistent(dir.str());
}

TEST(PullHub, MirrorsGetNoToken) {
    TempDir dir("hf-mirror");
    int dead_port;
    {
        TestRegistry gone;
        dead_port = gone.port();
    }
    TestRegistry mirror;
    mirror.add_hf_file("test/one-GGUF", "one.gguf", TestRegistry::random_blob(10000, 19));
    PullOptions o = test_options();
    o.registry.hf_endpoint = "http://127.0.0.1:" + std::to_string(dead_port);
    o.registry.hf_token = "secret";
    o.registry.mirrors = {mirror.url()};
    Pulled p = pull(dir.str(), "hf.co/test/one-GGUF", o);
    ASSERT_TRUE(p.status.ok()) << p.status.message();
    for (const auto& r : mirror.requests()) EXPECT_EQ(r.authorization, "") << r.path;
}

}  // namespace
}  // namespace hearth::store
