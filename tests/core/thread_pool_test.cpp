// ThreadPool: every index visited exactly once, for many sizes and pool widths.
#include "core/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <vector>

namespace mlxq {

TEST(ThreadPool, CoversRangeExactlyOnce) {
  for (int threads : {1, 2, 3, 5}) {
    ThreadPool pool(threads);
    for (size_t n : {size_t(0), size_t(1), size_t(2), size_t(7), size_t(1000)}) {
      std::vector<std::atomic<int>> hits(n);
      std::atomic<int> max_worker{0};
      pool.parallel_for(n, [&](size_t b, size_t e, int w) {
        for (size_t i = b; i < e; ++i) hits[i]++;
        int m = max_worker.load();
        while (w > m && !max_worker.compare_exchange_weak(m, w)) {}
      });
      for (size_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << threads << " threads, n=" << n;
      EXPECT_LT(max_worker.load(), threads);
    }
  }
}

}  // namespace mlxq
