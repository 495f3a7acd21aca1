// hearth list / ps / show / stop / rm / cp: Ollama's commands, columns and messages. Each goes
// through the daemon when one runs (it owns the loaded models: rm unloads before deleting, ps
// and stop exist only there) and otherwise works on the store directly (store/store.h locks its
// mutations, so a CLI and a daemon that starts meanwhile do not interleave them).
#include "cli/models.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <sstream>

#include "cli/commands.h"
#include "cli/common.h"
#include "cli/format.h"
#include "server/adapters/ollama.h"
#include "server/config.h"
#include "store/store.h"

namespace hearth::cli {
namespace {

using json = nlohmann::ordered_json;

std::string str(const json& j, const char* key) {
    auto it = j.find(key);
    return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

int64_t num(const json& j, const char* key) {
    auto it = j.find(key);
    return it != j.end() && it->is_number() ? it->get<int64_t>() : 0;
}

// The first 12 hex digits of a digest, with or without its "sha256:" prefix.
std::string short_id(std::string digest) {
    if (digest.rfind("sha256:", 0) == 0) digest.erase(0, 7);
    return digest.substr(0, 12);
}

WallTime time_field(const json& j, const char* key) {
    auto t = parse_rfc3339(str(j, key));
    return t ? *t : WallTime{};
}

// ---- list ----

void list(const std::string& prefix) {
    json models = json::array();
    if (auto d = find_daemon("list")) {
        auto r = d->get("/api/tags");
        if (!r.ok()) fail("list", r.status());
        if (r->contains("models") && (*r)["models"].is_array()) models = (*r)["models"];
    } else {
        store::Store st(store_root());
        for (const auto& ref : st.list()) models.push_back(server::ollama::tags_entry(ref, nullptr));
    }
    std::vector<std::vector<std::string>> rows = {{"NAME", "ID", "SIZE", "MODIFIED"}};
    const WallTime now = std::chrono::system_clock::now();
    for (const auto& m : models) {
        const std::string name = str(m, "name");
        if (!prefix.empty() && name.rfind(prefix, 0) != 0) continue;
        rows.push_back({name, short_id(str(m, "digest")), human_bytes(num(m, "size")),
                        human_time(time_field(m, "modified_at"), now)});
    }
    std::fputs(render_table(rows).c_str(), stdout);
}

// ---- ps ----

std::string processor(int64_t size, int64_t size_vram) {
    if (size_vram == 0) return "100% CPU";
    if (size_vram == size) return "100% GPU";
    if (size_vram > size || size == 0) return "Unknown";
    const int cpu = (int)std::llround((double)(size - size_vram) / (double)size * 100);
    return strformat("%d%%/%d%% CPU/GPU", cpu, 100 - cpu);
}

// Without a daemon nothing can be loaded: hearth's in-process runs (`hearth run` with no daemon)
// hold their model for their own lifetime only and are not shared. So `ps` answers truthfully
// with an empty table and exit 0 (a script asking "what is loaded?" gets "nothing", not an
// error), and says on stderr why, so a person who expected a daemon learns there is none.
// Ollama errors here because its CLI can do nothing without the server; hearth's can.
void ps(const std::string& prefix) {
    std::vector<std::vector<std::string>> rows = {{"NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL"}};
    auto d = find_daemon("ps");
    if (!d) {
        std::fputs(render_table(rows).c_str(), stdout);
        std::fflush(stdout);
        auto addr = daemon_address_from_env();
        std::fprintf(stderr, "(no daemon is running at %s, so no model is loaded; start one with `hearth serve`)\n",
                     addr.ok() ? addr->display().c_str() : "HEARTH_HOST");
        return;
    }
    auto r = d->get("/api/ps");
    if (!r.ok()) fail("ps", r.status());
    const WallTime now = std::chrono::system_clock::now();
    if (r->contains("models") && (*r)["models"].is_array())
        for (const auto& m : (*r)["models"]) {
            const std::string name = str(m, "name");
            if (!prefix.empty() && name.rfind(prefix, 0) != 0 && str(m, "model").rfind(prefix, 0) != 0) continue;
            const WallTime expires = time_field(m, "expires_at");
            const std::string until = expires > WallTime{} && expires < now ? "Stopping..." : human_time(expires, now, "Never");
            rows.push_back({name, short_id(str(m, "digest")), human_bytes(num(m, "size")),
                            processor(num(m, "size"), num(m, "size_vram")), std::to_string(num(m, "context_length")), until});
        }
    std::fputs(render_table(rows).c_str(), stdout);
}

// ---- show ----

struct ShowArgs {
    std::string model;
    bool license = false, modelfile = false, parameters = false, system = false, template_ = false, verbose = false;
};

std::string with_newline(std::string s) {
    if (!s.empty() && s.back() != '\n') s += '\n';
    return s;
}

void show(const ShowArgs& a) {
    const int n = a.license + a.modelfile + a.parameters + a.system + a.template_;
    if (n > 1) fail("show", "only one of '--license', '--modelfile', '--parameters', '--system', or '--template' can be specified");
    auto d = find_daemon("show");
    auto r = show_model(d ? &*d : nullptr, a.model, a.verbose);
    if (!r.ok()) fail("show", r.status());
    const json& s = *r;
    std::string text;
    if (a.license) text = str(s, "license");
    else if (a.modelfile) text = str(s, "modelfile");
    else if (a.parameters) text = str(s, "parameters");
    else if (a.system) text = str(s, "system");
    else if (a.template_) text = str(s, "template");
    else text = format_show_info(s, a.verbose);
    std::fputs(with_newline(text).c_str(), stdout);
}

// A model_info value as Ollama's show prints it (Go's %v): arrays cut to what fits in about
// ten columns, then "...+N more".
std::string metadata_value(const json& v) {
    if (v.is_string()) return v.get<std::string>();
    if (v.is_boolean()) return v.get<bool>() ? "true" : "false";
    if (v.is_number_integer() || v.is_number_unsigned()) return v.dump();
    if (v.is_number_float()) return strformat("%g", v.get<double>());
    if (v.is_array()) {
        std::vector<std::string> items;
        for (const auto& x : v) items.push_back(x.is_string() ? x.get<std::string>() : metadata_value(x));
        constexpr size_t kWidth = 10;
        size_t total = 1, shown = 0;
        for (size_t i = 0; i < items.size(); ++i) {
            const size_t w = items[i].size() + (i > 0 ? 2 : 0);
            if (total + w > kWidth && i > 0) break;
            total += w;
            ++shown;
        }
        std::string out = "[";
        for (size_t i = 0; i < shown; ++i) out += (i ? " " : "") + items[i];
        if (shown < items.size()) out += strformat(" ...+%zu more", items.size() - shown);
        return out + "]";
    }
    return v.is_null() ? "<nil>" : v.dump();
}

// Ollama's head(): the first n non-empty lines, then "..." when there were more.
std::vector<std::vector<std::string>> head_rows(const std::string& text, int n) {
    std::vector<std::vector<std::string>> rows;
    std::istringstream in(text);
    int count = 0;
    for (std::string line; std::getline(in, line);) {
        const size_t b = line.find_first_not_of(" \t\r"), e = line.find_last_not_of(" \t\r");
        if (b == std::string::npos) continue;
        if (++count <= n) rows.push_back({"", line.substr(b, e - b + 1)});
    }
    if (count > n) rows.push_back({"", "..."});
    return rows;
}

// ---- stop / rm / cp ----

// POST /api/generate {model, keep_alive: 0}: the daemon unloads the model (a no-op when it is
// not loaded).
Status unload(Client& d, const std::string& model) {
    auto r = d.post("/api/generate", json{{"model", model}, {"keep_alive", 0}, {"stream", false}});
    return r.ok() ? Status() : r.status();
}

void stop(const std::string& model) {
    auto d = find_daemon("stop");
    if (!d) {
        auto addr = daemon_address_from_env();
        fail("stop", "no daemon is running at " + (addr.ok() ? addr->display() : std::string("HEARTH_HOST")) +
                         ", so no model is loaded");
    }
    if (Status s = unload(*d, model); !s.ok()) {
        if (s.code() == StatusCode::not_found) fail("stop", "couldn't find model \"" + model + "\" to stop");
        fail("stop", s);
    }
}

void rm(const std::vector<std::string>& models) {
    auto d = find_daemon("rm");
    std::optional<store::Store> st;
    if (!d) st.emplace(store_root());
    bool failed = false;
    for (const auto& m : models) {
        Status s;
        if (d) {
            // Unload first, as Ollama does: a loaded model keeps its blobs mapped.
            if (Status u = unload(*d, m); !u.ok() && u.code() != StatusCode::not_found)
                std::fprintf(stderr, "Warning: unable to stop model '%s'\n", m.c_str());
            auto r = d->del("/api/delete", json{{"model", m}});
            if (!r.ok()) s = r.status();
        } else {
            s = st->remove(m);
        }
        if (!s.ok()) {
            std::fflush(stdout);
            std::fprintf(stderr, "hearth rm: %s\n", s.message().c_str());
            failed = true;
            continue;
        }
        std::printf("deleted '%s'\n", m.c_str());
    }
    if (failed) std::exit(1);
}

void cp(const std::string& src, const std::string& dst) {
    Status s;
    if (auto d = find_daemon("cp")) {
        auto r = d->post("/api/copy", json{{"source", src}, {"destination", dst}});
        if (!r.ok()) s = r.status();
    } else {
        store::Store st(store_root());
        s = st.copy(src, dst);
    }
    if (!s.ok()) fail("cp", s);
    std::printf("copied '%s' to '%s'\n", src.c_str(), dst.c_str());
}

}  // namespace

std::string store_root() {
    auto cfg = server::config_from_env([](const char* k) -> const char* {
        return std::string_view(k) == "HEARTH_MODELS" ? std::getenv(k) : nullptr;
    });
    return cfg.ok() && !cfg->models_dir.empty() ? cfg->models_dir : store::Store::default_root();
}

Result<json> show_model(Client* daemon, const std::string& model, bool verbose) {
    if (daemon) return daemon->post("/api/show", json{{"model", model}, {"verbose", verbose}});
    store::Store st(store_root());
    auto ref = st.resolve(model);
    if (!ref.ok()) return ref.status();
    auto info = st.info(*ref, /*with_file=*/true);
    if (!info.ok()) return info.status();
    return server::ollama::show_response(*ref, *info, verbose);
}

std::string format_show_info(const json& s, bool verbose) {
    std::string out;
    auto section = [&](const char* title, const std::vector<std::vector<std::string>>& rows) {
        out += std::string("  ") + title + "\n" + render_table(rows, 4, "") + "\n";
    };
    const json mi = s.contains("model_info") && s["model_info"].is_object() ? s["model_info"] : json::object();
    const json details = s.contains("details") && s["details"].is_object() ? s["details"] : json::object();
    std::vector<std::vector<std::string>> rows;
    std::string arch = str(mi, "general.architecture");
    if (arch.empty()) arch = str(details, "family");
    if (!arch.empty()) rows.push_back({"", "architecture", arch});
    std::string params = str(details, "parameter_size");
    if (params.empty() && mi.contains("general.parameter_count") && mi["general.parameter_count"].is_number())
        params = store::human_number(mi["general.parameter_count"].get<int64_t>());
    if (!params.empty()) rows.push_back({"", "parameters", params});
    for (const auto& [key, label] : {std::pair{".context_length", "context length"}, {".embedding_length", "embedding length"}}) {
        auto it = mi.find(arch + key);
        if (it != mi.end() && it->is_number()) rows.push_back({"", label, metadata_value(*it)});
    }
    rows.push_back({"", "quantization", str(details, "quantization_level")});
    section("Model", rows);

    if (s.contains("capabilities") && s["capabilities"].is_array() && !s["capabilities"].empty()) {
        rows.clear();
        for (const auto& c : s["capabilities"])
            if (c.is_string()) rows.push_back({"", c.get<std::string>()});
        section("Capabilities", rows);
    }
    if (const std::string p = str(s, "parameters"); !p.empty()) {
        rows.clear();
        std::istringstream in(p);
        for (std::string line; std::getline(in, line);) {
            const size_t b = line.find_first_not_of(" \t");
            if (b == std::string::npos) continue;
            const size_t e = line.find_first_of(" \t", b);
            const std::string key = line.substr(b, e == std::string::npos ? std::string::npos : e - b);
            std::string value = e == std::string::npos ? "" : line.substr(e);
            value.erase(0, std::min(value.size(), value.find_first_not_of(" \t")));
            rows.push_back({"", key, value});
        }
        section("Parameters", rows);
    }
    if (verbose && !mi.empty()) {
        rows.clear();
        std::vector<std::string> keys;
        for (const auto& [k, v] : mi.items()) keys.push_back(k);
        std::sort(keys.begin(), keys.end());
        for (const auto& k : keys) rows.push_back({"", k, metadata_value(mi[k])});
        section("Metadata", rows);
    }
    if (const std::string sys = str(s, "system"); !sys.empty()) section("System", head_rows(sys, 2));
    if (const std::string lic = str(s, "license"); !lic.empty()) section("License", head_rows(lic, 2));
    return out;
}

void add_model_commands(CLI::App& app) {
    {
        auto prefix = std::make_shared<std::string>();
        CLI::App* c = app.add_subcommand("list", "List models: NAME, ID, SIZE, MODIFIED");
        c->alias("ls");
        c->add_option("prefix", *prefix, "Only names that start with this");
        c->callback([prefix] { list(*prefix); });
    }
    {
        auto prefix = std::make_shared<std::string>();
        CLI::App* c = app.add_subcommand("ps", "List the models the daemon has loaded");
        c->add_option("prefix", *prefix, "Only names that start with this");
        c->callback([prefix] { ps(*prefix); });
    }
    {
        auto a = std::make_shared<ShowArgs>();
        CLI::App* c = app.add_subcommand("show", "Show information for a model");
        c->add_option("model", a->model, "Model name (or a .gguf path)")->required();
        c->add_flag("--license", a->license, "Show the license");
        c->add_flag("--modelfile", a->modelfile, "Show a Modelfile that recreates the model");
        c->add_flag("--parameters", a->parameters, "Show the parameters");
        c->add_flag("--system", a->system, "Show the system message");
        c->add_flag("--template", a->template_, "Show the chat template");
        c->add_flag("-v,--verbose", a->verbose, "Show the GGUF metadata too");
        c->callback([a] { show(*a); });
    }
    {
        auto model = std::make_shared<std::string>();
        CLI::App* c = app.add_subcommand("stop", "Unload a model the daemon is running");
        c->add_option("model", *model, "Model name")->required();
        c->callback([model] { stop(*model); });
    }
    {
        auto models = std::make_shared<std::vector<std::string>>();
        CLI::App* c = app.add_subcommand("rm", "Remove models");
        c->add_option("model", *models, "Model names")->required();
        c->callback([models] { rm(*models); });
    }
    {
        auto src = std::make_shared<std::string>(), dst = std::make_shared<std::string>();
        CLI::App* c = app.add_subcommand("cp", "Copy a model (a new name for the same blobs)");
        c->add_option("source", *src, "Existing model name")->required();
        c->add_option("destination", *dst, "New model name")->required();
        c->callback([src, dst] { cp(*src, *dst); });
    }
}

}  // namespace hearth::cli
