// Row-parallel dense and quantized tensor writing (see row_writer.h).
#include "convert/row_writer.h"

#include <algorithm>
#include <cstring>

namespace mlxq::quant {

void store_f32_as(DType dt, const float* in, int64_t n, uint8_t* out) {
  if (dt == DType::F32) {
    std::memcpy(out, in, size_t(n) * 4);
    return;
  }
  for (int64_t i = 0; i < n; ++i) {
    const uint16_t h = dt == DType::BF16 ? f32_to_bf16(in[i]) : f32_to_f16(in[i]);
    std::memcpy(out + 2 * i, &h, 2);
  }
}

void write_dense_rows(int64_t rows, int64_t cols, DType dtype, const RowFn& row, ThreadPool& pool,
                      const io::ByteSink& sink) {
  const int64_t block = 256;
  const size_t esz = dtype_size(dtype);
  std::vector<uint8_t> buf(size_t(std::min(block, rows) * cols) * esz);
  for (int64_t r0 = 0; r0 < rows; r0 += block) {
    const int64_t n = std::min(block, rows - r0);
    pool.parallel_for(size_t(n), [&](size_t b, size_t e, int) {
      std::vector<float> values(static_cast<size_t>(cols));
      for (size_t i = b; i < e; ++i) {
        row(r0 + int64_t(i), values.data());
        store_f32_as(dtype, values.data(), cols, &buf[i * size_t(cols) * esz]);
      }
    });
    sink(buf.data(), size_t(n * cols) * esz);
  }
}

PackedTensor quantize_rows(int64_t rows, int64_t cols, Spec spec, Rounding rounding, DType sb_dtype,
                           const RowFn& row, ThreadPool& pool) {
  PackedTensor t;
  const int64_t wpr = packed_words(cols, spec.bits), gpr = cols / spec.group_size;
  const size_t esz = dtype_size(sb_dtype);
  t.words.resize(size_t(rows * wpr) * 4);
  t.scales.resize(size_t(rows * gpr) * esz);
  t.biases.resize(size_t(rows * gpr) * esz);
  pool.parallel_for(size_t(rows), [&](size_t b, size_t e, int) {
    std::vector<float> values(static_cast<size_t>(cols)), sc(static_cast<size_t>(gpr)), bi(static_cast<size_t>(gpr));
    std::vector<uint32_t> words(static_cast<size_t>(wpr));
    for (size_t i = b; i < e; ++i) {
      row(int64_t(i), values.data());
      quantize_row(values.data(), cols, spec, rounding, words.data(), sc.data(), bi.data());
      std::memcpy(&t.words[i * size_t(wpr) * 4], words.data(), size_t(wpr) * 4);
      store_f32_as(sb_dtype, sc.data(), gpr, &t.scales[i * size_t(gpr) * esz]);
      store_f32_as(sb_dtype, bi.data(), gpr, &t.biases[i * size_t(gpr) * esz]);
    }
  });
  return t;
}

}  // namespace mlxq::quant
