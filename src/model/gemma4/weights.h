// Gemma4Weights: one named view per checkpoint tensor of the text decoder, bound once from an
// HF (`model.language_model.*`, fused experts) or MLX (`language_model.model.*`, switch_glu
// experts, affine-quantized where `.scales` exists) checkpoint. Large matrices are views into
// the mmap; only the small 1-D vectors (norms, scales) are copied to f32.
#pragma once
#include <string>
#include <vector>

#include "io/safetensors.h"
#include "kernels/matrix.h"
#include "model/gemma4/config.h"

namespace mlxq::model::gemma4 {

enum class Layout { HF, MLX };

struct LayerWeights {
  // Attention (D = head dim of this layer, nkv = its KV heads).
  std::vector<float> input_layernorm;            // [H]
  kernels::Matrix q_proj;                        // [16*D, H]
  kernels::Matrix k_proj;                        // [nkv*D, H]
  kernels::Matrix v_proj;                        // [nkv*D, H]; rows == 0 on K=V (full) layers
  kernels::Matrix o_proj;                        // [H, 16*D]
  std::vector<float> q_norm, k_norm;             // [D]
  std::vector<float> post_attention_layernorm;   // [H]
  // Dense GeGLU MLP.
  std::vector<float> pre_feedforward_layernorm;  // [H]
  kernels::Matrix mlp_gate, mlp_up;              // [I, H]
  kernels::Matrix mlp_down;                      // [H, I]
  std::vector<float> post_feedforward_layernorm_1;  // [H]
  // Router and experts.
  kernels::Matrix router_proj;                   // [E, H]
  std::vector<float> router_scale;               // [H]
  std::vector<float> per_expert_scale;           // [E]
  std::vector<float> pre_feedforward_layernorm_2;   // [H]
  kernels::ExpertStack expert_gate, expert_up;   // [E, Ie, H]
  kernels::ExpertStack expert_down;              // [E, H, Ie]
  std::vector<float> post_feedforward_layernorm_2;  // [H]
  std::vector<float> post_feedforward_layernorm;    // [H]
  float layer_scalar = 1.0f;
};

struct Gemma4Weights {
  Layout layout = Layout::MLX;
  kernels::Matrix embed_tokens;   // [V, H]; also the tied lm_head
  std::vector<float> final_norm;  // [H]
  std::vector<LayerWeights> layers;
};

// The vision tower (gemma4-architecture.md §10.6): HF `model.vision_tower.*` and
// `model.embed_vision.*`, MLX `vision_tower.*` and `embed_vision.*`; bf16 in the recipe, the
// projection possibly quantized.
struct VisionLayerWeights {
  std::vector<float> input_layernorm, post_attention_layernorm;    // [Hv]
  std::vector<float> pre_feedforward_layernorm, post_feedforward_layernorm;  // [Hv]
  kernels::Matrix q_proj, k_proj, v_proj, o_proj;                 // [Hv, Hv]
  std::vector<float> q_norm, k_norm;                              // [head_dim]
  kernels::Matrix gate_proj, up_proj;                             // [Iv, Hv]
  kernels::Matrix down_proj;                                      // [Hv, Iv]
};

struct VisionWeights {
  kernels::Matrix input_proj;            // [Hv, 3 * patch^2]
  kernels::ExpertStack position_table;   // [2, position_embedding_size, Hv]: x (column) table, y (row) table
  std::vector<VisionLayerWeights> layers;
  std::vector<float> std_bias, std_scale;  // [Hv] (standardize)
  kernels::Matrix embedding_projection;  // [H, Hv] into the text width
};

Layout detect_layout(const io::Checkpoint& ckpt);
// Binds every tensor the config implies; throws Error naming the tensor and file when one is
// missing, has the wrong dtype or shape, or its quantization does not match the config.
Gemma4Weights bind_weights(const io::Checkpoint& ckpt, const Gemma4Config& cfg);
// The vision tower's tensors (cfg.vision must be set); the checkpoint may hold them alone.
VisionWeights bind_vision_weights(const io::Checkpoint& ckpt, const Gemma4Config& cfg);

}  // namespace mlxq::model::gemma4
