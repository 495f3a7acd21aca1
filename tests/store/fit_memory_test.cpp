// store::estimate_memory against what a load really costs: a random-weight llama (model/synth,
// 32000-token vocabulary, 8 layers 1024 wide, about 170 MB of Q8_0) is loaded as the daemon
// loads it (server/service.cpp: open_gguf, Tokenizer::from_gguf, model::load_model on the CPU,
// runtime::Engine::create with the options given to the estimate), one request runs, and the
// growth of this process's peak resident memory (/proc/self/status VmHWM after, minus VmRSS
// before) must be within 10% of the estimate.
//
// What each part of the estimate stands for, and why this run makes it resident:
//   weights  the mapped file. Mapped pages count in RSS once touched (file-backed, RssFile),
//            page cache or not. One forward pass reads every layer's weights, and the logits
//            read all of token_embd (the output matrix: the model is tied); only the metadata
//            and the vocabulary pages are read at open.
//   KV pool  allocated eagerly: KvCache::create zero-fills every layer's K and V, so the whole
//            pool is resident after Engine::create however few positions the request fills.
//   scratch  one forward pass's activations for step_tokens tokens, plus the 32 MiB floor for
//            logits and threads: the prompt is longer than step_tokens, so a full step runs.
//   vocabulary  the parsed metadata and the tokenizer's tables, about 550 bytes a token (17 MiB
//            here; 68 MiB for a 128256-token vocabulary): store::vocabulary_bytes, added to the
//            estimate after this test first measured it (without it the same run with Llama 3's
//            vocabulary came out 15 % above the estimate).
// What the estimate leaves out (thread stacks, the allocator's slack) is process overhead the
// daemon pays too: it is inside the measured growth and must stay within the 10%. The other
// way, the scratch's 32 MiB floor is mostly unused by a one-sequence CPU run (the request adds
// about 8 MiB).
// The model file is written by a child process: write_synth holds a whole tensor (token_embd,
// tens of MB) while it writes, which would raise this process's VmHWM before the measurement.
// Each test runs in its own process under ctest, so VmHWM is this test's own.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <string>

#include "base/sysinfo.h"
#include "gguf/gguf.h"
#include "model/model.h"
#include "model/synth.h"
#include "runtime/engine.h"
#include "store/fit.h"
#include "store/gguf_info.h"
#include "tokenizer/tokenizer.h"

namespace hearth::store {
namespace {
namespace fs = std::filesystem;

constexpr double kMiB = 1024.0 * 1024.0;

// A /proc/self/status field in bytes ("VmHWM:   123456 kB"); -1 when absent.
int64_t status_bytes(const std::string& field) {
    std::ifstream in("/proc/self/status");
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind(field + ":", 0) == 0) return std::stoll(line.substr(field.size() + 1)) * 1024;
    }
    return -1;
}

// Llama 3.2 1B's shape (tied output) cut to a 32000-token vocabulary, 8 layers 1024 wide: about
// 160M parameters, written in a few seconds, a 160-token prefill in about a second.
model::SynthOptions synth_options() {
    model::SynthOptions o;
    auto p = model::find_synth_preset("llama3.2-1b", "llama");
    EXPECT_TRUE(p.ok()) << p.status().message();
    if (p.ok()) o.config = *p;
    model::SynthOverrides ov;
    ov.n_vocab = 32000;
    ov.n_layer = 8;
    ov.n_embd = 1024;
    ov.n_head = 16;
    ov.n_head_kv = 8;
    ov.n_ff = 4096;
    EXPECT_TRUE(model::apply_synth_overrides(o.config, ov).ok());
    auto t = model::parse_synth_type("Q8_0");
    EXPECT_TRUE(t.ok());
    if (t.ok()) o.type = *t;
    o.seed = 7;
    o.n_threads = 2;
    return o;
}

// Writes the model from a child process (see the top of the file); true when the file is there.
bool write_model_in_child(const std::string& path) {
    const pid_t pid = fork();
    if (pid < 0) return false;
    if (pid == 0) {
        const model::SynthOptions o = synth_options();
        auto plan = model::plan_synth(o);
        if (!plan.ok()) _exit(2);
        auto size = model::write_synth(o, *plan, path);
        if (!size.ok()) {
            std::fprintf(stderr, "write_synth: %s\n", size.status().message().c_str());
            _exit(3);
        }
        _exit(0);
    }
    int status = 0;
    if (waitpid(pid, &status, 0) != pid) return false;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 && fs::exists(path);
}

class FitMemoryTest : public ::testing::Test {
protected:
    void SetUp() override {
        dir_ = fs::temp_directory_path() / ("hearth_fit_memory_test_" + std::to_string(getpid()));
        fs::create_directories(dir_);
    }
    void TearDown() override {
        std::error_code ec;
        fs::remove_all(dir_, ec);
    }
    fs::path dir_;
};

