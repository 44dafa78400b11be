// Tokenizer: the Hugging Face `tokenizer.json` BPE of Gemma 3/4 (gemma4-text-io.md §2) - added
// tokens split out first (leftmost-longest on the raw text, honouring `special`), the
// space -> "▁" normalizer, merge-rank BPE with byte fallback, and the matching decoder.
// Immutable after loading, so one instance may serve several threads.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace mlxq::text {

class Tokenizer {
 public:
  // Reads a tokenizer.json file (throws Error naming the file and field on bad input).
  static Tokenizer from_file(const std::string& path);
  static Tokenizer from_json_text(std::string_view json, const std::string& source);
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // Token ids of `text`, no BOS added. With parse_special, control tokens written in the text
  // (e.g. "<|turn>") become their ids; without it only non-special added tokens (newline runs,
  // HTML tags, ...) are matched, so user text never turns into control tokens.
  std::vector<int32_t> encode(std::string_view text, bool parse_special = false) const;
  void encode(std::string_view text, bool parse_special, std::vector<int32_t>& out) const;

  // Text of `ids`: "▁" -> space, byte tokens fused, invalid UTF-8 replaced by U+FFFD per byte.
  std::string decode(std::span<const int32_t> ids, bool skip_special = false) const;

  int32_t vocab_size() const;                 // number of ids (max id + 1)
  const std::string& piece(int32_t id) const; // the vocab string of an id ("" if none)
  int32_t id_of(std::string_view piece) const;  // -1 if absent
  bool is_special(int32_t id) const;
  bool is_byte_token(int32_t id) const;       // <0x00> .. <0xFF>

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  friend class Detokenizer;
};

// Incremental decoding for streaming: push ids one at a time and get the text they complete.
// Never emits half a UTF-8 character; bytes that cannot complete one become U+FFFD, as decode()
// would render them. The concatenation of all pieces equals decode(all ids).
class Detokenizer {
 public:
  explicit Detokenizer(const Tokenizer& tok, bool skip_special = false);
  std::string push(int32_t id);  // text made complete by this id (often empty for byte tokens)
  std::string flush();           // whatever is pending at the end of the stream
  void reset();

 private:
  const Tokenizer* tok_;
  bool skip_special_;
  std::string pending_;  // undecided trailing bytes of an incomplete UTF-8 sequence
};

}  // namespace mlxq::text
