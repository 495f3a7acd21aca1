// hearth create / import through the real binary, on a temporary store with no daemon running:
// create -f with every instruction, `show --modelfile` round-tripping through a second create,
// --quantize, errors as one line, and import --dry-run / import over a fake Hugging Face cache
// (HF_HOME) and LM Studio folder (HOME).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <regex>
#include <sstream>

#include "cli/cli_daemon.h"

namespace {

using namespace hearth::test;
namespace fs = std::filesystem;

class CliCreate : public ::testing::Test {
protected:
    void SetUp() override {
        const std::string test = ::testing::UnitTest::GetInstance()->current_test_info()->name();
        base_ = fs::temp_directory_path() / ("hearth-cli-create-" + std::to_string(::getpid()) + "-" + test);
        fs::remove_all(base_);
        fs::create_directories(base_ / "models");
        fs::create_directories(base_ / "work");
        fs::create_directories(base_ / "home");
        dead_port_ = free_port();
    }
    void TearDown() override { fs::remove_all(base_); }

    std::string env() const {
        return "HEARTH_HOST=127.0.0.1:" + std::to_string(dead_port_) + " HEARTH_MODELS=" + (base_ / "models").string() +
               " HOME=" + (base_ / "home").string() + " HF_HOME=" + (base_ / "hf").string();
    }
    std::string write(const std::string& name, const std::string& text) const {
        const fs::path p = base_ / "work" / name;
        std::ofstream(p, std::ios::binary) << text;
        return p.string();
    }
    std::string copy_model(const std::string& name, const fs::path& dir) const {
        fs::create_directories(dir);
        const fs::path dst = dir / name;
        fs::copy_file(model(name), dst, fs::copy_options::overwrite_existing);
        return dst.string();
    }
    // The Modelfile without its leading comment lines (they name the model).
    static std::string body(const std::string& modelfile) {
        std::istringstream in(modelfile);
        std::string out, line;
        bool head = true;
        while (std::getline(in, line)) {
            if (head && (line.rfind("#", 0) == 0 || line.empty())) continue;
            head = false;
            out += line + "\n";
        }
        return out;
    }

