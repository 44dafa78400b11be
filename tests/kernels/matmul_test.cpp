// The SIMD matmul kernels against the scalar reference (kernels.h) and the naive definition:
// every storage format, every Highway target this CPU supports, the int8 kernel against the
// exact value of its own integer arithmetic, gathered rows and the row split over threads.
#include "kernels/matmul.h"

#include <gtest/gtest.h>

#include <cmath>
#include <tuple>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "kernels/interleaved.h"
#include "kernels/kernels.h"
#include "kernels/matmul_internal.h"
#include "kernels/test_matrix.h"
#include "kernels/vector_ops.h"
#include "hwy_targets.h"

namespace mlxq::kernels {
namespace {

struct Fmt {
  bool q;
  DType dt;
  quant::Spec spec;
};

std::vector<Fmt> all_formats() {
  std::vector<Fmt> fmts = {{false, DType::F32, {}}, {false, DType::BF16, {}}, {false, DType::F16, {}}};
  for (int bits : {2, 3, 4, 5, 6, 8})
    for (int gs : {32, 64, 128}) fmts.push_back({true, DType::BF16, {bits, gs}});
  fmts.push_back({true, DType::F32, {3, 64}});
  fmts.push_back({true, DType::F16, {5, 128}});
  return fmts;
}

using test::ForceTarget;
using test::hwy_targets;

TEST(Matmul, ExactMatchesReferenceOnEveryTarget) {
  ThreadPool pool(2);
  const int64_t N = 37, K = 1280, ldx = K + 3, ldy = N + 2;
  const std::vector<float> x = random_x(9 * ldx, 3);
  for (int64_t target : hwy_targets()) {
    ForceTarget force(target);
    SCOPED_TRACE(hwy::TargetName(target));
    for (const Fmt& f : all_formats()) {
      Owned o = make_matrix(N, K, f.q, f.dt, f.spec, 42);
      for (int64_t T : {1, 2, 3, 4, 5, 9}) {
        std::vector<float> ref(size_t(T * ldy), -1.0f), y(size_t(T * ldy), -1.0f);
        matmul_reference(o.m, x.data(), T, ldx, ref.data(), ldy, pool);
        matmul(o.m, x.data(), T, ldx, y.data(), ldy, pool, Precision::Exact);
        for (int64_t t = 0; t < T; ++t)
          for (int64_t n = 0; n < N; ++n)
            ASSERT_NEAR(y[size_t(t * ldy + n)], ref[size_t(t * ldy + n)], 2e-5 * std::sqrt(double(K)))
                << "bits " << f.spec.bits << " gs " << f.spec.group_size << " T " << T;
      }
    }
  }
}

// The SIMD dequantizer of the f32 kernels gives Matrix::row_f32's values bit for bit, on every
// target; the last row ends where its buffer does (ASan would flag a read past it).
TEST(Matmul, SimdDequantizationMatchesTheScalarOneOnEveryTarget) {
  for (int64_t target : hwy_targets()) {
    ForceTarget force(target);
    SCOPED_TRACE(hwy::TargetName(target));
    for (const Fmt& f : all_formats()) {
      for (int64_t K : {128, 384, 2816}) {
        if (K % f.spec.group_size != 0) continue;
        Owned o = make_matrix(5, K, f.q, f.dt, f.spec, 7);
        std::vector<float> want(static_cast<size_t>(K)), got(static_cast<size_t>(K), -1.0f);
        for (int64_t r = 0; r < 5; ++r) {
          o.m.row_f32(r, want.data());
          hwy_kernels::dequant_row_f32(o.m, r, got.data());
          for (int64_t i = 0; i < K; ++i)
            ASSERT_EQ(got[size_t(i)], want[size_t(i)]) << "bits " << f.spec.bits << " gs " << f.spec.group_size
                                                       << " K " << K << " row " << r << " col " << i;
        }
      }
    }
  }
}

// Every form of the activations starts on a cache line, and so does every row of it (K % 64 == 0):
// the kernels read them with 512-bit loads.
TEST(Matmul, ActivationRowsAreCacheAligned) {
  const int64_t K = 192, T = 3;
  const std::vector<float> x = random_x(T * K, 9);
  ActivationBuffer buf;
  buf.reserve(T, K);
  for (Precision p : {Precision::Fast, Precision::Int8}) {
    const Activations a = buf.prepare(x.data(), T, K, K, p);
    for (const void* ptr : {static_cast<const void*>(a.q), static_cast<const void*>(a.q2), static_cast<const void*>(a.xb),
                            static_cast<const void*>(a.xb2), static_cast<const void*>(a.d)})
      if (ptr) {
        EXPECT_EQ(reinterpret_cast<uintptr_t>(ptr) % 64, 0u);
      }
    if (a.q) {
      EXPECT_EQ(reinterpret_cast<uintptr_t>(a.slice(1, 2).q) % 64, 0u);
    }
  }
}

// Without AVX-512 VNNI/VBMI, Fast precision must fall back to the exact f32 kernel instead.
TEST(Matmul, FastFallsBackWithoutTheIsa) {
  ThreadPool pool(2);
  const int64_t K = 1280, N = 9, T = 3;
  const std::vector<float> x = random_x(T * K, 8);
  Owned q = make_matrix(N, K, true, DType::BF16, {3, 64}, 45);
  Owned bf = make_matrix(N, K, false, DType::BF16, {}, 46);
  ActivationBuffer buf;
  buf.reserve(T, K);
  const Activations a = buf.prepare(x.data(), T, K, K, Precision::Fast);
  EXPECT_EQ(a.q != nullptr, q8_kernel_supported() || q8_avx2_kernel_supported());
  EXPECT_EQ(a.xb != nullptr, bf16_kernel_supported());
  set_q8_kernel_enabled(false);  // what a CPU without the ISA runs
  for (const Owned* o : {&q, &bf}) {
    std::vector<float> y(size_t(T * N)), ref(y.size());
    const MatmulTask task{&o->m, a, y.data(), N};
    matmul(std::span<const MatmulTask>(&task, 1), Precision::Fast, pool);
    matmul_reference(o->m, x.data(), T, K, ref.data(), N, pool);
    for (size_t i = 0; i < y.size(); ++i) ASSERT_NEAR(y[i], ref[i], 2e-5 * std::sqrt(double(K)));
    EXPECT_EQ(kernel_name(o->m, Precision::Fast).rfind("f32-hwy:", 0), 0u);
  }
  set_q8_kernel_enabled(true);
}

// Both int8 kernels (AVX-512, and AVX2 with the AVX-512 kernels switched off) against their
// integer definition, for every format, with and without an odd last block, any token count,
// with two-part activations (Fast) and one part (Int8).
// A matrix no int8 kernel takes (group 32; 8-bit codes on AVX2; a CPU without the ISA) runs
// the f32 kernel, whose definition is the exact product; the kernel name says which ran.
TEST(Matmul, Int8KernelComputesItsDefinition) {
  ThreadPool pool(2);
  for (const bool avx512 : {true, false}) {
    set_avx512_kernels_enabled(avx512);
    const bool has512 = avx512 && q8_kernel_supported(), has2 = q8_avx2_kernel_supported();
    SCOPED_TRACE(avx512 ? "AVX-512 kernels on" : "AVX-512 kernels off");
    // K = 1280: 20 blocks (all paired, more than 16); 1344 and 704: an odd last block.
    for (int64_t K : {1280, 1344, 704}) {
      const int64_t N = 37, ldy = N + 1;
      const std::vector<float> x = random_x(70 * K, 5);
      ActivationBuffer buf;
      buf.reserve(70, K);
      for (const Fmt& f : all_formats()) {
        if (!f.q || K % f.spec.group_size != 0) continue;
        Owned o = make_matrix(N, K, f.q, f.dt, f.spec, 43);
        const std::string want_kernel = f.spec.group_size == 32 ? "f32"
                                        : has512                 ? "q8-avx512"
                                        : has2 && f.spec.bits <= 6 ? "q8-avx2"
                                                                   : "f32";
        EXPECT_EQ(kernel_name(o.m, Precision::Fast).substr(0, want_kernel.size()), want_kernel)
            << "bits " << f.spec.bits << " gs " << f.spec.group_size;
        for (const Precision p : {Precision::Fast, Precision::Int8})
        for (int64_t T : {1, 2, 3, 4, 5, 9, 16, 23, 70}) {  // 16+: token-lane tiles, 70: 2 chunks
          SCOPED_TRACE(p == Precision::Fast ? "Fast" : "Int8");
          const Activations a = buf.prepare(x.data(), T, K, K, p);
          ASSERT_EQ(a.q != nullptr, has512 || has2);
          ASSERT_EQ(a.q2 != nullptr, (has512 || has2) && p == Precision::Fast);
          std::vector<float> y(size_t(T * ldy), -1.0f), ref(size_t(T * ldy));
          MatmulTask task{&o.m, a, y.data(), ldy};
          matmul(std::span<const MatmulTask>(&task, 1), p, pool);
          matmul_reference(o.m, x.data(), T, K, ref.data(), ldy, pool);
          double err2 = 0, ref2 = 0;
          for (int64_t t = 0; t < T; ++t)
            for (int64_t n = 0; n < N; ++n) {
              const double want = want_kernel == "f32"
                                      ? double(ref[size_t(t * ldy + n)])
                                      : q8_expected(o.m, n, a.q + t * K, a.q2 ? a.q2 + t * K : nullptr,
                                                    a.d + t * (K / 64), a.s + t * (K / 64));
              ASSERT_NEAR(y[size_t(t * ldy + n)], want, 1e-4 * std::sqrt(double(K)))
                  << "K " << K << " bits " << f.spec.bits << " gs " << f.spec.group_size << " T " << T << " row " << n;
              const double e = double(y[size_t(t * ldy + n)]) - ref[size_t(t * ldy + n)];
              err2 += e * e;
              ref2 += double(ref[size_t(t * ldy + n)]) * ref[size_t(t * ldy + n)];
            }
          // One int8 part in blocks of 64 costs a few percent at most of the output's magnitude,
          // two parts about 1/256 of that.
          const double rel = std::sqrt(err2 / ref2);
          const double bar = want_kernel == "f32" ? 1e-5 : p == Precision::Int8 ? 0.03 : 3e-4;
          EXPECT_LT(rel, bar) << "K " << K << " bits " << f.spec.bits << " gs " << f.spec.group_size;
          if (want_kernel != "f32" && p == Precision::Int8) {
            EXPECT_GT(rel, 1e-3) << "K " << K << " bits " << f.spec.bits;  // really one part
          }
        }
      }
    }
  }
  set_avx512_kernels_enabled(true);
}

// The bf16 kernel: sum of bf16(w) * bf16(x) with f32 accumulation (Int8 precision), or of
// bf16(w) * (bf16(x) + bf16(x - bf16(x))) (Fast), for K with and without a tail of 32, any token
// count. Where the CPU lacks AVX512-BF16 there is no bf16 form and x is used unrounded. From two
// tokens on, a token's sums are the same bits whatever the token count (2-8 take rows in pairs, 9
// and more 4-row tiles) and for a row alone: a sequence's logits in a batched decode step do not
// depend on how many other sequences share it.
TEST(Matmul, Bf16KernelComputesItsDefinition) {
  ThreadPool pool(2);
  for (int64_t K : {4096, 2816, 720, 50}) {
    const int64_t N = 21, ldy = N + 3;
    const std::vector<float> x = random_x(9 * K, 6);
    Owned o = make_matrix(N, K, false, DType::BF16, {}, 44);
    ActivationBuffer buf;
    buf.reserve(9, K);
    for (const Precision p : {Precision::Fast, Precision::Int8}) {
      std::vector<float> y9;  // the 9-token run's sums (the T loop ends with it)
      std::vector<std::vector<float>> several;
      for (int64_t T : {1, 2, 3, 4, 6, 8, 9}) {
        const Activations a = buf.prepare(x.data(), T, K, K, p);
        ASSERT_EQ(a.xb != nullptr, bf16_kernel_supported());
        ASSERT_EQ(a.xb2 != nullptr, bf16_kernel_supported() && p == Precision::Fast);
        std::vector<float> y(size_t(T * ldy), -1.0f);
        MatmulTask task{&o.m, a, y.data(), ldy};
        matmul(std::span<const MatmulTask>(&task, 1), p, pool);
        double err2 = 0, ref2 = 0;
        for (int64_t t = 0; t < T; ++t)
          for (int64_t n = 0; n < N; ++n) {
            double want = 0, exact = 0;
            for (int64_t k = 0; k < K; ++k) {
              const float v = x[size_t(t * K + k)];
              const float hi = round_bf16(v);
              const double xv = !a.xb ? v : a.xb2 ? double(hi) + double(round_bf16(v - hi)) : double(hi);
              want += naive_weight(o.m, n, k) * xv;
              exact += naive_weight(o.m, n, k) * double(v);
            }
            ASSERT_NEAR(y[size_t(t * ldy + n)], want, 1e-5 * std::sqrt(double(K)))
                << "K " << K << " T " << T << " row " << n << (p == Precision::Fast ? " Fast" : " Int8");
            err2 += (want - exact) * (want - exact);
            ref2 += exact * exact;
          }
        // Rows are taken in pairs or fours: a row alone gives the same bits.
        for (int64_t n = 0; n < N; ++n) {
          std::vector<float> alone(size_t(T * ldy), -1.0f);
          const MatmulTask one{&o.m, a, alone.data(), ldy};
          matmul_rows(one, n, n + 1, p);
          for (int64_t t = 0; t < T; ++t)
            EXPECT_EQ(alone[size_t(t * ldy + n)], y[size_t(t * ldy + n)]) << "K " << K << " T " << T << " row " << n;
        }
        // bf16 activations: ~2^-9 relative per value; two parts: ~2^-17
        if (a.xb) {
          EXPECT_LT(std::sqrt(err2 / ref2), p == Precision::Fast ? 2e-5 : 4e-3) << "K " << K;
        }
        if (T == 9) y9 = y;
        else if (T >= 2) several.push_back(y);
      }
      for (const std::vector<float>& y : several)
        for (size_t i = 0; i < y.size(); ++i)
          EXPECT_EQ(y[i], y9[i]) << "K " << K << " T " << y.size() / size_t(ldy) << " at " << i;
    }
  }
}

// The bf16 kernel on AMX tiles (16 or more tokens, where the CPU has AMX-BF16): the same
// definition as above, and the AVX-512 kernel's sums up to f32 rounding; the tiled form follows
// whole-tile slices and is dropped for others and for gathered rows.
TEST(Matmul, Bf16AmxKernelComputesItsDefinition) {
  ThreadPool pool(2);
  for (int64_t K : {4096, 2816, 736}) {
    const int64_t N = 48, Tmax = 70;
    const std::vector<float> x = random_x(Tmax * K, 8);
    Owned o = make_matrix(N, K, false, DType::BF16, {}, 45);
    ActivationBuffer buf;
    buf.reserve(Tmax, K);
    for (const Precision p : {Precision::Fast, Precision::Int8})
      for (int64_t T : {16, 17, 40, 70}) {
        const Activations a = buf.prepare(x.data(), T, K, K, p);
        ASSERT_EQ(a.xbt != nullptr, a.xb != nullptr && amx_kernel_supported()) << "K " << K;
        EXPECT_EQ(a.slice(16, T - 16).xbt != nullptr, a.xbt != nullptr);
        EXPECT_EQ(a.slice(5, T - 5).xbt, nullptr);
        const int32_t idx[2] = {1, 0};
        EXPECT_EQ(a.rows(idx, 2).xbt, nullptr);
        std::vector<float> y(size_t(T * N), -1.0f), y_ref(size_t(T * N), -2.0f);
        for (const bool amx : {true, false}) {
          set_amx_kernel_enabled(amx);
          MatmulTask task{&o.m, a, (amx ? y : y_ref).data(), N};
          matmul(std::span<const MatmulTask>(&task, 1), p, pool);
        }
        set_amx_kernel_enabled(true);
        for (int64_t t = 0; t < T; ++t)
          for (int64_t n = 0; n < N; ++n) {
            double want = 0;
            for (int64_t k = 0; k < K; ++k) {
              const float v = x[size_t(t * K + k)];
              const float hi = round_bf16(v);
              const double xv = !a.xb ? v : a.xb2 ? double(hi) + double(round_bf16(v - hi)) : double(hi);
              want += naive_weight(o.m, n, k) * xv;
            }
            const std::string what = "K " + std::to_string(K) + " T " + std::to_string(T) + " token " +
                                     std::to_string(t) + " row " + std::to_string(n) +
                                     (p == Precision::Fast ? " Fast" : " Int8");
            ASSERT_NEAR(y[size_t(t * N + n)], want, 1e-5 * std::sqrt(double(K))) << what;
            ASSERT_NEAR(y[size_t(t * N + n)], y_ref[size_t(t * N + n)], 1e-5 * std::sqrt(double(K))) << what;
          }
      }
  }
}

// The paired storage order is a permutation, and quantize_row_q8 stores round(x/d) there.
TEST(Matmul, Int8ActivationLayout) {
  for (int64_t K : {64, 128, 704, 1344}) {
    std::vector<int> seen(static_cast<size_t>(K), 0);
    for (int64_t k = 0; k < K; ++k) {
      const int64_t i = q8_storage_index(k, K);
      ASSERT_GE(i, 0);
      ASSERT_LT(i, K);
      ++seen[size_t(i)];
    }
    for (int64_t i = 0; i < K; ++i) ASSERT_EQ(seen[size_t(i)], 1) << "K " << K << " index " << i;
    const std::vector<float> x = random_x(K, 11);
    std::vector<int8_t> q(static_cast<size_t>(K));
    std::vector<float> d(static_cast<size_t>(K / 64)), s(d.size());
    quantize_row_q8(x.data(), K, q.data(), d.data(), s.data());
    std::vector<int8_t> q2(q.size());
    std::vector<float> d2(d.size()), s2(s.size());
    quantize_row_q8_scalar(x.data(), K, q2.data(), d2.data(), s2.data());  // the SIMD one matches it
    ASSERT_EQ(q, q2);
    ASSERT_EQ(d, d2);
    ASSERT_EQ(s, s2);
    // Two parts: the same first part, the residual in q2, d = d1 / 256; SIMD = scalar.
    std::vector<int8_t> p1(q.size()), p2(q.size()), r1(q.size()), r2(q.size());
    std::vector<float> pd(d.size()), ps(d.size()), rd(d.size()), rs(d.size());
    quantize_row_q8(x.data(), K, p1.data(), pd.data(), ps.data(), p2.data());
    quantize_row_q8_scalar(x.data(), K, r1.data(), rd.data(), rs.data(), r2.data());
    ASSERT_EQ(p1, r1);
    ASSERT_EQ(p2, r2);
    ASSERT_EQ(pd, rd);
    ASSERT_EQ(ps, rs);
    ASSERT_EQ(p1, q);
    for (int64_t b = 0; b < K / 64; ++b) {
      ASSERT_EQ(pd[size_t(b)], d[size_t(b)] / 256.0f);
      int32_t sum = 0;
      for (int i = 0; i < 64; ++i) {
        const int64_t k = b * 64 + i, at = q8_storage_index(k, K);
        const float v = x[size_t(k)] * (1.0f / d[size_t(b)]);
        ASSERT_EQ(p2[size_t(at)], int8_t(std::min(127.0f, std::nearbyint((v - float(p1[size_t(at)])) * 256.0f))))
            << "K " << K << " k " << k;
        const int32_t iv = 256 * p1[size_t(at)] + p2[size_t(at)];
        // the two parts carry x to within half a step of d1 / 256 (plus f32 rounding)
        ASSERT_NEAR(double(pd[size_t(b)]) * iv, x[size_t(k)], 1.0001 * pd[size_t(b)] + 1e-6 * std::fabs(x[size_t(k)]));
        sum += iv;
      }
      ASSERT_FLOAT_EQ(ps[size_t(b)], pd[size_t(b)] * float(sum));
    }
    for (int64_t b = 0; b < K / 64; ++b) {
      float amax = 0;
      int32_t sum = 0;
      for (int i = 0; i < 64; ++i) amax = std::max(amax, std::fabs(x[size_t(b * 64 + i)]));
      ASSERT_FLOAT_EQ(d[size_t(b)], amax / 127.0f);
      for (int i = 0; i < 64; ++i) {
        const int8_t v = q[size_t(q8_storage_index(b * 64 + i, K))];
        ASSERT_EQ(v, int8_t(std::nearbyint(x[size_t(b * 64 + i)] * (1.0f / d[size_t(b)])))) << "K " << K << " k " << b * 64 + i;
        sum += v;
      }
      ASSERT_FLOAT_EQ(s[size_t(b)], d[size_t(b)] * float(sum));
    }
  }
}

// Routed experts read their tokens through an index: the token-lane tiles (16+ tokens) gather
// them when they transpose the activations. Every output against the definition (on a CPU
// without an int8 kernel: the f32 kernel against the exact product).
TEST(Matmul, Int8KernelGathersRowsInTokenLanes) {
  ThreadPool pool(2);
  const int64_t N = 21, T = 90, n = 37;
  std::vector<int32_t> idx(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) idx[size_t(i)] = int32_t((i * 53 + 7) % T);  // scrambled, distinct
  for (const int64_t K : {int64_t(64), int64_t(1344)}) {  // one unpaired block; 21 blocks
    const std::vector<float> x = random_x(T * K, 12);
    for (const Precision p : {Precision::Fast, Precision::Int8}) {
      ActivationBuffer buf;
      buf.reserve(T, K);
      const Activations all = buf.prepare(x.data(), T, K, K, p);
      for (int bits : {3, 4, 5, 8}) {
        Owned o = make_matrix(N, K, true, DType::BF16, {bits, 64}, 50 + bits);
        const bool q8 = kernel_name(o.m, p).rfind("q8-", 0) == 0;
        std::vector<float> y(size_t(n * N), -1.0f);
        const MatmulTask task{&o.m, all.rows(idx.data(), n), y.data(), N};
        matmul(std::span<const MatmulTask>(&task, 1), p, pool);
        for (int64_t t = 0; t < n; ++t)
          for (int64_t r = 0; r < N; ++r) {
            const int64_t row = idx[size_t(t)];
            double want = 0;
            if (q8) {
              want = q8_expected(o.m, r, all.q + row * K, all.q2 ? all.q2 + row * K : nullptr,
                                 all.d + row * (K / 64), all.s + row * (K / 64));
            } else {
              for (int64_t k = 0; k < K; ++k) want += naive_weight(o.m, r, k) * double(x[size_t(row * K + k)]);
            }
            ASSERT_NEAR(y[size_t(t * N + r)], want, 1e-4 * std::sqrt(double(K)))
                << "K " << K << " bits " << bits << " t " << t << " row " << r;
          }
      }
    }
  }
}

TEST(Matmul, KernelNamesFollowTheFormat) {
  Owned q3 = make_matrix(8, 128, true, DType::BF16, {3, 64}, 1);
  Owned q32 = make_matrix(8, 128, true, DType::BF16, {4, 32}, 1);
  Owned bf = make_matrix(8, 128, false, DType::BF16, {}, 1);
  const std::string f32 = std::string("f32-hwy:") + simd::target_name();
  EXPECT_EQ(kernel_name(q3.m, Precision::Fast),
            q8_kernel_supported() ? "q8-avx512" : q8_avx2_kernel_supported() ? "q8-avx2" : f32);
  EXPECT_EQ(kernel_name(q3.m, Precision::Exact).rfind("f32-hwy:", 0), 0u);
  EXPECT_EQ(kernel_name(q32.m, Precision::Fast).rfind("f32-hwy:", 0), 0u);
  EXPECT_EQ(kernel_name(bf.m, Precision::Fast).rfind(bf16_kernel_supported() ? "bf16-avx512" : "f32-hwy:", 0), 0u);
  EXPECT_EQ(kernel_name(bf.m, Precision::Exact).rfind("f32-hwy:", 0), 0u);
  set_avx512_kernels_enabled(false);  // an AVX2-only CPU: int8 up to 6 bits, f32 for the rest
  Owned q8 = make_matrix(8, 128, true, DType::BF16, {8, 64}, 1);
  EXPECT_EQ(kernel_name(q3.m, Precision::Fast), q8_avx2_kernel_supported() ? "q8-avx2" : f32);
  EXPECT_EQ(kernel_name(q8.m, Precision::Fast), f32);
  EXPECT_EQ(kernel_name(bf.m, Precision::Fast), f32);
  set_avx512_kernels_enabled(true);
}

// What the chooser must pick for a format, precision, token count and kernel switches: the rules
// of matmul.h restated, so a change of choice shows here.
struct ChoiceCase {
  const char* what;
  bool quantized;
  DType dt;
  quant::Spec spec;
  bool interleaved;
};

KernelId expected_kernel(const ChoiceCase& c, Precision p, bool avx512, int64_t T) {
  if (p == Precision::Exact) return KernelId::F32Hwy;
  if (c.quantized) {
    if (c.spec.group_size == 32) return KernelId::F32Hwy;
    if (avx512 && q8_kernel_supported()) {
      if (!c.interleaved) return KernelId::Q8Avx512;
      return T >= 4 && amx_kernel_supported() ? KernelId::Il16Amx : KernelId::Il16Avx512;
    }
    return q8_avx2_kernel_supported() && c.spec.bits <= 6 ? KernelId::Q8Avx2 : KernelId::F32Hwy;
  }
  // Fewer than 16 tokens: no AMX tiles of the bf16 form, so never Bf16Amx here.
  return c.dt == DType::BF16 && avx512 && bf16_kernel_supported() ? KernelId::Bf16Avx512 : KernelId::F32Hwy;
}

using RowsFn = void (*)(const Matrix&, const Activations&, int64_t, int64_t, float*, int64_t);

// Each kernel's entry point, written out independently of matmul.cpp's dispatcher.
RowsFn entry_point(KernelId id) {
  switch (id) {
    case KernelId::Q8Avx512: return q8::matmul_rows_avx512;
    case KernelId::Il16Avx512: return q8::matmul_rows_il16_avx512;
    case KernelId::Il16Amx: return q8::matmul_rows_il16_amx;
    case KernelId::Q8Avx2: return q8::matmul_rows_avx2;
    case KernelId::Bf16Amx: return q8::matmul_rows_bf16_amx;
    case KernelId::Bf16Avx512: return q8::matmul_rows_bf16_avx512;
    case KernelId::F32Hwy: break;
  }
  return hwy_kernels::matmul_rows_f32;
}

// choose_kernel is the one decision: it picks what the format, precision and CPU call for,
// kernel_name reports its pick, its row multiple is 16 exactly for the kernels that take whole
// row groups, and matmul runs that kernel (bit for bit its entry point's output, which differs
// from the f32 kernel's whenever another kernel is chosen). With the AVX-512 kernels on and off.
TEST(Matmul, OneChooserDecidesNameAndDispatch) {
  ThreadPool pool(2);
  const int64_t N = 48, K = 1280, Tmax = 5;
  const std::vector<float> x = random_x(Tmax * K, 31);
  const ChoiceCase cases[] = {
      {"3-bit", true, DType::BF16, {3, 64}, false},      {"4-bit", true, DType::BF16, {4, 64}, false},
      {"5-bit", true, DType::BF16, {5, 64}, false},      {"8-bit", true, DType::BF16, {8, 64}, false},
      {"4-bit g128", true, DType::BF16, {4, 128}, false}, {"4-bit g32", true, DType::BF16, {4, 32}, false},
      {"3-bit il16", true, DType::BF16, {3, 64}, true},  {"8-bit il16", true, DType::BF16, {8, 64}, true},
      {"bf16", false, DType::BF16, {}, false},           {"f32", false, DType::F32, {}, false},
  };
  for (const bool avx512 : {true, false}) {
    set_avx512_kernels_enabled(avx512);
    for (const ChoiceCase& c : cases) {
      Owned o = make_matrix(N, K, c.quantized, c.dt, c.spec, 17);
      std::vector<uint8_t> il;
      Matrix m = o.m;
      if (c.interleaved) {
        il.resize(il16::matrix_bytes(m));
        il16::pack(m, 0, N / 16, il.data());
        m.il = il.data();
      }
      for (const Precision p : {Precision::Fast, Precision::Int8, Precision::Exact}) {
        ActivationBuffer buf;
        buf.reserve(Tmax, K);
        for (const int64_t T : {int64_t(1), Tmax}) {
          SCOPED_TRACE(std::string(c.what) + " precision " + std::to_string(int(p)) + " T " + std::to_string(T) +
                       (avx512 ? "" : " avx512 off"));
          const Activations a = buf.prepare(x.data(), T, K, K, p);
          const KernelChoice ch = choose_kernel(m, a, p);
          EXPECT_EQ(ch.id, expected_kernel(c, p, avx512, T)) << kernel_id_name(ch.id);
          const bool groups = ch.id == KernelId::Il16Avx512 || ch.id == KernelId::Il16Amx || ch.id == KernelId::Bf16Amx;
          EXPECT_EQ(ch.row_align, groups ? 16 : 4);
          if (T == 1) {  // kernel_name describes one token
            EXPECT_EQ(kernel_name(m, p), kernel_id_name(ch.id));
          }
          std::vector<float> y(size_t(T * N), -1.0f), direct(y.size(), -2.0f), f32(y.size(), -3.0f);
          const MatmulTask task{&m, a, y.data(), N};
          matmul(std::span<const MatmulTask>(&task, 1), p, pool);
          entry_point(ch.id)(m, a, 0, N, direct.data(), N);
          for (size_t i = 0; i < y.size(); ++i) ASSERT_EQ(y[i], direct[i]) << "at " << i;
          if (ch.id == KernelId::F32Hwy) continue;
          hwy_kernels::matmul_rows_f32(m, a, 0, N, f32.data(), N);
          size_t differ = 0;
          for (size_t i = 0; i < y.size(); ++i) differ += y[i] != f32[i];
          EXPECT_GT(differ, 0u) << "the f32 kernel gives the same bits: this test cannot tell them apart";
        }
      }
    }
  }
  set_avx512_kernels_enabled(true);
}

// The bits-to-template table calls the instance for each width it lists and throws, naming the
// width, on any other; a matrix of a width no kernel has reaches them as an error, not as the
// 8-bit (or 6-bit) instance the old switches' default ran.
TEST(Matmul, BitsTableThrowsOnAWidthItDoesNotKnow) {
  for (const int bits : {2, 3, 4, 5, 6, 8}) {
    int got = 0;
    dispatch_bits(AllBitWidths{}, bits, "test", [&](auto B) { got = B; });
    EXPECT_EQ(got, bits);
  }
  const auto expect_error = [](auto widths, int bits, const std::string& kernel) {
    try {
      dispatch_bits(widths, bits, kernel.c_str(), [](auto) { FAIL() << "an instance ran"; });
      ADD_FAILURE() << "no error for " << bits << " bits";
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(" " + std::to_string(bits) + "-bit"), std::string::npos) << msg;
      EXPECT_NE(msg.find(kernel), std::string::npos) << msg;
    }
  };
  for (const int bits : {7, 1, 0, 9}) expect_error(AllBitWidths{}, bits, "q8-avx512");
  expect_error(BitWidths<2, 3, 4, 5, 6>{}, 8, "q8-avx2");

