// Internal to src/kernels (and its tests): the contract between matmul.cpp and the per-ISA
// kernels. The one chooser that decides which kernel runs a matrix (dispatch, cost model, row
// alignment and kernel_name all ask it, so they cannot disagree), the one bits-to-template
// table every kernel instantiates its code widths through, the int8 activation layout and the
// kernels' entry points. Code outside src/kernels includes kernels/matmul.h only.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <string>
#include <type_traits>

#include "kernels/matmul.h"

namespace mlxq::kernels {

// ---- Which kernel runs a matrix ----------------------------------------------------------------

enum class KernelId {
  Q8Avx512,    // int8 activations x packed codes, checkpoint layout (matmul_q8_avx512.cpp)
  Il16Avx512,  // the same sums over the 16-row interleaved copy (matmul_il16_avx512.cpp)
  Il16Amx,     // the interleaved copy on AMX-INT8 tiles, several tokens (matmul_il16_amx.cpp)
  Q8Avx2,      // int8 activations, 2-6 bit codes, AVX2 + FMA (matmul_q8_avx2.cpp)
  Bf16Amx,     // dense bf16 weights on AMX-BF16 tiles (matmul_bf16_amx.cpp)
  Bf16Avx512,  // dense bf16 weights, AVX512-BF16 dot products (matmul_bf16_avx512.cpp)
  F32Hwy,      // f32 activations, weights dequantized to f32, any matrix (matmul_hwy.cpp)
};

struct KernelChoice {
  KernelId id = KernelId::F32Hwy;
  // Row parts handed to the kernel start and end on multiples of this (the last part ends at
  // the matrix's last row): a 16-row interleaved group or AMX row tile, else the 4-row tile.
  int row_align = 4;
  // Whether the kernel multiplies int8 or bf16 (the cost model weighs its arithmetic at half
  // of the f32 kernel's).
  bool narrow_arithmetic() const { return id != KernelId::F32Hwy; }
};

// The kernel matmul runs w with activations x in precision p. It reads only what decides the
// choice: w's format, which forms of x exist (x.q, x.xb, x.xbt), x.T, and the CPU feature
// queries and test switches of matmul.h. Cheap (a few compares and relaxed loads); matmul calls
// it once per task and call, never per row.
KernelChoice choose_kernel(const Matrix& w, const Activations& x, Precision p);

// The name kernel_name reports for a kernel: "q8-avx512", "il16-avx512", "il16-amx", "q8-avx2",
// "bf16-amx", "bf16-avx512", or "f32-hwy:<Highway target>".
std::string kernel_id_name(KernelId id);

// Runs rows [r0, r1) of t on the kernel `c` names (nothing for an empty range or no tokens). A
// Bf16Amx choice runs the AVX-512 bf16 kernel on a range that is not in whole row groups (only
// direct matmul_rows callers make one; matmul aligns its parts to c.row_align).
void run_rows(const KernelChoice& c, const MatmulTask& t, int64_t r0, int64_t r1);

// Rows [r0, r1) of one task on one thread: run_rows(choose_kernel(...), ...), the per-thread
// body of matmul (tests call it).
void matmul_rows(const MatmulTask& t, int64_t r0, int64_t r1, Precision p);

// ---- Code widths -------------------------------------------------------------------------------

// A list of code widths a kernel has template instances for.
template <int... Bits>
struct BitWidths {};
// Every width of the MLX-affine format (quant::valid_bits).
using AllBitWidths = BitWidths<2, 3, 4, 5, 6, 8>;

// Throws Error: `kernel` has no form for `bits`-bit codes (it takes `known`). Out of line and
// cold, so the dispatch below stays a few compares.
[[noreturn]] void throw_unknown_bits(int bits, const char* kernel, std::initializer_list<int> known);

// The bits-to-template table: calls f(std::integral_constant<int, B>{}) for the B of `widths`
// equal to bits, and throws Error naming the width (and `kernel`) when none is. A kernel calls
// it once per call of rows, outside its loops, e.g.
//   dispatch_bits(AllBitWidths{}, w.spec.bits, "q8-avx512", [&](auto B) { run<B, S>(...); });
template <int... Bits, class F>
void dispatch_bits(BitWidths<Bits...>, int bits, const char* kernel, F&& f) {
  const bool known = ((bits == Bits ? (f(std::integral_constant<int, Bits>{}), true) : false) || ...);
  if (!known) throw_unknown_bits(bits, kernel, {Bits...});
}

// ---- The int8 activation form ------------------------------------------------------------------

// Where the int8 value of column k (of a row of K) is stored: blocks 2p and 2p+1 share bytes
// [128p, 128p+128), codes 0..31 of both first, then 32..63, alternating 4 of the even block and
// 4 of the odd one (the order the int8 kernel unpacks weights in); an odd last block is stored
// as is.
inline int64_t q8_storage_index(int64_t k, int64_t K) {
  const int64_t b = k / 64, c = k % 64, paired = K / 128 * 2;
  if (b >= paired) return k;
  return 128 * (b / 2) + 64 * (c / 32) + 8 * (c % 32 / 4) + 4 * (b % 2) + c % 4;
}

// Quantizes one row of K (K % 64 == 0) to int8 blocks of 64: d1 = max|x|/127, v = x * (1/d1)
// (f32), q = round(v) (to nearest even). Without q2: d = d1, s = d * sum(q). With q2 (the
// two-part form): q2 = min(127, round((v - q) * 256)) (|v - q| <= 1/2, so only an exact half
// saturates), d = d1 / 256, s = d * sum(256 q + q2). The bias
// term must see the same (quantized) x as the scale term: with w = scale*q + bias the two terms
// nearly cancel, and only a consistent x keeps the error proportional to w rather than to bias
// (8x lower KL than the exact f32 sum on tiny-a). q and q2 are written in the q8_storage_index
// order.
void quantize_row_q8(const float* x, int64_t K, int8_t* q, float* d, float* s, int8_t* q2 = nullptr);
// The scalar definition quantize_row_q8 is tested against.
void quantize_row_q8_scalar(const float* x, int64_t K, int8_t* q, float* d, float* s, int8_t* q2 = nullptr);

// The second int8 part's weight: a value is d * (2^kQ8Shift * q + q2).
constexpr int kQ8Shift = 8;

// ---- The kernels' entry points (choose_kernel picks one per matrix) ----------------------------

namespace q8 {
// AVX-512 F/BW/VL/VNNI/VBMI int8 kernel (matmul_q8_avx512.cpp). Requires w.quantized,
// group_size 64 or 128, K % 64 == 0, K <= 64 * kMaxBlocks and the int8 form of x (one part or
// two).
void matmul_rows_avx512(const Matrix& w, const Activations& x, int64_t r0, int64_t r1, float* y,
                        int64_t ldy);
// AVX2 + FMA int8 kernel (matmul_q8_avx2.cpp): the same activations and sums as the AVX-512 one,
// for 2- to 6-bit codes.
void matmul_rows_avx2(const Matrix& w, const Activations& x, int64_t r0, int64_t r1, float* y,
                      int64_t ldy);
// The int8 kernel over the 16-row interleaved copy w.il (matmul_il16_avx512.cpp): rows [r0, r1)
// in whole groups of 16, any token count; the same requirements as matmul_rows_avx512 plus
// il16::supported(w).
void matmul_rows_il16_avx512(const Matrix& w, const Activations& x, int64_t r0, int64_t r1, float* y,
                             int64_t ldy);
// The same sums over the interleaved copy on AMX-INT8 tiles, for several tokens
// (matmul_il16_amx.cpp): the same requirements as matmul_rows_il16_avx512, the AMX ISA and
// amx_permission() granted; bit for bit the AVX-512 kernel's results.
void matmul_rows_il16_amx(const Matrix& w, const Activations& x, int64_t r0, int64_t r1, float* y,
                          int64_t ldy);
// AMX-BF16 kernel for dense bf16 weights and the tiled bf16 form of x (Activations::xbt), rows
// [r0, r1) in multiples of 16 (matmul_bf16_amx.cpp).
void matmul_rows_bf16_amx(const Matrix& w, const Activations& x, int64_t r0, int64_t r1, float* y,
                          int64_t ldy);
// Asks Linux for this process's permission to use AMX tile data (arch_prctl
// ARCH_REQ_XCOMP_PERM); false where it is refused.
bool amx_permission();
// quantize_row_q8 with AVX-512 (same results).
void quantize_row_avx512(const float* x, int64_t K, int8_t* q, float* d, float* s, int8_t* q2);
// AVX512-BF16 kernel for dense bf16 weights and the bf16 form of x, one part or two
// (matmul_bf16_avx512.cpp).
void matmul_rows_bf16_avx512(const Matrix& w, const Activations& x, int64_t r0, int64_t r1, float* y,
                             int64_t ldy);
}  // namespace q8

namespace hwy_kernels {
// f32 kernels for any matrix (Highway, runtime-dispatched; matmul_hwy.cpp).
void matmul_rows_f32(const Matrix& w, const Activations& x, int64_t r0, int64_t r1, float* y,
                     int64_t ldy);
// Row r of w in f32 with SIMD: the same values as Matrix::row_f32 (tests hold it to that).
void dequant_row_f32(const Matrix& w, int64_t r, float* out);
// The Highway target the f32 kernels dispatch to, e.g. "AVX3_DL".
const char* target_name();
}  // namespace hwy_kernels

}  // namespace mlxq::kernels
