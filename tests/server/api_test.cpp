// The HTTP APIs' JSON translation (src/server/api_*): request parsing into the chat shape and its
// 400s naming the field, error bodies, non-streamed response objects, SSE frame sequences, the
// ResponseStore and previous_response_id continuation, and llama.cpp-style timings.
#include <gtest/gtest.h>

#include <cctype>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "server/api_chat.h"
#include "server/api_common.h"
#include "server/api_messages.h"
#include "server/api_responses.h"

namespace mlxq::server {
namespace {

// Key order aside: compares as plain JSON.
nlohmann::json canon(const Json& j) { return nlohmann::json::parse(j.dump()); }
nlohmann::json plain(const char* text) { return nlohmann::json::parse(text); }
Json body(const char* text) { return Json::parse(text); }

// The HttpError a call throws (a failure when it throws none).
HttpError error_of(const std::function<void()>& f) {
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
std::vector<Frame> frames(const std::string& sse) {
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

ResponseMeta meta(const std::string& id) {
  ResponseMeta m;
  m.id = id;
  m.created = 1700000000;
  m.model = "gemma-4-tiny";
  m.prompt_tokens = 100;
  m.cached_tokens = 60;
  return m;
}

// A turn that thought, answered and called a tool (plus one call that failed to parse).
ChatResult tool_turn() {
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

std::vector<StreamEvent> deltas(const std::vector<std::pair<std::string, bool>>& parts) {
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
const char* kToolRoundTrip = R"([
  {"role": "system", "content": "Be brief."},
  {"role": "user", "content": "Weather in Paris?"},
  {"role": "assistant", "content": "", "tool_calls": [
    {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
  {"role": "tool", "tool_call_id": "call_1", "content": "Sunny"},
  {"role": "user", "content": "Thanks"}])";

// ---------------------------------------------------------------------------------------------
// Shared pieces

TEST(ApiCommon, ErrorBodiesPerFamily) {
  const HttpError bad(400, "bad role", "messages[1].role");
  EXPECT_EQ(canon(error_body(Api::Chat, bad)),
            plain(R"({"error": {"message": "bad role", "type": "invalid_request_error",
                                "param": "messages[1].role", "code": null}})"));
  EXPECT_EQ(canon(error_body(Api::Responses, bad)), canon(error_body(Api::Chat, bad)));
  EXPECT_EQ(canon(error_body(Api::Anthropic, bad)),
            plain(R"({"type": "error", "error": {"type": "invalid_request_error", "message": "bad role"}})"));

  const HttpError busy(503, "busy");
  EXPECT_EQ(error_body(Api::Anthropic, busy)["error"]["type"], "overloaded_error");
  EXPECT_EQ(error_body(Api::Chat, busy)["error"]["type"], "server_error");
  EXPECT_TRUE(error_body(Api::Chat, busy)["error"]["param"].is_null());
  EXPECT_EQ(error_body(Api::Anthropic, HttpError(500, "x"))["error"]["type"], "api_error");
  EXPECT_EQ(error_body(Api::Chat, HttpError(500, "x"))["error"]["type"], "server_error");
  EXPECT_EQ(error_body(Api::Anthropic, HttpError(401, "x"))["error"]["type"], "authentication_error");
  EXPECT_EQ(error_body(Api::Anthropic, HttpError(404, "x"))["error"]["type"], "not_found_error");
  EXPECT_EQ(error_body(Api::Anthropic, HttpError(408, "x"))["error"]["type"], "timeout_error");
  EXPECT_EQ(error_body(Api::Chat, HttpError(408, "x"))["error"]["type"], "invalid_request_error");
  EXPECT_EQ(error_body(Api::Chat, HttpError(413, "x"))["error"]["type"], "request_too_large");
  EXPECT_EQ(error_body(Api::Anthropic, HttpError(429, "x"))["error"]["type"], "rate_limit_error");

  const HttpError ctx(400, "too long", "messages", "context_length_exceeded");
  EXPECT_EQ(error_body(Api::Chat, ctx)["error"]["code"], "context_length_exceeded");
  EXPECT_EQ(error_body(Api::Anthropic, HttpError(400, "x", "", "", "custom_error"))["error"]["type"], "custom_error");
}

TEST(ApiCommon, MakeIdIsPrefixAnd24Alphanumerics) {
  const std::string a = make_id("chatcmpl-"), b = make_id("chatcmpl-");
  ASSERT_EQ(a.size(), 9u + 24u);
  EXPECT_EQ(a.rfind("chatcmpl-", 0), 0u);
  for (char c : a.substr(9)) EXPECT_TRUE(std::isalnum(static_cast<unsigned char>(c))) << a;
  EXPECT_NE(a, b);
  EXPECT_GT(unix_now(), 1600000000);
}

TEST(ApiCommon, TimingsFromPrefillAndDecodeRates) {
  const Json t = timings_json(tool_turn());
  EXPECT_EQ(t["cache_n"], 60);
  EXPECT_EQ(t["prompt_n"], 40);
  EXPECT_DOUBLE_EQ(t["prompt_ms"].get<double>(), 200.0);
  EXPECT_DOUBLE_EQ(t["prompt_per_token_ms"].get<double>(), 5.0);
  EXPECT_DOUBLE_EQ(t["prompt_per_second"].get<double>(), 200.0);
  EXPECT_EQ(t["predicted_n"], 41);
  EXPECT_DOUBLE_EQ(t["predicted_ms"].get<double>(), 800.0);  // 40 tokens after the first at 50/s
  EXPECT_DOUBLE_EQ(t["predicted_per_token_ms"].get<double>(), 20.0);
  EXPECT_DOUBLE_EQ(t["predicted_per_second"].get<double>(), 50.0);

  ChatResult one;  // a single token: no decode rate
  one.num_tokens = 1;
  const Json t1 = timings_json(one);
  EXPECT_EQ(t1["predicted_ms"].get<double>(), 0.0);
  EXPECT_EQ(t1["predicted_per_token_ms"].get<double>(), 0.0);
  EXPECT_EQ(t1["prompt_per_token_ms"].get<double>(), 0.0);
}

TEST(ApiCommon, TypedFieldsNameTheField) {
  const Json b = body(R"({"t": 0.5, "s": "x", "i": 3, "f": 3.0, "g": 3.5, "b": true, "n": null})");
  EXPECT_EQ(opt_number(b, "t", "t", 0, 1).value(), 0.5);
  EXPECT_FALSE(opt_number(b, "absent", "absent", 0, 1));
  EXPECT_FALSE(opt_number(b, "n", "n", 0, 1));
  EXPECT_EQ(opt_int(b, "i", "i", 0, 10).value(), 3);
  EXPECT_EQ(opt_int(b, "f", "f", 0, 10).value(), 3);
  EXPECT_EQ(opt_string(b, "s", "s").value(), "x");
  EXPECT_TRUE(opt_bool(b, "b", "b").value());

  HttpError e = error_of([&] { opt_number(b, "s", "x.temperature", 0, 2); });
  EXPECT_EQ(e.status, 400);
  EXPECT_EQ(e.param, "x.temperature");
  EXPECT_NE(std::string(e.what()).find("x.temperature"), std::string::npos);
  EXPECT_EQ(error_of([&] { opt_number(b, "i", "i", 0, 2); }).param, "i");  // out of range
  EXPECT_EQ(error_of([&] { opt_int(b, "g", "g", 0, 10); }).param, "g");     // not an integer
  EXPECT_EQ(error_of([&] { opt_int(b, "i", "i", 5, 10); }).param, "i");
  EXPECT_EQ(error_of([&] { opt_string(b, "i", "i"); }).param, "i");
  EXPECT_EQ(error_of([&] { opt_bool(b, "s", "s"); }).param, "s");
}

TEST(ApiCommon, StopStringsWithinLimits) {
  Limits limits;
  limits.max_stop = 2;
  limits.max_stop_bytes = 4;
  ChatConfig c;
  parse_stop(body(R"("END")"), "stop", limits, c);
  EXPECT_EQ(c.stop, std::vector<std::string>{"END"});
  parse_stop(body(R"(["a", ""])"), "stop", limits, c);  // an empty stop string would end every turn
  EXPECT_EQ(c.stop, std::vector<std::string>{"a"});
}

TEST(ApiCommon, StopErrorsNameTheField) {
  Limits limits;
  limits.max_stop = 2;
  limits.max_stop_bytes = 4;
  ChatConfig c;
  EXPECT_EQ(error_of([&] { parse_stop(body(R"(["a","b","c"])"), "stop", limits, c); }).param, "stop");
  EXPECT_EQ(error_of([&] { parse_stop(body(R"("toolong")"), "stop_sequences", limits, c); }).param, "stop_sequences");
  EXPECT_EQ(error_of([&] { parse_stop(body(R"(["a", 3])"), "stop", limits, c); }).param, "stop[1]");
  EXPECT_EQ(error_of([&] { parse_stop(body("7"), "stop", limits, c); }).param, "stop");
}

TEST(ApiCommon, SamplingFields) {
  ChatConfig c;
  parse_sampling(body(R"({"temperature": 0.7, "top_p": 0.9, "top_k": 40, "min_p": 0.05, "presence_penalty": 0.5,
                          "frequency_penalty": -0.5, "repeat_penalty": 1.1, "seed": 42})"),
                 "", c);
  EXPECT_FLOAT_EQ(*c.temperature, 0.7f);
  EXPECT_FLOAT_EQ(*c.top_p, 0.9f);
  EXPECT_EQ(*c.top_k, 40);
  EXPECT_FLOAT_EQ(*c.min_p, 0.05f);
  EXPECT_FLOAT_EQ(*c.presence_penalty, 0.5f);
  EXPECT_FLOAT_EQ(*c.frequency_penalty, -0.5f);
  EXPECT_FLOAT_EQ(*c.repetition_penalty, 1.1f);
  EXPECT_EQ(*c.seed, 42u);
  ChatConfig d;
  parse_sampling(body(R"({"seed": 18446744073709551615})"), "", d);
  EXPECT_EQ(*d.seed, 18446744073709551615ull);

  for (const auto& [text_, param] : std::vector<std::pair<const char*, const char*>>{
           {R"({"temperature": 2.5})", "temperature"},
           {R"({"temperature": "hot"})", "temperature"},
           {R"({"top_p": -0.1})", "top_p"},
           {R"({"top_k": -1})", "top_k"},
           {R"({"top_k": 1.5})", "top_k"},
           {R"({"min_p": 2})", "min_p"},
           {R"({"presence_penalty": 3})", "presence_penalty"},
           {R"({"frequency_penalty": true})", "frequency_penalty"},
           {R"({"repetition_penalty": 0})", "repetition_penalty"},
           {R"({"seed": "7"})", "seed"}}) {
    const char* text = text_;  // lambdas capture no structured bindings in clang 14
    ChatConfig x;
    EXPECT_EQ(error_of([&] { parse_sampling(body(text), "", x); }).param, param) << text;
  }
  ChatConfig y;
  EXPECT_EQ(error_of([&] { parse_sampling(body(R"({"top_p": 3})"), "options", y); }).param, "options.top_p");
}

TEST(ApiCommon, TextContentJoinsTextParts) {
  EXPECT_EQ(text_content(body(R"("plain")"), "c"), "plain");
  EXPECT_EQ(text_content(Json(), "c"), "");
  EXPECT_EQ(text_content(body(R"([{"type": "text", "text": "a"}, {"type": "input_text", "text": "b"},
                                   {"type": "output_text", "text": "c"}])"),
                         "c"),
            "a\nb\nc");
  EXPECT_EQ(error_of([] { text_content(body(R"([{"type": "text", "text": "a"}, {"type": "image_url"}])"),
                                       "messages[0].content"); })
                .param,
            "messages[0].content[1].type");
  EXPECT_EQ(error_of([] { text_content(body(R"([{"type": "text", "text": 5}])"), "m"); }).param, "m[0].text");
  EXPECT_EQ(error_of([] { text_content(body("12"), "messages[1].content"); }).param, "messages[1].content");
}

// ---------------------------------------------------------------------------------------------
// Chat Completions

TEST(ApiChat, ParsesMessagesToolsAndConfig) {
  const GenRequest r = parse_chat_request(body(R"({
    "model": "gemma", "temperature": 0.2, "max_completion_tokens": 64, "reasoning_effort": "high",
    "stream": true, "stream_options": {"include_usage": true}, "stop": ["###"], "n": 1, "logit_bias": {},
    "some_future_field": {"x": 1},
    "messages": [
      {"role": "developer", "content": "Be brief."},
      {"role": "user", "content": [{"type": "text", "text": "Weather"}, {"type": "text", "text": "in Paris?"}]},
      {"role": "assistant", "content": null, "reasoning_content": "call it",
       "tool_calls": [{"id": "call_1", "type": "function",
                       "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\", \"n\": [1, 2]}"}}]},
      {"role": "tool", "tool_call_id": "call_1", "content": "Sunny"}],
    "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather",
               "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}, "strict": true}}],
    "tool_choice": "auto"})"),
                                          Limits{});
  EXPECT_EQ(canon(r.messages), plain(R"([
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Weather\nin Paris?"},
    {"role": "assistant", "content": "", "reasoning_content": "call it", "tool_calls": [
      {"id": "call_1", "type": "function",
       "function": {"name": "get_weather", "arguments": {"city": "Paris", "n": [1, 2]}}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "Sunny"}])"));
  EXPECT_TRUE(r.messages[2]["tool_calls"][0]["function"]["arguments"].is_object());
  EXPECT_EQ(canon(r.tools), plain(R"([{"type": "function", "function": {"name": "get_weather", "description": "Weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}])"));
  EXPECT_EQ(r.model, "gemma");
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.include_usage);
  EXPECT_EQ(*r.config.max_new_tokens, 64);
  EXPECT_FLOAT_EQ(*r.config.temperature, 0.2f);
  EXPECT_EQ(*r.config.reasoning_effort, "high");
  EXPECT_EQ(r.config.stop, std::vector<std::string>{"###"});
}

TEST(ApiChat, ToolRoundTripShape) {
  const GenRequest r = parse_chat_request(body(R"({"messages": [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": "", "tool_calls": [{"id": "call_1", "type": "function",
      "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "Sunny"}]},
    {"role": "user", "content": "Thanks"}]})"),
                                          Limits{});
  EXPECT_EQ(canon(r.messages), plain(kToolRoundTrip));
}

TEST(ApiChat, DefaultsAndToolChoiceNone) {
  Limits limits;
  limits.default_max_tokens = 77;
  const GenRequest r = parse_chat_request(
      body(R"({"messages": [{"role": "user", "content": "hi"}], "tool_choice": "none",
               "tools": [{"type": "function", "function": {"name": "f"}}], "reasoning_effort": "low"})"),
      limits);
  EXPECT_TRUE(r.tools.is_null());
  EXPECT_EQ(*r.config.max_new_tokens, 77);
  EXPECT_EQ(*r.config.reasoning_effort, "low");
  EXPECT_FALSE(r.stream);
  EXPECT_FALSE(r.include_usage);
  EXPECT_EQ(r.model, "");
  EXPECT_FALSE(r.config.temperature);
  // max_tokens alone, and an empty arguments string as {}.
  const GenRequest s = parse_chat_request(body(R"({"max_tokens": 5, "messages": [{"role": "user", "content": "x"},
    {"role": "assistant", "tool_calls": [{"id": "c", "type": "function",
                                          "function": {"name": "f", "arguments": ""}}]}]})"),
                                          limits);
  EXPECT_EQ(*s.config.max_new_tokens, 5);
  EXPECT_EQ(canon(s.messages[1]["tool_calls"][0]["function"]["arguments"]), plain("{}"));
}

