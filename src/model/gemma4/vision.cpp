// The vision tower's forward pass, gemma4-architecture.md §10.2-§10.4, in the order of the spec:
// target size and patches (§10.2), patch embedding with the learned x and y position tables, the
// encoder layers with sandwich norms, per-head q/k norms, a weight-free v norm, 2-D RoPE and
// bidirectional attention at scale 1, the gated GELU-tanh MLP (§10.3), then pooling, scale,
// standardize, RMSNorm and projection (§10.4). Shapes: N patches, Hv vision width, Iv MLP width,
// nh heads of hd, S soft tokens, H text width. Activations are f32; the matmuls go through the
// text path's kernels (kernels/matmul.h) in the model's precision.
#include "model/gemma4/vision.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "kernels/kernels.h"
#include "kernels/vector_ops.h"

namespace mlxq::model::gemma4 {

namespace k = kernels;

bool valid_vision_budget(int64_t budget) {
  return std::find(std::begin(kVisionBudgets), std::end(kVisionBudgets), budget) != std::end(kVisionBudgets);
}

// §10.2 step 2.
std::pair<int64_t, int64_t> vision_target_size(int64_t w, int64_t h, int64_t budget, const VisionConfig& v) {
  check(w > 0 && h > 0, "image size " + std::to_string(w) + " x " + std::to_string(h) + " is empty");
  check(budget > 0, "soft-token budget " + std::to_string(budget) + " must be positive");
  const int64_t m = v.patch_size * v.pooling_kernel_size;
  const double max_patches = double(budget) * double(v.pooling_kernel_size * v.pooling_kernel_size);
  const double target_px = max_patches * double(v.patch_size * v.patch_size);
  const double f = std::sqrt(target_px / (double(h) * double(w)));
  int64_t ht = int64_t(std::floor(f * double(h) / double(m))) * m;
  int64_t wt = int64_t(std::floor(f * double(w) / double(m))) * m;
  check(ht > 0 || wt > 0, "image size " + std::to_string(w) + " x " + std::to_string(h) +
                              " gives no soft tokens at a budget of " + std::to_string(budget));
  if (ht == 0) {
    ht = m;
    wt = std::min(int64_t(std::floor(double(w) / double(h))) * m, budget * m);
  } else if (wt == 0) {
    wt = m;
    ht = std::min(int64_t(std::floor(double(h) / double(w))) * m, budget * m);
  }
  return {wt, ht};
}

// §10.2 steps 3-5.
VisionImage patchify(const uint8_t* rgb, int64_t w, int64_t h, const VisionConfig& v) {
  const int64_t P = v.patch_size, m = P * v.pooling_kernel_size;
  check(w > 0 && h > 0 && w % m == 0 && h % m == 0,
        "patchify: image size " + std::to_string(w) + " x " + std::to_string(h) + " is not a multiple of " +
            std::to_string(m) + " (resize it to vision_target_size first)");
  VisionImage img;
  img.pw = w / P;
  img.ph = h / P;
  const int64_t D = v.patch_dim();
  img.patches.resize(size_t(img.pw * img.ph * D));
  for (int64_t py = 0; py < img.ph; ++py)
    for (int64_t px = 0; px < img.pw; ++px) {
      float* out = &img.patches[size_t((py * img.pw + px) * D)];
      for (int64_t r = 0; r < P; ++r)
        for (int64_t c = 0; c < P; ++c)
          for (int64_t ch = 0; ch < 3; ++ch)
            *out++ = float(rgb[size_t(((py * P + r) * w + px * P + c) * 3 + ch)]) * (1.0f / 255.0f);
    }
  return img;
}

VisionTower::VisionTower(const io::Checkpoint& ckpt, const Gemma4Config& cfg, ThreadPool& pool, k::Precision p)
    : text_hidden_(cfg.hidden_size), w_(bind_vision_weights(ckpt, cfg)), pool_(pool), prec_(p) {
  v_ = *cfg.vision;
}

void VisionTower::matmul(const k::Matrix& w, const float* x, int64_t T, float* y) {
  k::matmul(w, x, T, w.cols, y, w.rows, pool_, prec_);
}

std::vector<float> VisionTower::embed(const VisionImage& img) {
  const int64_t Hv = v_.hidden_size, D = v_.patch_dim(), N = img.pw * img.ph, pool_k = v_.pooling_kernel_size;
  check(N > 0 && int64_t(img.patches.size()) == N * D && img.pw % pool_k == 0 && img.ph % pool_k == 0,
        "vision: the image's patches do not match its " + std::to_string(img.pw) + " x " + std::to_string(img.ph) +
            " grid");
  check(img.pw <= v_.position_embedding_size && img.ph <= v_.position_embedding_size,
        "vision: a patch grid of " + std::to_string(img.pw) + " x " + std::to_string(img.ph) +
            " is beyond the position table (" + std::to_string(v_.position_embedding_size) + " per axis)");
  for (auto* b : {&h_, &a_, &q_, &k_, &v_buf_, &attn_, &o_}) b->resize(size_t(N * Hv));

  // Patch embedding: input_proj(2 (p - 0.5)) + T[0][x] + T[1][y].
  std::vector<float> px(img.patches.size());
  for (size_t i = 0; i < px.size(); ++i) px[i] = 2.0f * (img.patches[i] - 0.5f);
  matmul(w_.input_proj, px.data(), N, h_.data());
  std::vector<float> row(static_cast<size_t>(Hv));
  const k::Matrix tx = w_.position_table.expert(0), ty = w_.position_table.expert(1);
  for (int64_t i = 0; i < N; ++i) {
    float* h = &h_[size_t(i * Hv)];
    tx.row_f32(i % img.pw, row.data());
    for (int64_t c = 0; c < Hv; ++c) h[c] += row[size_t(c)];
    ty.row_f32(i / img.pw, row.data());
    for (int64_t c = 0; c < Hv; ++c) h[c] += row[size_t(c)];
  }
  if (trace_) trace_->patch_embd = h_;

  // 2-D RoPE tables: each head's first half rotates by the column, the second by the row, NEOX
  // pairs (i, i + hd/4) with inv_freq_i = theta^(-2i / (hd/2)).
  const int64_t quarter = v_.head_dim / 4;
  for (auto* t : {&cos_x_, &sin_x_, &cos_y_, &sin_y_}) t->resize(size_t(N * quarter));
  for (int64_t i = 0; i < N; ++i)
    for (int64_t j = 0; j < quarter; ++j) {
      const double inv = 1.0 / std::pow(v_.rope_theta, double(2 * j) / double(v_.head_dim / 2));
      const double ax = double(i % img.pw) * inv, ay = double(i / img.pw) * inv;
      cos_x_[size_t(i * quarter + j)] = float(std::cos(ax));
      sin_x_[size_t(i * quarter + j)] = float(std::sin(ax));
      cos_y_[size_t(i * quarter + j)] = float(std::cos(ay));
      sin_y_[size_t(i * quarter + j)] = float(std::sin(ay));
    }

  for (const VisionLayerWeights& L : w_.layers) encoder_layer(L, N);
  if (trace_) trace_->encoder_out = h_;

  // §10.4: 3x3 mean by position, x sqrt(Hv), standardize, weight-free RMSNorm, projection.
  const int64_t sw = img.pw / pool_k, sh = img.ph / pool_k, S = sw * sh;
  std::vector<float> pooled(size_t(S * Hv), 0.0f);
  for (int64_t i = 0; i < N; ++i) {
    const int64_t x = i % img.pw, y = i / img.pw, t = (y / pool_k) * sw + x / pool_k;
    const float* h = &h_[size_t(i * Hv)];
    float* out = &pooled[size_t(t * Hv)];
    for (int64_t c = 0; c < Hv; ++c) out[c] += h[c];
  }
  const float scale = float(std::sqrt(double(Hv))) / float(pool_k * pool_k);
  for (float& x : pooled) x *= scale;
  if (trace_) trace_->pooled = pooled;
  if (v_.standardize)
    for (int64_t t = 0; t < S; ++t)
      for (int64_t c = 0; c < Hv; ++c) {
        float& x = pooled[size_t(t * Hv + c)];
        x = (x - w_.std_bias[size_t(c)]) * w_.std_scale[size_t(c)];
      }
  if (trace_) trace_->standardized = pooled;
  for (int64_t t = 0; t < S; ++t) {
    float* x = &pooled[size_t(t * Hv)];
    k::simd::rms_norm(x, nullptr, Hv, float(v_.rms_norm_eps), x);
  }
  std::vector<float> out(size_t(S * text_hidden_));
  matmul(w_.embedding_projection, pooled.data(), S, out.data());
  return out;
}

// Bidirectional attention over all N patches at scale 1 (§10.3), one head at a time: K
// transposed and V padded to 32 columns once per head, then each worker takes blocks of 64
// queries: scores against every key, a softmax per row, the weighted values
// (kernels::simd::scores_kt / weighted_values: register tiles, no horizontal sums). Quadratic in
// N: 10,080 patches at the 1120 budget.
void VisionTower::attention(int64_t N) {
  const int64_t Hv = v_.hidden_size, nh = v_.num_attention_heads, hd = v_.head_dim;
  const int64_t dp = (hd + 31) / 32 * 32;
  constexpr int64_t kBlock = 64;
  kt_.resize(size_t(hd * N));
  vp_.assign(size_t(N * dp), 0.0f);
  scores_.resize(size_t(pool_.size()));
  outs_.resize(size_t(pool_.size()));
  for (int64_t h = 0; h < nh; ++h) {
    pool_.parallel_for(size_t(N), [&](size_t b, size_t e, int) {
      for (size_t j = b; j < e; ++j)
        for (int64_t c = 0; c < hd; ++c) {
          kt_[size_t(c * N) + j] = k_[j * size_t(Hv) + size_t(h * hd + c)];
          vp_[j * size_t(dp) + size_t(c)] = v_buf_[j * size_t(Hv) + size_t(h * hd + c)];
        }
    });
    const int64_t blocks = (N + kBlock - 1) / kBlock;
    pool_.parallel_for(size_t(blocks), [&](size_t b, size_t e, int worker) {
      std::vector<float>& sc = scores_[size_t(worker)];
      std::vector<float>& out = outs_[size_t(worker)];
      sc.resize(size_t(kBlock * N));
      out.resize(size_t(kBlock * dp));
      for (size_t blk = b; blk < e; ++blk) {
        const int64_t t0 = int64_t(blk) * kBlock, n = std::min(kBlock, N - t0);
        k::simd::scores_kt(&q_[size_t(t0 * Hv + h * hd)], Hv, n, kt_.data(), N, N, hd, 1.0f, sc.data(), N);
        for (int64_t i = 0; i < n; ++i) k::simd::softmax(&sc[size_t(i * N)], N);
        k::simd::weighted_values(sc.data(), N, n, vp_.data(), dp, N, dp, out.data(), dp);
        for (int64_t i = 0; i < n; ++i)
          std::copy_n(&out[size_t(i * dp)], hd, &attn_[size_t((t0 + i) * Hv + h * hd)]);
      }
    });
  }
}

// §10.3: h += post_attention_norm(attn(input_norm(h))); h += post_ffw_norm(mlp(pre_ffw_norm(h))).
void VisionTower::encoder_layer(const VisionLayerWeights& L, int64_t N) {
  const int64_t Hv = v_.hidden_size, Iv = v_.intermediate_size, nh = v_.num_attention_heads, hd = v_.head_dim;
  const float eps = float(v_.rms_norm_eps);
  for (int64_t i = 0; i < N; ++i)
    k::simd::rms_norm(&h_[size_t(i * Hv)], L.input_layernorm.data(), Hv, eps, &a_[size_t(i * Hv)]);
  matmul(L.q_proj, a_.data(), N, q_.data());
  matmul(L.k_proj, a_.data(), N, k_.data());
  matmul(L.v_proj, a_.data(), N, v_buf_.data());
  const int64_t quarter = hd / 4;
  pool_.parallel_for(size_t(N), [&](size_t b, size_t e, int) {
    for (size_t i = b; i < e; ++i)
      for (int64_t hh = 0; hh < nh; ++hh) {
        const size_t off = i * size_t(Hv) + size_t(hh * hd);
        float* q = &q_[off];
        float* kk = &k_[off];
        k::simd::rms_norm(q, L.q_norm.data(), hd, eps, q);
        k::simd::rms_norm(kk, L.k_norm.data(), hd, eps, kk);
        k::simd::rms_norm(&v_buf_[off], nullptr, hd, eps, &v_buf_[off]);
        const size_t r = i * size_t(quarter);
        for (float* x : {q, kk}) {
          k::simd::rope_neox(x, hd / 2, &cos_x_[r], &sin_x_[r]);
          k::simd::rope_neox(x + hd / 2, hd / 2, &cos_y_[r], &sin_y_[r]);
        }
      }
  });
  attention(N);
  matmul(L.o_proj, attn_.data(), N, o_.data());
  for (int64_t i = 0; i < N; ++i) {
    float* o = &o_[size_t(i * Hv)];
    k::simd::rms_norm(o, L.post_attention_layernorm.data(), Hv, eps, o);
    float* h = &h_[size_t(i * Hv)];
    for (int64_t c = 0; c < Hv; ++c) h[c] += o[c];
  }
  // MLP in row chunks (its [rows, Iv] buffers stay small for a 10k-patch image).
  constexpr int64_t kRows = 512;
  gate_.resize(size_t(std::min(N, kRows) * Iv));
  up_.resize(gate_.size());
  for (int64_t i = 0; i < N; ++i)
    k::simd::rms_norm(&h_[size_t(i * Hv)], L.pre_feedforward_layernorm.data(), Hv, eps, &a_[size_t(i * Hv)]);
  for (int64_t r0 = 0; r0 < N; r0 += kRows) {
    const int64_t n = std::min(kRows, N - r0);
    matmul(L.gate_proj, &a_[size_t(r0 * Hv)], n, gate_.data());
    matmul(L.up_proj, &a_[size_t(r0 * Hv)], n, up_.data());
    k::simd::gelu_gate(gate_.data(), up_.data(), n * Iv, gate_.data());
    matmul(L.down_proj, gate_.data(), n, &o_[size_t(r0 * Hv)]);
  }
  for (int64_t i = 0; i < N; ++i) {
    float* o = &o_[size_t(i * Hv)];
    k::simd::rms_norm(o, L.post_feedforward_layernorm.data(), Hv, eps, o);
    float* h = &h_[size_t(i * Hv)];
    for (int64_t c = 0; c < Hv; ++c) h[c] += o[c];
  }
}

}  // namespace mlxq::model::gemma4
