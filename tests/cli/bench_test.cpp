// `hearth bench`: llama-bench's tests and tables on the shared tiny models, JSON with every
// field, a peer's llama-bench output (JSON or Markdown, from a fake peer) matched by test name
// with the right ratios, a failing peer as a warning only, and one error line for bad input.
// The llama-bench output parser is tested directly too.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/cli_util.h"
#include "support/temp_store.h"
#include "support/testdata.h"

#include "cli/bench_peer.h"  // compiled into cli_tests (tests/CMakeLists.txt)

namespace {

using hearth::cli::match_peer_result;
using hearth::cli::parse_llama_bench_output;
using hearth::cli::PeerResult;
using hearth::test::HearthRun;
using hearth::test::run_hearth;
using nlohmann::json;

const std::string kTiny = "-p 16 -n 4 -r 2 -t 1";

std::string stories() { return hearth::test::model("stories260K.gguf"); }

// A fake peer: a shell script that printf's `text` (which holds no single quote).
std::string fake_peer(const std::string& name, const std::string& text) {
    const auto path = hearth::test::cli_temp_file(name);
    std::ofstream(path) << "printf '%s\\n' '" << text << "'\n";
    return "'sh " + path.string() + "'";
}

const json* find_test(const json& arr, const std::string& test) {
    for (const json& o : arr)
        if (o.value("test", "") == test) return &o;
    return nullptr;
}

// The cells of the Markdown row whose `test` cell is `test`, trimmed; empty when none.
std::vector<std::string> md_row(const std::string& out, const std::string& test) {
    std::istringstream in(out);
    std::string line;
    while (std::getline(in, line)) {
        std::vector<std::string> cells;
        std::stringstream ss(line);
        std::string c;
        while (std::getline(ss, c, '|')) {
            const size_t b = c.find_first_not_of(' '), e = c.find_last_not_of(' ');
            cells.push_back(b == std::string::npos ? "" : c.substr(b, e - b + 1));
        }
        for (const std::string& x : cells)
            if (x == test) return cells;
    }
    return {};
}

// ---- the parser ----

TEST(BenchPeerParser, ReadsLlamaBenchJson) {
    const std::string text = R"(some log line
[
  {"build_commit": "34af94cd", "model_filename": "/m/a.gguf", "model_type": "llama 1B Q4_K - Medium",
   "n_threads": 2, "type_k": "f16", "n_prompt": 64, "n_gen": 0, "n_depth": 0, "avg_ts": 123.45, "stddev_ts": 0.67,
   "samples_ts": [123.0, 123.9]},
  {"n_threads": 2, "type_k": "f16", "n_prompt": 0, "n_gen": 16, "avg_ts": 12.5, "stddev_ts": 0.25},
  {"n_prompt": 512, "n_gen": 128, "avg_ts": 99},
  {"n_prompt": 0, "n_gen": 32, "n_depth": 4096, "avg_ts": 7},
  {"something": "else"}
])";
    auto r = parse_llama_bench_output(text);
    ASSERT_TRUE(r.ok()) << r.status().message();
    ASSERT_EQ(r->size(), 4u);
    const PeerResult& pp = (*r)[0];
    EXPECT_EQ(pp.test, "pp64");
    EXPECT_DOUBLE_EQ(pp.tokens_per_second, 123.45);
    EXPECT_DOUBLE_EQ(pp.stddev, 0.67);
    EXPECT_EQ(pp.threads, 2);
    EXPECT_EQ(pp.type_k, "f16");
    EXPECT_EQ(pp.model, "/m/a.gguf");
    EXPECT_EQ((*r)[1].test, "tg16");
    EXPECT_DOUBLE_EQ((*r)[1].tokens_per_second, 12.5);
    EXPECT_EQ((*r)[2].test, "pp512+tg128");
    EXPECT_EQ((*r)[2].threads, -1);
    EXPECT_DOUBLE_EQ((*r)[2].stddev, 0.0);
    EXPECT_EQ((*r)[3].test, "tg32 @ d4096");
}

