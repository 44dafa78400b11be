// The native chat template against Python Jinja2's renders of the official 2026-07-09 large
// template (tests/data/chat-template), the tool DSL, and malformed or hostile inputs.
#include "text/chat_template.h"

#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/sha256.h"
#include "test_util.h"

namespace mlxq::text {
namespace {

using Json = nlohmann::ordered_json;

std::vector<Json> load_cases() {
  std::ifstream in(test::data_path("chat-template/cases.jsonl"));
  std::vector<Json> cases;
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) cases.push_back(Json::parse(line));
  return cases;
}

// The template's kwargs as the README's render script passes them: add_generation_prompt defaults
// to false there, and enable_thinking is passed only when the case has it.
TemplateOptions options_from(const Json& kwargs) {
  TemplateOptions opt;
  opt.add_generation_prompt = kwargs.value("add_generation_prompt", false);
  if (kwargs.contains("enable_thinking"))
    opt.enable_thinking = kwargs["enable_thinking"].get<bool>();
  opt.preserve_thinking = kwargs.value("preserve_thinking", false);
  return opt;
}

// cases.jsonl was written after rendering by a serializer that keeps numbers as doubles: in
// tool_args_all_types the rendered 12345678901234567890 is stored as 12345678901234567000 and the
// float 3.0 as 3 (an int). `rendered_text` shows the values Python rendered; put them back.
void restore_lossy_numbers(Json& c) {
  if (c["name"] != "tool_args_all_types") return;
  Json& args = c["messages"][1]["tool_calls"][0]["function"]["arguments"];
  args["big"] = uint64_t{12345678901234567890u};
  args["whole_float"] = 3.0;
}

// Renders as the expectations below were made: no generation prompt, thinking not passed.
std::string render(const Json& messages, const Json& tools = nullptr) {
  TemplateOptions opt;
  opt.add_generation_prompt = false;
  return render_chat_template(messages, tools, opt);
}

// Renders, or swallows an mlxq::Error; any other exception (or a crash) fails the test.
void render_or_error(const std::string& messages, const std::string& tools = "null") {
  try {
    (void)render(parse_chat_json(messages), parse_chat_json(tools));
  } catch (const Error&) {
  }
}

TEST(ChatTemplate, ImplementsTheCopiedTemplateFile) {
  EXPECT_EQ(
      sha256_hex(test::read_file(test::data_path("chat-template/gemma4-large.2026-07-09.jinja"))),
      kChatTemplateSha256);
}

TEST(ChatTemplate, GoldenCasesByteForByte) {
  const std::vector<Json> cases = load_cases();
  ASSERT_EQ(cases.size(), 34u);
  int passed = 0;
  for (Json c : cases) {
    SCOPED_TRACE(c["name"].get<std::string>());
    restore_lossy_numbers(c);
    const TemplateOptions opt = options_from(c["kwargs"]);
    if (c["rendered_text"].is_null()) {
      bool threw = false;
      try {
        render_chat_template(c["messages"], c["tools"], opt);
      } catch (const Error&) {
        threw = true;
      }
      EXPECT_TRUE(threw) << "the template raised: " << c["error"];
      passed += threw;
    } else {
      const std::string want = c["rendered_text"].get<std::string>();
      const std::string got = render_chat_template(c["messages"], c["tools"], opt);
      EXPECT_EQ(got, want);
      passed += got == want;
    }
  }
  EXPECT_EQ(passed, 34);
}

TEST(ChatTemplate, StoredLossyNumbersRenderAsPythonWould) {
  // Rendering the stored (lossy) input gives what Jinja2 gives for it: str() of an int.
  for (const Json& c : load_cases()) {
    if (c["name"] != "tool_args_all_types") continue;
    const std::string got =
        render_chat_template(c["messages"], c["tools"], options_from(c["kwargs"]));
    if (c["messages"][1]["tool_calls"][0]["function"]["arguments"]["big"] ==
        12345678901234567000u) {
      EXPECT_NE(got.find("big:12345678901234567000,"), std::string::npos);
      EXPECT_NE(got.find(",whole_float:3}"), std::string::npos);
    }
  }
}

TEST(ChatTemplate, ErrorsAreOneLineAndNameTheField) {
  try {
    render(Json::parse(R"([{"role":"user","content":"x"},{"role":"assistant","tool_calls":
        [{"function":{"name":"f","arguments":"{\"a\":1}"}}]}])"));
    FAIL() << "no error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("messages[1].tool_calls[0].function.arguments must be a JSON object"),
              std::string::npos)
        << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos);
  }
}

