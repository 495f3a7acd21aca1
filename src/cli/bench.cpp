// hearth bench: prompt-processing and generation speed, as llama-bench measures and prints it.
//
//   hearth bench -m MODEL [-p 512] [-n 128] [-r 5] [-t THREADS] [--batch 1,4,16] [--kv-type f16,q8_0]
//                [-o md|json|jsonl|csv] [--peer CMD]
//
// Every list option takes comma-separated values and every combination runs: for each model,
// thread count and KV type, a pp test per -p value and a tg test per -n and --batch value.
// pp N (llama-bench's pp): one sequence, empty cache, N random prompt tokens evaluated in
// forward passes of --ubatch-size tokens (one pass when N <= 512), timed to the last logits.
// tg N: one sequence, empty cache, N single-token decode steps (llama-bench's tg: no prompt).
// tg N with --batch B > 1 ("tgN@bB"): B sequences decoded together by runtime::Engine
// (continuous batching), each from one random token for N steps; t/s counts all B x N tokens
// over the wall time from submit to the last done. Every test runs once untimed (the warm-up,
// as llama-bench: pp in full, tg for one token), then -r times; t/s is the mean over the
// repetitions of tokens / seconds and ± its sample standard deviation.
//
// --peer CMD runs CMD through /bin/sh after hearth's own runs (hearth's model is unloaded by
// then), reads its standard output as llama-bench output (bench_peer.h) and adds the peer's t/s
// and hearth/peer to every result with the same test name (and threads and KV type where the
// peer says). A peer that fails or prints something else is a warning: hearth's own results are
// still printed and the exit status is 0. hearth never ships, downloads or builds a peer.
#include <sys/wait.h>

#include <cerrno>
#include <charconv>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/membw.h"
#include "base/thread_pool.h"
#include "base/timer.h"
#include "cli/bench_peer.h"
#include "cli/client.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "cli/models.h"
#include "model/session.h"
#include "quant/types.h"
#include "runtime/engine.h"
#include "server/config.h"
#include "store/gguf_info.h"
#include "store/store.h"

