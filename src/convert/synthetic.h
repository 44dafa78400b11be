// Synthetic Gemma-4 checkpoints in the exact real layout (names, shapes, dtypes, config.json,
// generation_config.json, 5 GiB shards with an index): random weights with realistic magnitudes
// for tests and benchmarks, since no real weights can be downloaded. Written tensor by tensor
// (quantized on the fly for the MLX format), so even the full 26B shape never sits in memory.
// A checkpoint writer, so it sits on the converter's floor (it uses the recipes and the row
// writer); the namespace stays the model's, whose shapes it writes.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/dtype.h"
#include "core/thread_pool.h"
#include "io/checkpoint_writer.h"
#include "quant/affine.h"

namespace mlxq::model::gemma4 {

enum class CheckpointFormat { HF, MLX };

// How the weights' magnitudes are chosen.
//  Iid:    every tensor independently at a fixed scale (norm weights near 1, layer_scalar
//          U(0.1, 0.9)). Each layer rewrites most of the residual stream, which makes the deep
//          random network chaotic: a 1e-7 change of one activation moves the 30-layer 26b-a4b
//          logits by up to 1e-2.
//  Stable: like a trained network, each layer updates the residual stream by a set fraction
//          (`layer_update`, in RMS) of what is already there: the post-attention and
//          post-feedforward norm weights are scaled to the residual's expected RMS at that depth
//          (which the embedding scale and the layer_scalar values fix), and the final norm weight
//          is zero-mean so the tied lm_head does not just echo the input token.
enum class SyntheticInit { Iid, Stable };

struct SyntheticOptions {
  std::string preset = "tiny";    // "tiny" (the golden tiny-a shape), "small" (tiny with the real
                                  // 262144 vocabulary) or "26b-a4b" (the real shape)
  int64_t layers = 0;             // 0: the preset's depth; else keeps 5 sliding : 1 full
  uint64_t seed = 0;
  SyntheticInit init = SyntheticInit::Stable;
  float layer_update = 0.1f;      // Stable: each branch adds this fraction of the residual's RMS
  DType dtype = DType::BF16;      // BF16 or F32 for dense tensors (and scales/biases)
  CheckpointFormat format = CheckpointFormat::HF;
  quant::Spec quant{4, 64};       // MLX format: bits and group size (uniform without a recipe)
  std::string recipe;             // MLX format: "", unsloth, mixed_2_6, ... (as convert's --q-recipe)
  bool o_proj_bf16 = true;        // unsloth recipe: o_proj bf16 (card) or 8-bit
  uint64_t max_shard_bytes = 5ull << 30;
  bool overwrite = false;
  std::string tokenizer_json;     // copied in as tokenizer.json when set (vocab must fit)
  // A vision tower (gemma4-architecture.md §10) in the real layout: vision_config, the image
  // token ids, model.vision_tower.* / model.embed_vision.* (MLX: without "model."). tiny and small
  // get the golden's tiny tower (width 128, 2 layers), 26b-a4b the real one (1152, 27 layers).
  bool vision = true;
};

// config.json of the preset, in transformers' layout (nested text_config).
nlohmann::json synthetic_config(const SyntheticOptions& opt);

// Every tensor the checkpoint will hold, with its dtype and shape (sorted by name).
std::vector<io::TensorSpec> synthetic_tensor_plan(const SyntheticOptions& opt);

// Writes the checkpoint to `out_dir` (atomically). `progress(done, total, name)` after each tensor.
void write_synthetic_model(const std::string& out_dir, const SyntheticOptions& opt, ThreadPool& pool,
                           const std::function<void(size_t, size_t, const std::string&)>& progress = {});

}  // namespace mlxq::model::gemma4
