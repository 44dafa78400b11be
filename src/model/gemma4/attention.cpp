// The attention block of a Gemma-4 decoder layer, gemma4-architecture.md §5.1 steps 1-10, and
// the RoPE angle tables it reads. Shapes: T rows in the chunk (one or more sequences), H hidden,
// D head dim of the layer, nq query heads, nkv KV heads. Each row's keys and values go into its
// own sequence's cache, and its query attends only to that cache.
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

// cos/sin of pos * inv_freq for this chunk's positions, once per distinct inv_freq (the sliding
// and the full layers), instead of once per head and layer.
void Model::rope_tables(int64_t T) {
  Workspace& ws = *ws_;
  for (size_t slot = 0; slot < ws.rope_cos.size(); ++slot) {
    const std::vector<float>& inv = ws.inv_freq[size_t(ws.rope_layer[slot])];
    const int64_t half = int64_t(inv.size());
    for (int64_t t = 0; t < T; ++t)
      for (int64_t i = 0; i < half; ++i) {
        const float ang = float(ws.pos[size_t(t)]) * inv[size_t(i)];
        ws.rope_cos[slot][size_t(t * half + i)] = inv[size_t(i)] == 0.0f ? 1.0f : std::cos(ang);
        ws.rope_sin[slot][size_t(t * half + i)] = inv[size_t(i)] == 0.0f ? 0.0f : std::sin(ang);
      }
  }
}

