// The `mlxq` subcommands: each file registers one on the CLI11 app.
#pragma once
#include <CLI/CLI.hpp>
#include <string>

namespace mlxq::cli {

void register_make_model(CLI::App& app);
void register_logits(CLI::App& app);
void register_inspect(CLI::App& app);
void register_tokenize(CLI::App& app);   // tokenize, derive-tokenizer
void register_template(CLI::App& app);

// tokenizer.json of a checkpoint directory, or `file` when given.
std::string tokenizer_path(const std::string& model_dir, const std::string& file);

// The embedded default model: a tiny synthetic Gemma-4 checkpoint with random weights, created
// on first use under the user's cache directory. Announces itself on stderr.
std::string default_model_path();

}  // namespace mlxq::cli
