// OutputParser / parse_tool_call: expected results under every chunking; malformed input never throws.
#include "text/output_parser.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

namespace mlxq::text {
namespace {

using nlohmann::json;
using Status = ToolCall::Status;

// A tiny deterministic generator for chunkings (std distributions differ between libraries).
struct TestRng {
  uint64_t s;
  uint32_t next() {
    s = s * 6364136223846793005ULL + 1442695040888963407ULL;
    return uint32_t(s >> 33);
  }
  size_t below(size_t n) { return size_t(next()) % n; }
};

struct Outcome {
  std::string content, reasoning;
  std::string text_deltas, reasoning_deltas;
  std::vector<ToolCall> calls, call_events;
  bool has_reasoning = false;
};

Outcome run(std::string_view s, const std::vector<std::string_view>& chunks, bool start_in_reasoning) {
  OutputParser p(start_in_reasoning);
  std::vector<ParseEvent> events;
  for (auto c : chunks) p.feed(c, events);
  p.finish(events);
  p.finish(events);  // idempotent
  Outcome o;
  o.content = p.content();
  o.reasoning = p.reasoning();
  o.calls = p.tool_calls();
  o.has_reasoning = p.has_reasoning();
  for (const auto& ev : events) {
    switch (ev.kind) {
      case ParseEvent::Kind::Text:
        EXPECT_FALSE(ev.text.empty()) << s;
        o.text_deltas += ev.text;
        break;
      case ParseEvent::Kind::Reasoning:
        EXPECT_FALSE(ev.text.empty()) << s;
        o.reasoning_deltas += ev.text;
        break;
      case ParseEvent::Kind::ToolCall: o.call_events.push_back(ev.call); break;
    }
  }
  return o;
}

std::vector<std::string_view> cut(std::string_view s, const std::vector<size_t>& sizes) {
  std::vector<std::string_view> out;
  size_t pos = 0;
  for (size_t n : sizes) {
    out.push_back(s.substr(pos, n));
    pos += n;
  }
  if (pos < s.size()) out.push_back(s.substr(pos));
  return out;
}

bool same_call(const ToolCall& a, const ToolCall& b) {
  return a.name == b.name && a.arguments == b.arguments && a.status == b.status && a.raw == b.raw &&
         a.error == b.error;
}

// Asserts that `o` equals the whole-string outcome `ref` and is self-consistent.
void expect_same(const Outcome& ref, const Outcome& o, const std::string& how) {
  EXPECT_EQ(o.content, ref.content) << how;
  EXPECT_EQ(o.reasoning, ref.reasoning) << how;
  EXPECT_EQ(o.text_deltas, o.content) << how;
  EXPECT_EQ(o.reasoning_deltas, o.reasoning) << how;
  EXPECT_EQ(o.has_reasoning, ref.has_reasoning) << how;
  ASSERT_EQ(o.calls.size(), ref.calls.size()) << how;
  ASSERT_EQ(o.call_events.size(), o.calls.size()) << how;
  for (size_t i = 0; i < o.calls.size(); ++i) {
    EXPECT_TRUE(same_call(o.calls[i], ref.calls[i])) << how << " call " << i << ": " << o.calls[i].raw;
    EXPECT_TRUE(same_call(o.call_events[i], o.calls[i])) << how << " call event " << i;
  }
}

const std::vector<std::string_view> kSpecial = {
    "<|channel>", "<channel|>", "<|tool_call>", "<tool_call|>", "<|tool_response>", "<tool_response|>",
    "<|tool>", "<tool|>", "<turn|>", "<|turn>", "<|\"|>"};

// A plausible tokenization: each special marker one piece, other text in 1-4 byte pieces that
// never run into a marker.
std::vector<size_t> token_sizes(std::string_view s, TestRng& rng) {
  std::vector<size_t> sizes;
  size_t pos = 0;
  auto marker_at = [&](size_t p) -> size_t {
    for (auto m : kSpecial)
      if (s.substr(p).starts_with(m)) return m.size();
    return 0;
  };
  while (pos < s.size()) {
    if (size_t m = marker_at(pos)) {
      sizes.push_back(m);
      pos += m;
      continue;
    }
    size_t n = 1 + rng.below(4);
    size_t k = 1;
    while (k < n && pos + k < s.size() && !marker_at(pos + k)) ++k;
    sizes.push_back(k);
    pos += k;
  }
  return sizes;
}

// Feeds `s` whole, split at every byte, byte by byte, in random chunkings and in token-like
// pieces; all must agree. Returns the whole-string outcome.
Outcome check_all_chunkings(std::string_view s, bool start_in_reasoning = false, int random_runs = 40) {
  const Outcome ref = run(s, {s}, start_in_reasoning);
  expect_same(ref, ref, "whole");
  for (size_t i = 0; i <= s.size(); ++i) {
    expect_same(ref, run(s, cut(s, {i}), start_in_reasoning), "split at " + std::to_string(i));
    if (::testing::Test::HasFailure()) return ref;
  }
  expect_same(ref, run(s, cut(s, std::vector<size_t>(s.size(), 1)), start_in_reasoning), "byte by byte");
  TestRng rng{uint64_t(s.size()) * 7919 + 1};
  for (int r = 0; r < random_runs && !::testing::Test::HasFailure(); ++r) {
    std::vector<size_t> sizes;
    for (size_t pos = 0; pos < s.size();) {
      size_t n = rng.below(r % 2 ? 24 : 6);  // empty chunks included
      sizes.push_back(n);
      pos += n;
    }
    expect_same(ref, run(s, cut(s, sizes), start_in_reasoning), "random chunking " + std::to_string(r));
    expect_same(ref, run(s, cut(s, token_sizes(s, rng)), start_in_reasoning),
                "token chunking " + std::to_string(r));
  }
  return ref;
}

#define Q "<|\"|>"

TEST(OutputParser, ThinkingThenAnswer) {
  auto o = check_all_chunkings(
      "<|channel>thought\nThe user asks for 2+2.\nThat is 4.\n<channel|>The answer is **4**.<turn|>");
  EXPECT_EQ(o.reasoning, "The user asks for 2+2.\nThat is 4.");
  EXPECT_EQ(o.content, "The answer is **4**.");
  EXPECT_TRUE(o.has_reasoning);
  EXPECT_TRUE(o.calls.empty());
}

TEST(OutputParser, EmptyThoughtThenAnswer) {
  auto o = check_all_chunkings("<|channel>thought\n<channel|>Paris is the capital of France.");
  EXPECT_EQ(o.reasoning, "");
  EXPECT_TRUE(o.has_reasoning);
  EXPECT_EQ(o.content, "Paris is the capital of France.");
}

TEST(OutputParser, AnswerOnlyIsTrimmed) {
  auto o = check_all_chunkings("\n Hello! How can I help you today?\n\n  ");
  EXPECT_EQ(o.content, "Hello! How can I help you today?");
  EXPECT_EQ(o.reasoning, "");
  EXPECT_FALSE(o.has_reasoning);
}

TEST(OutputParser, LeadingTurnHeaderAndTextAfterStopIgnored) {
  auto o = check_all_chunkings(
      "<|turn>model\n<|channel>thought\n<channel|>Hi there.<turn|>\n<|turn>user\nignored");
  EXPECT_EQ(o.content, "Hi there.");
  EXPECT_EQ(o.reasoning, "");
}

TEST(OutputParser, SpecExampleToolCallThenStop) {
  auto o = check_all_chunkings(
      "<|channel>thought\nNeed the weather.<channel|><|tool_call>call:get_weather{city:" Q "Paris" Q
      ",days:3,flag:true,none:None,opts:{a:[1," Q "x" Q "]}}<tool_call|><|tool_response>");
  EXPECT_EQ(o.reasoning, "Need the weather.");
  EXPECT_EQ(o.content, "");
  ASSERT_EQ(o.calls.size(), 1u);
  EXPECT_EQ(o.calls[0].status, Status::Ok) << o.calls[0].error;
  EXPECT_EQ(o.calls[0].name, "get_weather");
  EXPECT_EQ(o.calls[0].arguments,
            json::parse(R"({"city":"Paris","days":3,"flag":true,"none":null,"opts":{"a":[1,"x"]}})"));
  EXPECT_EQ(o.calls[0].raw,
            "call:get_weather{city:" Q "Paris" Q ",days:3,flag:true,none:None,opts:{a:[1," Q "x" Q "]}}");
}

TEST(OutputParser, SeveralCallsWithTextAround) {
  auto o = check_all_chunkings(
      "Let me look that up. <|tool_call>call:search{query:" Q "say \"hi\" {not json}, [x]: y" Q
      ",limit:10,filters:{lang:" Q "日本語" Q ",score:-1.5e3,tags:[],ok:false,x:null}}<tool_call|>"
      "<|tool_call>call:ns.tool-v2{" Q "quoted key" Q ":nil,list:[[1,2],{k:none}],emoji:" Q "😀 é" Q
      ",big:18446744073709551615,zip:007}<tool_call|> Done.");
  EXPECT_EQ(o.content, "Let me look that up.  Done.");
  ASSERT_EQ(o.calls.size(), 2u);
  EXPECT_EQ(o.calls[0].status, Status::Ok) << o.calls[0].error;
  EXPECT_EQ(o.calls[0].name, "search");
  EXPECT_EQ(o.calls[0].arguments, json::parse(R"({"query":"say \"hi\" {not json}, [x]: y","limit":10,
      "filters":{"lang":"日本語","score":-1500.0,"tags":[],"ok":false,"x":null}})"));
  EXPECT_EQ(o.calls[1].status, Status::Ok) << o.calls[1].error;
  EXPECT_EQ(o.calls[1].name, "ns.tool-v2");
  json want = json::parse(R"({"quoted key":null,"list":[[1,2],{"k":null}],"emoji":"😀 é","zip":"007"})");
  want["big"] = uint64_t(18446744073709551615ULL);
  EXPECT_EQ(o.calls[1].arguments, want);
}

TEST(OutputParser, StartInsideOpenChannel) {
  auto o = check_all_chunkings("Considering the options...\n<channel|>Final answer.", true);
  EXPECT_EQ(o.reasoning, "Considering the options...");
  EXPECT_EQ(o.content, "Final answer.");
  EXPECT_TRUE(o.has_reasoning);
  auto o2 = check_all_chunkings("thought\nabc\n<channel|>x", true);
  EXPECT_EQ(o2.reasoning, "abc");
  EXPECT_EQ(o2.content, "x");
}

TEST(OutputParser, MissingChannelClose) {
  auto o = check_all_chunkings("<|channel>thought\nI think and never close  \n");
  EXPECT_EQ(o.reasoning, "I think and never close");
  EXPECT_EQ(o.content, "");
}

TEST(OutputParser, StrayCloseAndTrailingEmptyChannel) {
  auto o = check_all_chunkings("<channel|>Answer text.<channel|>");
  EXPECT_EQ(o.content, "Answer text.");
  EXPECT_FALSE(o.has_reasoning);
  auto o2 = check_all_chunkings("<|channel>thought\n<channel|>A<|channel>thought\n<channel|>");
  EXPECT_EQ(o2.content, "A");
  EXPECT_EQ(o2.reasoning, "");
}

TEST(OutputParser, SwallowedToolResponseAndDeclaration) {
  auto o = check_all_chunkings("<|tool_call>call:get_weather{city:" Q "Paris" Q "}<tool_call|>"
                               "<|tool_response>"
                               "response:get_weather{value:" Q "Sunny <b>" Q "}<tool_response|>It is sunny"
                               "<|tool>declaration:x{}<tool|> in Paris.<turn|>");
  EXPECT_EQ(o.content, "It is sunny in Paris.");
  ASSERT_EQ(o.calls.size(), 1u);
  EXPECT_EQ(o.calls[0].arguments, json::parse(R"({"city":"Paris"})"));
}

TEST(OutputParser, SeveralThoughtBlocksInterleaved) {
  auto o = check_all_chunkings(
      "<|channel>thought\nFirst.<channel|>Part one. <|channel>thought\n Second. \n<channel|>Part two.\n");
  EXPECT_EQ(o.reasoning, "First.\nSecond.");
  EXPECT_EQ(o.content, "Part one. Part two.");
}

TEST(OutputParser, ToolCallEndsReasoning) {
  auto o = check_all_chunkings("<|channel>thought\nI'll call f.<|tool_call>call:f{}<tool_call|>");
  EXPECT_EQ(o.reasoning, "I'll call f.");
  ASSERT_EQ(o.calls.size(), 1u);
  EXPECT_EQ(o.calls[0].status, Status::Ok);
  EXPECT_EQ(o.calls[0].arguments, json::object());
}

TEST(OutputParser, MarkerLookalikesAreText) {
  auto o = check_all_chunkings("Use <b>bold</b>, a < b, <|x|>, <channel ok, <|tool and <turn|");
  EXPECT_EQ(o.content, "Use <b>bold</b>, a < b, <|x|>, <channel ok, <|tool and <turn|");
  auto o2 = check_all_chunkings("<|channel>thoughtful remark<channel|>ok");
  EXPECT_EQ(o2.reasoning, "thoughtful remark");
  auto o3 = check_all_chunkings("<|channel>thought<channel|>x");
  EXPECT_EQ(o3.reasoning, "");
  EXPECT_EQ(o3.content, "x");
  auto o4 = check_all_chunkings("<|channel>thou<channel|>x");
  EXPECT_EQ(o4.reasoning, "thou");
}

TEST(OutputParser, UnterminatedAndMalformedCalls) {
  auto o = check_all_chunkings("Sure.<|tool_call>call:f{a:1");
  EXPECT_EQ(o.content, "Sure.");
  ASSERT_EQ(o.calls.size(), 1u);
  EXPECT_EQ(o.calls[0].status, Status::ParseError);
  EXPECT_EQ(o.calls[0].name, "f");
  EXPECT_EQ(o.calls[0].raw, "call:f{a:1");
  EXPECT_NE(o.calls[0].error.find("unterminated"), std::string::npos);

  auto o2 = check_all_chunkings("<|tool_call>call:{a:1}<tool_call|><|tool_call>call:f{a 1}<tool_call|>"
                                "<|tool_call>junk<tool_call|><|tool_call>call:g{a:1"
                                "<|tool_call>call:h{}<tool_call|>"
                                "<|tool_call>call:k{<turn|>after");
  ASSERT_EQ(o2.calls.size(), 6u);
  EXPECT_EQ(o2.calls[0].status, Status::MissingName);
  EXPECT_EQ(o2.calls[1].status, Status::ParseError);
  EXPECT_EQ(o2.calls[2].status, Status::ParseError);
  EXPECT_EQ(o2.calls[3].status, Status::ParseError);  // cut short by the next <|tool_call>
  EXPECT_EQ(o2.calls[3].name, "g");
  EXPECT_EQ(o2.calls[4].status, Status::Ok);
  EXPECT_EQ(o2.calls[5].status, Status::ParseError);  // cut short by <turn|>
  EXPECT_EQ(o2.content, "");
}

TEST(OutputParser, FeedAfterFinishThrows) {
  OutputParser p;
  std::vector<ParseEvent> ev;
  p.finish(ev);
  EXPECT_THROW(p.feed("x", ev), std::exception);
}

TEST(OutputParser, ParseOutputConvenience) {
  ParseResult r = parse_output("<|channel>thought\nhmm<channel|>Yes.<turn|>");
  EXPECT_EQ(r.reasoning, "hmm");
  EXPECT_EQ(r.content, "Yes.");
  EXPECT_TRUE(r.has_reasoning);
  EXPECT_TRUE(parse_output("abc").tool_calls.empty());
  EXPECT_EQ(parse_output("abc<|channel>", false).reasoning, "");
}

// Random streams over marker and text pieces: chunking never changes the outcome.
TEST(OutputParser, RandomStreamsChunkingInvariant) {
  const std::vector<std::string> pieces = {
      "<|channel>", "<channel|>", "thought\n", "thought", "<|tool_call>", "<tool_call|>", "call:f{a:", Q,
      "x", "}", "<|tool_response>", "<tool_response|>", "<|tool>", "<tool|>", "<turn|>", "<|turn>", "model\n",
      " ", "\n", "<", "<|", "|>", "tool", "hello", "é", "1,", "[", "]"};
  TestRng rng{42};
  for (int i = 0; i < 150 && !HasFailure(); ++i) {
    std::string s;
    const size_t n = 1 + rng.below(24);
    for (size_t k = 0; k < n; ++k) s += pieces[rng.below(pieces.size())];
    check_all_chunkings(s, i % 5 == 0, 6);
  }
}

// --- parse_tool_call ---

TEST(ParseToolCall, ScalarsAndStrings) {
  ToolCall c = parse_tool_call("call:f{ a : 1 , b:-2, c:3.25, d:1e3, e:007, f:1e999, g:hello world ,h:True,"
                               "i:None,j:none,k:nil,l:null,m:false,n:" Q Q ",o:" Q "<|tool_call> {[,]}" Q
                               ",p:99999999999999999999999,q: http://a.b/c?d=1 ,}");
  ASSERT_EQ(c.status, Status::Ok) << c.error;
  EXPECT_TRUE(c.error.empty());
  const json& a = c.arguments;
  EXPECT_EQ(a["a"], 1);
  EXPECT_TRUE(a["a"].is_number_integer());
  EXPECT_EQ(a["b"], -2);
  EXPECT_EQ(a["c"], 3.25);
  EXPECT_TRUE(a["d"].is_number_float());
  EXPECT_EQ(a["d"], 1000.0);
  EXPECT_EQ(a["e"], "007");
  EXPECT_EQ(a["f"], "1e999");
  EXPECT_EQ(a["g"], "hello world");
  EXPECT_EQ(a["h"], "True");
  for (const char* k : {"i", "j", "k", "l"}) EXPECT_TRUE(a[k].is_null()) << k;
  EXPECT_EQ(a["m"], false);
  EXPECT_EQ(a["n"], "");
  EXPECT_EQ(a["o"], "<|tool_call> {[,]}");
  EXPECT_TRUE(a["p"].is_number_float());
  EXPECT_EQ(a["q"], "http://a.b/c?d=1");
  EXPECT_EQ(a.size(), 17u);
}

TEST(ParseToolCall, FormsAccepted) {
  EXPECT_EQ(parse_tool_call("call:get_time").arguments, json::object());
  EXPECT_EQ(parse_tool_call("call:get_time").status, Status::Ok);
  EXPECT_EQ(parse_tool_call("  call:f {}\n").status, Status::Ok);
  ToolCall j = parse_tool_call(R"(call:f{"a": "x", "b": [1, {"c": null}]})");
  ASSERT_EQ(j.status, Status::Ok) << j.error;
  EXPECT_EQ(j.arguments, json::parse(R"({"a":"x","b":[1,{"c":null}]})"));
  ToolCall n = parse_tool_call("call:f{\n  outer: {\n    inner: [ " Q "a" Q " , 2 ],\n  },\n}");
  ASSERT_EQ(n.status, Status::Ok) << n.error;
  EXPECT_EQ(n.arguments, json::parse(R"({"outer":{"inner":["a",2]}})"));
}

TEST(ParseToolCall, MalformedGivesStatus) {
  struct Case {
    const char* body;
    Status status;
  };
  const Case cases[] = {
      {"call:{a:1}", Status::MissingName},
      {"{a:1}", Status::MissingName},
      {"call:", Status::MissingName},
      {"", Status::ParseError},
      {"junk", Status::ParseError},
      {"call:f{a:1", Status::ParseError},
      {"call:f{a 1}", Status::ParseError},
      {"call:f{a}", Status::ParseError},
      {"call:f{:1}", Status::ParseError},
      {"call:f{a:}", Status::ParseError},
      {"call:f{a:1}}", Status::ParseError},
      {"call:f{a:1} x", Status::ParseError},
      {"call:f{a:[1,2}", Status::ParseError},
      {"call:f{a:{b:1]}", Status::ParseError},
      {"call:f{a:" Q "abc}", Status::ParseError},
      {"call:f{" Q "k" Q "1}", Status::ParseError},
      {"call:f{a:x" Q "y" Q "}", Status::ParseError},
      {"call:get weather{}", Status::ParseError},
      {"call:f(a=1)", Status::ParseError},
      {"call:f{a:" Q "\xff" Q "}", Status::InvalidJson},
      {"call:f{\xc3\x28:1}", Status::InvalidJson},
  };
  for (const auto& c : cases) {
    ToolCall t;
    ASSERT_NO_THROW(t = parse_tool_call(c.body)) << c.body;
    EXPECT_EQ(t.status, c.status) << c.body << " -> " << t.error;
    EXPECT_FALSE(t.error.empty()) << c.body;
    EXPECT_EQ(t.arguments, json::object()) << c.body;
    EXPECT_EQ(t.raw, c.body);
  }
  EXPECT_STREQ(to_string(Status::InvalidJson), "invalid_json");
}

TEST(ParseToolCall, DepthIsBounded) {
  auto nested = [](int levels) {  // `levels` objects: call:f{a:{a:...{a:1}...}}
    std::string s = "call:f";
    for (int i = 0; i < levels; ++i) s += "{a:";
    s += "1";
    for (int i = 0; i < levels; ++i) s += "}";
    return s;
  };
  EXPECT_EQ(parse_tool_call(nested(64)).status, Status::Ok);
  ToolCall deep = parse_tool_call(nested(65));
  EXPECT_EQ(deep.status, Status::ParseError);
  EXPECT_NE(deep.error.find("deeper"), std::string::npos);
  std::string huge = "call:f{a:" + std::string(100000, '[');
  EXPECT_EQ(parse_tool_call(huge).status, Status::ParseError);
  std::string huge_json = "call:f{\"a\":" + std::string(100000, '[') + std::string(100000, ']') + "}";
  EXPECT_EQ(parse_tool_call(huge_json).status, Status::ParseError);
}

// A small in-test fuzz: random bodies from DSL fragments and bytes never throw, and an Ok call
// always serialises.
TEST(ParseToolCall, RandomBodiesNeverThrow) {
  const std::vector<std::string> frags = {"call:", "f", "{", "}", "[", "]", ":", ",", Q, "a", "1", "-",
                                          ".", "e",
                                          "true", "None", " ", "\"", "\xff", "\xc3", "<|", "\n", "x.y-z"};
  TestRng rng{7};
  for (int i = 0; i < 20000; ++i) {
    std::string s = rng.below(2) ? "call:f{" : "";
    const size_t n = rng.below(20);
    for (size_t k = 0; k < n; ++k) s += frags[rng.below(frags.size())];
    ToolCall c;
    ASSERT_NO_THROW(c = parse_tool_call(s)) << s;
    ASSERT_TRUE(c.arguments.is_object());
    if (c.status == Status::Ok) {
      EXPECT_NO_THROW((void)c.arguments.dump()) << s;
    } else {
      EXPECT_FALSE(c.error.empty());
    }
  }
}

}  // namespace
}  // namespace mlxq::text
