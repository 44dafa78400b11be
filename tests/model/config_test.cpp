// Gemma4Config parsing: both layouts, derived per-layer facts, RoPE frequencies against the
// spec's reference values, the quantization block, and field-level errors.
#include "model/gemma4/config.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "convert/synthetic.h"
#include "core/error.h"
#include "io/json_fields.h"
#include "test_util.h"

namespace mlxq::model::gemma4 {
namespace {

using nlohmann::json;

TEST(Config, ParsesGoldenNestedLayout) {
  const Gemma4Config c = load_config(test::data_path("gemma4-tiny-a/hf"));
  EXPECT_EQ(c.hidden_size, 256);
  EXPECT_EQ(c.num_hidden_layers, 6);
  EXPECT_TRUE(c.is_sliding(0));
  EXPECT_FALSE(c.is_sliding(5));
  EXPECT_EQ(c.layer_head_dim(5), 128);
  EXPECT_EQ(c.layer_kv_heads(5), 1);
  EXPECT_EQ(c.layer_kv_heads(0), 2);
  EXPECT_FALSE(c.has_v_proj(5));
  EXPECT_EQ(c.sliding_window, 32);
  EXPECT_EQ(c.embed_scale(), 16.0f);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{1, 106}));
  EXPECT_FALSE(c.quantization.has_value());
  // Proportional RoPE on the full layer: 16 of 64 pairs rotate, exponent over 128.
  const auto f = c.inv_freq(5);
  ASSERT_EQ(f.size(), 64u);
  EXPECT_NEAR(f[1], std::pow(1e6, -2.0 / 128), 1e-7);
  EXPECT_GT(f[15], 0.0f);
  EXPECT_EQ(f[16], 0.0f);
}

TEST(Config, RealShapeRopeReferenceValues) {
  SyntheticOptions o;
  o.preset = "26b-a4b";
  const Gemma4Config c = parse_config(synthetic_config(o), "config.json");
  EXPECT_EQ(c.embed_scale(), 53.0f);
  const auto s = c.inv_freq(0), g = c.inv_freq(5);
  EXPECT_NEAR(s[1], 0.9305720409, 1e-7);
  EXPECT_NEAR(s[127], 1.0746078e-4, 1e-10);
  ASSERT_EQ(g.size(), 256u);
  EXPECT_NEAR(g[1], 0.9474635257, 1e-7);
  EXPECT_NEAR(g[63], 0.0333762469, 1e-8);
  EXPECT_EQ(g[64], 0.0f);
  for (int64_t l : {5, 11, 17, 23, 29}) EXPECT_FALSE(c.is_sliding(l)) << l;
  EXPECT_TRUE(c.is_sliding(28));
}

TEST(Config, ParsesMlxQuantizationOverrides) {
  const Gemma4Config c = load_config(test::data_path("gemma4-tiny-a/mlx-q"));
  ASSERT_TRUE(c.quantization.has_value());
  EXPECT_EQ(c.quantization->base, (quant::Spec{3, 64}));
  EXPECT_EQ(c.quantization->overrides.size(), 36u);
  EXPECT_EQ(c.quantization->spec_for("language_model.model.embed_tokens"), (quant::Spec{5, 64}));
  EXPECT_EQ(c.quantization->spec_for("language_model.model.layers.2.router.proj"), (quant::Spec{8, 64}));
  EXPECT_EQ(c.quantization->spec_for("language_model.model.layers.2.mlp.gate_proj"), (quant::Spec{3, 64}));
}

TEST(Config, FlatTextLayout) {
  json root = io::read_json_file(test::data_path("gemma4-tiny-a/hf/config.json"));
  json flat = root["text_config"];
  const Gemma4Config c = parse_config(flat, "flat.json");
  EXPECT_EQ(c.vocab_size, 2048);
  EXPECT_EQ(c.num_experts, 16);
}

std::string error_of(const json& j) {
  try {
    parse_config(j, "config.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

TEST(Config, BadFieldsNameTheField) {
  const json root = io::read_json_file(test::data_path("gemma4-tiny-a/hf/config.json"));
  json j = root;
  j["text_config"]["hidden_size"] = "256";
  EXPECT_EQ(error_of(j), "config.json: field text_config.hidden_size must be an integer, got string");
  j = root;
  j["text_config"].erase("num_experts");
  EXPECT_EQ(error_of(j), "config.json: field text_config.num_experts is missing");
  j = root;
  j["text_config"]["layer_types"].erase(0);
  EXPECT_NE(error_of(j).find("layer_types has 5 entries, expected 6"), std::string::npos);
  j = root;
  j["text_config"]["rope_parameters"]["full_attention"]["rope_theta"] = "big";
  EXPECT_NE(error_of(j).find("text_config.rope_parameters.full_attention.rope_theta must be a number"),
            std::string::npos);
  j = root;
  j["model_type"] = "llama";
  EXPECT_NE(error_of(j).find("model_type is 'llama'"), std::string::npos);
  j = root;
  j["quantization"] = {{"bits", 7}, {"group_size", 64}};
  EXPECT_NE(error_of(j).find("bits = 7"), std::string::npos);
  j = root;
  j["text_config"] = 5;
  EXPECT_NE(error_of(j).find("text_config must be an object"), std::string::npos);
}

TEST(Config, GenerationConfig) {
  test::TempDir d;
  test::write_file(d / "generation_config.json",
                   R"({"eos_token_id": [1, 106, 50], "temperature": 1.0, "top_k": 64, "top_p": 0.95})");
  const Gemma4Config c = load_config(test::data_path("gemma4-tiny-a/hf"));
  const GenerationConfig g = load_generation_config(d.str(), c);
  EXPECT_EQ(g.eos_token_ids, (std::vector<int64_t>{1, 106, 50}));
  EXPECT_EQ(g.top_k.value(), 64);
  EXPECT_DOUBLE_EQ(g.top_p.value(), 0.95);
  test::write_file(d / "generation_config.json", R"({"top_k": "many"})");
  EXPECT_THROW(load_generation_config(d.str(), c), Error);
}

}  // namespace
}  // namespace mlxq::model::gemma4
