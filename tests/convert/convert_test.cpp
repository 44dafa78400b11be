// mlxq convert: bit-identical with MLX's quantizer on the golden tiny-a checkpoint (unsloth, 3
// bits), the unsloth per-tensor bits table and override count on the real 26b-a4b names and
// shapes, mixed_* and user overrides, and refusal / atomicity rules.
#include "convert/convert.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <map>

#include "convert/recipe.h"
#include "convert/synthetic.h"
#include "core/error.h"
#include "io/json_fields.h"
#include "io/safetensors.h"
#include "test_util.h"

namespace mlxq::quant {
namespace {

namespace fs = std::filesystem;

TEST(Convert, UnslothQ3IsBitIdenticalWithMlx) {
  test::TempDir d;
  ThreadPool pool(2);
  ConvertOptions o;
  o.input = test::data_path("gemma4-tiny-a/hf");
  o.output = d / "out";
  o.quantize = true;
  o.bits = 3;
  o.recipe = "unsloth";
  const ConvertStats st = convert_checkpoint(o, pool);
  EXPECT_EQ(st.quantized, 60u);
  EXPECT_EQ(st.overrides, 36u);
  io::Checkpoint got(o.output), want(test::data_path("gemma4-tiny-a/mlx-q"));
  ASSERT_EQ(got.tensors().size(), want.tensors().size());
  for (const auto& [name, w] : want.tensors()) {
    const io::TensorInfo* g = got.find(name);
    ASSERT_NE(g, nullptr) << name;
    EXPECT_EQ(g->dtype, w->dtype) << name;
    EXPECT_EQ(g->shape, w->shape) << name;
    ASSERT_EQ(g->nbytes, w->nbytes) << name;
    EXPECT_EQ(std::memcmp(g->data, w->data, w->nbytes), 0) << name;
  }
  // The whole shard, header included, and the index are the same bytes as MLX's.
  EXPECT_EQ(test::read_file(o.output + "/model.safetensors"),
            test::read_file(test::data_path("gemma4-tiny-a/mlx-q/model.safetensors")));
  const auto cg = io::read_json_file(o.output + "/config.json");
  const auto cw = io::read_json_file(test::data_path("gemma4-tiny-a/mlx-q/config.json"));
  EXPECT_EQ(cg["quantization"], cw["quantization"]);
  EXPECT_EQ(cg["quantization_config"], cw["quantization_config"]);
  EXPECT_EQ(cg, cw);
}

// §3.5: the expected result per tensor at --q-bits 3 (card build: o_proj bf16).
std::string expected_q3(const std::string& name) {
  if (name.starts_with("vision_tower.")) return "bf16";  // excluded by name
  if (name.starts_with("embed_vision.")) return "3/64";  // not excluded: the recipe's default
  if (name.find("embed_tokens") != std::string::npos) return "5/64";
  if (name.find("router.proj") != std::string::npos) return "8/64";
  for (const char* p : {"q_proj", "k_proj", "v_proj"})
    if (name.find(std::string("self_attn.") + p) != std::string::npos) return "5/64";
  if (name.find("o_proj") != std::string::npos) return "bf16";
  if (name.find("down_proj") != std::string::npos) return "4/64";
  if (name.find("gate_proj") != std::string::npos || name.find("up_proj") != std::string::npos) return "3/64";
  return "bf16";
}

std::map<std::string, std::string> unsloth_plan(int layers, bool o_proj_bf16, int* overrides) {
  model::gemma4::SyntheticOptions so;
  so.preset = "26b-a4b";
  so.layers = layers;
  RecipeOptions ro;
  ro.kind = RecipeKind::Unsloth;
  ro.bits = 3;
  ro.o_proj_bf16 = o_proj_bf16;
  std::map<std::string, std::string> out;
  *overrides = 0;
  std::vector<std::string> names;
  for (const auto& t : model::gemma4::synthetic_tensor_plan(so)) {
    if (!sanitize_name(t.name, true, &names)) continue;
    for (const auto& n : names) {
      auto shape = t.shape;
      if (names.size() == 2) shape[1] /= 2;
      const auto s = choose_spec(n, shape, ro, {});
      out[n] = s ? std::to_string(s->bits) + "/" + std::to_string(s->group_size) : "bf16";
      if (s && !(*s == Spec{3, 64})) ++*overrides;
    }
  }
  return out;
}

TEST(Recipe, UnslothOnReal26bNamesAndShapes) {
  int overrides = 0;
  for (const auto& [name, got] : unsloth_plan(6, true, &overrides)) EXPECT_EQ(got, expected_q3(name)) << name;
  EXPECT_EQ(overrides, 1 + 6 + 6 + 5 + 6 + 6 + 6);  // embed + q + k + v (sliding) + down + experts.down + router
  unsloth_plan(0, true, &overrides);
  EXPECT_EQ(overrides, 176);  // the spec's count for the full 30 layers
  const auto cur = unsloth_plan(6, false, &overrides);
  EXPECT_EQ(cur.at("language_model.model.layers.0.self_attn.o_proj.weight"), "8/64");
}

TEST(Recipe, BitsBySnapAndMixedAndOverrides) {
  EXPECT_EQ(snap_bits(1), 2);
  EXPECT_EQ(snap_bits(7), 8);
  EXPECT_EQ(snap_bits(10), 8);
  RecipeOptions ro;
  ro.kind = RecipeKind::Unsloth;
  ro.bits = 5;
  const std::vector<int64_t> sh = {2816, 2816};
  EXPECT_EQ(choose_spec("language_model.model.embed_tokens.weight", sh, ro, {})->bits, 8);  // 5 + 2 = 7 snaps to 8
  EXPECT_EQ(choose_spec("language_model.model.layers.1.mlp.down_proj.weight", sh, ro, {})->bits, 6);
  EXPECT_FALSE(choose_spec("language_model.model.layers.1.input_layernorm.weight", {2816}, ro, {}));
  EXPECT_FALSE(choose_spec("vision_tower.encoder.layers.0.mlp.gate_proj.linear.weight", sh, ro, {}));
  // A last dimension the group size does not divide stays dense (§4.2).
  EXPECT_FALSE(choose_spec("language_model.model.layers.1.mlp.gate_proj.weight", {64, 100}, ro, {}));
  // mixed_3_6 over 30 layers: v_proj / down_proj of layers < 3, >= 26 or (i - 3) % 3 == 2 get 6 bits.
  ro.kind = RecipeKind::Mixed3_6;
  ro.num_layers = 30;
  ro.bits = 3;
  EXPECT_EQ(choose_spec("language_model.model.layers.0.self_attn.v_proj.weight", sh, ro, {})->bits, 6);
  EXPECT_EQ(choose_spec("language_model.model.layers.3.self_attn.v_proj.weight", sh, ro, {})->bits, 3);
  EXPECT_EQ(choose_spec("language_model.model.layers.5.mlp.down_proj.weight", sh, ro, {})->bits, 6);
  EXPECT_EQ(choose_spec("language_model.model.layers.5.router.proj.weight", {128, 2816}, ro, {})->bits, 8);
  // User overrides: regular expressions, first match wins, "bf16" keeps a tensor dense.
  test::TempDir d;
  test::write_file(d / "o.json", R"({"layers\\.0\\..*q_proj": "bf16", "q_proj": {"bits": 8, "group_size": 32}})");
  const auto ov = read_overrides(d / "o.json");
  EXPECT_FALSE(choose_spec("language_model.model.layers.0.self_attn.q_proj.weight", sh, ro, ov));
  EXPECT_EQ(choose_spec("language_model.model.layers.1.self_attn.q_proj.weight", sh, ro, ov)->group_size, 32);
  test::write_file(d / "bad.json", R"({"(": "bf16"})");
  EXPECT_THROW(read_overrides(d / "bad.json"), Error);
  EXPECT_THROW(parse_recipe("qwen3_5"), Error);
}

TEST(Convert, RefusalsAndBf16Output) {
  test::TempDir d;
  ThreadPool pool(2);
  ConvertOptions o;
  o.input = test::data_path("gemma4-tiny-a/hf");
  o.output = d / "out";
  o.quantize = true;
  o.bits = 7;
  EXPECT_THROW(convert_checkpoint(o, pool), Error);  // rejected before loading
  EXPECT_FALSE(fs::exists(o.output));
  o.bits = 4;
  o.group_size = 48;
  EXPECT_THROW(convert_checkpoint(o, pool), Error);
  // Without -q: the sanitized MLX layout in bf16, experts split, values unchanged.
  o.quantize = false;
  o.group_size = 64;
  convert_checkpoint(o, pool);
  io::Checkpoint c(o.output), hf(o.input);
  const auto* gate = c.find("language_model.model.layers.2.experts.switch_glu.up_proj.weight");
  ASSERT_NE(gate, nullptr);
  EXPECT_EQ(gate->shape, (std::vector<int64_t>{16, 64, 256}));
  const auto* fused = hf.find("model.language_model.layers.2.experts.gate_up_proj");
  // Expert 3's up half starts at row 64 of its fused [128, 256] block.
  EXPECT_EQ(std::memcmp(gate->data + 3 * 64 * 256 * 2, fused->data + (3 * 128 + 64) * 256 * 2, 64 * 256 * 2), 0);
  EXPECT_FALSE(io::read_json_file(o.output + "/config.json").contains("quantization"));
  EXPECT_THROW(convert_checkpoint(o, pool), Error);  // exists, no --force
  o.force = true;
  EXPECT_NO_THROW(convert_checkpoint(o, pool));
  o.input = d / "missing";
  o.output = d / "out2";
  EXPECT_THROW(convert_checkpoint(o, pool), Error);
  EXPECT_FALSE(fs::exists(o.output));
}

}  // namespace
}  // namespace mlxq::quant

namespace mlxq::quant {
namespace {

// Two independent paths to the same checkpoint: make-model quantizing with the recipe as it
// generates, and make-model HF followed by convert.
TEST(Convert, MakeModelRecipeEqualsConvertOfTheSameModel) {
  test::TempDir d;
  ThreadPool pool(2);
  model::gemma4::SyntheticOptions so;
  so.seed = 9;
  model::gemma4::write_synthetic_model(d / "hf", so, pool);
  so.format = model::gemma4::CheckpointFormat::MLX;
  so.recipe = "unsloth";
  so.quant = {3, 64};
  model::gemma4::write_synthetic_model(d / "direct", so, pool);
  ConvertOptions o;
  o.input = d / "hf";
  o.output = d / "converted";
  o.quantize = true;
  o.recipe = "unsloth";
  convert_checkpoint(o, pool);
  EXPECT_EQ(test::read_file(d / "direct/model.safetensors"), test::read_file(d / "converted/model.safetensors"));
  const auto a = io::read_json_file(d / "direct/config.json"), b = io::read_json_file(d / "converted/config.json");
  EXPECT_EQ(a["quantization"], b["quantization"]);
  EXPECT_EQ(a["quantization"].size(), 3u + 36u);
}

}  // namespace
}  // namespace mlxq::quant