// §5.1 steps 1-10.
void Model::attention_block(int64_t l, int64_t T) {
  Workspace& ws = *ws_;
  const LayerWeights& L = w_.layers[size_t(l)];
  const int64_t H = cfg_.hidden_size, D = cfg_.layer_head_dim(l), nkv = cfg_.layer_kv_heads(l);
  const int64_t nq = cfg_.num_attention_heads, group = nq / nkv;
  const float eps = float(cfg_.rms_norm_eps);
  const bool sliding = cfg_.is_sliding(l);
  const std::vector<float>& rc = ws.rope_cos[size_t(ws.rope_slot[size_t(l)])];
  const std::vector<float>& rs = ws.rope_sin[size_t(ws.rope_slot[size_t(l)])];

  for (int64_t t = 0; t < T; ++t)  // 1: a = RMSNorm(x; input_layernorm)
    k::simd::rms_norm(&ws.x[size_t(t * H)], L.input_layernorm.data(), H, eps, &ws.a[size_t(t * H)]);
  if (observer_) {
    observer_(l, "self_attn.q_proj", -1, ws.a.data(), T, H);
    observer_(l, "self_attn.k_proj", -1, ws.a.data(), T, H);
    if (L.v_proj.rows > 0) observer_(l, "self_attn.v_proj", -1, ws.a.data(), T, H);
  }
  const k::Activations a =
      ws.act_h.prepare(ws.a.data(), T, H, H, precision(),
                       {&L.q_proj, &L.k_proj, L.v_proj.rows > 0 ? &L.v_proj : &L.k_proj});
  ws.tasks.clear();
  ws.tasks.push_back({&L.q_proj, a, ws.q.data(), nq * D});     // 2: [T, nq*D]
  ws.tasks.push_back({&L.k_proj, a, ws.kr.data(), nkv * D});   // 3: [T, nkv*D]
  const float* vr = ws.kr.data();                              // 4: K=V on full layers
  if (L.v_proj.rows > 0) {
    ws.tasks.push_back({&L.v_proj, a, ws.vr.data(), nkv * D});
    vr = ws.vr.data();
  }
  k::matmul(ws.tasks, precision(), *pool_);
  for (const Segment& g : ws.segs) {
    KvCache::Layer& C = g.cache->layer(l);
    for (int64_t t = g.row0; t < g.row0 + g.T; ++t) {
      const float* cs = &rc[size_t(t * (D / 2))];
      const float* sn = &rs[size_t(t * (D / 2))];
      for (int64_t hq = 0; hq < nq; ++hq) {  // 2: q = RoPE(RMSNorm_head(q; q_norm))
        float* q = &ws.q[size_t((t * nq + hq) * D)];
        k::simd::rms_norm(q, L.q_norm.data(), D, eps, q);
        k::simd::rope_neox(q, D, cs, sn);
      }
      const int64_t slot = ws.pos[size_t(t)] % C.ring;
      for (int64_t hk = 0; hk < nkv; ++hk) {  // 5-7: cache k = RoPE(k_norm(kr)), v = v_norm(vr)
        const int64_t off = (t * nkv + hk) * D;
        float* kc = &C.k[size_t(slot * C.stride + hk * D)];
        float* vc = &C.v[size_t(slot * C.stride + hk * D)];
        k::simd::rms_norm(vr + off, nullptr, D, eps, vc);
        k::simd::rms_norm(&ws.kr[size_t(off)], L.k_norm.data(), D, eps, kc);
        k::simd::rope_neox(kc, D, cs, sn);
      }
    }
  }
  // 8: softmax(q k^T * 1.0 + mask) v, per query head; head hq reads KV head hq / group. The
  // `group` heads of one KV head and up to kQueryBlock consecutive queries of one sequence go
  // together, so each key/value row is read once per block instead of once per (query, head).
  constexpr int64_t kQueryBlock = 4;
  ws.qblocks.clear();
  for (size_t s = 0; s < ws.segs.size(); ++s)
    for (int64_t t0 = 0; t0 < ws.segs[s].T; t0 += kQueryBlock)
      ws.qblocks.push_back({int64_t(s), ws.segs[s].row0 + t0, std::min(kQueryBlock, ws.segs[s].T - t0)});
  pool_->parallel_for(ws.qblocks.size() * size_t(nkv), [&](size_t b, size_t e, int worker) {
    std::vector<float>& scores = ws.scores[size_t(worker)];
    for (size_t i = b; i < e; ++i) {
      const Workspace::QueryBlock& blk = ws.qblocks[i / size_t(nkv)];
      const KvCache::Layer& C = ws.segs[size_t(blk.seg)].cache->layer(l);
      const int64_t need = kQueryBlock * group * (C.ring + kQueryBlock);
      if (int64_t(scores.size()) < need) scores.resize(size_t(need));  // rarely: once per worker
      const int64_t hk = int64_t(i % size_t(nkv)), hq = hk * group;
      int64_t begin[kQueryBlock], end[kQueryBlock];
      for (int64_t j = 0; j < blk.n; ++j) {  // causal (and in the window), or in the row's image run (§10.5)
        const int64_t pos = ws.pos[size_t(blk.t0 + j)];
        begin[j] = sliding ? std::max<int64_t>(0, pos - cfg_.sliding_window + 1) : 0;
        begin[j] = std::min(begin[j], ws.run_begin[size_t(blk.t0 + j)]);
        end[j] = std::max(pos + 1, ws.run_end[size_t(blk.t0 + j)]);
      }
      k::simd::AttendBlock ab;
      ab.q = &ws.q[size_t((blk.t0 * nq + hq) * D)];
      ab.q_token = nq * D;
      ab.q_head = D;
      ab.queries = blk.n;
      ab.heads = group;
      ab.d = D;
      ab.k = C.k.data() + hk * D;
      ab.v = C.v.data() + hk * D;
      ab.kv_stride = C.stride;
      ab.ring = C.ring;
      ab.begin = begin;
      ab.end = end;
      ab.scale = 1.0f;  // the attention scale is 1.0 (§5.1 step 8)
      ab.scores = scores.data();
      ab.out = &ws.attn[size_t((blk.t0 * nq + hq) * D)];
      ab.out_token = nq * D;
      ab.out_head = D;
      k::simd::attend_block(ab);
    }
  });
  if (observer_) observer_(l, "self_attn.o_proj", -1, ws.attn.data(), T, nq * D);
  const MatmulTask o_proj{&L.o_proj, ws.act_wide.prepare(ws.attn.data(), T, nq * D, nq * D, precision(), {&L.o_proj}),
                          ws.o.data(), H};  // 9: [T, H]
  k::matmul(std::span<const MatmulTask>(&o_proj, 1), precision(), *pool_);
  for (int64_t t = 0; t < T; ++t) {  // 9-10: h = x + RMSNorm(o; post_attention_layernorm)
    float* o = &ws.o[size_t(t * H)];
    k::simd::rms_norm(o, L.post_attention_layernorm.data(), H, eps, o);
    const float* x = &ws.x[size_t(t * H)];
    float* h = &ws.h[size_t(t * H)];
    for (int64_t i = 0; i < H; ++i) h[i] = x[i] + o[i];
  }
}

}  // namespace mlxq::model::gemma4
