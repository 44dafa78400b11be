// Tokenizer implementation: a SAX read of tokenizer.json, a flat hash of merges keyed by the
// pair of ids, heap-ordered BPE per word, and the byte-fallback decoder.
#include "text/tokenizer.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <iterator>
#include <queue>
#include <unordered_map>

#include "core/error.h"

namespace mlxq::text {

namespace {

constexpr std::string_view kSpaceMark = "\xE2\x96\x81";  // U+2581 "▁"

// Length of the well-formed UTF-8 sequence starting at s[i], or 1 for a byte that does not
// start one (stray continuation bytes, overlong forms, surrogates, code points past U+10FFFF,
// truncated sequences): such bytes are encoded one by one through byte fallback.
size_t utf8_len(std::string_view s, size_t i) {
  const unsigned char c = static_cast<unsigned char>(s[i]);
  if (c < 0x80) return 1;
  const size_t n = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
  if (n == 0 || i + n > s.size()) return 1;
  for (size_t k = 1; k < n; ++k)
    if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return 1;
  const unsigned char c1 = static_cast<unsigned char>(s[i + 1]);
  if ((c == 0xE0 && c1 < 0xA0) || (c == 0xED && c1 >= 0xA0) || (c == 0xF0 && c1 < 0x90) || (c == 0xF4 && c1 >= 0x90))
    return 1;
  return n;
}

// Code point of a valid UTF-8 sequence of 1-4 bytes.
uint32_t decode_cp(std::string_view s) {
  const unsigned char c = static_cast<unsigned char>(s[0]);
  if (s.size() == 1) return c;
  uint32_t cp = c & (0x7F >> s.size());
  for (size_t k = 1; k < s.size(); ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[k]) & 0x3F);
  return cp;
}

bool valid_utf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const size_t n = utf8_len(s, i);
    if (n == 1 && static_cast<unsigned char>(s[i]) >= 0x80) return false;
    i += n;
  }
  return true;
}

// Open-addressing hash from a pair of ids to (rank, merged id).
class MergeTable {
 public:
  void reserve(size_t n) {
    size_t cap = 16;
    while (cap < n * 2) cap <<= 1;
    keys_.assign(cap, kEmpty);
    vals_.assign(cap, {0, 0});
    mask_ = cap - 1;
  }
  void insert(int32_t a, int32_t b, int32_t rank, int32_t merged) {
    const uint64_t k = key(a, b);
    for (size_t i = hash(k) & mask_;; i = (i + 1) & mask_) {
      if (keys_[i] == kEmpty) { keys_[i] = k; vals_[i] = {rank, merged}; return; }
      if (keys_[i] == k) return;  // first (lowest-rank) occurrence wins
    }
  }
  // Returns false when (a, b) is not a merge.
  bool find(int32_t a, int32_t b, int32_t* rank, int32_t* merged) const {
    const uint64_t k = key(a, b);
    for (size_t i = hash(k) & mask_;; i = (i + 1) & mask_) {
      if (keys_[i] == kEmpty) return false;
      if (keys_[i] == k) { *rank = vals_[i].first; *merged = vals_[i].second; return true; }
    }
  }

 private:
  static constexpr uint64_t kEmpty = ~0ull;
  static uint64_t key(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }
  static size_t hash(uint64_t k) { k ^= k >> 33; k *= 0xff51afd7ed558ccdull; k ^= k >> 33; return size_t(k); }
  std::vector<uint64_t> keys_;
  std::vector<std::pair<int32_t, int32_t>> vals_;
  size_t mask_ = 0;
};

