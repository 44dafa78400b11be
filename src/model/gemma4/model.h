// Model: an opened Gemma-4 checkpoint (mapped files, validated config, bound weights) plus the
// engine-owned thread pool and workspace. forward() is the text decoder of
// gemma4-architecture.md §4-§7 over one sequence, forward_batch() over several sequences at once
// (each with its own KV cache and positions). The body reads like the spec: forward.cpp (the
// layer stack, dense MLP), attention.cpp (§5.1), moe.cpp (router and experts, §5.2). Not thread
// safe: one forward at a time (the engine's scheduler orders the sessions' calls).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/mapped_file.h"
#include "core/thread_pool.h"
#include "io/safetensors.h"
#include "kernels/matmul.h"
#include "model/gemma4/config.h"
#include "model/gemma4/kv_cache.h"
#include "model/gemma4/weights.h"

namespace mlxq::model::gemma4 {

struct ModelOptions {
  int threads = 0;           // 0: all hardware threads
  int64_t max_chunk = 256;   // tokens per prefill step (the workspace is sized for it)
  // Exact: f32 activations everywhere (the golden-logit path). Fast (default): the inputs of
  // quantized matmuls are two int8 parts, those of bf16 matmuls two bf16 parts. int8: one int8
  // part and one bf16 part (faster prefill, further from Exact). See kernels/matmul.h; the KV
  // cache is f32 in all three.
  bool exact = false;
  bool int8 = false;
  // The interleaved weights file (interleaved_file.h) for Fast and Int8 on AVX-512 VNNI CPUs:
  // "auto" uses <checkpoint dir>/mlxq-interleaved.bin when it exists and matches the checkpoint
  // (otherwise warns and reads the checkpoint's layout), "off" never, anything else is a path
  // that must exist and match.
  std::string interleaved = "auto";
  // The longest image run (soft tokens of one image) a prefill step must hold whole, since an
  // image's tokens attend to each other both ways (§10.5): the workspace and the caches take
  // max(max_chunk, this) rows. 0: the config's vision_soft_tokens_per_image when the checkpoint
  // has a vision tower, else none.
  int64_t max_image_tokens = 0;
};

// One sequence's part of a batched forward.
struct SequenceStep {
  std::span<const int32_t> tokens;  // fed at positions cache->pos() onwards
  KvCache* cache = nullptr;         // this sequence's own cache (each at most once per batch)
  float* logits = nullptr;          // null, or [T, vocab] (all_positions) or [1, vocab] (the last)
  bool all_positions = false;
  // Images (gemma4-architecture.md §10.5): [n, hidden] soft tokens for the n image placeholders
  // (config image_token_id) of `tokens`, in order; they replace those rows' embeddings unscaled,
  // and each contiguous run of placeholders attends to itself in both directions. A run is never
  // split across prefill chunks. Null: placeholders are embedded as text.
  const float* image_embeddings = nullptr;
};

class VisionTower;

class Model {
 public:
  explicit Model(const std::string& path, ModelOptions opt = {});
  ~Model();

  const Gemma4Config& config() const { return cfg_; }
  const Gemma4Weights& weights() const { return w_; }
  const io::Checkpoint& checkpoint() const { return *ckpt_; }
  ThreadPool& pool() { return *pool_; }
  kernels::Precision precision() const {
    return opt_.exact ? kernels::Precision::Exact : opt_.int8 ? kernels::Precision::Int8 : kernels::Precision::Fast;
  }
  int64_t max_chunk() const { return opt_.max_chunk; }
  int64_t max_image_tokens() const { return image_run_cap_; }
  // The vision tower (vision.h) on the model's thread pool and precision, when config.json has a
  // vision_config and the checkpoint its tensors; otherwise throws Error saying which is missing.
  // Not thread safe, like forward(): callers take turns with the forward passes.
  bool has_vision() const { return vision_ != nullptr; }
  VisionTower& vision();
  // The interleaved weights file in use, or "" when the matmuls read the checkpoint's layout.
  const std::string& interleaved_path() const { return il_path_; }

  KvCache make_cache(int64_t max_context, int64_t rollback = 0) const {
    return KvCache(cfg_, max_context, std::max(opt_.max_chunk, image_run_cap_), rollback);
  }

  // Feeds `tokens` at positions cache.pos() onwards, in steps of at most `chunk` tokens
  // (0: max_chunk), and appends them to the cache. When `logits` is non-null it receives
  // [T, vocab] f32 logits for every position, or [1, vocab] for the last one if !all_positions.
  void forward(std::span<const int32_t> tokens, KvCache& cache, float* logits,
               bool all_positions = true, int64_t chunk = 0);
  // Runs several sequences as one batch: their rows go through every matmul together, each
  // attending only to its own cache. Steps take at most `chunk` (0: max_chunk) rows in all, filled
  // from the sequences in order. Each sequence's logits equal those of forward() alone (bit for
  // bit in Exact precision).
  void forward_batch(std::span<const SequenceStep> seqs, int64_t chunk = 0);

  // Sees the input rows x[n, k] of every weight matmul, for importance statistics (`mlxq
  // imatrix`): the layer, the module ("self_attn.q_proj", "mlp.down_proj", "router.proj",
  // "experts.gate_up", "experts.down", ...) and the expert (-1 for dense weights).
  using MatmulObserver = std::function<void(int64_t layer, const char* module, int64_t expert, const float* x,
                                            int64_t n, int64_t k)>;
  void set_observer(MatmulObserver observer) { observer_ = std::move(observer); }

  // Bytes of weights one decoded token reads (all dense weights, top_k of num_experts experts,
  // the full lm_head; the embedding lookup reads one row).
  uint64_t bytes_per_token() const;

 private:
  struct Workspace;
  void attach_interleaved_file();
  void forward_chunk(int64_t T);  // the rows of ws_->segs
  void rope_tables(int64_t T);
  void decoder_layer(int64_t l, int64_t T);
  void attention_block(int64_t l, int64_t T);
  void lm_head(int64_t T);
  void dense_mlp(int64_t l, const LayerWeights& L, int64_t T);
  void route(int64_t l, const LayerWeights& L, int64_t T);
  void experts(int64_t l, const LayerWeights& L, int64_t T);

  ModelOptions opt_;
  std::unique_ptr<io::Checkpoint> ckpt_;
  Gemma4Config cfg_;
  Gemma4Weights w_;
  std::unique_ptr<MappedFile> il_map_;  // the interleaved copies w_'s matrices point into
  std::string il_path_;
  int64_t image_run_cap_ = 0;  // rows a step may take for one image run
  std::unique_ptr<ThreadPool> pool_;
  std::unique_ptr<VisionTower> vision_;
  std::string no_vision_;  // why vision_ is null
  std::unique_ptr<Workspace> ws_;
  MatmulObserver observer_;
};

}  // namespace mlxq::model::gemma4
