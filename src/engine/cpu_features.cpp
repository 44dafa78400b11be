// The engine's CPU-feature functions for the CLI (see cpu_features.h): forwards to the kernels.
#include "engine/cpu_features.h"

#include "kernels/bandwidth.h"
#include "kernels/matmul.h"

namespace mlxq::engine {

void emulate_avx2_cpu() { kernels::emulate_avx2_cpu(); }

double measure_read_bandwidth_gbps(ThreadPool& pool, size_t bytes, int passes) {
  return kernels::measure_read_bandwidth(pool, bytes, passes).gb_per_s;
}

bool amx_prefill_active() { return kernels::amx_kernel_supported() && kernels::il16_kernel_active(); }

}  // namespace mlxq::engine