// Open-addressing map from a piece's bytes to its id; the strings live in `pieces`/`extra`.
// (A node-based unordered_map spent most of the load time in cache misses.)
class PieceMap {
 public:
  void build(const std::vector<std::string_view>& keys, const std::vector<int32_t>& ids) {
    size_t cap = 16;
    while (cap < keys.size() * 2) cap <<= 1;
    slots_.assign(cap, {0, -1});
    mask_ = cap - 1;
    keys_ = keys;
    for (size_t i = 0; i < keys.size(); ++i) {
      const uint64_t h = hash(keys[i]);
      for (size_t j = h & mask_;; j = (j + 1) & mask_) {
        if (slots_[j].second < 0) { slots_[j] = {h, int32_t(i)}; break; }
        if (slots_[j].first == h && keys_[size_t(slots_[j].second)] == keys[i]) break;  // first wins
      }
    }
    ids_ = ids;
  }
  int32_t find(std::string_view k) const {
    if (slots_.empty()) return -1;
    const uint64_t h = hash(k);
    for (size_t j = h & mask_;; j = (j + 1) & mask_) {
      const auto& sl = slots_[j];
      if (sl.second < 0) return -1;
      if (sl.first == h && keys_[size_t(sl.second)] == k) return ids_[size_t(sl.second)];
    }
  }

 private:
  static uint64_t hash(std::string_view k) {
    uint64_t h = 0xcbf29ce484222325ull ^ k.size();
    for (unsigned char c : k) h = (h ^ c) * 0x100000001b3ull;
    return h ^ (h >> 29);
  }
  std::vector<std::pair<uint64_t, int32_t>> slots_;  // (hash, index into keys_) ; -1 empty
  std::vector<std::string_view> keys_;
  std::vector<int32_t> ids_;
  size_t mask_ = 0;
};

struct AddedToken {
  std::string content;
  std::string match;  // what is matched in the raw text: content, or for a `normalized` token
                      // content with "▁" read back as a space
  int32_t id = 0;
  bool special = false;
  bool normalized = false;
};

// What the tokenizer needs from tokenizer.json: model.{type,vocab,merges,byte_fallback},
// added_tokens, and normalizer.type. A small recursive-descent reader over the bytes (the
// generic DOM and SAX parsers spend most of the load time in their lexers); every other value is
// skipped after being checked for well-formedness.
struct Reader {
  std::vector<std::pair<std::string, int64_t>> vocab;
  std::vector<std::pair<std::string, std::string>> merges;
  std::vector<AddedToken> added;
  std::string model_type, normalizer_type;
  bool byte_fallback = false;

  Reader(std::string_view text, const std::string& source) : p_(text.data()), end_(text.data() + text.size()), begin_(p_), src_(source) {
    ws();
    object([&](const std::string& k) {
      if (k == "added_tokens") array([&] { added_token(); });
      else if (k == "model") object([&](const std::string& mk) { model_field(mk); });
      else if (k == "normalizer" && peek() == '{') object([&](const std::string& nk) {
        if (nk == "type") normalizer_type = string(); else skip();
      });
      else skip();
    });
    ws();
    if (p_ != end_) fail("trailing characters after the JSON value");
  }

 private:
  const char *p_, *end_, *begin_;
  const std::string& src_;
  int depth_ = 0;

