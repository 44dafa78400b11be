// The vision tower against the gemma4-vision goldens (tests/data/gemma4-vision: a tiny tower in
// the real layout, two images at their target size, soft-token embeddings from an independent
// float64 implementation that llama.cpp reproduces to 2e-6), and the preprocessing rules of
// gemma4-architecture.md §10.2 against a table computed independently (Python, float64).
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/image.h"
#include "io/json_fields.h"
#include "io/npy.h"
#include "model/gemma4/model.h"
#include "model/gemma4/vision.h"
#include "test_util.h"

namespace mlxq::model::gemma4 {
namespace {

using test::data_path;
using test::TempDir;
using test::write_file;

const std::string kDir = "gemma4-vision/";

VisionConfig real_tower() {
  VisionConfig v;
  v.hidden_size = 1152;
  v.intermediate_size = 4304;
  v.num_hidden_layers = 27;
  v.num_attention_heads = 16;
  v.head_dim = 72;
  return v;
}

// §10.2 step 2 for every budget: (width, height) targets from the processor's rule evaluated in
// Python float64, independently of this implementation.
TEST(VisionPreprocess, TargetSizesForEveryBudget) {
  struct Row {
    int64_t w, h;
    std::pair<int64_t, int64_t> want[5];
  };
  const Row rows[] = {
      {1024, 768, {{432, 336}, {624, 480}, {912, 672}, {1296, 960}, {1824, 1344}}},
      {896, 896, {{384, 384}, {528, 528}, {768, 768}, {1104, 1104}, {1584, 1584}}},
      {1920, 1080, {{528, 288}, {720, 384}, {1056, 576}, {1488, 816}, {2112, 1200}}},
      {1056, 576, {{528, 288}, {768, 384}, {1056, 576}, {1536, 816}, {2160, 1152}}},
      {224, 224, {{384, 384}, {528, 528}, {768, 768}, {1104, 1104}, {1584, 1584}}},
      {4000, 3000, {{432, 336}, {624, 480}, {912, 672}, {1296, 960}, {1824, 1344}}},
      {100, 3000, {{48, 2160}, {96, 3072}, {144, 4368}, {192, 6192}, {288, 8784}}},
      {3000, 100, {{2160, 48}, {3072, 96}, {4368, 144}, {6192, 192}, {8784, 288}}},
      {17, 5000, {{48, 3360}, {48, 6720}, {48, 13440}, {48, 19440}, {48, 27504}}},
      {1, 1, {{384, 384}, {528, 528}, {768, 768}, {1104, 1104}, {1584, 1584}}},
      {333, 777, {{240, 576}, {336, 864}, {480, 1200}, {720, 1728}, {1008, 2448}}},
  };
  const VisionConfig v = real_tower();
  for (const Row& r : rows)
    for (int b = 0; b < 5; ++b) {
      const auto got = vision_target_size(r.w, r.h, kVisionBudgets[b], v);
      EXPECT_EQ(got, r.want[b]) << r.w << " x " << r.h << " at " << kVisionBudgets[b];
      EXPECT_LE(got.first / 48 * (got.second / 48), kVisionBudgets[b] * 3) << r.w << " x " << r.h;
    }
  // The spec's examples at 280: soft tokens 266, 256, 264.
  const std::pair<int64_t, int64_t> ex[] = {{1024, 768}, {896, 896}, {1920, 1080}};
  const int64_t tokens[] = {266, 256, 264};
  for (int i = 0; i < 3; ++i) {
    const auto [w, h] = vision_target_size(ex[i].first, ex[i].second, 280, v);
    EXPECT_EQ((w / 48) * (h / 48), tokens[i]);
  }
  EXPECT_TRUE(valid_vision_budget(280));
  EXPECT_FALSE(valid_vision_budget(300));
}

// §10.2 steps 3-5: patch i = y * pw + x, vector order (row-in-patch, col-in-patch, channel).
TEST(VisionPreprocess, PatchOrder) {
  const VisionConfig v = real_tower();
  const int64_t w = 96, h = 48;
  std::vector<uint8_t> rgb(size_t(w * h * 3));
  for (size_t i = 0; i < rgb.size(); ++i) rgb[i] = uint8_t(i * 7 % 251);
  const VisionImage img = patchify(rgb.data(), w, h, v);
  ASSERT_EQ(img.pw, 6);
  ASSERT_EQ(img.ph, 3);
  EXPECT_EQ(img.soft_tokens(v), 2);
  for (int64_t py = 0; py < 3; ++py)
    for (int64_t px = 0; px < 6; ++px)
      for (int64_t r : {0, 5, 15})
        for (int64_t c : {0, 9, 15})
          for (int64_t ch = 0; ch < 3; ++ch) {
            const float got = img.patches[size_t(((py * 6 + px) * 768) + (r * 16 + c) * 3 + ch)];
            const uint8_t want = rgb[size_t(((py * 16 + r) * w + px * 16 + c) * 3 + ch)];
            ASSERT_FLOAT_EQ(got, float(want) / 255.0f);
          }
  EXPECT_THROW(patchify(rgb.data(), 50, 48, v), Error);
}

struct Golden : ::testing::Test {
  static void SetUpTestSuite() {
    ckpt = new io::Checkpoint(data_path(kDir + "hf"));
    cfg = new Gemma4Config(load_config(data_path(kDir + "hf")));
    pool = new ThreadPool(2);
  }
  static void TearDownTestSuite() {
    delete ckpt;
    delete cfg;
    delete pool;
  }
  static io::Checkpoint* ckpt;
  static Gemma4Config* cfg;
  static ThreadPool* pool;
};
io::Checkpoint* Golden::ckpt = nullptr;
Gemma4Config* Golden::cfg = nullptr;
ThreadPool* Golden::pool = nullptr;

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, double(std::fabs(a[i] - b[i])));
  return m;
}