TEST(ChatTemplate, OptionsDefaultsAndBos) {
  const Json messages = Json::parse(R"([{"role":"user","content":"Hi"}])");
  EXPECT_EQ(render_chat_template(messages, nullptr, {}),
            "<bos><|turn>user\nHi<turn|>\n<|turn>model\n<|channel>thought\n<channel|>");
  TemplateOptions opt;
  opt.bos_token = "";
  opt.enable_thinking = true;
  EXPECT_EQ(render_chat_template(messages, Json::array(), opt),
            "<|turn>system\n<|think|>\n<turn|>\n<|turn>user\nHi<turn|>\n<|turn>model\n");
}

// nlohmann::json (sorted keys) is refused at compile time; ordered_json and nullptr are taken.
template <class J>
concept Renderable = requires(const J& j) {
  render_chat_template(j, nullptr, TemplateOptions{});
};
static_assert(Renderable<nlohmann::ordered_json>);
static_assert(!Renderable<nlohmann::json>);

TEST(ToolDsl, ArgumentsOfEveryType) {
  const Json args = Json::parse(R"({"s":"x \"q\"\n","i":42,"neg":-7,"f":2.5,"w":3.0,"small":1e-7,
      "big":12345678901234567890,"t":true,"n":null,"l":[1,"two",[],false],"o":{"b":1,"A":{}}})");
  EXPECT_EQ(to_tool_dsl(args),
            "{big:12345678901234567890,f:2.5,i:42,l:[1,<|\"|>two<|\"|>,[],false],n:null,neg:-7,"
            "o:{A:{},b:1},s:<|\"|>x \"q\"\n<|\"|>,small:1e-07,t:true,w:3.0}");
}

TEST(ToolDsl, NumbersAsPythonPrintsThem) {
  const std::pair<const char*, const char*> cases[] = {
      {"0", "0"},
      {"-0", "0"},
      {"-0.0", "-0.0"},
      {"0.0", "0.0"},
      {"1e16", "1e+16"},
      {"1e15", "1000000000000000.0"},
      {"0.0001", "0.0001"},
      {"0.00001", "1e-05"},
      {"0.1", "0.1"},
      {"123456789.123", "123456789.123"},
      {"1e300", "1e+300"},
      {"5e-324", "5e-324"},
      {"1.5E-7", "1.5e-07"},
      {"18446744073709551615", "18446744073709551615"},
      {"-9223372036854775808", "-9223372036854775808"},
      {"2.5e-5", "2.5e-05"}};
  for (const auto& [json, python] : cases)
    EXPECT_EQ(to_tool_dsl(Json::parse(json)), python) << json;
  EXPECT_EQ(to_tool_dsl(Json()), "null");
  EXPECT_EQ(to_tool_dsl(Json("a")), "<|\"|>a<|\"|>");
  EXPECT_EQ(to_tool_dsl(Json::array()), "[]");
}

TEST(ToolDsl, KeysSortCaseInsensitivelyWithTiesInInsertionOrder) {
  EXPECT_EQ(to_tool_dsl(Json::parse(R"({"b":1,"B":2,"a":3,"_x":4,"Y":5})")),
            "{_x:4,a:3,b:1,B:2,Y:5}");
  EXPECT_EQ(to_tool_dsl(Json::parse(R"({"B":2,"b":1})")), "{B:2,b:1}");
}

