// AWQ through the converter on the golden tiny-a checkpoint with a synthetic, heavy-tailed
// imatrix: the fold is exact (an f32 folded model gives the original logits; bf16 within
// rounding), every scaled tensor's importance-weighted quantization error drops, the report
// names each fold, and an imatrix that matches nothing is an error. Also `mlxq imatrix` output
// read back.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>
#include <random>

#include "convert/convert.h"
#include "convert/imatrix.h"
#include "core/error.h"
#include "io/safetensors.h"
#include "model/gemma4/model.h"
#include "test_util.h"

namespace mlxq::quant {
namespace {

// Heavy-tailed importances for every weight llama.cpp would collect on tiny-a (6 layers, layer 5
// full, 16 experts): most channels between 0.5 and 2, about 2% of them 100-1000x larger (the
// activation outliers AWQ exists for).
Imatrix synthetic_imatrix(uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> base(0.5f, 2.0f), outlier(100.0f, 1000.0f), pick(0.0f, 1.0f);
  Imatrix m;
  m.datasets = {"synthetic"};
  m.chunk_count = 1;
  m.chunk_size = 512;
  auto add = [&](const std::string& name, int64_t n_in, int64_t n_mat) {
    ImatrixEntry e;
    e.n_in = n_in;
    for (int64_t k = 0; k < n_mat; ++k) {
      std::vector<float> v(static_cast<size_t>(n_in));
      for (auto& x : v) x = (pick(rng) < 0.02f ? outlier(rng) : base(rng)) * 512.0f;
      e.in_sum2.push_back(v);
      e.counts.push_back(512.0f);
    }
    m.entries[name] = e;
  };
  // Weights that read the same input see the same statistics, as in a real imatrix.
  auto same = [&](const std::string& from, const std::string& to) { m.entries[to] = m.entries[from]; };
  for (int l = 0; l < 6; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    add(b + "attn_q.weight", 256, 1);
    same(b + "attn_q.weight", b + "attn_k.weight");
    if (l != 5) same(b + "attn_q.weight", b + "attn_v.weight");
    add(b + "attn_output.weight", l == 5 ? 512 : 256, 1);
    add(b + "ffn_gate.weight", 256, 1);
    same(b + "ffn_gate.weight", b + "ffn_up.weight");
    add(b + "ffn_down.weight", 512, 1);
    add(b + "ffn_gate_inp.weight", 256, 1);
    add(b + "ffn_gate_up_exps.weight", 256, 16);
    add(b + "ffn_down_exps.weight", 64, 16);
  }
  return m;
}

class AwqConvert : public ::testing::Test {
 protected:
  void SetUp() override {
    write_imatrix_gguf(dir_ / "imatrix.gguf", synthetic_imatrix(7));
  }
  ConvertStats convert(const std::string& out, bool quantize, bool awq, DType dt = DType::BF16,
                       std::vector<std::string>* report = nullptr) {
    ConvertOptions o;
    o.input = test::data_path("gemma4-tiny-a/hf");
    o.output = dir_ / out;
    o.quantize = quantize;
    o.bits = 3;
    o.recipe = quantize ? "unsloth" : "";
    o.dtype = dt;
    if (awq) o.imatrix_path = dir_ / "imatrix.gguf";
    o.awq_report = report;
    return convert_checkpoint(o, pool_);
  }
  std::vector<float> logits(const std::string& dir) {
    const auto j = nlohmann::json::parse(test::read_file(test::data_path("gemma4-tiny-a/goldens/tokens.json")));
    const auto toks = j["S1"].get<std::vector<int32_t>>();
    model::gemma4::Model m(dir, {2, 64, /*exact=*/true, /*int8=*/false});
    auto cache = m.make_cache(int64_t(toks.size()));
    std::vector<float> out(toks.size() * 2048);
    m.forward(toks, cache, out.data());
    return out;
  }
  test::TempDir dir_;
  ThreadPool pool_{2};
};

double max_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, double(std::fabs(a[i] - b[i])));
  return m;
}

TEST_F(AwqConvert, FoldIsExact) {
  std::vector<std::string> report;
  const ConvertStats st = convert("f32", false, true, DType::F32, &report);
  EXPECT_GT(st.awq_modified, 0u);
  const auto base = logits(test::data_path("gemma4-tiny-a/hf"));
  // f32 output: the folded weights are exact products, so the model computes the same function.
  EXPECT_LE(max_diff(logits(dir_ / "f32"), base), 2e-4);
  // bf16 output: the products are rounded once to bf16 (the spec's numerics); the model stays
  // the same up to that rounding.
  convert("bf16", false, true);
  const double d = max_diff(logits(dir_ / "bf16"), base);
  // This random model amplifies weight noise about 100x (tiny-a README), so bf16 rounding of the
  // folded weights moves logits by up to ~1 (a wrong fold target moves them by 5-15).
  EXPECT_LE(d, 1.5);
  RecordProperty("bf16_fold_max_logit_diff", std::to_string(d));
  // The report names the folds: group C into input_layernorm on the full layer from q and k.
  bool full_layer_qk = false;
  for (const auto& line : report)
    if (line.find("layers.5.self_attn.q_proj") != std::string::npos && line.find("input_layernorm") != std::string::npos)
      full_layer_qk = true;
  EXPECT_TRUE(full_layer_qk);
}

