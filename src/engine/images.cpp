// Images in a chat prompt: decoding and sizing (prepare_image), data URLs, taking the images out
// of OpenAI-style messages, and the placeholder expansion with per-token keys (images.h).
#include "engine/images.h"

#include <array>

#include "core/error.h"
#include "model/gemma4/vision.h"

namespace mlxq::engine {

using nlohmann::ordered_json;

namespace {

uint64_t fnv1a(std::span<const uint8_t> bytes, uint64_t h = 1469598103934665603ull) {
  for (uint8_t b : bytes) {
    h ^= b;
    h *= 1099511628211ull;
  }
  return h;
}

// RFC 4648 base64, padding optional, whitespace skipped; anything else is an error.
std::vector<uint8_t> base64_decode(std::string_view s, const std::string& field) {
  static const std::array<int8_t, 256> table = [] {
    std::array<int8_t, 256> t{};
    t.fill(-1);
    const char* a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (int i = 0; i < 64; ++i) t[size_t(uint8_t(a[i]))] = int8_t(i);
    t[size_t('-')] = 62;  // the URL-safe alphabet too
    t[size_t('_')] = 63;
    return t;
  }();
  std::vector<uint8_t> out;
  out.reserve(s.size() / 4 * 3);
  uint32_t acc = 0;
  int bits = 0;
  size_t pad = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    const uint8_t c = uint8_t(s[i]);
    if (c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
    if (c == '=') {
      ++pad;
      continue;
    }
    const int8_t v = table[c];
    check(v >= 0 && pad == 0, field + ": not valid base64 (character " + std::to_string(i) + ")");
    acc = (acc << 6) | uint32_t(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(uint8_t(acc >> bits));
    }
  }
  check(pad <= 2 && bits < 6, field + ": not valid base64 (truncated)");
  return out;
}

}  // namespace

uint64_t image_key(std::span<const uint8_t> bytes, int64_t budget) {
  const uint64_t h = fnv1a(std::span(reinterpret_cast<const uint8_t*>(&budget), sizeof budget), fnv1a(bytes));
  return h == 0 ? 1 : h;
}

PromptImage prepare_image(std::span<const uint8_t> bytes, const std::string& name,
                          const model::gemma4::VisionConfig& v, int64_t budget, bool resize) {
  namespace g4 = model::gemma4;
  PromptImage p;
  p.name = name;
  io::Image im = io::decode_image(bytes, name);
  const auto [w, h] = g4::vision_target_size(im.width, im.height, budget, v);
  if (!resize) im = {};
  if (resize && (w != im.width || h != im.height)) im = io::resize_bicubic(im, int(w), int(h));
  const int64_t patch = v.patch_size, k = v.pooling_kernel_size;
  p.soft_tokens = (w / patch / k) * (h / patch / k);
  p.pixels = std::move(im);
  p.key = image_key(bytes, budget);
  return p;
}

std::vector<uint8_t> decode_data_url(const std::string& url, const std::string& field) {
  check(url.rfind("data:", 0) == 0,
        field + ": only data URLs (data:image/png;base64,...) are accepted; mlxq fetches nothing" +
            (url.rfind("http", 0) == 0 ? " (got an http URL)" : ""));
  const size_t comma = url.find(',');
  check(comma != std::string::npos, field + ": data URL without a comma");
  const std::string_view meta = std::string_view(url).substr(5, comma - 5);
  check(meta.size() >= 7 && meta.substr(meta.size() - 7) == ";base64",
        field + ": data URL is not base64 (expected data:<type>;base64,...)");
  std::vector<uint8_t> bytes = base64_decode(std::string_view(url).substr(comma + 1), field);
  check(!bytes.empty(), field + ": data URL holds no data");
  return bytes;
}

std::vector<ImageBytes> take_message_images(ordered_json& messages) {
  std::vector<ImageBytes> out;
  if (!messages.is_array()) return out;
  for (size_t i = 0; i < messages.size(); ++i) {
    ordered_json& m = messages[i];
    if (!m.is_object() || !m.contains("content") || !m["content"].is_array()) continue;
    ordered_json& parts = m["content"];
    for (size_t j = 0; j < parts.size(); ++j) {
      ordered_json& part = parts[j];
      if (!part.is_object() || !part.contains("type") || !part["type"].is_string()) continue;
      const std::string type = part["type"];
      if (type != "image" && type != "image_url") continue;
      const std::string where = "messages[" + std::to_string(i) + "].content[" + std::to_string(j) + "]";
      const ordered_json* url = nullptr;
      std::string field = where;
      if (type == "image_url" && part.contains("image_url")) {
        const ordered_json& iu = part["image_url"];
        url = iu.is_object() && iu.contains("url") ? &iu["url"] : &iu;
        field += iu.is_object() ? ".image_url.url" : ".image_url";
      } else {
        for (const char* key : {"url", "data", "image"})
          if (part.contains(key)) {
            url = &part[key];
            field += std::string(".") + key;
            break;
          }
      }
      check(url != nullptr, where + ": an image part without its data (expected image_url.url, a data URL)");
      check(url->is_string(), field + ": expected a data URL string");
      out.push_back({decode_data_url(url->get<std::string>(), field), where});
      part = ordered_json{{"type", "image"}};
    }
  }
  return out;
}

ExpandedPrompt expand_images(std::span<const int32_t> tokens, std::span<const PromptImage* const> images,
                             const ImageTokenIds& ids) {
  ExpandedPrompt e;
  size_t placeholders = 0;
  for (int32_t t : tokens) placeholders += t == ids.placeholder;
  check(placeholders == images.size(), "the prompt has " + std::to_string(placeholders) + " image placeholder" +
                                           (placeholders == 1 ? "" : "s") + " for " + std::to_string(images.size()) +
                                           " image" + (images.size() == 1 ? "" : "s"));
  size_t n = tokens.size();
  for (const PromptImage* im : images) n += size_t(im->soft_tokens) + 1;
  e.tokens.reserve(n);
  e.keys.reserve(n);
  size_t next = 0;
  for (int32_t t : tokens) {
    if (t != ids.placeholder) {
      e.tokens.push_back(t);
      e.keys.push_back(0);
      continue;
    }
    const PromptImage& im = *images[next++];
    e.tokens.push_back(ids.open);
    e.keys.push_back(0);
    e.tokens.insert(e.tokens.end(), size_t(im.soft_tokens), ids.soft);
    e.keys.insert(e.keys.end(), size_t(im.soft_tokens), im.key);
    e.tokens.push_back(ids.close);
    e.keys.push_back(0);
  }
  return e;
}

PrefixCut cut_before_runs(std::span<const int32_t> tokens, size_t keep, int32_t soft_id) {
  PrefixCut c;
  c.keep = std::min(keep, tokens.size());
  while (c.keep > 0 && c.keep < tokens.size() && tokens[c.keep] == soft_id && tokens[c.keep - 1] == soft_id) --c.keep;
  for (size_t i = 0; i < c.keep; ++i)
    if (tokens[i] == soft_id && (i == 0 || tokens[i - 1] != soft_id)) ++c.first_image;
  return c;
}

}  // namespace mlxq::engine