    fs::path base_;
    int dead_port_ = 0;
};

TEST_F(CliCreate, CreateFromAModelfileAndShowRoundTrips) {
    copy_model("stories260K.gguf", base_ / "work");
    const std::string mf = write("Modelfile", R"(# a story teller
FROM ./stories260K.gguf
SYSTEM """You tell stories.
Say "The end" when done; never write \""" in a story."""
PARAMETER temperature 0
PARAMETER num_predict 5
PARAMETER stop "<end>"
PARAMETER stop " THE END "
MESSAGE user Tell me a story
MESSAGE assistant "Once upon a time..."
LICENSE """MIT
Copyright hearth"""
)");
    HearthRun c = run_hearth("create storyteller -f " + mf, "", env());
    ASSERT_EQ(c.exit_code, 0) << c.err;
    EXPECT_NE(c.err.find("parsing GGUF\n"), std::string::npos) << c.err;
    EXPECT_NE(c.err.find("linked stories260K.gguf into the store (a hard link: no space used)\n"), std::string::npos) << c.err;
    EXPECT_NE(c.err.find("writing manifest\nsuccess\n"), std::string::npos) << c.err;

    HearthRun sys = run_hearth("show storyteller --system", "", env());
    EXPECT_EQ(sys.out, "You tell stories.\nSay \"The end\" when done; never write \"\"\" in a story.\n");
    HearthRun params = run_hearth("show storyteller --parameters", "", env());
    EXPECT_NE(params.out.find("num_predict"), std::string::npos) << params.out;
    HearthRun run = run_hearth("run storyteller Hello", "", env());
    ASSERT_EQ(run.exit_code, 0) << run.err;

    // show --modelfile -> create -> show --modelfile gives the same Modelfile.
    HearthRun shown = run_hearth("show storyteller --modelfile", "", env());
    ASSERT_EQ(shown.exit_code, 0) << shown.err;
    EXPECT_NE(shown.out.find("\nFROM " + (base_ / "models").string() + "/blobs/sha256-"), std::string::npos) << shown.out;
    EXPECT_NE(shown.out.find("\nMESSAGE user Tell me a story\n"), std::string::npos) << shown.out;
    EXPECT_NE(shown.out.find("\nPARAMETER stop \" THE END \"\n"), std::string::npos) << shown.out;
    EXPECT_NE(shown.out.find("never write \\\"\"\" in a story"), std::string::npos) << shown.out;
    const std::string mf2 = write("Modelfile.2", shown.out);
    HearthRun c2 = run_hearth("create storyteller:copy -f " + mf2, "", env());
    ASSERT_EQ(c2.exit_code, 0) << c2.err;
    EXPECT_EQ(c2.err.find("hashing"), std::string::npos) << c2.err;  // FROM the store's blob: no rehash
    HearthRun shown2 = run_hearth("show storyteller:copy --modelfile", "", env());
    EXPECT_EQ(body(shown2.out), body(shown.out));

    HearthRun list = run_hearth("list", "", env());
    EXPECT_NE(list.out.find("storyteller:latest"), std::string::npos) << list.out;
    EXPECT_NE(list.out.find("storyteller:copy"), std::string::npos) << list.out;
    // Removing one keeps the shared weights for the other.
    ASSERT_EQ(run_hearth("rm storyteller", "", env()).exit_code, 0);
    EXPECT_EQ(run_hearth("run storyteller:copy Hello", "", env()).exit_code, 0);
}

TEST_F(CliCreate, Quantizes) {
    copy_model("llama3-tiny.F16.gguf", base_ / "work");
    const std::string mf = write("Modelfile", "FROM llama3-tiny.F16.gguf\n");
    HearthRun c = run_hearth("create tiny:q8 -f " + mf + " --quantize q8_0", "", env());
    ASSERT_EQ(c.exit_code, 0) << c.err;
    EXPECT_NE(c.err.find("quantizing F16 model to Q8_0"), std::string::npos) << c.err;
    HearthRun show = run_hearth("show tiny:q8", "", env());
    EXPECT_NE(show.out.find("quantization        Q8_0"), std::string::npos) << show.out;
}

TEST_F(CliCreate, ErrorsAreOneLine) {
    copy_model("stories260K.gguf", base_ / "work");
    expect_one_error_line(run_hearth("create x -f " + write("M1", "FROM ./stories260K.gguf\nFORM y\n"), "", env()), "create",
                          "M1:2: unknown instruction \"FORM\"");
    expect_one_error_line(run_hearth("create x -f " + write("M2", "FROM ./stories260K.gguf\nADAPTER ./lora.gguf\n"), "", env()),
                          "create", "ADAPTER ./lora.gguf: no such file");
    expect_one_error_line(run_hearth("create x -f " + write("M3", "FROM ./nope.gguf\n"), "", env()), "create", "no such file");
    expect_one_error_line(run_hearth("create x -f " + (base_ / "work" / "missing").string(), "", env()), "create", "no such file");
    expect_one_error_line(
        run_hearth("create x -f " + write("M4", "FROM ./stories260K.gguf\nTEMPLATE {{ .Prompt }}\n"), "", env()), "create",
        "Go template");
    EXPECT_EQ(run_hearth("list", "", env()).out, "NAME    ID    SIZE    MODIFIED\n");
}

// kill -9 in the middle of a create (while it hashes a large file): no model appears, the store
// stays consistent, and the next create removes what the dead one left.
TEST_F(CliCreate, KilledMidwayLeavesNoModel) {
    const std::string big = copy_model("stories260K.gguf", base_ / "work");
    fs::resize_file(big, 6ull << 30);  // sparse: gigabytes of zeros after the model keep it hashing for seconds
    const std::string mf = write("Modelfile", "FROM ./stories260K.gguf\nSYSTEM big\n");
    const fs::path blobs = base_ / "models" / "blobs";
    auto leftovers = [&] {
        size_t n = 0;
        std::error_code ec;
        for (auto it = fs::directory_iterator(blobs, ec); !ec && it != fs::directory_iterator(); it.increment(ec))
            n += it->path().filename().string().rfind(".hearth-tmp-", 0) == 0;
        return n;
    };
    const std::string models = "HEARTH_MODELS=" + (base_ / "models").string();
    const std::string host = "HEARTH_HOST=127.0.0.1:" + std::to_string(dead_port_);
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        const int devnull = ::open("/dev/null", O_WRONLY);
        ::dup2(devnull, STDERR_FILENO);
        char* const argv[] = {(char*)HEARTH_BINARY, (char*)"create", (char*)"big", (char*)"-f", (char*)mf.c_str(), nullptr};
        char* const envp[] = {(char*)models.c_str(), (char*)host.c_str(), nullptr};
        ::execve(HEARTH_BINARY, argv, envp);
        ::_exit(127);
    }
    bool seen = false;
    for (int i = 0; i < 2000 && !seen; ++i) {
        seen = leftovers() > 0;
        if (!seen) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    ASSERT_TRUE(seen) << "the create never started hashing";
    ASSERT_TRUE(WIFSIGNALED(status)) << "the create finished before it was killed";
    EXPECT_EQ(run_hearth("list", "", env()).out, "NAME    ID    SIZE    MODIFIED\n");
    EXPECT_FALSE(fs::exists(base_ / "models" / "manifests" / "registry.ollama.ai" / "library" / "big"));
    EXPECT_GT(leftovers(), 0u);  // what the dead process was writing (a link, no space used)

    fs::resize_file(big, fs::file_size(model("stories260K.gguf")));
    HearthRun c = run_hearth("create small -f " + mf, "", env());
    ASSERT_EQ(c.exit_code, 0) << c.err;
    EXPECT_EQ(leftovers(), 0u);
    EXPECT_NE(run_hearth("list", "", env()).out.find("small:latest"), std::string::npos);
}

TEST_F(CliCreate, ImportsHuggingFaceAndLmStudioFiles) {
    EXPECT_NE(run_hearth("import --dry-run", "", env()).out.find("no GGUF files found in:"), std::string::npos);
    const fs::path repo = base_ / "hf" / "hub" / "models--someone--Stories-GGUF";
    const std::string blob = copy_model("stories260K.gguf", repo / "blobs");
    fs::create_directories(repo / "snapshots" / "r1");
    fs::create_symlink(blob, repo / "snapshots" / "r1" / "stories-Q8_0.gguf");
    copy_model("qwen3-tiny.Q8_0.gguf", base_ / "home" / ".lmstudio" / "models" / "lmstudio-community" / "Qwen3-GGUF");

    HearthRun dry = run_hearth("import --dry-run", "", env());
    ASSERT_EQ(dry.exit_code, 0) << dry.err;
    EXPECT_TRUE(std::regex_search(dry.out, std::regex(R"(hf\.co/someone/Stories-GGUF:Q8_0 +1\.2 MB +new +)"))) << dry.out;
    EXPECT_TRUE(std::regex_search(dry.out, std::regex(R"(hf\.co/lmstudio-community/Qwen3-GGUF:Q8_0 +\S+ \S+ +new +)"))) << dry.out;
    EXPECT_EQ(run_hearth("list", "", env()).out, "NAME    ID    SIZE    MODIFIED\n");  // a dry run writes nothing

    HearthRun imp = run_hearth("import", "", env());
    ASSERT_EQ(imp.exit_code, 0) << imp.err;
    EXPECT_NE(imp.out.find("imported hf.co/someone/Stories-GGUF:Q8_0 (1.2 MB, hard link: no space used)"), std::string::npos) << imp.out;
    EXPECT_NE(imp.out.find("2 imported, 0 already imported, 0 skipped"), std::string::npos) << imp.out;
    struct stat a{}, b{};
    ASSERT_EQ(::stat(blob.c_str(), &a), 0);
    EXPECT_EQ(a.st_nlink, 2u);  // the cache's file and the store's blob are one
    (void)b;
    EXPECT_NE(run_hearth("list", "", env()).out.find("hf.co/someone/Stories-GGUF:Q8_0"), std::string::npos);
    EXPECT_EQ(run_hearth("run hf.co/someone/Stories-GGUF:Q8_0 Once -n 2", "", env()).exit_code, 0);
    HearthRun again = run_hearth("import --dry-run", "", env());
    EXPECT_TRUE(std::regex_search(again.out, std::regex(R"(hf\.co/someone/Stories-GGUF:Q8_0 +1\.2 MB +imported +)"))) << again.out;
    EXPECT_NE(run_hearth("import", "", env()).out.find("0 imported, 2 already imported"), std::string::npos);
}

}  // namespace
