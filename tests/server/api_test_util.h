// Helpers shared by the API translation tests (tests/server/api_*_test.cpp): JSON comparison,
// the HttpError a call throws, SSE frames parsed back, and sample results and metadata.
#pragma once
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "server/api_chat.h"
#include "server/api_common.h"
#include "server/api_messages.h"
#include "server/api_responses.h"

namespace mlxq::server::test {

// Key order aside: compares as plain JSON.
inline nlohmann::json canon(const Json& j) { return nlohmann::json::parse(j.dump()); }
inline nlohmann::json plain(const char* text) { return nlohmann::json::parse(text); }
inline Json body(const char* text) { return Json::parse(text); }

// The HttpError a call throws (a failure when it throws none).
inline HttpError error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const HttpError& e) {
    return e;
  }
  ADD_FAILURE() << "expected an HttpError";
  return HttpError(0, "none");
}

struct Frame {
  std::string event;  // "" for data-only frames
  Json data;          // the string "[DONE]" for the chat terminator
};

// Splits SSE text into frames and parses each frame's data back.
inline std::vector<Frame> frames(const std::string& sse) {
  std::vector<Frame> out;
  size_t pos = 0;
  while (pos < sse.size()) {
    const size_t end = sse.find("\n\n", pos);
    EXPECT_NE(end, std::string::npos) << "unterminated frame";
    if (end == std::string::npos) break;
    const std::string f = sse.substr(pos, end - pos);
    pos = end + 2;
    Frame fr;
    size_t line = 0;
    while (line < f.size()) {
      size_t nl = f.find('\n', line);
      if (nl == std::string::npos) nl = f.size();
      const std::string l = f.substr(line, nl - line);
      if (l.rfind("event: ", 0) == 0) fr.event = l.substr(7);
      else if (l == "data: [DONE]") fr.data = "[DONE]";
      else if (l.rfind("data: ", 0) == 0) fr.data = Json::parse(l.substr(6));
      else ADD_FAILURE() << "unexpected SSE line: " << l;
      line = nl + 1;
    }
    out.push_back(std::move(fr));
  }
  return out;
}

inline ResponseMeta meta(const std::string& id) {
  ResponseMeta m;
  m.id = id;
  m.created = 1700000000;
  m.model = "gemma-4-tiny";
  m.prompt_tokens = 100;
  m.cached_tokens = 60;
  return m;
}

// A turn that thought, answered and called a tool (plus one call that failed to parse).
inline ChatResult tool_turn() {
  ChatResult r;
  r.thinking = "The user wants weather.";
  r.text = "Let me check.";
  r.tool_calls.push_back({"call_0_0", "get_weather", R"({"city":"Paris","days":3})", "ok"});
  r.tool_calls.push_back({"call_0_1", "", "{oops", "invalid_json"});
  r.finish_reason = FinishReason::ToolCalls;
  r.num_tokens = 41;
  r.prompt_tokens = 100;
  r.cached_tokens = 60;
  r.prefill_tokens = 40;
  r.reasoning_tokens = 12;
  r.thinking_enabled = true;
  r.performance.ttft_ms = 200;
  r.performance.prefill_tokens_per_second = 200;
  r.performance.decode_tokens_per_second = 50;
  return r;
}

inline std::vector<StreamEvent> deltas(const std::vector<std::pair<std::string, bool>>& parts) {
  std::vector<StreamEvent> out;
  for (const auto& [text, reasoning] : parts) {
    StreamEvent e;
    e.text = text;
    e.is_reasoning = reasoning;
    out.push_back(e);
  }
  return out;
}

// The chat shape every API's tool round trip must produce.
inline const char* kToolRoundTrip = R"([
  {"role": "system", "content": "Be brief."},
  {"role": "user", "content": "Weather in Paris?"},
  {"role": "assistant", "content": "", "tool_calls": [
    {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
  {"role": "tool", "tool_call_id": "call_1", "content": "Sunny"},
  {"role": "user", "content": "Thanks"}])";

}  // namespace mlxq::server::test
