// hearth pull MODEL [--insecure]: Ollama's pull. Through the daemon's POST /api/pull when one
// runs (it owns the store then), otherwise in this process (store/pull.h; the store's lock keeps
// a daemon that starts meanwhile from interleaving its writes).
//
// Progress goes to stderr, as Ollama's does. On a terminal the lines redraw in place, one per
// status and one bar per blob:
//
//   pulling manifest
//   pulling 6a0746a1ec1a:  45% ▕█████████           ▏ 1.2 GB/2.6 GB  48 MB/s  29s
//
// Elsewhere (a pipe, a log file) every line is written once, complete, without control
// characters: a blob's bar when it starts, at each further tenth, and when it is done.
//
// Before the bars, a line says whether the model will fit in this machine's memory (its GGUF
// header read first, store/pull.h), with the context, KV cache type and parallelism the daemon
// would use (HEARTH_CONTEXT_LENGTH, HEARTH_KV_CACHE_TYPE, HEARTH_NUM_PARALLEL, as `hearth fit`):
//
//   pulling manifest
//   does not fit: needs 40.1 GiB, 30.2 GiB available; try Q4_K_M (needs 20.3 GiB)
//
// It downloads anyway; with --check-fit a model that does not fit is refused before any byte of
// it is downloaded (exit status 1).
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <deque>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/client.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "cli/format.h"
#include "cli/models.h"
#include "server/config.h"
#include "store/pull.h"

namespace hearth::cli {
namespace {

using json = nlohmann::ordered_json;
using Clock = std::chrono::steady_clock;

// "29s", "4m05s", "1h02m".
std::string short_duration(double s) {
    const int64_t t = (int64_t)(s + 0.5);
    if (t < 60) return strformat("%llds", (long long)t);
    if (t < 3600) return strformat("%lldm%02llds", (long long)(t / 60), (long long)(t % 60));
    return strformat("%lldh%02lldm", (long long)(t / 3600), (long long)(t % 3600 / 60));
}

// The first `n` columns of UTF-8 text (a column per code point: the bar characters are three
// bytes, one column).
std::string cut_columns(const std::string& s, size_t n) {
    size_t cols = 0, i = 0;
    for (; i < s.size(); ++i) {
        if (((unsigned char)s[i] & 0xC0) != 0x80) {
            if (cols == n) break;
            ++cols;
        }
    }
    return s.substr(0, i);
}

// Draws the pull's events: redrawn in place on a terminal, line by line elsewhere.
class PullView {
public:
    PullView(FILE* out, bool tty) : out_(out), tty_(tty) {
        if (tty_) {
            winsize w{};
            if (::ioctl(fileno(out_), TIOCGWINSZ, &w) == 0 && w.ws_col > 0) width_ = w.ws_col;
            bar_width_ = std::clamp(width_ - 62, 8, 25);
        }
    }

    void on(const store::PullEvent& e) {
        const std::string key = e.digest.empty() ? e.status : e.digest;
        auto it = std::find_if(lines_.begin(), lines_.end(), [&](const Line& l) { return l.key == key; });
        const bool is_new = it == lines_.end();
        if (is_new) {
            Line fresh;
            fresh.key = key;
            lines_.push_back(std::move(fresh));
            it = std::prev(lines_.end());
        }
        Line& l = *it;
        if (!e.digest.empty()) {
            note_rate(l, e);
            l.text = bar_line(l, e);
        } else {
            l.text = e.status;
        }
        if (tty_) {
            const auto now = Clock::now();
            // Redraw at most ten times a second, but at once for a new line or a finished blob.
            if (is_new || e.completed == e.total || now - last_draw_ >= std::chrono::milliseconds(100)) {
                redraw();
                last_draw_ = now;
            }
            return;
        }
        // Line by line: a status once; a blob when it starts, at each further tenth, when done.
        if (e.digest.empty()) {
            if (is_new) print(l.text);
            return;
        }
        const int tenth = e.total > 0 ? (int)(e.completed * 10 / e.total) : 10;
        if (is_new || tenth > l.printed_tenth) {
            print(l.text);
            l.printed_tenth = tenth;
        }
    }

    // The last frame (a terminal gets its final state even when the last event came too soon).
    void finish() {
        if (tty_ && !lines_.empty()) redraw();
        std::fflush(out_);
    }

private:
    struct Line {
        std::string key;
        std::string text;
        int printed_tenth = -1;                                  // line by line: the last tenth written
        std::deque<std::pair<Clock::time_point, int64_t>> samples;  // recent (time, completed)
        double rate = 0;                                         // bytes/s
    };

    void note_rate(Line& l, const store::PullEvent& e) {
        if (e.bytes_per_s > 0) {  // in process: the downloader measured it
            l.rate = e.bytes_per_s;
            return;
        }
        const auto now = Clock::now();
        l.samples.push_back({now, e.completed});
        while (l.samples.size() > 2 && now - l.samples.front().first > std::chrono::seconds(5)) l.samples.pop_front();
        const double dt = std::chrono::duration<double>(l.samples.back().first - l.samples.front().first).count();
        if (dt >= 0.5) l.rate = (double)(l.samples.back().second - l.samples.front().second) / dt;
    }

