// OpenAI Chat Completions: a request body into a GenRequest (the chat shape the template renders,
// tool-call arguments parsed from JSON text), a finished turn into chat.completion, and a streamed
// turn into chat.completion.chunk SSE frames.
#include "server/api_chat.h"

#include <climits>

#include "server/api_internal.h"

namespace mlxq::server {

using detail::at;
using detail::require;
using detail::require_string;

namespace {

Json parse_tool_calls(const Json& calls, const std::string& path) {
  detail::expect_array(calls, path);
  Json out = Json::array();
  for (size_t j = 0; j < calls.size(); ++j) {
    const std::string p = at(path, j);
    const Json& c = calls[j];
    detail::expect_object(c, p);
    if (auto type = opt_string(c, "type", p + ".type"); type && *type != "function")
      throw HttpError(400, "Unsupported tool call type '" + *type + "' (only 'function')", p + ".type");
    const std::string id = opt_string(c, "id", p + ".id").value_or(make_id("call_"));
    const Json& fn = require(c, "function", p + ".function");
    detail::expect_object(fn, p + ".function");
    const std::string name = require_string(fn, "name", p + ".function.name");
    const Json args = fn.contains("arguments") ? fn["arguments"] : Json();
    out.push_back(detail::chat_tool_call(id, name, detail::parse_arguments(args, p + ".function.arguments")));
  }
  return out;
}

Json parse_message(const Json& m, const std::string& p) {
  detail::expect_object(m, p);
  const std::string role = require_string(m, "role", p + ".role");
  Json out;
  if (role == "system" || role == "developer" || role == "user") {
    out["role"] = role == "user" ? "user" : "system";
    out["content"] = role == "user" ? user_content(require(m, "content", p + ".content"), p + ".content")
                                    : Json(text_content(require(m, "content", p + ".content"), p + ".content"));
  } else if (role == "assistant") {
    out["role"] = "assistant";
    out["content"] = text_content(m.contains("content") ? m["content"] : Json(), p + ".content");
    // Past reasoning rides along: the template re-emits it only where Gemma keeps it (a tool-call
    // message after the last user turn).
    if (auto r = opt_string(m, "reasoning_content", p + ".reasoning_content"); r && !r->empty())
      out["reasoning_content"] = *r;
    if (m.contains("tool_calls") && !m["tool_calls"].is_null()) {
      Json calls = parse_tool_calls(m["tool_calls"], p + ".tool_calls");
      if (!calls.empty()) out["tool_calls"] = std::move(calls);
    }
  } else if (role == "tool") {
    out["role"] = "tool";
    out["tool_call_id"] = require_string(m, "tool_call_id", p + ".tool_call_id");
    out["content"] = text_content(require(m, "content", p + ".content"), p + ".content");
    if (auto name = opt_string(m, "name", p + ".name")) out["name"] = *name;
  } else {
    throw HttpError(400,
                    "Invalid value for '" + p + ".role': '" + role +
                        "' (expected system, developer, user, assistant or tool)",
                    p + ".role");
  }
  return out;
}

// tools: OpenAI function tools, copied to the fields the template reads; null when none.
Json parse_tools(const Json& body, const Limits& limits) {
  if (!body.contains("tools") || body["tools"].is_null()) return Json();
  const Json& tools = body["tools"];
  detail::expect_array(tools, "tools");
  detail::check_count(tools.size(), size_t(limits.max_tools), "tools");
  Json out = Json::array();
  for (size_t i = 0; i < tools.size(); ++i) {
    const std::string p = at("tools", i);
    detail::expect_object(tools[i], p);
    const std::string type = require_string(tools[i], "type", p + ".type");
    if (type != "function")
      throw HttpError(400, "Unsupported tool type '" + type + "' (only 'function')", p + ".type");
    const Json& fn = require(tools[i], "function", p + ".function");
    detail::expect_object(fn, p + ".function");
    out.push_back(detail::function_tool_from(fn, p + ".function", "parameters", false));
  }
  return out.empty() ? Json() : out;
}

// tool_choice: "none" drops the tools; "auto", "required" and a named function keep them (the
// model is not forced).
bool tools_allowed(const Json& body) {
  if (!body.contains("tool_choice") || body["tool_choice"].is_null()) return true;
  const Json& c = body["tool_choice"];
  if (c.is_string()) return detail::tool_choice_keeps_tools(c.get<std::string>());
  detail::expect_object(c, "tool_choice");
  const std::string type = require_string(c, "type", "tool_choice.type");
  if (type != "function") throw HttpError(400, "Unsupported tool_choice type '" + type + "'", "tool_choice.type");
  detail::expect_object(require(c, "function", "tool_choice.function"), "tool_choice.function");
  require_string(c["function"], "name", "tool_choice.function.name");
  return true;
}

Json usage_json(const ChatResult& r) {
  Json u;
  u["prompt_tokens"] = r.prompt_tokens;
  u["completion_tokens"] = r.num_tokens;
  u["total_tokens"] = r.prompt_tokens + r.num_tokens;
  u["prompt_tokens_details"] = {{"cached_tokens", r.cached_tokens}};
  u["completion_tokens_details"] = {{"reasoning_tokens", r.reasoning_tokens}};
  return u;
}

const char* finish_string(const ChatResult& r) {
  switch (detail::client_finish(r)) {
    case FinishReason::Length: return "length";
    case FinishReason::ToolCalls: return "tool_calls";
    default: return "stop";  // cancelled / error turns are not sent as results
  }
}

Json chunk(const ResponseMeta& meta, Json delta, const Json& finish_reason) {
  Json c;
  c["id"] = meta.id;
  c["object"] = "chat.completion.chunk";
  c["created"] = meta.created;
  c["model"] = meta.model;
  Json choice;
  choice["index"] = 0;
  choice["delta"] = std::move(delta);
  choice["logprobs"] = nullptr;
  choice["finish_reason"] = finish_reason;
  c["choices"] = Json::array({std::move(choice)});
  return c;
}

}  // namespace

GenRequest parse_chat_request(const Json& body, const Limits& limits) {
  if (!body.is_object()) throw HttpError(400, "The request body must be a JSON object");
  GenRequest req;
  req.model = opt_string(body, "model", "model").value_or("");

  const Json& messages = require(body, "messages", "messages");
  detail::expect_array(messages, "messages");
  if (messages.empty()) throw HttpError(400, "'messages' must contain at least one message", "messages");
  detail::check_count(messages.size(), limits.max_messages, "messages");
  for (size_t i = 0; i < messages.size(); ++i) req.messages.push_back(parse_message(messages[i], at("messages", i)));

  req.tools = parse_tools(body, limits);
  if (!tools_allowed(body)) req.tools = Json();

  if (auto effort = detail::opt_effort(body, "reasoning_effort", "reasoning_effort"))
    req.config.reasoning_effort = *effort;  // the engine reads medium / high as thinking on
  parse_sampling(body, "", req.config);
  if (body.contains("stop")) parse_stop(body["stop"], "stop", limits, req.config);

  req.config.max_new_tokens = limits.default_max_tokens;
  if (auto n = opt_int(body, "max_tokens", "max_tokens", 1, INT_MAX)) req.config.max_new_tokens = int(*n);
  if (auto n = opt_int(body, "max_completion_tokens", "max_completion_tokens", 1, INT_MAX))
    req.config.max_new_tokens = int(*n);
  if (auto n = opt_int(body, "n", "n", INT64_MIN, INT64_MAX); n && *n != 1)
    throw HttpError(400, "Invalid value for 'n': only n = 1 is supported", "n");

  req.stream = opt_bool(body, "stream", "stream").value_or(false);
  if (body.contains("stream_options") && !body["stream_options"].is_null()) {
    detail::expect_object(body["stream_options"], "stream_options");
    req.include_usage =
        opt_bool(body["stream_options"], "include_usage", "stream_options.include_usage").value_or(false);
  }
  return req;
}

Json chat_completion_json(const ChatResult& r, const ResponseMeta& meta) {
  const auto calls = detail::ok_calls(r);
  Json msg;
  msg["role"] = "assistant";
  msg["content"] = r.text.empty() && !calls.empty() ? Json() : Json(r.text);
  if (r.thinking && !r.thinking->empty()) msg["reasoning_content"] = *r.thinking;
  msg["refusal"] = nullptr;
  if (!calls.empty()) {
    Json tc = Json::array();
    for (const ToolCall* c : calls)
      tc.push_back({{"id", make_id("call_")},
                    {"type", "function"},
                    {"function", {{"name", c->name}, {"arguments", c->arguments_json}}}});
    msg["tool_calls"] = std::move(tc);
  }
  Json choice;
  choice["index"] = 0;
  choice["message"] = std::move(msg);
  choice["finish_reason"] = finish_string(r);
  choice["logprobs"] = nullptr;

  Json out;
  out["id"] = meta.id;
  out["object"] = "chat.completion";
  out["created"] = meta.created;
  out["model"] = meta.model;
  out["choices"] = Json::array({std::move(choice)});
  out["usage"] = usage_json(r);
  out["timings"] = timings_json(r);
  return out;
}

ChatStream::ChatStream(ResponseMeta meta, bool include_usage) : meta_(std::move(meta)), include_usage_(include_usage) {}

std::string ChatStream::start() {
  return detail::sse_data(chunk(meta_, {{"role", "assistant"}, {"content", ""}}, nullptr));
}

std::string ChatStream::delta(const StreamEvent& e) {
  if (e.done || e.text.empty()) return "";
  Json d;
  d[e.is_reasoning ? "reasoning_content" : "content"] = e.text;
  return detail::sse_data(chunk(meta_, std::move(d), nullptr));
}

std::string ChatStream::finish(const ChatResult& r) {
  std::string out;
  const auto calls = detail::ok_calls(r);
  for (size_t i = 0; i < calls.size(); ++i) {
    Json call;
    call["index"] = i;
    call["id"] = make_id("call_");
    call["type"] = "function";
    call["function"] = {{"name", calls[i]->name}, {"arguments", calls[i]->arguments_json}};
    out += detail::sse_data(chunk(meta_, {{"tool_calls", Json::array({std::move(call)})}}, nullptr));
  }
  Json last = chunk(meta_, Json::object(), finish_string(r));
  last["timings"] = timings_json(r);
  out += detail::sse_data(last);
  if (include_usage_) {
    Json usage = chunk(meta_, Json::object(), nullptr);
    usage["choices"] = Json::array();
    usage["usage"] = usage_json(r);
    out += detail::sse_data(usage);
  }
  out += "data: [DONE]\n\n";
  return out;
}

}  // namespace mlxq::server
