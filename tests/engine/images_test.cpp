// Images in chat prompts: data URLs, taking images out of messages, the placeholder expansion
// with per-token keys, and sessions on a small synthetic checkpoint with a vision tower (the real
// tokenizer): the prompt a turn with an image prefills, KV reuse that tells images apart, a
// cached turn against a full render, pieces of a batched prefill around an image run, and the
// refusal of a text-only checkpoint.
#include <gtest/gtest.h>

#include <cmath>

#include "convert/synthetic.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "engine/images.h"
#include "mlxq/session.h"
#include "model/gemma4/model.h"
#include "model/gemma4/vision.h"
#include "test_util.h"

namespace mlxq {
namespace {

using engine::ImageTokenIds;
using engine::PromptImage;
using nlohmann::ordered_json;

std::string base64(const std::vector<uint8_t>& b) {
  static const char* a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < b.size(); i += 3) {
    const uint32_t v = uint32_t(b[i]) << 16 | uint32_t(b[i + 1]) << 8 | b[i + 2];
    for (int k = 3; k >= 0; --k) out += a[(v >> (6 * k)) & 63];
  }
  if (i + 1 == b.size()) {
    const uint32_t v = uint32_t(b[i]) << 16;
    out += a[(v >> 18) & 63];
    out += a[(v >> 12) & 63];
    out += "==";
  } else if (i + 2 == b.size()) {
    const uint32_t v = uint32_t(b[i]) << 16 | uint32_t(b[i + 1]) << 8;
    out += a[(v >> 18) & 63];
    out += a[(v >> 12) & 63];
    out += a[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

std::string data_url(const std::vector<uint8_t>& b) { return "data:image/png;base64," + base64(b); }

template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "no error";
}

TEST(ImagesDataUrl, DecodesBase64AndRefusesOtherUrls) {
  for (size_t n : {1u, 2u, 3u, 4u, 5u, 100u}) {
    std::vector<uint8_t> b(n);
    for (size_t i = 0; i < n; ++i) b[i] = uint8_t(i * 37 + 11);
    EXPECT_EQ(engine::decode_data_url(data_url(b), "f"), b) << n;
  }
  // URL-safe alphabet, whitespace, no padding.
  EXPECT_EQ(engine::decode_data_url("data:image/png;base64,_-8\nA", "f"), (std::vector<uint8_t>{0xff, 0xef, 0x00}));
  EXPECT_NE(error_of([] { engine::decode_data_url("https://x/cat.png", "messages[0].content[1]"); })
                .find("messages[0].content[1]: only data URLs"),
            std::string::npos);
  EXPECT_NE(error_of([] { engine::decode_data_url("data:image/png,abc", "f"); }).find("not base64"), std::string::npos);
  EXPECT_NE(error_of([] { engine::decode_data_url("data:image/png;base64,ab$d", "f"); }).find("not valid base64"),
            std::string::npos);
  EXPECT_NE(error_of([] { engine::decode_data_url("data:image/png;base64,", "f"); }).find("no data"), std::string::npos);
}

TEST(ImagesMessages, TakesImagePartsInOrder) {
  ordered_json m = ordered_json::parse(R"([
    {"role": "system", "content": "s"},
    {"role": "user", "content": [{"type": "text", "text": "a"},
                                 {"type": "image_url", "image_url": {"url": "data:image/png;base64,AQI="}},
                                 {"type": "image_url", "image_url": "data:image/png;base64,Aw=="}]},
    {"role": "assistant", "content": "ok"},
    {"role": "user", "content": [{"type": "image", "url": "data:image/png;base64,BA=="}]}])");
  const auto images = engine::take_message_images(m);
  ASSERT_EQ(images.size(), 3u);
  EXPECT_EQ(images[0].bytes, (std::vector<uint8_t>{1, 2}));
  EXPECT_EQ(images[0].name, "messages[1].content[1]");
  EXPECT_EQ(images[1].bytes, (std::vector<uint8_t>{3}));
  EXPECT_EQ(images[2].bytes, (std::vector<uint8_t>{4}));
  EXPECT_EQ(images[2].name, "messages[3].content[0]");
  EXPECT_EQ(m[1]["content"][1], (ordered_json{{"type", "image"}}));
  EXPECT_EQ(m[3]["content"][0], (ordered_json{{"type", "image"}}));
  ordered_json bad = ordered_json::parse(R"([{"role": "user", "content": [{"type": "image"}]}])");
  EXPECT_NE(error_of([&] { engine::take_message_images(bad); }).find("messages[0].content[0]: an image part without"),
            std::string::npos);
}

TEST(ImagesExpand, RunsKeysAndCounts) {
  const ImageTokenIds ids{7, 1, 2, 3};
  PromptImage a, b;
  a.soft_tokens = 2;
  a.key = 100;
  b.soft_tokens = 3;
  b.key = 200;
  const std::vector<const PromptImage*> both{&a, &b};
  const engine::ExpandedPrompt e = engine::expand_images(std::vector<int32_t>{5, 7, 6, 7}, both, ids);
  EXPECT_EQ(e.tokens, (std::vector<int32_t>{5, 1, 2, 2, 3, 6, 1, 2, 2, 2, 3}));
  EXPECT_EQ(e.keys, (std::vector<uint64_t>{0, 0, 100, 100, 0, 0, 0, 200, 200, 200, 0}));
  EXPECT_NE(error_of([&] { engine::expand_images(std::vector<int32_t>{7}, both, ids); })
                .find("1 image placeholder for 2 images"),
            std::string::npos);
  // A cached prefix never ends inside a run; the images before the cut are counted.
  EXPECT_EQ(engine::cut_before_runs(e.tokens, 3, 2).keep, 2u);
  EXPECT_EQ(engine::cut_before_runs(e.tokens, 3, 2).first_image, 0u);
  EXPECT_EQ(engine::cut_before_runs(e.tokens, 4, 2).keep, 4u);
  EXPECT_EQ(engine::cut_before_runs(e.tokens, 4, 2).first_image, 1u);
  EXPECT_EQ(engine::cut_before_runs(e.tokens, 9, 2).keep, 7u);
  EXPECT_EQ(engine::cut_before_runs(e.tokens, 9, 2).first_image, 1u);
  EXPECT_EQ(engine::cut_before_runs(e.tokens, 11, 2).first_image, 2u);
}

class SessionImages : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new test::TempDir();
    model::gemma4::SyntheticOptions o;
    o.preset = "small";
    o.seed = 9;
    o.format = model::gemma4::CheckpointFormat::MLX;
    o.quant = {4, 64};
    o.tokenizer_json = MLXQ_TOKENIZER;
    ThreadPool pool(2);
    model::gemma4::write_synthetic_model(*dir_ / "vision", o, pool);
    o.vision = false;
    model::gemma4::write_synthetic_model(*dir_ / "text", o, pool);
  }
  static void TearDownTestSuite() { delete dir_; }
  static std::shared_ptr<Model> load(const std::string& name = "vision", int batch = 1, int64_t budget = 70) {
    LoadOptions lo;
    lo.threads = 2;
    lo.max_context = 2048;
    lo.max_chunk = 64;
    lo.batch_sequences = batch;
    lo.max_soft_tokens = budget;
    return load_model(*dir_ / name, lo);
  }
  static ImageInput image(int k) {
    const std::string p = test::data_path("gemma4-vision/images/img" + std::to_string(k) + ".png");
    return ImageInput::from_file(p);
  }
  static ChatConfig greedy(int n) {
    ChatConfig c;
    c.temperature = 0.0f;
    c.max_new_tokens = n;
    return c;
  }
  static test::TempDir* dir_;
};
test::TempDir* SessionImages::dir_ = nullptr;

