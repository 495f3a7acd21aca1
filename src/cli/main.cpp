// hearth: run open-weight language models on your own machine.
#include <cstdio>

#include "cli/commands.h"

int main(int argc, char** argv) {
    CLI::App app{"hearth: run open-weight language models on your own machine", "hearth"};
    app.set_version_flag("-v,--version", std::function<std::string()>(hearth::cli::version_text));
    app.require_subcommand(1);
    hearth::cli::add_run_command(app);
    hearth::cli::add_tokenize_command(app);
    hearth::cli::add_logits_command(app);
    hearth::cli::add_synth_command(app);
    hearth::cli::add_render_template_command(app);
    hearth::cli::add_serve_command(app);
    hearth::cli::add_model_commands(app);
    hearth::cli::add_pull_command(app);
    hearth::cli::add_fit_command(app);
    hearth::cli::add_create_commands(app);
    hearth::cli::add_bench_command(app);
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    }
    return 0;
}
