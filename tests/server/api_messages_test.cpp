// Anthropic Messages translation (src/server/api_messages): blocks into the chat shape, thinking
// and tool choice, 400s naming the param, message objects, stop reasons and the event stream.
#include "api_test_util.h"

#include <cctype>

namespace mlxq::server {
namespace {

using namespace test;

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
       "messages[0].content[0].source.type"},
      {R"({"max_tokens": 10, "messages": [{"role": "user", "content": [{"type": "image", "source":
          {"type": "url", "url": "https://x/y.png"}}]}]})",
       "messages[0].content[0].source.url"},
      {R"({"max_tokens": 10, "messages": [{"role": "user", "content": [{"type": "image", "source":
          {"type": "file", "file_id": "f"}}]}]})",
       "messages[0].content[0].source.type"},
      {R"({"max_tokens": 10, "messages": [{"role": "assistant", "content": [{"type": "image", "source":
          {"type": "base64", "media_type": "image/png", "data": "AA=="}}]}]})",
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

}  // namespace
}  // namespace mlxq::server
