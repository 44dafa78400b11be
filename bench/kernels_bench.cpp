// Kernel microbenchmarks (Google Benchmark), reported in GB/s of weights streamed:
//  - BM_Stream: the STREAM-like read probe (the bandwidth limit the kernels are measured against);
//  - BM_Matvec: one token through a matrix far larger than the caches (decode), per affine bit
//    width, bf16 (mode:0), the Exact f32 kernel (mode:1 on the best Highway target, mode:2 forced
//    to AVX2), Fast as an AVX2-only CPU runs it (mode:3, the AVX2 int8 kernel) and Int8 precision
//    (mode:4, one-part activations); 1 and 2 threads;
//  - BM_Matmul64: 64 tokens through one matrix (prefill), in GMAC/s as "items", Fast and Int8;
//  - BM_VnniPeak: the int8 multiply-add ceiling of one core (x86 with AVX-512 VNNI);
//  - BM_MatvecHot: one token through a matrix that stays in L2 (the decode kernels' arithmetic);
//  - BM_ExpertDownHot: the 8 routed experts' down_proj of one decoded token (short 704-wide rows);
//  - BM_TokensHot / BM_TokensCold: 1-8 tokens through one matrix in L2 / from DRAM (a batched
//    decode step of several sequences against one token's).
// Run: build/bench/kernels_bench [--benchmark_filter=...]
#include <benchmark/benchmark.h>
#include <hwy/targets.h>

#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "kernels/bandwidth.h"
#include "kernels/interleaved.h"
#include "kernels/matmul.h"

