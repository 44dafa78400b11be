// Sampler: chi-square fits, reproducibility, penalties, validation, no allocation, default resolution.
#include "text/sampler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <new>
#include <numeric>
#include <string>
#include <vector>

#include "core/error.h"

// Counts heap allocations so a test can check that sample() allocates nothing. Not inlined, so
// the compiler does not pair new-expressions with the free() inside (-Wmismatched-new-delete).
static std::atomic<long> g_allocations{0};
[[gnu::noinline]] void* operator new(std::size_t n) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
[[gnu::noinline]] void operator delete(void* p) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace mlxq::text {
namespace {

// Chi-square critical values at p = 0.001 for 1..9 degrees of freedom (standard tables, e.g.
// NIST/SEMATECH e-Handbook 1.3.6.7.4). A correct sampler fails a test with probability 0.1%,
// and the seeds are fixed, so a pass is reproducible.
constexpr double kChi2Crit001[] = {10.828, 13.816, 16.266, 18.467, 20.515, 22.458, 24.322, 26.124, 27.877};

constexpr int kDraws = 100000;

const std::vector<float> kLogits = {2.0f, 1.5f, 1.0f, 0.6f, 0.2f, -0.3f, -1.0f, -2.0f};

// Reference distribution, written the slow obvious way: full sort, double precision.
std::vector<double> reference_probs(const std::vector<float>& logits, const SamplerConfig& cfg) {
  const size_t n = logits.size();
  std::vector<int> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(),
            [&](int a, int b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); });
  size_t keep = cfg.top_k > 0 ? std::min(n, size_t(cfg.top_k)) : n;
  std::vector<double> p(n, 0.0);
  double z = 0;
  for (size_t j = 0; j < keep; ++j) z += std::exp(double(logits[order[j]]) / cfg.temperature);
  for (size_t j = 0; j < keep; ++j) p[order[j]] = std::exp(double(logits[order[j]]) / cfg.temperature) / z;
  if (cfg.top_p < 1) {
    double cum = 0;
    for (size_t j = 0; j < keep; ++j) {
      cum += p[order[j]];
      if (cum >= cfg.top_p) {
        keep = j + 1;
        break;
      }
    }
  }
  const double pmax = p[order[0]];
  std::vector<double> out(n, 0.0);
  double total = 0;
  for (size_t j = 0; j < keep; ++j)
    if (p[order[j]] >= cfg.min_p * pmax) total += (out[order[j]] = p[order[j]]);
  for (double& v : out) v /= total;
  return out;
}

// Draws kDraws tokens and returns the chi-square statistic against `expected`; tokens with zero
// expected probability must never appear. Sets *df to (kept tokens - 1).
double chi_square(const SamplerConfig& cfg, const std::vector<double>& expected, int* df) {
  Sampler s(cfg, int64_t(kLogits.size()));
  std::vector<long> counts(kLogits.size(), 0);
  for (int i = 0; i < kDraws; ++i) {
    const int32_t t = s.sample(kLogits.data(), {});
    EXPECT_GE(t, 0);
    EXPECT_LT(t, int32_t(kLogits.size()));
    counts[size_t(t)]++;
  }
  double chi2 = 0;
  int kept = 0;
  for (size_t i = 0; i < expected.size(); ++i) {
    if (expected[i] == 0) {
      EXPECT_EQ(counts[i], 0) << "token " << i << " is outside the kept set but was drawn";
      continue;
    }
    ++kept;
    const double e = expected[i] * kDraws;
    chi2 += (double(counts[i]) - e) * (double(counts[i]) - e) / e;
  }
  *df = kept - 1;
  return chi2;
}

void expect_fits(const SamplerConfig& cfg, int expected_kept) {
  const auto expected = reference_probs(kLogits, cfg);
  int df = 0;
  const double chi2 = chi_square(cfg, expected, &df);
  ASSERT_EQ(df + 1, expected_kept);
  ASSERT_GE(df, 1);
  EXPECT_LT(chi2, kChi2Crit001[df - 1]) << "df " << df;
}

TEST(Sampler, TemperatureMatchesSoftmax) {
  SamplerConfig cfg;
  cfg.temperature = 0.7f;
  cfg.seed = 1;
  expect_fits(cfg, 8);
}

