// Quantization recipes: which bits and group size each tensor of a converted checkpoint gets
// (mlx-quant-format.md §4, §7.3): uniform, the unsloth recipe (first match wins), mlx-lm's
// mixed_* recipes, and user overrides by regular expression. Keys are sanitized MLX tensor names.
#pragma once
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "quant/affine.h"

namespace mlxq::quant {

enum class RecipeKind { Uniform, Unsloth, Mixed2_6, Mixed3_4, Mixed3_6, Mixed4_6 };
RecipeKind parse_recipe(const std::string& name);  // "" -> Uniform; throws Error on unknown names

struct RecipeOptions {
  RecipeKind kind = RecipeKind::Uniform;
  int bits = 4;            // N (--q-bits)
  int group_size = 64;     // G (--q-group-size)
  bool o_proj_bf16 = true; // unsloth: keep o_proj bf16 (published card) or 8/64 (current mlx-node)
  int num_layers = 0;      // mixed_*: L
};

// One user override: tensor names (without ".weight") matching `pattern` get `spec`, or stay
// dense when `dense` ("bf16").
struct Override {
  std::string pattern;
  std::regex re;
  bool dense = false;
  Spec spec;
};
// Reads a --q-overrides JSON object (keys are regular expressions, first match wins).
std::vector<Override> read_overrides(const std::string& path);

int snap_bits(int b);  // <=2 -> 2; 3..6 unchanged; 7 and up -> 8
bool should_quantize(const std::string& key);  // the unsloth recipe's eligibility test

// The spec for tensor `key` (a ".weight" name) of `shape`, or nullopt to keep it dense. Applies
// the overrides first, then the recipe, then the execution rule that only tensors with ndim >= 2
// and a last dimension divisible by the group size are quantized.
std::optional<Spec> choose_spec(const std::string& key, const std::vector<int64_t>& shape,
                                const RecipeOptions& opt, const std::vector<Override>& overrides);

}  // namespace mlxq::quant