TEST(ApiChat, BadRequestsNameTheParam) {
  Limits limits;
  limits.max_stop = 2;
  const std::string long_stop(limits.max_stop_bytes + 1, 'x');
  const std::string long_stop_body =
      R"({"messages": [{"role": "user", "content": "x"}], "stop": ")" + long_stop + R"("})";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"messages": []})", "messages"},
      {R"({"model": "m"})", "messages"},
      {R"({"messages": {"role": "user"}})", "messages"},
      {R"({"messages": [{"role": "user", "content": "x"}, {"role": "wizard", "content": "x"}]})", "messages[1].role"},
      {R"({"messages": [{"role": "user", "content": "x"}, {"role": "user", "content": 5}]})", "messages[1].content"},
      {R"({"messages": [{"role": "user"}]})", "messages[0].content"},
      {R"({"messages": ["hi"]})", "messages[0]"},
      {R"({"messages": [{"content": "x"}]})", "messages[0].role"},
      {R"({"messages": [{"role": "tool", "content": "x"}]})", "messages[0].tool_call_id"},
      {R"({"messages": [{"role": "assistant", "tool_calls": [{"id": "c", "type": "function",
          "function": {"name": "f", "arguments": "{not json"}}]}]})",
       "messages[0].tool_calls[0].function.arguments"},
      {R"({"messages": [{"role": "assistant", "tool_calls": [{"id": "c", "type": "function",
          "function": {"name": "f", "arguments": "[1, 2]"}}]}]})",
       "messages[0].tool_calls[0].function.arguments"},
      {R"({"messages": [{"role": "assistant", "tool_calls": [{"id": "c", "type": "function",
          "function": {"arguments": "{}"}}]}]})",
       "messages[0].tool_calls[0].function.name"},
      {R"({"messages": [{"role": "user", "content": "x"}], "n": 2})", "n"},
      {R"({"messages": [{"role": "user", "content": "x"}], "temperature": "0.5"})", "temperature"},
      {R"({"messages": [{"role": "user", "content": "x"}], "max_tokens": 0})", "max_tokens"},
      {R"({"messages": [{"role": "user", "content": "x"}], "max_completion_tokens": "9"})", "max_completion_tokens"},
      {R"({"messages": [{"role": "user", "content": "x"}], "stop": ["a", "b", "c"]})", "stop"},
      {long_stop_body, "stop"},
      {R"({"messages": [{"role": "user", "content": "x"}], "stream": "yes"})", "stream"},
      {R"({"messages": [{"role": "user", "content": "x"}], "stream_options": {"include_usage": 1}})",
       "stream_options.include_usage"},
      {R"({"messages": [{"role": "user", "content": "x"}], "reasoning_effort": "extreme"})", "reasoning_effort"},
      {R"({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "code_interpreter"}]})", "tools[0].type"},
      {R"({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function", "function": {}}]})",
       "tools[0].function.name"},
      {R"({"messages": [{"role": "user", "content": "x"}], "tool_choice": "sometimes"})", "tool_choice"},
  };
  for (const auto& [text_, param] : cases) {
    const std::string& text = text_;  // lambdas capture no structured bindings in clang 14
    const HttpError e = error_of([&] { parse_chat_request(Json::parse(text), limits); });
    EXPECT_EQ(e.status, 400) << text;
    EXPECT_EQ(e.param, param) << text;
  }
  EXPECT_EQ(error_of([&] { parse_chat_request(body("[1]"), limits); }).status, 400);
  // Arguments nesting is bounded (valid JSON, but too deep to parse safely).
  const std::string deep = R"({"messages": [{"role": "assistant", "tool_calls": [{"id": "c", "type": "function",
      "function": {"name": "f", "arguments": "{\"a\": )" + std::string(300, '[') + std::string(300, ']') + R"(}"}}]}]})";
  const HttpError d = error_of([&] { parse_chat_request(Json::parse(deep), limits); });
  EXPECT_EQ(d.param, "messages[0].tool_calls[0].function.arguments");
  EXPECT_NE(std::string(d.what()).find("nested deeper"), std::string::npos) << d.what();
  Limits few;
  few.max_messages = 1;
  EXPECT_EQ(error_of([&] { parse_chat_request(body(R"({"messages": [{"role": "user", "content": "a"},
                                                       {"role": "user", "content": "b"}]})"),
                                              few); })
                .param,
            "messages");
}

