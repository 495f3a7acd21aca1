// hearth serve: the daemon. Configuration comes from HEARTH_* environment variables (as
// Ollama's from OLLAMA_*); SIGINT or SIGTERM stops it gracefully (streams cancelled, models
// unloaded).
#include <pthread.h>
#include <sys/resource.h>
#include <sys/select.h>

#include <csignal>
#include <cstdio>

#include "cli/commands.h"
#include "cli/common.h"
#include "server/server.h"

namespace hearth::cli {
namespace {

void serve() {
    auto cfg = server::config_from_env();
    if (!cfg.ok()) fail("serve", cfg.status());
    // Debian's cpp-httplib 0.11 is built without CPPHTTPLIB_USE_POLL: it waits on sockets with
    // select(), which cannot take a descriptor >= FD_SETSIZE (1024). Keeping the process's
    // descriptors below that makes accept() fail with EMFILE (httplib then waits and retries)
    // instead of corrupting memory under a flood of connections.
    if (rlimit rl{}; getrlimit(RLIMIT_NOFILE, &rl) == 0 && (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > FD_SETSIZE)) {
        rl.rlim_cur = FD_SETSIZE;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    // Block the stop signals before any thread starts, so every thread inherits the mask and
    // only the sigwait below receives them.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

    auto srv = server::Server::create(*cfg);
    if (!srv.ok()) fail("serve", srv.status());
    if (Status s = (*srv)->start(); !s.ok()) fail("serve", s);
    std::fprintf(stderr, "hearth serve: listening on %s:%d, models in %s\n", cfg->host.c_str(), (*srv)->port(),
                 (*srv)->service().store().root().c_str());
    int sig = 0;
    sigwait(&stop_signals, &sig);
    std::fprintf(stderr, "hearth serve: %s received, stopping (cancelling streams, unloading models)\n",
                 sig == SIGINT ? "SIGINT" : "SIGTERM");
    (*srv)->stop();
    std::fprintf(stderr, "hearth serve: stopped\n");
}

}  // namespace

void add_serve_command(CLI::App& app) {
    CLI::App* c = app.add_subcommand("serve", "Start the daemon: Ollama's API on HEARTH_HOST (default 127.0.0.1:11434)");
    c->footer(server::config_help());
    c->callback([] { serve(); });
}

}  // namespace hearth::cli
