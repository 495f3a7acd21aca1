#include "cli/bench_peer.h"

#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>

namespace hearth::cli {
namespace {

using nlohmann::json;

std::string_view trim(std::string_view s) {
    const size_t b = s.find_first_not_of(" \t\r\n");
    if (b == std::string_view::npos) return {};
    return s.substr(b, s.find_last_not_of(" \t\r\n") - b + 1);
}

std::vector<std::string_view> split_lines(std::string_view text) {
    std::vector<std::string_view> lines;
    while (!text.empty()) {
        const size_t nl = text.find('\n');
        lines.push_back(text.substr(0, nl));
        if (nl == std::string_view::npos) break;
        text.remove_prefix(nl + 1);
    }
    return lines;
}

// One llama-bench JSON object; false when it lacks what a result needs (n_prompt, n_gen, avg_ts).
bool read_json_result(const json& o, PeerResult& r) {
    if (!o.is_object()) return false;
    auto number = [&](const char* key, double& out) {
        auto it = o.find(key);
        if (it == o.end() || !it->is_number()) return false;
        out = it->get<double>();
        return true;
    };
    double n_prompt = 0, n_gen = 0, n_depth = 0, threads = -1;
    if (!number("n_prompt", n_prompt) || !number("n_gen", n_gen) || !number("avg_ts", r.tokens_per_second)) return false;
    number("n_depth", n_depth);
    number("stddev_ts", r.stddev);
    if (number("n_threads", threads)) r.threads = (int)threads;
    r.test = llama_bench_test_name((long long)n_prompt, (long long)n_gen, (long long)n_depth);
    if (auto it = o.find("type_k"); it != o.end() && it->is_string()) r.type_k = it->get<std::string>();
    for (const char* key : {"model_filename", "model_type"})
        if (auto it = o.find(key); it != o.end() && it->is_string() && r.model.empty()) r.model = it->get<std::string>();
    return true;
}

// `-o json`: the whole text, or the outermost [...] in it (a peer may print a line around it).
bool parse_json_array(std::string_view text, std::vector<PeerResult>& out) {
    json j = json::parse(text, nullptr, false);
    if (j.is_discarded()) {
        const size_t b = text.find('['), e = text.rfind(']');
        if (b == std::string_view::npos || e == std::string_view::npos || e < b) return false;
        j = json::parse(text.substr(b, e - b + 1), nullptr, false);
        if (j.is_discarded()) return false;
    }
    if (j.is_object()) j = json::array({j});
    if (!j.is_array()) return false;
    for (const json& o : j) {
        PeerResult r;
        if (read_json_result(o, r)) out.push_back(std::move(r));
    }
    return !out.empty();
}

// `-o jsonl`: one object per line; other lines are ignored.
bool parse_json_lines(std::string_view text, std::vector<PeerResult>& out) {
    for (std::string_view line : split_lines(text)) {
        line = trim(line);
        if (line.empty() || line.front() != '{') continue;
        json o = json::parse(line, nullptr, false);
        PeerResult r;
        if (!o.is_discarded() && read_json_result(o, r)) out.push_back(std::move(r));
    }
    return !out.empty();
}

// "| a | b |" -> {"a", "b"}; empty when the line is not a table row.
std::vector<std::string> table_cells(std::string_view line) {
    line = trim(line);
    if (line.size() < 2 || line.front() != '|') return {};
    line.remove_prefix(1);
    if (line.back() == '|') line.remove_suffix(1);
    std::vector<std::string> cells;
    for (;;) {
        const size_t bar = line.find('|');
        cells.emplace_back(trim(line.substr(0, bar)));
        if (bar == std::string_view::npos) break;
        line.remove_prefix(bar + 1);
    }
    return cells;
}

bool is_separator_row(const std::vector<std::string>& cells) {
    for (const std::string& c : cells)
        if (c.empty() || c.find_first_not_of("-: ") != std::string::npos) return false;
    return true;
}

// "123.45 ± 0.67" (or "123.45" alone) -> mean and stddev; false when it does not start with a number.
bool parse_rate(const std::string& cell, double& mean, double& stddev) {
    const char* s = cell.c_str();
    char* end = nullptr;
    mean = std::strtod(s, &end);
    if (end == s) return false;
    stddev = 0;
    const size_t pm = cell.find("\xC2\xB1");  // ±
    if (pm != std::string::npos) {
        const char* t = s + pm + 2;
        char* e2 = nullptr;
        const double sd = std::strtod(t, &e2);
        if (e2 != t) stddev = sd;
    }
    return true;
}

// The default `-o md` table: the first header row with `test` and `t/s` columns, then its rows.
bool parse_markdown(std::string_view text, std::vector<PeerResult>& out) {
    int col_test = -1, col_ts = -1, col_threads = -1, col_type_k = -1, col_model = -1;
    size_t n_cols = 0;
    for (std::string_view line : split_lines(text)) {
        std::vector<std::string> cells = table_cells(line);
        if (cells.empty()) {
            if (col_test >= 0 && !out.empty()) break;  // the table ended
            continue;
        }
        if (col_test < 0) {
            for (size_t i = 0; i < cells.size(); ++i) {
                if (cells[i] == "test") col_test = (int)i;
                else if (cells[i] == "t/s") col_ts = (int)i;
                else if (cells[i] == "threads") col_threads = (int)i;
                else if (cells[i] == "type_k") col_type_k = (int)i;
                else if (cells[i] == "model") col_model = (int)i;
            }
            if (col_test < 0 || col_ts < 0) col_test = col_ts = col_threads = col_type_k = col_model = -1;
            n_cols = cells.size();
            continue;
        }
        if (is_separator_row(cells) || cells.size() != n_cols) continue;
        PeerResult r;
        r.test = cells[col_test];
        if (r.test.empty() || !parse_rate(cells[col_ts], r.tokens_per_second, r.stddev)) continue;
        if (col_threads >= 0) {
            char* end = nullptr;
            const long t = std::strtol(cells[col_threads].c_str(), &end, 10);
            if (end != cells[col_threads].c_str() && *end == '\0') r.threads = (int)t;
        }
        if (col_type_k >= 0) r.type_k = cells[col_type_k];
        if (col_model >= 0) r.model = cells[col_model];
        out.push_back(std::move(r));
    }
    return !out.empty();
}

std::string file_name(const std::string& path) { return std::filesystem::path(path).filename().string(); }

bool same_file(const std::string& a, const std::string& b) {
    if (a.empty() || b.empty()) return false;
    std::error_code ec;
    if (std::filesystem::equivalent(a, b, ec)) return true;
    return file_name(a) == file_name(b);
}

}  // namespace

std::string llama_bench_test_name(long long n_prompt, long long n_gen, long long n_depth) {
    std::string name;
    if (n_prompt > 0 && n_gen == 0) name = "pp" + std::to_string(n_prompt);
    else if (n_gen > 0 && n_prompt == 0) name = "tg" + std::to_string(n_gen);
    else name = "pp" + std::to_string(n_prompt) + "+tg" + std::to_string(n_gen);
    if (n_depth > 0) name += " @ d" + std::to_string(n_depth);
    return name;
}

Result<std::vector<PeerResult>> parse_llama_bench_output(std::string_view text) {
    std::vector<PeerResult> out;
    if (trim(text).empty()) return error(StatusCode::invalid_argument, "the peer printed nothing on standard output");
    if (parse_json_array(text, out)) return out;
    out.clear();
    if (parse_json_lines(text, out)) return out;
    out.clear();
    if (parse_markdown(text, out)) return out;
    std::string first(trim(text).substr(0, 60));
    if (const size_t nl = first.find('\n'); nl != std::string::npos) first.resize(nl);
    return error(StatusCode::invalid_argument,
                 "the peer's output is neither llama-bench JSON (objects with n_prompt, n_gen, avg_ts) nor a "
                 "llama-bench Markdown table (test and t/s columns); it starts \"" + first + "\"");
}

const PeerResult* match_peer_result(const std::vector<PeerResult>& peer, const std::string& test, int threads,
                                    const std::string& type_k, const std::string& model_path) {
    const PeerResult* first = nullptr;
    for (const PeerResult& r : peer) {
        if (r.test != test) continue;
        if (r.threads >= 0 && threads >= 0 && r.threads != threads) continue;
        if (!r.type_k.empty() && !type_k.empty() && r.type_k != type_k) continue;
        if (same_file(r.model, model_path)) return &r;
        if (!first) first = &r;
    }
    return first;
}

}  // namespace hearth::cli
