// The APIs' shared pieces (src/server/api_common): error bodies per family, ids, timings, typed
// field access naming the field, stop strings, sampling fields and text content.
#include "api_test_util.h"

#include <cctype>

namespace mlxq::server {
namespace {

using namespace test;

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

// A user message's content with images: the chat-shape parts in order, each image a data URL
// (OpenAI image_url object or string, Responses input_image, Anthropic base64 image); without
// images the joined text as before; anything but a data URL is a 400 naming the field.
TEST(ApiCommon, UserContentKeepsImagesAsDataUrls) {
  EXPECT_EQ(user_content(body(R"([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}])"), "c"), Json("a\nb"));
  const Json parts = user_content(body(R"([{"type": "text", "text": "Compare"},
      {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA==", "detail": "low"}},
      {"type": "input_image", "image_url": "data:image/jpeg;base64,BB=="},
      {"type": "image", "source": {"type": "base64", "media_type": "image/webp", "data": "CC=="}},
      {"type": "input_text", "text": "please"}])"), "m[0].content");
  ASSERT_EQ(parts.size(), 5u);
  EXPECT_EQ(parts[0], body(R"({"type": "text", "text": "Compare"})"));
  EXPECT_EQ(parts[1]["image_url"]["url"], "data:image/png;base64,AA==");
  EXPECT_EQ(parts[2]["image_url"]["url"], "data:image/jpeg;base64,BB==");
  EXPECT_EQ(parts[3]["image_url"]["url"], "data:image/webp;base64,CC==");
  EXPECT_EQ(parts[4], body(R"({"type": "text", "text": "please"})"));
  auto param = [](const char* content) {
    return error_of([&] { user_content(body(content), "m[0].content"); }).param;
  };
  EXPECT_EQ(param(R"([{"type": "image_url", "image_url": {"url": "https://x/cat.png"}}])"), "m[0].content[0].image_url.url");
  EXPECT_EQ(param(R"([{"type": "image_url", "image_url": 5}])"), "m[0].content[0].image_url");
  EXPECT_EQ(param(R"([{"type": "image_url"}])"), "m[0].content[0].image_url");
  EXPECT_EQ(param(R"([{"type": "input_image", "file_id": "f"}])"), "m[0].content[0].image_url");
  EXPECT_EQ(param(R"([{"type": "image_url", "image_url": {"url": "data:,x"}}, {"type": "audio"}])"), "m[0].content[1].type");
}

}  // namespace
}  // namespace mlxq::server
