// `mlxq convert`: an HF BF16 Gemma-4 checkpoint -> the MLX layout (sanitized names, split
// experts, 5 GiB shards + index, identical `quantization` / `quantization_config` blocks with
// sparse overrides, side files copied), optionally quantized by a recipe (mlx-quant-format.md §3,
// §4, §7). Tensors stream one at a time from the mapped input; the output appears only when
// complete (temporary directory, then rename).
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/thread_pool.h"
#include "quant/affine.h"

namespace mlxq::quant {

struct ConvertOptions {
  std::string input, output;
  bool quantize = false;          // -q
  int bits = -1;                  // --q-bits (-1: 3 for unsloth, else 4)
  int group_size = 64;            // --q-group-size
  std::string recipe;             // --q-recipe ("" = uniform)
  std::string overrides_path;     // --q-overrides
  DType dtype = DType::BF16;      // -d
  bool o_proj_bf16 = true;        // --o-proj bf16|8
  Rounding rounding = Rounding::Cpu;  // --quant-rounding
  bool force = false;
  uint64_t max_shard_bytes = 5ull << 30;
  std::string imatrix_path;       // --imatrix-path: AWQ pre-scaling from these importances
  bool awq = true;                // --no-awq turns it off
  bool awq_experts = true;        // also fold the experts' gate/up scale into pre_feedforward_layernorm_2
  std::vector<std::string>* awq_report = nullptr;  // receives one line per scaled tensor
  bool vision = true;             // --no-vision: leave out the vision tower and vision_config
};

struct ConvertStats {
  size_t tensors = 0, quantized = 0, overrides = 0, shards = 0, awq_modified = 0;
  uint64_t bytes_in = 0, bytes_out = 0;
};

// Maps an input tensor name to its MLX name(s) (§3.4): returns false when the tensor is dropped.
// Fused HF experts.gate_up_proj yields two names (gate half, up half).
bool sanitize_name(const std::string& name, bool tied, std::vector<std::string>* out);

// `progress(done, total, bytes_done, name)` after each output tensor.
ConvertStats convert_checkpoint(const ConvertOptions& opt, ThreadPool& pool,
                                const std::function<void(size_t, size_t, uint64_t, const std::string&)>& progress = {});

}  // namespace mlxq::quant