namespace hearth::cli {
namespace {

using nlohmann::ordered_json;

// Lists and counts are taken as text so that a bad value is one "hearth bench: ..." line, exit 1.
struct BenchArgs {
    std::vector<std::string> models;
    std::string n_prompt = "512", n_gen = "128", repetitions = "5", threads, batch = "1", kv_type = "f16";
    std::string ubatch = "512", output = "md", peer, num_gpu;
    bool no_warmup = false, progress = false, roofline = false;
};

// What is being measured, and what came out.
struct BenchResult {
    std::string model_path, model_name, model_type, quantization, backend, device;
    int64_t model_size = 0, n_params = 0;
    int64_t bytes_per_token = 0;     // weights a decode step reads (every tensor but token_embd)
    double roofline_ts = 0;          // tg: read bandwidth / bytes_per_token (--roofline, CPU); 0 = not measured
    int threads = 0, batch = 1, ubatch = 512;
    std::string kv_type;
    int64_t n_prompt = 0, n_gen = 0;
    std::string test;
    std::vector<int64_t> samples_ns;   // [repetitions] wall time of each timed run
    std::vector<double> samples_ts;    // [repetitions] tokens/s of each run
    double mean_ts = 0, stddev_ts = 0;
    const PeerResult* peer = nullptr;  // into the peer's results; null when none matched
};

std::vector<std::string> split_list(const std::string& text) {
    std::vector<std::string> out;
    size_t start = 0;
    for (;;) {
        const size_t comma = text.find(',', start);
        std::string item = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
        const size_t b = item.find_first_not_of(" \t"), e = item.find_last_not_of(" \t");
        out.push_back(b == std::string::npos ? std::string() : item.substr(b, e - b + 1));
        if (comma == std::string::npos) return out;
        start = comma + 1;
    }
}

// A comma-separated list of whole numbers >= min_value.
std::vector<int64_t> parse_counts(const std::string& text, const char* flag, int64_t min_value) {
    std::vector<int64_t> out;
    for (const std::string& item : split_list(text)) {
        int64_t v = 0;
        const char* end = item.data() + item.size();
        auto [p, ec] = std::from_chars(item.data(), end, v);
        if (item.empty() || ec != std::errc() || p != end || v < min_value || v > (1ll << 30))
            fail("bench", strformat("%s: '%s' is not a whole number >= %lld (give a comma-separated list, e.g. %s 1,4)",
                                    flag, item.c_str(), (long long)min_value, flag));
        out.push_back(v);
    }
    return out;
}

double mean(const std::vector<double>& v) {
    double s = 0;
    for (double x : v) s += x;
    return v.empty() ? 0 : s / (double)v.size();
}

// Sample standard deviation (n - 1), 0 for fewer than two samples: llama-bench's.
double sample_stddev(const std::vector<double>& v) {
    if (v.size() < 2) return 0;
    const double m = mean(v);
    double ss = 0;
    for (double x : v) ss += (x - m) * (x - m);
    return std::sqrt(ss / (double)(v.size() - 1));
}

// The model as resolved and described before anything is loaded.
struct ModelSpec {
    std::string given, path;
    store::GgufInfo info;
    int64_t tensor_bytes = 0;  // llama-bench's model_size: the tensors' bytes, not the file's
    // What one decode token reads: every tensor except the embedding table, of which it reads
    // one row (a tied output matrix is read whole, so then the table counts too).
    int64_t bytes_per_token = 0;
};

// Generation through the engine: `streams` sequences, each from one random token, n_gen
// tokens each. Returns the tokens generated and sets wall_ns from first submit to last done.
Result<int64_t> run_engine_tg(runtime::Engine& engine, int streams, int64_t n_gen, int64_t n_vocab, std::mt19937& rng,
                              int64_t& wall_ns) {
    std::mutex mu;
    std::condition_variable cv;
    int n_done = 0;
    int64_t generated = 0;
    Status failed;
    const int64_t t0 = now_ns();
    for (int s = 0; s < streams; ++s) {
        runtime::Request r;
        r.prompt.push_back((int32_t)(rng() % (uint64_t)n_vocab));
        r.sampling.temperature = 0.0f;
        r.num_predict = n_gen;
        r.ignore_eos = true;
        engine.submit(std::move(r), [&](const runtime::Event& e) {
            if (e.kind == runtime::Event::Kind::text) return;
            std::lock_guard<std::mutex> lk(mu);
            if (e.kind == runtime::Event::Kind::error && failed.ok()) failed = e.status;
            generated += e.stats.generated_tokens;
            ++n_done;
            cv.notify_all();
        });
    }
    std::unique_lock<std::mutex> lk(mu);
    cv.wait(lk, [&] { return n_done == streams; });
    wall_ns = now_ns() - t0;
    if (!failed.ok()) return failed;
    return generated;
}

class Bench {
public:
    Bench(const BenchArgs& a, int64_t total) : a_(a), total_(total) {}