TEST(BenchPeerParser, ReadsLlamaBenchJsonLines) {
    auto r = parse_llama_bench_output(
        "{\"n_prompt\": 32, \"n_gen\": 0, \"avg_ts\": 50.5, \"stddev_ts\": 1.5, \"n_threads\": 4}\n"
        "{\"n_prompt\": 0, \"n_gen\": 8, \"avg_ts\": 5.25, \"stddev_ts\": 0.5, \"n_threads\": 4}\n");
    ASSERT_TRUE(r.ok()) << r.status().message();
    ASSERT_EQ(r->size(), 2u);
    EXPECT_EQ((*r)[0].test, "pp32");
    EXPECT_DOUBLE_EQ((*r)[0].tokens_per_second, 50.5);
    EXPECT_EQ((*r)[1].test, "tg8");
    EXPECT_DOUBLE_EQ((*r)[1].stddev, 0.5);
    EXPECT_EQ((*r)[1].threads, 4);
}

TEST(BenchPeerParser, ReadsLlamaBenchMarkdown) {
    const std::string text =
        "| model                          |       size |     params | backend    | threads | type_k |            test |                  t/s |\n"
        "| ------------------------------ | ---------: | ---------: | ---------- | ------: | -----: | --------------: | -------------------: |\n"
        "| llama 1B Q4_K - Medium         | 762.81 MiB |     1.24 B | CPU        |       2 |   q8_0 |            pp64 |        123.45 \xC2\xB1 0.67 |\n"
        "| llama 1B Q4_K - Medium         | 762.81 MiB |     1.24 B | CPU        |       2 |   q8_0 |            tg16 |         12.34 \xC2\xB1 0.10 |\n"
        "| llama 1B Q4_K - Medium         | 762.81 MiB |     1.24 B | CPU        |       2 |   q8_0 |   tg16 @ d512 |          9.00 \xC2\xB1 0.00 |\n"
        "\n"
        "build: 34af94cd (10470)\n";
    auto r = parse_llama_bench_output(text);
    ASSERT_TRUE(r.ok()) << r.status().message();
    ASSERT_EQ(r->size(), 3u);
    EXPECT_EQ((*r)[0].test, "pp64");
    EXPECT_DOUBLE_EQ((*r)[0].tokens_per_second, 123.45);
    EXPECT_DOUBLE_EQ((*r)[0].stddev, 0.67);
    EXPECT_EQ((*r)[0].threads, 2);
    EXPECT_EQ((*r)[0].type_k, "q8_0");
    EXPECT_EQ((*r)[0].model, "llama 1B Q4_K - Medium");
    EXPECT_EQ((*r)[1].test, "tg16");
    EXPECT_DOUBLE_EQ((*r)[1].tokens_per_second, 12.34);
    EXPECT_DOUBLE_EQ((*r)[1].stddev, 0.10);
    EXPECT_EQ((*r)[2].test, "tg16 @ d512");
}

TEST(BenchPeerParser, MarkdownWithoutThreadsOrStddev) {
    auto r = parse_llama_bench_output(
        "| model | backend | ngl | test | t/s |\n| --- | --- | --: | --: | --: |\n| m | CUDA | 99 | pp512 | 4567.8 |\n");
    ASSERT_TRUE(r.ok()) << r.status().message();
    ASSERT_EQ(r->size(), 1u);
    EXPECT_EQ((*r)[0].test, "pp512");
    EXPECT_DOUBLE_EQ((*r)[0].tokens_per_second, 4567.8);
    EXPECT_DOUBLE_EQ((*r)[0].stddev, 0.0);
    EXPECT_EQ((*r)[0].threads, -1);
}

TEST(BenchPeerParser, RejectsWhatIsNotLlamaBenchOutput) {
    for (const char* text : {"", "   \n", "hello world\n", "[]", "[{\"n_prompt\": 1}]", "{\"avg_ts\": 3}",
                             "| a | b |\n| - | - |\n| 1 | 2 |\n", "| model | test | t/s |\n| --- | --- | --- |\n| m | pp1 | n/a |\n"}) {
        auto r = parse_llama_bench_output(text);
        EXPECT_FALSE(r.ok()) << "'" << text << "' parsed";
        if (!r.ok()) {
            EXPECT_FALSE(r.status().message().empty());
        }
    }
}

