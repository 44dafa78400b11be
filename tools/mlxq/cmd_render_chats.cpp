// `mlxq render-chats`: conversations (JSONL, the corpus format of train/tiny/make_corpus.py) ->
// the token streams a session holds after them, with the model-generated tokens flagged. The
// training script reads its output; see src/engine/transcript.h.
#include <fstream>
#include <memory>

#include "core/error.h"
#include "engine/transcript.h"
#include "io/checkpoint_writer.h"
#include "mlxq/commands.h"
#include "text/tokenizer.h"

namespace mlxq::cli {

void register_render_chats(CLI::App& app) {
  struct Args { std::string model, tokenizer, in, out; };
  auto a = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand("render-chats",
      "Render conversations (JSONL) to session token streams: one JSON line each with tokens and "
      "generated flags");
  cmd->add_option("-m,--model", a->model, "Checkpoint directory holding tokenizer.json");
  cmd->add_option("--tokenizer", a->tokenizer, "A tokenizer.json file");
  cmd->add_option("-i,--input", a->in, "Conversations, one JSON object a line")->required();
  cmd->add_option("-o,--output", a->out, "Output JSONL")->required();
  cmd->callback([a] {
    const std::string tok_path = a->model.empty() && a->tokenizer.empty() ? derived_tokenizer_path()
                                                                           : tokenizer_path(a->model, a->tokenizer);
    const text::Tokenizer tok = text::Tokenizer::from_file(tok_path);
    std::ifstream in(a->in);
    check(bool(in), a->in + ": cannot open");
    std::string out, line;
    for (int64_t n = 1; std::getline(in, line); ++n) {
      if (line.empty()) continue;
      const auto conv = nlohmann::ordered_json::parse(line, nullptr, false);
      check(!conv.is_discarded(), a->in + ":" + std::to_string(n) + ": not valid JSON");
      engine::Transcript t;
      try {
        t = engine::render_transcript(tok, conv);
      } catch (const Error& e) {
        throw Error(a->in + ":" + std::to_string(n) + ": " + e.what());
      }
      nlohmann::ordered_json j;
      j["id"] = conv.value("id", std::to_string(n));
      j["tokens"] = t.tokens;
      j["generated"] = t.generated;
      out += j.dump() + "\n";
    }
    io::write_file_atomic(a->out, out);
  });
}

}  // namespace mlxq::cli
