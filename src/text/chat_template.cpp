// The message loop of the Gemma-4 large chat template (2026-07-09), transcribed statement by
// statement from the Jinja source so that every branch, including the odd ones, renders as Jinja2.
#include "text/chat_template.h"

#include <cstdint>
#include <optional>
#include <string_view>

#include "core/error.h"
#include "text/tool_dsl.h"

namespace mlxq::text {
namespace {

[[noreturn]] void fail(const std::string& msg) { throw Error("chat template: " + msg); }

std::string got(const Json& v) { return std::string(" (got ") + v.type_name() + ")"; }

// strip_thinking(text): drops every `<|channel>…<channel|>` block, then trims.
std::string strip_thinking(std::string_view text) {
  constexpr std::string_view kOpen = "<|channel>", kClose = "<channel|>";
  std::string result;
  size_t pos = 0;
  while (true) {
    const size_t end = text.find(kClose, pos);
    const std::string_view part = text.substr(pos, end == std::string_view::npos ? end : end - pos);
    result += part.substr(0, part.find(kOpen));
    if (end == std::string_view::npos) break;
    pos = end + kClose.size();
  }
  return py::strip(result);
}

// Placeholder for a non-text content part, or "" for a part the template ignores.
std::string_view media_placeholder(py::Ref type) {
  if (py::equals_str(type, "image") || py::equals_str(type, "image_url")) return "<|image|>";
  if (py::equals_str(type, "audio") || py::equals_str(type, "input_audio")) return "<|audio|>";
  if (py::equals_str(type, "video")) return "<|video|>";
  return "";
}

class Renderer {
 public:
  Renderer(const Json& messages, const Json& tools, const TemplateOptions& opt)
      : messages_(messages),
        tools_(tools),
        opt_(opt),
        thinking_(opt.enable_thinking.value_or(false)) {}

  std::string render() {
    validate();
    out_ = opt_.bos_token;
    render_system_turn();
    const size_t n = messages_.size() - first_;
    // Pre-scan: reasoning is shown only for messages after the last user message.
    for (size_t i = 0; i < n; ++i)
      if (role(i) == "user") last_user_ = static_cast<int64_t>(i);
    for (size_t i = 0; i < n; ++i)
      if (role(i) != "tool") render_message(i);
    if (opt_.add_generation_prompt) {
      if (prev_type_ != "tool_response" && prev_type_ != "tool_call") {
        out_ += "<|turn>model\n";
        if (!thinking_) out_ += "<|channel>thought\n<channel|>";
      } else if (prev_type_ == "tool_response" && thinking_) {
        out_ += "<|channel>thought\n";
      }
    }
    return std::move(out_);
  }

 private:
  // Jinja2 raises for every message it reaches that is not an object with a string role (the
  // role is concatenated into `<|turn>ROLE`), and it reaches all of them; checking up front only
  // makes the message clearer.
  void validate() const {
    if (!messages_.is_array()) fail("messages must be a JSON array" + got(messages_));
    for (size_t i = 0; i < messages_.size(); ++i) {
      const Json& m = messages_[i];
      if (!m.is_object()) fail(at(i) + " must be an object" + got(m));
      const auto r = m.find("role");
      if (r == m.end() || !r->is_string()) fail(at(i) + ".role must be a string");
    }
    if (py::truthy(&tools_) && !tools_.is_array())
      fail("tools must be a JSON array or null" + got(tools_));
  }

  // Path of loop message i (loop indices skip a leading system message).
  std::string at(size_t i) const { return "messages[" + std::to_string(i) + "]"; }
  std::string path(size_t li) const { return at(first_ + li); }
  const Json& message(size_t li) const { return messages_[first_ + li]; }
  const std::string& role(size_t li) const {
    return message(li).find("role")->get_ref<const std::string&>();
  }

  void render_system_turn() {
    const bool system_first = !messages_.empty() && (role(0) == "system" || role(0) == "developer");
    const bool has_tools = py::truthy(&tools_);
    if (!thinking_ && !has_tools && !system_first) return;
    out_ += "<|turn>system\n";
    if (thinking_) {
      out_ += "<|think|>\n";
      prev_type_ = "think";
    }
    if (system_first) {
      const py::Ref content = py::getitem(&messages_[0], "content", at(0));
      if (py::is_string(content)) {
        out_ += py::strip(content->get_ref<const std::string&>());
      } else if (py::is_sequence(content)) {
        // Each part's text, trimmed, plus a space; a part without text adds just the space.
        py::for_each(content, at(0) + ".content", [&](const Json& item) {
          out_ += py::strip(py::str(py::getitem(&item, "text", at(0) + ".content[]")));
          out_ += ' ';
        });
      }
      first_ = 1;
    }
    if (has_tools) {
      for (size_t t = 0; t < tools_.size(); ++t) {
        const std::string where = "tools[" + std::to_string(t) + "]";
        out_ += "<|tool>" + py::strip(format_function_declaration(tools_[t], where)) + "<tool|>";
      }
      prev_type_ = "tool";
    }
    out_ += "<turn|>\n";
  }