TEST(Sampler, TopKMatchesTruncatedSoftmax) {
  SamplerConfig cfg;
  cfg.temperature = 1.0f;
  cfg.top_k = 4;
  cfg.seed = 2;
  expect_fits(cfg, 4);
}

TEST(Sampler, TopPMatchesTruncatedSoftmax) {
  // softmax(kLogits): .391 .237 .144 .097 ... cumulative .391 .629 .773 .869: top_p 0.8 keeps 4.
  SamplerConfig cfg;
  cfg.temperature = 1.0f;
  cfg.top_p = 0.8f;
  cfg.seed = 3;
  expect_fits(cfg, 4);
}

TEST(Sampler, MinPMatchesTruncatedSoftmax) {
  // p / p_max = exp(l - 2): 1 .607 .368 .247 .165 .100 ...: min_p 0.15 keeps 5.
  SamplerConfig cfg;
  cfg.temperature = 1.0f;
  cfg.min_p = 0.15f;
  cfg.seed = 4;
  expect_fits(cfg, 5);
}

TEST(Sampler, CombinedFiltersMatchReference) {
  SamplerConfig cfg;
  cfg.temperature = 1.3f;
  cfg.top_k = 7;
  cfg.top_p = 0.9f;
  cfg.min_p = 0.1f;
  cfg.seed = 5;
  // T 1.3, k 7: p = .333 .227 .154 .113 .083 .057 .033; cumulative reaches .9 at 5 tokens
  // (.910); min_p drops none of them (.083 / .333 = .25).
  expect_fits(cfg, 5);
}

// top-p without top-k on 1024 tokens, with the cutoff deep inside a block of tied logits: this
// takes the selection path (not a sort) and the id tie-break. Bins: token 0, and the first and
// second half of the kept tied tokens; everything past the cutoff must never be drawn.
TEST(Sampler, TopPDeepCutoffWithTies) {
  std::vector<float> logits(1024, 0.0f);
  logits[0] = 3.0f;
  for (int i = 0; i < 700; ++i) logits[size_t(i) * 389 % 1023 + 1] = 1.0f;  // 700 scattered ids
  SamplerConfig cfg;
  cfg.temperature = 1.0f;
  cfg.top_p = 0.8f;
  cfg.seed = 6;
  const auto ref = reference_probs(logits, cfg);
  std::vector<int> kept_tied;  // ids of kept logit-1 tokens, ascending (the tie order)
  for (size_t i = 1; i < ref.size(); ++i)
    if (ref[i] > 0) kept_tied.push_back(int(i));
  // Weights 1, e^-2 per tied token, e^-3 for the other 323: the 0.8 cutoff lands at about 653
  // of 700, past the first halving step, so both branches of the selection run.
  ASSERT_GT(kept_tied.size(), 620u);
  ASSERT_LT(kept_tied.size(), 690u);
  std::vector<int> bin(logits.size(), -1);
  bin[0] = 0;
  for (size_t j = 0; j < kept_tied.size(); ++j)
    bin[size_t(kept_tied[j])] = j < kept_tied.size() / 2 ? 1 : 2;
  std::vector<double> expected(3, 0.0);
  for (size_t i = 0; i < ref.size(); ++i)
    if (bin[i] >= 0) expected[size_t(bin[i])] += ref[i];

  Sampler s(cfg, int64_t(logits.size()));
  std::vector<long> counts(3, 0);
  for (int i = 0; i < kDraws; ++i) {
    const int32_t t = s.sample(logits.data(), {});
    ASSERT_GE(bin[size_t(t)], 0) << "token " << t << " is past the top-p cutoff";
    counts[size_t(bin[size_t(t)])]++;
  }
  double chi2 = 0;
  for (size_t b = 0; b < 3; ++b) {
    const double e = expected[b] * kDraws;
    chi2 += (double(counts[b]) - e) * (double(counts[b]) - e) / e;
  }
  EXPECT_LT(chi2, kChi2Crit001[1]);  // 3 bins: df 2
}

