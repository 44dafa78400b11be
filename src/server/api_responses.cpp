// OpenAI Responses: a request (input items, instructions, previous_response_id from the
// ResponseStore) into a GenRequest in the chat shape, a finished turn into a response object
// (reasoning / message / function_call items), and a streamed turn into the Responses SSE events.
#include "server/api_responses.h"

#include <climits>
#include <cmath>

#include "server/api_internal.h"

namespace mlxq::server {

using detail::at;
using detail::require;
using detail::require_string;

void ResponseStore::put(const std::string& id, Json conversation, Json tools) {
  std::lock_guard<std::mutex> lock(mu_);
  if (capacity_ == 0) return;
  if (auto it = map_.find(id); it != map_.end()) {
    lru_.erase(it->second.second);
    map_.erase(it);
  }
  lru_.push_front(id);
  map_.emplace(id, std::make_pair(Entry{std::move(conversation), std::move(tools)}, lru_.begin()));
  while (map_.size() > capacity_) {
    map_.erase(lru_.back());
    lru_.pop_back();
  }
}

std::optional<ResponseStore::Entry> ResponseStore::get(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  const auto it = map_.find(id);
  if (it == map_.end()) return std::nullopt;
  lru_.splice(lru_.begin(), lru_, it->second.second);  // a continued conversation stays
  return it->second.first;
}

size_t ResponseStore::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return map_.size();
}

