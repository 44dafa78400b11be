// What the CLI may ask of the CPU kernels, as public engine functions: the CLI sits above the
// engine and reaches the kernels only through it (docs/architecture.md, "Floors"). Each one
// forwards to src/kernels/.
#pragma once
#include <cstddef>

#include "core/thread_pool.h"

namespace mlxq::engine {

// Runs every kernel as on a CPU with AVX2 and nothing newer (the AVX-512 kernels off, Highway on
// its AVX2 target): what MLXQ_CPU=avx2 asks of the mlxq tool. Throws when this CPU lacks AVX2.
void emulate_avx2_cpu();

// The read bandwidth in GB/s (1e9 bytes per second, best of `passes`) of a `bytes`-sized buffer
// read by all of `pool`'s threads.
double measure_read_bandwidth_gbps(ThreadPool& pool, size_t bytes, int passes);

// Whether prompt matmuls on interleaved weights run on AMX tiles: the CPU has AMX-INT8, Linux
// grants it, and the AVX-512 int8 kernel that reads the interleaved copy is active.
bool amx_prefill_active();

}  // namespace mlxq::engine
