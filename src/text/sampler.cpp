// Token sampler (see sampler.h for the order of operations) and sampling-default resolution.
#include "text/sampler.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <numeric>
#include <string>

#include "core/error.h"

namespace mlxq::text {

namespace {

std::string num(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%g", v);
  return b;
}

uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

// Keeps a logit finite after bias and penalties, so max-subtraction never sees inf - inf.
float clamp_finite(float v) {
  constexpr float lo = std::numeric_limits<float>::lowest();
  constexpr float hi = std::numeric_limits<float>::max();
  return std::isnan(v) ? lo : std::clamp(v, lo, hi);
}

}  // namespace

// Packs (logit, id) into a key whose ascending order is logit descending, then id ascending: the
// float's bits are mapped to an order-preserving unsigned and inverted, the id breaks ties.
uint64_t Sampler::key(float logit, int32_t id) {
  uint32_t bits;
  std::memcpy(&bits, &logit, sizeof bits);
  const uint32_t ordered = (bits & 0x80000000u) ? ~bits : bits | 0x80000000u;  // ascending with logit
  return uint64_t(~ordered) << 32 | uint32_t(id);
}

void Rng::reseed(uint64_t seed) {
  // splitmix64 spreads any seed (0 included) into a non-zero xoshiro state.
  uint64_t x = seed;
  for (auto& s : s_) {
    uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    s = z ^ (z >> 31);
  }
}

uint64_t Rng::next() {
  const uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

double Rng::next_double() { return double(next() >> 11) * 0x1.0p-53; }

Sampler::Sampler(const SamplerConfig& cfg, int64_t vocab_size)
    : cfg_(cfg), vocab_(vocab_size), rng_(cfg.seed) {
  check(vocab_size >= 1 && vocab_size <= INT32_MAX,
        "sampler: vocab_size must be in [1, 2^31), got " + std::to_string(vocab_size));
  check(std::isfinite(cfg.temperature) && cfg.temperature >= 0,
        "sampler: temperature must be finite and >= 0, got " + num(cfg.temperature));
  check(cfg.top_k >= 0, "sampler: top_k must be >= 0 (0 = off), got " + std::to_string(cfg.top_k));
  check(cfg.top_p > 0 && cfg.top_p <= 1, "sampler: top_p must be in (0, 1], got " + num(cfg.top_p));
  check(cfg.min_p >= 0 && cfg.min_p <= 1, "sampler: min_p must be in [0, 1], got " + num(cfg.min_p));
  check(std::isfinite(cfg.repetition_penalty) && cfg.repetition_penalty > 0,
        "sampler: repetition_penalty must be finite and > 0, got " + num(cfg.repetition_penalty));
  check(std::isfinite(cfg.presence_penalty),
        "sampler: presence_penalty must be finite, got " + num(cfg.presence_penalty));
  check(std::isfinite(cfg.frequency_penalty),
        "sampler: frequency_penalty must be finite, got " + num(cfg.frequency_penalty));
  check(cfg.penalty_last_n >= 0,
        "sampler: penalty_last_n must be >= 0, got " + std::to_string(cfg.penalty_last_n));
  for (const auto& [id, bias] : cfg.logit_bias) {
    check(id >= 0 && id < vocab_size, "sampler: logit_bias token id " + std::to_string(id) +
                                          " is outside the vocabulary [0, " +
                                          std::to_string(vocab_size) + ")");
    check(std::isfinite(bias), "sampler: logit_bias for token " + std::to_string(id) +
                                   " must be finite, got " + num(bias));
  }
  const auto n = size_t(vocab_size);
  logits_.resize(n);
  keys_.resize(n);
  weight_.resize(n);
  count_.assign(n, 0);
  touched_.reserve(std::min<size_t>(size_t(cfg.penalty_last_n), n));
}

int32_t Sampler::sample(const float* logits, std::span<const int32_t> history) {
  const int64_t n = vocab_;
  for (int64_t i = 0; i < n; ++i) {
    const float v = logits[i];
    if (!std::isfinite(v))
      throw Error("sampler: logits[" + std::to_string(i) + "] is not finite (" + num(v) + ")");
    logits_[size_t(i)] = v + 0.0f;  // -0 becomes +0, so equal logits have equal keys
  }
  for (const auto& [id, bias] : cfg_.logit_bias)
    logits_[size_t(id)] = clamp_finite(logits_[size_t(id)] + bias);
  apply_penalties(history);
  if (greedy()) return argmax();

  const bool top_k = cfg_.top_k > 0 && cfg_.top_k < n;
  int64_t n_keep = n;  // with top_k: keys_[0, n_keep) best first; else every id is a candidate
  float max_logit;
  if (top_k) {
    select_top_k(cfg_.top_k);
    n_keep = cfg_.top_k;
    max_logit = logits_[size_t(uint32_t(keys_[0]))];
  } else {
    max_logit = *std::max_element(logits_.begin(), logits_.end());
  }

  // Softmax weights relative to the max: exp((l - max) / T) is softmax(l / T) up to the sum,
  // without overflowing l / T for tiny T. The max's weight is exactly 1, which min-p uses.
  const float inv_t = 1.0f / cfg_.temperature;
  auto weigh = [&](size_t id) {
    const float w = std::exp((logits_[id] - max_logit) * inv_t);
    weight_[id] = w;
    return double(w);
  };
  double total = 0;
  if (top_k) {
    for (int64_t j = 0; j < n_keep; ++j) total += weigh(size_t(uint32_t(keys_[size_t(j)])));
  } else {
    for (int64_t i = 0; i < n; ++i) total += weigh(size_t(i));
  }

  // top-p: with top-k the kept list is sorted, so the cutoff is a prefix length; without it the
  // cutoff is a key, and a token is kept when its key is at most the cutoff's.
  uint64_t cutoff = UINT64_MAX;
  if (cfg_.top_p < 1) {
    if (top_k) {
      const double target = double(cfg_.top_p) * total;
      double cum = 0;
      for (int64_t j = 0; j < n_keep; ++j) {
        cum += weight_[size_t(uint32_t(keys_[size_t(j)]))];
        if (cum >= target) {
          n_keep = j + 1;
          break;
        }
      }  // a float shortfall keeps all k
    } else {
      cutoff = top_p_cutoff(total);
    }
  }

  // min-p: p >= min_p * p_max  <=>  weight >= min_p. Then renormalise and draw.
  const float min_w = cfg_.min_p;
  auto kept_id = [&](int64_t j) -> int64_t {  // the j-th candidate, or -1 when filtered out
    if (top_k) {
      const auto id = size_t(uint32_t(keys_[size_t(j)]));
      return weight_[id] >= min_w ? int64_t(id) : -1;
    }
    const float w = weight_[size_t(j)];
    if (w < min_w || (cutoff != UINT64_MAX && key(logits_[size_t(j)], int32_t(j)) > cutoff)) return -1;
    return j;
  };
  total = 0;
  for (int64_t j = 0; j < n_keep; ++j)
    if (const int64_t id = kept_id(j); id >= 0) total += weight_[size_t(id)];
  const double u = rng_.next_double() * total;
  double acc = 0;
  int64_t last = -1;
  for (int64_t j = 0; j < n_keep; ++j) {
    const int64_t id = kept_id(j);
    if (id < 0 || weight_[size_t(id)] <= 0) continue;
    acc += weight_[size_t(id)];
    last = id;
    if (u < acc) return int32_t(id);
  }
  return int32_t(last);  // u rounded up to the total; the max (weight 1) is always kept
}

void Sampler::select_top_k(int64_t k) {
  // A max-heap of the k best keys seen so far (its top is the worst of them). Keys are unique,
  // so the selected set, and after the sort its order, do not depend on the heap algorithm.
  uint64_t* heap = keys_.data();
  const auto kk = size_t(k);
  size_t size = 0;
  for (int64_t i = 0; i < vocab_; ++i) {
    const uint64_t kv = key(logits_[size_t(i)], int32_t(i));
    if (size < kk) {
      heap[size++] = kv;
      std::push_heap(heap, heap + size);
    } else if (kv < heap[0]) {
      std::pop_heap(heap, heap + size);
      heap[size - 1] = kv;
      std::push_heap(heap, heap + size);
    }
  }
  std::sort(heap, heap + kk);
}

uint64_t Sampler::top_p_cutoff(double total) {
  // Weighted quickselect: the smallest set of best tokens whose weight reaches top_p * total.
  // Most distributions need a few dozen tokens, so look at the best 64 first; otherwise halve
  // the undecided range with nth_element until it is small, then sort only that.
  const int64_t n = vocab_;
  uint64_t* keys = keys_.data();
  for (int64_t i = 0; i < n; ++i) keys[i] = key(logits_[size_t(i)], int32_t(i));
  auto weight_of = [&](uint64_t kv) { return double(weight_[size_t(uint32_t(kv))]); };
  double need = double(cfg_.top_p) * total;  // weight still needed from keys[lo, hi)
  int64_t lo = 0, hi = n;
  const int64_t first = std::min<int64_t>(64, n);
  if (first < n) std::nth_element(keys, keys + first, keys + n);
  double s = 0;
  for (int64_t j = 0; j < first; ++j) s += weight_of(keys[j]);
  if (s >= need) {
    hi = first;
  } else {
    need -= s;
    lo = first;
  }
  while (hi - lo > 256) {
    const int64_t mid = lo + (hi - lo) / 2;
    std::nth_element(keys + lo, keys + mid, keys + hi);  // keys[lo, mid) beat keys[mid, hi)
    s = 0;
    for (int64_t j = lo; j < mid; ++j) s += weight_of(keys[j]);
    if (s >= need) {
      hi = mid;
    } else {
      need -= s;
      lo = mid;
    }
  }
  std::sort(keys + lo, keys + hi);
  double cum = 0;
  for (int64_t j = lo; j < hi; ++j) {
    cum += weight_of(keys[j]);
    if (cum >= need) return keys[j];
  }
  return keys[hi - 1];  // a float shortfall: keep everything up to the range's end
}

void Sampler::apply_penalties(std::span<const int32_t> history) {
  const bool repetition = cfg_.repetition_penalty != 1;
  const bool openai = cfg_.presence_penalty != 0 || cfg_.frequency_penalty != 0;
  if (cfg_.penalty_last_n == 0 || history.empty() || (!repetition && !openai)) return;
  const auto window = history.last(std::min(history.size(), size_t(cfg_.penalty_last_n)));
  touched_.clear();
  for (const int32_t id : window) {
    if (id < 0 || id >= vocab_) continue;  // e.g. image soft tokens past the vocabulary
    if (count_[size_t(id)]++ == 0) touched_.push_back(id);  // within the reserved capacity
  }
  for (const int32_t id : touched_) {
    float l = logits_[size_t(id)];
    if (repetition) l = l > 0 ? l / cfg_.repetition_penalty : l * cfg_.repetition_penalty;
    l -= cfg_.frequency_penalty * float(count_[size_t(id)]) + cfg_.presence_penalty;
    logits_[size_t(id)] = clamp_finite(l);
    count_[size_t(id)] = 0;  // leave count_ all-zero for the next call
  }
}

int32_t Sampler::argmax() const {
  int64_t best = 0;
  for (int64_t i = 1; i < vocab_; ++i)
    if (logits_[size_t(i)] > logits_[size_t(best)]) best = i;  // strict: ties keep the lower id
  return int32_t(best);
}

SamplerConfig resolve_sampler_config(const GenerationDefaults& request,
                                     const GenerationDefaults& generation_config,
                                     const SamplerConfig& base) {
  SamplerConfig cfg = base;
  auto pick = [](const std::optional<double>& a, const std::optional<double>& b, float fallback) {
    return a ? float(*a) : b ? float(*b) : fallback;
  };
  cfg.temperature = pick(request.temperature, generation_config.temperature, base.temperature);
  cfg.top_p = pick(request.top_p, generation_config.top_p, base.top_p);
  cfg.min_p = pick(request.min_p, generation_config.min_p, base.min_p);
  const std::optional<int64_t>& k = request.top_k ? request.top_k : generation_config.top_k;
  if (k) cfg.top_k = int(std::clamp<int64_t>(*k, -1, INT_MAX));  // negative stays invalid for the Sampler
  return cfg;
}

}  // namespace mlxq::text
