// AnswerStream: what a turn's generated tokens become for the caller. Each token is detokenized
// and parsed (thought channel, answer, tool calls); reasoning and answer deltas are streamed as
// events, the answer held back while its tail could still become a stop string. At the end it
// fills the result's raw text, answer, reasoning and tool calls.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "mlxq/session.h"
#include "text/output_parser.h"
#include "text/tokenizer.h"

namespace mlxq::engine {

// Holds back the tail of the answer that could still become a stop string, and cuts the answer
// at the first stop string found (earliest match, longest on a tie).
class StopFilter {
 public:
  explicit StopFilter(const std::vector<std::string>& stops);
  // Returns the text now safe to emit; sets *hit when a stop string completed.
  std::string push(const std::string& delta, bool* hit);
  std::string flush() { return std::exchange(pending_, {}); }

 private:
  std::vector<std::string> stops_;
  size_t hold_ = 0;
  std::string pending_;
};

class AnswerStream {
 public:
  AnswerStream(const text::Tokenizer& tok, const std::vector<std::string>& stops, const EventCallback& on_event);
  // A generated token that is not a stop token; returns true once a stop string has completed.
  bool push(int32_t token);
  // Ends the turn. stop_token: the stop token sampled, or -1. Fills raw_text, text, thinking and
  // tool_calls (ids "call_<turn>_<index>").
  void finish(int32_t stop_token, int turn, ChatResult& r);

 private:
  void handle_events();
  void emit(std::string_view text, bool reasoning);

  const text::Tokenizer& tok_;
  const EventCallback& on_event_;
  text::OutputParser parser_{false};
  text::Detokenizer detok_;
  StopFilter stops_;
  std::vector<text::ParseEvent> events_;
  bool stop_hit_ = false;
  std::string raw_;     // everything generated, special markers kept
  std::string answer_;  // content as emitted (after stop-string filtering)
};

}  // namespace mlxq::engine
