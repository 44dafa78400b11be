// The matmul interface the forward pass uses: y[t, r] = sum_k x[t, k] * W[r, k] for a batch of
// weight matrices ("tasks") that run as one parallel job, so q/k/v, gate/up and the routed
// experts each cost one wake-up of the thread pool. Rows are split across threads by the bytes
// and work they need, so every core streams weights all the time.
//
// Three precisions:
//  - Fast (the default): activations are quantized in blocks of 64 to two int8 parts, a coarse
//    q1 = round(x/d1) (d1 = max|x|/127) and the residual q2 = round(256 (x/d1 - q1)) in
//    [-128, 127], i.e. x ~ d (256 q1 + q2) with d = d1/256 (16 bits per value); quantized weights
//    are multiplied as integers, each code against both parts (AVX-512 VNNI/VBMI, or AVX2 for
//    2-6 bit codes), which costs twice the multiply work of one int8 part. Dense bf16 weights
//    use AVX512-BF16 with the activations split the same way into bf16(x) + bf16(x - bf16(x)).
//    This keeps the next-token distributions within a mean KL of 1e-3 of Exact on a full-depth
//    synthetic model, which one int8 part does not (docs/benchmarks.md).
//  - Int8: one int8 part and bf16 activations (what llama.cpp does with Q8 activations): prefill
//    about 1.6x faster than Fast, at about 100x the distance from Exact.
//  - Exact: f32 activations, weights dequantized to f32 (Highway, any target).
// Matrices no int8 kernel takes (group size 32, K not a multiple of 64, 8-bit codes without
// AVX-512, a CPU without AVX2) use the Exact kernels in every precision.
// kernels.cpp keeps the scalar reference (matmul_reference) every kernel is tested against.
// This is the public interface (what the model and tools use); the kernels' own contract (the
// kernel chooser, the entry points, the int8 activation layout) is kernels/matmul_internal.h.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>
#include <vector>

#include "core/aligned.h"
#include "core/thread_pool.h"
#include "kernels/matrix.h"

namespace mlxq::kernels {

enum class Precision { Fast, Exact, Int8 };

namespace q8 {
// Longest row the int8 kernels take: K <= 64 * kMaxBlocks (longer rows run the f32 kernel).
constexpr int64_t kMaxBlocks = 256;
}  // namespace q8

// The input rows of a matmul. Row t is x + row(t) * ldx (and the matching int8 rows), where
// row(t) = idx ? idx[t] : t, so routed experts read their tokens in place (no gather copy).
struct Activations {
  int64_t T = 0, K = 0;
  const float* x = nullptr;
  int64_t ldx = 0;
  const int32_t* idx = nullptr;
  // The int8 form (Fast and Int8 precision, K % 64 == 0): row stride K (in q8_storage_index
  // order, matmul_internal.h), and K/64 scales d and sums s. With q2 (Fast) a value is
  // d * (256 * q + q2), without it d * q; s = d * the block's sum of those integers.
  const int8_t* q = nullptr;
  const int8_t* q2 = nullptr;
  const float* d = nullptr;
  const float* s = nullptr;
  // Which ActivationBuffer::prepare call made the int8 form (each call a new number), so a
  // kernel may keep what it derived from it (the AMX kernel's natural-order copy).
  uint64_t generation = 0;
  // The bf16 form (on CPUs with AVX512-BF16): row stride K, for dense bf16 weights; with xb2
  // (Fast) a value is xb + xb2, the second part bf16(x - bf16(x)).
  const uint16_t* xb = nullptr;
  const uint16_t* xb2 = nullptr;
  // The bf16 form again in the AMX kernel's tiles (16 or more tokens, K % 32 == 0, on CPUs with
  // AMX-BF16): token tile u (tokens 16u..16u+15, zero past T), columns 32c..32c+31 are 512
  // values from (u * K/32 + c) * 512: [pair p][token n][2], column 32c + 2p + j.
  const uint16_t* xbt = nullptr;
  const uint16_t* xbt2 = nullptr;
  int64_t row(int64_t t) const { return idx ? idx[t] : t; }
  // Rows [r0, r0+n) of an ungathered batch.
  Activations slice(int64_t r0, int64_t n) const {
    Activations a = *this;
    a.T = n;
    a.x += r0 * ldx;
    if (q) {
      a.q += r0 * K;
      if (q2) a.q2 += r0 * K;
      a.d += r0 * (K / 64);
      a.s += r0 * (K / 64);
    }
    if (xb) a.xb += r0 * K;
    if (xb2) a.xb2 += r0 * K;
    if (xbt) {  // whole tiles only
      const int64_t off = r0 % 16 == 0 ? r0 / 16 * (K / 32) * 512 : -1;
      a.xbt = off >= 0 ? xbt + off : nullptr;
      a.xbt2 = off >= 0 && xbt2 ? xbt2 + off : nullptr;
    }
    return a;
  }
  // The rows index[0..n) of this batch (routed experts read their tokens in place).
  Activations rows(const int32_t* index, int64_t n) const {
    Activations a = *this;
    a.idx = index;
    a.T = n;
    a.xbt = a.xbt2 = nullptr;
    return a;
  }
};

// Owns the int8 copy of up to max_rows x K activations; allocated once, reused every token.
class ActivationBuffer {
 public:
  void reserve(int64_t max_rows, int64_t max_k);
  // Wraps x[T, K] (row stride ldx). With Fast or Int8 precision it also makes the int8 form
  // (K % 64 == 0) and the bf16 form (split in two parts with Fast), each only if one of
  // `consumers` (the matrices x will meet) can use it; an empty list makes both.
  Activations prepare(const float* x, int64_t T, int64_t K, int64_t ldx, Precision p,
                      std::initializer_list<const Matrix*> consumers = {});

