// hearth create NAME [-f Modelfile] [-q TYPE]: Ollama's create. hearth import [--dry-run]: adopt
// the GGUF files that Hugging Face's cache and LM Studio already hold, without copying them.
//
// Both work on the store in this process (store/create.h), not through the daemon: a GGUF file on
// this machine is then hard-linked into the store instead of being uploaded as a second copy. A
// daemon serving the same store sees the new model at its next request (it reads manifests per
// request); one that has an older model of that name loaded is asked to unload it.
//
// Progress goes to stderr as Ollama's does: one line per status, and on a terminal the byte
// counts of hashing, copying or quantizing redraw in place.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "cli/client.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "cli/format.h"
#include "cli/models.h"
#include "store/create.h"

namespace hearth::cli {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

// Status lines on stderr; a byte count redraws its line on a terminal and is written once (at
// the end) elsewhere.
class StatusView {
public:
    StatusView() : tty_(::isatty(STDERR_FILENO) != 0) {}
    bool on(const store::CreateStatus& s) {
        if (s.total > 0) {
            const std::string line = s.status + strformat(" %3d%% %s/%s", (int)(100 * s.completed / s.total),
                                                          human_bytes(s.completed).c_str(), human_bytes(s.total).c_str());
            if (tty_) {
                std::fprintf(stderr, "\r\033[K%s", line.c_str());
                open_ = true;
                if (s.completed >= s.total) end_line();
            } else if (s.completed >= s.total) {
                std::fprintf(stderr, "%s\n", line.c_str());
            }
        } else {
            end_line();
            std::fprintf(stderr, "%s\n", s.status.c_str());
        }
        std::fflush(stderr);
        return true;
    }
    void end_line() {
        if (open_) std::fputc('\n', stderr);
        open_ = false;
    }

private:
    bool tty_;
    bool open_ = false;
};

// A loaded model of that name is stale now; a daemon that is not running has nothing loaded.
void unload_in_daemon(const std::string& model) {
    auto d = find_daemon("create");
    if (!d) return;
    (void)d->post("/api/generate", json{{"model", model}, {"keep_alive", 0}, {"stream", false}});
}

void create(const std::string& name, const std::string& file, const std::string& quantize) {
    std::error_code ec;
    const fs::path path = fs::absolute(file, ec);
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        if (fs::is_directory(path, ec))
            fail("create", file + " is a folder; write a Modelfile with FROM " + file + " and pass it with -f");
        fail("create", file + ": no such file (write a Modelfile, e.g. `FROM ./model.gguf`, or name one with -f)");
    }
    std::stringstream ss;
    ss << in.rdbuf();
    auto mf = store::parse_modelfile(ss.str(), file);
    if (!mf.ok()) fail("create", mf.status());
    auto req = store::create_request(*mf, name, path.parent_path().string());
    if (!req.ok()) fail("create", req.status());
    req->quantize = quantize;
    store::Store st(store_root());
    StatusView view;
    Status s = store::create_model(st, *req, [&](const store::CreateStatus& c) { return view.on(c); });
    view.end_line();
    if (!s.ok()) fail("create", s);
    if (auto n = store::ModelName::parse(name); n.ok()) unload_in_daemon(n->display());
}

void import(bool dry_run) {
    store::Store st(store_root());
    const store::ImportDirs dirs = store::default_import_dirs([](const char* k) { return std::getenv(k); });
    const auto found = store::find_importable(st, dirs);
    if (found.empty()) {
        std::string where;
        for (const auto& d : dirs.hf_hub) where += "\n  " + d + " (Hugging Face)";
        for (const auto& d : dirs.lmstudio) where += "\n  " + d + " (LM Studio)";
        std::printf("no GGUF files found in:%s\n", where.c_str());
        return;
    }
    if (dry_run) {
        std::vector<std::vector<std::string>> rows = {{"NAME", "SIZE", "STATUS", "PATH"}};
        for (const auto& c : found)
            rows.push_back({c.model, human_bytes(c.size),
                            c.imported ? "imported" : !c.skip.empty() ? "skipped: " + c.skip : "new", c.path});
        std::fputs(render_table(rows).c_str(), stdout);
        return;
    }
    int n_new = 0, n_failed = 0;
    for (const auto& c : found) {
        if (c.imported || !c.skip.empty()) continue;
        store::CreateRequest req;
        req.model = c.model;
        req.from = c.path;
        req.allow_paths = true;
        bool linked = false, copied = false;
        StatusView view;
        Status s = store::create_model(st, req, [&](const store::CreateStatus& e) {
            linked |= e.status.rfind("linked ", 0) == 0;
            copied |= e.status.rfind("copied ", 0) == 0;
            if (e.total > 0) view.on(e);  // only the hashing progress: one line per model below
            return true;
        });
        view.end_line();
        if (!s.ok()) {
            std::fflush(stdout);
            std::fprintf(stderr, "hearth import: %s: %s\n", c.path.c_str(), s.message().c_str());
            ++n_failed;
            continue;
        }
        ++n_new;
        std::printf("imported %s (%s, %s)\n", c.model.c_str(), human_bytes(c.size).c_str(),
                    linked ? "hard link: no space used" : copied ? "copied: on another file system" : "already in the store");
        std::fflush(stdout);
    }
    size_t n_skipped = 0, n_had = 0;
    for (const auto& c : found) {
        n_skipped += !c.skip.empty();
        n_had += c.imported;
    }
    std::printf("%d imported, %zu already imported, %zu skipped (hearth import --dry-run lists them)%s\n", n_new, n_had,
                n_skipped, n_failed ? strformat(", %d failed", n_failed).c_str() : "");
    if (n_failed) std::exit(1);
}

}  // namespace

void add_create_commands(CLI::App& app) {
    auto* c = app.add_subcommand("create", "Create a model from a Modelfile");
    static std::string name, file = "Modelfile", quantize;
    c->add_option("name", name, "The model to create (name[:tag])")->required();
    c->add_option("-f,--file", file, "The Modelfile (default ./Modelfile)");
    c->add_option("-q,--quantize", quantize, "Quantize the weights to this type (q4_K_M, q8_0, ...)");
    c->footer(
        "A Modelfile: FROM (a model, a .gguf file or a Hugging Face checkpoint folder), PARAMETER, TEMPLATE (Jinja), "
        "SYSTEM, MESSAGE, LICENSE, REQUIRES. A .gguf file on the store's file system is hard-linked, not copied.");
    c->callback([] { create(name, file, quantize); });

    auto* i = app.add_subcommand("import", "Adopt the GGUF files of Hugging Face's cache and LM Studio as models");
    static bool dry_run = false;
    i->add_flag("--dry-run", dry_run, "List what would be imported, and under which names");
    i->footer(
        "Looks in $HF_HUB_CACHE (else $HF_HOME/hub, else ~/.cache/huggingface/hub) and in ~/.lmstudio/models and "
        "~/.cache/lm-studio/models. Each file becomes hf.co/<user>/<repo>:<quant>, hard-linked into the store (no space "
        "used) when it is on the same file system.");
    i->callback([] { import(dry_run); });
}

}  // namespace hearth::cli
