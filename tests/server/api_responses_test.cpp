// OpenAI Responses translation (src/server/api_responses): input items, 400s naming the param,
// response objects, the ResponseStore and previous_response_id, and the event stream.
#include "api_test_util.h"

#include <cctype>

namespace mlxq::server {
namespace {

using namespace test;

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
