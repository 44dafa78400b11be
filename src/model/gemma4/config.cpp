// Parsing and validation of the Gemma-4 config.json layouts and generation_config.json.
#include "model/gemma4/config.h"

#include <cmath>
#include <filesystem>

#include "core/dtype.h"
#include "core/error.h"
#include "io/json_fields.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace mlxq::model::gemma4 {

quant::Spec QuantConfig::spec_for(const std::string& module) const {
  auto it = overrides.find(module);
  return it == overrides.end() ? base : it->second;
}

float Gemma4Config::embed_scale() const { return round_bf16(std::sqrt(float(hidden_size))); }

std::vector<float> Gemma4Config::inv_freq(int64_t l) const {
  const int64_t d = layer_head_dim(l);
  const RopeParams& rp = is_sliding(l) ? rope_sliding : rope_full;
  int64_t rotated = d / 2;
  if (rp.type == "proportional") rotated = int64_t(std::floor(rp.partial_rotary_factor * double(d) / 2));
  std::vector<float> f(size_t(d / 2), 0.0f);
  for (int64_t i = 0; i < rotated; ++i)
    f[size_t(i)] = float(1.0 / std::pow(rp.theta, double(2 * i) / double(d)));
  return f;
}

namespace {

quant::Spec parse_spec(const io::JsonFields& q, const std::string& what) {
  quant::Spec s;
  s.bits = int(q.get_int("bits"));
  s.group_size = int(q.get_int("group_size"));
  const std::string mode = q.get_string("mode", "affine");
  check(mode == "affine", q.where("mode") + " is '" + mode + "'; only affine is supported");
  check(quant::valid_bits(s.bits), q.where("bits") + " = " + std::to_string(s.bits) +
                                       " for " + what + ": must be 2, 3, 4, 5, 6 or 8");
  check(quant::valid_group_size(s.group_size),
        q.where("group_size") + " = " + std::to_string(s.group_size) + " for " + what +
            ": must be 32, 64 or 128");
  return s;
}

QuantConfig parse_quant(const json& block, const std::string& file, const char* name) {
  io::JsonFields q(block, file, std::string(name) + ".");
  QuantConfig qc;
  qc.base = parse_spec(q, "the default");
  for (auto it = block.begin(); it != block.end(); ++it) {
    if (!it.value().is_object()) continue;  // bits, group_size, mode, and scalar extras
    io::JsonFields o(it.value(), file, std::string(name) + "." + it.key() + ".");
    qc.overrides[it.key()] = parse_spec(o, it.key());
  }
  return qc;
}

RopeParams parse_rope(const io::JsonFields& f) {
  RopeParams r;
  r.type = f.get_string("rope_type", "default");
  check(r.type == "default" || r.type == "proportional",
        f.where("rope_type") + " is '" + r.type + "'; expected default or proportional");
  r.theta = f.get_number("rope_theta");
  r.partial_rotary_factor = f.get_number("partial_rotary_factor", 1.0);
  check(r.theta > 0, f.where("rope_theta") + " must be positive");
  check(r.partial_rotary_factor > 0 && r.partial_rotary_factor <= 1,
        f.where("partial_rotary_factor") + " must be in (0, 1]");
  return r;
}

void positive(const io::JsonFields& f, const char* key, int64_t v) {
  check(v > 0, f.where(key) + " must be positive, got " + std::to_string(v));
}

// §10.1: the 26B-A4B / 31B tower. E2B/E4B's clipped linears are refused by name.
VisionConfig parse_vision(const io::JsonFields& v) {
  VisionConfig c;
  c.hidden_size = v.get_int("hidden_size");
  c.intermediate_size = v.get_int("intermediate_size");
  c.num_hidden_layers = v.get_int("num_hidden_layers");
  c.num_attention_heads = v.get_int("num_attention_heads");
  c.head_dim = v.get_int("head_dim", c.num_attention_heads > 0 ? c.hidden_size / c.num_attention_heads : 0);
  c.patch_size = v.get_int("patch_size", 16);
  c.pooling_kernel_size = v.get_int("pooling_kernel_size", 3);
  c.position_embedding_size = v.get_int("position_embedding_size", 10240);
  c.rms_norm_eps = v.get_number("rms_norm_eps", 1e-6);
  c.standardize = v.get_bool("standardize", true);
  c.default_output_length = v.get_int("default_output_length", 280);
  for (const char* k : {"hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "head_dim",
                        "patch_size", "pooling_kernel_size", "position_embedding_size", "default_output_length"})
    positive(v, k, v.get_int(k, 1));
  check(c.num_attention_heads * c.head_dim == c.hidden_size,
        v.where("head_dim") + " x num_attention_heads must equal hidden_size (" + std::to_string(c.head_dim) + " x " +
            std::to_string(c.num_attention_heads) + " != " + std::to_string(c.hidden_size) + ")");
  check(c.head_dim % 4 == 0, v.where("head_dim") + " must be a multiple of 4 (two RoPE halves of pairs)");
  check(v.get_int("num_key_value_heads", c.num_attention_heads) == c.num_attention_heads,
        v.where("num_key_value_heads") + " must equal num_attention_heads in the vision tower");
  const std::string act = v.get_string("hidden_activation", "gelu_pytorch_tanh");
  check(act == "gelu_pytorch_tanh", v.where("hidden_activation") + " is '" + act + "'; expected gelu_pytorch_tanh");
  check(!v.get_bool("use_clipped_linears", false),
        v.where("use_clipped_linears") + " is true (the E2B/E4B towers); mlxq runs the 26B-A4B / 31B tower");
  check(!v.get_bool("attention_bias", false), v.where("attention_bias") + " must be false");
  if (v.has("rope_parameters")) {
    const io::JsonFields r = v.object("rope_parameters");
    c.rope_theta = r.get_number("rope_theta", 100.0);
    const std::string type = r.get_string("rope_type", "default");
    check(type == "default", r.where("rope_type") + " is '" + type + "'; the vision tower uses default");
  }
  check(c.rope_theta > 0, v.where("rope_parameters.rope_theta") + " must be positive");
  return c;
}

}  // namespace

