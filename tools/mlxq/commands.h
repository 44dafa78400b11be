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
void register_run(CLI::App& app);  // run, chat
void register_bench(CLI::App& app);
void register_convert(CLI::App& app);
void register_imatrix(CLI::App& app);
void register_quant_error(CLI::App& app);
void register_repack(CLI::App& app);
void register_render_chats(CLI::App& app);
void register_eval(CLI::App& app);
void register_serve(CLI::App& app);
void register_embed_image(CLI::App& app);

// The Gemma 4 tokenizer.json the build derives next to the mlxq binary ("" if absent).
std::string derived_tokenizer_path();

// tokenizer.json of a checkpoint directory, or `file` when given.
std::string tokenizer_path(const std::string& model_dir, const std::string& file);

// The embedded default model (include/mlxq/default_model.h), converted on first use into the
// user's cache directory. Announces itself in one line on stderr.
std::string default_model_path();

}  // namespace mlxq::cli