TEST(ApiChat, CompletionWithThinkingTextAndToolCall) {
  const Json j = chat_completion_json(tool_turn(), meta("chatcmpl-abc"));
  EXPECT_EQ(j["id"], "chatcmpl-abc");
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["created"], 1700000000);
  EXPECT_EQ(j["model"], "gemma-4-tiny");
  ASSERT_EQ(j["choices"].size(), 1u);
  const Json& c = j["choices"][0];
  EXPECT_EQ(c["index"], 0);
  EXPECT_EQ(c["finish_reason"], "tool_calls");
  EXPECT_EQ(c["message"]["role"], "assistant");
  EXPECT_EQ(c["message"]["content"], "Let me check.");
  EXPECT_EQ(c["message"]["reasoning_content"], "The user wants weather.");
  ASSERT_EQ(c["message"]["tool_calls"].size(), 1u);  // the invalid_json call stays out
  const Json& call = c["message"]["tool_calls"][0];
  EXPECT_EQ(call["id"].get<std::string>().rfind("call_", 0), 0u);
  EXPECT_EQ(call["id"].get<std::string>().size(), 5u + 24u);
  EXPECT_EQ(call["type"], "function");
  EXPECT_EQ(call["function"]["name"], "get_weather");
  EXPECT_EQ(plain(call["function"]["arguments"].get<std::string>().c_str()), plain(R"({"city":"Paris","days":3})"));
  EXPECT_EQ(canon(j["usage"]), plain(R"({"prompt_tokens": 100, "completion_tokens": 41, "total_tokens": 141,
    "prompt_tokens_details": {"cached_tokens": 60}, "completion_tokens_details": {"reasoning_tokens": 12}})"));
  EXPECT_EQ(j["timings"]["predicted_n"], 41);

  ChatResult plain_turn;
  plain_turn.text = "Hi.";
  plain_turn.finish_reason = FinishReason::Length;
  const Json p = chat_completion_json(plain_turn, meta("chatcmpl-x"));
  EXPECT_EQ(p["choices"][0]["finish_reason"], "length");
  EXPECT_FALSE(p["choices"][0]["message"].contains("tool_calls"));
  EXPECT_FALSE(p["choices"][0]["message"].contains("reasoning_content"));
  // Tool calls that all failed to parse: the turn just stopped.
  ChatResult failed = tool_turn();
  failed.tool_calls.erase(failed.tool_calls.begin());
  EXPECT_EQ(chat_completion_json(failed, meta("x"))["choices"][0]["finish_reason"], "stop");
}

