// Helpers the three API translators (api_chat, api_messages, api_responses) share: request field
// checks that name the field, chat-shape tool calls and tools, the calls that reach clients, and
// SSE framing. Private to src/server/api_*.cpp; the server core uses the api_*.h contracts.
#pragma once
#include <string>
#include <vector>

#include "server/api_common.h"

namespace mlxq::server::detail {

// "path[i]" and "path.key" (just "key" when path is empty).
std::string at(const std::string& path, size_t i);
std::string dot(const std::string& path, const char* key);

// Shape checks: HttpError 400 naming `path` ("'messages' must be an array, got object").
void expect_object(const Json& v, const std::string& path);
void expect_array(const Json& v, const std::string& path);
// A field that must be present and non-null / a required string.
const Json& require(const Json& obj, const char* key, const std::string& path);
std::string require_string(const Json& obj, const char* key, const std::string& path);
// At most `limit` entries in an array field, else 400 naming `path`.
void check_count(size_t n, size_t limit, const std::string& path);

// A reasoning effort (none | minimal | low | medium | high), or 400 naming `path`.
std::optional<std::string> opt_effort(const Json& obj, const char* key, const std::string& path);

// Tool-call arguments a client sent: JSON object text (OpenAI) or an object (lenient); "" is {}.
// Anything else is a 400 naming `path`. Nesting is bounded while parsing.
Json parse_arguments(const Json& v, const std::string& path);
// The engine's arguments_json as an object ({} when it is not one).
Json arguments_object(const std::string& text);

// The chat shape the template renders.
Json chat_tool_call(const std::string& id, const std::string& name, Json arguments);
Json chat_function_tool(const std::string& name, const Json& description, const Json& parameters);
// A function tool described by `obj` (name, description, and a JSON-schema object under
// `schema_key`: optional and nullable unless `schema_required`), in the chat shape; a 400 names
// the field under `path`. Each API's tool list differs only in where this object sits.
Json function_tool_from(const Json& obj, const std::string& path, const char* schema_key, bool schema_required);
// OpenAI's string tool_choice: "none" drops the tools; "auto" and "required" keep them (the model
// is not forced); anything else is a 400.
bool tool_choice_keeps_tools(const std::string& choice);

// The tool calls that go out to clients (status "ok" only), and the finish reason clients see:
// tool_calls only when such a call exists (a turn whose calls all failed to parse just stopped).
std::vector<const ToolCall*> ok_calls(const ChatResult& r);
FinishReason client_finish(const ChatResult& r);

// Compact JSON text; invalid UTF-8 becomes U+FFFD instead of throwing.
std::string dump(const Json& j);
// SSE frames: "data: {json}\n\n" and "event: NAME\ndata: {json}\n\n".
std::string sse_data(const Json& j);
std::string sse_event(const std::string& name, const Json& j);

}  // namespace mlxq::server::detail
