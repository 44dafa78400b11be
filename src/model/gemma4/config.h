// Gemma4Config: the text decoder's hyperparameters from config.json (nested `text_config` of a
// `gemma4` config, or a flat `gemma4_text` one), the vision tower's (`vision_config`, §10.1) and
// the image token ids when the checkpoint has one, the MLX quantization block, and
// generation_config.json. Parsed and validated once; per-layer facts are derived here so the
// forward pass never recomputes them (gemma4-architecture.md §2).
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "quant/affine.h"

namespace mlxq::model::gemma4 {

enum class LayerType { Sliding, Full };

struct RopeParams {
  std::string type = "default";  // "default" or "proportional"
  double theta = 10000.0;
  double partial_rotary_factor = 1.0;
};

// The `quantization` block: a default (bits, group_size) plus sparse per-module overrides keyed
// by module path (tensor name without ".weight").
struct QuantConfig {
  quant::Spec base;
  std::map<std::string, quant::Spec> overrides;
  quant::Spec spec_for(const std::string& module) const;
};

// The vision tower (gemma4-architecture.md §10.1). Heads x head_dim = hidden_size; each head's
// RoPE is 2-D: the first half rotates by the patch column, the second by its row.
struct VisionConfig {
  int64_t hidden_size = 0;        // Hv (1152)
  int64_t intermediate_size = 0;  // gated GELU-tanh MLP (4304)
  int64_t num_hidden_layers = 0;  // 27
  int64_t num_attention_heads = 0;
  int64_t head_dim = 0;           // 72
  int64_t patch_size = 16;
  int64_t pooling_kernel_size = 3;
  int64_t position_embedding_size = 10240;  // per axis
  double rope_theta = 100.0;
  double rms_norm_eps = 1e-6;
  bool standardize = true;
  int64_t default_output_length = 280;  // soft tokens per image unless asked otherwise
  int64_t patch_dim() const { return 3 * patch_size * patch_size; }
};

struct Gemma4Config {
  std::string source;  // path of config.json, for messages

  int64_t hidden_size = 0;              // H
  int64_t num_hidden_layers = 0;        // L
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;      // sliding layers
  int64_t num_global_key_value_heads = 0;  // full layers when attention_k_eq_v
  int64_t head_dim = 0;                 // sliding layers
  int64_t global_head_dim = 0;          // full layers
  int64_t intermediate_size = 0;        // dense MLP
  int64_t moe_intermediate_size = 0;    // per expert
  int64_t num_experts = 0;
  int64_t top_k_experts = 0;
  int64_t vocab_size = 0;
  int64_t sliding_window = 0;
  int64_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  double final_logit_softcapping = 0;   // 0: none
  bool attention_k_eq_v = true;
  bool tie_word_embeddings = true;
  bool enable_moe_block = true;
  std::vector<LayerType> layer_types;
  RopeParams rope_sliding, rope_full;
  int64_t bos_token_id = 2, pad_token_id = 0;
  std::vector<int64_t> eos_token_ids;
  std::optional<QuantConfig> quantization;
  std::optional<VisionConfig> vision;  // absent: a text-only checkpoint (images are refused)
  int64_t boi_token_id = -1, image_token_id = -1, eoi_token_id = -1;  // <|image>, <|image|>, <image|>

  bool is_sliding(int64_t l) const { return layer_types[size_t(l)] == LayerType::Sliding; }
  int64_t layer_head_dim(int64_t l) const { return is_sliding(l) ? head_dim : global_head_dim; }
  int64_t layer_kv_heads(int64_t l) const {
    return is_sliding(l) || !attention_k_eq_v ? num_key_value_heads : num_global_key_value_heads;
  }
  bool has_v_proj(int64_t l) const { return is_sliding(l) || !attention_k_eq_v; }
  // RoPE inverse frequencies for layer l: head_dim/2 entries, 0 for pairs that do not rotate.
  std::vector<float> inv_freq(int64_t l) const;
  // bf16(sqrt(H)): the embedding scale (gemma4-architecture.md §4).
  float embed_scale() const;
};

// Reads <dir>/config.json (or the file itself) and validates it.
Gemma4Config load_config(const std::string& path);
// Validates an already parsed config.json; `file` names it in messages.
Gemma4Config parse_config(const nlohmann::json& root, const std::string& file);

struct GenerationConfig {
  std::vector<int64_t> eos_token_ids;
  std::optional<double> temperature, top_p, min_p;
  std::optional<int64_t> top_k;
  int64_t bos_token_id = 2;
};
// <dir>/generation_config.json when present, else defaults from `cfg`.
GenerationConfig load_generation_config(const std::string& dir, const Gemma4Config& cfg);

}  // namespace mlxq::model::gemma4
