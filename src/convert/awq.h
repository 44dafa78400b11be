// AWQ pre-scaling (mlx-quant-format.md §6, §6.4 normative): per-channel scales planned from
// imatrix importances, multiplied into weight columns and divided out of the preceding RMSNorm
// (or, for mlp.down_proj, out of mlp.up_proj's rows), applied row by row as tensors stream
// through the converter.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "convert/imatrix.h"

namespace mlxq::model::gemma4 { struct Gemma4Config; }

namespace mlxq::quant {

// §6.1: element-wise max of the vectors (same length), s_j = max(imp_j, 1e-8)^0.5, then
// s /= max(sqrt(max_k s_k * min_k s_k), 1e-8). [1, 4, 9, 16] -> [0.5, 1, 1.5, 2].
// Throws mlxq::Error on no vectors, different lengths or non-finite importances.
std::vector<float> awq_scales(const std::vector<const std::vector<float>*>& importances);

// What the converter does to each tensor, keyed by canonical names (canonical_key()).
// A weight may have both a column and a row scale (mlp.up_proj: group A columns, group B rows).
struct AwqPlan {
  // canonical module -> s [in]: multiply the weight's input columns by s. experts.gate_up covers
  // every tensor reading the experts' input (HF fused gate_up_proj, MLX switch_glu gate and up).
  std::map<std::string, std::vector<float>> column_scale;
  // canonical module -> r [out]: multiply output row i by r[i] (mlp.up_proj: r = 1/s of group B).
  std::map<std::string, std::vector<float>> row_scale;
  // "layers.N.input_layernorm" / "layers.N.pre_feedforward_layernorm" /
  // "layers.N.pre_feedforward_layernorm_2" -> s: weight /= s (awq_norm).
  std::map<std::string, std::vector<float>> norm_divide;
  // One line per scaled tensor ("<tensor> <- <how> (fold into <target>)"), one per skipped
  // group saying why, and a last line with the matched layers per group (§6.4: log the matches).
  std::vector<std::string> report;
  // Distinct canonical weights (column or row scaled) plus norms changed.
  int modified = 0;
};

// Plans §6.4 for every layer l of `cfg`:
//   A  dense MLP: importance max(mlp.gate_proj, mlp.up_proj) (either alone will do); columns of
//      gate_proj and up_proj times s; pre_feedforward_layernorm / s.
//   B  mlp.down_proj importance; down_proj columns times s; up_proj rows times 1/s.
//   C  attention: sliding layers (any layer with a v_proj) need q, k and v, max of the three;
//      full layers without v_proj (attention_k_eq_v) use max(q, k); columns of q, k (and v)
//      times s; input_layernorm / s.
//   experts (only when include_experts, off by default in the CLI): importance max over the
//      experts' matrices of experts.gate_up; its columns times s; pre_feedforward_layernorm_2 / s.
//      A single flattened matrix of num_experts * hidden_size values (legacy .dat) is split.
// Entries with several matrices use the max over matrices. A group with missing importances is
// skipped with a report line. An importance whose length is not the weight's input size
// (hidden_size; intermediate_size for down_proj) throws mlxq::Error naming the entry.
AwqPlan plan_awq(const std::map<std::string, Importance>& imp, const model::gemma4::Gemma4Config& cfg,
                 bool include_experts);

// One weight row (bf16 values held as f32), in place: row[j] = bf16(row[j] * s[j] * row_scale),
// each product in f32 and rounded once to bf16 (§6.2 "mlxq numerics"). `column_scale` may be
// null (row scale only); otherwise it must have n entries.
void awq_scale_row(float* row, int64_t n, const std::vector<float>* column_scale, float row_scale);

// A folded norm weight: bf16(w / s).
float awq_norm(float w, float s);

}  // namespace mlxq::quant