  [[noreturn]] void fail(const std::string& what) const {
    throw Error(src_ + ": not a valid tokenizer.json at byte " + std::to_string(p_ - begin_) + ": " + what);
  }
  void ws() { while (p_ < end_ && (*p_ == ' ' || *p_ == '\n' || *p_ == '\r' || *p_ == '\t')) ++p_; }
  char peek() { ws(); return p_ < end_ ? *p_ : '\0'; }
  void expect(char c) {
    if (peek() != c) fail(std::string("expected '") + c + "'");
    ++p_;
  }
  template <class F> void object(F&& on_key) {
    expect('{');
    if (++depth_ > 64) fail("nesting too deep");
    if (peek() == '}') { ++p_; --depth_; return; }
    for (;;) {
      const std::string key = string();
      expect(':');
      on_key(key);
      const char c = peek();
      ++p_;
      if (c == '}') break;
      if (c != ',') fail("expected ',' or '}'");
    }
    --depth_;
  }
  template <class F> void array(F&& on_item) {
    expect('[');
    if (++depth_ > 64) fail("nesting too deep");
    if (peek() == ']') { ++p_; --depth_; return; }
    for (;;) {
      on_item();
      const char c = peek();
      ++p_;
      if (c == ']') break;
      if (c != ',') fail("expected ',' or ']'");
    }
    --depth_;
  }
  static void put_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) { out.push_back(char(cp)); return; }
    if (cp < 0x800) { out.push_back(char(0xC0 | (cp >> 6))); }
    else if (cp < 0x10000) { out.push_back(char(0xE0 | (cp >> 12))); out.push_back(char(0x80 | ((cp >> 6) & 0x3F))); }
    else { out.push_back(char(0xF0 | (cp >> 18))); out.push_back(char(0x80 | ((cp >> 12) & 0x3F))); out.push_back(char(0x80 | ((cp >> 6) & 0x3F))); }
    out.push_back(char(0x80 | (cp & 0x3F)));
  }
  uint32_t hex4() {
    if (end_ - p_ < 4) fail("truncated \\u escape");
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i, ++p_) {
      const char c = *p_;
      v <<= 4;
      if (c >= '0' && c <= '9') v |= uint32_t(c - '0');
      else if (c >= 'a' && c <= 'f') v |= uint32_t(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') v |= uint32_t(c - 'A' + 10);
      else fail("bad \\u escape");
    }
    return v;
  }
  std::string string() {
    expect('"');
    std::string out;
    for (;;) {
      const char* q = p_;
      while (q < end_ && *q != '"' && *q != '\\' && static_cast<unsigned char>(*q) >= 0x20) ++q;
      out.append(p_, size_t(q - p_));
      p_ = q;
      if (p_ >= end_) fail("unterminated string");
      const char c = *p_++;
      if (c == '"') return out;
      if (c != '\\') fail("control character in string");
      if (p_ >= end_) fail("unterminated string");
      const char e = *p_++;
      switch (e) {
        case '"': case '\\': case '/': out.push_back(e); break;
        case 'b': out.push_back('\b'); break;
        case 'f': out.push_back('\f'); break;
        case 'n': out.push_back('\n'); break;
        case 'r': out.push_back('\r'); break;
        case 't': out.push_back('\t'); break;
        case 'u': {
          uint32_t cp = hex4();
          if (cp >= 0xD800 && cp < 0xDC00 && end_ - p_ >= 6 && p_[0] == '\\' && p_[1] == 'u') {
            p_ += 2;
            const uint32_t lo = hex4();
            if (lo < 0xDC00 || lo >= 0xE000) fail("unpaired surrogate");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else if (cp >= 0xD800 && cp < 0xE000) {
            fail("unpaired surrogate");
          }
          put_utf8(out, cp);
          break;
        }
        default: fail("bad escape");
      }
    }
  }
  int64_t integer() {
    ws();
    bool neg = false;
    if (p_ < end_ && *p_ == '-') { neg = true; ++p_; }
    if (p_ >= end_ || *p_ < '0' || *p_ > '9') fail("expected an integer");
    int64_t v = 0;
    while (p_ < end_ && *p_ >= '0' && *p_ <= '9') {
      if (v > (int64_t(1) << 40)) fail("integer too large");
      v = v * 10 + (*p_++ - '0');
    }
    if (p_ < end_ && (*p_ == '.' || *p_ == 'e' || *p_ == 'E')) fail("expected an integer");
    return neg ? -v : v;
  }
  bool boolean() {
    ws();
    if (end_ - p_ >= 4 && std::memcmp(p_, "true", 4) == 0) { p_ += 4; return true; }
    if (end_ - p_ >= 5 && std::memcmp(p_, "false", 5) == 0) { p_ += 5; return false; }
    fail("expected true or false");
  }
  void skip() {
    const char c = peek();
    if (c == '{') object([&](const std::string&) { skip(); });
    else if (c == '[') array([&] { skip(); });
    else if (c == '"') (void)string();
    else if (c == 't' || c == 'f') (void)boolean();
    else if (c == 'n' && end_ - p_ >= 4 && std::memcmp(p_, "null", 4) == 0) p_ += 4;
    else if (c == '-' || (c >= '0' && c <= '9')) {
      while (p_ < end_ && (std::strchr("+-.eE", *p_) || (*p_ >= '0' && *p_ <= '9'))) ++p_;
    } else fail("unexpected character");
  }
  void added_token() {
    AddedToken a;
    bool has_id = false;
    object([&](const std::string& k) {
      if (k == "id") { a.id = int32_t(integer()); has_id = true; }
      else if (k == "content") a.content = string();
      else if (k == "special") a.special = boolean();
      else if (k == "normalized") a.normalized = boolean();
      else skip();
    });
    if (!has_id) fail("added_tokens entry without an id");
    added.push_back(std::move(a));
  }
  void model_field(const std::string& k) {
    if (k == "type") {
      model_type = string();
    } else if (k == "byte_fallback") {
      byte_fallback = boolean();
    } else if (k == "vocab") {
      if (peek() != '{') fail("model.vocab must be an object");
      vocab.reserve(300000);
      object([&](const std::string& piece) { vocab.emplace_back(piece, integer()); });
    } else if (k == "merges") {
      merges.reserve(600000);
      array([&] {
        if (peek() == '"') {  // legacy "a b" form
          std::string m = string();
          const size_t sp = m.find(' ', 1);
          if (sp == std::string::npos) fail("model.merges entry '" + m + "' has no space");
          merges.emplace_back(m.substr(0, sp), m.substr(sp + 1));
          return;
        }
        std::string parts[2];
        int n = 0;
        array([&] {
          if (n >= 2) fail("model.merges entries must be pairs of strings");
          parts[n++] = string();
        });
        if (n != 2) fail("model.merges entries must be pairs of strings");
        merges.emplace_back(std::move(parts[0]), std::move(parts[1]));
      });
    } else {
      skip();
    }
  }
};

}  // namespace

