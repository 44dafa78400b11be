// Slots: the server's N conversations in flight on one model, each a Session with its own KV
// cache. A request takes the free slot whose cache shares the longest prefix with its prompt (a
// multi-turn chat comes back to its warm cache, as sessions reuse theirs); ties go to the slot
// idle longest. Requests beyond the slots wait in a bounded first-in-first-out queue; past its
// bound, or after waiting too long, acquire() says no and the server answers 503.
#pragma once
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <vector>

#include "mlxq/session.h"

namespace mlxq::server {

struct SlotOptions {
  int slots = 4;
  int64_t ctx_size = 8192;      // KV positions per slot
  int64_t kv_rollback = 512;    // how far a slot's sliding-window cache can step back (SessionOptions)
  int queue = 64;               // requests that may wait for a slot
  std::chrono::milliseconds max_wait{300000};
};

class SlotPool {
 public:
  SlotPool(std::shared_ptr<Model> model, const SlotOptions& options);

  // A slot held by one request; released (and the next waiter woken) when destroyed.
  class Lease {
   public:
    ~Lease();
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    Session& session();
    int index() const { return index_; }
    int shared_prefix() const { return shared_; }  // prompt tokens the slot's cache holds already

   private:
    friend class SlotPool;
    Lease(SlotPool& pool, int index, int shared) : pool_(pool), index_(index), shared_(shared) {}
    SlotPool& pool_;
    int index_, shared_;
  };
  enum class Refusal { None, QueueFull, TimedOut };
  // Blocks until a slot is free (first come, first served); nullptr with *why set when the queue
  // is full or the wait exceeds max_wait.
  std::unique_ptr<Lease> acquire(const std::vector<int32_t>& prompt, Refusal* why);

  struct Stats {
    int slots = 0, busy = 0, queued = 0;
    uint64_t rejected = 0;
  };
  Stats stats() const;

 private:
  struct Slot {
    std::unique_ptr<Session> session;
    bool busy = false;
    uint64_t last_used = 0;
  };
  void release(int index);

  SlotOptions opt_;
  mutable std::mutex mu_;
  std::condition_variable freed_;
  std::vector<Slot> slots_;
  std::deque<uint64_t> waiting_;  // tickets, in arrival order
  uint64_t next_ticket_ = 0, clock_ = 0, rejected_ = 0;
};

}  // namespace mlxq::server
