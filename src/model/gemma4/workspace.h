// The forward pass's scratch memory (internal to src/model/gemma4): every buffer sized once at
// load for max_chunk rows, plus the description of the rows of the chunk in flight. A chunk is
// the rows of one or more sequences side by side (a batch); every op but attention and RoPE is
// row-wise, so only those two look at which sequence a row belongs to.
#pragma once
#include <cstdint>
#include <vector>

#include "core/aligned.h"
#include "kernels/matmul.h"
#include "model/gemma4/kv_cache.h"
#include "model/gemma4/model.h"

namespace mlxq::model::gemma4 {

// One sequence's rows in the chunk in flight: rows [row0, row0 + T) at positions p0.. of `cache`.
struct Segment {
  const int32_t* tokens = nullptr;
  int64_t T = 0, row0 = 0, p0 = 0;
  KvCache* cache = nullptr;
  float* logits = nullptr;  // where this segment's logits go (null: none this chunk)
  bool all = false;         // logits of every row, else of the last row only
  const float* images = nullptr;  // soft tokens for this segment's image placeholders, in order (or null)
};

struct Model::Workspace {
  std::vector<Segment> segs;        // the sequences of the chunk in flight
  std::vector<int64_t> pos;         // [T] position of each row in its sequence
  std::vector<int64_t> run_begin, run_end;  // [T] the row's image run [begin, end) in positions, or (p, p + 1)
  AlignedVector<float> x;           // [T, H] residual stream (layer input / output)
  AlignedVector<float> h;           // [T, H] residual after attention
  AlignedVector<float> a;           // [T, H] normalised input of the current block
  AlignedVector<float> o;           // [T, H] block output
  AlignedVector<float> m;           // [T, H] MoE output
  AlignedVector<float> q;           // [T, nq*D]
  AlignedVector<float> kr, vr;      // [T, nkv*D] raw k and v projections
  AlignedVector<float> attn;        // [T, nq*D] attention output
  AlignedVector<float> gate, up;    // [T, max(I, Ie)]
  std::vector<float> router;        // [T, E] router logits, then probabilities
  std::vector<int32_t> top_idx;     // [T, top_k]
  std::vector<float> top_w;         // [T, top_k]
  std::vector<int32_t> exp_count;   // [E] tokens routed to each expert in this chunk
  std::vector<int32_t> exp_tok;     // [E, T] which tokens
  std::vector<float> exp_w;         // [E, T] with which weight
  std::vector<int32_t> exp_base;    // [E] first row of each routed expert in eg/eu/ye
  AlignedVector<float> eg, eu;      // [T*K, Ie] expert gate / up (then gelu(gate)*up)
  AlignedVector<float> ye;          // [T*K, H] expert outputs
  AlignedVector<float> xe;          // [T, H] gathered expert input (only for the observer)
  std::vector<float> logits;        // [rows, V] several sequences' logits, one lm_head task (grows on use)
  std::vector<std::vector<float>> scores;  // per worker: attention scores
  std::vector<std::vector<float>> inv_freq;  // per layer: RoPE inverse frequencies
  std::vector<int> rope_slot;       // per layer: which table below holds its angles
  std::vector<int64_t> rope_layer;  // per table: a layer that uses it
  std::vector<std::vector<float>> rope_cos, rope_sin;  // per distinct inv_freq: [T, D/2]
  struct QueryBlock {               // attention work unit: up to 4 consecutive rows of a segment
    int64_t seg, t0, n;
  };
  std::vector<QueryBlock> qblocks;
  kernels::ActivationBuffer act_h;     // int8 form of [T, H] inputs
  kernels::ActivationBuffer act_wide;  // int8 form of [T, nq*D] attention output
  kernels::ActivationBuffer act_ff;    // int8 form of [T*K, max(I, Ie)] MLP / expert hidden
  std::vector<kernels::MatmulTask> tasks;  // one job's matmuls (capacity fixed at construction)
  std::vector<kernels::Matrix> views;      // expert matrices of the current job (same)
};

}  // namespace mlxq::model::gemma4