    std::string bar_line(const Line& l, const store::PullEvent& e) const {
        const bool done = e.total > 0 && e.completed >= e.total;
        const int pct = e.total > 0 ? (int)(e.completed * 100 / e.total) : 0;
        const int filled = e.total > 0 ? (int)(e.completed * bar_width_ / e.total) : 0;
        std::string bar = "▕";
        for (int i = 0; i < bar_width_; ++i) bar += i < filled ? "█" : " ";
        bar += "▏";
        std::string s = strformat("%s: %3d%% %s ", e.status.c_str(), pct, bar.c_str());
        if (done) return s + human_bytes(e.total);
        s += human_bytes(e.completed) + "/" + human_bytes(e.total);
        if (l.rate > 0) {
            s += "  " + human_bytes((int64_t)l.rate) + "/s";
            const double eta = e.eta_s >= 0 ? e.eta_s : (double)(e.total - e.completed) / l.rate;
            s += "  " + short_duration(eta);
        }
        return s;
    }

    void print(const std::string& text) {
        std::fprintf(out_, "%s\n", text.c_str());
        std::fflush(out_);
    }

    void redraw() {
        std::string s;
        if (drawn_ > 0) s += strformat("\033[%dA", drawn_);  // back to the first line drawn
        for (const auto& l : lines_) s += "\r\033[K" + cut_columns(l.text, (size_t)std::max(width_ - 1, 10)) + "\n";
        drawn_ = (int)lines_.size();
        std::fputs(s.c_str(), out_);
        std::fflush(out_);
    }

    FILE* out_;
    bool tty_;
    int width_ = 80;      // terminal columns
    int bar_width_ = 20;  // cells between ▕ and ▏
    std::vector<Line> lines_;  // in order of first appearance
    int drawn_ = 0;            // terminal: lines drawn last time
    Clock::time_point last_draw_{};
};

store::PullEvent event_from_json(const json& j) {
    store::PullEvent e;
    auto str = [&](const char* k) { return j.contains(k) && j[k].is_string() ? j[k].get<std::string>() : std::string(); };
    auto num = [&](const char* k) { return j.contains(k) && j[k].is_number() ? j[k].get<int64_t>() : int64_t(0); };
    e.status = str("status");
    e.digest = str("digest");
    e.total = num("total");
    e.completed = num("completed");
    return e;
}

void pull(const std::string& model, bool insecure, bool check_fit) {
    PullView view(stderr, isatty(fileno(stderr)));
    if (auto d = find_daemon("pull")) {
        std::string stream_error;
        bool cancelled = false;
        json body = {{"model", model}, {"insecure", insecure}, {"stream", true}};
        if (check_fit) body["check_fit"] = true;  // the daemon checks with its own settings
        Status s = d->stream(
            "/api/pull", body,
            [&](const json& j) {
                if (j.contains("error")) {
                    stream_error = j["error"].is_string() ? j["error"].get<std::string>() : j["error"].dump();
                    return;
                }
                view.on(event_from_json(j));
            },
            nullptr, &cancelled);
        view.finish();
        if (!s.ok()) fail("pull", s);
        if (!stream_error.empty()) fail("pull", stream_error);
        return;
    }
    auto opts = store::PullOptions::from_env(insecure);
    if (!opts.ok()) fail("pull", opts.status());
    // The fit is checked as the daemon would load the model (and as `hearth fit` reports it).
    auto cfg = server::config_from_env();
    if (!cfg.ok()) fail("pull", cfg.status());
    opts->fit.num_ctx = cfg->context_length;
    opts->fit.kv_type = cfg->kv_cache_type;
    opts->fit.n_parallel = cfg->num_parallel > 0 ? cfg->num_parallel : 1;
    if (check_fit) opts->fit_check = store::FitCheck::require;
    store::Store st(store_root());
    Status s = store::pull_model(st, model, *opts, [&](const store::PullEvent& e) { view.on(e); });
    view.finish();
    if (!s.ok()) fail("pull", s);
}

}  // namespace

void add_pull_command(CLI::App& app) {
    auto model = std::make_shared<std::string>();
    auto insecure = std::make_shared<bool>(false);
    auto check_fit = std::make_shared<bool>(false);
    CLI::App* c = app.add_subcommand("pull", "Pull a model from a registry or a Hugging Face GGUF repository");
    c->add_option("model", *model,
                  "Model name: llama3.2, user/model:tag, host:port/namespace/model:tag, or hf.co/user/repo[:quant]")
        ->required();
    c->add_flag("--insecure", *insecure, "Use plain http for a registry (no TLS)");
    c->add_flag("--check-fit", *check_fit,
                "Refuse to download a model that does not fit in this machine's memory (by default the fit is "
                "only reported)");
    c->footer(
        "Environment: HEARTH_MIRRORS (comma-separated base URLs tried after the source), HF_ENDPOINT, HF_TOKEN, "
        "https_proxy / http_proxy / no_proxy; the fit is checked with HEARTH_CONTEXT_LENGTH, HEARTH_KV_CACHE_TYPE "
        "and HEARTH_NUM_PARALLEL.");
    c->callback([model, insecure, check_fit] { pull(*model, *insecure, *check_fit); });
}

}  // namespace hearth::cli
