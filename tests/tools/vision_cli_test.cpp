// The vision commands as a user meets them: `embed-image` against the tiny tower's goldens,
// `logits --image` filling the image run of the end-to-end golden's prompt, and a tower carried
// through make-model, convert (unsloth recipe) and inspect, or left out with --no-vision.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "io/npy.h"
#include "io/safetensors.h"
#include "test_util.h"

namespace mlxq {
namespace {

using Result = test::CommandResult;

Result run(const std::string& args) { return test::run_command(std::string(MLXQ_BIN) + " " + args); }

double max_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, double(std::fabs(a[i] - b[i])));
  return m;
}

const std::string kDir = "gemma4-vision/";

TEST(VisionCli, EmbedImageMatchesTheGoldens) {
  test::TempDir d;
  const std::string m = test::data_path(kDir + "hf");  // the tower alone, with tiny-a's text config
  for (const std::string img : {"img1", "img2"}) {
    const Result r = run("embed-image --exact -t 2 -m " + m + " --image " + test::data_path(kDir + "images/" + img + ".png") +
                         " --out " + d / "e.npy");
    ASSERT_EQ(r.code, 0) << r.err;
    const io::NpyF32 got = io::read_npy_f32(d / "e.npy");
    const io::NpyF32 want = io::read_npy_f32(test::data_path(kDir + "goldens/" + img + ".embd.npy"));
    ASSERT_EQ(got.shape, want.shape) << img;
    EXPECT_LT(max_diff(got.data, want.data), 1e-4) << img;
  }
  // Another budget resizes first: img1 (768 x 768) at 70 is 384 x 384, 8 x 8 soft tokens.
  Result r = run("embed-image -t 2 -m " + m + " --image " + test::data_path(kDir + "images/img1.png") +
                 " --max-soft-tokens 70 --out " + d / "s.npy");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(io::read_npy_f32(d / "s.npy").shape, (std::vector<int64_t>{64, 256}));
  EXPECT_NE(r.err.find("768 x 768 -> 384 x 384"), std::string::npos) << r.err;
  r = run("embed-image -m " + m + " --image " + test::data_path(kDir + "images/img1.png") +
          " --max-soft-tokens 300 --out " + d / "s.npy");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("--max-soft-tokens"), std::string::npos) << r.err;
  r = run("embed-image -m " + test::data_path("gemma4-tiny-a/hf") + " --image " +
          test::data_path(kDir + "images/img1.png") + " --out " + d / "s.npy");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("no vision tower"), std::string::npos) << r.err;
}

// The end-to-end golden's checkpoint: tiny-a's decoder and the tower side by side (an index over
// both files) with e2e/config.json.
std::string e2e_checkpoint(const test::TempDir& tmp) {
  namespace fs = std::filesystem;
  fs::copy_file(test::data_path(kDir + "e2e/config.json"), tmp / "config.json");
  fs::create_symlink(test::data_path("gemma4-tiny-a/hf/model.safetensors"), tmp / "text.safetensors");
  fs::create_symlink(test::data_path(kDir + "hf/model.safetensors"), tmp / "vision.safetensors");
  nlohmann::json index;
  for (const auto& [dir, file] : {std::pair{test::data_path("gemma4-tiny-a/hf"), "text.safetensors"},
                                  std::pair{test::data_path(kDir + "hf"), "vision.safetensors"}}) {
    io::Checkpoint c(dir);
    for (const auto& [name, t] : c.tensors()) index["weight_map"][name] = file;
  }
  test::write_file(tmp / "model.safetensors.index.json", index.dump());
  return tmp.str();
}

