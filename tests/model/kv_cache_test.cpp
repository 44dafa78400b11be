// KvCache sizing: full layers hold max_context positions, sliding layers a ring of
// window - 1 + max_chunk (never more than max_context).
#include "model/gemma4/kv_cache.h"

#include <gtest/gtest.h>

#include "test_util.h"

namespace mlxq::model::gemma4 {
namespace {

TEST(KvCache, RingSizes) {
  const Gemma4Config c = load_config(test::data_path("gemma4-tiny-a/hf"));
  KvCache kv(c, 1000, 7);
  EXPECT_EQ(kv.layer(0).ring, 32 - 1 + 7);
  EXPECT_EQ(kv.layer(0).stride, 2 * 64);
  EXPECT_EQ(kv.layer(5).ring, 1000);
  EXPECT_EQ(kv.layer(5).stride, 1 * 128);
  KvCache small(c, 10, 7);
  EXPECT_EQ(small.layer(0).ring, 10);
  EXPECT_EQ(kv.bytes(), uint64_t(5 * 38 * 128 + 1000 * 128) * 2 * 4);
  kv.advance(3);
  KvCache copy = kv.clone();
  EXPECT_EQ(copy.pos(), 3);
  kv.reset();
  EXPECT_EQ(kv.pos(), 0);
  EXPECT_EQ(copy.pos(), 3);
}

// Stepping back to p needs the keys p's queries see, [p - window + 1, p) (from 0 when p is
// within the first window), still in the ring, which holds [pos - ring, pos). tiny-a: window 32,
// chunks of 7, a ring of 38.
TEST(KvCache, TruncatesWhileTheRingHoldsWhatTheQueriesNeed) {
  const Gemma4Config c = load_config(test::data_path("gemma4-tiny-a/hf"));
  KvCache kv(c, 1000, 7);
  kv.advance(30);  // nothing overwritten yet: any p back to 1
  for (int64_t p = 0; p <= 30; ++p) EXPECT_TRUE(kv.can_truncate(p)) << p;
  EXPECT_FALSE(kv.can_truncate(31));
  kv.advance(15);  // pos 45: positions 0..6 overwritten
  EXPECT_TRUE(kv.can_truncate(38));   // needs [7, 38)
  EXPECT_FALSE(kv.can_truncate(37));  // needs [6, 37)
  EXPECT_FALSE(kv.can_truncate(20));  // needs [0, 20)
  EXPECT_TRUE(kv.can_truncate(0));
  kv.truncate(38);
  EXPECT_EQ(kv.pos(), 38);
}

// The buffers are 64-byte aligned (the attention kernels read rows with 512-bit loads), stay
// zero until written, and keep their contents and alignment through clone and move.
TEST(KvCache, BuffersAreAlignedAndZeroed) {
  for (size_t n : {size_t(1), size_t(100), size_t(1) << 20}) {
    FloatBuffer b(n);
    ASSERT_EQ(reinterpret_cast<uintptr_t>(b.data()) % 64, 0u) << n;
    EXPECT_EQ(b[0], 0.0f);
    EXPECT_EQ(b[n - 1], 0.0f);
    b[n - 1] = 2.5f;
    FloatBuffer c = b.clone();
    EXPECT_EQ(reinterpret_cast<uintptr_t>(c.data()) % 64, 0u);
    EXPECT_EQ(c[n - 1], 2.5f);
    FloatBuffer m = std::move(c);
    EXPECT_EQ(m[n - 1], 2.5f);
    EXPECT_EQ(c.data(), nullptr);
    EXPECT_EQ(c.size(), 0u);
  }
}

}  // namespace
}  // namespace mlxq::model::gemma4