// Inputs off the happy path that Jinja2 renders: the expected strings are Python Jinja2 3.1.6's
// renders of the template file with the same arguments.
TEST(ChatTemplate, OddInputsRenderAsJinja2Does) {
  EXPECT_EQ(render(Json::parse(R"([{"role":"user","content":5}])")), "<bos><|turn>user\n<turn|>\n");
  EXPECT_EQ(
      render(Json::parse(R"([{"role":"user","content":"x"},
                {"role":"assistant","tool_calls":[{"function":{"name":"f","arguments":null}}]}])")),
      "<bos><|turn>user\nx<turn|>\n<|turn>model\n<|tool_call>call:f{}<tool_call|><|tool_response>");
  EXPECT_EQ(render(Json::parse(R"([{"role":"assistant","tool_responses":"ab"}])")),
            "<bos><|turn>model\n<|tool_response>response:unknown{value:[]}<tool_response|>"
            "<|tool_response>response:unknown{value:[]}<tool_response|>");
  EXPECT_EQ(render(Json::parse(R"([{"role":"user","content":"x"}])"),
                   Json::parse(
                       R"([{"type":"function","function":{"name":"f","parameters":{"type":"object",
                       "properties":{"x":{"type":["string","null"],"description":{"k":"it's","n":[1.5,null,true]}}}}}}])")),
            "<bos><|turn>system\n<|tool>declaration:f{description:<|\"|><|\"|>,parameters:{"
            "properties:{x:{"
            "description:<|\"|>{'k': \"it's\", 'n': [1.5, None, True]}<|\"|>,type:<|\"|>['STRING', "
            "'NULL']<|\"|>}},"
            "type:<|\"|>OBJECT<|\"|>}}<tool|><turn|>\n<|turn>user\nx<turn|>\n");
  EXPECT_EQ(
      render(Json::parse(
          R"([{"role":"user","content":[{"type":"text","text":5},{"type":"text"},{"type":"image"}]}])")),
      "<bos><|turn>user\n5<|image|><turn|>\n");
  EXPECT_EQ(render(Json::parse(R"([{"role":"system","content":["a","b"]}])")),
            "<bos><|turn>system\n  <turn|>\n");
  // Without a parameters.type the template leaves `parameters:{` open.
  EXPECT_EQ(
      render(Json::parse(R"([{"role":"user","content":"x"}])"),
             Json::parse(R"([{"type":"function","function":{"name":"f","parameters":{
                       "properties":{"a":{"type":"integer"}},"required":["a"]}}}])")),
      "<bos><|turn>system\n<|tool>declaration:f{description:<|\"|><|\"|>,parameters:{properties:{a:"
      "{type:"
      "<|\"|>INTEGER<|\"|>}},required:[<|\"|>a<|\"|>],}<tool|><turn|>\n<|turn>user\nx<turn|>\n");
  // A missing id equals a missing tool_call_id (None == None), so the call names both results.
  EXPECT_EQ(
      render(Json::parse(R"([{"role":"user","content":"x"},
                {"role":"assistant","tool_calls":[{"function":{"name":"f","arguments":{}}}]},
                {"role":"tool","content":"r"},{"role":"tool","content":null}])")),
      "<bos><|turn>user\nx<turn|>\n<|turn>model\n<|tool_call>call:f{}<tool_call|><|tool_response>"
      "response:f{value:<|\"|>r<|\"|>}<tool_response|><|tool_response>response:f{value:null}<tool_"
      "response|>");
  // A tool message that does not follow a tool call is dropped, whatever its content.
  EXPECT_EQ(render(Json::parse(
                R"([{"role":"user","content":"x"},{"role":"tool","content":{"not":"rendered"}}])")),
            "<bos><|turn>user\nx<turn|>\n");
}

