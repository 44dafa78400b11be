// Weight binding: layout detection, and the clear errors for a missing tensor, a wrong shape, a
// wrong dtype and a quantized tensor without a quantization block. The broken checkpoints are
// edited copies of the golden tiny-a ones, written with CheckpointWriter.
#include "model/gemma4/weights.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <functional>

#include "core/error.h"
#include "io/checkpoint_writer.h"
#include "model/gemma4/model.h"
#include "test_util.h"

namespace mlxq::model::gemma4 {
namespace {

namespace fs = std::filesystem;

// Copies `src` to `dst`, dropping `drop` and rewriting one tensor's spec through `edit`.
void copy_checkpoint(const std::string& src, const std::string& dst, const std::string& drop,
                     const std::function<void(io::TensorSpec&)>& edit = {}) {
  io::Checkpoint in(src);
  std::vector<io::TensorSpec> specs;
  for (const auto& [name, t] : in.tensors()) {
    if (name == drop) continue;
    io::TensorSpec s{name, t->dtype, t->shape};
    if (edit) edit(s);
    specs.push_back(s);
  }
  io::CheckpointWriter w(dst, false);
  w.write_text_file("config.json", test::read_file(src + "/config.json"));
  w.write_tensors(specs, {}, [&](const io::TensorSpec& s, const io::ByteSink& sink) {
    const io::TensorInfo* t = in.find(s.name);
    std::vector<uint8_t> b(s.nbytes());
    std::memcpy(b.data(), t->data, std::min<size_t>(b.size(), t->nbytes));
    sink(b.data(), b.size());
  });
  w.commit();
}

std::string load_error(const std::string& dir) {
  try {
    Model m(dir, {1, 4});
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

TEST(Weights, DetectsBothLayouts) {
  EXPECT_EQ(detect_layout(io::Checkpoint(test::data_path("gemma4-tiny-a/hf"))), Layout::HF);
  io::Checkpoint mlx(test::data_path("gemma4-tiny-a/mlx-q"));
  EXPECT_EQ(detect_layout(mlx), Layout::MLX);
  const Gemma4Weights w = bind_weights(mlx, load_config(test::data_path("gemma4-tiny-a/mlx-q")));
  EXPECT_TRUE(w.embed_tokens.quantized);
  EXPECT_EQ(w.embed_tokens.spec.bits, 5);
  EXPECT_FALSE(w.layers[0].o_proj.quantized);  // bf16 in the unsloth recipe
  EXPECT_EQ(w.layers[0].expert_down.first.spec.bits, 4);
  EXPECT_EQ(w.layers[5].v_proj.rows, 0);       // K=V full layer
  EXPECT_EQ(w.layers[0].expert_gate.n_experts, 16);
}

TEST(Weights, MissingTensorNamesTensorAndFile) {
  test::TempDir d;
  const std::string dir = d / "ck";
  copy_checkpoint(test::data_path("gemma4-tiny-a/mlx-q"), dir,
                  "language_model.model.layers.3.self_attn.v_proj.scales");
  std::string msg = load_error(dir);
  // Without its scales, v_proj's U32 weight reads as an unquantized tensor of the wrong dtype.
  EXPECT_NE(msg.find("language_model.model.layers.3.self_attn.v_proj.weight"), std::string::npos) << msg;
  EXPECT_NE(msg.find("model.safetensors"), std::string::npos) << msg;
  const std::string dir2 = d / "ck2";
  copy_checkpoint(test::data_path("gemma4-tiny-a/hf"), dir2, "model.language_model.layers.3.router.scale");
  msg = load_error(dir2);
  EXPECT_NE(msg.find("missing tensor 'model.language_model.layers.3.router.scale'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("model.safetensors.index.json"), std::string::npos) << msg;
}

TEST(Weights, WrongShapeAndDtype) {
  test::TempDir d;
  const std::string a = d / "a";
  copy_checkpoint(test::data_path("gemma4-tiny-a/hf"), a, "", [](io::TensorSpec& s) {
    if (s.name == "model.language_model.layers.5.self_attn.q_norm.weight") s.shape = {64};
  });
  std::string msg = load_error(a);
  EXPECT_NE(msg.find("'model.language_model.layers.5.self_attn.q_norm.weight' has shape [64], expected [128]"),
            std::string::npos) << msg;
  EXPECT_NE(msg.find("full_attention"), std::string::npos) << msg;
  const std::string b = d / "b";
  copy_checkpoint(test::data_path("gemma4-tiny-a/hf"), b, "", [](io::TensorSpec& s) {
    if (s.name == "model.language_model.embed_tokens.weight") s.dtype = DType::I32, s.shape = {2048, 128};
  });
  msg = load_error(b);
  EXPECT_NE(msg.find("has dtype I32, expected F32, F16 or BF16"), std::string::npos) << msg;
}

TEST(Weights, QuantizedTensorNeedsQuantizationBlock) {
  test::TempDir d;
  const std::string dir = d / "ck";
  copy_checkpoint(test::data_path("gemma4-tiny-a/mlx-q"), dir, "");
  std::string cfg = test::read_file(test::data_path("gemma4-tiny-a/hf/config.json"));
  test::write_file(dir + "/config.json", cfg);
  const std::string msg = load_error(dir);
  EXPECT_NE(msg.find("is quantized but"), std::string::npos) << msg;
  EXPECT_NE(msg.find("has no quantization block"), std::string::npos) << msg;
}

}  // namespace
}  // namespace mlxq::model::gemma4
