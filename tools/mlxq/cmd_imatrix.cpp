// `mlxq imatrix`: an importance matrix (sum of x^2 per input channel of every weight, and token
// counts; per expert for the MoE) computed by mlxq's own forward pass over calibration text,
// written in llama.cpp's GGUF imatrix format so `convert --imatrix-path` (or llama.cpp) reads it.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <mutex>

#include "convert/imatrix.h"
#include "core/error.h"
#include "engine/calibrate.h"
#include "mlxq/commands.h"
#include "model/gemma4/model.h"
#include "text/tokenizer.h"

namespace fs = std::filesystem;

namespace mlxq::cli {


void register_imatrix(CLI::App& app) {
  struct Args { std::string model, text, chats, out; int ctx = 512, chunks = 0, threads = 0; };
  auto a = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand("imatrix", "Compute an importance matrix (llama.cpp GGUF format) from calibration text");
  cmd->add_option("-m,--model", a->model, "Checkpoint directory (with tokenizer.json)")->required();
  auto* text_opt = cmd->add_option("--text", a->text, "Calibration text file");
  cmd->add_option("--chats", a->chats,
                  "Calibration conversations (JSONL, as `mlxq render-chats` reads): each one a chunk, "
                  "rendered as a session holds it")->excludes(text_opt);
  cmd->add_option("-o,--output", a->out, "Output .gguf file")->required();
  cmd->add_option("-c,--ctx", a->ctx, "Tokens per chunk (each chunk starts a fresh context with <bos>)")->check(CLI::Range(16, 65536));
  cmd->add_option("--chunks", a->chunks, "Use at most this many chunks (0: all)")->check(CLI::NonNegativeNumber);
  cmd->add_option("-t,--threads", a->threads, "Threads (0: all cores)");
  cmd->callback([a] {
    model::gemma4::ModelOptions mo;
    mo.threads = a->threads;
    mo.max_chunk = std::min(a->ctx, 512);
    model::gemma4::Model model(a->model, mo);
    const std::string tok_path = (fs::path(model.checkpoint().dir()) / "tokenizer.json").string();
    check(fs::exists(tok_path), tok_path + ": missing (imatrix tokenizes the calibration text)");
    const text::Tokenizer tok = text::Tokenizer::from_file(tok_path);
    check(!a->text.empty() || !a->chats.empty(), "give --text FILE or --chats FILE");
    engine::CalibrationInput input;
    input.chunk_size = a->ctx;
    if (!a->chats.empty()) {
      input = engine::calibration_from_chats(tok, a->chats, a->ctx, a->chunks);
    } else {
      input.dataset = fs::path(a->text).filename().string();
      std::ifstream in(a->text, std::ios::binary);
      check(bool(in), a->text + ": cannot open calibration text");
      const std::string body((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      const std::vector<int32_t> ids = tok.encode(body, false);
      const int64_t per_chunk = a->ctx - 1;  // room for <bos>
      int64_t n_chunks = int64_t(ids.size()) / per_chunk;
      if (a->chunks > 0) n_chunks = std::min<int64_t>(n_chunks, a->chunks);
      check(n_chunks > 0, a->text + ": " + std::to_string(ids.size()) + " tokens, fewer than one chunk of " +
                              std::to_string(a->ctx) + " (use a smaller --ctx or more text)");
      const int32_t bos = model.config().bos_token_id == 0 ? 2 : int32_t(model.config().bos_token_id);
      for (int64_t c = 0; c < n_chunks; ++c) {
        std::vector<int32_t> chunk = {bos};
        chunk.insert(chunk.end(), ids.begin() + c * per_chunk, ids.begin() + (c + 1) * per_chunk);
        input.chunks.push_back(std::move(chunk));
      }
    }
    const auto t0 = std::chrono::steady_clock::now();
    const quant::Imatrix m = engine::compute_imatrix(model, input, [&](size_t done, size_t total) {
      std::fprintf(stderr, "\rchunk %zu/%zu (%.1f s)", done, total,
                   std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    });
    std::fprintf(stderr, "\n");
    quant::write_imatrix_gguf(a->out, m);
    std::fprintf(stderr, "wrote %s: %zu entries, %u chunks of %d tokens\n", a->out.c_str(), m.entries.size(),
                 m.chunk_count, a->ctx);
  });
}

}  // namespace mlxq::cli
