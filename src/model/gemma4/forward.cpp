// The Gemma-4 text forward pass, op by op in the order of gemma4-architecture.md §4-§5.
// Shapes: T tokens in this chunk, H hidden, D head dim of the layer, nq query heads, nkv KV
// heads, I dense intermediate, E experts, Ie expert intermediate, K experts per token.
// Activations are f32; the inputs of weight matmuls are also quantized to int8 in Fast precision
// (kernels/matmul.h). Matmuls that share an input run as one parallel job.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <numeric>

#include "core/error.h"
#include "kernels/kernels.h"
#include "kernels/matmul.h"
#include "kernels/vector_ops.h"
#include "model/gemma4/interleaved_file.h"
#include "model/gemma4/model.h"

namespace mlxq::model::gemma4 {

namespace k = kernels;
using k::MatmulTask;

// Every buffer the forward pass touches, sized once for max_chunk tokens.
struct Model::Workspace {
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
  std::vector<std::vector<float>> scores;  // per worker: attention scores
  std::vector<std::vector<float>> inv_freq;  // per layer: RoPE inverse frequencies
  std::vector<int> rope_slot;       // per layer: which table below holds its angles
  std::vector<int64_t> rope_layer;  // per table: a layer that uses it
  std::vector<std::vector<float>> rope_cos, rope_sin;  // per distinct inv_freq: [T, D/2]
  k::ActivationBuffer act_h;        // int8 form of [T, H] inputs
  k::ActivationBuffer act_wide;     // int8 form of [T, nq*D] attention output
  k::ActivationBuffer act_ff;       // int8 form of [T*K, max(I, Ie)] MLP / expert hidden
  std::vector<MatmulTask> tasks;    // one job's matmuls (capacity fixed at construction)
  std::vector<k::Matrix> views;     // expert matrices of the current job (same)
};

Model::Model(const std::string& path, ModelOptions opt) : opt_(opt) {
  check(opt_.max_chunk > 0, "max_chunk must be positive");
  ckpt_ = std::make_unique<io::Checkpoint>(path);
  cfg_ = load_config(ckpt_->dir().empty() ? "." : ckpt_->dir());
  w_ = bind_weights(*ckpt_, cfg_);
  attach_interleaved_file();
  pool_ = std::make_unique<ThreadPool>(opt_.threads);
  ws_ = std::make_unique<Workspace>();

  const int64_t T = opt_.max_chunk, H = cfg_.hidden_size, nq = cfg_.num_attention_heads;
  int64_t qmax = 0, kvmax = 0;
  for (int64_t l = 0; l < cfg_.num_hidden_layers; ++l) {
    qmax = std::max(qmax, nq * cfg_.layer_head_dim(l));
    kvmax = std::max(kvmax, cfg_.layer_kv_heads(l) * cfg_.layer_head_dim(l));
      ws_->inv_freq.push_back(cfg_.inv_freq(l));
    int slot = -1;
    for (int64_t j = 0; j < l && slot < 0; ++j)
      if (ws_->inv_freq[size_t(j)] == ws_->inv_freq.back()) slot = ws_->rope_slot[size_t(j)];
    if (slot < 0) {
      slot = int(ws_->rope_cos.size());
      ws_->rope_layer.push_back(l);
      ws_->rope_cos.emplace_back(size_t(T * (cfg_.layer_head_dim(l) / 2)));
      ws_->rope_sin.emplace_back(size_t(T * (cfg_.layer_head_dim(l) / 2)));
    }
    ws_->rope_slot.push_back(slot);
  }
  const int64_t imax = std::max(cfg_.intermediate_size, cfg_.moe_intermediate_size);
  const int64_t E = cfg_.num_experts, K = cfg_.top_k_experts;
  auto sz = [](int64_t n) { return size_t(n); };
  for (auto* v : {&ws_->x, &ws_->h, &ws_->a, &ws_->o, &ws_->m, &ws_->xe}) v->resize(sz(T * H));
  ws_->ye.resize(sz(T * K * H));
  ws_->eg.resize(sz(T * K * cfg_.moe_intermediate_size));
  ws_->eu.resize(sz(T * K * cfg_.moe_intermediate_size));
  ws_->exp_base.resize(sz(E));
  ws_->act_h.reserve(T, H);
  ws_->act_wide.reserve(T, qmax);
  ws_->act_ff.reserve(T * K, imax);
  ws_->tasks.reserve(sz(3 * E + 8));
  ws_->views.reserve(sz(3 * E + 8));
  ws_->q.resize(sz(T * qmax));
  ws_->attn.resize(sz(T * qmax));
  ws_->kr.resize(sz(T * kvmax));
  ws_->vr.resize(sz(T * kvmax));
  ws_->gate.resize(sz(T * imax));
  ws_->up.resize(sz(T * imax));
  ws_->router.resize(sz(T * E));
  ws_->top_idx.resize(sz(T * K));
  ws_->top_w.resize(sz(T * K));
  ws_->exp_count.resize(sz(E));
  ws_->exp_tok.resize(sz(E * T));
  ws_->exp_w.resize(sz(E * T));
  ws_->scores.resize(size_t(pool_->size()));
}

Model::~Model() = default;

// Only the AVX-512 int8 kernel reads the interleaved layout; Exact never does.
void Model::attach_interleaved_file() {
  if (opt_.interleaved == "off" || precision() == k::Precision::Exact || !k::il16_kernel_active()) return;
  const bool automatic = opt_.interleaved == "auto";
  const std::string path = automatic ? default_interleaved_path(*ckpt_) : opt_.interleaved;
  if (automatic && !std::filesystem::exists(path)) return;
  try {
    il_map_ = attach_interleaved(*ckpt_, w_, path);
    il_path_ = path;
  } catch (const Error& e) {
    if (!automatic) throw;
    std::fprintf(stderr, "mlxq: warning: %s; reading the checkpoint's own layout (run `mlxq repack` to rebuild it)\n",
                 e.what());
  }
}

void Model::forward(std::span<const int32_t> tokens, KvCache& cache, float* logits,
                    bool all_positions, int64_t chunk) {
  const int64_t n = int64_t(tokens.size());
  if (chunk <= 0 || chunk > opt_.max_chunk) chunk = opt_.max_chunk;
  check(cache.max_chunk() >= chunk, "KV cache was made for chunks of at most " +
                                        std::to_string(cache.max_chunk()) + " tokens");
  check(cache.pos() + n <= cache.max_context(),
        "context of " + std::to_string(cache.pos() + n) + " tokens exceeds the KV cache's " +
            "max_context of " + std::to_string(cache.max_context()));
  for (int64_t i = 0; i < n; ++i)
    check(tokens[size_t(i)] >= 0 && tokens[size_t(i)] < cfg_.vocab_size,
          "token id " + std::to_string(tokens[size_t(i)]) + " at position " + std::to_string(i) +
              " is outside the vocabulary [0, " + std::to_string(cfg_.vocab_size) + ")");
  const int64_t V = cfg_.vocab_size;
  for (int64_t s = 0; s < n; s += chunk) {
    const int64_t T = std::min(chunk, n - s);
    const bool last = s + T == n;
    float* out = nullptr;
    if (logits && all_positions) out = logits + s * V;
    if (logits && !all_positions && last) out = logits;
    forward_chunk(tokens.data() + s, T, cache, out, all_positions);
  }
}

// §4: x0 = E[ids] * bf16(sqrt(H)); the layers; final norm; tied lm_head; softcap.
void Model::forward_chunk(const int32_t* tokens, int64_t T, KvCache& cache, float* logits,
                          bool all) {
  Workspace& ws = *ws_;
  const int64_t H = cfg_.hidden_size, V = cfg_.vocab_size, p0 = cache.pos();
  const float scale = cfg_.embed_scale();
  for (int64_t t = 0; t < T; ++t) {
    float* xt = &ws.x[size_t(t * H)];
    w_.embed_tokens.row_f32(tokens[t], xt);
    for (int64_t i = 0; i < H; ++i) xt[i] *= scale;
  }
  rope_tables(T, p0);
  for (int64_t l = 0; l < cfg_.num_hidden_layers; ++l) decoder_layer(l, T, p0, cache);
  cache.advance(T);
  if (!logits) return;

  const int64_t first = all ? 0 : T - 1, rows = T - first;
  for (int64_t t = 0; t < rows; ++t)
    k::simd::rms_norm(&ws.x[size_t((first + t) * H)], w_.final_norm.data(), H, float(cfg_.rms_norm_eps),
                      &ws.a[size_t(t * H)]);
  const k::Activations a = ws.act_h.prepare(ws.a.data(), rows, H, H, precision(), {&w_.embed_tokens});
  const MatmulTask lm_head{&w_.embed_tokens, a, logits, V};  // [rows, V]
  k::matmul(std::span<const MatmulTask>(&lm_head, 1), precision(), *pool_);
  if (cfg_.final_logit_softcapping > 0) k::simd::softcap(logits, rows * V, float(cfg_.final_logit_softcapping));
}

// cos/sin of pos * inv_freq for this chunk's positions, once per distinct inv_freq (the sliding
// and the full layers), instead of once per head and layer.
void Model::rope_tables(int64_t T, int64_t p0) {
  Workspace& ws = *ws_;
  for (size_t slot = 0; slot < ws.rope_cos.size(); ++slot) {
    const std::vector<float>& inv = ws.inv_freq[size_t(ws.rope_layer[slot])];
    const int64_t half = int64_t(inv.size());
    for (int64_t t = 0; t < T; ++t)
      for (int64_t i = 0; i < half; ++i) {
        const float ang = float(p0 + t) * inv[size_t(i)];
        ws.rope_cos[slot][size_t(t * half + i)] = inv[size_t(i)] == 0.0f ? 1.0f : std::cos(ang);
        ws.rope_sin[slot][size_t(t * half + i)] = inv[size_t(i)] == 0.0f ? 0.0f : std::sin(ang);
      }
  }
}

// §5: attention block, then the dense MLP and the MoE in parallel, then layer_scalar.
void Model::decoder_layer(int64_t l, int64_t T, int64_t p0, KvCache& cache) {
  Workspace& ws = *ws_;
  const LayerWeights& L = w_.layers[size_t(l)];
  const int64_t H = cfg_.hidden_size;
  const float eps = float(cfg_.rms_norm_eps);

  attention_block(l, T, p0, cache);  // ws.h = x + post_attention_norm(attn(x))

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

// §5.1 steps 1-10.
void Model::attention_block(int64_t l, int64_t T, int64_t p0, KvCache& cache) {
  Workspace& ws = *ws_;
  const LayerWeights& L = w_.layers[size_t(l)];
  const int64_t H = cfg_.hidden_size, D = cfg_.layer_head_dim(l), nkv = cfg_.layer_kv_heads(l);
  const int64_t nq = cfg_.num_attention_heads, group = nq / nkv;
  const float eps = float(cfg_.rms_norm_eps);
  const bool sliding = cfg_.is_sliding(l);
  const std::vector<float>& rc = ws.rope_cos[size_t(ws.rope_slot[size_t(l)])];
  const std::vector<float>& rs = ws.rope_sin[size_t(ws.rope_slot[size_t(l)])];
  KvCache::Layer& C = cache.layer(l);

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
  for (int64_t t = 0; t < T; ++t) {
    const int64_t pos = p0 + t;
    const float* cs = &rc[size_t(t * (D / 2))];
    const float* sn = &rs[size_t(t * (D / 2))];
    for (int64_t hq = 0; hq < nq; ++hq) {  // 2: q = RoPE(RMSNorm_head(q; q_norm))
      float* q = &ws.q[size_t((t * nq + hq) * D)];
      k::simd::rms_norm(q, L.q_norm.data(), D, eps, q);
      k::simd::rope_neox(q, D, cs, sn);
    }
    const int64_t slot = pos % C.ring;
    for (int64_t hk = 0; hk < nkv; ++hk) {  // 5-7: cache k = RoPE(k_norm(kr)), v = v_norm(vr)
      const int64_t off = (t * nkv + hk) * D;
      float* kc = &C.k[size_t(slot * C.stride + hk * D)];
      float* vc = &C.v[size_t(slot * C.stride + hk * D)];
      k::simd::rms_norm(vr + off, nullptr, D, eps, vc);
      k::simd::rms_norm(&ws.kr[size_t(off)], L.k_norm.data(), D, eps, kc);
      k::simd::rope_neox(kc, D, cs, sn);
    }
  }
  // 8: softmax(q k^T * 1.0 + mask) v, per query head; head hq reads KV head hq / group. The
  // `group` heads of one KV head and up to kQueryBlock consecutive queries go together, so each
  // key/value row is read once per block instead of once per (query, head).
  constexpr int64_t kQueryBlock = 4;
  const int64_t nblk = (T + kQueryBlock - 1) / kQueryBlock;
  pool_->parallel_for(size_t(nblk * nkv), [&](size_t b, size_t e, int worker) {
    std::vector<float>& scores = ws.scores[size_t(worker)];
    const int64_t need = kQueryBlock * group * (C.ring + kQueryBlock);
    if (int64_t(scores.size()) < need) scores.resize(size_t(need));  // once per worker
    for (size_t i = b; i < e; ++i) {
      const int64_t t0 = int64_t(i) / nkv * kQueryBlock, hk = int64_t(i) % nkv, hq = hk * group;
      const int64_t qb = std::min(kQueryBlock, T - t0);
      int64_t begin[kQueryBlock], end[kQueryBlock];
      for (int64_t j = 0; j < qb; ++j) {
        const int64_t pos = p0 + t0 + j;
        begin[j] = sliding ? std::max<int64_t>(0, pos - cfg_.sliding_window + 1) : 0;
        end[j] = pos + 1;
      }
      k::simd::attend_block(&ws.q[size_t((t0 * nq + hq) * D)], nq * D, D, qb, group, D, C.k.data() + hk * D,
                            C.v.data() + hk * D, C.stride, C.ring, begin, end, 1.0f, scores.data(),
                            &ws.attn[size_t((t0 * nq + hq) * D)], nq * D, D);
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

uint64_t Model::bytes_per_token() const {
  uint64_t n = w_.embed_tokens.bytes();  // the tied lm_head reads it all
  for (const auto& L : w_.layers) {
    for (const k::Matrix* m : {&L.q_proj, &L.k_proj, &L.v_proj, &L.o_proj, &L.mlp_gate,
                               &L.mlp_up, &L.mlp_down, &L.router_proj})
      n += m->bytes();
    const uint64_t per_expert = L.expert_gate.first.bytes() + L.expert_up.first.bytes() +
                                L.expert_down.first.bytes();
    n += per_expert * uint64_t(cfg_.top_k_experts);
  }
  return n;
}

}  // namespace mlxq::model::gemma4
