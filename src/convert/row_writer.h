// Writing a [rows, cols] tensor whose rows come from a function, in parallel: dense values in a
// float dtype (streamed in blocks), or MLX-affine quantized whole (words, scales, biases). Shared
// by the converter and the synthetic-checkpoint writer.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "core/dtype.h"
#include "core/thread_pool.h"
#include "io/checkpoint_writer.h"
#include "quant/affine.h"

namespace mlxq::quant {

using RowFn = std::function<void(int64_t row, float* out)>;  // fills `cols` f32 values of a row

// Stores n f32 values as F32, BF16 or F16 (round to nearest even), at any alignment.
void store_f32_as(DType dt, const float* in, int64_t n, uint8_t* out);

// Streams rows [0, rows) to `sink` as `dtype`, a block of rows at a time.
void write_dense_rows(int64_t rows, int64_t cols, DType dtype, const RowFn& row, ThreadPool& pool,
                      const io::ByteSink& sink);

struct PackedTensor {
  std::vector<uint8_t> words, scales, biases;  // as stored: U32 codes, scales/biases in sb_dtype
};
// Quantizes every row (codes chosen with the unrounded scale and bias, then stored in sb_dtype,
// exactly as MLX does).
PackedTensor quantize_rows(int64_t rows, int64_t cols, Spec spec, Rounding rounding, DType sb_dtype,
                           const RowFn& row, ThreadPool& pool);

}  // namespace mlxq::quant
