// Scheduler: the one door to a model's forward pass. The sessions sharing a model call it from
// their own threads. With max_sequences 1 (the library's default) it runs their requests one at
// a time, in the order they arrived (a ticket queue, so a session that decodes token after token
// cannot starve another), and a session's tokens come out as they would alone. With
// max_sequences N > 1 (the server's slots) it batches: whichever waiting thread finds the model
// free takes the queue's head, up to N sequences and one chunk of rows, and runs them as one
// forward_batch (weights read once for all; each routed expert once for the rows that chose it),
// then wakes the others; a long prefill goes in chunk-sized pieces so that the decode steps of
// other sequences ride along between them. Batched rows take the multi-row kernels, so in Fast
// precision a sequence's logits differ slightly (~1e-3) from running alone.
#pragma once
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <span>

#include "model/gemma4/model.h"

namespace mlxq::engine {

struct SchedulerStats {
  uint64_t requests = 0;      // forward requests run (a prefill piece counts once)
  uint64_t waited = 0;        // of those, how many found the model busy
  uint64_t batches = 0;       // forward_batch calls
  uint64_t batched_rows = 0;  // rows (tokens) over all batches
  uint64_t batched_sequences = 0;  // sequences over all batches
  int queued = 0;             // requests waiting now
  double forward_seconds = 0;  // wall time inside forward_batch
};

class Scheduler {
 public:
  explicit Scheduler(model::gemma4::Model& net, int max_sequences = 1)
      : net_(net), max_sequences_(max_sequences < 1 ? 1 : max_sequences) {}

  // Runs `steps` (a batch of sequences, each at most once); blocks until done. Thread safe.
  void run(std::span<const model::gemma4::SequenceStep> steps);
  // One sequence: feeds `tokens` into `cache`; `logits` ([vocab]) gets the last position's.
  // `images`: the soft tokens of the image placeholders in `tokens` (SequenceStep::image_embeddings);
  // a long prefill's pieces never cut an image run.
  void forward(std::span<const int32_t> tokens, model::gemma4::KvCache& cache, float* logits,
               const float* images = nullptr);
  // Runs `work` with the model to itself, in turn with the forward passes (the vision tower
  // shares the model's thread pool). Thread safe; rethrows what `work` throws.
  void exclusive(const std::function<void()>& work);

  SchedulerStats stats() const;
  int max_sequences() const { return max_sequences_; }

 private:
  struct Pending {
    std::span<const model::gemma4::SequenceStep> steps;
    const std::function<void()>* work = nullptr;  // exclusive(): runs alone, not a forward
    int64_t rows = 0;
    bool done = false;
    std::exception_ptr error;
  };
  void run_alone(std::span<const model::gemma4::SequenceStep> steps, const std::function<void()>* work);  // max_sequences 1
  void submit(Pending& p);                                              // batching
  void run_batch(std::vector<Pending*>& batch);

  model::gemma4::Model& net_;
  const int max_sequences_;
  mutable std::mutex mu_;
  std::condition_variable turn_;
  uint64_t next_ticket_ = 0, serving_ = 0;  // ticket queue (max_sequences 1)
  std::deque<Pending*> queue_;             // batching queue
  bool busy_ = false;
  bool gathering_ = false;                           // a leader waits for last pass's sequences
  std::chrono::steady_clock::time_point gather_until_;
  int64_t expected_ = 0;  // sequences in the last pass plus those queued when it ended
  std::chrono::nanoseconds last_pass_{0};            // the last pass's duration
  std::chrono::steady_clock::time_point last_end_;   // and its end
  std::chrono::nanoseconds return_time_{0};          // average time from a pass's end to a submit
  uint64_t passes_ = 0;                              // batched passes run
  SchedulerStats stats_;
};

}  // namespace mlxq::engine
