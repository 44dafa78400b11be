// Anthropic Messages (POST /v1/messages, /v1/messages/count_tokens) in mlxq's terms: the request
// into a GenRequest, a finished turn into a message object with thinking / text / tool_use
// blocks, and a streamed turn into Anthropic's SSE events (message_start, content_block_start /
// _delta / _stop, message_delta, message_stop).
#pragma once
#include <string>

#include "server/api_common.h"

namespace mlxq::server {

// Fields: model, max_tokens (required, >= 1), system (string or text blocks), messages (user /
// assistant; content a string or blocks: text, tool_use {id, name, input}, tool_result
// {tool_use_id, content string or text blocks, is_error}, thinking / redacted_thinking (dropped:
// the template drops past thoughts)), tools ({name, description, input_schema} -> OpenAI
// function tools), tool_choice ({type: auto | any | tool | none}), thinking ({type: "enabled",
// budget_tokens} turns thinking on with that budget; {type: "disabled"} off), temperature, top_p,
// top_k, stop_sequences, stream, metadata (ignored). A tool_result becomes a `tool` message whose
// tool_call_id is the tool_use_id. Throws HttpError 400 naming the field.
GenRequest parse_messages_request(const Json& body, const Limits& limits);
// /v1/messages/count_tokens takes the same body without max_tokens; its response is
// {"input_tokens": N}.
GenRequest parse_count_tokens_request(const Json& body, const Limits& limits);

// {id, type: "message", role: "assistant", model, content: [thinking {thinking, signature: ""}?,
// text?, tool_use {id, name, input}...], stop_reason: end_turn | max_tokens | stop_sequence |
// tool_use, stop_sequence, usage: {input_tokens, output_tokens, cache_read_input_tokens,
// cache_creation_input_tokens: 0}}. input_tokens counts the uncached part of the prompt, as
// Anthropic does (cache_read_input_tokens the rest). Tool-use ids: "toolu_" + random.
Json message_json(const ChatResult& r, const ResponseMeta& meta, const ChatConfig& config);

// Streamed message as SSE frames ("event: NAME\ndata: {...}\n\n").
class MessagesStream {
 public:
  MessagesStream(ResponseMeta meta, ChatConfig config);
  std::string start();                      // message_start (usage from meta)
  std::string delta(const StreamEvent& e);  // opens / closes thinking and text blocks as needed
  // Closes the open block, tool_use blocks (input_json_delta with the whole input), message_delta
  // (stop_reason, usage.output_tokens), message_stop.
  std::string finish(const ChatResult& r);

 private:
  ResponseMeta meta_;
  ChatConfig config_;
  int index_ = -1;         // index of the open block, or of the last one
  std::string open_;       // "thinking", "text" or "" (none open)
};

}  // namespace mlxq::server
