// OpenAI Chat Completions (POST /v1/chat/completions) in mlxq's terms: the request body into a
// GenRequest, a finished turn into a chat.completion object, and a streamed turn into
// chat.completion.chunk SSE frames. Reasoning goes out as `reasoning_content` (as llama-server
// and vLLM send it); tool calls as `tool_calls` (streamed as deltas with an index, as OpenAI does);
// `usage` carries prompt_tokens_details.cached_tokens and completion_tokens_details.
// reasoning_tokens; llama.cpp-style `timings` ride along.
#pragma once
#include <string>

#include "server/api_common.h"

namespace mlxq::server {

// Fields: model, messages (system | developer | user | assistant | tool; content string or text
// parts; assistant tool_calls with JSON-text arguments; tool_call_id), tools (type "function"
// only) and tool_choice ("none" drops the tools; "auto" / "required" / a named function keep
// them), reasoning_effort (none | minimal | low | medium | high), temperature, top_p, top_k,
// min_p, presence_penalty, frequency_penalty, repetition_penalty, seed, stop, max_tokens /
// max_completion_tokens, stream, stream_options.include_usage, n (only 1). Unknown fields are
// ignored, as OpenAI-compatible servers do. Throws HttpError 400 naming the field.
GenRequest parse_chat_request(const Json& body, const Limits& limits);

// {id, object: "chat.completion", created, model, choices: [{index: 0, message: {role:
// "assistant", content, reasoning_content?, tool_calls?}, finish_reason, logprobs: null}],
// usage: {prompt_tokens, completion_tokens, total_tokens, prompt_tokens_details: {cached_tokens},
// completion_tokens_details: {reasoning_tokens}}, timings}. finish_reason: stop | length |
// tool_calls. Tool call ids are made unique per response ("call_" + random).
Json chat_completion_json(const ChatResult& r, const ResponseMeta& meta);

// A streamed completion as SSE frames ("data: {...}\n\n"); each call returns the frames to send
// now ("" for none).
class ChatStream {
 public:
  ChatStream(ResponseMeta meta, bool include_usage);
  std::string start();                       // the first chunk: delta {role: "assistant", content: ""}
  std::string delta(const StreamEvent& e);   // content or reasoning_content delta
  // Tool-call deltas (index, id, type, function {name, arguments}), the finish_reason chunk, the
  // usage chunk (choices: [], when include_usage), and "data: [DONE]".
  std::string finish(const ChatResult& r);

 private:
  ResponseMeta meta_;
  bool include_usage_;
};

}  // namespace mlxq::server