  const int64_t K = 128;
  Owned o = make_matrix(16, K, true, DType::BF16, {3, 64}, 5);
  o.m.spec.bits = 7;  // (the loader refuses such a checkpoint; the kernels must not guess)
  const std::vector<float> x = random_x(K, 6);
  for (const Precision p : {Precision::Fast, Precision::Exact}) {
    ActivationBuffer buf;
    buf.reserve(1, K);
    std::vector<float> y(16);
    const MatmulTask task{&o.m, buf.prepare(x.data(), 1, K, K, p), y.data(), 16};
    try {
      matmul_rows(task, 0, 16, p);
      ADD_FAILURE() << "no error with " << kernel_name(o.m, p);
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("7-bit"), std::string::npos) << e.what();
    }
  }
}

// Several tasks in one job, gathered activation rows, any thread count: each output equals the
// same matrix run alone on one thread.
TEST(Matmul, TaskBatchAndGatherMatchSingleRuns) {
  const int64_t K = 2816, T = 6;
  const std::vector<float> x = random_x(T * K, 9);
  Owned a = make_matrix(45, K, true, DType::BF16, {3, 64}, 2);
  Owned b = make_matrix(130, K, true, DType::BF16, {5, 64}, 3);
  Owned c = make_matrix(19, K, false, DType::BF16, {}, 4);
  const int32_t idx[3] = {4, 0, 2};
  for (Precision p : {Precision::Fast, Precision::Int8, Precision::Exact}) {
    ActivationBuffer buf;
    buf.reserve(T, K);
    const Activations all = buf.prepare(x.data(), T, K, K, p);
    const Activations some = all.rows(idx, 3);
    std::vector<float> ya(size_t(T * 45)), yb(size_t(3 * 130)), yc(size_t(T * 19));
    const MatmulTask tasks[3] = {{&a.m, all, ya.data(), 45}, {&b.m, some, yb.data(), 130}, {&c.m, all, yc.data(), 19}};
    for (int threads : {1, 2, 3, 7}) {
      ThreadPool pool(threads);
      std::fill(ya.begin(), ya.end(), NAN);
      std::fill(yb.begin(), yb.end(), NAN);
      std::fill(yc.begin(), yc.end(), NAN);
      matmul(tasks, p, pool);
      for (int ti = 0; ti < 3; ++ti) {
        const MatmulTask& t = tasks[ti];
        std::vector<float> want(size_t(t.x.T * t.ldy));
        matmul_rows(t, 0, 0, p);  // an empty range is a no-op
        MatmulTask alone = t;
        alone.y = want.data();
        matmul_rows(alone, 0, t.w->rows, p);
        for (size_t i = 0; i < want.size(); ++i) ASSERT_EQ(t.y[i], want[i]) << "task " << ti << " threads " << threads;
      }
    }
  }
}

