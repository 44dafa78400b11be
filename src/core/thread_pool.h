// ThreadPool: a fixed set of workers owned by the engine and passed by reference. parallel_for
// splits [0, n) into contiguous chunks, one per worker, and blocks until all are done; the caller
// thread works as worker 0. No threads are created per call and nothing allocates per call.
// Decode issues a few hundred jobs per token, so workers spin briefly on a generation counter
// before sleeping (futex via std::atomic::wait): a wake-up costs about a microsecond, not the
// tens a condition variable costs.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

namespace mlxq {

class ThreadPool {
 public:
  // n_threads <= 0 picks the hardware concurrency.
  explicit ThreadPool(int n_threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // fn(begin, end, worker) over a static partition of [0, n). Not reentrant.
  void parallel_for(size_t n, const std::function<void(size_t, size_t, int)>& fn);

 private:
  void worker_loop(int id);
  int n_threads_;
  std::vector<std::thread> workers_;
  const std::function<void(size_t, size_t, int)>* job_ = nullptr;
  size_t job_n_ = 0;
  std::atomic<uint32_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
};

}  // namespace mlxq
