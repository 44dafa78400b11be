// Scheduler: the one door to a model's forward pass. The sessions sharing a model call it from
// their own threads; it runs their requests one at a time, in the order they arrived (a ticket
// queue, so a session that decodes token after token cannot starve another), on the model's
// thread pool. Every request is a batch of sequences already (model::gemma4::SequenceStep), so
// running the decode steps of several waiting sessions as one batch is a change inside run().
#pragma once
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <span>

#include "model/gemma4/model.h"

namespace mlxq::engine {

class Scheduler {
 public:
  explicit Scheduler(model::gemma4::Model& net) : net_(net) {}

  // Runs `steps` as one forward batch; blocks until done. Thread safe.
  void run(std::span<const model::gemma4::SequenceStep> steps);
  // One sequence: feeds `tokens` into `cache`; `logits` ([vocab]) gets the last position's.
  void forward(std::span<const int32_t> tokens, model::gemma4::KvCache& cache, float* logits);

  uint64_t requests() const;  // requests run so far
  uint64_t waited() const;    // of those, how many had to wait for another's

 private:
  model::gemma4::Model& net_;
  mutable std::mutex mu_;
  std::condition_variable turn_;
  uint64_t next_ticket_ = 0, serving_ = 0, waited_ = 0;
};

}  // namespace mlxq::engine