TEST(ApiChat, StreamFrames) {
  ChatStream s(meta("chatcmpl-s"), /*include_usage=*/true);
  std::string sse = s.start();
  for (const auto& e : deltas({{"The user ", true}, {"wants weather.", true}, {"Let me ", false}, {"check.", false}}))
    sse += s.delta(e);
  StreamEvent done;
  done.done = true;
  sse += s.delta(done);  // nothing: finish() ends the stream
  sse += s.finish(tool_turn());

  const auto fs = frames(sse);
  ASSERT_EQ(fs.size(), 1u + 4u + 1u + 1u + 1u + 1u);
  std::string content, reasoning;
  for (size_t i = 0; i + 1 < fs.size(); ++i) {
    const Json& d = fs[i].data;
    EXPECT_EQ(fs[i].event, "");
    EXPECT_EQ(d["object"], "chat.completion.chunk");
    EXPECT_EQ(d["id"], "chatcmpl-s");
    EXPECT_EQ(d["model"], "gemma-4-tiny");
    if (d["choices"].empty()) continue;
    const Json& delta = d["choices"][0]["delta"];
    if (delta.contains("content")) content += delta["content"].get<std::string>();
    if (delta.contains("reasoning_content")) reasoning += delta["reasoning_content"].get<std::string>();
  }
  EXPECT_EQ(content, "Let me check.");
  EXPECT_EQ(reasoning, "The user wants weather.");
  EXPECT_EQ(canon(fs[0].data["choices"][0]["delta"]), plain(R"({"role": "assistant", "content": ""})"));
  EXPECT_TRUE(fs[0].data["choices"][0]["finish_reason"].is_null());

  const Json& tc = fs[5].data["choices"][0]["delta"]["tool_calls"][0];
  EXPECT_EQ(tc["index"], 0);
  EXPECT_EQ(tc["type"], "function");
  EXPECT_EQ(tc["id"].get<std::string>().rfind("call_", 0), 0u);
  EXPECT_EQ(tc["function"]["name"], "get_weather");
  EXPECT_EQ(plain(tc["function"]["arguments"].get<std::string>().c_str()), plain(R"({"city":"Paris","days":3})"));

  EXPECT_EQ(fs[6].data["choices"][0]["finish_reason"], "tool_calls");
  EXPECT_EQ(canon(fs[6].data["choices"][0]["delta"]), plain("{}"));
  EXPECT_EQ(fs[6].data["timings"]["cache_n"], 60);
  EXPECT_TRUE(fs[7].data["choices"].is_array() && fs[7].data["choices"].empty());
  EXPECT_EQ(fs[7].data["usage"]["total_tokens"], 141);
  EXPECT_EQ(fs[8].data, "[DONE]");
  EXPECT_EQ(sse.substr(sse.size() - 14), "data: [DONE]\n\n");

  ChatStream quiet(meta("c"), false);
  ChatResult r;
  r.text = "x";
  const auto qf = frames(quiet.finish(r));
  ASSERT_EQ(qf.size(), 2u);  // finish chunk, [DONE]: no usage chunk
  EXPECT_EQ(qf[0].data["choices"][0]["finish_reason"], "stop");
}

// ---------------------------------------------------------------------------------------------
// Anthropic Messages

TEST(ApiMessages, ParsesToTheChatShape) {
  const GenRequest r = parse_messages_request(body(R"({
    "model": "claude-x", "max_tokens": 300, "system": [{"type": "text", "text": "Be brief."}],
    "metadata": {"user_id": "u"}, "stop_sequences": ["END"], "temperature": 0.3, "top_k": 20,
    "messages": [
      {"role": "user", "content": "Weather in Paris?"},
      {"role": "assistant", "content": [
        {"type": "thinking", "thinking": "hmm", "signature": "sig"},
        {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}}]},
      {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "call_1", "content": [{"type": "text", "text": "Sunny"}]},
        {"type": "text", "text": "Thanks"}]}],
    "tools": [{"name": "get_weather", "description": "Weather",
               "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
    "tool_choice": {"type": "auto"}})"),
                                              Limits{});
  EXPECT_EQ(canon(r.messages), plain(kToolRoundTrip));
  EXPECT_EQ(canon(r.tools), plain(R"([{"type": "function", "function": {"name": "get_weather", "description": "Weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}])"));
  EXPECT_EQ(*r.config.max_new_tokens, 300);
  EXPECT_EQ(r.config.stop, std::vector<std::string>{"END"});
  EXPECT_FLOAT_EQ(*r.config.temperature, 0.3f);
  EXPECT_EQ(*r.config.top_k, 20);
  EXPECT_EQ(r.model, "claude-x");
  EXPECT_FALSE(r.config.reasoning_effort);
}