struct Tokenizer::Impl {
  std::vector<std::string> pieces;                   // id -> piece
  PieceMap piece_id;                                 // piece -> id (views into pieces/extra)
  std::vector<std::unique_ptr<std::string>> extra;   // added-token contents that differ from the piece
  std::vector<uint8_t> special;                      // id -> special added token
  std::vector<int16_t> byte_of;                      // id -> byte value for <0xXX>, else -1
  int32_t byte_token[256];                           // byte -> id of <0xXX>
  MergeTable merges;
  std::vector<AddedToken> added;
  // Byte trie over the added tokens' match texts, for leftmost-longest matching.
  struct TrieNode {
    std::vector<std::pair<uint8_t, int32_t>> next;  // byte -> child node
    int32_t token = -1;                              // index into `added` ending here
  };
  std::vector<TrieNode> trie;
  bool added_first_byte[256] = {};
  std::vector<std::string> bridges;                  // pieces with "▁" after another char
  std::vector<int32_t> char_id;                      // code point -> id of its one-char piece, -1

  // Ids of one word (a "▁" run plus the characters up to the next "▁" run), by BPE.
  void bpe(std::string_view word, std::vector<int32_t>& out) const;
  void bpe_uncached(std::string_view word, std::vector<int32_t>& out) const;
  void encode_segment(std::string_view raw, std::vector<int32_t>& out) const;
  const AddedToken* match_added(std::string_view text, size_t pos) const;
};

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Tokenizer Tokenizer::from_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  check(bool(in), path + ": cannot open tokenizer file");
  std::string text(size_t(in.tellg()), '\0');
  in.seekg(0);
  in.read(text.data(), std::streamsize(text.size()));
  check(bool(in), path + ": read failed");
  return from_json_text(text, path);
}

