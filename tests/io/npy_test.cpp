// .npy round trip and the golden files' headers.
#include "io/npy.h"

#include <gtest/gtest.h>

#include "core/error.h"
#include "test_util.h"

namespace mlxq::io {
namespace {

TEST(Npy, RoundTrip) {
  test::TempDir d;
  std::vector<float> v = {1.5f, -2.0f, 3.25f, 0.0f, 1e-8f, 7.0f};
  write_npy_f32(d / "a.npy", {2, 3}, v.data());
  const NpyF32 r = read_npy_f32(d / "a.npy");
  EXPECT_EQ(r.shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(r.data, v);
  const std::string bytes = test::read_file(d / "a.npy");
  EXPECT_NE(bytes.find("'shape': (2, 3)"), std::string::npos);
  EXPECT_EQ((bytes.size() - v.size() * 4) % 64, 0u);  // header aligned as numpy does
  write_npy_f32(d / "b.npy", {6}, v.data());
  EXPECT_NE(test::read_file(d / "b.npy").find("'shape': (6,)"), std::string::npos);
}

TEST(Npy, ReadsGoldenAndRejectsGarbage) {
  const NpyF32 g = read_npy_f32(test::data_path("gemma4-tiny-a/goldens/logits_hf_S1.npy"));
  EXPECT_EQ(g.shape, (std::vector<int64_t>{31, 2048}));
  test::TempDir d;
  test::write_file(d / "x.npy", "not a numpy file");
  EXPECT_THROW(read_npy_f32(d / "x.npy"), Error);
}

}  // namespace
}  // namespace mlxq::io
