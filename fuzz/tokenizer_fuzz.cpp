// libFuzzer target: the tokenizer must never crash, and decode(encode(s)) == s for any valid
// UTF-8 text without a literal "▁" (which the normalizer cannot tell from a space).
// The tokenizer is read from $MLXQ_TOKENIZER, else the build's derived gemma4-tokenizer.json.
#include <cstdlib>
#include <string>

#include "text/tokenizer.h"

namespace {
const mlxq::text::Tokenizer& tok() {
  static const mlxq::text::Tokenizer t = [] {
    const char* env = std::getenv("MLXQ_TOKENIZER");
    return mlxq::text::Tokenizer::from_file(env ? env : MLXQ_TOKENIZER);
  }();
  return t;
}

bool valid_utf8_no_mark(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (size_t k = 1; k < n; ++k)
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    uint32_t cp = n == 1 ? c : c & (0x7F >> n);
    for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
    const size_t min_len = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
    if (n != min_len || (cp >= 0xD800 && cp < 0xE000) || cp > 0x10FFFF || cp == 0x2581) return false;
    i += n;
  }
  return true;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string s(reinterpret_cast<const char*>(data), size);
  const auto ids = tok().encode(s, false);
  const auto ids_special = tok().encode(s, true);
  const std::string back = tok().decode(ids);
  (void)tok().decode(ids_special, true);
  mlxq::text::Detokenizer d(tok());
  std::string streamed;
  for (int32_t id : ids) streamed += d.push(id);
  streamed += d.flush();
  if (streamed != back) std::abort();
  if (valid_utf8_no_mark(s) && back != s) std::abort();
  return 0;
}
