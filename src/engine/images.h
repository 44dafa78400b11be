// Images in a chat prompt (gemma4-text-io.md §3.7; gemma4-architecture.md §10.2 and §10.5): an
// image's encoded bytes become pixels at the budget's target size, the template's one
// `<|image|>` per image becomes `<|image>` + N x `<|image|>` + `<image|>`, and every prompt token
// gets a key (0 for text, the image's hash for its soft tokens) so that a cached prefix is reused
// only when its images are the same, not merely the same placeholder ids.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <vector>

#include "io/image.h"
#include "model/gemma4/config.h"

namespace mlxq::engine {

// One image of a conversation, decoded and resized for the vision tower; its embedding is
// computed when a prefill needs it and kept.
struct PromptImage {
  std::string name;              // for messages: a path, or where in a request it came from
  uint64_t key = 0;              // FNV-1a of the encoded bytes and the budget; never 0
  int64_t soft_tokens = 0;       // N: the run's length in the prompt
  io::Image pixels;              // at the target size (multiples of patch x pool)
  std::vector<float> embedding;  // [N, text hidden] once computed
};

// The key of an image's soft tokens: FNV-1a over the encoded bytes and the budget, never 0.
uint64_t image_key(std::span<const uint8_t> bytes, int64_t budget);

// Decodes `bytes` (PNG, JPEG, WebP, BMP, GIF; errors start with `name`), sizes it for the
// soft-token budget (70/140/280/560/1120) and resizes (PIL's bicubic); with `resize` false only
// the count (for token counting), pixels left empty.
PromptImage prepare_image(std::span<const uint8_t> bytes, const std::string& name,
                          const model::gemma4::VisionConfig& v, int64_t budget, bool resize = true);

// `data:<mime>;base64,<data>` to bytes; errors name `field`. Other URLs (http, file) are refused:
// the engine fetches nothing.
std::vector<uint8_t> decode_data_url(const std::string& url, const std::string& field);

// An encoded image a request carries, and where (for errors: "messages[1].content[0]").
struct ImageBytes {
  std::vector<uint8_t> bytes;
  std::string name;
};

// Takes the images out of OpenAI-style messages, in order: content parts {"type": "image_url",
// "image_url": {"url": DATA_URL} or "image_url": DATA_URL} and {"type": "image", "url" | "data":
// DATA_URL}; each becomes {"type": "image"} for the template. A part without data is an error.
std::vector<ImageBytes> take_message_images(nlohmann::ordered_json& messages);

struct ImageTokenIds {
  int32_t placeholder = -1;                  // the tokenizer's `<|image|>`, as the template writes it
  int32_t open = -1, soft = -1, close = -1;  // config.json's boi / image / eoi token ids
};

// A prompt with its images' placeholders expanded, and a key per token.
struct ExpandedPrompt {
  std::vector<int32_t> tokens;
  std::vector<uint64_t> keys;
};

// Replaces the i-th `ids.placeholder` token of `tokens` with images[i]'s run. The counts must match
// (an error says both).
ExpandedPrompt expand_images(std::span<const int32_t> tokens, std::span<const PromptImage* const> images,
                             const ImageTokenIds& ids);

// The index of the first image whose run lies at or after `at` in an expanded prompt (the runs
// before it are in a cached prefix), and `at` moved back to the start of a run it would cut.
struct PrefixCut {
  size_t keep = 0;
  size_t first_image = 0;
};
PrefixCut cut_before_runs(std::span<const int32_t> tokens, size_t keep, int32_t soft_id);

}  // namespace mlxq::engine
