// The read-bandwidth probe (see bandwidth.h).
#include "kernels/bandwidth.h"

#include <algorithm>
#include <chrono>
#include <memory>
#include <vector>

#include "kernels/vector_ops.h"

namespace mlxq::kernels {

BandwidthResult measure_read_bandwidth(ThreadPool& pool, size_t bytes, int passes) {
  const size_t n = bytes / sizeof(float);
  std::unique_ptr<float[]> buf(new float[n]);
  // First touch from the threads that will read it (so pages land near them).
  pool.parallel_for(n, [&](size_t b, size_t e, int) { std::fill(buf.get() + b, buf.get() + e, 1.0f); });
  std::vector<float> sink(size_t(pool.size()), 0.0f);
  BandwidthResult r;
  r.bytes = n * sizeof(float);
  r.passes = passes;
  for (int p = 0; p < passes; ++p) {
    const auto t0 = std::chrono::steady_clock::now();
    pool.parallel_for(n, [&](size_t b, size_t e, int w) { sink[size_t(w)] += simd::read_sum(buf.get() + b, int64_t(e - b)); });
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    r.gb_per_s = std::max(r.gb_per_s, double(r.bytes) / s / 1e9);
  }
  volatile float keep = sink[0];
  (void)keep;
  return r;
}

}  // namespace mlxq::kernels