Tokenizer Tokenizer::from_json_text(std::string_view json, const std::string& source) {
  Reader r(json, source);
  check(r.model_type == "BPE", source + ": field model.type is '" + r.model_type + "'; only BPE is supported");
  check(r.normalizer_type.empty() || r.normalizer_type == "Replace",
        source + ": field normalizer.type is '" + r.normalizer_type + "'; expected Replace (space -> ▁)");
  check(!r.vocab.empty(), source + ": field model.vocab is missing or empty");

  auto impl = std::make_unique<Impl>();
  int64_t max_id = -1;
  for (const auto& [p, id] : r.vocab) {
    check(id >= 0 && id < (int64_t(1) << 24), source + ": model.vocab['" + p + "'] has id " + std::to_string(id) + " out of range");
    max_id = std::max(max_id, id);
  }
  for (const auto& a : r.added) {
    check(a.id >= 0 && a.id < (1 << 24) && !a.content.empty(),
          source + ": added_tokens entry with id " + std::to_string(a.id) + " is invalid");
    max_id = std::max<int64_t>(max_id, a.id);
  }
  const size_t n = size_t(max_id + 1);
  impl->pieces.resize(n);
  impl->special.assign(n, 0);
  impl->byte_of.assign(n, -1);
  for (auto& [p, id] : r.vocab) impl->pieces[size_t(id)] = std::move(p);
  for (const auto& a : r.added)
    if (impl->pieces[size_t(a.id)].empty()) impl->pieces[size_t(a.id)] = a.content;
  std::vector<std::string_view> keys;
  std::vector<int32_t> key_ids;
  keys.reserve(n + r.added.size());
  key_ids.reserve(n + r.added.size());
  for (size_t id = 0; id < n; ++id) {
    if (impl->pieces[id].empty()) continue;
    keys.push_back(impl->pieces[id]);
    key_ids.push_back(int32_t(id));
  }
  for (const auto& a : r.added) {
    if (a.content != impl->pieces[size_t(a.id)]) {
      impl->extra.push_back(std::make_unique<std::string>(a.content));
      keys.push_back(*impl->extra.back());
      key_ids.push_back(a.id);
    }
    impl->special[size_t(a.id)] = a.special;
  }
  impl->piece_id.build(keys, key_ids);
  std::fill(std::begin(impl->byte_token), std::end(impl->byte_token), -1);
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    const int32_t id = impl->piece_id.find(name);
    if (id >= 0) {
      impl->byte_token[b] = id;
      impl->byte_of[size_t(id)] = int16_t(b);
    }
  }
  if (r.byte_fallback)
    for (int b = 0; b < 256; ++b)
      check(impl->byte_token[b] >= 0, source + ": byte_fallback is on but the vocab lacks byte tokens");

  impl->merges.reserve(r.merges.size());
  int32_t rank = 0;
  std::string ab;
  for (const auto& [a, b] : r.merges) {
    ab.assign(a);
    ab.append(b);
    const int32_t ia = impl->piece_id.find(a), ib = impl->piece_id.find(b), im = impl->piece_id.find(ab);
    check(ia >= 0 && ib >= 0 && im >= 0,
          source + ": model.merges[" + std::to_string(rank) + "] ('" + a + "', '" + b + "') names a piece not in the vocab");
    impl->merges.insert(ia, ib, rank++, im);
  }

  impl->char_id.assign(0x110000, -1);
  for (size_t id = 0; id < n; ++id) {
    const std::string& p = impl->pieces[id];
    if (p.empty() || utf8_len(p, 0) != p.size()) continue;
    const uint32_t cp = decode_cp(p);
    if (cp < 0x110000 && impl->char_id[cp] < 0) impl->char_id[cp] = int32_t(id);
  }
  impl->added = std::move(r.added);
  for (auto& a : impl->added) {
    a.match = a.content;
    if (a.normalized) {  // match the text before normalisation: "▁" stands for a space
      std::string m;
      for (size_t i = 0; i < a.content.size();) {
        if (a.content.compare(i, kSpaceMark.size(), kSpaceMark) == 0) {
          m.push_back(' ');
          i += kSpaceMark.size();
        } else {
          m.push_back(a.content[i++]);
        }
      }
      a.match = std::move(m);
    }
  }
  impl->trie.emplace_back();
  for (size_t t = 0; t < impl->added.size(); ++t) {
    const std::string& m = impl->added[t].match;
    impl->added_first_byte[static_cast<unsigned char>(m[0])] = true;
    int32_t node = 0;
    for (char ch : m) {
      const uint8_t b = static_cast<uint8_t>(ch);
      auto& nx = impl->trie[size_t(node)].next;
      auto it = std::find_if(nx.begin(), nx.end(), [b](const auto& e) { return e.first == b; });
      if (it != nx.end()) {
        node = it->second;
      } else {
        const int32_t child = int32_t(impl->trie.size());
        nx.emplace_back(b, child);
        impl->trie.emplace_back();  // invalidates nx, which is not used again
        node = child;
      }
    }
    if (impl->trie[size_t(node)].token < 0) impl->trie[size_t(node)].token = int32_t(t);
  }
  for (const auto& p : impl->pieces) {
    size_t lead = 0;
    while (p.compare(lead, kSpaceMark.size(), kSpaceMark) == 0) lead += kSpaceMark.size();
    if (p.find(kSpaceMark, lead) != std::string::npos) impl->bridges.push_back(p);
  }
  return Tokenizer(std::move(impl));
}

