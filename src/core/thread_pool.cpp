// ThreadPool implementation: a generation counter publishes each job; workers spin on it for a
// short while, then sleep in std::atomic::wait. The caller spins (then sleeps) on `pending_`.
#include "core/thread_pool.h"

#include <algorithm>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define MLXQ_PAUSE() _mm_pause()
#else
#define MLXQ_PAUSE() std::this_thread::yield()
#endif

namespace mlxq {

namespace {
// About 50-100 microseconds of pause instructions: longer than the serial gaps between the jobs
// of one token, much shorter than a human-visible idle.
constexpr int kSpin = 20000;

template <class T>
void spin_then_wait(const std::atomic<T>& a, T old) {
  for (int i = 0; i < kSpin; ++i) {
    if (a.load(std::memory_order_acquire) != old) return;
    MLXQ_PAUSE();
  }
  while (a.load(std::memory_order_acquire) == old) a.wait(old, std::memory_order_acquire);
}

void chunk(size_t n, int parts, int i, size_t* b, size_t* e) {
  size_t per = n / size_t(parts), rem = n % size_t(parts);
  *b = size_t(i) * per + std::min(size_t(i), rem);
  *e = *b + per + (size_t(i) < rem ? 1 : 0);
}
}  // namespace

ThreadPool::ThreadPool(int n_threads) {
  if (n_threads <= 0) n_threads = int(std::thread::hardware_concurrency());
  if (n_threads <= 0) n_threads = 1;
  n_threads_ = n_threads;
  for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  stop_.store(true, std::memory_order_release);
  generation_.fetch_add(1, std::memory_order_acq_rel);
  generation_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::parallel_for(size_t n, const std::function<void(size_t, size_t, int)>& fn) {
  if (n == 0) return;
  if (n_threads_ == 1 || n == 1) {
    fn(0, n, 0);
    return;
  }
  job_ = &fn;
  job_n_ = n;
  pending_.store(n_threads_ - 1, std::memory_order_relaxed);
  generation_.fetch_add(1, std::memory_order_release);  // publishes job_, job_n_, pending_
  generation_.notify_all();
  size_t b, e;
  chunk(n, n_threads_, 0, &b, &e);
  if (b < e) fn(b, e, 0);
  for (int left = pending_.load(std::memory_order_acquire); left != 0;
       left = pending_.load(std::memory_order_acquire))
    spin_then_wait(pending_, left);
  job_ = nullptr;
}

void ThreadPool::worker_loop(int id) {
  uint32_t seen = 0;
  for (;;) {
    spin_then_wait(generation_, seen);
    seen = generation_.load(std::memory_order_acquire);
    if (stop_.load(std::memory_order_acquire)) return;
    size_t b, e;
    chunk(job_n_, n_threads_, id, &b, &e);
    if (b < e) (*job_)(b, e, id);
    if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) pending_.notify_one();
  }
}

}  // namespace mlxq