namespace {

// One input item into chat-shape messages. Function calls join the assistant message before them
// (a turn's text and its calls are one message in the chat shape).
void parse_item(const Json& item, const std::string& p, Json& out) {
  detail::expect_object(item, p);
  const std::string type = opt_string(item, "type", p + ".type").value_or("message");
  if (type == "message") {
    const std::string role = require_string(item, "role", p + ".role");
    if (role != "user" && role != "system" && role != "developer" && role != "assistant")
      throw HttpError(400,
                      "Invalid value for '" + p + ".role': '" + role +
                          "' (expected user, system, developer or assistant)",
                      p + ".role");
    const Json& c = require(item, "content", p + ".content");
    Json content = role == "user" ? user_content(c, p + ".content") : Json(text_content(c, p + ".content"));
    out.push_back({{"role", role == "developer" ? "system" : role}, {"content", std::move(content)}});
  } else if (type == "function_call") {
    const std::string call_id = require_string(item, "call_id", p + ".call_id");
    const std::string name = require_string(item, "name", p + ".name");
    const Json args = item.contains("arguments") ? item["arguments"] : Json();
    Json call = detail::chat_tool_call(call_id, name, detail::parse_arguments(args, p + ".arguments"));
    if (out.empty() || out.back()["role"] != "assistant") out.push_back({{"role", "assistant"}, {"content", ""}});
    out.back()["tool_calls"].push_back(std::move(call));
  } else if (type == "function_call_output") {
    Json msg;
    msg["role"] = "tool";
    msg["tool_call_id"] = require_string(item, "call_id", p + ".call_id");
    msg["content"] = text_content(require(item, "output", p + ".output"), p + ".output");
    out.push_back(std::move(msg));
  } else if (type == "reasoning") {
    return;  // the template drops past thoughts
  } else {
    throw HttpError(400, "Unsupported input item type '" + type + "'", p + ".type");
  }
}

Json parse_tools(const Json& tools, const Limits& limits) {
  if (tools.is_null()) return Json();
  detail::expect_array(tools, "tools");
  detail::check_count(tools.size(), size_t(limits.max_tools), "tools");
  Json out = Json::array();
  for (size_t i = 0; i < tools.size(); ++i) {
    const std::string p = at("tools", i);
    detail::expect_object(tools[i], p);
    const std::string type = require_string(tools[i], "type", p + ".type");
    if (type != "function")
      throw HttpError(400, "Unsupported tool type '" + type + "' (only 'function')", p + ".type");
    out.push_back(detail::function_tool_from(tools[i], p, "parameters", false));
  }
  return out.empty() ? Json() : out;
}

bool tools_allowed(const Json& body) {
  if (!body.contains("tool_choice") || body["tool_choice"].is_null()) return true;
  const Json& c = body["tool_choice"];
  if (c.is_string()) return detail::tool_choice_keeps_tools(c.get<std::string>());
  detail::expect_object(c, "tool_choice");
  const std::string type = require_string(c, "type", "tool_choice.type");
  if (type != "function") throw HttpError(400, "Unsupported tool_choice type '" + type + "'", "tool_choice.type");
  require_string(c, "name", "tool_choice.name");
  return true;
}

// Output items, as both the response object and the stream carry them.
Json reasoning_item(const std::string& id, const std::string& text) {
  Json content = Json::array();
  if (!text.empty()) content.push_back({{"type", "reasoning_text"}, {"text", text}});
  return {{"id", id}, {"type", "reasoning"}, {"summary", Json::array()}, {"content", std::move(content)}};
}
Json text_part(const std::string& text) {
  return {{"type", "output_text"}, {"text", text}, {"annotations", Json::array()}, {"logprobs", Json::array()}};
}
Json message_item(const std::string& id, const std::string& text, bool done) {
  Json content = Json::array();
  if (done) content.push_back(text_part(text));
  return {{"id", id},
          {"type", "message"},
          {"role", "assistant"},
          {"status", done ? "completed" : "in_progress"},
          {"content", std::move(content)}};
}
Json function_call_item(const std::string& id, const std::string& call_id, const ToolCall& c, bool done) {
  return {{"id", id},
          {"type", "function_call"},
          {"call_id", call_id},
          {"name", c.name},
          {"arguments", done ? c.arguments_json : ""},
          {"status", done ? "completed" : "in_progress"}};
}

// The chat tools back in the Responses shape, for the echo.
Json responses_tools(const Json& tools) {
  Json out = Json::array();
  if (!tools.is_array()) return out;
  for (const Json& t : tools) {
    const Json& fn = t["function"];
    Json r;
    r["type"] = "function";
    r["name"] = fn.value("name", "");
    r["description"] = fn.contains("description") ? fn["description"] : Json();
    r["parameters"] = fn.contains("parameters") ? fn["parameters"] : Json();
    r["strict"] = nullptr;
    out.push_back(std::move(r));
  }
  return out;
}

// A sampling value as the client wrote it (0.4, not the float's 0.4000000059604645).
Json echo(const std::optional<float>& v) { return v ? Json(std::round(double(*v) * 1e6) / 1e6) : Json(); }

// The response object before any output (what response.created carries).
Json response_base(const ResponseMeta& meta, const GenRequest& req) {
  const ChatConfig& c = req.config;
  Json o;
  o["id"] = meta.id;
  o["object"] = "response";
  o["created_at"] = meta.created;
  o["status"] = "in_progress";
  o["error"] = nullptr;
  o["incomplete_details"] = nullptr;
  o["instructions"] = req.instructions.empty() ? Json() : Json(req.instructions);
  o["max_output_tokens"] = c.max_new_tokens ? Json(*c.max_new_tokens) : Json();
  o["model"] = meta.model;
  o["output"] = Json::array();
  o["parallel_tool_calls"] = true;
  o["previous_response_id"] = req.previous_response_id.empty() ? Json() : Json(req.previous_response_id);
  o["reasoning"] = {{"effort", c.reasoning_effort ? Json(*c.reasoning_effort) : Json()}, {"summary", nullptr}};
  o["store"] = req.store;
  o["temperature"] = echo(c.temperature);
  o["text"] = {{"format", {{"type", "text"}}}};
  o["tool_choice"] = req.tools.is_array() ? "auto" : "none";
  o["tools"] = responses_tools(req.tools);
  o["top_p"] = echo(c.top_p);
  o["truncation"] = "disabled";
  o["usage"] = nullptr;
  o["metadata"] = Json::object();
  return o;
}

// The finished response: status, output items, output_text, usage, timings.
Json response_done(Json o, const ChatResult& r, Json output) {
  const bool incomplete = detail::client_finish(r) == FinishReason::Length;
  o["status"] = incomplete ? "incomplete" : "completed";
  o["incomplete_details"] = incomplete ? Json{{"reason", "max_output_tokens"}} : Json();
  std::string text;
  for (const Json& item : output)
    if (item["type"] == "message")
      for (const Json& part : item["content"])
        if (part["type"] == "output_text") text += part["text"].get<std::string>();
  o["output"] = std::move(output);
  o["output_text"] = text;
  Json u;
  u["input_tokens"] = r.prompt_tokens;
  u["input_tokens_details"] = {{"cached_tokens", r.cached_tokens}};
  u["output_tokens"] = r.num_tokens;
  u["output_tokens_details"] = {{"reasoning_tokens", r.reasoning_tokens}};
  u["total_tokens"] = r.prompt_tokens + r.num_tokens;
  o["usage"] = std::move(u);
  o["timings"] = timings_json(r);
  return o;
}

}  // namespace