// The longest added token starting at `pos` (special or not), or nullptr.
const AddedToken* Tokenizer::Impl::match_added(std::string_view text, size_t pos) const {
  if (!added_first_byte[static_cast<unsigned char>(text[pos])]) return nullptr;
  const AddedToken* best = nullptr;
  int32_t node = 0;
  for (size_t i = pos; i < text.size(); ++i) {
    const uint8_t b = static_cast<uint8_t>(text[i]);
    const auto& nx = trie[size_t(node)].next;
    auto it = std::find_if(nx.begin(), nx.end(), [b](const auto& e) { return e.first == b; });
    if (it == nx.end()) break;
    node = it->second;
    if (trie[size_t(node)].token >= 0) best = &added[size_t(trie[size_t(node)].token)];
  }
  return best;
}

namespace {
struct HeapEntry {
  int32_t rank, left, right, left_id, right_id, merged;
  bool operator<(const HeapEntry& o) const {  // max-heap order: lowest rank, then leftmost, on top
    return rank != o.rank ? rank > o.rank : left > o.left;
  }
};
}  // namespace

void Tokenizer::Impl::bpe(std::string_view word, std::vector<int32_t>& out) const {
  // Words repeat: a per-thread cache of recent words' ids pays for itself many times over.
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view v) const { return std::hash<std::string_view>{}(v); }
  };
  struct Cache {
    const Impl* owner = nullptr;
    std::unordered_map<std::string, std::vector<int32_t>, Hash, std::equal_to<>> words;
  };
  thread_local Cache cache;
  const bool cacheable = word.size() <= 48;
  if (cacheable) {
    if (cache.owner != this || cache.words.size() > (1u << 16)) {
      cache.words.clear();
      cache.owner = this;
    }
    auto it = cache.words.find(word);
    if (it != cache.words.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const size_t out_begin = out.size();
  bpe_uncached(word, out);
  if (cacheable) cache.words.emplace(std::string(word), std::vector<int32_t>(out.begin() + long(out_begin), out.end()));
}

void Tokenizer::Impl::bpe_uncached(std::string_view word, std::vector<int32_t>& out) const {
  thread_local std::vector<int32_t> ids, prev, next;
  thread_local std::vector<HeapEntry> heap;
  ids.clear();
  for (size_t i = 0; i < word.size();) {
    const size_t n = utf8_len(word, i);
    const int32_t cid = n > 1 || static_cast<unsigned char>(word[i]) < 0x80
                            ? char_id[decode_cp(word.substr(i, n))] : -1;
    if (cid >= 0) {
      ids.push_back(cid);
    } else {
      for (size_t k = 0; k < n; ++k) {
        const int32_t b = byte_token[static_cast<unsigned char>(word[i + k])];
        ids.push_back(b >= 0 ? b : 3);  // without byte fallback: <unk>
      }
    }
    i += n;
  }
  const int32_t m = int32_t(ids.size());
  if (m == 1) {
    out.push_back(ids[0]);
    return;
  }
  prev.resize(size_t(m));
  next.resize(size_t(m));
  heap.clear();
  auto push_pair = [&](int32_t l, int32_t r) {
    int32_t rank, merged;
    if (l < 0 || r >= m || r < 0) return;
    if (merges.find(ids[size_t(l)], ids[size_t(r)], &rank, &merged)) {
      heap.push_back({rank, l, r, ids[size_t(l)], ids[size_t(r)], merged});
      std::push_heap(heap.begin(), heap.end());
    }
  };
  for (int32_t i = 0; i < m; ++i) {
    prev[size_t(i)] = i - 1;
    next[size_t(i)] = i + 1 < m ? i + 1 : -1;
  }
  for (int32_t i = 0; i + 1 < m; ++i) push_pair(i, i + 1);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end());
    const HeapEntry e = heap.back();
    heap.pop_back();
    // Stale when either side was merged away or changed since the entry was pushed.
    if (ids[size_t(e.left)] != e.left_id || next[size_t(e.left)] != e.right || ids[size_t(e.right)] != e.right_id)
      continue;
    ids[size_t(e.left)] = e.merged;
    ids[size_t(e.right)] = -1;
    const int32_t nr = next[size_t(e.right)];
    next[size_t(e.left)] = nr;
    if (nr >= 0) prev[size_t(nr)] = e.left;
    next[size_t(e.right)] = -2;
    push_pair(prev[size_t(e.left)], e.left);
    if (nr >= 0) push_pair(e.left, nr);
  }
  for (int32_t i = 0; i >= 0; i = next[size_t(i)]) out.push_back(ids[size_t(i)]);
}