TEST(ApiMessages, ThinkingToolChoiceAndErrorResults) {
  const GenRequest r = parse_messages_request(body(R"({"max_tokens": 2000, "system": "S", "stream": true,
    "thinking": {"type": "enabled", "budget_tokens": 256}, "tool_choice": {"type": "none"},
    "tools": [{"name": "f", "input_schema": {"type": "object"}}],
    "messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "boom",
                                                "is_error": true}]}]})"),
                                              Limits{});
  EXPECT_EQ(*r.config.reasoning_effort, "high");
  EXPECT_EQ(*r.config.thinking_token_budget, 256);
  EXPECT_TRUE(r.tools.is_null());
  EXPECT_TRUE(r.stream);
  EXPECT_EQ(canon(r.messages), plain(R"([{"role": "system", "content": "S"},
    {"role": "tool", "tool_call_id": "t1", "content": "Error: boom"}])"));

  const GenRequest off = parse_messages_request(
      body(R"({"max_tokens": 10, "thinking": {"type": "disabled"}, "messages": [{"role": "user", "content": "x"}]})"),
      Limits{});
  EXPECT_EQ(*off.config.reasoning_effort, "none");
  const GenRequest adaptive = parse_messages_request(
      body(R"({"max_tokens": 10, "thinking": {"type": "adaptive"}, "messages": [{"role": "user", "content": "x"}]})"),
      Limits{});
  EXPECT_EQ(*adaptive.config.reasoning_effort, "high");
  EXPECT_FALSE(adaptive.config.thinking_token_budget);

  // count_tokens: no max_tokens needed.
  const GenRequest ct =
      parse_count_tokens_request(body(R"({"messages": [{"role": "user", "content": "x"}]})"), Limits{});
  EXPECT_EQ(ct.messages.size(), 1u);
}

TEST(ApiMessages, BadRequestsNameTheParam) {
  Limits limits;
  limits.max_stop = 1;
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"messages": [{"role": "user", "content": "x"}]})", "max_tokens"},
      {R"({"max_tokens": 0, "messages": [{"role": "user", "content": "x"}]})", "max_tokens"},
      {R"({"max_tokens": "10", "messages": [{"role": "user", "content": "x"}]})", "max_tokens"},
      {R"({"max_tokens": 10, "messages": []})", "messages"},
      {R"({"max_tokens": 10, "messages": [{"role": "system", "content": "x"}]})", "messages[0].role"},
      {R"({"max_tokens": 10, "messages": [{"role": "user", "content": 3}]})", "messages[0].content"},
      {R"({"max_tokens": 10, "messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]})",
       "messages[0].content[0].type"},
      {R"({"max_tokens": 10, "messages": [{"role": "assistant", "content": [{"type": "tool_use", "id": "t",
          "name": "f", "input": "{}"}]}]})",
       "messages[0].content[0].input"},
      {R"({"max_tokens": 10, "messages": [{"role": "user", "content": [{"type": "tool_result"}]}]})",
       "messages[0].content[0].tool_use_id"},
      {R"({"max_tokens": 10, "thinking": {"type": "enabled", "budget_tokens": 10},
          "messages": [{"role": "user", "content": "x"}]})",
       "thinking.budget_tokens"},
      {R"({"max_tokens": 100, "thinking": {"type": "enabled", "budget_tokens": 0},
          "messages": [{"role": "user", "content": "x"}]})",
       "thinking.budget_tokens"},
      {R"({"max_tokens": 100, "thinking": {"type": "enabled"}, "messages": [{"role": "user", "content": "x"}]})",
       "thinking.budget_tokens"},
      {R"({"max_tokens": 100, "thinking": {"type": "sometimes"}, "messages": [{"role": "user", "content": "x"}]})",
       "thinking.type"},
      {R"({"max_tokens": 10, "temperature": "warm", "messages": [{"role": "user", "content": "x"}]})", "temperature"},
      {R"({"max_tokens": 10, "stop_sequences": ["a", "b"], "messages": [{"role": "user", "content": "x"}]})",
       "stop_sequences"},
      {R"({"max_tokens": 10, "tools": [{"type": "web_search_20250305", "name": "web_search"}],
          "messages": [{"role": "user", "content": "x"}]})",
       "tools[0].type"},
      {R"({"max_tokens": 10, "tools": [{"name": "f"}], "messages": [{"role": "user", "content": "x"}]})",
       "tools[0].input_schema"},
      {R"({"max_tokens": 10, "tool_choice": {"type": "maybe"}, "messages": [{"role": "user", "content": "x"}]})",
       "tool_choice.type"},
      {R"({"max_tokens": 10, "system": 5, "messages": [{"role": "user", "content": "x"}]})", "system"},
  };
  for (const auto& [text_, param] : cases) {
    const std::string& text = text_;  // lambdas capture no structured bindings in clang 14
    const HttpError e = error_of([&] { parse_messages_request(Json::parse(text), limits); });
    EXPECT_EQ(e.status, 400) << text;
    EXPECT_EQ(e.param, param) << text;
  }
}

TEST(ApiMessages, MessageWithThinkingTextAndToolUse) {
  const Json m = message_json(tool_turn(), meta("msg_abc"), ChatConfig{});
  EXPECT_EQ(m["id"], "msg_abc");
  EXPECT_EQ(m["type"], "message");
  EXPECT_EQ(m["role"], "assistant");
  EXPECT_EQ(m["model"], "gemma-4-tiny");
  ASSERT_EQ(m["content"].size(), 3u);
  EXPECT_EQ(canon(m["content"][0]),
            plain(R"({"type": "thinking", "thinking": "The user wants weather.", "signature": ""})"));
  EXPECT_EQ(canon(m["content"][1]), plain(R"({"type": "text", "text": "Let me check."})"));
  EXPECT_EQ(m["content"][2]["type"], "tool_use");
  EXPECT_EQ(m["content"][2]["id"].get<std::string>().rfind("toolu_", 0), 0u);
  EXPECT_EQ(m["content"][2]["name"], "get_weather");
  EXPECT_EQ(canon(m["content"][2]["input"]), plain(R"({"city": "Paris", "days": 3})"));
  EXPECT_EQ(m["stop_reason"], "tool_use");
  EXPECT_TRUE(m["stop_sequence"].is_null());
  EXPECT_EQ(canon(m["usage"]), plain(R"({"input_tokens": 40, "cache_creation_input_tokens": 0,
    "cache_read_input_tokens": 60, "output_tokens": 41})"));
}