TEST(Sampler, SameSeedSameSequenceDifferentSeedDifferent) {
  const int64_t vocab = 1000;
  std::vector<float> logits(vocab);
  for (int64_t i = 0; i < vocab; ++i) logits[size_t(i)] = float(std::sin(double(i) * 0.37) * 3.0);
  auto draw = [&](uint64_t seed, const SamplerConfig& base) {
    SamplerConfig cfg = base;
    cfg.seed = seed;
    Sampler s(cfg, vocab);
    std::vector<int32_t> out;
    for (int i = 0; i < 200; ++i) out.push_back(s.sample(logits.data(), out));
    return out;
  };
  SamplerConfig cfg;
  cfg.temperature = 1.0f;
  EXPECT_EQ(draw(123, cfg), draw(123, cfg));
  EXPECT_NE(draw(123, cfg), draw(124, cfg));
  cfg.top_k = 40;
  cfg.top_p = 0.95f;
  cfg.repetition_penalty = 1.1f;
  EXPECT_EQ(draw(9, cfg), draw(9, cfg));
  EXPECT_NE(draw(9, cfg), draw(10, cfg));

  // reseed restarts the stream.
  SamplerConfig c2;
  c2.temperature = 1.0f;
  Sampler s(c2, vocab);
  std::vector<int32_t> a, b;
  for (int i = 0; i < 50; ++i) a.push_back(s.sample(logits.data(), {}));
  s.reseed(0);
  for (int i = 0; i < 50; ++i) b.push_back(s.sample(logits.data(), {}));
  EXPECT_EQ(a, b);
}

TEST(Sampler, RngIsFixed) {
  // xoshiro256** from splitmix64(0): pinned so the generator never changes silently.
  Rng r(0);
  const uint64_t first = r.next();
  Rng r2(0);
  EXPECT_EQ(r2.next(), first);
  Rng r3(1);
  EXPECT_NE(r3.next(), first);
  for (int i = 0; i < 1000; ++i) {
    const double u = r.next_double();
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
  }
}

TEST(Sampler, GreedyIgnoresSeedAndBreaksTiesLow) {
  const std::vector<float> logits = {0.5f, 3.0f, -1.0f, 3.0f, 2.9f};
  for (uint64_t seed : {0ULL, 1ULL, 99ULL}) {
    SamplerConfig cfg;
    cfg.seed = seed;
    cfg.top_k = 2;
    Sampler s(cfg, 5);
    EXPECT_TRUE(s.greedy());
    for (int i = 0; i < 5; ++i) EXPECT_EQ(s.sample(logits.data(), {}), 1);
  }
  SamplerConfig tiny;
  tiny.temperature = 1e-7f;  // <= 1e-6: greedy
  EXPECT_EQ(Sampler(tiny, 5).sample(logits.data(), {}), 1);
}

TEST(Sampler, PenaltiesAndBiasMoveTheArgmax) {
  const std::vector<float> pos = {1.0f, 0.9f, 0.1f};
  const std::vector<float> neg = {-1.0f, -1.1f, -5.0f};
  const std::vector<int32_t> once = {0};
  const std::vector<int32_t> thrice = {0, 2, 0, 0};
  auto greedy = [](SamplerConfig cfg, const std::vector<float>& l, const std::vector<int32_t>& h) {
    return Sampler(cfg, int64_t(l.size())).sample(l.data(), h);
  };
  SamplerConfig none;
  EXPECT_EQ(greedy(none, pos, thrice), 0);

  SamplerConfig rep;
  rep.repetition_penalty = 1.2f;  // 1.0 / 1.2 < 0.9; -1.0 * 1.2 < -1.1
  EXPECT_EQ(greedy(rep, pos, once), 1);
  EXPECT_EQ(greedy(rep, neg, once), 1);
  rep.penalty_last_n = 1;  // the window is the last token only
  EXPECT_EQ(greedy(rep, pos, thrice), 1);
  EXPECT_EQ(greedy(rep, pos, std::vector<int32_t>{0, 2}), 0);  // window {2}
  rep.penalty_last_n = 0;
  EXPECT_EQ(greedy(rep, pos, once), 0);

  SamplerConfig presence;
  presence.presence_penalty = 0.2f;  // 0.8 < 0.9
  EXPECT_EQ(greedy(presence, pos, once), 1);

  SamplerConfig freq;
  freq.frequency_penalty = 0.05f;  // once: 0.95 > 0.9; three times: 0.85 < 0.9
  EXPECT_EQ(greedy(freq, pos, once), 0);
  EXPECT_EQ(greedy(freq, pos, thrice), 1);

  // Ids outside the vocabulary in the history are ignored.
  EXPECT_EQ(greedy(presence, pos, std::vector<int32_t>{-1, 3, 262144}), 0);

  SamplerConfig bias;
  bias.logit_bias = {{2, 5.0f}};
  EXPECT_EQ(greedy(bias, pos, {}), 2);
  bias.logit_bias = {{0, -100.0f}};
  EXPECT_EQ(greedy(bias, pos, {}), 1);
  bias.logit_bias = {{0, -std::numeric_limits<float>::max()}, {1, -std::numeric_limits<float>::max()}};
  EXPECT_EQ(greedy(bias, pos, {}), 2);

  // Bias applies before the filters: a banned token is never sampled.
  SamplerConfig sampled;
  sampled.temperature = 1.0f;
  sampled.logit_bias = {{0, -1000.0f}};
  Sampler s(sampled, 3);
  for (int i = 0; i < 2000; ++i) ASSERT_NE(s.sample(pos.data(), {}), 0);
}

