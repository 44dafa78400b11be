// The `mlxq` subcommands: each file registers one on the CLI11 app.
#pragma once
#include <CLI/CLI.hpp>
#include <string>

namespace mlxq::cli {

void register_make_model(CLI::App& app);
void register_logits(CLI::App& app);
void register_inspect(CLI::App& app);

// The embedded default model: a tiny synthetic Gemma-4 checkpoint with random weights, created
// on first use under the user's cache directory. Announces itself on stderr.
std::string default_model_path();

}  // namespace mlxq::cli