// Shapes the template rejects (Jinja2 raises UndefinedError or TypeError on each).
TEST(ChatTemplate, MalformedInputsThrow) {
  const char* bad_messages[] = {
      R"({"role":"user","content":"x"})",
      R"("hi")",
      "5",
      "null",
      "[5]",
      R"([{"content":"x"}])",
      R"([{"role":7,"content":"x"}])",
      R"([{"role":"assistant","tool_calls":{"a":1}}])",
      R"([{"role":"assistant","tool_calls":"abc"}])",
      R"([{"role":"assistant","tool_calls":5}])",
      R"([{"role":"assistant","tool_calls":["f"]}])",
      R"([{"role":"assistant","tool_calls":[{"id":"a"}]}])",
      R"([{"role":"assistant","tool_calls":[{"function":{"arguments":{}}}]}])",
      R"([{"role":"assistant","tool_calls":[{"function":{"name":3,"arguments":{}}}]}])",
      R"([{"role":"assistant","tool_calls":[{"function":{"name":"f","arguments":[1]}}]}])",
      R"([{"role":"assistant","tool_calls":[{"function":{"name":"f","arguments":7}}]}])",
      R"([{"role":"assistant","tool_calls":[{"function":{"name":"f"}}]}])",
      R"([{"role":"user","content":["text"]}])",
      R"([{"role":"assistant","content":[{"type":"text"}]}])",
      R"([{"role":"assistant","content":[{"type":"text","text":1}]}])",
      R"([{"role":"user","content":{"type":"text"}}])",
      R"([{"role":"assistant","tool_calls":[{"function":{"name":"f","arguments":{}}}]},
          {"role":"tool","content":[{"type":"text"}]}])",
      R"([{"role":"assistant","tool_calls":[{"function":{"name":"f","arguments":{}}}]},
          {"role":"tool","tool_call_id":"b","name":5,"content":"x"}])",
      R"([{"role":"assistant","reasoning":["x"],"content":"y"}])",
      R"([{"role":"assistant","tool_responses":5}])",
      R"([{"role":"assistant","tool_responses":[{"name":4,"response":1}]}])"};
  for (const char* m : bad_messages) EXPECT_THROW(render(Json::parse(m)), Error) << m;
  const Json user = Json::parse(R"([{"role":"user","content":"x"}])");
  const char* bad_tools[] = {
      R"({"function":{"name":"f"}})",
      R"("f")",
      "5",
      "[5]",
      R"([{"type":"function"}])",
      R"([{"function":{"name":"f","parameters":{"properties":[1]}}}])",
      R"([{"function":{"name":"f","parameters":{"type":"object","properties":{"a":{"type":"array","items":{"type":7}}}}}}])",
      R"([{"function":{"name":"f","parameters":{"type":"object","properties":{"a":{"type":"object","required":9}}}}}])",
      R"([{"function":5}])",
      R"([{"function":"response"}])"};
  for (const char* t : bad_tools) EXPECT_THROW(render(user, Json::parse(t)), Error) << t;
}

