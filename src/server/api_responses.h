// OpenAI Responses (POST /v1/responses) in mlxq's terms: the request (with previous_response_id
// conversations, kept in a bounded ResponseStore) into a GenRequest, a finished turn into a
// response object (reasoning, message and function_call output items), and a streamed turn into
// the Responses SSE events.
#pragma once
#include <list>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "server/api_common.h"

namespace mlxq::server {

// The conversations of stored responses, by response id: the messages (chat shape) after the
// response, so that a request naming it as previous_response_id continues from there. At most
// `capacity` entries; the least recently used goes first. Thread safe.
class ResponseStore {
 public:
  explicit ResponseStore(size_t capacity = 1024) : capacity_(capacity) {}
  void put(const std::string& id, Json conversation, Json tools);
  struct Entry {
    Json conversation;
    Json tools;
  };
  std::optional<Entry> get(const std::string& id);
  size_t size() const;

 private:
  size_t capacity_;
  mutable std::mutex mu_;
  std::list<std::string> lru_;  // front: most recent
  std::unordered_map<std::string, std::pair<Entry, std::list<std::string>::iterator>> map_;
};

// Fields: model, input (a string, or items: {role, content (string or input_text / output_text
// parts)}, {type: "message", ...}, {type: "function_call", call_id, name, arguments},
// {type: "function_call_output", call_id, output}), instructions (a system message, not carried
// to the next response, as OpenAI does), previous_response_id (unknown -> 400 naming it),
// tools ([{type: "function", name, description, parameters}]; other types -> 400), tool_choice,
// reasoning {effort}, max_output_tokens, temperature, top_p, stream, store, metadata (ignored),
// text (ignored). The conversation is the stored one (if any) followed by the input.
GenRequest parse_responses_request(const Json& body, const Limits& limits, ResponseStore& store);

// {id, object: "response", created_at, status: "completed" | "incomplete", incomplete_details,
// model, output: [reasoning {id, type, summary: [], content: [{type: "reasoning_text", text}]}?,
// message {id, type, role, status, content: [{type: "output_text", text, annotations: []}]}?,
// function_call {id, type, call_id, name, arguments, status}...], output_text (convenience, as
// the SDK computes it), instructions, previous_response_id, usage {input_tokens,
// input_tokens_details {cached_tokens}, output_tokens, output_tokens_details {reasoning_tokens},
// total_tokens}, timings}.
Json response_json(const ChatResult& r, const ResponseMeta& meta, const GenRequest& req);

// The conversation after this response (req.messages without the instructions' system message,
// then the assistant turn with its tool calls), for ResponseStore::put.
Json conversation_after(const GenRequest& req, const ChatResult& r, const Json& response);

// Streamed response as SSE frames ("event: NAME\ndata: {...}\n\n", each with sequence_number):
// response.created, response.in_progress, then per item output_item.added / (content_part.added,
// output_text.delta..., output_text.done, content_part.done) or (reasoning_text.delta...,
// reasoning_text.done) / output_item.done, function_call_arguments.delta / .done for tool
// calls, and response.completed with the full response object.
class ResponsesStream {
 public:
  ResponsesStream(ResponseMeta meta, GenRequest req);
  std::string start();
  std::string delta(const StreamEvent& e);
  // Returns the frames; *response gets the final response object (for the store).
  std::string finish(const ChatResult& r, Json* response);

 private:
  ResponseMeta meta_;
  GenRequest req_;
  int seq_ = 0;
  int output_index_ = -1;
  std::string open_;  // "reasoning", "message" or ""
  std::string item_id_;
  std::string text_;  // text of the open item so far
  Json items_ = Json::array();  // finished items
};

}  // namespace mlxq::server
