// Conversation -> session token stream (see transcript.h). Reuses the session's own prompt code so
// the two cannot drift apart.
#include "engine/transcript.h"

#include <algorithm>

#include "core/error.h"
#include "engine/prompt.h"
#include "text/chat_template.h"
#include "text/gemma4_tokens.h"

namespace mlxq::engine {

using nlohmann::ordered_json;

namespace {

std::string str_field(const ordered_json& m, const char* key, const std::string& where) {
  if (!m.contains(key) || m[key].is_null()) return "";
  check(m[key].is_string(), where + "." + key + ": not a string");
  return m[key].get<std::string>();
}

// `<|tool_call>...<tool_call|>` (and the thought channel before it) exactly as the chat template
// writes an assistant tool-call message into history.
std::string tool_call_text(const ordered_json& message, bool thinking) {
  ordered_json msgs = ordered_json::array();
  msgs.push_back({{"role", "user"}, {"content", "x"}});
  ordered_json m = message;
  if (!thinking) m.erase("reasoning");
  msgs.push_back(m);
  text::TemplateOptions opt;
  opt.add_generation_prompt = false;
  opt.enable_thinking = thinking;
  const std::string rendered = text::render_chat_template(msgs, nullptr, opt);
  const std::string open(text::gemma4::kModelTurn), close(text::gemma4::kToolCallEnd);
  const size_t at = rendered.rfind(open), end = rendered.rfind(close);
  check(at != std::string::npos && end != std::string::npos && end > at,
        "internal: the template did not render the tool call");
  return rendered.substr(at + open.size(), end + close.size() - at - open.size());
}

}  // namespace

std::string assistant_output_text(const ordered_json& message, bool thinking, bool channel_open) {
  const bool calls = message.contains("tool_calls") && message["tool_calls"].is_array() &&
                     !message["tool_calls"].empty();
  if (calls) return tool_call_text(message, thinking);
  std::string out;
  const std::string reasoning = str_field(message, "reasoning", "assistant message");
  if (channel_open) {
    out += reasoning + "\n" + std::string(text::gemma4::kThoughtClose);  // the prompt opened the channel: close it
  } else if (thinking && !reasoning.empty()) {
    out += std::string(text::gemma4::kThoughtOpen) + reasoning + "\n" + std::string(text::gemma4::kThoughtClose);
  }
  out += str_field(message, "content", "assistant message");
  return out;
}

Transcript render_transcript(const text::Tokenizer& tok, const ordered_json& conv) {
  check(conv.is_object(), "conversation: not a JSON object");
  check(conv.contains("messages") && conv["messages"].is_array() && !conv["messages"].empty(),
        "conversation.messages: missing or not a non-empty array");
  const bool thinking = conv.value("thinking", false);
  const ordered_json tools = conv.contains("tools") ? conv["tools"] : ordered_json(nullptr);
  const ordered_json& msgs = conv["messages"];
  check(msgs[0].value("role", "") == "user", "conversation.messages[0]: the first message must be a user message");

  Transcript t;
  auto append = [&](const std::vector<int32_t>& ids, uint8_t gen) {
    t.tokens.insert(t.tokens.end(), ids.begin(), ids.end());
    t.generated.insert(t.generated.end(), ids.size(), gen);
  };
  int32_t pending_stop = -1;  // the stop token the last assistant message ended on
  bool channel_open = false;  // the last delta ended inside an opened thought channel
  const std::vector<int32_t> open_channel = tok.encode(text::gemma4::kThoughtOpen, true);
  std::string last_call_name, last_call_id;
  for (size_t i = 0; i < msgs.size(); ++i) {
    const ordered_json& m = msgs[i];
    const std::string where = "conversation.messages[" + std::to_string(i) + "]";
    check(m.is_object() && m.contains("role") && m["role"].is_string(), where + ".role: missing");
    const std::string role = m["role"];
    std::vector<int32_t> ids;
    if (role == "user") {
      const std::string content = str_field(m, "content", where);
      if (i == 0) {
        ordered_json first = ordered_json::array();
        const std::string system = conv.contains("system") && conv["system"].is_string() ? conv["system"].get<std::string>() : "";
        if (!system.empty()) first.push_back({{"role", "system"}, {"content", system}});
        first.push_back({{"role", "user"}, {"content", content}});
        text::TemplateOptions opt;
        opt.add_generation_prompt = true;
        opt.enable_thinking = thinking;
        append(render_prompt_tokens(tok, first, tools, opt), 0);
        continue;
      }
      check(pending_stop == text::gemma4::kTurnClose, where + ": a user message must follow a finished answer");
      ids = user_turn_delta(tok, content, thinking);
    } else if (role == "tool") {
      check(pending_stop == text::gemma4::kToolResponseOpen, where + ": a tool result must follow a tool call");
      ids = tool_result_delta(tok, last_call_name, last_call_id, str_field(m, "content", where), thinking);
    } else if (role == "assistant") {
      check(pending_stop == -1, where + ": an assistant message must follow a user message or a tool result");
      const std::string text = assistant_output_text(m, thinking, channel_open);
      const int64_t begin = int64_t(t.tokens.size());
      append(tok.encode(text, true), 1);
      t.answers.push_back({begin, int64_t(t.tokens.size()) + 1});
      const bool calls = m.contains("tool_calls") && m["tool_calls"].is_array() && !m["tool_calls"].empty();
      if (calls) {
        const ordered_json& c = m["tool_calls"].back();
        last_call_id = c.value("id", "");
        check(c.contains("function") && c["function"].contains("name"), where + ".tool_calls: no function name");
        last_call_name = c["function"]["name"].get<std::string>();
      }
      pending_stop = calls ? text::gemma4::kToolResponseOpen : text::gemma4::kTurnClose;
      continue;
    } else {
      throw Error(where + ".role: '" + role + "' (expected user, assistant or tool)");
    }
    // The delta starts with the stop token the model sampled; that token is the model's.
    check(!ids.empty() && ids[0] == pending_stop, "internal: " + where + ": delta does not start with the stop token");
    append(ids, 0);
    t.generated[t.tokens.size() - ids.size()] = 1;
    channel_open = ids.size() > open_channel.size() &&
                   std::equal(open_channel.begin(), open_channel.end(), ids.end() - int64_t(open_channel.size()));
    pending_stop = -1;
  }
  if (pending_stop != -1) {  // the conversation ends with an answer: its stop token closes it
    t.tokens.push_back(pending_stop);
    t.generated.push_back(1);
  }
  return t;
}

}  // namespace mlxq::engine