TEST(BenchPeerParser, MatchesByTestThreadsAndKvType) {
    std::vector<PeerResult> peer(5);
    peer[0] = {"pp64", 8, "f16", "/x/other.gguf", 800, 1};
    peer[1] = {"pp64", 2, "f16", "/x/other.gguf", 200, 1};
    peer[2] = {"pp64", 2, "f16", "/y/model.gguf", 210, 1};
    peer[3] = {"tg16", -1, "", "", 20, 1};
    peer[4] = {"tg16", 2, "q8_0", "", 30, 1};
    EXPECT_EQ(match_peer_result(peer, "pp64", 8, "f16"), &peer[0]);
    EXPECT_EQ(match_peer_result(peer, "pp64", 2, "f16"), &peer[1]);
    EXPECT_EQ(match_peer_result(peer, "pp64", 2, "f16", "/z/model.gguf"), &peer[2]);  // same file name
    EXPECT_EQ(match_peer_result(peer, "pp64", 4, "f16"), nullptr);
    EXPECT_EQ(match_peer_result(peer, "pp64", 2, "q8_0"), nullptr);
    EXPECT_EQ(match_peer_result(peer, "tg16", 2, "q8_0"), &peer[3]);  // unknown threads and type match anything
    EXPECT_EQ(match_peer_result(peer, "tg32", 2, "f16"), nullptr);
    EXPECT_EQ(hearth::cli::llama_bench_test_name(512, 0), "pp512");
    EXPECT_EQ(hearth::cli::llama_bench_test_name(0, 128), "tg128");
    EXPECT_EQ(hearth::cli::llama_bench_test_name(512, 128, 1024), "pp512+tg128 @ d1024");
}

// ---- the command ----

TEST(CliBench, MarkdownHasTheLlamaBenchColumnsAndRows) {
    HearthRun r = run_hearth("bench -m " + stories() + " " + kTiny);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out.rfind("| model ", 0), 0u) << r.out;
    const auto header = md_row(r.out, "test");
    EXPECT_EQ(header, (std::vector<std::string>{"", "model", "size", "params", "backend", "threads", "test", "t/s"}))
        << r.out;
    for (const char* test : {"pp16", "tg4"}) {
        const auto row = md_row(r.out, test);
        ASSERT_FALSE(row.empty()) << test << "\n" << r.out;
        EXPECT_NE(std::find(row.begin(), row.end(), "stories260K.gguf"), row.end()) << r.out;
        EXPECT_NE(std::find(row.begin(), row.end(), "CPU"), row.end()) << r.out;
        EXPECT_NE(std::find(row.begin(), row.end(), "1"), row.end()) << r.out;  // threads
        EXPECT_NE(row[row.size() - 1].find("\xC2\xB1"), std::string::npos) << r.out;
        EXPECT_GT(std::stod(row[row.size() - 1]), 0.0) << r.out;
    }
    EXPECT_EQ(r.out.find("peer"), std::string::npos) << r.out;
}

