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

// x = exp(x - max) / sum (attention rows, the vision tower's scores).
void Softmax(float* x, int64_t n) {
  const DF df;
  const int64_t N = int64_t(hn::Lanes(df));
  float m = -INFINITY;
  for (int64_t j = 0; j < n; ++j) m = std::max(m, x[j]);
  const auto mv = hn::Set(df, m);
  auto sumv = hn::Zero(df);
  int64_t j = 0;
  for (; j + N <= n; j += N) {
    const auto e = hn::Exp(df, hn::Sub(hn::LoadU(df, x + j), mv));
    hn::StoreU(e, df, x + j);
    sumv = hn::Add(sumv, e);
  }
  float sum = hn::GetLane(hn::SumOfLanes(df, sumv));
  for (; j < n; ++j) {
    x[j] = std::exp(x[j] - m);
    sum += x[j];
  }
  const auto inv = hn::Set(df, 1.0f / sum);
  for (j = 0; j + N <= n; j += N) hn::StoreU(hn::Mul(hn::LoadU(df, x + j), inv), df, x + j);
  for (; j < n; ++j) x[j] *= 1.0f / sum;
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
  for (int64_t i = 0; i < Qb; ++i) {
    const int64_t n = end[i] - begin[i];
    for (int64_t g = 0; g < G; ++g) {
      Softmax(scores + (i * G + g) * nmax, n);
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

// s[i * lds + j] = scale * sum_c q[i * ldq + c] * kt[c * ldk + j]: tiles of 4 queries x 2 vectors
// of keys, each query value broadcast against a row of K^T, so no horizontal sums.
void ScoresKt(const float* q, int64_t ldq, int64_t nq, const float* kt, int64_t ldk, int64_t nk, int64_t d,
              float scale, float* s, int64_t lds) {
  const DF df;
  const int64_t N = int64_t(hn::Lanes(df));
  const auto sv = hn::Set(df, scale);
  int64_t j = 0;
  for (; j + 2 * N <= nk; j += 2 * N) {
    int64_t i = 0;
    for (; i + 4 <= nq; i += 4) {
      auto a0 = hn::Zero(df), a1 = a0, b0 = a0, b1 = a0, c0 = a0, c1 = a0, e0 = a0, e1 = a0;
      const float* q0 = q + i * ldq;
      for (int64_t c = 0; c < d; ++c) {
        const auto k0 = hn::LoadU(df, kt + c * ldk + j), k1 = hn::LoadU(df, kt + c * ldk + j + N);
        auto x = hn::Set(df, q0[c]);
        a0 = hn::MulAdd(x, k0, a0), a1 = hn::MulAdd(x, k1, a1);
        x = hn::Set(df, q0[ldq + c]);
        b0 = hn::MulAdd(x, k0, b0), b1 = hn::MulAdd(x, k1, b1);
        x = hn::Set(df, q0[2 * ldq + c]);
        c0 = hn::MulAdd(x, k0, c0), c1 = hn::MulAdd(x, k1, c1);
        x = hn::Set(df, q0[3 * ldq + c]);
        e0 = hn::MulAdd(x, k0, e0), e1 = hn::MulAdd(x, k1, e1);
      }
      float* o = s + i * lds + j;
      hn::StoreU(hn::Mul(a0, sv), df, o), hn::StoreU(hn::Mul(a1, sv), df, o + N);
      hn::StoreU(hn::Mul(b0, sv), df, o + lds), hn::StoreU(hn::Mul(b1, sv), df, o + lds + N);
      hn::StoreU(hn::Mul(c0, sv), df, o + 2 * lds), hn::StoreU(hn::Mul(c1, sv), df, o + 2 * lds + N);
      hn::StoreU(hn::Mul(e0, sv), df, o + 3 * lds), hn::StoreU(hn::Mul(e1, sv), df, o + 3 * lds + N);
    }
    for (; i < nq; ++i) {
      auto a0 = hn::Zero(df), a1 = a0;
      for (int64_t c = 0; c < d; ++c) {
        const auto x = hn::Set(df, q[i * ldq + c]);
        a0 = hn::MulAdd(x, hn::LoadU(df, kt + c * ldk + j), a0);
        a1 = hn::MulAdd(x, hn::LoadU(df, kt + c * ldk + j + N), a1);
      }
      hn::StoreU(hn::Mul(a0, sv), df, s + i * lds + j), hn::StoreU(hn::Mul(a1, sv), df, s + i * lds + j + N);
    }
  }
  for (; j < nk; ++j)
    for (int64_t i = 0; i < nq; ++i) {
      float acc = 0.0f;
      for (int64_t c = 0; c < d; ++c) acc += q[i * ldq + c] * kt[c * ldk + j];
      s[i * lds + j] = acc * scale;
    }
}

// out[i * ldo + c] = sum_j p[i * ldp + j] * v[j * ldv + c]: keys in blocks that stay in cache,
// tiles of 4 queries x 2 vectors of columns, each weight broadcast against a row of V.
void WeightedValues(const float* p, int64_t ldp, int64_t nq, const float* v, int64_t ldv, int64_t nk, int64_t d,
                    float* out, int64_t ldo) {
  const DF df;
  const int64_t N = int64_t(hn::Lanes(df));
  for (int64_t i = 0; i < nq; ++i)
    for (int64_t c = 0; c < d; ++c) out[i * ldo + c] = 0.0f;
  constexpr int64_t kKeys = 256;
  for (int64_t jb = 0; jb < nk; jb += kKeys) {
    const int64_t je = std::min(nk, jb + kKeys);
    int64_t c = 0;
    for (; c + 2 * N <= d; c += 2 * N) {
      int64_t i = 0;
      for (; i + 4 <= nq; i += 4) {
        float* o = out + i * ldo + c;
        auto a0 = hn::LoadU(df, o), a1 = hn::LoadU(df, o + N);
        auto b0 = hn::LoadU(df, o + ldo), b1 = hn::LoadU(df, o + ldo + N);
        auto c0 = hn::LoadU(df, o + 2 * ldo), c1 = hn::LoadU(df, o + 2 * ldo + N);
        auto e0 = hn::LoadU(df, o + 3 * ldo), e1 = hn::LoadU(df, o + 3 * ldo + N);
        const float* p0 = p + i * ldp;
        for (int64_t j = jb; j < je; ++j) {
          const auto v0 = hn::LoadU(df, v + j * ldv + c), v1 = hn::LoadU(df, v + j * ldv + c + N);
          auto x = hn::Set(df, p0[j]);
          a0 = hn::MulAdd(x, v0, a0), a1 = hn::MulAdd(x, v1, a1);
          x = hn::Set(df, p0[ldp + j]);
          b0 = hn::MulAdd(x, v0, b0), b1 = hn::MulAdd(x, v1, b1);
          x = hn::Set(df, p0[2 * ldp + j]);
          c0 = hn::MulAdd(x, v0, c0), c1 = hn::MulAdd(x, v1, c1);
          x = hn::Set(df, p0[3 * ldp + j]);
          e0 = hn::MulAdd(x, v0, e0), e1 = hn::MulAdd(x, v1, e1);
        }
        hn::StoreU(a0, df, o), hn::StoreU(a1, df, o + N);
        hn::StoreU(b0, df, o + ldo), hn::StoreU(b1, df, o + ldo + N);
        hn::StoreU(c0, df, o + 2 * ldo), hn::StoreU(c1, df, o + 2 * ldo + N);
        hn::StoreU(e0, df, o + 3 * ldo), hn::StoreU(e1, df, o + 3 * ldo + N);
      }
      for (; i < nq; ++i) {
        float* o = out + i * ldo + c;
        auto a0 = hn::LoadU(df, o), a1 = hn::LoadU(df, o + N);
        for (int64_t j = jb; j < je; ++j) {
          const auto x = hn::Set(df, p[i * ldp + j]);
          a0 = hn::MulAdd(x, hn::LoadU(df, v + j * ldv + c), a0);
          a1 = hn::MulAdd(x, hn::LoadU(df, v + j * ldv + c + N), a1);
        }
        hn::StoreU(a0, df, o), hn::StoreU(a1, df, o + N);
      }
    }
    for (; c < d; ++c)  // columns past the last pair of vectors (callers pad d to avoid them)
      for (int64_t i = 0; i < nq; ++i) {
        float acc = out[i * ldo + c];
        for (int64_t j = jb; j < je; ++j) acc += p[i * ldp + j] * v[j * ldv + c];
        out[i * ldo + c] = acc;
      }
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
HWY_EXPORT(Softmax);
HWY_EXPORT(ScoresKt);
HWY_EXPORT(WeightedValues);

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
void softmax(float* x, int64_t n) { HWY_DYNAMIC_DISPATCH(Softmax)(x, n); }
void scores_kt(const float* q, int64_t ldq, int64_t nq, const float* kt, int64_t ldk, int64_t nk, int64_t d,
               float scale, float* s, int64_t lds) {
  HWY_DYNAMIC_DISPATCH(ScoresKt)(q, ldq, nq, kt, ldk, nk, d, scale, s, lds);
}
void weighted_values(const float* p, int64_t ldp, int64_t nq, const float* v, int64_t ldv, int64_t nk, int64_t d,
                     float* out, int64_t ldo) {
  HWY_DYNAMIC_DISPATCH(WeightedValues)(p, ldp, nq, v, ldv, nk, d, out, ldo);
}
}  // namespace mlxq::kernels::simd
#endif
