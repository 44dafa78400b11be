// The 16-row interleaved layout: the packer keeps every code, scale and bias (against the
// checkpoint layout's own accessors), and the AVX-512 kernel over it computes the int8 kernel's
// definition for every bit width, token count (per-token decode and token lanes), gathered rows
// and a row split over threads.
#include "kernels/interleaved.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/matmul.h"
#include "kernels/matmul_q8.h"
#include "kernels/test_matrix.h"

namespace mlxq::kernels {
namespace {

std::vector<float> random_x(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd;
  std::vector<float> x(static_cast<size_t>(n));
  for (auto& v : x) v = nd(rng);
  return x;
}

// o.m with an interleaved copy held in `il`.
Matrix with_il(const Owned& o, std::vector<uint8_t>& il) {
  il.assign(il16::matrix_bytes(o.m), 0xAB);
  il16::pack(o.m, 0, o.m.rows / 16, il.data());
  Matrix m = o.m;
  m.il = il.data();
  return m;
}

TEST(Interleaved, PackKeepsEveryCodeScaleAndBias) {
  for (int bits : {2, 3, 4, 5, 6, 8})
    for (int64_t K : {64, 704, 1280}) {
      Owned o = make_matrix(32, K, true, DType::BF16, {bits, 64}, uint32_t(bits * 100 + K));
      ASSERT_TRUE(il16::supported(o.m, 64 * q8::kMaxBlocks));
      ASSERT_EQ(il16::matrix_bytes(o.m), size_t(2) * o.m.il_group_bytes());
      ASSERT_EQ(il16::matrix_bytes(o.m), o.m.bytes()) << "the same bytes, reordered";
      std::vector<uint8_t> il;
      const Matrix m = with_il(o, il);
      for (int64_t r = 0; r < 32; ++r)
        for (int64_t k = 0; k < K; ++k) {
          const uint32_t want = quant::code_at(o.m.data + size_t(r) * o.m.row_bytes, k, bits);
          ASSERT_EQ(il16::code_at(m.il, bits, K, r, k), want) << "bits " << bits << " K " << K << " r " << r << " k " << k;
          if (k % 64 == 0) {
            ASSERT_EQ(il16::scale_at(m.il, bits, K, r, k), load_u16(o.m.scales + size_t(r) * o.m.sb_row_bytes + 2 * (k / 64)));
            ASSERT_EQ(il16::bias_at(m.il, bits, K, r, k), load_u16(o.m.biases + size_t(r) * o.m.sb_row_bytes + 2 * (k / 64)));
          }
        }
    }
}

TEST(Interleaved, SupportsOnlyWhatTheKernelTakes) {
  Owned o = make_matrix(32, 128, true, DType::BF16, {4, 64}, 1);
  EXPECT_TRUE(il16::supported(o.m, 1024));
  EXPECT_FALSE(il16::supported(o.m, 64)) << "K over the limit";
  EXPECT_FALSE(il16::supported(o.m.row_slice(0, 24), 1024)) << "rows not a multiple of 16";
  EXPECT_FALSE(il16::supported(make_matrix(32, 128, true, DType::BF16, {4, 32}, 1).m, 1024)) << "group 32";
  EXPECT_FALSE(il16::supported(make_matrix(32, 128, true, DType::F16, {4, 64}, 1).m, 1024)) << "f16 scales";
  EXPECT_FALSE(il16::supported(make_matrix(32, 128, false, DType::BF16, {}, 1).m, 1024)) << "dense";
  // A row slice keeps the copy only on group boundaries.
  std::vector<uint8_t> il;
  const Matrix m = with_il(o, il);
  EXPECT_EQ(m.row_slice(16, 16).il, il.data() + o.m.il_group_bytes());
  EXPECT_EQ(m.row_slice(8, 16).il, nullptr);
}

TEST(Interleaved, KernelComputesItsDefinition) {
  if (!q8_kernel_supported()) GTEST_SKIP() << "no AVX-512 VNNI/VBMI on this CPU";
  ThreadPool pool(2);
  // 1280: 20 paired blocks; 1344 and 704: an odd last block.
  for (int64_t K : {1280, 1344, 704}) {
    const int64_t N = 48, ldy = N + 3;
    const std::vector<float> x = random_x(70 * K, 5);
    ActivationBuffer buf;
    buf.reserve(70, K);
    for (int bits : {2, 3, 4, 5, 6, 8}) {
      Owned o = make_matrix(N, K, true, DType::BF16, {bits, 64}, uint32_t(43 + bits));
      std::vector<uint8_t> il;
      const Matrix m = with_il(o, il);
      for (const Precision p : {Precision::Fast, Precision::Int8}) {
        EXPECT_EQ(kernel_name(m, p), "il16-avx512");
        EXPECT_EQ(kernel_name(m, Precision::Exact).substr(0, 3), "f32");
        for (int64_t T : {1, 2, 3, 5, 15, 16, 23, 70}) {  // below 16: per token; 16+: token lanes
          SCOPED_TRACE(p == Precision::Fast ? "Fast" : "Int8");
          const Activations a = buf.prepare(x.data(), T, K, K, p);
          std::vector<float> y(size_t(T * ldy), -1.0f);
          MatmulTask task{&m, a, y.data(), ldy};
          matmul(std::span<const MatmulTask>(&task, 1), p, pool);
          for (int64_t t = 0; t < T; ++t) {
            for (int64_t n = 0; n < N; ++n) {
              const double want = q8_expected(o.m, n, a.q + t * K, a.q2 ? a.q2 + t * K : nullptr, a.d + t * (K / 64),
                                              a.s + t * (K / 64));
              ASSERT_NEAR(y[size_t(t * ldy + n)], want, 1e-4 * std::sqrt(double(K)))
                  << "K " << K << " bits " << bits << " T " << T << " token " << t << " row " << n;
            }
            for (int64_t n = N; n < ldy; ++n) ASSERT_EQ(y[size_t(t * ldy + n)], -1.0f) << "wrote past the rows";
          }
        }
      }
    }
  }
}

// Routed experts read their tokens in place (a scrambled index), in both paths.
TEST(Interleaved, KernelGathersRows) {
  if (!q8_kernel_supported()) GTEST_SKIP() << "no AVX-512 VNNI/VBMI on this CPU";
  ThreadPool pool(2);
  const int64_t N = 32, T = 90, K = 704;
  const std::vector<float> x = random_x(T * K, 12);
  for (const int64_t n : {3, 37}) {
    std::vector<int32_t> idx(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) idx[size_t(i)] = int32_t((i * 53 + 7) % T);
    ActivationBuffer buf;
    buf.reserve(T, K);
    const Activations all = buf.prepare(x.data(), T, K, K, Precision::Fast);
    Owned o = make_matrix(N, K, true, DType::BF16, {3, 64}, 77);
    std::vector<uint8_t> il;
    const Matrix m = with_il(o, il);
    std::vector<float> y(size_t(n * N), -1.0f);
    const MatmulTask task{&m, all.rows(idx.data(), n), y.data(), N};
    matmul(std::span<const MatmulTask>(&task, 1), Precision::Fast, pool);
    for (int64_t t = 0; t < n; ++t)
      for (int64_t r = 0; r < N; ++r) {
        const int64_t row = idx[size_t(t)];
        const double want = q8_expected(o.m, r, all.q + row * K, all.q2 + row * K, all.d + row * (K / 64),
                                        all.s + row * (K / 64));
        ASSERT_NEAR(y[size_t(t * N + r)], want, 1e-4 * std::sqrt(double(K))) << "n " << n << " t " << t << " row " << r;
      }
  }
}

}  // namespace
}  // namespace mlxq::kernels
