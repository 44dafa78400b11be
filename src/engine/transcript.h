// A whole conversation as the tokens a session's KV cache holds after it, with a flag on every
// token the model itself produced. Training data and evaluation (perplexity, KL) are built from
// this, so the model is trained and scored on exactly the token streams inference feeds it.
//
// The conversation is the JSON object `train/tiny/make_corpus.py` writes:
//   {"system": str|null, "tools": [OpenAI tool]|null, "thinking": bool,
//    "messages": [{"role": "user"|"assistant"|"tool", "content", "reasoning"?, "tool_calls"?}]}
// The first user message is rendered through the chat template (with the system message and the
// tools); every later user message and tool result is the wire-format delta the session appends
// (prompt.h). An assistant message is what the model generates: the thought channel when thinking
// is on, the answer, or its tool calls, then the stop token (<turn|>, or <|tool_response> after
// tool calls), which the following delta begins with.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "text/tokenizer.h"

namespace mlxq::engine {

struct Transcript {
  std::vector<int32_t> tokens;
  std::vector<uint8_t> generated;  // 1: the model produced tokens[i] (it is predicted at i - 1)
  // For each assistant message, the token range [begin, end) of its output, stop token included.
  std::vector<std::pair<int64_t, int64_t>> answers;
};

// Throws mlxq::Error naming the message and field at fault.
Transcript render_transcript(const text::Tokenizer& tok, const nlohmann::ordered_json& conversation);

// The text the model generates for one assistant message, before its stop token. `channel_open`:
// the prompt ends inside an opened thought channel (the template opens one after a tool result
// when thinking is on), so the output is the reasoning, then the channel's close, then the answer.
std::string assistant_output_text(const nlohmann::ordered_json& message, bool thinking, bool channel_open = false);

}  // namespace mlxq::engine