  void render_message(size_t li) {
    const Json& msg = message(li);
    const std::string& r = role(li);
    const std::string where = path(li);
    prev_type_.clear();
    const std::string turn_role = r == "assistant" ? "model" : r;
    const bool is_model = turn_role == "model";
    // Consecutive assistant messages share one model turn.
    if (!(is_model && prev_non_tool_role_ == "assistant")) out_ += "<|turn>" + turn_role + "\n";

    const py::Ref tool_calls = py::get(msg, "tool_calls");
    const bool has_calls = py::truthy(tool_calls);
    // `reasoning or reasoning_content`: the first truthy one, else the second whatever it is.
    const char* thinking_key = "reasoning";
    py::Ref thinking = py::get(msg, thinking_key);
    if (!py::truthy(thinking)) thinking = py::get(msg, thinking_key = "reasoning_content");
    const bool gate =
        static_cast<int64_t>(li) > last_user_ || (opt_.preserve_thinking && has_calls);
    if (py::truthy(thinking) && gate) {
      if (!thinking->is_string())
        fail(where + "." + thinking_key + " must be a string" + got(*thinking));
      out_ += "<|channel>thought\n" + thinking->get_ref<const std::string&>() + "\n<channel|>";
    }

    if (has_calls) render_tool_calls(*tool_calls, where + ".tool_calls");

    bool responded = false;  // ns_tr_out.flag
    const py::Ref tool_responses = py::get(msg, "tool_responses");
    if (py::truthy(tool_responses)) {
      // Legacy Gemma-native results on the assistant message itself.
      py::for_each(tool_responses, where + ".tool_responses", [&](const Json& tr) {
        const py::Ref name = py::getitem(&tr, "name", where + ".tool_responses[]");
        const py::Ref response = py::getitem(&tr, "response", where + ".tool_responses[]");
        out_ += response_block(py::truthy(name) ? *name : Json("unknown"), response,
                               where + ".tool_responses[].name");
        responded = true;
        prev_type_ = "tool_response";
      });
    } else if (has_calls) {
      // OpenAI style: the role=tool messages that follow, up to the next other message.
      for (size_t k = li + 1; k < messages_.size() - first_ && role(k) == "tool"; ++k) {
        render_tool_result(message(k), path(k), *tool_calls);
        responded = true;
        prev_type_ = "tool_response";
      }
    }

    const std::string content = render_content(msg, is_model, where);
    out_ += content;
    const bool has_content = !py::strip(content).empty();

    std::optional<std::string> next_role;  // next non-tool message's role
    for (size_t j = li + 1; j < messages_.size() - first_; ++j) {
      if (role(j) != "tool") {
        next_role = role(j);
        break;
      }
    }
    const bool continues_into_next =
        is_model && next_role == "assistant" && (!has_calls || responded);
    if (prev_type_ == "tool_call" && !responded) {
      out_ += "<|tool_response>";  // the model writes the result next
    } else if (continues_into_next) {
      // same model turn goes on
    } else if (!(responded && !has_content && !next_role)) {
      out_ += "<turn|>\n";
    }
    prev_non_tool_role_ = r;
  }

  void render_tool_calls(const Json& calls, const std::string& where) {
    // Jinja2 iterates any other truthy value into strings or ints, whose `function` lookup fails.
    if (!calls.is_array()) fail(where + " must be a list" + got(calls));
    for (size_t c = 0; c < calls.size(); ++c) {
      const std::string cw = where + "[" + std::to_string(c) + "]";
      const py::Ref fn = py::getitem(&calls[c], "function", cw);
      const py::Ref name = py::getitem(fn, "name", cw + ".function");
      if (!py::is_string(name)) fail(cw + ".function.name must be a string");
      out_ += "<|tool_call>call:" + name->get_ref<const std::string&>() + "{";
      const py::Ref args = py::getitem(fn, "arguments", cw + ".function");
      if (py::is_mapping(args)) {
        bool first = true;
        for (const auto& [key, value] : py::dictsort(*args)) {
          if (!first) out_ += ',';
          first = false;
          out_ += *key + ":" + format_argument(value, false, 1);
        }
      } else if (args == nullptr || !args->is_null()) {
        // The template's raise_exception. Its message speaks of strings, but it fires for every
        // non-object, and for a missing `arguments` (Undefined, not None).
        const std::string at_args = cw + ".function.arguments";
        if (py::is_string(args))
          fail(at_args + " must be a JSON object (mapping), not a string. Deserialize arguments " +
               "before passing to the template.");
        fail(at_args + " must be a JSON object (mapping) or null, got " +
             (args == nullptr ? std::string("nothing") : std::string(args->type_name())));
      }
      out_ += "}<tool_call|>";
    }
    prev_type_ = "tool_call";
  }