double max_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double d = 0;
  for (size_t i = 0; i < a.size(); ++i) d = std::max(d, double(std::fabs(a[i] - b[i])));
  return d;
}

// A turn with an image prefills `<|image>` + N x `<|image|>` + `<image|>` before the text, N
// from the budget (img1 768 x 768 at 70: 384 x 384, 8 x 8 = 64); another image gives other
// logits, and ModelInfo says the model takes images.
TEST_F(SessionImages, ATurnWithAnImagePrefillsItsRun) {
  auto model = load();
  EXPECT_TRUE(model->info().vision);
  EXPECT_EQ(model->info().max_soft_tokens, 70);
  auto s = model->create_session();
  const ChatResult r = s->send("What is in the picture?", {image(1)}, greedy(3));
  EXPECT_TRUE(s->has_images());
  const std::vector<int32_t>& h = s->history();
  const auto open = std::find(h.begin(), h.end(), 255999);
  ASSERT_NE(open, h.end());
  EXPECT_EQ(std::count(h.begin(), h.end(), 258880), 64);
  EXPECT_EQ(*(open + 65), 258882);
  EXPECT_EQ(*(open - 1), 107);  // "<|turn>user\n" then the image
  EXPECT_EQ(r.prompt_tokens, r.prefill_tokens);
  EXPECT_GT(r.performance.vision_ms, 0.0);

  auto t = model->create_session();
  t->send("What is in the picture?", {image(2)}, greedy(3));
  EXPECT_GT(max_diff(s->last_logits(), t->last_logits()), 1e-2);  // another image, other logits
}