    // Runs every test of one loaded model at one thread count and KV type.
    void run_all(const ModelSpec& spec, const std::shared_ptr<model::Model>& shared,
                 const std::shared_ptr<const tok::Tokenizer>& tok, int threads, quant::QuantType kv,
                 const std::vector<int64_t>& prompts, const std::vector<int64_t>& gens,
                 const std::vector<int64_t>& batches, int reps, int ubatch) {
        model::Model& m = *shared;
        BenchResult base;
        base.model_path = spec.path;
        base.model_name = std::filesystem::path(spec.path).filename().string();
        base.model_type = spec.info.architecture + " " + spec.info.parameter_size + " " + spec.info.quantization;
        base.quantization = spec.info.quantization;
        base.model_size = spec.tensor_bytes;
        base.bytes_per_token = spec.bytes_per_token;
        base.n_params = spec.info.n_params;
        base.device = m.device_name();
        base.backend = base.device.rfind("cuda", 0) == 0 ? "CUDA" : "CPU";
        base.threads = threads;
        base.kv_type = quant::type_name(kv);
        base.ubatch = ubatch;
        const int64_t n_vocab = m.hparams().n_vocab;

        int64_t max_len = 1;
        for (int64_t p : prompts) max_len = std::max(max_len, p);
        for (int64_t n : gens) max_len = std::max(max_len, n);
        auto session = model::Session::create(m, max_len + 1, 32, kv);
        if (!session.ok()) fail("bench", session.status().with_context(spec.given));
        std::vector<int32_t> tokens;
        std::vector<float> logits;

        for (int64_t p : prompts) {
            if (p == 0) continue;
            BenchResult r = base;
            r.n_prompt = p;
            r.test = llama_bench_test_name(p, 0);
            tokens.resize((size_t)p);
            auto once = [&]() -> int64_t {
                for (int32_t& t : tokens) t = (int32_t)(rng_() % (uint64_t)n_vocab);
                session->reset();
                const int64_t t0 = now_ns();
                if (Status st = session->eval(tokens, false, logits, ubatch); !st.ok())
                    fail("bench", st.with_context(spec.given + ": " + r.test));
                return now_ns() - t0;
            };
            measure(r, reps, p, once, once);
        }
        for (int64_t n : gens) {
            if (n == 0) continue;
            for (int64_t b : batches) {
                BenchResult r = base;
                r.n_gen = n;
                r.batch = (int)b;
                r.test = llama_bench_test_name(0, n) + (b > 1 ? strformat("@b%lld", (long long)b) : "");
                if (b == 1) {
                    auto decode = [&](int64_t steps) -> int64_t {
                        session->reset();
                        int32_t t = tok->bos() >= 0 && tok->add_bos() ? tok->bos() : (int32_t)(rng_() % (uint64_t)n_vocab);
                        const int64_t t0 = now_ns();
                        for (int64_t i = 0; i < steps; ++i) {
                            if (Status st = session->eval(std::span<const int32_t>(&t, 1), false, logits); !st.ok())
                                fail("bench", st.with_context(spec.given + ": " + r.test));
                            t = (int32_t)(rng_() % (uint64_t)n_vocab);
                        }
                        return now_ns() - t0;
                    };
                    measure(r, reps, n, [&] { return decode(n); }, [&] { return decode(1); });
                    continue;
                }
                runtime::EngineOptions o;
                o.n_ctx = n + 1;
                o.n_parallel = (int)b;
                o.kv_type = kv;
                o.step_tokens = std::max<int64_t>(512, b);
                auto engine = runtime::Engine::create(shared, tok, o);
                if (!engine.ok()) fail("bench", engine.status().with_context(spec.given + ": " + r.test));
                auto generate = [&](int64_t steps) -> int64_t {
                    int64_t wall_ns = 0;
                    auto made = run_engine_tg(*engine.value(), (int)b, steps, n_vocab, rng_, wall_ns);
                    if (!made.ok()) fail("bench", made.status().with_context(spec.given + ": " + r.test));
                    if (*made != b * steps)
                        fail("bench", strformat("%s: %s: the engine generated %lld tokens, expected %lld", spec.given.c_str(),
                                                r.test.c_str(), (long long)*made, (long long)(b * steps)));
                    return wall_ns;
                };
                measure(r, reps, b * n, [&] { return generate(n); }, [&] { return generate(1); });
            }
        }
    }

    std::vector<BenchResult>& results() { return results_; }

private:
    template <typename Run, typename Warm>
    void measure(BenchResult& r, int reps, int64_t n_tokens, Run run, Warm warm) {
        ++index_;
        const std::string what = strformat("benchmark %lld/%lld: %s (%s, %d threads, kv %s)", (long long)index_,
                                           (long long)total_, r.test.c_str(), r.model_name.c_str(), r.threads,
                                           r.kv_type.c_str());
        if (!a_.no_warmup) {
            if (a_.progress) std::fprintf(stderr, "hearth bench: %s: warm-up\n", what.c_str());
            warm();
        }
        for (int i = 0; i < reps; ++i) {
            const int64_t ns = std::max<int64_t>(1, run());
            r.samples_ns.push_back(ns);
            r.samples_ts.push_back((double)n_tokens * 1e9 / (double)ns);
            if (a_.progress)
                std::fprintf(stderr, "hearth bench: %s: run %d/%d: %.2f t/s\n", what.c_str(), i + 1, reps,
                             r.samples_ts.back());
        }
        r.mean_ts = mean(r.samples_ts);
        r.stddev_ts = sample_stddev(r.samples_ts);
        results_.push_back(std::move(r));
    }

