// Prompt tokens for a chat turn: a full render of the conversation through the chat template, or
// the wire-format delta appended to a live KV cache. Template skeleton text is tokenized with
// special-token parsing on; user, system and tool text with it off, so text a user types can never
// become a control token (gemma4-text-io.md §2.3).
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "text/chat_template.h"
#include "text/tokenizer.h"

namespace mlxq::engine {

// Renders `messages` (+ `tools`) and tokenizes the result; no BOS is added (the template writes it).
std::vector<int32_t> render_prompt_tokens(const text::Tokenizer& tok, nlohmann::ordered_json messages,
                                          const nlohmann::ordered_json& tools, const text::TemplateOptions& opt);

// A conversation as a request gives it: messages and tools parsed (parse_chat_json) and checked
// (messages: a non-empty array; tools: an array, or "" / null for none). Errors name "messages"
// or "tools".
struct Conversation {
  nlohmann::ordered_json messages, tools;
};
Conversation parse_conversation(const std::string& messages_json, const std::string& tools_json);

// The same for JSON text (messages: an array; tools: an array, or "" / null for none), parsed with
// text::parse_chat_json; enable_thinking as given. Errors name "messages" or "tools".
std::vector<int32_t> render_conversation(const text::Tokenizer& tok, const std::string& messages_json,
                                         const std::string& tools_json, bool thinking);

// After a stop (<turn|>, <eos>) or a length exit: closes the model turn, adds the user turn and
// the generation prompt: `<turn|>\n<|turn>user\nTEXT<turn|>\n<|turn>model\n` plus the empty
// thought channel `<|channel>thought\n<channel|>` when thinking is off. `images` placeholders
// `<|image|>` go before TEXT, as the template renders content parts [image..., text].
std::vector<int32_t> user_turn_delta(const text::Tokenizer& tok, const std::string& text, bool thinking,
                                     size_t images = 0);

// After a tool-call stop (<|tool_response>): the tool's result as the template writes it for
// call `name`, then what the template adds before the model continues its turn.
std::vector<int32_t> tool_result_delta(const text::Tokenizer& tok, const std::string& name,
                                       const std::string& call_id, const std::string& content, bool thinking);

}  // namespace mlxq::engine