Gemma4Config load_config(const std::string& path) {
  const std::string file = fs::is_directory(path) ? (fs::path(path) / "config.json").string() : path;
  check(fs::exists(file), file + ": missing (every checkpoint needs a config.json)");
  return parse_config(io::read_json_file(file), file);
}

Gemma4Config parse_config(const nlohmann::json& root, const std::string& file) {
  io::JsonFields top(root, file);
  const std::string model_type = top.get_string("model_type");
  check(model_type == "gemma4" || model_type == "gemma4_text",
        top.where("model_type") + " is '" + model_type + "'; mlxq runs gemma4 and gemma4_text");
  const bool nested = model_type == "gemma4";
  const io::JsonFields t = nested ? top.object("text_config") : top;

  Gemma4Config c;
  c.source = file;
  c.hidden_size = t.get_int("hidden_size");
  c.num_hidden_layers = t.get_int("num_hidden_layers");
  c.num_attention_heads = t.get_int("num_attention_heads");
  c.num_key_value_heads = t.get_int("num_key_value_heads");
  c.head_dim = t.get_int("head_dim");
  c.global_head_dim = t.get_int("global_head_dim", c.head_dim);
  c.attention_k_eq_v = t.get_bool("attention_k_eq_v", false);
  c.num_global_key_value_heads = t.get_int("num_global_key_value_heads", c.num_key_value_heads);
  c.intermediate_size = t.get_int("intermediate_size");
  c.enable_moe_block = t.get_bool("enable_moe_block", false);
  c.vocab_size = t.get_int("vocab_size");
  c.sliding_window = t.get_int("sliding_window");
  c.max_position_embeddings = t.get_int("max_position_embeddings", 131072);
  c.rms_norm_eps = t.get_number("rms_norm_eps", 1e-6);
  c.final_logit_softcapping = t.get_number("final_logit_softcapping", 0.0);
  c.tie_word_embeddings = t.get_bool("tie_word_embeddings", top.get_bool("tie_word_embeddings", true));
  c.bos_token_id = t.get_int("bos_token_id", 2);
  c.pad_token_id = t.get_int("pad_token_id", 0);
  c.eos_token_ids = top.has("eos_token_id") ? top.get_int_or_int_array("eos_token_id")
                                            : std::vector<int64_t>{1, 106};

  for (const char* k : {"hidden_size", "num_hidden_layers", "num_attention_heads",
                        "num_key_value_heads", "head_dim", "global_head_dim",
                        "num_global_key_value_heads", "intermediate_size", "vocab_size",
                        "sliding_window"})
    positive(t, k, t.get_int(k, 1));

  check(c.enable_moe_block, t.where("enable_moe_block") +
                                " must be true: mlxq implements the 26B-A4B MoE layout");
  c.num_experts = t.get_int("num_experts");
  c.top_k_experts = t.get_int("top_k_experts");
  c.moe_intermediate_size = t.get_int("moe_intermediate_size");
  positive(t, "num_experts", c.num_experts);
  positive(t, "moe_intermediate_size", c.moe_intermediate_size);
  check(c.top_k_experts > 0 && c.top_k_experts <= c.num_experts,
        t.where("top_k_experts") + " must be in [1, num_experts]");
  check(c.tie_word_embeddings, t.where("tie_word_embeddings") + " must be true for Gemma 4");

  const std::string act = t.get_string("hidden_activation", "gelu_pytorch_tanh");
  check(act == "gelu_pytorch_tanh", t.where("hidden_activation") + " is '" + act +
                                        "'; Gemma 4 uses gelu_pytorch_tanh");
  for (const char* k : {"num_kv_shared_layers", "hidden_size_per_layer_input"})
    check(t.get_int(k, 0) == 0, t.where(k) + " must be 0 (not a 26B-A4B-style model)");
  check(!t.get_bool("use_double_wide_mlp", false), t.where("use_double_wide_mlp") + " must be false");
  check(!t.get_bool("attention_bias", false), t.where("attention_bias") + " must be false");

  const auto types = t.get_string_array("layer_types");
  check(int64_t(types.size()) == c.num_hidden_layers,
        t.where("layer_types") + " has " + std::to_string(types.size()) + " entries, expected " +
            std::to_string(c.num_hidden_layers) + " (num_hidden_layers)");
  for (const auto& s : types) {
    check(s == "sliding_attention" || s == "full_attention",
          t.where("layer_types") + " holds '" + s + "'; expected sliding_attention or full_attention");
    c.layer_types.push_back(s == "sliding_attention" ? LayerType::Sliding : LayerType::Full);
  }
  const io::JsonFields rope = t.object("rope_parameters");
  c.rope_sliding = parse_rope(rope.object("sliding_attention"));
  c.rope_full = parse_rope(rope.object("full_attention"));

  check(c.num_attention_heads % c.num_key_value_heads == 0,
        t.where("num_key_value_heads") + " must divide num_attention_heads");
  check(c.num_attention_heads % c.num_global_key_value_heads == 0,
        t.where("num_global_key_value_heads") + " must divide num_attention_heads");
  check(c.head_dim % 2 == 0 && c.global_head_dim % 2 == 0, t.where("head_dim") + " must be even");

  if (nested && root.contains("vision_config") && !root["vision_config"].is_null()) {
    c.vision = parse_vision(top.object("vision_config"));
    c.boi_token_id = top.get_int("boi_token_id");
    c.image_token_id = top.get_int("image_token_id");
    c.eoi_token_id = top.get_int("eoi_token_id");
    for (const char* k : {"boi_token_id", "image_token_id", "eoi_token_id"})  // (a tower alone may not fit the
      check(top.get_int(k) >= 0, top.where(k) + " must not be negative");     // vocabulary: checked where merged)
    c.vision->default_output_length = top.get_int("vision_soft_tokens_per_image", c.vision->default_output_length);
  }

  const bool hq = root.contains("quantization"), hqc = root.contains("quantization_config");
  if (hq || hqc) {
    const char* name = hq ? "quantization" : "quantization_config";
    check(root[name].is_object(), top.where(name) + " must be an object");
    if (hq && hqc)
      check(root["quantization"] == root["quantization_config"],
            file + ": quantization and quantization_config differ");
    c.quantization = parse_quant(root[name], file, name);
  }
  return c;
}

GenerationConfig load_generation_config(const std::string& dir, const Gemma4Config& cfg) {
  GenerationConfig g;
  g.eos_token_ids = cfg.eos_token_ids;
  g.bos_token_id = cfg.bos_token_id;
  const fs::path p = fs::path(dir) / "generation_config.json";
  if (!fs::exists(p)) return g;
  const json root = io::read_json_file(p.string());
  io::JsonFields f(root, p.string());
  if (f.has("eos_token_id")) g.eos_token_ids = f.get_int_or_int_array("eos_token_id");
  g.bos_token_id = f.get_int("bos_token_id", g.bos_token_id);
  if (f.has("temperature")) g.temperature = f.get_number("temperature");
  if (f.has("top_p")) g.top_p = f.get_number("top_p");
  if (f.has("min_p")) g.min_p = f.get_number("min_p");
  if (f.has("top_k")) g.top_k = f.get_int("top_k");
  return g;
}

}  // namespace mlxq::model::gemma4