TEST(Sampler, InvalidConfigsThrowNamingTheField) {
  auto expect_error = [](const SamplerConfig& cfg, const std::string& field, int64_t vocab = 8) {
    try {
      Sampler s(cfg, vocab);
      ADD_FAILURE() << "no error for " << field;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(field), std::string::npos) << e.what();
    }
  };
  SamplerConfig c;
  c.temperature = -0.1f;
  expect_error(c, "temperature");
  c = {};
  c.temperature = std::numeric_limits<float>::infinity();
  expect_error(c, "temperature");
  c = {};
  c.top_p = 0;
  expect_error(c, "top_p");
  c.top_p = 1.01f;
  expect_error(c, "top_p");
  c = {};
  c.min_p = -0.01f;
  expect_error(c, "min_p");
  c.min_p = 1.5f;
  expect_error(c, "min_p");
  c = {};
  c.top_k = -1;
  expect_error(c, "top_k");
  c = {};
  c.repetition_penalty = 0;
  expect_error(c, "repetition_penalty");
  c = {};
  c.presence_penalty = std::nanf("");
  expect_error(c, "presence_penalty");
  c = {};
  c.frequency_penalty = -std::numeric_limits<float>::infinity();
  expect_error(c, "frequency_penalty");
  c = {};
  c.penalty_last_n = -1;
  expect_error(c, "penalty_last_n");
  c = {};
  c.logit_bias = {{8, 1.0f}};
  expect_error(c, "logit_bias");
  c.logit_bias = {{1, std::numeric_limits<float>::infinity()}};
  expect_error(c, "logit_bias");
  expect_error({}, "vocab_size", 0);

  // Non-finite logits are rejected at sample time, greedy or not.
  const float inf = std::numeric_limits<float>::infinity();
  for (float bad : {std::nanf(""), inf, -inf}) {
    std::vector<float> l = {0.0f, 1.0f, bad, 2.0f};
    SamplerConfig g;
    EXPECT_THROW(Sampler(g, 4).sample(l.data(), {}), Error);
    g.temperature = 1.0f;
    try {
      Sampler(g, 4).sample(l.data(), {});
      ADD_FAILURE() << "no error for a non-finite logit";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("logits[2]"), std::string::npos) << e.what();
    }
  }
}