  // One role=tool message after an assistant message with `calls`.
  void render_tool_result(const Json& follow, const std::string& where, const Json& calls) {
    const py::Ref fallback = py::get(follow, "name");
    const Json* name = py::truthy(fallback) ? fallback : nullptr;
    // The last call whose id equals tool_call_id names the result (a missing id equals a missing
    // tool_call_id: both are None). Calls were checked to be objects with string names.
    for (const Json& call : calls)
      if (py::equal(*py::get(call, "id"), *py::get(follow, "tool_call_id")))
        name = &call["function"]["name"];
    const Json unknown = "unknown";
    const Json& tool_name = name != nullptr ? *name : unknown;

    const py::Ref body = py::get(follow, "content");
    if (py::is_string(body) || !py::is_sequence(body)) {
      out_ += response_block(tool_name, body, where + ".name");
      return;
    }
    // Content parts: the text parts joined into one result, then one placeholder per media part.
    // (A dict is iterated by its keys, which are strings, not parts: Jinja2 raises unless empty.)
    if (!body->empty() && body->is_object())
      fail(where + ".content must be a string or a list of content parts" + got(*body));
    std::string text;
    size_t j = 0;
    py::for_each(body, where + ".content", [&](const Json& part) {
      const std::string pw = where + ".content[" + std::to_string(j++) + "]";
      if (!part.is_object()) fail(pw + " must be an object (a content part)" + got(part));
      if (py::equals_str(py::get(part, "type"), "text")) {
        const py::Ref t = py::get(part, "text");  // a missing text is None, and '' + None raises
        if (!t->is_string()) fail(pw + ".text must be a string" + got(*t));
        text += t->get_ref<const std::string&>();
      }
    });
    const Json joined = text;
    out_ += response_block(tool_name, &joined, where + ".name");
    py::for_each(body, where + ".content",
                 [&](const Json& part) { out_ += media_placeholder(py::get(part, "type")); });
  }

  std::string response_block(const Json& name, py::Ref response, const std::string& where) const {
    if (!name.is_string()) fail(where + " must be a string" + got(name));
    return format_tool_response_block(name.get_ref<const std::string&>(), response);
  }

  // The message's own text (captured_content): model text has thought channels stripped.
  std::string render_content(const Json& msg, bool is_model, const std::string& where) const {
    const py::Ref content = py::get(msg, "content");
    if (py::is_string(content)) {
      const std::string& s = content->get_ref<const std::string&>();
      return is_model ? strip_thinking(s) : py::strip(s);
    }
    std::string out;
    if (!py::is_sequence(content)) return out;  // None, numbers and booleans render nothing
    if (!content->empty() && content->is_object())
      fail(where + ".content must be a string or a list of content parts" + got(*content));
    size_t j = 0;
    py::for_each(content, where + ".content", [&](const Json& item) {
      const std::string iw = where + ".content[" + std::to_string(j++) + "]";
      if (!item.is_object()) fail(iw + " must be an object (a content part)" + got(item));
      const py::Ref type = py::get(item, "type");
      if (py::equals_str(type, "text")) {
        const py::Ref text = py::getitem(&item, "text", iw);
        if (is_model) {
          if (!py::is_string(text)) fail(iw + ".text must be a string");
          out += strip_thinking(text->get_ref<const std::string&>());
        } else {
          out += py::strip(py::str(text));  // `| trim` prints any value, and Undefined as ""
        }
      } else {
        out += media_placeholder(type);
      }
    });
    return out;
  }

  const Json& messages_;
  const Json& tools_;
  const TemplateOptions& opt_;
  const bool thinking_;
  std::string out_;
  size_t first_ = 0;        // 1 when messages[0] was folded into the system turn
  int64_t last_user_ = -1;  // loop index of the last user message
  std::string prev_type_;   // ns.prev_message_type; "" is None
  std::optional<std::string> prev_non_tool_role_;
};

}  // namespace

std::string render_chat_template(const nlohmann::ordered_json& messages,
                                 const nlohmann::ordered_json& tools, const TemplateOptions& opt) {
  return Renderer(messages, tools, opt).render();
}

std::string to_tool_dsl(const nlohmann::ordered_json& value) {
  return format_argument(&value, false);
}

nlohmann::ordered_json parse_chat_json(std::string_view text) {
  // The callback sees every value with its depth before it is attached, so the nesting limit is
  // enforced while the parser's own copies are still shallow.
  const auto limit_depth = [](int depth, Json::parse_event_t, Json&) {
    if (depth > kMaxDepth) fail("JSON nested deeper than " + std::to_string(kMaxDepth) + " levels");
    return true;
  };
  try {
    return Json::parse(text, limit_depth);
  } catch (const Json::exception& e) {
    fail(std::string("invalid JSON: ") + e.what());
  }
}

}  // namespace mlxq::text
