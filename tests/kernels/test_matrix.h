// Test helper: random weight matrices in every storage format (dense F32/BF16/F16, MLX affine
// at any bits/group size), and the naive definition of their elements.
#pragma once
#include <cstring>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "kernels/matmul_internal.h"
#include "kernels/matrix.h"
#include "quant/affine.h"

namespace mlxq::kernels {

struct Owned {  // storage behind a Matrix view
  std::vector<uint8_t> data, scales, biases;
  Matrix m;
};

// n activations drawn from N(0, 1).
inline std::vector<float> random_x(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd;
  std::vector<float> x(static_cast<size_t>(n));
  for (auto& v : x) v = nd(rng);
  return x;
}

inline Owned make_matrix(int64_t rows, int64_t cols, bool quantized, DType dt, quant::Spec spec, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 0.05f);
  Owned o;
  o.m.rows = rows;
  o.m.cols = cols;
  o.m.dtype = dt;
  std::vector<float> row(static_cast<size_t>(cols));
  const size_t esz = dtype_size(dt);
  if (!quantized) {
    o.m.row_bytes = size_t(cols) * esz;
    o.data.resize(size_t(rows) * o.m.row_bytes);
  } else {
    o.m.quantized = true;
    o.m.spec = spec;
    o.m.row_bytes = size_t(quant::packed_words(cols, spec.bits)) * 4;
    o.m.sb_row_bytes = size_t(cols / spec.group_size) * esz;
    o.data.resize(size_t(rows) * o.m.row_bytes);
    o.scales.resize(size_t(rows) * o.m.sb_row_bytes);
    o.biases.resize(size_t(rows) * o.m.sb_row_bytes);
  }
  std::vector<float> s(static_cast<size_t>(cols)), b(static_cast<size_t>(cols));
  for (int64_t r = 0; r < rows; ++r) {
    for (auto& v : row) v = nd(rng);
    uint8_t* dst = o.data.data() + size_t(r) * o.m.row_bytes;
    auto put = [&](uint8_t* p, const float* v, int64_t n) {
      for (int64_t i = 0; i < n; ++i) {
        if (dt == DType::F32) std::memcpy(p + i * 4, &v[i], 4);
        else {
          const uint16_t h = dt == DType::BF16 ? f32_to_bf16(v[i]) : f32_to_f16(v[i]);
          std::memcpy(p + i * 2, &h, 2);
        }
      }
    };
    if (!quantized) {
      put(dst, row.data(), cols);
    } else {
      quant::quantize_row(row.data(), cols, spec, quant::Rounding::Cpu, reinterpret_cast<uint32_t*>(dst),
                          s.data(), b.data());
      put(o.scales.data() + size_t(r) * o.m.sb_row_bytes, s.data(), cols / spec.group_size);
      put(o.biases.data() + size_t(r) * o.m.sb_row_bytes, b.data(), cols / spec.group_size);
    }
  }
  o.m.data = o.data.data();
  o.m.scales = o.scales.data();
  o.m.biases = o.biases.data();
  return o;
}

// W[n, k] straight from the definition: code_at * scale + bias.
inline double naive_weight(const Matrix& m, int64_t n, int64_t k) {
  if (m.quantized) {
    const auto* words = reinterpret_cast<const uint32_t*>(m.data + size_t(n) * m.row_bytes);
    const int64_t g = k / m.spec.group_size;
    const float s = quant::load_scalar(m.scales + size_t(n) * m.sb_row_bytes, m.dtype, g);
    const float b = quant::load_scalar(m.biases + size_t(n) * m.sb_row_bytes, m.dtype, g);
    return double(s) * quant::code_at(words, k, m.spec.bits) + double(b);
  }
  return quant::load_scalar(m.data + size_t(n) * m.row_bytes, m.dtype, k);
}

// The value the int8 kernel computes, from its definition: per 64-block, scale * d * sum(q*xq)
// plus bias * s, in double, where xq is 256 * q + q2 with a second part and q without.
inline double q8_expected(const Matrix& m, int64_t r, const int8_t* q, const int8_t* q2, const float* d, const float* s) {
  const auto* words = m.data + size_t(r) * m.row_bytes;
  double acc = 0;
  for (int64_t b = 0; b < m.cols / 64; ++b) {
    const int64_t g = b * 64 / m.spec.group_size;
    const double sc = quant::load_scalar(m.scales + size_t(r) * m.sb_row_bytes, m.dtype, g);
    const double bi = quant::load_scalar(m.biases + size_t(r) * m.sb_row_bytes, m.dtype, g);
    int64_t isum = 0;
    for (int i = 0; i < 64; ++i) {
      const int64_t at = q8_storage_index(b * 64 + i, m.cols);
      isum += int64_t(quant::code_at(words, b * 64 + i, m.spec.bits)) * (q2 ? (q[at] << kQ8Shift) + q2[at] : q[at]);
    }
    acc += sc * double(d[b]) * double(isum) + bi * double(s[b]);
  }
  return acc;
}

}  // namespace mlxq::kernels
