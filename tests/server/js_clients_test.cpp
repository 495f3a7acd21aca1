// The daemon driven by the official JavaScript client libraries from the npm registry: the
// `ollama` package (ollama-js) and the `openai` package (openai-node), pinned in
// tests/server/js/package-lock.json. Each test starts a server in this process on a free
// loopback port over the shared test models and runs one script under tests/server/js/ with
// node; the script prints a line per check and exits non-zero at the first failure.
//
// Needs node (>= 18) and the packages: `npm ci --prefix tests/server/js` (scripts/test.sh runs
// it). Without them the tests fail and say so: a silent skip would hide that the clients were
// never run. HEARTH_JS_KEEP_GOING=1 in the environment makes a script run every check and list
// all failures; HEARTH_JS_ONLY=<substring> runs only the checks whose name contains it.
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <string>

#include "server_test_util.h"

namespace hearth::server {
namespace {

using namespace test_util;

// The scripts sit beside this file; tests/CMakeLists.txt passes no source dir to server_tests.
const fs::path kJsDir = fs::path(__FILE__).parent_path() / "js";

std::string shell_quote(const std::string& s) {
    std::string q = "'";
    for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return q + "'";
}

struct Run {
    int exit_code = -1;  // the shell's exit status; -1 when it did not exit normally
    std::string output;  // stdout and stderr, interleaved
};

Run run_shell(const std::string& cmd) {
    Run r;
    FILE* p = popen((cmd + " 2>&1").c_str(), "r");
    if (!p) return r;
    char buf[4096];
    for (size_t n; (n = fread(buf, 1, sizeof buf, p)) > 0;) r.output.append(buf, n);
    const int status = pclose(p);
    if (status != -1 && WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
    return r;
}

// Empty when node and the installed packages are there; otherwise what is missing and how to
// get it.
std::string missing_prerequisites() {
    const std::string fix = "run `npm ci --prefix tests/server/js` from the repository root (scripts/test.sh does; "
                            "scripts/setup.sh installs Node.js and npm)";
    if (!fs::exists(kJsDir / "package.json"))
        return "no package.json in " + kJsDir.string() + " (found through __FILE__; was the build given relative source paths?)";
    Run v = run_shell("node --version");
    if (v.exit_code != 0) return "node is not on PATH: install Node.js >= 18, then " + fix;
    int major = 0;
    if (std::sscanf(v.output.c_str(), "v%d", &major) != 1 || major < 18)
        return "node " + v.output.substr(0, v.output.find('\n')) + " is too old: fetch and AbortController need >= 18";
    for (const char* pkg : {"ollama", "openai"})
        if (!fs::exists(kJsDir / "node_modules" / pkg / "package.json"))
            return "the npm package '" + std::string(pkg) + "' is not installed in " + (kJsDir / "node_modules").string() + ": " + fix;
    return "";
}

// Runs tests/server/js/<script> against a fresh server and fails with the script's output
// unless every check passed.
void run_client_script(const std::string& tag, const std::string& script) {
    const std::string missing = missing_prerequisites();
    if (!missing.empty()) FAIL() << missing;
    TempStore store(tag);
    auto srv = start_server(test_config(store.root()));
    ASSERT_TRUE(srv);
    const std::string base = "http://127.0.0.1:" + std::to_string(srv->port());
    const std::string cmd = "cd " + shell_quote(kJsDir.string()) + " && HEARTH_BASE_URL=" + shell_quote(base) +
                            " node " + shell_quote(script);
    Run r = run_shell(cmd);
    EXPECT_EQ(r.exit_code, 0) << cmd << "\n" << r.output;
    if (r.exit_code == 0) std::printf("%s", r.output.c_str());  // one line per check, for the log
}

TEST(JsClients, OllamaJs) { run_client_script("js-ollama", "ollama_client.mjs"); }

TEST(JsClients, OpenAiNode) { run_client_script("js-openai", "openai_client.mjs"); }

}  // namespace
}  // namespace hearth::server
