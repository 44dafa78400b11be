// Matrix: a non-owning view of one weight matrix [rows, cols] as stored in the checkpoint -
// dense (F32/F16/BF16) or MLX-affine packed (uint32 codes + per-group scales/biases) - plus
// ExpertStack for a [n_experts, rows, cols] tensor. Views point into the mmap; nothing is
// dequantized ahead of time.
#pragma once
#include <cstdint>
#include <string>

#include "core/dtype.h"
#include "quant/affine.h"

namespace mlxq::kernels {

struct Matrix {
  bool quantized = false;
  DType dtype = DType::BF16;  // element type when dense; scales/biases type when quantized
  quant::Spec spec;           // valid when quantized
  int64_t rows = 0, cols = 0;
  const uint8_t* data = nullptr;  // first row: elements, or packed words
  size_t row_bytes = 0;           // stride between rows of `data`
  const uint8_t* scales = nullptr;
  const uint8_t* biases = nullptr;
  size_t sb_row_bytes = 0;        // stride between rows of scales/biases
  const std::string* name = nullptr;
  // The same matrix in the 16-row interleaved layout (kernels/interleaved.h), when a repacked
  // copy is mapped; the int8 kernel then reads it instead of data/scales/biases.
  const uint8_t* il = nullptr;
  // Bytes of one interleaved group of 16 rows: K/64 tiles of 16 x 64 codes plus 16 scales and
  // 16 biases in bf16.
  size_t il_group_bytes() const { return size_t(128 * spec.bits + 64) * size_t(cols / 64); }

  // Rows [r0, r0+n) as a matrix of their own.
  Matrix row_slice(int64_t r0, int64_t n) const {
    Matrix m = *this;
    m.rows = n;
    m.data += size_t(r0) * row_bytes;
    if (quantized) {
      m.scales += size_t(r0) * sb_row_bytes;
      m.biases += size_t(r0) * sb_row_bytes;
    }
    if (il) m.il = r0 % 16 == 0 && n % 16 == 0 ? il + size_t(r0 / 16) * il_group_bytes() : nullptr;
    return m;
  }
  // Bytes a full pass over the matrix reads (weights + scales + biases).
  uint64_t bytes() const {
    return uint64_t(rows) * (row_bytes + (quantized ? 2 * sb_row_bytes : 0));
  }
  // Row r in f32 (dequantized as scale*q + bias, one f32 rounding).
  void row_f32(int64_t r, float* out) const;
};

struct ExpertStack {
  Matrix first;              // expert 0
  int64_t n_experts = 0;
  size_t data_stride = 0;    // bytes between experts in `data`
  size_t sb_stride = 0;      // bytes between experts in scales/biases
  size_t il_stride = 0;      // bytes between experts in the interleaved copy (first.il)
  Matrix expert(int64_t e) const {
    Matrix m = first;
    m.data += size_t(e) * data_stride;
    if (m.il) m.il += size_t(e) * il_stride;
    if (m.quantized) {
      m.scales += size_t(e) * sb_stride;
      m.biases += size_t(e) * sb_stride;
    }
    return m;
  }
};

}  // namespace mlxq::kernels