 private:
  // 64-byte aligned: the kernels read rows of these with 512-bit loads (K % 64 == 0 keeps every
  // row aligned), and a load that straddles two cache lines costs two.
  AlignedVector<int8_t> q_, q2_;
  AlignedVector<float> d_, s_;
  AlignedVector<uint16_t> xb_, xb2_, xbt_, xbt2_;
};

struct MatmulTask {
  const Matrix* w = nullptr;
  Activations x;       // x.K == w->cols
  float* y = nullptr;  // y[t * ldy + r]
  int64_t ldy = 0;
};

void matmul(std::span<const MatmulTask> tasks, Precision p, ThreadPool& pool);
// One task over f32 activations (a convenience for callers outside the decoder's hot path).
void matmul(const Matrix& w, const float* x, int64_t T, int64_t ldx, float* y, int64_t ldy,
            ThreadPool& pool, Precision p = Precision::Exact);

// Which kernel matmul would run for w (and `p`): "q8-avx512", "q8-avx2", "bf16-avx512",
// "f32-hwy:<target>".
std::string kernel_name(const Matrix& w, Precision p);

// Kernel selection, for tests and benchmarks: whether the CPU has the int8 kernel's ISA
// (AVX-512 F/BW/VL + VNNI + VBMI), and a switch that disables it and the bf16 kernel (what a CPU
// without those instructions runs; for tests and benchmarks).
bool q8_kernel_supported();
void set_q8_kernel_enabled(bool on);
// The AVX2 + FMA int8 kernel (2- to 6-bit codes) that CPUs without AVX-512 VNNI/VBMI use, and a
// switch that turns the AVX-512 kernels (int8, bf16, the AVX-512 quantizer) off, so this CPU
// runs what an AVX2-only one would (for tests and benchmarks).
bool q8_avx2_kernel_supported();
void set_avx512_kernels_enabled(bool on);
// Whether matrices with an interleaved copy (Matrix::il) will run on it: the AVX-512 int8 kernel
// is supported and not switched off.
bool il16_kernel_active();
// Whether the interleaved copy runs on AMX-INT8 tiles for several tokens (prefill, routed
// experts): the CPU has AMX-TILE/AMX-INT8 besides the int8 kernel's ISA and Linux grants their
// use; and a switch for tests and benchmarks (off: the AVX-512 kernel, the same results).
bool amx_kernel_supported();
void set_amx_kernel_enabled(bool on);
// Runs every kernel as on a CPU with AVX2 and nothing newer: the AVX-512 kernels off and
// Highway restricted to its AVX2 target (what the environment variable MLXQ_CPU=avx2 does in
// the mlxq tool). Throws when this CPU lacks AVX2.
void emulate_avx2_cpu();
// The same for the bf16 dot-product kernel (AVX512-BF16) that Fast and Int8 precision use for
// dense bf16 weights: activations rounded to bf16 (round to nearest even; Fast adds the rounded
// remainder as a second part), f32 accumulation.
bool bf16_kernel_supported();

}  // namespace mlxq::kernels
