// The mixture of experts of a Gemma-4 decoder layer, gemma4-architecture.md §5.2 steps 12-13:
// the router picks top_k of E experts per row, and every routed expert runs once per chunk over
// the rows that chose it (reading its weights once). Shapes: T rows, H hidden, E experts, Ie
// expert intermediate, K experts per row.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"
#include "kernels/kernels.h"
#include "kernels/matmul.h"
#include "kernels/vector_ops.h"
#include "model/gemma4/model.h"
#include "model/gemma4/workspace.h"

namespace mlxq::model::gemma4 {

namespace k = kernels;
using k::MatmulTask;

// §5.2 step 12: r = RMSNorm_noweight(h) * router.scale * H^-1/2; softmax over E; top-k;
// renormalise; times per_expert_scale. Ties go to the lower expert index.
void Model::route(int64_t l, const LayerWeights& L, int64_t T) {
  Workspace& ws = *ws_;
  const int64_t H = cfg_.hidden_size, E = cfg_.num_experts, K = cfg_.top_k_experts;
  const float eps = float(cfg_.rms_norm_eps), inv_sqrt_h = 1.0f / std::sqrt(float(H));
  for (int64_t t = 0; t < T; ++t) {
    float* a = &ws.a[size_t(t * H)];
    k::simd::rms_norm(&ws.h[size_t(t * H)], nullptr, H, eps, a);
    for (int64_t i = 0; i < H; ++i) a[i] = a[i] * L.router_scale[size_t(i)] * inv_sqrt_h;
  }
  if (observer_) observer_(l, "router.proj", -1, ws.a.data(), T, H);
  const MatmulTask router{&L.router_proj, ws.act_h.prepare(ws.a.data(), T, H, H, precision(), {&L.router_proj}),
                          ws.router.data(), E};
  k::matmul(std::span<const MatmulTask>(&router, 1), precision(), *pool_);  // [T, E]
  std::vector<int32_t>& idx = ws.exp_tok;  // scratch: E entries are enough here
  for (int64_t t = 0; t < T; ++t) {
    float* p = &ws.router[size_t(t * E)];
    k::softmax(p, E);
    std::iota(idx.begin(), idx.begin() + E, 0);
    std::partial_sort(idx.begin(), idx.begin() + K, idx.begin() + E, [p](int32_t x, int32_t y) {
      return p[x] != p[y] ? p[x] > p[y] : x < y;
    });
    float sum = 0;
    for (int64_t j = 0; j < K; ++j) sum += p[idx[size_t(j)]];
    for (int64_t j = 0; j < K; ++j) {
      const int32_t e = idx[size_t(j)];
      ws.top_idx[size_t(t * K + j)] = e;
      ws.top_w[size_t(t * K + j)] = p[e] / sum * L.per_expert_scale[size_t(e)];
    }
  }
}

// §5.2 step 13: Expert_e(u) = down_e(gelu_tanh(gate_e u) * up_e u) for every routed expert,
// over the tokens of this chunk that chose it. Each routed expert's weights are read once per
// chunk; all experts' gate/up run as one parallel job, then all downs.
void Model::experts(int64_t l, const LayerWeights& L, int64_t T) {
  Workspace& ws = *ws_;
  const int64_t H = cfg_.hidden_size, E = cfg_.num_experts, K = cfg_.top_k_experts;
  const int64_t Ie = cfg_.moe_intermediate_size;
  const float eps = float(cfg_.rms_norm_eps);
  for (int64_t t = 0; t < T; ++t)  // u = RMSNorm(h; pre_feedforward_layernorm_2)
    k::simd::rms_norm(&ws.h[size_t(t * H)], L.pre_feedforward_layernorm_2.data(), H, eps, &ws.a[size_t(t * H)]);
  std::fill(ws.exp_count.begin(), ws.exp_count.end(), 0);
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t j = 0; j < K; ++j) {
      const int32_t e = ws.top_idx[size_t(t * K + j)];
      const int32_t n = ws.exp_count[size_t(e)]++;
      ws.exp_tok[size_t(e * T + n)] = int32_t(t);
      ws.exp_w[size_t(e * T + n)] = ws.top_w[size_t(t * K + j)];
    }
  }
  const k::Activations u =
      ws.act_h.prepare(ws.a.data(), T, H, H, precision(), {&L.expert_gate.first, &L.expert_up.first});
  ws.tasks.clear();
  ws.views.clear();
  int64_t rows = 0;  // routed (expert, token) pairs so far: T*K in all
  for (int64_t e = 0; e < E; ++e) {
    const int64_t n = ws.exp_count[size_t(e)];
    if (n == 0) continue;
    ws.exp_base[size_t(e)] = int32_t(rows);
    if (observer_) {
      for (int64_t i = 0; i < n; ++i)
        std::copy_n(&ws.a[size_t(ws.exp_tok[size_t(e * T + i)] * H)], H, &ws.xe[size_t(i * H)]);
      observer_(l, "experts.gate_up", e, ws.xe.data(), n, H);
    }
    const k::Activations ue = u.rows(&ws.exp_tok[size_t(e * T)], n);
    ws.views.push_back(L.expert_gate.expert(e));
    ws.tasks.push_back({&ws.views.back(), ue, &ws.eg[size_t(rows * Ie)], Ie});
    ws.views.push_back(L.expert_up.expert(e));
    ws.tasks.push_back({&ws.views.back(), ue, &ws.eu[size_t(rows * Ie)], Ie});
    rows += n;
  }
  k::matmul(ws.tasks, precision(), *pool_);
  k::simd::gelu_gate(ws.eg.data(), ws.eu.data(), rows * Ie, ws.eg.data());

  const k::Activations g = ws.act_ff.prepare(ws.eg.data(), rows, Ie, Ie, precision(), {&L.expert_down.first});
  ws.tasks.clear();
  ws.views.clear();
  for (int64_t e = 0; e < E; ++e) {
    const int64_t n = ws.exp_count[size_t(e)];
    if (n == 0) continue;
    const int64_t base = ws.exp_base[size_t(e)];
    if (observer_) observer_(l, "experts.down", e, &ws.eg[size_t(base * Ie)], n, Ie);
    ws.views.push_back(L.expert_down.expert(e));
    ws.tasks.push_back({&ws.views.back(), g.slice(base, n), &ws.ye[size_t(base * H)], H});
  }
  k::matmul(ws.tasks, precision(), *pool_);

  std::fill(ws.m.begin(), ws.m.begin() + T * H, 0.0f);
  for (int64_t e = 0; e < E; ++e) {
    const int64_t n = ws.exp_count[size_t(e)];
    for (int64_t i = 0; i < n; ++i) {
      const int64_t t = ws.exp_tok[size_t(e * T + i)];
      const float wt = ws.exp_w[size_t(e * T + i)];
      float* m = &ws.m[size_t(t * H)];
      const float* y = &ws.ye[size_t((ws.exp_base[size_t(e)] + i) * H)];
      for (int64_t c = 0; c < H; ++c) m[c] += wt * y[c];
    }
  }
  for (int64_t t = 0; t < T; ++t) {
    float* m = &ws.m[size_t(t * H)];
    k::simd::rms_norm(m, L.post_feedforward_layernorm_2.data(), H, eps, m);
  }
}

}  // namespace mlxq::model::gemma4