TEST_F(FitMemoryTest, EstimateMatchesPeakResidentMemoryOnTheCpu) {
    const std::string path = (dir_ / "synth.gguf").string();
    ASSERT_TRUE(write_model_in_child(path)) << "generating " << path;

    // The daemon's options for num_ctx 2048, one sequence, num_batch 128 (engine_options()).
    runtime::EngineOptions eo;
    eo.n_ctx = 2048;
    eo.n_parallel = 1;
    eo.step_tokens = 128;
    eo.kv_type = quant::QuantType::f16;

    MemoryEstimate est;
    {
        auto info = read_gguf_info(path);  // its mapping goes at the end of the block, before measuring
        ASSERT_TRUE(info.ok()) << info.status().message();
        Result<int64_t> mem = read_mem_available();
        auto e = estimate_memory(*info, eo, mem.ok() ? *mem : int64_t{1} << 30);
        ASSERT_TRUE(e.ok()) << e.status().message();
        est = *e;
    }

    const int64_t rss_before = status_bytes("VmRSS");
    const int64_t file_before = status_bytes("RssFile"), anon_before = status_bytes("RssAnon");
    ASSERT_GT(rss_before, 0) << "no VmRSS in /proc/self/status";
    ASSERT_GE(file_before, 0) << "no RssFile in /proc/self/status";

    // Service::load, CPU only.
    auto file = gguf::open_gguf(path);
    ASSERT_TRUE(file.ok()) << file.status().message();
    auto tok = tok::Tokenizer::from_gguf(**file);
    ASSERT_TRUE(tok.ok()) << tok.status().message();
    model::LoadOptions lo{2};
    lo.num_gpu = 0;
    auto m = model::load_model(*file, lo);
    ASSERT_TRUE(m.ok()) << m.status().message();
    std::shared_ptr<model::Model> model(std::move(m).value());
    std::shared_ptr<const tok::Tokenizer> tokenizer(std::move(tok).value());
    const int64_t anon_loaded = status_bytes("RssAnon");  // metadata, vocabulary, model tables
    auto engine = runtime::Engine::create(model, tokenizer, eo);
    ASSERT_TRUE(engine.ok()) << engine.status().message();
    ASSERT_EQ((int64_t)(*engine)->kv_bytes(), est.kv_bytes);
    const int64_t anon_engine = status_bytes("RssAnon");  // + the KV pool

    // One request: 160 prompt tokens (a full step of 128, then 32) and 8 generated tokens.
    runtime::Request req;
    std::mt19937 rng(1);
    std::uniform_int_distribution<int32_t> id(0, 255);  // the byte tokens of the built-in vocabulary
    req.prompt.push_back(tokenizer->bos() >= 0 ? tokenizer->bos() : 1);
    while (req.prompt.size() < 160) req.prompt.push_back(id(rng));
    req.sampling.temperature = 0.0f;
    req.num_predict = 8;
    req.ignore_eos = true;

    std::mutex mu;
    std::condition_variable cv;
    bool ended = false;
    runtime::Event last;
    (*engine)->submit(std::move(req), [&](const runtime::Event& ev) {
        if (ev.kind == runtime::Event::Kind::text) return;
        std::lock_guard lk(mu);
        last = ev;
        ended = true;
        cv.notify_all();
    });
    {
        std::unique_lock lk(mu);
        ASSERT_TRUE(cv.wait_for(lk, std::chrono::minutes(5), [&] { return ended; })) << "the request never ended";
    }
    ASSERT_EQ(last.kind, runtime::Event::Kind::done) << last.status.message();
    EXPECT_EQ(last.stats.generated_tokens, 8);

    const int64_t hwm_after = status_bytes("VmHWM");
    const int64_t file_after = status_bytes("RssFile"), anon_after = status_bytes("RssAnon");
    const int64_t measured = hwm_after - rss_before;
    const int64_t want = est.total_bytes();
    const std::string figures = strformat(
        "measured peak RSS growth %.1f MiB (VmHWM %.1f MiB after, VmRSS %.1f MiB before) vs estimate %.1f MiB = "
        "weights %.1f + KV %.1f + scratch %.1f + vocabulary %.1f MiB: off by %+.1f%%. Resident after: file-backed +%.1f MiB; "
        "anonymous +%.1f MiB by the end of the load (metadata, vocabulary), +%.1f MiB at Engine::create (KV pool), "
        "+%.1f MiB running the request (scratch)",
        measured / kMiB, hwm_after / kMiB, rss_before / kMiB, want / kMiB, est.weights_bytes / kMiB,
        est.kv_bytes / kMiB, est.compute_bytes / kMiB, est.vocab_bytes / kMiB, 100.0 * (double)(measured - want) / (double)want,
        (file_after - file_before) / kMiB, (anon_loaded - anon_before) / kMiB, (anon_engine - anon_loaded) / kMiB,
        (anon_after - anon_engine) / kMiB);
    std::printf("%s\n", figures.c_str());
    EXPECT_LE(std::llabs(measured - want), want / 10) << figures;
    // The largest part on its own: every mapped page of the weights is resident, and no more
    // (the binary's and libraries' pages are in file_before already).
    EXPECT_LE(std::llabs(file_after - file_before - est.weights_bytes), est.weights_bytes / 20) << figures;
}

}  // namespace
}  // namespace hearth::store
