// Recipe decision functions, transcribed from mlx-quant-format.md §4.1 (unsloth) and §7.3
// (mlx-lm mixed_*), in their order: the first matching rule wins.
#include "convert/recipe.h"

#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/json_fields.h"

namespace mlxq::quant {

namespace {
bool contains(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }
bool ends_with(const std::string& s, const char* suffix) { return s.ends_with(suffix); }
std::string module_of(const std::string& key) {
  return ends_with(key, ".weight") ? key.substr(0, key.size() - 7) : key;
}
// First all-digit path component (the layer index), 0 when there is none.
int layer_index(const std::string& key) {
  size_t start = 0;
  while (start < key.size()) {
    size_t end = key.find('.', start);
    if (end == std::string::npos) end = key.size();
    const std::string part = key.substr(start, end - start);
    if (!part.empty() && part.find_first_not_of("0123456789") == std::string::npos) return std::stoi(part);
    start = end + 1;
  }
  return 0;
}
}  // namespace

RecipeKind parse_recipe(const std::string& name) {
  if (name.empty()) return RecipeKind::Uniform;
  if (name == "unsloth") return RecipeKind::Unsloth;
  if (name == "mixed_2_6") return RecipeKind::Mixed2_6;
  if (name == "mixed_3_4") return RecipeKind::Mixed3_4;
  if (name == "mixed_3_6") return RecipeKind::Mixed3_6;
  if (name == "mixed_4_6") return RecipeKind::Mixed4_6;
  throw Error("--q-recipe '" + name + "' is not supported (unsloth, mixed_2_6, mixed_3_4, mixed_3_6, mixed_4_6)");
}

int snap_bits(int b) { return b <= 2 ? 2 : b >= 7 ? 8 : b; }

bool should_quantize(const std::string& key) {
  if (!ends_with(key, ".weight")) return false;
  for (const char* p : {"vision_tower", "visual.", "embed_tokens", "embedding.", "lm_head", "layernorm", "rms_norm",
                        "_norm.", "conv1d", "A_log", "dt_bias", "in_proj_a.", "in_proj_b.", "in_proj_ba."})
    if (contains(key, p)) return false;
  return true;
}

std::vector<Override> read_overrides(const std::string& path) {
  (void)io::read_json_file(path);  // a clear error for a missing file or bad JSON
  // "First match wins" needs the file's key order, so read it as ordered JSON.
  std::ifstream in(path);
  const nlohmann::ordered_json ordered = nlohmann::ordered_json::parse(in);
  check(ordered.is_object(), path + ": --q-overrides must be a JSON object of regex -> {bits, group_size} or \"bf16\"");
  std::vector<Override> out;
  for (const auto& [pattern, v] : ordered.items()) {
    Override ov;
    ov.pattern = pattern;
    try {
      ov.re = std::regex(pattern, std::regex::ECMAScript);
    } catch (const std::regex_error& e) {
      throw Error(path + ": key '" + pattern + "' is not a valid regular expression: " + e.what());
    }
    if (v.is_string() && v.get<std::string>() == "bf16") {
      ov.dense = true;
    } else {
      check(v.is_object() && v.contains("bits") && v["bits"].is_number_integer() && v.contains("group_size") &&
                v["group_size"].is_number_integer(),
            path + ": value of '" + pattern + "' must be {\"bits\": B, \"group_size\": G} or \"bf16\"");
      ov.spec = {v["bits"].get<int>(), v["group_size"].get<int>()};
      check(valid_bits(ov.spec.bits) && valid_group_size(ov.spec.group_size),
            path + ": '" + pattern + "': bits must be 2,3,4,5,6,8 and group_size 32,64,128");
    }
    out.push_back(std::move(ov));
  }
  return out;
}

namespace {

std::optional<Spec> unsloth(const std::string& key, const RecipeOptions& o) {
  const int N = o.bits, G = o.group_size;
  if (contains(key, "embed_tokens") && ends_with(key, ".weight")) return Spec{snap_bits(N + 2), G};  // 1
  if (contains(key, "lm_head") && ends_with(key, ".weight")) return Spec{snap_bits(N + 3), G};       // 2
  if (!should_quantize(key)) return std::nullopt;                                                     // 3
  const std::string m = module_of(key);
  if (ends_with(m, ".mlp.gate") || ends_with(m, ".shared_expert_gate") || ends_with(m, ".router.proj"))
    return Spec{8, 64};                                                                               // 4
  for (const char* p : {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "linear_attn.in_proj_qkv",
                        "linear_attn.in_proj_z"})
    if (contains(key, p)) return Spec{snap_bits(N + 2), G};                                           // 5
  if (contains(key, "self_attn.o_proj") || contains(key, "linear_attn.out_proj"))
    return o.o_proj_bf16 ? std::nullopt : std::optional<Spec>(Spec{8, 64});                          // 6
  if (contains(key, "down_proj")) return Spec{snap_bits(N + 1), G};                                   // 7
  return Spec{N, G};                                                                                  // 8
}

std::optional<Spec> mixed(const std::string& key, const RecipeOptions& o) {
  int low = 2, high = 6;
  switch (o.kind) {
    case RecipeKind::Mixed3_4: low = 3, high = 4; break;
    case RecipeKind::Mixed3_6: low = 3, high = 6; break;
    case RecipeKind::Mixed4_6: low = 4, high = 6; break;
    default: break;
  }
  const std::string m = module_of(key);
  if (ends_with(m, ".router.proj")) return Spec{8, 64};  // the model's own predicate comes first
  if (!ends_with(key, ".weight") || contains(key, "vision_tower") || contains(key, "layernorm") ||
      contains(key, "_norm."))
    return std::nullopt;
  const int L = o.num_layers, i = layer_index(key);
  const bool more = i < L / 8 || i >= 7 * L / 8 || (i - L / 8) % 3 == 2;
  if (contains(key, "v_proj") && more) return Spec{high, o.group_size};
  if (contains(key, "down_proj") && more) return Spec{high, o.group_size};
  if (contains(key, "lm_head")) return Spec{high, o.group_size};
  return Spec{low, o.group_size};
}

std::optional<Spec> uniform(const std::string& key, const RecipeOptions& o) {
  const std::string m = module_of(key);
  if (ends_with(m, ".router.proj")) return Spec{8, 64};  // mlx-lm's gemma4 predicate
  if (!ends_with(key, ".weight") || contains(key, "vision_tower") || contains(key, "layernorm") ||
      contains(key, "_norm.") || contains(key, "rms_norm"))
    return std::nullopt;
  return Spec{o.bits, o.group_size};
}

}  // namespace

std::optional<Spec> choose_spec(const std::string& key, const std::vector<int64_t>& shape,
                                const RecipeOptions& opt, const std::vector<Override>& overrides) {
  std::optional<Spec> s;
  bool decided = false;
  const std::string m = module_of(key);
  for (const auto& ov : overrides) {
    if (std::regex_search(m, ov.re)) {
      s = ov.dense ? std::nullopt : std::optional<Spec>(ov.spec);
      decided = true;
      break;
    }
  }
  if (!decided) {
    switch (opt.kind) {
      case RecipeKind::Uniform: s = uniform(key, opt); break;
      case RecipeKind::Unsloth: s = unsloth(key, opt); break;
      default: s = mixed(key, opt); break;
    }
  }
  if (s && (shape.size() < 2 || shape.back() % s->group_size != 0)) return std::nullopt;  // §4.2
  return s;
}

}  // namespace mlxq::quant
