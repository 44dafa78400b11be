// Divergence of two next-token distributions given as logit rows (quant-error, eval).
#pragma once
#include <cmath>
#include <cstdint>

namespace mlxq::cli {

// KL(p || q) of the softmaxes of two logit rows; also whether their argmaxes agree, p's argmax
// and p's entropy (nats).
inline double kl(const float* p_logits, const float* q_logits, int64_t n, bool* same_top, int64_t* top_p, double* entropy_p) {
  float mp = -INFINITY, mq = -INFINITY;
  int64_t ap = 0, aq = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (p_logits[i] > mp) mp = p_logits[i], ap = i;
    if (q_logits[i] > mq) mq = q_logits[i], aq = i;
  }
  double zp = 0, zq = 0;
  for (int64_t i = 0; i < n; ++i) zp += std::exp(double(p_logits[i] - mp)), zq += std::exp(double(q_logits[i] - mq));
  double d = 0, h = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double lp = double(p_logits[i] - mp) - std::log(zp), lq = double(q_logits[i] - mq) - std::log(zq);
    d += std::exp(lp) * (lp - lq);
    h -= std::exp(lp) * lp;
  }
  *same_top = ap == aq;
  *top_p = ap;
  *entropy_p = h;
  return d;
}

}  // namespace mlxq::cli
