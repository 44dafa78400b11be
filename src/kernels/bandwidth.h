// A STREAM-like read-bandwidth probe: every thread of the pool sums its share of a buffer much
// larger than the caches; the best of a few passes is reported. `mlxq bench` runs it next to the
// model so tok/s can be stated as a fraction of the bandwidth limit measured in the same run.
#pragma once
#include <cstddef>

#include "core/thread_pool.h"

namespace mlxq::kernels {

struct BandwidthResult {
  double gb_per_s = 0;  // 1e9 bytes per second, best pass
  size_t bytes = 0;     // buffer size
  int passes = 0;
};

// Reads a `bytes`-sized buffer (allocated and touched here, freed on return) `passes` times with
// all of the pool's threads.
BandwidthResult measure_read_bandwidth(ThreadPool& pool, size_t bytes = size_t(1) << 30, int passes = 5);

}  // namespace mlxq::kernels