TEST(VisionCli, LogitsFillTheImageRunOfTheTokens) {
  test::TempDir d, m;
  const std::string dir = e2e_checkpoint(m);
  const nlohmann::json tok = nlohmann::json::parse(test::read_file(test::data_path(kDir + "e2e/tokens.json")));
  std::ostringstream ids;
  for (size_t i = 0; i < tok["ids"].size(); ++i) ids << (i ? "," : "") << tok["ids"][i].get<int>();
  const std::string img = test::data_path(kDir + "images/img2.png");
  for (const std::string mode : {"", "--chunk 100"}) {
    const Result r = run("logits --exact -t 2 -m " + dir + " --tokens " + ids.str() + " --image " + img + " " + mode +
                         " --out " + d / "o.npy");
    ASSERT_EQ(r.code, 0) << r.err;
    const io::NpyF32 got = io::read_npy_f32(d / "o.npy");
    const io::NpyF32 want = io::read_npy_f32(test::data_path(kDir + "e2e/logits.npy"));
    ASSERT_EQ(got.shape, want.shape);
    EXPECT_LT(max_diff(got.data, want.data), 1e-3) << mode;
  }
  Result r = run("logits -m " + dir + " --tokens " + ids.str() + " --image " + img + " --image " + img + " --out " +
                 d / "o.npy");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("2 image(s) given but --tokens has 1 image placeholder run"), std::string::npos) << r.err;
  r = run("logits -m " + dir + " --tokens " + ids.str() + " --image " + img + " --max-soft-tokens 70 --out " +
          d / "o.npy");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("66 soft tokens at a budget of 70, but run 1 of --tokens has 264"), std::string::npos) << r.err;
}

// make-model writes the tower, convert keeps it (bf16; the projection at the recipe's 3 bits)
// and both give nearly the same soft tokens; --no-vision leaves it out of either.
TEST(VisionCli, ConvertCarriesTheTowerOrLeavesItOut) {
  test::TempDir d;
  Result r = run("make-model -q -t 2 --preset tiny --seed 5 -o " + d / "hf");
  ASSERT_EQ(r.code, 0) << r.err;
  r = run("convert -t 2 -q --q-recipe unsloth -i " + d / "hf" + " -o " + d / "mlx");
  ASSERT_EQ(r.code, 0) << r.err;
  r = run("inspect -m " + d / "mlx");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("vision       2 layers, width 128"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("image ids    <|image> 2045, <|image|> 2046, <image|> 2047"), std::string::npos) << r.out;
  io::Checkpoint mlx(d / "mlx");
  ASSERT_NE(mlx.find("vision_tower.encoder.layers.1.mlp.down_proj.linear.weight"), nullptr);
  EXPECT_EQ(mlx.find("vision_tower.encoder.layers.1.mlp.down_proj.linear.weight")->dtype, DType::BF16);
  EXPECT_NE(mlx.find("embed_vision.embedding_projection.scales"), nullptr);
  const std::string img = test::data_path(kDir + "images/img1.png");
  for (const std::string m : {"hf", "mlx"}) {
    r = run("embed-image --exact -t 2 -m " + d / m + " --image " + img + " --max-soft-tokens 70 --out " + d / (m + ".npy"));
    ASSERT_EQ(r.code, 0) << r.err;
  }
  const io::NpyF32 a = io::read_npy_f32(d / "hf.npy"), b = io::read_npy_f32(d / "mlx.npy");
  ASSERT_EQ(a.shape, b.shape);
  double scale = 0;
  for (float x : a.data) scale = std::max(scale, double(std::fabs(x)));
  const double diff = max_diff(a.data, b.data);
  EXPECT_GT(diff, 0.0) << "the projection is quantized";
  EXPECT_LT(diff, 0.2 * scale) << "3-bit projection, the same tower";

  r = run("convert -t 2 -q --no-vision -i " + d / "hf" + " -o " + d / "text");
  ASSERT_EQ(r.code, 0) << r.err;
  r = run("inspect -m " + d / "text");
  EXPECT_NE(r.out.find("vision       none (text only)"), std::string::npos) << r.out;
  EXPECT_EQ(io::Checkpoint(d / "text").find("vision_tower.std_bias"), nullptr);
  r = run("make-model -q --no-vision --preset tiny -o " + d / "t2");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(io::Checkpoint(d / "t2").find("model.vision_tower.std_bias"), nullptr);
}

}  // namespace
}  // namespace mlxq
