// What the three HTTP APIs (OpenAI Chat Completions, OpenAI Responses, Anthropic Messages) share:
// the engine-side request they all parse into (GenRequest), the client-error exception and the
// error objects each API expects, request limits, ids, llama.cpp-style timings, and typed field
// access that names the offending field. Pure functions over JSON; no HTTP, no threads.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>

#include "mlxq/session.h"

namespace mlxq::server {

using Json = nlohmann::ordered_json;

enum class Api { Chat, Responses, Anthropic };

// A request the client got wrong (or a server state it must be told about): the HTTP status and
// the fields of the API's error object. `param` names the offending field ("messages[2].role").
struct HttpError : std::runtime_error {
  int status;
  std::string type;   // "" -> derived from status (invalid_request_error, authentication_error, ...)
  std::string param;
  std::string code;   // OpenAI's `code` ("context_length_exceeded", "model_not_found"), or ""
  HttpError(int status, const std::string& message, std::string param = "", std::string code = "",
            std::string type = "");
};

// The error body each API's clients parse:
//   Chat / Responses: {"error": {"message", "type", "param", "code"}}
//   Anthropic:        {"type": "error", "error": {"type", "message"}}
// with type defaulting from the status: 400 invalid_request_error, 401 authentication_error,
// 403 permission_error, 404 not_found_error, 408 timeout_error (OpenAI: invalid_request_error),
// 413 request_too_large, 429 rate_limit_error, 503 overloaded_error (Anthropic) /
// server_error (OpenAI), 500 api_error (Anthropic) / server_error (OpenAI).
Json error_body(Api api, const HttpError& e);

// Bounds on what a request may ask for (all checked while parsing; a breach is HttpError 400).
struct Limits {
  int max_stop = 16;              // stop strings per request
  size_t max_stop_bytes = 256;    // bytes per stop string
  size_t max_messages = 4096;     // messages / input items per request
  int max_tools = 128;
  int default_max_tokens = 2048;  // when the request gives none
};

// A generation request in the engine's terms, whichever API it came through.
struct GenRequest {
  Json messages = Json::array();  // the conversation in the OpenAI chat shape the template renders:
                                  // {role: system|user|assistant|tool, content: string,
                                  //  tool_calls: [{id, type:"function", function:{name, arguments:object}}],
                                  //  tool_call_id, name}
  Json tools;                     // OpenAI chat tools ([{type:"function", function:{name, description,
                                  // parameters}}]) or null
  ChatConfig config;              // max_new_tokens, temperature, top_p, top_k, min_p, penalties, seed,
                                  // stop, reasoning_effort ("high" when thinking is on), thinking budget
  bool stream = false;
  bool include_usage = false;     // Chat: stream_options.include_usage
  std::string model;              // the model the client named ("" when absent)
  std::string previous_response_id;  // Responses
  bool store = true;                 // Responses: keep this response for previous_response_id
  std::string instructions;          // Responses: echoed back
};

// What the server adds to the engine's result when it writes a response.
struct ResponseMeta {
  std::string id;          // "chatcmpl-…", "resp_…", "msg_…" (make_id)
  int64_t created = 0;     // unix seconds
  std::string model;       // the served model's id
  int prompt_tokens = 0;   // known before generation (stream starts report it)
  int cached_tokens = 0;
};

std::string make_id(const std::string& prefix);  // prefix + 24 random [A-Za-z0-9]
int64_t unix_now();

// llama.cpp's `timings` object: cache_n, prompt_n, prompt_ms, prompt_per_token_ms,
// prompt_per_second, predicted_n, predicted_ms, predicted_per_token_ms, predicted_per_second
// (prompt_* from the prefill: prefill_tokens over ttft; predicted_* from the decode rate).
Json timings_json(const ChatResult& r);

// Typed field access for request bodies: each throws HttpError 400 naming `path` when the field
// has the wrong type or is out of range, and returns nullopt when it is absent or null.
std::optional<std::string> opt_string(const Json& obj, const char* key, const std::string& path);
std::optional<double> opt_number(const Json& obj, const char* key, const std::string& path, double lo, double hi);
std::optional<int64_t> opt_int(const Json& obj, const char* key, const std::string& path, int64_t lo, int64_t hi);
std::optional<bool> opt_bool(const Json& obj, const char* key, const std::string& path);

// A `stop` / `stop_sequences` value (a string or an array of strings) into config.stop, within
// `limits`.
void parse_stop(const Json& v, const std::string& path, const Limits& limits, ChatConfig& config);

// The common sampling fields (temperature 0..2, top_p 0..1, top_k >= 0, min_p 0..1,
// presence/frequency_penalty -2..2, repetition_penalty / repeat_penalty > 0, seed) into config.
void parse_sampling(const Json& body, const std::string& prefix, ChatConfig& config);

// Content that may be a string or an array of text parts ({type: "text" | "input_text" |
// "output_text", text}); other part types are a 400 naming the part (user messages read images
// with user_content below).
std::string text_content(const Json& content, const std::string& path);
// A user message's content that may hold images: the text (as text_content) when it has none,
// else the chat-shape parts in order, text parts and {"type": "image_url", "image_url": {"url":
// DATA_URL}}. Reads OpenAI's image_url parts ({url} or a string), the Responses API's
// input_image and Anthropic's image blocks (source base64, or a data URL). Images must come as
// data URLs (the server fetches nothing): anything else is a 400 naming the field.
Json user_content(const Json& content, const std::string& path);
// One part or block of type `type` at `path`: its image as a data URL, or "" when not an image.
std::string image_of(const Json& part, const std::string& type, const std::string& path);

}  // namespace mlxq::server
