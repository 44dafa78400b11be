// Anthropic Messages: a request (system, content blocks, tool_use / tool_result, thinking) into a
// GenRequest in the chat shape, a finished turn into a message object, and a streamed turn into
// Anthropic's SSE events.
#include "server/api_messages.h"

#include <algorithm>
#include <climits>

#include "server/api_internal.h"

namespace mlxq::server {

using detail::at;
using detail::require;
using detail::require_string;

namespace {

struct ParseOptions {
  bool require_max_tokens = true;  // /v1/messages requires it; count_tokens takes none
};

// A tool_result's content: a string or text blocks; is_error results say so to the model.
std::string tool_result_text(const Json& block, const std::string& p) {
  std::string text = text_content(block.contains("content") ? block["content"] : Json(), p + ".content");
  if (opt_bool(block, "is_error", p + ".is_error").value_or(false)) text = "Error: " + text;
  return text;
}

// One Anthropic message into chat-shape messages: a user message's tool_result blocks become tool
// messages (first, as they answer the previous assistant turn), its text one user message; an
// assistant message's text and tool_use blocks one assistant message. Past thinking is dropped.
void parse_message(const Json& m, const std::string& p, Json& out) {
  detail::expect_object(m, p);
  const std::string role = require_string(m, "role", p + ".role");
  if (role != "user" && role != "assistant")
    throw HttpError(400, "Invalid value for '" + p + ".role': '" + role + "' (expected user or assistant)",
                    p + ".role");
  const Json& content = require(m, "content", p + ".content");
  if (content.is_string()) {
    out.push_back({{"role", role}, {"content", content.get<std::string>()}});
    return;
  }
  detail::expect_array(content, p + ".content");
  std::string text;
  bool has_text = false, has_image = false;
  Json parts = Json::array();  // a user message's text and images in order, when it has images
  Json calls = Json::array();
  Json results = Json::array();
  for (size_t j = 0; j < content.size(); ++j) {
    const std::string bp = at(p + ".content", j);
    const Json& b = content[j];
    detail::expect_object(b, bp);
    const std::string type = require_string(b, "type", bp + ".type");
    if (type == "text") {
      if (has_text) text += '\n';
      const std::string t = require_string(b, "text", bp + ".text");
      text += t;
      parts.push_back({{"type", "text"}, {"text", t}});
      has_text = true;
    } else if (type == "image" && role == "user") {
      parts.push_back({{"type", "image_url"}, {"image_url", {{"url", image_of(b, type, bp)}}}});
      has_image = true;
    } else if (type == "thinking" || type == "redacted_thinking") {
      continue;  // the template drops past thoughts
    } else if (type == "tool_use" && role == "assistant") {
      const std::string id = require_string(b, "id", bp + ".id");
      const std::string name = require_string(b, "name", bp + ".name");
      const Json& input = b.contains("input") ? b["input"] : Json();
      if (!input.is_null()) detail::expect_object(input, bp + ".input");
      calls.push_back(detail::chat_tool_call(id, name, input.is_null() ? Json::object() : input));
    } else if (type == "tool_result" && role == "user") {
      Json msg;
      msg["role"] = "tool";
      msg["tool_call_id"] = require_string(b, "tool_use_id", bp + ".tool_use_id");
      msg["content"] = tool_result_text(b, bp);
      results.push_back(std::move(msg));
    } else {
      throw HttpError(400, "Unsupported content block type '" + type + "' in a " + role + " message",
                      bp + ".type");
    }
  }
  for (auto& r : results) out.push_back(std::move(r));
  if (role == "assistant") {
    Json msg = {{"role", "assistant"}, {"content", text}};
    if (!calls.empty()) msg["tool_calls"] = std::move(calls);
    if (has_text || msg.contains("tool_calls")) out.push_back(std::move(msg));
  } else if (has_image) {
    out.push_back({{"role", "user"}, {"content", std::move(parts)}});
  } else if (has_text || results.empty()) {
    out.push_back({{"role", "user"}, {"content", text}});
  }
}

Json parse_tools(const Json& body, const Limits& limits) {
  if (!body.contains("tools") || body["tools"].is_null()) return Json();
  const Json& tools = body["tools"];
  detail::expect_array(tools, "tools");
  detail::check_count(tools.size(), size_t(limits.max_tools), "tools");
  Json out = Json::array();
  for (size_t i = 0; i < tools.size(); ++i) {
    const std::string p = at("tools", i);
    detail::expect_object(tools[i], p);
    // Client tools have no type or "custom"; server tools (web_search_…, bash_…) are not ours to run.
    if (auto type = opt_string(tools[i], "type", p + ".type"); type && *type != "custom")
      throw HttpError(400, "Unsupported tool type '" + *type + "' (only client tools)", p + ".type");
    out.push_back(detail::function_tool_from(tools[i], p, "input_schema", true));
  }
  return out.empty() ? Json() : out;
}

bool tools_allowed(const Json& body) {
  if (!body.contains("tool_choice") || body["tool_choice"].is_null()) return true;
  const Json& c = body["tool_choice"];
  detail::expect_object(c, "tool_choice");
  const std::string type = require_string(c, "type", "tool_choice.type");
  if (type == "none") return false;
  if (type == "auto" || type == "any") return true;
  if (type == "tool") {
    require_string(c, "name", "tool_choice.name");
    return true;
  }
  throw HttpError(400, "Invalid value for 'tool_choice.type': '" + type + "' (expected auto, any, tool or none)",
                  "tool_choice.type");
}

void parse_thinking(const Json& body, ChatConfig& config, const std::optional<int64_t>& max_tokens) {
  if (!body.contains("thinking") || body["thinking"].is_null()) return;
  const Json& t = body["thinking"];
  detail::expect_object(t, "thinking");
  const std::string type = require_string(t, "type", "thinking.type");
  if (type == "disabled") {
    config.reasoning_effort = "none";
    return;
  }
  if (type == "adaptive") {  // the model decides how long to think: on, without a budget
    config.reasoning_effort = "high";
    return;
  }
  if (type != "enabled")
    throw HttpError(400, "Invalid value for 'thinking.type': '" + type + "' (expected enabled, adaptive or disabled)",
                    "thinking.type");
  // Anthropic asks for >= 1024; the small models served here think usefully in less.
  const auto budget = opt_int(t, "budget_tokens", "thinking.budget_tokens", 1, INT_MAX);
  if (!budget) throw HttpError(400, "Missing required parameter: 'thinking.budget_tokens'", "thinking.budget_tokens");
  if (max_tokens && *budget >= *max_tokens)
    throw HttpError(400, "'thinking.budget_tokens' must be less than 'max_tokens'", "thinking.budget_tokens");
  config.reasoning_effort = "high";
  config.thinking_token_budget = int(*budget);
}

GenRequest parse(const Json& body, const Limits& limits, const ParseOptions& opt) {
  if (!body.is_object()) throw HttpError(400, "The request body must be a JSON object");
  GenRequest req;
  req.model = opt_string(body, "model", "model").value_or("");

  const auto max_tokens = opt_int(body, "max_tokens", "max_tokens", 1, INT_MAX);
  if (opt.require_max_tokens && !max_tokens)
    throw HttpError(400, "Missing required parameter: 'max_tokens'", "max_tokens");
  req.config.max_new_tokens = max_tokens ? int(*max_tokens) : limits.default_max_tokens;

  if (body.contains("system") && !body["system"].is_null()) {
    const std::string system = text_content(body["system"], "system");
    if (!system.empty()) req.messages.push_back({{"role", "system"}, {"content", system}});
  }
  const Json& messages = require(body, "messages", "messages");
  detail::expect_array(messages, "messages");
  if (messages.empty()) throw HttpError(400, "'messages' must contain at least one message", "messages");
  detail::check_count(messages.size(), limits.max_messages, "messages");
  for (size_t i = 0; i < messages.size(); ++i) parse_message(messages[i], at("messages", i), req.messages);

  req.tools = parse_tools(body, limits);
  if (!tools_allowed(body)) req.tools = Json();
  parse_thinking(body, req.config, max_tokens);
  parse_sampling(body, "", req.config);
  if (body.contains("stop_sequences")) parse_stop(body["stop_sequences"], "stop_sequences", limits, req.config);
  req.stream = opt_bool(body, "stream", "stream").value_or(false);
  return req;
}

// The stop sequence that ended the turn, if one did. The engine stops as soon as a stop string
// completes in the answer, so it sits at the end of the raw text (within the last token, which
// may run past it); a natural stop ends with a stop token or the answer alone.
std::optional<std::string> matched_stop(const ChatResult& r, const std::vector<std::string>& stops) {
  if (detail::client_finish(r) != FinishReason::Stop || stops.empty()) return std::nullopt;
  const std::string& raw = r.raw_text;
  constexpr size_t kLastTokenSlack = 64;
  const size_t answer_from = [&] {
    const size_t c = raw.rfind("<channel|>");
    return c == std::string::npos ? size_t(0) : c;
  }();
  std::optional<std::string> best;
  size_t best_end = 0;
  for (const auto& s : stops) {
    const size_t p = raw.rfind(s);
    if (p == std::string::npos || p < answer_from) continue;
    const size_t end = p + s.size();
    if (raw.size() - end > kLastTokenSlack) continue;
    if (raw.compare(end, std::string::npos, "<turn|>") == 0) continue;  // ended by the stop token
    if (!best || end > best_end) {
      best = s;
      best_end = end;
    }
  }
  return best;
}

const char* stop_reason(const ChatResult& r, const std::optional<std::string>& stop) {
  switch (detail::client_finish(r)) {
    case FinishReason::Length: return "max_tokens";
    case FinishReason::ToolCalls: return "tool_use";
    default: return stop ? "stop_sequence" : "end_turn";
  }
}

Json usage_json(int prompt_tokens, int cached_tokens, int output_tokens) {
  Json u;
  u["input_tokens"] = std::max(0, prompt_tokens - cached_tokens);
  u["cache_creation_input_tokens"] = 0;
  u["cache_read_input_tokens"] = cached_tokens;
  u["output_tokens"] = output_tokens;
  return u;
}

Json message_base(const ResponseMeta& meta) {
  Json m;
  m["id"] = meta.id;
  m["type"] = "message";
  m["role"] = "assistant";
  m["model"] = meta.model;
  m["content"] = Json::array();
  m["stop_reason"] = nullptr;
  m["stop_sequence"] = nullptr;
  return m;
}

Json tool_use_block(const ToolCall& c) {
  return {{"type", "tool_use"},
          {"id", make_id("toolu_")},
          {"name", c.name},
          {"input", detail::arguments_object(c.arguments_json)}};
}

}  // namespace

GenRequest parse_messages_request(const Json& body, const Limits& limits) { return parse(body, limits, {}); }

GenRequest parse_count_tokens_request(const Json& body, const Limits& limits) {
  ParseOptions opt;
  opt.require_max_tokens = false;
  return parse(body, limits, opt);
}

Json message_json(const ChatResult& r, const ResponseMeta& meta, const ChatConfig& config) {
  Json m = message_base(meta);
  if (r.thinking && !r.thinking->empty())
    m["content"].push_back({{"type", "thinking"}, {"thinking", *r.thinking}, {"signature", ""}});
  if (!r.text.empty()) m["content"].push_back({{"type", "text"}, {"text", r.text}});
  for (const ToolCall* c : detail::ok_calls(r)) m["content"].push_back(tool_use_block(*c));
  const auto stop = matched_stop(r, config.stop);
  m["stop_reason"] = stop_reason(r, stop);
  m["stop_sequence"] = stop ? Json(*stop) : Json();
  m["usage"] = usage_json(r.prompt_tokens, r.cached_tokens, r.num_tokens);
  m["timings"] = timings_json(r);
  return m;
}

MessagesStream::MessagesStream(ResponseMeta meta, ChatConfig config)
    : meta_(std::move(meta)), config_(std::move(config)) {}

std::string MessagesStream::start() {
  Json m = message_base(meta_);
  m["usage"] = usage_json(meta_.prompt_tokens, meta_.cached_tokens, 0);
  return detail::sse_event("message_start", {{"type", "message_start"}, {"message", std::move(m)}});
}

namespace {

std::string block_start(int index, Json block) {
  return detail::sse_event("content_block_start",
                           {{"type", "content_block_start"}, {"index", index}, {"content_block", std::move(block)}});
}
std::string block_delta(int index, Json delta) {
  return detail::sse_event("content_block_delta",
                           {{"type", "content_block_delta"}, {"index", index}, {"delta", std::move(delta)}});
}
std::string block_stop(int index) {
  return detail::sse_event("content_block_stop", {{"type", "content_block_stop"}, {"index", index}});
}

// Closes the open block: a thinking block gets its (empty) signature first, as Anthropic sends.
std::string close_block(int index, std::string& open) {
  std::string out;
  if (open == "thinking") out += block_delta(index, {{"type", "signature_delta"}, {"signature", ""}});
  if (!open.empty()) out += block_stop(index);
  open.clear();
  return out;
}

}  // namespace

std::string MessagesStream::delta(const StreamEvent& e) {
  if (e.done || e.text.empty()) return "";
  const std::string kind = e.is_reasoning ? "thinking" : "text";
  std::string out;
  if (open_ != kind) {
    out += close_block(index_, open_);
    ++index_;
    open_ = kind;
    out += block_start(index_, e.is_reasoning ? Json{{"type", "thinking"}, {"thinking", ""}, {"signature", ""}}
                                              : Json{{"type", "text"}, {"text", ""}});
  }
  out += block_delta(index_, e.is_reasoning ? Json{{"type", "thinking_delta"}, {"thinking", e.text}}
                                            : Json{{"type", "text_delta"}, {"text", e.text}});
  return out;
}

std::string MessagesStream::finish(const ChatResult& r) {
  std::string out = close_block(index_, open_);
  for (const ToolCall* c : detail::ok_calls(r)) {
    ++index_;
    Json block = tool_use_block(*c);
    const Json input = std::move(block["input"]);
    block["input"] = Json::object();
    out += block_start(index_, std::move(block));
    out += block_delta(index_, {{"type", "input_json_delta"}, {"partial_json", detail::dump(input)}});
    out += block_stop(index_);
  }
  const auto stop = matched_stop(r, config_.stop);
  Json md;
  md["type"] = "message_delta";
  md["delta"] = {{"stop_reason", stop_reason(r, stop)}, {"stop_sequence", stop ? Json(*stop) : Json()}};
  md["usage"] = usage_json(r.prompt_tokens, r.cached_tokens, r.num_tokens);
  md["timings"] = timings_json(r);
  out += detail::sse_event("message_delta", md);
  out += detail::sse_event("message_stop", {{"type", "message_stop"}});
  return out;
}

}  // namespace mlxq::server
