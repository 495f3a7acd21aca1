// `hearth bench --peer CMD`: reading a peer's benchmark output (llama-bench's formats) and
// pairing its results with hearth's. The peer itself is whatever program the user names; hearth
// never ships, downloads or builds one.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace hearth::cli {

// One result row of a peer, as llama-bench reports it.
struct PeerResult {
    // llama-bench's test name: "pp512", "tg128", "pp512+tg128", with " @ d<depth>" appended when
    // it ran at a depth.
    std::string test;
    int threads = -1;           // n_threads / the threads column; -1 when not reported
    std::string type_k;         // KV cache key type ("f16", "q8_0"); "" when not reported
    std::string model;          // model_filename, else model_type / the model column; "" when absent
    double tokens_per_second = 0;  // avg_ts
    double stddev = 0;             // stddev_ts; 0 when not reported
};

// llama-bench's test name for a run of n_prompt prompt tokens then n_gen generated ones at a
// depth of n_depth cached tokens: "pp512", "tg128", "pp512+tg128", "tg128 @ d4096".
std::string llama_bench_test_name(long long n_prompt, long long n_gen, long long n_depth = 0);

// Parses what a llama-bench run printed on stdout: `-o json` (an array of objects with n_prompt,
// n_gen, avg_ts, stddev_ts; text around the array, e.g. a log line, is skipped), `-o jsonl`
// (one such object per line) or the default Markdown table (its `test` and `t/s` columns,
// "123.45 ± 0.67"; `threads` and `type_k` when present). invalid_argument, saying what was
// seen, when no result can be read from the text.
Result<std::vector<PeerResult>> parse_llama_bench_output(std::string_view text);

// The peer result to compare with hearth's result for `test` at `threads` with KV type `type_k`
// on the model file `model_path`: among those with the same test name whose threads and type_k,
// where the peer reported them, are the same, the first whose model file is the same one (same
// file, or same file name) and else the first. nullptr when there is none.
const PeerResult* match_peer_result(const std::vector<PeerResult>& peer, const std::string& test, int threads,
                                    const std::string& type_k, const std::string& model_path = "");

}  // namespace hearth::cli
