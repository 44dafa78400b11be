// The 16-row interleaved layout ("il16") of an MLX-affine matrix: the same codes, scales and
// biases as the checkpoint, reordered so one memory stream feeds 16 rows at once. The int8
// kernel then holds one row per 32-bit lane: a weight register carries 4 codes of each of 16
// rows, the matching 4 activations are one broadcast dword, and one VPDPBUSD is 64
// multiply-adds with no horizontal sum (docs/architecture.md, "Interleaved weights").
//
// A matrix [rows, K] (rows % 16 == 0, K % 64 == 0, group size 64, bf16 scales) becomes rows/16
// row groups, each K/64 tiles in block order; a tile is one 64-code block of 16 rows:
//   - 2 * bits code registers of 64 bytes, then the 16 rows' bf16 scales (32 bytes) and bf16
//     biases (32 bytes), lane order;
//   - step m (0..15) covers codes 4m..4m+3 of the block: byte p = 4l + j of every register
//     belongs to lane l (row 16g + l) and code 4m + j, and `bit_place` says which register and
//     which bit of that byte holds each bit of the code.
// The places are chosen so a kernel cuts a step's codes out of a register with a 32-bit shift
// and an AND: 2, 4 and 8 bits pack 8/bits codes per byte; 6 bits a 4-bit field plus a 2-bit high
// part; 3 and 5 bits pack a half tile (8 steps) into 3 or 5 registers where most codes are
// whole, contiguous fields and the rest are split over the registers' top bits (two or three
// fields merged with VPTERNLOGD): fewer operations per step than a low field plus a high bit
// plane (docs/architecture.md, "Interleaved weights").
// This file is the format's definition in scalar code: the packer and the reference accessors
// the kernels are tested against.
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/matrix.h"

namespace mlxq::kernels::il16 {

constexpr int64_t kRows = 16;  // rows per group (one per 32-bit lane of a 512-bit register)

// Where bit `b` of a step-m code lives: code register `reg` of the tile, bit `shift` of the byte.
struct BitPlace {
  int reg = 0, shift = 0;
};
constexpr BitPlace bit_place(int bits, int m, int b) {
  switch (bits) {
    case 3: {  // per half (steps 8h..8h+7, registers 3h..3h+2): s = m % 8
      const int r = 3 * (m / 8), s = m % 8;
      if (s < 6) return {r + s / 2, 3 * (s % 2) + b};      // R0 = c0|c1<<3, R1 = c2|c3<<3, R2 = c4|c5<<3
      if (b < 2) return {r + s - 6, 6 + b};               // c6, c7: low 2 bits at the top of R0, R1
      return {r + 2, s};                                  // high bits: R2 bits 6 and 7
    }
    case 5: {  // per half (registers 5h..5h+4)
      const int r = 5 * (m / 8), s = m % 8;
      if (s < 5) return {r + s, b};                       // c0..c4: bits 0-4 of R0..R4
      if (s < 7) return b < 3 ? BitPlace{r + 2 * (s - 5), 5 + b}           // c5: R0 5-7, R1 5-6
                              : BitPlace{r + 2 * (s - 5) + 1, 2 + b};      // c6: R2 5-7, R3 5-6
      if (b < 2) return {r + 1 + 2 * b, 7};               // c7: bit 0 at R1 bit 7, bit 1 at R3 bit 7,
      return {r + 4, 3 + b};                              //     bits 2-4 at R4 bits 5-7
    }
    case 6:  // a 4-bit field (2 steps per register) and a 2-bit high part (4 per register)
      if (b < 4) return {m / 2, 4 * (m % 2) + b};
      return {8 + m / 4, 2 * (m % 4) + b - 4};
    default: {  // 2, 4, 8: 8/bits whole codes per byte
      const int per = 8 / bits;
      return {m / per, bits * (m % per) + b};
    }
  }
}
constexpr int code_regs(int bits) { return 2 * bits; }
// Bytes of one tile: codes, then 16 bf16 scales and 16 bf16 biases.
constexpr size_t code_bytes(int bits) { return size_t(64) * size_t(code_regs(bits)); }
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
