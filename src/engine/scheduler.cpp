// Scheduler: first come, first served access to a shared model's forward pass, one request at
// a time or batched across sequences (scheduler.h).
#include "engine/scheduler.h"

#include <algorithm>
#include <chrono>
#include <vector>

namespace mlxq::engine {

using model::gemma4::SequenceStep;

void Scheduler::run(std::span<const SequenceStep> steps) {
  if (max_sequences_ <= 1) return run_alone(steps, nullptr);
  // One sequence with a long prompt goes in pieces that leave room in each chunk for the other
  // sequences' decode rows; only the last piece asks for logits. A piece never ends inside an
  // image run (its tokens attend to each other): it stops before the run, or takes the run whole.
  const int64_t chunk = net_.max_chunk();
  const int64_t piece = std::max<int64_t>(1, chunk - (max_sequences_ - 1));
  if (steps.size() == 1 && !steps[0].all_positions && int64_t(steps[0].tokens.size()) > piece) {
    const SequenceStep& s = steps[0];
    const int64_t n = int64_t(s.tokens.size()), H = net_.config().hidden_size;
    const int32_t img = int32_t(net_.config().image_token_id);
    const int32_t* tk = s.tokens.data();
    const float* images = s.image_embeddings;
    for (int64_t at = 0; at < n;) {
      int64_t end = std::min(n, at + piece);
      if (s.image_embeddings && end < n && tk[end] == img && tk[end - 1] == img) {
        int64_t start = end - 1;
        while (start > at && tk[start - 1] == img) --start;
        if (start > at) {
          end = start;
        } else {
          while (end < n && tk[end] == img) ++end;
        }
      }
      SequenceStep part{s.tokens.subspan(size_t(at), size_t(end - at)), s.cache, end == n ? s.logits : nullptr, false};
      if (s.image_embeddings) {
        part.image_embeddings = images;
        for (int64_t t = at; t < end; ++t) images += tk[t] == img ? H : 0;
      }
      Pending p;
      p.steps = std::span<const SequenceStep>(&part, 1);
      p.rows = end - at;
      submit(p);
      at = end;
    }
    return;
  }
  Pending p;
  p.steps = steps;
  for (const SequenceStep& s : steps) p.rows += int64_t(s.tokens.size());
  submit(p);
}

void Scheduler::exclusive(const std::function<void()>& work) {
  if (max_sequences_ <= 1) return run_alone({}, &work);
  Pending p;
  p.work = &work;
  submit(p);
}

void Scheduler::run_alone(std::span<const SequenceStep> steps, const std::function<void()>* work) {
  std::unique_lock lock(mu_);
  const uint64_t ticket = next_ticket_++;
  if (!work) ++stats_.requests;
  if (ticket != serving_) {
    ++stats_.waited;
    ++stats_.queued;
    turn_.wait(lock, [&] { return serving_ == ticket; });
    --stats_.queued;
  }
  if (work) {
    struct Next {
      Scheduler& s;
      ~Next() {
        {
          std::lock_guard g(s.mu_);
          ++s.serving_;
        }
        s.turn_.notify_all();
      }
    } next{*this};
    lock.unlock();
    (*work)();
    return;
  }
  ++stats_.batches;
  stats_.batched_sequences += steps.size();
  for (const SequenceStep& s : steps) stats_.batched_rows += s.tokens.size();
  lock.unlock();
  struct Next {  // hands the model to the next ticket however the forward ends
    Scheduler& s;
    std::chrono::steady_clock::time_point t0 = std::chrono::steady_clock::now();
    ~Next() {
      {
        std::lock_guard g(s.mu_);
        s.stats_.forward_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        ++s.serving_;
      }
      s.turn_.notify_all();
    }
  } next{*this};
  net_.forward_batch(steps);
}

// Whoever finds the model free runs the head of the queue (its own request or others') and
// wakes everyone; a request's thread returns once its request is done. Before taking the head,
// the leader gathers briefly: the sequences of the last pass come back one by one as their
// threads finish sampling, and a leader that ran at once would cut them into a pass of one and a
// pass of the rest. It waits until as many are queued as ran last time, or until a window has
// gone by (a sequence whose turn ended does not come back): a twentieth of the last pass, or
// twice the time sequences have been taking to come back after a pass (their sampling: ~0.5 ms
// over a 262k vocabulary, as long as a fifth of a small model's pass), 200 us to 5 ms and at most
// a pass.
// "As many as ran" counts those waiting when the pass ended too: counting only the pass's own
// sequences, a pass of 3 of 4 active ones (the 4th came a moment late) set the target at 3, and
// every later pass ran 3 and left one behind (4 streams decoded in 4/3 passes per step).
void Scheduler::submit(Pending& p) {
  using Clock = std::chrono::steady_clock;
  std::unique_lock lock(mu_);
  if (!p.work) ++stats_.requests;
  if (!p.work && (busy_ || !queue_.empty())) ++stats_.waited;
  if (passes_ > 0) {  // back from the last finished pass (or new): how long after it ended
    const auto back = std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - last_end_);
    if (back < last_pass_) return_time_ = (3 * return_time_ + back) / 4;
  }
  queue_.push_back(&p);
  ++stats_.queued;
  turn_.notify_all();  // a gathering leader may be waiting for this one
  while (!p.done) {
    if (busy_) {
      turn_.wait(lock);
      continue;
    }
    if (int64_t(queue_.size()) < std::min<int64_t>(expected_, max_sequences_)) {
      const auto now = Clock::now();
      if (!gathering_) {
        gathering_ = true;
        const auto window = std::min(std::max(last_pass_ / 20, 2 * return_time_), last_pass_);
        gather_until_ = now + std::clamp(window, std::chrono::nanoseconds(200000), std::chrono::nanoseconds(5000000));
      }
      if (now < gather_until_) {
        turn_.wait_until(lock, gather_until_);
        continue;
      }
    }
    gathering_ = false;
    busy_ = true;
    std::vector<Pending*> batch;
    int64_t rows = 0, seqs = 0;
    const int64_t chunk = net_.max_chunk();
    while (!queue_.empty()) {
      Pending* q = queue_.front();
      const int64_t n = int64_t(q->steps.size());
      if (!batch.empty() && (q->work || batch[0]->work || seqs + n > max_sequences_ || rows + q->rows > chunk)) break;
      batch.push_back(q);
      queue_.pop_front();
      rows += q->rows;
      seqs += n;
    }
    stats_.queued -= int(batch.size());
    const bool work = batch[0]->work != nullptr;  // not a pass: the pass statistics stay as they are
    if (!work) {
      ++stats_.batches;
      stats_.batched_rows += uint64_t(rows);
      stats_.batched_sequences += uint64_t(seqs);
    }
    lock.unlock();
    const auto t0 = Clock::now();
    run_batch(batch);
    const auto took = Clock::now() - t0;
    lock.lock();
    for (Pending* q : batch) q->done = true;
    busy_ = false;
    turn_.notify_all();
    if (work) continue;
    expected_ = seqs + int64_t(queue_.size());
    last_pass_ = std::chrono::duration_cast<std::chrono::nanoseconds>(took);
    last_end_ = Clock::now();
    ++passes_;
    stats_.forward_seconds += std::chrono::duration<double>(took).count();
  }
  if (p.error) std::rethrow_exception(p.error);
}

