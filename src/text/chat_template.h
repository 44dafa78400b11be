// Native C++ rendering of the official Gemma-4 "large" chat template (26B-A4B / 31B), revision
// 2026-07-09, byte-identical to Python Jinja2's render of that file (gemma4-text-io.md §3).
#pragma once
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

namespace mlxq::text {

// sha256 of gemma4-large.2026-07-09.jinja, the template file this renderer reproduces. A checkpoint
// whose chat_template.jinja hashes differently may render differently.
inline constexpr const char* kChatTemplateSha256 =
    "df269903ea2e27a6426bf65f34f530a571cc04bf9b92ad8928ffa909eb46ecc5";

// The template's keyword arguments.
struct TemplateOptions {
  bool add_generation_prompt = true;
  // Unset means "not passed"; the template reads it as `enable_thinking | default(false)`.
  std::optional<bool> enable_thinking;
  bool preserve_thinking = false;
  std::string bos_token = "<bos>";
};

// Renders the 2026-07-09 large template for OpenAI-style `messages` (a JSON array) and `tools` (a
// JSON array, or null / empty for none). Throws mlxq::Error with a one-line message wherever the
// official template raises (raise_exception, and Jinja2's UndefinedError/TypeError on malformed
// input), and also when `messages` is not an array or a message is not an object with a string
// `role` (Jinja2 raises for those too, except that it renders "" and {} as empty conversations).
//
// The JSON is nlohmann::ordered_json because Jinja2 iterates dicts in insertion order: key order
// shows in dictsort's case-insensitive ties ("Unit" before or after "unit") and wherever the
// template prints or iterates a dict without sorting. Build it with parse_chat_json for untrusted
// text.
std::string render_chat_template(const nlohmann::ordered_json& messages,
                                 const nlohmann::ordered_json& tools, const TemplateOptions& opt);
// Deleted so that a nlohmann::json (keys already sorted, insertion order lost) cannot slip in
// through nlohmann's implicit conversion, which also recurses once per nesting level.
std::string render_chat_template(const nlohmann::json& messages, const nlohmann::json& tools,
                                 const TemplateOptions& opt) = delete;

// A JSON value in Gemma's tool DSL, exactly as the template formats tool-call arguments
// (format_argument with escape_keys=False): strings as <|"|>…<|"|>, bare keys in dictsort order
// (case-insensitive, ties in insertion order), numbers as Python's str() prints them (42, 2.5, 3.0,
// 1e-07), true/false, and null. A tool call renders as `call:NAME` + to_tool_dsl(arguments), except
// that `arguments: null` renders as {}.
std::string to_tool_dsl(const nlohmann::ordered_json& value);
std::string to_tool_dsl(const nlohmann::json& value) = delete;  // as above

// Parses JSON text for the two functions above, throwing mlxq::Error when it is malformed or nested
// deeper than the renderer walks. Prefer it to ordered_json::parse for untrusted input: nlohmann's
// ordered_json parser deep-copies earlier members when an object grows, recursively, so a deeply
// nested value followed by another key ({"a":[[[…]]],"b":1}) overflows the stack there.
nlohmann::ordered_json parse_chat_json(std::string_view text);

}  // namespace mlxq::text