// Full Gemma vocabulary: top-k and top-p keep only the right tokens, and sample() allocates
// nothing after construction.
TEST(Sampler, LargeVocabTruncatesAndDoesNotAllocate) {
  const int64_t vocab = 262144;
  std::vector<float> logits(static_cast<size_t>(vocab));
  uint64_t x = 12345;
  for (auto& v : logits) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    v = float(double(x >> 11) * 0x1.0p-53 * 8.0 - 4.0);
  }
  logits[777] = 14.0f;  // clear favourites, far above the uniform [-4, 4) tail
  logits[4242] = 13.5f;
  std::vector<int32_t> order(static_cast<size_t>(vocab));
  std::iota(order.begin(), order.end(), 0);
  std::partial_sort(order.begin(), order.begin() + 64, order.end(),
                    [&](int32_t a, int32_t b) { return logits[size_t(a)] > logits[size_t(b)]; });
  std::vector<char> in_top64(static_cast<size_t>(vocab), 0);
  for (int i = 0; i < 64; ++i) in_top64[size_t(order[size_t(i)])] = 1;

  SamplerConfig k;
  k.temperature = 1.0f;
  k.top_k = 64;
  k.penalty_last_n = 64;
  k.repetition_penalty = 1.0f;
  Sampler sk(k, vocab);
  std::vector<int32_t> history(100, 5);
  const long before = g_allocations.load();
  int hits_top = 0;
  for (int i = 0; i < 200; ++i) {
    const int32_t t = sk.sample(logits.data(), history);
    ASSERT_TRUE(in_top64[size_t(t)]) << t;
    hits_top += t == 777;
  }
  EXPECT_EQ(g_allocations.load(), before) << "sample() allocated";
  EXPECT_GT(hits_top, 0);

  // top_p without top_k: with T = 0.5, p(777) ~ .73, p(4242) ~ .27, the tail ~ 3e-5, so top_p
  // 0.5 keeps only 777.
  SamplerConfig p;
  p.temperature = 0.5f;
  p.top_p = 0.5f;
  p.presence_penalty = 0.1f;
  Sampler sp(p, vocab);
  const long before_p = g_allocations.load();
  for (int i = 0; i < 50; ++i) ASSERT_EQ(sp.sample(logits.data(), history), 777);
  EXPECT_EQ(g_allocations.load(), before_p) << "sample() allocated";

  // At T = 1 the tail holds about half the mass, so top_p 0.99 grows the sorted prefix over most
  // of the vocabulary; min_p 0.001 then keeps only tokens within log(1000) of the max.
  SamplerConfig wide;
  wide.temperature = 1.0f;
  wide.top_p = 0.99f;
  wide.min_p = 0.001f;
  Sampler sw(wide, vocab);
  for (int i = 0; i < 20; ++i) {
    const int32_t t = sw.sample(logits.data(), {});
    ASSERT_GE(logits[size_t(t)], logits[777] - std::log(1000.0f) - 1e-4f) << t;  // min_p bound
  }
}

TEST(ResolveSamplerConfig, Precedence) {
  GenerationDefaults gen;
  gen.temperature = 1.0;
  gen.top_k = 64;
  gen.top_p = 0.95;
  GenerationDefaults req;
  req.temperature = 0.6;  // the capitals benchmark: T from the request, k/p from the config
  SamplerConfig c = resolve_sampler_config(req, gen);
  EXPECT_FLOAT_EQ(c.temperature, 0.6f);
  EXPECT_EQ(c.top_k, 64);
  EXPECT_FLOAT_EQ(c.top_p, 0.95f);
  EXPECT_FLOAT_EQ(c.min_p, 0.0f);

  SamplerConfig none = resolve_sampler_config({}, {});  // no value anywhere: greedy
  EXPECT_EQ(none.temperature, 0.0f);
  EXPECT_EQ(none.top_k, 0);
  EXPECT_EQ(none.top_p, 1.0f);
  EXPECT_TRUE(Sampler(none, 4).greedy());

  SamplerConfig from_gen = resolve_sampler_config({}, gen);
  EXPECT_FLOAT_EQ(from_gen.temperature, 1.0f);

  req.top_k = 0;  // the request can switch a filter off
  req.min_p = 0.05;
  SamplerConfig base;
  base.seed = 77;
  base.repetition_penalty = 1.1f;
  SamplerConfig r = resolve_sampler_config(req, gen, base);
  EXPECT_EQ(r.top_k, 0);
  EXPECT_FLOAT_EQ(r.min_p, 0.05f);
  EXPECT_EQ(r.seed, 77u);
  EXPECT_FLOAT_EQ(r.repetition_penalty, 1.1f);

  req.top_k = -5;  // left for the Sampler to reject
  EXPECT_THROW(Sampler(resolve_sampler_config(req, gen), 8), Error);
}

}  // namespace
}  // namespace mlxq::text