// The config's vision block and ids, and the tower's soft tokens for both images: shape, count
// and every value within 1e-4 (the golden README's bar, 30x the two references' spread).
TEST_F(Golden, EmbeddingsMatchInExactPrecision) {
  ASSERT_TRUE(cfg->vision.has_value());
  EXPECT_EQ(cfg->vision->hidden_size, 128);
  EXPECT_EQ(cfg->vision->head_dim, 64);
  EXPECT_EQ(cfg->boi_token_id, 255999);
  EXPECT_EQ(cfg->image_token_id, 258880);
  EXPECT_EQ(cfg->eoi_token_id, 258882);
  VisionTower tower(*ckpt, *cfg, *pool, kernels::Precision::Exact);
  const nlohmann::json expected = io::read_json_file(data_path(kDir + "goldens/expected.json"));
  ASSERT_EQ(expected.size(), 2u);
  for (const auto& e : expected) {
    const std::string name = e["image"].get<std::string>();
    const io::Image im = io::read_image(data_path(kDir + name));
    ASSERT_EQ(im.width, e["width"].get<int>());
    ASSERT_EQ(im.height, e["height"].get<int>());
    const auto [tw, th] = vision_target_size(im.width, im.height, e["soft_token_budget"].get<int64_t>(), tower.config());
    EXPECT_EQ(tw, e["target_size_wh"][0].get<int64_t>());
    EXPECT_EQ(th, e["target_size_wh"][1].get<int64_t>());
    const VisionImage img = patchify(im.rgb.data(), im.width, im.height, tower.config());
    EXPECT_EQ(img.pw, e["patch_grid_wh"][0].get<int64_t>());
    EXPECT_EQ(img.ph, e["patch_grid_wh"][1].get<int64_t>());
    ASSERT_EQ(img.soft_tokens(tower.config()), e["n_soft_tokens"].get<int64_t>());
    VisionTower::Trace trace;
    tower.set_trace(&trace);
    const std::vector<float> got = tower.embed(img);
    const io::NpyF32 want = io::read_npy_f32(data_path(kDir + e["embeddings"].get<std::string>()));
    ASSERT_EQ(want.shape, (std::vector<int64_t>{img.soft_tokens(tower.config()), 256}));
    ASSERT_EQ(got.size(), want.data.size());
    EXPECT_LT(max_abs_diff(got, want.data), 1e-4) << name;
    if (name == "images/img1.png") {  // where a failure starts
      for (const auto& [file, mine] : {std::pair{"img1.patch_embd.npy", &trace.patch_embd},
                                       std::pair{"img1.pooled.npy", &trace.pooled},
                                       std::pair{"img1.standardized.npy", &trace.standardized}}) {
        const io::NpyF32 ref = io::read_npy_f32(data_path(kDir + "goldens/" + file));
        ASSERT_EQ(ref.data.size(), mine->size()) << file;
        double scale = 0;
        for (float x : ref.data) scale = std::max(scale, double(std::fabs(x)));
        EXPECT_LT(max_abs_diff(*mine, ref.data), 1e-5 * std::max(1.0, scale)) << file;
      }
    }
  }
}

