// `mlxq imatrix`: an importance matrix (sum of x^2 per input channel of every weight, and token
// counts; per expert for the MoE) computed by mlxq's own forward pass over calibration text,
// written in llama.cpp's GGUF imatrix format so `convert --imatrix-path` (or llama.cpp) reads it.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <mutex>

#include "core/error.h"
#include "mlxq/commands.h"
#include "model/gemma4/model.h"
#include "quant/imatrix.h"
#include "text/tokenizer.h"

namespace fs = std::filesystem;

namespace mlxq::cli {

namespace {
// llama.cpp's tensor names for the Gemma-4 modules the forward pass reports.
std::string gguf_name(int64_t layer, const std::string& module) {
  static const std::pair<const char*, const char*> kMap[] = {
      {"self_attn.q_proj", "attn_q"}, {"self_attn.k_proj", "attn_k"},   {"self_attn.v_proj", "attn_v"},
      {"self_attn.o_proj", "attn_output"}, {"mlp.gate_proj", "ffn_gate"}, {"mlp.up_proj", "ffn_up"},
      {"mlp.down_proj", "ffn_down"}, {"router.proj", "ffn_gate_inp"}, {"experts.gate_up", "ffn_gate_up_exps"},
      {"experts.down", "ffn_down_exps"}};
  for (const auto& [m, g] : kMap)
    if (module == m) return "blk." + std::to_string(layer) + "." + g + ".weight";
  return "";
}
}  // namespace

void register_imatrix(CLI::App& app) {
  struct Args { std::string model, text, out; int ctx = 512, chunks = 0, threads = 0; };
  auto a = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand("imatrix", "Compute an importance matrix (llama.cpp GGUF format) from calibration text");
  cmd->add_option("-m,--model", a->model, "Checkpoint directory (with tokenizer.json)")->required();
  cmd->add_option("--text", a->text, "Calibration text file")->required();
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
    std::ifstream in(a->text, std::ios::binary);
    check(bool(in), a->text + ": cannot open calibration text");
    const std::string body((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const std::vector<int32_t> ids = tok.encode(body, false);
    const int64_t per_chunk = a->ctx - 1;  // room for <bos>
    int64_t n_chunks = int64_t(ids.size()) / per_chunk;
    if (a->chunks > 0) n_chunks = std::min<int64_t>(n_chunks, a->chunks);
    check(n_chunks > 0, a->text + ": " + std::to_string(ids.size()) + " tokens, fewer than one chunk of " +
                            std::to_string(a->ctx) + " (use a smaller --ctx or more text)");

    quant::Imatrix m;
    m.datasets = {fs::path(a->text).filename().string()};
    m.chunk_size = uint32_t(a->ctx);
    const int64_t E = model.config().num_experts;
    model.set_observer([&](int64_t layer, const char* module, int64_t expert, const float* x, int64_t n, int64_t k) {
      const std::string name = gguf_name(layer, module);
      if (name.empty()) return;
      quant::ImatrixEntry& e = m.entries[name];
      const int64_t n_mat = expert >= 0 ? E : 1;
      if (e.in_sum2.empty()) {
        e.n_in = k;
        e.in_sum2.assign(size_t(n_mat), std::vector<float>(size_t(k), 0.0f));
        e.counts.assign(size_t(n_mat), 0.0f);
      }
      const size_t mat = size_t(expert >= 0 ? expert : 0);
      std::vector<float>& sum = e.in_sum2[mat];
      for (int64_t r = 0; r < n; ++r)
        for (int64_t j = 0; j < k; ++j) sum[size_t(j)] += x[r * k + j] * x[r * k + j];
      e.counts[mat] += float(n);
    });
    const auto t0 = std::chrono::steady_clock::now();
    for (int64_t c = 0; c < n_chunks; ++c) {
      std::vector<int32_t> chunk = {model.config().bos_token_id == 0 ? 2 : int32_t(model.config().bos_token_id)};
      chunk.insert(chunk.end(), ids.begin() + c * per_chunk, ids.begin() + (c + 1) * per_chunk);
      auto cache = model.make_cache(int64_t(chunk.size()));
      model.forward(chunk, cache, nullptr);
      ++m.chunk_count;
      std::fprintf(stderr, "\rchunk %lld/%lld (%.1f s)", (long long)(c + 1), (long long)n_chunks,
                   std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    std::fprintf(stderr, "\n");
    quant::write_imatrix_gguf(a->out, m);
    std::fprintf(stderr, "wrote %s: %zu entries, %u chunks of %d tokens\n", a->out.c_str(), m.entries.size(),
                 m.chunk_count, a->ctx);
  });
}

}  // namespace mlxq::cli