// The second turn reuses the cache (only its delta is prefilled); its logits equal a fresh
// prefill of the session's history with the image's soft tokens (the model alone, no session).
// Through send_messages, a conversation that grows by a turn reuses the prefix with the image and
// gives the logits of the whole conversation sent to a fresh session.
TEST_F(SessionImages, CachedTurnsEqualFreshPrefills) {
  auto model = load();
  auto s = model->create_session();
  const ChatResult r1 = s->send("Describe it.", {image(1)}, greedy(4));
  const size_t after1 = s->history().size();
  const ChatResult r2 = s->send("And the colours?", greedy(1));
  EXPECT_EQ(r2.cached_tokens, int(after1));
  EXPECT_LT(r2.prefill_tokens, 20);
  {
    const std::vector<int32_t> h = s->history();
    model::gemma4::ModelOptions mo;
    mo.threads = 2;
    mo.max_chunk = 64;
    mo.max_image_tokens = 70;
    model::gemma4::Model fresh(*dir_ / "vision", mo);
    model::gemma4::VisionTower& tower = fresh.vision();
    const PromptImage im = engine::prepare_image(image(1).bytes, "img1", tower.config(), 70);
    const std::vector<float> soft =
        tower.embed(model::gemma4::patchify(im.pixels.rgb.data(), im.pixels.width, im.pixels.height, tower.config()));
    auto cache = fresh.make_cache(int64_t(h.size()));
    std::vector<float> logits(262144);
    const model::gemma4::SequenceStep st{h, &cache, logits.data(), false, soft.data()};
    fresh.forward_batch(std::span(&st, 1));
    EXPECT_LT(max_diff(logits, s->last_logits()), 5e-3);
  }

  ordered_json msgs = ordered_json::array();
  msgs.push_back({{"role", "user"},
                  {"content", ordered_json::array({{{"type", "image_url"},
                                                    {"image_url", {{"url", data_url(image(1).bytes)}}}},
                                                   {{"type", "text"}, {"text", "Describe it."}}})}});
  auto m = model->create_session();
  const ChatResult a = m->send_messages(msgs.dump(), greedy(3));
  msgs.push_back({{"role", "assistant"}, {"content", a.text}});
  msgs.push_back({{"role", "user"}, {"content", "And the colours?"}});
  const ChatResult b = m->send_messages(msgs.dump(), greedy(1));
  const std::vector<int32_t>& h = m->history();
  const int64_t run_end = std::find(h.rbegin(), h.rend(), 258880).base() - h.begin();
  EXPECT_GT(b.cached_tokens, run_end) << "the image run is reused";
  auto f = model->create_session();
  const ChatResult c = f->send_messages(msgs.dump(), greedy(1));
  EXPECT_EQ(c.cached_tokens, 0);
  EXPECT_EQ(f->history(), m->history());
  EXPECT_LT(max_diff(f->last_logits(), m->last_logits()), 5e-3);
}

