// Scheduler: first come, first served access to a shared model's forward pass (scheduler.h).
#include "engine/scheduler.h"

namespace mlxq::engine {

void Scheduler::run(std::span<const model::gemma4::SequenceStep> steps) {
  std::unique_lock lock(mu_);
  const uint64_t ticket = next_ticket_++;
  if (ticket != serving_) {
    ++waited_;
    turn_.wait(lock, [&] { return serving_ == ticket; });
  }
  lock.unlock();
  struct Next {  // hands the model to the next ticket however the forward ends
    Scheduler& s;
    ~Next() {
      { std::lock_guard g(s.mu_); ++s.serving_; }
      s.turn_.notify_all();
    }
  } next{*this};
  net_.forward_batch(steps);
}

void Scheduler::forward(std::span<const int32_t> tokens, model::gemma4::KvCache& cache, float* logits) {
  const model::gemma4::SequenceStep step{tokens, &cache, logits, false};
  run(std::span<const model::gemma4::SequenceStep>(&step, 1));
}

uint64_t Scheduler::requests() const {
  std::lock_guard g(mu_);
  return serving_;
}

uint64_t Scheduler::waited() const {
  std::lock_guard g(mu_);
  return waited_;
}

}  // namespace mlxq::engine
