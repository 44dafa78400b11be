// Internal: the entry points of the per-ISA matmul kernels (matmul.cpp picks one per matrix).
#pragma once
#include <cstdint>

#include "kernels/matmul.h"

namespace mlxq::kernels {

namespace q8 {
// Longest row the int8 kernel takes: K <= 64 * kMaxBlocks.
constexpr int64_t kMaxBlocks = 256;
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
