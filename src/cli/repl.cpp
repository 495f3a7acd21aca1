// The REPL of `hearth run`, Ollama's commands: /set parameter NAME VALUE, /set system TEXT,
// /set think|nothink, /set format json|noformat, /set verbose|quiet, /show info|system|
// parameters|template|license|modelfile, /clear, /bye (/exit), /? (/help), and """ for a
// multi-line message. The same for an in-process session and one through the daemon.
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <iterator>
#include <sstream>

#include "cli/common.h"
#include "cli/format.h"
#include "cli/run.h"

namespace hearth::cli {
namespace {

// Set by the SIGINT handler, read by whichever loop waits on a reply or a line.
std::atomic<bool> g_interrupted{false};
extern "C" void on_sigint(int) { g_interrupted.store(true); }

const char* const kParameterNames =
    "temperature, top_k, top_p, min_p, typical_p, repeat_penalty, repeat_last_n, presence_penalty, "
    "frequency_penalty, seed, num_predict, num_ctx, stop";

void print_help() {
    std::printf(
        "Available commands:\n"
        "  /set parameter NAME VALUE   Set a parameter (%s)\n"
        "  /set system TEXT            Set the system message\n"
        "  /set think | nothink        Turn thinking on or off (where the template has a switch)\n"
        "  /set format json | noformat Constrain replies to JSON, or not\n"
        "  /set verbose | quiet        Show or hide timings after each reply\n"
        "  /show info | parameters | system | template | license | modelfile\n"
        "  /clear                      Forget the conversation\n"
        "  /bye                        Exit\n"
        "  /?, /help                   This help\n\n"
        "Use \"\"\" to begin and end a multi-line message.\n",
        kParameterNames);
}

std::vector<std::string> split_words(const std::string& s) {
    std::istringstream in(s);
    std::vector<std::string> w;
    for (std::string x; in >> x;) w.push_back(x);
    return w;
}

// Handles a /command; false for /bye.
bool command(ChatSession& session, RunArgs& a, const std::string& line) {
    const std::vector<std::string> w = split_words(line);
    const std::string& cmd = w[0];
    if (cmd == "/bye" || cmd == "/exit") return false;
    if (cmd == "/clear") {
        session.clear();
        std::printf("Cleared session context\n");
    } else if (cmd == "/?" || cmd == "/help") {
        print_help();
    } else if (cmd == "/set" && w.size() >= 2) {
        const std::string& what = w[1];
        if (what == "parameter" && w.size() >= 3) {
            session.set_parameter(w[2], std::vector<std::string>(w.begin() + 3, w.end()));
        } else if (what == "system") {
            const size_t p = line.find("system") + 6;
            std::string text = p < line.size() ? line.substr(p) : "";
            while (!text.empty() && text.front() == ' ') text.erase(0, 1);
            if (text.size() >= 2 && text.front() == '"' && text.back() == '"') text = text.substr(1, text.size() - 2);
            session.set_system(text);
            std::printf("Set system message.\n");
        } else if (what == "think" || what == "nothink") {
            session.set_think(what == "think" ? (w.size() >= 3 ? w[2] : "true") : "false");
            std::printf("Set '%s' mode.\n", what.c_str());
        } else if (what == "format" && w.size() >= 3) {
            if (session.set_format(w[2])) std::printf("Set format to '%s' mode.\n", w[2].c_str());
        } else if (what == "noformat") {
            session.set_format("");
            std::printf("Disabled format.\n");
        } else if (what == "verbose" || what == "quiet") {
            a.verbose = what == "verbose";
            std::printf("Set '%s' mode.\n", what.c_str());
        } else {
            print_help();
        }
    } else if (cmd == "/show" && w.size() >= 2) {
        if (!session.show(w[1])) print_help();
    } else {
        std::printf("Unknown command '%s'. Type /? for help\n", cmd.c_str());
    }
    std::fflush(stdout);
    return true;
}

}  // namespace

void install_sigint() { std::signal(SIGINT, on_sigint); }
bool interrupted() { return g_interrupted.load(); }
void clear_interrupted() { g_interrupted.store(false); }

void out(std::string_view s) {
    std::fwrite(s.data(), 1, s.size(), stdout);
    std::fflush(stdout);
}

void ReplyPrinter::print(const chat::ChatDelta& d) {
    if (!d.thinking.empty() && show_thinking_) {
        if (!in_thinking_) {
            out(tty_ ? "\x1b[2mThinking...\n" : "Thinking...\n");
            in_thinking_ = true;
        }
        out(d.thinking);
    }
    if (!d.content.empty() || !d.tool_calls.empty()) end_thinking();
    if (!d.content.empty()) {
        out(d.content);
        at_line_start_ = d.content.back() == '\n';
    }
    for (const auto& c : d.tool_calls) {
        if (!at_line_start_) out("\n");
        const nlohmann::ordered_json j{{"name", c.name}, {"arguments", c.arguments}};
        out(j.dump() + "\n");
        at_line_start_ = true;
    }
}

void ReplyPrinter::end_thinking() {
    if (!in_thinking_) return;
    out(tty_ ? "\n...done thinking.\n\n\x1b[0m" : "\n...done thinking.\n\n");
    in_thinking_ = false;
}

void print_timings(const Timings& t) {
    auto rate = [](int64_t n, int64_t ns) { return ns > 0 ? (double)n / ((double)ns / 1e9) : 0.0; };
    std::fprintf(stderr, "total duration:       %s\n", go_duration(t.total_ns).c_str());
    std::fprintf(stderr, "load duration:        %s\n", go_duration(t.load_ns).c_str());
    if (t.prompt_eval_count >= 0) {
        std::fprintf(stderr, "prompt eval count:    %lld token(s)\n", (long long)t.prompt_eval_count);
        std::fprintf(stderr, "prompt eval duration: %s\n", go_duration(t.prompt_eval_ns).c_str());
        std::fprintf(stderr, "prompt eval rate:     %.2f tokens/s\n", rate(t.prompt_eval_count, t.prompt_eval_ns));
    }
    if (t.eval_count >= 0) {
        std::fprintf(stderr, "eval count:           %lld token(s)\n", (long long)t.eval_count);
        std::fprintf(stderr, "eval duration:        %s\n", go_duration(t.eval_ns).c_str());
        std::fprintf(stderr, "eval rate:            %.2f tokens/s\n", rate(t.eval_count, t.eval_ns));
    }
}

void drive(ChatSession& session, RunArgs& a) {
    install_sigint();
    if (!a.prompt.empty()) {
        if (!session.turn(a.prompt, false)) std::exit(1);
        return;
    }
    if (!isatty(STDIN_FILENO) && !a.interactive) {  // piped input is one prompt
        std::string text((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
        while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
        if (text.empty()) fail("run", "the prompt on standard input is empty");
        if (!session.turn(text, false)) std::exit(1);
        return;
    }
    if (const std::string n = session.note(); !n.empty()) std::fprintf(stderr, "(%s)\n", n.c_str());
    std::fprintf(stderr, "Type a message and press Enter; /? for help, /bye or Ctrl-D to quit, Ctrl-C to stop a reply.\n");
    std::string line;
    for (;;) {
        std::fputs(">>> ", stdout);
        std::fflush(stdout);
        clear_interrupted();
        if (!std::getline(std::cin, line)) {
            if (interrupted() && !std::cin.eof()) {  // Ctrl-C at the prompt: a fresh line
                std::cin.clear();
                std::fputc('\n', stdout);
                continue;
            }
            break;
        }
        if (line.rfind("\"\"\"", 0) == 0) {  // a multi-line message, up to a line ending in """
            std::string text = line.substr(3), more;
            bool closed = text.size() >= 3 && text.compare(text.size() - 3, 3, "\"\"\"") == 0;
            while (!closed && std::getline(std::cin, more)) {
                text += "\n" + more;
                closed = more.size() >= 3 && more.compare(more.size() - 3, 3, "\"\"\"") == 0;
            }
            if (closed) text.erase(text.size() - 3);
            line = text;
            if (line.empty()) continue;
            if (!session.turn(line, true)) session.clear();
            continue;
        }
        if (line.empty()) continue;
        if (line[0] == '/') {
            if (!command(session, a, line)) break;
            continue;
        }
        if (!session.turn(line, true)) session.clear();  // a failed turn starts over
    }
}

}  // namespace hearth::cli
