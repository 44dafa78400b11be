// OpenAI Chat Completions translation (src/server/api_chat): request parsing into the chat
// shape, 400s naming the param, completion objects and the chunk stream.
#include "api_test_util.h"

#include <cctype>

namespace mlxq::server {
namespace {

using namespace test;

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

}  // namespace
}  // namespace mlxq::server
