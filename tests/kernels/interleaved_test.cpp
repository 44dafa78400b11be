// The 16-row interleaved layout: the packer keeps every code, scale and bias (against the
// checkpoint layout's own accessors), and the AVX-512 kernel over it computes the int8 kernel's
// definition for every bit width, token count (per-token decode and token lanes), gathered rows
// and a row split over threads.
#include "kernels/interleaved.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "kernels/matmul.h"
#include "kernels/matmul_internal.h"
#include "kernels/test_matrix.h"

namespace mlxq::kernels {
namespace {

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

// Every bit of a tile's code registers holds exactly one bit of one code (per byte position:
// 16 steps x bits code bits in 2 * bits registers x 8 bits).
TEST(Interleaved, EveryCodeBitHasItsOwnPlace) {
  for (int bits : {2, 3, 4, 5, 6, 8}) {
    std::vector<int> used(static_cast<size_t>(il16::code_regs(bits) * 8), 0);
    for (int m = 0; m < 16; ++m)
      for (int b = 0; b < bits; ++b) {
        const il16::BitPlace p = il16::bit_place(bits, m, b);
        ASSERT_TRUE(p.reg >= 0 && p.reg < il16::code_regs(bits) && p.shift >= 0 && p.shift < 8)
            << "bits " << bits << " step " << m << " bit " << b;
        ++used[size_t(p.reg * 8 + p.shift)];
      }
    for (size_t i = 0; i < used.size(); ++i) EXPECT_EQ(used[i], 1) << "bits " << bits << " register " << i / 8 << " bit " << i % 8;
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

// What the CPU runs for an interleaved matrix: the interleaved kernel with AVX-512 VNNI/VBMI;
// otherwise the AVX2 int8 kernel (2-6 bits) or the f32 one, both on the checkpoint layout.
std::string expected_kernel(int bits, bool avx512_on) {
  if (avx512_on && q8_kernel_supported()) return "il16-avx512";
  if (q8_avx2_kernel_supported() && bits <= 6) return "q8-avx2";
  return "f32";
}

// y[t * ldy + r] against the kernel's definition: the int8 sums (q8_expected) for the int8
// kernels, the f32 dot product of the weights with x for the f32 one.
void expect_definition(const Owned& o, const std::string& kernel, const Activations& a, const std::vector<float>& x,
                       const std::vector<float>& y, int64_t n_tokens, int64_t ldy, const std::string& what) {
  const int64_t K = o.m.cols, N = o.m.rows;
  for (int64_t t = 0; t < n_tokens; ++t) {
    const int64_t row = a.row(t);
    for (int64_t n = 0; n < N; ++n) {
      double want = 0;
      if (kernel == "f32") {
        for (int64_t k = 0; k < K; ++k) want += naive_weight(o.m, n, k) * double(x[size_t(row * K + k)]);
      } else {
        want = q8_expected(o.m, n, a.q + row * K, a.q2 ? a.q2 + row * K : nullptr, a.d + row * (K / 64),
                           a.s + row * (K / 64));
      }
      ASSERT_NEAR(y[size_t(t * ldy + n)], want, 1e-4 * std::sqrt(double(K)))
          << what << " kernel " << kernel << " token " << t << " row " << n;
    }
    for (int64_t n = N; n < ldy; ++n) ASSERT_EQ(y[size_t(t * ldy + n)], -1.0f) << "wrote past the rows";
  }
}

TEST(Interleaved, KernelComputesItsDefinition) {
  ThreadPool pool(2);
  // With the AVX-512 kernels off the copy is ignored: what a CPU without them runs.
  for (const bool avx512 : {true, false}) {
    set_avx512_kernels_enabled(avx512);
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
        const std::string kernel = expected_kernel(bits, avx512);
        for (const Precision p : {Precision::Fast, Precision::Int8}) {
          EXPECT_EQ(kernel_name(m, p).substr(0, kernel.size()), kernel);
          EXPECT_EQ(kernel_name(m, Precision::Exact).substr(0, 3), "f32");
          for (int64_t T : {1, 2, 3, 5, 15, 16, 23, 70}) {  // 1: decode; more: 4 tokens per pass
            const Activations a = buf.prepare(x.data(), T, K, K, p);
            std::vector<float> y(size_t(T * ldy), -1.0f);
            MatmulTask task{&m, a, y.data(), ldy};
            matmul(std::span<const MatmulTask>(&task, 1), p, pool);
            expect_definition(o, kernel, a, x, y, T, ldy,
                              std::string(p == Precision::Fast ? "Fast" : "Int8") + " K " + std::to_string(K) +
                                  " bits " + std::to_string(bits) + " T " + std::to_string(T));
          }
        }
      }
    }
  }
  set_avx512_kernels_enabled(true);
}

// Routed experts read their tokens in place (a scrambled index), one token and many.
TEST(Interleaved, KernelGathersRows) {
  ThreadPool pool(2);
  const int64_t N = 32, T = 90, K = 704;
  const std::vector<float> x = random_x(T * K, 12);
  for (const int64_t n : {1, 3, 37}) {
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
    expect_definition(o, expected_kernel(3, true), all.rows(idx.data(), n), x, y, n, N, "n " + std::to_string(n));
  }
}

// Several tokens on AMX tiles (where the CPU has AMX-INT8): the int8 kernel's definition, and
// the AVX-512 kernel's floats up to the order of two f32 additions (AMX adds a block's scale
// and bias parts into one accumulator), for every width, both precisions, token counts around
// the 8-token (Fast) and 16-token tiles, an odd last block and gathered rows.
TEST(Interleaved, AmxKernelMatchesAvx512) {
  ThreadPool pool(2);
  const int64_t N = 48, K = 1344, Tall = 150;
  const std::vector<float> x = random_x(Tall * K, 21);
  ActivationBuffer buf;
  buf.reserve(Tall, K);
  std::vector<int32_t> idx(static_cast<size_t>(Tall));
  for (int64_t i = 0; i < Tall; ++i) idx[size_t(i)] = int32_t((i * 67 + 11) % Tall);
  for (int bits : {2, 3, 4, 5, 6, 8}) {
    Owned o = make_matrix(N, K, true, DType::BF16, {bits, 64}, uint32_t(91 + bits));
    std::vector<uint8_t> il;
    const Matrix m = with_il(o, il);
    for (const Precision p : {Precision::Fast, Precision::Int8}) {
      const Activations all = buf.prepare(x.data(), Tall, K, K, p);
      for (const bool gathered : {false, true})
        for (int64_t T : {4, 8, 9, 15, 16, 17, 70, 150}) {
          const Activations a = gathered ? all.rows(idx.data(), T) : all.slice(0, T);
          std::vector<float> y_amx(size_t(T * N), -1.0f), y_ref(size_t(T * N), -2.0f);
          for (const bool amx : {true, false}) {
            set_amx_kernel_enabled(amx);
            MatmulTask task{&m, a, (amx ? y_amx : y_ref).data(), N};
            matmul(std::span<const MatmulTask>(&task, 1), p, pool);
          }
          set_amx_kernel_enabled(true);
          const std::string what = "bits " + std::to_string(bits) + (p == Precision::Fast ? " Fast" : " Int8") +
                                   (gathered ? " gathered" : "") + " T " + std::to_string(T);
          for (size_t i = 0; i < y_amx.size(); ++i)
            ASSERT_NEAR(y_amx[i], y_ref[i], 1e-5 * (1 + std::fabs(y_ref[i]))) << what << " at " << i;
          expect_definition(o, expected_kernel(bits, true), a, x, y_amx, T, N, what);
        }
    }
  }
}

}  // namespace
}  // namespace mlxq::kernels
