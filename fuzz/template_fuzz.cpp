// libFuzzer target: the chat-template renderer on arbitrary JSON input. The first byte picks the
// options; the rest is parsed as JSON ({"messages": ..., "tools": ...} or a bare messages value).
// Rendering may reject the input with mlxq::Error; it must never crash or hang.
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "core/error.h"
#include "text/chat_template.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  mlxq::text::TemplateOptions opt;
  opt.add_generation_prompt = data[0] & 1;
  if (data[0] & 2) opt.enable_thinking = (data[0] & 4) != 0;
  opt.preserve_thinking = data[0] & 8;
  try {
    // parse_chat_json bounds the nesting depth (nlohmann's own parser recurses without limit).
    const auto j = mlxq::text::parse_chat_json(
        std::string_view(reinterpret_cast<const char*>(data) + 1, size - 1));
    static const nlohmann::ordered_json kNull = nullptr;
    const bool wrapped = j.is_object() && j.contains("messages");
    const auto& messages = wrapped ? j["messages"] : j;
    const auto& tools = wrapped && j.contains("tools") ? j["tools"] : kNull;
    (void)mlxq::text::render_chat_template(messages, tools, opt);
  } catch (const mlxq::Error&) {
  }
  return 0;
}