// forward_batch checks every sequence before running any row, so when a batch of several fails
// each request runs again alone and gets its own outcome (one bad request cannot fail the rest).
void Scheduler::run_batch(std::vector<Pending*>& batch) {
  if (batch[0]->work) {
    try {
      (*batch[0]->work)();
    } catch (...) {
      batch[0]->error = std::current_exception();
    }
    return;
  }
  if (batch.size() == 1) {
    try {
      net_.forward_batch(batch[0]->steps);
    } catch (...) {
      batch[0]->error = std::current_exception();
    }
    return;
  }
  std::vector<SequenceStep> steps;
  for (const Pending* q : batch) steps.insert(steps.end(), q->steps.begin(), q->steps.end());
  try {
    net_.forward_batch(steps);
    return;
  } catch (...) {
  }
  for (Pending* q : batch) {
    try {
      net_.forward_batch(q->steps);
    } catch (...) {
      q->error = std::current_exception();
    }
  }
}

void Scheduler::forward(std::span<const int32_t> tokens, model::gemma4::KvCache& cache, float* logits,
                        const float* images) {
  const SequenceStep step{tokens, &cache, logits, false, images};
  run(std::span<const SequenceStep>(&step, 1));
}

SchedulerStats Scheduler::stats() const {
  std::lock_guard g(mu_);
  return stats_;
}

}  // namespace mlxq::engine
