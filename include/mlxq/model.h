// The public mlxq C++ API, part 1: a loaded model. load_model() opens a Gemma-4 checkpoint once
// (mapped weights, the interleaved file, tokenizer, chat template, generation defaults, one
// thread pool); any number of chat sessions are then created from it, each holding only its
// history and KV cache. Sessions may run turns on different threads at the same time: the
// model's scheduler runs their forward passes one after another, first come first served.
// Sessions keep their model alive (shared_ptr).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace mlxq {

struct LoadOptions {
  int threads = 0;             // 0: all cores
  int64_t max_context = 8192;  // KV-cache positions of a session (prompt + answers), unless its SessionOptions say
  int64_t max_chunk = 256;     // tokens per prefill step
  bool exact = false;          // f32 activations in every matmul (default: two int8 parts into quantized ones)
  bool int8 = false;           // one int8 part (faster prefill, less accurate; ignored with exact)
  // The interleaved weights file written by `mlxq repack`: "auto" (<model dir>/mlxq-interleaved.bin
  // when present and matching), "off", or a path.
  std::string interleaved = "auto";
  // Sequences the scheduler may run as one batched forward pass. 1 (default): one session's
  // request at a time, so a session's tokens are those it would get alone. N > 1 (the server's
  // slots): the waiting sessions' decode steps run together, reading the weights once for all;
  // batched rows take the multi-row kernels, so Fast-precision logits differ by ~1e-3.
  int batch_sequences = 1;
  // Soft tokens per image, the vision tower's budget (gemma4-architecture.md §10.2): 70, 140,
  // 280, 560 or 1120; 0: the checkpoint's vision_soft_tokens_per_image (280 for Gemma 4).
  int64_t max_soft_tokens = 0;
};

// The scheduler's counters (Model::forward_stats), for /metrics and benchmarks.
struct ForwardStats {
  uint64_t requests = 0;           // forward requests (a decode step, a prefill or a piece of one)
  uint64_t waited = 0;             // of those, how many found the model busy
  uint64_t batches = 0;            // forward passes run
  uint64_t batched_rows = 0;       // tokens over all passes
  uint64_t batched_sequences = 0;  // sequences over all passes (rows / sequences: prefill share)
  int queued = 0;                  // requests waiting now
  double forward_seconds = 0;      // wall time inside forward passes (a server's other work is the rest)
};

// What a loaded model is, for display and for clients (the Node binding, the server).
struct ModelInfo {
  std::string path;              // as given to load_model
  std::string model_type;        // config.json's model_type ("gemma4")
  int64_t vocab_size = 0, hidden_size = 0, num_layers = 0, num_experts = 0, top_k_experts = 0;
  int64_t max_position_embeddings = 0;
  std::string precision;         // "fast", "exact" or "int8"
  std::string interleaved_path;  // the interleaved weights file in use, or ""
  int threads = 0;               // the model's thread pool
  uint64_t weight_bytes = 0;     // all tensors in the checkpoint
  uint64_t bytes_per_token = 0;  // weight bytes one decoded token reads
  bool vision = false;           // takes images (a vision tower in config.json and the weights)
  int64_t max_soft_tokens = 0;   // soft tokens per image at most (the budget), when vision
};

class Session;
struct SessionOptions;

class Model : public std::enable_shared_from_this<Model> {
 public:
  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  // A new conversation on this model: its own history and KV cache (allocated as it fills).
  std::unique_ptr<Session> create_session();
  std::unique_ptr<Session> create_session(const SessionOptions& options);

  const std::string& path() const;
  const LoadOptions& options() const;
  ModelInfo info() const;
  int live_sessions() const;  // sessions created from this model and not yet destroyed
  ForwardStats forward_stats() const;

  // The prompt a conversation renders to: `messages_json` (OpenAI chat messages, JSON text) and
  // `tools_json` (an OpenAI tools array, or "" for none) through the chat template with the
  // generation prompt, as token ids, each image (an image_url part with a data URL) expanded to
  // its soft tokens. Throws mlxq::Error naming what is malformed.
  std::vector<int32_t> prompt_tokens(const std::string& messages_json, const std::string& tools_json,
                                     bool thinking) const;

  struct Impl;  // the engine's (src/engine/model_impl.h)
  Impl& impl() { return *impl_; }

 private:
  friend std::shared_ptr<Model> load_model(const std::string&, const LoadOptions&);
  explicit Model(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Opens a checkpoint directory (config.json, safetensors, tokenizer.json). Throws mlxq::Error (a
// std::runtime_error) naming the file or field at fault.
std::shared_ptr<Model> load_model(const std::string& path, const LoadOptions& options = {});

}  // namespace mlxq
