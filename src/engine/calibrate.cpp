// compute_imatrix: the forward pass's matmul observer accumulates x^2 per input channel.
#include "engine/calibrate.h"

#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "engine/transcript.h"

namespace mlxq::engine {

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

CalibrationInput calibration_from_chats(const text::Tokenizer& tok, const std::string& path, int chunk_size,
                                        int64_t max_chunks) {
  CalibrationInput input;
  input.dataset = std::filesystem::path(path).filename().string();
  input.chunk_size = chunk_size;
  std::ifstream in(path);
  check(bool(in), path + ": cannot open calibration conversations");
  std::string line;
  for (int64_t n = 1; std::getline(in, line); ++n) {
    if (line.empty()) continue;
    const auto conv = nlohmann::ordered_json::parse(line, nullptr, false);
    check(!conv.is_discarded(), path + ":" + std::to_string(n) + ": not valid JSON");
    std::vector<int32_t> ids;
    try {
      ids = render_transcript(tok, conv).tokens;
    } catch (const Error& e) {
      throw Error(path + ":" + std::to_string(n) + ": " + e.what());
    }
    if (int64_t(ids.size()) > chunk_size) ids.resize(size_t(chunk_size));
    input.chunks.push_back(std::move(ids));
    if (max_chunks > 0 && int64_t(input.chunks.size()) >= max_chunks) break;
  }
  check(!input.chunks.empty(), path + ": no conversations");
  return input;
}

quant::Imatrix compute_imatrix(model::gemma4::Model& model, const CalibrationInput& input,
                               const std::function<void(size_t, size_t)>& progress) {
  quant::Imatrix m;
  m.datasets = {input.dataset};
  m.chunk_size = uint32_t(input.chunk_size);
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
  try {
    for (size_t c = 0; c < input.chunks.size(); ++c) {
      const auto& chunk = input.chunks[c];
      auto cache = model.make_cache(int64_t(chunk.size()));
      model.forward(chunk, cache, nullptr);
      ++m.chunk_count;
      if (progress) progress(c + 1, input.chunks.size());
    }
  } catch (...) {
    model.set_observer({});
    throw;
  }
  model.set_observer({});
  return m;
}

}  // namespace mlxq::engine
