// Importance matrices (mlx-quant-format.md §5): llama.cpp's GGUF imatrix and legacy .dat files,
// read defensively and written in llama.cpp's layout; Gemma-4 name canonicalisation and the
// per-matrix mean-x^2 importance that AWQ (awq.h) plans from.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace mlxq::quant {

// One collected weight. n_mat = 1 for dense weights, n_experts for MoE `*_exps` entries.
struct ImatrixEntry {
  int64_t n_in = 0;                          // input channels per matrix
  std::vector<std::vector<float>> in_sum2;   // [n_mat][n_in]: sum over tokens of x^2
  std::vector<float> counts;                 // [n_mat]: tokens seen (0: expert never routed)
};

struct Imatrix {
  // Keyed by the GGUF tensor name without the .in_sum2/.counts suffix ("blk.0.attn_q.weight").
  std::map<std::string, ImatrixEntry> entries;
  std::vector<std::string> datasets;
  uint32_t chunk_count = 0, chunk_size = 0;
};

// Reads llama.cpp's GGUF imatrix (magic "GGUF", version >= 3) or its legacy .dat format.
// Everything malformed throws mlxq::Error naming the file and the problem; sizes are checked
// against the file size before anything is allocated. Tensors other than NAME.in_sum2 and
// NAME.counts (e.g. NAME.in_sum) are ignored after their bounds are checked. An in_sum2 without
// its counts (or the reverse) is an error, as in llama.cpp.
// .dat: each entry becomes n_mat = 1 with counts = {ncall} and in_sum2 = {values}, so that
// in_sum2 / counts is the mean x^2. A .dat MoE entry holds n_expert * n_in values flattened, and
// the file does not say n_expert: it stays one matrix of length n_expert * n_in (plan_awq splits
// it using the model config). chunk_count = last_chunk, chunk_size = 0; datasets = {path}.
Imatrix read_imatrix(const std::string& path);

// Writes llama.cpp's GGUF imatrix layout: GGUF v3, alignment 32 (the default, not written as a
// KV), KVs general.type = "imatrix", imatrix.datasets (string array), imatrix.chunk_count (u32),
// imatrix.chunk_size (u32); per entry in name order, NAME.in_sum2 F32 [n_in, n_mat] then
// NAME.counts F32 [1, n_mat] (trailing dims of 1 are dropped from a tensor's n_dims, as ggml
// does). Through a temporary file and rename. Throws mlxq::Error on inconsistent entries.
void write_imatrix_gguf(const std::string& path, const Imatrix& m);

// The canonical form "layers.N.<module>" shared by imatrix names and checkpoint tensor names
// (mlx-quant-format.md §5.2, §6.4). Modules: self_attn.{q,k,v,o}_proj, mlp.{gate,up,down}_proj,
// router.proj, experts.gate_up (every tensor reading the experts' input: GGUF ffn_gate_up_exps,
// ffn_gate_exps, ffn_up_exps, HF experts.gate_up_proj, MLX experts.switch_glu.{gate,up}_proj),
// experts.down, and the three norms AWQ folds into (input_layernorm, pre_feedforward_layernorm,
// pre_feedforward_layernorm_2; in GGUF attn_norm, ffn_norm, pre_ffw_norm_2). Outside the layers:
// "embed_tokens" (token_embd, embed_tokens) and "lm_head" (output, lm_head). A trailing ".weight"
// is optional; checkpoint prefixes are stripped as sanitize does (§3.4). Unknown names give "".
std::string canonical_key(std::string_view name);

struct Importance {
  std::vector<std::vector<float>> per_matrix;  // [kept matrices][n_in]: mean x^2 per input channel
};

// imp[m][j] = in_sum2[m][j] / counts[m] per matrix (§5.2); matrices with count <= 0 are dropped
// (an entry with none left is absent), entries without a canonical key are skipped. Entries
// sharing a key (ffn_gate_exps and ffn_up_exps) combine matrix by matrix by element-wise max;
// they must agree on n_in and n_mat.
std::map<std::string, Importance> importance_by_canonical(const Imatrix& m);

}  // namespace mlxq::quant
