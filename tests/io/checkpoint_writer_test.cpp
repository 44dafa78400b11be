// CheckpointWriter: sharding, index.json, read-back, and atomicity (nothing at the output path
// after a failure; an existing output refused without overwrite).
#include "io/checkpoint_writer.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/json_fields.h"
#include "io/safetensors.h"
#include "test_util.h"

namespace mlxq::io {
namespace {

namespace fs = std::filesystem;

TensorProducer byte_pattern() {
  return [](const TensorSpec& s, const ByteSink& sink) {
    std::vector<uint8_t> b(s.nbytes());
    for (size_t i = 0; i < b.size(); ++i) b[i] = uint8_t(i * 7 + s.name.size());
    sink(b.data(), b.size() / 2);
    sink(b.data() + b.size() / 2, b.size() - b.size() / 2);
  };
}

TEST(CheckpointWriter, ShardsSortedWithIndex) {
  test::TempDir d;
  const std::string out = d / "ckpt";
  std::vector<TensorSpec> specs = {{"z.weight", DType::BF16, {10, 10}},
                                   {"a.weight", DType::F32, {10, 10}},
                                   {"m.scales", DType::U32, {5}}};
  CheckpointWriter w(out, false);
  ShardOptions opt;
  opt.max_shard_bytes = 400;  // a.weight (400) fills shard 1; m + z share shard 2
  EXPECT_EQ(w.write_tensors(specs, opt, byte_pattern()), 2);
  EXPECT_FALSE(fs::exists(out));  // nothing visible before commit
  w.commit();
  EXPECT_TRUE(fs::exists(out + "/model-00001-of-00002.safetensors"));
  const auto idx = read_json_file(out + "/model.safetensors.index.json");
  EXPECT_EQ(idx["metadata"]["total_size"], 400 + 20 + 200);
  EXPECT_EQ(idx["weight_map"]["z.weight"], "model-00002-of-00002.safetensors");
  Checkpoint c(out);
  ASSERT_EQ(c.tensors().size(), 3u);
  const TensorInfo* z = c.find("z.weight");
  ASSERT_NE(z, nullptr);
  for (size_t i = 0; i < z->nbytes; ++i) ASSERT_EQ(z->data[i], uint8_t(i * 7 + 8));
  EXPECT_EQ(c.files()[0]->metadata().at("format"), "mlx");
}

TEST(CheckpointWriter, FailureLeavesNothingAndExistingOutputIsRefused) {
  test::TempDir d;
  const std::string out = d / "ckpt";
  {
    CheckpointWriter w(out, false);
    std::vector<TensorSpec> specs = {{"a", DType::F32, {4}}};
    EXPECT_THROW(w.write_tensors(specs, {}, [](const TensorSpec&, const ByteSink& sink) {
      float x = 0;
      sink(&x, 4);  // short by 12 bytes
    }), Error);
  }
  EXPECT_FALSE(fs::exists(out));
  for (const auto& e : fs::directory_iterator(d.str())) ADD_FAILURE() << "left behind: " << e.path();
  fs::create_directories(out);
  EXPECT_THROW(CheckpointWriter(out, false), Error);
  CheckpointWriter w(out, true);
  w.write_text_file("config.json", "{}");
  w.commit();
  EXPECT_TRUE(fs::exists(out + "/config.json"));
}

}  // namespace
}  // namespace mlxq::io