// Fast precision (bf16 activations into the bf16 weights) stays close to the goldens.
TEST_F(Golden, FastPrecisionStaysClose) {
  VisionTower tower(*ckpt, *cfg, *pool, kernels::Precision::Fast);
  const io::Image im = io::read_image(data_path(kDir + "images/img2.png"));
  const std::vector<float> got = tower.embed(patchify(im.rgb.data(), im.width, im.height, tower.config()));
  const io::NpyF32 want = io::read_npy_f32(data_path(kDir + "goldens/img2.embd.npy"));
  ASSERT_EQ(got.size(), want.data.size());
  EXPECT_LT(max_abs_diff(got, want.data), 2e-2);
}

// A checkpoint without a vision tower says so.
TEST(Vision, TextOnlyCheckpointRefusesByName) {
  const Gemma4Config cfg = load_config(data_path("gemma4-tiny-a/hf"));
  EXPECT_FALSE(cfg.vision.has_value());
  io::Checkpoint ckpt(data_path("gemma4-tiny-a/hf"));
  ThreadPool pool(1);
  try {
    VisionTower t(ckpt, cfg, pool, kernels::Precision::Exact);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no vision_config"), std::string::npos) << e.what();
  }
}

// The end-to-end golden's checkpoint: tiny-a's decoder and this tower side by side (an index over
// both files), with e2e/config.json (window 512, image ids inside tiny-a's vocabulary).
std::string e2e_checkpoint(const TempDir& tmp) {
  namespace fs = std::filesystem;
  fs::copy_file(data_path(kDir + "e2e/config.json"), tmp / "config.json");
  fs::create_symlink(data_path("gemma4-tiny-a/hf/model.safetensors"), tmp / "text.safetensors");
  fs::create_symlink(data_path(kDir + "hf/model.safetensors"), tmp / "vision.safetensors");
  nlohmann::json index;
  for (const auto& [dir, file] : {std::pair{data_path("gemma4-tiny-a/hf"), "text.safetensors"},
                                  std::pair{data_path(kDir + "hf"), "vision.safetensors"}}) {
    io::Checkpoint c(dir);
    for (const auto& [name, t] : c.tensors()) index["weight_map"][name] = file;
  }
  write_file(tmp / "model.safetensors.index.json", index.dump());
  return tmp.str();
}

struct E2E {
  std::vector<int32_t> ids;
  std::vector<float> soft;  // img2's soft tokens, Exact
  io::NpyF32 logits;
};

E2E e2e_inputs(Model& model) {
  E2E e;
  const nlohmann::json tok = io::read_json_file(data_path(kDir + "e2e/tokens.json"));
  e.ids = tok["ids"].get<std::vector<int32_t>>();
  VisionTower tower(model.checkpoint(), model.config(), model.pool(), kernels::Precision::Exact);
  const io::Image im = io::read_image(data_path(kDir + "images/img2.png"));
  e.soft = tower.embed(patchify(im.rgb.data(), im.width, im.height, tower.config()));
  e.logits = io::read_npy_f32(data_path(kDir + "e2e/logits.npy"));
  return e;
}

void expect_close(const std::vector<float>& got, const io::NpyF32& want, double tol, const std::string& what) {
  ASSERT_EQ(got.size(), want.data.size()) << what;
  const int64_t V = want.shape[1], T = want.shape[0];
  double worst = 0;
  int argmax_equal = 0;
  for (int64_t t = 0; t < T; ++t) {
    const float* a = &got[size_t(t * V)];
    const float* b = &want.data[size_t(t * V)];
    for (int64_t v = 0; v < V; ++v) worst = std::max(worst, double(std::fabs(a[v] - b[v])));
    argmax_equal += std::max_element(a, a + V) - a == std::max_element(b, b + V) - b;
  }
  EXPECT_LT(worst, tol) << what;
  EXPECT_EQ(argmax_equal, T) << what;
}

