// The tokenizer against the golden Gemma-4 ids (tests/data/tokenizer: 258 corpus strings with
// special parsing off and on, decodes, and the spec's vectors), on the tokenizer.json that the
// build derives from Gemma 3's with mlxq's own code; plus the derivation's pinned entries and the
// incremental detokenizer.
#include "text/tokenizer.h"

#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/sha256.h"
#include "text/gemma4_tokens.h"
#include "test_util.h"

namespace mlxq::text {
namespace {

using nlohmann::json;

const Tokenizer& tok() {
  static const Tokenizer t = Tokenizer::from_file(MLXQ_TOKENIZER);
  return t;
}

std::vector<json> read_jsonl(const std::string& path) {
  std::ifstream in(path);
  std::vector<json> out;
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) out.push_back(json::parse(line));
  return out;
}

TEST(Tokenizer, DerivedFileIsThePublishedOne) {
  const std::string bytes = test::read_file(MLXQ_TOKENIZER);
  EXPECT_EQ(sha256_hex(bytes), gemma4::kGemma4TokenizerSha256);
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  // The repurposed slots (tokenizer README §1) and the special flags.
  const std::pair<int32_t, const char*> want[] = {
      {46, "<|tool>"}, {47, "<tool|>"}, {48, "<|tool_call>"}, {49, "<tool_call|>"},
      {50, "<|tool_response>"}, {51, "<tool_response|>"}, {52, "<|\"|>"}, {98, "<|think|>"},
      {100, "<|channel>"}, {101, "<channel|>"}, {105, "<|turn>"}, {106, "<turn|>"},
      {255999, "<|image>"}, {256000, "<|audio>"}, {258880, "<|image|>"}, {258881, "<|audio|>"},
      {258882, "<image|>"}, {258883, "<audio|>"}, {258884, "<|video|>"}};
  for (const auto& [id, piece] : want) {
    EXPECT_EQ(tok().piece(id), piece) << id;
    EXPECT_TRUE(tok().is_special(id)) << id;
    EXPECT_EQ(tok().id_of(piece), id);
  }
  EXPECT_EQ(tok().vocab_size(), 262144);
  EXPECT_FALSE(tok().is_special(4));  // <mask> stays non-special
  EXPECT_TRUE(tok().is_special(2));
  EXPECT_EQ(tok().id_of("<start_of_turn>"), -1);
}

TEST(Tokenizer, CorpusIdsAndDecodes) {
  int n = 0, n_special = 0;
  for (const json& j : read_jsonl(test::data_path("tokenizer/corpus.jsonl"))) {
    const std::string text = j["text"];
    const std::string id = j["id"];
    const auto ids = j["ids"].get<std::vector<int32_t>>();
    ASSERT_EQ(tok().encode(text, false), ids) << id;
    ASSERT_EQ(tok().decode(ids), j["decoded"].get<std::string>()) << id;
    if (j["roundtrip"].get<bool>()) {
      EXPECT_EQ(tok().decode(tok().encode(text)), text) << id;
    }
    if (j.contains("ids_special")) {
      const auto ids_s = j["ids_special"].get<std::vector<int32_t>>();
      ASSERT_EQ(tok().encode(text, true), ids_s) << id;
      EXPECT_EQ(tok().decode(ids_s), j["decoded_special"].get<std::string>()) << id;
      EXPECT_EQ(tok().decode(ids_s, true), j["decoded_special_skip"].get<std::string>()) << id;
      ++n_special;
    }
    ++n;
  }
  EXPECT_EQ(n, 258);
  EXPECT_EQ(n_special, 55);
}

TEST(Tokenizer, SpecVectors) {
  int n = 0;
  for (const json& j : read_jsonl(test::data_path("tokenizer/spec_vectors.jsonl"))) {
    EXPECT_EQ(tok().encode(j["text"].get<std::string>(), j["special_on"].get<bool>()),
              j["expected_ids"].get<std::vector<int32_t>>()) << j["text"];
    ++n;
  }
  EXPECT_EQ(n, 49);
  // User text never becomes a control token unless asked.
  EXPECT_EQ(tok().encode("<|turn>", false), (std::vector<int32_t>{236820, 236909, 887, 236813}));
  EXPECT_EQ(tok().encode("<|turn>", true), (std::vector<int32_t>{105}));
}

TEST(Tokenizer, InvalidUtf8AndDecodeReplacement) {
  const std::string bad = std::string("a\xff") + "b\xe2\x96";  // stray byte, truncated sequence
  const auto ids = tok().encode(bad);
  EXPECT_EQ(ids.size(), 5u);  // a, <0xFF>, b, <0xE2>, <0x96>
  EXPECT_TRUE(tok().is_byte_token(ids[1]));
  EXPECT_EQ(tok().decode(ids), "a\xEF\xBF\xBD" "b\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_THROW(tok().decode(std::vector<int32_t>{262144}), Error);
  // Lead bytes past U+10FFFF, overlong forms and surrogates are single bytes, never a code point
  // (a fuzzer found 0xF6 0x96 0x96 0x96 read as a code point past the table).
  for (const std::string& s : {std::string("\x96\x96\xf6\xf6\x96\x96\x96\xf6\xf6"), std::string("\xc0\xaf"),
                              std::string("\xed\xa0\x80"), std::string("\xf4\x90\x80\x80")}) {
    const auto b = tok().encode(s);
    ASSERT_EQ(b.size(), s.size());
    for (int32_t id : b) EXPECT_TRUE(tok().is_byte_token(id));
  }
}

// Pushing ids one at a time yields exactly decode(all), and never half a UTF-8 character.
TEST(Detokenizer, StreamsTheSameTextInWholeCharacters) {
  for (const json& j : read_jsonl(test::data_path("tokenizer/corpus.jsonl"))) {
    const auto ids = j["ids"].get<std::vector<int32_t>>();
    for (bool skip : {false, true}) {
      Detokenizer d(tok(), skip);
      std::string all;
      for (int32_t id : ids) {
        const std::string piece = d.push(id);
        if (!piece.empty()) {
          const unsigned char last = static_cast<unsigned char>(piece.back());
          ASSERT_TRUE(last < 0x80 || (last & 0xC0) == 0x80) << j["id"];
          ASSERT_NE(last & 0xC0, 0xC0) << j["id"];  // does not end on a lead byte
        }
        all += piece;
      }
      all += d.flush();
      ASSERT_EQ(all, tok().decode(ids, skip)) << j["id"];
    }
  }
}

TEST(Tokenizer, BadFilesGiveErrors) {
  test::TempDir d;
  test::write_file(d / "t.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [[\"a\", \"zz\"]]}}");
  EXPECT_THROW(Tokenizer::from_file(d / "t.json"), Error);
  test::write_file(d / "t.json", "{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}");
  EXPECT_THROW(Tokenizer::from_file(d / "t.json"), Error);
  test::write_file(d / "t.json", "{\"model\": ");
  EXPECT_THROW(Tokenizer::from_file(d / "t.json"), Error);
  EXPECT_THROW(Tokenizer::from_file(d / "missing.json"), Error);
  EXPECT_THROW(gemma4::derive_gemma4_tokenizer_json("{}"), Error);
}

}  // namespace
}  // namespace mlxq::text

namespace mlxq::text {
namespace {

// The chat-template goldens carry the ids of each render (special parsing on, no BOS added):
// template text and tokenizer together must reproduce them.
TEST(Tokenizer, ChatTemplateRendersTokenizeToGoldenIds) {
  int n = 0;
  for (const json& j : read_jsonl(test::data_path("chat-template/cases.jsonl"))) {
    if (!j.contains("ids") || j["ids"].is_null() || j["rendered_text"].is_null()) continue;
    EXPECT_EQ(tok().encode(j["rendered_text"].get<std::string>(), true), j["ids"].get<std::vector<int32_t>>())
        << j["name"];
    ++n;
  }
  EXPECT_GE(n, 30);
}

}  // namespace
}  // namespace mlxq::text
