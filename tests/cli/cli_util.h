// Helpers of the CLI tests: run the real `hearth` binary and look at what it printed.
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "support/testdata.h"

namespace hearth::test {

struct HearthRun {
    int exit_code = -1;
    std::string out;  // stdout
    std::string err;  // stderr
};

// A scratch file of this test process (one folder per pid under the temp directory).
inline std::filesystem::path cli_temp_file(const std::string& name) {
    const auto dir = std::filesystem::temp_directory_path() / ("hearth_cli_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    return dir / name;
}

// `hearth ARGS` (shell syntax: quote arguments with spaces) with stdin_text on standard input;
// env_assignments (e.g. "HEARTH_NUM_THREAD=1") are set for that one run.
inline HearthRun run_hearth(const std::string& args, const std::string& stdin_text = "",
                            const std::string& env_assignments = "") {
    const std::string in = cli_temp_file("in").string(), err = cli_temp_file("err").string();
    std::ofstream(in) << stdin_text;
    const std::string cmd = (env_assignments.empty() ? "" : "env " + env_assignments + " ") +
                            std::string(HEARTH_BINARY) + " " + args + " <" + in + " 2>" + err;
    HearthRun r;
    FILE* p = popen(cmd.c_str(), "r");
    std::array<char, 4096> buf;
    size_t n;
    while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
    const int status = pclose(p);
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r.err = read_text_file(err);
    return r;
}

// A model file of the shared test data.
inline std::string model(const std::string& name) { return testdata_path("models/" + name); }

// Exactly one line on stderr, starting with "hearth <cmd>: ", containing `what`; exit status 1.
inline void expect_one_error_line(const HearthRun& r, const std::string& cmd, const std::string& what) {
    EXPECT_EQ(r.exit_code, 1) << r.err;
    EXPECT_EQ(r.err.rfind("hearth " + cmd + ": ", 0), 0u) << r.err;
    EXPECT_NE(r.err.find(what), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

}  // namespace hearth::test