void Tokenizer::Impl::encode_segment(std::string_view raw, std::vector<int32_t>& out) const {
  if (raw.empty()) return;
  thread_local std::string norm;
  thread_local std::vector<size_t> cuts;
  norm.clear();
  for (char c : raw) {
    if (c == ' ') norm.append(kSpaceMark);
    else norm.push_back(c);
  }
  // Words start at each "▁" run that follows another character. No merge crosses such a
  // boundary unless a vocab piece has "▁" after another character (a bridge, e.g. ">▁</");
  // boundaries inside an occurrence of a bridge are kept joined, so the split is exact.
  cuts.clear();
  for (size_t i = kSpaceMark.size(); i < norm.size(); ++i) {
    if (norm.compare(i, kSpaceMark.size(), kSpaceMark) == 0 &&
        norm.compare(i - kSpaceMark.size(), kSpaceMark.size(), kSpaceMark) != 0) {
      bool safe = true;
      for (const auto& b : bridges) {
        for (size_t lo = i >= b.size() ? i - b.size() + 1 : 0; lo < i && safe; ++lo)
          if (norm.compare(lo, b.size(), b) == 0) safe = false;
      }
      if (safe) cuts.push_back(i);
    }
  }
  cuts.push_back(norm.size());
  size_t start = 0;
  for (size_t c : cuts) {
    bpe(std::string_view(norm).substr(start, c - start), out);
    start = c;
  }
}

