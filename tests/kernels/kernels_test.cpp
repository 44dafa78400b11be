// Kernels against naive double-precision loops written from the definitions.
#include "kernels/kernels.h"
#include "kernels/test_matrix.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

namespace mlxq::kernels {
namespace {

TEST(Kernels, MatmulMatchesNaiveForEveryFormat) {
  ThreadPool pool(3);
  struct Fmt { bool q; DType dt; quant::Spec spec; };
  std::vector<Fmt> fmts = {{false, DType::F32, {}}, {false, DType::BF16, {}}, {false, DType::F16, {}}};
  for (int bits : {2, 3, 4, 5, 6, 8})
    for (int gs : {32, 64, 128}) fmts.push_back({true, DType::BF16, {bits, gs}});
  fmts.push_back({true, DType::F32, {3, 64}});
  const int64_t N = 37, K = 256, T = 5, ldx = K + 3, ldy = N + 2;
  std::mt19937 rng(7);
  std::normal_distribution<float> nd;
  std::vector<float> x(size_t(T * ldx));
  for (auto& v : x) v = nd(rng);
  for (const Fmt& f : fmts) {
    Owned o = make_matrix(N, K, f.q, f.dt, f.spec, 42);
    std::vector<float> y(size_t(T * ldy), -1.0f);
    matmul_reference(o.m, x.data(), T, ldx, y.data(), ldy, pool);
    for (int64_t t = 0; t < T; ++t)
      for (int64_t n = 0; n < N; ++n) {
        double ref = 0, mag = 0;
        for (int64_t k = 0; k < K; ++k) {
          ref += naive_weight(o.m, n, k) * x[size_t(t * ldx + k)];
          mag += std::fabs(naive_weight(o.m, n, k) * x[size_t(t * ldx + k)]);
        }
        ASSERT_NEAR(y[size_t(t * ldy + n)], ref, 1e-6 * mag + 1e-7)
            << dtype_name(f.dt) << " quantized=" << f.q << " bits=" << f.spec.bits << " gs=" << f.spec.group_size;
      }
    // The padding of y is untouched.
    EXPECT_EQ(y[size_t(N)], -1.0f);
  }
}

TEST(Kernels, RowSliceAndExpertStack) {
  Owned o = make_matrix(12, 64, true, DType::BF16, {4, 64}, 3);
  const Matrix s = o.m.row_slice(4, 3);
  std::vector<float> a(64), b(64);
  s.row_f32(1, a.data());
  o.m.row_f32(5, b.data());
  EXPECT_EQ(a, b);
  ExpertStack es{o.m.row_slice(0, 4), 3, 4 * o.m.row_bytes, 4 * o.m.sb_row_bytes};
  es.expert(2).row_f32(1, a.data());
  o.m.row_f32(9, b.data());
  EXPECT_EQ(a, b);
}

TEST(Kernels, RmsNormGeluSoftmax) {
  std::vector<float> x = {1.0f, -2.0f, 3.0f, 0.5f}, w = {1.0f, 0.5f, 2.0f, 1.0f}, y(4);
  rms_norm(x.data(), w.data(), 4, 1e-6f, y.data());
  const double ms = (1 + 4 + 9 + 0.25) / 4.0, inv = 1.0 / std::sqrt(ms + 1e-6);
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(y[size_t(i)], x[size_t(i)] * inv * w[size_t(i)], 1e-6);
  EXPECT_NEAR(gelu_tanh(1.0f), 0.8411920f, 1e-6);
  EXPECT_NEAR(gelu_tanh(-3.0f), -0.0036373f, 1e-6);
  std::vector<float> s = {1.0f, 2.0f, 3.0f};
  softmax(s.data(), 3);
  EXPECT_NEAR(s[2], std::exp(3.0) / (std::exp(1.0) + std::exp(2.0) + std::exp(3.0)), 1e-6);
}

TEST(Kernels, RopeNeoxPairsHalvesAndSkipsZeroFrequencies) {
  const int64_t d = 8;
  std::vector<float> x(d), inv = {1.0f, 0.5f, 0.0f, 0.0f};
  for (int i = 0; i < d; ++i) x[size_t(i)] = float(i + 1);
  std::vector<float> y = x;
  rope_neox(y.data(), d, inv.data(), 3);
  for (int i = 0; i < 4; ++i) {
    const double a = 3.0 * inv[size_t(i)];
    EXPECT_NEAR(y[size_t(i)], x[size_t(i)] * std::cos(a) - x[size_t(i + 4)] * std::sin(a), 1e-5);
    EXPECT_NEAR(y[size_t(i + 4)], x[size_t(i + 4)] * std::cos(a) + x[size_t(i)] * std::sin(a), 1e-5);
  }
  EXPECT_EQ(y[2], x[2]);  // frequency 0: pass through
  EXPECT_EQ(y[7], x[7]);
}

TEST(Kernels, AttendOverRing) {
  const int64_t d = 4, ring = 5, stride = 6;  // stride > d: several heads per slot
  std::mt19937 rng(1);
  std::normal_distribution<float> nd;
  std::vector<float> k(size_t(ring * stride)), v(size_t(ring * stride)), q(d), out(d), scores(8);
  for (auto& e : k) e = nd(rng);
  for (auto& e : v) e = nd(rng);
  for (auto& e : q) e = nd(rng);
  // Positions 7..9 live in slots 2, 3, 4.
  attend(q.data(), d, k.data(), v.data(), stride, ring, 7, 10, 0.5f, scores.data(), out.data());
  double w[3], sum = 0;
  for (int j = 0; j < 3; ++j) {
    double s = 0;
    for (int i = 0; i < d; ++i) s += double(q[size_t(i)]) * k[size_t((2 + j) * stride + i)];
    w[j] = std::exp(0.5 * s);
    sum += w[j];
  }
  for (int i = 0; i < d; ++i) {
    double o = 0;
    for (int j = 0; j < 3; ++j) o += w[j] / sum * v[size_t((2 + j) * stride + i)];
    EXPECT_NEAR(out[size_t(i)], o, 1e-5);
  }
}

}  // namespace
}  // namespace mlxq::kernels
