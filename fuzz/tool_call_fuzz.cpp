// libFuzzer target: the tool-call DSL parser and the streaming output parser must never crash on
// any input, and feeding a stream in two pieces must give the same result as feeding it whole.
#include <cstdlib>
#include <string>

#include "text/output_parser.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string s(reinterpret_cast<const char*>(data), size);
  (void)mlxq::text::parse_tool_call(s);
  const auto whole = mlxq::text::parse_output(s);
  mlxq::text::OutputParser p;
  std::vector<mlxq::text::ParseEvent> ev;
  const size_t cut = size ? data[0] % (size + 1) : 0;
  p.feed(std::string_view(s).substr(0, cut), ev);
  p.feed(std::string_view(s).substr(cut), ev);
  p.finish(ev);
  if (p.content() != whole.content || p.reasoning() != whole.reasoning ||
      p.tool_calls().size() != whole.tool_calls.size())
    std::abort();
  return 0;
}