// sum_j imp_j * sum_i (w_ij - what_ij)^2 of a dequantized tensor against the original weights,
// undoing the AWQ column scale s (and up_proj's row scale) on the dequantized values.
double weighted_error(const io::TensorInfo& orig, const io::Checkpoint& q, const std::string& module,
                      const std::vector<float>& imp, const std::vector<float>* s, int64_t rows, int64_t cols,
                      int64_t row0 = 0, int64_t src_rows = 0) {
  const io::TensorInfo* w = q.find(module + ".weight");
  const io::TensorInfo* sc = q.find(module + ".scales");
  const io::TensorInfo* bi = q.find(module + ".biases");
  const int bits = int(w->shape.back() * 32 / cols), gs = int(cols / sc->shape.back());
  std::vector<float> deq(static_cast<size_t>(cols));
  double err = 0;
  if (src_rows == 0) src_rows = rows;
  for (int64_t r = 0; r < rows; ++r) {
    dequantize_row_f32(w->data + size_t(r * cols * bits / 8), sc->data + size_t(r * (cols / gs)) * 2,
                       bi->data + size_t(r * (cols / gs)) * 2, DType::BF16, cols, {bits, gs}, deq.data());
    for (int64_t j = 0; j < cols; ++j) {
      const float o = load_scalar(orig.data, orig.dtype, (row0 + r) * cols + j);
      const float back = s ? deq[size_t(j)] / (*s)[size_t(j)] : deq[size_t(j)];
      err += double(imp[size_t(j)]) * double(back - o) * double(back - o);
    }
  }
  (void)src_rows;
  return err;
}

TEST_F(AwqConvert, WeightedErrorDropsForEveryCorrectedTensor) {
  convert("q_plain", true, false);
  std::vector<std::string> report;
  convert("q_awq", true, true, DType::BF16, &report);
  io::Checkpoint hf(test::data_path("gemma4-tiny-a/hf")), plain(dir_ / "q_plain"), awq(dir_ / "q_awq");
  const auto imp = importance_by_canonical(read_imatrix(dir_ / "imatrix.gguf"));
  int compared = 0;
  for (int l = 0; l < 6; ++l) {
    const std::string L = "layers." + std::to_string(l) + ".";
    // Columns scaled by s: q/k(/v) with the attention importance, gate with the MLP's.
    for (const char* m : {"self_attn.q_proj", "self_attn.k_proj", "mlp.gate_proj"}) {
      const io::TensorInfo& orig = *hf.find("model.language_model." + L + m + ".weight");
      const std::string module = "language_model.model." + L + m;
      const std::vector<float>& impv = imp.at(L + m).per_matrix[0];
      // Recover s from the folded norm: s = w / w' (the norm the group folds into).
      const char* norm = std::string(m).rfind("mlp", 0) == 0 ? "pre_feedforward_layernorm" : "input_layernorm";
      const io::TensorInfo& n0 = *hf.find("model.language_model." + L + norm + ".weight");
      const io::TensorInfo& n1 = *awq.find("language_model.model." + L + norm + ".weight");
      std::vector<float> s(256);
      for (int j = 0; j < 256; ++j) s[size_t(j)] = load_scalar(n0.data, n0.dtype, j) / load_scalar(n1.data, n1.dtype, j);
      const int64_t rows = orig.shape[0];
      const double e_plain = weighted_error(orig, plain, module, impv, nullptr, rows, 256);
      const bool scaled = std::any_of(s.begin(), s.end(), [](float v) { return std::fabs(v - 1.0f) > 0.01f; });
      if (!scaled) continue;  // a group AWQ could not improve stays unscaled (and is reported)
      const double e_awq = weighted_error(orig, awq, module, impv, &s, rows, 256);
      EXPECT_LT(e_awq, e_plain) << module;
      ++compared;
    }
  }
  EXPECT_GE(compared, 12);  // most groups are corrected
  EXPECT_GE(report.size(), 6u * 4);
}

TEST_F(AwqConvert, ImatrixThatMatchesNothingIsAnError) {
  Imatrix m;
  ImatrixEntry e;
  e.n_in = 4;
  e.in_sum2 = {{1, 2, 3, 4}};
  e.counts = {1};
  m.entries["blk.0.something_else.weight"] = e;
  write_imatrix_gguf(dir_ / "none.gguf", m);
  ConvertOptions o;
  o.input = test::data_path("gemma4-tiny-a/hf");
  o.output = dir_ / "none-out";
  o.imatrix_path = dir_ / "none.gguf";
  try {
    convert_checkpoint(o, pool_);
    FAIL() << "no error";
  } catch (const Error& err) {
    EXPECT_NE(std::string(err.what()).find("matches no tensor"), std::string::npos) << err.what();
  }
  test::write_file(dir_ / "corrupt.gguf", "GGUF\x03\x00\x00\x00garbage");
  o.imatrix_path = dir_ / "corrupt.gguf";
  EXPECT_THROW(convert_checkpoint(o, pool_), Error);
  EXPECT_FALSE(std::filesystem::exists(o.output));
}

}  // namespace
}  // namespace mlxq::quant
