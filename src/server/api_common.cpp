// What the three APIs share: the client-error type and bodies, ids, timings, typed field access
// that names the offending field, stop / sampling / text-content parsing; and the private helpers
// of api_internal.h (shape checks, tool-call arguments, SSE framing).
#include "server/api_common.h"

#include <chrono>
#include <climits>
#include <cstdlib>
#include <cmath>
#include <random>
#include <sstream>

#include "server/api_internal.h"

namespace mlxq::server {

HttpError::HttpError(int status_, const std::string& message, std::string param_, std::string code_,
                     std::string type_)
    : std::runtime_error(message),
      status(status_),
      type(std::move(type_)),
      param(std::move(param_)),
      code(std::move(code_)) {}

namespace {

std::string default_type(Api api, int status) {
  const bool anthropic = api == Api::Anthropic;
  switch (status) {
    case 400: return "invalid_request_error";
    case 401: return "authentication_error";
    case 403: return "permission_error";
    case 404: return "not_found_error";
    case 408: return anthropic ? "timeout_error" : "invalid_request_error";
    case 413: return "request_too_large";
    case 429: return "rate_limit_error";
    case 503: return anthropic ? "overloaded_error" : "server_error";
    default: break;
  }
  if (status >= 500) return anthropic ? "api_error" : "server_error";
  return "invalid_request_error";
}

// A number as a person writes it in a message: 2, 0.5, 1e+09.
std::string fmt(double v) {
  if (std::fabs(v) < 1e15 && v == std::floor(v)) return std::to_string(static_cast<int64_t>(v));
  std::ostringstream s;
  s << v;
  return s.str();
}

std::string quoted(const std::string& path) { return "'" + path + "'"; }

[[noreturn]] void wrong_type(const Json& v, const std::string& path, const char* expected) {
  throw HttpError(400, "Invalid type for " + quoted(path) + ": expected " + expected + ", got " + v.type_name(),
                  path);
}

[[noreturn]] void out_of_range(const std::string& path, double lo, double hi) {
  std::string range;
  if (hi >= 1e300) range = ">= " + fmt(lo);
  else if (lo <= -1e300) range = "<= " + fmt(hi);
  else range = "between " + fmt(lo) + " and " + fmt(hi);
  throw HttpError(400, "Invalid value for " + quoted(path) + ": must be " + range, path);
}

const Json* present(const Json& obj, const char* key) {
  if (!obj.is_object()) return nullptr;
  const auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

}  // namespace

Json error_body(Api api, const HttpError& e) {
  const std::string type = e.type.empty() ? default_type(api, e.status) : e.type;
  Json err;
  if (api == Api::Anthropic) {
    err["type"] = "error";
    err["error"] = {{"type", type}, {"message", e.what()}};
    return err;
  }
  err["error"] = {{"message", e.what()},
                  {"type", type},
                  {"param", e.param.empty() ? Json() : Json(e.param)},
                  {"code", e.code.empty() ? Json() : Json(e.code)}};
  return err;
}

std::string make_id(const std::string& prefix) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  thread_local std::mt19937_64 rng{std::random_device{}() ^
                                   static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count())};
  std::uniform_int_distribution<size_t> pick(0, sizeof(kAlphabet) - 2);
  std::string id = prefix;
  for (int i = 0; i < 24; ++i) id += kAlphabet[pick(rng)];
  return id;
}

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Json timings_json(const ChatResult& r) {
  const Performance& p = r.performance;
  const double prompt_ms = p.ttft_ms;
  const double decode_tps = p.decode_tokens_per_second;
  // The decode rate covers the tokens after the first (that one is sampled at the end of the
  // prefill), so the decode time is (n - 1) tokens at that rate.
  const double predicted_ms = decode_tps > 0 && r.num_tokens > 1 ? (r.num_tokens - 1) * 1000.0 / decode_tps : 0.0;
  Json t;
  t["cache_n"] = r.cached_tokens;
  t["prompt_n"] = r.prefill_tokens;
  t["prompt_ms"] = prompt_ms;
  t["prompt_per_token_ms"] = r.prefill_tokens > 0 ? prompt_ms / r.prefill_tokens : 0.0;
  t["prompt_per_second"] = p.prefill_tokens_per_second;
  t["predicted_n"] = r.num_tokens;
  t["predicted_ms"] = predicted_ms;
  t["predicted_per_token_ms"] = decode_tps > 0 ? 1000.0 / decode_tps : 0.0;
  t["predicted_per_second"] = decode_tps;
  return t;
}

