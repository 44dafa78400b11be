// Synthetic checkpoints: the 26b-a4b tensor plan against the spec's tables (written out here
// independently), the tiny preset against the golden tiny-a checkpoint's config and tensors,
// determinism, and end-to-end loading of every format the writer produces.
#include "convert/synthetic.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>

#include "core/error.h"
#include "io/json_fields.h"
#include "io/safetensors.h"
#include "model/gemma4/model.h"
#include "test_util.h"

namespace mlxq::model::gemma4 {
namespace {

using Shape = std::vector<int64_t>;
struct Expect { DType dtype; Shape shape; };

// gemma4-architecture.md §9.1: the HF BF16 tensors of the 26B-A4B text decoder, layers [0, L).
std::map<std::string, Expect> spec_hf_26b(int L) {
  std::map<std::string, Expect> m;
  const std::string P = "model.language_model.";
  auto bf = [&](const std::string& n, Shape s) { m[P + n] = {DType::BF16, std::move(s)}; };
  bf("embed_tokens.weight", {262144, 2816});
  bf("norm.weight", {2816});
  for (int l = 0; l < L; ++l) {
    const std::string p = "layers." + std::to_string(l) + ".";
    const bool full = l % 6 == 5 || l == L - 1;
    const int64_t hd = full ? 512 : 256, nkv = full ? 2 : 8;
    for (const char* n : {"input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm",
                          "post_feedforward_layernorm_1", "pre_feedforward_layernorm_2",
                          "post_feedforward_layernorm_2", "post_feedforward_layernorm"})
      bf(p + n + ".weight", {2816});
    bf(p + "self_attn.q_proj.weight", {16 * hd, 2816});
    bf(p + "self_attn.k_proj.weight", {nkv * hd, 2816});
    if (!full) bf(p + "self_attn.v_proj.weight", {2048, 2816});
    bf(p + "self_attn.o_proj.weight", {2816, 16 * hd});
    bf(p + "self_attn.q_norm.weight", {hd});
    bf(p + "self_attn.k_norm.weight", {hd});
    bf(p + "mlp.gate_proj.weight", {2112, 2816});
    bf(p + "mlp.up_proj.weight", {2112, 2816});
    bf(p + "mlp.down_proj.weight", {2816, 2112});
    bf(p + "router.proj.weight", {128, 2816});
    bf(p + "router.scale", {2816});
    bf(p + "router.per_expert_scale", {128});
    bf(p + "experts.gate_up_proj", {128, 1408, 2816});
    bf(p + "experts.down_proj", {128, 2816, 704});
    bf(p + "layer_scalar", {1});
  }
  return m;
}

// mlx-quant-format.md §3.4-3.5 with uniform bits: every matrix quantized (U32 words, bf16
// scales and biases over groups of 64), experts split into switch_glu gate/up/down.
// (spec_hf_vision_26b below: the tower, §10.6.)
std::map<std::string, Expect> spec_mlx_26b(int L, int bits) {
  std::map<std::string, Expect> m;
  const std::string P = "language_model.model.";
  auto q = [&](const std::string& module, Shape lead, int64_t cols) {
    Shape w = lead, s = lead;
    w.push_back(cols * bits / 32);
    s.push_back(cols / 64);
    m[P + module + ".weight"] = {DType::U32, w};
    m[P + module + ".scales"] = {DType::BF16, s};
    m[P + module + ".biases"] = {DType::BF16, s};
  };
  for (const auto& [name, e] : spec_hf_26b(L)) {
    std::string n = name.substr(std::string("model.language_model.").size());
    const Shape& s = e.shape;
    if (n.ends_with("experts.gate_up_proj")) {
      const std::string base = n.substr(0, n.size() - 12);
      q(base + "switch_glu.gate_proj", {128, 704}, 2816);
      q(base + "switch_glu.up_proj", {128, 704}, 2816);
    } else if (n.ends_with("experts.down_proj")) {
      q(n.substr(0, n.size() - 9) + "switch_glu.down_proj", {128, 2816}, 704);
    } else if (s.size() == 2) {
      q(n.substr(0, n.size() - 7), {s[0]}, s[1]);
    } else {
      m[P + n] = e;
    }
  }
  return m;
}

// gemma4-architecture.md §10.6: the vision tower's BF16 tensors, HF names ("model." in front);
// MLX drops "model.", keeps the tower bf16 and quantizes the projection like any other weight.
std::map<std::string, Expect> spec_hf_vision_26b(bool mlx = false, int bits = 0) {
  std::map<std::string, Expect> m;
  const std::string P = mlx ? "vision_tower." : "model.vision_tower.";
  auto bf = [&](const std::string& n, Shape s) { m[P + n] = {DType::BF16, std::move(s)}; };
  bf("patch_embedder.input_proj.weight", {1152, 768});
  bf("patch_embedder.position_embedding_table", {2, 10240, 1152});
  for (int l = 0; l < 27; ++l) {
    const std::string p = "encoder.layers." + std::to_string(l) + ".";
    for (const char* n : {"q_proj", "k_proj", "v_proj", "o_proj"}) bf(p + "self_attn." + n + ".linear.weight", {1152, 1152});
    bf(p + "self_attn.q_norm.weight", {72});
    bf(p + "self_attn.k_norm.weight", {72});
    bf(p + "mlp.gate_proj.linear.weight", {4304, 1152});
    bf(p + "mlp.up_proj.linear.weight", {4304, 1152});
    bf(p + "mlp.down_proj.linear.weight", {1152, 4304});
    for (const char* n : {"input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm",
                          "post_feedforward_layernorm"})
      bf(p + n + ".weight", {1152});
  }
  bf("std_bias", {1152});
  bf("std_scale", {1152});
  const std::string proj = mlx ? "embed_vision.embedding_projection" : "model.embed_vision.embedding_projection";
  if (!mlx) {
    m[proj + ".weight"] = {DType::BF16, {2816, 1152}};
  } else {
    m[proj + ".weight"] = {DType::U32, {2816, 1152 * bits / 32}};
    m[proj + ".scales"] = {DType::BF16, {2816, 1152 / 64}};
    m[proj + ".biases"] = {DType::BF16, {2816, 1152 / 64}};
  }
  return m;
}

template <class M>
M merged(M a, const M& b) {
  a.insert(b.begin(), b.end());
  return a;
}

void expect_plan_equals(const std::vector<io::TensorSpec>& plan, const std::map<std::string, Expect>& want) {
  std::map<std::string, Expect> got;
  for (const auto& s : plan) got[s.name] = {s.dtype, s.shape};
  ASSERT_EQ(got.size(), want.size());
  for (const auto& [name, e] : want) {
    auto it = got.find(name);
    ASSERT_NE(it, got.end()) << "missing " << name;
    EXPECT_EQ(it->second.dtype, e.dtype) << name;
    EXPECT_EQ(it->second.shape, e.shape) << name;
  }
}

TEST(Synthetic, Real26bShapeHfPlanMatchesSpec) {
  SyntheticOptions o;
  o.preset = "26b-a4b";
  o.layers = 6;
  const auto plan = synthetic_tensor_plan(o);
  EXPECT_EQ(plan.size(), 2u + 5 * 22 + 21 + 2 + 27 * 13 + 3);
  expect_plan_equals(plan, merged(spec_hf_26b(6), spec_hf_vision_26b()));
  o.layers = 0;  // full depth: layers 5, 11, 17, 23, 29 are full
  expect_plan_equals(synthetic_tensor_plan(o), merged(spec_hf_26b(30), spec_hf_vision_26b()));
  o.vision = false;
  expect_plan_equals(synthetic_tensor_plan(o), spec_hf_26b(30));
  EXPECT_FALSE(synthetic_config(o).contains("vision_config"));
}

TEST(Synthetic, Real26bShapeMlxQ3PlanMatchesSpec) {
  SyntheticOptions o;
  o.preset = "26b-a4b";
  o.layers = 6;
  o.format = CheckpointFormat::MLX;
  o.quant = {3, 64};
  const auto plan = synthetic_tensor_plan(o);
  expect_plan_equals(plan, merged(spec_mlx_26b(6, 3), spec_hf_vision_26b(true, 3)));
  // Spot checks against §3.5's table.
  std::map<std::string, Shape> s;
  for (const auto& t : plan) s[t.name] = t.shape;
  EXPECT_EQ(s["language_model.model.layers.0.experts.switch_glu.down_proj.weight"], (Shape{128, 2816, 66}));
  EXPECT_EQ(s["language_model.model.layers.0.experts.switch_glu.gate_proj.scales"], (Shape{128, 704, 44}));
  EXPECT_EQ(s["language_model.model.layers.0.mlp.down_proj.scales"], (Shape{2816, 33}));
}

// tiny: the golden tiny-a decoder; with its vision tower, the golden tiny tower's config and
// tensors (shared/golden/gemma4-vision/hf) and image ids inside tiny-a's vocabulary, as the
// golden's end-to-end config has them.
TEST(Synthetic, TinyPresetIsTheGoldenTinyShape) {
  SyntheticOptions o;
  o.vision = false;
  const auto golden = io::read_json_file(test::data_path("gemma4-tiny-a/hf/config.json"));
  EXPECT_EQ(synthetic_config(o), golden);
  io::Checkpoint ck(test::data_path("gemma4-tiny-a/hf"));
  std::map<std::string, Expect> want;
  for (const auto& [name, t] : ck.tensors()) want[name] = {t->dtype, t->shape};
  expect_plan_equals(synthetic_tensor_plan(o), want);

  o.vision = true;
  const auto e2e = io::read_json_file(test::data_path("gemma4-vision/e2e/config.json"));
  const auto cfg = synthetic_config(o);
  for (const auto& [k, v] : e2e.items()) {  // the e2e config is the golden's with a 512 window
    if (k != "text_config") {
      EXPECT_EQ(cfg.value(k, nlohmann::json()), v) << k;
    }
  }
  io::Checkpoint vk(test::data_path("gemma4-vision/hf"));
  for (const auto& [name, t] : vk.tensors()) want[name] = {t->dtype, t->shape};
  expect_plan_equals(synthetic_tensor_plan(o), want);
}

std::vector<float> logits_of(const std::string& dir, const std::vector<int32_t>& toks) {
  Model m(dir, {2, 64, /*exact=*/true, /*int8=*/false});
  auto cache = m.make_cache(int64_t(toks.size()));
  std::vector<float> out(toks.size() * size_t(m.config().vocab_size));
  m.forward(toks, cache, out.data());
  return out;
}

TEST(Synthetic, EveryFormatLoadsAndAgrees) {
  test::TempDir d;
  ThreadPool pool(2);
  SyntheticOptions o;
  o.seed = 7;
  write_synthetic_model(d / "hf", o, pool);
  o.dtype = DType::F32;
  o.max_shard_bytes = 4 << 20;  // several shards with an index
  write_synthetic_model(d / "hf32", o, pool);
  o.dtype = DType::BF16;
  o.max_shard_bytes = 5ull << 30;
  o.format = CheckpointFormat::MLX;
  o.quant = {8, 64};
  write_synthetic_model(d / "q8", o, pool);
  o.quant = {3, 32};
  write_synthetic_model(d / "q3", o, pool);

  EXPECT_GT(io::Checkpoint(d / "hf32").files().size(), 4u);
  const std::vector<int32_t> toks = {2, 17, 300, 1999, 5, 77, 1024, 3, 3, 3, 640, 12};
  const auto a = logits_of(d / "hf", toks), b = logits_of(d / "hf32", toks);
  const auto q8 = logits_of(d / "q8", toks), q3 = logits_of(d / "q3", toks);
  double d32 = 0, d8 = 0, d3 = 0, spread = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    d32 = std::max(d32, double(std::fabs(a[i] - b[i])));
    d8 += std::fabs(a[i] - q8[i]) / double(a.size());
    d3 += std::fabs(a[i] - q3[i]) / double(a.size());
    spread = std::max(spread, double(std::fabs(a[i])));
  }
  // The same seed draws the same bf16 values whatever the storage: f32 storage is exact.
  EXPECT_LE(d32, 1e-5);
  // The MLX forms are quantizations of those values. A random model amplifies weight noise
  // about 100x (tiny-a README: relative noise 1e-5 moves logits by 1e-3), so compare means:
  // 8-bit stays well inside the logit range, 3-bit drifts further.
  EXPECT_LE(d8, 0.1 * spread);
  EXPECT_GT(d3, 1.5 * d8);
  EXPECT_GT(spread, 1.0);  // logits are not degenerate
}

TEST(Synthetic, DeterministicForASeed) {
  test::TempDir d;
  ThreadPool pool(2), one(1);
  SyntheticOptions o;
  o.format = CheckpointFormat::MLX;
  o.quant = {5, 64};
  o.seed = 11;
  write_synthetic_model(d / "a", o, pool);
  write_synthetic_model(d / "b", o, one);
  EXPECT_EQ(test::read_file(d / "a/model.safetensors"), test::read_file(d / "b/model.safetensors"));
  o.seed = 12;
  write_synthetic_model(d / "c", o, pool);
  EXPECT_NE(test::read_file(d / "a/model.safetensors"), test::read_file(d / "c/model.safetensors"));
  EXPECT_THROW(write_synthetic_model(d / "c", o, pool), Error);  // exists, no overwrite
}

std::vector<float> f32_values(const io::Checkpoint& ck, const std::string& name) {
  const io::TensorInfo* t = ck.find(name);
  EXPECT_NE(t, nullptr) << name;
  if (!t) return {};
  EXPECT_EQ(t->dtype, DType::F32) << name;
  std::vector<float> v(size_t(t->numel()));
  std::memcpy(v.data(), t->data, t->nbytes);
  return v;
}
double rms(const std::vector<float>& v) {
  double s = 0;
  for (float x : v) s += double(x) * x;
  return std::sqrt(s / double(v.size()));
}

// SyntheticInit::Stable: the post-block norm weights follow the residual's expected RMS, which
// the test recomputes from the stored embedding and layer_scalar values (each branch adds
// layer_update of the residual's RMS; the residual then grows by 1 + u^2 and is scaled by
// layer_scalar), and the final norm weight is zero-mean.
TEST(Synthetic, StableInitScalesEachLayerUpdateToTheResidual) {
  test::TempDir d;
  ThreadPool pool(2);
  SyntheticOptions o;
  o.dtype = DType::F32;
  o.seed = 3;
  o.layer_update = 0.2f;
  write_synthetic_model(d / "s", o, pool);
  io::Checkpoint ck(d / "s");
  const std::string P = "model.language_model.";
  const int64_t H = 256;
  double R = rms(f32_values(ck, P + "embed_tokens.weight")) * std::sqrt(double(H));
  EXPECT_NEAR(R, 2.5, 0.05);
  const double u = 0.2;
  for (int l = 0; l < 6; ++l) {
    const std::string p = P + "layers." + std::to_string(l) + ".";
    EXPECT_NEAR(rms(f32_values(ck, p + "post_attention_layernorm.weight")) / (u * R), 1.0, 0.03) << l;
    EXPECT_NEAR(rms(f32_values(ck, p + "post_feedforward_layernorm.weight")) / (u * R * std::sqrt(1 + u * u)), 1.0, 0.03) << l;
    EXPECT_NEAR(rms(f32_values(ck, p + "input_layernorm.weight")), 1.0, 0.05) << l;  // inner norms stay ~1
    const float s = f32_values(ck, p + "layer_scalar").at(0);
    EXPECT_GE(s, 0.8f);
    EXPECT_LE(s, 1.0f);
    R *= s * (1 + u * u);
  }
  const std::vector<float> fn = f32_values(ck, P + "norm.weight");
  double mean = 0;
  for (float x : fn) mean += x / double(fn.size());
  EXPECT_LT(std::fabs(mean), 0.15);
  EXPECT_NEAR(rms(fn), 1.0, 0.15);

  // The Iid init keeps every norm near 1 and layer_scalar in [0.1, 0.9].
  o.init = SyntheticInit::Iid;
  write_synthetic_model(d / "i", o, pool);
  io::Checkpoint ci(d / "i");
  EXPECT_NEAR(rms(f32_values(ci, P + "layers.0.post_attention_layernorm.weight")), 1.0, 0.05);
  EXPECT_NEAR(rms(f32_values(ci, P + "norm.weight")), 1.0, 0.05);
}

// A stable model's next-token predictions are not its input token (the tied lm_head would echo
// it if the residual stayed mostly embedding under a positive final norm) and not a near-constant.
TEST(Synthetic, StableInitDoesNotEchoTheInput) {
  test::TempDir d;
  ThreadPool pool(2);
  SyntheticOptions o;
  o.seed = 5;
  write_synthetic_model(d / "s", o, pool);
  const std::vector<int32_t> toks = {2, 17, 300, 1999, 5, 77, 1024, 3, 640, 12, 900, 41};
  const auto lg = logits_of(d / "s", toks);
  const size_t V = 2048;
  int echo = 0;
  std::map<size_t, int> tops;
  for (size_t t = 0; t < toks.size(); ++t) {
    const float* row = &lg[t * V];
    const size_t top = size_t(std::max_element(row, row + V) - row);
    echo += int(top) == toks[t];
    ++tops[top];
  }
  EXPECT_LE(echo, 1);
  EXPECT_GE(tops.size(), toks.size() - 2);
}

// Slow (ctest label "slow"): the real-width checkpoint at 6 layers, 3-bit MLX (~3.5 GB).
TEST(Synthetic, DISABLED_Real26bShapeMlxQ3WritesLoadsAndRuns) {
  test::TempDir d;
  ThreadPool pool;
  SyntheticOptions o;
  o.preset = "26b-a4b";
  o.layers = 6;
  o.format = CheckpointFormat::MLX;
  o.quant = {3, 64};
  write_synthetic_model(d / "m", o, pool);
  io::Checkpoint ck(d / "m");
  std::map<std::string, Expect> got;
  for (const auto& [name, t] : ck.tensors()) got[name] = {t->dtype, t->shape};
  std::vector<io::TensorSpec> on_disk;
  for (const auto& [name, e] : got) on_disk.push_back({name, e.dtype, e.shape});
  expect_plan_equals(on_disk, spec_mlx_26b(6, 3));
  Model m(d / "m", {0, 8});
  const std::vector<int32_t> toks = {2, 105, 2364, 107, 9, 1000, 262000};
  auto cache = m.make_cache(16);
  std::vector<float> out(toks.size() * 262144);
  m.forward(toks, cache, out.data());
  for (float v : out) ASSERT_TRUE(std::isfinite(v));
}

}  // namespace
}  // namespace mlxq::model::gemma4
