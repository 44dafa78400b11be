// The Gemma-4 vision tower, gemma4-architecture.md §10: an image's pixels at their target size
// become patches (§10.2), the encoder runs over them (§10.3), and 3x3 pooling, the sqrt(hidden)
// scale, standardize, a weight-free RMSNorm and the projection make the soft tokens the text
// decoder reads in place of the image placeholders (§10.4). Decoding and resizing the image file
// are the io floor's (io/image.h); this file starts from RGB pixels at the target size.
#pragma once
#include <cstdint>
#include <utility>
#include <vector>

#include "core/thread_pool.h"
#include "io/safetensors.h"
#include "kernels/matmul.h"
#include "model/gemma4/config.h"
#include "model/gemma4/weights.h"

namespace mlxq::model::gemma4 {

// The soft-token budgets of §10.2 (the processor's max_soft_tokens).
inline constexpr int64_t kVisionBudgets[] = {70, 140, 280, 560, 1120};
bool valid_vision_budget(int64_t budget);

// §10.2 step 2: the aspect-preserving target (width, height) of a w x h image for a soft-token
// budget: multiples of patch x pool (48), about budget x 9 patches. Throws Error when the image is
// too thin to hold one row of soft tokens.
std::pair<int64_t, int64_t> vision_target_size(int64_t w, int64_t h, int64_t budget, const VisionConfig& v);

// One image ready for the tower: the patch grid and each patch's pixel values.
struct VisionImage {
  int64_t pw = 0, ph = 0;      // patch columns, rows (multiples of the pooling kernel)
  std::vector<float> patches;  // [ph * pw, 3 * patch^2]: patch i = y * pw + x; (row, col, channel); in [0, 1]
  int64_t soft_tokens(const VisionConfig& v) const {
    return (ph / v.pooling_kernel_size) * (pw / v.pooling_kernel_size);
  }
};

// §10.2 steps 3-5: 8-bit RGB pixels (row-major, w x h, both multiples of patch x pool) rescaled
// to [0, 1] and cut into patches.
VisionImage patchify(const uint8_t* rgb, int64_t w, int64_t h, const VisionConfig& v);

class VisionTower {
 public:
  // Binds the tower's tensors from `ckpt` (which may hold nothing else). `pool` must outlive it.
  VisionTower(const io::Checkpoint& ckpt, const Gemma4Config& cfg, ThreadPool& pool, kernels::Precision p);

  const VisionConfig& config() const { return v_; }
  // The soft tokens of one image: [img.soft_tokens(), text hidden_size] f32, row t = token t
  // (row-major over the pooled grid).
  std::vector<float> embed(const VisionImage& img);

  // Intermediates of the last embed() (for checks against goldens): the patch embedding
  // [N, Hv], the encoder output [N, Hv], the pooled x sqrt(Hv) [S, Hv], the standardized [S, Hv].
  struct Trace {
    std::vector<float> patch_embd, encoder_out, pooled, standardized;
  };
  void set_trace(Trace* t) { trace_ = t; }

 private:
  void encoder_layer(const VisionLayerWeights& L, int64_t N);
  void attention(int64_t N);
  void matmul(const kernels::Matrix& w, const float* x, int64_t T, float* y);

  VisionConfig v_;
  int64_t text_hidden_ = 0;
  VisionWeights w_;
  ThreadPool& pool_;
  kernels::Precision prec_;
  Trace* trace_ = nullptr;
  // Per image: residual, normalised input, q/k/v, attention output, MLP buffers, RoPE tables.
  std::vector<float> h_, a_, q_, k_, v_buf_, attn_, o_, gate_, up_;
  std::vector<float> cos_x_, sin_x_, cos_y_, sin_y_;  // [N, head_dim / 4]
  std::vector<float> kt_, vp_;                      // a head's K^T [hd, N] and V [N, hd padded]
  std::vector<std::vector<float>> scores_, outs_;   // per worker: a query block's scores, outputs
  kernels::ActivationBuffer act_;
};

}  // namespace mlxq::model::gemma4