std::optional<std::string> opt_string(const Json& obj, const char* key, const std::string& path) {
  const Json* v = present(obj, key);
  if (!v) return std::nullopt;
  if (!v->is_string()) wrong_type(*v, path, "a string");
  return v->get<std::string>();
}

std::optional<double> opt_number(const Json& obj, const char* key, const std::string& path, double lo, double hi) {
  const Json* v = present(obj, key);
  if (!v) return std::nullopt;
  if (!v->is_number()) wrong_type(*v, path, "a number");
  const double x = v->get<double>();
  if (!(x >= lo && x <= hi)) out_of_range(path, lo, hi);
  return x;
}

std::optional<int64_t> opt_int(const Json& obj, const char* key, const std::string& path, int64_t lo, int64_t hi) {
  const Json* v = present(obj, key);
  if (!v) return std::nullopt;
  int64_t x = 0;
  if (v->is_number_unsigned()) {
    const uint64_t u = v->get<uint64_t>();
    x = u > static_cast<uint64_t>(INT64_MAX) ? INT64_MAX : static_cast<int64_t>(u);
  } else if (v->is_number_integer()) {
    x = v->get<int64_t>();
  } else if (v->is_number_float() && v->get<double>() == std::floor(v->get<double>()) &&
             std::fabs(v->get<double>()) < 9e18) {
    x = static_cast<int64_t>(v->get<double>());  // 100.0 is an integer
  } else {
    wrong_type(*v, path, "an integer");
  }
  if (x < lo || x > hi) out_of_range(path, static_cast<double>(lo), hi >= INT_MAX ? 1e308 : static_cast<double>(hi));
  return x;
}

std::optional<bool> opt_bool(const Json& obj, const char* key, const std::string& path) {
  const Json* v = present(obj, key);
  if (!v) return std::nullopt;
  if (!v->is_boolean()) wrong_type(*v, path, "a boolean");
  return v->get<bool>();
}

void parse_stop(const Json& v, const std::string& path, const Limits& limits, ChatConfig& config) {
  if (v.is_null()) return;
  std::vector<std::string> stops;
  if (v.is_string()) {
    stops.push_back(v.get<std::string>());
  } else if (v.is_array()) {
    for (size_t i = 0; i < v.size(); ++i) {
      if (!v[i].is_string()) wrong_type(v[i], detail::at(path, i), "a string");
      stops.push_back(v[i].get<std::string>());
    }
  } else {
    wrong_type(v, path, "a string or an array of strings");
  }
  if (stops.size() > static_cast<size_t>(limits.max_stop))
    throw HttpError(400, "Too many stop sequences in " + quoted(path) + ": " + std::to_string(stops.size()) +
                             " (at most " + std::to_string(limits.max_stop) + ")",
                    path);
  config.stop.clear();
  for (auto& s : stops) {
    if (s.size() > limits.max_stop_bytes)
      throw HttpError(400, "A stop sequence in " + quoted(path) + " is " + std::to_string(s.size()) +
                               " bytes long (at most " + std::to_string(limits.max_stop_bytes) + ")",
                      path);
    if (!s.empty()) config.stop.push_back(std::move(s));  // an empty stop string would end every turn at once
  }
}