// §10.5 end to end: text, one image (264 soft tokens unscaled in place of the placeholders, a
// bidirectional run), text; every position's logits against the float64 reference (llama.cpp
// agrees with it to 5.6e-6; the golden README suggests 1e-3 and equal argmax).
TEST(VisionMerge, EndToEndGoldenLogits) {
  TempDir tmp;
  ModelOptions mo;
  mo.exact = true;
  mo.threads = 2;
  mo.max_chunk = 512;
  Model model(e2e_checkpoint(tmp), mo);
  const E2E e = e2e_inputs(model);
  ASSERT_EQ(e.ids.size(), 280u);
  ASSERT_EQ(e.soft.size(), size_t(264 * 256));
  const int64_t T = int64_t(e.ids.size()), V = model.config().vocab_size;
  std::vector<float> logits(size_t(T * V));
  auto cache = model.make_cache(T);
  SequenceStep s{e.ids, &cache, logits.data(), true, e.soft.data()};
  model.forward_batch(std::span<const SequenceStep>(&s, 1));
  expect_close(logits, e.logits, 1e-3, "one prefill");

  // Without images the placeholders are text rows (a plain causal prompt): the logits move.
  std::vector<float> causal(size_t(T * V));
  auto cache2 = model.make_cache(T);
  SequenceStep plain{e.ids, &cache2, causal.data(), true, nullptr};
  model.forward_batch(std::span<const SequenceStep>(&plain, 1));
  double moved = 0;
  for (size_t i = 0; i < causal.size(); ++i) moved = std::max(moved, double(std::fabs(causal[i] - logits[i])));
  EXPECT_GT(moved, 1.0) << "images as text embeddings should change the logits";
}

// The run's mask survives chunking: prefill in steps of 16, 100 and 271 tokens (each cuts the
// 264-token run or ends inside it), and a cached multi-turn prefill (the text before the image,
// then the image and the rest, then the last token alone) give the one-shot logits.
TEST(VisionMerge, ChunkedAndCachedPrefillsEqualOneShot) {
  TempDir tmp;
  ModelOptions mo;
  mo.exact = true;
  mo.threads = 2;
  mo.max_chunk = 128;  // smaller than the run: the run takes a step of its own
  Model model(e2e_checkpoint(tmp), mo);
  EXPECT_EQ(model.max_image_tokens(), 280);
  const E2E e = e2e_inputs(model);
  const int64_t T = int64_t(e.ids.size()), V = model.config().vocab_size;
  std::vector<float> one(size_t(T * V));
  {
    auto cache = model.make_cache(T);
    SequenceStep s{e.ids, &cache, one.data(), true, e.soft.data()};
    model.forward_batch(std::span<const SequenceStep>(&s, 1));
  }
  expect_close(one, e.logits, 1e-3, "max_chunk 128");
  for (int64_t chunk : {16, 100, 128}) {
    std::vector<float> got(size_t(T * V));
    auto cache = model.make_cache(T);
    SequenceStep s{e.ids, &cache, got.data(), true, e.soft.data()};
    model.forward_batch(std::span<const SequenceStep>(&s, 1), chunk);
    EXPECT_EQ(got, one) << "chunk " << chunk;
  }
  // Three turns on one cache: 5 tokens; then the rest but the last (the image among them); then the last.
  std::vector<float> got(size_t(T * V));
  auto cache = model.make_cache(T);
  const std::span<const int32_t> ids(e.ids);
  SequenceStep a{ids.subspan(0, 5), &cache, got.data(), true, nullptr};
  model.forward_batch(std::span<const SequenceStep>(&a, 1), 3);
  SequenceStep b{ids.subspan(5, size_t(T - 6)), &cache, got.data() + 5 * V, true, e.soft.data()};
  model.forward_batch(std::span<const SequenceStep>(&b, 1), 64);
  SequenceStep c{ids.subspan(size_t(T - 1)), &cache, got.data() + (T - 1) * V, true, nullptr};
  model.forward_batch(std::span<const SequenceStep>(&c, 1));
  EXPECT_EQ(got, one) << "cached turns";
}

}  // namespace
}  // namespace mlxq::model::gemma4