namespace {

using namespace mlxq;
using namespace mlxq::kernels;

// A rows x cols matrix with random codes and small random bf16 scales/biases (bits 16: bf16).
struct BenchMatrix {
  std::vector<uint8_t> data, scales, biases;
  Matrix m;
  BenchMatrix(int64_t rows, int64_t cols, int bits) {
    std::mt19937 rng(1);
    m.rows = rows;
    m.cols = cols;
    m.dtype = DType::BF16;
    if (bits == 16) {
      m.row_bytes = size_t(cols) * 2;
    } else {
      m.quantized = true;
      m.spec = {bits, 64};
      m.row_bytes = size_t(cols * bits / 8);
      m.sb_row_bytes = size_t(cols / 64) * 2;
      scales.resize(size_t(rows) * m.sb_row_bytes);
      biases.resize(scales.size());
      for (size_t i = 0; i < scales.size(); i += 2) {
        const uint16_t s = f32_to_bf16(0.01f), b = f32_to_bf16(-0.04f);
        std::memcpy(&scales[i], &s, 2);
        std::memcpy(&biases[i], &b, 2);
      }
    }
    data.resize(size_t(rows) * m.row_bytes);
    for (size_t i = 0; i < data.size(); i += 4) {
      const uint32_t v = rng();
      std::memcpy(&data[i], &v, std::min<size_t>(4, data.size() - i));
    }
    if (bits == 16)  // keep bf16 values finite and small
      for (size_t i = 1; i < data.size(); i += 2) data[i] = 0x3c;
    m.data = data.data();
    m.scales = scales.data();
    m.biases = biases.data();
  }
  // Adds the 16-row interleaved copy (kernels/interleaved.h), which the int8 kernel then reads.
  void interleave() {
    if (m.il || !il16::supported(m, 64 * 256)) return;
    il.resize(il16::matrix_bytes(m));
    il16::pack(m, 0, m.rows / 16, il.data());
    m.il = il.data();
  }
  std::vector<uint8_t> il;
};

void BM_Stream(benchmark::State& state) {
  ThreadPool pool(int(state.range(0)));
  for (auto _ : state) {
    const BandwidthResult r = measure_read_bandwidth(pool, size_t(1) << 30, 3);
    state.counters["GB/s"] = r.gb_per_s;
  }
}
BENCHMARK(BM_Stream)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->Iterations(1);

// args: bits (16 = bf16), threads, mode (0: Fast, 1: Exact, 2: Exact on the AVX2 target,
// 3: Fast as an AVX2-only CPU runs it: the AVX2 int8 kernel, AVX-512 kernels off, 4: Int8,
// 5: Fast over the interleaved copy, 6: Int8 over it)
void BM_Matvec(benchmark::State& state) {
  const bool avx2_only = state.range(2) == 2 || state.range(2) == 3;
  if (avx2_only && !(hwy::SupportedTargets() & HWY_AVX2)) {
    state.SkipWithError("no AVX2 target on this CPU/build");
    return;
  }
  struct Force {  // restricts Highway dispatch and the int8 kernels for this run (and restores them)
    explicit Force(bool on) : on_(on) {
      if (!on) return;
      hwy::SetSupportedTargetsForTest(HWY_AVX2);
      set_avx512_kernels_enabled(false);
    }
    ~Force() {
      if (!on_) return;
      hwy::SetSupportedTargetsForTest(0);
      set_avx512_kernels_enabled(true);
    }
    bool on_;
  } force(avx2_only);
  const int bits = int(state.range(0));
  const int64_t K = 2816;
  const int64_t rows = (int64_t(768) << 20) / (K * (bits == 16 ? 16 : bits) / 8) / 16 * 16;  // ~768 MB of codes
  static std::vector<std::unique_ptr<BenchMatrix>> cache;
  BenchMatrix* bm = nullptr;
  for (auto& c : cache)
    if (c->m.rows == rows && (c->m.quantized ? c->m.spec.bits : 16) == bits) bm = c.get();
  if (!bm) {
    cache.clear();  // keep one resident
    cache.push_back(std::make_unique<BenchMatrix>(rows, K, bits));
    bm = cache.back().get();
  }
  ThreadPool pool(int(state.range(1)));
  const int mode = int(state.range(2));
  const Precision p = mode == 1 || mode == 2 ? Precision::Exact : mode == 4 || mode == 6 ? Precision::Int8 : Precision::Fast;
  if (mode >= 5) bm->interleave();
  Matrix w = bm->m;
  if (mode < 5) w.il = nullptr;
  std::vector<float> x(static_cast<size_t>(K), 0.5f), y(static_cast<size_t>(rows));
  ActivationBuffer buf;
  buf.reserve(1, K);
  const Activations a = buf.prepare(x.data(), 1, K, K, p);
  const MatmulTask t{&w, a, y.data(), rows};
  for (auto _ : state) matmul(std::span<const MatmulTask>(&t, 1), p, pool);
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(w.bytes()));
  state.SetLabel(kernel_name(w, p));
}
BENCHMARK(BM_Matvec)
    ->ArgNames({"bits", "threads", "mode"})
    ->ArgsProduct({{3, 4, 5, 8, 16}, {1, 2}, {0, 4}})
    ->ArgsProduct({{3, 4, 5, 8}, {1, 2}, {5, 6}})
    ->ArgsProduct({{3, 4, 5}, {1, 2}, {1, 2, 3}})
    ->Unit(benchmark::kMillisecond);

