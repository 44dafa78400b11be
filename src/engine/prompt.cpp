// Building prompt tokens: sentinels stand in for user-controlled text while the template renders,
// so the skeleton and the content can be tokenized with different special-token settings.
#include "engine/prompt.h"

#include "core/error.h"
#include "text/gemma4_tokens.h"
#include "text/tool_dsl.h"

namespace mlxq::engine {

using nlohmann::ordered_json;

namespace {

// A marker no text contains: private-use code points around an index.
std::string sentinel(size_t i) { return "\xEE\x80\x80" "mlxq" + std::to_string(i) + "\xEE\x80\x81"; }

struct Substituted {
  std::vector<std::string> contents;  // what each sentinel stands for (already trimmed if the
                                      // template trims it)
};

void substitute(ordered_json& s, bool trim, Substituted& sub) {
  if (!s.is_string()) return;
  const std::string v = s.get<std::string>();
  sub.contents.push_back(trim ? text::py::strip(v) : v);
  s = sentinel(sub.contents.size() - 1);
}

// Splits `rendered` at the sentinels and tokenizes each piece with the right setting.
std::vector<int32_t> tokenize_pieces(const text::Tokenizer& tok, const std::string& rendered,
                                     const Substituted& sub) {
  std::vector<int32_t> out;
  size_t pos = 0;
  const std::string open = "\xEE\x80\x80" "mlxq", close = "\xEE\x80\x81";
  while (pos < rendered.size()) {
    const size_t at = rendered.find(open, pos);
    if (at == std::string::npos) break;
    const size_t end = rendered.find(close, at);
    check(end != std::string::npos, "internal: unterminated prompt sentinel");
    const size_t idx = std::stoul(rendered.substr(at + open.size(), end - at - open.size()));
    check(idx < sub.contents.size(), "internal: unknown prompt sentinel");
    tok.encode(std::string_view(rendered).substr(pos, at - pos), true, out);
    tok.encode(sub.contents[idx], false, out);
    pos = end + close.size();
  }
  tok.encode(std::string_view(rendered).substr(pos), true, out);
  return out;
}

}  // namespace

std::vector<int32_t> render_prompt_tokens(const text::Tokenizer& tok, ordered_json messages,
                                          const ordered_json& tools, const text::TemplateOptions& opt) {
  Substituted sub;
  if (messages.is_array()) {
    for (auto& m : messages) {
      if (!m.is_object() || !m.contains("role") || !m["role"].is_string()) continue;
      const std::string role = m["role"];
      const bool tool = role == "tool";  // a tool's result: as tool_result_delta writes it, untrimmed
      if (role != "user" && role != "system" && role != "developer" && !tool) continue;
      if (!m.contains("content")) continue;
      ordered_json& c = m["content"];
      if (c.is_string()) {
        substitute(c, !tool, sub);
      } else if (c.is_array()) {
        for (auto& part : c)
          if (part.is_object() && part.contains("text")) substitute(part["text"], !tool, sub);
      }
    }
  }
  return tokenize_pieces(tok, text::render_chat_template(messages, tools, opt), sub);
}

Conversation parse_conversation(const std::string& messages_json, const std::string& tools_json) {
  Conversation c;
  try {
    c.messages = text::parse_chat_json(messages_json);
  } catch (const std::exception& e) {
    throw Error(std::string("messages: ") + e.what());
  }
  check(c.messages.is_array() && !c.messages.empty(), "messages: not a non-empty JSON array");
  if (!tools_json.empty()) {
    try {
      c.tools = text::parse_chat_json(tools_json);
    } catch (const std::exception& e) {
      throw Error(std::string("tools: ") + e.what());
    }
    check(c.tools.is_null() || c.tools.is_array(), "tools: not a JSON array");
  }
  return c;
}

std::vector<int32_t> render_conversation(const text::Tokenizer& tok, const std::string& messages_json,
                                         const std::string& tools_json, bool thinking) {
  Conversation c = parse_conversation(messages_json, tools_json);
  text::TemplateOptions opt;
  opt.add_generation_prompt = true;
  opt.enable_thinking = thinking;
  return render_prompt_tokens(tok, std::move(c.messages), c.tools, opt);
}

std::vector<int32_t> user_turn_delta(const text::Tokenizer& tok, const std::string& text, bool thinking,
                                     size_t images) {
  std::vector<int32_t> out;
  namespace g4 = text::gemma4;
  tok.encode(std::string(g4::kCloseTurn) + std::string(g4::kUserTurn), true, out);
  for (size_t i = 0; i < images; ++i) tok.encode("<|image|>", true, out);
  tok.encode(text::py::strip(text), false, out);
  tok.encode(std::string(g4::kCloseTurn) + std::string(g4::kModelTurn) + std::string(thinking ? "" : g4::kEmptyThought),
             true, out);
  return out;
}

std::vector<int32_t> tool_result_delta(const text::Tokenizer& tok, const std::string& name,
                                       const std::string& call_id, const std::string& content, bool thinking) {
  // Render a minimal conversation ending in this tool result and keep what follows the call:
  // the template decides the response block's form and what comes after it.
  Substituted sub;
  ordered_json msgs = ordered_json::array();
  msgs.push_back({{"role", "user"}, {"content", "x"}});
  ordered_json call = {{"id", call_id}, {"type", "function"},
                       {"function", {{"name", name}, {"arguments", ordered_json::object()}}}};
  msgs.push_back({{"role", "assistant"}, {"content", ""}, {"tool_calls", ordered_json::array({call})}});
  ordered_json tool_msg = {{"role", "tool"}, {"tool_call_id", call_id}, {"content", content}};
  substitute(tool_msg["content"], false, sub);
  msgs.push_back(tool_msg);
  text::TemplateOptions opt;
  opt.add_generation_prompt = true;
  opt.enable_thinking = thinking;
  const std::string rendered = text::render_chat_template(msgs, nullptr, opt);
  const std::string marker(text::gemma4::kToolCallEnd);
  const size_t at = rendered.find(marker);
  check(at != std::string::npos, "internal: the template did not render the tool call");
  return tokenize_pieces(tok, rendered.substr(at + marker.size()), sub);
}

}  // namespace mlxq::engine