GenRequest parse_responses_request(const Json& body, const Limits& limits, ResponseStore& store) {
  if (!body.is_object()) throw HttpError(400, "The request body must be a JSON object");
  GenRequest req;
  req.model = opt_string(body, "model", "model").value_or("");
  req.instructions = opt_string(body, "instructions", "instructions").value_or("");
  req.previous_response_id = opt_string(body, "previous_response_id", "previous_response_id").value_or("");

  std::optional<ResponseStore::Entry> previous;
  if (!req.previous_response_id.empty()) {
    previous = store.get(req.previous_response_id);
    if (!previous)
      throw HttpError(400, "Previous response with id '" + req.previous_response_id + "' not found.",
                      "previous_response_id", "previous_response_not_found");
  }
  if (!req.instructions.empty()) req.messages.push_back({{"role", "system"}, {"content", req.instructions}});
  if (previous)
    for (const Json& m : previous->conversation) req.messages.push_back(m);
  const size_t before_input = req.messages.size();

  const Json& input = require(body, "input", "input");
  if (input.is_string()) {
    req.messages.push_back({{"role", "user"}, {"content", input.get<std::string>()}});
  } else {
    detail::expect_array(input, "input");
    detail::check_count(input.size(), limits.max_messages, "input");
    for (size_t i = 0; i < input.size(); ++i) parse_item(input[i], at("input", i), req.messages);
  }
  if (req.messages.size() == before_input && !previous)
    throw HttpError(400, "'input' must contain at least one item", "input");

  const bool has_tools = body.contains("tools") && !body["tools"].is_null();
  req.tools = has_tools ? parse_tools(body["tools"], limits) : previous ? previous->tools : Json();
  if (!tools_allowed(body)) req.tools = Json();

  if (body.contains("reasoning") && !body["reasoning"].is_null()) {
    detail::expect_object(body["reasoning"], "reasoning");
    if (auto effort = detail::opt_effort(body["reasoning"], "effort", "reasoning.effort"))
      req.config.reasoning_effort = *effort;
  }
  req.config.max_new_tokens = limits.default_max_tokens;
  if (auto n = opt_int(body, "max_output_tokens", "max_output_tokens", 1, INT_MAX)) req.config.max_new_tokens = int(*n);
  parse_sampling(body, "", req.config);
  req.stream = opt_bool(body, "stream", "stream").value_or(false);
  req.store = opt_bool(body, "store", "store").value_or(true);
  return req;
}

Json response_json(const ChatResult& r, const ResponseMeta& meta, const GenRequest& req) {
  Json output = Json::array();
  if (r.thinking && !r.thinking->empty()) output.push_back(reasoning_item(make_id("rs_"), *r.thinking));
  const auto calls = detail::ok_calls(r);
  if (!r.text.empty() || calls.empty()) output.push_back(message_item(make_id("msg_"), r.text, true));
  for (const ToolCall* c : calls) output.push_back(function_call_item(make_id("fc_"), make_id("call_"), *c, true));
  return response_done(response_base(meta, req), r, std::move(output));
}

Json conversation_after(const GenRequest& req, const ChatResult& r, const Json& response) {
  Json conv = Json::array();
  for (size_t i = req.instructions.empty() ? 0 : 1; i < req.messages.size(); ++i) conv.push_back(req.messages[i]);
  Json turn = {{"role", "assistant"}, {"content", r.text}};
  Json calls = Json::array();
  if (response.contains("output"))
    for (const Json& item : response["output"])
      if (item.value("type", "") == "function_call")
        calls.push_back(detail::chat_tool_call(item.value("call_id", ""), item.value("name", ""),
                                               detail::arguments_object(item.value("arguments", "{}"))));
  if (!calls.empty()) {
    // Gemma keeps the reasoning of a tool-calling turn while the tool results come back.
    if (r.thinking && !r.thinking->empty()) turn["reasoning_content"] = *r.thinking;
    turn["tool_calls"] = std::move(calls);
  }
  conv.push_back(std::move(turn));
  return conv;
}

ResponsesStream::ResponsesStream(ResponseMeta meta, GenRequest req) : meta_(std::move(meta)), req_(std::move(req)) {}

namespace {

// A frame: type and sequence_number first, then the event's fields.
std::string frame(int& seq, const char* type, const Json& fields) {
  Json j;
  j["type"] = type;
  j["sequence_number"] = seq++;
  for (const auto& [k, v] : fields.items()) j[k] = v;
  return detail::sse_event(type, j);
}

}  // namespace

std::string ResponsesStream::start() {
  const Json base = response_base(meta_, req_);
  std::string out = frame(seq_, "response.created", {{"response", base}});
  out += frame(seq_, "response.in_progress", {{"response", base}});
  return out;
}

