// The fit check before a pull (store/pull.h): the weights' GGUF header read with Range requests
// (grown until the tensor infos are in), the report as a status before any blob, a refusal that
// downloads nothing, and the cases that must not break a pull: a source that ignores Range,
// weights that are not GGUF. Also fit_remote (the header of a model not in the store).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "gguf/gguf.h"
#include "store/pull.h"
#include "store/test_registry.h"
#include "support/testdata.h"

namespace hearth::store {
namespace {

namespace fs = std::filesystem;
using test::TestRegistry;
using Kind = TestRegistry::Kind;
constexpr int64_t kGiB = int64_t{1} << 30;

class TempDir {
public:
    explicit TempDir(const std::string& tag) {
        path_ = fs::temp_directory_path() / ("hearth-pull-fit-test-" + std::to_string(::getpid()) + "-" + tag);
        fs::remove_all(path_);
        fs::create_directories(path_);
    }
    ~TempDir() { fs::remove_all(path_); }
    std::string str() const { return path_.string(); }

private:
    fs::path path_;
};

std::string read_file(const std::string& p) {
    std::ifstream f(p, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

std::string model_bytes(const std::string& name) { return read_file(test::testdata_path("models/" + name + ".gguf")); }

int64_t data_offset(const std::string& name) {
    auto f = gguf::open_gguf(test::testdata_path("models/" + name + ".gguf"));
    EXPECT_TRUE(f.ok());
    return f.ok() ? (int64_t)(*f)->data_offset : 0;
}

// Short timeouts; the fit check on, on a machine the test describes.
PullOptions fit_options(FitCheck check, int64_t mem_available) {
    PullOptions o;
    o.registry.insecure = true;
    o.transfer.allow_http = true;
    o.transfer.backoff_first = std::chrono::milliseconds(20);
    o.transfer.backoff_max = std::chrono::milliseconds(200);
    o.transfer.stall_timeout = std::chrono::milliseconds(400);
    o.transfer.connect_timeout = std::chrono::milliseconds(1000);
    o.transfer.max_failures = 5;
    o.fit_check = check;
    o.fit.mem_available = mem_available;
    o.fit.mem_total = 2 * mem_available;
    return o;
}

struct Pulled {
    Status status;
    std::vector<PullEvent> events;
};

Pulled pull(const std::string& root, const std::string& name, const PullOptions& o) {
    Store st(root);
    Pulled p;
    p.status = pull_model(st, name, o, [&](const PullEvent& e) { p.events.push_back(e); });
    return p;
}

std::string model_name(const TestRegistry& r, const std::string& model) { return r.host() + "/library/" + model + ":latest"; }

// The events that carry a fit report.
std::vector<PullEvent> fit_events(const Pulled& p) {
    std::vector<PullEvent> out;
    for (const auto& e : p.events)
        if (!e.fit.is_null()) out.push_back(e);
    return out;
}

// Index of the first event of a blob's progress; events.size() when none.
size_t first_blob_event(const Pulled& p) {
    for (size_t i = 0; i < p.events.size(); ++i)
        if (!p.events[i].digest.empty()) return i;
    return p.events.size();
}

std::vector<TestRegistry::Request> requests_for(const TestRegistry& reg, const std::string& digest) {
    std::vector<TestRegistry::Request> out;
    for (const auto& r : reg.requests_of(Kind::blob))
        if (r.path.find(digest) != std::string::npos) out.push_back(r);
    return out;
}

// Files in blobs/ (finished or partial).
std::vector<std::string> blob_files(const std::string& root) {
    std::vector<std::string> out;
    std::error_code ec;
    for (auto it = fs::directory_iterator(root + "/blobs", ec); !ec && it != fs::directory_iterator(); it.increment(ec))
        out.push_back(it->path().filename().string());
    return out;
}

// The model's report from the file itself, on the same machine: what the pull must say.
FitReport report_of(const std::string& name, const PullOptions& o) {
    auto r = fit_file(test::testdata_path("models/" + name + ".gguf"), o.fit);
    EXPECT_TRUE(r.ok()) << r.status().message();
    return r.ok() ? *r : FitReport{};
}

TEST(PullFit, FitsIsAStatusBeforeTheBlobsFromTheHeaderAlone) {
    TempDir dir("fits");
    TestRegistry reg;
    const std::string weights = model_bytes("llama3-tiny.F16");
    const std::string d = TestRegistry::digest_of(weights);
    reg.add_model("library", "tiny", "latest", {{kMediaModel, weights}});
    PullOptions o = fit_options(FitCheck::warn, 8 * kGiB);
    o.fit_first_bytes = 1024;  // the header is 16 KB: it must grow the range
    Pulled p = pull(dir.str(), model_name(reg, "tiny"), o);
    ASSERT_TRUE(p.status.ok()) << p.status.message();

    auto fits = fit_events(p);
    ASSERT_EQ(fits.size(), 1u);
    EXPECT_EQ(fits[0].status.rfind("fits in memory: needs ", 0), 0u) << fits[0].status;
    EXPECT_NE(fits[0].status.find(" of 8.0 GiB available"), std::string::npos) << fits[0].status;
    EXPECT_EQ(fits[0].to_json()["status"], fits[0].status);
    EXPECT_EQ(fits[0].to_json()["fit"]["fits"], true);
    // The same numbers as from the whole file.
    EXPECT_EQ(fits[0].fit.dump(), fit_report_json(report_of("llama3-tiny.F16", o)).dump());
    // After "pulling manifest", before any blob.
    ASSERT_GE(p.events.size(), 3u);
    EXPECT_EQ(p.events[0].status, "pulling manifest");
    EXPECT_EQ(p.events[1].status, fits[0].status);
    EXPECT_LT(1u, first_blob_event(p));

    // Range requests over the header only, grown from 1 KB, then the download.
    const int64_t header = data_offset("llama3-tiny.F16");
    auto gets = requests_for(reg, d);
    ASSERT_GE(gets.size(), 3u);
    int64_t next = 0, header_bytes = 0;
    size_t i = 0;
    for (; i + 1 < gets.size(); ++i) {
        EXPECT_EQ(gets[i].range_start, next) << i;  // each picks up where the last ended
        ASSERT_GE(gets[i].range_end, gets[i].range_start) << i;
        header_bytes += gets[i].range_end - gets[i].range_start + 1;
        next = gets[i].range_end + 1;
    }
    EXPECT_EQ(gets[0].range_end, 1023);
    EXPECT_GE(header_bytes, header);
    EXPECT_LT(header_bytes, 4 * header);
    EXPECT_LT(i, 8u) << "too many requests for a 16 KB header";
    EXPECT_EQ(gets.back().range_start, 0);  // the download itself
    EXPECT_EQ(reg.bytes_served(), (int64_t)weights.size() + header_bytes + (int64_t)TestRegistry::kConfig.size());
    EXPECT_TRUE(fs::exists(dir.str() + "/blobs/sha256-" + d.substr(7)));
}

// Between F16 and Q8_0: the F16 does not fit, the Q8_0 would.
int64_t machine_between_f16_and_q8(const PullOptions& o) {
    PullOptions big = o;
    big.fit.mem_available = 64 * kGiB;
    const FitReport r = report_of("llama3-tiny.F16", big);
    int64_t q8 = 0;
    for (const auto& a : r.alternatives)
        if (a.type == "Q8_0") q8 = a.total_bytes;
    EXPECT_GT(q8, 0);
    EXPECT_LT(q8, r.need.total_bytes());
    return (q8 + r.need.total_bytes()) / 2;
}

TEST(PullFit, DoesNotFitWarnsAndDownloadsAnyway) {
    TempDir dir("warn");
    TestRegistry reg;
    const std::string weights = model_bytes("llama3-tiny.F16");
    reg.add_model("library", "tiny", "latest", {{kMediaModel, weights}});
    PullOptions o = fit_options(FitCheck::warn, 0);
    o.fit.mem_available = machine_between_f16_and_q8(o);
    Pulled p = pull(dir.str(), model_name(reg, "tiny"), o);
    ASSERT_TRUE(p.status.ok()) << p.status.message();
    auto fits = fit_events(p);
    ASSERT_EQ(fits.size(), 1u);
    EXPECT_EQ(fits[0].status.rfind("does not fit: needs ", 0), 0u) << fits[0].status;
    EXPECT_NE(fits[0].status.find(" available; try Q8_0 (needs "), std::string::npos) << fits[0].status;
    EXPECT_EQ(fits[0].fit["fits"], false);
    EXPECT_EQ(fits[0].fit["suggested_quantization"], "Q8_0");
    EXPECT_TRUE(Store(dir.str()).resolve(model_name(reg, "tiny")).ok());
}

TEST(PullFit, DoesNotFitWithRequireRefusesBeforeAnyBlobByte) {
    TempDir dir("require");
    TestRegistry reg;
    const std::string weights = model_bytes("llama3-tiny.F16");
    const std::string d = TestRegistry::digest_of(weights);
    reg.add_model("library", "tiny", "latest", {{kMediaModel, weights}, {kMediaTemplate, "{{ .Prompt }}"}});
    PullOptions o = fit_options(FitCheck::require, 0);
    o.fit.mem_available = machine_between_f16_and_q8(o);
    Pulled p = pull(dir.str(), model_name(reg, "tiny"), o);
    ASSERT_FALSE(p.status.ok());
    EXPECT_EQ(p.status.code(), StatusCode::unsupported);
    EXPECT_NE(p.status.message().find("does not fit: needs "), std::string::npos) << p.status.message();
    EXPECT_NE(p.status.message().find("try Q8_0"), std::string::npos) << p.status.message();
    EXPECT_NE(p.status.message().find("nothing was downloaded"), std::string::npos) << p.status.message();
    EXPECT_EQ(first_blob_event(p), p.events.size());  // no blob progress at all
    EXPECT_TRUE(blob_files(dir.str()).empty());        // not a byte: no config, no partial
    EXPECT_FALSE(fs::exists(dir.str() + "/manifests"));
    // The registry served the header and nothing else: no config, no template, no download.
    // (a first look at 64 KB: the whole 16 KB header)
    ASSERT_LT(data_offset("llama3-tiny.F16"), 64 << 10);
    const auto gets = reg.requests_of(Kind::blob);
    ASSERT_EQ(gets.size(), 1u);
    EXPECT_NE(gets[0].path.find(d), std::string::npos) << gets[0].path;
    EXPECT_EQ(gets[0].range, "bytes=0-65535");
    reg.wait_idle();
    EXPECT_LE(reg.bytes_served(), 64 << 10);

    // When it fits, the same check lets it through.
    o.fit.mem_available = 8 * kGiB;
    p = pull(dir.str(), model_name(reg, "tiny"), o);
    ASSERT_TRUE(p.status.ok()) << p.status.message();
    ASSERT_EQ(fit_events(p).size(), 1u);
    EXPECT_EQ(fit_events(p)[0].fit["fits"], true);
}

TEST(PullFit, ASourceIgnoringRangeDoesNotBreakThePull) {
    TempDir dir("norange");
    TestRegistry reg;
    const std::string weights = model_bytes("llama3-tiny.Q4_K_M");
    reg.add_model("library", "tiny", "latest", {{kMediaModel, weights}});
    reg.set_hook([](const TestRegistry::Request& r) {
        TestRegistry::Fault f;
        f.ignore_range = r.kind == Kind::blob;  // 200 with the whole body, always
        return f;
    });
    // Even with require: a fit that cannot be told does not stop the pull.
    PullOptions o = fit_options(FitCheck::require, 1 << 20);  // 1 MiB: it would not fit
    o.fit_first_bytes = 1024;  // the header is not in the first answer's first bytes
    Pulled p = pull(dir.str(), model_name(reg, "tiny"), o);
    ASSERT_TRUE(p.status.ok()) << p.status.message();
    EXPECT_TRUE(fit_events(p).empty());
    bool said = false;
    for (const auto& e : p.events)
        said = said || e.status.find("cannot tell whether it fits before downloading") != std::string::npos;
    EXPECT_TRUE(said);  // asked to check: says why it could not
    auto ref = Store(dir.str()).resolve(model_name(reg, "tiny"));
    ASSERT_TRUE(ref.ok()) << ref.status().message();
    EXPECT_EQ(read_file(ref->model_path), weights);

    // Warn (the default of hearth pull): silent. The first answer held the whole header (64 KB
    // asked for, a 16 KB header): its first bytes give the report although Range was ignored.
    TempDir dir2("norange-warn");
    o = fit_options(FitCheck::warn, 8 * kGiB);
    p = pull(dir2.str(), model_name(reg, "tiny"), o);
    ASSERT_TRUE(p.status.ok()) << p.status.message();
    ASSERT_EQ(fit_events(p).size(), 1u);
    EXPECT_EQ(fit_events(p)[0].fit["fits"], true);
    o.fit_first_bytes = 1024;
    TempDir dir3("norange-warn-short");
    p = pull(dir3.str(), model_name(reg, "tiny"), o);
    ASSERT_TRUE(p.status.ok()) << p.status.message();
    EXPECT_TRUE(fit_events(p).empty());
    for (const auto& e : p.events) EXPECT_EQ(e.status.find("cannot tell"), std::string::npos) << e.status;
}

TEST(PullFit, WeightsThatAreNotGgufAreSkippedAfterTheirFirstBytes) {
    TempDir dir("notgguf");
    TestRegistry reg;
    const std::string weights = TestRegistry::random_blob(300000, 7);  // "GGUF" then noise
    const std::string d = TestRegistry::digest_of(weights);
    reg.add_model("library", "tiny", "latest", {{kMediaModel, weights}});
    Pulled p = pull(dir.str(), model_name(reg, "tiny"), fit_options(FitCheck::warn, 8 * kGiB));
    ASSERT_TRUE(p.status.ok()) << p.status.message();
    EXPECT_TRUE(fit_events(p).empty());
    for (const auto& e : p.events) EXPECT_EQ(e.status.find("fit"), std::string::npos) << e.status;
    auto gets = requests_for(reg, d);
    ASSERT_EQ(gets.size(), 2u);  // one look at the first 64 KB, then the download
    EXPECT_EQ(gets[0].range_start, 0);
    EXPECT_EQ(gets[0].range_end, (64 << 10) - 1);
    EXPECT_EQ(gets[1].range_start, 0);
    EXPECT_EQ(gets[1].range_end, (int64_t)weights.size() - 1);
}

TEST(PullFit, AResumedPullReadsTheHeaderFromItsPartialFile) {
    TempDir dir("resume");
    TestRegistry reg;
    const std::string weights = model_bytes("llama3-tiny.F16");
    const std::string d = TestRegistry::digest_of(weights);
    reg.add_model("library", "tiny", "latest", {{kMediaModel, weights}});
    // What a killed pull leaves: the data file at full size, part 0 complete up to `kept`.
    const int64_t kept = 100000;
    const std::string partial = dir.str() + "/blobs/sha256-" + d.substr(7) + "-partial";
    fs::create_directories(dir.str() + "/blobs");
    {
        std::string data = weights.substr(0, kept);
        data.resize(weights.size(), '\0');
        std::ofstream(partial, std::ios::binary) << data;
        std::ofstream(partial + "-0") << nlohmann::json{{"N", 0}, {"Offset", 0}, {"Size", weights.size()}, {"Completed", kept}}.dump();
    }
    Pulled p = pull(dir.str(), model_name(reg, "tiny"), fit_options(FitCheck::warn, 8 * kGiB));
    ASSERT_TRUE(p.status.ok()) << p.status.message();
    ASSERT_EQ(fit_events(p).size(), 1u);
    EXPECT_EQ(fit_events(p)[0].fit["fits"], true);
    auto gets = requests_for(reg, d);
    ASSERT_EQ(gets.size(), 1u);  // the header came from disk: only the resume went out
    EXPECT_EQ(gets[0].range_start, kept);
}

TEST(PullFit, HubPullsAreCheckedToo) {
    TempDir dir("hub");
    TestRegistry hub;
    const std::string q4 = model_bytes("llama3-tiny.Q4_K_M");
    hub.add_hf_file("test/llama3-tiny-GGUF", "llama3-tiny.Q4_K_M.gguf", q4);
    PullOptions o = fit_options(FitCheck::require, 1 << 20);
    o.registry.hf_endpoint = hub.url();
    Pulled p = pull(dir.str(), "hf.co/test/llama3-tiny-GGUF", o);
    ASSERT_FALSE(p.status.ok());
    EXPECT_NE(p.status.message().find("does not fit"), std::string::npos) << p.status.message();
    EXPECT_TRUE(blob_files(dir.str()).empty());
    for (const auto& r : hub.requests_of(Kind::hf_file)) EXPECT_LT(r.range_end, 64 << 10) << r.range;

    o.fit.mem_available = 8 * kGiB;
    p = pull(dir.str(), "hf.co/test/llama3-tiny-GGUF", o);
    ASSERT_TRUE(p.status.ok()) << p.status.message();
    ASSERT_EQ(fit_events(p).size(), 1u);
    EXPECT_EQ(fit_events(p)[0].fit["quantization"], "Q4_K_M");
}

TEST(FitRemote, ReadsOnlyTheHeaderAndWritesNothing) {
    TempDir dir("remote");
    TestRegistry reg;
    const std::string weights = model_bytes("qwen3-tiny.Q8_0");
    reg.add_model("library", "qwen", "latest", {{kMediaModel, weights}});
    PullOptions o = fit_options(FitCheck::off, 8 * kGiB);  // fit_remote does not depend on fit_check
    Store st(dir.str());
    auto r = fit_remote(st, model_name(reg, "qwen"), o);
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_TRUE(r->fits);
    EXPECT_EQ(fit_report_json(*r).dump(), fit_report_json(report_of("qwen3-tiny.Q8_0", o)).dump());
    EXPECT_FALSE(fs::exists(dir.str() + "/blobs"));
    EXPECT_FALSE(fs::exists(dir.str() + "/manifests"));
    EXPECT_LT(reg.bytes_served(), (int64_t)weights.size() / 4);

    auto missing = fit_remote(st, model_name(reg, "nothere"), o);
    ASSERT_FALSE(missing.ok());
    EXPECT_EQ(missing.status().code(), StatusCode::not_found);
    auto noise = (reg.add_model("library", "noise", "latest", {{kMediaModel, TestRegistry::random_blob(5000, 3)}}),
                  fit_remote(st, model_name(reg, "noise"), o));
    ASSERT_FALSE(noise.ok());
    EXPECT_EQ(noise.status().code(), StatusCode::unsupported);
    EXPECT_NE(noise.status().message().find("not a GGUF file"), std::string::npos) << noise.status().message();
}

TEST(FitStatusLine, SaysWhatItNeedsAndWhatToTry) {
    FitReport r;
    r.fits = true;
    r.need.weights_bytes = 5 * kGiB;
    r.need.kv_bytes = kGiB / 2;
    r.mem_available = 30 * kGiB;
    EXPECT_EQ(fit_status_line(r), "fits in memory: needs 5.5 GiB of 30.0 GiB available");
    r.fits = false;
    r.mem_available = 4 * kGiB;
    EXPECT_EQ(fit_status_line(r), "does not fit: needs 5.5 GiB, 4.0 GiB available");
    r.alternatives = {{"Q8_0", 0, 6 * kGiB, false}, {"Q4_K_M", 0, 3 * kGiB, true}};
    r.suggested_type = "Q4_K_M";
    EXPECT_EQ(fit_status_line(r), "does not fit: needs 5.5 GiB, 4.0 GiB available; try Q4_K_M (needs 3.0 GiB)");
    r.suggested_num_ctx = 2048;
    EXPECT_EQ(fit_status_line(r),
              "does not fit: needs 5.5 GiB, 4.0 GiB available; try Q4_K_M (needs 3.0 GiB) or num_ctx 2048");
}

}  // namespace
}  // namespace hearth::store