// Added tokens are found leftmost-longest among all of them; a special one met while special
// parsing is off stays ordinary text and matching resumes after it, exactly as Hugging Face
// tokenizers do with encode_special_tokens.
void Tokenizer::encode(std::string_view text, bool parse_special, std::vector<int32_t>& out) const {
  size_t seg = 0;
  for (size_t pos = 0; pos < text.size();) {
    const AddedToken* a = impl_->match_added(text, pos);
    if (!a) {
      ++pos;
      continue;
    }
    if (a->special && !parse_special) {
      pos += a->match.size();
      continue;
    }
    impl_->encode_segment(text.substr(seg, pos - seg), out);
    out.push_back(a->id);
    pos += a->match.size();
    seg = pos;
  }
  impl_->encode_segment(text.substr(seg), out);
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool parse_special) const {
  std::vector<int32_t> out;
  encode(text, parse_special, out);
  return out;
}

namespace {
void flush_bytes(std::string& bytes, std::string& out) {
  if (bytes.empty()) return;
  if (valid_utf8(bytes)) {
    out += bytes;
  } else {
    for (size_t i = 0; i < bytes.size(); ++i) out += "\xEF\xBF\xBD";  // U+FFFD per byte, as HF
  }
  bytes.clear();
}
void append_piece(const std::string& p, std::string& out) {
  for (size_t i = 0; i < p.size();) {
    if (p.compare(i, kSpaceMark.size(), kSpaceMark) == 0) {
      out.push_back(' ');
      i += kSpaceMark.size();
    } else {
      out.push_back(p[i++]);
    }
  }
}
}  // namespace

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
  std::string out, bytes;
  for (int32_t id : ids) {
    check(id >= 0 && id < vocab_size(), "decode: token id " + std::to_string(id) + " is outside the vocabulary");
    if (impl_->byte_of[size_t(id)] >= 0) {
      bytes.push_back(char(impl_->byte_of[size_t(id)]));
      continue;
    }
    if (skip_special && impl_->special[size_t(id)]) continue;
    flush_bytes(bytes, out);
    append_piece(impl_->pieces[size_t(id)], out);
  }
  flush_bytes(bytes, out);
  return out;
}

int32_t Tokenizer::vocab_size() const { return int32_t(impl_->pieces.size()); }
const std::string& Tokenizer::piece(int32_t id) const {
  static const std::string empty;
  return id >= 0 && id < vocab_size() ? impl_->pieces[size_t(id)] : empty;
}
int32_t Tokenizer::id_of(std::string_view p) const {
  return impl_->piece_id.find(p);
}
bool Tokenizer::is_special(int32_t id) const { return id >= 0 && id < vocab_size() && impl_->special[size_t(id)]; }
bool Tokenizer::is_byte_token(int32_t id) const { return id >= 0 && id < vocab_size() && impl_->byte_of[size_t(id)] >= 0; }

Detokenizer::Detokenizer(const Tokenizer& tok, bool skip_special) : tok_(&tok), skip_special_(skip_special) {}

// A run of byte tokens is only decided when it ends (decode() renders an invalid run as one
// U+FFFD per byte), so bytes are held until the next ordinary token or flush().
std::string Detokenizer::push(int32_t id) {
  check(id >= 0 && id < tok_->vocab_size(), "decode: token id " + std::to_string(id) + " is outside the vocabulary");
  const auto& impl = *tok_->impl_;
  if (impl.byte_of[size_t(id)] >= 0) {
    pending_.push_back(char(impl.byte_of[size_t(id)]));
    return {};
  }
  if (skip_special_ && impl.special[size_t(id)]) return {};
  std::string out;
  flush_bytes(pending_, out);
  append_piece(impl.pieces[size_t(id)], out);
  return out;
}

std::string Detokenizer::flush() {
  std::string out;
  flush_bytes(pending_, out);
  return out;
}

void Detokenizer::reset() { pending_.clear(); }

}  // namespace mlxq::text