namespace {

struct ItemState {
  int& seq;
  int& output_index;
  std::string& open;
  std::string& item_id;
  std::string& text;
  Json& items;
};

std::string close_item(ItemState s) {
  std::string out;
  const Json where = {{"item_id", s.item_id}, {"output_index", s.output_index}, {"content_index", 0}};
  if (s.open == "reasoning") {
    Json done = where;
    done["text"] = s.text;
    out += frame(s.seq, "response.reasoning_text.done", done);
    const Json item = reasoning_item(s.item_id, s.text);
    out += frame(s.seq, "response.output_item.done", {{"output_index", s.output_index}, {"item", item}});
    s.items.push_back(item);
  } else if (s.open == "message") {
    Json done = where;
    done["text"] = s.text;
    done["logprobs"] = Json::array();
    out += frame(s.seq, "response.output_text.done", done);
    Json part = where;
    part["part"] = text_part(s.text);
    out += frame(s.seq, "response.content_part.done", part);
    const Json item = message_item(s.item_id, s.text, true);
    out += frame(s.seq, "response.output_item.done", {{"output_index", s.output_index}, {"item", item}});
    s.items.push_back(item);
  }
  s.open.clear();
  s.text.clear();
  return out;
}

// Opens an output item of `kind` ("reasoning" or "message"), closing the open one first.
std::string open_item(ItemState s, const std::string& kind) {
  std::string out = close_item(s);
  ++s.output_index;
  s.open = kind;
  s.item_id = make_id(kind == "reasoning" ? "rs_" : "msg_");
  const Json item = kind == "reasoning" ? reasoning_item(s.item_id, "") : message_item(s.item_id, "", false);
  out += frame(s.seq, "response.output_item.added", {{"output_index", s.output_index}, {"item", item}});
  if (kind == "message")
    out += frame(s.seq, "response.content_part.added",
                 {{"item_id", s.item_id},
                  {"output_index", s.output_index},
                  {"content_index", 0},
                  {"part", text_part("")}});
  return out;
}

std::string text_delta(ItemState s, const std::string& delta) {
  s.text += delta;
  Json d = {{"item_id", s.item_id}, {"output_index", s.output_index}, {"content_index", 0}, {"delta", delta}};
  if (s.open == "reasoning") return frame(s.seq, "response.reasoning_text.delta", d);
  d["logprobs"] = Json::array();
  return frame(s.seq, "response.output_text.delta", d);
}

}  // namespace

std::string ResponsesStream::delta(const StreamEvent& e) {
  if (e.done || e.text.empty()) return "";
  const ItemState s{seq_, output_index_, open_, item_id_, text_, items_};
  const std::string kind = e.is_reasoning ? "reasoning" : "message";
  std::string out;
  if (open_ != kind) out += open_item(s, kind);
  out += text_delta(s, e.text);
  return out;
}

std::string ResponsesStream::finish(const ChatResult& r, Json* response) {
  const ItemState s{seq_, output_index_, open_, item_id_, text_, items_};
  std::string out = close_item(s);
  bool has_message = false;
  for (const Json& item : items_) has_message |= item["type"] == "message";
  const auto calls = detail::ok_calls(r);
  // The answer as a message item even when no delta carried it (or an empty one when the turn
  // produced nothing else), as response_json writes it.
  if (!has_message && (!r.text.empty() || calls.empty())) {
    out += open_item(s, "message");
    if (!r.text.empty()) out += text_delta(s, r.text);
    out += close_item(s);
  }
  for (const ToolCall* c : calls) {
    ++output_index_;
    const std::string id = make_id("fc_");
    const std::string call_id = make_id("call_");
    out += frame(seq_, "response.output_item.added",
                 {{"output_index", output_index_}, {"item", function_call_item(id, call_id, *c, false)}});
    out += frame(seq_, "response.function_call_arguments.delta",
                 {{"item_id", id}, {"output_index", output_index_}, {"delta", c->arguments_json}});
    out += frame(seq_, "response.function_call_arguments.done",
                 {{"item_id", id},
                  {"output_index", output_index_},
                  {"name", c->name},
                  {"arguments", c->arguments_json}});
    const Json item = function_call_item(id, call_id, *c, true);
    out += frame(seq_, "response.output_item.done", {{"output_index", output_index_}, {"item", item}});
    items_.push_back(item);
  }
  Json final_response = response_done(response_base(meta_, req_), r, items_);
  out += frame(seq_, "response.completed", {{"response", final_response}});
  if (response) *response = std::move(final_response);
  return out;
}

}  // namespace mlxq::server