    const BenchArgs& a_;
    int64_t total_;
    int64_t index_ = 0;
    std::mt19937 rng_{42};
    std::vector<BenchResult> results_;
};

// ---- output ----

std::string llama_bench_size(int64_t bytes) {
    if (bytes < (1ll << 30)) return strformat("%.2f MiB", (double)bytes / 1024.0 / 1024.0);
    return strformat("%.2f GiB", (double)bytes / 1024.0 / 1024.0 / 1024.0);
}

std::string llama_bench_params(int64_t n) {
    if (n < 1000ll * 1000 * 1000) return strformat("%.2f M", (double)n / 1e6);
    return strformat("%.2f B", (double)n / 1e9);
}

size_t display_width(const std::string& s) {
    size_t n = 0;
    for (unsigned char c : s) n += (c & 0xC0) != 0x80;
    return n;
}

// llama-bench's table: its columns (the model by file name), a type_k column when a KV type
// other than f16 ran, and the peer's columns when a peer ran.
void print_markdown(const std::vector<BenchResult>& results, bool with_peer) {
    struct Column {
        std::string name;
        int min_width;
        bool right;  // numbers are right-aligned, as llama-bench's "---:"
    };
    bool any_kv = false;
    for (const BenchResult& r : results) any_kv |= r.kv_type != "f16";
    std::vector<Column> cols = {{"model", 30, false}, {"size", 10, true}, {"params", 10, true},
                                {"backend", 10, false}, {"threads", 7, true}};
    if (any_kv) cols.push_back({"type_k", 6, true});
    cols.push_back({"test", 15, true});
    cols.push_back({"t/s", 20, true});
    if (with_peer) {
        cols.push_back({"peer t/s", 20, true});
        cols.push_back({"hearth/peer", 11, true});
    }
    std::vector<std::vector<std::string>> rows;
    for (const BenchResult& r : results) {
        std::vector<std::string> row = {r.model_name, llama_bench_size(r.model_size), llama_bench_params(r.n_params),
                                        r.backend, std::to_string(r.threads)};
        if (any_kv) row.push_back(r.kv_type);
        row.push_back(r.test);
        row.push_back(strformat("%.2f \xC2\xB1 %.2f", r.mean_ts, r.stddev_ts));
        if (with_peer) {
            row.push_back(r.peer ? strformat("%.2f \xC2\xB1 %.2f", r.peer->tokens_per_second, r.peer->stddev) : "-");
            row.push_back(r.peer && r.peer->tokens_per_second > 0
                              ? strformat("%.2f", r.mean_ts / r.peer->tokens_per_second)
                              : "-");
        }
        rows.push_back(std::move(row));
    }
    std::vector<size_t> width(cols.size());
    for (size_t c = 0; c < cols.size(); ++c) {
        width[c] = std::max((size_t)cols[c].min_width, display_width(cols[c].name));
        for (const auto& row : rows) width[c] = std::max(width[c], display_width(row[c]));
    }
    auto cell = [&](size_t c, const std::string& text) {
        const std::string pad(width[c] - display_width(text), ' ');
        return " " + (cols[c].right ? pad + text : text + pad) + " |";
    };
    std::string out = "|";
    for (size_t c = 0; c < cols.size(); ++c) out += cell(c, cols[c].name);
    out += "\n|";
    for (size_t c = 0; c < cols.size(); ++c)
        out += " " + std::string(width[c] - 1, '-') + (cols[c].right ? ":" : "-") + " |";
    out += "\n";
    for (const auto& row : rows) {
        out += "|";
        for (size_t c = 0; c < cols.size(); ++c) out += cell(c, row[c]);
        out += "\n";
    }
    std::printf("%s\nbuild: hearth %s\n", out.c_str(), client_version());
}

ordered_json result_json(const BenchResult& r, bool with_peer) {
    ordered_json j;
    j["build_commit"] =
#ifdef HEARTH_BUILD_COMMIT
        HEARTH_BUILD_COMMIT;
#else
        "unknown";
#endif
    j["hearth_version"] = client_version();
    j["model"] = r.model_name;
    j["model_filename"] = r.model_path;
    j["model_type"] = r.model_type;
    j["quantization"] = r.quantization;
    j["model_size"] = r.model_size;
    j["model_n_params"] = r.n_params;
    j["backend"] = r.backend;
    j["device"] = r.device;
    j["threads"] = r.threads;
    j["n_threads"] = r.threads;
    j["kv_type"] = r.kv_type;
    j["type_k"] = r.kv_type;
    j["type_v"] = r.kv_type;
    j["n_ubatch"] = r.ubatch;
    j["batch"] = r.batch;
    j["test"] = r.test;
    j["n_prompt"] = r.n_prompt;
    j["n_gen"] = r.n_gen;
    j["n_depth"] = 0;
    j["tokens_per_second"] = r.mean_ts;
    j["stddev"] = r.stddev_ts;
    // llama-bench's names for the same numbers, so its consumers read hearth's output.
    std::vector<double> ns(r.samples_ns.begin(), r.samples_ns.end());
    j["avg_ns"] = (int64_t)std::llround(mean(ns));
    j["stddev_ns"] = (int64_t)std::llround(sample_stddev(ns));
    j["avg_ts"] = r.mean_ts;
    j["stddev_ts"] = r.stddev_ts;
    j["samples_ns"] = r.samples_ns;
    j["samples_ts"] = r.samples_ts;
    if (r.roofline_ts > 0) {
        j["roofline_tokens_per_second"] = r.roofline_ts;
        j["roofline_fraction"] = r.mean_ts / r.roofline_ts;
    }
    if (with_peer) {
        j["peer_tokens_per_second"] = r.peer ? ordered_json(r.peer->tokens_per_second) : ordered_json(nullptr);
        j["peer_stddev"] = r.peer ? ordered_json(r.peer->stddev) : ordered_json(nullptr);
        j["ratio"] = r.peer && r.peer->tokens_per_second > 0 ? ordered_json(r.mean_ts / r.peer->tokens_per_second)
                                                              : ordered_json(nullptr);
    }
    return j;
}

std::string csv_quote(const std::string& s) {
    std::string out = "\"";
    for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
    return out + "\"";
}

// One header line of field names, then one line per result; strings quoted (llama-bench's csv).
void print_csv(const std::vector<BenchResult>& results, bool with_peer) {
    std::vector<std::string> keys;
    for (const BenchResult& r : results) {
        const ordered_json j = result_json(r, with_peer);
        if (keys.empty()) {
            for (auto it = j.begin(); it != j.end(); ++it)
                if (!it.value().is_array()) keys.push_back(it.key());
            std::string line;
            for (const std::string& k : keys) line += (line.empty() ? "" : ",") + csv_quote(k);
            std::printf("%s\n", line.c_str());
        }
        std::string line;
        for (const std::string& k : keys) {
            const ordered_json& v = j[k];
            line += line.empty() ? "" : ",";
            if (v.is_string()) line += csv_quote(v.get<std::string>());
            else if (!v.is_null()) line += v.dump();
        }
        std::printf("%s\n", line.c_str());
    }
}

// ---- the peer ----

// How a command run through popen ended, for the warning: pclose's status, where a shell's own
// exit status above 128 means its child died of signal (status - 128).
std::string describe_exit(int status) {
    if (status == -1) return "failed";
    if (WIFSIGNALED(status)) return strformat("was killed by signal %d", WTERMSIG(status));
    if (!WIFEXITED(status)) return "failed";
    const int code = WEXITSTATUS(status);
    std::string how = strformat("exited with status %d", code);
    if (code > 128) how += strformat(" (128 + signal %d: it crashed or was killed)", code - 128);
    return how;
}

// Runs the user's command through /bin/sh and parses what it printed; a warning and no results
// when it fails.
std::vector<PeerResult> run_peer(const std::string& cmd, bool progress) {
    if (progress) std::fprintf(stderr, "hearth bench: running the peer: %s\n", cmd.c_str());
    std::fflush(stdout);
    std::fflush(stderr);
    FILE* p = popen(cmd.c_str(), "r");
    if (!p) {
        std::fprintf(stderr, "hearth bench: warning: could not start the peer command (%s); showing hearth's results only\n",
                     std::strerror(errno));
        return {};
    }
    std::string out;
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    const int status = pclose(p);
    if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        const std::string how = describe_exit(status);
        std::fprintf(stderr, "hearth bench: warning: the peer command %s; showing hearth's results only\n", how.c_str());
        return {};
    }
    auto parsed = parse_llama_bench_output(out);
    if (!parsed.ok()) {
        std::fprintf(stderr, "hearth bench: warning: %s; showing hearth's results only\n",
                     parsed.status().message().c_str());
        return {};
    }
    return std::move(parsed).value();
}

// ---- the command ----

void run_bench(const BenchArgs& a) {
    if (a.output != "md" && a.output != "json" && a.output != "jsonl" && a.output != "csv")
        fail("bench", "-o: '" + a.output + "' is not an output format; use md, json, jsonl or csv");
    std::vector<std::string> names;
    for (const std::string& m : a.models)
        for (const std::string& item : split_list(m)) {
            if (item.empty()) fail("bench", "-m: an empty model name in '" + m + "'");
            names.push_back(item);
        }
    if (names.empty()) fail("bench", "no model given: name one with -m MODEL (a .gguf file or a model in the store)");
    const std::vector<int64_t> prompts = parse_counts(a.n_prompt, "-p", 0);
    const std::vector<int64_t> gens = parse_counts(a.n_gen, "-n", 0);
    const int reps = (int)parse_counts(a.repetitions, "-r", 1).at(0);
    if (split_list(a.repetitions).size() != 1) fail("bench", "-r: give one number of repetitions, not a list");
    const std::vector<int64_t> batches = parse_counts(a.batch, "--batch", 1);
    const int ubatch = (int)parse_counts(a.ubatch, "--ubatch-size", 1).at(0);
    if (split_list(a.ubatch).size() != 1) fail("bench", "--ubatch-size: give one number, not a list");
    bool any_test = false;
    for (int64_t p : prompts) any_test |= p > 0;
    for (int64_t n : gens) any_test |= n > 0;
    if (!any_test) fail("bench", "nothing to run: every -p and -n value is 0");

    auto cfg = server::config_from_env();
    if (!cfg.ok()) fail("bench", cfg.status());
    std::vector<int64_t> threads;
    if (a.threads.empty()) threads = {cfg->num_thread > 0 ? cfg->num_thread : ThreadPool::default_threads()};
    else threads = parse_counts(a.threads, "-t", 1);
#ifdef HEARTH_HAVE_CUDA
    int num_gpu = cfg->num_gpu;
#else
    int num_gpu = 0;  // nowhere else to run; -1 would only add a "built without CUDA" note
#endif
    if (!a.num_gpu.empty()) {
        const std::vector<int64_t> g = parse_counts(a.num_gpu, "--num-gpu", -1);
        if (g.size() != 1) fail("bench", "--num-gpu: give one number, not a list");
        num_gpu = (int)g[0];
    }
    std::vector<quant::QuantType> kv_types;
    for (const std::string& name : split_list(a.kv_type)) {
        const auto t = quant::parse_type_name(name);
        if (!t) fail("bench", "--kv-type: '" + name + "' is not a KV cache type; use f16, q8_0 or q4_0");
        kv_types.push_back(*t);
    }

    // Every model is resolved and checked before anything runs, so a typo in the last name does
    // not cost the runs of the first ones.
    store::Store st(cfg->models_dir.empty() ? store::Store::default_root() : cfg->models_dir);
    std::vector<ModelSpec> specs;
    for (const std::string& name : names) {
        ModelSpec s;
        s.given = name;
        auto ref = st.resolve(name);
        if (!ref.ok()) fail("bench", ref.status());
        s.path = ref->model_path;
        auto info = store::read_gguf_info(s.path);
        if (!info.ok()) fail("bench", info.status());
        s.info = std::move(info).value();
        if (s.info.embedding)
            fail("bench", name + " is an embedding model; hearth bench measures prompt processing and generation");
        bool tied = true;
        for (const auto& t : s.info.file->tensors) tied = tied && t.name != "output.weight";
        for (const auto& t : s.info.file->tensors) {
            s.tensor_bytes += (int64_t)t.n_bytes;
            if (t.name != "token_embd.weight" || tied) s.bytes_per_token += (int64_t)t.n_bytes;
        }
        for (quant::QuantType kv : kv_types)
            if (Status c = model::KvCache::check_type(s.info.kv_layout, kv); !c.ok())
                fail("bench", strformat("--kv-type %s: %s cannot use it: %s", quant::type_name(kv), name.c_str(),
                                        c.message().c_str()));
        specs.push_back(std::move(s));
    }

    int64_t per_combo = 0;
    for (int64_t p : prompts) per_combo += p > 0;
    for (int64_t n : gens) per_combo += n > 0 ? (int64_t)batches.size() : 0;
    Bench bench(a, per_combo * (int64_t)(specs.size() * threads.size() * kv_types.size()));
    for (const ModelSpec& s : specs) {
        auto tok = tok::Tokenizer::from_gguf(*s.info.file);
        if (!tok.ok()) fail("bench", tok.status().with_context(s.path + ": tokenizer"));
        std::shared_ptr<const tok::Tokenizer> tk = std::move(tok).value();
        for (int64_t t : threads) {
            if (a.progress) std::fprintf(stderr, "hearth bench: loading %s with %lld threads\n", s.given.c_str(), (long long)t);
            model::LoadOptions lo;
            lo.n_threads = (int)t;
            lo.num_gpu = num_gpu;
            auto loaded = model::load_model(s.info.file, lo);
            if (!loaded.ok()) fail("bench", loaded.status().with_context(s.path));
            std::shared_ptr<model::Model> m = std::move(loaded).value();
            if (!m->placement_note().empty()) std::fprintf(stderr, "hearth bench: %s\n", m->placement_note().c_str());
            for (quant::QuantType kv : kv_types) {
                if (Status c = model::KvCache::check_type(m->kv_layout(), kv); !c.ok())
                    fail("bench", strformat("--kv-type %s: %s cannot use it: %s", quant::type_name(kv), s.given.c_str(),
                                            c.message().c_str()));
                if (m->kv_on_device() && kv != quant::QuantType::f16)
                    fail("bench", strformat("--kv-type %s: %s runs on %s, whose KV cache is f16 only", quant::type_name(kv),
                                            s.given.c_str(), m->device_name().c_str()));
                bench.run_all(s, m, tk, (int)t, kv, prompts, gens, batches, reps, ubatch);
            }
        }
    }

    std::vector<BenchResult>& results = bench.results();
    // The read roofline of generation on the CPU (bench/RESULTS.md judges tg against it): the
    // machine's streaming read bandwidth with the most threads asked for, measured after the
    // runs so that it does not warm or cool anything they use.
    double read_bw = 0;
    int bw_threads = 0;
    if (a.roofline) {
        for (int64_t t : threads) bw_threads = std::max(bw_threads, (int)t);
        ThreadPool pool(bw_threads);
        auto bw = backend::measure_read_bandwidth(pool);
        if (!bw.ok()) fail("bench", bw.status());
        read_bw = bw->bytes_per_second;
        for (BenchResult& r : results)
            if (r.n_gen > 0 && r.backend == "CPU" && r.bytes_per_token > 0) r.roofline_ts = read_bw / (double)r.bytes_per_token;
    }
    const bool with_peer = !a.peer.empty();
    std::vector<PeerResult> peer;  // outlives the results that point into it
    if (with_peer) {
        peer = run_peer(a.peer, a.progress);
        for (BenchResult& r : results) {
            r.peer = match_peer_result(peer, r.test, r.threads, r.kv_type, r.model_path);
            if (!peer.empty() && !r.peer)
                std::fprintf(stderr, "hearth bench: warning: the peer has no result for %s (%d threads, kv %s)\n",
                             r.test.c_str(), r.threads, r.kv_type.c_str());
        }
    }
    if (a.output == "md") {
        print_markdown(results, with_peer && !peer.empty());
        if (read_bw > 0) {
            std::printf("\nread bandwidth: %.1f GB/s (%d threads, 1 GiB streamed, best of 5)\n", read_bw / 1e9, bw_threads);
            for (const BenchResult& r : results)
                if (r.roofline_ts > 0)
                    std::printf("%s %s: %.1f%% of the %.1f t/s roofline (%.1f MB read per token)\n", r.model_name.c_str(),
                                r.test.c_str(), 100.0 * r.mean_ts / r.roofline_ts, r.roofline_ts, r.bytes_per_token / 1e6);
        }
    } else if (a.output == "json") {
        ordered_json arr = ordered_json::array();
        for (const BenchResult& r : results) arr.push_back(result_json(r, with_peer));
        std::printf("%s\n", arr.dump(2).c_str());
    } else if (a.output == "jsonl") {
        for (const BenchResult& r : results) std::printf("%s\n", result_json(r, with_peer).dump().c_str());
    } else {
        print_csv(results, with_peer);
    }
    std::fflush(stdout);
}

}  // namespace