TEST(ChatTemplate, DeepNestingThrowsWithoutExhaustingTheStack) {
  auto nested = [](int depth) { return std::string(depth, '[') + "1" + std::string(depth, ']'); };
  const std::string call_prefix =
      R"([{"role":"user","content":"x"},{"role":"assistant","tool_calls":[{"function":{"name":"f","arguments":{"a":)";
  const std::string call_suffix = "}}}]}]";
  EXPECT_NO_THROW(render(parse_chat_json(call_prefix + nested(100) + call_suffix)));
  // parse_chat_json stops hostile depth before nlohmann's ordered_map copies recurse on it.
  EXPECT_THROW(parse_chat_json(call_prefix + nested(100000) + call_suffix), Error);
  EXPECT_THROW(parse_chat_json(R"({"a":)" + nested(100000) + R"(,"b":1})"), Error);
  EXPECT_THROW(parse_chat_json(R"([{"role":"user","content":"x"})"), Error);
  // Values deeper than the renderer walks, built without the parse limit: arguments, str() of a
  // description, a schema, and ids compared for equality (Jinja2 hits RecursionError on each).
  EXPECT_THROW(render(Json::parse(call_prefix + nested(2000) + call_suffix)), Error);
  EXPECT_THROW(to_tool_dsl(Json::parse(nested(2000))), Error);
  const Json user = Json::parse(R"([{"role":"user","content":"x"}])");
  EXPECT_THROW(
      render(user,
             Json::parse(R"([{"function":{"name":"f","parameters":{"type":"object","properties":)"
                         R"({"a":{"description":)" +
                         nested(2000) + "}}}}}]")),
      Error);
  std::string schema = R"({"type":"string"})";
  for (int i = 0; i < 2000; ++i) schema = R"({"type":"object","properties":{"x":)" + schema + "}}";
  EXPECT_THROW(
      render(user,
             Json::parse(
                 R"([{"function":{"name":"f","parameters":{"type":"object","properties":{"a":)" +
                 schema + "}}}}]")),
      Error);
  EXPECT_THROW(render(Json::parse(
                   R"([{"role":"assistant","tool_calls":[{"id":)" + nested(2000) +
                   R"(,"function":{"name":"f","arguments":{}}}]},{"role":"tool","tool_call_id":)" +
                   nested(2000) + "}]")),
               Error);
}

// Wrong types in every slot: each renders or throws mlxq::Error, never anything else.
TEST(ChatTemplate, HostileInputsNeverCrash) {
  const char* values[] = {"null",
                          "true",
                          "0",
                          "-1.5",
                          R"("")",
                          R"("x")",
                          "[]",
                          "{}",
                          "[null]",
                          R"([{"a":1}])",
                          R"({"type":"text","text":1})",
                          R"([{"type":"text"}])",
                          R"({"name":[]})"};
  const char* message_keys[] = {"content",   "tool_calls",        "tool_responses",
                                "reasoning", "reasoning_content", "tool_call_id",
                                "name"};
  const char* roles[] = {"user", "assistant", "system", "tool", "model", ""};
  for (const char* v : values) {
    for (const char* key : message_keys) {
      for (const char* role : roles) {
        const std::string m = std::string(R"({"role":")") + role + R"(",")" + key + "\":" + v + "}";
        const std::string call =
            R"({"role":"assistant","tool_calls":[{"id":"a","function":{"name":"f","arguments":{}}}]})";
        render_or_error("[" + m + "]");
        render_or_error("[" + call + "," + m + "]");
        render_or_error("[" + m + "," + m + R"(,{"role":"user","content":"u"},)" + m + "]");
      }
    }
    const std::string fields[] = {"function", "name",       "parameters", "description",
                                  "response", "properties", "type",       "items",
                                  "enum",     "required",   "nullable"};
    for (const std::string& f : fields) {
      render_or_error(R"([])", std::string(R"([{"function":{"name":"f","description":"d",")") + f +
                                   "\":" + v + "}}]");
      render_or_error(
          R"([])",
          std::string(
              R"([{"function":{"name":"f","parameters":{"type":"object","properties":{"p":{")") +
              f + "\":" + v + R"(,"type":"array"}}}}}])");
      render_or_error(
          R"([])",
          std::string(
              R"([{"function":{"name":"f","parameters":{"type":"object","properties":{"p":{")") +
              f + "\":" + v + R"(,"type":"object"}}}}}])");
      render_or_error(
          R"([])",
          std::string(
              R"([{"function":{"name":"f","parameters":{"type":"object","properties":{"p":{"type":"array","items":{")") +
              f + "\":" + v + "}}}}}}]");
    }
  }
}

}  // namespace
}  // namespace mlxq::text
