// The 16-row interleaved layout ("il16") of an MLX-affine matrix: the same codes, scales and
// biases as the checkpoint, reordered so one memory stream feeds 16 rows at once. The int8
// kernel then holds one row per 32-bit lane: a weight register carries 4 codes of each of 16
// rows, the matching 4 activations are one broadcast dword, and one VPDPBUSD is 64
// multiply-adds with no horizontal sum (docs/architecture.md, "Interleaved weights").
//
// A matrix [rows, K] (rows % 16 == 0, K % 64 == 0, group size 64, bf16 scales) becomes rows/16
// row groups, each K/64 tiles in block order; a tile is one 64-code block of 16 rows:
//   - step m (0..15) covers codes 4m..4m+3 of the block; lane l (16 of them, 4 bytes each) is
//     row 16g + l, and byte j of a lane is code 4m + j;
//   - the code is split into a low field of `low` bits and a high part of `high` bits
//     (2-bit: 2+0, 3: 2+1, 4: 4+0, 5: 4+1, 6: 4+2, 8: 8+0). Low register i (8/low steps each)
//     holds step m = i * (8/low) + k at bits [low*k, low*k + low) of each byte; high register h
//     (8/high steps each) holds step m = h * (8/high) + k at bits [high*k, high*k + high);
//   - then the 16 rows' bf16 scales (32 bytes) and bf16 biases (32 bytes), lane order.
// Every field sits inside its byte, so one 32-bit shift and one AND cut a step's codes out.
// This file is the format's definition in scalar code: the packer and the reference accessors
// the kernels are tested against.
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/matrix.h"

namespace mlxq::kernels::il16 {

constexpr int64_t kRows = 16;  // rows per group (one per 32-bit lane of a 512-bit register)

struct Fields {
  int low = 0, high = 0;  // bits of the low field and of the high part
};
constexpr Fields fields(int bits) {
  switch (bits) {
    case 2: return {2, 0};
    case 3: return {2, 1};
    case 4: return {4, 0};
    case 5: return {4, 1};
    case 6: return {4, 2};
    default: return {8, 0};
  }
}
constexpr int low_regs(int bits) { return 16 * fields(bits).low / 8; }
constexpr int high_regs(int bits) { return 16 * fields(bits).high / 8; }
// Bytes of one tile: codes, then 16 bf16 scales and 16 bf16 biases.
constexpr size_t code_bytes(int bits) { return size_t(64) * size_t(low_regs(bits) + high_regs(bits)); }
constexpr size_t tile_bytes(int bits) { return code_bytes(bits) + 64; }
inline size_t group_bytes(int bits, int64_t K) { return tile_bytes(bits) * size_t(K / 64); }

// Whether w can be stored interleaved: quantized, 2-6 or 8 bits, group size 64, bf16 scales and
// biases, rows a multiple of 16, K a multiple of 64 and at most `max_k`.
bool supported(const Matrix& w, int64_t max_k);
// Bytes of w interleaved (rows/16 groups).
inline size_t matrix_bytes(const Matrix& w) { return size_t(w.rows / kRows) * group_bytes(w.spec.bits, w.cols); }

// Writes row groups [g0, g1) of w (its checkpoint layout) to out, which receives group g0 first.
void pack(const Matrix& w, int64_t g0, int64_t g1, uint8_t* out);

// Code (row r, column k), and the bf16 bits of the scale and bias of r's block holding k, read
// from an interleaved matrix `il` of `bits` and K columns: the format's definition.
uint32_t code_at(const uint8_t* il, int bits, int64_t K, int64_t r, int64_t k);
uint16_t scale_at(const uint8_t* il, int bits, int64_t K, int64_t r, int64_t k);
uint16_t bias_at(const uint8_t* il, int bits, int64_t K, int64_t r, int64_t k);

}  // namespace mlxq::kernels::il16