TEST(ApiMessages, StopReasons) {
  ChatConfig config;
  config.stop = {"END", "STOP"};
  ChatResult r;
  r.text = "Hello ";
  r.raw_text = "Hello END";
  EXPECT_EQ(message_json(r, meta("m"), config)["stop_reason"], "stop_sequence");
  EXPECT_EQ(message_json(r, meta("m"), config)["stop_sequence"], "END");
  r.raw_text = "Hello END.";  // the last token ran past the stop string
  EXPECT_EQ(message_json(r, meta("m"), config)["stop_sequence"], "END");
  r.raw_text = "Hello<turn|>";
  EXPECT_EQ(message_json(r, meta("m"), config)["stop_reason"], "end_turn");
  EXPECT_TRUE(message_json(r, meta("m"), config)["stop_sequence"].is_null());
  r.raw_text = "<|channel>thought\nEND<channel|>Hello<turn|>";  // a stop string in the thought only
  EXPECT_EQ(message_json(r, meta("m"), config)["stop_reason"], "end_turn");
  r.finish_reason = FinishReason::Length;
  EXPECT_EQ(message_json(r, meta("m"), config)["stop_reason"], "max_tokens");
}

TEST(ApiMessages, StreamEvents) {
  MessagesStream s(meta("msg_s"), ChatConfig{});
  std::string sse = s.start();
  for (const auto& e : deltas({{"The user ", true}, {"wants weather.", true}, {"Let me ", false}, {"check.", false}}))
    sse += s.delta(e);
  sse += s.finish(tool_turn());

  const auto fs = frames(sse);
  std::vector<std::string> types;
  std::string text, thinking;
  Json snapshot;  // the message as the SDK accumulates it
  std::vector<std::string> tool_json;
  for (const auto& f : fs) {
    EXPECT_EQ(f.event, f.data["type"]);
    types.push_back(f.event);
    if (f.event == "message_start") snapshot = f.data["message"];
    if (f.event == "content_block_start") {
      EXPECT_EQ(f.data["index"], snapshot["content"].size());
      snapshot["content"].push_back(f.data["content_block"]);
      tool_json.emplace_back();
    }
    if (f.event == "content_block_delta") {
      const Json& d = f.data["delta"];
      Json& block = snapshot["content"][f.data["index"].get<size_t>()];
      if (d["type"] == "text_delta") text += d["text"].get<std::string>();
      if (d["type"] == "thinking_delta") thinking += d["thinking"].get<std::string>();
      if (d["type"] == "input_json_delta")
        tool_json[f.data["index"].get<size_t>()] += d["partial_json"].get<std::string>();
      if (d["type"] == "signature_delta") block["signature"] = d["signature"];
    }
  }
  EXPECT_EQ(types, (std::vector<std::string>{
                       "message_start", "content_block_start", "content_block_delta", "content_block_delta",
                       "content_block_delta", "content_block_stop", "content_block_start", "content_block_delta",
                       "content_block_delta", "content_block_stop", "content_block_start", "content_block_delta",
                       "content_block_stop", "message_delta", "message_stop"}));
  EXPECT_EQ(thinking, "The user wants weather.");
  EXPECT_EQ(text, "Let me check.");
  const Json& start = fs[0].data["message"];
  EXPECT_EQ(start["id"], "msg_s");
  EXPECT_TRUE(start["content"].empty());
  EXPECT_TRUE(start["stop_reason"].is_null());
  EXPECT_EQ(start["usage"]["input_tokens"], 40);
  EXPECT_EQ(start["usage"]["cache_read_input_tokens"], 60);
  EXPECT_EQ(canon(fs[1].data["content_block"]), plain(R"({"type": "thinking", "thinking": "", "signature": ""})"));
  EXPECT_EQ(fs[4].data["delta"]["type"], "signature_delta");
  EXPECT_EQ(canon(fs[6].data["content_block"]), plain(R"({"type": "text", "text": ""})"));
  const Json& tool = snapshot["content"][2];
  EXPECT_EQ(tool["type"], "tool_use");
  EXPECT_EQ(tool["name"], "get_weather");
  EXPECT_EQ(canon(tool["input"]), plain("{}"));
  EXPECT_EQ(plain(tool_json[2].c_str()), plain(R"({"city": "Paris", "days": 3})"));
  const Json& md = fs[13].data;
  EXPECT_EQ(md["delta"]["stop_reason"], "tool_use");
  EXPECT_TRUE(md["delta"]["stop_sequence"].is_null());
  EXPECT_EQ(md["usage"]["output_tokens"], 41);
  for (const auto& f : fs) EXPECT_EQ(sse.find("event: " + f.event + "\ndata: {"), sse.find("event: " + f.event));
}

// ---------------------------------------------------------------------------------------------
// Responses

TEST(ApiResponses, ParsesInputItems) {
  ResponseStore store;
  const GenRequest r = parse_responses_request(body(R"({
    "model": "gpt-x", "instructions": "Be brief.", "max_output_tokens": 99, "reasoning": {"effort": "medium"},
    "store": false, "text": {"format": {"type": "text"}}, "metadata": {"k": "v"}, "temperature": 0.4,
    "input": [
      {"role": "user", "content": [{"type": "input_text", "text": "Weather in Paris?"}]},
      {"type": "reasoning", "id": "rs_1", "summary": []},
      {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
      {"type": "function_call_output", "call_id": "call_1", "output": "Sunny"},
      {"type": "message", "role": "user", "content": "Thanks"}],
    "tools": [{"type": "function", "name": "get_weather", "description": "Weather",
               "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}, "strict": true}]})"),
                                               Limits{}, store);
  EXPECT_EQ(canon(r.messages), plain(kToolRoundTrip));
  EXPECT_EQ(canon(r.tools), plain(R"([{"type": "function", "function": {"name": "get_weather", "description": "Weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}])"));
  EXPECT_EQ(r.instructions, "Be brief.");
  EXPECT_EQ(*r.config.max_new_tokens, 99);
  EXPECT_EQ(*r.config.reasoning_effort, "medium");
  EXPECT_FALSE(r.store);
  EXPECT_FLOAT_EQ(*r.config.temperature, 0.4f);
  EXPECT_EQ(response_json(ChatResult{}, meta("resp_t"), r)["temperature"].get<double>(), 0.4);  // echoed as sent

  const GenRequest s = parse_responses_request(body(R"({"input": "hi", "stream": true})"), Limits{}, store);
  EXPECT_EQ(canon(s.messages), plain(R"([{"role": "user", "content": "hi"}])"));
  EXPECT_TRUE(s.stream);
  EXPECT_TRUE(s.store);
  EXPECT_TRUE(s.tools.is_null());

  // An assistant message followed by its calls is one chat message.
  const GenRequest t = parse_responses_request(body(R"({"input": [
    {"role": "user", "content": "q"},
    {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]},
    {"type": "function_call", "call_id": "a", "name": "f", "arguments": "{}"},
    {"type": "function_call", "call_id": "b", "name": "g", "arguments": "{\"x\": 1}"}]})"),
                                               Limits{}, store);
  ASSERT_EQ(t.messages.size(), 2u);
  EXPECT_EQ(t.messages[1]["content"], "Checking.");
  ASSERT_EQ(t.messages[1]["tool_calls"].size(), 2u);
  EXPECT_EQ(t.messages[1]["tool_calls"][1]["id"], "b");
  EXPECT_EQ(t.messages[1]["tool_calls"][1]["function"]["arguments"]["x"], 1);
}