TEST(CliBench, JsonHasEveryFieldAndPositiveRates) {
    HearthRun r = run_hearth("bench -m " + stories() + " " + kTiny + " -o json");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const json arr = json::parse(r.out, nullptr, false);
    ASSERT_TRUE(arr.is_array()) << r.out;
    ASSERT_EQ(arr.size(), 2u) << r.out;
    const json* pp = find_test(arr, "pp16");
    const json* tg = find_test(arr, "tg4");
    ASSERT_TRUE(pp && tg) << r.out;
    for (const json* o : {pp, tg}) {
        for (const char* key : {"test", "threads", "tokens_per_second", "stddev", "model", "model_size", "model_type",
                                "quantization", "n_prompt", "n_gen", "batch", "kv_type", "samples_ts", "build_commit",
                                "avg_ts", "stddev_ts", "n_threads", "backend"})
            EXPECT_TRUE(o->contains(key)) << key << "\n" << o->dump();
        EXPECT_GT((*o)["tokens_per_second"].get<double>(), 0.0);
        EXPECT_GE((*o)["stddev"].get<double>(), 0.0);
        EXPECT_EQ((*o)["threads"], 1);
        EXPECT_EQ((*o)["model"], "stories260K.gguf");
        EXPECT_EQ((*o)["kv_type"], "f16");
        EXPECT_EQ((*o)["batch"], 1);
        EXPECT_GT((*o)["model_size"].get<int64_t>(), 0);
        ASSERT_EQ((*o)["samples_ts"].size(), 2u);
        const double a = (*o)["samples_ts"][0], b = (*o)["samples_ts"][1];
        EXPECT_NEAR((*o)["tokens_per_second"].get<double>(), (a + b) / 2, 1e-6 * (a + b));
        EXPECT_NEAR((*o)["stddev"].get<double>(), std::fabs(a - b) / std::sqrt(2.0), 1e-6 * (a + b));
        EXPECT_FALSE(o->contains("ratio"));
    }
    EXPECT_EQ((*pp)["n_prompt"], 16);
    EXPECT_EQ((*pp)["n_gen"], 0);
    EXPECT_EQ((*tg)["n_prompt"], 0);
    EXPECT_EQ((*tg)["n_gen"], 4);
}

// --roofline: tg rows carry the read-bandwidth roofline (bandwidth / bytes read per token) and
// the fraction reached; pp rows do not; the Markdown footer says the same.
TEST(CliBench, RooflineReportsBandwidthAndFraction) {
    HearthRun r = run_hearth("bench -m " + stories() + " " + kTiny + " -o json --roofline");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const json arr = json::parse(r.out, nullptr, false);
    ASSERT_TRUE(arr.is_array()) << r.out;
    const json* pp = find_test(arr, "pp16");
    const json* tg = find_test(arr, "tg4");
    ASSERT_TRUE(pp && tg) << r.out;
    EXPECT_FALSE(pp->contains("roofline_tokens_per_second"));
    ASSERT_TRUE(tg->contains("roofline_tokens_per_second")) << tg->dump();
    const double roof = (*tg)["roofline_tokens_per_second"], ts = (*tg)["tokens_per_second"];
    EXPECT_GT(roof, 0.0);
    EXPECT_NEAR((*tg)["roofline_fraction"].get<double>(), ts / roof, 1e-9 * (1 + ts / roof));
    HearthRun md = run_hearth("bench -m " + stories() + " -p 0 -n 2 -r 1 -t 1 --no-warmup --roofline");
    ASSERT_EQ(md.exit_code, 0) << md.err;
    EXPECT_NE(md.out.find("read bandwidth: "), std::string::npos) << md.out;
    EXPECT_NE(md.out.find("tg2: "), std::string::npos) << md.out;
    EXPECT_NE(md.out.find("% of the "), std::string::npos) << md.out;
}

TEST(CliBench, ListsBatchesKvTypesAndOtherFormats) {
    // llama3-tiny's heads fit q8_0 blocks; --batch 2 generates two sequences through the engine.
    const std::string m = hearth::test::model("llama3-tiny.Q8_0.gguf");
    HearthRun r = run_hearth("bench -m " + m + " -p 8,0 -n 4 -r 1 -t 1 --batch 1,2 --kv-type f16,q8_0 -o jsonl --no-warmup");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    std::istringstream in(r.out);
    std::string line;
    std::vector<std::string> seen;
    while (std::getline(in, line)) {
        const json o = json::parse(line, nullptr, false);
        ASSERT_TRUE(o.is_object()) << line;
        EXPECT_GT(o["tokens_per_second"].get<double>(), 0.0) << line;
        seen.push_back(o["test"].get<std::string>() + "/" + o["kv_type"].get<std::string>());
        if (o["test"] == "tg4@b2") {
            EXPECT_EQ(o["batch"], 2);
        }
    }
    EXPECT_EQ(seen, (std::vector<std::string>{"pp8/f16", "tg4/f16", "tg4@b2/f16", "pp8/q8_0", "tg4/q8_0", "tg4@b2/q8_0"}))
        << r.out;

    HearthRun md = run_hearth("bench -m " + m + " -p 8 -n 0 -r 1 -t 1 --kv-type q8_0");
    ASSERT_EQ(md.exit_code, 0) << md.err;
    EXPECT_NE(md.out.find("type_k"), std::string::npos) << md.out;
    EXPECT_EQ(md_row(md.out, "tg0").size(), 0u);

    HearthRun csv = run_hearth("bench -m " + stories() + " -p 8 -n 0 -r 1 -t 1 -o csv");
    ASSERT_EQ(csv.exit_code, 0) << csv.err;
    EXPECT_EQ(csv.out.rfind("\"build_commit\",", 0), 0u) << csv.out;
    EXPECT_NE(csv.out.find("\"pp8\""), std::string::npos) << csv.out;
    EXPECT_EQ(std::count(csv.out.begin(), csv.out.end(), '\n'), 2) << csv.out;
}

