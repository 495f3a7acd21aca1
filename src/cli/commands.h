// Each `hearth <command>` registers itself on the CLI11 app; main.cpp only lists them.
#pragma once

#include <CLI/CLI.hpp>

namespace hearth::cli {

void add_run_command(CLI::App& app);       // run.cpp: generate text
void add_tokenize_command(CLI::App& app);  // tools.cpp: text -> token ids
void add_logits_command(CLI::App& app);    // tools.cpp: token ids -> logits / embedding file
void add_synth_command(CLI::App& app);     // synth.cpp: random-weight models of real shapes
void add_render_template_command(CLI::App& app);  // render.cpp: chat template + conversation -> prompt text
void add_serve_command(CLI::App& app);     // serve.cpp: the HTTP daemon (Ollama's API)
void add_model_commands(CLI::App& app);    // models.cpp: list (ls), ps, show, stop, rm, cp
void add_pull_command(CLI::App& app);      // pull.cpp: download a model (registries, Hugging Face)
void add_fit_command(CLI::App& app);      // fit.cpp: will a model fit in memory?
void add_create_commands(CLI::App& app);  // create.cpp: create (from a Modelfile), import (HF / LM Studio files)
void add_bench_command(CLI::App& app);    // bench.cpp: prompt and generation tokens/s, as llama-bench

// `hearth --version`: this build's version, and the daemon's when one runs and differs.
std::string version_text();

}  // namespace hearth::cli