// 64 tokens through a 2816 x 2816 matrix; items = multiply-accumulates. int8: 0 Fast (two-part
// activations), 1 Int8 (one part); il: over the interleaved copy.
void BM_Matmul64(benchmark::State& state) {
  const int bits = int(state.range(0));
  const Precision p = state.range(2) ? Precision::Int8 : Precision::Fast;
  const int64_t K = 2816, N = 2816, T = 64;
  BenchMatrix bm(N, K, bits);
  if (state.range(3)) bm.interleave();
  ThreadPool pool(int(state.range(1)));
  std::vector<float> x(static_cast<size_t>(T * K), 0.5f), y(static_cast<size_t>(T * N));
  ActivationBuffer buf;
  buf.reserve(T, K);
  const Activations a = buf.prepare(x.data(), T, K, K, p);
  const MatmulTask t{&bm.m, a, y.data(), N};
  for (auto _ : state) matmul(std::span<const MatmulTask>(&t, 1), p, pool);
  state.SetItemsProcessed(int64_t(state.iterations()) * T * N * K);
  state.SetLabel(kernel_name(bm.m, p));
}
BENCHMARK(BM_Matmul64)
    ->ArgNames({"bits", "threads", "int8", "il"})
    ->ArgsProduct({{3, 4, 5, 16}, {1, 2}, {0, 1}, {0}})
    ->ArgsProduct({{3, 4, 5}, {1, 2}, {0, 1}, {1}})
    ->Unit(benchmark::kMillisecond);

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
// The int8 arithmetic ceiling of one core: VPDPBUSD on 512-bit registers (64 multiply-adds each)
// over 8 independent accumulators, nothing else. Written in assembly: with intrinsics g++ 12
// kept the accumulators in memory and measured half the real rate (Zen 4: one per cycle).
// Prefill's int8 tiles are measured against it.
__attribute__((target("avx512f,avx512vnni"))) void vnni_loop(int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    asm volatile(
        "vpdpbusd %%zmm30, %%zmm31, %%zmm0\n\t"
        "vpdpbusd %%zmm30, %%zmm31, %%zmm1\n\t"
        "vpdpbusd %%zmm30, %%zmm31, %%zmm2\n\t"
        "vpdpbusd %%zmm30, %%zmm31, %%zmm3\n\t"
        "vpdpbusd %%zmm30, %%zmm31, %%zmm4\n\t"
        "vpdpbusd %%zmm30, %%zmm31, %%zmm5\n\t"
        "vpdpbusd %%zmm30, %%zmm31, %%zmm6\n\t"
        "vpdpbusd %%zmm30, %%zmm31, %%zmm7\n\t" ::
            : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7");
}

void BM_VnniPeak(benchmark::State& state) {
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx512vnni")) {
    state.SkipWithError("no AVX-512 VNNI");
    return;
  }
  const int64_t n = 1 << 20;
  for (auto _ : state) vnni_loop(n);
  state.SetItemsProcessed(int64_t(state.iterations()) * n * 8 * 64);  // multiply-adds
}
BENCHMARK(BM_VnniPeak)->Unit(benchmark::kMillisecond);
#endif

}  // namespace

namespace {
// One token through a 256 x 2816 matrix that stays in L2: the kernel's arithmetic ceiling.
void BM_MatvecHot(benchmark::State& state) {
  const int bits = int(state.range(0));
  const Precision p = state.range(1) ? Precision::Int8 : Precision::Fast;
  const int64_t K = 2816, N = 256;
  BenchMatrix bm(N, K, bits);
  if (state.range(2)) bm.interleave();
  ThreadPool pool(1);
  std::vector<float> x(static_cast<size_t>(K), 0.5f), y(static_cast<size_t>(N));
  ActivationBuffer buf;
  buf.reserve(1, K);
  const Activations a = buf.prepare(x.data(), 1, K, K, p);
  const MatmulTask t{&bm.m, a, y.data(), N};
  for (auto _ : state) matmul(std::span<const MatmulTask>(&t, 1), p, pool);
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(bm.m.bytes()));
  state.SetLabel(kernel_name(bm.m, p));
}
BENCHMARK(BM_MatvecHot)
    ->ArgNames({"bits", "int8", "il"})
    ->ArgsProduct({{3, 4, 5, 8, 16}, {0, 1}, {0}})
    ->ArgsProduct({{2, 3, 4, 5, 6, 8}, {0, 1}, {1}});

