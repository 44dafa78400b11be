// The Gemma-4 text forward pass, op by op in the order of gemma4-architecture.md §4-§5: the
// embedding, the layer stack, the final norm and the tied lm_head (§4), a decoder layer (§5) and
// its dense MLP (§5.2 step 11). The attention block is in attention.cpp, the router and experts
// in moe.cpp. Shapes: T rows in this chunk (the tokens of one or more sequences side by side),
// H hidden, I dense intermediate, V vocabulary.
// Activations are f32; the inputs of weight matmuls are also quantized to int8 in Fast precision
// (kernels/matmul.h). Matmuls that share an input run as one parallel job.
#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "kernels/kernels.h"
#include "kernels/matmul.h"
#include "kernels/vector_ops.h"
#include "model/gemma4/model.h"
#include "model/gemma4/workspace.h"

namespace mlxq::model::gemma4 {

namespace k = kernels;
using k::MatmulTask;

// §4: x0 = E[ids] * bf16(sqrt(H)); the layers; final norm; tied lm_head; softcap.
void Model::forward_chunk(int64_t T) {
  Workspace& ws = *ws_;
  const int64_t H = cfg_.hidden_size;
  const float scale = cfg_.embed_scale();
  // Image placeholders take their soft tokens unscaled (§10.5); each row of an image run
  // records the run's positions for the attention mask.
  const int32_t img = int32_t(cfg_.image_token_id);
  for (const Segment& g : ws.segs) {
    const float* next_image = g.images;
    for (int64_t i = 0; i < g.T; ++i) {
      const int64_t t = g.row0 + i;
      ws.pos[size_t(t)] = g.p0 + i;
      ws.run_begin[size_t(t)] = g.p0 + i;
      ws.run_end[size_t(t)] = g.p0 + i + 1;
      float* xt = &ws.x[size_t(t * H)];
      if (next_image && g.tokens[i] == img) {
        std::copy_n(next_image, H, xt);
        next_image += H;
        continue;
      }
      w_.embed_tokens.row_f32(g.tokens[i], xt);
      for (int64_t c = 0; c < H; ++c) xt[c] *= scale;
    }
    if (!g.images) continue;
    for (int64_t i = 0; i < g.T;) {  // runs lie whole in the chunk (forward_batch cuts around them)
      if (g.tokens[i] != img) {
        ++i;
        continue;
      }
      int64_t j = i;
      while (j < g.T && g.tokens[j] == img) ++j;
      for (int64_t r = i; r < j; ++r) {
        ws.run_begin[size_t(g.row0 + r)] = g.p0 + i;
        ws.run_end[size_t(g.row0 + r)] = g.p0 + j;
      }
      i = j;
    }
  }
  rope_tables(T);
  for (int64_t l = 0; l < cfg_.num_hidden_layers; ++l) decoder_layer(l, T);
  for (const Segment& g : ws.segs) g.cache->advance(g.T);
  lm_head(T);
}

// The rows whose logits are wanted (every row of an `all` segment, else its last row when the
// sequence ends in this chunk): final norm, the lm_head, softcap. One sequence's rows are written
// straight into its logits. Several sequences' rows (a batched decode step) go through one task
// into the workspace and are copied out: a task per sequence read the 0.5 GB vocabulary matrix
// once per sequence (4 sequences: 55 ms against 19 for one).
void Model::lm_head(int64_t T) {
  (void)T;
  Workspace& ws = *ws_;
  const int64_t H = cfg_.hidden_size, V = cfg_.vocab_size;
  int64_t rows = 0;
  for (const Segment& g : ws.segs) {
    if (!g.logits) continue;
    const int64_t first = g.all ? 0 : g.T - 1;
    for (int64_t i = first; i < g.T; ++i, ++rows)
      k::simd::rms_norm(&ws.x[size_t((g.row0 + i) * H)], w_.final_norm.data(), H, float(cfg_.rms_norm_eps),
                        &ws.a[size_t(rows * H)]);
  }
  if (rows == 0) return;
  const k::Activations a = ws.act_h.prepare(ws.a.data(), rows, H, H, precision(), {&w_.embed_tokens});
  const float cap = float(cfg_.final_logit_softcapping);
  int64_t wanting = 0;
  for (const Segment& g : ws.segs) wanting += g.logits ? 1 : 0;
  constexpr int64_t kMaxSharedRows = 64;  // the workspace's copy: at most 64 MB for a 262k vocabulary
  if (wanting == 1 || rows > kMaxSharedRows) {
    int64_t r0 = 0;
    for (const Segment& g : ws.segs) {
      if (!g.logits) continue;
      const int64_t n = g.all ? g.T : 1;
      const MatmulTask t{&w_.embed_tokens, a.slice(r0, n), g.logits, V};  // [n, V]
      k::matmul(std::span<const MatmulTask>(&t, 1), precision(), *pool_);
      if (cap > 0) k::simd::softcap(g.logits, n * V, cap);
      r0 += n;
    }
    return;
  }
  if (ws.logits.size() < size_t(rows * V)) ws.logits.resize(size_t(rows * V));
  const MatmulTask t{&w_.embed_tokens, a, ws.logits.data(), V};  // [rows, V]
  k::matmul(std::span<const MatmulTask>(&t, 1), precision(), *pool_);
  if (cap > 0) k::simd::softcap(ws.logits.data(), rows * V, cap);
  int64_t r0 = 0;
  for (const Segment& g : ws.segs) {
    if (!g.logits) continue;
    const int64_t n = g.all ? g.T : 1;
    std::copy_n(&ws.logits[size_t(r0 * V)], size_t(n * V), g.logits);
    r0 += n;
  }
}

// §5: attention block, then the dense MLP and the MoE in parallel, then layer_scalar.
void Model::decoder_layer(int64_t l, int64_t T) {
  Workspace& ws = *ws_;
  const LayerWeights& L = w_.layers[size_t(l)];
  const int64_t H = cfg_.hidden_size;
  const float eps = float(cfg_.rms_norm_eps);

  attention_block(l, T);  // ws.h = x + post_attention_norm(attn(x))

  dense_mlp(l, L, T);  // ws.o = post_feedforward_layernorm_1(mlp(pre_feedforward_layernorm(h)))
  route(l, L, T);      // ws.top_idx / ws.top_w from the un-normalised residual h
  experts(l, L, T);    // ws.m = post_feedforward_layernorm_2(sum_j w_j expert_j(pre_ffn_norm_2(h)))

  // 14-15: y = h + post_feedforward_layernorm(d + m); x_next = y * layer_scalar.
  for (int64_t t = 0; t < T; ++t) {
    float* o = &ws.o[size_t(t * H)];
    const float* m = &ws.m[size_t(t * H)];
    for (int64_t i = 0; i < H; ++i) o[i] += m[i];
    k::simd::rms_norm(o, L.post_feedforward_layernorm.data(), H, eps, o);
    const float* h = &ws.h[size_t(t * H)];
    float* x = &ws.x[size_t(t * H)];
    for (int64_t i = 0; i < H; ++i) x[i] = (h[i] + o[i]) * L.layer_scalar;
  }
}

// §5.2 step 11: the dense GeGLU branch, into ws.o.
void Model::dense_mlp(int64_t l, const LayerWeights& L, int64_t T) {
  Workspace& ws = *ws_;
  const int64_t H = cfg_.hidden_size, I = cfg_.intermediate_size;
  const float eps = float(cfg_.rms_norm_eps);
  for (int64_t t = 0; t < T; ++t)
    k::simd::rms_norm(&ws.h[size_t(t * H)], L.pre_feedforward_layernorm.data(), H, eps, &ws.a[size_t(t * H)]);
  if (observer_) {
    observer_(l, "mlp.gate_proj", -1, ws.a.data(), T, H);
    observer_(l, "mlp.up_proj", -1, ws.a.data(), T, H);
  }
  const k::Activations a = ws.act_h.prepare(ws.a.data(), T, H, H, precision(), {&L.mlp_gate, &L.mlp_up});
  ws.tasks.clear();
  ws.tasks.push_back({&L.mlp_gate, a, ws.gate.data(), I});  // [T, I]
  ws.tasks.push_back({&L.mlp_up, a, ws.up.data(), I});      // [T, I]
  k::matmul(ws.tasks, precision(), *pool_);
  k::simd::gelu_gate(ws.gate.data(), ws.up.data(), T * I, ws.gate.data());
  if (observer_) observer_(l, "mlp.down_proj", -1, ws.gate.data(), T, I);
  const MatmulTask down{&L.mlp_down, ws.act_ff.prepare(ws.gate.data(), T, I, I, precision(), {&L.mlp_down}), ws.o.data(), H};
  k::matmul(std::span<const MatmulTask>(&down, 1), precision(), *pool_);  // [T, H]
  for (int64_t t = 0; t < T; ++t) {
    float* o = &ws.o[size_t(t * H)];
    k::simd::rms_norm(o, L.post_feedforward_layernorm_1.data(), H, eps, o);
  }
}

}  // namespace mlxq::model::gemma4