TEST(ApiResponses, BadRequestsNameTheParam) {
  ResponseStore store;
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"model": "m"})", "input"},
      {R"({"input": []})", "input"},
      {R"({"input": 5})", "input"},
      {R"({"input": "x", "previous_response_id": "resp_missing"})", "previous_response_id"},
      {R"({"input": [{"role": "wizard", "content": "x"}]})", "input[0].role"},
      {R"({"input": [{"role": "user", "content": 1}]})", "input[0].content"},
      {R"({"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": "nope"}]})",
       "input[0].arguments"},
      {R"({"input": [{"type": "function_call_output", "output": "x"}]})", "input[0].call_id"},
      {R"({"input": [{"type": "item_reference", "id": "x"}]})", "input[0].type"},
      {R"({"input": "x", "tools": [{"type": "web_search"}]})", "tools[0].type"},
      {R"({"input": "x", "reasoning": {"effort": "max"}})", "reasoning.effort"},
      {R"({"input": "x", "max_output_tokens": 0})", "max_output_tokens"},
      {R"({"input": "x", "temperature": [1]})", "temperature"},
      {R"({"input": "x", "store": "no"})", "store"},
      {R"({"input": "x", "instructions": 3})", "instructions"},
  };
  for (const auto& [text_, param] : cases) {
    const std::string& text = text_;  // lambdas capture no structured bindings in clang 14
    const HttpError e = error_of([&] { parse_responses_request(Json::parse(text), Limits{}, store); });
    EXPECT_EQ(e.status, 400) << text;
    EXPECT_EQ(e.param, param) << text;
  }
  const Json unknown = body(R"({"input": "x", "previous_response_id": "r1"})");
  const HttpError e = error_of([&] { parse_responses_request(unknown, Limits{}, store); });
  EXPECT_EQ(error_body(Api::Responses, e)["error"]["param"], "previous_response_id");
}

TEST(ApiResponses, ResponseWithReasoningMessageAndFunctionCall) {
  ResponseStore store;
  const GenRequest req = parse_responses_request(body(R"({"input": "Weather?", "instructions": "Be brief.",
    "reasoning": {"effort": "high"}, "tools": [{"type": "function", "name": "get_weather"}]})"),
                                                 Limits{}, store);
  const Json o = response_json(tool_turn(), meta("resp_abc"), req);
  EXPECT_EQ(o["id"], "resp_abc");
  EXPECT_EQ(o["object"], "response");
  EXPECT_EQ(o["created_at"], 1700000000);
  EXPECT_EQ(o["status"], "completed");
  EXPECT_TRUE(o["incomplete_details"].is_null());
  EXPECT_EQ(o["model"], "gemma-4-tiny");
  EXPECT_EQ(o["instructions"], "Be brief.");
  EXPECT_TRUE(o["previous_response_id"].is_null());
  ASSERT_EQ(o["output"].size(), 3u);
  const Json& rs = o["output"][0];
  EXPECT_EQ(rs["type"], "reasoning");
  EXPECT_EQ(rs["id"].get<std::string>().rfind("rs_", 0), 0u);
  EXPECT_EQ(canon(rs["content"]), plain(R"([{"type": "reasoning_text", "text": "The user wants weather."}])"));
  EXPECT_TRUE(rs["summary"].empty());
  const Json& msg = o["output"][1];
  EXPECT_EQ(msg["type"], "message");
  EXPECT_EQ(msg["id"].get<std::string>().rfind("msg_", 0), 0u);
  EXPECT_EQ(msg["role"], "assistant");
  EXPECT_EQ(msg["status"], "completed");
  EXPECT_EQ(msg["content"][0]["type"], "output_text");
  EXPECT_EQ(msg["content"][0]["text"], "Let me check.");
  EXPECT_TRUE(msg["content"][0]["annotations"].empty());
  const Json& fc = o["output"][2];
  EXPECT_EQ(fc["type"], "function_call");
  EXPECT_EQ(fc["id"].get<std::string>().rfind("fc_", 0), 0u);
  EXPECT_EQ(fc["call_id"].get<std::string>().rfind("call_", 0), 0u);
  EXPECT_EQ(fc["name"], "get_weather");
  EXPECT_EQ(plain(fc["arguments"].get<std::string>().c_str()), plain(R"({"city":"Paris","days":3})"));
  EXPECT_EQ(fc["status"], "completed");
  EXPECT_EQ(o["output_text"], "Let me check.");
  EXPECT_EQ(canon(o["usage"]), plain(R"({"input_tokens": 100, "input_tokens_details": {"cached_tokens": 60},
    "output_tokens": 41, "output_tokens_details": {"reasoning_tokens": 12}, "total_tokens": 141})"));
  EXPECT_EQ(o["reasoning"]["effort"], "high");
  EXPECT_TRUE(o["temperature"].is_null());
  EXPECT_EQ(o["tools"][0]["name"], "get_weather");
  EXPECT_EQ(o["timings"]["prompt_n"], 40);

  ChatResult cut;
  cut.text = "Long";
  cut.finish_reason = FinishReason::Length;
  const Json c = response_json(cut, meta("resp_c"), req);
  EXPECT_EQ(c["status"], "incomplete");
  EXPECT_EQ(c["incomplete_details"]["reason"], "max_output_tokens");
  ASSERT_EQ(c["output"].size(), 1u);
}

TEST(ApiResponses, StoreEvictsLeastRecentlyUsed) {
  ResponseStore store(2);
  store.put("a", body(R"([{"role": "user", "content": "a"}])"), Json());
  store.put("b", body(R"([{"role": "user", "content": "b"}])"), Json());
  ASSERT_TRUE(store.get("a"));  // a is now the most recent
  store.put("c", body(R"([{"role": "user", "content": "c"}])"), body(R"([{"type": "function"}])"));
  EXPECT_EQ(store.size(), 2u);
  EXPECT_FALSE(store.get("b"));
  ASSERT_TRUE(store.get("a"));
  EXPECT_EQ(store.get("a")->conversation[0]["content"], "a");
  ASSERT_TRUE(store.get("c"));
  EXPECT_EQ(store.get("c")->tools[0]["type"], "function");
  store.put("a", body(R"([{"role": "user", "content": "a2"}])"), Json());  // replaces, no growth
  EXPECT_EQ(store.size(), 2u);
  EXPECT_EQ(store.get("a")->conversation[0]["content"], "a2");

  ResponseStore none(0);
  none.put("x", Json::array(), Json());
  EXPECT_EQ(none.size(), 0u);
}