// T tokens (1-8) through a 256 x 2816 interleaved matrix that stays in L2: how the kernel's
// arithmetic grows with the rows of a batched decode step (several sequences' tokens in one
// pass). Bytes are the weights' once per call, so bytes/s falls as the arithmetic per byte grows.
void BM_TokensHot(benchmark::State& state) {
  const int bits = int(state.range(0));
  const int64_t T = state.range(1);
  const Precision p = state.range(2) ? Precision::Int8 : Precision::Fast;
  const int64_t K = 2816, N = 256;
  BenchMatrix bm(N, K, bits);
  bm.interleave();
  ThreadPool pool(1);
  std::vector<float> x(static_cast<size_t>(T * K)), y(static_cast<size_t>(T * N));
  for (size_t i = 0; i < x.size(); ++i) x[i] = float(int(i % 13) - 6) * 0.1f;
  ActivationBuffer buf;
  buf.reserve(T, K);
  const Activations a = buf.prepare(x.data(), T, K, K, p);
  const MatmulTask t{&bm.m, a, y.data(), N};
  for (auto _ : state) matmul(std::span<const MatmulTask>(&t, 1), p, pool);
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(bm.m.bytes()));
  state.SetLabel(kernel_name(bm.m, p));
}
BENCHMARK(BM_TokensHot)
    ->ArgNames({"bits", "T", "int8"})
    ->ArgsProduct({{3, 4, 5, 8, 16}, {1, 2, 3, 4, 8}, {0, 1}});

// T tokens (1-8) through a 512 MB matrix of 4096-wide rows (o_proj's width) from DRAM, two
// threads, Fast: a batched decode step of T sequences against single-token decode (T=1), bf16
// (bits 16) and the interleaved int8 kernel.
void BM_TokensCold(benchmark::State& state) {
  const int bits = int(state.range(0));
  const int64_t T = state.range(1);
  const int64_t K = 4096;
  const int64_t rows = (int64_t(512) << 20) / (K * bits / 8) / 16 * 16;
  static std::unique_ptr<BenchMatrix> bm;
  if (!bm || bm->m.rows != rows) {
    bm.reset();
    bm = std::make_unique<BenchMatrix>(rows, K, bits);
    bm->interleave();
  }
  ThreadPool pool(2);
  std::vector<float> x(static_cast<size_t>(T * K)), y(static_cast<size_t>(T * rows));
  for (size_t i = 0; i < x.size(); ++i) x[i] = float(int(i % 13) - 6) * 0.1f;
  ActivationBuffer buf;
  buf.reserve(T, K);
  const Activations a = buf.prepare(x.data(), T, K, K, Precision::Fast);
  const MatmulTask t{&bm->m, a, y.data(), rows};
  for (auto _ : state) matmul(std::span<const MatmulTask>(&t, 1), Precision::Fast, pool);
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(bm->m.bytes()));
  state.SetLabel(kernel_name(bm->m, Precision::Fast));
}
BENCHMARK(BM_TokensCold)
    ->ArgNames({"bits", "T"})
    ->ArgsProduct({{16, 3, 5}, {1, 2, 3, 4, 8}})
    ->Unit(benchmark::kMillisecond);

// The routed experts' down_proj in decode: 8 experts of 2816 x 704 (short rows, 11 blocks), one
// token each, 4-bit, Fast; the 8 x 1.1 MB of weights stay in L2/L3 between iterations.
void BM_ExpertDownHot(benchmark::State& state) {
  const int64_t K = 704, N = 2816, E = 8;
  std::vector<std::unique_ptr<BenchMatrix>> m;
  for (int64_t e = 0; e < E; ++e) {
    m.push_back(std::make_unique<BenchMatrix>(N, K, 4));
    if (state.range(0)) m.back()->interleave();
  }
  ThreadPool pool(1);
  std::vector<float> x(static_cast<size_t>(K), 0.5f), y(static_cast<size_t>(E * N));
  ActivationBuffer buf;
  buf.reserve(1, K);
  const Activations a = buf.prepare(x.data(), 1, K, K, Precision::Fast);
  std::vector<MatmulTask> tasks;
  size_t bytes = 0;
  for (int64_t e = 0; e < E; ++e) {
    tasks.push_back(MatmulTask{&m[size_t(e)]->m, a, y.data() + e * N, N});
    bytes += m[size_t(e)]->m.bytes();
  }
  for (auto _ : state) matmul(std::span<const MatmulTask>(tasks), Precision::Fast, pool);
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(bytes));
}
BENCHMARK(BM_ExpertDownHot)->ArgName("il")->Arg(0)->Arg(1);
}  // namespace

BENCHMARK_MAIN();