TEST(Matmul, MismatchedColumnsNameTheWeight) {
  ThreadPool pool(1);
  Owned a = make_matrix(4, 128, false, DType::F32, {}, 1);
  const std::string name = "model.layers.3.mlp.up_proj";
  a.m.name = &name;
  std::vector<float> x(64), y(4);
  MatmulTask t{&a.m, {}, y.data(), 4};
  t.x.T = 1;
  t.x.K = 64;
  t.x.x = x.data();
  try {
    matmul(std::span<const MatmulTask>(&t, 1), Precision::Exact, pool);
    FAIL() << "no error";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
  }
}

TEST(VectorOps, MatchTheScalarReferenceOnEveryTarget) {
  const int64_t n = 1000, d = 256;
  const std::vector<float> a = random_x(n, 1), b = random_x(n, 2);
  const std::vector<float> kv = random_x(40 * d, 3), vv = random_x(40 * d, 4), q = random_x(d, 5);
  std::vector<float> inv(static_cast<size_t>(d / 2)), cs(inv), sn(inv);
  for (int64_t i = 0; i < d / 2; ++i) {
    inv[size_t(i)] = i < 40 ? std::pow(10000.0f, -2.0f * float(i) / float(d)) : 0.0f;
    cs[size_t(i)] = std::cos(17.0f * inv[size_t(i)]);
    sn[size_t(i)] = std::sin(17.0f * inv[size_t(i)]);
  }
  for (int64_t target : hwy_targets()) {
    ForceTarget force(target);
    SCOPED_TRACE(hwy::TargetName(target));
    std::vector<float> r1(static_cast<size_t>(n)), r2(static_cast<size_t>(n));
    gelu_gate(a.data(), b.data(), n, r1.data());
    simd::gelu_gate(a.data(), b.data(), n, r2.data());
    for (int64_t i = 0; i < n; ++i) ASSERT_NEAR(r2[size_t(i)], r1[size_t(i)], 1e-5 * (1 + std::fabs(r1[size_t(i)])));
    r1 = a;
    r2 = a;
    for (auto& v : r1) v = 30.0f * std::tanh(v * 20 / 30.0f);
    for (auto& v : r2) v *= 20;
    simd::softcap(r2.data(), n, 30.0f);
    for (int64_t i = 0; i < n; ++i) ASSERT_NEAR(r2[size_t(i)], r1[size_t(i)], 1e-4);
    for (int64_t m : {int64_t(1), int64_t(7), int64_t(17), n}) {  // softmax, tails included
      r1 = a;
      for (auto& v : r1) v *= 8;
      r2 = r1;
      softmax(r1.data(), m);
      simd::softmax(r2.data(), m);
      for (int64_t i = 0; i < m; ++i) ASSERT_NEAR(r2[size_t(i)], r1[size_t(i)], 1e-6 + 1e-5 * r1[size_t(i)]) << m;
    }
    // Dense attention pieces against naive sums: odd query, key and column counts (tails).
    for (const auto& [nq, nk, dd] : {std::tuple<int64_t, int64_t, int64_t>{7, 37, 72}, {4, 64, 96}, {1, 5, 13}, {9, 100, 32}}) {
      const std::vector<float> qq = random_x(nq * (dd + 3), 11), kk = random_x(dd * (nk + 2), 12);
      std::vector<float> got(size_t(nq * (nk + 1))), want(got.size());
      simd::scores_kt(qq.data(), dd + 3, nq, kk.data(), nk + 2, nk, dd, 0.5f, got.data(), nk + 1);
      for (int64_t i = 0; i < nq; ++i)
        for (int64_t j = 0; j < nk; ++j) {
          double acc = 0;
          for (int64_t c = 0; c < dd; ++c) acc += double(qq[size_t(i * (dd + 3) + c)]) * kk[size_t(c * (nk + 2) + j)];
          ASSERT_NEAR(got[size_t(i * (nk + 1) + j)], 0.5 * acc, 1e-4) << nq << " " << nk << " " << dd;
        }
      const std::vector<float> pp = random_x(nq * nk, 13), vv2 = random_x(nk * (dd + 1), 14);
      std::vector<float> out(size_t(nq * (dd + 2)), 7.0f);
      simd::weighted_values(pp.data(), nk, nq, vv2.data(), dd + 1, nk, dd, out.data(), dd + 2);
      for (int64_t i = 0; i < nq; ++i)
        for (int64_t c = 0; c < dd; ++c) {
          double acc = 0;
          for (int64_t j = 0; j < nk; ++j) acc += double(pp[size_t(i * nk + j)]) * vv2[size_t(j * (dd + 1) + c)];
          ASSERT_NEAR(out[size_t(i * (dd + 2) + c)], acc, 1e-4) << nq << " " << nk << " " << dd;
        }
    }
    rms_norm(a.data(), b.data(), n, 1e-6f, r1.data());
    simd::rms_norm(a.data(), b.data(), n, 1e-6f, r2.data());
    for (int64_t i = 0; i < n; ++i) ASSERT_NEAR(r2[size_t(i)], r1[size_t(i)], 1e-5 * (1 + std::fabs(r1[size_t(i)])));
    std::vector<float> x1(q), x2(q);
    rope_neox(x1.data(), d, inv.data(), 17);
    simd::rope_neox(x2.data(), d, cs.data(), sn.data());
    for (int64_t i = 0; i < d; ++i) ASSERT_NEAR(x2[size_t(i)], x1[size_t(i)], 1e-5);
    // Attention over a ring of 32 slots holding positions 5..36.
    std::vector<float> s1(64), s2(64), o1(static_cast<size_t>(d)), o2(static_cast<size_t>(d));
    attend(q.data(), d, kv.data(), vv.data(), d, 32, 5, 37, 0.0625f, s1.data(), o1.data());
    simd::attend(q.data(), d, kv.data(), vv.data(), d, 32, 5, 37, 0.0625f, s2.data(), o2.data());
    for (int64_t i = 0; i < d; ++i) ASSERT_NEAR(o2[size_t(i)], o1[size_t(i)], 1e-5);
    // Three queries x two heads sharing the KV head, each query with its own range (positions
    // 5..36 of the ring, as consecutive causal queries see them), give exactly what single calls
    // give.
    const int64_t Qb = 3, G = 2;
    const std::vector<float> qg = random_x(Qb * 5 * d, 6);  // query stride 5d, head stride 2d
    const int64_t begin[3] = {5, 5, 6}, end[3] = {35, 36, 37};
    std::vector<float> sg(size_t(Qb * G * 32)), og(size_t(Qb * 7 * d), -7.0f);  // outputs 7d / 3d apart
    simd::AttendBlock ab;
    ab.q = qg.data();
    ab.q_token = 5 * d;
    ab.q_head = 2 * d;
    ab.queries = Qb;
    ab.heads = G;
    ab.d = d;
    ab.k = kv.data();
    ab.v = vv.data();
    ab.kv_stride = d;
    ab.ring = 32;
    ab.begin = begin;
    ab.end = end;
    ab.scale = 0.0625f;
    ab.scores = sg.data();
    ab.out = og.data();
    ab.out_token = 7 * d;
    ab.out_head = 3 * d;
    simd::attend_block(ab);
    for (int64_t i = 0; i < Qb; ++i)
      for (int64_t g = 0; g < G; ++g) {
        const float* qi = qg.data() + i * 5 * d + g * 2 * d;
        const float* oi = og.data() + i * 7 * d + g * 3 * d;
        simd::attend(qi, d, kv.data(), vv.data(), d, 32, begin[i], end[i], 0.0625f, s2.data(), o2.data());
        for (int64_t k = 0; k < d; ++k) ASSERT_EQ(oi[k], o2[size_t(k)]) << "query " << i << " head " << g;
        attend(qi, d, kv.data(), vv.data(), d, 32, begin[i], end[i], 0.0625f, s1.data(), o1.data());
        for (int64_t k = 0; k < d; ++k) ASSERT_NEAR(oi[k], o1[size_t(k)], 1e-5) << "query " << i << " head " << g;
      }
  }
}

}  // namespace
}  // namespace mlxq::kernels