TEST(ApiResponses, PreviousResponseContinuesTheConversation) {
  ResponseStore store;
  const GenRequest first = parse_responses_request(
      body(R"({"input": "Weather in Paris?", "instructions": "Be brief.",
               "tools": [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}]})"),
      Limits{}, store);
  const ChatResult r = tool_turn();
  const Json response = response_json(r, meta("resp_1"), first);
  const Json conv = conversation_after(first, r, response);
  const std::string call_id = response["output"][2]["call_id"].get<std::string>();
  Json expected = Json::parse(R"([{"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": "Let me check.", "reasoning_content": "The user wants weather.",
     "tool_calls": [{"id": "", "type": "function", "function": {"name": "get_weather",
                     "arguments": {"city": "Paris", "days": 3}}}]}])");
  expected[1]["tool_calls"][0]["id"] = call_id;
  EXPECT_EQ(canon(conv), canon(expected));  // no instructions: they are not carried
  store.put("resp_1", conv, first.tools);

  const std::string next_body = R"({"previous_response_id": "resp_1", "instructions": "New rules.",
    "input": [{"type": "function_call_output", "call_id": ")" + call_id + R"(", "output": "Sunny"}]})";
  const GenRequest second = parse_responses_request(Json::parse(next_body), Limits{}, store);
  ASSERT_EQ(second.messages.size(), 4u);
  EXPECT_EQ(canon(second.messages[0]), plain(R"({"role": "system", "content": "New rules."})"));
  EXPECT_EQ(canon(second.messages[1]), canon(conv[0]));
  EXPECT_EQ(canon(second.messages[2]), canon(conv[1]));
  EXPECT_EQ(second.messages[3]["role"], "tool");
  EXPECT_EQ(second.messages[3]["tool_call_id"], call_id);
  EXPECT_EQ(second.messages[3]["content"], "Sunny");
  EXPECT_EQ(canon(second.tools), canon(first.tools));  // carried from the stored response
  EXPECT_EQ(second.previous_response_id, "resp_1");
  EXPECT_EQ(response_json(r, meta("resp_2"), second)["previous_response_id"], "resp_1");

  // The third turn drops the second's instructions again.
  ChatResult answer;
  answer.text = "It is sunny.";
  const Json conv2 = conversation_after(second, answer, response_json(answer, meta("resp_2"), second));
  ASSERT_EQ(conv2.size(), 4u);
  EXPECT_EQ(conv2[0]["role"], "user");
  EXPECT_EQ(canon(conv2[3]), plain(R"({"role": "assistant", "content": "It is sunny."})"));
}

TEST(ApiResponses, StreamEvents) {
  ResponseStore store;
  const GenRequest req = parse_responses_request(body(R"({"input": "Weather?", "stream": true})"), Limits{}, store);
  ResponsesStream s(meta("resp_s"), req);
  std::string sse = s.start();
  for (const auto& e : deltas({{"The user ", true}, {"wants weather.", true}, {"Let me ", false}, {"check.", false}}))
    sse += s.delta(e);
  Json final_response;
  sse += s.finish(tool_turn(), &final_response);

  const auto fs = frames(sse);
  std::vector<std::string> types;
  std::string text, reasoning, args;
  for (size_t i = 0; i < fs.size(); ++i) {
    EXPECT_EQ(fs[i].event, fs[i].data["type"]);
    EXPECT_EQ(fs[i].data["sequence_number"], i);
    types.push_back(fs[i].event);
    if (fs[i].event == "response.output_text.delta") text += fs[i].data["delta"].get<std::string>();
    if (fs[i].event == "response.reasoning_text.delta") reasoning += fs[i].data["delta"].get<std::string>();
    if (fs[i].event == "response.function_call_arguments.delta") args += fs[i].data["delta"].get<std::string>();
  }
  EXPECT_EQ(types, (std::vector<std::string>{
                       "response.created", "response.in_progress",
                       "response.output_item.added", "response.reasoning_text.delta", "response.reasoning_text.delta",
                       "response.reasoning_text.done", "response.output_item.done",
                       "response.output_item.added", "response.content_part.added", "response.output_text.delta",
                       "response.output_text.delta", "response.output_text.done", "response.content_part.done",
                       "response.output_item.done",
                       "response.output_item.added", "response.function_call_arguments.delta",
                       "response.function_call_arguments.done", "response.output_item.done",
                       "response.completed"}));
  EXPECT_EQ(text, "Let me check.");
  EXPECT_EQ(reasoning, "The user wants weather.");
  EXPECT_EQ(plain(args.c_str()), plain(R"({"city":"Paris","days":3})"));

  EXPECT_EQ(fs[0].data["response"]["status"], "in_progress");
  EXPECT_TRUE(fs[0].data["response"]["output"].empty());
  EXPECT_EQ(fs[2].data["output_index"], 0);
  EXPECT_EQ(fs[2].data["item"]["type"], "reasoning");
  EXPECT_EQ(fs[5].data["text"], "The user wants weather.");
  EXPECT_EQ(fs[7].data["output_index"], 1);
  EXPECT_EQ(fs[9].data["item_id"], fs[7].data["item"]["id"]);
  EXPECT_EQ(fs[11].data["text"], "Let me check.");
  EXPECT_EQ(fs[14].data["output_index"], 2);
  EXPECT_EQ(fs[14].data["item"]["arguments"], "");
  EXPECT_EQ(fs[16].data["name"], "get_weather");

  const Json& done = fs.back().data["response"];
  EXPECT_EQ(done["status"], "completed");
  EXPECT_EQ(done["output_text"], "Let me check.");
  ASSERT_EQ(done["output"].size(), 3u);
  const size_t added[] = {2, 7, 14};  // the output_item.added frames
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(done["output"][i]["id"], fs[added[i]].data["item"]["id"]);
  EXPECT_EQ(done["output"][2]["call_id"], fs[17].data["item"]["call_id"]);
  EXPECT_EQ(done["usage"]["total_tokens"], 141);
  EXPECT_EQ(canon(final_response), canon(done));

  // A turn with nothing streamed still ends with a (possibly empty) message item.
  ResponsesStream quiet(meta("resp_q"), req);
  Json q;
  ChatResult empty;
  const auto qf = frames(quiet.start() + quiet.finish(empty, &q));
  EXPECT_EQ(qf.back().event, "response.completed");
  ASSERT_EQ(q["output"].size(), 1u);
  EXPECT_EQ(q["output"][0]["type"], "message");
  EXPECT_EQ(q["output"][0]["content"][0]["text"], "");
}

}  // namespace
}  // namespace mlxq::server
