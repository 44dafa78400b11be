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

}  // namespace
}  // namespace mlxq::model::gemma4
