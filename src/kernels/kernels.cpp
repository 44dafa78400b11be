// Portable scalar kernels (see kernels.h). Written so that compilers vectorise the inner loops;
// they are the reference the SIMD kernels will be tested against.
#include "kernels/kernels.h"

#include <cmath>
#include <cstring>
#include <vector>

namespace mlxq::kernels {

void Matrix::row_f32(int64_t r, float* out) const {
  const uint8_t* p = data + size_t(r) * row_bytes;
  if (quantized) {
    quant::dequantize_row_f32(p,
                              scales + size_t(r) * sb_row_bytes, biases + size_t(r) * sb_row_bytes,
                              dtype, cols, spec, out);
    return;
  }
  switch (dtype) {
    case DType::F32:
      std::memcpy(out, p, size_t(cols) * 4);
      break;
    case DType::BF16:
      for (int64_t i = 0; i < cols; ++i) out[i] = bf16_to_f32(load_u16(p + 2 * i));
      break;
    default:
      for (int64_t i = 0; i < cols; ++i) out[i] = f16_to_f32(load_u16(p + 2 * i));
      break;
  }
}

namespace {
float dot(const float* a, const float* b, int64_t n) {
  float acc[16] = {0};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int j = 0; j < 16; ++j) acc[j] += a[i + j] * b[i + j];
  float s = 0;
  for (; i < n; ++i) s += a[i] * b[i];
  for (int j = 0; j < 16; ++j) s += acc[j];
  return s;
}
}  // namespace

void matmul_reference(const Matrix& w, const float* x, int64_t T, int64_t ldx, float* y, int64_t ldy,
            ThreadPool& pool) {
  const int64_t K = w.cols;
  pool.parallel_for(size_t(w.rows), [&](size_t r0, size_t r1, int) {
    thread_local std::vector<float> row;
    if (int64_t(row.size()) < K) row.resize(size_t(K));
    for (size_t r = r0; r < r1; ++r) {
      const float* wr;
      const uint8_t* raw = w.data + r * w.row_bytes;
      if (!w.quantized && w.dtype == DType::F32 && reinterpret_cast<uintptr_t>(raw) % alignof(float) == 0) {
        wr = reinterpret_cast<const float*>(raw);
      } else {
        w.row_f32(int64_t(r), row.data());
        wr = row.data();
      }
      for (int64_t t = 0; t < T; ++t) y[t * ldy + int64_t(r)] = dot(wr, x + t * ldx, K);
    }
  });
}

void rms_norm(const float* x, const float* w, int64_t n, float eps, float* y) {
  double ss = 0;
  for (int64_t i = 0; i < n; ++i) ss += double(x[i]) * double(x[i]);
  const float inv = 1.0f / std::sqrt(float(ss / double(n)) + eps);
  if (w) {
    for (int64_t i = 0; i < n; ++i) y[i] = x[i] * inv * w[i];
  } else {
    for (int64_t i = 0; i < n; ++i) y[i] = x[i] * inv;
  }
}

void rope_neox(float* x, int64_t d, const float* inv_freq, int64_t pos) {
  const int64_t half = d / 2;
  for (int64_t i = 0; i < half; ++i) {
    if (inv_freq[i] == 0.0f) continue;
    const float ang = float(pos) * inv_freq[i];
    const float c = std::cos(ang), s = std::sin(ang);
    const float a = x[i], b = x[i + half];
    x[i] = a * c - b * s;
    x[i + half] = b * c + a * s;
  }
}

float gelu_tanh(float x) {
  const float k = 0.7978845608028654f;
  return 0.5f * x * (1.0f + std::tanh(k * (x + 0.044715f * x * x * x)));
}

void gelu_gate(const float* gate, const float* up, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = gelu_tanh(gate[i]) * up[i];
}

void softmax(float* x, int64_t n) {
  float m = -INFINITY;
  for (int64_t i = 0; i < n; ++i) m = std::max(m, x[i]);
  float s = 0;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - m);
    s += x[i];
  }
  const float inv = 1.0f / s;
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

void attend(const float* q, int64_t d, const float* k_base, const float* v_base, int64_t stride,
            int64_t ring, int64_t pos_begin, int64_t pos_end, float scale, float* scores,
            float* out) {
  const int64_t n = pos_end - pos_begin;
  for (int64_t j = 0; j < n; ++j) {
    const int64_t slot = (pos_begin + j) % ring;
    scores[j] = dot(q, k_base + slot * stride, d) * scale;
  }
  softmax(scores, n);
  for (int64_t i = 0; i < d; ++i) out[i] = 0.0f;
  for (int64_t j = 0; j < n; ++j) {
    const float* v = v_base + ((pos_begin + j) % ring) * stride;
    const float p = scores[j];
    for (int64_t i = 0; i < d; ++i) out[i] += p * v[i];
  }
}

}  // namespace mlxq::kernels