TEST(CliBench, ModelByStoreNameAndProgress) {
    hearth::test::TempStore store("bench");
    HearthRun r = run_hearth("bench -m stories -p 8 -n 2 -r 1 -t 1 --progress", "", "HEARTH_MODELS=" + store.root());
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_FALSE(md_row(r.out, "pp8").empty()) << r.out;
    EXPECT_NE(r.err.find("warm-up"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("run 1/1"), std::string::npos) << r.err;
}

TEST(CliBench, PeerJsonGivesRatiosByTestAndThreads) {
    // The n_threads 8 entries must not be taken for hearth's 1-thread results.
    const std::string peer = fake_peer("peer_json.sh",
        R"([{"model_filename": "x.gguf", "n_threads": 8, "type_k": "f16", "n_prompt": 16, "n_gen": 0, "avg_ts": 1.0, "stddev_ts": 0.1},)"
        R"({"model_filename": "x.gguf", "n_threads": 1, "type_k": "f16", "n_prompt": 16, "n_gen": 0, "avg_ts": 250.0, "stddev_ts": 2.5},)"
        R"({"model_filename": "x.gguf", "n_threads": 1, "type_k": "f16", "n_prompt": 0, "n_gen": 4, "avg_ts": 40.0, "stddev_ts": 0.5},)"
        R"({"model_filename": "x.gguf", "n_threads": 8, "type_k": "f16", "n_prompt": 0, "n_gen": 4, "avg_ts": 2.0, "stddev_ts": 0.5}])");
    HearthRun r = run_hearth("bench -m " + stories() + " " + kTiny + " -o json --peer " + peer);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const json arr = json::parse(r.out, nullptr, false);
    ASSERT_TRUE(arr.is_array()) << r.out;
    const json* pp = find_test(arr, "pp16");
    const json* tg = find_test(arr, "tg4");
    ASSERT_TRUE(pp && tg) << r.out;
    EXPECT_DOUBLE_EQ((*pp)["peer_tokens_per_second"].get<double>(), 250.0);
    EXPECT_DOUBLE_EQ((*tg)["peer_tokens_per_second"].get<double>(), 40.0);
    EXPECT_NEAR((*pp)["ratio"].get<double>(), (*pp)["tokens_per_second"].get<double>() / 250.0, 1e-9);
    EXPECT_NEAR((*tg)["ratio"].get<double>(), (*tg)["tokens_per_second"].get<double>() / 40.0, 1e-9);
}

TEST(CliBench, PeerMarkdownGivesRatioColumns) {
    const std::string peer = fake_peer("peer_md.sh",
        "| model                          |       size |     params | backend    | threads |            test |                  t/s |\n"
        "| ------------------------------ | ---------: | ---------: | ---------- | ------: | --------------: | -------------------: |\n"
        "| llama ?B all F32               |   1.00 MiB |     0.26 M | CPU        |       1 |            pp16 |      1000.00 \xC2\xB1 10.00 |\n"
        "| llama ?B all F32               |   1.00 MiB |     0.26 M | CPU        |       1 |             tg4 |        50.00 \xC2\xB1 1.00 |\n"
        "\nbuild: 34af94cd (10470)");
    HearthRun r = run_hearth("bench -m " + stories() + " " + kTiny + " --peer " + peer);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("peer t/s"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("hearth/peer"), std::string::npos) << r.out;
    for (auto [test, peer_ts] : {std::pair<const char*, double>{"pp16", 1000.0}, {"tg4", 50.0}}) {
        const auto row = md_row(r.out, test);
        ASSERT_GE(row.size(), 3u) << test << "\n" << r.out;
        const double ratio = std::stod(row[row.size() - 1]);
        const std::string peer_cell = row[row.size() - 2];
        const double hearth_ts = std::stod(row[row.size() - 3]);
        EXPECT_EQ(std::stod(peer_cell), peer_ts) << r.out;
        EXPECT_NE(peer_cell.find("\xC2\xB1"), std::string::npos) << r.out;
        // Both printed with two decimals: the ratio of the printed t/s within rounding.
        EXPECT_NEAR(ratio, hearth_ts / peer_ts, 0.005 + 0.005 / peer_ts + 1e-9) << r.out;
    }
}

TEST(CliBench, FailingOrUnreadablePeerIsAWarningOnly) {
    HearthRun failed = run_hearth("bench -m " + stories() + " " + kTiny + " --peer 'echo oops; exit 1'");
    EXPECT_EQ(failed.exit_code, 0) << failed.err;
    EXPECT_NE(failed.err.find("warning"), std::string::npos) << failed.err;
    EXPECT_NE(failed.err.find("exited with status 1"), std::string::npos) << failed.err;
    EXPECT_FALSE(md_row(failed.out, "pp16").empty()) << failed.out;
    EXPECT_EQ(failed.out.find("oops"), std::string::npos) << failed.out;

    HearthRun garbage = run_hearth("bench -m " + stories() + " " + kTiny + " -o json --peer 'echo hello'");
    EXPECT_EQ(garbage.exit_code, 0) << garbage.err;
    EXPECT_NE(garbage.err.find("warning"), std::string::npos) << garbage.err;
    EXPECT_NE(garbage.err.find("hello"), std::string::npos) << garbage.err;
    const json arr = json::parse(garbage.out, nullptr, false);
    ASSERT_TRUE(arr.is_array()) << garbage.out;
    ASSERT_EQ(arr.size(), 2u);
    EXPECT_TRUE(arr[0]["ratio"].is_null()) << garbage.out;
}

TEST(CliBench, BadInputIsOneErrorLine) {
    using hearth::test::expect_one_error_line;
    const std::string m = " -m " + stories();
    expect_one_error_line(run_hearth("bench -p 16"), "bench", "no model given");
    expect_one_error_line(run_hearth("bench -m /nonexistent/model.gguf -p 16 -n 4 -r 1"), "bench", "/nonexistent/model.gguf");
    expect_one_error_line(run_hearth("bench" + m + " -p 16,abc"), "bench", "-p: 'abc'");
    expect_one_error_line(run_hearth("bench" + m + " -n -3"), "bench", "-n: '-3'");
    expect_one_error_line(run_hearth("bench" + m + " -p 16,"), "bench", "-p: ''");
    expect_one_error_line(run_hearth("bench" + m + " -r 0"), "bench", "-r: '0'");
    expect_one_error_line(run_hearth("bench" + m + " -t 0"), "bench", "-t: '0'");
    expect_one_error_line(run_hearth("bench" + m + " --batch 2,x"), "bench", "--batch: 'x'");
    expect_one_error_line(run_hearth("bench" + m + " -p 0 -n 0"), "bench", "nothing to run");
    expect_one_error_line(run_hearth("bench" + m + " -o xml"), "bench", "-o: 'xml'");
    expect_one_error_line(run_hearth("bench" + m + " --kv-type f17"), "bench", "--kv-type: 'f17'");
    // stories260K's heads are 8 wide: a q8_0 block of 32 does not fit them.
    expect_one_error_line(run_hearth("bench" + m + " -p 16 -n 4 -r 1 --kv-type f16,q8_0"), "bench", "--kv-type q8_0");
}

}  // namespace