// send_messages reuses a cached image only when it is the same image: the same request again
// reuses all but the last token; an image with other bytes (here img1 with a text chunk added:
// the same pixels, the same placeholder ids) cuts the cache at the start of its run.
TEST_F(SessionImages, PrefixReuseTellsImagesApart) {
  auto model = load();
  auto s = model->create_session();
  auto msgs = [](const std::vector<uint8_t>& png) {
    ordered_json m = ordered_json::array();
    m.push_back({{"role", "user"},
                 {"content", ordered_json::array({{{"type", "text"}, {"text", "Look:"}},
                                                  {{"type", "image_url"}, {"image_url", {{"url", data_url(png)}}}},
                                                  {{"type", "text"}, {"text", "What is it?"}}})}});
    return m.dump();
  };
  const std::vector<uint8_t> png = image(1).bytes;
  const ChatResult a = s->send_messages(msgs(png), greedy(1));
  const std::vector<float> first = s->last_logits();
  const ChatResult b = s->send_messages(msgs(png), greedy(1));
  EXPECT_EQ(b.cached_tokens, a.prompt_tokens - 1);
  EXPECT_LT(max_diff(first, s->last_logits()), 5e-3);

  // A tEXt chunk after IHDR (CRC and all): another file of the same pixels.
  std::vector<uint8_t> other(png.begin(), png.begin() + 33);
  const uint8_t chunk[] = {0, 0, 0, 3, 't', 'E', 'X', 't', 'a', 0, 'b'};
  other.insert(other.end(), std::begin(chunk), std::end(chunk));
  uint32_t crc = 0xffffffffu;
  for (size_t i = 4; i < sizeof chunk; ++i) {
    crc ^= chunk[i];
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1u)));
  }
  crc ^= 0xffffffffu;
  for (int k = 3; k >= 0; --k) other.push_back(uint8_t(crc >> (8 * k)));
  other.insert(other.end(), png.begin() + 33, png.end());
  const ChatResult c = s->send_messages(msgs(other), greedy(1));
  const std::vector<int32_t>& h = s->history();
  EXPECT_EQ(c.prompt_tokens, a.prompt_tokens);
  EXPECT_EQ(c.cached_tokens, std::find(h.begin(), h.end(), 258880) - h.begin());
  EXPECT_LT(max_diff(first, s->last_logits()), 5e-3) << "the same pixels";
}

// With batching (the server's mode), a long prompt goes in pieces of at most a chunk; an image
// run (img2 at 70: 528 x 288, 66 tokens; chunk 64, pieces of 61) is never cut, and the answer's logits match the
// one-at-a-time scheduler's.
TEST_F(SessionImages, BatchedPiecesKeepTheRunWhole) {
  auto one = load("vision", 1)->create_session();
  auto many = load("vision", 4)->create_session();
  const std::string text(200, 'x');
  one->send(text, {image(2)}, greedy(1));
  many->send(text, {image(2)}, greedy(1));
  EXPECT_EQ(one->history(), many->history());
  EXPECT_LT(max_diff(one->last_logits(), many->last_logits()), 2e-2);
}

TEST_F(SessionImages, TextOnlyCheckpointRefusesImages) {
  auto model = load("text");
  EXPECT_FALSE(model->info().vision);
  auto s = model->create_session();
  const std::string e = error_of([&] { s->send("hi", {image(1)}, greedy(1)); });
  EXPECT_NE(e.find("no vision tower"), std::string::npos) << e;
  const std::string m = error_of([&] {
    s->send_messages(R"([{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/png;base64,AQ=="}}]}])",
                     greedy(1));
  });
  EXPECT_NE(m.find("no vision tower"), std::string::npos) << m;
  EXPECT_EQ(s->send("hi", greedy(1)).finish_reason, FinishReason::Length);  // still usable
}

TEST_F(SessionImages, BadImagesAreClearErrors) {
  auto s = load()->create_session();
  const std::string e = error_of([&] { s->send("hi", {ImageInput{{1, 2, 3}, "junk.bin"}}, greedy(1)); });
  EXPECT_NE(e.find("junk.bin: unknown or unsupported image format"), std::string::npos) << e;
  std::vector<uint8_t> cut = image(1).bytes;
  cut.resize(cut.size() / 2);
  const std::string t = error_of([&] { s->send("hi", {ImageInput{cut, "half.png"}}, greedy(1)); });
  EXPECT_NE(t.find("half.png: corrupt or truncated PNG"), std::string::npos) << t;
  EXPECT_EQ(s->send("hi", greedy(1)).finish_reason, FinishReason::Length);  // still usable
}

}  // namespace
}  // namespace mlxq
