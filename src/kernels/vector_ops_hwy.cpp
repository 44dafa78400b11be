// Highway implementations of vector_ops.h.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/vector_ops_hwy.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>
#include <hwy/contrib/math/math-inl.h>

#include <cmath>

#include "kernels/vector_ops.h"

HWY_BEFORE_NAMESPACE();
namespace mlxq::kernels::simd {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
using DF = hn::ScalableTag<float>;

void GeluGate(const float* gate, const float* up, int64_t n, float* out) {
  const DF df;
  const int64_t N = int64_t(hn::Lanes(df));
  const auto k0 = hn::Set(df, 0.7978845608028654f), k1 = hn::Set(df, 0.044715f);
  const auto half = hn::Set(df, 0.5f), one = hn::Set(df, 1.0f);
  int64_t i = 0;
  for (; i + N <= n; i += N) {
    const auto x = hn::LoadU(df, gate + i);
    const auto inner = hn::Mul(k0, hn::MulAdd(hn::Mul(k1, hn::Mul(x, x)), x, x));
    const auto g = hn::Mul(hn::Mul(half, x), hn::Add(one, hn::Tanh(df, inner)));
    hn::StoreU(hn::Mul(g, hn::LoadU(df, up + i)), df, out + i);
  }
  for (; i < n; ++i) {
    const float x = gate[i];
    out[i] = 0.5f * x * (1.0f + std::tanh(0.7978845608028654f * (x + 0.044715f * x * x * x))) * up[i];
  }
}

void Softcap(float* x, int64_t n, float cap) {
  const DF df;
  const int64_t N = int64_t(hn::Lanes(df));
  const auto c = hn::Set(df, cap), ic = hn::Set(df, 1.0f / cap);
  int64_t i = 0;
  for (; i + N <= n; i += N) hn::StoreU(hn::Mul(c, hn::Tanh(df, hn::Mul(hn::LoadU(df, x + i), ic))), df, x + i);
  for (; i < n; ++i) x[i] = cap * std::tanh(x[i] / cap);
}

float Dot(const float* a, const float* b, int64_t n) {
  const DF df;
  const int64_t N = int64_t(hn::Lanes(df));
  auto acc0 = hn::Zero(df), acc1 = hn::Zero(df);
  int64_t i = 0;
  for (; i + 2 * N <= n; i += 2 * N) {
    acc0 = hn::MulAdd(hn::LoadU(df, a + i), hn::LoadU(df, b + i), acc0);
    acc1 = hn::MulAdd(hn::LoadU(df, a + i + N), hn::LoadU(df, b + i + N), acc1);
  }
  for (; i + N <= n; i += N) acc0 = hn::MulAdd(hn::LoadU(df, a + i), hn::LoadU(df, b + i), acc0);
  float s = hn::GetLane(hn::SumOfLanes(df, hn::Add(acc0, acc1)));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

// out += p * v over n floats
void Axpy(float p, const float* v, int64_t n, float* out) {
  const DF df;
  const int64_t N = int64_t(hn::Lanes(df));
  const auto pv = hn::Set(df, p);
  int64_t i = 0;
  for (; i + N <= n; i += N) hn::StoreU(hn::MulAdd(pv, hn::LoadU(df, v + i), hn::LoadU(df, out + i)), df, out + i);
  for (; i < n; ++i) out[i] += p * v[i];
}

// Qb consecutive queries x G query heads that share one KV head. Query i's head g is the row
// q + i*qtok + g*qhead and attends positions [begin[i], end[i]); its output goes to
// out + i*otok + g*ohead. Each key and value row is read once for the whole block. Per (query,
// head) the arithmetic and its order are those of a single-head, single-query call, so blocking
// never changes a result. scores: Qb * G * nmax floats, nmax = the longest range.
void AttendBlockImpl(const float* q, int64_t qtok, int64_t qhead, int64_t Qb, int64_t G, int64_t d,
                     const float* k_base, const float* v_base, int64_t stride, int64_t ring, const int64_t* begin,
                     const int64_t* end, float scale, float* scores, float* out, int64_t otok, int64_t ohead) {
  int64_t lo = begin[0], hi = end[0], nmax = 0;
  for (int64_t i = 0; i < Qb; ++i) {
    lo = std::min(lo, begin[i]);
    hi = std::max(hi, end[i]);
    nmax = std::max(nmax, end[i] - begin[i]);
  }
  for (int64_t j = lo; j < hi; ++j) {
    const float* kp = k_base + (j % ring) * stride;
    for (int64_t i = 0; i < Qb; ++i) {
      if (j < begin[i] || j >= end[i]) continue;
      for (int64_t g = 0; g < G; ++g)
        scores[(i * G + g) * nmax + (j - begin[i])] = Dot(q + i * qtok + g * qhead, kp, d) * scale;
    }
  }
  const DF df;
  const int64_t N = int64_t(hn::Lanes(df));
  for (int64_t i = 0; i < Qb; ++i) {
    const int64_t n = end[i] - begin[i];
    for (int64_t g = 0; g < G; ++g) {
      float* sc = scores + (i * G + g) * nmax;
      float m = -INFINITY;
      for (int64_t j = 0; j < n; ++j) m = std::max(m, sc[j]);
      const auto mv = hn::Set(df, m);
      auto sumv = hn::Zero(df);
      int64_t j = 0;
      for (; j + N <= n; j += N) {
        const auto e = hn::Exp(df, hn::Sub(hn::LoadU(df, sc + j), mv));
        hn::StoreU(e, df, sc + j);
        sumv = hn::Add(sumv, e);
      }
      float sum = hn::GetLane(hn::SumOfLanes(df, sumv));
      for (; j < n; ++j) {
        sc[j] = std::exp(sc[j] - m);
        sum += sc[j];
      }
      const float inv = 1.0f / sum;
      for (j = 0; j < n; ++j) sc[j] *= inv;
      float* o = out + i * otok + g * ohead;
      for (int64_t k = 0; k < d; ++k) o[k] = 0.0f;
    }
  }
  for (int64_t j = lo; j < hi; ++j) {
    const float* vp = v_base + (j % ring) * stride;
    for (int64_t i = 0; i < Qb; ++i) {
      if (j < begin[i] || j >= end[i]) continue;
      for (int64_t g = 0; g < G; ++g)
        Axpy(scores[(i * G + g) * nmax + (j - begin[i])], vp, d, out + i * otok + g * ohead);
    }
  }
}

void Attend(const float* q, int64_t d, const float* k_base, const float* v_base, int64_t stride,
            int64_t ring, int64_t pos_begin, int64_t pos_end, float scale, float* scores,
            float* out) {
  AttendBlockImpl(q, d, d, 1, 1, d, k_base, v_base, stride, ring, &pos_begin, &pos_end, scale, scores, out, d, d);
}

void AttendBlockArgs(const simd::AttendBlock& a) {
  AttendBlockImpl(a.q, a.q_token, a.q_head, a.queries, a.heads, a.d, a.k, a.v, a.kv_stride, a.ring, a.begin, a.end,
                  a.scale, a.scores, a.out, a.out_token, a.out_head);
}

void RopeNeox(float* x, int64_t d, const float* cs, const float* sn) {
  const DF df;
  const int64_t N = int64_t(hn::Lanes(df));
  const int64_t half = d / 2;
  int64_t i = 0;
  for (; i + N <= half; i += N) {
    const auto a = hn::LoadU(df, x + i), b = hn::LoadU(df, x + half + i);
    const auto c = hn::LoadU(df, cs + i), s = hn::LoadU(df, sn + i);
    hn::StoreU(hn::NegMulAdd(b, s, hn::Mul(a, c)), df, x + i);
    hn::StoreU(hn::MulAdd(a, s, hn::Mul(b, c)), df, x + half + i);
  }
  for (; i < half; ++i) {
    const float a = x[i], b = x[i + half];
    x[i] = a * cs[i] - b * sn[i];
    x[i + half] = b * cs[i] + a * sn[i];
  }
}

void RmsNorm(const float* x, const float* w, int64_t n, float eps, float* y) {
  const float inv = 1.0f / std::sqrt(Dot(x, x, n) / float(n) + eps);
  const DF df;
  const int64_t N = int64_t(hn::Lanes(df));
  const auto iv = hn::Set(df, inv);
  int64_t i = 0;
  if (w) {
    for (; i + N <= n; i += N)
      hn::StoreU(hn::Mul(hn::Mul(hn::LoadU(df, x + i), iv), hn::LoadU(df, w + i)), df, y + i);
    for (; i < n; ++i) y[i] = x[i] * inv * w[i];
  } else {
    for (; i + N <= n; i += N) hn::StoreU(hn::Mul(hn::LoadU(df, x + i), iv), df, y + i);
    for (; i < n; ++i) y[i] = x[i] * inv;
  }
}

float ReadSum(const float* x, int64_t n) {
  const DF df;
  const int64_t N = int64_t(hn::Lanes(df));
  auto a0 = hn::Zero(df), a1 = hn::Zero(df), a2 = hn::Zero(df), a3 = hn::Zero(df);
  int64_t i = 0;
  for (; i + 4 * N <= n; i += 4 * N) {
    a0 = hn::Add(a0, hn::LoadU(df, x + i));
    a1 = hn::Add(a1, hn::LoadU(df, x + i + N));
    a2 = hn::Add(a2, hn::LoadU(df, x + i + 2 * N));
    a3 = hn::Add(a3, hn::LoadU(df, x + i + 3 * N));
  }
  float s = hn::GetLane(hn::SumOfLanes(df, hn::Add(hn::Add(a0, a1), hn::Add(a2, a3))));
  for (; i < n; ++i) s += x[i];
  return s;
}

const char* TargetName() { return hwy::TargetName(HWY_TARGET); }

}  // namespace HWY_NAMESPACE
}  // namespace mlxq::kernels::simd
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace mlxq::kernels::simd {
HWY_EXPORT(GeluGate);
HWY_EXPORT(Softcap);
HWY_EXPORT(Attend);
HWY_EXPORT(AttendBlockArgs);
HWY_EXPORT(RopeNeox);
HWY_EXPORT(RmsNorm);
HWY_EXPORT(TargetName);
HWY_EXPORT(ReadSum);

void gelu_gate(const float* gate, const float* up, int64_t n, float* out) {
  HWY_DYNAMIC_DISPATCH(GeluGate)(gate, up, n, out);
}
void softcap(float* x, int64_t n, float cap) { HWY_DYNAMIC_DISPATCH(Softcap)(x, n, cap); }
void attend(const float* q, int64_t d, const float* k_base, const float* v_base, int64_t stride,
            int64_t ring, int64_t pos_begin, int64_t pos_end, float scale, float* scores,
            float* out) {
  HWY_DYNAMIC_DISPATCH(Attend)(q, d, k_base, v_base, stride, ring, pos_begin, pos_end, scale, scores, out);
}
void attend_block(const AttendBlock& a) { HWY_DYNAMIC_DISPATCH(AttendBlockArgs)(a); }
void rope_neox(float* x, int64_t d, const float* cos, const float* sin) {
  HWY_DYNAMIC_DISPATCH(RopeNeox)(x, d, cos, sin);
}
void rms_norm(const float* x, const float* w, int64_t n, float eps, float* y) {
  HWY_DYNAMIC_DISPATCH(RmsNorm)(x, w, n, eps, y);
}
const char* target_name() { return HWY_DYNAMIC_DISPATCH(TargetName)(); }
float read_sum(const float* x, int64_t n) { return HWY_DYNAMIC_DISPATCH(ReadSum)(x, n); }
}  // namespace mlxq::kernels::simd
#endif