void add_bench_command(CLI::App& app) {
    auto a = std::make_shared<BenchArgs>();
    CLI::App* c = app.add_subcommand(
        "bench", "Measure prompt-processing and generation speed (tokens/s), as llama-bench does");
    c->add_option("-m,--model", a->models, "Model: a .gguf file or a name in the store; repeat or comma-separate for several");
    c->add_option("-p,--n-prompt", a->n_prompt, "Prompt lengths of the pp tests, comma-separated; 0 skips them")
        ->capture_default_str();
    c->add_option("-n,--n-gen", a->n_gen, "Generated lengths of the tg tests, comma-separated; 0 skips them")
        ->capture_default_str();
    c->add_option("-r,--repetitions", a->repetitions, "Timed runs of each test")->capture_default_str();
    c->add_option("-t,--threads", a->threads,
                  "Thread counts, comma-separated (default: $HEARTH_NUM_THREAD, else what hearth uses by default)");
    c->add_option("--batch", a->batch,
                  "Sequences generated at once by the engine for the tg tests, comma-separated (B > 1: test tgN@bB)")
        ->capture_default_str();
    c->add_option("--kv-type", a->kv_type, "KV cache types, comma-separated: f16, q8_0, q4_0")->capture_default_str();
    c->add_option("--ubatch-size", a->ubatch, "Prompt tokens per forward pass in the pp tests")->capture_default_str();
#ifdef HEARTH_HAVE_CUDA
    c->add_option("--num-gpu", a->num_gpu, "Placement: -1 automatic, 0 the CPU only, N the first N layers on the GPU (default: $HEARTH_NUM_GPU, else -1)");
#endif
    c->add_option("-o,--output", a->output, "Output format: md, json, jsonl or csv")->capture_default_str();
    c->add_flag("--no-warmup", a->no_warmup, "Skip the untimed warm-up run before each test");
    c->add_flag("--progress", a->progress, "Report each run on standard error");
    c->add_flag("--roofline", a->roofline,
                "Also measure this machine's memory read bandwidth (STREAM-like, after the runs) and report each CPU tg "
                "test as a fraction of its roofline: bandwidth / bytes of weights read per token");
    c->add_option("--peer", a->peer,
                  "After hearth's runs, run this llama-bench command line (through /bin/sh) and print its t/s and "
                  "hearth/peer per test");
    c->callback([a] { run_bench(*a); });
}

}  // namespace hearth::cli