void parse_sampling(const Json& body, const std::string& prefix, ChatConfig& config) {
  using detail::dot;
  constexpr double kBig = 1e308;
  if (auto v = opt_number(body, "temperature", dot(prefix, "temperature"), 0, 2)) config.temperature = float(*v);
  if (auto v = opt_number(body, "top_p", dot(prefix, "top_p"), 0, 1)) config.top_p = float(*v);
  if (auto v = opt_int(body, "top_k", dot(prefix, "top_k"), 0, INT_MAX)) config.top_k = int(*v);
  if (auto v = opt_number(body, "min_p", dot(prefix, "min_p"), 0, 1)) config.min_p = float(*v);
  if (auto v = opt_number(body, "presence_penalty", dot(prefix, "presence_penalty"), -2, 2))
    config.presence_penalty = float(*v);
  if (auto v = opt_number(body, "frequency_penalty", dot(prefix, "frequency_penalty"), -2, 2))
    config.frequency_penalty = float(*v);
  for (const char* key : {"repetition_penalty", "repeat_penalty"}) {
    if (auto v = opt_number(body, key, dot(prefix, key), 0, kBig)) {
      if (*v <= 0)
        throw HttpError(400, "Invalid value for " + quoted(dot(prefix, key)) + ": must be > 0", dot(prefix, key));
      config.repetition_penalty = float(*v);
    }
  }
  if (const Json* v = present(body, "seed")) {
    const std::string path = dot(prefix, "seed");
    if (v->is_number_unsigned()) config.seed = v->get<uint64_t>();
    else if (v->is_number_integer()) config.seed = static_cast<uint64_t>(v->get<int64_t>());
    else if (auto s = opt_int(body, "seed", path, INT64_MIN, INT64_MAX)) config.seed = static_cast<uint64_t>(*s);
  }
  // llama-server's extension: generate max_tokens whatever the model says (benchmarks, load tests).
  if (auto v = opt_bool(body, "ignore_eos", dot(prefix, "ignore_eos"))) config.ignore_eos = *v;
  // OpenAI's logit_bias: {"token id": bias in [-100, 100]}, at most 300 entries.
  if (const Json* v = present(body, "logit_bias")) {
    const std::string path = dot(prefix, "logit_bias");
    if (!v->is_object()) throw HttpError(400, "Invalid type for " + quoted(path) + ": expected an object", path);
    if (v->size() > 300) throw HttpError(400, "Invalid value for " + quoted(path) + ": at most 300 entries", path);
    for (const auto& [key, bias] : v->items()) {
      const std::string at = path + "." + key;
      char* end = nullptr;
      const long id = std::strtol(key.c_str(), &end, 10);
      if (key.empty() || *end != '\0' || id < 0 || id > INT32_MAX)
        throw HttpError(400, "Invalid key in " + quoted(path) + ": '" + key + "' is not a token id", path);
      if (!bias.is_number() || bias.get<double>() < -100 || bias.get<double>() > 100)
        throw HttpError(400, "Invalid value for " + quoted(at) + ": expected a number in [-100, 100]", at);
      config.logit_bias.emplace_back(int32_t(id), float(bias.get<double>()));
    }
  }
}

std::string text_content(const Json& content, const std::string& path) {
  if (content.is_null()) return "";
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) wrong_type(content, path, "a string or an array of text parts");
  std::string out;
  for (size_t i = 0; i < content.size(); ++i) {
    const std::string p = detail::at(path, i);
    const Json& part = content[i];
    detail::expect_object(part, p);
    const std::string type = detail::require_string(part, "type", p + ".type");
    if (type != "text" && type != "input_text" && type != "output_text")
      throw HttpError(400, "Unsupported content part type '" + type + "' in " + quoted(p) + " (only text is supported)",
                      p + ".type");
    if (i > 0) out += '\n';  // separate parts read as separate paragraphs (as vLLM joins them)
    out += detail::require_string(part, "text", p + ".text");
  }
  return out;
}

namespace {

std::string data_url(const Json& url, const std::string& path) {
  if (!url.is_string()) wrong_type(url, path, "a data URL string");
  const std::string u = url.get<std::string>();
  if (u.rfind("data:", 0) != 0)
    throw HttpError(400,
                    "Invalid value for " + quoted(path) +
                        ": images must be base64 data URLs (data:image/png;base64,...); the server fetches nothing",
                    path);
  return u;
}

}  // namespace

std::string image_of(const Json& part, const std::string& type, const std::string& p) {
  if (type == "image_url") {  // OpenAI chat: {"image_url": {"url": ..., "detail"?}} or a string
    const Json& iu = detail::require(part, "image_url", p + ".image_url");
    if (iu.is_object()) return data_url(detail::require(iu, "url", p + ".image_url.url"), p + ".image_url.url");
    return data_url(iu, p + ".image_url");
  }
  if (type == "input_image") {  // Responses: {"image_url": "data:..."} (file_id is not supported)
    if (!part.contains("image_url"))
      throw HttpError(400, "Missing required parameter: " + quoted(p + ".image_url") + " (file_id is not supported)",
                      p + ".image_url");
    return data_url(part["image_url"], p + ".image_url");
  }
  if (type == "image") {  // Anthropic: {"source": {"type": "base64", "media_type", "data"}}
    const Json& src = detail::require(part, "source", p + ".source");
    detail::expect_object(src, p + ".source");
    const std::string kind = detail::require_string(src, "type", p + ".source.type");
    if (kind == "url") return data_url(detail::require(src, "url", p + ".source.url"), p + ".source.url");
    if (kind != "base64")
      throw HttpError(400, "Unsupported image source type '" + kind + "' (base64 or a data URL)", p + ".source.type");
    const std::string media = detail::require_string(src, "media_type", p + ".source.media_type");
    return "data:" + media + ";base64," + detail::require_string(src, "data", p + ".source.data");
  }
  return "";
}

Json user_content(const Json& content, const std::string& path) {
  if (!content.is_array()) return text_content(content, path);
  bool images = false;
  for (const Json& part : content)
    if (part.is_object() && part.contains("type") && part["type"].is_string()) {
      const std::string t = part["type"];
      images = images || t == "image_url" || t == "input_image" || t == "image";
    }
  if (!images) return text_content(content, path);
  Json parts = Json::array();
  for (size_t i = 0; i < content.size(); ++i) {
    const std::string p = detail::at(path, i);
    const Json& part = content[i];
    detail::expect_object(part, p);
    const std::string type = detail::require_string(part, "type", p + ".type");
    if (type == "text" || type == "input_text") {
      parts.push_back({{"type", "text"}, {"text", detail::require_string(part, "text", p + ".text")}});
      continue;
    }
    const std::string url = image_of(part, type, p);
    if (url.empty())
      throw HttpError(400, "Unsupported content part type '" + type + "' in " + quoted(p) + " (text and images)",
                      p + ".type");
    parts.push_back({{"type", "image_url"}, {"image_url", {{"url", url}}}});
  }
  return parts;
}

namespace detail {

std::string at(const std::string& path, size_t i) { return path + "[" + std::to_string(i) + "]"; }
std::string dot(const std::string& path, const char* key) { return path.empty() ? key : path + "." + key; }

void expect_object(const Json& v, const std::string& path) {
  if (!v.is_object()) wrong_type(v, path, "an object");
}
void expect_array(const Json& v, const std::string& path) {
  if (!v.is_array()) wrong_type(v, path, "an array");
}

const Json& require(const Json& obj, const char* key, const std::string& path) {
  const Json* v = present(obj, key);
  if (!v) throw HttpError(400, "Missing required parameter: " + quoted(path), path);
  return *v;
}

std::string require_string(const Json& obj, const char* key, const std::string& path) {
  const Json& v = require(obj, key, path);
  if (!v.is_string()) wrong_type(v, path, "a string");
  return v.get<std::string>();
}

void check_count(size_t n, size_t limit, const std::string& path) {
  if (n > limit)
    throw HttpError(400, "Too many entries in " + quoted(path) + ": " + std::to_string(n) + " (at most " +
                             std::to_string(limit) + ")",
                    path);
}

std::optional<std::string> opt_effort(const Json& obj, const char* key, const std::string& path) {
  auto e = opt_string(obj, key, path);
  if (e && *e != "none" && *e != "minimal" && *e != "low" && *e != "medium" && *e != "high")
    throw HttpError(400, "Invalid value for " + quoted(path) + ": '" + *e +
                             "' (expected none, minimal, low, medium or high)",
                    path);
  return e;
}

Json parse_arguments(const Json& v, const std::string& path) {
  if (v.is_null()) return Json::object();
  if (v.is_object()) return v;
  if (!v.is_string()) wrong_type(v, path, "a string of JSON object text");
  const std::string& text = v.get_ref<const std::string&>();
  if (text.find_first_not_of(" \t\r\n") == std::string::npos) return Json::object();
  // Bounded nesting, checked before a value is attached (nlohmann's ordered_json copies earlier
  // members as an object grows, so an unbounded depth is a stack risk).
  constexpr int kMaxDepth = 256;
  bool too_deep = false;
  const auto limit = [&](int depth, Json::parse_event_t, Json&) {
    if (depth > kMaxDepth) too_deep = true;
    return !too_deep;
  };
  Json parsed = Json::parse(text, limit, /*allow_exceptions=*/false);
  if (too_deep)
    throw HttpError(400, "Invalid value for " + quoted(path) + ": JSON nested deeper than " +
                             std::to_string(kMaxDepth) + " levels",
                    path);
  if (parsed.is_discarded() || !parsed.is_object())
    throw HttpError(400, "Invalid value for " + quoted(path) + ": must be the text of a JSON object", path);
  return parsed;
}

Json arguments_object(const std::string& text) {
  Json parsed = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  return !parsed.is_discarded() && parsed.is_object() ? parsed : Json::object();
}

Json chat_tool_call(const std::string& id, const std::string& name, Json arguments) {
  Json call;
  call["id"] = id;
  call["type"] = "function";
  call["function"] = {{"name", name}, {"arguments", std::move(arguments)}};
  return call;
}

Json chat_function_tool(const std::string& name, const Json& description, const Json& parameters) {
  Json fn;
  fn["name"] = name;
  if (!description.is_null()) fn["description"] = description;
  if (!parameters.is_null()) fn["parameters"] = parameters;
  return Json{{"type", "function"}, {"function", std::move(fn)}};
}

Json function_tool_from(const Json& obj, const std::string& path, const char* schema_key, bool schema_required) {
  const std::string name = require_string(obj, "name", path + ".name");
  const auto desc = opt_string(obj, "description", path + ".description");
  const std::string schema_path = path + "." + schema_key;
  Json schema;
  if (schema_required) {
    schema = require(obj, schema_key, schema_path);
    expect_object(schema, schema_path);
  } else if (obj.contains(schema_key) && !obj[schema_key].is_null()) {
    schema = obj[schema_key];
    expect_object(schema, schema_path);
  }
  return chat_function_tool(name, desc ? Json(*desc) : Json(), schema);
}

bool tool_choice_keeps_tools(const std::string& choice) {
  if (choice == "none") return false;
  if (choice == "auto" || choice == "required") return true;
  throw HttpError(400, "Invalid value for 'tool_choice': '" + choice + "' (expected none, auto or required)",
                  "tool_choice");
}

std::vector<const ToolCall*> ok_calls(const ChatResult& r) {
  std::vector<const ToolCall*> out;
  for (const auto& c : r.tool_calls)
    if (c.status == "ok") out.push_back(&c);
  return out;
}

FinishReason client_finish(const ChatResult& r) {
  if (!ok_calls(r).empty()) return FinishReason::ToolCalls;
  return r.finish_reason == FinishReason::ToolCalls ? FinishReason::Stop : r.finish_reason;
}

// Invalid UTF-8 (a client's or the model's) becomes U+FFFD rather than an exception mid-stream.
std::string dump(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }
std::string sse_data(const Json& j) { return "data: " + dump(j) + "\n\n"; }
std::string sse_event(const std::string& name, const Json& j) {
  return "event: " + name + "\ndata: " + dump(j) + "\n\n";
}

}  // namespace detail
}  // namespace mlxq::server
